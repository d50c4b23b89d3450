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
//! - Beside each version it keeps the record's body and its email, username
//!   and external id keys, loaded at open and kept by the same applies: after
//!   a catch-up, [`PgStore::get_followed`] and [`PgStore::lookup_followed`]
//!   answer from memory what `get` and `lookup` would read from the database
//!   (a SCIM GET or `userName eq` makes no query beyond the catch-up, which
//!   concurrent requests share). The write path keeps reading the database:
//!   versions and unique keys are checked there.
//!
//! No `LISTEN/NOTIFY`: polling the one row is cheap and works through a
//! transaction-pooling proxy.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError};

use sqlx::Row;
use uuid::Uuid;

use super::{PgStore, corrupt, db_err, decode_outbox, i64_of, u64_of};
use crate::store::backend::Caught;
use crate::store::directory::Directory;
use crate::store::{IndexKind, Record, RecordWrite, StoreError};

/// The version of a removed record: no write is newer.
const REMOVED: u64 = u64::MAX;

/// The unique keys reads look up from memory, as `employee_keys.kind` names
/// them; their place in this list is their slot in [`Follow::keys`].
pub(super) const FOLLOWED_KINDS: [&str; 3] = ["email", "username", "external_id"];

/// A unique key kept in memory: its kind's slot in [`FOLLOWED_KINDS`] and the key.
pub(super) type FollowedKey = (usize, Arc<str>);

/// A kind's slot in [`FOLLOWED_KINDS`] (`None`: not kept in memory).
pub(super) fn followed_kind(kind: &str) -> Option<usize> {
    FOLLOWED_KINDS.iter().position(|k| *k == kind)
}

/// A record as the database holds it now, for memory.
pub(super) struct Known {
    pub version: u64,
    pub active: bool,
    pub body: Record,
    pub keys: Vec<FollowedKey>,
}

impl Known {
    /// What a local write leaves.
    pub(super) fn of_write(r: &RecordWrite) -> Self {
        Known {
            version: r.version,
            active: r.active,
            body: Record::from(r.bytes.clone()),
            keys: r
                .keys
                .entries
                .iter()
                .filter_map(|(k, v)| {
                    let slot = match k {
                        IndexKind::Email => 0,
                        IndexKind::Username => 1,
                        IndexKind::ExternalId => 2,
                        _ => return None,
                    };
                    Some((slot, Arc::from(v.as_str())))
                })
                .collect(),
        }
    }
}

/// `(kind, key)` pairs from the database as [`FollowedKey`]s (other kinds left out).
pub(super) fn followed_keys(kinds: Vec<String>, keys: Vec<String>) -> Vec<FollowedKey> {
    kinds
        .into_iter()
        .zip(keys)
        .filter_map(|(k, v)| Some((followed_kind(&k)?, Arc::from(v))))
        .collect()
}

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
    /// Each record's body at that version.
    bodies: HashMap<Uuid, Record>,
    /// Per kind of [`FOLLOWED_KINDS`], key → record.
    keys: [HashMap<Arc<str>, Uuid>; 3],
    /// Each record's keys in `keys`.
    keys_of: HashMap<Uuid, Vec<FollowedKey>>,
}

impl Follow {
    /// What open read: the generations, then every record as it is.
    pub(super) fn new(
        seen: u64,
        positions: u64,
        records: impl IntoIterator<Item = (Uuid, Known)>,
    ) -> Self {
        let mut f = Follow {
            seen,
            positions,
            ..Follow::default()
        };
        for (id, k) in records {
            f.keep(id, k);
        }
        f
    }

    /// A record at its version (`None`: removed), into the directory and
    /// memory unless a newer one is known.
    pub(super) fn apply(&mut self, dir: &mut Directory, id: Uuid, state: Option<Known>) -> bool {
        let known = self.versions.get(&id).copied();
        match state {
            Some(k) => {
                if known.is_some_and(|v| v >= k.version) {
                    return false;
                }
                dir.put(id, k.active);
                self.keep(id, k);
            }
            None => {
                if known == Some(REMOVED) {
                    return false;
                }
                self.versions.insert(id, REMOVED);
                self.bodies.remove(&id);
                self.drop_keys(id);
                dir.remove(id);
            }
        }
        true
    }

    fn keep(&mut self, id: Uuid, k: Known) {
        self.versions.insert(id, k.version);
        self.bodies.insert(id, k.body);
        self.drop_keys(id);
        for (slot, key) in &k.keys {
            self.keys[*slot].insert(key.clone(), id);
        }
        self.keys_of.insert(id, k.keys);
    }

    /// The record's keys out of `keys`, where they still name it (another
    /// record applied first may hold one now).
    fn drop_keys(&mut self, id: Uuid) {
        for (slot, key) in self.keys_of.remove(&id).unwrap_or_default() {
            if self.keys[slot].get(&key) == Some(&id) {
                self.keys[slot].remove(&key);
            }
        }
    }

    /// The body memory holds: `Ok(None)` if the record is removed, `Err(())`
    /// if memory does not know it.
    pub(super) fn body(&self, id: Uuid) -> Result<Option<Record>, ()> {
        match self.bodies.get(&id) {
            Some(b) => Ok(Some(b.clone())),
            None if self.versions.get(&id) == Some(&REMOVED) => Ok(None),
            None => Err(()),
        }
    }

    /// The record holding a key of a kind kept in memory.
    pub(super) fn key(&self, slot: usize, key: &str) -> Option<Uuid> {
        self.keys[slot].get(key).copied()
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

    /// [`crate::store::Backend::get_followed`]: from memory (see the module
    /// doc); a record memory does not know is read.
    pub(super) fn get_followed(&self, id: Uuid) -> Result<Option<Record>, StoreError> {
        let known = self.follow_state().body(id);
        match known {
            Ok(body) => {
                self.inner
                    .reads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(body)
            }
            Err(()) => crate::store::Backend::get(self, id),
        }
    }

    /// [`crate::store::Backend::lookup_followed`]: email, username and
    /// external id from memory, other kinds from the database.
    pub(super) fn lookup_followed(
        &self,
        index: &IndexKind,
        key: &str,
    ) -> Result<Option<Uuid>, StoreError> {
        match followed_kind(&super::kind_name(index)) {
            Some(slot) => Ok(self.follow_state().key(slot, key)),
            None => crate::store::Backend::lookup(self, index, key),
        }
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
            type Changed = (
                Uuid,
                Option<i64>,
                Option<bool>,
                Option<Vec<u8>>,
                Option<(Vec<String>, Vec<String>)>,
            );
            let (rows, outbox): (Vec<Changed>, Vec<Vec<u8>>) =
                self.run(move |pool| async move {
                    // This process's own commits above `since` are applied
                    // already: not read again. A record's keys by its id
                    // alone (a handful; `followed_keys` keeps the kinds held
                    // in memory): with the kinds in the condition too,
                    // PostgreSQL ANDs two bitmap scans, the one of the kinds
                    // over every key, for each record read.
                    let rows = sqlx::query(
                        "SELECT e.id, e.version, e.active, e.body,
                                k.kinds, k.keys
                         FROM employees e
                         CROSS JOIN LATERAL (
                            SELECT coalesce(array_agg(kind), '{}') AS kinds,
                                   coalesce(array_agg(key), '{}') AS keys
                            FROM employee_keys
                            WHERE employee_id = e.id
                         ) k
                         WHERE e.generation > $1 AND e.generation <> ALL($2)
                         UNION ALL
                         SELECT employee_id, NULL, NULL, NULL, NULL, NULL
                         FROM employee_removed
                         WHERE generation > $1 AND generation <> ALL($2)",
                    )
                    .bind(after)
                    .bind(&known)
                    .fetch_all(&pool)
                    .await
                    .map_err(db_err)?
                    .iter()
                    .map(|r| {
                        let kinds: Option<Vec<String>> =
                            r.try_get(4).map_err(corrupt("employee keys"))?;
                        let keys: Option<Vec<String>> =
                            r.try_get(5).map_err(corrupt("employee keys"))?;
                        Ok((
                            r.try_get(0).map_err(corrupt("employee id"))?,
                            r.try_get(1).map_err(corrupt("employee version"))?,
                            r.try_get(2).map_err(corrupt("employee active"))?,
                            r.try_get(3).map_err(corrupt("employee"))?,
                            kinds.zip(keys),
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
            for (id, version, active, body, keys) in rows {
                let body = body.map(Record::from);
                let state = match (version, active, &body) {
                    (Some(v), Some(a), Some(b)) => Some(Known {
                        version: u64_of(v)?,
                        active: a,
                        body: b.clone(),
                        keys: keys.map_or_else(Vec::new, |(k, v)| followed_keys(k, v)),
                    }),
                    _ => None,
                };
                if state.is_some() && f.versions.get(&id) == Some(&REMOVED) {
                    // Removed since (a tombstone is never undone).
                    continue;
                }
                f.apply(&mut dir, id, state);
                caught.records.push((id, body));
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

/// Every record with its keys of [`FOLLOWED_KINDS`], in id order (at open).
pub(super) async fn load_all(pool: &sqlx::PgPool) -> Result<Vec<(Uuid, Known)>, StoreError> {
    let rows = sqlx::query(
        "SELECT e.id, e.version, e.active, e.body, k.kinds, k.keys
         FROM employees e
         LEFT JOIN (
            SELECT employee_id, array_agg(kind) AS kinds, array_agg(key) AS keys
            FROM employee_keys WHERE kind = ANY($1)
            GROUP BY employee_id
         ) k ON k.employee_id = e.id
         ORDER BY e.id",
    )
    .bind(&FOLLOWED_KINDS[..])
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            let kinds: Option<Vec<String>> = r.try_get(4).map_err(corrupt("employee keys"))?;
            let keys: Option<Vec<String>> = r.try_get(5).map_err(corrupt("employee keys"))?;
            Ok((
                r.try_get::<Uuid, _>(0).map_err(corrupt("employee id"))?,
                Known {
                    version: u64_of(
                        r.try_get::<i64, _>(1)
                            .map_err(corrupt("employee version"))?,
                    )?,
                    active: r.try_get(2).map_err(corrupt("employee active"))?,
                    body: Record::from(r.try_get::<Vec<u8>, _>(3).map_err(corrupt("employee"))?),
                    keys: followed_keys(kinds.unwrap_or_default(), keys.unwrap_or_default()),
                },
            ))
        })
        .collect()
}
