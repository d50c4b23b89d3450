//! Runs end, whatever happens, through the real binary: a run cut by `kill -9`
//! reads `interrupted` after the restart, a run in flight at SIGTERM is recorded
//! `interrupted` by the stop itself, and a manual run whose HTTP client goes
//! away still finishes. The source is an HR API served here that answers as
//! slowly as the test says.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::Rosterd;

/// A slow HR API: `/people` answers after `delay`.
struct SlowApi {
    base: String,
    delay: Arc<Mutex<Duration>>,
}

async fn slow_api(delay: Duration) -> SlowApi {
    let delay = Arc::new(Mutex::new(delay));
    let d = delay.clone();
    let app = axum::Router::new().route(
        "/people",
        axum::routing::get(move || {
            let d = d.clone();
            async move {
                let wait = *d.lock().unwrap();
                tokio::time::sleep(wait).await;
                let people: Vec<Value> = (0..5)
                    .map(|i| {
                        json!({"id": format!("p{i}"), "email": format!("slow{i}@example.com"),
                               "first": "Slow", "last": format!("Person{i}")})
                    })
                    .collect();
                axum::Json(json!({ "people": people }))
            }
        }),
    );
    let (base, _) = crate::common::serve(app).await;
    SlowApi { base, delay }
}

fn config(dir: &Path, api: &SlowApi, at_start: bool) -> (PathBuf, PathBuf) {
    let source = format!(
        r#"
[[sources]]
id = "slow-hr"
kind = "http"
url = "{}/people"
records = "/people"
join_key = "/id"
priority = 1
run_at_start = {at_start}
full_schedule = "0 0 3 * * *"
timeout_secs = 600

[sources.fields]
email = "/email"
given_name = "/first"
family_name = "/last"
"#,
        api.base
    );
    (
        crate::common::write_config(&dir.join("rosterd.toml"), &source),
        dir.join("data"),
    )
}

fn token(data: &Path) -> String {
    std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_string()
}

async fn runs(base: &str, tok: &str) -> Vec<Value> {
    let v: Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/sync/runs?source=slow-hr"))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

/// Waits (at most 20 s) for a run of the source that `pred` accepts.
async fn wait_run(base: &str, tok: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(r) = runs(base, tok).await.into_iter().find(&pred) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no such run: {:?}",
            runs(base, tok).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_run_leaves_it_interrupted_after_the_restart() {
    let api = slow_api(Duration::from_secs(600)).await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = config(dir.path(), &api, true);
    let mut p = Rosterd::start(&cfg, &data);
    let tok = token(&data);
    let run = wait_run(&p.base, &tok, |r| r["outcome"] == "running").await;
    tokio::task::spawn_blocking(move || {
        p.kill_9();
    })
    .await
    .unwrap();

    // The API answers now; the restart marks the old run before any new one.
    *api.delay.lock().unwrap() = Duration::ZERO;
    let (cfg, _) = config(dir.path(), &api, false);
    let p = Rosterd::start(&cfg, &data);
    let old = wait_run(&p.base, &tok, |r| r["id"] == run["id"]).await;
    assert_eq!(old["outcome"], "interrupted", "{old}");
    assert!(old["finished_at"].is_string(), "{old}");
    let msg = old["message"].as_str().unwrap();
    assert!(msg.contains("found still running"), "{msg}");
    assert!(
        runs(&p.base, &tok)
            .await
            .iter()
            .all(|r| r["outcome"] != "running")
    );
    let logs = p.stop();
    assert!(logs.contains("marked interrupted"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_run_records_it_interrupted_and_stops() {
    let api = slow_api(Duration::from_secs(600)).await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = config(dir.path(), &api, true);
    let p = Rosterd::start(&cfg, &data);
    let tok = token(&data);
    let run = wait_run(&p.base, &tok, |r| r["outcome"] == "running").await;
    let started = Instant::now();
    let logs = tokio::task::spawn_blocking(move || p.stop()).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        started.elapsed()
    );
    assert!(logs.contains("sync run interrupted"), "{logs}");

    // Recorded by the stop itself, not found at the next start.
    let (cfg, _) = config(dir.path(), &api, false);
    let p = Rosterd::start(&cfg, &data);
    let old = wait_run(&p.base, &tok, |r| r["id"] == run["id"]).await;
    assert_eq!(old["outcome"], "interrupted", "{old}");
    let msg = old["message"].as_str().unwrap();
    assert!(msg.contains("while fetching"), "{msg}");
    assert!(!msg.contains("found still running"), "{msg}");
    // Nothing was changed by the interrupted run.
    let v: Value = p.get_json("/api/v1/employees?status=all", &tok).await;
    assert_eq!(v["total"], 0, "{v}");
    p.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_run_finishes_when_its_client_goes_away() {
    let api = slow_api(Duration::from_secs(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = config(dir.path(), &api, false);
    let p = Rosterd::start(&cfg, &data);
    let tok = token(&data);
    let gone = reqwest::Client::new()
        .post(format!("{}/api/v1/sync/sources/slow-hr/run", p.base))
        .bearer_auth(&tok)
        .json(&json!({}))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(gone.is_err_and(|e| e.is_timeout()), "the client gave up");
    let done = wait_run(&p.base, &tok, |r| r["outcome"] != "running").await;
    assert_eq!(done["outcome"], "applied", "{done}");
    assert_eq!(done["counts"]["created"], 5, "{done}");
    p.stop();
}
