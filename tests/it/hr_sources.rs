//! HR sources at the fetch level: an HR API served by axum on 127.0.0.1 inside
//! the test (auth checked, paged in each supported style, faults injected), and
//! CSV exports from files and URLs. Sources are built by parsing config text, as
//! the daemon does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use rosterd::sync::config::SourceKind;
use rosterd::sync::sources::hr::{self, CsvSource, FetchError, HrFetched, HttpSource};

const TOKEN: &str = "hr-token-5f0c1e9a7d";
const TZ: chrono_tz::Tz = chrono_tz::America::Chicago;

/// What the fake API demands.
#[derive(Clone)]
enum Expect {
    Bearer(&'static str),
    Basic(&'static str, &'static str),
    Header(&'static str, &'static str),
    Query(&'static str, &'static str),
}

#[derive(Default)]
struct ApiState {
    /// Requests served (any status).
    requests: usize,
    /// Request number (1-based) → status to answer instead.
    faults: HashMap<usize, u16>,
    /// From this request number on, always this status.
    fail_from: Option<(usize, u16)>,
    /// Replace the body of every page.
    raw_body: Option<String>,
}

struct Api {
    base: String,
    state: Arc<Mutex<ApiState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Api {
    fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }
}

#[derive(Clone)]
struct AppState {
    expect: Expect,
    state: Arc<Mutex<ApiState>>,
}

/// Seven employees of a small fleet company.
fn employees() -> Vec<Value> {
    let e = |id: &str,
             first: &str,
             last: &str,
             title: &str,
             dept: &str,
             status: &str,
             hire: &str,
             term: Value,
             boss: Value| {
        json!({
            "id": id,
            "workEmail": format!("{}.{}@example.com", first.to_lowercase(), last.to_lowercase()),
            "firstName": first,
            "lastName": last,
            "jobTitle": title,
            "department": dept,
            "status": status,
            "hireDate": hire,
            "terminationDate": term,
            "supervisorId": boss,
        })
    };
    vec![
        e(
            "1001",
            "Dana",
            "Reyes",
            "Fleet Manager",
            "Head Office",
            "Active",
            "2018-03-05",
            Value::Null,
            Value::Null,
        ),
        e(
            "1002",
            "Omar",
            "Haddad",
            "Dispatcher",
            "North",
            "Active",
            "2019-07-15",
            Value::Null,
            json!("1001"),
        ),
        e(
            "1003",
            "Lena",
            "Vogel",
            "Driver",
            "North",
            "Active",
            "2020-01-06",
            Value::Null,
            json!("1002"),
        ),
        e(
            "1004",
            "Raj",
            "Patel",
            "Mechanic",
            "South",
            "Active",
            "2021-09-13",
            Value::Null,
            json!("1001"),
        ),
        e(
            "1005",
            "Mia",
            "Santos",
            "Driver",
            "South",
            "Terminated",
            "2017-05-02",
            json!("2024-06-30"),
            json!("1002"),
        ),
        e(
            "1006",
            "Theo",
            "Brandt",
            "Driver",
            "North",
            "Active",
            "2031-02-03",
            Value::Null,
            json!("1002"),
        ),
        e(
            "1007",
            "Ines",
            "Moreau",
            "Dispatcher",
            "South",
            "Active",
            "2022-11-21",
            Value::Null,
            json!("1001"),
        ),
    ]
}

fn authorized(expect: &Expect, headers: &HeaderMap, q: &HashMap<String, String>) -> bool {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    match expect {
        Expect::Bearer(t) => h("authorization") == format!("Bearer {t}"),
        Expect::Basic(u, p) => {
            use base64::Engine;
            let want = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            h("authorization") == format!("Basic {want}")
        }
        Expect::Header(name, v) => h(name) == *v,
        Expect::Query(name, v) => q.get(*name).map(String::as_str) == Some(*v),
    }
}

fn num(q: &HashMap<String, String>, k: &str, default: usize) -> usize {
    q.get(k).and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn serve(
    State(app): State<AppState>,
    Path(style): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (n, fault, raw) = {
        let mut s = app.state.lock().unwrap();
        s.requests += 1;
        let n = s.requests;
        let fault = s
            .faults
            .get(&n)
            .copied()
            .or(s.fail_from.filter(|(from, _)| n >= *from).map(|(_, c)| c));
        (n, fault, s.raw_body.clone())
    };
    if !authorized(&app.expect, &headers, &q) {
        return (
            StatusCode::UNAUTHORIZED,
            "{\"error\":\"invalid credentials\"}",
        )
            .into_response();
    }
    // The first page never fails, so faults land "on the way".
    if let Some(code) = fault.filter(|_| n > 1) {
        let status = StatusCode::from_u16(code).unwrap();
        let mut r = (status, "{\"error\":\"try later\"}").into_response();
        if code == 429 {
            r.headers_mut()
                .insert(header::RETRY_AFTER, "1".parse().unwrap());
        }
        return r;
    }
    if let Some(raw) = raw {
        return ([(header::CONTENT_TYPE, "application/json")], raw).into_response();
    }
    let all = employees();
    let slice = |from: usize, len: usize| -> Vec<Value> {
        all.iter().skip(from).take(len).cloned().collect()
    };
    match style.as_str() {
        // {"employees": [...], "links": {"next": "/v1/next?after=2"}} (relative)
        "next" => {
            let after = num(&q, "after", 0);
            let page = slice(after, 2);
            let next = (after + 2 < all.len()).then(|| format!("/v1/next?after={}", after + 2));
            axum::Json(json!({ "employees": page, "links": { "next": next } })).into_response()
        }
        // A bare array with an RFC 8288 Link header (absolute URLs).
        "link" => {
            let page = num(&q, "page", 1);
            let host = headers
                .get(header::HOST)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let mut links = vec![format!("<http://{host}/v1/link?page=1>; rel=\"first\"")];
            if page * 3 < all.len() {
                links.push(format!(
                    "<http://{host}/v1/link?page={}>; rel=\"next\"",
                    page + 1
                ));
            }
            (
                [(header::LINK, links.join(", "))],
                axum::Json(Value::Array(slice((page - 1) * 3, 3))),
            )
                .into_response()
        }
        // ?page=1&per_page=3 → {"data": [...]}
        "page" => {
            let size = num(&q, "per_page", 25);
            let page = num(&q, "page", 1);
            axum::Json(json!({ "data": slice((page - 1) * size, size) })).into_response()
        }
        // ?offset=0&limit=5, capped at 3 per page → {"total": 7, "data": [...]}
        "offset" => {
            let limit = num(&q, "limit", 20).min(3);
            let offset = num(&q, "offset", 0);
            axum::Json(json!({ "total": all.len(), "data": slice(offset, limit) })).into_response()
        }
        // ?cursor=c2 → {"items": [...], "meta": {"nextCursor": "c4"}}
        "cursor" => {
            let at: usize = q
                .get("cursor")
                .and_then(|c| c.strip_prefix('c'))
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let next = (at + 2 < all.len()).then(|| format!("c{}", at + 2));
            axum::Json(json!({ "items": slice(at, 2), "meta": { "nextCursor": next } }))
                .into_response()
        }
        // A redirect to wherever `to` says.
        "moved" => (
            StatusCode::FOUND,
            [(header::LOCATION, q.get("to").cloned().unwrap_or_default())],
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A BambooHR-style custom report: POST, JSON body (exact content type), all
/// employees in one response.
async fn report(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    app.state.lock().unwrap().requests += 1;
    if !authorized(&app.expect, &headers, &q) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if ct != Some("application/json")
        || q.get("format").map(String::as_str) != Some("JSON")
        || !req["fields"]
            .as_array()
            .is_some_and(|f| f.contains(&json!("workEmail")))
    {
        return (StatusCode::BAD_REQUEST, "Malformed XML").into_response();
    }
    axum::Json(json!({ "title": req["title"], "fields": req["fields"], "employees": employees() }))
        .into_response()
}

/// A CSV export (Windows-1252, `;`-separated) behind basic auth.
async fn export(State(app): State<AppState>, headers: HeaderMap) -> Response {
    app.state.lock().unwrap().requests += 1;
    if !authorized(&app.expect, &headers, &HashMap::new()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let text = "Personalnummer;Vorname;Nachname;E-Mail;Abteilung\n\
                2001;J\u{fc}rgen;M\u{fc}ller;juergen.mueller@example.com;North\n\
                2002;Ren\u{e9}e;Fran\u{e7}ois;renee.francois@example.com;South\n";
    let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(text);
    (
        [(header::CONTENT_TYPE, "text/csv; charset=windows-1252")],
        bytes.into_owned(),
    )
        .into_response()
}

async fn start(expect: Expect) -> Api {
    let state = Arc::new(Mutex::new(ApiState::default()));
    let app = axum::Router::new()
        .route("/v1/{style}", axum::routing::get(serve))
        .route("/export.csv", axum::routing::get(export))
        .route("/v1/reports/custom", axum::routing::post(report))
        .with_state(AppState {
            expect,
            state: state.clone(),
        });
    let (base, task) = crate::common::serve(app).await;
    Api { base, state, task }
}

const FIELDS: &str = r#"
[sources.fields]
email = "/workEmail"
given_name = "/firstName"
family_name = "/lastName"
positions = { from = "/jobTitle", map = { "Fleet Manager" = "" } }
role = { from = "/jobTitle", map = { "Dispatcher" = "Dispatcher", "Fleet Manager" = "Administrator" } }
default_role = "Technician"
business_unit = "/department"
manager = "/supervisorId"
hire_date = "/hireDate"
termination_date = "/terminationDate"
status = { from = "/status", inactive = ["Terminated"] }
"#;

/// Parses a one-source config (shipped catalog) and returns its kind.
fn parse_source(block: &str) -> (SourceKind, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let block = block.replace("{dir}", &dir.path().display().to_string());
    let config = crate::common::test_config(dir.path(), &block);
    let kind = config.sources[0].kind.clone();
    (kind, dir)
}

/// An http source: `top` holds the top-level keys, `tables` the sub-tables.
fn http_source(url: &str, top: &str, tables: &str, token: &str) -> (HttpSource, tempfile::TempDir) {
    let block = format!(
        r#"
[[sources]]
id = "hr"
kind = "http"
url = "{url}"
timezone = "America/Chicago"
join_key = "/id"
{top}
[sources.retry]
attempts = 4
initial_backoff_ms = 10
max_backoff_secs = 2
{tables}
{FIELDS}
"#
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hr.token"), format!("{token}\n")).unwrap();
    let block = block.replace("{dir}", &dir.path().display().to_string());
    let config = crate::common::test_config(dir.path(), &block);
    match config.sources[0].kind.clone() {
        SourceKind::Http(h) => (h, dir),
        other => panic!("{}", other.name()),
    }
}

const BEARER: &str = r#"
[sources.auth]
kind = "bearer"
token_file = "{dir}/hr.token"
"#;

async fn fetch(src: &HttpSource) -> Result<HrFetched, FetchError> {
    tokio::time::timeout(Duration::from_secs(30), hr::fetch_http(src, TZ))
        .await
        .expect("fetch finishes in time")
}

/// Every employee came through, in order, with nothing refused.
fn assert_all(f: &HrFetched) {
    let keys: Vec<&str> = f.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["1001", "1002", "1003", "1004", "1005", "1006", "1007"]
    );
    assert!(f.errors.is_empty(), "{:?}", f.errors);
}

#[tokio::test]
async fn next_link_pages_with_a_bearer_token() {
    let api = start(Expect::Bearer(TOKEN)).await;
    let url = format!("{}/v1/next", api.base);
    let (src, _dir) = http_source(
        &url,
        "records = \"/employees\"",
        &format!("{BEARER}\n[sources.pagination]\nkind = \"next_link\"\nnext = \"/links/next\"\n"),
        TOKEN,
    );
    let f = fetch(&src).await.unwrap();
    assert_all(&f);
    assert_eq!(api.requests(), 4, "pages of 2");
    // The mapping ran on what the API said.
    let by_key = |k: &str| f.entries.iter().find(|e| e.key == k).unwrap();
    let dana = by_key("1001");
    assert_eq!(dana.fields.email, "dana.reyes@example.com");
    assert_eq!(dana.fields.role.as_deref(), Some("Administrator"));
    assert_eq!(dana.fields.positions, Some(vec![]));
    assert_eq!(dana.fields.business_unit, Some(Some("Head Office".into())));
    assert_eq!(dana.dn, "record 1 (page 1)");
    let lena = by_key("1003");
    assert_eq!(lena.fields.positions, Some(vec!["Driver".into()]));
    assert_eq!(lena.fields.role.as_deref(), Some("Technician"));
    assert_eq!(lena.manager.as_deref(), Some("1002"));
    assert_eq!(lena.dn, "record 3 (page 2)");
    let mia = by_key("1005");
    assert_eq!(mia.disabled.as_deref(), Some("status \"Terminated\""));
    let term = mia.termination.unwrap();
    assert_eq!(term.date.to_string(), "2024-06-30");
    // Midnight in Chicago (CDT, UTC-5).
    assert_eq!(term.at.to_rfc3339(), "2024-06-30T05:00:00+00:00");
    let theo = by_key("1006");
    assert_eq!(theo.hire.unwrap().date.to_string(), "2031-02-03");
    assert_eq!(theo.disabled, None);
    assert_eq!(src.location(), url);
}

#[tokio::test]
async fn link_header_pages_with_basic_auth() {
    let api = start(Expect::Basic("rosterd", TOKEN)).await;
    let (src, _dir) = http_source(
        &format!("{}/v1/link", api.base),
        "",
        r#"
[sources.auth]
kind = "basic"
username = "rosterd"
password_file = "{dir}/hr.token"
[sources.pagination]
kind = "link_header"
"#,
        TOKEN,
    );
    assert_all(&fetch(&src).await.unwrap());
    assert_eq!(api.requests(), 3, "pages of 3");
}

#[tokio::test]
async fn page_numbers_with_an_api_key_header() {
    let api = start(Expect::Header("x-api-key", TOKEN)).await;
    let (src, _dir) = http_source(
        &format!("{}/v1/page", api.base),
        "records = \"/data\"",
        r#"
[sources.auth]
kind = "header"
header = "X-API-Key"
token_file = "{dir}/hr.token"
[sources.pagination]
kind = "page"
page_param = "page"
size_param = "per_page"
size = 3
"#,
        TOKEN,
    );
    assert_all(&fetch(&src).await.unwrap());
    // 3 + 3 + 1: the short third page is the last.
    assert_eq!(api.requests(), 3);
}

#[tokio::test]
async fn offset_and_limit_with_a_total_follow_a_capped_page_size() {
    let api = start(Expect::Bearer(TOKEN)).await;
    let (src, _dir) = http_source(
        &format!("{}/v1/offset", api.base),
        "records = \"/data\"",
        &format!(
            "{BEARER}\n[sources.pagination]\nkind = \"offset\"\nlimit = 5\ntotal = \"/total\"\n"
        ),
        TOKEN,
    );
    assert_all(&fetch(&src).await.unwrap());
    // The server gives 3 at most: 3 + 3 + 1, stopping at the total.
    assert_eq!(api.requests(), 3);
}

#[tokio::test]
async fn cursor_pages_with_a_query_key() {
    let api = start(Expect::Query("api_key", TOKEN)).await;
    let (src, _dir) = http_source(
        &format!("{}/v1/cursor", api.base),
        "records = \"/items\"",
        r#"
[sources.auth]
kind = "query"
param = "api_key"
token_file = "{dir}/hr.token"
[sources.pagination]
kind = "cursor"
cursor = "/meta/nextCursor"
cursor_param = "cursor"
"#,
        TOKEN,
    );
    assert_all(&fetch(&src).await.unwrap());
    assert_eq!(api.requests(), 4);
}

#[tokio::test]
async fn a_custom_report_by_post_with_a_json_body() {
    let api = start(Expect::Basic(TOKEN, "x")).await;
    let (src, _dir) = http_source(
        &format!("{}/v1/reports/custom", api.base),
        r#"method = "POST"
query = { format = "JSON", onlyCurrent = false }
records = "/employees""#,
        r#"
[sources.body]
title = "rosterd"
fields = ["id", "workEmail", "firstName", "lastName", "jobTitle", "department", "status"]
[sources.auth]
kind = "basic"
username_file = "{dir}/hr.token"
password = "x"
"#,
        TOKEN,
    );
    assert_all(&fetch(&src).await.unwrap());
    assert_eq!(api.requests(), 1);
}

#[tokio::test]
async fn a_429_and_a_500_on_the_way_are_retried() {
    let api = start(Expect::Bearer(TOKEN)).await;
    api.state.lock().unwrap().faults = HashMap::from([(2, 429), (3, 500)]);
    let (src, _dir) = http_source(
        &format!("{}/v1/page", api.base),
        "records = \"/data\"",
        &format!("{BEARER}\n[sources.pagination]\nkind = \"page\"\nsize = 3\n"),
        TOKEN,
    );
    let t = Instant::now();
    assert_all(&fetch(&src).await.unwrap());
    assert_eq!(api.requests(), 5, "3 pages + 2 failed attempts");
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
}

#[tokio::test]
async fn retries_exhausted_fail_the_fetch() {
    let api = start(Expect::Bearer(TOKEN)).await;
    api.state.lock().unwrap().fail_from = Some((2, 503));
    let (src, _dir) = http_source(
        &format!("{}/v1/page", api.base),
        "records = \"/data\"",
        &format!("{BEARER}\n[sources.pagination]\nkind = \"page\"\nsize = 3\n"),
        TOKEN,
    );
    let e = fetch(&src).await.unwrap_err().to_string();
    assert!(e.contains("page 2"), "{e}");
    assert!(e.contains("4 attempts") && e.contains("503"), "{e}");
    assert_eq!(api.requests(), 5, "page 1, then page 2 four times");
}

#[tokio::test]
async fn refused_credentials_fail_at_once_without_the_secret() {
    let api = start(Expect::Bearer(TOKEN)).await;
    let wrong = "wrong-token-8d1f2a";
    let (src, _dir) = http_source(
        &format!("{}/v1/next", api.base),
        "records = \"/employees\"",
        &format!("{BEARER}\n[sources.pagination]\nkind = \"next_link\"\nnext = \"/links/next\"\n"),
        wrong,
    );
    let e = fetch(&src).await.unwrap_err().to_string();
    assert!(e.contains("401") && e.contains("credentials"), "{e}");
    assert!(!e.contains(wrong) && !e.contains(TOKEN), "{e}");
    assert_eq!(api.requests(), 1, "a 401 is not retried");

    // No auth configured at all: refused too.
    let (src, _dir) = http_source(
        &format!("{}/v1/next", api.base),
        "records = \"/employees\"",
        "",
        TOKEN,
    );
    let e = fetch(&src).await.unwrap_err().to_string();
    assert!(e.contains("401"), "{e}");

    // The token file is re-read at each run: fixing it fixes the next run.
    let (src, dir) = http_source(
        &format!("{}/v1/next", api.base),
        "records = \"/employees\"",
        &format!("{BEARER}\n[sources.pagination]\nkind = \"next_link\"\nnext = \"/links/next\"\n"),
        wrong,
    );
    assert!(fetch(&src).await.is_err());
    std::fs::write(dir.path().join("hr.token"), TOKEN).unwrap();
    assert_all(&fetch(&src).await.unwrap());
}

#[tokio::test]
async fn credentials_never_follow_a_redirect_to_another_site() {
    let api = start(Expect::Bearer(TOKEN)).await;
    let other = start(Expect::Bearer(TOKEN)).await;
    let (src, _dir) = http_source(
        &format!("{}/v1/moved?to={}/v1/page", api.base, other.base),
        "records = \"/data\"",
        BEARER,
        TOKEN,
    );
    let e = fetch(&src).await.unwrap_err().to_string();
    assert!(e.contains("another site"), "{e}");
    assert_eq!(other.requests(), 0);
    assert_eq!(api.requests(), 1, "not retried");
    // Same site: followed.
    let (src, _dir) = http_source(
        &format!("{}/v1/moved?to=/v1/page", api.base),
        "records = \"/data\"",
        BEARER,
        TOKEN,
    );
    assert_all(&fetch(&src).await.unwrap());
}

#[tokio::test]
async fn bad_bodies_fail_the_fetch_and_bad_records_are_reported() {
    let api = start(Expect::Bearer(TOKEN)).await;
    let (src, _dir) = http_source(
        &format!("{}/v1/page", api.base),
        "records = \"/data\"",
        BEARER,
        TOKEN,
    );
    api.state.lock().unwrap().raw_body = Some("<html>maintenance</html>".into());
    let e = fetch(&src).await.unwrap_err().to_string();
    assert!(e.contains("not JSON"), "{e}");
    api.state.lock().unwrap().raw_body = Some(r#"{"items": []}"#.into());
    let e = fetch(&src).await.unwrap_err().to_string();
    assert!(e.contains("no record array at `/data`"), "{e}");
    api.state.lock().unwrap().raw_body = Some(
        json!({"data": [
            {"id": "1", "workEmail": "a@example.com", "firstName": "A", "lastName": "B"},
            {"id": "2", "firstName": "No", "lastName": "Mail"},
            {"id": "3", "workEmail": "c@example.com", "hireDate": "next tuesday"},
            "not an object",
        ]})
        .to_string(),
    );
    let f = fetch(&src).await.unwrap();
    assert_eq!(f.entries.len(), 1);
    let errs: Vec<String> = f
        .errors
        .iter()
        .map(|e| format!("{}: {}", e.dn, e.message))
        .collect();
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(
        errs[0].starts_with("record 2 (page 1)") && errs[0].contains("email"),
        "{errs:?}"
    );
    assert!(
        errs[1].contains("next tuesday") && errs[1].contains("hire_date"),
        "{errs:?}"
    );
    assert!(errs[2].starts_with("record 4 (page 1)"), "{errs:?}");
}

#[tokio::test]
async fn unreachable_api_fails_after_retries() {
    // A port nobody listens on (bound, then closed).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (src, _dir) = http_source(
        &format!("http://127.0.0.1:{port}/v1/page"),
        "",
        BEARER,
        TOKEN,
    );
    let e = fetch(&src).await.unwrap_err().to_string();
    assert!(e.contains("4 attempts") && e.contains("connect"), "{e}");
}

const CSV_FIELDS: &str = r#"
[sources.fields]
email = "Work Email"
given_name = "First Name"
family_name = "Last Name"
positions = { from = "Positions", split = "|" }
role = "Role"
business_unit = "Department"
hire_date = { from = "Hire Date", format = "%m/%d/%Y" }
status = { from = "Status", inactive = ["Terminated"] }
"#;

fn csv_source(
    top: &str,
    fields: &str,
    file: Option<(&str, &[u8])>,
) -> (CsvSource, tempfile::TempDir) {
    let (kind, dir) = parse_source(&format!(
        "[[sources]]\nid = \"hr-csv\"\nkind = \"csv\"\ntimezone = \"Europe/Berlin\"\n{top}\n{fields}"
    ));
    if let Some((name, bytes)) = file {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    match kind {
        SourceKind::Csv(c) => (c, dir),
        other => panic!("{}", other.name()),
    }
}

async fn fetch_csv(src: &CsvSource) -> Result<HrFetched, FetchError> {
    tokio::time::timeout(
        Duration::from_secs(30),
        hr::fetch_csv(src, chrono_tz::Europe::Berlin),
    )
    .await
    .expect("fetch finishes in time")
}

#[tokio::test]
async fn csv_with_a_malformed_row_imports_the_others() {
    let text = "\u{feff}Employee ID,First Name,Last Name,Work Email,Positions,Role,Department,Hire Date,Status\r\n\
        3001,Ana,Silva,ana.silva@example.com,Driver|Crew Lead,Technician,North,04/01/2019,Active\r\n\
        3003,Cleo,\"Martin, Jr.\",cleo.martin@example.com,Dispatcher,Dispatcher,Head Office,13/45/2020,Active\r\n\
        3004,Dev,Rao,dev.rao@example.com,Driver,Technician,North,02/29/2028,Active\r\n\
        3005,Eva,Lind,eva.lind@example.com,Driver,Technician,South,06/01/2015,Terminated\r\n";
    let (src, dir) = csv_source(
        "path = \"{dir}/people.csv\"\njoin_key = \"Employee ID\"",
        CSV_FIELDS,
        Some(("people.csv", text.as_bytes())),
    );
    assert_eq!(
        src.location(),
        dir.path().join("people.csv").display().to_string()
    );
    let f = fetch_csv(&src).await.unwrap();
    let keys: Vec<&str> = f.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["3001", "3004", "3005"]);
    let errs: Vec<String> = f
        .errors
        .iter()
        .map(|e| format!("{}: {}", e.dn, e.message))
        .collect();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("line 3: ") && errs[0].contains("13/45/2020"),
        "{errs:?}"
    );
    // Who the unmappable row is stays known (so the plan keeps that profile).
    assert_eq!(f.errors[0].key.as_deref(), Some("3003"));
    assert_eq!(
        f.errors[0].email.as_deref(),
        Some("cleo.martin@example.com")
    );
    let ana = &f.entries[0];
    assert_eq!(ana.dn, "line 2");
    assert_eq!(
        ana.fields.positions,
        Some(vec!["Crew Lead".into(), "Driver".into()])
    );
    let dev = &f.entries[1];
    let hire = dev.hire.unwrap();
    assert_eq!(hire.date.to_string(), "2028-02-29");
    // Midnight in Berlin (CET, UTC+1).
    assert_eq!(hire.at.to_rfc3339(), "2028-02-28T23:00:00+00:00");
    assert_eq!(
        f.entries[2].disabled.as_deref(),
        Some("status \"Terminated\"")
    );
}

#[tokio::test]
async fn csv_latin1_with_semicolons() {
    let text = "Personalnummer;Vorname;Nachname;E-Mail;Abteilung\n\
                2001;J\u{fc}rgen;M\u{fc}ller;juergen.mueller@example.com;North\n\
                2002;Ren\u{e9}e;Fran\u{e7}ois;renee.francois@example.com;South\n";
    let (latin1, _, _) = encoding_rs::WINDOWS_1252.encode(text);
    let fields = r#"
[sources.fields]
email = "E-Mail"
given_name = "Vorname"
family_name = "Nachname"
business_unit = "Abteilung"
"#;
    let (src, _dir) = csv_source(
        "path = \"{dir}/export.csv\"\ndelimiter = \";\"\nencoding = \"latin1\"\njoin_key = \"Personalnummer\"",
        fields,
        Some(("export.csv", &latin1)),
    );
    let f = fetch_csv(&src).await.unwrap();
    assert!(f.errors.is_empty(), "{:?}", f.errors);
    assert_eq!(
        f.entries[0].fields.given_name.as_deref(),
        Some("J\u{fc}rgen")
    );
    assert_eq!(
        f.entries[1].fields.family_name.as_deref(),
        Some("Fran\u{e7}ois")
    );
    assert_eq!(
        f.entries[1].fields.business_unit,
        Some(Some("South".into()))
    );

    // Read as UTF-8 the same bytes fail the whole fetch, with a hint.
    let (src, _dir) = csv_source(
        "path = \"{dir}/export.csv\"\ndelimiter = \";\"\njoin_key = \"Personalnummer\"",
        fields,
        Some(("export.csv", &latin1)),
    );
    let e = fetch_csv(&src).await.unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("windows-1252"), "{e}");

    // Read with the wrong delimiter: the header names no mapped column.
    let (src, _dir) = csv_source(
        "path = \"{dir}/export.csv\"\nencoding = \"latin1\"\njoin_key = \"Personalnummer\"",
        fields,
        Some(("export.csv", &latin1)),
    );
    let e = fetch_csv(&src).await.unwrap_err().to_string();
    assert!(e.contains("delimiter = \";\""), "{e}");

    // A file that is not there fails the fetch.
    let (src, _dir) = csv_source(
        "path = \"{dir}/missing.csv\"\njoin_key = \"Personalnummer\"",
        fields,
        None,
    );
    let e = fetch_csv(&src).await.unwrap_err().to_string();
    assert!(
        e.contains("cannot read") && e.contains("missing.csv"),
        "{e}"
    );
}

#[tokio::test]
async fn csv_from_a_url_with_basic_auth() {
    let api = start(Expect::Basic("export", TOKEN)).await;
    let fields = r#"
[sources.fields]
email = "E-Mail"
given_name = "Vorname"
family_name = "Nachname"
"#;
    let top = format!(
        "url = \"{}/export.csv\"\ndelimiter = \";\"\nencoding = \"windows-1252\"\njoin_key = \"Personalnummer\"\n\
         [sources.auth]\nkind = \"basic\"\nusername = \"export\"\npassword_file = \"{{dir}}/pw\"",
        api.base
    );
    let (kind, dir) = {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), TOKEN).unwrap();
        let block = format!("[[sources]]\nid = \"hr-csv\"\nkind = \"csv\"\n{top}\n{fields}")
            .replace("{dir}", &dir.path().display().to_string());
        let c = crate::common::test_config(dir.path(), &block);
        (c.sources[0].kind.clone(), dir)
    };
    let SourceKind::Csv(src) = kind else {
        panic!("csv")
    };
    assert_eq!(src.location(), format!("{}/export.csv", api.base));
    let f = fetch_csv(&src).await.unwrap();
    assert_eq!(f.entries.len(), 2, "{:?}", f.errors);
    assert_eq!(
        f.entries[0].fields.given_name.as_deref(),
        Some("J\u{fc}rgen")
    );
    // Wrong password: refused, the password never shown.
    std::fs::write(dir.path().join("pw"), "not-the-password").unwrap();
    let e = fetch_csv(&src).await.unwrap_err().to_string();
    assert!(e.contains("401") && !e.contains("not-the-password"), "{e}");
}

/// Through the daemon: an HR API imports the roster (paged, with a 429 retried);
/// later the API fails past its retries mid-read → the run fails with the
/// reason, without the token, and nobody is deactivated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_read_deactivates_nobody_through_the_engine() {
    let api = start(Expect::Bearer(TOKEN)).await;
    api.state.lock().unwrap().faults.insert(2, 429);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hr.token"), TOKEN).unwrap();
    let block = format!(
        r#"
[[sources]]
id = "hr"
kind = "http"
url = "{base}/v1/page"
records = "/data"
timezone = "America/Chicago"
join_key = "/id"
max_deactivations = 100
max_deactivations_percent = 100.0
[sources.auth]
kind = "bearer"
token_file = "{dir}/hr.token"
[sources.pagination]
kind = "page"
size = 3
[sources.retry]
attempts = 3
initial_backoff_ms = 10
max_backoff_secs = 1
{FIELDS}
"#,
        base = api.base,
        dir = dir.path().display()
    );
    let s = crate::common::TestServer::start_with(&block).await;
    let r = run_hr(&s).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    let created = r["counts"]["created"].as_u64().unwrap();
    assert!(created >= 5, "{r}");
    let active = |v: &Value| v["total"].as_u64().unwrap();
    let (_, all) = s.get("/api/v1/employees?status=all").await;
    assert_eq!(active(&all), created);
    let (_, before) = s.get("/api/v1/employees").await;
    assert!(active(&before) >= 4, "{before}");

    // Page 2 keeps failing: the run fails with the reason, nobody is touched.
    let n = api.requests();
    api.state.lock().unwrap().fail_from = Some((n + 2, 500));
    let r = run_hr(&s).await;
    assert_eq!(r["outcome"], "failed", "{r}");
    assert!(r["message"].as_str().unwrap().contains("500"), "{r}");
    assert!(
        !r.to_string().contains(TOKEN),
        "no secret in the run record"
    );
    let (_, after) = s.get("/api/v1/employees").await;
    assert_eq!(active(&after), active(&before), "nobody deactivated");
    s.stop().await;
}

async fn run_hr(s: &crate::common::TestServer) -> Value {
    let (st, v) = s.post("/api/v1/sync/sources/hr/run", json!({})).await;
    assert_eq!(st, reqwest::StatusCode::OK, "{v}");
    v
}

/// `rosterctl sync show RUN` against a test server: its output.
fn sync_show(s: &crate::common::TestServer, run: &Value) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rosterctl"))
        .args(["sync", "show", &run["id"].to_string()])
        .env("ROSTERD_URL", &s.base)
        .env("ROSTERD_TOKEN", &s.token)
        .env_remove("ROSTERD_TOKEN_FILE")
        .output()
        .expect("rosterctl");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Twenty people as an HR export: `edit(i, row)` changes row `i` (0-based);
/// the fields are written as given (no quoting added).
fn export_csv(edit: impl Fn(usize, &mut Vec<String>)) -> String {
    let mut text = String::from("Employee ID,First Name,Last Name,Work Email,Hire Date\n");
    for i in 0..20 {
        let mut row = vec![
            format!("H{i:02}"),
            format!("Per{i}"),
            format!("Son{i}"),
            format!("per{i}@corp.example"),
            "2020-02-03".to_string(),
        ];
        edit(i, &mut row);
        text.push_str(&row.join(","));
        text.push('\n');
    }
    text
}

/// Through the daemon: a row that cannot be read is not a leaver. A CSV with
/// unquoted commas, or cut off mid-row (or inside a quoted value), fails the
/// run and deactivates nobody; rows with bad hire dates or bad emails are
/// reported by line and keep their profiles as they are. The run history and
/// `rosterctl sync show` say why; the roster is unchanged after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_row_that_cannot_be_read_deactivates_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("people.csv");
    std::fs::write(&csv, export_csv(|_, _| {})).unwrap();
    let block = format!(
        r#"
[[sources]]
id = "hr"
kind = "csv"
path = "{csv}"
timezone = "Europe/Berlin"
join_key = "Employee ID"
max_deactivations = 100
max_deactivations_percent = 100.0
[sources.fields]
email = "Work Email"
given_name = "First Name"
family_name = "Last Name"
hire_date = {{ from = "Hire Date", format = "%Y-%m-%d" }}
"#,
        csv = csv.display()
    );
    let s = crate::common::TestServer::start_with(&block).await;
    let r = run_hr(&s).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    assert_eq!(r["counts"]["created"], 20, "{r}");
    let roster = || async {
        let (st, v) = s.get("/api/v1/employees?status=all&limit=100").await;
        assert_eq!(st, reqwest::StatusCode::OK, "{v}");
        let mut items: Vec<(String, String, bool, u64)> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["email"].as_str().unwrap().to_string(),
                    e["family_name"].as_str().unwrap().to_string(),
                    e["active"].as_bool().unwrap(),
                    e["version"].as_u64().unwrap(),
                )
            })
            .collect();
        items.sort();
        items
    };
    let before = roster().await;
    assert_eq!(before.len(), 20);
    assert!(before.iter().all(|e| e.2), "all active: {before:?}");
    let mut runs = vec![r["id"].clone()];

    // 1. `Smith, Jr.` unquoted on five rows: the file's rows do not line up.
    let smith = [2, 5, 9, 14, 17];
    std::fs::write(
        &csv,
        export_csv(|i, row| {
            if smith.contains(&i) {
                row[2] = "Smith, Jr.".into();
            }
        }),
    )
    .unwrap();
    let r = run_hr(&s).await;
    assert_eq!(r["outcome"], "failed", "{r}");
    let msg = r["message"].as_str().unwrap();
    for i in smith {
        assert!(msg.contains(&format!("line {}", i + 2)), "{msg}");
    }
    assert!(
        msg.contains("must be quoted") && msg.contains("nobody is deactivated"),
        "{msg}"
    );
    assert_eq!(r["counts"]["deactivated"], 0, "{r}");
    let shown = sync_show(&s, &r);
    assert!(
        shown.contains("failed") && shown.contains("must be quoted"),
        "{shown}"
    );
    assert_eq!(roster().await, before, "the roster is untouched");
    runs.push(r["id"].clone());

    // 2. Five bad hire dates: reported by line, the profiles kept as they are.
    let bad = [1, 4, 8, 12, 19];
    std::fs::write(
        &csv,
        export_csv(|i, row| {
            if bad.contains(&i) {
                row[4] = "2020-13-45".into();
            }
        }),
    )
    .unwrap();
    let r = run_hr(&s).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    assert_eq!(r["counts"]["deactivated"], 0, "{r}");
    assert_eq!(r["counts"]["errors"], 5, "{r}");
    let errors = r["errors"].as_array().unwrap();
    for i in bad {
        let line = format!("line {}", i + 2);
        let e = errors
            .iter()
            .find(|e| e["dn"] == line.as_str())
            .unwrap_or_else(|| panic!("{line} reported: {r}"));
        let m = e["message"].as_str().unwrap();
        assert!(
            m.contains("2020-13-45") && m.contains("kept as it is"),
            "{m}"
        );
        assert_eq!(e["key"], format!("H{i:02}"), "{e}");
    }
    let shown = sync_show(&s, &r);
    assert!(
        shown.contains("line 3:") && shown.contains("kept as it is"),
        "{shown}"
    );
    assert!(shown.contains("0 deactivated"), "{shown}");
    assert_eq!(
        roster().await,
        before,
        "nobody deactivated, nothing changed"
    );
    runs.push(r["id"].clone());

    // 3. Five invalid emails: the same rule (reported, kept, nobody deactivated).
    std::fs::write(
        &csv,
        export_csv(|i, row| {
            if bad.contains(&i) {
                row[3] = format!("per{i} at corp.example");
            }
        }),
    )
    .unwrap();
    let r = run_hr(&s).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    assert_eq!(r["counts"]["deactivated"], 0, "{r}");
    assert_eq!(r["counts"]["errors"], 5, "{r}");
    assert_eq!(
        roster().await,
        before,
        "an invalid email deactivates nobody either"
    );
    runs.push(r["id"].clone());

    // 4. The file cut off in the middle of a row: fails, nobody deactivated
    // (without the check, the 13 people after the cut would be "gone").
    let full = export_csv(|_, _| {});
    let cut = full.find("per6@corp").unwrap() + 3;
    std::fs::write(&csv, &full[..cut]).unwrap();
    let r = run_hr(&s).await;
    assert_eq!(r["outcome"], "failed", "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(msg.contains("line 8") && msg.contains("truncated"), "{msg}");
    assert!(
        sync_show(&s, &r).contains("truncated"),
        "rosterctl says why"
    );
    assert_eq!(roster().await, before);
    runs.push(r["id"].clone());

    // 5. Cut off inside a quoted value (the row's field count looks right).
    let quoted = export_csv(|i, row| {
        if i == 6 {
            row[4] = "\"2020-02-03".into();
        }
    });
    let cut = quoted.find("\"2020").unwrap() + 5;
    std::fs::write(&csv, &quoted[..cut]).unwrap();
    let r = run_hr(&s).await;
    assert_eq!(r["outcome"], "failed", "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("line 8") && msg.contains("never closed"),
        "{msg}"
    );
    assert_eq!(roster().await, before);
    runs.push(r["id"].clone());

    // The history has every run with its outcome; a complete export applies.
    std::fs::write(&csv, export_csv(|_, _| {})).unwrap();
    let r = run_hr(&s).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    assert_eq!(r["counts"]["deactivated"], 0, "{r}");
    assert_eq!(r["counts"]["errors"], 0, "{r}");
    runs.push(r["id"].clone());
    let (_, hist) = s.get("/api/v1/sync/runs?source=hr").await;
    let outcomes: Vec<(Value, Value)> = hist["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].clone(), r["outcome"].clone()))
        .collect();
    for (id, want) in runs.iter().zip([
        "applied", "failed", "applied", "applied", "failed", "failed", "applied",
    ]) {
        assert!(
            outcomes.iter().any(|(i, o)| i == id && o == want),
            "run {id} is {want} in the history: {outcomes:?}"
        );
    }
    assert_eq!(roster().await, before);
    s.stop().await;
}

/// Through the daemon, an HR API: records that cannot be mapped (bad hire
/// dates, a record that is not an object) are reported and their profiles
/// kept; nobody is deactivated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmappable_api_records_deactivate_nobody_through_the_engine() {
    let api = start(Expect::Bearer(TOKEN)).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hr.token"), TOKEN).unwrap();
    let block = format!(
        r#"
[[sources]]
id = "hr"
kind = "http"
url = "{base}/v1/page"
records = "/data"
timezone = "America/Chicago"
join_key = "/id"
max_deactivations = 100
max_deactivations_percent = 100.0
[sources.auth]
kind = "bearer"
token_file = "{dir}/hr.token"
[sources.pagination]
kind = "none"
{FIELDS}
"#,
        base = api.base,
        dir = dir.path().display()
    );
    let s = crate::common::TestServer::start_with(&block).await;
    let r = run_hr(&s).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    let (_, before) = s.get("/api/v1/employees?status=all&limit=100").await;
    let active = |v: &Value| {
        let mut a: Vec<String> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["active"] == true)
            .map(|e| e["email"].as_str().unwrap().to_string())
            .collect();
        a.sort();
        a
    };
    assert!(active(&before).len() >= 4, "{before}");
    let mut records = employees();
    for r in records.iter_mut().take(3) {
        r["hireDate"] = json!("not-a-date");
    }
    records.push(json!("a string, not a record"));
    api.state.lock().unwrap().raw_body = Some(json!({ "data": records }).to_string());
    let r = run_hr(&s).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    assert_eq!(r["counts"]["deactivated"], 0, "{r}");
    assert_eq!(r["counts"]["errors"], 4, "{r}");
    let kept = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["message"].as_str().unwrap().contains("kept as it is"))
        .count();
    assert_eq!(kept, 3, "{r}");
    let (_, after) = s.get("/api/v1/employees?status=all&limit=100").await;
    assert_eq!(active(&after), active(&before), "nobody deactivated");
    s.stop().await;
}
