//! The InfluxDB 2 sink: sends the engine's [`Point`](vigie_model::Point)s to an InfluxDB 2
//! server (or any server of its write API, such as VictoriaMetrics) without losing any when
//! the server is down or vigie restarts.
//!
//! - [`model`]: the data model in the database: forecasts stamped at their revision, with
//!   their target hour and lead time, beside the current hour's figures (`docs/tsdb.md`).
//! - [`line`]: the line-protocol encoding, a pure function.
//! - [`buffer`]: the bounded on-disk buffer of what the server has not confirmed yet.
//! - [`sink`]: [`InfluxSink`], the API the binary calls, and the thread that sends.
//!
//! The path of a point: [`InfluxSink::send`] encodes it and appends it to the buffer (the
//! producer blocks while the buffer is full); the sink's thread reads batches from the buffer
//! (`batch_points` points, or whatever is there after `batch_ms`), posts each to
//! `/api/v2/write?org=…&bucket=…&precision=ms` with the `influxdb2` client, retries failures
//! with a doubling delay (capped), and moves the buffer's cursor past a batch once the server
//! answers 2xx. Delivery is at least once: a batch confirmed just before a crash, whose cursor
//! move did not reach the disk, is sent again, with the same values.

pub mod buffer;
pub mod line;
pub mod model;
pub mod sink;

pub use line::{encode, Encoded};
pub use model::TsdbModel;
pub use sink::{FlushReport, InfluxError, InfluxSink, SinkStats};
