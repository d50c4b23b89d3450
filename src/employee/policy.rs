//! The plain values the domain's rules take, filled in by `config` at start
//! (the domain never imports `config`): the password policy for accounts with
//! credentials and the lifetimes of invitation and password-reset links.

use std::time::Duration;

use serde::Deserialize;

/// Password rules for accounts with credentials. `config` reads it as the
/// `[password_policy]` section as it is (every key optional, unknown keys
/// refused) and checks that the lengths make sense.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordPolicy {
    /// Minimum length in characters.
    pub min_length: usize,
    /// Maximum length in characters (argon2 input stays bounded).
    pub max_length: usize,
    /// Require at least one uppercase letter.
    pub require_uppercase: bool,
    /// Require at least one lowercase letter.
    pub require_lowercase: bool,
    /// Require at least one digit.
    pub require_digit: bool,
    /// Require at least one character that is neither a letter nor a digit.
    pub require_symbol: bool,
}

impl Default for PasswordPolicy {
    /// The defaults of `[password_policy]`: 12 to 256 characters, no class required.
    fn default() -> Self {
        Self {
            min_length: 12,
            max_length: 256,
            require_uppercase: false,
            require_lowercase: false,
            require_digit: false,
            require_symbol: false,
        }
    }
}

/// The rule a password breaks (the message never includes the password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRuleError {
    #[error("password must be at least {0} characters long")]
    TooShort(usize),
    #[error("password must be at most {0} characters long")]
    TooLong(usize),
    #[error("password must contain an uppercase letter")]
    NoUppercase,
    #[error("password must contain a lowercase letter")]
    NoLowercase,
    #[error("password must contain a digit")]
    NoDigit,
    #[error("password must contain a character that is not a letter or digit")]
    NoSymbol,
}

impl PasswordPolicy {
    /// Checks a password; the error says which rule it breaks (never the password).
    pub fn check(&self, password: &str) -> Result<(), PasswordRuleError> {
        let len = password.chars().count();
        if len < self.min_length {
            return Err(PasswordRuleError::TooShort(self.min_length));
        }
        if len > self.max_length {
            return Err(PasswordRuleError::TooLong(self.max_length));
        }
        let has = |f: fn(&char) -> bool| password.chars().any(|c| f(&c));
        if self.require_uppercase && !has(|c| c.is_uppercase()) {
            return Err(PasswordRuleError::NoUppercase);
        }
        if self.require_lowercase && !has(|c| c.is_lowercase()) {
            return Err(PasswordRuleError::NoLowercase);
        }
        if self.require_digit && !has(|c| c.is_ascii_digit()) {
            return Err(PasswordRuleError::NoDigit);
        }
        if self.require_symbol && !has(|c| !c.is_alphanumeric()) {
            return Err(PasswordRuleError::NoSymbol);
        }
        Ok(())
    }
}

/// How long the links the mails carry work (`[accounts] invite_ttl_secs`,
/// `reset_ttl_secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLifetimes {
    pub invite: Duration,
    pub reset: Duration,
}

impl Default for TokenLifetimes {
    /// The defaults of `[accounts]`: 7 days for an invitation, 1 hour for a reset.
    fn default() -> Self {
        Self {
            invite: Duration::from_secs(7 * 24 * 3600),
            reset: Duration::from_secs(3600),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_policy_rules() {
        let mut pol = PasswordPolicy::default();
        assert!(pol.check("short").is_err());
        assert!(pol.check("long enough passphrase").is_ok());
        pol.require_digit = true;
        assert!(
            pol.check("long enough passphrase")
                .unwrap_err()
                .to_string()
                .contains("digit")
        );
        assert!(pol.check("long enough passphrase 7").is_ok());
    }
}
