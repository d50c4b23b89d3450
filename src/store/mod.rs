//! The store: its interface ([`Backend`], held through the [`Store`] handle; see
//! [`backend`]) and the embedded sled backend ([`SledStore`]). It knows records
//! only as bytes plus the index keys the domain hands it; the rules (what is
//! unique, how keys are normalised) live in `employee`.
//!
//! Trees of the sled backend:
//! - `meta`: `schema_version`, checked at open; `copy_incomplete` while
//!   `rosterd store copy` writes into the store (refused at open; see `sled_copy`).
//! - `employees`: employee id (16 bytes) → the record: a binary header (version,
//!   unique index keys, newest audit links; see [`record`]) and the body (JSON,
//!   written by `employee`).
//! - `photos`: id → uploaded photo bytes.
//! - `audit`: sequence number (u64, big-endian) → [`AuditEntry`], or → a pack of
//!   the entries of one batch of writes, keyed by its first seq (append-only; see
//!   [`audit`]).
//! - `audit_by_employee`: id ++ sequence → `()`: the older audit links of one
//!   employee (the newest are in the record's header), to list its history.
//! - `positions`: position id (16 bytes, UUID v7 so ids sort by creation) → the
//!   position (JSON, written by `employee`). The catalog's positions with stable ids
//!   (SCIM Groups); seeded from the config at start.
//! - `outbox`: message id (u64, big-endian) → [`OutboxRecord`]: mail caused by a
//!   change, written in the change's transaction (see [`outbox`]).
//! - `outbox_pending`: message id → `()` while the message is pending.
//! - `sync_runs`, `sync_plans`, `sync_held`: run id → a run's header, its plan,
//!   the mapped entries of a held run; `sync_state`: source id → its state (the
//!   rows' format is the sync engine's; see [`runs`]).
//! - `web_sessions`: SHA-256 digest of a console session id (32 bytes) → the
//!   session (who, when it started, when last seen; the console's format). The
//!   id itself is never stored (see [`sessions`]).
//!
//! The unique indexes (`<kind>\0<key>` → id, one namespace per index) are kept in
//! memory, rebuilt from the records' headers at open. Writes are serialised by one
//! lock: a write checks versions and uniqueness under it, then writes everything
//! in one sled transaction, then updates the in-memory index and the directory
//! (which records exist, in id order, and which are active: counts and page
//! offsets without a scan; see [`directory`]).
//!
//! Every [`Write`] is one sled transaction. [`Store::flush`] must be awaited
//! before a write is acknowledged to a client; concurrent flushes are joined into
//! one by the flusher thread (group commit; [`durable`] says why sled's own
//! `flush_async` is never called).
//!
//! Schema version 1 kept the version and keys in an `employee_keys` tree and the
//! indexes in an `index` tree; [`SledStore::open`] migrates such a store in place.
//! Version 2 had no audit packs: it is read as it is, and marked version 3 so
//! that an older rosterd, which cannot read packs, refuses the store.

// The one module that sees sled (see `clippy.toml`).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

pub mod audit;
mod backend;
pub mod config;
pub mod copy;
mod directory;
mod durable;
pub mod outbox;
pub mod postgres;
mod record;
mod runs;
mod sessions;
mod sled_copy;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
};

use record::Header;
use uuid::Uuid;

pub use audit::{Actor, ActorKind, AuditAction, AuditEntry, FieldChange, PendingAudit};
pub use backend::{Backend, Caught, NextIds, Record, RecordIter, Store, StoreRow, Table};
pub use backend::{Fence, Lease, LeaseInfo, with_fence};
pub use outbox::{DeliveryState, MessageKind, OutboxRecord};

/// The on-disk format this build reads and writes.
pub const SCHEMA_VERSION: u32 = 3;

/// What can go wrong in the store. [`StoreError::Io`] is the disk failing
/// (reads or writes of the store's files); [`StoreError::Corrupt`] is data read
/// back that cannot be decoded; they are reported apart.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {reason} (is another rosterd using this data_dir?)")]
    Open { path: String, reason: String },
    #[error(
        "the store at {path} has schema version {found}, this rosterd reads version {expected}; \
         use the rosterd release that wrote it, or migrate"
    )]
    Schema {
        path: String,
        found: String,
        expected: u32,
    },
    #[error("{index} `{key}` is already used by another profile")]
    Unique { index: IndexKind, key: String },
    #[error(
        "the record changed since it was read (expected version {expected:?}, found {found:?})"
    )]
    VersionConflict {
        expected: Option<u64>,
        found: Option<u64>,
    },
    /// The store's files could not be read or written.
    #[error("store I/O error: {0} (check the disk that holds data_dir: free space, permissions)")]
    Io(String),
    #[error("corrupt record in the store: {0}")]
    Corrupt(String),
    /// A write the store cannot hold (nothing was written).
    #[error("{0}")]
    Invalid(String),
    /// Writes were made but could not be made durable: not acknowledged.
    #[error("the store cannot make writes durable: {0}")]
    Flush(String),
}

impl From<sled::Error> for StoreError {
    /// sled's own corruption report is a corrupt store; everything else it
    /// returns is a failure to read or write its files.
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Corruption { .. } => StoreError::Corrupt(e.to_string()),
            other => StoreError::Io(other.to_string()),
        }
    }
}

/// The unique indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IndexKind {
    Email,
    Username,
    ExternalId,
    /// The join key of one sync source.
    Source(String),
    /// The SHA-256 digest (hex) of a pending invite or reset token.
    AccountToken,
}

impl std::fmt::Display for IndexKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexKind::Email => f.write_str("email"),
            IndexKind::Username => f.write_str("username"),
            IndexKind::ExternalId => f.write_str("external_id"),
            IndexKind::Source(s) => write!(f, "source key of `{s}`"),
            IndexKind::AccountToken => f.write_str("account token"),
        }
    }
}

impl IndexKind {
    fn key(&self, value: &str) -> Vec<u8> {
        let prefix = match self {
            IndexKind::Email => "email".to_string(),
            IndexKind::Username => "username".to_string(),
            IndexKind::ExternalId => "external_id".to_string(),
            IndexKind::Source(s) => format!("source:{s}"),
            IndexKind::AccountToken => "account_token".to_string(),
        };
        let mut k = prefix.into_bytes();
        k.push(0);
        k.extend_from_slice(value.as_bytes());
        k
    }
}

/// The unique keys of one record, already normalised by the domain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexKeys {
    pub entries: Vec<(IndexKind, String)>,
}

/// Per-record bookkeeping of schema version 1 (the `employee_keys` tree); read
/// only to migrate.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecordMeta {
    version: u64,
    keys: IndexKeys,
}

/// A change to the uploaded photo, made in the same transaction as the record.
#[derive(Debug, Clone, Default)]
pub enum PhotoChange {
    #[default]
    Keep,
    Set(Vec<u8>),
    Remove,
}

/// The new state of a record.
#[derive(Debug, Clone)]
pub struct RecordWrite {
    pub version: u64,
    pub bytes: Vec<u8>,
    pub keys: IndexKeys,
    /// A note that holds for this version of the record (see [`Backend::mark`]);
    /// every other note the record had is dropped, since the record changed.
    pub mark: Option<(String, Vec<u8>)>,
    /// Whether the record counts as active ([`Backend::counts`]).
    pub active: bool,
}

/// One atomic change: the record (or its removal), its photo, its audit entry and
/// the messages it causes.
#[derive(Debug, Clone)]
pub struct Write {
    pub id: Uuid,
    /// `None`: the record must not exist yet. `Some(v)`: its stored version must be `v`.
    pub expected_version: Option<u64>,
    /// `None` removes the record.
    pub record: Option<RecordWrite>,
    pub photo: PhotoChange,
    pub audit: PendingAudit,
    /// Messages to put in the outbox in the same transaction (transactional outbox).
    pub outbox: Vec<OutboxRecord>,
}

/// sled's page cache. Its default (1 GiB) kept a first import's writes
/// resident, raising the daemon's peak memory without making reads faster
/// (the figures are in README.md, `cargo bench --bench scale`): reads that
/// must be fast are served from memory above the store (the unique indexes,
/// the directory, the roster's projection).
const CACHE_BYTES: u64 = 64 << 20;

/// The embedded sled store: the default [`Backend`]. Cheap to clone.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    meta: sled::Tree,
    employees: sled::Tree,
    /// The unique indexes: `<kind>\0<key>` → id.
    index: Arc<RwLock<BTreeMap<Vec<u8>, Uuid>>>,
    /// Held for the whole of a write (see the module doc).
    write_lock: Arc<Mutex<()>>,
    photos: sled::Tree,
    audit: sled::Tree,
    audit_by_employee: sled::Tree,
    positions: sled::Tree,
    outbox: sled::Tree,
    outbox_pending: sled::Tree,
    runs: sled::Tree,
    run_plans: sled::Tree,
    run_state: sled::Tree,
    run_held: sled::Tree,
    sessions: sled::Tree,
    reads: Arc<AtomicU64>,
    /// Which records exist, in id order, and which are active (see [`directory`]).
    directory: Arc<RwLock<directory::Directory>>,
    /// Group commit (see [`durable`]).
    flusher: Arc<durable::Flusher>,
}

/// How many records there are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub active: usize,
    pub inactive: usize,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`, checks its schema version (migrating
    /// a version 1 store) and loads the unique indexes.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.display().to_string();
        crate::secret::restrict_dir(dir, false).map_err(|e| StoreError::Open {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        // sled releases its file lock from a background thread after the last
        // handle is dropped: a store closed and opened again in one process (the
        // tests, a daemon restarted in place) may find it still held for a
        // moment. Tried again for up to 2 s; another process holding it keeps it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let db = loop {
            match sled::Config::new()
                .path(dir)
                .cache_capacity(CACHE_BYTES)
                .open()
            {
                Ok(db) => break db,
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(source) => {
                    return Err(StoreError::Open {
                        path: path.clone(),
                        reason: source.to_string(),
                    });
                }
            }
        };
        // sled's files, whatever the umask (the daemon also sets umask 077 for
        // the snapshots sled writes later).
        crate::secret::restrict_dir(dir, true).map_err(|e| StoreError::Open {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let meta = db.open_tree("meta")?;
        match meta.get("schema_version")? {
            None => {
                meta.insert("schema_version", SCHEMA_VERSION.to_string().as_bytes())?;
                db.flush()?;
            }
            Some(v) if v.as_ref() == b"1" => migrate_v1(&db, &meta)?,
            // Version 3 only adds audit packs: nothing to convert.
            Some(v) if v.as_ref() == b"2" => {
                meta.insert("schema_version", SCHEMA_VERSION.to_string().as_bytes())?;
                db.flush()?;
            }
            Some(v) => {
                let found = String::from_utf8_lossy(&v).to_string();
                if found != SCHEMA_VERSION.to_string() {
                    return Err(StoreError::Schema {
                        path,
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
        }
        if meta.get(sled_copy::COPY_INCOMPLETE)?.is_some() {
            return Err(StoreError::Open {
                path,
                reason: "a `rosterd store copy` into this store did not finish; \
                         delete the directory and run the copy again"
                    .into(),
            });
        }
        let employees = db.open_tree("employees")?;
        let (index, ids) = load_index(&employees)?;
        let flusher = durable::Flusher::start(db.clone()).map_err(|e| StoreError::Open {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            directory: Arc::new(RwLock::new(directory::Directory::from_sorted(ids))),
            flusher: Arc::new(flusher),
            employees,
            index: Arc::new(RwLock::new(index)),
            write_lock: Arc::new(Mutex::new(())),
            photos: db.open_tree("photos")?,
            audit: db.open_tree("audit")?,
            audit_by_employee: db.open_tree("audit_by_employee")?,
            positions: db.open_tree("positions")?,
            outbox: db.open_tree("outbox")?,
            outbox_pending: db.open_tree("outbox_pending")?,
            runs: db.open_tree("sync_runs")?,
            run_plans: db.open_tree("sync_plans")?,
            run_state: db.open_tree("sync_state")?,
            run_held: db.open_tree("sync_held")?,
            sessions: db.open_tree("web_sessions")?,
            meta,
            db,
            reads: Arc::new(AtomicU64::new(0)),
        })
    }

    /// How many records have been read from the `employees` tree since open
    /// (point reads and scanned rows). Lets tests prove a lookup did not scan.
    pub fn record_reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// One record's body (the bytes the domain wrote).
    pub fn get(&self, id: Uuid) -> Result<Option<Record>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        match self.employees.get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => body(v).map(Some),
        }
    }

    /// The stored version of a record (its body is not decoded).
    pub fn version(&self, id: Uuid) -> Result<Option<u64>, StoreError> {
        match self.employees.get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => record::version(&v).map(Some).map_err(StoreError::from),
        }
    }

    /// The note `owner` left on the current version of a record, if any. A
    /// note lives until the record next changes: a sync source uses it to know
    /// that an entry it saw before still matches the record, without reading it.
    pub fn mark(&self, id: Uuid, owner: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(v) = self.employees.get(id.as_bytes())? else {
            return Ok(None);
        };
        let (h, _) = record::decode(&v).map_err(StoreError::from)?;
        Ok(h.marks
            .into_iter()
            .find(|(o, _)| o == owner.as_bytes())
            .map(|(_, m)| m))
    }

    /// Every note `owner` left on the current version of a record, as (id,
    /// note), in id order: [`SledStore::mark`] for all records (a pass over
    /// the records' headers; their bodies are not decoded).
    pub fn marks_of(&self, owner: &str) -> Result<Vec<(Uuid, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.employees.iter() {
            let (k, v) = kv?;
            let (h, _) = record::decode(&v).map_err(StoreError::from)?;
            if let Some((_, m)) = h.marks.into_iter().find(|(o, _)| o == owner.as_bytes()) {
                out.push((uuid_from(&k)?, m));
            }
        }
        Ok(out)
    }

    /// Leaves notes on records, each only if the record is still at the given
    /// version (others are skipped: they changed, and their note would be
    /// stale). Not a change of the record: no new version, no audit entry.
    /// Returns how many were left.
    pub fn set_marks(
        &self,
        owner: &str,
        marks: &[(Uuid, u64, Vec<u8>)],
    ) -> Result<usize, StoreError> {
        let _writing = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for (id, version, mark) in marks {
            let Some(v) = self.employees.get(id.as_bytes())? else {
                continue;
            };
            let (mut h, at) = record::decode(&v).map_err(StoreError::from)?;
            if h.version != *version {
                continue;
            }
            h.marks.retain(|(o, _)| o != owner.as_bytes());
            h.marks.push((owner.as_bytes().to_vec(), mark.clone()));
            batch.insert(
                id.as_bytes(),
                record::encode(&h, &v[at..]).map_err(StoreError::from)?,
            );
            n += 1;
        }
        self.employees.apply_batch(batch)?;
        Ok(n)
    }

    /// The id that holds `key` in `index`, if any.
    pub fn lookup(&self, index: &IndexKind, key: &str) -> Result<Option<Uuid>, StoreError> {
        Ok(self.read_index().get(&index.key(key)).copied())
    }

    /// Every (key, id) of one index, in key order.
    pub fn index_entries(&self, index: &IndexKind) -> Result<Vec<(String, Uuid)>, StoreError> {
        let prefix = index.key("");
        Ok(self
            .read_index()
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, id)| {
                (
                    String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                    *id,
                )
            })
            .collect())
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Vec<u8>, Uuid>> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh, increasing id (for run ids and the like).
    pub fn next_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }

    /// Number of records (kept as the store writes: no scan).
    pub fn len(&self) -> usize {
        self.read_directory().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many records there are, active and not (no scan).
    pub fn counts(&self) -> Counts {
        let d = self.read_directory();
        Counts {
            total: d.len(),
            active: d.active(),
            inactive: d.len() - d.active(),
        }
    }

    /// Tells the store which records are active, from their bodies: called once
    /// at start by the domain (the store does not read bodies); later writes say
    /// it themselves ([`RecordWrite::active`]).
    pub fn classify(&self, is_active: &dyn Fn(&[u8]) -> bool) -> Result<(), StoreError> {
        let mut classes = HashMap::new();
        for row in self.employees.iter() {
            let (k, v) = row?;
            let (_, at) = record::decode(&v).map_err(StoreError::from)?;
            classes.insert(uuid_from(&k)?, is_active(&v[at..]));
        }
        self.directory
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .set_classes(|id| classes.get(&id).copied());
        Ok(())
    }

    /// The records at positions `offset..offset + n` in id order, found without
    /// reading the records before them.
    pub fn page(&self, offset: usize, n: usize) -> Result<Vec<(Uuid, Record)>, StoreError> {
        let ids = self.read_directory().page(offset, n);
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            // A record removed since the ids were read is skipped.
            if let Some(v) = self.get(id)? {
                out.push((id, v));
            }
        }
        Ok(out)
    }

    fn read_directory(&self) -> std::sync::RwLockReadGuard<'_, directory::Directory> {
        self.directory
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Every record in id order, read lazily (never all in memory at once).
    pub fn scan(&self) -> impl Iterator<Item = Result<(Uuid, Record), StoreError>> + Send + '_ {
        self.employees.iter().map(move |r| {
            self.reads.fetch_add(1, Ordering::Relaxed);
            let (k, v) = r?;
            Ok((uuid_from(&k)?, body(v)?))
        })
    }

    /// The records after `after` (exclusive) in id order, or all when `None`; read
    /// lazily. Lets a client page on from where the previous page stopped.
    pub fn scan_after(
        &self,
        after: Option<Uuid>,
    ) -> impl Iterator<Item = Result<(Uuid, Record), StoreError>> + Send + '_ {
        use std::ops::Bound;
        let start = match after {
            Some(a) => Bound::Excluded(a.as_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        self.employees
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .map(move |r| {
                self.reads.fetch_add(1, Ordering::Relaxed);
                let (k, v) = r?;
                Ok((uuid_from(&k)?, body(v)?))
            })
    }

    /// A number that changes whenever a record is created, changed or removed
    /// (every such write appends to the audit log, so it is the last audit
    /// sequence number). Equal generations mean no record changed in between;
    /// lets readers cache positions in a listing.
    pub fn generation(&self) -> Result<u64, StoreError> {
        Ok(match self.audit.last()? {
            Some((k, v)) => unpack(&k, &v)?.last().map(|(s, _)| *s).unwrap_or_default(),
            None => 0,
        })
    }

    /// The stored catalog positions, in id order.
    pub fn positions(&self) -> Result<Vec<(Uuid, Record)>, StoreError> {
        self.positions
            .iter()
            .map(|r| {
                let (k, v) = r?;
                Ok((uuid_from(&k)?, Record::sled(v)))
            })
            .collect()
    }

    /// Writes one catalog position (call [`Store::flush`] before acknowledging).
    pub fn put_position(&self, id: Uuid, bytes: &[u8]) -> Result<(), StoreError> {
        self.positions.insert(id.as_bytes(), bytes)?;
        Ok(())
    }

    /// Removes one catalog position.
    pub fn remove_position(&self, id: Uuid) -> Result<(), StoreError> {
        self.positions.remove(id.as_bytes())?;
        Ok(())
    }

    /// The uploaded photo of a record.
    pub fn photo(&self, id: Uuid) -> Result<Option<Record>, StoreError> {
        Ok(self.photos.get(id.as_bytes())?.map(Record::sled))
    }

    /// Applies one write atomically. Fails with [`StoreError::Unique`] if another
    /// record holds one of the new keys and [`StoreError::VersionConflict`] if the
    /// stored version is not the expected one; in both cases nothing changed.
    pub fn commit(&self, w: &Write) -> Result<AuditEntry, StoreError> {
        backend::committed_entry(w, self.commit_many(std::slice::from_ref(w))?)
    }

    /// Applies several writes in ONE transaction: all of them or none (a bulk
    /// import pays for one transaction per batch instead of one per record).
    /// Returns the audit sequence number given to each write, in order.
    pub fn commit_many(&self, writes: &[Write]) -> Result<Vec<u64>, StoreError> {
        let _writing = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Checks first, against the stored records and the index as this batch
        // changes them; nothing is written until every write passed.
        let (prepared, keys) = self.prepare_batch(writes)?;
        let packs = audit_packs(&prepared)?;
        self.write_batch(&prepared, &packs)?;
        self.publish_batch(keys, &prepared);
        Ok(prepared.iter().map(|p| p.seq).collect())
    }

    /// Every write of a batch checked and encoded (the first refusal stops
    /// it), with what the batch does to the unique keys.
    fn prepare_batch<'a>(
        &self,
        writes: &'a [Write],
    ) -> Result<(Vec<Prepared<'a>>, KeyChanges), StoreError> {
        let mut headers: HashMap<Uuid, Option<Header>> = HashMap::new();
        let mut keys = KeyChanges::default();
        let index = self.read_index();
        let prepared = writes
            .iter()
            .map(|w| self.prepare_write(w, &mut headers, &mut keys, &index))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((prepared, keys))
    }

    /// Checks one write against its record as the batch leaves it (`headers`:
    /// the headers the batch wrote so far) and against the unique keys, and
    /// encodes its record, audit entry and outbox rows.
    fn prepare_write<'a>(
        &self,
        w: &'a Write,
        headers: &mut HashMap<Uuid, Option<Header>>,
        keys: &mut KeyChanges,
        index: &BTreeMap<Vec<u8>, Uuid>,
    ) -> Result<Prepared<'a>, StoreError> {
        // A create of an id this batch has not touched: that the record
        // does not exist is checked in the transaction, which reads the
        // key anyway (one read instead of two per new record).
        let must_be_new = w.expected_version.is_none() && !headers.contains_key(&w.id);
        let old = match headers.get(&w.id) {
            Some(h) => h.clone(),
            None if must_be_new => None,
            None => match self.employees.get(w.id.as_bytes())? {
                None => None,
                Some(v) => Some(record::decode(&v)?.0),
            },
        };
        let found = old.as_ref().map(|h| h.version);
        if found != w.expected_version {
            return Err(StoreError::VersionConflict {
                expected: w.expected_version,
                found,
            });
        }
        let old_keys: Vec<Vec<u8>> = old.as_ref().map(|h| h.keys.clone()).unwrap_or_default();
        let new_keys: Vec<(Vec<u8>, &IndexKind, &String)> = match &w.record {
            Some(r) => r
                .keys
                .entries
                .iter()
                .map(|(k, v)| (k.key(v), k, v))
                .collect(),
            None => vec![],
        };
        keys.claim(index, w.id, &old_keys, &new_keys)?;
        let seq = self.db.generate_id()?;
        let mut seqs = old.map(|h| h.seqs).unwrap_or_default();
        seqs.push(seq);
        let mut spill = Vec::new();
        if w.record.is_none() || seqs.len() > record::MAX_SEQS {
            spill = std::mem::take(&mut seqs);
        }
        let (value, header) = match &w.record {
            Some(r) => {
                let h = Header {
                    version: r.version,
                    keys: new_keys.into_iter().map(|(k, _, _)| k).collect(),
                    seqs,
                    marks: r
                        .mark
                        .iter()
                        .map(|(o, m)| (o.as_bytes().to_vec(), m.clone()))
                        .collect(),
                };
                (Some(record::encode(&h, &r.bytes)?), Some(h))
            }
            None => (None, None),
        };
        headers.insert(w.id, header);
        Ok(Prepared {
            w,
            must_be_new,
            seq,
            audit_bytes: w.audit.stored(seq),
            value,
            spill,
            outbox_bytes: encode_outbox(&w.outbox)?,
        })
    }

    /// The prepared batch in one sled transaction: all of it or nothing. A
    /// record that must be new but exists aborts it as a version conflict.
    fn write_batch(&self, prepared: &[Prepared<'_>], packs: &[PackRow]) -> Result<(), StoreError> {
        let trees = [
            &self.employees,
            &self.photos,
            &self.audit,
            &self.audit_by_employee,
            &self.outbox,
            &self.outbox_pending,
        ];
        let result = trees.transaction(|t| {
            for p in prepared {
                write_one(t, p, packs.is_empty())?;
            }
            for (k, v) in packs {
                t[2].insert(k, v.as_slice())?;
            }
            Ok::<(), ConflictableTransactionError<Option<u64>>>(())
        });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(found)) => Err(StoreError::VersionConflict {
                expected: None,
                found,
            }),
            Err(TransactionError::Storage(e)) => Err(StoreError::from(e)),
        }
    }

    /// A written batch's keys and records, put in the in-memory index and
    /// directory.
    fn publish_batch(&self, keys: KeyChanges, prepared: &[Prepared<'_>]) {
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        for k in keys.freed {
            index.remove(&k);
        }
        index.extend(keys.claimed);
        drop(index);
        let mut directory = self
            .directory
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for p in prepared {
            match &p.w.record {
                Some(r) => directory.put(p.w.id, r.active),
                None => directory.remove(p.w.id),
            }
        }
    }

    /// Writes an audit entry that concerns no single record (e.g. a start-up event).
    pub fn append_audit(&self, entry: &AuditEntry) -> Result<AuditEntry, StoreError> {
        // Under the write lock: no audit entry may get a seq inside a pack's.
        let _writing = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let seq = self.db.generate_id()?;
        let mut entry = entry.clone();
        entry.seq = seq;
        let bytes = serde_json::to_vec(&entry).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.audit.insert(seq.to_be_bytes(), bytes)?;
        Ok(entry)
    }

    /// Audit entries, newest first: all, or one employee's; `before` is a sequence
    /// number to continue from (exclusive).
    pub fn audit_entries(
        &self,
        employee: Option<Uuid>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = Vec::new();
        let before = before.unwrap_or(u64::MAX);
        match employee {
            None => {
                // A value keyed below `before` may be a pack reaching past it.
                'values: for r in self.audit.range(..before.to_be_bytes()).rev() {
                    let (k, v) = r?;
                    for (seq, bytes) in unpack(&k, &v)?.into_iter().rev() {
                        if seq >= before {
                            continue;
                        }
                        out.push(decode_audit(bytes)?);
                        if out.len() >= limit {
                            break 'values;
                        }
                    }
                }
            }
            Some(id) => {
                // The newest links are in the record's header, the older ones
                // (and all of a removed record's) in `audit_by_employee`.
                let newest = match self.employees.get(id.as_bytes())? {
                    Some(v) => record::decode(&v).map_err(StoreError::from)?.0.seqs,
                    None => vec![],
                };
                let start = id.as_bytes().to_vec();
                let mut end = id.as_bytes().to_vec();
                end.extend_from_slice(&before.to_be_bytes());
                let older = self.audit_by_employee.range(start..end).rev().map(|r| {
                    let (k, _) = r?;
                    let seq: [u8; 8] = k
                        .get(16..24)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| StoreError::Corrupt("short audit_by_employee key".into()))?;
                    Ok::<u64, StoreError>(u64::from_be_bytes(seq))
                });
                let seqs = newest
                    .into_iter()
                    .rev()
                    .filter(|s| *s < before)
                    .map(Ok)
                    .chain(older);
                for seq in seqs {
                    let seq: u64 = seq?;
                    if let Some(e) = self.audit_entry(seq)? {
                        out.push(e);
                    }
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// The audit entry with sequence number `seq`: alone under its own key, or
    /// in the pack keyed by the greatest seq at most `seq` (see [`audit`]).
    fn audit_entry(&self, seq: u64) -> Result<Option<AuditEntry>, StoreError> {
        let Some((k, v)) = self
            .audit
            .range(..=seq.to_be_bytes())
            .next_back()
            .transpose()?
        else {
            return Ok(None);
        };
        match unpack(&k, &v)?.into_iter().find(|(s, _)| *s == seq) {
            Some((_, bytes)) => decode_audit(bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Makes every write so far durable. Await before acknowledging a write.
    /// Concurrent callers share one flush (group commit, see [`durable`]).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.flusher.flush().await
    }

    /// [`Store::flush`] for blocking threads.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.flusher.flush_blocking()
    }

    /// How many flushes have run since open (each may cover many writes).
    pub fn flushes(&self) -> u64 {
        self.flusher.flushes()
    }

    /// One small write through the write lock, made durable by the flusher.
    pub fn probe_write(&self) -> Result<(), StoreError> {
        {
            let _writing = self
                .write_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = chrono::Utc::now().timestamp_millis().to_be_bytes();
            self.meta.insert("write_probe", &now)?;
        }
        self.flusher.flush_blocking()
    }

    /// Whether the store answers reads (for `/readyz`).
    pub fn is_ready(&self) -> bool {
        self.meta
            .get("schema_version")
            .map(|v| v.is_some())
            .unwrap_or(false)
    }
}

fn decode_audit(v: &[u8]) -> Result<AuditEntry, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt(format!("audit entry: {e}")))
}

/// One write of a batch, checked and encoded, ready for the transaction.
struct Prepared<'a> {
    w: &'a Write,
    seq: u64,
    audit_bytes: Vec<u8>,
    /// The new record value; `None` removes it.
    value: Option<Vec<u8>>,
    /// Audit links moved out of the header into `audit_by_employee`.
    spill: Vec<u64>,
    /// The record must not exist (checked in the transaction).
    must_be_new: bool,
    outbox_bytes: Vec<OutboxRow>,
}

/// What a batch does to the unique keys, put in the in-memory index once the
/// batch is written.
#[derive(Default)]
struct KeyChanges {
    /// Keys the batch gives to a record.
    claimed: HashMap<Vec<u8>, Uuid>,
    /// Keys the batch's records no longer hold.
    freed: HashSet<Vec<u8>>,
}

impl KeyChanges {
    /// Gives `new` to `id` and frees its `old` keys; fails when another
    /// record holds one of `new` (in `index`, or earlier in the batch).
    fn claim(
        &mut self,
        index: &BTreeMap<Vec<u8>, Uuid>,
        id: Uuid,
        old: &[Vec<u8>],
        new: &[(Vec<u8>, &IndexKind, &String)],
    ) -> Result<(), StoreError> {
        for (k, kind, key) in new {
            let holder = match self.claimed.get(k) {
                Some(id) => Some(*id),
                None if self.freed.contains(k) => None,
                None => index.get(k).copied(),
            };
            if holder.is_some_and(|h| h != id) {
                return Err(StoreError::Unique {
                    index: (*kind).clone(),
                    key: (*key).clone(),
                });
            }
        }
        for k in old {
            if self.claimed.get(k) == Some(&id) || !self.claimed.contains_key(k) {
                self.claimed.remove(k);
                self.freed.insert(k.clone());
            }
        }
        for (k, _, _) in new {
            self.freed.remove(k);
            self.claimed.insert(k.clone(), id);
        }
        Ok(())
    }
}

/// A message as the outbox trees hold it: its key, its JSON, whether it
/// waits for delivery (then it is in `outbox_pending` too).
type OutboxRow = ([u8; 8], Vec<u8>, bool);

/// An audit pack as the `audit` tree holds it: its key (the first seq), its bytes.
type PackRow = ([u8; 8], Vec<u8>);

/// A write's outbox rows.
fn encode_outbox(outbox: &[OutboxRecord]) -> Result<Vec<OutboxRow>, StoreError> {
    outbox
        .iter()
        .map(|m| {
            let json = serde_json::to_vec(m).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok((m.id.to_be_bytes(), json, m.state == DeliveryState::Pending))
        })
        .collect()
}

/// A batch's audit entries in packs (see [`audit`]): far fewer writes for a
/// bulk import. Seqs increase along the batch. A single write has none: its
/// entry is written on its own.
fn audit_packs(prepared: &[Prepared<'_>]) -> Result<Vec<PackRow>, StoreError> {
    if prepared.len() <= 1 {
        return Ok(vec![]);
    }
    prepared
        .chunks(audit::PACK_ENTRIES)
        .map(|c| {
            let entries: Vec<(u64, &[u8])> = c
                .iter()
                .map(|p| (p.seq, p.audit_bytes.as_slice()))
                .collect();
            Ok((c[0].seq.to_be_bytes(), audit::encode_pack(&entries)?))
        })
        .collect()
}

/// One prepared write inside its batch's transaction. `t`: the trees as
/// [`SledStore::write_batch`] lists them; `single_audit`: the batch has no
/// packs, the entry is written on its own.
fn write_one(
    t: &[TransactionalTree],
    p: &Prepared<'_>,
    single_audit: bool,
) -> Result<(), ConflictableTransactionError<Option<u64>>> {
    let (employees, photos, audit, by_emp, outbox, pending) =
        (&t[0], &t[1], &t[2], &t[3], &t[4], &t[5]);
    let id = *p.w.id.as_bytes();
    match &p.value {
        Some(v) => {
            let old = employees.insert(&id, v.as_slice())?;
            if let (true, Some(old)) = (p.must_be_new, old) {
                // Nothing of the batch is written.
                let found = record::version(&old).ok();
                return Err(ConflictableTransactionError::Abort(found));
            }
        }
        None => {
            employees.remove(&id)?;
            photos.remove(&id)?;
        }
    }
    match &p.w.photo {
        PhotoChange::Keep => {}
        PhotoChange::Set(bytes) => {
            photos.insert(&id, bytes.as_slice())?;
        }
        PhotoChange::Remove => {
            photos.remove(&id)?;
        }
    }
    if single_audit {
        audit.insert(&p.seq.to_be_bytes(), p.audit_bytes.as_slice())?;
    }
    for s in &p.spill {
        let mut k = id.to_vec();
        k.extend_from_slice(&s.to_be_bytes());
        by_emp.insert(k, &[])?;
    }
    for (k, v, is_pending) in &p.outbox_bytes {
        outbox.insert(k, v.as_slice())?;
        if *is_pending {
            pending.insert(k, &[])?;
        }
    }
    Ok(())
}

/// The entries `(seq, JSON)` of one `audit` value, oldest first.
fn unpack<'a>(key: &[u8], v: &'a [u8]) -> Result<Vec<(u64, &'a [u8])>, StoreError> {
    let seq = key
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt("audit key is not a sequence number".into()))?;
    Ok(audit::unpack(seq, v)?)
}

/// The body of a stored record (past its header), without copying.
fn body(v: sled::IVec) -> Result<Record, StoreError> {
    let (_, at) = record::decode(&v).map_err(StoreError::from)?;
    let len = v.len() - at;
    Ok(Record::sled(v.subslice(at, len)))
}

/// The unique indexes, from every record's header.
type Loaded = (BTreeMap<Vec<u8>, Uuid>, Vec<Uuid>);

/// The unique indexes and every id (in order), from every record's header.
fn load_index(employees: &sled::Tree) -> Result<Loaded, StoreError> {
    let mut index = BTreeMap::new();
    let mut ids = Vec::new();
    for r in employees.iter() {
        let (k, v) = r?;
        let id = uuid_from(&k)?;
        ids.push(id);
        let (h, _) = record::decode(&v).map_err(StoreError::from)?;
        for key in h.keys {
            if let Some(other) = index.insert(key.clone(), id) {
                return Err(StoreError::Corrupt(format!(
                    "records {other} and {id} both hold the unique key `{}`",
                    String::from_utf8_lossy(&key).replace('\0', ":")
                )));
            }
        }
    }
    Ok((index, ids))
}

/// Schema 1 → 3: each record takes its version and keys (from `employee_keys`)
/// into its header; the `employee_keys` and `index` trees go. Records already
/// converted are skipped, so a migration cut short by a crash runs again.
fn migrate_v1(db: &sled::Db, meta: &sled::Tree) -> Result<(), StoreError> {
    let employees = db.open_tree("employees")?;
    let keys = db.open_tree("employee_keys")?;
    let mut converted = 0usize;
    for r in employees.iter() {
        let (id, v) = r?;
        if v.first() == Some(&record::TAG) {
            continue;
        }
        let m = keys.get(&id)?.ok_or_else(|| {
            StoreError::Corrupt(format!("record {:?} has no meta", uuid_from(&id).ok()))
        })?;
        let m: RecordMeta = serde_json::from_slice(&m)
            .map_err(|e| StoreError::Corrupt(format!("record meta: {e}")))?;
        let h = Header {
            version: m.version,
            keys: m.keys.entries.iter().map(|(k, v)| k.key(v)).collect(),
            seqs: vec![],
            marks: vec![],
        };
        employees.insert(
            &id,
            record::encode(&h, &v).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        )?;
        converted += 1;
    }
    db.flush()?;
    db.drop_tree("employee_keys")?;
    db.drop_tree("index")?;
    // Sync fingerprints moved into the records (as marks).
    db.drop_tree("sync_fingerprints")?;
    meta.insert("schema_version", SCHEMA_VERSION.to_string().as_bytes())?;
    db.flush()?;
    tracing::info!(
        records = converted,
        "store migrated from schema version 1 to {SCHEMA_VERSION}"
    );
    Ok(())
}

fn uuid_from(b: &[u8]) -> Result<Uuid, StoreError> {
    Uuid::from_slice(b).map_err(|_| StoreError::Corrupt("record key is not a UUID".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_failure_is_reported_as_io_not_as_a_corrupt_record() {
        let e = StoreError::from(sled::Error::Io(std::io::Error::other("disk full")));
        assert!(matches!(e, StoreError::Io(_)), "{e:?}");
        let shown = e.to_string();
        assert!(shown.starts_with("store I/O error: "), "{shown}");
        assert!(!shown.contains("corrupt"), "{shown}");
        // A damaged record read back stays a corrupt record.
        let e = StoreError::from(record::decode(b"\x02\x00").unwrap_err());
        assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
    }

    fn entry(id: Uuid) -> AuditEntry {
        AuditEntry::new(Actor::system(), Some(id), AuditAction::Create, vec![])
    }

    fn write(id: Uuid, expected: Option<u64>, version: u64, email: &str) -> Write {
        Write {
            id,
            expected_version: expected,
            record: Some(RecordWrite {
                version,
                bytes: format!("{{\"email\":\"{email}\"}}").into_bytes(),
                keys: IndexKeys {
                    entries: vec![(IndexKind::Email, email.into())],
                },
                mark: None,
                active: true,
            }),
            photo: PhotoChange::Keep,
            audit: PendingAudit::new(entry(id)).unwrap(),
            outbox: vec![],
        }
    }

    #[test]
    fn unique_index_and_version_checks() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        s.commit(&write(a, None, 1, "a@x")).unwrap();
        // Same key on another record: refused, nothing written.
        let e = s.commit(&write(b, None, 1, "a@x")).unwrap_err();
        assert!(matches!(
            e,
            StoreError::Unique {
                index: IndexKind::Email,
                ..
            }
        ));
        assert!(s.get(b).unwrap().is_none());
        // Creating an existing id: version conflict.
        assert!(matches!(
            s.commit(&write(a, None, 1, "z@x")).unwrap_err(),
            StoreError::VersionConflict { .. }
        ));
        // Changing the key frees the old one.
        s.commit(&write(a, Some(1), 2, "a2@x")).unwrap();
        assert_eq!(s.lookup(&IndexKind::Email, "a@x").unwrap(), None);
        assert_eq!(s.lookup(&IndexKind::Email, "a2@x").unwrap(), Some(a));
        s.commit(&write(b, None, 1, "a@x")).unwrap();
        // Stale version refused.
        assert!(s.commit(&write(a, Some(1), 3, "q@x")).is_err());
        assert_eq!(s.audit_entries(Some(a), None, 10).unwrap().len(), 2);
        assert_eq!(s.audit_entries(None, None, 10).unwrap().len(), 3);
    }

    #[test]
    fn outbox_is_written_with_the_change_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let msg = |id: u64, emp: Uuid| OutboxRecord {
            id,
            kind: MessageKind::Invite,
            employee_id: emp,
            to: "a@x".into(),
            name: "A".into(),
            expires_at: chrono::Utc::now(),
            state: DeliveryState::Pending,
            attempts: 0,
            created_at: chrono::Utc::now(),
            next_attempt_at: chrono::Utc::now(),
            last_error: None,
            sent_at: None,
        };
        let a = Uuid::new_v4();
        let mut w = write(a, None, 1, "a@x");
        w.outbox.push(msg(1, a));
        s.commit(&w).unwrap();
        // A refused change leaves no message behind.
        let b = Uuid::new_v4();
        let mut w = write(b, None, 1, "a@x");
        w.outbox.push(msg(2, b));
        assert!(s.commit(&w).is_err());
        let all = s.outbox_all().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].employee_id, a);
        assert_eq!(s.outbox_due(chrono::Utc::now()).unwrap().len(), 1);
        // Sent: off the pending index; a stale compare-and-swap is refused.
        let mut sent = all[0].clone();
        sent.state = DeliveryState::Sent;
        s.outbox_put(&sent).unwrap();
        assert!(s.outbox_due(chrono::Utc::now()).unwrap().is_empty());
        let mut retried = all[0].clone();
        retried.attempts = 0;
        assert!(!s.outbox_replace(&all[0], &retried).unwrap());
        assert_eq!(s.outbox_get(1).unwrap().unwrap().state, DeliveryState::Sent);
    }

    #[test]
    fn history_lists_every_entry_newest_first_past_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        s.commit(&write(a, None, 1, "a@x")).unwrap();
        s.commit(&write(b, None, 1, "b@x")).unwrap();
        // More changes than the header keeps: the older links spill.
        for v in 2..=80u64 {
            s.commit(&write(a, Some(v - 1), v, &format!("a{v}@x")))
                .unwrap();
        }
        let all = s.audit_entries(Some(a), None, 1000).unwrap();
        assert_eq!(all.len(), 80);
        assert!(all.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
        assert!(all.iter().all(|e| e.employee_id == Some(a)));
        // Paging with `before` walks the same list.
        let mut paged = Vec::new();
        let mut before = None;
        loop {
            let page = s.audit_entries(Some(a), before, 7).unwrap();
            let Some(last) = page.last() else { break };
            before = Some(last.seq);
            paged.extend(page.into_iter().map(|e| e.seq));
        }
        assert_eq!(paged, all.iter().map(|e| e.seq).collect::<Vec<_>>());
        // A removed record keeps its history.
        let mut rm = write(b, Some(1), 0, "");
        rm.record = None;
        s.commit(&rm).unwrap();
        assert_eq!(s.audit_entries(Some(b), None, 10).unwrap().len(), 2);
        assert_eq!(s.lookup(&IndexKind::Email, "b@x").unwrap(), None);
        // The index comes back from the headers after a restart.
        drop(s);
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.lookup(&IndexKind::Email, "a80@x").unwrap(), Some(a));
        assert_eq!(s.lookup(&IndexKind::Email, "a79@x").unwrap(), None);
        assert_eq!(s.version(a).unwrap(), Some(80));
        assert_eq!(s.audit_entries(Some(a), None, 1000).unwrap().len(), 80);
    }

    #[test]
    fn a_batch_that_fails_a_check_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        // Two creates in one batch claiming one email.
        let e = s
            .commit_many(&[write(a, None, 1, "a@x"), write(b, None, 1, "a@x")])
            .unwrap_err();
        assert!(matches!(e, StoreError::Unique { .. }), "{e}");
        assert!(s.get(a).unwrap().is_none());
        assert_eq!(s.lookup(&IndexKind::Email, "a@x").unwrap(), None);
        assert!(s.audit_entries(None, None, 10).unwrap().is_empty());
        // In one batch, a key freed by one write can be taken by the next.
        s.commit(&write(a, None, 1, "a@x")).unwrap();
        s.commit_many(&[write(a, Some(1), 2, "a2@x"), write(c, None, 1, "a@x")])
            .unwrap();
        assert_eq!(s.lookup(&IndexKind::Email, "a@x").unwrap(), Some(c));
        assert_eq!(s.lookup(&IndexKind::Email, "a2@x").unwrap(), Some(a));
        // A create of an id that exists, after a good one: the batch is refused
        // (the check is made in the transaction) and nothing of it is written.
        let (d, audit) = (Uuid::new_v4(), s.audit.len());
        let e = s
            .commit_many(&[write(d, None, 1, "d@x"), write(c, None, 1, "c2@x")])
            .unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::VersionConflict {
                    expected: None,
                    found: Some(1)
                }
            ),
            "{e}"
        );
        assert!(s.get(d).unwrap().is_none());
        assert_eq!(s.version(c).unwrap(), Some(1));
        assert_eq!(s.lookup(&IndexKind::Email, "d@x").unwrap(), None);
        assert_eq!(s.lookup(&IndexKind::Email, "a@x").unwrap(), Some(c));
        assert_eq!(s.audit.len(), audit);
    }

    #[test]
    fn marks_hold_for_one_version_of_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let a = Uuid::new_v4();
        let mut w = write(a, None, 1, "a@x");
        w.record.as_mut().unwrap().mark = Some(("ldap".into(), vec![7]));
        s.commit(&w).unwrap();
        assert_eq!(s.mark(a, "ldap").unwrap(), Some(vec![7]));
        assert_eq!(s.mark(a, "hr").unwrap(), None);
        // Another owner's note joins it; a note for a stale version is dropped.
        assert_eq!(s.set_marks("hr", &[(a, 1, vec![8])]).unwrap(), 1);
        assert_eq!(s.set_marks("ldap", &[(a, 0, vec![9])]).unwrap(), 0);
        assert_eq!(s.mark(a, "ldap").unwrap(), Some(vec![7]));
        assert_eq!(s.mark(a, "hr").unwrap(), Some(vec![8]));
        let audit = s.audit_entries(Some(a), None, 10).unwrap().len();
        // Any change of the record drops every note.
        s.commit(&write(a, Some(1), 2, "a@x")).unwrap();
        assert_eq!(s.mark(a, "ldap").unwrap(), None);
        assert_eq!(s.mark(a, "hr").unwrap(), None);
        assert_eq!(s.audit_entries(Some(a), None, 10).unwrap().len(), audit + 1);
        assert_eq!(s.lookup(&IndexKind::Email, "a@x").unwrap(), Some(a));
    }

    /// A store written by the previous release (schema 1) is migrated at open.
    #[test]
    fn a_version_1_store_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert("schema_version", "1")
                .unwrap();
            let emp = db.open_tree("employees").unwrap();
            let keys = db.open_tree("employee_keys").unwrap();
            let index = db.open_tree("index").unwrap();
            let audit = db.open_tree("audit").unwrap();
            let by_emp = db.open_tree("audit_by_employee").unwrap();
            for (n, id) in [(1u64, a), (2, b)] {
                let email = format!("p{n}@x");
                emp.insert(
                    id.as_bytes(),
                    format!("{{\"email\":\"{email}\"}}").as_bytes(),
                )
                .unwrap();
                let m = RecordMeta {
                    version: 3,
                    keys: IndexKeys {
                        entries: vec![
                            (IndexKind::Email, email.clone()),
                            (IndexKind::Source("ldap".into()), format!("k{n}")),
                        ],
                    },
                };
                keys.insert(id.as_bytes(), serde_json::to_vec(&m).unwrap())
                    .unwrap();
                index
                    .insert(IndexKind::Email.key(&email), id.as_bytes())
                    .unwrap();
                let seq = 10 + n;
                audit
                    .insert(
                        seq.to_be_bytes(),
                        audit::encode_with_seq(&entry(id), seq).unwrap(),
                    )
                    .unwrap();
                let mut k = id.as_bytes().to_vec();
                k.extend_from_slice(&seq.to_be_bytes());
                by_emp.insert(k, &[]).unwrap();
            }
            db.flush().unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(&*s.get(a).unwrap().unwrap(), b"{\"email\":\"p1@x\"}");
        assert_eq!(s.version(b).unwrap(), Some(3));
        assert_eq!(s.lookup(&IndexKind::Email, "p2@x").unwrap(), Some(b));
        let linked = s.index_entries(&IndexKind::Source("ldap".into())).unwrap();
        assert_eq!(linked, vec![("k1".to_string(), a), ("k2".to_string(), b)]);
        assert_eq!(s.audit_entries(Some(a), None, 10).unwrap().len(), 1);
        assert!(
            s.db.tree_names()
                .iter()
                .all(|n| &**n != b"employee_keys" && &**n != b"index")
        );
        assert_eq!(
            &*s.meta.get("schema_version").unwrap().unwrap(),
            SCHEMA_VERSION.to_string().as_bytes()
        );
        // Writes go on from the migrated version and keys.
        assert!(s.commit(&write(Uuid::new_v4(), None, 1, "p1@x")).is_err());
        s.commit(&write(a, Some(3), 4, "p1b@x")).unwrap();
        assert_eq!(s.audit_entries(Some(a), None, 10).unwrap().len(), 2);
        drop(s);
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.lookup(&IndexKind::Email, "p1b@x").unwrap(), Some(a));
    }

    /// A batch's audit entries share one value; every way of reading the log
    /// finds each of them, and entries written after it, in order.
    #[test]
    fn a_batch_audit_pack_reads_as_single_entries() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let ids: Vec<Uuid> = (0..13).map(|_| Uuid::new_v4()).collect();
        s.commit(&write(ids[0], None, 1, "p0@x")).unwrap();
        // 11 writes: a full pack and a pack of 3.
        let batch: Vec<Write> = ids[1..12]
            .iter()
            .enumerate()
            .map(|(i, id)| write(*id, None, 1, &format!("p{}@x", i + 1)))
            .collect();
        let seqs = s.commit_many(&batch).unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        let other = s
            .append_audit(&AuditEntry::new(
                Actor::system(),
                None,
                AuditAction::Update,
                vec![],
            ))
            .unwrap();
        s.commit(&write(ids[12], None, 1, "p12@x")).unwrap();
        let all = s.audit_entries(None, None, 100).unwrap();
        assert_eq!(all.len(), 14);
        assert!(all.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
        assert_eq!(s.generation().unwrap(), all[0].seq);
        // `before` inside the second pack: the older ones of it, and the rest.
        let page = s.audit_entries(None, Some(seqs[9]), 100).unwrap();
        let mut want: Vec<u64> = seqs[..9].iter().rev().copied().collect();
        want.push(all[13].seq);
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), want);
        // Each profile's history finds its entry inside its pack.
        for (id, seq) in ids[1..12].iter().zip(&seqs) {
            let h = s.audit_entries(Some(*id), None, 10).unwrap();
            assert_eq!(h.len(), 1);
            assert_eq!((h[0].seq, h[0].employee_id), (*seq, Some(*id)));
        }
        assert!(
            all.iter()
                .any(|e| e.seq == other.seq && e.action == AuditAction::Update)
        );
        // Two packs and three single entries in the tree.
        assert_eq!(s.audit.len(), 5);
        // Paging one entry at a time walks the same list.
        let mut before = None;
        let mut walked = Vec::new();
        while let Some(e) = s.audit_entries(None, before, 1).unwrap().pop() {
            before = Some(e.seq);
            walked.push(e.seq);
        }
        assert_eq!(walked, all.iter().map(|e| e.seq).collect::<Vec<_>>());
    }

    /// The write probe of `/readyz`: false while writes cannot get through (here
    /// the write lock is held, as by a wedged transaction), without a pile of
    /// stuck probes; true again once they can.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_write_probe_sees_a_wedged_write_path() {
        let dir = tempfile::tempdir().unwrap();
        let sled = SledStore::open(dir.path()).unwrap();
        let store = Store::new(sled.clone());
        let timeout = std::time::Duration::from_millis(300);
        assert!(store.writable(timeout).await);
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let lock = sled.write_lock.clone();
        let holder = std::thread::spawn(move || {
            let _wedged = lock.lock().unwrap();
            held_tx.send(()).unwrap();
            let _ = release_rx.recv();
        });
        held_rx.recv().unwrap();
        assert!(
            !store.writable(timeout).await,
            "a wedged write path is not writable"
        );
        // The first probe is still stuck: the next answer is immediate.
        let t = std::time::Instant::now();
        assert!(!store.writable(timeout).await);
        assert!(t.elapsed() < timeout, "{:?}", t.elapsed());
        release_tx.send(()).unwrap();
        holder.join().unwrap();
        // The stuck probe completes; writes get through again.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !store.writable(timeout).await {
            assert!(std::time::Instant::now() < deadline, "still not writable");
        }
    }

    /// 64 writers flushing at once all complete (sled's own `flush_async`,
    /// called like this, deadlocks: sled#1308), and the counts follow.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_flushes_all_complete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let before = store.flushes();
        let mut tasks = Vec::new();
        for i in 0..64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .commit(&write(Uuid::new_v4(), None, 1, &format!("f{i}@x")))
                    .unwrap();
                store.flush().await.unwrap();
            }));
        }
        let all = async {
            for t in tasks {
                t.await.unwrap();
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(60), all)
            .await
            .expect("every flush completes");
        // Writers that arrived during a flush shared the next one.
        let flushes = store.flushes() - before;
        assert!(flushes >= 1, "{flushes}");
        assert_eq!(store.counts().total, 64);
    }

    /// A schema 2 store (no packs) opens as it is and is marked version 3.
    #[test]
    fn a_version_2_store_is_marked_3() {
        let dir = tempfile::tempdir().unwrap();
        let a = Uuid::new_v4();
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.commit(&write(a, None, 1, "a@x")).unwrap();
            s.meta.insert("schema_version", "2").unwrap();
            s.db.flush().unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(&*s.meta.get("schema_version").unwrap().unwrap(), b"3");
        assert_eq!(s.lookup(&IndexKind::Email, "a@x").unwrap(), Some(a));
        assert_eq!(s.audit_entries(Some(a), None, 10).unwrap().len(), 1);
    }

    #[test]
    fn schema_version_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.meta.insert("schema_version", "99").unwrap();
            s.db.flush().unwrap();
        }
        let e = SledStore::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains("schema version 99"), "{e}");
    }
}
