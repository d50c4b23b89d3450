//! The sled store. It knows records only as bytes plus the index keys the domain
//! hands it; the rules (what is unique, how keys are normalised) live in `employee`.
//!
//! Trees:
//! - `meta`: `schema_version`, checked at open.
//! - `employees`: employee id (16 bytes) → the record (JSON, written by `employee`).
//! - `employee_keys`: id → [`RecordMeta`] (version + index keys), so a write can
//!   check the expected version and drop the old index keys in the same transaction.
//! - `index`: `<kind>\0<key>` → id, one namespace per unique index.
//! - `photos`: id → uploaded photo bytes.
//! - `audit`: sequence number (u64, big-endian) → [`AuditEntry`] (append-only).
//! - `audit_by_employee`: id ++ sequence → `()`, to list one employee's history.
//! - `positions`: position id (16 bytes, UUID v7 so ids sort by creation) → the
//!   position (JSON, written by `employee`). The catalog's positions with stable ids
//!   (SCIM Groups); seeded from the config at start.
//! - `outbox`: message id (u64, big-endian) → [`OutboxRecord`]: mail caused by a
//!   change, written in the change's transaction (see [`outbox`]).
//! - `outbox_pending`: message id → `()` while the message is pending.
//!
//! Every [`Write`] is one sled transaction over all of these. [`Store::flush`] must
//! be awaited before a write is acknowledged to a client.

pub mod audit;
pub mod outbox;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use uuid::Uuid;

pub use audit::{Actor, ActorKind, AuditEntry, FieldChange};
pub use outbox::{DeliveryState, MessageKind, OutboxRecord, StoredSecret};

/// The on-disk format this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {source} (is another rosterd using this data_dir?)")]
    Open { path: String, source: sled::Error },
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
    #[error("store I/O error: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record in the store: {0}")]
    Corrupt(String),
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

/// Per-record bookkeeping kept next to the record.
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
    pub audit: AuditEntry,
    /// Messages to put in the outbox in the same transaction (transactional outbox).
    pub outbox: Vec<OutboxRecord>,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    employees: sled::Tree,
    employee_keys: sled::Tree,
    index: sled::Tree,
    photos: sled::Tree,
    audit: sled::Tree,
    audit_by_employee: sled::Tree,
    positions: sled::Tree,
    outbox: sled::Tree,
    outbox_pending: sled::Tree,
    reads: Arc<AtomicU64>,
}

enum TxAbort {
    Unique(IndexKind, String),
    Version(Option<u64>, Option<u64>),
}

impl Store {
    /// Opens (or creates) the store in `dir` and checks its schema version.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.display().to_string();
        let db = sled::Config::new()
            .path(dir)
            .open()
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        let meta = db.open_tree("meta")?;
        match meta.get("schema_version")? {
            None => {
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
        Ok(Self {
            employees: db.open_tree("employees")?,
            employee_keys: db.open_tree("employee_keys")?,
            index: db.open_tree("index")?,
            photos: db.open_tree("photos")?,
            audit: db.open_tree("audit")?,
            audit_by_employee: db.open_tree("audit_by_employee")?,
            positions: db.open_tree("positions")?,
            outbox: db.open_tree("outbox")?,
            outbox_pending: db.open_tree("outbox_pending")?,
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

    /// One record's bytes.
    pub fn get(&self, id: Uuid) -> Result<Option<sled::IVec>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(self.employees.get(id.as_bytes())?)
    }

    /// The id that holds `key` in `index`, if any.
    /// The stored version of a record, read from its meta (the record itself is
    /// not read).
    pub fn version(&self, id: Uuid) -> Result<Option<u64>, StoreError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u64,
        }
        match self.employee_keys.get(id.as_bytes())? {
            None => Ok(None),
            Some(b) => serde_json::from_slice::<VersionOnly>(&b)
                .map(|m| Some(m.version))
                .map_err(|e| StoreError::Corrupt(format!("record meta: {e}"))),
        }
    }

    pub fn lookup(&self, index: &IndexKind, key: &str) -> Result<Option<Uuid>, StoreError> {
        match self.index.get(index.key(key))? {
            None => Ok(None),
            Some(v) => Ok(Some(uuid_from(&v)?)),
        }
    }

    /// Every (key, id) of one index, in key order.
    pub fn index_entries(&self, index: &IndexKind) -> Result<Vec<(String, Uuid)>, StoreError> {
        let prefix = index.key("");
        let mut out = Vec::new();
        for r in self.index.scan_prefix(&prefix) {
            let (k, v) = r?;
            let key = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push((key, uuid_from(&v)?));
        }
        Ok(out)
    }

    /// A named tree for a module's own records (sync runs, sync state, ...).
    pub fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(name)?)
    }

    /// A fresh, increasing id (for run ids and the like).
    pub fn next_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.employees.len()
    }

    pub fn is_empty(&self) -> bool {
        self.employees.is_empty()
    }

    /// Every record in id order, read lazily (never all in memory at once).
    pub fn scan(&self) -> impl Iterator<Item = Result<(Uuid, sled::IVec), StoreError>> + '_ {
        self.employees.iter().map(move |r| {
            self.reads.fetch_add(1, Ordering::Relaxed);
            let (k, v) = r?;
            Ok((uuid_from(&k)?, v))
        })
    }

    /// The records after `after` (exclusive) in id order, or all when `None`; read
    /// lazily. Lets a client page on from where the previous page stopped.
    pub fn scan_after(
        &self,
        after: Option<Uuid>,
    ) -> impl Iterator<Item = Result<(Uuid, sled::IVec), StoreError>> + '_ {
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
                Ok((uuid_from(&k)?, v))
            })
    }

    /// A number that changes whenever a record is created, changed or removed
    /// (every such write appends to the audit log, so it is the last audit
    /// sequence number). Equal generations mean no record changed in between;
    /// lets readers cache positions in a listing.
    pub fn generation(&self) -> Result<u64, StoreError> {
        Ok(match self.audit.last()? {
            Some((k, _)) => k
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or_default(),
            None => 0,
        })
    }

    /// The stored catalog positions, in id order.
    pub fn positions(&self) -> Result<Vec<(Uuid, sled::IVec)>, StoreError> {
        self.positions
            .iter()
            .map(|r| {
                let (k, v) = r?;
                Ok((uuid_from(&k)?, v))
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
    pub fn photo(&self, id: Uuid) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.photos.get(id.as_bytes())?)
    }

    /// Applies one write atomically. Fails with [`StoreError::Unique`] if another
    /// record holds one of the new keys and [`StoreError::VersionConflict`] if the
    /// stored version is not the expected one; in both cases nothing changed.
    pub fn commit(&self, w: &Write) -> Result<AuditEntry, StoreError> {
        let seq = self
            .commit_many(std::slice::from_ref(w))?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("commit returned no audit entry".into()))?;
        let mut entry = w.audit.clone();
        entry.seq = seq;
        Ok(entry)
    }

    /// Applies several writes in ONE transaction: all of them or none (a bulk
    /// import pays for one transaction per batch instead of one per record).
    /// Returns the audit sequence number given to each write, in order.
    pub fn commit_many(&self, writes: &[Write]) -> Result<Vec<u64>, StoreError> {
        struct Prepared<'a> {
            w: &'a Write,
            seq: u64,
            audit_bytes: Vec<u8>,
            meta_bytes: Option<Vec<u8>>,
            outbox_bytes: Vec<([u8; 8], Vec<u8>, bool)>,
        }
        let mut prepared = Vec::with_capacity(writes.len());
        for w in writes {
            let seq = self.db.generate_id()?;
            let audit_bytes = audit::encode_with_seq(&w.audit, seq)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let meta_bytes = match &w.record {
                Some(r) => Some(
                    serde_json::to_vec(&RecordMeta {
                        version: r.version,
                        keys: r.keys.clone(),
                    })
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                ),
                None => None,
            };
            let mut outbox_bytes = Vec::with_capacity(w.outbox.len());
            for m in &w.outbox {
                outbox_bytes.push((
                    m.id.to_be_bytes(),
                    serde_json::to_vec(m).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    m.state == DeliveryState::Pending,
                ));
            }
            prepared.push(Prepared {
                w,
                seq,
                audit_bytes,
                meta_bytes,
                outbox_bytes,
            });
        }
        let trees = [
            &self.employees,
            &self.employee_keys,
            &self.index,
            &self.photos,
            &self.audit,
            &self.audit_by_employee,
            &self.outbox,
            &self.outbox_pending,
        ];
        let result = trees.transaction(|t| {
            let (employees, keys_tree, index, photos, audit, by_emp, outbox, pending) =
                (&t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6], &t[7]);
            for p in &prepared {
                let (w, seq) = (p.w, p.seq);
                let id = *w.id.as_bytes();
                let old: Option<RecordMeta> = match keys_tree.get(id)? {
                    None => None,
                    Some(b) => Some(serde_json::from_slice(&b).map_err(|e| {
                        ConflictableTransactionError::Storage(sled::Error::Unsupported(format!(
                            "corrupt record meta: {e}"
                        )))
                    })?),
                };
                let found = old.as_ref().map(|m| m.version);
                if found != w.expected_version {
                    return Err(ConflictableTransactionError::Abort(TxAbort::Version(
                        w.expected_version,
                        found,
                    )));
                }
                if let Some(old) = &old {
                    for (kind, key) in &old.keys.entries {
                        index.remove(kind.key(key))?;
                    }
                }
                match (&w.record, &p.meta_bytes) {
                    (Some(r), Some(mb)) => {
                        for (kind, key) in &r.keys.entries {
                            let k = kind.key(key);
                            if let Some(holder) = index.get(&k)?
                                && holder.as_ref() != id
                            {
                                return Err(ConflictableTransactionError::Abort(TxAbort::Unique(
                                    kind.clone(),
                                    key.clone(),
                                )));
                            }
                            index.insert(k, &id)?;
                        }
                        employees.insert(&id, r.bytes.as_slice())?;
                        keys_tree.insert(&id, mb.as_slice())?;
                    }
                    _ => {
                        employees.remove(&id)?;
                        keys_tree.remove(&id)?;
                        photos.remove(&id)?;
                    }
                }
                match &w.photo {
                    PhotoChange::Keep => {}
                    PhotoChange::Set(bytes) => {
                        photos.insert(&id, bytes.as_slice())?;
                    }
                    PhotoChange::Remove => {
                        photos.remove(&id)?;
                    }
                }
                audit.insert(&seq.to_be_bytes(), p.audit_bytes.as_slice())?;
                let mut k = id.to_vec();
                k.extend_from_slice(&seq.to_be_bytes());
                by_emp.insert(k, &[])?;
                for (k, v, is_pending) in &p.outbox_bytes {
                    outbox.insert(k, v.as_slice())?;
                    if *is_pending {
                        pending.insert(k, &[])?;
                    }
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(prepared.iter().map(|p| p.seq).collect()),
            Err(TransactionError::Abort(TxAbort::Unique(index, key))) => {
                Err(StoreError::Unique { index, key })
            }
            Err(TransactionError::Abort(TxAbort::Version(expected, found))) => {
                Err(StoreError::VersionConflict { expected, found })
            }
            Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
        }
    }

    /// Writes an audit entry that concerns no single record (e.g. a start-up event).
    pub fn append_audit(&self, entry: &AuditEntry) -> Result<AuditEntry, StoreError> {
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
                for r in self.audit.range(..before.to_be_bytes()).rev() {
                    let (_, v) = r?;
                    out.push(decode_audit(&v)?);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Some(id) => {
                let start = id.as_bytes().to_vec();
                let mut end = id.as_bytes().to_vec();
                end.extend_from_slice(&before.to_be_bytes());
                for r in self.audit_by_employee.range(start..end).rev() {
                    let (k, _) = r?;
                    let seq_bytes = k
                        .get(16..24)
                        .ok_or_else(|| StoreError::Corrupt("short audit_by_employee key".into()))?;
                    if let Some(v) = self.audit.get(seq_bytes)? {
                        out.push(decode_audit(&v)?);
                    }
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Makes every write so far durable. Await before acknowledging a write.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
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

fn uuid_from(b: &[u8]) -> Result<Uuid, StoreError> {
    Uuid::from_slice(b).map_err(|_| StoreError::Corrupt("record key is not a UUID".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: Uuid) -> AuditEntry {
        AuditEntry::new(Actor::system(), Some(id), "create", vec![])
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
            }),
            photo: PhotoChange::Keep,
            audit: entry(id),
            outbox: vec![],
        }
    }

    #[test]
    fn unique_index_and_version_checks() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
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
        let s = Store::open(dir.path()).unwrap();
        let msg = |id: u64, emp: Uuid| OutboxRecord {
            id,
            kind: MessageKind::Invite,
            employee_id: emp,
            to: "a@x".into(),
            name: "A".into(),
            token: Some(StoredSecret::new("t")),
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
        assert_eq!(format!("{:?}", all[0].token), "Some(***)");
    }

    #[test]
    fn schema_version_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.meta.insert("schema_version", "99").unwrap();
            s.db.flush().unwrap();
        }
        let e = Store::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains("schema version 99"), "{e}");
    }
}
