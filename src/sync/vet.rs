//! Vetting (pure): before a run plans, every optional field of each mapped entry
//! is checked with the domain's own rules ([`crate::employee::validate`]), so
//! that one unusable value never costs an employee their account.
//!
//! - A value that is usable in another form is stored in that form: an office
//!   phone with its extension written inline (`x8413`, `;ext=8413`, ...) is split
//!   into number and extension, catalog names take their catalog spelling.
//! - An optional value that cannot be used (a phone that is not a phone, a
//!   business unit, position or role not in the catalog, a username with spaces,
//!   a photo link that is not https, a name part with control characters) is
//!   **left out**: the source does not write that field for this entry (a new
//!   profile is created without it, an existing one keeps what it had), the rest
//!   of the entry syncs, and the entry carries a warning naming the field and the
//!   value (in the run record, `rosterctl sync show`).
//! - Only what makes a profile impossible skips the entry, in the plan: no
//!   usable email, no name at all, a join conflict (a unique key taken).

use super::map::MappedEntry;
use crate::employee::{Catalog, Error, validate};

fn left_out(warnings: &mut Vec<String>, e: Error) {
    warnings.push(format!(
        "{e}; the field is left out, the rest of the entry syncs"
    ));
}

/// Vets one mapped entry in place (see the module doc).
pub fn vet(m: &mut MappedEntry, catalog: &Catalog) {
    let w = &mut m.warnings;
    let f = &mut m.fields;
    for (field, value) in [
        ("given_name", &mut f.given_name),
        ("family_name", &mut f.family_name),
        ("display_name", &mut f.display_name),
    ] {
        if let Some(v) = value.as_deref() {
            match validate::optional_name(field, v) {
                Ok(ok) if ok.is_empty() => *value = None,
                Ok(ok) => *value = Some(ok),
                Err(e) => {
                    left_out(w, e);
                    *value = None;
                }
            }
        }
    }
    if let Some(u) = f.username.as_deref() {
        match validate::username(u) {
            Ok(ok) => f.username = Some(ok),
            Err(e) => {
                left_out(w, e);
                f.username = None;
            }
        }
    }
    if let Some(Some(p)) = &f.mobile_phone {
        match validate::phone("mobile_phone", p) {
            Ok(ok) => f.mobile_phone = Some(Some(ok)),
            Err(e) => {
                left_out(w, e);
                f.mobile_phone = None;
            }
        }
    }
    if let Some(Some(p)) = &f.office_phone {
        match validate::office_phone(p) {
            Ok(ok) => f.office_phone = Some(Some(ok)),
            Err(e) => {
                left_out(w, e);
                f.office_phone = None;
            }
        }
    }
    if let Some(Some(u)) = &f.photo_url {
        match validate::photo_url(u) {
            Ok(ok) => f.photo_url = Some(Some(ok)),
            Err(e) => {
                left_out(w, e);
                f.photo_url = None;
            }
        }
    }
    if let Some(Some(b)) = &f.business_unit {
        match validate::business_unit(catalog, b) {
            Ok(ok) => f.business_unit = Some(ok),
            Err(e) => {
                left_out(w, e);
                f.business_unit = None;
            }
        }
    }
    if let Some(r) = &f.role {
        match validate::role(catalog, r) {
            Ok(ok) => f.role = Some(ok),
            Err(e) => {
                left_out(w, e);
                f.role = None;
            }
        }
    }
    if let Some(list) = &f.positions {
        // Positions are a set: an unknown one is left out on its own.
        let mut kept = Vec::with_capacity(list.len());
        for p in list {
            match validate::positions(catalog, std::slice::from_ref(p)) {
                Ok(mut ok) => kept.append(&mut ok),
                Err(e) => w.push(format!(
                    "{e}; that position is left out, the rest of the entry syncs"
                )),
            }
        }
        kept.sort();
        kept.dedup();
        f.positions = Some(kept);
    }
    if let Some(Some(n)) = &f.employee_number {
        match validate::optional_text("employee_number", n, 256) {
            Ok(ok) => f.employee_number = Some(ok),
            Err(e) => {
                left_out(w, e);
                f.employee_number = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::employee::OfficePhone;
    use crate::employee::catalog::{RoleDef, UnitDef};
    use crate::sync::map::SourceFields;

    fn catalog() -> Catalog {
        Catalog::new(
            vec![],
            vec![],
            vec![RoleDef {
                name: "Driver".into(),
                description: String::new(),
                permissions: vec![],
            }],
            vec![UnitDef {
                name: "North".into(),
                description: String::new(),
            }],
            Some("Driver".into()),
        )
        .unwrap()
    }

    fn entry(fields: SourceFields) -> MappedEntry {
        MappedEntry {
            key: "k".into(),
            dn: "uid=k".into(),
            fields,
            disabled: None,
            warnings: vec![],
            hire: None,
            termination: None,
            manager: None,
        }
    }

    #[test]
    fn usable_values_take_their_stored_form() {
        let mut m = entry(SourceFields {
            email: "a@example.com".into(),
            given_name: Some(" Ann ".into()),
            office_phone: Some(Some(OfficePhone {
                number: "+1 617 555 9548 ext. 8413".into(),
                extension: None,
            })),
            business_unit: Some(Some("north".into())),
            role: Some("driver".into()),
            ..Default::default()
        });
        vet(&mut m, &catalog());
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
        assert_eq!(m.fields.given_name.as_deref(), Some("Ann"));
        assert_eq!(
            m.fields.office_phone,
            Some(Some(OfficePhone {
                number: "+1 617 555 9548".into(),
                extension: Some("8413".into()),
            }))
        );
        assert_eq!(m.fields.business_unit, Some(Some("North".into())));
        assert_eq!(m.fields.role.as_deref(), Some("Driver"));
    }

    #[test]
    fn an_unusable_optional_value_is_left_out_with_a_warning_naming_it() {
        let mut m = entry(SourceFields {
            email: "a@example.com".into(),
            given_name: Some("Ann".into()),
            username: Some("ann lee".into()),
            mobile_phone: Some(Some("call me".into())),
            office_phone: Some(Some(OfficePhone {
                number: "n/a".into(),
                extension: None,
            })),
            photo_url: Some(Some("ftp://x/y.png".into())),
            business_unit: Some(Some("Atlantis".into())),
            role: Some("Astronaut".into()),
            positions: Some(vec!["Pilot".into()]),
            ..Default::default()
        });
        vet(&mut m, &catalog());
        let f = &m.fields;
        assert_eq!(f.given_name.as_deref(), Some("Ann"), "the rest stays");
        assert_eq!(f.username, None);
        assert_eq!(f.mobile_phone, None);
        assert_eq!(f.office_phone, None);
        assert_eq!(f.photo_url, None);
        assert_eq!(f.business_unit, None);
        assert_eq!(f.role, None);
        assert_eq!(f.positions, Some(vec![]));
        assert_eq!(m.warnings.len(), 7, "{:#?}", m.warnings);
        for (field, value) in [
            ("username", "ann lee"),
            ("mobile_phone", "call me"),
            ("office_phone.number", "n/a"),
            ("photo_url", "ftp://x/y.png"),
            ("business_unit", "Atlantis"),
            ("role", "Astronaut"),
            ("positions", "Pilot"),
        ] {
            assert!(
                m.warnings
                    .iter()
                    .any(|w| w.starts_with(field) && w.contains(&format!("`{value}`"))),
                "{field} {value}: {:#?}",
                m.warnings
            );
        }
    }
}
