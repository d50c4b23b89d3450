//! The admin API's JSON shapes as `rosterctl` reads them. Lenient on purpose: fields
//! default when absent, so a newer rosterd does not break an older rosterctl.
//! `--json` output prints what the server sent, not these structs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Employee {
    pub id: String,
    pub version: u64,
    pub given_name: String,
    pub family_name: String,
    pub display_name: String,
    pub email: String,
    pub username: String,
    pub positions: Vec<String>,
    pub role: String,
    pub business_unit: Option<String>,
    pub photo_url: Option<String>,
    pub photo_content_type: Option<String>,
    pub mobile_phone: Option<String>,
    pub office_phone: Option<OfficePhone>,
    pub account_status: String,
    pub has_password: bool,
    pub enabled: bool,
    pub active: bool,
    pub permissions: Permissions,
    pub effective_permissions: Vec<String>,
    pub external_id: Option<String>,
    pub source_keys: BTreeMap<String, String>,
    pub deactivated_by: Option<Actor>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct OfficePhone {
    pub number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct Permissions {
    pub grant: Vec<String>,
    pub revoke: Vec<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Actor {
    pub kind: String,
    pub name: String,
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// One page of `GET /api/v1/employees`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EmployeePage {
    pub items: Vec<Value>,
    pub next_cursor: Option<String>,
    pub total: usize,
}

/// `POST /api/v1/employees/bulk`'s answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BulkResponse {
    pub dry_run: bool,
    pub succeeded: usize,
    pub failed: usize,
    pub changed: usize,
    pub results: Vec<BulkResult>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct BulkResult {
    pub id: String,
    pub ok: bool,
    pub changed: bool,
    pub error: Option<String>,
}

/// One page of `GET /api/v1/audit`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuditPage {
    pub items: Vec<Value>,
    pub next_before: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: String,
    pub actor: Actor,
    pub employee_id: Option<String>,
    pub action: String,
    pub changes: Vec<FieldChange>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FieldChange {
    pub field: String,
    pub before: Value,
    pub after: Value,
}

/// `GET /api/v1/catalog`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Catalog {
    pub positions: Vec<CatalogEntry>,
    pub roles: Vec<CatalogEntry>,
    pub business_units: Vec<CatalogEntry>,
    pub permissions: Vec<String>,
    pub default_role: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CatalogEntry {
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
}
