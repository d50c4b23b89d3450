//! The SCIM 2.0 endpoint (RFC 7643, RFC 7644) at `/scim/v2`, for identity providers
//! (Entra ID, Okta, OneLogin, JumpCloud). SCIM is a client of the domain: every
//! change goes through [`crate::employee::Roster`] (same uniqueness, catalog and
//! audit rules as the admin API) and is audited as `scim:<client name>`.
//!
//! # Resources and mapping
//!
//! - **User** = an employee profile: core schema, the Enterprise User extension and
//!   the rosterd extension `urn:rosterd:params:scim:schemas:extension:rosterd:2.0:User`
//!   (`positions`, `role`, `businessUnit`, `enabled`, `accountStatus`,
//!   `permissions`, `effectivePermissions`). `emails` holds the one profile email;
//!   `phoneNumbers` type `mobile` and `work` (the extension as RFC 3966
//!   `tel:+1-555-0100;ext=42`, or `<number>;ext=42` for a number with spaces); `photos` type `photo` (https links); `password` sets
//!   credentials and is never returned; `roles[0].value` is the role too.
//! - **Business unit vs department/division.** The rosterd `businessUnit` is the
//!   catalog-bound field (validated against `[[catalog.business_units]]`). The
//!   enterprise `department`, `division`, `organization`, `costCenter` and
//!   `employeeNumber` are free text stored verbatim (IdPs expect their values
//!   back unchanged). One bridge: when a request carries no `businessUnit` but its
//!   `division` names a catalog business unit (ignoring case), the business unit
//!   follows the division; a division that names no business unit is just stored.
//! - **Group** = a catalog position (stable id, persisted in the store, seeded
//!   from the config). `members` are the profiles holding the position, so Group
//!   PATCH and a user's `positions` change the same data. `POST /Groups` adds a
//!   position to the catalog; `DELETE` removes it from the catalog and its holders.
//! - A user created without a role gets `scim.default_role` (else the catalog
//!   default); without an email, `userName` if it is an address, else 400
//!   `invalidValue`; without any of `displayName`, `name.givenName`,
//!   `name.familyName`, 400. Its account status is `scim.account_status`
//!   (default `invite` when `[mail]` is configured, so the invitation goes out
//!   in the same transaction, else `later`), or `credentials` when the client's
//!   `passwords = "accept"` and a password was sent. With `passwords = "ignore"`
//!   (the default) an IdP's password is dropped; either way the audit entry says
//!   so. An IdP's password is never checked against `[password_policy]`.
//! - `/Schemas` publishes what is stored: each writable attribute round-trips
//!   (`scim-tests`' schema-driven client checks it); what every user has is
//!   `required` and a PATCH cannot remove it (400 `mutability`,
//!   [`patch::check_required`]); what rosterd sets itself is `readOnly`.
//!
//! # Behaviour worth knowing
//!
//! - PUT replaces core and enterprise attributes; a missing `active` or
//!   `password` keeps the current value; rosterd-extension attributes change only
//!   when the extension object is in the body (IdPs that do not know it leave
//!   them alone). PATCH is applied to the rendered resource, then stored as a
//!   replace (see [`patch`]).
//! - `userName`, `emails.value`, `externalId` and `id` equality filters are
//!   answered from the store's unique indexes; other filters stream over the
//!   store (see [`list`]). Filters see every profile, active or not, exactly as
//!   the uniqueness check does.
//! - ETags are `W/"<version>"`; `If-Match` → 412, `If-None-Match` → 304.
//! - Responses are `application/scim+json` (plain `application/json` when the
//!   client's `Accept` asks for JSON but not SCIM JSON, for OneLogin).
//! - `/Bulk` and `/Me` answer 501.

pub mod discovery;
pub mod error;
pub mod filter;
pub mod groups;
pub mod list;
pub mod matcher;
pub mod patch;
pub mod render;
pub mod schema;
pub mod user;
pub mod users;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use crate::auth::{SharedTokens, TokenSet};
use crate::config::ScimConfig;
use crate::employee::Roster;
use crate::store::{Actor, ActorKind};
pub use error::{ScimError, ScimJson};

/// Where the SCIM routes are mounted.
pub const BASE_PATH: &str = "/scim/v2";

/// Shared state of the SCIM layer: cheap handles only.
#[derive(Clone)]
pub struct ScimState {
    pub roster: Roster,
    /// The clients' tokens; replaced by a config reload.
    pub tokens: SharedTokens,
    /// Replaced by a config reload ([`ScimState::reconfigure`]).
    settings: Arc<RwLock<Arc<ScimConfig>>>,
    pub max_body_bytes: usize,
    /// Where unsorted list requests can resume (see [`list`]).
    pub resume: Arc<Mutex<HashMap<String, list::Resume>>>,
}

impl ScimState {
    pub fn new(roster: Roster, settings: &ScimConfig, max_body_bytes: usize) -> Self {
        Self {
            roster,
            tokens: SharedTokens::new(TokenSet::new(&settings.clients)),
            settings: Arc::new(RwLock::new(Arc::new(settings.clone()))),
            max_body_bytes,
            resume: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<ScimConfig> {
        self.settings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts a reloaded config's SCIM settings and client tokens in force.
    pub fn reconfigure(&self, settings: &ScimConfig) {
        self.tokens.replace(TokenSet::new(&settings.clients));
        *self
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(settings.clone());
    }
}

/// The SCIM routes, relative to [`BASE_PATH`].
pub fn routes(max_body_bytes: usize) -> Router<ScimState> {
    let not_allowed = || async { ScimError::method_not_allowed() };
    Router::new()
        // RFC 7644 §3.3 (create), §3.4.2 (query)
        .route(
            "/Users",
            get(users::users_list)
                .post(users::users_create)
                .fallback(not_allowed),
        )
        // RFC 7644 §3.4.3 (query with POST)
        .route("/Users/.search", post(users::users_search).fallback(not_allowed))
        // RFC 7644 §3.4.1 (retrieve), §3.5.1 (PUT), §3.5.2 (PATCH), §3.6 (DELETE)
        .route(
            "/Users/{id}",
            get(users::users_get)
                .put(users::users_replace)
                .patch(users::users_patch)
                .delete(users::users_delete)
                .fallback(not_allowed),
        )
        .route(
            "/Groups",
            get(groups::groups_list)
                .post(groups::groups_create)
                .fallback(not_allowed),
        )
        .route("/Groups/.search", post(groups::groups_search).fallback(not_allowed))
        .route(
            "/Groups/{id}",
            get(groups::groups_get)
                .put(groups::groups_replace)
                .patch(groups::groups_patch)
                .delete(groups::groups_delete)
                .fallback(not_allowed),
        )
        // RFC 7644 §4 (discovery): GET only, 405 otherwise
        .route(
            "/ServiceProviderConfig",
            get(discovery::service_provider_config).fallback(not_allowed),
        )
        .route(
            "/ResourceTypes",
            get(discovery::resource_types).fallback(not_allowed),
        )
        .route(
            "/ResourceTypes/{id}",
            get(discovery::resource_type).fallback(not_allowed),
        )
        .route("/Schemas", get(discovery::schemas).fallback(not_allowed))
        .route("/Schemas/{id}", get(discovery::schema).fallback(not_allowed))
        // RFC 7644 §3.7 (bulk), §3.11 (/Me): not supported
        .route(
            "/Bulk",
            axum::routing::any(|| async {
                ScimError::not_implemented("bulk operations are not supported (ServiceProviderConfig bulk.supported=false)")
            }),
        )
        .route(
            "/Me",
            axum::routing::any(|| async {
                ScimError::not_implemented("/Me is not supported: SCIM clients are not users")
            }),
        )
        .fallback(|| async { ScimError::not_found("no such SCIM endpoint") })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(negotiate_content_type))
}

/// Serves `application/json` instead of `application/scim+json` to clients whose
/// `Accept` names JSON but not SCIM JSON (OneLogin's documentation asks for it).
async fn negotiate_content_type(req: Request, next: Next) -> Response {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let plain = accept.contains("application/json") && !accept.contains("scim+json");
    let mut resp = next.run(req).await;
    if plain
        && resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes())
            == Some(error::SCIM_JSON.as_bytes())
    {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    resp
}

/// The authenticated SCIM client; changes are audited under its name.
pub struct ScimClient(pub Actor);

impl FromRequestParts<ScimState> for ScimClient {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &ScimState) -> Result<Self, ScimError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
            })
            .ok_or_else(ScimError::unauthorized)?;
        state
            .tokens
            .verify(token)
            .map(|name| {
                ScimClient(Actor {
                    kind: ActorKind::Scim,
                    name,
                })
            })
            .ok_or_else(ScimError::unauthorized)
    }
}

/// The absolute base URL of the SCIM endpoint as the client reached it, for
/// `meta.location` and `Location`: `X-Forwarded-Proto`/`-Host` (or `Forwarded`)
/// count only from a trusted proxy (`[http] trusted_proxies`, read by
/// [`crate::serve`] into [`crate::serve::ClientInfo`]); otherwise `Host`.
pub struct BaseUrl(pub String);

impl<S: Send + Sync> FromRequestParts<S> for BaseUrl {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let info = parts.extensions.get::<crate::serve::ClientInfo>();
        Ok(BaseUrl(base_url(&parts.headers, info)))
    }
}

fn base_url(h: &HeaderMap, info: Option<&crate::serve::ClientInfo>) -> String {
    let proto = info
        .and_then(|i| i.forwarded_proto.as_deref())
        .unwrap_or("http");
    let host = info
        .and_then(|i| i.forwarded_host.as_deref())
        .or_else(|| {
            h.get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|h| crate::serve::valid_host(h))
        })
        .unwrap_or("localhost");
    format!("{proto}://{host}{BASE_PATH}")
}

/// Reads `If-Match` / `If-None-Match`: `None` when absent, `Some(None)` for `*`.
pub fn etag_header(h: &HeaderMap, name: header::HeaderName) -> Option<Option<u64>> {
    let raw = h.get(name)?.to_str().ok()?.trim().to_string();
    if raw == "*" {
        return Some(None);
    }
    let v = raw
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse::<u64>()
        .unwrap_or(u64::MAX);
    Some(Some(v))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::config::NamedToken;
    use crate::secret::Secret;

    const TOKEN: &str = "unit-test-token-0123456789";

    fn app() -> (Router, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        let catalog = crate::employee::fixtures::one_role_catalog("Driver");
        let roster = Roster::new(store, catalog, Default::default(), 1024);
        let settings = ScimConfig {
            clients: vec![NamedToken {
                name: "idp".into(),
                token: Secret::new(TOKEN),
            }],
            ..Default::default()
        };
        let state = ScimState::new(roster, &settings, 64 * 1024);
        (routes(64 * 1024).with_state(state), dir)
    }

    fn req(method: &str, uri: &str, token: Option<&str>, body: &str) -> Request<Body> {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/scim+json");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Body::from(body.to_string())).unwrap()
    }

    async fn json(resp: Response) -> serde_json::Value {
        let b = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null)
    }

    #[tokio::test]
    async fn auth_methods_and_media_types() {
        let (app, _dir) = app();
        let r = app
            .clone()
            .oneshot(req("GET", "/Users", None, ""))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key("www-authenticate"));
        assert_eq!(json(r).await["status"], "401");
        let r = app
            .clone()
            .oneshot(req("GET", "/Users", Some("wrong-token-000000000"), ""))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = app
            .clone()
            .oneshot(req("GET", "/Users", Some(TOKEN), ""))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "application/scim+json");
        let r = app
            .clone()
            .oneshot(req("PUT", "/Schemas", Some(TOKEN), "{}"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(json(r).await["status"], "405");
        let r = app
            .clone()
            .oneshot(req("POST", "/Users", Some(TOKEN), "{nope"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(json(r).await["scimType"], "invalidSyntax");
        let big = format!("{{\"userName\": \"{}\"}}", "x".repeat(70 * 1024));
        let r = app
            .clone()
            .oneshot(req("POST", "/Users", Some(TOKEN), &big))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let mut plain = req("GET", "/ServiceProviderConfig", Some(TOKEN), "");
        plain
            .headers_mut()
            .insert("accept", HeaderValue::from_static("application/json"));
        let r = app.clone().oneshot(plain).await.unwrap();
        assert_eq!(r.headers()["content-type"], "application/json");
    }

    #[tokio::test]
    async fn create_and_find_by_index() {
        let (app, _dir) = app();
        let body =
            r#"{"userName": "Ann@Example.com", "name": {"givenName": "Ann", "familyName": "Lee"}}"#;
        let r = app
            .clone()
            .oneshot(req("POST", "/Users", Some(TOKEN), body))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let v = json(r).await;
        assert_eq!(v["emails"][0]["value"], "Ann@Example.com");
        assert_eq!(v[schema::ROSTERD]["role"], "Driver");
        let r = app
            .clone()
            .oneshot(req(
                "GET",
                "/Users?filter=userName%20eq%20%22ann%40example.com%22",
                Some(TOKEN),
                "",
            ))
            .await
            .unwrap();
        assert_eq!(json(r).await["totalResults"], 1);
    }

    /// `n` users whose names, display names, external ids and `active` vary
    /// in case, accents and emptiness: what sorts and filters must agree on.
    async fn create_varied_users(app: &Router, n: usize) {
        let given = ["Ana", "ÉMILE", "zoë", "", "Σοφία", "Bo"];
        let family = ["Abbott", "", "Ärger", "ZED", "ab"];
        for i in 0..n {
            let g = given[i % given.len()];
            let f = family[(i / 2) % family.len()];
            let f = if g.is_empty() && f.is_empty() {
                "Solo"
            } else {
                f
            };
            let display = if i % 3 == 0 {
                String::new()
            } else {
                format!(
                    r#", "displayName": "{} {f}""#,
                    ["Dr.", "ABBA", "émile"][i % 3]
                )
            };
            let ext = if i % 4 == 0 {
                String::new()
            } else {
                format!(r#", "externalId": "{}-{i}""#, ["EXT", "ext"][i % 2])
            };
            let body = format!(
                r#"{{"userName": "{}{i}@Example.com", "name": {{"givenName": "{g}", "familyName": "{f}"}}, "active": {}{display}{ext}}}"#,
                ["ana.", "Zed.", "émile."][i % 3],
                i % 5 != 0
            );
            let r = app
                .clone()
                .oneshot(req("POST", "/Users", Some(TOKEN), &body))
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED, "{body}");
        }
    }

    /// Filters and `sortBy` answered on the projection give the same pages
    /// and totals as the stored-profile path (forced by a clause the
    /// projection does not hold, `not (phoneNumbers pr)`, true for everyone
    /// here).
    #[tokio::test]
    async fn projection_answers_match_the_stored_profile_path() {
        let (app, _dir) = app();
        create_varied_users(&app, 40).await;
        let page = |q: String| {
            let app = app.clone();
            async move {
                let r = app
                    .oneshot(req("GET", &format!("/Users?{q}"), Some(TOKEN), ""))
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK, "{q}");
                let v = json(r).await;
                let ids: Vec<String> = v["Resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["id"].as_str().unwrap().to_string())
                    .collect();
                (v["totalResults"].as_u64().unwrap(), ids)
            }
        };
        let enc =
            |s: &str| -> String { url::form_urlencoded::byte_serialize(s.as_bytes()).collect() };
        let mut compared = 0;
        for filter in [
            "",
            r#"displayName co "ab""#,
            r#"userName sw "zed""#,
            r#"name.familyName ew "r" or externalId pr"#,
            "active eq true",
        ] {
            for sort in [
                "",
                "userName",
                "displayName",
                "name.givenName",
                "emails",
                "externalId",
                "id",
                "name.formatted",
                "active",
            ] {
                for (start, count, order) in [
                    (1, 100, "ascending"),
                    (3, 7, "descending"),
                    (30, 20, "ascending"),
                ] {
                    let mut q = format!("startIndex={start}&count={count}&sortOrder={order}");
                    if !sort.is_empty() {
                        q.push_str(&format!("&sortBy={sort}"));
                    }
                    if filter.is_empty() && sort.is_empty() {
                        continue;
                    }
                    let forced = if filter.is_empty() {
                        "not (phoneNumbers pr)".to_string()
                    } else {
                        format!("({filter}) and not (phoneNumbers pr)")
                    };
                    let fast = if filter.is_empty() {
                        page(q.clone()).await
                    } else {
                        page(format!("{q}&filter={}", enc(filter))).await
                    };
                    let slow = page(format!("{q}&filter={}", enc(&forced))).await;
                    assert_eq!(fast, slow, "filter {filter:?} sortBy {sort:?} {q}");
                    compared += 1;
                }
            }
        }
        assert!(compared > 100);
    }
}
