//! The worker-side driver: builds the graph in a worker, feeds it records in epochs, retires
//! records once they can no longer matter, and collects the output.
//!
//! Retiring is how state stays bounded on years of data: a point record (incident, density,
//! weather) of hour `g` matters while `g` is within `past_hours + 5` hours of the clock (the
//! horizon, the three hours of the trend and the two of `recent`) or in the baseline window of
//! `W` weeks. Once the clock has passed both, no result at that clock or any later one depends
//! on the record (the clock never goes back), so the driver that fed it retracts it, and the
//! arrangements downstream shed it at their next compaction. The test is monotone in `g`, which
//! keeps upserts exact: when a version of an id is retired, every older version is too.
//! Events and deployments are the agenda (thousands a year, not millions) and are kept, so
//! clashes cover all of history; their per-hour effect is computed over the horizon only.

use crate::calendar::CachedCalendar;
use crate::graph::{
    build, tally_of, DensityIn, Entry, GraphParams, Inputs, KeyedIn, TalliedIn, Tally, WeatherIn,
};
use differential_dataflow::input::{Input, InputSession};
use rustc_hash::{FxHashMap, FxHashSet};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use timely::dataflow::operators::core::{Exchange, Inspect, Probe};
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;
use vigie_model::time::hour_of;
use vigie_model::{Changes, ClashRow, Feed, IndicatorRow, Record, ZoneIdx};

/// When records stop mattering.
#[derive(Clone)]
pub struct Expiry {
    past_hours: i64,
    weeks: i64,
    cal: CachedCalendar,
}

impl Expiry {
    /// The rule for a graph's parameters.
    pub fn new(params: &GraphParams) -> Self {
        Expiry {
            past_hours: params.model.past_hours,
            weeks: params.model.weeks,
            cal: CachedCalendar::new(params.calendar),
        }
    }

    /// The clock hour from which `r` no longer affects any result, or `None` if it is kept.
    pub fn expires_at(&mut self, r: &Record) -> Option<i64> {
        self.of_feed(r.feed, r.ts)
    }

    /// The same for a record of `feed` at `ts`.
    fn of_feed(&mut self, feed: Feed, ts: i64) -> Option<i64> {
        match feed {
            Feed::Incident | Feed::Density | Feed::Weather | Feed::Traffic | Feed::Call => {
                Some(self.of_hour(hour_of(ts)))
            }
            Feed::Event | Feed::Deployment => None,
        }
    }

    /// The same for a point record (incident, density, weather) of hour `g`.
    fn of_hour(&mut self, g: i64) -> i64 {
        let horizon = g + self.past_hours + 6;
        let week = self.cal.week(g);
        let window = self.cal.week_start_hour(week + self.weeks + 1);
        horizon.max(window)
    }

    /// The same for an entry as it enters the graph (the record it came from gives the same).
    fn of_entry(&mut self, e: &Entry) -> Option<i64> {
        match e {
            Entry::Incident(((_, g), _))
            | Entry::Density(((_, g), _))
            | Entry::Traffic(((_, g), _))
            | Entry::Weather((g, _)) => Some(self.of_hour(*g)),
            Entry::Keyed(((feed, _), (ts, _, _))) => self.of_feed(*feed, *ts),
        }
    }
}

/// One epoch's entries, counted. Incidents without id, the bulk of most feeds, are tallied
/// by zone and hour (count, severity sum); the others are counted under the whole entry.
#[derive(Default)]
struct StagedEntries {
    incidents: FxHashMap<(ZoneIdx, i64), Tally>,
    /// The tallies of the hour being read, by zone, moved into `incidents` when a record of
    /// another hour comes ([`StagedEntries::flush_hour`]). Files and feeds come mostly in time
    /// order, so this counts most incidents in a small array instead of a table of every
    /// zone-hour of the epoch.
    hour: Option<i64>,
    by_zone: Vec<Tally>,
    /// Zones with a tally in `by_zone` (a tally of one incident or call or more is never zero).
    touched: Vec<ZoneIdx>,
    others: FxHashMap<Entry, isize>,
}

impl StagedEntries {
    fn add_incident(&mut self, (zone, hour): (ZoneIdx, i64), severity: u8) {
        if self.hour != Some(hour) {
            self.flush_hour();
            self.hour = Some(hour);
        }
        let i = zone as usize;
        if i >= self.by_zone.len() {
            self.by_zone.resize(i + 1, (0, 0, 0));
        }
        let t = &mut self.by_zone[i];
        if *t == (0, 0, 0) {
            self.touched.push(zone);
        }
        add(t, tally_of(severity));
    }

    /// Moves the current hour's tallies into `incidents`.
    fn flush_hour(&mut self) {
        if let Some(hour) = self.hour.take() {
            for zone in self.touched.drain(..) {
                let tally = std::mem::take(&mut self.by_zone[zone as usize]);
                add(self.incidents.entry((zone, hour)).or_default(), tally);
            }
        }
    }
}

/// Adds tally `b` to `a`.
fn add(a: &mut Tally, b: Tally) {
    a.0 += b.0;
    a.1 += b.1;
    a.2 += b.2;
}

/// Counted entries as they were fed, to retract when they expire, summed by key: a live feed
/// adds to the same zone-hours epoch after epoch, and what is held stays bounded by the
/// distinct keys still relevant, not the epochs they came in.
#[derive(Default)]
struct Fed {
    incidents: FxHashMap<(ZoneIdx, i64), Tally>,
    others: FxHashMap<Entry, isize>,
}

impl Fed {
    fn len(&self) -> usize {
        self.incidents.len() + self.others.len()
    }
}

/// The accumulated output, collected on worker 0. Indicator rows are kept by zone and hour
/// ([`RowTable`]): a change of a row is a retraction and an insertion under the same key, in
/// either order, so a key holds one row but for the moment between the two (then the extra row
/// waits in `overflow`).
#[derive(Default, Debug)]
pub struct Collected {
    indicators: RowTable,
    overflow: FxHashMap<(ZoneIdx, i64), Vec<(IndicatorRow, isize)>>,
    clashes: FxHashMap<ClashRow, isize>,
    /// Output updates received (each row change is a retraction and an insertion).
    pub updates: u64,
    /// Change tracking for sinks, when asked for ([`Collected::track_changes`]).
    tracker: Option<Tracker>,
    /// Updates received for epochs not yet complete, by epoch: applied once their epoch is,
    /// so that the collected state is always the output of a complete epoch.
    staged: BTreeMap<u64, Staged>,
    /// Updates are applied as they arrive, not staged ([`Collected::final_only`]).
    final_only: bool,
}

/// Hours per chunk of a [`RowTable`].
const CHUNK_HOURS: i64 = 16;

/// Indicator rows with their counts, one slot per zone and hour, in chunks of [`CHUNK_HOURS`]
/// consecutive hours of a zone, found by hashing `(zone, hour.div_euclid(CHUNK_HOURS))`. A
/// zone's rows are a run of consecutive hours (its horizon), and the zone operator sends a
/// zone's changes in hour order, so consecutive updates fall in the same chunk: one hashed
/// lookup per 16 hours, and memory touched in order, where a table keyed by zone and hour
/// scattered every update. A chunk is dropped when its last slot empties.
#[derive(Default, Debug)]
struct RowTable {
    chunks: FxHashMap<(ZoneIdx, i64), Box<Chunk>>,
}

#[derive(Debug, Default)]
struct Chunk {
    /// Occupied slots.
    live: usize,
    slots: [Option<(IndicatorRow, isize)>; CHUNK_HOURS as usize],
}

/// What [`RowTable::add`] did.
enum Added {
    /// The update went to the key's slot; `emptied` when it cancelled the row there.
    Done { emptied: bool },
    /// The key's slot holds another row: the update's row is given back.
    Other(IndicatorRow),
}

impl RowTable {
    fn locate(zone: ZoneIdx, hour: i64) -> ((ZoneIdx, i64), usize) {
        (
            (zone, hour.div_euclid(CHUNK_HOURS)),
            hour.rem_euclid(CHUNK_HOURS) as usize,
        )
    }

    /// The row in the slot of `(zone, hour)`, with its count.
    fn get(&self, (zone, hour): (ZoneIdx, i64)) -> Option<&(IndicatorRow, isize)> {
        let (c, i) = Self::locate(zone, hour);
        self.chunks.get(&c)?.slots[i].as_ref()
    }

    /// Adds `d` copies of `row` to its key's slot: fills an empty slot, or counts into the row
    /// there if it is the same one (and empties the slot when the count reaches zero).
    fn add(&mut self, row: IndicatorRow, d: isize) -> Added {
        let (c, i) = Self::locate(row.zone, row.hour);
        let chunk = self.chunks.entry(c).or_default();
        match &mut chunk.slots[i] {
            slot @ None => {
                *slot = Some((row, d));
                chunk.live += 1;
                Added::Done { emptied: false }
            }
            Some(main) if main.0 == row => {
                main.1 += d;
                if main.1 != 0 {
                    return Added::Done { emptied: false };
                }
                chunk.slots[i] = None;
                chunk.live -= 1;
                if chunk.live == 0 {
                    self.chunks.remove(&c);
                }
                Added::Done { emptied: true }
            }
            Some(_) => Added::Other(row),
        }
    }

    /// Replaces `old` by `new` (same key) when `old` is in its key's slot with count 1: what a
    /// retraction of `old` then an insertion of `new` would give, in one lookup, provided the
    /// key has no other row waiting (the caller checks).
    fn replace(&mut self, old: &IndicatorRow, new: &IndicatorRow) -> bool {
        if (old.zone, old.hour) != (new.zone, new.hour) {
            return false;
        }
        let (c, i) = Self::locate(old.zone, old.hour);
        match self
            .chunks
            .get_mut(&c)
            .and_then(|chunk| chunk.slots[i].as_mut())
        {
            Some(main) if main.1 == 1 && main.0 == *old => {
                main.0.clone_from(new);
                true
            }
            _ => false,
        }
    }

    /// Every row with its count, in no particular order.
    fn iter(&self) -> impl Iterator<Item = &(IndicatorRow, isize)> {
        self.chunks
            .values()
            .flat_map(|chunk| chunk.slots.iter().flatten())
    }
}

/// Updates of one epoch, waiting for it to complete.
#[derive(Default, Debug)]
struct Staged {
    indicators: Vec<(IndicatorRow, isize)>,
    clashes: Vec<(ClashRow, isize)>,
}

/// What a sink has been given, and what changed since.
#[derive(Default, Debug)]
struct Tracker {
    /// Keys touched since the last drain.
    dirty: FxHashSet<(ZoneIdx, i64)>,
    /// The row last handed out for each key.
    emitted: FxHashMap<(ZoneIdx, i64), IndicatorRow>,
    clash_dirty: FxHashSet<ClashRow>,
    clash_emitted: FxHashSet<ClashRow>,
}

impl Collected {
    /// Applies updates as they arrive instead of staging them until their epoch completes:
    /// the collected state is exact once the whole output is ([`Driver::finished`]), but may
    /// mix epochs before. For runs that read only the final output (a replay without sinks):
    /// it saves holding an epoch's updates twice. Not with change tracking.
    pub fn final_only(&mut self) {
        assert!(
            self.tracker.is_none(),
            "change tracking needs complete epochs"
        );
        self.final_only = true;
    }

    fn stage_indicators(&mut self, updates: &[(IndicatorRow, u64, isize)]) {
        self.updates += updates.len() as u64;
        if self.final_only {
            let mut rest = updates;
            while let Some(((row, _, d), tail)) = rest.split_first() {
                // A changed row, as the zone operator sends it: the old row's retraction, then
                // its replacement, replaced in place when the old row is its key's only one.
                if let Some(((next, _, 1), after)) = tail.split_first() {
                    if *d == -1
                        && !self.overflow.contains_key(&(row.zone, row.hour))
                        && self.indicators.replace(row, next)
                    {
                        rest = after;
                        continue;
                    }
                }
                self.apply_indicator(row.clone(), *d);
                rest = tail;
            }
            return;
        }
        for (row, t, d) in updates {
            let staged = self.staged.entry(*t).or_default();
            staged.indicators.push((row.clone(), *d));
        }
    }

    fn stage_clashes(&mut self, updates: &[(ClashRow, u64, isize)]) {
        if self.final_only {
            for (row, _, d) in updates {
                self.apply_clash(row.clone(), *d);
            }
            return;
        }
        for (row, t, d) in updates {
            let staged = self.staged.entry(*t).or_default();
            staged.clashes.push((row.clone(), *d));
        }
    }

    /// Applies the updates of every epoch up to `upto` (which must be complete).
    pub fn settle(&mut self, upto: u64) {
        while self
            .staged
            .first_key_value()
            .is_some_and(|(t, _)| *t <= upto)
        {
            let (_, staged) = self.staged.pop_first().expect("non-empty");
            for (row, d) in staged.indicators {
                if let Some(tr) = &mut self.tracker {
                    tr.dirty.insert((row.zone, row.hour));
                }
                self.apply_indicator(row, d);
            }
            for (row, d) in staged.clashes {
                self.apply_clash(row, d);
            }
        }
    }

    /// Starts tracking changes for [`Collected::drain`].
    pub fn track_changes(&mut self) {
        assert!(!self.final_only, "change tracking needs complete epochs");
        self.tracker.get_or_insert_with(Tracker::default);
    }

    /// The row of a key, when exactly one is present.
    fn current(&self, key: &(ZoneIdx, i64)) -> Option<&IndicatorRow> {
        let mut present = self
            .indicators
            .get(*key)
            .into_iter()
            .chain(self.overflow.get(key).into_iter().flatten())
            .filter(|(_, d)| *d > 0);
        match (present.next(), present.next()) {
            (Some((r, _)), None) => Some(r),
            _ => None,
        }
    }

    /// The changes since the last drain, as of the last settled epoch: rows that differ from
    /// what was handed out before, and clashes that appeared or ended. A row that left the
    /// output is forgotten, not reported (its history stays in the sinks). Empty unless
    /// [`Collected::track_changes`] was called.
    pub fn drain(&mut self) -> Changes {
        let mut out = Changes::default();
        let Some(mut tr) = self.tracker.take() else {
            return out;
        };
        // In key order, so the rows come out sorted by zone and hour without moving them.
        let mut dirty: Vec<(ZoneIdx, i64)> = tr.dirty.drain().collect();
        dirty.sort_unstable();
        for key in dirty {
            match self.current(&key) {
                Some(now) => {
                    let before = tr.emitted.get(&key);
                    if before != Some(now) {
                        out.indicators.push((before.cloned(), now.clone()));
                        tr.emitted.insert(key, now.clone());
                    }
                }
                None => {
                    tr.emitted.remove(&key);
                }
            }
        }
        for c in std::mem::take(&mut tr.clash_dirty) {
            let present = self.clashes.get(&c).is_some_and(|d| *d > 0);
            if present && tr.clash_emitted.insert(c.clone()) {
                out.clashes.push((c, true));
            } else if !present && tr.clash_emitted.remove(&c) {
                out.clashes.push((c, false));
            }
        }
        out.clashes.sort();
        self.tracker = Some(tr);
        out
    }

    fn apply_indicator(&mut self, row: IndicatorRow, d: isize) {
        let key = (row.zone, row.hour);
        let row = match self.indicators.add(row, d) {
            Added::Done { emptied: false } => return,
            Added::Done { emptied: true } => {
                // Promote a waiting row, if any.
                if let Some(extra) = self.overflow.get_mut(&key) {
                    let (promoted, n) = extra.pop().expect("overflow lists are never empty");
                    if extra.is_empty() {
                        self.overflow.remove(&key);
                    }
                    let added = self.indicators.add(promoted, n);
                    debug_assert!(matches!(added, Added::Done { emptied: false }));
                }
                return;
            }
            Added::Other(row) => row,
        };
        let extra = self.overflow.entry(key).or_default();
        match extra.iter().position(|(r, _)| *r == row) {
            Some(i) => {
                extra[i].1 += d;
                if extra[i].1 == 0 {
                    extra.swap_remove(i);
                    if extra.is_empty() {
                        self.overflow.remove(&key);
                    }
                }
            }
            None => extra.push((row, d)),
        }
    }

    fn apply_clash(&mut self, row: ClashRow, d: isize) {
        if let Some(tr) = &mut self.tracker {
            tr.clash_dirty.insert(row.clone());
        }
        let e = self.clashes.entry(row.clone()).or_insert(0);
        *e += d;
        if *e == 0 {
            self.clashes.remove(&row);
        }
    }

    /// The current indicator rows, sorted by zone and hour.
    pub fn indicator_rows(&self) -> Vec<IndicatorRow> {
        self.indicator_refs().into_iter().cloned().collect()
    }

    /// The same, borrowed.
    pub fn indicator_refs(&self) -> Vec<&IndicatorRow> {
        let extra = self.overflow.values().flatten();
        let mut v: Vec<&IndicatorRow> = self
            .indicators
            .iter()
            .chain(extra)
            .filter(|(_, d)| *d > 0)
            .map(|(r, _)| r)
            .collect();
        v.sort_by_key(|r| (r.zone, r.hour));
        v
    }

    /// The current clash rows, sorted.
    pub fn clash_rows(&self) -> Vec<ClashRow> {
        let mut v: Vec<ClashRow> = self
            .clashes
            .iter()
            .filter(|(_, d)| **d > 0)
            .map(|(r, _)| r.clone())
            .collect();
        v.sort();
        v
    }
}

/// Feeds one worker's share of the records into the graph.
pub struct Driver {
    inputs: Option<InputSessions>,
    /// This worker's greatest hour of plain incident and density records (live: the wall
    /// clock's hour), as fed to the clock input.
    local_max: Option<i64>,
    /// This worker's greatest hour of plain incidents, as fed to the last-incident input.
    local_last_incident: Option<i64>,
    /// Live mode: the clock is set by [`Driver::set_clock_hour`] (the wall clock), not by the
    /// records.
    live: bool,
    /// Model v2: calls and traffic are inputs (under v1 they are counted in `unused`).
    v2: bool,
    probe: ProbeHandle<u64>,
    clock: Rc<Cell<Option<i64>>>,
    retire_clock: Rc<Cell<Option<i64>>>,
    expiry: Expiry,
    /// This epoch's entries, counted: equal records (an incident of the same zone, hour and
    /// severity) enter the graph once with their count, when the epoch closes.
    staged: StagedEntries,
    /// What this worker fed in and must retract, by the clock hour it expires at, as it was
    /// fed (each epoch's counted entries).
    pending: BTreeMap<i64, Fed>,
    /// The output, on worker 0 (empty elsewhere).
    pub collected: Rc<RefCell<Collected>>,
    /// Records retracted because they expired.
    pub retired: u64,
    /// Records accepted but not used by the model (calls and traffic under model v1).
    pub unused: u64,
}

/// The graph's input sessions, one per kind of entry.
struct InputSessions {
    keyed: InputSession<u64, KeyedIn, isize>,
    incidents: InputSession<u64, TalliedIn, Tally>,
    densities: InputSession<u64, DensityIn, isize>,
    traffic: InputSession<u64, DensityIn, isize>,
    weather: InputSession<u64, WeatherIn, isize>,
    clock: InputSession<u64, ((), i64), isize>,
    last_incident: InputSession<u64, ((), i64), isize>,
}

impl InputSessions {
    /// Feeds `count` copies of `entry` (retracts them when negative); an incident without id
    /// enters as its tally.
    fn update(&mut self, entry: Entry, count: isize) {
        match entry {
            Entry::Keyed(k) => self.keyed.update(k, count),
            Entry::Incident((zh, severity)) => {
                let (n, sum, calls) = tally_of(severity);
                self.incidents
                    .update((zh, ()), (count * n, count * sum, count * calls))
            }
            Entry::Density(d) => self.densities.update(d, count),
            Entry::Traffic(t) => self.traffic.update(t, count),
            Entry::Weather(w) => self.weather.update(w, count),
        }
    }
}

impl Driver {
    /// Builds the graph in `worker`; the output is gathered on worker 0.
    pub fn new(worker: &mut Worker, params: &GraphParams) -> Driver {
        let output = Collected::default();
        let collected = Rc::new(RefCell::new(output));
        let sink = collected.clone();
        let sink2 = collected.clone();
        let (inputs, probe, clock, retire_clock) = worker.dataflow::<u64, _, _>(|scope| {
            let (keyed_in, keyed) = scope.new_collection();
            let (incidents_in, incidents) = scope.new_collection();
            let (densities_in, densities) = scope.new_collection();
            let (traffic_in, traffic) = scope.new_collection();
            let (weather_in, weather) = scope.new_collection();
            let (clock_in, clock) = scope.new_collection();
            let (last_incident_in, last_incident) = scope.new_collection();
            let out = build(
                Inputs {
                    keyed,
                    incidents,
                    densities,
                    traffic,
                    weather,
                    clock,
                    last_incident,
                },
                params,
            );
            let probe = ProbeHandle::new();
            out.indicators
                .inner
                .exchange(|_| 0)
                .inspect_core(move |event| {
                    if let Ok((_, batch)) = event {
                        sink.borrow_mut().stage_indicators(batch);
                    }
                })
                .probe_with(&probe);
            out.clashes
                .inner
                .exchange(|_| 0)
                .inspect_core(move |event| {
                    if let Ok((_, batch)) = event {
                        sink2.borrow_mut().stage_clashes(batch);
                    }
                })
                .probe_with(&probe);
            let sessions = InputSessions {
                keyed: keyed_in,
                incidents: incidents_in,
                densities: densities_in,
                traffic: traffic_in,
                weather: weather_in,
                clock: clock_in,
                last_incident: last_incident_in,
            };
            (sessions, probe, out.clock, out.retire_clock)
        });
        Driver {
            inputs: Some(inputs),
            local_max: None,
            local_last_incident: None,
            live: params.live,
            v2: params.model.v2(),
            probe,
            clock,
            retire_clock,
            expiry: Expiry::new(params),
            staged: StagedEntries::default(),
            pending: BTreeMap::new(),
            collected,
            retired: 0,
            unused: 0,
        }
    }

    /// Adds a record in the current epoch. Under model v1, call and traffic records are
    /// counted in `unused`: they are not inputs of its risk.
    pub fn insert(&mut self, r: Record) {
        if !self.v2 && matches!(r.feed, Feed::Traffic | Feed::Call) {
            self.unused += 1;
            return;
        }
        // A plain record always counts, so it moves this worker's share of the clock and of
        // the last incident; a keyed one counts only if it wins its upsert, which the graph
        // decides.
        if r.id.is_none() && r.body.is_some() {
            let h = hour_of(r.ts);
            if !self.live
                && matches!(r.feed, Feed::Incident | Feed::Density)
                && self.local_max.is_none_or(|m| h > m)
            {
                self.move_clock(h);
            }
            if r.feed == Feed::Incident && self.local_last_incident.is_none_or(|m| h > m) {
                let input = &mut self.inputs.as_mut().expect("input open").last_incident;
                if let Some(old) = self.local_last_incident {
                    input.remove(((), old));
                }
                input.insert(((), h));
                self.local_last_incident = Some(h);
            }
        }
        let expires = self.expiry.expires_at(&r);
        if let Some(at) = expires {
            if self.retire_clock.get().is_some_and(|c| c >= at) {
                // Already irrelevant: it would be retracted at once.
                self.retired += 1;
                return;
            }
        }
        match Entry::of(r) {
            Entry::Incident((zh, severity)) => self.staged.add_incident(zh, severity),
            entry => *self.staged.others.entry(entry).or_default() += 1,
        }
    }

    /// Feeds the epoch's counted entries into the graph, and keeps those that expire for
    /// retracting.
    fn feed_staged(&mut self) {
        let inputs = self.inputs.as_mut().expect("input open");
        self.staged.flush_hour();
        for (zh, tally) in self.staged.incidents.drain() {
            inputs.incidents.update((zh, ()), tally);
            let at = self.expiry.of_hour(zh.1);
            let fed = self.pending.entry(at).or_default();
            add(fed.incidents.entry(zh).or_default(), tally);
        }
        for (entry, count) in self.staged.others.drain() {
            if let Some(at) = self.expiry.of_entry(&entry) {
                let fed = self.pending.entry(at).or_default();
                *fed.others.entry(entry.clone()).or_insert(0) += count;
            }
            inputs.update(entry, count);
        }
    }

    fn move_clock(&mut self, h: i64) {
        let clock_in = &mut self.inputs.as_mut().expect("input open").clock;
        if let Some(old) = self.local_max {
            clock_in.remove(((), old));
        }
        clock_in.insert(((), h));
        self.local_max = Some(h);
    }

    /// Sets the live clock's hour for the current epoch; it only moves forward (what the
    /// clock has retired stays retired).
    pub fn set_clock_hour(&mut self, h: i64) {
        if self.local_max.is_none_or(|m| h > m) {
            self.move_clock(h);
        }
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.inputs.as_ref().map_or(u64::MAX, |i| *i.clock.time())
    }

    /// Closes the current epoch: retracts what the clock has made irrelevant, then moves to the
    /// next epoch. Returns the epoch closed.
    pub fn advance(&mut self) -> u64 {
        self.feed_staged();
        if let Some(clock) = self.retire_clock.get() {
            let inputs = self.inputs.as_mut().expect("input open");
            while self
                .pending
                .first_key_value()
                .is_some_and(|(at, _)| *at <= clock)
            {
                let (_, fed) = self.pending.pop_first().expect("non-empty");
                for (zh, (n, sum, calls)) in fed.incidents {
                    if (n, sum, calls) == (0, 0, 0) {
                        continue;
                    }
                    self.retired += (n + calls) as u64;
                    inputs.incidents.update((zh, ()), (-n, -sum, -calls));
                }
                for (entry, count) in fed.others {
                    if count == 0 {
                        continue;
                    }
                    self.retired += count as u64;
                    inputs.update(entry, -count);
                }
            }
        }
        let closed = self.epoch();
        let next = closed + 1;
        let inputs = self.inputs.as_mut().expect("input open");
        inputs.keyed.advance_to(next);
        inputs.keyed.flush();
        inputs.incidents.advance_to(next);
        inputs.incidents.flush();
        inputs.densities.advance_to(next);
        inputs.densities.flush();
        inputs.traffic.advance_to(next);
        inputs.traffic.flush();
        inputs.last_incident.advance_to(next);
        inputs.last_incident.flush();
        inputs.weather.advance_to(next);
        inputs.weather.flush();
        inputs.clock.advance_to(next);
        inputs.clock.flush();
        closed
    }

    /// Closes the inputs: no more records from this worker. Records inserted since the last
    /// [`Driver::advance`] still go in, in the current epoch.
    pub fn close(&mut self) {
        if self.inputs.is_some() {
            self.feed_staged();
        }
        self.inputs = None;
    }

    /// True once the inputs are closed and every output is complete; the collected output is
    /// then final.
    pub fn finished(&self) -> bool {
        let done = self.probe.done();
        if done {
            self.collected.borrow_mut().settle(u64::MAX);
        }
        done
    }

    /// True once every output of `epoch` is complete; the collected output is then at least
    /// that of `epoch` (its updates, and those of every epoch before, applied).
    pub fn done(&self, epoch: u64) -> bool {
        let done = !self.probe.less_equal(&epoch);
        if done {
            self.collected.borrow_mut().settle(epoch);
        }
        done
    }

    /// Steps the worker until `epoch` is complete.
    pub fn wait(&self, worker: &mut Worker, epoch: u64) {
        worker.step_while(|| !self.done(epoch));
    }

    /// The clock's hour as this worker knows it.
    pub fn clock(&self) -> Option<i64> {
        self.clock.get()
    }

    /// Counted entries held for retiring.
    pub fn pending(&self) -> usize {
        self.pending.values().map(Fed::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::tests::zone_row;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the order of the updates (a row's insertion before or after the retraction
        /// of the row it replaces, several rows of a key at once, rows of hours far apart),
        /// the collected rows are the rows whose updates add up to a positive count.
        #[test]
        fn collected_rows_are_the_accumulated_updates(
            updates in proptest::collection::vec(
                // (zone, hour, score, count); count 0 stands for a change, as the zone
                // operator sends one: the row's retraction, then a row of the next score.
                ((0u32..3), (-40i64..40), (0u8..3), prop_oneof![Just(-1isize), Just(0), Just(1), Just(2)]),
                0..300,
            ),
            final_only in any::<bool>(),
        ) {
            let mut c = Collected::default();
            if final_only {
                c.final_only();
            }
            let mut expected: BTreeMap<IndicatorRow, isize> = BTreeMap::new();
            let batch: Vec<(IndicatorRow, u64, isize)> = updates
                .iter()
                .flat_map(|&(z, h, s, d)| {
                    let row = |s| zone_row(z as ZoneIdx, h * 5, s);
                    match d {
                        0 => vec![(row(s), 0, -1), (row((s + 1) % 3), 0, 1)],
                        d => vec![(row(s), 0, d)],
                    }
                })
                .collect();
            for (row, _, d) in &batch {
                *expected.entry(row.clone()).or_default() += d;
            }
            for chunk in batch.chunks(7) {
                c.stage_indicators(chunk);
            }
            c.settle(0);
            let want: Vec<IndicatorRow> = expected
                .into_iter()
                .filter(|(_, d)| *d > 0)
                .map(|(r, _)| r)
                .collect();
            let mut got = c.indicator_rows();
            got.sort();
            prop_assert_eq!(got, want);
        }
    }
}
