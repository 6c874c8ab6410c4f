//! The records a running engine keeps at hand to explain its live figures: every counted
//! record whose own hour (or, for the agenda, whose end) is within the horizon of the clock,
//! with upserts resolved as `docs/model.md` says (greatest `ts`, then the last arrived; a
//! cancellation removes the id), so that [`crate::explain::records_behind`] can cite them.
//!
//! **Bounded memory.** It keeps records from `clock − past_hours − 2` on (the horizon and the
//! two hours before it that `recent` reaches back to) and at most `capacity` records; past that,
//! the oldest plain records go first, and [`Window::complete_from`] says from which hour on
//! what it holds is whole. Records older than the horizon — those behind the baseline, up to a
//! year of incidents — are not kept: the engine holds them only as hourly tallies, and
//! `vigie query explain` on the replay's files cites them one by one.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use vigie_model::time::hour_of;
use vigie_model::{Body, Feed, Record};

/// Records kept by default: some 10 MB of records.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// The index; shared between the engine thread (which feeds it) and the readers.
#[derive(Debug)]
pub struct RecentRecords {
    past_hours: i64,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Records without an id, in arrival order.
    plain: VecDeque<Record>,
    /// The winner so far of each upserted id, `None` body for a cancellation.
    upserts: HashMap<(Feed, String), Record>,
    /// The first hour of the window (records before it are retired).
    floor: i64,
    /// The greatest hour of a record dropped for room, if any.
    dropped_upto: Option<i64>,
}

/// What the index holds for one read.
#[derive(Debug)]
pub struct Window<'a> {
    /// The counted records (cancellations and superseded versions left out).
    pub counted: Vec<&'a Record>,
    /// The first hour from which the records are whole: the horizon's start less two hours,
    /// or later when records were dropped for room.
    pub complete_from: i64,
}

/// The hour a record matters until: the end of an event or deployment, else its own hour.
fn last_hour(r: &Record) -> i64 {
    match &r.body {
        Some(Body::Event { end, .. }) | Some(Body::Deployment { end, .. }) => hour_of(*end - 1),
        _ => hour_of(r.ts),
    }
}

impl RecentRecords {
    /// An empty index for a horizon reaching `past_hours` back, holding at most `capacity`.
    pub fn new(past_hours: i64, capacity: usize) -> RecentRecords {
        RecentRecords {
            past_hours,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                floor: i64::MIN,
                ..Inner::default()
            }),
        }
    }

    /// Takes in records as the engine does (in arrival order).
    pub fn insert(&self, records: &[Record]) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for r in records {
            match &r.id {
                None => {
                    if r.body.is_some() && last_hour(r) >= inner.floor {
                        inner.plain.push_back(r.clone());
                    }
                }
                Some(id) => {
                    let slot = inner.upserts.entry((r.feed, id.clone()));
                    match slot {
                        std::collections::hash_map::Entry::Occupied(mut o) => {
                            if (r.ts, r.seq) > (o.get().ts, o.get().seq) {
                                o.insert(r.clone());
                            }
                        }
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(r.clone());
                        }
                    }
                }
            }
        }
        self.make_room(&mut inner);
    }

    /// Moves the clock to hour `clock_hour`: records that ended before the window go.
    pub fn advance(&self, clock_hour: i64) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let floor = clock_hour - self.past_hours - 2;
        if floor <= inner.floor {
            return;
        }
        inner.floor = floor;
        inner.plain.retain(|r| last_hour(r) >= floor);
        // A cancellation is kept as long as the versions it beats could still arrive late:
        // while its own time is in the window.
        inner.upserts.retain(|_, r| last_hour(r) >= floor);
    }

    fn make_room(&self, inner: &mut Inner) {
        while inner.plain.len() + inner.upserts.len() > self.capacity {
            match inner.plain.pop_front() {
                Some(r) => {
                    let h = hour_of(r.ts);
                    inner.dropped_upto = Some(inner.dropped_upto.map_or(h, |d| d.max(h)));
                }
                None => break,
            }
        }
    }

    /// Records held (plain and upserted), for the metrics.
    pub fn len(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.plain.len() + inner.upserts.len()
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `read` with the counted records and the hour from which they are whole.
    pub fn read<T>(&self, read: impl FnOnce(Window<'_>) -> T) -> T {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let counted = inner
            .plain
            .iter()
            .chain(inner.upserts.values().filter(|r| r.body.is_some()))
            .collect();
        let complete_from = inner
            .dropped_upto
            .map_or(inner.floor, |d| inner.floor.max(d + 1));
        read(Window {
            counted,
            complete_from,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigie_model::time::HOUR_US;

    fn incident(h: i64, seq: u64, id: Option<&str>, cancelled: bool) -> Record {
        Record {
            feed: Feed::Incident,
            ts: h * HOUR_US + 60,
            seq,
            id: id.map(str::to_string),
            body: (!cancelled).then_some(Body::Incident {
                zone: 0,
                severity: 2,
            }),
        }
    }

    fn seqs(index: &RecentRecords) -> Vec<u64> {
        index.read(|w| {
            let mut s: Vec<u64> = w.counted.iter().map(|r| r.seq).collect();
            s.sort();
            s
        })
    }

    #[test]
    fn upserts_resolve_and_the_clock_retires_what_left_the_window() {
        let index = RecentRecords::new(10, 100);
        index.insert(&[
            incident(100, 0, None, false),
            incident(100, 1, Some("a"), false),
            incident(99, 2, Some("a"), false), // older ts: loses
            incident(101, 3, Some("b"), false),
            incident(101, 4, Some("b"), true), // the cancellation wins
        ]);
        assert_eq!(seqs(&index), vec![0, 1]);
        index.advance(112); // floor 100: hour 100 stays
        assert_eq!(seqs(&index), vec![0, 1]);
        index.advance(113); // floor 101
        assert_eq!(seqs(&index), Vec::<u64>::new());
        assert_eq!(index.read(|w| w.complete_from), 101);
        // The cancellation of hour 101 is kept (it still beats a late older version); a
        // record from before the window is not taken in.
        assert_eq!(index.len(), 1);
        index.insert(&[
            incident(100, 6, Some("b"), false),
            incident(90, 5, None, false),
        ]);
        assert_eq!(seqs(&index), Vec::<u64>::new());
        index.advance(114);
        assert!(index.is_empty());
    }

    #[test]
    fn the_capacity_drops_the_oldest_and_says_from_when_it_is_whole() {
        let index = RecentRecords::new(1000, 3);
        index.insert(
            &(0..5)
                .map(|i| incident(10 + i, i as u64, None, false))
                .collect::<Vec<_>>(),
        );
        assert_eq!(seqs(&index), vec![2, 3, 4]);
        assert_eq!(index.read(|w| w.complete_from), 12);
        assert_eq!(index.len(), 3);
    }
}
