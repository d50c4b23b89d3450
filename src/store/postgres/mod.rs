//! The PostgreSQL backend: [`PgStore`] implements [`Backend`] with the sled
//! backend's semantics (see `backend.rs`), on tables described in [`schema`].
//!
//! - Every [`Backend::commit_many`] is one SQL transaction: the records, their
//!   unique keys, photos, marks, audit entries and outbox messages, or none of
//!   them. It starts by bumping `rosterd_meta.generation`: that row lock orders
//!   the writes (of every node on the database), so audit sequence numbers,
//!   taken after it, increase in commit order, as on sled (which allocates them
//!   under its write lock), and the generation changes with every write.
//! - Versions are compared in SQL (`UPDATE … WHERE id = $1 AND version = $2`,
//!   `INSERT … ON CONFLICT (id) DO NOTHING` for a create): no row is a
//!   [`StoreError::VersionConflict`], the same 412 as on sled.
//! - Unique keys are rows of `employee_keys` whose `PRIMARY KEY (kind, key)`
//!   is the unique constraint: a key is claimed with `INSERT … ON CONFLICT DO
//!   NOTHING`, and one the constraint refused is [`StoreError::Unique`] naming
//!   the index and key (the same 409). The domain folds keys as for sled.
//! - Acknowledged means committed: a commit returns after PostgreSQL made it
//!   durable (`synchronous_commit`; no acknowledged write lost through a
//!   failover needs synchronous replication), so [`Backend::flush`] has
//!   nothing left to do.
//!
//! Why sqlx, bridged: the [`Backend`] trait is synchronous and is called from
//! request handlers on runtime workers (short reads), from `spawn_blocking`
//! and `block_in_place` threads (`crate::blocking`), and from threads inside
//! `Handle::block_on`. sqlx is async (a pool, the wire protocol in pure Rust,
//! rustls); each call runs as a task on a small runtime that this store owns
//! (its own threads, so it never waits on the caller's runtime) and the caller
//! waits on a channel. That works from every one of those contexts, where
//! `Handle::block_on` (or the sync `postgres` crate, which calls it inside)
//! would panic on a runtime worker or inside another `block_on`. The bridge
//! adds two thread hand-offs to every call: `cargo bench --bench
//! store_backend` prints what a get, an update and an indexed read cost on
//! each backend. On a runtime worker the wait runs in `block_in_place`
//! ([`crate::blocking::in_place`]), so that the worker's other requests move
//! on to another thread instead of queueing behind this one's round trip.
//!
//! In memory above the database, as on sled: the directory (which records
//! exist in id order and which are active: counts and page offsets without a
//! query) is loaded at open and kept by this process's commits. So are the
//! roster's projection and positions map (in `employee`). Any number of nodes
//! may share one database: before a read that depends on memory, the roster
//! asks [`Backend::catch_up`], which polls the generation row (one query) and
//! applies what other nodes committed since ([`follow`]); after it, a
//! profile read by id and a lookup by email, username or external id are
//! answered from memory too (the bodies and those keys, kept the same way).
//! Writes (their versions and unique keys), the other lookups and web
//! sessions go to the database.

mod batch;
mod copy;
mod follow;
pub mod lease;
pub mod schema;

use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use super::config::PgSettings;
use super::directory::Directory;
use super::{
    AuditEntry, Backend, Caught, Counts, DeliveryState, IndexKind, OutboxRecord, PhotoChange,
    Record, RecordIter, RecordWrite, StoreError, Write,
};
use crate::store::backend::RunIter;

pub use schema::{Migrated, PG_SCHEMA_VERSION};

/// A query whose parameters a caller binds.
type PgQuery = sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments>;

/// Rows read per query by the lazy scans.
const SCAN_CHUNK: i64 = 500;

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// The runtime the queries run on (see the module doc); `None` once dropped.
    rt: Option<tokio::runtime::Runtime>,
    directory: RwLock<Directory>,
    /// What this process has seen of the other nodes' writes ([`follow`]).
    follow: Mutex<follow::Follow>,
    reads: AtomicU64,
    commits: AtomicU64,
    /// For messages: the URL without its password.
    redacted: String,
    /// How long leases and claims last unless renewed.
    lease_ttl: std::time::Duration,
    /// This process's name in leases and claims.
    node: String,
}

/// A pooled connection idle this long is pinged before it is used.
const PING_IF_IDLE_FOR: std::time::Duration = std::time::Duration::from_secs(1);

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping a runtime inside another one's context panics: let its
        // threads go in the background instead.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// This handle's name in leases and claims: `host:pid`, and `host:pid.n` for
/// the n-th further handle a process opens (each is a participant of its own).
fn node_name() -> String {
    static OPENED: AtomicU64 = AtomicU64::new(0);
    match OPENED.fetch_add(1, Ordering::Relaxed) {
        0 => super::backend::local_node_name(),
        n => format!("{}.{}", super::backend::local_node_name(), n + 1),
    }
}

/// A database error as a store error (sqlx's messages hold no password).
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e
        && d.code().as_deref() == Some("23505")
    {
        // A unique constraint refused a row this module did not claim with
        // ON CONFLICT (a race it does not expect): still a conflict, not I/O.
        return StoreError::Invalid(format!(
            "a unique key is already used ({})",
            d.constraint().unwrap_or("constraint")
        ));
    }
    StoreError::Io(format!("PostgreSQL: {e}"))
}

fn corrupt(what: &str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |e| StoreError::Corrupt(format!("{what}: {e}"))
}

/// Rows of `(id, bytes)`, as every keyed table returns them; `what` names the
/// table in an error.
fn id_records(rows: &[PgRow], what: &str) -> Result<Vec<(Uuid, Record)>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<Uuid, _>(0)
                    .map_err(|e| StoreError::Corrupt(format!("{what} id: {e}")))?,
                Record::from(r.try_get::<Vec<u8>, _>(1).map_err(corrupt(what))?),
            ))
        })
        .collect()
}

/// Ids and sequence numbers are u64 in the domain and bigint here.
fn i64_of(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("id {v} is too large to store")))
}

fn u64_of(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative id {v} in the store")))
}

/// The name an index has in `employee_keys.kind` (the sled key prefix).
fn kind_name(k: &IndexKind) -> String {
    match k {
        IndexKind::Email => "email".into(),
        IndexKind::Username => "username".into(),
        IndexKind::ExternalId => "external_id".into(),
        IndexKind::Source(s) => format!("source:{s}"),
        IndexKind::AccountToken => "account_token".into(),
    }
}

impl PgStore {
    /// Connects, migrates the schema (see [`schema::migrate`]) and loads the
    /// directory.
    pub fn open(settings: &PgSettings) -> Result<Self, StoreError> {
        let store = Self::connect(settings)?;
        let redacted = store.inner.redacted.clone();
        let open_err = |reason: String| StoreError::Open {
            path: redacted.clone(),
            reason,
        };
        store.migrate().map_err(|e| match e {
            StoreError::Schema { .. } => e,
            e => open_err(format!("while migrating the schema: {e}")),
        })?;
        // The generations first: whatever the rows read after them hold
        // beyond that comes again at the first catch-up (idempotent).
        let (generation, positions, records) = store.run(|pool| async move {
            let (g, p) = follow::generations(&pool).await?;
            Ok((g, p, follow::load_all(&pool).await?))
        })?;
        {
            let mut d = store.write_directory();
            *d = Directory::from_sorted(records.iter().map(|(id, _)| *id).collect());
            let active: std::collections::HashMap<Uuid, bool> =
                records.iter().map(|(id, k)| (*id, k.active)).collect();
            d.set_classes(|id| active.get(&id).copied());
            *store.follow_state() = follow::Follow::new(generation, positions, records);
        }
        let node = store.inner.node.clone();
        let dead = store.run(move |pool| lease::forget_dead_local(pool, node))?;
        if !dead.is_empty() {
            tracing::warn!(nodes = ?dead, "the leases and claims of rosterd processes on this host that are gone are freed");
        }
        tracing::info!(database = %redacted, "PostgreSQL store open");
        Ok(store)
    }

    /// `rosterd migrate`: connects and creates or upgrades the schema only.
    pub fn migrate_only(settings: &PgSettings) -> Result<Migrated, StoreError> {
        let store = Self::connect(settings)?;
        store.migrate().map_err(|e| match e {
            StoreError::Schema { .. } => e,
            e => StoreError::Open {
                path: store.inner.redacted.clone(),
                reason: format!("while migrating the schema: {e}"),
            },
        })
    }

    /// The runtime and the pool (connections are made as they are needed).
    fn connect(settings: &PgSettings) -> Result<Self, StoreError> {
        let redacted = settings.redacted_url();
        let open_err = |reason: String| StoreError::Open {
            path: redacted.clone(),
            reason,
        };

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rosterd-postgres")
            .enable_all()
            .build()
            .map_err(|e| open_err(format!("cannot start the PostgreSQL runtime: {e}")))?;
        let options = PgConnectOptions::from_str(settings.url.expose())
            .map_err(|_| open_err("the URL is not a PostgreSQL URL".into()))?
            .application_name("rosterd")
            .options([
                (
                    "statement_timeout",
                    format!("{}ms", settings.statement_timeout.as_millis()),
                ),
                // A node stopped mid-transaction (SIGSTOP, a stalled VM) must
                // not keep the lease row and the write lock past its lease.
                (
                    "idle_in_transaction_session_timeout",
                    format!("{}ms", settings.lease_ttl.as_millis()),
                ),
            ]);
        let pool = {
            let _enter = rt.enter();
            PgPoolOptions::new()
                .max_connections(settings.pool_size)
                .acquire_timeout(settings.connect_timeout)
                // sqlx pings every connection it hands out by default: a
                // second round trip per query (a SCIM read's catch-up, every
                // batch). Only one idle for a while is asked first (a
                // failover or a proxy may have cut it); a broken one is
                // closed and another taken.
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= PING_IF_IDLE_FOR {
                            sqlx::Connection::ping(conn).await?;
                        }
                        Ok(true)
                    })
                })
                .connect_lazy_with(options)
        };
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                rt: Some(rt),
                directory: RwLock::new(Directory::default()),
                follow: Mutex::new(follow::Follow::default()),
                reads: AtomicU64::new(0),
                commits: AtomicU64::new(0),
                redacted,
                lease_ttl: settings.lease_ttl,
                node: node_name(),
            }),
        })
    }

    /// Creates or upgrades the schema.
    pub fn migrate(&self) -> Result<Migrated, StoreError> {
        let url = self.inner.redacted.clone();
        self.run(|pool| async move {
            schema::migrate(&pool).await.map_err(|e| match e {
                StoreError::Schema {
                    found, expected, ..
                } => StoreError::Schema {
                    path: url,
                    found,
                    expected,
                },
                e => e,
            })
        })
    }

    /// The database, for messages (no password).
    pub fn redacted_url(&self) -> &str {
        &self.inner.redacted
    }

    /// Runs `f(pool)` on the store's runtime and waits for it (see the module doc).
    fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(PgPool) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let rt = self
            .inner
            .rt
            .as_ref()
            .ok_or_else(|| StoreError::Io("the PostgreSQL store is closed".into()))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = f(self.inner.pool.clone());
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        // On a runtime worker (a request handler), the worker hands its other
        // tasks on while this one waits for the database.
        crate::blocking::in_place(|| rx.recv())
            .map_err(|_| StoreError::Io("the PostgreSQL runtime stopped".into()))?
    }

    fn read_directory(&self) -> std::sync::RwLockReadGuard<'_, Directory> {
        self.inner
            .directory
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_directory(&self) -> std::sync::RwLockWriteGuard<'_, Directory> {
        self.inner
            .directory
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn bytes_query(
        &self,
        sql: &'static str,
        bind: impl FnOnce(PgQuery) -> PgQuery + Send + 'static,
    ) -> Result<Option<Record>, StoreError> {
        self.run(move |pool| async move {
            let row = bind(sqlx::query(sql))
                .fetch_optional(&pool)
                .await
                .map_err(db_err)?;
            match row {
                Some(r) => Ok(Some(Record::from(
                    r.try_get::<Vec<u8>, _>(0).map_err(corrupt(sql))?,
                ))),
                None => Ok(None),
            }
        })
    }

    /// One statement that bumps the generation and returns it ([`follow`]).
    fn bumping(
        &self,
        sql: &'static str,
        bind: impl FnOnce(PgQuery) -> PgQuery + Send + 'static,
    ) -> Result<u64, StoreError> {
        let g: i64 = self.run(move |pool| async move {
            let row = bind(sqlx::query(sql))
                .fetch_one(&pool)
                .await
                .map_err(db_err)?;
            row.try_get::<i64, _>(0).map_err(corrupt(sql))
        })?;
        u64_of(g)
    }

    fn exec(
        &self,
        sql: &'static str,
        bind: impl FnOnce(PgQuery) -> PgQuery + Send + 'static,
    ) -> Result<u64, StoreError> {
        self.run(move |pool| async move {
            Ok(bind(sqlx::query(sql))
                .execute(&pool)
                .await
                .map_err(db_err)?
                .rows_affected())
        })
    }
}

/// One batch of writes in one transaction (see the module doc). Round trips
/// are kept few, since every one costs a hop to the server: the write lock
/// with the generation and the audit sequence numbers; a batch of several
/// writes in a constant number of statements ([`batch`]), else, the
/// reference, per write one statement for the record (an update also drops
/// the record's old keys and marks in it) and one for its keys (and its
/// mark); the audit entries with the outbox messages; the commit.
///
/// The write lock is taken first (after the lease's row, see `lease`): every
/// write of every node takes it before any row lock, so writes follow one
/// another (as under sled's write lock) and never wait on each other in a
/// cycle, and each record's row is stamped with the generation as it is
/// written (one row version per write, not a second update for the stamp).
/// Returns the generation and the audit sequence numbers. Any error leaves
/// nothing of the batch written (the transaction is dropped).
async fn commit_writes(
    pool: PgPool,
    writes: Vec<Write>,
    fence: Option<(super::backend::Lease, std::time::Duration)>,
) -> Result<(u64, Vec<u64>), StoreError> {
    if batch::all_new(&writes)
        && let Some(done) = commit_writes_as(&pool, &writes, &fence, true).await?
    {
        return Ok(done);
    }
    commit_writes_as(&pool, &writes, &fence, false)
        .await?
        .ok_or_else(|| StoreError::Corrupt("a batch taken write by write did not end".into()))
}

/// [`commit_writes`] in one transaction, `quick` ([`batch::write_new`]) or
/// exactly; `None`: the quick way met a taken key, and nothing was written.
async fn commit_writes_as(
    pool: &PgPool,
    writes: &[Write],
    fence: &Option<(super::backend::Lease, std::time::Duration)>,
    quick: bool,
) -> Result<Option<(u64, Vec<u64>)>, StoreError> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    if let Some((lease, ttl)) = fence {
        // First, in the same transaction: a batch whose lease was taken over
        // writes nothing (see `lease`).
        lease::fence(&mut tx, lease, *ttl).await?;
    }
    let (generation, seqs) = lock_and_number(&mut tx, writes.len()).await?;
    let stamp = i64_of(generation)?;
    if quick {
        if !batch::write_new(&mut tx, writes, stamp).await? {
            return Ok(None);
        }
    } else if batch::batchable(writes) {
        batch::write_batch(&mut tx, writes, stamp).await?;
    } else {
        write_one_by_one(&mut tx, writes, stamp).await?;
    }
    audit_outbox_and_removals(&mut tx, writes, generation, &seqs).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(Some((generation, seqs)))
}

type Tx = Transaction<'static, Postgres>;

/// The writes' records (stamped with generation `stamp`), keys, marks and
/// photos, one write after the other: the reference semantics of a batch
/// (the first refusal is the error).
async fn write_one_by_one(tx: &mut Tx, writes: &[Write], stamp: i64) -> Result<(), StoreError> {
    for w in writes {
        if !write_record(tx, w, stamp).await? {
            return Err(version_conflict(tx, w).await?);
        }
        if let Some(r) = &w.record {
            claim_keys_and_mark(tx, w.id, r).await?;
            write_photo(tx, w).await?;
        }
    }
    Ok(())
}

/// The record's row: created, updated at the expected version (its old keys
/// and marks dropped), or removed with its keys, marks and photo
/// ([`batch::REMOVE`]). A written row is stamped with generation `stamp`
/// ([`follow`]). `false`: the version did not match.
async fn write_record(tx: &mut Tx, w: &Write, stamp: i64) -> Result<bool, StoreError> {
    Ok(match (&w.record, w.expected_version) {
        (Some(r), None) => {
            sqlx::query(
                "INSERT INTO employees (id, version, active, body, generation)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(w.id)
            .bind(i64_of(r.version)?)
            .bind(r.active)
            .bind(&r.bytes)
            .bind(stamp)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?
            .rows_affected()
                == 1
        }
        (Some(r), Some(v)) => {
            let n: i64 = sqlx::query_scalar(
                "WITH u AS (
                    UPDATE employees SET version = $3, active = $4, body = $5, generation = $6
                    WHERE id = $1 AND version = $2 RETURNING id
                 ), k AS (
                    DELETE FROM employee_keys WHERE employee_id IN (SELECT id FROM u)
                 ), m AS (
                    DELETE FROM employee_marks WHERE employee_id IN (SELECT id FROM u)
                 )
                 SELECT count(*) FROM u",
            )
            .bind(w.id)
            .bind(i64_of(v)?)
            .bind(i64_of(r.version)?)
            .bind(r.active)
            .bind(&r.bytes)
            .bind(stamp)
            .fetch_one(&mut **tx)
            .await
            .map_err(db_err)?;
            n == 1
        }
        (None, expected) => !sqlx::query(batch::REMOVE)
            .bind(w.id)
            .bind(expected.map(i64_of).transpose()?)
            .fetch_all(&mut **tx)
            .await
            .map_err(db_err)?
            .is_empty(),
    })
}

/// The conflict a write whose version did not match meets (the stored one).
async fn version_conflict(tx: &mut Tx, w: &Write) -> Result<StoreError, StoreError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT version FROM employees WHERE id = $1")
        .bind(w.id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?;
    Ok(StoreError::VersionConflict {
        expected: w.expected_version,
        found: found.map(u64_of).transpose()?,
    })
}

/// A record's distinct unique keys as `employee_keys` rows: (kind, key).
fn key_rows(r: &RecordWrite) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = r
        .keys
        .entries
        .iter()
        .map(|(k, v)| (kind_name(k), v.clone()))
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs
}

/// The record's unique keys (the first one the constraint refused is the
/// error) and its mark, in one statement.
async fn claim_keys_and_mark(tx: &mut Tx, id: Uuid, r: &RecordWrite) -> Result<(), StoreError> {
    let (owner, mark) = match &r.mark {
        Some((o, m)) => (Some(o.clone()), Some(m.clone())),
        None => (None, None),
    };
    if r.keys.entries.is_empty() && owner.is_none() {
        return Ok(());
    }
    let (kinds, keys): (Vec<String>, Vec<String>) = key_rows(r).into_iter().unzip();
    let claimed: Vec<(String, String)> = sqlx::query_as(
        "WITH m AS (
            INSERT INTO employee_marks (employee_id, owner, mark)
            SELECT $3, $4, $5 WHERE $4::text IS NOT NULL
         )
         INSERT INTO employee_keys (kind, key, employee_id)
         SELECT k, v, $3 FROM unnest($1::text[], $2::text[]) AS t(k, v)
         ON CONFLICT (kind, key) DO NOTHING
         RETURNING kind, key",
    )
    .bind(&kinds)
    .bind(&keys)
    .bind(id)
    .bind(&owner)
    .bind(&mark)
    .fetch_all(&mut **tx)
    .await
    .map_err(db_err)?;
    if claimed.len() == kinds.len() {
        return Ok(());
    }
    // The first key (in the write's order) that the constraint refused.
    let refused = r.keys.entries.iter().find(|(k, v)| {
        let k = kind_name(k);
        !claimed.iter().any(|(ck, cv)| *ck == k && cv == v)
    });
    Err(match refused {
        Some((kind, key)) => StoreError::Unique {
            index: kind.clone(),
            key: key.clone(),
        },
        None => StoreError::Corrupt("a unique key was neither claimed nor refused".into()),
    })
}

async fn write_photo(tx: &mut Tx, w: &Write) -> Result<(), StoreError> {
    match &w.photo {
        PhotoChange::Keep => {}
        PhotoChange::Set(bytes) => {
            sqlx::query(
                "INSERT INTO photos (employee_id, bytes) VALUES ($1, $2)
                 ON CONFLICT (employee_id) DO UPDATE SET bytes = excluded.bytes",
            )
            .bind(w.id)
            .bind(bytes)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        }
        PhotoChange::Remove => {
            sqlx::query("DELETE FROM photos WHERE employee_id = $1")
                .bind(w.id)
                .execute(&mut **tx)
                .await
                .map_err(db_err)?;
        }
    }
    Ok(())
}

/// In one round trip: the batch's audit entries, its outbox messages, and
/// the tombstones of the records it removed, stamped with its generation
/// ([`follow`]; the records it wrote were stamped as they were written).
async fn audit_outbox_and_removals(
    tx: &mut Tx,
    writes: &[Write],
    generation: u64,
    seqs: &[u64],
) -> Result<(), StoreError> {
    let mut removed = Vec::new();
    let mut audit_seq = Vec::with_capacity(writes.len());
    let mut audit_emp = Vec::with_capacity(writes.len());
    let mut audit_bytes = Vec::with_capacity(writes.len());
    let mut ob_ids = Vec::new();
    let mut ob_pending = Vec::new();
    let mut ob_bodies = Vec::new();
    for (w, seq) in writes.iter().zip(seqs) {
        if w.record.is_none() {
            removed.push(w.id);
        }
        audit_seq.push(i64_of(*seq)?);
        audit_emp.push(w.id);
        audit_bytes.push(w.audit.stored(*seq));
        for m in &w.outbox {
            ob_ids.push(i64_of(m.id)?);
            ob_pending.push(m.state == DeliveryState::Pending);
            ob_bodies.push(serde_json::to_vec(m).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
    }
    sqlx::query(
        "WITH o AS (
            INSERT INTO outbox (id, pending, body, changed)
            SELECT i, p, b, $7 FROM unnest($4::bigint[], $5::boolean[], $6::bytea[]) AS t(i, p, b)
            ON CONFLICT (id) DO UPDATE
            SET pending = excluded.pending, body = excluded.body, changed = excluded.changed
         ), r AS (
            INSERT INTO employee_removed (employee_id, generation)
            SELECT i, $7 FROM unnest($8::uuid[]) AS t(i)
            ON CONFLICT (employee_id) DO UPDATE SET generation = excluded.generation
         )
         INSERT INTO audit (seq, employee_id, entry)
         SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::bytea[])",
    )
    .bind(&audit_seq)
    .bind(&audit_emp)
    .bind(&audit_bytes)
    .bind(&ob_ids)
    .bind(&ob_pending)
    .bind(&ob_bodies)
    .bind(i64_of(generation)?)
    .bind(&removed)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The write lock of every node, taken by bumping the generation, and `n`
/// audit sequence numbers drawn under it (so they follow commit order).
/// Returns the new generation and the numbers.
async fn lock_and_number(
    tx: &mut Transaction<'static, Postgres>,
    n: usize,
) -> Result<(u64, Vec<u64>), StoreError> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "WITH g AS (
            UPDATE rosterd_meta SET value = value + 1 WHERE key = 'generation' RETURNING value
         )
         SELECT g.value, nextval('rosterd_audit_seq') FROM g, generate_series(1, $1)",
    )
    .bind(n as i64)
    .fetch_all(&mut **tx)
    .await
    .map_err(db_err)?;
    let generation = match rows.first() {
        Some((g, _)) if rows.len() == n => u64_of(*g)?,
        _ => {
            return Err(StoreError::Corrupt(
                "the generation row is missing (run rosterd migrate)".into(),
            ));
        }
    };
    let mut seqs: Vec<i64> = rows.into_iter().map(|(_, s)| s).collect();
    seqs.sort_unstable();
    Ok((
        generation,
        seqs.into_iter().map(u64_of).collect::<Result<_, _>>()?,
    ))
}

fn decode_outbox(v: &[u8]) -> Result<OutboxRecord, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt(format!("outbox record: {e}")))
}

fn decode_audit(v: &[u8]) -> Result<AuditEntry, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt(format!("audit entry: {e}")))
}

fn rows_bytes(rows: Vec<sqlx::postgres::PgRow>, col: usize) -> Result<Vec<Vec<u8>>, StoreError> {
    rows.iter()
        .map(|r| r.try_get::<Vec<u8>, _>(col).map_err(corrupt("row")))
        .collect()
}

/// A lazy scan: one query per [`SCAN_CHUNK`] rows, from where the last stopped.
struct Chunks<'a, K, F> {
    store: &'a PgStore,
    after: Option<K>,
    buf: std::vec::IntoIter<(K, Record)>,
    done: bool,
    fetch: F,
}

impl<K, F> Iterator for Chunks<'_, K, F>
where
    K: Copy,
    F: FnMut(&PgStore, Option<K>) -> Result<Vec<(K, Record)>, StoreError>,
{
    type Item = Result<(K, Record), StoreError>;
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(x) = self.buf.next() {
            self.after = Some(x.0);
            return Some(Ok(x));
        }
        if self.done {
            return None;
        }
        match (self.fetch)(self.store, self.after) {
            Ok(rows) => {
                if (rows.len() as i64) < SCAN_CHUNK {
                    self.done = true;
                }
                self.buf = rows.into_iter();
                let x = self.buf.next()?;
                self.after = Some(x.0);
                Some(Ok(x))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl Backend for PgStore {
    fn get(&self, id: Uuid) -> Result<Option<Record>, StoreError> {
        self.inner.reads.fetch_add(1, Ordering::Relaxed);
        self.bytes_query("SELECT body FROM employees WHERE id = $1", move |q| {
            q.bind(id)
        })
    }

    fn version(&self, id: Uuid) -> Result<Option<u64>, StoreError> {
        let v: Option<i64> = self.run(move |pool| async move {
            sqlx::query_scalar("SELECT version FROM employees WHERE id = $1")
                .bind(id)
                .fetch_optional(&pool)
                .await
                .map_err(db_err)
        })?;
        v.map(u64_of).transpose()
    }

    fn mark(&self, id: Uuid, owner: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let owner = owner.to_string();
        Ok(self
            .bytes_query(
                "SELECT mark FROM employee_marks WHERE employee_id = $1 AND owner = $2",
                move |q| q.bind(id).bind(owner),
            )?
            .map(|r| r.to_vec()))
    }

    fn set_marks(&self, owner: &str, marks: &[(Uuid, u64, Vec<u8>)]) -> Result<usize, StoreError> {
        if marks.is_empty() {
            return Ok(0);
        }
        let owner = owner.to_string();
        let ids: Vec<Uuid> = marks.iter().map(|m| m.0).collect();
        let versions = marks
            .iter()
            .map(|m| i64_of(m.1))
            .collect::<Result<Vec<_>, _>>()?;
        let bytes: Vec<Vec<u8>> = marks.iter().map(|m| m.2.clone()).collect();
        self.run(move |pool| async move {
            // The records' rows are locked (FOR SHARE) while their version is
            // compared, so a concurrent change cannot slip in between.
            let n = sqlx::query(
                "WITH wanted AS (
                    SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bytea[]) AS t(id, version, mark)
                 ), current AS (
                    SELECT e.id, w.mark FROM employees e JOIN wanted w
                      ON e.id = w.id AND e.version = w.version
                    FOR SHARE OF e
                 )
                 INSERT INTO employee_marks (employee_id, owner, mark)
                 SELECT id, $4, mark FROM current
                 ON CONFLICT (employee_id, owner) DO UPDATE SET mark = excluded.mark",
            )
            .bind(&ids)
            .bind(&versions)
            .bind(&bytes)
            .bind(&owner)
            .execute(&pool)
            .await
            .map_err(db_err)?
            .rows_affected();
            Ok(n as usize)
        })
    }

    fn lookup(&self, index: &IndexKind, key: &str) -> Result<Option<Uuid>, StoreError> {
        let kind = kind_name(index);
        let key = key.to_string();
        self.run(move |pool| async move {
            sqlx::query_scalar("SELECT employee_id FROM employee_keys WHERE kind = $1 AND key = $2")
                .bind(kind)
                .bind(key)
                .fetch_optional(&pool)
                .await
                .map_err(db_err)
        })
    }

    fn index_entries(&self, index: &IndexKind) -> Result<Vec<(String, Uuid)>, StoreError> {
        let kind = kind_name(index);
        self.run(move |pool| async move {
            sqlx::query_as(
                "SELECT key, employee_id FROM employee_keys WHERE kind = $1 ORDER BY key",
            )
            .bind(kind)
            .fetch_all(&pool)
            .await
            .map_err(db_err)
        })
    }

    fn counts(&self) -> Counts {
        let d = self.read_directory();
        Counts {
            total: d.len(),
            active: d.active(),
            inactive: d.len() - d.active(),
        }
    }

    fn classify(&self, is_active: &dyn Fn(&[u8]) -> bool) -> Result<(), StoreError> {
        let mut classes = std::collections::HashMap::new();
        for row in self.scan_after(None) {
            let (id, body) = row?;
            classes.insert(id, is_active(&body));
        }
        self.write_directory()
            .set_classes(|id| classes.get(&id).copied());
        Ok(())
    }

    fn page(&self, offset: usize, n: usize) -> Result<Vec<(Uuid, Record)>, StoreError> {
        let ids = self.read_directory().page(offset, n);
        if ids.is_empty() {
            return Ok(vec![]);
        }
        self.inner
            .reads
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        self.run(move |pool| async move {
            let rows = sqlx::query("SELECT id, body FROM employees WHERE id = ANY($1) ORDER BY id")
                .bind(&ids)
                .fetch_all(&pool)
                .await
                .map_err(db_err)?;
            id_records(&rows, "employee")
        })
    }

    fn scan_after(&self, after: Option<Uuid>) -> RecordIter<'_> {
        Box::new(Chunks {
            store: self,
            after,
            buf: Vec::new().into_iter(),
            done: false,
            fetch: |s: &PgStore, after: Option<Uuid>| {
                let rows: Vec<(Uuid, Record)> = s.run(move |pool| async move {
                    let q = match after {
                        Some(a) => sqlx::query(
                            "SELECT id, body FROM employees WHERE id > $2 ORDER BY id LIMIT $1",
                        )
                        .bind(SCAN_CHUNK)
                        .bind(a),
                        None => sqlx::query("SELECT id, body FROM employees ORDER BY id LIMIT $1")
                            .bind(SCAN_CHUNK),
                    };
                    let rows = q.fetch_all(&pool).await.map_err(db_err)?;
                    id_records(&rows, "employee")
                })?;
                s.inner
                    .reads
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                Ok(rows)
            },
        })
    }

    fn generation(&self) -> Result<u64, StoreError> {
        let g: i64 = self.run(|pool| async move {
            sqlx::query_scalar("SELECT value FROM rosterd_meta WHERE key = 'generation'")
                .fetch_one(&pool)
                .await
                .map_err(db_err)
        })?;
        u64_of(g)
    }

    fn commit_many(&self, writes: &[Write]) -> Result<Vec<u64>, StoreError> {
        // Fenced when the engine applies a run on this thread.
        let fence = super::backend::current_fence();
        let r = self.commit_many_fenced(writes, fence.as_ref().map(|f| &f.lease));
        if let (Some(f), Err(e)) = (&fence, &r)
            && super::backend::is_fence_lost(e, &f.lease)
        {
            f.set_lost();
        }
        r
    }

    fn commit_many_fenced(
        &self,
        writes: &[Write],
        lease: Option<&super::backend::Lease>,
    ) -> Result<Vec<u64>, StoreError> {
        if writes.is_empty() {
            return Ok(vec![]);
        }
        let owned = writes.to_vec();
        let fence = lease.map(|l| (l.clone(), self.inner.lease_ttl));
        let (generation, seqs) = self.run(move |pool| commit_writes(pool, owned, fence))?;
        self.inner.commits.fetch_add(1, Ordering::Relaxed);
        let mut f = self.follow_state();
        let mut d = self.write_directory();
        for w in writes {
            f.apply(&mut d, w.id, w.record.as_ref().map(follow::Known::of_write));
        }
        drop(d);
        f.committed(generation);
        Ok(seqs)
    }

    fn record_reads(&self) -> u64 {
        self.inner.reads.load(Ordering::Relaxed)
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        let v: i64 = self.run(|pool| async move {
            sqlx::query_scalar("SELECT nextval('rosterd_ids')")
                .fetch_one(&pool)
                .await
                .map_err(db_err)
        })?;
        u64_of(v)
    }

    fn append_audit(&self, entry: &AuditEntry) -> Result<AuditEntry, StoreError> {
        let mut entry = entry.clone();
        self.run(move |pool| async move {
            let mut tx = pool.begin().await.map_err(db_err)?;
            // In the order of the writes, as every audit entry.
            let (generation, mut seqs) = lock_and_number(&mut tx, 1).await?;
            let seq = seqs
                .pop()
                .ok_or_else(|| StoreError::Corrupt("no audit sequence number".into()))?;
            entry.seq = seq;
            let bytes =
                serde_json::to_vec(&entry).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query("INSERT INTO audit (seq, employee_id, entry) VALUES ($1, NULL, $2)")
                .bind(i64_of(seq)?)
                .bind(bytes)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            Ok((generation, entry))
        })
        .map(|(generation, entry)| {
            self.follow_state().committed(generation);
            entry
        })
    }

    fn audit_entries(
        &self,
        employee: Option<Uuid>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.run(move |pool| async move {
            let q = match employee {
                None => {
                    sqlx::query("SELECT entry FROM audit WHERE seq < $1 ORDER BY seq DESC LIMIT $2")
                        .bind(before)
                        .bind(limit)
                }
                Some(id) => sqlx::query(
                    "SELECT entry FROM audit WHERE employee_id = $3 AND seq < $1
                     ORDER BY seq DESC LIMIT $2",
                )
                .bind(before)
                .bind(limit)
                .bind(id),
            };
            rows_bytes(q.fetch_all(&pool).await.map_err(db_err)?, 0)
        })?;
        rows.iter().map(|b| decode_audit(b)).collect()
    }

    fn photo(&self, id: Uuid) -> Result<Option<Record>, StoreError> {
        self.bytes_query(
            "SELECT bytes FROM photos WHERE employee_id = $1",
            move |q| q.bind(id),
        )
    }

    fn positions(&self) -> Result<Vec<(Uuid, Record)>, StoreError> {
        self.run(|pool| async move {
            let rows = sqlx::query("SELECT id, body FROM positions ORDER BY id")
                .fetch_all(&pool)
                .await
                .map_err(db_err)?;
            id_records(&rows, "position")
        })
    }

    fn put_position(&self, id: Uuid, bytes: &[u8]) -> Result<(), StoreError> {
        let bytes = bytes.to_vec();
        let g = self.bumping(
            "WITH g AS (
                UPDATE rosterd_meta SET value = value + 1 WHERE key = 'generation' RETURNING value
             ), m AS (
                UPDATE rosterd_meta SET value = (SELECT value FROM g) WHERE key = 'positions'
             ), p AS (
                INSERT INTO positions (id, body) VALUES ($1, $2)
                ON CONFLICT (id) DO UPDATE SET body = excluded.body
             )
             SELECT value FROM g",
            move |q| q.bind(id).bind(bytes),
        )?;
        self.follow_state().positions_changed(g);
        Ok(())
    }

    fn remove_position(&self, id: Uuid) -> Result<(), StoreError> {
        let g = self.bumping(
            "WITH g AS (
                UPDATE rosterd_meta SET value = value + 1 WHERE key = 'generation' RETURNING value
             ), m AS (
                UPDATE rosterd_meta SET value = (SELECT value FROM g) WHERE key = 'positions'
             ), p AS (
                DELETE FROM positions WHERE id = $1
             )
             SELECT value FROM g",
            move |q| q.bind(id),
        )?;
        self.follow_state().positions_changed(g);
        Ok(())
    }

    fn outbox_get(&self, id: u64) -> Result<Option<OutboxRecord>, StoreError> {
        let id = i64_of(id)?;
        match self.bytes_query("SELECT body FROM outbox WHERE id = $1", move |q| q.bind(id))? {
            Some(b) => decode_outbox(&b).map(Some),
            None => Ok(None),
        }
    }

    fn outbox_put(&self, rec: &OutboxRecord) -> Result<(), StoreError> {
        let id = i64_of(rec.id)?;
        let pending = rec.state == DeliveryState::Pending;
        let body = serde_json::to_vec(rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let g = self.bumping(
            "WITH g AS (
                UPDATE rosterd_meta SET value = value + 1 WHERE key = 'generation' RETURNING value
             ), o AS (
                INSERT INTO outbox (id, pending, body, changed)
                SELECT $1, $2, $3, value FROM g
                ON CONFLICT (id) DO UPDATE
                SET pending = excluded.pending, body = excluded.body, changed = excluded.changed
             )
             SELECT value FROM g",
            move |q| q.bind(id).bind(pending).bind(body),
        )?;
        self.follow_state().committed(g);
        Ok(())
    }

    fn outbox_replace(&self, old: &OutboxRecord, new: &OutboxRecord) -> Result<bool, StoreError> {
        let id = i64_of(new.id)?;
        let old = old.clone();
        let pending = new.state == DeliveryState::Pending;
        let body = serde_json::to_vec(new).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let done = self.run(move |pool| async move {
            let mut tx = pool.begin().await.map_err(db_err)?;
            // The generation first, as a commit takes it before the outbox
            // rows it writes: the same lock order, no deadlock.
            let g: i64 = sqlx::query_scalar(
                "UPDATE rosterd_meta SET value = value + 1 WHERE key = 'generation' RETURNING value",
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            let cur: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT body FROM outbox WHERE id = $1 FOR UPDATE")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?;
            let same = cur.is_some_and(|c| decode_outbox(&c).ok().as_ref() == Some(&old));
            if !same {
                return Ok(None);
            }
            sqlx::query("UPDATE outbox SET pending = $2, body = $3, changed = $4 WHERE id = $1")
                .bind(id)
                .bind(pending)
                .bind(body)
                .bind(g)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            Ok(Some(u64_of(g)?))
        })?;
        Ok(match done {
            Some(g) => {
                self.follow_state().committed(g);
                true
            }
            None => false,
        })
    }

    fn outbox_all(&self) -> Result<Vec<OutboxRecord>, StoreError> {
        let rows = self.run(|pool| async move {
            rows_bytes(
                sqlx::query("SELECT body FROM outbox ORDER BY id")
                    .fetch_all(&pool)
                    .await
                    .map_err(db_err)?,
                0,
            )
        })?;
        rows.iter().map(|b| decode_outbox(b)).collect()
    }

    fn outbox_page(
        &self,
        after: Option<u64>,
        limit: usize,
        keep: &dyn Fn(&OutboxRecord) -> bool,
    ) -> Result<(Vec<OutboxRecord>, bool), StoreError> {
        let mut after = after.map(i64_of).transpose()?.unwrap_or(-1);
        let mut out = Vec::new();
        loop {
            let rows: Vec<(i64, Vec<u8>)> = self.run(move |pool| async move {
                sqlx::query_as("SELECT id, body FROM outbox WHERE id > $1 ORDER BY id LIMIT $2")
                    .bind(after)
                    .bind(SCAN_CHUNK)
                    .fetch_all(&pool)
                    .await
                    .map_err(db_err)
            })?;
            let last = (rows.len() as i64) < SCAN_CHUNK;
            for (id, body) in rows {
                after = id;
                let m = decode_outbox(&body)?;
                if !keep(&m) {
                    continue;
                }
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push(m);
            }
            if last {
                return Ok((out, false));
            }
        }
    }

    fn outbox_due(&self, now: DateTime<Utc>) -> Result<Vec<OutboxRecord>, StoreError> {
        let rows = self.run(|pool| async move {
            rows_bytes(
                sqlx::query("SELECT body FROM outbox WHERE pending ORDER BY id")
                    .fetch_all(&pool)
                    .await
                    .map_err(db_err)?,
                0,
            )
        })?;
        let mut out = Vec::new();
        for b in rows {
            let m = decode_outbox(&b)?;
            if m.state == DeliveryState::Pending && m.next_attempt_at <= now {
                out.push(m);
            }
        }
        Ok(out)
    }

    fn run_put(&self, id: u64, header: &[u8], plan: Option<&[u8]>) -> Result<(), StoreError> {
        let id = i64_of(id)?;
        let header = header.to_vec();
        let plan = plan.map(<[u8]>::to_vec);
        self.run(move |pool| async move {
            let mut tx = pool.begin().await.map_err(db_err)?;
            if let Some(p) = plan {
                put_plan_page(&mut tx, id, -1, p).await?;
            }
            sqlx::query(
                "INSERT INTO sync_runs (id, header) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET header = excluded.header",
            )
            .bind(id)
            .bind(header)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            tx.commit().await.map_err(db_err)
        })
    }

    fn run_put_plan(&self, id: u64, plan: &[u8]) -> Result<(), StoreError> {
        self.run_put_plan_page_raw(i64_of(id)?, -1, plan)
    }

    fn run_header(&self, id: u64) -> Result<Option<Record>, StoreError> {
        let id = i64_of(id)?;
        self.bytes_query("SELECT header FROM sync_runs WHERE id = $1", move |q| {
            q.bind(id)
        })
    }

    fn run_plan(&self, id: u64) -> Result<Option<Record>, StoreError> {
        self.run_plan_page_raw(i64_of(id)?, -1)
    }

    fn run_put_plan_page(&self, id: u64, page: u32, bytes: &[u8]) -> Result<(), StoreError> {
        let page = i32::try_from(page)
            .map_err(|_| StoreError::Invalid(format!("plan page {page} is too large")))?;
        self.run_put_plan_page_raw(i64_of(id)?, page, bytes)
    }

    fn run_plan_page(&self, id: u64, page: u32) -> Result<Option<Record>, StoreError> {
        let Ok(page) = i32::try_from(page) else {
            return Ok(None);
        };
        self.run_plan_page_raw(i64_of(id)?, page)
    }

    fn run_headers(&self) -> RunIter<'_> {
        Box::new(Chunks {
            store: self,
            after: None,
            buf: Vec::new().into_iter(),
            done: false,
            fetch: |s: &PgStore, after: Option<u64>| {
                let before = match after {
                    Some(a) => i64_of(a)?,
                    None => i64::MAX,
                };
                let rows: Vec<(i64, Vec<u8>)> = s.run(move |pool| async move {
                    sqlx::query_as(
                        "SELECT id, header FROM sync_runs WHERE id < $1 ORDER BY id DESC LIMIT $2",
                    )
                    .bind(before)
                    .bind(SCAN_CHUNK)
                    .fetch_all(&pool)
                    .await
                    .map_err(db_err)
                })?;
                rows.into_iter()
                    .map(|(id, h)| Ok((u64_of(id)?, Record::from(h))))
                    .collect()
            },
        })
    }

    fn run_remove(&self, id: u64) -> Result<(), StoreError> {
        let id = i64_of(id)?;
        self.run(move |pool| async move {
            let mut tx = pool.begin().await.map_err(db_err)?;
            for sql in [
                "DELETE FROM sync_runs WHERE id = $1",
                "DELETE FROM sync_plans WHERE run_id = $1",
                "DELETE FROM sync_held WHERE run_id = $1",
            ] {
                sqlx::query(sql)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
            tx.commit().await.map_err(db_err)
        })
    }

    fn source_state(&self, source: &str) -> Result<Option<Record>, StoreError> {
        let source = source.to_string();
        self.bytes_query("SELECT bytes FROM sync_state WHERE source = $1", move |q| {
            q.bind(source)
        })
    }

    fn put_source_state(&self, source: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let source = source.to_string();
        let bytes = bytes.to_vec();
        self.exec(
            "INSERT INTO sync_state (source, bytes) VALUES ($1, $2)
             ON CONFLICT (source) DO UPDATE SET bytes = excluded.bytes",
            move |q| q.bind(source).bind(bytes),
        )
        .map(|_| ())
    }

    fn held_put(&self, id: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let id = i64_of(id)?;
        let bytes = bytes.to_vec();
        self.exec(
            "INSERT INTO sync_held (run_id, bytes) VALUES ($1, $2)
             ON CONFLICT (run_id) DO UPDATE SET bytes = excluded.bytes",
            move |q| q.bind(id).bind(bytes),
        )
        .map(|_| ())
    }

    fn held_take(&self, id: u64) -> Result<Option<Record>, StoreError> {
        let id = i64_of(id)?;
        self.bytes_query(
            "DELETE FROM sync_held WHERE run_id = $1 RETURNING bytes",
            move |q| q.bind(id),
        )
    }

    fn held_ids(&self) -> Result<Vec<u64>, StoreError> {
        let ids: Vec<i64> = self.run(|pool| async move {
            sqlx::query_scalar("SELECT run_id FROM sync_held ORDER BY run_id")
                .fetch_all(&pool)
                .await
                .map_err(db_err)
        })?;
        ids.into_iter().map(u64_of).collect()
    }

    fn session_get(&self, key: &[u8; 32]) -> Result<Option<Record>, StoreError> {
        let key = key.to_vec();
        self.bytes_query("SELECT row FROM web_sessions WHERE key = $1", move |q| {
            q.bind(key)
        })
    }

    fn session_put(&self, key: &[u8; 32], row: &[u8]) -> Result<(), StoreError> {
        let key = key.to_vec();
        let row = row.to_vec();
        self.exec(
            "INSERT INTO web_sessions (key, row) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET row = excluded.row",
            move |q| q.bind(key).bind(row),
        )
        .map(|_| ())
    }

    fn session_remove(&self, key: &[u8; 32]) -> Result<(), StoreError> {
        let key = key.to_vec();
        self.exec("DELETE FROM web_sessions WHERE key = $1", move |q| {
            q.bind(key)
        })
        .map(|_| ())
    }

    fn sessions_all(&self) -> Result<Vec<([u8; 32], Record)>, StoreError> {
        let rows: Vec<(Vec<u8>, Vec<u8>)> = self.run(|pool| async move {
            sqlx::query_as("SELECT key, row FROM web_sessions ORDER BY key")
                .fetch_all(&pool)
                .await
                .map_err(db_err)
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, v)| Some((<[u8; 32]>::try_from(k.as_slice()).ok()?, Record::from(v))))
            .collect())
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        // Every write was committed (durable) before it returned.
        Box::pin(async { Ok(()) })
    }

    fn flush_blocking(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn flushes(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    fn probe_write(&self) -> Result<(), StoreError> {
        self.run(|pool| async move {
            let mut tx = pool.begin().await.map_err(db_err)?;
            // Through the lock every write takes: a wedged write path is seen.
            sqlx::query("SELECT value FROM rosterd_meta WHERE key = 'generation' FOR UPDATE")
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            sqlx::query("UPDATE rosterd_meta SET value = $1 WHERE key = 'write_probe'")
                .bind(Utc::now().timestamp_millis())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            tx.commit().await.map_err(db_err)
        })
    }

    fn is_ready(&self) -> bool {
        self.run(|pool| async move {
            sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .map(|_| ())
                .map_err(db_err)
        })
        .is_ok()
    }

    fn node_name(&self) -> String {
        self.inner.node.clone()
    }
    fn lease_take(
        &self,
        source: &str,
    ) -> Result<Result<super::backend::Lease, super::backend::LeaseInfo>, StoreError> {
        let (source, node, ttl) = (
            source.to_string(),
            self.inner.node.clone(),
            self.inner.lease_ttl,
        );
        self.run(move |pool| lease::take(pool, source, node, ttl))
    }
    fn lease_renew(&self, l: &super::backend::Lease) -> Result<bool, StoreError> {
        let (l, ttl) = (l.clone(), self.inner.lease_ttl);
        self.run(move |pool| lease::renew(pool, l, ttl))
    }
    fn lease_release(&self, l: &super::backend::Lease) -> Result<(), StoreError> {
        let l = l.clone();
        self.run(move |pool| lease::release(pool, l))
    }
    fn leases(&self) -> Result<Vec<super::backend::LeaseInfo>, StoreError> {
        self.run(|pool| async move { lease::all(&pool, None).await })
    }
    fn claim_slot(
        &self,
        duty: &str,
        slot: DateTime<Utc>,
        next: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (duty, node) = (duty.to_string(), self.inner.node.clone());
        self.run(move |pool| lease::claim_slot(pool, duty, slot, next, node))
    }
    fn outbox_claim(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let (node, ttl) = (self.inner.node.clone(), self.inner.lease_ttl);
        self.run(move |pool| lease::outbox_claim(pool, now, limit, node, ttl))
    }
    fn outbox_hold(&self, id: u64) -> Result<bool, StoreError> {
        let (node, ttl) = (self.inner.node.clone(), self.inner.lease_ttl);
        self.run(move |pool| lease::outbox_hold(pool, id, node, ttl))
    }

    fn table_counts(&self) -> Result<Vec<(super::Table, u64)>, StoreError> {
        self.copy_table_counts()
    }

    fn export_rows(
        &self,
        _is_active: &dyn Fn(&[u8]) -> bool,
        sink: &mut dyn FnMut(super::StoreRow) -> Result<(), StoreError>,
    ) -> Result<super::NextIds, StoreError> {
        self.copy_export(sink)
    }

    fn import_rows(
        &self,
        rows: &mut dyn Iterator<Item = Result<super::StoreRow, StoreError>>,
        next: &dyn Fn() -> super::NextIds,
    ) -> Result<(), StoreError> {
        self.copy_import(rows, next)
    }

    /// Each transaction costs a few round trips and a commit beside its
    /// rows: 1,000 profiles at a time took the apply of a first import of
    /// 100,000 from 8.2-8.7 s to 6.3-7.5 s. 2,000 gained no more and pushed
    /// the daemon's peak memory past 500 MB (two batches are in flight).
    /// sled keeps 500: its transactions hold every write in memory.
    fn create_batch(&self) -> usize {
        1000
    }

    fn shared(&self) -> bool {
        true
    }

    fn catch_up(&self) -> Result<Caught, StoreError> {
        self.catch_up_now()
    }

    fn get_followed(&self, id: Uuid) -> Result<Option<Record>, StoreError> {
        PgStore::get_followed(self, id)
    }

    fn lookup_followed(&self, index: &IndexKind, key: &str) -> Result<Option<Uuid>, StoreError> {
        PgStore::lookup_followed(self, index, key)
    }

    fn marks_of(&self, owner: &str) -> Result<Vec<(Uuid, Vec<u8>)>, StoreError> {
        let owner = owner.to_string();
        self.run(move |pool| async move {
            // Only notes on current versions are kept: an update of a record
            // drops its notes in the update's transaction.
            sqlx::query_as("SELECT employee_id, mark FROM employee_marks WHERE owner = $1")
                .bind(owner)
                .fetch_all(&pool)
                .await
                .map_err(db_err)
        })
    }

    fn get_many(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, Record)>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(GET_MANY_CHUNK) {
            let chunk = chunk.to_vec();
            let rows = self.run(move |pool| async move {
                let rows = sqlx::query("SELECT id, body FROM employees WHERE id = ANY($1)")
                    .bind(&chunk)
                    .fetch_all(&pool)
                    .await
                    .map_err(db_err)?;
                id_records(&rows, "employee")
            })?;
            self.inner
                .reads
                .fetch_add(rows.len() as u64, Ordering::Relaxed);
            out.extend(rows);
        }
        Ok(out)
    }
}

/// How many records one query of [`Backend::get_many`] asks for (a query
/// stays a few megabytes).
const GET_MANY_CHUNK: usize = 2000;

impl PgStore {
    fn run_put_plan_page_raw(&self, id: i64, page: i32, bytes: &[u8]) -> Result<(), StoreError> {
        let bytes = bytes.to_vec();
        self.run(move |pool| async move {
            let mut tx = pool.begin().await.map_err(db_err)?;
            put_plan_page(&mut tx, id, page, bytes).await?;
            tx.commit().await.map_err(db_err)
        })
    }

    fn run_plan_page_raw(&self, id: i64, page: i32) -> Result<Option<Record>, StoreError> {
        self.bytes_query(
            "SELECT bytes FROM sync_plans WHERE run_id = $1 AND page = $2",
            move |q| q.bind(id).bind(page),
        )
    }
}

async fn put_plan_page(
    tx: &mut Transaction<'static, Postgres>,
    id: i64,
    page: i32,
    bytes: Vec<u8>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sync_plans (run_id, page, bytes) VALUES ($1, $2, $3)
         ON CONFLICT (run_id, page) DO UPDATE SET bytes = excluded.bytes",
    )
    .bind(id)
    .bind(page)
    .bind(bytes)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}
