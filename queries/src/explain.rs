//! Why a zone has its figures at an hour: the records behind each contribution, found with
//! the windows of `docs/model.md` in the records that count (upserts resolved, cancellations
//! removed), and the contributions recomputed from them so they can be set beside the stored
//! ones.

use crate::formula;
use vigie_config::ModelParams;
use vigie_model::time::{hour_of, Calendar};
use vigie_model::{Body, EventKind, Record, WeatherKind, ZoneIdx};

/// The records behind the figures of one zone and hour.
#[derive(Debug, Default)]
pub struct Evidence<'a> {
    /// Incidents of the hour and the two before (`recent`); those of the hour give `incidents`.
    pub recent: Vec<&'a Record>,
    /// Incidents of the same hour of week in the W weeks before the clock's (`baseline`).
    pub baseline: Vec<&'a Record>,
    /// Density records of the hour (`observed`, hence `crowd`).
    pub densities: Vec<&'a Record>,
    /// Events overlapping the hour (`events`, `demonstration`).
    pub events: Vec<&'a Record>,
    /// Deployments overlapping the hour (`deployed_agents`).
    pub deployments: Vec<&'a Record>,
    /// The weather record chosen for the hour, if any (`weather`).
    pub weather: Option<&'a Record>,
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
}

fn overlaps(start: i64, end: i64, hour: i64) -> bool {
    let (a, b) = (hour * 3_600_000_000, (hour + 1) * 3_600_000_000);
    start < b && end > a
}

/// The records among `counted` behind zone `zone` at hour `hour` (hours since the epoch),
/// with the clock at hour `clock_hour`.
pub fn records_behind<'a>(
    counted: &[&'a Record],
    zone: ZoneIdx,
    hour: i64,
    clock_hour: i64,
    params: &ModelParams,
    calendar: &Calendar,
) -> Evidence<'a> {
    let k = calendar.week(clock_hour);
    let how = calendar.how(hour);
    let mut ev = Evidence::default();
    let mut forecast: Option<&Record> = None;
    let mut observed: Option<&Record> = None;
    for &r in counted {
        let h = hour_of(r.ts);
        match r.body.as_ref() {
            Some(Body::Incident { zone: z, .. }) if *z == zone => {
                if (hour - 2..=hour).contains(&h) {
                    ev.recent.push(r);
                }
                let w = calendar.week(h);
                if k - params.weeks <= w && w < k && calendar.how(h) == how {
                    ev.baseline.push(r);
                }
            }
            Some(Body::Density { zone: z, .. }) if *z == zone && h == hour => ev.densities.push(r),
            Some(Body::Event {
                zone: z,
                start,
                end,
                ..
            }) if *z == zone && overlaps(*start, *end, hour) => ev.events.push(r),
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
    for v in [
        &mut ev.recent,
        &mut ev.baseline,
        &mut ev.densities,
        &mut ev.events,
        &mut ev.deployments,
    ] {
        v.sort_by_key(|r| (r.ts, r.seq));
    }
    ev
}

impl Evidence<'_> {
    /// The contributions as the records give them.
    pub fn recompute(&self, hour: i64, params: &ModelParams) -> Recomputed {
        let severity = |r: &&Record| match r.body {
            Some(Body::Incident { severity, .. }) => severity as i64,
            _ => 0,
        };
        let this_hour = || self.recent.iter().filter(|r| hour_of(r.ts) == hour);
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
        let weather = formula::weather_factor_of(params, self.weather);
        Recomputed {
            incidents: this_hour().count() as u64,
            recent: self.recent.iter().map(severity).sum::<i64>() as f64,
            baseline: self.baseline.iter().map(severity).sum::<i64>() as f64 / params.weeks as f64,
            events,
            demonstration,
            deployed_agents,
            weather,
        }
    }
}
