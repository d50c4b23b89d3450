//! The LDAP edge: bind, paged search of people, group search (nested groups and
//! Active Directory's ranged `member` values), the disabled filter. Returns plain
//! [`Entry`] values; everything after this is pure.
//!
//! A fetch is all-or-nothing: any LDAP error, a non-success result (OpenLDAP's
//! size limit answers with result code 4 and a truncated list), or a paged search
//! that ends without its final empty cookie fails the whole fetch.
//!
//! Incremental runs ask only for changes: with RFC 4533 content sync (refreshOnly,
//! from the cookie stored after the last applied run) where the server offers it,
//! else with `attributes.modified` at or past the high-water mark. See [`fetch`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ldap3::adapters::EntriesOnly;
use ldap3::controls::{
    ControlType, EntryState, MakeCritical, PagedResults as PagedControl, RefreshMode, SyncDone,
    SyncInfo, SyncRequest, SyncState,
};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, ResultEntry, Scope, SearchEntry};

use crate::sync::config::{Disabled, Incremental, LdapSource};
use crate::sync::map::wanted_attributes;
use crate::sync::runs::FetchMode;
use crate::sync::{Entry, RunKind, normalize_dn};

/// The Sync Request control's OID, as root DSEs list it in `supportedControl`.
pub const SYNC_REQUEST_OID: &str = "1.3.6.1.4.1.4203.1.9.1.1";

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("bind as {dn} failed: {message}")]
    Bind { dn: String, message: String },
    #[error("{what} failed: {message}")]
    Search { what: String, message: String },
    #[error("{what} is incomplete: {message}; nobody is deactivated")]
    Truncated { what: String, message: String },
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// Where an incremental run starts: what the last applied run left.
#[derive(Debug, Clone, Copy, Default)]
pub struct Resume<'a> {
    /// The high-water mark of `attributes.modified`.
    pub mark: Option<&'a str>,
    /// The content-sync cookie.
    pub cookie: Option<&'a [u8]>,
}

/// What becomes of the stored content-sync cookie once the run is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieUpdate {
    /// The server said nothing new (no change since the cookie).
    Keep,
    Set(Vec<u8>),
    /// Content sync is not in use, or the server gave no usable cookie.
    Drop,
}

/// What a fetch returns.
#[derive(Debug)]
pub struct Fetched {
    pub entries: Vec<Entry>,
    /// Highest modification timestamp among the entries.
    pub high_water_mark: Option<String>,
    /// How the people were asked for.
    pub mode: FetchMode,
    /// The cookie to store, only once the run's plan has been applied.
    pub cookie: CookieUpdate,
    /// Something the run's record should say (a cookie the server refused...).
    pub note: Option<String>,
}

fn tls_config(src: &LdapSource) -> Result<Option<Arc<rustls::ClientConfig>>, FetchError> {
    let Some(ca) = &src.ca_file else {
        return Ok(None);
    };
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| FetchError::Tls(format!("cannot read ca_file {}: {e}", ca.display())))?;
    for c in certs {
        let c =
            c.map_err(|e| FetchError::Tls(format!("bad certificate in {}: {e}", ca.display())))?;
        roots.add(c).map_err(|e| {
            FetchError::Tls(format!("unusable certificate in {}: {e}", ca.display()))
        })?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FetchError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Arc::new(cfg)))
}

async fn connect(src: &LdapSource) -> Result<Ldap, FetchError> {
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(src.timeout)
        .set_starttls(src.starttls)
        .set_no_tls_verify(src.tls_insecure_skip_verify);
    if let Some(cfg) = tls_config(src)? {
        settings = settings.set_config(cfg);
    }
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &src.url)
        .await
        .map_err(|e| FetchError::Connect {
            url: src.url.clone(),
            message: e.to_string(),
        })?;
    ldap3::drive!(conn);
    if let Some(dn) = &src.bind_dn {
        let pw = src.bind_password.as_ref().map(|p| p.expose()).unwrap_or("");
        ldap.with_timeout(src.timeout)
            .simple_bind(dn, pw)
            .await
            .and_then(|r| r.success())
            .map_err(|e| FetchError::Bind {
                dn: dn.clone(),
                // ldap3's errors carry the server's text, never the password.
                message: e.to_string(),
            })?;
    }
    Ok(ldap)
}

/// One search: what it is for (in messages), where, and how.
struct Query<'a> {
    what: &'a str,
    base: &'a str,
    scope: Scope,
    filter: &'a str,
    attrs: Vec<String>,
    /// RFC 2696 page size; 0 for an unpaged search.
    page_size: u32,
}

/// Runs one search to the end and returns its entries, each passed through
/// `convert` as it arrives (so that the conversion overlaps with the server and
/// the connection's decoding), failing on any error, non-success result, or a
/// page that ends without a paging control. Pages are requested by hand (not
/// with ldap3's adapter) so that a missing final cookie is seen rather than taken
/// for the end.
async fn search_all<T>(
    ldap: &mut Ldap,
    src: &LdapSource,
    q: Query<'_>,
    mut convert: impl FnMut(ResultEntry) -> Result<T, Unreadable>,
) -> Result<Vec<T>, FetchError> {
    let fail = |m: String| FetchError::Search {
        what: q.what.to_string(),
        message: m,
    };
    let truncated = |m: String| FetchError::Truncated {
        what: q.what.to_string(),
        message: m,
    };
    let mut out = Vec::new();
    let mut cookie: Vec<u8> = Vec::new();
    loop {
        let mut op = ldap.with_timeout(src.timeout);
        if q.page_size > 0 {
            op = op.with_controls(PagedControl {
                size: q.page_size as i32,
                cookie: cookie.clone(),
            });
        }
        let mut stream = op
            .streaming_search_with(
                EntriesOnly::new(),
                q.base,
                q.scope,
                q.filter,
                q.attrs.clone(),
            )
            .await
            .map_err(|e| fail(e.to_string()))?;
        loop {
            match stream.next().await {
                Ok(Some(re)) => match convert(re) {
                    Ok(t) => out.push(t),
                    Err(m) => {
                        let _ = stream.finish().await;
                        return Err(fail(m.to_string()));
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    let _ = stream.finish().await;
                    return Err(fail(e.to_string()));
                }
            }
        }
        let res = stream.finish().await;
        if res.rc != 0 {
            let name = match res.rc {
                3 => "timeLimitExceeded",
                4 => "sizeLimitExceeded",
                11 => "adminLimitExceeded",
                _ => "error",
            };
            let text = if res.text.is_empty() {
                String::new()
            } else {
                format!(": {}", res.text)
            };
            return Err(truncated(format!(
                "the server answered result code {} ({name}{text}) after {} entries",
                res.rc,
                out.len()
            )));
        }
        if q.page_size == 0 {
            return Ok(out);
        }
        let next = res.ctrls.iter().find_map(|c| match c {
            ldap3::controls::Control(Some(ControlType::PagedResults), raw) => {
                Some(raw.parse::<PagedControl>().cookie)
            }
            _ => None,
        });
        match next {
            None => {
                return Err(truncated(format!(
                    "a page ended without its paging cookie after {} entries",
                    out.len()
                )));
            }
            Some(c) if c.is_empty() => return Ok(out),
            Some(c) => cookie = c,
        }
    }
}

/// One search result entry, read straight from its BER form (no intermediate
/// map, no copy of the values): attribute names lowercased, text values as
/// strings. A binary join key (AD `objectGUID`) is kept as lowercase hex, the
/// photo attribute as bytes; other binary values are dropped.
fn to_entry(re: ResultEntry, src: &LdapSource) -> Result<Entry, Unreadable> {
    let bad = Unreadable::Entry;
    let mut tags =
        re.0.match_id(4)
            .and_then(|t| t.expect_constructed())
            .ok_or_else(|| bad("not an entry"))?
            .into_iter();
    let dn = tags
        .next()
        .and_then(|t| t.expect_primitive())
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| bad("its DN"))?;
    let list = tags
        .next()
        .and_then(|t| t.expect_constructed())
        .ok_or_else(|| bad("its attributes"))?;
    let mut attrs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut bin_attrs: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for a in list {
        let mut part = a
            .expect_constructed()
            .ok_or_else(|| bad("an attribute"))?
            .into_iter();
        let mut name = part
            .next()
            .and_then(|t| t.expect_primitive())
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad("an attribute name"))?;
        name.make_ascii_lowercase();
        let values = part
            .next()
            .and_then(|t| t.expect_constructed())
            .ok_or_else(|| bad("the values of an attribute"))?;
        let is_photo = src
            .attributes
            .photo
            .as_ref()
            .is_some_and(|p| name.eq_ignore_ascii_case(p));
        let binary_key = name.eq_ignore_ascii_case(&src.join_key)
            && BINARY_KEYS.iter().any(|k| name.eq_ignore_ascii_case(k));
        for v in values {
            let b = v
                .expect_primitive()
                .ok_or_else(|| bad("an attribute value"))?;
            if is_photo {
                bin_attrs.entry(name.clone()).or_default().push(b);
            } else if binary_key {
                attrs.entry(name.clone()).or_default().push(hex::encode(b));
            } else {
                match String::from_utf8(b) {
                    Ok(text) => attrs.entry(name.clone()).or_default().push(text),
                    // Any other binary join key: as lowercase hex too.
                    Err(e) if name.eq_ignore_ascii_case(&src.join_key) => attrs
                        .entry(name.clone())
                        .or_default()
                        .push(hex::encode(e.into_bytes())),
                    Err(_) => {}
                }
            }
        }
    }
    Ok(Entry {
        dn,
        attrs,
        bin_attrs,
        disabled_by_filter: false,
        groups: Vec::new(),
    })
}

/// Join keys that are always binary: hex even when the bytes happen to be
/// valid UTF-8 (which a random GUID sometimes is).
const BINARY_KEYS: [&str; 2] = ["objectGUID", "objectSid"];

/// `member;range=0-1499` → Some(("member", Some(1499))); `member;range=1500-*` →
/// Some(("member", None)). Anything else → None.
pub fn parse_range(attr: &str) -> Option<(String, Option<u64>)> {
    let (name, opts) = attr.split_once(';')?;
    let range = opts.split(';').find_map(|o| {
        o.strip_prefix("range=")
            .or_else(|| o.strip_prefix("Range="))
    })?;
    let (_, end) = range.split_once('-')?;
    if end == "*" {
        Some((name.to_lowercase(), None))
    } else {
        end.parse().ok().map(|e| (name.to_lowercase(), Some(e)))
    }
}

/// Group DN → member DNs (normalised), fetching every range of ranged values.
async fn fetch_groups(
    ldap: &mut Ldap,
    src: &LdapSource,
) -> Result<HashMap<String, Vec<String>>, FetchError> {
    let base = src
        .groups
        .base_dn
        .clone()
        .unwrap_or_else(|| src.base_dn.clone());
    let attrs = src.groups.member_attributes.clone();
    let wanted: HashSet<String> = attrs.iter().map(|a| a.to_lowercase()).collect();
    let found = search_all(
        ldap,
        src,
        Query {
            what: "group search",
            base: &base,
            scope: Scope::Subtree,
            filter: &src.groups.filter,
            attrs,
            page_size: src.page_size,
        },
        |re| Ok(SearchEntry::construct(re)),
    )
    .await?;
    let mut groups = HashMap::new();
    for g in found {
        let mut members: Vec<String> = Vec::new();
        let mut pending: Vec<(String, u64)> = Vec::new();
        for (k, vals) in &g.attrs {
            let lk = k.to_lowercase();
            if wanted.contains(&lk) {
                members.extend(vals.iter().map(|v| normalize_dn(v)));
            } else if let Some((name, end)) = parse_range(k)
                && wanted.contains(&name)
            {
                members.extend(vals.iter().map(|v| normalize_dn(v)));
                if let Some(end) = end {
                    pending.push((name, end + 1));
                }
            }
        }
        // Active Directory: fetch the remaining ranges one by one.
        while let Some((name, start)) = pending.pop() {
            let attr = format!("{name};range={start}-*");
            let more = search_all(
                ldap,
                src,
                Query {
                    what: "ranged member retrieval",
                    base: &g.dn,
                    scope: Scope::Base,
                    filter: "(objectClass=*)",
                    attrs: vec![attr],
                    page_size: 0,
                },
                |re| Ok(SearchEntry::construct(re)),
            )
            .await?;
            let mut progressed = false;
            for e in more {
                for (k, vals) in &e.attrs {
                    if let Some((n, end)) = parse_range(k)
                        && n == name
                    {
                        progressed = true;
                        members.extend(vals.iter().map(|v| normalize_dn(v)));
                        if let Some(end) = end {
                            pending.push((name.clone(), end + 1));
                        }
                    }
                }
            }
            if !progressed {
                return Err(FetchError::Truncated {
                    what: "ranged member retrieval".into(),
                    message: format!("{} returned no {name} range from {start}", g.dn),
                });
            }
        }
        groups.insert(normalize_dn(&g.dn), members);
    }
    Ok(groups)
}

/// Orders high-water marks: numerically for AD's `uSNChanged`, else as text
/// (GeneralizedTime such as `20261127212039Z` sorts as text).
pub fn mark_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// Every member DN of `group`, following nested groups (cycle-safe).
pub fn transitive_members(groups: &HashMap<String, Vec<String>>, group: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut visited = HashSet::new();
    let mut stack = vec![normalize_dn(group)];
    while let Some(g) = stack.pop() {
        if !visited.insert(g.clone()) {
            continue;
        }
        for m in groups.get(&g).into_iter().flatten() {
            if groups.contains_key(m) {
                stack.push(m.clone());
            } else {
                out.insert(m.clone());
            }
        }
    }
    out
}

/// The people of a run, and how they were asked for.
struct People {
    entries: Vec<Entry>,
    mode: FetchMode,
    cookie: CookieUpdate,
    note: Option<String>,
    /// The filter the disabled-filter search narrows (the people filter, with
    /// the high-water mark when the people were asked for by it).
    filter: String,
}

/// Fetches the source's people with group memberships and the disabled filter
/// resolved: every entry on a full run; on an incremental run, the entries changed
/// since `from`.
///
/// **Content sync** (RFC 4533, refreshOnly), when the source's `incremental`
/// setting and the server allow it (`auto`: the root DSE lists the Sync Request
/// control): an incremental run sends the stored cookie on the people search and
/// keeps the entries the server reports as added or modified. Entries reported
/// only as present, and syncIdSet messages, carry no attributes and are not
/// entries. Deletions the server reports are ignored: an incremental run never
/// deactivates, and the next full run finds who is gone. The Sync Done control's
/// cookie is returned to be stored once the run is applied (no cookie in it: the
/// server saw no change, the old one stays).
///
/// **Getting the first cookie cheaply.** A full run (and an incremental run that
/// has no cookie yet) first asks for a cookie with a content-sync search of the
/// same base and scope whose filter matches nothing (`(&<filter>(!(objectClass=*))`):
/// no entry crosses the wire, the server's cookie stands for its state at that
/// moment, and the run's own search comes after, so nothing changed in between is
/// missed (a change made during the run is fetched again next time, which is
/// harmless). The alternative, a no-cookie content sync of the real filter on
/// the first incremental run, would send every entry in one unpaged search
/// (OpenLDAP does not page content sync), which size limits refuse. A server that
/// ties cookies to the filter refuses the cookie at the next run; that run then
/// falls back (below), so it is correct, only not cheaper.
///
/// **Fallback.** When the server answers the cookie with anything but success (a
/// stale or unknown cookie: e-syncRefreshRequired 4096, OpenLDAP's "consumer
/// state is newer than provider" 53; a size or time limit), the run says so in the
/// log and its record, takes a fresh cookie, and asks for `attributes.modified`
/// at or past the high-water mark (the mark advances in every mode, so it is
/// there to fall back to) with the paged search and all its checks. A connection
/// that fails fails the run, as any fetch.
pub async fn fetch(
    src: &LdapSource,
    kind: RunKind,
    from: Resume<'_>,
) -> Result<Fetched, FetchError> {
    let mut ldap = connect(src).await?;
    let People {
        mut entries,
        mode,
        cookie,
        note,
        filter,
    } = people(&mut ldap, src, kind, from).await?;

    let rule_groups: Vec<String> = src
        .positions
        .iter()
        .map(|r| r.group.clone())
        .chain(src.roles.iter().filter_map(|r| r.group.clone()))
        .map(|g| normalize_dn(&g))
        .collect();
    if !rule_groups.is_empty() && !entries.is_empty() {
        let groups = fetch_groups(&mut ldap, src).await?;
        let closures: Vec<(String, HashSet<String>)> = rule_groups
            .iter()
            .map(|g| (g.clone(), transitive_members(&groups, g)))
            .collect();
        for e in &mut entries {
            let dn = normalize_dn(&e.dn);
            e.groups = closures
                .iter()
                .filter(|(_, members)| members.contains(&dn))
                .map(|(g, _)| g.clone())
                .collect();
        }
    }

    if let Disabled::Filter(df) = &src.disabled
        && !entries.is_empty()
    {
        let disabled_filter = format!("(&{filter}{df})");
        let disabled = search_all(
            &mut ldap,
            src,
            Query {
                what: "disabled-filter search",
                base: &src.base_dn,
                scope: src.scope,
                filter: &disabled_filter,
                attrs: vec![src.join_key.clone()],
                page_size: src.page_size,
            },
            |re| to_entry(re, src),
        )
        .await?;
        let keys: HashSet<String> = disabled
            .into_iter()
            .filter_map(|e| {
                e.attrs
                    .get(&src.join_key.to_lowercase())
                    .and_then(|v| v.first().cloned())
            })
            .collect();
        for e in &mut entries {
            if let Some(k) = e
                .attrs
                .get(&src.join_key.to_lowercase())
                .and_then(|v| v.first())
            {
                e.disabled_by_filter = keys.contains(k);
            }
        }
    }
    let _ = ldap.unbind().await;

    let high_water_mark = src.attributes.modified.as_ref().and_then(|attr| {
        entries
            .iter()
            .filter_map(|e| e.attrs.get(&attr.to_lowercase()).and_then(|v| v.first()))
            .max_by(|a, b| mark_cmp(a, b))
            .cloned()
    });
    Ok(Fetched {
        entries,
        high_water_mark,
        mode,
        cookie,
        note,
    })
}

/// The people search of a run (see [`fetch`] for the choice of method).
async fn people(
    ldap: &mut Ldap,
    src: &LdapSource,
    kind: RunKind,
    from: Resume<'_>,
) -> Result<People, FetchError> {
    let content_sync = match src.incremental {
        Incremental::Modified => false,
        Incremental::ContentSync => true,
        Incremental::Auto => offers_content_sync(ldap, src).await,
    };
    let mut note = None;
    if content_sync
        && kind == RunKind::Incremental
        && let Some(cookie) = from.cookie
    {
        match sync_refresh(ldap, src, &src.filter, wanted_attributes(src), Some(cookie)).await? {
            Ok(r) => {
                let entries = r.entries;
                tracing::info!(
                    changed = entries.len(),
                    present = r.present,
                    deleted = r.deleted,
                    "content sync: changes since the stored cookie"
                );
                return Ok(People {
                    entries,
                    mode: FetchMode::ContentSync,
                    cookie: match r.cookie {
                        None => CookieUpdate::Keep,
                        Some(c) if c.is_empty() => CookieUpdate::Drop,
                        Some(c) => CookieUpdate::Set(c),
                    },
                    note: None,
                    filter: src.filter.clone(),
                });
            }
            Err(why) => {
                let n = format!(
                    "the directory refused the stored content-sync cookie ({why}); this run asked for {} at or past the high-water mark instead and takes a fresh cookie",
                    src.attributes
                        .modified
                        .as_deref()
                        .unwrap_or("every entry: no attributes.modified")
                );
                tracing::warn!(reason = %why, "{n}");
                note = Some(n);
            }
        }
    }
    // A fresh cookie first, so that nothing changed during the search below is
    // missed by the next incremental run.
    let cookie = if content_sync {
        fresh_cookie(ldap, src).await?
    } else {
        CookieUpdate::Drop
    };
    let (filter, mode) = match (kind, from.mark, &src.attributes.modified) {
        (RunKind::Incremental, Some(mark), Some(attr)) => (
            format!("(&{}({attr}>={}))", src.filter, ldap3::ldap_escape(mark)),
            FetchMode::ModifiedSince,
        ),
        _ => (src.filter.clone(), FetchMode::All),
    };
    let entries = search_all(
        ldap,
        src,
        Query {
            what: "people search",
            base: &src.base_dn,
            scope: src.scope,
            filter: &filter,
            attrs: wanted_attributes(src),
            page_size: src.page_size,
        },
        |re| to_entry(re, src),
    )
    .await?;
    Ok(People {
        entries,
        mode,
        cookie,
        note,
        filter,
    })
}

/// Whether the root DSE lists the Sync Request control. A root DSE that cannot
/// be read counts as no.
async fn offers_content_sync(ldap: &mut Ldap, src: &LdapSource) -> bool {
    let found = search_all(
        ldap,
        src,
        Query {
            what: "root DSE read",
            base: "",
            scope: Scope::Base,
            filter: "(objectClass=*)",
            attrs: vec!["supportedControl".into()],
            page_size: 0,
        },
        |re| Ok(SearchEntry::construct(re)),
    )
    .await;
    match found {
        Ok(dses) => dses.iter().any(|dse| {
            dse.attrs
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("supportedControl"))
                .flat_map(|(_, v)| v)
                .any(|oid| oid == SYNC_REQUEST_OID)
        }),
        Err(e) => {
            tracing::debug!(error = %e, "root DSE not readable; content sync not used");
            false
        }
    }
}

/// A cookie for the server's state now, from a content-sync search that matches
/// nothing. A server that refuses it leaves the run without one (logged).
async fn fresh_cookie(ldap: &mut Ldap, src: &LdapSource) -> Result<CookieUpdate, FetchError> {
    let nothing = format!("(&{}(!(objectClass=*)))", src.filter);
    match sync_refresh(ldap, src, &nothing, vec!["1.1".into()], None).await? {
        Ok(r) => Ok(match r.cookie {
            Some(c) if !c.is_empty() => CookieUpdate::Set(c),
            _ => CookieUpdate::Drop,
        }),
        Err(why) => {
            tracing::warn!(reason = %why, "content sync refused; incremental runs use attributes.modified until it is offered");
            Ok(CookieUpdate::Drop)
        }
    }
}

/// A content-sync refresh as read from the server.
struct Refreshed {
    /// Entries added or modified since the cookie.
    entries: Vec<Entry>,
    /// The last cookie the server sent (Sync Done, else a Sync Info message).
    cookie: Option<Vec<u8>>,
    /// Entries reported present (unchanged), and reported deleted.
    present: usize,
    deleted: usize,
}

/// What the server sent that cannot be read (the search or refresh fails).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    /// The part of a search result entry that is malformed.
    #[error("the server sent a malformed search result entry ({0})")]
    Entry(&'static str),
    /// A content-sync message or control ldap3's parser refused.
    #[error("the server sent a malformed {0}")]
    Message(&'static str),
}

/// Why a content-sync refresh did not complete although the server answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Unreadable(#[from] Unreadable),
    /// `text` is `: <the server's text>` or empty.
    #[error("result code {rc}{text}")]
    Result { rc: u32, text: String },
    #[error("the search ended without a Sync Done control")]
    NoSyncDone,
}

/// Runs ldap3's parsers for the content-sync messages, which panic on malformed
/// input, so that a misbehaving server fails the refresh instead of the daemon.
fn parse_guarded<T>(what: &'static str, f: impl FnOnce() -> T) -> Result<T, Unreadable> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| Unreadable::Message(what))
}

/// One RFC 4533 refreshOnly search, read to its Sync Done control. `Err(FetchError)`:
/// the connection failed. `Ok(Err(why))`: the server answered, but not with a
/// complete refresh (a refused cookie, a limit, no Sync Done control).
async fn sync_refresh(
    ldap: &mut Ldap,
    src: &LdapSource,
    filter: &str,
    attrs: Vec<String>,
    cookie: Option<&[u8]>,
) -> Result<Result<Refreshed, RefreshError>, FetchError> {
    let fail = |m: String| FetchError::Search {
        what: "content-sync search".into(),
        message: m,
    };
    let request = SyncRequest {
        mode: RefreshMode::RefreshOnly,
        cookie: cookie.map(<[u8]>::to_vec),
        reload_hint: false,
    };
    // Critical: a server that cannot honour it must refuse rather than answer
    // as to a plain search.
    let mut stream = ldap
        .with_timeout(src.timeout)
        .with_controls(request.critical())
        .streaming_search(&src.base_dn, src.scope, filter, attrs)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut out = Refreshed {
        entries: Vec::new(),
        cookie: None,
        present: 0,
        deleted: 0,
    };
    let mut malformed: Option<Unreadable> = None;
    loop {
        let re = match stream.next().await {
            Ok(Some(re)) => re,
            Ok(None) => break,
            Err(e) => {
                let _ = stream.finish().await;
                return Err(fail(e.to_string()));
            }
        };
        // After the first unreadable message the rest is read but not used.
        if malformed.is_some() || re.is_ref() {
            continue;
        }
        if let Err(m) = out.take(re, src) {
            malformed = Some(m);
        }
    }
    let res = stream.finish().await;
    if let Some(m) = malformed {
        return Ok(Err(m.into()));
    }
    Ok(out.done(res))
}

impl Refreshed {
    /// Takes in one message of the refresh: a Sync Info message, or an entry
    /// with (or without) its Sync State control.
    fn take(&mut self, re: ResultEntry, src: &LdapSource) -> Result<(), Unreadable> {
        if re.is_intermediate() {
            let info = parse_guarded("Sync Info message", || ldap3::controls::parse_syncinfo(re))?;
            self.take_info(info);
            return Ok(());
        }
        let state = re.1.iter().find_map(|c| match c {
            ldap3::controls::Control(Some(ControlType::SyncState), raw) => Some(raw.clone()),
            _ => None,
        });
        match state.map(|raw| parse_guarded("Sync State control", || raw.parse::<SyncState>())) {
            Some(Err(m)) => return Err(m),
            Some(Ok(SyncState { state, cookie, .. })) => {
                if cookie.is_some() {
                    self.cookie = cookie;
                }
                match state {
                    EntryState::Add | EntryState::Modify => self.entries.push(to_entry(re, src)?),
                    EntryState::Present => self.present += 1,
                    EntryState::Delete => self.deleted += 1,
                }
            }
            // An entry without its Sync State control is still an entry.
            None => self.entries.push(to_entry(re, src)?),
        }
        Ok(())
    }

    fn take_info(&mut self, info: SyncInfo) {
        match info {
            SyncInfo::NewCookie(c) => self.cookie = Some(c),
            SyncInfo::RefreshDelete { cookie, .. } | SyncInfo::RefreshPresent { cookie, .. } => {
                self.cookie = cookie.or(self.cookie.take())
            }
            SyncInfo::SyncIdSet {
                cookie,
                refresh_deletes,
                sync_uuids,
            } => {
                if refresh_deletes {
                    self.deleted += sync_uuids.len();
                } else {
                    self.present += sync_uuids.len();
                }
                self.cookie = cookie.or(self.cookie.take());
            }
        }
    }

    /// The refresh as the search's result ends it: complete only with a
    /// success code and a readable Sync Done control.
    fn done(mut self, res: ldap3::LdapResult) -> Result<Refreshed, RefreshError> {
        if res.rc != 0 {
            let text = if res.text.is_empty() {
                String::new()
            } else {
                format!(": {}", res.text)
            };
            return Err(RefreshError::Result { rc: res.rc, text });
        }
        let done = res.ctrls.iter().find_map(|c| match c {
            ldap3::controls::Control(Some(ControlType::SyncDone), raw) => Some(raw.clone()),
            _ => None,
        });
        let Some(done) = done else {
            return Err(RefreshError::NoSyncDone);
        };
        let d = parse_guarded("Sync Done control", || done.parse::<SyncDone>())?;
        if d.cookie.is_some() {
            self.cookie = d.cookie;
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_compare_numerically_when_numbers() {
        use std::cmp::Ordering;
        assert_eq!(mark_cmp("999", "1000"), Ordering::Less);
        assert_eq!(
            mark_cmp("20261127212039Z", "20261127212040Z"),
            Ordering::Less
        );
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(
            parse_range("member;range=0-1499"),
            Some(("member".into(), Some(1499)))
        );
        assert_eq!(
            parse_range("member;range=1500-*"),
            Some(("member".into(), None))
        );
        assert_eq!(parse_range("member"), None);
        assert_eq!(parse_range("member;binary"), None);
    }

    #[test]
    fn nested_groups_are_followed_without_looping() {
        let mut g = HashMap::new();
        g.insert(
            "cn=a".to_string(),
            vec!["cn=b".to_string(), "uid=1".to_string()],
        );
        g.insert(
            "cn=b".to_string(),
            vec!["cn=a".to_string(), "uid=2".to_string()],
        );
        g.insert("cn=c".to_string(), vec!["uid=3".to_string()]);
        let m = transitive_members(&g, "CN=A");
        assert_eq!(m, HashSet::from(["uid=1".to_string(), "uid=2".to_string()]));
    }
}
