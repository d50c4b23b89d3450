//! The account lifecycle: invitation and password-reset tokens, accepting them,
//! and signing in. A token is 256 random bits; only its SHA-256 digest is stored
//! (on the profile, and as the `account_token` index key to find the profile), it
//! works once, and it expires. Issuing a token writes its message to the outbox in
//! the same transaction; a newer token replaces the older one.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use tracing::instrument;

use super::{
    AccountStatus, AccountToken, BULK_MAX, BulkOutcome, Employee, EmployeeId, Error, Roster,
    TokenPurpose, validate,
};
use crate::secret::{Secret, random_token, token_digest};
use crate::store::{
    Actor, ActorKind, DeliveryState, IndexKind, MessageKind, OutboxRecord, StoredSecret,
};

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
    /// Puts a fresh token of `purpose` on `e` (replacing any older one) and builds
    /// its message. The caller commits both in one transaction.
    pub(super) fn issue_token(
        &self,
        e: &mut Employee,
        purpose: TokenPurpose,
    ) -> Result<OutboxRecord, Error> {
        let now = Utc::now();
        let ttl = match purpose {
            TokenPurpose::Invite => self.accounts.invite_ttl,
            TokenPurpose::PasswordReset => self.accounts.reset_ttl,
        };
        let expires_at =
            now + chrono::Duration::from_std(ttl).unwrap_or_else(|_| chrono::Duration::days(7));
        let token = random_token();
        e.account_token = Some(AccountToken {
            purpose,
            digest: hex::encode(token_digest(token.expose())),
            expires_at,
        });
        Ok(OutboxRecord {
            id: self.store.next_id()?,
            kind: match purpose {
                TokenPurpose::Invite => MessageKind::Invite,
                TokenPurpose::PasswordReset => MessageKind::PasswordReset,
            },
            employee_id: e.id.0,
            to: e.email.clone(),
            name: e.display_name.clone(),
            token: Some(StoredSecret::new(token.expose())),
            expires_at,
            state: DeliveryState::Pending,
            attempts: 0,
            created_at: now,
            next_attempt_at: now,
            last_error: None,
            sent_at: None,
        })
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
        if ids.len() > BULK_MAX {
            return Err(Error::BadRequest {
                field: Some("ids".into()),
                message: format!("at most {BULK_MAX} ids per bulk request"),
            });
        }
        let (action, purpose) = match kind {
            SendKind::Invite => ("send_invite", TokenPurpose::Invite),
            SendKind::PasswordReset => ("send_password_reset", TokenPurpose::PasswordReset),
        };
        let mut out = Vec::with_capacity(ids.len());
        for raw in ids {
            let r = raw
                .parse::<EmployeeId>()
                .map_err(|_| Error::NotFound(format!("`{raw}` is not an employee id")))
                .and_then(|id| {
                    let e = self.get(id)?;
                    if let Some(why) = Self::refusal(&e, kind) {
                        return Err(Error::Invalid {
                            field: "id".into(),
                            message: why,
                        });
                    }
                    if dry_run {
                        return Ok(());
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
                            Ok(vec![self.issue_token(e, purpose)?])
                        },
                    )
                    .map(|_| ())
                });
            out.push(match r {
                Ok(()) => BulkOutcome {
                    id: raw.clone(),
                    ok: true,
                    changed: true,
                    error: None,
                },
                Err(Error::Store(e)) => return Err(Error::Store(e)),
                Err(Error::Invalid { message, .. }) => BulkOutcome {
                    id: raw.clone(),
                    ok: false,
                    changed: false,
                    error: Some(message),
                },
                Err(e) => BulkOutcome {
                    id: raw.clone(),
                    ok: false,
                    changed: false,
                    error: Some(e.to_string()),
                },
            });
        }
        self.store.flush().await?;
        Ok(out)
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
        check_token(&e, &digest, purpose, Utc::now())?;
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
        let e = self.by_token(token, TokenPurpose::Invite)?;
        if !e.active {
            return Err(AccountError::Forbidden(
                "this profile is inactive; ask an administrator".into(),
            ));
        }
        let username = validate::username(username)?;
        let hash = self.hash_password(password).await?;
        let digest = hex::encode(token_digest(token.expose().trim()));
        let actor = self_actor(e.id);
        let (e, _) = self
            .modify(
                &actor,
                e.id,
                "accept_invite",
                None,
                Default::default(),
                |e, _| {
                    check_token(e, &digest, TokenPurpose::Invite, Utc::now())
                        .map_err(|_| Error::NotFound("token".into()))?;
                    e.username = username.clone();
                    e.password_hash = Some(hash.clone());
                    e.account_status = AccountStatus::Credentials;
                    e.account_token = None;
                    Ok(())
                },
            )
            .map_err(token_gone)?;
        self.store.flush().await.map_err(Error::from)?;
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
        let e = self.by_token(token, TokenPurpose::PasswordReset)?;
        if !e.active {
            return Err(AccountError::Forbidden(
                "this profile is inactive; ask an administrator".into(),
            ));
        }
        let hash = self.hash_password(password).await?;
        let digest = hex::encode(token_digest(token.expose().trim()));
        let actor = self_actor(e.id);
        let (e, _) = self
            .modify(
                &actor,
                e.id,
                "reset_password",
                None,
                Default::default(),
                |e, _| {
                    check_token(e, &digest, TokenPurpose::PasswordReset, Utc::now())
                        .map_err(|_| Error::NotFound("token".into()))?;
                    e.password_hash = Some(hash.clone());
                    e.account_status = AccountStatus::Credentials;
                    e.account_token = None;
                    Ok(())
                },
            )
            .map_err(token_gone)?;
        self.store.flush().await.map_err(Error::from)?;
        tracing::info!(employee = %e.id, "password reset");
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
        let (items, more) = self.store.outbox_page(after, limit, |m| {
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
    let (Ok(a), Ok(b)) = (hex::decode(&t.digest), hex::decode(digest)) else {
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
            digest: d.clone(),
            expires_at: now + chrono::Duration::seconds(10),
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

    #[test]
    fn audit_diff_hides_the_token_digest() {
        let d = hex::encode(token_digest("tok"));
        let before = emp(None);
        let mut after = before.clone();
        after.account_token = Some(AccountToken {
            purpose: TokenPurpose::Invite,
            digest: d.clone(),
            expires_at: Utc::now(),
        });
        let changes = crate::employee::diff(Some(&before), Some(&after));
        let text = serde_json::to_string(&changes).unwrap();
        assert!(text.contains("account_token") && text.contains("invite"));
        assert!(!text.contains(&d), "{text}");
    }
}
