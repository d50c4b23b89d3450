//! `[store]`: which backend holds the roster. `sled` (the default) is the
//! embedded store under `data_dir`; `postgres` is a PostgreSQL database shared
//! by every rosterd node (see [`super::postgres`]).
//!
//! A PostgreSQL URL may carry a password: it is a [`Secret`] (read from `url`,
//! `url_file` or `url_env`), never logged, and every message that names the
//! database shows it through [`redact_url`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config_helpers::{ConfigError, NoKeys, Tagged, tagged_enum};
use crate::secret::Secret;

tagged_enum! {
    /// `[store]` in the file: `backend` picks the keys.
    #[derive(Debug)]
    pub enum StoreBackend {
        tag = "backend";
        default = "sled";
        /// The embedded store under `data_dir` (the default): no other keys.
        "sled" => Sled(NoKeys),
        /// A PostgreSQL database shared by every rosterd node.
        "postgres" => Postgres(PostgresSection),
    }
}

/// `[store]` as written, read into a [`StoreBackend`] by [`validate`].
pub type StoreSection = Tagged<StoreBackend>;

/// The keys of `backend = "postgres"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    /// The PostgreSQL URL (`postgres://user@host:port/db`). A URL carrying a
    /// password belongs in `url_file` or `url_env`.
    pub url: Option<Secret>,
    /// File holding the PostgreSQL URL (surrounding whitespace is ignored).
    pub url_file: Option<PathBuf>,
    /// Environment variable holding the PostgreSQL URL.
    pub url_env: Option<String>,
    /// Connections in the pool [default: 10].
    pub pool_size: Option<u32>,
    /// Seconds to wait for a connection from the pool (or a new one) [default: 10].
    pub connect_timeout_secs: Option<u64>,
    /// Seconds a statement may run before the server cancels it [default: 30].
    pub statement_timeout_secs: Option<u64>,
    /// Seconds a sync run's source lease (and a claimed outbox message) lasts
    /// unless renewed; another node takes over a dead node's run after it
    /// [default: 30].
    pub lease_ttl_secs: Option<u64>,
}

/// The validated `[store]`.
#[derive(Debug, Clone, Default)]
pub enum StoreConfig {
    /// The embedded sled store under `data_dir`.
    #[default]
    Sled,
    Postgres(PgSettings),
}

/// `lease_ttl_secs` when not set.
pub const DEFAULT_LEASE_TTL_SECS: u64 = 30;

/// How to reach the PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgSettings {
    pub url: Secret,
    pub pool_size: u32,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    /// How long a lease or claim lasts unless renewed (`lease_ttl_secs`).
    pub lease_ttl: Duration,
}

impl PgSettings {
    /// Settings with the defaults for `url` (tools, tests).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Secret::new(url),
            pool_size: 10,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(DEFAULT_LEASE_TTL_SECS),
        }
    }

    /// The URL with its password (if any) replaced by `***`.
    pub fn redacted_url(&self) -> String {
        redact_url(self.url.expose())
    }
}

/// `url` with the password replaced by `***` (and the whole of it hidden when
/// it does not parse, since then we cannot tell where a password would be).
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            // A password may also be a query parameter.
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k.eq_ignore_ascii_case("password") {
                        "***".to_string()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            if !pairs.is_empty() {
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        Err(_) => "(an unparsable URL)".into(),
    }
}

/// Validates `[store]`; `file` names the config in messages.
pub fn validate(
    file: &Path,
    s: StoreSection,
    env: &[(String, String)],
) -> Result<StoreConfig, ConfigError> {
    let err = |key: &str, message: String| ConfigError {
        file: file.display().to_string(),
        key: format!("store.{key}"),
        message,
    };
    let s = match s.read().map_err(|e| err(&e.key, e.message))? {
        StoreBackend::Sled(NoKeys {}) => return Ok(StoreConfig::Sled),
        StoreBackend::Postgres(p) => p,
    };
    let url = match (s.url, &s.url_file, &s.url_env) {
        (Some(u), None, None) => u,
        (None, Some(f), None) => {
            let f = crate::config_helpers::credential_path(f, env);
            let text = std::fs::read_to_string(&f)
                .map_err(|e| err("url_file", format!("cannot read {}: {e}", f.display())))?;
            Secret::new(text.trim())
        }
        (None, None, Some(name)) => env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| Secret::new(v.trim()))
            .ok_or_else(|| err("url_env", format!("environment variable {name} is not set")))?,
        (None, None, None) => {
            return Err(err(
                "url",
                "backend = \"postgres\" needs url, url_file or url_env".into(),
            ));
        }
        _ => {
            return Err(err(
                "url",
                "set only one of url, url_file and url_env".into(),
            ));
        }
    };
    // Never echo the URL itself: it may hold a password.
    match url::Url::parse(url.expose()) {
        Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {}
        Ok(u) => {
            return Err(err(
                "url",
                format!(
                    "has scheme `{}`; use postgres://user@host:port/database",
                    u.scheme()
                ),
            ));
        }
        Err(e) => {
            return Err(err(
                "url",
                format!("is not a URL ({e}); use postgres://user@host:port/database"),
            ));
        }
    }
    let mut pg = PgSettings::new(url.expose());
    if let Some(n) = s.pool_size {
        if n == 0 {
            return Err(err("pool_size", "must be at least 1".into()));
        }
        pg.pool_size = n;
    }
    if let Some(n) = s.connect_timeout_secs {
        if n == 0 {
            return Err(err("connect_timeout_secs", "must be at least 1".into()));
        }
        pg.connect_timeout = Duration::from_secs(n);
    }
    if let Some(n) = s.statement_timeout_secs {
        if n == 0 {
            return Err(err("statement_timeout_secs", "must be at least 1".into()));
        }
        pg.statement_timeout = Duration::from_secs(n);
    }
    if let Some(n) = s.lease_ttl_secs {
        if n == 0 {
            return Err(err("lease_ttl_secs", "must be at least 1".into()));
        }
        pg.lease_ttl = Duration::from_secs(n);
    }
    Ok(StoreConfig::Postgres(pg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<StoreConfig, ConfigError> {
        let s: StoreSection = toml::from_str(text).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        validate(Path::new("t.toml"), s, &env)
    }

    #[test]
    fn sled_is_the_default_and_refuses_postgres_keys() {
        assert!(matches!(parse("", &[]).unwrap(), StoreConfig::Sled));
        let e = parse("pool_size = 3", &[]).unwrap_err();
        assert_eq!(e.key, "store.pool_size");
        assert!(e.message.contains("backend = \"postgres\""), "{e}");
    }

    #[test]
    fn an_unknown_backend_or_key_lists_the_known_ones() {
        let e = parse("backend = \"mysql\"", &[]).unwrap_err();
        assert_eq!(e.key, "store.backend");
        assert!(e.message.contains("use sled or postgres"), "{e}");
        let e = parse(
            "backend = \"postgres\"\nurl = \"postgres://u:hunter2@h/d\"\npool = 3",
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key, "store.pool");
        assert!(
            e.message
                .contains("takes url, url_file, url_env, pool_size"),
            "{e}"
        );
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn postgres_url_from_each_source_and_never_in_errors() {
        let c = parse(
            "backend = \"postgres\"\nurl_env = \"PGURL\"\npool_size = 4",
            &[("PGURL", "postgres://u:hunter2@127.0.0.1:5/db")],
        )
        .unwrap();
        let StoreConfig::Postgres(pg) = c else {
            panic!("postgres")
        };
        assert_eq!(pg.pool_size, 4);
        assert_eq!(pg.redacted_url(), "postgres://u:***@127.0.0.1:5/db");
        assert!(!format!("{pg:?}").contains("hunter2"));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("url");
        std::fs::write(&f, "postgresql://x@h/db?password=hunter2\n").unwrap();
        let c = parse(
            &format!("backend = \"postgres\"\nurl_file = \"{}\"", f.display()),
            &[],
        )
        .unwrap();
        let StoreConfig::Postgres(pg) = c else {
            panic!("postgres")
        };
        assert_eq!(pg.url.expose(), "postgresql://x@h/db?password=hunter2");
        assert!(
            !pg.redacted_url().contains("hunter2"),
            "{}",
            pg.redacted_url()
        );
        // A bad URL is refused without being echoed.
        let e = parse(
            "backend = \"postgres\"\nurl = \"mysql://u:hunter2@h/db\"",
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key, "store.url");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = parse("backend = \"postgres\"\nurl = \"u:hunter2 nonsense\"", &[]).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = parse("backend = \"postgres\"", &[]).unwrap_err();
        assert!(e.message.contains("url_file"), "{e}");
        let e = parse("backend = \"postgres\"\nurl_env = \"NOPE\"", &[]).unwrap_err();
        assert_eq!(e.key, "store.url_env");
        let e = parse(
            "backend = \"postgres\"\nurl = \"postgres://h/d\"\npool_size = 0",
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key, "store.pool_size");
    }
}
