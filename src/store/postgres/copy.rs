//! The PostgreSQL backend's side of `rosterd store copy` (see
//! `crate::store::copy`).
//!
//! - An export reads every table in ONE read-only `REPEATABLE READ`
//!   transaction (one snapshot, even with a daemon writing), through a cursor
//!   per table, a chunk at a time.
//! - An import is ONE transaction: it takes the write lock every writer takes
//!   (the generation row), checks that every table is empty, inserts the rows
//!   a chunk at a time with one `UNNEST` statement per table and chunk, sets
//!   the id and audit sequences past the copied ones, and commits. Anything
//!   failing rolls it all back: the target stays empty.
//!
//! The transaction moves between the store's runtime and the caller, which
//! hands rows in or takes them out between two statements.

use std::future::Future;

use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use super::{PgStore, corrupt, db_err, i64_of, u64_of};
use crate::store::backend::{NextIds, StoreRow, Table};
use crate::store::{Record, StoreError};

type Tx = Transaction<'static, Postgres>;

/// Rows per FETCH of an export and per statement of an import.
const CHUNK: usize = 2_000;

/// The tables in the order an export reads them (employees first: keys,
/// marks and photos refer to them), each with the query that reads it.
const EXPORTS: &[(Table, &str)] = &[
    (
        Table::Employees,
        "SELECT e.id, e.version, e.active, e.body,
            ARRAY(SELECT k.kind::text FROM employee_keys k WHERE k.employee_id = e.id ORDER BY k.kind, k.key),
            ARRAY(SELECT k.key::text FROM employee_keys k WHERE k.employee_id = e.id ORDER BY k.kind, k.key),
            ARRAY(SELECT m.owner::text FROM employee_marks m WHERE m.employee_id = e.id ORDER BY m.owner),
            ARRAY(SELECT m.mark FROM employee_marks m WHERE m.employee_id = e.id ORDER BY m.owner)
         FROM employees e ORDER BY e.id",
    ),
    (
        Table::Photos,
        "SELECT employee_id, bytes FROM photos ORDER BY employee_id",
    ),
    (Table::Positions, "SELECT id, body FROM positions ORDER BY id"),
    (
        Table::Audit,
        "SELECT seq, employee_id, entry FROM audit ORDER BY seq",
    ),
    (Table::Outbox, "SELECT id, pending, body FROM outbox ORDER BY id"),
    (Table::Runs, "SELECT id, header FROM sync_runs ORDER BY id"),
    (
        Table::PlanPages,
        "SELECT run_id, page, bytes FROM sync_plans ORDER BY run_id, page",
    ),
    (
        Table::SourceState,
        "SELECT source::text, bytes FROM sync_state ORDER BY source",
    ),
    (
        Table::HeldPlans,
        "SELECT run_id, bytes FROM sync_held ORDER BY run_id",
    ),
    (Table::Sessions, "SELECT key, row FROM web_sessions ORDER BY key"),
];

const COUNTS: &str = "SELECT
    (SELECT count(*) FROM employees), (SELECT count(*) FROM employee_keys),
    (SELECT count(*) FROM employee_marks), (SELECT count(*) FROM photos),
    (SELECT count(*) FROM positions), (SELECT count(*) FROM audit),
    (SELECT count(*) FROM outbox), (SELECT count(*) FROM sync_runs),
    (SELECT count(*) FROM sync_plans), (SELECT count(*) FROM sync_state),
    (SELECT count(*) FROM sync_held), (SELECT count(*) FROM web_sessions)";

/// The nil UUID stands for "no employee" in an array of audit links.
const NO_EMPLOYEE: Uuid = Uuid::nil();

/// The copy's transaction between two statements. Dropped with the
/// transaction still in it (a failure on the caller's side), it rolls it back
/// on the store's runtime: sqlx cannot drop a transaction outside one.
struct TxSlot<'a> {
    store: &'a PgStore,
    tx: Option<Tx>,
}

impl Drop for TxSlot<'_> {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = self
                .store
                .run(move |_pool| async move { tx.rollback().await.map_err(db_err) });
        }
    }
}

impl PgStore {
    /// Runs `f` with the transaction in `slot` on the store's runtime and
    /// puts it back; a failure drops it (rolled back).
    fn with_tx<T, F, Fut>(&self, slot: &mut TxSlot<'_>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Tx) -> Fut,
        Fut: Future<Output = Result<(Tx, T), StoreError>> + Send + 'static,
    {
        let tx = slot
            .tx
            .take()
            .ok_or_else(|| StoreError::Io("the copy's transaction has ended".into()))?;
        let (tx, v) = self.run(move |_pool| f(tx))?;
        slot.tx = Some(tx);
        Ok(v)
    }

    fn begin(&self, setup: &'static str) -> Result<TxSlot<'_>, StoreError> {
        let tx = self.run(move |pool| async move {
            let mut tx = pool.begin().await.map_err(db_err)?;
            if !setup.is_empty() {
                sqlx::query(setup).execute(&mut *tx).await.map_err(db_err)?;
            }
            Ok(tx)
        })?;
        Ok(TxSlot {
            store: self,
            tx: Some(tx),
        })
    }

    fn counts_in(&self, slot: &mut TxSlot<'_>) -> Result<Vec<(Table, u64)>, StoreError> {
        let n: Vec<i64> = self.with_tx(slot, |mut tx| async move {
            let row = sqlx::query(COUNTS)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
            let n = (0..Table::ALL.len())
                .map(|i| row.try_get::<i64, _>(i).map_err(corrupt("table count")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((tx, n))
        })?;
        Table::ALL
            .iter()
            .zip(n)
            .map(|(t, n)| Ok((*t, u64_of(n)?)))
            .collect()
    }

    pub(crate) fn copy_table_counts(&self) -> Result<Vec<(Table, u64)>, StoreError> {
        let mut slot = self.begin("")?;
        self.counts_in(&mut slot)
    }

    pub(crate) fn copy_export(
        &self,
        sink: &mut dyn FnMut(StoreRow) -> Result<(), StoreError>,
    ) -> Result<NextIds, StoreError> {
        let mut slot = self.begin("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
        for (table, sql) in EXPORTS {
            let declare = format!("DECLARE rosterd_copy NO SCROLL CURSOR FOR {sql}");
            self.with_tx(&mut slot, |mut tx| async move {
                // Built from the constant queries above only.
                sqlx::query(sqlx::AssertSqlSafe(declare))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                Ok((tx, ()))
            })?;
            loop {
                let rows: Vec<PgRow> = self.with_tx(&mut slot, |mut tx| async move {
                    let rows = // CHUNK rows. Not prepared: each table's cursor has its
                    // own columns, which a cached statement would keep.
                    sqlx::query("FETCH 2000 FROM rosterd_copy")
                        .persistent(false)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    Ok((tx, rows))
                })?;
                if rows.is_empty() {
                    break;
                }
                for r in &rows {
                    sink(decode(*table, r)?)?;
                }
            }
            self.with_tx(&mut slot, |mut tx| async move {
                sqlx::query("CLOSE rosterd_copy")
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                Ok((tx, ()))
            })?;
        }
        let (id, seq): (i64, i64) = self.with_tx(&mut slot, |mut tx| async move {
            let v = sqlx::query_as(
                "SELECT
                    (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM rosterd_ids),
                    (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM rosterd_audit_seq)",
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            Ok((tx, v))
        })?;
        Ok(NextIds {
            id: u64_of(id)?,
            audit_seq: u64_of(seq)?,
        })
    }

    pub(crate) fn copy_import(
        &self,
        rows: &mut dyn Iterator<Item = Result<StoreRow, StoreError>>,
        next: &dyn Fn() -> NextIds,
    ) -> Result<(), StoreError> {
        let mut slot = self.begin("")?;
        // The lock every write takes: no daemon writes while the copy runs.
        self.with_tx(&mut slot, |mut tx| async move {
            sqlx::query("SELECT value FROM rosterd_meta WHERE key = 'generation' FOR UPDATE")
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            Ok((tx, ()))
        })?;
        if self.counts_in(&mut slot)?.iter().any(|(_, n)| *n > 0) {
            return Err(StoreError::Invalid(
                "the target database is not empty; copy into a new database".into(),
            ));
        }
        let mut directory: Vec<(Uuid, bool)> = Vec::new();
        let mut chunk: Vec<StoreRow> = Vec::with_capacity(CHUNK);
        for row in rows {
            let row = row?;
            if chunk.len() >= CHUNK || chunk.first().is_some_and(|c| c.table() != row.table()) {
                let rows = std::mem::take(&mut chunk);
                self.with_tx(&mut slot, |tx| insert_chunk(tx, rows))?;
            }
            if let StoreRow::Employee { id, active, .. } = &row {
                directory.push((*id, *active));
            }
            chunk.push(row);
        }
        if !chunk.is_empty() {
            self.with_tx(&mut slot, |tx| insert_chunk(tx, chunk))?;
        }
        let next = next();
        let ids = i64_of(next.id)?;
        let seqs = i64_of(next.audit_seq)?;
        let tx = slot
            .tx
            .take()
            .ok_or_else(|| StoreError::Io("the copy's transaction has ended".into()))?;
        self.run(move |_pool| async move {
            let mut tx = tx;
            // setval(s, n, false): the next nextval is n.
            sqlx::query(
                "SELECT setval('rosterd_ids', greatest($1, 1), false),
                        setval('rosterd_audit_seq', greatest($2, 1), false)",
            )
            .bind(ids)
            .bind(seqs)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            // A generation past every copied write (readers only compare it).
            sqlx::query(
                "UPDATE rosterd_meta SET value = greatest(value, $1) WHERE key = 'generation'",
            )
            .bind(seqs)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            tx.commit().await.map_err(db_err)
        })?;
        directory.sort_unstable_by_key(|(id, _)| *id);
        let mut d = self.write_directory();
        *d = super::Directory::from_sorted(directory.iter().map(|(id, _)| *id).collect());
        let active: std::collections::HashMap<Uuid, bool> = directory.into_iter().collect();
        d.set_classes(|id| active.get(&id).copied());
        Ok(())
    }
}

fn bytes(r: &PgRow, i: usize, what: &'static str) -> Result<Record, StoreError> {
    Ok(Record::from(
        r.try_get::<Vec<u8>, _>(i).map_err(corrupt(what))?,
    ))
}

fn id64(r: &PgRow, i: usize, what: &'static str) -> Result<u64, StoreError> {
    u64_of(r.try_get::<i64, _>(i).map_err(corrupt(what))?)
}

fn uuid(r: &PgRow, i: usize, what: &'static str) -> Result<Uuid, StoreError> {
    r.try_get::<Uuid, _>(i).map_err(corrupt(what))
}

/// One exported row as a [`StoreRow`] (columns as [`EXPORTS`] selects them).
fn decode(table: Table, r: &PgRow) -> Result<StoreRow, StoreError> {
    Ok(match table {
        Table::Employees => {
            let kinds: Vec<String> = r.try_get(4).map_err(corrupt("key kinds"))?;
            let keys: Vec<String> = r.try_get(5).map_err(corrupt("keys"))?;
            let owners: Vec<String> = r.try_get(6).map_err(corrupt("mark owners"))?;
            let marks: Vec<Vec<u8>> = r.try_get(7).map_err(corrupt("marks"))?;
            StoreRow::Employee {
                id: uuid(r, 0, "employee id")?,
                version: id64(r, 1, "employee version")?,
                active: r.try_get(2).map_err(corrupt("employee active"))?,
                body: bytes(r, 3, "employee body")?,
                keys: kinds.into_iter().zip(keys).collect(),
                marks: owners.into_iter().zip(marks).collect(),
            }
        }
        Table::Photos => StoreRow::Photo {
            id: uuid(r, 0, "photo id")?,
            bytes: bytes(r, 1, "photo")?,
        },
        Table::Positions => StoreRow::Position {
            id: uuid(r, 0, "position id")?,
            bytes: bytes(r, 1, "position")?,
        },
        Table::Audit => StoreRow::Audit {
            seq: id64(r, 0, "audit seq")?,
            employee: r
                .try_get::<Option<Uuid>, _>(1)
                .map_err(corrupt("audit employee"))?,
            entry: bytes(r, 2, "audit entry")?,
        },
        Table::Outbox => StoreRow::Outbox {
            id: id64(r, 0, "outbox id")?,
            pending: r.try_get(1).map_err(corrupt("outbox pending"))?,
            body: bytes(r, 2, "outbox message")?,
        },
        Table::Runs => StoreRow::Run {
            id: id64(r, 0, "run id")?,
            header: bytes(r, 1, "run header")?,
        },
        Table::PlanPages => {
            let page: i32 = r.try_get(1).map_err(corrupt("plan page"))?;
            StoreRow::PlanPage {
                run: id64(r, 0, "plan run id")?,
                // Page -1 is a plan stored whole.
                page: u32::try_from(page).ok(),
                bytes: bytes(r, 2, "plan")?,
            }
        }
        Table::SourceState => StoreRow::SourceState {
            source: r.try_get(0).map_err(corrupt("source id"))?,
            bytes: bytes(r, 1, "source state")?,
        },
        Table::HeldPlans => StoreRow::Held {
            run: id64(r, 0, "held run id")?,
            bytes: bytes(r, 1, "held plan")?,
        },
        Table::Sessions => {
            let key: Vec<u8> = r.try_get(0).map_err(corrupt("session key"))?;
            StoreRow::Session {
                key: key
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("a session key is not 32 bytes".into()))?,
                row: bytes(r, 1, "session")?,
            }
        }
        Table::UniqueKeys | Table::Marks => {
            return Err(StoreError::Corrupt(
                "keys and marks are exported with their employee".into(),
            ));
        }
    })
}

/// Rows of one table in one statement (keys and marks: one more each).
///
/// Long on purpose: one arm per table, each gathering its columns and sending
/// one `unnest` insert; the tables read best side by side, in the order of
/// [`Table::ALL`], and an arm alone would be a function of one statement.
async fn insert_chunk(mut tx: Tx, rows: Vec<StoreRow>) -> Result<(Tx, ()), StoreError> {
    macro_rules! exec {
        ($sql:expr $(, $b:expr)*) => {
            sqlx::query($sql)$(.bind($b))*.execute(&mut *tx).await.map_err(db_err)?
        };
    }
    let Some(first) = rows.first() else {
        return Ok((tx, ()));
    };
    match first.table() {
        Table::Employees => {
            let (mut ids, mut versions, mut actives, mut bodies) = (vec![], vec![], vec![], vec![]);
            let (mut k_ids, mut kinds, mut keys) = (vec![], vec![], vec![]);
            let (mut m_ids, mut owners, mut marks) = (vec![], vec![], vec![]);
            for r in rows {
                let StoreRow::Employee {
                    id,
                    version,
                    active,
                    keys: ks,
                    marks: ms,
                    body,
                } = r
                else {
                    continue;
                };
                ids.push(id);
                versions.push(i64_of(version)?);
                actives.push(active);
                bodies.push(body.to_vec());
                for (k, v) in ks {
                    k_ids.push(id);
                    kinds.push(k);
                    keys.push(v);
                }
                for (o, m) in ms {
                    m_ids.push(id);
                    owners.push(o);
                    marks.push(m);
                }
            }
            exec!(
                "INSERT INTO employees (id, version, active, body)
                 SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::boolean[], $4::bytea[])",
                ids,
                versions,
                actives,
                bodies
            );
            exec!(
                "INSERT INTO employee_keys (kind, key, employee_id)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[])",
                kinds,
                keys,
                k_ids
            );
            exec!(
                "INSERT INTO employee_marks (employee_id, owner, mark)
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[])",
                m_ids,
                owners,
                marks
            );
        }
        Table::Audit => {
            let (mut seqs, mut emps, mut entries) = (vec![], vec![], vec![]);
            for r in rows {
                if let StoreRow::Audit {
                    seq,
                    employee,
                    entry,
                } = r
                {
                    seqs.push(i64_of(seq)?);
                    emps.push(employee.unwrap_or(NO_EMPLOYEE));
                    entries.push(entry.to_vec());
                }
            }
            exec!(
                "INSERT INTO audit (seq, employee_id, entry)
                 SELECT s, NULLIF(e, '00000000-0000-0000-0000-000000000000'::uuid), b
                 FROM unnest($1::bigint[], $2::uuid[], $3::bytea[]) AS t(s, e, b)",
                seqs,
                emps,
                entries
            );
        }
        Table::Outbox => {
            let (mut ids, mut pending, mut bodies) = (vec![], vec![], vec![]);
            for r in rows {
                if let StoreRow::Outbox {
                    id,
                    pending: p,
                    body,
                } = r
                {
                    ids.push(i64_of(id)?);
                    pending.push(p);
                    bodies.push(body.to_vec());
                }
            }
            exec!(
                "INSERT INTO outbox (id, pending, body)
                 SELECT * FROM unnest($1::bigint[], $2::boolean[], $3::bytea[])",
                ids,
                pending,
                bodies
            );
        }
        Table::PlanPages => {
            let (mut runs, mut pages, mut bodies) = (vec![], vec![], vec![]);
            for r in rows {
                if let StoreRow::PlanPage { run, page, bytes } = r {
                    runs.push(i64_of(run)?);
                    pages.push(match page {
                        None => -1,
                        Some(p) => i32::try_from(p).map_err(|_| {
                            StoreError::Invalid(format!("plan page {p} is too large"))
                        })?,
                    });
                    bodies.push(bytes.to_vec());
                }
            }
            exec!(
                "INSERT INTO sync_plans (run_id, page, bytes)
                 SELECT * FROM unnest($1::bigint[], $2::integer[], $3::bytea[])",
                runs,
                pages,
                bodies
            );
        }
        Table::Photos | Table::Positions => {
            let sql = if first.table() == Table::Photos {
                "INSERT INTO photos (employee_id, bytes) SELECT * FROM unnest($1::uuid[], $2::bytea[])"
            } else {
                "INSERT INTO positions (id, body) SELECT * FROM unnest($1::uuid[], $2::bytea[])"
            };
            let (mut ids, mut bodies) = (vec![], vec![]);
            for r in rows {
                if let StoreRow::Photo { id, bytes } | StoreRow::Position { id, bytes } = r {
                    ids.push(id);
                    bodies.push(bytes.to_vec());
                }
            }
            exec!(sql, ids, bodies);
        }
        Table::Runs | Table::HeldPlans => {
            let sql = if first.table() == Table::Runs {
                "INSERT INTO sync_runs (id, header) SELECT * FROM unnest($1::bigint[], $2::bytea[])"
            } else {
                "INSERT INTO sync_held (run_id, bytes) SELECT * FROM unnest($1::bigint[], $2::bytea[])"
            };
            let (mut ids, mut bodies) = (vec![], vec![]);
            for r in rows {
                if let StoreRow::Run { id, header: bytes } | StoreRow::Held { run: id, bytes } = r {
                    ids.push(i64_of(id)?);
                    bodies.push(bytes.to_vec());
                }
            }
            exec!(sql, ids, bodies);
        }
        Table::SourceState => {
            let (mut sources, mut bodies) = (vec![], vec![]);
            for r in rows {
                if let StoreRow::SourceState { source, bytes } = r {
                    sources.push(source);
                    bodies.push(bytes.to_vec());
                }
            }
            exec!(
                "INSERT INTO sync_state (source, bytes) SELECT * FROM unnest($1::text[], $2::bytea[])",
                sources,
                bodies
            );
        }
        Table::Sessions => {
            let (mut keys, mut bodies) = (vec![], vec![]);
            for r in rows {
                if let StoreRow::Session { key, row } = r {
                    keys.push(key.to_vec());
                    bodies.push(row.to_vec());
                }
            }
            exec!(
                "INSERT INTO web_sessions (key, row) SELECT * FROM unnest($1::bytea[], $2::bytea[])",
                keys,
                bodies
            );
        }
        Table::UniqueKeys | Table::Marks => {}
    }
    Ok((tx, ()))
}
