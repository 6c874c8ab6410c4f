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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};
use vigie_config::{InfluxConfig, StoreConfig};
use vigie_connectors::influx::{FlushReport, InfluxSink, SinkStats, TsdbModel};
use vigie_model::point::{self, Point};
use vigie_model::{Changes, FeedHealth};
use vigie_store::{Flush, Options, SharedStore, Stats, Store};

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
        background_flush: true,
        ..Options::default()
    }
}

/// What the sinks did, for the report.
#[derive(Default)]
pub struct SinksReport {
    pub store: Option<(u64, u64, Duration, Stats)>,
    pub influx: Option<(FlushReport, SinkStats)>,
}

/// The store's upkeep on a thread of its own, so that the engine's writes never wait for it
/// (hundreds of milliseconds under a live load, where an epoch is 20): writing a full head
/// out as blocks, which the writer sets aside in its write ([`Store::begin_flush`]) and hands
/// over, and merging a partition's blocks, which the writer asks for when a partition has too
/// many or the retention has work. The thread takes the store's lock only to plan a
/// compaction and to put blocks in place, not while it writes them.
struct Upkeep {
    jobs: Option<Sender<Job>>,
    /// A compaction asked for and not yet started: asked once.
    compaction_asked: Arc<AtomicBool>,
    /// Notified after each flush put in place, and when the thread stops.
    flushed: Arc<(Mutex<()>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The first job that failed, handed to the writer at its next write.
    failed: Arc<Mutex<Option<anyhow::Error>>>,
}

/// The niceness of the store's upkeep thread (Linux gives each thread its own).
const UPKEEP_NICE: i32 = 10;

/// Puts the calling thread below the engine's and the server's (nice 10): on a machine with
/// no core to spare, an epoch or a request goes first, the blocks wait.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), UPKEEP_NICE)
    {
        tracing::debug!("vigie: the store's upkeep thread keeps its priority: {e}");
    }
}

enum Job {
    Flush(Flush),
    Compact(i64),
}

impl Upkeep {
    fn start(store: SharedStore) -> anyhow::Result<Upkeep> {
        let (jobs, todo) = mpsc::channel::<Job>();
        let failed = Arc::new(Mutex::new(None));
        let compaction_asked = Arc::new(AtomicBool::new(false));
        let flushed = Arc::new((Mutex::new(()), Condvar::new()));
        let (report_to, asked) = (Arc::clone(&failed), Arc::clone(&compaction_asked));
        let notify = Arc::clone(&flushed);
        let thread = std::thread::Builder::new()
            .name("store-upkeep".into())
            .spawn(move || {
                lower_priority();
                for job in todo {
                    let done = match job {
                        // The log's segments the blocks now hold are deleted once the store
                        // is let go (and a writer waiting for the flush told): deleting a
                        // large file took 32-37 ms here, which writers would wait for.
                        Job::Flush(flush) => flush
                            .run()
                            .and_then(|blocks| {
                                let mut s = store.write().unwrap_or_else(|e| e.into_inner());
                                s.finish_flush(blocks)
                            })
                            .inspect(|_| notify.1.notify_all())
                            .and_then(|cleanup| cleanup.run())
                            .context("writing the store's head out as blocks"),
                        Job::Compact(now) => {
                            asked.store(false, Ordering::Relaxed);
                            compact_once(&store, now).context("compacting the store")
                        }
                    };
                    if let Err(e) = done {
                        tracing::error!("vigie: {e:#}");
                        let mut failed = report_to.lock().unwrap_or_else(|e| e.into_inner());
                        failed.get_or_insert(e);
                        break;
                    }
                }
                notify.1.notify_all();
            })
            .context("starting the store's upkeep thread")?;
        Ok(Upkeep {
            jobs: Some(jobs),
            compaction_asked,
            flushed,
            thread: Some(thread),
            failed,
        })
    }

    /// Hands a job over; an earlier failure comes back here.
    fn send(&self, job: Job) -> anyhow::Result<()> {
        if let Some(e) = self.failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(e);
        }
        let sent = self.jobs.as_ref().map(|jobs| jobs.send(job));
        if let Some(Err(_)) = sent {
            anyhow::bail!("the store's upkeep thread has stopped");
        }
        Ok(())
    }

    /// Waits until the head is no longer full twice over with a flush under way (a writer
    /// faster than the flushes: the head would grow without bound).
    fn wait_for_flush(&self, store: &SharedStore) -> anyhow::Result<()> {
        let (lock, done) = &*self.flushed;
        let mut guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(e) = self.failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return Err(e);
            }
            if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                anyhow::bail!("the store's upkeep thread has stopped");
            }
            if !store
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .head_overfull()
            {
                return Ok(());
            }
            guard = done
                .wait_timeout(guard, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Asks for a compaction at `now` (ms) unless one is asked for already.
    fn ask_compaction(&self, now: i64) -> anyhow::Result<()> {
        if self.compaction_asked.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        self.send(Job::Compact(now))
    }

    /// Lets the jobs handed over end, and stops the thread.
    fn stop(mut self) -> anyhow::Result<()> {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                anyhow::bail!("the store's upkeep thread panicked");
            }
        }
        match self.failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// One compaction at `now` (ms), if still needed: planned and put in place under the store's
/// write lock, merged without it.
fn compact_once(store: &SharedStore, now: i64) -> anyhow::Result<()> {
    let plan = {
        let mut s = store.write().unwrap_or_else(|e| e.into_inner());
        if !s.needs_compaction(now, COMPACT_AT_BLOCKS) {
            return Ok(());
        }
        s.plan_compaction(now)?
    };
    if plan.is_empty() {
        return Ok(());
    }
    let merged = plan.run()?;
    let report = store
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .finish_compaction(merged)?;
    tracing::debug!("vigie: store compacted: {report:?}");
    Ok(())
}

/// The sinks worker 0 feeds: the embedded store and InfluxDB, each optional.
pub struct Sinks {
    store: Option<SharedStore>,
    upkeep: Option<Upkeep>,
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
        let last_rev = store.as_ref().map_or(i64::MIN, Store::last_revision);
        let store = store.map(|s| Arc::new(RwLock::new(s)));
        let upkeep = store.clone().map(Upkeep::start).transpose()?;
        Ok(Sinks {
            last_rev,
            store,
            upkeep,
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
        if let Some(shared) = &self.store {
            let mut store = shared.write().unwrap_or_else(|e| e.into_inner());
            let ack = store.write_points(&points, rev)?;
            debug_assert_eq!(ack.revision, rev);
            // A full head is written out, and partitions with too many blocks merged (the
            // retention applied as the clock moves), on the upkeep thread.
            let flush = if store.needs_flush() {
                store.begin_flush()?
            } else {
                None
            };
            let compact = store.needs_compaction(known_at, COMPACT_AT_BLOCKS);
            let overfull = store.head_overfull();
            drop(store);
            if let Some(upkeep) = &self.upkeep {
                if let Some(job) = flush {
                    upkeep.send(Job::Flush(job))?;
                }
                if compact {
                    upkeep.ask_compaction(known_at)?;
                }
                if overfull {
                    upkeep.wait_for_flush(shared)?;
                }
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
        if let Some(upkeep) = self.upkeep {
            upkeep.stop()?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn point(i: usize, ts_ms: i64) -> Point {
        Point {
            measurement: "indicator".into(),
            tags: vec![("zone".into(), format!("z{}", i % 7))],
            fields: vec![("risk".into(), i as f64), ("load".into(), (i * 3) as f64)],
            ts_ms,
        }
    }

    /// Writes through the upkeep thread (flushes and compactions off the writer's path) lose
    /// nothing, the head stays bounded while flushes run, and the store reopened after the
    /// sinks finish holds every write's latest value.
    #[test]
    fn the_upkeep_thread_flushes_and_compacts_without_losing_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            dir: None,
            partition_days: 1,
            flush_versions: 40,
            ..StoreConfig::default()
        };
        let mut sinks = Sinks::open(Some(dir.path()), &config, None, chrono_tz::UTC).unwrap();
        sinks.log_acks = false;
        let health = FeedHealth::default();
        let store = sinks.store().unwrap();
        let day = 86_400_000i64;
        let mut last = std::collections::BTreeMap::new();
        for rev in 0..300usize {
            // Points spread over five days, so that flushes write several partitions and
            // compactions have blocks to merge.
            let points: Vec<Point> = (0..12)
                .map(|k| point(rev * 12 + k, ((rev * 7 + k * 13) % 120) as i64 * day / 24))
                .collect();
            for p in &points {
                last.insert((p.tags[0].1.clone(), p.ts_ms), p.fields.clone());
            }
            sinks
                .publish(points, &health, 1_000 + rev as i64, Some(rev as u64))
                .unwrap();
            let held = store.read().unwrap().stats().unwrap().head_versions;
            // Two full heads (the one being written out and a new one) and a write's worth.
            assert!(held <= 3 * 40 + 200, "{held} versions held in memory");
        }
        let report = sinks.finish(Duration::from_secs(1)).unwrap();
        let (_, writes, _, stats) = report.store.unwrap();
        assert_eq!(writes, 300);
        assert_eq!(stats.head_versions, 0);
        drop(store);
        let (store, _) = Store::open(dir.path(), store_options(&config)).unwrap();
        for ((zone, ts), fields) in last {
            for (field, value) in fields {
                let key =
                    vigie_store::SeriesKey::new("indicator", &[("zone", zone.as_str())], &field);
                let got = store.range(&key, ts, ts + 1, None).unwrap();
                assert_eq!(got, vec![(ts, value)], "{key} at {ts}");
            }
        }
    }
}
