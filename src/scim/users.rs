//! `/Users` handlers: extract, call the domain, map the error.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::{ScimError, ScimJson, scim_bytes, scim_response};
use super::list::{self, ListParams};
use super::schema::Kind;
use super::user::{self, etag};
use super::{BaseUrl, ScimClient, ScimState, etag_header};
use super::{patch, render};
use crate::employee::{Employee, EmployeeId, Error as DomainError};

fn parse_id(raw: &str) -> Result<EmployeeId, ScimError> {
    raw.parse()
        .map_err(|_| ScimError::not_found(format!("no User with id `{raw}`")))
}

fn get_user(state: &ScimState, raw: &str) -> Result<Employee, ScimError> {
    state.roster.get(parse_id(raw)?).map_err(|e| match e {
        DomainError::NotFound(_) => ScimError::not_found(format!("no User with id `{raw}`")),
        e => e.into(),
    })
}

/// 412 unless `If-Match` (if given) names the current version.
fn check_if_match(h: &HeaderMap, e: &Employee) -> Result<(), ScimError> {
    match etag_header(h, header::IF_MATCH) {
        Some(Some(v)) if v != e.version => Err(ScimError::precondition_failed(e.version)),
        _ => Ok(()),
    }
}

fn user_response(
    state: &ScimState,
    status: StatusCode,
    e: &Employee,
    base: &str,
    q: &HashMap<String, String>,
) -> Result<Response, ScimError> {
    let p = ListParams::from_query(q, 1)?;
    let positions = state.roster.position_map()?;
    let effective = state.roster.effective_permissions(e);
    let mut resp = if p.attributes.is_empty() && p.excluded.is_empty() {
        // Every attribute: written straight to bytes (see `render`).
        scim_bytes(status, render::user_bytes(e, &effective, &positions, base))
    } else {
        let doc = user::to_scim(e, &effective, &positions, base);
        scim_response(
            status,
            &list::project(doc, Kind::User, &p.attributes, &p.excluded),
        )
    };
    if let Ok(v) = HeaderValue::from_str(&etag(e.version)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED
        && let Ok(v) = HeaderValue::from_str(&format!("{base}/Users/{}", e.id))
    {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

pub async fn users_list(
    _: ScimClient,
    State(state): State<ScimState>,
    BaseUrl(base): BaseUrl,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let p = ListParams::from_query(&q, state.settings().max_page_size)?;
    // An index lookup (`userName eq`...) is written straight to bytes.
    if let Some(bytes) = render::indexed_list(&state, &p, &base)? {
        return Ok(scim_bytes(StatusCode::OK, bytes));
    }
    Ok(scim_response(
        StatusCode::OK,
        &crate::blocking::in_place(|| list::list_users(&state, &p, &base))?,
    ))
}

pub async fn users_search(
    _: ScimClient,
    State(state): State<ScimState>,
    BaseUrl(base): BaseUrl,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    let p = ListParams::from_body(&body, state.settings().max_page_size)?;
    Ok(scim_response(
        StatusCode::OK,
        &crate::blocking::in_place(|| list::list_users(&state, &p, &base))?,
    ))
}

pub async fn users_get(
    _: ScimClient,
    State(state): State<ScimState>,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let e = get_user(&state, &id)?;
    if let Some(Some(v)) = etag_header(&headers, header::IF_NONE_MATCH)
        && v == e.version
    {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(&etag(e.version)) {
            resp.headers_mut().insert(header::ETAG, v);
        }
        return Ok(resp);
    }
    user_response(&state, StatusCode::OK, &e, &base, &q)
}

pub async fn users_create(
    ScimClient(actor): ScimClient,
    State(state): State<ScimState>,
    BaseUrl(base): BaseUrl,
    Query(q): Query<HashMap<String, String>>,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    let catalog = state.roster.catalog();
    let settings = state.settings();
    let input = user::parse(&body)?.into_new(
        &catalog,
        settings.default_role.as_deref(),
        settings.account_status,
        settings.passwords_of(&actor.name),
    )?;
    let e = state.roster.create(&actor, input).await?;
    user_response(&state, StatusCode::CREATED, &e, &base, &q)
}

pub async fn users_replace(
    ScimClient(actor): ScimClient,
    State(state): State<ScimState>,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    let current = get_user(&state, &id)?;
    check_if_match(&headers, &current)?;
    let passwords = state.settings().passwords_of(&actor.name);
    let patch =
        user::parse(&body)?.into_replace(&current, &state.roster.catalog(), passwords, false)?;
    let e = state
        .roster
        .update(&actor, current.id, patch, Some(current.version))
        .await?;
    user_response(&state, StatusCode::OK, &e, &base, &q)
}

pub async fn users_patch(
    ScimClient(actor): ScimClient,
    State(state): State<ScimState>,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    let ops = patch::parse_ops(&body)?;
    let positions = list::position_map(&state)?;
    let if_match = etag_header(&headers, header::IF_MATCH).is_some();
    // Read-apply-write; without If-Match, a concurrent change is retried.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = get_user(&state, &id)?;
        check_if_match(&headers, &current)?;
        let mut doc = user::to_scim(&current, &[], &positions, &base);
        // `roles` and the extension's `role` are one field: drop the copy so the
        // one the operations touch decides.
        if let Some(x) = doc
            .get_mut(super::schema::ROSTERD)
            .and_then(|x| x.as_object_mut())
        {
            x.remove("role");
        }
        // Nor are the current role and email marked primary, so one added by
        // `add roles` / `add emails` (the last one listed) wins.
        // (nor the email's `type`, which rosterd sets itself, so that a new one
        // of any type wins).
        for multi in ["roles", "emails"] {
            if let Some(items) = doc.get_mut(multi).and_then(|r| r.as_array_mut()) {
                for r in items.iter_mut().filter_map(|r| r.as_object_mut()) {
                    r.remove("primary");
                    if multi == "emails" {
                        r.remove("type");
                    }
                }
            }
        }
        for op in &ops {
            patch::apply(&mut doc, Kind::User, op)?;
        }
        patch::check_required(&doc, Kind::User)?;
        let passwords = state.settings().passwords_of(&actor.name);
        let replace =
            user::parse(&doc)?.into_replace(&current, &state.roster.catalog(), passwords, true)?;
        match state
            .roster
            .update(&actor, current.id, replace, Some(current.version))
            .await
        {
            Ok(e) => return user_response(&state, StatusCode::OK, &e, &base, &q),
            Err(DomainError::VersionMismatch { .. }) if !if_match && attempt < 5 => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

pub async fn users_delete(
    ScimClient(actor): ScimClient,
    State(state): State<ScimState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let current = get_user(&state, &id)?;
    check_if_match(&headers, &current)?;
    state.roster.delete(&actor, current.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
