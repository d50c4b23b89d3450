//! `rosterctl`, the real binary, against a real rosterd: output, exit codes (1 refused,
//! 2 usage, 3 unreachable), the bulk confirmation, and that secrets stay out of its
//! output. Standard input is always a pipe here, never a terminal.

use std::path::Path;
use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::common::{TestServer, employee};

/// What a run of rosterctl left behind.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code: {self:#?}");
        self
    }
}

/// Options for one run: arguments, extra environment, standard input, directory.
struct Ctl<'a> {
    args: Vec<String>,
    env: Vec<(&'a str, String)>,
    stdin: Option<&'a str>,
    cwd: Option<&'a Path>,
}

impl<'a> Ctl<'a> {
    /// A run against `s`, authenticated with its token file.
    fn at(s: &TestServer, args: &[&str]) -> Self {
        let mut all = vec![
            "--url".to_string(),
            s.base.clone(),
            "--token-file".to_string(),
            s.token_file.display().to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        Self::bare(&all.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// A run with only the given arguments.
    fn bare(args: &[&str]) -> Self {
        Self {
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            stdin: None,
            cwd: None,
        }
    }

    fn stdin(mut self, input: &'a str) -> Self {
        self.stdin = Some(input);
        self
    }

    fn env(mut self, key: &'a str, value: impl Into<String>) -> Self {
        self.env.push((key, value.into()));
        self
    }

    fn cwd(mut self, dir: &'a Path) -> Self {
        self.cwd = Some(dir);
        self
    }

    async fn run(self) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rosterctl"));
        cmd.args(&self.args)
            .env_remove("ROSTERD_URL")
            .env_remove("ROSTERD_TOKEN")
            .env_remove("ROSTERD_TOKEN_FILE")
            .env_remove("ROSTERD_TIMEOUT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(dir) = self.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().expect("rosterctl starts");
        let mut stdin = child.stdin.take().expect("stdin pipe");
        if let Some(input) = self.stdin {
            stdin
                .write_all(input.as_bytes())
                .await
                .expect("write stdin");
        }
        drop(stdin);
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
                .await
                .expect("rosterctl finishes within 60s")
                .expect("rosterctl output");
        Run {
            code: out.status.code().expect("exited, not killed"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

pub async fn ctl(s: &TestServer, args: &[&str]) -> Run {
    Ctl::at(s, args).run().await
}

async fn get_employee(s: &TestServer, key: &str) -> Value {
    let (st, v) = s.get(&format!("/api/v1/employees/{key}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

/// Creates employees through the API; returns their ids.
async fn create_all(s: &TestServer, people: &[(&str, &str)]) -> Vec<String> {
    let mut ids = Vec::new();
    for (email, role) in people {
        let mut body = employee("Test", email.split('@').next().unwrap_or("x"), email);
        body["role"] = json!(role);
        ids.push(id_of(&s.create(body).await));
    }
    ids
}

/// A port on 127.0.0.1 nobody listens on (bound, then released).
fn unused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_with_two_positions_then_list_shows_it() {
    let s = TestServer::start().await;
    let r = ctl(
        &s,
        &[
            "employees",
            "add",
            "--given-name",
            "Ana",
            "--family-name",
            "Lopez",
            "--email",
            "ana.lopez@example.com",
            "--role",
            "dispatcher",
            "--position",
            "Driver",
            "--position",
            "crew lead",
            "--business-unit",
            "North",
            "--office-phone",
            "+1 555 0199",
            "--extension",
            "42",
        ],
    )
    .await;
    r.assert_code(0);
    let first = r.stdout.lines().next().expect("output");
    assert!(first.starts_with("id:"), "id first: {}", r.stdout);
    let id = first.trim_start_matches("id:").trim();
    let v = get_employee(&s, id).await;
    assert_eq!(v["positions"], json!(["Crew Lead", "Driver"]));
    assert_eq!(v["role"], "Dispatcher");
    assert_eq!(
        v["office_phone"],
        json!({"number": "+1 555 0199", "extension": "42"})
    );

    let r = ctl(&s, &["employees", "list"]).await;
    r.assert_code(0);
    let header = r.stdout.lines().next().expect("header");
    for col in [
        "ID",
        "NAME",
        "EMAIL",
        "ROLE",
        "POSITIONS",
        "BUSINESS UNIT",
        "ENABLED",
        "ACTIVE",
        "STATUS",
    ] {
        assert!(header.contains(col), "header lacks {col}: {header}");
    }
    let row = r
        .stdout
        .lines()
        .find(|l| l.contains("ana.lopez@example.com"))
        .unwrap_or_else(|| panic!("no row for Ana: {}", r.stdout));
    assert!(row.contains(id) && row.contains("Ana Lopez") && row.contains("Dispatcher"));
    assert!(
        row.contains("Crew Lead, Driver") && row.contains("North"),
        "{row}"
    );
    assert!(r.stdout.lines().any(|l| l == "1 employee"), "{}", r.stdout);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_json_parses_and_follows_every_page() {
    let s = TestServer::start().await;
    let people: Vec<(String, &str)> = (0..7)
        .map(|i| (format!("p{i}@example.com"), "Technician"))
        .collect();
    let refs: Vec<(&str, &str)> = people.iter().map(|(e, r)| (e.as_str(), *r)).collect();
    let ids = create_all(&s, &refs).await;

    // Pages of 2: rosterctl follows next_cursor to the end.
    let r = ctl(&s, &["employees", "list", "--json", "--page-size", "2"]).await;
    r.assert_code(0);
    let items = r.json();
    let got: std::collections::BTreeSet<String> =
        items.as_array().expect("array").iter().map(id_of).collect();
    assert_eq!(got, ids.iter().cloned().collect());

    // --limit stops early, across pages.
    let r = ctl(
        &s,
        &[
            "employees",
            "list",
            "--json",
            "--limit",
            "3",
            "--page-size",
            "2",
        ],
    )
    .await;
    r.assert_code(0);
    assert_eq!(r.json().as_array().expect("array").len(), 3);
    let r = ctl(&s, &["employees", "list", "--limit", "3"]).await;
    assert!(r.stdout.contains("3 employees (of 7)"), "{}", r.stdout);

    // A descending sort is a value, not a flag.
    let r = ctl(&s, &["employees", "list", "--json", "--sort", "-email"]).await;
    r.assert_code(0);
    let emails: Vec<String> = r
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v["email"].as_str().expect("email").to_string())
        .collect();
    let mut sorted = emails.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(emails, sorted);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivated_employees_show_under_the_inactive_filter() {
    let s = TestServer::start().await;
    let ids = create_all(
        &s,
        &[
            ("stay@example.com", "Technician"),
            ("leave@example.com", "Technician"),
        ],
    )
    .await;
    let r = ctl(&s, &["employees", "deactivate", "LEAVE@example.com"]).await;
    r.assert_code(0);
    assert!(r.stdout.starts_with("deactivated"), "{}", r.stdout);
    let r = ctl(&s, &["employees", "deactivate", &ids[1]]).await;
    r.assert_code(0);
    assert!(r.stdout.contains("already inactive"), "{}", r.stdout);

    let inactive = ctl(&s, &["employees", "list", "--inactive", "--json"]).await;
    inactive.assert_code(0);
    let list: Vec<String> = inactive
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(list, vec![ids[1].clone()]);
    let active = ctl(&s, &["employees", "list", "--json"]).await;
    let list: Vec<String> = active
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(list, vec![ids[0].clone()]);
    let all = ctl(&s, &["employees", "list", "--all", "--json"]).await;
    assert_eq!(all.json().as_array().expect("array").len(), 2);

    let r = ctl(&s, &["employees", "activate", "leave@example.com"]).await;
    r.assert_code(0);
    assert_eq!(get_employee(&s, &ids[1]).await["active"], true);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_without_yes_and_without_a_terminal_changes_nothing() {
    let s = TestServer::start().await;
    let ids = create_all(
        &s,
        &[
            ("t1@example.com", "Technician"),
            ("t2@example.com", "Technician"),
            ("d1@example.com", "Dispatcher"),
        ],
    )
    .await;
    let (_, before) = s.get("/api/v1/audit?limit=1000").await;
    let r = ctl(&s, &["bulk", "deactivate", "--filter", "role=Technician"]).await;
    r.assert_code(2);
    assert!(
        r.stderr.contains("--yes"),
        "says how to proceed: {}",
        r.stderr
    );
    assert!(r.stderr.contains("nothing was changed"), "{}", r.stderr);
    // The dry run was shown: both technicians, not the dispatcher.
    assert!(
        r.stdout.contains(&ids[0]) && r.stdout.contains(&ids[1]),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(&ids[2]), "{}", r.stdout);
    for id in &ids {
        assert_eq!(get_employee(&s, id).await["active"], true, "{id} changed");
    }
    let (_, after) = s.get("/api/v1/audit?limit=1000").await;
    assert_eq!(
        before["items"], after["items"],
        "no audit entries were added"
    );

    // --dry-run shows the same and exits 0, still changing nothing.
    let r = ctl(
        &s,
        &[
            "bulk",
            "deactivate",
            "--filter",
            "role=Technician",
            "--dry-run",
        ],
    )
    .await;
    r.assert_code(0);
    assert!(r.stdout.contains("2 will be deactivated"), "{}", r.stdout);
    assert_eq!(get_employee(&s, &ids[0]).await["active"], true);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_activate_with_yes_changes_them_and_says_so() {
    let s = TestServer::start().await;
    let mut ids = Vec::new();
    for email in ["i1@example.com", "i2@example.com"] {
        let mut body = employee("In", "Active", email);
        body["active"] = json!(false);
        ids.push(id_of(&s.create(body).await));
    }
    // Already active: listed, but not changed.
    let mut body = employee("Al", "Ready", "a1@example.com");
    body["role"] = json!("Technician");
    let already = id_of(&s.create(body).await);
    let other = create_all(&s, &[("v1@example.com", "Viewer")]).await;
    // Inactive, but another role: not touched.
    s.post(
        &format!("/api/v1/employees/{}/deactivate", other[0]),
        json!({}),
    )
    .await;

    let r = ctl(
        &s,
        &["bulk", "activate", "--filter", "role=technician", "--yes"],
    )
    .await;
    r.assert_code(0);
    assert!(
        r.stdout
            .contains("activated 2 employees, 1 already active, 0 failed"),
        "{}",
        r.stdout
    );
    for id in &ids {
        assert_eq!(get_employee(&s, id).await["active"], true);
        assert!(
            r.stdout
                .lines()
                .any(|l| l.contains(id.as_str()) && l.contains("activated"))
        );
    }
    assert!(
        r.stdout
            .lines()
            .any(|l| l.contains(&already) && l.contains("already active"))
    );
    assert_eq!(get_employee(&s, &other[0]).await["active"], false);

    // Running it again finds nothing to change.
    let r = ctl(
        &s,
        &["bulk", "activate", "--filter", "role=technician", "--yes"],
    )
    .await;
    r.assert_code(0);
    assert!(r.stdout.contains("nothing to change"), "{}", r.stdout);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_with_a_bad_id_fails_that_id_and_changes_the_others() {
    let s = TestServer::start().await;
    let ids = create_all(
        &s,
        &[
            ("b1@example.com", "Technician"),
            ("b2@example.com", "Technician"),
        ],
    )
    .await;
    let missing = uuid::Uuid::new_v4().to_string();
    let list = format!("{},not-an-id,{}", ids[0], ids[1]);
    let r = ctl(
        &s,
        &["bulk", "deactivate", "--ids", &list, &missing, "--yes"],
    )
    .await;
    r.assert_code(1);
    assert!(r.stdout.contains("deactivated 2 employees"), "{}", r.stdout);
    assert!(r.stdout.contains("2 failed"), "{}", r.stdout);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.contains("failed") && l.contains("not-an-id")),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr
            .contains("2 of 4 employees could not be deactivated"),
        "{}",
        r.stderr
    );
    for id in &ids {
        assert_eq!(get_employee(&s, id).await["active"], false);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_email_in_another_case_is_refused_naming_email() {
    let s = TestServer::start().await;
    s.create(employee("Ana", "Lopez", "ana@example.com")).await;
    let r = ctl(
        &s,
        &[
            "employees",
            "add",
            "--given-name",
            "Ann",
            "--family-name",
            "Other",
            "--email",
            "ANA@Example.COM",
        ],
    )
    .await;
    r.assert_code(1);
    assert!(
        r.stderr.starts_with("rosterctl: 409 conflict: email:"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    let (_, v) = s.get("/api/v1/employees?status=all").await;
    assert_eq!(v["total"], 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_role_is_refused_with_the_servers_422_message() {
    let s = TestServer::start().await;
    let r = ctl(
        &s,
        &[
            "employees",
            "add",
            "--given-name",
            "Pat",
            "--family-name",
            "Pilot",
            "--email",
            "pat@example.com",
            "--role",
            "Pilot",
        ],
    )
    .await;
    r.assert_code(1);
    assert!(r.stderr.contains("422"), "{}", r.stderr);
    assert!(
        r.stderr.contains("role") && r.stderr.contains("Pilot"),
        "{}",
        r.stderr
    );

    // A filter on an unknown column: the server's 400, with exit 1.
    let r = ctl(&s, &["employees", "list", "--filter", "shoe_size=9"]).await;
    r.assert_code(1);
    assert!(
        r.stderr.contains("400") && r.stderr.contains("shoe_size"),
        "{}",
        r.stderr
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_daemon_exits_3_naming_the_url() {
    let url = format!("http://127.0.0.1:{}", unused_port());
    let r = Ctl::bare(&["--url", &url, "--token", "x", "employees", "list"])
        .run()
        .await;
    r.assert_code(3);
    assert!(r.stderr.contains(&url), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_token_is_a_usage_error_saying_how_to_pass_one() {
    let s = TestServer::start().await;
    let empty = tempfile::tempdir().expect("tempdir");
    let r = Ctl::bare(&["--url", &s.base, "employees", "list"])
        .cwd(empty.path())
        .run()
        .await;
    r.assert_code(2);
    assert!(r.stderr.contains("./data/admin.token"), "{}", r.stderr);
    assert!(
        r.stderr.contains("--token") && r.stderr.contains("ROSTERD_TOKEN"),
        "{}",
        r.stderr
    );

    let missing = empty.path().join("nope.token");
    let r = Ctl::bare(&[
        "--url",
        &s.base,
        "--token-file",
        &missing.display().to_string(),
        "catalog",
    ])
    .run()
    .await;
    r.assert_code(2);
    assert!(r.stderr.contains("nope.token"), "{}", r.stderr);

    // A wrong token: the server says no (exit 1), and the token is not echoed.
    let r = Ctl::bare(&["--url", &s.base, "catalog"])
        .env("ROSTERD_TOKEN", "wrong-token-value")
        .run()
        .await;
    r.assert_code(1);
    assert!(r.stderr.contains("401"), "{}", r.stderr);
    assert!(!r.stderr.contains("wrong-token-value"), "{}", r.stderr);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_comes_from_env_or_the_default_file() {
    let s = TestServer::start().await;
    let r = Ctl::bare(&["--url", &s.base, "catalog", "--json"])
        .env("ROSTERD_TOKEN", s.token.clone())
        .run()
        .await;
    r.assert_code(0);
    assert!(r.json()["roles"].is_array());
    assert!(!r.stdout.contains(&s.token) && !r.stderr.contains(&s.token));

    // ./data/admin.token, relative to the working directory.
    let cwd = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(cwd.path().join("data")).expect("mkdir");
    std::fs::copy(&s.token_file, cwd.path().join("data/admin.token")).expect("copy");
    let r = Ctl::bare(&["catalog"])
        .env("ROSTERD_URL", s.base.clone())
        .cwd(cwd.path())
        .run()
        .await;
    r.assert_code(0);
    assert!(r.stdout.contains("Technician (default)"), "{}", r.stdout);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_from_stdin_sets_credentials_and_is_never_printed() {
    let s = TestServer::start().await;
    let password = "correct-Horse-battery-staple-42";
    let r = Ctl::at(
        &s,
        &[
            "employees",
            "add",
            "--given-name",
            "Cred",
            "--family-name",
            "Ential",
            "--email",
            "cred@example.com",
            "--status",
            "credentials",
            "--password-stdin",
        ],
    )
    .stdin(&format!("{password}\nsecond line is ignored\n"))
    .run()
    .await;
    r.assert_code(0);
    assert!(!r.stdout.contains(password) && !r.stderr.contains(password));
    assert!(
        r.stdout.contains("credentials (password set)"),
        "{}",
        r.stdout
    );
    let v = get_employee(&s, "cred@example.com").await;
    assert_eq!(v["account_status"], "credentials");
    assert_eq!(v["has_password"], true);

    // The server's policy refuses a short one; its message, not the password.
    let r = Ctl::at(
        &s,
        &["employees", "edit", "cred@example.com", "--password-stdin"],
    )
    .stdin("short\n")
    .run()
    .await;
    r.assert_code(1);
    assert!(r.stderr.contains("password"), "{}", r.stderr);
    assert!(!r.stdout.contains("short") && !r.stderr.contains("short\n"));

    // credentials without a password is a usage error; so is an empty stdin.
    let r = ctl(
        &s,
        &[
            "employees",
            "add",
            "--given-name",
            "No",
            "--family-name",
            "Pass",
            "--email",
            "nopass@example.com",
            "--status",
            "credentials",
        ],
    )
    .await;
    r.assert_code(2);
    assert!(r.stderr.contains("--password-stdin"), "{}", r.stderr);
    let r = ctl(
        &s,
        &[
            "employees",
            "add",
            "--given-name",
            "No",
            "--family-name",
            "Pass",
            "--email",
            "nopass@example.com",
            "--password-stdin",
        ],
    )
    .await;
    r.assert_code(2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_by_email_prints_the_profile_and_effective_permissions() {
    let s = TestServer::start().await;
    let mut body = employee("Sam", "Show", "sam.show@example.com");
    body["permissions"] = json!({"grant": ["reports.view"], "revoke": []});
    let id = id_of(&s.create(body).await);
    let r = ctl(&s, &["employees", "show", "Sam.Show@example.com"]).await;
    r.assert_code(0);
    let line = |key: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no {key}: line in {}", r.stdout))
            .to_string()
    };
    assert!(line("id").ends_with(&id));
    assert!(line("email").ends_with("sam.show@example.com"));
    let eff = line("effective_permissions");
    for p in ["jobs.view", "jobs.complete", "reports.view"] {
        assert!(eff.contains(p), "{eff}");
    }
    let r = ctl(&s, &["employees", "show", &id, "--json"]).await;
    r.assert_code(0);
    assert_eq!(r.json()["email"], "sam.show@example.com");

    let r = ctl(&s, &["employees", "show", "nobody@example.com"]).await;
    r.assert_code(1);
    assert!(r.stderr.contains("404"), "{}", r.stderr);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_by_email_sends_only_the_given_fields() {
    let s = TestServer::start().await;
    let mut body = employee("Eve", "Edit", "eve@example.com");
    body["positions"] = json!(["Driver"]);
    body["business_unit"] = json!("North");
    body["mobile_phone"] = json!("+1 555 0100");
    body["office_phone"] = json!({"number": "+1 555 0199", "extension": "1"});
    body["permissions"] = json!({"grant": ["reports.view"], "revoke": []});
    let id = id_of(&s.create(body).await);
    let r = ctl(
        &s,
        &[
            "employees",
            "edit",
            "EVE@example.com",
            "--add-position",
            "Mechanic",
            "--remove-position",
            "driver",
            "--clear-business-unit",
            "--extension",
            "42",
            "--revoke",
            "jobs.complete",
            "--disable",
            "--json",
        ],
    )
    .await;
    r.assert_code(0);
    let v = get_employee(&s, &id).await;
    assert_eq!(v["positions"], json!(["Mechanic"]));
    assert_eq!(v["business_unit"], Value::Null);
    assert_eq!(v["mobile_phone"], "+1 555 0100", "untouched");
    assert_eq!(
        v["office_phone"],
        json!({"number": "+1 555 0199", "extension": "42"})
    );
    assert_eq!(
        v["permissions"],
        json!({"grant": ["reports.view"], "revoke": ["jobs.complete"]}),
        "merged into the overrides it had"
    );
    assert_eq!(v["enabled"], false);
    assert_eq!(r.json()["version"], v["version"]);

    let r = ctl(&s, &["employees", "edit", &id]).await;
    r.assert_code(2);
    assert!(r.stderr.contains("nothing to change"), "{}", r.stderr);

    let r = ctl(&s, &["audit", "--employee", "eve@example.com", "--json"]).await;
    r.assert_code(0);
    let actions: Vec<String> = r
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["action"].as_str().expect("action").to_string())
        .collect();
    assert_eq!(actions, vec!["update", "create"]);
    let r = ctl(&s, &["audit", "--employee", "eve@example.com"]).await;
    r.assert_code(0);
    assert!(
        r.stdout.contains("admin:") && r.stdout.contains("positions:"),
        "{}",
        r.stdout
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_before_any_request() {
    // No server at all: these never get as far as a request.
    let url = format!("http://127.0.0.1:{}", unused_port());
    for args in [
        vec!["employees", "list", "--filter", "role"],
        vec!["employees", "list", "--filter", "status=inactive"],
        vec!["employees", "list", "--inactive", "--all"],
        vec!["bulk", "deactivate"],
        vec![
            "bulk",
            "deactivate",
            "--ids",
            "x",
            "--filter",
            "role=Viewer",
        ],
        vec!["employees", "nope"],
    ] {
        let mut all = vec!["--url", url.as_str(), "--token", "x"];
        all.extend(args.iter().copied());
        let r = Ctl::bare(&all).run().await;
        assert_eq!(r.code, 2, "{args:?}: {r:#?}");
    }
    let r = Ctl::bare(&["--url", "localhost:8080", "--token", "x", "catalog"])
        .run()
        .await;
    r.assert_code(2);
    assert!(r.stderr.contains("http://"), "{}", r.stderr);
}
