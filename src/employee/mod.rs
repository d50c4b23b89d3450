//! The domain: the employee profile, its catalogs and rules, and the operations every
//! client (admin API, SCIM, sync) goes through. [`Roster`] is the single place where
//! "email is unique", "the role comes from the catalog", "inactive cannot sign in"
//! and "every change is audited" are enforced.

pub mod account;
pub mod catalog;
pub mod list;
pub mod model;
pub mod phone;
pub mod positions;
pub mod projection;
mod read;
pub mod validate;

use std::sync::{Arc, RwLock};

use chrono::Utc;
use serde_json::Value;
use tracing::instrument;

use crate::config::PasswordPolicy;
use crate::mail::config::AccountSettings;
use crate::secret::Secret;
use crate::store::{
    Actor, AuditEntry, FieldChange, IndexKeys, IndexKind, OutboxRecord, PendingAudit, PhotoChange,
    RecordWrite, Store, StoreError, Write,
};
pub use catalog::Catalog;
pub use list::{ListQuery, Page, SortColumn, StatusFilter};
pub use model::{
    AccountStatus, AccountToken, EffectiveDate, Employee, EmployeeId, EmployeePatch, Enterprise,
    NewEmployee, OfficePhone, PasswordHash, PermissionOverrides, Photo, PhotoBytes, SourceFacts,
    TokenPurpose,
};
pub use read::parse_id;

/// Content types accepted for uploaded photos.
pub const PHOTO_TYPES: [&str; 3] = ["image/png", "image/jpeg", "image/webp"];

/// The image type of uploaded photo bytes by their magic numbers (PNG, JPEG,
/// WebP), whatever content type the upload declared.
pub fn sniff_photo(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Most ids one bulk request may name.
pub const BULK_MAX: usize = 5000;

/// What can go wrong in a domain operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field's value breaks a rule (unknown role, bad email, weak password...).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A request that cannot be understood (bad cursor, unknown filter column...).
    #[error("{message}")]
    BadRequest {
        field: Option<String>,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    /// A unique field's value is taken by another profile.
    #[error("{field}: {message}")]
    Conflict { field: String, message: String },
    /// The profile changed since the client read it.
    #[error("the employee is at version {current}, not {expected}; read it again and retry")]
    VersionMismatch { expected: u64, current: u64 },
    #[error("photo is {size} bytes, more than the limit of {max} bytes")]
    PhotoTooLarge { size: usize, max: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The outcome of one id in a bulk operation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BulkOutcome {
    /// The id as given.
    pub id: String,
    pub ok: bool,
    /// Whether this request changed the profile (false: it already was so).
    pub changed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// New profiles' writes, ready to commit (see [`Roster::prepare_inserts`]).
struct PreparedInserts {
    /// One per input: the new profile (its write is next in `writes`) or why not.
    slots: Vec<Result<Employee, Error>>,
    writes: Vec<Write>,
}

/// Opens the store. [`Roster::open`] then reads every profile once, to tell
/// the store which are active and to build the roster's projection.
pub fn open_store(dir: &std::path::Path) -> Result<Store, Error> {
    Ok(Store::open(dir)?)
}

/// The start-up pass: every stored profile decoded once, to classify it as
/// active for the store's counts and to project it; then each profile's last
/// message from the outbox, read a page at a time.
fn load_projection(store: &Store) -> Result<projection::Projection, Error> {
    #[derive(serde::Deserialize)]
    struct Flag {
        active: bool,
    }
    let builder = projection::Builder::default();
    store.classify(&|body| match serde_json::from_slice::<Employee>(body) {
        Ok(e) => {
            builder.add(&e);
            e.active
        }
        Err(err) => {
            tracing::error!(error = %err, "a stored profile cannot be read; it is left out of lists until it is rewritten");
            serde_json::from_slice::<Flag>(body)
                .map(|f| f.active)
                .unwrap_or(true)
        }
    })?;
    let mut messages = Vec::new();
    let mut after = None;
    loop {
        let (page, more) = store.outbox_page(after, 10_000, &|_| true)?;
        after = page.last().map(|m| m.id);
        messages.extend(page);
        if !more {
            break;
        }
    }
    Ok(builder.finish(messages))
}

/// The roster: the domain operations over the store.
#[derive(Clone)]
pub struct Roster {
    store: Store,
    catalog: Arc<RwLock<Arc<Catalog>>>,
    policy: Arc<PasswordPolicy>,
    photo_max_bytes: usize,
    /// Token lifetimes (and the sign-in limits the HTTP layer applies).
    accounts: Arc<AccountSettings>,
    /// The filterable and sortable fields of every profile (see [`projection`]).
    projection: projection::Projection,
    /// The stored positions by name, as of the last catalog put in force
    /// (`None` before the first): every read that renders a User's `groups`
    /// would otherwise read them all from the store.
    positions_by_name: Arc<RwLock<Option<PositionMap>>>,
    /// What account links' issue and expiry read (see [`account::Clock`]).
    clock: account::Clock,
}

/// Position name → position.
pub type PositionMap = Arc<std::collections::HashMap<String, positions::Position>>;

impl Roster {
    /// The roster over a store: reads every profile once (the store's active
    /// counts and the projection). A store that cannot be read is logged and
    /// leaves the projection empty; the daemon uses [`Roster::open`], which
    /// refuses to start then.
    pub fn new(
        store: Store,
        catalog: Catalog,
        policy: PasswordPolicy,
        photo_max_bytes: usize,
    ) -> Self {
        let projection = load_projection(&store).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the store to build the roster's projection");
            projection::Projection::default()
        });
        Self::with_projection(store, catalog, policy, photo_max_bytes, projection)
    }

    /// [`Roster::new`] that fails when the store cannot be read.
    pub fn open(
        store: Store,
        catalog: Catalog,
        policy: PasswordPolicy,
        photo_max_bytes: usize,
    ) -> Result<Self, Error> {
        let projection = load_projection(&store)?;
        Ok(Self::with_projection(
            store,
            catalog,
            policy,
            photo_max_bytes,
            projection,
        ))
    }

    fn with_projection(
        store: Store,
        catalog: Catalog,
        policy: PasswordPolicy,
        photo_max_bytes: usize,
        projection: projection::Projection,
    ) -> Self {
        Self {
            store,
            catalog: Arc::new(RwLock::new(Arc::new(catalog))),
            policy: Arc::new(policy),
            photo_max_bytes,
            accounts: Arc::new(AccountSettings::default()),
            projection,
            positions_by_name: Arc::new(RwLock::new(None)),
            clock: account::Clock::system(),
        }
    }

    /// The projection of every profile's filterable fields.
    pub fn projection(&self) -> &projection::Projection {
        &self.projection
    }

    /// The configured sync sources in priority order, highest first: of the
    /// sources a profile is linked to, the first owns it (the sync engine sets
    /// this at start and on every reload).
    pub fn set_source_priority(&self, ids: &[String]) {
        self.projection.set_priority(ids);
    }

    /// Sets the token lifetimes (`[accounts]`).
    pub fn with_accounts(mut self, accounts: AccountSettings) -> Self {
        self.accounts = Arc::new(accounts);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The largest photo stored (`[photos] max_bytes`).
    pub fn photo_max_bytes(&self) -> usize {
        self.photo_max_bytes
    }

    /// The catalogs in force.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The permissions a profile has: its role's defaults with its overrides applied.
    pub fn effective_permissions(&self, e: &Employee) -> Vec<String> {
        validate::effective_permissions(&self.catalog(), &e.role, &e.permissions)
    }

    pub fn get(&self, id: EmployeeId) -> Result<Employee, Error> {
        match self.store.get(id.0)? {
            Some(bytes) => decode(&bytes),
            None => Err(Error::NotFound(format!("no employee with id {id}"))),
        }
    }

    /// Finds a profile by id, email or username (the last two case-insensitively).
    pub fn find(&self, key: &str) -> Result<Employee, Error> {
        if let Ok(id) = key.parse::<EmployeeId>() {
            return self.get(id);
        }
        let folded = validate::fold(key.trim());
        for index in [IndexKind::Email, IndexKind::Username] {
            if let Some(id) = self.store.lookup(&index, &folded)? {
                return self.get(EmployeeId(id));
            }
        }
        Err(Error::NotFound(format!(
            "no employee with id, email or username `{}`",
            key.trim()
        )))
    }

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

    /// An upload checked against the photo rules: what the profile records of
    /// it, and the bytes to store.
    fn uploaded_photo(
        &self,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<(Photo, Vec<u8>), Error> {
        let ct = self.check_photo(content_type, &bytes)?;
        let sha256 = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        let meta = Photo::Uploaded {
            content_type: ct,
            size: bytes.len(),
            sha256: Some(sha256),
        };
        Ok((meta, bytes))
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
        let out = self.insert_many(actor, built);
        if let Some(Err(Error::Store(e))) = out.iter().find(|r| matches!(r, Err(Error::Store(_)))) {
            return Err(Error::Store(StoreError::Corrupt(e.to_string())));
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
        let audit = AuditEntry::new(actor.clone(), Some(e.id.0), "create", changes);
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
            let catalog = self.catalog();
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

    fn check_photo_size(&self, size: usize) -> Result<(), Error> {
        if size > self.photo_max_bytes {
            return Err(Error::PhotoTooLarge {
                size,
                max: self.photo_max_bytes,
            });
        }
        Ok(())
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
                let audit =
                    AuditEntry::new(actor.clone(), Some(e.id.0), "create", diff(None, Some(&e)));
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
                let msg = e.to_string();
                return slots
                    .into_iter()
                    .map(|_| Err(Error::Store(StoreError::Corrupt(msg.clone()))))
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
            Some((true, _)) => "activate",
            Some((false, _)) => "deactivate",
            None => "update",
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

    /// Makes every write so far durable.
    pub async fn flush(&self) -> Result<(), Error> {
        Ok(self.store.flush().await?)
    }

    /// Applies a partial update. `expected_version` (or `patch.version`) makes it
    /// conditional on the profile not having changed since the client read it.
    #[instrument(skip_all, fields(actor = %actor, employee = %id))]
    pub async fn update(
        &self,
        actor: &Actor,
        id: EmployeeId,
        patch: EmployeePatch,
        expected_version: Option<u64>,
    ) -> Result<Employee, Error> {
        self.update_with_photo(actor, id, patch, expected_version, None)
            .await
    }

    /// [`Roster::update`] with an uploaded photo (`(content type, bytes)`,
    /// checked as [`Roster::set_photo`] checks it): the edit and the photo in
    /// one write, either both stored or neither.
    pub async fn update_with_photo(
        &self,
        actor: &Actor,
        id: EmployeeId,
        patch: EmployeePatch,
        expected_version: Option<u64>,
        photo: Option<(String, Vec<u8>)>,
    ) -> Result<Employee, Error> {
        let photo = match photo {
            Some((content_type, bytes)) => Some(self.uploaded_photo(&content_type, bytes)?),
            None => None,
        };
        let expected = expected_version.or(patch.version);
        let password_hash = match &patch.password {
            Some(p) if patch.password_unchecked => Some(self.hash(p).await?),
            Some(p) => Some(self.hash_password(p).await?),
            None => None,
        };
        let (e, changed) = self.modify_noted(
            actor,
            id,
            "update",
            expected,
            patch.audit_note.as_deref(),
            |e, catalog| {
                apply_patch(e, &patch, password_hash.clone(), catalog, actor)?;
                Ok(match &photo {
                    Some((meta, bytes)) => {
                        e.photo = Some(meta.clone());
                        (vec![], PhotoChange::Set(bytes.clone()))
                    }
                    None => (vec![], PhotoChange::Keep),
                })
            },
        )?;
        // A change that writes nothing has no audit entry to carry the note.
        if let (false, Some(note)) = (changed, &patch.audit_note) {
            tracing::info!(employee = %id, note = %note, "nothing changed");
        }
        self.store.flush().await?;
        Ok(e)
    }

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
        let action = if active { "activate" } else { "deactivate" };
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
        if ids.len() > BULK_MAX {
            return Err(Error::BadRequest {
                field: Some("ids".into()),
                message: format!("at most {BULK_MAX} ids per bulk request"),
            });
        }
        let mut out = Vec::with_capacity(ids.len());
        for raw in ids {
            let r = raw
                .parse::<EmployeeId>()
                .map_err(|_| Error::NotFound(format!("`{raw}` is not an employee id")))
                .and_then(|id| {
                    if dry_run {
                        let e = self.get(id)?;
                        let changed = e.active != active;
                        Ok((e, changed))
                    } else {
                        self.set_active_unflushed(actor, id, active)
                    }
                });
            out.push(match r {
                Ok((_, changed)) => BulkOutcome {
                    id: raw.clone(),
                    ok: true,
                    changed,
                    error: None,
                },
                Err(Error::Store(e)) => return Err(Error::Store(e)),
                Err(e) => BulkOutcome {
                    id: raw.clone(),
                    ok: false,
                    changed: false,
                    error: Some(e.to_string()),
                },
            });
        }
        self.store.flush().await?;
        Ok(out)
    }

    /// Checks uploaded photo bytes against the rules every upload path keeps
    /// (the admin API's `PUT …/photo`, the console's form): an accepted content
    /// type, not empty, at most `[photos] max_bytes`, and bytes that are an
    /// image of the declared type by their first bytes. Returns the content type
    /// as stored (lowercase, without parameters).
    pub fn check_photo(&self, content_type: &str, bytes: &[u8]) -> Result<String, Error> {
        let ct = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if !PHOTO_TYPES.contains(&ct.as_str()) {
            return Err(Error::invalid(
                "photo",
                format!(
                    "content type `{ct}` is not accepted; use one of {}",
                    PHOTO_TYPES.join(", ")
                ),
            ));
        }
        if bytes.is_empty() {
            return Err(Error::invalid("photo", "is empty"));
        }
        if bytes.len() > self.photo_max_bytes {
            return Err(Error::PhotoTooLarge {
                size: bytes.len(),
                max: self.photo_max_bytes,
            });
        }
        match sniff_photo(bytes) {
            Some(real) if real == ct => Ok(ct),
            Some(real) => Err(Error::invalid(
                "photo",
                format!("the bytes are {real}, not {ct}; send them as {real}"),
            )),
            None => Err(Error::invalid(
                "photo",
                format!("the bytes are not an image of type {ct} (checked by their first bytes)"),
            )),
        }
    }

    /// Stores uploaded photo bytes for a profile (checked by [`Roster::check_photo`]).
    #[instrument(skip_all, fields(actor = %actor, employee = %id))]
    pub async fn set_photo(
        &self,
        actor: &Actor,
        id: EmployeeId,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Employee, Error> {
        let (meta, bytes) = self.uploaded_photo(content_type, bytes)?;
        let (e, _) = self.modify(
            actor,
            id,
            "update",
            None,
            PhotoChange::Set(bytes),
            |e, _| {
                e.photo = Some(meta.clone());
                Ok(())
            },
        )?;
        self.store.flush().await?;
        Ok(e)
    }

    /// The uploaded photo's bytes and content type.
    pub fn photo(&self, id: EmployeeId) -> Result<(String, Vec<u8>), Error> {
        let e = self.get(id)?;
        match e.photo {
            Some(Photo::Uploaded { content_type, .. }) => match self.store.photo(id.0)? {
                Some(b) => Ok((content_type, b.to_vec())),
                None => Err(Error::NotFound(
                    "the photo is missing from the store".into(),
                )),
            },
            _ => Err(Error::NotFound(format!(
                "employee {id} has no uploaded photo"
            ))),
        }
    }

    /// Removes the photo (uploaded or linked).
    pub async fn remove_photo(&self, actor: &Actor, id: EmployeeId) -> Result<Employee, Error> {
        let (e, _) = self.modify(actor, id, "update", None, PhotoChange::Remove, |e, _| {
            e.photo = None;
            Ok(())
        })?;
        self.store.flush().await?;
        Ok(e)
    }

    /// Removes a profile for good (SCIM DELETE). Audited.
    #[instrument(skip_all, fields(actor = %actor, employee = %id))]
    pub async fn delete(&self, actor: &Actor, id: EmployeeId) -> Result<(), Error> {
        let e = self.get(id)?;
        let audit = AuditEntry::new(actor.clone(), Some(id.0), "delete", diff(Some(&e), None));
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

    /// Audit entries, newest first.
    pub fn audit(
        &self,
        employee: Option<EmployeeId>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, Error> {
        Ok(self
            .store
            .audit_entries(employee.map(|e| e.0), before, limit.clamp(1, 1000))?)
    }

    /// Checks a password against the policy and hashes it with argon2id.
    async fn hash_password(&self, password: &Secret) -> Result<PasswordHash, Error> {
        self.policy
            .check(password.expose())
            .map_err(|m| Error::invalid("password", m))?;
        self.hash(password).await
    }

    /// Hashes a password with argon2id, on a blocking thread; no policy check
    /// (an identity provider's password, under its own policy).
    async fn hash(&self, password: &Secret) -> Result<PasswordHash, Error> {
        if password.expose().is_empty() {
            return Err(Error::invalid("password", "must not be empty"));
        }
        let password = password.clone();
        let hash = tokio::task::spawn_blocking(move || {
            use argon2::password_hash::PasswordHasher;
            argon2::Argon2::default()
                .hash_password(password.expose().as_bytes())
                .map(|h| h.to_string())
        })
        .await
        .map_err(|e| Error::invalid("password", format!("hashing failed: {e}")))?
        .map_err(|e| Error::invalid("password", format!("hashing failed: {e}")))?;
        Ok(PasswordHash(hash))
    }

    /// Read-modify-write with optimistic concurrency; retries when another writer
    /// got there first. Does not flush: callers flush before acknowledging.
    fn modify(
        &self,
        actor: &Actor,
        id: EmployeeId,
        action: &str,
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
    fn modify_with(
        &self,
        actor: &Actor,
        id: EmployeeId,
        action: &str,
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
    fn modify_full(
        &self,
        actor: &Actor,
        id: EmployeeId,
        action: &str,
        expected_version: Option<u64>,
        f: impl Fn(&mut Employee, &Catalog) -> Result<(Vec<OutboxRecord>, PhotoChange), Error>,
    ) -> Result<(Employee, bool), Error> {
        self.modify_noted(actor, id, action, expected_version, None, f)
    }

    /// [`Roster::modify_full`] with a note in the audit entry (when the change
    /// writes anything).
    fn modify_noted(
        &self,
        actor: &Actor,
        id: EmployeeId,
        action: &str,
        expected_version: Option<u64>,
        note: Option<&str>,
        f: impl Fn(&mut Employee, &Catalog) -> Result<(Vec<OutboxRecord>, PhotoChange), Error>,
    ) -> Result<(Employee, bool), Error> {
        let catalog = self.catalog();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let current = self.get(id)?;
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

    fn write_for(
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

    fn commit_with(
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
    fn store_error(&self, e: &Employee, err: StoreError) -> Error {
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

    /// One page of a list query (see [`list`]): filtered and sorted on the
    /// projection, then only the page's profiles are read.
    pub fn list(&self, q: &ListQuery) -> Result<Page, Error> {
        // A pass over the projection: milliseconds at 100,000 profiles.
        crate::blocking::in_place(|| list::run(&self.projection, &self.store, q))
    }

    /// Every profile that matches a list query's status and filters (cursor
    /// and limit ignored), in the query's sort order: the ids only, from the
    /// projection ("select all that match" for bulk actions).
    pub fn list_all_ids(&self, q: &ListQuery) -> Result<Vec<EmployeeId>, Error> {
        let mut q = q.clone();
        q.cursor = None;
        let sel = crate::blocking::in_place(|| list::select(&self.projection, &q, usize::MAX))?;
        Ok(sel.ids.into_iter().map(EmployeeId).collect())
    }
}

/// Builds a new profile from client input: every field rule, no I/O. With
/// `credentials`, the caller passes the password's hash (already policy-checked).
pub fn build_new(
    catalog: &Catalog,
    input: &NewEmployee,
    password_hash: Option<PasswordHash>,
    actor: &Actor,
) -> Result<Employee, Error> {
    let given_name = validate::optional_name("given_name", &input.given_name)?;
    let family_name = validate::optional_name("family_name", &input.family_name)?;
    let given_display = input.display_name.as_deref().unwrap_or("");
    validate::has_a_name(&given_name, &family_name, given_display)?;
    let (display_name, display_name_derived) = match given_display.trim() {
        "" => (
            validate::derived_display_name(&given_name, &family_name),
            true,
        ),
        d => (validate::name("display_name", d)?, false),
    };
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
    let password_hash_field = match (account_status, &input.password) {
        (AccountStatus::Credentials, None) => {
            return Err(Error::invalid(
                "password",
                "is required when account_status is `credentials`",
            ));
        }
        (AccountStatus::Credentials, Some(_)) => {
            Some(password_hash.ok_or_else(|| Error::invalid("password", "could not be hashed"))?)
        }
        (_, Some(_)) => {
            return Err(Error::invalid(
                "password",
                "is only accepted with account_status `credentials`",
            ));
        }
        (_, None) => None,
    };
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

/// The photo bytes to write when a sync takes a profile's photo from `before` to
/// `after`; `bytes`: what the change brought. Same photo (same digest): nothing.
fn photo_write(
    before: &Option<Photo>,
    after: &Option<Photo>,
    bytes: &Option<Option<PhotoBytes>>,
) -> PhotoChange {
    if before == after {
        return PhotoChange::Keep;
    }
    match (after, bytes) {
        (Some(Photo::Uploaded { .. }), Some(Some(p))) => PhotoChange::Set(p.bytes.to_vec()),
        (Some(Photo::Uploaded { .. }), _) => PhotoChange::Keep,
        _ if matches!(before, Some(Photo::Uploaded { .. })) => PhotoChange::Remove,
        _ => PhotoChange::Keep,
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

/// The profile as it would be after `patch` (every rule applied, nothing written).
pub fn preview_patch(
    current: &Employee,
    patch: &EmployeePatch,
    catalog: &Catalog,
    actor: &Actor,
) -> Result<Employee, Error> {
    let mut next = current.clone();
    apply_patch(&mut next, patch, None, catalog, actor)?;
    Ok(next)
}

fn decode(bytes: &[u8]) -> Result<Employee, Error> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Store(StoreError::Corrupt(format!("employee record: {e}"))))
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

fn set_active_fields(e: &mut Employee, active: bool, actor: &Actor) {
    if e.active == active {
        return;
    }
    e.active = active;
    e.deactivated_by = (!active).then(|| actor.clone());
}

fn apply_patch(
    e: &mut Employee,
    p: &EmployeePatch,
    password_hash: Option<PasswordHash>,
    catalog: &Catalog,
    actor: &Actor,
) -> Result<(), Error> {
    let names_changed = p.given_name.is_some() || p.family_name.is_some();
    // Profiles stored before the flag existed: a display name equal to the
    // derived one was derived.
    let was_derived = e.display_name_derived
        || e.display_name == validate::derived_display_name(&e.given_name, &e.family_name);
    if let Some(v) = &p.given_name {
        e.given_name = validate::optional_name("given_name", v)?;
    }
    if let Some(v) = &p.family_name {
        e.family_name = validate::optional_name("family_name", v)?;
    }
    match p.display_name.as_deref().map(str::trim) {
        Some("") => {
            e.display_name = validate::derived_display_name(&e.given_name, &e.family_name);
            e.display_name_derived = true;
        }
        Some(d) => {
            e.display_name = validate::name("display_name", d)?;
            e.display_name_derived = false;
        }
        // A display name that was derived follows the name parts. (A profile
        // stored before the flag existed keeps it unset while the derived name
        // does not change, so that an upgrade rewrites nobody.)
        None if names_changed && was_derived => {
            let derived = validate::derived_display_name(&e.given_name, &e.family_name);
            if derived != e.display_name {
                e.display_name = derived;
                e.display_name_derived = true;
            }
        }
        None => {}
    }
    validate::has_a_name(&e.given_name, &e.family_name, &e.display_name)?;
    if let Some(v) = &p.email {
        let old_email = e.email.clone();
        e.email = validate::email(v)?;
        // A username that was the email follows it, unless it is set explicitly.
        if p.username.is_none() && validate::fold(&e.username) == validate::fold(&old_email) {
            e.username = e.email.clone();
        }
    }
    if let Some(v) = &p.username {
        e.username = validate::username(v)?;
    }
    if let Some(v) = &p.positions {
        e.positions = validate::positions(catalog, v)?;
    }
    if !p.add_positions.is_empty() {
        let mut all = e.positions.clone();
        all.extend(validate::positions(catalog, &p.add_positions)?);
        e.positions = validate::positions(catalog, &all)?;
    }
    if !p.remove_positions.is_empty() {
        let remove = validate::positions(catalog, &p.remove_positions)?;
        e.positions.retain(|x| !remove.contains(x));
    }
    if let Some(v) = &p.role {
        e.role = validate::role(catalog, v)?;
    }
    if let Some(v) = &p.business_unit {
        e.business_unit = match v {
            Some(b) => validate::business_unit(catalog, b)?,
            None => None,
        };
    }
    if let Some(v) = &p.photo_url {
        e.photo = match v.as_deref().map(str::trim) {
            Some(u) if !u.is_empty() => Some(Photo::Url {
                url: validate::photo_url(u)?,
            }),
            _ => None,
        };
    }
    if let Some(v) = &p.photo {
        e.photo = v.as_ref().map(PhotoBytes::photo);
    }
    if let Some(v) = &p.mobile_phone {
        e.mobile_phone = match v.as_deref().map(str::trim) {
            Some(m) if !m.is_empty() => Some(validate::phone("mobile_phone", m)?),
            _ => None,
        };
    }
    if let Some(v) = &p.office_phone {
        e.office_phone = match v {
            Some(o) if !o.number.trim().is_empty() => Some(validate::office_phone(o)?),
            _ => None,
        };
    }
    if let Some(h) = password_hash {
        e.password_hash = Some(h);
        // A password set by an admin retires a pending invite or reset link.
        e.account_token = None;
        if p.account_status.is_none() {
            e.account_status = AccountStatus::Credentials;
        }
    }
    if let Some(s) = p.account_status {
        if s == AccountStatus::Credentials && e.password_hash.is_none() {
            return Err(Error::invalid(
                "password",
                "is required to set account_status to `credentials`",
            ));
        }
        e.account_status = s;
    }
    if let Some(v) = p.enabled {
        e.enabled = v;
    }
    if let Some(v) = p.active {
        set_active_fields(e, v, actor);
    }
    if let Some(v) = &p.permissions {
        e.permissions = validate::permissions(catalog, v)?;
    }
    if let Some(v) = &p.external_id {
        e.external_id = match v {
            Some(x) => validate::optional_text("external_id", x, 256)?,
            None => None,
        };
    }
    if let Some(v) = &p.enterprise {
        e.enterprise = validate::enterprise(v)?;
    }
    if let Some(v) = &p.employee_number {
        e.enterprise.employee_number = match v {
            Some(x) => validate::optional_text("employee_number", x, 256)?,
            None => None,
        };
    }
    if let Some(v) = &p.manager {
        e.enterprise.manager = v.clone();
    }
    if let Some((source, facts)) = &p.source_facts {
        match facts {
            Some(f) if !f.is_empty() => {
                e.source_facts.insert(source.clone(), f.clone());
            }
            _ => {
                e.source_facts.remove(source);
            }
        }
    }
    Ok(())
}

/// Field-level differences between two states of a profile, for the audit log.
/// Bookkeeping fields (`id`, `version`, `created_at`, `updated_at`) are left out;
/// the password hash is recorded as `"***"` and the account token without its
/// digest. One entry per differing field, by field name in alphabetical order;
/// a value that is absent from the stored JSON (a `None`, empty enterprise
/// fields, no profile at all) is `null`.
///
/// Compares the typed fields and turns into JSON only the ones that differ (a
/// sync plans and a bulk import writes one of these per profile).
pub fn diff(before: Option<&Employee>, after: Option<&Employee>) -> Vec<FieldChange> {
    fn json<T: serde::Serialize>(v: Option<&T>) -> Value {
        v.and_then(|v| serde_json::to_value(v).ok())
            .unwrap_or(Value::Null)
    }
    fn field<T: PartialEq + serde::Serialize>(
        out: &mut Vec<FieldChange>,
        name: &str,
        before: Option<&T>,
        after: Option<&T>,
    ) {
        if before != after {
            out.push(FieldChange {
                field: name.to_string(),
                before: json(before),
                after: json(after),
            });
        }
    }
    let (b, a) = (before, after);
    let mut out = Vec::new();
    // Alphabetical by serialized name (`password_hash` is logged as `password`).
    field(
        &mut out,
        "account_status",
        b.map(|e| &e.account_status),
        a.map(|e| &e.account_status),
    );
    {
        let (bt, at) = (
            b.and_then(|e| e.account_token.as_ref()),
            a.and_then(|e| e.account_token.as_ref()),
        );
        if bt != at {
            // The digest stays out of the log: what and until when is enough.
            let redact = |t: Option<&AccountToken>| match t {
                Some(t) => serde_json::json!({
                    "purpose": json(Some(&t.purpose)),
                    "expires_at": json(Some(&t.expires_at)),
                }),
                None => Value::Null,
            };
            out.push(FieldChange {
                field: "account_token".into(),
                before: redact(bt),
                after: redact(at),
            });
        }
    }
    field(
        &mut out,
        "active",
        b.map(|e| &e.active),
        a.map(|e| &e.active),
    );
    field(
        &mut out,
        "business_unit",
        b.and_then(|e| e.business_unit.as_ref()),
        a.and_then(|e| e.business_unit.as_ref()),
    );
    field(
        &mut out,
        "deactivated_by",
        b.and_then(|e| e.deactivated_by.as_ref()),
        a.and_then(|e| e.deactivated_by.as_ref()),
    );
    field(
        &mut out,
        "display_name",
        b.map(|e| &e.display_name),
        a.map(|e| &e.display_name),
    );
    field(
        &mut out,
        "display_name_derived",
        b.map(|e| &e.display_name_derived).filter(|d| **d),
        a.map(|e| &e.display_name_derived).filter(|d| **d),
    );
    field(&mut out, "email", b.map(|e| &e.email), a.map(|e| &e.email));
    field(
        &mut out,
        "enabled",
        b.map(|e| &e.enabled),
        a.map(|e| &e.enabled),
    );
    field(
        &mut out,
        "enterprise",
        b.and_then(enterprise_set),
        a.and_then(enterprise_set),
    );
    field(
        &mut out,
        "external_id",
        b.and_then(|e| e.external_id.as_ref()),
        a.and_then(|e| e.external_id.as_ref()),
    );
    field(
        &mut out,
        "family_name",
        b.map(|e| &e.family_name),
        a.map(|e| &e.family_name),
    );
    field(
        &mut out,
        "given_name",
        b.map(|e| &e.given_name),
        a.map(|e| &e.given_name),
    );
    field(
        &mut out,
        "mobile_phone",
        b.and_then(|e| e.mobile_phone.as_ref()),
        a.and_then(|e| e.mobile_phone.as_ref()),
    );
    field(
        &mut out,
        "office_phone",
        b.and_then(|e| e.office_phone.as_ref()),
        a.and_then(|e| e.office_phone.as_ref()),
    );
    {
        let (bp, ap) = (
            b.and_then(|e| e.password_hash.as_ref()),
            a.and_then(|e| e.password_hash.as_ref()),
        );
        if bp != ap {
            let redact = |h: Option<&PasswordHash>| match h {
                Some(_) => Value::String("***".into()),
                None => Value::Null,
            };
            out.push(FieldChange {
                field: "password".into(),
                before: redact(bp),
                after: redact(ap),
            });
        }
    }
    field(
        &mut out,
        "permissions",
        b.map(|e| &e.permissions),
        a.map(|e| &e.permissions),
    );
    field(
        &mut out,
        "photo",
        b.and_then(|e| e.photo.as_ref()),
        a.and_then(|e| e.photo.as_ref()),
    );
    field(
        &mut out,
        "positions",
        b.map(|e| &e.positions),
        a.map(|e| &e.positions),
    );
    field(&mut out, "role", b.map(|e| &e.role), a.map(|e| &e.role));
    // Not stored when empty.
    field(
        &mut out,
        "source_facts",
        b.and_then(|e| (!e.source_facts.is_empty()).then_some(&e.source_facts)),
        a.and_then(|e| (!e.source_facts.is_empty()).then_some(&e.source_facts)),
    );
    field(
        &mut out,
        "source_keys",
        b.map(|e| &e.source_keys),
        a.map(|e| &e.source_keys),
    );
    field(
        &mut out,
        "username",
        b.map(|e| &e.username),
        a.map(|e| &e.username),
    );
    out
}

/// A note in an audit entry: a pseudo-field `note` whose `after` says what was
/// done (e.g. with an identity provider's password; never the password).
fn audit_note(note: &str) -> FieldChange {
    FieldChange {
        field: "note".into(),
        before: Value::Null,
        after: Value::String(note.to_string()),
    }
}

/// The enterprise fields, `None` when all are empty (they are not stored then).
fn enterprise_set(e: &Employee) -> Option<&Enterprise> {
    (!e.enterprise.is_empty()).then_some(&e.enterprise)
}

/// Names every field of [`Employee`], so that adding one fails to compile until
/// [`diff`] handles it too (and the test against the JSON diff covers it).
#[allow(dead_code)]
fn diff_covers_every_field(e: &Employee) {
    let Employee {
        id: _,
        version: _,
        given_name: _,
        family_name: _,
        display_name: _,
        display_name_derived: _,
        email: _,
        username: _,
        positions: _,
        role: _,
        business_unit: _,
        photo: _,
        mobile_phone: _,
        office_phone: _,
        account_status: _,
        password_hash: _,
        enabled: _,
        active: _,
        permissions: _,
        external_id: _,
        enterprise: _,
        source_keys: _,
        source_facts: _,
        deactivated_by: _,
        account_token: _,
        created_at: _,
        updated_at: _,
    } = e;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The diff as first written: both profiles turned into JSON objects and
    /// compared key by key. [`diff`] must give exactly the same entries.
    fn diff_by_json(before: Option<&Employee>, after: Option<&Employee>) -> Vec<FieldChange> {
        const SKIP: [&str; 4] = ["id", "version", "created_at", "updated_at"];
        let to_map = |e: Option<&Employee>| -> serde_json::Map<String, Value> {
            match e.map(serde_json::to_value) {
                Some(Ok(Value::Object(m))) => m,
                _ => serde_json::Map::new(),
            }
        };
        let (b, a) = (to_map(before), to_map(after));
        let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
        keys.sort();
        keys.dedup();
        let mut out = Vec::new();
        for k in keys {
            if SKIP.contains(&k.as_str()) {
                continue;
            }
            let bv = b.get(k).cloned().unwrap_or(Value::Null);
            let av = a.get(k).cloned().unwrap_or(Value::Null);
            if bv == av {
                continue;
            }
            let (field, before, after) = match k.as_str() {
                "account_token" => {
                    let redact = |v: &Value| match v {
                        Value::Object(m) => serde_json::json!({
                            "purpose": m.get("purpose").cloned().unwrap_or(Value::Null),
                            "expires_at": m.get("expires_at").cloned().unwrap_or(Value::Null),
                        }),
                        _ => Value::Null,
                    };
                    (k.clone(), redact(&bv), redact(&av))
                }
                "password_hash" => {
                    let redact = |v: &Value| {
                        if v.is_null() {
                            Value::Null
                        } else {
                            Value::String("***".into())
                        }
                    };
                    ("password".to_string(), redact(&bv), redact(&av))
                }
                _ => (k.clone(), bv, av),
            };
            out.push(FieldChange {
                field,
                before,
                after,
            });
        }
        out
    }

    fn plain() -> Employee {
        let now = Utc::now();
        Employee {
            id: EmployeeId::new(),
            version: 1,
            given_name: "Ada".into(),
            family_name: "Lovelace".into(),
            display_name: "Ada Lovelace".into(),
            display_name_derived: false,
            email: "ada@example.com".into(),
            username: "ada@example.com".into(),
            positions: vec![],
            role: "Technician".into(),
            business_unit: None,
            photo: None,
            mobile_phone: None,
            office_phone: None,
            account_status: AccountStatus::Later,
            password_hash: None,
            enabled: true,
            active: true,
            permissions: PermissionOverrides::default(),
            external_id: None,
            enterprise: Enterprise::default(),
            source_keys: Default::default(),
            source_facts: Default::default(),
            deactivated_by: None,
            account_token: None,
            created_at: now,
            updated_at: now,
        }
    }

    fn full() -> Employee {
        let mut e = plain();
        e.version = 7;
        e.display_name_derived = true;
        e.positions = vec!["Driver".into(), "Dispatcher".into()];
        e.business_unit = Some("North".into());
        e.photo = Some(Photo::Uploaded {
            content_type: "image/png".into(),
            size: 12,
            sha256: Some("ab".repeat(32)),
        });
        e.mobile_phone = Some("+1 555 0100".into());
        e.office_phone = Some(OfficePhone {
            number: "+1 555 0101".into(),
            extension: Some("12".into()),
        });
        e.account_status = AccountStatus::Invite;
        e.password_hash = Some(PasswordHash("$argon2id$x".into()));
        e.enabled = false;
        e.active = false;
        e.permissions = PermissionOverrides {
            grant: vec!["jobs.view".into()],
            revoke: vec![],
        };
        e.external_id = Some("x-1".into());
        e.enterprise.department = Some("Ops".into());
        e.source_keys.insert("ldap".into(), "k-1".into());
        e.source_facts.insert(
            "hr".into(),
            SourceFacts {
                disabled: Some("terminated".into()),
                ..Default::default()
            },
        );
        e.deactivated_by = Some(Actor::admin("ops"));
        e.account_token = Some(AccountToken {
            purpose: TokenPurpose::Invite,
            digest: Some("abc".into()),
            expires_at: Utc::now(),
            message: Some(7),
        });
        e.updated_at = Utc::now();
        e
    }

    #[test]
    fn one_name_part_is_a_name_and_a_derived_display_name_follows_the_parts() {
        let catalog = Catalog::new(
            vec![],
            vec![],
            vec![catalog::RoleDef {
                name: "Technician".into(),
                description: String::new(),
                permissions: vec![],
            }],
            vec![],
            Some("Technician".into()),
        )
        .unwrap();
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
        let mut legacy = plain();
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

    #[test]
    fn sync_photo_bytes_are_written_when_their_digest_changes_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let catalog = Catalog::new(
            vec![],
            vec![],
            vec![catalog::RoleDef {
                name: "Technician".into(),
                description: String::new(),
                permissions: vec![],
            }],
            vec![],
            Some("Technician".into()),
        )
        .unwrap();
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

    #[test]
    fn diff_matches_the_json_diff() {
        let (p, f) = (plain(), full());
        let mut other = full();
        other.photo = Some(Photo::Url {
            url: "https://x/p.png".into(),
        });
        other.account_token = Some(AccountToken {
            purpose: TokenPurpose::PasswordReset,
            digest: Some("def".into()),
            expires_at: Utc::now(),
            message: None,
        });
        other.enterprise = Enterprise::default();
        other.given_name = "Grace".into();
        other.office_phone = Some(OfficePhone {
            number: "+1 555 0101".into(),
            extension: None,
        });
        let mut same_but_bookkeeping = f.clone();
        same_but_bookkeeping.version += 1;
        same_but_bookkeeping.updated_at = Utc::now();
        let states = [&p, &f, &other, &same_but_bookkeeping];
        let cases: Vec<(Option<&Employee>, Option<&Employee>)> = states
            .iter()
            .flat_map(|x| {
                states
                    .iter()
                    .map(move |y| (Some(*x), Some(*y)))
                    .chain([(None, Some(*x)), (Some(*x), None)])
            })
            .chain([(None, None)])
            .collect();
        for (b, a) in cases {
            assert_eq!(diff(b, a), diff_by_json(b, a));
        }
        assert!(diff(Some(&f), Some(&same_but_bookkeeping)).is_empty());
        let created = diff(None, Some(&f));
        assert!(
            created
                .iter()
                .any(|c| c.field == "password" && c.after == "***")
        );
        assert!(
            !serde_json::to_string(&created)
                .unwrap_or_default()
                .contains("abc")
        );
    }
}
