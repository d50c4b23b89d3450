//! Store benchmark, through the real daemon and its HTTP API as a client sees
//! it: an HR export of N generated employees (default 100,000; set
//! `ROSTERD_BENCH_ENTRIES`) is imported at start, then
//! - an unfiltered SCIM page of 100 at `startIndex` 1, N/2 and N-100 (median of
//!   7 requests each; target under 10 ms at any offset);
//! - unindexed SCIM filters (`co`/`sw`/`ew` on displayName, userName and
//!   emails, and a few more on the name parts; median of 5 requests each;
//!   target under 100 ms at 100,000), answered on the roster's projection,
//!   and two with `sortBy` (sorted there too);
//! - the projection's memory (`rosterd_projection_bytes`) and the daemon's RSS;
//! - the web console's Employees screen, first page over HTTP as a signed-in
//!   browser gets it: the default view (active, by name) and filtered by a name
//!   substring, by role and by owning source (median of 7 each), with how many
//!   profiles each page read from the store (`rosterd_store_record_reads`);
//! - durable-write throughput (SCIM PATCH, each acknowledged after its flush) at
//!   1, 4, 16 and 64 concurrent writers for `ROSTERD_BENCH_SECS` (default 5) each,
//!   with p50/p99 latency and how many writes each flush covered (target: no
//!   hang at any level, and at 64 at least the writes per second of 4).
//!
//! Run: `cargo bench --bench store_load`. Figures are printed, never asserted.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "../tests/support/mod.rs"]
mod support;
use support::process::free_port;
use support::rosterd::Rosterd;

fn export(path: &Path, n: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create export"));
    writeln!(
        f,
        "Employee ID,First Name,Last Name,Display Name,Work Email,Job Title"
    )
    .expect("write");
    let teams = ["Ab Team", "Zeta", "Crabs", "North"];
    for i in 0..n {
        // A given display name (SCIM `displayName` is absent when derived),
        // half of them containing "ab"; a quarter are technicians.
        let team = teams[i % teams.len()];
        let title = if i % 4 == 0 {
            "Technician"
        } else {
            "Dispatcher"
        };
        writeln!(
            f,
            "E{i:07},Given{i},Family{i},Given{i} Family{i} of {team},person{i}@bench.example.com,{title}"
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
display_name = "Display Name"
role = "Job Title"
"#;

/// One value of the daemon's `/metrics`.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The resident set of a process, in MB (Linux).
fn rss_mb(pid: u32) -> Option<f64> {
    Some(support::process::proc_status_kib(pid, "VmRSS:")? as f64 / 1024.0)
}

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
    std::fs::write(&config, format!("{}\n{SOURCE}", support::shipped_config())).expect("config");
    let data = dir.path().join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // The same port after the restart. (The harness drops the bench's own
    // `ROSTERD_BENCH_*`: rosterd refuses unknown `ROSTERD_<KEY>` overrides.)
    let spawn = || {
        Rosterd::launch(&config, &data)
            .env("ROSTERD_LISTEN", format!("127.0.0.1:{port}"))
            .ready_within(Duration::from_secs(120))
            .start()
    };
    let daemon = spawn();
    let daemon_pid = daemon.child.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let data = data.clone();
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
        let mut slowest = Duration::ZERO;
        for f in [
            r#"displayName co "ab""#,
            r#"displayName sw "given7""#,
            r#"displayName ew "zeta""#,
            r#"userName co "son4242""#,
            r#"userName sw "person1""#,
            r#"userName ew "99@bench.example.com""#,
            r#"emails co "n4242""#,
            r#"emails sw "person77""#,
            r#"emails ew "7@bench.example.com""#,
            r#"name.givenName co "en123""#,
            r#"name.familyName sw "family9""#,
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
            let m = median(times);
            slowest = slowest.max(m);
            println!(
                "  {f:<45} {:>7.2} ms  ({total} matches)",
                m.as_secs_f64() * 1e3
            );
        }
        for (what, q) in [
            (
                r#"displayName co "ab", sortBy=userName"#,
                format!(
                    "filter={}&sortBy=userName&count=100",
                    url::form_urlencoded::byte_serialize(br#"displayName co "ab""#)
                        .collect::<String>()
                ),
            ),
            (
                "no filter, sortBy=displayName descending, startIndex=50001",
                "sortBy=displayName&sortOrder=descending&startIndex=50001&count=100".to_string(),
            ),
        ] {
            let mut times = Vec::new();
            let mut total = 0;
            for _ in 0..5 {
                let t = Instant::now();
                let v = users(q.clone()).await.expect("sorted");
                times.push(t.elapsed());
                total = v["totalResults"].as_u64().unwrap_or(0);
            }
            let m = median(times);
            slowest = slowest.max(m);
            println!(
                "  {what:<45} {:>7.2} ms  ({total} matches)",
                m.as_secs_f64() * 1e3
            );
        }
        println!(
            "  slowest median {:.2} ms: target < 100 ms {}",
            slowest.as_secs_f64() * 1e3,
            if slowest < Duration::from_millis(100) {
                "met"
            } else {
                "NOT met"
            }
        );

        let metrics = || {
            let client = client.clone();
            let base = base.clone();
            async move {
                client
                    .get(format!("{base}/metrics"))
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()
            }
        };
        let m = metrics().await.unwrap_or_default();
        println!(
            "projection: {} rows, {:.1} MB ({:.0} bytes per profile); rosterd RSS {:.0} MB",
            metric(&m, "rosterd_projection_rows").unwrap_or(0.0),
            metric(&m, "rosterd_projection_bytes").unwrap_or(0.0) / 1e6,
            metric(&m, "rosterd_projection_bytes").unwrap_or(0.0) / (n.max(1) as f64),
            rss_mb(daemon_pid).unwrap_or(0.0),
        );

        // The console, signed in with the admin token like a browser (no redirects
        // followed: the session cookie comes with the 303).
        let admin = std::fs::read_to_string(data.join("admin.token")).expect("admin token");
        let plain = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", admin.trim())
            .finish();
        let signed_in = plain
            .post(format!("{base}/sign-in"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("sec-fetch-site", "same-origin")
            .body(body)
            .send()
            .await
            .expect("sign in");
        let cookie = signed_in
            .headers()
            .get("set-cookie")
            .and_then(|c| c.to_str().ok())
            .and_then(|c| c.split(';').next())
            .expect("a session cookie")
            .to_string();
        println!(
            "Employees screen, first page of 50 over HTTP (median of 7; target: no full scan of the profiles):"
        );
        for (what, q) in [
            ("default view (active, by name)", ""),
            ("name contains \"given4242\"", "name=given4242"),
            ("name contains \"ab\" (half the roster)", "name=ab"),
            ("role = Technician (a quarter)", "role=technician"),
            ("owning source bench-hr, by email desc", "source=bench-hr&sort=-email"),
        ] {
            let mut times = Vec::new();
            let mut reads = 0.0;
            let mut shown = String::new();
            for _ in 0..7 {
                let before = metric(&metrics().await.unwrap_or_default(), "rosterd_store_record_reads");
                let t = Instant::now();
                let page = plain
                    .get(format!("{base}/employees?{q}"))
                    .header("cookie", &cookie)
                    .send()
                    .await
                    .expect("page");
                let status = page.status();
                let html = page.text().await.unwrap_or_default();
                times.push(t.elapsed());
                assert!(status.is_success(), "{status}: {html}");
                let after = metric(&metrics().await.unwrap_or_default(), "rosterd_store_record_reads");
                reads = after.unwrap_or(0.0) - before.unwrap_or(0.0);
                shown = html
                    .split("id=\"summary\" role=\"status\">")
                    .nth(1)
                    .and_then(|t| t.split('<').next())
                    .unwrap_or("")
                    .to_string();
            }
            println!(
                "  {what:<42} {:>7.2} ms  ({shown}; {reads:.0} profiles read)",
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

    // A restart: the start-up pass reads every stored profile once (the
    // store's active counts and the projection) before the listener binds.
    let _ = daemon.terminate();
    let t = Instant::now();
    let again = spawn();
    let http = support::http::Http::new(Duration::from_secs(10));
    let up = loop {
        if http
            .get(&format!("{}/healthz", again.base), None)
            .is_ok_and(|(status, _)| status == 200)
        {
            break t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "rosterd did not restart"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    println!(
        "restart with {n} stored profiles: /healthz answers after {:.2} s (start-up pass and projection included)",
        up.as_secs_f64()
    );
}
