//! Test harness: a rosterd started in-process on 127.0.0.1 with a free port and a
//! temporary data directory, plus a small JSON client.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use rosterd::daemon::{self, Daemon};
use rosterd::employee::account::Clock;

pub use crate::support::rosterd::Rosterd;
pub use crate::support::{replace_once, shipped_config, write_config};

/// The shipped config with the test's data dir and port 0.
pub fn test_config(data_dir: &Path, extra: &str) -> rosterd::config::Config {
    crate::support::parse_config(&format!("{}\n{extra}\n", shipped_config()), data_dir)
}

/// A clock for account links that a test moves forward instead of waiting
/// ([`TestServer::start_with_clock`]): it starts at the wall clock's now.
#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    pub fn new() -> Self {
        ManualClock(Arc::new(Mutex::new(Utc::now())))
    }

    /// The daemon's side: reads this clock.
    pub fn clock(&self) -> Clock {
        let at = self.0.clone();
        Clock::new(move || *at.lock().unwrap())
    }

    pub fn advance(&self, by: std::time::Duration) {
        *self.0.lock().unwrap() += chrono::Duration::from_std(by).unwrap();
    }
}

pub struct TestServer {
    daemon: Option<Daemon>,
    pub base: String,
    pub token: String,
    pub token_file: PathBuf,
    /// Kept so the temporary data directory lives as long as the server.
    _dir: tempfile::TempDir,
    pub client: reqwest::Client,
    /// What it was started with (for [`TestServer::restart`]).
    config: rosterd::config::Config,
    clock: Clock,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    /// Starts with extra TOML appended to the shipped config.
    pub async fn start_with(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = test_config(dir.path(), extra);
        Self::start_config(dir, config, Clock::system()).await
    }

    /// [`TestServer::start_with`] on `clock` for the account links.
    pub async fn start_with_clock(extra: &str, clock: &ManualClock) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = test_config(dir.path(), extra);
        Self::start_config(dir, config, clock.clock()).await
    }

    /// Starts with `lines` added to the shipped config's `[http]` section.
    pub async fn start_with_http(lines: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path(), "");
        let text = replace_once(&shipped_config(), "[http]\n", &format!("[http]\n{lines}\n"));
        config.http = crate::support::parse_config(&text, dir.path()).http;
        Self::start_config(dir, config, Clock::system()).await
    }

    async fn start_config(
        dir: tempfile::TempDir,
        config: rosterd::config::Config,
        clock: Clock,
    ) -> Self {
        let config = crate::support::pg::with_test_store(config, dir.path());
        let daemon = daemon::start_with_clock(config.clone(), clock.clone())
            .await
            .expect("daemon starts");
        let token_file = daemon
            .admin_token_file
            .clone()
            .expect("generated admin token");
        let token = std::fs::read_to_string(&token_file)
            .expect("token file")
            .trim()
            .to_string();
        Self {
            base: format!("http://{}", daemon.addr),
            daemon: Some(daemon),
            token,
            token_file,
            _dir: dir,
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("client"),
            config,
            clock,
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self._dir.path()
    }

    /// Stops the daemon cleanly and starts it again on the same data directory
    /// and the same address.
    pub async fn restart(mut self) -> Self {
        let daemon = self.daemon.take().expect("running");
        let addr = daemon.addr;
        daemon.stop().await.expect("clean stop");
        let mut config = self.config.clone();
        config.listen = addr;
        let daemon = daemon::start_with_clock(config, self.clock.clone())
            .await
            .expect("daemon starts again");
        self.base = format!("http://{}", daemon.addr);
        self.daemon = Some(daemon);
        self
    }

    /// The sync engine (to fix its clock, to tick).
    pub fn sync(&self) -> &rosterd::sync::SyncEngine {
        &self.daemon.as_ref().expect("running").sync
    }

    pub fn roster(&self) -> &rosterd::employee::Roster {
        &self.daemon.as_ref().expect("running").roster
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a JSON request with the admin token; returns status and JSON body
    /// (`Value::Null` when the body is not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }

    /// Creates an employee and returns its JSON; panics unless 201.
    /// Run `id`'s whole plan, read page by page (`limit` items a page) from
    /// `/api/v1/sync/runs/{id}/plan`.
    pub async fn plan(&self, id: &Value, limit: usize) -> Vec<Value> {
        let mut items = Vec::new();
        let mut offset = 0;
        loop {
            let (st, page) = self
                .get(&format!(
                    "/api/v1/sync/runs/{id}/plan?offset={offset}&limit={limit}"
                ))
                .await;
            assert_eq!(st, StatusCode::OK, "{page}");
            let got = page["items"].as_array().unwrap().clone();
            assert!(got.len() <= limit, "{page}");
            items.extend(got);
            match page["next_offset"].as_u64() {
                Some(n) => offset = n as usize,
                None => {
                    assert_eq!(page["total"].as_u64(), Some(items.len() as u64));
                    return items;
                }
            }
        }
    }

    pub async fn create(&self, body: Value) -> Value {
        let (s, v) = self.post("/api/v1/employees", body).await;
        assert_eq!(s, StatusCode::CREATED, "create failed: {v}");
        v
    }

    pub async fn stop(mut self) {
        if let Some(d) = self.daemon.take() {
            d.stop().await.expect("clean stop");
        }
    }
}

/// `GET /api/v1/employees/{key}` (an id, or any key the API takes); panics unless 200.
pub async fn employee_json(s: &TestServer, key: &str) -> Value {
    let (st, v) = s.get(&format!("/api/v1/employees/{key}")).await;
    assert_eq!(st, StatusCode::OK, "{key}: {v}");
    v
}

/// Runs sync source `source` now; panics unless the run was applied.
pub async fn run_applied(s: &TestServer, source: &str) -> Value {
    let (st, v) = s
        .post(
            &format!("/api/v1/sync/sources/{source}/run"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["outcome"], "applied", "{v}");
    v
}

/// Serves `app` (a stand-in for a remote API: an HR system) on a free port of
/// 127.0.0.1 until the test's runtime ends (or the task is aborted); returns
/// its base URL and the serving task.
pub async fn serve(app: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (base, task)
}

/// A minimal valid employee body.
pub fn employee(given: &str, family: &str, email: &str) -> Value {
    serde_json::json!({
        "given_name": given,
        "family_name": family,
        "email": email,
        "role": "Technician",
    })
}
