//! A sync run's hold on its source's lease (see "Leases and claims" in the
//! store): taken before the run does anything, renewed by a heartbeat (every
//! third of its TTL) while the run fetches and plans and by every apply batch
//! in the batch's own transaction (the fence), let go when the run ends. A run
//! whose lease was taken over (it stalled past the TTL: a paused process, a
//! partition) writes nothing more and ends `interrupted`.

use std::sync::Arc;
use std::time::Duration;

use crate::store::{Fence, LeaseInfo, Store, StoreError};

/// The lease a run holds, with its heartbeat.
pub struct HeldLease {
    store: Store,
    fence: Arc<Fence>,
    beat: tokio::task::JoinHandle<()>,
}

impl HeldLease {
    /// Takes `source`'s lease: `Ok(Err(holder))` while another node holds it.
    pub async fn take(store: &Store, source: &str) -> Result<Result<Self, LeaseInfo>, StoreError> {
        let s = store.clone();
        let id = source.to_string();
        let taken = tokio::task::spawn_blocking(move || s.lease_take(&id))
            .await
            .map_err(|e| StoreError::Io(format!("taking the lease stopped: {e}")))??;
        let lease = match taken {
            Ok(l) => l,
            Err(holder) => return Ok(Err(holder)),
        };
        let fence = Fence::new(lease);
        let beat = tokio::spawn(heartbeat(store.clone(), fence.clone()));
        Ok(Ok(Self {
            store: store.clone(),
            fence,
            beat,
        }))
    }

    /// The fence of the run's apply batches.
    pub fn fence(&self) -> &Arc<Fence> {
        &self.fence
    }

    /// Why the run stopped, once the lease was found taken over.
    pub fn lost_message(&self) -> Option<String> {
        let l = &self.fence.lease;
        self.fence.is_lost().then(|| {
            format!(
                "the lease of source `{}` (epoch {}, held by {}) was taken over by another node after it was not renewed within {} s; nothing more was written under epoch {}, and the run holding the lease now goes on with the changes",
                l.source,
                l.epoch,
                l.holder,
                l.ttl.as_secs(),
                l.epoch
            )
        })
    }

    /// Whether the lease is still this run's, asked of the store (after a
    /// failure, which may be the lost lease's: a paused node's connection was
    /// closed by the server). Marks it lost when it is not.
    pub async fn confirm(&self) -> bool {
        if self.fence.is_lost() {
            return false;
        }
        let (s, l) = (self.store.clone(), self.fence.lease.clone());
        match tokio::task::spawn_blocking(move || s.lease_renew(&l)).await {
            Ok(Ok(false)) => {
                self.fence.set_lost();
                false
            }
            // Held, or the store cannot tell: the failure stands as it is.
            _ => true,
        }
    }

    /// Stops the heartbeat and lets the lease go (unless it was taken over).
    pub async fn release(self) {
        self.beat.abort();
        if self.fence.is_lost() {
            return;
        }
        let store = self.store.clone();
        let lease = self.fence.lease.clone();
        match tokio::task::spawn_blocking(move || store.lease_release(&lease)).await {
            Ok(Ok(())) => {}
            // It expires by itself.
            Ok(Err(e)) => {
                tracing::warn!(source = %self.fence.lease.source, error = %e, "letting the source's lease go failed; it expires by itself")
            }
            Err(e) => tracing::warn!(error = %e, "letting the source's lease go stopped"),
        }
    }
}

/// Renews the lease every third of its TTL until it is lost (or aborted).
async fn heartbeat(store: Store, fence: Arc<Fence>) {
    let every = (fence.lease.ttl / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let (s, l) = (store.clone(), fence.lease.clone());
        match tokio::task::spawn_blocking(move || s.lease_renew(&l)).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                tracing::warn!(source = %fence.lease.source, epoch = fence.lease.epoch, "the source's lease was taken over by another node; this run stops");
                fence.set_lost();
                return;
            }
            // The next beat (or the batch's fence) tries again.
            Ok(Err(e)) => {
                tracing::warn!(source = %fence.lease.source, error = %e, "renewing the source's lease failed")
            }
            Err(_) => return,
        }
    }
}
