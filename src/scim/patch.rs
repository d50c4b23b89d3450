//! PATCH (RFC 7644 §3.5.2) on a User: the operations are applied, in order, to
//! the rendered resource JSON; the result is then read back as a full replace, so
//! PATCH and PUT share one mapping and the domain validates the outcome once.
//!
//! Forms accepted (research file §2): `op` in any case (`Replace`); no `path` with
//! value keys that are themselves paths (`name.givenName`, extension URN paths);
//! extension URNs resolved by longest prefix; value paths with and without a
//! sub-attribute (`emails[type eq "work"].value`), upserting an element with the
//! filter's `type` when none matches; `remove` with a `value` array removes only
//! the listed elements; `""`/`null` values clear. ReadOnly attributes (`id`,
//! `meta`, `groups`) and standard attributes rosterd does not store (`title`,
//! `addresses`, ...) are ignored; attributes no schema defines are `invalidPath`.

use serde_json::{Map, Value};

use super::error::ScimError;
use super::filter::{self, Filter, Lit, Op as CmpOp, SubResolver, ci_get, parse_patch_path};
use super::schema::{Attr, AttrType, Kind, Mutability};

/// A PATCH operation kind (matched ignoring case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Replace,
    Remove,
}

#[derive(Debug, Clone)]
pub struct PatchOp {
    pub kind: OpKind,
    pub path: Option<String>,
    pub value: Option<Value>,
}

/// A PATCH path that does not parse: `invalidPath`, or `invalidFilter` when its
/// value filter is past the filter limits ([`filter::MAX_TOKENS`],
/// [`filter::MAX_DEPTH`]).
pub fn path_error(raw: &str, e: &filter::ParseError) -> ScimError {
    let detail = filter::describe("path", raw, e);
    if e.is_limit() {
        ScimError::invalid_filter(detail)
    } else {
        ScimError::invalid_path(detail)
    }
}

/// Reads a PatchOp request body.
pub fn parse_ops(body: &Value) -> Result<Vec<PatchOp>, ScimError> {
    let ops = ci_get(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("a PATCH body needs an `Operations` array"))?;
    let mut out = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let kind = match ci_get(op, "op")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
        {
            Some(k) if k == "add" => OpKind::Add,
            Some(k) if k == "replace" => OpKind::Replace,
            Some(k) if k == "remove" => OpKind::Remove,
            other => {
                return Err(ScimError::invalid_syntax(format!(
                    "Operations[{i}].op must be add, replace or remove, not {other:?}"
                )));
            }
        };
        let path = ci_get(op, "path")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string);
        let value = op
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("value")))
            .map(|(_, v)| v.clone());
        if kind == OpKind::Remove && path.is_none() {
            return Err(ScimError::bad(
                "noTarget",
                format!("Operations[{i}]: remove needs a path"),
            ));
        }
        if kind != OpKind::Remove && value.is_none() {
            return Err(ScimError::invalid_syntax(format!(
                "Operations[{i}]: {kind:?} needs a value"
            )));
        }
        out.push(PatchOp { kind, path, value });
    }
    Ok(out)
}

/// Applies one operation to a resource document of `kind`.
pub fn apply(doc: &mut Value, kind: Kind, op: &PatchOp) -> Result<(), ScimError> {
    match &op.path {
        Some(p) => apply_at(doc, kind, op.kind, p, op.value.clone()),
        None => {
            let Some(Value::Object(map)) = &op.value else {
                return Err(ScimError::invalid_syntax(
                    "an operation without path needs an object value",
                ));
            };
            for (k, v) in map {
                if ["schemas", "id", "meta"]
                    .iter()
                    .any(|x| x.eq_ignore_ascii_case(k))
                {
                    continue;
                }
                match (kind.extension_urn(k), v) {
                    (Some(urn), Value::Object(inner)) => {
                        for (k2, v2) in inner {
                            apply_at(doc, kind, op.kind, &format!("{urn}:{k2}"), Some(v2.clone()))?;
                        }
                    }
                    _ => apply_at(doc, kind, op.kind, k, Some(v.clone()))?,
                }
            }
            Ok(())
        }
    }
}

/// RFC 7644 §3.5.2.2: an operation may not remove (or leave unassigned) a
/// required attribute, nor a required sub-attribute of a value that is still
/// there: 400 `mutability`, nothing changed.
pub fn check_required(doc: &Value, kind: Kind) -> Result<(), ScimError> {
    for (urn, attrs) in kind.attribute_tables() {
        let container = match urn {
            Some(u) => match ci_get(doc, u) {
                Some(c) => c,
                None => continue,
            },
            None => doc,
        };
        for a in attrs
            .iter()
            .filter(|a| !a.ignored && a.mutability != Mutability::ReadOnly)
        {
            let v = ci_get(container, a.name).filter(|v| !absent(v));
            let Some(v) = v else {
                if a.required {
                    return Err(ScimError::bad(
                        "mutability",
                        format!("{} is required; it can be replaced, not removed", a.name),
                    ));
                }
                continue;
            };
            let elems: Vec<&Value> = match v {
                Value::Array(items) => items.iter().collect(),
                v => vec![v],
            };
            for e in elems.into_iter().filter(|e| e.is_object()) {
                for sub in a.sub.iter().filter(|s| s.required) {
                    if ci_get(e, sub.name).is_none_or(absent) {
                        return Err(ScimError::bad(
                            "mutability",
                            format!(
                                "{}.{} is required in every value of {}; remove the value instead",
                                a.name, sub.name, a.name
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// An unassigned value: null, `""`, `[]` or `{}`.
fn absent(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.iter().all(absent),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn is_empty(v: &Option<Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Object(o)) => o.values().all(|x| x.is_null() || x.as_str() == Some("")),
        _ => false,
    }
}

/// Renames the keys of an object value to the attribute's sub-attribute spelling.
fn canon(a: &Attr, v: Value) -> Value {
    match v {
        Value::Object(m) if !a.sub.is_empty() => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let name = a
                        .sub
                        .iter()
                        .find(|s| s.name.eq_ignore_ascii_case(&k))
                        .map(|s| s.name.to_string())
                        .unwrap_or(k);
                    (name, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|x| canon(a, x)).collect()),
        v => v,
    }
}

fn merge(target: &mut Value, v: Value) {
    match (target, v) {
        (Value::Object(t), Value::Object(m)) => {
            for (k, v) in m {
                if v.is_null() || v.as_str() == Some("") {
                    t.remove(&k);
                } else {
                    t.insert(k, v);
                }
            }
        }
        (t, v) => *t = v,
    }
}

/// `a eq "x" and b eq "y"` → `{a: "x", b: "y"}`: the element an upsert creates.
fn eq_terms(f: &Filter, out: &mut Map<String, Value>) {
    match f {
        Filter::And(a, b) => {
            eq_terms(a, out);
            eq_terms(b, out);
        }
        Filter::Cmp(p, CmpOp::Eq, lit) => {
            let v = match lit {
                Lit::Str(s) => Value::String(s.clone()),
                Lit::Bool(b) => Value::Bool(*b),
                Lit::Num(_) => Value::String(lit.as_text()),
                Lit::Null => return,
            };
            out.insert(p.0.clone(), v);
        }
        _ => {}
    }
}

fn value_of(e: &Value) -> Option<String> {
    match e {
        Value::Object(_) => ci_get(e, "value").map(|v| match v {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        }),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// One operation at one path: resolve the path against the schema, find the
/// object it lives in, then apply it to the filtered elements, to a
/// sub-attribute, or to the whole attribute.
fn apply_at(
    doc: &mut Value,
    kind: Kind,
    op: OpKind,
    raw: &str,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let Some(target) = resolve_target(kind, raw)? else {
        return Ok(());
    };
    let a = target.attr;
    let container = container_of(doc, target.urn, raw)?;
    let value = value.map(|v| canon(a, v));
    if let Some(f) = &target.path.filter {
        let res = SubResolver {
            parent: &kind,
            attr: &target.path.attr.0,
        };
        apply_filtered(container, &target, f, &res, op, value);
    } else if let Some(s) = &target.sub_name {
        let clear = op == OpKind::Remove || (op == OpKind::Replace && is_empty(&value));
        apply_sub(container, a, s, op, value, clear);
    } else {
        apply_whole(container, a, op, value);
    }
    Ok(())
}

/// Where a PATCH path points: the parsed path, the attribute's extension URN (if
/// any), its definition and the sub-attribute's schema spelling.
struct Target {
    path: filter::PatchPath,
    urn: Option<&'static str>,
    attr: &'static Attr,
    sub_name: Option<String>,
}

/// Resolves `raw` against the schema: an unknown attribute, sub-attribute or
/// filter attribute is a 400 `invalidPath`; `None` when the attribute is one a
/// client cannot write (ignored, read-only, immutable), which is skipped.
fn resolve_target(kind: Kind, raw: &str) -> Result<Option<Target>, ScimError> {
    let path = parse_patch_path(raw).map_err(|e| path_error(raw, &e))?;
    let (urn, a, sub_attr) = kind
        .lookup(&path.attr.0)
        .ok_or_else(|| ScimError::invalid_path(format!("path `{raw}`: no such attribute")))?;
    let sub_name: Option<String> = match (&path.sub, sub_attr) {
        (Some(s), _) => Some(
            a.sub
                .iter()
                .find(|x| x.name.eq_ignore_ascii_case(s))
                .map(|x| x.name.to_string())
                .ok_or_else(|| {
                    ScimError::invalid_path(format!("path `{raw}`: no sub-attribute `{s}`"))
                })?,
        ),
        (None, Some(s)) => Some(s.name.to_string()),
        (None, None) => None,
    };
    if let Some(f) = &path.filter {
        super::schema::check_filter(kind, &prefix_filter(f, &path.attr.0))
            .map_err(|e| ScimError::invalid_path(format!("path `{raw}`: {e}")))?;
    }
    let leaf_ro = sub_name
        .as_deref()
        .and_then(|s| a.sub.iter().find(|x| x.name == s))
        .is_some_and(|x| x.mutability == Mutability::ReadOnly);
    if a.ignored || matches!(a.mutability, Mutability::ReadOnly | Mutability::Immutable) || leaf_ro
    {
        return Ok(None);
    }
    Ok(Some(Target {
        path,
        urn,
        attr: a,
        sub_name,
    }))
}

/// The object an attribute lives in: the resource, or its extension's object
/// (created when absent).
fn container_of<'a>(
    doc: &'a mut Value,
    urn: Option<&str>,
    raw: &str,
) -> Result<&'a mut Map<String, Value>, ScimError> {
    let container = match (urn, doc) {
        (_, d) if !d.is_object() => {
            return Err(ScimError::invalid_syntax("the resource is not an object"));
        }
        (Some(u), Value::Object(root)) => root
            .entry(u.to_string())
            .or_insert_with(|| Value::Object(Map::new())),
        (_, d) => d,
    };
    container
        .as_object_mut()
        .ok_or_else(|| ScimError::invalid_path(format!("path `{raw}`: not an object")))
}

/// `attr[filter]` or `attr[filter].sub`: the elements the filter selects.
fn apply_filtered(
    container: &mut Map<String, Value>,
    t: &Target,
    f: &Filter,
    res: &SubResolver<'_>,
    op: OpKind,
    value: Option<Value>,
) {
    let a = t.attr;
    let arr = container
        .entry(a.name.to_string())
        .or_insert_with(|| Value::Array(vec![]));
    if !arr.is_array() {
        *arr = Value::Array(vec![arr.take()]);
    }
    let Some(items) = arr.as_array_mut() else {
        return;
    };
    let hits: Vec<usize> = (0..items.len())
        .filter(|i| filter::matches(f, &items[*i], res))
        .collect();
    // Clearing a required sub-attribute (Entra's `"value": ""` on
    // `phoneNumbers[type eq "mobile"].value`) clears the values it selects.
    let required_sub = t
        .sub_name
        .as_deref()
        .is_some_and(|s| a.sub.iter().any(|x| x.name == s && x.required));
    if op == OpKind::Remove || (is_empty(&value) && t.sub_name.is_some()) {
        match &t.sub_name {
            Some(s) if !required_sub => {
                for i in hits {
                    if let Some(o) = items[i].as_object_mut() {
                        o.remove(s);
                    }
                }
            }
            _ => {
                let mut i = 0;
                items.retain(|_| {
                    i += 1;
                    !hits.contains(&(i - 1))
                });
            }
        }
        return;
    }
    let v = value.unwrap_or(Value::Null);
    if hits.is_empty() {
        // Entra: upsert an element with the filter's terms.
        let mut m = Map::new();
        eq_terms(f, &mut m);
        let mut elem = canon(a, Value::Object(m));
        match &t.sub_name {
            Some(s) => {
                elem[s.as_str()] = v;
            }
            None => merge(&mut elem, v),
        }
        items.push(elem);
    } else {
        for i in hits {
            match &t.sub_name {
                Some(s) => items[i][s.as_str()] = v.clone(),
                None => merge(&mut items[i], v.clone()),
            }
        }
    }
}

/// `attr.sub` without a filter: the sub-attribute of the attribute (of its
/// primary element, else the first, when multi-valued).
fn apply_sub(
    container: &mut Map<String, Value>,
    a: &Attr,
    s: &str,
    op: OpKind,
    value: Option<Value>,
    clear: bool,
) {
    let target = container.entry(a.name.to_string()).or_insert_with(|| {
        if a.multi {
            Value::Array(vec![])
        } else {
            Value::Object(Map::new())
        }
    });
    let elem = if a.multi {
        let Some(items) = target.as_array_mut() else {
            return;
        };
        if items.is_empty() {
            items.push(Value::Object(Map::new()));
        }
        let idx = items
            .iter()
            .position(|e| ci_get(e, "primary").and_then(filter::as_bool) == Some(true))
            .unwrap_or(0);
        &mut items[idx]
    } else {
        target
    };
    let sub_multi = a.sub.iter().any(|x| x.name == s && x.multi);
    let Some(o) = elem.as_object_mut() else {
        return;
    };
    if clear || is_empty(&value) {
        o.remove(s);
    } else if let Some(v) = value {
        match (op, o.get_mut(s)) {
            // `add` to a multi-valued sub-attribute adds values.
            (OpKind::Add, Some(Value::Array(items))) if sub_multi => {
                for n in match v {
                    Value::Array(xs) => xs,
                    x => vec![x],
                } {
                    if !items.contains(&n) {
                        items.push(n);
                    }
                }
            }
            _ => {
                o.insert(s.to_string(), v);
            }
        }
    }
}

/// The whole attribute: remove it (or the listed values of a multi-valued one),
/// clear it (`replace` with an empty value), add values, or replace it.
fn apply_whole(container: &mut Map<String, Value>, a: &Attr, op: OpKind, value: Option<Value>) {
    let name = a.name.to_string();
    if op == OpKind::Remove {
        if a.multi
            && let Some(v) = &value
        {
            let drop: Vec<String> = match v {
                Value::Array(xs) => xs.iter().filter_map(value_of).collect(),
                x => value_of(x).into_iter().collect(),
            };
            if let Some(Value::Array(items)) = container.get_mut(&name) {
                items.retain(|e| value_of(e).is_none_or(|x| !drop.contains(&x)));
            }
            return;
        }
        container.remove(&name);
        return;
    }
    if op == OpKind::Replace && is_empty(&value) {
        container.remove(&name);
        return;
    }
    let Some(v) = value else {
        return;
    };
    if a.multi {
        let new_items = match v {
            Value::Array(xs) => xs,
            x => vec![x],
        };
        match op {
            OpKind::Add => {
                let arr = container
                    .entry(name)
                    .or_insert_with(|| Value::Array(vec![]));
                if let Some(items) = arr.as_array_mut() {
                    for n in new_items {
                        let dup = value_of(&n).is_some_and(|nv| {
                            items.iter().any(|e| value_of(e) == Some(nv.clone()))
                        });
                        if !dup {
                            items.push(n);
                        }
                    }
                }
            }
            _ => {
                container.insert(name, Value::Array(new_items));
            }
        }
    } else if a.ty == AttrType::Complex {
        let target = container
            .entry(name)
            .or_insert_with(|| Value::Object(Map::new()));
        merge(target, v);
    } else {
        container.insert(name, v);
    }
}

/// Prefixes a value filter's paths with their parent (`type` → `emails.type`) so
/// the schema can check them.
fn prefix_filter(f: &Filter, parent: &str) -> Filter {
    Filter::ValuePath {
        attr: filter::RawPath(parent.to_string()),
        filter: Box::new(f.clone()),
        then: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(doc: &mut Value, ops: Value) -> Result<(), ScimError> {
        for op in parse_ops(&json!({ "Operations": ops }))? {
            apply(doc, Kind::User, &op)?;
        }
        Ok(())
    }

    #[test]
    fn entra_forms() {
        let mut doc = json!({"userName": "a", "active": true, "emails": [{"value": "a@x", "type": "work", "primary": true}]});
        run(
            &mut doc,
            json!([
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "555 0100"},
                {"op": "replace", "path": "addresses[type eq \"work\"].formatted", "value": "1 Main St"},
                {"op": "replace", "value": {"name.givenName": "Ann", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "7"}},
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "b@x"},
                {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "271"},
            ]),
        )
        .unwrap();
        assert_eq!(doc["active"], "False");
        assert_eq!(
            doc["phoneNumbers"][0],
            json!({"type": "mobile", "value": "555 0100"})
        );
        assert_eq!(doc["name"]["givenName"], "Ann");
        assert_eq!(doc["emails"][0]["value"], "b@x");
        assert_eq!(doc["emails"].as_array().unwrap().len(), 1);
        let ent = &doc["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];
        assert_eq!(ent["employeeNumber"], "7");
        assert_eq!(ent["manager"], "271");
        assert!(doc.get("addresses").is_none());
        run(&mut doc, json!([{"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": ""}])).unwrap();
        assert!(
            doc["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]
                .get("manager")
                .is_none()
        );
    }

    #[test]
    fn invalid_paths_and_ops() {
        let mut doc = json!({});
        assert_eq!(
            run(
                &mut doc,
                json!([{"op": "replace", "path": "nosuch", "value": 1}])
            )
            .unwrap_err()
            .scim_type,
            Some("invalidPath")
        );
        assert_eq!(
            run(
                &mut doc,
                json!([{"op": "replace", "path": "emails[type eq", "value": 1}])
            )
            .unwrap_err()
            .scim_type,
            Some("invalidPath")
        );
        assert!(
            run(
                &mut doc,
                json!([{"op": "frobnicate", "path": "userName", "value": 1}])
            )
            .is_err()
        );
        // readOnly attributes are ignored.
        run(
            &mut doc,
            json!([{"op": "replace", "value": {"id": "x", "meta": {}}}]),
        )
        .unwrap();
        assert_eq!(doc, json!({}));
    }
}
