//! The feeds' health: per feed, the records accepted so far, the latest event time, and the
//! lines rejected; shared by the workers of a replay or the engine thread of `vigie run`, read
//! by the sinks (as `feed` points) and by the server (the wall's feed table).

use crate::point::{self, Point};
use crate::{Feed, Record};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_feed_and_live_rejections_in_the_points() {
        let h = FeedHealth::default();
        let r = Record {
            feed: Feed::Incident,
            ts: 7_200_000_000,
            seq: 0,
            id: None,
            body: None,
        };
        h.accept(&r);
        let mut local = LocalHealth::default();
        local.accept(&Record {
            ts: 3_600_000_000,
            ..r.clone()
        });
        local.reject();
        h.add(&mut local);
        let snap = h.snapshot();
        let inc = snap.iter().find(|(f, _, _)| *f == Feed::Incident).unwrap();
        assert_eq!((inc.1, inc.2), (2, 7_200_000_000));
        h.set_live_rejections(&[("density".to_string(), 3), ("unknown".to_string(), 2)].into());
        let points = h.points(5);
        let all = points.iter().find(|p| p.tags[0].1 == "all").unwrap();
        assert_eq!(all.fields, vec![("rejected".to_string(), 5.0)]);
        let density = points.iter().find(|p| p.tags[0].1 == "density").unwrap();
        assert!(density.fields.contains(&("rejected".to_string(), 3.0)));
    }
}
