//! JSON shapes of the admin API (snake_case, as DESIGN.md names them). The password
//! hash has no field here, so it cannot leak into a response.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::employee::{
    AccountStatus, Catalog, Employee, EmployeeId, Enterprise, OfficePhone, PermissionOverrides,
    Photo, SourceFacts,
};
use crate::store::Actor;

#[derive(Debug, Serialize)]
pub struct EmployeeView {
    pub id: EmployeeId,
    pub version: u64,
    pub given_name: String,
    pub family_name: String,
    pub display_name: String,
    pub email: String,
    pub username: String,
    pub positions: Vec<String>,
    pub role: String,
    pub business_unit: Option<String>,
    /// A link to the photo: the configured URL, or this API's photo endpoint.
    pub photo_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub photo_content_type: Option<String>,
    pub mobile_phone: Option<String>,
    pub office_phone: Option<OfficePhone>,
    pub account_status: AccountStatus,
    /// Whether a password is set (the password itself is never returned).
    pub has_password: bool,
    pub enabled: bool,
    pub active: bool,
    pub permissions: PermissionOverrides,
    pub effective_permissions: Vec<String>,
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub source_keys: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deactivated_by: Option<Actor>,
    /// Organisational fields (SCIM Enterprise User extension): employee number,
    /// manager (the manager's profile id), department...
    #[serde(skip_serializing_if = "Enterprise::is_empty")]
    pub enterprise: Enterprise,
    /// What lifecycle sources say (disabled, hire and termination dates).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub source_facts: BTreeMap<String, SourceFacts>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl EmployeeView {
    pub fn new(e: &Employee, effective_permissions: Vec<String>) -> Self {
        let (photo_url, photo_content_type) = match &e.photo {
            None => (None, None),
            Some(Photo::Url { url }) => (Some(url.clone()), None),
            Some(Photo::Uploaded { content_type, .. }) => (
                Some(format!("/api/v1/employees/{}/photo", e.id)),
                Some(content_type.clone()),
            ),
        };
        Self {
            id: e.id,
            version: e.version,
            given_name: e.given_name.clone(),
            family_name: e.family_name.clone(),
            display_name: e.display_name.clone(),
            email: e.email.clone(),
            username: e.username.clone(),
            positions: e.positions.clone(),
            role: e.role.clone(),
            business_unit: e.business_unit.clone(),
            photo_url,
            photo_content_type,
            mobile_phone: e.mobile_phone.clone(),
            office_phone: e.office_phone.clone(),
            account_status: e.account_status,
            has_password: e.password_hash.is_some(),
            enabled: e.enabled,
            active: e.active,
            permissions: e.permissions.clone(),
            effective_permissions,
            external_id: e.external_id.clone(),
            source_keys: e.source_keys.clone(),
            deactivated_by: e.deactivated_by.clone(),
            enterprise: e.enterprise.clone(),
            source_facts: e.source_facts.clone(),
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// `GET /api/v1/catalog`.
pub fn catalog(c: &Catalog) -> serde_json::Value {
    serde_json::json!({
        "positions": c.positions().collect::<Vec<_>>(),
        "roles": c.roles().collect::<Vec<_>>(),
        "business_units": c.business_units().collect::<Vec<_>>(),
        "permissions": c.permissions().collect::<Vec<_>>(),
        "default_role": c.default_role(),
    })
}
