//! The reference indicator model v1 recomputed from scratch, in plain Rust, straight from the
//! text of `docs/model.md`: no dataflow, no incremental state. It is the oracle the engine's
//! tests compare against, and the single-threaded baseline its benchmarks measure.

use crate::formula::{self, HourInputs, ZoneParams};
use std::collections::{BTreeMap, HashMap};
use vigie_config::{ModelParams, ZoneSet};
use vigie_model::time::{hour_of, overlapped_hours, Calendar};
use vigie_model::{
    Body, ClashRow, EventKind, Feed, IndicatorRow, Record, WeatherKind, ZoneIdx, F64,
};

/// Per sensor (`None`: records without one): the sum of `people` and the number of records.
type PerSensor<'a> = BTreeMap<Option<&'a str>, (f64, u64)>;

/// Final indicators and clashes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Output {
    pub indicators: Vec<IndicatorRow>,
    pub clashes: Vec<ClashRow>,
}

/// The records that count: for each `(feed, id)` the record with the greatest `ts` (ties: the
/// greatest `seq`, i.e. the last arrived) unless it is a cancellation; every record without id.
pub fn counted(records: &[Record]) -> Vec<&Record> {
    let mut latest: HashMap<(Feed, &str), &Record> = HashMap::new();
    let mut out = Vec::new();
    for r in records {
        match &r.id {
            None => out.push(r),
            Some(id) => {
                let slot = latest.entry((r.feed, id.as_str())).or_insert(r);
                if (r.ts, r.seq) > (slot.ts, slot.seq) {
                    *slot = r;
                }
            }
        }
    }
    out.extend(latest.into_values().filter(|r| r.body.is_some()));
    out
}

/// The clock of a replay: the greatest `ts` of all incident and density records.
pub fn replay_clock(records: &[Record]) -> Option<i64> {
    records
        .iter()
        .filter(|r| matches!(r.feed, Feed::Incident | Feed::Density))
        .map(|r| r.ts)
        .max()
}

/// Recomputes everything from `records` with the replay clock.
pub fn compute(
    records: &[Record],
    zones: &ZoneSet,
    params: &ModelParams,
    calendar: &Calendar,
) -> Output {
    let clock = replay_clock(records);
    compute_at(records, zones, params, calendar, clock)
}

/// Recomputes everything from `records` with the given clock (none: no indicators).
pub fn compute_at(
    records: &[Record],
    zones: &ZoneSet,
    params: &ModelParams,
    calendar: &Calendar,
    clock: Option<i64>,
) -> Output {
    let counted = counted(records);
    let clashes = clashes(&counted, zones);
    let Some(clock) = clock else {
        return Output {
            indicators: Vec::new(),
            clashes,
        };
    };
    let hc = hour_of(clock);
    let k = calendar.week(hc);
    let in_window = |g: i64| {
        let w = calendar.week(g);
        k - params.weeks <= w && w < k
    };
    let first = hc - params.past_hours - 3; // risk is needed three hours back for the trend
    let last = hc + params.future_hours;

    // 1. I and N per zone and hour.
    let mut inc: HashMap<(ZoneIdx, i64), (u64, i64)> = HashMap::new();
    // 3. per zone and hour, per sensor: (Σ people, count).
    let mut dens: HashMap<(ZoneIdx, i64), PerSensor> = HashMap::new();
    // 9. weather per hour: (observed: greatest seq) and (forecast: greatest (issued_at, seq)).
    let mut observed_w: HashMap<i64, &Record> = HashMap::new();
    let mut forecast_w: HashMap<i64, &Record> = HashMap::new();
    let mut events: Vec<(ZoneIdx, i64, i64, f64, EventKind)> = Vec::new();
    let mut deployments: Vec<(ZoneIdx, i64, i64, u64)> = Vec::new();
    for r in &counted {
        let h = hour_of(r.ts);
        match r.body.as_ref().expect("counted records have a body") {
            // Traffic is not an input of the risk model v1.
            Body::Traffic { .. } => {}
            Body::Incident { zone, severity } => {
                let e = inc.entry((*zone, h)).or_default();
                e.0 += 1;
                e.1 += *severity as i64;
            }
            Body::Density {
                zone,
                sensor,
                people,
            } => {
                let e = dens
                    .entry((*zone, h))
                    .or_default()
                    .entry(sensor.as_deref())
                    .or_default();
                e.0 += people.0;
                e.1 += 1;
            }
            Body::Event {
                zone,
                start,
                end,
                attendance,
                kind,
            } => events.push((*zone, *start, *end, attendance.0, *kind)),
            Body::Deployment {
                zone,
                start,
                end,
                agents,
            } => deployments.push((*zone, *start, *end, *agents)),
            Body::Weather {
                kind: WeatherKind::Observed,
                ..
            } => {
                let e = observed_w.entry(h).or_insert(r);
                if r.seq > e.seq {
                    *e = r;
                }
            }
            Body::Weather {
                kind: WeatherKind::Forecast,
                issued_at,
                ..
            } => {
                let e = forecast_w.entry(h).or_insert(r);
                let key = |r: &Record| match &r.body {
                    Some(Body::Weather { issued_at, .. }) => (issued_at.unwrap_or(i64::MIN), r.seq),
                    _ => unreachable!(),
                };
                if (issued_at.unwrap_or(i64::MIN), r.seq) > key(e) {
                    *e = r;
                }
            }
        }
    }
    let observed: HashMap<(ZoneIdx, i64), f64> = dens
        .iter()
        .map(|(k, sensors)| (*k, sensors.values().map(|(s, n)| s / *n as f64).sum()))
        .collect();

    // 2. baseline and 4. typical, per zone and hour of week.
    let mut base: HashMap<(ZoneIdx, u8), i64> = HashMap::new();
    for (&(z, g), &(_, sev)) in &inc {
        if in_window(g) {
            *base.entry((z, calendar.how(g))).or_default() += sev;
        }
    }
    let mut typ: HashMap<(ZoneIdx, u8), (f64, u64)> = HashMap::new();
    let mut obs_sorted: Vec<_> = observed.iter().collect();
    obs_sorted.sort_by_key(|(k, _)| **k);
    for (&(z, g), &v) in obs_sorted {
        if in_window(g) {
            let e = typ.entry((z, calendar.how(g))).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }

    let f_w = |h: i64| {
        let r = observed_w.get(&h).or_else(|| forecast_w.get(&h));
        formula::weather_factor_of(params, r.copied())
    };
    let weather: Vec<f64> = (first..=last).map(f_w).collect();

    let mut indicators = Vec::new();
    for (zi, zone) in zones.iter().enumerate() {
        let z = zi as ZoneIdx;
        let zp = ZoneParams::from(zone);
        let n_hours = (last - first + 1) as usize;
        let mut e_sum = vec![0.0f64; n_hours];
        let mut demo = vec![false; n_hours];
        let mut deployed = vec![0u64; n_hours];
        for &(ez, start, end, attendance, kind) in &events {
            if ez != z {
                continue;
            }
            let (lo, hi) = overlapped_hours(start, end);
            for h in lo.max(first)..=hi.min(last) {
                e_sum[(h - first) as usize] += attendance;
                if kind == EventKind::Demonstration {
                    demo[(h - first) as usize] = true;
                }
            }
        }
        for &(dz, start, end, agents) in &deployments {
            if dz != z {
                continue;
            }
            let (lo, hi) = overlapped_hours(start, end);
            for h in lo.max(first)..=hi.min(last) {
                deployed[(h - first) as usize] += agents;
            }
        }
        let i_at = |h: i64| inc.get(&(z, h)).map_or(0, |v| v.1);
        let inputs: Vec<HourInputs> = (first..=last)
            .map(|h| {
                let idx = (h - first) as usize;
                let how = calendar.how(h);
                let crowd = match observed.get(&(z, h)) {
                    Some(v) => *v,
                    None => {
                        let typical = match typ.get(&(z, how)) {
                            Some((s, n)) => s / *n as f64,
                            None => zone.default_density,
                        };
                        typical + e_sum[idx]
                    }
                };
                HourInputs {
                    baseline: base.get(&(z, how)).copied().unwrap_or(0) as f64
                        / params.weeks as f64,
                    recent: (i_at(h) + i_at(h - 1) + i_at(h - 2)) as f64,
                    crowd,
                    events: e_sum[idx],
                    weather: weather[idx],
                    demonstration: demo[idx],
                }
            })
            .collect();
        let scores: Vec<f64> = inputs
            .iter()
            .map(|i| formula::risk_score(params, &zp, i))
            .collect();
        for h in (hc - params.past_hours)..=last {
            let idx = (h - first) as usize;
            let (i, score) = (&inputs[idx], scores[idx]);
            let required = formula::required_agents(&zp, score);
            indicators.push(IndicatorRow {
                zone: z,
                hour: h,
                risk_score: F64(score),
                risk_level: formula::risk_level(params, score),
                protection_rate: F64(formula::protection_rate(deployed[idx], required)),
                required_agents: required,
                deployed_agents: deployed[idx],
                trend: formula::trend(
                    params,
                    score,
                    [scores[idx - 1], scores[idx - 2], scores[idx - 3]],
                ),
                crowd: F64(i.crowd),
                load: F64(formula::load(&zp, i.crowd)),
                incidents: inc.get(&(z, h)).map_or(0, |v| v.0),
                baseline: F64(i.baseline),
                recent: F64(i.recent),
                events: F64(i.events),
                weather: F64(i.weather),
                demonstration: i.demonstration as u8,
            });
        }
    }
    Output {
        indicators,
        clashes,
    }
}

/// Every clash between counted events, `a < b` by id.
pub fn clashes(counted: &[&Record], zones: &ZoneSet) -> Vec<ClashRow> {
    let mut by_zone: BTreeMap<ZoneIdx, Vec<formula::ClashEvent>> = BTreeMap::new();
    for r in counted {
        if let (
            Some(Body::Event {
                zone,
                start,
                end,
                attendance,
                kind,
            }),
            Some(id),
        ) = (&r.body, &r.id)
        {
            by_zone.entry(*zone).or_default().push((
                id.as_str(),
                *start,
                *end,
                attendance.0,
                *kind,
            ));
        }
    }
    let mut out = Vec::new();
    for (z, evs) in by_zone {
        let capacity = zones.get(z).capacity;
        for (i, a) in evs.iter().enumerate() {
            for b in &evs[i + 1..] {
                if let Some(row) = formula::clash(z, capacity, *a, *b) {
                    out.push(row);
                }
            }
        }
    }
    out
}
