//! What the sync engine alone calls: the update of a linked profile (its
//! change worked out again at write time), the sources' notes on profiles,
//! and the sync-only reads (by source key, by email, by employee number,
//! profiles with source facts).

use super::{
    Catalog, Employee, EmployeeId, EmployeePatch, Error, Roster, apply_patch, decode, photo_write,
    set_active_fields, validate,
};
use crate::store::{Actor, AuditAction, IndexKind};

impl Roster {
    /// Applies a sync source's change to a profile and records the source key,
    /// without flushing. `f` computes the change from the profile as it is at
    /// write time (it may run again if another write got in first). Changes
    /// nothing, and writes no audit entry, when everything already matches; photo
    /// bytes are written only when their digest differs from the stored one.
    pub fn update_synced(
        &self,
        actor: &Actor,
        id: EmployeeId,
        source: &str,
        key: &str,
        f: impl Fn(&Employee, &Catalog) -> Result<SyncChange, Error>,
    ) -> Result<(Employee, bool), Error> {
        let current = self.get(id)?;
        let action = match f(&current, &self.catalog())?.active {
            Some((true, _)) => AuditAction::Activate,
            Some((false, _)) => AuditAction::Deactivate,
            None => AuditAction::Update,
        };
        self.modify_full(actor, id, action, None, |e, catalog| {
            let change = f(e, catalog)?;
            if let Some(Some(p)) = &change.patch.photo {
                self.check_photo_size(p.bytes.len())?;
            }
            let before = e.photo.clone();
            apply_sync(e, &change, source, key, catalog, actor)?;
            Ok((vec![], photo_write(&before, &e.photo, &change.patch.photo)))
        })
    }
    /// The note `source` left on the profile as it is now (written with the
    /// profile by [`Roster::create_linked_many`] or by
    /// [`Roster::set_sync_marks`]; gone once the profile changes).
    pub fn sync_mark(&self, id: EmployeeId, source: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.store.mark(id.0, source)?)
    }
    /// Leaves `source`'s notes on profiles still at the given versions (not a
    /// change: no new version, no audit entry). Returns how many were left.
    pub fn set_sync_marks(
        &self,
        source: &str,
        marks: &[(EmployeeId, u64, Vec<u8>)],
    ) -> Result<usize, Error> {
        let marks: Vec<(uuid::Uuid, u64, Vec<u8>)> = marks
            .iter()
            .map(|(id, v, m)| (id.0, *v, m.clone()))
            .collect();
        Ok(self.store.set_marks(source, &marks)?)
    }
    /// A profile's stored version, without reading the profile.
    pub fn version(&self, id: EmployeeId) -> Result<Option<u64>, Error> {
        Ok(self.store.version(id.0)?)
    }
    /// Profiles linked to a source (by its join keys), as (key, id).
    pub fn linked(&self, source: &str) -> Result<Vec<(String, EmployeeId)>, Error> {
        Ok(self
            .store
            .index_entries(&IndexKind::Source(source.to_string()))?
            .into_iter()
            .map(|(k, id)| (k, EmployeeId(id)))
            .collect())
    }
    /// The profile linked to `source` under `key`, if any.
    pub fn by_source_key(&self, source: &str, key: &str) -> Result<Option<Employee>, Error> {
        match self
            .store
            .lookup(&IndexKind::Source(source.to_string()), key)?
        {
            Some(id) => self.get(EmployeeId(id)).map(Some),
            None => Ok(None),
        }
    }
    /// The profile with this email (case-insensitive), if any.
    pub fn by_email(&self, email: &str) -> Result<Option<Employee>, Error> {
        match self
            .store
            .lookup(&IndexKind::Email, &validate::fold(email.trim()))?
        {
            Some(id) => self.get(EmployeeId(id)).map(Some),
            None => Ok(None),
        }
    }
    /// [`Roster::sync_mark`] of every profile `source` left a note on, in one
    /// read (a sync plans a large run with it on a shared store).
    pub fn sync_marks(
        &self,
        source: &str,
    ) -> Result<std::collections::HashMap<EmployeeId, Vec<u8>>, Error> {
        Ok(self
            .store
            .marks_of(source)?
            .into_iter()
            .map(|(id, m)| (EmployeeId(id), m))
            .collect())
    }
    /// The profiles among `ids` that exist, by id: [`Roster::get`] of each, in
    /// a few reads on a shared store.
    pub fn get_many(
        &self,
        ids: &[EmployeeId],
    ) -> Result<std::collections::HashMap<EmployeeId, Employee>, Error> {
        let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
        self.store
            .get_many(&ids)?
            .into_iter()
            .map(|(id, bytes)| Ok((EmployeeId(id), decode(&bytes)?)))
            .collect()
    }
    /// Every email on the roster with its profile, in one read: joins by email
    /// without a lookup each ([`EmailIndex::get`] folds as
    /// [`Roster::by_email`] does).
    pub fn email_index(&self) -> Result<EmailIndex, Error> {
        Ok(EmailIndex(
            self.store
                .index_entries(&IndexKind::Email)?
                .into_iter()
                .map(|(k, id)| (k, EmployeeId(id)))
                .collect(),
        ))
    }
    /// Whether every read is a round trip to a store other processes share
    /// (PostgreSQL): then a large pass reads in bulk.
    pub fn reads_are_round_trips(&self) -> bool {
        self.store.shared()
    }
    /// Every profile whose stored bytes contain `needle` (a cheap pre-filter
    /// before decoding). Reads the whole store: for occasional passes only.
    fn scan_containing(&self, needle: &[u8]) -> Result<Vec<Employee>, Error> {
        let finder = memchr::memmem::Finder::new(needle);
        let mut out = Vec::new();
        for r in self.store.scan() {
            let (_, bytes) = r?;
            if finder.find(&bytes).is_some() {
                out.push(decode(&bytes)?);
            }
        }
        Ok(out)
    }
    /// Profiles that sync sources recorded facts on (dates, unresolved managers).
    pub fn with_source_facts(&self) -> Result<Vec<Employee>, Error> {
        Ok(self
            .scan_containing(b"\"source_facts\"")?
            .into_iter()
            .filter(|e| !e.source_facts.is_empty())
            .collect())
    }
    /// Profiles by enterprise employee number.
    pub fn by_employee_number(&self) -> Result<std::collections::HashMap<String, Employee>, Error> {
        Ok(self
            .scan_containing(b"\"employee_number\"")?
            .into_iter()
            .filter_map(|e| e.enterprise.employee_number.clone().map(|n| (n, e)))
            .collect())
    }
}

/// The roster's emails (folded) and their profiles, read at once
/// ([`Roster::email_index`]).
#[derive(Debug, Clone, Default)]
pub struct EmailIndex(std::collections::HashMap<String, EmployeeId>);

impl EmailIndex {
    /// The index of these (email, profile) pairs, folded as the store's is.
    pub fn of(emails: impl IntoIterator<Item = (String, EmployeeId)>) -> Self {
        Self(
            emails
                .into_iter()
                .map(|(e, id)| (validate::fold(e.trim()), id))
                .collect(),
        )
    }
    /// The profile holding `email` (any case), as [`Roster::by_email`] finds it.
    pub fn get(&self, email: &str) -> Option<EmployeeId> {
        self.0.get(&validate::fold(email.trim())).copied()
    }
}

/// What a sync does to one profile: its fields, and possibly its lifecycle
/// (`(active, who)`: `who` is recorded as `deactivated_by` on a deactivation).
#[derive(Debug, Clone, Default)]
pub struct SyncChange {
    pub patch: EmployeePatch,
    pub active: Option<(bool, Actor)>,
}

fn apply_sync(
    e: &mut Employee,
    change: &SyncChange,
    source: &str,
    key: &str,
    catalog: &Catalog,
    actor: &Actor,
) -> Result<(), Error> {
    apply_patch(e, &change.patch, None, catalog, actor)?;
    if !key.is_empty() {
        e.source_keys.insert(source.to_string(), key.to_string());
    }
    if let Some((active, by)) = &change.active {
        set_active_fields(e, *active, by);
    }
    Ok(())
}

/// The profile as it would be after a sync change (nothing written).
pub fn preview_sync(
    current: &Employee,
    change: &SyncChange,
    source: &str,
    key: &str,
    catalog: &Catalog,
    actor: &Actor,
) -> Result<Employee, Error> {
    let mut next = current.clone();
    apply_sync(&mut next, change, source, key, catalog, actor)?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::employee::{NewEmployee, PhotoBytes, fixtures};
    use crate::store::Store;

    #[test]
    fn sync_photo_bytes_are_written_when_their_digest_changes_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let catalog = fixtures::technician_catalog();
        let roster = Roster::new(store.clone(), catalog, Default::default(), 64);
        let actor = Actor {
            kind: crate::store::ActorKind::Sync,
            name: "corp".into(),
        };
        let jpeg = PhotoBytes::new("image/jpeg", vec![0xFF, 0xD8, 0xFF, 1, 2]);
        let input = NewEmployee {
            given_name: "Ann".into(),
            family_name: "Lee".into(),
            email: "ann@example.com".into(),
            photo: Some(jpeg.clone()),
            ..Default::default()
        };
        let id = roster
            .create_linked_many(
                &actor,
                "corp",
                &[(input, "k1")],
                10,
                |(i, k)| (i.clone(), k.to_string()),
                |_, _| None,
            )
            .pop()
            .unwrap()
            .unwrap();
        let e = roster.get(id).unwrap();
        assert_eq!(e.photo, Some(jpeg.photo()));
        assert_eq!(
            roster.photo(e.id).unwrap(),
            ("image/jpeg".into(), jpeg.bytes.to_vec())
        );
        let sync = |photo: Option<Option<PhotoBytes>>| {
            roster
                .update_synced(&actor, e.id, "corp", "k1", |_, _| {
                    Ok(SyncChange {
                        patch: EmployeePatch {
                            photo: photo.clone(),
                            ..Default::default()
                        },
                        active: None,
                    })
                })
                .unwrap()
                .1
        };
        let audit_len = || roster.audit(Some(e.id), None, 100).unwrap().len();
        let n = audit_len();
        assert!(
            !sync(Some(Some(jpeg.clone()))),
            "same digest: nothing written"
        );
        assert_eq!(audit_len(), n);
        let png = PhotoBytes::new("image/png", b"\x89PNG\r\n\x1a\n-2".to_vec());
        assert!(sync(Some(Some(png.clone()))));
        assert_eq!(
            roster.photo(e.id).unwrap(),
            ("image/png".into(), png.bytes.to_vec())
        );
        let entry = &roster.audit(Some(e.id), None, 1).unwrap()[0];
        assert_eq!(entry.changes[0].field, "photo");
        assert_eq!(entry.changes[0].after["sha256"], png.sha256.as_str());
        assert!(sync(Some(None)), "gone from the source: removed");
        assert!(store.photo(e.id.0).unwrap().is_none());
        assert_eq!(roster.get(e.id).unwrap().photo, None);
        // Larger than [photos] max_bytes: refused (the sync demotes it to a warning first).
        let big = PhotoBytes::new("image/jpeg", vec![0xFF; 65]);
        let r = roster.update_synced(&actor, e.id, "corp", "k1", |_, _| {
            Ok(SyncChange {
                patch: EmployeePatch {
                    photo: Some(Some(big.clone())),
                    ..Default::default()
                },
                active: None,
            })
        });
        assert!(matches!(r, Err(Error::PhotoTooLarge { size: 65, max: 64 })));
    }
}
