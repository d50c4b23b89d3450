//! A batch of writes (`Backend::commit_many`, what a sync's apply hands the
//! store) on PostgreSQL, which writes it in a few statements: the outcome of
//! each scenario is asserted on both backends, and the two transcripts are
//! equal (sled checks a batch write by write, the reference semantics). The
//! tests choose their backends themselves: they run on the sled pass only
//! (the PostgreSQL pass would repeat them).

use uuid::Uuid;

use rosterd::store::postgres::PgStore;
use rosterd::store::{IndexKind, PhotoChange, Store, StoreError, Write};

use crate::postgres::{fresh_pg, message, write};
use crate::support::pg::test_store_is_postgres;

/// Runs `scenario` on a fresh sled store and on a fresh PostgreSQL database
/// (with a second handle on it, as another node); the transcripts must match.
fn on_both(scenario: fn(&Store, Option<&Store>) -> Vec<String>) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let on_sled = scenario(&Store::open(dir.path()).unwrap(), None);
    let (_, settings) = fresh_pg();
    let pg = Store::new(PgStore::open(&settings).unwrap());
    let other = Store::new(PgStore::open(&settings).unwrap());
    let on_pg = scenario(&pg, Some(&other));
    assert_eq!(on_sled, on_pg);
    on_pg
}

/// An error as the transcript shows it.
fn outcome(r: Result<Vec<u64>, StoreError>) -> String {
    match r {
        Ok(seqs) => format!("ok {}", seqs.len()),
        Err(StoreError::Unique { index, key }) => format!("unique {index} {key}"),
        Err(StoreError::VersionConflict { expected, found }) => {
            format!("version expected {expected:?} found {found:?}")
        }
        Err(other) => format!("other: {other}"),
    }
}

/// What a reader sees of the store: counts, every email and source key with
/// its holder's position in `ids`, versions, the audit log's length, the
/// outbox's ids.
fn state(s: &Store, ids: &[Uuid]) -> Vec<String> {
    let name = |id: Uuid| ids.iter().position(|x| *x == id).unwrap_or(99);
    let c = s.counts();
    let mut out = vec![format!("counts {} {}", c.total, c.active)];
    for kind in [IndexKind::Email, IndexKind::Source("ldap".into())] {
        let keys: Vec<String> = s
            .index_entries(&kind)
            .unwrap()
            .into_iter()
            .map(|(k, id)| format!("{k}={}", name(id)))
            .collect();
        out.push(format!("{kind} {keys:?}"));
    }
    let versions: Vec<String> = ids
        .iter()
        .map(|id| format!("{:?}", s.version(*id).unwrap()))
        .collect();
    out.push(format!("versions {versions:?}"));
    out.push(format!(
        "audit {}",
        s.audit_entries(None, None, 1000).unwrap().len()
    ));
    let outbox: Vec<u64> = s.outbox_all().unwrap().iter().map(|m| m.id).collect();
    out.push(format!("outbox {outbox:?}"));
    out
}

fn ids(n: usize) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    ids.sort();
    ids
}

fn remove(id: Uuid, expected: u64) -> Write {
    let mut w = write(id, Some(expected), 0, "");
    w.record = None;
    w
}

/// A batch of creates with an update at a stale version in the middle, a
/// create of an id that exists after it and a held email after that: the
/// error is the first of them in the batch's order (the stale update), and
/// nothing of the batch is in the store, its outbox message included.
#[test]
fn a_version_conflict_in_a_batch_names_that_write_and_writes_nothing() {
    if test_store_is_postgres() {
        return;
    }
    let t = on_both(|s, pg| {
        let ids = ids(8);
        let (held, stale) = (ids[6], ids[7]);
        s.commit(&write(held, None, 1, "held@x")).unwrap();
        s.commit(&write(stale, None, 1, "stale@x")).unwrap();
        s.commit(&write(stale, Some(1), 2, "stale2@x")).unwrap();
        let before = state(s, &ids);
        let mut first = write(ids[0], None, 1, "p0@x");
        first.outbox.push(message(1, ids[0]));
        let batch = vec![
            first,
            write(ids[1], None, 1, "p1@x"),
            write(stale, Some(7), 8, "stale8@x"),
            write(ids[3], None, 1, "p3@x"),
            write(held, None, 1, "again@x"),
            write(ids[5], None, 1, "held@x"),
        ];
        let r = outcome(s.commit_many(&batch));
        assert_eq!(r, "version expected Some(7) found Some(2)");
        assert_eq!(state(s, &ids), before, "nothing of the batch is written");
        assert!(s.get(ids[0]).unwrap().is_none());
        assert_eq!(
            &*s.get(stale).unwrap().unwrap(),
            b"{\"email\":\"stale2@x\"}"
        );
        // A create of an existing id first: that conflict is the error.
        let r2 = outcome(s.commit_many(&batch[3..5]));
        assert_eq!(r2, "version expected None found Some(1)");
        assert_eq!(state(s, &ids), before);
        if pg.is_some() {
            // With a held email after it, too, on PostgreSQL, which takes the
            // batch write by write. (sled checks that a created id is new
            // only after the batch's keys, so it names the email.)
            let r3 = outcome(s.commit_many(&batch[3..]));
            assert_eq!(r3, "version expected None found Some(1)");
            assert_eq!(state(s, &ids), before);
        }
        let mut t = before;
        t.extend([r, r2]);
        t
    });
    assert!(t.iter().any(|l| l == "outbox []"), "{t:?}");
}

/// The 3rd write's email is held by a record outside the batch: `Unique` for
/// that key (not for the version conflict after it), nothing written, the
/// update before it included.
#[test]
fn a_batch_whose_third_write_takes_a_held_email_is_refused_whole() {
    if test_store_is_postgres() {
        return;
    }
    on_both(|s, _| {
        let ids = ids(6);
        let (holder, updated) = (ids[4], ids[5]);
        s.commit(&write(holder, None, 1, "taken@x")).unwrap();
        s.commit(&write(updated, None, 1, "u@x")).unwrap();
        let before = state(s, &ids);
        let batch = vec![
            write(ids[0], None, 1, "p0@x"),
            write(updated, Some(1), 2, "u2@x"),
            write(ids[2], None, 1, "taken@x"),
            write(ids[3], None, 1, "p3@x"),
            write(holder, None, 1, "p4@x"),
        ];
        let r = outcome(s.commit_many(&batch));
        assert_eq!(r, "unique email taken@x");
        assert_eq!(state(s, &ids), before, "nothing of the batch is written");
        assert_eq!(s.lookup(&IndexKind::Email, "u@x").unwrap(), Some(updated));
        assert_eq!(s.version(updated).unwrap(), Some(1));
        let mut t = before;
        t.push(r);
        t
    });
}

/// Two writes of one batch claiming one key: the second is refused, nothing
/// is written. A key that a LATER write of the batch frees is still held when
/// an earlier write claims it (the batch is taken write by write); one that
/// an earlier write freed can be taken.
#[test]
fn two_writes_of_one_batch_claiming_one_key_are_refused() {
    if test_store_is_postgres() {
        return;
    }
    on_both(|s, _| {
        let ids = ids(5);
        s.commit(&write(ids[4], None, 1, "old@x")).unwrap();
        let before = state(s, &ids);
        let mut t = before.clone();
        let r = outcome(s.commit_many(&[
            write(ids[0], None, 1, "same@x"),
            write(ids[1], None, 1, "other@x"),
            write(ids[2], None, 1, "same@x"),
        ]));
        assert_eq!(r, "unique email same@x");
        assert_eq!(state(s, &ids), before);
        t.push(r);
        // `old@x` is freed by the update AFTER the create that claims it.
        let r = outcome(s.commit_many(&[
            write(ids[0], None, 1, "p0@x"),
            write(ids[1], None, 1, "old@x"),
            write(ids[4], Some(1), 2, "new@x"),
        ]));
        assert_eq!(r, "unique email old@x");
        assert_eq!(state(s, &ids), before);
        t.push(r);
        // Freed before: taken.
        let r = outcome(s.commit_many(&[
            write(ids[0], None, 1, "p0@x"),
            write(ids[4], Some(1), 2, "new@x"),
            write(ids[1], None, 1, "old@x"),
        ]));
        assert_eq!(r, "ok 3");
        assert_eq!(s.lookup(&IndexKind::Email, "old@x").unwrap(), Some(ids[1]));
        t.push(r);
        t.extend(state(s, &ids));
        t
    });
}

/// A batch of creates, updates and a removal, with marks, a photo and an
/// outbox message: every write is there with its keys, mark and audit entry,
/// the removed record's keys are free, and another node sees all of it.
#[test]
fn a_mixed_batch_of_creates_and_updates_is_all_there() {
    if test_store_is_postgres() {
        return;
    }
    let t = on_both(|s, other| {
        let ids = ids(6);
        let (u1, u2, gone) = (ids[3], ids[4], ids[5]);
        for (id, email) in [(u1, "u1@x"), (u2, "u2@x"), (gone, "gone@x")] {
            let mut w = write(id, None, 1, email);
            w.record.as_mut().unwrap().mark = Some(("ldap".into(), vec![1]));
            w.photo = PhotoChange::Set(b"JPEG".to_vec());
            s.commit(&w).unwrap();
        }
        if let Some(o) = other {
            o.catch_up().unwrap();
        }
        let audit = s.audit_entries(None, None, 1000).unwrap().len();
        let g = s.generation().unwrap();
        let marked = |mut w: Write, m: u8| {
            w.record.as_mut().unwrap().mark = Some(("ldap".into(), vec![m]));
            w
        };
        let mut c0 = marked(write(ids[0], None, 1, "c0@x"), 10);
        c0.outbox.push(message(1, ids[0]));
        c0.photo = PhotoChange::Set(b"PNG".to_vec());
        let batch = vec![
            c0,
            // u1 frees u1@x, which c1 takes after it; u2 keeps its email.
            write(u1, Some(1), 2, "u1b@x"),
            marked(write(ids[1], None, 1, "u1@x"), 11),
            remove(gone, 1),
            marked(write(u2, Some(1), 2, "u2@x"), 12),
            write(ids[2], None, 1, "off@x"),
        ];
        let seqs = s.commit_many(&batch).unwrap();
        assert_eq!(seqs.len(), batch.len());
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        assert!(s.generation().unwrap() > g);
        for (w, seq) in batch.iter().zip(&seqs) {
            let h = s.audit_entries(Some(w.id), None, 10).unwrap();
            assert_eq!(h[0].seq, *seq, "each write's audit entry is its own");
        }
        assert_eq!(
            s.audit_entries(None, None, 1000).unwrap().len(),
            audit + batch.len()
        );
        assert_eq!(s.lookup(&IndexKind::Email, "u1@x").unwrap(), Some(ids[1]));
        assert_eq!(s.lookup(&IndexKind::Email, "u1b@x").unwrap(), Some(u1));
        assert_eq!(s.lookup(&IndexKind::Email, "gone@x").unwrap(), None);
        assert!(s.get(gone).unwrap().is_none());
        assert_eq!(&*s.get(u1).unwrap().unwrap(), b"{\"email\":\"u1b@x\"}");
        assert_eq!(&*s.photo(ids[0]).unwrap().unwrap(), b"PNG");
        let marks: Vec<Option<Vec<u8>>> =
            ids.iter().map(|id| s.mark(*id, "ldap").unwrap()).collect();
        assert_eq!(
            marks,
            vec![
                Some(vec![10]),
                Some(vec![11]),
                None,
                None,
                Some(vec![12]),
                None
            ]
        );
        // A removal takes its photo too (in a batch, and alone), and frees
        // its email for another record.
        assert!(s.photo(gone).unwrap().is_none());
        s.commit(&remove(u2, 2)).unwrap();
        assert!(s.photo(u2).unwrap().is_none());
        assert_eq!(s.mark(u2, "ldap").unwrap(), None);
        let again = Uuid::now_v7();
        s.commit(&write(again, None, 1, "u2@x")).unwrap();
        assert_eq!(s.lookup(&IndexKind::Email, "u2@x").unwrap(), Some(again));
        s.commit(&remove(again, 1)).unwrap();
        let marks: Vec<Option<Vec<u8>>> =
            ids.iter().map(|id| s.mark(*id, "ldap").unwrap()).collect();
        let mut t = state(s, &ids);
        t.push(format!("marks {marks:?}"));
        // Another node on the database catches up with the whole batch.
        if let Some(o) = other {
            let caught = o.catch_up().unwrap();
            let mut seen: Vec<(usize, bool)> = caught
                .records
                .iter()
                .map(|(id, r)| (ids.iter().position(|x| x == id).unwrap_or(99), r.is_some()))
                .collect();
            seen.sort();
            seen.dedup();
            assert_eq!(
                seen,
                vec![
                    (0, true),
                    (1, true),
                    (2, true),
                    (3, true),
                    (4, false),
                    (5, false),
                    (99, false)
                ]
            );
            assert_eq!(state(o, &ids), state(s, &ids));
        }
        t
    });
    assert!(t.iter().any(|l| l == "counts 4 3"), "{t:?}");
}

/// One id twice in a batch (created, then updated): the outcome of taking the
/// batch write by write, on success and on a conflict.
#[test]
fn a_batch_with_one_id_twice_is_taken_write_by_write() {
    if test_store_is_postgres() {
        return;
    }
    on_both(|s, _| {
        let ids = ids(3);
        let mut t = Vec::new();
        let r = outcome(s.commit_many(&[
            write(ids[0], None, 1, "a@x"),
            write(ids[1], None, 1, "b@x"),
            write(ids[0], Some(1), 2, "a2@x"),
        ]));
        assert_eq!(r, "ok 3");
        assert_eq!(s.version(ids[0]).unwrap(), Some(2));
        assert_eq!(s.lookup(&IndexKind::Email, "a@x").unwrap(), None);
        assert_eq!(s.audit_entries(Some(ids[0]), None, 10).unwrap().len(), 2);
        t.push(r);
        t.extend(state(s, &ids));
        let before = state(s, &ids);
        let r = outcome(s.commit_many(&[
            write(ids[2], None, 1, "c@x"),
            write(ids[2], None, 1, "c2@x"),
        ]));
        assert_eq!(r, "version expected None found Some(1)");
        assert_eq!(state(s, &ids), before);
        t.push(r);
        t
    });
}

/// Batches on two nodes at once whose emails overlap: each batch commits
/// whole or is refused with `Unique` (never a deadlock or another error),
/// every email ends up held once, and the audit log has one entry per record.
#[test]
fn concurrent_batches_on_two_nodes_claim_each_key_once() {
    if test_store_is_postgres() {
        return;
    }
    let (_, settings) = fresh_pg();
    let nodes = [
        Store::new(PgStore::open(&settings).unwrap()),
        Store::new(PgStore::open(&settings).unwrap()),
    ];
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let s = nodes[t % 2].clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                for round in 0..10 {
                    // Threads share round r's emails: one batch of them wins.
                    let batch: Vec<Write> = (0..40)
                        .map(|i| write(Uuid::now_v7(), None, 1, &format!("r{round}-{i}@x")))
                        .collect();
                    out.push(outcome(s.commit_many(&batch)));
                }
                out
            })
        })
        .collect();
    let outcomes: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(
        outcomes
            .iter()
            .all(|o| o == "ok 40" || o.starts_with("unique email r")),
        "{outcomes:?}"
    );
    let won = outcomes.iter().filter(|o| *o == "ok 40").count();
    assert_eq!(won, 10, "one batch per round: {outcomes:?}");
    let s = &nodes[0];
    s.catch_up().unwrap();
    assert_eq!(s.counts().total, 400);
    assert_eq!(s.index_entries(&IndexKind::Email).unwrap().len(), 400);
    assert_eq!(s.audit_entries(None, None, 1000).unwrap().len(), 400);
}
