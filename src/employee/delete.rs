//! Removing a profile for good (SCIM DELETE: the identity provider asked for
//! it), audited. A sync never deletes: leavers are deactivated.

use tracing::instrument;

use super::{EmployeeId, Error, Roster, diff};
use crate::store::{Actor, AuditAction, AuditEntry, PendingAudit, PhotoChange, StoreError, Write};

impl Roster {
    /// Removes a profile for good (SCIM DELETE). Audited.
    #[instrument(skip_all, fields(actor = %actor, employee = %id))]
    pub async fn delete(&self, actor: &Actor, id: EmployeeId) -> Result<(), Error> {
        let e = self.get(id)?;
        let audit = AuditEntry::new(
            actor.clone(),
            Some(id.0),
            AuditAction::Delete,
            diff(Some(&e), None),
        );
        self.store.commit(&Write {
            id: id.0,
            expected_version: Some(e.version),
            record: None,
            photo: PhotoChange::Remove,
            audit: PendingAudit::new(audit).map_err(|err| StoreError::Corrupt(err.to_string()))?,
            outbox: vec![],
        })?;
        self.projection.remove(id.0);
        self.store.flush().await?;
        Ok(())
    }
}
