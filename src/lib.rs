//! rosterd: a directory sync daemon that keeps a fleet company's roster of employee
//! profiles in an embedded sled store.
//!
//! # Layout
//!
//! One crate, in layers; a module calls into its own layer and the ones below,
//! never up. `src/layers.rs` (a test) holds the same table and fails, naming
//! the file and the import, on an upward import or an import cycle through
//! `employee`.
//!
//! **Support** (import nothing of the crate but each other):
//! - [`secret`]: secrets held so that `Debug` prints `***`, random tokens and
//!   their digests, private file modes for the data directory.
//! - [`blocking`]: runs blocking work (planning, scans, write batches) off the
//!   runtime's request workers, at a lower priority.
//! - [`config_helpers`]: what every config section's parser shares:
//!   [`config_helpers::ConfigError`] (file, key, what to do), secrets read from
//!   `*_file` / `*_env` keys, named tokens.
//! - [`ratelimit`]: the in-memory sign-in limiter (per account, per client
//!   address), built from plain values.
//!
//! **Below the domain:**
//! - [`store`]: the store's interface ([`store::Backend`], no sled type in it)
//!   and its sled backend: records with their unique keys and versions, the
//!   unique indexes, counts and id-order positions kept in memory, the
//!   append-only audit log ([`store::AuditAction`]), outbox, positions, run
//!   history rows, sessions, the schema version, and group commit (one
//!   flusher thread; `store/durable.rs` says why). Nothing outside `store`
//!   sees sled (`clippy.toml` and a test keep it so).
//! - [`auth`]: bearer tokens, hashed and compared in constant time.
//!
//! **The domain:**
//! - [`employee`]: the employee profile, the catalogs (positions, roles,
//!   business units, permissions), validation (one phone parser for every
//!   surface, the name rule), the plain values it takes (password policy, link
//!   lifetimes: `employee/policy.rs`), and the operations, one per file
//!   (`create`, `update`, `activate`, `delete`, `modify` (the read-modify-write
//!   under them all), `photo`, `account`, `positions`, `synced` (what only the
//!   sync calls), `diff` (the audit diff)), and the reads every surface uses
//!   (`read`, `list`). It keeps the in-memory projection of every profile's
//!   filterable and sortable fields (`employee/projection.rs`) that lists and
//!   SCIM filters run on, exact after every commit. Every rule of the roster
//!   lives here.
//!
//! **Clients of the domain** (not HTTP):
//! - [`sync`]: the sync engine: sources (LDAP, HR APIs, CSV), pure mapping,
//!   vetting (an unusable optional value is left out with a warning) and
//!   planning, apply through `employee`, run history, cron schedules in each
//!   source's time zone, its own metric handles (`sync::metrics`).
//! - [`mail`]: the outbox worker (delivers the messages `employee` writes to the
//!   store's outbox in the same transaction as their change, minting each link
//!   as it sends), SMTP sessions over lettre, templates, and `[mail]` /
//!   `[accounts]` config.
//!
//! **Surfaces** (HTTP, and the config that parses into their settings):
//! - [`admin`]: the admin HTTP API under `/api/v1` (used by `rosterctl`), plus
//!   `/healthz` and `/readyz`.
//! - [`scim`]: the SCIM 2.0 endpoint under `/scim/v2` for identity providers
//!   (Users = profiles, Groups = positions), on when `[[scim.clients]]` exist.
//! - [`web`]: the web console at `/` (Employees screen, Add / Edit with the
//!   field owners and the history, the Sync page with the held-plan banner,
//!   sign-in and sessions) and the employee pages the mails link to
//!   (`/accept-invite`, `/reset-password`): server-rendered templates over
//!   `employee` and the sync engine, like `admin`.
//! - [`serve`]: the HTTP/1.1 server loop: header-read and idle timeouts, the
//!   connection cap, the early 413 (a SCIM error body under `/scim/v2`), and
//!   the client's address (trusted proxies).
//! - [`config`]: the typed configuration (TOML file, then `ROSTERD_…`
//!   environment overrides), validated once at start into [`config::Config`]:
//!   the plain values the domain, the sources, mail and the surfaces take.
//!
//! **Collectors** (read the domain and the engine for the operator):
//! - [`metrics`]: Prometheus metrics at `/metrics` (registering the sync
//!   engine's handles) and the request-tracking layer.
//! - [`notify`]: systemd readiness, status and watchdog notifications.
//!
//! **Wiring:**
//! - [`daemon`]: opens the store, builds the router, binds the listeners,
//!   starts the schedules and the mail worker, serves until shutdown, flushes
//!   the store; reloads the config on SIGHUP.
//!
//! So `admin`, `web`, `scim` and `sync` call `employee`, which calls `store`;
//! no HTTP layer reads or decodes records itself, so every client of the
//! roster (admin API, SCIM, sync, the console) goes through the same domain
//! operations and reads.

/// The process's allocator. rosterd's hot paths (LDAP decoding, sled's node
/// copies, JSON) allocate many small, short-lived buffers, where mimalloc is much
/// faster than the system allocator. Set here so that the daemon, `rosterctl`,
/// the tests and the benchmarks all run with it. Built without transparent huge
/// pages (the crate's `no_thp`): with them, every fresh 2 MiB of heap is zeroed
/// at its first touch and memory mimalloc hands back is faulted in again whole,
/// which made large syncs much slower (the figure is in README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod admin;
pub mod auth;
pub mod blocking;
pub mod config;
pub mod config_helpers;
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
mod layers;
