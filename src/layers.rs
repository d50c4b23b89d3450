//! Tests that keep the Layout in `lib.rs` true: only `store` names sled, no
//! module imports one from a higher layer, and no import cycle runs through
//! `employee`. They read the sources as text (comments, string literals and
//! `#[cfg(test)]` items left out), so they need no extra crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may import from its own layer and the
/// ones below; every top-level module of `src/` must be listed (a new module
/// fails the test until it is placed). Keep in step with `lib.rs`'s Layout.
const LAYERS: &[(&str, &[&str])] = &[
    // Import nothing of the crate but each other.
    (
        "support",
        &["secret", "blocking", "config_helpers", "ratelimit"],
    ),
    // Below the domain: the store's interface, bearer tokens.
    ("store", &["store", "auth"]),
    // The domain: every rule of the roster.
    ("domain", &["employee"]),
    // Clients of the domain that are not HTTP: the sync engine, the outbox worker.
    ("clients", &["sync", "mail"]),
    // The HTTP surfaces, their server loop, and `config`, which parses into
    // their settings (and into the sources', mail's and the domain's values).
    ("surfaces", &["admin", "scim", "web", "serve", "config"]),
    // Read the domain and the engine for the operator: /metrics, systemd.
    ("collectors", &["metrics", "notify"]),
    // Wiring.
    ("wiring", &["daemon", "layers", "(crate root)"]),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The library's files with their module paths (`src/a/b.rs` and
/// `src/a/b/mod.rs` → `["a", "b"]`); the binaries (`main.rs`, `bin/`) are
/// crates of their own and are left out.
fn library_modules() -> Vec<(PathBuf, Vec<String>)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(&src).ok()?.with_extension("");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            if parts[0] == "bin" || parts == ["main"] {
                return None;
            }
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            Some((f, parts))
        })
        .collect()
}

/// Whether the `r` at `i` starts a raw string (`r"`, `br#"`), not an identifier.
fn raw_start(c: &[char], i: usize) -> bool {
    let ident = |k: usize| c[k].is_alphanumeric() || c[k] == '_';
    i == 0 || !ident(i - 1) || (c[i - 1] == 'b' && (i == 1 || !ident(i - 2)))
}

/// The code of a file without comments, with string and char literals
/// emptied, so that neither names a path.
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '/' if c.get(i + 1) == Some(&'/') => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if c.get(i + 1) == Some(&'*') => {
                let mut depth = 0;
                while i < c.len() {
                    if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
            }
            'r' if matches!(c.get(i + 1), Some('"' | '#')) && raw_start(&c, i) => {
                // A raw string: r"…", r#"…"#.
                let mut j = i + 1;
                let mut hashes = 0;
                while c.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if c.get(j) != Some(&'"') {
                    out.push(c[i]);
                    i += 1;
                    continue;
                }
                j += 1;
                while j < c.len() {
                    if c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
            }
            '"' => {
                i += 1;
                while i < c.len() && c[i] != '"' {
                    if c[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            }
            // A char literal ('x', '\n', '\''), not a lifetime ('a).
            '\'' if c.get(i + 1) == Some(&'\\') => {
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            }
            '\'' if c.get(i + 2) == Some(&'\'') => {
                i += 3;
                out.push_str("' '");
            }
            ch => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

/// `code` without the items under `#[cfg(test)]` (test modules, test-only
/// helpers): tests may reach anywhere.
fn without_tests(code: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let item = &rest[at + MARK.len()..];
        let end = match (item.find(';'), item.find('{')) {
            (Some(semi), Some(brace)) if semi < brace => semi + 1,
            (Some(semi), None) => semi + 1,
            (_, Some(brace)) => {
                let mut depth = 0usize;
                let mut end = item.len();
                for (k, ch) in item[brace..].char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = brace + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, None) => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segment of each path of a `{…}` group (`{a, b::c, d::{e, f}}` →
/// a, b, d), nested groups skipped.
fn group_heads(s: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut start = true;
    for (k, ch) in s.char_indices() {
        match ch {
            '{' => {
                depth += 1;
                if depth == 1 {
                    start = true;
                    continue;
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => {
                start = true;
                continue;
            }
            _ => {}
        }
        if depth == 1 && start && !ch.is_whitespace() {
            start = false;
            let id = ident_at(&s[k..]);
            if !id.is_empty() {
                heads.push(id.to_string());
            }
        }
    }
    heads
}

/// Every module path a file's code names through `crate::` or `super::`
/// (in `use` lines, groups and inline paths), as the path's first two
/// segments from the crate root (`crate::employee::Roster` → employee, Roster).
fn imports(code: &str, module: &[String]) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    let bytes = code.as_bytes();
    let boundary = |at: usize| {
        at == 0 || {
            let p = bytes[at - 1] as char;
            !(p.is_alphanumeric() || p == '_' || p == '$' || p == ':')
        }
    };
    let mut add = |base: Vec<String>, rest: &str| {
        let heads = if rest.starts_with('{') {
            group_heads(rest)
        } else {
            vec![ident_at(rest).to_string()]
        };
        for h in heads {
            let mut path = base.clone();
            if h != "self" && !h.is_empty() {
                path.push(h);
            }
            if !path.is_empty() {
                out.insert(path);
            }
        }
    };
    for (at, _) in code.match_indices("crate::") {
        if boundary(at) {
            add(vec![], &code[at + "crate::".len()..]);
        }
    }
    for (at, _) in code.match_indices("super::") {
        if !boundary(at) {
            continue;
        }
        // `super` of a file module `a/b.rs` is `a`; of `a/b/mod.rs`, too.
        let mut base: Vec<String> = module.to_vec();
        let mut rest = &code[at..];
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        add(base, rest);
    }
    out
}

fn layer_of(top: &str) -> Option<(usize, &'static str)> {
    LAYERS
        .iter()
        .enumerate()
        .find(|(_, (_, mods))| mods.contains(&top))
        .map(|(i, (name, _))| (i, *name))
}

/// The modules declared as `#[cfg(test)] mod name;` (test code in a file of
/// its own), by module path.
fn test_only_modules(code: &str, module: &[String]) -> Vec<Vec<String>> {
    const MARK: &str = "#[cfg(test)]";
    code.match_indices(MARK)
        .filter_map(|(at, _)| {
            let item = code[at + MARK.len()..].trim_start();
            let item = item.strip_prefix("pub ").unwrap_or(item);
            let name = ident_at(item.strip_prefix("mod ")?.trim_start());
            let after = item["mod ".len()..].trim_start()[name.len()..].trim_start();
            after.starts_with(';').then(|| {
                let mut path = module.to_vec();
                path.push(name.to_string());
                path
            })
        })
        .collect()
}

/// Each library file (as `src/…`) with its top-level module and the
/// top-level modules its non-test code imports.
fn graph() -> Vec<(String, String, BTreeSet<String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let modules: Vec<(PathBuf, Vec<String>, String)> = library_modules()
        .into_iter()
        .map(|(f, m)| {
            let code = code_only(&std::fs::read_to_string(&f).unwrap());
            (f, m, code)
        })
        .collect();
    let tests: Vec<Vec<String>> = modules
        .iter()
        .flat_map(|(_, m, code)| test_only_modules(code, m))
        .collect();
    let tops: BTreeSet<String> = modules
        .iter()
        .filter_map(|(_, m, _)| m.first().cloned())
        .collect();
    modules
        .into_iter()
        .filter(|(_, m, _)| !tests.iter().any(|t| m.starts_with(t)))
        .map(|(file, module, code)| {
            let code = without_tests(&code);
            let own = module
                .first()
                .cloned()
                .unwrap_or_else(|| "(crate root)".into());
            let to: BTreeSet<String> = imports(&code, &module)
                .into_iter()
                .map(|p| {
                    let head = p[0].clone();
                    if tops.contains(&head) {
                        head
                    } else {
                        // An item of the crate root (`crate::Daemon`).
                        "(crate root)".into()
                    }
                })
                .filter(|t| *t != own)
                .collect();
            let shown = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            (shown, own, to)
        })
        .collect()
}

/// No module imports one from a higher layer (see [`LAYERS`]).
#[test]
fn no_module_imports_from_a_higher_layer() {
    let mut problems = Vec::new();
    for (file, own, to) in graph() {
        let Some((mine, my_name)) = layer_of(&own) else {
            problems.push(format!(
                "{file}: module `{own}` is in no layer: add it to LAYERS in src/layers.rs and to lib.rs's Layout"
            ));
            continue;
        };
        for t in to {
            match layer_of(&t) {
                Some((theirs, their_name)) if theirs > mine => problems.push(format!(
                    "{file}: `{own}` (layer {my_name}) imports `crate::{t}` (layer {their_name}, higher): \
                     move what it needs down, or take it as a plain value"
                )),
                Some(_) => {}
                None => problems.push(format!(
                    "{file}: imports `crate::{t}`, which is in no layer"
                )),
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// No chain of imports leads from `employee` back to `employee`.
#[test]
fn no_import_cycle_runs_through_employee() {
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (file, own, to) in graph() {
        for t in to {
            edges
                .entry(own.clone())
                .or_default()
                .entry(t)
                .or_insert_with(|| file.clone());
        }
    }
    // Breadth-first from employee, keeping how each module was reached.
    let start = "employee".to_string();
    let mut came_from: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.clone()]);
    while let Some(m) = queue.pop_front() {
        for (t, file) in edges.get(&m).into_iter().flatten() {
            if *t == start {
                let mut chain = vec![format!("{file} imports `crate::employee`")];
                let mut at = m.clone();
                while at != start {
                    let (prev, f) = &came_from[&at];
                    chain.push(format!("{f} imports `crate::{at}`"));
                    at = prev.clone();
                }
                chain.reverse();
                panic!(
                    "an import cycle runs through employee:\n{}",
                    chain.join("\n")
                );
            }
            if !came_from.contains_key(t) {
                came_from.insert(t.clone(), (m.clone(), file.clone()));
                queue.push_back(t.clone());
            }
        }
    }
}

/// The parser itself: groups, inline paths and `super::` are all seen.
#[test]
fn the_import_parser_sees_groups_inline_paths_and_super() {
    let code = without_tests(&code_only(
        "use crate::{a, b::c, d::{e, f}};\n\
         // use crate::commented;\n\
         fn x() { let _ = crate::g::h(); let s = \"crate::in_a_string\"; }\n\
         use super::super::k;\n\
         #[cfg(test)]\nmod tests { use crate::only_in_tests; }\n",
    ));
    let got = imports(&code, &["m".into(), "n".into(), "o".into()]);
    let want: BTreeSet<Vec<String>> = [vec!["a"], vec!["b"], vec!["d"], vec!["g"], vec!["m", "k"]]
        .into_iter()
        .map(|p| p.into_iter().map(String::from).collect())
        .collect();
    assert_eq!(got, want);
}

/// Only `store` sees sled (clippy's `disallowed-types` in `clippy.toml`
/// says the same for the types; this catches any other path).
#[test]
fn only_the_store_names_sled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for d in ["src", "tests", "benches"] {
        rust_files(&root.join(d), &mut files);
    }
    let store = root.join("src/store");
    // Built, so that this test does not find itself. sqlx (the PostgreSQL
    // backend) likewise.
    for name in ["sled", "sqlx"] {
        let (path, import) = ([name, "::"].concat(), ["use ", name].concat());
        let offenders: Vec<String> = files
            .iter()
            .filter(|f| !f.starts_with(&store))
            .filter(|f| {
                std::fs::read_to_string(f).unwrap().lines().any(|l| {
                    let code = l.split("//").next().unwrap_or_default();
                    code.contains(&path) || code.contains(&import)
                })
            })
            .map(|f| f.display().to_string())
            .collect();
        assert!(
            offenders.is_empty(),
            "{name} named outside src/store: {offenders:?}"
        );
    }
}
