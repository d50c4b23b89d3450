//! `[[sources]]`: the sync sources as the operator writes them, and their validated
//! form. Validation checks cron expressions, catalog names and secrets at start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::sources::hr::{CsvSection, CsvSource, HttpSection, HttpSource};
use crate::config_helpers::{ConfigError, Kinds, NoKeys, Tagged, read_secret, tagged_enum};
use crate::employee::{AccountStatus, Catalog};
use crate::secret::Secret;

/// One `[[sources]]` entry: the settings every kind shares. The rest of the table
/// (`kind` and the keys it picks) is the kind's own section
/// ([`SourceKindSection`]), read with unknown keys refused.
#[derive(Debug, Deserialize)]
pub struct SourceSection {
    /// Stable id: recorded on linked profiles and in the audit log. Never rename.
    pub id: String,
    /// For each profile field, the highest-priority source that maps it wins.
    /// Every source has its own priority.
    #[serde(default)]
    pub priority: i64,
    /// Whether this source decides who is active: a profile is active only if no
    /// lifecycle source says the person is gone, disabled, not yet hired or
    /// terminated. A source with `lifecycle = false` only feeds fields.
    #[serde(default = "yes")]
    pub lifecycle: bool,
    /// A profile field joining entries to profiles after the join key and the
    /// email: `employee_number`.
    pub join_attribute: Option<String>,
    /// IANA time zone (`Europe/Berlin`; default UTC) in which the source's dates
    /// are read and its schedules fire.
    pub timezone: Option<String>,
    /// Cron (6 fields, with seconds) for full runs, which also detect removals;
    /// read in `timezone` ("0 0 2 * * *": 02:00 there, whatever the season).
    pub full_schedule: Option<String>,
    /// Cron for incremental runs (changes since the last high-water mark), read
    /// in `timezone`.
    pub incremental_schedule: Option<String>,
    /// Run a full sync when the daemon starts.
    #[serde(default)]
    pub run_at_start: bool,
    /// Account status for profiles this source creates: `later` or `invite`.
    #[serde(default = "default_account_status")]
    pub account_status: AccountStatus,
    /// A plan deactivating more than this many profiles is held.
    #[serde(default = "default_max_deactivations")]
    pub max_deactivations: usize,
    /// ...or more than this percentage of the source's linked active profiles.
    #[serde(default = "default_max_deactivations_percent")]
    pub max_deactivations_percent: f64,
    /// How many of the source's runs the history keeps (the newest; a run held
    /// for approval is kept until it is approved or superseded).
    #[serde(default = "default_keep_runs")]
    pub keep_runs: usize,
    /// `kind` (`ldap`, `http` or `csv`) and the kind's own keys.
    #[serde(flatten)]
    pub kind: Tagged<SourceKindSection>,
}

tagged_enum! {
    /// The keys of each kind of source (besides the shared ones).
    #[derive(Debug)]
    #[allow(clippy::large_enum_variant)] // a handful per config, read once
    pub enum SourceKindSection {
        /// An LDAP / Active Directory server.
        "ldap" => Ldap(LdapSection),
        /// A REST/JSON API read page by page.
        "http" => Http(HttpSection),
        /// A CSV export.
        "csv" => Csv(CsvSection),
    }
}

fn yes() -> bool {
    true
}

/// The keys of a `kind = "ldap"` source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSection {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade `ldap://` with StartTLS.
    #[serde(default)]
    pub starttls: bool,
    /// PEM file with the CA that signed the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// Turn certificate checks off (never in production).
    #[serde(default)]
    pub tls_insecure_skip_verify: bool,
    /// DN to bind as; anonymous when absent.
    pub bind_dn: Option<String>,
    pub bind_password_file: Option<PathBuf>,
    pub bind_password_env: Option<String>,
    /// Where people are.
    pub base_dn: String,
    /// `sub` (default), `one` or `base`.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// Which entries are people.
    #[serde(default = "default_filter")]
    pub filter: String,
    /// RFC 2696 page size; 0 turns paging off.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Connect and per-operation timeout, seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Immutable attribute joining an entry to its profile (`entryUUID`, `objectGUID`).
    #[serde(default = "default_join_key")]
    pub join_key: String,
    /// Which attribute feeds which profile field.
    #[serde(default)]
    pub attributes: AttributeMap,
    /// How a disabled entry is recognised.
    #[serde(default)]
    pub disabled: Tagged<DisabledSection>,
    /// Where groups are, for positions and roles by membership.
    #[serde(default)]
    pub groups: GroupsSection,
    /// Group → position rules: every matching rule adds its position.
    #[serde(default)]
    pub positions: Vec<GroupRule>,
    /// Role rules: the first that matches wins.
    #[serde(default)]
    pub roles: Vec<RoleRule>,
    /// Role when no rule matches (else the catalog's default role).
    pub default_role: Option<String>,
    /// Business unit from an attribute through a value map.
    pub business_unit: Option<BusinessUnitSection>,
    /// How incremental runs ask for changes: `auto` (RFC 4533 content sync when
    /// the root DSE lists it in `supportedControl`, else `attributes.modified`),
    /// `content_sync` (always try content sync, for servers whose root DSE does
    /// not show its controls to the bind DN) or `modify_timestamp` (always
    /// `attributes.modified`: `modifyTimestamp`, or AD's `uSNChanged`).
    #[serde(default = "default_incremental")]
    pub incremental: String,
}

fn default_incremental() -> String {
    "auto".into()
}

fn default_scope() -> String {
    "sub".into()
}
fn default_filter() -> String {
    "(objectClass=inetOrgPerson)".into()
}
fn default_page_size() -> u32 {
    500
}
fn default_timeout() -> u64 {
    30
}
fn default_join_key() -> String {
    "entryUUID".into()
}
fn default_account_status() -> AccountStatus {
    AccountStatus::Later
}
fn default_max_deactivations() -> usize {
    25
}
fn default_max_deactivations_percent() -> f64 {
    10.0
}
fn default_keep_runs() -> usize {
    1000
}

/// Attribute names per profile field; an absent key means the source does not
/// write that field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeMap {
    #[serde(default = "some_mail")]
    pub email: Option<String>,
    #[serde(default = "some_given")]
    pub given_name: Option<String>,
    #[serde(default = "some_sn")]
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub username: Option<String>,
    pub mobile_phone: Option<String>,
    pub office_phone: Option<String>,
    pub office_phone_extension: Option<String>,
    /// An attribute holding a photo URL (e.g. `labeledURI`).
    pub photo_url: Option<String>,
    /// A binary attribute holding the photo itself (`jpegPhoto`; AD
    /// `thumbnailPhoto`): JPEG or PNG, at most 512 KiB (and `[photos] max_bytes`),
    /// stored as the profile's uploaded photo. Not with `photo_url`.
    pub photo: Option<String>,
    /// The SCIM enterprise employee number (`employeeNumber`, `employeeID`).
    pub employee_number: Option<String>,
    /// Timestamp attribute for incremental runs.
    #[serde(default = "some_modify_timestamp")]
    pub modified: Option<String>,
}

fn some_mail() -> Option<String> {
    Some("mail".into())
}
fn some_given() -> Option<String> {
    Some("givenName".into())
}
fn some_sn() -> Option<String> {
    Some("sn".into())
}
fn some_modify_timestamp() -> Option<String> {
    Some("modifyTimestamp".into())
}

impl Default for AttributeMap {
    fn default() -> Self {
        Self {
            email: some_mail(),
            given_name: some_given(),
            family_name: some_sn(),
            display_name: None,
            username: None,
            mobile_phone: None,
            office_phone: None,
            office_phone_extension: None,
            photo_url: None,
            photo: None,
            employee_number: None,
            modified: some_modify_timestamp(),
        }
    }
}

tagged_enum! {
    /// `[sources.disabled]`: how "disabled" is detected; `kind` picks the keys.
    #[derive(Debug)]
    pub enum DisabledSection {
        default = "none";
        /// No entry is disabled (the default).
        "none" => None(NoKeys),
        /// Active Directory: `userAccountControl` has bit 0x2.
        "ad_user_account_control" => AdUserAccountControl(NoKeys),
        /// 389-DS / FreeIPA: `nsAccountLock` is true.
        "ns_account_lock" => NsAccountLock(NoKeys),
        /// OpenLDAP ppolicy: `pwdAccountLockedTime` is set.
        "pwd_account_locked_time" => PwdAccountLockedTime(NoKeys),
        /// `attribute` equals one of `values`.
        "attribute" => Attribute(DisabledAttribute),
        /// Entries matching `filter` on the server are disabled.
        "filter" => Filter(DisabledFilter),
    }
}

/// `kind = "attribute"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisabledAttribute {
    pub attribute: String,
    #[serde(default)]
    pub values: Vec<String>,
}

/// `kind = "filter"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisabledFilter {
    pub filter: String,
}

/// Where to search groups. Membership is read from `member` / `uniqueMember` of
/// the groups (nested groups count), so no `memberOf` overlay is needed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsSection {
    /// Base DN of the group search; defaults to the source's base DN.
    pub base_dn: Option<String>,
    #[serde(default = "default_group_filter")]
    pub filter: String,
    /// Member attributes to read.
    #[serde(default = "default_member_attributes")]
    pub member_attributes: Vec<String>,
}

fn default_group_filter() -> String {
    "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=group))".into()
}
fn default_member_attributes() -> Vec<String> {
    vec!["member".into(), "uniqueMember".into()]
}

impl Default for GroupsSection {
    fn default() -> Self {
        Self {
            base_dn: None,
            filter: default_group_filter(),
            member_attributes: default_member_attributes(),
        }
    }
}

/// `{ group = "cn=drivers,ou=groups,dc=example,dc=com", position = "Driver" }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRule {
    pub group: String,
    pub position: String,
}

/// A role rule matches by group membership or by an attribute value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRule {
    pub group: Option<String>,
    pub attribute: Option<String>,
    pub value: Option<String>,
    pub role: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessUnitSection {
    pub attribute: String,
    /// Attribute value → business unit name. Values not in the map leave the
    /// business unit empty (and are reported).
    #[serde(default)]
    pub map: BTreeMap<String, String>,
}

/// How a disabled entry is recognised (validated).
#[derive(Debug, Clone, PartialEq)]
pub enum Disabled {
    None,
    AdUserAccountControl,
    NsAccountLock,
    PwdAccountLockedTime,
    Attribute {
        attribute: String,
        values: Vec<String>,
    },
    Filter(String),
}

/// How incremental runs of an LDAP source ask for changes (`incremental`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incremental {
    /// Content sync when the server lists it in its root DSE, else `Modified`.
    Auto,
    /// Content sync without asking the root DSE first.
    ContentSync,
    /// Entries whose `attributes.modified` is at or past the high-water mark.
    Modified,
}

/// A validated LDAP source: the `kind = "ldap"` part of a [`Source`].
#[derive(Debug, Clone)]
pub struct LdapSource {
    pub url: String,
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub tls_insecure_skip_verify: bool,
    pub bind_dn: Option<String>,
    pub bind_password: Option<Secret>,
    pub base_dn: String,
    pub scope: ldap3::Scope,
    pub filter: String,
    pub page_size: u32,
    pub timeout: Duration,
    pub join_key: String,
    pub attributes: AttributeMap,
    pub disabled: Disabled,
    pub groups: GroupsSection,
    pub positions: Vec<GroupRule>,
    pub roles: Vec<RoleRule>,
    pub default_role: Option<String>,
    pub business_unit: Option<BusinessUnitSection>,
    pub incremental: Incremental,
}

/// The profile field a source may join on after its key and the email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinAttribute {
    EmployeeNumber,
}

/// A validated source: the shared settings and the kind's own.
#[derive(Debug, Clone)]
pub struct Source {
    pub id: String,
    pub priority: i64,
    pub lifecycle: bool,
    pub join_attribute: Option<JoinAttribute>,
    pub timezone: chrono_tz::Tz,
    pub full_schedule: Option<String>,
    pub incremental_schedule: Option<String>,
    pub run_at_start: bool,
    pub account_status: AccountStatus,
    pub max_deactivations: usize,
    pub max_deactivations_percent: f64,
    pub keep_runs: usize,
    pub kind: SourceKind,
}

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a handful per config, cloned rarely
pub enum SourceKind {
    Ldap(LdapSource),
    Http(HttpSource),
    Csv(CsvSource),
}

impl SourceKind {
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::Ldap(_) => "ldap",
            SourceKind::Http(_) => "http",
            SourceKind::Csv(_) => "csv",
        }
    }
}

impl Source {
    /// Where the source reads from, for people.
    pub fn location(&self) -> String {
        match &self.kind {
            SourceKind::Ldap(l) => format!("{} {}", l.url, l.base_dn),
            SourceKind::Http(h) => h.location(),
            SourceKind::Csv(c) => c.location(),
        }
    }

    /// The profile fields this source writes (for precedence between sources).
    pub fn provides(&self) -> Vec<&'static str> {
        match &self.kind {
            SourceKind::Ldap(l) => super::map::ldap_provides(l),
            SourceKind::Http(h) => h.mapping.provides(),
            SourceKind::Csv(c) => c.mapping.provides(),
        }
    }
}

/// Where a source's settings are, for error messages.
pub struct SourceCtx<'a> {
    pub file: &'a Path,
    pub index: usize,
    pub catalog: &'a Catalog,
    pub env: &'a [(String, String)],
}

impl SourceCtx<'_> {
    /// `sources[i].<key>`
    pub fn key(&self, k: &str) -> String {
        match k.trim_matches('.') {
            "" => format!("sources[{}]", self.index),
            k => format!("sources[{}].{k}", self.index),
        }
    }
    pub fn err(&self, k: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.display().to_string(),
            key: self.key(k),
            message: message.into(),
        }
    }
    /// Reads the [`Kinds`] section at `<key>` (`""`: the source itself), its
    /// errors naming the full key.
    pub fn tagged<T: Kinds>(&self, key: &str, section: Tagged<T>) -> Result<T, ConfigError> {
        section
            .read()
            .map_err(|e| self.err(&format!("{key}.{}", e.key), e.message))
    }
    /// A secret from `<name>_file` or `<name>_env`, if either is set.
    pub fn secret(
        &self,
        name: &str,
        file: Option<&Path>,
        env_name: Option<&str>,
    ) -> Result<Option<Secret>, ConfigError> {
        if file.is_none() && env_name.is_none() {
            return Ok(None);
        }
        read_secret(self.file, &self.key(name), file, env_name, self.env)
            .map(Some)
            .map_err(|mut ce| {
                ce.message = ce.message.replace("token", name);
                ce.key = ce
                    .key
                    .replace(".token_file", "_file")
                    .replace(".token_env", "_env");
                ce
            })
    }
    /// Checks that a role name is in the catalog.
    pub fn check_role(&self, k: &str, role: &str) -> Result<(), ConfigError> {
        match self.catalog.role(role) {
            Some(_) => Ok(()),
            None => Err(self.err(k, format!("role `{role}` is not in catalog.roles"))),
        }
    }
    pub fn check_position(&self, k: &str, position: &str) -> Result<(), ConfigError> {
        match self.catalog.position(position) {
            Some(_) => Ok(()),
            None => Err(self.err(
                k,
                format!("position `{position}` is not in catalog.positions"),
            )),
        }
    }
    pub fn check_business_unit(&self, k: &str, unit: &str) -> Result<(), ConfigError> {
        match self.catalog.business_unit(unit) {
            Some(_) => Ok(()),
            None => Err(self.err(
                k,
                format!("business unit `{unit}` is not in catalog.business_units"),
            )),
        }
    }
}

/// Checks a 6-field cron expression the way the scheduler will parse it.
pub fn check_cron(expr: &str) -> Result<(), super::scheduler::CronError> {
    super::scheduler::Schedule::parse(expr, chrono_tz::Tz::UTC).map(|_| ())
}

/// Validates every `[[sources]]` entry into a [`Source`].
/// Long on purpose: one check per key, in the order the keys are documented,
/// each error naming its key; split up, the key list would be spread over
/// functions without any check getting simpler.
pub fn validate_sources(
    file: &Path,
    sections: Vec<SourceSection>,
    catalog: &Catalog,
    env: &[(String, String)],
) -> Result<Vec<Source>, ConfigError> {
    let mut out: Vec<Source> = Vec::new();
    for (index, s) in sections.into_iter().enumerate() {
        let ctx = SourceCtx {
            file,
            index,
            catalog,
            env,
        };
        let err = |k: &str, m: String| ctx.err(k, m);
        if s.id.is_empty()
            || !s
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err("id", "use letters, digits, - and _ only".into()));
        }
        if out.iter().any(|o| o.id == s.id) {
            return Err(err("id", format!("`{}` is used by two sources", s.id)));
        }
        if let Some(o) = out.iter().find(|o| o.priority == s.priority) {
            return Err(err(
                "priority",
                format!(
                    "source `{}` has priority {} too; give each source its own priority (the higher wins a field both map)",
                    o.id, s.priority
                ),
            ));
        }
        for (k, v) in [
            ("full_schedule", &s.full_schedule),
            ("incremental_schedule", &s.incremental_schedule),
        ] {
            if let Some(expr) = v {
                check_cron(expr).map_err(|m| err(k, m.to_string()))?;
            }
        }
        if s.account_status == AccountStatus::Credentials {
            return Err(err("account_status", "use `later` or `invite`".into()));
        }
        if !(0.0..=100.0).contains(&s.max_deactivations_percent) {
            return Err(err(
                "max_deactivations_percent",
                "must be between 0 and 100".into(),
            ));
        }
        if s.keep_runs == 0 {
            return Err(err("keep_runs", "must be at least 1".into()));
        }
        let join_attribute = match s.join_attribute.as_deref() {
            None => None,
            Some("employee_number") => Some(JoinAttribute::EmployeeNumber),
            Some(other) => {
                return Err(err(
                    "join_attribute",
                    format!("`{other}` cannot join profiles; use employee_number"),
                ));
            }
        };
        let timezone = match s.timezone.as_deref() {
            None => chrono_tz::Tz::UTC,
            Some(tz) => tz.parse::<chrono_tz::Tz>().map_err(|_| {
                err(
                    "timezone",
                    format!(
                        "`{tz}` is not an IANA time zone (e.g. Europe/Berlin, America/Chicago, UTC)"
                    ),
                )
            })?,
        };
        if let Some(kind @ ("http" | "csv")) = s.kind.kind()
            && s.incremental_schedule.is_some()
        {
            return Err(err(
                "incremental_schedule",
                format!("{kind} sources read every record at each run; use full_schedule"),
            ));
        }
        let kind = match ctx.tagged("", s.kind)? {
            SourceKindSection::Ldap(l) => SourceKind::Ldap(validate_ldap(&ctx, l)?),
            SourceKindSection::Http(h) => {
                SourceKind::Http(super::sources::hr::validate_http(&ctx, h)?)
            }
            SourceKindSection::Csv(c) => {
                SourceKind::Csv(super::sources::hr::validate_csv(&ctx, c)?)
            }
        };
        out.push(Source {
            id: s.id,
            priority: s.priority,
            lifecycle: s.lifecycle,
            join_attribute,
            timezone,
            full_schedule: s.full_schedule,
            incremental_schedule: s.incremental_schedule,
            run_at_start: s.run_at_start,
            account_status: s.account_status,
            max_deactivations: s.max_deactivations,
            max_deactivations_percent: s.max_deactivations_percent,
            keep_runs: s.keep_runs,
            kind,
        });
    }
    Ok(out)
}

/// Validates a `kind = "ldap"` source, in the order the keys are documented:
/// the connection, the search, the attributes, how disabled entries are told,
/// the group and role rules, incremental runs.
fn validate_ldap(ctx: &SourceCtx<'_>, mut s: LdapSection) -> Result<LdapSource, ConfigError> {
    let err = |k: &str, m: String| ctx.err(k, m);
    let bind_password = ldap_connection(ctx, &s)?;
    let scope = match s.scope.as_str() {
        "sub" => ldap3::Scope::Subtree,
        "one" => ldap3::Scope::OneLevel,
        "base" => ldap3::Scope::Base,
        other => return Err(err("scope", format!("`{other}`: use sub, one or base"))),
    };
    if s.attributes.email.is_none() {
        return Err(err(
            "attributes.email",
            "every profile needs an email: map it".into(),
        ));
    }
    if s.attributes.photo.is_some() && s.attributes.photo_url.is_some() {
        return Err(err(
            "attributes.photo",
            "both feed the profile's photo: map either photo (the bytes) or photo_url (a link)"
                .into(),
        ));
    }
    let disabled = match ctx.tagged("disabled", std::mem::take(&mut s.disabled))? {
        DisabledSection::None(NoKeys {}) => Disabled::None,
        DisabledSection::AdUserAccountControl(NoKeys {}) => Disabled::AdUserAccountControl,
        DisabledSection::NsAccountLock(NoKeys {}) => Disabled::NsAccountLock,
        DisabledSection::PwdAccountLockedTime(NoKeys {}) => Disabled::PwdAccountLockedTime,
        DisabledSection::Attribute(a) => Disabled::Attribute {
            attribute: a.attribute,
            values: a.values,
        },
        DisabledSection::Filter(f) => Disabled::Filter(f.filter),
    };
    ldap_rules(ctx, &s)?;
    let incremental = match s.incremental.as_str() {
        "auto" => Incremental::Auto,
        "content_sync" => Incremental::ContentSync,
        "modify_timestamp" => Incremental::Modified,
        other => {
            return Err(err(
                "incremental",
                format!("`{other}`: use auto, content_sync or modify_timestamp"),
            ));
        }
    };
    Ok(LdapSource {
        url: s.url,
        starttls: s.starttls,
        ca_file: s.ca_file,
        tls_insecure_skip_verify: s.tls_insecure_skip_verify,
        bind_dn: s.bind_dn,
        bind_password,
        base_dn: s.base_dn,
        scope,
        filter: s.filter,
        page_size: s.page_size,
        timeout: Duration::from_secs(s.timeout_secs.max(1)),
        join_key: s.join_key,
        attributes: s.attributes,
        disabled,
        groups: s.groups,
        positions: s.positions,
        roles: s.roles,
        default_role: s.default_role,
        business_unit: s.business_unit,
        incremental,
    })
}

/// The connection keys: URL, TLS, CA file, bind DN and password.
fn ldap_connection(ctx: &SourceCtx<'_>, s: &LdapSection) -> Result<Option<Secret>, ConfigError> {
    let err = |k: &str, m: String| ctx.err(k, m);
    if !(s.url.starts_with("ldap://") || s.url.starts_with("ldaps://")) {
        return Err(err("url", "must start with ldap:// or ldaps://".into()));
    }
    if s.starttls && s.url.starts_with("ldaps://") {
        return Err(err(
            "starttls",
            "StartTLS is for ldap:// URLs; ldaps:// is TLS already".into(),
        ));
    }
    if let Some(ca) = &s.ca_file
        && !ca.exists()
    {
        return Err(err("ca_file", format!("{} does not exist", ca.display())));
    }
    let bind_password = ctx.secret(
        "bind_password",
        s.bind_password_file.as_deref(),
        s.bind_password_env.as_deref(),
    )?;
    if bind_password.is_some() && s.bind_dn.is_none() {
        return Err(err(
            "bind_dn",
            "a bind password is set but no bind_dn".into(),
        ));
    }
    Ok(bind_password)
}

/// The group, role and business unit rules: every name they give is in the
/// catalog, and profiles get a role.
fn ldap_rules(ctx: &SourceCtx<'_>, s: &LdapSection) -> Result<(), ConfigError> {
    let err = |k: &str, m: String| ctx.err(k, m);
    for (j, r) in s.positions.iter().enumerate() {
        if ctx.catalog.position(&r.position).is_none() {
            return Err(err(
                &format!("positions[{j}].position"),
                format!("position `{}` is not in ctx.catalog.positions", r.position),
            ));
        }
    }
    for (j, r) in s.roles.iter().enumerate() {
        if ctx.catalog.role(&r.role).is_none() {
            return Err(err(
                &format!("roles[{j}].role"),
                format!("role `{}` is not in ctx.catalog.roles", r.role),
            ));
        }
        match (&r.group, &r.attribute, &r.value) {
            (Some(_), None, None) | (None, Some(_), Some(_)) => {}
            _ => {
                return Err(err(
                    &format!("roles[{j}]"),
                    "set either `group`, or `attribute` and `value`".into(),
                ));
            }
        }
    }
    if let Some(r) = &s.default_role
        && ctx.catalog.role(r).is_none()
    {
        return Err(err(
            "default_role",
            format!("role `{r}` is not in ctx.catalog.roles"),
        ));
    }
    if s.default_role.is_none() && ctx.catalog.default_role().is_none() {
        return Err(err(
            "default_role",
            "set a default role here or ctx.catalog.default_role: profiles need a role".into(),
        ));
    }
    if let Some(bu) = &s.business_unit {
        for (v, name) in &bu.map {
            if ctx.catalog.business_unit(name).is_none() {
                return Err(err(
                    "business_unit.map",
                    format!("`{v}` maps to `{name}`, which is not in ctx.catalog.business_units"),
                ));
            }
        }
    }
    Ok(())
}
