//! Cron schedules per source: `full_schedule` and `incremental_schedule`, read in
//! the source's `timezone` (UTC when none), plus an optional full run at start. A
//! tick that finds a run of the same source in progress is skipped and logged by
//! the engine; a failing source is simply tried again at its next tick, its
//! failures recorded.
//!
//! "0 0 2 * * *" in `America/Chicago` fires at 02:00 in Chicago: 08:00 UTC in
//! winter, 07:00 UTC in summer. Daylight-saving changes neither skip nor double
//! a run (croner's rules, after Vixie cron): a fixed time that falls in the hour
//! skipped in spring fires at the first instant after the gap, the same day; a
//! fixed time in the hour repeated in autumn fires once, at its first occurrence.
//! Schedules with wildcards or steps in the time fields fire at each wall-clock
//! instant that matches.
//!
//! With several nodes on one database, each firing of each schedule (and of
//! the lifecycle tick) is claimed once, in the store, by the one node that
//! runs it ([`crate::store::Backend::claim_slot`]): every node keeps the same
//! clock of schedules, and exactly one run per tick per source starts. A
//! manual run is not a schedule's firing: no claim suppresses it (the source's
//! lease still keeps it from running beside another).
//!
//! While any source is configured, a lifecycle tick runs every quarter hour
//! ([`TICK_SCHEDULE`], UTC): hire and termination dates that fall due between
//! runs take effect within 15 minutes of local midnight, without a fetch.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::runs::Trigger;
use super::{RunKind, SyncEngine};

/// When the lifecycle tick runs (sec min hour day month weekday).
pub const TICK_SCHEDULE: &str = "0 */15 * * * *";

/// The longest the scheduler sleeps before it looks at the clock again, so that
/// a wall-clock step (NTP, a suspended machine) delays a run by at most this.
const MAX_SLEEP: std::time::Duration = std::time::Duration::from_secs(30);

/// Why a text is not a 6-field cron expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{expr}` is not a valid cron expression (sec min hour day month weekday): {reason}")]
pub struct CronError {
    pub expr: String,
    pub reason: String,
}

/// A 6-field cron expression (`sec min hour day month weekday`) read in a time
/// zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
}

impl Schedule {
    /// Parses `expr`; the error says why it is not a cron expression.
    pub fn parse(expr: &str, tz: Tz) -> Result<Self, CronError> {
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(expr)
            .map_err(|e| CronError {
                expr: expr.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self { cron, tz })
    }

    /// The first instant strictly after `after` at which the schedule fires.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.tz), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

type Job = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Why the schedules could not start.
#[derive(Debug, thiserror::Error)]
#[error("source `{source_id}`: {message}")]
pub struct ScheduleError {
    pub source_id: String,
    pub message: String,
}

/// The running schedules; [`Scheduler::shutdown`] stops them.
pub struct Scheduler {
    stop_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Scheduler {
    /// Starts every source's schedules, and the runs of sources with `run_at_start`.
    pub async fn start(engine: SyncEngine) -> Result<Self, ScheduleError> {
        Self::start_with(engine, true).await
    }

    /// Starts the schedules of the sources in force after a config reload; no
    /// `run_at_start` runs (the daemon did not start).
    pub async fn restart(engine: SyncEngine) -> Result<Self, ScheduleError> {
        Self::start_with(engine, false).await
    }

    async fn start_with(engine: SyncEngine, at_start: bool) -> Result<Self, ScheduleError> {
        let mut jobs: Vec<(Schedule, Job, String)> = Vec::new();
        for src in engine.sources().iter() {
            for (expr, kind) in [
                (&src.full_schedule, RunKind::Full),
                (&src.incremental_schedule, RunKind::Incremental),
            ] {
                let Some(expr) = expr else { continue };
                let schedule =
                    Schedule::parse(expr, src.timezone).map_err(|message| ScheduleError {
                        source_id: src.id.clone(),
                        message: message.to_string(),
                    })?;
                let engine = engine.clone();
                let id = src.id.clone();
                let job: Job = Arc::new(move || {
                    let engine = engine.clone();
                    let id = id.clone();
                    Box::pin(async move {
                        // Failures are recorded in the run history by the engine.
                        let _ = engine.run(&id, kind, false, Trigger::Schedule).await;
                    })
                });
                let kind = match kind {
                    RunKind::Full => "full",
                    RunKind::Incremental => "incremental",
                };
                jobs.push((schedule, job, format!("sync:{}:{kind}", src.id)));
            }
            if at_start && src.run_at_start {
                let engine = engine.clone();
                let id = src.id.clone();
                tokio::spawn(async move {
                    let _ = engine.run(&id, RunKind::Full, false, Trigger::Start).await;
                });
            }
        }
        if !engine.sources().is_empty() {
            let schedule =
                Schedule::parse(TICK_SCHEDULE, Tz::UTC).map_err(|message| ScheduleError {
                    source_id: "(lifecycle tick)".into(),
                    message: message.to_string(),
                })?;
            let e = engine.clone();
            let job: Job = Arc::new(move || {
                let engine = e.clone();
                Box::pin(async move {
                    // A tick reads every stored profile: on a blocking thread,
                    // not on one of the workers serving the APIs.
                    let handle = tokio::runtime::Handle::current();
                    let r =
                        tokio::task::spawn_blocking(move || handle.block_on(engine.tick())).await;
                    match r {
                        Ok(Ok(0)) => {}
                        Ok(Ok(n)) => {
                            tracing::info!(changed = n, "lifecycle tick applied due changes")
                        }
                        Ok(Err(err)) => tracing::error!(error = %err, "lifecycle tick failed"),
                        Err(err) => tracing::error!(error = %err, "lifecycle tick stopped"),
                    }
                })
            });
            jobs.push((schedule, job, "lifecycle".into()));
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let tasks = jobs
            .into_iter()
            .map(|(schedule, job, duty)| {
                let claim = Claim {
                    store: engine.store().clone(),
                    duty,
                };
                tokio::spawn(fire(schedule, job, claim, stop_rx.clone()))
            })
            .collect();
        Ok(Self { stop_tx, tasks })
    }

    /// Stops the schedules. Runs already started finish on their own.
    pub async fn shutdown(self) {
        let _ = self.stop_tx.send(true);
        for t in self.tasks {
            if let Err(e) = t.await {
                tracing::warn!(error = %e, "scheduler shutdown");
            }
        }
    }
}

/// A schedule's name among the claimed duties, and the store that holds them.
struct Claim {
    store: crate::store::Store,
    duty: String,
}

impl Claim {
    /// Whether this node runs the firing at `slot` (see the module doc).
    async fn won(&self, slot: DateTime<Utc>, next: Option<DateTime<Utc>>) -> bool {
        let next = next.unwrap_or(slot + chrono::Duration::days(366));
        let (store, duty) = (self.store.clone(), self.duty.clone());
        match tokio::task::spawn_blocking(move || store.claim_slot(&duty, slot, next)).await {
            Ok(Ok(true)) => true,
            Ok(Ok(false)) => {
                tracing::debug!(duty = %self.duty, %slot, "tick claimed by another node");
                false
            }
            Ok(Err(e)) => {
                tracing::error!(duty = %self.duty, %slot, error = %e, "cannot claim the tick; skipped");
                false
            }
            Err(e) => {
                tracing::error!(duty = %self.duty, error = %e, "claiming the tick stopped");
                false
            }
        }
    }
}

/// Fires `job` at each instant of `schedule` that this node claims, until
/// stopped; each firing runs on a task of its own, so a long run never delays
/// the schedule's clock.
async fn fire(schedule: Schedule, job: Job, claim: Claim, mut stop_rx: watch::Receiver<bool>) {
    let mut last = Utc::now();
    loop {
        let Some(next) = schedule.next_after(last.max(Utc::now())) else {
            return;
        };
        loop {
            let now = Utc::now();
            if now >= next {
                break;
            }
            let wait = (next - now).to_std().unwrap_or_default().min(MAX_SLEEP);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop_rx.changed() => return,
            }
        }
        if *stop_rx.borrow() {
            return;
        }
        if claim.won(next, schedule.next_after(next)).await {
            tokio::spawn(job());
        }
        last = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn a_schedule_fires_in_the_sources_time_zone() {
        let s = Schedule::parse("0 0 2 * * *", "America/Chicago".parse().unwrap()).unwrap();
        // 02:00 in Chicago: CST (UTC-6) in January, CDT (UTC-5) in July.
        assert_eq!(
            s.next_after(utc(2027, 1, 15, 12, 0)),
            Some(utc(2027, 1, 16, 8, 0))
        );
        assert_eq!(
            s.next_after(utc(2027, 7, 15, 12, 0)),
            Some(utc(2027, 7, 16, 7, 0))
        );
        // UTC when the source names no zone.
        let s = Schedule::parse("0 0 2 * * *", Tz::UTC).unwrap();
        assert_eq!(
            s.next_after(utc(2027, 1, 15, 12, 0)),
            Some(utc(2027, 1, 16, 2, 0))
        );
    }

    /// Every firing from `from` to `to`.
    fn firings(s: &Schedule, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = from;
        while let Some(n) = s.next_after(t) {
            if n > to {
                break;
            }
            out.push(n);
            t = n;
        }
        out
    }

    #[test]
    fn daylight_saving_changes_neither_skip_nor_double_a_run() {
        let chicago: Tz = "America/Chicago".parse().unwrap();
        // 2027-03-14: 02:00 CST jumps to 03:00 CDT, so 02:30 does not exist that
        // day; 2027-11-07: 02:00 CDT falls back to 01:00 CST, so 01:30 comes twice.
        for (expr, from, to) in [
            (
                "0 30 2 * * *",
                utc(2027, 3, 12, 12, 0),
                utc(2027, 3, 17, 12, 0),
            ),
            (
                "0 0 2 * * *",
                utc(2027, 3, 12, 12, 0),
                utc(2027, 3, 17, 12, 0),
            ),
            (
                "0 30 1 * * *",
                utc(2027, 11, 5, 12, 0),
                utc(2027, 11, 10, 12, 0),
            ),
            (
                "0 0 1 * * *",
                utc(2027, 11, 5, 12, 0),
                utc(2027, 11, 10, 12, 0),
            ),
        ] {
            let s = Schedule::parse(expr, chicago).unwrap();
            let fired = firings(&s, from, to);
            let days: Vec<_> = fired
                .iter()
                .map(|t| t.with_timezone(&chicago).date_naive())
                .collect();
            let mut distinct = days.clone();
            distinct.dedup();
            assert_eq!(days, distinct, "{expr}: one run per day: {fired:?}");
            assert_eq!(days.len(), 5, "{expr}: a run every day: {fired:?}");
        }
        // The run of the skipped 02:30 comes right after the gap, at 03:00 CDT.
        let s = Schedule::parse("0 30 2 * * *", chicago).unwrap();
        assert_eq!(
            s.next_after(utc(2027, 3, 14, 0, 0)),
            Some(utc(2027, 3, 14, 8, 0))
        );
        // The repeated 01:30 fires at its first occurrence (CDT, UTC-5).
        let s = Schedule::parse("0 30 1 * * *", chicago).unwrap();
        assert_eq!(
            s.next_after(utc(2027, 11, 7, 0, 0)),
            Some(utc(2027, 11, 7, 6, 30))
        );
    }

    #[test]
    fn what_is_not_a_cron_expression_is_refused() {
        for bad in ["every tuesday", "0 0 2 * *", "61 * * * * *"] {
            assert!(Schedule::parse(bad, Tz::UTC).is_err(), "{bad}");
        }
    }
}
