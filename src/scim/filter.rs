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
//!
//! # Limits
//!
//! Any SCIM client can send a filter, so its size is bounded before anything
//! recurses over it: at most [`MAX_TOKENS`] tokens (checked while lexing) and at
//! most [`MAX_DEPTH`] levels of nesting (`(`, `not`, `attr[`; checked while
//! parsing). Chains of `and`/`or` terms are built as balanced trees, so the tree's
//! depth grows with the log of their length. Evaluating, checking, cloning and
//! dropping a filter recurse over the tree, so they stay within a few hundred
//! frames whatever the input (a test runs the worst cases on a 256 KiB stack).

use serde_json::Value;

/// The most tokens a filter or PATCH path may have (a token is a word, a quoted
/// string, a parenthesis or a bracket): room for ~250 `id eq "…" or …` terms.
pub const MAX_TOKENS: usize = 1000;

/// The deepest nesting of `(`, `not` and `attr[` a filter or PATCH path may have.
pub const MAX_DEPTH: usize = 32;

/// Why a filter or PATCH path does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not the grammar (the message says where).
    Syntax(String),
    /// More than [`MAX_TOKENS`] tokens.
    TooManyTokens,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl ParseError {
    /// True for the size limits (always `invalidFilter`, also in a PATCH path).
    pub fn is_limit(&self) -> bool {
        !matches!(self, ParseError::Syntax(_))
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Syntax(m) => f.write_str(m),
            ParseError::TooManyTokens => write!(
                f,
                "the filter has more than {MAX_TOKENS} tokens (the token limit); split it into several requests"
            ),
            ParseError::TooDeep => write!(
                f,
                "the filter nests `(`, `not` or `[` deeper than {MAX_DEPTH} levels (the nesting limit)"
            ),
        }
    }
}

/// The error detail for `what` (`filter`, `path`) written as `text`: the text is
/// quoted back unless a size limit was hit (then it is long, and the limit is
/// what matters).
pub fn describe(what: &str, text: &str, e: &ParseError) -> String {
    if e.is_limit() {
        format!("{what}: {e}")
    } else {
        format!("{what} `{text}`: {e}")
    }
}

impl From<String> for ParseError {
    fn from(m: String) -> Self {
        ParseError::Syntax(m)
    }
}

impl From<&str> for ParseError {
    fn from(m: &str) -> Self {
        ParseError::Syntax(m.to_string())
    }
}

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

    /// Whether an ordering of value to literal satisfies a comparison
    /// operator (`eq`, `ne`, `gt`, `ge`, `lt`, `le`); `false` for the
    /// substring ones.
    pub(super) fn holds_for(self, o: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering;
        match self {
            Op::Eq => o == Ordering::Equal,
            Op::Ne => o != Ordering::Equal,
            Op::Gt => o == Ordering::Greater,
            Op::Ge => o != Ordering::Less,
            Op::Lt => o == Ordering::Less,
            Op::Le => o != Ordering::Greater,
            Op::Co | Op::Sw | Op::Ew => false,
        }
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

fn lex(s: &str) -> Result<Vec<Tok>, ParseError> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if out.len() >= MAX_TOKENS && !c.is_whitespace() {
            return Err(ParseError::TooManyTokens);
        }
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
    /// Current nesting of `(`, `not` and `[`.
    depth: usize,
}

/// Joins `terms` (in order) into a balanced tree of `join`, pairing neighbours
/// level by level: `n` terms make a tree of depth ⌈log₂ n⌉, not `n`.
fn balanced(mut terms: Vec<Filter>, join: fn(Box<Filter>, Box<Filter>) -> Filter) -> Filter {
    while terms.len() > 1 {
        let mut next = Vec::with_capacity(terms.len().div_ceil(2));
        let mut it = terms.into_iter();
        while let Some(a) = it.next() {
            match it.next() {
                Some(b) => next.push(join(Box::new(a), Box::new(b))),
                None => next.push(a),
            }
        }
        terms = next;
    }
    match terms.pop() {
        Some(f) => f,
        // Callers always pass at least one term.
        None => Filter::Present(RawPath(String::new())),
    }
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

    /// Enters one level of nesting (refused past [`MAX_DEPTH`]).
    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Filter, ParseError> {
        let mut terms = vec![self.and()?];
        while self.keyword("or") {
            self.pos += 1;
            terms.push(self.and()?);
        }
        Ok(balanced(terms, Filter::Or))
    }

    fn and(&mut self) -> Result<Filter, ParseError> {
        let mut terms = vec![self.unary()?];
        while self.keyword("and") {
            self.pos += 1;
            terms.push(self.unary()?);
        }
        Ok(balanced(terms, Filter::And))
    }

    fn unary(&mut self) -> Result<Filter, ParseError> {
        if self.keyword("not") {
            self.pos += 1;
            self.enter()?;
            let f = Filter::Not(Box::new(self.unary()?));
            self.depth -= 1;
            return Ok(f);
        }
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            self.enter()?;
            let f = self.or()?;
            if self.next() != Some(Tok::RParen) {
                return Err("missing `)`".into());
            }
            self.depth -= 1;
            return Ok(f);
        }
        self.attr_exp()
    }

    fn attr_exp(&mut self) -> Result<Filter, ParseError> {
        let path = match self.next() {
            Some(Tok::Word(w)) => w,
            Some(t) => return Err(format!("expected an attribute name, found {t:?}").into()),
            None => return Err("expected an attribute name, found the end".into()),
        };
        check_path(&path)?;
        if self.peek() == Some(&Tok::LBracket) {
            self.pos += 1;
            self.enter()?;
            let inner = self.or()?;
            if self.next() != Some(Tok::RBracket) {
                return Err("missing `]`".into());
            }
            self.depth -= 1;
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
    fn condition(&mut self) -> Result<Option<(Op, Lit)>, ParseError> {
        let op = match self.next() {
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("pr") => return Ok(None),
            Some(Tok::Word(w)) => Op::parse(&w)
                .ok_or_else(|| ParseError::Syntax(format!("`{w}` is not an operator")))?,
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

fn check_path(p: &str) -> Result<(), ParseError> {
    let ok = p
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-:.$".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ParseError::Syntax(format!(
            "`{p}` is not an attribute path"
        )))
    }
}

/// Parses a filter expression.
pub fn parse(text: &str) -> Result<Filter, ParseError> {
    let toks = lex(text)?;
    if toks.is_empty() {
        return Err("the filter is empty".into());
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let f = p.or()?;
    if p.pos < p.toks.len() {
        return Err(format!("unexpected {:?} after the filter", p.toks[p.pos]).into());
    }
    Ok(f)
}

/// Parses a PATCH `path`.
pub fn parse_patch_path(text: &str) -> Result<PatchPath, ParseError> {
    let toks = lex(text)?;
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
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
        p.enter()?;
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
        return Err(format!("unexpected {:?} in the path", p.toks[p.pos]).into());
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
    let ord_ok = |o: std::cmp::Ordering| op.holds_for(o);
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

    /// The issue's 3.4 KB filters (and bigger): refused with the limit named,
    /// never a stack overflow.
    #[test]
    fn refuses_filters_past_the_limits() {
        let parens = format!("{}userName pr{}", "(".repeat(1700), ")".repeat(1700));
        let nots = format!("{}userName pr", "not ".repeat(4100));
        let ands = vec!["userName pr"; 6800].join(" and ");
        let brackets = format!("{}value pr{}", "emails[".repeat(5000), "]".repeat(5000));
        // The lexer counts tokens before the parser nests: past both limits, the
        // token limit is the one named.
        for (text, want) in [
            (&parens, ParseError::TooManyTokens),
            (&nots, ParseError::TooManyTokens),
            (&ands, ParseError::TooManyTokens),
            (&brackets, ParseError::TooManyTokens),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e, want);
            assert!(e.is_limit());
            let shown = describe("filter", text, &e);
            assert!(shown.contains("limit") && shown.len() < 200, "{shown}");
        }
        let path = format!(
            "emails[{}value pr{}]",
            "emails[".repeat(5000),
            "]".repeat(5000)
        );
        assert_eq!(
            parse_patch_path(&path).unwrap_err(),
            ParseError::TooManyTokens
        );
        // Within the token limit, the nesting limit.
        let nots = format!("{}userName pr", "not ".repeat(500));
        assert_eq!(parse(&nots).unwrap_err(), ParseError::TooDeep);
        let path = format!(
            "emails[{}value pr{}]",
            "emails[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(parse_patch_path(&path).unwrap_err(), ParseError::TooDeep);
        let parens = format!("{}userName pr{}", "(".repeat(400), ")".repeat(400));
        assert_eq!(parse(&parens).unwrap_err(), ParseError::TooDeep);
        let path = format!("emails[{}]", vec!["type eq \"work\""; 600].join(" or "));
        assert_eq!(
            parse_patch_path(&path).unwrap_err(),
            ParseError::TooManyTokens
        );
        // Syntax errors stay syntax errors.
        assert!(!parse("userName eq").unwrap_err().is_limit());
    }

    #[test]
    fn accepts_filters_up_to_the_limits() {
        let depth = MAX_DEPTH;
        assert!(
            parse(&format!(
                "{}userName pr{}",
                "(".repeat(depth),
                ")".repeat(depth)
            ))
            .is_ok()
        );
        assert_eq!(
            parse(&format!(
                "{}userName pr{}",
                "(".repeat(depth + 1),
                ")".repeat(depth + 1)
            )),
            Err(ParseError::TooDeep)
        );
        assert!(parse(&format!("{}userName pr", "not ".repeat(depth))).is_ok());
        // 3 tokens a term, 1 per `or`: 250 terms are 999 tokens.
        let ors = vec!["id eq \"x\""; 250].join(" or ");
        assert!(parse(&ors).is_ok());
        let ors = vec!["id eq \"x\""; 251].join(" or ");
        assert_eq!(parse(&ors), Err(ParseError::TooManyTokens));
    }

    #[test]
    fn chains_are_balanced_trees_in_order() {
        fn depth(f: &Filter) -> usize {
            match f {
                Filter::And(a, b) | Filter::Or(a, b) => 1 + depth(a).max(depth(b)),
                Filter::Not(a) => 1 + depth(a),
                Filter::ValuePath { filter, .. } => 1 + depth(filter),
                _ => 1,
            }
        }
        fn leaves(f: &Filter, out: &mut Vec<String>) {
            match f {
                Filter::And(a, b) | Filter::Or(a, b) => {
                    leaves(a, out);
                    leaves(b, out);
                }
                Filter::Present(p) => out.push(p.0.clone()),
                _ => {}
            }
        }
        let names: Vec<String> = (0..300).map(|i| format!("a{i}")).collect();
        let text = names
            .iter()
            .map(|n| format!("{n} pr"))
            .collect::<Vec<_>>()
            .join(" and ");
        let f = parse(&text).unwrap();
        assert!(depth(&f) <= 10, "depth {}", depth(&f));
        let mut got = Vec::new();
        leaves(&f, &mut got);
        assert_eq!(got, names);
    }

    /// The largest trees the limits allow, parsed, checked, evaluated, cloned and
    /// dropped on a 256 KiB stack (a tokio worker has 2 MiB).
    #[test]
    fn worst_allowed_filters_fit_a_small_stack() {
        let d = MAX_DEPTH;
        let mut worst = vec![
            format!("{}userName pr{}", "(".repeat(d), ")".repeat(d)),
            format!("{}userName pr", "not ".repeat(d)),
            format!("{}value pr{}", "emails[".repeat(d), "]".repeat(d)),
            vec!["userName pr"; 333].join(" and "),
            vec!["userName pr"; 333].join(" or "),
        ];
        // Nesting with a short chain at every level: the deepest tree per token.
        // `(` nests one level, `(… not (` two: 21 of them alternating are 31 levels.
        let mut nested = String::from("userName pr");
        for i in 0..(2 * d / 3) {
            nested = if i % 2 == 0 {
                format!("(userName pr and {nested})")
            } else {
                format!("(userName pr or not {nested})")
            };
        }
        worst.push(nested);
        let doc = serde_json::json!({
            "userName": "a",
            "emails": [{"value": "a@example.com", "type": "work"}],
        });
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                for text in &worst {
                    let f = match parse(text) {
                        Ok(f) => f,
                        Err(e) => panic!("{text}: {e}"),
                    };
                    let _ =
                        super::super::schema::check_filter(super::super::schema::Kind::User, &f);
                    let _ = matches(&f, &doc, &super::super::schema::Kind::User);
                    let copy = f.clone();
                    drop(f);
                    drop(copy);
                }
            })
            .unwrap();
        handle.join().unwrap();
    }

    mod fuzz {
        use super::super::*;
        use crate::scim::list::parse_filter;
        use crate::scim::patch::{OpKind, PatchOp, apply};
        use crate::scim::schema::Kind;
        use proptest::prelude::*;

        fn token() -> impl Strategy<Value = &'static str> {
            prop::sample::select(vec![
                "(",
                ")",
                "[",
                "]",
                "not",
                "and",
                "or",
                "pr",
                "eq",
                "co",
                "gt",
                "\"x\"",
                "1",
                "true",
                "null",
                "userName",
                "emails",
                "value",
                "type",
                "name.givenName",
                ".value",
                "members",
                "\"",
                "\\",
                "émails",
                "",
            ])
        }

        /// Random token soup, and deep nestings of the shapes of the issue.
        fn filter_text() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::collection::vec(token(), 0..60).prop_map(|t| t.join(" ")),
                prop::collection::vec(token(), 0..60).prop_map(|t| t.concat()),
                (
                    prop::sample::select(vec![
                        "(",
                        "not ",
                        "emails[",
                        "not (",
                        "emails[value pr and "
                    ]),
                    0usize..3000,
                    prop::sample::select(vec![")", "]", "", ") and userName pr"]),
                )
                    .prop_map(|(open, n, close)| {
                        format!("{}userName pr{}", open.repeat(n), close.repeat(n))
                    }),
                (0usize..8000).prop_map(|n| vec!["userName pr"; n.max(1)].join(" and ")),
            ]
        }

        fn check(text: &str) {
            let doc = serde_json::json!({
                "userName": "a",
                "emails": [{"value": "a@example.com", "type": "work"}],
            });
            for kind in [Kind::User, Kind::Group] {
                match parse_filter(kind, text) {
                    Ok(f) => {
                        let _ = matches(&f, &doc, &kind);
                    }
                    Err(e) => {
                        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{text}");
                        assert_eq!(e.scim_type, Some("invalidFilter"), "{text}");
                    }
                }
            }
            for path in [
                format!("emails[{text}]"),
                format!("emails[{text}].value"),
                text.to_string(),
            ] {
                let op = PatchOp {
                    kind: OpKind::Replace,
                    path: Some(path.clone()),
                    value: Some(serde_json::json!("b@example.com")),
                };
                let mut d = doc.clone();
                if let Err(e) = apply(&mut d, Kind::User, &op) {
                    assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{path}");
                    assert!(e.scim_type.is_some(), "{path}");
                }
            }
        }

        #[test]
        fn random_and_deep_filters_and_paths_give_scim_errors() {
            let config = ProptestConfig {
                cases: 300,
                failure_persistence: None,
                ..ProptestConfig::default()
            };
            // Run on a small stack, so unbounded recursion fails here first.
            std::thread::Builder::new()
                .stack_size(512 * 1024)
                .spawn(move || {
                    let mut runner = proptest::test_runner::TestRunner::new(config);
                    runner
                        .run(&filter_text(), |text| {
                            check(&text);
                            Ok(())
                        })
                        .unwrap();
                })
                .unwrap()
                .join()
                .unwrap();
        }
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
