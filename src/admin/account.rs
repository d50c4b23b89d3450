//! Public account endpoints (no admin token): accept an invitation, reset a
//! password, sign in. Plus the admin's view of the outbox. Tokens and passwords
//! arrive in JSON bodies (never in URLs the server logs) and never appear in an
//! answer.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, ApiError, ApiJson, AppState};
use crate::employee::Employee;
use crate::employee::account::AccountError;
use crate::secret::Secret;
use crate::store::OutboxRecord;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/account/accept-invite", post(account_accept_invite))
        .route(
            "/api/v1/account/reset-password",
            post(account_reset_password),
        )
        .route("/api/v1/auth/login", post(auth_login))
        .route("/api/v1/outbox", get(outbox_list))
        .route("/api/v1/outbox/{id}/retry", post(outbox_retry))
}

/// The client's address, when the server knows it: the peer's, or the one a
/// trusted proxy forwarded ([`crate::serve::ClientInfo`]); `None` over a unix
/// socket without a trusted proxy (and in `oneshot` tests).
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            match parts.extensions.get::<crate::serve::ClientInfo>() {
                Some(c) => c.ip,
                None => parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip()),
            },
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptInvite {
    token: Secret,
    username: String,
    password: Secret,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetPassword {
    token: Secret,
    password: Secret,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    login: String,
    password: Secret,
}

fn account_view(state: &AppState, e: &Employee) -> Value {
    json!({
        "id": e.id,
        "username": e.username,
        "display_name": e.display_name,
        "given_name": e.given_name,
        "family_name": e.family_name,
        "email": e.email,
        "role": e.role,
        "account_status": e.account_status,
        "effective_permissions": state.roster.effective_permissions(e),
    })
}

async fn account_accept_invite(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<AcceptInvite>,
) -> Result<Json<Value>, ApiError> {
    let e = state
        .roster
        .accept_invite(&req.token, &req.username, &req.password)
        .await?;
    Ok(Json(account_view(&state, &e)))
}

async fn account_reset_password(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ResetPassword>,
) -> Result<Json<Value>, ApiError> {
    let e = state
        .roster
        .reset_password(&req.token, &req.password)
        .await?;
    Ok(Json(account_view(&state, &e)))
}

/// The per-account limiter's key: the employee the login names (by username or
/// email alike), else a digest of the folded login (short, and the same answer
/// for a login that names nobody as for one that does).
fn account_key(state: &AppState, login: &str) -> Result<String, AccountError> {
    use sha2::Digest;
    Ok(
        match state
            .roster
            .login_account(login)
            .map_err(AccountError::Domain)?
        {
            Some(id) => format!("id:{id}"),
            None => {
                let folded = crate::employee::validate::fold(login.trim());
                let digest = sha2::Sha256::digest(folded.as_bytes());
                format!("h:{}", hex::encode(&digest[..16]))
            }
        },
    )
}

fn too_many(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs().max(1);
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many sign-in attempts; try again in {secs} seconds"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// `POST /api/v1/auth/login`: 200 with who the employee is and what they may do;
/// 401 for wrong credentials (unknown login or wrong password alike); 403 for an
/// inactive or not enabled profile; 429 past the per-address or per-account limit.
async fn auth_login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(req): ApiJson<Login>,
) -> Result<Response, ApiError> {
    if req.login.len() > crate::ratelimit::MAX_LOGIN_LEN {
        return Err(ApiError::bad_request(format!(
            "login is longer than {} bytes",
            crate::ratelimit::MAX_LOGIN_LEN
        ))
        .with_field("login"));
    }
    match limited_login(&state, addr, &req.login, &req.password).await {
        Ok(e) => Ok(Json(account_view(&state, &e)).into_response()),
        Err(LoginRefused::TooMany(wait)) => Ok(too_many(wait)),
        Err(LoginRefused::Account(e)) => Err(e.into()),
    }
}

/// Why [`limited_login`] refused a sign-in.
pub enum LoginRefused {
    /// Past the per-address or per-account limit; try again after this long.
    TooMany(std::time::Duration),
    Account(AccountError),
}

/// A sign-in under the per-address and per-account limits: the one path for the
/// API's `/api/v1/auth/login` and the web console's sign-in page.
pub async fn limited_login(
    state: &AppState,
    addr: Option<IpAddr>,
    login: &str,
    password: &Secret,
) -> Result<Employee, LoginRefused> {
    let now = Instant::now();
    // A login no account can have is refused before the limiter keeps it.
    if login.len() > crate::ratelimit::MAX_LOGIN_LEN {
        return Err(LoginRefused::Account(AccountError::Unauthorized));
    }
    let addr_key = addr.map(|a| a.to_string());
    let shown = addr_key.as_deref().unwrap_or("-");
    let limits = &state.login_limits;
    // Without a client address (a unix socket without a trusted proxy), the
    // per-address limit is off; the per-account limit still holds.
    if let Some(addr_key) = &addr_key {
        if let Err(wait) = limits.per_address.check(addr_key, now) {
            tracing::warn!(client = %addr_key, "sign-in refused: too many attempts from this address");
            return Err(LoginRefused::TooMany(wait));
        }
        limits.per_address.hit(addr_key, now);
    }
    let account_key = account_key(state, login).map_err(LoginRefused::Account)?;
    let addr_key = shown;
    if let Err(wait) = limits.per_account.check(&account_key, now) {
        tracing::warn!(client = %addr_key, "sign-in refused: too many failures for this account");
        return Err(LoginRefused::TooMany(wait));
    }
    match state.roster.login(login, password).await {
        Ok(e) => {
            limits.per_account.clear(&account_key);
            tracing::info!(employee = %e.id, client = %addr_key, "signed in");
            Ok(e)
        }
        Err(AccountError::Unauthorized) => {
            limits.per_account.hit(&account_key, now);
            tracing::info!(client = %addr_key, "sign-in failed: wrong login or password");
            Err(LoginRefused::Account(AccountError::Unauthorized))
        }
        Err(e) => Err(LoginRefused::Account(e)),
    }
}

fn outbox_view(m: &OutboxRecord) -> Value {
    json!({
        "id": m.id,
        "kind": m.kind,
        "employee_id": m.employee_id,
        "to": m.to,
        "state": m.state,
        "attempts": m.attempts,
        "created_at": m.created_at,
        "next_attempt_at": m.next_attempt_at,
        "expires_at": m.expires_at,
        "last_error": m.last_error,
        "sent_at": m.sent_at,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboxQuery {
    #[serde(default)]
    dead: bool,
    /// Page size (default 100, at most 1000).
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /api/v1/outbox[?dead=true][&limit=N][&cursor=C]`: oldest first, in pages;
/// `next_cursor` is `null` on the last page.
async fn outbox_list(
    _: Admin,
    State(state): State<AppState>,
    q: Result<Query<OutboxQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(c.parse::<u64>().map_err(|_| {
            ApiError::bad_request("cursor must be a next_cursor from a previous page")
                .with_field("cursor")
        })?),
        None => None,
    };
    let (page, next) = state.roster.outbox_page(q.dead, after, limit)?;
    let items: Vec<Value> = page.iter().map(outbox_view).collect();
    Ok(Json(json!({
        "items": items,
        "next_cursor": next.map(|n| n.to_string()),
    })))
}

async fn outbox_retry(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: u64 = id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("`{id}` is not an outbox message id"),
        )
    })?;
    let m = state.roster.outbox_retry(id).await?;
    Ok(Json(outbox_view(&m)))
}
