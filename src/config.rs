//! Configuration: defaults, then the TOML file, then `ROSTERD_…` environment
//! overrides (`ROSTERD_LISTEN`, `ROSTERD_DATA_DIR`, and `ROSTERD_<SECTION>__<KEY>` in
//! general), validated once into [`Config`]. Secrets come from `*_file` or `*_env`
//! keys and are held as [`crate::secret::Secret`]. Every error names the key and the file.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::config_helpers::{ConfigError, NamedToken, credential_path, read_secret};
use crate::employee::AccountStatus;
pub use crate::employee::PasswordPolicy;
use crate::employee::catalog::{Catalog, CatalogError, PositionDef, RoleDef, UnitDef};

/// Where `rosterd` looks when no `--config` is given, in order.
pub const DEFAULT_CONFIG_PATHS: [&str; 2] = ["./config/rosterd.toml", "/etc/rosterd/rosterd.toml"];

/// Environment variables with the `ROSTERD_` prefix that are not config overrides
/// (they belong to `rosterctl` or to the command line).
const NON_CONFIG_ENV: [&str; 6] = [
    "ROSTERD_URL",
    "ROSTERD_TOKEN",
    "ROSTERD_TOKEN_FILE",
    "ROSTERD_CONFIG",
    "ROSTERD_LOG",
    "ROSTERD_LOG_FORMAT",
];

// ---------------------------------------------------------------------------
// The file, as written by the operator.
// ---------------------------------------------------------------------------

/// The TOML file. Every key is documented in `config/rosterd.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    /// Address the HTTP listener binds, e.g. `"127.0.0.1:8080"`.
    #[serde(default = "default_listen")]
    listen: String,
    /// Also serve the same API on this unix socket (mode 0660), e.g.
    /// `"/run/rosterd/rosterd.sock"`. A stale socket file is replaced.
    listen_unix: Option<PathBuf>,
    /// Directory for the sled store and the generated admin token.
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    /// Admin API tokens.
    #[serde(default)]
    admin: AdminSection,
    /// Password rules for `credentials` accounts.
    #[serde(default)]
    password_policy: PasswordPolicy,
    /// Uploaded photos.
    #[serde(default)]
    photos: PhotoSection,
    /// HTTP limits.
    #[serde(default)]
    http: HttpSection,
    /// The SCIM 2.0 endpoint (`/scim/v2`); off while no client is configured.
    #[serde(default)]
    scim: ScimSection,
    /// Positions, roles, business units and the permission names that exist.
    #[serde(default)]
    catalog: CatalogSection,
    /// Sync sources (`[[sources]]`).
    #[serde(default)]
    sources: Vec<crate::sync::config::SourceSection>,
    /// SMTP and message settings; mail is off without this section.
    mail: Option<crate::mail::config::MailSection>,
    /// Invite/reset token lifetimes and sign-in rate limits.
    #[serde(default)]
    accounts: crate::mail::config::AccountsSection,
    /// Which backend holds the roster (`sled` under `data_dir`, or `postgres`).
    #[serde(default)]
    store: crate::store::config::StoreSection,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminSection {
    /// Named admin tokens. Without any, the first start writes
    /// `<data_dir>/admin.token` (mode 0600) and uses it.
    #[serde(default)]
    tokens: Vec<TokenSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenSection {
    /// Name recorded in the audit log for changes made with this token.
    name: String,
    /// File holding the token (surrounding whitespace is ignored).
    token_file: Option<PathBuf>,
    /// Environment variable holding the token.
    token_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct PhotoSection {
    /// Largest uploaded photo, in bytes.
    max_bytes: usize,
}

impl Default for PhotoSection {
    fn default() -> Self {
        Self {
            max_bytes: 2 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct HttpSection {
    /// Largest JSON request body, in bytes; larger bodies get 413 (a declared
    /// `Content-Length` over it at once, before the body is read).
    max_body_bytes: usize,
    /// Seconds a client has to send a request's head, counted from when the
    /// connection opens or the previous response was sent.
    header_read_timeout_secs: u64,
    /// Seconds a connection may sit with no handler running and no byte moving
    /// before it is closed (keep-alive, or a client that stops reading a
    /// response; a handler waiting for a slow body is running, so not idle).
    idle_timeout_secs: u64,
    /// Most open client connections (TCP and the unix socket together, three
    /// quarters to TCP when both are on); always kept below the open-file
    /// limit. At the cap, the connection idle the longest is closed to make room.
    max_connections: usize,
    /// Addresses (`"127.0.0.1"`, CIDR ranges `"10.0.0.0/8"`, or `"unix"` for
    /// whoever connects over `listen_unix`) whose `X-Forwarded-For`,
    /// `Forwarded`, `X-Forwarded-Host` and `X-Forwarded-Proto` are believed.
    /// Empty (the default): forwarded headers are ignored.
    trusted_proxies: Vec<String>,
}

impl Default for HttpSection {
    fn default() -> Self {
        let d = crate::serve::HttpSettings::default();
        Self {
            max_body_bytes: 1024 * 1024,
            header_read_timeout_secs: d.header_read_timeout.as_secs(),
            idle_timeout_secs: d.idle_timeout.as_secs(),
            max_connections: d.max_connections,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScimSection {
    /// SCIM clients (identity providers), each with its own bearer token; the
    /// audit log records the client's `name`. No client: SCIM is off.
    #[serde(default)]
    clients: Vec<ScimClientSection>,
    /// Role of users created over SCIM without one (default: catalog.default_role).
    default_role: Option<String>,
    /// Account status of users created over SCIM without a password: `invite`
    /// (the default when `[mail]` is configured) or `later` (the default without
    /// it). A password makes it `credentials`.
    account_status: Option<AccountStatus>,
    /// Largest page a list request returns (`count` is clamped to it); advertised
    /// in `/ServiceProviderConfig` as `filter.maxResults`.
    max_page_size: Option<usize>,
    /// With no `[[scim.clients]]`: generate `<data_dir>/scim.token` (mode 0600) on
    /// the first start and serve SCIM to a client named `default` holding it.
    #[serde(default)]
    generate_token: bool,
}

/// One `[[scim.clients]]` entry: a named token, and what the client's passwords mean.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScimClientSection {
    /// Name recorded in the audit log (`scim:<name>`).
    name: String,
    /// File holding the token (surrounding whitespace is ignored).
    token_file: Option<PathBuf>,
    /// Environment variable holding the token.
    token_env: Option<String>,
    /// What a `password` this identity provider sends means: `ignore` (the
    /// default: dropped, the account follows `scim.account_status`) or `accept`
    /// (the IdP's password policy governs: stored as an argon2 hash as sent,
    /// account status `credentials`, rosterd's `[password_policy]` not applied).
    #[serde(default)]
    passwords: ScimPasswords,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogSection {
    /// Every permission name that exists.
    #[serde(default)]
    permissions: Vec<String>,
    /// Role given to a profile created without one (optional).
    default_role: Option<String>,
    #[serde(default)]
    positions: Vec<PositionDef>,
    #[serde(default)]
    roles: Vec<RoleDef>,
    #[serde(default)]
    business_units: Vec<UnitDef>,
}

// ---------------------------------------------------------------------------
// The validated configuration the daemon runs on.
// ---------------------------------------------------------------------------

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from.
    pub file: PathBuf,
    pub listen: SocketAddr,
    pub listen_unix: Option<PathBuf>,
    pub data_dir: PathBuf,
    /// Configured admin tokens; empty means "use the generated one".
    pub admin_tokens: Vec<NamedToken>,
    pub password_policy: PasswordPolicy,
    pub photo_max_bytes: usize,
    pub max_body_bytes: usize,
    /// `[http]` timeouts, connection cap and trusted proxies.
    pub http: crate::serve::HttpSettings,
    pub scim: ScimConfig,
    pub catalog: Catalog,
    pub sources: Vec<crate::sync::config::Source>,
    /// `None`: mail is off (messages wait in the outbox).
    pub mail: Option<crate::mail::config::MailConfig>,
    pub accounts: crate::mail::config::AccountSettings,
    /// `[store]`: the backend.
    pub store: crate::store::config::StoreConfig,
}

/// What a password sent by a SCIM client (an identity provider) means. Okta, for
/// one, sends a random password on every create even without password sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScimPasswords {
    /// Dropped (and audited as such): the account follows `scim.account_status`.
    #[default]
    Ignore,
    /// Stored (argon2 hash) as sent, whatever rosterd's own password policy says:
    /// the identity provider's policy governs. The account status is `credentials`.
    Accept,
}

impl ScimPasswords {
    pub fn as_str(self) -> &'static str {
        match self {
            ScimPasswords::Ignore => "ignore",
            ScimPasswords::Accept => "accept",
        }
    }
}

/// The SCIM endpoint's settings.
#[derive(Debug, Clone)]
pub struct ScimConfig {
    /// Clients and their tokens; empty means SCIM is off.
    pub clients: Vec<NamedToken>,
    /// Per client name, what its passwords mean (absent: [`ScimPasswords::Ignore`]).
    pub passwords: BTreeMap<String, ScimPasswords>,
    /// Role for SCIM-created users without one (catalog spelling); `None` falls
    /// back to the catalog's default role.
    pub default_role: Option<String>,
    /// Account status for SCIM-created users without a password.
    pub account_status: AccountStatus,
    /// Largest page of a list response.
    pub max_page_size: usize,
    /// Generate `<data_dir>/scim.token` when no client is configured.
    pub generate_token: bool,
}

impl Default for ScimConfig {
    fn default() -> Self {
        Self {
            clients: Vec::new(),
            passwords: BTreeMap::new(),
            default_role: None,
            account_status: AccountStatus::Later,
            max_page_size: DEFAULT_SCIM_PAGE,
            generate_token: false,
        }
    }
}

impl ScimConfig {
    /// What the passwords of the client named `client` mean.
    pub fn passwords_of(&self, client: &str) -> ScimPasswords {
        self.passwords.get(client).copied().unwrap_or_default()
    }
}

/// Default largest SCIM page.
pub const DEFAULT_SCIM_PAGE: usize = 200;

/// Finds the config file: the given path, else the first default that exists.
pub fn resolve_path(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    for p in DEFAULT_CONFIG_PATHS {
        if Path::new(p).exists() {
            return Ok(PathBuf::from(p));
        }
    }
    Err(ConfigError::new(
        Path::new(DEFAULT_CONFIG_PATHS[1]),
        "-",
        format!(
            "no config file found (looked for {} and {}); pass --config FILE",
            DEFAULT_CONFIG_PATHS[0], DEFAULT_CONFIG_PATHS[1]
        ),
    ))
}

/// Loads the file at `path`, applies the process environment's overrides, validates.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_env(path, std::env::vars())
}

/// Like [`load`], with the environment given explicitly (tests).
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path, "-", format!("cannot read the file: {e}")))?;
    let env: Vec<(String, String)> = env.into_iter().collect();
    parse(path, &text, &env)
}

/// Parses and validates config text; `path` is used for messages only.
pub fn parse(path: &Path, text: &str, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::new(path, "-", e.to_string().trim_end()))?;
    let secret_envs = token_env_names(&table);
    apply_env_overrides(path, &mut table, env, &secret_envs)?;
    let file: FileConfig =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::new(path, key, e.into_inner().to_string())
        })?;
    validate(path, file, env)
}

/// Names of environment variables that hold secrets: they are never overrides.
fn token_env_names(table: &toml::Table) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    fn walk(v: &toml::Value, out: &mut BTreeSet<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    if k.ends_with("_env")
                        && let toml::Value::String(s) = v
                    {
                        out.insert(s.clone());
                    }
                    walk(v, out);
                }
            }
            toml::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&toml::Value::Table(table.clone()), &mut out);
    out
}

fn apply_env_overrides(
    path: &Path,
    table: &mut toml::Table,
    env: &[(String, String)],
    skip: &BTreeSet<String>,
) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("ROSTERD_") else {
            continue;
        };
        if NON_CONFIG_ENV.contains(&name.as_str()) || skip.contains(name) || rest.is_empty() {
            continue;
        }
        let keys: Vec<String> = rest.split("__").map(|k| k.to_ascii_lowercase()).collect();
        if keys.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                path,
                format!("env {name}"),
                "malformed override name; use ROSTERD_<SECTION>__<KEY>",
            ));
        }
        // A value that parses as a TOML value (number, bool, array, quoted string)
        // is taken as such; anything else is a plain string.
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let mut cur = &mut *table;
        for k in &keys[..keys.len() - 1] {
            let entry = cur
                .entry(k.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cur = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::new(
                        path,
                        keys.join("."),
                        format!("env {name} overrides inside `{k}`, which is not a section"),
                    ));
                }
            };
        }
        cur.insert(keys[keys.len() - 1].clone(), value);
    }
    Ok(())
}

fn validate(path: &Path, f: FileConfig, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(path, key, msg);
    let listen: SocketAddr = f.listen.parse().map_err(|_| {
        err(
            "listen",
            format!(
                "`{}` is not an address with a port, e.g. \"127.0.0.1:8080\"",
                f.listen
            ),
        )
    })?;
    if f.data_dir.as_os_str().is_empty() {
        return Err(err("data_dir", "must not be empty".into()));
    }

    let admin_tokens = named_tokens(path, "admin.tokens", &f.admin.tokens, env)?;

    let p = &f.password_policy;
    if p.min_length == 0 || p.min_length > p.max_length {
        return Err(err(
            "password_policy.min_length",
            "must be at least 1 and at most password_policy.max_length".into(),
        ));
    }
    if f.photos.max_bytes == 0 {
        return Err(err("photos.max_bytes", "must be greater than 0".into()));
    }
    if f.http.max_body_bytes < 1024 {
        return Err(err("http.max_body_bytes", "must be at least 1024".into()));
    }
    let h = &f.http;
    if h.header_read_timeout_secs == 0 {
        return Err(err(
            "http.header_read_timeout_secs",
            "must be at least 1".into(),
        ));
    }
    if h.idle_timeout_secs == 0 {
        return Err(err("http.idle_timeout_secs", "must be at least 1".into()));
    }
    if h.max_connections == 0 {
        return Err(err("http.max_connections", "must be at least 1".into()));
    }
    let http = crate::serve::HttpSettings {
        header_read_timeout: std::time::Duration::from_secs(h.header_read_timeout_secs),
        idle_timeout: std::time::Duration::from_secs(h.idle_timeout_secs),
        max_connections: h.max_connections,
        trusted_proxies: crate::serve::TrustedProxies::parse(&h.trusted_proxies)
            .map_err(|m| err("http.trusted_proxies", m.to_string()))?,
    };

    let c = f.catalog;
    let catalog = Catalog::new(
        c.permissions,
        c.positions,
        c.roles,
        c.business_units,
        c.default_role,
    )
    .map_err(|e: CatalogError| err(&format!("catalog.{}", e.key), e.message))?;
    let sources = crate::sync::config::validate_sources(path, f.sources, &catalog, env)?;
    let mail_on = f.mail.is_some();
    let mail = match f.mail {
        Some(m) => Some(crate::mail::config::validate_mail(path, m, env)?),
        None => None,
    };
    let accounts = crate::mail::config::validate_accounts(path, f.accounts)?;
    let store = crate::store::config::validate(path, f.store, env)?;

    Ok(Config {
        file: path.to_path_buf(),
        listen,
        listen_unix: f.listen_unix,
        data_dir: f.data_dir,
        admin_tokens,
        password_policy: f.password_policy,
        photo_max_bytes: f.photos.max_bytes,
        max_body_bytes: f.http.max_body_bytes,
        http,
        scim: validate_scim(path, &f.scim, &catalog, env, mail_on)?,
        catalog,
        sources,
        mail,
        accounts,
        store,
    })
}

fn validate_scim(
    path: &Path,
    s: &ScimSection,
    catalog: &Catalog,
    env: &[(String, String)],
    mail_on: bool,
) -> Result<ScimConfig, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(path, key, msg);
    let tokens: Vec<TokenSection> = s
        .clients
        .iter()
        .map(|c| TokenSection {
            name: c.name.clone(),
            token_file: c.token_file.clone(),
            token_env: c.token_env.clone(),
        })
        .collect();
    let clients = named_tokens(path, "scim.clients", &tokens, env)?;
    let passwords = s
        .clients
        .iter()
        .map(|c| (c.name.clone(), c.passwords))
        .collect();
    // Default: invite when rosterd can send mail, else later.
    let account_status = s.account_status.unwrap_or(if mail_on {
        AccountStatus::Invite
    } else {
        AccountStatus::Later
    });
    if account_status == AccountStatus::Credentials {
        return Err(err(
            "scim.account_status",
            "must be `later` or `invite`; users created with a password get `credentials`".into(),
        ));
    }
    let max_page_size = s.max_page_size.unwrap_or(DEFAULT_SCIM_PAGE);
    if !(1..=crate::employee::list::MAX_LIMIT).contains(&max_page_size) {
        return Err(err(
            "scim.max_page_size",
            format!("must be between 1 and {}", crate::employee::list::MAX_LIMIT),
        ));
    }
    let default_role = match &s.default_role {
        Some(r) => Some(
            catalog
                .role(r)
                .ok_or_else(|| {
                    err(
                        "scim.default_role",
                        format!("role `{r}` is not in catalog.roles"),
                    )
                })?
                .name
                .clone(),
        ),
        None if catalog.default_role().is_none() && !clients.is_empty() => {
            return Err(err(
                "scim.default_role",
                "SCIM-created users need a role: set scim.default_role or catalog.default_role"
                    .into(),
            ));
        }
        None => None,
    };
    Ok(ScimConfig {
        clients,
        passwords,
        default_role,
        account_status,
        max_page_size,
        generate_token: s.generate_token,
    })
}

/// Validates named tokens (`[[admin.tokens]]`, `[[scim.clients]]`): unique,
/// non-empty names; each secret read from its file or variable, 16+ characters.
fn named_tokens(
    path: &Path,
    section: &str,
    tokens: &[TokenSection],
    env: &[(String, String)],
) -> Result<Vec<NamedToken>, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(path, key, msg);
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (i, t) in tokens.iter().enumerate() {
        let key = format!("{section}[{i}]");
        if t.name.trim().is_empty() {
            return Err(err(&format!("{key}.name"), "must not be empty".into()));
        }
        if !names.insert(t.name.clone()) {
            return Err(err(
                &format!("{key}.name"),
                format!("`{}` is used twice", t.name),
            ));
        }
        let token = read_secret(
            path,
            &key,
            t.token_file.as_deref(),
            t.token_env.as_deref(),
            env,
        )?;
        if token.expose().len() < 16 {
            return Err(err(
                &key,
                "token is shorter than 16 characters; generate one with `openssl rand -hex 32`"
                    .into(),
            ));
        }
        out.push(NamedToken {
            name: t.name.clone(),
            token,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
listen = "127.0.0.1:9000"
data_dir = "/tmp/x"
[catalog]
permissions = ["a", "b"]
[[catalog.roles]]
name = "Driver"
permissions = ["a"]
"#;

    fn p(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(Path::new("test.toml"), text, &env)
    }

    #[test]
    fn minimal_config_parses() {
        let c = p(MINIMAL, &[]).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert!(c.admin_tokens.is_empty());
        assert_eq!(c.password_policy.min_length, 12);
    }

    #[test]
    fn scim_section() {
        let c = p(MINIMAL, &[]).unwrap();
        assert!(c.scim.clients.is_empty());
        assert_eq!(c.scim.account_status, AccountStatus::Later);
        let text = format!(
            "{MINIMAL}\n[scim]\ndefault_role = \"driver\"\nmax_page_size = 50\n[[scim.clients]]\nname = \"entra\"\ntoken_env = \"T\"\n"
        );
        let c = p(&text, &[("T", "0123456789abcdef0123")]).unwrap();
        assert_eq!(c.scim.clients[0].name, "entra");
        assert_eq!(c.scim.default_role.as_deref(), Some("Driver"));
        assert_eq!(c.scim.max_page_size, 50);
        let e = p(
            &text.replace("driver", "pilot"),
            &[("T", "0123456789abcdef0123")],
        )
        .unwrap_err();
        assert_eq!(e.key, "scim.default_role");
        let e = p(
            &format!("{MINIMAL}\n[scim]\naccount_status = \"credentials\"\n"),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key, "scim.account_status");
    }

    #[test]
    fn scim_clients_say_what_their_passwords_mean() {
        let text = format!(
            "{MINIMAL}\n[scim]\ndefault_role = \"driver\"\n[[scim.clients]]\nname = \"okta\"\ntoken_env = \"T\"\npasswords = \"accept\"\n[[scim.clients]]\nname = \"entra\"\ntoken_env = \"T\"\n"
        );
        let env = [("T", "0123456789abcdef0123")];
        let c = p(&text, &env).unwrap();
        assert_eq!(c.scim.passwords_of("okta"), ScimPasswords::Accept);
        assert_eq!(
            c.scim.passwords_of("entra"),
            ScimPasswords::Ignore,
            "the default"
        );
        assert_eq!(c.scim.passwords_of("default"), ScimPasswords::Ignore);
        let e = p(&text.replace("\"accept\"", "\"sometimes\""), &env).unwrap_err();
        assert!(e.to_string().contains("passwords"), "{e}");
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let e = p(
            &format!("{MINIMAL}\n[password_policy]\nmin_lenght = 3\n"),
            &[],
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("test.toml"), "{msg}");
        assert!(msg.contains("min_lenght"), "{msg}");
        assert!(msg.contains("password_policy"), "{msg}");
    }

    #[test]
    fn http_connection_keys_default_validate_and_name_the_key() {
        let c = p(MINIMAL, &[]).unwrap();
        assert_eq!(c.http, crate::serve::HttpSettings::default());
        assert!(c.http.trusted_proxies.is_empty());
        let text = format!(
            "{MINIMAL}\n[http]\nheader_read_timeout_secs = 5\nidle_timeout_secs = 30\nmax_connections = 100\ntrusted_proxies = [\"10.0.0.0/8\", \"unix\"]\n"
        );
        let c = p(&text, &[]).unwrap();
        assert_eq!(c.http.header_read_timeout.as_secs(), 5);
        assert_eq!(c.http.idle_timeout.as_secs(), 30);
        assert_eq!(c.http.max_connections, 100);
        assert!(c.http.trusted_proxies.trusts_unix());
        assert!(c.http.trusted_proxies.trusts("10.1.2.3".parse().unwrap()));
        for (line, key) in [
            (
                "trusted_proxies = [\"proxy.local\"]",
                "http.trusted_proxies",
            ),
            (
                "header_read_timeout_secs = 0",
                "http.header_read_timeout_secs",
            ),
            ("idle_timeout_secs = 0", "http.idle_timeout_secs"),
            ("max_connections = 0", "http.max_connections"),
        ] {
            let e = p(&format!("{MINIMAL}\n[http]\n{line}\n"), &[]).unwrap_err();
            assert_eq!(e.key, key, "{line}: {e}");
        }
        let c = p(
            MINIMAL,
            &[("ROSTERD_HTTP__TRUSTED_PROXIES", "[\"127.0.0.1\"]")],
        )
        .unwrap();
        assert!(c.http.trusted_proxies.trusts("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn invalid_listen_names_key() {
        let e = p(&MINIMAL.replace("127.0.0.1:9000", "localhost"), &[]).unwrap_err();
        assert_eq!(e.key, "listen");
    }

    #[test]
    fn env_overrides_apply_with_types() {
        let c = p(
            MINIMAL,
            &[
                ("ROSTERD_LISTEN", "127.0.0.1:7777"),
                ("ROSTERD_DATA_DIR", "/var/lib/r"),
                ("ROSTERD_PASSWORD_POLICY__MIN_LENGTH", "20"),
                ("ROSTERD_URL", "http://ignored"),
            ],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 7777);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/r"));
        assert_eq!(c.password_policy.min_length, 20);
    }

    #[test]
    fn bad_env_override_names_the_key() {
        let e = p(MINIMAL, &[("ROSTERD_PASSWORD_POLICY__MIN_LENGTH", "many")]).unwrap_err();
        assert!(e.key.contains("password_policy.min_length"), "{e}");
        let e = p(MINIMAL, &[("ROSTERD_NOPE", "1")]).unwrap_err();
        assert!(e.message.contains("nope"), "{e}");
    }

    #[test]
    fn token_from_env_and_secret_env_is_not_an_override() {
        let text = format!(
            "{MINIMAL}\n[[admin.tokens]]\nname = \"ops\"\ntoken_env = \"ROSTERD_OPS_TOKEN\"\n"
        );
        let c = p(&text, &[("ROSTERD_OPS_TOKEN", "0123456789abcdef0123")]).unwrap();
        assert_eq!(c.admin_tokens[0].token.expose(), "0123456789abcdef0123");
        let e = p(&text, &[]).unwrap_err();
        assert_eq!(e.key, "admin.tokens[0].token_env");
        assert!(!e.to_string().contains("0123456789"));
    }

    #[test]
    fn secret_files_are_found_in_the_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ops.token"),
            "0123456789abcdef-from-creds\n",
        )
        .unwrap();
        let text =
            format!("{MINIMAL}\n[[admin.tokens]]\nname = \"ops\"\ntoken_file = \"ops.token\"\n");
        let creds = dir.path().display().to_string();
        let c = p(&text, &[("CREDENTIALS_DIRECTORY", creds.as_str())]).unwrap();
        assert_eq!(
            c.admin_tokens[0].token.expose(),
            "0123456789abcdef-from-creds"
        );
        // Without the directory, the relative file is not found, and the error says where it looked.
        let e = p(&text, &[]).unwrap_err();
        assert_eq!(e.key, "admin.tokens[0].token_file");
    }

    #[test]
    fn role_with_unknown_permission_is_rejected() {
        let e = p(
            &MINIMAL.replace("permissions = [\"a\"]", "permissions = [\"zz\"]"),
            &[],
        )
        .unwrap_err();
        assert!(e.key.starts_with("catalog.roles"), "{e}");
        assert!(e.message.contains("zz"), "{e}");
    }

    fn source_error(source: &str) -> ConfigError {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let base = std::fs::read_to_string(dir.join("rosterd.toml")).unwrap();
        // Without the demo HR source, which the examples replace.
        let base = base[..base.find("# ---- demo HR source").unwrap_or(base.len())].to_string();
        parse(Path::new("t.toml"), &format!("{base}\n{source}"), &[]).unwrap_err()
    }

    const LDAP: &str = "[[sources]]\nid = \"corp\"\nkind = \"ldap\"\nurl = \"ldap://127.0.0.1:1\"\nbase_dn = \"dc=x\"\n";

    #[test]
    fn bad_sources_are_refused_naming_the_key() {
        let e = source_error("[[sources]]\nid = \"x\"\nkind = \"ftp\"\n");
        assert_eq!(e.key, "sources[0].kind", "{e}");
        assert!(e.message.contains("ldap, http or csv"), "{e}");

        let e = source_error(&format!("{LDAP}full_schedule = \"every day\"\n"));
        assert_eq!(e.key, "sources[0].full_schedule", "{e}");

        let e = source_error(&format!("{LDAP}timezone = \"Mars/Olympus\"\n"));
        assert_eq!(e.key, "sources[0].timezone", "{e}");

        let e = source_error(&format!(
            "{LDAP}bind_dn = \"cn=a\"\nbind_password_file = \"/nonexistent/pw\"\n"
        ));
        assert_eq!(e.key, "sources[0].bind_password_file", "{e}");
        assert!(e.message.contains("/nonexistent/pw"), "{e}");

        let e = source_error(&format!("{LDAP}base_dnn = \"typo\"\n"));
        assert_eq!(e.key, "sources[0].base_dnn", "{e}");
        assert!(e.message.contains("base_dnn"), "{e}");

        let two = format!("{LDAP}{}", LDAP.replace("\"corp\"", "\"other\""));
        let e = source_error(&two);
        assert_eq!(e.key, "sources[1].priority", "{e}");

        let e = source_error(
            "[[sources]]\nid = \"hr\"\nkind = \"csv\"\nincremental_schedule = \"0 * * * * *\"\n",
        );
        assert_eq!(e.key, "sources[0].incremental_schedule", "{e}");

        let e = source_error(&format!("{LDAP}join_attribute = \"shoe_size\"\n"));
        assert_eq!(e.key, "sources[0].join_attribute", "{e}");
    }

    /// `[sources.disabled]` is a tagged enum (default `none`), as is the source
    /// itself: keys of another kind, unknown kinds and missing keys are named.
    #[test]
    fn ldap_disabled_kinds_name_the_key() {
        let e = source_error(&format!(
            "{LDAP}[sources.disabled]\nkind = \"ns_account_lock\"\nfilter = \"(x=1)\"\n"
        ));
        assert_eq!(e.key, "sources[0].disabled.filter", "{e}");
        assert!(
            e.message
                .contains("does not apply to kind = \"ns_account_lock\""),
            "{e}"
        );
        assert!(e.message.contains("a key of kind = \"filter\""), "{e}");
        let e = source_error(&format!("{LDAP}[sources.disabled]\nvalues = [\"x\"]\n"));
        assert_eq!(e.key, "sources[0].disabled.values", "{e}");
        assert!(e.message.contains("kind = \"none\""), "{e}");
        let e = source_error(&format!("{LDAP}[sources.disabled]\nkind = \"locked\"\n"));
        assert_eq!(e.key, "sources[0].disabled.kind", "{e}");
        assert!(
            e.message.contains(
                "none, ad_user_account_control, ns_account_lock, pwd_account_locked_time, attribute or filter"
            ),
            "{e}"
        );
        let e = source_error(&format!(
            "{LDAP}[sources.disabled]\nkind = \"attribute\"\nvalues = [\"x\"]\n"
        ));
        assert_eq!(e.key, "sources[0].disabled.attribute", "{e}");
        assert!(
            e.message.contains("kind = \"attribute\" needs `attribute`"),
            "{e}"
        );
        let e = source_error(&LDAP.replace("base_dn = \"dc=x\"\n", ""));
        assert_eq!(e.key, "sources[0].base_dn", "{e}");
        assert!(e.message.contains("kind = \"ldap\" needs `base_dn`"), "{e}");
        // A key of an HR kind on an LDAP source.
        let e = source_error(&format!("{LDAP}records = \"/people\"\n"));
        assert_eq!(e.key, "sources[0].records", "{e}");
        assert!(e.message.contains("a key of kind = \"http\""), "{e}");
    }

    #[test]
    fn example_source_configs_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let base = std::fs::read_to_string(dir.join("rosterd.toml")).unwrap();
        // Without the demo HR source, which the examples replace.
        let base = base[..base.find("# ---- demo HR source").unwrap_or(base.len())].to_string();
        let pw = dir.join("rosterd.toml"); // any readable file stands in for a password file
        for example in [
            "sources-openldap.example.toml",
            "sources-activedirectory.example.toml",
            "sources-bamboohr.example.toml",
            "sources-workday.example.toml",
        ] {
            let text = std::fs::read_to_string(dir.join(example))
                .unwrap()
                .replace("/etc/rosterd/ldap.password", &pw.display().to_string())
                .replace("/etc/rosterd/ad.password", &pw.display().to_string())
                .replace("/etc/rosterd/bamboohr.key", &pw.display().to_string())
                .replace("/etc/rosterd/workday.token", &pw.display().to_string())
                .replace("ca_file = \"/etc/rosterd/corp-root-ca.pem\"", "");
            let c = parse(Path::new(example), &format!("{base}\n{text}"), &[])
                .unwrap_or_else(|e| panic!("{example}: {e}"));
            assert_eq!(c.sources.len(), 1, "{example}");
        }
    }

    #[test]
    fn shipped_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rosterd.toml");
        let c = load_with_env(&path, Vec::new()).unwrap();
        assert!(c.catalog.roles().count() >= 2);
        assert!(c.catalog.positions().count() >= 2);
    }
}
