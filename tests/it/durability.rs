//! The real `rosterd` binary: acknowledged writes survive `kill -9`, SIGTERM stops
//! cleanly, the config is checked, and no password reaches the logs.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::common::{Rosterd, replace_once};
use crate::support::shipped_config_path as shipped_config;

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

    let mut p = Rosterd::start_with(&shipped_config(), &data, &[("ROSTERD_LOG", "debug")]);
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
    let logs = p.kill_9();
    assert!(!logs.contains(password), "password in the logs");
    assert!(!logs.contains(&tok), "admin token in the logs");
    drop(p);

    let p = Rosterd::start(&shipped_config(), &data);
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
    let p = Rosterd::start(&shipped_config(), &data);
    let resp = reqwest::get(format!("{}/healthz", p.base)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let logs = p.stop();
    assert!(logs.contains("store flushed"), "{logs}");
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
        replace_once(&text, "max_bytes = 2097152", "max_bytez = 2097152"),
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

/// The README's promise: the shipped config, run as-is, shows a populated roster
/// from the demo HR export (synced at start).
#[test]
fn the_shipped_config_shows_the_demo_roster() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut p = Rosterd::start(&shipped_config(), &data);
    let line = p.wait_log("sync run finished", std::time::Duration::from_secs(60));
    assert!(line.contains("outcome=Applied"), "{line}");
    let ctl = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rosterctl"))
            .args(["--url", &p.base, "--token-file"])
            .arg(data.join("admin.token"))
            .args(args)
            .env_remove("ROSTERD_URL")
            .env_remove("ROSTERD_TOKEN")
            .env_remove("ROSTERD_TOKEN_FILE")
            .output()
            .expect("rosterctl");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let list = ctl(&["employees", "list"]);
    assert!(list.contains("margaret.okafor@example.com"), "{list}");
    assert!(
        !list.contains("yuki.tanaka@example.com"),
        "future hire is inactive: {list}"
    );
    assert!(
        !list.contains("nadia.petrova@example.com"),
        "leaver not imported"
    );
    let all: Value = serde_json::from_str(&ctl(&["employees", "list", "--all", "--json"])).unwrap();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 34, "36 rows, 2 leavers not imported");
    assert_eq!(all.iter().filter(|e| e["active"] == true).count(), 33);
    let yuki = all
        .iter()
        .find(|e| e["email"] == "yuki.tanaka@example.com")
        .unwrap();
    assert_eq!(
        yuki["source_facts"]["demo-hr"]["hire"]["date"],
        "2029-06-04"
    );
    // Managers point at profiles.
    let ids: Vec<&str> = all.iter().filter_map(|e| e["id"].as_str()).collect();
    let managed = all
        .iter()
        .filter(|e| e["enterprise"]["manager"].is_string())
        .count();
    assert!(managed >= 30, "managers resolved: {managed}");
    assert!(all.iter().all(|e| {
        e["enterprise"]["manager"]
            .as_str()
            .is_none_or(|m| ids.contains(&m))
    }));
    p.stop();
}
