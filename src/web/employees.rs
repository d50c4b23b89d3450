//! The Employees screen: a native table of the roster with the status filter
//! (active by default), column filters, sort by any column and keyset paging,
//! all in the URL (a GET form), so Back and bookmarks restore a view. Users who
//! may manage the roster also get row selection and the bulk actions, confirmed
//! on a preview (the domain's dry run) before anything changes; the script opens
//! that preview in a `<dialog>`, without it the preview is a page of its own.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Chrome, Viewer, WebState, domain_error_page, error_page};
use crate::employee::account::SendKind;
use crate::employee::list::{DEFAULT_LIMIT, Filters, MAX_LIMIT, RowFacts, Sort, SortColumn};
use crate::employee::model::Photo;
use crate::employee::projection::MailStatus;
use crate::employee::{BULK_MAX, BulkOutcome, Employee, EmployeeId, ListQuery, StatusFilter};

/// The query keys of a view, in the order its URL carries them. Not
/// `Filters::COLUMNS`: a view also has `status` and `limit`, and the console
/// form has no `username` filter.
const VIEW_KEYS: [&str; 11] = [
    "status",
    "name",
    "email",
    "position",
    "role",
    "business_unit",
    "enabled",
    "account_status",
    "source",
    "mail_status",
    "limit",
];

/// Most employees a bulk preview or result lists by name (the rest are counted).
pub const BULK_LISTED: usize = 50;

/// The text filters of the form, in order: (query key, label).
const TEXT_FILTERS: [(&str, &str); 5] = [
    ("name", "Name"),
    ("email", "Email"),
    ("position", "Position"),
    ("role", "Role"),
    ("business_unit", "Business unit"),
];

/// The table's sortable columns: (sort key, header).
const COLUMNS: [(&str, &str); 10] = [
    ("name", "Name"),
    ("email", "Email"),
    ("positions", "Positions"),
    ("role", "Role"),
    ("business_unit", "Business unit"),
    ("enabled", "Enabled"),
    ("active", "Active"),
    ("account_status", "Account status"),
    ("source", "Source"),
    ("mail_status", "Last mail"),
];

pub struct Header {
    pub label: &'static str,
    /// `ascending` / `descending` on the sorted column, empty elsewhere.
    pub aria_sort: &'static str,
    /// The sort a click asks for.
    pub next: String,
}

pub struct Row {
    pub id: String,
    pub name: String,
    pub email: String,
    pub positions: String,
    pub role: String,
    pub business_unit: String,
    pub enabled: &'static str,
    pub active: &'static str,
    pub account_status: &'static str,
    pub photo: Option<String>,
    /// The sync source that owns the profile, in words.
    pub source: String,
    /// The state of the last invitation or reset mail, in words.
    pub mail: &'static str,
}

pub struct FilterField {
    pub key: &'static str,
    pub label: &'static str,
    pub value: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "employees.html")]
struct EmployeesPage {
    chrome: Chrome,
    manage: bool,
    status: &'static str,
    filters: Vec<FilterField>,
    enabled: String,
    account_status: String,
    /// The owning-source filter's value, and the configured sources.
    source: String,
    sources: Vec<String>,
    mail_status: String,
    sort: String,
    limit: usize,
    headers: Vec<Header>,
    rows: Vec<Row>,
    total: usize,
    from: usize,
    to: usize,
    next: Option<String>,
    first: Option<String>,
    /// This view's URL, to come back to after a bulk action.
    back: String,
    /// The same view as CSV.
    csv: String,
    error: Option<String>,
    /// Sync plans held by the deactivation threshold (the banner; see `super::sync`).
    held: Vec<std::sync::Arc<super::sync::HeldPlan>>,
}

/// The last mail's state in words (the filter's option labels too).
fn mail_text(m: Option<MailStatus>) -> &'static str {
    match m {
        Some(MailStatus::Queued) => "Queued",
        Some(MailStatus::Sent) => "Sent",
        Some(MailStatus::Failed) => "Failed",
        Some(MailStatus::Skipped) => "Not sent (no longer needed)",
        None => "No mail",
    }
}

fn source_text(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "Not synced".into())
}

/// A view parsed from its query: the list query, the values as given (for
/// the form), where the page starts, and the first value refused.
struct View {
    q: ListQuery,
    values: std::collections::HashMap<String, String>,
    from: usize,
    error: Option<String>,
}

/// A query value a view refuses, in the words its page shows.
#[derive(Debug, thiserror::Error)]
enum ValueError {
    #[error("Status must be active, inactive or all, not “{0}”.")]
    Status(String),
    #[error("Rows per page must be a number from 1 to {MAX_LIMIT}.")]
    Limit,
    /// A sort or column filter the domain refuses.
    #[error(transparent)]
    Domain(#[from] crate::employee::Error),
}

impl View {
    /// Empty values are no filter; a value refused leaves its filter out and
    /// says why.
    fn parse(params: &[(String, String)]) -> View {
        let mut q = ListQuery::default();
        let mut filters = Filters::default();
        let mut error = None;
        let mut from = 0usize;
        let mut values = std::collections::HashMap::new();
        for (k, v) in params {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            let r: Result<(), ValueError> = match k.as_str() {
                "status" => match v {
                    "active" => {
                        q.status = StatusFilter::Active;
                        Ok(())
                    }
                    "inactive" => {
                        q.status = StatusFilter::Inactive;
                        Ok(())
                    }
                    "all" => {
                        q.status = StatusFilter::All;
                        Ok(())
                    }
                    _ => Err(ValueError::Status(v.to_string())),
                },
                "sort" => v.parse::<Sort>().map(|s| q.sort = s).map_err(Into::into),
                "limit" => match v.parse::<usize>() {
                    Ok(n) if (1..=MAX_LIMIT).contains(&n) => {
                        q.limit = Some(n);
                        Ok(())
                    }
                    _ => Err(ValueError::Limit),
                },
                "cursor" => {
                    q.cursor = Some(v.to_string());
                    Ok(())
                }
                "from" => {
                    from = v.parse().unwrap_or(0);
                    Ok(())
                }
                col => filters.set(col, v).map_err(Into::into),
            };
            match r {
                Ok(()) => {
                    if !matches!(k.as_str(), "cursor" | "from") {
                        values.insert(k.clone(), v.to_string());
                    }
                }
                Err(e) => error = Some(e.to_string()),
            }
        }
        q.filters = filters;
        View {
            q,
            values,
            from,
            error,
        }
    }

    /// The view without its page: the same keys in a stable order.
    fn pairs(&self) -> Vec<(String, String)> {
        let mut view: Vec<(String, String)> = VIEW_KEYS
            .iter()
            .filter_map(|k| self.values.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect();
        let sort_text = self.q.sort.to_string();
        if sort_text != Sort::default().to_string() {
            view.push(("sort".into(), sort_text));
        }
        view
    }
}

fn account_status_text(e: &Employee) -> &'static str {
    match e.account_status.as_str() {
        "later" => "Set up later",
        "invite" => "Invited",
        "credentials" => "Has credentials",
        _ => "Unknown",
    }
}

fn row(e: &Employee, f: &RowFacts) -> Row {
    Row {
        source: source_text(&f.source),
        mail: mail_text(f.mail_status),
        id: e.id.to_string(),
        name: e.display_name.clone(),
        email: e.email.clone(),
        positions: e.positions.join(", "),
        role: e.role.clone(),
        business_unit: e.business_unit.clone().unwrap_or_default(),
        enabled: if e.enabled { "Yes" } else { "No" },
        active: if e.active { "Active" } else { "Inactive" },
        account_status: account_status_text(e),
        photo: match &e.photo {
            Some(Photo::Url { url }) if url.starts_with("https://") => Some(url.clone()),
            Some(Photo::Uploaded { .. }) => Some(format!("/employees/{}/photo", e.id)),
            _ => None,
        },
    }
}

fn encode(pairs: &[(String, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// `GET /employees`: the view is the query string. Empty form fields are no
/// filter; an unknown value gets the page with the error and the roster unfiltered
/// by it.
pub async fn employees_list(
    viewer: Viewer,
    State(state): State<WebState>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let parsed = View::parse(&params);
    let view = parsed.pairs();
    let View {
        mut q,
        values,
        mut from,
        mut error,
    } = parsed;
    let sort_text = q.sort.to_string();
    let page = match list_restarting_stale(&state, &mut q, &mut from, &mut error) {
        Ok(p) => p,
        Err(e) => return domain_error_page(e),
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    let headers = sort_headers(&q.sort);
    let rows: Vec<Row> = page
        .items
        .iter()
        .zip(&page.facts)
        .map(|(e, f)| row(e, f))
        .collect();
    let to = from + rows.len();
    let next = page.next_cursor.as_ref().map(|c| {
        let mut p = view.clone();
        p.push(("cursor".into(), c.clone()));
        p.push(("from".into(), to.to_string()));
        format!("/employees?{}", encode(&p))
    });
    let base = format!("/employees?{}", encode(&view));
    let first = (from > 0).then(|| base.clone());
    let get = |k: &str| values.get(k).cloned().unwrap_or_default();
    EmployeesPage {
        held: super::sync::held_plans(&state).await,
        chrome: Chrome::for_viewer(&viewer),
        manage: viewer.manage,
        status: match q.status {
            StatusFilter::Active => "active",
            StatusFilter::Inactive => "inactive",
            StatusFilter::All => "all",
        },
        filters: TEXT_FILTERS
            .iter()
            .map(|(key, label)| FilterField {
                key,
                label,
                value: get(key),
            })
            .collect(),
        enabled: get("enabled"),
        account_status: get("account_status"),
        source: get("source"),
        sources: state
            .app
            .sync
            .sources()
            .iter()
            .map(|s| s.id.clone())
            .collect(),
        mail_status: get("mail_status"),
        sort: sort_text,
        limit,
        headers,
        rows,
        total: page.total,
        from: if page.total == 0 { 0 } else { from + 1 },
        to,
        next,
        first,
        csv: format!("/employees.csv?{}", encode(&view)),
        back: base,
        error,
    }
    .into_response()
}

/// The page `q` asks for. A stale cursor starts again from the first page:
/// `q` and `from` are reset and `error` says why.
fn list_restarting_stale(
    state: &WebState,
    q: &mut ListQuery,
    from: &mut usize,
    error: &mut Option<String>,
) -> Result<crate::employee::list::Page, crate::employee::Error> {
    match state.app.roster.list(q) {
        Err(crate::employee::Error::BadRequest { message, .. }) if q.cursor.is_some() => {
            *error = Some(message);
            q.cursor = None;
            *from = 0;
            state.app.roster.list(q)
        }
        r => r,
    }
}

/// The table's column headers: which one is sorted, and the sort a click asks for.
fn sort_headers(sort: &Sort) -> Vec<Header> {
    COLUMNS
        .iter()
        .map(|(key, label)| {
            let sorted = sort.column
                == SortColumn::ALL
                    .iter()
                    .find(|(n, _)| n == key)
                    .map(|(_, c)| *c)
                    .unwrap_or(SortColumn::Name);
            let (aria_sort, next) = match (sorted, sort.descending) {
                (true, false) => ("ascending", format!("-{key}")),
                (true, true) => ("descending", key.to_string()),
                (false, _) => ("", key.to_string()),
            };
            Header {
                label,
                aria_sort,
                next,
            }
        })
        .collect()
}

/// `GET /employees/{id}/photo`: an uploaded photo, for signed-in users.
pub async fn employee_photo(
    _: Viewer,
    State(state): State<WebState>,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<EmployeeId>() else {
        return error_page(StatusCode::NOT_FOUND, "No such employee.");
    };
    match state.app.roster.photo(id) {
        Ok((ct, bytes)) => ([(header::CONTENT_TYPE, ct)], bytes).into_response(),
        Err(e) => domain_error_page(e),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Activate,
    Deactivate,
    SendInvite,
    SendPasswordReset,
}

impl Action {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "activate" => Action::Activate,
            "deactivate" => Action::Deactivate,
            "send_invite" => Action::SendInvite,
            "send_password_reset" => Action::SendPasswordReset,
            _ => return None,
        })
    }

    fn key(self) -> &'static str {
        match self {
            Action::Activate => "activate",
            Action::Deactivate => "deactivate",
            Action::SendInvite => "send_invite",
            Action::SendPasswordReset => "send_password_reset",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Action::Activate => "Activate",
            Action::Deactivate => "Deactivate",
            Action::SendInvite => "Send account invite to",
            Action::SendPasswordReset => "Send password reset to",
        }
    }

    /// What a skipped row's `changed: false` means when the domain gave no reason.
    fn already(self) -> &'static str {
        match self {
            Action::Activate => "already active",
            Action::Deactivate => "already inactive",
            _ => "nothing to do",
        }
    }
}

pub struct Outcome {
    pub id: String,
    pub name: String,
    /// Will change / changed.
    pub changes: bool,
    pub text: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "bulk.html")]
struct BulkPage {
    chrome: Chrome,
    /// A preview (with the confirm form) or the result.
    preview: bool,
    title: String,
    action: &'static str,
    confirm_label: String,
    /// The employees the confirmation applies to (a selection of rows).
    ids: Vec<String>,
    /// "Select all that match": the confirmation names the view instead of
    /// ids, with the digest of the matching set it was previewed on.
    matching: Option<String>,
    /// At most [`BULK_LISTED`] of them, by name.
    outcomes: Vec<Outcome>,
    /// How many more there are than listed.
    more: usize,
    changing: usize,
    skipped: usize,
    /// The matching set changed between the preview and the confirmation.
    stale: bool,
    back: String,
}

/// The digest of a set of ids (which employees a "select all that match"
/// preview showed): the confirmation applies only to the same set.
fn ids_digest(ids: &[String]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for id in ids {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// The view a bulk form came from (its `back` URL): its list query.
fn view_of_back(back: &str) -> View {
    let query = back.split_once('?').map(|(_, q)| q).unwrap_or("");
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    View::parse(&params)
}

/// `POST /employees/bulk`: `action`, `id`s (or `scope=matching`: every employee
/// the `back` view's filters match, on every page), `back`; without `confirm` the
/// preview (a dry run), with `confirm=yes` the change and its result per
/// employee. A "matching" confirmation carries the digest of the previewed set
/// and is refused (previewed again) if the set changed meanwhile.
pub async fn employees_bulk(
    viewer: Viewer,
    State(state): State<WebState>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if !viewer.manage {
        tracing::warn!(actor = %viewer.actor, "bulk action refused: no employees.manage");
        return error_page(
            StatusCode::FORBIDDEN,
            "You may view the roster but not change it (that needs the employees.manage permission).",
        );
    }
    let get = |k: &str| {
        form.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    let back = get("back")
        .filter(|b| b.starts_with("/employees") && !b.starts_with("//"))
        .unwrap_or("/employees")
        .to_string();
    let Some(action) = get("action").and_then(Action::parse) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Choose an action: Activate, Deactivate, Send account invite or Send password reset.",
        );
    };
    let r = &state.app.roster;
    let matching = get("scope") == Some("matching");
    let ids = match bulk_ids(r, &form, matching, &back) {
        Ok(ids) => ids,
        Err(page) => return *page,
    };
    let digest = ids_digest(&ids);
    let confirm = get("confirm") == Some("yes");
    // A confirmation of "all that match" applies to the set it previewed only.
    let stale = confirm && matching && get("digest") != Some(digest.as_str());
    let dry_run = !confirm || stale;
    let results = match run_bulk(r, &viewer.actor, action, &ids, dry_run).await {
        Ok(results) => results,
        Err(e) => return domain_error_page(e),
    };
    let outcomes = listed_outcomes(r, &results, action, dry_run);
    let changing = results.iter().filter(|o| o.changed).count();
    let skipped = results.len() - changing;
    let plural = |n: usize| if n == 1 { "employee" } else { "employees" };
    let title = if dry_run {
        format!("{} {} {}?", action.verb(), ids.len(), plural(ids.len()))
    } else {
        format!("{}: {changing} changed, {skipped} skipped", action.verb())
    };
    BulkPage {
        chrome: Chrome::for_viewer(&viewer),
        preview: dry_run,
        title,
        action: action.key(),
        confirm_label: format!("{} {changing} {}", action.verb(), plural(changing)),
        ids: if matching {
            vec![]
        } else {
            results
                .iter()
                .filter(|o| o.changed)
                .map(|o| o.id.clone())
                .collect()
        },
        matching: matching.then_some(digest),
        more: results.len() - outcomes.len(),
        outcomes,
        changing,
        skipped,
        stale,
        back,
    }
    .into_response()
}

/// The employees a bulk form names: its `id`s, or with `scope=matching` every
/// one the `back` view's filters match. None is an error page (boxed: a
/// `Response` is large).
fn bulk_ids(
    r: &crate::employee::Roster,
    form: &[(String, String)],
    matching: bool,
    back: &str,
) -> Result<Vec<String>, Box<Response>> {
    let ids: Vec<String> = if matching {
        let view = view_of_back(back);
        if let Some(e) = view.error {
            return Err(Box::new(error_page(StatusCode::BAD_REQUEST, &e)));
        }
        match r.list_all_ids(&view.q) {
            Ok(ids) => ids.iter().map(ToString::to_string).collect(),
            Err(e) => return Err(Box::new(domain_error_page(e))),
        }
    } else {
        form.iter()
            .filter(|(k, _)| k == "id")
            .map(|(_, v)| v.clone())
            .collect()
    };
    if ids.is_empty() {
        return Err(Box::new(error_page(
            StatusCode::BAD_REQUEST,
            if matching {
                "No employee matches the filter any more."
            } else {
                "Select at least one employee first."
            },
        )));
    }
    Ok(ids)
}

/// Runs (or, with `dry_run`, previews) `action` on `ids`, [`BULK_MAX`] at a time.
async fn run_bulk(
    r: &crate::employee::Roster,
    actor: &crate::store::Actor,
    action: Action,
    ids: &[String],
    dry_run: bool,
) -> Result<Vec<BulkOutcome>, crate::employee::Error> {
    let mut results: Vec<BulkOutcome> = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(BULK_MAX) {
        let done = match action {
            Action::Activate => r.bulk_set_active(actor, chunk, true, dry_run).await,
            Action::Deactivate => r.bulk_set_active(actor, chunk, false, dry_run).await,
            Action::SendInvite => r.bulk_send(actor, chunk, SendKind::Invite, dry_run).await,
            Action::SendPasswordReset => {
                r.bulk_send(actor, chunk, SendKind::PasswordReset, dry_run)
                    .await
            }
        };
        results.extend(done?);
    }
    Ok(results)
}

/// The outcomes listed by name: the first [`BULK_LISTED`], those that change
/// first, each in words.
fn listed_outcomes(
    r: &crate::employee::Roster,
    results: &[BulkOutcome],
    action: Action,
    dry_run: bool,
) -> Vec<Outcome> {
    let text = |o: &BulkOutcome| match (&o.error, o.changed, dry_run) {
        (Some(why), _, true) => format!("Skipped: {why}"),
        (Some(why), _, false) => format!("Failed: {why}"),
        (None, true, true) => "Will change".into(),
        (None, true, false) => "Done".into(),
        (None, false, _) => format!("Skipped: {}", action.already()),
    };
    let mut order: Vec<&BulkOutcome> = results.iter().filter(|o| o.changed).collect();
    order.extend(results.iter().filter(|o| !o.changed));
    order
        .iter()
        .take(BULK_LISTED)
        .map(|o| {
            let name =
                o.id.parse::<EmployeeId>()
                    .ok()
                    .and_then(|id| r.get(id).ok())
                    .map(|e| e.display_name)
                    .unwrap_or_else(|| o.id.clone());
            Outcome {
                id: o.id.clone(),
                name,
                changes: o.changed,
                text: text(o),
            }
        })
        .collect()
}

/// `GET /employees.csv`: the view of the same query (filters and sort, every
/// page of it) as CSV, read a page at a time.
pub async fn employees_csv(
    _: Viewer,
    State(state): State<WebState>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let View { mut q, error, .. } = View::parse(&params);
    if let Some(e) = error {
        return error_page(StatusCode::BAD_REQUEST, &e);
    }
    q.cursor = None;
    q.limit = Some(MAX_LIMIT);
    let mut w = csv::Writer::from_writer(Vec::new());
    let header = [
        "id",
        "name",
        "email",
        "positions",
        "role",
        "business_unit",
        "enabled",
        "active",
        "account_status",
        "source",
        "mail_status",
    ];
    let mut ok = w.write_record(header).is_ok();
    loop {
        let page = match state.app.roster.list(&q) {
            Ok(p) => p,
            Err(e) => return domain_error_page(e),
        };
        for (e, f) in page.items.iter().zip(&page.facts) {
            let r = row(e, f);
            ok &= w
                .write_record([
                    r.id.as_str(),
                    &r.name,
                    &r.email,
                    &e.positions.join(";"),
                    &r.role,
                    &r.business_unit,
                    if e.enabled { "true" } else { "false" },
                    if e.active { "true" } else { "false" },
                    e.account_status.as_str(),
                    f.source.as_deref().unwrap_or(""),
                    f.mail_status.map_or("", MailStatus::as_str),
                ])
                .is_ok();
        }
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    match (ok, w.into_inner()) {
        (true, Ok(bytes)) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"employees.csv\"",
                ),
            ],
            bytes,
        )
            .into_response(),
        _ => error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The CSV could not be written.",
        ),
    }
}
