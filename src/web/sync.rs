//! The Sync page: each configured source with its last runs (trigger, start,
//! duration, outcome, counts, first errors) and a link to each run's plan
//! (paged), **Run now** and **Dry run** per source, and the plans held by the
//! deactivation threshold, with whom they would deactivate and **Approve**.
//! The held-plan banner ([`held_plans`]) is shown on the Employees screen too.
//!
//! Everything goes through the sync engine, like the admin API
//! (`src/admin/sync.rs`): [`SyncEngine::start`] starts a run without waiting
//! for it (the page shows it running, then its outcome on reload), and
//! [`SyncEngine::approve`] applies a held plan as it was shown. The engine has
//! no "discard": a held plan is superseded by the source's next run.
//!
//! [`SyncEngine::start`]: crate::sync::SyncEngine::start
//! [`SyncEngine::approve`]: crate::sync::SyncEngine::approve

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::error::sync_error_page;
use super::{Chrome, Viewer, WebState, error_page};
use crate::sync::plan::{Action, Counts, PlanItem};
use crate::sync::runs::{Outcome, RunId, RunRecord, Trigger};
use crate::sync::{RunKind, SyncError};

/// Runs shown per source.
const RUNS_SHOWN: usize = 5;
/// A run's errors shown in the list.
const ERRORS_SHOWN: usize = 3;
/// Names a held-plan banner lists before "and N more".
const HELD_NAMES: usize = 10;
/// Plan items per page on a run's page.
const PLAN_PAGE: usize = 100;

/// A plan held by the deactivation threshold, as the banner shows it.
#[derive(Debug, Clone)]
pub struct HeldPlan {
    pub run: RunId,
    pub source: String,
    pub started: String,
    /// Why it was held (the threshold it exceeds).
    pub why: String,
    /// Who it would deactivate: the first [`HELD_NAMES`].
    pub names: Vec<String>,
    /// How many it would deactivate in all.
    pub total: usize,
    /// `total` less the names listed.
    pub more: usize,
}

/// Held plans by run id: a held plan does not change until it is approved or
/// superseded (then it is no longer held), so each is read once.
#[derive(Default)]
pub struct HeldCache {
    runs: Mutex<HashMap<RunId, Arc<HeldPlan>>>,
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The reason part of a held run's message (the rest names `rosterctl`).
fn held_reason(rec: &RunRecord) -> String {
    let m = rec
        .message
        .as_deref()
        .unwrap_or("it exceeds the deactivation threshold");
    m.split("; inspect with").next().unwrap_or(m).to_string()
}

fn held_plan(state: &WebState, rec: &RunRecord) -> Result<HeldPlan, SyncError> {
    let (items, total) = state
        .app
        .sync
        .runs()
        .plan_matching(rec.id, HELD_NAMES, |i| i.action == Action::Deactivate)?
        .ok_or(SyncError::RunNotFound(rec.id))?;
    let roster = &state.app.roster;
    let names: Vec<String> = items
        .iter()
        .map(|i| {
            i.employee_id
                .and_then(|id| roster.get(id).ok())
                .map(|e| format!("{} ({})", e.display_name, e.email))
                .unwrap_or_else(|| i.label.clone())
        })
        .collect();
    Ok(HeldPlan {
        run: rec.id,
        source: rec.source.clone(),
        started: when(rec.started_at),
        why: held_reason(rec),
        more: total.saturating_sub(names.len()),
        names,
        total,
    })
}

/// The plans held for approval now, newest first, read on a blocking thread
/// (the first read of a held plan passes over all of it). A store error is
/// logged and shows no banner (the page around it still works).
pub async fn held_plans(state: &WebState) -> Vec<Arc<HeldPlan>> {
    let st = state.clone();
    match tokio::task::spawn_blocking(move || held_plans_now(&st)).await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "web console: reading the held sync runs stopped");
            Vec::new()
        }
    }
}

fn held_plans_now(state: &WebState) -> Vec<Arc<HeldPlan>> {
    let held = match state.app.sync.runs().held() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "web console: the held sync runs could not be read");
            return Vec::new();
        }
    };
    let mut cache = state
        .held
        .runs
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    cache.retain(|id, _| held.iter().any(|r| r.id == *id));
    let mut out = Vec::new();
    for rec in &held {
        if let Some(h) = cache.get(&rec.id) {
            out.push(h.clone());
            continue;
        }
        match held_plan(state, rec) {
            Ok(h) => {
                let h = Arc::new(h);
                cache.insert(rec.id, h.clone());
                out.push(h);
            }
            Err(e) => {
                tracing::error!(run = rec.id, error = %e, "web console: a held plan could not be read")
            }
        }
    }
    out
}

pub struct RunView {
    pub id: RunId,
    pub kind: &'static str,
    pub trigger: &'static str,
    pub started: String,
    pub duration: String,
    /// The outcome in words.
    pub outcome: &'static str,
    /// For the stylesheet (the words carry the meaning).
    pub outcome_class: &'static str,
    pub counts: String,
    pub message: String,
    pub errors: Vec<String>,
    pub errors_more: usize,
}

fn outcome_text(o: Outcome) -> (&'static str, &'static str) {
    match o {
        Outcome::Running => ("Running", "running"),
        Outcome::Applied => ("Applied", "ok"),
        Outcome::Held => ("Held for approval", "held"),
        Outcome::Approved => ("Approved and applied", "ok"),
        Outcome::Superseded => ("Held, then superseded", "muted"),
        Outcome::Failed => ("Failed", "failed"),
        Outcome::DryRun => ("Dry run (nothing changed)", "muted"),
        Outcome::Interrupted => ("Interrupted", "failed"),
    }
}

fn counts_text(c: &Counts) -> String {
    format!(
        "{} created, {} updated, {} activated, {} deactivated, {} unchanged, {} skipped, {} errors",
        c.created, c.updated, c.activated, c.deactivated, c.unchanged, c.skipped, c.errors
    )
}

fn run_view(state: &WebState, r: &RunRecord) -> RunView {
    let (outcome, outcome_class) = outcome_text(r.outcome);
    let duration = match r.finished_at {
        Some(f) => {
            let ms = f
                .signed_duration_since(r.started_at)
                .num_milliseconds()
                .max(0);
            format!("{}.{:03} s", ms / 1000, ms % 1000)
        }
        None => match state.app.sync.progress(r.id) {
            Some(p) => format!(
                "{} s so far ({} fetched, {} planned, {} of {} applied)",
                p.elapsed_ms / 1000,
                p.fetched,
                p.planned,
                p.applied,
                p.to_apply
            ),
            None => "—".into(),
        },
    };
    let errors = r
        .errors
        .iter()
        .take(ERRORS_SHOWN)
        .map(|e| format!("{}: {}", e.key, e.message))
        .collect::<Vec<_>>();
    RunView {
        id: r.id,
        kind: match r.kind {
            RunKind::Full => "full",
            RunKind::Incremental => "incremental",
        },
        trigger: r.trigger.as_str(),
        started: when(r.started_at),
        duration,
        outcome,
        outcome_class,
        counts: counts_text(&r.counts),
        message: r.message.clone().unwrap_or_default(),
        errors_more: r.errors.len() - errors.len() + r.errors_omitted,
        errors,
    }
}

pub struct SourceView {
    pub id: String,
    pub kind: &'static str,
    pub location: String,
    pub schedule: String,
    pub last_success: String,
    pub runs: Vec<RunView>,
}

#[derive(Template, WebTemplate)]
#[template(path = "sync.html")]
struct SyncPage {
    chrome: Chrome,
    manage: bool,
    held: Vec<Arc<HeldPlan>>,
    sources: Vec<SourceView>,
    notice: Option<String>,
}

#[derive(Deserialize)]
pub struct Notice {
    #[serde(default)]
    notice: Option<String>,
}

fn no_such_run(raw: &str) -> Response {
    let raw: String = raw.chars().take(40).collect();
    super::message_page(
        StatusCode::NOT_FOUND,
        "Sync",
        &format!("“{raw}” is not a run number."),
        Some(("/sync", "Back to Sync")),
    )
}

/// `GET /sync`
pub async fn sync_page(
    viewer: Viewer,
    State(state): State<WebState>,
    Query(q): Query<Notice>,
) -> Response {
    let sync = &state.app.sync;
    let mut sources = Vec::new();
    for s in sync.sources().iter() {
        let runs = match sync.runs().list(Some(&s.id), RUNS_SHOWN) {
            Ok(r) => r,
            Err(e) => return sync_error_page(e.into()),
        };
        let last_success = match sync.runs().state(&s.id) {
            Ok(st) => st.last_success.map(when).unwrap_or_else(|| "never".into()),
            Err(e) => return sync_error_page(e.into()),
        };
        let schedule = match (&s.full_schedule, &s.incremental_schedule) {
            (None, None) => "manual runs only".to_string(),
            (f, i) => [
                f.as_ref().map(|f| format!("full: {f}")),
                i.as_ref().map(|i| format!("incremental: {i}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; "),
        };
        sources.push(SourceView {
            id: s.id.clone(),
            kind: s.kind.name(),
            location: s.location(),
            schedule,
            last_success,
            runs: runs.iter().map(|r| run_view(&state, r)).collect(),
        });
    }
    SyncPage {
        chrome: Chrome::for_viewer(&viewer),
        manage: viewer.manage,
        held: held_plans(&state).await,
        sources,
        notice: q.notice.map(|n| n.chars().take(200).collect()),
    }
    .into_response()
}

fn refused(viewer: &Viewer) -> Response {
    tracing::warn!(actor = %viewer.actor, "sync action refused: no employees.manage");
    error_page(
        StatusCode::FORBIDDEN,
        "You may view the sync runs but not start or approve them (that needs the employees.manage permission).",
    )
}

fn to_sync(notice: &str) -> Response {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("notice", notice)
        .finish();
    Redirect::to(&format!("/sync?{q}")).into_response()
}

#[derive(Deserialize)]
pub struct RunForm {
    /// `run` or `dry_run`.
    #[serde(default)]
    mode: String,
}

/// `POST /sync/sources/{id}/run`: starts a full run (or a dry run) and answers
/// at once; the run goes on by itself.
pub async fn sync_run_post(
    viewer: Viewer,
    State(state): State<WebState>,
    Path(id): Path<String>,
    Form(form): Form<RunForm>,
) -> Response {
    if !viewer.manage {
        return refused(&viewer);
    }
    let dry_run = match form.mode.as_str() {
        "run" => false,
        "dry_run" => true,
        _ => return error_page(StatusCode::BAD_REQUEST, "Choose Run now or Dry run."),
    };
    tracing::info!(actor = %viewer.actor, source = %id, dry_run, "sync run started from the console");
    // The task goes on by itself (dropping its handle does not stop it).
    match state
        .app
        .sync
        .start(&id, RunKind::Full, dry_run, Trigger::Manual)
        .await
    {
        Ok((run, _task)) => to_sync(&format!(
            "{} {run} of {id} started; reload to see its outcome.",
            if dry_run { "Dry run" } else { "Run" }
        )),
        Err(e) => sync_error_page(e),
    }
}

/// `POST /sync/runs/{id}/approve`: applies a held plan as it was shown.
pub async fn sync_approve_post(
    viewer: Viewer,
    State(state): State<WebState>,
    Path(id): Path<String>,
) -> Response {
    if !viewer.manage {
        return refused(&viewer);
    }
    let Ok(id) = id.parse::<RunId>() else {
        return no_such_run(&id);
    };
    match state.app.sync.approve(id, &viewer.actor).await {
        Ok(rec) => to_sync(&format!(
            "Run {id} of {} approved and applied: {}.",
            rec.source,
            counts_text(&rec.counts)
        )),
        Err(e) => sync_error_page(e),
    }
}

pub struct PlanRow {
    pub action: &'static str,
    pub who: String,
    pub reason: String,
    pub fields: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "run.html")]
struct RunPage {
    chrome: Chrome,
    manage: bool,
    run: RunView,
    source: String,
    held: bool,
    rows: Vec<PlanRow>,
    from: usize,
    to: usize,
    total: usize,
    prev: Option<String>,
    next: Option<String>,
}

fn action_text(a: Action) -> &'static str {
    match a {
        Action::Create => "Create",
        Action::Update => "Update",
        Action::Activate => "Activate",
        Action::Deactivate => "Deactivate",
        Action::Unchanged => "Unchanged",
        Action::Held => "Kept inactive",
        Action::Skip => "Skip",
    }
}

fn plan_row(i: PlanItem) -> PlanRow {
    PlanRow {
        action: action_text(i.action),
        who: i.label,
        fields: i
            .changes
            .iter()
            .map(|c| c.field.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        reason: i.reason,
    }
}

#[derive(Deserialize)]
pub struct PlanQuery {
    #[serde(default)]
    offset: Option<usize>,
}

/// `GET /sync/runs/{id}`: a run's summary and its plan, a page at a time.
pub async fn sync_run_page(
    viewer: Viewer,
    State(state): State<WebState>,
    Path(id): Path<String>,
    Query(q): Query<PlanQuery>,
) -> Response {
    let Ok(id) = id.parse::<RunId>() else {
        return no_such_run(&id);
    };
    let rec = match state.app.sync.runs().get_header(id) {
        Ok(Some(r)) => r,
        Ok(None) => return sync_error_page(SyncError::RunNotFound(id)),
        Err(e) => return sync_error_page(e.into()),
    };
    let offset = q.offset.unwrap_or(0);
    let runs = state.app.sync.runs().clone();
    // Decoding a page passes over the whole stored plan: off the request threads.
    let page =
        match tokio::task::spawn_blocking(move || runs.plan_page(id, offset, PLAN_PAGE)).await {
            Ok(Ok(Some(p))) => p,
            Ok(Ok(None)) => return sync_error_page(SyncError::RunNotFound(id)),
            Ok(Err(e)) => return sync_error_page(e.into()),
            Err(e) => {
                return sync_error_page(SyncError::Store(crate::store::StoreError::Corrupt(
                    format!("reading the plan stopped: {e}"),
                )));
            }
        };
    let shown = page.items.len();
    let end = offset.saturating_add(shown);
    RunPage {
        chrome: Chrome::for_viewer(&viewer),
        manage: viewer.manage,
        run: run_view(&state, &rec),
        source: rec.source.clone(),
        held: rec.outcome == Outcome::Held,
        rows: page.items.into_iter().map(plan_row).collect(),
        from: if shown == 0 { 0 } else { offset + 1 },
        to: end,
        total: page.total,
        prev: (offset > 0).then(|| {
            format!(
                "/sync/runs/{id}?offset={}",
                offset.saturating_sub(PLAN_PAGE)
            )
        }),
        next: (end < page.total).then(|| format!("/sync/runs/{id}?offset={end}")),
    }
    .into_response()
}
