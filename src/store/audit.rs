//! The audit log's entry: who changed what, and when. Entries are append-only; the
//! store assigns the sequence number when the entry is committed with its change.

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
    /// `create`, `update`, `activate`, `deactivate`, `delete`, ...
    pub action: String,
    pub changes: Vec<FieldChange>,
}

impl AuditEntry {
    pub fn new(
        actor: Actor,
        employee_id: Option<Uuid>,
        action: &str,
        changes: Vec<FieldChange>,
    ) -> Self {
        Self {
            seq: 0,
            at: Utc::now(),
            actor,
            employee_id,
            action: action.to_string(),
            changes,
        }
    }
}

/// The stored form of `entry` with sequence number `seq`: the same bytes as
/// `serde_json::to_vec` of the entry with `seq` set, without copying the entry.
pub(crate) fn encode_with_seq(entry: &AuditEntry, seq: u64) -> serde_json::Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Stored<'a> {
        seq: u64,
        at: &'a DateTime<Utc>,
        actor: &'a Actor,
        employee_id: &'a Option<Uuid>,
        action: &'a str,
        changes: &'a [FieldChange],
    }
    serde_json::to_vec(&Stored {
        seq,
        at: &entry.at,
        actor: &entry.actor,
        employee_id: &entry.employee_id,
        action: &entry.action,
        changes: &entry.changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_is_the_entry_with_its_sequence_number() {
        let mut e = AuditEntry::new(
            Actor::admin("ops"),
            Some(Uuid::new_v4()),
            "update",
            vec![FieldChange {
                field: "email".into(),
                before: "a@x".into(),
                after: "b@x".into(),
            }],
        );
        let bytes = encode_with_seq(&e, 42).unwrap();
        e.seq = 42;
        assert_eq!(bytes, serde_json::to_vec(&e).unwrap());
        let back: AuditEntry = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, e);
    }
}
