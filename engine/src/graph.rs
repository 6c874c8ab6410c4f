//! The indicator dataflow, built in a timely scope whose time is the epoch (`u64`).
//!
//! ```text
//! records ─┬─ with id ──> upsert (reduce by feed, id: greatest ts, then seq; cancelled → absent) ─┐
//!          ├─ without id ───────────────────────────────────────────────────────────────────────┴─> counted
//!          └─ incident, density ──> local max hour per worker ──> clock (reduce: max) ──> broadcast
//! counted ──> facts by zone (weather copied to every zone) ─┐
//! clock ──> Clock fact for every zone ──────────────────────┴─> zone reduce ──> indicator rows
//! counted events by zone ──> clash reduce ──> clash rows
//! ```
//!
//! Every stateful operator is a differential `reduce` keyed by zone, by `(feed, id)` or by
//! `()`: its state lives in arrangements, partitioned across workers and processes by key.

use crate::calendar::CachedCalendar;
use crate::zone::{Fact, ZoneComputer, ZoneInfo};
use differential_dataflow::collection::AsCollection;
use differential_dataflow::VecCollection as Collection;
use std::cell::Cell;
use std::rc::Rc;
use timely::dataflow::operators::core::Inspect;
use timely::dataflow::operators::vec::{Broadcast, Map as _};
use vigie_config::ModelParams;
use vigie_model::time::{hour_of, Calendar};
use vigie_model::{Body, ClashRow, EventKind, Feed, IndicatorRow, Record, ZoneIdx, F64};
use vigie_queries::formula;

/// What the graph is built from: the model, the zones and the calendar.
#[derive(Clone, Debug)]
pub struct GraphParams {
    pub model: ModelParams,
    pub zones: Vec<ZoneInfo>,
    pub calendar: Calendar,
}

impl GraphParams {
    /// The parameters of a configuration.
    pub fn from_config(c: &vigie_config::Config) -> Self {
        GraphParams {
            model: c.model.clone(),
            zones: c
                .zones
                .iter()
                .map(|z| ZoneInfo {
                    params: z.into(),
                    default_density: z.default_density,
                })
                .collect(),
            calendar: Calendar::new(c.timezone),
        }
    }
}

/// The outputs of the graph.
pub struct Outputs<'s> {
    pub indicators: Collection<'s, u64, IndicatorRow>,
    pub clashes: Collection<'s, u64, ClashRow>,
    /// The clock's hour, as known on this worker (every worker receives it).
    pub clock: Rc<Cell<Option<i64>>>,
}

type Counted = (Option<String>, i64, u64, Body);
type ClashEvent = (String, i64, i64, F64, EventKind);

/// Builds the indicator graph on a collection of validated records.
pub fn build<'s>(records: Collection<'s, u64, Record>, params: &GraphParams) -> Outputs<'s> {
    let n_zones = params.zones.len() as ZoneIdx;

    // Upserts: for each (feed, id) the version with the greatest (ts, seq) counts, unless it
    // is a cancellation.
    let upserted = records
        .clone()
        .filter(|r| r.id.is_some())
        .map(|r| ((r.feed, r.id.expect("filtered")), (r.ts, r.seq, r.body)))
        .reduce_named(
            "Upsert",
            |_key, versions, out: &mut Vec<((i64, u64, Body), isize)>| {
                let (ts, seq, body) = versions.last().expect("non-empty").0;
                if let Some(body) = body {
                    out.push(((*ts, *seq, body.clone()), 1));
                }
            },
        )
        .map(|((_feed, id), (ts, seq, body))| (Some(id), ts, seq, body));
    let plain = records
        .clone()
        .filter(|r| r.id.is_none())
        .flat_map(|r| r.body.map(|b| (None, r.ts, r.seq, b)));
    let counted: Collection<'s, u64, Counted> = upserted.concat(plain);

    // The clock: the greatest hour of any incident or density record. Each worker passes on
    // only its own running maximum (retracting the previous one), so the reduce sees at most
    // one candidate per worker.
    let mut local: Option<(i64, u64)> = None;
    let candidates = records
        .filter(|r| matches!(r.feed, Feed::Incident | Feed::Density))
        .map(|r| hour_of(r.ts))
        .inner
        .flat_map(move |(h, t, diff)| {
            let mut out = Vec::new();
            if diff > 0 && local.is_none_or(|(m, _)| h > m) {
                if let Some((old, old_t)) = local {
                    out.push((((), old), t.max(old_t), -1isize));
                }
                out.push((((), h), t, 1));
                local = Some((h, t));
            }
            out
        })
        .as_collection();
    let clock = candidates.reduce_named("Clock", |_k, hours, out: &mut Vec<(i64, isize)>| {
        out.push((*hours.last().expect("non-empty").0, 1));
    });
    let known = Rc::new(Cell::new(None));
    let known_in = known.clone();
    // Every worker learns the clock, to retire the records it fed in once they leave the
    // horizon and the baseline window.
    clock
        .clone()
        .inner
        .broadcast()
        .inspect(move |(((), h), _t, diff)| {
            if *diff > 0 && known_in.get().is_none_or(|k| *h > k) {
                known_in.set(Some(*h));
            }
        });
    let clock_facts = clock.flat_map(move |((), h)| (0..n_zones).map(move |z| (z, Fact::Clock(h))));

    // Facts by zone.
    let facts = counted
        .clone()
        .flat_map(move |(_id, ts, seq, body)| facts_of(ts, seq, body, n_zones));

    let mut computer = ZoneComputer::new(
        params.model.clone(),
        params.zones.clone(),
        CachedCalendar::new(params.calendar),
    );
    let indicators = facts
        .concat(clock_facts)
        .reduce_named("Zone", move |z, facts, out| {
            computer.compute(*z, facts, out)
        })
        .map(|(_z, row)| row);

    // Clashes, per zone, from the counted events.
    let capacities: Vec<f64> = params.zones.iter().map(|z| z.params.capacity).collect();
    let clashes = counted
        .flat_map(|(id, _ts, _seq, body)| match (id, body) {
            (
                Some(id),
                Body::Event {
                    zone,
                    start,
                    end,
                    attendance,
                    kind,
                },
            ) => Some((zone, (id, start, end, attendance, kind))),
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
    }
}

/// The facts a counted record contributes, keyed by zone.
fn facts_of(ts: i64, seq: u64, body: Body, n_zones: ZoneIdx) -> Vec<(ZoneIdx, Fact)> {
    let hour = hour_of(ts);
    match body {
        Body::Incident { zone, severity } => vec![(zone, Fact::Incident { hour, severity })],
        Body::Density {
            zone,
            sensor,
            people,
        } => vec![(
            zone,
            Fact::Density {
                hour,
                sensor,
                people,
            },
        )],
        Body::Event {
            zone,
            start,
            end,
            attendance,
            kind,
        } => vec![(
            zone,
            Fact::Event {
                start,
                end,
                attendance,
                kind,
            },
        )],
        Body::Deployment {
            zone,
            start,
            end,
            agents,
        } => vec![(zone, Fact::Deployment { start, end, agents })],
        Body::Weather {
            kind,
            issued_at,
            temperature_c,
            precip_mm,
            wind_kmh,
        } => {
            let fact = Fact::Weather {
                hour,
                kind,
                issued_at: issued_at.unwrap_or(i64::MIN),
                seq,
                temperature_c,
                precip_mm,
                wind_kmh,
            };
            (0..n_zones).map(|z| (z, fact.clone())).collect()
        }
    }
}

/// Every clash among a zone's counted events: sorted by start, each event is compared with
/// the events that start before it ends.
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
