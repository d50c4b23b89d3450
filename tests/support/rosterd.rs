//! The real `rosterd` binary, as an operator or systemd runs it: `--config FILE`,
//! its own data directory, `ROSTERD_LISTEN=127.0.0.1:0` unless told otherwise,
//! and nothing inherited that would change it (no `ROSTERD_*`, no systemd
//! variables) but the environment the caller gives. Ready when it logs
//! "listening on http://ADDR"; its log lines are collected; killed and reaped on
//! drop if still running.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Rosterd {
    pub child: Child,
    pub base: String,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// How to start one (see [`Rosterd::launch`]).
pub struct Launch {
    config: PathBuf,
    data_dir: PathBuf,
    env: Vec<(String, String)>,
    nofile: Option<u64>,
    listen_fd: Option<i32>,
    ready_within: Duration,
    /// Whether the store is sled whatever `TEST_STORE` says.
    sled: bool,
}

impl Launch {
    /// An environment variable for the process (after the defaults, so that it
    /// can override `ROSTERD_LISTEN` too).
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.env.push((
            key.to_string(),
            value.as_ref().to_string_lossy().into_owned(),
        ));
        self
    }

    /// On sled in the data dir, whatever `TEST_STORE` says (a benchmark's
    /// side-by-side run).
    pub fn on_sled(mut self) -> Self {
        self.sled = true;
        self
    }

    /// Starts with this open-file limit, soft and hard (so it cannot raise it).
    pub fn nofile(mut self, n: u64) -> Self {
        self.nofile = Some(n);
        self
    }

    /// Socket activation as systemd does it: `fd` (a listening socket of the
    /// caller) becomes fd 3, with `LISTEN_FDS=1` and `LISTEN_PID` set to the
    /// process's own pid (through `sh -c '... exec'`, which keeps the pid).
    pub fn socket_activated(mut self, fd: i32) -> Self {
        self.listen_fd = Some(fd);
        self
    }

    /// How long to wait for the "listening on" line (30 s unless set).
    pub fn ready_within(mut self, d: Duration) -> Self {
        self.ready_within = d;
        self
    }

    pub fn start(self) -> Rosterd {
        use std::os::unix::process::CommandExt;
        let bin = env!("CARGO_BIN_EXE_rosterd");
        let mut cmd = if self.listen_fd.is_some() {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"")
                .arg(bin);
            c
        } else {
            Command::new(bin)
        };
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ROSTERD_") {
                cmd.env_remove(k);
            }
        }
        for k in [
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "LISTEN_FDS",
            "LISTEN_PID",
        ] {
            cmd.env_remove(k);
        }
        cmd.arg("--config")
            .arg(&self.config)
            .env("ROSTERD_LISTEN", "127.0.0.1:0")
            .env("ROSTERD_DATA_DIR", &self.data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // The store the suite runs on (`TEST_STORE`): a database of its own
        // on the shared PostgreSQL, or sled in the data dir.
        if !self.sled {
            for (k, v) in super::pg::test_store_env(&self.data_dir) {
                cmd.env(k, v);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let (nofile, listen_fd) = (self.nofile, self.listen_fd);
        if nofile.is_some() || listen_fd.is_some() {
            // SAFETY: only async-signal-safe libc calls (setrlimit, dup2, fcntl)
            // run in the child between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if let Some(n) = nofile {
                        let lim = libc::rlimit {
                            rlim_cur: n,
                            rlim_max: n,
                        };
                        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    if let Some(fd) = listen_fd {
                        // The listener becomes fd 3 (LISTEN_FDS_START), kept
                        // open across exec (dup2 clears close-on-exec; if it
                        // already is fd 3, clear the flag by hand).
                        let r = if fd == 3 {
                            libc::fcntl(3, libc::F_SETFD, 0)
                        } else {
                            libc::dup2(fd, 3)
                        };
                        if r < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn rosterd");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
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
            config: self.config,
            data_dir: self.data_dir,
            logs,
            reader: Some(reader),
        };
        let line = p.wait_log("listening on http://", self.ready_within);
        let i = line.find("listening on http://").unwrap();
        let addr: String = line[i + "listening on http://".len()..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        p.base = format!("http://{addr}");
        p
    }
}

impl Rosterd {
    /// What [`Launch::start`] will run: `rosterd --config CONFIG` on `data_dir`.
    pub fn launch(config: &Path, data_dir: &Path) -> Launch {
        Launch {
            config: config.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            env: Vec::new(),
            nofile: None,
            listen_fd: None,
            ready_within: Duration::from_secs(30),
            sled: false,
        }
    }

    /// Starts `rosterd --config CONFIG` and waits for "listening on".
    pub fn start(config: &Path, data_dir: &Path) -> Self {
        Self::launch(config, data_dir).start()
    }

    /// Like [`Rosterd::start`], with extra environment variables.
    pub fn start_with(config: &Path, data_dir: &Path, env: &[(&str, &str)]) -> Self {
        env.iter()
            .fold(Self::launch(config, data_dir), |l, (k, v)| l.env(k, v))
            .start()
    }

    /// Like [`Rosterd::start_with`]; with `nofile`, the process starts with that
    /// open-file limit, soft and hard (so it cannot raise it).
    pub fn start_limited(
        config: &Path,
        data_dir: &Path,
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Self {
        let l = env
            .iter()
            .fold(Self::launch(config, data_dir), |l, (k, v)| l.env(k, v));
        match nofile {
            Some(n) => l.nofile(n),
            None => l,
        }
        .start()
    }

    /// The admin token it generated at its first start (`<data_dir>/admin.token`).
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .expect("the generated admin token")
            .trim()
            .to_string()
    }

    /// `GET path` with a bearer `token`: the JSON body, whatever the status
    /// (panics when it is not JSON).
    pub async fn get_json(&self, path: &str, token: &str) -> serde_json::Value {
        let body = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("body");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// The first log line containing `needle` (logged so far or within `timeout`).
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
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
            if Instant::now() > deadline || self.child.try_wait().unwrap().is_some() {
                panic!("no log line with `{needle}`; logs:\n{}", self.logs_text());
            }
            std::thread::sleep(Duration::from_millis(50));
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
        self.proc_kib("VmRSS:").expect("VmRSS")
    }

    /// A `/proc/<pid>/status` figure in KiB (`VmRSS:`, `VmHWM:`).
    pub fn proc_kib(&self, key: &str) -> Option<u64> {
        super::process::proc_status_kib(self.child.id(), key)
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
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "rosterd did not stop");
            std::thread::sleep(Duration::from_millis(50));
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

    /// SIGTERM and its exit status (at most 20 s; then the drop kills it):
    /// for a benchmark, which reports rather than asserts.
    pub fn terminate(mut self) -> Option<ExitStatus> {
        // SAFETY: signalling the child this process started.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Rosterd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
