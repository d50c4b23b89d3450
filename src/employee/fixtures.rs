//! Test fixtures shared by the domain's tests: profiles and a catalog built
//! in one place, so that a new field is added once.

use chrono::Utc;

use super::catalog::RoleDef;
use super::{
    AccountStatus, AccountToken, Catalog, Employee, EmployeeId, Enterprise, OfficePhone,
    PasswordHash, PermissionOverrides, Photo, SourceFacts, TokenPurpose,
};
use crate::store::Actor;

/// A profile with a name and an email, active, enabled, role `Technician`,
/// nothing else set.
pub fn employee(given: &str, family: &str, email: &str) -> Employee {
    let now = Utc::now();
    Employee {
        id: EmployeeId::new(),
        version: 1,
        given_name: given.into(),
        family_name: family.into(),
        display_name: format!("{given} {family}"),
        display_name_derived: false,
        email: email.into(),
        username: email.into(),
        positions: vec![],
        role: "Technician".into(),
        business_unit: None,
        photo: None,
        mobile_phone: None,
        office_phone: None,
        account_status: AccountStatus::Later,
        password_hash: None,
        enabled: true,
        active: true,
        permissions: PermissionOverrides::default(),
        external_id: None,
        enterprise: Enterprise::default(),
        source_keys: Default::default(),
        source_facts: Default::default(),
        deactivated_by: None,
        account_token: None,
        created_at: now,
        updated_at: now,
    }
}

/// Ada Lovelace, nothing optional set.
pub fn plain() -> Employee {
    employee("Ada", "Lovelace", "ada@example.com")
}

/// A catalog with one role, `Technician` (the default), and nothing else.
pub fn technician_catalog() -> Catalog {
    one_role_catalog("Technician")
}

/// A catalog with one role, `role` (the default), and nothing else.
pub fn one_role_catalog(role: &str) -> Catalog {
    Catalog::new(
        vec![],
        vec![],
        vec![RoleDef {
            name: role.into(),
            description: String::new(),
            permissions: vec![],
        }],
        vec![],
        Some(role.into()),
    )
    .unwrap()
}

/// Every field set.
pub fn full() -> Employee {
    let mut e = plain();
    e.version = 7;
    e.display_name_derived = true;
    e.positions = vec!["Driver".into(), "Dispatcher".into()];
    e.business_unit = Some("North".into());
    e.photo = Some(Photo::Uploaded {
        content_type: "image/png".into(),
        size: 12,
        sha256: Some("ab".repeat(32)),
    });
    e.mobile_phone = Some("+1 555 0100".into());
    e.office_phone = Some(OfficePhone {
        number: "+1 555 0101".into(),
        extension: Some("12".into()),
    });
    e.account_status = AccountStatus::Invite;
    e.password_hash = Some(PasswordHash("$argon2id$x".into()));
    e.enabled = false;
    e.active = false;
    e.permissions = PermissionOverrides {
        grant: vec!["jobs.view".into()],
        revoke: vec![],
    };
    e.external_id = Some("x-1".into());
    e.enterprise.department = Some("Ops".into());
    e.source_keys.insert("ldap".into(), "k-1".into());
    e.source_facts.insert(
        "hr".into(),
        SourceFacts {
            disabled: Some("terminated".into()),
            ..Default::default()
        },
    );
    e.deactivated_by = Some(Actor::admin("ops"));
    e.account_token = Some(AccountToken {
        purpose: TokenPurpose::Invite,
        digest: Some("abc".into()),
        expires_at: Utc::now(),
        message: Some(7),
    });
    e.updated_at = Utc::now();
    e
}
