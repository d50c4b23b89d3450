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
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use thirtyfour::prelude::*;

use crate::common::TestServer;

const PASSWORD: &str = "Correct-Horse-42-battery";
const WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

// ---- the shared chromedriver ------------------------------------------------

struct Chromedriver {
    port: u16,
}

static DRIVER: OnceLock<Chromedriver> = OnceLock::new();
static DRIVER_PID: AtomicU32 = AtomicU32::new(0);
/// One browser at a time.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

extern "C" fn kill_chromedriver() {
    let pid = DRIVER_PID.load(Ordering::SeqCst);
    if pid != 0 {
        // SAFETY: signalling the chromedriver this test binary started.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

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
        DRIVER_PID.store(child.id(), Ordering::SeqCst);
        // SAFETY: registering a plain extern "C" function.
        unsafe {
            libc::atexit(kill_chromedriver);
        }
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "chromedriver did not listen on port {port}; see {}",
                log.display()
            );
            std::thread::sleep(POLL);
        }
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
