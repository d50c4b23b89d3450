//! Creating profiles: one from a client (admin API, console, SCIM), many at
//! once (bulk loads), and the sync's linked creates (one, or many in batches
//! with the next batch prepared on a second thread). Every path builds the
//! profile with [`build_new`] (every field rule, no I/O) and writes it with its
//! audit entry and, for account status `invite`, its invitation in one
//! transaction.

use chrono::Utc;
use tracing::instrument;

use super::{
    AccountStatus, Catalog, Employee, EmployeeId, Error, NewEmployee, PasswordHash,
    PermissionOverrides, Photo, Roster, TokenPurpose, audit_note, diff, validate,
};
use crate::store::{Actor, AuditAction, AuditEntry, PhotoChange, StoreError, Write};

impl Roster {
    /// Creates a profile.
    pub async fn create(&self, actor: &Actor, input: NewEmployee) -> Result<Employee, Error> {
        self.create_with_photo(actor, input, None).await
    }
    /// Creates a profile with an uploaded photo (`(content type, bytes)`,
    /// checked as [`Roster::set_photo`] checks it), the profile and its photo
    /// in one write: either both are stored or neither.
    #[instrument(skip_all, fields(actor = %actor))]
    pub async fn create_with_photo(
        &self,
        actor: &Actor,
        input: NewEmployee,
        photo: Option<(String, Vec<u8>)>,
    ) -> Result<Employee, Error> {
        let photo = match photo {
            Some((content_type, bytes)) => Some(self.uploaded_photo(&content_type, bytes)?),
            None => None,
        };
        let account_status = input.account_status.unwrap_or(AccountStatus::Later);
        let password_hash = match (account_status, &input.password) {
            (AccountStatus::Credentials, Some(p)) if input.password_unchecked => {
                Some(self.hash(p).await?)
            }
            (AccountStatus::Credentials, Some(p)) => Some(self.hash_password(p).await?),
            _ => None,
        };
        let mut e = build_new(&self.catalog(), &input, password_hash, actor)?;
        let change = match photo {
            Some((meta, bytes)) => {
                e.photo = Some(meta);
                PhotoChange::Set(bytes)
            }
            None => PhotoChange::Keep,
        };
        let e = self.insert_new_noted(actor, e, input.audit_note.as_deref(), change)?;
        self.store.flush().await?;
        tracing::info!(employee = %e.id, "employee created");
        Ok(e)
    }
    /// Creates many profiles with one flush at the end (bulk loads, imports). Each
    /// input succeeds or fails on its own; nothing is acknowledged before the flush.
    #[instrument(skip_all, fields(actor = %actor, count = inputs.len()))]
    pub async fn create_many(
        &self,
        actor: &Actor,
        inputs: Vec<NewEmployee>,
    ) -> Result<Vec<Result<Employee, Error>>, Error> {
        let mut built = Vec::with_capacity(inputs.len());
        for input in inputs {
            let password_hash = match (input.account_status, &input.password) {
                (Some(AccountStatus::Credentials), Some(p)) => Some(self.hash_password(p).await?),
                _ => None,
            };
            built.push(
                build_new(&self.catalog(), &input, password_hash, actor)
                    .map(|e| (e, PhotoChange::Keep)),
            );
        }
        let mut out = self.insert_many(actor, built);
        // The store itself failed (not one input): the whole call fails with
        // the store's error as it is (an I/O error stays one).
        let failed = out.iter().position(|r| matches!(r, Err(Error::Store(_))));
        if let Some(Err(e)) = failed.map(|i| out.swap_remove(i)) {
            return Err(e);
        }
        self.store.flush().await?;
        Ok(out)
    }
    /// Creates a profile linked to a sync source, without flushing (the sync
    /// flushes once per batch with [`Roster::flush`]).
    pub fn create_linked(
        &self,
        actor: &Actor,
        input: &NewEmployee,
        source: &str,
        key: &str,
    ) -> Result<Employee, Error> {
        let mut e = build_new(&self.catalog(), input, None, actor)?;
        e.source_keys.insert(source.to_string(), key.to_string());
        self.insert_new(actor, e)
    }
    /// Writes a new profile with its audit entry and, for account status `invite`,
    /// its invitation (token digest on the record, message in the outbox) in one
    /// transaction. Every create path goes through here. Not flushed.
    fn insert_new(&self, actor: &Actor, e: Employee) -> Result<Employee, Error> {
        self.insert_new_noted(actor, e, None, PhotoChange::Keep)
    }
    /// [`Roster::insert_new`] with a note in the audit entry.
    fn insert_new_noted(
        &self,
        actor: &Actor,
        mut e: Employee,
        note: Option<&str>,
        photo: PhotoChange,
    ) -> Result<Employee, Error> {
        let outbox = if e.account_status == AccountStatus::Invite {
            vec![self.queue_link(&mut e, TokenPurpose::Invite)?]
        } else {
            vec![]
        };
        let mut changes = diff(None, Some(&e));
        changes.extend(note.map(audit_note));
        let audit = AuditEntry::new(actor.clone(), Some(e.id.0), AuditAction::Create, changes);
        self.commit_with(None, &e, photo, audit, outbox)?;
        if e.account_status == AccountStatus::Invite {
            tracing::info!(employee = %e.id, "invitation queued");
        }
        Ok(e)
    }
    /// Creates many profiles linked to a source (no flush), `batch` to a store
    /// transaction, each with its photo bytes if the source brings some. `input`
    /// gives an item's new profile and source key, `mark` the note (see
    /// [`Roster::sync_mark`]) the new profile carries for `source`. If the store
    /// refuses a batch (a unique key taken meanwhile), that batch falls back to
    /// one by one so that each failure is attributed. One result per item, in
    /// order; if the store itself fails, the results stop after that batch.
    ///
    /// With more than one batch, a second thread prepares the next batch
    /// (validates, builds and encodes the profiles and their audit entries)
    /// while this one writes the current one: a bulk import keeps both cores
    /// busy instead of one.
    pub fn create_linked_many<T: Sync>(
        &self,
        actor: &Actor,
        source: &str,
        items: &[T],
        batch: usize,
        input: impl Fn(&T) -> (NewEmployee, String) + Sync,
        mark: impl Fn(&T, &Employee) -> Option<Vec<u8>> + Sync,
    ) -> Vec<Result<EmployeeId, Error>> {
        let prepare = |chunk: &[T]| {
            // The catalog in force, without following the other nodes per
            // batch: the sync planned against it (and a follow racing this
            // process's own commits would read their rows back).
            let catalog = self.catalog_in_force();
            let built: Vec<Result<(Employee, PhotoChange), Error>> = chunk
                .iter()
                .map(|item| {
                    let (input, key) = input(item);
                    if let Some(p) = &input.photo {
                        self.check_photo_size(p.bytes.len())?;
                    }
                    let mut e = build_new(&catalog, &input, None, actor)?;
                    e.source_keys.insert(source.to_string(), key);
                    let photo = match input.photo {
                        Some(p) => PhotoChange::Set(p.bytes.to_vec()),
                        None => PhotoChange::Keep,
                    };
                    Ok((e, photo))
                })
                .collect();
            let note = |i: usize, e: &Employee| mark(&chunk[i], e);
            self.prepare_inserts(actor, built, Some((source, &note)))
        };
        let ids = |done: Vec<Result<Employee, Error>>| {
            done.into_iter()
                .map(|r| r.map(|e| e.id))
                .collect::<Vec<_>>()
        };
        let batch = batch.max(1);
        if items.len() <= batch {
            return ids(self.commit_inserts(prepare(items)));
        }
        std::thread::scope(|scope| {
            // One batch prepared ahead: memory stays at two batches.
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            scope.spawn(move || {
                for chunk in items.chunks(batch) {
                    if tx.send(prepare(chunk)).is_err() {
                        break;
                    }
                }
            });
            let mut out = Vec::with_capacity(items.len());
            for prepared in rx {
                let done = ids(self.commit_inserts(prepared));
                let failed = done.iter().any(|r| matches!(r, Err(Error::Store(_))));
                out.extend(done);
                if failed {
                    // The store failed: no further batch is tried (dropping
                    // the receiver stops the preparing thread).
                    break;
                }
            }
            out
        })
    }
    /// Writes new profiles (with invitations, as [`Roster::insert_new`]) in ONE
    /// store transaction. If the store refuses the batch (a unique key taken, by
    /// another item or meanwhile), falls back to one by one so that each failure
    /// is attributed. One result per input, in order. Not flushed.
    fn insert_many(
        &self,
        actor: &Actor,
        built: Vec<Result<(Employee, PhotoChange), Error>>,
    ) -> Vec<Result<Employee, Error>> {
        self.commit_inserts(self.prepare_inserts(actor, built, None))
    }
    /// The first half of [`Roster::insert_many`]: each new profile's write
    /// (record, audit entry, invitation), or its error. Reads nothing from the
    /// store, so it can run ahead of the writes. `mark`: the source whose note
    /// each new profile gets, and the note for the i-th input.
    #[allow(clippy::type_complexity)]
    fn prepare_inserts(
        &self,
        actor: &Actor,
        built: Vec<Result<(Employee, PhotoChange), Error>>,
        mark: Option<(&str, &dyn Fn(usize, &Employee) -> Option<Vec<u8>>)>,
    ) -> PreparedInserts {
        // `slots` maps each input to its write, or keeps its error.
        let mut slots: Vec<Result<Employee, Error>> = Vec::with_capacity(built.len());
        let mut writes: Vec<Write> = Vec::with_capacity(built.len());
        for (i, r) in built.into_iter().enumerate() {
            let prepared = r.and_then(|(mut e, photo)| {
                let outbox = if e.account_status == AccountStatus::Invite {
                    vec![self.queue_link(&mut e, TokenPurpose::Invite)?]
                } else {
                    vec![]
                };
                let audit = AuditEntry::new(
                    actor.clone(),
                    Some(e.id.0),
                    AuditAction::Create,
                    diff(None, Some(&e)),
                );
                let mut w = Self::write_for(None, &e, photo, audit, outbox)?;
                if let (Some((source, f)), Some(r)) = (mark, w.record.as_mut()) {
                    r.mark = f(i, &e).map(|m| (source.to_string(), m));
                }
                Ok((e, w))
            });
            slots.push(prepared.map(|(e, w)| {
                writes.push(w);
                e
            }));
        }
        PreparedInserts { slots, writes }
    }
    /// The second half of [`Roster::insert_many`]: the writes in one store
    /// transaction, or one by one if the store refuses the batch.
    fn commit_inserts(&self, p: PreparedInserts) -> Vec<Result<Employee, Error>> {
        let PreparedInserts { slots, writes } = p;
        match self.store.commit_many(&writes) {
            Ok(_) => {
                // `writes` holds one write per successful slot, in order.
                for (e, w) in slots.iter().filter_map(|r| r.as_ref().ok()).zip(&writes) {
                    self.projection.put(e, &w.outbox);
                }
                return slots;
            }
            Err(
                StoreError::Unique { .. }
                | StoreError::VersionConflict { .. }
                | StoreError::Invalid(_),
            ) => {}
            Err(e) => {
                // The store failed: every slot gets its error as it is.
                return slots
                    .into_iter()
                    .map(|_| Err(Error::Store(e.clone())))
                    .collect();
            }
        }
        // The batch was refused: one by one, so that each failure is attributed.
        let mut writes = writes.into_iter();
        slots
            .into_iter()
            .map(|r| {
                let e = r?;
                let w = writes.next().ok_or_else(|| {
                    Error::Store(StoreError::Corrupt("a prepared write is missing".into()))
                })?;
                self.store
                    .commit(&w)
                    .map_err(|err| self.store_error(&e, err))?;
                self.projection.put(&e, &w.outbox);
                Ok(e)
            })
            .collect()
    }
}

/// New profiles' writes, ready to commit (see [`Roster::prepare_inserts`]).
struct PreparedInserts {
    /// One per input: the new profile (its write is next in `writes`) or why not.
    slots: Vec<Result<Employee, Error>>,
    writes: Vec<Write>,
}

/// Builds a new profile from client input: every field rule, no I/O. With
/// `credentials`, the caller passes the password's hash (already policy-checked).
pub fn build_new(
    catalog: &Catalog,
    input: &NewEmployee,
    password_hash: Option<PasswordHash>,
    actor: &Actor,
) -> Result<Employee, Error> {
    let (given_name, family_name, display_name, display_name_derived) = new_names(input)?;
    let email = validate::email(&input.email)?;
    let username = match input.username.as_deref() {
        Some(u) => validate::username(u)?,
        None => email.clone(),
    };
    let role = match input.role.as_deref() {
        Some(r) => validate::role(catalog, r)?,
        None => catalog
            .default_role()
            .map(str::to_string)
            .ok_or_else(|| Error::invalid("role", "is required (no default role is configured)"))?,
    };
    let account_status = input.account_status.unwrap_or(AccountStatus::Later);
    let password_hash_field = new_password_hash(account_status, input, password_hash)?;
    let now = Utc::now();
    let active = input.active.unwrap_or(true);
    let e = Employee {
        id: EmployeeId::new(),
        version: 1,
        given_name,
        family_name,
        display_name,
        display_name_derived,
        email,
        username,
        positions: validate::positions(catalog, &input.positions)?,
        role,
        business_unit: match input.business_unit.as_deref() {
            Some(b) => validate::business_unit(catalog, b)?,
            None => None,
        },
        photo: match (&input.photo, input.photo_url.as_deref()) {
            (Some(p), _) => Some(p.photo()),
            (None, Some(u)) if !u.trim().is_empty() => Some(Photo::Url {
                url: validate::photo_url(u)?,
            }),
            _ => None,
        },
        mobile_phone: match input.mobile_phone.as_deref().map(str::trim) {
            Some(p) if !p.is_empty() => Some(validate::phone("mobile_phone", p)?),
            _ => None,
        },
        office_phone: match &input.office_phone {
            Some(p) if !p.number.trim().is_empty() => Some(validate::office_phone(p)?),
            _ => None,
        },
        account_status,
        password_hash: password_hash_field,
        enabled: input.enabled.unwrap_or(true),
        active,
        permissions: match &input.permissions {
            Some(p) => validate::permissions(catalog, p)?,
            None => PermissionOverrides::default(),
        },
        external_id: match input.external_id.as_deref() {
            Some(x) => validate::optional_text("external_id", x, 256)?,
            None => None,
        },
        enterprise: validate::enterprise(&input.enterprise)?,
        source_keys: Default::default(),
        deactivated_by: (!active).then(|| actor.clone()),
        source_facts: input
            .source_facts
            .iter()
            .filter(|(_, f)| !f.is_empty())
            .map(|(k, f)| (k.clone(), f.clone()))
            .collect(),
        account_token: None,
        created_at: now,
        updated_at: now,
    };
    Ok(e)
}

/// The new profile's names: given and family name as given, the display name
/// as given or derived from them (`true`: derived); at least one name.
fn new_names(input: &NewEmployee) -> Result<(String, String, String, bool), Error> {
    let given_name = validate::optional_name("given_name", &input.given_name)?;
    let family_name = validate::optional_name("family_name", &input.family_name)?;
    let given_display = input.display_name.as_deref().unwrap_or("");
    validate::has_a_name(&given_name, &family_name, given_display)?;
    let (display_name, derived) = match given_display.trim() {
        "" => (
            validate::derived_display_name(&given_name, &family_name),
            true,
        ),
        d => (validate::name("display_name", d)?, false),
    };
    Ok((given_name, family_name, display_name, derived))
}

/// The new profile's password hash: required with `credentials` (the caller
/// hashed it), refused with any other account status.
fn new_password_hash(
    account_status: AccountStatus,
    input: &NewEmployee,
    password_hash: Option<PasswordHash>,
) -> Result<Option<PasswordHash>, Error> {
    match (account_status, &input.password) {
        (AccountStatus::Credentials, None) => Err(Error::invalid(
            "password",
            "is required when account_status is `credentials`",
        )),
        (AccountStatus::Credentials, Some(_)) => password_hash
            .map(Some)
            .ok_or_else(|| Error::invalid("password", "could not be hashed")),
        (_, Some(_)) => Err(Error::invalid(
            "password",
            "is only accepted with account_status `credentials`",
        )),
        (_, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::employee::fixtures;
    use crate::employee::{EmployeePatch, apply_patch};

    #[test]
    fn one_name_part_is_a_name_and_a_derived_display_name_follows_the_parts() {
        let catalog = fixtures::technician_catalog();
        let actor = Actor::admin("t");
        let new = |given: &str, family: &str, display: Option<&str>| NewEmployee {
            given_name: given.into(),
            family_name: family.into(),
            display_name: display.map(str::to_string),
            email: "a@example.com".into(),
            ..Default::default()
        };
        let e = build_new(&catalog, &new("Sukarno", "", None), None, &actor).unwrap();
        assert_eq!(
            (e.display_name.as_str(), e.display_name_derived),
            ("Sukarno", true)
        );
        let e = build_new(&catalog, &new("", "", Some(" Teuku ")), None, &actor).unwrap();
        assert_eq!(
            (
                e.given_name.as_str(),
                e.display_name.as_str(),
                e.display_name_derived
            ),
            ("", "Teuku", false)
        );
        let err = build_new(&catalog, &new(" ", "", Some("")), None, &actor).unwrap_err();
        assert!(
            matches!(err, Error::Invalid { ref field, .. } if field == "name"),
            "{err}"
        );

        // Derived: follows the parts. Given: stays.
        let mut derived = build_new(&catalog, &new("Ada", "", None), None, &actor).unwrap();
        let family = EmployeePatch {
            family_name: Some("Lovelace".into()),
            ..Default::default()
        };
        apply_patch(&mut derived, &family, None, &catalog, &actor).unwrap();
        assert_eq!(derived.display_name, "Ada Lovelace");
        let mut given =
            build_new(&catalog, &new("Ada", "", Some("Countess")), None, &actor).unwrap();
        apply_patch(&mut given, &family, None, &catalog, &actor).unwrap();
        assert_eq!(given.display_name, "Countess");
        // Clearing the only part left is refused.
        let clear = EmployeePatch {
            display_name: Some(String::new()),
            given_name: Some(String::new()),
            family_name: Some(String::new()),
            ..Default::default()
        };
        assert!(apply_patch(&mut given, &clear, None, &catalog, &actor).is_err());

        // A profile stored before the flag existed is not rewritten by a change
        // that leaves its derived display name as it was.
        let mut legacy = fixtures::plain();
        assert!(!legacy.display_name_derived);
        let same = EmployeePatch {
            given_name: Some("Ada".into()),
            ..Default::default()
        };
        let before = legacy.clone();
        apply_patch(&mut legacy, &same, None, &catalog, &actor).unwrap();
        assert!(diff(Some(&before), Some(&legacy)).is_empty());
        let renamed = EmployeePatch {
            given_name: Some("Augusta".into()),
            ..Default::default()
        };
        apply_patch(&mut legacy, &renamed, None, &catalog, &actor).unwrap();
        assert_eq!(legacy.display_name, "Augusta Lovelace");
    }
}
