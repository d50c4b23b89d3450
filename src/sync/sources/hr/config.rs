//! The keys of `kind = "http"` and `kind = "csv"` sources, and their validation
//! into [`HttpSource`] / [`CsvSource`]. Everything that can be checked before a
//! fetch is checked here, so a bad config stops the start with the key named:
//! URLs, JSON pointers, secrets, transforms, date formats, catalog names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::http::{Auth, Pagination, Paging, RequestSpec, Retry, SecretRef};
use super::map::{CatalogNames, DateRule, FieldRule, HrMapping, Rules, StatusRule, Transform};
use super::{CsvInput, CsvSource, HttpSource};
use crate::config_helpers::{
    ConfigError, NoKeys, Tagged, credential_path, read_secret, tagged_enum,
};
use crate::secret::Secret;
use crate::sync::config::SourceCtx;

/// Where a field's value is. Either a string — a JSON pointer for http sources
/// (`"/workEmail"`), a column header for csv sources (`"Work Email"`) — or a
/// table with the options of [`FieldTable`].
#[derive(Debug, Clone)]
pub enum FieldSpec {
    From(String),
    Table(FieldTable),
}

impl<'de> Deserialize<'de> for FieldSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON pointer / column name, or a table { from = ..., ... }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldSpec, E> {
                Ok(FieldSpec::From(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FieldSpec, A::Error> {
                FieldTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(FieldSpec::Table)
            }
        }
        d.deserialize_any(V)
    }
}

/// A field read with options. Steps, in order: read `from` (or each of `join`,
/// non-empty values joined with `separator`); trim; apply `transform`; `split`
/// into several values; look each up in `map`; fall back to `default`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldTable {
    /// Where the value is: a JSON pointer (http) or a column header (csv).
    pub from: Option<String>,
    /// Several places whose non-empty values are joined (instead of `from`), e.g.
    /// `join = ["/firstName", "/lastName"]`.
    pub join: Option<Vec<String>>,
    /// Put between joined values; default one space.
    pub separator: Option<String>,
    /// Applied in order after trimming (values are always trimmed): `trim`,
    /// `lowercase`, `uppercase`, `collapse_whitespace`.
    #[serde(default)]
    pub transform: Vec<String>,
    /// Source value → profile value, keys matched case-insensitively. For
    /// positions, role and business_unit the values are catalog names (a source
    /// value that is itself a catalog name needs no entry). A value not in the map
    /// takes `default`, else is left empty and reported. Map to `""` to empty a
    /// field without a report.
    pub map: Option<BTreeMap<String, String>>,
    /// Used when the value is empty or not in `map`.
    pub default: Option<String>,
    /// hire_date / termination_date only: chrono strftime format, default
    /// `%Y-%m-%d` (e.g. `%m/%d/%Y`, `%d.%m.%Y`).
    pub format: Option<String>,
    /// positions only: splits one value into several (`split = ";"`). JSON arrays
    /// are several values already.
    pub split: Option<String>,
}

/// `status = { from = "/status", inactive = ["Terminated"] }`: a record whose
/// status is in `inactive` is disabled; with `active` set, so is one whose status
/// is not in `active` (when both are set, a value in neither is reported and
/// counts as active). Values compare case-insensitively.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusSpec {
    /// Where the status is (JSON pointer or column).
    pub from: String,
    /// Applied after trimming, as for other fields.
    #[serde(default)]
    pub transform: Vec<String>,
    /// Values meaning active.
    #[serde(default)]
    pub active: Vec<String>,
    /// Values meaning the person is gone or disabled.
    #[serde(default)]
    pub inactive: Vec<String>,
}

/// `[sources.fields]`: one spec per profile field. Unmapped fields are left
/// alone on profiles; a mapped field that is empty in the source is cleared.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldsSection {
    /// Required: a record without an email is refused (reported, skipped).
    pub email: Option<FieldSpec>,
    pub given_name: Option<FieldSpec>,
    pub family_name: Option<FieldSpec>,
    pub display_name: Option<FieldSpec>,
    pub username: Option<FieldSpec>,
    pub mobile_phone: Option<FieldSpec>,
    pub office_phone: Option<FieldSpec>,
    pub office_phone_extension: Option<FieldSpec>,
    pub photo_url: Option<FieldSpec>,
    /// The SCIM enterprise `employeeNumber` (also a join attribute).
    pub employee_number: Option<FieldSpec>,
    /// The manager: their id in this source (the join key), or their email.
    pub manager: Option<FieldSpec>,
    /// First working day; before it the profile is inactive. Set `format`.
    pub hire_date: Option<FieldSpec>,
    /// From this date on the profile is inactive. Set `format`.
    pub termination_date: Option<FieldSpec>,
    /// Employment status mapped to active / inactive.
    pub status: Option<StatusSpec>,
    /// Catalog positions; several values from a JSON array or with `split`.
    pub positions: Option<FieldSpec>,
    /// The catalog role (through `map`), else `default_role`.
    pub role: Option<FieldSpec>,
    pub business_unit: Option<FieldSpec>,
    /// Role for records whose role value is empty or not in `role.map` (no
    /// report: the map lists the exceptions), and for every record when `role`
    /// is not mapped. Without it, `catalog.default_role` is used and unmapped
    /// values are reported.
    pub default_role: Option<String>,
}

tagged_enum! {
    /// `[sources.auth]`: `kind` picks the keys. Secret files are re-read at every
    /// run, so a job outside rosterd may rotate short-lived tokens.
    #[derive(Debug)]
    pub enum AuthSection {
        /// `Authorization: Bearer <token>`.
        "bearer" => Bearer(TokenAuth),
        /// `Authorization: Basic` with a username and a password.
        "basic" => Basic(BasicAuth),
        /// `<header>: <prefix><token>`.
        "header" => Header(HeaderAuth),
        /// `?<param>=<token>`.
        "query" => Query(QueryAuth),
    }
}

/// `kind = "bearer"`: the token, from exactly one of the two keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenAuth {
    /// File holding the token.
    pub token_file: Option<PathBuf>,
    /// ... or the environment variable holding it.
    pub token_env: Option<String>,
}

/// `kind = "basic"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name (not secret), or `username_file` / `username_env` when the
    /// user name is the secret (BambooHR takes the API key as user name).
    pub username: Option<String>,
    pub username_file: Option<PathBuf>,
    pub username_env: Option<String>,
    /// File / environment variable holding the password.
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// A literal password, only for non-secret placeholders (BambooHR's `x`).
    /// Real passwords belong in `password_file` / `password_env`.
    pub password: Option<String>,
}

/// `kind = "header"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderAuth {
    /// The header name (`X-API-Key`).
    pub header: String,
    /// Put before the token (`"Token "`); default none.
    pub prefix: Option<String>,
    /// File holding the token (keys repeated from [`TokenAuth`]: serde's
    /// `flatten` would let unknown keys through, serde #1358).
    pub token_file: Option<PathBuf>,
    /// ... or the environment variable holding it.
    pub token_env: Option<String>,
}

/// `kind = "query"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryAuth {
    /// The query parameter name (`api_key`).
    pub param: String,
    /// File holding the token.
    pub token_file: Option<PathBuf>,
    /// ... or the environment variable holding it.
    pub token_env: Option<String>,
}

tagged_enum! {
    /// `[sources.pagination]`: `kind` picks the keys.
    ///
    /// `page` and `offset` end at an empty page, at a page shorter than the pages
    /// before it, or once `total` records are read. With `total` (a JSON pointer
    /// to the record count, for any kind but `none`) a read that ends short of it
    /// fails. A page repeating the previous one, a next link or cursor seen
    /// before, or more than `max_pages` pages fail the run. (`total` and
    /// `max_pages` are repeated in each kind's keys: serde's `flatten` would let
    /// unknown keys through, serde #1358.)
    #[derive(Debug)]
    pub enum PaginationSection {
        default = "none";
        /// One request (the default).
        "none" => None(NoKeys),
        /// The next page's URL (absolute or relative) is at JSON pointer `next`;
        /// the end is when it is absent, null or empty.
        "next_link" => NextLink(NextLinkPaging),
        /// The next page is the RFC 8288 `Link: <...>; rel="next"`.
        "link_header" => LinkHeader(PageLimits),
        /// `page_param` (default `page`) counts from `start` (default 1), and
        /// `size_param` (default `per_page`; `""` to not send it) asks for `size`
        /// records (default 100).
        "page" => Page(PagePaging),
        /// `offset_param` (default `offset`) advances by the records received,
        /// `limit_param` (default `limit`) asks for `limit` (default 100).
        "offset" => Offset(OffsetPaging),
        /// The next cursor is at JSON pointer `cursor`, sent back as
        /// `cursor_param` (default `cursor`); the end is when it is
        /// absent/null/empty.
        "cursor" => Cursor(CursorPaging),
    }
}

/// `kind = "link_header"`: the keys every paged kind takes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageLimits {
    /// JSON pointer to the total number of records (`/total`).
    pub total: Option<String>,
    /// Refuse to read more pages than this (default 10000).
    pub max_pages: Option<u32>,
}

/// `kind = "next_link"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextLinkPaging {
    /// JSON pointer to the next page's URL (`/links/next`).
    pub next: String,
    pub total: Option<String>,
    pub max_pages: Option<u32>,
}

/// `kind = "page"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagePaging {
    /// The page number parameter.
    pub page_param: Option<String>,
    /// The page size parameter.
    pub size_param: Option<String>,
    /// Records per page asked for.
    pub size: Option<u32>,
    /// Number of the first page, 0 or 1.
    pub start: Option<u64>,
    pub total: Option<String>,
    pub max_pages: Option<u32>,
}

/// `kind = "offset"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetPaging {
    /// The offset parameter.
    pub offset_param: Option<String>,
    /// The limit parameter.
    pub limit_param: Option<String>,
    /// Records per page asked for.
    pub limit: Option<u32>,
    pub total: Option<String>,
    pub max_pages: Option<u32>,
}

/// `kind = "cursor"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CursorPaging {
    /// JSON pointer to the next cursor (`/meta/nextCursor`).
    pub cursor: String,
    /// The parameter the cursor is sent as.
    pub cursor_param: Option<String>,
    pub total: Option<String>,
    pub max_pages: Option<u32>,
}

/// `[sources.retry]`: 429, 5xx, timeouts and connection errors are retried with
/// exponential backoff (`Retry-After` honoured, capped by `max_backoff_secs`);
/// other 4xx fail at once. A page that still fails fails the run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    /// Attempts per request, the first included (default 4).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait before the second attempt; doubles each time (default 500 ms).
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest wait between attempts, `Retry-After` included (default 30 s).
    #[serde(default = "default_max_backoff_secs")]
    pub max_backoff_secs: u64,
}

impl Default for RetrySection {
    fn default() -> Self {
        Self {
            attempts: default_attempts(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_secs: default_max_backoff_secs(),
        }
    }
}

fn default_attempts() -> u32 {
    4
}
fn default_initial_backoff_ms() -> u64 {
    500
}
fn default_max_backoff_secs() -> u64 {
    30
}
fn default_timeout_secs() -> u64 {
    30
}
fn default_delimiter() -> String {
    ",".into()
}
fn default_encoding() -> String {
    "utf-8".into()
}

/// The keys of a `kind = "http"` source (besides the shared ones): a REST/JSON
/// API read page by page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// The first page: `https://...`. Plain `http://` only to a loopback address
    /// (127.0.0.1, ::1, localhost) or with `allow_insecure_http = true`. No
    /// credentials in the URL: use `[sources.auth]`.
    pub url: String,
    /// Allow `http://` to other hosts (credentials would cross the network in
    /// clear; avoid).
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// `GET` (default) or `POST`.
    pub method: Option<String>,
    /// POST: a JSON body, written as a TOML table (e.g. a custom report's field
    /// list).
    pub body: Option<toml::Value>,
    /// JSON pointer to the record array in each page (`/employees`); `""`
    /// (default): the body is the array.
    #[serde(default)]
    pub records: String,
    pub auth: Option<Tagged<AuthSection>>,
    /// Extra query parameters sent with every request (`{ onlyCurrent = false }`).
    #[serde(default)]
    pub query: BTreeMap<String, toml::Value>,
    /// Extra request headers (`Accept: application/json` is sent unless set here).
    /// Not for secrets: use `[sources.auth]`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Per-request timeout, seconds (default 30).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    #[serde(default)]
    pub pagination: Tagged<PaginationSection>,
    #[serde(default)]
    pub retry: RetrySection,
    /// The record's stable id (JSON pointer or table spec), e.g. `"/id"`.
    pub join_key: FieldSpec,
    pub fields: FieldsSection,
}

/// The keys of a `kind = "csv"` source (besides the shared ones): an export with
/// a header row, from a file or an https URL.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSection {
    /// The file; a relative path is relative to the config file's directory.
    pub path: Option<PathBuf>,
    /// ... or an `https://` URL (same rules as for http sources).
    pub url: Option<String>,
    /// url: allow `http://` to non-loopback hosts.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// url: authentication, as for http sources.
    pub auth: Option<Tagged<AuthSection>>,
    /// url: extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// url: request timeout, seconds (default 30).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// url: retries, as for http sources.
    #[serde(default)]
    pub retry: RetrySection,
    /// One character (default `,`); `"\t"` for tab-separated files.
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// `utf-8` (default), `windows-1252` / `latin1`, `utf-16le`, ... (WHATWG
    /// labels). A byte-order mark wins over this setting.
    #[serde(default = "default_encoding")]
    pub encoding: String,
    /// The column holding the record's stable id, e.g. `"Employee ID"`.
    pub join_key: FieldSpec,
    pub fields: FieldsSection,
}

/// How selectors are written for a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sel {
    Pointer,
    Column,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    Text,
    Date,
    Positions,
    Role,
    BusinessUnit,
}

/// Why a selector or a date format cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("`{0}` is not a JSON pointer (RFC 6901): it starts with `/`, e.g. `/{0}`")]
    NoLeadingSlash(String),
    #[error(
        "`{0}` is not a JSON pointer (RFC 6901): `~` must be followed by 0 or 1 (`~0` is ~, `~1` is /)"
    )]
    BadEscape(String),
    #[error("the empty pointer is the whole record; point at a value, e.g. `/id`")]
    WholeRecord,
    #[error("name a column")]
    NoColumn,
    #[error("`{0}` is not a valid date format (chrono strftime, e.g. %Y-%m-%d, %m/%d/%Y)")]
    BadDateFormat(String),
    #[error(
        "`{0}` does not read a full date: it needs year, month and day (e.g. %Y-%m-%d, %m/%d/%Y, %d.%m.%Y)"
    )]
    PartialDate(String),
}

/// Checks RFC 6901 syntax: empty (the whole document) or `/`-separated tokens
/// with `~` only in `~0` / `~1`.
pub fn check_pointer(p: &str) -> Result<(), SelectorError> {
    if p.is_empty() {
        return Ok(());
    }
    if !p.starts_with('/') {
        return Err(SelectorError::NoLeadingSlash(p.to_string()));
    }
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(SelectorError::BadEscape(p.to_string()));
        }
    }
    Ok(())
}

/// Checks that a chrono format reads a full date back.
pub fn check_date_format(f: &str) -> Result<(), SelectorError> {
    use chrono::format::{Item, StrftimeItems};
    use std::fmt::Write;
    if StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
        return Err(SelectorError::BadDateFormat(f.to_string()));
    }
    let sample = chrono::NaiveDate::from_ymd_opt(2024, 11, 28).unwrap_or_default();
    let mut s = String::new();
    if write!(s, "{}", sample.format(f)).is_err()
        || chrono::NaiveDate::parse_from_str(&s, f).ok() != Some(sample)
    {
        return Err(SelectorError::PartialDate(f.to_string()));
    }
    Ok(())
}

fn check_selector(sel: Sel, s: &str) -> Result<(), SelectorError> {
    match sel {
        Sel::Pointer if s.is_empty() => Err(SelectorError::WholeRecord),
        Sel::Pointer => check_pointer(s),
        Sel::Column if s.trim().is_empty() => Err(SelectorError::NoColumn),
        Sel::Column => Ok(()),
    }
}

/// Long on purpose: one check per key, in the order the keys are documented,
/// each error naming its key; split up, the key list would be spread over
/// functions without any check getting simpler.
fn field_rule(
    ctx: &SourceCtx<'_>,
    sel: Sel,
    key: &str,
    spec: FieldSpec,
    kind: FieldKind,
) -> Result<(FieldRule, Option<String>), ConfigError> {
    let err = |k: &str, m: String| ctx.err(k, m);
    let t = match spec {
        FieldSpec::From(s) => FieldTable {
            from: Some(s),
            ..Default::default()
        },
        FieldSpec::Table(t) => t,
    };
    let from = match (t.from, t.join) {
        (Some(f), None) => {
            check_selector(sel, &f).map_err(|m| err(&format!("{key}.from"), m.to_string()))?;
            vec![f]
        }
        (None, Some(parts)) => {
            if parts.is_empty() {
                return Err(err(
                    &format!("{key}.join"),
                    "list at least one place".into(),
                ));
            }
            for (i, p) in parts.iter().enumerate() {
                check_selector(sel, p)
                    .map_err(|m| err(&format!("{key}.join[{i}]"), m.to_string()))?;
            }
            parts
        }
        (Some(_), Some(_)) => {
            return Err(err(key, "set `from` or `join`, not both".into()));
        }
        (None, None) => return Err(err(key, "set `from` (or `join`)".into())),
    };
    if t.separator.is_some() && from.len() < 2 {
        return Err(err(
            &format!("{key}.separator"),
            "only applies with `join`".into(),
        ));
    }
    let transforms = t
        .transform
        .iter()
        .enumerate()
        .map(|(i, name)| {
            Transform::parse(name).ok_or_else(|| {
                err(
                    &format!("{key}.transform[{i}]"),
                    format!("unknown transform `{name}`; use {}", Transform::NAMES),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if t.format.is_some() && kind != FieldKind::Date {
        return Err(err(
            &format!("{key}.format"),
            "only applies to hire_date and termination_date".into(),
        ));
    }
    if t.split.is_some() && kind != FieldKind::Positions {
        return Err(err(
            &format!("{key}.split"),
            "only applies to positions".into(),
        ));
    }
    if let Some(s) = &t.split
        && s.is_empty()
    {
        return Err(err(&format!("{key}.split"), "must not be empty".into()));
    }
    if kind == FieldKind::Date {
        if t.map.is_some() {
            return Err(err(&format!("{key}.map"), "dates take no value map".into()));
        }
        if t.default.is_some() {
            return Err(err(
                &format!("{key}.default"),
                "dates take no default".into(),
            ));
        }
    }
    let format = match kind {
        FieldKind::Date => {
            let f = t.format.unwrap_or_else(|| "%Y-%m-%d".into());
            check_date_format(&f).map_err(|m| err(&format!("{key}.format"), m.to_string()))?;
            Some(f)
        }
        _ => None,
    };
    // Catalog names in map values and the default, in their catalog spelling.
    let catalog_name = |k: &str, v: &str| -> Result<String, ConfigError> {
        if v.is_empty() {
            return Ok(String::new());
        }
        match kind {
            FieldKind::Positions => ctx.check_position(k, v).map(|()| {
                ctx.catalog
                    .position(v)
                    .map(|p| p.name.clone())
                    .unwrap_or_default()
            }),
            FieldKind::Role => ctx.check_role(k, v).map(|()| {
                ctx.catalog
                    .role(v)
                    .map(|p| p.name.clone())
                    .unwrap_or_default()
            }),
            FieldKind::BusinessUnit => ctx.check_business_unit(k, v).map(|()| {
                ctx.catalog
                    .business_unit(v)
                    .map(|p| p.name.clone())
                    .unwrap_or_default()
            }),
            FieldKind::Text | FieldKind::Date => Ok(v.to_string()),
        }
    };
    let map = match t.map {
        None => None,
        Some(m) => {
            let mut out: Vec<(String, String)> = Vec::new();
            for (from_value, to) in m {
                let k = format!("{key}.map.\"{from_value}\"");
                let lower = from_value.trim().to_lowercase();
                if out.iter().any(|(o, _)| *o == lower) {
                    return Err(err(
                        &k,
                        "appears twice (keys compare case-insensitively)".into(),
                    ));
                }
                out.push((lower, catalog_name(&k, &to)?));
            }
            Some(out)
        }
    };
    let default = match t.default {
        None => None,
        Some(d) => Some(catalog_name(&format!("{key}.default"), &d)?),
    };
    Ok((
        FieldRule {
            name: key.to_string(),
            from,
            separator: t.separator.unwrap_or_else(|| " ".into()),
            transforms,
            map,
            default,
            split: t.split,
        },
        format,
    ))
}

/// Validates the mapping shared by both kinds.
/// Long on purpose: one check per key, in the order the keys are documented,
/// each error naming its key; split up, the key list would be spread over
/// functions without any check getting simpler.
fn mapping(
    ctx: &SourceCtx<'_>,
    sel: Sel,
    join_key: FieldSpec,
    f: FieldsSection,
) -> Result<HrMapping, ConfigError> {
    let text = |key: &str, spec: Option<FieldSpec>| -> Result<Option<FieldRule>, ConfigError> {
        spec.map(|s| field_rule(ctx, sel, key, s, FieldKind::Text).map(|(r, _)| r))
            .transpose()
    };
    let date = |key: &str, spec: Option<FieldSpec>| -> Result<Option<DateRule>, ConfigError> {
        spec.map(|s| {
            field_rule(ctx, sel, key, s, FieldKind::Date).map(|(rule, format)| DateRule {
                rule,
                format: format.unwrap_or_default(),
            })
        })
        .transpose()
    };
    let (join_key, _) = field_rule(ctx, sel, "join_key", join_key, FieldKind::Text)?;
    let email = f.email.ok_or_else(|| {
        ctx.err(
            "fields.email",
            match sel {
                Sel::Pointer => {
                    "every profile needs an email: map it (e.g. email = \"/workEmail\")"
                }
                Sel::Column => "every profile needs an email: map it (e.g. email = \"Work Email\")",
            },
        )
    })?;
    let (email, _) = field_rule(ctx, sel, "fields.email", email, FieldKind::Text)?;
    let status = match f.status {
        None => None,
        Some(s) => {
            let (rule, _) = field_rule(
                ctx,
                sel,
                "fields.status",
                FieldSpec::Table(FieldTable {
                    from: Some(s.from),
                    transform: s.transform,
                    ..Default::default()
                }),
                FieldKind::Text,
            )?;
            if s.active.is_empty() && s.inactive.is_empty() {
                return Err(ctx.err(
                    "fields.status",
                    "list the values meaning `inactive` (and/or `active`)",
                ));
            }
            let lower = |v: Vec<String>| v.iter().map(|s| s.trim().to_lowercase()).collect();
            let (active, inactive): (Vec<String>, Vec<String>) =
                (lower(s.active), lower(s.inactive));
            if let Some(v) = active.iter().find(|v| inactive.contains(v)) {
                return Err(ctx.err(
                    "fields.status",
                    format!("`{v}` is in both active and inactive"),
                ));
            }
            Some(StatusRule {
                rule,
                active,
                inactive,
            })
        }
    };
    let catalog_field = |key: &str, spec: Option<FieldSpec>, kind: FieldKind| {
        spec.map(|s| field_rule(ctx, sel, key, s, kind).map(|(r, _)| r))
            .transpose()
    };
    let positions = catalog_field("fields.positions", f.positions, FieldKind::Positions)?;
    let role = catalog_field("fields.role", f.role, FieldKind::Role)?;
    let business_unit = catalog_field(
        "fields.business_unit",
        f.business_unit,
        FieldKind::BusinessUnit,
    )?;
    let default_role = match f.default_role {
        None => None,
        Some(r) => {
            ctx.check_role("fields.default_role", &r)?;
            ctx.catalog.role(&r).map(|d| d.name.clone())
        }
    };
    if role.is_some() && default_role.is_none() && ctx.catalog.default_role().is_none() {
        return Err(ctx.err(
            "fields.default_role",
            "set a default role here or catalog.default_role: records with an unknown role need one",
        ));
    }
    if f.office_phone_extension.is_some() && f.office_phone.is_none() {
        return Err(ctx.err(
            "fields.office_phone_extension",
            "map fields.office_phone too: an extension needs a number",
        ));
    }
    Ok(Rules {
        join_key,
        email,
        given_name: text("fields.given_name", f.given_name)?,
        family_name: text("fields.family_name", f.family_name)?,
        display_name: text("fields.display_name", f.display_name)?,
        username: text("fields.username", f.username)?,
        mobile_phone: text("fields.mobile_phone", f.mobile_phone)?,
        office_phone: text("fields.office_phone", f.office_phone)?,
        office_phone_extension: text("fields.office_phone_extension", f.office_phone_extension)?,
        photo_url: text("fields.photo_url", f.photo_url)?,
        employee_number: text("fields.employee_number", f.employee_number)?,
        manager: text("fields.manager", f.manager)?,
        hire_date: date("fields.hire_date", f.hire_date)?,
        termination_date: date("fields.termination_date", f.termination_date)?,
        status,
        positions,
        role,
        default_role,
        business_unit,
        catalog: CatalogNames {
            positions: ctx.catalog.positions().map(|p| p.name.clone()).collect(),
            roles: ctx.catalog.roles().map(|p| p.name.clone()).collect(),
            business_units: ctx
                .catalog
                .business_units()
                .map(|p| p.name.clone())
                .collect(),
            default_role: ctx.catalog.default_role().map(str::to_string),
        },
    }
    .into())
}

fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn check_url(
    ctx: &SourceCtx<'_>,
    raw: &str,
    allow_insecure_http: bool,
) -> Result<url::Url, ConfigError> {
    let err = |m: String| ctx.err("url", m);
    let mut u = url::Url::parse(raw).map_err(|e| err(format!("`{raw}` is not a URL: {e}")))?;
    match u.scheme() {
        "https" => {}
        "http" if allow_insecure_http || is_loopback(&u) => {}
        "http" => {
            return Err(err(
                "use https: plain http is allowed only to a loopback address, or with allow_insecure_http = true".into(),
            ));
        }
        other => return Err(err(format!("`{other}:` URLs are not supported; use https"))),
    }
    if u.host().is_none() {
        return Err(err("the URL has no host".into()));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(err(
            "do not put credentials in the URL; use [sources.auth]".into()
        ));
    }
    u.set_fragment(None);
    Ok(u)
}

/// Reads `<name>_file` / `<name>_env` (`name` is `auth.token`, ...), naming the
/// right keys in errors.
fn secret(
    ctx: &SourceCtx<'_>,
    name: &str,
    file: Option<&Path>,
    env_name: Option<&str>,
) -> Result<Option<SecretRef>, ConfigError> {
    if file.is_none() && env_name.is_none() {
        return Ok(None);
    }
    let leaf = name.rsplit('.').next().unwrap_or(name);
    let value =
        read_secret(ctx.file, &ctx.key(name), file, env_name, ctx.env).map_err(|mut ce| {
            ce.key = ce
                .key
                .replace(&format!("{name}.token_"), &format!("{name}_"));
            ce.message = ce
                .message
                .replace("token_", &format!("{leaf}_"))
                .replace("the token", &format!("the {leaf}"));
            ce
        })?;
    Ok(Some(SecretRef {
        value,
        file: file.map(|f| credential_path(f, ctx.env)),
    }))
}

/// The token of a bearer, header or query auth, from its file or variable.
fn token(
    ctx: &SourceCtx<'_>,
    file: Option<&Path>,
    env_name: Option<&str>,
) -> Result<SecretRef, ConfigError> {
    secret(ctx, "auth.token", file, env_name)?.ok_or_else(|| {
        ctx.err(
            "auth",
            "set token_file (a file holding the token) or token_env (an environment variable)",
        )
    })
}

/// A basic auth's `<name>` (not secret) or `<name>_file` / `<name>_env`, at
/// most one of them.
fn basic_part(
    ctx: &SourceCtx<'_>,
    name: &str,
    literal: Option<String>,
    file: Option<&Path>,
    env_name: Option<&str>,
) -> Result<Option<SecretRef>, ConfigError> {
    let key = format!("auth.{name}");
    match (literal, secret(ctx, &key, file, env_name)?) {
        (Some(v), None) => Ok(Some(SecretRef {
            value: Secret::new(v),
            file: None,
        })),
        (None, s) => Ok(s),
        (Some(_), Some(_)) => Err(ctx.err(
            &key,
            format!("set {name}, or {name}_file / {name}_env, not both"),
        )),
    }
}

/// `[sources.auth]`: which keys apply to which kind is in the types
/// ([`AuthSection`]); here the secrets are read and the names checked.
fn auth(ctx: &SourceCtx<'_>, a: AuthSection) -> Result<Auth, ConfigError> {
    match a {
        AuthSection::Bearer(t) => Ok(Auth::Bearer(token(
            ctx,
            t.token_file.as_deref(),
            t.token_env.as_deref(),
        )?)),
        AuthSection::Basic(b) => {
            let username = basic_part(
                ctx,
                "username",
                b.username,
                b.username_file.as_deref(),
                b.username_env.as_deref(),
            )?
            .ok_or_else(|| {
                ctx.err(
                    "auth.username",
                    "basic auth needs a username (or username_file / username_env)",
                )
            })?;
            let password = basic_part(
                ctx,
                "password",
                b.password,
                b.password_file.as_deref(),
                b.password_env.as_deref(),
            )?;
            Ok(Auth::Basic { username, password })
        }
        AuthSection::Header(h) => {
            let name =
                reqwest::header::HeaderName::from_bytes(h.header.as_bytes()).map_err(|_| {
                    ctx.err(
                        "auth.header",
                        format!("`{}` is not a header name, e.g. X-API-Key", h.header),
                    )
                })?;
            Ok(Auth::Header {
                name,
                prefix: h.prefix.unwrap_or_default(),
                token: token(ctx, h.token_file.as_deref(), h.token_env.as_deref())?,
            })
        }
        AuthSection::Query(q) => {
            if q.param.is_empty() {
                return Err(ctx.err("auth.param", "name the query parameter, e.g. api_key"));
            }
            Ok(Auth::Query {
                param: q.param,
                token: token(ctx, q.token_file.as_deref(), q.token_env.as_deref())?,
            })
        }
    }
}

fn headers(
    ctx: &SourceCtx<'_>,
    h: BTreeMap<String, String>,
) -> Result<Vec<(reqwest::header::HeaderName, Secret)>, ConfigError> {
    h.into_iter()
        .map(|(k, v)| {
            let key = format!("headers.{k}");
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| ctx.err(&key, format!("`{k}` is not a header name")))?;
            reqwest::header::HeaderValue::from_str(&v)
                .map_err(|_| ctx.err(&key, "not a valid header value"))?;
            Ok((name, Secret::new(v)))
        })
        .collect()
}

fn retry(ctx: &SourceCtx<'_>, r: RetrySection) -> Result<Retry, ConfigError> {
    if !(1..=20).contains(&r.attempts) {
        return Err(ctx.err("retry.attempts", "use 1 to 20"));
    }
    if r.max_backoff_secs == 0 {
        return Err(ctx.err("retry.max_backoff_secs", "must be at least 1"));
    }
    Ok(Retry {
        attempts: r.attempts,
        initial_backoff: Duration::from_millis(r.initial_backoff_ms),
        max_backoff: Duration::from_secs(r.max_backoff_secs),
    })
}

fn timeout(ctx: &SourceCtx<'_>, secs: u64) -> Result<Duration, ConfigError> {
    if secs == 0 {
        return Err(ctx.err("timeout_secs", "must be at least 1"));
    }
    Ok(Duration::from_secs(secs))
}

/// `[sources.pagination]`: which keys apply to which kind is in the types
/// ([`PaginationSection`]); here the values are checked and defaulted.
fn pagination(ctx: &SourceCtx<'_>, p: PaginationSection) -> Result<Pagination, ConfigError> {
    let pointer = |k: &str, v: &str| -> Result<(), ConfigError> {
        if v.is_empty() {
            return Err(ctx.err(&format!("pagination.{k}"), "point at a value, e.g. /total"));
        }
        check_pointer(v).map_err(|m| ctx.err(&format!("pagination.{k}"), m.to_string()))
    };
    let param = |k: &str, v: Option<String>, default: &str| -> Result<String, ConfigError> {
        let v = v.unwrap_or_else(|| default.to_string());
        if v.is_empty() {
            return Err(ctx.err(&format!("pagination.{k}"), "must not be empty"));
        }
        Ok(v)
    };
    let positive = |k: &str, v: Option<u32>| -> Result<u32, ConfigError> {
        match v.unwrap_or(100) {
            0 => Err(ctx.err(&format!("pagination.{k}"), "must be at least 1")),
            n => Ok(n),
        }
    };
    let (paging, limits) = match p {
        PaginationSection::None(NoKeys {}) => (Paging::None, PageLimits::default()),
        PaginationSection::NextLink(n) => {
            pointer("next", &n.next)?;
            let limits = PageLimits {
                total: n.total,
                max_pages: n.max_pages,
            };
            (Paging::NextLink { next: n.next }, limits)
        }
        PaginationSection::LinkHeader(limits) => (Paging::LinkHeader, limits),
        PaginationSection::Page(p) => {
            let start = p.start.unwrap_or(1);
            if start > 1 {
                return Err(ctx.err("pagination.start", "the first page is 0 or 1"));
            }
            let paging = Paging::Page {
                page_param: param("page_param", p.page_param, "page")?,
                size_param: Some(p.size_param.unwrap_or_else(|| "per_page".into()))
                    .filter(|s| !s.is_empty()),
                size: positive("size", p.size)?,
                start,
            };
            let limits = PageLimits {
                total: p.total,
                max_pages: p.max_pages,
            };
            (paging, limits)
        }
        PaginationSection::Offset(o) => {
            let paging = Paging::Offset {
                offset_param: param("offset_param", o.offset_param, "offset")?,
                limit_param: param("limit_param", o.limit_param, "limit")?,
                limit: positive("limit", o.limit)?,
            };
            let limits = PageLimits {
                total: o.total,
                max_pages: o.max_pages,
            };
            (paging, limits)
        }
        PaginationSection::Cursor(c) => {
            pointer("cursor", &c.cursor)?;
            let paging = Paging::Cursor {
                cursor: c.cursor,
                cursor_param: param("cursor_param", c.cursor_param, "cursor")?,
            };
            let limits = PageLimits {
                total: c.total,
                max_pages: c.max_pages,
            };
            (paging, limits)
        }
    };
    if let Some(t) = &limits.total {
        pointer("total", t)?;
    }
    let max_pages = limits.max_pages.unwrap_or(10_000);
    if max_pages == 0 {
        return Err(ctx.err("pagination.max_pages", "must be at least 1"));
    }
    Ok(Pagination {
        paging,
        total: limits.total,
        max_pages,
    })
}

pub fn validate_http(ctx: &SourceCtx<'_>, s: HttpSection) -> Result<HttpSource, ConfigError> {
    let url = check_url(ctx, &s.url, s.allow_insecure_http)?;
    let method = match s.method.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("GET") => reqwest::Method::GET,
        Some("POST") => reqwest::Method::POST,
        Some(other) => return Err(ctx.err("method", format!("`{other}`: use GET or POST"))),
    };
    let body = match s.body {
        None => None,
        Some(_) if method == reqwest::Method::GET => {
            return Err(ctx.err("body", "a body is sent with method = \"POST\" only"));
        }
        Some(b) => Some(
            serde_json::to_value(&b)
                .map_err(|e| ctx.err("body", format!("cannot be written as JSON: {e}")))?,
        ),
    };
    check_pointer(&s.records).map_err(|m| ctx.err("records", m.to_string()))?;
    let mut query = Vec::new();
    for (k, v) in s.query {
        let v = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(ctx.err(&format!("query.{k}"), "use a string, number or boolean"));
            }
        };
        query.push((k, v));
    }
    let pagination = pagination(ctx, ctx.tagged("pagination", s.pagination)?)?;
    let request = RequestSpec {
        url,
        method,
        body,
        query,
        headers: headers(ctx, s.headers)?,
        auth: s
            .auth
            .map(|a| auth(ctx, ctx.tagged("auth", a)?))
            .transpose()?,
        timeout: timeout(ctx, s.timeout_secs)?,
        retry: retry(ctx, s.retry)?,
    };
    let mapping = mapping(ctx, Sel::Pointer, s.join_key, s.fields)?;
    Ok(HttpSource {
        mapping,
        request,
        records: s.records,
        pagination,
    })
}

pub fn validate_csv(ctx: &SourceCtx<'_>, s: CsvSection) -> Result<CsvSource, ConfigError> {
    let input = match (s.path, s.url) {
        (Some(p), None) => {
            for (k, set) in [
                ("auth", s.auth.is_some()),
                ("headers", !s.headers.is_empty()),
                ("allow_insecure_http", s.allow_insecure_http),
            ] {
                if set {
                    return Err(ctx.err(k, "applies to `url` only"));
                }
            }
            let dir = ctx.file.parent().unwrap_or(Path::new(""));
            CsvInput::File(dir.join(p))
        }
        (None, Some(u)) => CsvInput::Url(Box::new(RequestSpec {
            url: check_url(ctx, &u, s.allow_insecure_http)?,
            method: reqwest::Method::GET,
            body: None,
            query: Vec::new(),
            headers: headers(ctx, s.headers)?,
            auth: s
                .auth
                .map(|a| auth(ctx, ctx.tagged("auth", a)?))
                .transpose()?,
            timeout: timeout(ctx, s.timeout_secs)?,
            retry: retry(ctx, s.retry)?,
        })),
        (Some(_), Some(_)) => return Err(ctx.err("path", "set `path` or `url`, not both")),
        (None, None) => {
            return Err(ctx.err(
                "path",
                "set `path` (a file) or `url` (https) to read the export from",
            ));
        }
    };
    let delimiter = match s.delimiter.as_bytes() {
        [b] if b.is_ascii() && !matches!(b, b'"' | b'\n' | b'\r') => *b,
        _ => {
            return Err(ctx.err(
                "delimiter",
                format!(
                    "`{}`: use one ASCII character, e.g. \",\", \";\" or \"\\t\"",
                    s.delimiter
                ),
            ));
        }
    };
    let encoding = encoding_rs::Encoding::for_label(s.encoding.trim().as_bytes()).ok_or_else(|| {
        ctx.err(
            "encoding",
            format!(
                "`{}` is not an encoding; use utf-8, windows-1252 (latin1), iso-8859-15, utf-16le, ...",
                s.encoding
            ),
        )
    })?;
    let mapping = mapping(ctx, Sel::Column, s.join_key, s.fields)?;
    Ok(CsvSource {
        mapping,
        input,
        delimiter,
        encoding,
    })
}
