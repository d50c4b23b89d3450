//! systemd integration: `READY=1` once the store is open and the listener bound,
//! `STATUS=` lines saying what rosterd is doing, `WATCHDOG=1` pings when
//! `WatchdogSec=` is set, `RELOADING=1` … `READY=1` around a config reload,
//! `STOPPING=1` on shutdown. Without `NOTIFY_SOCKET` every
//! call is a no-op.
//!
//! The watchdog task pings only after a probe write went through and was made
//! durable; if writes are wedged or the runtime hangs, the pings stop and systemd
//! restarts the service.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;

use crate::employee::Roster;
use crate::sync::SyncEngine;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// The status line: employees, and the last run of each source.
pub fn status_line(roster: &Roster, sync: &SyncEngine) -> String {
    let mut s = format!("serving; {} employees", roster.counts().total);
    for src in sync.sources().iter() {
        if let Ok(runs) = sync.runs().list(Some(&src.id), 1)
            && let Some(r) = runs.first()
        {
            let ago = chrono::Utc::now() - r.started_at;
            let ago = if ago.num_minutes() > 0 {
                format!("{} min ago", ago.num_minutes())
            } else {
                format!("{} s ago", ago.num_seconds().max(0))
            };
            s.push_str(&format!("; last sync {} {} {ago}", src.id, r.outcome));
        }
    }
    s
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A config reload begins; [`ready`] ends it (whether or not it was applied).
pub fn reloading() {
    let mut states = vec![
        NotifyState::Reloading,
        NotifyState::Status("reloading the config"),
    ];
    // systemd 253+ wants the reload's start time with RELOADING=1.
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Starts the watchdog and status task: pings at half the watchdog interval (when
/// one is set) and refreshes the status line every 30 seconds.
pub fn start(roster: Roster, sync: SyncEngine) -> JoinHandle<()> {
    let watchdog = sd_notify::watchdog_enabled();
    if let Some(d) = watchdog {
        tracing::info!(interval = ?d, "systemd watchdog enabled");
    }
    tokio::spawn(async move {
        let tick = watchdog
            .map(|d| (d / 2).max(Duration::from_millis(50)))
            .unwrap_or(Duration::from_secs(30));
        let mut interval = tokio::time::interval(tick);
        let mut last_status = std::time::Instant::now();
        loop {
            interval.tick().await;
            // Pings only while writes complete: a process whose write path is
            // wedged stops pinging and systemd restarts it.
            if let Some(d) = watchdog
                && roster.store_ready()
                && roster
                    .writable((d / 4).max(Duration::from_millis(50)))
                    .await
            {
                send(&[NotifyState::Watchdog]);
            }
            if last_status.elapsed() >= Duration::from_secs(30) {
                send(&[NotifyState::Status(&status_line(&roster, &sync))]);
                last_status = std::time::Instant::now();
            }
        }
    })
}
