//! The audit log's view of a change: field-level differences between two
//! states of a profile, with the password hash and the token digest kept out.
//! [`diff`] names every field through a getter, and `diff_covers_every_field`
//! stops the build when a field is added until the diff handles it too.

use serde_json::Value;

use super::{AccountToken, Employee, Enterprise, PasswordHash};
use crate::store::FieldChange;

/// Field-level differences between two states of a profile, for the audit log.
/// Bookkeeping fields (`id`, `version`, `created_at`, `updated_at`) are left out;
/// the password hash is recorded as `"***"` and the account token without its
/// digest. One entry per differing field, by field name in alphabetical order;
/// a value that is absent from the stored JSON (a `None`, empty enterprise
/// fields, no profile at all) is `null`.
///
/// Compares the typed fields and turns into JSON only the ones that differ (a
/// sync plans and a bulk import writes one of these per profile).
pub fn diff(before: Option<&Employee>, after: Option<&Employee>) -> Vec<FieldChange> {
    fn json<T: serde::Serialize>(v: Option<&T>) -> Value {
        v.and_then(|v| serde_json::to_value(v).ok())
            .unwrap_or(Value::Null)
    }
    fn field<T: PartialEq + serde::Serialize>(
        out: &mut Vec<FieldChange>,
        name: &str,
        before: Option<&T>,
        after: Option<&T>,
    ) {
        if before != after {
            out.push(FieldChange {
                field: name.to_string(),
                before: json(before),
                after: json(after),
            });
        }
    }
    let (b, a) = (before, after);
    let mut out = Vec::new();
    // Alphabetical by serialized name (`password_hash` is logged as `password`).
    field(
        &mut out,
        "account_status",
        b.map(|e| &e.account_status),
        a.map(|e| &e.account_status),
    );
    {
        let (bt, at) = (
            b.and_then(|e| e.account_token.as_ref()),
            a.and_then(|e| e.account_token.as_ref()),
        );
        if bt != at {
            // The digest stays out of the log: what and until when is enough.
            let redact = |t: Option<&AccountToken>| match t {
                Some(t) => serde_json::json!({
                    "purpose": json(Some(&t.purpose)),
                    "expires_at": json(Some(&t.expires_at)),
                }),
                None => Value::Null,
            };
            out.push(FieldChange {
                field: "account_token".into(),
                before: redact(bt),
                after: redact(at),
            });
        }
    }
    field(
        &mut out,
        "active",
        b.map(|e| &e.active),
        a.map(|e| &e.active),
    );
    field(
        &mut out,
        "business_unit",
        b.and_then(|e| e.business_unit.as_ref()),
        a.and_then(|e| e.business_unit.as_ref()),
    );
    field(
        &mut out,
        "deactivated_by",
        b.and_then(|e| e.deactivated_by.as_ref()),
        a.and_then(|e| e.deactivated_by.as_ref()),
    );
    field(
        &mut out,
        "display_name",
        b.map(|e| &e.display_name),
        a.map(|e| &e.display_name),
    );
    field(
        &mut out,
        "display_name_derived",
        b.map(|e| &e.display_name_derived).filter(|d| **d),
        a.map(|e| &e.display_name_derived).filter(|d| **d),
    );
    field(&mut out, "email", b.map(|e| &e.email), a.map(|e| &e.email));
    field(
        &mut out,
        "enabled",
        b.map(|e| &e.enabled),
        a.map(|e| &e.enabled),
    );
    field(
        &mut out,
        "enterprise",
        b.and_then(enterprise_set),
        a.and_then(enterprise_set),
    );
    field(
        &mut out,
        "external_id",
        b.and_then(|e| e.external_id.as_ref()),
        a.and_then(|e| e.external_id.as_ref()),
    );
    field(
        &mut out,
        "family_name",
        b.map(|e| &e.family_name),
        a.map(|e| &e.family_name),
    );
    field(
        &mut out,
        "given_name",
        b.map(|e| &e.given_name),
        a.map(|e| &e.given_name),
    );
    field(
        &mut out,
        "mobile_phone",
        b.and_then(|e| e.mobile_phone.as_ref()),
        a.and_then(|e| e.mobile_phone.as_ref()),
    );
    field(
        &mut out,
        "office_phone",
        b.and_then(|e| e.office_phone.as_ref()),
        a.and_then(|e| e.office_phone.as_ref()),
    );
    {
        let (bp, ap) = (
            b.and_then(|e| e.password_hash.as_ref()),
            a.and_then(|e| e.password_hash.as_ref()),
        );
        if bp != ap {
            let redact = |h: Option<&PasswordHash>| match h {
                Some(_) => Value::String("***".into()),
                None => Value::Null,
            };
            out.push(FieldChange {
                field: "password".into(),
                before: redact(bp),
                after: redact(ap),
            });
        }
    }
    field(
        &mut out,
        "permissions",
        b.map(|e| &e.permissions),
        a.map(|e| &e.permissions),
    );
    field(
        &mut out,
        "photo",
        b.and_then(|e| e.photo.as_ref()),
        a.and_then(|e| e.photo.as_ref()),
    );
    field(
        &mut out,
        "positions",
        b.map(|e| &e.positions),
        a.map(|e| &e.positions),
    );
    field(&mut out, "role", b.map(|e| &e.role), a.map(|e| &e.role));
    // Not stored when empty.
    field(
        &mut out,
        "source_facts",
        b.and_then(|e| (!e.source_facts.is_empty()).then_some(&e.source_facts)),
        a.and_then(|e| (!e.source_facts.is_empty()).then_some(&e.source_facts)),
    );
    field(
        &mut out,
        "source_keys",
        b.map(|e| &e.source_keys),
        a.map(|e| &e.source_keys),
    );
    field(
        &mut out,
        "username",
        b.map(|e| &e.username),
        a.map(|e| &e.username),
    );
    out
}

/// A note in an audit entry: a pseudo-field `note` whose `after` says what was
/// done (e.g. with an identity provider's password; never the password).
pub(super) fn audit_note(note: &str) -> FieldChange {
    FieldChange {
        field: "note".into(),
        before: Value::Null,
        after: Value::String(note.to_string()),
    }
}

/// The enterprise fields, `None` when all are empty (they are not stored then).
fn enterprise_set(e: &Employee) -> Option<&Enterprise> {
    (!e.enterprise.is_empty()).then_some(&e.enterprise)
}

/// Names every field of [`Employee`], so that adding one fails to compile until
/// [`diff`] handles it too (and the test against the JSON diff covers it).
#[allow(dead_code)]
fn diff_covers_every_field(e: &Employee) {
    let Employee {
        id: _,
        version: _,
        given_name: _,
        family_name: _,
        display_name: _,
        display_name_derived: _,
        email: _,
        username: _,
        positions: _,
        role: _,
        business_unit: _,
        photo: _,
        mobile_phone: _,
        office_phone: _,
        account_status: _,
        password_hash: _,
        enabled: _,
        active: _,
        permissions: _,
        external_id: _,
        enterprise: _,
        source_keys: _,
        source_facts: _,
        deactivated_by: _,
        account_token: _,
        created_at: _,
        updated_at: _,
    } = e;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::employee::{OfficePhone, Photo, TokenPurpose, fixtures};
    use chrono::Utc;

    /// The diff as first written: both profiles turned into JSON objects and
    /// compared key by key. [`diff`] must give exactly the same entries.
    fn diff_by_json(before: Option<&Employee>, after: Option<&Employee>) -> Vec<FieldChange> {
        const SKIP: [&str; 4] = ["id", "version", "created_at", "updated_at"];
        let to_map = |e: Option<&Employee>| -> serde_json::Map<String, Value> {
            match e.map(serde_json::to_value) {
                Some(Ok(Value::Object(m))) => m,
                _ => serde_json::Map::new(),
            }
        };
        let (b, a) = (to_map(before), to_map(after));
        let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
        keys.sort();
        keys.dedup();
        let mut out = Vec::new();
        for k in keys {
            if SKIP.contains(&k.as_str()) {
                continue;
            }
            let bv = b.get(k).cloned().unwrap_or(Value::Null);
            let av = a.get(k).cloned().unwrap_or(Value::Null);
            if bv == av {
                continue;
            }
            let (field, before, after) = match k.as_str() {
                "account_token" => {
                    let redact = |v: &Value| match v {
                        Value::Object(m) => serde_json::json!({
                            "purpose": m.get("purpose").cloned().unwrap_or(Value::Null),
                            "expires_at": m.get("expires_at").cloned().unwrap_or(Value::Null),
                        }),
                        _ => Value::Null,
                    };
                    (k.clone(), redact(&bv), redact(&av))
                }
                "password_hash" => {
                    let redact = |v: &Value| {
                        if v.is_null() {
                            Value::Null
                        } else {
                            Value::String("***".into())
                        }
                    };
                    ("password".to_string(), redact(&bv), redact(&av))
                }
                _ => (k.clone(), bv, av),
            };
            out.push(FieldChange {
                field,
                before,
                after,
            });
        }
        out
    }
    #[test]
    fn diff_matches_the_json_diff() {
        let (p, f) = (fixtures::plain(), fixtures::full());
        let mut other = fixtures::full();
        other.photo = Some(Photo::Url {
            url: "https://x/p.png".into(),
        });
        other.account_token = Some(AccountToken {
            purpose: TokenPurpose::PasswordReset,
            digest: Some("def".into()),
            expires_at: Utc::now(),
            message: None,
        });
        other.enterprise = Enterprise::default();
        other.given_name = "Grace".into();
        other.office_phone = Some(OfficePhone {
            number: "+1 555 0101".into(),
            extension: None,
        });
        let mut same_but_bookkeeping = f.clone();
        same_but_bookkeeping.version += 1;
        same_but_bookkeeping.updated_at = Utc::now();
        let states = [&p, &f, &other, &same_but_bookkeeping];
        let cases: Vec<(Option<&Employee>, Option<&Employee>)> = states
            .iter()
            .flat_map(|x| {
                states
                    .iter()
                    .map(move |y| (Some(*x), Some(*y)))
                    .chain([(None, Some(*x)), (Some(*x), None)])
            })
            .chain([(None, None)])
            .collect();
        for (b, a) in cases {
            assert_eq!(diff(b, a), diff_by_json(b, a));
        }
        assert!(diff(Some(&f), Some(&same_but_bookkeeping)).is_empty());
        let created = diff(None, Some(&f));
        assert!(
            created
                .iter()
                .any(|c| c.field == "password" && c.after == "***")
        );
        assert!(
            !serde_json::to_string(&created)
                .unwrap_or_default()
                .contains("abc")
        );
    }
}
