//! Issue 16, through the real daemon: hostile SCIM filters, invented methods and
//! huge logins, forwarded headers, sign-in limits over TCP and the unix socket,
//! idle connections under a 1,024-file limit, early 413, names with bidi
//! controls, photo bytes, the paged outbox, and tokens in query strings.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Rosterd, TestServer, employee};

/// The shipped config (without the demo source) plus `extra`, written to `dir`.
fn config_file(dir: &Path, extra: &str) -> PathBuf {
    crate::common::write_config(&dir.join("rosterd.toml"), extra)
}

fn read_token(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

/// The filters: 1,700 parentheses, 4,100 `not`, 6,800 `and` terms,
/// 5,000 nested `emails[`.
fn hostile_filters() -> Vec<(&'static str, String)> {
    vec![
        (
            "parens",
            format!("{}userName eq \"x\"{}", "(".repeat(1700), ")".repeat(1700)),
        ),
        ("nots", format!("{}userName pr", "not ".repeat(4100))),
        ("ands", vec!["userName pr"; 6800].join(" and ")),
        (
            "brackets",
            format!("{}value pr{}", "emails[".repeat(5000), "]".repeat(5000)),
        ),
        // Under the token limit, over the nesting limit.
        ("deep", format!("{}userName pr", "not ".repeat(100))),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_scim_filters_get_400_and_the_daemon_survives() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut p = Rosterd::start(&config_file(dir.path(), ""), &data);
    let scim = read_token(&data.join("scim.token"));
    let c = reqwest::Client::new();
    let base = p.base.clone();
    let url = |path: &str| format!("{base}/scim/v2{path}");
    let user: Value = c
        .post(url("/Users"))
        .bearer_auth(&scim)
        .json(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "deep@example.com",
            "name": {"givenName": "Dee", "familyName": "Pest"},
            "emails": [{"value": "deep@example.com", "type": "work", "primary": true}],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let uid = user["id"].as_str().expect("user id").to_string();
    let groups: Value = c
        .get(url("/Groups"))
        .bearer_auth(&scim)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let gid = groups["Resources"][0]["id"]
        .as_str()
        .expect("a group")
        .to_string();

    for (name, f) in hostile_filters() {
        let mut answers = Vec::new();
        for kind in ["Users", "Groups"] {
            // A URI holds at most 64 KiB: the 6,800 terms go by .search only.
            if f.len() < 32 * 1024 {
                answers.push(
                    c.get(url(&format!("/{kind}")))
                        .bearer_auth(&scim)
                        .query(&[("filter", f.as_str())])
                        .send()
                        .await
                        .unwrap(),
                );
            }
            answers.push(
                c.post(url(&format!("/{kind}/.search")))
                    .bearer_auth(&scim)
                    .header("content-type", "application/scim+json")
                    .json(&json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                        "filter": f,
                    }))
                    .send()
                    .await
                    .unwrap(),
            );
        }
        for (path, attr) in [
            (format!("/Users/{uid}"), "emails"),
            (format!("/Groups/{gid}"), "members"),
        ] {
            answers.push(
                c.patch(url(&path))
                    .bearer_auth(&scim)
                    .header("content-type", "application/scim+json")
                    .json(&json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "remove", "path": format!("{attr}[{f}]")}],
                    }))
                    .send()
                    .await
                    .unwrap(),
            );
        }
        for resp in answers {
            let status = resp.status();
            let v: Value = resp.json().await.unwrap();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {v}");
            assert_eq!(v["scimType"], "invalidFilter", "{name}: {v}");
            assert!(
                v["detail"].as_str().unwrap().contains("limit"),
                "{name}: names the limit: {v}"
            );
        }
        assert!(p.alive(), "rosterd died on the {name} filter");
    }
    let health = c.get(format!("{}/healthz", p.base)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let logs = p.stop();
    assert!(!logs.contains("overflowed its stack"), "{logs}");
}

/// `/metrics` as text, and the distinct values of one label of one metric.
async fn metrics_text(c: &reqwest::Client, base: &str) -> String {
    c.get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn label_values(text: &str, label: &str) -> std::collections::BTreeSet<String> {
    let needle = format!("{label}=\"");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let i = l.find(&needle)? + needle.len();
            Some(l[i..].split('"').next()?.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_and_huge_logins_do_not_grow_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut p = Rosterd::start(&config_file(dir.path(), ""), &data);
    let c = reqwest::Client::new();
    // Warm up: every route the test uses once, then measure.
    c.get(format!("{}/healthz", p.base)).send().await.unwrap();
    let before = metrics_text(&c, &p.base).await;
    let rss_before = p.rss_kib();

    // Token-less requests with invented methods, 8 at a time.
    let n = 20_000;
    let base = p.base.clone();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let c = c.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(8) {
                let m = Method::from_bytes(format!("X{i}").as_bytes()).unwrap();
                let r = c
                    .request(m, format!("{base}/healthz"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
                let _ = r.bytes().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // And invented paths, under the admin API and under SCIM: `unmatched`.
    for i in 0..1_000 {
        for path in [format!("/random{i}"), format!("/scim/v2/random{i}")] {
            let r = c.get(format!("{}{path}", p.base)).send().await.unwrap();
            assert!(r.status().is_client_error(), "{path}: {}", r.status());
        }
    }
    let after = metrics_text(&c, &p.base).await;
    let methods = label_values(&after, "method");
    let closed: std::collections::BTreeSet<String> = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "other",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert!(methods.is_subset(&closed), "method labels: {methods:?}");
    assert!(methods.contains("other"));
    assert!(
        after.len() < before.len() + 16 * 1024,
        "/metrics grew from {} to {} bytes",
        before.len(),
        after.len()
    );
    let routes = label_values(&after, "route");
    assert!(routes.len() < 10, "route labels: {routes:?}");
    assert!(routes.contains("unmatched"), "route labels: {routes:?}");
    assert!(
        !routes.iter().any(|r| r.contains("random")),
        "route labels: {routes:?}"
    );

    // 300 failed sign-ins with a login of ~1 MB each: refused before the limiter.
    let huge = "x".repeat(1_000_000);
    for _ in 0..300 {
        let r = c
            .post(format!("{}/api/v1/auth/login", p.base))
            .json(&json!({"login": huge, "password": "whatever-it-is"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["field"], "login", "{v}");
    }
    // Many distinct logins of a legal length: the limiter keeps short keys only.
    for i in 0..2_000 {
        let login = format!("{i:0>300}");
        let r = c
            .post(format!("{}/api/v1/auth/login", p.base))
            .json(&json!({"login": login, "password": "whatever-it-is"}))
            .send()
            .await
            .unwrap();
        assert!(
            [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(&r.status()),
            "{}",
            r.status()
        );
    }
    let rss_after = p.rss_kib();
    assert!(p.alive());
    // The issue saw 15 → 286 MB for 50,000 methods and 41 → 337 MB for 300 logins.
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    eprintln!(
        "RSS {rss_before} KiB -> {rss_after} KiB; /metrics {} -> {} bytes",
        before.len(),
        after.len()
    );
    p.stop();
}

async fn login(s: &TestServer, login: &str, password: &str, xff: Option<&str>) -> StatusCode {
    let mut req = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"login": login, "password": password}));
    if let Some(x) = xff {
        req = req.header("x-forwarded-for", x);
    }
    req.send().await.unwrap().status()
}

#[tokio::test]
async fn an_account_locked_by_email_is_locked_by_username_too() {
    let s = TestServer::start().await;
    let password = "correct horse battery staple";
    let mut body = employee("Lock", "Smith", "lock.smith@example.com");
    body["account_status"] = json!("credentials");
    body["username"] = json!("lsmith");
    body["password"] = json!(password);
    s.create(body).await;
    assert_eq!(login(&s, "lsmith", password, None).await, StatusCode::OK);
    // login_max_failures = 5, by email in another case.
    for _ in 0..5 {
        assert_eq!(
            login(&s, "Lock.Smith@Example.com", "wrong password!", None).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login(&s, "lsmith", password, None).await,
        StatusCode::TOO_MANY_REQUESTS,
        "the username names the same, locked account"
    );
    assert_eq!(
        login(&s, "lock.smith@example.com", password, None).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    s.stop().await;
}

async fn scim_create_location(
    s: &TestServer,
    email: &str,
    headers: &[(&str, &str)],
) -> (String, String) {
    let scim = read_token(&s.token_file.parent().unwrap().join("scim.token"));
    let mut req = s
        .client
        .post(s.url("/scim/v2/Users"))
        .bearer_auth(scim)
        .json(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": email,
            "name": {"givenName": "Fwd", "familyName": "Host"},
            "emails": [{"value": email, "type": "work", "primary": true}],
        }));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let v: Value = resp.json().await.unwrap();
    (
        location,
        v["meta"]["location"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn forwarded_headers_are_ignored_unless_the_peer_is_a_trusted_proxy() {
    let fwd = [
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "host=evil2.example;proto=https"),
    ];
    // No trusted_proxies: Location is the Host the client used.
    let s = TestServer::start().await;
    let host = s.base.trim_start_matches("http://").to_string();
    let (loc, meta) = scim_create_location(&s, "a@example.com", &fwd).await;
    assert!(
        loc.starts_with(&format!("http://{host}/scim/v2/Users/")),
        "{loc}"
    );
    assert_eq!(loc, meta);
    // Every attempt counts against 127.0.0.1, whatever X-Forwarded-For says.
    for i in 0..30 {
        let xff = format!("198.51.100.{i}");
        assert_eq!(
            login(&s, &format!("nobody{i}"), "x", Some(&xff)).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login(&s, "nobody-else", "x", Some("203.0.113.1")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    s.stop().await;

    // 127.0.0.1 is a trusted proxy: its forwarded headers are believed.
    let s = TestServer::start_with_http("trusted_proxies = [\"127.0.0.1\"]").await;
    let (loc, meta) = scim_create_location(
        &s,
        "b@example.com",
        &[
            ("x-forwarded-host", "roster.example.com"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert!(
        loc.starts_with("https://roster.example.com/scim/v2/Users/"),
        "{loc}"
    );
    assert_eq!(loc, meta);
    for i in 0..40 {
        let xff = format!("203.0.113.77, 198.51.100.{i}");
        assert_eq!(
            login(&s, &format!("nobody{i}"), "x", Some(&xff)).await,
            StatusCode::UNAUTHORIZED,
            "each forwarded client has its own bucket"
        );
    }
    for _ in 0..30 {
        login(&s, "someone", "x", Some("198.51.100.200")).await;
    }
    assert_eq!(
        login(&s, "someone-else", "x", Some("198.51.100.200")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login(&s, "someone-else", "x", Some("198.51.100.201")).await,
        StatusCode::UNAUTHORIZED
    );
    s.stop().await;
}

/// One HTTP/1.1 request over a unix socket; returns the status code.
fn unix_request(
    sock: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> u16 {
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_unix_socket_the_address_limit_uses_a_trusted_proxys_forwarded_address() {
    let body = |i: usize| json!({"login": format!("ghost{i}"), "password": "x"}).to_string();
    // Not trusted: no client address, so no shared bucket (the per-account
    // limit still holds), and a note says so.
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("r.sock");
    let sock_env = sock.display().to_string();
    let mut p = Rosterd::start_with(
        &config_file(dir.path(), ""),
        &dir.path().join("data"),
        &[("ROSTERD_LISTEN_UNIX", &sock_env)],
    );
    p.wait_log(
        "per-address sign-in limit is off for the unix socket",
        Duration::from_secs(5),
    );
    let sock2 = sock.clone();
    let codes = tokio::task::spawn_blocking(move || {
        (0..40)
            .map(|i| {
                unix_request(
                    &sock2,
                    "POST",
                    "/api/v1/auth/login",
                    &[("X-Forwarded-For", "198.51.100.1")],
                    &body(i),
                )
            })
            .collect::<Vec<u16>>()
    })
    .await
    .unwrap();
    assert!(codes.iter().all(|c| *c == 401), "{codes:?}");
    p.stop();

    // Trusted ("unix"): the forwarded address has its own bucket.
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("r.sock");
    let sock_env = sock.display().to_string();
    let p = Rosterd::start_with(
        &config_file(dir.path(), ""),
        &dir.path().join("data"),
        &[
            ("ROSTERD_LISTEN_UNIX", &sock_env),
            ("ROSTERD_HTTP__TRUSTED_PROXIES", "[\"unix\"]"),
        ],
    );
    let codes = tokio::task::spawn_blocking(move || {
        let mut codes: Vec<u16> = (0..31)
            .map(|i| {
                unix_request(
                    &sock,
                    "POST",
                    "/api/v1/auth/login",
                    &[("X-Forwarded-For", "198.51.100.1")],
                    &body(i),
                )
            })
            .collect();
        codes.push(unix_request(
            &sock,
            "POST",
            "/api/v1/auth/login",
            &[("X-Forwarded-For", "198.51.100.2")],
            &body(99),
        ));
        codes
    })
    .await
    .unwrap();
    assert!(codes[..30].iter().all(|c| *c == 401), "{codes:?}");
    assert_eq!(codes[30], 429, "{codes:?}");
    assert_eq!(codes[31], 401, "another client behind the proxy: {codes:?}");
    p.stop();
}

/// Raises this process's open-file limit: to at least 8,192 where it may (root),
/// else the soft limit to the hard one.
fn raise_own_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on local structs.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        let want = lim.rlim_max.max(8192);
        let up = libc::rlimit {
            rlim_cur: want,
            rlim_max: want,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &up) != 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_block_healthz_under_a_1024_file_limit() {
    assert!(
        raise_own_nofile() >= 4096,
        "the test needs room for 1,200 sockets"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut p = Rosterd::start_limited(
        &config_file(dir.path(), ""),
        &dir.path().join("data"),
        &[],
        Some(1024),
    );
    let line = p.wait_log("connection cap", Duration::from_secs(5));
    assert!(line.contains("max_connections=896"), "{line}");
    let addr = p.base.trim_start_matches("http://").to_string();
    // 1,200 connections that send nothing (and a few that send half a request).
    let mut idle = Vec::new();
    for i in 0..1200 {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        if i % 100 == 0 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
        }
        idle.push(s);
    }
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for _ in 0..5 {
        let t = Instant::now();
        let r = c.get(format!("{}/healthz", p.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "/healthz took {:?}",
            t.elapsed()
        );
    }
    assert!(p.alive());
    drop(idle);
    p.stop();
}

/// Reads from `s` until EOF or `limit`; returns what came and how long it took.
fn read_until_closed(s: &mut std::net::TcpStream, limit: Duration) -> (String, Duration) {
    s.set_read_timeout(Some(limit)).unwrap();
    let t = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
        if t.elapsed() > limit {
            break;
        }
    }
    (String::from_utf8_lossy(&out).to_string(), t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_and_idle_connections_are_closed_and_huge_bodies_refused_early() {
    let s =
        TestServer::start_with_http("header_read_timeout_secs = 1\nidle_timeout_secs = 2").await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let (mut silent, mut half, mut huge, mut huge_scim, mut huge_form, mut keep) =
        tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || {
            let silent = std::net::TcpStream::connect(&addr).unwrap();
            let mut half = std::net::TcpStream::connect(&addr).unwrap();
            half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
            let mut huge = std::net::TcpStream::connect(&addr).unwrap();
            huge.write_all(b"POST /api/v1/employees HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n{").unwrap();
            let mut huge_scim = std::net::TcpStream::connect(&addr).unwrap();
            huge_scim.write_all(b"POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nContent-Type: application/scim+json\r\nContent-Length: 99999999999\r\n\r\n{").unwrap();
            let mut huge_form = std::net::TcpStream::connect(&addr).unwrap();
            huge_form.write_all(b"POST /employees/new HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: 99999999999\r\n\r\n--x").unwrap();
            let mut keep = std::net::TcpStream::connect(&addr).unwrap();
            keep.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            (silent, half, huge, huge_scim, huge_form, keep)
        }
    })
    .await
    .unwrap();
    tokio::task::spawn_blocking(move || {
        let (text, took) = read_until_closed(&mut huge, Duration::from_secs(5));
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
        assert!(text.contains("payload_too_large"), "{text}");
        assert!(took < Duration::from_secs(3), "413 took {took:?}");
        let (text, _) = read_until_closed(&mut huge_scim, Duration::from_secs(5));
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
        assert!(
            text.contains("urn:ietf:params:scim:api:messages:2.0:Error"),
            "{text}"
        );
        // A console form gets a page a person can read.
        let (text, _) = read_until_closed(&mut huge_form, Duration::from_secs(5));
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
        assert!(text.contains("text/html"), "{text}");
        assert!(text.contains("Nothing was saved"), "{text}");
        // Header-read timeout: 1 s (hyper closes, with or without a 408).
        for conn in [&mut silent, &mut half] {
            let (text, took) = read_until_closed(conn, Duration::from_secs(6));
            assert!(
                text.is_empty() || text.starts_with("HTTP/1.1 408"),
                "{text}"
            );
            assert!(took < Duration::from_secs(4), "closed after {took:?}");
        }
        // A kept-alive connection that goes quiet after its response is closed too.
        let (text, took) = read_until_closed(&mut keep, Duration::from_secs(8));
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(took < Duration::from_secs(5), "closed after {took:?}");
    })
    .await
    .unwrap();
    // And the server goes on.
    assert_eq!(s.get("/healthz").await.0, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn names_with_bidi_controls_separators_or_a_bom_are_refused() {
    let s = TestServer::start().await;
    for (i, bad) in [
        "Eve\u{202E}lyn",
        "Line\u{2028}Break",
        "Para\u{2029}graph",
        "\u{FEFF}Bom",
        "Iso\u{2066}late",
    ]
    .iter()
    .enumerate()
    {
        for field in ["given_name", "family_name", "display_name"] {
            let mut body = employee("Ok", "Name", &format!("n{i}{field}@example.com"));
            body[field] = json!(bad);
            let (st, v) = s.post("/api/v1/employees", body).await;
            assert_eq!(
                st,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{bad:?} in {field}: {v}"
            );
            assert_eq!(v["field"], field, "{v}");
            assert!(v["message"].as_str().unwrap().contains("U+"), "{v}");
        }
    }
    // Over SCIM too.
    let scim = read_token(&s.token_file.parent().unwrap().join("scim.token"));
    let resp = s
        .client
        .post(s.url("/scim/v2/Users"))
        .bearer_auth(scim)
        .json(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "rtl@example.com",
            "name": {"givenName": "Ad\u{202E}nim", "familyName": "X"},
            "emails": [{"value": "rtl@example.com", "type": "work", "primary": true}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let (_, list) = s.get("/api/v1/employees?status=all").await;
    assert_eq!(list["total"], 0, "nothing stored: {list}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_is_paged_and_rosterctl_follows_the_pages() {
    let s = TestServer::start().await;
    for i in 0..7 {
        let mut body = employee("Out", &format!("Box{i}"), &format!("ob{i}@example.com"));
        body["account_status"] = json!("invite");
        s.create(body).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/outbox?limit=3&cursor={c}"),
            None => "/api/v1/outbox?limit=3".to_string(),
        };
        let (st, v) = s.get(&path).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let items = v["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|m| m["id"].as_u64().unwrap()));
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {seen:?}"
    );
    let (st, v) = s.get("/api/v1/outbox?cursor=nope").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (_, v) = s.get("/api/v1/outbox?dead=true").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 0);

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rosterctl"))
        .args(["--url", &s.base, "--token-file"])
        .arg(&s.token_file)
        .args(["outbox", "list", "--json", "--page-size", "2"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 7, "{all}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_query_string_is_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = Rosterd::start_with(
        &config_file(dir.path(), ""),
        &data,
        &[("ROSTERD_LOG", "debug")],
    );
    let secret = "QuerySecret0123456789abcdef";
    let c = reqwest::Client::new();
    for path in [
        format!("/api/v1/employees?access_token={secret}"),
        format!("/scim/v2/Users?access_token={secret}"),
        format!("/healthz?access_token={secret}"),
        format!("/nowhere?access_token={secret}"),
    ] {
        let r = c.get(format!("{}{path}", p.base)).send().await.unwrap();
        let _ = r.bytes().await;
    }
    let logs = p.stop();
    assert!(
        logs.contains("/api/v1/employees"),
        "requests are traced: {logs}"
    );
    assert!(!logs.contains(secret), "token in the logs:\n{logs}");
}
