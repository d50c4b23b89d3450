//! `rosterctl employees ...`: list, show, add, edit, activate, deactivate, photo.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

use crate::cli::{
    AccountStatusArg, AddArgs, EditArgs, EmployeesCommand, Filter, KeyArgs, ListArgs, PhotoCommand,
    ProfileFlags, ShowArgs,
};
use crate::client::{Client, decode};
use crate::error::CtlError;
use crate::model::{Employee, EmployeePage, OfficePhone, Permissions};
use crate::output;

/// The most the server returns in one page.
const MAX_PAGE: usize = 1000;

pub async fn run(client: &Client, cmd: EmployeesCommand) -> Result<(), CtlError> {
    match cmd {
        EmployeesCommand::List(a) => list(client, a).await,
        EmployeesCommand::Show(a) => show(client, a).await,
        EmployeesCommand::Add(a) => add(client, *a).await,
        EmployeesCommand::Edit(a) => edit(client, *a).await,
        EmployeesCommand::Activate(a) => set_active(client, a, true).await,
        EmployeesCommand::Deactivate(a) => set_active(client, a, false).await,
        EmployeesCommand::Photo(PhotoCommand::Set { key, file }) => {
            photo_set(client, &key, &file).await
        }
        EmployeesCommand::Photo(PhotoCommand::Remove { key }) => photo_remove(client, &key).await,
        EmployeesCommand::Explain(a) => crate::sync::explain(client, a).await,
    }
}

// ---------------------------------------------------------------------------- list

/// A list request: which profiles, in which order, how many.
pub struct ListRequest<'a> {
    pub status: &'static str,
    pub filters: &'a [Filter],
    pub sort: Option<&'a str>,
    pub limit: Option<usize>,
    pub page_size: usize,
}

/// Fetches every matching employee (up to `limit`), following `next_cursor`.
/// Returns the items as the server sent them, and the server's total.
pub async fn fetch_all(
    client: &Client,
    req: &ListRequest<'_>,
) -> Result<(Vec<Value>, usize), CtlError> {
    let mut base: Vec<(&str, String)> = vec![("status", req.status.to_string())];
    base.extend(filter_query(req.filters)?);
    if let Some(s) = req.sort {
        base.push(("sort", s.to_string()));
    }
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let want = match req.limit {
            Some(n) => n.saturating_sub(items.len()).min(req.page_size),
            None => req.page_size,
        }
        .clamp(1, MAX_PAGE);
        let mut query = base.clone();
        query.push(("limit", want.to_string()));
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let page: EmployeePage = decode(client.get(&["employees"], &query).await?, "page")?;
        let total = page.total;
        items.extend(page.items);
        let room = req.limit.is_none_or(|n| items.len() < n);
        match page.next_cursor {
            Some(c) if room => cursor = Some(c),
            _ => {
                if let Some(n) = req.limit {
                    items.truncate(n);
                }
                return Ok((items, total));
            }
        }
    }
}

/// `--filter col=value` as query parameters. The server validates the columns; the
/// names its other parameters use are caught here, as they would change meaning.
pub fn filter_query(filters: &[Filter]) -> Result<Vec<(&str, String)>, CtlError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for f in filters {
        let col = f.column.as_str();
        let reserved = match col {
            "status" => Some(
                "`employees list` picks by status with --inactive or --all; \
                 `bulk --filter` looks at active and inactive employees",
            ),
            "sort" => Some("use --sort"),
            "limit" => Some("use --limit"),
            "cursor" => Some("pages are followed automatically"),
            _ => None,
        };
        if let Some(hint) = reserved {
            return Err(CtlError::usage(format!(
                "`{col}` is not a filter column; {hint}"
            )));
        }
        if !seen.insert(col) {
            return Err(CtlError::usage(format!(
                "--filter {col}=... is given twice; give each column once"
            )));
        }
        out.push((col, f.value.clone()));
    }
    Ok(out)
}

async fn list(client: &Client, a: ListArgs) -> Result<(), CtlError> {
    let req = ListRequest {
        status: match (a.inactive, a.all) {
            (true, _) => "inactive",
            (_, true) => "all",
            _ => "active",
        },
        filters: &a.filter,
        sort: a.sort.as_deref(),
        limit: a.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        page_size: usize::try_from(a.page_size).unwrap_or(MAX_PAGE),
    };
    let (items, total) = fetch_all(client, &req).await?;
    if a.json {
        return output::emit_json(&Value::Array(items));
    }
    let employees = items
        .into_iter()
        .map(|v| decode::<Employee>(v, "employee"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut text = String::new();
    if !employees.is_empty() {
        text.push_str(&output::employee_table(&employees));
        text.push('\n');
    }
    let shown = output::count(employees.len(), "employee");
    if employees.len() < total {
        text.push_str(&format!("{shown} (of {total})\n"));
    } else {
        text.push_str(&format!("{shown}\n"));
    }
    output::emit(&text)
}

// ---------------------------------------------------------------------------- show

/// `GET /api/v1/employees/{key}`: by id, email or username.
pub async fn fetch_employee(client: &Client, key: &str) -> Result<(Employee, Value), CtlError> {
    let key = key.trim();
    if key.is_empty() {
        return Err(CtlError::usage("give an employee id, email or username"));
    }
    let v = client.get(&["employees", key], &[]).await?;
    Ok((decode(v.clone(), "employee")?, v))
}

/// Prints one employee as JSON or `key: value` lines.
fn print_employee(v: Value, json: bool) -> Result<(), CtlError> {
    if json {
        return output::emit_json(&v);
    }
    let e: Employee = decode(v, "employee")?;
    output::emit_lines(&output::employee_lines(&e))
}

async fn show(client: &Client, a: ShowArgs) -> Result<(), CtlError> {
    let (_, v) = fetch_employee(client, &a.key).await?;
    print_employee(v, a.json)
}

// ---------------------------------------------------------------------------- add

/// A password on its way to the server. Never printed.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The first line of standard input (a prompt is shown when it is a terminal).
fn read_password_stdin() -> Result<Password, CtlError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).map_err(|e| {
        CtlError::usage(format!("--password-stdin: cannot read standard input: {e}"))
    })?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(CtlError::usage(
            "--password-stdin: the first line of standard input is empty; send the password \
             there, e.g. `printf '%s\\n' \"$PW\" | rosterctl employees add ...`",
        ));
    }
    Ok(Password(password.to_string()))
}

/// `POST /api/v1/employees`'s body.
#[derive(Serialize, Debug, Default)]
struct NewEmployeeBody {
    given_name: String,
    family_name: String,
    email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    positions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    business_unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    photo_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mobile_phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    office_phone: Option<OfficePhone>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_status: Option<AccountStatusArg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<Password>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    active: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    permissions: Option<Permissions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<String>,
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// `--grant` and `--revoke` must not name the same permission.
fn check_grant_revoke(p: &ProfileFlags) -> Result<(), CtlError> {
    match p
        .grant
        .iter()
        .find(|g| p.revoke.iter().any(|r| r.eq_ignore_ascii_case(g)))
    {
        Some(both) => Err(CtlError::usage(format!(
            "`{both}` is given to both --grant and --revoke"
        ))),
        None => Ok(()),
    }
}

/// The account status to send: `--password-stdin` alone means `credentials`.
fn account_status(p: &ProfileFlags) -> Result<Option<AccountStatusArg>, CtlError> {
    match (p.status, p.password_stdin) {
        (None, true) => Ok(Some(AccountStatusArg::Credentials)),
        (Some(AccountStatusArg::Credentials), false) => Err(CtlError::usage(
            "--status credentials needs a password: add --password-stdin and send it on \
             standard input",
        )),
        (Some(s), true) if s != AccountStatusArg::Credentials => Err(CtlError::usage(
            "--password-stdin goes with --status credentials (or no --status)",
        )),
        (s, _) => Ok(s),
    }
}

fn new_employee_body(a: &AddArgs) -> Result<NewEmployeeBody, CtlError> {
    let p = &a.profile;
    check_grant_revoke(p)?;
    if p.extension.is_some() && p.office_phone.is_none() {
        return Err(CtlError::usage("--extension needs --office-phone"));
    }
    let permissions = (!p.grant.is_empty() || !p.revoke.is_empty()).then(|| Permissions {
        grant: p.grant.clone(),
        revoke: p.revoke.clone(),
    });
    Ok(NewEmployeeBody {
        given_name: a.given_name.clone(),
        family_name: a.family_name.clone(),
        email: a.email.clone(),
        display_name: non_empty(&p.display_name),
        username: p.username.clone(),
        positions: p.positions.clone(),
        role: p.role.clone(),
        business_unit: p.business_unit.clone(),
        photo_url: p.photo_url.clone(),
        mobile_phone: p.mobile_phone.clone(),
        office_phone: p.office_phone.as_ref().map(|number| OfficePhone {
            number: number.clone(),
            extension: non_empty(&p.extension),
        }),
        account_status: account_status(p)?,
        password: None,
        enabled: a.disabled.then_some(false),
        active: a.inactive.then_some(false),
        permissions,
        external_id: p.external_id.clone(),
    })
}

async fn add(client: &Client, a: AddArgs) -> Result<(), CtlError> {
    let mut body = new_employee_body(&a)?;
    if a.profile.password_stdin {
        body.password = Some(read_password_stdin()?);
    }
    let v = client
        .send_json(Method::POST, &["employees"], &body)
        .await?;
    print_employee(v, a.profile.json)
}

// ---------------------------------------------------------------------------- edit

/// `PATCH /api/v1/employees/{id}`'s body: only what is given; `Some(None)` is a JSON
/// `null`, which clears the field.
#[derive(Serialize, Debug, Default)]
struct PatchBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    given_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    family_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    positions: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    add_positions: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    remove_positions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    business_unit: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    photo_url: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mobile_phone: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    office_phone: Option<Option<OfficePhone>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_status: Option<AccountStatusArg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<Password>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    permissions: Option<Permissions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<Option<String>>,
    /// Set when the patch was computed from the profile as read (permissions, an
    /// extension alone), so a concurrent change is not overwritten.
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
}

/// `Some(None)` when `clear`, else the given value.
fn set_or_clear(value: &Option<String>, clear: bool) -> Option<Option<String>> {
    if clear {
        Some(None)
    } else {
        value.clone().map(Some)
    }
}

/// Whether the edit needs the profile as it is now (beyond resolving the key).
fn needs_current(a: &EditArgs) -> bool {
    let p = &a.profile;
    !p.grant.is_empty()
        || !p.revoke.is_empty()
        || a.clear_permissions
        || (p.extension.is_some() && p.office_phone.is_none())
}

/// The part of the patch that follows from the flags alone.
fn patch_from_flags(a: &EditArgs) -> Result<PatchBody, CtlError> {
    let p = &a.profile;
    check_grant_revoke(p)?;
    let status = match (p.status, p.password_stdin) {
        // A new password makes the server set `credentials` itself.
        (None, true) => None,
        _ => account_status(p)?,
    };
    Ok(PatchBody {
        given_name: a.given_name.clone(),
        family_name: a.family_name.clone(),
        display_name: p.display_name.clone(),
        email: a.email.clone(),
        username: p.username.clone(),
        positions: (!p.positions.is_empty()).then(|| p.positions.clone()),
        add_positions: a.add_positions.clone(),
        remove_positions: a.remove_positions.clone(),
        role: p.role.clone(),
        business_unit: set_or_clear(&p.business_unit, a.clear_business_unit),
        photo_url: set_or_clear(&p.photo_url, a.clear_photo),
        mobile_phone: set_or_clear(&p.mobile_phone, a.clear_mobile_phone),
        office_phone: match (&p.office_phone, a.clear_office_phone) {
            (_, true) => Some(None),
            (Some(number), false) => Some(Some(OfficePhone {
                number: number.clone(),
                extension: non_empty(&p.extension),
            })),
            (None, false) => None,
        },
        account_status: status,
        password: None,
        enabled: match (a.enable, a.disable) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        permissions: None,
        external_id: set_or_clear(&p.external_id, a.clear_external_id),
        version: None,
    })
}

/// Grants and revokes applied to the current overrides (case-insensitively): a
/// grant cancels a revoke of the same permission and the other way round.
fn merge_permissions(
    current: &Permissions,
    grant: &[String],
    revoke: &[String],
    clear: bool,
) -> Permissions {
    let base = if clear {
        Permissions::default()
    } else {
        current.clone()
    };
    let has = |list: &[String], p: &str| list.iter().any(|x| x.eq_ignore_ascii_case(p));
    let merge = |kept: Vec<String>, add: &[String], remove: &[String]| {
        let mut out: Vec<String> = kept.into_iter().filter(|p| !has(remove, p)).collect();
        for p in add {
            if !has(&out, p) {
                out.push(p.clone());
            }
        }
        out
    };
    Permissions {
        grant: merge(base.grant, grant, revoke),
        revoke: merge(base.revoke, revoke, grant),
    }
}

/// Completes the patch from the profile as read: permissions and an extension alone.
fn patch_from_current(
    patch: &mut PatchBody,
    a: &EditArgs,
    current: &Employee,
) -> Result<(), CtlError> {
    let p = &a.profile;
    if !p.grant.is_empty() || !p.revoke.is_empty() || a.clear_permissions {
        patch.permissions = Some(merge_permissions(
            &current.permissions,
            &p.grant,
            &p.revoke,
            a.clear_permissions,
        ));
        patch.version = Some(current.version);
    }
    if p.office_phone.is_none() && p.extension.is_some() {
        let number = current
            .office_phone
            .as_ref()
            .map(|o| o.number.clone())
            .ok_or_else(|| {
                CtlError::usage(format!(
                    "{} has no office phone; give --office-phone with --extension",
                    current.email
                ))
            })?;
        patch.office_phone = Some(Some(OfficePhone {
            number,
            extension: non_empty(&p.extension),
        }));
        patch.version = Some(current.version);
    }
    Ok(())
}

fn is_empty(patch: &PatchBody) -> bool {
    serde_json::to_value(patch).is_ok_and(|v| v.as_object().is_some_and(|m| m.is_empty()))
}

async fn edit(client: &Client, a: EditArgs) -> Result<(), CtlError> {
    let mut patch = patch_from_flags(&a)?;
    if is_empty(&patch) && !needs_current(&a) && !a.profile.password_stdin {
        return Err(CtlError::usage(
            "nothing to change: give at least one field flag (see `rosterctl employees edit --help`)",
        ));
    }
    if a.profile.password_stdin {
        patch.password = Some(read_password_stdin()?);
    }
    let (current, _) = fetch_employee(client, &a.key).await?;
    patch_from_current(&mut patch, &a, &current)?;
    let v = client
        .send_json(Method::PATCH, &["employees", &current.id], &patch)
        .await?;
    if !a.profile.json {
        let after: Employee = decode(v.clone(), "employee")?;
        if after.version == current.version {
            eprintln!("rosterctl: nothing changed: the profile already had these values");
        }
    }
    print_employee(v, a.profile.json)
}

// ---------------------------------------------------------------------------- activate

async fn set_active(client: &Client, a: KeyArgs, active: bool) -> Result<(), CtlError> {
    let (current, _) = fetch_employee(client, &a.key).await?;
    let verb = if active { "activate" } else { "deactivate" };
    let v = client.post_empty(&["employees", &current.id, verb]).await?;
    if a.json {
        return output::emit_json(&v);
    }
    let e: Employee = decode(v, "employee")?;
    let who = format!("{} <{}> ({})", e.display_name, e.email, e.id);
    let line = if current.active == active {
        let state = if active { "active" } else { "inactive" };
        format!("{who} was already {state}")
    } else {
        format!("{verb}d {who}")
    };
    output::emit_lines(&[line])
}

// ---------------------------------------------------------------------------- photo

fn photo_content_type(file: &Path) -> Result<&'static str, CtlError> {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("png") => Ok("image/png"),
        Some("jpg" | "jpeg") => Ok("image/jpeg"),
        Some("webp") => Ok("image/webp"),
        _ => Err(CtlError::usage(format!(
            "{}: the photo must be a .png, .jpg, .jpeg or .webp file",
            file.display()
        ))),
    }
}

async fn photo_set(client: &Client, key: &str, file: &Path) -> Result<(), CtlError> {
    let content_type = photo_content_type(file)?;
    let bytes = std::fs::read(file)
        .map_err(|e| CtlError::usage(format!("cannot read {}: {e}", file.display())))?;
    let size = bytes.len();
    let (current, _) = fetch_employee(client, key).await?;
    client
        .put_bytes(&["employees", &current.id, "photo"], content_type, bytes)
        .await?;
    output::emit_lines(&[format!(
        "photo of {} <{}> set ({content_type}, {size} bytes)",
        current.display_name, current.email
    )])
}

async fn photo_remove(client: &Client, key: &str) -> Result<(), CtlError> {
    let (current, _) = fetch_employee(client, key).await?;
    client.delete(&["employees", &current.id, "photo"]).await?;
    output::emit_lines(&[format!(
        "photo of {} <{}> removed",
        current.display_name, current.email
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn grants_and_revokes_merge_into_the_current_overrides() {
        let current = Permissions {
            grant: strings(&["reports.view"]),
            revoke: strings(&["jobs.complete"]),
        };
        let m = merge_permissions(
            &current,
            &strings(&["jobs.complete", "billing.manage"]),
            &strings(&["Reports.View"]),
            false,
        );
        assert_eq!(m.grant, strings(&["jobs.complete", "billing.manage"]));
        assert_eq!(m.revoke, strings(&["Reports.View"]));
        let cleared = merge_permissions(&current, &strings(&["x"]), &[], true);
        assert_eq!(cleared.grant, strings(&["x"]));
        assert!(cleared.revoke.is_empty());
    }

    #[test]
    fn reserved_filter_columns_are_refused() {
        let f = |c: &str| Filter {
            column: c.into(),
            value: "x".into(),
        };
        assert!(filter_query(&[f("status")]).is_err());
        assert!(filter_query(&[f("role"), f("role")]).is_err());
        assert_eq!(filter_query(&[f("role"), f("name")]).expect("ok").len(), 2);
    }

    #[test]
    fn an_empty_patch_serializes_to_an_empty_object() {
        assert!(is_empty(&PatchBody::default()));
        let p = PatchBody {
            business_unit: Some(None),
            ..Default::default()
        };
        assert!(!is_empty(&p));
        assert_eq!(
            serde_json::to_value(&p).expect("json"),
            serde_json::json!({"business_unit": null})
        );
    }

    #[test]
    fn photo_types_follow_the_extension() {
        assert_eq!(
            photo_content_type(Path::new("a.JPG")).ok(),
            Some("image/jpeg")
        );
        assert!(photo_content_type(Path::new("a.gif")).is_err());
    }

    #[test]
    fn passwords_never_print() {
        assert_eq!(format!("{:?}", Password("hunter2".into())), "***");
    }
}
