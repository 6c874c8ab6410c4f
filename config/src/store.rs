//! The `[store]` section: where the embedded time-series store lives and how it is bounded.

use serde::Deserialize;
use std::path::PathBuf;

/// `[store]`: the embedded store of indicator updates, clashes and feed health.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The store's folder, relative to the configuration file's directory once loaded. A
    /// replay writes it when this is set or `--store` is given.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Span of a time partition (one block per partition and flush), days.
    #[serde(default = "default_partition_days")]
    pub partition_days: u32,
    /// Partitions older than this many days before the engine's clock are dropped; none:
    /// kept forever.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Versions superseded more than this many days before the clock are dropped by
    /// compaction; none: the whole revision history is kept.
    #[serde(default)]
    pub keep_revisions_days: Option<u32>,
    /// Versions kept in memory before they are written out as blocks.
    #[serde(default = "default_flush_versions")]
    pub flush_versions: usize,
}

fn default_partition_days() -> u32 {
    30
}
fn default_flush_versions() -> usize {
    2_000_000
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            dir: None,
            partition_days: default_partition_days(),
            retention_days: None,
            keep_revisions_days: None,
            flush_versions: default_flush_versions(),
        }
    }
}

impl StoreConfig {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1..=3660).contains(&self.partition_days) {
            return Err(("partition_days", "must be 1 to 3660".into()));
        }
        if self.retention_days.is_some_and(|d| d == 0 || d > 36_600) {
            return Err(("retention_days", "must be 1 to 36600".into()));
        }
        if self.keep_revisions_days.is_some_and(|d| d > 36_600) {
            return Err(("keep_revisions_days", "must be 0 to 36600".into()));
        }
        if self.flush_versions == 0 {
            return Err(("flush_versions", "must be at least 1".into()));
        }
        Ok(())
    }
}
