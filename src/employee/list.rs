//! Listing: filters on every column, sort by any column, keyset pagination.
//!
//! A list is answered from the roster's in-memory [`Projection`]: one pass
//! over its compact rows filters, counts and keeps a bounded, sorted buffer of
//! `limit + 1` (sort key, id) pairs; only the profiles of the page are then
//! read from the store. The default view (active, sorted by name) of a
//! 100,000-profile roster thus reads 50 profiles, not 100,000. The cursor is
//! the last item's (sort key, id), so a page continues strictly after it:
//! profiles created or changed meanwhile never make a page repeat or skip a
//! profile that kept its place.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::model::Employee;
use super::projection::{Key, MailStatus, Projected, Projection};
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
    /// The sync source that owns the profile (none sorts first).
    Source,
    /// The state of the last invitation or reset mail (none sorts first).
    MailStatus,
}

impl SortColumn {
    pub const ALL: [(&'static str, SortColumn); 15] = [
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
        ("source", SortColumn::Source),
        ("mail_status", SortColumn::MailStatus),
    ];

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, c)| *c == self)
            .map(|(n, _)| *n)
            .unwrap_or("name")
    }

    /// The sort key of a projected profile (texts folded, as the filters fold).
    fn key<'a>(self, p: &Projected<'a>) -> Key<'a> {
        use std::borrow::Cow::{Borrowed, Owned};
        let b = |v: bool| Key::Text(Borrowed(if v { "1" } else { "0" }));
        match self {
            SortColumn::Name => Key::Text(Borrowed(p.display_name())),
            SortColumn::GivenName => Key::Text(Borrowed(p.given_name())),
            SortColumn::FamilyName => Key::Text(Borrowed(p.family_name())),
            SortColumn::Email => Key::Text(Borrowed(p.email())),
            SortColumn::Username => Key::Text(Borrowed(p.username())),
            SortColumn::Positions => {
                Key::Text(Owned(p.positions_folded().collect::<Vec<_>>().join(",")))
            }
            SortColumn::Role => Key::Text(Borrowed(p.role_folded())),
            SortColumn::BusinessUnit => Key::Text(Borrowed(p.business_unit_folded().unwrap_or(""))),
            SortColumn::Enabled => b(p.enabled()),
            SortColumn::Active => b(p.active()),
            SortColumn::AccountStatus => Key::Text(Borrowed(p.account_status().as_str())),
            SortColumn::CreatedAt => Key::Time(p.created_at_nanos()),
            SortColumn::UpdatedAt => Key::Time(p.updated_at_nanos()),
            SortColumn::Source => Key::Text(Borrowed(p.owner().unwrap_or(""))),
            SortColumn::MailStatus => {
                Key::Text(Borrowed(p.mail_status().map_or("", MailStatus::as_str)))
            }
        }
    }

    fn is_time(self) -> bool {
        matches!(self, SortColumn::CreatedAt | SortColumn::UpdatedAt)
    }
}

/// A sort key as the cursor carries it (timestamps as RFC 3339 with nanoseconds).
fn key_text(k: &Key<'_>) -> String {
    match k {
        Key::Text(s) => s.to_string(),
        Key::Time(n) => chrono::DateTime::from_timestamp_nanos(*n)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
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
    /// The owning sync source's id; `Some(None)`: owned by no source.
    pub source: Option<Option<String>>,
    /// The last mail's state; `Some(None)`: no mail queued yet.
    pub mail_status: Option<Option<MailStatus>>,
}

impl Filters {
    pub const COLUMNS: [&'static str; 10] = [
        "name",
        "email",
        "username",
        "position",
        "role",
        "business_unit",
        "enabled",
        "account_status",
        "source",
        "mail_status",
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
            // Source ids are matched as configured (case and all).
            "source" => self.source = Some((v != "none").then_some(v)),
            "mail_status" => {
                self.mail_status = Some(match v.as_str() {
                    "none" => None,
                    s => Some(MailStatus::parse(s).ok_or_else(|| {
                        bad(format!(
                            "mail_status must be queued, sent, failed, skipped or none, not `{v}`"
                        ))
                    })?),
                })
            }
            _ => {
                return Err(bad(format!(
                    "cannot filter on `{column}`; use one of {}",
                    Self::COLUMNS.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Whether a projected profile passes every filter (its texts are folded,
    /// and so are the filter values).
    pub fn matches(&self, p: &Projected<'_>) -> bool {
        let contains = |hay: &str, needle: &Option<String>| match needle {
            Some(n) => hay.contains(n.as_str()),
            None => true,
        };
        let name_hit = match &self.name {
            Some(n) => [p.given_name(), p.family_name(), p.display_name()]
                .iter()
                .any(|s| s.contains(n.as_str())),
            None => true,
        };
        name_hit
            && contains(p.email(), &self.email)
            && contains(p.username(), &self.username)
            && match &self.position {
                Some(want) => p.positions_folded().any(|x| x == want),
                None => true,
            }
            && self.role.as_deref().is_none_or(|w| p.role_folded() == w)
            && self
                .business_unit
                .as_deref()
                .is_none_or(|w| p.business_unit_folded().unwrap_or("") == w)
            && self.enabled.is_none_or(|v| p.enabled() == v)
            && self
                .account_status
                .as_deref()
                .is_none_or(|s| p.account_status().as_str() == s)
            && self
                .source
                .as_ref()
                .is_none_or(|s| p.owner() == s.as_deref())
            && self
                .mail_status
                .as_ref()
                .is_none_or(|m| p.mail_status() == *m)
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

/// What the projection knows of a listed profile beyond the profile itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowFacts {
    /// The sync source that owns the profile, if any.
    pub source: Option<String>,
    /// The state of its last invitation or reset mail, if one was queued.
    pub mail_status: Option<MailStatus>,
}

/// One page of results.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Employee>,
    /// One per item, in the same order.
    pub facts: Vec<RowFacts>,
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

/// The ids of one page of a list query, in order, with the total and the
/// next page's cursor: one pass over the projection, no profile read.
pub struct Selection {
    pub ids: Vec<Uuid>,
    /// One per id (filled for pages of at most [`MAX_LIMIT`] only).
    pub facts: Vec<RowFacts>,
    pub next_cursor: Option<String>,
    pub total: usize,
}

/// Selects the page of `q` from the projection; `limit` may exceed
/// [`MAX_LIMIT`] here (select all that match: `usize::MAX`).
pub fn select(projection: &Projection, q: &ListQuery, limit: usize) -> Result<Selection, Error> {
    let after = q
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, &q.sort))
        .transpose()?;
    let column = q.sort.column;
    let after: Option<(Key<'static>, Uuid)> = match after {
        None => None,
        Some((k, id)) if column.is_time() => {
            let t = chrono::DateTime::parse_from_rfc3339(&k).map_err(|_| Error::BadRequest {
                field: Some("cursor".into()),
                message: "the cursor is not one this server issued for this sort; start from the first page".into(),
            })?;
            let n = t.timestamp_nanos_opt().unwrap_or(i64::MAX);
            Some((Key::Time(n), id))
        }
        Some((k, id)) => Some((Key::Text(std::borrow::Cow::Owned(k)), id)),
    };
    let desc = q.sort.descending;
    // Position in the requested order: ascending compares (key, id); descending
    // reverses both, so ids tie-break in the same direction as keys.
    let before_in_order =
        |a: &(Key<'_>, Uuid), b: &(Key<'_>, Uuid)| -> bool { if desc { a > b } else { a < b } };
    let snap = projection.snapshot();
    let mut total = 0usize;
    // A bounded, sorted buffer for a page; everything, sorted once, for more.
    let bounded = limit < 1024;
    let keep = limit.saturating_add(1);
    let mut buf: Vec<(Key<'_>, Uuid)> = Vec::with_capacity(if bounded { keep } else { 0 });
    for p in snap.iter() {
        let status_ok = match q.status {
            StatusFilter::Active => p.active(),
            StatusFilter::Inactive => !p.active(),
            StatusFilter::All => true,
        };
        if !status_ok || !q.filters.matches(&p) {
            continue;
        }
        total += 1;
        let k = (column.key(&p), p.id());
        if let Some(a) = &after
            && !before_in_order(a, &k)
        {
            continue;
        }
        if !bounded {
            buf.push(k);
            continue;
        }
        if buf.len() >= keep && !before_in_order(&k, &buf[keep - 1]) {
            continue;
        }
        let at = buf.partition_point(|x| before_in_order(x, &k));
        buf.insert(at, k);
        buf.truncate(keep);
    }
    if !bounded {
        buf.sort_unstable_by(|a, b| if desc { b.cmp(a) } else { a.cmp(b) });
        buf.truncate(keep);
    }
    let next_cursor = if buf.len() > limit {
        buf.truncate(limit);
        buf.last()
            .map(|(k, id)| encode_cursor(&q.sort, &key_text(k), *id))
    } else {
        None
    };
    let facts = if limit <= MAX_LIMIT {
        buf.iter()
            .map(|(_, id)| {
                snap.get(*id)
                    .map(|p| RowFacts {
                        source: p.owner().map(str::to_string),
                        mail_status: p.mail_status(),
                    })
                    .unwrap_or_default()
            })
            .collect()
    } else {
        vec![]
    };
    Ok(Selection {
        ids: buf.into_iter().map(|(_, id)| id).collect(),
        facts,
        next_cursor,
        total,
    })
}

/// Runs a list query: the page is selected on the projection, then only its
/// profiles are read from the store (a profile removed in between is left out).
pub fn run(projection: &Projection, store: &Store, q: &ListQuery) -> Result<Page, Error> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::BadRequest {
            field: Some("limit".into()),
            message: format!("limit must be between 1 and {MAX_LIMIT}"),
        });
    }
    let sel = select(projection, q, limit)?;
    let mut items = Vec::with_capacity(sel.ids.len());
    let mut facts = Vec::with_capacity(sel.ids.len());
    for (id, f) in sel.ids.into_iter().zip(sel.facts) {
        // The caller followed (see `Roster::list`): memory holds the page on a
        // shared store.
        if let Some(bytes) = store.get_followed(id)? {
            items.push(decode(&bytes)?);
            facts.push(f);
        }
    }
    Ok(Page {
        items,
        facts,
        next_cursor: sel.next_cursor,
        total: sel.total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::employee::{Catalog, NewEmployee, Roster, catalog};
    use crate::store::Actor;

    fn catalog() -> Catalog {
        let role = |n: &str| catalog::RoleDef {
            name: n.into(),
            description: String::new(),
            permissions: vec![],
        };
        let position = |n: &str| catalog::PositionDef {
            name: n.into(),
            description: String::new(),
        };
        let unit = |n: &str| catalog::UnitDef {
            name: n.into(),
            description: String::new(),
        };
        Catalog::new(
            vec![],
            vec![position("Driver"), position("Dispatcher")],
            vec![role("Technician"), role("Dispatcher")],
            vec![unit("North"), unit("South")],
            Some("Technician".into()),
        )
        .unwrap()
    }

    /// The old way: every profile decoded, filtered and sorted (the reference).
    fn reference(roster: &Roster, q: &ListQuery) -> Vec<String> {
        let key = |e: &Employee| -> String {
            let b = |v: bool| if v { "1" } else { "0" }.to_string();
            match q.sort.column {
                SortColumn::Name => e.display_name.to_lowercase(),
                SortColumn::Email => e.email.to_lowercase(),
                SortColumn::Positions => e.positions.join(",").to_lowercase(),
                SortColumn::Role => e.role.to_lowercase(),
                SortColumn::BusinessUnit => {
                    e.business_unit.clone().unwrap_or_default().to_lowercase()
                }
                SortColumn::Enabled => b(e.enabled),
                SortColumn::CreatedAt => e
                    .created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                SortColumn::Source => e.source_keys.keys().next().cloned().unwrap_or_default(),
                _ => unreachable!("not in this test"),
            }
        };
        let f = &q.filters;
        let mut all: Vec<Employee> = roster
            .scan()
            .map(|e| e.unwrap())
            .filter(|e| match q.status {
                StatusFilter::Active => e.active,
                StatusFilter::Inactive => !e.active,
                StatusFilter::All => true,
            })
            .filter(|e| {
                f.name.as_ref().is_none_or(|n| {
                    [&e.given_name, &e.family_name, &e.display_name]
                        .iter()
                        .any(|s| s.to_lowercase().contains(n.as_str()))
                }) && f
                    .email
                    .as_ref()
                    .is_none_or(|n| e.email.to_lowercase().contains(n.as_str()))
                    && f.role.as_ref().is_none_or(|r| e.role.to_lowercase() == *r)
                    && f.position
                        .as_ref()
                        .is_none_or(|p| e.positions.iter().any(|x| x.to_lowercase() == *p))
                    && f.business_unit.as_ref().is_none_or(|b| {
                        e.business_unit.clone().unwrap_or_default().to_lowercase() == *b
                    })
                    && f.source
                        .as_ref()
                        .is_none_or(|s| e.source_keys.keys().next() == s.as_ref())
            })
            .collect();
        all.sort_by_key(|e| (key(e), e.id.0));
        if q.sort.descending {
            all.reverse();
        }
        all.into_iter().map(|e| e.id.to_string()).collect()
    }

    // Long on purpose: one roster, then every kind of list query (filters,
    // sorts, cursors, writes in between) checked against the decode-everything
    // reference, so that a query the projection gets wrong shows here.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lists_from_the_projection_agree_with_decoding_every_profile_and_read_only_the_page() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let roster = Roster::new(store.clone(), catalog(), Default::default(), 64);
        let actor = Actor::admin("t");
        let names = ["Émile", "ada", "Ada", "Zoë", "bob", "Ωmega", "ΣΟΦΙΑ", "li"];
        let inputs: Vec<NewEmployee> = (0..160)
            .map(|i| NewEmployee {
                given_name: names[i % names.len()].into(),
                family_name: format!("Fam{}", i % 7),
                display_name: (i % 5 == 0).then(|| format!("Dr {} {i}", names[i % 3])),
                email: format!("p{i}@Example{}.com", i % 3),
                positions: match i % 4 {
                    0 => vec![],
                    1 => vec!["Driver".into()],
                    2 => vec!["Dispatcher".into(), "Driver".into()],
                    _ => vec!["Dispatcher".into()],
                },
                role: Some(
                    if i % 3 == 0 {
                        "Dispatcher"
                    } else {
                        "Technician"
                    }
                    .into(),
                ),
                business_unit: (i % 2 == 0)
                    .then(|| if i % 4 == 0 { "North" } else { "South" }.into()),
                active: Some(i % 6 != 0),
                enabled: Some(i % 5 != 1),
                ..Default::default()
            })
            .collect();
        roster.create_many(&actor, inputs).await.unwrap();
        // Some linked to a source (one source configured: it owns them).
        let some: Vec<_> = roster.scan().map(|e| e.unwrap()).take(30).collect();
        for (n, e) in some.iter().enumerate() {
            roster
                .update_synced(&actor, e.id, "hr", &format!("k{n}"), |_, _| {
                    Ok(Default::default())
                })
                .unwrap();
        }
        roster.set_source_priority(&["hr".to_string()]);
        let mut queries = Vec::new();
        for sort in [
            "name",
            "-name",
            "email",
            "positions",
            "-role",
            "business_unit",
            "enabled",
            "created_at",
            "-source",
        ] {
            for (col, val) in [
                ("", ""),
                ("name", "ada"),
                ("name", "σοφια"),
                ("role", "dispatcher"),
                ("position", "driver"),
                ("business_unit", "south"),
                ("email", "example1"),
                ("source", "hr"),
                ("source", "none"),
            ] {
                for status in [
                    StatusFilter::Active,
                    StatusFilter::Inactive,
                    StatusFilter::All,
                ] {
                    let mut filters = Filters::default();
                    if !col.is_empty() {
                        filters.set(col, val).unwrap();
                    }
                    queries.push(ListQuery {
                        status,
                        filters,
                        sort: sort.parse().unwrap(),
                        limit: Some(7),
                        cursor: None,
                    });
                }
            }
        }
        let check = |roster: &Roster| {
            for q in &queries {
                let want = reference(roster, q);
                let mut got = Vec::new();
                let mut q = q.clone();
                loop {
                    let page = roster.list(&q).unwrap();
                    assert_eq!(page.total, want.len(), "{q:?}");
                    got.extend(page.items.iter().map(|e| e.id.to_string()));
                    match page.next_cursor {
                        Some(c) => q.cursor = Some(c),
                        None => break,
                    }
                }
                assert_eq!(got, want, "{q:?}");
                assert_eq!(
                    roster
                        .list_all_ids(&q)
                        .unwrap()
                        .iter()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>(),
                    want
                );
            }
        };
        check(&roster);
        // The same after a restart: the projection built from the store.
        let reopened = Roster::new(store.clone(), catalog(), Default::default(), 64);
        reopened.set_source_priority(&["hr".to_string()]);
        check(&reopened);
        // The default view reads the page's profiles only.
        let before = store.record_reads();
        let page = roster.list(&ListQuery::default()).unwrap();
        assert_eq!(page.items.len(), DEFAULT_LIMIT);
        assert_eq!(store.record_reads() - before, DEFAULT_LIMIT as u64);
        assert_eq!(page.total, store.counts().active);
    }

    /// Concurrent writers (updates of the same profiles racing each other,
    /// creates, deactivations, a delete) leave the projection equal to what
    /// the store holds, row for row.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_leave_the_projection_equal_to_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let roster = Roster::new(store.clone(), catalog(), Default::default(), 64);
        let actor = Actor::admin("t");
        let base: Vec<NewEmployee> = (0..20)
            .map(|i| NewEmployee {
                given_name: format!("Base{i}"),
                email: format!("base{i}@example.com"),
                ..Default::default()
            })
            .collect();
        let ids: Vec<_> = roster
            .create_many(&actor, base)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.unwrap().id)
            .collect();
        let mut tasks = Vec::new();
        for w in 0..6 {
            let roster = roster.clone();
            let ids = ids.clone();
            tasks.push(tokio::spawn(async move {
                let actor = Actor::admin("t");
                for k in 0..30 {
                    let id = ids[(w + k) % 4];
                    let patch = crate::employee::EmployeePatch {
                        display_name: Some(format!("Writer {w} write {k}")),
                        role: Some(
                            if k % 2 == 0 {
                                "Dispatcher"
                            } else {
                                "Technician"
                            }
                            .into(),
                        ),
                        ..Default::default()
                    };
                    roster.update(&actor, id, patch, None).await.unwrap();
                    if k % 10 == w {
                        let _ = roster.set_active(&actor, ids[4 + w], k % 20 != w).await;
                        roster
                            .create(
                                &actor,
                                NewEmployee {
                                    given_name: format!("New{w}x{k}"),
                                    email: format!("new{w}x{k}@example.com"),
                                    ..Default::default()
                                },
                            )
                            .await
                            .unwrap();
                    }
                }
            }));
        }
        roster.delete(&actor, ids[19]).await.unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        let snap = roster.projection().snapshot();
        let stored: Vec<Employee> = roster.scan().map(|e| e.unwrap()).collect();
        assert_eq!(snap.len(), stored.len());
        for (p, e) in snap.iter().zip(&stored) {
            assert_eq!(p.id(), e.id.0);
            assert_eq!(p.version(), e.version, "{}", e.display_name);
            assert_eq!(p.display_name(), e.display_name.to_lowercase());
            assert_eq!(p.role(), e.role);
            assert_eq!(p.active(), e.active);
        }
    }
}
