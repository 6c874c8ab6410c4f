//! The embedded time-series store of vigie: what the engine's indicator updates land in, and
//! what the query API and the monitoring wall read.
//!
//! Series are keyed by measurement, tags and field ([`SeriesKey`]). A write is a batch of
//! samples stamped with a revision; it is appended to a checksummed write-ahead log ([`wal`])
//! and fsynced before it is acknowledged, then kept in an in-memory head. Flushes write the
//! head as immutable, time-partitioned blocks ([`block`]) of Gorilla-compressed chunks
//! ([`chunk`]: delta-of-delta timestamps, XOR-ed floats, after Pelkonen et al., VLDB 2015).
//! A point written again keeps its older versions: reads give the latest, or the latest as
//! known at an earlier time, and the history of a point's revisions. Compaction merges a
//! partition's blocks and applies the retention. The bytes on disk and the recovery are
//! documented in `store/FORMAT.md`.

pub mod bits;
pub mod block;
pub mod chunk;
mod db;
mod jobs;
pub mod series;
pub mod wal;

use std::path::PathBuf;

pub use block::Version;
pub use chunk::{integral, ChunkDecoder, ChunkEncoder, DecodeError, Values};
pub use db::{downsample, resolve, Ack, Agg, LogCleanup, OpenReport, Options, Stats, Store};
pub use jobs::{CompactReport, Compaction, Flush, Flushed, Merged};
pub use series::SeriesKey;
pub use wal::{Recovered, Wal, WalError};

/// A store shared between the one thread that writes it (the engine's sinks) and its readers
/// (the query API of `vigie run`).
pub type SharedStore = std::sync::Arc<std::sync::RwLock<Store>>;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("a flush of the store's head is already under way")]
    FlushUnderWay,
}
