//! Add Employee and Edit Employee: one form (profile, account status on
//! creation, Enabled, permission overrides), and on edit the Profile Actions
//! (Deactivate / Activate, Send account invite, Send password reset). A rule the
//! domain refuses is shown next to its field, with everything typed kept.

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
}

impl FormPage {
    /// The error for `field` (or one of its parts, `office_phone.extension`).
    fn err(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| f == field || f.starts_with(&format!("{field}.")))
            .map(|(_, m)| m.as_str())
    }

    fn selected(&self, position: &str) -> bool {
        self.v
            .positions
            .iter()
            .any(|p| p.eq_ignore_ascii_case(position))
    }

    fn general_errors(&self) -> Vec<String> {
        const SHOWN: [&str; 11] = [
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
    };
    page.general = page.general_errors();
    page
}

fn refused(viewer: &Viewer) -> Response {
    tracing::warn!(actor = %viewer.actor, "change refused: no employees.manage");
    error_page(
        StatusCode::FORBIDDEN,
        "You may view the roster but not change it (that needs the employees.manage permission).",
    )
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
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if !viewer.manage {
        return refused(&viewer);
    }
    let (v, password) = Values::from_form(&form);
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
    match state.app.roster.create(&viewer.actor, input).await {
        Ok(e) => Redirect::to(&format!("/employees/{}?saved=1", e.id)).into_response(),
        Err(e) => match field_error(e) {
            Ok(err) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                page(&state, &viewer, None, v, vec![err], None),
            )
                .into_response(),
            Err(e) => domain_error_page(e),
        },
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
    page(
        &state,
        &viewer,
        Some(&e),
        Values::from_employee(&e),
        Vec::new(),
        notice,
    )
    .into_response()
}

/// `POST /employees/{id}`: Save Changes.
pub async fn employee_edit_post(
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
    let (v, _) = Values::from_form(&form);
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
    match state
        .app
        .roster
        .update(&viewer.actor, e.id, patch, v.version)
        .await
    {
        Ok(e) => Redirect::to(&format!("/employees/{}?saved=1", e.id)).into_response(),
        Err(err) => match field_error(err) {
            Ok(err) => {
                let mut v = v;
                v.account_status = e.account_status.as_str().into();
                v.username = e.username.clone();
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    page(&state, &viewer, Some(&e), v, vec![err], None),
                )
                    .into_response()
            }
            Err(e) => domain_error_page(e),
        },
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
