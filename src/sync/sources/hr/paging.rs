//! Paging of HR APIs, apart from the HTTP requests: the [`Pager`] takes each
//! page's body, records and `Link` header values and answers with the next URL
//! or the end ([`Next`]), or why the read must stop ([`PagingError`]). No
//! network here, so every paging style is unit-tested with pages written inline.

use std::collections::HashSet;

use serde_json::Value;
use url::Url;

/// Why a paged read stops before its end (the run fails, nothing is planned).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    #[error("page {page} has no record count at {pointer} (pagination.total)")]
    NoTotal { page: u32, pointer: String },
    #[error("the {what} `{target}` is not a URL: {reason}")]
    NotAUrl {
        what: &'static str,
        target: String,
        reason: String,
    },
    #[error(
        "the {what} points to {next}, another site than {base}; refusing to send credentials there"
    )]
    OtherSite {
        what: &'static str,
        next: String,
        base: String,
    },
    #[error("the {what} of page {page} points to a page already read; stopping an endless loop")]
    LinkLoop { what: &'static str, page: u32 },
    #[error("the {what} at {pointer} is not a string: {kind}")]
    NotAString {
        what: &'static str,
        pointer: String,
        kind: &'static str,
    },
    #[error(
        "page {page} repeats page {previous}: the API seems to ignore `{param}`; check pagination (or set pagination.total)"
    )]
    Repeated {
        page: u32,
        previous: u32,
        param: String,
    },
    #[error("page {page} returned a cursor already used; stopping an endless loop")]
    CursorReused { page: u32 },
    #[error(
        "more than {max} pages (pagination.max_pages); raise it if the directory is that large"
    )]
    TooManyPages { max: u32 },
    #[error("the read is incomplete: the API announced {announced} records, {read} were read")]
    Incomplete { announced: u64, read: u64 },
}

/// A URL for people: no query string (it may hold cursors or keys).
pub fn redact(u: &Url) -> String {
    let mut u = u.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// The `rel="next"` target of RFC 8288 `Link` header values.
pub fn link_next<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    for value in values {
        // Split on commas that separate links (not those inside <...>).
        let mut links = Vec::new();
        let mut depth = false;
        let mut start = 0;
        for (i, c) in value.char_indices() {
            match c {
                '<' => depth = true,
                '>' => depth = false,
                ',' if !depth => {
                    links.push(&value[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        links.push(&value[start..]);
        for link in links {
            let link = link.trim();
            let Some(rest) = link.strip_prefix('<') else {
                continue;
            };
            let Some((target, params)) = rest.split_once('>') else {
                continue;
            };
            let is_next = params.split(';').any(|p| {
                let Some((k, v)) = p.split_once('=') else {
                    return false;
                };
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
            });
            if is_next {
                return Some(target.trim().to_string());
            }
        }
    }
    None
}

/// Pagination style (validated).
#[derive(Debug, Clone, PartialEq)]
pub enum Paging {
    None,
    NextLink {
        next: String,
    },
    LinkHeader,
    Page {
        page_param: String,
        size_param: Option<String>,
        size: u32,
        start: u64,
    },
    Offset {
        offset_param: String,
        limit_param: String,
        limit: u32,
    },
    Cursor {
        cursor: String,
        cursor_param: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pagination {
    pub paging: Paging,
    /// JSON pointer to the total record count.
    pub total: Option<String>,
    pub max_pages: u32,
}

/// `base` with the static query and `set` parameters (replacing same-named ones).
pub(super) fn with_params(base: &Url, fixed: &[(String, String)], set: &[(&str, String)]) -> Url {
    let mut u = base.clone();
    let names: Vec<&str> = fixed
        .iter()
        .map(|(k, _)| k.as_str())
        .chain(set.iter().map(|(k, _)| *k))
        .collect();
    let kept: Vec<(String, String)> = base
        .query_pairs()
        .filter(|(k, _)| !names.contains(&k.as_ref()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.set_query(None);
    if kept.is_empty() && fixed.is_empty() && set.is_empty() {
        return u;
    }
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in &kept {
            q.append_pair(k, v);
        }
        for (k, v) in fixed {
            q.append_pair(k, v);
        }
        for (k, v) in set {
            q.append_pair(k, v);
        }
    }
    u
}

pub(super) fn same_origin(a: &Url, b: &Url) -> bool {
    a.origin() == b.origin()
}

/// What comes after a page.
#[derive(Debug, PartialEq)]
pub enum Next {
    Done,
    Fetch(Url),
}

/// Works out the page requests (pure: pages in, next URL out).
pub struct Pager<'a> {
    cfg: &'a Pagination,
    base: &'a Url,
    fixed: &'a [(String, String)],
    /// Pages read so far.
    pages: u32,
    /// Records read so far.
    seen: u64,
    /// The longest page so far (a shorter one is the last).
    longest: usize,
    total: Option<u64>,
    visited: HashSet<String>,
    previous: Option<Vec<Value>>,
}

impl<'a> Pager<'a> {
    pub fn new(cfg: &'a Pagination, base: &'a Url, fixed: &'a [(String, String)]) -> Self {
        Self {
            cfg,
            base,
            fixed,
            pages: 0,
            seen: 0,
            longest: 0,
            total: None,
            visited: HashSet::new(),
            previous: None,
        }
    }

    /// Records read so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The first request.
    pub fn first(&mut self) -> Url {
        // The first page (page `start`, offset 0); other styles send no parameter.
        let url = self.numbered(0, 0);
        self.visited.insert(url.to_string());
        url
    }

    fn follow(
        &mut self,
        current: &Url,
        target: &str,
        what: &'static str,
    ) -> Result<Next, PagingError> {
        let next = current.join(target).map_err(|e| PagingError::NotAUrl {
            what,
            target: target.to_string(),
            reason: e.to_string(),
        })?;
        if !same_origin(&next, self.base) {
            return Err(PagingError::OtherSite {
                what,
                next: redact(&next),
                base: redact(self.base),
            });
        }
        if !self.visited.insert(next.to_string()) {
            return Err(PagingError::LinkLoop {
                what,
                page: self.pages,
            });
        }
        Ok(Next::Fetch(next))
    }

    /// After page `self.pages + 1`, read from `current`: its body, its records
    /// and its `Link` header values. Counts the page, reads the announced total,
    /// works out the next request by the paging style, then checks the bounds.
    pub fn advance(
        &mut self,
        current: &Url,
        body: &Value,
        records: &[Value],
        links: &[&str],
    ) -> Result<Next, PagingError> {
        self.pages += 1;
        self.seen += records.len() as u64;
        self.read_total(body)?;
        let repeated = !records.is_empty() && self.previous.as_deref() == Some(records);
        let shorter = records.len() < self.longest;
        self.longest = self.longest.max(records.len());
        // A page-number or offset read ends at an empty or short page, or at the total.
        let last = records.is_empty() || shorter || self.reached_total();
        let next = match &self.cfg.paging {
            Paging::None => Next::Done,
            Paging::NextLink { next } => match body.pointer(next) {
                None | Some(Value::Null) => Next::Done,
                Some(Value::String(s)) if s.trim().is_empty() => Next::Done,
                Some(Value::String(s)) => self.follow(current, s.trim(), "next link")?,
                Some(other) => {
                    return Err(PagingError::NotAString {
                        what: "next link",
                        pointer: next.clone(),
                        kind: kind_of(other),
                    });
                }
            },
            Paging::LinkHeader => match link_next(links.iter().copied()) {
                None => Next::Done,
                Some(target) => self.follow(current, &target, "Link header's next page")?,
            },
            Paging::Page { page_param, .. }
            | Paging::Offset {
                offset_param: page_param,
                ..
            } => {
                if repeated {
                    return Err(self.repeated(page_param));
                }
                if last {
                    Next::Done
                } else {
                    Next::Fetch(self.numbered_next())
                }
            }
            Paging::Cursor {
                cursor,
                cursor_param,
            } => self.next_cursor(body, cursor, cursor_param)?,
        };
        self.previous = Some(records.to_vec());
        self.check_bounds(&next)?;
        Ok(next)
    }

    /// Keeps the record count the page announces (`pagination.total`); the
    /// first page must have one, later ones may leave it out.
    fn read_total(&mut self, body: &Value) -> Result<(), PagingError> {
        let Some(ptr) = &self.cfg.total else {
            return Ok(());
        };
        let t = match body.pointer(ptr) {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        match t {
            Some(t) => self.total = Some(t),
            None if self.total.is_none() => {
                return Err(PagingError::NoTotal {
                    page: self.pages,
                    pointer: ptr.clone(),
                });
            }
            None => {}
        }
        Ok(())
    }

    /// The next page-number or offset request (other styles have none).
    fn numbered_next(&self) -> Url {
        self.numbered(u64::from(self.pages), self.seen)
    }

    /// The request for page `start + pages_read` (page style) or at `offset`
    /// (offset style); the base request for the other styles.
    fn numbered(&self, pages_read: u64, offset: u64) -> Url {
        match &self.cfg.paging {
            Paging::Page {
                page_param,
                size_param,
                size,
                start,
            } => {
                let mut set = vec![(page_param.as_str(), (start + pages_read).to_string())];
                if let Some(sp) = size_param {
                    set.push((sp.as_str(), size.to_string()));
                }
                with_params(self.base, self.fixed, &set)
            }
            Paging::Offset {
                offset_param,
                limit_param,
                limit,
            } => with_params(
                self.base,
                self.fixed,
                &[
                    (offset_param.as_str(), offset.to_string()),
                    (limit_param.as_str(), limit.to_string()),
                ],
            ),
            _ => with_params(self.base, self.fixed, &[]),
        }
    }

    /// The cursor style: the page's cursor sent back, or the end without one.
    fn next_cursor(
        &mut self,
        body: &Value,
        cursor: &str,
        cursor_param: &str,
    ) -> Result<Next, PagingError> {
        let c = match body.pointer(cursor) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()).filter(|s| !s.is_empty()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                return Err(PagingError::NotAString {
                    what: "cursor",
                    pointer: cursor.to_string(),
                    kind: kind_of(other),
                });
            }
        };
        let Some(c) = c else {
            return Ok(Next::Done);
        };
        let u = with_params(self.base, self.fixed, &[(cursor_param, c)]);
        if !self.visited.insert(u.to_string()) {
            return Err(PagingError::CursorReused { page: self.pages });
        }
        Ok(Next::Fetch(u))
    }

    /// No more than `max_pages` pages, and no end short of the announced total.
    fn check_bounds(&self, next: &Next) -> Result<(), PagingError> {
        if let Next::Fetch(_) = next
            && self.pages >= self.cfg.max_pages
        {
            return Err(PagingError::TooManyPages {
                max: self.cfg.max_pages,
            });
        }
        if *next == Next::Done
            && let Some(t) = self.total
            && self.seen < t
        {
            return Err(PagingError::Incomplete {
                announced: t,
                read: self.seen,
            });
        }
        Ok(())
    }

    fn reached_total(&self) -> bool {
        self.total.is_some_and(|t| self.seen >= t)
    }

    fn repeated(&self, param: &str) -> PagingError {
        PagingError::Repeated {
            page: self.pages,
            previous: self.pages - 1,
            param: param.to_string(),
        }
    }
}

pub(super) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pag(paging: Paging, total: Option<&str>) -> Pagination {
        Pagination {
            paging,
            total: total.map(str::to_string),
            max_pages: 50,
        }
    }

    /// Page-number paging: `page_param` from `start`, `size` a page.
    fn page_style(page_param: &str, size_param: Option<&str>, size: u32, start: u64) -> Paging {
        Paging::Page {
            page_param: page_param.into(),
            size_param: size_param.map(str::to_string),
            size,
            start,
        }
    }

    /// Why the pager refuses to go on after this page (no `Link` headers).
    fn refusal(p: &mut Pager, current: &Url, body: &Value, records: &[Value]) -> String {
        p.advance(current, body, records, &[])
            .unwrap_err()
            .to_string()
    }

    fn recs(n: usize, from: usize) -> Vec<Value> {
        (from..from + n).map(|i| json!({ "id": i })).collect()
    }

    fn base() -> Url {
        Url::parse("https://hr.example.com/api/people?fixed=1").unwrap()
    }

    #[test]
    fn link_header_next() {
        assert_eq!(
            link_next([r#"<https://x/p?page=2>; rel="next", <https://x/p?page=9>; rel="last""#]),
            Some("https://x/p?page=2".into())
        );
        assert_eq!(
            link_next([
                r#"<https://x/p?page=1>; rel="prev""#,
                r#"</p?a=1,2>; rel="next last""#
            ]),
            Some("/p?a=1,2".into())
        );
        assert_eq!(link_next([r#"<https://x/p?page=9>; rel=last"#]), None);
        assert_eq!(
            link_next([r#"<https://x/p?page=3>;rel=next"#]),
            Some("https://x/p?page=3".into())
        );
    }

    #[test]
    fn page_style_stops_at_a_short_page() {
        let cfg = pag(page_style("page", Some("per_page"), 2, 1), None);
        let b = base();
        let mut p = Pager::new(&cfg, &b, &[]);
        let u = p.first();
        assert_eq!(
            u.as_str(),
            "https://hr.example.com/api/people?fixed=1&page=1&per_page=2"
        );
        let n = p.advance(&u, &json!([]), &recs(2, 0), &[]).unwrap();
        let Next::Fetch(u2) = n else { panic!("{n:?}") };
        assert_eq!(
            u2.as_str(),
            "https://hr.example.com/api/people?fixed=1&page=2&per_page=2"
        );
        assert_eq!(
            p.advance(&u2, &json!([]), &recs(1, 2), &[]).unwrap(),
            Next::Done
        );
    }

    #[test]
    fn page_style_checks_the_total() {
        let cfg = pag(page_style("p", None, 100, 0), Some("/total"));
        let b = base();
        let mut p = Pager::new(&cfg, &b, &[]);
        let u = p.first();
        assert!(u.as_str().ends_with("p=0"), "{u}");
        let n = p
            .advance(&u, &json!({"total": 4}), &recs(2, 0), &[])
            .unwrap();
        let Next::Fetch(u) = n else { panic!() };
        assert!(u.as_str().ends_with("p=1"), "{u}");
        assert_eq!(
            p.advance(&u, &json!({"total": "4"}), &recs(2, 2), &[])
                .unwrap(),
            Next::Done
        );

        // An empty page before the announced total: incomplete.
        let mut p = Pager::new(&cfg, &b, &[]);
        let u = p.first();
        p.advance(&u, &json!({"total": 5}), &recs(2, 0), &[])
            .unwrap();
        let e = refusal(&mut p, &u, &json!({"total": 5}), &[]);
        assert!(e.contains("incomplete") && e.contains('5'), "{e}");
        // No count where one is configured.
        let mut p = Pager::new(&cfg, &b, &[]);
        let e = refusal(&mut p, &u, &json!({}), &recs(2, 0));
        assert!(e.contains("/total"), "{e}");
    }

    #[test]
    fn a_repeated_page_fails_instead_of_looping() {
        let cfg = pag(page_style("page", None, 2, 1), None);
        let b = base();
        let mut p = Pager::new(&cfg, &b, &[]);
        let u = p.first();
        p.advance(&u, &json!([]), &recs(2, 0), &[]).unwrap();
        let e = refusal(&mut p, &u, &json!([]), &recs(2, 0));
        assert!(e.contains("repeats"), "{e}");
    }

    #[test]
    fn offset_advances_by_records_received() {
        let cfg = pag(
            Paging::Offset {
                offset_param: "offset".into(),
                limit_param: "limit".into(),
                limit: 100,
            },
            None,
        );
        let b = base();
        let fixed = vec![("status".to_string(), "all".to_string())];
        let mut p = Pager::new(&cfg, &b, &fixed);
        let u = p.first();
        assert_eq!(
            u.as_str(),
            "https://hr.example.com/api/people?fixed=1&status=all&offset=0&limit=100"
        );
        // The server caps pages at 3: the pager follows.
        let Next::Fetch(u) = p.advance(&u, &json!({}), &recs(3, 0), &[]).unwrap() else {
            panic!()
        };
        assert!(u.as_str().ends_with("offset=3&limit=100"), "{u}");
        let Next::Fetch(u) = p.advance(&u, &json!({}), &recs(3, 3), &[]).unwrap() else {
            panic!()
        };
        assert!(u.as_str().ends_with("offset=6&limit=100"), "{u}");
        assert_eq!(
            p.advance(&u, &json!({}), &recs(1, 6), &[]).unwrap(),
            Next::Done
        );
        assert_eq!(p.seen(), 7);
    }

    #[test]
    fn next_link_relative_absolute_foreign_and_loop() {
        let cfg = pag(
            Paging::NextLink {
                next: "/links/next".into(),
            },
            None,
        );
        let b = base();
        let mut p = Pager::new(&cfg, &b, &[]);
        let u = p.first();
        let Next::Fetch(u2) = p
            .advance(
                &u,
                &json!({"links": {"next": "/api/people?after=abc"}}),
                &recs(1, 0),
                &[],
            )
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(u2.as_str(), "https://hr.example.com/api/people?after=abc");
        let e = refusal(
            &mut p,
            &u2,
            &json!({"links": {"next": "https://evil.example/x"}}),
            &recs(1, 1),
        );
        assert!(e.contains("another site"), "{e}");
        let mut p = Pager::new(&cfg, &b, &[]);
        let u = p.first();
        let e = refusal(
            &mut p,
            &u,
            &json!({"links": {"next": u.as_str()}}),
            &recs(1, 0),
        );
        assert!(e.contains("already read"), "{e}");
        let mut p = Pager::new(&cfg, &b, &[]);
        assert_eq!(
            p.advance(&u, &json!({"links": {"next": null}}), &recs(1, 0), &[])
                .unwrap(),
            Next::Done
        );
    }

    #[test]
    fn cursor_stops_when_absent_and_refuses_a_repeat() {
        let cfg = pag(
            Paging::Cursor {
                cursor: "/meta/next".into(),
                cursor_param: "cursor".into(),
            },
            None,
        );
        let b = base();
        let mut p = Pager::new(&cfg, &b, &[]);
        let u = p.first();
        let Next::Fetch(u2) = p
            .advance(&u, &json!({"meta": {"next": "c1"}}), &recs(1, 0), &[])
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            u2.as_str(),
            "https://hr.example.com/api/people?fixed=1&cursor=c1"
        );
        let e = refusal(&mut p, &u2, &json!({"meta": {"next": "c1"}}), &recs(1, 1));
        assert!(e.contains("cursor already used"), "{e}");
        let mut p = Pager::new(&cfg, &b, &[]);
        assert_eq!(
            p.advance(&u, &json!({"meta": {"next": ""}}), &[], &[])
                .unwrap(),
            Next::Done
        );
    }

    #[test]
    fn max_pages_bounds_the_read() {
        let mut cfg = pag(
            Paging::Cursor {
                cursor: "/next".into(),
                cursor_param: "c".into(),
            },
            None,
        );
        cfg.max_pages = 3;
        let b = base();
        let mut p = Pager::new(&cfg, &b, &[]);
        let u = p.first();
        for i in 0..2 {
            assert!(matches!(
                p.advance(&u, &json!({"next": format!("c{i}")}), &recs(1, i), &[])
                    .unwrap(),
                Next::Fetch(_)
            ));
        }
        let e = refusal(&mut p, &u, &json!({"next": "c9"}), &recs(1, 5));
        assert!(e.contains("max_pages"), "{e}");
    }
}
