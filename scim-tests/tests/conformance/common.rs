//! Harness: a SCIM server under test (external via `SCIM_BASE_URL` + `SCIM_TOKEN`,
//! or rosterd started in-process on 127.0.0.1:0 with a temp data dir) and a small
//! client that returns status, headers and JSON.

use std::path::Path;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use rosterd::daemon::{self, Daemon};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const ROSTERD: &str = "urn:rosterd:params:scim:schemas:extension:rosterd:2.0:User";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

const TEST_TOKEN_ENV: &str = "SCIM_TESTS_IN_PROCESS_TOKEN";

/// A response: status, headers, JSON body (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 7644 error body with this status (as a string) and scimType.
    #[track_caller]
    pub fn assert_error(&self, status: u16, scim_type: Option<&str>) {
        assert_eq!(self.status.as_u16(), status, "{:#}", self.body);
        assert_eq!(self.body["schemas"][0], ERROR, "{:#}", self.body);
        assert_eq!(self.body["status"], status.to_string(), "{:#}", self.body);
        if let Some(t) = scim_type {
            assert_eq!(self.body["scimType"], t, "{:#}", self.body);
        }
        assert!(self.body["detail"].is_string(), "{:#}", self.body);
        let ct = self.header("content-type").unwrap_or("");
        assert!(ct.starts_with("application/scim+json"), "{ct}");
    }
}

pub struct Scim {
    pub base: String,
    pub token: String,
    pub client: reqwest::Client,
    daemon: Option<Daemon>,
    _dir: Option<tempfile::TempDir>,
}

/// A unique suffix, so tests can share an external server.
pub fn uniq() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// The shipped config without its demo HR source (the tests start with an empty
/// roster).
pub fn shipped_config_text() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("config/rosterd.toml")).expect("shipped config");
    match text.find("# ---- demo HR source") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The shipped config plus a SCIM client, with the test's data dir and port 0.
/// `extra` holds `key = value` lines for the `[scim]` section (applied as
/// `ROSTERD_SCIM__KEY` overrides, since the shipped file has a `[scim]` table).
/// `client` lines (`key = value`) go into the test client's `[[scim.clients]]`
/// entry (e.g. `passwords = "accept"`).
pub fn in_process_client_config(
    data_dir: &Path,
    token: &str,
    extra: &str,
    client: &str,
) -> rosterd::config::Config {
    let shipped = shipped_config_text();
    let text = format!(
        "{shipped}\n[[scim.clients]]\nname = \"test-idp\"\ntoken_env = \"{TEST_TOKEN_ENV}\"\n{client}\n"
    );
    let mut env = vec![("ROSTERD_SCIM__MAX_PAGE_SIZE".to_string(), "100".to_string())];
    for line in extra.lines().filter(|l| l.contains('=')) {
        let (k, v) = line.split_once('=').expect("key = value");
        env.push((
            format!("ROSTERD_SCIM__{}", k.trim().to_ascii_uppercase()),
            v.trim().to_string(),
        ));
    }
    env.extend(vec![
        ("ROSTERD_LISTEN".to_string(), "127.0.0.1:0".to_string()),
        (
            "ROSTERD_DATA_DIR".to_string(),
            data_dir.display().to_string(),
        ),
        (TEST_TOKEN_ENV.to_string(), token.to_string()),
    ]);
    rosterd::config::parse(Path::new("scim-tests.toml"), &text, &env).expect("test config")
}

impl Scim {
    /// The server under test: `SCIM_BASE_URL`/`SCIM_TOKEN`, else rosterd in-process.
    pub async fn start() -> Self {
        match (std::env::var("SCIM_BASE_URL"), std::env::var("SCIM_TOKEN")) {
            (Ok(base), Ok(token)) => Self {
                base: base.trim_end_matches('/').to_string(),
                token,
                client: client(),
                daemon: None,
                _dir: None,
            },
            _ => Self::in_process("").await,
        }
    }

    /// Always in-process (tests that inspect the store or need a config).
    pub async fn in_process(extra: &str) -> Self {
        Self::in_process_client("", extra).await
    }

    /// In-process, with `client` lines in the test client's `[[scim.clients]]`
    /// entry and `extra` ones in `[scim]`.
    pub async fn in_process_client(client_lines: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = format!("scim-test-token-{}", uniq());
        let config = in_process_client_config(dir.path(), &token, extra, client_lines);
        let config = crate::pg_harness::with_test_store(config, dir.path());
        let daemon = daemon::start(config).await.expect("rosterd starts");
        Self {
            base: format!("http://{}/scim/v2", daemon.addr),
            token,
            client: client(),
            daemon: Some(daemon),
            _dir: Some(dir),
        }
    }

    /// The roster, when rosterd runs in-process.
    pub fn roster(&self) -> Option<&rosterd::employee::Roster> {
        self.daemon.as_ref().map(|d| &d.roster)
    }

    /// The daemon's own base URL (`http://127.0.0.1:port`), when in-process.
    pub fn daemon_url(&self) -> Option<String> {
        self.daemon.as_ref().map(|d| format!("http://{}", d.addr))
    }

    /// Sends `body` exactly as given (a request replayed byte for byte).
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Resp {
        let resp = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        Resp {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut req = self.client.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(serde_json::to_vec(&b).expect("json"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        Resp {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None, &[]).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(Method::POST, path, Some(body), &[]).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.send(Method::PUT, path, Some(body), &[]).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send(Method::PATCH, path, Some(body), &[]).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, None, &[]).await
    }

    /// PATCH with a PatchOp body made of these operations.
    pub async fn patch_ops(&self, path: &str, ops: Value) -> Resp {
        self.patch(
            path,
            serde_json::json!({"schemas": [PATCH_OP], "Operations": ops}),
        )
        .await
    }

    /// GET /Users?filter=… (URL-encoded by the client).
    pub async fn filter_users(&self, filter: &str) -> Resp {
        let url =
            reqwest::Url::parse_with_params(&format!("{}/Users", self.base), &[("filter", filter)])
                .expect("url");
        self.get(url.as_str()).await
    }

    /// Creates a user and returns its resource; panics unless 201.
    pub async fn create_user(&self, body: Value) -> Value {
        let r = self.post("/Users", body).await;
        assert_eq!(r.status, StatusCode::CREATED, "create failed: {:#}", r.body);
        r.body
    }

    /// A minimal user body with a unique userName/email.
    pub fn user_body(&self, tag: &str) -> (String, Value) {
        let user = format!("{tag}.{}@example.com", uniq());
        let body = serde_json::json!({
            "schemas": [USER],
            "userName": user,
            "name": {"givenName": "Test", "familyName": tag},
            "emails": [{"value": user, "type": "work", "primary": true}],
            "active": true,
        });
        (user, body)
    }

    pub async fn stop(mut self) {
        if let Some(d) = self.daemon.take() {
            d.stop().await.expect("clean stop");
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .no_proxy()
        .build()
        .expect("client")
}
