//! One roster fed by LDAP (a real slapd) and an HR export (CSV): joins, field
//! precedence by priority, effective dates in the source's time zone with a
//! fixed clock, managers, and `explain`.

use chrono::{TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::json;

use crate::common::{TestServer, employee_json as emp, run_applied as run};
use crate::slapd::{self, ADMIN_DN, ADMIN_PW, Tree};

const HR_CSV: &str = "\
Employee ID,Work Email,First Name,Last Name,Employee Number,Department,Status,Hire Date,Termination Date,Manager ID
E1,ANA@corp.example,Anastasia,Alvarez,1001,South,Active,2019-03-01,,
E2,dev@corp.example,Dev,Dunn,1002,North,Active,2026-12-01,,E1
E3,gone@corp.example,Gus,Gone,1003,North,Terminated,2015-01-01,2026-10-31,
E4,ben@corp.example,Ben,Brooks,1004,South,Active,2020-05-01,2026-11-30,E1
E5,,Bo,Broken,1005,North,Active,2020-01-01,,
E6,eve@corp.example,Eve,Early,1006,North,Active,not-a-date,,
";

fn hr_toml(csv: &std::path::Path) -> String {
    format!(
        r#"
[[sources]]
id = "hr"
kind = "csv"
priority = 20
timezone = "Europe/Berlin"
path = "{csv}"
join_key = "Employee ID"
max_deactivations = 100
max_deactivations_percent = 100.0
[sources.fields]
email = "Work Email"
given_name = "First Name"
family_name = "Last Name"
employee_number = "Employee Number"
manager = "Manager ID"
hire_date = {{ from = "Hire Date", format = "%Y-%m-%d" }}
termination_date = {{ from = "Termination Date", format = "%Y-%m-%d" }}
status = {{ from = "Status", inactive = ["Terminated"] }}
business_unit = {{ from = "Department", map = {{ "North" = "North", "South" = "South" }} }}
"#,
        csv = csv.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_and_hr_on_one_roster() {
    let sl = slapd::slapd().await;
    let mut ldap = slapd::admin(sl.port).await;
    let tree = Tree::new(&mut ldap, "multi").await;
    tree.person(
        &mut ldap,
        "ana",
        "Ana",
        "Alvarez",
        "ana@corp.example",
        &[("departmentNumber", &["100"]), ("mobile", &["+1 555 0101"])],
    )
    .await;
    tree.person(
        &mut ldap,
        "ben",
        "Benjamin",
        "Brooks",
        "ben@corp.example",
        &[],
    )
    .await;
    tree.group(&mut ldap, "drivers", &[tree.person_dn("ana")])
        .await;
    let pw_file = sl.dir.join("pw-multi");
    std::fs::write(&pw_file, ADMIN_PW).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("hr.csv");
    std::fs::write(&csv, HR_CSV).unwrap();
    let ldap_toml =
        crate::ldap_sync::source_toml(&tree, sl.port, &pw_file, ADMIN_DN, "priority = 10");
    let s = TestServer::start_with(&format!("{ldap_toml}\n{}", hr_toml(&csv))).await;
    // A fixed clock: Friday 27 November 2026, noon UTC.
    s.sync()
        .set_clock(Some(Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()));

    // LDAP first: Ana and Ben from the directory.
    let r = run(&s, "corp").await;
    assert_eq!(r["counts"]["created"], 2, "{r}");
    let ana = emp(&s, "ana@corp.example").await;
    assert_eq!(ana["given_name"], "Ana");
    assert_eq!(ana["business_unit"], "North");

    // Then HR: joins Ana and Ben by email (case-insensitive), creates the future
    // hire inactive, does not import the leaver, reports the broken rows.
    let r = run(&s, "hr").await;
    assert_eq!(r["counts"]["created"], 1, "{r}");
    assert_eq!(r["counts"]["updated"], 2, "{r}");
    let errors = r["errors"].to_string();
    assert!(
        errors.contains("line 6"),
        "malformed row reported by line: {r}"
    );
    assert!(errors.contains("not-a-date"), "bad date reported: {r}");
    let (_, all) = s.get("/api/v1/employees?status=all&limit=100").await;
    assert_eq!(all["total"], 3, "{all}");
    assert!(
        !all.to_string().contains("gone@corp.example"),
        "leaver not imported"
    );

    // Precedence: HR (20) wins the fields it maps; LDAP (10) keeps the others.
    let ana = emp(&s, "ana@corp.example").await;
    assert_eq!(ana["given_name"], "Anastasia", "{ana}");
    assert_eq!(ana["business_unit"], "South", "{ana}");
    assert_eq!(ana["mobile_phone"], "+1 555 0101", "LDAP's field stays");
    assert_eq!(ana["positions"], json!(["Driver"]), "LDAP's positions stay");
    assert_eq!(ana["enterprise"]["employee_number"], "1001");
    assert!(ana["source_keys"]["corp"].is_string() && ana["source_keys"]["hr"] == "E1");
    // LDAP again: does not take the fields back.
    let r = run(&s, "corp").await;
    assert_eq!(r["counts"]["updated"], 0, "{r}");
    assert_eq!(emp(&s, "ana@corp.example").await["given_name"], "Anastasia");

    // An admin edit to a field HR owns lasts until HR's next run.
    let id = ana["id"].as_str().unwrap().to_string();
    let (st, v) = s
        .patch(
            &format!("/api/v1/employees/{id}"),
            json!({"given_name": "Annie"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    run(&s, "hr").await;
    assert_eq!(emp(&s, &id).await["given_name"], "Anastasia");

    // explain: who owns which field, who set it.
    let (_, x) = s.get(&format!("/api/v1/employees/{id}/explain")).await;
    assert_eq!(x["owners"]["given_name"][0]["source"], "hr", "{x}");
    assert_eq!(x["owners"]["given_name"][1]["source"], "corp", "{x}");
    assert_eq!(
        x["owners"]["mobile_phone"],
        json!([{"source": "corp", "priority": 10}])
    );
    assert_eq!(x["fields"]["given_name"]["set_by"]["name"], "hr", "{x}");
    let out = crate::rosterctl::ctl(&s, &["employees", "explain", &id]).await;
    out.assert_code(0);
    assert!(
        out.stdout.contains("given_name")
            && out
                .stdout
                .contains("hr (priority 20), over corp (priority 10)"),
        "{}",
        out.stdout
    );

    // Managers: Dev and Ben report to Ana (E1), resolved to her profile id.
    let dev = emp(&s, "dev@corp.example").await;
    assert_eq!(dev["enterprise"]["manager"], id.as_str(), "{dev}");
    // The future hire is inactive until local midnight of 1 December in Berlin.
    assert_eq!(dev["active"], false, "{dev}");
    let ben = emp(&s, "ben@corp.example").await;
    assert_eq!(ben["active"], true, "terminates on the 30th: still active");

    // 29 Nov 22:30 UTC is the 29th in UTC and 23:30 in Berlin: nothing yet.
    s.sync()
        .set_clock(Some(Utc.with_ymd_and_hms(2026, 11, 29, 22, 30, 0).unwrap()));
    s.sync().tick().await.unwrap();
    assert_eq!(emp(&s, "ben@corp.example").await["active"], true);
    // 23:00 UTC is midnight in Berlin: the 30th has begun there.
    s.sync()
        .set_clock(Some(Utc.with_ymd_and_hms(2026, 11, 29, 23, 0, 0).unwrap()));
    assert_eq!(s.sync().tick().await.unwrap(), 1);
    let ben = emp(&s, "ben@corp.example").await;
    assert_eq!(ben["active"], false, "{ben}");
    assert_eq!(ben["deactivated_by"]["name"], "hr", "{ben}");
    // An LDAP run does not bring him back: HR decides the lifecycle too.
    let r = run(&s, "corp").await;
    assert_eq!(r["counts"]["activated"], 0, "{r}");
    assert_eq!(emp(&s, "ben@corp.example").await["active"], false);

    // 1 December, Berlin midnight: Dev starts.
    s.sync()
        .set_clock(Some(Utc.with_ymd_and_hms(2026, 11, 30, 23, 0, 0).unwrap()));
    assert_eq!(s.sync().tick().await.unwrap(), 1);
    assert_eq!(emp(&s, "dev@corp.example").await["active"], true);

    // A re-run of both with nothing changed writes nothing.
    let before = s.get("/api/v1/audit?limit=1000").await.1["items"]
        .as_array()
        .unwrap()
        .len();
    let r = run(&s, "hr").await;
    assert_eq!(r["counts"]["updated"], 0, "{r}");
    run(&s, "corp").await;
    let after = s.get("/api/v1/audit?limit=1000").await.1["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after, "no audit entries for a no-change re-run");
    s.stop().await;
}

/// A manager named by email who is not on the roster yet is kept as
/// unresolved, reported, and resolved by the tick once the profile exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_manager_is_kept_and_resolved_later() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("hr.csv");
    std::fs::write(
        &csv,
        "Employee ID,Work Email,First Name,Last Name,Status,Manager\n\
         E1,ivy@corp.example,Ivy,Ito,Active,boss@corp.example\n",
    )
    .unwrap();
    let toml = format!(
        r#"
[[sources]]
id = "hr"
kind = "csv"
path = "{csv}"
join_key = "Employee ID"
[sources.fields]
email = "Work Email"
given_name = "First Name"
family_name = "Last Name"
manager = "Manager"
status = {{ from = "Status", inactive = ["Terminated"] }}
"#,
        csv = csv.display()
    );
    let s = TestServer::start_with(&toml).await;
    let r = run(&s, "hr").await;
    assert!(
        r["errors"]
            .to_string()
            .contains("manager `boss@corp.example` is not on the roster yet"),
        "{r}"
    );
    let ivy = emp(&s, "ivy@corp.example").await;
    assert!(ivy["enterprise"]["manager"].is_null(), "{ivy}");
    assert_eq!(
        ivy["source_facts"]["hr"]["unresolved_manager"],
        "boss@corp.example"
    );
    // The boss arrives by another way (an admin); the tick links them.
    let boss = s
        .create(crate::common::employee("Bo", "Boss", "boss@corp.example"))
        .await;
    assert_eq!(s.sync().tick().await.unwrap(), 1);
    let ivy = emp(&s, "ivy@corp.example").await;
    assert_eq!(ivy["enterprise"]["manager"], boss["id"], "{ivy}");
    assert!(ivy["source_facts"].is_null(), "nothing left pending: {ivy}");
    // The next run agrees and writes nothing.
    let r = run(&s, "hr").await;
    assert_eq!(r["counts"]["updated"], 0, "{r}");
    assert_eq!(r["errors"], json!([]), "{r}");
    s.stop().await;
}
