//! Invitations, password resets and sign-in, against a real SMTP server process
//! (python3-aiosmtpd on a loopback port): what it receives, the links' tokens
//! (single use, expiring, superseded), the outbox surviving an SMTP outage and a
//! daemon restart, and no secret in logs, audit entries or API answers.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{ManualClock, TestServer, employee, replace_once, write_config};
use crate::smtp::{Smtp, free_port, rcpt, token_of};

pub(crate) const PASSWORD: &str = "correct horse battery staple";

pub(crate) fn mail_toml(port: u16, extra: &str) -> String {
    format!(
        r#"
[mail]
host = "127.0.0.1"
port = {port}
tls = "none"
from = "Acme Fleet <no-reply@acme.example>"
reply_to = "IT Help <it@acme.example>"
company_name = "Acme Fleet"
base_url = "https://fleet.acme.example/"
max_attempts = 1000
backoff_initial_secs = 0.05
backoff_max_secs = 0.2
poll_interval_secs = 0.05
timeout_secs = 5
{extra}
"#
    )
}

/// A public (no admin token) JSON POST.
pub(crate) async fn public_post(s: &TestServer, path: &str, body: Value) -> (StatusCode, Value) {
    let resp = s
        .client
        .post(s.url(path))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn login(s: &TestServer, login: &str, password: &str) -> (StatusCode, Value) {
    public_post(
        s,
        "/api/v1/auth/login",
        json!({"login": login, "password": password}),
    )
    .await
}

pub(crate) fn invite(given: &str, email: &str) -> Value {
    let mut v = employee(given, "Tester", email);
    v["account_status"] = json!("invite");
    v
}

/// Waits until no outbox message is pending.
async fn outbox_settled(s: &TestServer) -> Vec<Value> {
    for _ in 0..600 {
        let (st, v) = s.get("/api/v1/outbox").await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let items = v["items"].as_array().cloned().unwrap_or_default();
        if items.iter().all(|m| m["state"] != "pending") {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the outbox did not settle");
}

#[tokio::test]
async fn admin_create_with_invite_mails_a_link_that_works_once_then_sign_in() {
    let tmp = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(free_port(), &tmp.path().join("mail"));
    let s = TestServer::start_with(&mail_toml(smtp.port, "")).await;

    let created = s.create(invite("Ina", "ina@example.com")).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["account_status"], "invite");
    let m = smtp.wait_for_to("ina@example.com").await;
    assert_eq!(m["subject"], "You're invited to Acme Fleet");
    assert!(
        m["from"]
            .as_str()
            .unwrap()
            .contains("no-reply@acme.example")
    );
    assert!(m["reply_to"].as_str().unwrap().contains("it@acme.example"));
    let text = m["text"].as_str().unwrap();
    assert!(text.contains("Hello Ina Tester,"), "{text}");
    assert!(
        text.contains("https://fleet.acme.example/accept-invite?token="),
        "{text}"
    );
    assert!(m["html"].as_str().unwrap().contains("Acme Fleet"));
    let token = token_of(&m);
    assert_eq!(token.len(), 64, "256-bit token");

    // Not set up yet: no sign-in.
    assert_eq!(
        login(&s, "ina@example.com", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A weak password is refused and leaves the token usable.
    let (st, v) = public_post(
        &s,
        "/api/v1/account/accept-invite",
        json!({"token": token, "username": "ina", "password": "short"}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (st, v) = public_post(
        &s,
        "/api/v1/account/accept-invite",
        json!({"token": token, "username": "ina", "password": PASSWORD}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["account_status"], "credentials");
    // Used once: refused the second time.
    let (st, v) = public_post(
        &s,
        "/api/v1/account/accept-invite",
        json!({"token": token, "username": "ina2", "password": PASSWORD}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "invalid_token");

    // Sign in by username or email.
    let (st, v) = login(&s, "ina", PASSWORD).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["role"], "Technician");
    assert!(
        v["effective_permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("jobs.complete"))
    );
    assert_eq!(
        login(&s, "INA@example.com", PASSWORD).await.0,
        StatusCode::OK
    );

    // Wrong password and unknown user: the same answer.
    let (st1, wrong) = login(&s, "ina", "not the password at all").await;
    let (st2, unknown) = login(&s, "nobody@example.com", PASSWORD).await;
    assert_eq!(
        (st1, st2),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(wrong, unknown);
    // ...after similar work: an unknown login is checked against a dummy hash.
    let mut known = Duration::MAX;
    let mut nobody = Duration::MAX;
    for i in 0..3 {
        let t = std::time::Instant::now();
        login(&s, "ina", "still not the password").await;
        known = known.min(t.elapsed());
        let t = std::time::Instant::now();
        login(&s, &format!("nobody{i}@example.com"), PASSWORD).await;
        nobody = nobody.min(t.elapsed());
    }
    assert!(
        nobody * 3 >= known,
        "unknown login answered much faster ({nobody:?}) than a wrong password ({known:?})"
    );

    // Deactivated: the right password gets 403 with the reason.
    let (st, _) = s
        .post(&format!("/api/v1/employees/{id}/deactivate"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = login(&s, "ina", PASSWORD).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(v["message"].as_str().unwrap().contains("inactive"), "{v}");
    // Not enabled: 403 too.
    s.post(&format!("/api/v1/employees/{id}/activate"), json!({}))
        .await;
    let (st, _) = s
        .patch(
            &format!("/api/v1/employees/{id}"),
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = login(&s, "ina", PASSWORD).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("not enabled"),
        "{v}"
    );

    // No token, password or hash in API answers or the audit log.
    let mut seen = String::new();
    for path in [
        format!("/api/v1/employees/{id}"),
        format!("/api/v1/audit?employee={id}"),
        "/api/v1/outbox".to_string(),
        "/api/v1/employees?status=all".to_string(),
    ] {
        let (st, v) = s.get(&path).await;
        assert_eq!(st, StatusCode::OK, "{path}: {v}");
        seen.push_str(&v.to_string());
    }
    assert!(
        seen.contains("account_token"),
        "the audit shows a token was issued"
    );
    for secret in [token.as_str(), PASSWORD, "$argon2"] {
        assert!(!seen.contains(secret), "`{secret}` leaked: {seen}");
    }
    let digest = sha256_hex(&token);
    assert!(!seen.contains(&digest), "the token digest leaked");
    s.stop().await;
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[tokio::test]
async fn bulk_invite_and_reset_refuse_per_employee_and_newest_link_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(free_port(), &tmp.path().join("mail"));
    let s = TestServer::start_with(&mail_toml(smtp.port, "")).await;

    let later = s.create(employee("Lea", "Later", "lea@example.com")).await;
    let mut c = employee("Cid", "Creds", "cid@example.com");
    c["account_status"] = json!("credentials");
    c["password"] = json!("the old password 123");
    let creds = s.create(c).await;
    let mut g = employee("Gus", "Gone", "gus@example.com");
    g["active"] = json!(false);
    let gone = s.create(g).await;
    let ids: Vec<String> = [&later, &creds, &gone]
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();

    // Dry run: reasons, nothing queued.
    let (st, v) = s
        .post(
            "/api/v1/employees/bulk",
            json!({"action": "send_invite", "ids": ids, "dry_run": true}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (v["succeeded"].as_u64(), v["failed"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(
        s.get("/api/v1/outbox").await.1["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let (_, v) = s
        .post(
            "/api/v1/employees/bulk",
            json!({"action": "send_invite", "ids": ids}),
        )
        .await;
    let r = v["results"].as_array().unwrap();
    assert_eq!(r[0]["ok"], true);
    assert!(
        r[1]["error"].as_str().unwrap().contains("already set up"),
        "{v}"
    );
    assert!(r[2]["error"].as_str().unwrap().contains("inactive"), "{v}");

    let (_, v) = s
        .post(
            "/api/v1/employees/bulk",
            json!({"action": "send_password_reset", "ids": ids}),
        )
        .await;
    let r = v["results"].as_array().unwrap();
    assert!(
        r[0]["error"].as_str().unwrap().contains("not set up"),
        "{v}"
    );
    assert_eq!(r[1]["ok"], true, "{v}");
    assert!(r[2]["error"].as_str().unwrap().contains("inactive"), "{v}");

    let reset = smtp.wait_for_to("cid@example.com").await;
    assert_eq!(reset["subject"], "Reset your Acme Fleet password");
    assert!(
        reset["text"]
            .as_str()
            .unwrap()
            .contains("/reset-password?token=")
    );
    let (st, v) = public_post(
        &s,
        "/api/v1/account/reset-password",
        json!({"token": token_of(&reset), "password": "the new password 456"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        login(&s, "cid@example.com", "the new password 456").await.0,
        StatusCode::OK
    );
    assert_eq!(
        login(&s, "cid@example.com", "the old password 123").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (st, _) = public_post(
        &s,
        "/api/v1/account/reset-password",
        json!({"token": token_of(&reset), "password": "a third password 789"}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a reset link works once");

    // A second invite supersedes the first: only the newest link works.
    smtp.wait_for_to("lea@example.com").await;
    s.post(
        "/api/v1/employees/bulk",
        json!({"action": "send_invite", "ids": [&ids[0]]}),
    )
    .await;
    outbox_settled(&s).await;
    let to_lea: Vec<Value> = smtp
        .messages()
        .into_iter()
        .filter(|m| rcpt(m) == "lea@example.com")
        .collect();
    assert_eq!(to_lea.len(), 2, "both invites were sent");
    let (st, _) = public_post(
        &s,
        "/api/v1/account/accept-invite",
        json!({"token": token_of(&to_lea[0]), "username": "lea", "password": PASSWORD}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "the older link was superseded");
    let (st, v) = public_post(
        &s,
        "/api/v1/account/accept-invite",
        json!({"token": token_of(&to_lea[1]), "username": "lea", "password": PASSWORD}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The audit names the action, not the token.
    let (_, audit) = s.get(&format!("/api/v1/audit?employee={}", ids[0])).await;
    let text = audit.to_string();
    assert!(
        text.contains("send_invite") && text.contains("accept_invite"),
        "{text}"
    );
    assert!(!text.contains(&token_of(&to_lea[1])));
    s.stop().await;
}

/// The link's lifetime passes on the daemon's account clock (moved forward by
/// the test: no waiting).
#[tokio::test]
async fn an_expired_invite_link_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(free_port(), &tmp.path().join("mail"));
    let clock = ManualClock::new();
    let s = TestServer::start_with_clock(
        &mail_toml(smtp.port, "[accounts]\ninvite_ttl_secs = 3600\n"),
        &clock,
    )
    .await;
    s.create(invite("Eve", "eve@example.com")).await;
    let m = smtp.wait_for_to("eve@example.com").await;
    clock.advance(Duration::from_secs(3601));
    let (st, v) = public_post(
        &s,
        "/api/v1/account/accept-invite",
        json!({"token": token_of(&m), "username": "eve", "password": PASSWORD}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "invalid_token");
    s.stop().await;
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_account_and_per_address() {
    let s = TestServer::start_with("[accounts]\nlogin_max_failures = 3\n").await;
    let mut c = employee("Rat", "Limit", "rat@example.com");
    c["account_status"] = json!("credentials");
    c["password"] = json!(PASSWORD);
    s.create(c).await;
    for _ in 0..3 {
        assert_eq!(
            login(&s, "rat@example.com", "wrong guess 000").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (st, v) = login(&s, "rat@example.com", PASSWORD).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    // Another account is not affected.
    assert_eq!(
        login(&s, "someone@example.com", "x").await.0,
        StatusCode::UNAUTHORIZED
    );
    s.stop().await;

    // Per client address: every attempt counts, whichever account.
    let s = TestServer::start_with("[accounts]\nlogin_max_attempts_per_address = 3\n").await;
    for i in 0..3 {
        let (st, _) = login(&s, &format!("u{i}@example.com"), "whatever 123").await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    let resp = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"login": "u9@example.com", "password": "whatever 123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    s.stop().await;
}

// rosterctl runs as a blocking child process: the server needs its own thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_message_is_listed_and_retried_with_rosterctl() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = TestServer::start_with(&replace_once(
        &mail_toml(port, ""),
        "max_attempts = 1000",
        "max_attempts = 2",
    ))
    .await;
    s.create(invite("Dee", "dee@example.com")).await;
    let items = outbox_settled(&s).await;
    assert_eq!(items[0]["state"], "dead");
    assert_eq!(items[0]["attempts"], 2);
    assert!(
        items[0]["last_error"].as_str().unwrap().contains("SMTP"),
        "{items:?}"
    );
    let ctl = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rosterctl"))
            .args(["--url", &s.base, "--token-file"])
            .arg(&s.token_file)
            .args(args)
            .output()
            .expect("rosterctl");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, out) = ctl(&["outbox", "list", "--dead"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("dee@example.com") && out.contains("dead"),
        "{out}"
    );
    let smtp = Smtp::start(port, &tmp.path().join("mail"));
    let id = items[0]["id"].as_u64().unwrap().to_string();
    let (code, out) = ctl(&["outbox", "retry", &id]);
    assert_eq!(code, Some(0), "{out}");
    smtp.wait_for_to("dee@example.com").await;
    let items = outbox_settled(&s).await;
    assert_eq!(items[0]["state"], "sent");
    let (code, out) = ctl(&["outbox", "list", "--dead"]);
    assert_eq!((code, out.trim()), (Some(0), "no dead messages"));
    s.stop().await;
}

// rosterctl runs as a blocking child process: the server needs its own thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rosterctl_bulk_send_invite_previews_then_queues() {
    let tmp = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(free_port(), &tmp.path().join("mail"));
    let s = TestServer::start_with(&mail_toml(smtp.port, "")).await;
    let a = s.create(employee("Bea", "Bulk", "bea@example.com")).await;
    let mut c = employee("Cal", "Creds", "cal@example.com");
    c["account_status"] = json!("credentials");
    c["password"] = json!(PASSWORD);
    let b = s.create(c).await;
    let ids = format!(
        "{},{}",
        a["id"].as_str().unwrap(),
        b["id"].as_str().unwrap()
    );
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rosterctl"))
            .args(["--url", &s.base, "--token-file"])
            .arg(&s.token_file)
            .args(["bulk", "send-invite", "--ids", &ids])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .expect("rosterctl");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // Without a terminal and without --yes: preview only.
    let (code, out, err) = run(&[]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(out.contains("1 will be sent an invite"), "{out}");
    assert!(out.contains("already set up"), "{out}");
    assert!(
        s.get("/api/v1/outbox").await.1["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (code, out, err) = run(&["--yes"]);
    assert_eq!(code, Some(1), "one refusal fails the run: {out}{err}");
    assert!(out.contains("sent an invite to 1 employee"), "{out}");
    smtp.wait_for_to("bea@example.com").await;
    s.stop().await;
}

// ---------------------------------------------------------------------------
// The real binary: SMTP down, daemon restarted, SMTP up → each message once.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn smtp_down_and_a_restart_lose_nothing_and_send_each_message_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let config = write_config(&tmp.path().join("rosterd.toml"), &mail_toml(port, ""));
    let client = reqwest::Client::new();
    let people = ["ann@example.com", "bob@example.com", "cat@example.com"];

    // SMTP is down: the invitations wait in the outbox.
    let p = crate::common::Rosterd::start_with(&config, &data, &[("ROSTERD_LOG", "debug")]);
    let token = p.admin_token();
    for (i, email) in people.iter().enumerate() {
        let r = client
            .post(format!("{}/api/v1/employees", p.base))
            .bearer_auth(&token)
            .json(&invite(&format!("P{i}"), email))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // Until the worker has tried each once (a bounded poll, not a fixed wait).
    let mut outbox = Value::Null;
    for _ in 0..200 {
        outbox = p.get_json("/api/v1/outbox", &token).await;
        let tried = |m: &Value| m["attempts"].as_u64() >= Some(1) && m["last_error"].is_string();
        if outbox["items"]
            .as_array()
            .is_some_and(|items| items.len() == 3 && items.iter().all(tried))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let items = outbox["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    for m in items {
        assert_eq!(m["state"], "pending", "{m}");
        assert!(m["attempts"].as_u64().unwrap() >= 1, "{m}");
        assert!(m["last_error"].is_string(), "{m}");
    }
    let mut logs = p.stop();

    // Restarted, then SMTP comes up: each message arrives exactly once.
    let p = crate::common::Rosterd::start_with(&config, &data, &[("ROSTERD_LOG", "debug")]);
    let smtp = Smtp::start(port, &tmp.path().join("mail"));
    smtp.wait_for("three invitations", |m| m.len() >= 3).await;
    for _ in 0..100 {
        let outbox: Value = p.get_json("/api/v1/outbox", &token).await;
        if outbox["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "sent")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = smtp.messages();
    let mut to: Vec<String> = got.iter().map(rcpt).collect();
    to.sort();
    assert_eq!(to, people, "each message exactly once");

    // Accept one invitation and sign in through the real binary.
    let tok = token_of(&got[0]);
    let r = client
        .post(format!("{}/api/v1/account/accept-invite", p.base))
        .json(&json!({"token": tok, "username": "first", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = client
        .post(format!("{}/api/v1/auth/login", p.base))
        .json(&json!({"login": "first", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let audit = client
        .get(format!("{}/api/v1/audit?limit=1000", p.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    logs.push_str(&p.stop());
    assert!(logs.contains("outbox message sent"), "{logs}");

    // No token (nor its digest), password or hash in the logs or the audit log.
    for m in &got {
        let t = token_of(m);
        for (what, text) in [("logs", &logs), ("audit", &audit)] {
            assert!(!text.contains(&t), "a token is in the {what}");
            assert!(
                !text.contains(&sha256_hex(&t)),
                "a token digest is in the {what}"
            );
        }
    }
    for (what, text) in [("logs", &logs), ("audit", &audit)] {
        assert!(!text.contains(PASSWORD), "the password is in the {what}");
        assert!(
            !text.contains("$argon2"),
            "a password hash is in the {what}"
        );
    }
}

#[tokio::test]
async fn an_ldap_sync_creating_profiles_with_status_invite_mails_them() {
    use crate::slapd::{self, ADMIN_DN, ADMIN_PW, Tree};
    let tmp = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(free_port(), &tmp.path().join("mail"));
    let sl = slapd::slapd().await;
    let mut ldap = slapd::admin(sl.port).await;
    let tree = Tree::new(&mut ldap, "mail-invite").await;
    tree.person(&mut ldap, "ivy", "Ivy", "Invite", "ivy@corp.example", &[])
        .await;
    let pw_file = tmp.path().join("ldap.pw");
    std::fs::write(&pw_file, ADMIN_PW).unwrap();
    let source = crate::ldap_sync::source_toml(
        &tree,
        sl.port,
        &pw_file,
        ADMIN_DN,
        "account_status = \"invite\"",
    );
    let s = TestServer::start_with(&format!("{}\n{source}", mail_toml(smtp.port, ""))).await;
    let (st, r) = s.post("/api/v1/sync/sources/corp/run", json!({})).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["counts"]["created"], 1, "{r}");
    let m = smtp.wait_for_to("ivy@corp.example").await;
    assert!(m["text"].as_str().unwrap().contains("Hello Ivy Invite,"));
    let (st, v) = public_post(
        &s,
        "/api/v1/account/accept-invite",
        json!({"token": token_of(&m), "username": "ivy.i", "password": PASSWORD}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The sync's next run leaves the account as set up.
    let (_, r) = s.post("/api/v1/sync/sources/corp/run", json!({})).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    assert_eq!(
        login(&s, "ivy@corp.example", PASSWORD).await.0,
        StatusCode::OK
    );
    s.stop().await;
}

#[tokio::test]
async fn send_test_email_proves_the_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(free_port(), &tmp.path().join("mail"));
    let config = write_config(&tmp.path().join("rosterd.toml"), &mail_toml(smtp.port, ""));
    let out = Command::new(env!("CARGO_BIN_EXE_rosterd"))
        .args(["--config"])
        .arg(&config)
        .args(["send-test-email", "--to", "ops@example.com"])
        .output()
        .expect("rosterd");
    assert!(out.status.success(), "{out:?}");
    let m = smtp.wait_for_to("ops@example.com").await;
    assert!(m["subject"].as_str().unwrap().contains("Acme Fleet"));
    // Without [mail]: a clear refusal.
    let out = Command::new(env!("CARGO_BIN_EXE_rosterd"))
        .args(["--config"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rosterd.toml"))
        .args(["send-test-email", "--to", "ops@example.com"])
        .output()
        .expect("rosterd");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [mail] section"));
}

#[tokio::test]
async fn a_scim_created_user_gets_an_invitation_when_mail_is_on() {
    let tmp = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(free_port(), &tmp.path().join("mail"));
    let s = TestServer::start_with(&mail_toml(smtp.port, "")).await;
    // The shipped config serves SCIM with a generated token in the data dir.
    let scim_token =
        std::fs::read_to_string(s.token_file.parent().unwrap().join("scim.token")).unwrap();
    let resp = s
        .client
        .post(s.url("/scim/v2/Users"))
        .bearer_auth(scim_token.trim())
        .header("content-type", "application/scim+json")
        .body(
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "sam.scim@corp.example",
                "name": {"givenName": "Sam", "familyName": "Scim"},
                "emails": [{"value": "sam.scim@corp.example", "type": "work", "primary": true}],
                "active": true
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let created: Value = resp.json().await.unwrap();
    let ext = &created["urn:rosterd:params:scim:schemas:extension:rosterd:2.0:User"];
    assert_eq!(
        ext["accountStatus"], "invite",
        "default with [mail]: {created}"
    );
    let m = smtp.wait_for_to("sam.scim@corp.example").await;
    assert!(m["text"].as_str().unwrap().contains("Hello Sam Scim,"));
    let (st, v) = public_post(
        &s,
        "/api/v1/account/accept-invite",
        json!({"token": token_of(&m), "username": "sam", "password": PASSWORD}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(login(&s, "sam", PASSWORD).await.0, StatusCode::OK);
    s.stop().await;
}

/// A private CA and a certificate for 127.0.0.1 signed by it (openssl):
/// returns (ca.pem, server cert, server key).
fn test_ca(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=rosterd test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key"))
}

/// `tls = "implicit"` and `tls = "starttls"` against aiosmtpd with a
/// certificate from a private CA (trusted through SSL_CERT_FILE), through the
/// real binary: the connection rosterd makes itself (with TCP_NODELAY) is
/// secured by lettre, the certificate is checked, the invitation arrives and
/// its link works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_and_starttls_deliver_with_checked_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_ca(tmp.path());
    for mode in ["implicit", "starttls"] {
        let port = free_port();
        let smtp = Smtp::start_tls(
            port,
            &tmp.path().join(format!("mail-{mode}")),
            mode,
            &cert,
            &key,
        );
        let config = tmp.path().join(format!("rosterd-{mode}.toml"));
        let toml = replace_once(
            &mail_toml(port, ""),
            "tls = \"none\"",
            &format!("tls = \"{mode}\""),
        );
        write_config(&config, &toml);
        let data = tmp.path().join(format!("data-{mode}"));
        let p = crate::common::Rosterd::start_with(
            &config,
            &data,
            &[("SSL_CERT_FILE", ca.to_str().unwrap())],
        );
        let token = p.admin_token();
        let client = reqwest::Client::new();
        let email = format!("tls-{mode}@example.com");
        let r = client
            .post(format!("{}/api/v1/employees", p.base))
            .bearer_auth(token.trim())
            .json(&invite("Tls", &email))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let m = smtp.wait_for_to(&email).await;
        let r = client
            .post(format!("{}/api/v1/account/accept-invite", p.base))
            .json(&json!({"token": token_of(&m), "username": format!("tls{mode}"), "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{mode}");
        let logs = p.stop();
        assert!(logs.contains("outbox message sent"), "{mode}: {logs}");
    }

    // Trusting another CA only, the certificate is refused: nothing is sent,
    // the reason is recorded on the message.
    let port = free_port();
    let smtp = Smtp::start_tls(
        port,
        &tmp.path().join("mail-untrusted"),
        "implicit",
        &cert,
        &key,
    );
    let config = tmp.path().join("rosterd-untrusted.toml");
    let toml = replace_once(&mail_toml(port, ""), "tls = \"none\"", "tls = \"implicit\"");
    write_config(&config, &toml);
    let data = tmp.path().join("data-untrusted");
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (other_ca, _, _) = test_ca(&other);
    let p = crate::common::Rosterd::start_with(
        &config,
        &data,
        &[("SSL_CERT_FILE", other_ca.to_str().unwrap())],
    );
    let token = p.admin_token();
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/api/v1/employees", p.base))
        .bearer_auth(&token)
        .json(&invite("Un", "untrusted@example.com"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", p.logs_text()));
    assert_eq!(r.status(), StatusCode::CREATED);
    let mut last_error = Value::Null;
    for _ in 0..200 {
        let v: Value = p.get_json("/api/v1/outbox", token.trim()).await;
        last_error = v["items"][0]["last_error"].clone();
        if last_error.is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(last_error.to_string().contains("TLS"), "{last_error}");
    assert!(
        smtp.messages().is_empty(),
        "nothing sent over an unchecked connection"
    );
    p.stop();
}
