//! RFC 7644 behaviour: discovery, auth, CRUD, filters, paging, projection, ETags,
//! errors.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn discovery_describes_the_server() {
    let s = Scim::start().await;
    let r = s.get("/ServiceProviderConfig").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/scim+json")
    );
    assert_eq!(r.body["patch"]["supported"], true);
    assert_eq!(r.body["bulk"]["supported"], false);
    assert!(r.body["bulk"]["maxPayloadSize"].as_u64().unwrap() >= 1024);
    assert_eq!(r.body["filter"]["supported"], true);
    assert!(r.body["filter"]["maxResults"].as_u64().unwrap() >= 1);
    assert_eq!(r.body["etag"]["supported"], true);
    assert_eq!(r.body["sort"]["supported"], true);

    let r = s.get("/ResourceTypes").await;
    assert_eq!(r.body["totalResults"], 2);
    let r = s.get("/ResourceTypes/User").await;
    assert_eq!(r.body["endpoint"], "/Users");
    assert_eq!(r.body["schemaExtensions"][0]["schema"], ENTERPRISE);

    let r = s.get("/Schemas").await;
    assert_eq!(r.body["totalResults"], 4);
    let r = s.get(&format!("/Schemas/{USER}")).await;
    let attrs = r.body["attributes"].as_array().unwrap();
    let user_name = attrs.iter().find(|a| a["name"] == "userName").unwrap();
    assert_eq!(user_name["uniqueness"], "server");
    assert_eq!(user_name["caseExact"], false);
    assert_eq!(user_name["required"], true);
    let password = attrs.iter().find(|a| a["name"] == "password").unwrap();
    assert_eq!(password["mutability"], "writeOnly");
    assert_eq!(password["returned"], "never");
    assert!(
        attrs.iter().all(|a| a["name"] != "title"),
        "unstored attributes are not advertised"
    );
    let r = s.get(&format!("/Schemas/{ROSTERD}")).await;
    let role = r.body["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "role")
        .unwrap()
        .clone();
    assert!(
        role["canonicalValues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "Technician"),
        "{role}"
    );
    s.get(&format!("/Schemas/{ENTERPRISE}")).await;
    s.get("/Schemas/urn:nope").await.assert_error(404, None);
    s.get("/ResourceTypes/Nope").await.assert_error(404, None);

    for path in [
        "/ServiceProviderConfig",
        "/Schemas",
        "/ResourceTypes",
        "/ResourceTypes/User",
    ] {
        s.post(path, json!({})).await.assert_error(405, None);
        s.delete(path).await.assert_error(405, None);
    }
    s.get("/NoSuchEndpoint").await.assert_error(404, None);
    s.post("/Bulk", json!({})).await.assert_error(501, None);
}

#[tokio::test]
async fn missing_or_bad_token_is_401() {
    let s = Scim::start().await;
    let c = reqwest::Client::new();
    let r = c.get(format!("{}/Users", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("www-authenticate").is_some());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "401");
    let r = c
        .get(format!("{}/Users", s.base))
        .bearer_auth("not-the-token-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .get(format!("{}/ServiceProviderConfig", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn create_get_replace_delete() {
    let s = Scim::start().await;
    let (user, mut body) = s.user_body("crud");
    body["externalId"] = json!(format!("ext-{}", uniq()));
    body["phoneNumbers"] = json!([
        {"value": "+1 555 0199", "type": "mobile"},
        {"value": "tel:+1-555-0100;ext=42", "type": "work"}
    ]);
    body["photos"] = json!([{"value": "https://cdn.example.com/p.png", "type": "photo"}]);
    body[ENTERPRISE] = json!({"employeeNumber": "701984", "department": "Field Ops", "division": "North", "costCenter": "4130", "organization": "Acme"});
    let r = s.post("/Users", body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:#}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert!(
        r.header("location")
            .unwrap()
            .ends_with(&format!("/Users/{id}"))
    );
    assert_eq!(r.header("etag"), Some("W/\"1\""));
    assert_eq!(r.body["meta"]["version"], "W/\"1\"");
    assert_eq!(r.body["meta"]["resourceType"], "User");
    assert!(r.body["meta"]["created"].is_string());
    assert!(r.body["meta"]["lastModified"].is_string());
    assert_eq!(r.body["userName"], user);
    assert_eq!(r.body["emails"][0]["value"], user);
    assert_eq!(r.body["phoneNumbers"][1]["value"], "tel:+1-555-0100;ext=42");
    assert_eq!(r.body["phoneNumbers"][0]["value"], "+1 555 0199");
    assert_eq!(
        r.body["photos"][0]["value"],
        "https://cdn.example.com/p.png"
    );
    assert_eq!(r.body[ENTERPRISE]["employeeNumber"], "701984");
    assert_eq!(r.body[ENTERPRISE]["department"], "Field Ops");
    // Division names a catalog business unit: the business unit follows it.
    assert_eq!(r.body[ROSTERD]["businessUnit"], "North");
    assert_eq!(r.body[ROSTERD]["role"], "Technician", "the default role");
    assert_eq!(r.body[ROSTERD]["accountStatus"], "later");

    let g = s.get(&format!("/Users/{id}")).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.body["id"], id.as_str());

    // PUT replaces: the office phone is gone; active is kept when missing.
    let mut put = body.clone();
    put["displayName"] = json!("Renamed Person");
    put.as_object_mut().unwrap().remove("phoneNumbers");
    put.as_object_mut().unwrap().remove("active");
    let r = s.put(&format!("/Users/{id}"), put).await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    assert_eq!(r.body["displayName"], "Renamed Person");
    assert!(r.body.get("phoneNumbers").is_none());
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["meta"]["version"], "W/\"2\"");

    let r = s.delete(&format!("/Users/{id}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    s.get(&format!("/Users/{id}")).await.assert_error(404, None);
    s.delete(&format!("/Users/{id}"))
        .await
        .assert_error(404, None);
}

#[tokio::test]
async fn create_rules() {
    let s = Scim::start().await;
    // userName that is an email stands in for a missing email.
    let u = format!("mailless.{}@example.com", uniq());
    let v = s
        .create_user(json!({"schemas": [USER], "userName": u, "name": {"givenName": "A", "familyName": "B"}}))
        .await;
    assert_eq!(v["emails"][0]["value"], u.as_str());
    // Neither an email nor an email-like userName: 400 invalidValue.
    s.post("/Users", json!({"userName": format!("plain{}", uniq()), "name": {"givenName": "A", "familyName": "B"}}))
        .await
        .assert_error(400, Some("invalidValue"));
    // Missing userName: 400.
    s.post("/Users", json!({"name": {"givenName": "A", "familyName": "B"}, "emails": [{"value": "x@example.com"}]}))
        .await
        .assert_error(400, Some("invalidValue"));
    // Unknown role: 400 invalidValue (the extension's `role` is read-only; the
    // role is written through `roles`).
    let (_, mut b) = s.user_body("badrole");
    b["roles"] = json!([{"value": "Astronaut"}]);
    s.post("/Users", b)
        .await
        .assert_error(400, Some("invalidValue"));
    // Catalog-bound extension attributes.
    let (_, mut b) = s.user_body("ext");
    b["roles"] = json!([{"value": "dispatcher"}]);
    b[ROSTERD] = json!({"role": "Viewer", "positions": ["driver", "Mechanic"], "businessUnit": "south", "enabled": false, "permissions": {"grant": ["reports.view"]}});
    let v = s.create_user(b).await;
    assert_eq!(v[ROSTERD]["role"], "Dispatcher");
    assert_eq!(v[ROSTERD]["positions"], json!(["Driver", "Mechanic"]));
    assert_eq!(v[ROSTERD]["businessUnit"], "South");
    assert_eq!(v[ROSTERD]["enabled"], false);
    assert_eq!(v["groups"].as_array().unwrap().len(), 2);
    assert!(
        v[ROSTERD]["effectivePermissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "reports.view")
    );
}

#[tokio::test]
async fn bad_input_changes_nothing() {
    let s = Scim::start().await;
    let (user, body) = s.user_body("dup");
    let v = s.create_user(body.clone()).await;
    let id = v["id"].as_str().unwrap().to_string();

    // Duplicate userName/email (any case): 409 uniqueness.
    let mut dup = body.clone();
    dup["userName"] = json!(user.to_uppercase());
    s.post("/Users", dup)
        .await
        .assert_error(409, Some("uniqueness"));
    // Duplicate email on another user.
    let (_, mut other) = s.user_body("other");
    other["emails"] = json!([{"value": user.to_uppercase(), "primary": true}]);
    s.post("/Users", other)
        .await
        .assert_error(409, Some("uniqueness"));
    let r = s.filter_users(&format!("emails.value eq \"{user}\"")).await;
    assert_eq!(r.body["totalResults"], 1);

    // Malformed JSON.
    let r = s
        .client
        .post(format!("{}/Users", s.base))
        .bearer_auth(&s.token)
        .header("content-type", "application/scim+json")
        .body("{\"userName\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["scimType"], "invalidSyntax");
    assert_eq!(e["status"], "400");
    let r = s
        .client
        .patch(format!("{}/Users/{id}", s.base))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Unknown attribute in a filter.
    s.filter_users("nosuchattr eq \"x\"")
        .await
        .assert_error(400, Some("invalidFilter"));
    s.filter_users("userName eq")
        .await
        .assert_error(400, Some("invalidFilter"));
    s.filter_users("userName zz \"x\"")
        .await
        .assert_error(400, Some("invalidFilter"));

    // Invalid PATCH path.
    s.patch_ops(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "nosuch.attr", "value": "x"}]),
    )
    .await
    .assert_error(400, Some("invalidPath"));
    s.patch_ops(
        &format!("/Users/{id}"),
        json!([
            {"op": "replace", "path": "displayName", "value": "Should Not Stick"},
            {"op": "replace", "path": "emails[type eq", "value": "x"}
        ]),
    )
    .await
    .assert_error(400, Some("invalidPath"));

    // Stale If-Match.
    let r = s
        .send(Method::PATCH, &format!("/Users/{id}"), Some(json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "displayName", "value": "Nope"}]})), &[("if-match", "W/\"99\"")])
        .await;
    r.assert_error(412, None);
    let r = s
        .send(
            Method::PUT,
            &format!("/Users/{id}"),
            Some(body.clone()),
            &[("if-match", "W/\"0\"")],
        )
        .await;
    r.assert_error(412, None);
    s.send(
        Method::DELETE,
        &format!("/Users/{id}"),
        None,
        &[("if-match", "W/\"7\"")],
    )
    .await
    .assert_error(412, None);

    // Nothing above changed the user.
    let g = s.get(&format!("/Users/{id}")).await;
    assert_eq!(g.body["meta"]["version"], "W/\"1\"", "{:#}", g.body);
    assert_eq!(g.body["displayName"], v["displayName"]);
}

#[tokio::test]
async fn etags_and_conditional_requests() {
    let s = Scim::start().await;
    let (_, body) = s.user_body("etag");
    let v = s.create_user(body).await;
    let id = v["id"].as_str().unwrap();
    let r = s
        .send(
            Method::GET,
            &format!("/Users/{id}"),
            None,
            &[("if-none-match", "W/\"1\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let r = s
        .send(Method::PATCH, &format!("/Users/{id}"), Some(json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "displayName", "value": "Matched"}]})), &[("if-match", "W/\"1\"")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    assert_eq!(r.header("etag"), Some("W/\"2\""));
    let r = s
        .send(
            Method::GET,
            &format!("/Users/{id}"),
            None,
            &[("if-none-match", "W/\"1\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s
        .send(
            Method::DELETE,
            &format!("/Users/{id}"),
            None,
            &[("if-match", "W/\"2\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn filter_grammar() {
    let s = Scim::start().await;
    let tag = uniq();
    let mut ids = Vec::new();
    for (i, (given, family, dept)) in [
        ("Ann", "Lee", "Ops"),
        ("Bob", "O'Malley", "Sales"),
        ("Cy", "Lee", "Ops"),
    ]
    .iter()
    .enumerate()
    {
        let user = format!("f{i}.{tag}@corp.example.com");
        let v = s
            .create_user(json!({
                "userName": user,
                "externalId": format!("ext-{tag}-{i}"),
                "name": {"givenName": given, "familyName": family},
                "emails": [{"value": user, "type": "work", "primary": true}],
                "active": i != 2,
                ENTERPRISE: {"department": dept, "employeeNumber": format!("{tag}{i}")},
            }))
            .await;
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let count = |f: String| {
        let s = &s;
        async move {
            let r = s.filter_users(&f).await;
            assert_eq!(r.status, StatusCode::OK, "{f}: {:#}", r.body);
            assert_eq!(r.body["schemas"][0], LIST);
            r.body["totalResults"].as_u64().unwrap()
        }
    };
    assert_eq!(
        count(format!("userName eq \"F0.{tag}@CORP.example.com\"")).await,
        1,
        "userName is caseExact=false"
    );
    assert_eq!(
        count(format!("USERNAME EQ \"f0.{tag}@corp.example.com\"")).await,
        1,
        "names and operators ignore case"
    );
    assert_eq!(
        count(format!("externalId eq ext-{tag}-1")).await,
        1,
        "unquoted literal"
    );
    assert_eq!(
        count(format!("externalId eq \"EXT-{tag}-1\"")).await,
        0,
        "externalId is caseExact"
    );
    assert_eq!(count(format!("id eq \"{}\"", ids[2])).await, 1);
    assert_eq!(
        count(format!("emails.value eq \"f1.{tag}@corp.example.com\"")).await,
        1
    );
    assert_eq!(
        count(format!(
            "emails[type eq \"work\"].value eq \"f1.{tag}@corp.example.com\""
        ))
        .await,
        1
    );
    assert_eq!(
        count(format!(
            "emails[type eq \"work\" and value co \"{tag}@corp\"]"
        ))
        .await,
        3
    );
    assert_eq!(
        count(format!(
            "userName sw f and userName ew \"{tag}@corp.example.com\""
        ))
        .await,
        3
    );
    assert_eq!(
        count(format!("userName co \"{tag}\" and name.familyName eq Lee")).await,
        2
    );
    assert_eq!(
        count(format!(
            "userName co \"{tag}\" and (name.givenName eq Ann or name.givenName eq Bob)"
        ))
        .await,
        2
    );
    assert_eq!(
        count(format!(
            "userName co \"{tag}\" and not (name.familyName eq \"Lee\")"
        ))
        .await,
        1
    );
    assert_eq!(
        count(format!("userName co \"{tag}\" and active eq false")).await,
        1
    );
    assert_eq!(
        count(format!("userName co \"{tag}\" and active eq \"True\"")).await,
        2
    );
    assert_eq!(
        count(format!(
            "name.familyName co \"O'Mal\" and userName co \"{tag}\""
        ))
        .await,
        1
    );
    assert_eq!(
        count(format!(
            "{ENTERPRISE}:department eq \"ops\" and userName co \"{tag}\""
        ))
        .await,
        2,
        "URN-qualified path"
    );
    assert_eq!(
        count(format!("{ENTERPRISE}:employeeNumber eq \"{tag}1\"")).await,
        1
    );
    assert_eq!(
        count(format!("{USER}:userName eq \"f2.{tag}@corp.example.com\"")).await,
        1
    );
    assert_eq!(
        count(format!(
            "userName co \"{tag}\" and meta.created gt 2020-01-01T00:00:00Z"
        ))
        .await,
        3
    );
    assert_eq!(
        count(format!(
            "userName co \"{tag}\" and meta.lastModified lt \"2020-01-01T00:00:00Z\""
        ))
        .await,
        0
    );
    assert_eq!(
        count(format!("userName co \"{tag}\" and title pr")).await,
        0,
        "an unstored standard attribute never matches"
    );
    assert_eq!(
        count(format!("userName co \"{tag}\" and externalId pr")).await,
        3
    );
    assert_eq!(
        count(format!("userName co \"{tag}\" and phoneNumbers pr")).await,
        0
    );
    assert_eq!(
        // "f2" alone could occur in the random hex tag itself.
        count(format!("userName co \"{tag}\" and emails co \"f2.{tag}\"")).await,
        1
    );
}

#[tokio::test]
async fn paging_sorting_and_projection() {
    let s = Scim::start().await;
    let tag = uniq();
    for i in 0..7 {
        let user = format!("{}-{tag}@example.com", (b'g' - i as u8) as char);
        s.create_user(
            json!({"userName": user, "name": {"givenName": "P", "familyName": format!("N{i}")}}),
        )
        .await;
    }
    let f = format!("userName ew \"-{tag}@example.com\"");
    let url = |extra: &str| {
        reqwest::Url::parse_with_params(
            &format!("{}/Users?{extra}", s.base),
            &[("filter", f.as_str())],
        )
        .unwrap()
        .to_string()
    };
    let r = s.get(&url("startIndex=1&count=3")).await;
    assert_eq!(r.body["totalResults"], 7);
    assert_eq!(r.body["itemsPerPage"], 3);
    assert_eq!(r.body["startIndex"], 1);
    let mut seen: Vec<String> = Vec::new();
    for start in [1, 4, 7] {
        let r = s.get(&url(&format!("startIndex={start}&count=3"))).await;
        for u in r.body["Resources"].as_array().unwrap() {
            seen.push(u["id"].as_str().unwrap().to_string());
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 7, "pages cover every match once");
    // count=0: only totalResults.
    let r = s.get(&url("count=0")).await;
    assert_eq!(r.body["totalResults"], 7);
    assert_eq!(r.body["Resources"], json!([]));
    // Clamping: startIndex<1 is 1, count<0 is 0, count above the max is the max.
    let r = s.get(&url("startIndex=-5&count=2")).await;
    assert_eq!(r.body["startIndex"], 1);
    assert_eq!(r.body["itemsPerPage"], 2);
    let r = s.get(&url("count=-1")).await;
    assert_eq!(r.body["itemsPerPage"], 0);
    s.get(&url("count=many"))
        .await
        .assert_error(400, Some("invalidValue"));
    // sortBy / sortOrder.
    let r = s.get(&url("sortBy=userName&count=3")).await;
    let names: Vec<&str> = r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userName"].as_str().unwrap())
        .collect();
    assert!(
        names[0].starts_with('a') && names[1].starts_with('b') && names[2].starts_with('c'),
        "{names:?}"
    );
    let r = s
        .get(&url(
            "sortBy=userName&sortOrder=descending&startIndex=2&count=2",
        ))
        .await;
    let names: Vec<&str> = r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userName"].as_str().unwrap())
        .collect();
    assert!(
        names[0].starts_with('f') && names[1].starts_with('e'),
        "{names:?}"
    );
    // attributes / excludedAttributes.
    let r = s
        .get(&url("attributes=userName,name.familyName&count=1"))
        .await;
    let u = &r.body["Resources"][0];
    assert!(
        u["id"].is_string() && u["userName"].is_string() && u["name"]["familyName"].is_string()
    );
    assert!(u.get("emails").is_none() && u["name"].get("givenName").is_none());
    let r = s
        .get(&url(&format!(
            "excludedAttributes=emails,{ENTERPRISE}&count=1"
        )))
        .await;
    let u = &r.body["Resources"][0];
    assert!(u.get("emails").is_none() && u.get(ENTERPRISE).is_none() && u["userName"].is_string());
    // POST /.search
    let r = s
        .post("/Users/.search", json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": f, "startIndex": 2, "count": 2, "attributes": ["userName"]}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    assert_eq!(r.body["totalResults"], 7);
    assert_eq!(r.body["startIndex"], 2);
    assert_eq!(r.body["Resources"].as_array().unwrap().len(), 2);
    assert!(r.body["Resources"][0].get("name").is_none());
}

#[tokio::test]
async fn content_types() {
    let s = Scim::start().await;
    let (_, body) = s.user_body("ct");
    // application/json requests are accepted (Okta's spec test).
    let r = s
        .client
        .post(format!("{}/Users", s.base))
        .bearer_auth(&s.token)
        .header("content-type", "application/json; charset=utf-8")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/scim+json")
    );
    // Other media types are refused as SCIM errors.
    let r = s
        .client
        .post(format!("{}/Users", s.base))
        .bearer_auth(&s.token)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Accept: application/json only → application/json (OneLogin).
    let r = s
        .send(
            Method::GET,
            "/ServiceProviderConfig",
            None,
            &[("accept", "application/json")],
        )
        .await;
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    // Oversized body → 413 SCIM error.
    let big = json!({"userName": "x".repeat(2 * 1024 * 1024)});
    s.post("/Users", big).await.assert_error(413, None);
}

#[tokio::test]
async fn scim_changes_are_audited_under_the_client_name() {
    let s = Scim::in_process("").await;
    let (_, body) = s.user_body("audit");
    let v = s.create_user(body).await;
    let id: rosterd::employee::EmployeeId = v["id"].as_str().unwrap().parse().unwrap();
    s.patch_ops(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    let roster = s.roster().unwrap();
    let log = roster.audit(Some(id), None, 10).unwrap();
    assert_eq!(log.len(), 2);
    assert!(
        log.iter()
            .all(|e| e.actor.kind == rosterd::store::ActorKind::Scim && e.actor.name == "test-idp")
    );
    assert_eq!(log[0].action.as_str(), "update");
    assert_eq!(log[1].action.as_str(), "create");
    s.stop().await;
}

#[tokio::test]
async fn scim_is_off_without_clients_and_positions_persist() {
    let dir = tempfile::tempdir().unwrap();
    let text = crate::common::shipped_config_text();
    let mut env = vec![
        ("ROSTERD_LISTEN".to_string(), "127.0.0.1:0".to_string()),
        (
            "ROSTERD_DATA_DIR".to_string(),
            dir.path().display().to_string(),
        ),
    ];
    // The shipped config generates a token for a `default` client.
    let config = rosterd::config::parse(std::path::Path::new("t.toml"), &text, &env).unwrap();
    let d = rosterd::daemon::start(config).await.unwrap();
    let url = format!("http://{}/scim/v2/Users", d.addr);
    let token = std::fs::read_to_string(dir.path().join("scim.token")).unwrap();
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = reqwest::Client::new()
        .get(&url)
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    d.stop().await.unwrap();
    // Without clients and without generate_token, SCIM is off.
    env.push(("ROSTERD_SCIM__GENERATE_TOKEN".into(), "false".into()));
    let config = rosterd::config::parse(std::path::Path::new("t.toml"), &text, &env).unwrap();
    let d = rosterd::daemon::start(config).await.unwrap();
    let r = reqwest::get(format!("http://{}/scim/v2/Users", d.addr))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let ids: Vec<_> = d
        .roster
        .positions()
        .unwrap()
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect();
    assert_eq!(ids.len(), 6, "seeded from the config");
    d.stop().await.unwrap();
    // Same ids after a restart.
    let config = rosterd::config::parse(std::path::Path::new("t.toml"), &text, &env).unwrap();
    let d = rosterd::daemon::start(config).await.unwrap();
    let again: Vec<_> = d
        .roster
        .positions()
        .unwrap()
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect();
    assert_eq!(ids, again);
    d.stop().await.unwrap();
}

#[tokio::test]
async fn scim_defaults_come_from_the_scim_section() {
    let s = Scim::in_process("default_role = \"viewer\"\naccount_status = \"invite\"").await;
    let (_, body) = s.user_body("defaults");
    let v = s.create_user(body).await;
    assert_eq!(v[ROSTERD]["role"], "Viewer");
    assert_eq!(v[ROSTERD]["accountStatus"], "invite");
    // An explicit role wins over the default.
    let (_, mut body) = s.user_body("explicit");
    body["roles"] = json!([{"value": "Dispatcher"}]);
    assert_eq!(s.create_user(body).await[ROSTERD]["role"], "Dispatcher");
    s.stop().await;
}

#[tokio::test]
async fn password_is_write_only_and_the_client_decides_what_it_means() {
    // passwords = "ignore" (the default): the account follows scim.account_status.
    let s = Scim::in_process("").await;
    let (_, mut body) = s.user_body("pw");
    body["password"] = json!("1mz050nq");
    let v = s.create_user(body).await;
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v[ROSTERD]["accountStatus"], "later");
    let r = s
        .patch_ops(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "password", "value": "a-Very-long-Passw0rd"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    assert_eq!(r.body[ROSTERD]["accountStatus"], "later");
    let roster = s.roster().unwrap();
    let eid = id.parse().unwrap();
    let e = roster.get(eid).unwrap();
    assert!(
        e.password_hash.is_none(),
        "an ignored password is not stored"
    );
    let notes: Vec<String> = roster
        .audit(Some(eid), None, 50)
        .unwrap()
        .iter()
        .flat_map(|a| a.changes.iter())
        .filter(|c| c.field == "note")
        .map(|c| c.after.to_string())
        .collect();
    assert!(notes.iter().any(|n| n.contains("ignored")), "{notes:?}");
    assert!(!format!("{notes:?}").contains("1mz050nq"));
    s.stop().await;

    // passwords = "accept": stored as sent, whatever the local policy says.
    let s = Scim::in_process_client("passwords = \"accept\"", "").await;
    let (_, body) = s.user_body("pw");
    let v = s.create_user(body).await;
    let id = v["id"].as_str().unwrap().to_string();
    let r = s
        .patch_ops(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "password", "value": "short"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    assert!(!r.body.to_string().contains("short"));
    assert_eq!(r.body[ROSTERD]["accountStatus"], "credentials");
    // accountStatus is readOnly: a change is ignored.
    let r = s
        .patch_ops(&format!("/Users/{id}"), json!([{"op": "replace", "path": format!("{ROSTERD}:accountStatus"), "value": "invite"}]))
        .await;
    assert_eq!(r.body[ROSTERD]["accountStatus"], "credentials");
    s.stop().await;
}
