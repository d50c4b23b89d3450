//! The read-modify-write every change goes through: optimistic concurrency
//! (retried when another writer got in first), the audit entry of the
//! change's diff, the outbox messages and photo bytes it writes in the same
//! transaction, an email change's links, and the store's refusals mapped to
//! the domain's errors. Nothing here flushes: callers flush before
//! acknowledging.
//!
//! The layers, thinnest first: [`Roster::modify`] (a field change),
//! [`Roster::modify_with`] (that also queues messages), [`Roster::modify_full`]
//! (that also decides the photo bytes at write time), [`Roster::modify_noted`]
//! (that also notes why in the audit entry).

use chrono::Utc;

use super::{
    AccountStatus, Catalog, Employee, EmployeeId, Error, Roster, TokenPurpose, audit_note, diff,
    validate,
};
use crate::store::{
    Actor, AuditAction, AuditEntry, IndexKeys, IndexKind, OutboxRecord, PendingAudit, PhotoChange,
    RecordWrite, StoreError, Write,
};

impl Roster {
    /// Read-modify-write with optimistic concurrency; retries when another writer
    /// got there first. Does not flush: callers flush before acknowledging.
    pub(super) fn modify(
        &self,
        actor: &Actor,
        id: EmployeeId,
        action: AuditAction,
        expected_version: Option<u64>,
        photo: PhotoChange,
        f: impl Fn(&mut Employee, &Catalog) -> Result<(), Error>,
    ) -> Result<(Employee, bool), Error> {
        self.modify_with(actor, id, action, expected_version, photo, |e, c| {
            f(e, c).map(|()| vec![])
        })
    }
    /// [`Roster::modify`] whose change also puts messages in the outbox, in the
    /// same transaction.
    pub(super) fn modify_with(
        &self,
        actor: &Actor,
        id: EmployeeId,
        action: AuditAction,
        expected_version: Option<u64>,
        photo: PhotoChange,
        f: impl Fn(&mut Employee, &Catalog) -> Result<Vec<OutboxRecord>, Error>,
    ) -> Result<(Employee, bool), Error> {
        self.modify_full(actor, id, action, expected_version, |e, catalog| {
            Ok((f(e, catalog)?, photo.clone()))
        })
    }
    /// [`Roster::modify_with`] whose change also decides the photo bytes to
    /// write, from the profile as it is at write time.
    pub(super) fn modify_full(
        &self,
        actor: &Actor,
        id: EmployeeId,
        action: AuditAction,
        expected_version: Option<u64>,
        f: impl Fn(&mut Employee, &Catalog) -> Result<(Vec<OutboxRecord>, PhotoChange), Error>,
    ) -> Result<(Employee, bool), Error> {
        self.modify_noted(actor, id, action, expected_version, None, f)
    }
    /// [`Roster::modify_full`] with a note in the audit entry (when the change
    /// writes anything).
    pub(super) fn modify_noted(
        &self,
        actor: &Actor,
        id: EmployeeId,
        action: AuditAction,
        expected_version: Option<u64>,
        note: Option<&str>,
        f: impl Fn(&mut Employee, &Catalog) -> Result<(Vec<OutboxRecord>, PhotoChange), Error>,
    ) -> Result<(Employee, bool), Error> {
        let catalog = self.catalog();
        let mut attempts = 0;
        loop {
            attempts += 1;
            // Again after a conflict: from the store itself (on a shared store
            // `get` answers from memory, which this read already caught up).
            let current = if attempts == 1 {
                self.get(id)?
            } else {
                self.get_stored(id)?
            };
            if let Some(v) = expected_version
                && v != current.version
            {
                return Err(Error::VersionMismatch {
                    expected: v,
                    current: current.version,
                });
            }
            let mut next = current.clone();
            let (mut outbox, photo) = f(&mut next, &catalog)?;
            if validate::fold(&next.email) != validate::fold(&current.email) {
                self.relink_after_email_change(&mut next, &mut outbox)?;
            }
            let changes = diff(Some(&current), Some(&next));
            if changes.is_empty() && matches!(photo, PhotoChange::Keep) && outbox.is_empty() {
                return Ok((current, false));
            }
            next.version = current.version + 1;
            next.updated_at = Utc::now();
            let mut changes = changes;
            changes.extend(note.map(audit_note));
            let audit = AuditEntry::new(actor.clone(), Some(id.0), action, changes);
            match self.commit_with(Some(current.version), &next, photo, audit, outbox) {
                Ok(()) => return Ok((next, true)),
                Err(Error::Store(StoreError::VersionConflict { .. })) if attempts < 10 => continue,
                Err(e) => return Err(e),
            }
        }
    }
    /// An email change (by any client: admin API, SCIM, a sync) supersedes the
    /// profile's live invite or reset link and any message still queued for the
    /// old address: whoever holds the old (perhaps mistyped) address must not own
    /// the account. An account still waiting for its invitation (status `invite`,
    /// not set up, active) gets a fresh one at the new address, in the same
    /// transaction. Both show in the change's audit entry (`account_token`).
    fn relink_after_email_change(
        &self,
        e: &mut Employee,
        outbox: &mut Vec<OutboxRecord>,
    ) -> Result<(), Error> {
        let had_link = e.account_token.take().is_some();
        let waiting =
            e.account_status == AccountStatus::Invite && e.password_hash.is_none() && e.active;
        // A message the change itself queued is rebuilt for the new address.
        let queued = outbox.last().map(|m| match m.kind {
            crate::store::MessageKind::Invite => TokenPurpose::Invite,
            crate::store::MessageKind::PasswordReset => TokenPurpose::PasswordReset,
        });
        outbox.clear();
        let purpose = queued.or(waiting.then_some(TokenPurpose::Invite));
        if let Some(purpose) = purpose {
            outbox.push(self.queue_link(e, purpose)?);
            tracing::info!(employee = %e.id, kind = ?purpose, "email changed: link queued again for the new address");
        } else if had_link {
            tracing::info!(employee = %e.id, "email changed: the pending link was withdrawn");
        }
        Ok(())
    }
    pub(super) fn write_for(
        expected_version: Option<u64>,
        e: &Employee,
        photo: PhotoChange,
        audit: AuditEntry,
        outbox: Vec<OutboxRecord>,
    ) -> Result<Write, Error> {
        let bytes = serde_json::to_vec(e).map_err(|err| StoreError::Corrupt(err.to_string()))?;
        Ok(Write {
            id: e.id.0,
            expected_version,
            record: Some(RecordWrite {
                version: e.version,
                bytes,
                keys: index_keys(e),
                mark: None,
                active: e.active,
            }),
            photo,
            audit: PendingAudit::new(audit).map_err(|err| StoreError::Corrupt(err.to_string()))?,
            outbox,
        })
    }
    pub(super) fn commit_with(
        &self,
        expected_version: Option<u64>,
        e: &Employee,
        photo: PhotoChange,
        audit: AuditEntry,
        outbox: Vec<OutboxRecord>,
    ) -> Result<(), Error> {
        let w = Self::write_for(expected_version, e, photo, audit, outbox)?;
        self.store
            .commit(&w)
            .map_err(|err| self.store_error(e, err))?;
        self.projection.put(e, &w.outbox);
        Ok(())
    }
    /// Maps a store refusal to the domain's error (a taken unique key → 409).
    pub(super) fn store_error(&self, e: &Employee, err: StoreError) -> Error {
        match err {
            StoreError::Unique { index, key } => {
                let (field, shown) = match &index {
                    IndexKind::Email => ("email", e.email.clone()),
                    IndexKind::Username => ("username", e.username.clone()),
                    IndexKind::ExternalId => ("external_id", key),
                    IndexKind::Source(_) => ("source_keys", key),
                    IndexKind::AccountToken => ("account_token", "***".into()),
                };
                Error::Conflict {
                    field: field.into(),
                    message: format!(
                        "`{shown}` is already used by another employee ({field} is unique, ignoring letter case)"
                    ),
                }
            }
            StoreError::Invalid(message) => Error::Invalid {
                field: "record".into(),
                message,
            },
            other => other.into(),
        }
    }
}

/// The unique keys of a profile: email and username lowercased, externalId as is,
/// and each source's join key.
fn index_keys(e: &Employee) -> IndexKeys {
    let mut entries = vec![
        (IndexKind::Email, validate::fold(&e.email)),
        (IndexKind::Username, validate::fold(&e.username)),
    ];
    if let Some(x) = &e.external_id {
        entries.push((IndexKind::ExternalId, x.clone()));
    }
    for (source, key) in &e.source_keys {
        entries.push((IndexKind::Source(source.clone()), key.clone()));
    }
    if let Some(d) = e.account_token.as_ref().and_then(|t| t.digest.as_ref()) {
        entries.push((IndexKind::AccountToken, d.clone()));
    }
    IndexKeys { entries }
}
