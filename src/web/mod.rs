//! The web console, served at `/` on the same listener as the API: the
//! Employees screen (list, filters, sort, paging, bulk actions; [`employees`]),
//! the Add / Edit Employee form with the Profile Actions ([`form`]), sign-in with
//! server-side sessions ([`session`]), and the employee pages that invitation and
//! reset mails link to ([`account`]), and the Sync page with the held-plan
//! banner ([`sync`]). Server-rendered askama templates
//! (`src/web/templates/`, autoescaped), one stylesheet and one small script of our
//! own embedded in the binary ([`assets`]). Handlers call [`Roster`] directly,
//! like the admin API; nothing here reads the store.
//!
//! Every response carries a strict Content-Security-Policy (no inline script, no
//! eval, no framing); every state-changing request passes [`cross_origin_check`].
//!
//! [`Roster`]: crate::employee::Roster

pub mod account;
pub mod assets;
pub mod employees;
mod error;
pub mod form;
pub mod session;
pub mod sync;

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::admin::AppState;
pub use error::domain_error_page;
pub use session::{Sessions, Viewer};

/// The policy on every console response: our own script and stylesheet only,
/// no inline code, no eval, forms post only here, never in a frame.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data: https:; connect-src 'self'; form-action 'self'; \
frame-ancestors 'none'; base-uri 'none'";

/// State of the console: the API's handles plus the session table.
#[derive(Clone)]
pub struct WebState {
    pub app: AppState,
    pub sessions: Arc<Sessions>,
    /// The held sync plans the banner shows, read once each.
    pub held: Arc<sync::HeldCache>,
}

/// The console's routes, with their state; merge into the daemon's router.
pub fn routes(app: AppState) -> Router {
    let sessions = Sessions::new(
        session::SessionSettings::default(),
        app.roster.store().clone(),
    );
    let state = WebState {
        app,
        sessions: Arc::new(sessions),
        held: Arc::default(),
    };
    // The Add / Edit form carries the photo: room for the largest one.
    let form_limit = state.app.roster.photo_max_bytes() + form::FORM_ALLOWANCE;
    let form_routes = Router::new()
        .route(
            "/employees/new",
            get(form::employee_new_get).post(form::employee_new_post),
        )
        .route(
            "/employees/{id}",
            get(form::employee_edit_get).post(form::employee_edit_post),
        )
        .layer(axum::extract::DefaultBodyLimit::max(form_limit));
    Router::new()
        .merge(form_routes)
        .route("/", get(|| async { Redirect::to("/employees") }))
        .route("/static/{file}", get(assets::asset_get))
        .route(
            "/sign-in",
            get(session::sign_in_get).post(session::sign_in_post),
        )
        .route("/sign-out", post(session::sign_out_post))
        .route(
            "/accept-invite",
            get(account::accept_invite_get).post(account::accept_invite_post),
        )
        .route(
            "/reset-password",
            get(account::reset_password_get).post(account::reset_password_post),
        )
        .route("/employees", get(employees::employees_list))
        .route("/employees.csv", get(employees::employees_csv))
        .route("/employees/bulk", post(employees::employees_bulk))
        .route("/employees/{id}/actions", post(form::employee_action_post))
        .route("/employees/{id}/photo", get(employees::employee_photo))
        .route("/sync", get(sync::sync_page))
        .route("/sync/sources/{id}/run", post(sync::sync_run_post))
        .route("/sync/runs/{id}", get(sync::sync_run_page))
        .route("/sync/runs/{id}/approve", post(sync::sync_approve_post))
        .layer(axum::middleware::from_fn(cross_origin_check))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// Adds the CSP and the other browser-hardening headers to every response.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Invite and reset links carry their token in the URL: never pass it on.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Go's `CrossOriginProtection` rule: a state-changing request from a browser
/// must say `Sec-Fetch-Site: same-origin` (or `none`, typed by the user); a
/// browser that sends no Fetch Metadata must send an `Origin` whose host is the
/// `Host` asked for. A request with neither header is not from a browser (no
/// cookie of a victim rides on it) and passes. Anything else is 403.
async fn cross_origin_check(req: Request, next: Next) -> Response {
    if matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) || same_origin(req.headers())
    {
        return next.run(req).await;
    }
    tracing::warn!(path = %req.uri().path(), "cross-origin request refused");
    error_page(
        StatusCode::FORBIDDEN,
        "This request came from another site and was refused. Nothing was changed.",
    )
}

/// The decision of [`cross_origin_check`] for an unsafe method.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| url::Url::parse(o).ok())
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        });
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// What every page's frame shows: the assets' URLs and who is signed in.
pub struct Chrome {
    pub css: &'static str,
    pub js: &'static str,
    /// The signed-in user's name, when someone is.
    pub who: Option<String>,
}

impl Chrome {
    pub fn anonymous() -> Self {
        Self {
            css: assets::css_url(),
            js: assets::js_url(),
            who: None,
        }
    }

    pub fn for_viewer(v: &Viewer) -> Self {
        Self {
            who: Some(v.label.clone()),
            ..Self::anonymous()
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "message.html")]
struct MessagePage {
    chrome: Chrome,
    title: String,
    message: String,
    link: Option<(String, String)>,
}

/// A plain page with a title, a message and an optional link (href, text).
pub fn message_page(
    status: StatusCode,
    title: &str,
    message: &str,
    link: Option<(&str, &str)>,
) -> Response {
    (
        status,
        MessagePage {
            chrome: Chrome::anonymous(),
            title: title.to_string(),
            message: message.to_string(),
            link: link.map(|(h, t)| (h.to_string(), t.to_string())),
        },
    )
        .into_response()
}

pub fn error_page(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    message_page(
        status,
        title,
        message,
        Some(("/employees", "Back to Employees")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn cross_origin_rule() {
        assert!(same_origin(&h(&[("sec-fetch-site", "same-origin")])));
        assert!(same_origin(&h(&[("sec-fetch-site", "none")])));
        assert!(!same_origin(&h(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&h(&[("sec-fetch-site", "same-site")])));
        // No Fetch Metadata: Origin against Host.
        assert!(same_origin(&h(&[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(!same_origin(&h(&[
            ("origin", "http://127.0.0.2:9000"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(!same_origin(&h(&[("origin", "null"), ("host", "a")])));
        // Not a browser.
        assert!(same_origin(&h(&[("host", "127.0.0.1:8080")])));
    }
}
