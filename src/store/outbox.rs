//! The transactional outbox: messages written in the same sled transaction as the
//! change that causes them (see [`super::Write::outbox`]), then delivered by the mail
//! worker, which updates their delivery state here.
//!
//! Tree `outbox`: id (u64, big-endian) → [`OutboxRecord`] (JSON); tree
//! `outbox_pending`: id → `()` for each pending message, so the worker's poll
//! does not read the history of sent mail.
//!
//! A record is the *intent* ("invite employee X at this address"), never the
//! link: the one-time token is minted by the worker as it sends the message and
//! only its digest is stored, on the profile. Nothing here grants access if the
//! store's files are read (sled's log keeps old versions of every value, so a
//! token written once and "dropped after sending" would stay readable).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{SledStore, StoreError};

/// What the message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// An account invitation with an accept-invite link.
    Invite,
    /// A password reset with a reset link.
    PasswordReset,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Invite => "invite",
            MessageKind::PasswordReset => "password_reset",
        }
    }
}

/// Where a message is in its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// Accepted by the SMTP server.
    Sent,
    /// Gave up after the maximum number of attempts; `last_error` says why.
    Dead,
    /// Not sent: a newer message replaced it, the address changed, or the account
    /// no longer waits for it (set up, inactive, deleted).
    Skipped,
}

/// One message in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// Assigned by the domain before the commit (see [`super::Backend::next_id`]).
    pub id: u64,
    pub kind: MessageKind,
    pub employee_id: Uuid,
    /// Recipient address.
    pub to: String,
    /// The employee's display name, for the greeting.
    pub name: String,
    /// When the link stops working: as planned when queued, then as minted
    /// when sent (the mail states it).
    pub expires_at: DateTime<Utc>,
    pub state: DeliveryState,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl SledStore {
    /// One outbox message.
    pub fn outbox_get(&self, id: u64) -> Result<Option<OutboxRecord>, StoreError> {
        match self.outbox.get(id.to_be_bytes())? {
            Some(v) => decode(&v).map(Some),
            None => Ok(None),
        }
    }

    /// Replaces one outbox message's state (the worker, retries). Not flushed.
    pub fn outbox_put(&self, rec: &OutboxRecord) -> Result<(), StoreError> {
        self.outbox_write(None, rec).map(|_| ())
    }

    /// Replaces `old` with `new` only if the stored record still equals `old`
    /// (compare-and-swap); `false` when it changed meanwhile. Not flushed.
    pub fn outbox_replace(
        &self,
        old: &OutboxRecord,
        new: &OutboxRecord,
    ) -> Result<bool, StoreError> {
        self.outbox_write(Some(old), new)
    }

    /// Writes a record and its `outbox_pending` entry in one transaction.
    fn outbox_write(
        &self,
        expect: Option<&OutboxRecord>,
        new: &OutboxRecord,
    ) -> Result<bool, StoreError> {
        use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
        let bytes = serde_json::to_vec(new).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let key = new.id.to_be_bytes();
        let r = (&self.outbox, &self.outbox_pending).transaction(|(outbox, pending)| {
            if let Some(old) = expect {
                let same = match outbox.get(key)? {
                    Some(cur) => decode(&cur).ok().as_ref() == Some(old),
                    None => false,
                };
                if !same {
                    return Err(ConflictableTransactionError::Abort(()));
                }
            }
            outbox.insert(&key, bytes.as_slice())?;
            if new.state == DeliveryState::Pending {
                pending.insert(&key, &[])?;
            } else {
                pending.remove(&key)?;
            }
            Ok(())
        });
        match r {
            Ok(()) => Ok(true),
            Err(TransactionError::Abort(())) => Ok(false),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// Every outbox message, oldest first.
    pub fn outbox_all(&self) -> Result<Vec<OutboxRecord>, StoreError> {
        self.outbox
            .iter()
            .map(|r| {
                let (_, v) = r?;
                decode(&v)
            })
            .collect()
    }

    /// Up to `limit` messages with ids after `after` (oldest first) that `keep`
    /// accepts, and whether more follow. Reads from `after` on only.
    pub fn outbox_page(
        &self,
        after: Option<u64>,
        limit: usize,
        keep: &dyn Fn(&OutboxRecord) -> bool,
    ) -> Result<(Vec<OutboxRecord>, bool), StoreError> {
        use std::ops::Bound;
        let start = match after {
            Some(id) => Bound::Excluded(id.to_be_bytes()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for r in self.outbox.range::<[u8; 8], _>((start, Bound::Unbounded)) {
            let (_, v) = r?;
            let m = decode(&v)?;
            if !keep(&m) {
                continue;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push(m);
        }
        Ok((out, false))
    }

    /// Pending messages whose next attempt is due at `now`, oldest first. Reads
    /// only the `outbox_pending` index, not the (growing) history of sent mail.
    pub fn outbox_due(&self, now: DateTime<Utc>) -> Result<Vec<OutboxRecord>, StoreError> {
        let mut out = Vec::new();
        for r in self.outbox_pending.iter() {
            let (k, _) = r?;
            let Some(v) = self.outbox.get(&k)? else {
                continue;
            };
            let m = decode(&v)?;
            if m.state == DeliveryState::Pending && m.next_attempt_at <= now {
                out.push(m);
            }
        }
        Ok(out)
    }
}

fn decode(v: &[u8]) -> Result<OutboxRecord, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt(format!("outbox record: {e}")))
}
