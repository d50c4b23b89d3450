//! Provisioning flows replayed as the IdPs' public documentation shows them:
//! Microsoft Entra ID ("Use SCIM to provision users and groups", request/response
//! samples) and Okta ("SCIM 2.0 protocol reference" + SPEC test).

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn entra_provisioning_flow() {
    let s = Scim::start().await;
    let tag = uniq();
    let user_name = format!("Test_User_{tag}");
    let email = format!("Test_User_{tag}@testuser.com");
    let external_id = uuid::Uuid::new_v4().to_string();

    // Test Connection: random GUID filter → 200, empty ListResponse.
    let r = s
        .filter_users(&format!("id eq \"{}\"", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(
        (r.status, r.body["totalResults"].as_u64()),
        (StatusCode::OK, Some(0))
    );

    // Matching query misses, then create.
    let r = s
        .filter_users(&format!("userName eq \"{user_name}\""))
        .await;
    assert_eq!(r.body["totalResults"], 0);
    let r = s
        .post("/Users", json!({
            "schemas": [USER, ENTERPRISE],
            "externalId": external_id,
            "userName": user_name,
            "active": true,
            "emails": [{"primary": true, "type": "work", "value": email}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
            "roles": []
        }))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:#}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["externalId"], external_id.as_str());
    assert_eq!(r.body["userName"], user_name.as_str());

    // Retrieval by id, by userName, by externalId (unquoted too).
    assert_eq!(s.get(&format!("/Users/{id}")).await.status, StatusCode::OK);
    for f in [
        format!("userName eq \"{user_name}\""),
        format!("externalId eq \"{external_id}\""),
        format!("externalId eq {external_id}"),
        format!("emails[type eq \"work\"].value eq \"{email}\""),
    ] {
        assert_eq!(s.filter_users(&f).await.body["totalResults"], 1, "{f}");
    }

    // Update: multi-valued property + name.
    let updated_email = format!("updated.{tag}@microsoft.com");
    let r = s
        .patch_ops(
            &format!("/Users/{id}"),
            json!([
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": updated_email},
                {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    assert_eq!(r.body["emails"][0]["value"], updated_email.as_str());
    assert_eq!(r.body["name"]["familyName"], "updatedFamilyName");

    // Manager: add (array form, unqualified path as in the tutorial), then remove.
    let (_, boss) = s.user_body("entraboss");
    let boss_id = s.create_user(boss).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s
        .patch_ops(
            &format!("/Users/{id}"),
            json!([{"op": "Add", "path": "manager", "value": [{"$ref": null, "value": boss_id}]}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    assert_eq!(r.body[ENTERPRISE]["manager"]["value"], boss_id.as_str());
    let r = s
        .patch_ops(&format!("/Users/{id}"), json!([{"op": "Remove", "path": "manager", "value": [{"$ref": null, "value": boss_id}]}]))
        .await;
    assert!(r.body[ENTERPRISE].get("manager").is_none());

    // Disable (no flag: string boolean), stays readable, re-enable.
    s.patch_ops(
        &format!("/Users/{id}"),
        json!([{"op": "Replace", "path": "active", "value": "False"}]),
    )
    .await;
    let g = s.get(&format!("/Users/{id}")).await;
    assert_eq!(
        (g.status, g.body["active"].clone()),
        (StatusCode::OK, json!(false))
    );
    s.patch_ops(
        &format!("/Users/{id}"),
        json!([{"op": "Replace", "path": "active", "value": true}]),
    )
    .await;
    assert_eq!(s.get(&format!("/Users/{id}")).await.body["active"], true);

    // Groups: create, find without members, add and remove a member.
    let gname = format!("displayName {tag}");
    let r = s
        .post("/Groups", json!({"schemas": [GROUP], "externalId": uuid::Uuid::new_v4().to_string(), "displayName": gname, "meta": {"resourceType": "Group"}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:#}", r.body);
    let gid = r.body["id"].as_str().unwrap().to_string();
    let url = reqwest::Url::parse_with_params(
        &format!("{}/Groups", s.base),
        &[
            ("excludedAttributes", "members"),
            ("filter", &format!("displayName eq \"{gname}\"")),
        ],
    )
    .unwrap();
    let r = s.get(url.as_str()).await;
    assert_eq!(r.body["totalResults"], 1);
    assert!(r.body["Resources"][0].get("members").is_none());
    let r = s
        .patch_ops(
            &format!("/Groups/{gid}"),
            json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": id}]}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get(&format!("/Groups/{gid}")).await.body["members"][0]["value"],
        id.as_str()
    );
    let r = s
        .patch_ops(
            &format!("/Groups/{gid}"),
            json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": id}]}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get(&format!("/Groups/{gid}")).await.body["members"],
        json!([])
    );

    // Hard delete.
    assert_eq!(
        s.delete(&format!("/Users/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    s.get(&format!("/Users/{id}")).await.assert_error(404, None);
    assert_eq!(
        s.delete(&format!("/Groups/{gid}")).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn okta_provisioning_flow() {
    let s = Scim::start().await;
    let tag = uniq();
    let user = format!("test.user.{tag}@okta.local");

    // SPEC test: list with count=1 works and has integer paging fields.
    let r = s.get("/Users?count=1&startIndex=1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["totalResults"].is_u64());

    // Existence check misses → create (application/json, password, groups, externalId).
    let r = s
        .get(&format!(
            "/Users?filter=userName%20eq%20%22{user}%22&startIndex=1&count=100"
        ))
        .await;
    assert_eq!(r.body["totalResults"], 0);
    let resp = s
        .client
        .post(format!("{}/Users", s.base))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(&json!({
                "schemas": [USER],
                "userName": user,
                "name": {"givenName": "Test", "familyName": "User"},
                "emails": [{"primary": true, "value": user, "type": "work"}],
                "displayName": "Test User",
                "locale": "en-US",
                "externalId": format!("00ujl29u0le5T6Aj10h7-{}", uniq()),
                "groups": [],
                "password": "1mz050nq",
                "active": true
            }))
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let created: serde_json::Value = resp.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["active"], true);
    assert_eq!(created["name"]["familyName"], "User");

    // Re-create → 409; uppercased userName filter finds it.
    let r = s
        .post(
            "/Users",
            json!({"userName": user, "name": {"givenName": "T", "familyName": "U"}}),
        )
        .await;
    r.assert_error(409, Some("uniqueness"));
    assert_eq!(
        s.filter_users(&format!("userName eq \"{}\"", user.to_uppercase()))
            .await
            .body["totalResults"],
        1
    );
    // Unknown id → 404 with detail.
    s.get(&format!("/Users/{}", uuid::Uuid::new_v4()))
        .await
        .assert_error(404, None);

    // Profile update by PUT with id/meta/groups echoed.
    let mut put = s.get(&format!("/Users/{id}")).await.body;
    put["name"]["givenName"] = json!("Another");
    put["groups"] = json!([]);
    let r = s.put(&format!("/Users/{id}"), put).await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    assert_eq!(r.body["name"]["givenName"], "Another");

    // Deactivate / reactivate by no-path PATCH.
    let r = s
        .patch_ops(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .await;
    assert_eq!(r.body["active"], false);
    assert_eq!(s.get(&format!("/Users/{id}")).await.status, StatusCode::OK);
    let r = s
        .patch_ops(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "value": {"active": true}}]),
        )
        .await;
    assert_eq!(r.body["active"], true);

    // Group Push.
    let r = s
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": format!("Test SCIMv2 {tag}"), "members": []}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let gid = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.get(&format!("/Groups/{gid}")).await.status,
        StatusCode::OK
    );
    let r = s.patch_ops(&format!("/Groups/{gid}"), json!([{"op": "replace", "value": {"id": gid, "displayName": format!("Test SCIMv2 {tag} renamed")}}])).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = s
        .patch_ops(
            &format!("/Groups/{gid}"),
            json!([{"op": "add", "path": "members", "value": [{"value": id, "display": user}]}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let g = s.get(&format!("/Groups/{gid}")).await.body;
    assert_eq!(g["displayName"], format!("Test SCIMv2 {tag} renamed"));
    assert_eq!(g["members"][0]["value"], id.as_str());
    let r = s
        .patch_ops(
            &format!("/Groups/{gid}"),
            json!([{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get(&format!("/Groups/{gid}")).await.body["members"],
        json!([])
    );
    assert_eq!(
        s.delete(&format!("/Groups/{gid}")).await.status,
        StatusCode::NO_CONTENT
    );

    // Optional SPEC step: /Groups answers.
    assert_eq!(s.get("/Groups").await.status, StatusCode::OK);
}
