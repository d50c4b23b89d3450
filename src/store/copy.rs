//! `rosterd store copy`: moves everything one store holds into another, empty,
//! store: sled → PostgreSQL or the other way (or sled → sled, PostgreSQL →
//! PostgreSQL).
//!
//! The source exports its rows table by table ([`Backend::export_rows`]) on
//! one thread while the target imports them ([`Backend::import_rows`]) on
//! another, through a bounded channel, so a store of any size is never all in
//! memory. Records keep their ids and versions, audit entries their sequence
//! numbers, outbox messages their ids and states, runs their ids; the
//! target's counters continue after the highest copied id and sequence number
//! (and after whatever the source had handed out). The target must be empty;
//! on PostgreSQL the import is one transaction, on sled a copy cut short is
//! cleared or, if the process died, refused at open.
//!
//! Where a store is ([`Endpoint`]): `sled:PATH` (the store directory,
//! `<data_dir>/store`; a data directory holding one is accepted too),
//! `sled:config` (the one under the config's `data_dir`), `postgres:env:NAME`
//! and `postgres:file:PATH` (the URL in an environment variable or a file: a
//! password never goes on the command line), `postgres:config` (the config's
//! `[store]`, with its `url` / `url_file` / `url_env` and pool settings) and
//! `postgres:URL` for a URL without a password. Messages show a URL only
//! redacted.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::backend::{NextIds, StoreRow, Table};
use super::config::{PgSettings, StoreConfig, redact_url};
use super::postgres::PgStore;
use super::{Store, StoreError};

/// Where a store is (see the module doc).
#[derive(Debug, Clone)]
pub enum Endpoint {
    Sled(PathBuf),
    Postgres(PgSettings),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Sled(p) => write!(f, "the sled store at {}", p.display()),
            Endpoint::Postgres(pg) => write!(f, "the PostgreSQL store at {}", pg.redacted_url()),
        }
    }
}

/// What can stop a copy. Nothing is written to the target in any of them
/// (an import that failed was rolled back or cleared).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{0}")]
    Endpoint(String),
    #[error("cannot read {what}: {source}{hint}")]
    Source {
        what: String,
        source: StoreError,
        hint: &'static str,
    },
    #[error("cannot write {what}: {source}; nothing was copied")]
    Target { what: String, source: StoreError },
    #[error(
        "{what} is not empty ({tables}); copy only into a new store: \
         an empty database (or one `rosterd migrate` prepared) or a new directory"
    )]
    NotEmpty { what: String, tables: String },
    #[error("the copy in {what} differs from the source ({diff}): {source_hint}")]
    Differs {
        what: String,
        diff: String,
        source_hint: &'static str,
    },
}

/// What a finished copy moved: rows per table (as the target counts them).
#[derive(Debug, Clone)]
pub struct CopySummary {
    pub tables: Vec<(Table, u64)>,
    /// Where the target's ids and audit sequence numbers continue.
    pub next: NextIds,
}

/// How far a copy is: rows copied so far and rows to copy in all (unique keys
/// and marks travel with their employee and are not counted apart).
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub table: Table,
    pub copied: u64,
    pub total: u64,
}

/// Parses `--from` / `--to` (see the module doc). `env`: the process
/// environment; `config`: the config file's `[store]` and `data_dir`, loaded
/// only when a spec names it.
pub fn parse_endpoint(
    spec: &str,
    env: &[(String, String)],
    config: &dyn Fn() -> Result<(StoreConfig, PathBuf), Box<dyn std::error::Error>>,
) -> Result<Endpoint, CopyError> {
    let bad = |m: String| CopyError::Endpoint(m);
    let config = || config().map_err(|e| bad(format!("invalid config: {e}")));
    let (kind, rest) = spec.split_once(':').ok_or_else(|| {
        bad(
            "a store is sled:PATH, sled:config, postgres:env:NAME, postgres:file:PATH, \
             postgres:config or postgres:URL"
                .into(),
        )
    })?;
    match kind {
        "sled" if rest == "config" => {
            let (_, data_dir) = config()?;
            Ok(Endpoint::Sled(data_dir.join("store")))
        }
        "sled" if rest.is_empty() => Err(bad("sled: needs the store's directory".into())),
        "sled" => Ok(Endpoint::Sled(PathBuf::from(rest))),
        "postgres" => {
            let url = if rest == "config" {
                return match config()? {
                    (StoreConfig::Postgres(pg), _) => Ok(Endpoint::Postgres(pg)),
                    (StoreConfig::Sled, _) => Err(bad(
                        "postgres:config: the config's [store] is not backend = \"postgres\""
                            .into(),
                    )),
                };
            } else if let Some(name) = rest.strip_prefix("env:") {
                env.iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.trim().to_string())
                    .ok_or_else(|| bad(format!("postgres:env:{name}: {name} is not set")))?
            } else if let Some(path) = rest.strip_prefix("file:") {
                std::fs::read_to_string(path)
                    .map(|t| t.trim().to_string())
                    .map_err(|e| bad(format!("postgres:file:{path}: cannot read it: {e}")))?
            } else {
                if has_password(rest) {
                    return Err(bad(
                        "postgres:URL with a password: the command line is visible to other \
                         users (ps, shell history); put the URL in a file (postgres:file:PATH) \
                         or a variable (postgres:env:NAME)"
                            .into(),
                    ));
                }
                rest.to_string()
            };
            match url::Url::parse(&url) {
                Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {
                    Ok(Endpoint::Postgres(PgSettings::new(url)))
                }
                // Never echo the URL: it may hold a password.
                _ => Err(bad(format!(
                    "{kind}:{}: not a PostgreSQL URL; use postgres://user@host:port/database",
                    if rest.starts_with("env:") || rest.starts_with("file:") {
                        rest.to_string()
                    } else {
                        redact_url(rest)
                    }
                ))),
            }
        }
        other => Err(bad(format!(
            "`{other}:` is not a store kind; use sled:… or postgres:…"
        ))),
    }
}

fn has_password(url: &str) -> bool {
    match url::Url::parse(url) {
        Ok(u) => {
            u.password().is_some()
                || u.query_pairs()
                    .any(|(k, _)| k.eq_ignore_ascii_case("password"))
        }
        // Unparsable: cannot tell, so treat it as secret.
        Err(_) => true,
    }
}

/// A sled source: the directory holding sled's files (`PATH`, or
/// `PATH/store` for a data directory).
fn sled_source_dir(p: &Path) -> Result<PathBuf, CopyError> {
    let is_store = |d: &Path| d.join("db").is_file() || d.join("conf").is_file();
    if is_store(p) {
        return Ok(p.to_path_buf());
    }
    if is_store(&p.join("store")) {
        return Ok(p.join("store"));
    }
    Err(CopyError::Endpoint(format!(
        "{}: no sled store there (a store directory holds sled's `db` file; \
         it is <data_dir>/store){}",
        p.display(),
        match std::fs::metadata(p) {
            Err(e) => format!(": {e}"),
            Ok(m) if !m.is_dir() => ": not a directory".into(),
            Ok(_) => String::new(),
        }
    )))
}

fn open(e: &Endpoint, dir: &Path) -> Result<Store, StoreError> {
    match e {
        Endpoint::Sled(_) => Store::open(dir),
        Endpoint::Postgres(pg) => Ok(Store::new(PgStore::open(pg)?)),
    }
}

fn listed(counts: &[(Table, u64)]) -> String {
    counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(t, n)| format!("{}: {n}", t.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows that travel on their own (keys and marks go with their employee).
fn counted(t: Table) -> bool {
    !matches!(t, Table::UniqueKeys | Table::Marks)
}

/// Copies `from` into `to` (see the module doc). `is_active` tells from a
/// record's body whether it is active (for a backend that keeps the flag).
pub fn copy(
    from: &Endpoint,
    to: &Endpoint,
    is_active: &(dyn Fn(&[u8]) -> bool + Sync),
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<CopySummary, CopyError> {
    let same = match (from, to) {
        (Endpoint::Sled(a), Endpoint::Sled(b)) => {
            a == b
                || a.canonicalize()
                    .ok()
                    .is_some_and(|a| b.canonicalize().ok() == Some(a))
        }
        (Endpoint::Postgres(a), Endpoint::Postgres(b)) => a.url.expose() == b.url.expose(),
        _ => false,
    };
    if same {
        return Err(CopyError::Endpoint(
            "--from and --to name the same store".into(),
        ));
    }
    let source_dir = match from {
        Endpoint::Sled(p) => sled_source_dir(p)?,
        Endpoint::Postgres(_) => PathBuf::new(),
    };
    let source = open(from, &source_dir).map_err(|e| CopyError::Source {
        what: from.to_string(),
        hint: if e.to_string().contains("lock") {
            "; a rosterd daemon holds this store: stop it (systemctl stop rosterd) and copy again"
        } else {
            ""
        },
        source: e,
    })?;
    let source_err = |e: StoreError| CopyError::Source {
        what: from.to_string(),
        source: e,
        hint: "",
    };
    let planned = source.table_counts().map_err(source_err)?;
    // A sled target: a new directory (removed again if the copy fails) or
    // an empty store.
    let (target_dir, created) = match to {
        Endpoint::Sled(p) => {
            let created = !p.exists();
            if !created && !p.is_dir() {
                return Err(CopyError::Endpoint(format!(
                    "{}: exists and is not a directory",
                    p.display()
                )));
            }
            (p.clone(), created)
        }
        Endpoint::Postgres(_) => (PathBuf::new(), false),
    };
    let result = copy_into(
        &source,
        to,
        &target_dir,
        &planned,
        is_active,
        progress,
        &source_err,
    );
    if result.is_err() && created {
        let _ = std::fs::remove_dir_all(&target_dir);
    }
    result
}

// Long on purpose: the refusal of a non-empty target, then the exporter and
// importer threads sharing one channel and the ids they both track; split, the
// scope and its borrowed state would have to be passed between functions.
fn copy_into(
    source: &Store,
    to: &Endpoint,
    target_dir: &Path,
    planned: &[(Table, u64)],
    is_active: &(dyn Fn(&[u8]) -> bool + Sync),
    progress: &(dyn Fn(Progress) + Sync),
    source_err: &dyn Fn(StoreError) -> CopyError,
) -> Result<CopySummary, CopyError> {
    let target_err = |e: StoreError| CopyError::Target {
        what: to.to_string(),
        source: e,
    };
    let target = open(to, target_dir).map_err(target_err)?;
    let held = target.table_counts().map_err(target_err)?;
    if held.iter().any(|(_, n)| *n > 0) {
        return Err(CopyError::NotEmpty {
            what: to.to_string(),
            tables: listed(&held),
        });
    }
    let total: u64 = planned
        .iter()
        .filter(|(t, _)| counted(*t))
        .map(|(_, n)| n)
        .sum();
    // The highest ids and sequence numbers seen, and what the source says
    // it handed out (known once its export ends).
    let seen = Mutex::new(NextIds::default());
    let source_next: Mutex<Option<NextIds>> = Mutex::new(None);
    let (row_tx, row_rx) = std::sync::mpsc::sync_channel::<Result<StoreRow, StoreError>>(4096);
    let imported = std::thread::scope(|scope| {
        let source_next = &source_next;
        // The sender moves into the exporter: the channel ends with it.
        let exporter = scope.spawn(move || {
            let mut sink = |row: StoreRow| {
                row_tx
                    .send(Ok(row))
                    .map_err(|_| StoreError::Io("the import stopped".into()))
            };
            match source.export_rows(is_active, &mut sink) {
                Ok(next) => {
                    *source_next.lock().unwrap_or_else(|p| p.into_inner()) = Some(next);
                    Ok(())
                }
                Err(e) => {
                    // The import sees it and rolls back.
                    let _ = row_tx.send(Err(e.clone()));
                    Err(e)
                }
            }
        });
        let mut copied = 0u64;
        let mut rows = row_rx.into_iter().inspect(|r| {
            if let Ok(row) = r {
                copied += 1;
                let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
                match row {
                    StoreRow::Audit { seq, .. } => s.audit_seq = s.audit_seq.max(seq + 1),
                    StoreRow::Outbox { id, .. }
                    | StoreRow::Run { id, .. }
                    | StoreRow::PlanPage { run: id, .. }
                    | StoreRow::Held { run: id, .. } => s.id = s.id.max(id + 1),
                    _ => {}
                }
                progress(Progress {
                    table: row.table(),
                    copied,
                    total,
                });
            }
        });
        let next = || {
            let s = *seen.lock().unwrap_or_else(|p| p.into_inner());
            let n = source_next
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or_default();
            NextIds {
                id: s.id.max(n.id).max(1),
                audit_seq: s.audit_seq.max(n.audit_seq).max(1),
            }
        };
        let imported = target.import_rows(&mut rows, &next);
        drop(rows);
        // An export error is the cause of the import's.
        let exported = exporter
            .join()
            .unwrap_or_else(|_| Err(StoreError::Io("the export thread panicked".into())));
        match (exported, imported) {
            (Err(e), _) => Err(source_err(e)),
            (Ok(()), Err(e)) => Err(target_err(e)),
            (Ok(()), Ok(())) => Ok(next()),
        }
    })?;
    target.flush_blocking().map_err(target_err)?;
    let copied = target.table_counts().map_err(target_err)?;
    if copied != planned {
        let diff = planned
            .iter()
            .zip(&copied)
            .filter(|(a, b)| a.1 != b.1)
            .map(|((t, a), (_, b))| format!("{}: {a} in the source, {b} copied", t.name()))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(CopyError::Differs {
            what: to.to_string(),
            diff,
            source_hint: "was a daemon writing to the source? stop it, empty the target and copy again",
        });
    }
    Ok(CopySummary {
        tables: copied,
        next: imported,
    })
}
