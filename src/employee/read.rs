//! The reads every surface uses (SCIM, admin, metrics, sync): typed results, no
//! store formats. Keys are folded here, the one place that knows how the
//! unique indexes are normalised.

use std::collections::HashMap;

use uuid::Uuid;

use super::{Employee, EmployeeId, Error, ListQuery, Page, Roster, decode, validate};
use crate::store::{AuditEntry, Counts, IndexKind};

impl Roster {
    pub fn get(&self, id: EmployeeId) -> Result<Employee, Error> {
        // On a shared store, from memory once it followed (see `follow`).
        self.follow()?;
        found(id, self.store.get_followed(id.0)?)
    }
    /// [`Roster::get`] read from the store itself, never from memory above it
    /// (what a write retries with after a version conflict).
    pub(super) fn get_stored(&self, id: EmployeeId) -> Result<Employee, Error> {
        found(id, self.store.get(id.0)?)
    }
    /// Finds a profile by id, email or username (the last two case-insensitively).
    pub fn find(&self, key: &str) -> Result<Employee, Error> {
        if let Ok(id) = key.parse::<EmployeeId>() {
            return self.get(id);
        }
        let folded = validate::fold(key.trim());
        for index in [IndexKind::Email, IndexKind::Username] {
            if let Some(id) = self.store.lookup(&index, &folded)? {
                return self.get(EmployeeId(id));
            }
        }
        Err(Error::NotFound(format!(
            "no employee with id, email or username `{}`",
            key.trim()
        )))
    }
    /// Audit entries, newest first.
    pub fn audit(
        &self,
        employee: Option<EmployeeId>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, Error> {
        Ok(self
            .store
            .audit_entries(employee.map(|e| e.0), before, limit.clamp(1, 1000))?)
    }
    /// One page of a list query (see [`super::list`]): filtered and sorted on the
    /// projection, then only the page's profiles are read.
    pub fn list(&self, q: &ListQuery) -> Result<Page, Error> {
        // A pass over the projection: milliseconds at 100,000 profiles.
        crate::blocking::in_place(|| {
            self.follow()?;
            super::list::run(&self.projection, &self.store, q)
        })
    }
    /// Every profile that matches a list query's status and filters (cursor
    /// and limit ignored), in the query's sort order: the ids only, from the
    /// projection ("select all that match" for bulk actions).
    pub fn list_all_ids(&self, q: &ListQuery) -> Result<Vec<EmployeeId>, Error> {
        let mut q = q.clone();
        q.cursor = None;
        let sel = crate::blocking::in_place(|| {
            self.follow()?;
            super::list::select(&self.projection, &q, usize::MAX)
        })?;
        Ok(sel.ids.into_iter().map(EmployeeId).collect())
    }

    /// The password policy in force (shown on the pages where one is chosen).
    pub fn password_policy(&self) -> &super::PasswordPolicy {
        &self.policy
    }

    /// How many profiles there are, active and not (kept by the store: no scan).
    pub fn counts(&self) -> Counts {
        self.follow_or_log();
        self.store.counts()
    }

    /// The profiles at positions `offset..offset + n` in id order, without
    /// reading the ones before them.
    pub fn page(&self, offset: usize, n: usize) -> Result<Vec<Employee>, Error> {
        self.follow()?;
        self.store
            .page(offset, n)?
            .into_iter()
            .map(|(_, bytes)| decode(&bytes))
            .collect()
    }

    /// Every profile in id order, read lazily.
    pub fn scan(&self) -> impl Iterator<Item = Result<Employee, Error>> + '_ {
        self.store
            .scan()
            .map(|r| r.map_err(Error::from).and_then(|(_, b)| decode(&b)))
    }

    /// The profiles whose projection `pred` accepts, in id order, without
    /// reading any profile: how many there are, and the ids of those at
    /// positions `skip..skip + count`.
    pub fn select_projected(
        &self,
        pred: impl Fn(&super::projection::Projected<'_>) -> bool,
        skip: usize,
        count: usize,
    ) -> (usize, Vec<EmployeeId>) {
        self.follow_or_log();
        let snap = self.projection().snapshot();
        let mut total = 0usize;
        let mut ids = Vec::with_capacity(count.min(1000));
        for p in snap.iter() {
            if !pred(&p) {
                continue;
            }
            if total >= skip && ids.len() < count {
                ids.push(EmployeeId(p.id()));
            }
            total += 1;
        }
        (total, ids)
    }

    /// [`Roster::select_projected`] in the order of `key` (ties by id;
    /// `descending` reverses both), without reading any profile.
    pub fn select_projected_sorted<K: Ord>(
        &self,
        pred: impl Fn(&super::projection::Projected<'_>) -> bool,
        key: impl for<'a> Fn(&super::projection::Projected<'a>) -> K,
        descending: bool,
        skip: usize,
        count: usize,
    ) -> (usize, Vec<EmployeeId>) {
        self.follow_or_log();
        let snap = self.projection().snapshot();
        let mut hits: Vec<(K, Uuid)> = snap
            .iter()
            .filter(|p| pred(p))
            .map(|p| (key(&p), p.id()))
            .collect();
        let total = hits.len();
        let want = skip.saturating_add(count).min(total);
        if want > 0 {
            let order = |a: &(K, Uuid), b: &(K, Uuid)| {
                if descending { b.cmp(a) } else { a.cmp(b) }
            };
            // Only the first `skip + count` need to be in order.
            if want < total {
                hits.select_nth_unstable_by(want - 1, order);
                hits.truncate(want);
            }
            hits.sort_unstable_by(order);
        }
        let ids = hits
            .into_iter()
            .skip(skip)
            .take(count)
            .map(|(_, id)| EmployeeId(id))
            .collect();
        (total, ids)
    }

    /// The profiles after `after` (exclusive) in id order, read lazily.
    pub fn scan_after(
        &self,
        after: Option<EmployeeId>,
    ) -> impl Iterator<Item = Result<Employee, Error>> + '_ {
        self.store
            .scan_after(after.map(|a| a.0))
            .map(|r| r.map_err(Error::from).and_then(|(_, b)| decode(&b)))
    }

    /// Changes whenever any profile is created, changed or removed (equal values
    /// mean nothing changed in between; lets readers cache list positions).
    pub fn generation(&self) -> Result<u64, Error> {
        Ok(self.store.generation()?)
    }

    /// Whether the store answers reads.
    pub fn store_ready(&self) -> bool {
        self.store.is_ready()
    }

    /// Whether a write gets through and is made durable within `timeout`
    /// (`/readyz` and the systemd watchdog ask).
    pub async fn writable(&self, timeout: std::time::Duration) -> bool {
        self.store.writable(timeout).await
    }

    /// The profile holding this username (any case), if any.
    pub fn id_by_username(&self, username: &str) -> Result<Option<EmployeeId>, Error> {
        self.lookup(IndexKind::Username, validate::fold(username.trim()))
    }

    /// The profile holding this email (any case), if any.
    pub fn id_by_email(&self, email: &str) -> Result<Option<EmployeeId>, Error> {
        self.lookup(IndexKind::Email, validate::fold(email.trim()))
    }

    /// The profile holding this SCIM externalId (exact), if any.
    pub fn id_by_external_id(&self, external_id: &str) -> Result<Option<EmployeeId>, Error> {
        self.lookup(IndexKind::ExternalId, external_id.trim().to_string())
    }

    fn lookup(&self, index: IndexKind, key: String) -> Result<Option<EmployeeId>, Error> {
        self.follow()?;
        Ok(self.store.lookup_followed(&index, &key)?.map(EmployeeId))
    }

    /// The holders of every position (position name → (id, display name)), in
    /// one pass over the store.
    pub fn members_by_position(&self) -> Result<HashMap<String, Vec<(EmployeeId, String)>>, Error> {
        crate::blocking::blocking(|| {
            let mut out: HashMap<String, Vec<(EmployeeId, String)>> = HashMap::new();
            for e in self.scan() {
                let e = e?;
                for p in &e.positions {
                    out.entry(p.clone())
                        .or_default()
                        .push((e.id, e.display_name.clone()));
                }
            }
            Ok(out)
        })
    }
}

/// A profile id from its text form (for SCIM `id eq "..."`).
pub fn parse_id(text: &str) -> Option<EmployeeId> {
    text.trim().parse::<Uuid>().ok().map(EmployeeId)
}

/// The profile a read by id found, or why not.
fn found(id: EmployeeId, bytes: Option<crate::store::Record>) -> Result<Employee, Error> {
    match bytes {
        Some(bytes) => decode(&bytes),
        None => Err(Error::NotFound(format!("no employee with id {id}"))),
    }
}
