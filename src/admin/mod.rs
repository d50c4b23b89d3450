//! The admin HTTP API under `/api/v1` (JSON, bearer admin token), used by
//! `rosterctl`, plus `/healthz` and `/readyz`, and the public account endpoints
//! (`/api/v1/account/*`, `/api/v1/auth/login`, see [`account`]). Handlers extract, call the domain and
//! map the error; [`error::ApiError`] picks every status code.

pub mod account;
pub mod error;
pub mod sync;
pub mod view;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::auth::SharedTokens;
use crate::employee::list::Filters;
use crate::employee::{EmployeeId, EmployeePatch, ListQuery, NewEmployee, Roster, StatusFilter};
use crate::store::Actor;
pub use error::ApiError;
use view::EmployeeView;

/// Shared state of the HTTP layer: cheap handles only.
#[derive(Clone)]
pub struct AppState {
    pub roster: Roster,
    /// Replaced by a config reload.
    pub admin_tokens: SharedTokens,
    pub sync: crate::sync::SyncEngine,
    /// Sign-in rate limits (per client address, per account).
    pub login_limits: Arc<crate::ratelimit::LoginLimits>,
}

/// The admin API and health routes.
pub fn routes(max_body_bytes: usize, photo_max_bytes: usize) -> Router<AppState> {
    let photo_routes = Router::new()
        .route(
            "/api/v1/employees/{id}/photo",
            get(photo_get).put(photo_put).delete(photo_delete),
        )
        // Room for the largest photo; the domain checks the exact limit.
        .layer(DefaultBodyLimit::max(photo_max_bytes + 1));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/catalog", get(catalog_get))
        .route(
            "/api/v1/employees",
            get(employees_list).post(employees_create),
        )
        .route("/api/v1/employees/bulk", post(employees_bulk))
        .route(
            "/api/v1/employees/{key}",
            get(employees_show).patch(employees_update),
        )
        .route("/api/v1/employees/{id}/activate", post(employees_activate))
        .route(
            "/api/v1/employees/{id}/deactivate",
            post(employees_deactivate),
        )
        .route("/api/v1/audit", get(audit_list))
        .merge(sync::routes())
        .merge(account::routes())
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .merge(photo_routes)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
}

/// The authenticated admin: the audit log records the token's name.
pub struct Admin(pub Actor);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(ApiError::unauthorized)?;
        state
            .admin_tokens
            .verify(token)
            .map(|name| Admin(Actor::admin(name)))
            .ok_or_else(ApiError::unauthorized)
    }
}

/// `Json<T>` whose rejections come back as [`ApiError`]s.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| ApiJson(v))
            .map_err(ApiError::from)
    }
}

fn parse_id(raw: &str) -> Result<EmployeeId, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("`{raw}` is not an employee id"),
        )
    })
}

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("W/\"{version}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// Reads `If-Match: W/"N"` or `"N"` as an expected version.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or_default().trim();
    let s = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
    s.parse().map(Some).map_err(|_| {
        ApiError::bad_request("If-Match must be an ETag this server sent, e.g. W/\"3\"")
    })
}

fn employee_response(
    state: &AppState,
    status: StatusCode,
    e: &crate::employee::Employee,
) -> Response {
    let view = EmployeeView::new(e, state.roster.effective_permissions(e));
    let mut resp = (status, Json(view)).into_response();
    resp.headers_mut().insert(header::ETAG, etag(e.version));
    resp
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the store answers reads and a probe write is made durable
/// within [`READY_WRITE_TIMEOUT`]: a process whose writes are wedged is not.
async fn readyz(State(state): State<AppState>) -> Response {
    let unavailable = |why: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": why})),
        )
            .into_response()
    };
    if !state.roster.store_ready() {
        return unavailable("store not ready");
    }
    if !state.roster.writable(READY_WRITE_TIMEOUT).await {
        return unavailable("writes are not completing");
    }
    (StatusCode::OK, Json(serde_json::json!({"status": "ready"}))).into_response()
}

/// How long `/readyz` waits for its probe write.
pub const READY_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

async fn catalog_get(_: Admin, State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(view::catalog(&state.roster.catalog()))
}

async fn employees_list(
    _: Admin,
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut q = ListQuery::default();
    let mut filters = Filters::default();
    for (k, v) in &params {
        match k.as_str() {
            "status" => {
                q.status = match v.as_str() {
                    "active" => StatusFilter::Active,
                    "inactive" => StatusFilter::Inactive,
                    "all" => StatusFilter::All,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "status must be active, inactive or all, not `{v}`"
                        ))
                        .with_field("status"));
                    }
                }
            }
            "limit" => {
                q.limit = Some(v.parse().map_err(|_| {
                    ApiError::bad_request("limit must be a number").with_field("limit")
                })?)
            }
            "cursor" => q.cursor = Some(v.clone()),
            "sort" => q.sort = v.parse()?,
            col => filters.set(col, v)?,
        }
    }
    q.filters = filters;
    let page = state.roster.list(&q)?;
    let items: Vec<EmployeeView> = page
        .items
        .iter()
        .map(|e| EmployeeView::new(e, state.roster.effective_permissions(e)))
        .collect();
    Ok(Json(serde_json::json!({
        "items": items,
        "next_cursor": page.next_cursor,
        "total": page.total,
    })))
}

async fn employees_create(
    Admin(actor): Admin,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<NewEmployee>,
) -> Result<Response, ApiError> {
    let e = state.roster.create(&actor, input).await?;
    let mut resp = employee_response(&state, StatusCode::CREATED, &e);
    if let Ok(loc) = HeaderValue::from_str(&format!("/api/v1/employees/{}", e.id)) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

async fn employees_show(
    _: Admin,
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let e = state.roster.find(&key)?;
    Ok(employee_response(&state, StatusCode::OK, &e))
}

async fn employees_update(
    Admin(actor): Admin,
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    ApiJson(patch): ApiJson<EmployeePatch>,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let id = parse_id(&key)?;
    let e = state.roster.update(&actor, id, patch, expected).await?;
    Ok(employee_response(&state, StatusCode::OK, &e))
}

async fn employees_activate(
    Admin(actor): Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_active(&state, &actor, &id, true).await
}

async fn employees_deactivate(
    Admin(actor): Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_active(&state, &actor, &id, false).await
}

/// Activates or deactivates one employee; answers with the profile.
async fn set_active(
    state: &AppState,
    actor: &Actor,
    id: &str,
    active: bool,
) -> Result<Response, ApiError> {
    let (e, _) = state
        .roster
        .set_active(actor, parse_id(id)?, active)
        .await?;
    Ok(employee_response(state, StatusCode::OK, &e))
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum BulkAction {
    Activate,
    Deactivate,
    SendInvite,
    SendPasswordReset,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkRequest {
    action: BulkAction,
    ids: Vec<String>,
    #[serde(default)]
    dry_run: bool,
}

async fn employees_bulk(
    Admin(actor): Admin,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<BulkRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::employee::account::SendKind;
    let r = &state.roster;
    let results = match req.action {
        BulkAction::Activate => {
            r.bulk_set_active(&actor, &req.ids, true, req.dry_run)
                .await?
        }
        BulkAction::Deactivate => {
            r.bulk_set_active(&actor, &req.ids, false, req.dry_run)
                .await?
        }
        BulkAction::SendInvite => {
            r.bulk_send(&actor, &req.ids, SendKind::Invite, req.dry_run)
                .await?
        }
        BulkAction::SendPasswordReset => {
            r.bulk_send(&actor, &req.ids, SendKind::PasswordReset, req.dry_run)
                .await?
        }
    };
    let succeeded = results.iter().filter(|r| r.ok).count();
    let changed = results.iter().filter(|r| r.changed).count();
    Ok(Json(serde_json::json!({
        "dry_run": req.dry_run,
        "succeeded": succeeded,
        "failed": results.len() - succeeded,
        "changed": changed,
        "results": results,
    })))
}

async fn photo_get(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (content_type, bytes) = state.roster.photo(parse_id(&id)?)?;
    Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
}

async fn photo_put(
    Admin(actor): Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let e = state
        .roster
        .set_photo(&actor, parse_id(&id)?, ct, body.to_vec())
        .await?;
    Ok(employee_response(&state, StatusCode::OK, &e))
}

async fn photo_delete(
    Admin(actor): Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let e = state.roster.remove_photo(&actor, parse_id(&id)?).await?;
    Ok(employee_response(&state, StatusCode::OK, &e))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// Employee id, email or username.
    employee: Option<String>,
    /// Continue below this sequence number (from the previous page's `next_before`).
    before: Option<u64>,
    limit: Option<usize>,
}

async fn audit_list(
    _: Admin,
    State(state): State<AppState>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q?;
    // An id is taken as is, so the history of a deleted profile stays readable.
    let employee = match &q.employee {
        Some(key) => match key.parse::<EmployeeId>() {
            Ok(id) => Some(id),
            Err(_) => Some(state.roster.find(key)?.id),
        },
        None => None,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let entries = state.roster.audit(employee, q.before, limit)?;
    let next_before = if entries.len() == limit {
        entries.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(Json(serde_json::json!({
        "items": entries,
        "next_before": next_before,
    })))
}
