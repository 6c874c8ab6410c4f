//! Where the engine's output goes besides the final file: the embedded store and InfluxDB.
//!
//! At each complete epoch, worker 0 drains the changes of the collected output
//! ([`vigie_engine::Changes`]), turns them into points (only the fields that changed) and
//! writes them with the feeds' health, as one revision, to the store and to InfluxDB. The revision's time is
//! the engine's clock (the latest incident or density hour seen), so that "as known at" reads
//! mean "when the feeds had reached that hour".

use anyhow::Context;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use vigie_config::{InfluxConfig, StoreConfig};
use vigie_connectors::influx::{FlushReport, InfluxSink, SinkStats};
use vigie_engine::Changes;
use vigie_model::point::{self, Point};
use vigie_model::{Feed, Record};
use vigie_store::{Options, Stats, Store};

/// Per-feed counts shared by the workers of a process.
pub struct FeedHealth {
    accepted: [AtomicU64; FEEDS],
    last_event_us: [AtomicI64; FEEDS],
    rejected: AtomicU64,
    /// Live sources' rejected lines by feed (`vigie run`), as their counters give them.
    live_rejected: [AtomicU64; FEEDS],
}

impl Default for FeedHealth {
    fn default() -> Self {
        FeedHealth {
            accepted: Default::default(),
            last_event_us: std::array::from_fn(|_| AtomicI64::new(i64::MIN)),
            rejected: AtomicU64::new(0),
            live_rejected: Default::default(),
        }
    }
}

/// Number of feeds.
const FEEDS: usize = Feed::ALL.len();

fn feed_index(f: Feed) -> usize {
    Feed::ALL
        .iter()
        .position(|x| *x == f)
        .expect("every feed is in ALL")
}

/// A worker's own counts, added to the shared [`FeedHealth`] at each epoch, so that workers do
/// not write to the shared counters for every record.
pub struct LocalHealth {
    accepted: [u64; FEEDS],
    last_event_us: [i64; FEEDS],
    rejected: u64,
}

impl Default for LocalHealth {
    fn default() -> Self {
        LocalHealth {
            accepted: [0; FEEDS],
            last_event_us: [i64::MIN; FEEDS],
            rejected: 0,
        }
    }
}

impl LocalHealth {
    /// Counts an accepted record.
    pub fn accept(&mut self, r: &Record) {
        let i = feed_index(r.feed);
        self.accepted[i] += 1;
        self.last_event_us[i] = self.last_event_us[i].max(r.ts);
    }

    /// Counts a rejected line.
    pub fn reject(&mut self) {
        self.rejected += 1;
    }
}

impl FeedHealth {
    /// Adds a worker's counts, and resets them.
    pub fn add(&self, local: &mut LocalHealth) {
        for i in 0..local.accepted.len() {
            if local.accepted[i] > 0 {
                self.accepted[i].fetch_add(local.accepted[i], Ordering::Relaxed);
                self.last_event_us[i].fetch_max(local.last_event_us[i], Ordering::Relaxed);
            }
        }
        self.rejected.fetch_add(local.rejected, Ordering::Relaxed);
        *local = LocalHealth::default();
    }

    /// Counts an accepted record.
    pub fn accept(&self, r: &Record) {
        let i = feed_index(r.feed);
        self.accepted[i].fetch_add(1, Ordering::Relaxed);
        self.last_event_us[i].fetch_max(r.ts, Ordering::Relaxed);
    }

    /// Per feed: records accepted so far and the latest event time (µs, `i64::MIN` when none).
    pub fn snapshot(&self) -> Vec<(Feed, u64, i64)> {
        Feed::ALL
            .iter()
            .map(|&f| {
                let i = feed_index(f);
                (
                    f,
                    self.accepted[i].load(Ordering::Relaxed),
                    self.last_event_us[i].load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Sets the live sources' rejected lines so far: `by_feed` (feed names; other names, such
    /// as `unknown`, count only in the total), replacing the previous figures.
    pub fn set_live_rejections(&self, by_feed: &std::collections::BTreeMap<String, u64>) {
        let mut other = 0;
        let mut per = [0u64; FEEDS];
        for (name, n) in by_feed {
            match Feed::parse(name) {
                Some(f) => per[feed_index(f)] += n,
                None => other += n,
            }
        }
        for (slot, n) in self.live_rejected.iter().zip(per) {
            slot.store(n, Ordering::Relaxed);
        }
        self.rejected.store(other, Ordering::Relaxed);
    }

    /// The health points at `ts_ms`: per feed seen, records accepted so far and the latest
    /// event time (ms), and live, its lines rejected so far; and the lines rejected so far.
    pub fn points(&self, ts_ms: i64) -> Vec<Point> {
        let mut out = Vec::new();
        let mut live_total = 0;
        for f in Feed::ALL {
            let i = feed_index(f);
            let n = self.accepted[i].load(Ordering::Relaxed);
            let rejected = self.live_rejected[i].load(Ordering::Relaxed);
            live_total += rejected;
            if n == 0 && rejected == 0 {
                continue;
            }
            let mut fields = vec![("accepted".into(), n as f64)];
            let last = self.last_event_us[i].load(Ordering::Relaxed);
            if n > 0 {
                fields.push(("last_event_ms".into(), (last / 1000) as f64));
            }
            if rejected > 0 {
                fields.push(("rejected".into(), rejected as f64));
            }
            out.push(Point::new(
                point::FEED,
                vec![("feed".into(), f.name().into())],
                fields,
                ts_ms,
            ));
        }
        out.push(Point::new(
            point::FEED,
            vec![("feed".into(), "all".into())],
            vec![(
                "rejected".into(),
                (self.rejected.load(Ordering::Relaxed) + live_total) as f64,
            )],
            ts_ms,
        ));
        out
    }
}

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

/// The store, shared between the sinks (which write) and the query API (which reads).
pub type SharedStore = Arc<RwLock<Store>>;

/// The sinks worker 0 feeds: the embedded store and InfluxDB, each optional.
pub struct Sinks {
    store: Option<SharedStore>,
    influx: Option<InfluxSink>,
    last_rev: i64,
    /// Print each acknowledgement on stderr.
    pub log_acks: bool,
    samples: u64,
    writes: u64,
    busy: Duration,
}

impl Sinks {
    /// Opens the store in `store_dir`, laid out and bounded by `config`, and starts the
    /// InfluxDB sink, as asked.
    pub fn open(
        store_dir: Option<&Path>,
        config: &StoreConfig,
        influx: Option<&InfluxConfig>,
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
                    eprintln!(
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
            .map(InfluxSink::start)
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
            if self.log_acks {
                let through = epoch.map_or("the end".to_string(), |e| format!("epoch {e}"));
                eprintln!(
                    "vigie: store acknowledged revision {} ({} samples, through {through})",
                    ack.revision, ack.samples
                );
            }
        }
        if let Some(influx) = &self.influx {
            influx.send_durable(points)?;
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
        if let Some(influx) = self.influx {
            report.influx = Some(influx.close(influx_wait)?);
        }
        Ok(report)
    }
}
