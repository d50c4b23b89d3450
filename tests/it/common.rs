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
    /// What it was started with (for [`TestServer::restart`]).
    config: rosterd::config::Config,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    /// Starts with extra TOML appended to the shipped config.
    pub async fn start_with(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = test_config(dir.path(), extra);
        Self::start_config(dir, config).await
    }

    /// Starts with `lines` added to the shipped config's `[http]` section.
    pub async fn start_with_http(lines: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path(), "");
        let text = shipped_config_text().replacen("[http]\n", &format!("[http]\n{lines}\n"), 1);
        let env = vec![
            ("ROSTERD_LISTEN".to_string(), "127.0.0.1:0".to_string()),
            (
                "ROSTERD_DATA_DIR".to_string(),
                dir.path().display().to_string(),
            ),
        ];
        config.http = rosterd::config::parse(Path::new("test.toml"), &text, &env)
            .expect("test config")
            .http;
        Self::start_config(dir, config).await
    }

    async fn start_config(dir: tempfile::TempDir, config: rosterd::config::Config) -> Self {
        let config = crate::pg_harness::with_test_store(config, dir.path());
        let daemon = daemon::start(config.clone()).await.expect("daemon starts");
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
        let daemon = daemon::start(config).await.expect("daemon starts again");
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

/// A minimal valid employee body.
pub fn employee(given: &str, family: &str, email: &str) -> Value {
    serde_json::json!({
        "given_name": given,
        "family_name": family,
        "email": email,
        "role": "Technician",
    })
}

/// The real `rosterd` binary on a free port with its own data directory; its
/// log lines are collected; killed and reaped on drop if still running.
pub struct Rosterd {
    pub child: std::process::Child,
    pub base: String,
    pub config: PathBuf,
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Rosterd {
    /// Starts `rosterd --config CONFIG` and waits for "listening on".
    pub fn start(config: &Path, data_dir: &Path) -> Self {
        Self::start_with(config, data_dir, &[])
    }

    /// Like [`Rosterd::start`], with extra environment variables.
    pub fn start_with(config: &Path, data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_limited(config, data_dir, env, None)
    }

    /// Like [`Rosterd::start_with`]; with `nofile`, the process starts with that
    /// open-file limit, soft and hard (so it cannot raise it).
    pub fn start_limited(
        config: &Path,
        data_dir: &Path,
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Self {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rosterd"));
        if let Some(n) = nofile {
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the
            // child between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.arg("--config")
            .arg(config)
            .env("ROSTERD_LISTEN", "127.0.0.1:0")
            .env("ROSTERD_DATA_DIR", data_dir)
            .env_remove("ROSTERD_LOG")
            .env_remove("ROSTERD_URL")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (k, v) in crate::pg_harness::test_store_env(data_dir) {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn rosterd");
        let stderr = child.stderr.take().expect("stderr");
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = logs.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push(line);
            }
        });
        let mut p = Rosterd {
            child,
            base: String::new(),
            config: config.to_path_buf(),
            logs,
            reader: Some(reader),
        };
        let line = p.wait_log("listening on http://", std::time::Duration::from_secs(30));
        let i = line.find("listening on http://").unwrap();
        let addr: String = line[i + "listening on http://".len()..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        p.base = format!("http://{addr}");
        p
    }

    /// The first log line containing `needle` (logged so far or within `timeout`).
    pub fn wait_log(&mut self, needle: &str, timeout: std::time::Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(l) = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            if std::time::Instant::now() > deadline || self.child.try_wait().unwrap().is_some() {
                panic!("no log line with `{needle}`; logs:\n{}", self.logs_text());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn count_logs(&self, needle: &str) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Everything logged so far.
    pub fn logs_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// The process's resident memory (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// True while the process has not exited.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Rewrites the config file and sends SIGHUP.
    pub fn reload_with(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
        self.signal(libc::SIGHUP);
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling the child this test started.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill({sig})");
    }

    /// Waits (at most 20 s) for the process to exit, then for its last log lines.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(std::time::Instant::now() < deadline, "rosterd did not stop");
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        status
    }

    /// SIGKILL: no chance to flush. Returns everything it logged.
    pub fn kill_9(&mut self) -> String {
        self.child.kill().unwrap();
        self.wait_exit();
        self.logs_text()
    }

    /// SIGTERM, waits for exit code 0; returns everything it logged.
    pub fn stop(mut self) -> String {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit();
        assert_eq!(status.code(), Some(0), "rosterd exited with {status}");
        self.logs_text()
    }
}

impl Drop for Rosterd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
