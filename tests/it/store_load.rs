//! The store under real load, through the real binary: 64 SCIM writers (POST,
//! PATCH, PUT, DELETE) and 16 admin-API writers at once. Every acknowledged
//! write is there afterwards with its content, a write after the load answers
//! within a second, and a `kill -9` in the middle of the load loses nothing that
//! was acknowledged.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::Rosterd;

const SCIM_WRITERS: usize = 64;
const ADMIN_WRITERS: usize = 16;

/// What a profile must look like after the load.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// Present, with this display name.
    Present(String),
    Deleted,
}

/// What one writer saw: per profile, the last acknowledged state, and the
/// state of a write still in flight when the daemon went away (either may be
/// what is stored).
#[derive(Debug, Default)]
struct Seen {
    acked: HashMap<String, Expect>,
    in_flight: Option<(String, Expect)>,
    writes: usize,
    /// Non-2xx answers other than the expected kind, with their status.
    failures: Vec<String>,
}

/// How one write went.
enum Sent {
    /// Acknowledged, with the response body.
    Acked(Value),
    /// Refused (recorded as a failure); the writer goes on.
    Refused,
    /// Timed out (recorded) or the daemon went away: the writer stops.
    Stop,
}

impl Seen {
    /// Sends one write of profile `id` (none for a create) that should leave
    /// it as `expect`, keeping it as in flight until it is acknowledged.
    async fn send(
        &mut self,
        req: reqwest::RequestBuilder,
        id: Option<&str>,
        expect: &Expect,
    ) -> Sent {
        if let Some(id) = id {
            self.in_flight = Some((id.to_string(), expect.clone()));
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                self.failures.push(format!("timed out: {e}"));
                return Sent::Stop;
            }
            // The daemon went away (the kill -9 test).
            Err(_) => return Sent::Stop,
        };
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            self.failures.push(format!("{status}: {body}"));
            return Sent::Refused;
        }
        self.writes += 1;
        self.in_flight = None;
        Sent::Acked(body)
    }
}

struct Target {
    base: String,
    admin: String,
    scim: String,
    client: reqwest::Client,
}

fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    (
        crate::common::write_config(&dir.join("rosterd.toml"), ""),
        dir.join("data"),
    )
}

fn target(p: &Rosterd, data: &Path) -> Target {
    let read = |f: &str| {
        std::fs::read_to_string(data.join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    Target {
        base: p.base.clone(),
        admin: read("admin.token"),
        scim: read("scim.token"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(128)
            .build()
            .unwrap(),
    }
}

/// One SCIM writer: creates users, then PATCHes, PUTs and now and then
/// DELETEs them, until `until` or the daemon goes away.
async fn scim_writer(t: std::sync::Arc<Target>, w: usize, until: Instant) -> Seen {
    let mut seen = Seen::default();
    let mut mine: Vec<(String, String)> = Vec::new(); // (id, userName)
    let mut n = 0usize;
    while Instant::now() < until {
        n += 1;
        let step = n % 7;
        let (req, expect, id): (reqwest::RequestBuilder, Expect, Option<String>) = if mine
            .is_empty()
            || step == 0
            || step == 3
        {
            let user = format!("s{w}n{n}");
            let body = json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": user,
                "name": {"givenName": "Load", "familyName": format!("W{w} N{n}")},
                "displayName": format!("{user} created"),
                "emails": [{"value": format!("{user}@load.example.com"), "primary": true}],
                "active": true
            });
            let req = t
                .client
                .post(format!("{}/scim/v2/Users", t.base))
                .bearer_auth(&t.scim)
                .json(&body);
            (req, Expect::Present(format!("{user} created")), None)
        } else {
            let (id, user) = mine[n % mine.len()].clone();
            match step {
                1 | 4 => {
                    let name = format!("{user} patched {n}");
                    let body = json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "replace", "path": "displayName", "value": name}]
                    });
                    let req = t
                        .client
                        .patch(format!("{}/scim/v2/Users/{id}", t.base))
                        .bearer_auth(&t.scim)
                        .json(&body);
                    (req, Expect::Present(name), Some(id))
                }
                2 | 5 => {
                    let name = format!("{user} put {n}");
                    let body = json!({
                        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                        "userName": user,
                        "name": {"givenName": "Load", "familyName": format!("W{w} put")},
                        "displayName": name,
                        "emails": [{"value": format!("{user}@load.example.com"), "primary": true}],
                        "active": true
                    });
                    let req = t
                        .client
                        .put(format!("{}/scim/v2/Users/{id}", t.base))
                        .bearer_auth(&t.scim)
                        .json(&body);
                    (req, Expect::Present(name), Some(id))
                }
                _ => {
                    let req = t
                        .client
                        .delete(format!("{}/scim/v2/Users/{id}", t.base))
                        .bearer_auth(&t.scim);
                    mine.retain(|(i, _)| *i != id);
                    (req, Expect::Deleted, Some(id))
                }
            }
        };
        let body = match seen.send(req, id.as_deref(), &expect).await {
            Sent::Stop => return seen,
            Sent::Refused => continue,
            Sent::Acked(body) => body,
        };
        let id = match id {
            Some(id) => id,
            None => {
                let id = body["id"].as_str().unwrap().to_string();
                mine.push((id.clone(), body["userName"].as_str().unwrap().to_string()));
                id
            }
        };
        seen.acked.insert(id, expect);
    }
    seen
}

/// One admin-API writer: creates employees and edits their display names.
async fn admin_writer(t: std::sync::Arc<Target>, w: usize, until: Instant) -> Seen {
    let mut seen = Seen::default();
    let mut mine: Vec<String> = Vec::new();
    let mut n = 0usize;
    while Instant::now() < until {
        n += 1;
        let (req, expect, id) = if mine.is_empty() || n.is_multiple_of(3) {
            let name = format!("a{w}n{n} created");
            let body = json!({
                "given_name": "Admin", "family_name": format!("W{w} N{n}"),
                "display_name": name,
                "email": format!("a{w}n{n}@load.example.com"),
                "positions": ["Driver"]
            });
            let req = t
                .client
                .post(format!("{}/api/v1/employees", t.base))
                .bearer_auth(&t.admin)
                .json(&body);
            (req, Expect::Present(name), None)
        } else {
            let id = mine[n % mine.len()].clone();
            let name = format!("a{w} edit {n}");
            let req = t
                .client
                .patch(format!("{}/api/v1/employees/{id}", t.base))
                .bearer_auth(&t.admin)
                .json(&json!({"display_name": name}));
            (req, Expect::Present(name), Some(id))
        };
        let body = match seen.send(req, id.as_deref(), &expect).await {
            Sent::Stop => return seen,
            Sent::Refused => continue,
            Sent::Acked(body) => body,
        };
        let id = match id {
            Some(id) => id,
            None => {
                let id = body["id"].as_str().unwrap().to_string();
                mine.push(id.clone());
                id
            }
        };
        seen.acked.insert(id, expect);
    }
    seen
}

/// Runs every writer until `until`; returns what each saw.
async fn load(t: &std::sync::Arc<Target>, until: Instant) -> Vec<Seen> {
    let mut tasks = Vec::new();
    for w in 0..SCIM_WRITERS {
        tasks.push(tokio::spawn(scim_writer(t.clone(), w, until)));
    }
    for w in 0..ADMIN_WRITERS {
        tasks.push(tokio::spawn(admin_writer(t.clone(), w, until)));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

/// The stored state of one profile, read through the admin API.
async fn stored(t: &Target, id: &str) -> Expect {
    let resp = t
        .client
        .get(format!("{}/api/v1/employees/{id}", t.base))
        .bearer_auth(&t.admin)
        .send()
        .await
        .unwrap();
    match resp.status().as_u16() {
        404 => Expect::Deleted,
        200 => {
            let v: Value = resp.json().await.unwrap();
            Expect::Present(v["display_name"].as_str().unwrap_or_default().to_string())
        }
        s => panic!("GET {id}: {s}"),
    }
}

/// Every acknowledged write is there; a write in flight may or may not be.
async fn check_all(t: &Target, seen: &[Seen]) -> usize {
    let mut checked = 0;
    for s in seen {
        for (id, want) in &s.acked {
            let got = stored(t, id).await;
            let in_flight = s
                .in_flight
                .as_ref()
                .filter(|(i, _)| i == id)
                .map(|(_, e)| e);
            assert!(
                got == *want || Some(&got) == in_flight,
                "{id}: acknowledged {want:?}, in flight {in_flight:?}, stored {got:?}"
            );
            checked += 1;
        }
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eighty_concurrent_writers_lose_nothing_and_never_wedge() {
    let dir = tempfile::tempdir().unwrap();
    let (config, data) = setup(dir.path());
    let p = Rosterd::start(&config, &data);
    let t = std::sync::Arc::new(target(&p, &data));

    let seen = load(&t, Instant::now() + Duration::from_secs(6)).await;
    let failures: Vec<&String> = seen.iter().flat_map(|s| &s.failures).collect();
    assert!(
        failures.is_empty(),
        "{} writes failed, the first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let writes: usize = seen.iter().map(|s| s.writes).sum();
    assert!(writes > 500, "only {writes} writes in 6 s");
    assert!(seen.iter().all(|s| s.in_flight.is_none()));

    // A write after the load answers within a second.
    let started = Instant::now();
    let resp = t
        .client
        .post(format!("{}/api/v1/employees", t.base))
        .bearer_auth(&t.admin)
        .timeout(Duration::from_secs(5))
        .json(&json!({"given_name": "After", "family_name": "Load",
                      "email": "after.load@example.com"}))
        .send()
        .await
        .expect("a write after the load answers");
    let took = started.elapsed();
    assert_eq!(resp.status(), 201);
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let ready = t
        .client
        .get(format!("{}/readyz", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    let checked = check_all(&t, &seen).await;
    assert!(checked > 100, "{checked}");
    // The counts the store keeps agree with the profiles there are.
    let list: Value = t
        .client
        .get(format!("{}/scim/v2/Users?count=0", t.base))
        .bearer_auth(&t.scim)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let present = seen
        .iter()
        .flat_map(|s| s.acked.values())
        .filter(|e| matches!(e, Expect::Present(_)))
        .count()
        + 1;
    assert_eq!(list["totalResults"].as_u64().unwrap() as usize, present);
    p.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_concurrent_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let (config, data) = setup(dir.path());
    let mut p = Rosterd::start(&config, &data);
    let t = std::sync::Arc::new(target(&p, &data));

    // Writers run for longer than the daemon lives: the kill lands mid-load.
    let writers = {
        let t = t.clone();
        tokio::spawn(async move { load(&t, Instant::now() + Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed = tokio::task::spawn_blocking(move || {
        p.kill_9();
        p
    })
    .await
    .unwrap();
    let seen = writers.await.unwrap();
    drop(killed);
    let writes: usize = seen.iter().map(|s| s.writes).sum();
    assert!(writes > 100, "only {writes} writes before the kill");
    let timeouts: Vec<&String> = seen
        .iter()
        .flat_map(|s| &s.failures)
        .filter(|f| f.starts_with("timed out"))
        .collect();
    assert!(timeouts.is_empty(), "{timeouts:?}");

    let p = Rosterd::start(&config, &data);
    let t = std::sync::Arc::new(Target {
        base: p.base.clone(),
        ..target(&p, &data)
    });
    let checked = check_all(&t, &seen).await;
    assert!(checked > 100, "{checked}");
    p.stop();
}
