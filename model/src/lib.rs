//! Plain shared types of vigie: feeds, validated records, facts, indicator and clash rows,
//! the time arithmetic of the reference indicator model (`hour`, `how`, `week`), and the plain
//! data that crosses from the engine to the sinks and the server: an epoch's [`Changes`], the
//! feeds' health ([`FeedHealth`]) and the wall clock ([`clock`]).
//!
//! Every other crate depends on this one; it depends on no engine, no I/O. Records that cross
//! into the dataflow are already validated: a [`Record`] cannot hold an out-of-range severity,
//! an event that ends before it starts, or a zone that the configuration does not know.

mod changes;
pub mod clock;
mod float;
mod health;
pub mod point;
mod record;
mod rows;
mod stats;
pub mod time;

pub use changes::Changes;
pub use float::F64;
pub use health::{FeedHealth, LocalHealth};
pub use point::Point;
pub use record::{Body, EventKind, Feed, Record, WeatherKind, ZoneIdx};
pub use rows::{ClashReason, ClashRow, Confidence, IndicatorRow, Lines, Missing, RowV2, Trend};
pub use stats::{EngineStats, Latency, Phase};
