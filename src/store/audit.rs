//! The audit log's entry: who changed what, and when. Entries are append-only; the
//! store assigns the sequence number when the entry is committed with its change.
//!
//! In the `audit` tree a value is either one entry (its JSON, which starts with
//! `{`), keyed by its sequence number, or a pack of entries of one batch of
//! writes, keyed by the pack's first (smallest) sequence number:
//!
//! ```text
//! tag    u8      1
//! count  u32 BE  then per entry: seq u64 BE, len u32 BE, the entry's JSON
//! ```
//!
//! sled 0.34 costs about the same per inserted entry whatever its size, so a bulk
//! import writing one pack per [`PACK_ENTRIES`] profiles instead of one entry per
//! profile saves almost half its writes. The entries of a pack have increasing sequence numbers
//! and no other entry's number falls between them (the store allocates them under
//! its write lock), so the entry with number `s` is in the value with the greatest
//! key at most `s`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The kind of client that made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// Someone holding an admin token (admin API, `rosterctl`).
    Admin,
    /// A SCIM client (an identity provider).
    Scim,
    /// A sync source.
    Sync,
    /// The employee, through an account endpoint.
    Account,
    /// An employee signed in to the web console; the name is `<id> <display name>`.
    Employee,
    /// rosterd itself.
    System,
}

/// Who made a change: the kind of client and its configured name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub name: String,
}

impl Actor {
    pub fn admin(name: impl Into<String>) -> Self {
        Self {
            kind: ActorKind::Admin,
            name: name.into(),
        }
    }

    /// An employee acting in the web console (recorded by id and name).
    pub fn employee(id: impl std::fmt::Display, display_name: &str) -> Self {
        Self {
            kind: ActorKind::Employee,
            name: format!("{id} {display_name}"),
        }
    }

    pub fn system() -> Self {
        Self {
            kind: ActorKind::System,
            name: "rosterd".into(),
        }
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = serde_json::to_value(self.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        write!(f, "{kind}:{}", self.name)
    }
}

/// What a change did, as the audit log records it. The serde names are the
/// strings stored in the log and returned by the API (`create`, `update`, ...):
/// they must not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Create,
    Update,
    Activate,
    Deactivate,
    /// A SCIM DELETE removed the profile.
    Delete,
    /// The employee accepted an invitation (username and password set).
    AcceptInvite,
    /// The employee set a new password with a reset link.
    ResetPassword,
    /// An admin sent an invitation (a message queued).
    SendInvite,
    /// An admin sent a password reset (a message queued).
    SendPasswordReset,
    /// The mail worker minted the link of a message it was about to send.
    MailLink,
    PositionCreate,
    PositionRename,
    PositionDelete,
}

impl AuditAction {
    /// Every action, for tests and documentation.
    pub const ALL: [AuditAction; 13] = [
        AuditAction::Create,
        AuditAction::Update,
        AuditAction::Activate,
        AuditAction::Deactivate,
        AuditAction::Delete,
        AuditAction::AcceptInvite,
        AuditAction::ResetPassword,
        AuditAction::SendInvite,
        AuditAction::SendPasswordReset,
        AuditAction::MailLink,
        AuditAction::PositionCreate,
        AuditAction::PositionRename,
        AuditAction::PositionDelete,
    ];

    /// The stored name (the same as serde's).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Create => "create",
            AuditAction::Update => "update",
            AuditAction::Activate => "activate",
            AuditAction::Deactivate => "deactivate",
            AuditAction::Delete => "delete",
            AuditAction::AcceptInvite => "accept_invite",
            AuditAction::ResetPassword => "reset_password",
            AuditAction::SendInvite => "send_invite",
            AuditAction::SendPasswordReset => "send_password_reset",
            AuditAction::MailLink => "mail_link",
            AuditAction::PositionCreate => "position_create",
            AuditAction::PositionRename => "position_rename",
            AuditAction::PositionDelete => "position_delete",
        }
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One field's value before and after a change. Secrets are recorded as `"***"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log (assigned at commit; increasing).
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub employee_id: Option<Uuid>,
    pub action: AuditAction,
    pub changes: Vec<FieldChange>,
}

impl AuditEntry {
    pub fn new(
        actor: Actor,
        employee_id: Option<Uuid>,
        action: AuditAction,
        changes: Vec<FieldChange>,
    ) -> Self {
        Self {
            seq: 0,
            at: Utc::now(),
            actor,
            employee_id,
            action,
            changes,
        }
    }
}

/// The stored form of `entry` with sequence number `seq`: the same bytes as
/// `serde_json::to_vec` of the entry with `seq` set, without copying the entry.
#[cfg(test)]
pub(crate) fn encode_with_seq(entry: &AuditEntry, seq: u64) -> serde_json::Result<Vec<u8>> {
    Ok(with_seq(seq, &encode_tail(entry)?))
}

/// The entry's JSON without its `seq` (see [`with_seq`]).
fn encode_tail(entry: &AuditEntry) -> serde_json::Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Stored<'a> {
        at: &'a DateTime<Utc>,
        actor: &'a Actor,
        employee_id: &'a Option<Uuid>,
        action: AuditAction,
        changes: &'a [FieldChange],
    }
    serde_json::to_vec(&Stored {
        at: &entry.at,
        actor: &entry.actor,
        employee_id: &entry.employee_id,
        action: entry.action,
        changes: &entry.changes,
    })
}

/// `{"seq":N,` then the tail past its `{`: the stored form, as serde writes it.
fn with_seq(seq: u64, tail: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(tail.len() + 28);
    v.extend_from_slice(b"{\"seq\":");
    v.extend_from_slice(seq.to_string().as_bytes());
    v.push(b',');
    v.extend_from_slice(tail.get(1..).unwrap_or_default());
    v
}

/// An audit entry on its way to the store, already encoded but for the
/// sequence number the store gives it at commit: the encoding is done where
/// the write is prepared (possibly on another thread), not under the store's
/// write lock.
#[derive(Debug, Clone)]
pub struct PendingAudit {
    entry: AuditEntry,
    tail: Vec<u8>,
}

impl PendingAudit {
    pub fn new(entry: AuditEntry) -> serde_json::Result<Self> {
        let tail = encode_tail(&entry)?;
        Ok(Self { entry, tail })
    }

    pub fn entry(&self) -> &AuditEntry {
        &self.entry
    }

    /// The stored form with sequence number `seq`.
    pub(crate) fn stored(&self, seq: u64) -> Vec<u8> {
        with_seq(seq, &self.tail)
    }
}

/// Entries per pack. sled 0.34 keeps up to 16 values in a leaf and writes a
/// node bigger than 128 KiB (its default segment size / 4) as a file of its
/// own on every rewrite: packs of 8 entries (about 8 KiB) keep the audit
/// tree's leaves under that, and still save 7 writes in 8.
pub(crate) const PACK_ENTRIES: usize = 8;

/// First byte of a pack. A single entry is JSON and starts with `{`.
const PACK: u8 = 1;

/// What is wrong with a pack: one that cannot be written (nothing is written)
/// or one read back damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PackError {
    #[error("too many audit entries in a batch")]
    TooManyEntries,
    #[error("an audit entry is too long")]
    EntryTooLong,
    #[error("audit pack is cut short")]
    CutShort,
    #[error("audit pack has trailing bytes")]
    TrailingBytes,
}

impl From<PackError> for super::StoreError {
    /// A pack that cannot be written is a write the store cannot hold; one
    /// read back damaged is a corrupt record.
    fn from(e: PackError) -> Self {
        match e {
            PackError::TooManyEntries | PackError::EntryTooLong => {
                super::StoreError::Invalid(e.to_string())
            }
            PackError::CutShort | PackError::TrailingBytes => {
                super::StoreError::Corrupt(e.to_string())
            }
        }
    }
}

/// One value holding several entries, each `(seq, JSON)`, in increasing `seq`.
pub(crate) fn encode_pack(entries: &[(u64, &[u8])]) -> Result<Vec<u8>, PackError> {
    let count = u32::try_from(entries.len()).map_err(|_| PackError::TooManyEntries)?;
    let size: usize = entries.iter().map(|(_, b)| 12 + b.len()).sum();
    let mut v = Vec::with_capacity(5 + size);
    v.push(PACK);
    v.extend_from_slice(&count.to_be_bytes());
    for (seq, bytes) in entries {
        let len = u32::try_from(bytes.len()).map_err(|_| PackError::EntryTooLong)?;
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&len.to_be_bytes());
        v.extend_from_slice(bytes);
    }
    Ok(v)
}

/// The entries `(seq, JSON)` of one stored value, in increasing `seq`, without
/// decoding them; `key_seq` is the value's key (the seq of a single entry).
pub(crate) fn unpack(key_seq: u64, v: &[u8]) -> Result<Vec<(u64, &[u8])>, PackError> {
    if v.first() != Some(&PACK) {
        return Ok(vec![(key_seq, v)]);
    }
    let short = || PackError::CutShort;
    let mut at = 5;
    let count = u32::from_be_bytes(
        v.get(1..5)
            .ok_or_else(short)?
            .try_into()
            .map_err(|_| short())?,
    );
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let head = v.get(at..at + 12).ok_or_else(short)?;
        let seq = u64::from_be_bytes(head[..8].try_into().map_err(|_| short())?);
        let len = u32::from_be_bytes(head[8..].try_into().map_err(|_| short())?) as usize;
        at += 12;
        out.push((seq, v.get(at..at + len).ok_or_else(short)?));
        at += len;
    }
    if at != v.len() {
        return Err(PackError::TrailingBytes);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_is_the_entry_with_its_sequence_number() {
        let mut e = AuditEntry::new(
            Actor::admin("ops"),
            Some(Uuid::new_v4()),
            AuditAction::Update,
            vec![FieldChange {
                field: "email".into(),
                before: "a@x".into(),
                after: "b@x".into(),
            }],
        );
        let bytes = encode_with_seq(&e, 42).unwrap();
        let pending = PendingAudit::new(e.clone()).unwrap().stored(42);
        e.seq = 42;
        assert_eq!(bytes, serde_json::to_vec(&e).unwrap());
        assert_eq!(pending, bytes);
        let back: AuditEntry = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn audit_actions_are_stored_under_their_names() {
        for a in AuditAction::ALL {
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
            let back: AuditAction = serde_json::from_value(a.as_str().into()).unwrap();
            assert_eq!(back, a);
        }
    }

    #[test]
    fn a_pack_holds_its_entries_in_order() {
        let a = encode_with_seq(
            &AuditEntry::new(Actor::system(), None, AuditAction::Create, vec![]),
            7,
        )
        .unwrap();
        let b = encode_with_seq(
            &AuditEntry::new(Actor::system(), None, AuditAction::Update, vec![]),
            9,
        )
        .unwrap();
        let pack = encode_pack(&[(7, &a), (9, &b)]).unwrap();
        assert_eq!(unpack(7, &pack).unwrap(), vec![(7, &a[..]), (9, &b[..])]);
        // A single entry is its own JSON.
        assert_eq!(unpack(7, &a).unwrap(), vec![(7, &a[..])]);
        // A damaged pack is an error, not a shorter list.
        assert!(unpack(7, &pack[..pack.len() - 1]).is_err());
        let mut long = pack.clone();
        long.push(0);
        assert!(unpack(7, &long).is_err());
    }
}
