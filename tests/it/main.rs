//! Integration tests: one binary (compile time), modules by area. Every test talks
//! to a real rosterd over HTTP on 127.0.0.1.

// Test code: a failed unwrap is a failed test. Spawned processes are reaped by
// their owners' Drop (rosterd) or killed at exit (the shared slapd).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]

mod admin_api;
mod common;
mod durability;
mod failover;
mod hardening;
mod hr_sources;
mod interrupted;
mod ldap_sync;
mod mail;
mod metrics;
mod multi_source;
mod nodes;
mod plan_reads;
mod postgres;
mod postgres_batches;
mod real_world;
mod reload;
mod rosterctl;
mod run_summary;
mod secrets;
mod slapd;
mod store_copy;
mod store_load;
#[path = "../support/mod.rs"]
mod support;
// The SMTP server, shared with the outbox benchmark.
use support::smtp;
mod systemd;
mod web_ui;
