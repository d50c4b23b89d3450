//! The sync engine's metric handles: runs by source and outcome, run duration
//! and entries seen per source. The engine records into them; the top-level
//! [`crate::metrics`] registry registers and renders them (so the engine does
//! not import the registry, and the registry reads the engine).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub source: String,
    pub outcome: String,
}

fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Sync metrics; the engine records into them, the registry reads them.
#[derive(Clone)]
pub struct SyncMetrics {
    pub runs: Family<RunLabels, Counter>,
    pub duration: Family<SourceLabels, Histogram, fn() -> Histogram>,
    pub entries_seen: Family<SourceLabels, Counter>,
}

impl Default for SyncMetrics {
    fn default() -> Self {
        Self {
            runs: Family::default(),
            duration: Family::new_with_constructor(seconds_histogram),
            entries_seen: Family::default(),
        }
    }
}
