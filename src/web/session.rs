//! Sign-in and server-side sessions.
//!
//! Who may sign in is what the roster says: an employee whose effective
//! permissions include [`VIEW`] (with the same rules and rate limits as
//! `/api/v1/auth/login`, through [`crate::admin::account::limited_login`]), or
//! anyone holding a named admin token (break-glass and first setup).
//!
//! The session id is 256 random bits in an `HttpOnly`, `SameSite=Strict` cookie.
//! When the request came over HTTPS (a trusted proxy says
//! `X-Forwarded-Proto: https`; rosterd itself serves plain HTTP) the cookie is
//! `__Host-rosterd_session` and `Secure`; on plain HTTP it is `rosterd_session`,
//! so a newcomer on `http://127.0.0.1:8080` can sign in. Only the id's SHA-256
//! digest is kept, **in the store** (`Backend::session_*`), so sessions survive
//! a restart; the id itself is never written anywhere. A session ends after
//! [`SessionSettings::idle`] without a request, after
//! [`SessionSettings::absolute`] in any case, at sign-out (its row is deleted),
//! and at once when the employee is deactivated, disabled or loses [`VIEW`], or
//! the token is removed by a reload: every request checks the profile (or the
//! token set) afresh, and a failed check deletes every session of that
//! principal. Expired rows are pruned whenever a session starts.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Chrome, WebState};
use crate::admin::account::{ClientAddr, LoginRefused, limited_login};
use crate::employee::EmployeeId;
use crate::employee::account::AccountError;
use crate::secret::{Secret, random_token, token_digest};
use crate::store::{Actor, Store, StoreError};

/// The permission that opens the console.
pub const VIEW: &str = "employees.view";
/// The permission that allows changes.
pub const MANAGE: &str = "employees.manage";

/// The cookie's name over HTTPS (`Secure`, no `Domain`, `Path=/`).
pub const SECURE_COOKIE: &str = "__Host-rosterd_session";
/// The cookie's name over plain HTTP.
pub const PLAIN_COOKIE: &str = "rosterd_session";

/// Session lifetimes.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub idle: chrono::Duration,
    pub absolute: chrono::Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle: chrono::Duration::minutes(30),
            absolute: chrono::Duration::hours(12),
        }
    }
}

impl SessionSettings {
    /// How stale a stored `last_seen` may get before a request writes it anew
    /// (so that not every page view is a write).
    fn refresh(&self) -> chrono::Duration {
        (self.idle / 10).min(chrono::Duration::seconds(60))
    }
}

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Principal {
    Employee(EmployeeId),
    /// An admin token, by its digest (so a reload that drops it ends the session).
    Token([u8; 32]),
}

/// One stored session (the row's format; the key is the id's digest).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    who: Principal,
    created: DateTime<Utc>,
    last_seen: DateTime<Utc>,
}

/// Whether a request came over HTTPS, as far as rosterd can tell: a trusted
/// proxy said `X-Forwarded-Proto: https` (or `Forwarded: proto=https`).
/// Forwarded headers from anyone else were already dropped by
/// [`crate::serve::ClientInfo::from_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    pub https: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Transport {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Transport::of(parts))
    }
}

impl Transport {
    fn of(parts: &Parts) -> Self {
        let https = parts
            .extensions
            .get::<crate::serve::ClientInfo>()
            .and_then(|c| c.forwarded_proto.as_deref())
            == Some("https");
        Transport { https }
    }

    /// The cookie's name on this transport.
    pub fn cookie_name(self) -> &'static str {
        if self.https {
            SECURE_COOKIE
        } else {
            PLAIN_COOKIE
        }
    }

    fn attributes(self) -> &'static str {
        if self.https { "; Secure" } else { "" }
    }
}

/// The session table, in the store: id digest → [`Row`].
pub struct Sessions {
    settings: SessionSettings,
    store: Store,
}

fn dec(b: &[u8]) -> Option<Row> {
    serde_json::from_slice(b).ok()
}

fn enc(r: &Row) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(r).map_err(|e| StoreError::Corrupt(format!("session row: {e}")))
}

impl Sessions {
    pub fn new(settings: SessionSettings, store: Store) -> Self {
        Self { settings, store }
    }

    fn live(&self, r: &Row, now: DateTime<Utc>) -> bool {
        now.signed_duration_since(r.last_seen) < self.settings.idle
            && now.signed_duration_since(r.created) < self.settings.absolute
    }

    /// Starts a session, durably; returns its id (the cookie's value, kept
    /// nowhere else). Expired sessions are deleted first.
    pub async fn create(&self, who: Principal, now: DateTime<Utc>) -> Result<Secret, StoreError> {
        self.prune(now)?;
        let id = random_token();
        let row = Row {
            who,
            created: now,
            last_seen: now,
        };
        self.store
            .session_put(&token_digest(id.expose()), &enc(&row)?)?;
        self.store.flush().await?;
        Ok(id)
    }

    /// The live session with this id, refreshing its idle time. An expired or
    /// unreadable row is deleted.
    pub fn lookup(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Principal>, StoreError> {
        let d = token_digest(id);
        let Some(bytes) = self.store.session_get(&d)? else {
            return Ok(None);
        };
        let Some(mut row) = dec(&bytes).filter(|r| self.live(r, now)) else {
            self.store.session_remove(&d)?;
            return Ok(None);
        };
        if now.signed_duration_since(row.last_seen) >= self.settings.refresh() {
            // Not flushed: losing it in a crash only makes the session end sooner.
            row.last_seen = now;
            self.store.session_put(&d, &enc(&row)?)?;
        }
        Ok(Some(row.who))
    }

    /// Ends one session, durably.
    pub async fn end(&self, id: &str) -> Result<(), StoreError> {
        self.store.session_remove(&token_digest(id))?;
        self.store.flush().await
    }

    /// Ends every session of `who`, durably.
    pub async fn end_all(&self, who: &Principal) -> Result<usize, StoreError> {
        let mut n = 0;
        for (k, v) in self.store.sessions_all()? {
            if dec(&v).is_none_or(|r| r.who == *who) {
                self.store.session_remove(&k)?;
                n += 1;
            }
        }
        self.store.flush().await?;
        Ok(n)
    }

    /// Deletes the expired (and unreadable) rows; returns how many.
    pub fn prune(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut n = 0;
        for (k, v) in self.store.sessions_all()? {
            if dec(&v).is_none_or(|r| !self.live(&r, now)) {
                self.store.session_remove(&k)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// How many sessions are stored (live or not yet pruned).
    pub fn count(&self) -> Result<usize, StoreError> {
        Ok(self.store.sessions_all()?.len())
    }

    /// `Set-Cookie` for a new session.
    fn set_cookie(&self, t: Transport, id: &Secret) -> HeaderValue {
        let v = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            t.cookie_name(),
            id.expose(),
            self.settings.absolute.num_seconds(),
            t.attributes()
        );
        HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
    }

    /// `Set-Cookie` that removes the cookie.
    fn clear_cookie(&self, t: Transport) -> HeaderValue {
        let v = format!(
            "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
            t.cookie_name(),
            t.attributes()
        );
        HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
    }

    /// The session id the request's cookie carries (only the cookie of this
    /// transport: over HTTPS a plain `rosterd_session` is not believed).
    fn cookie(t: Transport, headers: &HeaderMap) -> Option<&str> {
        let name = t.cookie_name();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

fn store_failed(e: StoreError) -> Response {
    tracing::error!(error = %e, "web console: the session table could not be read or written");
    super::error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Your session could not be checked; try again, and tell an administrator if it persists.",
    )
}

/// The signed-in user of a console request, checked afresh against the roster.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// Recorded in the audit log for what this user changes.
    pub actor: Actor,
    /// Shown in the page header.
    pub label: String,
    /// May change the roster (`employees.manage`, or an admin token).
    pub manage: bool,
}

fn sign_in_first() -> Response {
    Redirect::to("/sign-in").into_response()
}

impl FromRequestParts<WebState> for Viewer {
    /// Not signed in (or no longer allowed): to the sign-in page.
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Response> {
        let sessions = &state.sessions;
        let t = Transport::of(parts);
        let id = Sessions::cookie(t, &parts.headers).ok_or_else(sign_in_first)?;
        let who = sessions
            .lookup(id, Utc::now())
            .map_err(store_failed)?
            .ok_or_else(sign_in_first)?;
        match resolve(state, &who) {
            Some(v) => Ok(v),
            None => {
                // Deactivated, disabled, lost the permission, or the token is gone.
                sessions.end_all(&who).await.map_err(store_failed)?;
                Err(sign_in_first())
            }
        }
    }
}

/// Who `who` is now, if they may still use the console.
fn resolve(state: &WebState, who: &Principal) -> Option<Viewer> {
    match who {
        Principal::Employee(id) => {
            let roster = &state.app.roster;
            let e = roster.get(*id).ok()?;
            if !e.active || !e.enabled {
                return None;
            }
            let perms = roster.effective_permissions(&e);
            if !perms.iter().any(|p| p == VIEW) {
                return None;
            }
            Some(Viewer {
                actor: Actor::employee(e.id, &e.display_name),
                label: e.display_name.clone(),
                manage: perms.iter().any(|p| p == MANAGE),
            })
        }
        Principal::Token(d) => {
            let tokens = state.app.admin_tokens.current();
            let name = tokens.name_of_digest(d)?;
            Some(Viewer {
                actor: Actor::admin(name),
                label: format!("admin token “{name}”"),
                manage: true,
            })
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "sign_in.html")]
struct SignInPage {
    chrome: Chrome,
    login: String,
    error: Option<String>,
    token_error: Option<String>,
}

fn sign_in_page(
    status: StatusCode,
    login: &str,
    error: Option<String>,
    token_error: Option<String>,
) -> Response {
    (
        status,
        SignInPage {
            chrome: Chrome::anonymous(),
            login: login.to_string(),
            error,
            token_error,
        },
    )
        .into_response()
}

/// `GET /sign-in`
pub async fn sign_in_get() -> Response {
    sign_in_page(StatusCode::OK, "", None, None)
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    token: Option<Secret>,
}

/// `POST /sign-in`: an employee's login and password, or an admin token.
pub async fn sign_in_post(
    State(state): State<WebState>,
    ClientAddr(addr): ClientAddr,
    t: Transport,
    Form(form): Form<SignInForm>,
) -> Response {
    let now = std::time::Instant::now();
    if let Some(token) = form.token.filter(|t| !t.expose().trim().is_empty()) {
        let limits = &state.app.login_limits;
        let key = addr.map(|a| a.to_string()).unwrap_or_else(|| "-".into());
        if let Err(wait) = limits.per_address.check(&key, now) {
            let m = format!(
                "Too many sign-in attempts; try again in {} seconds.",
                wait.as_secs().max(1)
            );
            return sign_in_page(StatusCode::TOO_MANY_REQUESTS, "", None, Some(m));
        }
        limits.per_address.hit(&key, now);
        let token = token.expose().trim();
        if state.app.admin_tokens.verify(token).is_none() {
            tracing::info!(client = %key, "console sign-in with an unknown token");
            return sign_in_page(
                StatusCode::UNAUTHORIZED,
                "",
                None,
                Some("That is not an admin token of this rosterd.".into()),
            );
        }
        return start(&state, t, Principal::Token(token_digest(token))).await;
    }
    let password = form.password.unwrap_or_else(|| Secret::new(""));
    match limited_login(&state.app, addr, &form.login, &password).await {
        Ok(e) => {
            let perms = state.app.roster.effective_permissions(&e);
            if !perms.iter().any(|p| p == VIEW) {
                return sign_in_page(
                    StatusCode::FORBIDDEN,
                    &form.login,
                    Some(format!(
                        "Your account may not use the console (it needs the {VIEW} permission); ask an administrator."
                    )),
                    None,
                );
            }
            start(&state, t, Principal::Employee(e.id)).await
        }
        Err(LoginRefused::TooMany(wait)) => sign_in_page(
            StatusCode::TOO_MANY_REQUESTS,
            &form.login,
            Some(format!(
                "Too many sign-in attempts; try again in {} seconds.",
                wait.as_secs().max(1)
            )),
            None,
        ),
        Err(LoginRefused::Account(AccountError::Domain(e))) => super::domain_error_page(e),
        Err(LoginRefused::Account(e)) => {
            let status = match e {
                AccountError::Forbidden(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            let mut m = e.to_string();
            if let Some(first) = m.get(..1) {
                m = first.to_uppercase() + &m[1..] + ".";
            }
            sign_in_page(status, &form.login, Some(m), None)
        }
    }
}

async fn start(state: &WebState, t: Transport, who: Principal) -> Response {
    let id = match state.sessions.create(who, Utc::now()).await {
        Ok(id) => id,
        Err(e) => return store_failed(e),
    };
    let mut resp = Redirect::to("/employees").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, state.sessions.set_cookie(t, &id));
    resp
}

/// `POST /sign-out`: deletes the session's row and the cookie.
pub async fn sign_out_post(
    State(state): State<WebState>,
    t: Transport,
    headers: HeaderMap,
) -> Response {
    if let Some(id) = Sessions::cookie(t, &headers)
        && let Err(e) = state.sessions.end(id).await
    {
        return store_failed(e);
    }
    let mut resp = Redirect::to("/sign-in").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, state.sessions.clear_cookie(t));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(idle: i64, absolute: i64) -> (tempfile::TempDir, Sessions) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = Sessions::new(
            SessionSettings {
                idle: chrono::Duration::seconds(idle),
                absolute: chrono::Duration::seconds(absolute),
            },
            store,
        );
        (dir, s)
    }

    #[tokio::test]
    async fn sessions_expire_idle_and_absolute_and_are_pruned() {
        let (_dir, s) = sessions(100, 250);
        let secs = chrono::Duration::seconds;
        let t0 = Utc::now();
        let who = Principal::Employee(EmployeeId(uuid::Uuid::nil()));
        let id = s.create(who.clone(), t0).await.unwrap();
        assert_eq!(id.expose().len(), 64, "256 bits, hex");
        // Only the digest is held: the row and its key carry no trace of the id.
        for (k, v) in s.store.sessions_all().unwrap() {
            assert_eq!(k, token_digest(id.expose()));
            assert!(!String::from_utf8_lossy(&v).contains(id.expose()));
        }
        assert_eq!(
            s.lookup(id.expose(), t0 + secs(90)).unwrap(),
            Some(who.clone())
        );
        // Refreshed at 90 s, so alive at 180 s.
        assert_eq!(
            s.lookup(id.expose(), t0 + secs(180)).unwrap(),
            Some(who.clone())
        );
        // Kept alive, but past the absolute limit: gone, and its row deleted.
        assert_eq!(s.lookup(id.expose(), t0 + secs(260)).unwrap(), None);
        assert_eq!(s.count().unwrap(), 0);
        let idle = s.create(who.clone(), t0).await.unwrap();
        assert_eq!(
            s.lookup(idle.expose(), t0 + secs(110)).unwrap(),
            None,
            "idle"
        );
        // Expired rows are pruned when a session starts.
        let _stale = s.create(who.clone(), t0).await.unwrap();
        let other = Principal::Token([7; 32]);
        let fresh = s.create(other.clone(), t0 + secs(200)).await.unwrap();
        assert_eq!(s.count().unwrap(), 1);
        let mine = s.create(who.clone(), t0 + secs(200)).await.unwrap();
        assert_eq!(s.end_all(&who).await.unwrap(), 1);
        assert_eq!(s.lookup(mine.expose(), t0 + secs(201)).unwrap(), None);
        assert_eq!(
            s.lookup(fresh.expose(), t0 + secs(201)).unwrap(),
            Some(other)
        );
        s.end(fresh.expose()).await.unwrap();
        assert_eq!(s.lookup(fresh.expose(), t0 + secs(201)).unwrap(), None);
        assert_eq!(s.lookup("nope", t0).unwrap(), None);
    }

    #[tokio::test]
    async fn sessions_survive_reopening_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let who = Principal::Token([9; 32]);
        let id = {
            let s = Sessions::new(SessionSettings::default(), Store::open(dir.path()).unwrap());
            s.create(who.clone(), Utc::now()).await.unwrap()
        };
        let s = Sessions::new(SessionSettings::default(), Store::open(dir.path()).unwrap());
        assert_eq!(s.lookup(id.expose(), Utc::now()).unwrap(), Some(who));
    }

    #[test]
    fn cookie_is_strict_and_httponly_and_secure_over_https() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sessions::new(SessionSettings::default(), Store::open(dir.path()).unwrap());
        let plain = Transport { https: false };
        let v = s.set_cookie(plain, &Secret::new("abc"));
        let v = v.to_str().unwrap();
        assert!(v.starts_with("rosterd_session=abc;"), "{v}");
        assert!(
            v.contains("HttpOnly") && v.contains("SameSite=Strict") && v.contains("Path=/"),
            "{v}"
        );
        assert!(!v.contains("Secure"), "{v}");
        let tls = Transport { https: true };
        let v = s.set_cookie(tls, &Secret::new("abc"));
        let v = v.to_str().unwrap();
        assert!(
            v.starts_with("__Host-rosterd_session=abc;") && v.contains("; Secure"),
            "{v}"
        );
        assert!(!v.contains("Domain"), "{v}");
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-rosterd_session=xyz; rosterd_session=plain"),
        );
        assert_eq!(Sessions::cookie(tls, &h), Some("xyz"));
        assert_eq!(Sessions::cookie(plain, &h), Some("plain"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("rosterd_session=plain"),
        );
        assert_eq!(Sessions::cookie(tls, &h), None, "not believed over HTTPS");
    }
}
