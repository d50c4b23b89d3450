//! Sign-in and server-side sessions.
//!
//! Who may sign in is what the roster says: an employee whose effective
//! permissions include [`VIEW`] (with the same rules and rate limits as
//! `/api/v1/auth/login`, through [`crate::admin::account::limited_login`]), or
//! anyone holding a named admin token (break-glass and first setup).
//!
//! The session id is 256 random bits in an `HttpOnly`, `SameSite=Strict` cookie
//! (named `__Host-rosterd_session` and `Secure` when served over TLS; rosterd
//! serves plain HTTP, so `rosterd_session`). The server keeps only its SHA-256
//! digest, **in memory**: a restart signs everyone out. A session ends after
//! [`SessionSettings::idle`] without a request, after
//! [`SessionSettings::absolute`] in any case, at sign-out, and at once when the
//! employee is deactivated, disabled or loses [`VIEW`], or the token is removed
//! by a reload: every request checks the profile (or the token set) afresh.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{Chrome, WebState};
use crate::admin::account::{ClientAddr, LoginRefused, limited_login};
use crate::employee::EmployeeId;
use crate::employee::account::AccountError;
use crate::secret::{Secret, random_token, token_digest};
use crate::store::Actor;

/// The permission that opens the console.
pub const VIEW: &str = "employees.view";
/// The permission that allows changes.
pub const MANAGE: &str = "employees.manage";

/// Session lifetimes and the cookie's form.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub idle: Duration,
    pub absolute: Duration,
    /// Served over TLS (or a trusted proxy says so): `Secure` and `__Host-`.
    pub secure: bool,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(12 * 60 * 60),
            secure: false,
        }
    }
}

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Employee(EmployeeId),
    /// An admin token, by its digest (so a reload that drops it ends the session).
    Token([u8; 32]),
}

#[derive(Debug)]
struct Session {
    who: Principal,
    created: Instant,
    last_seen: Instant,
}

/// The session table: id digest → session.
#[derive(Debug)]
pub struct Sessions {
    settings: SessionSettings,
    table: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    pub fn new(settings: SessionSettings) -> Self {
        Self {
            settings,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cookie's name.
    pub fn cookie_name(&self) -> &'static str {
        if self.settings.secure {
            "__Host-rosterd_session"
        } else {
            "rosterd_session"
        }
    }

    /// Starts a session; returns its id (the cookie's value, kept nowhere else).
    pub fn create(&self, who: Principal, now: Instant) -> Secret {
        let id = random_token();
        let mut t = self.table();
        // Expired sessions go when new ones come.
        let s = &self.settings;
        t.retain(|_, x| live(s, x, now));
        t.insert(
            token_digest(id.expose()),
            Session {
                who,
                created: now,
                last_seen: now,
            },
        );
        id
    }

    /// The live session with this id, refreshing its idle time.
    pub fn lookup(&self, id: &str, now: Instant) -> Option<Principal> {
        let d = token_digest(id);
        let mut t = self.table();
        let s = t.get_mut(&d)?;
        if !live(&self.settings, s, now) {
            t.remove(&d);
            return None;
        }
        s.last_seen = now;
        Some(s.who.clone())
    }

    /// Ends one session.
    pub fn end(&self, id: &str) {
        self.table().remove(&token_digest(id));
    }

    /// Ends every session of `who`.
    pub fn end_all(&self, who: &Principal) {
        self.table().retain(|_, s| s.who != *who);
    }

    /// How many sessions are held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `Set-Cookie` for a new session.
    fn set_cookie(&self, id: &Secret) -> HeaderValue {
        let secure = if self.settings.secure { "; Secure" } else { "" };
        let v = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            self.cookie_name(),
            id.expose(),
            self.settings.absolute.as_secs()
        );
        HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
    }

    /// `Set-Cookie` that removes the cookie.
    fn clear_cookie(&self) -> HeaderValue {
        let secure = if self.settings.secure { "; Secure" } else { "" };
        let v = format!(
            "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
            self.cookie_name()
        );
        HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
    }

    /// The session id the request's cookie carries.
    fn cookie<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        let name = self.cookie_name();
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

fn live(s: &SessionSettings, x: &Session, now: Instant) -> bool {
    now.saturating_duration_since(x.last_seen) < s.idle
        && now.saturating_duration_since(x.created) < s.absolute
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

/// Not signed in (or no longer allowed): to the sign-in page.
pub struct SignInFirst;

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        Redirect::to("/sign-in").into_response()
    }
}

impl FromRequestParts<WebState> for Viewer {
    type Rejection = SignInFirst;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, SignInFirst> {
        let sessions = &state.sessions;
        let id = sessions.cookie(&parts.headers).ok_or(SignInFirst)?;
        let who = sessions.lookup(id, Instant::now()).ok_or(SignInFirst)?;
        let viewer = resolve(state, &who);
        if viewer.is_none() {
            // Deactivated, disabled, lost the permission, or the token is gone.
            sessions.end_all(&who);
        }
        viewer.ok_or(SignInFirst)
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
    Form(form): Form<SignInForm>,
) -> Response {
    let now = Instant::now();
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
        return start(&state, Principal::Token(token_digest(token)), now);
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
            start(&state, Principal::Employee(e.id), now)
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

fn start(state: &WebState, who: Principal, now: Instant) -> Response {
    let id = state.sessions.create(who, now);
    let mut resp = Redirect::to("/employees").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, state.sessions.set_cookie(&id));
    resp
}

/// `POST /sign-out`
pub async fn sign_out_post(State(state): State<WebState>, headers: HeaderMap) -> Response {
    if let Some(id) = state.sessions.cookie(&headers) {
        state.sessions.end(id);
    }
    let mut resp = Redirect::to("/sign-in").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, state.sessions.clear_cookie());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_idle_and_absolute() {
        let s = Sessions::new(SessionSettings {
            idle: Duration::from_secs(10),
            absolute: Duration::from_secs(25),
            secure: false,
        });
        let t0 = Instant::now();
        let who = Principal::Employee(EmployeeId(uuid::Uuid::nil()));
        let id = s.create(who.clone(), t0);
        assert_eq!(id.expose().len(), 64, "256 bits, hex");
        // Only the digest is held.
        assert!(!format!("{:?}", s.table()).contains(id.expose()));
        assert_eq!(
            s.lookup(id.expose(), t0 + Duration::from_secs(9)),
            Some(who.clone())
        );
        assert_eq!(
            s.lookup(id.expose(), t0 + Duration::from_secs(18)),
            Some(who.clone())
        );
        // Kept alive, but past the absolute limit.
        assert_eq!(s.lookup(id.expose(), t0 + Duration::from_secs(26)), None);
        let id = s.create(who.clone(), t0);
        assert_eq!(
            s.lookup(id.expose(), t0 + Duration::from_secs(11)),
            None,
            "idle"
        );
        let id = s.create(who.clone(), t0);
        s.end_all(&who);
        assert_eq!(s.lookup(id.expose(), t0), None);
        assert_eq!(s.lookup("nope", t0), None);
    }

    #[test]
    fn cookie_is_strict_and_httponly() {
        let s = Sessions::new(SessionSettings::default());
        let v = s.set_cookie(&Secret::new("abc"));
        let v = v.to_str().unwrap();
        assert!(v.starts_with("rosterd_session=abc;"), "{v}");
        assert!(
            v.contains("HttpOnly") && v.contains("SameSite=Strict"),
            "{v}"
        );
        assert!(!v.contains("Secure"), "{v}");
        let s = Sessions::new(SessionSettings {
            secure: true,
            ..Default::default()
        });
        let v = s.set_cookie(&Secret::new("abc"));
        let v = v.to_str().unwrap();
        assert!(
            v.starts_with("__Host-rosterd_session=abc;") && v.contains("Secure"),
            "{v}"
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-rosterd_session=xyz"),
        );
        assert_eq!(s.cookie(&h), Some("xyz"));
    }
}
