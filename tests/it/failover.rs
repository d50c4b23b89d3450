//! Two real `rosterd` processes on one PostgreSQL database (a database of
//! their own on the shared server of [`crate::support::pg`]), a real slapd and
//! a real SMTP server: exactly one runner per duty, through failures.
//!
//! - kill -9 of the node applying a 10,000-change plan: the other takes over
//!   within the lease time (+ one tick), every change is applied once;
//! - SIGSTOP of the runner past its lease, then SIGCONT: its next batch is
//!   fenced and nothing more is written under its epoch;
//! - kill -9 during mail delivery: every message arrives, at most one twice
//!   (with the same `Message-ID`);
//! - both nodes' schedules, ticking every second: one run per tick.
//!
//! They run once, in the sled pass of `scripts/test.sh` (their daemons are on
//! PostgreSQL whatever `TEST_STORE` says).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::slapd::{self, ADMIN_DN, ADMIN_PW, Tree};
use crate::smtp::{Smtp, free_port, rcpt};
use crate::support::pg::{server, test_store_is_postgres};
use crate::support::rosterd::Rosterd;

/// Whether this pass runs these tests: the sled pass only (their daemons are
/// on PostgreSQL anyway; the PostgreSQL pass would run them a second time).
fn in_this_pass() -> bool {
    !test_store_is_postgres()
}

/// Leases (and outbox claims) last this long unless renewed.
const TTL_SECS: u64 = 2;

/// Two nodes' configs and data dirs on one fresh database.
struct Cluster {
    _dir: tempfile::TempDir,
    db: String,
    cfgs: [PathBuf; 2],
    data: [PathBuf; 2],
}

impl Cluster {
    /// `extra[i]` is appended to node i's config (sources, mail).
    fn new(extra: [&str; 2]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let pg = server();
        let db = pg.fresh_database();
        let store = format!(
            "[store]\nbackend = \"postgres\"\nurl = \"{}\"\npool_size = 4\nlease_ttl_secs = {TTL_SECS}\n",
            pg.url(&db)
        );
        let mk = |i: usize| {
            let cfg = crate::common::write_config(
                &dir.path().join(format!("node{i}.toml")),
                &format!("{store}\n{}", extra[i]),
            );
            (cfg, dir.path().join(format!("data{i}")))
        };
        let (c0, d0) = mk(0);
        let (c1, d1) = mk(1);
        Cluster {
            _dir: dir,
            db,
            cfgs: [c0, c1],
            data: [d0, d1],
        }
    }

    fn start(&self, i: usize) -> Rosterd {
        Rosterd::start(&self.cfgs[i], &self.data[i])
    }

    /// One number from SQL.
    fn count(&self, sql: &str) -> u64 {
        let out = server().psql(&self.db, sql);
        out.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{sql}: `{out}`: {e}"))
    }

    /// How many profiles there are and who holds `source`'s lease, in one
    /// query: the poll that catches a run mid-apply must be quick, since a
    /// batch of creates takes well under a tenth of a second.
    fn applying(&self, source: &str) -> (u64, Option<String>) {
        let out = server().psql(
            &self.db,
            &format!(
                "SELECT (SELECT count(*) FROM employees) || ' ' || \
                 coalesce((SELECT holder FROM source_lease WHERE source_id = '{source}'), '')"
            ),
        );
        let (n, holder) = out.trim().split_once(' ').unwrap_or((out.trim(), ""));
        let n = n.parse().unwrap_or_else(|e| panic!("`{out}`: {e}"));
        (n, Some(holder.to_string()).filter(|h| !h.is_empty()))
    }

    /// The source's lease holder (`host:pid`), if any row.
    fn holder(&self, source: &str) -> Option<String> {
        let out = server().psql(
            &self.db,
            &format!("SELECT holder FROM source_lease WHERE source_id = '{source}'"),
        );
        Some(out.trim().to_string()).filter(|h| !h.is_empty())
    }
}

/// Which of the two nodes `holder` (`host:pid`) names.
fn node_of(nodes: &[Rosterd; 2], holder: &str) -> Option<usize> {
    nodes
        .iter()
        .position(|n| holder.ends_with(&format!(":{}", n.child.id())))
}

/// An LDAP tree with `n` people, and the source config that reads it every
/// `cron`.
async fn directory(name: &str, n: usize, cron: &str) -> String {
    let s = slapd::slapd().await;
    let mut ldap = slapd::admin(s.port).await;
    let tree = Tree::new(&mut ldap, name).await;
    let mut ldif = String::new();
    for i in 0..n {
        ldif.push_str(&format!(
            "dn: uid=p{i},{people}\nobjectClass: inetOrgPerson\nuid: p{i}\ncn: Person {i}\ngivenName: Person\nsn: Number{i}\nmail: p{i}@{name}.example\n\n",
            people = tree.people
        ));
    }
    slapd::ldapadd(s.port, &ldif);
    let pw = s
        .dir
        .join(format!("pw-{}", tree.base.replace([',', '='], "_")));
    std::fs::write(&pw, ADMIN_PW).unwrap();
    format!(
        r#"
[[sources]]
id = "corp"
kind = "ldap"
url = "ldap://127.0.0.1:{port}"
bind_dn = "{ADMIN_DN}"
bind_password_file = "{pw}"
base_dn = "{people}"
filter = "(objectClass=inetOrgPerson)"
page_size = 1000
timeout_secs = 60
full_schedule = "{cron}"
[sources.attributes]
email = "mail"
given_name = "givenName"
family_name = "sn"
username = "uid"
"#,
        port = s.port,
        pw = pw.display(),
        people = tree.people,
    )
}

async fn runs(node: &Rosterd) -> Vec<Value> {
    let v = node
        .get_json(
            "/api/v1/sync/runs?source=corp&limit=500",
            &node.admin_token(),
        )
        .await;
    v["items"].as_array().cloned().unwrap_or_default()
}

/// Waits (at most `secs`) until `pred` holds for the run history.
async fn wait_runs(
    node: &Rosterd,
    secs: u64,
    what: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = runs(node).await;
        if pred(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {r:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (at most `secs`) until `f` gives `Some`.
async fn wait_until<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two nodes on one database, both reading a directory of `n` people every `cron`.
async fn two_nodes_reading(name: &str, n: usize, cron: &str) -> (Cluster, [Rosterd; 2]) {
    let src = directory(name, n, cron).await;
    let c = Cluster::new([&src, &src]);
    let nodes = [c.start(0), c.start(1)];
    (c, nodes)
}

/// Every profile once, each with exactly one audit entry: its creation.
fn assert_applied_once(c: &Cluster, n: u64) {
    assert_eq!(c.count("SELECT count(*) FROM employees"), n);
    assert_eq!(
        c.count("SELECT count(*) FROM audit"),
        n,
        "one audit entry per change"
    );
    assert_eq!(
        c.count("SELECT count(DISTINCT employee_id) FROM audit"),
        n,
        "one audit entry per employee"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_applying_node_hands_the_run_to_the_other_and_applies_each_change_once() {
    if !in_this_pass() {
        return;
    }
    const N: u64 = 10_000;
    let (c, mut nodes) = two_nodes_reading("kill9", N as usize, "*/2 * * * * *").await;

    // The node that claimed the first tick applies; kill it mid-apply.
    let t0 = Instant::now();
    let (a, applied) = wait_until(240, "the first run to apply a part of the plan", || {
        let (done, holder) = c.applying("corp");
        let a = holder.and_then(|h| node_of(&nodes, &h))?;
        (1000..N / 2).contains(&done).then_some((a, done))
    })
    .await;
    let killed_at = Instant::now();
    nodes[a].kill_9();
    let b = 1 - a;
    println!(
        "node {a} killed after {:?} with {applied} of {N} profiles created",
        killed_at - t0
    );

    let history = wait_runs(&nodes[b], 240, "run B to apply the rest", |r| {
        r.iter().any(|r| r["outcome"] == "applied")
    })
    .await;
    let run_b = history.iter().find(|r| r["outcome"] == "applied").unwrap();
    let run_a = history
        .iter()
        .find(|r| r["id"].as_u64() < run_b["id"].as_u64() && r["outcome"] != "applied")
        .unwrap_or_else(|| panic!("run A is in the history: {history:#?}"));
    assert_eq!(run_a["outcome"], "interrupted", "{run_a}");
    let why = run_a["message"].as_str().unwrap_or_default();
    assert!(why.contains("stopped renewing the source's lease"), "{why}");
    let created_b = run_b["counts"]["created"].as_u64().unwrap();
    assert!(
        created_b > 0 && created_b < N,
        "run B created the rest: {run_b}"
    );

    // Run B started within the lease time and one tick (2 s) of the kill,
    // plus what the lease's last renewal had left and the start of a run.
    let started_b = chrono::DateTime::parse_from_rfc3339(run_b["started_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let killed_wall = chrono::Utc::now() - chrono::Duration::from_std(killed_at.elapsed()).unwrap();
    let took = (started_b - killed_wall).to_std().unwrap_or_default();
    println!("run B started {took:?} after the kill (lease {TTL_SECS} s + tick 2 s)");
    assert!(
        took <= Duration::from_secs(TTL_SECS + 2 + 2),
        "run B started {took:?} after the kill"
    );
    nodes[b].kill_9();
    assert_applied_once(&c, N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_paused_past_its_lease_is_fenced_and_writes_nothing_more() {
    if !in_this_pass() {
        return;
    }
    // Enough people that the apply lasts a dozen batches of creates: fewer,
    // and the whole import can commit between two polls.
    const N: u64 = 10_000;
    let (c, mut nodes) = two_nodes_reading("sigstop", N as usize, "*/2 * * * * *").await;

    let (a, epoch_a) = wait_until(240, "the first run to apply a part of the plan", || {
        let (done, holder) = c.applying("corp");
        let a = holder.and_then(|h| node_of(&nodes, &h))?;
        (1..N / 2)
            .contains(&done)
            .then(|| (a, c.count("SELECT epoch FROM source_lease")))
    })
    .await;
    let b = 1 - a;
    // Either node shows who holds the lease (the API, and rosterctl's words).
    let holder = c.holder("corp").unwrap();
    let v = nodes[b]
        .get_json("/api/v1/sync/sources", &nodes[b].admin_token())
        .await;
    let lease = &v["items"][0]["lease"];
    assert_eq!(
        (&lease["holder"], &lease["epoch"], &lease["free"]),
        (&json!(holder), &json!(epoch_a), &json!(false)),
        "{v}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rosterctl"))
        .args(["--url", &nodes[b].base, "--token", &nodes[b].admin_token()])
        .args(["sync", "sources"])
        .env_remove("ROSTERD_URL")
        .env_remove("ROSTERD_TOKEN")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("lease: held by {holder}, epoch {epoch_a}, until ")),
        "{text}"
    );
    nodes[a].signal(libc::SIGSTOP);

    // The other node takes the lease (a higher epoch) and applies the rest.
    let history = wait_runs(&nodes[b], 240, "run B to apply the rest", |r| {
        r.iter().any(|r| r["outcome"] == "applied")
    })
    .await;
    assert!(c.count("SELECT epoch FROM source_lease") > epoch_a);
    // Between runs the lease is free, and says who had it last.
    let text = wait_until(30, "the lease to be let go", || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rosterctl"))
            .args(["--url", &nodes[b].base, "--token", &nodes[b].admin_token()])
            .args(["sync", "sources"])
            .env_remove("ROSTERD_URL")
            .env_remove("ROSTERD_TOKEN")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("lease: free (last held by").then_some(text)
    })
    .await;
    assert!(
        text.contains(&format!(":{}, epoch", nodes[b].child.id())),
        "{text}"
    );
    let run_b = history
        .iter()
        .find(|r| r["outcome"] == "applied")
        .unwrap()
        .clone();
    assert_applied_once(&c, N);
    let audit_before = c.count("SELECT max(seq) FROM audit");

    // Resumed, the paused runner finds its lease gone at its next batch.
    nodes[a].signal(libc::SIGCONT);
    // (Run B already recorded it interrupted; the node's own record follows.)
    let line = tokio::task::block_in_place(|| {
        nodes[a].wait_log("sync run interrupted", Duration::from_secs(60))
    });
    println!("node {a}, resumed: {line}");
    let history = runs(&nodes[b]).await;
    let run_a = history
        .iter()
        .find(|r| r["id"].as_u64() < run_b["id"].as_u64())
        .unwrap_or_else(|| panic!("run A is in the history: {history:#?}"));
    assert_eq!(run_a["outcome"], "interrupted", "{run_a}");
    let why = run_a["message"].as_str().unwrap_or_default();
    assert!(why.contains("was taken over by another node"), "{why}");
    assert!(why.contains(&format!("epoch {epoch_a}")), "{why}");
    // Nothing written under the old epoch: not one audit entry more, every
    // profile still once.
    assert_eq!(c.count("SELECT max(seq) FROM audit"), audit_before);
    assert_applied_once(&c, N);
    for n in &mut nodes {
        n.kill_9();
    }
}

/// `[mail]` on the test's SMTP server, with this node's `From`.
fn mail_toml(port: u16, from: &str) -> String {
    crate::support::replace_once(
        &crate::mail::mail_toml(port, ""),
        "no-reply@acme.example",
        from,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_mail_delivery_loses_no_message_and_sends_at_most_one_twice() {
    if !in_this_pass() {
        return;
    }
    const N: usize = 150;
    let tmp = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(free_port(), &tmp.path().join("mail"));
    let mails = [
        mail_toml(smtp.port, "node0@acme.example"),
        mail_toml(smtp.port, "node1@acme.example"),
    ];
    let c = Cluster::new([&mails[0], &mails[1]]);
    // The invitations wait in the outbox while no node has mail on.
    {
        let quiet = Rosterd::start(&write_plain(&c, &tmp), &tmp.path().join("quiet"));
        let tok = quiet.admin_token();
        let client = reqwest::Client::new();
        for i in 0..N {
            let r = client
                .post(format!("{}/api/v1/employees", quiet.base))
                .bearer_auth(&tok)
                .json(&json!({
                    "given_name": "Mail", "family_name": format!("Person{i}"),
                    "email": format!("m{i}@mail.example"), "account_status": "invite",
                }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        }
        quiet.stop();
    }
    assert_eq!(
        c.count("SELECT count(*) FROM outbox WHERE pending"),
        N as u64
    );

    let mut nodes = [c.start(0), c.start(1)];
    // One node claims the batch and sends; kill it mid-way.
    let a = wait_until(60, "a node to send some of the mail", || {
        let m = smtp.messages();
        (m.len() >= 20).then(|| usize::from(m[0]["from"].as_str().unwrap_or("").contains("node1")))
    })
    .await;
    nodes[a].kill_9();
    let sent_by_a = smtp.messages().len();
    assert!(
        sent_by_a < N,
        "node {a} was killed before it sent everything"
    );

    // The other node sends the rest once the dead node's claims expire.
    let all = smtp
        .wait_for("every invitation", |m| {
            let mut to: Vec<String> = m.iter().map(rcpt).collect();
            to.sort();
            to.dedup();
            to.len() == N
        })
        .await;
    // A duplicate would show within a couple of passes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all = if smtp.messages().len() > all.len() {
        smtp.messages()
    } else {
        all
    };
    let mut by_to: HashMap<String, Vec<&Value>> = HashMap::new();
    for m in &all {
        by_to.entry(rcpt(m)).or_default().push(m);
    }
    assert_eq!(by_to.len(), N);
    let twice: Vec<_> = by_to.values().filter(|v| v.len() > 1).collect();
    println!(
        "node {a} sent {sent_by_a} before the kill; {} messages for {N} recipients",
        all.len()
    );
    assert!(twice.len() <= 1, "at most one duplicate: {twice:#?}");
    for dup in twice {
        assert_eq!(dup.len(), 2, "{dup:#?}");
        assert_eq!(dup[0]["message_id"], dup[1]["message_id"], "{dup:#?}");
    }
    let other = if a == 0 { "node1@" } else { "node0@" };
    assert!(
        all.iter()
            .any(|m| m["from"].as_str().unwrap_or("").contains(other)),
        "the other node sent the rest"
    );
    assert_eq!(c.count("SELECT count(*) FROM outbox WHERE pending"), 0);
    nodes[1 - a].kill_9();
}

/// A config on the cluster's database without mail (to fill the outbox).
fn write_plain(c: &Cluster, tmp: &tempfile::TempDir) -> PathBuf {
    let text = std::fs::read_to_string(&c.cfgs[0]).unwrap();
    let i = text.find("\n[mail]").unwrap();
    let path = tmp.path().join("quiet.toml");
    std::fs::write(&path, &text[..i]).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_nodes_schedules_start_one_run_per_tick() {
    if !in_this_pass() {
        return;
    }
    const TICKS: usize = 12;
    let (c, nodes) = two_nodes_reading("ticks", 3, "* * * * * *").await;
    let history = wait_runs(&nodes[0], 60, "runs of TICKS ticks", |r| {
        r.iter().filter(|r| r["trigger"] == "schedule").count() >= TICKS
    })
    .await;
    let ticks = c.count("SELECT count(*) FROM duty_schedule WHERE duty = 'sync:corp:full'");
    assert_eq!(ticks, 1, "one schedule row per (source, kind)");
    // Each run's second is the tick it belongs to: one run each, none skipped.
    let mut seconds: Vec<i64> = history
        .iter()
        .filter(|r| r["trigger"] == "schedule")
        .map(|r| {
            chrono::DateTime::parse_from_rfc3339(r["started_at"].as_str().unwrap())
                .unwrap()
                .timestamp()
        })
        .collect();
    seconds.sort();
    let mut distinct = seconds.clone();
    distinct.dedup();
    assert_eq!(seconds, distinct, "one run per tick: {history:#?}");
    // Every tick from the first to the last has its run (one may be missed
    // only while a node starts).
    let span = (seconds[seconds.len() - 1] - seconds[0] + 1) as usize;
    assert!(
        span <= seconds.len() + 1,
        "ticks without a run: {seconds:?}"
    );
    let per_node: Vec<usize> = nodes
        .iter()
        .map(|n| n.count_logs("sync run finished"))
        .collect();
    println!("runs per node: {per_node:?} over {} ticks", seconds.len());
    // The claim kept the nodes apart, not the lease: no node found the
    // source's lease held by the other at a tick.
    for n in &nodes {
        assert_eq!(n.count_logs("another node holds this source's lease"), 0);
    }
    for n in nodes {
        n.stop();
    }
}

/// The rows themselves, through two store handles on one database (as two
/// nodes): a stale epoch's batch writes nothing, a firing is claimed once,
/// and two claims of the outbox never share a message.
#[test]
fn leases_fence_stale_batches_and_claims_are_won_once() {
    use rosterd::store::Store;
    use rosterd::store::postgres::PgStore;
    if !in_this_pass() {
        return;
    }
    let pg = server();
    let (db, mut settings) = crate::postgres::fresh_pg();
    settings.lease_ttl = Duration::from_secs(1);
    let one = Store::new(PgStore::open(&settings).unwrap());
    let two = Store::new(PgStore::open(&settings).unwrap());

    // Held: the other handle is refused and told who holds it.
    let first = one.lease_take("corp").unwrap().unwrap();
    assert_ne!(one.node_name(), two.node_name());
    let held = two.lease_take("corp").unwrap().unwrap_err();
    assert_eq!(
        (held.epoch, held.holder.as_str()),
        (1, first.holder.as_str())
    );
    assert!(!held.expired);
    // Expired (not renewed within the TTL): taken over with the next epoch.
    std::thread::sleep(Duration::from_millis(1300));
    let second = two.lease_take("corp").unwrap().unwrap();
    assert_eq!(second.epoch, 2);
    // The stale epoch's batch rolls back whole; the live one's commits.
    let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let stale = one.commit_many_fenced(
        &[
            crate::postgres::write(a, None, 1, "a@x"),
            crate::postgres::write(b, None, 1, "b@x"),
        ],
        Some(&first),
    );
    assert!(
        stale
            .unwrap_err()
            .to_string()
            .contains("was taken over by another node")
    );
    assert!(one.get(a).unwrap().is_none() && two.get(b).unwrap().is_none());
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM audit").trim(), "0");
    assert!(!one.lease_renew(&first).unwrap());
    two.commit_many_fenced(&[crate::postgres::write(a, None, 1, "a@x")], Some(&second))
        .unwrap();
    assert!(one.get(a).unwrap().is_some());
    assert!(two.lease_renew(&second).unwrap());
    // Let go: free at once, the epoch goes on.
    two.lease_release(&second).unwrap();
    assert_eq!(one.lease_take("corp").unwrap().unwrap().epoch, 3);
    assert_eq!(one.leases().unwrap().len(), 1);

    // A firing is claimed once, whoever asks first; the next one again once.
    let t = chrono::Utc::now();
    let next = t + chrono::Duration::seconds(2);
    let won = [
        one.claim_slot("lifecycle", t, next).unwrap(),
        two.claim_slot("lifecycle", t, next).unwrap(),
    ];
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    assert!(!one.claim_slot("lifecycle", t, next).unwrap());
    let after = next + chrono::Duration::seconds(2);
    let won = [
        two.claim_slot("lifecycle", next, after).unwrap(),
        one.claim_slot("lifecycle", next, after).unwrap(),
    ];
    assert_eq!(won, [true, false]);

    // Outbox claims: disjoint, and a claim that lapsed comes back.
    for i in 0..10 {
        one.outbox_put(&crate::postgres::message(100 + i, a))
            .unwrap();
    }
    let now = chrono::Utc::now();
    let mine: Vec<u64> = one
        .outbox_claim(now, 6)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    let theirs: Vec<u64> = two
        .outbox_claim(now, 6)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(mine, (100..106).collect::<Vec<_>>());
    assert_eq!(theirs, (106..110).collect::<Vec<_>>());
    // Its own claims are a node's to retry; the other's are not.
    let again: Vec<u64> = one
        .outbox_claim(now, 20)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(again, (100..106).collect::<Vec<_>>());
    assert!(one.outbox_hold(100).unwrap());
    std::thread::sleep(Duration::from_millis(1300));
    let back: Vec<u64> = two
        .outbox_claim(chrono::Utc::now(), 20)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(
        back,
        (100..110).collect::<Vec<_>>(),
        "lapsed claims come back"
    );
    // The first holder may not send what the other claimed since.
    assert!(!one.outbox_hold(100).unwrap());
    assert!(two.outbox_hold(100).unwrap());
}

/// A database at schema version 1 (before leases) gets step 2 and keeps its data.
#[test]
fn a_version_1_database_is_upgraded_with_the_lease_tables() {
    use rosterd::store::postgres::{Migrated, PG_SCHEMA_VERSION, PgStore};
    if !in_this_pass() {
        return;
    }
    let pg = server();
    let (db, settings) = crate::postgres::fresh_pg();
    assert_eq!(PgStore::migrate_only(&settings).unwrap(), Migrated::Created);
    pg.psql(
        &db,
        "DROP TABLE source_lease, duty_schedule;
         ALTER TABLE outbox DROP COLUMN claimed_by, DROP COLUMN claim_until;
         INSERT INTO sync_state (source, bytes) VALUES ('kept', '\\x01');
         UPDATE rosterd_schema SET version = 1",
    );
    assert_eq!(
        PgStore::migrate_only(&settings).unwrap(),
        Migrated::Upgraded(1)
    );
    assert_eq!(
        pg.psql(&db, "SELECT version FROM rosterd_schema").trim(),
        PG_SCHEMA_VERSION.to_string()
    );
    assert_eq!(
        pg.psql(
            &db,
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('source_lease', 'duty_schedule')"
        )
        .trim(),
        "2"
    );
    assert_eq!(
        pg.psql(&db, "SELECT count(claim_until) FROM outbox").trim(),
        "0"
    );
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM sync_state").trim(), "1");
    assert_eq!(PgStore::migrate_only(&settings).unwrap(), Migrated::Current);
}
