//! Activating and deactivating profiles, one or many (bulk, with a dry run).
//! An inactive profile is kept and cannot sign in; who deactivated it is
//! recorded.

use tracing::instrument;

use super::{BulkOutcome, Employee, EmployeeId, Error, Roster, check_bulk_size, each_id};
use crate::store::{Actor, AuditAction, PhotoChange};

impl Roster {
    /// Activates or deactivates one profile. Returns the profile and whether it
    /// changed (activating an active profile changes nothing and is not an error).
    #[instrument(skip_all, fields(actor = %actor, employee = %id, active))]
    pub async fn set_active(
        &self,
        actor: &Actor,
        id: EmployeeId,
        active: bool,
    ) -> Result<(Employee, bool), Error> {
        let r = self.set_active_unflushed(actor, id, active)?;
        self.store.flush().await?;
        Ok(r)
    }
    fn set_active_unflushed(
        &self,
        actor: &Actor,
        id: EmployeeId,
        active: bool,
    ) -> Result<(Employee, bool), Error> {
        let action = if active {
            AuditAction::Activate
        } else {
            AuditAction::Deactivate
        };
        self.modify(actor, id, action, None, PhotoChange::Keep, |e, _| {
            set_active_fields(e, active, actor);
            Ok(())
        })
    }
    /// Activates or deactivates many profiles. Each id succeeds or fails on its own;
    /// the result lists every id in order. One flush covers the whole batch. With
    /// `dry_run`, nothing is written and `changed` says what would change.
    #[instrument(skip_all, fields(actor = %actor, count = ids.len(), active))]
    pub async fn bulk_set_active(
        &self,
        actor: &Actor,
        ids: &[String],
        active: bool,
        dry_run: bool,
    ) -> Result<Vec<BulkOutcome>, Error> {
        check_bulk_size(ids)?;
        let one = |id| {
            if dry_run {
                Ok(self.get(id)?.active != active)
            } else {
                self.set_active_unflushed(actor, id, active)
                    .map(|(_, changed)| changed)
            }
        };
        let out = each_id(ids, one, |e| e.to_string())?;
        self.store.flush().await?;
        Ok(out)
    }
}

pub(super) fn set_active_fields(e: &mut Employee, active: bool, actor: &Actor) {
    if e.active == active {
        return;
    }
    e.active = active;
    e.deactivated_by = (!active).then(|| actor.clone());
}
