//! Admin API for sync: sources, manual runs (with dry run), run history, approval
//! of held plans, and "explain" (which client or source set each field, and when).
//!
//! A run answers with its summary (counts, timings, outcome, the first errors),
//! never with its plan: the plan (one item per changed profile, 100,000 on a
//! first import) is read page by page from `/api/v1/sync/runs/{id}/plan`. A run
//! in flight shows its `progress`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Admin, ApiError, AppState};
use crate::sync::plan::{Counts, PlanItem};
use crate::sync::progress::ProgressView;
use crate::sync::runs::{
    EntryError, FetchMode, MAX_RUN_ERRORS, Outcome, RunId, RunRecord, Timings, Trigger,
};
use crate::sync::{RunKind, SyncError};

/// The errors a run's summary shows unless asked for more (`?errors=N`).
const SUMMARY_ERRORS: usize = 20;
/// Plan items per page unless asked otherwise, and at most.
const PLAN_PAGE: usize = 500;
const PLAN_PAGE_MAX: usize = 5000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sync/sources", get(sources_list))
        .route("/api/v1/sync/sources/{id}/run", post(sources_run))
        .route("/api/v1/sync/runs", get(runs_list))
        .route("/api/v1/sync/runs/{id}", get(runs_show))
        .route("/api/v1/sync/runs/{id}/plan", get(runs_plan))
        .route("/api/v1/sync/runs/{id}/approve", post(runs_approve))
        .route("/api/v1/employees/{key}/explain", get(employees_explain))
}

/// What a run answers with: everything but its plan, its first errors, and
/// its progress while it runs.
#[derive(Serialize)]
struct RunSummary<'a> {
    id: RunId,
    source: &'a str,
    kind: RunKind,
    trigger: Trigger,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    outcome: Outcome,
    message: Option<&'a str>,
    entries_seen: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    fetch: Option<FetchMode>,
    counts: &'a Counts,
    timings_ms: &'a Timings,
    /// The first errors and warnings.
    errors: &'a [EntryError],
    /// How many more there were.
    errors_omitted: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<ProgressView>,
}

fn run_summary(r: &RunRecord, errors: usize, progress: Option<ProgressView>) -> RunSummary<'_> {
    let shown = &r.errors[..r.errors.len().min(errors)];
    RunSummary {
        id: r.id,
        source: &r.source,
        kind: r.kind,
        trigger: r.trigger,
        started_at: r.started_at,
        finished_at: r.finished_at,
        outcome: r.outcome,
        message: r.message.as_deref(),
        entries_seen: r.entries_seen,
        fetch: r.fetch,
        counts: &r.counts,
        timings_ms: &r.timings_ms,
        errors: shown,
        errors_omitted: r.errors_omitted + (r.errors.len() - shown.len()),
        // Only while the record says running: a finished run's record is
        // written a moment before its progress is let go.
        progress: progress.filter(|_| r.outcome == crate::sync::runs::Outcome::Running),
    }
}

fn summary(r: &crate::sync::runs::RunRecord) -> Value {
    json!({
        "id": r.id, "source": r.source, "kind": r.kind, "trigger": r.trigger,
        "started_at": r.started_at, "finished_at": r.finished_at, "outcome": r.outcome,
        "message": r.message, "entries_seen": r.entries_seen, "fetch": r.fetch, "counts": r.counts,
        "errors": r.errors.len(),
    })
}

async fn sources_list(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let mut out = Vec::new();
    // Who runs each source across nodes (PostgreSQL; none on sled).
    let leases = state.sync.store().leases()?;
    for s in state.sync.sources().iter() {
        let last = state.sync.runs().list(Some(&s.id), 1)?;
        let st = state.sync.runs().state(&s.id)?;
        let lease = leases.iter().find(|l| l.source == s.id);
        out.push(json!({
            "id": s.id, "kind": s.kind.name(), "location": s.location(),
            "priority": s.priority, "lifecycle": s.lifecycle, "provides": s.provides(),
            "full_schedule": s.full_schedule, "incremental_schedule": s.incremental_schedule,
            "high_water_mark": st.high_water_mark, "sync_cookie": st.sync_cookie,
            "last_success": st.last_success,
            "last_run": last.first().map(summary),
            "lease": lease.map(|l| json!({
                "holder": l.holder, "epoch": l.epoch, "expires_at": l.expires_at,
                "free": l.expired,
            })),
        }));
    }
    Ok(Json(json!({ "items": out })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RunRequest {
    kind: Option<RunKind>,
    #[serde(default)]
    dry_run: bool,
    /// `false`: answer 202 with the run's id as soon as it has started, and
    /// let it go on (its progress is at `GET /api/v1/sync/runs/{id}`).
    wait: Option<bool>,
}

async fn sources_run(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    // An empty body means a full, real run.
    let req: RunRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RunRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    let kind = req.kind.unwrap_or(RunKind::Full);
    if req.wait == Some(false) {
        // The task goes on by itself (dropping its handle does not stop it).
        let (run, _task) = state
            .sync
            .start(&id, kind, req.dry_run, Trigger::Manual)
            .await?;
        let rec = state
            .sync
            .runs()
            .get_header(run)?
            .ok_or(SyncError::RunNotFound(run))?;
        let summary = run_summary(&rec, SUMMARY_ERRORS, state.sync.progress(run));
        return Ok((StatusCode::ACCEPTED, Json(summary)).into_response());
    }
    let rec = state
        .sync
        .run(&id, kind, req.dry_run, Trigger::Manual)
        .await?;
    Ok(Json(run_summary(&rec, SUMMARY_ERRORS, None)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    source: Option<String>,
    limit: Option<usize>,
}

async fn runs_list(
    _: Admin,
    State(state): State<AppState>,
    q: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let runs = state
        .sync
        .runs()
        .list(q.source.as_deref(), q.limit.unwrap_or(50).clamp(1, 1000))?;
    Ok(Json(
        json!({ "items": runs.iter().map(summary).collect::<Vec<_>>() }),
    ))
}

fn run_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("`{raw}` is not a run id"),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShowQuery {
    /// How many of the run's errors to show (at most the 1000 kept).
    errors: Option<usize>,
}

async fn runs_show(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<ShowQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let id = run_id(&id)?;
    let rec = state
        .sync
        .runs()
        .get_header(id)?
        .ok_or(SyncError::RunNotFound(id))?;
    let errors = q.errors.unwrap_or(SUMMARY_ERRORS).min(MAX_RUN_ERRORS);
    Ok(Json(run_summary(&rec, errors, state.sync.progress(id))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanQuery {
    offset: Option<usize>,
    limit: Option<usize>,
}

/// A page of a run's plan.
#[derive(Serialize)]
struct PlanPageBody {
    items: Vec<PlanItem>,
    offset: usize,
    /// Items in the whole plan.
    total: usize,
    /// Where the next page starts; `null` after the last.
    next_offset: Option<usize>,
}

async fn runs_plan(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<PlanQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let id = run_id(&id)?;
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(PLAN_PAGE).clamp(1, PLAN_PAGE_MAX);
    let runs = state.sync.runs().clone();
    // Decoding a page passes over the whole stored plan: off the request threads.
    let page = tokio::task::spawn_blocking(move || runs.plan_page(id, offset, limit))
        .await
        .map_err(|e| crate::store::StoreError::Corrupt(format!("reading the plan stopped: {e}")))??
        .ok_or(SyncError::RunNotFound(id))?;
    let end = offset.saturating_add(page.items.len());
    Ok(Json(PlanPageBody {
        next_offset: (end < page.total).then_some(end),
        items: page.items,
        offset,
        total: page.total,
    })
    .into_response())
}

async fn runs_approve(
    Admin(actor): Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let rec = state.sync.approve(run_id(&id)?, &actor).await?;
    Ok(Json(run_summary(&rec, SUMMARY_ERRORS, None)).into_response())
}

/// For each field: its value, who set it last and when (from the audit log).
async fn employees_explain(
    _: Admin,
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let e = state.roster.find(&key)?;
    let mut fields = serde_json::Map::new();
    let mut before = None;
    loop {
        let page = state.roster.audit(Some(e.id), before, 1000)?;
        for entry in &page {
            for c in &entry.changes {
                fields.entry(c.field.clone()).or_insert_with(|| {
                    json!({ "value": c.after, "set_by": entry.actor, "at": entry.at, "action": entry.action })
                });
            }
        }
        match page.last() {
            Some(last) if page.len() == 1000 => before = Some(last.seq),
            _ => break,
        }
    }
    // Which linked source writes each field: highest priority first, the first wins.
    let sources = state.sync.sources();
    let owners: serde_json::Map<String, Value> = crate::sync::engine::field_owners(&sources, &e)
        .into_iter()
        .map(|(f, by)| {
            let by: Vec<Value> = by
                .into_iter()
                .map(|(source, priority)| json!({ "source": source, "priority": priority }))
                .collect();
            (f.to_string(), Value::Array(by))
        })
        .collect();
    let now = state.sync.now();
    let lifecycle_sources = crate::sync::engine::lifecycle_order(&sources);
    let says: serde_json::Map<String, Value> = e
        .source_facts
        .iter()
        .map(|(id, f)| {
            (
                id.clone(),
                json!({
                    "facts": f,
                    "lifecycle": lifecycle_sources.contains(id),
                    "inactive_reason": f.inactive_reason(now),
                    "next_change": f.next_transition(now),
                }),
            )
        })
        .collect();
    let verdict = crate::sync::plan::verdict(&lifecycle_sources, &e, now, None);
    Ok(Json(json!({
        "id": e.id,
        "email": e.email,
        "sources": e.source_keys,
        "fields": fields,
        "owners": owners,
        "lifecycle": {
            "active": e.active,
            "deactivated_by": e.deactivated_by,
            "sources": says,
            "inactive_because": verdict.map(|(source, reason)| json!({ "source": source, "reason": reason })),
        },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the API returns (and the store keeps) are the serde names, so
    /// `as_str` (used for metrics and the status line) says the same.
    #[test]
    fn trigger_and_outcome_names_are_the_serde_names() {
        for t in [Trigger::Schedule, Trigger::Manual, Trigger::Start] {
            assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
            assert_eq!(
                serde_json::from_value::<Trigger>(json!(t.to_string())).unwrap(),
                t
            );
        }
        assert_eq!(Trigger::Schedule.as_str(), "schedule");
        assert_eq!(Trigger::Manual.as_str(), "manual");
        assert_eq!(Trigger::Start.as_str(), "start");
        for o in [
            Outcome::Running,
            Outcome::Applied,
            Outcome::Held,
            Outcome::Approved,
            Outcome::Superseded,
            Outcome::Failed,
            Outcome::DryRun,
            Outcome::Interrupted,
        ] {
            assert_eq!(serde_json::to_value(o).unwrap(), json!(o.as_str()));
        }
    }
}
