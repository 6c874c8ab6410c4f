//! Live ingest: the door every live source (HTTP, MQTT) goes through.
//!
//! Sources parse and validate payloads into [`vigie_model::Record`]s with the same code as file
//! replay ([`crate::validate`], [`crate::mapped`]); [`IngestLog::commit`] makes a batch durable
//! (appended to the log and fsynced, grouped with whatever other sources committed meanwhile)
//! and only then returns, so a source acknowledges (HTTP 2xx, MQTT PUBACK) only what survives a
//! crash. Committed records go on, in log order, to the engine; on restart the engine first
//! reads back everything the log holds.
//!
//! - [`log`]: the durable ingest log.
//! - [`mqtt`]: the MQTT source.
//! - What HTTP ingest (the `vigie-server` crate) and MQTT share: [`payload`] (request bodies to
//!   records and rejected lines), [`lineproto`] (the line-protocol reader), [`dead_letters`] and
//!   [`metrics`].

pub mod dead_letters;
pub mod lineproto;
pub mod log;
pub mod metrics;
pub mod mqtt;
pub mod payload;

pub use dead_letters::DeadLetters;
pub use log::{
    Committed, Compaction, CompactionStats, Delivery, IngestError, IngestLog, Keep, Outcome,
};
pub use metrics::Metrics;
pub use mqtt::{MqttCounters, MqttRejection, MqttSource, MqttStats, TopicCounts};

/// Why one line of a payload was not accepted: where (line, field) and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LineError {
    /// Line in the payload, from 1.
    pub line: u64,
    /// The kind of rejection (`malformed`, `missing_field`, `forbidden_feed`, …).
    pub kind: &'static str,
    /// The field at fault, when one is.
    pub field: Option<String>,
    pub reason: String,
}

/// SHA-256 of the parts joined by a 0 byte, in hex: the digest of a delivery.
pub fn digest(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
