//! Add Employee and Edit Employee: one form (profile, account status on
//! creation, Enabled, permission overrides), and on edit the Profile Actions
//! (Deactivate / Activate, Send account invite, Send password reset). A rule the
//! domain refuses is shown next to its field, with everything typed kept.
//!
//! On edit, a field that a sync source owns says so (which source, and that
//! its next run overwrites an edit), from [`field_owners`], the logic of
//! `rosterctl employees explain`; and the employee's audit history is on the
//! page, newest first, a page at a time.
//!
//! [`field_owners`]: crate::sync::engine::field_owners

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::{Chrome, Viewer, WebState, domain_error_page, error_page};
use crate::employee::account::SendKind;
use crate::employee::{
    AccountStatus, Employee, EmployeeId, EmployeePatch, Error as DomainError, NewEmployee,
    OfficePhone, PermissionOverrides,
};
use crate::secret::Secret;

/// What the form holds, as typed.
#[derive(Debug, Clone, Default)]
pub struct Values {
    pub given_name: String,
    pub family_name: String,
    pub display_name: String,
    pub email: String,
    pub positions: Vec<String>,
    pub role: String,
    pub business_unit: String,
    pub mobile_phone: String,
    pub office_number: String,
    pub has_extension: bool,
    pub office_extension: String,
    pub account_status: String,
    pub username: String,
    pub enabled: bool,
    /// Permission → "default" | "grant" | "revoke".
    pub permissions: Vec<(String, String)>,
    pub version: Option<u64>,
}

impl Values {
    fn from_employee(e: &Employee) -> Self {
        let perm = |p: &str| {
            if e.permissions.grant.iter().any(|g| g == p) {
                "grant"
            } else if e.permissions.revoke.iter().any(|r| r == p) {
                "revoke"
            } else {
                "default"
            }
        };
        let mut v = Values {
            given_name: e.given_name.clone(),
            family_name: e.family_name.clone(),
            display_name: if e.display_name_derived {
                String::new()
            } else {
                e.display_name.clone()
            },
            email: e.email.clone(),
            positions: e.positions.clone(),
            role: e.role.clone(),
            business_unit: e.business_unit.clone().unwrap_or_default(),
            mobile_phone: e.mobile_phone.clone().unwrap_or_default(),
            office_number: e
                .office_phone
                .as_ref()
                .map(|o| o.number.clone())
                .unwrap_or_default(),
            has_extension: e
                .office_phone
                .as_ref()
                .is_some_and(|o| o.extension.is_some()),
            office_extension: e
                .office_phone
                .as_ref()
                .and_then(|o| o.extension.clone())
                .unwrap_or_default(),
            account_status: e.account_status.as_str().into(),
            username: e.username.clone(),
            enabled: e.enabled,
            permissions: Vec::new(),
            version: Some(e.version),
        };
        v.permissions = [&e.permissions.grant, &e.permissions.revoke]
            .into_iter()
            .flatten()
            .map(|p| (p.clone(), perm(p).to_string()))
            .collect();
        v
    }

    fn from_form(form: &[(String, String)]) -> (Self, Option<Secret>) {
        let mut v = Values::default();
        let mut password = None;
        for (k, val) in form {
            let t = val.trim().to_string();
            match k.as_str() {
                "given_name" => v.given_name = t,
                "family_name" => v.family_name = t,
                "display_name" => v.display_name = t,
                "email" => v.email = t,
                "positions" if !t.is_empty() => v.positions.push(t),
                "role" => v.role = t,
                "business_unit" => v.business_unit = t,
                "mobile_phone" => v.mobile_phone = t,
                "office_number" => v.office_number = t,
                "has_extension" => v.has_extension = true,
                "office_extension" => v.office_extension = t,
                "account_status" => v.account_status = t,
                "username" => v.username = t,
                "password" if !val.is_empty() => password = Some(Secret::new(val.clone())),
                "enabled" => v.enabled = true,
                "version" => v.version = t.parse().ok(),
                p if p.starts_with("perm.") && t != "default" => {
                    v.permissions.push((p["perm.".len()..].to_string(), t))
                }
                _ => {}
            }
        }
        (v, password)
    }

    fn overrides(&self) -> PermissionOverrides {
        let pick = |what: &str| {
            self.permissions
                .iter()
                .filter(|(_, s)| s == what)
                .map(|(p, _)| p.clone())
                .collect()
        };
        PermissionOverrides {
            grant: pick("grant"),
            revoke: pick("revoke"),
        }
    }

    fn office_phone(&self) -> Option<OfficePhone> {
        (!self.office_number.is_empty()).then(|| OfficePhone {
            number: self.office_number.clone(),
            extension: (self.has_extension && !self.office_extension.is_empty())
                .then(|| self.office_extension.clone()),
        })
    }
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Audit entries shown per page of the history.
const HISTORY_PAGE: usize = 20;

/// One audit entry, as the history shows it.
pub struct HistoryRow {
    pub when: String,
    pub who: String,
    pub action: String,
    /// `field: before → after`.
    pub changes: Vec<String>,
}

/// Who acted, in words: the employee's name, the token's name, the source...
fn actor_text(a: &crate::store::Actor) -> String {
    use crate::store::ActorKind;
    match a.kind {
        // Recorded as `<id> <display name>`.
        ActorKind::Employee => a
            .name
            .split_once(' ')
            .map(|(_, n)| n)
            .unwrap_or(&a.name)
            .to_string(),
        ActorKind::Admin => format!("admin token “{}”", a.name),
        ActorKind::Sync => format!("sync source {}", a.name),
        ActorKind::Scim => format!("SCIM client {}", a.name),
        ActorKind::Account => "the employee (own account)".into(),
        ActorKind::System => "rosterd".into(),
    }
}

/// A recorded value in words (secrets are recorded as `***` already).
fn value_text(v: &serde_json::Value) -> String {
    use serde_json::Value;
    let t = match v {
        Value::Null => "(none)".to_string(),
        Value::String(s) if s.is_empty() => "(empty)".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "(none)".to_string(),
        Value::Array(a) if a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        other => other.to_string(),
    };
    if t.chars().count() > 120 {
        t.chars().take(117).collect::<String>() + "…"
    } else {
        t
    }
}

/// A page of `e`'s audit history before `before` (newest first), and the link
/// to the older entries when there are some.
fn history(
    state: &WebState,
    e: &Employee,
    before: Option<u64>,
) -> Result<(Vec<HistoryRow>, Option<String>), DomainError> {
    let mut entries = state
        .app
        .roster
        .audit(Some(e.id), before, HISTORY_PAGE + 1)?;
    let older = (entries.len() > HISTORY_PAGE).then(|| {
        entries.truncate(HISTORY_PAGE);
        entries
            .last()
            .map(|l| format!("/employees/{}?history_before={}#history", e.id, l.seq))
            .unwrap_or_default()
    });
    let rows = entries
        .iter()
        .map(|a| HistoryRow {
            when: a.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            who: actor_text(&a.actor),
            action: a.action.to_string(),
            changes: a
                .changes
                .iter()
                .map(|c| {
                    format!(
                        "{}: {} → {}",
                        c.field,
                        value_text(&c.before),
                        value_text(&c.after)
                    )
                })
                .collect(),
        })
        .collect();
    Ok((rows, older))
}

pub struct PermRow {
    pub name: String,
    pub default_on: bool,
    pub state: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "form.html")]
struct FormPage {
    chrome: Chrome,
    /// `None`: Add Employee.
    id: Option<String>,
    active: bool,
    title: String,
    v: Values,
    all_positions: Vec<String>,
    roles: Vec<String>,
    units: Vec<String>,
    perms: Vec<PermRow>,
    policy: Vec<String>,
    /// (field, message), shown next to the field.
    errors: Vec<(String, String)>,
    /// The errors no field shows.
    general: Vec<String>,
    /// The text inputs of the profile: (name, label, value, autocomplete).
    text: Vec<(&'static str, &'static str, String, &'static str)>,
    notice: Option<String>,
    /// The uploaded photo's URL (edit, when there is one).
    photo: Option<String>,
    /// `[photos] max_bytes`, in words.
    photo_max: String,
    /// (profile field, the sync source that writes it at its next run).
    owners: Vec<(&'static str, String)>,
    /// The audit history (edit only), newest first.
    history: Vec<HistoryRow>,
    /// The link to older history entries.
    history_older: Option<String>,
    /// The history page does not start with the newest entry.
    history_paged: bool,
}

impl FormPage {
    /// The error for `field` (or one of its parts, `office_phone.extension`).
    fn err(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| f == field || f.starts_with(&format!("{field}.")))
            .map(|(_, m)| m.as_str())
    }

    /// The sync source that owns `input`'s field, if one does.
    fn owner(&self, input: &str) -> Option<&str> {
        let field = match input {
            "office_number" | "office_extension" => "office_phone",
            f => f,
        };
        self.owners
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, s)| s.as_str())
    }

    /// The ids that describe `input`: its ownership note and its error.
    fn described(&self, input: &str, error_field: &str) -> String {
        let mut ids = Vec::new();
        if self.owner(input).is_some() {
            ids.push(format!("{input}-owner"));
        }
        if self.err(error_field).is_some() {
            ids.push(format!("{error_field}-error"));
        }
        ids.join(" ")
    }

    fn selected(&self, position: &str) -> bool {
        self.v
            .positions
            .iter()
            .any(|p| p.eq_ignore_ascii_case(position))
    }

    fn general_errors(&self) -> Vec<String> {
        const SHOWN: [&str; 12] = [
            "photo",
            "given_name",
            "family_name",
            "display_name",
            "name",
            "email",
            "positions",
            "role",
            "business_unit",
            "mobile_phone",
            "office_phone",
            "password",
        ];
        self.errors
            .iter()
            .filter(|(f, _)| {
                !SHOWN
                    .iter()
                    .any(|s| f == s || f.starts_with(&format!("{s}.")))
                    && f != "username"
            })
            .map(|(_, m)| m.clone())
            .collect()
    }
}

fn page(
    state: &WebState,
    viewer: &Viewer,
    current: Option<&Employee>,
    v: Values,
    errors: Vec<(String, String)>,
    notice: Option<String>,
) -> FormPage {
    let cat = state.app.roster.catalog();
    let role_defaults: Vec<String> = cat
        .role(&v.role)
        .map(|r| r.permissions.clone())
        .unwrap_or_default();
    let perms = cat
        .permissions()
        .map(|p| PermRow {
            name: p.to_string(),
            default_on: role_defaults.iter().any(|d| d == p),
            state: v
                .permissions
                .iter()
                .find(|(n, _)| n == p)
                .map(|(_, s)| s.clone())
                .unwrap_or_else(|| "default".into()),
        })
        .collect();
    let text = vec![
        (
            "given_name",
            "Given name",
            v.given_name.clone(),
            "given-name",
        ),
        (
            "family_name",
            "Family name",
            v.family_name.clone(),
            "family-name",
        ),
        (
            "display_name",
            "Display name (derived from the names when empty)",
            v.display_name.clone(),
            "off",
        ),
        ("email", "Email", v.email.clone(), "email"),
    ];
    let mut page = FormPage {
        chrome: Chrome::for_viewer(viewer),
        id: current.map(|e| e.id.to_string()),
        active: current.is_none_or(|e| e.active),
        title: match current {
            Some(e) => format!("Edit {}", e.display_name),
            None => "Add Employee".into(),
        },
        v,
        all_positions: cat.positions().map(|p| p.name.clone()).collect(),
        roles: cat.roles().map(|r| r.name.clone()).collect(),
        units: cat.business_units().map(|u| u.name.clone()).collect(),
        perms,
        policy: super::account::policy_rules(state.app.roster.password_policy()),
        errors,
        general: Vec::new(),
        text,
        notice,
        photo: current.and_then(|e| match &e.photo {
            Some(crate::employee::model::Photo::Uploaded { .. }) => {
                Some(format!("/employees/{}/photo", e.id))
            }
            _ => None,
        }),
        photo_max: size_text(state.app.roster.photo_max_bytes()),
        owners: Vec::new(),
        history: Vec::new(),
        history_older: None,
        history_paged: false,
    };
    page.general = page.general_errors();
    if let Some(e) = current {
        // The first linked source of each field (highest priority) writes it.
        page.owners = crate::sync::engine::field_owners(&state.app.sync.sources(), e)
            .into_iter()
            .filter_map(|(f, by)| by.into_iter().next().map(|(s, _)| (f, s)))
            .collect();
        match history(state, e, None) {
            Ok((rows, older)) => {
                page.history = rows;
                page.history_older = older;
            }
            Err(err) => {
                tracing::error!(error = %err, "web console: the audit history could not be read");
                page.general.push(
                    "The history of this employee could not be read; reload to try again.".into(),
                );
            }
        }
    }
    page
}

fn size_text(n: usize) -> String {
    if n >= 1024 * 1024 && n.is_multiple_of(1024 * 1024) {
        format!("{} MiB", n / (1024 * 1024))
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

fn refused(viewer: &Viewer) -> Response {
    tracing::warn!(actor = %viewer.actor, "change refused: no employees.manage");
    error_page(
        StatusCode::FORBIDDEN,
        "You may view the roster but not change it (that needs the employees.manage permission).",
    )
}

/// Room for the form's other fields beside the largest photo in one request.
pub const FORM_ALLOWANCE: usize = 64 * 1024;

/// A file chosen in the form's Photo field.
pub struct Upload {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// The Add / Edit form as posted: `multipart/form-data` (the page's form, with
/// its Photo field) or `application/x-www-form-urlencoded` (no photo).
pub struct FormData {
    pub pairs: Vec<(String, String)>,
    pub photo: Option<Upload>,
}

fn bad_form(what: impl std::fmt::Display, status: StatusCode) -> Response {
    error_page(
        status,
        &format!("The form could not be read ({what}); go back and send it again."),
    )
}

impl axum::extract::FromRequest<WebState> for FormData {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &WebState) -> Result<Self, Response> {
        let multipart = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
        if !multipart {
            let Form(pairs) = Form::<Vec<(String, String)>>::from_request(req, state)
                .await
                .map_err(|e| bad_form(e.body_text(), e.status()))?;
            return Ok(FormData { pairs, photo: None });
        }
        let mut m = axum::extract::Multipart::from_request(req, state)
            .await
            .map_err(|e| bad_form(e.body_text(), e.status()))?;
        let mut out = FormData {
            pairs: Vec::new(),
            photo: None,
        };
        while let Some(field) = m
            .next_field()
            .await
            .map_err(|e| bad_form(e.body_text(), e.status()))?
        {
            let name = field.name().unwrap_or_default().to_string();
            if name == "photo" {
                let content_type = field.content_type().unwrap_or_default().to_string();
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| bad_form(e.body_text(), e.status()))?;
                // A file input left empty sends an empty part.
                if !bytes.is_empty() {
                    out.photo = Some(Upload {
                        content_type,
                        bytes: bytes.to_vec(),
                    });
                }
            } else {
                let value = field
                    .text()
                    .await
                    .map_err(|e| bad_form(e.body_text(), e.status()))?;
                out.pairs.push((name, value));
            }
        }
        Ok(out)
    }
}

/// The chosen photo, checked with the API's rules before anything is written:
/// `Err` is the (field, message) to show next to the Photo field.
fn checked_photo(
    state: &WebState,
    photo: Option<Upload>,
) -> Result<Option<Upload>, (String, String)> {
    let Some(p) = photo else { return Ok(None) };
    match state.app.roster.check_photo(&p.content_type, &p.bytes) {
        Ok(content_type) => Ok(Some(Upload {
            content_type,
            bytes: p.bytes,
        })),
        Err(e) => Err(match field_error(e) {
            Ok(fe) => fe,
            Err(e) => ("photo".into(), e.to_string()),
        }),
    }
}

/// After a save: the edit page, saying so.
fn saved(id: EmployeeId) -> Response {
    Redirect::to(&format!("/employees/{id}?saved=1")).into_response()
}

/// The form again (422) with `err` beside its field. On the edit page the
/// fields the form does not post (account status, username) are the profile's.
fn refused_form(
    state: &WebState,
    viewer: &Viewer,
    current: Option<&Employee>,
    mut v: Values,
    err: (String, String),
) -> Response {
    if let Some(e) = current {
        v.account_status = e.account_status.as_str().into();
        v.username = e.username.clone();
    }
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        page(state, viewer, current, v, vec![err], None),
    )
        .into_response()
}

/// A save the domain refused: the form with the error beside its field, or
/// an error page for one no field owns.
fn not_saved(
    state: &WebState,
    viewer: &Viewer,
    current: Option<&Employee>,
    v: Values,
    err: DomainError,
) -> Response {
    match field_error(err) {
        Ok(err) => refused_form(state, viewer, current, v, err),
        Err(e) => domain_error_page(e),
    }
}

/// A domain error as (field, message), or a page for the ones no field owns.
fn field_error(e: DomainError) -> Result<(String, String), DomainError> {
    match e {
        DomainError::Invalid { field, message } | DomainError::Conflict { field, message } => {
            Ok((field, message))
        }
        DomainError::BadRequest {
            field: Some(field),
            message,
        } => Ok((field, message)),
        e @ DomainError::PhotoTooLarge { .. } => Ok(("photo".into(), e.to_string())),
        DomainError::VersionMismatch { .. } => Ok((
            "version".into(),
            "Someone else changed this employee meanwhile; reload the page to see their change, then edit again."
                .into(),
        )),
        e => Err(e),
    }
}

/// `GET /employees/new`
pub async fn employee_new_get(viewer: Viewer, State(state): State<WebState>) -> Response {
    if !viewer.manage {
        return refused(&viewer);
    }
    let v = Values {
        role: state
            .app
            .roster
            .catalog()
            .default_role()
            .unwrap_or_default()
            .to_string(),
        account_status: "later".into(),
        enabled: true,
        ..Default::default()
    };
    page(&state, &viewer, None, v, Vec::new(), None).into_response()
}

/// `POST /employees/new`
pub async fn employee_new_post(
    viewer: Viewer,
    State(state): State<WebState>,
    form: FormData,
) -> Response {
    if !viewer.manage {
        return refused(&viewer);
    }
    let (v, password) = Values::from_form(&form.pairs);
    let photo = match checked_photo(&state, form.photo) {
        Ok(p) => p,
        Err(err) => return refused_form(&state, &viewer, None, v, err),
    };
    let status = match v.account_status.as_str() {
        "invite" => AccountStatus::Invite,
        "credentials" => AccountStatus::Credentials,
        _ => AccountStatus::Later,
    };
    let input = NewEmployee {
        given_name: v.given_name.clone(),
        family_name: v.family_name.clone(),
        display_name: opt(&v.display_name),
        email: v.email.clone(),
        username: opt(&v.username),
        positions: v.positions.clone(),
        role: opt(&v.role),
        business_unit: opt(&v.business_unit),
        mobile_phone: opt(&v.mobile_phone),
        office_phone: v.office_phone(),
        account_status: Some(status),
        password,
        enabled: Some(v.enabled),
        permissions: Some(v.overrides()),
        ..Default::default()
    };
    // The profile and its photo in one write.
    let photo = photo.map(|p| (p.content_type, p.bytes));
    match state
        .app
        .roster
        .create_with_photo(&viewer.actor, input, photo)
        .await
    {
        Ok(e) => saved(e.id),
        Err(err) => not_saved(&state, &viewer, None, v, err),
    }
}

fn load(state: &WebState, id: &str) -> Result<Employee, Box<Response>> {
    let id: EmployeeId = id
        .parse()
        .map_err(|_| Box::new(error_page(StatusCode::NOT_FOUND, "No such employee.")))?;
    state
        .app
        .roster
        .get(id)
        .map_err(|e| Box::new(domain_error_page(e)))
}

#[derive(serde::Deserialize)]
pub struct Saved {
    #[serde(default)]
    saved: Option<String>,
    #[serde(default)]
    done: Option<String>,
    /// Show the history entries older than this sequence number.
    #[serde(default)]
    history_before: Option<u64>,
}

/// `GET /employees/{id}`
pub async fn employee_edit_get(
    viewer: Viewer,
    State(state): State<WebState>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<Saved>,
) -> Response {
    if !viewer.manage {
        return refused(&viewer);
    }
    let e = match load(&state, &id) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    let notice = match (q.saved.is_some(), q.done.as_deref()) {
        (true, _) => Some("Saved.".to_string()),
        (_, Some(d)) => Some(d.chars().take(200).collect()),
        _ => None,
    };
    let mut p = page(
        &state,
        &viewer,
        Some(&e),
        Values::from_employee(&e),
        Vec::new(),
        notice,
    );
    if let Some(before) = q.history_before {
        match history(&state, &e, Some(before)) {
            Ok((rows, older)) => {
                p.history = rows;
                p.history_older = older;
                p.history_paged = true;
            }
            Err(err) => return domain_error_page(err),
        }
    }
    p.into_response()
}

/// `POST /employees/{id}`: Save Changes.
pub async fn employee_edit_post(
    viewer: Viewer,
    State(state): State<WebState>,
    Path(id): Path<String>,
    form: FormData,
) -> Response {
    if !viewer.manage {
        return refused(&viewer);
    }
    let e = match load(&state, &id) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    let (v, _) = Values::from_form(&form.pairs);
    let photo = match checked_photo(&state, form.photo) {
        Ok(p) => p,
        Err(err) => return refused_form(&state, &viewer, Some(&e), v, err),
    };
    let patch = EmployeePatch {
        given_name: Some(v.given_name.clone()),
        family_name: Some(v.family_name.clone()),
        display_name: opt(&v.display_name).filter(|d| *d != e.display_name),
        email: Some(v.email.clone()),
        positions: Some(v.positions.clone()),
        role: opt(&v.role),
        business_unit: Some(opt(&v.business_unit)),
        mobile_phone: Some(opt(&v.mobile_phone)),
        office_phone: Some(v.office_phone()),
        enabled: Some(v.enabled),
        permissions: Some(v.overrides()),
        ..Default::default()
    };
    // The edit and its photo in one write.
    let photo = photo.map(|p| (p.content_type, p.bytes));
    match state
        .app
        .roster
        .update_with_photo(&viewer.actor, e.id, patch, v.version, photo)
        .await
    {
        Ok(e) => saved(e.id),
        Err(err) => not_saved(&state, &viewer, Some(&e), v, err),
    }
}

/// `POST /employees/{id}/actions`: one Profile Action (`do`).
pub async fn employee_action_post(
    viewer: Viewer,
    State(state): State<WebState>,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if !viewer.manage {
        return refused(&viewer);
    }
    let e = match load(&state, &id) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    let what = form
        .iter()
        .find(|(k, _)| k == "do")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let r = &state.app.roster;
    let actor = &viewer.actor;
    let ids = [e.id.to_string()];
    let done = match what {
        "activate" | "deactivate" => {
            r.set_active(actor, e.id, what == "activate")
                .await
                .map(|_| {
                    if what == "activate" {
                        "Activated."
                    } else {
                        "Deactivated."
                    }
                    .to_string()
                })
        }
        "send_invite" | "send_password_reset" => {
            let kind = if what == "send_invite" {
                SendKind::Invite
            } else {
                SendKind::PasswordReset
            };
            r.bulk_send(actor, &ids, kind, false).await.map(|o| {
                match o.first().and_then(|o| o.error.clone()) {
                    Some(why) => format!("Not sent: {why}"),
                    None if kind == SendKind::Invite => "Account invite queued.".into(),
                    None => "Password reset queued.".into(),
                }
            })
        }
        _ => return error_page(StatusCode::BAD_REQUEST, "Unknown profile action."),
    };
    match done {
        Ok(m) => {
            let q = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("done", &m)
                .finish();
            Redirect::to(&format!("/employees/{}?{q}", e.id)).into_response()
        }
        Err(err) => domain_error_page(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Actor, ActorKind};
    use serde_json::json;

    #[test]
    fn history_says_who_in_words() {
        let id = uuid::Uuid::nil();
        assert_eq!(
            actor_text(&Actor::employee(id, "Maria Manager")),
            "Maria Manager"
        );
        assert_eq!(actor_text(&Actor::admin("ops")), "admin token “ops”");
        let sync = Actor {
            kind: ActorKind::Sync,
            name: "hr".into(),
        };
        assert_eq!(actor_text(&sync), "sync source hr");
        assert_eq!(value_text(&json!(null)), "(none)");
        assert_eq!(
            value_text(&json!(["Driver", "Mechanic"])),
            "Driver, Mechanic"
        );
        assert_eq!(value_text(&json!(true)), "yes");
        assert_eq!(value_text(&json!("***")), "***");
        assert_eq!(value_text(&json!("x".repeat(500))).chars().count(), 118);
    }

    #[test]
    fn sizes_in_words() {
        assert_eq!(size_text(2 * 1024 * 1024), "2 MiB");
        assert_eq!(size_text(4096), "4 KiB");
        assert_eq!(size_text(1000), "1000 bytes");
    }
}
