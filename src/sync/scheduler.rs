//! Cron schedules per source (tokio-cron-scheduler): `full_schedule` and
//! `incremental_schedule`, plus an optional full run at start. A tick that finds a
//! run of the same source in progress is skipped and logged by the engine; a
//! failing source is simply tried again at its next tick, its failures recorded.
//!
//! While any source is configured, a lifecycle tick runs every quarter hour
//! ([`TICK_SCHEDULE`]): hire and termination dates that fall due between runs
//! take effect within 15 minutes of local midnight, without a fetch.

use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

use super::{RunKind, SyncEngine};

/// When the lifecycle tick runs (sec min hour day month weekday).
pub const TICK_SCHEDULE: &str = "0 */15 * * * *";

/// The running schedules; [`Scheduler::shutdown`] stops them.
pub struct Scheduler {
    inner: Option<JobScheduler>,
}

impl Scheduler {
    /// Starts every source's schedules, and the runs of sources with `run_at_start`.
    pub async fn start(engine: SyncEngine) -> Result<Self, JobSchedulerError> {
        Self::start_with(engine, true).await
    }

    /// Starts the schedules of the sources in force after a config reload; no
    /// `run_at_start` runs (the daemon did not start).
    pub async fn restart(engine: SyncEngine) -> Result<Self, JobSchedulerError> {
        Self::start_with(engine, false).await
    }

    async fn start_with(engine: SyncEngine, at_start: bool) -> Result<Self, JobSchedulerError> {
        let mut jobs = Vec::new();
        for src in engine.sources().iter() {
            for (expr, kind) in [
                (&src.full_schedule, RunKind::Full),
                (&src.incremental_schedule, RunKind::Incremental),
            ] {
                let Some(expr) = expr else { continue };
                let engine = engine.clone();
                let id = src.id.clone();
                jobs.push(Job::new_async(expr.as_str(), move |_, _| {
                    let engine = engine.clone();
                    let id = id.clone();
                    Box::pin(async move {
                        // Failures are recorded in the run history by the engine.
                        let _ = engine.run(&id, kind, false, "schedule").await;
                    })
                })?);
            }
            if at_start && src.run_at_start {
                let engine = engine.clone();
                let id = src.id.clone();
                tokio::spawn(async move {
                    let _ = engine.run(&id, RunKind::Full, false, "start").await;
                });
            }
        }
        if !engine.sources().is_empty() {
            let e = engine.clone();
            jobs.push(Job::new_async(TICK_SCHEDULE, move |_, _| {
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
            })?);
        }
        if jobs.is_empty() {
            return Ok(Self { inner: None });
        }
        let sched = JobScheduler::new().await?;
        for j in jobs {
            sched.add(j).await?;
        }
        sched.start().await?;
        Ok(Self { inner: Some(sched) })
    }

    pub async fn shutdown(mut self) {
        if let Some(mut s) = self.inner.take()
            && let Err(e) = s.shutdown().await
        {
            tracing::warn!(error = %e, "scheduler shutdown");
        }
    }
}
