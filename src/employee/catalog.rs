//! The catalogs a profile draws from: positions, roles (each with its default
//! permissions), business units, and the permission names that exist. Names are
//! matched case-insensitively and stored in their catalog spelling.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PositionDef {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoleDef {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The role's default permissions.
    #[serde(default)]
    pub permissions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UnitDef {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// A catalog problem, with the key (relative to `catalog.`) it concerns.
#[derive(Debug)]
pub struct CatalogError {
    pub key: String,
    pub message: String,
}

/// The validated catalogs.
#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    positions: Vec<PositionDef>,
    roles: Vec<RoleDef>,
    business_units: Vec<UnitDef>,
    permissions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    default_role: Option<String>,
}

fn check_names<'a>(kind: &str, names: impl Iterator<Item = &'a str>) -> Result<(), CatalogError> {
    let mut seen = BTreeSet::new();
    for (i, n) in names.enumerate() {
        let key = format!("{kind}[{i}].name");
        if n.trim().is_empty() || n.trim() != n {
            return Err(CatalogError {
                key,
                message: "must be non-empty without surrounding spaces".into(),
            });
        }
        if !seen.insert(n.to_lowercase()) {
            return Err(CatalogError {
                key,
                message: format!("`{n}` is listed twice (names are case-insensitive)"),
            });
        }
    }
    Ok(())
}

impl Catalog {
    pub fn new(
        permissions: Vec<String>,
        positions: Vec<PositionDef>,
        roles: Vec<RoleDef>,
        business_units: Vec<UnitDef>,
        default_role: Option<String>,
    ) -> Result<Self, CatalogError> {
        check_names("permissions", permissions.iter().map(String::as_str)).map_err(|e| {
            CatalogError {
                key: "permissions".into(),
                message: e.message,
            }
        })?;
        check_names("positions", positions.iter().map(|p| p.name.as_str()))?;
        check_names("roles", roles.iter().map(|p| p.name.as_str()))?;
        check_names(
            "business_units",
            business_units.iter().map(|p| p.name.as_str()),
        )?;
        if roles.is_empty() {
            return Err(CatalogError {
                key: "roles".into(),
                message: "define at least one role ([[catalog.roles]]): every profile has one"
                    .into(),
            });
        }
        let mut catalog = Self {
            positions,
            roles,
            business_units,
            permissions,
            default_role: None,
        };
        for i in 0..catalog.roles.len() {
            let mut perms = Vec::new();
            for p in &catalog.roles[i].permissions {
                let canon = catalog.permission(p).ok_or_else(|| CatalogError {
                    key: format!("roles[{i}].permissions"),
                    message: format!(
                        "permission `{p}` is not in catalog.permissions; add it there or remove it"
                    ),
                })?;
                perms.push(canon.to_string());
            }
            perms.sort();
            perms.dedup();
            catalog.roles[i].permissions = perms;
        }
        if let Some(r) = default_role {
            let canon = catalog.role(&r).ok_or_else(|| CatalogError {
                key: "default_role".into(),
                message: format!("role `{r}` is not in catalog.roles"),
            })?;
            catalog.default_role = Some(canon.name.clone());
        }
        Ok(catalog)
    }

    /// The same catalog with another list of positions (validated like the config's).
    pub fn with_positions(&self, positions: Vec<PositionDef>) -> Result<Catalog, CatalogError> {
        check_names("positions", positions.iter().map(|p| p.name.as_str()))?;
        Ok(Catalog {
            positions,
            ..self.clone()
        })
    }

    pub fn positions(&self) -> impl Iterator<Item = &PositionDef> {
        self.positions.iter()
    }

    pub fn roles(&self) -> impl Iterator<Item = &RoleDef> {
        self.roles.iter()
    }

    pub fn business_units(&self) -> impl Iterator<Item = &UnitDef> {
        self.business_units.iter()
    }

    pub fn permissions(&self) -> impl Iterator<Item = &str> {
        self.permissions.iter().map(String::as_str)
    }

    pub fn default_role(&self) -> Option<&str> {
        self.default_role.as_deref()
    }

    /// The catalog spelling of a position, if it exists.
    pub fn position(&self, name: &str) -> Option<&PositionDef> {
        let n = name.trim().to_lowercase();
        self.positions.iter().find(|p| p.name.to_lowercase() == n)
    }

    pub fn role(&self, name: &str) -> Option<&RoleDef> {
        let n = name.trim().to_lowercase();
        self.roles.iter().find(|r| r.name.to_lowercase() == n)
    }

    pub fn business_unit(&self, name: &str) -> Option<&UnitDef> {
        let n = name.trim().to_lowercase();
        self.business_units
            .iter()
            .find(|r| r.name.to_lowercase() == n)
    }

    pub fn permission(&self, name: &str) -> Option<&str> {
        let n = name.trim().to_lowercase();
        self.permissions
            .iter()
            .find(|p| p.to_lowercase() == n)
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, perms: &[&str]) -> RoleDef {
        RoleDef {
            name: name.into(),
            description: String::new(),
            permissions: perms.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn lookups_are_case_insensitive_and_canonical() {
        let c = Catalog::new(
            vec!["jobs.view".into()],
            vec![PositionDef {
                name: "Field Technician".into(),
                description: String::new(),
            }],
            vec![role("Dispatcher", &["JOBS.VIEW"])],
            vec![],
            Some("dispatcher".into()),
        )
        .unwrap();
        assert_eq!(
            c.position("field technician").unwrap().name,
            "Field Technician"
        );
        assert_eq!(c.role("DISPATCHER").unwrap().permissions, vec!["jobs.view"]);
        assert_eq!(c.default_role(), Some("Dispatcher"));
        assert!(c.business_unit("North").is_none());
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let e = Catalog::new(
            vec![],
            vec![],
            vec![role("A", &[]), role("a", &[])],
            vec![],
            None,
        )
        .unwrap_err();
        assert_eq!(e.key, "roles[1].name");
    }

    #[test]
    fn no_roles_is_rejected() {
        let e = Catalog::new(vec![], vec![], vec![], vec![], None).unwrap_err();
        assert_eq!(e.key, "roles");
    }
}
