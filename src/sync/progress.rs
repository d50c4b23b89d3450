//! The progress of the runs in flight, kept in memory only: one [`Progress`] (a
//! handful of atomics) per running run, set by the engine's fetch, plan and
//! apply loops and read by the admin API (`GET /api/v1/sync/runs/{id}`) without
//! a lock on the run. Nothing here is stored: a finished run's record has its
//! counts and timings.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::Serialize;

use super::runs::RunId;

/// What a run is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Asking the source for its entries (and mapping them).
    Fetch,
    /// Comparing the entries with the roster.
    Plan,
    /// Writing the plan's changes.
    Apply,
    /// Recording the run.
    Finish,
}

impl Phase {
    fn from_u8(n: u8) -> Self {
        match n {
            0 => Phase::Fetch,
            1 => Phase::Plan,
            2 => Phase::Apply,
            _ => Phase::Finish,
        }
    }
}

/// One running run's progress.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    phase: AtomicU8,
    /// Milliseconds from `started` to the start of the current phase.
    phase_at_ms: AtomicU64,
    fetched: AtomicU64,
    planned: AtomicU64,
    applied: AtomicU64,
    /// How many plan items the apply phase has to go through.
    to_apply: AtomicU64,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            phase: AtomicU8::new(0),
            phase_at_ms: AtomicU64::new(0),
            fetched: AtomicU64::new(0),
            planned: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            to_apply: AtomicU64::new(0),
        }
    }
}

impl Progress {
    pub fn set_phase(&self, phase: Phase) {
        self.phase_at_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    pub fn set_fetched(&self, n: usize) {
        self.fetched.store(n as u64, Ordering::Relaxed);
    }

    pub fn set_planned(&self, n: usize) {
        self.planned.store(n as u64, Ordering::Relaxed);
    }

    pub fn set_to_apply(&self, n: usize) {
        self.to_apply.store(n as u64, Ordering::Relaxed);
    }

    pub fn add_applied(&self, n: usize) {
        self.applied.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A consistent-enough copy for the API (each counter is read once).
    pub fn view(&self) -> ProgressView {
        let elapsed_ms = self.started.elapsed().as_millis() as u64;
        let phase = Phase::from_u8(self.phase.load(Ordering::Relaxed));
        let phase_ms = elapsed_ms.saturating_sub(self.phase_at_ms.load(Ordering::Relaxed));
        let (fetched, planned, applied) = (
            self.fetched.load(Ordering::Relaxed),
            self.planned.load(Ordering::Relaxed),
            self.applied.load(Ordering::Relaxed),
        );
        let current = match phase {
            Phase::Fetch => fetched,
            Phase::Plan => planned,
            Phase::Apply | Phase::Finish => applied,
        };
        let rate_per_sec = if phase_ms == 0 {
            0.0
        } else {
            (current as f64 * 1000.0 / phase_ms as f64).round()
        };
        ProgressView {
            phase,
            fetched,
            planned,
            applied,
            to_apply: self.to_apply.load(Ordering::Relaxed),
            elapsed_ms,
            rate_per_sec,
        }
    }
}

/// `progress` in the admin API's answer about a running run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgressView {
    pub phase: Phase,
    /// Entries the source returned so far.
    pub fetched: u64,
    /// Entries planned (compared with the roster).
    pub planned: u64,
    /// Plan items applied.
    pub applied: u64,
    /// Plan items the apply goes through.
    pub to_apply: u64,
    /// Since the run started.
    pub elapsed_ms: u64,
    /// Items per second in the current phase.
    pub rate_per_sec: f64,
}

/// The runs in flight, by id.
#[derive(Clone, Default)]
pub struct ProgressBoard {
    runs: Arc<Mutex<HashMap<RunId, Arc<Progress>>>>,
}

impl ProgressBoard {
    /// A new entry for `id`, taken off the board when the guard drops.
    pub fn track(&self, id: RunId) -> Tracked {
        let p = Arc::new(Progress::default());
        self.runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, p.clone());
        Tracked {
            board: self.clone(),
            id,
            progress: p,
        }
    }

    pub fn get(&self, id: RunId) -> Option<ProgressView> {
        let p = self
            .runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned();
        p.map(|p| p.view())
    }
}

/// A run's entry on the board while the run lives.
pub struct Tracked {
    board: ProgressBoard,
    id: RunId,
    pub progress: Arc<Progress>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.board
            .runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_on_the_board_while_it_lives() {
        let board = ProgressBoard::default();
        let t = board.track(7);
        t.progress.set_fetched(10);
        t.progress.set_phase(Phase::Apply);
        t.progress.set_to_apply(4);
        t.progress.add_applied(3);
        let v = board.get(7).unwrap();
        assert_eq!(
            (v.phase, v.fetched, v.applied, v.to_apply),
            (Phase::Apply, 10, 3, 4)
        );
        drop(t);
        assert!(board.get(7).is_none());
    }
}
