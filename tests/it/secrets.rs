//! Secrets at rest and links that outlive their address, through the real
//! daemon and a real SMTP server: no mailed invite or reset token is anywhere
//! in the data directory's files (sled's log keeps old versions of values), the
//! data directory is private whatever the umask, and an email change kills the
//! old links and sends a fresh invitation to the new address.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Rosterd, TestServer, employee};
use crate::mail::{PASSWORD, invite, mail_toml, public_post};
use crate::smtp::{Smtp, free_port, rcpt, token_of};

/// Every file under `dir` (recursively), with its mode.
fn files_under(dir: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() {
                out.push((e.path(), mode, true));
                stack.push(e.path());
            } else {
                out.push((e.path(), mode, false));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Many invitations and resets (some superseded by a second invitation) go
/// out through a real SMTP server; after the daemon stops, no mailed token is
/// in any byte of any file under the data directory, and every directory there
/// is 0700 and every file 0600 although the daemon started with umask 000 in a
/// data directory created 0755. A mailed link still works (the store has its
/// digest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_mailed_token_is_in_the_store_files_and_the_data_dir_is_private() {
    let tmp = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(free_port(), &tmp.path().join("mail"));
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config =
        crate::common::write_config(&tmp.path().join("rosterd.toml"), &mail_toml(smtp.port, ""));
    // SAFETY: umask(2) swaps the process's creation mask; restored right after
    // the spawn (the child keeps 000 until rosterd sets its own).
    let old = unsafe { libc::umask(0o000) };
    let p = Rosterd::start(&config, &data);
    unsafe { libc::umask(old) };
    let token = p.admin_token();
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let req = client
            .post(format!("{}{path}", p.base))
            .bearer_auth(&token)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            let st = r.status();
            (st, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    const INVITES: usize = 120;
    let mut ids = Vec::new();
    for i in 0..INVITES {
        let (st, v) = post(
            "/api/v1/employees",
            invite(&format!("P{i}"), &format!("p{i}@example.com")),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    // Ten accounts with passwords get a reset each.
    let mut reset_ids = Vec::new();
    for i in 0..10 {
        let mut c = employee("Res", &format!("Et{i}"), &format!("r{i}@example.com"));
        c["account_status"] = json!("credentials");
        c["password"] = json!(PASSWORD);
        let (st, v) = post("/api/v1/employees", c).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        reset_ids.push(v["id"].as_str().unwrap().to_string());
    }
    let (st, v) = post(
        "/api/v1/employees/bulk",
        json!({"action": "send_password_reset", "ids": reset_ids}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The first twenty invitations are sent again (a new link supersedes).
    let (st, v) = post(
        "/api/v1/employees/bulk",
        json!({"action": "send_invite", "ids": ids[..20]}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    smtp.wait_for("every invitation and reset", |m| {
        let invites = m.iter().filter(|v| rcpt(v).starts_with('p')).count();
        let resets = m.iter().filter(|v| rcpt(v).starts_with('r')).count();
        resets == 10 && invites >= INVITES
    })
    .await;
    // Superseded messages may be skipped before they were sent: wait until the
    // outbox has nothing pending, then until every message it sent arrived.
    let mut sent = None;
    for _ in 0..600 {
        let v: Value = p.get_json("/api/v1/outbox?limit=1000", &token).await;
        assert!(v["next_cursor"].is_null(), "one page holds the outbox: {v}");
        let items = v["items"].as_array().unwrap();
        if items.iter().all(|m| m["state"] != "pending") {
            sent = Some(items.iter().filter(|m| m["state"] == "sent").count());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = sent.expect("the outbox drains");
    let got = smtp
        .wait_for("every message the outbox sent", |m| m.len() >= sent)
        .await;
    let tokens: Vec<String> = got.iter().map(token_of).collect();
    assert!(tokens.len() >= INVITES + 10, "{}", tokens.len());
    assert!(tokens.iter().all(|t| t.len() == 64));

    // The newest link of an account works: the store holds its digest.
    let newest = got
        .iter()
        .rev()
        .find(|m| rcpt(m) == "p3@example.com")
        .unwrap();
    let r = client
        .post(format!("{}/api/v1/account/accept-invite", p.base))
        .json(&json!({"token": token_of(newest), "username": "pthree", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let logs = p.stop();
    assert!(logs.contains("outbox message sent"), "{logs}");

    // Every byte of every file under the data directory.
    let files = files_under(&data);
    let mut bytes_read = 0usize;
    let mut saw_an_address = false;
    for (path, mode, is_dir) in &files {
        if *is_dir {
            assert_eq!(*mode, 0o700, "{} is {mode:o}", path.display());
            continue;
        }
        assert_eq!(*mode, 0o600, "{} is {mode:o}", path.display());
        let b = std::fs::read(path).unwrap();
        bytes_read += b.len();
        saw_an_address |= contains(&b, b"p7@example.com");
        for t in &tokens {
            assert!(
                !contains(&b, t.as_bytes()) && !contains(&b, t.to_uppercase().as_bytes()),
                "a mailed token is in {}",
                path.display()
            );
        }
    }
    let names: Vec<String> = files
        .iter()
        .map(|(p, _, _)| p.strip_prefix(&data).unwrap().display().to_string())
        .collect();
    if crate::support::pg::test_store_is_postgres() {
        // The store is the database: a dump of it holds no mailed token either
        // (bytes are dumped as hex: both forms are searched).
        let pg = crate::support::pg::server();
        let dump = pg.dump(&pg.database_for(&data));
        bytes_read += dump.len();
        let hexed = |b: &[u8]| hex::encode(b).into_bytes();
        saw_an_address |= contains(&dump, &hexed(b"p7@example.com"));
        for t in &tokens {
            for form in [t.clone(), t.to_uppercase()] {
                assert!(
                    !contains(&dump, form.as_bytes()) && !contains(&dump, &hexed(form.as_bytes())),
                    "a mailed token is in the database"
                );
            }
        }
    } else {
        assert!(
            names.iter().any(|n| n == "store/db") && names.iter().any(|n| n == "store/conf"),
            "sled's files were checked: {names:?}"
        );
    }
    assert!(
        saw_an_address && bytes_read > 0,
        "the search reads the data (an address is there in plain text)"
    );
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the data directory");
}

async fn scim(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let scim_token =
        std::fs::read_to_string(s.token_file.parent().unwrap().join("scim.token")).unwrap();
    let r = s
        .client
        .request(method, s.url(&format!("/scim/v2{path}")))
        .bearer_auth(scim_token.trim())
        .header("content-type", "application/scim+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

async fn accept(s: &TestServer, token: &str, username: &str) -> (StatusCode, Value) {
    public_post(
        s,
        "/api/v1/account/accept-invite",
        json!({"token": token, "username": username, "password": PASSWORD}),
    )
    .await
}

/// A mistyped address corrected by the admin API, then by SCIM PATCH: the
/// link mailed to the typo is refused, the corrected address gets a fresh
/// invitation that works; a reset link dies with an email change too; all of it
/// in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_change_kills_the_old_links_and_reinvites_the_new_address() {
    let tmp = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(free_port(), &tmp.path().join("mail"));
    let s = TestServer::start_with(&mail_toml(smtp.port, "")).await;

    // Admin API.
    let created = s.create(invite("John", "jdoe@exmaple.com")).await;
    let id = created["id"].as_str().unwrap().to_string();
    let old = token_of(&smtp.wait_for_to("jdoe@exmaple.com").await);
    let (st, v) = s
        .patch(
            &format!("/api/v1/employees/{id}"),
            json!({"email": "jdoe@example.com"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["account_status"], "invite", "{v}");
    let (st, v) = accept(&s, &old, "jdoe").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "the typo's link is dead: {v}");
    assert_eq!(v["error"], "invalid_token");
    let fresh = smtp.wait_for_to("jdoe@example.com").await;
    let new = token_of(&fresh);
    assert_ne!(new, old);
    let (st, v) = accept(&s, &new, "jdoe").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["account_status"], "credentials");
    let (_, audit) = s.get(&format!("/api/v1/audit?employee={id}")).await;
    let change = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e.to_string().contains("jdoe@exmaple.com") && e.to_string().contains("account_token")
        })
        .unwrap_or_else(|| panic!("the email change and its new link are audited: {audit}"));
    assert!(!change.to_string().contains(&new) && !change.to_string().contains(&old));

    // SCIM PATCH.
    let (st, u) = scim(
        &s,
        reqwest::Method::POST,
        "/Users",
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "mroe",
            "name": {"givenName": "Mary", "familyName": "Roe"},
            "emails": [{"value": "mroe@exmaple.com", "type": "work", "primary": true}],
            "active": true
        }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    let uid = u["id"].as_str().unwrap().to_string();
    let old = token_of(&smtp.wait_for_to("mroe@exmaple.com").await);
    let (st, v) = scim(
        &s,
        reqwest::Method::PATCH,
        &format!("/Users/{uid}"),
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "emails",
                "value": [{"value": "mroe@example.com", "type": "work", "primary": true}]}]
        }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = accept(&s, &old, "mroe").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "invalid_token");
    let new = token_of(&smtp.wait_for_to("mroe@example.com").await);
    let (st, v) = accept(&s, &new, "mroe").await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // A reset link dies with an email change (and no reset is sent unasked).
    let mut c = employee("Rita", "Reset", "rita@exmaple.com");
    c["account_status"] = json!("credentials");
    c["password"] = json!(PASSWORD);
    let rita = s.create(c).await;
    let rid = rita["id"].as_str().unwrap().to_string();
    let (st, v) = s
        .post(
            "/api/v1/employees/bulk",
            json!({"action": "send_password_reset", "ids": [&rid]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let reset = token_of(&smtp.wait_for_to("rita@exmaple.com").await);
    let (st, v) = s
        .patch(
            &format!("/api/v1/employees/{rid}"),
            json!({"email": "rita@example.com"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = public_post(
        &s,
        "/api/v1/account/reset-password",
        json!({"token": reset, "password": "another password 42"}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "invalid_token");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !smtp
            .messages()
            .iter()
            .any(|m| rcpt(m) == "rita@example.com"),
        "a reset is not sent to the new address unasked"
    );
    s.stop().await;
}
