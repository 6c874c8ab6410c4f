//! Why a zone has its figures at an hour: the records behind each contribution, found with
//! the windows of `docs/model.md` in the records that count (upserts resolved, cancellations
//! removed), and the contributions recomputed from them so they can be set beside the stored
//! ones.
//!
//! Under model v2 the evidence also holds what v2 adds: the zone's events with their kind, rate
//! and exposure `X`; the neighbours' events behind the spill, by neighbour zone; the density
//! records of the hour and where the typical crowd comes from (the hours of the baseline
//! window with densities, or `default_density`) behind the surge; the hotline calls in `I` and
//! `recent`; the traffic records of the hour or the typical traffic behind the fluidity; whether
//! a weather record describes the hour. A replay ([`crate::reference::counted`] of its inputs)
//! and a live server (the counted records of its log) call it alike:
//!
//! ```ignore
//! let ev = records_behind(&counted, zone, hour, clock_hour, &config);
//! let re = ev.recompute(&config);
//! let json = ev.to_json(&re, &config, &|r| cite(r)); // and re.differences(&stored.values)
//! ```

use crate::formula::{self, ZoneParams};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use vigie_config::{Config, ModelParams};
use vigie_model::time::{format_hour, hour_of, Calendar};
use vigie_model::{Body, EventKind, Feed, Missing, Record, WeatherKind, ZoneIdx};

/// The records behind the figures of one zone and hour.
#[derive(Debug, Default)]
pub struct Evidence<'a> {
    pub zone: ZoneIdx,
    pub hour: i64,
    pub clock_hour: i64,
    /// Incidents of the hour and the two before (`recent`); those of the hour give `incidents`.
    pub recent: Vec<&'a Record>,
    /// Incidents of the same hour of week in the W weeks before the clock's (`baseline`).
    pub baseline: Vec<&'a Record>,
    /// v2: hotline calls of the hour and the two before (in `I`, hence `recent`); those of
    /// the hour give `calls`.
    pub calls: Vec<&'a Record>,
    /// v2: hotline calls of the baseline's hours (in `I`, hence `baseline`).
    pub baseline_calls: Vec<&'a Record>,
    /// Density records of the hour (`observed`, hence `crowd` and v2's `surge`).
    pub densities: Vec<&'a Record>,
    /// Density records of the baseline's hours (`typical`).
    pub typical_densities: Vec<&'a Record>,
    /// Events overlapping the hour (`events`, `demonstration`, v2's `X`).
    pub events: Vec<&'a Record>,
    /// v2: each neighbour (as the zone file gives them) and its events overlapping the hour
    /// (`spill`).
    pub spill: Vec<(ZoneIdx, Vec<&'a Record>)>,
    /// Deployments overlapping the hour (`deployed_agents`).
    pub deployments: Vec<&'a Record>,
    /// v2: traffic records of the hour (`traffic_obs`).
    pub traffic: Vec<&'a Record>,
    /// v2: traffic records of the baseline's hours (`traffic_typ`).
    pub typical_traffic: Vec<&'a Record>,
    /// The weather record chosen for the hour, if any (`weather`; v2: none is a missing
    /// input).
    pub weather: Option<&'a Record>,
    /// v2: the hour of the latest counted incident of any zone (the incident feed's
    /// staleness).
    pub last_incident_hour: Option<i64>,
}

/// Where the typical crowd or traffic of an hour comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Typical {
    /// The mean over these hours of the baseline window (the same hour of the week), each
    /// with its observed value.
    Observed(Vec<(i64, f64)>),
    /// No hour of the window has a value: the zone's `default_density` (crowd), or none
    /// (traffic).
    Default,
}

/// One event's exposure: `X = attendance / 1000 · rate(kind)`.
#[derive(Clone, Debug, PartialEq)]
pub struct EventExposure {
    pub id: Option<String>,
    pub kind: EventKind,
    pub attendance: f64,
    pub rate: f64,
    pub x: f64,
}

/// What model v2 adds, recomputed from the evidence.
#[derive(Clone, Debug, PartialEq)]
pub struct RecomputedV2 {
    /// `C`: the calls of the hour.
    pub calls: u64,
    /// The zone's own events, each with its exposure; their sum is `X`.
    pub exposure_events: Vec<EventExposure>,
    /// Per neighbour: its events' exposures (before `spill_share`).
    pub spill_by_neighbour: Vec<(ZoneIdx, Vec<EventExposure>)>,
    /// `spill_share · Σ X(neighbour)`.
    pub spill: f64,
    /// `surge_rate · max(0, observed − typical) / 1000` where observed, else 0.
    pub surge: f64,
    /// `X + spill + surge`.
    pub exposure: f64,
    /// `traffic_obs` of the hour, if any.
    pub traffic_observed: Option<f64>,
    /// Where `traffic_typ` comes from (`Default`: undefined).
    pub traffic_typical: Typical,
    /// `traffic_obs`, else `traffic_typ + vehicles_per_attendee · E`, else undefined.
    pub traffic: Option<f64>,
    pub fluidity: Option<f64>,
    pub fluidity_level: Option<u8>,
    /// The inputs the hour lacks (`confidence` follows).
    pub missing: Missing,
}

/// Contributions recomputed from the evidence.
#[derive(Clone, Debug, PartialEq)]
pub struct Recomputed {
    pub incidents: u64,
    pub recent: f64,
    pub baseline: f64,
    pub events: f64,
    pub demonstration: u8,
    pub deployed_agents: u64,
    pub weather: f64,
    /// `observed` of the hour, if any.
    pub observed: Option<f64>,
    /// Where `typical` comes from (`Default`: the zone's `default_density`).
    pub typical_origin: Typical,
    pub typical: f64,
    /// `observed`, else `typical + E`.
    pub crowd: f64,
    /// Model v2's figures (none under v1).
    pub v2: Option<RecomputedV2>,
}

fn overlaps(start: i64, end: i64, hour: i64) -> bool {
    let (a, b) = (hour * 3_600_000_000, (hour + 1) * 3_600_000_000);
    start < b && end > a
}

/// The event of a record overlapping `hour` in `zone`, if it is one.
fn event_in(r: &Record, zone: ZoneIdx, hour: i64) -> bool {
    matches!(r.body, Some(Body::Event { zone: z, start, end, .. }) if z == zone && overlaps(start, end, hour))
}

/// The records among `counted` behind zone `zone` at hour `hour` (hours since the epoch),
/// with the clock at hour `clock_hour`, under `config`'s model, zones and time zone.
pub fn records_behind<'a>(
    counted: &[&'a Record],
    zone: ZoneIdx,
    hour: i64,
    clock_hour: i64,
    config: &Config,
) -> Evidence<'a> {
    let params = &config.model;
    let calendar = Calendar::new(config.timezone);
    let k = calendar.week(clock_hour);
    let how = calendar.how(hour);
    let in_baseline = |h: i64| {
        let w = calendar.week(h);
        k - params.weeks <= w && w < k && calendar.how(h) == how
    };
    let neighbours = &config.zones.get(zone).neighbours;
    let mut ev = Evidence {
        zone,
        hour,
        clock_hour,
        spill: neighbours.iter().map(|n| (*n, Vec::new())).collect(),
        ..Evidence::default()
    };
    let mut forecast: Option<&Record> = None;
    let mut observed: Option<&Record> = None;
    for &r in counted {
        let h = hour_of(r.ts);
        if r.feed == Feed::Incident {
            ev.last_incident_hour = ev.last_incident_hour.max(Some(h));
        }
        match r.body.as_ref() {
            Some(Body::Incident { zone: z, .. }) if *z == zone => {
                if (hour - 2..=hour).contains(&h) {
                    ev.recent.push(r);
                }
                if in_baseline(h) {
                    ev.baseline.push(r);
                }
            }
            Some(Body::Call { zone: z }) if *z == zone => {
                if (hour - 2..=hour).contains(&h) {
                    ev.calls.push(r);
                }
                if in_baseline(h) {
                    ev.baseline_calls.push(r);
                }
            }
            Some(Body::Density { zone: z, .. }) if *z == zone => {
                if h == hour {
                    ev.densities.push(r);
                }
                if in_baseline(h) {
                    ev.typical_densities.push(r);
                }
            }
            Some(Body::Traffic { zone: z, .. }) if *z == zone => {
                if h == hour {
                    ev.traffic.push(r);
                }
                if in_baseline(h) {
                    ev.typical_traffic.push(r);
                }
            }
            Some(Body::Event { .. }) if event_in(r, zone, hour) => ev.events.push(r),
            Some(Body::Event { zone: z, .. }) => {
                if let Some((_, list)) = ev.spill.iter_mut().find(|(n, _)| n == z) {
                    if event_in(r, *z, hour) {
                        list.push(r);
                    }
                }
            }
            Some(Body::Deployment {
                zone: z,
                start,
                end,
                ..
            }) if *z == zone && overlaps(*start, *end, hour) => ev.deployments.push(r),
            Some(Body::Weather {
                kind, issued_at, ..
            }) if h == hour => match kind {
                WeatherKind::Observed => {
                    if observed.is_none_or(|o| r.seq > o.seq) {
                        observed = Some(r);
                    }
                }
                WeatherKind::Forecast => {
                    let key = |r: &Record| match &r.body {
                        Some(Body::Weather { issued_at, .. }) => {
                            (issued_at.unwrap_or(i64::MIN), r.seq)
                        }
                        _ => (i64::MIN, r.seq),
                    };
                    if forecast.is_none_or(|f| (issued_at.unwrap_or(i64::MIN), r.seq) > key(f)) {
                        forecast = Some(r);
                    }
                }
            },
            _ => {}
        }
    }
    ev.weather = observed.or(forecast);
    let by_time = |v: &mut Vec<&Record>| v.sort_by_key(|r| (r.ts, r.seq));
    for v in [
        &mut ev.recent,
        &mut ev.baseline,
        &mut ev.calls,
        &mut ev.baseline_calls,
        &mut ev.densities,
        &mut ev.typical_densities,
        &mut ev.events,
        &mut ev.deployments,
        &mut ev.traffic,
        &mut ev.typical_traffic,
    ] {
        by_time(v);
    }
    for (_, v) in &mut ev.spill {
        by_time(v);
    }
    ev
}

/// Per hour, `observed` (or `traffic_obs`): for each sensor (records without one, or with
/// an empty one, form one sensor) the mean of its values, summed over sensors.
fn observed_by_hour(records: &[&Record]) -> BTreeMap<i64, f64> {
    let mut sums: BTreeMap<i64, BTreeMap<&str, (f64, u64)>> = BTreeMap::new();
    for r in records {
        let (sensor, value) = match &r.body {
            Some(Body::Density { sensor, people, .. }) => (sensor, people.0),
            Some(Body::Traffic { sensor, volume, .. }) => (sensor, volume.0),
            _ => continue,
        };
        let e = sums
            .entry(hour_of(r.ts))
            .or_default()
            .entry(sensor.as_deref().unwrap_or(""))
            .or_default();
        e.0 += value;
        e.1 += 1;
    }
    sums.into_iter()
        .map(|(h, s)| (h, s.values().map(|(sum, n)| sum / *n as f64).sum()))
        .collect()
}

/// The mean of the values of a non-empty list of `(hour, value)`.
fn mean_of(hours: &[(i64, f64)]) -> f64 {
    hours.iter().fold(0.0, |a, (_, v)| a + v) / hours.len() as f64
}

/// The typical value from the baseline window's observed hours: their mean, or `None`.
fn typical_of(records: &[&Record]) -> (Typical, Option<f64>) {
    let hours: Vec<(i64, f64)> = observed_by_hour(records).into_iter().collect();
    if hours.is_empty() {
        return (Typical::Default, None);
    }
    let mean = mean_of(&hours);
    (Typical::Observed(hours), Some(mean))
}

/// Each event's exposure.
fn exposures(params: &ModelParams, events: &[&Record]) -> Vec<EventExposure> {
    events
        .iter()
        .filter_map(|r| match &r.body {
            Some(Body::Event {
                attendance, kind, ..
            }) => Some(EventExposure {
                id: r.id.clone(),
                kind: *kind,
                attendance: attendance.0,
                rate: params.exposure_rates.of(*kind),
                x: formula::event_exposure(&params.exposure_rates, attendance.0, *kind),
            }),
            _ => None,
        })
        .collect()
}

fn sum_x(e: &[EventExposure]) -> f64 {
    // From +0.0: an empty sum is 0, not Rust's −0.0.
    e.iter().fold(0.0, |a, e| a + e.x)
}

impl Evidence<'_> {
    /// The contributions as the records give them, under `config`'s model.
    pub fn recompute(&self, config: &Config) -> Recomputed {
        let params = &config.model;
        let v2 = params.v2();
        let zone = config.zones.get(self.zone);
        let severity = |r: &&Record| match r.body {
            Some(Body::Incident { severity, .. }) => severity as i64,
            _ => 0,
        };
        // I of a set of records: Σ severity, and under v2 + call_weight · C.
        let pressure = |incidents: &[&Record], calls: &[&Record]| {
            let sum = incidents.iter().map(severity).sum::<i64>();
            if v2 {
                formula::incident_pressure(params, sum, calls.len() as u64)
            } else {
                sum as f64
            }
        };
        let of_hour = |rs: &[&Record]| rs.iter().filter(|r| hour_of(r.ts) == self.hour).count();
        let mut events = 0.0;
        let mut demonstration = 0;
        for r in &self.events {
            if let Some(Body::Event {
                attendance, kind, ..
            }) = &r.body
            {
                events += attendance.0;
                if *kind == EventKind::Demonstration {
                    demonstration = 1;
                }
            }
        }
        let deployed_agents = self
            .deployments
            .iter()
            .map(|r| match r.body {
                Some(Body::Deployment { agents, .. }) => agents,
                _ => 0,
            })
            .sum();
        let observed = observed_by_hour(&self.densities).get(&self.hour).copied();
        let (typical_origin, typical) = typical_of(&self.typical_densities);
        let typical = typical.unwrap_or(zone.default_density);
        let crowd = observed.unwrap_or(typical + events);
        let v2 = v2.then(|| {
            let exposure_events = exposures(params, &self.events);
            let spill_by_neighbour: Vec<(ZoneIdx, Vec<EventExposure>)> = self
                .spill
                .iter()
                .map(|(n, evs)| (*n, exposures(params, evs)))
                .collect();
            let spill = params.spill_share
                * spill_by_neighbour
                    .iter()
                    .fold(0.0, |a, (_, e)| a + sum_x(e));
            let surge = observed.map_or(0.0, |o| formula::surge(params, o, typical));
            let traffic_observed = observed_by_hour(&self.traffic).get(&self.hour).copied();
            let (traffic_typical, traffic_typ) = typical_of(&self.typical_traffic);
            let traffic = traffic_observed
                .or(traffic_typ.map(|t| formula::traffic_estimate(params, t, events)));
            let fluidity =
                traffic.and_then(|t| formula::fluidity(params, &ZoneParams::from(zone), t));
            let hc = self.clock_hour;
            let density_missing = self.hour <= hc
                && observed.is_none()
                && matches!(typical_origin, Typical::Observed(_));
            RecomputedV2 {
                calls: of_hour(&self.calls) as u64,
                exposure: sum_x(&exposure_events) + spill + surge,
                exposure_events,
                spill_by_neighbour,
                spill,
                surge,
                traffic_observed,
                traffic_typical,
                traffic,
                fluidity,
                fluidity_level: fluidity.map(|f| formula::fluidity_level(params, f)),
                missing: Missing::default()
                    .with(Missing::DENSITY, density_missing)
                    .with(
                        Missing::INCIDENT,
                        formula::incident_stale(params, self.hour, hc, self.last_incident_hour),
                    )
                    .with(Missing::WEATHER, self.weather.is_none()),
            }
        });
        Recomputed {
            incidents: of_hour(&self.recent) as u64,
            recent: pressure(&self.recent, &self.calls),
            baseline: pressure(&self.baseline, &self.baseline_calls) / params.weeks as f64,
            events,
            demonstration,
            deployed_agents,
            weather: formula::weather_factor_of(params, self.weather),
            observed,
            typical_origin,
            typical,
            crowd,
            v2,
        }
    }

    /// The evidence and the recomputed contributions as JSON, each record cited by `cite`
    /// (a replay names its file and line; a live server its log position). `records` holds
    /// the records by contribution; `v2`, under model v2, the exposure's events with kind,
    /// rate and `X`, the spill by neighbour, the surge's densities and typical crowd, the
    /// calls, the traffic and fluidity, and whether the weather is known.
    pub fn to_json(
        &self,
        re: &Recomputed,
        config: &Config,
        cite: &dyn Fn(&Record) -> Value,
    ) -> Value {
        let cites = |rs: &[&Record]| -> Vec<Value> { rs.iter().map(|r| cite(r)).collect() };
        let zone_id = |z: ZoneIdx| config.zones.get(z).id.clone();
        let typical_json = |t: &Typical, value: Option<f64>, default: &str| match t {
            Typical::Observed(hours) => json!({
                "value": value, "origin": "observed",
                "hours": hours.iter().map(|(h, v)| json!({"hour": format_hour(*h), "value": v})).collect::<Vec<_>>(),
            }),
            Typical::Default => json!({"value": value, "origin": default}),
        };
        let mut out = json!({
            "recomputed": {
                "incidents": re.incidents, "recent": re.recent, "baseline": re.baseline,
                "events": re.events, "demonstration": re.demonstration,
                "deployed_agents": re.deployed_agents, "weather": re.weather, "crowd": re.crowd,
            },
            "records": {
                "recent": cites(&self.recent),
                "baseline": cites(&self.baseline),
                "densities": cites(&self.densities),
                "events": cites(&self.events),
                "deployments": cites(&self.deployments),
                "weather": cites(&self.weather.into_iter().collect::<Vec<_>>()),
            },
        });
        let Some(v2) = &re.v2 else {
            return out;
        };
        let params = &config.model;
        let event_json = |rs: &[&Record], xs: &[EventExposure]| -> Vec<Value> {
            rs.iter()
                .zip(xs)
                .map(|(r, e)| {
                    json!({"record": cite(r), "kind": e.kind.name(), "attendance": e.attendance,
                           "rate": e.rate, "x": e.x})
                })
                .collect()
        };
        let recomputed = &mut out["recomputed"];
        recomputed["calls"] = json!(v2.calls);
        recomputed["exposure"] = json!(v2.exposure);
        recomputed["spill"] = json!(v2.spill);
        recomputed["surge"] = json!(v2.surge);
        recomputed["traffic"] = json!(v2.traffic);
        recomputed["fluidity"] = json!(v2.fluidity);
        recomputed["fluidity_level"] = json!(v2.fluidity_level);
        recomputed["confidence"] = json!(v2.missing.confidence().name());
        recomputed["missing"] = json!(v2.missing.names().collect::<Vec<_>>());
        let records = &mut out["records"];
        records["calls"] = json!(cites(&self.calls));
        records["baseline_calls"] = json!(cites(&self.baseline_calls));
        records["traffic"] = json!(cites(&self.traffic));
        let zone = config.zones.get(self.zone);
        out["v2"] = json!({
            "exposure": {
                "events": event_json(&self.events, &v2.exposure_events),
                "x": sum_x(&v2.exposure_events),
                "spill": v2.spill,
                "surge": v2.surge,
                "exposure": v2.exposure,
            },
            "spill": {
                "share": params.spill_share,
                "neighbours": self.spill.iter().zip(&v2.spill_by_neighbour).map(|((n, rs), (_, xs))| json!({
                    "zone": zone_id(*n),
                    "x": sum_x(xs),
                    "events": event_json(rs, xs),
                })).collect::<Vec<_>>(),
                "spill": v2.spill,
            },
            "surge": {
                "densities": cites(&self.densities),
                "observed": re.observed,
                "typical": typical_json(&re.typical_origin, Some(re.typical), "default_density"),
                "rate": params.surge_rate,
                "surge": v2.surge,
            },
            "calls": {
                "hour": cites(&self.calls.iter().copied().filter(|r| hour_of(r.ts) == self.hour).collect::<Vec<_>>()),
                "recent": cites(&self.calls),
                "baseline": self.baseline_calls.len(),
                "call_weight": params.call_weight,
                "calls": v2.calls,
            },
            "traffic": {
                "records": cites(&self.traffic),
                "observed": v2.traffic_observed,
                "typical": typical_json(&v2.traffic_typical, match &v2.traffic_typical {
                    Typical::Observed(h) => Some(mean_of(h)),
                    Typical::Default => None,
                }, "none"),
                "vehicles_per_attendee": params.vehicles_per_attendee,
                "traffic": v2.traffic,
                "road_capacity": zone.road_capacity,
                "fluidity": v2.fluidity,
                "fluidity_level": v2.fluidity_level,
            },
            "weather": {
                "present": self.weather.is_some(),
                "record": self.weather.map(cite),
            },
            "missing": v2.missing.names().collect::<Vec<_>>(),
            "confidence": v2.missing.confidence().name(),
        });
        out
    }
}

impl Recomputed {
    /// The recomputed figures by the names the store gives them (`vigie_model::point`), for
    /// setting beside the stored ones; `None` for an undefined figure.
    pub fn figures(&self) -> Vec<(&'static str, Option<f64>)> {
        let mut out = vec![
            ("incidents", Some(self.incidents as f64)),
            ("recent", Some(self.recent)),
            ("baseline", Some(self.baseline)),
            ("events", Some(self.events)),
            ("demonstration", Some(self.demonstration as f64)),
            ("deployed_agents", Some(self.deployed_agents as f64)),
            ("weather", Some(self.weather)),
            ("crowd", Some(self.crowd)),
        ];
        if let Some(v2) = &self.v2 {
            out.extend([
                ("calls", Some(v2.calls as f64)),
                ("exposure", Some(v2.exposure)),
                ("spill", Some(v2.spill)),
                ("surge", Some(v2.surge)),
                ("traffic", v2.traffic),
                ("fluidity", v2.fluidity),
                ("fluidity_level", v2.fluidity_level.map(f64::from)),
                ("missing", Some(v2.missing.0 as f64)),
                ("confidence", Some(v2.missing.confidence().value() as f64)),
            ]);
        }
        out
    }

    /// The figures that differ from `stored` (field → value, an undefined one absent) beyond
    /// a relative 1e-9: `(field, recomputed, stored)`.
    pub fn differences(
        &self,
        stored: &BTreeMap<&str, f64>,
    ) -> Vec<(&'static str, Option<f64>, Option<f64>)> {
        self.figures()
            .into_iter()
            .filter_map(|(f, mine)| {
                let theirs = stored.get(f).copied().filter(|v| !v.is_nan());
                let same = match (mine, theirs) {
                    (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                    (None, None) => true,
                    _ => false,
                };
                (!same).then_some((f, mine, theirs))
            })
            .collect()
    }
}
