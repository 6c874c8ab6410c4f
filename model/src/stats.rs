//! What the engine of `vigie run` tells about itself: records taken in, epochs closed, the
//! queue from the ingest log, the latest event time, store writes, the update latency's
//! quantiles, and where the epochs' time goes (each [`Phase`]'s total, the quantiles of an
//! epoch's work). The engine thread writes it, the server renders it on `/metrics` and the wall's
//! feed table; plain atomics, no lock on the engine's path but the latency's.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The parts of an epoch's work, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// From the epoch's close until the dataflow has computed it.
    Dataflow,
    /// Its changes drained and written: the store (durable) and InfluxDB's buffer.
    Sinks,
    /// Its changes handed to the observers: the wall's board and stream, the alerting.
    Publish,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Dataflow, Phase::Sinks, Phase::Publish];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Dataflow => "dataflow",
            Phase::Sinks => "sinks",
            Phase::Publish => "publish",
        }
    }
}

/// The engine's counters (see the module's text).
#[derive(Debug)]
pub struct EngineStats {
    pub records: AtomicU64,
    pub epochs: AtomicU64,
    /// Records committed to the ingest log and not yet in the dataflow.
    pub queued: AtomicI64,
    /// The latest event time taken in (µs); `i64::MIN` before any.
    pub last_event_us: AtomicI64,
    /// Revisions the store acknowledged.
    pub store_writes: AtomicU64,
    latency: Mutex<Option<Latency>>,
    /// Time the closed epochs spent in each phase, in the order of [`Phase::ALL`] (µs).
    phase_us: [AtomicU64; 3],
    /// Quantiles of an epoch's work, from its close until its changes are published (the
    /// epochs that had news).
    epoch_work: Mutex<Option<Latency>>,
}

/// Quantiles of a duration: the time from a record's commit to the indicator update it
/// causes, or an epoch's work.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    /// Seconds at the 0.5, 0.99 and 0.999 quantiles.
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    /// Records (or epochs) measured.
    pub count: u64,
}

impl Default for EngineStats {
    fn default() -> Self {
        EngineStats {
            records: AtomicU64::new(0),
            epochs: AtomicU64::new(0),
            queued: AtomicI64::new(0),
            last_event_us: AtomicI64::new(i64::MIN),
            store_writes: AtomicU64::new(0),
            latency: Mutex::new(None),
            phase_us: Default::default(),
            epoch_work: Mutex::new(None),
        }
    }
}

impl EngineStats {
    /// Records taken in so far.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Epochs closed so far.
    pub fn epochs(&self) -> u64 {
        self.epochs.load(Ordering::Relaxed)
    }

    /// Records waiting between the log and the dataflow.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed).max(0) as u64
    }

    /// The latest event time taken in (µs), if any.
    pub fn last_event_us(&self) -> Option<i64> {
        let v = self.last_event_us.load(Ordering::Relaxed);
        (v != i64::MIN).then_some(v)
    }

    /// The latency's quantiles so far, if any record was measured.
    pub fn latency(&self) -> Option<Latency> {
        *self.latency.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the latency's quantiles (the engine thread, after each epoch).
    pub fn set_latency(&self, l: Latency) {
        *self.latency.lock().unwrap_or_else(|e| e.into_inner()) = Some(l);
    }

    /// Adds `d` to the time spent in `phase`.
    pub fn add_phase(&self, phase: Phase, d: Duration) {
        self.phase_us[phase as usize].fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// The time the closed epochs spent in `phase` so far (seconds).
    pub fn phase_seconds(&self, phase: Phase) -> f64 {
        self.phase_us[phase as usize].load(Ordering::Relaxed) as f64 / 1e6
    }

    /// The quantiles of an epoch's work so far, if an epoch with news was measured.
    pub fn epoch_work(&self) -> Option<Latency> {
        *self.epoch_work.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the quantiles of an epoch's work (the engine thread, after each epoch with news).
    pub fn set_epoch_work(&self, l: Latency) {
        *self.epoch_work.lock().unwrap_or_else(|e| e.into_inner()) = Some(l);
    }
}
