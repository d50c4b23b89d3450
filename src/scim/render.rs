//! The User resource written straight to JSON bytes, for the reads that answer
//! with whole resources (`GET /Users/{id}`, the answers of POST/PUT/PATCH, and
//! the indexed `filter=userName eq …` lookups): the same document as
//! [`super::user::to_scim`], byte for byte (a unit test compares them), without
//! building a `serde_json::Value` tree first. Profiling `GET /Users/{id}` under
//! `wrk` showed the tree (an allocation per key and value, an `IndexMap` per
//! object) and its serialization as the largest part of a request after the
//! socket writes. Requests with `attributes` / `excludedAttributes` keep the
//! tree (see [`super::list::project`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::{self, Display};

use serde::{Serialize, Serializer};

use super::schema::{ENTERPRISE, ROSTERD, USER};
use crate::employee::positions::Position;
use crate::employee::{Employee, Photo, validate};

/// Serializes as its `Display` text (no `String` in between).
struct Text<T>(T);

impl<T: Display> Serialize for Text<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// `{base}{path}{id}`.
struct Link<'a, T>(&'a str, &'static str, T);

impl<T: Display> Display for Link<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.0, self.1, self.2)
    }
}

/// `W/"<version>"`, as [`super::user::etag`].
struct Etag(u64);

impl Display for Etag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "W/\"{}\"", self.0)
    }
}

/// A timestamp as [`super::user::to_scim`] writes it (RFC 3339, milliseconds, `Z`).
struct Stamp<'a>(&'a chrono::DateTime<chrono::Utc>);

impl Display for Stamp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use chrono::{Datelike, Timelike};
        let t = self.0;
        if !(0..=9999).contains(&t.year()) {
            // Outside four-digit years chrono writes a sign: as to_scim does.
            return f.write_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        }
        // By hand: chrono's format strings are parsed again at every call.
        // (A leap second's nanoseconds run past 1e9: chrono writes them so too.)
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond() / 1_000_000
        )
    }
}

#[derive(Serialize)]
struct Email<'a> {
    value: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    primary: bool,
}

#[derive(Serialize)]
struct Role<'a> {
    value: &'a str,
    primary: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta<'a> {
    resource_type: &'static str,
    created: Text<Stamp<'a>>,
    last_modified: Text<Stamp<'a>>,
    location: Text<Link<'a, crate::employee::EmployeeId>>,
    version: Text<Etag>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Name<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    given_name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    family_name: &'a str,
    formatted: String,
}

#[derive(Serialize)]
struct Typed<'a> {
    value: Cow<'a, str>,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Group<'a> {
    value: Text<uuid::Uuid>,
    display: &'a str,
    #[serde(rename = "$ref")]
    link: Text<Link<'a, uuid::Uuid>>,
}

#[derive(Serialize)]
struct Manager<'a> {
    value: &'a str,
    #[serde(rename = "$ref", skip_serializing_if = "Option::is_none")]
    link: Option<Text<Link<'a, &'a str>>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnterpriseExt<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    employee_number: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_center: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    organization: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    division: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    department: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    manager: Option<Manager<'a>>,
}

#[derive(Serialize)]
struct Overrides<'a> {
    grant: &'a [String],
    revoke: &'a [String],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RosterdExt<'a> {
    positions: &'a [String],
    role: &'a str,
    enabled: bool,
    account_status: &'static str,
    permissions: Overrides<'a>,
    effective_permissions: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    business_unit: Option<&'a str>,
}

/// The User resource, in [`super::user::to_scim`]'s order of attributes.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserDoc<'a> {
    schemas: [&'static str; 3],
    id: Text<crate::employee::EmployeeId>,
    user_name: &'a str,
    emails: [Email<'a>; 1],
    active: bool,
    roles: [Role<'a>; 1],
    meta: Meta<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<Name<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    phone_numbers: Vec<Typed<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    photos: Option<[Typed<'a>; 1]>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    groups: Vec<Group<'a>>,
    #[serde(rename = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")]
    enterprise: EnterpriseExt<'a>,
    #[serde(rename = "urn:rosterd:params:scim:schemas:extension:rosterd:2.0:User")]
    rosterd: RosterdExt<'a>,
}

/// Appends the User resource of `e` to `out` (the bytes of
/// `serde_json::to_vec(&to_scim(e, effective, positions, base))`). Long on
/// purpose: it mirrors `to_scim` block for block, so the two are compared by eye.
pub fn write_user(
    out: &mut Vec<u8>,
    e: &Employee,
    effective: &[String],
    positions: &HashMap<String, Position>,
    base: &str,
) {
    let x = &e.enterprise;
    let name = (!e.given_name.is_empty() || !e.family_name.is_empty()).then(|| Name {
        given_name: &e.given_name,
        family_name: &e.family_name,
        formatted: validate::derived_display_name(&e.given_name, &e.family_name),
    });
    let mut phone_numbers = Vec::new();
    if let Some(m) = &e.mobile_phone {
        phone_numbers.push(Typed {
            value: Cow::Borrowed(m),
            kind: "mobile",
        });
    }
    if let Some(o) = &e.office_phone {
        phone_numbers.push(Typed {
            value: Cow::Owned(super::user::office_value(o)),
            kind: "work",
        });
    }
    let doc = UserDoc {
        schemas: [USER, ENTERPRISE, ROSTERD],
        id: Text(e.id),
        user_name: &e.username,
        emails: [Email {
            value: &e.email,
            kind: "work",
            primary: true,
        }],
        active: e.active,
        roles: [Role {
            value: &e.role,
            primary: true,
        }],
        meta: Meta {
            resource_type: "User",
            created: Text(Stamp(&e.created_at)),
            last_modified: Text(Stamp(&e.updated_at)),
            location: Text(Link(base, "/Users/", e.id)),
            version: Text(Etag(e.version)),
        },
        external_id: e.external_id.as_deref(),
        name,
        display_name: (!e.display_name_derived).then_some(e.display_name.as_str()),
        phone_numbers,
        photos: match &e.photo {
            Some(Photo::Url { url }) => Some([Typed {
                value: Cow::Borrowed(url),
                kind: "photo",
            }]),
            _ => None,
        },
        groups: e
            .positions
            .iter()
            .filter_map(|n| positions.get(n))
            .map(|p| Group {
                value: Text(p.id),
                display: &p.name,
                link: Text(Link(base, "/Groups/", p.id)),
            })
            .collect(),
        enterprise: EnterpriseExt {
            employee_number: x.employee_number.as_deref(),
            cost_center: x.cost_center.as_deref(),
            organization: x.organization.as_deref(),
            division: x.division.as_deref(),
            department: x.department.as_deref(),
            manager: x.manager.as_deref().map(|m| Manager {
                value: m,
                link: m
                    .parse::<uuid::Uuid>()
                    .is_ok()
                    .then_some(Text(Link(base, "/Users/", m))),
            }),
        },
        rosterd: RosterdExt {
            positions: &e.positions,
            role: &e.role,
            enabled: e.enabled,
            account_status: e.account_status.as_str(),
            permissions: Overrides {
                grant: &e.permissions.grant,
                revoke: &e.permissions.revoke,
            },
            effective_permissions: effective,
            business_unit: e.business_unit.as_deref(),
        },
    };
    // Writing plain structs of strings, numbers and booleans into a Vec
    // cannot fail; nothing is written if it somehow did.
    let mark = out.len();
    if serde_json::to_writer(&mut *out, &doc).is_err() {
        out.truncate(mark);
    }
}

/// The bytes of one User resource.
pub fn user_bytes(
    e: &Employee,
    effective: &[String],
    positions: &HashMap<String, Position>,
    base: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1536);
    write_user(&mut out, e, effective, positions, base);
    out
}

/// A `ListResponse` (RFC 7644 §3.4.2) around resources already written, in
/// [`super::list::list_users`]' order of attributes.
pub fn list_response(total: usize, start_index: usize, resources: &[Vec<u8>]) -> Vec<u8> {
    let size: usize = resources.iter().map(|r| r.len() + 1).sum();
    let mut out = Vec::with_capacity(size + 160);
    out.extend_from_slice(b"{\"schemas\":[\"");
    out.extend_from_slice(super::schema::LIST.as_bytes());
    out.extend_from_slice(
        format!(
            "\"],\"totalResults\":{total},\"startIndex\":{start_index},\"itemsPerPage\":{},\"Resources\":[",
            resources.len()
        )
        .as_bytes(),
    );
    for (i, r) in resources.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(r);
    }
    out.extend_from_slice(b"]}");
    out
}

/// The `ListResponse` of a request an index answers (see [`super::list`]:
/// an equality on `userName`, `emails`, `externalId` or `id`), unsorted and
/// with every attribute, written as bytes; `None` for any other request
/// (which [`super::list::list_users`] answers). Same checks, hits and order
/// as `list_users`' indexed branch.
pub fn indexed_list(
    state: &super::ScimState,
    p: &super::list::ListParams,
    base: &str,
) -> Result<Option<Vec<u8>>, super::ScimError> {
    use std::cell::OnceCell;
    let Some(text) = &p.filter else {
        return Ok(None);
    };
    if p.sort_by.is_some() || !p.attributes.is_empty() || !p.excluded.is_empty() {
        return Ok(None);
    }
    let f = super::list::parse_filter(super::schema::Kind::User, text)?;
    let Some(ids) = super::list::candidates(state, &f)? else {
        return Ok(None);
    };
    let roster = &state.roster;
    let positions = roster.position_map()?;
    let matcher = super::matcher::Matcher::new(&f);
    let skip = p.start_index - 1;
    let mut total = 0;
    let mut page = Vec::new();
    for id in ids {
        let Ok(e) = roster.get(crate::employee::EmployeeId(id)) else {
            continue;
        };
        let effective = roster.effective_permissions(&e);
        let draw = |e: &Employee| super::user::to_scim(e, &effective, &positions, base);
        if !matcher.matches(&e, draw, &OnceCell::new()) {
            continue;
        }
        total += 1;
        if total > skip && page.len() < p.count {
            page.push(user_bytes(&e, &effective, &positions, base));
        }
    }
    Ok(Some(list_response(total, p.start_index, &page)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::employee::{AccountStatus, Enterprise, OfficePhone};
    use serde_json::json;

    fn employee() -> Employee {
        let mut e = crate::employee::fixtures::employee("Ana \"Q\" Ló", "Pérez", "ana@example.com");
        e.version = 7;
        e.display_name = "Ana Pérez".into();
        e.display_name_derived = true;
        e.username = "ana".into();
        e.role = "Driver".into();
        e.account_status = AccountStatus::Later;
        e.created_at = "2026-01-02T03:04:05.678901Z".parse().unwrap();
        e.updated_at = "2026-02-03T04:05:06Z".parse().unwrap();
        e
    }

    fn same(e: &Employee, effective: &[String], positions: &HashMap<String, Position>) {
        let base = "https://idp.example/scim/v2";
        let want = serde_json::to_vec(&super::super::user::to_scim(e, effective, positions, base))
            .unwrap_or_default();
        let got = user_bytes(e, effective, positions, base);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "the written resource differs from to_scim's"
        );
    }

    /// The bytes are to_scim's, for a bare profile and for one with every
    /// optional attribute (names with quotes and accents, both phones, a photo
    /// link, groups, every enterprise field, a manager by id and by name,
    /// overrides, a business unit).
    #[test]
    fn written_users_are_to_scims_bytes() {
        let positions: HashMap<String, Position> = ["Driver", "Mechanic"]
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    Position {
                        id: uuid::Uuid::now_v7(),
                        name: n.to_string(),
                        description: String::new(),
                    },
                )
            })
            .collect();
        let bare = employee();
        same(&bare, &[], &HashMap::new());
        let mut only_family = employee();
        only_family.given_name.clear();
        same(&only_family, &["jobs.view".into()], &positions);
        let mut full = employee();
        full.display_name_derived = false;
        full.display_name = "Ana\n\u{1F600} <b>".into();
        full.mobile_phone = Some("+1 555 0100".into());
        full.office_phone = Some(OfficePhone {
            number: "+1-555-0101".into(),
            extension: Some("42".into()),
        });
        full.photo = Some(Photo::Url {
            url: "https://cdn.example/a.png".into(),
        });
        full.positions = vec!["Driver".into(), "Mechanic".into(), "Gone".into()];
        full.external_id = Some("ext-1".into());
        full.business_unit = Some("North".into());
        full.permissions.grant = vec!["a".into()];
        full.permissions.revoke = vec!["b".into()];
        full.enterprise = Enterprise {
            employee_number: Some("E1".into()),
            cost_center: Some("CC".into()),
            organization: Some("Org".into()),
            division: Some("Div".into()),
            department: Some("Dep".into()),
            manager: Some(uuid::Uuid::now_v7().to_string()),
        };
        full.active = false;
        full.account_status = AccountStatus::Invite;
        same(&full, &["a".into(), "jobs.view".into()], &positions);
        full.enterprise.manager = Some("boss@example.com".into());
        full.office_phone = Some(OfficePhone {
            number: "+1 555 0101".into(),
            extension: Some("7".into()),
        });
        same(&full, &[], &positions);
        full.office_phone = Some(OfficePhone {
            number: "0101".into(),
            extension: None,
        });
        full.photo = None;
        same(&full, &[], &positions);
    }

    /// Timestamps are written as to_scim writes them.
    #[test]
    fn stamps_are_rfc3339_with_milliseconds() {
        for raw in [
            "2026-01-02T03:04:05.678901Z",
            "2026-12-31T23:59:59Z",
            "0001-01-01T00:00:00.001Z",
            "9999-12-31T23:59:59.999999999Z",
        ] {
            let t: chrono::DateTime<chrono::Utc> =
                raw.parse().unwrap_or_else(|err| panic!("{raw}: {err}"));
            assert_eq!(
                Stamp(&t).to_string(),
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "{raw}"
            );
        }
    }

    /// The list wrapper is the JSON list_users builds.
    #[test]
    fn a_written_list_is_the_list_response() {
        let e = employee();
        let one = user_bytes(&e, &[], &HashMap::new(), "http://h/scim/v2");
        let got = list_response(3, 2, &[one.clone(), one]);
        let doc: serde_json::Value =
            serde_json::from_slice(&got).unwrap_or_else(|err| panic!("list JSON: {err}"));
        let res = super::super::user::to_scim(&e, &[], &HashMap::new(), "http://h/scim/v2");
        let want = json!({
            "schemas": [super::super::schema::LIST],
            "totalResults": 3,
            "startIndex": 2,
            "itemsPerPage": 2,
            "Resources": [res.clone(), res],
        });
        assert_eq!(got, serde_json::to_vec(&want).unwrap_or_default());
        assert_eq!(doc, want);
        let empty = list_response(0, 1, &[]);
        assert_eq!(
            empty,
            serde_json::to_vec(&json!({
                "schemas": [super::super::schema::LIST],
                "totalResults": 0, "startIndex": 1, "itemsPerPage": 0, "Resources": [],
            }))
            .unwrap_or_default()
        );
    }
}
