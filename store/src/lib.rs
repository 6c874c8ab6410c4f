//! The embedded time-series store of vigie (work in progress, stage "store" of the plan).
//!
//! For now it holds the write-ahead log ([`wal`]) and the chunk codec ([`chunk`]): Gorilla compression (Pelkonen et al., VLDB 2015) of one
//! series' points, delta-of-delta timestamps and XOR-ed floats, bit-packed. The write-ahead
//! log, the in-memory head, the time-partitioned blocks, compaction and retention build on it.
//! The byte format is documented in `store/FORMAT.md`.

pub mod bits;
pub mod chunk;
pub mod wal;

pub use chunk::{ChunkDecoder, ChunkEncoder, DecodeError};
pub use wal::{Recovered, Wal, WalError};
