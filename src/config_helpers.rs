//! The configuration helpers every section's parser shares: [`ConfigError`]
//! (which file, which key, what is wrong), secrets read from a `*_file` or
//! `*_env` key ([`read_secret`], with systemd's credentials directory), the
//! named tokens they make, and the sections whose `kind` picks their keys
//! ([`tagged_enum!`], [`Tagged`]). A leaf: it imports nothing of the crate but
//! [`crate::secret`], so `config`, `mail::config`, `sync::config` and the HR
//! sources can all use it without importing one another.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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

// ---------------------------------------------------------------------------
// Sections whose `kind` picks their keys.
// ---------------------------------------------------------------------------

/// A section whose tag key (`kind`, or `backend` for `[store]`) picks which
/// other keys apply: an enum whose variants each hold the struct of exactly
/// their kind's keys (each struct `#[serde(deny_unknown_fields)]`). Made with
/// [`tagged_enum!`], read with [`Tagged::read`].
///
/// Why not `#[serde(tag = "kind")]`: serde buffers an internally tagged enum's
/// keys into its private `Content` before it picks the variant, so
/// `serde_path_to_error` names the section instead of the key inside it; its
/// unit variants accept any key (serde #2123, #2294); `flatten` does not combine
/// with `deny_unknown_fields` (serde #1358); and an absent tag cannot default.
/// So [`Tagged::read`] takes the tag out itself, picks the variant's struct
/// ([`Kinds::read_kind`], written by the macro from the one list of kinds) and
/// lets serde read the other keys with their paths kept.
pub trait Kinds: Sized {
    /// The key holding the tag.
    const TAG: &'static str;
    /// The kind when the tag is absent; `None`: the tag is required.
    const DEFAULT: Option<&'static str>;
    /// Every kind, in the documented order, with the keys it takes.
    fn kinds() -> Vec<(&'static str, &'static [&'static str])>;
    /// Reads the keys (tag taken out) as kind `kind`; `None`: no such kind.
    fn read_kind(
        kind: &str,
        keys: toml::Value,
    ) -> Option<Result<Self, serde_path_to_error::Error<toml::de::Error>>>;
}

/// Declares a [`Kinds`] enum: `"tag value" => Variant(KeysStruct)`, one line per
/// kind, optionally after `tag = "backend";` (default `kind`) and
/// `default = "none";` (default: the tag is required).
macro_rules! tagged_enum {
    (@tag) => { "kind" };
    (@tag $t:literal) => { $t };
    (@default) => { None };
    (@default $d:literal) => { Some($d) };
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(tag = $tag:literal;)?
            $(default = $default:literal;)?
            $( $(#[$vmeta:meta])* $kind:literal => $variant:ident($ty:ty) ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant($ty), )+
        }

        impl $crate::config_helpers::Kinds for $name {
            const TAG: &'static str = $crate::config_helpers::tagged_enum!(@tag $($tag)?);
            const DEFAULT: Option<&'static str> =
                $crate::config_helpers::tagged_enum!(@default $($default)?);
            fn kinds() -> Vec<(&'static str, &'static [&'static str])> {
                vec![$( ($kind, serde_aux::serde_introspection::serde_introspect::<$ty>()) ),+]
            }
            fn read_kind(
                kind: &str,
                keys: toml::Value,
            ) -> Option<Result<Self, serde_path_to_error::Error<toml::de::Error>>> {
                match kind {
                    $( $kind => Some(serde_path_to_error::deserialize::<_, $ty>(keys).map($name::$variant)), )+
                    _ => None,
                }
            }
        }
    };
}
pub(crate) use tagged_enum;

/// The keys of a kind that takes none (`kind = "none"`, `backend = "sled"`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoKeys {}

/// Why a tagged section cannot be read: the key inside the section (`""`: the
/// section itself) and what to do.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct KindError {
    pub key: String,
    pub message: String,
}

/// A [`Kinds`] section as written, read into `T` once its place is known (so
/// that errors name the full key).
#[derive(Deserialize)]
#[serde(transparent)]
pub struct Tagged<T> {
    table: toml::Table,
    #[serde(skip)]
    kind: PhantomData<fn() -> T>,
}

impl<T> Default for Tagged<T> {
    fn default() -> Self {
        Self {
            table: toml::Table::new(),
            kind: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Tagged<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key names only: a value may be a secret written in place.
        f.debug_list().entries(self.table.keys()).finish()
    }
}

/// `a, b or c`
fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

impl<T: Kinds> Tagged<T> {
    /// The tag as written (if it is a string), before the section is read.
    pub fn kind(&self) -> Option<&str> {
        match self.table.get(T::TAG) {
            Some(v) => v.as_str(),
            None => T::DEFAULT,
        }
    }

    /// Reads the section as the kind its tag names. Refuses, naming the key: an
    /// unknown kind (listing the known ones), a key of another kind (naming the
    /// kinds it belongs to and the keys this kind takes), a key of no kind, a
    /// missing required key; then whatever serde refuses inside the keys.
    pub fn read(mut self) -> Result<T, KindError> {
        let err = |key: &str, message: String| KindError {
            key: key.to_string(),
            message,
        };
        let tag = T::TAG;
        let kinds = T::kinds();
        let names: Vec<&str> = kinds.iter().map(|(k, _)| *k).collect();
        let kind = match self.table.remove(tag) {
            Some(toml::Value::String(s)) => s,
            Some(_) => {
                return Err(err(
                    tag,
                    format!("must be a string, one of {}", one_of(&names)),
                ));
            }
            None => match T::DEFAULT {
                Some(d) => d.to_string(),
                None => return Err(err(tag, format!("missing: set {tag} = {}", one_of(&names)))),
            },
        };
        let Some(&(_, takes)) = kinds.iter().find(|(k, _)| *k == kind) else {
            return Err(err(
                tag,
                format!("`{kind}` is not a {tag}; use {}", one_of(&names)),
            ));
        };
        let takes_list = match takes {
            [] => "no other keys".to_string(),
            keys => keys.join(", "),
        };
        for key in self.table.keys() {
            if takes.contains(&key.as_str()) {
                continue;
            }
            let of: Vec<String> = kinds
                .iter()
                .filter(|(_, keys)| keys.contains(&key.as_str()))
                .map(|(k, _)| format!("\"{k}\""))
                .collect();
            let of: Vec<&str> = of.iter().map(String::as_str).collect();
            return Err(err(
                key,
                match of.as_slice() {
                    [] => format!("unknown key `{key}`; {tag} = \"{kind}\" takes {takes_list}"),
                    of => format!(
                        "does not apply to {tag} = \"{kind}\": `{key}` is a key of {tag} = {}; {tag} = \"{kind}\" takes {takes_list}",
                        one_of(of)
                    ),
                },
            ));
        }
        let Some(read) = T::read_kind(&kind, toml::Value::Table(self.table)) else {
            return Err(err(
                tag,
                format!("`{kind}` has no reader (a bug: report it)"),
            ));
        };
        read.map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            // serde's words for a missing field (`de::Error::missing_field`):
            // name the key itself rather than the section.
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|m| m.split('`').next())
                .filter(|_| path == ".");
            match missing {
                Some(field) => err(
                    field,
                    format!("missing: {tag} = \"{kind}\" needs `{field}` (it takes {takes_list})"),
                ),
                None => err(path.trim_matches('.'), message),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    tagged_enum! {
        #[derive(Debug, PartialEq)]
        enum Shape {
            default = "dot";
            "dot" => Dot(NoKeys),
            "circle" => Circle(Circle),
            "square" => Square(Square),
        }
    }

    impl PartialEq for NoKeys {
        fn eq(&self, _: &Self) -> bool {
            true
        }
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Circle {
        radius: u32,
        label: Option<String>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Square {
        side: u32,
        label: Option<String>,
    }

    fn read(text: &str) -> Result<Shape, KindError> {
        let t: Tagged<Shape> = toml::from_str(text).expect("TOML");
        t.read()
    }

    #[test]
    fn the_tag_picks_the_variant_and_defaults() {
        assert_eq!(read(""), Ok(Shape::Dot(NoKeys {})));
        assert_eq!(
            read("kind = \"circle\"\nradius = 2\n"),
            Ok(Shape::Circle(Circle {
                radius: 2,
                label: None
            }))
        );
    }

    fn refused(text: &str) -> KindError {
        read(text).expect_err("should be refused")
    }

    #[test]
    fn a_key_of_another_kind_is_refused_naming_its_kinds() {
        let e = refused("kind = \"circle\"\nradius = 2\nside = 3\n");
        assert_eq!(e.key, "side");
        assert!(
            e.message.contains("does not apply to kind = \"circle\""),
            "{e}"
        );
        assert!(e.message.contains("a key of kind = \"square\""), "{e}");
        assert!(e.message.contains("takes radius, label"), "{e}");
        // A kind without keys takes none, the default kind included.
        let e = refused("label = \"x\"\n");
        assert_eq!(e.key, "label");
        assert!(e.message.contains("\"circle\" or \"square\""), "{e}");
        assert!(e.message.contains("takes no other keys"), "{e}");
    }

    #[test]
    fn unknown_kinds_and_keys_list_what_exists() {
        let e = refused("kind = \"star\"\n");
        assert_eq!(e.key, "kind");
        assert!(e.message.contains("`star`"), "{e}");
        assert!(e.message.contains("dot, circle or square"), "{e}");
        let e = refused("kind = 3\n");
        assert_eq!(e.key, "kind");
        assert!(e.message.contains("dot, circle or square"), "{e}");
        let e = refused("kind = \"circle\"\nradiuss = 2\n");
        assert_eq!(e.key, "radiuss");
        assert!(e.message.contains("unknown key `radiuss`"), "{e}");
        assert!(e.message.contains("takes radius, label"), "{e}");
    }

    #[test]
    fn a_missing_required_key_is_named() {
        let e = refused("kind = \"square\"\nlabel = \"x\"\n");
        assert_eq!(e.key, "side");
        assert!(e.message.contains("kind = \"square\" needs `side`"), "{e}");
        // Errors inside a key keep serde's words and the key.
        let e = refused("kind = \"square\"\nside = \"x\"\n");
        assert_eq!(e.key, "side");
        assert!(e.message.contains("expected u32"), "{e}");
    }
}
