//! Running a sync: one run per source at a time; fetch → map → plan → (hold |
//! apply) → record. Applies through the domain operations in batches, audited under
//! the source id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::Utc;
use tracing::instrument;

use super::config::{Source, SourceKind};
use super::map::{self, MappedEntry};
use super::plan::{self, Action, PlanItem, PlanSource};
use super::runs::{EntryError, Outcome, RunId, RunRecord, RunStore, SourceState};
use super::{RunKind, hr, ldap};
use crate::employee::{self, EmployeePatch, Roster};
use crate::store::{Actor, ActorKind, StoreError};

/// Profiles created per store transaction while applying.
const BATCH: usize = 500;

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
}

/// A source's entries, fetched and mapped.
#[derive(Default)]
struct Fetched {
    /// Entries the source returned (mapped or not).
    seen: usize,
    mapped: Vec<MappedEntry>,
    map_errors: Vec<map::MapError>,
    high_water_mark: Option<String>,
}

fn hr_fetched(r: Result<hr::HrFetched, hr::FetchError>) -> Result<Fetched, String> {
    let f = r.map_err(|e| e.to_string())?;
    Ok(Fetched {
        seen: f.entries.len() + f.errors.len(),
        mapped: f.entries,
        map_errors: f.errors,
        high_water_mark: None,
    })
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
    metrics: crate::metrics::SyncMetrics,
}

impl SyncEngine {
    pub fn new(roster: Roster, sources: Vec<Source>) -> Result<Self, StoreError> {
        let runs = RunStore::open(roster.store())?;
        let locks = sources
            .iter()
            .map(|s| (s.id.clone(), Arc::new(tokio::sync::Mutex::new(()))))
            .collect();
        Ok(Self {
            roster,
            runs,
            sources: Arc::new(RwLock::new(Arc::new(sources))),
            locks: Arc::new(Mutex::new(locks)),
            metrics: Default::default(),
        })
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
        *self.sources.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(sources);
    }

    /// Counters and histograms of runs, for `/metrics`.
    pub fn metrics(&self) -> &crate::metrics::SyncMetrics {
        &self.metrics
    }

    pub fn runs(&self) -> &RunStore {
        &self.runs
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
    #[instrument(skip(self), fields(source = %source_id))]
    pub async fn run(
        &self,
        source_id: &str,
        kind: RunKind,
        dry_run: bool,
        trigger: &str,
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
                trigger,
                "run skipped: another run of this source is in progress"
            );
            return Err(SyncError::AlreadyRunning(source_id.to_string()));
        };
        let mut rec = RunRecord {
            id: self.runs.new_id()?,
            source: src.id.clone(),
            kind,
            trigger: trigger.to_string(),
            started_at: Utc::now(),
            finished_at: None,
            outcome: Outcome::Running,
            message: None,
            entries_seen: 0,
            counts: Default::default(),
            errors: vec![],
            plan: vec![],
            timings_ms: Default::default(),
        };
        self.runs.put(&rec)?;
        let result = self.run_inner(&src, kind, dry_run, &mut rec).await;
        if let Err(e) = result {
            rec.outcome = Outcome::Failed;
            rec.message = Some(e.to_string());
        }
        rec.finished_at = Some(Utc::now());
        self.runs.put(&rec)?;
        self.runs.flush().await?;
        self.record_metrics(&rec);
        match rec.outcome {
            Outcome::Failed => tracing::error!(
                run = rec.id,
                reason = rec.message.as_deref().unwrap_or(""),
                "sync run failed; nobody was deactivated"
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
        Ok(rec)
    }

    fn record_metrics(&self, rec: &RunRecord) {
        use crate::metrics::{RunLabels, SourceLabels};
        let outcome = serde_json::to_value(rec.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
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
    ) -> Result<(), SyncError> {
        let state = self.runs.state(&src.id)?;
        let since = match kind {
            RunKind::Incremental => state.high_water_mark.clone(),
            RunKind::Full => None,
        };
        let ms = |t: std::time::Instant| t.elapsed().as_millis() as u64;
        let t = std::time::Instant::now();
        let fetched = self.fetch(src, since.as_deref()).await;
        rec.timings_ms.fetch = ms(t);
        let fetched = match fetched {
            Ok(f) => f,
            Err(e) => {
                rec.outcome = Outcome::Failed;
                rec.message = Some(e);
                return Ok(());
            }
        };
        rec.entries_seen = fetched.seen;
        if kind == RunKind::Full && fetched.seen == 0 {
            rec.outcome = Outcome::Failed;
            rec.message = Some(
                "the source returned no entries; a full run that sees nobody deactivates nobody"
                    .into(),
            );
            return Ok(());
        }
        let t = std::time::Instant::now();
        let Fetched {
            mapped,
            map_errors,
            high_water_mark,
            ..
        } = fetched;
        let catalog = self.roster.catalog();
        let psrc = PlanSource {
            id: &src.id,
            account_status: src.account_status,
            catalog: &catalog,
        };
        let plan = plan::plan(&psrc, kind, &mapped, &map_errors, &self.roster)?;
        rec.counts = plan.counts.clone();
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
        for m in &mapped {
            for w in &m.warnings {
                rec.errors.push(EntryError {
                    key: m.key.clone(),
                    dn: m.dn.clone(),
                    message: w.clone(),
                });
            }
        }
        rec.plan = plan
            .items
            .iter()
            .filter(|i| i.action != Action::Unchanged)
            .cloned()
            .collect();
        rec.timings_ms.plan = ms(t);
        if dry_run {
            rec.outcome = Outcome::DryRun;
            return Ok(());
        }
        self.runs.supersede_held(&src.id)?;
        if let Some(why) = plan.exceeds(src.max_deactivations, src.max_deactivations_percent) {
            rec.outcome = Outcome::Held;
            rec.message = Some(format!(
                "{why}; inspect with `rosterctl sync show {}` and approve with `rosterctl sync approve {}`",
                rec.id, rec.id
            ));
            self.runs.put_held(rec.id, &mapped)?;
            return Ok(());
        }
        let t = std::time::Instant::now();
        self.apply(src, &plan.items, &mapped, rec).await?;
        rec.timings_ms.apply = ms(t);
        rec.outcome = Outcome::Applied;
        self.advance_mark(src, state, high_water_mark)?;
        Ok(())
    }

    /// Fetches and maps the source's entries. `Err` is the reason the run fails.
    async fn fetch(&self, src: &Source, since: Option<&str>) -> Result<Fetched, String> {
        match &src.kind {
            SourceKind::Ldap(l) => {
                let f = ldap::fetch(l, since).await.map_err(|e| e.to_string())?;
                let mut out = Fetched {
                    seen: f.entries.len(),
                    high_water_mark: f.high_water_mark,
                    ..Default::default()
                };
                for e in &f.entries {
                    match map::map_entry(l, e) {
                        Ok(m) => out.mapped.push(m),
                        Err(err) => out.map_errors.push(err),
                    }
                }
                Ok(out)
            }
            SourceKind::Http(h) => hr_fetched(hr::fetch_http(h, src.timezone).await),
            SourceKind::Csv(c) => hr_fetched(hr::fetch_csv(c, src.timezone).await),
        }
    }

    fn advance_mark(
        &self,
        src: &Source,
        mut state: SourceState,
        mark: Option<String>,
    ) -> Result<(), SyncError> {
        if let Some(m) = mark
            && state
                .high_water_mark
                .as_ref()
                .is_none_or(|old| super::ldap::mark_cmp(&m, old).is_gt())
        {
            state.high_water_mark = Some(m);
        }
        state.last_success = Some(Utc::now());
        self.runs.put_state(&src.id, &state)?;
        Ok(())
    }

    /// Applies plan items through the domain. An item that the domain refuses
    /// (e.g. its email is taken meanwhile) is reported; the rest goes on.
    async fn apply(
        &self,
        src: &Source,
        items: &[PlanItem],
        mapped: &[MappedEntry],
        rec: &mut RunRecord,
    ) -> Result<(), SyncError> {
        let actor = Self::actor(&src.id);
        let by_key: HashMap<&str, &MappedEntry> =
            mapped.iter().map(|m| (m.key.as_str(), m)).collect();
        let report = |rec: &mut RunRecord, item: &PlanItem, e: &employee::Error| {
            rec.errors.push(EntryError {
                key: item.key.clone(),
                dn: item.dn.clone(),
                message: format!("{:?} not applied: {e}", item.action).to_lowercase(),
            });
            rec.counts.errors += 1;
        };
        for item in items {
            let entry = by_key.get(item.key.as_str());
            let result = match (item.action, item.employee_id, entry) {
                (Action::Update | Action::Held, Some(id), Some(m)) => self
                    .roster
                    .update_linked(&actor, id, &m.fields.to_patch(), &src.id, &m.key, None)
                    .map(|_| ()),
                (Action::Activate, Some(id), Some(m)) => self
                    .roster
                    .update_linked(
                        &actor,
                        id,
                        &m.fields.to_patch(),
                        &src.id,
                        &m.key,
                        Some(true),
                    )
                    .map(|_| ()),
                (Action::Deactivate, Some(id), Some(m)) => self
                    .roster
                    .update_linked(
                        &actor,
                        id,
                        &m.fields.to_patch(),
                        &src.id,
                        &m.key,
                        Some(false),
                    )
                    .map(|_| ()),
                // Gone from the source: deactivate only, fields stay as they were.
                (Action::Deactivate, Some(id), None) => self
                    .roster
                    .update_linked(
                        &actor,
                        id,
                        &EmployeePatch::default(),
                        &src.id,
                        &item.key,
                        Some(false),
                    )
                    .map(|_| ()),
                _ => continue,
            };
            match result {
                Ok(()) => {}
                Err(employee::Error::Store(se)) => return Err(se.into()),
                Err(e) => report(rec, item, &e),
            }
        }
        // Creates after updates (an update may free an email a create needs), in
        // batches of one store transaction each.
        let creates: Vec<(&PlanItem, &MappedEntry)> = items
            .iter()
            .filter(|i| i.action == Action::Create)
            .filter_map(|i| by_key.get(i.key.as_str()).map(|m| (i, *m)))
            .collect();
        for chunk in creates.chunks(BATCH) {
            let inputs: Vec<(employee::NewEmployee, String)> = chunk
                .iter()
                .map(|(_, m)| (m.fields.to_new(src.account_status, true), m.key.clone()))
                .collect();
            let results = self.roster.create_linked_many(&actor, &src.id, &inputs);
            for ((item, _), r) in chunk.iter().zip(results) {
                match r {
                    Ok(_) => {}
                    Err(employee::Error::Store(se)) => return Err(se.into()),
                    Err(e) => report(rec, item, &e),
                }
            }
        }
        // One flush at the end: a run is not acknowledged item by item, and a
        // crash mid-apply is repaired by the next run.
        self.roster.flush().await?;
        Ok(())
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
        self.apply(&src, &items, &mapped, &mut rec).await?;
        rec.outcome = Outcome::Approved;
        rec.message = Some(format!(
            "{}; approved by {approver} at {}",
            rec.message.clone().unwrap_or_default(),
            Utc::now().to_rfc3339()
        ));
        self.runs.put(&rec)?;
        self.runs.flush().await?;
        tracing::info!(run = run_id, by = %approver, "held sync plan approved and applied");
        Ok(rec)
    }
}
