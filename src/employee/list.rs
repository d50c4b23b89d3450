//! Listing: filters on every column, sort by any column, keyset pagination.
//!
//! One pass streams over the store: each record is decoded, filtered, counted, and
//! offered to a bounded, sorted buffer of `limit + 1` entries. Memory stays at one
//! page whatever the roster's size. The cursor is the last item's (sort key, id), so
//! a page continues strictly after it: profiles created or changed meanwhile never
//! make a page repeat or skip a profile that kept its place.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::model::Employee;
use super::{Error, decode};
use crate::store::Store;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

/// Which profiles by their active flag (the product's default is active only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    #[default]
    Active,
    Inactive,
    All,
}

/// The columns one can sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortColumn {
    Name,
    GivenName,
    FamilyName,
    Email,
    Username,
    Positions,
    Role,
    BusinessUnit,
    Enabled,
    Active,
    AccountStatus,
    CreatedAt,
    UpdatedAt,
}

impl SortColumn {
    pub const ALL: [(&'static str, SortColumn); 13] = [
        ("name", SortColumn::Name),
        ("given_name", SortColumn::GivenName),
        ("family_name", SortColumn::FamilyName),
        ("email", SortColumn::Email),
        ("username", SortColumn::Username),
        ("positions", SortColumn::Positions),
        ("role", SortColumn::Role),
        ("business_unit", SortColumn::BusinessUnit),
        ("enabled", SortColumn::Enabled),
        ("active", SortColumn::Active),
        ("account_status", SortColumn::AccountStatus),
        ("created_at", SortColumn::CreatedAt),
        ("updated_at", SortColumn::UpdatedAt),
    ];

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, c)| *c == self)
            .map(|(n, _)| *n)
            .unwrap_or("name")
    }

    fn key(self, e: &Employee) -> String {
        let ts = |t: &chrono::DateTime<chrono::Utc>| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        };
        let b = |v: bool| if v { "1" } else { "0" }.to_string();
        match self {
            SortColumn::Name => e.display_name.to_lowercase(),
            SortColumn::GivenName => e.given_name.to_lowercase(),
            SortColumn::FamilyName => e.family_name.to_lowercase(),
            SortColumn::Email => e.email.to_lowercase(),
            SortColumn::Username => e.username.to_lowercase(),
            SortColumn::Positions => e.positions.join(",").to_lowercase(),
            SortColumn::Role => e.role.to_lowercase(),
            SortColumn::BusinessUnit => e.business_unit.clone().unwrap_or_default().to_lowercase(),
            SortColumn::Enabled => b(e.enabled),
            SortColumn::Active => b(e.active),
            SortColumn::AccountStatus => e.account_status.as_str().to_string(),
            SortColumn::CreatedAt => ts(&e.created_at),
            SortColumn::UpdatedAt => ts(&e.updated_at),
        }
    }
}

/// `column` or `-column` (descending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub column: SortColumn,
    pub descending: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Self {
            column: SortColumn::Name,
            descending: false,
        }
    }
}

impl std::str::FromStr for Sort {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let (descending, name) = match s.trim().strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.trim()),
        };
        let column = SortColumn::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| *c)
            .ok_or_else(|| Error::BadRequest {
                field: Some("sort".into()),
                message: format!(
                    "cannot sort by `{name}`; use one of {} (prefix - for descending)",
                    SortColumn::ALL.map(|(n, _)| n).join(", ")
                ),
            })?;
        Ok(Sort { column, descending })
    }
}

impl std::fmt::Display for Sort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.descending {
            f.write_str("-")?;
        }
        f.write_str(self.column.name())
    }
}

/// Column filters. Text filters match case-insensitively: `name`, `email` and
/// `username` by substring, the catalog-bound ones by equality.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub name: Option<String>,
    pub email: Option<String>,
    pub username: Option<String>,
    pub position: Option<String>,
    pub role: Option<String>,
    pub business_unit: Option<String>,
    pub enabled: Option<bool>,
    pub account_status: Option<String>,
}

impl Filters {
    pub const COLUMNS: [&'static str; 8] = [
        "name",
        "email",
        "username",
        "position",
        "role",
        "business_unit",
        "enabled",
        "account_status",
    ];

    /// Sets one filter from its column name and text value.
    pub fn set(&mut self, column: &str, value: &str) -> Result<(), Error> {
        let v = value.trim().to_string();
        let bad = |m: String| Error::BadRequest {
            field: Some(column.to_string()),
            message: m,
        };
        match column {
            "name" => self.name = Some(v.to_lowercase()),
            "email" => self.email = Some(v.to_lowercase()),
            "username" => self.username = Some(v.to_lowercase()),
            "position" => self.position = Some(v.to_lowercase()),
            "role" => self.role = Some(v.to_lowercase()),
            "business_unit" => self.business_unit = Some(v.to_lowercase()),
            "enabled" => {
                self.enabled = Some(match v.as_str() {
                    "true" | "yes" | "1" => true,
                    "false" | "no" | "0" => false,
                    _ => return Err(bad(format!("enabled must be true or false, not `{v}`"))),
                })
            }
            "account_status" => match v.as_str() {
                "later" | "invite" | "credentials" => self.account_status = Some(v),
                _ => {
                    return Err(bad(format!(
                        "account_status must be later, invite or credentials, not `{v}`"
                    )));
                }
            },
            _ => {
                return Err(bad(format!(
                    "cannot filter on `{column}`; use one of {}",
                    Self::COLUMNS.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn matches(&self, e: &Employee) -> bool {
        let contains = |hay: &str, needle: &Option<String>| match needle {
            Some(n) => hay.to_lowercase().contains(n.as_str()),
            None => true,
        };
        let eq = |val: &str, want: &Option<String>| match want {
            Some(w) => val.to_lowercase() == *w,
            None => true,
        };
        let name_hit = match &self.name {
            Some(n) => [&e.given_name, &e.family_name, &e.display_name]
                .iter()
                .any(|s| s.to_lowercase().contains(n.as_str())),
            None => true,
        };
        name_hit
            && contains(&e.email, &self.email)
            && contains(&e.username, &self.username)
            && match &self.position {
                Some(p) => e.positions.iter().any(|x| x.to_lowercase() == *p),
                None => true,
            }
            && eq(&e.role, &self.role)
            && eq(
                e.business_unit.as_deref().unwrap_or(""),
                &self.business_unit,
            )
            && self.enabled.is_none_or(|v| e.enabled == v)
            && self
                .account_status
                .as_deref()
                .is_none_or(|s| e.account_status.as_str() == s)
    }
}

/// A list request.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub status: StatusFilter,
    pub filters: Filters,
    pub sort: Sort,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// One page of results.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Employee>,
    /// Pass back as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
    /// How many profiles match the filters in all.
    pub total: usize,
}

#[derive(Serialize, Deserialize)]
struct Cursor {
    /// The sort the cursor belongs to.
    s: String,
    /// The last item's sort key.
    k: String,
    /// The last item's id.
    i: Uuid,
}

fn decode_cursor(raw: &str, sort: &Sort) -> Result<(String, Uuid), Error> {
    let bad = || Error::BadRequest {
        field: Some("cursor".into()),
        message:
            "the cursor is not one this server issued for this sort; start from the first page"
                .into(),
    };
    let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| bad())?;
    let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if c.s != sort.to_string() {
        return Err(bad());
    }
    Ok((c.k, c.i))
}

fn encode_cursor(sort: &Sort, key: &str, id: Uuid) -> String {
    let c = Cursor {
        s: sort.to_string(),
        k: key.to_string(),
        i: id,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap_or_default())
}

/// Runs a list query in one streaming pass over the store.
pub fn run(store: &Store, q: &ListQuery) -> Result<Page, Error> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::BadRequest {
            field: Some("limit".into()),
            message: format!("limit must be between 1 and {MAX_LIMIT}"),
        });
    }
    let after = q
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, &q.sort))
        .transpose()?;
    let desc = q.sort.descending;
    // Position in the requested order: ascending compares (key, id); descending
    // reverses both, so ids tie-break in the same direction as keys.
    let before_in_order =
        |a: &(String, Uuid), b: &(String, Uuid)| -> bool { if desc { a > b } else { a < b } };
    let mut total = 0usize;
    let mut buf: Vec<((String, Uuid), Employee)> = Vec::with_capacity(limit + 1);
    for row in store.scan() {
        let (_, bytes) = row?;
        let e = decode(&bytes)?;
        let status_ok = match q.status {
            StatusFilter::Active => e.active,
            StatusFilter::Inactive => !e.active,
            StatusFilter::All => true,
        };
        if !status_ok || !q.filters.matches(&e) {
            continue;
        }
        total += 1;
        let k = (q.sort.column.key(&e), e.id.0);
        if let Some(a) = &after
            && !before_in_order(a, &k)
        {
            continue;
        }
        if buf.len() > limit && !before_in_order(&k, &buf[limit].0) {
            continue;
        }
        let at = buf.partition_point(|(x, _)| before_in_order(x, &k));
        buf.insert(at, (k, e));
        buf.truncate(limit + 1);
    }
    let next_cursor = if buf.len() > limit {
        buf.truncate(limit);
        buf.last()
            .map(|((k, id), _)| encode_cursor(&q.sort, k, *id))
    } else {
        None
    };
    Ok(Page {
        items: buf.into_iter().map(|(_, e)| e).collect(),
        next_cursor,
        total,
    })
}
