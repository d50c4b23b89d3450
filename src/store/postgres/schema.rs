//! The PostgreSQL schema and its migrations.
//!
//! [`migrate`] runs at every open and from `rosterd migrate`: in ONE
//! transaction that first takes `pg_advisory_xact_lock` (so two nodes starting
//! at once do not migrate together; a transaction-level lock is released at
//! commit and works through a transaction-pooling proxy), it creates what is
//! missing and records the schema version. A database written by a newer
//! rosterd is refused.
//!
//! Tables (bytes are stored as the domain wrote them, `bytea`, so that a read
//! returns the same bytes as on sled; keys are `text COLLATE "C"` so that key
//! order and equality are byte order and byte equality, as on sled):
//! - `rosterd_meta`: `schema_version`; `generation`, bumped by every write
//!   (its row lock orders the writes, see `super`).
//! - `employees`: id → version, active, body.
//! - `employee_keys`: (kind, key) → id: the unique indexes, `PRIMARY KEY`.
//! - `employee_marks`: (id, owner) → mark (a note on the current version).
//! - `photos`, `positions`, `audit` (seq → entry, by employee), `outbox`
//!   (id → message, `pending`), `sync_runs`, `sync_plans` (run, page; page -1
//!   is a plan stored whole), `sync_state`, `sync_held`, `web_sessions`.
//!
//! Version 2 ([`V2`], several nodes on one database): the generation of the
//! commit that last wrote a row, on `employees` and `outbox` (`changed`), a
//! tombstone per removed employee (`employee_removed`), and
//! `rosterd_meta.positions`, the generation of the last position change: what
//! a node reads to follow the others' writes (see `super::follow`).
//!
//! Version 3 ([`super::lease::V3`]): `source_lease`, `duty_schedule` and the
//!   outbox's claim columns (exactly one runner per duty).
//!
//! Version 4 ([`V4`], bulk writes): no foreign keys from `employee_keys`,
//!   `employee_marks` and `photos` to `employees`. Their checks were most of
//!   a sync's first import (one trigger and one row lock per key and mark:
//!   372,000 at 93,000 profiles, about half the apply). Those rows are only
//!   written in the transaction that writes their record, under the write
//!   lock, and a removal deletes them in its own statement, where the
//!   cascade did. Plan pages are compressed with lz4 where the server has
//!   it (pglz took 4 ms per page of 500 entries).

use sqlx::PgPool;

use super::super::StoreError;
use super::db_err;

/// The schema this build reads and writes.
pub const PG_SCHEMA_VERSION: i64 = 4;

/// An arbitrary constant: the advisory lock key of migrations.
const MIGRATION_LOCK: i64 = 0x726f_7374_6572_6431; // "rosterd1"

const V1: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS rosterd_meta (
        key text COLLATE \"C\" PRIMARY KEY,
        value bigint NOT NULL)",
    "INSERT INTO rosterd_meta (key, value) VALUES ('generation', 0), ('write_probe', 0)
        ON CONFLICT (key) DO NOTHING",
    "CREATE SEQUENCE IF NOT EXISTS rosterd_ids",
    "CREATE SEQUENCE IF NOT EXISTS rosterd_audit_seq",
    "CREATE TABLE IF NOT EXISTS employees (
        id uuid PRIMARY KEY,
        version bigint NOT NULL,
        active boolean NOT NULL,
        body bytea NOT NULL)",
    "CREATE TABLE IF NOT EXISTS employee_keys (
        kind text COLLATE \"C\" NOT NULL,
        key text COLLATE \"C\" NOT NULL,
        employee_id uuid NOT NULL REFERENCES employees (id) ON DELETE CASCADE,
        PRIMARY KEY (kind, key))",
    "CREATE INDEX IF NOT EXISTS employee_keys_by_employee ON employee_keys (employee_id)",
    "CREATE TABLE IF NOT EXISTS employee_marks (
        employee_id uuid NOT NULL REFERENCES employees (id) ON DELETE CASCADE,
        owner text COLLATE \"C\" NOT NULL,
        mark bytea NOT NULL,
        PRIMARY KEY (employee_id, owner))",
    "CREATE TABLE IF NOT EXISTS photos (
        employee_id uuid PRIMARY KEY REFERENCES employees (id) ON DELETE CASCADE,
        bytes bytea NOT NULL)",
    "CREATE TABLE IF NOT EXISTS positions (id uuid PRIMARY KEY, body bytea NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit (
        seq bigint PRIMARY KEY,
        employee_id uuid,
        entry bytea NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_by_employee ON audit (employee_id, seq)",
    "CREATE TABLE IF NOT EXISTS outbox (
        id bigint PRIMARY KEY,
        pending boolean NOT NULL,
        body bytea NOT NULL)",
    "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (id) WHERE pending",
    "CREATE TABLE IF NOT EXISTS sync_runs (id bigint PRIMARY KEY, header bytea NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sync_plans (
        run_id bigint NOT NULL,
        page integer NOT NULL,
        bytes bytea NOT NULL,
        PRIMARY KEY (run_id, page))",
    "CREATE TABLE IF NOT EXISTS sync_state (source text COLLATE \"C\" PRIMARY KEY, bytes bytea NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sync_held (run_id bigint PRIMARY KEY, bytes bytea NOT NULL)",
    "CREATE TABLE IF NOT EXISTS web_sessions (key bytea PRIMARY KEY, row bytea NOT NULL)",
];

/// Version 2: what a node polls to follow the other nodes' writes (see the
/// module doc). Existing rows get generation 0: a node that opens reads them
/// all anyway.
const V2: &[&str] = &[
    "ALTER TABLE employees ADD COLUMN IF NOT EXISTS generation bigint NOT NULL DEFAULT 0",
    "CREATE INDEX IF NOT EXISTS employees_by_generation ON employees (generation)",
    "CREATE TABLE IF NOT EXISTS employee_removed (
        employee_id uuid PRIMARY KEY,
        generation bigint NOT NULL)",
    "CREATE INDEX IF NOT EXISTS employee_removed_by_generation ON employee_removed (generation)",
    "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS changed bigint NOT NULL DEFAULT 0",
    "CREATE INDEX IF NOT EXISTS outbox_by_changed ON outbox (changed)",
    "INSERT INTO rosterd_meta (key, value) VALUES ('positions', 0) ON CONFLICT (key) DO NOTHING",
];

/// Version 4: see the module doc.
const V4: &[&str] = &[
    "ALTER TABLE employee_keys DROP CONSTRAINT IF EXISTS employee_keys_employee_id_fkey",
    "ALTER TABLE employee_marks DROP CONSTRAINT IF EXISTS employee_marks_employee_id_fkey",
    "ALTER TABLE photos DROP CONSTRAINT IF EXISTS photos_employee_id_fkey",
    "DO $$ BEGIN
        ALTER TABLE sync_plans ALTER COLUMN bytes SET COMPRESSION lz4;
     EXCEPTION WHEN feature_not_supported THEN NULL;
     END $$",
];

/// The steps from each version to the next: `STEPS[i]` takes version `i` to `i + 1`.
const STEPS: &[&[&str]] = &[V1, V2, super::lease::V3, V4];

/// What [`migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrated {
    /// The schema was created.
    Created,
    /// The schema was already at this build's version.
    Current,
    /// The schema was at an older version (the one given) and was upgraded.
    Upgraded(i64),
}

/// Creates or upgrades the schema (see the module doc).
pub async fn migrate(pool: &PgPool) -> Result<Migrated, StoreError> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS rosterd_schema (
            id boolean PRIMARY KEY DEFAULT true CHECK (id),
            version bigint NOT NULL)",
    )
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    let found: Option<i64> = sqlx::query_scalar("SELECT version FROM rosterd_schema")
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
    let outcome = match found {
        Some(v) if v == PG_SCHEMA_VERSION => Migrated::Current,
        Some(v) if v > PG_SCHEMA_VERSION => {
            return Err(StoreError::Schema {
                path: "the PostgreSQL database".into(),
                found: v.to_string(),
                expected: PG_SCHEMA_VERSION as u32,
            });
        }
        found => {
            let from = found.unwrap_or(0).max(0) as usize;
            for step in &STEPS[from.min(STEPS.len())..] {
                for stmt in step.iter() {
                    sqlx::query(*stmt).execute(&mut *tx).await.map_err(db_err)?;
                }
            }
            sqlx::query(
                "INSERT INTO rosterd_schema (id, version) VALUES (true, $1)
                 ON CONFLICT (id) DO UPDATE SET version = excluded.version",
            )
            .bind(PG_SCHEMA_VERSION)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            match found {
                Some(v) => Migrated::Upgraded(v),
                None => Migrated::Created,
            }
        }
    };
    tx.commit().await.map_err(db_err)?;
    Ok(outcome)
}
