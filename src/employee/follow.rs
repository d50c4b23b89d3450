//! Following the other nodes on a shared store (PostgreSQL): before a read
//! that depends on what the roster keeps in memory (the projection behind
//! lists, SCIM filters and select-all; the store's counts and id-order
//! positions; the positions in force), [`Roster::follow`] asks the store what
//! was written since it last asked ([`crate::store::Backend::catch_up`]: one
//! query when nothing moved) and applies it, so that such a read sees every
//! write any node acknowledged before the read began. On sled (one process)
//! it does nothing.
//!
//! Concurrent readers share one catch-up: a reader that waited for another's
//! to finish does not ask again when that one began after it did.

use std::sync::PoisonError;
use std::time::Instant;

use super::{Employee, Error, Roster};

impl Roster {
    /// See the module doc.
    pub(crate) fn follow(&self) -> Result<(), Error> {
        if !self.store.shared() {
            return Ok(());
        }
        let began = Instant::now();
        let mut last = self.followed.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|t| t >= began) {
            // A catch-up that began after this read did has finished.
            return Ok(());
        }
        let start = Instant::now();
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
        *last = Some(start);
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
