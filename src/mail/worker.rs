//! The outbox worker: finds due messages, renders and sends them through the one
//! SMTP transport, and records the outcome.
//!
//! Delivery: a message is marked `sent` (and its link token dropped from the store)
//! right after the SMTP server accepted it, and that mark is flushed before the
//! next message. A crash, kill or power loss in the window between the server's
//! acceptance and that flush leaves the message `pending`, so it is sent once more
//! after the restart: at worst one duplicate, never a loss. A failed attempt is
//! retried after `backoff_initial_secs`, doubling up to `backoff_max_secs`; after
//! `max_attempts` the message is kept as `dead` with the last error
//! (`rosterctl outbox list --dead`, `rosterctl outbox retry ID`). A message whose
//! link was superseded by a newer one, used or expired before it could be sent is
//! `skipped`. The store is flushed before a pass sends anything, so no message
//! goes out for a change that a crash could still undo.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::Mailer;
use super::templates::Vars;
use crate::employee::{EmployeeId, Roster};
use crate::secret::token_digest;
use crate::store::{DeliveryState, MessageKind, OutboxRecord, StoreError};

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

    /// One pass over the due messages.
    pub async fn tick(&self, shutdown: &watch::Receiver<bool>) -> Result<(), StoreError> {
        let store = self.roster.store();
        let due = store.outbox_due(Utc::now())?;
        if due.is_empty() {
            return Ok(());
        }
        // Only mail about changes that are durable: a sync flushes per batch, so a
        // message read here may belong to a write not yet on disk.
        store.flush().await?;
        for m in due {
            if *shutdown.borrow() {
                break;
            }
            let m = self.deliver(m).await;
            store.outbox_put(&m)?;
            store.flush().await?;
        }
        Ok(())
    }

    /// Tries one message; returns it with its new state.
    async fn deliver(&self, mut m: OutboxRecord) -> OutboxRecord {
        let now = Utc::now();
        let Some(token) = m.token.clone() else {
            m.state = DeliveryState::Dead;
            m.last_error = Some("the message has no link token; it cannot be rendered".into());
            return m;
        };
        if !self.link_is_live(&m, token.expose()) {
            m.state = DeliveryState::Skipped;
            m.token = None;
            m.last_error = Some(
                "not sent: a newer message replaced this link, or it was used or expired".into(),
            );
            tracing::info!(message = m.id, kind = m.kind.as_str(), employee = %m.employee_id, "outbox message skipped");
            return m;
        }
        let c = self.mailer.config();
        let path = match m.kind {
            MessageKind::Invite => "accept-invite",
            MessageKind::PasswordReset => "reset-password",
        };
        let link = format!("{}/{path}?token={}", c.base_url, token.expose());
        let rendered = self.mailer.templates().render(
            m.kind,
            &Vars {
                name: &m.name,
                company: &c.company_name,
                link: &link,
                expires_at: m.expires_at,
            },
        );
        m.attempts += 1;
        let result = match self.mailer.message(&m.to, &m.name, rendered) {
            Ok(msg) => self.mailer.send(msg).await,
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
                m.token = None;
                m.last_error = None;
                tracing::info!(message = m.id, kind = m.kind.as_str(), employee = %m.employee_id, attempts = m.attempts, "outbox message sent");
            }
            Err(e) => {
                m.last_error = Some(e.to_string());
                if m.attempts >= c.max_attempts {
                    m.state = DeliveryState::Dead;
                    tracing::error!(message = m.id, kind = m.kind.as_str(), employee = %m.employee_id, attempts = m.attempts, error = %e, "outbox message is dead; `rosterctl outbox retry {}` after fixing the cause", m.id);
                } else {
                    let wait = backoff(c.backoff_initial, c.backoff_max, m.attempts);
                    m.next_attempt_at = now
                        + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::seconds(60));
                    tracing::warn!(message = m.id, kind = m.kind.as_str(), attempts = m.attempts, retry_in_ms = wait.as_millis() as u64, error = %e, "outbox message not sent; will retry");
                }
            }
        }
        m
    }

    /// Whether the message's token is still the employee's live token.
    fn link_is_live(&self, m: &OutboxRecord, token: &str) -> bool {
        let Ok(e) = self.roster.get(EmployeeId(m.employee_id)) else {
            return false;
        };
        e.account_token.is_some_and(|t| {
            t.digest == hex::encode(token_digest(token)) && Utc::now() < t.expires_at
        })
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
