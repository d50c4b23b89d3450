//! The account lifecycle: invitation and password-reset links, accepting them,
//! and signing in. Asking for a link ([`Roster::queue_link`]) writes the intent to
//! the outbox in the same transaction as the change, and retires the profile's
//! live link at once. The mail worker mints the token as it sends
//! ([`Roster::mint_link`]): 256 random bits, of which only the SHA-256 digest is
//! stored (on the profile, and as the `account_token` index key to find the
//! profile), so no working token is ever in the store's files. A token works once
//! and expires; a newer link replaces the older one, and so does an email change.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use tracing::instrument;

use super::{
    AccountStatus, AccountToken, BulkOutcome, Employee, EmployeeId, Error, Roster, TokenPurpose,
    check_bulk_size, each_id, validate,
};
use crate::secret::{Secret, random_token, token_digest};
use crate::store::{
    Actor, ActorKind, AuditAction, DeliveryState, IndexKind, MessageKind, OutboxRecord,
};

/// The clock an account link's issue and expiry are read from: the wall clock
/// ([`Clock::system`], what the daemon uses), or one a test moves forward to see
/// a link expire without waiting for it ([`Clock::new`] over its own `now`).
/// The outbox's retry times stay on the wall clock: they are the mail worker's.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The wall clock (`Utc::now`).
    pub fn system() -> Self {
        Clock(Arc::new(Utc::now))
    }

    /// A clock that reads `now`.
    pub fn new(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Clock(Arc::new(now))
    }

    /// The time now, by this clock.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// What can go wrong on an account endpoint.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The link's token is unknown, used, superseded or expired (one answer for all).
    #[error("this link is invalid, expired or already used; ask for a new one")]
    InvalidToken,
    /// Wrong login or password (one answer whether or not the account exists).
    #[error("wrong login or password")]
    Unauthorized,
    /// The credentials are right but the account may not sign in.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Domain(#[from] Error),
}

/// A bulk account action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendKind {
    Invite,
    PasswordReset,
}

/// What [`Roster::outbox_retry`] found.
#[derive(Debug)]
pub enum RetryError {
    NotFound(u64),
    AlreadySent(u64),
    Domain(Error),
}

impl Roster {
    /// The roster with `clock` for its account links' issue and expiry (the
    /// system clock unless set).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Queues a fresh invite or reset link for `e`: the profile's live link (if
    /// any) stops working at once, and the message is the intent only (no token:
    /// the worker mints it when it sends, see [`Roster::mint_link`]). The caller
    /// commits both in one transaction.
    pub(super) fn queue_link(
        &self,
        e: &mut Employee,
        purpose: TokenPurpose,
    ) -> Result<OutboxRecord, Error> {
        let expires_at = self.clock.now() + self.link_ttl(purpose);
        // When the worker may send it: the worker's (wall) clock.
        let now = Utc::now();
        let id = self.store.next_id()?;
        e.account_token = Some(AccountToken {
            purpose,
            digest: None,
            expires_at,
            message: Some(id),
        });
        Ok(OutboxRecord {
            id,
            kind: message_kind(purpose),
            employee_id: e.id.0,
            to: e.email.clone(),
            name: e.display_name.clone(),
            expires_at,
            state: DeliveryState::Pending,
            attempts: 0,
            created_at: now,
            next_attempt_at: now,
            last_error: None,
            sent_at: None,
        })
    }

    fn link_ttl(&self, purpose: TokenPurpose) -> chrono::Duration {
        let ttl = match purpose {
            TokenPurpose::Invite => self.token_lifetimes.invite,
            TokenPurpose::PasswordReset => self.token_lifetimes.reset,
        };
        chrono::Duration::from_std(ttl).unwrap_or_else(|_| chrono::Duration::days(7))
    }

    /// The mail worker, about to send `m`: mints its link's token and stores only
    /// the token's SHA-256 digest on the profile (replacing the link of an earlier
    /// attempt), audited as `system:rosterd` `mail_link`. `None` when the message
    /// no longer applies: a newer message replaced it, the address changed, the
    /// account was set up or deleted meanwhile, or it waited past its link's
    /// lifetime. Not flushed: the worker flushes before it sends.
    pub fn mint_link(&self, m: &OutboxRecord) -> Result<Option<(Secret, DateTime<Utc>)>, Error> {
        let purpose = match m.kind {
            MessageKind::Invite => TokenPurpose::Invite,
            MessageKind::PasswordReset => TokenPurpose::PasswordReset,
        };
        let now = self.clock.now();
        let token = random_token();
        let digest = hex::encode(token_digest(token.expose()));
        let expires_at = now + self.link_ttl(purpose);
        let r = self.modify(
            &Actor::system(),
            EmployeeId(m.employee_id),
            AuditAction::MailLink,
            None,
            Default::default(),
            |e, _| {
                if !awaits(e, m, purpose, now) {
                    return Err(Error::NotFound("the message no longer applies".into()));
                }
                e.account_token = Some(AccountToken {
                    purpose,
                    digest: Some(digest.clone()),
                    expires_at,
                    message: Some(m.id),
                });
                Ok(())
            },
        );
        match r {
            Ok(_) => Ok(Some((token, expires_at))),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Why `e` cannot get this message, if it cannot.
    fn refusal(e: &Employee, kind: SendKind) -> Option<String> {
        if !e.active {
            return Some(format!(
                "{} is inactive; activate the profile first",
                e.email
            ));
        }
        match kind {
            SendKind::Invite if e.password_hash.is_some() => Some(format!(
                "{}'s account is already set up; send a password reset instead",
                e.email
            )),
            SendKind::PasswordReset if e.password_hash.is_none() => Some(format!(
                "{}'s account is not set up yet; send an invite instead",
                e.email
            )),
            _ => None,
        }
    }

    /// Sends an invite or a password reset to many profiles. Each id succeeds or is
    /// refused on its own, with the reason (invite to an account already set up,
    /// anything to an inactive profile, ...). With `dry_run`, nothing is written.
    #[instrument(skip_all, fields(actor = %actor, count = ids.len(), kind = ?kind))]
    pub async fn bulk_send(
        &self,
        actor: &Actor,
        ids: &[String],
        kind: SendKind,
        dry_run: bool,
    ) -> Result<Vec<BulkOutcome>, Error> {
        check_bulk_size(ids)?;
        let (action, purpose) = match kind {
            SendKind::Invite => (AuditAction::SendInvite, TokenPurpose::Invite),
            SendKind::PasswordReset => {
                (AuditAction::SendPasswordReset, TokenPurpose::PasswordReset)
            }
        };
        let one = |id| {
            let e = self.get(id)?;
            if let Some(why) = Self::refusal(&e, kind) {
                return Err(Error::Invalid {
                    field: "id".into(),
                    message: why,
                });
            }
            if dry_run {
                return Ok(true);
            }
            self.modify_with(
                actor,
                id,
                action,
                None,
                crate::store::PhotoChange::Keep,
                |e, _| {
                    if let Some(why) = Self::refusal(e, kind) {
                        return Err(Error::Invalid {
                            field: "id".into(),
                            message: why,
                        });
                    }
                    if kind == SendKind::Invite {
                        e.account_status = AccountStatus::Invite;
                    }
                    Ok(vec![self.queue_link(e, purpose)?])
                },
            )
            .map(|_| true)
        };
        // A refusal is said without its field (the field is the id).
        let why = |e: Error| match e {
            Error::Invalid { message, .. } => message,
            e => e.to_string(),
        };
        let out = each_id(ids, one, why)?;
        self.store.flush().await?;
        Ok(out)
    }

    /// Whether `token` is a live invitation (`invite`) or reset link, without
    /// using it up: the web pages say at once when a link no longer works.
    pub fn link_is_live(&self, token: &Secret, invite: bool) -> Result<bool, Error> {
        let purpose = if invite {
            TokenPurpose::Invite
        } else {
            TokenPurpose::PasswordReset
        };
        match self.by_token(token, purpose) {
            Ok(e) => Ok(e.active),
            Err(AccountError::Domain(Error::Store(e))) => Err(Error::Store(e)),
            Err(_) => Ok(false),
        }
    }

    /// The profile holding a live token of `purpose`.
    fn by_token(&self, token: &Secret, purpose: TokenPurpose) -> Result<Employee, AccountError> {
        let digest = hex::encode(token_digest(token.expose().trim()));
        let id = self
            .store
            .lookup(&IndexKind::AccountToken, &digest)
            .map_err(Error::from)?
            .ok_or(AccountError::InvalidToken)?;
        let e = self.get(EmployeeId(id))?;
        check_token(&e, &digest, purpose, self.clock.now())?;
        Ok(e)
    }

    /// Accepts an invitation: sets the username and password, marks the account
    /// set up, and uses up the token.
    #[instrument(skip_all)]
    pub async fn accept_invite(
        &self,
        token: &Secret,
        username: &str,
        password: &Secret,
    ) -> Result<Employee, AccountError> {
        let e = self
            .use_link(token, TokenPurpose::Invite, password, Some(username))
            .await?;
        tracing::info!(employee = %e.id, "invitation accepted");
        Ok(e)
    }

    /// Sets a new password with a reset token, and uses up the token.
    #[instrument(skip_all)]
    pub async fn reset_password(
        &self,
        token: &Secret,
        password: &Secret,
    ) -> Result<Employee, AccountError> {
        let e = self
            .use_link(token, TokenPurpose::PasswordReset, password, None)
            .await?;
        tracing::info!(employee = %e.id, "password reset");
        Ok(e)
    }

    /// Uses up a live link of `purpose` on an active profile: the employee, as
    /// its own actor, sets a password (and, accepting an invitation, the
    /// username); the account is set up and the token gone, in one audited
    /// write.
    async fn use_link(
        &self,
        token: &Secret,
        purpose: TokenPurpose,
        password: &Secret,
        username: Option<&str>,
    ) -> Result<Employee, AccountError> {
        let e = self.by_token(token, purpose)?;
        if !e.active {
            return Err(AccountError::Forbidden(
                "this profile is inactive; ask an administrator".into(),
            ));
        }
        let username = username.map(validate::username).transpose()?;
        let hash = self.hash_password(password).await?;
        let digest = hex::encode(token_digest(token.expose().trim()));
        let actor = self_actor(e.id);
        let action = match purpose {
            TokenPurpose::Invite => AuditAction::AcceptInvite,
            TokenPurpose::PasswordReset => AuditAction::ResetPassword,
        };
        let (e, _) = self
            .modify(&actor, e.id, action, None, Default::default(), |e, _| {
                check_token(e, &digest, purpose, self.clock.now())
                    .map_err(|_| Error::NotFound("token".into()))?;
                if let Some(u) = &username {
                    e.username = u.clone();
                }
                e.password_hash = Some(hash.clone());
                e.account_status = AccountStatus::Credentials;
                e.account_token = None;
                Ok(())
            })
            .map_err(token_gone)?;
        self.store.flush().await.map_err(Error::from)?;
        Ok(e)
    }

    /// The account a login (username or email, any case) names, if any: the key
    /// of the per-account sign-in limit, so that failures by email and by
    /// username count against the same account.
    pub fn login_account(&self, login: &str) -> Result<Option<EmployeeId>, Error> {
        let folded = validate::fold(login.trim());
        if folded.is_empty() {
            return Ok(None);
        }
        for index in [IndexKind::Username, IndexKind::Email] {
            if let Some(id) = self.store.lookup(&index, &folded)? {
                return Ok(Some(EmployeeId(id)));
            }
        }
        Ok(None)
    }

    /// Checks a login (username or email) and password. Wrong login and wrong
    /// password give the same error after the same work (an argon2 verification
    /// against a dummy hash when there is no account). Only with the right password
    /// does the caller learn that the profile is inactive or not enabled.
    #[instrument(skip_all)]
    pub async fn login(&self, login: &str, password: &Secret) -> Result<Employee, AccountError> {
        let folded = validate::fold(login.trim());
        let mut found = None;
        if !folded.is_empty() {
            for index in [IndexKind::Username, IndexKind::Email] {
                if let Some(id) = self.store.lookup(&index, &folded).map_err(Error::from)? {
                    found = Some(self.get(EmployeeId(id))?);
                    break;
                }
            }
        }
        let hash = found
            .as_ref()
            .and_then(|e| e.password_hash.as_ref())
            .map(|h| h.0.clone());
        let has_hash = hash.is_some();
        let hash = match hash {
            Some(h) => h,
            None => dummy_hash().await,
        };
        let password = password.clone();
        let ok = tokio::task::spawn_blocking(move || {
            use argon2::password_hash::PasswordVerifier;
            argon2::Argon2::default()
                .verify_password(password.expose().as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
        .unwrap_or(false);
        let e = match found {
            Some(e) if ok && has_hash => e,
            _ => return Err(AccountError::Unauthorized),
        };
        if !e.active {
            return Err(AccountError::Forbidden(
                "this profile is inactive and cannot sign in; ask an administrator".into(),
            ));
        }
        if !e.enabled {
            return Err(AccountError::Forbidden(
                "this profile is not enabled for sign-in; ask an administrator".into(),
            ));
        }
        Ok(e)
    }

    /// Records a message's new delivery state (the mail worker): in the store
    /// (not flushed) and in the projection's mail status of its employee.
    pub fn outbox_put(&self, m: &OutboxRecord) -> Result<(), Error> {
        self.store.outbox_put(m)?;
        self.projection.mail(m);
        Ok(())
    }

    /// Outbox messages, oldest first: all of them, or only the dead ones.
    pub fn outbox(&self, dead_only: bool) -> Result<Vec<OutboxRecord>, Error> {
        Ok(self
            .store
            .outbox_all()?
            .into_iter()
            .filter(|m| !dead_only || m.state == DeliveryState::Dead)
            .collect())
    }

    /// One page of the outbox: up to `limit` messages after the id `after`,
    /// oldest first, and the cursor of the next page (`None` on the last).
    pub fn outbox_page(
        &self,
        dead_only: bool,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<OutboxRecord>, Option<u64>), Error> {
        let (items, more) = self.store.outbox_page(after, limit, &|m| {
            !dead_only || m.state == DeliveryState::Dead
        })?;
        let next = if more {
            items.last().map(|m| m.id)
        } else {
            None
        };
        Ok((items, next))
    }

    /// Makes a dead (or pending) message due now, with a fresh attempt budget.
    pub async fn outbox_retry(&self, id: u64) -> Result<OutboxRecord, RetryError> {
        let store_err = |e: crate::store::StoreError| RetryError::Domain(e.into());
        let m = loop {
            let old = self
                .store
                .outbox_get(id)
                .map_err(store_err)?
                .ok_or(RetryError::NotFound(id))?;
            if old.state == DeliveryState::Sent {
                return Err(RetryError::AlreadySent(id));
            }
            let mut m = old.clone();
            m.state = DeliveryState::Pending;
            m.attempts = 0;
            m.next_attempt_at = Utc::now();
            // The worker may be recording an attempt right now: never undo a `sent`.
            if self.store.outbox_replace(&old, &m).map_err(store_err)? {
                self.projection.mail(&m);
                break m;
            }
        };
        self.store
            .flush()
            .await
            .map_err(|e| RetryError::Domain(e.into()))?;
        tracing::info!(message = id, "outbox message queued for another attempt");
        Ok(m)
    }
}

/// The audit actor for a change the employee made through an account endpoint.
fn self_actor(id: EmployeeId) -> Actor {
    Actor {
        kind: ActorKind::Account,
        name: id.to_string(),
    }
}

fn message_kind(purpose: TokenPurpose) -> MessageKind {
    match purpose {
        TokenPurpose::Invite => MessageKind::Invite,
        TokenPurpose::PasswordReset => MessageKind::PasswordReset,
    }
}

/// Whether `e` still waits for the link `m` would carry: its link is this
/// message's (a record from before links were minted at send time carries no
/// message id: its live link of the same purpose stands for it), sent to the
/// address the profile has now, and the request has not outlived the link.
fn awaits(e: &Employee, m: &OutboxRecord, purpose: TokenPurpose, now: DateTime<Utc>) -> bool {
    let Some(t) = &e.account_token else {
        return false;
    };
    let ours = match t.message {
        Some(id) => id == m.id,
        None => t.digest.is_some(),
    };
    ours && t.purpose == purpose
        && now < t.expires_at
        && validate::fold(&e.email) == validate::fold(&m.to)
        && !(purpose == TokenPurpose::Invite && e.password_hash.is_some())
}

/// A token that vanished between the read and the write (used concurrently).
fn token_gone(e: Error) -> AccountError {
    match e {
        Error::NotFound(_) => AccountError::InvalidToken,
        other => AccountError::Domain(other),
    }
}

fn check_token(
    e: &Employee,
    digest: &str,
    purpose: TokenPurpose,
    now: DateTime<Utc>,
) -> Result<(), AccountError> {
    let Some(t) = &e.account_token else {
        return Err(AccountError::InvalidToken);
    };
    let Some(stored) = &t.digest else {
        return Err(AccountError::InvalidToken);
    };
    let (Ok(a), Ok(b)) = (hex::decode(stored), hex::decode(digest)) else {
        return Err(AccountError::InvalidToken);
    };
    let same: bool = subtle::ConstantTimeEq::ct_eq(a.as_slice(), b.as_slice()).into();
    if !same || t.purpose != purpose || now >= t.expires_at {
        return Err(AccountError::InvalidToken);
    }
    Ok(())
}

/// An argon2 hash of a random password, so that a login for an unknown account
/// costs the same as one for a known account.
async fn dummy_hash() -> String {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return h.clone();
    }
    let h = tokio::task::spawn_blocking(|| {
        use argon2::password_hash::PasswordHasher;
        argon2::Argon2::default()
            .hash_password(random_token().expose().as_bytes())
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
    .await
    .unwrap_or_default();
    DUMMY.get_or_init(|| h).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emp(token: Option<AccountToken>) -> Employee {
        let cat = crate::employee::Catalog::new(
            vec!["a".into()],
            vec![],
            vec![crate::employee::catalog::RoleDef {
                name: "R".into(),
                description: String::new(),
                permissions: vec!["a".into()],
            }],
            vec![],
            Some("R".into()),
        )
        .unwrap();
        let input = crate::employee::NewEmployee {
            given_name: "A".into(),
            family_name: "B".into(),
            email: "a@example.com".into(),
            ..Default::default()
        };
        let mut e = crate::employee::build_new(&cat, &input, None, &Actor::system()).unwrap();
        e.account_token = token;
        e
    }

    #[test]
    fn tokens_check_digest_purpose_and_expiry() {
        let now = Utc::now();
        let d = hex::encode(token_digest("tok"));
        let t = AccountToken {
            purpose: TokenPurpose::Invite,
            digest: Some(d.clone()),
            expires_at: now + chrono::Duration::seconds(10),
            message: None,
        };
        let e = emp(Some(t));
        assert!(check_token(&e, &d, TokenPurpose::Invite, now).is_ok());
        let other = hex::encode(token_digest("tok2"));
        assert!(check_token(&e, &other, TokenPurpose::Invite, now).is_err());
        assert!(check_token(&e, &d, TokenPurpose::PasswordReset, now).is_err());
        assert!(
            check_token(
                &e,
                &d,
                TokenPurpose::Invite,
                now + chrono::Duration::seconds(11)
            )
            .is_err()
        );
        assert!(check_token(&emp(None), &d, TokenPurpose::Invite, now).is_err());
        assert!(!format!("{:?}", e.account_token).contains(&d));
    }

    /// A roster over a fresh store in `dir`, with one role.
    fn roster_in(dir: &std::path::Path) -> (crate::store::Store, Roster) {
        let store = crate::store::Store::open(dir).unwrap();
        let catalog = crate::employee::Catalog::new(
            vec![],
            vec![],
            vec![crate::employee::catalog::RoleDef {
                name: "R".into(),
                description: String::new(),
                permissions: vec![],
            }],
            vec![],
            Some("R".into()),
        )
        .unwrap();
        let roster = Roster::new(store.clone(), catalog, Default::default(), 64);
        (store, roster)
    }

    /// The worker's minting, without SMTP: a retry's new token supersedes the
    /// first; a newer message or an email change makes an older one stale; only
    /// digests are stored.
    #[tokio::test]
    async fn minted_links_supersede_each_other_and_die_with_the_address() {
        let dir = tempfile::tempdir().unwrap();
        let (store, roster) = roster_in(dir.path());
        let admin = Actor::admin("t");
        let e = roster
            .create(
                &admin,
                crate::employee::NewEmployee {
                    given_name: "Ann".into(),
                    family_name: "Lee".into(),
                    email: "ann@exmaple.com".into(),
                    account_status: Some(AccountStatus::Invite),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let queued = store.outbox_all().unwrap();
        assert_eq!(queued.len(), 1);
        let m = &queued[0];
        let stored = roster.get(e.id).unwrap().account_token.unwrap();
        assert_eq!((stored.digest, stored.message), (None, Some(m.id)));

        let pw = Secret::new("correct horse battery staple");
        let (first, _) = roster.mint_link(m).unwrap().unwrap();
        let (second, _) = roster.mint_link(m).unwrap().unwrap();
        assert_ne!(first.expose(), second.expose());
        let t = roster.get(e.id).unwrap().account_token.unwrap();
        assert_eq!(t.digest, Some(hex::encode(token_digest(second.expose()))));
        assert!(matches!(
            roster.accept_invite(&first, "ann", &pw).await,
            Err(AccountError::InvalidToken)
        ));

        // The address is corrected: the live link dies, a new message is queued
        // to the new address, and the old message no longer applies.
        roster
            .update(
                &admin,
                e.id,
                crate::employee::EmployeePatch {
                    email: Some("ann@example.com".into()),
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap();
        assert!(matches!(
            roster.accept_invite(&second, "ann", &pw).await,
            Err(AccountError::InvalidToken)
        ));
        assert!(
            roster.mint_link(m).unwrap().is_none(),
            "the old message is stale"
        );
        let queued = store.outbox_all().unwrap();
        let fresh = queued.iter().find(|q| q.id != m.id).unwrap();
        assert_eq!(fresh.to, "ann@example.com");
        let (third, _) = roster.mint_link(fresh).unwrap().unwrap();
        roster.accept_invite(&third, "ann", &pw).await.unwrap();
        assert!(
            roster.mint_link(fresh).unwrap().is_none(),
            "set up: nothing more to send"
        );
    }

    /// A clock that starts at the wall clock's now and moves only when told.
    fn manual_clock() -> (Clock, Arc<std::sync::Mutex<DateTime<Utc>>>) {
        let at = Arc::new(std::sync::Mutex::new(Utc::now()));
        let read = at.clone();
        (Clock::new(move || *read.lock().unwrap()), at)
    }

    fn advance(at: &std::sync::Mutex<DateTime<Utc>>, by: chrono::Duration) {
        *at.lock().unwrap() += by;
    }

    /// An invitation (7 days by default) and a password reset (1 hour) work
    /// until their lifetime on the roster's clock has passed, and not after:
    /// the clock is moved, nobody waits.
    #[tokio::test]
    async fn links_expire_by_the_roster_clock() {
        let dir = tempfile::tempdir().unwrap();
        let (store, roster) = roster_in(dir.path());
        let (clock, at) = manual_clock();
        let roster = roster.with_clock(clock);
        let admin = Actor::admin("t");
        let invited = |given: &str, email: &str| crate::employee::NewEmployee {
            given_name: given.into(),
            family_name: "Lee".into(),
            email: email.into(),
            account_status: Some(AccountStatus::Invite),
            ..Default::default()
        };
        let pw = Secret::new("correct horse battery staple");
        let message_to = |email: &str| {
            store
                .outbox_all()
                .unwrap()
                .into_iter()
                .rev()
                .find(|m| m.to == email)
                .unwrap()
        };

        // Ann's invitation, minted as it is sent, outlives its 7 days unused.
        roster
            .create(&admin, invited("Ann", "ann@example.com"))
            .await
            .unwrap();
        let (ann_link, expires) = roster
            .mint_link(&message_to("ann@example.com"))
            .unwrap()
            .unwrap();
        assert_eq!(expires, *at.lock().unwrap() + chrono::Duration::days(7));
        advance(&at, chrono::Duration::days(7));
        assert!(!roster.link_is_live(&ann_link, true).unwrap());
        assert!(matches!(
            roster.accept_invite(&ann_link, "ann", &pw).await,
            Err(AccountError::InvalidToken)
        ));

        // Bob's, queued now and sent 7 days later, is not minted: the request
        // outlived the link it would carry.
        roster
            .create(&admin, invited("Bob", "bob@example.com"))
            .await
            .unwrap();
        let bob_message = message_to("bob@example.com");
        advance(
            &at,
            chrono::Duration::days(7) + chrono::Duration::seconds(1),
        );
        assert!(roster.mint_link(&bob_message).unwrap().is_none());

        // Cat's works a second before its end.
        let cat = roster
            .create(&admin, invited("Cat", "cat@example.com"))
            .await
            .unwrap();
        let (cat_link, _) = roster
            .mint_link(&message_to("cat@example.com"))
            .unwrap()
            .unwrap();
        advance(
            &at,
            chrono::Duration::days(7) - chrono::Duration::seconds(1),
        );
        assert!(roster.link_is_live(&cat_link, true).unwrap());
        roster.accept_invite(&cat_link, "cat", &pw).await.unwrap();

        // A password reset lasts an hour.
        let out = roster
            .bulk_send(
                &admin,
                &[cat.id.to_string()],
                SendKind::PasswordReset,
                false,
            )
            .await
            .unwrap();
        assert!(out[0].ok, "{:?}", out[0]);
        let (reset, _) = roster
            .mint_link(&message_to("cat@example.com"))
            .unwrap()
            .unwrap();
        advance(&at, chrono::Duration::minutes(59));
        assert!(roster.link_is_live(&reset, false).unwrap());
        advance(&at, chrono::Duration::minutes(1));
        assert!(!roster.link_is_live(&reset, false).unwrap());
        assert!(matches!(
            roster
                .reset_password(&reset, &Secret::new("another password 42"))
                .await,
            Err(AccountError::InvalidToken)
        ));
    }

    #[test]
    fn audit_diff_hides_the_token_digest() {
        let d = hex::encode(token_digest("tok"));
        let before = emp(None);
        let mut after = before.clone();
        after.account_token = Some(AccountToken {
            purpose: TokenPurpose::Invite,
            digest: Some(d.clone()),
            expires_at: Utc::now(),
            message: Some(1),
        });
        let changes = crate::employee::diff(Some(&before), Some(&after));
        let text = serde_json::to_string(&changes).unwrap();
        assert!(text.contains("account_token") && text.contains("invite"));
        assert!(!text.contains(&d), "{text}");
    }
}
