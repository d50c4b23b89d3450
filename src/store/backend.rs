//! The store's interface: what the domain (`employee`, and the sync run
//! history) needs from storage, with no sled type in any signature, so that a
//! second backend (PostgreSQL) can implement it without a change above it.
//!
//! The semantics every backend keeps:
//! - [`Backend::commit_many`] is one transaction: every write of the batch, with
//!   its audit entry and outbox messages, or none; versions are compared and
//!   unique keys (already folded by the domain) checked inside it.
//! - A write is acknowledged to a client only after [`Store::flush`]: then it
//!   survives a crash. Concurrent flushes are joined (group commit).
//! - Counts and id-order positions are answered without reading records.
//!
//! [`Store`] is the cheap handle everyone holds; it adds what is the same for
//! every backend (the one-at-a-time write probe of `/readyz`).

use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use uuid::Uuid;

use super::{AuditEntry, Counts, IndexKind, OutboxRecord, SledStore, StoreError, Write};

/// Bytes read from the store (a record's body, a run row, ...), without a copy
/// where the backend allows it.
#[derive(Clone)]
pub struct Record(Inner);

#[derive(Clone)]
enum Inner {
    Sled(sled::IVec),
    Owned(Arc<[u8]>),
}

impl Record {
    pub(crate) fn sled(v: sled::IVec) -> Self {
        Record(Inner::Sled(v))
    }
}

impl From<Vec<u8>> for Record {
    fn from(v: Vec<u8>) -> Self {
        Record(Inner::Owned(v.into()))
    }
}

impl Deref for Record {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Inner::Sled(v) => v,
            Inner::Owned(v) => v,
        }
    }
}

impl AsRef<[u8]> for Record {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Record({} bytes)", self.len())
    }
}

/// Records in id order, read lazily.
pub type RecordIter<'a> = Box<dyn Iterator<Item = Result<(Uuid, Record), StoreError>> + Send + 'a>;

/// Run rows, newest first.
pub type RunIter<'a> = Box<dyn Iterator<Item = Result<(u64, Record), StoreError>> + Send + 'a>;

/// What a storage backend provides. Every method is blocking (call it from a
/// blocking thread or keep it short) except [`Backend::flush`].
pub trait Backend: Send + Sync + 'static {
    // Employee records.
    /// One record's body (the bytes the domain wrote).
    fn get(&self, id: Uuid) -> Result<Option<Record>, StoreError>;
    /// The stored version of a record.
    fn version(&self, id: Uuid) -> Result<Option<u64>, StoreError>;
    /// The note `owner` left on the current version of a record.
    fn mark(&self, id: Uuid, owner: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Leaves notes on records still at the given versions; returns how many.
    fn set_marks(&self, owner: &str, marks: &[(Uuid, u64, Vec<u8>)]) -> Result<usize, StoreError>;
    /// Every note `owner` left on the current version of a record, as (id,
    /// note): [`Backend::mark`] for all records at once (one query where
    /// reads are round trips).
    fn marks_of(&self, owner: &str) -> Result<Vec<(Uuid, Vec<u8>)>, StoreError>;
    /// The bodies of the records among `ids` that exist, in no given order:
    /// [`Backend::get`] for many at once (a few queries where reads are round
    /// trips).
    fn get_many(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, Record)>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(body) = self.get(*id)? {
                out.push((*id, body));
            }
        }
        Ok(out)
    }
    /// The id holding `key` in `index`.
    fn lookup(&self, index: &IndexKind, key: &str) -> Result<Option<Uuid>, StoreError>;
    /// Every (key, id) of one index, in key order.
    fn index_entries(&self, index: &IndexKind) -> Result<Vec<(String, Uuid)>, StoreError>;
    /// How many records there are, active and not (no scan).
    fn counts(&self) -> Counts;
    /// Tells the store which records are active (once, at start).
    fn classify(&self, is_active: &dyn Fn(&[u8]) -> bool) -> Result<(), StoreError>;
    /// The records at positions `offset..offset + n` in id order.
    fn page(&self, offset: usize, n: usize) -> Result<Vec<(Uuid, Record)>, StoreError>;
    /// The records after `after` (exclusive), or all, in id order.
    fn scan_after(&self, after: Option<Uuid>) -> RecordIter<'_>;
    /// Changes whenever a record is created, changed or removed.
    fn generation(&self) -> Result<u64, StoreError>;
    /// Applies writes in one transaction (see the module doc); returns each
    /// write's audit sequence number.
    fn commit_many(&self, writes: &[Write]) -> Result<Vec<u64>, StoreError>;
    /// How many new profiles a sync's apply hands [`Backend::commit_many`]
    /// at a time.
    fn create_batch(&self) -> usize {
        500
    }
    /// How many records have been read since open (tests prove lookups do not scan).
    fn record_reads(&self) -> u64;

    // Ids, audit, photos, positions.
    /// A fresh, increasing id (message and run ids).
    fn next_id(&self) -> Result<u64, StoreError>;
    fn append_audit(&self, entry: &AuditEntry) -> Result<AuditEntry, StoreError>;
    /// Audit entries newest first, all or one employee's, before `before`.
    fn audit_entries(
        &self,
        employee: Option<Uuid>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError>;
    fn photo(&self, id: Uuid) -> Result<Option<Record>, StoreError>;
    fn positions(&self) -> Result<Vec<(Uuid, Record)>, StoreError>;
    fn put_position(&self, id: Uuid, bytes: &[u8]) -> Result<(), StoreError>;
    fn remove_position(&self, id: Uuid) -> Result<(), StoreError>;

    // Outbox.
    fn outbox_get(&self, id: u64) -> Result<Option<OutboxRecord>, StoreError>;
    fn outbox_put(&self, rec: &OutboxRecord) -> Result<(), StoreError>;
    /// Compare-and-swap: `false` when the stored message is no longer `old`.
    fn outbox_replace(&self, old: &OutboxRecord, new: &OutboxRecord) -> Result<bool, StoreError>;
    fn outbox_all(&self) -> Result<Vec<OutboxRecord>, StoreError>;
    /// Up to `limit` messages after `after` (oldest first) that `keep` accepts,
    /// and whether more follow.
    fn outbox_page(
        &self,
        after: Option<u64>,
        limit: usize,
        keep: &dyn Fn(&OutboxRecord) -> bool,
    ) -> Result<(Vec<OutboxRecord>, bool), StoreError>;
    fn outbox_due(&self, now: DateTime<Utc>) -> Result<Vec<OutboxRecord>, StoreError>;

    // Sync run history (rows whose format the sync engine owns).
    fn run_put(&self, id: u64, header: &[u8], plan: Option<&[u8]>) -> Result<(), StoreError>;
    fn run_put_plan(&self, id: u64, plan: &[u8]) -> Result<(), StoreError>;
    fn run_header(&self, id: u64) -> Result<Option<Record>, StoreError>;
    fn run_plan(&self, id: u64) -> Result<Option<Record>, StoreError>;
    /// Page `page` of run `id`'s plan (a plan is stored page by page, so that
    /// reading a page costs a page).
    fn run_put_plan_page(&self, id: u64, page: u32, bytes: &[u8]) -> Result<(), StoreError>;
    fn run_plan_page(&self, id: u64, page: u32) -> Result<Option<Record>, StoreError>;
    fn run_headers(&self) -> RunIter<'_>;
    /// Removes a run with its plan and held entries, in one transaction.
    fn run_remove(&self, id: u64) -> Result<(), StoreError>;
    fn source_state(&self, source: &str) -> Result<Option<Record>, StoreError>;
    fn put_source_state(&self, source: &str, bytes: &[u8]) -> Result<(), StoreError>;
    fn held_put(&self, id: u64, bytes: &[u8]) -> Result<(), StoreError>;
    fn held_take(&self, id: u64) -> Result<Option<Record>, StoreError>;
    fn held_ids(&self) -> Result<Vec<u64>, StoreError>;

    // Web console sessions, by the SHA-256 digest of the session id (rows
    // whose format the console owns; the id itself never reaches the store).
    fn session_get(&self, key: &[u8; 32]) -> Result<Option<Record>, StoreError>;
    fn session_put(&self, key: &[u8; 32], row: &[u8]) -> Result<(), StoreError>;
    fn session_remove(&self, key: &[u8; 32]) -> Result<(), StoreError>;
    /// Every session row (to end one employee's sessions, to prune expired ones).
    fn sessions_all(&self) -> Result<Vec<([u8; 32], Record)>, StoreError>;

    // Durability and health.
    /// Resolves once every write made before the call is durable.
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// [`Backend::flush`] for blocking threads.
    fn flush_blocking(&self) -> Result<(), StoreError>;
    /// How many flushes ran (each may cover many writes).
    fn flushes(&self) -> u64;
    /// Makes one small durable write through the same path as every write.
    /// Blocking, and may block for good if writes are wedged: [`Store::writable`]
    /// runs it on a thread of its own with a timeout.
    fn probe_write(&self) -> Result<(), StoreError>;
    /// Whether the store answers reads.
    fn is_ready(&self) -> bool;

    // Cluster coordination: exactly one runner per duty (see "Leases and
    // claims" below). On sled (one process per data dir) these are trivial:
    // the engine's in-process lock already makes one runner, so a lease is
    // always granted and every claim is won.
    /// This process's name in leases and claims (`host:pid`).
    fn node_name(&self) -> String {
        local_node_name()
    }
    /// Takes `source`'s lease when it is free or expired: `Ok(Ok(lease))` with
    /// the next epoch, or `Ok(Err(holder))` while another node holds it.
    fn lease_take(&self, source: &str) -> Result<Result<Lease, LeaseInfo>, StoreError> {
        Ok(Ok(Lease {
            source: source.to_string(),
            holder: self.node_name(),
            epoch: 1,
            ttl: Duration::from_secs(super::config::DEFAULT_LEASE_TTL_SECS),
        }))
    }
    /// Renews `lease` (`false`: it was taken over, the holder must stop).
    fn lease_renew(&self, _lease: &Lease) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Lets `lease` go (free at once; a lease taken over is left alone).
    fn lease_release(&self, _lease: &Lease) -> Result<(), StoreError> {
        Ok(())
    }
    /// Every source lease there is (`rosterctl sync sources`).
    fn leases(&self) -> Result<Vec<LeaseInfo>, StoreError> {
        Ok(vec![])
    }
    /// [`Backend::commit_many`] fenced by `lease`: the lease is renewed in the
    /// writes' own transaction, and when it was taken over nothing is written
    /// and the error is [`fence_lost`]'s.
    fn commit_many_fenced(
        &self,
        writes: &[Write],
        _lease: Option<&Lease>,
    ) -> Result<Vec<u64>, StoreError> {
        self.commit_many(writes)
    }
    /// Claims the firing at `slot` of the periodic duty `duty`, once across
    /// every node: `true` for the one node that runs it. `next` is the duty's
    /// next firing.
    fn claim_slot(
        &self,
        _duty: &str,
        _slot: DateTime<Utc>,
        _next: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// The due messages (as [`Backend::outbox_due`]) that no other node has
    /// claimed, claimed for this node until the claim expires, at most `limit`.
    fn outbox_claim(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let mut due = self.outbox_due(now)?;
        due.truncate(limit);
        Ok(due)
    }
    /// Renews this node's claim on message `id` just before it is sent:
    /// `false` when the claim was lost (another node may be sending it).
    fn outbox_hold(&self, _id: u64) -> Result<bool, StoreError> {
        Ok(true)
    }

    // Copying a whole store (`rosterd store copy`, see `super::copy`).
    /// How many rows each table holds (the tables of [`Table::ALL`]).
    fn table_counts(&self) -> Result<Vec<(Table, u64)>, StoreError>;
    /// Every row the store holds, table by table, handed to `sink` as stored
    /// (ids, versions, sequence numbers and bytes unchanged; one consistent
    /// snapshot where the backend has them), and the ids the store would hand
    /// out next. `is_active` classifies a record the backend does not mark.
    fn export_rows(
        &self,
        is_active: &dyn Fn(&[u8]) -> bool,
        sink: &mut dyn FnMut(StoreRow) -> Result<(), StoreError>,
    ) -> Result<NextIds, StoreError>;
    /// Writes `rows` into this store, which must hold nothing, and makes its
    /// counters continue at `next()` (asked once every row is in): all of it
    /// or nothing (one transaction on
    /// PostgreSQL; on sled a store left unfinished is refused at open).
    fn import_rows(
        &self,
        rows: &mut dyn Iterator<Item = Result<StoreRow, StoreError>>,
        next: &dyn Fn() -> NextIds,
    ) -> Result<(), StoreError>;

    // Several processes on one store (PostgreSQL; a sled store is one
    // process's, and keeps these defaults).
    /// Whether other processes may write this store, so that what is kept in
    /// memory above it must follow them through [`Backend::catch_up`].
    fn shared(&self) -> bool {
        false
    }
    /// What was written since the previous call that this process may not
    /// have seen (other processes' writes; some of its own may come again):
    /// every write acknowledged before the call began is in it or in an
    /// earlier answer. The store's own counts and positions follow them
    /// before it returns; what the caller keeps in memory (the roster's
    /// projection, the positions in force) applies the answer.
    fn catch_up(&self) -> Result<Caught, StoreError> {
        Ok(Caught::default())
    }
    /// [`Backend::get`] as of the last [`Backend::catch_up`] and this
    /// process's own commits: a shared store answers from memory. For a read
    /// that followed first (`employee::Roster::follow`).
    fn get_followed(&self, id: Uuid) -> Result<Option<Record>, StoreError> {
        self.get(id)
    }
    /// [`Backend::lookup`] as [`Backend::get_followed`] reads.
    fn lookup_followed(&self, index: &IndexKind, key: &str) -> Result<Option<Uuid>, StoreError> {
        self.lookup(index, key)
    }
}

// Leases and claims.
//
// A sync run holds its source's lease row (holder, epoch, expiry by the
// database clock). Taking it bumps the epoch; every apply batch renews it
// `WHERE epoch = $mine` inside the batch's own transaction, so a runner whose
// lease was taken over (it stalled past the TTL) gets no row, its batch rolls
// back and its run ends `interrupted`: the fence, not the TTL, gives safety.
// The domain's writes reach the store through `commit_many`; the engine sets
// the fence for the thread that applies ([`with_fence`]) and the backend reads
// it there, so nothing between them changes.

/// A lease this node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub source: String,
    pub holder: String,
    pub epoch: u64,
    /// How long it lasts unless renewed.
    pub ttl: Duration,
}

/// A lease row as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseInfo {
    pub source: String,
    pub holder: String,
    pub epoch: u64,
    pub expires_at: DateTime<Utc>,
    /// Whether `expires_at` has passed (by the database clock): free to take.
    pub expired: bool,
}

/// The fence of the thread applying a run: its lease, and whether a batch
/// found it taken over.
#[derive(Debug)]
pub struct Fence {
    pub lease: Lease,
    lost: std::sync::atomic::AtomicBool,
}

impl Fence {
    pub fn new(lease: Lease) -> Arc<Self> {
        Arc::new(Self {
            lease,
            lost: Default::default(),
        })
    }
    /// Whether a batch (or a renewal) found the lease taken over.
    pub fn is_lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }
    pub fn set_lost(&self) {
        self.lost.store(true, std::sync::atomic::Ordering::SeqCst)
    }
}

thread_local! {
    static FENCE: std::cell::RefCell<Option<Arc<Fence>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with every `commit_many` on this thread fenced by `fence`.
pub fn with_fence<R>(fence: &Arc<Fence>, f: impl FnOnce() -> R) -> R {
    struct Reset(Option<Arc<Fence>>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let prev = self.0.take();
            FENCE.with(|c| *c.borrow_mut() = prev);
        }
    }
    let prev = FENCE.with(|c| c.borrow_mut().replace(fence.clone()));
    let _reset = Reset(prev);
    f()
}

/// The fence set on this thread by [`with_fence`], if any.
pub fn current_fence() -> Option<Arc<Fence>> {
    FENCE.with(|c| c.borrow().clone())
}

/// The error of a batch whose lease was taken over (nothing was written).
pub fn fence_lost(lease: &Lease) -> StoreError {
    StoreError::Io(format!(
        "the lease of source `{}` (epoch {}) was taken over by another node; this batch was rolled back",
        lease.source, lease.epoch
    ))
}

/// Whether `e` is [`fence_lost`]'s error for `lease`.
pub fn is_fence_lost(e: &StoreError, lease: &Lease) -> bool {
    matches!((e, fence_lost(lease)), (StoreError::Io(a), StoreError::Io(b)) if *a == b)
}

/// `host:pid`: a name that tells two nodes (and two processes on one host) apart.
pub fn local_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "rosterd".into());
    format!("{host}:{}", std::process::id())
}

/// The tables of a store, as `rosterd store copy` counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Employees,
    UniqueKeys,
    Marks,
    Photos,
    Positions,
    Audit,
    Outbox,
    Runs,
    PlanPages,
    SourceState,
    HeldPlans,
    Sessions,
}

impl Table {
    pub const ALL: [Table; 12] = [
        Table::Employees,
        Table::UniqueKeys,
        Table::Marks,
        Table::Photos,
        Table::Positions,
        Table::Audit,
        Table::Outbox,
        Table::Runs,
        Table::PlanPages,
        Table::SourceState,
        Table::HeldPlans,
        Table::Sessions,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Employees => "employees",
            Table::UniqueKeys => "unique keys",
            Table::Marks => "sync marks",
            Table::Photos => "photos",
            Table::Positions => "positions",
            Table::Audit => "audit entries",
            Table::Outbox => "outbox messages",
            Table::Runs => "sync runs",
            Table::PlanPages => "plan pages",
            Table::SourceState => "source states",
            Table::HeldPlans => "held plans",
            Table::Sessions => "web sessions",
        }
    }
}

/// One row of a store in the form every backend exports and imports (see
/// [`Backend::export_rows`]). Bytes are the domain's, as stored.
#[derive(Debug, Clone)]
pub enum StoreRow {
    /// A record with its version, its unique keys (`(kind, key)`, the kind
    /// named as in [`IndexKind`]'s store prefix: `email`, `source:<id>`, ...)
    /// and the notes on its current version (`(owner, mark)`).
    Employee {
        id: Uuid,
        version: u64,
        active: bool,
        keys: Vec<(String, String)>,
        marks: Vec<(String, Vec<u8>)>,
        body: Record,
    },
    Photo {
        id: Uuid,
        bytes: Record,
    },
    Position {
        id: Uuid,
        bytes: Record,
    },
    /// An audit entry under its sequence number, linked to the employee whose
    /// history it belongs to (none for an entry about no single record).
    Audit {
        seq: u64,
        employee: Option<Uuid>,
        entry: Record,
    },
    Outbox {
        id: u64,
        pending: bool,
        body: Record,
    },
    Run {
        id: u64,
        header: Record,
    },
    /// A run's plan: stored whole (`page: None`) or one page of it.
    PlanPage {
        run: u64,
        page: Option<u32>,
        bytes: Record,
    },
    SourceState {
        source: String,
        bytes: Record,
    },
    Held {
        run: u64,
        bytes: Record,
    },
    Session {
        key: [u8; 32],
        row: Record,
    },
}

impl StoreRow {
    pub fn table(&self) -> Table {
        match self {
            StoreRow::Employee { .. } => Table::Employees,
            StoreRow::Photo { .. } => Table::Photos,
            StoreRow::Position { .. } => Table::Positions,
            StoreRow::Audit { .. } => Table::Audit,
            StoreRow::Outbox { .. } => Table::Outbox,
            StoreRow::Run { .. } => Table::Runs,
            StoreRow::PlanPage { .. } => Table::PlanPages,
            StoreRow::SourceState { .. } => Table::SourceState,
            StoreRow::Held { .. } => Table::HeldPlans,
            StoreRow::Session { .. } => Table::Sessions,
        }
    }
}

/// The lowest values a store has not handed out yet: ids (messages, runs)
/// and audit sequence numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NextIds {
    pub id: u64,
    pub audit_seq: u64,
}

/// What [`Backend::catch_up`] found: apply it idempotently (a record's
/// version says which of two answers is newer).
#[derive(Debug, Default)]
pub struct Caught {
    /// Records written (their body now) or removed (`None`).
    pub records: Vec<(Uuid, Option<Record>)>,
    /// Outbox messages written or whose delivery state changed.
    pub outbox: Vec<OutboxRecord>,
    /// Whether the stored positions changed.
    pub positions: bool,
}

impl Caught {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.outbox.is_empty() && !self.positions
    }
}

/// The handle to the store every layer holds; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    /// The write probe in flight, if any (see [`Store::writable`]).
    probe: Arc<Mutex<Option<Probe>>>,
}

#[derive(Clone)]
struct Probe {
    started: Instant,
    done: tokio::sync::watch::Receiver<Option<bool>>,
}

impl Deref for Store {
    type Target = dyn Backend;
    fn deref(&self) -> &Self::Target {
        &*self.backend
    }
}

impl Store {
    /// The embedded sled store in `dir` (the default backend).
    pub fn open(dir: &std::path::Path) -> Result<Self, StoreError> {
        Ok(Self::new(SledStore::open(dir)?))
    }

    /// The store `config` names: sled in `dir`, or PostgreSQL (the schema is
    /// created or upgraded first).
    pub fn open_config(
        config: &super::config::StoreConfig,
        dir: &std::path::Path,
    ) -> Result<Self, StoreError> {
        match config {
            super::config::StoreConfig::Sled => Self::open(dir),
            super::config::StoreConfig::Postgres(pg) => {
                Ok(Self::new(super::postgres::PgStore::open(pg)?))
            }
        }
    }

    /// `rosterd migrate`: creates or upgrades the schema of the store `config`
    /// names, and says what it did.
    pub fn migrate(
        config: &super::config::StoreConfig,
        dir: &std::path::Path,
    ) -> Result<String, StoreError> {
        match config {
            super::config::StoreConfig::Sled => {
                // Opening a sled store migrates it.
                drop(SledStore::open(dir)?);
                Ok(format!(
                    "sled store at {}: schema version {} is current",
                    dir.display(),
                    super::SCHEMA_VERSION
                ))
            }
            super::config::StoreConfig::Postgres(pg) => {
                let done = super::postgres::PgStore::migrate_only(pg)?;
                Ok(format!(
                    "PostgreSQL store at {}: schema version {} {}",
                    pg.redacted_url(),
                    super::postgres::PG_SCHEMA_VERSION,
                    match done {
                        super::postgres::Migrated::Created => "created".to_string(),
                        super::postgres::Migrated::Current => "is current".to_string(),
                        super::postgres::Migrated::Upgraded(from) =>
                            format!("upgraded (from version {from})"),
                    }
                ))
            }
        }
    }

    pub fn new(backend: impl Backend) -> Self {
        Self {
            backend: Arc::new(backend),
            probe: Arc::new(Mutex::new(None)),
        }
    }

    /// Applies one write atomically (see [`Backend::commit_many`]).
    pub fn commit(&self, w: &Write) -> Result<AuditEntry, StoreError> {
        committed_entry(w, self.backend.commit_many(std::slice::from_ref(w))?)
    }

    /// Every record in id order, read lazily.
    pub fn scan(&self) -> RecordIter<'_> {
        self.backend.scan_after(None)
    }

    pub fn len(&self) -> usize {
        self.backend.counts().total
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes every write so far durable. Await before acknowledging a write.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.backend.flush().await
    }

    /// Whether a write gets through and is made durable within `timeout`
    /// (`/readyz`, the systemd watchdog). One probe runs at a time on a blocking
    /// thread; while one is stuck past `timeout`, the answer is `false` at once
    /// and no second probe piles up behind it.
    pub async fn writable(&self, timeout: Duration) -> bool {
        let probe = {
            let mut slot = self.probe.lock().unwrap_or_else(PoisonError::into_inner);
            match &*slot {
                Some(p) if p.started.elapsed() >= timeout => return false,
                Some(p) => p.clone(),
                None => {
                    let (tx, rx) = tokio::sync::watch::channel(None);
                    let p = Probe {
                        started: Instant::now(),
                        done: rx,
                    };
                    *slot = Some(p.clone());
                    let backend = self.backend.clone();
                    let slot = self.probe.clone();
                    tokio::task::spawn_blocking(move || {
                        let ok = match backend.probe_write() {
                            Ok(()) => true,
                            Err(e) => {
                                tracing::error!(error = %e, "the store's write probe failed");
                                false
                            }
                        };
                        *slot.lock().unwrap_or_else(PoisonError::into_inner) = None;
                        let _ = tx.send(Some(ok));
                    });
                    p
                }
            }
        };
        let left = timeout.saturating_sub(probe.started.elapsed());
        let mut done = probe.done;
        matches!(
            tokio::time::timeout(left, done.wait_for(Option::is_some)).await,
            Ok(Ok(r)) if *r == Some(true)
        )
    }
}

impl Backend for SledStore {
    fn get(&self, id: Uuid) -> Result<Option<Record>, StoreError> {
        SledStore::get(self, id)
    }
    fn version(&self, id: Uuid) -> Result<Option<u64>, StoreError> {
        SledStore::version(self, id)
    }
    fn mark(&self, id: Uuid, owner: &str) -> Result<Option<Vec<u8>>, StoreError> {
        SledStore::mark(self, id, owner)
    }
    fn set_marks(&self, owner: &str, marks: &[(Uuid, u64, Vec<u8>)]) -> Result<usize, StoreError> {
        SledStore::set_marks(self, owner, marks)
    }
    fn marks_of(&self, owner: &str) -> Result<Vec<(Uuid, Vec<u8>)>, StoreError> {
        SledStore::marks_of(self, owner)
    }
    fn lookup(&self, index: &IndexKind, key: &str) -> Result<Option<Uuid>, StoreError> {
        SledStore::lookup(self, index, key)
    }
    fn index_entries(&self, index: &IndexKind) -> Result<Vec<(String, Uuid)>, StoreError> {
        SledStore::index_entries(self, index)
    }
    fn counts(&self) -> Counts {
        SledStore::counts(self)
    }
    fn classify(&self, is_active: &dyn Fn(&[u8]) -> bool) -> Result<(), StoreError> {
        SledStore::classify(self, is_active)
    }
    fn page(&self, offset: usize, n: usize) -> Result<Vec<(Uuid, Record)>, StoreError> {
        SledStore::page(self, offset, n)
    }
    fn scan_after(&self, after: Option<Uuid>) -> RecordIter<'_> {
        Box::new(SledStore::scan_after(self, after))
    }
    fn generation(&self) -> Result<u64, StoreError> {
        SledStore::generation(self)
    }
    fn commit_many(&self, writes: &[Write]) -> Result<Vec<u64>, StoreError> {
        SledStore::commit_many(self, writes)
    }
    fn record_reads(&self) -> u64 {
        SledStore::record_reads(self)
    }
    fn next_id(&self) -> Result<u64, StoreError> {
        SledStore::next_id(self)
    }
    fn append_audit(&self, entry: &AuditEntry) -> Result<AuditEntry, StoreError> {
        SledStore::append_audit(self, entry)
    }
    fn audit_entries(
        &self,
        employee: Option<Uuid>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        SledStore::audit_entries(self, employee, before, limit)
    }
    fn photo(&self, id: Uuid) -> Result<Option<Record>, StoreError> {
        SledStore::photo(self, id)
    }
    fn positions(&self) -> Result<Vec<(Uuid, Record)>, StoreError> {
        SledStore::positions(self)
    }
    fn put_position(&self, id: Uuid, bytes: &[u8]) -> Result<(), StoreError> {
        SledStore::put_position(self, id, bytes)
    }
    fn remove_position(&self, id: Uuid) -> Result<(), StoreError> {
        SledStore::remove_position(self, id)
    }
    fn outbox_get(&self, id: u64) -> Result<Option<OutboxRecord>, StoreError> {
        SledStore::outbox_get(self, id)
    }
    fn outbox_put(&self, rec: &OutboxRecord) -> Result<(), StoreError> {
        SledStore::outbox_put(self, rec)
    }
    fn outbox_replace(&self, old: &OutboxRecord, new: &OutboxRecord) -> Result<bool, StoreError> {
        SledStore::outbox_replace(self, old, new)
    }
    fn outbox_all(&self) -> Result<Vec<OutboxRecord>, StoreError> {
        SledStore::outbox_all(self)
    }
    fn outbox_page(
        &self,
        after: Option<u64>,
        limit: usize,
        keep: &dyn Fn(&OutboxRecord) -> bool,
    ) -> Result<(Vec<OutboxRecord>, bool), StoreError> {
        SledStore::outbox_page(self, after, limit, keep)
    }
    fn outbox_due(&self, now: DateTime<Utc>) -> Result<Vec<OutboxRecord>, StoreError> {
        SledStore::outbox_due(self, now)
    }
    fn run_put(&self, id: u64, header: &[u8], plan: Option<&[u8]>) -> Result<(), StoreError> {
        SledStore::run_put(self, id, header, plan)
    }
    fn run_put_plan(&self, id: u64, plan: &[u8]) -> Result<(), StoreError> {
        SledStore::run_put_plan(self, id, plan)
    }
    fn run_header(&self, id: u64) -> Result<Option<Record>, StoreError> {
        SledStore::run_header(self, id)
    }
    fn run_plan(&self, id: u64) -> Result<Option<Record>, StoreError> {
        SledStore::run_plan(self, id)
    }
    fn run_put_plan_page(&self, id: u64, page: u32, bytes: &[u8]) -> Result<(), StoreError> {
        SledStore::run_put_plan_page(self, id, page, bytes)
    }
    fn run_plan_page(&self, id: u64, page: u32) -> Result<Option<Record>, StoreError> {
        SledStore::run_plan_page(self, id, page)
    }
    fn run_headers(&self) -> RunIter<'_> {
        SledStore::run_headers(self)
    }
    fn run_remove(&self, id: u64) -> Result<(), StoreError> {
        SledStore::run_remove(self, id)
    }
    fn source_state(&self, source: &str) -> Result<Option<Record>, StoreError> {
        SledStore::source_state(self, source)
    }
    fn put_source_state(&self, source: &str, bytes: &[u8]) -> Result<(), StoreError> {
        SledStore::put_source_state(self, source, bytes)
    }
    fn held_put(&self, id: u64, bytes: &[u8]) -> Result<(), StoreError> {
        SledStore::held_put(self, id, bytes)
    }
    fn held_take(&self, id: u64) -> Result<Option<Record>, StoreError> {
        SledStore::held_take(self, id)
    }
    fn held_ids(&self) -> Result<Vec<u64>, StoreError> {
        SledStore::held_ids(self)
    }
    fn session_get(&self, key: &[u8; 32]) -> Result<Option<Record>, StoreError> {
        SledStore::session_get(self, key)
    }
    fn session_put(&self, key: &[u8; 32], row: &[u8]) -> Result<(), StoreError> {
        SledStore::session_put(self, key, row)
    }
    fn session_remove(&self, key: &[u8; 32]) -> Result<(), StoreError> {
        SledStore::session_remove(self, key)
    }
    fn sessions_all(&self) -> Result<Vec<([u8; 32], Record)>, StoreError> {
        SledStore::sessions_all(self)
    }
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(SledStore::flush(self))
    }
    fn flush_blocking(&self) -> Result<(), StoreError> {
        SledStore::flush_blocking(self)
    }
    fn flushes(&self) -> u64 {
        SledStore::flushes(self)
    }
    fn probe_write(&self) -> Result<(), StoreError> {
        SledStore::probe_write(self)
    }
    fn is_ready(&self) -> bool {
        SledStore::is_ready(self)
    }
    fn table_counts(&self) -> Result<Vec<(Table, u64)>, StoreError> {
        SledStore::table_counts(self)
    }
    fn export_rows(
        &self,
        is_active: &dyn Fn(&[u8]) -> bool,
        sink: &mut dyn FnMut(StoreRow) -> Result<(), StoreError>,
    ) -> Result<NextIds, StoreError> {
        SledStore::export_rows(self, is_active, sink)
    }
    fn import_rows(
        &self,
        rows: &mut dyn Iterator<Item = Result<StoreRow, StoreError>>,
        next: &dyn Fn() -> NextIds,
    ) -> Result<(), StoreError> {
        SledStore::import_rows(self, rows, next)
    }
}
/// The audit entry of one committed write, with the sequence number the
/// store gave it (`seqs`: what `commit_many` returned for that one write).
pub(crate) fn committed_entry(w: &Write, seqs: Vec<u64>) -> Result<AuditEntry, StoreError> {
    let seq = seqs
        .last()
        .copied()
        .ok_or_else(|| StoreError::Corrupt("commit returned no audit entry".into()))?;
    let mut entry = w.audit.entry().clone();
    entry.seq = seq;
    Ok(entry)
}
