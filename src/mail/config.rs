//! `[mail]` (SMTP, sender, links, retries) and `[accounts]` (token lifetimes, login
//! rate limits) as the operator writes them, and their validated forms. Without a
//! `[mail]` section mail is off: messages still go to the outbox and wait there.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use serde::Deserialize;

use crate::config_helpers::{ConfigError, credential_path};
use crate::employee::TokenLifetimes;
use crate::secret::Secret;

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text (only for a relay on localhost or a trusted network).
    None,
    /// Plain connection upgraded with STARTTLS (required, not opportunistic).
    Starttls,
    /// TLS from the first byte ("SMTPS", usually port 465).
    Implicit,
}

/// `[mail]` in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSection {
    /// SMTP server host name.
    pub host: String,
    /// SMTP port [default: 25 with tls = "none", 587 with "starttls", 465 with "implicit"].
    pub port: Option<u16>,
    /// `none`, `starttls` (default) or `implicit`.
    #[serde(default = "default_tls")]
    pub tls: TlsMode,
    /// SMTP AUTH user name; without it, no authentication.
    pub username: Option<String>,
    /// File holding the SMTP password (with `username`).
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the SMTP password (with `username`).
    pub password_env: Option<String>,
    /// Sender, e.g. `"Acme Fleet <no-reply@acme.example>"`.
    pub from: String,
    /// Optional Reply-To address.
    pub reply_to: Option<String>,
    /// Company name used in the messages.
    pub company_name: String,
    /// Base URL of the sign-in pages; links are `<base_url>/accept-invite?token=…`
    /// and `<base_url>/reset-password?token=…`.
    pub base_url: String,
    /// Directory with template overrides (`invite.txt`, `invite.html`, `reset.txt`,
    /// `reset.html`) [default: `templates/` next to the config file].
    pub templates_dir: Option<PathBuf>,
    /// Attempts before a message is kept as dead.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait before the second attempt, seconds; doubles after each failure.
    #[serde(default = "default_backoff_initial")]
    pub backoff_initial_secs: f64,
    /// Longest wait between two attempts, seconds.
    #[serde(default = "default_backoff_max")]
    pub backoff_max_secs: f64,
    /// How often the worker looks for due messages, seconds.
    #[serde(default = "default_poll")]
    pub poll_interval_secs: f64,
    /// SMTP connect and command timeout, seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_tls() -> TlsMode {
    TlsMode::Starttls
}
fn default_max_attempts() -> u32 {
    10
}
fn default_backoff_initial() -> f64 {
    30.0
}
fn default_backoff_max() -> f64 {
    3600.0
}
fn default_poll() -> f64 {
    2.0
}
fn default_timeout() -> u64 {
    30
}

/// `[accounts]` in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsSection {
    /// How long an invitation link works, seconds (7 days).
    pub invite_ttl_secs: f64,
    /// How long a password-reset link works, seconds (1 hour).
    pub reset_ttl_secs: f64,
    /// Failed sign-ins per account within `login_window_secs` before it is refused (429).
    pub login_max_failures: u32,
    /// Sign-in attempts per client address within `login_window_secs` (429 beyond).
    pub login_max_attempts_per_address: u32,
    /// The rate-limit window, seconds.
    pub login_window_secs: u64,
}

impl Default for AccountsSection {
    fn default() -> Self {
        Self {
            invite_ttl_secs: 7.0 * 24.0 * 3600.0,
            reset_ttl_secs: 3600.0,
            login_max_failures: 5,
            login_max_attempts_per_address: 30,
            login_window_secs: 300,
        }
    }
}

/// Validated `[mail]`.
#[derive(Debug, Clone)]
pub struct MailConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// User name and password for SMTP AUTH.
    pub credentials: Option<(String, Secret)>,
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub company_name: String,
    /// Without a trailing slash.
    pub base_url: String,
    pub templates_dir: PathBuf,
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub poll_interval: Duration,
    pub timeout: Duration,
}

/// Validated `[accounts]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountSettings {
    pub invite_ttl: Duration,
    pub reset_ttl: Duration,
    pub login_max_failures: u32,
    pub login_max_attempts_per_address: u32,
    pub login_window: Duration,
}

impl Default for AccountSettings {
    fn default() -> Self {
        validate_accounts(Path::new("-"), AccountsSection::default())
            .unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }
}

/// The domain's part of `[accounts]`: the links' lifetimes.
impl From<AccountSettings> for TokenLifetimes {
    fn from(a: AccountSettings) -> Self {
        TokenLifetimes {
            invite: a.invite_ttl,
            reset: a.reset_ttl,
        }
    }
}

fn secs(file: &Path, key: &str, v: f64, min: f64) -> Result<Duration, ConfigError> {
    if !v.is_finite() || v < min || v > 1e9 {
        return Err(ConfigError {
            file: file.display().to_string(),
            key: key.into(),
            message: format!("must be a number of seconds, at least {min}"),
        });
    }
    Ok(Duration::from_secs_f64(v))
}

pub fn validate_accounts(file: &Path, a: AccountsSection) -> Result<AccountSettings, ConfigError> {
    let err = |key: &str, m: &str| ConfigError {
        file: file.display().to_string(),
        key: format!("accounts.{key}"),
        message: m.into(),
    };
    if a.login_max_failures == 0 {
        return Err(err("login_max_failures", "must be at least 1"));
    }
    if a.login_max_attempts_per_address == 0 {
        return Err(err("login_max_attempts_per_address", "must be at least 1"));
    }
    if a.login_window_secs == 0 {
        return Err(err("login_window_secs", "must be at least 1"));
    }
    Ok(AccountSettings {
        invite_ttl: secs(file, "accounts.invite_ttl_secs", a.invite_ttl_secs, 0.001)?,
        reset_ttl: secs(file, "accounts.reset_ttl_secs", a.reset_ttl_secs, 0.001)?,
        login_max_failures: a.login_max_failures,
        login_max_attempts_per_address: a.login_max_attempts_per_address,
        login_window: Duration::from_secs(a.login_window_secs),
    })
}

/// `mail.<key>: <message>` in `file`.
fn mail_err(file: &Path, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::new(file, format!("mail.{key}"), message)
}

/// Validates `[mail]`, step by step in the order the keys are documented.
pub fn validate_mail(
    file: &Path,
    m: MailSection,
    env: &[(String, String)],
) -> Result<MailConfig, ConfigError> {
    if m.host.trim().is_empty() {
        return Err(mail_err(
            file,
            "host",
            "must not be empty; set [mail].host or remove [mail] to turn mail off",
        ));
    }
    let port = smtp_port(file, m.port, m.tls)?;
    let credentials = smtp_credentials(file, &m, env)?;
    let (from, reply_to) = addresses(file, &m)?;
    if m.company_name.trim().is_empty() {
        return Err(mail_err(file, "company_name", "must not be empty"));
    }
    let base_url = base_url(file, &m.base_url)?;
    let retries = retries(file, &m)?;
    let templates_dir = match m.templates_dir {
        Some(d) if d.is_absolute() => d,
        Some(d) => config_dir(file).join(d),
        None => config_dir(file).join("templates"),
    };
    Ok(MailConfig {
        host: m.host.trim().to_string(),
        port,
        tls: m.tls,
        credentials,
        from,
        reply_to,
        company_name: m.company_name.trim().to_string(),
        base_url,
        templates_dir,
        max_attempts: m.max_attempts,
        backoff_initial: retries.backoff_initial,
        backoff_max: retries.backoff_max,
        poll_interval: retries.poll_interval,
        timeout: Duration::from_secs(m.timeout_secs.max(1)),
    })
}

/// `port`, defaulting by `tls` (25, 587, 465).
fn smtp_port(file: &Path, port: Option<u16>, tls: TlsMode) -> Result<u16, ConfigError> {
    let port = port.unwrap_or(match tls {
        TlsMode::None => 25,
        TlsMode::Starttls => 587,
        TlsMode::Implicit => 465,
    });
    if port == 0 {
        return Err(mail_err(file, "port", "must not be 0"));
    }
    Ok(port)
}

/// `username` with the password from `password_file` or `password_env`, or
/// none of the three (no SMTP AUTH).
fn smtp_credentials(
    file: &Path,
    m: &MailSection,
    env: &[(String, String)],
) -> Result<Option<(String, Secret)>, ConfigError> {
    match (&m.username, &m.password_file, &m.password_env) {
        (None, None, None) => Ok(None),
        (None, _, _) => Err(mail_err(
            file,
            "username",
            "is required with password_file / password_env",
        )),
        (Some(_), Some(_), Some(_)) => Err(mail_err(
            file,
            "password_file",
            "set either password_file or password_env, not both",
        )),
        (Some(_), None, None) => Err(mail_err(
            file,
            "password_file",
            "set password_file or password_env for the SMTP user",
        )),
        (Some(u), Some(f), None) => {
            let f = &credential_path(f, env);
            let text = std::fs::read_to_string(f).map_err(|e| {
                mail_err(
                    file,
                    "password_file",
                    format!("cannot read {}: {e}", f.display()),
                )
            })?;
            Ok(Some((u.clone(), Secret::new(text.trim()))))
        }
        (Some(u), None, Some(name)) => {
            let v = env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim().to_string())
                .ok_or_else(|| {
                    mail_err(
                        file,
                        "password_env",
                        format!("environment variable {name} is not set"),
                    )
                })?;
            Ok(Some((u.clone(), Secret::new(v))))
        }
    }
}

/// `from` and `reply_to`, parsed as mailboxes.
fn addresses(file: &Path, m: &MailSection) -> Result<(Mailbox, Option<Mailbox>), ConfigError> {
    let from: Mailbox = m.from.parse().map_err(|e| {
        mail_err(
            file,
            "from",
            format!(
                "`{}` is not an address ({e}); e.g. \"Acme <no-reply@acme.example>\"",
                m.from
            ),
        )
    })?;
    let reply_to =
        match &m.reply_to {
            Some(r) => Some(r.parse::<Mailbox>().map_err(|e| {
                mail_err(file, "reply_to", format!("`{r}` is not an address ({e})"))
            })?),
            None => None,
        };
    Ok((from, reply_to))
}

/// `base_url`: an http(s) URL without a query, kept without its trailing slash.
fn base_url(file: &Path, raw: &str) -> Result<String, ConfigError> {
    let base = url::Url::parse(raw).map_err(|e| {
        mail_err(
            file,
            "base_url",
            format!("`{raw}` is not a URL ({e}); e.g. \"https://fleet.acme.example\""),
        )
    })?;
    if !matches!(base.scheme(), "http" | "https") || base.query().is_some() {
        return Err(mail_err(
            file,
            "base_url",
            "must be an http(s) URL without a query string",
        ));
    }
    Ok(raw.trim_end_matches('/').to_string())
}

/// The outbox worker's timing.
struct Retries {
    backoff_initial: Duration,
    backoff_max: Duration,
    poll_interval: Duration,
}

/// `max_attempts`, the backoff bounds and the poll interval.
fn retries(file: &Path, m: &MailSection) -> Result<Retries, ConfigError> {
    if m.max_attempts == 0 {
        return Err(mail_err(file, "max_attempts", "must be at least 1"));
    }
    let backoff_initial = secs(
        file,
        "mail.backoff_initial_secs",
        m.backoff_initial_secs,
        0.01,
    )?;
    let backoff_max = secs(file, "mail.backoff_max_secs", m.backoff_max_secs, 0.01)?;
    if backoff_max < backoff_initial {
        return Err(mail_err(
            file,
            "backoff_max_secs",
            "must be at least backoff_initial_secs",
        ));
    }
    Ok(Retries {
        backoff_initial,
        backoff_max,
        poll_interval: secs(file, "mail.poll_interval_secs", m.poll_interval_secs, 0.01)?,
    })
}

fn config_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const BASE: &str = r#"
[catalog]
permissions = ["a"]
[[catalog.roles]]
name = "R"
permissions = ["a"]
"#;

    fn parse(extra: &str, env: &[(&str, &str)]) -> Result<crate::config::Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        crate::config::parse(
            Path::new("/etc/rosterd/rosterd.toml"),
            &format!("{BASE}{extra}"),
            &env,
        )
    }

    use super::*;

    const MAIL: &str = r#"
[mail]
host = "smtp.example.com"
username = "rosterd"
password_env = "SMTP_PW"
from = "Acme <no-reply@acme.example>"
company_name = "Acme"
base_url = "https://fleet.acme.example/"
"#;

    #[test]
    fn mail_is_off_without_the_section_and_accounts_have_defaults() {
        let c = parse("", &[]).unwrap();
        assert!(c.mail.is_none());
        assert_eq!(c.accounts.invite_ttl, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(c.accounts.reset_ttl, Duration::from_secs(3600));
    }

    #[test]
    fn mail_section_validates_into_settings() {
        let c = parse(MAIL, &[("SMTP_PW", "s3cret")]).unwrap();
        let m = c.mail.clone().unwrap();
        assert_eq!((m.port, m.tls), (587, TlsMode::Starttls));
        assert_eq!(m.base_url, "https://fleet.acme.example");
        assert_eq!(m.templates_dir, Path::new("/etc/rosterd/templates"));
        let (user, pw) = m.credentials.unwrap();
        assert_eq!((user.as_str(), pw.expose()), ("rosterd", "s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn mail_errors_name_the_key() {
        let e = parse(MAIL, &[]).unwrap_err();
        assert_eq!(e.key, "mail.password_env");
        let e = parse(
            &MAIL.replace("Acme <no-reply@acme.example>", "nobody"),
            &[("SMTP_PW", "x")],
        )
        .unwrap_err();
        assert_eq!(e.key, "mail.from");
        let e = parse(&format!("{MAIL}tls = \"ssl\"\n"), &[("SMTP_PW", "x")]).unwrap_err();
        assert!(e.key.contains("tls"), "{e}");
        let e = parse(&format!("{MAIL}hots = \"x\"\n"), &[("SMTP_PW", "x")]).unwrap_err();
        assert!(e.to_string().contains("hots"), "{e}");
        let e = parse("[accounts]\nreset_ttl_secs = 0\n", &[]).unwrap_err();
        assert_eq!(e.key, "accounts.reset_ttl_secs");
    }
}
