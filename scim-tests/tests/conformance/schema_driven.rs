//! A schema-driven client, the way generic SCIM test tools and IdP connector
//! builders work: it knows nothing of rosterd beyond RFC 7643/7644. It reads the
//! server's `/ResourceTypes` and `/Schemas`, generates resources with random
//! valid values for every attribute the schemas mark writable (a canonical value
//! where the schema lists them; for the attributes RFC 7643 defines a meaning
//! for, a value of that meaning: an email in `emails.value`, a phone number in
//! `phoneNumbers.value`, an https URL in a `reference`, a user's id in a Group's
//! `members.value`), and checks, for Users and Groups:
//!
//! - create, read, list (`filter=id eq …`) and `POST /.search`: what was written
//!   is what is read back;
//! - `attributes` and `excludedAttributes` for every attribute;
//! - PUT with fresh values: read back equal;
//! - PATCH `replace`, `add` and `remove` of every writable attribute and of every
//!   writable sub-attribute of complex ones, each read back: a replaced value
//!   equals what was sent, an added one is among the values, a removed one is
//!   gone — and removing a `required` attribute is refused with 400 and changes
//!   nothing;
//! - delete: 204, then 404.
//!
//! Like the rest of `scim-tests` it runs against `SCIM_BASE_URL`/`SCIM_TOKEN`
//! when set, else against rosterd in-process. `SCIM_SCHEMA_SEED` replays a run
//! (the seed is printed when a check fails).

use reqwest::StatusCode;
use serde_json::{Map, Value, json};

use crate::common::*;

const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// An attribute definition as `/Schemas` publishes it.
#[derive(Debug, Clone)]
struct Attr {
    name: String,
    ty: String,
    multi: bool,
    required: bool,
    mutability: String,
    returned: String,
    canon: Vec<String>,
    reference_types: Vec<String>,
    subs: Vec<Attr>,
}

impl Attr {
    fn from_json(v: &Value) -> Self {
        let strs = |k: &str| -> Vec<String> {
            v[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        Attr {
            name: v["name"].as_str().unwrap_or_default().to_string(),
            ty: v["type"].as_str().unwrap_or("string").to_string(),
            multi: v["multiValued"].as_bool().unwrap_or(false),
            required: v["required"].as_bool().unwrap_or(false),
            mutability: v["mutability"].as_str().unwrap_or("readWrite").to_string(),
            returned: v["returned"].as_str().unwrap_or("default").to_string(),
            canon: strs("canonicalValues"),
            reference_types: strs("referenceTypes"),
            subs: v["subAttributes"]
                .as_array()
                .map(|a| a.iter().map(Attr::from_json).collect())
                .unwrap_or_default(),
        }
    }

    /// Written by clients at all (create).
    fn writable(&self) -> bool {
        matches!(
            self.mutability.as_str(),
            "readWrite" | "writeOnly" | "immutable"
        )
    }

    /// Changeable after create.
    fn mutable(&self) -> bool {
        matches!(self.mutability.as_str(), "readWrite" | "writeOnly")
    }

    /// Read back by default.
    fn readable(&self) -> bool {
        self.returned != "never" && self.mutability != "writeOnly"
    }
}

/// A resource type with its schemas: `(None, core attributes)` and
/// `(Some(urn), extension attributes)`.
struct Resource {
    name: String,
    endpoint: String,
    core: String,
    parts: Vec<(Option<String>, Vec<Attr>)>,
}

/// xorshift64*: enough randomness for values, reproducible from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn word(&mut self) -> String {
        const A: &[u8] = b"abcdefghijkmnopqrstuvwxyz23456789";
        (0..10).map(|_| A[self.below(A.len())] as char).collect()
    }
}

struct Client<'a> {
    s: &'a Scim,
    rng: Rng,
    seed: u64,
    /// Ids and locations of users this client created (for Group members).
    users: Vec<(String, String)>,
    checks: usize,
}

/// Finds a key ignoring case (attribute names are case-insensitive).
fn get_ci<'v>(v: &'v Value, k: &str) -> Option<&'v Value> {
    v.as_object()?
        .iter()
        .find(|(x, _)| x.eq_ignore_ascii_case(k))
        .map(|(_, v)| v)
}

/// Unassigned: absent, null, "", [], {}, or an object holding only unassigned
/// values or sub-attributes the client cannot write.
fn unassigned(v: Option<&Value>, a: Option<&Attr>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(items)) => items.iter().all(|x| unassigned(Some(x), a)),
        Some(Value::Object(o)) => o.iter().all(|(k, x)| {
            let sub = a.and_then(|a| a.subs.iter().find(|s| s.name.eq_ignore_ascii_case(k)));
            sub.is_some_and(|s| !s.writable()) || unassigned(Some(x), sub)
        }),
        _ => false,
    }
}

/// Whether `got` holds everything `sent` says (readable sub-attributes only).
/// With `exact`, a multi-valued attribute has exactly the sent values.
fn covers(sent: &Value, got: Option<&Value>, a: &Attr, exact: bool) -> Result<(), String> {
    let got = got.unwrap_or(&Value::Null);
    if a.multi {
        let sent_items = sent
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![sent.clone()]);
        let got_items = got.as_array().cloned().unwrap_or_default();
        for s in &sent_items {
            let single = Attr {
                multi: false,
                ..a.clone()
            };
            if !got_items
                .iter()
                .any(|g| covers(s, Some(g), &single, exact).is_ok())
            {
                return Err(format!("{}: {s} is not among {got}", a.name));
            }
        }
        if exact && got_items.len() != sent_items.len() {
            return Err(format!("{}: sent {sent}, read back {got}", a.name));
        }
        return Ok(());
    }
    if !a.subs.is_empty() {
        let Some(obj) = sent.as_object() else {
            return Err(format!("{}: sent {sent}, not an object", a.name));
        };
        for (k, v) in obj {
            let Some(sub) = a.subs.iter().find(|s| s.name.eq_ignore_ascii_case(k)) else {
                continue;
            };
            if !sub.readable() {
                continue;
            }
            covers(v, get_ci(got, k), sub, exact).map_err(|e| format!("{}.{e}", a.name))?;
        }
        return Ok(());
    }
    let same = match (sent, got) {
        (Value::String(x), Value::String(y)) => x == y,
        (x, y) => x == y,
    };
    if same {
        Ok(())
    } else {
        Err(format!("{}: sent {sent}, read back {got}", a.name))
    }
}

impl<'a> Client<'a> {
    fn new(s: &'a Scim) -> Self {
        let seed = std::env::var("SCIM_SCHEMA_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0 | 1);
        Self {
            s,
            rng: Rng(seed),
            seed,
            users: vec![],
            checks: 0,
        }
    }

    #[track_caller]
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.checks += 1;
        assert!(ok, "{} (SCIM_SCHEMA_SEED={})", what(), self.seed);
    }

    /// Reads `/ResourceTypes` and `/Schemas`.
    async fn discover(&self) -> Vec<Resource> {
        let types = self.s.get("/ResourceTypes").await;
        assert_eq!(types.status, StatusCode::OK, "{:#}", types.body);
        let schemas = self.s.get("/Schemas").await;
        assert_eq!(schemas.status, StatusCode::OK, "{:#}", schemas.body);
        let list = |v: &Value| -> Vec<Value> {
            match v.get("Resources") {
                Some(Value::Array(a)) => a.clone(),
                _ => v.as_array().cloned().unwrap_or_default(),
            }
        };
        let schemas = list(&schemas.body);
        let attrs_of = |urn: &str| -> Vec<Attr> {
            let s = schemas
                .iter()
                .find(|s| s["id"].as_str() == Some(urn))
                .unwrap_or_else(|| panic!("/Schemas has no {urn}"));
            s["attributes"]
                .as_array()
                .map(|a| a.iter().map(Attr::from_json).collect())
                .unwrap_or_default()
        };
        list(&types.body)
            .iter()
            .map(|t| {
                let core = t["schema"]
                    .as_str()
                    .expect("ResourceType.schema")
                    .to_string();
                let mut parts = vec![(None, attrs_of(&core))];
                for x in t["schemaExtensions"].as_array().into_iter().flatten() {
                    let urn = x["schema"].as_str().expect("schemaExtensions.schema");
                    parts.push((Some(urn.to_string()), attrs_of(urn)));
                }
                Resource {
                    name: t["name"].as_str().unwrap_or_default().to_string(),
                    endpoint: t["endpoint"].as_str().expect("endpoint").to_string(),
                    core,
                    parts,
                }
            })
            .collect()
    }

    /// A random valid value for `a` (whose path is `path`, e.g. `emails.value`).
    fn value(&mut self, res: &Resource, path: &str, a: &Attr, create: bool) -> Value {
        if a.multi {
            if !a.subs.is_empty() {
                let single = Attr {
                    multi: false,
                    ..a.clone()
                };
                return json!([self.value(res, path, &single, create)]);
            }
            if !a.canon.is_empty() {
                let mut picked: Vec<String> = a
                    .canon
                    .iter()
                    .filter(|_| self.rng.below(3) == 0)
                    .cloned()
                    .collect();
                if picked.is_empty() {
                    picked.push(a.canon[self.rng.below(a.canon.len())].clone());
                }
                return json!(picked);
            }
            let single = Attr {
                multi: false,
                ..a.clone()
            };
            return json!([self.value(res, path, &single, create)]);
        }
        if !a.subs.is_empty() {
            let mut m = Map::new();
            for sub in &a.subs {
                if sub.writable() && (create || sub.mutable() || path.ends_with("members")) {
                    let p = format!("{path}.{}", sub.name);
                    m.insert(sub.name.clone(), self.value(res, &p, sub, create));
                }
            }
            // A Group member is one of the users this client created.
            if res.name == "Group" && path.eq_ignore_ascii_case("members") {
                let (id, loc) = self.users[self.rng.below(self.users.len())].clone();
                for (k, v) in [
                    ("value", json!(id)),
                    ("$ref", json!(loc)),
                    ("type", json!("User")),
                ] {
                    if m.contains_key(k) {
                        m.insert(k.to_string(), v);
                    }
                }
            }
            return Value::Object(m);
        }
        if !a.canon.is_empty() {
            return json!(a.canon[self.rng.below(a.canon.len())]);
        }
        let w = self.rng.word();
        match (a.ty.as_str(), path.to_ascii_lowercase().as_str()) {
            ("boolean", _) => json!(self.rng.below(2) == 0),
            ("integer", _) => json!(self.rng.below(100_000)),
            ("decimal", _) => json!(self.rng.below(100_000) as f64 / 4.0),
            ("dateTime", _) => json!("2027-06-01T12:00:00Z"),
            (_, "username") | (_, "emails.value") => json!(format!("sd.{w}@example.com")),
            (_, "phonenumbers.value") => json!(format!("+1 617 555 {:04}", self.rng.below(10_000))),
            ("reference", _) if a.reference_types.iter().any(|t| t == "external") => {
                json!(format!("https://cdn.example.com/{w}.png"))
            }
            ("reference", _) => json!(format!("https://example.com/{w}")),
            ("binary", _) => json!("aGVsbG8="),
            _ => json!(format!("sd {w}")),
        }
    }

    /// A full resource of `res`: every writable attribute.
    fn resource(&mut self, res: &Resource, create: bool) -> Value {
        let mut body = Map::new();
        let mut schemas = vec![json!(res.core)];
        for (urn, attrs) in res.parts.clone() {
            let mut m = Map::new();
            for a in attrs
                .iter()
                .filter(|a| a.writable() && (create || a.mutable()))
            {
                let p = a.name.clone();
                m.insert(a.name.clone(), self.value(res, &p, a, create));
            }
            match urn {
                None => body.extend(m),
                Some(u) => {
                    schemas.push(json!(u));
                    body.insert(u, Value::Object(m));
                }
            }
        }
        body.insert("schemas".into(), Value::Array(schemas));
        Value::Object(body)
    }

    /// Checks that `got` holds every readable attribute of `sent`.
    fn read_back(&mut self, res: &Resource, sent: &Value, got: &Value, what: &str) {
        for (urn, attrs) in &res.parts {
            let (s, g) = match urn {
                None => (Some(sent), Some(got)),
                Some(u) => (get_ci(sent, u), get_ci(got, u)),
            };
            let Some(s) = s else { continue };
            for a in attrs.iter().filter(|a| a.readable()) {
                if let Some(v) = get_ci(s, &a.name) {
                    let r = covers(v, g.and_then(|g| get_ci(g, &a.name)), a, true);
                    self.check(r.is_ok(), || {
                        format!("{} {what}: {}\n{got:#}", res.name, r.unwrap_err())
                    });
                }
            }
        }
    }

    /// The value at `path` (`attr`, `attr.sub`, `urn:…:attr[.sub]`) of a resource.
    fn at<'v>(
        doc: &'v Value,
        urn: Option<&str>,
        name: &str,
        sub: Option<&str>,
    ) -> Option<&'v Value> {
        let c = match urn {
            Some(u) => get_ci(doc, u)?,
            None => doc,
        };
        let v = get_ci(c, name)?;
        match sub {
            None => Some(v),
            Some(s) => match v {
                Value::Array(items) => items.first().and_then(|e| get_ci(e, s)),
                v => get_ci(v, s),
            },
        }
    }

    async fn get(&mut self, res: &Resource, id: &str) -> Value {
        let r = self.s.get(&format!("{}/{id}", res.endpoint)).await;
        self.check(r.status == StatusCode::OK, || {
            format!("GET {} {id}: {} {:#}", res.name, r.status, r.body)
        });
        r.body
    }

    async fn patch(&mut self, res: &Resource, id: &str, op: Value) -> reqwest::StatusCode {
        let r = self
            .s
            .patch_ops(&format!("{}/{id}", res.endpoint), json!([op.clone()]))
            .await;
        if r.status.is_server_error()
            || r.status == StatusCode::BAD_REQUEST && !r.body["scimType"].is_string()
        {
            self.check(false, || {
                format!("PATCH {} {op}: {} {:#}", res.name, r.status, r.body)
            });
        }
        r.status
    }

    /// Create → read → list → .search → attributes/excluded → PUT → PATCH → delete.
    async fn exercise(&mut self, res: &Resource) -> Value {
        // Create.
        let sent = self.resource(res, true);
        let r = self.s.post(&res.endpoint, sent.clone()).await;
        self.check(r.status == StatusCode::CREATED, || {
            format!(
                "create {}: {} {:#}\nsent {sent:#}",
                res.name, r.status, r.body
            )
        });
        self.read_back(res, &sent, &r.body, "create response");
        let id = r.body["id"].as_str().expect("id").to_string();
        let got = self.get(res, &id).await;
        self.read_back(res, &sent, &got, "read after create");

        // List and .search.
        let filter = format!("id eq \"{id}\"");
        let url = reqwest::Url::parse_with_params(
            &format!("{}{}", self.s.base, res.endpoint),
            &[("filter", filter.as_str())],
        )
        .expect("url");
        let l = self.s.get(url.as_str()).await;
        self.check(
            l.status == StatusCode::OK && l.body["totalResults"] == 1,
            || format!("list {} {filter}: {:#}", res.name, l.body),
        );
        self.read_back(res, &sent, &l.body["Resources"][0], "list");
        let q = self
            .s
            .post(
                &format!("{}/.search", res.endpoint),
                json!({"schemas": [SEARCH], "filter": filter}),
            )
            .await;
        self.check(
            q.status == StatusCode::OK && q.body["totalResults"] == 1,
            || format!(".search {}: {:#}", res.name, q.body),
        );
        self.read_back(res, &sent, &q.body["Resources"][0], ".search");

        // attributes / excludedAttributes, attribute by attribute.
        let paths: Vec<(Option<String>, Attr)> = res
            .parts
            .iter()
            .flat_map(|(u, attrs)| attrs.iter().map(move |a| (u.clone(), a.clone())))
            .filter(|(_, a)| a.readable() && a.returned != "always")
            .collect();
        for (urn, a) in &paths {
            let path = match urn {
                Some(u) => format!("{u}:{}", a.name),
                None => a.name.clone(),
            };
            let base = format!("{}{}/{id}", self.s.base, res.endpoint);
            let only = reqwest::Url::parse_with_params(&base, &[("attributes", path.as_str())])
                .expect("url");
            let r = self.s.get(only.as_str()).await;
            let has = Self::at(&r.body, urn.as_deref(), &a.name, None).is_some();
            let had = Self::at(&got, urn.as_deref(), &a.name, None).is_some();
            self.check(r.status == StatusCode::OK && has == had, || {
                format!("attributes={path}: {:#}", r.body)
            });
            // Nothing else that is returned by default.
            for (u2, b) in &paths {
                if (u2, &b.name) != (urn, &a.name) {
                    let other = Self::at(&r.body, u2.as_deref(), &b.name, None);
                    self.check(other.is_none(), || {
                        format!("attributes={path} also returned {}: {:#}", b.name, r.body)
                    });
                }
            }
            let ex =
                reqwest::Url::parse_with_params(&base, &[("excludedAttributes", path.as_str())])
                    .expect("url");
            let r = self.s.get(ex.as_str()).await;
            self.check(
                r.status == StatusCode::OK
                    && Self::at(&r.body, urn.as_deref(), &a.name, None).is_none()
                    && r.body["id"] == id.as_str(),
                || format!("excludedAttributes={path}: {:#}", r.body),
            );
        }

        // The same projections in a list and in a .search body.
        if let Some((urn, a)) = paths.first() {
            let path = match urn {
                Some(u) => format!("{u}:{}", a.name),
                None => a.name.clone(),
            };
            let url = reqwest::Url::parse_with_params(
                &format!("{}{}", self.s.base, res.endpoint),
                &[("filter", filter.as_str()), ("attributes", path.as_str())],
            )
            .expect("url");
            let l = self.s.get(url.as_str()).await;
            let q = self
                .s
                .post(
                    &format!("{}/.search", res.endpoint),
                    json!({"schemas": [SEARCH], "filter": filter, "excludedAttributes": [path]}),
                )
                .await;
            let listed = &l.body["Resources"][0];
            let searched = &q.body["Resources"][0];
            let other_listed = paths
                .iter()
                .skip(1)
                .any(|(u, b)| Self::at(listed, u.as_deref(), &b.name, None).is_some());
            self.check(
                listed["id"] == id.as_str()
                    && Self::at(listed, urn.as_deref(), &a.name, None).is_some()
                        == Self::at(&got, urn.as_deref(), &a.name, None).is_some()
                    && !other_listed,
                || format!("list attributes={path}: {:#}", l.body),
            );
            self.check(
                searched["id"] == id.as_str()
                    && Self::at(searched, urn.as_deref(), &a.name, None).is_none(),
                || format!(".search excludedAttributes={path}: {:#}", q.body),
            );
        }

        // PUT with fresh values (immutable ones as created).
        let mut put = self.resource(res, true);
        for (urn, attrs) in &res.parts {
            for a in attrs.iter().filter(|a| a.mutability == "immutable") {
                let from = match urn {
                    Some(u) => get_ci(&sent, u).and_then(|x| get_ci(x, &a.name)).cloned(),
                    None => get_ci(&sent, &a.name).cloned(),
                };
                if let Some(v) = from {
                    match urn {
                        Some(u) => put[u][a.name.as_str()] = v,
                        None => put[a.name.as_str()] = v,
                    }
                }
            }
        }
        let r = self
            .s
            .put(&format!("{}/{id}", res.endpoint), put.clone())
            .await;
        self.check(r.status == StatusCode::OK, || {
            format!("PUT {}: {} {:#}\nsent {put:#}", res.name, r.status, r.body)
        });
        self.read_back(res, &put, &r.body, "PUT response");
        let got = self.get(res, &id).await;
        self.read_back(res, &put, &got, "read after PUT");

        // PATCH every mutable attribute and sub-attribute.
        for (urn, a) in paths
            .iter()
            .filter(|(_, a)| a.mutable())
            .cloned()
            .collect::<Vec<_>>()
        {
            self.patch_attribute(res, &id, &put, urn.as_deref(), &a)
                .await;
        }
        // Write-only attributes: accepted, never returned.
        for (urn, attrs) in &res.parts {
            for a in attrs.iter().filter(|a| a.mutable() && !a.readable()) {
                let path = match urn {
                    Some(u) => format!("{u}:{}", a.name),
                    None => a.name.clone(),
                };
                let v = self.value(res, &a.name.clone(), a, false);
                let st = self
                    .patch(res, &id, json!({"op": "replace", "path": path, "value": v}))
                    .await;
                self.check(st == StatusCode::OK || st == StatusCode::NO_CONTENT, || {
                    format!("PATCH replace {path} (writeOnly): {st}")
                });
                let got = self.get(res, &id).await;
                self.check(
                    Self::at(&got, urn.as_deref(), &a.name, None).is_none(),
                    || format!("{path} is writeOnly yet returned: {got:#}"),
                );
            }
        }
        got
    }

    /// Puts the resource back to `full` (so that each attribute's checks start
    /// from the same state).
    async fn restore(&mut self, res: &Resource, id: &str, full: &Value) {
        let r = self
            .s
            .put(&format!("{}/{id}", res.endpoint), full.clone())
            .await;
        self.check(r.status == StatusCode::OK, || {
            format!("PUT {} (restore): {} {:#}", res.name, r.status, r.body)
        });
    }

    async fn patch_attribute(
        &mut self,
        res: &Resource,
        id: &str,
        full: &Value,
        urn: Option<&str>,
        a: &Attr,
    ) {
        let path = match urn {
            Some(u) => format!("{u}:{}", a.name),
            None => a.name.clone(),
        };
        let ok = |st: StatusCode| st == StatusCode::OK || st == StatusCode::NO_CONTENT;
        self.restore(res, id, full).await;

        // replace
        let v = self.value(res, &a.name.clone(), a, false);
        let st = self
            .patch(res, id, json!({"op": "replace", "path": path, "value": v}))
            .await;
        self.check(ok(st), || format!("PATCH replace {path} = {v}: {st}"));
        let got = self.get(res, id).await;
        let r = covers(&v, Self::at(&got, urn, &a.name, None), a, true);
        self.check(r.is_ok(), || {
            format!("PATCH replace {path}: {}\n{got:#}", r.unwrap_err())
        });

        // add
        let v = self.value(res, &a.name.clone(), a, false);
        let add = if a.multi && v.as_array().is_some_and(|x| x.len() > 1) {
            json!([v[0].clone()])
        } else {
            v
        };
        let st = self
            .patch(res, id, json!({"op": "add", "path": path, "value": add}))
            .await;
        self.check(ok(st), || format!("PATCH add {path} = {add}: {st}"));
        let got = self.get(res, id).await;
        let r = covers(&add, Self::at(&got, urn, &a.name, None), a, !a.multi);
        self.check(r.is_ok(), || {
            format!("PATCH add {path}: {}\n{got:#}", r.unwrap_err())
        });

        // Sub-attributes: replace, add, remove, each read back.
        for sub in a.subs.iter().filter(|s| s.mutable() && s.readable()) {
            self.restore(res, id, full).await;
            let sp = format!("{path}.{}", sub.name);
            for op in ["replace", "add"] {
                let name = format!("{}.{}", a.name, sub.name);
                let v = self.value(res, &name, sub, false);
                let st = self
                    .patch(res, id, json!({"op": op, "path": sp, "value": v}))
                    .await;
                self.check(ok(st), || format!("PATCH {op} {sp} = {v}: {st}"));
                let got = self.get(res, id).await;
                let r = covers(
                    &v,
                    Self::at(&got, urn, &a.name, Some(&sub.name)),
                    sub,
                    !sub.multi || op == "replace",
                );
                self.check(r.is_ok(), || {
                    format!("PATCH {op} {sp}: {}\n{got:#}", r.unwrap_err())
                });
            }
            let before = self.get(res, id).await;
            let st = self
                .patch(res, id, json!({"op": "remove", "path": sp}))
                .await;
            let got = self.get(res, id).await;
            if sub.required {
                self.check(st == StatusCode::BAD_REQUEST && got == before, || {
                    format!("PATCH remove {sp} (required): {st}\n{got:#}")
                });
            } else {
                self.check(ok(st), || format!("PATCH remove {sp}: {st}"));
                let left = Self::at(&got, urn, &a.name, Some(&sub.name));
                self.check(unassigned(left, Some(sub)), || {
                    format!("PATCH remove {sp}: still {left:?}\n{got:#}")
                });
            }
        }

        // remove
        self.restore(res, id, full).await;
        let before = self.get(res, id).await;
        let st = self
            .patch(res, id, json!({"op": "remove", "path": path}))
            .await;
        let got = self.get(res, id).await;
        if a.required {
            self.check(st == StatusCode::BAD_REQUEST && got == before, || {
                format!("PATCH remove {path} (required): {st}\n{got:#}")
            });
        } else {
            self.check(ok(st), || format!("PATCH remove {path}: {st}"));
            let left = Self::at(&got, urn, &a.name, None);
            self.check(unassigned(left, Some(a)), || {
                format!("PATCH remove {path}: still {left:?}\n{got:#}")
            });
        }
    }
}

#[tokio::test]
async fn a_schema_driven_client_round_trips_every_writable_attribute() {
    let s = Scim::start().await;
    let mut c = Client::new(&s);
    let resources = c.discover().await;
    let user = resources
        .iter()
        .find(|r| r.name == "User")
        .expect("a User resource type");
    // Users: two to be Group members, one put through every check.
    for _ in 0..2 {
        let body = c.resource(user, true);
        let r = s.post(&user.endpoint, body.clone()).await;
        c.check(r.status == StatusCode::CREATED, || {
            format!("create User: {} {:#}\nsent {body:#}", r.status, r.body)
        });
        let id = r.body["id"].as_str().expect("id").to_string();
        let loc = r.body["meta"]["location"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}{}/{id}", s.base, user.endpoint));
        c.users.push((id, loc));
    }
    let checked_user = c.exercise(user).await;
    for res in resources.iter().filter(|r| r.name != "User") {
        let got = c.exercise(res).await;
        let id = got["id"].as_str().expect("id").to_string();
        let r = s.delete(&format!("{}/{id}", res.endpoint)).await;
        c.check(r.status == StatusCode::NO_CONTENT, || {
            format!("DELETE {}: {}", res.name, r.status)
        });
        let r = s.get(&format!("{}/{id}", res.endpoint)).await;
        c.check(r.status == StatusCode::NOT_FOUND, || {
            format!("GET deleted {}: {}", res.name, r.status)
        });
    }
    if std::env::var("SCIM_BASE_URL").is_err() {
        assert!(
            resources.iter().any(|r| r.name == "Group"),
            "rosterd serves Groups"
        );
    }
    let id = checked_user["id"].as_str().expect("id").to_string();
    let r = s.delete(&format!("{}/{id}", user.endpoint)).await;
    c.check(r.status == StatusCode::NO_CONTENT, || {
        format!("DELETE User: {}", r.status)
    });
    let r = s.get(&format!("{}/{id}", user.endpoint)).await;
    c.check(r.status == StatusCode::NOT_FOUND, || {
        format!("GET deleted User: {}", r.status)
    });
    eprintln!("schema-driven client: {} checks passed", c.checks);
    assert!(c.checks > 200, "only {} checks ran", c.checks);
    s.stop().await;
}
