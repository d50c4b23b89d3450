//! The roster's in-memory projection: the filterable and sortable fields of
//! every profile, folded the way the filters compare them, so that a list,
//! a search or a count costs a pass over compact rows instead of decoding every
//! stored profile. Only the page a client asked for is read from the store.
//!
//! Built once at start, in the same pass over the store that classifies
//! profiles as active ([`Projection::build`]), and kept exact on every write:
//! each of the domain's commit sites calls [`Projection::put`] or
//! [`Projection::remove`] after the store accepted the write. Two writes of the
//! same profile may finish out of order (each commits, then updates the
//! projection): a row keeps its profile's version and an older one is ignored;
//! a removed id is tombstoned (ids are UUID v7 and never reused), so a late
//! update cannot bring it back.
//!
//! Each row also holds the profile's sync links (the owning source is picked
//! with the sources' priority order, as `rosterctl employees explain` does) and
//! the state of the last invitation or reset mail, which the mail worker
//! updates as it delivers ([`Projection::mail`]).
//!
//! Layout: rows sorted by id in one vector (new ids append), each row's folded
//! texts in one allocation, and the catalog-bound names (roles, business units,
//! positions, source ids) interned as numbers.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use uuid::Uuid;

use super::model::{AccountStatus, Employee};
use super::validate::fold;
use crate::store::{DeliveryState, OutboxRecord};

/// The state of a profile's last invitation or reset mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MailStatus {
    /// Waiting to be sent (or to be tried again after a failed attempt).
    Queued,
    /// Accepted by the SMTP server.
    Sent,
    /// Given up after the last attempt (`rosterctl outbox list --dead`).
    Failed,
    /// Not sent: it no longer applied (a newer link, a new address, the account set up).
    Skipped,
}

impl MailStatus {
    pub const ALL: [MailStatus; 4] = [
        MailStatus::Queued,
        MailStatus::Sent,
        MailStatus::Failed,
        MailStatus::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MailStatus::Queued => "queued",
            MailStatus::Sent => "sent",
            MailStatus::Failed => "failed",
            MailStatus::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    fn of(state: DeliveryState) -> Self {
        match state {
            DeliveryState::Pending => MailStatus::Queued,
            DeliveryState::Sent => MailStatus::Sent,
            DeliveryState::Dead => MailStatus::Failed,
            DeliveryState::Skipped => MailStatus::Skipped,
        }
    }
}

/// The last message of a profile and its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mail {
    message: u64,
    status: MailStatus,
}

/// No interned name (no business unit).
const NONE: u32 = u32::MAX;
/// The version of a removed profile: no write is newer.
const REMOVED: u64 = u64::MAX;

const ACTIVE: u8 = 1;
const ENABLED: u8 = 2;
const DISPLAY_DERIVED: u8 = 4;

/// One profile's projected fields.
#[derive(Debug)]
struct Row {
    id: Uuid,
    version: u64,
    flags: u8,
    account_status: AccountStatus,
    /// Folded username, email, given, family and display name, one after the other.
    text: Box<str>,
    /// Where each of the five texts ends in `text`.
    ends: [u32; 5],
    external_id: Option<Box<str>>,
    role: u32,
    business_unit: u32,
    positions: Box<[u32]>,
    /// The sources the profile is linked to (interned ids).
    sources: Box<[u32]>,
    mail: Option<Mail>,
    created_at: i64,
    updated_at: i64,
}

/// Interned names: the text as given and folded.
#[derive(Debug, Default)]
struct Names {
    all: Vec<(Box<str>, Box<str>)>,
    index: HashMap<Box<str>, u32>,
}

impl Names {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(i) = self.index.get(s) {
            return *i;
        }
        let i = self.all.len() as u32;
        self.all.push((s.into(), fold(s).into()));
        self.index.insert(s.into(), i);
        i
    }

    fn get(&self, i: u32) -> Option<&(Box<str>, Box<str>)> {
        self.all.get(i as usize)
    }

    fn original(&self, i: u32) -> &str {
        self.get(i).map(|(o, _)| &**o).unwrap_or("")
    }

    fn folded(&self, i: u32) -> &str {
        self.get(i).map(|(_, f)| &**f).unwrap_or("")
    }

    fn bytes(&self) -> usize {
        self.all
            .iter()
            .map(|(o, f)| 2 * o.len() + f.len() + 2 * 16 + 8)
            .sum()
    }
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    rows: Vec<Row>,
    names: Names,
    /// Mail states that arrived before their profile's row (a write whose
    /// projection update had not run yet); taken when the row comes.
    early_mail: HashMap<Uuid, Mail>,
    /// Sources by priority, highest first (the owner is the first linked).
    priority: Vec<u32>,
    removed: usize,
}

/// Nanoseconds since the epoch (sort keys; saturates far outside any real date).
fn nanos(t: &chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

impl Inner {
    fn at(&self, id: &Uuid) -> Result<usize, usize> {
        match self.rows.last() {
            Some(last) if last.id < *id => Err(self.rows.len()),
            _ => self.rows.binary_search_by(|r| r.id.cmp(id)),
        }
    }

    fn row_of(&mut self, e: &Employee) -> Row {
        let texts = [
            fold(&e.username),
            fold(&e.email),
            fold(&e.given_name),
            fold(&e.family_name),
            fold(&e.display_name),
        ];
        let mut text = String::with_capacity(texts.iter().map(String::len).sum());
        let mut ends = [0u32; 5];
        for (i, t) in texts.iter().enumerate() {
            text.push_str(t);
            ends[i] = text.len() as u32;
        }
        let mut flags = 0;
        if e.active {
            flags |= ACTIVE;
        }
        if e.enabled {
            flags |= ENABLED;
        }
        if e.display_name_derived {
            flags |= DISPLAY_DERIVED;
        }
        Row {
            id: e.id.0,
            version: e.version,
            flags,
            account_status: e.account_status,
            text: text.into_boxed_str(),
            ends,
            external_id: e.external_id.as_deref().map(Into::into),
            role: self.names.intern(&e.role),
            business_unit: match &e.business_unit {
                Some(b) => self.names.intern(b),
                None => NONE,
            },
            positions: e.positions.iter().map(|p| self.names.intern(p)).collect(),
            sources: e.source_keys.keys().map(|s| self.names.intern(s)).collect(),
            mail: None,
            created_at: nanos(&e.created_at),
            updated_at: nanos(&e.updated_at),
        }
    }

    fn put(&mut self, e: &Employee, queued: Option<u64>) {
        let mut row = self.row_of(e);
        match self.at(&e.id.0) {
            Ok(i) => {
                let old = &self.rows[i];
                if old.version >= row.version {
                    // A newer write (or the removal) got here first; only a
                    // newer message of this older write still counts.
                    if old.version != REMOVED
                        && let Some(m) = queued
                    {
                        let r = &mut self.rows[i];
                        queue(&mut r.mail, m);
                    }
                    return;
                }
                row.mail = old.mail;
                if let Some(m) = queued {
                    queue(&mut row.mail, m);
                }
                self.rows[i] = row;
            }
            Err(i) => {
                row.mail = self.early_mail.remove(&row.id);
                if let Some(m) = queued {
                    queue(&mut row.mail, m);
                }
                self.rows.insert(i, row);
            }
        }
    }

    fn remove(&mut self, id: Uuid) {
        match self.at(&id) {
            Ok(i) => {
                let r = &mut self.rows[i];
                if r.version != REMOVED {
                    r.version = REMOVED;
                    r.text = "".into();
                    r.positions = Box::new([]);
                    r.sources = Box::new([]);
                    r.external_id = None;
                    r.mail = None;
                    self.removed += 1;
                }
            }
            Err(i) => {
                // Removed before its creation reached the projection.
                self.early_mail.remove(&id);
                let r = Row {
                    id,
                    version: REMOVED,
                    flags: 0,
                    account_status: AccountStatus::Later,
                    text: "".into(),
                    ends: [0; 5],
                    external_id: None,
                    role: NONE,
                    business_unit: NONE,
                    positions: Box::new([]),
                    sources: Box::new([]),
                    mail: None,
                    created_at: 0,
                    updated_at: 0,
                };
                self.rows.insert(i, r);
                self.removed += 1;
            }
        }
    }

    fn mail(&mut self, m: &OutboxRecord) {
        let mail = Mail {
            message: m.id,
            status: MailStatus::of(m.state),
        };
        match self.at(&m.employee_id) {
            Ok(i) => {
                let r = &mut self.rows[i];
                if r.version == REMOVED {
                    return;
                }
                // A delivery update of the last message (or of a newer one).
                if r.mail.is_none_or(|old| old.message <= mail.message) {
                    r.mail = Some(mail);
                }
            }
            Err(_) => {
                let slot = self.early_mail.entry(m.employee_id).or_insert(mail);
                if slot.message <= mail.message {
                    *slot = mail;
                }
            }
        }
    }
}

/// A message queued by a write: it becomes the last one unless the row already
/// knows it (its delivery state may have arrived first) or a newer one.
fn queue(mail: &mut Option<Mail>, message: u64) {
    if mail.is_none_or(|old| old.message < message) {
        *mail = Some(Mail {
            message,
            status: MailStatus::Queued,
        });
    }
}

/// One projected profile, as filters and sorts read it. Texts are folded
/// (lowercased as [`fold`] does) except where said.
pub struct Projected<'a> {
    row: &'a Row,
    names: &'a Names,
    priority: &'a [u32],
}

impl<'a> Projected<'a> {
    fn text(&self, i: usize) -> &'a str {
        let start = if i == 0 { 0 } else { self.row.ends[i - 1] } as usize;
        let end = self.row.ends[i] as usize;
        self.row.text.get(start..end).unwrap_or("")
    }
    pub fn id(&self) -> Uuid {
        self.row.id
    }
    pub fn version(&self) -> u64 {
        self.row.version
    }
    pub fn username(&self) -> &'a str {
        self.text(0)
    }
    pub fn email(&self) -> &'a str {
        self.text(1)
    }
    pub fn given_name(&self) -> &'a str {
        self.text(2)
    }
    pub fn family_name(&self) -> &'a str {
        self.text(3)
    }
    pub fn display_name(&self) -> &'a str {
        self.text(4)
    }
    /// Whether the display name was derived from the name parts.
    pub fn display_name_derived(&self) -> bool {
        self.row.flags & DISPLAY_DERIVED != 0
    }
    pub fn active(&self) -> bool {
        self.row.flags & ACTIVE != 0
    }
    pub fn enabled(&self) -> bool {
        self.row.flags & ENABLED != 0
    }
    pub fn account_status(&self) -> AccountStatus {
        self.row.account_status
    }
    /// As stored (not folded).
    pub fn external_id(&self) -> Option<&'a str> {
        self.row.external_id.as_deref()
    }
    /// As stored (not folded).
    pub fn role(&self) -> &'a str {
        self.names.original(self.row.role)
    }
    pub fn role_folded(&self) -> &'a str {
        self.names.folded(self.row.role)
    }
    pub fn business_unit_folded(&self) -> Option<&'a str> {
        (self.row.business_unit != NONE).then(|| self.names.folded(self.row.business_unit))
    }
    pub fn positions_folded(&self) -> impl Iterator<Item = &'a str> + 'a {
        let names = self.names;
        self.row.positions.iter().map(move |p| names.folded(*p))
    }
    /// The sources the profile is linked to, as configured ids.
    pub fn sources(&self) -> impl Iterator<Item = &'a str> + 'a {
        let names = self.names;
        self.row.sources.iter().map(move |p| names.original(*p))
    }
    /// The sync source that owns the profile: of the configured sources it is
    /// linked to, the one of highest priority (as `rosterctl employees explain`
    /// orders them). `None`: no configured source.
    pub fn owner(&self) -> Option<&'a str> {
        self.priority
            .iter()
            .find(|s| self.row.sources.contains(s))
            .map(|s| self.names.original(*s))
    }
    /// The state of the last invitation or reset mail, if one was queued.
    pub fn mail_status(&self) -> Option<MailStatus> {
        self.row.mail.map(|m| m.status)
    }
    pub fn created_at_nanos(&self) -> i64 {
        self.row.created_at
    }
    pub fn updated_at_nanos(&self) -> i64 {
        self.row.updated_at
    }
}

/// A read of the projection (a read lock held while it lives: keep it short and
/// never across an `.await`).
pub struct Snapshot<'a> {
    inner: RwLockReadGuard<'a, Inner>,
}

impl Snapshot<'_> {
    /// Every live profile, in id order.
    pub fn iter(&self) -> impl Iterator<Item = Projected<'_>> + '_ {
        let inner = &*self.inner;
        inner
            .rows
            .iter()
            .filter(|r| r.version != REMOVED)
            .map(move |row| Projected {
                row,
                names: &inner.names,
                priority: &inner.priority,
            })
    }

    /// One live profile by id.
    pub fn get(&self, id: Uuid) -> Option<Projected<'_>> {
        let inner = &*self.inner;
        let i = inner.at(&id).ok()?;
        let row = &inner.rows[i];
        (row.version != REMOVED).then_some(Projected {
            row,
            names: &inner.names,
            priority: &inner.priority,
        })
    }

    /// How many live profiles there are.
    pub fn len(&self) -> usize {
        self.inner.rows.len() - self.inner.removed
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Collects rows during the start-up pass (called from the store's
/// classification closure, hence `&self`).
#[derive(Default)]
pub(super) struct Builder {
    inner: std::sync::Mutex<Inner>,
}

impl Builder {
    pub(super) fn add(&self, e: &Employee) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let row = inner.row_of(e);
        inner.rows.push(row);
    }

    /// The projection, with each profile's last message from `outbox`.
    pub(super) fn finish(self, outbox: impl IntoIterator<Item = OutboxRecord>) -> Projection {
        let mut inner = self
            .inner
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        inner.rows.sort_by_key(|r| r.id);
        inner.rows.dedup_by_key(|r| r.id);
        for m in outbox {
            inner.mail(&m);
        }
        inner.early_mail.clear();
        Projection {
            inner: Arc::new(RwLock::new(inner)),
        }
    }
}

/// The projection handle the roster holds (cheap to clone).
#[derive(Clone, Default)]
pub struct Projection {
    inner: Arc<RwLock<Inner>>,
}

/// What the projection holds, for the benchmark's memory figure.
#[derive(Debug, Clone, Copy)]
pub struct Footprint {
    pub rows: usize,
    /// Bytes of the rows and what they point to (allocator overhead aside).
    pub bytes: usize,
}

impl Projection {
    /// From every stored profile and every queued message (their last state
    /// counts), in one pass each.
    #[cfg(test)]
    pub(crate) fn build(
        profiles: impl IntoIterator<Item = Employee>,
        outbox: impl IntoIterator<Item = OutboxRecord>,
    ) -> Self {
        let b = Builder::default();
        for e in profiles {
            b.add(&e);
        }
        b.finish(outbox)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// A consistent read of every row.
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            inner: self.inner.read().unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// A profile as committed, with the message its write queued (if any).
    /// Ignored when the row already has this version or a newer one.
    pub(super) fn put(&self, e: &Employee, outbox: &[OutboxRecord]) {
        let queued = outbox.iter().map(|m| m.id).max();
        self.write().put(e, queued);
    }

    /// A profile removed for good.
    pub(super) fn remove(&self, id: Uuid) {
        self.write().remove(id);
    }

    /// A message's delivery state changed (the mail worker, a retry).
    pub(super) fn mail(&self, m: &OutboxRecord) {
        self.write().mail(m);
    }

    /// The configured sources in priority order, highest first (decides which
    /// linked source owns a profile).
    pub(super) fn set_priority(&self, ids: &[String]) {
        let mut inner = self.write();
        let order: Vec<u32> = ids.iter().map(|s| inner.names.intern(s)).collect();
        inner.priority = order;
    }

    /// The rows and the bytes they take.
    pub fn footprint(&self) -> Footprint {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let per_row = std::mem::size_of::<Row>();
        let heap: usize = inner
            .rows
            .iter()
            .map(|r| {
                r.text.len()
                    + r.external_id.as_ref().map_or(0, |x| x.len())
                    + 4 * (r.positions.len() + r.sources.len())
            })
            .sum();
        Footprint {
            rows: inner.rows.len(),
            bytes: inner.rows.capacity() * per_row + heap + inner.names.bytes(),
        }
    }
}

/// A sort key read from a row without copying where it can.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key<'a> {
    Text(Cow<'a, str>),
    Time(i64),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::employee::fixtures;
    use chrono::Utc;

    fn person(name: &str) -> Employee {
        let mut e = fixtures::employee(name, "Lee", &format!("{name}@Example.com"));
        e.display_name_derived = true;
        e.positions = vec!["Driver".into()];
        e
    }

    fn message(id: u64, e: &Employee, state: DeliveryState) -> OutboxRecord {
        let now = Utc::now();
        OutboxRecord {
            id,
            kind: crate::store::MessageKind::Invite,
            employee_id: e.id.0,
            to: e.email.clone(),
            name: e.display_name.clone(),
            expires_at: now,
            state,
            attempts: 0,
            created_at: now,
            next_attempt_at: now,
            last_error: None,
            sent_at: None,
        }
    }

    fn names(p: &Projection) -> Vec<(String, bool)> {
        p.snapshot()
            .iter()
            .map(|r| (r.display_name().to_string(), r.active()))
            .collect()
    }

    #[test]
    fn writes_finishing_out_of_order_keep_the_newest_version() {
        let p = Projection::build(vec![], vec![]);
        let mut a = person("Ada");
        p.put(&a, &[]);
        let v1 = a.clone();
        a.version = 2;
        a.display_name = "Ada Two".into();
        let v2 = a.clone();
        a.version = 3;
        a.active = false;
        let v3 = a.clone();
        // Commit order 1, 2, 3; projection updates arrive 1, 3, 2.
        p.put(&v3, &[]);
        p.put(&v2, &[]);
        p.put(&v1, &[]);
        assert_eq!(names(&p), vec![("ada two".to_string(), false)]);
        // Removed: a late update does not bring it back.
        p.remove(a.id.0);
        p.put(&v3, &[]);
        assert!(names(&p).is_empty());
        assert_eq!(p.snapshot().len(), 0);
        // Removed before its creation arrived.
        let b = person("Bob");
        p.remove(b.id.0);
        p.put(&b, &[]);
        assert!(names(&p).is_empty());
    }

    #[test]
    fn mail_state_follows_the_last_message_in_any_order() {
        let p = Projection::build(vec![], vec![]);
        let a = person("Ada");
        let status = |p: &Projection| p.snapshot().iter().next().and_then(|r| r.mail_status());
        // The worker's update of message 7 arrives before the write that queued it.
        p.mail(&message(7, &a, DeliveryState::Sent));
        p.put(&a, &[message(7, &a, DeliveryState::Pending)]);
        assert_eq!(status(&p), Some(MailStatus::Sent));
        // A newer message (8) is queued, then fails; a late update of 7 changes nothing.
        let mut a2 = a.clone();
        a2.version = 2;
        p.put(&a2, &[message(8, &a, DeliveryState::Pending)]);
        assert_eq!(status(&p), Some(MailStatus::Queued));
        p.mail(&message(8, &a, DeliveryState::Dead));
        p.mail(&message(7, &a, DeliveryState::Sent));
        assert_eq!(status(&p), Some(MailStatus::Failed));
        // A retry makes it queued again; a later write without a message keeps it.
        p.mail(&message(8, &a, DeliveryState::Pending));
        let mut a3 = a2.clone();
        a3.version = 3;
        p.put(&a3, &[]);
        assert_eq!(status(&p), Some(MailStatus::Queued));
        // Built from the outbox at start: the last message per profile.
        let b = person("Bob");
        let p = Projection::build(
            vec![b.clone()],
            vec![
                message(1, &b, DeliveryState::Sent),
                message(2, &b, DeliveryState::Skipped),
            ],
        );
        assert_eq!(status(&p), Some(MailStatus::Skipped));
    }

    #[test]
    fn the_owner_is_the_linked_source_of_highest_priority() {
        let p = Projection::build(vec![], vec![]);
        let mut a = person("Ada");
        a.source_keys.insert("hr".into(), "1".into());
        a.source_keys.insert("ldap".into(), "x".into());
        p.put(&a, &[]);
        let owner = |p: &Projection| {
            p.snapshot()
                .iter()
                .next()
                .and_then(|r| r.owner().map(str::to_string))
        };
        assert_eq!(owner(&p), None, "no configured source");
        p.set_priority(&["ldap".into(), "hr".into()]);
        assert_eq!(owner(&p).as_deref(), Some("ldap"));
        p.set_priority(&["hr".into(), "ldap".into()]);
        assert_eq!(owner(&p).as_deref(), Some("hr"));
        p.set_priority(&["csv".into()]);
        assert_eq!(owner(&p), None, "linked sources no longer configured");
    }
}
