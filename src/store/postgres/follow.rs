//! Following the other nodes' writes: several rosterd processes on one
//! database each keep counts and id-order positions (the [`Directory`]), and
//! above the store the roster's projection and the positions in force. This
//! is how they stay right (schema version 2, see [`super::schema`]).
//!
//! - Every commit bumps `rosterd_meta.generation` under that row's lock, held
//!   to the commit, so generations are in commit order: once a reader sees
//!   generation `G`, every commit numbered `G` or below is visible to it.
//!   The commit stamps its generation on what it wrote: `employees.generation`,
//!   `outbox.changed`, a row of `employee_removed` per removed employee, and
//!   `rosterd_meta.positions` for a position change.
//! - [`PgStore::catch_up`] (before a read that depends on memory): ONE query
//!   reads the generation and the positions' generation. If neither moved
//!   since the last look, that is all. Otherwise it reads the rows stamped
//!   after the last seen generation (employees with their removals, one query;
//!   outbox messages, one query) and applies them, then remembers `G`. Rows
//!   stamped after `G` may come too and come again next time: applying is
//!   idempotent, by version.
//! - This process's own commits are known without a query: their
//!   generations are noted, and the seen generation moves over them while
//!   they are contiguous, so a node alone on its database never fetches its
//!   own writes back.
//! - The directory keeps a version per id beside it, so that an answer read
//!   before a local commit but applied after it cannot undo it; a removed id
//!   keeps `u64::MAX` (ids are UUID v7 and never reused).
//!
//! No `LISTEN/NOTIFY`: polling the one row is cheap and works through a
//! transaction-pooling proxy.

use std::collections::{BTreeSet, HashMap};
use std::sync::PoisonError;

use sqlx::Row;
use uuid::Uuid;

use super::{PgStore, corrupt, db_err, decode_outbox, i64_of, u64_of};
use crate::store::backend::Caught;
use crate::store::directory::Directory;
use crate::store::{Record, StoreError};

/// The version of a removed record: no write is newer.
const REMOVED: u64 = u64::MAX;

/// What this process has seen of the database's generations.
#[derive(Debug, Default)]
pub(super) struct Follow {
    /// Every commit up to this generation is applied.
    seen: u64,
    /// The positions' generation last seen.
    positions: u64,
    /// This process's commits above `seen` (applied already).
    local: BTreeSet<u64>,
    /// Each record's version in the directory ([`REMOVED`] once removed).
    versions: HashMap<Uuid, u64>,
}

impl Follow {
    pub(super) fn new(seen: u64, positions: u64, versions: HashMap<Uuid, u64>) -> Self {
        Follow {
            seen,
            positions,
            local: BTreeSet::new(),
            versions,
        }
    }

    /// A record at `version` (`None`: removed), into the directory unless it
    /// knows a newer one.
    pub(super) fn apply(
        &mut self,
        dir: &mut Directory,
        id: Uuid,
        state: Option<(u64, bool)>,
    ) -> bool {
        let known = self.versions.get(&id).copied();
        match state {
            Some((version, active)) => {
                if known.is_some_and(|k| k >= version) {
                    return false;
                }
                self.versions.insert(id, version);
                dir.put(id, active);
            }
            None => {
                if known == Some(REMOVED) {
                    return false;
                }
                self.versions.insert(id, REMOVED);
                dir.remove(id);
            }
        }
        true
    }

    /// One of this process's commits, applied already.
    pub(super) fn committed(&mut self, generation: u64) {
        if generation > self.seen {
            self.local.insert(generation);
        }
        self.advance();
    }

    /// A local position change (its generation is also the positions' one).
    pub(super) fn positions_changed(&mut self, generation: u64) {
        self.positions = self.positions.max(generation);
        self.committed(generation);
    }

    fn advance(&mut self) {
        while self.local.remove(&(self.seen + 1)) {
            self.seen += 1;
        }
        let seen = self.seen;
        self.local.retain(|g| *g > seen);
    }
}

/// The generation and the positions' generation: the one query a catch-up
/// makes when nothing moved.
pub(super) async fn generations(pool: &sqlx::PgPool) -> Result<(u64, u64), StoreError> {
    let (g, p): (i64, i64) = sqlx::query_as(
        "SELECT coalesce(max(value) FILTER (WHERE key = 'generation'), 0),
                coalesce(max(value) FILTER (WHERE key = 'positions'), 0)
         FROM rosterd_meta",
    )
    .fetch_one(pool)
    .await
    .map_err(db_err)?;
    Ok((u64_of(g)?, u64_of(p)?))
}

impl PgStore {
    pub(super) fn follow_state(&self) -> std::sync::MutexGuard<'_, Follow> {
        self.inner
            .follow
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// See the module doc and [`crate::store::Backend::catch_up`].
    pub(super) fn catch_up_now(&self) -> Result<Caught, StoreError> {
        let (generation, positions) = self.run(|pool| async move { generations(&pool).await })?;
        let (since, known, positions_moved) = {
            let f = self.follow_state();
            let known = f
                .local
                .iter()
                .map(|g| i64_of(*g))
                .collect::<Result<Vec<_>, _>>()?;
            (f.seen, known, positions > f.positions)
        };
        let mut caught = Caught {
            positions: positions_moved,
            ..Caught::default()
        };
        if generation > since {
            let after = i64_of(since)?;
            type Changed = (Uuid, Option<i64>, Option<bool>, Option<Vec<u8>>);
            let (rows, outbox): (Vec<Changed>, Vec<Vec<u8>>) =
                self.run(move |pool| async move {
                    // This process's own commits above `since` are applied
                    // already: not read again.
                    let rows = sqlx::query(
                        "SELECT id, version, active, body FROM employees
                         WHERE generation > $1 AND generation <> ALL($2)
                         UNION ALL
                         SELECT employee_id, NULL, NULL, NULL FROM employee_removed
                         WHERE generation > $1 AND generation <> ALL($2)",
                    )
                    .bind(after)
                    .bind(&known)
                    .fetch_all(&pool)
                    .await
                    .map_err(db_err)?
                    .iter()
                    .map(|r| {
                        Ok((
                            r.try_get(0).map_err(corrupt("employee id"))?,
                            r.try_get(1).map_err(corrupt("employee version"))?,
                            r.try_get(2).map_err(corrupt("employee active"))?,
                            r.try_get(3).map_err(corrupt("employee"))?,
                        ))
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                    let outbox: Vec<Vec<u8>> = sqlx::query_scalar(
                        "SELECT body FROM outbox WHERE changed > $1 AND changed <> ALL($2)
                         ORDER BY id",
                    )
                    .bind(after)
                    .bind(&known)
                    .fetch_all(&pool)
                    .await
                    .map_err(db_err)?;
                    Ok((rows, outbox))
                })?;
            let mut f = self.follow_state();
            let mut dir = self.write_directory();
            for (id, version, active, body) in rows {
                let state = match (version, active) {
                    (Some(v), Some(a)) => Some((u64_of(v)?, a)),
                    _ => None,
                };
                if state.is_some() && f.versions.get(&id) == Some(&REMOVED) {
                    // Removed since (a tombstone is never undone).
                    continue;
                }
                f.apply(&mut dir, id, state);
                caught.records.push((id, body.map(Record::from)));
            }
            drop(dir);
            f.seen = f.seen.max(generation);
            f.advance();
            drop(f);
            caught.outbox = outbox
                .iter()
                .map(|b| decode_outbox(b))
                .collect::<Result<_, _>>()?;
        }
        if positions_moved {
            let mut f = self.follow_state();
            f.positions = f.positions.max(positions);
        }
        Ok(caught)
    }
}
