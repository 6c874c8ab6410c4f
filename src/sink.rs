//! Where the engine's output goes besides the final file: the embedded store and InfluxDB.
//!
//! At each complete epoch, worker 0 drains the changes of the collected output
//! ([`vigie_model::Changes`]), turns them into points (only the fields that changed) and
//! writes them with the feeds' health, as one revision, to the store and to InfluxDB. The revision's time is
//! the engine's clock (the latest incident or density hour seen; live, the wall clock), so that
//! "as known at" reads mean "when the feeds had reached that hour".
//!
//! The store keeps each indicator at its hour with its revision; a time-series database has one
//! time axis, so InfluxDB gets the same revision in the model of
//! [`vigie_connectors::influx::model`] (forecasts stamped at their revision with the target hour
//! as a tag, beside the current hour's figures; `docs/tsdb.md`).

use anyhow::Context;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use vigie_config::{InfluxConfig, StoreConfig};
use vigie_connectors::influx::{FlushReport, InfluxSink, SinkStats, TsdbModel};
use vigie_model::point::{self, Point};
use vigie_model::{Changes, FeedHealth};
use vigie_store::{Options, SharedStore, Stats, Store};

/// The points of a set of changes.
pub fn change_points(changes: &Changes, zone_ids: &[String]) -> Vec<Point> {
    let mut out = Vec::with_capacity(changes.indicators.len() + changes.clashes.len());
    for (old, new) in &changes.indicators {
        if let Some(p) = point::indicator_point(old.as_ref(), new, &zone_ids[new.zone as usize]) {
            out.push(p);
        }
    }
    for (c, active) in &changes.clashes {
        out.push(point::clash_point(c, &zone_ids[c.zone as usize], *active));
    }
    out
}

/// Blocks a partition may have before the sink compacts it.
const COMPACT_AT_BLOCKS: usize = 4;

/// The store's options from its configuration.
pub fn store_options(c: &StoreConfig) -> Options {
    let day = 86_400_000i64;
    Options {
        partition_ms: c.partition_days as i64 * day,
        head_max_versions: c.flush_versions.max(1),
        retention_ms: c.retention_days.map(|d| d as i64 * day),
        keep_revisions_ms: c.keep_revisions_days.map(|d| d as i64 * day),
        ..Options::default()
    }
}

/// What the sinks did, for the report.
#[derive(Default)]
pub struct SinksReport {
    pub store: Option<(u64, u64, Duration, Stats)>,
    pub influx: Option<(FlushReport, SinkStats)>,
}

/// The sinks worker 0 feeds: the embedded store and InfluxDB, each optional.
pub struct Sinks {
    store: Option<SharedStore>,
    influx: Option<(InfluxSink, TsdbModel)>,
    last_rev: i64,
    /// Print each acknowledgement on stderr (`vigie replay`'s report); otherwise it is a
    /// debug-level log line (`vigie run`: one an epoch would drown the log).
    pub log_acks: bool,
    samples: u64,
    writes: u64,
    busy: Duration,
}

impl Sinks {
    /// Opens the store in `store_dir`, laid out and bounded by `config`, and starts the
    /// InfluxDB sink, as asked; `tz` is the city's time zone (the `day` tag of forecasts).
    pub fn open(
        store_dir: Option<&Path>,
        config: &StoreConfig,
        influx: Option<&InfluxConfig>,
        tz: chrono_tz::Tz,
    ) -> anyhow::Result<Sinks> {
        let store = match store_dir {
            None => None,
            Some(dir) => {
                let opts = store_options(config);
                let (store, report) = Store::open(dir, opts)
                    .with_context(|| format!("opening the store in {}", dir.display()))?;
                if report.wal_records > 0
                    || report.wal_truncated_bytes > 0
                    || report.removed_tmp > 0
                {
                    tracing::info!(
                        "vigie: store {}: recovered {} log records ({} versions), cut {} bytes of an unfinished write, removed {} unfinished blocks",
                        dir.display(),
                        report.wal_records,
                        report.head_versions,
                        report.wal_truncated_bytes,
                        report.removed_tmp
                    );
                }
                Some(store)
            }
        };
        let influx = influx
            .map(|c| InfluxSink::start(c).map(|s| (s, TsdbModel::new(tz))))
            .transpose()
            .context("starting the InfluxDB sink")?;
        Ok(Sinks {
            last_rev: store.as_ref().map_or(i64::MIN, Store::last_revision),
            store: store.map(|s| Arc::new(RwLock::new(s))),
            influx,
            log_acks: true,
            samples: 0,
            writes: 0,
            busy: Duration::ZERO,
        })
    }

    /// The store, for readers (the query API of `vigie run`).
    pub fn store(&self) -> Option<SharedStore> {
        self.store.clone()
    }

    /// True when there is a sink to feed.
    pub fn any(&self) -> bool {
        self.store.is_some() || self.influx.is_some()
    }

    /// Writes `points` and the feeds' health as one revision, known at `known_at` (ms; made
    /// greater than the last: a replay gives its clock's hour, `vigie run` the wall clock); `epoch` (none: the end) is the last complete epoch they
    /// reflect, for the log. The store acknowledges once its log is fsynced; InfluxDB gets
    /// them through its buffer, fsynced too.
    pub fn publish(
        &mut self,
        mut points: Vec<Point>,
        health: &FeedHealth,
        known_at: i64,
        epoch: Option<u64>,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let rev = known_at.max(self.last_rev.saturating_add(1));
        self.last_rev = rev;
        points.extend(health.points(rev));
        if let Some(store) = &self.store {
            let mut store = store.write().unwrap_or_else(|e| e.into_inner());
            let ack = store.write_points(&points, rev)?;
            debug_assert_eq!(ack.revision, rev);
            // Keep a few blocks per partition at most, and apply the retention, as the clock
            // moves.
            if store.needs_compaction(known_at, COMPACT_AT_BLOCKS) {
                store.compact(known_at)?;
            }
            self.samples += ack.samples as u64;
            self.writes += 1;
            let through = epoch.map_or("the end".to_string(), |e| format!("epoch {e}"));
            if self.log_acks {
                eprintln!(
                    "vigie: store acknowledged revision {} ({} samples, through {through})",
                    ack.revision, ack.samples
                );
            } else {
                tracing::debug!(
                    "vigie: store acknowledged revision {} ({} samples, through {through})",
                    ack.revision,
                    ack.samples
                );
            }
        }
        if let Some((influx, model)) = &mut self.influx {
            influx.send_durable(model.points(&points, rev))?;
        }
        self.busy += started.elapsed();
        Ok(())
    }

    /// Flushes the store's head to blocks, and waits up to `influx_wait` for InfluxDB to
    /// confirm what it was sent (what it does not stays in the buffer for the next run).
    pub fn finish(self, influx_wait: Duration) -> anyhow::Result<SinksReport> {
        let mut report = SinksReport::default();
        if let Some(store) = self.store {
            let mut store = store.write().unwrap_or_else(|e| e.into_inner());
            store.flush()?;
            let now = store.last_revision();
            if store.needs_compaction(now, 2) {
                store.compact(now)?;
            }
            report.store = Some((self.samples, self.writes, self.busy, store.stats()?));
        }
        if let Some((influx, _)) = self.influx {
            report.influx = Some(influx.close(influx_wait)?);
        }
        Ok(report)
    }
}
