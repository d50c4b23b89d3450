//! The domain: the employee profile, its catalogs and rules, and the operations every
//! client (admin API, SCIM, sync) goes through. [`Roster`] is the single place where
//! "email is unique", "the role comes from the catalog", "inactive cannot sign in"
//! and "every change is audited" are enforced.
//!
//! This file holds the [`Roster`] itself (its state, how it is opened), the
//! domain's [`Error`] and what several operations share. Each operation is in
//! a file of its own, every one an `impl Roster` block: `create`, `update`,
//! `activate`, `delete`, `photo`, `account` (invitations, resets, sign-in,
//! the outbox), `positions`, `synced` (what only the sync engine calls), over
//! `modify` (the read-modify-write every change goes through), `diff` (the
//! audit diff) and `password` (policy check and hashing); the reads are in
//! `read` and `list`. The domain takes plain values (`policy`), never `config`.

pub mod account;
mod activate;
pub mod catalog;
mod create;
mod delete;
mod diff;
#[cfg(test)]
pub(crate) mod fixtures;
mod follow;
pub use follow::as_one_read;
pub mod list;
pub mod model;
mod modify;
mod password;
pub mod phone;
mod photo;
pub mod policy;
pub mod positions;
pub mod projection;
mod read;
mod synced;
mod update;
pub mod validate;

use std::sync::{Arc, RwLock};

use crate::store::{PhotoChange, Store, StoreError};
pub use catalog::Catalog;
pub use list::{ListQuery, Page, SortColumn, StatusFilter};
pub use model::{
    AccountStatus, AccountToken, EffectiveDate, Employee, EmployeeId, EmployeePatch, Enterprise,
    NewEmployee, OfficePhone, PasswordHash, PermissionOverrides, Photo, PhotoBytes, SourceFacts,
    TokenPurpose,
};
pub use policy::{PasswordPolicy, PasswordRuleError, TokenLifetimes};
pub use read::parse_id;

pub use create::build_new;
pub use diff::diff;
pub use photo::{PHOTO_TYPES, sniff_photo};
pub use synced::{EmailIndex, SyncChange, preview_sync};
pub use update::preview_patch;

use activate::set_active_fields;
use diff::audit_note;
use photo::photo_write;
use update::apply_patch;

/// Most ids one bulk request may name.
pub const BULK_MAX: usize = 5000;

/// What can go wrong in a domain operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field's value breaks a rule (unknown role, bad email, weak password...).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A request that cannot be understood (bad cursor, unknown filter column...).
    #[error("{message}")]
    BadRequest {
        field: Option<String>,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    /// A unique field's value is taken by another profile.
    #[error("{field}: {message}")]
    Conflict { field: String, message: String },
    /// The profile changed since the client read it.
    #[error("the employee is at version {current}, not {expected}; read it again and retry")]
    VersionMismatch { expected: u64, current: u64 },
    #[error("photo is {size} bytes, more than the limit of {max} bytes")]
    PhotoTooLarge { size: usize, max: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The outcome of one id in a bulk operation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BulkOutcome {
    /// The id as given.
    pub id: String,
    pub ok: bool,
    /// Whether this request changed the profile (false: it already was so).
    pub changed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A bulk request names at most [`BULK_MAX`] ids.
fn check_bulk_size(ids: &[String]) -> Result<(), Error> {
    if ids.len() > BULK_MAX {
        return Err(Error::BadRequest {
            field: Some("ids".into()),
            message: format!("at most {BULK_MAX} ids per bulk request"),
        });
    }
    Ok(())
}

/// A bulk request's id that is not one.
fn not_an_id(raw: &str) -> Error {
    Error::NotFound(format!("`{raw}` is not an employee id"))
}

/// Runs `one` on each of `ids` in order, each on its own: an id that is not
/// one, or that `one` refuses, gets its outcome with the reason (`why` says
/// it) and the rest go on; a store error stops the batch. `one` answers
/// whether the profile changed.
fn each_id(
    ids: &[String],
    mut one: impl FnMut(EmployeeId) -> Result<bool, Error>,
    why: impl Fn(Error) -> String,
) -> Result<Vec<BulkOutcome>, Error> {
    let mut out = Vec::with_capacity(ids.len());
    for raw in ids {
        let r = raw
            .parse::<EmployeeId>()
            .map_err(|_| not_an_id(raw))
            .and_then(&mut one);
        out.push(match r {
            Ok(changed) => BulkOutcome::done(raw, changed),
            Err(Error::Store(e)) => return Err(Error::Store(e)),
            Err(e) => BulkOutcome::refused(raw, why(e)),
        });
    }
    Ok(out)
}

impl BulkOutcome {
    /// The id went through (`changed`: the profile changed).
    fn done(id: &str, changed: bool) -> Self {
        Self {
            id: id.to_string(),
            ok: true,
            changed,
            error: None,
        }
    }

    /// The id was refused, and why.
    fn refused(id: &str, error: String) -> Self {
        Self {
            id: id.to_string(),
            ok: false,
            changed: false,
            error: Some(error),
        }
    }
}

/// Opens the store. [`Roster::open`] then reads every profile once, to tell
/// the store which are active and to build the roster's projection.
pub fn open_store(dir: &std::path::Path) -> Result<Store, Error> {
    Ok(Store::open(dir)?)
}

/// The start-up pass: every stored profile decoded once, to classify it as
/// active for the store's counts and to project it; then each profile's last
/// message from the outbox, read a page at a time.
fn load_projection(store: &Store) -> Result<projection::Projection, Error> {
    #[derive(serde::Deserialize)]
    struct Flag {
        active: bool,
    }
    let builder = projection::Builder::default();
    store.classify(&|body| match serde_json::from_slice::<Employee>(body) {
        Ok(e) => {
            builder.add(&e);
            e.active
        }
        Err(err) => {
            tracing::error!(error = %err, "a stored profile cannot be read; it is left out of lists until it is rewritten");
            serde_json::from_slice::<Flag>(body)
                .map(|f| f.active)
                .unwrap_or(true)
        }
    })?;
    let mut messages = Vec::new();
    let mut after = None;
    loop {
        let (page, more) = store.outbox_page(after, 10_000, &|_| true)?;
        after = page.last().map(|m| m.id);
        messages.extend(page);
        if !more {
            break;
        }
    }
    Ok(builder.finish(messages))
}

/// The roster: the domain operations over the store.
#[derive(Clone)]
pub struct Roster {
    store: Store,
    catalog: Arc<RwLock<Arc<Catalog>>>,
    policy: Arc<PasswordPolicy>,
    photo_max_bytes: usize,
    /// How long invitation and reset links work.
    token_lifetimes: TokenLifetimes,
    /// The filterable and sortable fields of every profile (see [`projection`]).
    projection: projection::Projection,
    /// The stored positions by name, as of the last catalog put in force
    /// (`None` before the first): every read that renders a User's `groups`
    /// would otherwise read them all from the store.
    positions_by_name: Arc<RwLock<Option<PositionMap>>>,
    /// What account links' issue and expiry read (see [`account::Clock`]).
    clock: account::Clock,
    /// The catch-ups with the other nodes ([`follow`]).
    following: Arc<follow::Following>,
}

/// Position name → position.
pub type PositionMap = Arc<std::collections::HashMap<String, positions::Position>>;

impl Roster {
    /// The roster over a store: reads every profile once (the store's active
    /// counts and the projection). A store that cannot be read is logged and
    /// leaves the projection empty; the daemon uses [`Roster::open`], which
    /// refuses to start then.
    pub fn new(
        store: Store,
        catalog: Catalog,
        policy: PasswordPolicy,
        photo_max_bytes: usize,
    ) -> Self {
        let projection = load_projection(&store).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the store to build the roster's projection");
            projection::Projection::default()
        });
        Self::with_projection(store, catalog, policy, photo_max_bytes, projection)
    }

    /// [`Roster::new`] that fails when the store cannot be read.
    pub fn open(
        store: Store,
        catalog: Catalog,
        policy: PasswordPolicy,
        photo_max_bytes: usize,
    ) -> Result<Self, Error> {
        let projection = load_projection(&store)?;
        Ok(Self::with_projection(
            store,
            catalog,
            policy,
            photo_max_bytes,
            projection,
        ))
    }

    fn with_projection(
        store: Store,
        catalog: Catalog,
        policy: PasswordPolicy,
        photo_max_bytes: usize,
        projection: projection::Projection,
    ) -> Self {
        Self {
            store,
            catalog: Arc::new(RwLock::new(Arc::new(catalog))),
            policy: Arc::new(policy),
            photo_max_bytes,
            token_lifetimes: TokenLifetimes::default(),
            projection,
            positions_by_name: Arc::new(RwLock::new(None)),
            clock: account::Clock::system(),
            following: Arc::default(),
        }
    }

    /// The projection of every profile's filterable fields.
    pub fn projection(&self) -> &projection::Projection {
        &self.projection
    }

    /// The configured sync sources in priority order, highest first: of the
    /// sources a profile is linked to, the first owns it (the sync engine sets
    /// this at start and on every reload).
    pub fn set_source_priority(&self, ids: &[String]) {
        self.projection.set_priority(ids);
    }

    /// Sets the links' lifetimes (from `[accounts]`: `mail::config` turns its
    /// `AccountSettings` into them).
    pub fn with_accounts(mut self, lifetimes: impl Into<TokenLifetimes>) -> Self {
        self.token_lifetimes = lifetimes.into();
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The largest photo stored (`[photos] max_bytes`).
    pub fn photo_max_bytes(&self) -> usize {
        self.photo_max_bytes
    }

    /// The catalogs in force (with every node's positions, see [`follow`]).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.follow_or_log();
        self.catalog_in_force()
    }

    /// How many new profiles a sync creates per store transaction.
    pub fn create_batch(&self) -> usize {
        self.store.create_batch()
    }

    /// [`Roster::catalog`] as this node holds it, without following the
    /// other nodes first.
    fn catalog_in_force(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The permissions a profile has: its role's defaults with its overrides applied.
    pub fn effective_permissions(&self, e: &Employee) -> Vec<String> {
        validate::effective_permissions(&self.catalog(), &e.role, &e.permissions)
    }

    /// Makes every write so far durable.
    pub async fn flush(&self) -> Result<(), Error> {
        Ok(self.store.flush().await?)
    }
}

fn decode(bytes: &[u8]) -> Result<Employee, Error> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Store(StoreError::Corrupt(format!("employee record: {e}"))))
}
