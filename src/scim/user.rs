//! User resources ⇄ employee profiles. [`to_scim`] renders a profile; [`parse`]
//! reads a (tolerant) User body into [`UserInput`], which becomes a
//! [`NewEmployee`] (POST) or a full-replace [`EmployeePatch`] (PUT, and PATCH after
//! the operations were applied to the rendered resource).
//!
//! Tolerance (research file §2): attribute names and schema URNs match ignoring
//! case; booleans may be strings (`"True"`); `null` means unassigned; unknown and
//! readOnly attributes are ignored; `manager` may be a string, `{value}` or
//! `[{value,$ref}]`; role values may be stringified JSON objects.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::error::ScimError;
use super::filter::{as_bool, ci_get};
use super::schema::{ENTERPRISE, ROSTERD, USER};
use crate::config::ScimPasswords;
use crate::employee::positions::Position;
use crate::employee::{
    AccountStatus, Catalog, Employee, EmployeePatch, Enterprise, NewEmployee, OfficePhone,
    PermissionOverrides, Photo, validate,
};
use crate::secret::Secret;

fn ts(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The ETag of a version.
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// Renders the office phone: the number as stored; with an extension, RFC 3966
/// `tel:<number>;ext=<ext>`, or `<number>;ext=<ext>` when the number is written
/// with spaces (a `tel:` URI has none), so that it reads back as written.
pub(crate) fn office_value(p: &OfficePhone) -> String {
    match &p.extension {
        Some(ext) if p.number.contains(char::is_whitespace) => {
            format!("{};ext={ext}", p.number)
        }
        Some(ext) => format!("tel:{};ext={ext}", p.number),
        None => p.number.clone(),
    }
}

/// Reads the office phone in any form [`crate::employee::phone`] recognises
/// (`tel:+1-555-0100;ext=42`, `+1 555 0100 x42`, a plain number). A value that
/// is not a phone is passed on whole, for the domain to refuse with its reason.
fn parse_office(raw: &str) -> OfficePhone {
    match crate::employee::phone::parse(raw) {
        Ok(p) => OfficePhone {
            number: p.number,
            extension: p.extension,
        },
        Err(_) => OfficePhone {
            number: raw.trim().to_string(),
            extension: None,
        },
    }
}

/// The full User resource of a profile. Long on purpose: one block per
/// attribute, in `/Schemas` order, mirrored line for line by
/// [`super::render::write_user`] (which must write the same bytes).
pub fn to_scim(
    e: &Employee,
    effective: &[String],
    positions: &HashMap<String, Position>,
    base: &str,
) -> Value {
    let mut v = json!({
        "schemas": [USER, ENTERPRISE, ROSTERD],
        "id": e.id.to_string(),
        "userName": e.username,
        "emails": [{"value": e.email, "type": "work", "primary": true}],
        "active": e.active,
        "roles": [{"value": e.role, "primary": true}],
        "meta": {
            "resourceType": "User",
            "created": ts(&e.created_at),
            "lastModified": ts(&e.updated_at),
            "location": format!("{base}/Users/{}", e.id),
            "version": etag(e.version),
        },
    });
    if let Some(x) = &e.external_id {
        v["externalId"] = json!(x);
    }
    // The name parts that were given; `formatted` is derived from them.
    if !e.given_name.is_empty() || !e.family_name.is_empty() {
        let mut name = Map::new();
        if !e.given_name.is_empty() {
            name.insert("givenName".into(), json!(e.given_name));
        }
        if !e.family_name.is_empty() {
            name.insert("familyName".into(), json!(e.family_name));
        }
        name.insert(
            "formatted".into(),
            json!(validate::derived_display_name(
                &e.given_name,
                &e.family_name
            )),
        );
        v["name"] = Value::Object(name);
    }
    // A display name rosterd derived is not one the client wrote.
    if !e.display_name_derived {
        v["displayName"] = json!(e.display_name);
    }
    let mut phones = Vec::new();
    if let Some(m) = &e.mobile_phone {
        phones.push(json!({"value": m, "type": "mobile"}));
    }
    if let Some(o) = &e.office_phone {
        phones.push(json!({"value": office_value(o), "type": "work"}));
    }
    if !phones.is_empty() {
        v["phoneNumbers"] = json!(phones);
    }
    if let Some(Photo::Url { url }) = &e.photo {
        v["photos"] = json!([{"value": url, "type": "photo"}]);
    }
    let groups: Vec<Value> = e
        .positions
        .iter()
        .filter_map(|name| positions.get(name))
        .map(|p| json!({"value": p.id.to_string(), "display": p.name, "$ref": format!("{base}/Groups/{}", p.id)}))
        .collect();
    if !groups.is_empty() {
        v["groups"] = json!(groups);
    }
    let x = &e.enterprise;
    let mut ent = Map::new();
    for (k, val) in [
        ("employeeNumber", &x.employee_number),
        ("costCenter", &x.cost_center),
        ("organization", &x.organization),
        ("division", &x.division),
        ("department", &x.department),
    ] {
        if let Some(s) = val {
            ent.insert(k.into(), json!(s));
        }
    }
    if let Some(m) = &x.manager {
        let mut mv = json!({"value": m});
        if m.parse::<uuid::Uuid>().is_ok() {
            mv["$ref"] = json!(format!("{base}/Users/{m}"));
        }
        ent.insert("manager".into(), mv);
    }
    v[ENTERPRISE] = Value::Object(ent);
    v[ROSTERD] = json!({
        "positions": e.positions,
        "role": e.role,
        "enabled": e.enabled,
        "accountStatus": e.account_status.as_str(),
        "permissions": {"grant": e.permissions.grant, "revoke": e.permissions.revoke},
        "effectivePermissions": effective,
    });
    if let Some(b) = &e.business_unit {
        v[ROSTERD]["businessUnit"] = json!(b);
    }
    v
}

/// What a User body says, attribute by attribute. `None`: absent (or null).
#[derive(Debug, Default)]
pub struct UserInput {
    pub user_name: Option<String>,
    /// The body has a `name` object.
    pub has_name: bool,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub formatted: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub mobile: Option<String>,
    pub office: Option<OfficePhone>,
    pub photo_url: Option<String>,
    pub active: Option<bool>,
    pub password: Option<Secret>,
    pub external_id: Option<String>,
    pub role: Option<String>,
    pub enterprise: Enterprise,
    /// The rosterd extension object was present.
    pub has_rosterd: bool,
    pub positions: Option<Vec<String>>,
    pub business_unit: Option<String>,
    pub enabled: Option<bool>,
    pub permissions: Option<PermissionOverrides>,
}

/// A scalar as text: strings as is, numbers and booleans printed; `""` is absent.
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn boolean(v: Option<&Value>, name: &str) -> Result<Option<bool>, ScimError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(x) => as_bool(x).map(Some).ok_or_else(|| {
            ScimError::invalid_value(format!("{name} must be true or false, not {x}"))
        }),
    }
}

fn elements(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(a)) => a.iter().filter(|x| !x.is_null()).collect(),
        Some(Value::Null) | None => vec![],
        Some(x) => vec![x],
    }
}

fn elem_type(e: &Value) -> String {
    text(ci_get(e, "type")).unwrap_or_default().to_lowercase()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    elements(v)
        .into_iter()
        .filter_map(|x| match x {
            Value::Object(_) => text(ci_get(x, "value")),
            x => text(Some(x)),
        })
        .collect()
}

/// Entra sends app roles as stringified JSON (`"{\"id\":…,\"value\":\"Admin\"}"`).
fn role_value(e: &Value) -> Option<String> {
    let raw = match e {
        Value::Object(_) => text(ci_get(e, "value")).or_else(|| text(ci_get(e, "display")))?,
        x => text(Some(x))?,
    };
    if raw.trim_start().starts_with('{')
        && let Ok(inner) = serde_json::from_str::<Value>(&raw)
    {
        return text(ci_get(&inner, "value")).or_else(|| text(ci_get(&inner, "displayName")));
    }
    Some(raw)
}

/// The manager id from any of the shapes IdPs send; `""` clears.
fn manager_value(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Array(a) => a.iter().find_map(|x| manager_value(Some(x))),
        x @ Value::Object(_) => text(ci_get(x, "value")),
        x => text(Some(x)),
    }
}

/// Reads a User body.
pub fn parse(body: &Value) -> Result<UserInput, ScimError> {
    let mut u = UserInput {
        user_name: text(ci_get(body, "userName")),
        display_name: text(ci_get(body, "displayName")),
        active: boolean(ci_get(body, "active"), "active")?,
        password: text(ci_get(body, "password")).map(Secret::new),
        external_id: text(ci_get(body, "externalId")),
        ..Default::default()
    };
    if let Some(n) = ci_get(body, "name").filter(|n| !n.is_null()) {
        u.has_name = true;
        u.given_name = text(ci_get(n, "givenName"));
        u.family_name = text(ci_get(n, "familyName"));
        u.formatted = text(ci_get(n, "formatted"));
    }
    let emails = elements(ci_get(body, "emails"));
    let is_primary = |e: &&&Value| ci_get(e, "primary").and_then(as_bool) == Some(true);
    // One email is stored: the (last) primary one, else the last work one, else
    // the last one; "last" so that an email added by PATCH replaces the old one.
    u.email = emails
        .iter()
        .rev()
        .find(is_primary)
        .or_else(|| emails.iter().rev().find(|e| elem_type(e) == "work"))
        .or_else(|| emails.last())
        .and_then(|e| match e {
            Value::Object(_) => text(ci_get(e, "value")),
            x => text(Some(x)),
        });
    // One mobile and one office phone are stored: the last of each type, so
    // that a phone added by PATCH replaces the old one (as for emails).
    for p in elements(ci_get(body, "phoneNumbers")) {
        let Some(value) = text(ci_get(p, "value")) else {
            continue;
        };
        match elem_type(p).as_str() {
            "mobile" => u.mobile = Some(value),
            "work" | "" => u.office = Some(parse_office(&value)),
            _ => {}
        }
    }
    let photos = elements(ci_get(body, "photos"));
    // One photo is stored: the last one sent (its type is always `photo`).
    u.photo_url = photos.last().and_then(|p| text(ci_get(p, "value")));
    let roles = elements(ci_get(body, "roles"));
    // rosterd has one role: the primary one, else the last one listed.
    u.role = roles
        .iter()
        .find(is_primary)
        .or_else(|| roles.last())
        .and_then(|r| role_value(r));
    if let Some(x) = ci_get(body, ENTERPRISE) {
        u.enterprise = Enterprise {
            employee_number: text(ci_get(x, "employeeNumber")),
            cost_center: text(ci_get(x, "costCenter")),
            organization: text(ci_get(x, "organization")),
            division: text(ci_get(x, "division")),
            department: text(ci_get(x, "department")),
            manager: manager_value(ci_get(x, "manager")),
        };
    }
    if let Some(x) = ci_get(body, ROSTERD) {
        u.has_rosterd = true;
        u.positions = Some(strings(ci_get(x, "positions")));
        u.business_unit = text(ci_get(x, "businessUnit"));
        u.enabled = boolean(ci_get(x, "enabled"), "enabled")?;
        // `accountStatus` is readOnly (how the account was set up follows from
        // the password and the client's settings): ignored, like `role` (the
        // role is written through `roles`).
        let p = ci_get(x, "permissions");
        u.permissions = Some(PermissionOverrides {
            grant: strings(p.and_then(|p| ci_get(p, "grant"))),
            revoke: strings(p.and_then(|p| ci_get(p, "revoke"))),
        });
    }
    Ok(u)
}

/// What was done with a password an identity provider sent: the password to
/// store (if any), whether rosterd's policy is skipped, and the audit note.
struct IdpPassword {
    password: Option<Secret>,
    unchecked: bool,
    note: Option<String>,
}

fn idp_password(password: Option<Secret>, mode: ScimPasswords) -> IdpPassword {
    match (password, mode) {
        (None, _) => IdpPassword {
            password: None,
            unchecked: false,
            note: None,
        },
        (Some(_), ScimPasswords::Ignore) => IdpPassword {
            password: None,
            unchecked: false,
            note: Some(
                "password sent by the identity provider was ignored ([[scim.clients]] passwords = \"ignore\")"
                    .into(),
            ),
        },
        (Some(p), ScimPasswords::Accept) => IdpPassword {
            password: Some(p),
            unchecked: true,
            note: Some(
                "password sent by the identity provider was stored as sent (hashed), under the provider's policy ([[scim.clients]] passwords = \"accept\")"
                    .into(),
            ),
        },
    }
}

impl UserInput {
    /// Whether the body says anything about the name (a `name` object or a
    /// `displayName`).
    fn names_sent(&self) -> bool {
        self.has_name || self.display_name.is_some()
    }

    /// The business unit: the rosterd extension's, else a division that names a
    /// catalog business unit.
    fn business_unit(&self, catalog: &Catalog) -> Option<String> {
        self.business_unit.clone().or_else(|| {
            self.enterprise
                .division
                .as_deref()
                .and_then(|d| catalog.business_unit(d))
                .map(|b| b.name.clone())
        })
    }

    /// A new profile (POST). `default_role` and `default_status` come from the
    /// `[scim]` config, `passwords` from the client's `[[scim.clients]]` entry.
    pub fn into_new(
        self,
        catalog: &Catalog,
        default_role: Option<&str>,
        default_status: AccountStatus,
        passwords: ScimPasswords,
    ) -> Result<NewEmployee, ScimError> {
        let user_name = self
            .user_name
            .clone()
            .ok_or_else(|| ScimError::invalid_value("userName is required"))?;
        let email = match &self.email {
            Some(e) => e.clone(),
            None if email_address::EmailAddress::is_valid(user_name.trim()) => user_name.clone(),
            None => {
                return Err(ScimError::invalid_value(
                    "emails is required when userName is not an email address",
                ));
            }
        };
        // The name as sent: no part is invented. Only `name.formatted` (which
        // rosterd derives itself) stands in for a missing display name when no
        // part is given.
        let display_name = self.display_name.clone().or_else(|| {
            (self.given_name.is_none() && self.family_name.is_none())
                .then(|| self.formatted.clone())
                .flatten()
        });
        let pw = idp_password(self.password.clone(), passwords);
        // A password from the identity provider means credentials.
        let account_status = if pw.password.is_some() {
            AccountStatus::Credentials
        } else {
            default_status
        };
        let business_unit = self.business_unit(catalog);
        Ok(NewEmployee {
            given_name: self.given_name.unwrap_or_default(),
            family_name: self.family_name.unwrap_or_default(),
            display_name,
            email,
            username: Some(user_name),
            positions: self.positions.unwrap_or_default(),
            role: self.role.or(default_role.map(str::to_string)),
            business_unit,
            photo_url: self.photo_url,
            mobile_phone: self.mobile,
            office_phone: self.office,
            account_status: Some(account_status),
            password: pw.password,
            enabled: self.enabled,
            active: Some(self.active.unwrap_or(true)),
            permissions: self.permissions,
            external_id: self.external_id,
            enterprise: self.enterprise,
            source_facts: Default::default(),
            photo: None,
            password_unchecked: pw.unchecked,
            audit_note: pw.note,
        })
    }

    /// A full replace (PUT, PATCH): every core and enterprise attribute becomes
    /// what the body says (absent = cleared), except that a missing `active` or
    /// `password` keeps the current one, required fields the body lacks keep their
    /// value, a body without any name attribute keeps the name, and rosterd
    /// extension attributes change only when the extension object is present. An
    /// uploaded photo is kept unless a photo link is given.
    ///
    /// `whole`: the body is the whole resource (PATCH applies its operations to
    /// the rendered resource), so a name it lacks was removed.
    pub fn into_replace(
        self,
        current: &Employee,
        catalog: &Catalog,
        passwords: ScimPasswords,
        whole: bool,
    ) -> Result<EmployeePatch, ScimError> {
        let user_name = self
            .user_name
            .clone()
            .ok_or_else(|| ScimError::invalid_value("userName is required"))?;
        let names = whole || self.names_sent();
        let business_unit = if self.has_rosterd || self.enterprise.division.is_some() {
            match self.business_unit(catalog) {
                Some(b) => Some(Some(b)),
                None if self.has_rosterd => Some(None),
                None => None,
            }
        } else {
            None
        };
        let photo_url = match (&self.photo_url, &current.photo) {
            (None, Some(Photo::Uploaded { .. })) => None,
            (p, _) => Some(p.clone()),
        };
        let pw = idp_password(self.password.clone(), passwords);
        let permissions = if self.has_rosterd {
            self.permissions.clone()
        } else {
            None
        };
        Ok(EmployeePatch {
            given_name: names.then(|| self.given_name.clone().unwrap_or_default()),
            family_name: names.then(|| self.family_name.clone().unwrap_or_default()),
            display_name: names.then(|| self.display_name.clone().unwrap_or_default()),
            email: self.email.clone(),
            username: Some(user_name),
            positions: self.positions.clone(),
            role: self.role.clone(),
            business_unit,
            photo_url,
            mobile_phone: Some(self.mobile.clone()),
            office_phone: Some(self.office.clone()),
            account_status: None,
            password: pw.password,
            enabled: self.enabled,
            active: self.active,
            permissions,
            external_id: Some(self.external_id.clone()),
            enterprise: Some(self.enterprise.clone()),
            password_unchecked: pw.unchecked,
            audit_note: pw.note,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_office_phone_reads_back_as_written() {
        for (number, ext, shown) in [
            ("+1-555-0100", Some("42"), "tel:+1-555-0100;ext=42"),
            ("+1 617 555 9548", Some("8413"), "+1 617 555 9548;ext=8413"),
            ("(617) 555-9548", Some("7"), "(617) 555-9548;ext=7"),
            ("+1 617 555 9548", None, "+1 617 555 9548"),
        ] {
            let p = OfficePhone {
                number: number.into(),
                extension: ext.map(str::to_string),
            };
            assert_eq!(office_value(&p), shown);
            assert_eq!(parse_office(shown), p, "{shown}");
        }
    }

    #[test]
    fn tolerant_parsing() {
        let u = parse(&json!({
            "UserName": "ann@x.com",
            "Active": "False",
            "name": {"GivenName": "Ann", "familyName": "Lee"},
            "emails": [{"value": "other@x.com", "type": "home"}, {"Value": "ann@x.com", "Primary": "True"}],
            "phoneNumbers": [{"value": "tel:+1-555-0100;ext=42", "type": "work"}, {"value": "555 0199", "type": "mobile"}],
            "roles": [{"value": "{\"id\":\"1\",\"value\":\"Dispatcher\"}"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user": {"manager": "271", "employeeNumber": 42},
            "meta": {"resourceType": "User"},
            "unknown": null,
        }))
        .unwrap();
        assert_eq!(u.user_name.as_deref(), Some("ann@x.com"));
        assert_eq!(u.active, Some(false));
        assert_eq!(u.email.as_deref(), Some("ann@x.com"));
        assert_eq!(u.given_name.as_deref(), Some("Ann"));
        assert_eq!(u.office.as_ref().unwrap().extension.as_deref(), Some("42"));
        assert_eq!(u.office.as_ref().unwrap().number, "+1-555-0100");
        assert_eq!(u.mobile.as_deref(), Some("555 0199"));
        assert_eq!(u.role.as_deref(), Some("Dispatcher"));
        assert_eq!(u.enterprise.manager.as_deref(), Some("271"));
        assert_eq!(u.enterprise.employee_number.as_deref(), Some("42"));
        for m in [
            json!({"value": "7"}),
            json!([{"$ref": "x", "value": "7"}]),
            json!("7"),
        ] {
            let u = parse(&json!({"userName": "a", ENTERPRISE: {"manager": m}})).unwrap();
            assert_eq!(u.enterprise.manager.as_deref(), Some("7"));
        }
        let u = parse(&json!({"userName": "a", ENTERPRISE: {"manager": ""}})).unwrap();
        assert_eq!(u.enterprise.manager, None);
        assert!(parse(&json!({"active": "maybe"})).is_err());
    }
}
