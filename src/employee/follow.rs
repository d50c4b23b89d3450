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
//! - **Waiting does not hold up a worker.** The wait (for the lock and for the
//!   query) runs in [`crate::blocking::in_place`]: the runtime's worker hands
//!   its other requests on while this one waits.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
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
