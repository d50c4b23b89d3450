//! `/Groups`: a Group is a catalog position; its members are the profiles that
//! hold it. Membership PATCH forms accepted (research file §2): `add` with a
//! `members` array; `remove` with `path: "members"` and a `value` array (removes
//! only those, Entra/JumpCloud); `remove` with `members[value eq "id"]` and no
//! value (Okta); `remove` of `members` without value (all); `replace` of
//! `members` (full sync); renames via `replace` of `displayName` with or without
//! a path, ignoring an echoed `id` (Okta). PATCH answers 204.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use super::error::{ScimError, ScimJson, scim_response};
use super::filter::{self, Filter, Op, ci_get};
use super::list::{self, ListParams};
use super::patch::{OpKind, parse_ops};
use super::schema::{self, Kind};
use super::{BaseUrl, ScimClient, ScimState};
use crate::employee::positions::{MembershipChange, Position};
use crate::employee::{EmployeeId, Error as DomainError};

fn ts_of(p: &Position) -> String {
    let (secs, nanos) = p.id.get_timestamp().map(|t| t.to_unix()).unwrap_or((0, 0));
    chrono::DateTime::from_timestamp(secs as i64, nanos)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn render(p: &Position, members: Option<&Vec<(EmployeeId, String)>>, base: &str) -> Value {
    let mut v = json!({
        "schemas": [schema::GROUP],
        "id": p.id.to_string(),
        "displayName": p.name,
        "meta": {
            "resourceType": "Group",
            "created": ts_of(p),
            "lastModified": ts_of(p),
            "location": format!("{base}/Groups/{}", p.id),
        },
    });
    if let Some(m) = members {
        v["members"] = Value::Array(
            m.iter()
                .map(|(id, name)| {
                    json!({"value": id.to_string(), "display": name, "type": "User", "$ref": format!("{base}/Users/{id}")})
                })
                .collect(),
        );
    }
    v
}

/// Members of every position, in one pass over the store.
fn all_members(state: &ScimState) -> Result<HashMap<String, Vec<(EmployeeId, String)>>, ScimError> {
    Ok(state.roster.members_by_position()?)
}

fn wants_members(p: &ListParams) -> bool {
    let named = |l: &[String]| {
        l.iter().any(|a| {
            a.eq_ignore_ascii_case("members") || a.to_ascii_lowercase().starts_with("members.")
        })
    };
    !named(&p.excluded) && (p.attributes.is_empty() || named(&p.attributes))
}

fn list_groups(state: &ScimState, p: &ListParams, base: &str) -> Result<Value, ScimError> {
    let f = match &p.filter {
        Some(t) => Some(list::parse_filter(Kind::Group, t)?),
        None => None,
    };
    let needs_members = wants_members(p)
        || p.filter
            .as_deref()
            .is_some_and(|t| t.to_ascii_lowercase().contains("members"));
    let members = if needs_members {
        Some(all_members(state)?)
    } else {
        None
    };
    let empty = Vec::new();
    let mut hits: Vec<Value> = state
        .roster
        .positions()?
        .iter()
        .map(|pos| {
            let m = members.as_ref().map(|m| m.get(&pos.name).unwrap_or(&empty));
            render(pos, m, base)
        })
        .filter(|d| {
            f.as_ref()
                .is_none_or(|f| filter::matches(f, d, &Kind::Group))
        })
        .collect();
    if p.sort_by
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("displayName"))
    {
        hits.sort_by_key(|d| d["displayName"].as_str().unwrap_or("").to_lowercase());
        if p.descending {
            hits.reverse();
        }
    }
    let total = hits.len();
    let page: Vec<Value> = hits
        .into_iter()
        .skip(p.start_index - 1)
        .take(p.count)
        .map(|d| {
            let d = if wants_members(p) {
                d
            } else {
                strip_members(d)
            };
            list::project(d, Kind::Group, &p.attributes, &p.excluded)
        })
        .collect();
    Ok(json!({
        "schemas": [schema::LIST],
        "totalResults": total,
        "startIndex": p.start_index,
        "itemsPerPage": page.len(),
        "Resources": page,
    }))
}

fn strip_members(mut d: Value) -> Value {
    if let Some(o) = d.as_object_mut() {
        o.remove("members");
    }
    d
}

fn get_position(state: &ScimState, raw: &str) -> Result<Position, ScimError> {
    let id: Uuid = raw
        .parse()
        .map_err(|_| ScimError::not_found(format!("no Group with id `{raw}`")))?;
    state.roster.position(id).map_err(|e| match e {
        DomainError::NotFound(_) => ScimError::not_found(format!("no Group with id `{raw}`")),
        e => e.into(),
    })
}

fn group_response(
    state: &ScimState,
    status: StatusCode,
    p: &Position,
    base: &str,
    q: &HashMap<String, String>,
) -> Result<Response, ScimError> {
    let lp = ListParams::from_query(q, 1)?;
    let members = if wants_members(&lp) {
        Some(
            state
                .roster
                .holders(&p.name)?
                .into_iter()
                .map(|e| (e.id, e.display_name))
                .collect::<Vec<_>>(),
        )
    } else {
        None
    };
    let doc = list::project(
        render(p, members.as_ref(), base),
        Kind::Group,
        &lp.attributes,
        &lp.excluded,
    );
    let mut resp = scim_response(status, &doc);
    if status == StatusCode::CREATED
        && let Ok(v) = HeaderValue::from_str(&format!("{base}/Groups/{}", p.id))
    {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// Member ids from `[{"value": id}, ...]`, `{"value": id}` or `"id"`.
fn member_ids(v: Option<&Value>) -> Result<Vec<EmployeeId>, ScimError> {
    let items: Vec<&Value> = match v {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(Value::Null) | None => vec![],
        Some(x) => vec![x],
    };
    items
        .into_iter()
        .map(|i| {
            let raw = match i {
                Value::Object(_) => ci_get(i, "value").and_then(Value::as_str).unwrap_or(""),
                Value::String(s) => s.as_str(),
                _ => "",
            };
            raw.parse::<EmployeeId>()
                .map_err(|_| ScimError::invalid_value(format!("member `{raw}` is not a User id")))
        })
        .collect()
}

/// Ids named by `value eq "id"` terms joined with `or`.
fn filter_ids(f: &Filter, out: &mut Vec<EmployeeId>) -> bool {
    match f {
        Filter::Or(a, b) => filter_ids(a, out) && filter_ids(b, out),
        Filter::Cmp(p, Op::Eq, lit) if p.0.eq_ignore_ascii_case("value") => {
            if let Ok(id) = lit.as_text().parse() {
                out.push(id);
            }
            true
        }
        _ => false,
    }
}

pub async fn groups_list(
    _: ScimClient,
    State(state): State<ScimState>,
    BaseUrl(base): BaseUrl,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let p = ListParams::from_query(&q, state.settings().max_page_size)?;
    Ok(scim_response(
        StatusCode::OK,
        &list_groups(&state, &p, &base)?,
    ))
}

pub async fn groups_search(
    _: ScimClient,
    State(state): State<ScimState>,
    BaseUrl(base): BaseUrl,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    let p = ListParams::from_body(&body, state.settings().max_page_size)?;
    Ok(scim_response(
        StatusCode::OK,
        &list_groups(&state, &p, &base)?,
    ))
}

pub async fn groups_get(
    _: ScimClient,
    State(state): State<ScimState>,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let p = get_position(&state, &id)?;
    group_response(&state, StatusCode::OK, &p, &base, &q)
}

pub async fn groups_create(
    ScimClient(actor): ScimClient,
    State(state): State<ScimState>,
    BaseUrl(base): BaseUrl,
    Query(q): Query<HashMap<String, String>>,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    let name = ci_get(&body, "displayName")
        .and_then(Value::as_str)
        .ok_or_else(|| ScimError::invalid_value("displayName is required"))?;
    let members = member_ids(ci_get(&body, "members"))?;
    for id in &members {
        state
            .roster
            .get(*id)
            .map_err(|_| ScimError::invalid_value(format!("member `{id}` is not a User id")))?;
    }
    let p = state.roster.create_position(&actor, name, "").await?;
    if !members.is_empty() {
        state
            .roster
            .change_members(&actor, p.id, MembershipChange::Add(members))
            .await?;
    }
    group_response(&state, StatusCode::CREATED, &p, &base, &q)
}

pub async fn groups_replace(
    ScimClient(actor): ScimClient,
    State(state): State<ScimState>,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    let mut p = get_position(&state, &id)?;
    if let Some(name) = ci_get(&body, "displayName").and_then(Value::as_str) {
        p = state.roster.rename_position(&actor, p.id, name).await?;
    }
    // A PUT without `members` leaves membership alone.
    if ci_get(&body, "members").is_some() || body.get("members").is_some() {
        let ids = member_ids(ci_get(&body, "members"))?;
        state
            .roster
            .change_members(&actor, p.id, MembershipChange::Replace(ids))
            .await?;
    }
    group_response(&state, StatusCode::OK, &p, &base, &q)
}

pub async fn groups_patch(
    ScimClient(actor): ScimClient,
    State(state): State<ScimState>,
    Path(id): Path<String>,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    let p = get_position(&state, &id)?;
    let ops = parse_ops(&body)?;
    // Check every operation before changing anything.
    let mut plan: Vec<Step> = Vec::new();
    for op in &ops {
        match &op.path {
            None => {
                let Some(Value::Object(m)) = &op.value else {
                    return Err(ScimError::invalid_syntax(
                        "an operation without path needs an object value",
                    ));
                };
                for (k, v) in m {
                    plan.extend(step(op.kind, k, None, Some(v))?);
                }
            }
            Some(path) => {
                let pp = filter::parse_patch_path(path)
                    .map_err(|e| super::patch::path_error(path, &e))?;
                plan.extend(step(
                    op.kind,
                    &pp.attr.0,
                    pp.filter.as_ref(),
                    op.value.as_ref(),
                )?);
            }
        }
    }
    for s in plan {
        match s {
            Step::Rename(name) => {
                state.roster.rename_position(&actor, p.id, &name).await?;
            }
            Step::Members(change) => state.roster.change_members(&actor, p.id, change).await?,
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

enum Step {
    Rename(String),
    Members(MembershipChange),
}

fn step(
    kind: OpKind,
    attr: &str,
    f: Option<&Filter>,
    value: Option<&Value>,
) -> Result<Option<Step>, ScimError> {
    let (_, a, _) = Kind::Group
        .lookup(attr)
        .ok_or_else(|| ScimError::invalid_path(format!("Groups have no attribute `{attr}`")))?;
    match (a.name, kind) {
        ("displayName", OpKind::Remove) => Err(ScimError::bad(
            "mutability",
            "displayName is required and cannot be removed",
        )),
        ("displayName", _) => match value.and_then(Value::as_str) {
            Some(n) => Ok(Some(Step::Rename(n.to_string()))),
            None => Err(ScimError::invalid_value("displayName must be a string")),
        },
        ("members", OpKind::Remove) => match f {
            Some(f) => {
                let mut ids = Vec::new();
                if !filter_ids(f, &mut ids) {
                    return Err(ScimError::invalid_path(
                        "members can be selected by `value eq \"<id>\"` (joined with or)",
                    ));
                }
                Ok(Some(Step::Members(MembershipChange::Remove(ids))))
            }
            None => match value {
                Some(v) if !v.is_null() => Ok(Some(Step::Members(MembershipChange::Remove(
                    member_ids(Some(v))?,
                )))),
                _ => Ok(Some(Step::Members(MembershipChange::Replace(vec![])))),
            },
        },
        ("members", OpKind::Add) => Ok(Some(Step::Members(MembershipChange::Add(member_ids(
            value,
        )?)))),
        ("members", OpKind::Replace) => Ok(Some(Step::Members(MembershipChange::Replace(
            member_ids(value)?,
        )))),
        // id, externalId, meta, schemas: read-only or not stored for Groups.
        _ => Ok(None),
    }
}

pub async fn groups_delete(
    ScimClient(actor): ScimClient,
    State(state): State<ScimState>,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let p = get_position(&state, &id)?;
    state.roster.delete_position(&actor, p.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
