//! Positions with stable ids, persisted in the store, and group membership (who
//! holds a position). The config's `[[catalog.positions]]` seed the stored list at
//! start ([`Roster::load_positions`]); positions added later (SCIM `POST /Groups`)
//! live only in the store. The in-memory [`Catalog`] is rebuilt from the stored list
//! after every change, so validation always sees what is stored.
//!
//! The store is the truth once seeded: a position later removed from the config
//! stays (delete it through SCIM `DELETE /Groups/{id}`), and a renamed one is
//! added as a new position. Name uniqueness is checked before the write; two
//! concurrent creates of the same name can race (SCIM clients create groups one
//! at a time, so this is accepted for now).
//!
//! Membership is not stored twice: a position's members are the profiles whose
//! `positions` name it, so a SCIM Group PATCH and a change to a user's positions
//! are the same write.

use serde::{Deserialize, Serialize};
use tracing::instrument;
use uuid::Uuid;

use super::catalog::PositionDef;
use super::{Catalog, Employee, EmployeeId, Error, PhotoChange, Roster, decode, validate};
use crate::store::{Actor, AuditAction, AuditEntry, FieldChange};

/// A catalog position with its stable id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub id: Uuid,
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// A change to the members of one position.
#[derive(Debug, Clone)]
pub enum MembershipChange {
    Add(Vec<EmployeeId>),
    Remove(Vec<EmployeeId>),
    /// Exactly these members afterwards.
    Replace(Vec<EmployeeId>),
}

fn decode_position(bytes: &[u8]) -> Result<Position, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::Store(crate::store::StoreError::Corrupt(format!(
            "position record: {e}"
        )))
    })
}

impl Roster {
    /// Seeds the stored positions from the configured catalog (positions the store
    /// lacks, by case-insensitive name, get a new id) and makes the catalog in force
    /// the stored list. Called once at start.
    pub async fn load_positions(&self) -> Result<(), Error> {
        let configured = Catalog::clone(&self.catalog());
        self.set_catalog(configured).await
    }

    /// Puts a new catalog (a reloaded config's) in force: its positions seed the
    /// store as at start ([`Roster::load_positions`]), and the positions in force
    /// are the stored list. Roles, business units and permissions are the new
    /// ones; profiles keep the values they hold.
    pub async fn set_catalog(&self, catalog: Catalog) -> Result<(), Error> {
        let mut stored = self.positions()?;
        for def in catalog.positions() {
            let known = stored
                .iter()
                .any(|p| p.name.to_lowercase() == def.name.to_lowercase());
            if !known {
                let p = Position {
                    id: Uuid::now_v7(),
                    name: def.name.clone(),
                    description: def.description.clone(),
                };
                self.put_position(&p)?;
                stored.push(p);
            }
        }
        self.store.flush().await?;
        self.put_catalog_in_force(|_| catalog)
    }

    /// The stored positions, oldest first.
    pub fn positions(&self) -> Result<Vec<Position>, Error> {
        self.store
            .positions()?
            .iter()
            .map(|(_, b)| decode_position(b))
            .collect()
    }

    /// The stored positions by name: kept in memory since the catalog was last
    /// put in force (every change of a position puts it in force again), read
    /// from the store before that.
    pub fn position_map(&self) -> Result<super::PositionMap, Error> {
        self.follow()?;
        if let Some(m) = self
            .positions_by_name
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            return Ok(m.clone());
        }
        Ok(std::sync::Arc::new(
            self.positions()?
                .into_iter()
                .map(|p| (p.name.clone(), p))
                .collect(),
        ))
    }

    pub fn position(&self, id: Uuid) -> Result<Position, Error> {
        self.positions()?
            .into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| Error::NotFound(format!("no position with id {id}")))
    }

    /// Adds a position to the catalog. Its name must be new (ignoring case).
    #[instrument(skip_all, fields(actor = %actor))]
    pub async fn create_position(
        &self,
        actor: &Actor,
        name: &str,
        description: &str,
    ) -> Result<Position, Error> {
        let name = validate::name("position", name)?;
        self.check_position_name_free(&name, None)?;
        let p = Position {
            id: Uuid::now_v7(),
            name,
            description: description.trim().to_string(),
        };
        self.put_position(&p)?;
        self.refresh_catalog()?;
        self.audit_position(actor, AuditAction::PositionCreate, None, Some(&p.name))?;
        self.store.flush().await?;
        Ok(p)
    }

    /// Renames a position, and every profile that holds it.
    #[instrument(skip_all, fields(actor = %actor, position = %id))]
    pub async fn rename_position(
        &self,
        actor: &Actor,
        id: Uuid,
        new_name: &str,
    ) -> Result<Position, Error> {
        let mut p = self.position(id)?;
        let new_name = validate::name("position", new_name)?;
        if new_name == p.name {
            return Ok(p);
        }
        self.check_position_name_free(&new_name, Some(id))?;
        let old = std::mem::replace(&mut p.name, new_name.clone());
        self.put_position(&p)?;
        self.refresh_catalog()?;
        for e in self.holders(&old)? {
            self.update_positions_of(actor, e.id, |e, _| {
                e.positions.retain(|x| *x != old);
                e.positions.push(new_name.clone());
                e.positions.sort();
                e.positions.dedup();
                Ok(())
            })?;
        }
        self.audit_position(
            actor,
            AuditAction::PositionRename,
            Some(&old),
            Some(&p.name),
        )?;
        self.store.flush().await?;
        Ok(p)
    }

    /// Removes a position from the catalog and from every profile that holds it.
    #[instrument(skip_all, fields(actor = %actor, position = %id))]
    pub async fn delete_position(&self, actor: &Actor, id: Uuid) -> Result<(), Error> {
        let p = self.position(id)?;
        for e in self.holders(&p.name)? {
            self.update_positions_of(actor, e.id, |e, _| {
                e.positions.retain(|x| *x != p.name);
                Ok(())
            })?;
        }
        self.store.remove_position(id)?;
        self.refresh_catalog()?;
        self.audit_position(actor, AuditAction::PositionDelete, Some(&p.name), None)?;
        self.store.flush().await?;
        Ok(())
    }

    /// The profiles holding a position (one streaming pass over the store).
    pub fn holders(&self, position: &str) -> Result<Vec<Employee>, Error> {
        let mut out = Vec::new();
        for row in self.store.scan() {
            let (_, bytes) = row?;
            let e = decode(&bytes)?;
            if e.positions.iter().any(|x| x == position) {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Adds, removes or replaces the holders of a position. Every id to add must
    /// exist (checked before anything changes); removing a non-holder is a no-op.
    #[instrument(skip_all, fields(actor = %actor, position = %id))]
    pub async fn change_members(
        &self,
        actor: &Actor,
        id: Uuid,
        change: MembershipChange,
    ) -> Result<(), Error> {
        let p = self.position(id)?;
        let (add, remove): (Vec<EmployeeId>, Vec<EmployeeId>) = match change {
            MembershipChange::Add(ids) => (ids, vec![]),
            MembershipChange::Remove(ids) => (vec![], ids),
            MembershipChange::Replace(ids) => {
                let drop = self
                    .holders(&p.name)?
                    .into_iter()
                    .map(|e| e.id)
                    .filter(|h| !ids.contains(h))
                    .collect();
                (ids, drop)
            }
        };
        for id in &add {
            self.get(*id).map_err(|_| Error::Invalid {
                field: "members".into(),
                message: format!("no employee with id {id}"),
            })?;
        }
        for id in add {
            self.update_positions_of(actor, id, |e, _| {
                if !e.positions.contains(&p.name) {
                    e.positions.push(p.name.clone());
                    e.positions.sort();
                }
                Ok(())
            })?;
        }
        for id in remove {
            match self.update_positions_of(actor, id, |e, _| {
                e.positions.retain(|x| *x != p.name);
                Ok(())
            }) {
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.store.flush().await?;
        Ok(())
    }

    /// One holder's positions changed by `f` (an `update` in its audit log).
    fn update_positions_of(
        &self,
        actor: &Actor,
        id: EmployeeId,
        f: impl Fn(&mut Employee, &Catalog) -> Result<(), Error>,
    ) -> Result<(Employee, bool), Error> {
        self.modify(actor, id, AuditAction::Update, None, PhotoChange::Keep, f)
    }

    fn check_position_name_free(&self, name: &str, except: Option<Uuid>) -> Result<(), Error> {
        let taken = self
            .positions()?
            .iter()
            .any(|p| Some(p.id) != except && p.name.to_lowercase() == name.to_lowercase());
        if taken {
            return Err(Error::Conflict {
                field: "position".into(),
                message: format!("position `{name}` already exists (names ignore letter case)"),
            });
        }
        Ok(())
    }

    fn put_position(&self, p: &Position) -> Result<(), Error> {
        let bytes = serde_json::to_vec(p)
            .map_err(|e| Error::Store(crate::store::StoreError::Corrupt(e.to_string())))?;
        self.store.put_position(p.id, &bytes)?;
        Ok(())
    }

    /// Makes the catalog in force list exactly the stored positions.
    pub(super) fn refresh_catalog(&self) -> Result<(), Error> {
        self.put_catalog_in_force(|current| current.clone())
    }

    /// Replaces the catalog in force with `base(current)` carrying the stored
    /// positions. The store is read under the write lock, so a concurrent position
    /// change and a reload cannot undo each other.
    fn put_catalog_in_force(&self, base: impl FnOnce(&Catalog) -> Catalog) -> Result<(), Error> {
        let mut in_force = self
            .catalog
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stored = self.positions()?;
        let defs: Vec<PositionDef> = stored
            .iter()
            .map(|p| PositionDef {
                name: p.name.clone(),
                description: p.description.clone(),
            })
            .collect();
        let next: Catalog = base(&in_force)
            .with_positions(defs)
            .map_err(|e| Error::Invalid {
                field: e.key,
                message: e.message,
            })?;
        *in_force = std::sync::Arc::new(next);
        // Still under the catalog's write lock: the map and the catalog change together.
        *self
            .positions_by_name
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::sync::Arc::new(
            stored.into_iter().map(|p| (p.name.clone(), p)).collect(),
        ));
        Ok(())
    }

    fn audit_position(
        &self,
        actor: &Actor,
        action: AuditAction,
        before: Option<&str>,
        after: Option<&str>,
    ) -> Result<(), Error> {
        let change = FieldChange {
            field: "position".into(),
            before: before.into(),
            after: after.into(),
        };
        self.store
            .append_audit(&AuditEntry::new(actor.clone(), None, action, vec![change]))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::employee::catalog::RoleDef;

    fn catalog(positions: &[&str], roles: &[&str]) -> Catalog {
        Catalog::new(
            vec!["jobs.view".into()],
            positions
                .iter()
                .map(|p| PositionDef {
                    name: p.to_string(),
                    description: String::new(),
                })
                .collect(),
            roles
                .iter()
                .map(|r| RoleDef {
                    name: r.to_string(),
                    description: String::new(),
                    permissions: vec!["jobs.view".into()],
                })
                .collect(),
            vec![],
            None,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn set_catalog_seeds_new_positions_and_keeps_stored_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("store")).unwrap();
        let roster = Roster::new(
            store,
            catalog(&["Driver"], &["Viewer"]),
            Default::default(),
            1024,
        );
        roster.load_positions().await.unwrap();
        roster
            .create_position(&Actor::admin("t"), "Scim Made", "")
            .await
            .unwrap();

        roster
            .set_catalog(catalog(&["Mechanic"], &["Viewer", "Auditor"]))
            .await
            .unwrap();
        let c = roster.catalog();
        let names: Vec<&str> = c.positions().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["Driver", "Scim Made", "Mechanic"]);
        assert!(c.role("Auditor").is_some());
        assert_eq!(roster.positions().unwrap().len(), 3);
    }
}
