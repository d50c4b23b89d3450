//! The configuration helpers every section's parser shares: [`ConfigError`]
//! (which file, which key, what is wrong), secrets read from a `*_file` or
//! `*_env` key ([`read_secret`], with systemd's credentials directory), and the
//! named tokens they make. A leaf: it imports nothing of the crate but
//! [`crate::secret`], so `config`, `mail::config`, `sync::config` and the HR
//! sources can all use it without importing one another.

use std::path::{Path, PathBuf};

use crate::secret::Secret;

/// A configuration error: which file, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.display().to_string(),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A token with the name that the audit log records for it.
#[derive(Debug, Clone)]
pub struct NamedToken {
    pub name: String,
    pub token: Secret,
}

/// A relative secret file is looked up in systemd's `$CREDENTIALS_DIRECTORY`
/// first (`LoadCredential=ldap.password:/etc/...` + `bind_password_file =
/// "ldap.password"`), then relative to the working directory.
pub fn credential_path(file: &Path, env: &[(String, String)]) -> PathBuf {
    if file.is_relative()
        && let Some((_, dir)) = env.iter().find(|(k, _)| k == "CREDENTIALS_DIRECTORY")
    {
        let candidate = Path::new(dir).join(file);
        if candidate.exists() {
            return candidate;
        }
    }
    file.to_path_buf()
}

/// Reads a secret from exactly one of `*_file` / `*_env`.
pub fn read_secret(
    path: &Path,
    key: &str,
    file: Option<&Path>,
    env_name: Option<&str>,
    env: &[(String, String)],
) -> Result<Secret, ConfigError> {
    let value = match (file, env_name) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                path,
                key,
                "set either token_file or token_env, not both",
            ));
        }
        (None, None) => {
            return Err(ConfigError::new(
                path,
                key,
                "set token_file (a file holding the token) or token_env (an environment variable)",
            ));
        }
        (Some(f), None) => {
            let f = credential_path(f, env);
            std::fs::read_to_string(&f).map_err(|e| {
                ConfigError::new(
                    path,
                    format!("{key}.token_file"),
                    format!("cannot read {}: {e}", f.display()),
                )
            })?
        }
        (None, Some(name)) => env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                ConfigError::new(
                    path,
                    format!("{key}.token_env"),
                    format!("environment variable {name} is not set"),
                )
            })?,
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(ConfigError::new(path, key, "the token is empty"));
    }
    Ok(Secret::new(value))
}
