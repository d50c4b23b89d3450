//! One test per quirk in the research file's §2 "IdP quirks the server must
//! tolerate", each sending the IdP's exact request form and checking what was
//! stored (read back over SCIM).

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::*;

async fn new_user(s: &Scim, tag: &str) -> (String, String) {
    let (user, body) = s.user_body(tag);
    let v = s.create_user(body).await;
    (v["id"].as_str().unwrap().to_string(), user)
}

// ---- Microsoft Entra ID ----

#[tokio::test]
async fn entra_1_capitalised_op() {
    let s = Scim::start().await;
    let (id, _) = new_user(&s, "e1").await;
    let r = s
        .patch_ops(
            &format!("/Users/{id}"),
            json!([
                {"op": "Replace", "path": "displayName", "value": "Cap Op"},
                {"op": "Add", "path": "nickName", "value": "ignored"},
                {"op": "Remove", "path": "phoneNumbers"}
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    assert_eq!(
        s.get(&format!("/Users/{id}")).await.body["displayName"],
        "Cap Op"
    );
}

#[tokio::test]
async fn entra_2_booleans_as_strings() {
    let s = Scim::start().await;
    let u = format!("e2.{}@example.com", uniq());
    let v = s
        .create_user(json!({
            "schemas": [USER], "userName": u, "active": "True",
            "name": {"givenName": "E", "familyName": "Two"},
            "emails": [{"value": u, "type": "work", "primary": "True"}]
        }))
        .await;
    assert_eq!(v["active"], true);
    let id = v["id"].as_str().unwrap();
    let r = s
        .patch_ops(
            &format!("/Users/{id}"),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    assert_eq!(s.get(&format!("/Users/{id}")).await.body["active"], false);
    let r = s
        .filter_users(&format!("userName eq \"{u}\" and active eq \"False\""))
        .await;
    assert_eq!(r.body["totalResults"], 1);
    s.patch_ops(
        &format!("/Users/{id}"),
        json!([{"op": "Replace", "path": "active", "value": "maybe"}]),
    )
    .await
    .assert_error(400, Some("invalidValue"));
}

#[tokio::test]
async fn entra_3_no_path_patch_with_path_keys() {
    let s = Scim::start().await;
    let (id, _) = new_user(&s, "e3").await;
    let r = s
        .patch_ops(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "value": {
                "displayName": "No Path",
                "name.givenName": "Nora",
                "name.familyName": "Path",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "E-3",
                "active": false
            }}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    let g = s.get(&format!("/Users/{id}")).await.body;
    assert_eq!(g["displayName"], "No Path");
    assert_eq!(g["name"]["givenName"], "Nora");
    assert_eq!(g["name"]["familyName"], "Path");
    assert_eq!(g[ENTERPRISE]["employeeNumber"], "E-3");
    assert_eq!(g["active"], false);
}

#[tokio::test]
async fn entra_4_extension_paths_by_longest_prefix() {
    let s = Scim::start().await;
    let (id, _) = new_user(&s, "e4").await;
    let r = s
        .patch_ops(&format!("/Users/{id}"), json!([
            {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Line Maintenance"},
            {"op": "Add", "path": "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:costCenter", "value": "CC-9"},
            {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:displayName", "value": "Core Qualified"},
            {"op": "replace", "path": format!("{ROSTERD}:businessUnit"), "value": "South"}
        ]))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    let g = s.get(&format!("/Users/{id}")).await.body;
    assert_eq!(g[ENTERPRISE]["department"], "Line Maintenance");
    assert_eq!(g[ENTERPRISE]["costCenter"], "CC-9");
    assert_eq!(g["displayName"], "Core Qualified");
    assert_eq!(g[ROSTERD]["businessUnit"], "South");
}

#[tokio::test]
async fn entra_5_manager_shapes() {
    let s = Scim::start().await;
    let (boss, _) = new_user(&s, "boss").await;
    // POST with a bare string manager (SCIMple #1242).
    let (_, mut body) = s.user_body("e5");
    body[ENTERPRISE] = json!({"manager": boss});
    let v = s.create_user(body).await;
    let id = v["id"].as_str().unwrap();
    assert_eq!(
        v[ENTERPRISE]["manager"]["value"],
        boss.as_str(),
        "always returned as a complex object"
    );
    assert!(
        v[ENTERPRISE]["manager"]["$ref"]
            .as_str()
            .unwrap()
            .ends_with(&boss)
    );
    // PATCH with a bare string.
    let path = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager";
    s.patch_ops(
        &format!("/Users/{id}"),
        json!([{"op": "Replace", "path": path, "value": "271"}]),
    )
    .await;
    assert_eq!(
        s.get(&format!("/Users/{id}")).await.body[ENTERPRISE]["manager"],
        json!({"value": "271"})
    );
    // PATCH with an array of {$ref, value} (tutorial form).
    s.patch_ops(
        &format!("/Users/{id}"),
        json!([{"op": "Add", "path": path, "value": [{"$ref": null, "value": "272"}]}]),
    )
    .await;
    assert_eq!(
        s.get(&format!("/Users/{id}")).await.body[ENTERPRISE]["manager"]["value"],
        "272"
    );
    // PATCH with {value}.
    s.patch_ops(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": path, "value": {"value": "273"}}]),
    )
    .await;
    assert_eq!(
        s.get(&format!("/Users/{id}")).await.body[ENTERPRISE]["manager"]["value"],
        "273"
    );
    // Removal: Replace with an empty value (validator).
    let r = s
        .patch_ops(
            &format!("/Users/{id}"),
            json!([{"op": "Replace", "path": path, "value": ""}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    assert!(
        s.get(&format!("/Users/{id}")).await.body[ENTERPRISE]
            .get("manager")
            .is_none()
    );
}

#[tokio::test]
async fn entra_6_filtered_multi_valued_paths_upsert() {
    let s = Scim::start().await;
    let (id, _) = new_user(&s, "e6").await;
    let new_mail = format!("e6new.{}@example.com", uniq());
    let r = s
        .patch_ops(&format!("/Users/{id}"), json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": new_mail},
            {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0101"},
            {"op": "Add", "path": "phoneNumbers[type eq \"work\"].value", "value": "+1 555 0102"},
            {"op": "Add", "path": "phoneNumbers[type eq \"work\"].primary", "value": true},
            {"op": "Add", "path": "phoneNumbers[type eq \"fax\"].value", "value": "+1 555 0103"},
            {"op": "Add", "path": "addresses[type eq \"work\"].formatted", "value": "1 Main St"},
            {"op": "Add", "path": "addresses[type eq \"work\"].locality", "value": "Springfield"}
        ]))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    let g = s.get(&format!("/Users/{id}")).await.body;
    assert_eq!(g["emails"][0]["value"], new_mail.as_str());
    assert_eq!(g["emails"].as_array().unwrap().len(), 1);
    let phones = g["phoneNumbers"].as_array().unwrap();
    assert_eq!(
        phones.len(),
        2,
        "two ops on the same filter made one element: {phones:?}"
    );
    assert!(
        phones
            .iter()
            .any(|p| p["type"] == "mobile" && p["value"] == "+1 555 0101")
    );
    assert!(
        phones
            .iter()
            .any(|p| p["type"] == "work" && p["value"] == "+1 555 0102")
    );
    // The email index follows.
    assert_eq!(
        s.filter_users(&format!("emails.value eq \"{new_mail}\""))
            .await
            .body["totalResults"],
        1
    );
    // Okta-style: add a new work email as an element; it becomes the email.
    let third = format!("e6third.{}@example.com", uniq());
    let r = s
        .patch_ops(&format!("/Users/{id}"), json!([{"op": "add", "path": "emails", "value": [{"value": third, "type": "work", "primary": true}]}]))
        .await;
    assert_eq!(
        r.body["emails"],
        json!([{"value": third, "type": "work", "primary": true}]),
        "{:#}",
        r.body
    );
    // Replace again on an existing element keeps one.
    s.patch_ops(&format!("/Users/{id}"), json!([{"op": "Replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0111"}])).await;
    let g = s.get(&format!("/Users/{id}")).await.body;
    assert_eq!(g["phoneNumbers"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn entra_7_member_removal_with_value_array() {
    let s = Scim::start().await;
    let (a, _) = new_user(&s, "e7a").await;
    let (b, _) = new_user(&s, "e7b").await;
    let g = s.post("/Groups", json!({"schemas": [GROUP], "displayName": format!("E7 {}", uniq()), "members": [{"value": a}, {"value": b}]})).await;
    assert_eq!(g.status, StatusCode::CREATED, "{:#}", g.body);
    let gid = g.body["id"].as_str().unwrap();
    let r = s
        .patch_ops(
            &format!("/Groups/{gid}"),
            json!([{"op": "Remove", "path": "members", "value": [{"value": a}]}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let members = s.get(&format!("/Groups/{gid}")).await.body["members"].clone();
    assert_eq!(
        members.as_array().unwrap().len(),
        1,
        "only the listed member is removed"
    );
    assert_eq!(members[0]["value"], b.as_str());
    // members[value eq "id"] works too.
    s.patch_ops(
        &format!("/Groups/{gid}"),
        json!([{"op": "Remove", "path": format!("members[value eq \"{b}\"]")}]),
    )
    .await;
    assert_eq!(
        s.get(&format!("/Groups/{gid}")).await.body["members"],
        json!([])
    );
}

#[tokio::test]
async fn entra_8_stringified_role_values() {
    let s = Scim::start().await;
    let (_, mut body) = s.user_body("e8");
    body["roles"] = json!([{"primary": "True", "type": "WindowsAzureActiveDirectoryRole", "value": "{\"id\":\"5a1b\",\"value\":\"Dispatcher\",\"displayName\":\"Dispatcher\"}"}]);
    let v = s.create_user(body).await;
    assert_eq!(v[ROSTERD]["role"], "Dispatcher");
    let id = v["id"].as_str().unwrap();
    let r = s
        .patch_ops(&format!("/Users/{id}"), json!([{"op": "Add", "path": "roles", "value": [{"value": "{\"id\":\"9\",\"value\":\"Viewer\"}"}]}]))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    // rosterd holds one role: the one added last wins.
    let g = s.get(&format!("/Users/{id}")).await.body;
    assert_eq!(g[ROSTERD]["role"], "Viewer");
    assert_eq!(g["roles"], json!([{"value": "Viewer", "primary": true}]));
    let r = s
        .patch_ops(&format!("/Users/{id}"), json!([{"op": "Replace", "path": "roles", "value": [{"value": "{\"id\":\"9\",\"value\":\"Dispatcher\"}"}]}]))
        .await;
    assert_eq!(r.body[ROSTERD]["role"], "Dispatcher");
}

#[tokio::test]
async fn entra_9_matching_queries() {
    let s = Scim::start().await;
    let tag = uniq();
    let u = format!("jyoung.{tag}@example.com");
    let ext = format!("jyoung{tag}");
    s.create_user(json!({"userName": u, "externalId": ext, "name": {"givenName": "Jay", "familyName": "Employee"}, "emails": [{"value": u, "type": "work", "primary": true}]})).await;
    for f in [
        format!("userName eq \"{u}\""),
        format!("externalId eq {ext}"),
        format!("externalId eq \"{ext}\""),
        format!("emails[type eq \"work\"].value eq \"{u}\""),
        format!("name.FamilyName eq Employee and (emails.Value co \"{tag}\")"),
        format!("userName sw jyoung.{tag}"),
        format!("userName eq \"{u}\" and meta.Created gt 2020-01-01T00:00:00Z"),
    ] {
        let r = s.filter_users(&f).await;
        assert_eq!(r.status, StatusCode::OK, "{f}: {:#}", r.body);
        assert_eq!(r.body["totalResults"], 1, "{f}");
    }
    s.filter_users("userName eq \"x\" and")
        .await
        .assert_error(400, Some("invalidFilter"));
    s.filter_users("madeUpAttribute eq \"x\"")
        .await
        .assert_error(400, Some("invalidFilter"));
}

#[tokio::test]
async fn entra_10_test_connection_with_random_guid() {
    let s = Scim::start().await;
    let guid = uuid::Uuid::new_v4();
    for f in [
        format!("id eq \"{guid}\""),
        format!("userName eq \"{guid}\""),
        format!("externalId eq \"{guid}\""),
    ] {
        let r = s.filter_users(&f).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["schemas"][0], LIST);
        assert_eq!(r.body["totalResults"], 0);
        assert_eq!(r.body["Resources"], json!([]));
    }
}

#[tokio::test]
async fn entra_11_noisy_bodies() {
    let s = Scim::start().await;
    let u = format!("e11.{}@example.com", uniq());
    let r = s
        .post(
            "/Users",
            json!({
                "schemas": [USER, ENTERPRISE],
                "externalId": null,
                "UserName": u,
                "Active": "True",
                "DisplayName": "Noisy Body",
                "Name": {"GivenName": "Noisy", "FamilyName": "Body", "middleName": null},
                "Emails": [{"Primary": "True", "Type": "work", "Value": u}],
                "roles": [],
                "title": "Engineer",
                "preferredLanguage": "en-US",
                "addresses": [{"type": "work", "formatted": "1 Main St"}],
                "meta": {"resourceType": "User", "created": "2001-01-01T00:00:00Z"},
                "id": "client-chosen-id",
                "somethingUnknown": {"a": 1},
                ENTERPRISE: {"department": null, "manager": null}
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:#}", r.body);
    let id = r.body["id"].as_str().unwrap();
    assert_ne!(id, "client-chosen-id", "id is readOnly");
    assert_eq!(r.body["userName"], u.as_str());
    assert_eq!(r.body["displayName"], "Noisy Body");
    assert_ne!(r.body["meta"]["created"], "2001-01-01T00:00:00Z");
    assert!(r.body.get("title").is_none());
    // A PUT with a misspelled attribute still gets 200.
    let mut put = r.body.clone();
    put["dispalyName"] = json!("typo");
    let p = s.put(&format!("/Users/{id}"), put).await;
    assert_eq!(p.status, StatusCode::OK, "{:#}", p.body);
    assert_eq!(p.body["displayName"], "Noisy Body");
}

#[tokio::test]
async fn entra_12_lifecycle_soft_delete_and_clearing() {
    let s = Scim::start().await;
    let (id, user) = new_user(&s, "e12").await;
    s.patch_ops(&format!("/Users/{id}"), json!([
        {"op": "Add", "path": "displayName", "value": "Has Things"},
        {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "555 0100"},
        {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Ops"}
    ]))
    .await;
    // Unassign: active=false; the user stays GETtable and filterable.
    s.patch_ops(
        &format!("/Users/{id}"),
        json!([{"op": "Replace", "path": "active", "value": "False"}]),
    )
    .await;
    let g = s.get(&format!("/Users/{id}")).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.body["active"], false);
    assert_eq!(
        s.filter_users(&format!("userName eq \"{user}\""))
            .await
            .body["totalResults"],
        1
    );
    // "" and null clear (SCIM_Null_Update_Test).
    let r = s
        .patch_ops(&format!("/Users/{id}"), json!([
            {"op": "Replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": ""},
            {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": null}
        ]))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    let g = s.get(&format!("/Users/{id}")).await.body;
    assert!(g.get("phoneNumbers").is_none(), "{g:#}");
    assert!(g[ENTERPRISE].get("department").is_none());
    // Restore.
    s.patch_ops(
        &format!("/Users/{id}"),
        json!([{"op": "Replace", "path": "active", "value": "True"}]),
    )
    .await;
    assert_eq!(s.get(&format!("/Users/{id}")).await.body["active"], true);
    // Hard delete 30 days later.
    assert_eq!(
        s.delete(&format!("/Users/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    s.get(&format!("/Users/{id}")).await.assert_error(404, None);
}

#[tokio::test]
async fn entra_13_response_shapes() {
    let s = Scim::start().await;
    let (id, _) = new_user(&s, "e13").await;
    let verbatim = "  Mixed-Case Dept / ÄÖ ";
    s.patch_ops(&format!("/Users/{id}"), json!([{"op": "Add", "path": format!("{ENTERPRISE}:organization"), "value": "ACME corp."}, {"op": "Add", "path": format!("{ENTERPRISE}:department"), "value": verbatim}])).await;
    let g = s.get(&format!("/Users/{id}")).await;
    assert!(
        g.header("content-type")
            .unwrap()
            .starts_with("application/scim+json")
    );
    assert_eq!(g.body["id"], id.as_str());
    assert_eq!(g.body[ENTERPRISE]["organization"], "ACME corp.");
    assert_eq!(g.body[ENTERPRISE]["department"], verbatim.trim());
    let l = s.get("/Users?count=1").await;
    assert_eq!(l.body["schemas"][0], LIST);
    assert!(l.body["Resources"][0]["id"].is_string());
    let gr = s
        .post(
            "/Groups",
            json!({"displayName": format!("E13 {}", uniq()), "members": [{"value": id}]}),
        )
        .await;
    let gid = gr.body["id"].as_str().unwrap();
    let r = s
        .get(&format!("/Groups/{gid}?excludedAttributes=members"))
        .await;
    assert!(r.body.get("members").is_none());
    assert!(r.body["id"].is_string());
    let r = s
        .get(&format!(
            "/Groups?excludedAttributes=members&filter=displayName%20eq%20%22{}%22",
            urlenc(gr.body["displayName"].as_str().unwrap())
        ))
        .await;
    assert_eq!(r.body["totalResults"], 1);
    assert!(r.body["Resources"][0].get("members").is_none());
    let p = s
        .patch_ops(
            &format!("/Groups/{gid}"),
            json!([{"op": "Add", "path": "members", "value": [{"value": id}]}]),
        )
        .await;
    assert_eq!(p.status, StatusCode::NO_CONTENT);
}

fn urlenc(s: &str) -> String {
    s.replace(' ', "%20")
}

// ---- Okta ----

#[tokio::test]
async fn okta_1_existence_check() {
    let s = Scim::start().await;
    let r = s
        .get(&format!(
            "/Users?filter=userName%20eq%20%22nobody.{}%40example.com%22&startIndex=1&count=100",
            uniq()
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["totalResults"], 0);
    assert_eq!(r.body["startIndex"], 1);
    assert!(r.body["itemsPerPage"].is_u64());
}

#[tokio::test]
async fn okta_2_post_with_password_groups_and_external_id() {
    let s = Scim::start().await;
    let u = format!("okta2.{}@example.com", uniq());
    let ext = format!("00ujl29u0le5T6Aj10h7{}", uniq());
    let r = s
        .post(
            "/Users",
            json!({
                "schemas": [USER],
                "userName": u,
                "name": {"givenName": "Okta", "familyName": "Two"},
                "emails": [{"primary": true, "value": u, "type": "work"}],
                "displayName": "Okta Two",
                "locale": "en-US",
                "externalId": ext,
                "groups": [],
                "password": "1mz050nq",
                "active": true
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:#}", r.body);
    assert!(r.body.get("password").is_none());
    assert!(!r.body.to_string().contains("1mz050nq"));
    assert_eq!(r.body["externalId"], ext.as_str());
    // What the password means is the client's setting ([[scim.clients]]
    // passwords); `replays.rs` checks both.
    assert!(r.body.get("groups").is_none());
}

#[tokio::test]
async fn okta_3_duplicate_is_409_uniqueness() {
    let s = Scim::start().await;
    let (_, body) = s.user_body("okta3");
    s.create_user(body.clone()).await;
    s.post("/Users", body)
        .await
        .assert_error(409, Some("uniqueness"));
}

#[tokio::test]
async fn okta_4_put_with_read_only_fields_keeps_active() {
    let s = Scim::start().await;
    let (_, body) = s.user_body("okta4");
    let v = s.create_user(body).await;
    let id = v["id"].as_str().unwrap();
    let mut put = v.clone();
    put.as_object_mut().unwrap().remove("active");
    put["groups"] = json!([]);
    put["name"]["givenName"] = json!("Renamed");
    let r = s.put(&format!("/Users/{id}"), put).await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    assert_eq!(r.body["active"], true, "a missing active does not suspend");
    assert_eq!(r.body["name"]["givenName"], "Renamed");
    // AIW apps deactivate with a full PUT.
    let mut put = r.body.clone();
    put["active"] = json!(false);
    let r = s.put(&format!("/Users/{id}"), put).await;
    assert_eq!(r.body["active"], false);
}

#[tokio::test]
async fn okta_5_deactivate_with_no_path_patch() {
    let s = Scim::start().await;
    let (id, _) = new_user(&s, "okta5").await;
    let r = s
        .patch_ops(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["active"], false);
    let g = s.get(&format!("/Users/{id}")).await;
    assert_eq!(
        g.status,
        StatusCode::OK,
        "a deactivated user stays GETtable"
    );
    assert_eq!(g.body["active"], false);
    s.patch_ops(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "value": {"active": true}}]),
    )
    .await;
    assert_eq!(s.get(&format!("/Users/{id}")).await.body["active"], true);
}

#[tokio::test]
async fn okta_6_pagination_fields_are_integers_and_stable() {
    let s = Scim::start().await;
    for i in 0..3 {
        new_user(&s, &format!("okta6x{i}")).await;
    }
    let a = s.get("/Users?startIndex=1&count=2").await;
    assert!(
        a.body["totalResults"].is_u64()
            && a.body["startIndex"].is_u64()
            && a.body["itemsPerPage"].is_u64()
    );
    let b = s.get("/Users?startIndex=1&count=2").await;
    assert_eq!(
        a.body["Resources"][0]["id"], b.body["Resources"][0]["id"],
        "stable ordering"
    );
    let first = &a.body["Resources"][0];
    for k in ["id", "userName", "active"] {
        assert!(!first[k].is_null(), "{k}");
    }
    assert!(first["name"]["givenName"].is_string() && first["emails"][0]["value"].is_string());
}

#[tokio::test]
async fn okta_7_group_push() {
    let s = Scim::start().await;
    let (a, _) = new_user(&s, "okta7a").await;
    let (b, _) = new_user(&s, "okta7b").await;
    let name = format!("Okta Push {}", uniq());
    let g = s
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": name, "members": []}),
        )
        .await;
    assert_eq!(g.status, StatusCode::CREATED);
    let gid = g.body["id"].as_str().unwrap().to_string();
    // Adds use a members array.
    let r = s.patch_ops(&format!("/Groups/{gid}"), json!([{"op": "add", "path": "members", "value": [{"value": a, "display": "a"}, {"value": b, "display": "b"}]}])).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // Rename echoing the id.
    let renamed = format!("{name} Renamed");
    let r = s
        .patch_ops(
            &format!("/Groups/{gid}"),
            json!([{"op": "replace", "value": {"id": gid, "displayName": renamed}}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:#}", r.body);
    let got = s.get(&format!("/Groups/{gid}")).await.body;
    assert_eq!(got["displayName"], renamed.as_str());
    assert_eq!(got["members"].as_array().unwrap().len(), 2);
    let ua = s.get(&format!("/Users/{a}")).await.body;
    assert!(
        ua[ROSTERD]["positions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == renamed.as_str())
    );
    // Removal by filter with no value.
    s.patch_ops(
        &format!("/Groups/{gid}"),
        json!([{"op": "remove", "path": format!("members[value eq \"{a}\"]")}]),
    )
    .await;
    let got = s.get(&format!("/Groups/{gid}")).await.body;
    assert_eq!(got["members"].as_array().unwrap().len(), 1);
    // Full sync: replace members.
    s.patch_ops(
        &format!("/Groups/{gid}"),
        json!([{"op": "replace", "path": "members", "value": [{"value": a}]}]),
    )
    .await;
    let got = s.get(&format!("/Groups/{gid}")).await.body;
    assert_eq!(got["members"].as_array().unwrap().len(), 1);
    assert_eq!(got["members"][0]["value"], a.as_str());
    let ub = s.get(&format!("/Users/{b}")).await.body;
    assert!(
        !ub[ROSTERD]["positions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == renamed.as_str())
    );
}

// ---- OneLogin, JumpCloud, Google ----

#[tokio::test]
async fn onelogin_template_values_and_lowercase_group_add() {
    let s = Scim::start().await;
    let u = format!("ol.{}@example.com", uniq());
    let r = s
        .send(
            Method::POST,
            "/Users",
            Some(json!({"id": null, "userName": u, "active": "true", "name": {"givenName": "One", "familyName": "Login"}, "emails": [{"value": u, "primary": "true"}], ENTERPRISE: {"manager": {"value": ""}}})),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:#}", r.body);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let id = r.body["id"].as_str().unwrap();
    let g = s
        .post("/Groups", json!({"displayName": format!("OL {}", uniq())}))
        .await;
    let gid = g.body["id"].as_str().unwrap();
    let p = s
        .patch_ops(
            &format!("/Groups/{gid}"),
            json!([{"op": "add", "path": "members", "value": [{"value": id}]}]),
        )
        .await;
    assert_eq!(p.status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get(&format!("/Groups/{gid}")).await.body["members"][0]["value"],
        id
    );
}

#[tokio::test]
async fn jumpcloud_test_connection_creates_and_deletes() {
    let s = Scim::start().await;
    let (id, _) = new_user(&s, "jctest").await;
    let g = s
        .post(
            "/Groups",
            json!({"displayName": format!("JC Test {}", uniq()), "members": [{"value": id}]}),
        )
        .await;
    let gid = g.body["id"].as_str().unwrap().to_string();
    // Azure-style value array without filter, then the RFC filter form.
    let (id2, _) = new_user(&s, "jctest2").await;
    s.patch_ops(
        &format!("/Groups/{gid}"),
        json!([{"op": "add", "path": "members", "value": [{"value": id2}]}]),
    )
    .await;
    s.patch_ops(
        &format!("/Groups/{gid}"),
        json!([{"op": "remove", "path": "members", "value": [{"value": id2}]}]),
    )
    .await;
    assert_eq!(
        s.get(&format!("/Groups/{gid}")).await.body["members"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    s.patch_ops(
        &format!("/Groups/{gid}"),
        json!([{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]),
    )
    .await;
    assert_eq!(
        s.get(&format!("/Groups/{gid}")).await.body["members"],
        json!([])
    );
    assert_eq!(
        s.delete(&format!("/Groups/{gid}")).await.status,
        StatusCode::NO_CONTENT
    );
    s.get(&format!("/Groups/{gid}"))
        .await
        .assert_error(404, None);
    assert_eq!(
        s.delete(&format!("/Users/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    s.get(&format!("/Users/{id}")).await.assert_error(404, None);
}

#[tokio::test]
async fn google_count_probe() {
    let s = Scim::start().await;
    new_user(&s, "google").await;
    let r = s.get("/Users?count=1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["itemsPerPage"], 1);
}

// ---- Cross-IdP ----

#[tokio::test]
async fn filter_visibility_matches_the_uniqueness_check() {
    let s = Scim::start().await;
    let (id, user) = new_user(&s, "vis").await;
    s.patch_ops(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    // Inactive users are found by the filter an IdP runs before creating...
    assert_eq!(
        s.filter_users(&format!("userName eq \"{}\"", user.to_uppercase()))
            .await
            .body["totalResults"],
        1
    );
    assert_eq!(
        s.filter_users(&format!("emails[type eq \"work\"].value eq \"{user}\""))
            .await
            .body["totalResults"],
        1
    );
    // ...which is exactly who the uniqueness check refuses.
    let (_, mut body) = s.user_body("vis2");
    body["userName"] = json!(user);
    s.post("/Users", body)
        .await
        .assert_error(409, Some("uniqueness"));
}
