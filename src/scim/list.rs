//! Listing and searching Users (RFC 7644 §3.4.2, §3.4.3).
//!
//! - **Index first.** A filter whose top level (or one side of a top-level `and`,
//!   or every side of an `or`) is an equality on `userName`, `emails.value` (also
//!   as `emails[type eq "work"].value eq …`), `externalId` or `id` is answered from
//!   the store's unique indexes: only the hits are read, then checked against the
//!   whole filter.
//! - **Filters on the projection.** A filter whose every part is on an
//!   attribute the roster's in-memory projection holds (`userName`,
//!   `displayName`, `name.*`, `emails`, `externalId`, `id`, `active`, `roles`;
//!   `co`/`sw`/`ew`/`eq`/..., `pr`, `and`/`or`/`not`) selects and counts its
//!   matches there without reading a profile; only the page is read and
//!   rendered. A `sortBy` on one of those attributes is sorted there too.
//! - **Filters before rendering.** Otherwise the filter is compiled into a typed matcher
//!   ([`super::matcher`]) that reads the stored profile; a profile is rendered
//!   to SCIM JSON only if it matches (or if a part of the filter the matcher
//!   does not know needs the rendered resource), and a match outside the
//!   requested page is counted, not rendered.
//! - **Otherwise one streaming pass.** Records are decoded one at a time; only the
//!   requested page is kept (plus, with `sortBy`, the sort keys of the first
//!   `startIndex + count - 1` matches). `totalResults` counts every match.
//! - **Paging without rescanning.** Unsorted results come in id order. After
//!   serving a page, the id of its last match is remembered with the store's write
//!   generation; when the same filter asks for the next `startIndex` and nothing
//!   was written meanwhile, the scan resumes after that id and `totalResults` is
//!   reused (a write racing the check can leave that total off by that write, as
//!   index-based paging is anyway). Without a filter the total is the store's
//!   record count. Walking
//!   100,000 users in pages of 100 therefore reads each record about once, with
//!   memory flat at one page.

use std::cell::OnceCell;
use std::collections::HashMap;

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::error::ScimError;
use super::filter::{self, Filter, Lit, Op, ci_get};
use super::schema::{self, Kind};
use super::{ScimState, user};
use crate::employee::positions::Position;
use crate::employee::{Employee, EmployeeId};

/// Most remembered resume points.
const RESUME_MAX: usize = 256;

/// Where an unsorted listing stopped.
#[derive(Debug, Clone)]
pub struct Resume {
    generation: u64,
    next_index: usize,
    after: Uuid,
    total: usize,
}

/// A list or search request.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub filter: Option<String>,
    pub start_index: usize,
    pub count: usize,
    pub sort_by: Option<String>,
    pub descending: bool,
    pub attributes: Vec<String>,
    pub excluded: Vec<String>,
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

fn int(v: Option<&str>, name: &str) -> Result<Option<i64>, ScimError> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ScimError::invalid_value(format!("{name} must be an integer, not `{s}`"))),
    }
}

impl ListParams {
    fn finish(mut self, start: Option<i64>, count: Option<i64>, max: usize) -> Self {
        // RFC 7644 §3.4.2.4: startIndex < 1 is 1; count < 0 is 0.
        self.start_index = start.unwrap_or(1).max(1) as usize;
        self.count = (count.unwrap_or(max as i64).max(0) as usize).min(max);
        self
    }

    /// From the query string (parameter names ignore case).
    pub fn from_query(q: &HashMap<String, String>, max: usize) -> Result<Self, ScimError> {
        let get = |k: &str| {
            q.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let p = ListParams {
            filter: get("filter")
                .map(str::to_string)
                .filter(|f| !f.trim().is_empty()),
            sort_by: get("sortBy")
                .map(str::to_string)
                .filter(|f| !f.trim().is_empty()),
            descending: get("sortOrder").is_some_and(|o| o.eq_ignore_ascii_case("descending")),
            attributes: get("attributes").map(split_list).unwrap_or_default(),
            excluded: get("excludedAttributes")
                .map(split_list)
                .unwrap_or_default(),
            ..Default::default()
        };
        let start = int(get("startIndex"), "startIndex")?;
        let count = int(get("count"), "count")?;
        Ok(p.finish(start, count, max))
    }

    /// From a `SearchRequest` body.
    pub fn from_body(b: &Value, max: usize) -> Result<Self, ScimError> {
        let s = |k: &str| match ci_get(b, k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let list = |k: &str| match ci_get(b, k) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            Some(Value::String(x)) => split_list(x),
            _ => vec![],
        };
        let p = ListParams {
            filter: s("filter").filter(|f| !f.trim().is_empty()),
            sort_by: s("sortBy"),
            descending: s("sortOrder").is_some_and(|o| o.eq_ignore_ascii_case("descending")),
            attributes: list("attributes"),
            excluded: list("excludedAttributes"),
            ..Default::default()
        };
        let start = int(s("startIndex").as_deref(), "startIndex")?;
        let count = int(s("count").as_deref(), "count")?;
        Ok(p.finish(start, count, max))
    }
}

/// Parses and checks a filter for a resource kind (400 `invalidFilter`).
pub fn parse_filter(kind: Kind, text: &str) -> Result<Filter, ScimError> {
    let f = filter::parse(text)
        .map_err(|e| ScimError::invalid_filter(filter::describe("filter", text, &e)))?;
    schema::check_filter(kind, &f).map_err(|e| ScimError::invalid_filter(e.to_string()))?;
    Ok(f)
}

/// The ids an index can answer the filter with; `None` if it needs a scan.
pub(super) fn candidates(state: &ScimState, f: &Filter) -> Result<Option<Vec<Uuid>>, ScimError> {
    let roster = &state.roster;
    let found = |hit: Result<Option<EmployeeId>, crate::employee::Error>| {
        Ok(Some(hit?.into_iter().map(|id| id.0).collect()))
    };
    let indexed = |path: &str, lit: &Lit| -> Result<Option<Vec<Uuid>>, ScimError> {
        let Some(r) = filter::Resolve::resolve(&Kind::User, path) else {
            return Ok(None);
        };
        let text = lit.as_text();
        match (r.urn, r.attr.as_str(), r.sub.as_deref()) {
            (None, "userName", None) => found(roster.id_by_username(&text)),
            (None, "emails", None | Some("value")) => found(roster.id_by_email(&text)),
            (None, "externalId", None) => found(roster.id_by_external_id(&text)),
            (None, "id", None) => Ok(Some(
                crate::employee::parse_id(&text)
                    .into_iter()
                    .map(|id| id.0)
                    .collect(),
            )),
            _ => Ok(None),
        }
    };
    match f {
        Filter::Cmp(p, Op::Eq, lit) if *lit != Lit::Null => indexed(&p.0, lit),
        Filter::ValuePath {
            attr,
            filter: inner,
            then,
        } => {
            if let Some((sub, Some((Op::Eq, lit)))) = then {
                return indexed(&format!("{}.{sub}", attr.0), lit);
            }
            // emails[value eq "x" ...]
            match inner.as_ref() {
                Filter::Cmp(p, Op::Eq, lit) => indexed(&format!("{}.{}", attr.0, p.0), lit),
                Filter::And(a, b) => {
                    for side in [a, b] {
                        if let Filter::Cmp(p, Op::Eq, lit) = side.as_ref()
                            && let Some(ids) = indexed(&format!("{}.{}", attr.0, p.0), lit)?
                        {
                            return Ok(Some(ids));
                        }
                    }
                    Ok(None)
                }
                _ => Ok(None),
            }
        }
        Filter::And(a, b) => match candidates(state, a)? {
            Some(ids) => Ok(Some(ids)),
            None => candidates(state, b),
        },
        Filter::Or(a, b) => match (candidates(state, a)?, candidates(state, b)?) {
            (Some(mut x), Some(y)) => {
                for id in y {
                    if !x.contains(&id) {
                        x.push(id);
                    }
                }
                Ok(Some(x))
            }
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

/// Position name → position, for rendering `groups`.
pub fn position_map(state: &ScimState) -> Result<HashMap<String, Position>, ScimError> {
    Ok(state
        .roster
        .positions()?
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect())
}

/// Renders one profile as a User resource.
pub fn render(
    state: &ScimState,
    e: &Employee,
    positions: &HashMap<String, Position>,
    base: &str,
) -> Value {
    user::to_scim(e, &state.roster.effective_permissions(e), positions, base)
}

/// Sort key of a resource: the first value at the path, folded unless caseExact;
/// resources without one sort last.
fn sort_key(doc: &Value, path: &str) -> (bool, String) {
    let Some(r) = filter::Resolve::resolve(&Kind::User, path) else {
        return (true, String::new());
    };
    let base = match r.urn {
        Some(u) => ci_get(doc, u),
        None => Some(doc),
    };
    let v = base.and_then(|b| ci_get(b, &r.attr));
    let v = match v {
        Some(Value::Array(a)) => a
            .iter()
            .find(|e| ci_get(e, "primary").and_then(filter::as_bool) == Some(true))
            .or(a.first()),
        v => v,
    };
    let v = match (v, &r.sub) {
        (Some(v), Some(s)) => ci_get(v, s),
        (Some(v @ Value::Object(_)), None) => ci_get(v, "value"),
        (v, None) => v,
        (None, Some(_)) => None,
    };
    match v {
        None => (true, String::new()),
        Some(Value::String(s)) if r.case_exact => (false, s.clone()),
        Some(Value::String(s)) => (false, s.to_lowercase()),
        Some(v) => (false, v.to_string()),
    }
}

/// Runs a User list or search and renders the `ListResponse`: the request is
/// checked, then answered by the cheapest of the ways the module's doc lists.
pub fn list_users(state: &ScimState, p: &ListParams, base: &str) -> Result<Value, ScimError> {
    let f = match &p.filter {
        Some(t) => Some(parse_filter(Kind::User, t)?),
        None => None,
    };
    if let Some(s) = &p.sort_by
        && Kind::User.lookup(s).is_none()
    {
        return Err(ScimError::invalid_value(format!(
            "cannot sort by unknown attribute `{s}`"
        )));
    }
    let l = Listing {
        state,
        p,
        base,
        positions: position_map(state)?,
        matcher: f.as_ref().map(super::matcher::Matcher::new),
        skip: p.start_index - 1,
    };
    let planned = match &f {
        Some(f) => candidates(state, f)?,
        None => None,
    };
    let projected_sort = p
        .sort_by
        .as_deref()
        .and_then(super::matcher::ProjectedSort::new)
        .filter(|_| l.matcher.as_ref().is_none_or(|m| m.on_projection()));
    let (total, page) = if let Some(ids) = planned {
        l.indexed(ids)
    } else if let Some(order) = projected_sort {
        l.projected_sorted(&order)?
    } else if let Some(sort_by) = &p.sort_by {
        l.sorted_scan(sort_by)?
    } else if let Some(m) = l.matcher.as_ref().filter(|m| m.on_projection()) {
        l.projected(m)?
    } else if f.is_none() {
        l.unfiltered()?
    } else {
        l.resumable_scan()?
    };
    let resources: Vec<Value> = page
        .into_iter()
        .map(|d| project(d, Kind::User, &p.attributes, &p.excluded))
        .collect();
    Ok(json!({
        "schemas": [schema::LIST],
        "totalResults": total,
        "startIndex": p.start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    }))
}

/// One list request being answered: each way of answering it returns the total
/// and the page's resources (not yet projected).
struct Listing<'a> {
    state: &'a ScimState,
    p: &'a ListParams,
    base: &'a str,
    positions: HashMap<String, Position>,
    matcher: Option<super::matcher::Matcher>,
    /// Matches before the page (`startIndex - 1`).
    skip: usize,
}

type Page = (usize, Vec<Value>);

impl Listing<'_> {
    fn draw(&self, e: &Employee) -> Value {
        render(self.state, e, &self.positions, self.base)
    }

    /// Whether a profile matches; the resource, if that needed it, is left in `doc`.
    fn hit(&self, e: &Employee, doc: &OnceCell<Value>) -> bool {
        self.matcher
            .as_ref()
            .is_none_or(|m| m.matches(e, |e| self.draw(e), doc))
    }

    fn resource(&self, e: &Employee, doc: OnceCell<Value>) -> Value {
        doc.into_inner().unwrap_or_else(|| self.draw(e))
    }

    /// The resource of a matching profile.
    fn pick(&self, e: &Employee) -> Option<Value> {
        let doc = OnceCell::new();
        self.hit(e, &doc).then(|| self.resource(e, doc))
    }

    /// Reads and renders the page's profiles (a profile removed since it was
    /// selected is left out).
    fn read_page(&self, ids: Vec<EmployeeId>) -> Result<Vec<Value>, ScimError> {
        let mut page = Vec::with_capacity(ids.len());
        for id in ids {
            match self.state.roster.get(id) {
                Ok(e) => page.push(self.draw(&e)),
                Err(crate::employee::Error::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(page)
    }

    /// The index gave the candidates: each is read and checked.
    fn indexed(&self, ids: Vec<Uuid>) -> Page {
        let mut hits = Vec::new();
        for id in ids {
            if let Ok(e) = self.state.roster.get(EmployeeId(id))
                && let Some(doc) = self.pick(&e)
            {
                hits.push(doc);
            }
        }
        if let Some(s) = &self.p.sort_by {
            hits.sort_by_cached_key(|d| sort_key(d, s));
            if self.p.descending {
                hits.reverse();
            }
        }
        let total = hits.len();
        (
            total,
            hits.into_iter()
                .skip(self.skip)
                .take(self.p.count)
                .collect(),
        )
    }

    /// Filter and sort key both on the projection: only the page is read.
    fn projected_sorted(&self, order: &super::matcher::ProjectedSort) -> Result<Page, ScimError> {
        let (n, ids) = self.state.roster.select_projected_sorted(
            |x| self.matcher.as_ref().is_none_or(|m| m.matches_projected(x)),
            |x| {
                let (absent, k) = order.key(x);
                (absent, k.into_owned())
            },
            self.p.descending,
            self.skip,
            self.p.count,
        );
        Ok((n, self.read_page(ids)?))
    }

    /// Sorted on a rendered attribute: one pass keeping the best
    /// `skip + count` (key, id) pairs.
    fn sorted_scan(&self, sort_by: &str) -> Result<Page, ScimError> {
        let want = self.skip + self.p.count;
        let mut buf: Vec<((bool, String), Uuid, Value)> = Vec::new();
        let mut n = 0usize;
        let before = |a: &((bool, String), Uuid), b: &((bool, String), Uuid)| {
            if self.p.descending { a > b } else { a < b }
        };
        for e in self.state.roster.scan() {
            let e: Employee = e?;
            let Some(doc) = self.pick(&e) else {
                continue;
            };
            n += 1;
            if want == 0 {
                continue;
            }
            let k = (sort_key(&doc, sort_by), e.id.0);
            if buf.len() >= want && !before(&k, &(buf[want - 1].0.clone(), buf[want - 1].1)) {
                continue;
            }
            let at = buf.partition_point(|(bk, bid, _)| before(&(bk.clone(), *bid), &k));
            buf.insert(at, (k.0, k.1, doc));
            buf.truncate(want);
        }
        Ok((
            n,
            buf.into_iter().skip(self.skip).map(|(_, _, d)| d).collect(),
        ))
    }

    /// Every part of the filter is on the projection: the matches are found and
    /// counted there, and only the page's profiles are read.
    fn projected(&self, m: &super::matcher::Matcher) -> Result<Page, ScimError> {
        let (n, ids) =
            self.state
                .roster
                .select_projected(|x| m.matches_projected(x), self.skip, self.p.count);
        Ok((n, self.read_page(ids)?))
    }

    /// No filter: the count is kept by the store, and the page is found by its
    /// position without reading the records before it.
    fn unfiltered(&self) -> Result<Page, ScimError> {
        let roster = &self.state.roster;
        let page = roster
            .page(self.skip, self.p.count)?
            .iter()
            .map(|e| self.draw(e))
            .collect();
        Ok((roster.counts().total, page))
    }

    /// A filter that needs the stored profiles, unsorted: one pass in id order,
    /// resumed after the previous page when the same filter asks for the next
    /// one and nothing was written meanwhile.
    fn resumable_scan(&self) -> Result<Page, ScimError> {
        let (p, roster) = (self.p, &self.state.roster);
        let key = p.filter.clone().unwrap_or_default();
        let generation = roster.generation()?;
        let resume = self
            .state
            .resume
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .filter(|r| r.generation == generation && r.next_index == p.start_index && p.count > 0)
            .cloned();
        let mut page = Vec::new();
        let mut last: Option<Uuid> = None;
        let total = match resume {
            Some(r) => {
                // Continue after the previous page; the total is known.
                for e in roster.scan_after(Some(EmployeeId(r.after))) {
                    let e = e?;
                    if let Some(doc) = self.pick(&e) {
                        page.push(doc);
                        last = Some(e.id.0);
                        if page.len() >= p.count {
                            break;
                        }
                    }
                }
                r.total
            }
            None => {
                let mut n = 0usize;
                for e in roster.scan() {
                    let e = e?;
                    let doc = OnceCell::new();
                    if !self.hit(&e, &doc) {
                        continue;
                    }
                    n += 1;
                    if n > self.skip && page.len() < p.count {
                        page.push(self.resource(&e, doc));
                        last = Some(e.id.0);
                    }
                }
                n
            }
        };
        if let Some(after) = last {
            let mut cache = self
                .state
                .resume
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.len() >= RESUME_MAX {
                cache.clear();
            }
            cache.insert(
                key,
                Resume {
                    generation,
                    next_index: p.start_index + page.len(),
                    after,
                    total,
                },
            );
        }
        Ok((total, page))
    }
}

/// Applies `attributes` / `excludedAttributes` (RFC 7644 §3.9). `id`, `schemas`
/// and `meta.resourceType` are always returned.
pub fn project(doc: Value, kind: Kind, attributes: &[String], excluded: &[String]) -> Value {
    if attributes.is_empty() && excluded.is_empty() {
        return doc;
    }
    let Value::Object(src) = doc else {
        return doc;
    };
    if !attributes.is_empty() {
        return Value::Object(only_attributes(&src, &kind, attributes));
    }
    Value::Object(without_attributes(src, &kind, excluded))
}

/// Where an attribute path points: its extension URN (if any), the attribute
/// (empty for a whole extension) and the sub-attribute. `None`: no such
/// attribute (it is left out of the projection).
type Located = (Option<&'static str>, String, Option<String>);

fn locate(kind: &Kind, raw: &str) -> Option<Located> {
    if let Some(urn) = kind.extension_urn(raw) {
        return Some((Some(urn), String::new(), None));
    }
    let r = filter::Resolve::resolve(kind, raw)?;
    Some((r.urn, r.attr, r.sub))
}

/// `attributes`: the named attributes of `src`, with those always returned.
fn only_attributes(
    src: &Map<String, Value>,
    kind: &Kind,
    attributes: &[String],
) -> Map<String, Value> {
    let mut out = Map::new();
    for k in ["schemas", "id"] {
        if let Some(v) = src.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    for raw in attributes {
        let Some((urn, attr, sub)) = locate(kind, raw) else {
            continue;
        };
        let (from, to): (Option<&Map<String, Value>>, &mut Map<String, Value>) = match urn {
            Some(u) if attr.is_empty() => {
                if let Some(v) = src.get(u) {
                    out.insert(u.into(), v.clone());
                }
                continue;
            }
            Some(u) => {
                let from = src.get(u).and_then(Value::as_object);
                let to = out
                    .entry(u.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                match to.as_object_mut() {
                    Some(t) => (from, t),
                    None => continue,
                }
            }
            None => (Some(src), &mut out),
        };
        if let Some(v) = from.and_then(|m| m.get(&attr)) {
            copy_attribute(to, attr, sub, v);
        }
    }
    if let Some(rt) = src.get("meta").and_then(|m| m.get("resourceType")) {
        out.entry("meta")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|m| m.insert("resourceType".into(), rt.clone()));
    }
    out
}

/// Copies `attr` (or only its `sub`-attribute, of a complex or of each value
/// of a multi-valued one) into `to`.
fn copy_attribute(to: &mut Map<String, Value>, attr: String, sub: Option<String>, v: &Value) {
    match (sub, v) {
        (None, v) => {
            to.insert(attr, v.clone());
        }
        (Some(s), Value::Object(o)) => {
            if let Some(sv) = o.get(&s) {
                let e = to.entry(attr).or_insert_with(|| Value::Object(Map::new()));
                e[s.as_str()] = sv.clone();
            }
        }
        (Some(s), Value::Array(items)) => {
            let vals: Vec<Value> = items
                .iter()
                .filter_map(|i| i.get(&s).map(|x| json!({ s.as_str(): x })))
                .collect();
            to.insert(attr, Value::Array(vals));
        }
        _ => {}
    }
}

/// `excludedAttributes`: `src` without the named attributes (never `id` or
/// `schemas`).
fn without_attributes(
    mut out: Map<String, Value>,
    kind: &Kind,
    excluded: &[String],
) -> Map<String, Value> {
    for raw in excluded {
        let Some((urn, attr, sub)) = locate(kind, raw) else {
            continue;
        };
        if attr == "id" || attr == "schemas" {
            continue;
        }
        let container = match urn {
            Some(u) if attr.is_empty() => {
                out.remove(u);
                continue;
            }
            Some(u) => out.get_mut(u).and_then(Value::as_object_mut),
            None => Some(&mut out),
        };
        let Some(c) = container else { continue };
        match sub {
            None => {
                c.remove(&attr);
            }
            Some(s) => match c.get_mut(&attr) {
                Some(Value::Object(o)) => {
                    o.remove(&s);
                }
                Some(Value::Array(items)) => {
                    for i in items {
                        if let Some(o) = i.as_object_mut() {
                            o.remove(&s);
                        }
                    }
                }
                _ => {}
            },
        }
    }
    out
}
