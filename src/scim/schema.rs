//! The schemas this server implements (RFC 7643 §7), as data: the `/Schemas`
//! documents are generated from these tables, and so are attribute-name resolution
//! (case-insensitive, URNs by longest prefix) and filter validation. A schema
//! therefore describes exactly what is stored and enforced.

use serde_json::{Value, json};

use super::filter::{Filter, Resolve, Resolved, paths};
use crate::employee::Catalog;

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const ROSTERD: &str = "urn:rosterd:params:scim:schemas:extension:rosterd:2.0:User";
pub const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const SPC: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// Which catalog supplies an attribute's `canonicalValues`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canon {
    None,
    Fixed(&'static [&'static str]),
    Positions,
    Roles,
    BusinessUnits,
    Permissions,
}

/// An attribute's data type (RFC 7643 §2.3), written as the `/Schemas` documents
/// spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    DateTime,
    Reference,
    Complex,
}

impl AttrType {
    pub const fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::DateTime => "dateTime",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }
}

/// Whether and how a client may write an attribute (RFC 7643 §7 `mutability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

impl Mutability {
    pub const fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
}

/// When an attribute is in a response (RFC 7643 §7 `returned`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
}

impl Returned {
    pub const fn as_str(self) -> &'static str {
        match self {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
        }
    }
}

/// Which values must be unique (RFC 7643 §7 `uniqueness`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
}

impl Uniqueness {
    pub const fn as_str(self) -> &'static str {
        match self {
            Uniqueness::None => "none",
            Uniqueness::Server => "server",
        }
    }
}

/// One attribute definition.
#[derive(Debug, Clone, Copy)]
pub struct Attr {
    pub name: &'static str,
    pub ty: AttrType,
    pub desc: &'static str,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub sub: &'static [Attr],
    pub canon: Canon,
    /// Accepted in requests and filters, never stored (not listed in `/Schemas`).
    pub ignored: bool,
}

const fn attr(name: &'static str, ty: AttrType, desc: &'static str) -> Attr {
    Attr {
        name,
        ty,
        desc,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        uniqueness: Uniqueness::None,
        sub: &[],
        canon: Canon::None,
        ignored: false,
    }
}

impl Attr {
    const fn multi(mut self) -> Self {
        self.multi = true;
        self
    }
    const fn req(mut self) -> Self {
        self.required = true;
        self
    }
    const fn exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    const fn ro(mut self) -> Self {
        self.mutability = Mutability::ReadOnly;
        self
    }
    const fn imm(mut self) -> Self {
        self.mutability = Mutability::Immutable;
        self
    }
    const fn wo(mut self) -> Self {
        self.mutability = Mutability::WriteOnly;
        self.returned = Returned::Never;
        self
    }
    const fn always(mut self) -> Self {
        self.returned = Returned::Always;
        self
    }
    const fn unique(mut self) -> Self {
        self.uniqueness = Uniqueness::Server;
        self
    }
    const fn subs(mut self, s: &'static [Attr]) -> Self {
        self.sub = s;
        self
    }
    const fn canon(mut self, c: Canon) -> Self {
        self.canon = c;
        self
    }
    const fn ignored(mut self) -> Self {
        self.ignored = true;
        self
    }
}

const NAME_SUBS: &[Attr] = &[
    attr(
        "formatted",
        AttrType::String,
        "Given and family name, derived (read-only)",
    )
    .ro(),
    attr(
        "familyName",
        AttrType::String,
        "Family name; optional (a user needs one of displayName, name.givenName or name.familyName)",
    ),
    attr(
        "givenName",
        AttrType::String,
        "Given name; optional (a user needs one of displayName, name.givenName or name.familyName)",
    ),
    attr("middleName", AttrType::String, "").ignored(),
    attr("honorificPrefix", AttrType::String, "").ignored(),
    attr("honorificSuffix", AttrType::String, "").ignored(),
];
const EMAIL_SUBS: &[Attr] = &[
    attr(
        "value",
        AttrType::String,
        "The profile email: unique across profiles, ignoring case",
    )
    .req(),
    attr("type", AttrType::String, "Always `work`")
        .ro()
        .canon(Canon::Fixed(&["work"])),
    attr("primary", AttrType::Boolean, "Always true").ro(),
    attr("display", AttrType::String, "").ignored(),
];
const PHONE_SUBS: &[Attr] = &[
    attr(
        "value",
        AttrType::String,
        "mobile: the number as written; work: the office number, its extension (written x42, ext. 42, #42, ;ext=42 or tel:+1-555-0100;ext=42) returned as tel:<number>;ext=42 (<number>;ext=42 when the number has spaces)",
    )
    .req(),
    attr("type", AttrType::String, "`mobile` or `work`; one of each is stored (the last sent)")
        .req()
        .canon(Canon::Fixed(&["mobile", "work"])),
    attr("primary", AttrType::Boolean, "").ignored(),
    attr("display", AttrType::String, "").ignored(),
];
const PHOTO_SUBS: &[Attr] = &[
    attr("value", AttrType::Reference, "An https URL of the photo")
        .exact()
        .req(),
    attr("type", AttrType::String, "Always `photo`")
        .ro()
        .canon(Canon::Fixed(&["photo"])),
    attr("primary", AttrType::Boolean, "").ignored(),
    attr("display", AttrType::String, "").ignored(),
];
const GROUPS_SUBS: &[Attr] = &[
    attr("value", AttrType::String, "The position's id")
        .ro()
        .exact(),
    attr("$ref", AttrType::Reference, "The Group's URI")
        .ro()
        .exact(),
    attr("display", AttrType::String, "The position's name").ro(),
    attr("type", AttrType::String, "").ro().ignored(),
];
const ROLES_SUBS: &[Attr] = &[
    attr(
        "value",
        AttrType::String,
        "The role (catalog name); the rosterd extension's `role` shows it too",
    )
    .req()
    .canon(Canon::Roles),
    attr("display", AttrType::String, "").ignored(),
    attr("type", AttrType::String, "").ignored(),
    attr("primary", AttrType::Boolean, "Always true").ro(),
];
const IGNORED_COMPLEX_SUBS: &[Attr] = &[
    attr("value", AttrType::String, "").ignored(),
    attr("type", AttrType::String, "").ignored(),
    attr("primary", AttrType::Boolean, "").ignored(),
    attr("display", AttrType::String, "").ignored(),
    attr("formatted", AttrType::String, "").ignored(),
    attr("streetAddress", AttrType::String, "").ignored(),
    attr("locality", AttrType::String, "").ignored(),
    attr("region", AttrType::String, "").ignored(),
    attr("postalCode", AttrType::String, "").ignored(),
    attr("country", AttrType::String, "").ignored(),
];

/// The core User schema as rosterd implements it. The `ignored` entries are the
/// RFC 7643 attributes rosterd does not store: accepted and dropped in requests
/// (IdPs send them by default), never in responses, unlisted in `/Schemas`.
pub const USER_ATTRS: &[Attr] = &[
    attr("userName", AttrType::String, "Sign-in name (no spaces or control characters); unique, ignoring case").req().unique(),
    attr("name", AttrType::Complex, "The employee's name").subs(NAME_SUBS),
    attr("displayName", AttrType::String, "Name shown everywhere; derived from the name parts when not given"),
    attr("emails", AttrType::Complex, "Exactly one: the profile email (type work, primary; the last primary one sent is kept)").multi().req().subs(EMAIL_SUBS),
    attr("phoneNumbers", AttrType::Complex, "Type mobile (mobile phone) and type work (office phone)").multi().subs(PHONE_SUBS),
    attr("photos", AttrType::Complex, "One photo link, type photo").multi().subs(PHOTO_SUBS),
    attr("active", AttrType::Boolean, "Inactive profiles are kept and cannot sign in; true when a create does not say").req(),
    attr("password", AttrType::String, "What it does is set per client ([[scim.clients]] passwords): ignored (default), or stored hashed as sent with account status credentials; never returned").wo().exact(),
    attr("groups", AttrType::Complex, "The positions the employee holds (change them through Group membership or the rosterd extension)").multi().ro().subs(GROUPS_SUBS),
    attr("roles", AttrType::Complex, "The employee's one role (the primary one sent, else the last); scim.default_role when a create has none").multi().req().subs(ROLES_SUBS),
    attr("nickName", AttrType::String, "").ignored(),
    attr("profileUrl", AttrType::Reference, "").ignored(),
    attr("title", AttrType::String, "").ignored(),
    attr("userType", AttrType::String, "").ignored(),
    attr("preferredLanguage", AttrType::String, "").ignored(),
    attr("locale", AttrType::String, "").ignored(),
    attr("timezone", AttrType::String, "").ignored(),
    attr("addresses", AttrType::Complex, "").multi().subs(IGNORED_COMPLEX_SUBS).ignored(),
    attr("ims", AttrType::Complex, "").multi().subs(IGNORED_COMPLEX_SUBS).ignored(),
    attr("entitlements", AttrType::Complex, "").multi().subs(IGNORED_COMPLEX_SUBS).ignored(),
    attr("x509Certificates", AttrType::Complex, "").multi().subs(IGNORED_COMPLEX_SUBS).ignored(),
];

const MANAGER_SUBS: &[Attr] = &[
    attr(
        "value",
        AttrType::String,
        "The manager's id (stored as sent); removing it removes the manager",
    )
    .exact(),
    attr(
        "$ref",
        AttrType::Reference,
        "The manager's URI, when the id is a rosterd user",
    )
    .ro()
    .exact(),
    attr("displayName", AttrType::String, "").ro().ignored(),
];

pub const ENTERPRISE_ATTRS: &[Attr] = &[
    attr("employeeNumber", AttrType::String, "Stored as sent"),
    attr("costCenter", AttrType::String, "Stored as sent"),
    attr("organization", AttrType::String, "Stored as sent"),
    attr(
        "division",
        AttrType::String,
        "Stored as sent. When the request has no rosterd businessUnit and the division names a catalog business unit, the business unit follows it",
    ),
    attr("department", AttrType::String, "Stored as sent"),
    attr(
        "manager",
        AttrType::Complex,
        "Accepted as a string id, {value}, or [{value,$ref}]; always returned as {value,$ref}",
    )
    .subs(MANAGER_SUBS),
];

const PERMISSION_SUBS: &[Attr] = &[
    attr(
        "grant",
        AttrType::String,
        "Permissions added to the role's defaults",
    )
    .multi()
    .canon(Canon::Permissions),
    attr(
        "revoke",
        AttrType::String,
        "Permissions removed from the role's defaults",
    )
    .multi()
    .canon(Canon::Permissions),
];

pub const ROSTERD_ATTRS: &[Attr] = &[
    attr("positions", AttrType::String, "Positions held (catalog names); the same data as Group membership").multi().canon(Canon::Positions),
    attr("role", AttrType::String, "The role (catalog name); sets the default permissions. Written through the core `roles` (read-only here: one field, one writable attribute)").ro().canon(Canon::Roles),
    attr("businessUnit", AttrType::String, "The business unit (catalog name): the catalog-bound organisational field").canon(Canon::BusinessUnits),
    attr("enabled", AttrType::Boolean, "The employee has a user in the fleet product; true when a create does not say").req(),
    attr("accountStatus", AttrType::String, "How the account was set up, derived: credentials when a password was accepted, else the client's scim.account_status").ro().canon(Canon::Fixed(&["later", "invite", "credentials"])),
    attr("permissions", AttrType::Complex, "Overrides on top of the role's defaults").subs(PERMISSION_SUBS),
    attr("effectivePermissions", AttrType::String, "The role's defaults with the overrides applied").multi().ro().canon(Canon::Permissions),
];

const MEMBER_SUBS: &[Attr] = &[
    attr("value", AttrType::String, "The member's user id")
        .imm()
        .exact()
        .req(),
    attr("$ref", AttrType::Reference, "The member's URI")
        .imm()
        .exact(),
    attr("display", AttrType::String, "The member's display name").ro(),
    attr("type", AttrType::String, "Always User")
        .imm()
        .canon(Canon::Fixed(&["User"])),
];

/// A Group is a position.
pub const GROUP_ATTRS: &[Attr] = &[
    attr(
        "displayName",
        AttrType::String,
        "The position's name; unique, ignoring case",
    )
    .req()
    .unique(),
    attr(
        "members",
        AttrType::Complex,
        "The employees holding the position",
    )
    .multi()
    .subs(MEMBER_SUBS),
];

const META_SUBS: &[Attr] = &[
    attr("resourceType", AttrType::String, "").ro(),
    attr("created", AttrType::DateTime, "").ro(),
    attr("lastModified", AttrType::DateTime, "").ro(),
    attr("location", AttrType::Reference, "").ro().exact(),
    attr("version", AttrType::String, "").ro().exact(),
];

/// Attributes common to every resource (RFC 7643 §3.1).
pub const COMMON_ATTRS: &[Attr] = &[
    attr("id", AttrType::String, "")
        .ro()
        .always()
        .exact()
        .unique(),
    attr("externalId", AttrType::String, "").exact(),
    attr("meta", AttrType::Complex, "").ro().subs(META_SUBS),
    attr("schemas", AttrType::Reference, "")
        .multi()
        .always()
        .exact(),
];

/// A resource type's schema and extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    fn schemas(self) -> &'static [(&'static str, &'static [Attr])] {
        match self {
            Kind::User => &[
                (ENTERPRISE, ENTERPRISE_ATTRS),
                (ROSTERD, ROSTERD_ATTRS),
                (USER, USER_ATTRS),
            ],
            Kind::Group => &[(GROUP, GROUP_ATTRS)],
        }
    }

    /// Each schema's attributes: `None` for the core schema (top level of a
    /// resource), else the extension URN they live under. Common attributes
    /// (`id`, `externalId`, `meta`) included with the core ones.
    pub fn attribute_tables(self) -> Vec<(Option<&'static str>, &'static [Attr])> {
        let mut out = vec![(None, COMMON_ATTRS)];
        for (urn, attrs) in self.schemas() {
            out.push(((*urn != self.core()).then_some(*urn), *attrs));
        }
        out
    }

    fn core(self) -> &'static str {
        match self {
            Kind::User => USER,
            Kind::Group => GROUP,
        }
    }

    /// Splits `urn:…:attr.sub` by longest registered URN prefix (ignoring case).
    /// Returns the extension URN (None for core or unqualified) and the rest.
    pub fn split_urn(self, path: &str) -> (Option<&'static str>, &str) {
        let lower = path.to_ascii_lowercase();
        let mut best: Option<&'static str> = None;
        for (urn, _) in self.schemas() {
            let u = urn.to_ascii_lowercase();
            if (lower.starts_with(&format!("{u}:")) || lower == u)
                && best.is_none_or(|b| b.len() < urn.len())
            {
                best = Some(urn);
            }
        }
        match best {
            Some(urn) => {
                let rest = path.get(urn.len() + 1..).unwrap_or("");
                (Some(urn).filter(|u| *u != self.core()), rest)
            }
            None => (None, path),
        }
    }

    /// Whether `path` names a whole extension (`urn:…:enterprise:2.0:User`).
    pub fn extension_urn(self, path: &str) -> Option<&'static str> {
        self.schemas()
            .iter()
            .map(|(u, _)| *u)
            .find(|u| u.eq_ignore_ascii_case(path) && *u != self.core())
    }

    /// Finds an attribute definition: `(extension URN, attribute, sub-attribute)`.
    pub fn lookup(
        self,
        path: &str,
    ) -> Option<(Option<&'static str>, &'static Attr, Option<&'static Attr>)> {
        let (urn, rest) = self.split_urn(path);
        let (name, sub) = match rest.split_once('.') {
            Some((a, s)) => (a, Some(s)),
            None => (rest, None),
        };
        let find =
            |attrs: &'static [Attr]| attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name));
        let (urn, a) = match urn {
            Some(u) => {
                let attrs = self.schemas().iter().find(|(x, _)| *x == u)?.1;
                (Some(u), find(attrs)?)
            }
            None => {
                let core = self.schemas().iter().find(|(x, _)| *x == self.core())?.1;
                match find(core).or_else(|| find(COMMON_ATTRS)) {
                    Some(a) => (None, a),
                    // Lenient: an unqualified extension attribute.
                    None => self
                        .schemas()
                        .iter()
                        .filter(|(x, _)| *x != self.core())
                        .find_map(|(u, attrs)| find(attrs).map(|a| (Some(*u), a)))?,
                }
            }
        };
        let sub = match sub {
            Some(s) => Some(a.sub.iter().find(|x| x.name.eq_ignore_ascii_case(s))?),
            None => None,
        };
        Some((urn, a, sub))
    }
}

impl Resolve for Kind {
    fn resolve(&self, path: &str) -> Option<Resolved> {
        let (urn, a, sub) = self.lookup(path)?;
        let leaf = sub.unwrap_or(a);
        Some(Resolved {
            urn,
            attr: a.name.to_string(),
            sub: sub.map(|s| s.name.to_string()),
            case_exact: leaf.case_exact,
            datetime: leaf.ty == AttrType::DateTime,
            ignored: a.ignored || leaf.ignored,
        })
    }
}

/// A filter names an attribute the schema does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown attribute `{0}` in the filter")]
pub struct UnknownAttribute(pub String);

/// Checks that every attribute a filter names exists. The error names the first
/// unknown one.
pub fn check_filter(kind: Kind, f: &Filter) -> Result<(), UnknownAttribute> {
    let mut ps = Vec::new();
    paths(f, &mut ps);
    for (parent, p) in ps {
        let full = match &parent {
            Some(par) => format!("{par}.{p}"),
            None => p.clone(),
        };
        if kind.lookup(&full).is_none() {
            return Err(UnknownAttribute(full));
        }
    }
    Ok(())
}

fn attr_json(a: &Attr, catalog: &Catalog) -> Value {
    let canon: Vec<String> = match a.canon {
        Canon::None => vec![],
        Canon::Fixed(v) => v.iter().map(|s| s.to_string()).collect(),
        Canon::Positions => catalog.positions().map(|p| p.name.clone()).collect(),
        Canon::Roles => catalog.roles().map(|r| r.name.clone()).collect(),
        Canon::BusinessUnits => catalog.business_units().map(|b| b.name.clone()).collect(),
        Canon::Permissions => catalog.permissions().map(str::to_string).collect(),
    };
    let mut v = json!({
        "name": a.name,
        "type": a.ty.as_str(),
        "multiValued": a.multi,
        "description": a.desc,
        "required": a.required,
        "caseExact": a.case_exact,
        "mutability": a.mutability.as_str(),
        "returned": a.returned.as_str(),
        "uniqueness": a.uniqueness.as_str(),
    });
    if !canon.is_empty() {
        v["canonicalValues"] = json!(canon);
    }
    if a.ty == AttrType::Reference {
        v["referenceTypes"] = json!(if a.name == "$ref" {
            vec!["User", "Group"]
        } else {
            vec!["external"]
        });
    }
    if !a.sub.is_empty() {
        v["subAttributes"] = Value::Array(
            a.sub
                .iter()
                .filter(|s| !s.ignored)
                .map(|s| attr_json(s, catalog))
                .collect(),
        );
    }
    v
}

/// The `/Schemas/{id}` document of one schema, or None if unknown.
pub fn schema_doc(id: &str, catalog: &Catalog, base: &str) -> Option<Value> {
    let (urn, name, desc, attrs): (&str, &str, &str, &[Attr]) = if id.eq_ignore_ascii_case(USER) {
        (USER, "User", "An employee profile", USER_ATTRS)
    } else if id.eq_ignore_ascii_case(ENTERPRISE) {
        (
            ENTERPRISE,
            "EnterpriseUser",
            "Enterprise User extension",
            ENTERPRISE_ATTRS,
        )
    } else if id.eq_ignore_ascii_case(ROSTERD) {
        (
            ROSTERD,
            "RosterdUser",
            "What a rosterd profile has beyond the core schema",
            ROSTERD_ATTRS,
        )
    } else if id.eq_ignore_ascii_case(GROUP) {
        (
            GROUP,
            "Group",
            "A position from the catalog; members are the employees holding it",
            GROUP_ATTRS,
        )
    } else {
        return None;
    };
    Some(json!({
        "schemas": [SCHEMA],
        "id": urn,
        "name": name,
        "description": desc,
        "attributes": attrs.iter().filter(|a| !a.ignored).map(|a| attr_json(a, catalog)).collect::<Vec<_>>(),
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{urn}")},
    }))
}

/// Every schema id served under `/Schemas`.
pub const SCHEMA_IDS: [&str; 4] = [USER, ENTERPRISE, ROSTERD, GROUP];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_is_case_insensitive_with_longest_urn_prefix() {
        let r = Kind::User.resolve("name.FAMILYNAME").unwrap();
        assert_eq!(
            (r.attr.as_str(), r.sub.as_deref()),
            ("name", Some("familyName"))
        );
        let r = Kind::User
            .resolve("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value")
            .unwrap();
        assert_eq!(r.urn, Some(ENTERPRISE));
        assert_eq!(r.sub.as_deref(), Some("value"));
        let r = Kind::User
            .resolve("URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:USER:userName")
            .unwrap();
        assert_eq!((r.urn, r.attr.as_str()), (None, "userName"));
        assert!(Kind::User.resolve("meta.created").unwrap().datetime);
        assert!(Kind::User.resolve("title").unwrap().ignored);
        assert!(Kind::User.resolve("nosuch").is_none());
        assert!(Kind::User.resolve("name.nosuch").is_none());
        assert!(Kind::Group.resolve("members.value").unwrap().case_exact);
    }

    /// The `/Schemas` strings of each property are RFC 7643's.
    #[test]
    fn property_names_are_the_rfc_ones() {
        let a = Kind::User.lookup("password").unwrap().1;
        assert_eq!(
            (a.ty.as_str(), a.mutability.as_str(), a.returned.as_str()),
            ("string", "writeOnly", "never")
        );
        let id = Kind::User.lookup("id").unwrap().1;
        assert_eq!(
            (
                id.mutability.as_str(),
                id.returned.as_str(),
                id.uniqueness.as_str()
            ),
            ("readOnly", "always", "server")
        );
        let m = Kind::Group.lookup("members.value").unwrap().2.unwrap();
        assert_eq!(m.mutability.as_str(), "immutable");
        let role = crate::employee::catalog::RoleDef {
            name: "Driver".into(),
            description: String::new(),
            permissions: vec![],
        };
        let catalog = Catalog::new(vec![], vec![], vec![role], vec![], None).unwrap();
        let doc = schema_doc(USER, &catalog, "http://x/scim/v2").unwrap();
        let attrs = doc["attributes"].as_array().unwrap();
        let name = attrs.iter().find(|a| a["name"] == "name").unwrap();
        assert_eq!(name["type"], "complex");
        assert_eq!(name["mutability"], "readWrite");
        assert_eq!(name["returned"], "default");
        assert_eq!(name["uniqueness"], "none");
        let created = Kind::User.lookup("meta.created").unwrap().2.unwrap();
        assert_eq!(created.ty.as_str(), "dateTime");
    }
}
