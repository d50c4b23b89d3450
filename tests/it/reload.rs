//! The real `rosterd` binary reloading its config on SIGHUP: new admin tokens and
//! catalog entries are in force afterwards, a new schedule runs, and a file that
//! does not validate is rejected (logged, naming the key) while the old config
//! stays in force.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Rosterd, replace_once, shipped_config};
use crate::ldap_sync::source_toml;
use crate::slapd::{self, ADMIN_DN, ADMIN_PW, Tree};

async fn status_with(base: &str, path: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls `check` every 100 ms for up to `secs` seconds.
async fn eventually<F, Fut>(secs: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Notifications on `sock` until one contains `until` (or 10 s pass).
fn notifications_until(sock: &UnixDatagram, until: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !out.last().is_some_and(|m| m.contains(until)) {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    out
}

fn generated_token(data_dir: &Path) -> String {
    read_token(&data_dir.join("admin.token"))
}

fn read_token(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_tokens_and_catalog_and_rejects_an_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("rosterd.toml");
    let shipped = shipped_config();
    std::fs::write(&config, &shipped).unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let sock_env = sock_path.display().to_string();
    let mut p = Rosterd::start_with(&config, &data, &[("NOTIFY_SOCKET", &sock_env)]);
    let ready = notifications_until(&sock, "READY=1");
    assert!(ready.iter().any(|m| m.contains("READY=1")), "{ready:?}");
    let generated = generated_token(&data);
    assert_eq!(
        status_with(&p.base, "/api/v1/employees", &generated).await,
        200
    );
    let generated_scim = read_token(&data.join("scim.token"));
    assert_eq!(
        status_with(&p.base, "/scim/v2/Users", &generated_scim).await,
        200
    );

    // (1) Configured admin and SCIM tokens, a SCIM setting and a new position come
    // into force;
    // systemd hears RELOADING=1, then READY=1.
    let ops = "reload-ops-token-0123456789abcdef";
    let ops_file = dir.path().join("ops.token");
    std::fs::write(&ops_file, format!("{ops}\n")).unwrap();
    let idp = "reload-idp-token-0123456789abcdef";
    let idp_file = dir.path().join("idp.token");
    std::fs::write(&idp_file, idp).unwrap();
    assert_eq!(status_with(&p.base, "/api/v1/employees", ops).await, 401);
    assert_eq!(status_with(&p.base, "/scim/v2/Users", idp).await, 401);
    let with_page = replace_once(
        &shipped,
        "\ngenerate_token = true\n",
        "\ngenerate_token = true\nmax_page_size = 7\n",
    );
    assert_ne!(
        with_page, shipped,
        "the shipped config sets [scim] generate_token"
    );
    let reloaded = format!(
        "{with_page}\n[[catalog.positions]]\nname = \"Reload Tester\"\n\n\
         [[admin.tokens]]\nname = \"ops\"\ntoken_file = \"{}\"\n\n\
         [[scim.clients]]\nname = \"idp\"\ntoken_file = \"{}\"\n",
        ops_file.display(),
        idp_file.display()
    );
    p.reload_with(&reloaded);
    let msgs = notifications_until(&sock, "READY=1");
    let reloading = msgs.iter().position(|m| m.contains("RELOADING=1"));
    let ready = msgs.iter().rposition(|m| m.contains("READY=1"));
    assert!(
        matches!((reloading, ready), (Some(a), Some(b)) if a < b),
        "RELOADING=1 then READY=1: {msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("RELOADING=1") && m.contains("MONOTONIC_USEC=")),
        "{msgs:?}"
    );
    let base = p.base.clone();
    assert!(
        eventually(5, || async {
            status_with(&base, "/api/v1/employees", ops).await == 200
        })
        .await,
        "the new admin token works within 5 s of SIGHUP; logs:\n{}",
        p.logs_text()
    );
    p.wait_log("config reloaded", Duration::from_secs(5));
    // Configured tokens replace the generated ones, as at start.
    assert_eq!(
        status_with(&p.base, "/api/v1/employees", &generated).await,
        401
    );
    assert_eq!(status_with(&p.base, "/scim/v2/Users", idp).await, 200);
    assert_eq!(
        status_with(&p.base, "/scim/v2/Users", &generated_scim).await,
        401
    );
    let spc: Value = p.get_json("/scim/v2/ServiceProviderConfig", idp).await;
    assert_eq!(
        spc["filter"]["maxResults"], 7,
        "the reloaded [scim] settings: {spc}"
    );
    let catalog: Value = p.get_json("/api/v1/catalog", ops).await;
    assert!(
        catalog.to_string().contains("Reload Tester"),
        "the reloaded catalog is in force: {catalog}"
    );

    // (2) A file that does not validate: logged at error level naming the key,
    // the process keeps running on the config in force.
    p.reload_with(&format!("bogus_key = 1\n{reloaded}"));
    let line = p.wait_log("config reload rejected", Duration::from_secs(5));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("bogus_key"), "{line}");
    assert!(line.contains(&config.display().to_string()), "{line}");
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "rosterd keeps running"
    );
    let msgs = notifications_until(&sock, "READY=1");
    assert!(
        msgs.last().is_some_and(|m| m.contains("READY=1")),
        "READY=1 after a rejected reload too: {msgs:?}"
    );
    assert_eq!(status_with(&p.base, "/scim/v2/Users", idp).await, 200);
    assert_eq!(status_with(&p.base, "/api/v1/employees", ops).await, 200);
    assert_eq!(
        status_with(&p.base, "/api/v1/employees", &generated).await,
        401
    );
    assert_eq!(p.count_logs("config reloaded"), 1, "{}", p.logs_text());

    // (3) Settings fixed at start are reported, not applied.
    let moved = replace_once(
        &reloaded,
        "max_body_bytes = 1048576",
        "max_body_bytes = 2048",
    );
    assert_ne!(
        moved, reloaded,
        "the shipped config sets http.max_body_bytes"
    );
    p.reload_with(&moved);
    let line = p.wait_log("needs a restart", Duration::from_secs(5));
    assert!(line.contains("http.max_body_bytes"), "{line}");
    assert!(
        eventually(5, || async { p.count_logs("config reloaded") == 2 }).await,
        "the rest of the file is applied"
    );
    assert_eq!(status_with(&p.base, "/api/v1/employees", ops).await, 200);
    p.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_changed_schedule_applies_it() {
    let s = slapd::slapd().await;
    let mut ldap = slapd::admin(s.port).await;
    let tree = Tree::new(&mut ldap, "reload").await;
    tree.person(
        &mut ldap,
        "ana",
        "Ana",
        "Alvarez",
        "ana@reload.example",
        &[],
    )
    .await;
    let pw_file = s
        .dir
        .join(format!("pw-{}", tree.base.replace([',', '='], "_")));
    std::fs::write(&pw_file, ADMIN_PW).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("rosterd.toml");
    let shipped = shipped_config();
    let unscheduled = source_toml(&tree, s.port, &pw_file, ADMIN_DN, "");
    std::fs::write(&config, format!("{shipped}\n{unscheduled}")).unwrap();
    let mut p = Rosterd::start(&config, &data);
    let token = generated_token(&data);

    let base = p.base.clone();
    let runs = || async {
        let v: Value = reqwest::Client::new()
            .get(format!("{base}/api/v1/sync/runs?source=corp"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["items"].as_array().unwrap().clone()
    };
    // No schedule: nothing runs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(runs().await.is_empty());

    let scheduled = source_toml(
        &tree,
        s.port,
        &pw_file,
        ADMIN_DN,
        "full_schedule = \"*/1 * * * * *\"",
    );
    p.reload_with(&format!("{shipped}\n{scheduled}"));
    assert!(
        eventually(5, || async {
            runs().await.iter().any(|r| r["trigger"] == "schedule")
        })
        .await,
        "a scheduled run within 5 s of SIGHUP; logs:\n{}",
        p.logs_text()
    );
    let sources: Value = p.get_json("/api/v1/sync/sources", &token).await;
    assert_eq!(sources["items"][0]["full_schedule"], "*/1 * * * * *");

    // An invalid schedule is rejected; the one in force keeps running.
    let broken = source_toml(
        &tree,
        s.port,
        &pw_file,
        ADMIN_DN,
        "full_schedule = \"every tuesday\"",
    );
    p.reload_with(&format!("{shipped}\n{broken}"));
    let line = p.wait_log("config reload rejected", Duration::from_secs(5));
    assert!(line.contains("sources[0].full_schedule"), "{line}");
    let before = runs().await.len();
    assert!(
        eventually(5, || async { runs().await.len() > before }).await,
        "the schedule in force keeps running"
    );
    p.stop();
}
