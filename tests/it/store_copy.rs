//! `rosterd store copy` with the real binaries: a store of 10,000 employees
//! made by a real daemon (a CSV source's run creates them, the admin API
//! edits 100 and deactivates 100; invitations sent to a real
//! SMTP server and others left pending; a console session; the catalog's
//! positions) copied sled → PostgreSQL → sled; on each copy a daemon prints,
//! through `rosterctl`, the same employees, audit log, outbox and run history,
//! the session still signs in, and a new employee gets a fresh id and audit
//! sequence number. Then the refusals: a target that is not empty, bad URLs,
//! a missing or unreadable sled path, a store a daemon holds, and a copy that
//! fails half-way on PostgreSQL, each leaving the target as it was.
//!
//! Run once, on the sled pass: the tests choose their backends themselves, so
//! `TEST_STORE=postgres` would only repeat them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::pg::{server, test_store_is_postgres};
use crate::support::process::free_port;
use crate::support::rosterd::Rosterd;
use crate::support::smtp::Smtp;
use crate::support::{DEMO_MARKER, replace_once, shipped_config, shipped_config_path};

const PEOPLE: usize = 10_000;

/// The HR export: `PEOPLE` rows.
fn hr_csv() -> String {
    let mut s = String::from(
        "Employee ID,First Name,Last Name,Work Email,Mobile Phone,Work Phone,Ext,Job Title,\
         Qualifications,Department,Manager ID,Hire Date,Termination Date,Status\n",
    );
    for i in 0..PEOPLE {
        s.push_str(&format!(
            "E{i},Copy{i},Person,copy{i}@example.com,,,,Dispatcher,,North Region,,2020-01-01,,Active\n"
        ));
    }
    s
}

/// The shipped config with its demo CSV source pointed at `csv` (run only
/// when asked: no run at start, a yearly schedule) and mail to `smtp_port`
/// with a long back-off, so that a message that failed stays pending, as it
/// is, while the copies are compared.
fn write_config(dir: &Path, csv: &Path, smtp_port: u16) -> PathBuf {
    let shipped = std::fs::read_to_string(shipped_config_path()).unwrap();
    let demo = &shipped[shipped.find(DEMO_MARKER).unwrap()..];
    let demo = replace_once(
        demo,
        "path = \"demo-hr.csv\"",
        &format!("path = \"{}\"", csv.display()),
    );
    let demo = replace_once(
        &demo,
        "full_schedule = \"0 */5 * * * *\"",
        "full_schedule = \"0 0 0 1 1 *\"",
    );
    let demo = replace_once(&demo, "run_at_start = true", "run_at_start = false");
    let text = format!(
        "{}\n{demo}\n[mail]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\n\
         from = \"Acme Fleet <no-reply@acme.example>\"\ncompany_name = \"Acme Fleet\"\n\
         base_url = \"https://fleet.acme.example/\"\nbackoff_initial_secs = 3600\n\
         poll_interval_secs = 0.1\ntimeout_secs = 2\n",
        shipped_config()
    );
    let path = dir.join("rosterd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A daemon on `data_dir`: sled in it, or the PostgreSQL database at `pg_url`.
fn start(config: &Path, data_dir: &Path, pg_url: Option<&str>) -> Rosterd {
    let l = Rosterd::launch(config, data_dir).ready_within(Duration::from_secs(120));
    match pg_url {
        Some(url) => l
            .env("ROSTERD_STORE__BACKEND", "postgres")
            .env("ROSTERD_STORE__URL", url),
        None => l.env("ROSTERD_STORE__BACKEND", "sled"),
    }
    .start()
}

fn rosterctl(d: &Rosterd, token_file: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rosterctl"))
        .args(["--url", &d.base, "--token-file"])
        .arg(token_file)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "rosterctl {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// What an operator compares: `rosterctl` output of every part of the store.
#[derive(Debug, PartialEq)]
struct Seen {
    employees: Value,
    audit: Value,
    outbox: Value,
    runs: Value,
    plans: Vec<String>,
}

fn seen(d: &Rosterd, token_file: &Path) -> Seen {
    let json =
        |args: &[&str]| -> Value { serde_json::from_str(&rosterctl(d, token_file, args)).unwrap() };
    let runs = json(&["sync", "runs", "--limit", "100", "--json"]);
    let plans = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let id = r["id"].to_string();
            rosterctl(
                d,
                token_file,
                &["sync", "show", id.trim_matches('"'), "--json"],
            )
        })
        .collect();
    Seen {
        employees: json(&["employees", "list", "--all", "--json"]),
        audit: json(&["audit", "--limit", "1000000", "--json"]),
        outbox: json(&["outbox", "list", "--json"]),
        runs,
        plans,
    }
}

fn store_copy(from: &str, to: &str, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rosterd"));
    c.args(["store", "copy", "--from", from, "--to", to]);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Through the admin API: 100 profiles edited one by one, 100 deactivated
/// in one bulk action.
async fn edit_and_deactivate(d: &Rosterd, token: &str, token_file: &Path) {
    let list: Value = serde_json::from_str(&rosterctl(
        d,
        token_file,
        &["employees", "list", "--json", "--limit", "200"],
    ))
    .unwrap();
    let ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 200);
    let client = reqwest::Client::new();
    for chunk in ids[..100].chunks(10) {
        let patches = chunk.iter().map(|id| {
            client
                .patch(format!("{}/api/v1/employees/{id}", d.base))
                .bearer_auth(token)
                .json(&json!({"family_name": "Edited"}))
                .send()
        });
        for r in futures::future::join_all(patches).await {
            assert_eq!(r.unwrap().status(), StatusCode::OK);
        }
    }
    let r = client
        .post(format!("{}/api/v1/employees/bulk", d.base))
        .bearer_auth(token)
        .json(&json!({"action": "deactivate", "ids": ids[100..]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
}

/// `(outcome, applied)` of a run started with `rosterctl sync run`, waited for.
fn sync_run(d: &Rosterd, token_file: &Path) -> Value {
    let out = rosterctl(d, token_file, &["sync", "run", "demo-hr", "--json"]);
    serde_json::from_str(&out).unwrap()
}

async fn create(d: &Rosterd, token: &str, email: &str, status: &str) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/employees", d.base))
        .bearer_auth(token)
        .json(
            &json!({"given_name": "New", "family_name": "Hire", "email": email,
                      "role": "Technician", "account_status": status}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

/// Signs in to the console with the admin token; the session cookie.
async fn sign_in(d: &Rosterd, token: &str) -> String {
    let r = no_redirects()
        .post(format!("{}/sign-in", d.base))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("token", token)
                .finish(),
        )
        .send()
        .await
        .unwrap();
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .next()
        .unwrap_or_else(|| panic!("no session cookie: {}", r.status()));
    assert!(session_works(d, &cookie).await, "a fresh session signs in");
    cookie
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn session_works(d: &Rosterd, cookie: &str) -> bool {
    let r = no_redirects()
        .get(format!("{}/employees", d.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    r.status() == StatusCode::OK
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn max_seq(audit: &Value) -> u64 {
    audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .max()
        .unwrap()
}

/// A new employee on a copy gets a fresh id, an audit entry after every
/// copied one and a message id after every copied one.
async fn keeps_working(
    d: &Rosterd,
    token: &str,
    token_file: &Path,
    last_seq: u64,
    last_message: u64,
    name: &str,
) {
    let e = create(d, token, &format!("after-{name}@example.com"), "invite").await;
    let audit: Value = serde_json::from_str(&rosterctl(
        d,
        token_file,
        &["audit", "--limit", "1", "--json"],
    ))
    .unwrap();
    assert_eq!(audit[0]["employee_id"], e["id"], "{name}: {audit}");
    assert!(
        max_seq(&audit) > last_seq,
        "{name}: a new audit seq: {audit}"
    );
    let outbox: Value =
        serde_json::from_str(&rosterctl(d, token_file, &["outbox", "list", "--json"])).unwrap();
    let ids: Vec<u64> = outbox
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_u64())
        .collect();
    assert_eq!(
        ids.len(),
        6,
        "{name}: the 5 copied messages and the new one"
    );
    assert!(
        ids.iter().max() > Some(&last_message),
        "{name}: a new message id: {ids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_employees_copied_to_postgres_and_back_read_the_same() {
    if test_store_is_postgres() {
        eprintln!("store_copy chooses its backends itself: run on the sled pass only");
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("hr.csv");
    std::fs::write(&csv, hr_csv()).unwrap();
    let mut smtp = Smtp::start(free_port(), &tmp.path().join("mail"));
    let config = write_config(tmp.path(), &csv, smtp.port);

    // The original, on sled: 10,000 created by one run, 100 edited and
    // 100 deactivated by an admin; invitations sent and pending.
    let a_dir = tmp.path().join("a");
    let a = start(&config, &a_dir, None);
    let token = a.admin_token();
    let token_file = a_dir.join("admin.token");
    let first = sync_run(&a, &token_file);
    assert_eq!(first["outcome"], "applied", "{first}");
    eprintln!(
        "store_copy: first run {:?}: {}",
        started.elapsed(),
        first["timings_ms"]
    );
    edit_and_deactivate(&a, &token, &token_file).await;
    eprintln!("store_copy: edits {:?}", started.elapsed());
    for i in 0..3 {
        create(&a, &token, &format!("sent{i}@example.com"), "invite").await;
    }
    smtp.wait_for("3 invitations", |m| m.len() >= 3).await;
    smtp.stop();
    for i in 0..2 {
        create(&a, &token, &format!("pending{i}@example.com"), "invite").await;
    }
    // The two failed once and wait an hour: the outbox holds still.
    wait_until("two failed deliveries", || {
        let o: Value =
            serde_json::from_str(&rosterctl(&a, &token_file, &["outbox", "list", "--json"]))
                .unwrap();
        o.as_array()
            .unwrap()
            .iter()
            .filter(|m| m["attempts"].as_u64() >= Some(1) && m["state"] != "sent")
            .count()
            == 2
    });
    eprintln!("store_copy: mail {:?}", started.elapsed());
    let cookie = sign_in(&a, &token).await;
    let original = seen(&a, &token_file);
    let employees = original.employees.as_array().unwrap();
    assert_eq!(employees.len(), PEOPLE + 5);
    assert_eq!(
        employees.iter().filter(|e| e["active"] == false).count(),
        100,
        "the deactivated"
    );
    assert!(original.audit.as_array().unwrap().len() >= PEOPLE + 200 + 5);
    let states: Vec<&str> = original
        .outbox
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "sent").count(),
        3,
        "{states:?}"
    );
    assert_eq!(
        states.iter().filter(|s| **s != "sent").count(),
        2,
        "{states:?}"
    );
    assert_eq!(original.runs.as_array().unwrap().len(), 1);
    a.stop();
    eprintln!("store_copy: original made in {:?}", started.elapsed());

    // sled → PostgreSQL, the URL (with a password, which trust auth
    // ignores) in an environment variable: never printed.
    let pg = server();
    let db = pg.fresh_database();
    let url = pg.url(&db).replace("postgres@", "postgres:hunter2@");
    let out = store_copy(
        &format!("sled:{}", a_dir.join("store").display()),
        "postgres:env:COPY_TARGET",
        &[("COPY_TARGET", &url)],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("hunter2"), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        summary.contains(&format!("employees        {}", PEOPLE + 5)),
        "{summary}"
    );
    assert!(summary.contains("audit entries"), "{summary}");
    eprintln!("store_copy: sled -> postgres:\n{summary}");

    let b_dir = tmp.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    std::fs::copy(&token_file, b_dir.join("admin.token")).unwrap();
    let b = start(&config, &b_dir, Some(&url));
    let on_pg = seen(&b, &token_file);
    assert_eq!(on_pg, original, "the PostgreSQL copy reads as the original");
    assert!(
        session_works(&b, &cookie).await,
        "the session copied to PostgreSQL"
    );
    b.stop();

    // PostgreSQL → sled, the URL in a file.
    let url_file = tmp.path().join("pg.url");
    std::fs::write(&url_file, format!("{url}\n")).unwrap();
    let c_dir = tmp.path().join("c");
    let out = store_copy(
        &format!("postgres:file:{}", url_file.display()),
        &format!("sled:{}", c_dir.join("store").display()),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("hunter2"), "{}", text(&out));
    std::fs::copy(&token_file, c_dir.join("admin.token")).unwrap();
    let c = start(&config, &c_dir, None);
    let back = seen(&c, &token_file);
    assert_eq!(
        back, original,
        "the copy back on sled reads as the original"
    );
    assert!(
        session_works(&c, &cookie).await,
        "the session copied back to sled"
    );

    // The copies keep working: fresh ids and sequence numbers after the copied.
    let last_seq = max_seq(&original.audit);
    let last_message = original
        .outbox
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_u64())
        .max()
        .unwrap();
    keeps_working(&c, &token, &token_file, last_seq, last_message, "sled").await;
    c.stop();
    let b = start(&config, &b_dir, Some(&url));
    keeps_working(&b, &token, &token_file, last_seq, last_message, "postgres").await;
    b.stop();
    eprintln!("store_copy: done in {:?}", started.elapsed());
}

/// `psql` in `db`, one value.
fn psql1(db: &str, sql: &str) -> String {
    server().psql(db, sql).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_refuses_what_it_cannot_do_and_leaves_the_target_as_it_was() {
    if test_store_is_postgres() {
        eprintln!("store_copy chooses its backends itself: run on the sled pass only");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = crate::support::write_config(&tmp.path().join("rosterd.toml"), "");
    let a_dir = tmp.path().join("a");
    let a = start(&config, &a_dir, None);
    let token = a.admin_token();
    for i in 0..3 {
        create(&a, &token, &format!("small{i}@example.com"), "later").await;
    }
    let from = format!("sled:{}", a_dir.join("store").display());
    let pg = server();
    let db = pg.fresh_database();
    let url = pg.url(&db).replace("postgres@", "postgres:hunter2@");
    let tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'";

    // A daemon holds the sled store: sled's lock, and what to do.
    let out = store_copy(&from, "postgres:env:T", &[("T", &url)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("stop it"), "{}", text(&out));
    assert_eq!(psql1(&db, tables), "0", "nothing written");
    a.stop();

    // A password on the command line; a URL that is not PostgreSQL's; a
    // server that does not answer: refused, the password never shown.
    let unreachable = format!("postgres://u:hunter2@127.0.0.1:{}/x", free_port());
    for (to, env, code, says) in [
        (format!("postgres:{url}"), vec![], 2, "password"),
        (
            "postgres:env:T".to_string(),
            vec![("T", "mysql://u:hunter2@h/db")],
            2,
            "not a PostgreSQL URL",
        ),
        (
            "postgres:env:NOPE".to_string(),
            vec![],
            2,
            "NOPE is not set",
        ),
        (
            "postgres:env:T".to_string(),
            vec![("T", unreachable.as_str())],
            1,
            "cannot write",
        ),
    ] {
        let out = store_copy(&from, &to, &env);
        assert_eq!(out.status.code(), Some(code), "{to}: {}", text(&out));
        assert!(text(&out).contains(says), "{to}: {}", text(&out));
        assert!(!text(&out).contains("hunter2"), "{to}: {}", text(&out));
    }
    // No sled store at the source path (missing, a file): nothing written.
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    for (path, says) in [
        (tmp.path().join("missing"), "No such file"),
        (file, "not a directory"),
    ] {
        let out = store_copy(
            &format!("sled:{}", path.display()),
            "postgres:env:T",
            &[("T", &url)],
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("no sled store there"), "{}", text(&out));
        assert!(text(&out).contains(says), "{}", text(&out));
    }
    assert_eq!(psql1(&db, tables), "0", "nothing written");

    // Copied once; a second copy into it is refused and changes nothing.
    let out = store_copy(&from, "postgres:env:T", &[("T", &url)]);
    assert!(out.status.success(), "{}", text(&out));
    // pg_dump's `\restrict` lines carry a fresh random key each time.
    let dump = || -> Vec<String> {
        String::from_utf8_lossy(&pg.dump(&db))
            .lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .map(str::to_string)
            .collect()
    };
    let before = dump();
    let out = store_copy(&from, "postgres:env:T", &[("T", &url)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("is not empty (employees: 3"),
        "{}",
        text(&out)
    );
    assert!(before.iter().any(|l| l.contains("small0@example.com")));
    assert_eq!(dump(), before, "the target is unchanged");
    // Nor into a sled store that holds data.
    let out = store_copy("postgres:env:T", &from, &[("T", &url)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is not empty"), "{}", text(&out));

    // A copy that fails half-way (PostgreSQL refuses the audit rows, after
    // the employees went in): one transaction, the target stays empty.
    let failing = pg.fresh_database();
    // Its schema, made by opening it (as the source of an empty copy).
    let out = store_copy(
        &format!("postgres:{}", pg.url(&failing)),
        &format!("sled:{}", tmp.path().join("empty").display()),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("employees        0"));
    pg.psql(
        &failing,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT ON audit FOR EACH STATEMENT EXECUTE FUNCTION refuse();",
    );
    let out = store_copy(&from, &format!("postgres:{}", pg.url(&failing)), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("injected failure"), "{}", text(&out));
    assert_eq!(psql1(&failing, "SELECT count(*) FROM employees"), "0");
    assert_eq!(psql1(&failing, "SELECT count(*) FROM employee_keys"), "0");
}
