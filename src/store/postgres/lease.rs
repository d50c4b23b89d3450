//! Leases and claims on PostgreSQL: the rows that make exactly one node run
//! each duty (see "Leases and claims" in `backend.rs`). Plain rows updated in
//! short transactions, never session advisory locks, so that they work through
//! a transaction-pooling proxy; every expiry is by the database clock (`now()`).
//!
//! - `source_lease (source_id, holder, epoch, expires_at)`: taken when free or
//!   expired (the epoch goes up by one), renewed `WHERE epoch = $mine` by every
//!   apply batch inside its own transaction ([`fence`]), let go at the end.
//! - `duty_schedule (duty, next_run_at, claimed_by)`: the firing at `slot` of a
//!   schedule is claimed by moving `next_run_at` past it, which only one node's
//!   `UPDATE … WHERE next_run_at <= slot` can do.
//! - `outbox.claimed_by`, `outbox.claim_until`: due messages are claimed with
//!   `FOR UPDATE SKIP LOCKED` (two nodes never claim the same one) until the
//!   claim expires, and the claim is renewed just before each send, so a dead
//!   node's messages come back to the others.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Row, Transaction};

use super::super::backend::{Lease, LeaseInfo, fence_lost};
use super::super::{DeliveryState, OutboxRecord, StoreError};
use super::{corrupt, db_err, decode_outbox, i64_of, u64_of};

/// Schema step 3 (after V1 and V2): the coordination tables. Self-contained and
/// idempotent.
pub const V3: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS source_lease (
        source_id text COLLATE \"C\" PRIMARY KEY,
        holder text NOT NULL,
        epoch bigint NOT NULL,
        expires_at timestamptz NOT NULL)",
    "CREATE TABLE IF NOT EXISTS duty_schedule (
        duty text COLLATE \"C\" PRIMARY KEY,
        next_run_at timestamptz NOT NULL,
        claimed_by text NOT NULL)",
    "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS claimed_by text",
    "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS claim_until timestamptz",
];

/// Most pending rows one claim looks at (the due ones among them are claimed).
const CLAIM_SCAN: i64 = 5000;

fn ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// Takes `source`'s lease for `holder` when it is free or expired.
pub async fn take(
    pool: PgPool,
    source: String,
    holder: String,
    ttl: Duration,
) -> Result<Result<Lease, LeaseInfo>, StoreError> {
    // A holder mid-batch has the row locked: this waits for its batch and
    // then sees the renewed expiry.
    let epoch: Option<i64> = sqlx::query_scalar(
        "INSERT INTO source_lease (source_id, holder, epoch, expires_at)
         VALUES ($1, $2, 1, now() + $3 * interval '1 millisecond')
         ON CONFLICT (source_id) DO UPDATE
            SET holder = excluded.holder, epoch = source_lease.epoch + 1,
                expires_at = excluded.expires_at
            WHERE source_lease.expires_at <= now()
         RETURNING epoch",
    )
    .bind(&source)
    .bind(&holder)
    .bind(ms(ttl))
    .fetch_optional(&pool)
    .await
    .map_err(db_err)?;
    if let Some(epoch) = epoch {
        return Ok(Ok(Lease {
            source,
            holder,
            epoch: u64_of(epoch)?,
            ttl,
        }));
    }
    let held = all(&pool, Some(&source)).await?;
    held.into_iter().next().map(Err).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "the lease row of `{source}` is neither taken nor held"
        ))
    })
}

/// Every lease row (or `source`'s).
pub async fn all(pool: &PgPool, source: Option<&str>) -> Result<Vec<LeaseInfo>, StoreError> {
    let rows = sqlx::query(
        "SELECT source_id, holder, epoch, expires_at, expires_at <= now()
         FROM source_lease WHERE $1::text IS NULL OR source_id = $1 ORDER BY source_id",
    )
    .bind(source)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(LeaseInfo {
                source: r.try_get(0).map_err(corrupt("lease source"))?,
                holder: r.try_get(1).map_err(corrupt("lease holder"))?,
                epoch: u64_of(r.try_get(2).map_err(corrupt("lease epoch"))?)?,
                expires_at: r.try_get(3).map_err(corrupt("lease expiry"))?,
                expired: r.try_get(4).map_err(corrupt("lease expiry"))?,
            })
        })
        .collect()
}

/// Renews `lease` in `tx`: the fence of a batch. No row (the lease was taken
/// over) is [`fence_lost`]'s error, and the caller drops the transaction.
pub async fn fence(
    tx: &mut Transaction<'static, Postgres>,
    lease: &Lease,
    ttl: Duration,
) -> Result<(), StoreError> {
    if renew_in(&mut **tx, lease, ttl).await? {
        Ok(())
    } else {
        Err(fence_lost(lease))
    }
}

/// Renews `lease` on its own (between batches): `false` when taken over.
pub async fn renew(pool: PgPool, lease: Lease, ttl: Duration) -> Result<bool, StoreError> {
    renew_in(&pool, &lease, ttl).await
}

async fn renew_in<'e, E>(exec: E, lease: &Lease, ttl: Duration) -> Result<bool, StoreError>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    Ok(sqlx::query(
        "UPDATE source_lease SET expires_at = now() + $4 * interval '1 millisecond'
         WHERE source_id = $1 AND epoch = $2 AND holder = $3",
    )
    .bind(&lease.source)
    .bind(i64_of(lease.epoch)?)
    .bind(&lease.holder)
    .bind(ms(ttl))
    .execute(exec)
    .await
    .map_err(db_err)?
    .rows_affected()
        == 1)
}

/// Lets `lease` go: free at once for the next taker (the epoch stays).
pub async fn release(pool: PgPool, lease: Lease) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE source_lease SET expires_at = now()
         WHERE source_id = $1 AND epoch = $2 AND holder = $3",
    )
    .bind(&lease.source)
    .bind(i64_of(lease.epoch)?)
    .bind(&lease.holder)
    .execute(&pool)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Claims the firing at `slot` of `duty` for `node` (see the module doc).
pub async fn claim_slot(
    pool: PgPool,
    duty: String,
    slot: DateTime<Utc>,
    next: DateTime<Utc>,
    node: String,
) -> Result<bool, StoreError> {
    let won: Option<i32> = sqlx::query_scalar(
        "INSERT INTO duty_schedule (duty, next_run_at, claimed_by) VALUES ($1, $3, $4)
         ON CONFLICT (duty) DO UPDATE
            SET next_run_at = excluded.next_run_at, claimed_by = excluded.claimed_by
            WHERE duty_schedule.next_run_at <= $2
         RETURNING 1",
    )
    .bind(&duty)
    .bind(slot)
    .bind(next)
    .bind(&node)
    .fetch_optional(&pool)
    .await
    .map_err(db_err)?;
    Ok(won.is_some())
}

/// Claims up to `limit` due messages that no other node's live claim holds
/// (this node's own claims, on a message it failed to send, are its to retry
/// when due), for `node` until `ttl` from now.
pub async fn outbox_claim(
    pool: PgPool,
    now: DateTime<Utc>,
    limit: usize,
    node: String,
    ttl: Duration,
) -> Result<Vec<OutboxRecord>, StoreError> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT id, body FROM outbox
         WHERE pending AND (claim_until IS NULL OR claim_until <= now() OR claimed_by = $2)
         ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(CLAIM_SCAN)
    .bind(&node)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    let mut claimed = Vec::new();
    let mut ids = Vec::new();
    for (id, body) in rows {
        if claimed.len() >= limit {
            break;
        }
        let m = decode_outbox(&body)?;
        if m.state == DeliveryState::Pending && m.next_attempt_at <= now {
            ids.push(id);
            claimed.push(m);
        }
    }
    if !ids.is_empty() {
        sqlx::query(
            "UPDATE outbox SET claimed_by = $2, claim_until = now() + $3 * interval '1 millisecond'
             WHERE id = ANY($1)",
        )
        .bind(&ids)
        .bind(&node)
        .bind(ms(ttl))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    tx.commit().await.map_err(db_err)?;
    Ok(claimed)
}

/// Renews `node`'s claim on message `id`: `false` when it is not `node`'s any more.
pub async fn outbox_hold(
    pool: PgPool,
    id: u64,
    node: String,
    ttl: Duration,
) -> Result<bool, StoreError> {
    Ok(sqlx::query(
        "UPDATE outbox SET claim_until = now() + $3 * interval '1 millisecond'
         WHERE id = $1 AND claimed_by = $2 AND pending",
    )
    .bind(i64_of(id)?)
    .bind(&node)
    .bind(ms(ttl))
    .execute(&pool)
    .await
    .map_err(db_err)?
    .rows_affected()
        == 1)
}

/// Frees the leases and outbox claims of rosterd processes on this host that
/// are gone (a holder `host:pid` whose pid no longer runs here): a node killed
/// and started again need not wait out its own old lease. Holders on other
/// hosts expire by themselves.
pub async fn forget_dead_local(pool: PgPool, node: String) -> Result<Vec<String>, StoreError> {
    let Some((host, _)) = node.rsplit_once(':') else {
        return Ok(vec![]);
    };
    let prefix = format!("{host}:");
    let holders: Vec<String> = sqlx::query_scalar(
        "SELECT holder FROM source_lease WHERE expires_at > now() AND starts_with(holder, $1)
         UNION SELECT claimed_by FROM outbox
            WHERE pending AND claim_until > now() AND starts_with(claimed_by, $1)",
    )
    .bind(&prefix)
    .fetch_all(&pool)
    .await
    .map_err(db_err)?;
    let dead: Vec<String> = holders
        .into_iter()
        .filter(|h| *h != node)
        .filter(|h| {
            h[prefix.len()..]
                .parse::<u32>()
                .is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect();
    if !dead.is_empty() {
        sqlx::query(
            "WITH l AS (
                UPDATE source_lease SET expires_at = now() WHERE holder = ANY($1) AND expires_at > now()
             )
             UPDATE outbox SET claim_until = NULL WHERE claimed_by = ANY($1) AND pending",
        )
        .bind(&dead)
        .execute(&pool)
        .await
        .map_err(db_err)?;
    }
    Ok(dead)
}
