//! Field rules: pure functions from raw input to the stored form, or an error
//! naming the field.

use super::Error;
use super::catalog::Catalog;
use super::model::{Enterprise, OfficePhone, PermissionOverrides};
use super::phone;

const MAX_NAME: usize = 200;

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Characters no name or text field may hold: control characters, the
/// bidirectional controls (U+202E and kin, which make a name read backwards),
/// line and paragraph separators (U+2028, U+2029) and the byte-order mark.
pub fn forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{FEFF}'
        )
}

fn no_control(field: &str, s: &str) -> Result<(), Error> {
    if let Some(c) = s.chars().find(|c| forbidden_char(*c)) {
        return Err(invalid(
            field,
            format!(
                "{} must not contain control, bidirectional-control, line-separator or byte-order-mark characters (found U+{:04X})",
                shown(s),
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

/// A value as an error message shows it: quoted, escaped, cut after 40 characters.
fn shown(s: &str) -> String {
    let cut: String = s.chars().take(40).collect();
    let more = if cut.len() < s.len() { "…" } else { "" };
    format!("`{}`{more}", cut.escape_debug())
}

/// A required name part: trimmed, non-empty, bounded.
pub fn name(field: &str, raw: &str) -> Result<String, Error> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(invalid(field, "is required"));
    }
    if s.chars().count() > MAX_NAME {
        return Err(invalid(
            field,
            format!("{} is longer than {MAX_NAME} characters", shown(s)),
        ));
    }
    no_control(field, s)?;
    Ok(s.to_string())
}

/// An optional name part: trimmed, bounded; empty when not given.
pub fn optional_name(field: &str, raw: &str) -> Result<String, Error> {
    if raw.trim().is_empty() {
        return Ok(String::new());
    }
    name(field, raw)
}

/// The display name derived from the name parts: given and family name, either
/// alone when the other is empty.
pub fn derived_display_name(given: &str, family: &str) -> String {
    match (given.is_empty(), family.is_empty()) {
        (false, false) => format!("{given} {family}"),
        (false, true) => given.to_string(),
        _ => family.to_string(),
    }
}

/// The one name rule: a profile needs a name, not necessarily two parts.
pub fn has_a_name(given: &str, family: &str, display: &str) -> Result<(), Error> {
    if given.is_empty() && family.is_empty() && display.trim().is_empty() {
        return Err(invalid(
            "name",
            "at least one of display_name, given_name or family_name is required",
        ));
    }
    Ok(())
}

/// An email address, trimmed; compared case-insensitively elsewhere.
pub fn email(raw: &str) -> Result<String, Error> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(invalid("email", "is required"));
    }
    if s.len() > 254
        || !email_address::EmailAddress::is_valid(s)
        || s.contains(char::is_whitespace)
        || s.contains(forbidden_char)
    {
        return Err(invalid(
            "email",
            format!("`{s}` is not a valid email address"),
        ));
    }
    Ok(s.to_string())
}

/// The index key of an email or username: lowercased.
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

pub fn username(raw: &str) -> Result<String, Error> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(invalid("username", "must not be empty"));
    }
    if s.chars().count() > 254 {
        return Err(invalid(
            "username",
            format!("{} is longer than 254 characters", shown(s)),
        ));
    }
    if s.chars().any(|c| c.is_whitespace() || forbidden_char(c)) {
        return Err(invalid(
            "username",
            format!("{} must not contain spaces or control characters", shown(s)),
        ));
    }
    Ok(s.to_string())
}

/// A phone number that is stored whole (the mobile phone): any form
/// [`phone::parse`] recognises, kept as written (trimmed), an extension included.
pub fn phone(field: &str, raw: &str) -> Result<String, Error> {
    phone::parse(raw).map_err(|m| invalid(field, m.to_string()))?;
    Ok(raw.trim().to_string())
}

/// The office phone: an extension written inline in the number (`x8413`,
/// `;ext=8413`, `tel:…;ext=8413`...) moves to `extension`; an extension given
/// on its own may be written `42`, `x42` or `ext. 42`. Both at once must agree.
pub fn office_phone(p: &OfficePhone) -> Result<OfficePhone, Error> {
    let parsed =
        phone::parse(&p.number).map_err(|m| invalid("office_phone.number", m.to_string()))?;
    let given = match p.extension.as_deref() {
        Some(e) => phone::parse_extension(e)
            .map_err(|m| invalid("office_phone.extension", m.to_string()))?,
        None => None,
    };
    let extension = match (parsed.extension, given) {
        (Some(inline), Some(given)) if inline != given => {
            return Err(invalid(
                "office_phone.extension",
                format!(
                    "`{given}` differs from the extension written in the number `{}`",
                    p.number.trim()
                ),
            ));
        }
        (inline, given) => given.or(inline),
    };
    Ok(OfficePhone {
        number: parsed.number,
        extension,
    })
}

/// A photo link: an absolute https URL.
pub fn photo_url(raw: &str) -> Result<String, Error> {
    let s = raw.trim();
    match url::Url::parse(s) {
        Ok(u) if u.scheme() == "https" && u.host().is_some() => Ok(u.to_string()),
        _ => Err(invalid("photo_url", format!("`{s}` is not an https URL"))),
    }
}

pub fn optional_text(field: &str, raw: &str, max: usize) -> Result<Option<String>, Error> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if s.chars().count() > max {
        return Err(invalid(
            field,
            format!("{} is longer than {max} characters", shown(s)),
        ));
    }
    no_control(field, s)?;
    Ok(Some(s.to_string()))
}

/// Enterprise fields: each optional, trimmed, up to 256 characters.
pub fn enterprise(raw: &Enterprise) -> Result<Enterprise, Error> {
    let f = |field: &str, v: &Option<String>| match v {
        Some(s) => optional_text(field, s, 256),
        None => Ok(None),
    };
    Ok(Enterprise {
        employee_number: f("enterprise.employee_number", &raw.employee_number)?,
        cost_center: f("enterprise.cost_center", &raw.cost_center)?,
        organization: f("enterprise.organization", &raw.organization)?,
        division: f("enterprise.division", &raw.division)?,
        department: f("enterprise.department", &raw.department)?,
        manager: f("enterprise.manager", &raw.manager)?,
    })
}

pub fn positions(catalog: &Catalog, raw: &[String]) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for p in raw {
        let def = catalog.position(p).ok_or_else(|| {
            invalid(
                "positions",
                format!("position `{p}` is not in the catalog (GET /api/v1/catalog lists them)"),
            )
        })?;
        out.push(def.name.clone());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub fn role(catalog: &Catalog, raw: &str) -> Result<String, Error> {
    catalog.role(raw).map(|r| r.name.clone()).ok_or_else(|| {
        invalid(
            "role",
            format!(
                "role `{}` is not in the catalog (GET /api/v1/catalog lists them)",
                raw.trim()
            ),
        )
    })
}

pub fn business_unit(catalog: &Catalog, raw: &str) -> Result<Option<String>, Error> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    catalog
        .business_unit(raw)
        .map(|b| Some(b.name.clone()))
        .ok_or_else(|| {
            invalid(
                "business_unit",
                format!(
                    "business unit `{}` is not in the catalog (GET /api/v1/catalog lists them)",
                    raw.trim()
                ),
            )
        })
}

pub fn permissions(
    catalog: &Catalog,
    raw: &PermissionOverrides,
) -> Result<PermissionOverrides, Error> {
    let canon = |field: &str, list: &[String]| -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        for p in list {
            let c = catalog
                .permission(p)
                .ok_or_else(|| invalid(field, format!("permission `{p}` is not in the catalog")))?;
            out.push(c.to_string());
        }
        out.sort();
        out.dedup();
        Ok(out)
    };
    // A permission both granted and revoked is revoked (revokes apply last):
    // every combination of catalog permissions is a valid override.
    let grant = canon("permissions.grant", &raw.grant)?;
    let revoke = canon("permissions.revoke", &raw.revoke)?;
    Ok(PermissionOverrides { grant, revoke })
}

/// The role's defaults, plus grants, minus revokes; sorted.
pub fn effective_permissions(
    catalog: &Catalog,
    role: &str,
    o: &PermissionOverrides,
) -> Vec<String> {
    let mut set: std::collections::BTreeSet<String> = catalog
        .role(role)
        .map(|r| r.permissions.iter().cloned().collect())
        .unwrap_or_default();
    set.extend(o.grant.iter().cloned());
    for r in &o.revoke {
        set.remove(r);
    }
    set.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::employee::catalog::RoleDef;

    fn catalog() -> Catalog {
        Catalog::new(
            vec!["a".into(), "b".into(), "c".into()],
            vec![],
            vec![RoleDef {
                name: "R".into(),
                description: String::new(),
                permissions: vec!["a".into(), "b".into()],
            }],
            vec![],
            None,
        )
        .unwrap()
    }

    #[test]
    fn effective_permissions_apply_grants_and_revokes() {
        let c = catalog();
        let o = PermissionOverrides {
            grant: vec!["c".into()],
            revoke: vec!["a".into()],
        };
        assert_eq!(effective_permissions(&c, "R", &o), vec!["b", "c"]);
    }

    #[test]
    fn overrides_must_exist_and_a_revoke_wins() {
        let c = catalog();
        let bad = PermissionOverrides {
            grant: vec!["zz".into()],
            revoke: vec![],
        };
        assert!(
            matches!(permissions(&c, &bad), Err(Error::Invalid { field, .. }) if field == "permissions.grant")
        );
        let both = PermissionOverrides {
            grant: vec!["A".into(), "c".into()],
            revoke: vec!["a".into()],
        };
        let both = permissions(&c, &both).unwrap();
        assert_eq!(effective_permissions(&c, "R", &both), vec!["b", "c"]);
    }

    #[test]
    fn field_formats() {
        assert!(email("Ann@Example.com").is_ok());
        assert!(email("not an email").is_err());
        assert!(email("").is_err());
        assert!(phone("mobile_phone", "+1 (555) 010-0200").is_ok());
        assert!(phone("mobile_phone", "call me").is_err());
        assert!(photo_url("https://cdn.example.com/a.png").is_ok());
        assert!(photo_url("http://cdn.example.com/a.png").is_err());
        assert!(username("has space").is_err());
        assert!(name("given_name", "  ").is_err());
        let p = office_phone(&OfficePhone {
            number: "555 0100".into(),
            extension: Some("42".into()),
        })
        .unwrap();
        assert_eq!(p.extension.as_deref(), Some("42"));
        let p = office_phone(&OfficePhone {
            number: "555 0100".into(),
            extension: Some("x42".into()),
        })
        .unwrap();
        assert_eq!(p.extension.as_deref(), Some("42"));
        let p = office_phone(&OfficePhone {
            number: "+1 617 555 9548 ext. 8413".into(),
            extension: None,
        })
        .unwrap();
        assert_eq!(
            (p.number.as_str(), p.extension.as_deref()),
            ("+1 617 555 9548", Some("8413"))
        );
        assert!(
            office_phone(&OfficePhone {
                number: "555 0100 x12".into(),
                extension: Some("13".into()),
            })
            .is_err()
        );
        // A mobile number keeps its extension in the number.
        assert_eq!(
            phone("mobile_phone", " +1 617 555 0199 x12 ").unwrap(),
            "+1 617 555 0199 x12"
        );
    }
}
