//! LDAP sync against a real slapd: import, updates, lifecycle, safety, history.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestServer, employee_json as emp, replace_once};
use crate::slapd::{self, ADMIN_DN, ADMIN_PW, LIMITED_DN, LIMITED_PW, Proxy, Tree};

struct Setup {
    server: TestServer,
    ldap: ldap3::Ldap,
    tree: Tree,
}

/// Source config for a tree; `port` may be a proxy's.
pub(crate) fn source_toml(
    tree: &Tree,
    port: u16,
    pw_file: &std::path::Path,
    bind_dn: &str,
    extra: &str,
) -> String {
    format!(
        r#"
[[sources]]
id = "corp"
kind = "ldap"
url = "ldap://127.0.0.1:{port}"
bind_dn = "{bind_dn}"
bind_password_file = "{pw}"
base_dn = "{people}"
filter = "(objectClass=inetOrgPerson)"
page_size = 3
timeout_secs = 5
max_deactivations = 100
max_deactivations_percent = 100.0
{extra}
[sources.attributes]
email = "mail"
given_name = "givenName"
family_name = "sn"
username = "uid"
mobile_phone = "mobile"
office_phone = "telephoneNumber"
[sources.groups]
base_dn = "{groups}"
[sources.disabled]
kind = "attribute"
attribute = "employeeType"
values = ["disabled"]
[[sources.positions]]
group = "{drivers}"
position = "Driver"
[[sources.positions]]
group = "{mechanics}"
position = "Mechanic"
[[sources.roles]]
group = "{dispatch}"
role = "Dispatcher"
[[sources.roles]]
attribute = "title"
value = "Manager"
role = "Administrator"
[sources.business_unit]
attribute = "departmentNumber"
map = {{ "100" = "North", "200" = "South" }}
"#,
        pw = pw_file.display(),
        people = tree.people,
        groups = tree.groups,
        drivers = tree.group_dn("drivers"),
        mechanics = tree.group_dn("mechanics"),
        dispatch = tree.group_dn("dispatch"),
    )
}

async fn setup_with(
    name: &str,
    port_override: Option<u16>,
    bind: Option<(&str, &str)>,
    tweak: fn(String) -> String,
) -> Setup {
    let s = slapd::slapd().await;
    let mut ldap = slapd::admin(s.port).await;
    let tree = Tree::new(&mut ldap, name).await;
    let (dn, pw) = bind.unwrap_or((ADMIN_DN, ADMIN_PW));
    let pw_file = s
        .dir
        .join(format!("pw-{}", tree.base.replace([',', '='], "_")));
    std::fs::write(&pw_file, pw).expect("pw file");
    let toml = tweak(source_toml(
        &tree,
        port_override.unwrap_or(s.port),
        &pw_file,
        dn,
        "",
    ));
    let server = TestServer::start_with(&toml).await;
    Setup { server, ldap, tree }
}

async fn setup(name: &str) -> Setup {
    setup_with(name, None, None, |t| t).await
}

/// Standard fixture: 10 people (more than 3 pages), nested driver groups,
/// a dispatcher group, a manager by title.
async fn populate(st: &mut Setup) {
    let t = &st.tree;
    let l = &mut st.ldap;
    t.person(
        l,
        "ana",
        "Ana",
        "Alvarez",
        "ana@corp.example",
        &[("departmentNumber", &["100"]), ("mobile", &["+1 555 0101"])],
    )
    .await;
    t.person(
        l,
        "ben",
        "Ben",
        "Brooks",
        "ben@corp.example",
        &[("departmentNumber", &["200"])],
    )
    .await;
    t.person(
        l,
        "cat",
        "Cat",
        "Chen",
        "cat@corp.example",
        &[("title", &["Manager"])],
    )
    .await;
    for i in 0..7 {
        let uid = format!("p{i}");
        let mail = format!("p{i}@corp.example");
        t.person(l, &uid, "Pat", &format!("Person{i}"), &mail, &[])
            .await;
    }
    // night-drivers is nested inside drivers.
    t.group(l, "night-drivers", &[t.person_dn("ben")]).await;
    t.group(
        l,
        "drivers",
        &[t.person_dn("ana"), t.group_dn("night-drivers")],
    )
    .await;
    t.group(l, "mechanics", &[t.person_dn("ana")]).await;
    t.group(l, "dispatch", &[t.person_dn("ben")]).await;
}

async fn run(s: &TestServer, body: Value) -> Value {
    let (st, v) = s.post("/api/v1/sync/sources/corp/run", body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

async fn audit_count(s: &TestServer) -> usize {
    let (_, v) = s.get("/api/v1/audit?limit=1000").await;
    v["items"].as_array().expect("items").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_import_then_no_change_rerun() {
    let mut st = setup("import").await;
    populate(&mut st).await;
    let s = &st.server;
    let r = run(s, json!({})).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    assert_eq!(r["counts"]["created"], 10, "{r}");
    assert_eq!(r["entries_seen"], 10, "paged search got every page");

    let ana = emp(s, "ana@corp.example").await;
    assert_eq!(ana["positions"], json!(["Driver", "Mechanic"]));
    assert_eq!(ana["role"], "Technician", "default role");
    assert_eq!(ana["business_unit"], "North");
    assert_eq!(ana["mobile_phone"], "+1 555 0101");
    assert_eq!(ana["username"], "ana");
    assert!(
        ana["source_keys"]["corp"].as_str().unwrap().len() > 10,
        "entryUUID recorded"
    );
    let ben = emp(s, "ben@corp.example").await;
    assert_eq!(ben["positions"], json!(["Driver"]), "nested group counts");
    assert_eq!(ben["role"], "Dispatcher", "group rule");
    assert_eq!(ben["business_unit"], "South");
    let cat = emp(s, "cat@corp.example").await;
    assert_eq!(cat["role"], "Administrator", "attribute rule");
    assert_eq!(cat["positions"], json!([]));

    // The audit log names the source.
    let (_, a) = s
        .get(&format!(
            "/api/v1/audit?employee={}",
            ana["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        a["items"][0]["actor"],
        json!({"kind": "sync", "name": "corp"})
    );

    // Nothing changed in the directory: nothing changes on the roster.
    let before = audit_count(s).await;
    let r = run(s, json!({})).await;
    assert_eq!(r["counts"]["unchanged"], 10, "{r}");
    assert_eq!(r["counts"]["created"], 0);
    assert_eq!(r["counts"]["updated"], 0);
    assert_eq!(
        audit_count(s).await,
        before,
        "a no-change run writes no audit entries"
    );
    assert_eq!(emp(s, "ana@corp.example").await["version"], ana["version"]);

    // Metrics moved.
    let m = crate::metrics::scrape(s).await;
    let applied = [("source", "corp"), ("outcome", "applied")];
    assert_eq!(
        crate::metrics::value(&m, "rosterd_sync_runs_total", &applied),
        2.0
    );
    assert_eq!(
        crate::metrics::value(&m, "rosterd_sync_entries_seen_total", &[("source", "corp")]),
        20.0
    );
    assert!(
        crate::metrics::value(
            &m,
            "rosterd_sync_last_success_timestamp_seconds",
            &[("source", "corp")]
        ) > 1.7e9
    );

    // Run history.
    let (_, runs) = s.get("/api/v1/sync/runs?source=corp").await;
    assert_eq!(runs["items"].as_array().unwrap().len(), 2);
    let id = runs["items"][1]["id"].as_u64().unwrap();
    let (_, shown) = s.get(&format!("/api/v1/sync/runs/{id}")).await;
    assert_eq!(shown["counts"]["created"], 10, "{shown}");
    assert!(shown.get("plan").is_none(), "a run shows no plan: {shown}");
    let plan = s.plan(&shown["id"], 3).await;
    assert_eq!(plan.len(), 10);
    assert_eq!(plan[0]["action"], "create");
    st.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_in_the_directory_follow_through() {
    let mut st = setup("changes").await;
    populate(&mut st).await;
    run(&st.server, json!({})).await;
    let t = &st.tree;
    // Attribute change, group membership change, a rename (new RDN) and a disable.
    slapd::replace(&mut st.ldap, &t.person_dn("ana"), "sn", &["Alvarez-Diaz"]).await;
    slapd::replace(
        &mut st.ldap,
        &t.group_dn("mechanics"),
        "member",
        &[&t.person_dn("cat")],
    )
    .await;
    slapd::replace(
        &mut st.ldap,
        &t.person_dn("p0"),
        "employeeType",
        &["disabled"],
    )
    .await;
    st.ldap
        .modifydn(&t.person_dn("p1"), "uid=p1-renamed", true, None)
        .await
        .and_then(|r| r.success())
        .unwrap();
    let s = &st.server;
    let r = run(s, json!({})).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    let ana = emp(s, "ana@corp.example").await;
    assert_eq!(ana["family_name"], "Alvarez-Diaz");
    assert_eq!(ana["positions"], json!(["Driver"]), "left mechanics");
    assert_eq!(
        emp(s, "cat@corp.example").await["positions"],
        json!(["Mechanic"])
    );
    let p0 = emp(s, "p0@corp.example").await;
    assert_eq!(p0["active"], false, "disabled → deactivated");
    assert_eq!(
        p0["deactivated_by"],
        json!({"kind": "sync", "name": "corp"})
    );
    let p1 = emp(s, "p1@corp.example").await;
    assert_eq!(
        p1["username"], "p1-renamed",
        "renamed entry updated, not duplicated"
    );
    let (_, all) = s.get("/api/v1/employees?status=all").await;
    assert_eq!(all["total"], 10);

    // Enabled again → reactivated.
    slapd::replace(&mut st.ldap, &t.person_dn("p0"), "employeeType", &["staff"]).await;
    let r = run(s, json!({})).await;
    assert_eq!(r["counts"]["activated"], 1, "{r}");
    assert_eq!(emp(s, "p0@corp.example").await["active"], true);
    st.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_deactivates_on_full_runs_only_and_return_reactivates() {
    let mut st = setup("removal").await;
    populate(&mut st).await;
    run(&st.server, json!({})).await;
    slapd::delete(&mut st.ldap, &st.tree.person_dn("p2")).await;
    let s = &st.server;
    let r = run(s, json!({"kind": "incremental"})).await;
    assert_eq!(
        r["counts"]["deactivated"], 0,
        "incremental never deactivates by absence: {r}"
    );
    assert_eq!(emp(s, "p2@corp.example").await["active"], true);
    let r = run(s, json!({"kind": "full"})).await;
    assert_eq!(r["counts"]["deactivated"], 1, "{r}");
    let p2 = emp(s, "p2@corp.example").await;
    assert_eq!(p2["active"], false, "deactivated, never deleted");

    // The person returns (a new entry, same email): linked again and reactivated.
    st.tree
        .person(&mut st.ldap, "p2", "Pat", "Person2", "p2@corp.example", &[])
        .await;
    let r = run(s, json!({})).await;
    assert_eq!(r["counts"]["activated"], 1, "{r}");
    let back = emp(s, "p2@corp.example").await;
    assert_eq!(back["active"], true);
    assert_eq!(back["id"], p2["id"], "same profile");
    st.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_deactivation_holds_and_hand_made_profiles_are_linked() {
    let mut st = setup("held").await;
    populate(&mut st).await;
    let s = &st.server;
    // A profile added by hand before the first sync, email in other case.
    let hand = s
        .create(json!({"given_name": "Cat", "family_name": "Chen", "email": "CAT@Corp.Example", "role": "Viewer", "mobile_phone": "555 0000"}))
        .await;
    run(s, json!({})).await;
    let cat = emp(s, "cat@corp.example").await;
    assert_eq!(cat["id"], hand["id"], "linked, not duplicated");
    assert_eq!(cat["role"], "Administrator", "the source's fields win");
    assert!(cat["source_keys"]["corp"].is_string());
    let (_, all) = s.get("/api/v1/employees?status=all").await;
    assert_eq!(all["total"], 10);

    // An admin deactivates Ben; the next run does not bring him back.
    let ben = emp(s, "ben@corp.example").await;
    s.post(
        &format!(
            "/api/v1/employees/{}/deactivate",
            ben["id"].as_str().unwrap()
        ),
        json!({}),
    )
    .await;
    let r = run(s, json!({})).await;
    assert_eq!(r["counts"]["held"], 1, "{r}");
    let plan = s.plan(&r["id"], 500).await;
    let held = plan.iter().find(|i| i["action"] == "held").unwrap();
    assert!(
        held["reason"].as_str().unwrap().contains("admin:admin"),
        "{held}"
    );
    assert_eq!(emp(s, "ben@corp.example").await["active"], false);
    // Until an admin reactivates.
    s.post(
        &format!("/api/v1/employees/{}/activate", ben["id"].as_str().unwrap()),
        json!({}),
    )
    .await;
    assert_eq!(emp(s, "ben@corp.example").await["active"], true);

    // explain: who set which field.
    let (st2, ex) = s.get("/api/v1/employees/cat@corp.example/explain").await;
    assert_eq!(st2, StatusCode::OK);
    assert_eq!(
        ex["fields"]["role"]["set_by"],
        json!({"kind": "sync", "name": "corp"})
    );
    assert_eq!(
        ex["fields"]["mobile_phone"]["set_by"]["kind"], "sync",
        "{ex}"
    );
    st.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_entries_are_skipped_and_reported() {
    let mut st = setup("bad").await;
    populate(&mut st).await;
    st.tree
        .person(&mut st.ldap, "bad", "Bad", "Mail", "not-an-email", &[])
        .await;
    st.tree
        .person(&mut st.ldap, "nomail", "No", "Mail", "", &[])
        .await;
    let s = &st.server;
    let r = run(s, json!({})).await;
    assert_eq!(r["outcome"], "applied");
    assert_eq!(r["counts"]["created"], 10, "{r}");
    let errors = r["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{r}");
    assert!(
        errors
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("not-an-email")),
        "{r}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e["dn"].as_str().unwrap().contains("uid=nomail")),
        "{r}"
    );
    st.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_holds_the_plan_until_approved() {
    let mut st = setup_with("threshold", None, None, |t| {
        replace_once(&t, "max_deactivations = 100", "max_deactivations = 3")
    })
    .await;
    populate(&mut st).await;
    let server = &st.server;
    let r = run(server, json!({})).await;
    assert_eq!(r["counts"]["created"], 10);
    for i in 0..5 {
        slapd::replace(
            &mut st.ldap,
            &st.tree.person_dn(&format!("p{i}")),
            "employeeType",
            &["disabled"],
        )
        .await;
    }
    let r = run(server, json!({})).await;
    assert_eq!(r["outcome"], "held", "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("max_deactivations"),
        "{r}"
    );
    let (_, active) = server.get("/api/v1/employees").await;
    assert_eq!(active["total"], 10, "held: nobody deactivated");
    let id = r["id"].as_u64().unwrap();
    let (code, approved) = server
        .post(&format!("/api/v1/sync/runs/{id}/approve"), json!({}))
        .await;
    assert_eq!(code, StatusCode::OK, "{approved}");
    assert_eq!(approved["outcome"], "approved");
    let (_, active) = server.get("/api/v1/employees").await;
    assert_eq!(active["total"], 5);
    // Approving twice is refused.
    let (code, _) = server
        .post(&format!("/api/v1/sync/runs/{id}/approve"), json!({}))
        .await;
    assert_eq!(code, StatusCode::CONFLICT);
    st.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_keeps_the_newest_runs_of_a_source() {
    let mut st = setup_with("keep", None, None, |t| {
        replace_once(
            &t,
            "max_deactivations = 100",
            "max_deactivations = 100\nkeep_runs = 2",
        )
    })
    .await;
    populate(&mut st).await;
    let s = &st.server;
    let first = run(s, json!({})).await;
    assert_eq!(first["counts"]["created"], 10);
    let second = run(s, json!({"dry_run": true})).await;
    let third = run(s, json!({})).await;
    let (_, runs) = s.get("/api/v1/sync/runs?source=corp").await;
    let ids: Vec<_> = runs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, vec![third["id"].clone(), second["id"].clone()]);
    let (status, _) = s.get(&format!("/api/v1/sync/runs/{}", first["id"])).await;
    assert_eq!(status, 404, "the oldest run is gone with its plan");
    // What the runs did stays: the profiles and their audit entries.
    let (_, active) = s.get("/api/v1/employees").await;
    assert_eq!(active["total"], 10);
    assert_eq!(audit_count(s).await, 10);
    st.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_changes_nothing() {
    let mut st = setup("dry").await;
    populate(&mut st).await;
    let s = &st.server;
    let r = run(s, json!({"dry_run": true})).await;
    assert_eq!(r["outcome"], "dry_run");
    assert_eq!(r["counts"]["created"], 10);
    assert_eq!(s.plan(&r["id"], 500).await.len(), 10);
    let (_, all) = s.get("/api/v1/employees?status=all").await;
    assert_eq!(all["total"], 0);
    assert_eq!(audit_count(s).await, 0);
    st.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_or_truncated_fetch_deactivates_nobody() {
    let sl = slapd::slapd().await;
    // Through a proxy that we can cut.
    let proxy = Proxy::start(sl.port, Duration::ZERO).await;
    let mut st = setup_with("failing", Some(proxy.port), None, |t| t).await;
    populate(&mut st).await;
    let s = &st.server;
    let r = run(s, json!({})).await;
    assert_eq!(r["counts"]["created"], 10);
    // Everyone disappears from view mid-search: the connection dies after the
    // first few hundred bytes.
    proxy
        .cut_after
        .store(600, std::sync::atomic::Ordering::SeqCst);
    let r = run(s, json!({})).await;
    assert_eq!(r["outcome"], "failed", "{r}");
    assert!(r["message"].as_str().unwrap().len() > 5);
    let (_, active) = s.get("/api/v1/employees").await;
    assert_eq!(active["total"], 10, "nobody deactivated");
    // Proxy gone entirely (directory down).
    drop(proxy);
    let r = run(s, json!({})).await;
    assert_eq!(r["outcome"], "failed", "{r}");
    let (_, active) = s.get("/api/v1/employees").await;
    assert_eq!(active["total"], 10);
    st.server.stop().await;
}

/// The directory's own slapd stopped (SIGTERM, as `systemctl stop slapd` does)
/// while a run is reading from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slapd_stopped_mid_run_fails_the_run_and_deactivates_nobody() {
    let mut own = slapd::OwnSlapd::start("stopped").await;
    let mut ldap = slapd::admin(own.port).await;
    let tree = Tree::new(&mut ldap, "stopped").await;
    // Each chunk the directory sends is held back a little, so that the run is
    // still reading when slapd stops.
    let proxy = Proxy::start(own.port, Duration::from_millis(100)).await;
    let pw_file = own.dir.join("pw");
    std::fs::write(&pw_file, ADMIN_PW).expect("pw file");
    let server =
        TestServer::start_with(&source_toml(&tree, proxy.port, &pw_file, ADMIN_DN, "")).await;
    let mut st = Setup { server, ldap, tree };
    populate(&mut st).await;
    let s = &st.server;
    let r = run(s, json!({})).await;
    assert_eq!(r["counts"]["created"], 10, "{r}");

    let before = proxy.received.load(std::sync::atomic::Ordering::SeqCst);
    let stop = async {
        // Once the directory has sent about a third of what a run reads (the
        // first pages of people): stop it.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while proxy.received.load(std::sync::atomic::Ordering::SeqCst) <= before + before / 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the run never reached slapd"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::task::block_in_place(|| own.stop());
    };
    let (r, ()) = tokio::join!(run(s, json!({})), stop);
    assert_eq!(r["outcome"], "failed", "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap_or("")
            .contains("search failed"),
        "{r}"
    );
    assert_eq!(r["counts"]["deactivated"], 0, "{r}");
    let (_, active) = s.get("/api/v1/employees").await;
    assert_eq!(active["total"], 10, "nobody deactivated");
    st.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limited_account_fails_the_run() {
    let mut st = setup_with("limited", None, Some((LIMITED_DN, LIMITED_PW)), |t| t).await;
    populate(&mut st).await;
    let s = &st.server;
    let r = run(s, json!({})).await;
    assert_eq!(r["outcome"], "failed", "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("sizeLimitExceeded") || msg.contains("result code 4"),
        "{msg}"
    );
    let (_, all) = s.get("/api/v1/employees?status=all").await;
    assert_eq!(all["total"], 0, "a truncated result applies nothing");
    st.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_triggers_at_once_make_one_run() {
    let sl = slapd::slapd().await;
    let proxy = Proxy::start(sl.port, Duration::from_millis(150)).await;
    let mut st = setup_with("overlap", Some(proxy.port), None, |t| t).await;
    populate(&mut st).await;
    let s = &st.server;
    // The first run is slowed by the proxy; the second trigger comes while the
    // first is recorded as running.
    let (a, b) = tokio::join!(s.post("/api/v1/sync/sources/corp/run", json!({})), async {
        for _ in 0..250 {
            let (_, runs) = s.get("/api/v1/sync/runs").await;
            if runs["items"][0]["outcome"] == "running" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        s.post("/api/v1/sync/sources/corp/run", json!({})).await
    });
    assert_eq!(a.0, StatusCode::OK, "{a:?}");
    assert_eq!(b.0, StatusCode::CONFLICT, "{b:?}");
    assert!(
        b.1["message"]
            .as_str()
            .unwrap()
            .contains("already in progress"),
        "{b:?}"
    );
    let (_, runs) = s.get("/api/v1/sync/runs").await;
    assert_eq!(runs["items"].as_array().unwrap().len(), 1);
    let (_, all) = s.get("/api/v1/employees?status=all").await;
    assert_eq!(all["total"], 10);
    st.server.stop().await;
}

#[tokio::test]
async fn unknown_source_and_run_are_404() {
    let s = TestServer::start().await;
    let (st, _) = s.post("/api/v1/sync/sources/nope/run", json!({})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.get("/api/v1/sync/runs/99999").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_runs_fetch_only_changes_since_the_mark() {
    // The shared slapd offers content sync; this test keeps the modifyTimestamp path.
    let mut st = setup_with("incremental", None, None, |t| {
        replace_once(
            &t,
            "timeout_secs = 5",
            "timeout_secs = 5\nincremental = \"modify_timestamp\"",
        )
    })
    .await;
    populate(&mut st).await;
    // modifyTimestamp has one-second resolution and the mark is inclusive (a
    // change in the mark's second is fetched again rather than missed): step past
    // the fixture's second, touch one entry (the mark), step past it again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    slapd::replace(&mut st.ldap, &st.tree.person_dn("p4"), "sn", &["Touched"]).await;
    let s = &st.server;
    run(s, json!({"kind": "full"})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    slapd::replace(&mut st.ldap, &st.tree.person_dn("p3"), "sn", &["Changed"]).await;
    let r = run(s, json!({"kind": "incremental"})).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    assert_eq!(r["fetch"], "modified_since", "{r}");
    assert_eq!(
        r["entries_seen"], 2,
        "only entries changed since the mark: {r}"
    );
    assert_eq!(r["counts"]["updated"], 1);
    assert_eq!(emp(s, "p3@corp.example").await["family_name"], "Changed");
    let (_, src) = s.get("/api/v1/sync/sources").await;
    assert!(
        src["items"][0]["high_water_mark"]
            .as_str()
            .unwrap()
            .ends_with('Z'),
        "{src}"
    );
    st.server.stop().await;
}

/// The source's stored state, as the sources listing shows it.
async fn source_state(s: &TestServer) -> Value {
    let (_, src) = s.get("/api/v1/sync/sources").await;
    src["items"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_runs_use_content_sync_from_the_stored_cookie() {
    let mut st = setup("content-sync").await;
    populate(&mut st).await;
    let s = &st.server;
    let r = run(s, json!({"kind": "full"})).await;
    assert_eq!(
        (r["outcome"].as_str(), r["fetch"].as_str()),
        (Some("applied"), Some("all")),
        "{r}"
    );
    let first = source_state(s).await["sync_cookie"].clone();
    assert!(first.is_string(), "a full run stores a cookie: {first}");

    // One attribute change: the incremental run sees that entry only.
    slapd::replace(
        &mut st.ldap,
        &st.tree.person_dn("ana"),
        "sn",
        &["Alvarez-Diaz"],
    )
    .await;
    let r = run(s, json!({"kind": "incremental"})).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    assert_eq!(r["fetch"], "content_sync", "{r}");
    assert_eq!(
        r["entries_seen"], 1,
        "the change, not the whole directory: {r}"
    );
    assert_eq!(r["counts"]["updated"], 1, "{r}");
    let ana = emp(s, "ana@corp.example").await;
    assert_eq!(ana["family_name"], "Alvarez-Diaz");
    assert_eq!(
        ana["positions"],
        json!(["Driver", "Mechanic"]),
        "groups resolved for the changed entry"
    );
    let second = source_state(s).await["sync_cookie"].clone();
    assert!(
        second.is_string() && second != first,
        "the cookie advanced: {second}"
    );

    // Nothing changed since: nothing seen.
    let before = audit_count(s).await;
    let r = run(s, json!({"kind": "incremental"})).await;
    assert_eq!(
        (r["outcome"].as_str(), r["fetch"].as_str()),
        (Some("applied"), Some("content_sync")),
        "{r}"
    );
    assert_eq!(r["entries_seen"], 0, "{r}");
    assert_eq!(audit_count(s).await, before);

    // A group membership change does not touch the person's entry: positions
    // from groups follow on the next full run (README, "what refreshes when").
    slapd::replace(
        &mut st.ldap,
        &st.tree.group_dn("mechanics"),
        "member",
        &[&st.tree.person_dn("cat")],
    )
    .await;
    let r = run(s, json!({"kind": "incremental"})).await;
    assert_eq!(r["entries_seen"], 0, "{r}");
    let r = run(s, json!({"kind": "full"})).await;
    assert_eq!(r["counts"]["updated"], 2, "{r}");
    assert_eq!(
        emp(s, "ana@corp.example").await["positions"],
        json!(["Driver"])
    );

    // A deletion is reported by the server but never deactivates on an
    // incremental run; the full run does.
    slapd::delete(&mut st.ldap, &st.tree.person_dn("p5")).await;
    let r = run(s, json!({"kind": "incremental"})).await;
    assert_eq!(
        (r["fetch"].as_str(), r["counts"]["deactivated"].as_u64()),
        (Some("content_sync"), Some(0)),
        "{r}"
    );
    let r = run(s, json!({"kind": "full"})).await;
    assert_eq!(r["counts"]["deactivated"], 1, "{r}");
    st.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_advances_only_after_an_applied_run() {
    let mut st = setup_with("cookie-held", None, None, |t| {
        replace_once(&t, "max_deactivations = 100", "max_deactivations = 0")
    })
    .await;
    populate(&mut st).await;
    let s = &st.server;
    assert_eq!(run(s, json!({"kind": "full"})).await["outcome"], "applied");
    let applied = source_state(s).await;
    assert!(applied["sync_cookie"].is_string(), "{applied}");

    slapd::replace(
        &mut st.ldap,
        &st.tree.person_dn("p0"),
        "employeeType",
        &["disabled"],
    )
    .await;
    let r = run(s, json!({"kind": "incremental", "dry_run": true})).await;
    assert_eq!(
        (r["outcome"].as_str(), r["entries_seen"].as_u64()),
        (Some("dry_run"), Some(1)),
        "{r}"
    );
    let r = run(s, json!({"kind": "incremental"})).await;
    assert_eq!(r["outcome"], "held", "{r}");
    let held = source_state(s).await;
    assert_eq!(
        held["sync_cookie"], applied["sync_cookie"],
        "a dry run or a held plan keeps the cookie"
    );
    assert_eq!(
        held["high_water_mark"], applied["high_water_mark"],
        "and the mark"
    );
    // The change is still ahead of the cookie.
    let r = run(s, json!({"kind": "incremental"})).await;
    assert_eq!(
        (r["outcome"].as_str(), r["entries_seen"].as_u64()),
        (Some("held"), Some(1)),
        "{r}"
    );
    let id = r["id"].as_u64().unwrap();
    let (code, v) = s
        .post(&format!("/api/v1/sync/runs/{id}/approve"), json!({}))
        .await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(emp(s, "p0@corp.example").await["active"], false);
    // Approval applied the plan; the next run, with nothing left to change,
    // applies and moves the cookie on.
    let r = run(s, json!({"kind": "incremental"})).await;
    assert_eq!(
        (r["outcome"].as_str(), r["counts"]["unchanged"].as_u64()),
        (Some("applied"), Some(1)),
        "{r}"
    );
    assert_ne!(source_state(s).await["sync_cookie"], applied["sync_cookie"]);
    st.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_garbage_cookie_still_gets_the_change() {
    use base64::Engine;
    let mut st = setup("cookie-refused").await;
    populate(&mut st).await;
    let s = &st.server;
    assert_eq!(run(s, json!({"kind": "full"})).await["outcome"], "applied");
    let set_cookie = |raw: &[u8]| {
        let runs = s.sync().runs();
        let mut state = runs.state("corp").unwrap();
        state.sync_cookie = Some(base64::engine::general_purpose::STANDARD.encode(raw));
        runs.put_state("corp", &state).unwrap();
    };

    // A cookie from the future (a directory restored from a backup): OpenLDAP
    // answers "consumer state is newer than provider" (53). The run falls back
    // to modifyTimestamp at or past the mark and takes a fresh cookie.
    let future = b"rid=000,csn=20991231235959.000000Z#000000#000#000000";
    set_cookie(future);
    slapd::replace(&mut st.ldap, &st.tree.person_dn("ana"), "sn", &["Refused"]).await;
    let r = run(s, json!({"kind": "incremental"})).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    assert_eq!(r["fetch"], "modified_since", "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap_or_default()
            .contains("refused the stored content-sync cookie"),
        "{r}"
    );
    assert_eq!(r["counts"]["deactivated"], 0, "{r}");
    assert_eq!(emp(s, "ana@corp.example").await["family_name"], "Refused");
    let fresh = source_state(s).await["sync_cookie"].clone();
    assert!(fresh.is_string(), "{fresh}");
    assert_ne!(
        fresh.as_str().unwrap().as_bytes(),
        base64::engine::general_purpose::STANDARD
            .encode(future)
            .as_bytes()
    );
    let r = run(s, json!({"kind": "incremental"})).await;
    assert_eq!(
        (r["fetch"].as_str(), r["entries_seen"].as_u64()),
        (Some("content_sync"), Some(0)),
        "back on content sync: {r}"
    );

    // A cookie the server cannot read: OpenLDAP sends everything again (a
    // refresh from scratch, without a cookie). Applied as changes, nobody
    // deactivated; the empty cookie is dropped and the next run takes a new one.
    set_cookie(b"garbage");
    slapd::replace(&mut st.ldap, &st.tree.person_dn("ben"), "sn", &["Garbage"]).await;
    let r = run(s, json!({"kind": "incremental"})).await;
    assert_eq!(
        (r["outcome"].as_str(), r["fetch"].as_str()),
        (Some("applied"), Some("content_sync")),
        "{r}"
    );
    assert_eq!(r["entries_seen"], 10, "{r}");
    assert_eq!(
        (
            r["counts"]["updated"].as_u64(),
            r["counts"]["deactivated"].as_u64()
        ),
        (Some(1), Some(0)),
        "{r}"
    );
    assert_eq!(emp(s, "ben@corp.example").await["family_name"], "Garbage");
    assert!(source_state(s).await["sync_cookie"].is_null());
    let r = run(s, json!({"kind": "incremental"})).await;
    assert_eq!(
        (r["outcome"].as_str(), r["fetch"].as_str()),
        (Some("applied"), Some("modified_since")),
        "{r}"
    );
    assert!(source_state(s).await["sync_cookie"].is_string());
    let r = run(s, json!({"kind": "incremental"})).await;
    assert_eq!(
        (r["fetch"].as_str(), r["entries_seen"].as_u64()),
        (Some("content_sync"), Some(0)),
        "{r}"
    );
    st.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_modify_timestamp_never_uses_content_sync() {
    let mut st = setup_with("no-content-sync", None, None, |t| {
        replace_once(
            &t,
            "timeout_secs = 5",
            "timeout_secs = 5\nincremental = \"modify_timestamp\"",
        )
    })
    .await;
    populate(&mut st).await;
    let s = &st.server;
    run(s, json!({"kind": "full"})).await;
    assert!(
        source_state(s).await["sync_cookie"].is_null(),
        "no cookie is asked for"
    );
    let r = run(s, json!({"kind": "incremental"})).await;
    assert_eq!(r["fetch"], "modified_since", "{r}");
    st.server.stop().await;
}

/// The error the shipped config gets with an LDAP source made of the minimal
/// keys plus `keys`.
fn refused(keys: &str) -> rosterd::config::ConfigError {
    let text = crate::common::shipped_config()
        + r#"
[[sources]]
id = "corp"
kind = "ldap"
url = "ldap://127.0.0.1:1"
base_dn = "dc=example,dc=com"
"# + keys;
    rosterd::config::parse(std::path::Path::new("x.toml"), &text, &[]).unwrap_err()
}

#[test]
fn an_unknown_incremental_method_is_refused_naming_the_key() {
    let e = refused(
        r#"
incremental = "syncrepl"
"#,
    );
    assert_eq!(e.key, "sources[0].incremental", "{e}");
    assert!(
        e.message.contains("auto, content_sync or modify_timestamp"),
        "{e}"
    );
}

/// A 2x2 PNG: what pia's photo becomes.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x02, 0x00, 0x00, 0x00, 0xfd, 0xd4, 0x9a,
    0x73, 0x00, 0x00, 0x00, 0x10, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x30, 0x4e, 0x3b, 0x03,
    0x44, 0x0c, 0x10, 0x0a, 0x00, 0x24, 0xb6, 0x05, 0x95, 0x26, 0xba, 0x45, 0xe5, 0x00, 0x00, 0x00,
    0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// The photo endpoint's answer: status, content type, bytes.
async fn photo_of(s: &TestServer, id: &str) -> (StatusCode, String, Vec<u8>) {
    let resp = s
        .client
        .get(s.url(&format!("/api/v1/employees/{id}/photo")))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("photo request");
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, ct, resp.bytes().await.expect("body").to_vec())
}

async fn audit_of(s: &TestServer, id: &str) -> Vec<Value> {
    let (_, a) = s.get(&format!("/api/v1/audit?employee={id}")).await;
    a["items"].as_array().expect("items").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photos_from_jpeg_photo_follow_the_directory() {
    use base64::Engine;
    let mut st = setup_with("photos", None, None, |t| {
        replace_once(
            &t,
            "office_phone = \"telephoneNumber\"",
            "office_phone = \"telephoneNumber\"\nphoto = \"jpegPhoto\"",
        )
    })
    .await;
    let fixture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/photos.ldif"),
    )
    .expect("fixture")
    .replace("{people}", &st.tree.people);
    slapd::ldapadd(slapd::slapd().await.port, &fixture);
    let jpeg = slapd::ldif_value(&fixture, &st.tree.person_dn("pia"), "jpegPhoto");
    let s = &st.server;

    // First import: the bytes become the uploaded photo.
    let r = run(s, json!({"kind": "full"})).await;
    assert_eq!(
        (r["outcome"].as_str(), r["counts"]["created"].as_u64()),
        (Some("applied"), Some(3)),
        "{r}"
    );
    let pia = emp(s, "pia@corp.example").await;
    let id = pia["id"].as_str().unwrap().to_string();
    assert_eq!(pia["photo_url"], format!("/api/v1/employees/{id}/photo"));
    assert_eq!(pia["photo_content_type"], "image/jpeg");
    assert_eq!(
        photo_of(s, &id).await,
        (StatusCode::OK, "image/jpeg".into(), jpeg.clone())
    );
    // The audit log records the digest and the size, never the bytes.
    let created = &audit_of(s, &id).await[0];
    let photo = created["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "photo")
        .expect("photo in the create entry")
        .clone();
    assert_eq!(photo["after"]["size"], jpeg.len());
    assert_eq!(
        photo["after"]["sha256"].as_str().map(str::len),
        Some(64),
        "{photo}"
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(&jpeg);
    assert!(
        !created.to_string().contains(&b64[..40]),
        "no bytes in the audit log"
    );
    // Not an image: a warning, the rest of the entry synced.
    let errors = r["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(
            |e| e["dn"].as_str().unwrap_or_default().starts_with("uid=nic")
                && e["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("neither a JPEG nor a PNG")
        ),
        "{r}"
    );
    let nic = emp(s, "nic@corp.example").await;
    assert_eq!(
        (nic["family_name"].as_str(), &nic["photo_url"]),
        (Some("Nophoto"), &Value::Null)
    );
    assert_eq!(emp(s, "ole@corp.example").await["photo_url"], Value::Null);

    // Explain knows the field as `photo`.
    let (_, ex) = s.get("/api/v1/employees/pia@corp.example/explain").await;
    assert_eq!(ex["owners"]["photo"][0]["source"], "corp", "{ex}");
    assert_eq!(
        ex["fields"]["photo"]["set_by"],
        json!({"kind": "sync", "name": "corp"}),
        "{ex}"
    );

    // No change: nothing written, no audit entry.
    let before = audit_count(s).await;
    let r = run(s, json!({"kind": "full"})).await;
    assert_eq!(r["counts"]["unchanged"], 3, "{r}");
    assert_eq!(audit_count(s).await, before);

    // A new photo in the directory replaces it (here through content sync).
    let mut vals = std::collections::HashSet::new();
    vals.insert(PNG.to_vec());
    st.ldap
        .modify(
            &st.tree.person_dn("pia"),
            vec![ldap3::Mod::Replace(b"jpegPhoto".to_vec(), vals)],
        )
        .await
        .and_then(|r| r.success())
        .expect("replace jpegPhoto");
    let r = run(s, json!({"kind": "incremental"})).await;
    assert_eq!(
        (
            r["fetch"].as_str(),
            r["entries_seen"].as_u64(),
            r["counts"]["updated"].as_u64()
        ),
        (Some("content_sync"), Some(1), Some(1)),
        "{r}"
    );
    assert_eq!(
        photo_of(s, &id).await,
        (StatusCode::OK, "image/png".into(), PNG.to_vec())
    );
    let changed = &audit_of(s, &id).await[0];
    let photo = changed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "photo")
        .expect("photo change")
        .clone();
    assert_eq!(
        (
            photo["before"]["size"].as_u64(),
            photo["after"]["size"].as_u64()
        ),
        (Some(jpeg.len() as u64), Some(PNG.len() as u64)),
        "{photo}"
    );

    // Removed from the directory: removed from the profile.
    st.ldap
        .modify(
            &st.tree.person_dn("pia"),
            vec![ldap3::Mod::Delete(
                b"jpegPhoto".to_vec(),
                Default::default(),
            )],
        )
        .await
        .and_then(|r| r.success())
        .expect("delete jpegPhoto");
    let r = run(s, json!({"kind": "full"})).await;
    assert_eq!(r["counts"]["updated"], 1, "{r}");
    assert_eq!(emp(s, "pia@corp.example").await["photo_url"], Value::Null);
    assert_eq!(photo_of(s, &id).await.0, StatusCode::NOT_FOUND);
    st.server.stop().await;
}

#[test]
fn photo_and_photo_url_together_are_refused_naming_the_key() {
    let e = refused(
        r#"
[sources.attributes]
photo = "jpegPhoto"
photo_url = "labeledURI"
"#,
    );
    assert_eq!(e.key, "sources[0].attributes.photo", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_schedule_runs_the_source() {
    let mut st = setup_with("cron", None, None, |t| {
        replace_once(
            &t,
            "timeout_secs = 5",
            "timeout_secs = 5\nfull_schedule = \"*/1 * * * * *\"",
        )
    })
    .await;
    populate(&mut st).await;
    let s = &st.server;
    let mut seen = false;
    for _ in 0..50 {
        let (_, runs) = s.get("/api/v1/sync/runs?source=corp").await;
        if runs["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["trigger"] == "schedule" && r["outcome"] == "applied")
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "a scheduled run happened within 5 s");
    let (_, all) = s.get("/api/v1/employees?status=all").await;
    assert_eq!(all["total"], 10);
    st.server.stop().await;
}

#[test]
fn a_history_of_no_runs_is_refused_naming_the_key() {
    let e = refused(
        r#"
keep_runs = 0
"#,
    );
    assert_eq!(e.key, "sources[0].keep_runs", "{e}");
    assert!(e.to_string().contains("at least 1"), "{e}");
}

#[test]
fn invalid_cron_is_refused_at_start_naming_the_key() {
    let e = refused(
        r#"
full_schedule = "every tuesday"
"#,
    );
    assert_eq!(e.key, "sources[0].full_schedule", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rosterctl_sync_commands() {
    use crate::rosterctl::ctl;
    let mut st = setup_with("ctl", None, None, |t| {
        replace_once(&t, "max_deactivations = 100", "max_deactivations = 2")
    })
    .await;
    populate(&mut st).await;
    let s = &st.server;
    // Dry run prints the plan and changes nothing.
    let r = ctl(s, &["sync", "run", "corp", "--dry-run"]).await;
    r.assert_code(0);
    assert!(r.stdout.contains("dry_run"), "{}", r.stdout);
    assert!(
        r.stdout.contains("create") && r.stdout.contains("ana@corp.example"),
        "{}",
        r.stdout
    );
    let (_, all) = s.get("/api/v1/employees?status=all").await;
    assert_eq!(all["total"], 0);
    ctl(s, &["sync", "run", "corp"]).await.assert_code(0);
    for i in 0..3 {
        slapd::replace(
            &mut st.ldap,
            &st.tree.person_dn(&format!("p{i}")),
            "employeeType",
            &["disabled"],
        )
        .await;
    }
    let r = ctl(s, &["sync", "run", "corp", "--json"]).await;
    r.assert_code(0);
    let held = r.json();
    assert_eq!(held["outcome"], "held");
    let id = held["id"].as_u64().unwrap().to_string();
    let r = ctl(s, &["sync", "show", &id]).await;
    r.assert_code(0);
    assert!(
        r.stdout.contains("deactivate") && r.stdout.contains("p1@corp.example"),
        "{}",
        r.stdout
    );
    // Approval asks; without a terminal it refuses unless --yes.
    let r = ctl(s, &["sync", "approve", &id]).await;
    r.assert_code(2);
    let (_, active) = s.get("/api/v1/employees").await;
    assert_eq!(active["total"], 10);
    ctl(s, &["sync", "approve", &id, "--yes"])
        .await
        .assert_code(0);
    let (_, active) = s.get("/api/v1/employees").await;
    assert_eq!(active["total"], 7);
    let r = ctl(s, &["sync", "runs", "corp"]).await;
    r.assert_code(0);
    assert_eq!(
        r.stdout.lines().filter(|l| l.starts_with('#')).count(),
        3,
        "{}",
        r.stdout
    );
    let r = ctl(s, &["employees", "explain", "ana@corp.example"]).await;
    r.assert_code(0);
    assert!(r.stdout.contains("sync:corp"), "{}", r.stdout);
    assert!(r.stdout.contains("family_name"), "{}", r.stdout);
    st.server.stop().await;
}
