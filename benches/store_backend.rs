//! The store's basic operations on each backend, side by side: sled in a temp
//! dir and PostgreSQL started by the test harness (one local server, its
//! default durability but fsync off, as in the tests). Prints figures; asserts
//! nothing about time.
//!
//! `cargo bench --bench store_backend` (`-- --quick` for fewer operations).
//!
//! Target (issue 21): SCIM indexed reads on PostgreSQL at least half of what
//! the sled backend does. A SCIM indexed read is one `lookup` plus one `get`
//! under the daemon's in-memory projection, so the figure to watch here is the
//! lookup + get pair.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/pg.rs"]
mod pg_harness;
#[path = "../tests/support/writes.rs"]
mod writes;

use std::time::Instant;

use rosterd::store::postgres::PgStore;
use rosterd::store::{IndexKind, Store, Write};
use uuid::Uuid;

fn write(id: Uuid, expected: Option<u64>, version: u64, email: &str) -> Write {
    let body = format!(
        "{{\"email\":\"{email}\",\"given_name\":\"Given\",\"family_name\":\"Family\",\"role\":\"Technician\",\"positions\":[\"Field Technician\"],\"active\":true,\"padding\":\"{}\"}}",
        "x".repeat(600)
    );
    writes::write(
        id,
        expected,
        version,
        body,
        vec![
            (IndexKind::Email, email.into()),
            (IndexKind::Source("ldap".into()), format!("uid={email}")),
        ],
        true,
    )
}

fn per_op(label: &str, n: usize, t: Instant) {
    let s = t.elapsed().as_secs_f64();
    println!(
        "  {label:<34} {:>9.1} µs/op  {:>9.0} op/s",
        s * 1e6 / n as f64,
        n as f64 / s
    );
}

fn run(name: &str, store: &Store, n: usize) -> f64 {
    println!("{name}:");
    // Bulk: batches of 500 creates, as a first import writes.
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let t = Instant::now();
    for (c, chunk) in ids.chunks(500).enumerate() {
        let batch: Vec<Write> = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| write(*id, None, 1, &format!("p{c}-{i}@x")))
            .collect();
        store.commit_many(&batch).unwrap();
    }
    store.flush_blocking().unwrap();
    per_op("create in batches of 500", n, t);
    // Single writes, each made durable (a SCIM PATCH).
    let m = n.min(2000);
    let t = Instant::now();
    for id in &ids[..m] {
        let v = store.version(*id).unwrap().unwrap();
        store
            .commit(&write(*id, Some(v), v + 1, &format!("u-{id}@x")))
            .unwrap();
        store.flush_blocking().unwrap();
    }
    per_op("version + update + flush", m, t);
    let t = Instant::now();
    for id in &ids[..m] {
        store.get(*id).unwrap().unwrap();
    }
    per_op("get", m, t);
    let t = Instant::now();
    for id in &ids[..m] {
        let got = store
            .lookup(&IndexKind::Email, &format!("u-{id}@x"))
            .unwrap()
            .unwrap();
        store.get(got).unwrap().unwrap();
    }
    let pair = t.elapsed().as_secs_f64() / m as f64;
    per_op("lookup + get (indexed read)", m, t);
    let t = Instant::now();
    let scanned = store.scan().count();
    per_op("scan (per record)", scanned, t);
    pair
}

/// What a read that depends on memory pays on PostgreSQL to follow the other
/// nodes (`Backend::catch_up`): when nothing moved, and after one write by
/// another node (`other`, a second handle on the same database).
fn follow(store: &Store, other: &Store, m: usize) {
    println!("following another node (PostgreSQL):");
    store.catch_up().unwrap();
    let t = Instant::now();
    for _ in 0..m {
        assert!(store.catch_up().unwrap().is_empty());
    }
    per_op("catch-up, nothing moved (1 query)", m, t);
    let ids: Vec<Uuid> = (0..m).map(|_| Uuid::now_v7()).collect();
    let mut spent = std::time::Duration::ZERO;
    for (i, id) in ids.iter().enumerate() {
        other
            .commit(&write(*id, None, 1, &format!("other-{i}@x")))
            .unwrap();
        let t = Instant::now();
        let caught = store.catch_up().unwrap();
        spent += t.elapsed();
        assert_eq!(caught.records.len(), 1);
    }
    let s = spent.as_secs_f64();
    println!(
        "  {:<34} {:>9.1} µs/op  {:>9.0} op/s",
        "catch-up after 1 write elsewhere",
        s * 1e6 / m as f64,
        m as f64 / s
    );
    println!(
        "  (target: one query per read when nothing moved; a write elsewhere adds one fetch of what changed)"
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 5_000 } else { 20_000 };
    let dir = tempfile::tempdir().unwrap();
    let sled = Store::open(dir.path()).unwrap();
    let sled_pair = run(&format!("sled ({n} records)"), &sled, n);
    drop(sled);
    let pg = pg_harness::server();
    let settings = rosterd::store::config::PgSettings::new(pg.url(&pg.fresh_database()));
    let store = Store::new(PgStore::open(&settings).unwrap());
    let pg_pair = run(&format!("PostgreSQL 127.0.0.1 ({n} records)"), &store, n);
    follow(
        &store,
        &Store::new(PgStore::open(&settings).unwrap()),
        n.min(2000),
    );
    println!(
        "indexed read (lookup + get) on PostgreSQL: {:.2}x the sled rate (target for SCIM indexed reads: >= 0.5x; \
         the daemon answers most of them from memory above the store, see README)",
        sled_pair / pg_pair
    );
}
