//! Groups = positions: CRUD, membership through both Group PATCH and the user's
//! positions, catalog effects.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn group_crud_and_membership_are_the_users_positions() {
    let s = Scim::start().await;
    let (_, body) = s.user_body("gm");
    let u = s.create_user(body).await;
    let uid = u["id"].as_str().unwrap().to_string();
    let name = format!("Night Shift {}", uniq());
    let r = s
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": name, "members": [{"value": uid}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:#}", r.body);
    let gid = r.body["id"].as_str().unwrap().to_string();
    assert!(r.header("location").unwrap().ends_with(&gid));
    assert_eq!(r.body["members"][0]["value"], uid.as_str());
    assert_eq!(r.body["meta"]["resourceType"], "Group");
    // Duplicate name (any case): 409.
    s.post("/Groups", json!({"displayName": name.to_uppercase()}))
        .await
        .assert_error(409, Some("uniqueness"));
    s.post("/Groups", json!({"members": []}))
        .await
        .assert_error(400, Some("invalidValue"));
    // Unknown member: 400, nothing created.
    let ghost = uuid::Uuid::new_v4();
    let gname = format!("Ghost {}", uniq());
    s.post(
        "/Groups",
        json!({"displayName": gname.clone(), "members": [{"value": ghost.to_string()}]}),
    )
    .await
    .assert_error(400, Some("invalidValue"));
    // The user's positions show the group; the catalog (Schemas canonicalValues) has it.
    let g = s.get(&format!("/Users/{uid}")).await.body;
    assert!(
        g[ROSTERD]["positions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == name.as_str())
    );
    assert!(
        g["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["value"] == gid.as_str() && x["display"] == name.as_str())
    );
    let sch = s.get(&format!("/Schemas/{ROSTERD}")).await.body;
    let pos = sch["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "positions")
        .unwrap()
        .clone();
    assert!(
        pos["canonicalValues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == name.as_str())
    );
    // Membership via the user's positions shows in the group.
    let (_, body2) = s.user_body("gm2");
    let mut body2 = body2;
    body2[ROSTERD] = json!({"positions": [name]});
    let u2 = s.create_user(body2).await;
    let u2id = u2["id"].as_str().unwrap().to_string();
    let members = s.get(&format!("/Groups/{gid}")).await.body["members"].clone();
    assert_eq!(members.as_array().unwrap().len(), 2);
    // Filters on Groups.
    let r = s
        .get(&format!(
            "/Groups?filter=displayName%20eq%20%22{}%22",
            name.replace(' ', "%20")
        ))
        .await;
    assert_eq!(r.body["totalResults"], 1);
    let r = s
        .get(&format!(
            "/Groups?filter=members%5Bvalue%20eq%20%22{u2id}%22%5D"
        ))
        .await;
    assert!(
        r.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["id"] == gid.as_str())
    );
    s.get("/Groups?filter=bogus%20eq%201")
        .await
        .assert_error(400, Some("invalidFilter"));
    // PUT: rename and replace members.
    let renamed = format!("{name} B");
    let r = s
        .put(
            &format!("/Groups/{gid}"),
            json!({"schemas": [GROUP], "displayName": renamed, "members": [{"value": u2id}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    assert_eq!(r.body["displayName"], renamed.as_str());
    assert_eq!(r.body["members"].as_array().unwrap().len(), 1);
    let g = s.get(&format!("/Users/{uid}")).await.body;
    assert!(
        g[ROSTERD]["positions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p != renamed.as_str() && p != name.as_str())
    );
    // PATCH remove all members without value; bad paths.
    s.patch_ops(
        &format!("/Groups/{gid}"),
        json!([{"op": "remove", "path": "members"}]),
    )
    .await;
    assert_eq!(
        s.get(&format!("/Groups/{gid}")).await.body["members"],
        json!([])
    );
    s.patch_ops(
        &format!("/Groups/{gid}"),
        json!([{"op": "replace", "path": "nope", "value": 1}]),
    )
    .await
    .assert_error(400, Some("invalidPath"));
    s.patch_ops(
        &format!("/Groups/{gid}"),
        json!([{"op": "remove", "path": "displayName"}]),
    )
    .await
    .assert_error(400, Some("mutability"));
    // DELETE removes the position from the catalog and from holders.
    s.patch_ops(
        &format!("/Groups/{gid}"),
        json!([{"op": "add", "path": "members", "value": [{"value": uid}]}]),
    )
    .await;
    assert_eq!(
        s.delete(&format!("/Groups/{gid}")).await.status,
        StatusCode::NO_CONTENT
    );
    s.get(&format!("/Groups/{gid}"))
        .await
        .assert_error(404, None);
    let g = s.get(&format!("/Users/{uid}")).await.body;
    assert!(
        g[ROSTERD]["positions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p != renamed.as_str())
    );
    s.get("/Groups/not-a-uuid").await.assert_error(404, None);
}

#[tokio::test]
async fn seeded_positions_are_groups() {
    let s = Scim::start().await;
    let r = s
        .get("/Groups?filter=displayName%20eq%20%22driver%22&excludedAttributes=members")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["totalResults"], 1);
    assert_eq!(r.body["Resources"][0]["displayName"], "Driver");
    let r = s.get("/Groups?count=2&startIndex=2").await;
    assert_eq!(r.body["itemsPerPage"], 2);
    assert_eq!(r.body["startIndex"], 2);
}
