//! The arithmetic of the reference indicator model (v1 and v2), as plain functions of one zone
//! and hour. Both the dataflow and the from-scratch reference call these, so the float
//! operations happen in the same order in both; what differs between them is how the inputs are
//! gathered. Each formula is evaluated left to right as `docs/model.md` writes it.

use vigie_config::{ExposureRates, ModelParams};
use vigie_model::{Body, ClashReason, ClashRow, EventKind, Record, Trend, ZoneIdx, F64};

/// `f_w`: the weather factor of one hour; missing fields are neutral, no record gives 1.
pub fn weather_factor(
    p: &ModelParams,
    temperature_c: Option<f64>,
    wind_kmh: Option<f64>,
    precip_mm: Option<f64>,
) -> f64 {
    let heat = temperature_c.map_or(0.0, |t| p.heat_weight * (t - p.heat_threshold_c).max(0.0));
    let wind = if wind_kmh.is_some_and(|w| w > p.wind_threshold_kmh) {
        p.wind_weight
    } else {
        0.0
    };
    let rain = if precip_mm.is_some_and(|r| r > p.rain_threshold_mm) {
        p.rain_weight
    } else {
        0.0
    };
    1.0 + heat + wind - rain
}

/// `f_w` of the weather record chosen for an hour; 1 when there is none.
pub fn weather_factor_of(p: &ModelParams, r: Option<&Record>) -> f64 {
    match r.and_then(|r| r.body.as_ref()) {
        Some(Body::Weather {
            temperature_c,
            precip_mm,
            wind_kmh,
            ..
        }) => weather_factor(
            p,
            temperature_c.map(F64::get),
            wind_kmh.map(F64::get),
            precip_mm.map(F64::get),
        ),
        _ => 1.0,
    }
}

/// Everything one zone and hour's score depends on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HourInputs {
    pub baseline: f64,
    pub recent: f64,
    pub crowd: f64,
    /// `E`: the attendance of the overlapping events.
    pub events: f64,
    pub weather: f64,
    pub demonstration: bool,
    /// v2: `X + spill + surge` (0 under v1).
    pub exposure: f64,
    /// v2: the neighbours' share, `spill_share · Σ X(n)`.
    pub spill: f64,
    /// v2: the crowd observed above its typical level.
    pub surge: f64,
}

impl HourInputs {
    /// An hour with a baseline and nothing else: no recent incident, crowd, event or
    /// exposure, neutral weather, no demonstration. Its `raw` is the baseline.
    pub fn baseline_only(baseline: f64) -> HourInputs {
        HourInputs {
            baseline,
            recent: 0.0,
            crowd: 0.0,
            events: 0.0,
            weather: 1.0,
            demonstration: false,
            exposure: 0.0,
            spill: 0.0,
            surge: 0.0,
        }
    }
}

/// Zone parameters the formula needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ZoneParams {
    pub capacity: f64,
    pub scale: f64,
    pub min_agents: u64,
    pub max_agents: u64,
    /// Vehicles per hour; `None`: the zone has no fluidity.
    pub road_capacity: Option<f64>,
}

impl From<&vigie_config::Zone> for ZoneParams {
    fn from(z: &vigie_config::Zone) -> Self {
        ZoneParams {
            capacity: z.capacity,
            scale: z.scale,
            min_agents: z.min_agents,
            max_agents: z.max_agents,
            road_capacity: z.road_capacity,
        }
    }
}

/// v2's `I` of one zone and hour: `Σ severity + call_weight · C` (v1 uses the severity sum).
pub fn incident_pressure(p: &ModelParams, severity_sum: i64, calls: u64) -> f64 {
    severity_sum as f64 + p.call_weight * calls as f64
}

/// v2's `X` of one event: `attendance / 1000 · rate(kind)`.
pub fn event_exposure(rates: &ExposureRates, attendance: f64, kind: EventKind) -> f64 {
    attendance / 1000.0 * rates.of(kind)
}

/// v2's `surge` where a crowd is observed: `surge_rate · max(0, observed − typical) / 1000`.
pub fn surge(p: &ModelParams, observed: f64, typical: f64) -> f64 {
    p.surge_rate * (observed - typical).max(0.0) / 1000.0
}

/// v2's traffic where none is observed but a typical one is known:
/// `traffic_typ + vehicles_per_attendee · E`.
pub fn traffic_estimate(p: &ModelParams, typical: f64, events: f64) -> f64 {
    typical + p.vehicles_per_attendee * events
}

/// v2's fluidity (the BPR travel-time curve): `1 / (1 + α · (traffic / road_capacity)^β)`;
/// `None` for a zone without road capacity.
pub fn fluidity(p: &ModelParams, z: &ZoneParams, traffic: f64) -> Option<f64> {
    z.road_capacity.map(|c| {
        let vc = traffic / c;
        1.0 / (1.0 + p.bpr_alpha * vc.powf(p.bpr_beta))
    })
}

/// v2's `fluidity_level`: 1 at or above the first threshold, 2 the second, 3 the third, else 4.
pub fn fluidity_level(p: &ModelParams, fluidity: f64) -> u8 {
    let [a, b, c] = p.fluidity_thresholds;
    if fluidity >= a {
        1
    } else if fluidity >= b {
        2
    } else if fluidity >= c {
        3
    } else {
        4
    }
}

/// v2's `criticality` (1–4): the risk level against the shortfall of agents.
pub fn criticality(level: u8, required: u64, deployed: u64) -> u8 {
    let short = required > deployed;
    if level == 4 && short {
        4
    } else if (level >= 3 && short) || level == 4 {
        3
    } else if (level >= 2 && short) || level == 3 {
        2
    } else {
        1
    }
}

/// v2: whether the incident feed is missing at hour `h`, with the clock at hour `hc` and the
/// last counted incident at hour `last` (none: no incident at all): only up to the clock, when
/// the last incident is more than `stale_incident_hours` old and before `h`.
pub fn incident_stale(p: &ModelParams, h: i64, hc: i64, last: Option<i64>) -> bool {
    h <= hc
        && match last {
            None => true,
            Some(l) => l < hc - p.stale_incident_hours && h > l,
        }
}

/// `load = crowd / capacity`.
pub fn load(z: &ZoneParams, crowd: f64) -> f64 {
    crowd / z.capacity
}

/// `raw` and `risk_score = 100 · (1 − exp(−raw / scale))`. Under v2 the exposure joins the
/// incident pressure, and v1's `event_weight · E / capacity` term is gone.
pub fn risk_score(p: &ModelParams, z: &ZoneParams, i: &HourInputs) -> f64 {
    let load = load(z, i.crowd);
    let demo = if i.demonstration { 1.0 } else { 0.0 };
    let raw = if p.v2() {
        (i.baseline + p.recent_weight * i.recent + i.exposure)
            * (1.0 + p.overload_weight * (load - 1.0).max(0.0))
            * i.weather
            * (1.0 + p.demonstration_weight * demo)
    } else {
        (i.baseline + p.recent_weight * i.recent)
            * (1.0
                + p.overload_weight * (load - 1.0).max(0.0)
                + p.event_weight * i.events / z.capacity)
            * i.weather
            * (1.0 + p.demonstration_weight * demo)
    };
    100.0 * (1.0 - (-raw / z.scale).exp())
}

/// `risk_level`: 1 below the first threshold, 2 below the second, 3 below the third, else 4.
pub fn risk_level(p: &ModelParams, score: f64) -> u8 {
    let [a, b, c] = p.level_thresholds;
    if score < a {
        1
    } else if score < b {
        2
    } else if score < c {
        3
    } else {
        4
    }
}

/// `required_agents = max(min_agents, ceil(risk_score / 100 · max_agents))`.
pub fn required_agents(z: &ZoneParams, score: f64) -> u64 {
    let need = (score / 100.0 * z.max_agents as f64).ceil();
    z.min_agents.max(need as u64)
}

/// `protection_rate = min(1, deployed / required)`, 1 when nothing is required.
pub fn protection_rate(deployed: u64, required: u64) -> f64 {
    if required == 0 {
        1.0
    } else {
        (deployed as f64 / required as f64).min(1.0)
    }
}

/// `trend` of a score against the scores of the three previous hours `[h−1, h−2, h−3]`.
pub fn trend(p: &ModelParams, score: f64, previous: [f64; 3]) -> Trend {
    trend_by(p.trend_threshold, score, previous)
}

/// The trend of a series at `x` against its values at the three previous hours
/// `[h−1, h−2, h−3]`, with threshold `tau`.
pub fn trend_by(tau: f64, x: f64, previous: [f64; 3]) -> Trend {
    let m = (previous[0] + previous[1] + previous[2]) / 3.0;
    if x - m > tau {
        Trend::Rising
    } else if m - x > tau {
        Trend::Falling
    } else {
        Trend::Stable
    }
}

/// An event as clashes see it: `(id, start, end, attendance, kind)`.
pub type ClashEvent<'a> = (&'a str, i64, i64, f64, EventKind);

/// The clash between two counted events of zone `z`, if they clash: they overlap
/// (`a.start < b.end` and `b.start < a.end`) and either is a demonstration or roadworks, or
/// their attendances add up beyond the zone's capacity. The row has `a < b` by id and the
/// overlap as its interval.
pub fn clash(z: ZoneIdx, capacity: f64, a: ClashEvent, b: ClashEvent) -> Option<ClashRow> {
    let (a, b) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    if a.0 == b.0 || !(a.1 < b.2 && b.1 < a.2) {
        return None;
    }
    let reason = if a.4 == EventKind::Demonstration || b.4 == EventKind::Demonstration {
        ClashReason::Demonstration
    } else if a.4 == EventKind::Roadworks || b.4 == EventKind::Roadworks {
        ClashReason::Roadworks
    } else if a.3 + b.3 > capacity {
        ClashReason::Capacity
    } else {
        return None;
    };
    Some(ClashRow {
        zone: z,
        a: a.0.to_string(),
        b: b.0.to_string(),
        start: a.1.max(b.1),
        end: a.2.min(b.2),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> ZoneParams {
        ZoneParams {
            capacity: 1000.0,
            scale: 10.0,
            min_agents: 1,
            max_agents: 8,
            road_capacity: Some(2000.0),
        }
    }

    fn v1() -> ModelParams {
        ModelParams {
            version: 1,
            ..ModelParams::default()
        }
    }

    #[test]
    fn weather_factor_as_documented() {
        let p = v1();
        assert_eq!(weather_factor(&p, None, None, None), 1.0);
        assert!((weather_factor(&p, Some(35.0), None, None) - 1.1).abs() < 1e-12);
        assert!((weather_factor(&p, Some(20.0), Some(61.0), Some(3.0)) - 1.0).abs() < 1e-12);
        assert!((weather_factor(&p, None, Some(60.0), Some(2.5)) - 0.9).abs() < 1e-12);
    }

    #[test]
    fn score_by_hand() {
        let p = v1();
        // baseline 1, recent 4, crowd 1500 (load 1.5), E 500, f_w 1.1, a demonstration:
        // raw = (1 + 2) · (1 + 0.8·0.5 + 0.3·0.5) · 1.1 · 1.5 = 3 · 1.55 · 1.65 = 7.6725
        let i = HourInputs {
            baseline: 1.0,
            recent: 4.0,
            crowd: 1500.0,
            events: 500.0,
            weather: 1.1,
            demonstration: true,
            exposure: 0.0,
            spill: 0.0,
            surge: 0.0,
        };
        let s = risk_score(&p, &zone(), &i);
        let expected = 100.0 * (1.0 - (-7.6725f64 / 10.0).exp());
        assert!((s - expected).abs() < 1e-9, "{s} vs {expected}");
        assert_eq!(risk_level(&p, s), 3); // 53.57…
        assert_eq!(required_agents(&zone(), s), 5); // ceil(0.5357 · 8)
        assert_eq!(protection_rate(3, 5), 0.6);
        assert_eq!(protection_rate(9, 5), 1.0);
        assert_eq!(protection_rate(0, 0), 1.0);
        let quiet = HourInputs::baseline_only(0.0);
        assert_eq!(risk_score(&p, &zone(), &quiet), 0.0);
        assert_eq!(required_agents(&zone(), 0.0), 1);
    }

    #[test]
    fn v2_by_hand() {
        let p = ModelParams::default();
        let rates = &p.exposure_rates;
        // The seed's match: 80,000 at the stadium, X = 80 · 0.12 = 9.6.
        assert!((event_exposure(rates, 80_000.0, EventKind::Sport) - 9.6).abs() < 1e-12);
        assert_eq!(event_exposure(rates, 5_000.0, EventKind::Roadworks), 0.0);
        assert_eq!(incident_pressure(&p, 7, 2), 7.5);
        assert!((surge(&p, 6_000.0, 2_000.0) - 0.2).abs() < 1e-12);
        assert_eq!(surge(&p, 1_000.0, 2_000.0), 0.0);
        // No incident at all, 80,000 people in a zone of 19,230 (load 4.16), no weather:
        // raw = 9.6 · (1 + 0.8 · 3.16) = 33.87…, with a scale of 10: 96.6, level 4.
        let stadium = ZoneParams {
            capacity: 19_230.0,
            scale: 10.0,
            min_agents: 2,
            max_agents: 40,
            road_capacity: None,
        };
        let i = HourInputs {
            baseline: 0.0,
            recent: 0.0,
            crowd: 80_000.0,
            events: 80_000.0,
            weather: 1.0,
            demonstration: false,
            exposure: 9.6,
            spill: 0.0,
            surge: 0.0,
        };
        let raw: f64 = 9.6 * (1.0 + 0.8 * (80_000.0 / 19_230.0 - 1.0));
        let s = risk_score(&p, &stadium, &i);
        assert!(
            (s - 100.0 * (1.0 - (-raw / 10.0).exp())).abs() < 1e-9,
            "{s}"
        );
        assert_eq!(risk_level(&p, s), 4);
        // The same hour under v1 scores nothing: no incident history.
        assert_eq!(risk_score(&v1(), &stadium, &i), 0.0);
        let required = required_agents(&stadium, s);
        assert_eq!(criticality(4, required, 0), 4);
        assert_eq!(criticality(4, required, required), 3);
        assert_eq!(criticality(3, 5, 4), 3);
        assert_eq!(criticality(3, 5, 5), 2);
        assert_eq!(criticality(2, 5, 4), 2);
        assert_eq!(criticality(2, 5, 9), 1);
        assert_eq!(criticality(1, 5, 0), 1);
        // Fluidity: v/c = 1 gives 1 / 1.15; v/c = 0.5 gives 1 / (1 + 0.15/16).
        let f = fluidity(&p, &zone(), 2000.0).unwrap();
        assert!((f - 1.0 / 1.15).abs() < 1e-12);
        assert_eq!(fluidity_level(&p, f), 2);
        let f = fluidity(&p, &zone(), 1000.0).unwrap();
        assert!((f - 1.0 / (1.0 + 0.15 / 16.0)).abs() < 1e-12);
        assert_eq!(fluidity_level(&p, f), 1);
        assert_eq!(fluidity(&p, &stadium, 1000.0), None);
        assert_eq!(
            [0.95, 0.9, 0.8, 0.75, 0.6, 0.5, 0.49].map(|f| fluidity_level(&p, f)),
            [1, 1, 2, 2, 3, 3, 4]
        );
        assert_eq!(traffic_estimate(&p, 1500.0, 2000.0), 1700.0);
        // The incident feed is stale more than 6 hours after the last incident, up to the
        // clock, from the hour after it.
        assert!(!incident_stale(&p, 100, 100, Some(94)));
        assert!(incident_stale(&p, 100, 100, Some(93)));
        assert!(!incident_stale(&p, 93, 100, Some(93)));
        assert!(!incident_stale(&p, 101, 100, Some(93)));
        assert!(incident_stale(&p, 50, 100, None));
    }

    #[test]
    fn levels_and_trends_at_their_edges() {
        let p = v1();
        assert_eq!(
            [0.0, 24.99, 25.0, 49.9, 50.0, 74.9, 75.0, 100.0].map(|s| risk_level(&p, s)),
            [1, 1, 2, 2, 3, 3, 4, 4]
        );
        assert_eq!(trend(&p, 20.0, [10.0, 10.0, 10.0]), Trend::Rising);
        assert_eq!(trend(&p, 15.0, [10.0, 10.0, 10.0]), Trend::Stable);
        assert_eq!(trend(&p, 4.0, [10.0, 10.0, 10.0]), Trend::Falling);
    }

    #[test]
    fn clashes_by_reason_in_order() {
        let ev = |id, s, e, att, kind| (id, s, e, att, kind);
        let a = ev("a", 0, 10, 600.0, EventKind::Concert);
        let b = ev("b", 5, 20, 600.0, EventKind::Roadworks);
        let c = clash(3, 1000.0, b, a).unwrap();
        assert_eq!(
            (c.a.as_str(), c.b.as_str(), c.start, c.end, c.reason),
            ("a", "b", 5, 10, ClashReason::Roadworks)
        );
        let d = ev("d", 9, 12, 1.0, EventKind::Demonstration);
        assert_eq!(
            clash(3, 1000.0, b, d).unwrap().reason,
            ClashReason::Demonstration
        );
        let e = ev("e", 5, 20, 600.0, EventKind::Sport);
        assert_eq!(
            clash(3, 1000.0, a, e).unwrap().reason,
            ClashReason::Capacity
        );
        assert_eq!(clash(3, 1200.0, a, e), None); // 1200 is not above capacity
        assert_eq!(
            clash(3, 1000.0, a, ev("f", 10, 30, 900.0, EventKind::Sport)),
            None
        ); // touching
        assert_eq!(clash(3, 1000.0, a, a), None);
    }
}
