//! What the dataflow keeps per zone ([`Fact`]s), the computation of one zone's indicators
//! over the horizon from them ([`ZoneComputer`]), and the operator that holds every zone's
//! facts and rows and recomputes a zone whenever its facts or the clock change
//! ([`zone_rows`]).

use crate::calendar::CachedCalendar;
use differential_dataflow::VecCollection as Collection;
use serde::{Deserialize, Serialize};
use std::collections::btree_map::Entry as Slot;
use std::collections::BTreeMap;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use vigie_config::ModelParams;
use vigie_model::time::overlapped_hours;
use vigie_model::{EventKind, IndicatorRow, Missing, RowV2, ZoneIdx, F64};
use vigie_queries::formula::{self, HourInputs, ZoneParams};

/// What a zone's indicators are computed from: per-hour aggregates of its incidents, calls,
/// densities and traffic, the hour's weather factor, its counted events and deployments, its
/// neighbours' events, the clock and the hour of the last incident.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Fact {
    /// The hour of the clock.
    Clock(i64),
    /// v2: the hour of the greatest `ts` of the counted incidents (every zone).
    LastIncident(i64),
    /// `N`, the severity sum and `C` of an hour with counted incidents or calls.
    Incidents {
        hour: i64,
        n: u64,
        sum: i64,
        calls: u64,
    },
    /// `observed` of an hour with density records.
    Observed {
        hour: i64,
        value: F64,
    },
    /// v2: `traffic_obs` of an hour with traffic records.
    Traffic {
        hour: i64,
        value: F64,
    },
    /// `f_w` of an hour that has a weather record (city-wide, copied to every zone).
    Weather {
        hour: i64,
        factor: F64,
    },
    Event {
        start: i64,
        end: i64,
        attendance: F64,
        kind: EventKind,
    },
    Deployment {
        start: i64,
        end: i64,
        agents: u64,
    },
    /// v2: an event of neighbour `from`, whose exposure `x` (attendance / 1000 · rate of its
    /// kind) spills into this zone.
    Spill {
        from: ZoneIdx,
        start: i64,
        end: i64,
        x: F64,
    },
}

/// A zone's static parameters.
#[derive(Clone, Debug)]
pub struct ZoneInfo {
    pub params: ZoneParams,
    pub default_density: f64,
    /// The zones whose events spill into this one.
    pub neighbours: Vec<ZoneIdx>,
}

impl From<&vigie_config::Zone> for ZoneInfo {
    fn from(z: &vigie_config::Zone) -> Self {
        ZoneInfo {
            params: z.into(),
            default_density: z.default_density,
            neighbours: z.neighbours.clone(),
        }
    }
}

/// One zone's inputs, hour by hour over the horizon (and the hours before it that the trend
/// and `recent` read), gathered from its facts; reused across calls.
#[derive(Default)]
struct Gathered {
    /// `(N, severity sum, C)`, from two hours before the first.
    inc: Vec<(u64, i64, u64)>,
    obs: Vec<Option<f64>>,
    traffic: Vec<Option<f64>>,
    /// `E`: attendance of the overlapping events.
    events: Vec<f64>,
    /// `X`: exposure of the overlapping events.
    exposure: Vec<f64>,
    /// Σ of the neighbours' events' exposure.
    spill: Vec<f64>,
    demo: Vec<bool>,
    deployed: Vec<u64>,
    weather: Vec<f64>,
    /// Whether a weather record describes the hour.
    weather_known: Vec<bool>,
}

impl Gathered {
    fn reset(&mut self, n: usize) {
        fn fill<T: Clone>(v: &mut Vec<T>, n: usize, x: T) {
            v.clear();
            v.resize(n, x);
        }
        fill(&mut self.inc, n + 2, (0, 0, 0));
        fill(&mut self.obs, n, None);
        fill(&mut self.traffic, n, None);
        fill(&mut self.events, n, 0.0);
        fill(&mut self.exposure, n, 0.0);
        fill(&mut self.spill, n, 0.0);
        fill(&mut self.demo, n, false);
        fill(&mut self.deployed, n, 0);
        fill(&mut self.weather, n, 1.0);
        fill(&mut self.weather_known, n, false);
    }
}

/// Sums over the baseline window, per hour of week.
struct Windowed {
    /// Σ severity (v1's `I`).
    base: [i64; 168],
    /// Σ `I` with calls (v2).
    base_v2: [f64; 168],
    /// Σ and count of `observed`.
    typ: [(f64, u64); 168],
    /// Σ and count of `traffic_obs`.
    traffic_typ: [(f64, u64); 168],
}

/// Scratch space for one zone's computation, reused across calls.
pub struct ZoneComputer {
    model: ModelParams,
    zones: Vec<ZoneInfo>,
    cal: CachedCalendar,
    g: Gathered,
    scores: Vec<f64>,
    loads: Vec<f64>,
    fluidity: Vec<Option<f64>>,
    inputs: Vec<HourInputs>,
}

impl ZoneComputer {
    /// A computer for these zones and coefficients.
    pub fn new(model: ModelParams, zones: Vec<ZoneInfo>, cal: CachedCalendar) -> Self {
        ZoneComputer {
            model,
            zones,
            cal,
            g: Gathered::default(),
            scores: Vec::new(),
            loads: Vec::new(),
            fluidity: Vec::new(),
            inputs: Vec::new(),
        }
    }

    /// Computes zone `z`'s indicator rows from its facts (sorted, with positive counts), and
    /// pushes them to `out`. Nothing without a clock.
    pub fn compute(
        &mut self,
        z: ZoneIdx,
        facts: &[(&Fact, isize)],
        out: &mut Vec<(IndicatorRow, isize)>,
    ) {
        let Some(hc) = facts
            .iter()
            .filter_map(|(f, _)| match f {
                Fact::Clock(h) => Some(*h),
                _ => None,
            })
            .max()
        else {
            return;
        };
        let p = &self.model;
        let v2 = p.v2();
        let info = &self.zones[z as usize];
        let first = hc - p.past_hours - 3;
        let last = hc + p.future_hours;
        let n = (last - first + 1) as usize;
        // Incidents are needed two hours before `first` for `recent`.
        let inc_first = first - 2;
        let k = self.cal.week(hc);
        let win_lo = self.cal.week_start_hour(k - p.weeks);
        let win_hi = self.cal.week_start_hour(k);
        let in_window = |g: i64| win_lo <= g && g < win_hi;

        let g = &mut self.g;
        g.reset(n);
        let mut w = Windowed {
            base: [0; 168],
            base_v2: [0.0; 168],
            typ: [(0.0, 0); 168],
            traffic_typ: [(0.0, 0); 168],
        };
        let mut last_incident = None;
        let span = |start: i64, end: i64| {
            let (lo, hi) = overlapped_hours(start, end);
            lo.max(first)..=hi.min(last)
        };

        for &(fact, mult) in facts {
            if mult <= 0 {
                continue;
            }
            match fact {
                Fact::Clock(_) => {}
                Fact::LastIncident(h) => last_incident = Some(*h),
                Fact::Incidents {
                    hour,
                    n,
                    sum,
                    calls,
                } => {
                    if *hour >= inc_first && *hour <= last {
                        g.inc[(*hour - inc_first) as usize] = (*n, *sum, *calls);
                    }
                    if in_window(*hour) {
                        let how = self.cal.how(*hour) as usize;
                        w.base[how] += sum;
                        w.base_v2[how] += formula::incident_pressure(p, *sum, *calls);
                    }
                }
                Fact::Observed { hour, value } => {
                    if *hour >= first && *hour <= last {
                        g.obs[(*hour - first) as usize] = Some(value.0);
                    }
                    if in_window(*hour) {
                        let e = &mut w.typ[self.cal.how(*hour) as usize];
                        e.0 += value.0;
                        e.1 += 1;
                    }
                }
                Fact::Traffic { hour, value } => {
                    if *hour >= first && *hour <= last {
                        g.traffic[(*hour - first) as usize] = Some(value.0);
                    }
                    if in_window(*hour) {
                        let e = &mut w.traffic_typ[self.cal.how(*hour) as usize];
                        e.0 += value.0;
                        e.1 += 1;
                    }
                }
                Fact::Weather { hour, factor } => {
                    if *hour >= first && *hour <= last {
                        g.weather[(*hour - first) as usize] = factor.0;
                        g.weather_known[(*hour - first) as usize] = true;
                    }
                }
                Fact::Event {
                    start,
                    end,
                    attendance,
                    kind,
                } => {
                    let x = formula::event_exposure(&p.exposure_rates, attendance.0, *kind);
                    for h in span(*start, *end) {
                        let i = (h - first) as usize;
                        for _ in 0..mult {
                            g.events[i] += attendance.0;
                            g.exposure[i] += x;
                        }
                        if *kind == EventKind::Demonstration {
                            g.demo[i] = true;
                        }
                    }
                }
                Fact::Deployment { start, end, agents } => {
                    for h in span(*start, *end) {
                        g.deployed[(h - first) as usize] += agents * mult as u64;
                    }
                }
                Fact::Spill { start, end, x, .. } => {
                    for h in span(*start, *end) {
                        for _ in 0..mult {
                            g.spill[(h - first) as usize] += x.0;
                        }
                    }
                }
            }
        }
        self.inputs.clear();
        self.scores.clear();
        self.loads.clear();
        self.fluidity.clear();
        // I of hour index j of `inc` (offset by two hours: inc[idx + 2] is hour `first + idx`).
        let i_at = |j: usize| {
            let (_, sum, calls) = g.inc[j];
            formula::incident_pressure(p, sum, calls)
        };
        for idx in 0..n {
            let h = first + idx as i64;
            let how = self.cal.how(h) as usize;
            let typical = match w.typ[how] {
                (_, 0) => info.default_density,
                (s, c) => s / c as f64,
            };
            let crowd = match g.obs[idx] {
                Some(v) => v,
                None => typical + g.events[idx],
            };
            let (baseline, recent) = if v2 {
                (
                    w.base_v2[how] / p.weeks as f64,
                    i_at(idx + 2) + i_at(idx + 1) + i_at(idx),
                )
            } else {
                let s = |j: usize| g.inc[j].1;
                (
                    w.base[how] as f64 / p.weeks as f64,
                    (s(idx + 2) + s(idx + 1) + s(idx)) as f64,
                )
            };
            let (spill, surge) = if v2 {
                (
                    p.spill_share * g.spill[idx],
                    g.obs[idx].map_or(0.0, |o| formula::surge(p, o, typical)),
                )
            } else {
                (0.0, 0.0)
            };
            let inputs = HourInputs {
                baseline,
                recent,
                crowd,
                events: g.events[idx],
                weather: g.weather[idx],
                demonstration: g.demo[idx],
                exposure: g.exposure[idx] + spill + surge,
                spill,
                surge,
            };
            self.scores
                .push(formula::risk_score(p, &info.params, &inputs));
            self.loads.push(formula::load(&info.params, crowd));
            if v2 {
                let traffic = g.traffic[idx].or_else(|| match w.traffic_typ[how] {
                    (_, 0) => None,
                    (s, c) => Some(formula::traffic_estimate(p, s / c as f64, g.events[idx])),
                });
                g.traffic[idx] = traffic;
                self.fluidity
                    .push(traffic.and_then(|t| formula::fluidity(p, &info.params, t)));
            }
            self.inputs.push(inputs);
        }
        for idx in 3..n {
            let h = first + idx as i64;
            let i = &self.inputs[idx];
            let score = self.scores[idx];
            let level = formula::risk_level(p, score);
            let required = formula::required_agents(&info.params, score);
            let deployed = g.deployed[idx];
            let prev = |x: &[f64]| [x[idx - 1], x[idx - 2], x[idx - 3]];
            let row_v2 = v2.then(|| {
                let fluidity = self.fluidity[idx];
                let fluidity_trend = match (
                    fluidity,
                    self.fluidity[idx - 1],
                    self.fluidity[idx - 2],
                    self.fluidity[idx - 3],
                ) {
                    (Some(f), Some(a), Some(b), Some(c)) => {
                        Some(formula::trend_by(p.fluidity_trend_threshold, f, [a, b, c]))
                    }
                    _ => None,
                };
                let how = self.cal.how(h) as usize;
                let missing = Missing::default()
                    .with(
                        Missing::DENSITY,
                        h <= hc && g.obs[idx].is_none() && w.typ[how].1 > 0,
                    )
                    .with(
                        Missing::INCIDENT,
                        formula::incident_stale(p, h, hc, last_incident),
                    )
                    .with(Missing::WEATHER, !g.weather_known[idx]);
                RowV2 {
                    calls: g.inc[idx + 2].2,
                    criticality: formula::criticality(level, required, deployed),
                    traffic: g.traffic[idx].map(F64),
                    fluidity: fluidity.map(F64),
                    fluidity_level: fluidity.map(|f| formula::fluidity_level(p, f)),
                    load_trend: formula::trend_by(
                        p.load_trend_threshold,
                        self.loads[idx],
                        prev(&self.loads),
                    ),
                    fluidity_trend,
                    missing,
                    exposure: F64(i.exposure),
                    spill: F64(i.spill),
                    surge: F64(i.surge),
                }
            });
            out.push((
                IndicatorRow {
                    zone: z,
                    hour: h,
                    risk_score: F64(score),
                    risk_level: level,
                    protection_rate: F64(formula::protection_rate(deployed, required)),
                    required_agents: required,
                    deployed_agents: deployed,
                    trend: formula::trend(p, score, prev(&self.scores)),
                    crowd: F64(i.crowd),
                    load: F64(self.loads[idx]),
                    incidents: g.inc[idx + 2].0,
                    baseline: F64(i.baseline),
                    recent: F64(i.recent),
                    events: F64(i.events),
                    weather: F64(i.weather),
                    demonstration: i.demonstration as u8,
                    v2: row_v2,
                },
                1,
            ));
        }
    }
}

/// One zone's state in [`zone_rows`]: its facts with their counts (none zero), and the rows
/// last output for it, in increasing hour.
#[derive(Default)]
struct ZoneState {
    facts: BTreeMap<Fact, isize>,
    rows: Vec<IndicatorRow>,
}

/// An epoch's fact updates in [`zone_rows`], with the capability to output at that epoch.
type Epoch = (Capability<u64>, Vec<(ZoneIdx, Fact, isize)>);

/// The zone operator: every zone's indicator rows, as a collection, from the zones' facts.
///
/// It does what a differential `reduce` keyed by zone would (and did, before it): at each
/// complete epoch, a zone that received fact updates is recomputed from all its facts (sorted, as
/// a reduce sees them) and the difference with its previous rows goes out. It is written by
/// hand because one zone's rows are one per hour, already in hour order: the difference is a
/// single pass pairing old and new rows by hour, where the reduce sorted and consolidated the
/// old and new rows together, and kept every epoch's rows in an output arrangement until its
/// merges caught up. The state is each zone's facts and its current rows, on the worker the
/// zone is exchanged to.
///
/// A changed row goes out as its retraction followed by its replacement, in one output
/// session; the two may still arrive in different messages, so a consumer may use the order to
/// go faster but not to be right.
pub fn zone_rows<'s>(
    facts: Collection<'s, u64, (ZoneIdx, Fact)>,
    mut computer: ZoneComputer,
) -> Collection<'s, u64, IndicatorRow> {
    let n_zones = computer.zones.len();
    let exchange = Exchange::new(|((z, _), _, _): &((ZoneIdx, Fact), u64, isize)| *z as u64);
    let stream = facts
        .inner
        .unary_frontier(exchange, "Zone", move |_capability, _info| {
            let mut pending: BTreeMap<u64, Epoch> = BTreeMap::new();
            let mut zones: Vec<ZoneState> = (0..n_zones).map(|_| ZoneState::default()).collect();
            let mut dirty: Vec<ZoneIdx> = Vec::new();
            let mut fresh: Vec<(IndicatorRow, isize)> = Vec::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    for ((z, fact), t, d) in data.drain(..) {
                        pending
                            .entry(t)
                            .or_insert_with(|| (cap.delayed(&t, 0), Vec::new()))
                            .1
                            .push((z, fact, d));
                    }
                });
                // Complete epochs, in order.
                while let Some(first) = pending.first_entry() {
                    let t = *first.key();
                    if frontier.less_equal(&t) {
                        break;
                    }
                    let (cap, updates) = first.remove();
                    dirty.clear();
                    for (z, fact, d) in updates {
                        match zones[z as usize].facts.entry(fact) {
                            Slot::Occupied(mut e) => {
                                *e.get_mut() += d;
                                if *e.get() == 0 {
                                    e.remove();
                                }
                            }
                            Slot::Vacant(e) => {
                                if d != 0 {
                                    e.insert(d);
                                }
                            }
                        }
                        dirty.push(z);
                    }
                    dirty.sort_unstable();
                    dirty.dedup();
                    let mut session = output.session(&cap);
                    for &z in &dirty {
                        let state = &mut zones[z as usize];
                        let view: Vec<(&Fact, isize)> =
                            state.facts.iter().map(|(f, d)| (f, *d)).collect();
                        fresh.clear();
                        computer.compute(z, &view, &mut fresh);
                        diff_by_hour(&state.rows, &fresh, |row, d| {
                            session.give((row.clone(), t, d))
                        });
                        state.rows.clear();
                        state.rows.extend(fresh.drain(..).map(|(row, _)| row));
                    }
                }
            }
        });
    Collection::new(stream)
}

/// Calls `emit` with the updates that turn `old` into `new`, both one zone's rows in strictly
/// increasing hour: a row whose hour is in both and that changed is retracted, then its
/// replacement inserted; rows of hours in only one are retracted or inserted.
fn diff_by_hour(
    old: &[IndicatorRow],
    new: &[(IndicatorRow, isize)],
    mut emit: impl FnMut(&IndicatorRow, isize),
) {
    debug_assert!(old.windows(2).all(|w| w[0].hour < w[1].hour));
    debug_assert!(new.windows(2).all(|w| w[0].0.hour < w[1].0.hour));
    // A zone's computation gives each row once.
    debug_assert!(new.iter().all(|(_, n)| *n == 1));
    let (mut i, mut j) = (0, 0);
    loop {
        match (old.get(i), new.get(j)) {
            (None, None) => return,
            (Some(o), Some((n, _))) if o.hour == n.hour => {
                if o != n {
                    emit(o, -1);
                    emit(n, 1);
                }
                i += 1;
                j += 1;
            }
            (Some(o), Some((n, _))) if o.hour < n.hour => {
                emit(o, -1);
                i += 1;
            }
            (Some(o), None) => {
                emit(o, -1);
                i += 1;
            }
            (_, Some((n, _))) => {
                emit(n, 1);
                j += 1;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// A row of zone 0 (other zones: [`zone_row`]).
    fn row(hour: i64, score: u8) -> IndicatorRow {
        zone_row(0, hour, score)
    }

    /// A row for tests: a zone, an hour, and a risk score that tells rows of one key apart.
    pub(crate) fn zone_row(zone: ZoneIdx, hour: i64, score: u8) -> IndicatorRow {
        IndicatorRow {
            zone,
            hour,
            risk_score: F64(score as f64),
            risk_level: 0,
            protection_rate: F64(1.0),
            required_agents: 0,
            deployed_agents: 0,
            trend: vigie_model::Trend::Stable,
            crowd: F64(0.0),
            load: F64(0.0),
            incidents: 0,
            baseline: F64(0.0),
            recent: F64(0.0),
            events: F64(0.0),
            weather: F64(1.0),
            demonstration: 0,
            v2: None,
        }
    }

    /// One zone's rows: distinct hours in increasing order, each with a small score.
    fn rows() -> impl Strategy<Value = Vec<IndicatorRow>> {
        proptest::collection::btree_map(0i64..40, 0u8..3, 0..30)
            .prop_map(|m| m.into_iter().map(|(h, s)| row(h, s)).collect())
    }

    proptest! {
        /// The updates turn the old rows into the new ones, touch only what changed, and
        /// retract a changed row before inserting its replacement.
        #[test]
        fn the_difference_by_hour_turns_old_rows_into_new(old in rows(), new in rows()) {
            let fresh: Vec<(IndicatorRow, isize)> = new.iter().map(|r| (r.clone(), 1)).collect();
            let mut updates = Vec::new();
            diff_by_hour(&old, &fresh, |r, d| updates.push((r.clone(), d)));

            let mut acc: BTreeMap<IndicatorRow, isize> = old.iter().map(|r| (r.clone(), 1)).collect();
            for (r, d) in &updates {
                *acc.entry(r.clone()).or_default() += d;
            }
            acc.retain(|_, d| *d != 0);
            let expected: BTreeMap<IndicatorRow, isize> = new.iter().map(|r| (r.clone(), 1)).collect();
            prop_assert_eq!(&acc, &expected);

            let unchanged = old.iter().filter(|r| new.contains(r)).count();
            prop_assert_eq!(updates.len(), old.len() + new.len() - 2 * unchanged);
            for w in updates.windows(2) {
                if w[0].0.hour == w[1].0.hour {
                    prop_assert_eq!((w[0].1, w[1].1), (-1, 1));
                }
            }
        }
    }
}
