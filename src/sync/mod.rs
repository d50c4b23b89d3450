//! The sync engine: fetch (at the edge: [`sources`]) → map (pure: [`map`]) → vet
//! (pure: [`vet`]; an unusable optional value is left out with a warning) → plan
//! (pure: [`plan`]) → apply through the domain operations ([`engine`]), with every
//! run recorded ([`runs`]) and scheduled by cron ([`scheduler`]).
//!
//! Safety rules, enforced in [`engine`]: a fetch that fails or is truncated stops
//! the run before anything is planned; a full run that returns nothing deactivates
//! nobody; a plan that would deactivate more than the source's threshold is held
//! until an admin approves it; a profile an admin deactivated stays deactivated.

pub mod config;
pub mod engine;
pub mod lease;
pub mod map;
pub mod metrics;
pub mod plan;
pub mod progress;
pub mod runs;
pub mod scheduler;
pub mod sources;
pub mod vet;

use serde::{Deserialize, Serialize};

pub use engine::{SyncEngine, SyncError};

/// A full run sees every entry and deactivates absentees; an incremental run asks
/// only for changes since the last applied run (its content-sync cookie or its
/// high-water mark) and deactivates nobody by absence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Full,
    Incremental,
}

/// One directory entry as fetched: DN, join key, text and binary attributes
/// (attribute names lowercased), and what the edge worked out about it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub dn: String,
    /// Attribute name (lowercase) → values.
    pub attrs: std::collections::BTreeMap<String, Vec<String>>,
    /// Binary values the mapping reads as bytes (the photo), by attribute name
    /// (lowercase). Other binary values are left out (a binary join key is in
    /// `attrs` as hex).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub bin_attrs: std::collections::BTreeMap<String, Vec<Vec<u8>>>,
    /// Disabled according to a server-side filter (`disabled.kind = "filter"`).
    #[serde(default)]
    pub disabled_by_filter: bool,
    /// Lowercased DNs of every group the entry belongs to, nested groups included.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Lowercases a DN and drops spaces around separators, so DNs compare reliably.
pub fn normalize_dn(dn: &str) -> String {
    // The common case (every entry's DN is normalised once per fetch): nothing to
    // trim, so lowercasing is all there is to do.
    if dn.is_ascii() && !dn.bytes().any(|b| char::from(b).is_whitespace()) {
        return dn.to_ascii_lowercase();
    }
    normalize_dn_by_parts(dn)
}

fn normalize_dn_by_parts(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| {
            rdn.split('=')
                .map(|p| p.trim().to_lowercase())
                .collect::<Vec<_>>()
                .join("=")
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_fast_path_agrees_with_the_general_one() {
        for dn in [
            "uid=U1,ou=People,dc=Example,dc=com",
            "uid=u1, ou=people ,dc=example",
            "CN=Ann\\, Smith,OU=Ünits,DC=x",
            "cn=a\x0b,dc=x",
            "cn=tab\there,dc=x",
            "",
        ] {
            assert_eq!(normalize_dn(dn), normalize_dn_by_parts(dn), "{dn}");
        }
    }
}
