//! Bearer tokens: kept only as SHA-256 digests, compared in constant time, each
//! with the name the audit log records for changes made with it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::config_helpers::NamedToken;
use crate::secret::{Secret, digest_eq, random_token, token_digest};

/// Name the audit log records for the generated admin token.
pub const GENERATED_TOKEN_NAME: &str = "admin";
/// File name of the generated admin token inside the data directory.
pub const GENERATED_TOKEN_FILE: &str = "admin.token";

/// A set of named tokens.
#[derive(Debug, Clone, Default)]
pub struct TokenSet {
    tokens: Vec<(String, [u8; 32])>,
}

impl TokenSet {
    pub fn new(tokens: &[NamedToken]) -> Self {
        Self {
            tokens: tokens
                .iter()
                .map(|t| (t.name.clone(), token_digest(t.token.expose())))
                .collect(),
        }
    }

    /// The name of the token presented, if it is one of the set. Every stored digest
    /// is compared (in constant time), so timing does not tell which one matched.
    pub fn verify(&self, presented: &str) -> Option<&str> {
        let d = token_digest(presented);
        let mut found = None;
        for (name, digest) in &self.tokens {
            if digest_eq(&d, digest) && found.is_none() {
                found = Some(name.as_str());
            }
        }
        found
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The name of the token with this digest, if it is still one of the set (a
    /// web console session signed in with a token ends when a reload drops it).
    pub fn name_of_digest(&self, digest: &[u8; 32]) -> Option<&str> {
        let mut found = None;
        for (name, d) in &self.tokens {
            if digest_eq(digest, d) && found.is_none() {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// A [`TokenSet`] that a config reload can replace while requests use it: cheap to
/// clone; readers take a snapshot and never hold the lock across `.await`.
#[derive(Debug, Clone, Default)]
pub struct SharedTokens(Arc<RwLock<Arc<TokenSet>>>);

impl SharedTokens {
    pub fn new(tokens: TokenSet) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(tokens))))
    }

    /// The tokens in force.
    pub fn current(&self) -> Arc<TokenSet> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts `tokens` in force for every request that starts afterwards.
    pub fn replace(&self, tokens: TokenSet) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(tokens);
    }

    /// The name of the token presented, if it is one of the set in force.
    pub fn verify(&self, presented: &str) -> Option<String> {
        self.current().verify(presented).map(str::to_string)
    }
}

/// File name of the generated SCIM token inside the data directory.
pub const GENERATED_SCIM_TOKEN_FILE: &str = "scim.token";

/// Reads `<data_dir>/admin.token`, creating it (mode 0600) with a fresh random
/// token if it does not exist. Returns the token and the file's path.
pub fn ensure_generated_admin_token(data_dir: &Path) -> std::io::Result<(Secret, PathBuf, bool)> {
    ensure_generated_token(data_dir, GENERATED_TOKEN_FILE)
}

/// Reads `<data_dir>/<file>`, creating it (mode 0600) with a fresh random token if
/// it does not exist. Returns the token, the path, and whether it was created.
pub fn ensure_generated_token(
    data_dir: &Path,
    file: &str,
) -> std::io::Result<(Secret, PathBuf, bool)> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok((Secret::new(s.trim()), path, false)),
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} is empty; delete it to have a new token generated",
                    path.display()
                ),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let token = random_token();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(token.expose().as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok((token, path, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_names_the_matching_token() {
        let set = TokenSet::new(&[
            NamedToken {
                name: "ops".into(),
                token: Secret::new("token-one-0123456789"),
            },
            NamedToken {
                name: "ci".into(),
                token: Secret::new("token-two-0123456789"),
            },
        ]);
        assert_eq!(set.verify("token-two-0123456789"), Some("ci"));
        assert_eq!(set.verify("token-two-012345678"), None);
        assert_eq!(set.verify(""), None);
    }

    #[test]
    fn shared_tokens_are_replaced_for_every_clone() {
        let named = |name: &str, token: &str| NamedToken {
            name: name.into(),
            token: Secret::new(token),
        };
        let shared = SharedTokens::new(TokenSet::new(&[named("old", "token-old-0123456789")]));
        let handle = shared.clone();
        assert_eq!(
            handle.verify("token-old-0123456789").as_deref(),
            Some("old")
        );
        shared.replace(TokenSet::new(&[named("new", "token-new-0123456789")]));
        assert_eq!(handle.verify("token-old-0123456789"), None);
        assert_eq!(
            handle.verify("token-new-0123456789").as_deref(),
            Some("new")
        );
    }

    #[test]
    fn generated_token_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (t1, path, created) = ensure_generated_admin_token(dir.path()).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (t2, _, created) = ensure_generated_admin_token(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(t1, t2);
    }
}
