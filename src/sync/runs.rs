//! Run history: the newest `keep_runs` runs of every source, with their outcome,
//! counts, errors and plan, kept in the store (`sync_runs`), plus per-source state
//! (`sync_state`: the incremental high-water mark and content-sync cookie) and
//! the mapped entries of held runs (`sync_held`), kept until the run is approved
//! or superseded. A run's plan (one item per changed profile: 100,000 on a first
//! import) is kept apart in `sync_plans`, so that listing runs never reads plans.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::RunKind;
use super::map::MappedEntry;
use super::plan::{Counts, PlanItem};
use crate::store::{FieldChange, Store, StoreError};

/// A run's id: increasing.
pub type RunId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Running,
    Applied,
    /// Exceeded the deactivation threshold; waits for `rosterctl sync approve`.
    Held,
    /// Held, then approved and applied.
    Approved,
    /// Held, then replaced by a newer run before anyone approved it.
    Superseded,
    Failed,
    DryRun,
    /// Ended by a shutdown before it finished (what was applied stays, and the
    /// next run completes it), or found still `running` when rosterd started
    /// (it was killed during the run).
    Interrupted,
}

impl Outcome {
    /// The name stored and returned (`applied`, `dry_run`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Applied => "applied",
            Outcome::Held => "held",
            Outcome::Approved => "approved",
            Outcome::Superseded => "superseded",
            Outcome::Failed => "failed",
            Outcome::DryRun => "dry_run",
            Outcome::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What started a run; stored and returned as `schedule`, `manual` or `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The source's cron schedule (full or incremental).
    Schedule,
    /// An admin: `rosterctl sync run`, the admin API or the console's Sync page.
    Manual,
    /// The source's `run_at_start`, once when the daemon starts.
    Start,
}

impl Trigger {
    pub const fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Start => "start",
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry's problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryError {
    pub key: String,
    pub dn: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: RunId,
    pub source: String,
    pub kind: RunKind,
    pub trigger: Trigger,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: Outcome,
    /// Why it failed or was held.
    pub message: Option<String>,
    pub entries_seen: usize,
    /// How the source was asked for its entries (LDAP sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<FetchMode>,
    pub counts: Counts,
    /// The first [`MAX_RUN_ERRORS`] per-entry errors and warnings.
    pub errors: Vec<EntryError>,
    /// How many more there were: counted, not kept (a mapping that fails for
    /// every one of 100,000 entries, run after run, would fill the history).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub errors_omitted: usize,
    /// Every item that is not `unchanged`.
    pub plan: Vec<PlanItem>,
    /// `plan` is already in the store (written by [`RunStore::put_plan`] while
    /// the run applied it): [`RunStore::put`] does not write it again.
    #[serde(skip)]
    pub plan_stored: bool,
    /// Milliseconds spent fetching, mapping and planning, applying.
    #[serde(default)]
    pub timings_ms: Timings,
}

/// The most per-entry errors a run record keeps ([`RunRecord::errors_omitted`]
/// counts the rest).
pub const MAX_RUN_ERRORS: usize = 1000;

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// How a run asked an LDAP source for its people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchMode {
    /// Every entry (full runs, and incremental runs with nothing to start from).
    All,
    /// RFC 4533 content sync (refreshOnly) from the stored cookie.
    ContentSync,
    /// Entries whose `attributes.modified` is at or past the high-water mark.
    ModifiedSince,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub fetch: u64,
    pub plan: u64,
    pub apply: u64,
}

/// Per-source state. Both starting points of incremental runs are written only
/// after a run's plan has been applied.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    /// Highest modification timestamp applied (incremental runs start there).
    pub high_water_mark: Option<String>,
    /// The RFC 4533 content-sync cookie (base64) the directory gave for the
    /// state applied last; incremental runs ask for the changes since it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_cookie: Option<String>,
    pub last_success: Option<DateTime<Utc>>,
}

impl SourceState {
    /// The stored cookie's bytes (a cookie that is not base64 counts as none).
    pub fn cookie(&self) -> Option<Vec<u8>> {
        use base64::Engine;
        let c = self.sync_cookie.as_ref()?;
        base64::engine::general_purpose::STANDARD.decode(c).ok()
    }

    pub fn set_cookie(&mut self, cookie: Option<&[u8]>) {
        use base64::Engine;
        self.sync_cookie = cookie.map(|c| base64::engine::general_purpose::STANDARD.encode(c));
    }
}

/// One page of a run's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanPage {
    pub items: Vec<PlanItem>,
    /// Items in the whole plan.
    pub total: usize,
}

/// Plan items per stored page.
pub const PLAN_PAGE_ITEMS: usize = 500;

/// A paged plan's own row.
#[derive(Debug, Serialize, Deserialize)]
struct PlanHead {
    total: usize,
    page_items: usize,
}

enum PlanRow {
    /// Stored by an older version: the whole plan, one JSON array.
    Whole(Vec<u8>),
    Paged(PlanHead),
}

/// Decodes the items of a page of a plan stored whole and counts the rest.
struct PageSeed {
    offset: usize,
    limit: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for PageSeed {
    type Value = PlanPage;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<PlanPage, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for PageSeed {
    type Value = PlanPage;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of plan items")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<PlanPage, A::Error> {
        let mut items = Vec::with_capacity(self.limit.min(4096));
        let mut total = 0;
        loop {
            let more = if total >= self.offset && items.len() < self.limit {
                seq.next_element::<PlanItem>()?.map(|i| items.push(i))
            } else {
                seq.next_element::<serde::de::IgnoredAny>()?.map(|_| ())
            };
            if more.is_none() {
                break;
            }
            total += 1;
        }
        Ok(PlanPage { items, total })
    }
}

/// Typed access to the run history's rows in the store.
#[derive(Clone)]
pub struct RunStore {
    store: Store,
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(format!("sync record: {e}")))
}

impl RunStore {
    pub fn open(store: &Store) -> Result<Self, StoreError> {
        Ok(Self {
            store: store.clone(),
        })
    }

    pub fn new_id(&self) -> Result<RunId, StoreError> {
        // generate_id starts at 0; run ids start at 1 for people.
        Ok(self.store.next_id()? + 1)
    }

    /// Writes the run; its plan, when it has one, goes to `sync_plans` page by
    /// page (an empty plan leaves a stored one alone).
    pub fn put(&self, r: &mut RunRecord) -> Result<(), StoreError> {
        if r.errors.len() > MAX_RUN_ERRORS {
            r.errors_omitted += r.errors.len() - MAX_RUN_ERRORS;
            r.errors.truncate(MAX_RUN_ERRORS);
        }
        if !r.plan.is_empty() && !r.plan_stored {
            self.put_plan(r.id, &r.plan)?;
        }
        let plan = std::mem::take(&mut r.plan);
        let header = enc(&*r);
        r.plan = plan;
        self.store.run_put(r.id, &header?, None)
    }

    /// Writes the plan of run `id` in pages of [`PLAN_PAGE_ITEMS`], then the
    /// plan's row (how many items, in pages of how many), so that a reader who
    /// finds the row finds every page. Only one page is encoded at a time (a
    /// first import's plan holds every new profile: the engine writes it on a
    /// thread of its own while it applies).
    pub fn put_plan(&self, id: RunId, plan: &[PlanItem]) -> Result<(), StoreError> {
        for (page, items) in plan.chunks(PLAN_PAGE_ITEMS).enumerate() {
            let page = u32::try_from(page)
                .map_err(|_| StoreError::Corrupt("a plan of more than 2^32 pages".into()))?;
            self.store.run_put_plan_page(id, page, &enc(&items)?)?;
        }
        let head = PlanHead {
            total: plan.len(),
            page_items: PLAN_PAGE_ITEMS,
        };
        self.store.run_put_plan(id, &enc(&head)?)
    }

    /// [`RunStore::put_plan`] for a plan whose items' field changes are kept
    /// apart: `changes_of(i, item)` gives item `i`'s (taken out of the items
    /// beforehand, or worked out again, as a create's are). Each page is put
    /// together, encoded and written, and its changes dropped, so that a first
    /// import's changes (every field of every new profile) are never all held
    /// at once. The changes of the first `keep` items come back.
    pub fn put_plan_taking(
        &self,
        id: RunId,
        plan: &[PlanItem],
        mut changes_of: impl FnMut(usize, &PlanItem) -> Vec<FieldChange>,
        keep: usize,
    ) -> Result<Vec<Vec<FieldChange>>, StoreError> {
        let mut kept = Vec::new();
        for (page, items) in plan.chunks(PLAN_PAGE_ITEMS).enumerate() {
            let page_no = u32::try_from(page)
                .map_err(|_| StoreError::Corrupt("a plan of more than 2^32 pages".into()))?;
            let first = page * PLAN_PAGE_ITEMS;
            let mut whole: Vec<PlanItem> = items
                .iter()
                .enumerate()
                .map(|(n, i)| PlanItem {
                    changes: changes_of(first + n, i),
                    ..i.clone()
                })
                .collect();
            self.store.run_put_plan_page(id, page_no, &enc(&whole)?)?;
            for (n, item) in whole.iter_mut().enumerate() {
                if first + n < keep {
                    kept.push(std::mem::take(&mut item.changes));
                }
            }
        }
        let head = PlanHead {
            total: plan.len(),
            page_items: PLAN_PAGE_ITEMS,
        };
        self.store.run_put_plan(id, &enc(&head)?)?;
        Ok(kept)
    }

    /// The plan's row: a [`PlanHead`], or (stored by an older version) the
    /// whole plan as one array.
    fn plan_row(&self, id: RunId) -> Result<Option<PlanRow>, StoreError> {
        let Some(bytes) = self.store.run_plan(id)? else {
            return Ok(None);
        };
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Ok(Some(PlanRow::Whole(bytes.to_vec())));
        }
        Ok(Some(PlanRow::Paged(dec(&bytes)?)))
    }

    /// The items of page `page` of a paged plan.
    fn plan_items(&self, id: RunId, page: usize) -> Result<Vec<PlanItem>, StoreError> {
        let page = u32::try_from(page).map_err(|_| StoreError::Corrupt("plan page".into()))?;
        match self.store.run_plan_page(id, page)? {
            Some(b) => dec(&b),
            None => Err(StoreError::Corrupt(format!(
                "page {page} of run {id}'s plan is missing"
            ))),
        }
    }

    /// A run without its plan.
    pub fn get_header(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        self.store.run_header(id)?.map(|b| dec(&b)).transpose()
    }

    /// A run with its plan.
    pub fn get(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        let Some(mut r) = self.get_header(id)? else {
            return Ok(None);
        };
        // Runs recorded before plans were kept apart carry theirs inline.
        match self.plan_row(id)? {
            None => {}
            Some(PlanRow::Whole(b)) => r.plan = dec(&b)?,
            Some(PlanRow::Paged(head)) => {
                let mut plan = Vec::with_capacity(head.total);
                for page in 0..head.total.div_ceil(head.page_items.max(1)) {
                    plan.extend(self.plan_items(id, page)?);
                }
                plan.truncate(head.total);
                r.plan = plan;
            }
        }
        Ok(Some(r))
    }

    /// Items `offset..offset + limit` of run `id`'s plan, and how many items
    /// the plan has; `None` when there is no such run. Only the stored pages
    /// that hold those items are read (a plan stored whole by an older version
    /// is passed over once, decoding only the page's items).
    pub fn plan_page(
        &self,
        id: RunId,
        offset: usize,
        limit: usize,
    ) -> Result<Option<PlanPage>, StoreError> {
        use serde::de::DeserializeSeed;
        let head = match self.plan_row(id)? {
            Some(PlanRow::Paged(head)) => head,
            Some(PlanRow::Whole(bytes)) => {
                let mut de = serde_json::Deserializer::from_slice(&bytes);
                let page = PageSeed { offset, limit }
                    .deserialize(&mut de)
                    .and_then(|p| de.end().map(|()| p))
                    .map_err(|e| StoreError::Corrupt(format!("sync plan: {e}")))?;
                return Ok(Some(page));
            }
            // No plan of its own: an empty one, or one kept inline by an
            // older version.
            None => {
                return Ok(self.get_header(id)?.map(|r| {
                    let total = r.plan.len();
                    let items = r.plan.into_iter().skip(offset).take(limit).collect();
                    PlanPage { items, total }
                }));
            }
        };
        let end = offset.saturating_add(limit).min(head.total);
        let per = head.page_items.max(1);
        let mut items = Vec::with_capacity(end.saturating_sub(offset));
        let mut at = offset;
        while at < end {
            let page = at / per;
            let first = page * per;
            let got = self.plan_items(id, page)?;
            let from = at - first;
            let upto = (end - first).min(got.len());
            if from >= upto {
                break;
            }
            items.extend(got.into_iter().skip(from).take(upto - from));
            at = first + upto;
        }
        Ok(Some(PlanPage {
            items,
            total: head.total,
        }))
    }

    /// Deletes the runs of `source` older than its newest `keep`, with their
    /// plans and held entries, each run in one transaction. A run still going
    /// or held for approval is never deleted. Returns how many were deleted.
    pub fn prune(&self, source: &str, keep: usize) -> Result<usize, StoreError> {
        /// The part of a run header pruning reads.
        #[derive(Deserialize)]
        struct Head {
            source: String,
            outcome: Outcome,
        }
        let mut seen = 0;
        let mut doomed = Vec::new();
        for r in self.store.run_headers() {
            let (id, v) = r?;
            let head: Head = dec(&v)?;
            if head.source != source {
                continue;
            }
            seen += 1;
            if seen > keep && !matches!(head.outcome, Outcome::Running | Outcome::Held) {
                doomed.push(id);
            }
        }
        for id in &doomed {
            self.store.run_remove(*id)?;
        }
        Ok(doomed.len())
    }

    /// Newest first, optionally for one source; without their plans.
    pub fn list(&self, source: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let mut out = Vec::new();
        for r in self.store.run_headers() {
            let (_, v) = r?;
            let rec: RunRecord = dec(&v)?;
            if source.is_none_or(|s| s == rec.source) {
                out.push(rec);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub fn state(&self, source: &str) -> Result<SourceState, StoreError> {
        Ok(self
            .store
            .source_state(source)?
            .map(|b| dec(&b))
            .transpose()?
            .unwrap_or_default())
    }

    pub fn put_state(&self, source: &str, s: &SourceState) -> Result<(), StoreError> {
        self.store.put_source_state(source, &enc(s)?)
    }

    pub fn put_held(&self, id: RunId, entries: &[MappedEntry]) -> Result<(), StoreError> {
        self.store.held_put(id, &enc(&entries)?)
    }

    pub fn take_held(&self, id: RunId) -> Result<Option<Vec<MappedEntry>>, StoreError> {
        self.store.held_take(id)?.map(|b| dec(&b)).transpose()
    }

    /// The runs held for approval (the deactivation threshold stopped them),
    /// newest first. Reads only the held runs' headers.
    pub fn held(&self) -> Result<Vec<RunRecord>, StoreError> {
        let mut out = Vec::new();
        for id in self.store.held_ids()? {
            if let Some(rec) = self.get_header(id)?
                && rec.outcome == Outcome::Held
            {
                out.push(rec);
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.id));
        Ok(out)
    }

    /// The first `cap` items of run `id`'s plan that `keep` accepts, and how
    /// many it accepts in all (one pass over the stored plan); `None` when
    /// there is no such run.
    pub fn plan_matching(
        &self,
        id: RunId,
        cap: usize,
        keep: impl Fn(&PlanItem) -> bool,
    ) -> Result<Option<(Vec<PlanItem>, usize)>, StoreError> {
        let mut items = Vec::new();
        let mut total = 0;
        let mut take = |batch: Vec<PlanItem>| {
            for i in batch.into_iter().filter(|i| keep(i)) {
                total += 1;
                if items.len() < cap {
                    items.push(i);
                }
            }
        };
        match self.plan_row(id)? {
            // Page by page: only one stored page is decoded at a time.
            Some(PlanRow::Paged(head)) => {
                for page in 0..head.total.div_ceil(head.page_items.max(1)) {
                    take(self.plan_items(id, page)?);
                }
            }
            Some(PlanRow::Whole(bytes)) => take(dec(&bytes)?),
            // No plan of its own: an empty one, or one kept inline by an older version.
            None => match self.get_header(id)? {
                Some(r) => take(r.plan),
                None => return Ok(None),
            },
        }
        Ok(Some((items, total)))
    }

    /// Marks older held runs of a source as superseded and drops their entries.
    pub fn supersede_held(&self, source: &str) -> Result<(), StoreError> {
        for id in self.store.held_ids()? {
            if let Some(mut rec) = self.get_header(id)?
                && rec.source == source
                && rec.outcome == Outcome::Held
            {
                rec.outcome = Outcome::Superseded;
                self.put(&mut rec)?;
                self.store.held_take(id)?;
            }
        }
        Ok(())
    }

    pub async fn flush(&self) -> Result<(), StoreError> {
        self.store.flush().await
    }

    /// Runs still `running` (rosterd stopped or was killed during them) become
    /// `interrupted`, finished at `now`. Called at start, before any run begins.
    /// Returns their ids.
    pub fn mark_interrupted(&self, now: DateTime<Utc>) -> Result<Vec<RunId>, StoreError> {
        self.mark_stopped(
            now,
            |_, _| true,
            &format!(
                "found still running when rosterd started at {}: it stopped during the run; \
                 what was applied stays and the next run completes it",
                now.to_rfc3339()
            ),
        )
    }

    /// The runs recorded `running` that `which(source, id)` picks, recorded
    /// `interrupted` with `why` (their node stopped: with several nodes, a
    /// run's node is known gone once its source's lease was free).
    pub fn mark_stopped(
        &self,
        now: DateTime<Utc>,
        which: impl Fn(&str, RunId) -> bool,
        why: &str,
    ) -> Result<Vec<RunId>, StoreError> {
        #[derive(Deserialize)]
        struct Head {
            outcome: Outcome,
            source: String,
        }
        let mut found = Vec::new();
        for r in self.store.run_headers() {
            let (id, v) = r?;
            let head = dec::<Head>(&v)?;
            if head.outcome == Outcome::Running && which(&head.source, id) {
                found.push(id);
            }
        }
        for id in &found {
            if let Some(mut rec) = self.get_header(*id)? {
                rec.outcome = Outcome::Interrupted;
                rec.finished_at = Some(now);
                rec.message = Some(format!(
                    "{}{why}",
                    rec.message
                        .as_deref()
                        .map(|m| format!("{m}; "))
                        .unwrap_or_default(),
                ));
                // The plan stays as it is.
                rec.plan_stored = true;
                self.put(&mut rec)?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::plan::{Action, PlanItem};

    fn item() -> PlanItem {
        PlanItem {
            action: Action::Create,
            key: "k".into(),
            dn: "uid=a".into(),
            employee_id: None,
            label: "a@example.com".into(),
            changes: vec![],
            reason: "new in the source".into(),
            error: false,
        }
    }

    /// A plan written with its changes given apart reads back whole, changes
    /// included, and only the first `keep` items' changes come back.
    #[test]
    fn a_plan_written_with_its_changes_apart_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let runs = RunStore::open(&store).unwrap();
        let n = PLAN_PAGE_ITEMS + 7;
        let mut rec = record(&runs, "corp", Outcome::Applied);
        runs.put(&mut rec).unwrap();
        let change = |i: usize| FieldChange {
            field: "email".into(),
            before: serde_json::Value::Null,
            after: serde_json::json!(format!("p{i}@example.com")),
        };
        let whole: Vec<PlanItem> = (0..n)
            .map(|i| PlanItem {
                key: format!("k{i}"),
                changes: vec![change(i)],
                ..item()
            })
            .collect();
        let mut bare = whole.clone();
        let changes: Vec<_> = bare
            .iter_mut()
            .map(|i| std::mem::take(&mut i.changes))
            .collect();
        let mut changes = changes.into_iter();
        let kept = runs
            .put_plan_taking(rec.id, &bare, |_, _| changes.next().unwrap_or_default(), 3)
            .unwrap();
        assert_eq!(kept, (0..3).map(|i| vec![change(i)]).collect::<Vec<_>>());
        let page = runs.plan_page(rec.id, 0, n).unwrap().unwrap();
        assert_eq!(page.total, n);
        assert_eq!(page.items, whole);
    }

    /// A run of `source` with a fresh id and a one-item plan, not yet stored.
    fn record(runs: &RunStore, source: &str, outcome: Outcome) -> RunRecord {
        RunRecord {
            id: runs.new_id().unwrap(),
            source: source.into(),
            kind: RunKind::Full,
            trigger: Trigger::Manual,
            started_at: Utc::now(),
            finished_at: None,
            outcome,
            message: None,
            entries_seen: 1,
            fetch: None,
            counts: Default::default(),
            errors: vec![],
            errors_omitted: 0,
            plan: vec![item()],
            plan_stored: false,
            timings_ms: Default::default(),
        }
    }

    /// A stored plan reads page by page, completely and in order.
    #[test]
    fn a_plan_reads_page_by_page() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let runs = RunStore::open(&store).unwrap();
        let mut rec = record(&runs, "corp", Outcome::Applied);
        rec.plan = (0..25)
            .map(|i| PlanItem {
                key: format!("k{i}"),
                ..item()
            })
            .collect();
        runs.put(&mut rec).unwrap();
        let mut keys = vec![];
        let mut offset = 0;
        loop {
            let page = runs.plan_page(rec.id, offset, 10).unwrap().unwrap();
            assert_eq!(page.total, 25);
            if page.items.is_empty() {
                break;
            }
            offset += page.items.len();
            keys.extend(page.items.into_iter().map(|i| i.key));
        }
        let want: Vec<String> = (0..25).map(|i| format!("k{i}")).collect();
        assert_eq!(keys, want);
        assert!(runs.plan_page(rec.id + 100, 0, 10).unwrap().is_none());
        // A run without a plan has an empty one.
        let mut bare = RunRecord {
            plan: vec![],
            ..record(&runs, "corp", Outcome::Failed)
        };
        runs.put(&mut bare).unwrap();
        let page = runs.plan_page(bare.id, 0, 10).unwrap().unwrap();
        assert_eq!((page.items.len(), page.total), (0, 0));
    }

    /// Held runs are found without listing the history; their deactivations
    /// are counted and the first few returned.
    #[test]
    fn held_runs_and_their_deactivations() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let runs = RunStore::open(&store).unwrap();
        let mut applied = record(&runs, "corp", Outcome::Applied);
        runs.put(&mut applied).unwrap();
        let mut held = record(&runs, "corp", Outcome::Held);
        held.plan = (0..30)
            .map(|i| PlanItem {
                action: if i % 3 == 0 {
                    Action::Update
                } else {
                    Action::Deactivate
                },
                key: format!("k{i}"),
                ..item()
            })
            .collect();
        runs.put(&mut held).unwrap();
        runs.put_held(held.id, &[]).unwrap();
        let found = runs.held().unwrap();
        assert_eq!(found.iter().map(|r| r.id).collect::<Vec<_>>(), [held.id]);
        let (first, total) = runs
            .plan_matching(held.id, 4, |i| i.action == Action::Deactivate)
            .unwrap()
            .unwrap();
        assert_eq!(total, 20);
        let keys: Vec<&str> = first.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["k1", "k2", "k4", "k5"]);
        assert!(
            runs.plan_matching(held.id + 100, 4, |_| true)
                .unwrap()
                .is_none()
        );
        // Superseded: no longer held.
        runs.supersede_held("corp").unwrap();
        assert!(runs.held().unwrap().is_empty());
    }

    /// A plan of several stored pages reads back whole and in pages that
    /// cross the stored ones; a plan stored whole (older versions) still
    /// reads; deleting the run deletes every page.
    #[test]
    fn a_plan_is_stored_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let runs = RunStore::open(&store).unwrap();
        let n = PLAN_PAGE_ITEMS * 2 + 34;
        let mut rec = record(&runs, "corp", Outcome::Applied);
        rec.plan = (0..n)
            .map(|i| PlanItem {
                key: format!("k{i}"),
                ..item()
            })
            .collect();
        runs.put(&mut rec).unwrap();
        let want: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
        let whole = runs.get(rec.id).unwrap().unwrap().plan;
        assert_eq!(
            whole.iter().map(|i| i.key.clone()).collect::<Vec<_>>(),
            want
        );
        for (offset, limit) in [
            (0, 300),
            (450, 100),
            (499, 2),
            (PLAN_PAGE_ITEMS * 2, 1000),
            (n - 1, 5),
        ] {
            let page = runs.plan_page(rec.id, offset, limit).unwrap().unwrap();
            assert_eq!(page.total, n);
            let keys: Vec<String> = page.items.into_iter().map(|i| i.key).collect();
            assert_eq!(
                keys,
                want[offset..(offset + limit).min(n)],
                "at {offset}+{limit}"
            );
        }
        assert!(
            runs.plan_page(rec.id, n + 10, 10)
                .unwrap()
                .unwrap()
                .items
                .is_empty()
        );
        // An older version's plan: one array in the plan's row.
        let mut old = record(&runs, "corp", Outcome::Applied);
        let old_plan = std::mem::take(&mut old.plan);
        runs.put(&mut old).unwrap();
        store
            .run_put_plan(old.id, &enc(&old_plan).unwrap())
            .unwrap();
        assert_eq!(
            runs.plan_page(old.id, 0, 10).unwrap().unwrap().items,
            old_plan
        );
        assert_eq!(runs.get(old.id).unwrap().unwrap().plan, old_plan);
        store.run_remove(rec.id).unwrap();
        assert!(runs.plan_page(rec.id, 0, 10).unwrap().is_none());
        for page in 0..3 {
            assert!(
                store.run_plan_page(rec.id, page).unwrap().is_none(),
                "page {page} deleted"
            );
        }
    }

    #[test]
    fn plans_are_kept_apart_and_survive_status_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let runs = RunStore::open(&store).unwrap();
        let mut rec = record(&runs, "corp", Outcome::Held);
        runs.put(&mut rec).unwrap();
        assert_eq!(rec.plan.len(), 1, "the caller keeps its plan");
        runs.put_held(rec.id, &[]).unwrap();
        let listed = runs.list(Some("corp"), 10).unwrap();
        assert!(listed[0].plan.is_empty(), "listing reads no plan");
        assert_eq!(runs.get(rec.id).unwrap().unwrap().plan, vec![item()]);
        // Superseding rewrites the status, not the plan.
        runs.supersede_held("corp").unwrap();
        let r = runs.get(rec.id).unwrap().unwrap();
        assert_eq!(r.outcome, Outcome::Superseded);
        assert_eq!(r.plan, vec![item()]);
    }

    /// The history keeps each source's newest runs, with their plans; an older
    /// run held for approval stays until approved or superseded.
    #[test]
    fn pruning_keeps_the_newest_runs_of_the_source_and_held_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let runs = RunStore::open(&store).unwrap();
        let put = |source: &str, outcome: Outcome| {
            let mut rec = record(&runs, source, outcome);
            runs.put(&mut rec).unwrap();
            if outcome == Outcome::Held {
                runs.put_held(rec.id, &[]).unwrap();
            }
            rec.id
        };
        let held = put("corp", Outcome::Held);
        let old_failed = put("corp", Outcome::Failed);
        let mut corp = vec![];
        for i in 0..6 {
            corp.push(put("corp", Outcome::Applied));
            if i % 2 == 0 {
                put("hr", Outcome::Applied);
            }
        }
        assert_eq!(
            runs.prune("corp", 4).unwrap(),
            3,
            "two applied and the failed one"
        );
        let ids = |source| -> Vec<RunId> {
            runs.list(Some(source), 100)
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect()
        };
        let mut kept: Vec<RunId> = corp[2..].iter().rev().copied().collect();
        kept.push(held);
        assert_eq!(ids("corp"), kept);
        assert_eq!(ids("hr").len(), 3, "another source's runs are left alone");
        assert!(runs.get(old_failed).unwrap().is_none());
        assert!(
            runs.store.run_plan(corp[0]).unwrap().is_none(),
            "plan deleted"
        );
        assert_eq!(runs.get(corp[2]).unwrap().unwrap().plan, vec![item()]);
        assert!(runs.store.held_ids().unwrap().contains(&held));
        // Once superseded, the held run goes too.
        runs.supersede_held("corp").unwrap();
        assert_eq!(runs.prune("corp", 4).unwrap(), 1);
        assert!(runs.get(held).unwrap().is_none());
        assert_eq!(runs.prune("corp", 4).unwrap(), 0, "nothing more to delete");
    }

    /// A run with more per-entry errors than a record keeps keeps the first
    /// ones and counts the rest, also across writes of the same run.
    #[test]
    fn a_run_keeps_its_first_errors_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let runs = RunStore::open(&store).unwrap();
        let error = |i: usize| EntryError {
            key: format!("k{i}"),
            dn: format!("uid=p{i}"),
            message: "invalid email".into(),
        };
        let mut rec = RunRecord {
            errors: (0..MAX_RUN_ERRORS + 250).map(error).collect(),
            ..record(&runs, "corp", Outcome::Applied)
        };
        runs.put(&mut rec).unwrap();
        assert_eq!(
            (rec.errors.len(), rec.errors_omitted),
            (MAX_RUN_ERRORS, 250)
        );
        let stored = runs.get(rec.id).unwrap().unwrap();
        assert_eq!(stored.errors.len(), MAX_RUN_ERRORS);
        assert_eq!(stored.errors[0], error(0), "the first ones are kept");
        assert_eq!(stored.errors_omitted, 250);
        // More errors later in the same run (an approved plan's apply).
        let mut again = stored;
        again.errors.extend((0..10).map(error));
        runs.put(&mut again).unwrap();
        assert_eq!(runs.get(rec.id).unwrap().unwrap().errors_omitted, 260);
        // A run with few errors says nothing of omitted ones.
        let mut small = RunRecord {
            errors: vec![error(1)],
            ..record(&runs, "corp", Outcome::Applied)
        };
        runs.put(&mut small).unwrap();
        let raw = runs.store.run_header(small.id).unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("errors_omitted"));
    }
}
