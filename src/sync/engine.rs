//! Running a sync: one run per source at a time; fetch → map → plan → (hold |
//! apply) → record. Applies through the domain operations in batches, audited under
//! the source id.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use tracing::instrument;

use super::RunKind;
use super::config::{Source, SourceKind};
use super::lease::HeldLease;
use super::map::{self, MappedEntry};
use super::plan::{self, Action, PlanItem, PlanSource};
use super::progress::{Phase, Progress, ProgressBoard, ProgressView};
use super::runs::{
    EntryError, FetchMode, Outcome, RunId, RunRecord, RunStore, SourceState, Trigger,
};
use super::sources::{hr, ldap};
use super::vet;
use crate::blocking::blocking;
use crate::employee::EmployeePatch;
use crate::employee::{self, EmployeeId, Roster};
use crate::store::{Actor, ActorKind, Fence, FieldChange, StoreError, with_fence};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("no source with id `{0}`")]
    UnknownSource(String),
    #[error("a run of `{0}` is already in progress; try again when it ends")]
    AlreadyRunning(String),
    #[error("no run {0}")]
    RunNotFound(RunId),
    #[error("run {0} is not held (only held runs can be approved)")]
    NotHeld(RunId),
    #[error(transparent)]
    Domain(#[from] employee::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// rosterd is stopping: the run ended early (recorded `interrupted`).
    #[error("rosterd is stopping: {0}")]
    Interrupted(String),
}

/// The lifecycle sources, highest priority first.
pub fn lifecycle_order(sources: &[Source]) -> Vec<String> {
    let mut l: Vec<&Source> = sources.iter().filter(|s| s.lifecycle).collect();
    l.sort_by_key(|s| std::cmp::Reverse(s.priority));
    l.into_iter().map(|s| s.id.clone()).collect()
}

/// Which of the sources `e` is linked to writes each field, highest priority
/// first: the first one wins at the next run (an edit of that field is
/// overwritten then). What `rosterctl employees explain` shows as `owners`, and
/// the web console as the note next to a field.
pub fn field_owners(
    sources: &[Source],
    e: &employee::Employee,
) -> BTreeMap<&'static str, Vec<(String, i64)>> {
    let mut linked: Vec<&Source> = sources
        .iter()
        .filter(|s| e.source_keys.contains_key(&s.id))
        .collect();
    linked.sort_by_key(|s| std::cmp::Reverse(s.priority));
    let mut owners: BTreeMap<&'static str, Vec<(String, i64)>> = BTreeMap::new();
    for s in linked {
        for f in s.provides() {
            owners
                .entry(f)
                .or_default()
                .push((s.id.clone(), s.priority));
        }
    }
    owners
}

/// Every source's id, highest priority first (equal priorities in config
/// order): of the sources a profile is linked to, the first owns it, as
/// `GET /api/v1/employees/{key}/explain` orders them.
pub fn priority_order(sources: &[Source]) -> Vec<String> {
    let mut l: Vec<&Source> = sources.iter().collect();
    l.sort_by_key(|s| std::cmp::Reverse(s.priority));
    l.into_iter().map(|s| s.id.clone()).collect()
}

/// How many items of an applied run's plan keep their field changes in the
/// run record returned to the caller (the rest are read from the stored plan).
const PLAN_PREVIEW_ITEMS: usize = 100;

/// `items` with the changes [`SyncEngine::store_plan`] gave back (the first
/// items'); the others' stay in the stored plan only.
fn with_changes(mut items: Vec<PlanItem>, kept: Vec<Vec<FieldChange>>) -> Vec<PlanItem> {
    for (item, changes) in items.iter_mut().zip(kept) {
        item.changes = changes;
    }
    items
}

/// The run's end in the log: an error for a failed run, a warning for an
/// interrupted or held one.
fn log_outcome(rec: &RunRecord) {
    match rec.outcome {
        Outcome::Failed => tracing::error!(
            run = rec.id,
            reason = rec.message.as_deref().unwrap_or(""),
            "sync run failed; nobody was deactivated"
        ),
        Outcome::Interrupted => tracing::warn!(
            run = rec.id,
            reason = rec.message.as_deref().unwrap_or(""),
            "sync run interrupted"
        ),
        Outcome::Held => tracing::warn!(
            run = rec.id,
            reason = rec.message.as_deref().unwrap_or(""),
            "sync plan held for approval (rosterctl sync approve {})",
            rec.id
        ),
        _ => {
            tracing::info!(run = rec.id, outcome = ?rec.outcome, counts = ?rec.counts, "sync run finished")
        }
    }
}

/// What the steps of one apply share.
struct Applying<'a> {
    src: &'a Source,
    psrc: PlanSource<'a>,
    /// The run's entries by join key.
    by_key: HashMap<&'a str, &'a MappedEntry>,
    progress: &'a Progress,
}

/// Records in `rec` that the domain refused `item`'s change (the run goes on).
fn report(rec: &mut RunRecord, item: &PlanItem, e: &employee::Error) {
    rec.errors.push(EntryError {
        key: item.key.clone(),
        dn: item.dn.clone(),
        message: format!("{:?} not applied: {e}", item.action).to_lowercase(),
    });
    rec.counts.errors += 1;
}

/// Owned inputs of a [`PlanSource`].
struct PlanContext {
    provides: Vec<&'static str>,
    higher: Vec<(String, Vec<&'static str>)>,
    lifecycle: Vec<String>,
    catalog: std::sync::Arc<employee::Catalog>,
    now: DateTime<Utc>,
    signature: u64,
}

impl PlanContext {
    fn plan_source<'a>(&'a self, src: &'a Source) -> PlanSource<'a> {
        PlanSource {
            id: &src.id,
            account_status: src.account_status,
            catalog: &self.catalog,
            lifecycle: src.lifecycle,
            join_attribute: src.join_attribute,
            provides: &self.provides,
            higher: &self.higher,
            lifecycle_sources: &self.lifecycle,
            now: self.now,
            signature: self.signature,
            use_marks: true,
        }
    }
}

/// The manager and the unresolved reference `source` gives a profile.
fn manager_change(
    source: &str,
    cur: &employee::Employee,
    manager: &Option<String>,
    unresolved: &Option<String>,
) -> employee::SyncChange {
    let mut facts = cur.source_facts.get(source).cloned().unwrap_or_default();
    facts.unresolved_manager = unresolved.clone();
    employee::SyncChange {
        patch: EmployeePatch {
            manager: Some(manager.clone()),
            source_facts: Some((source.to_string(), Some(facts))),
            ..Default::default()
        },
        active: None,
    }
}

/// Finds a manager named by a source: by the source's key, else by email, else
/// by employee number (read once per resolver, when first needed).
struct ManagerResolver<'a> {
    roster: &'a Roster,
    by_number: Option<HashMap<String, employee::EmployeeId>>,
}

impl<'a> ManagerResolver<'a> {
    fn new(roster: &'a Roster) -> Self {
        Self {
            roster,
            by_number: None,
        }
    }

    fn resolve(
        &mut self,
        source: &str,
        r: &str,
    ) -> Result<Option<employee::EmployeeId>, employee::Error> {
        if let Some(e) = self.roster.by_source_key(source, r)? {
            return Ok(Some(e.id));
        }
        if r.contains('@')
            && let Some(e) = self.roster.by_email(r)?
        {
            return Ok(Some(e.id));
        }
        if self.by_number.is_none() {
            let map = self
                .roster
                .by_employee_number()?
                .into_iter()
                .map(|(n, e)| (n, e.id))
                .collect();
            self.by_number = Some(map);
        }
        Ok(self.by_number.as_ref().and_then(|m| m.get(r).copied()))
    }
}

/// A source's entries, fetched and mapped.
#[derive(Default)]
struct Fetched {
    /// Entries the source returned (mapped or not).
    seen: usize,
    mapped: Vec<MappedEntry>,
    map_errors: Vec<map::MapError>,
    high_water_mark: Option<String>,
    /// LDAP: how the people were asked for, the content-sync cookie to store
    /// after the apply, and what the run's record should say about it.
    mode: Option<FetchMode>,
    cookie: Option<ldap::CookieUpdate>,
    note: Option<String>,
}

/// Why a source's entries could not be fetched: the run fails with it as its
/// message.
#[derive(Debug, thiserror::Error)]
enum FetchFailed {
    #[error(transparent)]
    Ldap(#[from] ldap::FetchError),
    #[error(transparent)]
    Hr(#[from] hr::FetchError),
    #[error("cannot start the LDAP fetch: {0}")]
    Start(std::io::Error),
    #[error("mapping the entries stopped unexpectedly")]
    MappingStopped,
    #[error("the LDAP fetch stopped: {0}")]
    Stopped(tokio::task::JoinError),
}

fn hr_fetched(r: Result<hr::HrFetched, hr::FetchError>) -> Result<Fetched, FetchFailed> {
    let f = r?;
    Ok(Fetched {
        seen: f.entries.len() + f.errors.len(),
        mapped: f.entries,
        map_errors: f.errors,
        ..Default::default()
    })
}

/// What an apply works under: the run's progress and its lease's fence.
struct Under<'a> {
    progress: &'a Progress,
    fence: &'a Arc<Fence>,
}

/// Per-source run locks: one run of a source at a time. A lock outlives its
/// source's removal by a reload, so a run in progress keeps excluding others.
type RunLocks = HashMap<String, Arc<tokio::sync::Mutex<()>>>;

/// The sync engine: cheap to clone.
#[derive(Clone)]
pub struct SyncEngine {
    roster: Roster,
    runs: RunStore,
    /// The sources in force; [`SyncEngine::set_sources`] replaces them. A run takes
    /// its own copy of its source at start.
    sources: Arc<RwLock<Arc<Vec<Source>>>>,
    locks: Arc<Mutex<RunLocks>>,
    metrics: super::metrics::SyncMetrics,
    /// A fixed clock (tests); the real time when `None`.
    clock: Arc<RwLock<Option<DateTime<Utc>>>>,
    /// Runs in flight (each in a task of its own, see [`SyncEngine::run`]).
    inflight: Arc<tokio::sync::watch::Sender<usize>>,
    /// Set by [`SyncEngine::shutdown`]: runs stop between batches.
    stopping: Arc<std::sync::atomic::AtomicBool>,
    /// The same, for runs waiting on their source.
    stop_tx: Arc<tokio::sync::watch::Sender<bool>>,
    /// The progress of the runs in flight (memory only).
    progress: ProgressBoard,
}

/// A started run's task: its record once it ends.
pub type RunTask = tokio::task::JoinHandle<Result<RunRecord, SyncError>>;

/// Counts a run in flight while it lives.
struct InFlight(Arc<tokio::sync::watch::Sender<usize>>);

impl InFlight {
    fn new(tx: &Arc<tokio::sync::watch::Sender<usize>>) -> Self {
        tx.send_modify(|n| *n += 1);
        Self(tx.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl SyncEngine {
    pub fn new(roster: Roster, sources: Vec<Source>) -> Result<Self, StoreError> {
        let runs = RunStore::open(roster.store())?;
        // Not the runs of another node that holds its source's lease (several
        // nodes on one database): they are going on.
        let live: Vec<String> = roster
            .store()
            .leases()?
            .into_iter()
            .filter(|l| !l.expired)
            .map(|l| l.source)
            .collect();
        let now = Utc::now();
        let found = runs.mark_stopped(
            now,
            |source, _| !live.iter().any(|l| l == source),
            &format!(
                "found still running when rosterd started at {}: it stopped during the run; \
                 what was applied stays and the next run completes it",
                now.to_rfc3339()
            ),
        )?;
        if !found.is_empty() {
            tracing::warn!(
                runs = ?found,
                "sync runs found still running at start (rosterd stopped during them) are marked interrupted"
            );
        }
        let locks = sources
            .iter()
            .map(|s| (s.id.clone(), Arc::new(tokio::sync::Mutex::new(()))))
            .collect();
        roster.set_source_priority(&priority_order(&sources));
        Ok(Self {
            roster,
            runs,
            sources: Arc::new(RwLock::new(Arc::new(sources))),
            locks: Arc::new(Mutex::new(locks)),
            metrics: Default::default(),
            clock: Default::default(),
            inflight: Arc::new(tokio::sync::watch::channel(0).0),
            stopping: Default::default(),
            stop_tx: Arc::new(tokio::sync::watch::channel(false).0),
            progress: ProgressBoard::default(),
        })
    }

    /// Stops taking runs, lets the runs in flight end (each stops at its next
    /// batch and is recorded `interrupted`, or completes), and waits for them
    /// for at most `timeout`. Returns whether every run ended.
    pub async fn shutdown(&self, timeout: std::time::Duration) -> bool {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.stop_tx.send_replace(true);
        let mut rx = self.inflight.subscribe();
        let ended = tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0))
            .await
            .is_ok();
        if !ended {
            tracing::warn!(
                runs = *rx.borrow(),
                "sync runs still going at the stop timeout; they are marked interrupted at the next start"
            );
        }
        ended
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn check_stopping(&self, what: &str) -> Result<(), SyncError> {
        if self.is_stopping() {
            return Err(SyncError::Interrupted(what.to_string()));
        }
        Ok(())
    }

    /// The sources in force.
    pub fn sources(&self) -> Arc<Vec<Source>> {
        self.sources
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts a reloaded config's sources in force. Runs already in progress finish
    /// with the settings they started with and still hold their source's lock, so
    /// a run of the same id cannot start beside them.
    pub fn set_sources(&self, sources: Vec<Source>) {
        {
            let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            for s in &sources {
                locks.entry(s.id.clone()).or_default();
            }
        }
        self.roster.set_source_priority(&priority_order(&sources));
        *self.sources.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(sources);
    }

    /// Counters and histograms of runs, for `/metrics`.
    pub fn metrics(&self) -> &super::metrics::SyncMetrics {
        &self.metrics
    }

    /// The store (leases and claims).
    pub fn store(&self) -> &crate::store::Store {
        self.roster.store()
    }

    pub fn runs(&self) -> &RunStore {
        &self.runs
    }

    /// How far run `id` has got, while it runs (or a held run is applied).
    pub fn progress(&self, id: RunId) -> Option<ProgressView> {
        self.progress.get(id)
    }

    fn source(&self, id: &str) -> Result<Source, SyncError> {
        self.sources()
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .ok_or_else(|| SyncError::UnknownSource(id.to_string()))
    }

    fn actor(id: &str) -> Actor {
        Actor {
            kind: ActorKind::Sync,
            name: id.to_string(),
        }
    }

    /// Runs one sync of `source_id`. A run that fails (directory down, truncated
    /// result...) is recorded with outcome `failed` and returned as `Ok`; `Err` means
    /// the run could not start (unknown source, one already running).
    ///
    /// The run goes on in a task of its own: a caller that goes away (the HTTP
    /// client of a manual run) does not cut it short, and [`SyncEngine::shutdown`]
    /// waits for it.
    pub async fn run(
        &self,
        source_id: &str,
        kind: RunKind,
        dry_run: bool,
        trigger: Trigger,
    ) -> Result<RunRecord, SyncError> {
        let (_, task) = self.start(source_id, kind, dry_run, trigger).await?;
        Self::join(task).await
    }

    /// Starts a run and returns its id as soon as the run is recorded (durably,
    /// as `running`), with the task that goes on with it; `Err` as for
    /// [`SyncEngine::run`]. The run goes on whether or not the task is awaited.
    pub async fn start(
        &self,
        source_id: &str,
        kind: RunKind,
        dry_run: bool,
        trigger: Trigger,
    ) -> Result<(RunId, RunTask), SyncError> {
        if self.is_stopping() {
            return Err(SyncError::Interrupted(
                "no new sync run starts during a shutdown".into(),
            ));
        }
        let engine = self.clone();
        let source_id = source_id.to_string();
        let guard = InFlight::new(&self.inflight);
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let _guard = guard;
            engine
                .run_here(&source_id, kind, dry_run, trigger, started_tx)
                .await
        });
        match started_rx.await {
            Ok(id) => Ok((id, task)),
            // The run ended before it was recorded: why.
            Err(_) => {
                let rec = Self::join(task).await?;
                Ok((rec.id, tokio::spawn(async move { Ok(rec) })))
            }
        }
    }

    /// The record a run's task ends with.
    pub async fn join(task: RunTask) -> Result<RunRecord, SyncError> {
        task.await.map_err(|e| {
            SyncError::Store(StoreError::Corrupt(format!(
                "the sync run's task failed: {e}"
            )))
        })?
    }

    #[instrument(skip(self, started_tx), fields(source = %source_id))]
    async fn run_here(
        &self,
        source_id: &str,
        kind: RunKind,
        dry_run: bool,
        trigger: Trigger,
        started_tx: tokio::sync::oneshot::Sender<RunId>,
    ) -> Result<RunRecord, SyncError> {
        let src = self.source(source_id)?;
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(source_id)
            .cloned()
            .ok_or_else(|| SyncError::UnknownSource(source_id.to_string()))?;
        let Ok(_guard) = lock.try_lock() else {
            tracing::warn!(
                source = source_id,
                %trigger,
                "run skipped: another run of this source is in progress"
            );
            return Err(SyncError::AlreadyRunning(source_id.to_string()));
        };
        // Across nodes: the source's lease (see `super::lease`).
        let lease = match HeldLease::take(self.roster.store(), source_id).await? {
            Ok(l) => l,
            Err(holder) => {
                tracing::warn!(
                    source = source_id,
                    %trigger,
                    holder = %holder.holder,
                    epoch = holder.epoch,
                    expires_at = %holder.expires_at,
                    "run skipped: another node holds this source's lease"
                );
                return Err(SyncError::AlreadyRunning(source_id.to_string()));
            }
        };
        let result = self
            .run_leased(&src, kind, dry_run, trigger, started_tx, &lease)
            .await;
        lease.release().await;
        result
    }

    /// [`SyncEngine::run_here`] once the run holds its source's lease.
    async fn run_leased(
        &self,
        src: &Source,
        kind: RunKind,
        dry_run: bool,
        trigger: Trigger,
        started_tx: tokio::sync::oneshot::Sender<RunId>,
        lease: &HeldLease,
    ) -> Result<RunRecord, SyncError> {
        let mut rec = RunRecord {
            id: self.runs.new_id()?,
            source: src.id.clone(),
            kind,
            trigger,
            started_at: Utc::now(),
            finished_at: None,
            outcome: Outcome::Running,
            message: None,
            entries_seen: 0,
            fetch: None,
            counts: Default::default(),
            errors: vec![],
            errors_omitted: 0,
            plan: vec![],
            plan_stored: false,
            timings_ms: Default::default(),
        };
        self.runs.put(&mut rec)?;
        // A run of this source still recorded `running` lost its node: this
        // run has the lease, so its node stopped renewing it (killed, stalled).
        let this = rec.id;
        let taken = blocking(|| {
            self.runs.mark_stopped(
                Utc::now(),
                |source, id| source == src.id && id != this,
                &format!(
                    "its node stopped renewing the source's lease (killed or stalled) and run {this} \
                     took it over (epoch {}); what was applied stays and run {this} completes it",
                    lease.fence().lease.epoch
                ),
            )
        })?;
        if !taken.is_empty() {
            tracing::warn!(source = %src.id, runs = ?taken, run = this, "runs of a node that stopped are marked interrupted; this run takes over");
        }
        // Durable from the start: a run cut short by a crash is in the history
        // (and marked interrupted at the next start).
        self.runs.flush().await?;
        let tracked = self.progress.track(rec.id);
        // The caller may have stopped waiting: the run goes on all the same.
        let _ = started_tx.send(rec.id);
        let result = self
            .run_inner(
                src,
                kind,
                dry_run,
                &mut rec,
                &tracked.progress,
                lease.fence(),
            )
            .await;
        tracked.progress.set_phase(Phase::Finish);
        // Whatever else went wrong: a run whose lease was taken over was
        // interrupted (its batch rolled back), and says so.
        if result.is_err() {
            lease.confirm().await;
        }
        let result = match lease.lost_message() {
            Some(why) => Err(SyncError::Interrupted(why)),
            None => result,
        };
        match result {
            Ok(()) => {}
            Err(SyncError::Interrupted(why)) => {
                rec.outcome = Outcome::Interrupted;
                rec.message = Some(why);
            }
            Err(e) => {
                rec.outcome = Outcome::Failed;
                rec.message = Some(e.to_string());
            }
        }
        rec.finished_at = Some(Utc::now());
        blocking(|| self.runs.put(&mut rec))?;
        match blocking(|| self.runs.prune(&src.id, src.keep_runs)) {
            Ok(0) => {}
            Ok(n) => {
                tracing::debug!(source = %src.id, deleted = n, "old runs pruned from the history")
            }
            // The run itself is recorded; the next one tries again.
            Err(e) => {
                tracing::warn!(source = %src.id, error = %e, "pruning the run history failed")
            }
        }
        self.runs.flush().await?;
        self.record_metrics(&rec);
        log_outcome(&rec);
        Ok(rec)
    }

    fn record_metrics(&self, rec: &RunRecord) {
        use super::metrics::{RunLabels, SourceLabels};
        let outcome = rec.outcome.as_str().to_string();
        self.metrics
            .runs
            .get_or_create(&RunLabels {
                source: rec.source.clone(),
                outcome,
            })
            .inc();
        let src = SourceLabels {
            source: rec.source.clone(),
        };
        if let Some(end) = rec.finished_at {
            let secs = (end - rec.started_at).num_milliseconds().max(0) as f64 / 1000.0;
            self.metrics.duration.get_or_create(&src).observe(secs);
        }
        self.metrics
            .entries_seen
            .get_or_create(&src)
            .inc_by(rec.entries_seen as u64);
    }

    async fn run_inner(
        &self,
        src: &Source,
        kind: RunKind,
        dry_run: bool,
        rec: &mut RunRecord,
        progress: &Arc<Progress>,
        fence: &Arc<Fence>,
    ) -> Result<(), SyncError> {
        let state = self.runs.state(&src.id)?;
        let ms = |t: std::time::Instant| t.elapsed().as_millis() as u64;
        let Some(fetched) = self.fetch_step(src, kind, &state, rec, progress).await? else {
            return Ok(());
        };
        let t = std::time::Instant::now();
        let Fetched {
            mut mapped,
            map_errors,
            high_water_mark,
            cookie,
            ..
        } = fetched;
        self.check_stopping("the run stopped after fetching; nothing was changed")?;
        let mut plan = self.plan_step(src, kind, &mut mapped, &map_errors, rec, progress)?;
        // Moved, not copied: a first import's plan holds every new profile.
        let mut items: Vec<PlanItem> = std::mem::take(&mut plan.items)
            .into_iter()
            .filter(|i| i.action != Action::Unchanged)
            .collect();
        rec.timings_ms.plan = ms(t);
        // The items' field changes go to the plan's writer, which drops them
        // page by page (and works a create's out as its page is written: see
        // `plan::create_changes`); the first page's come back for the record.
        let changes: Vec<_> = items
            .iter_mut()
            .map(|i| std::mem::take(&mut i.changes))
            .collect();
        let keep_plan = |rec: &mut RunRecord,
                         items: Vec<PlanItem>,
                         changes: Vec<Vec<FieldChange>>|
         -> Result<(), SyncError> {
            let kept = blocking(|| self.store_plan(src, rec.id, &items, changes, &mapped))?;
            rec.plan = with_changes(items, kept);
            rec.plan_stored = true;
            Ok(())
        };
        if dry_run {
            keep_plan(rec, items, changes)?;
            rec.outcome = Outcome::DryRun;
            return Ok(());
        }
        if self.is_stopping() {
            keep_plan(rec, items, changes)?;
            return Err(SyncError::Interrupted(
                "the run stopped after planning; nothing was changed".into(),
            ));
        }
        self.runs.supersede_held(&src.id)?;
        if let Some(why) = plan.exceeds(src.max_deactivations, src.max_deactivations_percent) {
            rec.outcome = Outcome::Held;
            rec.message = Some(format!(
                "{why}; inspect with `rosterctl sync show {}` and approve with `rosterctl sync approve {}`",
                rec.id, rec.id
            ));
            keep_plan(rec, items, changes)?;
            self.runs.put_held(rec.id, &mapped)?;
            return Ok(());
        }
        let t = std::time::Instant::now();
        // Every item apply acts on is in the run's plan (it skips the others).
        let applied = self
            .apply(
                src,
                &items,
                &mapped,
                rec,
                Some(changes),
                Under { progress, fence },
            )
            .await;
        match applied {
            Ok(kept) => rec.plan = with_changes(items, kept),
            Err(e) => {
                rec.plan = items;
                return Err(e);
            }
        }
        rec.plan_stored = true;
        rec.timings_ms.apply = ms(t);
        rec.outcome = Outcome::Applied;
        self.mark_stable(src, &plan)?;
        self.advance_mark(src, state, high_water_mark, cookie)?;
        Ok(())
    }

    /// Entries read and found unchanged: marked, so that the next run need
    /// not read them (a mark is dropped whenever the profile changes).
    fn mark_stable(&self, src: &Source, plan: &plan::Plan) -> Result<(), SyncError> {
        let marks: Vec<_> = plan
            .stable
            .iter()
            .map(|(id, v, fp)| (*id, *v, fp.to_bytes()))
            .collect();
        blocking(|| self.roster.set_sync_marks(&src.id, &marks))?;
        Ok(())
    }

    /// The run's fetch, stopped by a shutdown. `None`: the run failed (the
    /// source could not be read, or a full run saw nobody), as `rec` says.
    async fn fetch_step(
        &self,
        src: &Source,
        kind: RunKind,
        state: &SourceState,
        rec: &mut RunRecord,
        progress: &Arc<Progress>,
    ) -> Result<Option<Fetched>, SyncError> {
        let t = std::time::Instant::now();
        let mut stop = self.stop_tx.subscribe();
        let fetched = tokio::select! {
            f = self.fetch(src, kind, state, progress) => f,
            _ = stop.wait_for(|s| *s) => {
                return Err(SyncError::Interrupted(
                    "the run stopped while fetching from the source; nothing was changed".into(),
                ));
            }
        };
        rec.timings_ms.fetch = t.elapsed().as_millis() as u64;
        let fetched = match fetched {
            Ok(f) => f,
            Err(e) => {
                rec.outcome = Outcome::Failed;
                rec.message = Some(e.to_string());
                return Ok(None);
            }
        };
        rec.entries_seen = fetched.seen;
        progress.set_fetched(fetched.seen);
        rec.fetch = fetched.mode;
        if fetched.note.is_some() {
            rec.message = fetched.note.clone();
        }
        if kind == RunKind::Full && fetched.seen == 0 {
            rec.outcome = Outcome::Failed;
            rec.message = Some(
                "the source returned no entries; a full run that sees nobody deactivates nobody"
                    .into(),
            );
            return Ok(None);
        }
        Ok(Some(fetched))
    }

    /// Vets the mapped entries and plans them; the plan's counts and errors
    /// (and the entries' warnings) go into `rec`.
    fn plan_step(
        &self,
        src: &Source,
        kind: RunKind,
        mapped: &mut [MappedEntry],
        map_errors: &[map::MapError],
        rec: &mut RunRecord,
        progress: &Progress,
    ) -> Result<plan::Plan, SyncError> {
        // An unusable optional value is left out with a warning (see `vet`).
        let catalog = self.roster.catalog();
        for m in mapped.iter_mut() {
            vet::vet(m, &catalog);
        }
        let ctx = self.context(src)?;
        progress.set_phase(Phase::Plan);
        let plan = blocking(|| {
            plan::plan(
                &ctx.plan_source(src),
                kind,
                mapped,
                map_errors,
                &self.roster,
            )
        })?;
        rec.counts = plan.counts.clone();
        progress.set_planned(mapped.len() + map_errors.len());
        rec.errors = plan
            .items
            .iter()
            .filter(|i| i.error)
            .map(|i| EntryError {
                key: i.key.clone(),
                dn: i.dn.clone(),
                message: i.reason.clone(),
            })
            .collect();
        for m in mapped.iter() {
            for w in &m.warnings {
                rec.errors.push(EntryError {
                    key: m.key.clone(),
                    dn: m.dn.clone(),
                    message: w.clone(),
                });
            }
        }
        Ok(plan)
    }

    /// Fetches and maps the source's entries (an incremental run from where
    /// `state` says the last applied run left). `Err` is the reason the run fails.
    async fn fetch(
        &self,
        src: &Source,
        kind: RunKind,
        state: &SourceState,
        progress: &Arc<Progress>,
    ) -> Result<Fetched, FetchFailed> {
        match &src.kind {
            SourceKind::Ldap(l) => {
                // On a thread of its own with a single-threaded runtime: the
                // connection's decoding and the conversion of the entries then
                // take turns on one core instead of waking each other across
                // threads for every entry, and the directory server (often on
                // this machine) keeps the other core.
                let l = l.clone();
                let (mark, cookie) = (state.high_water_mark.clone(), state.cookie());
                let photo_max = self.roster.photo_max_bytes();
                let progress = progress.clone();
                tokio::task::spawn_blocking(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(FetchFailed::Start)?;
                    let from = ldap::Resume {
                        mark: mark.as_deref(),
                        cookie: cookie.as_deref(),
                    };
                    let f = rt.block_on(ldap::fetch(&l, kind, from))?;
                    progress.set_fetched(f.entries.len());
                    let mut out = Fetched {
                        seen: f.entries.len(),
                        high_water_mark: f.high_water_mark,
                        mode: Some(f.mode),
                        cookie: Some(f.cookie),
                        note: f.note,
                        ..Default::default()
                    };
                    // Mapping is pure: a large result is mapped in two halves
                    // at once, in order. Each half goes straight into a vector
                    // of its final size (a mapped entry is large: growing a
                    // vector of 100,000 of them copied it over and over), and
                    // each entry is dropped as soon as it is mapped, so the
                    // raw entries and the mapped ones are not all held at once.
                    let map_part =
                        |entries: Vec<crate::sync::Entry>,
                         mapped: &mut Vec<MappedEntry>,
                         errors: &mut Vec<map::MapError>| {
                            mapped.reserve(entries.len());
                            for e in entries {
                                match map::map_entry(&l, &e) {
                                    Ok(mut m) => {
                                        map::limit_photo(&mut m, photo_max);
                                        mapped.push(m);
                                    }
                                    Err(err) => errors.push(err),
                                }
                            }
                        };
                    let mut entries = f.entries;
                    if entries.len() >= 4096 {
                        let b = entries.split_off(entries.len() / 2);
                        let (mut mapped_b, mut errors_b) = (Vec::new(), Vec::new());
                        // Room for both halves: the second is appended after.
                        out.mapped.reserve(entries.len() + b.len());
                        std::thread::scope(|s| {
                            let second = s.spawn(|| map_part(b, &mut mapped_b, &mut errors_b));
                            map_part(entries, &mut out.mapped, &mut out.map_errors);
                            second.join().map_err(|_| FetchFailed::MappingStopped)
                        })?;
                        out.mapped.append(&mut mapped_b);
                        out.map_errors.append(&mut errors_b);
                    } else {
                        map_part(entries, &mut out.mapped, &mut out.map_errors);
                    }
                    Ok(out)
                })
                .await
                .map_err(FetchFailed::Stopped)?
            }
            SourceKind::Http(h) => hr_fetched(hr::fetch_http(h, src.timezone).await),
            SourceKind::Csv(c) => hr_fetched(hr::fetch_csv(c, src.timezone).await),
        }
    }

    /// Records where the next incremental run starts; called only once a run's
    /// plan has been applied.
    fn advance_mark(
        &self,
        src: &Source,
        mut state: SourceState,
        mark: Option<String>,
        cookie: Option<ldap::CookieUpdate>,
    ) -> Result<(), SyncError> {
        if let Some(m) = mark
            && state
                .high_water_mark
                .as_ref()
                .is_none_or(|old| ldap::mark_cmp(&m, old).is_gt())
        {
            state.high_water_mark = Some(m);
        }
        match cookie {
            Some(ldap::CookieUpdate::Set(c)) => state.set_cookie(Some(&c)),
            Some(ldap::CookieUpdate::Drop) => state.set_cookie(None),
            Some(ldap::CookieUpdate::Keep) | None => {}
        }
        state.last_success = Some(Utc::now());
        self.runs.put_state(&src.id, &state)?;
        Ok(())
    }

    /// Applies plan items through the domain. Each change is worked out again
    /// from the profile as it is at write time. An item that the domain refuses
    /// (e.g. its email is taken meanwhile) is reported; the rest goes on.
    /// `store_plan`: `items` are the run's plan, written meanwhile on a thread
    /// of its own (a first import's plan is as big as the roster), with the
    /// items' field changes given apart (`store_plan[i]` is `items[i]`'s);
    /// the first [`PLAN_PREVIEW_ITEMS`] items' changes come back.
    async fn apply(
        &self,
        src: &Source,
        items: &[PlanItem],
        mapped: &[MappedEntry],
        rec: &mut RunRecord,
        store_plan: Option<Vec<Vec<FieldChange>>>,
        under: Under<'_>,
    ) -> Result<Vec<Vec<FieldChange>>, SyncError> {
        let Under { progress, fence } = under;
        let run_id = rec.id;
        progress.set_phase(Phase::Apply);
        progress.set_to_apply(items.len());
        let writing = store_plan.is_some();
        let (applied, kept) = blocking(|| {
            std::thread::scope(|s| {
                let writer = store_plan.map(|changes| {
                    s.spawn(|| self.store_plan(src, run_id, items, changes, mapped))
                });
                // Every batch of the domain's writes on this thread is fenced.
                let applied = with_fence(fence, || {
                    self.apply_changes(src, items, mapped, rec, progress)
                });
                let kept = match writer {
                    Some(w) => match w.join() {
                        Ok(written) => written,
                        Err(_) => Err(SyncError::Store(StoreError::Corrupt(
                            "writing the run's plan failed".into(),
                        ))),
                    },
                    None => Ok(Vec::new()),
                };
                (applied, kept)
            })
        });
        // One flush at the end (also of an interrupted apply): a run is not
        // acknowledged item by item, and a crash mid-apply is repaired by the
        // next run.
        // The writer finished whatever apply did: the stored plan (with every
        // change) stands, and is not written again from the record.
        if writing && kept.is_ok() {
            rec.plan_stored = true;
        }
        self.roster.flush().await?;
        let kept = kept?;
        applied?;
        Ok(kept)
    }

    /// Stores run `run_id`'s plan, `items` with their field changes: those in
    /// `changes` (taken out of the items: `changes[i]` is `items[i]`'s), and a
    /// create's, worked out from its entry as its page is written
    /// ([`plan::create_changes`]), so that no more than a page of them is held.
    /// The first [`PLAN_PREVIEW_ITEMS`] items' changes come back.
    fn store_plan(
        &self,
        src: &Source,
        run_id: RunId,
        items: &[PlanItem],
        changes: Vec<Vec<FieldChange>>,
        mapped: &[MappedEntry],
    ) -> Result<Vec<Vec<FieldChange>>, SyncError> {
        let ctx = self.context(src)?;
        let psrc = ctx.plan_source(src);
        let by_key: HashMap<&str, &MappedEntry> =
            mapped.iter().map(|m| (m.key.as_str(), m)).collect();
        let mut changes = changes.into_iter();
        let kept = self.runs.put_plan_taking(
            run_id,
            items,
            |_, item| {
                let taken = changes.next().unwrap_or_default();
                match (item.action, by_key.get(item.key.as_str())) {
                    (Action::Create, Some(m)) if taken.is_empty() => plan::create_changes(&psrc, m),
                    _ => taken,
                }
            },
            PLAN_PREVIEW_ITEMS,
        )?;
        Ok(kept)
    }

    /// The writes of [`SyncEngine::apply`], without the flush: the updates,
    /// then the creates (an update may free an email a create needs), then the
    /// managers, then the marks of the entries that now match their profiles.
    fn apply_changes(
        &self,
        src: &Source,
        items: &[PlanItem],
        mapped: &[MappedEntry],
        rec: &mut RunRecord,
        progress: &Progress,
    ) -> Result<(), SyncError> {
        let ctx = self.context(src)?;
        let cx = Applying {
            src,
            psrc: ctx.plan_source(src),
            by_key: mapped.iter().map(|m| (m.key.as_str(), m)).collect(),
            progress,
        };
        let mut marks = Vec::new();
        // A shutdown stops the run between changes; what is done stays (and
        // is marked).
        let stopped = match self.apply_updates(&cx, items, rec, &mut marks) {
            Err(SyncError::Interrupted(why)) => Some(why),
            Err(e) => return Err(e),
            Ok(()) if self.is_stopping() => {
                Some("the run stopped before its creates; the next run completes it".into())
            }
            Ok(()) => None,
        };
        if let Some(why) = stopped {
            self.roster.set_sync_marks(&src.id, &marks)?;
            return Err(SyncError::Interrupted(why));
        }
        self.apply_creates(&cx, items, rec)?;
        self.resolve_managers(src, &cx.psrc, mapped, rec)?;
        // After the managers: a profile they changed since is not marked.
        self.roster.set_sync_marks(&src.id, &marks)?;
        Ok(())
    }

    /// The plan's updates, activations and deactivations, each worked out
    /// again from the profile at write time. Those that leave a profile
    /// matching its entry add the entry's mark to `marks`.
    fn apply_updates(
        &self,
        cx: &Applying<'_>,
        items: &[PlanItem],
        rec: &mut RunRecord,
        marks: &mut Vec<(EmployeeId, u64, Vec<u8>)>,
    ) -> Result<(), SyncError> {
        let (src, psrc, by_key, progress) = (cx.src, &cx.psrc, &cx.by_key, cx.progress);
        let actor = Self::actor(&src.id);
        let total = items.len();
        for (done, item) in items.iter().enumerate() {
            if done % 256 == 0 && self.is_stopping() {
                return Err(SyncError::Interrupted(format!(
                    "the run stopped after {done} of {total} plan items; the next run completes it"
                )));
            }
            if item.action != Action::Create {
                progress.add_applied(1);
            }
            let entry = by_key.get(item.key.as_str());
            let result = match (item.action, item.employee_id, entry) {
                (
                    Action::Update | Action::Held | Action::Activate | Action::Deactivate,
                    Some(id),
                    Some(m),
                ) => self
                    .roster
                    .update_synced(&actor, id, &src.id, &m.key, |cur, _| {
                        plan::decide(psrc, m, cur).map(|d| d.change)
                    })
                    .map(|(e, _)| {
                        // Marked for the next run if the entry now matches.
                        if plan::decide(psrc, m, &e).is_ok_and(|d| d.action == Action::Unchanged) {
                            let hash = plan::entry_hash(psrc.signature, m);
                            let fp = plan::Fingerprint::of(hash, &e, psrc.now);
                            marks.push((e.id, e.version, fp.to_bytes()));
                        }
                    }),
                // Gone from the source: deactivated, fields stay as they were.
                (Action::Deactivate, Some(id), None) => self
                    .roster
                    .update_synced(&actor, id, &src.id, &item.key, |cur, _| {
                        Ok(plan::decide_absent(psrc, cur))
                    })
                    .map(|_| ()),
                _ => continue,
            };
            match result {
                Ok(()) => {}
                Err(employee::Error::Store(se)) => return Err(se.into()),
                Err(e) => report(rec, item, &e),
            }
        }
        Ok(())
    }

    /// The plan's new profiles, in batches of one store transaction each.
    /// Each carries its entry's fingerprint: the next run knows it unchanged
    /// without reading it.
    fn apply_creates(
        &self,
        cx: &Applying<'_>,
        items: &[PlanItem],
        rec: &mut RunRecord,
    ) -> Result<(), SyncError> {
        let (src, psrc, by_key, progress) = (cx.src, &cx.psrc, &cx.by_key, cx.progress);
        let actor = Self::actor(&src.id);
        let creates: Vec<(&PlanItem, &MappedEntry)> = items
            .iter()
            .filter(|i| i.action == Action::Create)
            .filter_map(|i| by_key.get(i.key.as_str()).map(|m| (i, *m)))
            .collect();
        // In batches of one store transaction each, in parts of a few
        // batches, so that the progress moves.
        let batch = self.roster.create_batch();
        let mut results = Vec::with_capacity(creates.len());
        for part in creates.chunks(batch * 8) {
            results.extend(self.roster.create_linked_many(
                &actor,
                &src.id,
                part,
                batch,
                |(_, m)| (plan::new_input(psrc, m), m.key.clone()),
                |(_, m), e| {
                    debug_assert!(
                        plan::decide(psrc, m, e).is_ok_and(|d| d.action == Action::Unchanged),
                        "a profile created from an entry must match it"
                    );
                    let hash = plan::entry_hash(psrc.signature, m);
                    Some(plan::Fingerprint::of(hash, e, psrc.now).to_bytes())
                },
            ));
            progress.add_applied(part.len());
        }
        for ((item, _), r) in creates.iter().zip(results) {
            match r {
                Ok(_) => {}
                Err(employee::Error::Store(se)) => return Err(se.into()),
                Err(e) => report(rec, item, &e),
            }
        }
        Ok(())
    }

    /// Sets each entry's manager (SCIM enterprise `manager`: the manager's
    /// profile id) once every profile of the run exists. A manager not on the
    /// roster yet is kept as unresolved on the profile and tried again at the
    /// next run and at every tick.
    fn resolve_managers(
        &self,
        src: &Source,
        psrc: &PlanSource<'_>,
        mapped: &[MappedEntry],
        rec: &mut RunRecord,
    ) -> Result<(), SyncError> {
        if !psrc.provides.contains(&"manager") {
            return Ok(());
        }
        let actor = Self::actor(&src.id);
        let mut resolver = ManagerResolver::new(&self.roster);
        for m in mapped {
            let Some(me) = self.roster.by_source_key(&src.id, &m.key)? else {
                continue;
            };
            if psrc.owned_elsewhere(&me).contains(&"manager") {
                continue;
            }
            let (manager, unresolved) = match &m.manager {
                None => (None, None),
                Some(r) => match resolver.resolve(&src.id, r)? {
                    Some(id) if id != me.id => (Some(id.to_string()), None),
                    _ => {
                        rec.errors.push(EntryError {
                            key: m.key.clone(),
                            dn: m.dn.clone(),
                            message: format!(
                                "manager `{r}` is not on the roster yet; kept unresolved and tried again at the next run"
                            ),
                        });
                        (None, Some(r.clone()))
                    }
                },
            };
            let r = self
                .roster
                .update_synced(&actor, me.id, &src.id, &m.key, |cur, _| {
                    Ok(manager_change(&src.id, cur, &manager, &unresolved))
                });
            match r {
                Ok(_) => {}
                Err(employee::Error::Store(se)) => return Err(se.into()),
                Err(e) => rec.errors.push(EntryError {
                    key: m.key.clone(),
                    dn: m.dn.clone(),
                    message: format!("manager not set: {e}"),
                }),
            }
        }
        Ok(())
    }

    /// Applies what has fallen due since the last look, without fetching: hire
    /// and termination dates passed at [`SyncEngine::now`], and managers that
    /// can be resolved now. Returns how many profiles changed.
    pub async fn tick(&self) -> Result<usize, SyncError> {
        let now = self.now();
        let sources = self.sources();
        let lifecycle = lifecycle_order(&sources);
        let candidates = self.roster.with_source_facts()?;
        let mut resolver = ManagerResolver::new(&self.roster);
        let mut changed = 0;
        for e in candidates {
            // Lifecycle: the same verdict a sync run would reach.
            let verdict = plan::verdict(&lifecycle, &e, now, None);
            let by = match (&verdict, e.active, &e.deactivated_by) {
                (Some((by, _)), true, _) => Some(by.clone()),
                (None, false, Some(a)) if a.kind == ActorKind::Sync => Some(a.name.clone()),
                _ => None,
            };
            if let Some(by) = by {
                let lc = &lifecycle;
                let r = self
                    .roster
                    .update_synced(&Self::actor(&by), e.id, &by, "", |cur, _| {
                        let active = match (plan::verdict(lc, cur, now, None), cur.active) {
                            (Some((who, _)), true) => Some((false, Self::actor(&who))),
                            (None, false)
                                if cur
                                    .deactivated_by
                                    .as_ref()
                                    .is_some_and(|a| a.kind == ActorKind::Sync) =>
                            {
                                Some((true, Self::actor(&by)))
                            }
                            _ => None,
                        };
                        Ok(employee::SyncChange {
                            patch: Default::default(),
                            active,
                        })
                    });
                match r {
                    Ok((_, true)) => {
                        changed += 1;
                        tracing::info!(employee = %e.id, reason = verdict.map(|v| v.1).unwrap_or_else(|| "no source says otherwise any more".into()), "lifecycle date reached");
                    }
                    Ok(_) => {}
                    Err(employee::Error::Store(se)) => return Err(se.into()),
                    Err(err) => {
                        tracing::warn!(employee = %e.id, error = %err, "lifecycle change not applied")
                    }
                }
            }
            // Managers named by a source and not on the roster before.
            for (source, facts) in &e.source_facts {
                let Some(r) = &facts.unresolved_manager else {
                    continue;
                };
                if let Some(id) = resolver.resolve(source, r)?
                    && id != e.id
                {
                    let manager = Some(id.to_string());
                    self.roster.update_synced(
                        &Self::actor(source),
                        e.id,
                        source,
                        "",
                        |cur, _| Ok(manager_change(source, cur, &manager, &None)),
                    )?;
                    changed += 1;
                }
            }
        }
        self.roster.flush().await?;
        Ok(changed)
    }

    /// The clock of the engine: the real time, unless set by [`SyncEngine::set_clock`].
    pub fn now(&self) -> DateTime<Utc> {
        self.clock
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .unwrap_or_else(Utc::now)
    }

    /// Fixes the engine's clock (tests), or gives it back to the real time (`None`).
    pub fn set_clock(&self, now: Option<DateTime<Utc>>) {
        *self.clock.write().unwrap_or_else(PoisonError::into_inner) = now;
    }

    /// What planning a run of `src` needs to know about the other sources.
    fn context(&self, src: &Source) -> Result<PlanContext, SyncError> {
        use std::hash::{Hash, Hasher};
        let sources = self.sources();
        let provides = src.provides();
        let higher: Vec<(String, Vec<&'static str>)> = sources
            .iter()
            .filter(|o| o.priority > src.priority)
            .map(|o| (o.id.clone(), o.provides()))
            .collect();
        let lifecycle = lifecycle_order(&sources);
        let catalog = self.roster.catalog();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        format!(
            "{} {:?} {} {:?} {provides:?} {higher:?} {lifecycle:?} {:?}",
            src.id, src.account_status, src.lifecycle, src.join_attribute, catalog
        )
        .hash(&mut h);
        Ok(PlanContext {
            provides,
            higher,
            lifecycle,
            catalog,
            now: self.now(),
            signature: h.finish(),
        })
    }

    /// Applies a held run's plan as it was shown, without the threshold.
    pub async fn approve(&self, run_id: RunId, approver: &Actor) -> Result<RunRecord, SyncError> {
        let mut rec = self
            .runs
            .get(run_id)?
            .ok_or(SyncError::RunNotFound(run_id))?;
        if rec.outcome != Outcome::Held {
            return Err(SyncError::NotHeld(run_id));
        }
        let src = self.source(&rec.source)?;
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&src.id)
            .cloned()
            .ok_or_else(|| SyncError::UnknownSource(src.id.clone()))?;
        let Ok(_guard) = lock.try_lock() else {
            return Err(SyncError::AlreadyRunning(src.id.clone()));
        };
        let mapped = self
            .runs
            .take_held(run_id)?
            .ok_or(SyncError::NotHeld(run_id))?;
        let items = rec.plan.clone();
        let tracked = self.progress.track(run_id);
        let lease = match HeldLease::take(self.roster.store(), &src.id).await? {
            Ok(l) => l,
            Err(_) => return Err(SyncError::AlreadyRunning(src.id.clone())),
        };
        let applied = self
            .apply(
                &src,
                &items,
                &mapped,
                &mut rec,
                None,
                Under {
                    progress: &tracked.progress,
                    fence: lease.fence(),
                },
            )
            .await;
        let lost = lease.lost_message();
        lease.release().await;
        if let Some(why) = lost {
            return Err(SyncError::Interrupted(why));
        }
        applied?;
        rec.outcome = Outcome::Approved;
        rec.message = Some(format!(
            "{}; approved by {approver} at {}",
            rec.message.clone().unwrap_or_default(),
            Utc::now().to_rfc3339()
        ));
        self.runs.put(&mut rec)?;
        self.runs.flush().await?;
        tracing::info!(run = run_id, by = %approver, "held sync plan approved and applied");
        Ok(rec)
    }
}
