//! A run answers with its summary, not its plan: the answer stays small however
//! many people the source has, and the plan reads page by page, completely. A
//! run started without waiting shows its progress while it goes (the HR API
//! served here answers as slowly as the test says), through the API and
//! through `rosterctl sync run`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestServer;

/// An HR API at `/people` with `people` people (every `bad`-th one without a
/// usable email), answering after `delay`.
async fn hr_api(people: usize, bad: usize, delay: Arc<Mutex<Duration>>) -> String {
    let app = axum::Router::new().route(
        "/people",
        axum::routing::get(move || {
            let d = delay.clone();
            async move {
                let wait = *d.lock().unwrap();
                tokio::time::sleep(wait).await;
                let people: Vec<Value> = (0..people)
                    .map(|i| {
                        let email = if bad > 0 && i % bad == 0 {
                            format!("not-an-email-{i}")
                        } else {
                            format!("person{i}@example.com")
                        };
                        json!({"id": format!("p{i}"), "email": email,
                               "first": "Many", "last": format!("Person{i}")})
                    })
                    .collect();
                axum::Json(json!({ "people": people }))
            }
        }),
    );
    let (base, _) = crate::common::serve(app).await;
    base
}

fn source(base: &str) -> String {
    format!(
        r#"
[[sources]]
id = "hr"
kind = "http"
url = "{base}/people"
records = "/people"
join_key = "/id"
priority = 1
run_at_start = false
full_schedule = "0 0 3 * * *"
timeout_secs = 600

[sources.fields]
email = "/email"
given_name = "/first"
family_name = "/last"
"#
    )
}

/// Asserts that every create of `plan` shows the fields of its new profile
/// (the person's email and family name, as the HR API gives them).
fn assert_creates_show_their_fields(plan: &[Value]) {
    for item in plan.iter().filter(|i| i["action"] == "create") {
        let n = item["key"].as_str().unwrap().trim_start_matches('p');
        let after = |field: &str| {
            item["changes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["field"] == field)
                .map(|c| c["after"].clone())
        };
        assert_eq!(
            (after("email"), after("family_name")),
            (
                Some(json!(format!("person{n}@example.com"))),
                Some(json!(format!("Person{n}")))
            ),
            "{item}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_run_answers_with_a_small_summary_and_its_plan_pages_completely() {
    const PEOPLE: usize = 3000;
    let base = hr_api(PEOPLE, 50, Arc::new(Mutex::new(Duration::ZERO))).await;
    let s = TestServer::start_with(&source(&base)).await;
    // A dry run's stored plan shows every new profile's fields, page by page.
    let (st, dry) = s
        .post("/api/v1/sync/sources/hr/run", json!({"dry_run": true}))
        .await;
    assert_eq!(
        (st, dry["outcome"].as_str()),
        (StatusCode::OK, Some("dry_run")),
        "{dry}"
    );
    let plan = s.plan(&dry["id"], 700).await;
    assert_eq!(plan.len(), PEOPLE);
    assert_creates_show_their_fields(&plan);
    let resp = s
        .client
        .post(s.url("/api/v1/sync/sources/hr/run"))
        .bearer_auth(&s.token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.bytes().await.unwrap();
    let r: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(r["outcome"], "applied", "{r}");
    let bad = PEOPLE / 50;
    assert_eq!(r["counts"]["created"], PEOPLE - bad, "{r}");
    assert!(r.get("plan").is_none(), "no plan in the answer: {r}");
    // The first errors, and how many more.
    let errors = r["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 20, "{r}");
    assert_eq!(
        errors.len() as u64 + r["errors_omitted"].as_u64().unwrap(),
        bad as u64,
        "{r}"
    );
    for k in [
        "id",
        "source",
        "kind",
        "trigger",
        "started_at",
        "finished_at",
    ] {
        assert!(!r[k].is_null(), "{k}: {r}");
    }
    assert!(r["timings_ms"]["apply"].is_u64(), "{r}");
    assert!(
        bytes.len() < 16 * 1024,
        "a run of {PEOPLE} people answered with {} bytes",
        bytes.len()
    );

    // The plan, page by page: every item once, in order.
    let plan = s.plan(&r["id"], 700).await;
    assert_eq!(plan.len(), PEOPLE, "creates and the rows not imported");
    let creates: Vec<&Value> = plan.iter().filter(|i| i["action"] == "create").collect();
    assert_eq!(creates.len(), PEOPLE - bad);
    let mut keys: Vec<&str> = plan.iter().map(|i| i["key"].as_str().unwrap()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), PEOPLE, "no item twice");
    // Each create shows the fields it gave its profile, on every page.
    assert_creates_show_their_fields(&plan);
    // The summary reads the same afterwards; a page past the end is empty.
    let (_, shown) = s.get(&format!("/api/v1/sync/runs/{}", r["id"])).await;
    assert_eq!(shown["counts"], r["counts"]);
    assert!(shown.get("progress").is_none(), "{shown}");
    let (st, past) = s
        .get(&format!("/api/v1/sync/runs/{}/plan?offset=99999", r["id"]))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (
            past["items"].as_array().unwrap().len(),
            &past["next_offset"]
        ),
        (0, &Value::Null)
    );
    let (st, _) = s.get("/api/v1/sync/runs/424242/plan").await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // `rosterctl sync show` shows the first items and says how to see all;
    // `--json` streams the whole plan after the summary.
    let id = r["id"].to_string();
    let out = crate::rosterctl::ctl(&s, &["sync", "show", &id]).await;
    out.assert_code(0);
    assert!(
        out.stdout.contains("more: rosterctl sync show"),
        "{}",
        out.stdout
    );
    let shown = out
        .stdout
        .lines()
        .filter(|l| l.contains("  create "))
        .count();
    assert!((90..=100).contains(&shown), "the first items only: {shown}");
    let out = crate::rosterctl::ctl(&s, &["sync", "show", &id, "--plan"]).await;
    out.assert_code(0);
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.contains("  create "))
            .count(),
        PEOPLE - bad
    );
    let out = crate::rosterctl::ctl(&s, &["sync", "show", &id, "--json"]).await;
    out.assert_code(0);
    let whole = out.json();
    assert_eq!(whole["id"], r["id"]);
    assert_eq!(whole["plan"].as_array().unwrap().len(), PEOPLE);
    assert_eq!(whole["plan"], Value::Array(plan));
    s.stop().await;
}

/// Waits (at most 30 s) until `GET /api/v1/sync/runs/{id}` satisfies `pred`.
async fn wait_for(s: &TestServer, id: &Value, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, r) = s.get(&format!("/api/v1/sync/runs/{id}")).await;
        if pred(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "not reached: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_without_waiting_shows_its_progress() {
    let delay = Arc::new(Mutex::new(Duration::from_secs(3)));
    let base = hr_api(40, 0, delay.clone()).await;
    let s = TestServer::start_with(&source(&base)).await;
    let (st, started) = s
        .post("/api/v1/sync/sources/hr/run", json!({"wait": false}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{started}");
    assert_eq!(started["outcome"], "running", "{started}");
    assert!(started.get("plan").is_none(), "{started}");
    let id = started["id"].clone();
    // The source is slow: the run is seen fetching.
    let r = wait_for(&s, &id, |r| r["progress"].is_object()).await;
    assert_eq!(r["outcome"], "running", "{r}");
    assert_eq!(r["progress"]["phase"], "fetch", "{r}");
    assert_eq!(r["progress"]["applied"], 0, "{r}");
    // A second run of the source cannot start beside it.
    let (st, _) = s
        .post("/api/v1/sync/sources/hr/run", json!({"wait": false}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let done = wait_for(&s, &id, |r| r["outcome"] != "running").await;
    assert_eq!(done["outcome"], "applied", "{done}");
    assert_eq!(done["counts"]["created"], 40, "{done}");
    assert!(done.get("progress").is_none(), "{done}");

    // `rosterctl sync run` watches the run: without a terminal, a line per
    // phase on stderr, then the summary on stdout.
    let out = crate::rosterctl::ctl(&s, &["sync", "run", "hr"]).await;
    out.assert_code(0);
    assert!(
        out.stderr.contains("fetch: 0 fetched"),
        "progress lines: {}",
        out.stderr
    );
    assert!(out.stdout.contains("applied"), "{}", out.stdout);
    assert!(out.stdout.contains("40 unchanged"), "{}", out.stdout);
    let out = crate::rosterctl::ctl(&s, &["sync", "run", "hr", "--json"]).await;
    out.assert_code(0);
    let summary = out.json();
    assert_eq!(summary["outcome"], "applied", "{summary}");
    assert!(summary.get("plan").is_none(), "{summary}");
    s.stop().await;
}
