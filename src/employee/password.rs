//! Passwords: checked against the policy in force and hashed with argon2id
//! on a blocking thread (never on a request worker).

use super::{Error, PasswordHash, Roster};
use crate::secret::Secret;

impl Roster {
    /// Checks a password against the policy and hashes it with argon2id.
    pub(super) async fn hash_password(&self, password: &Secret) -> Result<PasswordHash, Error> {
        self.policy
            .check(password.expose())
            .map_err(|m| Error::invalid("password", m.to_string()))?;
        self.hash(password).await
    }
    /// Hashes a password with argon2id, on a blocking thread; no policy check
    /// (an identity provider's password, under its own policy).
    pub(super) async fn hash(&self, password: &Secret) -> Result<PasswordHash, Error> {
        if password.expose().is_empty() {
            return Err(Error::invalid("password", "must not be empty"));
        }
        let password = password.clone();
        let hash = tokio::task::spawn_blocking(move || {
            use argon2::password_hash::PasswordHasher;
            argon2::Argon2::default()
                .hash_password(password.expose().as_bytes())
                .map(|h| h.to_string())
        })
        .await
        .map_err(|e| Error::invalid("password", format!("hashing failed: {e}")))?
        .map_err(|e| Error::invalid("password", format!("hashing failed: {e}")))?;
        Ok(PasswordHash(hash))
    }
}
