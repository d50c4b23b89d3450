//! The admin API over real HTTP: every domain rule, the audit log, bulk partial
//! failure, pagination under concurrent inserts, index consistency.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestServer, employee};

async fn total(s: &TestServer, query: &str) -> u64 {
    let (st, v) = s.get(&format!("/api/v1/employees?{query}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["total"].as_u64().expect("total")
}

async fn audit_len(s: &TestServer) -> usize {
    let (_, v) = s.get("/api/v1/audit?limit=1000").await;
    v["items"].as_array().expect("items").len()
}

#[tokio::test]
async fn create_returns_the_profile_with_derived_fields() {
    let s = TestServer::start().await;
    let v = s
        .create(json!({
            "given_name": " Ana ",
            "family_name": "Lopez",
            "email": "Ana.Lopez@Example.com",
            "positions": ["driver", "Crew Lead"],
            "role": "dispatcher",
            "business_unit": "north",
            "mobile_phone": "+1 555 0100",
            "office_phone": {"number": "+1 555 0199", "extension": "42"},
            "photo_url": "https://cdn.example.com/ana.png",
            "permissions": {"grant": ["billing.manage"], "revoke": ["reports.view"]},
        }))
        .await;
    assert_eq!(v["given_name"], "Ana");
    assert_eq!(v["display_name"], "Ana Lopez");
    assert_eq!(v["email"], "Ana.Lopez@Example.com");
    assert_eq!(
        v["username"], "Ana.Lopez@Example.com",
        "username defaults to the email"
    );
    assert_eq!(
        v["positions"],
        json!(["Crew Lead", "Driver"]),
        "catalog spelling, sorted"
    );
    assert_eq!(v["role"], "Dispatcher");
    assert_eq!(v["business_unit"], "North");
    assert_eq!(v["office_phone"]["extension"], "42");
    assert_eq!(v["account_status"], "later");
    assert_eq!(v["enabled"], true);
    assert_eq!(v["active"], true);
    assert_eq!(v["version"], 1);
    let eff: Vec<&str> = v["effective_permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(eff.contains(&"jobs.dispatch"), "role default");
    assert!(eff.contains(&"billing.manage"), "granted");
    assert!(!eff.contains(&"reports.view"), "revoked");

    // Read back by id, by email in other case, and by username.
    let id = v["id"].as_str().unwrap();
    for key in [id, "ana.lopez@example.COM"] {
        let (st, got) = s.get(&format!("/api/v1/employees/{key}")).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(got["id"], id);
    }
    s.stop().await;
}

#[tokio::test]
async fn email_is_unique_ignoring_case_and_a_conflict_changes_nothing() {
    let s = TestServer::start().await;
    s.create(employee("Bo", "Berg", "bo@example.com")).await;
    let before_audit = audit_len(&s).await;
    let (st, v) = s
        .post(
            "/api/v1/employees",
            employee("Bob", "Other", "BO@Example.COM"),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["field"], "email");
    assert!(
        v["message"].as_str().unwrap().contains("BO@Example.COM"),
        "{v}"
    );
    assert_eq!(total(&s, "status=all").await, 1);
    assert_eq!(
        audit_len(&s).await,
        before_audit,
        "no audit entry for a refused write"
    );

    // Username is unique too: a second profile may not take the first's username.
    let mut body = employee("Cy", "Dahl", "cy@example.com");
    body["username"] = json!("BO@example.com");
    let (st, v) = s.post("/api/v1/employees", body).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(v["field"], "username");
    s.stop().await;
}

#[tokio::test]
async fn catalog_bound_fields_are_checked() {
    let s = TestServer::start().await;
    for (field, value, name) in [
        ("role", json!("Astronaut"), "role"),
        ("positions", json!(["Driver", "Pilot"]), "positions"),
        ("business_unit", json!("Mars"), "business_unit"),
        (
            "permissions",
            json!({"grant": ["launch.rockets"]}),
            "permissions.grant",
        ),
    ] {
        let mut body = employee("Di", "Eck", "di@example.com");
        body[field] = value;
        let (st, v) = s.post("/api/v1/employees", body).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {v}");
        assert_eq!(v["field"], name);
        assert!(v["message"].as_str().unwrap().contains("catalog"), "{v}");
    }
    assert_eq!(total(&s, "status=all").await, 0);

    let (st, cat) = s.get("/api/v1/catalog").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        cat["roles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "Technician")
    );
    assert!(cat["positions"].as_array().unwrap().len() >= 2);
    assert!(cat["permissions"].as_array().unwrap().len() >= 2);
    s.stop().await;
}

#[tokio::test]
async fn one_part_names_are_names_and_phones_take_real_forms() {
    let s = TestServer::start().await;
    let (st, v) = s
        .post(
            "/api/v1/employees",
            json!({"given_name": "Sukarno", "email": "sukarno@b.example"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(
        (v["family_name"].as_str(), v["display_name"].as_str()),
        (Some(""), Some("Sukarno"))
    );
    let (st, v) = s
        .post(
            "/api/v1/employees",
            json!({"display_name": "Teuku", "email": "teuku@b.example",
                   "office_phone": {"number": "+1 617 555 9548 ext. 8413"},
                   "mobile_phone": "+1 617 555 0199 x12"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(
        (v["given_name"].as_str(), v["display_name"].as_str()),
        (Some(""), Some("Teuku"))
    );
    assert_eq!(
        v["office_phone"],
        json!({"number": "+1 617 555 9548", "extension": "8413"})
    );
    assert_eq!(v["mobile_phone"], "+1 617 555 0199 x12");
    let id = v["id"].as_str().unwrap().to_string();
    // The extension on its own, written as people write it.
    let (st, v) = s
        .patch(
            &format!("/api/v1/employees/{id}"),
            json!({"office_phone": {"number": "tel:+1-617-555-9548", "extension": "x 77"}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v["office_phone"],
        json!({"number": "+1-617-555-9548", "extension": "77"})
    );
    // Removing the only name part is refused.
    let (st, v) = s
        .patch(
            &format!("/api/v1/employees/{id}"),
            json!({"display_name": ""}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "name", "{v}");
    s.stop().await;
}

#[tokio::test]
async fn field_rules_give_clear_errors() {
    let s = TestServer::start().await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"given_name": "A", "family_name": "B", "email": "nope", "role": "Viewer"}),
            "email",
        ),
        // One name part is enough (see `one_part_names_are_names`); none is not.
        (
            json!({"given_name": " ", "family_name": "", "email": "a@b.example", "role": "Viewer"}),
            "name",
        ),
        (
            json!({"given_name": "A", "family_name": "B", "email": "a@b.example", "mobile_phone": "call me"}),
            "mobile_phone",
        ),
        (
            json!({"given_name": "A", "family_name": "B", "email": "a@b.example", "photo_url": "http://x.example/p.png"}),
            "photo_url",
        ),
        (
            json!({"given_name": "A", "family_name": "B", "email": "a@b.example", "office_phone": {"number": "555 0100", "extension": "ext four"}}),
            "office_phone.extension",
        ),
        (
            json!({"given_name": "A", "family_name": "B", "email": "a@b.example", "account_status": "credentials"}),
            "password",
        ),
        (
            json!({"given_name": "A", "family_name": "B", "email": "a@b.example", "account_status": "credentials", "password": "short"}),
            "password",
        ),
        (
            json!({"given_name": "A", "family_name": "B", "email": "a@b.example", "password": "long enough password"}),
            "password",
        ),
        (
            json!({"given_name": "A", "family_name": "B", "email": "a@b.example", "username": "has space"}),
            "username",
        ),
    ];
    for (body, field) in cases {
        let (st, v) = s.post("/api/v1/employees", body.clone()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["field"], field, "{body}: {v}");
        assert!(
            !v["message"].as_str().unwrap().contains("short"),
            "never echo the password"
        );
    }
    // Malformed JSON and unknown fields are 400; the wrong media type is 415.
    let resp = s
        .client
        .post(s.url("/api/v1/employees"))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let mut body = employee("A", "B", "a@b.example");
    body["favourite_colour"] = json!("blue");
    let (st, v) = s.post("/api/v1/employees", body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["message"].as_str().unwrap().contains("favourite_colour"));
    assert_eq!(total(&s, "status=all").await, 0);
    s.stop().await;
}

#[tokio::test]
async fn credentials_store_only_a_hash_and_never_return_it() {
    let s = TestServer::start().await;
    let password = "correct horse battery staple";
    let mut body = employee("Ed", "Fox", "ed@example.com");
    body["account_status"] = json!("credentials");
    body["username"] = json!("efox");
    body["password"] = json!(password);
    let v = s.create(body).await;
    assert_eq!(v["account_status"], "credentials");
    assert_eq!(v["has_password"], true);
    let id = v["id"].as_str().unwrap().to_string();
    let (_, shown) = s.get(&format!("/api/v1/employees/{id}")).await;
    let (_, audit) = s.get(&format!("/api/v1/audit?employee={id}")).await;
    for text in [v.to_string(), shown.to_string(), audit.to_string()] {
        assert!(!text.contains(password), "password leaked: {text}");
        assert!(!text.contains("argon2"), "hash leaked: {text}");
        assert!(!text.contains("password_hash"), "hash field leaked: {text}");
    }
    let changes = audit["items"][0]["changes"].as_array().unwrap();
    let pw = changes
        .iter()
        .find(|c| c["field"] == "password")
        .expect("password change audited");
    assert_eq!(pw["after"], "***");
    // The stored hash is argon2id.
    let stored = s.roster().get(id.parse().unwrap()).unwrap();
    assert!(stored.password_hash.unwrap().0.starts_with("$argon2id$"));
    s.stop().await;
}

#[tokio::test]
async fn updates_keep_indexes_consistent() {
    let s = TestServer::start().await;
    let a = s.create(employee("Fay", "Gale", "fay@example.com")).await;
    let id = a["id"].as_str().unwrap();

    // Change the email: the derived username follows; the old email is free.
    let (st, v) = s
        .patch(
            &format!("/api/v1/employees/{id}"),
            json!({"email": "Fay.Gale@Example.org"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["username"], "Fay.Gale@Example.org");
    assert_eq!(v["version"], 2);
    let (st, _) = s.get("/api/v1/employees/fay@example.com").await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "old email no longer finds anyone"
    );
    let (st, got) = s.get("/api/v1/employees/fay.gale@example.org").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(got["id"], id);
    // The old email and username can be taken by someone else now...
    let b = s.create(employee("Gus", "Hay", "FAY@example.com")).await;
    // ...and the new one cannot.
    let (st, v) = s
        .post(
            "/api/v1/employees",
            employee("Hal", "Ivy", "fay.gale@EXAMPLE.org"),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");

    // Explicit username change; moving B's email onto A is refused and changes nothing.
    let (st, v) = s
        .patch(
            &format!("/api/v1/employees/{id}"),
            json!({"username": "fgale"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = s.get("/api/v1/employees/FGALE").await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = s
        .patch(
            &format!("/api/v1/employees/{id}"),
            json!({"email": "fay@EXAMPLE.com"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["field"], "email");
    let (_, now) = s.get(&format!("/api/v1/employees/{id}")).await;
    assert_eq!(now["email"], "Fay.Gale@Example.org");
    assert_eq!(now["version"], 3);
    let (_, bb) = s.get("/api/v1/employees/fay@example.com").await;
    assert_eq!(bb["id"], b["id"]);
    s.stop().await;
}

#[tokio::test]
async fn partial_update_positions_and_clearing() {
    let s = TestServer::start().await;
    let mut body = employee("Ida", "Jo", "ida@example.com");
    body["positions"] = json!(["Driver"]);
    body["business_unit"] = json!("South");
    body["mobile_phone"] = json!("555 0101");
    let v = s.create(body).await;
    let path = format!("/api/v1/employees/{}", v["id"].as_str().unwrap());
    let (st, v) = s
        .patch(
            &path,
            json!({"add_positions": ["Mechanic", "driver"], "remove_positions": ["Driver"],
                   "business_unit": null, "mobile_phone": null, "enabled": false}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["positions"], json!(["Mechanic"]));
    assert_eq!(v["business_unit"], Value::Null);
    assert_eq!(v["mobile_phone"], Value::Null);
    assert_eq!(v["enabled"], false);
    assert_eq!(v["given_name"], "Ida", "untouched");
    // An unknown position in an update is refused and changes nothing.
    let (st, e) = s
        .patch(
            &path,
            json!({"add_positions": ["Pilot"], "given_name": "X"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (_, after) = s.get(&path).await;
    assert_eq!(after["given_name"], "Ida");
    assert_eq!(after["version"], v["version"]);
    // A stale If-Match is refused.
    let resp = s
        .client
        .patch(s.url(&path))
        .bearer_auth(&s.token)
        .header("if-match", "W/\"1\"")
        .json(&json!({"given_name": "Late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    // An update that changes nothing does not bump the version.
    let (_, same) = s.patch(&path, json!({"given_name": "Ida"})).await;
    assert_eq!(same["version"], v["version"]);
    s.stop().await;
}

#[tokio::test]
async fn deactivate_activate_and_status_filter() {
    let s = TestServer::start().await;
    let a = s.create(employee("Jan", "Kay", "jan@example.com")).await;
    s.create(employee("Kim", "Lee", "kim@example.com")).await;
    let id = a["id"].as_str().unwrap();
    let (st, v) = s
        .post(&format!("/api/v1/employees/{id}/deactivate"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["active"], false);
    assert_eq!(v["deactivated_by"]["name"], "admin");
    assert_eq!(total(&s, "").await, 1, "default lists active only");
    assert_eq!(total(&s, "status=inactive").await, 1);
    assert_eq!(total(&s, "status=all").await, 2);
    let (_, inactive) = s.get("/api/v1/employees?status=inactive").await;
    assert_eq!(inactive["items"][0]["id"], id);
    // Inactive profiles are kept and readable.
    let (st, _) = s.get(&format!("/api/v1/employees/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = s
        .post(&format!("/api/v1/employees/{id}/activate"), json!({}))
        .await;
    assert_eq!(v["active"], true);
    assert_eq!(v["deactivated_by"], Value::Null);
    assert_eq!(total(&s, "").await, 2);
    let (st, _) = s
        .post(
            "/api/v1/employees/6a0e2d4c-0000-4000-8000-000000000000/activate",
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn filters_on_every_column_and_sorting() {
    let s = TestServer::start().await;
    let rows = [
        (
            "Zoe",
            "Adams",
            "zoe@north.example",
            "Technician",
            "North",
            vec!["Driver"],
            true,
        ),
        (
            "Yan",
            "Brown",
            "yan@south.example",
            "Dispatcher",
            "South",
            vec!["Dispatcher"],
            true,
        ),
        (
            "Xia",
            "Clark",
            "xia@north.example",
            "Technician",
            "North",
            vec!["Mechanic", "Driver"],
            false,
        ),
        (
            "Wes",
            "Adams-Diaz",
            "wes@hq.example",
            "Viewer",
            "Head Office",
            vec![],
            true,
        ),
    ];
    for (g, f, e, role, bu, pos, enabled) in rows {
        s.create(
            json!({"given_name": g, "family_name": f, "email": e, "role": role,
                         "business_unit": bu, "positions": pos, "enabled": enabled}),
        )
        .await;
    }
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["given_name"].as_str().unwrap().to_string())
            .collect()
    };
    for (q, want) in [
        ("name=adams", vec!["Wes", "Zoe"]),
        ("email=north", vec!["Xia", "Zoe"]),
        ("position=driver", vec!["Xia", "Zoe"]),
        ("role=technician", vec!["Xia", "Zoe"]),
        ("business_unit=head%20office", vec!["Wes"]),
        ("enabled=false", vec!["Xia"]),
        ("account_status=later", vec!["Wes", "Xia", "Yan", "Zoe"]),
        ("role=technician&enabled=true", vec!["Zoe"]),
    ] {
        let (st, v) = s
            .get(&format!("/api/v1/employees?{q}&sort=given_name"))
            .await;
        assert_eq!(st, StatusCode::OK, "{q}: {v}");
        assert_eq!(names(&v), want, "{q}");
        assert_eq!(v["total"], want.len(), "{q}");
    }
    let (_, v) = s.get("/api/v1/employees?sort=-family_name").await;
    assert_eq!(names(&v), vec!["Xia", "Yan", "Wes", "Zoe"]);
    let (_, v) = s.get("/api/v1/employees?sort=email").await;
    assert_eq!(names(&v), vec!["Wes", "Xia", "Yan", "Zoe"]);
    let (_, v) = s.get("/api/v1/employees?sort=business_unit").await;
    assert_eq!(names(&v)[0], "Wes");
    for bad in [
        "sort=shoe_size",
        "colour=red",
        "status=sleeping",
        "limit=0",
        "cursor=garbage",
        "enabled=maybe",
    ] {
        let (st, v) = s.get(&format!("/api/v1/employees?{bad}")).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert!(v["message"].as_str().unwrap().len() > 10, "{v}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_is_stable_while_profiles_are_added() {
    let s = TestServer::start().await;
    let mut original = HashSet::new();
    for i in 0..60 {
        let v = s
            .create(employee(
                &format!("P{i:03}"),
                "Page",
                &format!("p{i}@example.com"),
            ))
            .await;
        original.insert(v["id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("/api/v1/employees?limit=7&sort=name&cursor={c}"),
            None => "/api/v1/employees?limit=7&sort=name".to_string(),
        };
        let (st, v) = s.get(&q).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        for it in v["items"].as_array().unwrap() {
            seen.push(it["id"].as_str().unwrap().to_string());
        }
        // Between pages, others add profiles that sort before and after the cursor.
        let (a, b) = tokio::join!(
            s.post(
                "/api/v1/employees",
                employee(
                    &format!("A{pages}"),
                    "Early",
                    &format!("a{pages}@example.com")
                )
            ),
            s.post(
                "/api/v1/employees",
                employee(
                    &format!("Z{pages}"),
                    "Late",
                    &format!("z{pages}@example.com")
                )
            ),
        );
        assert_eq!(a.0, StatusCode::CREATED);
        assert_eq!(b.0, StatusCode::CREATED);
        pages += 1;
        assert!(pages < 100, "pagination does not end");
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no profile appears twice");
    assert!(
        original.is_subset(&unique),
        "every profile present at the start is listed"
    );
    s.stop().await;
}

#[tokio::test]
async fn bulk_partial_failure_changes_the_rest() {
    let s = TestServer::start().await;
    let mut ids = Vec::new();
    for i in 0..497 {
        let e = s
            .roster()
            .create(
                &rosterd::store::Actor::admin("seed"),
                serde_json::from_value(employee(
                    "Bulk",
                    &format!("N{i}"),
                    &format!("b{i}@example.com"),
                ))
                .unwrap(),
            )
            .await
            .unwrap();
        ids.push(e.id.to_string());
    }
    ids.insert(10, "not-a-uuid".into());
    ids.insert(200, "6a0e2d4c-0000-4000-8000-000000000001".into());
    ids.insert(400, "".into());
    assert_eq!(ids.len(), 500);

    // Dry run: reports, changes nothing.
    let (st, v) = s
        .post(
            "/api/v1/employees/bulk",
            json!({"action": "deactivate", "ids": ids, "dry_run": true}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["changed"], 497);
    assert_eq!(total(&s, "status=inactive").await, 0);

    let (st, v) = s
        .post(
            "/api/v1/employees/bulk",
            json!({"action": "deactivate", "ids": ids}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["succeeded"], 497);
    assert_eq!(v["failed"], 3);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 500);
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| r["ok"] == false)
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        failed,
        vec!["not-a-uuid", "6a0e2d4c-0000-4000-8000-000000000001", ""]
    );
    assert!(
        results
            .iter()
            .filter(|r| r["ok"] == false)
            .all(|r| r["error"].as_str().is_some())
    );
    assert_eq!(total(&s, "status=inactive").await, 497);
    // Again: nothing left to change, nothing fails among the real ids.
    let (_, v) = s
        .post(
            "/api/v1/employees/bulk",
            json!({"action": "deactivate", "ids": &ids[..5]}),
        )
        .await;
    assert_eq!(v["changed"], 0);
    let (st, v) = s
        .post(
            "/api/v1/employees/bulk",
            json!({"action": "explode", "ids": []}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn audit_log_records_who_what_when() {
    let s = TestServer::start().await;
    let v = s.create(employee("Lou", "May", "lou@example.com")).await;
    let id = v["id"].as_str().unwrap();
    s.patch(
        &format!("/api/v1/employees/{id}"),
        json!({"role": "Viewer", "add_positions": ["Driver"]}),
    )
    .await;
    s.post(&format!("/api/v1/employees/{id}/deactivate"), json!({}))
        .await;
    s.create(employee("Other", "Person", "other@example.com"))
        .await;

    let (st, v) = s.get(&format!("/api/v1/audit?employee={id}")).await;
    assert_eq!(st, StatusCode::OK);
    let items = v["items"].as_array().unwrap();
    let actions: Vec<&str> = items
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["deactivate", "update", "create"],
        "newest first, only this employee"
    );
    for i in items {
        assert_eq!(i["actor"]["kind"], "admin");
        assert_eq!(i["actor"]["name"], "admin");
        assert_eq!(i["employee_id"], id);
        assert!(i["at"].as_str().unwrap().starts_with("20"));
    }
    let upd = &items[1]["changes"];
    let role = upd
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "role")
        .unwrap();
    assert_eq!(role["before"], "Technician");
    assert_eq!(role["after"], "Viewer");
    let pos = upd
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "positions")
        .unwrap();
    assert_eq!(pos["before"], json!([]));
    assert_eq!(pos["after"], json!(["Driver"]));
    let act = items[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "active")
        .unwrap();
    assert_eq!(
        (act["before"].clone(), act["after"].clone()),
        (json!(true), json!(false))
    );
    // The whole log has the other employee too.
    let (_, all) = s.get("/api/v1/audit").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 4);
    // Paging through the log.
    let (_, p1) = s.get("/api/v1/audit?limit=3").await;
    let before = p1["next_before"].as_u64().unwrap();
    let (_, p2) = s
        .get(&format!("/api/v1/audit?limit=3&before={before}"))
        .await;
    assert_eq!(p2["items"].as_array().unwrap().len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn authentication_and_limits() {
    let s = TestServer::start().await;
    let resp = s
        .client
        .get(s.url("/api/v1/employees"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().get("www-authenticate").is_some());
    let resp = s
        .client
        .get(s.url("/api/v1/employees"))
        .bearer_auth("wrong-token-wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    // Health endpoints need no token.
    let resp = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = s.client.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // An oversized body is 413 and changes nothing.
    let mut body = employee("Big", "Body", "big@example.com");
    body["display_name"] = json!("x".repeat(2 * 1024 * 1024));
    let (st, v) = s.post("/api/v1/employees", body).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(total(&s, "status=all").await, 0);
    s.stop().await;
}

#[tokio::test]
async fn photos_upload_with_type_and_size_checks() {
    let s = TestServer::start_with("").await;
    let v = s.create(employee("Pam", "Quinn", "pam@example.com")).await;
    let path = format!("/api/v1/employees/{}/photo", v["id"].as_str().unwrap());
    let png = b"\x89PNG\r\n\x1a\nfake-but-bytes".to_vec();
    let put = |ct: &str, body: Vec<u8>| {
        s.client
            .put(s.url(&path))
            .bearer_auth(&s.token)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let resp = put("image/png", png.clone()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["photo_url"], format!("{path}"));
    assert_eq!(e["photo_content_type"], "image/png");
    let got = s
        .client
        .get(s.url(&path))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(got.headers()["content-type"], "image/png");
    assert_eq!(got.bytes().await.unwrap().to_vec(), png);
    let resp = put("image/gif", png.clone()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // The bytes are checked, not only the declared type.
    for (ct, bytes, says) in [
        (
            "image/png",
            b"<svg onload=alert(1)>".to_vec(),
            "not an image of type image/png",
        ),
        (
            "image/png",
            b"\xFF\xD8\xFF\xE0jpeg".to_vec(),
            "image/jpeg, not image/png",
        ),
        (
            "image/webp",
            b"RIFF\0\0\0\0WAVE".to_vec(),
            "not an image of type image/webp",
        ),
    ] {
        let resp = put(ct, bytes).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let v: Value = resp.json().await.unwrap();
        assert!(v["message"].as_str().unwrap().contains(says), "{v}");
    }
    let webp = b"RIFF\x10\0\0\0WEBPVP8 ".to_vec();
    assert_eq!(
        put("image/webp", webp).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        put("image/png", png.clone()).await.unwrap().status(),
        StatusCode::OK
    );
    let resp = put("image/jpeg", vec![0u8; 2 * 1024 * 1024 + 10])
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Still the PNG.
    let got = s
        .client
        .get(s.url(&path))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().to_vec(), png);
    let resp = s
        .client
        .delete(s.url(&path))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let got = s
        .client
        .get(s.url(&path))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}

/// The list's mail status filter follows the outbox: an invitation queued (no
/// mail worker runs here) is `queued`, a profile without one is `none`; with
/// no sync source configured nobody is owned; a bad value is a 400 naming the
/// field. The admin list reads only the page's profiles, whatever the filter.
#[tokio::test]
async fn mail_status_and_source_filters() {
    let s = TestServer::start().await;
    let invited = s
        .create(json!({"given_name": "Ivo", "family_name": "Invited",
                       "email": "ivo@example.com", "account_status": "invite"}))
        .await;
    s.create(json!({"given_name": "Lea", "family_name": "Later", "email": "lea@example.com"}))
        .await;
    let (st, v) = s.get("/api/v1/employees?mail_status=queued").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{v}");
    assert_eq!(items[0]["id"], invited["id"]);
    assert_eq!(total(&s, "mail_status=none").await, 1);
    assert_eq!(total(&s, "mail_status=sent").await, 0);
    assert_eq!(total(&s, "source=none").await, 2);
    assert_eq!(total(&s, "source=hr").await, 0);
    let (st, v) = s.get("/api/v1/employees?sort=-mail_status").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v["items"][0]["id"], invited["id"],
        "queued sorts after none"
    );
    let (st, v) = s.get("/api/v1/employees?mail_status=lost").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("mail_status"), "{v}");
    s.stop().await;
}
