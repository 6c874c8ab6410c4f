//! The indicator dataflow, built in a timely scope whose time is the epoch (`u64`).
//!
//! ```text
//! keyed records ─> upsert (reduce by feed, id: greatest ts, then seq; cancelled: absent) ─┐
//! plain records ──────────────────────────────────────────────────────────────────────────┴─> counted
//! counted incidents and calls ─> reduce by (zone, hour): N, severity sum, C ─────┐
//! counted densities ─> reduce by (zone, hour): observed ─────────────────────────┤
//! counted traffic (v2) ─> reduce by (zone, hour): traffic_obs ───────────────────┤
//! counted events, deployments, by zone ──────────────────────────────────────────┤
//! counted events (v2) ─> to every zone that lists the event's zone as neighbour ─┤ (spill)
//! counted weather ─> reduce by hour: the chosen record's f_w ─> all zones ────────┼─> zone operator ─> indicator rows
//! greatest counted incident/density hour ─> clock (reduce: max) ─> all zones ─────┤   (one zone's horizon)
//! greatest counted incident hour (v2) ─> last incident (reduce: max) ─> all zones ┘
//! counted events, by zone ─> clash reduce ─> clash rows
//! ```
//!
//! The clock of a replay is the greatest hour of the *counted* incident and density records:
//! each worker's greatest plain record (never retracted but by retiring, which the clock has
//! passed), and every counted keyed record, which a later version or a cancellation may take
//! back. Live, it is the wall clock's hour alone.
//!
//! Every stateful operator but one is a differential `reduce` keyed by zone, zone and hour,
//! hour, `(feed, id)` or `()`: its state lives in arrangements, partitioned across workers and
//! processes by key. The exception is the zone operator ([`zone_rows`]), a timely operator
//! that does what a reduce by zone would, more cheaply: it holds each zone's facts and current
//! rows on the worker the zone is exchanged to, and at each complete epoch recomputes the zones
//! whose facts changed and sends out the rows that differ, found by pairing old and new rows
//! by hour.

use crate::calendar::CachedCalendar;
use crate::zone::{zone_rows, Fact, ZoneComputer, ZoneInfo};
use differential_dataflow::VecCollection as Collection;
use std::cell::Cell;
use std::rc::Rc;
use timely::dataflow::operators::core::Inspect;
use timely::dataflow::operators::vec::Broadcast;
use vigie_config::ModelParams;
use vigie_model::time::{hour_of, Calendar};
use vigie_model::{
    Body, ClashRow, EventKind, Feed, IndicatorRow, Record, WeatherKind, ZoneIdx, F64,
};
use vigie_queries::formula;

/// What the graph is built from: the model, the zones and the calendar.
#[derive(Clone, Debug)]
pub struct GraphParams {
    pub model: ModelParams,
    pub zones: Vec<ZoneInfo>,
    pub calendar: Calendar,
    /// Live mode: the clock is the hour the driver is given (the wall clock), and records do
    /// not move it.
    pub live: bool,
}

impl GraphParams {
    /// The parameters of a configuration, for a replay.
    pub fn from_config(c: &vigie_config::Config) -> Self {
        GraphParams {
            model: c.model.clone(),
            zones: c.zones.iter().map(ZoneInfo::from).collect(),
            calendar: Calendar::new(c.timezone),
            live: false,
        }
    }

    /// The same parameters, in live mode.
    pub fn live(mut self) -> Self {
        self.live = true;
        self
    }
}

/// The outputs of the graph.
pub struct Outputs<'s> {
    pub indicators: Collection<'s, u64, IndicatorRow>,
    pub clashes: Collection<'s, u64, ClashRow>,
    /// The clock's hour, as known on this worker (every worker receives it): its value at the
    /// latest epoch seen. A keyed record taken back can move it back in a replay.
    pub clock: Rc<Cell<Option<i64>>>,
    /// The greatest clock hour of the plain records fed on any worker (live: the wall clock):
    /// a lower bound of every later clock, that only moves forward, for retiring.
    pub retire_clock: Rc<Cell<Option<i64>>>,
}

/// A record with an id, as it enters: `((feed, id), (ts, seq, body))`; no body for a
/// cancellation. Ids of all feeds go through the upsert reduce.
pub type KeyedIn = ((Feed, String), (i64, u64, Option<Body>));
/// An incident or hotline call without id: `((zone, hour), severity)`, severity [`CALL`] for a
/// call.
pub type IncidentIn = ((ZoneIdx, i64), u8);
/// The severity that stands for a hotline call in an [`IncidentIn`].
pub const CALL: u8 = 0;
/// The incidents and calls without id of a zone and hour, as they enter the graph: the record
/// is `((zone, hour), ())` and its difference is a [`Tally`], so that a million incidents
/// enter as one update per zone and hour and epoch, and add up in the arrangement.
pub type TalliedIn = ((ZoneIdx, i64), ());
/// A difference that counts incidents, sums their severities and counts calls:
/// `(incidents, severity sum, calls)`. Differential adds differences, so the arrangement holds
/// each zone and hour's totals.
pub type Tally = (isize, isize, isize);

/// The tally of one incident of `severity`, or of one call.
pub fn tally_of(severity: u8) -> Tally {
    if severity == CALL {
        (0, 0, 1)
    } else {
        (1, severity as isize, 0)
    }
}

/// A density record without id: `((zone, hour), (sensor, people))`; a traffic record has the
/// same shape, `((zone, hour), (sensor, volume))`.
pub type DensityIn = ((ZoneIdx, i64), (Option<String>, F64));
/// A weather record: `(hour, ((observed, issued_at, seq), (temperature_c, wind_kmh, precip_mm)))`,
/// ordered so that the greatest is the one the model chooses for the hour: observed beats
/// forecast; among observed records the last arrived (their `issued_at` is set to 0); among
/// forecasts the greatest `issued_at` (`i64::MIN` when absent), then the last arrived.
pub type WeatherIn = (
    i64,
    ((bool, i64, u64), (Option<F64>, Option<F64>, Option<F64>)),
);

/// A record as it enters the graph: small tuples per feed, so that the bulk of the records
/// (incidents and densities without id) carry only what their aggregates need.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Entry {
    Keyed(KeyedIn),
    Incident(IncidentIn),
    Density(DensityIn),
    Traffic(DensityIn),
    Weather(WeatherIn),
}

impl Entry {
    /// How a validated record enters. Events and deployments always have an id.
    pub fn of(r: Record) -> Entry {
        match (r.id, r.body) {
            // Events and deployments always have an id; were one to come without, it would be
            // an upsert under the empty id.
            (None, Some(body)) if !matches!(r.feed, Feed::Event | Feed::Deployment) => {
                match by_feed(hour_of(r.ts), r.seq, body) {
                    ByFeed::Incident(i) => Entry::Incident(i),
                    ByFeed::Density(d) => Entry::Density(d),
                    ByFeed::Traffic(t) => Entry::Traffic(t),
                    ByFeed::Weather(w) => Entry::Weather(w),
                    ByFeed::Agenda(..) => unreachable!("the agenda is keyed"),
                }
            }
            (id, body) => Entry::Keyed(((r.feed, id.unwrap_or_default()), (r.ts, r.seq, body))),
        }
    }
}

/// A counted body, routed to the aggregate of its feed.
enum ByFeed {
    /// Incidents and calls.
    Incident(IncidentIn),
    Density(DensityIn),
    Traffic(DensityIn),
    Weather(WeatherIn),
    Agenda(ZoneIdx, Fact),
}

fn by_feed(hour: i64, seq: u64, body: Body) -> ByFeed {
    match body {
        Body::Traffic {
            zone,
            sensor,
            volume,
        } => ByFeed::Traffic(((zone, hour), (sensor, volume))),
        Body::Call { zone } => ByFeed::Incident(((zone, hour), CALL)),
        Body::Incident { zone, severity } => ByFeed::Incident(((zone, hour), severity)),
        Body::Density {
            zone,
            sensor,
            people,
        } => ByFeed::Density(((zone, hour), (sensor, people))),
        Body::Weather {
            kind,
            issued_at,
            temperature_c,
            precip_mm,
            wind_kmh,
        } => {
            let observed = kind == WeatherKind::Observed;
            let issued = if observed {
                0
            } else {
                issued_at.unwrap_or(i64::MIN)
            };
            ByFeed::Weather((
                hour,
                (
                    (observed, issued, seq),
                    (temperature_c, wind_kmh, precip_mm),
                ),
            ))
        }
        Body::Event {
            zone,
            start,
            end,
            attendance,
            kind,
        } => ByFeed::Agenda(
            zone,
            Fact::Event {
                start,
                end,
                attendance,
                kind,
            },
        ),
        Body::Deployment {
            zone,
            start,
            end,
            agents,
        } => ByFeed::Agenda(zone, Fact::Deployment { start, end, agents }),
    }
}

/// Counted records with an id, as the upsert reduce gives them.
type Counted<'s> = Collection<'s, u64, ((Feed, String), (i64, u64, Body))>;

/// The counted records of one feed, in the form its aggregate takes.
fn routed<'s, T: differential_dataflow::Data>(
    counted: &Counted<'s>,
    pick: fn(ByFeed) -> Option<T>,
) -> Collection<'s, u64, T> {
    counted
        .clone()
        .flat_map(move |(_key, (hour, seq, body))| pick(by_feed(hour, seq, body)))
}

/// The inputs of the graph.
pub struct Inputs<'s> {
    pub keyed: Collection<'s, u64, KeyedIn>,
    pub incidents: Collection<'s, u64, TalliedIn, Tally>,
    pub densities: Collection<'s, u64, DensityIn>,
    pub traffic: Collection<'s, u64, DensityIn>,
    pub weather: Collection<'s, u64, WeatherIn>,
    /// Each worker's greatest hour of plain (id-less) incident and density records so far, one
    /// value per worker; live, the wall clock's hour.
    pub clock: Collection<'s, u64, ((), i64)>,
    /// Each worker's greatest hour of plain incidents so far, one value per worker.
    pub last_incident: Collection<'s, u64, ((), i64)>,
}

type ClashEvent = (String, i64, i64, F64, EventKind);

/// Builds the indicator graph.
pub fn build<'s>(inputs: Inputs<'s>, params: &GraphParams) -> Outputs<'s> {
    let n_zones = params.zones.len() as ZoneIdx;
    let v2 = params.model.v2();

    // Upserts: for each (feed, id) the version with the greatest (ts, seq) counts, unless it
    // is a cancellation.
    let counted = inputs.keyed.reduce_named(
        "Upsert",
        |_key, versions, out: &mut Vec<((i64, u64, Body), isize)>| {
            let (ts, seq, body) = versions.last().expect("non-empty").0;
            if let Some(body) = body {
                out.push(((hour_of(*ts), *seq, body.clone()), 1));
            }
        },
    );
    let incidents_in = routed(&counted, |b| match b {
        ByFeed::Incident(i) => Some(i),
        _ => None,
    });
    let densities_in = routed(&counted, |b| match b {
        ByFeed::Density(d) => Some(d),
        _ => None,
    });
    let traffic_in = routed(&counted, |b| match b {
        ByFeed::Traffic(t) => Some(t),
        _ => None,
    });
    let weather_in = routed(&counted, |b| match b {
        ByFeed::Weather(w) => Some(w),
        _ => None,
    });

    // Every worker learns how far the plain records (or the wall clock) have moved the clock,
    // to retire the records it fed in once they leave the horizon and the baseline window.
    let retire_clock = Rc::new(Cell::new(None));
    let retire_in = retire_clock.clone();
    inputs
        .clock
        .inner
        .clone()
        .broadcast()
        .inspect(move |(((), h), _t, diff)| {
            if *diff > 0 && retire_in.get().is_none_or(|k| *h > k) {
                retire_in.set(Some(*h));
            }
        });

    // The clock: the greatest hour of the counted incident and density records (live: the
    // wall clock's).
    let keyed_hours = |feeds: &'static [Feed]| {
        counted
            .clone()
            .flat_map(move |((feed, _id), (hour, _seq, _body))| {
                feeds.contains(&feed).then_some(((), hour))
            })
    };
    let mut candidates = inputs.clock;
    if !params.live {
        candidates = candidates.concat(keyed_hours(&[Feed::Incident, Feed::Density]));
    }
    let clock = greatest(candidates, "Clock");
    let known = Rc::new(Cell::new(None));
    let known_in = known.clone();
    let latest_epoch = Cell::new(0u64);
    clock
        .clone()
        .inner
        .broadcast()
        .inspect(move |(((), h), t, diff)| {
            if *diff > 0 && *t >= latest_epoch.get() {
                latest_epoch.set(*t);
                known_in.set(Some(*h));
            }
        });
    let clock_facts = clock.flat_map(move |((), h)| (0..n_zones).map(move |z| (z, Fact::Clock(h))));

    // Weather is city-wide: the record chosen for each hour (observed beats forecast; among
    // observed the last arrived; among forecasts the greatest issued_at, then the last arrived)
    // gives the hour's factor, which every zone receives.
    let model = params.model.clone();
    let weather = weather_in
        .concat(inputs.weather)
        .reduce_named(
            "Weather",
            move |_hour, candidates, out: &mut Vec<(F64, isize)>| {
                let (_, (t, w, p)) = candidates.last().expect("non-empty").0;
                out.push((
                    F64(formula::weather_factor(
                        &model,
                        t.map(F64::get),
                        w.map(F64::get),
                        p.map(F64::get),
                    )),
                    1,
                ));
            },
        )
        .flat_map(move |(hour, factor)| {
            (0..n_zones).map(move |z| (z, Fact::Weather { hour, factor }))
        });

    // Incidents and calls per zone and hour: N, the severity sum and C, the accumulated tally
    // of the zone and hour.
    let incidents = incidents_in
        .explode(|(zh, sev)| Some(((zh, ()), tally_of(sev))))
        .concat(inputs.incidents)
        .reduce_named(
            "Incidents",
            |_zh, tally: &[(&(), Tally)], out: &mut Vec<((u64, i64, u64), isize)>| {
                let (n, sum, calls) = tally[0].1;
                out.push(((n as u64, sum as i64, calls as u64), 1));
            },
        )
        .map(|((zone, hour), (n, sum, calls))| {
            (
                zone,
                Fact::Incidents {
                    hour,
                    n,
                    sum,
                    calls,
                },
            )
        });

    // Observed crowd per zone and hour: each sensor's mean, summed over sensors.
    let observed = densities_in
        .concat(inputs.densities)
        .reduce_named("Observed", |_zh, values, out: &mut Vec<(F64, isize)>| {
            out.push((F64(per_sensor_sum(values)), 1));
        })
        .map(|((zone, hour), value)| (zone, Fact::Observed { hour, value }));

    // The agenda: events and deployments by zone.
    let agenda = routed(&counted, |b| match b {
        ByFeed::Agenda(zone, fact) => Some((zone, fact)),
        _ => None,
    });
    let mut facts = incidents.concat(observed).concat(agenda.clone());

    if v2 {
        // Observed traffic per zone and hour: each counter's mean, summed over counters.
        let traffic = traffic_in
            .concat(inputs.traffic)
            .reduce_named("Traffic", |_zh, values, out: &mut Vec<(F64, isize)>| {
                out.push((F64(per_sensor_sum(values)), 1));
            })
            .map(|((zone, hour), value)| (zone, Fact::Traffic { hour, value }));
        // An event's exposure spills into every zone that lists the event's zone among its
        // neighbours: the event goes to those zones too, as a spill fact.
        let mut spills_to: Vec<Vec<ZoneIdx>> = vec![Vec::new(); params.zones.len()];
        for (z, info) in params.zones.iter().enumerate() {
            for &n in &info.neighbours {
                spills_to[n as usize].push(z as ZoneIdx);
            }
        }
        let rates = params.model.exposure_rates.clone();
        let spill = agenda.flat_map(move |(from, fact)| {
            let mut out = Vec::new();
            if let Fact::Event {
                start,
                end,
                attendance,
                kind,
            } = fact
            {
                let x = formula::event_exposure(&rates, attendance.0, kind);
                if x != 0.0 {
                    for &z in &spills_to[from as usize] {
                        out.push((
                            z,
                            Fact::Spill {
                                from,
                                start,
                                end,
                                x: F64(x),
                            },
                        ));
                    }
                }
            }
            out
        });
        // The greatest hour of the counted incidents, for the incident feed's staleness.
        let last = greatest(
            inputs.last_incident.concat(keyed_hours(&[Feed::Incident])),
            "LastIncident",
        )
        .flat_map(move |((), h)| (0..n_zones).map(move |z| (z, Fact::LastIncident(h))));
        facts = facts.concat(traffic).concat(spill).concat(last);
    }

    let computer = ZoneComputer::new(
        params.model.clone(),
        params.zones.clone(),
        CachedCalendar::new(params.calendar),
    );
    let indicators = zone_rows(facts.concat(clock_facts).concat(weather), computer);

    // Clashes, per zone, from the counted events.
    let capacities: Vec<f64> = params.zones.iter().map(|z| z.params.capacity).collect();
    let clashes = counted
        .flat_map(|((_feed, id), (_hour, _seq, body))| match body {
            Body::Event {
                zone,
                start,
                end,
                attendance,
                kind,
            } => Some((zone, (id, start, end, attendance, kind))),
            _ => None,
        })
        .reduce_named("Clashes", move |z, events: &[(&ClashEvent, isize)], out| {
            clashes_of(*z, capacities[*z as usize], events, out)
        })
        .map(|(_z, row)| row);

    Outputs {
        indicators,
        clashes,
        clock: known,
        retire_clock,
    }
}

/// The greatest value of a collection of hours, as a one-element collection.
fn greatest<'s>(
    hours: Collection<'s, u64, ((), i64)>,
    name: &str,
) -> Collection<'s, u64, ((), i64)> {
    hours.reduce_named(name, |_k, hours, out: &mut Vec<(i64, isize)>| {
        out.push((*hours.last().expect("non-empty").0, 1));
    })
}

/// `observed(z,h)` (or `traffic_obs(z,h)`) from the density (traffic) values of one zone and
/// hour, sorted by sensor: for each sensor (records without one form one sensor) the mean of
/// its values, summed over sensors.
fn per_sensor_sum(values: &[(&(Option<String>, F64), isize)]) -> f64 {
    let mut total = 0.0;
    let mut i = 0;
    while i < values.len() {
        let sensor = &values[i].0 .0;
        let (mut sum, mut n) = (0.0f64, 0isize);
        while i < values.len() && &values[i].0 .0 == sensor {
            let (people, m) = (values[i].0 .1, values[i].1);
            for _ in 0..m {
                sum += people.0;
            }
            n += m;
            i += 1;
        }
        total += sum / n as f64;
    }
    total
}

fn as_tuple(e: &ClashEvent) -> formula::ClashEvent<'_> {
    (e.0.as_str(), e.1, e.2, e.3 .0, e.4)
}

fn clashes_of(
    z: ZoneIdx,
    capacity: f64,
    events: &[(&ClashEvent, isize)],
    out: &mut Vec<(ClashRow, isize)>,
) {
    let mut evs: Vec<&ClashEvent> = events
        .iter()
        .filter(|(_, m)| *m > 0)
        .map(|(e, _)| *e)
        .collect();
    evs.sort_by_key(|e| (e.1, e.2));
    for (i, a) in evs.iter().enumerate() {
        for b in &evs[i + 1..] {
            if b.1 >= a.2 {
                break;
            }
            if let Some(row) = formula::clash(z, capacity, as_tuple(a), as_tuple(b)) {
                out.push((row, 1));
            }
        }
    }
}
