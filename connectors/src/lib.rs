//! Connectors: where records come from and where results go. File replay (NDJSON and mapped
//! CSV) and the validation every source shares; the output file ([`output`]); the InfluxDB 2
//! sink with its on-disk buffer ([`influx`]); live ingest ([`ingest`]): privacy at the door, its
//! durable log, the MQTT source, and what HTTP ingest (the `vigie-server` crate) parses bodies
//! with. No HTTP server here.
//!
//! Validation happens here, at the edge: the engine receives only typed, checked
//! [`vigie_model::Record`]s, and every bad line comes back as a [`files::Rejection`] that says
//! where (input, line), which field, and why.

pub mod csvtext;
pub mod files;
pub mod influx;
pub mod ingest;
pub mod mapped;
pub mod output;
pub mod privacy;
pub mod raw;
pub mod sys;
pub mod validate;

pub use files::{InputSpec, Item, ReadAhead, RecordReader, Rejection};
pub use privacy::Privacy;
pub use validate::{parse_ndjson_line, Checks, RecordError, RejectKind};
