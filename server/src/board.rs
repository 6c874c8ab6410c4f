//! What the wall and the query API read in `vigie run`: the current board and the live events.
//! The engine thread hands each complete epoch to [`Board::observe`]; the routes read.
//!
//! - The **board**: the latest indicator row of every zone and horizon hour, the active
//!   clashes, the clock hour and the feeds' health, kept in memory by an [`Observer`] of the
//!   engine (called after each complete epoch, once the sinks have written it). Latest
//!   figures, the zone map and the time slider read it; ranges and explanations read the store.
//! - The **events** of the live stream (`GET /api/v1/stream`, server-sent events): each has a
//!   monotonically increasing id (the first is the process's start time in microseconds, so
//!   ids keep growing across restarts). The last [`RING`] are kept, as long as their text
//!   stays within [`RING_BYTES`] (an event lists up to 2,000 rows), so a client that
//!   reconnects with `Last-Event-ID` gets every event it missed; one that missed more (or
//!   comes back after a restart) gets a `reset` event and refetches.
//!
//! Event kinds: `indicators` (the rows that changed, as the output lines of `docs/model.md`),
//! `clashes` (clashes that appeared or ended), `feeds` (feed health), `clock` (the clock hour
//! moved: every row of the horizon shifts, refetch), `alert` (from the alerting), `reset`.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::broadcast;
use vigie_config::{Config, ZoneSet};
use vigie_model::clock::now_us;
use vigie_model::time::format_ts;
use vigie_model::{Changes, ClashRow, EngineStats, FeedHealth, IndicatorRow, Lines};

/// Events kept for clients that reconnect…
pub const RING: usize = 4096;
/// …and the most text they may hold together (bytes). Without it, 4,096 events of up to 2,000
/// rows each could take gigabytes.
pub const RING_BYTES: usize = 8 << 20;

/// Rows in one `indicators` event: an epoch that changed more sends several.
pub const MAX_ROWS_PER_EVENT: usize = 2000;

/// One event of the live stream.
#[derive(Clone, Debug)]
pub struct Event {
    pub id: u64,
    pub kind: &'static str,
    /// JSON text, shared by the ring and every stream.
    pub data: Arc<str>,
}

/// What the engine has put out, as of its last complete epoch.
#[derive(Default)]
pub struct BoardState {
    /// The clock hour (hours since the epoch) of the last epoch; none before the first.
    pub clock: Option<i64>,
    pub rows: BTreeMap<(u32, i64), IndicatorRow>,
    pub clashes: BTreeSet<ClashRow>,
    /// Per feed: `(name, accepted, latest event time µs)`.
    pub feeds: Vec<(&'static str, u64, i64)>,
    /// Wall-clock time (µs) of the last complete epoch.
    pub updated_us: i64,
}

struct Ring {
    next: u64,
    events: VecDeque<Event>,
    /// Text held by `events`.
    bytes: usize,
}

/// The board and the live events, shared by the engine's observer and the API.
pub struct Board {
    pub config: Arc<Config>,
    state: RwLock<BoardState>,
    engine: Arc<EngineStats>,
    /// The first id of this process.
    pub first_id: u64,
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Event>,
    /// True once the server stops: open streams end, so the graceful shutdown does not wait
    /// for walls that never hang up.
    stopped: tokio::sync::watch::Sender<bool>,
}

/// An indicator row as the API writes it: the output line of `docs/model.md`.
pub fn row_json(row: &IndicatorRow, zone_id: &str) -> Value {
    serde_json::to_value(row.to_json(zone_id)).unwrap_or(Value::Null)
}

/// A clash as the API writes it: the output line of `docs/model.md`, and the zone's name.
pub fn clash_json(c: &ClashRow, zones: &ZoneSet) -> Value {
    let (id, name) = if (c.zone as usize) < zones.len() {
        let z = zones.get(c.zone);
        (z.id.as_str(), z.name.as_str())
    } else {
        ("?", "?")
    };
    let mut v = serde_json::to_value(c.to_json(id)).unwrap_or(Value::Null);
    v["name"] = json!(name);
    v
}

impl Board {
    /// An empty board for `config`'s zones; `engine` is what the feed table shows of the engine.
    pub fn new(config: Arc<Config>, engine: Arc<EngineStats>) -> Arc<Board> {
        let first_id = now_us().max(1) as u64;
        let (tx, _) = broadcast::channel(RING);
        Arc::new(Board {
            config,
            state: RwLock::new(BoardState::default()),
            engine,
            first_id,
            ring: Mutex::new(Ring {
                next: first_id,
                events: VecDeque::with_capacity(RING),
                bytes: 0,
            }),
            tx,
            stopped: tokio::sync::watch::channel(false).0,
        })
    }

    /// Ends every open stream (the server is stopping).
    pub fn stop(&self) {
        self.stopped.send_replace(true);
    }

    /// Becomes true when the server stops.
    pub fn stopped(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopped.subscribe()
    }

    /// The id of zone `z`.
    pub fn zone_id(&self, z: u32) -> &str {
        if (z as usize) < self.config.zones.len() {
            &self.config.zones.get(z).id
        } else {
            "?"
        }
    }

    /// Publishes an event to the stream: kept in the ring, sent to every subscriber.
    pub fn publish(&self, kind: &'static str, data: &Value) {
        self.publish_text(kind, data.to_string());
    }

    /// Publishes an event whose data is already JSON text.
    fn publish_text(&self, kind: &'static str, data: String) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let event = Event {
            id: ring.next,
            kind,
            data: data.into(),
        };
        ring.next += 1;
        while ring.events.len() >= RING || ring.bytes + event.data.len() > RING_BYTES {
            let Some(old) = ring.events.pop_front() else {
                break;
            };
            ring.bytes -= old.data.len();
        }
        ring.bytes += event.data.len();
        ring.events.push_back(event.clone());
        // Sent under the lock, so subscribers see ids in order; no subscriber is no error.
        let _ = self.tx.send(event);
    }

    /// Subscribes to the stream after `last` (the `Last-Event-ID` a client sent, if any): the
    /// kept events it missed, or `None` when it missed more than the ring holds (then it must
    /// refetch), and the receiver of what comes next. Events in both are skipped by id.
    pub fn subscribe(&self, last: Option<u64>) -> (Option<Vec<Event>>, broadcast::Receiver<Event>) {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        let missed = match last {
            None => Some(Vec::new()),
            // An id this process has not given: another process's, or a made-up one.
            Some(last) if last >= ring.next => None,
            Some(last) => {
                let oldest = ring.events.front().map_or(ring.next, |e| e.id);
                (last + 1 >= oldest && last + 1 >= self.first_id).then(|| {
                    ring.events
                        .iter()
                        .filter(|e| e.id > last)
                        .cloned()
                        .collect()
                })
            }
        };
        (missed, rx)
    }

    /// The id of the last event published (the first id less one before any). The board
    /// takes an epoch in before its events go out, so every event up to this id is in the
    /// board: read before the board, it marks an answer, and a stream opened with it as
    /// `last_event_id` gets every change the answer may lack (and perhaps a few it has, which
    /// are no older than it).
    pub fn last_event_id(&self) -> u64 {
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).next - 1
    }

    /// Reads the board.
    pub fn read<T>(&self, f: impl FnOnce(&BoardState) -> T) -> T {
        f(&self.state.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Takes in one complete epoch: the changes, the clock hour, the feeds' health. Keeps the
    /// board and publishes the events; called on the engine thread, it only takes locks the
    /// readers hold briefly.
    pub fn observe(&self, changes: &Changes, clock: i64, health: &FeedHealth) {
        let past = self.config.model.past_hours;
        let future = self.config.model.future_hours;
        let feeds: Vec<(&'static str, u64, i64)> = health
            .snapshot()
            .into_iter()
            .map(|(f, n, last)| (f.name(), n, last))
            .collect();
        let (first, clock_moved, feeds_changed) = {
            let mut board = self.state.write().unwrap_or_else(|e| e.into_inner());
            let first = board.clock.is_none();
            let clock_moved = board.clock.is_some_and(|c| c != clock);
            board.clock = Some(clock);
            for (_, row) in &changes.indicators {
                board.rows.insert((row.zone, row.hour), row.clone());
            }
            for (c, active) in &changes.clashes {
                if *active {
                    board.clashes.insert(c.clone());
                } else {
                    board.clashes.remove(c);
                }
            }
            if clock_moved {
                board
                    .rows
                    .retain(|(_, h), _| clock - past <= *h && *h <= clock + future);
            }
            let feeds_changed = board.feeds != feeds;
            board.feeds = feeds;
            board.updated_us = now_us();
            (first, clock_moved, feeds_changed)
        };
        if first {
            // Clients fetch the board when they connect; nothing to send row by row.
            self.publish("reset", &json!({"reason": "the engine started"}));
            return;
        }
        if clock_moved {
            self.publish("clock", &json!({"clock": format_ts(clock * 3_600_000_000)}));
        }
        // Rows are written straight to JSON text, the text `row_json` would give: this runs on
        // the engine's thread at every epoch, and building a `Value` per row (a map of some 30
        // keys, each hashed and allocated) cost that thread more than the epoch's computation
        // under a load of 10,000 records/s.
        let mut lines = Lines::default();
        for batch in changes.indicators.chunks(MAX_ROWS_PER_EVENT) {
            let mut text = Vec::with_capacity(64 + batch.len() * 768);
            text.extend_from_slice(b"{\"rows\":[");
            for (i, (_, r)) in batch.iter().enumerate() {
                if i > 0 {
                    text.push(b',');
                }
                serde_json::to_writer(&mut text, &lines.line(r, self.zone_id(r.zone)))
                    .expect("an indicator row serializes");
            }
            text.extend_from_slice(b"]}");
            self.publish_text(
                "indicators",
                String::from_utf8(text).expect("JSON text is UTF-8"),
            );
        }
        if !changes.clashes.is_empty() {
            let clashes: Vec<Value> = changes
                .clashes
                .iter()
                .map(|(c, active)| {
                    let mut v = clash_json(c, &self.config.zones);
                    v["active"] = json!(active);
                    v
                })
                .collect();
            self.publish("clashes", &json!({ "clashes": clashes }));
        }
        if feeds_changed {
            self.publish("feeds", &self.feeds_json());
        }
    }

    /// Prometheus lines: events published, walls connected.
    pub fn render(&self, out: &mut String) {
        let published = {
            let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            ring.next - self.first_id
        };
        out.push_str(&format!(
            "# HELP vigie_wall_events_total Events published to the live stream.\n# TYPE vigie_wall_events_total counter\nvigie_wall_events_total {published}\n\
             # HELP vigie_wall_streams Clients following the live stream.\n# TYPE vigie_wall_streams gauge\nvigie_wall_streams {}\n",
            self.tx.receiver_count()
        ));
    }

    /// The feeds' health: per feed, records accepted, the latest event time and how old it
    /// is; the engine's queue and last epoch.
    pub fn feeds_json(&self) -> Value {
        let board = self.state.read().unwrap_or_else(|e| e.into_inner());
        let now = now_us();
        let feeds: Vec<Value> = board
            .feeds
            .iter()
            .map(|(name, n, last)| {
                let seen = *last != i64::MIN;
                json!({
                    "feed": name,
                    "accepted": n,
                    "last_event": seen.then(|| format_ts(*last)),
                    "age_seconds": seen.then(|| (now - last) as f64 / 1e6),
                    "status": if *n == 0 { "silent" } else if now - last > 6 * 3_600_000_000 { "stale" } else { "ok" },
                })
            })
            .collect();
        let m = &self.engine;
        json!({
            "feeds": feeds,
            "engine": {
                "records": m.records(),
                "epochs": m.epochs(),
                "queued": m.queued(),
                "last_epoch": (board.updated_us != 0).then(|| format_ts(board.updated_us)),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigie_model::{Trend, F64};

    fn wall() -> Arc<Board> {
        Board::new(
            Arc::new(Config::embedded_default()),
            Arc::new(EngineStats::default()),
        )
    }

    #[test]
    fn a_reconnecting_client_gets_what_it_missed_or_a_reset() {
        let wall = wall();
        let first = wall.first_id;
        for i in 0..(RING as u64 + 10) {
            wall.publish("feeds", &json!({ "n": i }));
        }
        // Up to date: nothing missed.
        let last = first + RING as u64 + 9;
        assert_eq!(wall.subscribe(Some(last)).0.unwrap().len(), 0);
        // Missed three: the three, in order.
        let missed = wall.subscribe(Some(last - 3)).0.unwrap();
        assert_eq!(
            missed.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![last - 2, last - 1, last]
        );
        // Missed more than the ring holds, or an id from another process: reset.
        assert!(wall.subscribe(Some(first)).0.is_none());
        assert!(wall.subscribe(Some(first - 100)).0.is_none());
        assert!(wall.subscribe(Some(last + 100)).0.is_none());
        // The oldest kept is still given whole.
        let oldest = last + 1 - RING as u64;
        assert_eq!(wall.subscribe(Some(oldest - 1)).0.unwrap().len(), RING);
    }

    #[test]
    fn an_epoch_that_changed_many_rows_sends_them_all_in_batches_never_a_reset() {
        let wall = wall();
        let empty = Changes::default();
        let health = FeedHealth::default();
        wall.observe(&empty, 100, &health); // the first epoch: `reset`, the engine started
        let zones = wall.config.zones.len() as u32;
        let mut changes = Changes::default();
        for i in 0..4500u32 {
            let row = IndicatorRow {
                zone: i % zones,
                hour: 100 + (i / zones) as i64,
                risk_score: F64(10.0),
                risk_level: 1,
                protection_rate: F64(1.0),
                required_agents: 0,
                deployed_agents: 0,
                trend: Trend::Stable,
                crowd: F64(0.0),
                load: F64(0.0),
                incidents: 0,
                baseline: F64(0.0),
                recent: F64(0.0),
                events: F64(0.0),
                weather: F64(1.0),
                demonstration: 0,
                // Every third row with model v2's figures, some of them absent.
                v2: (i % 3 == 0).then(|| vigie_model::RowV2 {
                    calls: i as u64 % 4,
                    criticality: 2,
                    traffic: (i % 2 == 0).then_some(F64(812.5)),
                    fluidity: (i % 2 == 0).then_some(F64(0.8125)),
                    fluidity_level: (i % 2 == 0).then_some(2),
                    load_trend: Trend::Rising,
                    fluidity_trend: None,
                    missing: vigie_model::Missing(i as u8 % 8),
                    exposure: F64(1.0 / 3.0),
                    spill: F64(0.1),
                    surge: F64(0.0),
                }),
            };
            changes.indicators.push((None, row));
        }
        let after_start = wall.first_id;
        wall.observe(&changes, 101, &health);
        let events = wall.subscribe(Some(after_start)).0.unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["clock", "indicators", "indicators", "indicators"]);
        // The text is what serializing each row's `row_json` value gives, key order and
        // numbers included.
        for (e, batch) in events[1..]
            .iter()
            .zip(changes.indicators.chunks(MAX_ROWS_PER_EVENT))
        {
            let rows: Vec<Value> = batch
                .iter()
                .map(|(_, r)| row_json(r, wall.zone_id(r.zone)))
                .collect();
            assert_eq!(*e.data, json!({ "rows": rows }).to_string());
        }
        let mut sent = BTreeSet::new();
        for e in &events[1..] {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            let rows = v["rows"].as_array().unwrap();
            assert!(rows.len() <= MAX_ROWS_PER_EVENT);
            for r in rows {
                sent.insert((r["zone"].to_string(), r["hour"].to_string()));
            }
        }
        assert_eq!(sent.len(), 4500, "every changed row, once");
    }

    #[test]
    fn the_ring_keeps_at_most_its_bytes() {
        let wall = wall();
        let first = wall.first_id;
        // Events of about 1 MiB each: the ring keeps the newest that fit in RING_BYTES.
        let big = "x".repeat(1 << 20);
        for i in 0..20u64 {
            wall.publish("indicators", &json!({ "n": i, "pad": big }));
        }
        let last = first + 19;
        let kept = wall.subscribe(Some(first)).0;
        assert!(kept.is_none(), "the first events were dropped");
        let ring = wall.ring.lock().unwrap();
        assert!(ring.bytes <= RING_BYTES, "{} bytes kept", ring.bytes);
        assert_eq!(
            ring.bytes,
            ring.events.iter().map(|e| e.data.len()).sum::<usize>()
        );
        let n = ring.events.len() as u64;
        assert!((4..8).contains(&n), "{n} events kept");
        drop(ring);
        // Those kept are the newest, and a client that missed only them gets them all.
        let missed = wall.subscribe(Some(last - n)).0.unwrap();
        assert_eq!(missed.len() as u64, n);
        assert_eq!(missed.last().map(|e| e.id), Some(last));
        assert!(wall.subscribe(Some(last - n - 1)).0.is_none());
    }
}
