//! Group commit: one thread makes writes durable, and every writer waiting for
//! durability joins the next flush instead of starting its own.
//!
//! Why one flusher thread: sled 0.34 deadlocks when `flush_async` runs from
//! several tasks at once (spacejam/sled#1308, #1241, #1357; fixed only on sled's
//! unreleased main branch). Under 8 or more concurrent SCIM writers rosterd's
//! write path hung for good: a transaction waited in `TransactionalTrees::stage`
//! while every sled I/O thread sat in `iobuf::flush`. Here `flush_async` is never
//! called; the synchronous `Db::flush` runs on this thread only, so at most one
//! flush is ever in progress, never inside a transaction (sled#1134), and never on
//! a thread that answers requests.
//!
//! A waiter takes a ticket (an increasing number) *after* its write returned; the
//! flusher reads the newest ticket *before* it starts a flush, so a flush that
//! covers ticket `t` began after the write behind `t` was in sled's log, and
//! `Db::flush` makes everything written before it started durable. Writers that
//! arrive while a flush runs share the next one: one fsync for a whole group.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::StoreError;

/// How far flushing got.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Every ticket up to this one is durable.
    done: u64,
    /// The last failed flush covered tickets up to this one (and above `done`
    /// at the time), with its error.
    failed: Option<(u64, String)>,
}

#[derive(Default)]
struct State {
    /// The newest ticket handed out.
    requested: u64,
    /// The newest ticket a finished flush (good or failed) covered.
    handled: u64,
    progress: Progress,
    stop: bool,
    /// Flushes done, for tests and the benchmark.
    flushes: u64,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the flusher (a new ticket, or stop).
    work: Condvar,
    /// Wakes blocking waiters when progress moves.
    done: Condvar,
    /// Wakes async waiters when progress moves.
    done_tx: tokio::sync::watch::Sender<Progress>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The flusher. Dropping the last handle stops the thread (after a final flush).
pub(crate) struct Flusher {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Flusher {
    pub(crate) fn start(db: sled::Db) -> std::io::Result<Self> {
        let (done_tx, _) = tokio::sync::watch::channel(Progress::default());
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            done_tx,
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("rosterd-flusher".into())
            .spawn(move || run(db, s))?;
        Ok(Self {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    fn ticket(&self) -> u64 {
        let mut st = self.shared.lock();
        st.requested += 1;
        let t = st.requested;
        drop(st);
        self.shared.work.notify_one();
        t
    }

    /// Waits until everything written before this call is durable.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        let t = self.ticket();
        let mut rx = self.shared.done_tx.subscribe();
        let p = rx
            .wait_for(|p| p.done >= t || p.failed.as_ref().is_some_and(|(upto, _)| *upto >= t))
            .await
            .map_err(|_| StoreError::Flush("the store's flusher stopped".into()))?
            .clone();
        outcome(&p, t)
    }

    /// [`Flusher::flush`] for blocking threads (sync apply, start-up).
    pub(crate) fn flush_blocking(&self) -> Result<(), StoreError> {
        self.flush_blocking_within(None).and_then(|done| {
            done.ok_or_else(|| StoreError::Flush("the store's flusher stopped".into()))
        })
    }

    /// Like [`Flusher::flush_blocking`], giving up after `timeout`: `Ok(None)`
    /// when the flush did not complete in time (the write probe of `/readyz`).
    pub(crate) fn flush_blocking_within(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<()>, StoreError> {
        let t = self.ticket();
        let deadline = timeout.map(|d| Instant::now() + d);
        let mut st = self.shared.lock();
        loop {
            let p = &st.progress;
            if p.done >= t || p.failed.as_ref().is_some_and(|(upto, _)| *upto >= t) {
                return outcome(p, t).map(Some);
            }
            if st.stop {
                return Ok(None);
            }
            st = match deadline {
                None => self
                    .shared
                    .done
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    self.shared
                        .done
                        .wait_timeout(st, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// How many flushes ran (each covering one or more waiting writers).
    pub(crate) fn flushes(&self) -> u64 {
        self.shared.lock().flushes
    }
}

fn outcome(p: &Progress, t: u64) -> Result<(), StoreError> {
    if p.done >= t {
        return Ok(());
    }
    match &p.failed {
        Some((_, e)) => Err(StoreError::Flush(e.clone())),
        None => Ok(()),
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.work.notify_one();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

fn run(db: sled::Db, s: Arc<Shared>) {
    loop {
        let (target, stop) = {
            let mut st = s.lock();
            while st.requested == st.handled && !st.stop {
                st = s.work.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            (st.requested, st.stop)
        };
        let result = db.flush();
        let mut st = s.lock();
        st.flushes += 1;
        st.handled = target;
        let failed = match result {
            Ok(_) => {
                st.progress.done = target;
                st.progress.failed = None;
                false
            }
            Err(e) => {
                // Waiters this flush covered get the error; later tickets are
                // tried again by the next flush.
                tracing::error!(error = %e, "flushing the store failed");
                st.progress.failed = Some((target, e.to_string()));
                true
            }
        };
        let p = st.progress.clone();
        drop(st);
        s.done.notify_all();
        s.done_tx.send_replace(p);
        if stop {
            return;
        }
        if failed {
            // Do not spin on a failing disk.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
