//! Test harness: a rosterd started in-process on 127.0.0.1 with a free port and a
//! temporary data directory, plus a small JSON client.

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use rosterd::daemon::{self, Daemon};

/// The line in `config/rosterd.toml` where the demo HR source starts.
pub const DEMO_MARKER: &str = "# ---- demo HR source";

/// The shipped config without its demo HR source (so a test starts with an
/// empty roster), so tests run against the same catalogs as the README.
pub fn shipped_config_text() -> String {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rosterd.toml"))
            .expect("config/rosterd.toml");
    match text.find(DEMO_MARKER) {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The shipped config with the test's data dir and port 0.
pub fn test_config(data_dir: &Path, extra: &str) -> rosterd::config::Config {
    let text = format!("{}\n{extra}\n", shipped_config_text());
    let env = vec![
        ("ROSTERD_LISTEN".to_string(), "127.0.0.1:0".to_string()),
        (
            "ROSTERD_DATA_DIR".to_string(),
            data_dir.display().to_string(),
        ),
    ];
    rosterd::config::parse(Path::new("test.toml"), &text, &env).expect("test config")
}

pub struct TestServer {
    daemon: Option<Daemon>,
    pub base: String,
    pub token: String,
    pub token_file: PathBuf,
    /// Kept so the temporary data directory lives as long as the server.
    _dir: tempfile::TempDir,
    pub client: reqwest::Client,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    /// Starts with extra TOML appended to the shipped config.
    pub async fn start_with(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = test_config(dir.path(), extra);
        let daemon = daemon::start(config).await.expect("daemon starts");
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
        }
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

/// A minimal valid employee body.
pub fn employee(given: &str, family: &str, email: &str) -> Value {
    serde_json::json!({
        "given_name": given,
        "family_name": family,
        "email": email,
        "role": "Technician",
    })
}
