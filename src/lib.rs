//! rosterd: a directory sync daemon that keeps a fleet company's roster of employee
//! profiles in an embedded sled store.
//!
//! # Layout
//!
//! - [`config`]: the typed configuration (TOML file, then `ROSTERD_…` environment
//!   overrides), validated once at start into [`config::Config`].
//! - [`employee`]: the domain. The employee profile, the catalogs (positions, roles,
//!   business units, permissions), validation (one phone parser for every
//!   surface, the name rule), the operations (create, update, activate,
//!   deactivate, list, bulk) and the reads every surface uses (`employee/read.rs`).
//!   Every rule of the roster lives here. It keeps the in-memory projection of
//!   every profile's filterable and sortable fields (`employee/projection.rs`)
//!   that lists and SCIM filters run on, exact after every commit.
//! - [`store`]: the store's interface ([`store::Backend`], no sled type in it) and
//!   its sled backend: records with their unique keys and versions, the unique
//!   indexes, counts and id-order positions kept in memory, the append-only audit
//!   log, outbox, positions, run history rows, the schema version, and group
//!   commit (one flusher thread; `store/durable.rs` says why). Nothing outside
//!   `store` sees sled (`clippy.toml` and a test keep it so).
//! - [`admin`]: the admin HTTP API under `/api/v1` (used by `rosterctl`), plus
//!   `/healthz` and `/readyz`.
//! - [`sync`]: the sync engine: sources (LDAP, HR APIs, CSV), pure mapping,
//!   vetting (an unusable optional value is left out with a warning) and
//!   planning, apply through `employee`, run history, cron schedules in each
//!   source's time zone.
//! - [`mail`]: the outbox worker (delivers the messages `employee` writes to the
//!   store's outbox in the same transaction as their change, minting each link as
//!   it sends), SMTP sessions over lettre, templates, and `[mail]`/`[accounts]`
//!   config.
//! - [`ratelimit`]: the in-memory sign-in limiter (per account, per client address).
//! - [`blocking`]: runs blocking work (planning, scans, write batches) off the
//!   runtime's request workers.
//! - [`auth`]: bearer tokens, hashed and compared in constant time.
//! - [`metrics`]: Prometheus metrics at `/metrics` and the request-tracking layer.
//! - [`notify`]: systemd readiness, status and watchdog notifications.
//! - [`scim`]: the SCIM 2.0 endpoint under `/scim/v2` for identity providers
//!   (Users = profiles, Groups = positions), on when `[[scim.clients]]` exist.
//!   Like `admin`, it calls `employee` only.
//! - [`serve`]: the HTTP/1.1 server loop: header-read and idle timeouts, the
//!   connection cap, the early 413, and the client's address (trusted proxies).
//! - [`web`]: the web console at `/` (Employees screen, Add / Edit with the
//!   field owners and the history, the Sync page with the held-plan banner,
//!   sign-in and sessions) and the employee pages the mails link to
//!   (`/accept-invite`, `/reset-password`): server-rendered templates over
//!   `employee` and the sync engine, like `admin`.
//! - [`daemon`]: wiring. Opens the store, builds the router, binds the listener,
//!   serves until shutdown, flushes the store; reloads the config on SIGHUP.
//!
//! Calls point one way: `admin`, `web`, `scim`, `metrics` and `sync` → `employee` →
//! `store`; `mail`, the sync run history (`sync::runs`) and the console's
//! sessions (`web::session`) → `store`'s typed interface. Nothing calls upward; no HTTP layer reads or decodes records
//! itself, so every client of the roster (admin API, SCIM, sync) goes through
//! the same domain operations and reads.

/// The process's allocator. rosterd's hot paths (LDAP decoding, sled's node
/// copies, JSON) allocate many small, short-lived buffers, where mimalloc is much
/// faster than the system allocator. Set here so that the daemon, `rosterctl`,
/// the tests and the benchmarks all run with it. Built without transparent huge
/// pages (the crate's `no_thp`): with them, every fresh 2 MiB of heap is zeroed
/// at its first touch and memory mimalloc hands back is faulted in again whole,
/// which cost a 100,000-entry LDAP sync about a third of its time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod admin;
pub mod auth;
pub mod blocking;
pub mod config;
pub mod daemon;
pub mod employee;
pub mod mail;
pub mod metrics;
pub mod notify;
pub mod ratelimit;
pub mod scim;
pub mod secret;
pub mod serve;
pub mod store;
pub mod sync;
pub mod web;

pub use daemon::{Daemon, run};

#[cfg(test)]
mod layers {
    /// Only `store` sees sled (clippy's `disallowed-types` in `clippy.toml`
    /// says the same for the types; this catches any other path).
    #[test]
    fn only_the_store_names_sled() {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for d in ["src", "tests", "benches"] {
            walk(&root.join(d), &mut files);
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
}
