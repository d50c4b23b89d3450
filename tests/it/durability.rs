//! The real `rosterd` binary: acknowledged writes survive `kill -9`, SIGTERM stops
//! cleanly, the config is checked, and no password reaches the logs.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

struct Proc {
    child: Child,
    base: String,
    log_rx: mpsc::Receiver<String>,
}

impl Proc {
    /// Starts rosterd on a free port with `data_dir`; waits for "listening on".
    fn start(config: &Path, data_dir: &Path) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rosterd"))
            .arg("--config")
            .arg(config)
            .env("ROSTERD_LISTEN", "127.0.0.1:0")
            .env("ROSTERD_DATA_DIR", data_dir)
            .env("ROSTERD_LOG", "debug")
            .env_remove("ROSTERD_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rosterd");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                let _ = child.kill();
                let _ = child.wait();
                panic!("rosterd did not report listening within 30 s");
            });
            if let Some(i) = line.find("listening on http://") {
                let rest = &line[i + "listening on http://".len()..];
                let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                return Proc {
                    child,
                    base: format!("http://{addr}"),
                    log_rx: rx,
                };
            }
        }
    }

    /// Everything logged so far.
    fn drain_logs(&self) -> String {
        let mut out = String::new();
        while let Ok(l) = self.log_rx.recv_timeout(Duration::from_millis(200)) {
            out.push_str(&l);
            out.push('\n');
        }
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn shipped_config() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rosterd.toml")
}

fn token(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("admin.token"))
        .expect("generated token")
        .trim()
        .to_string()
}

#[tokio::test]
async fn kill_9_after_an_acknowledged_write_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    let password = "kill-nine-secret-passphrase";

    let mut p = Proc::start(&shipped_config(), &data);
    let tok = token(&data);
    let mut ids = Vec::new();
    for i in 0..20 {
        let mut body = json!({"given_name": "Kay", "family_name": format!("Nine{i}"),
                              "email": format!("k{i}@example.com"), "positions": ["Driver", "Mechanic"]});
        if i == 0 {
            body["account_status"] = json!("credentials");
            body["password"] = json!(password);
        }
        let resp = client
            .post(format!("{}/api/v1/employees", p.base))
            .bearer_auth(&tok)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let v: Value = resp.json().await.unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let resp = client
        .post(format!("{}/api/v1/employees/{}/deactivate", p.base, ids[3]))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // SIGKILL: no chance to flush at exit.
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    let logs = p.drain_logs();
    assert!(!logs.contains(password), "password in the logs");
    assert!(!logs.contains(&tok), "admin token in the logs");
    drop(p);

    let p = Proc::start(&shipped_config(), &data);
    assert_eq!(
        token(&data),
        tok,
        "the generated token is kept across restarts"
    );
    for (i, id) in ids.iter().enumerate() {
        let resp = client
            .get(format!("{}/api/v1/employees/{id}", p.base))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "employee {i} lost");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["positions"], json!(["Driver", "Mechanic"]));
        assert_eq!(v["active"], i != 3, "deactivation of {i} lost");
    }
    // The indexes survived too: the email is still taken.
    let resp = client
        .post(format!("{}/api/v1/employees", p.base))
        .bearer_auth(&tok)
        .json(&json!({"given_name": "Dup", "family_name": "Licate", "email": "K5@EXAMPLE.COM"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
}

#[tokio::test]
async fn sigterm_stops_cleanly_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut p = Proc::start(&shipped_config(), &data);
    let resp = reqwest::get(format!("{}/healthz", p.base)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let pid = p.child.id().to_string();
    let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(st.success());
    let mut waited = 0;
    let status = loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            break s;
        }
        waited += 1;
        assert!(waited < 200, "rosterd did not stop within 20 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0));
    assert!(p.drain_logs().contains("store flushed"));
}

#[test]
fn check_config_accepts_the_shipped_file_and_names_bad_keys() {
    let out = Command::new(env!("CARGO_BIN_EXE_rosterd"))
        .args(["check-config", "--config"])
        .arg(shipped_config())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(shipped_config()).unwrap();
    std::fs::write(
        &bad,
        text.replace("max_bytes = 2097152", "max_bytez = 2097152"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rosterd"))
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains("max_bytez"), "{err}");

    // The daemon refuses to start on it too.
    let out = Command::new(env!("CARGO_BIN_EXE_rosterd"))
        .args(["--config"])
        .arg(&bad)
        .env("ROSTERD_DATA_DIR", dir.path().join("d"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !dir.path().join("d").exists(),
        "nothing created for an invalid config"
    );
}
