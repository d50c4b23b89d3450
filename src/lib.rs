//! rosterd: a directory sync daemon that keeps a fleet company's roster of employee
//! profiles in an embedded sled store.
//!
//! # Layout
//!
//! - [`config`]: the typed configuration (TOML file, then `ROSTERD_…` environment
//!   overrides), validated once at start into [`config::Config`].
//! - [`employee`]: the domain. The employee profile, the catalogs (positions, roles,
//!   business units, permissions), validation, and the operations (create, update,
//!   activate, deactivate, list, bulk). Every rule of the roster lives here.
//! - [`store`]: sled. Trees, unique secondary indexes kept in the same transaction
//!   as the profile, the append-only audit log, the schema version.
//! - [`admin`]: the admin HTTP API under `/api/v1` (used by `rosterctl`), plus
//!   `/healthz` and `/readyz`.
//! - [`sync`]: the sync engine: sources (LDAP), pure mapping and planning, apply
//!   through `employee`, run history, cron schedules.
//! - [`mail`]: the outbox worker (delivers the messages `employee` writes to the
//!   store's outbox in the same transaction as their change), the lettre SMTP
//!   transport, templates, and `[mail]`/`[accounts]` config.
//! - [`ratelimit`]: the in-memory sign-in limiter (per account, per client address).
//! - [`auth`]: bearer tokens, hashed and compared in constant time.
//! - [`metrics`]: Prometheus metrics at `/metrics` and the request-tracking layer.
//! - [`notify`]: systemd readiness, status and watchdog notifications.
//! - [`scim`]: the SCIM 2.0 endpoint under `/scim/v2` for identity providers
//!   (Users = profiles, Groups = positions), on when `[[scim.clients]]` exist.
//!   Like `admin`, it calls `employee` only.
//! - [`serve`]: the HTTP/1.1 server loop: header-read and idle timeouts, the
//!   connection cap, the early 413, and the client's address (trusted proxies).
//! - [`daemon`]: wiring. Opens the store, builds the router, binds the listener,
//!   serves until shutdown, flushes the store; reloads the config on SIGHUP.
//!
//! Calls point one way: `admin` and `sync` → `employee` → `store`; `mail` → `employee`/`store`. Nothing calls upward; the
//! HTTP layer never touches sled directly, so every client of the roster (the admin
//! API today, SCIM and sync later) goes through the same domain operations.

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

pub use daemon::{Daemon, run};
