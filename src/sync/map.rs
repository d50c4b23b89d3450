//! Mapping (pure): a directory [`Entry`] and the source's declared mapping give a
//! [`MappedEntry`]: the profile fields this source writes, and whether the entry is
//! disabled. No I/O; tested with fixtures.

use serde::{Deserialize, Serialize};

use super::Entry;
use super::config::{Disabled, LdapSource};
use super::normalize_dn;
use crate::employee::{AccountStatus, EmployeePatch, NewEmployee, OfficePhone};

/// The fields a source provides. `None`: the source does not map that field (it
/// is left alone); `Some(None)`: mapped, and empty in the source (cleared).
#[derive(Debug, Clone, Default, PartialEq, Hash, Serialize, Deserialize)]
pub struct SourceFields {
    pub email: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub username: Option<String>,
    pub mobile_phone: Option<Option<String>>,
    pub office_phone: Option<Option<OfficePhone>>,
    pub photo_url: Option<Option<String>>,
    pub positions: Option<Vec<String>>,
    pub role: Option<String>,
    pub business_unit: Option<Option<String>>,
    /// The SCIM enterprise `employeeNumber`.
    #[serde(default)]
    pub employee_number: Option<Option<String>>,
}

impl SourceFields {
    /// The update these fields make to an existing profile.
    pub fn to_patch(&self) -> EmployeePatch {
        EmployeePatch {
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            display_name: self.display_name.clone(),
            email: Some(self.email.clone()),
            username: self.username.clone(),
            positions: self.positions.clone(),
            role: self.role.clone(),
            business_unit: self.business_unit.clone(),
            photo_url: self.photo_url.clone(),
            mobile_phone: self.mobile_phone.clone(),
            office_phone: self.office_phone.clone(),
            employee_number: self.employee_number.clone(),
            ..Default::default()
        }
    }

    /// The new profile these fields make.
    pub fn to_new(&self, account_status: AccountStatus, active: bool) -> NewEmployee {
        NewEmployee {
            given_name: self.given_name.clone().unwrap_or_default(),
            family_name: self.family_name.clone().unwrap_or_default(),
            display_name: self.display_name.clone(),
            email: self.email.clone(),
            username: self.username.clone(),
            positions: self.positions.clone().unwrap_or_default(),
            role: self.role.clone(),
            business_unit: self.business_unit.clone().flatten(),
            photo_url: self.photo_url.clone().flatten(),
            mobile_phone: self.mobile_phone.clone().flatten(),
            office_phone: self.office_phone.clone().flatten(),
            account_status: Some(account_status),
            active: Some(active),
            enterprise: crate::employee::Enterprise {
                employee_number: self.employee_number.clone().flatten(),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

pub use crate::employee::EffectiveDate;

/// An entry mapped to profile fields.
#[derive(Debug, Clone, PartialEq, Hash, Serialize, Deserialize)]
pub struct MappedEntry {
    /// The join key (immutable in the directory).
    pub key: String,
    /// Where the entry is: its DN, or the HR record's place (`line 7`, `record 12`).
    pub dn: String,
    pub fields: SourceFields,
    /// Why the entry counts as disabled, if it does.
    pub disabled: Option<String>,
    /// Problems that did not stop the mapping (e.g. an unmapped business unit value).
    pub warnings: Vec<String>,
    /// First working day: before it the profile is inactive.
    #[serde(default)]
    pub hire: Option<EffectiveDate>,
    /// Termination: from this date on the profile is inactive.
    #[serde(default)]
    pub termination: Option<EffectiveDate>,
    /// The manager as the source names them: the manager's key in this source,
    /// their email, or their employee number.
    #[serde(default)]
    pub manager: Option<String>,
}

/// An entry that cannot be mapped (no join key, no email...): skipped and reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapError {
    pub dn: String,
    pub message: String,
}

fn first(e: &Entry, attr: &Option<String>) -> Option<Option<String>> {
    attr.as_ref().map(|a| {
        e.attrs
            .get(&a.to_lowercase())
            .and_then(|v| v.first())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
}

/// The profile fields an LDAP mapping writes.
pub fn ldap_provides(src: &LdapSource) -> Vec<&'static str> {
    let a = &src.attributes;
    let mut out = vec!["email"];
    for (name, attr) in [
        ("given_name", &a.given_name),
        ("family_name", &a.family_name),
        ("display_name", &a.display_name),
        ("username", &a.username),
        ("mobile_phone", &a.mobile_phone),
        ("office_phone", &a.office_phone),
        ("photo", &a.photo_url),
        ("employee_number", &a.employee_number),
    ] {
        if attr.is_some() {
            out.push(name);
        }
    }
    if !src.positions.is_empty() {
        out.push("positions");
    }
    if !src.roles.is_empty() || src.default_role.is_some() {
        out.push("role");
    }
    if src.business_unit.is_some() {
        out.push("business_unit");
    }
    out
}

/// Every attribute the mapping reads (for the search's attribute list).
pub fn wanted_attributes(src: &LdapSource) -> Vec<String> {
    let a = &src.attributes;
    let mut out: Vec<String> = [
        &a.email,
        &a.given_name,
        &a.family_name,
        &a.display_name,
        &a.username,
        &a.mobile_phone,
        &a.office_phone,
        &a.office_phone_extension,
        &a.photo_url,
        &a.employee_number,
        &a.modified,
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect();
    out.push(src.join_key.clone());
    match &src.disabled {
        Disabled::AdUserAccountControl => out.push("userAccountControl".into()),
        Disabled::NsAccountLock => out.push("nsAccountLock".into()),
        Disabled::PwdAccountLockedTime => out.push("pwdAccountLockedTime".into()),
        Disabled::Attribute { attribute, .. } => out.push(attribute.clone()),
        Disabled::None | Disabled::Filter(_) => {}
    }
    if let Some(bu) = &src.business_unit {
        out.push(bu.attribute.clone());
    }
    for r in &src.roles {
        if let Some(a) = &r.attribute {
            out.push(a.clone());
        }
    }
    out.sort_by_key(|s| s.to_lowercase());
    out.dedup_by_key(|s| s.to_lowercase());
    out
}

fn disabled_reason(src: &LdapSource, e: &Entry) -> Option<String> {
    let get = |a: &str| e.attrs.get(&a.to_lowercase()).and_then(|v| v.first());
    match &src.disabled {
        Disabled::None => None,
        Disabled::AdUserAccountControl => get("userAccountControl")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|v| v & 0x2 != 0)
            .map(|v| format!("userAccountControl {v} has ACCOUNTDISABLE (0x2)")),
        Disabled::NsAccountLock => get("nsAccountLock")
            .filter(|v| v.trim().eq_ignore_ascii_case("true"))
            .map(|_| "nsAccountLock is TRUE".to_string()),
        Disabled::PwdAccountLockedTime => {
            get("pwdAccountLockedTime").map(|v| format!("pwdAccountLockedTime is {v}"))
        }
        Disabled::Attribute { attribute, values } => get(attribute)
            .filter(|v| values.iter().any(|x| x.eq_ignore_ascii_case(v.trim())))
            .map(|v| format!("{attribute} is {v}")),
        Disabled::Filter(f) => e
            .disabled_by_filter
            .then(|| format!("matches the disabled filter {f}")),
    }
}

/// Maps one entry. Pure.
pub fn map_entry(src: &LdapSource, e: &Entry) -> Result<MappedEntry, MapError> {
    let err = |m: String| MapError {
        dn: e.dn.clone(),
        message: m,
    };
    let key = e
        .attrs
        .get(&src.join_key.to_lowercase())
        .and_then(|v| v.first())
        .filter(|k| !k.is_empty())
        .cloned()
        .ok_or_else(|| err(format!("has no {} (the join key)", src.join_key)))?;
    let a = &src.attributes;
    let email = first(e, &a.email)
        .flatten()
        .ok_or_else(|| err(format!("has no {}", a.email.as_deref().unwrap_or("mail"))))?;
    let office_phone = first(e, &a.office_phone).map(|num| {
        num.map(|number| OfficePhone {
            number,
            extension: first(e, &a.office_phone_extension).flatten(),
        })
    });
    let mut warnings = Vec::new();
    let positions = if src.positions.is_empty() {
        None
    } else {
        let mut p: Vec<String> = src
            .positions
            .iter()
            .filter(|r| e.groups.contains(&normalize_dn(&r.group)))
            .map(|r| r.position.clone())
            .collect();
        p.sort();
        p.dedup();
        Some(p)
    };
    let role = if src.roles.is_empty() && src.default_role.is_none() {
        None
    } else {
        src.roles
            .iter()
            .find(|r| match (&r.group, &r.attribute, &r.value) {
                (Some(g), _, _) => e.groups.contains(&normalize_dn(g)),
                (None, Some(attr), Some(val)) => e
                    .attrs
                    .get(&attr.to_lowercase())
                    .is_some_and(|vs| vs.iter().any(|v| v.trim().eq_ignore_ascii_case(val))),
                _ => false,
            })
            .map(|r| r.role.clone())
            .or_else(|| src.default_role.clone())
    };
    let business_unit = src.business_unit.as_ref().map(|bu| {
        let value = e
            .attrs
            .get(&bu.attribute.to_lowercase())
            .and_then(|v| v.first())
            .map(|s| s.trim().to_string());
        match value {
            None => None,
            Some(v) => match bu.map.iter().find(|(k, _)| k.eq_ignore_ascii_case(&v)) {
                Some((_, name)) => Some(name.clone()),
                None => {
                    warnings.push(format!(
                        "{} value `{v}` is not in business_unit.map; business unit left empty",
                        bu.attribute
                    ));
                    None
                }
            },
        }
    });
    Ok(MappedEntry {
        key,
        dn: e.dn.clone(),
        fields: SourceFields {
            email,
            given_name: first(e, &a.given_name).flatten(),
            family_name: first(e, &a.family_name).flatten(),
            display_name: first(e, &a.display_name).flatten(),
            username: first(e, &a.username).flatten(),
            mobile_phone: first(e, &a.mobile_phone),
            office_phone,
            photo_url: first(e, &a.photo_url),
            positions,
            role,
            business_unit,
            employee_number: first(e, &a.employee_number),
        },
        disabled: disabled_reason(src, e),
        warnings,
        hire: None,
        termination: None,
        manager: None,
    })
}
