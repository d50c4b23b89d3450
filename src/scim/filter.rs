//! SCIM filters (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2): a small hand-written
//! recursive-descent parser, and evaluation over a resource's JSON.
//!
//! # Why not the `scim_v2` crate
//!
//! `scim_v2` 1.0.0 (LALRPOP grammar) was tried first on the grammar this server
//! must accept. It handles `and`/`or`/`not`, parentheses, value paths, sub-attributes,
//! URN-qualified paths and case-insensitive operators, but it rejects forms that
//! Microsoft Entra ID really sends (research file §2, Entra item 9):
//! - unquoted literals: `externalId eq jyoung`, `userName sw O`,
//!   `name.FamilyName eq Employee` (its grammar only has quoted strings, numbers,
//!   `true`/`false`/`null`);
//! - `active eq True` (capitalised boolean literal);
//! - unquoted timestamps: `meta.Created gt 2020-01-01T00:00:00Z`;
//! - a value path followed by a sub-attribute comparison:
//!   `emails[type eq "work"].value eq "x"` (only allowed as a PATCH path there).
//!
//! Pre-quoting Entra's input before handing it to that parser would mean lexing it
//! anyway, so this module parses the grammar itself (≈300 lines, no dependency).
//!
//! Grammar (keywords and operators case-insensitive; precedence `or` < `and` <
//! `not`):
//!
//! ```text
//! filter   = or
//! or       = and *( "or" and )
//! and      = unary *( "and" unary )
//! unary    = "not" unary / "(" filter ")" / attrExp
//! attrExp  = PATH "pr" / PATH op value
//!          / PATH "[" filter "]" [ "." SUB ( "pr" / op value ) ]
//! value    = "string" / number / true / false / null / bare-word (taken as a string)
//! ```
//!
//! Attribute paths keep their raw text; [`super::schema`] resolves them (URN by
//! longest prefix, names case-insensitively) and rejects unknown attributes.

use serde_json::Value;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Lt,
    Ge,
    Le,
}

impl Op {
    fn parse(word: &str) -> Option<Op> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "lt" => Op::Lt,
            "ge" => Op::Ge,
            "le" => Op::Le,
            _ => return None,
        })
    }
}

/// A literal on the right of an operator.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

impl Lit {
    /// The literal as text (for index lookups and string comparisons).
    pub fn as_text(&self) -> String {
        match self {
            Lit::Str(s) => s.clone(),
            Lit::Num(n) => {
                if n.fract() == 0.0 && n.abs() < 1e15 {
                    format!("{}", *n as i64)
                } else {
                    n.to_string()
                }
            }
            Lit::Bool(b) => b.to_string(),
            Lit::Null => String::new(),
        }
    }
}

/// An attribute path as written: `[URN ":"] attr ["." sub]`, still unresolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPath(pub String);

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Present(RawPath),
    Cmp(RawPath, Op, Lit),
    /// `attr[filter]`, optionally followed by `.sub pr` / `.sub op value`.
    ValuePath {
        attr: RawPath,
        filter: Box<Filter>,
        then: Option<(String, Option<(Op, Lit)>)>,
    },
}

/// A PATCH path: `attrPath` or `valuePath [ "." subAttr ]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: RawPath,
    pub filter: Option<Filter>,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Str(String),
    Word(String),
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | '[' | ']' => {
                chars.next();
                out.push(match c {
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    '[' => Tok::LBracket,
                    _ => Tok::RBracket,
                });
            }
            '"' => {
                // A JSON string: find the closing quote, honouring escapes.
                chars.next();
                let mut end = None;
                let mut escaped = false;
                for (j, c) in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        end = Some(j);
                        break;
                    }
                }
                let end = end.ok_or_else(|| format!("unterminated string at offset {i}"))?;
                let lit: String = serde_json::from_str(&s[i..=end])
                    .map_err(|e| format!("bad string literal at offset {i}: {e}"))?;
                out.push(Tok::Str(lit));
            }
            _ => {
                let mut end = s.len();
                while let Some(&(j, c)) = chars.peek() {
                    if c.is_whitespace() || "()[]\"".contains(c) {
                        end = j;
                        break;
                    }
                    chars.next();
                }
                out.push(Tok::Word(s[i..end].to_string()));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut l = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            let r = self.and()?;
            l = Filter::Or(Box::new(l), Box::new(r));
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut l = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            let r = self.unary()?;
            l = Filter::And(Box::new(l), Box::new(r));
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<Filter, String> {
        if self.keyword("not") {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let f = self.or()?;
            if self.next() != Some(Tok::RParen) {
                return Err("missing `)`".into());
            }
            return Ok(f);
        }
        self.attr_exp()
    }

    fn attr_exp(&mut self) -> Result<Filter, String> {
        let path = match self.next() {
            Some(Tok::Word(w)) => w,
            Some(t) => return Err(format!("expected an attribute name, found {t:?}")),
            None => return Err("expected an attribute name, found the end".into()),
        };
        check_path(&path)?;
        if self.peek() == Some(&Tok::LBracket) {
            self.pos += 1;
            let inner = self.or()?;
            if self.next() != Some(Tok::RBracket) {
                return Err("missing `]`".into());
            }
            let then = match self.peek() {
                Some(Tok::Word(w)) if w.starts_with('.') => {
                    let sub = w[1..].to_string();
                    check_path(&sub)?;
                    self.pos += 1;
                    Some((sub, self.condition()?))
                }
                _ => None,
            };
            return Ok(Filter::ValuePath {
                attr: RawPath(path),
                filter: Box::new(inner),
                then,
            });
        }
        match self.condition()? {
            None => Ok(Filter::Present(RawPath(path))),
            Some((op, lit)) => Ok(Filter::Cmp(RawPath(path), op, lit)),
        }
    }

    /// `pr` (None) or `op value`.
    fn condition(&mut self) -> Result<Option<(Op, Lit)>, String> {
        let op = match self.next() {
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("pr") => return Ok(None),
            Some(Tok::Word(w)) => {
                Op::parse(&w).ok_or_else(|| format!("`{w}` is not an operator"))?
            }
            _ => {
                return Err("expected an operator (eq, ne, co, sw, ew, gt, lt, ge, le, pr)".into());
            }
        };
        let lit = match self.next() {
            Some(Tok::Str(s)) => Lit::Str(s),
            Some(Tok::Word(w)) => {
                if w.eq_ignore_ascii_case("true") {
                    Lit::Bool(true)
                } else if w.eq_ignore_ascii_case("false") {
                    Lit::Bool(false)
                } else if w.eq_ignore_ascii_case("null") {
                    Lit::Null
                } else if let Ok(n) = w.parse::<f64>() {
                    Lit::Num(n)
                } else {
                    // Entra sends unquoted literals (`externalId eq jyoung`).
                    Lit::Str(w)
                }
            }
            _ => return Err("expected a value after the operator".into()),
        };
        Ok(Some((op, lit)))
    }
}

fn check_path(p: &str) -> Result<(), String> {
    let ok = p
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-:.$".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("`{p}` is not an attribute path"))
    }
}

/// Parses a filter expression.
pub fn parse(text: &str) -> Result<Filter, String> {
    let toks = lex(text)?;
    if toks.is_empty() {
        return Err("the filter is empty".into());
    }
    let mut p = Parser { toks, pos: 0 };
    let f = p.or()?;
    if p.pos < p.toks.len() {
        return Err(format!("unexpected {:?} after the filter", p.toks[p.pos]));
    }
    Ok(f)
}

/// Parses a PATCH `path`.
pub fn parse_patch_path(text: &str) -> Result<PatchPath, String> {
    let toks = lex(text)?;
    let mut p = Parser { toks, pos: 0 };
    let attr = match p.next() {
        Some(Tok::Word(w)) => w,
        _ => return Err("the path must start with an attribute name".into()),
    };
    check_path(&attr)?;
    let mut out = PatchPath {
        attr: RawPath(attr),
        filter: None,
        sub: None,
    };
    if p.peek() == Some(&Tok::LBracket) {
        p.pos += 1;
        out.filter = Some(p.or()?);
        if p.next() != Some(Tok::RBracket) {
            return Err("missing `]`".into());
        }
        if let Some(Tok::Word(w)) = p.peek()
            && let Some(sub) = w.strip_prefix('.')
        {
            check_path(sub)?;
            out.sub = Some(sub.to_string());
            p.pos += 1;
        }
    }
    if p.pos < p.toks.len() {
        return Err(format!("unexpected {:?} in the path", p.toks[p.pos]));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Evaluation over JSON.
// ---------------------------------------------------------------------------

/// How evaluation finds attributes: the schema layer resolves a raw path into a
/// location in the resource JSON and says whether it compares case-exactly.
pub trait Resolve {
    /// Where `path` lives, or `None` if no schema defines it.
    fn resolve(&self, path: &str) -> Option<Resolved>;
}

/// A resolved attribute location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub urn: Option<&'static str>,
    pub attr: String,
    pub sub: Option<String>,
    pub case_exact: bool,
    pub datetime: bool,
    /// A standard attribute this server accepts but does not store (never has a value).
    pub ignored: bool,
}

/// Case-insensitive key lookup; `null` counts as absent.
pub fn ci_get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let o = v.as_object()?;
    o.get(key)
        .or_else(|| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

fn location<'a>(doc: &'a Value, r: &Resolved) -> Option<&'a Value> {
    let base = match r.urn {
        Some(urn) => ci_get(doc, urn)?,
        None => doc,
    };
    ci_get(base, &r.attr)
}

/// The values at a resolved path; multi-valued attributes are flattened, and an
/// element that is an object stands for its `value` when no sub-attribute is named.
fn values<'a>(doc: &'a Value, r: &Resolved) -> Vec<&'a Value> {
    let Some(v) = location(doc, r) else {
        return vec![];
    };
    let elems: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    elems
        .into_iter()
        .filter_map(|e| match (&r.sub, e) {
            (Some(s), e) => ci_get(e, s),
            (None, Value::Object(_)) => ci_get(e, "value"),
            (None, e) => Some(e),
        })
        .collect()
}

/// Evaluates `f` against `doc`. Paths must already be known to resolve (the
/// schema layer checks a filter before it is run).
pub fn matches(f: &Filter, doc: &Value, res: &dyn Resolve) -> bool {
    match f {
        Filter::And(a, b) => matches(a, doc, res) && matches(b, doc, res),
        Filter::Or(a, b) => matches(a, doc, res) || matches(b, doc, res),
        Filter::Not(a) => !matches(a, doc, res),
        Filter::Present(p) => res
            .resolve(&p.0)
            .is_some_and(|r| values(doc, &r).iter().any(|v| present(v))),
        Filter::Cmp(p, op, lit) => {
            let Some(r) = res.resolve(&p.0) else {
                return false;
            };
            let vals = values(doc, &r);
            if *lit == Lit::Null {
                let any = vals.iter().any(|v| present(v));
                return match op {
                    Op::Eq => !any,
                    Op::Ne => any,
                    _ => false,
                };
            }
            vals.iter().any(|v| compare(v, *op, lit, &r))
        }
        Filter::ValuePath { attr, filter, then } => {
            let Some(r) = res.resolve(&attr.0) else {
                return false;
            };
            let elems: Vec<&Value> = match location(doc, &r) {
                Some(Value::Array(a)) => a.iter().collect(),
                Some(v) => vec![v],
                None => vec![],
            };
            let sub_res = SubResolver {
                parent: res,
                attr: &attr.0,
            };
            elems.into_iter().any(|e| {
                matches(filter, e, &sub_res)
                    && match then {
                        None => true,
                        Some((sub, cond)) => {
                            let r = sub_res.resolve(sub).unwrap_or(Resolved {
                                urn: None,
                                attr: sub.clone(),
                                sub: None,
                                case_exact: false,
                                datetime: false,
                                ignored: true,
                            });
                            let v = ci_get(e, &r.attr);
                            match cond {
                                None => v.is_some_and(present),
                                Some((op, lit)) => v.is_some_and(|v| compare(v, *op, lit, &r)),
                            }
                        }
                    }
            })
        }
    }
}

/// Resolves sub-attribute names inside `attr[...]` against the element itself.
pub struct SubResolver<'a> {
    pub parent: &'a dyn Resolve,
    pub attr: &'a str,
}

impl Resolve for SubResolver<'_> {
    fn resolve(&self, path: &str) -> Option<Resolved> {
        let full = self.parent.resolve(&format!("{}.{path}", self.attr))?;
        Some(Resolved {
            urn: None,
            attr: full.sub.unwrap_or_else(|| path.to_string()),
            sub: None,
            case_exact: full.case_exact,
            datetime: full.datetime,
            ignored: full.ignored,
        })
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// `"true"`/`"false"` (any case) and booleans as a boolean.
pub fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn compare(v: &Value, op: Op, lit: &Lit, r: &Resolved) -> bool {
    use std::cmp::Ordering;
    let ord_ok = |o: Ordering| match op {
        Op::Eq => o == Ordering::Equal,
        Op::Ne => o != Ordering::Equal,
        Op::Gt => o == Ordering::Greater,
        Op::Ge => o != Ordering::Less,
        Op::Lt => o == Ordering::Less,
        Op::Le => o != Ordering::Greater,
        _ => false,
    };
    match v {
        Value::Bool(b) => {
            let want = match lit {
                Lit::Bool(x) => Some(*x),
                Lit::Str(s) => as_bool(&Value::String(s.clone())),
                _ => None,
            };
            match (op, want) {
                (Op::Eq, Some(w)) => *b == w,
                (Op::Ne, Some(w)) => *b != w,
                _ => false,
            }
        }
        Value::Number(n) => {
            let (Some(a), Ok(b)) = (n.as_f64(), lit.as_text().parse::<f64>()) else {
                return false;
            };
            a.partial_cmp(&b).is_some_and(ord_ok)
        }
        Value::String(s) => {
            if r.datetime {
                let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t.trim()).ok();
                if let (Some(a), Some(b)) = (parse(s), parse(&lit.as_text())) {
                    return ord_ok(a.cmp(&b));
                }
            }
            let (a, b) = if r.case_exact {
                (s.clone(), lit.as_text())
            } else {
                (s.to_lowercase(), lit.as_text().to_lowercase())
            };
            match op {
                Op::Co => a.contains(&b),
                Op::Sw => a.starts_with(&b),
                Op::Ew => a.ends_with(&b),
                _ => ord_ok(a.cmp(&b)),
            }
        }
        _ => false,
    }
}

/// Every raw path a filter names (for validation), with the value-path parent.
pub fn paths(f: &Filter, out: &mut Vec<(Option<String>, String)>) {
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => {
            paths(a, out);
            paths(b, out);
        }
        Filter::Not(a) => paths(a, out),
        Filter::Present(p) | Filter::Cmp(p, _, _) => out.push((None, p.0.clone())),
        Filter::ValuePath { attr, filter, then } => {
            out.push((None, attr.0.clone()));
            let mut inner = Vec::new();
            paths(filter, &mut inner);
            for (_, p) in inner {
                out.push((Some(attr.0.clone()), p));
            }
            if let Some((sub, _)) = then {
                out.push((Some(attr.0.clone()), sub.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_full_grammar_and_entra_forms() {
        for f in [
            r#"userName eq "bjensen""#,
            r#"userName Eq "bjensen""#,
            r#"title pr and (userType eq "Employee" or userType eq "Intern")"#,
            r#"not (userName eq "x")"#,
            r#"emails[type eq "work" and value co "@x"]"#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "1""#,
            r#"externalId eq jyoung"#,
            r#"userName sw O"#,
            r#"meta.Created gt 2020-01-01T00:00:00Z"#,
            r#"emails[type eq "work"].value eq "x""#,
            r#"active eq True"#,
            r#"name.FamilyName eq Employee and (emails.Value co "@x")"#,
            r#"userName eq "a \"quoted\" name""#,
            r#"a eq 1 OR b eq 2 AND NOT (c pr)"#,
        ] {
            assert!(parse(f).is_ok(), "{f}: {:?}", parse(f));
        }
        for bad in [
            "",
            "userName",
            "userName eq",
            "userName zz \"x\"",
            "(userName eq \"x\"",
            "emails[type eq \"work\"",
            "userName eq \"x\" garbage",
            "\"x\" eq userName",
        ] {
            assert!(parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn precedence_and_binds_tighter_than_or() {
        let f = parse("a eq 1 or b eq 2 and c eq 3").unwrap();
        assert!(matches!(f, Filter::Or(_, r) if matches!(*r, Filter::And(_, _))));
    }

    #[test]
    fn patch_paths() {
        let p = parse_patch_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(p.attr.0, "emails");
        assert_eq!(p.sub.as_deref(), Some("value"));
        assert!(p.filter.is_some());
        let p =
            parse_patch_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager")
                .unwrap();
        assert!(p.filter.is_none());
        assert!(parse_patch_path("members[value eq \"1\"] x").is_err());
        assert!(parse_patch_path("").is_err());
    }
}
