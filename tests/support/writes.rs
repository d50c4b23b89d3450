//! A store-level write (what the domain hands `Backend::commit_many`), for the
//! store tests in `tests/it/postgres.rs` and `benches/store_backend.rs`: a
//! record at `version` with `body` and unique `keys`, created by the system.

#![allow(dead_code)]

use rosterd::store::{
    Actor, AuditAction, AuditEntry, IndexKeys, IndexKind, PendingAudit, PhotoChange, RecordWrite,
    Write,
};
use uuid::Uuid;

/// `expected`: `None` for a create, the stored version for an update.
pub fn write(
    id: Uuid,
    expected: Option<u64>,
    version: u64,
    body: String,
    keys: Vec<(IndexKind, String)>,
    active: bool,
) -> Write {
    Write {
        id,
        expected_version: expected,
        record: Some(RecordWrite {
            version,
            bytes: body.into_bytes(),
            keys: IndexKeys { entries: keys },
            mark: None,
            active,
        }),
        photo: PhotoChange::Keep,
        audit: PendingAudit::new(AuditEntry::new(
            Actor::system(),
            Some(id),
            AuditAction::Create,
            vec![],
        ))
        .expect("an audit entry encodes"),
        outbox: vec![],
    }
}
