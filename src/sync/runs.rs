//! Run history: every run of every source, with its outcome, counts, errors and
//! plan, kept in the store (`sync_runs`), plus per-source state (`sync_state`: the
//! incremental high-water mark) and the mapped entries of held runs (`sync_held`),
//! kept until the run is approved or superseded.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::RunKind;
use super::map::MappedEntry;
use super::plan::{Counts, PlanItem};
use crate::store::{Store, StoreError};

/// A run's id: increasing.
pub type RunId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Running,
    Applied,
    /// Exceeded the deactivation threshold; waits for `rosterctl sync approve`.
    Held,
    /// Held, then approved and applied.
    Approved,
    /// Held, then replaced by a newer run before anyone approved it.
    Superseded,
    Failed,
    DryRun,
}

/// One entry's problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryError {
    pub key: String,
    pub dn: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: RunId,
    pub source: String,
    pub kind: RunKind,
    /// `schedule`, `manual`, `start`, `approval`.
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: Outcome,
    /// Why it failed or was held.
    pub message: Option<String>,
    pub entries_seen: usize,
    pub counts: Counts,
    pub errors: Vec<EntryError>,
    /// Every item that is not `unchanged`.
    pub plan: Vec<PlanItem>,
    /// Milliseconds spent fetching, mapping and planning, applying.
    #[serde(default)]
    pub timings_ms: Timings,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub fetch: u64,
    pub plan: u64,
    pub apply: u64,
}

/// Per-source state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    /// Highest modification timestamp applied (incremental runs start there).
    pub high_water_mark: Option<String>,
    pub last_success: Option<DateTime<Utc>>,
}

/// Typed access to the sync trees.
#[derive(Clone)]
pub struct RunStore {
    store: Store,
    runs: sled::Tree,
    state: sled::Tree,
    held: sled::Tree,
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(format!("sync record: {e}")))
}

impl RunStore {
    pub fn open(store: &Store) -> Result<Self, StoreError> {
        Ok(Self {
            runs: store.tree("sync_runs")?,
            state: store.tree("sync_state")?,
            held: store.tree("sync_held")?,
            store: store.clone(),
        })
    }

    pub fn new_id(&self) -> Result<RunId, StoreError> {
        // generate_id starts at 0; run ids start at 1 for people.
        Ok(self.store.next_id()? + 1)
    }

    pub fn put(&self, r: &RunRecord) -> Result<(), StoreError> {
        self.runs.insert(r.id.to_be_bytes(), enc(r)?)?;
        Ok(())
    }

    pub fn get(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        self.runs
            .get(id.to_be_bytes())?
            .map(|b| dec(&b))
            .transpose()
    }

    /// Newest first, optionally for one source.
    pub fn list(&self, source: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let mut out = Vec::new();
        for r in self.runs.iter().rev() {
            let (_, v) = r?;
            let rec: RunRecord = dec(&v)?;
            if source.is_none_or(|s| s == rec.source) {
                out.push(rec);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub fn state(&self, source: &str) -> Result<SourceState, StoreError> {
        Ok(self
            .state
            .get(source)?
            .map(|b| dec(&b))
            .transpose()?
            .unwrap_or_default())
    }

    pub fn put_state(&self, source: &str, s: &SourceState) -> Result<(), StoreError> {
        self.state.insert(source, enc(s)?)?;
        Ok(())
    }

    pub fn put_held(&self, id: RunId, entries: &[MappedEntry]) -> Result<(), StoreError> {
        self.held.insert(id.to_be_bytes(), enc(&entries)?)?;
        Ok(())
    }

    pub fn take_held(&self, id: RunId) -> Result<Option<Vec<MappedEntry>>, StoreError> {
        self.held
            .remove(id.to_be_bytes())?
            .map(|b| dec(&b))
            .transpose()
    }

    /// Marks older held runs of a source as superseded and drops their entries.
    pub fn supersede_held(&self, source: &str) -> Result<(), StoreError> {
        for r in self.held.iter() {
            let (k, _) = r?;
            let mut idb = [0u8; 8];
            idb.copy_from_slice(&k[..8.min(k.len())]);
            let id = u64::from_be_bytes(idb);
            if let Some(mut rec) = self.get(id)?
                && rec.source == source
                && rec.outcome == Outcome::Held
            {
                rec.outcome = Outcome::Superseded;
                self.put(&rec)?;
                self.held.remove(k)?;
            }
        }
        Ok(())
    }

    pub async fn flush(&self) -> Result<(), StoreError> {
        self.store.flush().await
    }
}
