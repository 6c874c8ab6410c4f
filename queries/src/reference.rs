//! The reference indicator model (v1 and v2) recomputed from scratch, in plain Rust, straight
//! from the text of `docs/model.md`: no dataflow, no incremental state. It is the oracle the
//! engine's tests compare against, and the single-threaded baseline its benchmarks measure.

use crate::formula::{self, HourInputs, ZoneParams};
use std::collections::{BTreeMap, HashMap};
use vigie_config::{ModelParams, ZoneSet};
use vigie_model::time::{hour_of, overlapped_hours, Calendar};
use vigie_model::{
    Body, ClashRow, EventKind, Feed, IndicatorRow, Missing, Record, RowV2, WeatherKind, ZoneIdx,
    F64,
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

/// The clock of a replay: the greatest `ts` of the counted incident and density records.
pub fn replay_clock(records: &[Record]) -> Option<i64> {
    greatest_ts(&counted(records), &[Feed::Incident, Feed::Density])
}

/// The greatest `ts` of the counted records of `feeds`.
fn greatest_ts(counted: &[&Record], feeds: &[Feed]) -> Option<i64> {
    counted
        .iter()
        .filter(|r| feeds.contains(&r.feed))
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
    let v2 = params.v2();
    let hc = hour_of(clock);
    let k = calendar.week(hc);
    let in_window = |g: i64| {
        let w = calendar.week(g);
        k - params.weeks <= w && w < k
    };
    let first = hc - params.past_hours - 3; // risk is needed three hours back for the trend
    let last = hc + params.future_hours;
    let last_incident = greatest_ts(&counted, &[Feed::Incident]).map(hour_of);

    // 1. N, Σ severity and C per zone and hour.
    let mut inc: HashMap<(ZoneIdx, i64), (u64, i64, u64)> = HashMap::new();
    // 3. and 8. per zone and hour, per sensor: (Σ people or volume, count).
    let mut dens: HashMap<(ZoneIdx, i64), PerSensor> = HashMap::new();
    let mut traffic_by_sensor: HashMap<(ZoneIdx, i64), PerSensor> = HashMap::new();
    // 9. weather per hour: (observed: greatest seq) and (forecast: greatest (issued_at, seq)).
    let mut observed_w: HashMap<i64, &Record> = HashMap::new();
    let mut forecast_w: HashMap<i64, &Record> = HashMap::new();
    let mut events: Vec<(ZoneIdx, i64, i64, f64, EventKind)> = Vec::new();
    let mut deployments: Vec<(ZoneIdx, i64, i64, u64)> = Vec::new();
    for r in &counted {
        let h = hour_of(r.ts);
        match r.body.as_ref().expect("counted records have a body") {
            Body::Traffic {
                zone,
                sensor,
                volume,
            } => {
                if v2 {
                    let e = traffic_by_sensor
                        .entry((*zone, h))
                        .or_default()
                        .entry(sensor.as_deref())
                        .or_default();
                    e.0 += volume.0;
                    e.1 += 1;
                }
            }
            Body::Call { zone } => {
                if v2 {
                    inc.entry((*zone, h)).or_default().2 += 1;
                }
            }
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
    let per_sensor = |m: &HashMap<(ZoneIdx, i64), PerSensor>| -> HashMap<(ZoneIdx, i64), f64> {
        m.iter()
            .map(|(k, sensors)| (*k, sensors.values().map(|(s, n)| s / *n as f64).sum()))
            .collect()
    };
    let observed = per_sensor(&dens);
    let traffic_obs = per_sensor(&traffic_by_sensor);
    // I of a zone and hour: Σ severity (v1), or Σ severity + call_weight · C (v2).
    let i_of = |v: &(u64, i64, u64)| {
        if v2 {
            formula::incident_pressure(params, v.1, v.2)
        } else {
            v.1 as f64
        }
    };

    // 2. baseline, 4. typical and 8. traffic_typ, per zone and hour of week.
    let mut base: HashMap<(ZoneIdx, u8), f64> = HashMap::new();
    let mut inc_sorted: Vec<_> = inc.iter().collect();
    inc_sorted.sort_by_key(|(k, _)| **k);
    for (&(z, g), v) in inc_sorted {
        if in_window(g) {
            *base.entry((z, calendar.how(g))).or_default() += i_of(v);
        }
    }
    let typical_of = |obs: &HashMap<(ZoneIdx, i64), f64>| {
        let mut typ: HashMap<(ZoneIdx, u8), (f64, u64)> = HashMap::new();
        let mut sorted: Vec<_> = obs.iter().collect();
        sorted.sort_by_key(|(k, _)| **k);
        for (&(z, g), &v) in sorted {
            if in_window(g) {
                let e = typ.entry((z, calendar.how(g))).or_default();
                e.0 += v;
                e.1 += 1;
            }
        }
        typ
    };
    let typ = typical_of(&observed);
    let traffic_typ = typical_of(&traffic_obs);

    let f_w = |h: i64| {
        let r = observed_w.get(&h).or_else(|| forecast_w.get(&h));
        formula::weather_factor_of(params, r.copied())
    };
    let weather: Vec<f64> = (first..=last).map(f_w).collect();
    let n_hours = (last - first + 1) as usize;
    // X per zone and hour, over the horizon (v2).
    let exposure: Vec<Vec<f64>> = zones
        .iter()
        .enumerate()
        .map(|(zi, _)| {
            let mut x = vec![0.0f64; n_hours];
            if v2 {
                for &(ez, start, end, attendance, kind) in &events {
                    if ez as usize != zi {
                        continue;
                    }
                    let (lo, hi) = overlapped_hours(start, end);
                    for h in lo.max(first)..=hi.min(last) {
                        x[(h - first) as usize] +=
                            formula::event_exposure(&params.exposure_rates, attendance, kind);
                    }
                }
            }
            x
        })
        .collect();

    let mut indicators = Vec::new();
    for (zi, zone) in zones.iter().enumerate() {
        let z = zi as ZoneIdx;
        let zp = ZoneParams::from(zone);
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
        let i_at = |h: i64| inc.get(&(z, h)).map_or(0.0, i_of);
        let typical_at = |how: u8| match typ.get(&(z, how)) {
            Some((s, n)) => s / *n as f64,
            None => zone.default_density,
        };
        let inputs: Vec<HourInputs> = (first..=last)
            .map(|h| {
                let idx = (h - first) as usize;
                let how = calendar.how(h);
                let obs = observed.get(&(z, h)).copied();
                let crowd = match obs {
                    Some(v) => v,
                    None => typical_at(how) + e_sum[idx],
                };
                let (spill, surge) = if v2 {
                    let sum: f64 = zone
                        .neighbours
                        .iter()
                        .map(|n| exposure[*n as usize][idx])
                        .sum();
                    (
                        params.spill_share * sum,
                        obs.map_or(0.0, |o| formula::surge(params, o, typical_at(how))),
                    )
                } else {
                    (0.0, 0.0)
                };
                HourInputs {
                    baseline: base.get(&(z, how)).copied().unwrap_or(0.0) / params.weeks as f64,
                    recent: i_at(h) + i_at(h - 1) + i_at(h - 2),
                    crowd,
                    events: e_sum[idx],
                    weather: weather[idx],
                    demonstration: demo[idx],
                    exposure: exposure[zi][idx] + spill + surge,
                    spill,
                    surge,
                }
            })
            .collect();
        let scores: Vec<f64> = inputs
            .iter()
            .map(|i| formula::risk_score(params, &zp, i))
            .collect();
        let loads: Vec<f64> = inputs.iter().map(|i| formula::load(&zp, i.crowd)).collect();
        let traffic: Vec<Option<f64>> = (first..=last)
            .map(|h| {
                let idx = (h - first) as usize;
                traffic_obs.get(&(z, h)).copied().or_else(|| {
                    traffic_typ
                        .get(&(z, calendar.how(h)))
                        .map(|(s, n)| formula::traffic_estimate(params, s / *n as f64, e_sum[idx]))
                })
            })
            .collect();
        let fluidity: Vec<Option<f64>> = traffic
            .iter()
            .map(|t| t.and_then(|t| formula::fluidity(params, &zp, t)))
            .collect();
        for h in (hc - params.past_hours)..=last {
            let idx = (h - first) as usize;
            let (i, score) = (&inputs[idx], scores[idx]);
            let level = formula::risk_level(params, score);
            let required = formula::required_agents(&zp, score);
            let prev = |x: &[f64]| [x[idx - 1], x[idx - 2], x[idx - 3]];
            let row_v2 = v2.then(|| {
                let how = calendar.how(h);
                let fluidity_trend = match (
                    fluidity[idx],
                    fluidity[idx - 1],
                    fluidity[idx - 2],
                    fluidity[idx - 3],
                ) {
                    (Some(f), Some(a), Some(b), Some(c)) => Some(formula::trend_by(
                        params.fluidity_trend_threshold,
                        f,
                        [a, b, c],
                    )),
                    _ => None,
                };
                let density_missing =
                    h <= hc && !observed.contains_key(&(z, h)) && typ.contains_key(&(z, how));
                let weather_missing = !observed_w.contains_key(&h) && !forecast_w.contains_key(&h);
                RowV2 {
                    calls: inc.get(&(z, h)).map_or(0, |v| v.2),
                    criticality: formula::criticality(level, required, deployed[idx]),
                    traffic: traffic[idx].map(F64),
                    fluidity: fluidity[idx].map(F64),
                    fluidity_level: fluidity[idx].map(|f| formula::fluidity_level(params, f)),
                    load_trend: formula::trend_by(
                        params.load_trend_threshold,
                        loads[idx],
                        prev(&loads),
                    ),
                    fluidity_trend,
                    missing: Missing::default()
                        .with(Missing::DENSITY, density_missing)
                        .with(
                            Missing::INCIDENT,
                            formula::incident_stale(params, h, hc, last_incident),
                        )
                        .with(Missing::WEATHER, weather_missing),
                    exposure: F64(i.exposure),
                    spill: F64(i.spill),
                    surge: F64(i.surge),
                }
            });
            indicators.push(IndicatorRow {
                zone: z,
                hour: h,
                risk_score: F64(score),
                risk_level: level,
                protection_rate: F64(formula::protection_rate(deployed[idx], required)),
                required_agents: required,
                deployed_agents: deployed[idx],
                trend: formula::trend(params, score, prev(&scores)),
                crowd: F64(i.crowd),
                load: F64(loads[idx]),
                incidents: inc.get(&(z, h)).map_or(0, |v| v.0),
                baseline: F64(i.baseline),
                recent: F64(i.recent),
                events: F64(i.events),
                weather: F64(i.weather),
                demonstration: i.demonstration as u8,
                v2: row_v2,
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
