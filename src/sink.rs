//! Where the engine's output goes besides the final file: the embedded store.
//!
//! At each complete epoch, worker 0 drains the changes of the collected output
//! ([`vigie_engine::Changes`]), turns them into points (only the fields that changed) and
//! writes them to the store with the feeds' health, as one revision. The revision's time is
//! the engine's clock (the latest incident or density hour seen), so that "as known at" reads
//! mean "when the feeds had reached that hour".

use anyhow::Context;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use vigie_engine::Changes;
use vigie_model::point::{self, Point};
use vigie_model::{Feed, Record};
use vigie_store::{Ack, Options, Stats, Store};

/// Per-feed counts shared by the workers of a process.
pub struct FeedHealth {
    accepted: [AtomicU64; 6],
    last_event_us: [AtomicI64; 6],
    rejected: AtomicU64,
}

impl Default for FeedHealth {
    fn default() -> Self {
        FeedHealth {
            accepted: Default::default(),
            last_event_us: std::array::from_fn(|_| AtomicI64::new(i64::MIN)),
            rejected: AtomicU64::new(0),
        }
    }
}

fn feed_index(f: Feed) -> usize {
    Feed::ALL
        .iter()
        .position(|x| *x == f)
        .expect("every feed is in ALL")
}

impl FeedHealth {
    /// Counts an accepted record.
    pub fn accept(&self, r: &Record) {
        let i = feed_index(r.feed);
        self.accepted[i].fetch_add(1, Ordering::Relaxed);
        self.last_event_us[i].fetch_max(r.ts, Ordering::Relaxed);
    }

    /// Counts a rejected line.
    pub fn reject(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// The health points at `ts_ms`: per feed seen, records accepted so far and the latest
    /// event time (ms); and the lines rejected so far.
    pub fn points(&self, ts_ms: i64) -> Vec<Point> {
        let mut out = Vec::new();
        for f in Feed::ALL {
            let i = feed_index(f);
            let n = self.accepted[i].load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            let last = self.last_event_us[i].load(Ordering::Relaxed);
            out.push(Point::new(
                point::FEED,
                vec![("feed".into(), f.name().into())],
                vec![
                    ("accepted".into(), n as f64),
                    ("last_event_ms".into(), (last / 1000) as f64),
                ],
                ts_ms,
            ));
        }
        out.push(Point::new(
            point::FEED,
            vec![("feed".into(), "all".into())],
            vec![(
                "rejected".into(),
                self.rejected.load(Ordering::Relaxed) as f64,
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

/// The store, fed by worker 0.
pub struct StoreSink {
    store: Store,
    /// Print each acknowledgement on stderr.
    pub log_acks: bool,
    pub samples: u64,
    pub writes: u64,
    pub busy: Duration,
}

impl StoreSink {
    /// Opens the store in `dir`, saying what recovery found; the head is written out as
    /// blocks past `flush_versions` versions.
    pub fn open(dir: &Path, flush_versions: usize) -> anyhow::Result<StoreSink> {
        let opts = Options {
            head_max_versions: flush_versions.max(1),
            ..Options::default()
        };
        let (store, report) = Store::open(dir, opts)
            .with_context(|| format!("opening the store in {}", dir.display()))?;
        if report.wal_records > 0 || report.wal_truncated_bytes > 0 || report.removed_tmp > 0 {
            eprintln!(
                "vigie: store {}: recovered {} log records ({} versions), cut {} bytes of an unfinished write, removed {} unfinished blocks",
                dir.display(),
                report.wal_records,
                report.head_versions,
                report.wal_truncated_bytes,
                report.removed_tmp
            );
        }
        Ok(StoreSink {
            store,
            log_acks: true,
            samples: 0,
            writes: 0,
            busy: Duration::ZERO,
        })
    }

    /// Writes `points` and the feeds' health as one revision, known at the clock's hour;
    /// `epoch` (none: the end) is the last complete epoch they reflect, for the log.
    pub fn publish(
        &mut self,
        mut points: Vec<Point>,
        health: &FeedHealth,
        clock_hour: Option<i64>,
        epoch: Option<u64>,
    ) -> anyhow::Result<Ack> {
        let started = Instant::now();
        let known_at = clock_hour.map_or(0, |h| h * 3_600_000);
        let rev = known_at.max(self.store.last_revision().saturating_add(1));
        points.extend(health.points(rev));
        let ack = self.store.write_points(&points, known_at)?;
        self.samples += ack.samples as u64;
        self.writes += 1;
        self.busy += started.elapsed();
        if self.log_acks {
            let through = epoch.map_or("the end".to_string(), |e| format!("epoch {e}"));
            eprintln!(
                "vigie: store acknowledged revision {} ({} samples, through {through})",
                ack.revision, ack.samples
            );
        }
        Ok(ack)
    }

    /// Flushes the head to blocks and says how large the store is.
    pub fn finish(mut self) -> anyhow::Result<Stats> {
        self.store.flush()?;
        Ok(self.store.stats()?)
    }
}
