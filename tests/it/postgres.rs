//! The PostgreSQL backend against a real PostgreSQL (the shared server of
//! [`crate::support::pg`]; these tests run whatever `TEST_STORE` says):
//! the store's semantics step by step on both backends with the same
//! outcomes, the daemon's 409 / 412 on PostgreSQL, a restart that finds the
//! data, `rosterd migrate` (also two at once), and no password of the URL in
//! any log line or error.

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use rosterd::store::config::{PgSettings, StoreConfig};
use rosterd::store::postgres::PgStore;
use rosterd::store::{
    Actor, AuditAction, AuditEntry, DeliveryState, IndexKind, MessageKind, OutboxRecord,
    PhotoChange, Store, StoreError, Write,
};

use crate::common::{TestServer, employee, test_config};
use crate::support::pg::server;
use crate::support::shipped_config;

pub(crate) fn fresh_pg() -> (String, PgSettings) {
    let pg = server();
    let db = pg.fresh_database();
    let mut s = PgSettings::new(pg.url(&db));
    s.pool_size = 4;
    (db, s)
}

pub(crate) fn write(id: Uuid, expected: Option<u64>, version: u64, email: &str) -> Write {
    crate::support::writes::write(
        id,
        expected,
        version,
        format!("{{\"email\":\"{email}\"}}"),
        vec![
            (IndexKind::Email, email.into()),
            (IndexKind::Source("ldap".into()), format!("dn={email}")),
        ],
        !email.starts_with("off"),
    )
}

pub(crate) fn message(id: u64, emp: Uuid) -> OutboxRecord {
    let now = chrono::Utc::now();
    OutboxRecord {
        id,
        kind: MessageKind::Invite,
        employee_id: emp,
        to: "a@x".into(),
        name: "A".into(),
        expires_at: now,
        state: DeliveryState::Pending,
        attempts: 0,
        created_at: now,
        next_attempt_at: now,
        last_error: None,
        sent_at: None,
    }
}

/// The outcome of an error, comparable across backends.
fn err_kind(e: &StoreError) -> String {
    match e {
        StoreError::Unique { index, key } => format!("unique {index} {key}"),
        StoreError::VersionConflict { expected, found } => {
            format!("version expected {expected:?} found {found:?}")
        }
        other => format!("other: {other}"),
    }
}

/// One scenario through the [`Store`] interface; returns a transcript of
/// every outcome (ids replaced by their letters), asserting as it goes.
fn exercise(s: &Store) -> Vec<String> {
    let mut t = Vec::new();
    // Ids in increasing order (UUID v7 order is id order on both backends).
    let mut ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    ids.sort();
    let (a, b, c, d, e) = (ids[0], ids[1], ids[2], ids[3], ids[4]);
    let name = |id: Uuid| {
        ["a", "b", "c", "d", "e"]
            .get(ids.iter().position(|x| *x == id).unwrap_or(9))
            .copied()
            .unwrap_or("?")
            .to_string()
    };
    s.commit(&write(a, None, 1, "a@x")).unwrap();
    // The same email for another record: refused, nothing of it written.
    let r = s.commit(&write(b, None, 1, "a@x")).unwrap_err();
    assert!(
        matches!(
            r,
            StoreError::Unique {
                index: IndexKind::Email,
                ..
            }
        ),
        "{r}"
    );
    t.push(err_kind(&r));
    assert!(s.get(b).unwrap().is_none());
    // Creating an id that exists; a stale version.
    t.push(err_kind(&s.commit(&write(a, None, 1, "z@x")).unwrap_err()));
    s.commit(&write(a, Some(1), 2, "a2@x")).unwrap();
    t.push(err_kind(
        &s.commit(&write(a, Some(1), 3, "q@x")).unwrap_err(),
    ));
    assert_eq!(s.lookup(&IndexKind::Email, "a@x").unwrap(), None);
    assert_eq!(s.lookup(&IndexKind::Email, "a2@x").unwrap(), Some(a));
    assert_eq!(
        s.lookup(&IndexKind::Source("ldap".into()), "dn=a2@x")
            .unwrap(),
        Some(a)
    );
    // A batch that fails a check writes nothing, its good writes included.
    let mut w = write(c, None, 1, "c@x");
    w.outbox.push(message(7, c));
    let r = s.commit_many(&[w, write(d, None, 1, "a2@x")]).unwrap_err();
    t.push(err_kind(&r));
    assert!(s.get(c).unwrap().is_none());
    assert!(s.outbox_all().unwrap().is_empty());
    assert_eq!(s.lookup(&IndexKind::Email, "c@x").unwrap(), None);
    // In one batch a key freed by one write is taken by the next.
    let mut w = write(c, None, 1, "c@x");
    w.outbox.push(message(7, c));
    w.photo = PhotoChange::Set(b"PNG".to_vec());
    let seqs = s
        .commit_many(&[w, write(a, Some(2), 3, "a3@x"), write(d, None, 1, "a2@x")])
        .unwrap();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(s.lookup(&IndexKind::Email, "a2@x").unwrap(), Some(d));
    assert_eq!(&*s.photo(c).unwrap().unwrap(), b"PNG");
    s.commit(&write(e, None, 1, "off@x")).unwrap();
    let counts = s.counts();
    t.push(format!(
        "counts {} {} {}",
        counts.total, counts.active, counts.inactive
    ));
    // Pages and scans in id order, bodies as written.
    let page: Vec<String> = s
        .page(1, 2)
        .unwrap()
        .into_iter()
        .map(|(id, _)| name(id))
        .collect();
    t.push(format!("page {page:?}"));
    let after: Vec<String> = s.scan_after(Some(b)).map(|r| name(r.unwrap().0)).collect();
    t.push(format!("after b {after:?}"));
    assert_eq!(&*s.get(a).unwrap().unwrap(), b"{\"email\":\"a3@x\"}");
    assert_eq!(s.version(a).unwrap(), Some(3));
    let keys: Vec<String> = s
        .index_entries(&IndexKind::Email)
        .unwrap()
        .into_iter()
        .map(|(k, id)| format!("{k}={}", name(id)))
        .collect();
    t.push(format!("emails {keys:?}"));
    // Marks hold for one version.
    t.push(format!(
        "marks set {}",
        s.set_marks("ldap", &[(a, 3, vec![1]), (c, 0, vec![2])])
            .unwrap()
    ));
    assert_eq!(s.mark(a, "ldap").unwrap(), Some(vec![1]));
    assert_eq!(s.mark(c, "ldap").unwrap(), None);
    let mut w = write(a, Some(3), 4, "a3@x");
    w.record.as_mut().unwrap().mark = Some(("hr".into(), vec![9]));
    s.commit(&w).unwrap();
    assert_eq!(s.mark(a, "ldap").unwrap(), None);
    assert_eq!(s.mark(a, "hr").unwrap(), Some(vec![9]));
    // Audit: newest first, by employee, paged.
    let all = s.audit_entries(None, None, 100).unwrap();
    assert!(all.windows(2).all(|w| w[0].seq > w[1].seq));
    t.push(format!("audit {}", all.len()));
    let of_a = s.audit_entries(Some(a), None, 100).unwrap();
    t.push(format!("audit of a {}", of_a.len()));
    let older = s.audit_entries(None, Some(all[1].seq), 2).unwrap();
    assert_eq!(older.len(), 2);
    assert_eq!(older[0].seq, all[2].seq);
    let other = s
        .append_audit(&AuditEntry::new(
            Actor::system(),
            None,
            AuditAction::PositionCreate,
            vec![],
        ))
        .unwrap();
    assert!(other.seq > all[0].seq);
    let g = s.generation().unwrap();
    // Removing a record frees its keys and keeps its history.
    let mut rm = write(d, Some(1), 0, "");
    rm.record = None;
    s.commit(&rm).unwrap();
    assert!(s.generation().unwrap() > g, "a write moves the generation");
    assert_eq!(s.lookup(&IndexKind::Email, "a2@x").unwrap(), None);
    t.push(format!(
        "removed history {}",
        s.audit_entries(Some(d), None, 10).unwrap().len()
    ));
    // Outbox: due, compare-and-swap, pages.
    let due = s.outbox_due(chrono::Utc::now()).unwrap();
    t.push(format!("due {}", due.len()));
    let mut sent = due[0].clone();
    sent.state = DeliveryState::Sent;
    assert!(s.outbox_replace(&due[0], &sent).unwrap());
    assert!(
        !s.outbox_replace(&due[0], &sent).unwrap(),
        "stale CAS refused"
    );
    assert!(s.outbox_due(chrono::Utc::now()).unwrap().is_empty());
    for i in 8..12 {
        s.outbox_put(&message(i, e)).unwrap();
    }
    let (p, more) = s.outbox_page(Some(7), 2, &|m| m.id != 9).unwrap();
    t.push(format!(
        "outbox page {:?} {more}",
        p.iter().map(|m| m.id).collect::<Vec<_>>()
    ));
    // Ids increase.
    let (i1, i2) = (s.next_id().unwrap(), s.next_id().unwrap());
    assert!(i2 > i1);
    // Positions, run rows, sessions.
    let pos = Uuid::now_v7();
    s.put_position(pos, b"{\"name\":\"P\"}").unwrap();
    assert_eq!(s.positions().unwrap().len(), 1);
    s.remove_position(pos).unwrap();
    assert!(s.positions().unwrap().is_empty());
    for run in [3u64, 5, 4] {
        s.run_put(run, format!("h{run}").as_bytes(), Some(b"plan"))
            .unwrap();
    }
    s.run_put_plan_page(5, 0, b"p0").unwrap();
    s.run_put_plan_page(5, 1, b"p1").unwrap();
    assert_eq!(&*s.run_plan_page(5, 1).unwrap().unwrap(), b"p1");
    assert_eq!(&*s.run_plan(5).unwrap().unwrap(), b"plan");
    s.held_put(5, b"held").unwrap();
    assert_eq!(s.held_ids().unwrap(), vec![5]);
    let runs: Vec<u64> = s.run_headers().map(|r| r.unwrap().0).collect();
    t.push(format!("runs {runs:?}"));
    s.run_remove(5).unwrap();
    assert!(s.run_plan_page(5, 0).unwrap().is_none());
    assert!(s.held_take(5).unwrap().is_none());
    s.put_source_state("ldap", b"state").unwrap();
    assert_eq!(&*s.source_state("ldap").unwrap().unwrap(), b"state");
    let key = [7u8; 32];
    s.session_put(&key, b"row").unwrap();
    assert_eq!(&*s.session_get(&key).unwrap().unwrap(), b"row");
    assert_eq!(s.sessions_all().unwrap().len(), 1);
    s.session_remove(&key).unwrap();
    assert!(s.session_get(&key).unwrap().is_none());
    s.probe_write().unwrap();
    assert!(s.is_ready());
    t
}

/// The same scenario on sled and on PostgreSQL: every step asserts, and the
/// two transcripts of outcomes (errors, counts, orders) are equal.
#[test]
fn the_store_means_the_same_on_sled_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let sled = Store::open(dir.path()).unwrap();
    let on_sled = exercise(&sled);
    let (_, pg) = fresh_pg();
    let pg = Store::new(PgStore::open(&pg).unwrap());
    let on_pg = exercise(&pg);
    assert_eq!(on_sled, on_pg);
    assert!(on_pg.iter().any(|l| l == "unique email a@x"), "{on_pg:?}");
    assert!(
        on_pg
            .iter()
            .any(|l| l == "version expected Some(1) found Some(2)"),
        "{on_pg:?}"
    );
}

/// Data and counts come back after the store is opened again; the unique
/// keys hold for a second handle on the same database at once (another node).
#[test]
fn a_second_handle_sees_the_data_and_the_constraints() {
    let (_, settings) = fresh_pg();
    let a = Uuid::now_v7();
    {
        let s = Store::new(PgStore::open(&settings).unwrap());
        s.commit(&write(a, None, 1, "a@x")).unwrap();
        s.commit(&write(Uuid::now_v7(), None, 1, "off@x")).unwrap();
    }
    let one = Store::new(PgStore::open(&settings).unwrap());
    let two = Store::new(PgStore::open(&settings).unwrap());
    assert_eq!((one.counts().total, one.counts().active), (2, 1));
    let b = Uuid::now_v7();
    two.commit(&write(b, None, 1, "b@x")).unwrap();
    // `one` never saw b's write, the database refuses the key all the same.
    let e = one
        .commit(&write(Uuid::now_v7(), None, 1, "b@x"))
        .unwrap_err();
    assert_eq!(err_kind(&e), "unique email b@x");
    two.commit(&write(a, Some(1), 2, "a2@x")).unwrap();
    let e = one.commit(&write(a, Some(1), 2, "a3@x")).unwrap_err();
    assert_eq!(err_kind(&e), "version expected Some(1) found Some(2)");
    assert_eq!(one.lookup(&IndexKind::Email, "b@x").unwrap(), Some(b));
}

/// Concurrent writers of one key: exactly one wins, the others get the
/// sled backend's `Unique` error; nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_email_one_wins() {
    let (_, settings) = fresh_pg();
    let s = Store::new(PgStore::open(&settings).unwrap());
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = s.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            s.commit(&write(Uuid::now_v7(), None, 1, "same@x"))
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(err_kind(&e), "unique email same@x"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(s.counts().total, 1);
    assert_eq!(s.audit_entries(None, None, 100).unwrap().len(), 1);
}

fn pg_toml(url: &str) -> String {
    format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\npool_size = 4\n")
}

/// The test config with its store on the database of `settings`.
fn daemon_config(data_dir: &Path, settings: PgSettings) -> rosterd::config::Config {
    let mut config = test_config(data_dir, "");
    config.store = StoreConfig::Postgres(settings);
    config
}

/// The daemon started on `config`, its base URL and its admin token.
async fn start_daemon(
    config: &rosterd::config::Config,
) -> (rosterd::daemon::Daemon, String, String) {
    let s = rosterd::daemon::start(config.clone()).await.unwrap();
    let base = format!("http://{}", s.addr);
    let token = std::fs::read_to_string(s.admin_token_file.clone().unwrap())
        .unwrap()
        .trim()
        .to_string();
    (s, base, token)
}

/// The daemon on PostgreSQL over HTTP: a duplicate (case-folded) email and
/// a stale If-Match are refused as on sled, and a restart finds every profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_on_postgres_refuses_conflicts_and_keeps_data() {
    let (_, settings) = fresh_pg();
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_config(dir.path(), settings);
    let (s, base, token) = start_daemon(&config).await;
    let http = reqwest::Client::new();
    let post = |body: Value| {
        http.post(format!("{base}/api/v1/employees"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let r = post(employee("Ada", "L", "ada@example.com")).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let ada: Value = r.json().await.unwrap();
    let r = post(employee("Ada", "Two", "ADA@example.com"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT, "folded email is unique");
    let id = ada["id"].as_str().unwrap();
    let patch = |etag: &str| {
        http.patch(format!("{base}/api/v1/employees/{id}"))
            .bearer_auth(&token)
            .header("If-Match", etag)
            .json(&json!({"given_name": "Ada B"}))
            .send()
    };
    let v = ada["version"].as_u64().unwrap();
    let r = patch(&format!("W/\"{v}\"")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    // The admin API answers a stale If-Match with 409, as on sled (SCIM's is
    // 412: the conformance suite on PostgreSQL checks it).
    let r = patch(&format!("W/\"{v}\"")).await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    s.stop().await.unwrap();
    // No store files: the data is in the database.
    assert!(!dir.path().join("store").join("db").exists());
    let (s, base, _) = start_daemon(&config).await;
    let r = http
        .get(format!("{base}/api/v1/employees/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let back: Value = r.json().await.unwrap();
    assert_eq!(back["given_name"], "Ada B");
    let r = http
        .get(format!("{base}/api/v1/employees"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["total"], 1, "{list}");
    s.stop().await.unwrap();
}

/// The database closes rosterd's connections while they are idle (a
/// restart, a failover, a proxy's idle timeout): the next requests are
/// answered on new connections, reads and writes alike, not with errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_while_idle_are_replaced_not_errors() {
    let (db, settings) = fresh_pg();
    let dir = tempfile::tempdir().unwrap();
    let (s, base, token) = start_daemon(&daemon_config(dir.path(), settings)).await;
    let http = reqwest::Client::new();
    let create = |n: usize| {
        http.post(format!("{base}/api/v1/employees"))
            .bearer_auth(&token)
            .json(&employee("Ada", "L", &format!("ada{n}@example.com")))
            .send()
    };
    let list = || {
        http.get(format!("{base}/api/v1/employees"))
            .bearer_auth(&token)
            .send()
    };
    // Several connections in the pool: requests at once.
    let made = futures::future::join_all((0..4).map(create)).await;
    assert!(
        made.iter()
            .all(|r| r.as_ref().unwrap().status() == StatusCode::CREATED)
    );
    let cut = |db: &str| {
        server().psql(
            db,
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = '{db}' AND application_name = 'rosterd'"
            ),
        )
    };
    for round in 0..2 {
        let n: u64 = cut(&db).trim().parse().unwrap();
        assert!(n >= 1, "rosterd had connections to cut: {n}");
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let r = list().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["total"], 4 + round, "{v}");
        let r = create(10 + round as usize).await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
    }
    s.stop().await.unwrap();
}

fn write_config(dir: &Path, store: &str) -> std::path::PathBuf {
    let path = dir.join("rosterd.toml");
    std::fs::write(&path, format!("{}\n{store}", shipped_config())).unwrap();
    path
}

fn migrate(config: &Path, data: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rosterd"))
        .arg("--config")
        .arg(config)
        .arg("migrate")
        .env("ROSTERD_DATA_DIR", data)
        .env_remove("ROSTERD_LOG")
        .output()
        .unwrap()
}

/// `rosterd migrate` creates the schema, then finds it current; two nodes
/// migrating one fresh database at once both succeed (the advisory lock).
#[test]
fn rosterd_migrate_creates_then_finds_the_schema_current() {
    let (db, settings) = fresh_pg();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &pg_toml(settings.url.expose()));
    let out = migrate(&config, dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = rosterd::store::postgres::PG_SCHEMA_VERSION;
    assert!(
        stdout.contains(&format!("schema version {version} created")),
        "{stdout}"
    );
    let out = migrate(&config, dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("schema version {version} is current")),
        "{stdout}"
    );
    let tables = server().psql(
        &db,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
    );
    assert!(tables.trim().parse::<u32>().unwrap() >= 14, "{tables}");
    // A version 1 database (phase 1's: no generation stamps) is upgraded.
    server().psql(
        &db,
        "UPDATE rosterd_schema SET version = 1; ALTER TABLE employees DROP COLUMN generation; \
         ALTER TABLE outbox DROP COLUMN changed; DROP TABLE employee_removed; \
         DELETE FROM rosterd_meta WHERE key = 'positions'",
    );
    let out = migrate(&config, dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("schema version {version} upgraded")),
        "{stdout}"
    );
    let stamps = server().psql(
        &db,
        "SELECT count(*) FROM information_schema.columns \
         WHERE (table_name, column_name) IN (('employees', 'generation'), ('outbox', 'changed'))",
    );
    assert_eq!(stamps.trim(), "2");
    assert_eq!(
        server()
            .psql(&db, "SELECT version FROM rosterd_schema")
            .trim(),
        version.to_string()
    );
    // Two at once on a fresh database.
    let (db2, settings2) = fresh_pg();
    let config2 = write_config(dir.path(), &pg_toml(settings2.url.expose()));
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_rosterd"))
            .arg("--config")
            .arg(&config2)
            .arg("migrate")
            .env("ROSTERD_DATA_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (p1, p2) = (spawn(), spawn());
    let (o1, o2) = (
        p1.wait_with_output().unwrap(),
        p2.wait_with_output().unwrap(),
    );
    assert!(
        o1.status.success(),
        "{}",
        String::from_utf8_lossy(&o1.stderr)
    );
    assert!(
        o2.status.success(),
        "{}",
        String::from_utf8_lossy(&o2.stderr)
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o1.stdout),
        String::from_utf8_lossy(&o2.stdout)
    );
    assert_eq!(said.matches("created").count(), 1, "{said}");
    assert_eq!(said.matches("is current").count(), 1, "{said}");
    let v = server().psql(&db2, "SELECT version FROM rosterd_schema");
    assert_eq!(v.trim(), version.to_string());
    // A database written by a newer rosterd is refused.
    server().psql(&db2, "UPDATE rosterd_schema SET version = 99");
    let out = migrate(&config2, dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("schema version 99"), "{err}");
}

/// A URL carrying a password: rosterd logs the database without it, and an
/// error about the database (here one that does not exist) names it without
/// it too.
#[test]
fn the_url_password_is_never_logged_nor_in_errors() {
    let pg = server();
    let db = pg.fresh_database();
    let secret = "hunter2-do-not-log";
    let url = format!("postgres://postgres:{secret}@127.0.0.1:{}/{db}", pg.port);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // The URL as an override (it replaces the one the suite's harness sets
    // under TEST_STORE=postgres).
    let config = write_config(dir.path(), "[store]\nbackend = \"postgres\"\n");
    let mut p = crate::common::Rosterd::start_with(&config, &data, &[("ROSTERD_STORE__URL", &url)]);
    let logs = p.kill_9();
    assert!(logs.contains("PostgreSQL store open"), "{logs}");
    assert!(logs.contains("postgres:***@"), "{logs}");
    assert!(!logs.contains(secret), "{logs}");
    // A database that does not exist: start fails, naming it without the password.
    let config = write_config(
        dir.path(),
        "[store]\nbackend = \"postgres\"\nurl_env = \"PG_URL\"\n",
    );
    let bad = format!(
        "postgres://postgres:{secret}@127.0.0.1:{}/no_such_db",
        pg.port
    );
    let out = Command::new(env!("CARGO_BIN_EXE_rosterd"))
        .arg("--config")
        .arg(&config)
        .env("ROSTERD_DATA_DIR", &data)
        .env("ROSTERD_LISTEN", "127.0.0.1:0")
        .env("PG_URL", &bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("no_such_db"), "{all}");
    assert!(!all.contains(secret), "{all}");
}

/// The test harness's TestServer runs on PostgreSQL under TEST_STORE=postgres:
/// its daemon's data is in its database, not in sled files.
#[tokio::test]
async fn the_suite_harness_uses_the_chosen_backend() {
    let s = TestServer::start().await;
    s.create(employee("Grace", "H", "grace@example.com")).await;
    let sled_files = s.data_dir().join("store").join("db").exists();
    assert_eq!(sled_files, !crate::support::pg::test_store_is_postgres());
    s.stop().await;
}
