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

/// Makes a directory holding secrets (the data directory, the store) private:
/// created `0700` if missing, and with `recursive`, every directory under it
/// set to `0700` and every file to `0600`, whatever the process's umask (sled
/// creates its `conf`, `db`, `snap.*` and `blobs/` files with the umask's
/// default). Symbolic links are left alone.
pub fn restrict_dir(dir: &std::path::Path, recursive: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    if !recursive {
        return Ok(());
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
                stack.push(path);
            } else if kind.is_file() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}

/// Sets the process's umask to `077`, so that every file the daemon creates
/// later (sled's snapshots and blobs, token files) is private to its user
/// whatever umask it was started with. Returns the previous umask.
pub fn private_umask() -> u32 {
    // SAFETY: umask(2) only swaps the process's file-mode creation mask; it
    // cannot fail and touches no memory.
    unsafe { libc::umask(0o077) as u32 }
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
    fn a_restricted_dir_is_private_whatever_was_there() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir_all(dir.join("blobs")).unwrap();
        std::fs::write(dir.join("db"), "x").unwrap();
        std::fs::write(dir.join("blobs/1"), "x").unwrap();
        for p in ["", "blobs"] {
            std::fs::set_permissions(dir.join(p), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        for p in ["db", "blobs/1"] {
            std::fs::set_permissions(dir.join(p), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        restrict_dir(&dir, true).unwrap();
        let mode = |p: &str| std::fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(""), mode("blobs")), (0o700, 0o700));
        assert_eq!((mode("db"), mode("blobs/1")), (0o600, 0o600));
        restrict_dir(&tmp.path().join("new/deeper"), false).unwrap();
        assert_eq!(
            std::fs::metadata(tmp.path().join("new/deeper"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
    }

    #[test]
    fn digest_comparison() {
        let d = token_digest("abc");
        assert!(digest_eq(&d, &token_digest("abc")));
        assert!(!digest_eq(&d, &token_digest("abd")));
    }
}
