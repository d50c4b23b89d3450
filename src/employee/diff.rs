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
    let mut d = Diff {
        before,
        after,
        out: Vec::new(),
    };
    // Alphabetical by serialized name (`password_hash` is logged as `password`).
    d.field("account_status", |e| Some(&e.account_status));
    // The digest stays out of the log: what and until when is enough.
    d.redacted(
        "account_token",
        |e| e.account_token.as_ref(),
        |t: &AccountToken| {
            serde_json::json!({
                "purpose": json(&t.purpose),
                "expires_at": json(&t.expires_at),
            })
        },
    );
    d.field("active", |e| Some(&e.active));
    d.field("business_unit", |e| e.business_unit.as_ref());
    d.field("deactivated_by", |e| e.deactivated_by.as_ref());
    d.field("display_name", |e| Some(&e.display_name));
    d.field("display_name_derived", |e| {
        Some(&e.display_name_derived).filter(|d| **d)
    });
    d.field("email", |e| Some(&e.email));
    d.field("enabled", |e| Some(&e.enabled));
    d.field("enterprise", enterprise_set);
    d.field("external_id", |e| e.external_id.as_ref());
    d.field("family_name", |e| Some(&e.family_name));
    d.field("given_name", |e| Some(&e.given_name));
    d.field("mobile_phone", |e| e.mobile_phone.as_ref());
    d.field("office_phone", |e| e.office_phone.as_ref());
    d.redacted(
        "password",
        |e| e.password_hash.as_ref(),
        |_: &PasswordHash| Value::String("***".into()),
    );
    d.field("permissions", |e| Some(&e.permissions));
    d.field("photo", |e| e.photo.as_ref());
    d.field("positions", |e| Some(&e.positions));
    d.field("role", |e| Some(&e.role));
    // Not stored when empty.
    d.field("source_facts", |e| {
        (!e.source_facts.is_empty()).then_some(&e.source_facts)
    });
    d.field("source_keys", |e| Some(&e.source_keys));
    d.field("username", |e| Some(&e.username));
    d.out
}

/// The two states being compared and the differences found so far.
struct Diff<'a> {
    before: Option<&'a Employee>,
    after: Option<&'a Employee>,
    out: Vec<FieldChange>,
}

impl<'a> Diff<'a> {
    /// Records the field `get` reads when it differs, its values as JSON.
    fn field<T: PartialEq + serde::Serialize + 'a>(
        &mut self,
        name: &str,
        get: impl Fn(&'a Employee) -> Option<&'a T>,
    ) {
        self.redacted(name, get, json);
    }

    /// Records the field `get` reads when it differs, each value as `show`
    /// renders it (an absent value is `null`).
    fn redacted<T: PartialEq + 'a>(
        &mut self,
        name: &str,
        get: impl Fn(&'a Employee) -> Option<&'a T>,
        show: impl Fn(&T) -> Value,
    ) {
        let (b, a) = (self.before.and_then(&get), self.after.and_then(&get));
        if b != a {
            self.out.push(FieldChange {
                field: name.to_string(),
                before: b.map_or(Value::Null, &show),
                after: a.map_or(Value::Null, &show),
            });
        }
    }
}

/// A value as the stored JSON has it (`null` if it cannot be serialized).
fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
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
