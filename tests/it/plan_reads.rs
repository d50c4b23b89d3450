//! A sync's plan on the daemon's own roster (PostgreSQL with
//! `TEST_STORE=postgres`, else sled): reading the roster in bulk (the
//! source's marks and the email index once each, the profiles to compare a
//! window at a time) makes exactly the plan that one read per entry makes, in
//! a few store calls instead of one or more per entry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::Utc;
use rosterd::employee::{AccountStatus, EmailIndex, Employee, EmployeeId, Error, Roster};
use rosterd::store::Actor;
use rosterd::sync::RunKind;
use rosterd::sync::config::JoinAttribute;
use rosterd::sync::map::{MapError, MappedEntry, SourceFields};
use rosterd::sync::plan::{self, Plan, PlanSource, Reads, RosterView};

use crate::common::TestServer;

/// How many profiles one store query of `get_many` reads on PostgreSQL.
const GET_MANY_CHUNK: usize = 2000;

/// The roster, counting the store calls the planner makes through it: one a
/// read, but for `by_email` (the lookup, and the read of the profile it
/// finds) and `get_many` (one per 2,000 ids, none for none, as PostgreSQL
/// reads them).
struct Counted<'a> {
    roster: &'a Roster,
    calls: AtomicUsize,
    /// Profiles read (by id, by email, in bulk).
    profiles: AtomicUsize,
}

impl Counted<'_> {
    /// The store calls and profile reads so far, from zero again.
    fn take(&self) -> (usize, usize) {
        (
            self.calls.swap(0, Ordering::SeqCst),
            self.profiles.swap(0, Ordering::SeqCst),
        )
    }
    fn add(&self, n: usize) {
        self.calls.fetch_add(n, Ordering::SeqCst);
    }
    fn read(&self, n: usize) {
        self.profiles.fetch_add(n, Ordering::SeqCst);
    }
}

impl RosterView for Counted<'_> {
    fn by_email(&self, email: &str) -> Result<Option<Employee>, Error> {
        let found = RosterView::by_email(self.roster, email)?;
        self.add(1 + usize::from(found.is_some()));
        self.read(usize::from(found.is_some()));
        Ok(found)
    }
    fn linked(&self, source: &str) -> Result<Vec<(String, EmployeeId)>, Error> {
        self.add(1);
        RosterView::linked(self.roster, source)
    }
    fn get(&self, id: EmployeeId) -> Result<Employee, Error> {
        self.add(1);
        self.read(1);
        RosterView::get(self.roster, id)
    }
    fn mark(&self, id: EmployeeId, source: &str) -> Result<Option<Vec<u8>>, Error> {
        self.add(1);
        RosterView::mark(self.roster, id, source)
    }
    fn by_employee_number(&self) -> Result<HashMap<String, Employee>, Error> {
        self.add(1);
        RosterView::by_employee_number(self.roster)
    }
    fn round_trips(&self) -> bool {
        RosterView::round_trips(self.roster)
    }
    fn marks(&self, source: &str) -> Result<HashMap<EmployeeId, Vec<u8>>, Error> {
        self.add(1);
        RosterView::marks(self.roster, source)
    }
    fn get_many(&self, ids: &[EmployeeId]) -> Result<HashMap<EmployeeId, Employee>, Error> {
        self.add(ids.len().div_ceil(GET_MANY_CHUNK));
        let found = RosterView::get_many(self.roster, ids)?;
        self.read(found.len());
        Ok(found)
    }
    fn email_index(&self) -> Result<EmailIndex, Error> {
        self.add(1);
        RosterView::email_index(self.roster)
    }
}

fn entry(key: &str, email: &str, given: &str, number: Option<&str>) -> MappedEntry {
    MappedEntry {
        key: key.into(),
        dn: format!("uid={key},ou=people"),
        fields: SourceFields {
            email: email.into(),
            given_name: Some(given.into()),
            family_name: Some("Doe".into()),
            mobile_phone: Some(Some("+15550100".into())),
            employee_number: number.map(|n| Some(n.to_string())),
            ..Default::default()
        },
        disabled: None,
        warnings: vec![],
        hire: None,
        termination: None,
        manager: None,
    }
}

/// The entries of an `n`-person source, one in ten of a kind: `i % 10` is
/// 0..=5: linked and marked (5: not marked); 6: an email that another
/// source's profile holds (in upper case for half); 7: an employee number
/// that another source's profile holds; 8: linked, with a new name; 9: new.
fn entries(n: usize) -> Vec<MappedEntry> {
    (0..n)
        .map(|i| {
            let number = format!("N{i}");
            match i % 10 {
                6 if i % 20 == 6 => {
                    entry(&format!("E{i}"), &format!("P{i}@Example.COM"), "P", None)
                }
                7 => entry(
                    &format!("E{i}"),
                    &format!("p{i}@example.com"),
                    "P",
                    Some(&number),
                ),
                8 => entry(
                    &format!("E{i}"),
                    &format!("p{i}@example.com"),
                    "Renamed",
                    None,
                ),
                _ => entry(&format!("E{i}"), &format!("p{i}@example.com"), "P", None),
            }
        })
        .chain([
            // The same key twice, and a disabled newcomer.
            entry("E1", "twice@example.com", "P", None),
            MappedEntry {
                disabled: Some("locked".into()),
                ..entry("X1", "locked@example.com", "P", None)
            },
        ])
        .collect()
}

/// Builds, as applied first imports would leave them, the profiles of
/// `entries` (see [`entries`]) and 100 more linked to `src` that the source no
/// longer has (absentees of a full run). The profiles that `src` joins by
/// email or employee number come from `ldap`, which marked every one: their
/// entries in `ldap` come back.
fn seed(
    roster: &Roster,
    src: &PlanSource<'_>,
    ldap: &PlanSource<'_>,
    entries: &[MappedEntry],
) -> Vec<MappedEntry> {
    let actor = Actor::admin("seed");
    let mut linked: Vec<MappedEntry> = Vec::new();
    let mut other: Vec<MappedEntry> = Vec::new();
    for (i, m) in entries.iter().enumerate().take(entries.len() - 2) {
        let key = format!("u{i}");
        match i % 10 {
            0..=5 => linked.push(m.clone()),
            6 => other.push(entry(&key, &format!("p{i}@example.com"), "P", None)),
            7 => {
                let number = format!("N{i}");
                other.push(entry(
                    &key,
                    &format!("old{i}@example.com"),
                    "P",
                    Some(&number),
                ));
            }
            8 => linked.push(entry(&m.key, &m.fields.email, "P", None)),
            _ => {}
        }
    }
    linked
        .extend((0..100).map(|i| entry(&format!("H{i}"), &format!("h{i}@example.com"), "H", None)));
    // Every profile but those of `i % 10 == 5` carries its source's mark.
    let unmarked = |key: &str| {
        key.strip_prefix('E')
            .and_then(|i| i.parse::<usize>().ok())
            .is_some_and(|i| i % 10 == 5)
    };
    for (src, entries) in [(src, &linked), (ldap, &other)] {
        let made = roster.create_linked_many(
            &actor,
            src.id,
            entries,
            500,
            |m| (plan::new_input(src, m), m.key.clone()),
            |m, e| {
                let hash = plan::entry_hash(src.signature, m);
                (!unmarked(&m.key)).then(|| plan::Fingerprint::of(hash, e, src.now).to_bytes())
            },
        );
        assert!(
            made.iter().all(Result::is_ok),
            "{:?}",
            made.iter().find(|r| r.is_err())
        );
    }
    other
}

/// Plans `entries` (and `errors`) one read per entry, in bulk, and as the
/// daemon plans: returns the plans with the store calls and profile reads
/// each made.
fn three_ways(
    roster: &Roster,
    src: &PlanSource<'_>,
    entries: &[MappedEntry],
    errors: &[MapError],
) -> Vec<(Plan, usize, usize)> {
    let view = Counted {
        roster,
        calls: AtomicUsize::new(0),
        profiles: AtomicUsize::new(0),
    };
    [Reads::PerEntry, Reads::Bulk, Reads::Auto]
        .into_iter()
        .map(|reads| {
            let p = plan::plan_with(src, RunKind::Full, entries, errors, &view, reads).unwrap();
            let (calls, profiles) = view.take();
            (p, calls, profiles)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_read_in_bulk_is_the_plan_read_per_entry_in_a_few_store_calls() {
    let s = TestServer::start().await;
    let roster = s.roster();
    let catalog = roster.catalog();
    let provides = [
        "email",
        "given_name",
        "family_name",
        "mobile_phone",
        "employee_number",
    ];
    let lifecycle = vec!["hr".to_string()];
    let mut src = PlanSource {
        id: "hr",
        account_status: AccountStatus::Later,
        catalog: &catalog,
        lifecycle: true,
        join_attribute: Some(JoinAttribute::EmployeeNumber),
        provides: &provides,
        higher: &[],
        lifecycle_sources: &lifecycle,
        now: Utc::now(),
        signature: 21,
        use_marks: true,
    };
    // A few thousand: more than one window of profiles read ahead (2,000),
    // and more of each kind than a run needs to read in bulk (256).
    let n = 4000;
    let entries = entries(n);
    let errors = vec![
        MapError::new("uid=E3,ou=people", "bad hire date").of(Some("E3".into()), None),
        MapError::new("uid=?,ou=people", "no join key").of(None, Some("P16@example.com".into())),
    ];
    let ldap = PlanSource {
        id: "ldap",
        lifecycle: false,
        join_attribute: None,
        signature: 22,
        ..src
    };
    let shared = roster.reads_are_round_trips();
    tokio::task::block_in_place(|| {
        let ldap_entries = seed(roster, &src, &ldap, &entries);
        let plans = three_ways(roster, &src, &entries, &errors);
        let (per_entry, per_entry_reads) = (&plans[0].0, plans[0].2);
        let c = &per_entry.counts;
        assert_eq!(
            (
                c.unchanged,
                c.updated,
                c.created,
                c.deactivated,
                c.skipped,
                c.errors
            ),
            (n * 6 / 10 - 1, n * 3 / 10, n / 10, 100, 5, 4),
            "{c:?}"
        );
        for (p, _, reads) in &plans[1..] {
            assert!(per_entry.items == p.items, "the same items");
            assert_eq!(per_entry, p, "the same plan, counts and marks to leave");
            // The same profiles, but in bulk the one of the second entry
            // with key E1 (its mark does not hold for that entry) is read
            // ahead, and then not used: a duplicate key is a skip.
            assert!(
                (per_entry_reads..=per_entry_reads + 1).contains(reads),
                "{reads} profiles read, {per_entry_reads} one by one"
            );
        }

        // Without the employee-number join (a pass over every profile), as
        // an LDAP source plans: the store calls.
        src.join_attribute = None;
        let plans = three_ways(roster, &src, &entries, &errors);
        let calls: Vec<usize> = plans.iter().map(|p| p.1).collect();
        eprintln!(
            "store calls of a {n}-entry re-sync plan on {}: {} one read per entry, {} in bulk, {} as the daemon plans",
            if shared { "PostgreSQL" } else { "sled" },
            calls[0],
            calls[1],
            calls[2]
        );
        assert_eq!(plans[0].0, plans[1].0);
        assert_eq!(plans[0].0, plans[2].0);
        assert!(calls[0] > n, "{calls:?}");
        assert!(calls[1] <= 10, "{calls:?}");
        let daemon = if shared { calls[1] } else { calls[0] };
        assert_eq!(calls[2], daemon, "bulk on a shared store only: {calls:?}");

        // A re-sync where nothing changed (the other source, every profile
        // marked): no profile is read; in bulk the linked keys, the marks
        // (and, when forced, the email index no entry needs) are the calls.
        let plans = three_ways(roster, &ldap, &ldap_entries, &[]);
        let calls: Vec<usize> = plans.iter().map(|p| p.1).collect();
        eprintln!(
            "store calls of a {}-entry no-change re-sync plan: {} one read per entry, {} in bulk, {} as the daemon plans",
            ldap_entries.len(),
            calls[0],
            calls[1],
            calls[2]
        );
        assert_eq!(plans[0].0.counts.unchanged, ldap_entries.len());
        assert_eq!(plans[0].0, plans[1].0);
        assert_eq!(plans[0].0, plans[2].0);
        assert!(plans.iter().all(|p| p.2 == 0), "no profile read");
        assert_eq!(calls[..2], [1 + ldap_entries.len(), 3]);
        let daemon = if shared { 2 } else { calls[0] };
        assert_eq!(calls[2], daemon, "{calls:?}");
    });
}
