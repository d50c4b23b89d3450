//! Store benchmark, through the real daemon and its HTTP API as a client sees
//! it: an HR export of N generated employees (default 100,000; set
//! `ROSTERD_BENCH_ENTRIES`) is imported at start, then
//! - an unfiltered SCIM page of 100 at `startIndex` 1, N/2 and N-100 (median of
//!   7 requests each; target under 10 ms at any offset);
//! - unindexed SCIM filters (`co`/`sw`/`ew` on display name, name, userName and
//!   email; median of 5 requests each; target under 100 ms at 100,000);
//! - durable-write throughput (SCIM PATCH, each acknowledged after its flush) at
//!   1, 4, 16 and 64 concurrent writers for `ROSTERD_BENCH_SECS` (default 5) each,
//!   with p50/p99 latency and how many writes each flush covered (target: no
//!   hang at any level, and at 64 at least the writes per second of 4).
//!
//! Run: `cargo bench --bench store_load`. Figures are printed, never asserted.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18080)
}

fn shipped_config_text() -> String {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rosterd.toml"))
            .expect("config/rosterd.toml");
    match text.find("# ---- demo HR source") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn export(path: &Path, n: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create export"));
    writeln!(f, "Employee ID,First Name,Last Name,Work Email,Job Title").expect("write");
    for i in 0..n {
        writeln!(
            f,
            "E{i:07},Given{i},Family{i},person{i}@bench.example.com,Dispatcher"
        )
        .expect("write");
    }
}

const SOURCE: &str = r#"
[[sources]]
id = "bench-hr"
kind = "csv"
path = "bench.csv"
priority = 1
run_at_start = true
full_schedule = "0 0 3 * * *"
account_status = "later"
max_deactivations_percent = 100
join_key = "Employee ID"

[sources.fields]
email = "Work Email"
given_name = "First Name"
family_name = "Last Name"
role = "Job Title"
"#;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn main() {
    let n: usize = std::env::var("ROSTERD_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let secs: u64 = std::env::var("ROSTERD_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().expect("tempdir");
    export(&dir.path().join("bench.csv"), n);
    let config = dir.path().join("rosterd.toml");
    std::fs::write(&config, format!("{}\n{SOURCE}", shipped_config_text())).expect("config");
    let data = dir.path().join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("rosterd.log")).expect("log");
    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_rosterd"))
            .arg("--config")
            .arg(&config)
            .env("ROSTERD_LISTEN", format!("127.0.0.1:{port}"))
            .env("ROSTERD_DATA_DIR", &data)
            .env_remove("NOTIFY_SOCKET")
            // The bench's own settings are not rosterd config overrides
            // (`ROSTERD_<KEY>`: rosterd refuses unknown keys).
            .env_remove("ROSTERD_BENCH_ENTRIES")
            .env_remove("ROSTERD_BENCH_SECS")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start rosterd"),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(128)
            .build()
            .expect("client");
        let started = Instant::now();
        let token = loop {
            if let Ok(t) = std::fs::read_to_string(data.join("scim.token")) {
                break t.trim().to_string();
            }
            assert!(started.elapsed() < Duration::from_secs(60), "rosterd did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let users = |q: String| {
            let client = client.clone();
            let token = token.clone();
            let base = base.clone();
            async move {
                client
                    .get(format!("{base}/scim/v2/Users?{q}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .ok()?
                    .json::<Value>()
                    .await
                    .ok()
            }
        };
        // Wait for the import.
        loop {
            if let Some(v) = users("count=0".into()).await
                && v["totalResults"].as_u64() == Some(n as u64)
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "the import did not finish"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!(
            "store_load: {n} employees imported from an HR export in {:.1} s (from start)",
            started.elapsed().as_secs_f64()
        );

        println!("unfiltered SCIM page of 100 (median of 7; target < 10 ms at any offset):");
        for start in [1, n / 2, n.saturating_sub(100).max(1)] {
            let mut times = Vec::new();
            for _ in 0..7 {
                let t = Instant::now();
                let v = users(format!("startIndex={start}&count=100"))
                    .await
                    .expect("page");
                times.push(t.elapsed());
                assert_eq!(v["Resources"].as_array().map(Vec::len), Some(100));
            }
            println!(
                "  startIndex={start:>7}: {:>7.2} ms",
                median(times).as_secs_f64() * 1e3
            );
        }

        println!("unindexed SCIM filters, page of 100 (median of 5; target < 100 ms):");
        for f in [
            r#"displayName co "ab""#,
            r#"name.givenName co "en123""#,
            r#"name.familyName sw "family9""#,
            r#"userName ew "99@bench.example.com""#,
            r#"emails co "n4242""#,
            r#"userName sw "person1" and active eq true"#,
        ] {
            let q: String = url::form_urlencoded::byte_serialize(f.as_bytes()).collect();
            let mut times = Vec::new();
            let mut total = 0;
            for _ in 0..5 {
                let t = Instant::now();
                let v = users(format!("filter={q}&count=100")).await.expect("filter");
                times.push(t.elapsed());
                total = v["totalResults"].as_u64().unwrap_or(0);
            }
            println!(
                "  {f:<45} {:>7.2} ms  ({total} matches)",
                median(times).as_secs_f64() * 1e3
            );
        }

        // Ids to write to: one page per writer.
        let page = users("startIndex=1&count=64".into()).await.expect("ids");
        let ids: Vec<String> = page["Resources"]
            .as_array()
            .expect("resources")
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect();
        let ids = Arc::new(ids);
        println!(
            "durable writes (SCIM PATCH, {secs} s per level; target: no hang, 64 >= 4 in writes/s):"
        );
        let mut per_level = Vec::new();
        for writers in [1usize, 4, 16, 64] {
            let until = Instant::now() + Duration::from_secs(secs);
            let mut tasks = Vec::new();
            for w in 0..writers {
                let client = client.clone();
                let token = token.clone();
                let base = base.clone();
                let ids = ids.clone();
                tasks.push(tokio::spawn(async move {
                    let id = ids[w % ids.len()].clone();
                    let mut lat = Vec::new();
                    let mut failed = 0usize;
                    let mut k = 0usize;
                    while Instant::now() < until {
                        k += 1;
                        let body = json!({
                            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                            "Operations": [{"op": "replace", "path": "displayName",
                                            "value": format!("writer {w} write {k}")}]
                        });
                        let t = Instant::now();
                        let ok = client
                            .patch(format!("{base}/scim/v2/Users/{id}"))
                            .bearer_auth(&token)
                            .json(&body)
                            .send()
                            .await
                            .map(|r| r.status().is_success())
                            .unwrap_or(false);
                        if ok {
                            lat.push(t.elapsed());
                        } else {
                            failed += 1;
                        }
                    }
                    (lat, failed)
                }));
            }
            let t = Instant::now();
            let mut lat = Vec::new();
            let mut failed = 0;
            for task in tasks {
                let (l, f) = task.await.expect("writer");
                lat.extend(l);
                failed += f;
            }
            let took = t.elapsed().as_secs_f64();
            lat.sort();
            let rate = lat.len() as f64 / took;
            per_level.push((writers, rate));
            if lat.is_empty() {
                println!("  {writers:>2} writers: no write completed ({failed} failed)");
                continue;
            }
            println!(
                "  {writers:>2} writers: {rate:>8.0} writes/s  p50 {:>6.2} ms  p99 {:>6.2} ms  failed {failed}",
                pct(&lat, 0.5).as_secs_f64() * 1e3,
                pct(&lat, 0.99).as_secs_f64() * 1e3,
            );
        }
        let at = |w| {
            per_level
                .iter()
                .find(|(n, _)| *n == w)
                .map(|(_, r)| *r)
                .unwrap_or(0.0)
        };
        println!(
            "  64 writers / 4 writers: {:.2}x (target >= 1.0)",
            at(64) / at(4).max(1e-9)
        );
    });
}
