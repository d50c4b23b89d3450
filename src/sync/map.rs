//! Mapping (pure): a directory [`Entry`] and the source's declared mapping give a
//! [`MappedEntry`]: the profile fields this source writes, and whether the entry is
//! disabled. No I/O; tested with fixtures.

use serde::{Deserialize, Serialize};

use super::Entry;
use super::config::{Disabled, LdapSource};
use super::normalize_dn;
use crate::employee::{AccountStatus, EmployeePatch, NewEmployee, OfficePhone, PhotoBytes};

/// The largest photo a source may bring, in bytes (`[photos] max_bytes` may set
/// a lower limit).
pub const PHOTO_MAX_BYTES: usize = 512 * 1024;

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
    /// The photo's bytes (`attributes.photo`). Left out (`None`) when the
    /// directory's value is not a usable photo: the profile's photo stays.
    #[serde(default)]
    pub photo: Option<Option<PhotoBytes>>,
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
            photo: self.photo.clone(),
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
            photo: self.photo.clone().flatten(),
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

/// An entry that cannot be mapped (no join key, no email, a bad date...):
/// skipped and reported. What could still be read of it says whose entry it is,
/// so that the plan keeps that profile as it is: a row that cannot be read is
/// not a leaver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapError {
    pub dn: String,
    pub message: String,
    /// The entry's join key, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The entry's email, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl MapError {
    /// An error about an entry nothing identifies (see [`MapError::of`]).
    pub fn new(dn: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            dn: dn.into(),
            message: message.into(),
            key: None,
            email: None,
        }
    }

    /// Records whose entry this is: its join key and email (empty ones dropped).
    pub fn of(mut self, key: Option<String>, email: Option<String>) -> Self {
        let keep = |v: Option<String>| v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        self.key = keep(key);
        self.email = keep(email);
        self
    }
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
        ("photo", &a.photo),
        ("employee_number", &a.employee_number),
    ] {
        if attr.is_some() && !out.contains(&name) {
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
        &a.photo,
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

/// Why a photo's bytes are not a usable photo (the text follows "the value").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhotoError {
    #[error("is empty")]
    Empty,
    #[error("is {0} bytes, more than the {PHOTO_MAX_BYTES} a synced photo may have")]
    TooLarge(usize),
    #[error("is neither a JPEG nor a PNG image")]
    NotAnImage,
}

/// The content type of a photo's bytes (JPEG or PNG, by their magic numbers, at
/// most [`PHOTO_MAX_BYTES`]), or why they are not a usable photo.
pub fn photo_type(bytes: &[u8]) -> Result<&'static str, PhotoError> {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.is_empty() {
        return Err(PhotoError::Empty);
    }
    if bytes.len() > PHOTO_MAX_BYTES {
        return Err(PhotoError::TooLarge(bytes.len()));
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Ok("image/jpeg")
    } else if bytes.starts_with(PNG) {
        Ok("image/png")
    } else {
        Err(PhotoError::NotAnImage)
    }
}

/// The entry's photo: `None` when the source does not map one or its value is
/// not usable (a warning says why; the profile's photo is left alone),
/// `Some(None)` when the entry has none.
fn photo(src: &LdapSource, e: &Entry, warnings: &mut Vec<String>) -> Option<Option<PhotoBytes>> {
    let attr = src.attributes.photo.as_ref()?;
    let name = attr.to_lowercase();
    let bytes: Option<&[u8]> = match e.bin_attrs.get(&name).and_then(|v| v.first()) {
        Some(b) => Some(b),
        None => e
            .attrs
            .get(&name)
            .and_then(|v| v.first())
            .map(String::as_bytes),
    };
    let Some(bytes) = bytes else {
        return Some(None);
    };
    match photo_type(bytes) {
        Ok(ct) => Some(Some(PhotoBytes::new(ct, bytes.to_vec()))),
        Err(why) => {
            let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            warnings.push(format!(
                "{attr}: the value ({} bytes, starting {}) {why}; the profile's photo is left as it was, the rest of the entry syncs",
                bytes.len(),
                head.join(" ")
            ));
            None
        }
    }
}

/// Demotes a photo larger than `max` bytes (`[photos] max_bytes`) to a warning:
/// the rest of the entry still syncs.
pub fn limit_photo(m: &mut MappedEntry, max: usize) {
    if let Some(Some(p)) = &m.fields.photo
        && p.bytes.len() > max
    {
        m.warnings.push(format!(
            "photo is {} bytes, more than [photos] max_bytes = {max}; the profile's photo is left as it was",
            p.bytes.len()
        ));
        m.fields.photo = None;
    }
}

/// Maps one entry. Pure. Long on purpose: one short step per profile field
/// (join key, email, phones, positions, role, photo, business unit, ...), so a
/// field's rule is found by reading down.
pub fn map_entry(src: &LdapSource, e: &Entry) -> Result<MappedEntry, MapError> {
    let err = |m: String| {
        MapError::new(e.dn.clone(), m).of(
            e.attrs
                .get(&src.join_key.to_lowercase())
                .and_then(|v| v.first())
                .cloned(),
            first(e, &src.attributes.email).flatten(),
        )
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
    let photo = photo(src, e, &mut warnings);
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
            photo,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::config::{AttributeMap, GroupsSection};

    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F'];

    fn source() -> LdapSource {
        LdapSource {
            url: "ldap://127.0.0.1".into(),
            starttls: false,
            ca_file: None,
            tls_insecure_skip_verify: false,
            bind_dn: None,
            bind_password: None,
            base_dn: "dc=example".into(),
            scope: ldap3::Scope::Subtree,
            filter: "(objectClass=*)".into(),
            page_size: 0,
            timeout: std::time::Duration::from_secs(1),
            join_key: "entryUUID".into(),
            attributes: AttributeMap {
                photo: Some("jpegPhoto".into()),
                ..Default::default()
            },
            disabled: Disabled::None,
            groups: GroupsSection::default(),
            positions: vec![],
            roles: vec![],
            default_role: None,
            business_unit: None,
            incremental: crate::sync::config::Incremental::Auto,
        }
    }

    fn entry(photo: Option<&[u8]>) -> Entry {
        let mut e = Entry {
            dn: "uid=ann,dc=example".into(),
            ..Default::default()
        };
        for (k, v) in [("entryuuid", "u-1"), ("mail", "ann@example.com")] {
            e.attrs.insert(k.into(), vec![v.into()]);
        }
        if let Some(p) = photo {
            e.bin_attrs.insert("jpegphoto".into(), vec![p.to_vec()]);
        }
        e
    }

    #[test]
    fn photos_are_told_apart_by_their_magic_numbers_and_capped() {
        assert_eq!(photo_type(JPEG), Ok("image/jpeg"));
        assert_eq!(
            photo_type(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Ok("image/png")
        );
        assert!(photo_type(b"GIF89a....").is_err());
        assert!(photo_type(b"").is_err());
        let mut big = JPEG.to_vec();
        big.resize(PHOTO_MAX_BYTES + 1, 0);
        assert!(
            photo_type(&big)
                .unwrap_err()
                .to_string()
                .contains("more than")
        );
    }

    #[test]
    fn a_photo_maps_to_bytes_with_their_digest_and_a_bad_one_to_a_warning() {
        let src = source();
        assert!(ldap_provides(&src).contains(&"photo"));
        assert!(wanted_attributes(&src).contains(&"jpegPhoto".to_string()));

        let m = map_entry(&src, &entry(Some(JPEG))).unwrap();
        let Some(Some(p)) = &m.fields.photo else {
            panic!("{:?}", m.fields.photo)
        };
        assert_eq!(
            (p.content_type.as_str(), &p.bytes[..]),
            ("image/jpeg", JPEG)
        );
        assert_eq!(p.sha256.len(), 64);
        assert!(m.warnings.is_empty());
        assert!(
            !format!("{m:?}").contains("255, 216"),
            "Debug never prints the bytes"
        );

        // No photo in the directory: the profile's photo is removed.
        let m = map_entry(&src, &entry(None)).unwrap();
        assert_eq!(m.fields.photo, Some(None));

        // Not an image: the rest of the entry maps, the photo is left alone.
        let m = map_entry(&src, &entry(Some(b"GIF89a...."))).unwrap();
        assert_eq!(m.fields.photo, None);
        assert_eq!(m.fields.email, "ann@example.com");
        assert!(
            m.warnings[0].contains("neither a JPEG nor a PNG"),
            "{:?}",
            m.warnings
        );

        // Over the store's own limit: the same.
        let mut m = map_entry(&src, &entry(Some(JPEG))).unwrap();
        limit_photo(&mut m, 4);
        assert_eq!(m.fields.photo, None);
        assert!(m.warnings[0].contains("max_bytes"), "{:?}", m.warnings);
    }

    /// An entry that cannot be mapped still says whose it is (so that the plan
    /// keeps that profile instead of counting it gone).
    #[test]
    fn an_unmappable_entry_keeps_its_key_and_email() {
        let src = source();
        let mut e = entry(None);
        e.attrs.remove("mail");
        let err = map_entry(&src, &e).unwrap_err();
        assert!(err.message.contains("has no mail"), "{err:?}");
        assert_eq!((err.key.as_deref(), err.email), (Some("u-1"), None));
        let mut e = entry(None);
        e.attrs.remove("entryuuid");
        let err = map_entry(&src, &e).unwrap_err();
        assert_eq!(
            (err.key, err.email.as_deref()),
            (None, Some("ann@example.com"))
        );
    }
}
