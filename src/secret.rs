//! Secrets in memory: a wrapper whose `Debug` and `Display` never print the value,
//! random token generation and the hashing used to store and compare tokens.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A secret string (token, password). Printing it shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Call sites are few and greppable on purpose.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A fresh random token: 32 bytes from the OS, hex-encoded (256 bits).
pub fn random_token() -> Secret {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    Secret(hex::encode(bytes))
}

/// SHA-256 of a token. Tokens are high-entropy, so a fast hash is the right tool
/// (argon2 is for passwords); only the digest is kept in memory or on disk.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two digests in constant time.
pub fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_its_value() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn random_tokens_differ_and_are_256_bits() {
        let a = random_token();
        let b = random_token();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 64);
    }

    #[test]
    fn digest_comparison() {
        let d = token_digest("abc");
        assert!(digest_eq(&d, &token_digest("abc")));
        assert!(!digest_eq(&d, &token_digest("abd")));
    }
}
