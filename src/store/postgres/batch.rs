//! A batch of writes in a constant number of statements (`commit_writes` in
//! the module above): a sync creates its plan's new profiles 500 to a batch,
//! and two statements per write made that cost two round trips to the server
//! per profile (about 0.3 ms each on a local server).
//!
//! The outcome is exactly the per-write loop's (`commit_writes`' reference,
//! which every write goes through in order: its record, then its keys and
//! mark, then its photo, the first refusal being the error). The statements:
//!
//! 1. every create in one `INSERT … SELECT FROM unnest(…) ON CONFLICT (id) DO
//!    NOTHING RETURNING id`;
//! 2. every update in one `UPDATE … FROM unnest(…) WHERE version = expected
//!    RETURNING id`, which drops the updated records' keys and marks and
//!    returns the keys it dropped;
//! 3. each removal (rare in a sync) on its own, returning the keys it frees;
//! 4. a write whose row was not returned is the first version conflict; every
//!    unique key and mark of the writes before it in one insert `ON CONFLICT
//!    (kind, key) DO NOTHING RETURNING kind, key, employee_id`;
//! 5. each photo change (rare) on its own.
//!
//! The loop refuses a key of write `i` that is held when `i` is reached: by
//! a record outside the batch or by an earlier write of it (the insert
//! refuses those too, in the same order, since it inserts the rows in write
//! order), or by a record that a LATER write of the batch updates or removes.
//! The insert ran after those later writes freed their keys, so a key it
//! claimed that a later write freed is refused here as the loop refuses it.
//! The first refused key (in write order) before the first version conflict
//! is the error; else that conflict is. A batch in which one id appears twice
//! goes through the loop (`batchable`).
//!
//! A batch of creates only (a sync's first import) is first tried with plain
//! inserts that return nothing ([`write_new`]); if a key or an id is taken,
//! that transaction is dropped and the batch is taken again as above.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::{
    StoreError, Tx, Write, db_err, i64_of, key_rows, kind_name, version_conflict, write_photo,
};

/// Whether the batched statements give the per-write loop's outcome for
/// `writes`: they do when no id appears twice (each row is then written by
/// one write, whose version check does not depend on the others).
pub(super) fn batchable(writes: &[Write]) -> bool {
    let mut ids = HashSet::with_capacity(writes.len());
    writes.len() > 1 && writes.iter().all(|w| ids.insert(w.id))
}

/// Whether `writes` may first be tried by [`write_new`]: a batch of creates
/// only (a sync's first import), of distinct ids.
pub(super) fn all_new(writes: &[Write]) -> bool {
    batchable(writes)
        && writes
            .iter()
            .all(|w| w.record.is_some() && w.expected_version.is_none())
}

/// A batch of creates ([`all_new`]) the quick way: plain inserts, with
/// nothing returned. `Ok(false)`: a unique key (or an id) was taken, and
/// the transaction is spoilt: the caller takes the batch again, in a new
/// one, through [`write_batch`], which says which write was refused. On a
/// first import nothing is taken, and claiming every key `ON CONFLICT`,
/// with each claimed key sent back, cost a third of the apply.
pub(super) async fn write_new(
    tx: &mut Tx,
    writes: &[Write],
    stamp: i64,
) -> Result<bool, StoreError> {
    let c = Columns::of(writes, false)?;
    let inserted = sqlx::query(
        "INSERT INTO employees (id, version, active, body, generation)
         SELECT *, $5 FROM unnest($1::uuid[], $2::bigint[], $3::boolean[], $4::bytea[])",
    )
    .bind(&c.ids)
    .bind(&c.versions)
    .bind(&c.active)
    .bind(&c.bodies)
    .bind(stamp)
    .execute(&mut **tx)
    .await;
    if taken(inserted)? {
        return Ok(false);
    }
    let k = KeysAndMarks::of(writes);
    let claimed = sqlx::query(
        "WITH m AS (
            INSERT INTO employee_marks (employee_id, owner, mark)
            SELECT * FROM unnest($4::uuid[], $5::text[], $6::bytea[])
         )
         INSERT INTO employee_keys (kind, key, employee_id)
         SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[])",
    )
    .bind(&k.kinds)
    .bind(&k.keys)
    .bind(&k.holders)
    .bind(&k.marked)
    .bind(&k.owners)
    .bind(&k.marks)
    .execute(&mut **tx)
    .await;
    if taken(claimed)? {
        return Ok(false);
    }
    for w in writes {
        write_photo(tx, w).await?;
    }
    Ok(true)
}

/// Whether a statement failed on a unique constraint (its other errors are
/// errors).
fn taken(r: Result<sqlx::postgres::PgQueryResult, sqlx::Error>) -> Result<bool, StoreError> {
    match r {
        Ok(_) => Ok(false),
        Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("23505") => Ok(true),
        Err(e) => Err(db_err(e)),
    }
}

/// A key as `employee_keys` holds it: (kind, key).
type KeyRow = (String, String);

/// Writes the batch's records (stamped with generation `stamp`), keys, marks
/// and photos (not its audit entries and outbox messages:
/// `audit_outbox_and_removals`). An error is the per-write loop's: the
/// transaction must then be dropped.
pub(super) async fn write_batch(
    tx: &mut Tx,
    writes: &[Write],
    stamp: i64,
) -> Result<(), StoreError> {
    let mut written: HashSet<Uuid> = HashSet::with_capacity(writes.len());
    // Who frees which key: the position of the write that updates or removes
    // its holder.
    let mut freed: HashMap<KeyRow, usize> = HashMap::new();
    let position: HashMap<Uuid, usize> =
        writes.iter().enumerate().map(|(i, w)| (w.id, i)).collect();
    insert_creates(tx, writes, stamp, &mut written).await?;
    for (id, key) in update_records(tx, writes, stamp, &mut written).await? {
        if let Some(p) = position.get(&id) {
            freed.insert(key, *p);
        }
    }
    for (i, w) in writes.iter().enumerate() {
        if w.record.is_none() {
            for key in remove_record(tx, w, &mut written).await? {
                freed.insert(key, i);
            }
        }
    }
    // The loop stops at the first write whose version did not match.
    let reached = writes
        .iter()
        .position(|w| !written.contains(&w.id))
        .unwrap_or(writes.len());
    let claimed = claim_keys_and_marks(tx, &writes[..reached]).await?;
    for (i, w) in writes[..reached].iter().enumerate() {
        let Some(r) = &w.record else { continue };
        let refused = r.keys.entries.iter().find(|(k, v)| {
            let key = (kind_name(k), v.clone());
            let freed_later = freed.get(&key).is_some_and(|by| *by > i);
            freed_later || !claimed.contains(&(key.0, key.1, w.id))
        });
        if let Some((index, key)) = refused {
            return Err(StoreError::Unique {
                index: index.clone(),
                key: key.clone(),
            });
        }
    }
    if let Some(w) = writes.get(reached) {
        return Err(version_conflict(tx, w).await?);
    }
    for w in writes.iter().filter(|w| w.record.is_some()) {
        write_photo(tx, w).await?;
    }
    Ok(())
}

/// The records' columns of the creates (`updates` false) or of the updates,
/// as arrays to `unnest`: $1 ids, $2 versions, $3 active, $4 bodies; then $5
/// the generation stamp and, for the updates, $6 the expected versions.
struct Columns<'a> {
    ids: Vec<Uuid>,
    versions: Vec<i64>,
    active: Vec<bool>,
    bodies: Vec<&'a [u8]>,
    expected: Vec<i64>,
}

impl<'a> Columns<'a> {
    fn of(writes: &'a [Write], updates: bool) -> Result<Self, StoreError> {
        let mut c = Columns {
            ids: vec![],
            versions: vec![],
            active: vec![],
            bodies: vec![],
            expected: vec![],
        };
        for w in writes {
            let Some(r) = &w.record else { continue };
            match (updates, w.expected_version) {
                (false, None) => {}
                (true, Some(v)) => c.expected.push(i64_of(v)?),
                _ => continue,
            }
            c.ids.push(w.id);
            c.versions.push(i64_of(r.version)?);
            c.active.push(r.active);
            c.bodies.push(r.bytes.as_slice());
        }
        Ok(c)
    }

    /// `sql` with the columns bound, its rows.
    async fn fetch<T>(
        &self,
        tx: &mut Tx,
        stamp: i64,
        sql: &'static str,
    ) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        let q = sqlx::query_as(sql)
            .bind(&self.ids)
            .bind(&self.versions)
            .bind(&self.active)
            .bind(&self.bodies)
            .bind(stamp);
        let q = if self.expected.is_empty() {
            q
        } else {
            q.bind(&self.expected)
        };
        q.fetch_all(&mut **tx).await.map_err(db_err)
    }
}

/// Step 1: the creates; the ids inserted join `written`.
async fn insert_creates(
    tx: &mut Tx,
    writes: &[Write],
    stamp: i64,
    written: &mut HashSet<Uuid>,
) -> Result<(), StoreError> {
    let c = Columns::of(writes, false)?;
    if c.ids.is_empty() {
        return Ok(());
    }
    let inserted: Vec<(Uuid,)> = c
        .fetch(
            tx,
            stamp,
            "INSERT INTO employees (id, version, active, body, generation)
             SELECT *, $5 FROM unnest($1::uuid[], $2::bigint[], $3::boolean[], $4::bytea[])
             ON CONFLICT (id) DO NOTHING
             RETURNING id",
        )
        .await?;
    written.extend(inserted.into_iter().map(|(id,)| id));
    Ok(())
}

/// Step 2: the updates at their expected versions, their old keys and marks
/// dropped; the ids updated join `written`. Returns the keys dropped, each
/// with the record that held it.
async fn update_records(
    tx: &mut Tx,
    writes: &[Write],
    stamp: i64,
    written: &mut HashSet<Uuid>,
) -> Result<Vec<(Uuid, KeyRow)>, StoreError> {
    let c = Columns::of(writes, true)?;
    if c.ids.is_empty() {
        return Ok(vec![]);
    }
    // Rows with no kind are the updated ids; the others the keys dropped.
    let rows: Vec<(Uuid, Option<String>, Option<String>)> = c
        .fetch(
            tx,
            stamp,
            "WITH u AS (
                UPDATE employees e
                SET version = t.version, active = t.active, body = t.body, generation = $5
                FROM unnest($1::uuid[], $2::bigint[], $3::boolean[], $4::bytea[], $6::bigint[])
                    AS t(id, version, active, body, expected)
                WHERE e.id = t.id AND e.version = t.expected
                RETURNING e.id
             ), k AS (
                DELETE FROM employee_keys WHERE employee_id IN (SELECT id FROM u)
                RETURNING employee_id, kind, key
             ), m AS (
                DELETE FROM employee_marks WHERE employee_id IN (SELECT id FROM u)
             )
             SELECT id, NULL::text, NULL::text FROM u
             UNION ALL SELECT employee_id, kind::text, key::text FROM k",
        )
        .await?;
    let mut dropped = Vec::new();
    for (id, kind, key) in rows {
        match (kind, key) {
            (Some(kind), Some(key)) => dropped.push((id, (kind, key))),
            _ => {
                written.insert(id);
            }
        }
    }
    Ok(dropped)
}

/// Step 3: one removal at its expected version, with its keys, marks and
/// photo; its id joins `written` if it matched. Returns the keys it freed.
async fn remove_record(
    tx: &mut Tx,
    w: &Write,
    written: &mut HashSet<Uuid>,
) -> Result<Vec<KeyRow>, StoreError> {
    // One row per key deleted; one row with no key for a record that had none.
    let rows: Vec<(Option<String>, Option<String>)> = sqlx::query_as(REMOVE)
        .bind(w.id)
        .bind(w.expected_version.map(i64_of).transpose()?)
        .fetch_all(&mut **tx)
        .await
        .map_err(db_err)?;
    if !rows.is_empty() {
        written.insert(w.id);
    }
    Ok(rows
        .into_iter()
        .filter_map(|(kind, key)| Some((kind?, key?)))
        .collect())
}

/// A removal at its expected version ($1 the id, $2 the version), with its
/// keys, marks and photo (version 4 of the schema has no cascade): one row
/// per key it freed, one with no key if it freed none, none if the version
/// did not match.
pub(super) const REMOVE: &str = "WITH d AS (
        DELETE FROM employees WHERE id = $1 AND version IS NOT DISTINCT FROM $2 RETURNING id
     ), k AS (
        DELETE FROM employee_keys WHERE employee_id IN (SELECT id FROM d) RETURNING kind, key
     ), m AS (
        DELETE FROM employee_marks WHERE employee_id IN (SELECT id FROM d)
     ), p AS (
        DELETE FROM photos WHERE employee_id IN (SELECT id FROM d)
     )
     SELECT k.kind::text, k.key::text FROM d LEFT JOIN k ON true";

/// The unique keys and marks of writes, in write order, as arrays to
/// `unnest`: $1 kinds, $2 keys, $3 holders; $4 marked ids, $5 owners, $6 marks.
struct KeysAndMarks<'a> {
    kinds: Vec<String>,
    keys: Vec<String>,
    holders: Vec<Uuid>,
    marked: Vec<Uuid>,
    owners: Vec<&'a str>,
    marks: Vec<&'a [u8]>,
}

impl<'a> KeysAndMarks<'a> {
    fn of(writes: &'a [Write]) -> Self {
        let mut k = KeysAndMarks {
            kinds: vec![],
            keys: vec![],
            holders: vec![],
            marked: vec![],
            owners: vec![],
            marks: vec![],
        };
        for w in writes {
            let Some(r) = &w.record else { continue };
            // As the loop does: one row per distinct key of a write.
            for (kind, key) in key_rows(r) {
                k.kinds.push(kind);
                k.keys.push(key);
                k.holders.push(w.id);
            }
            if let Some((owner, mark)) = &r.mark {
                k.marked.push(w.id);
                k.owners.push(owner.as_str());
                k.marks.push(mark.as_slice());
            }
        }
        k
    }
}

/// Step 4: the unique keys and marks of `writes` (all written), in write
/// order, in one statement. Returns the keys claimed, each with its record.
async fn claim_keys_and_marks(
    tx: &mut Tx,
    writes: &[Write],
) -> Result<HashSet<(String, String, Uuid)>, StoreError> {
    let KeysAndMarks {
        kinds,
        keys,
        holders,
        marked,
        owners,
        marks,
    } = KeysAndMarks::of(writes);
    if kinds.is_empty() && marked.is_empty() {
        return Ok(HashSet::new());
    }
    let claimed: Vec<(String, String, Uuid)> = sqlx::query_as(
        "WITH m AS (
            INSERT INTO employee_marks (employee_id, owner, mark)
            SELECT * FROM unnest($4::uuid[], $5::text[], $6::bytea[])
         )
         INSERT INTO employee_keys (kind, key, employee_id)
         SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[])
         ON CONFLICT (kind, key) DO NOTHING
         RETURNING kind::text, key::text, employee_id",
    )
    .bind(&kinds)
    .bind(&keys)
    .bind(&holders)
    .bind(&marked)
    .bind(&owners)
    .bind(&marks)
    .fetch_all(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(claimed.into_iter().collect())
}
