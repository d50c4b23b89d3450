//! The outbox worker: finds due messages, mints their links, renders them and
//! sends them over one SMTP connection per batch, and records the outcome.
//!
//! A stored message is only the intent ("invite employee X at this address").
//! The worker mints the one-time token just before it sends: it writes only the
//! token's SHA-256 digest to the profile (superseding the link of any earlier
//! attempt) and flushes, and the token itself exists only in memory and in the
//! mail. So no token that works is ever in the store's files.
//!
//! Delivery, per batch of at most [`BATCH`] due messages: connect (a failure
//! counts as a failed attempt for each message of the batch, and no link is
//! minted), mint every message's link and flush, send each message over the one
//! connection, mark each `sent` right after the server accepted it, and flush
//! the marks at the end of the batch. A crash, kill or power loss before that
//! flush leaves the batch's messages `pending`, so they are sent once more after
//! the restart, each with a new link that supersedes the first: at worst a
//! duplicate, never a loss. A failed attempt is retried after
//! `backoff_initial_secs`, doubling up to `backoff_max_secs`; after
//! `max_attempts` the message is kept as `dead` with the last error
//! (`rosterctl outbox list --dead`, `rosterctl outbox retry ID`). A message that
//! no longer applies (a newer message replaced it, the address changed, the
//! account was set up or deleted, it waited past its link's lifetime) is
//! `skipped`. The store is flushed before a pass sends anything, so no message
//! goes out for a change that a crash could still undo.
//!
//! With several nodes on one database, each pass claims its batches
//! ([`crate::store::Backend::outbox_claim`]: `FOR UPDATE SKIP LOCKED`, with a
//! claim expiry) and renews the claim just before each send, so two nodes
//! never send the same message at once, and the messages of a node that died
//! mid-send come back to the others when its claims expire. Each message's
//! `Message-ID` is made from its outbox id: a duplicate (sent again after a
//! node died between the server's acceptance and the mark) carries the same
//! one, so that mail systems can tell.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::templates::Vars;
use super::{MailError, Mailer, Session};
use crate::employee::Roster;
use crate::secret::Secret;
use crate::store::{DeliveryState, MessageKind, OutboxRecord, StoreError};

/// Most messages one batch sends over one SMTP connection, between two flushes.
pub const BATCH: usize = 200;

/// Most batches one pass claims (the next pass goes on).
const MAX_BATCHES: usize = 50;

/// The background job that delivers the outbox.
pub struct MailWorker {
    roster: Roster,
    mailer: Mailer,
}

impl MailWorker {
    pub fn new(roster: Roster, mailer: Mailer) -> Self {
        Self { roster, mailer }
    }

    /// Delivers due messages every `poll_interval` until `shutdown` turns true. A
    /// message being sent when shutdown comes is finished first (bounded by the
    /// SMTP timeout), so a stop never cuts a delivery between acceptance and mark.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let c = self.mailer.config();
        tracing::info!(host = %c.host, port = c.port, "mail worker started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Err(e) = self.tick(&shutdown).await {
                tracing::error!(error = %e, "mail worker tick failed; trying again at the next one");
            }
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(self.mailer.config().poll_interval) => {}
            }
        }
        tracing::info!("mail worker stopped");
    }

    /// One pass over the due messages, batch by batch.
    pub async fn tick(&self, shutdown: &watch::Receiver<bool>) -> Result<(), StoreError> {
        let store = self.roster.store();
        let mut session: Option<Session> = None;
        let mut result = Ok(());
        // One attempt per message per pass, as when the pass read every due
        // message at once.
        let mut tried = std::collections::HashSet::new();
        for n in 0..MAX_BATCHES {
            if *shutdown.borrow() {
                break;
            }
            let mut batch = store.outbox_claim(Utc::now(), BATCH)?;
            batch.retain(|m| tried.insert(m.id));
            if batch.is_empty() {
                break;
            }
            if n == 0 {
                // Only mail about changes that are durable: a sync flushes per
                // batch, so a message read here may belong to a write not yet on disk.
                store.flush().await?;
            }
            result = self.batch(&batch, &mut session, shutdown).await;
            if result.is_err() {
                break;
            }
        }
        if let Some(s) = session {
            s.quit().await;
        }
        result
    }

    async fn batch(
        &self,
        batch: &[OutboxRecord],
        session: &mut Option<Session>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), StoreError> {
        let store = self.roster.store();
        if session.is_none() {
            match self.mailer.connect().await {
                Ok(s) => *session = Some(s),
                Err(e) => {
                    // Nothing minted: each message's attempt failed on the connection.
                    for m in batch {
                        let mut m = m.clone();
                        m.attempts += 1;
                        self.roster
                            .outbox_put(&self.failed(m, &e))
                            .map_err(domain_to_store)?;
                    }
                    return store.flush().await;
                }
            }
        }
        // Every link is on disk (as a digest) before any mail carrying it leaves.
        let mut ready = Vec::with_capacity(batch.len());
        for m in batch {
            match self.roster.mint_link(m).map_err(domain_to_store)? {
                Some((token, expires_at)) => ready.push((m.clone(), token, expires_at)),
                None => {
                    let mut m = m.clone();
                    m.state = DeliveryState::Skipped;
                    m.last_error = Some(
                        "not sent: a newer message replaced it, the address changed, or the account no longer waits for it"
                            .into(),
                    );
                    tracing::info!(message = m.id, kind = m.kind.as_str(), employee = %m.employee_id, "outbox message skipped");
                    self.roster.outbox_put(&m).map_err(domain_to_store)?;
                }
            }
        }
        store.flush().await?;
        for (m, token, expires_at) in ready {
            if *shutdown.borrow() {
                // Left pending: the next start mints a new link and sends it.
                break;
            }
            if !store.outbox_hold(m.id)? {
                // This node's claim expired and another node claimed it.
                tracing::warn!(
                    message = m.id,
                    "outbox message not sent: another node claimed it"
                );
                continue;
            }
            let m = self.deliver(session, m, &token, expires_at).await;
            self.roster.outbox_put(&m).map_err(domain_to_store)?;
        }
        store.flush().await
    }

    /// Sends one message with its freshly minted link; returns it with its new state.
    async fn deliver(
        &self,
        session: &mut Option<Session>,
        mut m: OutboxRecord,
        token: &Secret,
        expires_at: DateTime<Utc>,
    ) -> OutboxRecord {
        let c = self.mailer.config();
        let path = match m.kind {
            MessageKind::Invite => "accept-invite",
            MessageKind::PasswordReset => "reset-password",
        };
        m.expires_at = expires_at;
        let link = format!("{}/{path}?token={}", c.base_url, token.expose());
        let rendered = self.mailer.templates().render(
            m.kind,
            &Vars {
                name: &m.name,
                company: &c.company_name,
                link: &link,
                expires_at,
            },
        );
        m.attempts += 1;
        let result = match self.mailer.message(&m.to, &m.name, rendered) {
            Ok(mut msg) => {
                msg.headers_mut().set(message_id(m.id, &c.from));
                match session {
                    Some(s) => s.send(&msg).await,
                    None => match self.mailer.connect().await {
                        Ok(mut s) => {
                            let r = s.send(&msg).await;
                            *session = Some(s);
                            r
                        }
                        Err(e) => Err(e),
                    },
                }
            }
            Err(e) => {
                // A message that cannot be built never will be: no retries.
                m.attempts = m.attempts.max(c.max_attempts);
                Err(e)
            }
        };
        match result {
            Ok(()) => {
                m.state = DeliveryState::Sent;
                m.sent_at = Some(Utc::now());
                m.last_error = None;
                tracing::info!(message = m.id, kind = m.kind.as_str(), employee = %m.employee_id, attempts = m.attempts, "outbox message sent");
                m
            }
            Err(e) => self.failed(m, &e),
        }
    }

    /// Records a failed attempt (already counted in `m.attempts`): retried later,
    /// or dead past `max_attempts`.
    fn failed(&self, mut m: OutboxRecord, e: &MailError) -> OutboxRecord {
        let c = self.mailer.config();
        m.last_error = Some(e.to_string());
        if m.attempts >= c.max_attempts {
            m.state = DeliveryState::Dead;
            tracing::error!(message = m.id, kind = m.kind.as_str(), employee = %m.employee_id, attempts = m.attempts, error = %e, "outbox message is dead; `rosterctl outbox retry {}` after fixing the cause", m.id);
        } else {
            let wait = backoff(c.backoff_initial, c.backoff_max, m.attempts);
            m.next_attempt_at = Utc::now()
                + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::seconds(60));
            tracing::warn!(message = m.id, kind = m.kind.as_str(), attempts = m.attempts, retry_in_ms = wait.as_millis() as u64, error = %e, "outbox message not sent; will retry");
        }
        m
    }
}

/// The `Message-ID` of outbox message `id`: the same for every attempt, on
/// every node.
fn message_id(id: u64, from: &lettre::message::Mailbox) -> lettre::message::header::MessageId {
    lettre::message::header::MessageId::from(format!("<outbox-{id}@{}>", from.email.domain()))
}

/// The store's failure inside a domain call (the worker's ticks fail on it).
fn domain_to_store(e: crate::employee::Error) -> StoreError {
    match e {
        crate::employee::Error::Store(e) => e,
        other => StoreError::Corrupt(other.to_string()),
    }
}

/// Wait after the `attempts`-th failure: `initial · 2^(attempts-1)`, at most `max`.
pub fn backoff(initial: Duration, max: Duration, attempts: u32) -> Duration {
    let factor = 2f64.powi(attempts.saturating_sub(1).min(30) as i32);
    initial.mul_f64(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(30), s(3600), 1), s(30));
        assert_eq!(backoff(s(30), s(3600), 2), s(60));
        assert_eq!(backoff(s(30), s(3600), 4), s(240));
        assert_eq!(backoff(s(30), s(3600), 20), s(3600));
        assert_eq!(backoff(s(30), s(3600), u32::MAX), s(3600));
    }
}
