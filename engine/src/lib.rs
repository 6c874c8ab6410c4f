//! The vigie engine: the reference indicator model as an incremental timely /
//! differential-dataflow graph ([`graph`]), and the worker-side driver that feeds it,
//! retires expired records and collects its output ([`driver`]).
//!
//! The engine does no I/O: records arrive validated, results leave as collections or through
//! the driver's callbacks. Results depend only on the records (and their arrival `seq` where the
//! model breaks ties by arrival), not on their order, batching, or the number of workers or
//! processes.

pub mod calendar;
pub mod driver;
pub mod graph;
pub mod zone;

pub use driver::{Collected, Driver, Expiry};
pub use graph::{build, GraphParams, Inputs, Outputs};

/// The timely version the engine is built on, for starting workers and clusters.
pub use timely;
