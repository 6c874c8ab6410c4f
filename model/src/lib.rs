//! Plain shared types of vigie: feeds, validated records, facts, indicator and clash rows,
//! and the time arithmetic of the reference indicator model (`hour`, `how`, `week`).
//!
//! Every other crate depends on this one; it depends on no engine, no I/O. Records that cross
//! into the dataflow are already validated: a [`Record`] cannot hold an out-of-range severity,
//! an event that ends before it starts, or a zone that the configuration does not know.

mod float;
pub mod point;
mod record;
mod rows;
pub mod time;

pub use float::F64;
pub use point::Point;
pub use record::{Body, EventKind, Feed, Record, WeatherKind, ZoneIdx};
pub use rows::{ClashReason, ClashRow, Confidence, IndicatorRow, Missing, RowV2, Trend};
