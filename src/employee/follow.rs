//! Following the other nodes on a shared store (PostgreSQL): before a read
//! that depends on what the roster or the store keeps in memory (the
//! projection behind lists, SCIM filters and select-all; the store's counts,
//! id-order positions, profiles and unique keys; the positions in force),
//! [`Roster::follow`] asks the store what was written since it last asked
//! ([`crate::store::Backend::catch_up`]: one query when nothing moved) and
//! applies it, so that such a read sees every write any node acknowledged
//! before the read began. On sled (one process) it does nothing.
//!
//! - **One read, one catch-up.** A request is one read ([`as_one_read`], which
//!   the HTTP server wraps around every request): it began when the request
//!   did, and once a catch-up that began after that has finished, its further
//!   follows (a SCIM GET renders the profile, its groups and its permissions,
//!   each of which follows) return at once. Outside a request each call is a
//!   read of its own, beginning when it is made.
//! - **Concurrent readers share one catch-up.** Catch-ups run one at a time; a
//!   reader that waited for another's to finish does not ask again when that
//!   one began after the reader did. So under load one query serves every
//!   request that arrived while the previous one ran.
//! - **Waiting does not hold up a worker.** Before a request's handler runs,
//!   the HTTP server awaits [`Roster::follow_async`]: the request waits as a
//!   task, with no thread, and one blocking thread runs the catch-up for all
//!   that wait; the handler's own follows then return at once. A follow that
//!   must wait anyway (outside a request, or after that catch-up failed) runs
//!   in [`crate::blocking::in_place`], so that the runtime's worker hands its
//!   other requests on.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{OnceLock, PoisonError};
use std::time::Instant;

use super::{Employee, Error, Roster};

tokio::task_local! {
    /// When the read being answered began (see [`as_one_read`]).
    static READ_BEGAN: Instant;
}

/// Runs `fut` (one request) as one read: every follow inside it is satisfied
/// by one catch-up that began after `fut` did (see the module doc).
pub async fn as_one_read<F: Future>(fut: F) -> F::Output {
    READ_BEGAN.scope(Instant::now(), fut).await
}

/// When the current read began: its request's start, or now.
fn read_began() -> Instant {
    READ_BEGAN
        .try_with(|t| *t)
        .unwrap_or_else(|_| Instant::now())
}

/// Nanoseconds since a fixed instant of this process (for an atomic), never 0.
fn stamp(t: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(t.saturating_duration_since(epoch).as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The catch-ups of one roster: one at a time, and when the last finished one
/// began.
#[derive(Debug, Default)]
pub(super) struct Following {
    /// Held while a catch-up runs.
    running: std::sync::Mutex<()>,
    /// [`stamp`] of the start of the last catch-up that finished (0: none yet).
    caught_up: AtomicU64,
    /// Whether a request's task has a catch-up running for the others
    /// ([`Roster::follow_async`]).
    started: AtomicBool,
    /// Told when that catch-up ends.
    ended: tokio::sync::Notify,
}

/// Ends a request's catch-up ([`Roster::follow_async`]), also when the request
/// is dropped while it waits.
struct Started<'a>(&'a Following);

impl Drop for Started<'_> {
    fn drop(&mut self) {
        self.0.started.store(false, Ordering::Release);
        self.0.ended.notify_waiters();
    }
}

impl Following {
    /// Whether a catch-up that began at or after `began` has finished.
    fn covers(&self, began: Instant) -> bool {
        self.caught_up.load(Ordering::Acquire) >= stamp(began)
    }
}

impl Roster {
    /// See the module doc.
    pub(crate) fn follow(&self) -> Result<(), Error> {
        if !self.store.shared() {
            return Ok(());
        }
        let began = read_began();
        let following = &self.following;
        if following.covers(began) {
            return Ok(());
        }
        crate::blocking::in_place(|| {
            let _running = following
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if following.covers(began) {
                // A catch-up that began after this read did has finished.
                return Ok(());
            }
            let start = stamp(Instant::now());
            self.catch_up()?;
            following.caught_up.fetch_max(start, Ordering::AcqRel);
            Ok(())
        })
    }

    /// [`Roster::follow`] for a request before its handler runs (see the
    /// module doc): the first of the waiting requests starts a catch-up on a
    /// blocking thread, the others wait for it to end. An error is left to the
    /// handler's own follow, which meets it again and answers it.
    pub async fn follow_async(&self) {
        if !self.store.shared() {
            return;
        }
        let began = read_began();
        let following = &self.following;
        loop {
            if following.covers(began) {
                return;
            }
            let ended = following.ended.notified();
            tokio::pin!(ended);
            // Told of every end from here on, before looking again.
            ended.as_mut().enable();
            if following.covers(began) {
                return;
            }
            if following.started.swap(true, Ordering::AcqRel) {
                ended.await;
                continue;
            }
            let _started = Started(following);
            let roster = self.clone();
            match tokio::task::spawn_blocking(move || roster.follow()).await {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read the other nodes' writes");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "the catch-up with the other nodes failed");
                    return;
                }
            }
        }
    }

    /// One catch-up: what the store read of the other nodes' writes, applied
    /// to the projection and the positions.
    fn catch_up(&self) -> Result<(), Error> {
        let caught = self.store.catch_up()?;
        for (id, body) in &caught.records {
            match body {
                Some(b) => match serde_json::from_slice::<Employee>(b) {
                    Ok(e) => self.projection.put(&e, &[]),
                    Err(err) => {
                        tracing::error!(error = %err, employee = %id, "a stored profile cannot be read; it is left out of lists until it is rewritten");
                    }
                },
                None => self.projection.remove(*id),
            }
        }
        for m in &caught.outbox {
            self.projection.mail(m);
        }
        if caught.positions {
            self.refresh_catalog()?;
        }
        Ok(())
    }

    /// [`Roster::follow`] for the reads that cannot fail: an error is logged
    /// and what memory holds is answered.
    pub(crate) fn follow_or_log(&self) {
        if let Err(e) = self.follow() {
            tracing::warn!(error = %e, "cannot read the other nodes' writes; answering from memory");
        }
    }
}
