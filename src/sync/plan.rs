//! Planning (pure): mapped entries and the roster's current state give a [`Plan`]:
//! per entry create / update / activate / deactivate / unchanged / held / skip, each
//! with its field-level changes (a create's are worked out when the plan is
//! stored: [`create_changes`]) and its reason. Nothing is written here.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::RunKind;
use super::config::JoinAttribute;
use super::map::{MapError, MappedEntry};
use crate::employee::{
    self, AccountStatus, Catalog, EmailIndex, Employee, EmployeeId, EmployeePatch, Error,
    SourceFacts, SyncChange,
};
use crate::store::{Actor, ActorKind, FieldChange};

/// What the roster looks like to the planner. [`employee::Roster`] implements it;
/// tests use an in-memory roster.
pub trait RosterView {
    fn by_email(&self, email: &str) -> Result<Option<Employee>, Error>;
    /// Every profile linked to the source, as (key, id).
    fn linked(&self, source: &str) -> Result<Vec<(String, EmployeeId)>, Error>;
    fn get(&self, id: EmployeeId) -> Result<Employee, Error>;
    /// The note (a [`Fingerprint`]'s bytes) `source` left on the profile as it
    /// is now, without reading the profile.
    fn mark(&self, id: EmployeeId, source: &str) -> Result<Option<Vec<u8>>, Error>;
    /// Profiles by enterprise employee number (read once per plan, when a source
    /// joins on it).
    fn by_employee_number(&self) -> Result<HashMap<String, Employee>, Error>;

    // The same reads in bulk, for a store where each read is a round trip
    // ([`Reads`]).
    /// Whether each read is a round trip to a shared store (PostgreSQL).
    fn round_trips(&self) -> bool {
        false
    }
    /// [`RosterView::mark`] of every profile `source` left a note on.
    fn marks(&self, source: &str) -> Result<HashMap<EmployeeId, Vec<u8>>, Error>;
    /// [`RosterView::get`] of each of `ids` that exists.
    fn get_many(&self, ids: &[EmployeeId]) -> Result<HashMap<EmployeeId, Employee>, Error>;
    /// Every email and its profile ([`RosterView::by_email`] without a read each).
    fn email_index(&self) -> Result<EmailIndex, Error>;
}

impl RosterView for employee::Roster {
    fn by_email(&self, email: &str) -> Result<Option<Employee>, Error> {
        employee::Roster::by_email(self, email)
    }
    fn by_employee_number(&self) -> Result<HashMap<String, Employee>, Error> {
        employee::Roster::by_employee_number(self)
    }
    fn linked(&self, source: &str) -> Result<Vec<(String, EmployeeId)>, Error> {
        employee::Roster::linked(self, source)
    }
    fn get(&self, id: EmployeeId) -> Result<Employee, Error> {
        employee::Roster::get(self, id)
    }
    fn mark(&self, id: EmployeeId, source: &str) -> Result<Option<Vec<u8>>, Error> {
        employee::Roster::sync_mark(self, id, source)
    }
    fn round_trips(&self) -> bool {
        employee::Roster::reads_are_round_trips(self)
    }
    fn marks(&self, source: &str) -> Result<HashMap<EmployeeId, Vec<u8>>, Error> {
        employee::Roster::sync_marks(self, source)
    }
    fn get_many(&self, ids: &[EmployeeId]) -> Result<HashMap<EmployeeId, Employee>, Error> {
        employee::Roster::get_many(self, ids)
    }
    fn email_index(&self) -> Result<EmailIndex, Error> {
        employee::Roster::email_index(self)
    }
}

/// How a plan reads the roster. Both ways give the same plan; they differ in
/// how many reads it takes, which matters where each read is a round trip
/// (PostgreSQL: ~0.3 ms on the same machine, so 100,000 of them are 30 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// In bulk where reads are round trips ([`RosterView::round_trips`]), for
    /// the reads a run has enough of to pay for a bulk read; else one by one.
    Auto,
    /// One read per entry: its mark, its email, its profile (cheap on sled).
    PerEntry,
    /// Every read in bulk: the source's marks and the email index once each,
    /// the profiles to compare a few thousand at a time.
    Bulk,
}

/// Below this many entries of a kind (linked, to look up a mark; not linked,
/// to look up an email) a run reads them one by one even on a shared store: a
/// bulk read costs the whole source's marks, the whole email index.
const BULK_FROM: usize = 256;

/// How many entries' profiles are read at once in bulk (one query; the
/// profiles of one window are held in memory while it is planned).
const WINDOW: usize = 2000;

/// What [`Reads`] comes to for one plan.
#[derive(Debug, Clone, Copy)]
struct Resolved {
    marks: bool,
    emails: bool,
    profiles: bool,
}

impl Reads {
    fn resolve(self, round_trips: bool, linked: usize, unlinked: usize) -> Resolved {
        match self {
            Reads::PerEntry => Resolved {
                marks: false,
                emails: false,
                profiles: false,
            },
            Reads::Bulk => Resolved {
                marks: true,
                emails: true,
                profiles: true,
            },
            Reads::Auto => Resolved {
                marks: round_trips && linked >= BULK_FROM,
                emails: round_trips && unlinked >= BULK_FROM,
                profiles: round_trips,
            },
        }
    }
}

/// What a run of the source found stable for one entry: the entry's hash (with
/// everything else the decision depends on), whether the profile was active,
/// and until when the decision holds (the next hire or termination date). It is
/// kept on the profile as the source's mark ([`RosterView::mark`]), which lasts
/// until the profile changes: a later run that sees the same hash before
/// `until` knows the entry is unchanged without reading the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub hash: u64,
    pub active: bool,
    pub until: Option<DateTime<Utc>>,
}

impl Fingerprint {
    /// Whether it shows the entry with `hash` unchanged at `now`.
    fn holds(&self, hash: u64, now: DateTime<Utc>) -> bool {
        self.hash == hash && self.until.is_none_or(|u| now < u)
    }

    /// The fingerprint of `e` as the source's entry with `hash` left it.
    pub fn of(hash: u64, e: &Employee, now: DateTime<Utc>) -> Self {
        Self {
            hash,
            active: e.active,
            until: e
                .source_facts
                .values()
                .filter_map(|f| f.next_transition(now))
                .min(),
        }
    }

    /// 21 bytes: hash, active, until (seconds and nanoseconds, or zeros).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(21);
        b.extend_from_slice(&self.hash.to_be_bytes());
        b.push(u8::from(self.active));
        let (secs, nanos) = self
            .until
            .map_or((0, 0), |u| (u.timestamp(), u.timestamp_subsec_nanos()));
        b.extend_from_slice(&secs.to_be_bytes());
        b.extend_from_slice(&nanos.to_be_bytes());
        b
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let u64_at = |i: usize| b.get(i..i + 8)?.try_into().ok().map(u64::from_be_bytes);
        let secs = i64::from_be_bytes(b.get(9..17)?.try_into().ok()?);
        let nanos = u32::from_be_bytes(b.get(17..21)?.try_into().ok()?);
        Some(Self {
            hash: u64_at(0)?,
            active: *b.get(8)? == 1,
            until: if secs == 0 && nanos == 0 {
                None
            } else {
                Some(DateTime::from_timestamp(secs, nanos)?)
            },
        })
    }
}

/// The hash of an entry under a plan context ([`PlanSource::signature`]).
pub fn entry_hash(signature: u64, m: &MappedEntry) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    signature.hash(&mut h);
    m.hash(&mut h);
    h.finish()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Activate,
    Deactivate,
    Unchanged,
    /// Deactivated by an admin (or another client): the source does not reactivate it.
    Held,
    /// Not applied: the entry has an error, or is disabled and not on the roster.
    Skip,
}

/// One line of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanItem {
    pub action: Action,
    /// The source's join key.
    pub key: String,
    pub dn: String,
    pub employee_id: Option<EmployeeId>,
    /// Email or name, for people reading the plan.
    pub label: String,
    pub changes: Vec<FieldChange>,
    pub reason: String,
    /// Set for skips caused by bad data (reported as errors).
    #[serde(default)]
    pub error: bool,
}

/// Counts by action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub created: usize,
    pub updated: usize,
    pub activated: usize,
    pub deactivated: usize,
    pub unchanged: usize,
    pub held: usize,
    pub skipped: usize,
    pub errors: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub items: Vec<PlanItem>,
    pub counts: Counts,
    /// Active profiles linked to the source before the run (for the threshold).
    pub linked_active: usize,
    /// Entries decided unchanged after reading their profile: the profile, its
    /// version then and the fingerprint to mark it with once the run is applied.
    #[serde(skip)]
    pub stable: Vec<(EmployeeId, u64, Fingerprint)>,
}

impl Plan {
    fn push(&mut self, item: PlanItem) {
        self.count(&item);
        self.items.push(item);
    }

    fn count(&mut self, item: &PlanItem) {
        let c = &mut self.counts;
        match item.action {
            Action::Create => c.created += 1,
            Action::Update => c.updated += 1,
            Action::Activate => c.activated += 1,
            Action::Deactivate => c.deactivated += 1,
            Action::Unchanged => c.unchanged += 1,
            Action::Held => c.held += 1,
            Action::Skip => c.skipped += 1,
        }
        if item.error {
            c.errors += 1;
        }
    }

    /// Whether the plan deactivates more than the source allows.
    pub fn exceeds(&self, max_abs: usize, max_percent: f64) -> Option<String> {
        let n = self.counts.deactivated;
        if n > max_abs {
            return Some(format!(
                "would deactivate {n} profiles, more than max_deactivations = {max_abs}"
            ));
        }
        if self.linked_active > 0 {
            let pct = n as f64 * 100.0 / self.linked_active as f64;
            if pct > max_percent {
                return Some(format!(
                    "would deactivate {n} of {} linked active profiles ({pct:.1}%), more than max_deactivations_percent = {max_percent}",
                    self.linked_active
                ));
            }
        }
        None
    }
}

/// What the planner needs to know about the source and the others.
pub struct PlanSource<'a> {
    pub id: &'a str,
    pub account_status: AccountStatus,
    pub catalog: &'a Catalog,
    /// Whether this source decides who is active.
    pub lifecycle: bool,
    pub join_attribute: Option<JoinAttribute>,
    /// The fields this source writes.
    pub provides: &'a [&'static str],
    /// Sources of higher priority and the fields they write: on a profile linked
    /// to one of them, this source leaves those fields alone.
    pub higher: &'a [(String, Vec<&'static str>)],
    /// The sources that decide the lifecycle, in priority order.
    pub lifecycle_sources: &'a [String],
    /// The clock: dates are compared with it.
    pub now: DateTime<Utc>,
    /// Everything but the entry that a decision depends on (the settings above,
    /// the other sources, the catalog), hashed.
    pub signature: u64,
    /// Whether to trust the marks earlier runs left ([`Fingerprint`]).
    pub use_marks: bool,
}

impl PlanSource<'_> {
    fn actor(&self) -> Actor {
        sync_actor(self.id)
    }

    /// Fields a higher-priority source linked to `e` owns.
    pub fn owned_elsewhere(&self, e: &Employee) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (id, fields) in self.higher {
            if e.source_keys.contains_key(id) {
                out.extend(fields.iter().copied());
            }
        }
        out
    }
}

pub fn sync_actor(source: &str) -> Actor {
    Actor {
        kind: ActorKind::Sync,
        name: source.to_string(),
    }
}

/// Leaves out of `patch` the fields in `owned` (written by another source).
fn mask(patch: &mut EmployeePatch, owned: &[&str]) {
    for f in owned {
        match *f {
            "email" => patch.email = None,
            "given_name" => patch.given_name = None,
            "family_name" => patch.family_name = None,
            "display_name" => patch.display_name = None,
            "username" => patch.username = None,
            "mobile_phone" => patch.mobile_phone = None,
            "office_phone" => patch.office_phone = None,
            "photo" => {
                patch.photo_url = None;
                patch.photo = None;
            }
            "positions" => patch.positions = None,
            "role" => patch.role = None,
            "business_unit" => patch.business_unit = None,
            "employee_number" => patch.employee_number = None,
            "manager" => patch.manager = None,
            _ => {}
        }
    }
}

/// What the source says about the person's lifecycle.
fn facts_of(src: &PlanSource<'_>, m: &MappedEntry, current: Option<&Employee>) -> SourceFacts {
    let mut f = SourceFacts::default();
    if src.lifecycle {
        f.disabled = m
            .disabled
            .as_ref()
            .map(|why| format!("disabled in {} ({why})", src.id));
        f.hire = m.hire;
        f.termination = m.termination;
    }
    // The manager pass keeps this one; a plan does not touch it.
    f.unresolved_manager = current
        .and_then(|c| c.source_facts.get(src.id))
        .and_then(|x| x.unresolved_manager.clone());
    f
}

/// Why a profile should be inactive, and because of which source: the first
/// lifecycle source (in priority order) whose facts say so at `now`.
/// `deciding`: the source whose run asks; its own missing facts mean it has
/// nothing against the profile.
pub fn verdict(
    lifecycle_sources: &[String],
    e: &Employee,
    now: DateTime<Utc>,
    deciding: Option<&str>,
) -> Option<(String, String)> {
    for s in lifecycle_sources {
        if let Some(why) = e.source_facts.get(s).and_then(|f| f.inactive_reason(now)) {
            return Some((s.clone(), why));
        }
    }
    // Deactivated by a lifecycle source that recorded no facts (a profile from
    // before facts were kept): that source has to bring it back.
    if !e.active
        && let Some(by) = &e.deactivated_by
        && by.kind == ActorKind::Sync
        && lifecycle_sources.contains(&by.name)
        && !e.source_facts.contains_key(&by.name)
        && deciding != Some(by.name.as_str())
    {
        return Some((by.name.clone(), format!("deactivated by {by}")));
    }
    None
}

/// The lifecycle move for a profile whose facts are now those of `next`.
fn lifecycle_move(
    src: &PlanSource<'_>,
    current: &Employee,
    next: &Employee,
) -> (Action, String, Option<(bool, Actor)>) {
    let (src_lifecycle, now) = (src.lifecycle_sources, src.now);
    match (
        verdict(src_lifecycle, next, now, Some(src.id)),
        current.active,
    ) {
        (Some((by, why)), true) => (Action::Deactivate, why, Some((false, sync_actor(&by)))),
        (None, false) => match &current.deactivated_by {
            Some(by) if by.kind == ActorKind::Sync => {
                let why = match verdict(src_lifecycle, current, now, None) {
                    Some((_, before)) => format!("no longer inactive ({before})"),
                    None => "enabled in the source again".to_string(),
                };
                (Action::Activate, why, Some((true, by.clone())))
            }
            Some(by) => (
                Action::Held,
                format!("deactivated by {by}; the sync does not reactivate it until an admin does"),
                None,
            ),
            None => (
                Action::Held,
                "inactive on the roster; the sync does not reactivate it until an admin does"
                    .to_string(),
                None,
            ),
        },
        _ => (Action::Unchanged, String::new(), None),
    }
}

/// One entry's decision about an existing profile.
pub struct Decision {
    pub action: Action,
    pub reason: String,
    pub change: SyncChange,
    pub changes: Vec<FieldChange>,
}

/// Decides what the entry does to the existing profile `current`. Pure. The
/// engine calls it again at apply time with the profile as it is then.
pub fn decide(
    src: &PlanSource<'_>,
    m: &MappedEntry,
    current: &Employee,
) -> Result<Decision, Error> {
    let mut patch = m.fields.to_patch();
    mask(&mut patch, &src.owned_elsewhere(current));
    patch.source_facts = Some((src.id.to_string(), Some(facts_of(src, m, Some(current)))));
    let change = SyncChange {
        patch,
        active: None,
    };
    let actor = src.actor();
    let next = employee::preview_sync(current, &change, src.id, &m.key, src.catalog, &actor)?;
    let linking = current.source_keys.get(src.id) != Some(&m.key);
    let (action, reason, active) = lifecycle_move(src, current, &next);
    let change = SyncChange {
        patch: change.patch,
        active,
    };
    let (action, reason) = match action {
        Action::Unchanged | Action::Held if next != *current => {
            let why = if linking {
                "linked".to_string()
            } else {
                "changed in the source".to_string()
            };
            if action == Action::Held {
                (Action::Held, reason)
            } else {
                (Action::Update, why)
            }
        }
        a => (a, reason),
    };
    let after = match change.active {
        None => next,
        Some(_) => employee::preview_sync(current, &change, src.id, &m.key, src.catalog, &actor)?,
    };
    let changes = if after == *current {
        Vec::new()
    } else {
        employee::diff(Some(current), Some(&after))
    };
    Ok(Decision {
        action,
        reason,
        change,
        changes,
    })
}

/// The change for a linked profile missing from a full run: the source says
/// the person is gone.
pub fn decide_absent(src: &PlanSource<'_>, current: &Employee) -> SyncChange {
    let mut facts = current
        .source_facts
        .get(src.id)
        .cloned()
        .unwrap_or_default();
    facts.disabled = Some(format!("no longer in {} (full run)", src.id));
    SyncChange {
        patch: EmployeePatch {
            source_facts: Some((src.id.to_string(), Some(facts))),
            ..Default::default()
        },
        active: current.active.then(|| (false, src.actor())),
    }
}

/// The new profile an entry makes (inactive before its hire date).
pub fn new_input(src: &PlanSource<'_>, m: &MappedEntry) -> employee::NewEmployee {
    let facts = facts_of(src, m, None);
    let mut input = m
        .fields
        .to_new(src.account_status, facts.inactive_reason(src.now).is_none());
    if !facts.is_empty() {
        input.source_facts.insert(src.id.to_string(), facts);
    }
    input
}

fn label(e: &MappedEntry) -> String {
    e.fields.email.clone()
}

/// Each entry's hash and the mark its linked profile carries: cheap reads
/// (or none: `marks`, the source's marks read at once), done on two threads
/// for large runs (a directory of 100,000 people).
fn entry_facts(
    src: &PlanSource<'_>,
    entries: &[MappedEntry],
    linked_by_key: &HashMap<&str, EmployeeId>,
    marks: Option<&HashMap<EmployeeId, Vec<u8>>>,
    view: &(impl RosterView + Sync),
) -> Result<Vec<(u64, Option<Fingerprint>)>, Error> {
    let one = |m: &MappedEntry| -> Result<(u64, Option<Fingerprint>), Error> {
        let marked = match (linked_by_key.get(m.key.as_str()), marks) {
            (Some(id), Some(marks)) if src.use_marks => {
                marks.get(id).and_then(|b| Fingerprint::from_bytes(b))
            }
            (Some(id), None) if src.use_marks => view
                .mark(*id, src.id)?
                .and_then(|b| Fingerprint::from_bytes(&b)),
            _ => None,
        };
        Ok((entry_hash(src.signature, m), marked))
    };
    let all = |part: &[MappedEntry]| part.iter().map(one).collect::<Result<Vec<_>, _>>();
    if entries.len() < 4096 {
        return all(entries);
    }
    let (first, second) = entries.split_at(entries.len() / 2);
    std::thread::scope(|s| {
        let other = s.spawn(|| all(second));
        let mut out = all(first)?;
        let rest = other
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        out.extend(rest);
        Ok(out)
    })
}

/// The field changes of the create item of entry `m`: every field of the new
/// profile it makes (none if it cannot be made). [`plan`] leaves them out of
/// its create items (a first import's would hold every field of every new
/// profile, twice, as JSON values, while the run applies); whoever shows or
/// stores the plan works them out with this, from the same entry.
pub fn create_changes(src: &PlanSource<'_>, m: &MappedEntry) -> Vec<FieldChange> {
    let input = new_input(src, m);
    match employee::build_new(src.catalog, &input, None, &src.actor()) {
        Ok(new) => employee::diff(None, Some(&new)),
        Err(_) => Vec::new(),
    }
}

/// The plan items of the entries no profile joins: a new profile each, or a
/// skip with the reason it cannot be made. Pure, so a large run builds them on
/// two threads (a first import creates every profile). A create item carries
/// no field changes: see [`create_changes`].
fn create_items(
    src: &PlanSource<'_>,
    actor: &Actor,
    creates: &[(usize, &MappedEntry)],
) -> Vec<PlanItem> {
    let one = |m: &MappedEntry| {
        let not_yet = facts_of(src, m, None).inactive_reason(src.now);
        let input = new_input(src, m);
        let (action, reason, error) = match employee::build_new(src.catalog, &input, None, actor) {
            Ok(_) => (
                Action::Create,
                match not_yet {
                    Some(why) => format!("new in the source; inactive: {why}"),
                    None => "new in the source".into(),
                },
                false,
            ),
            Err(e) => (Action::Skip, e.to_string(), true),
        };
        PlanItem {
            action,
            key: m.key.clone(),
            dn: m.dn.clone(),
            employee_id: None,
            label: label(m),
            changes: Vec::new(),
            reason,
            error,
        }
    };
    let all = |part: &[(usize, &MappedEntry)]| part.iter().map(|(_, m)| one(m)).collect();
    if creates.len() < 4096 {
        return all(creates);
    }
    let (first, second) = creates.split_at(creates.len() / 2);
    std::thread::scope(|s| {
        let other = s.spawn(|| all(second));
        let mut out: Vec<PlanItem> = Vec::with_capacity(creates.len());
        out.extend(first.iter().map(|(_, m)| one(m)));
        let rest = other
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        out.extend(rest);
        out
    })
}

/// Builds the plan. Pure but for the [`RosterView`] reads. In steps: the rows
/// that could not be mapped (each keeps its profile), each mapped entry against
/// the profile it joins, the new profiles (built on two threads), then the
/// linked profiles no entry matched (the absentees of a full run).
pub fn plan(
    src: &PlanSource<'_>,
    kind: RunKind,
    entries: &[MappedEntry],
    map_errors: &[MapError],
    view: &(impl RosterView + Sync),
) -> Result<Plan, Error> {
    plan_with(src, kind, entries, map_errors, view, Reads::Auto)
}

/// [`plan`], reading the roster as `reads` says (the same plan either way).
pub fn plan_with(
    src: &PlanSource<'_>,
    kind: RunKind,
    entries: &[MappedEntry],
    map_errors: &[MapError],
    view: &(impl RosterView + Sync),
    reads: Reads,
) -> Result<Plan, Error> {
    let linked = view.linked(src.id)?;
    let mut p = Planner::new(src, view, &linked, entries, reads)?;
    p.plan.items.reserve(entries.len() + map_errors.len());
    let unidentified = p.unmappable(map_errors)?;
    let creates = p.entries(entries)?;
    for ((at, _), item) in creates.iter().zip(create_items(src, &p.actor, &creates)) {
        p.plan.count(&item);
        p.plan.items[*at] = item;
    }
    let absent = p.absentees(&linked)?;
    p.plan.linked_active = p.active_of.values().filter(|a| **a).count();
    if kind == RunKind::Full && src.lifecycle {
        for (key, e) in &absent {
            p.absent(key, e, unidentified)?;
        }
    }
    Ok(p.plan)
}

/// The state of one [`plan`] as it goes through the entries.
struct Planner<'a, V> {
    src: &'a PlanSource<'a>,
    view: &'a V,
    reads: Resolved,
    /// Every email and its profile, when read at once.
    emails: Option<EmailIndex>,
    /// Profiles read ahead in bulk, taken as they are needed; a profile not in
    /// it is read on its own.
    ahead: HashMap<EmployeeId, Employee>,
    actor: Actor,
    plan: Plan,
    linked_by_key: HashMap<&'a str, EmployeeId>,
    /// Profiles by employee number, when the source joins on it.
    by_number: HashMap<String, Employee>,
    /// Whether each linked profile is active, as learnt (for the threshold).
    active_of: HashMap<EmployeeId, bool>,
    /// The profiles entries (or unmappable rows) joined, and by which key.
    claimed: HashMap<EmployeeId, String>,
    seen_keys: HashSet<&'a str>,
}

impl<'a, V: RosterView + Sync> Planner<'a, V> {
    fn new(
        src: &'a PlanSource<'a>,
        view: &'a V,
        linked: &'a [(String, EmployeeId)],
        entries: &[MappedEntry],
        reads: Reads,
    ) -> Result<Self, Error> {
        // Entries join by key from here; a profile is read only when the
        // entry's fingerprint does not show it unchanged.
        let linked_by_key: HashMap<&str, EmployeeId> =
            linked.iter().map(|(k, id)| (k.as_str(), *id)).collect();
        let by_key = entries
            .iter()
            .filter(|m| linked_by_key.contains_key(m.key.as_str()))
            .count();
        let reads = reads.resolve(view.round_trips(), by_key, entries.len() - by_key);
        Ok(Self {
            src,
            view,
            reads,
            emails: if reads.emails {
                Some(view.email_index()?)
            } else {
                None
            },
            ahead: HashMap::new(),
            actor: src.actor(),
            plan: Plan::default(),
            linked_by_key,
            by_number: match src.join_attribute {
                Some(JoinAttribute::EmployeeNumber) => view.by_employee_number()?,
                None => HashMap::new(),
            },
            active_of: HashMap::new(),
            claimed: HashMap::new(),
            seen_keys: HashSet::new(),
        })
    }

    /// An entry that cannot be mapped is not a leaver: the profile it belongs
    /// to (by join key, else by email) is kept as it is. Returns how many could
    /// not even be told apart: then nobody is deactivated for being absent.
    fn unmappable(&mut self, map_errors: &'a [MapError]) -> Result<usize, Error> {
        let mut unidentified = 0usize;
        for m in map_errors {
            let mut owner = m
                .key
                .as_deref()
                .and_then(|k| self.linked_by_key.get(k).copied());
            if owner.is_none()
                && let Some(email) = &m.email
                && let Some(e) = self.by_email(email)?
                && e.source_keys.contains_key(self.src.id)
            {
                owner = Some(e.id);
            }
            if let Some(k) = &m.key {
                self.seen_keys.insert(k.as_str());
            }
            let reason = match owner {
                Some(id) => {
                    self.claimed
                        .entry(id)
                        .or_insert_with(|| m.key.clone().unwrap_or_default());
                    format!("{}; the profile is kept as it is", m.message)
                }
                None if m.key.is_some() || m.email.is_some() => m.message.clone(),
                None => {
                    unidentified += 1;
                    m.message.clone()
                }
            };
            self.plan.push(PlanItem {
                action: Action::Skip,
                key: m.key.clone().unwrap_or_default(),
                dn: m.dn.clone(),
                employee_id: owner,
                label: m.email.clone().unwrap_or_else(|| m.dn.clone()),
                changes: vec![],
                reason,
                error: true,
            });
        }
        Ok(unidentified)
    }

    /// Plans every mapped entry in order. The entries that make a new profile
    /// get a place in the plan and come back with it, to be built together
    /// ([`create_items`]).
    fn entries(
        &mut self,
        entries: &'a [MappedEntry],
    ) -> Result<Vec<(usize, &'a MappedEntry)>, Error> {
        let entry_keys: HashSet<&str> = entries.iter().map(|m| m.key.as_str()).collect();
        let marks = match self.reads.marks && self.src.use_marks {
            true => Some(self.view.marks(self.src.id)?),
            false => None,
        };
        let facts = entry_facts(
            self.src,
            entries,
            &self.linked_by_key,
            marks.as_ref(),
            self.view,
        )?;
        drop(marks);
        let mut creates = Vec::new();
        for (i, (m, (hash, marked))) in entries.iter().zip(facts.iter().copied()).enumerate() {
            if self.reads.profiles && i % WINDOW == 0 {
                let end = (i + WINDOW).min(entries.len());
                self.read_ahead(&entries[i..end], &facts[i..end])?;
            }
            match self.entry(m, hash, marked, &entry_keys)? {
                Some(item) => self.plan.push(item),
                None => {
                    creates.push((self.plan.items.len(), m));
                    self.plan.items.push(skip(m, String::new(), false, None));
                }
            }
        }
        Ok(creates)
    }

    /// The item of one entry, or `None` when it makes a new profile.
    fn entry(
        &mut self,
        m: &'a MappedEntry,
        hash: u64,
        marked: Option<Fingerprint>,
        entry_keys: &HashSet<&str>,
    ) -> Result<Option<PlanItem>, Error> {
        let src = self.src;
        if !self.seen_keys.insert(m.key.as_str()) {
            let why = format!("join key {} appears twice in the source", m.key);
            return Ok(Some(skip(m, why, true, None)));
        }
        let linked_id = self.linked_by_key.get(m.key.as_str()).copied();
        if let (Some(id), Some(fp)) = (linked_id, marked)
            && fp.holds(hash, src.now)
            && !self.claimed.contains_key(&id)
        {
            self.claimed.insert(id, m.key.clone());
            self.active_of.insert(id, fp.active);
            return Ok(Some(PlanItem {
                action: Action::Unchanged,
                employee_id: Some(id),
                ..skip(m, String::new(), false, None)
            }));
        }
        let Some(current) = self.joined(m, linked_id)? else {
            if let Some(why) = &m.disabled {
                let why = format!("disabled in the source ({why}); not imported");
                return Ok(Some(skip(m, why, false, None)));
            }
            if let Some(t) = &m.termination
                && t.at <= src.now
            {
                let why = format!("terminated on {}; not imported", t.date);
                return Ok(Some(skip(m, why, false, None)));
            }
            return Ok(None);
        };
        if let Some(other) = self.claimed.insert(current.id, m.key.clone()) {
            let why = format!("joins the same profile as the entry with key {other}");
            return Ok(Some(skip(m, why, true, Some(current.id))));
        }
        // Linked to another entry of this source that still exists? Then this
        // is a second person with the same email.
        if let Some(old_key) = current.source_keys.get(src.id)
            && old_key != &m.key
            && entry_keys.contains(old_key.as_str())
        {
            let why = format!(
                "email {} belongs to the profile linked to key {old_key}",
                m.fields.email
            );
            return Ok(Some(skip(m, why, true, Some(current.id))));
        }
        if linked_id == Some(current.id) {
            self.active_of.insert(current.id, current.active);
        }
        Ok(Some(match decide(src, m, &current) {
            Ok(d) => {
                if d.action == Action::Unchanged && linked_id == Some(current.id) {
                    self.plan.stable.push((
                        current.id,
                        current.version,
                        Fingerprint::of(hash, &current, src.now),
                    ));
                }
                PlanItem {
                    action: d.action,
                    employee_id: Some(current.id),
                    changes: d.changes,
                    ..skip(m, d.reason, false, None)
                }
            }
            Err(e) => skip(m, e.to_string(), true, Some(current.id)),
        }))
    }

    /// The profile entry `m` joins: the one linked to its key, else the one
    /// with its email, else (when the source joins on it) its employee number.
    fn joined(
        &mut self,
        m: &MappedEntry,
        linked_id: Option<EmployeeId>,
    ) -> Result<Option<Employee>, Error> {
        if let Some(id) = linked_id {
            return self.get(id).map(Some);
        }
        Ok(match self.by_email(&m.fields.email)? {
            Some(e) => Some(e),
            None => m
                .fields
                .employee_number
                .clone()
                .flatten()
                .and_then(|n| self.by_number.get(&n).cloned()),
        })
    }

    /// The profile `id`: read ahead, else read now.
    fn get(&mut self, id: EmployeeId) -> Result<Employee, Error> {
        match self.ahead.remove(&id) {
            Some(e) => Ok(e),
            None => self.view.get(id),
        }
    }

    /// The profile with `email`, as [`RosterView::by_email`] finds it.
    fn by_email(&mut self, email: &str) -> Result<Option<Employee>, Error> {
        match &self.emails {
            Some(index) => index.get(email).map(|id| self.get(id)).transpose(),
            None => self.view.by_email(email),
        }
    }

    /// Reads in bulk the profiles the window `entries` (with their `facts`)
    /// will compare: those linked by key whose mark does not show them
    /// unchanged, and those their email joins. What it misses (an entry whose
    /// mark an earlier entry made useless) is read on its own.
    fn read_ahead(
        &mut self,
        entries: &[MappedEntry],
        facts: &[(u64, Option<Fingerprint>)],
    ) -> Result<(), Error> {
        let now = self.src.now;
        let ids: Vec<EmployeeId> = entries
            .iter()
            .zip(facts)
            .filter_map(
                |(m, (hash, marked))| match self.linked_by_key.get(m.key.as_str()) {
                    Some(_) if marked.is_some_and(|fp| fp.holds(*hash, now)) => None,
                    Some(id) => Some(*id),
                    None => self.emails.as_ref()?.get(&m.fields.email),
                },
            )
            .collect();
        self.ahead = self.view.get_many(&ids)?;
        Ok(())
    }

    /// Linked profiles no entry matched, read now: the absentees (of a full
    /// run), with their keys.
    fn absentees(
        &mut self,
        linked: &'a [(String, EmployeeId)],
    ) -> Result<Vec<(&'a String, Employee)>, Error> {
        let mut absent = Vec::new();
        if self.reads.profiles {
            let ids: Vec<EmployeeId> = linked
                .iter()
                .map(|(_, id)| *id)
                .filter(|id| !self.active_of.contains_key(id))
                .collect();
            self.ahead = self.view.get_many(&ids)?;
        }
        for (key, id) in linked {
            if !self.active_of.contains_key(id) {
                let e = self.get(*id)?;
                self.active_of.insert(*id, e.active);
                if !self.claimed.contains_key(id) && !self.seen_keys.contains(key.as_str()) {
                    absent.push((key, e));
                }
            }
        }
        Ok(absent)
    }

    /// A full run deactivates an active absentee, unless some rows could not
    /// be told apart (`unidentified`): this one may be among them.
    fn absent(&mut self, key: &str, e: &Employee, unidentified: usize) -> Result<(), Error> {
        let src = self.src;
        if !e.active {
            return Ok(());
        }
        let (action, changes, reason) = if unidentified > 0 {
            let why = format!(
                "no longer in {} (full run), but {unidentified} entries could not be read \
                 and may include this one: not deactivated",
                src.id
            );
            (Action::Skip, vec![], why)
        } else {
            let change = decide_absent(src, e);
            let after = employee::preview_sync(e, &change, src.id, key, src.catalog, &self.actor)?;
            let changes = employee::diff(Some(e), Some(&after));
            let why = format!("no longer in {} (full run)", src.id);
            (Action::Deactivate, changes, why)
        };
        self.plan.push(PlanItem {
            action,
            key: key.to_string(),
            dn: String::new(),
            employee_id: Some(e.id),
            label: e.email.clone(),
            changes,
            reason,
            error: false,
        });
        Ok(())
    }
}

/// The item of entry `m` that skips it for `reason` (the base of the others).
fn skip(m: &MappedEntry, reason: String, error: bool, id: Option<EmployeeId>) -> PlanItem {
    PlanItem {
        action: Action::Skip,
        key: m.key.clone(),
        dn: m.dn.clone(),
        employee_id: id,
        label: label(m),
        changes: vec![],
        reason,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::employee::{EffectiveDate, NewEmployee};
    use crate::sync::map::SourceFields;
    use chrono::{NaiveDate, TimeZone};

    #[allow(clippy::type_complexity)]
    struct Mem(
        Vec<Employee>,
        std::sync::atomic::AtomicUsize,
        std::sync::Mutex<HashMap<(EmployeeId, String), (u64, Vec<u8>)>>,
    );

    fn mem(v: Vec<Employee>) -> Mem {
        Mem(v, Default::default(), Default::default())
    }

    impl Mem {
        /// Marks as the store keeps them: for one version of the profile.
        fn set_marks(&self, source: &str, marks: &[(EmployeeId, u64, Fingerprint)]) {
            for (id, v, fp) in marks {
                self.2
                    .lock()
                    .unwrap()
                    .insert((*id, source.to_string()), (*v, fp.to_bytes()));
            }
        }
    }

    impl RosterView for Mem {
        fn by_email(&self, email: &str) -> Result<Option<Employee>, Error> {
            let found = self.0.iter().find(|e| e.email.eq_ignore_ascii_case(email));
            if found.is_some() {
                // The roster reads the profile the email index names.
                self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(found.cloned())
        }
        fn linked(&self, source: &str) -> Result<Vec<(String, EmployeeId)>, Error> {
            Ok(self
                .0
                .iter()
                .filter_map(|e| e.source_keys.get(source).map(|k| (k.clone(), e.id)))
                .collect())
        }
        fn get(&self, id: EmployeeId) -> Result<Employee, Error> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(self.0.iter().find(|e| e.id == id).cloned().unwrap())
        }
        fn mark(&self, id: EmployeeId, source: &str) -> Result<Option<Vec<u8>>, Error> {
            let version = self.0.iter().find(|e| e.id == id).map(|e| e.version);
            Ok(
                match self.2.lock().unwrap().get(&(id, source.to_string())) {
                    Some((v, m)) if Some(*v) == version => Some(m.clone()),
                    _ => None,
                },
            )
        }
        fn by_employee_number(&self) -> Result<HashMap<String, Employee>, Error> {
            Ok(self
                .0
                .iter()
                .filter_map(|e| e.enterprise.employee_number.clone().map(|n| (n, e.clone())))
                .collect())
        }
        fn marks(&self, source: &str) -> Result<HashMap<EmployeeId, Vec<u8>>, Error> {
            let mut out = HashMap::new();
            for e in &self.0 {
                if let Some(m) = self.mark(e.id, source)? {
                    out.insert(e.id, m);
                }
            }
            Ok(out)
        }
        fn get_many(&self, ids: &[EmployeeId]) -> Result<HashMap<EmployeeId, Employee>, Error> {
            self.1
                .fetch_add(ids.len(), std::sync::atomic::Ordering::Relaxed);
            let ids: HashSet<&EmployeeId> = ids.iter().collect();
            Ok(self
                .0
                .iter()
                .filter(|e| ids.contains(&e.id))
                .map(|e| (e.id, e.clone()))
                .collect())
        }
        fn email_index(&self) -> Result<EmailIndex, Error> {
            Ok(EmailIndex::of(
                self.0.iter().map(|e| (e.email.clone(), e.id)),
            ))
        }
    }

    fn catalog() -> Catalog {
        crate::employee::fixtures::one_role_catalog("Driver")
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn entry(key: &str, email: &str, given: &str) -> MappedEntry {
        MappedEntry {
            key: key.into(),
            dn: format!("line {key}"),
            fields: SourceFields {
                email: email.into(),
                given_name: Some(given.into()),
                family_name: Some("Doe".into()),
                mobile_phone: Some(Some("+15550100".into())),
                ..Default::default()
            },
            disabled: None,
            warnings: vec![],
            hire: None,
            termination: None,
            manager: None,
        }
    }

    fn profile(email: &str, given: &str, links: &[(&str, &str)]) -> Employee {
        let input = NewEmployee {
            given_name: given.into(),
            family_name: "Doe".into(),
            email: email.into(),
            ..Default::default()
        };
        let mut e = employee::build_new(&catalog(), &input, None, &sync_actor("x")).unwrap();
        for (s, k) in links {
            e.source_keys.insert(s.to_string(), k.to_string());
        }
        e
    }

    struct Setup {
        catalog: Catalog,
        higher: Vec<(String, Vec<&'static str>)>,
        lifecycle: Vec<String>,
        provides: Vec<&'static str>,
    }

    impl Setup {
        fn new() -> Self {
            Self {
                catalog: catalog(),
                higher: vec![],
                lifecycle: vec!["hr".into()],
                provides: vec!["email", "given_name", "family_name", "mobile_phone"],
            }
        }
        fn src(&self, id: &'static str, now: DateTime<Utc>) -> PlanSource<'_> {
            PlanSource {
                id,
                account_status: AccountStatus::Later,
                catalog: &self.catalog,
                lifecycle: self.lifecycle.iter().any(|l| l == id),
                join_attribute: Some(JoinAttribute::EmployeeNumber),
                provides: &self.provides,
                higher: &self.higher,
                lifecycle_sources: &self.lifecycle,
                now,
                signature: 7,
                use_marks: true,
            }
        }
    }

    fn berlin() -> chrono_tz::Tz {
        "Europe/Berlin".parse().unwrap()
    }

    /// A large first import builds its new profiles on two threads; each item
    /// stays at its entry's place, and a bad entry is still a reported skip.
    #[test]
    fn a_large_import_keeps_every_item_in_order() {
        let s = Setup::new();
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
        let n = 5000;
        let entries: Vec<MappedEntry> = (0..n)
            .map(|i| match i {
                3 | 4500 => entry(&format!("E{i}"), "not-an-email", "Bad"),
                _ => entry(&format!("E{i}"), &format!("p{i}@example.com"), "P"),
            })
            .collect();
        let linked = profile("p2000@example.com", "P", &[("hr", "E2000")]);
        let src = s.src("hr", now);
        let p = plan(&src, RunKind::Full, &entries, &[], &mem(vec![linked])).unwrap();
        assert_eq!(p.items.len(), n);
        for (i, item) in p.items.iter().enumerate() {
            assert_eq!(item.key, format!("E{i}"));
            match i {
                3 | 4500 => assert!(item.action == Action::Skip && item.error, "{item:?}"),
                2000 => assert_ne!(item.action, Action::Create),
                _ => {
                    assert_eq!(item.action, Action::Create, "{item:?}");
                    let changes = create_changes(&src, &entries[i]);
                    let email = changes.iter().find(|c| c.field == "email").unwrap();
                    assert_eq!(email.after, format!("p{i}@example.com"));
                }
            }
        }
        assert_eq!(p.counts.created, n - 3);
        assert_eq!(p.counts.errors, 2);
        assert_eq!(p.counts.skipped, 2);
    }

    /// A row that cannot be mapped is not a leaver: its profile (found by join
    /// key, else by email) is kept as it is in a full run; when a refused row
    /// cannot be told apart at all, nobody is deactivated for being absent.
    #[test]
    fn an_unmappable_entry_keeps_its_profile_and_an_unknown_one_keeps_everyone() {
        let s = Setup::new();
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
        let people = vec![
            profile("ann@example.com", "Ann", &[("hr", "E1")]),
            profile("bob@example.com", "Bob", &[("hr", "E2")]),
            profile("cy@example.com", "Cy", &[("hr", "E3")]),
            profile("gone@example.com", "Gus", &[("hr", "E4")]),
        ];
        let ids: Vec<EmployeeId> = people.iter().map(|e| e.id).collect();
        let entries = vec![entry("E1", "ann@example.com", "Ann")];
        let errors = vec![
            MapError::new("line 3", "fields.hire_date: `13/45` is not a date")
                .of(Some("E2".into()), None),
            MapError::new("line 4", "has no join key").of(None, Some("CY@example.com".into())),
        ];
        let src = s.src("hr", now);
        let view = mem(people);
        let p = plan(&src, RunKind::Full, &entries, &errors, &view).unwrap();
        let item = |id: EmployeeId| p.items.iter().find(|i| i.employee_id == Some(id)).unwrap();
        for id in [ids[1], ids[2]] {
            let i = item(id);
            assert!(i.action == Action::Skip && i.error, "{i:?}");
            assert!(i.reason.contains("kept as it is"), "{i:?}");
        }
        assert_eq!(item(ids[3]).action, Action::Deactivate, "the real leaver");
        assert_eq!(p.counts.deactivated, 1);
        assert_eq!(p.counts.errors, 2);

        // A row nothing identifies: nobody is deactivated for being absent.
        let mut errors = errors;
        errors.push(MapError::new("line 5", "cannot be read"));
        let p = plan(&src, RunKind::Full, &entries, &errors, &view).unwrap();
        assert_eq!(p.counts.deactivated, 0, "{:?}", p.items);
        let gus = item_of(&p, ids[3]);
        assert_eq!(gus.action, Action::Skip);
        assert!(
            gus.reason.contains("1 entries could not be read"),
            "{gus:?}"
        );
    }

    fn item_of(p: &Plan, id: EmployeeId) -> &PlanItem {
        p.items.iter().find(|i| i.employee_id == Some(id)).unwrap()
    }

    #[test]
    fn a_future_hire_is_created_inactive_and_is_due_at_local_midnight() {
        let s = Setup::new();
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
        let mut m = entry("E1", "ann@example.com", "Ann");
        m.hire = Some(EffectiveDate::new(day(2026, 12, 1), berlin()));
        let src = s.src("hr", now);
        let p = plan(&src, RunKind::Full, &[m.clone()], &[], &mem(vec![])).unwrap();
        assert_eq!(p.items[0].action, Action::Create);
        assert!(
            p.items[0].reason.contains("starts on 2026-12-01"),
            "{:?}",
            p.items[0]
        );
        let input = new_input(&src, &m);
        assert_eq!(input.active, Some(false));
        let facts = &input.source_facts["hr"];
        // Midnight in Berlin is 23:00 UTC the day before.
        let due = Utc.with_ymd_and_hms(2026, 11, 30, 23, 0, 0).unwrap();
        assert_eq!(facts.next_transition(now), Some(due));
        assert!(
            facts
                .inactive_reason(due - chrono::Duration::seconds(1))
                .is_some()
        );
        assert_eq!(facts.inactive_reason(due), None);
    }

    #[test]
    fn termination_deactivates_at_once_when_due_and_leavers_are_not_imported() {
        let s = Setup::new();
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
        let current = profile("bob@example.com", "Bob", &[("hr", "E2")]);
        let mut m = entry("E2", "bob@example.com", "Bob");
        m.termination = Some(EffectiveDate::new(day(2026, 11, 27), berlin()));
        let mut gone = entry("E3", "cy@example.com", "Cy");
        gone.termination = Some(EffectiveDate::new(day(2026, 10, 31), berlin()));
        let src = s.src("hr", now);
        let p = plan(
            &src,
            RunKind::Full,
            &[m.clone(), gone],
            &[],
            &mem(vec![current.clone()]),
        )
        .unwrap();
        assert_eq!(p.items[0].action, Action::Deactivate, "{:?}", p.items[0]);
        assert_eq!(p.items[0].reason, "terminated on 2026-11-27");
        assert_eq!(p.items[1].action, Action::Skip);
        assert!(p.items[1].reason.contains("not imported"));
        // A termination later this month: still active today.
        m.termination = Some(EffectiveDate::new(day(2026, 11, 30), berlin()));
        let d = decide(&src, &m, &current).unwrap();
        assert_eq!(d.action, Action::Update, "the termination is recorded");
        assert!(d.change.active.is_none());
    }

    #[test]
    fn a_higher_priority_source_keeps_its_fields() {
        let mut s = Setup::new();
        s.higher = vec![("hr".into(), vec!["email", "given_name"])];
        let now = Utc::now();
        let current = profile(
            "ann@example.com",
            "Annabel",
            &[("hr", "E1"), ("ldap", "u1")],
        );
        let m = entry("u1", "ann@example.com", "Ann");
        let d = decide(&s.src("ldap", now), &m, &current).unwrap();
        assert!(
            d.changes.iter().all(|c| c.field != "given_name"),
            "hr owns given_name: {:?}",
            d.changes
        );
        assert!(d.changes.iter().any(|c| c.field == "mobile_phone"));
        // Not linked to hr: ldap writes the name.
        let alone = profile("ann@example.com", "Annabel", &[("ldap", "u1")]);
        let d = decide(&s.src("ldap", now), &m, &alone).unwrap();
        assert!(d.changes.iter().any(|c| c.field == "given_name"));
    }

    #[test]
    fn a_photo_is_a_field_like_the_others_and_written_only_when_its_digest_changes() {
        let mut s = Setup::new();
        s.provides.push("photo");
        let now = Utc::now();
        let jpeg = employee::PhotoBytes::new("image/jpeg", vec![0xFF, 0xD8, 0xFF, 1]);
        let mut m = entry("u1", "ann@example.com", "Ann");
        m.fields.photo = Some(Some(jpeg.clone()));
        let mut current = profile("ann@example.com", "Ann", &[("ldap", "u1")]);
        current.mobile_phone = Some("+15550100".into());
        let d = decide(&s.src("ldap", now), &m, &current).unwrap();
        assert_eq!(d.action, Action::Update);
        assert_eq!(d.changes.len(), 1, "{:?}", d.changes);
        assert_eq!(d.changes[0].field, "photo");
        assert_eq!(d.changes[0].after["sha256"], jpeg.sha256.as_str());
        // The same bytes again: unchanged.
        current.photo = Some(jpeg.photo());
        let d = decide(&s.src("ldap", now), &m, &current).unwrap();
        assert_eq!((d.action, d.changes.len()), (Action::Unchanged, 0));
        // A higher-priority source that maps `photo` keeps it.
        s.higher = vec![("hr".into(), vec!["photo"])];
        current.photo = None;
        current.source_keys.insert("hr".into(), "E1".into());
        let d = decide(&s.src("ldap", now), &m, &current).unwrap();
        assert!(
            d.changes.iter().all(|c| c.field != "photo"),
            "{:?}",
            d.changes
        );
    }

    #[test]
    fn an_admin_deactivation_holds_and_another_source_cannot_reactivate() {
        let s = Setup::new();
        let now = Utc::now();
        let mut current = profile("ann@example.com", "Ann", &[("hr", "E1")]);
        current.active = false;
        current.deactivated_by = Some(Actor {
            kind: ActorKind::Admin,
            name: "admin".into(),
        });
        let m = entry("E1", "ann@example.com", "Ann");
        let d = decide(&s.src("hr", now), &m, &current).unwrap();
        assert_eq!(d.action, Action::Held);
        // Deactivated by the hr source because of a termination that was withdrawn.
        current.deactivated_by = Some(sync_actor("hr"));
        current.source_facts.insert(
            "hr".into(),
            SourceFacts {
                termination: Some(EffectiveDate::new(day(2026, 1, 1), berlin())),
                ..Default::default()
            },
        );
        let d = decide(&s.src("hr", now), &m, &current).unwrap();
        assert_eq!(d.action, Action::Activate, "{}", d.reason);
        // ...but a non-lifecycle source's run does not lift hr's termination.
        let d = decide(
            &s.src("ldap", now),
            &entry("u1", "ann@example.com", "Ann"),
            &current,
        )
        .unwrap();
        assert_ne!(d.action, Action::Activate);
    }

    #[test]
    fn entries_join_by_employee_number_after_key_and_email() {
        let s = Setup::new();
        let mut current = profile("ann.old@example.com", "Ann", &[("ldap", "u1")]);
        current.enterprise.employee_number = Some("1001".into());
        let mut m = entry("E1", "ann@example.com", "Ann");
        m.fields.employee_number = Some(Some("1001".into()));
        let p = plan(
            &s.src("hr", Utc::now()),
            RunKind::Full,
            &[m],
            &[],
            &mem(vec![current.clone()]),
        )
        .unwrap();
        assert_eq!(p.items[0].employee_id, Some(current.id), "{:?}", p.items[0]);
        assert_eq!(p.items[0].action, Action::Update);
    }

    #[test]
    fn a_fingerprinted_entry_is_unchanged_without_reading_its_profile() {
        let s = Setup::new();
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
        let mut m = entry("E1", "ann@example.com", "Ann");
        let mut current = profile("ann@example.com", "Ann", &[("hr", "E1")]);
        current.mobile_phone = Some("+15550100".into());
        m.termination = Some(EffectiveDate::new(day(2026, 12, 31), berlin()));
        // First plan: read, unchanged after its facts are recorded, fingerprinted.
        let src = s.src("hr", now);
        let d = decide(&src, &m, &current).unwrap();
        let current =
            employee::preview_sync(&current, &d.change, "hr", "E1", &s.catalog, &src.actor())
                .unwrap();
        let view = mem(vec![current.clone()]);
        let p = plan(&src, RunKind::Full, &[m.clone()], &[], &view).unwrap();
        assert_eq!(p.items[0].action, Action::Unchanged, "{:?}", p.items[0]);
        assert_eq!(view.1.load(std::sync::atomic::Ordering::Relaxed), 1);
        let (id, version, fp) = p.stable[0];
        assert_eq!((id, version), (current.id, current.version));
        assert_eq!(
            fp.until,
            m.termination.map(|t| t.at),
            "holds until the termination"
        );
        let marks = [(id, version, fp)];
        // Second plan: no read at all.
        let src = s.src("hr", now);
        let view = mem(vec![current.clone()]);
        view.set_marks("hr", &marks);
        let p = plan(&src, RunKind::Full, &[m.clone()], &[], &view).unwrap();
        assert_eq!(p.items[0].action, Action::Unchanged);
        assert_eq!(
            (
                view.1.load(std::sync::atomic::Ordering::Relaxed),
                p.linked_active
            ),
            (0, 1)
        );
        // A changed entry, a changed profile, a date reached: read again.
        let mut changed = m.clone();
        changed.fields.given_name = Some("Anna".into());
        let p = plan(&src, RunKind::Full, &[changed], &[], &view).unwrap();
        assert_eq!(p.items[0].action, Action::Update);
        let mut edited = current.clone();
        edited.version += 1;
        edited.given_name = "Annie".into();
        let view = mem(vec![edited]);
        view.set_marks("hr", &marks);
        let p = plan(&src, RunKind::Full, &[m.clone()], &[], &view).unwrap();
        assert_eq!(
            p.items[0].action,
            Action::Update,
            "an admin edit is overwritten"
        );
        let later = s.src("hr", Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
        let view = mem(vec![current]);
        view.set_marks("hr", &marks);
        let p = plan(&later, RunKind::Full, &[m], &[], &view).unwrap();
        assert_eq!(
            p.items[0].action,
            Action::Deactivate,
            "the termination date passed"
        );
    }

    /// Reading the roster in bulk (the marks, the email index, the profiles a
    /// window of entries compares) makes the plan one read per entry makes:
    /// marks that hold and that do not, an email joined in another case, an
    /// employee number, a duplicate key, absentees, new entries.
    #[test]
    fn bulk_reads_make_the_same_plan_as_reads_per_entry() {
        let s = Setup::new();
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
        let src = s.src("hr", now);
        let n = 2500;
        let people: Vec<Employee> = (0..n)
            .map(|i| {
                let links: &[(&str, &str)] = &[("hr", &format!("E{i}"))];
                let mut e = match i % 5 {
                    // Not linked: joined by email, or by employee number.
                    3 => profile(&format!("p{i}@example.com"), "P", &[]),
                    4 => profile(&format!("old{i}@example.com"), "P", &[]),
                    _ => profile(&format!("p{i}@example.com"), "P", links),
                };
                e.enterprise.employee_number = Some(format!("N{i}"));
                // Every 7th has a phone the source changes.
                e.mobile_phone = Some(if i % 7 == 0 { "+15550199" } else { "+15550100" }.into());
                e
            })
            .collect();
        let entries: Vec<MappedEntry> = (0..n)
            .filter(|i| i % 50 != 0)
            .map(|i| {
                let email = match i {
                    _ if i % 5 == 3 && i % 2 == 0 => format!("P{i}@Example.COM"),
                    _ => format!("p{i}@example.com"),
                };
                let mut m = entry(&format!("E{i}"), &email, "P");
                m.fields.employee_number = Some(Some(format!("N{i}")));
                m
            })
            .chain([
                entry("E1", "dup@example.com", "P"),
                entry("X1", "new@example.com", "N"),
            ])
            .collect();
        // A first plan, and the marks its applied run leaves (on some).
        let view = mem(people);
        let first = plan_with(&src, RunKind::Full, &entries, &[], &view, Reads::PerEntry).unwrap();
        let marks: Vec<_> = first.stable.iter().copied().step_by(2).collect();
        assert!(marks.len() > 100, "{}", marks.len());
        view.set_marks("hr", &marks);
        let reads = || view.1.swap(0, std::sync::atomic::Ordering::Relaxed);
        reads();
        let per_entry =
            plan_with(&src, RunKind::Full, &entries, &[], &view, Reads::PerEntry).unwrap();
        let reads_per_entry = reads();
        let bulk = plan_with(&src, RunKind::Full, &entries, &[], &view, Reads::Bulk).unwrap();
        assert_eq!(per_entry, bulk);
        let c = &bulk.counts;
        assert!(
            c.unchanged > 1000 && c.updated > 100 && c.deactivated >= 30,
            "{c:?}"
        );
        assert_eq!((c.created, c.errors), (1, 1), "{c:?}");
        // Both read the same profiles (in bulk, as many), but for the one of
        // the duplicate key, read ahead and not used.
        let reads_bulk = reads();
        assert!(
            (reads_per_entry..=reads_per_entry + 1).contains(&reads_bulk),
            "{reads_per_entry} {reads_bulk}"
        );
    }

    #[test]
    fn fingerprints_round_trip_through_bytes() {
        for until in [
            None,
            Some(Utc.with_ymd_and_hms(2026, 12, 31, 23, 0, 0).unwrap()),
        ] {
            let fp = Fingerprint {
                hash: u64::MAX - 3,
                active: until.is_some(),
                until,
            };
            assert_eq!(Fingerprint::from_bytes(&fp.to_bytes()), Some(fp));
        }
        assert_eq!(Fingerprint::from_bytes(b"short"), None);
    }
}
