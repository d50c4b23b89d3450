//! Discovery (RFC 7644 §4): `/ServiceProviderConfig`, `/ResourceTypes`,
//! `/Schemas`. They describe what this server stores and does; catalog-bound
//! attributes list the current catalog as `canonicalValues`. Discovery needs a
//! valid token like every SCIM endpoint.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::error::{ScimError, scim_response};
use super::schema::{self, ENTERPRISE, GROUP, RESOURCE_TYPE, ROSTERD, SCHEMA_IDS, USER};
use super::{BaseUrl, ScimClient, ScimState};

fn list(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [schema::LIST],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

pub async fn service_provider_config(
    _: ScimClient,
    State(state): State<ScimState>,
    BaseUrl(base): BaseUrl,
) -> Response {
    let body = json!({
        "schemas": [schema::SPC],
        "documentationUri": "https://github.com/rosterd/rosterd#scim",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": state.max_body_bytes},
        "filter": {"supported": true, "maxResults": state.settings().max_page_size},
        "changePassword": {"supported": true},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A static bearer token per SCIM client ([[scim.clients]] in rosterd.toml)",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
    });
    scim_response(StatusCode::OK, &body)
}

fn resource_type_doc(id: &str, base: &str) -> Option<Value> {
    let (name, endpoint, schema, ext, desc) = if id.eq_ignore_ascii_case("User") {
        (
            "User",
            "/Users",
            USER,
            vec![ENTERPRISE, ROSTERD],
            "Employee profiles",
        )
    } else if id.eq_ignore_ascii_case("Group") {
        (
            "Group",
            "/Groups",
            GROUP,
            vec![],
            "Positions from the catalog",
        )
    } else {
        return None;
    };
    Some(json!({
        "schemas": [RESOURCE_TYPE],
        "id": name,
        "name": name,
        "endpoint": endpoint,
        "description": desc,
        "schema": schema,
        "schemaExtensions": ext.iter().map(|u| json!({"schema": u, "required": false})).collect::<Vec<_>>(),
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{name}")},
    }))
}

pub async fn resource_types(_: ScimClient, BaseUrl(base): BaseUrl) -> Response {
    let docs = ["User", "Group"]
        .iter()
        .filter_map(|id| resource_type_doc(id, &base))
        .collect();
    scim_response(StatusCode::OK, &list(docs))
}

pub async fn resource_type(
    _: ScimClient,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let doc = resource_type_doc(&id, &base)
        .ok_or_else(|| ScimError::not_found(format!("no resource type `{id}`")))?;
    Ok(scim_response(StatusCode::OK, &doc))
}

pub async fn schemas(
    _: ScimClient,
    State(state): State<ScimState>,
    BaseUrl(base): BaseUrl,
) -> Response {
    let catalog = state.roster.catalog();
    let docs = SCHEMA_IDS
        .iter()
        .filter_map(|id| schema::schema_doc(id, &catalog, &base))
        .collect();
    scim_response(StatusCode::OK, &list(docs))
}

pub async fn schema(
    _: ScimClient,
    State(state): State<ScimState>,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let doc = schema::schema_doc(&id, &state.roster.catalog(), &base)
        .ok_or_else(|| ScimError::not_found(format!("no schema `{id}`")))?;
    Ok(scim_response(StatusCode::OK, &doc))
}
