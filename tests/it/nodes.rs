//! Two real `rosterd` processes on ONE PostgreSQL database (a fresh database
//! on the shared server of [`crate::support::pg`], whatever `TEST_STORE`
//! says), both on 127.0.0.1, sharing an admin token and a SCIM client token
//! as a load balancer's nodes would. Requests are fired at both at once:
//! versions and unique keys hold across the nodes, and every write one node
//! acknowledges is seen by the other at once in what it answers from memory
//! (lists, SCIM filters, counts, the Employees screen, the positions in
//! force), and console sessions live in the shared store.
//!
//! These tests start their own PostgreSQL, so they run once: in the sled
//! pass of `scripts/test.sh` (its PostgreSQL pass skips `nodes::`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Rosterd, employee, shipped_config};
use crate::support::pg::server;

struct Nodes {
    a: Rosterd,
    b: Rosterd,
    admin: String,
    scim: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

fn token_file(dir: &Path, name: &str) -> (String, std::path::PathBuf) {
    let token = format!("{name}-{}", uuid::Uuid::new_v4().simple());
    let path = dir.join(format!("{name}.token"));
    std::fs::write(&path, &token).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (token, path)
}

/// Two nodes on one fresh database.
fn start_nodes() -> Nodes {
    let pg = server();
    let url = pg.url(&pg.fresh_database());
    let dir = tempfile::tempdir().unwrap();
    let (admin, admin_path) = token_file(dir.path(), "ops");
    let (scim, scim_path) = token_file(dir.path(), "idp");
    let config = dir.path().join("rosterd.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[[admin.tokens]]\nname = \"ops\"\ntoken_file = \"{}\"\n\n\
             [[scim.clients]]\nname = \"idp\"\ntoken_file = \"{}\"\n",
            shipped_config(),
            admin_path.display(),
            scim_path.display()
        ),
    )
    .unwrap();
    let node = |name: &str| {
        let data = dir.path().join(name);
        std::fs::create_dir_all(&data).unwrap();
        Rosterd::launch(&config, &data)
            .env("ROSTERD_STORE__BACKEND", "postgres")
            .env("ROSTERD_STORE__URL", &url)
            .env("ROSTERD_STORE__POOL_SIZE", "4")
            .start()
    };
    let a = node("a");
    let b = node("b");
    Nodes {
        a,
        b,
        admin,
        scim,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap(),
        _dir: dir,
    }
}

async fn body(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

impl Nodes {
    async fn api(
        &self,
        n: &Rosterd,
        method: reqwest::Method,
        path: &str,
        b: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", n.base))
            .bearer_auth(&self.admin);
        if let Some(b) = b {
            req = req.json(&b);
        }
        body(req.send().await.unwrap()).await
    }

    async fn get(&self, n: &Rosterd, path: &str) -> (StatusCode, Value) {
        self.api(n, reqwest::Method::GET, path, None).await
    }

    async fn scim_get(&self, n: &Rosterd, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}/scim/v2{path}", n.base))
            .bearer_auth(&self.scim)
            .send()
            .await
            .unwrap();
        let (st, v) = body(r).await;
        assert_eq!(st, StatusCode::OK, "{path}: {v}");
        v
    }

    fn scim_req(
        &self,
        n: &Rosterd,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/scim/v2{path}", n.base))
            .bearer_auth(&self.scim)
            .header("content-type", "application/scim+json")
    }

    /// What `node` answers from memory about `email`: in the admin list
    /// (all statuses, filtered by email, and the active ones), in a SCIM
    /// filter, and on the Employees screen.
    async fn seen(&self, n: &Rosterd, email: &str, cookie: &str) -> Seen {
        let (st, all) = self
            .get(n, &format!("/api/v1/employees?status=all&email={email}"))
            .await;
        assert_eq!(st, StatusCode::OK, "{all}");
        let item = all["items"].as_array().unwrap().first().cloned();
        let (_, active) = self
            .get(n, "/api/v1/employees?status=active&limit=500")
            .await;
        let in_active = active["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["email"] == email);
        let filter = self
            .scim_get(n, &format!("/Users?filter=emails%20co%20%22{email}%22"))
            .await;
        let first_given = |list: &Value| {
            list["Resources"]
                .as_array()
                .unwrap()
                .first()
                .map(|u| u["name"]["givenName"].as_str().unwrap_or("").to_string())
        };
        let scim_given = first_given(&filter);
        // The indexed lookup: from the unique key and the profile B keeps in memory.
        let indexed = self
            .scim_get(n, &format!("/Users?filter=emails%20eq%20%22{email}%22"))
            .await;
        let screen = self
            .http
            .get(format!("{}/employees?status=all&limit=100", n.base))
            .header(reqwest::header::COOKIE, cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(screen.status(), StatusCode::OK);
        let screen = screen.text().await.unwrap();
        let given = item
            .as_ref()
            .map(|e| e["given_name"].as_str().unwrap().to_string());
        Seen {
            on_screen: screen.contains(email)
                && given.as_ref().is_none_or(|g| screen.contains(g.as_str())),
            given,
            active: in_active,
            scim_given,
            scim_indexed_given: first_given(&indexed),
        }
    }

    /// The given name SCIM `GET /Users/{id}` answers on `n` (`None`: 404).
    async fn scim_given_by_id(&self, n: &Rosterd, id: &str) -> Option<String> {
        let r = self
            .scim_req(n, reqwest::Method::GET, &format!("/Users/{id}"))
            .send()
            .await
            .unwrap();
        let (st, v) = body(r).await;
        match st {
            StatusCode::NOT_FOUND => None,
            StatusCode::OK => Some(v["name"]["givenName"].as_str().unwrap().to_string()),
            st => panic!("GET /Users/{id}: {st} {v}"),
        }
    }

    /// The counts: SCIM's unfiltered total, the admin list's totals, and
    /// the `/metrics` gauges (active, inactive).
    async fn counts(&self, n: &Rosterd) -> (u64, u64, u64, String) {
        let scim = self.scim_get(n, "/Users?count=1").await["totalResults"]
            .as_u64()
            .unwrap();
        let (_, active) = self.get(n, "/api/v1/employees?status=active&limit=1").await;
        let (_, inactive) = self
            .get(n, "/api/v1/employees?status=inactive&limit=1")
            .await;
        let metrics = self
            .http
            .get(format!("{}/metrics", n.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let gauges: Vec<&str> = metrics
            .lines()
            .filter(|l| l.contains("employees{status="))
            .collect();
        (
            scim,
            active["total"].as_u64().unwrap(),
            inactive["total"].as_u64().unwrap(),
            gauges.join(" "),
        )
    }

    async fn sign_in(&self, n: &Rosterd) -> String {
        let r = self
            .http
            .post(format!("{}/sign-in", n.base))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs([
                        ("login", ""),
                        ("password", ""),
                        ("token", self.admin.as_str()),
                    ])
                    .finish(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.text().await);
        r.headers()[reqwest::header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string()
    }

    async fn screen_status(&self, n: &Rosterd, cookie: &str) -> StatusCode {
        self.http
            .get(format!("{}/employees", n.base))
            .header(reqwest::header::COOKIE, cookie)
            .send()
            .await
            .unwrap()
            .status()
    }
}

#[derive(Debug, PartialEq)]
struct Seen {
    /// The given name in the admin list (`None`: not listed).
    given: Option<String>,
    /// Listed among the active.
    active: bool,
    /// The given name in the SCIM filter's first match.
    scim_given: Option<String>,
    /// The given name `emails eq` finds (the indexed lookup).
    scim_indexed_given: Option<String>,
    on_screen: bool,
}

fn counted(c: &(u64, u64, u64, String), total: u64, active: u64) -> bool {
    c.0 == total
        && c.1 == active
        && c.2 == total - active
        && c.3.contains(&format!("status=\"active\"}} {active}"))
        && c.3
            .contains(&format!("status=\"inactive\"}} {}", total - active))
}

/// The same `If-Match` SCIM PATCH through both nodes at once: one 200, one
/// 412; the same new email through both at once, by SCIM POST and by the
/// admin API: one 201, one 409 each time; a position made on A is usable on
/// B at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_race_on_one_database() {
    let n = start_nodes();
    let (st, ada) = n
        .api(
            &n.a,
            reqwest::Method::POST,
            "/api/v1/employees",
            Some(employee("Ada", "L", "ada@example.com")),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ada}");
    let id = ada["id"].as_str().unwrap().to_string();
    let user = n.scim_get(&n.b, &format!("/Users/{id}")).await;
    let etag = user["meta"]["version"].as_str().unwrap().to_string();
    assert!(etag.starts_with("W/"), "{user}");
    for round in 0..3 {
        let patch = |node: &Rosterd, given: &str| {
            n.scim_req(node, reqwest::Method::PATCH, &format!("/Users/{id}"))
                .header("If-Match", etag.clone())
                .json(&json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "name.givenName", "value": given}]
                }))
                .send()
        };
        let (ra, rb) = tokio::join!(patch(&n.a, "FromA"), patch(&n.b, "FromB"));
        let (sa, sb) = (ra.unwrap().status(), rb.unwrap().status());
        let mut got = [sa.as_u16(), sb.as_u16()];
        got.sort();
        if round == 0 {
            assert_eq!(got, [200, 412], "A {sa}, B {sb}");
        } else {
            // The etag is stale now: both refused.
            assert_eq!(got, [412, 412], "A {sa}, B {sb}");
        }
    }
    let after = n.scim_get(&n.a, &format!("/Users/{id}")).await;
    let given = after["name"]["givenName"].as_str().unwrap();
    assert!(given == "FromA" || given == "FromB", "{after}");
    assert_eq!(
        n.scim_get(&n.b, &format!("/Users/{id}")).await["name"]["givenName"],
        given
    );

    // One new email through both at once, by SCIM.
    for round in 0..3 {
        let email = format!("grace{round}@example.com");
        let post = |node: &Rosterd| {
            n.scim_req(node, reqwest::Method::POST, "/Users")
                .json(&json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": email,
                    "name": {"givenName": "Grace", "familyName": "H"},
                    "emails": [{"value": email, "primary": true}]
                }))
                .send()
        };
        let (ra, rb) = tokio::join!(post(&n.a), post(&n.b));
        let mut got = [ra.unwrap().status().as_u16(), rb.unwrap().status().as_u16()];
        got.sort();
        assert_eq!(got, [201, 409], "SCIM POST {email}");
    }
    // And by the admin API (the second differs only in case: folded, as on one node).
    for round in 0..3 {
        let email = format!("lin{round}@example.com");
        let create = |node: &'static str, email: String| {
            let node = if node == "a" { &n.a } else { &n.b };
            n.api(
                node,
                reqwest::Method::POST,
                "/api/v1/employees",
                Some(employee("Lin", "N", &email)),
            )
        };
        let ((sa, va), (sb, vb)) = tokio::join!(
            create("a", email.clone()),
            create("b", email.to_uppercase())
        );
        let mut got = [sa.as_u16(), sb.as_u16()];
        got.sort();
        assert_eq!(got, [201, 409], "admin create {email}: {va} / {vb}");
    }
    // Each email once, on both nodes' lists.
    for node in [&n.a, &n.b] {
        let (_, all) = n.get(node, "/api/v1/employees?status=all&limit=100").await;
        assert_eq!(all["total"], 7, "{all}");
    }

    // A position made on A (SCIM Groups) is usable on B at once.
    let r = n
        .scim_req(&n.a, reqwest::Method::POST, "/Groups")
        .json(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Night Shift"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let mut nina = employee("Nina", "S", "nina@example.com");
    nina["positions"] = json!(["Night Shift"]);
    let (st, v) = n
        .api(&n.b, reqwest::Method::POST, "/api/v1/employees", Some(nina))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["positions"], json!(["Night Shift"]));
    let (_, cat) = n.get(&n.b, "/api/v1/catalog").await;
    assert!(
        cat["positions"].to_string().contains("Night Shift"),
        "{cat}"
    );
    n.a.stop();
    n.b.stop();
}

/// A create, an update, an email change, a deactivation and a delete on A
/// are seen by B at once (the next request, no wait) in the admin list, SCIM
/// filters (`emails eq` among them), SCIM `GET /Users/{id}`, the counts and
/// the Employees screen; a console session made on A works on B,
/// and signing out on A ends it on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_one_node_are_seen_at_once_on_the_other() {
    let n = start_nodes();
    let cookie = n.sign_in(&n.a).await;
    assert_eq!(
        n.screen_status(&n.b, &cookie).await,
        StatusCode::OK,
        "A's session on B"
    );
    let email = "mae@example.com";
    let gone = |given: Option<&str>, active: bool| Seen {
        given: given.map(str::to_string),
        active,
        scim_given: given.map(str::to_string),
        scim_indexed_given: given.map(str::to_string),
        on_screen: given.is_some(),
    };
    assert_eq!(n.seen(&n.b, email, &cookie).await, gone(None, false));
    let c = n.counts(&n.b).await;
    assert!(counted(&c, 0, 0), "{c:?}");

    // Create on A.
    let (st, mae) = n
        .api(
            &n.a,
            reqwest::Method::POST,
            "/api/v1/employees",
            Some(employee("Mae", "J", email)),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{mae}");
    let id = mae["id"].as_str().unwrap().to_string();
    assert_eq!(n.seen(&n.b, email, &cookie).await, gone(Some("Mae"), true));
    assert_eq!(n.scim_given_by_id(&n.b, &id).await.as_deref(), Some("Mae"));
    let c = n.counts(&n.b).await;
    assert!(counted(&c, 1, 1), "{c:?}");

    // Update on A.
    let (st, v) = n
        .api(
            &n.a,
            reqwest::Method::PATCH,
            &format!("/api/v1/employees/{id}"),
            Some(json!({"given_name": "Maya"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(n.seen(&n.b, email, &cookie).await, gone(Some("Maya"), true));
    assert_eq!(n.scim_given_by_id(&n.b, &id).await.as_deref(), Some("Maya"));

    // An email change on A and back: B's indexed lookup follows the key.
    let other = "mae.j@example.com";
    for (from, to) in [(email, other), (other, email)] {
        let (st, v) = n
            .api(
                &n.a,
                reqwest::Method::PATCH,
                &format!("/api/v1/employees/{id}"),
                Some(json!({"email": to})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(
            n.seen(&n.b, from, &cookie).await,
            gone(None, false),
            "{from}"
        );
        assert_eq!(
            n.seen(&n.b, to, &cookie).await,
            gone(Some("Maya"), true),
            "{to}"
        );
    }

    // Deactivation on A.
    let (st, v) = n
        .api(
            &n.a,
            reqwest::Method::POST,
            &format!("/api/v1/employees/{id}/deactivate"),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let s = n.seen(&n.b, email, &cookie).await;
    assert_eq!(
        (s.given.as_deref(), s.active),
        (Some("Maya"), false),
        "{s:?}"
    );
    let c = n.counts(&n.b).await;
    assert!(counted(&c, 1, 0), "{c:?}");

    // Delete on A (SCIM DELETE).
    let r = n
        .scim_req(&n.a, reqwest::Method::DELETE, &format!("/Users/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(n.seen(&n.b, email, &cookie).await, gone(None, false));
    assert_eq!(n.scim_given_by_id(&n.b, &id).await, None);
    let c = n.counts(&n.b).await;
    assert!(counted(&c, 0, 0), "{c:?}");
    // And the other way: a create on B is on A's list.
    let (st, _) = n
        .api(
            &n.b,
            reqwest::Method::POST,
            "/api/v1/employees",
            Some(employee("Bo", "K", "bo@example.com")),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(
        n.seen(&n.a, "bo@example.com", &cookie).await,
        gone(Some("Bo"), true)
    );

    // Signing out on A ends the session on B.
    let r = n
        .http
        .post(format!("{}/sign-out", n.a.base))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        n.screen_status(&n.b, &cookie).await,
        StatusCode::SEE_OTHER,
        "ended on B"
    );
    n.a.stop();
    n.b.stop();
}
