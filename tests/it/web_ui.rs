//! The web console in a real browser: Debian's chromium driven through
//! chromedriver (WebDriver, thirtyfour) against an in-process rosterd, plus
//! HTTP-level checks of the same pages with reqwest where no browser is needed.
//!
//! One chromedriver serves the whole test binary (started on first use on a
//! free port, killed at exit like the shared slapd); each browser test has its
//! own headless chromium with a fresh profile, one at a time (2 cores). Waits
//! are bounded polls of the page's state, never fixed sleeps. Screenshots of
//! each screen go to `target/screenshots/`.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use thirtyfour::prelude::*;

use crate::common::TestServer;
use crate::support::process::free_port;

const PASSWORD: &str = "Correct-Horse-42-battery";
const WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

// ---- the shared chromedriver ------------------------------------------------

struct Chromedriver {
    port: u16,
}

static DRIVER: OnceLock<Chromedriver> = OnceLock::new();
/// One browser at a time.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn chromedriver() -> &'static Chromedriver {
    DRIVER.get_or_init(|| {
        let port = free_port();
        std::fs::create_dir_all(target_dir()).unwrap();
        let log = target_dir().join("chromedriver.log");
        let child = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; scripts/test.sh installs it)");
        crate::support::process::kill_at_exit(child.id());
        assert!(
            crate::support::process::wait_for_port(port, WAIT),
            "chromedriver did not listen on port {port}; see {}",
            log.display()
        );
        Chromedriver { port }
    })
}

/// A headless chromium of one test's own (fresh profile), quit on [`Browser::quit`].
struct Browser {
    driver: WebDriver,
    base: String,
    _profile: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Browser {
    async fn start(base: &str) -> Self {
        let turn = BROWSER.lock().await;
        let profile = tempfile::tempdir().unwrap();
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary("/usr/bin/chromium").unwrap();
        for arg in [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--window-size=1280,900",
            "--force-device-scale-factor=1",
            "--lang=en-US",
        ] {
            caps.add_arg(arg).unwrap();
        }
        caps.add_arg(&format!("--user-data-dir={}", profile.path().display()))
            .unwrap();
        let url = format!("http://127.0.0.1:{}", chromedriver().port);
        let driver = WebDriver::new(url, caps).await.expect("a chromium session");
        Browser {
            driver,
            base: base.to_string(),
            _profile: profile,
            _turn: turn,
        }
    }

    async fn open(&self, path: &str) {
        self.driver
            .goto(format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    async fn css(&self, sel: &str) -> WebElement {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(e) = self.driver.find(By::Css(sel)).await {
                return e;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no `{sel}` on {}",
                self.driver.current_url().await.unwrap()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the page's body contains `text`.
    async fn wait_text(&self, text: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(b) = self.driver.find(By::Tag("body")).await
                && b.text().await.unwrap_or_default().contains(text)
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no text `{text}` on {}",
                self.driver.current_url().await.unwrap()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn fill(&self, sel: &str, text: &str) {
        let e = self.css(sel).await;
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    async fn click(&self, sel: &str) {
        self.css(sel).await.click().await.unwrap();
    }

    /// The names in the Employees table, in order.
    async fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in self
            .driver
            .find_all(By::Css("#employees tbody td.name"))
            .await
            .unwrap()
        {
            out.push(e.text().await.unwrap());
        }
        out
    }

    async fn shot(&self, name: &str) {
        let dir = target_dir().join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        self.driver
            .screenshot(&dir.join(format!("{name}.png")))
            .await
            .unwrap();
    }

    /// Runs axe-core (WCAG 2 A/AA, 2.1 AA, 2.2 AA) on the page as it is now and
    /// fails on any violation. axe-core comes from npm through
    /// `scripts/test.sh` (`AXE_CORE_JS`); without it the check is skipped,
    /// except in CI.
    async fn axe(&self, screen: &str) {
        let Some(path) = std::env::var_os("AXE_CORE_JS") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs scripts/test.sh, which sets AXE_CORE_JS"
            );
            eprintln!("AXE_CORE_JS not set (./scripts/test.sh sets it): no axe check of {screen}");
            return;
        };
        let src = std::fs::read_to_string(path).unwrap();
        let script = format!(
            "{src}\n;const done = arguments[arguments.length - 1];\
             axe.run(document, {{runOnly: {{type: 'tag', values: \
             ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}}}})\
             .then(r => done(r.violations.map(v => ({{id: v.id, help: v.help, \
             nodes: v.nodes.map(n => n.target.join(' '))}}))))\
             .catch(e => done(String(e)));"
        );
        let r = self.driver.execute_async(script, vec![]).await.unwrap();
        assert_eq!(r.json(), &json!([]), "axe-core violations on {screen}");
    }

    async fn sign_in(&self, login: &str, password: &str) {
        self.open("/sign-in").await;
        self.fill("#login", login).await;
        self.fill("#password", password).await;
        self.click("#sign-in").await;
        self.css("#employees").await;
    }

    async fn quit(self) {
        self.driver.quit().await.unwrap();
    }
}

// ---- roster helpers -----------------------------------------------------------

/// Creates a profile with a username and password and returns its id.
async fn person(s: &TestServer, given: &str, family: &str, role: &str) -> String {
    let email = format!(
        "{}.{}@example.com",
        given
            .to_lowercase()
            .replace(|c: char| !c.is_alphanumeric(), ""),
        family
            .to_lowercase()
            .replace(|c: char| !c.is_alphanumeric(), "")
    );
    let v = s
        .create(json!({
            "given_name": given, "family_name": family, "email": email, "role": role,
            "account_status": "credentials", "username": email, "password": PASSWORD,
        }))
        .await;
    v["id"].as_str().unwrap().to_string()
}

async fn active(s: &TestServer, id: &str) -> bool {
    let (st, v) = s.get(&format!("/api/v1/employees/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["active"].as_bool().unwrap()
}

/// The live link the mail worker would mint for the newest message to `id`.
fn link_token(s: &TestServer, id: &str) -> String {
    let roster = s.roster();
    let m = roster
        .outbox(false)
        .unwrap()
        .into_iter()
        .rfind(|m| m.employee_id.to_string() == id)
        .expect("a queued message");
    let (token, _) = roster.mint_link(&m).unwrap().expect("the message applies");
    token.expose().to_string()
}

// ---- browser tests --------------------------------------------------------------

/// A manager signs in; the default list is the active profiles, the Inactive
/// filter the inactive ones; a column filter and sorting both ways; three
/// employees deactivated through the confirmation dialog, audited as the
/// manager; a `<script>` name stays text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_lists_filters_sorts_and_bulk_deactivates() {
    let s = TestServer::start().await;
    let manager = person(&s, "Maria", "Manager", "Administrator").await;
    let mut techs = Vec::new();
    for (g, f) in [
        ("Ada", "Lovelace"),
        ("Brian", "Kernighan"),
        ("Carla", "Bruni"),
        ("Dennis", "Ritchie"),
        ("<script>alert(1)</script>", "Hacker"),
    ] {
        techs.push(person(&s, g, f, "Technician").await);
    }
    let gone = person(&s, "Olga", "Oldtimer", "Technician").await;
    let (st, _) = s
        .post(&format!("/api/v1/employees/{gone}/deactivate"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);

    let b = Browser::start(&s.base).await;
    b.sign_in("maria.manager@example.com", PASSWORD).await;
    b.shot("employees-list").await;
    b.axe("the list").await;
    let names = b.names().await;
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(!names.iter().any(|n| n.contains("Olga")), "{names:?}");
    // Shown as text: the name's characters, and no script element of it.
    assert!(
        names
            .iter()
            .any(|n| n == "<script>alert(1)</script> Hacker"),
        "{names:?}"
    );
    let scripts = b
        .driver
        .execute("return document.querySelectorAll('script').length", vec![])
        .await
        .unwrap();
    assert_eq!(scripts.json(), &json!(1));

    // The Inactive filter.
    b.click("#status-inactive").await;
    b.click("#apply-filters").await;
    b.wait_text("Showing 1–1 of 1").await;
    assert_eq!(b.names().await, vec!["Olga Oldtimer"]);
    assert!(
        b.driver
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains("status=inactive")
    );
    b.shot("employees-inactive").await;

    // A column filter, then sort by name both ways.
    b.click("#status-active").await;
    b.fill("#filter-role", "technician").await;
    b.click("#apply-filters").await;
    b.wait_text("Showing 1–5 of 5").await;
    let asc = b.names().await;
    let mut sorted = asc.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    assert_eq!(asc, sorted);
    let th = b.css("#employees th[aria-sort]").await;
    assert_eq!(
        th.attr("aria-sort").await.unwrap().as_deref(),
        Some("ascending")
    );
    b.click("#employees th[aria-sort] button").await;
    b.css("#employees th[aria-sort=descending]").await;
    let desc = b.names().await;
    sorted.reverse();
    assert_eq!(desc, sorted);
    assert!(
        b.driver
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains("sort=-name")
    );
    b.shot("employees-filtered-sorted").await;
    b.axe("the filtered list").await;

    // Bulk: select three, Deactivate, confirm in the dialog.
    b.open("/employees").await;
    for id in &techs[..3] {
        b.click(&format!("input[name=id][value='{id}']")).await;
    }
    b.wait_text("3 selected").await;
    let select_page = b.css("#select-page").await;
    assert_eq!(
        select_page.prop("indeterminate").await.unwrap().as_deref(),
        Some("true")
    );
    let action = b.css("#bulk-action").await;
    thirtyfour::components::SelectElement::new(&action)
        .await
        .unwrap()
        .select_by_value("deactivate")
        .await
        .unwrap();
    b.click("#bulk-apply").await;
    b.css("dialog#confirm-dialog[open] #confirm-button").await;
    b.wait_text("3 will change, 0 will be skipped").await;
    b.shot("bulk-confirm-dialog").await;
    b.axe("the open dialog").await;
    for id in &techs[..3] {
        assert!(active(&s, id).await, "nothing changes before confirming");
    }
    b.click("dialog#confirm-dialog[open] #confirm-button").await;
    b.wait_text("3 changed, 0 skipped").await;
    b.shot("bulk-result").await;
    for id in &techs[..3] {
        assert!(!active(&s, id).await);
    }
    assert!(active(&s, &techs[3]).await);
    let (_, audit) = s.get(&format!("/api/v1/audit?employee={}", techs[0])).await;
    let last = &audit["items"][0];
    assert_eq!(last["actor"]["kind"], "employee", "{audit}");
    assert_eq!(
        last["actor"]["name"],
        format!("{manager} Maria Manager"),
        "{audit}"
    );
    b.quit().await;
    s.stop().await;
}

/// The invitation page sets a username and password and the employee can then
/// sign in; as a view-only Dispatcher they see no change controls. A reset link
/// works once; the second time the page says it no longer works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_and_reset_pages_then_view_only_sign_in() {
    let s = TestServer::start().await;
    let v = s
        .create(json!({
            "given_name": "Ivy", "family_name": "Invited", "email": "ivy@example.com",
            "role": "Dispatcher", "account_status": "invite",
        }))
        .await;
    let id = v["id"].as_str().unwrap().to_string();
    let token = link_token(&s, &id);

    let b = Browser::start(&s.base).await;
    b.open(&format!("/accept-invite?token={token}")).await;
    b.wait_text("The password needs:").await;
    b.shot("accept-invite").await;
    b.axe("the invite page").await;
    b.fill("#username", "ivy").await;
    b.fill("#password", "short").await;
    b.fill("#password_again", "short").await;
    b.click("#submit").await;
    b.css("#password-error").await;
    assert_eq!(
        b.css("#username")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("ivy")
    );
    b.shot("accept-invite-error").await;
    b.axe("the invite form with errors").await;
    b.fill("#password", PASSWORD).await;
    b.fill("#password_again", PASSWORD).await;
    b.click("#submit").await;
    b.wait_text("Your account is set up").await;
    b.shot("accept-invite-done").await;

    b.sign_in("ivy", PASSWORD).await;
    b.shot("employees-view-only").await;
    assert!(
        b.driver.find(By::Css("#bulk")).await.is_err(),
        "no bulk form"
    );
    assert!(
        b.driver
            .find_all(By::Css("input[type=checkbox]"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        b.driver
            .find_all(By::Css("form[method=post]:not(.signout)"))
            .await
            .unwrap()
            .is_empty()
    );

    // A reset link, used twice.
    let (st, out) = s
        .post(
            "/api/v1/employees/bulk",
            json!({"action": "send_password_reset", "ids": [id]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{out}");
    let token = link_token(&s, &id);
    b.open(&format!("/reset-password?token={token}")).await;
    b.shot("reset-password").await;
    b.fill("#password", "Another-Good-Pass-77").await;
    b.fill("#password_again", "Another-Good-Pass-77").await;
    b.click("#submit").await;
    b.wait_text("Your password is changed").await;
    b.open(&format!("/reset-password?token={token}")).await;
    b.wait_text("This link no longer works").await;
    b.wait_text("Ask for a new password reset").await;
    b.shot("reset-password-used").await;
    b.axe("the used-link page").await;
    b.quit().await;
    s.stop().await;
}

/// Bulk Send account invite in the browser, a real SMTP server receives the
/// mail, the browser opens its link and sets a password, and the invited
/// employee signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_invite_by_mail_then_the_link_sets_up_the_account() {
    let tmp = tempfile::tempdir().unwrap();
    let smtp = crate::smtp::Smtp::start(crate::smtp::free_port(), &tmp.path().join("mail"));
    let s = TestServer::start_with(&crate::mail::mail_toml(smtp.port, "")).await;
    person(&s, "Maria", "Manager", "Administrator").await;
    let v = s
        .create(json!({
            "given_name": "Nina", "family_name": "New", "email": "nina@example.com",
            "role": "Dispatcher", "account_status": "later",
        }))
        .await;
    let id = v["id"].as_str().unwrap().to_string();

    let b = Browser::start(&s.base).await;
    b.sign_in("maria.manager@example.com", PASSWORD).await;
    b.click(&format!("input[name=id][value='{id}']")).await;
    let action = b.css("#bulk-action").await;
    thirtyfour::components::SelectElement::new(&action)
        .await
        .unwrap()
        .select_by_value("send_invite")
        .await
        .unwrap();
    b.click("#bulk-apply").await;
    b.css("dialog#confirm-dialog[open] #confirm-button").await;
    b.click("dialog#confirm-dialog[open] #confirm-button").await;
    b.wait_text("1 changed, 0 skipped").await;

    let m = smtp.wait_for_to("nina@example.com").await;
    let text = m["text"].as_str().unwrap();
    let start = text
        .find("/accept-invite?token=")
        .expect("an invitation link");
    let path: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    b.open(&path).await;
    b.fill("#username", "nina").await;
    b.fill("#password", PASSWORD).await;
    b.fill("#password_again", PASSWORD).await;
    b.click("#submit").await;
    b.wait_text("Your account is set up").await;
    b.sign_in("nina", PASSWORD).await;
    b.wait_text("Signed in as Nina New").await;
    assert!(
        b.driver.find(By::Css("#bulk")).await.is_err(),
        "a Dispatcher only views"
    );
    b.quit().await;
    s.stop().await;
}

/// Waits until `path` (a view of the Employees screen, in the browser) lists
/// exactly `want` (names in the table's order): reloads it, bounded.
async fn wait_names(b: &Browser, path: &str, want: &[&str]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        b.open(path).await;
        b.css("#employees").await;
        let names = b.names().await;
        if names == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} lists {names:?}, not {want:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The text of column `class` in the row of `name`.
async fn cell(b: &Browser, name: &str, class: &str) -> String {
    for row in b
        .driver
        .find_all(By::Css("#employees tbody tr"))
        .await
        .unwrap()
    {
        let n = row
            .find(By::Css("td.name"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if n == name {
            return row
                .find(By::Css(format!("td.{class}")))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
        }
    }
    panic!("no row for {name}");
}

/// Profiles an HR source (a CSV export) owns and profiles made by hand: the
/// Source filter tells them apart. A real invitation mail goes out to one of
/// them (a real SMTP server receives it): the Last mail filter then finds it
/// as sent; with the SMTP server stopped, a second invitation stays queued.
/// The filters are in the URL and in the CSV export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_by_owning_source_and_by_last_mail_after_a_real_invitation() {
    let tmp = tempfile::tempdir().unwrap();
    let mut smtp = crate::smtp::Smtp::start(crate::smtp::free_port(), &tmp.path().join("mail"));
    let csv = tmp.path().join("hr.csv");
    std::fs::write(
        &csv,
        "Employee ID,First Name,Last Name,Work Email\n\
         E1,Hana,Hr,hana.hr@example.com\n\
         E2,Hugo,Hr,hugo.hr@example.com\n\
         E3,Hilde,Hr,hilde.hr@example.com\n",
    )
    .unwrap();
    let source = format!(
        r#"
[[sources]]
id = "hr"
kind = "csv"
path = "{}"
join_key = "Employee ID"
max_deactivations = 100
max_deactivations_percent = 100.0
[sources.fields]
email = "Work Email"
given_name = "First Name"
family_name = "Last Name"
"#,
        csv.display()
    );
    let s = TestServer::start_with(&format!(
        "{}\n{source}",
        crate::mail::mail_toml(smtp.port, "")
    ))
    .await;
    person(&s, "Maria", "Manager", "Administrator").await;
    person(&s, "Mona", "Manual", "Technician").await;
    let (st, run) = s.post("/api/v1/sync/sources/hr/run", json!({})).await;
    assert_eq!(st, StatusCode::OK, "{run}");
    let (_, hugo) = s.get("/api/v1/employees/hugo.hr@example.com").await;
    let hugo = hugo["id"].as_str().unwrap().to_string();

    let b = Browser::start(&s.base).await;
    b.sign_in("maria.manager@example.com", PASSWORD).await;
    // By owning source, chosen in the form; the view is in the URL.
    let source_select = b.css("#filter-source").await;
    thirtyfour::components::SelectElement::new(&source_select)
        .await
        .unwrap()
        .select_by_value("hr")
        .await
        .unwrap();
    b.click("#apply-filters").await;
    b.wait_text("Showing 1–3 of 3").await;
    assert_eq!(b.names().await, vec!["Hana Hr", "Hilde Hr", "Hugo Hr"]);
    assert!(
        b.driver
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains("source=hr")
    );
    assert_eq!(cell(&b, "Hana Hr", "source").await, "hr");
    b.shot("employees-by-source").await;
    b.axe("the list filtered by source").await;
    wait_names(
        &b,
        "/employees?source=none",
        &["Maria Manager", "Mona Manual"],
    )
    .await;
    assert_eq!(cell(&b, "Mona Manual", "source").await, "Not synced");

    // A real invitation to Hugo, from the browser: sent, then found as sent.
    b.open("/employees?source=hr").await;
    b.click(&format!("input[name=id][value='{hugo}']")).await;
    let action = b.css("#bulk-action").await;
    thirtyfour::components::SelectElement::new(&action)
        .await
        .unwrap()
        .select_by_value("send_invite")
        .await
        .unwrap();
    b.click("#bulk-apply").await;
    b.click("dialog#confirm-dialog[open] #confirm-button").await;
    b.wait_text("1 changed, 0 skipped").await;
    smtp.wait_for_to("hugo.hr@example.com").await;
    wait_names(&b, "/employees?mail_status=sent", &["Hugo Hr"]).await;
    assert_eq!(cell(&b, "Hugo Hr", "mail").await, "Sent");
    let mail_select = b.css("#filter-mail_status").await;
    assert_eq!(
        mail_select.prop("value").await.unwrap().as_deref(),
        Some("sent"),
        "the form shows the view's filter"
    );
    b.shot("employees-mail-sent").await;
    b.axe("the list filtered by mail status").await;

    // The SMTP server stops: Hana's invitation stays queued (retried).
    smtp.stop();
    let (_, hana) = s.get("/api/v1/employees/hana.hr@example.com").await;
    let (st, out) = s
        .post(
            "/api/v1/employees/bulk",
            json!({"action": "send_invite", "ids": [hana["id"]]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{out}");
    wait_names(&b, "/employees?mail_status=queued", &["Hana Hr"]).await;
    assert_eq!(cell(&b, "Hana Hr", "mail").await, "Queued");
    wait_names(&b, "/employees?mail_status=none&source=hr", &["Hilde Hr"]).await;
    assert_eq!(cell(&b, "Hilde Hr", "mail").await, "No mail");
    b.quit().await;

    // The export carries both columns and honours both filters.
    let cookie = session_cookie(&s, &[("token", s.token.as_str())]).await;
    let csv = get_with(&s, &cookie, "/employees.csv?source=hr&sort=mail_status")
        .await
        .text()
        .await
        .unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        header[header.len() - 2..],
        ["source", "mail_status"],
        "{csv}"
    );
    let rows: Vec<(String, String, String)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[1].to_string(),
                f[f.len() - 2].to_string(),
                f[f.len() - 1].to_string(),
            )
        })
        .collect();
    let row = |n: &str, src: &str, m: &str| (n.to_string(), src.to_string(), m.to_string());
    assert_eq!(
        rows,
        vec![
            row("Hilde Hr", "hr", ""),
            row("Hana Hr", "hr", "queued"),
            row("Hugo Hr", "hr", "sent"),
        ],
        "{csv}"
    );
    let r = get_with(&s, &cookie, "/employees?mail_status=lost").await;
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("mail_status must be queued, sent, failed, skipped or none")
    );
    s.stop().await;
}

/// "Select all that match the filter" deactivates every matching employee on
/// every page (55, 25 to a page) through the confirmation dialog, which lists
/// 50 and says how many more; nobody else changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_all_matching_deactivates_every_match_across_pages() {
    let s = TestServer::start().await;
    person(&s, "Maria", "Manager", "Administrator").await;
    let mut others = Vec::new();
    for (g, f) in [("Otto", "Other"), ("Olga", "Outside")] {
        others.push(person(&s, g, f, "Technician").await);
    }
    let mut matching = Vec::new();
    for i in 0..55 {
        let v = s
            .create(json!({
                "given_name": format!("Matt{i:02}"), "family_name": "Match",
                "email": format!("matt{i}@example.com"), "role": "Technician",
            }))
            .await;
        matching.push(v["id"].as_str().unwrap().to_string());
    }
    let b = Browser::start(&s.base).await;
    b.sign_in("maria.manager@example.com", PASSWORD).await;
    b.open("/employees?name=match&limit=25").await;
    b.wait_text("Showing 1–25 of 55").await;
    b.click("#select-matching").await;
    b.wait_text("All 55 matching selected").await;
    let action = b.css("#bulk-action").await;
    thirtyfour::components::SelectElement::new(&action)
        .await
        .unwrap()
        .select_by_value("deactivate")
        .await
        .unwrap();
    b.click("#bulk-apply").await;
    b.css("dialog#confirm-dialog[open] #confirm-button").await;
    b.wait_text("55 will change, 0 will be skipped").await;
    b.wait_text("and 5 more employees, not listed here").await;
    let listed = b
        .driver
        .find_all(By::Css("dialog#confirm-dialog #bulk-outcomes tbody tr"))
        .await
        .unwrap()
        .len();
    assert_eq!(listed, 50);
    b.shot("bulk-select-all-matching-dialog").await;
    b.axe("the select-all-matching dialog").await;
    for id in &matching {
        assert!(active(&s, id).await, "nothing changes before confirming");
    }
    b.click("dialog#confirm-dialog[open] #confirm-button").await;
    b.wait_text("55 changed, 0 skipped").await;
    b.shot("bulk-select-all-matching-result").await;
    for id in &matching {
        assert!(!active(&s, id).await);
    }
    for id in &others {
        assert!(active(&s, id).await, "not matching: unchanged");
    }
    let (_, maria) = s.get("/api/v1/employees/maria.manager@example.com").await;
    assert_eq!(maria["active"], true);
    b.quit().await;
    s.stop().await;
}

/// Add Employee with two positions and an office extension; a duplicate email
/// is shown next to the Email field with everything typed kept; edit, then
/// deactivate through Profile Actions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_edit_and_profile_actions() {
    let s = TestServer::start().await;
    person(&s, "Maria", "Manager", "Administrator").await;
    person(&s, "Taken", "Already", "Technician").await;
    let b = Browser::start(&s.base).await;
    b.sign_in("maria.manager@example.com", PASSWORD).await;
    b.click("#add-employee").await;
    b.css("#employee-form").await;
    b.fill("#given_name", "Paula").await;
    b.fill("#family_name", "Positions").await;
    b.fill("#email", "TAKEN.already@example.com").await;
    let positions = thirtyfour::components::SelectElement::new(&b.css("#positions").await)
        .await
        .unwrap();
    positions.select_by_value("Driver").await.unwrap();
    positions.select_by_value("Mechanic").await.unwrap();
    thirtyfour::components::SelectElement::new(&b.css("#business_unit").await)
        .await
        .unwrap()
        .select_by_value("North")
        .await
        .unwrap();
    b.fill("#office_number", "+1 555 0100").await;
    b.click("#has_extension").await;
    b.fill("#office_extension", "1234").await;
    b.click("#save").await;
    let err = b.css("#email-error").await;
    assert!(err.text().await.unwrap().to_lowercase().contains("email"));
    b.shot("employee-form-error").await;
    b.axe("the form with errors").await;
    let value = |sel: &'static str| {
        let b = &b;
        async move {
            b.css(sel)
                .await
                .prop("value")
                .await
                .unwrap()
                .unwrap_or_default()
        }
    };
    assert_eq!(value("#given_name").await, "Paula");
    assert_eq!(value("#email").await, "TAKEN.already@example.com");
    assert_eq!(value("#office_extension").await, "1234");
    assert!(b.css("#has_extension").await.is_selected().await.unwrap());
    let chosen = b
        .driver
        .find_all(By::Css("#positions option:checked"))
        .await
        .unwrap();
    assert_eq!(chosen.len(), 2);

    b.fill("#email", "paula@example.com").await;
    b.click("#save").await;
    b.wait_text("Saved.").await;
    b.shot("employee-edit").await;
    let (_, v) = s.get("/api/v1/employees/paula@example.com").await;
    assert_eq!(v["positions"], json!(["Driver", "Mechanic"]), "{v}");
    assert_eq!(v["office_phone"]["extension"], "1234", "{v}");
    assert_eq!(v["business_unit"], "North", "{v}");
    let id = v["id"].as_str().unwrap().to_string();

    // Edit, then Profile Actions: Deactivate.
    b.fill("#mobile_phone", "+1 555 0199").await;
    b.click("#save").await;
    b.wait_text("Saved.").await;
    let (_, v) = s.get(&format!("/api/v1/employees/{id}")).await;
    assert_eq!(v["mobile_phone"], "+1 555 0199", "{v}");
    b.click("#action-deactivate").await;
    b.wait_text("Deactivated.").await;
    assert_eq!(
        b.css("#profile-status").await.text().await.unwrap(),
        "Inactive"
    );
    assert!(!active(&s, &id).await);
    b.quit().await;
    s.stop().await;
}

/// A page on another origin (127.0.0.2, another port) that auto-submits a bulk
/// deactivation to a signed-in manager's console gets 403 and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_bulk_post_is_refused() {
    let s = TestServer::start().await;
    person(&s, "Maria", "Manager", "Administrator").await;
    let victim = person(&s, "Vic", "Victim", "Technician").await;
    let page = format!(
        "<!doctype html><title>cute cats</title>\
         <form method=post action=\"{}/employees/bulk\">\
         <input name=action value=deactivate><input name=confirm value=yes>\
         <input name=id value=\"{victim}\"></form>\
         <script>document.forms[0].submit()</script>",
        s.base
    );
    let hostile = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let hostile_addr = hostile.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut c, _)) = hostile.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf).await;
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = c.write_all(resp.as_bytes()).await;
        }
    });

    let b = Browser::start(&s.base).await;
    b.sign_in("maria.manager@example.com", PASSWORD).await;
    b.driver
        .goto(format!("http://{hostile_addr}/"))
        .await
        .unwrap();
    b.wait_text("came from another site").await;
    b.shot("cross-origin-refused").await;
    assert!(b.driver.title().await.unwrap().contains("Forbidden"));
    assert!(active(&s, &victim).await, "nothing changed");
    server.abort();
    b.quit().await;
    s.stop().await;
}

/// The id of the focused element.
async fn focused(b: &Browser) -> String {
    b.driver
        .active_element()
        .await
        .unwrap()
        .id()
        .await
        .unwrap()
        .unwrap_or_default()
}

async fn keys(b: &Browser, k: Key) {
    b.driver
        .action_chain()
        .send_keys(k)
        .perform()
        .await
        .unwrap();
}

/// Keyboard only from the select-all box: Space selects the page, Shift+Tab to
/// the action, a letter picks it, Enter opens the confirmation, Escape closes it
/// (focus back on Apply), Enter again, Tab to the confirm button, Enter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_only_bulk_activate() {
    let s = TestServer::start().await;
    person(&s, "Maria", "Manager", "Administrator").await;
    let mut gone = Vec::new();
    for (g, f) in [("Ina", "Away"), ("Ole", "Gone")] {
        let id = person(&s, g, f, "Technician").await;
        s.post(&format!("/api/v1/employees/{id}/deactivate"), json!({}))
            .await;
        gone.push(id);
    }
    let b = Browser::start(&s.base).await;
    b.sign_in("maria.manager@example.com", PASSWORD).await;
    b.open("/employees?status=inactive").await;
    b.wait_text("Showing 1–2 of 2").await;
    b.css("#select-page").await.focus().await.unwrap();
    keys(&b, Key::Space).await;
    b.wait_text("2 selected").await;
    for _ in 0..2 {
        b.driver
            .action_chain()
            .key_down(Key::Shift)
            .send_keys(Key::Tab)
            .key_up(Key::Shift)
            .perform()
            .await
            .unwrap();
    }
    assert_eq!(focused(&b).await, "bulk-action");
    b.driver
        .action_chain()
        .send_keys("a")
        .perform()
        .await
        .unwrap();
    let action = b.css("#bulk-action").await;
    assert_eq!(
        action.prop("value").await.unwrap().as_deref(),
        Some("activate")
    );
    keys(&b, Key::Tab).await;
    assert_eq!(focused(&b).await, "bulk-apply");
    keys(&b, Key::Enter).await;
    b.css("dialog#confirm-dialog[open] #confirm-button").await;
    assert_eq!(focused(&b).await, "cancel", "the safe choice has the focus");
    keys(&b, Key::Escape).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while b
        .driver
        .find(By::Css("dialog#confirm-dialog[open]"))
        .await
        .is_ok()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Escape did not close the dialog"
        );
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(focused(&b).await, "bulk-apply", "focus returns");
    keys(&b, Key::Enter).await;
    b.css("dialog#confirm-dialog[open] #confirm-button").await;
    keys(&b, Key::Tab).await;
    assert_eq!(focused(&b).await, "confirm-button");
    keys(&b, Key::Enter).await;
    b.wait_text("2 changed, 0 skipped").await;
    for id in &gone {
        assert!(active(&s, id).await);
    }
    b.quit().await;
    s.stop().await;
}

// ---- HTTP-level tests -------------------------------------------------------------

/// A form body (rosterd's reqwest has no `form` feature).
trait FormPairs {
    fn form_pairs(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormPairs for reqwest::RequestBuilder {
    fn form_pairs(self, pairs: &[(&str, &str)]) -> Self {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Signs in through the form; returns the `Cookie` header value.
async fn session_cookie(s: &TestServer, form: &[(&str, &str)]) -> String {
    let r = no_redirects()
        .post(s.url("/sign-in"))
        .form_pairs(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.text().await);
    let c = r.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        c.contains("HttpOnly") && c.contains("SameSite=Strict"),
        "{c}"
    );
    c.split(';').next().unwrap().to_string()
}

async fn get_with(s: &TestServer, cookie: &str, path: &str) -> reqwest::Response {
    no_redirects()
        .get(s.url(path))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn pages_carry_the_csp_and_assets_are_hashed() {
    let s = TestServer::start().await;
    let c = reqwest::Client::new();
    let r = c.get(s.url("/sign-in")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let body = r.text().await.unwrap();
    assert!(!body.contains("<script>"), "no inline script");
    assert!(!body.contains("style="), "no inline style");
    let js = body
        .split("src=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap()
        .to_string();
    assert!(
        js.starts_with("/static/console-") && js.ends_with(".js"),
        "{js}"
    );
    let r = c.get(s.url(&js)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert!(r.headers().contains_key("content-security-policy"));
    let r = c
        .get(s.url("/static/console-0000.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Not signed in: to the sign-in page.
    let r = no_redirects()
        .get(s.url("/employees"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/sign-in");
    s.stop().await;
}

#[tokio::test]
async fn sessions_follow_the_roster() {
    let s = TestServer::start().await;
    let viewer = person(&s, "Vera", "Viewer", "Dispatcher").await;
    let target = person(&s, "Tom", "Target", "Technician").await;
    person(&s, "Tess", "Technician", "Technician").await;

    // A view-only employee: the list, but a forged POST is refused.
    let cookie = session_cookie(
        &s,
        &[("login", "vera.viewer@example.com"), ("password", PASSWORD)],
    )
    .await;
    let r = get_with(&s, &cookie, "/employees").await;
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("Tom Target") && !body.contains("id=\"bulk\""),
        "{body}"
    );
    let r = no_redirects()
        .post(s.url("/employees/bulk"))
        .header(reqwest::header::COOKIE, &cookie)
        .header("sec-fetch-site", "same-origin")
        .form_pairs(&[
            ("action", "deactivate"),
            ("confirm", "yes"),
            ("id", target.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = no_redirects()
        .post(s.url(&format!("/employees/{target}/actions")))
        .header(reqwest::header::COOKIE, &cookie)
        .form_pairs(&[("do", "deactivate")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = no_redirects()
        .post(s.url("/employees/new"))
        .header(reqwest::header::COOKIE, &cookie)
        .form_pairs(&[("given_name", "Forged"), ("email", "forged@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        get_with(&s, &cookie, &format!("/employees/{target}"))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert!(active(&s, &target).await);
    assert_eq!(s.roster().counts().total, 3, "nothing created");

    // Losing the permission ends the session at once.
    let (st, v) = s
        .patch(
            &format!("/api/v1/employees/{viewer}"),
            json!({"role": "Technician"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let r = get_with(&s, &cookie, "/employees").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // ... and stays ended when the permission comes back.
    s.patch(
        &format!("/api/v1/employees/{viewer}"),
        json!({"role": "Dispatcher"}),
    )
    .await;
    assert_eq!(
        get_with(&s, &cookie, "/employees").await.status(),
        StatusCode::SEE_OTHER
    );

    // Deactivation ends it too, and an inactive employee cannot sign in.
    let cookie = session_cookie(
        &s,
        &[("login", "vera.viewer@example.com"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(
        get_with(&s, &cookie, "/employees").await.status(),
        StatusCode::OK
    );
    s.post(&format!("/api/v1/employees/{viewer}/deactivate"), json!({}))
        .await;
    assert_eq!(
        get_with(&s, &cookie, "/employees").await.status(),
        StatusCode::SEE_OTHER
    );
    let r = no_redirects()
        .post(s.url("/sign-in"))
        .form_pairs(&[("login", "vera.viewer@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("inactive"));

    // A Technician (no employees.view) may not use the console.
    let r = no_redirects()
        .post(s.url("/sign-in"))
        .form_pairs(&[
            ("login", "tess.technician@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Wrong password: 401 and the login kept.
    let r = no_redirects()
        .post(s.url("/sign-in"))
        .form_pairs(&[("login", "tom.target@example.com"), ("password", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("value=\"tom.target@example.com\"")
    );

    // The admin token signs in and acts, audited by the token's name; sign-out ends it.
    let cookie = session_cookie(&s, &[("token", s.token.as_str())]).await;
    let r = no_redirects()
        .post(s.url("/employees/bulk"))
        .header(reqwest::header::COOKIE, &cookie)
        .form_pairs(&[
            ("action", "deactivate"),
            ("confirm", "yes"),
            ("id", target.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("1 changed"));
    assert!(!active(&s, &target).await);
    let (_, audit) = s.get(&format!("/api/v1/audit?employee={target}")).await;
    assert_eq!(
        audit["items"][0]["actor"],
        json!({"kind": "admin", "name": "admin"})
    );
    let r = no_redirects()
        .post(s.url("/sign-out"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        get_with(&s, &cookie, "/employees").await.status(),
        StatusCode::SEE_OTHER
    );
    s.stop().await;
}

#[tokio::test]
async fn cross_origin_posts_get_403() {
    let s = TestServer::start().await;
    let target = person(&s, "Tom", "Target", "Technician").await;
    let cookie = session_cookie(&s, &[("token", s.token.as_str())]).await;
    let host = s.base.trim_start_matches("http://").to_string();
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("origin", "http://127.0.0.2:9999"),
    ] {
        let r = no_redirects()
            .post(s.url("/employees/bulk"))
            .header(reqwest::header::COOKIE, &cookie)
            .header(name, value)
            .header("host", &host)
            .form_pairs(&[
                ("action", "deactivate"),
                ("confirm", "yes"),
                ("id", target.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{name}: {value}");
        assert!(r.headers().contains_key("content-security-policy"));
    }
    // Sign-in and the token pages are state-changing too.
    let r = no_redirects()
        .post(s.url("/sign-in"))
        .header("sec-fetch-site", "cross-site")
        .form_pairs(&[("token", s.token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(active(&s, &target).await);
    s.stop().await;
}

#[tokio::test]
async fn dead_links_get_a_page_that_says_so() {
    let s = TestServer::start().await;
    for path in [
        "/accept-invite?token=0000",
        "/accept-invite",
        "/reset-password?token=abcd",
    ] {
        let r = reqwest::get(s.url(path)).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains("This link no longer works") && body.contains("Ask"),
            "{body}"
        );
    }
    let r = reqwest::Client::new()
        .post(s.url("/accept-invite"))
        .form_pairs(&[
            ("token", "0000"),
            ("username", "x"),
            ("password", PASSWORD),
            ("password_again", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn paging_keeps_the_view_in_the_url() {
    let s = TestServer::start().await;
    for (g, f) in [("Ann", "One"), ("Bob", "Two"), ("Cid", "Three")] {
        person(&s, g, f, "Technician").await;
    }
    let cookie = session_cookie(&s, &[("token", s.token.as_str())]).await;
    let r = get_with(&s, &cookie, "/employees?limit=2&sort=-name&role=").await;
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.unwrap();
    assert!(body.contains("Showing 1–2 of 3"), "{body}");
    assert!(body.contains("aria-sort=\"descending\""), "{body}");
    assert!(!body.contains("First page"));
    let next = body
        .split("id=\"next-page\"")
        .next()
        .and_then(|t| t.rsplit("href=\"").next())
        .and_then(|t| t.split('"').next())
        .unwrap()
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    assert!(
        next.contains("limit=2") && next.contains("sort=-name") && next.contains("cursor="),
        "{next}"
    );
    let body = get_with(&s, &cookie, &next).await.text().await.unwrap();
    assert!(body.contains("Showing 3–3 of 3"), "{body}");
    assert!(
        body.contains("Ann One") && !body.contains("Cid Three"),
        "{body}"
    );
    assert!(body.contains("First page") && !body.contains("id=\"next-page\""));
    // The export: the whole view (both pages), in its sort.
    let r = get_with(&s, &cookie, "/employees.csv?sort=-name&limit=2").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = r.text().await.unwrap();
    let names: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(names, vec!["Cid Three", "Bob Two", "Ann One"], "{csv}");
    // A bad value is said, not a blank page.
    let r = get_with(&s, &cookie, "/employees?status=gone").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Status must be active, inactive or all")
    );
    s.stop().await;
}

/// Every file under `dir`, read whole: does any contain `needle`?
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                found.push(p);
            }
        }
    }
    found
}

/// Sessions are in the store: a signed-in employee and an admin token stay
/// signed in across a restart of the daemon; the data directory's files never
/// hold a cookie's value (only its digest); sign-out survives a restart too;
/// deactivation still ends every session of the employee at once.
#[tokio::test]
async fn sessions_survive_a_restart_and_only_digests_are_stored() {
    let s = TestServer::start().await;
    let mia = person(&s, "Mia", "Manager", "Administrator").await;
    let login = [("login", "mia.manager@example.com"), ("password", PASSWORD)];
    let kept = session_cookie(&s, &login).await;
    let second = session_cookie(&s, &login).await;
    let signed_out = session_cookie(&s, &[("token", s.token.as_str())]).await;
    let token = session_cookie(&s, &[("token", s.token.as_str())]).await;
    assert!(kept.starts_with("rosterd_session="), "{kept}");
    for c in [&kept, &second, &signed_out, &token] {
        assert_eq!(get_with(&s, c, "/employees").await.status(), StatusCode::OK);
    }
    let r = no_redirects()
        .post(s.url("/sign-out"))
        .header(reqwest::header::COOKIE, &signed_out)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    let s = s.restart().await;
    for c in [&kept, &second, &token] {
        let r = get_with(&s, c, "/employees").await;
        assert_eq!(r.status(), StatusCode::OK, "{c} after the restart");
        assert!(r.text().await.unwrap().contains("Mia Manager"));
    }
    assert_eq!(
        get_with(&s, &signed_out, "/employees").await.status(),
        StatusCode::SEE_OTHER,
        "signed out before the restart"
    );
    for c in [&kept, &second, &signed_out, &token] {
        let value = c.split_once('=').unwrap().1;
        assert_eq!(value.len(), 64, "{c}");
        let found = files_containing(s.data_dir(), value.as_bytes());
        assert!(found.is_empty(), "the cookie's value is in {found:?}");
    }
    // Deactivated after the restart: both of Mia's sessions end, the token's stays.
    let (st, _) = s
        .post(&format!("/api/v1/employees/{mia}/deactivate"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        get_with(&s, &kept, "/employees").await.status(),
        StatusCode::SEE_OTHER
    );
    s.post(&format!("/api/v1/employees/{mia}/activate"), json!({}))
        .await;
    assert_eq!(
        get_with(&s, &second, "/employees").await.status(),
        StatusCode::SEE_OTHER,
        "every session of hers ended, not only the one that asked"
    );
    assert_eq!(
        get_with(&s, &token, "/employees").await.status(),
        StatusCode::OK
    );
    s.stop().await;
}

/// A client bound to `local` (127.0.0.x) that follows no redirects.
fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(local.parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Behind a trusted proxy that says the request came over HTTPS, the cookie is
/// `__Host-rosterd_session` and `Secure` (and only that name is believed);
/// the same header from an address that is not a trusted proxy changes
/// nothing: plain `rosterd_session`, no `Secure`.
#[tokio::test]
async fn the_cookie_is_secure_only_behind_a_trusted_https_proxy() {
    let s = TestServer::start_with_http("trusted_proxies = [\"127.0.0.2\"]").await;
    person(&s, "Pia", "Proxy", "Administrator").await;
    let form = [("login", "pia.proxy@example.com"), ("password", PASSWORD)];
    let sign_in = |c: reqwest::Client| {
        let url = s.url("/sign-in");
        async move {
            let r = c
                .post(url)
                .header("x-forwarded-proto", "https")
                .header("x-forwarded-for", "198.51.100.7")
                .form_pairs(&form)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::SEE_OTHER);
            r.headers()[reqwest::header::SET_COOKIE]
                .to_str()
                .unwrap()
                .to_string()
        }
    };
    let proxy = client_from("127.0.0.2");
    let set = sign_in(proxy.clone()).await;
    assert!(set.starts_with("__Host-rosterd_session="), "{set}");
    assert!(
        set.contains("; Secure") && set.contains("Path=/") && !set.contains("Domain"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let get = |c: &reqwest::Client, cookie: &str, https: bool| {
        let mut r = c
            .get(s.url("/employees"))
            .header(reqwest::header::COOKIE, cookie.to_string());
        if https {
            r = r.header("x-forwarded-proto", "https");
        }
        r.send()
    };
    assert_eq!(
        get(&proxy, &cookie, true).await.unwrap().status(),
        StatusCode::OK
    );
    // The same id under the plain name over HTTPS is not believed.
    let plain_named = cookie.replacen("__Host-", "", 1);
    assert_eq!(
        get(&proxy, &plain_named, true).await.unwrap().status(),
        StatusCode::SEE_OTHER
    );

    let direct = client_from("127.0.0.1");
    let set = sign_in(direct.clone()).await;
    assert!(set.starts_with("rosterd_session="), "{set}");
    assert!(!set.contains("Secure"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    assert_eq!(
        get(&direct, &cookie, true).await.unwrap().status(),
        StatusCode::OK
    );
    s.stop().await;
}

// ---- the Sync page ------------------------------------------------------------

/// An HR export with the people `keep` accepts out of Per00..Per13.
fn hr_export(keep: impl Fn(usize) -> bool) -> String {
    let mut text = String::from("Employee ID,First Name,Last Name,Work Email\n");
    for i in (0..14).filter(|i| keep(*i)) {
        text.push_str(&format!(
            "H{i:02},Per{i:02},Son{i:02},per{i:02}@corp.example\n"
        ));
    }
    text
}

/// A CSV HR source `hr` reading `csv`, held above 3 deactivations.
fn hr_source(csv: &std::path::Path) -> String {
    format!(
        r#"
[[sources]]
id = "hr"
kind = "csv"
path = "{}"
timezone = "Europe/Berlin"
join_key = "Employee ID"
max_deactivations = 3
max_deactivations_percent = 100.0
[sources.fields]
email = "Work Email"
given_name = "First Name"
family_name = "Last Name"
"#,
        csv.display()
    )
}

/// Reloads the Sync page until the newest run of `hr` shows `outcome`.
async fn wait_outcome(b: &Browser, outcome: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        b.open("/sync").await;
        let cell = b.css("#runs-hr tbody tr td.outcome").await;
        let text = cell.text().await.unwrap();
        if text.starts_with(outcome) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the newest run of hr shows `{text}`, not `{outcome}`"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The newest run of `hr`, from the admin API.
async fn newest_run(s: &TestServer) -> serde_json::Value {
    let (st, v) = s.get("/api/v1/sync/runs?source=hr&limit=1").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["items"][0].clone()
}

/// The Sync page with a real CSV source: Dry run changes nothing, Run now
/// imports; a full run that would deactivate 12 (over the threshold of 3) is
/// held and shown as a banner on the Sync page and the Employees screen (ten
/// names, "and 2 more"); the plan is paged on the run's page; Approve in the
/// browser applies it, after which those 12 are inactive and the banner is
/// gone. axe-core finds nothing on the Sync page, the banner or the run page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_page_runs_holds_and_approves_in_the_browser() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("people.csv");
    std::fs::write(&csv, hr_export(|_| true)).unwrap();
    let s = TestServer::start_with(&hr_source(&csv)).await;
    person(&s, "Maria", "Manager", "Administrator").await;
    person(&s, "Vera", "Viewer", "Dispatcher").await;
    let b = Browser::start(&s.base).await;
    b.sign_in("maria.manager@example.com", PASSWORD).await;
    b.click("#nav-sync").await;
    b.css("#source-hr").await;
    b.wait_text("No runs yet.").await;
    assert!(b.driver.find(By::Css("section.held")).await.is_err());

    // Dry run: recorded, nothing changes.
    b.click("#dry-run-hr").await;
    b.wait_text("Dry run").await;
    wait_outcome(&b, "Dry run (nothing changed)").await;
    assert_eq!(s.roster().counts().total, 2);
    b.wait_text("14 created").await;

    // Run now: the import.
    b.click("#run-hr").await;
    wait_outcome(&b, "Applied").await;
    assert_eq!(s.roster().counts().active, 16);
    b.shot("sync").await;
    b.axe("the Sync page").await;

    // Twelve leave at once: held.
    std::fs::write(&csv, hr_export(|i| i < 2)).unwrap();
    b.click("#run-hr").await;
    wait_outcome(&b, "Held for approval").await;
    let run = newest_run(&s).await;
    assert_eq!(run["outcome"], "held", "{run}");
    let id = run["id"].as_u64().unwrap();
    assert_eq!(s.roster().counts().active, 16, "nothing applied yet");
    // A view-only employee sees the banner but cannot approve.
    let viewer = session_cookie(
        &s,
        &[("login", "vera.viewer@example.com"), ("password", PASSWORD)],
    )
    .await;
    let page = get_with(&s, &viewer, "/employees")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(&format!("id=\"held-{id}\"")), "{page}");
    assert!(!page.contains(&format!("id=\"approve-{id}\"")), "{page}");
    let r = no_redirects()
        .post(s.url(&format!("/sync/runs/{id}/approve")))
        .header(reqwest::header::COOKIE, &viewer)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(newest_run(&s).await["outcome"], "held");
    let banner_names = |b: &Browser| {
        let driver = b.driver.clone();
        async move {
            let mut out = Vec::new();
            for li in driver
                .find_all(By::Css(format!("#held-{id} .held-names li")))
                .await
                .unwrap()
            {
                out.push(li.text().await.unwrap());
            }
            out
        }
    };
    let check_banner = |names: Vec<String>| {
        assert_eq!(names.len(), 10, "{names:?}");
        for n in &names {
            let i: usize = n[3..5].parse().unwrap();
            assert!((2..14).contains(&i), "{n} is not a leaver");
            assert!(
                n.contains(&format!("per{i:02}@corp.example")),
                "{n}: the name and the email"
            );
        }
    };
    check_banner(banner_names(&b).await);
    let banner = b.css(&format!("#held-{id}")).await.text().await.unwrap();
    assert!(
        banner.contains("would deactivate 12 employees") && banner.contains("and 2 more"),
        "{banner}"
    );
    b.shot("sync-held").await;
    b.axe("the Sync page with a held plan").await;

    // The plan, a page at a time.
    b.click(&format!("#held-{id} a")).await;
    b.css("#plan").await;
    let summary = b.css("#plan-summary").await.text().await.unwrap();
    assert_eq!(summary, "Plan items 1–12 of 12", "{summary}");
    let rows = b
        .driver
        .find_all(By::XPath("//table[@id='plan']//td[1][text()='Deactivate']"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 12);
    b.shot("sync-run-plan").await;
    b.axe("a run's plan").await;

    // The same banner on the Employees screen; approved from there.
    b.open("/employees").await;
    check_banner(banner_names(&b).await);
    b.shot("employees-held-banner").await;
    b.axe("the Employees screen with the held-plan banner")
        .await;
    b.click(&format!("#approve-{id}")).await;
    b.wait_text(&format!("Run {id} of hr approved and applied"))
        .await;
    assert!(b.driver.find(By::Css("section.held")).await.is_err());
    let run = newest_run(&s).await;
    assert_eq!(run["outcome"], "approved", "{run}");
    assert_eq!(
        s.roster().counts().active,
        4,
        "the manager, the viewer and two who stay"
    );
    for i in 2..14 {
        let (_, v) = s
            .get(&format!("/api/v1/employees/per{i:02}@corp.example"))
            .await;
        assert_eq!(v["active"], false, "{v}");
    }
    let (_, v) = s.get("/api/v1/employees/per01@corp.example").await;
    assert_eq!(v["active"], true, "{v}");
    let (_, audit) = s.get("/api/v1/audit?employee=per05@corp.example").await;
    assert_eq!(audit["items"][0]["action"], "deactivate", "{audit}");
    b.open("/employees").await;
    assert!(b.driver.find(By::Css("section.held")).await.is_err());
    b.quit().await;
    s.stop().await;
}

/// A view-only employee sees the Sync page but no Run now / Dry run / Approve,
/// and a forged POST from them is refused; a cross-origin POST from a manager
/// is refused; neither starts a run.
#[tokio::test]
async fn sync_actions_need_manage_and_the_same_origin() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("people.csv");
    std::fs::write(&csv, hr_export(|_| true)).unwrap();
    let s = TestServer::start_with(&hr_source(&csv)).await;
    person(&s, "Vera", "Viewer", "Dispatcher").await;
    person(&s, "Maria", "Manager", "Administrator").await;
    let viewer = session_cookie(
        &s,
        &[("login", "vera.viewer@example.com"), ("password", PASSWORD)],
    )
    .await;
    let r = get_with(&s, &viewer, "/sync").await;
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.unwrap();
    assert!(body.contains("id=\"source-hr\""), "{body}");
    assert!(!body.contains("id=\"run-hr\"") && !body.contains("dry-run-hr"));
    let post = |cookie: &str, path: &str, site: &str| {
        no_redirects()
            .post(s.url(path))
            .header(reqwest::header::COOKIE, cookie.to_string())
            .header("sec-fetch-site", site.to_string())
            .form_pairs(&[("mode", "run")])
            .send()
    };
    let r = post(&viewer, "/sync/sources/hr/run", "same-origin")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let manager = session_cookie(
        &s,
        &[
            ("login", "maria.manager@example.com"),
            ("password", PASSWORD),
        ],
    )
    .await;
    let r = post(&manager, "/sync/sources/hr/run", "cross-site")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (_, runs) = s.get("/api/v1/sync/runs?source=hr").await;
    assert_eq!(runs["items"], json!([]), "no run started");
    // An unknown source and a run that does not exist say so.
    let r = post(&manager, "/sync/sources/nope/run", "same-origin")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains("No source with id `nope`"));
    let r = post(&manager, "/sync/runs/999/approve", "same-origin")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        get_with(&s, &manager, "/sync/runs/999").await.status(),
        StatusCode::NOT_FOUND
    );
    // The manager's Run now answers at once with the run started.
    let r = post(&manager, "/sync/sources/hr/run", "same-origin")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(to.starts_with("/sync?notice=Run+"), "{to}");
    s.stop().await;
}

// ---- the edit page: ownership and history; photo upload -------------------------

/// On the edit page of a profile the HR source owns, the fields it writes say
/// so (naming the source and that its next run overwrites an edit) and the
/// others do not; an edit of an owned field is indeed overwritten by the next
/// run. The history lists who changed what, newest first: the manager by name,
/// the admin token by its name, the source; 20 a page with a link to older
/// changes. axe-core finds nothing on the page with its history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_page_shows_field_owners_and_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("people.csv");
    std::fs::write(&csv, hr_export(|i| i == 0)).unwrap();
    let s = TestServer::start_with(&hr_source(&csv)).await;
    person(&s, "Maria", "Manager", "Administrator").await;
    let (st, run) = s.post("/api/v1/sync/sources/hr/run", json!({})).await;
    assert_eq!(st, StatusCode::OK, "{run}");
    assert_eq!(run["outcome"], "applied", "{run}");
    let (_, e) = s.get("/api/v1/employees/per00@corp.example").await;
    let id = e["id"].as_str().unwrap().to_string();
    // Changes by the admin token, so the history has a second page.
    for i in 0..21 {
        let (st, v) = s
            .patch(
                &format!("/api/v1/employees/{id}"),
                json!({"mobile_phone": format!("+1 555 01{i:02}")}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }

    let b = Browser::start(&s.base).await;
    b.sign_in("maria.manager@example.com", PASSWORD).await;
    b.open(&format!("/employees/{id}")).await;
    for field in ["given_name", "family_name", "email"] {
        let note = b
            .css(&format!("#{field}-owner"))
            .await
            .text()
            .await
            .unwrap();
        assert!(
            note.contains("sync source hr") && note.contains("next run overwrites an edit"),
            "{field}: {note}"
        );
        let described = b
            .css(&format!("#{field}"))
            .await
            .attr("aria-describedby")
            .await
            .unwrap()
            .unwrap_or_default();
        assert!(described.contains(&format!("{field}-owner")), "{described}");
    }
    for field in ["mobile_phone", "office_number", "role", "photo"] {
        assert!(
            b.driver
                .find(By::Css(format!("#{field}-owner")))
                .await
                .is_err(),
            "{field} is not the source's"
        );
    }
    // The manager edits a field the source owns, and another.
    b.fill("#given_name", "Edited").await;
    b.fill("#mobile_phone", "+1 555 0999").await;
    b.click("#save").await;
    b.wait_text("Saved.").await;
    let row = b
        .css("#history-table tbody tr:first-child")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        row.contains("Maria Manager")
            && row.contains("update")
            && row.contains("given_name: Per00 → Edited")
            && row.contains("mobile_phone: +1 555 0120 → +1 555 0999"),
        "{row}"
    );
    let second = b
        .css("#history-table tbody tr:nth-child(2)")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        second.contains("admin token “admin”") && second.contains("+1 555 0119 → +1 555 0120"),
        "{second}"
    );
    let rows = b
        .driver
        .find_all(By::Css("#history-table tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 20, "a page of 20");
    b.shot("employee-edit-history").await;
    b.axe("the edit page with owners and history").await;
    // Older changes: down to the source's create.
    b.click("#history-older").await;
    b.wait_text("Older changes").await;
    let last = b
        .css("#history-table tbody tr:last-child")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        last.contains("sync source hr") && last.contains("create"),
        "{last}"
    );
    assert!(b.driver.find(By::Css("#history-older")).await.is_err());
    b.click("#history-newest").await;
    b.wait_text("Changes to this employee").await;

    // What the note says: the next run puts the source's value back.
    let (_, run) = s.post("/api/v1/sync/sources/hr/run", json!({})).await;
    assert_eq!(run["outcome"], "applied", "{run}");
    let (_, e) = s.get(&format!("/api/v1/employees/{id}")).await;
    assert_eq!(e["given_name"], "Per00", "{e}");
    assert_eq!(e["mobile_phone"], "+1 555 0999", "not the source's: kept");
    b.quit().await;
    s.stop().await;
}

/// A 1×1 PNG.
fn png() -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")
        .unwrap()
}

/// Photo upload on Add and Edit: a file that is not the image it claims to be,
/// and one over `[photos] max_bytes`, are errors next to the Photo field with
/// the other typed values kept and nothing saved; a real PNG is stored (the
/// same bytes come back from the photo route) and the list shows it as the
/// row's thumbnail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photo_upload_on_add_and_edit() {
    let s = TestServer::start().await;
    person(&s, "Maria", "Manager", "Administrator").await;
    let files = tempfile::tempdir().unwrap();
    let fake = files.path().join("not-really.png");
    std::fs::write(&fake, b"GIF89a pretending to be a PNG").unwrap();
    let real = files.path().join("face.png");
    std::fs::write(&real, png()).unwrap();
    let huge = files.path().join("huge.png");
    let mut big = png();
    big.resize(2 * 1024 * 1024 + 1000, 0);
    std::fs::write(&huge, &big).unwrap();

    let b = Browser::start(&s.base).await;
    b.sign_in("maria.manager@example.com", PASSWORD).await;
    b.click("#add-employee").await;
    b.fill("#given_name", "Fiona").await;
    b.fill("#family_name", "Photo").await;
    b.fill("#email", "fiona.photo@example.com").await;
    b.fill("#mobile_phone", "+1 555 0142").await;
    b.css("#photo")
        .await
        .send_keys(fake.display().to_string())
        .await
        .unwrap();
    b.click("#save").await;
    let err = b.css("#photo-error").await.text().await.unwrap();
    assert!(err.contains("not an image of type image/png"), "{err}");
    assert_eq!(
        b.css("#photo").await.attr("aria-invalid").await.unwrap(),
        Some("true".into())
    );
    let value = |sel: &'static str| {
        let b = &b;
        async move {
            b.css(sel)
                .await
                .prop("value")
                .await
                .unwrap()
                .unwrap_or_default()
        }
    };
    assert_eq!(value("#given_name").await, "Fiona");
    assert_eq!(value("#email").await, "fiona.photo@example.com");
    assert_eq!(value("#mobile_phone").await, "+1 555 0142");
    assert_eq!(s.roster().counts().total, 1, "nothing created");
    b.shot("employee-photo-error").await;
    b.axe("the form with a photo error").await;

    b.css("#photo")
        .await
        .send_keys(real.display().to_string())
        .await
        .unwrap();
    b.click("#save").await;
    b.wait_text("Saved.").await;
    let (_, e) = s.get("/api/v1/employees/fiona.photo@example.com").await;
    let id = e["id"].as_str().unwrap().to_string();
    let (ct, bytes) = s
        .roster()
        .photo(id.parse().unwrap())
        .expect("the photo is stored");
    assert_eq!(ct, "image/png");
    assert_eq!(bytes, png());
    // The profile and its photo were one write: one audit entry, a create
    // that records the photo.
    let (_, audit) = s.get(&format!("/api/v1/audit?employee={id}")).await;
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{audit}");
    assert_eq!(items[0]["action"], "create", "{audit}");
    assert!(audit.to_string().contains("image/png"), "{audit}");
    b.css("#current-photo").await;

    // Too large on Edit: refused next to the field, the edit not saved.
    b.fill("#mobile_phone", "+1 555 0143").await;
    b.css("#photo")
        .await
        .send_keys(huge.display().to_string())
        .await
        .unwrap();
    b.click("#save").await;
    let err = b.css("#photo-error").await.text().await.unwrap();
    assert!(
        err.contains("more than the limit of 2097152 bytes"),
        "{err}"
    );
    assert_eq!(value("#mobile_phone").await, "+1 555 0143");
    let (_, e) = s.get(&format!("/api/v1/employees/{id}")).await;
    assert_eq!(e["mobile_phone"], "+1 555 0142", "nothing saved");
    assert_eq!(s.roster().photo(id.parse().unwrap()).unwrap().1, png());

    // A good photo on Edit: the edit and the photo in one audited update.
    let mut other_png = png();
    other_png.extend_from_slice(&[0u8; 10]);
    let other = files.path().join("other.png");
    std::fs::write(&other, &other_png).unwrap();
    b.css("#photo")
        .await
        .send_keys(other.display().to_string())
        .await
        .unwrap();
    b.click("#save").await;
    b.wait_text("Saved.").await;
    let (_, e) = s.get(&format!("/api/v1/employees/{id}")).await;
    assert_eq!(e["mobile_phone"], "+1 555 0143");
    assert_eq!(s.roster().photo(id.parse().unwrap()).unwrap().1, other_png);
    let (_, audit) = s.get(&format!("/api/v1/audit?employee={id}")).await;
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{audit}");
    assert_eq!(items[0]["action"], "update", "{audit}");
    let newest = items[0].to_string();
    assert!(
        newest.contains("mobile_phone") && newest.contains("photo"),
        "{audit}"
    );

    // The list shows the thumbnail, served by the photo route.
    b.open("/employees").await;
    let img = b.css(&format!("tr[data-id='{id}'] img.thumb")).await;
    assert_eq!(
        img.attr("src").await.unwrap(),
        Some(format!("/employees/{id}/photo"))
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let w = img.prop("naturalWidth").await.unwrap().unwrap_or_default();
        if w == "1" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the thumbnail did not load ({w})"
        );
        tokio::time::sleep(POLL).await;
    }
    b.shot("employees-with-photo").await;
    b.quit().await;
    s.stop().await;
}

/// Without the script, "select all that match" is a plain form: the preview
/// page carries the view and the digest of the matching set; a confirmation
/// for a set that changed since its preview changes nothing and previews
/// again; the current one applies to every match.
#[tokio::test]
async fn select_all_matching_works_as_a_form_and_refuses_a_changed_set() {
    let s = TestServer::start().await;
    let keep = person(&s, "Kim", "Keep", "Dispatcher").await;
    let mut techs = Vec::new();
    for (g, f) in [("Tara", "Tech"), ("Tom", "Tech"), ("Tess", "Tech")] {
        techs.push(person(&s, g, f, "Technician").await);
    }
    let cookie = session_cookie(&s, &[("token", s.token.as_str())]).await;
    let host = s.base.trim_start_matches("http://").to_string();
    let post = |pairs: Vec<(&'static str, String)>| {
        let cookie = cookie.clone();
        let host = host.clone();
        let url = s.url("/employees/bulk");
        async move {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            no_redirects()
                .post(url)
                .header(reqwest::header::COOKIE, &cookie)
                .header("sec-fetch-site", "same-origin")
                .header("host", &host)
                .form_pairs(&pairs)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let back = "/employees?role=technician&limit=2".to_string();
    let preview = post(vec![
        ("action", "deactivate".into()),
        ("scope", "matching".into()),
        ("back", back.clone()),
    ])
    .await;
    assert!(preview.contains("Deactivate 3 employees?"), "{preview}");
    let digest = preview
        .split("name=\"digest\" value=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap()
        .to_string();
    // Another technician arrives before the confirmation: refused.
    let late = person(&s, "Theo", "Tech", "Technician").await;
    let confirm = |digest: String| {
        vec![
            ("action", "deactivate".into()),
            ("scope", "matching".into()),
            ("back", back.clone()),
            ("confirm", "yes".into()),
            ("digest", digest),
        ]
    };
    let again = post(confirm(digest)).await;
    assert!(again.contains("changed since the preview"), "{again}");
    assert!(again.contains("Deactivate 4 employees?"), "{again}");
    for id in techs.iter().chain([&late]) {
        assert!(active(&s, id).await, "a stale confirmation changes nothing");
    }
    let digest = again
        .split("name=\"digest\" value=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap()
        .to_string();
    let done = post(confirm(digest)).await;
    assert!(done.contains("Deactivate: 4 changed, 0 skipped"), "{done}");
    for id in techs.iter().chain([&late]) {
        assert!(!active(&s, id).await);
    }
    assert!(active(&s, &keep).await);
    s.stop().await;
}
