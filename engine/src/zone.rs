//! What the dataflow keeps per zone ([`Fact`]s) and the computation of one zone's indicators
//! over the horizon from them ([`ZoneComputer`]), called by the zone reduce whenever a zone's
//! facts or the clock change.

use crate::calendar::CachedCalendar;
use serde::{Deserialize, Serialize};
use vigie_config::ModelParams;
use vigie_model::time::overlapped_hours;
use vigie_model::{EventKind, IndicatorRow, WeatherKind, ZoneIdx, F64};
use vigie_queries::formula::{self, HourInputs, ZoneParams};

/// One counted input of a zone, stripped to what the indicators need so that equal facts
/// consolidate (a million incidents become at most five facts per zone and hour).
/// The order of variants and fields is the order the zone computation reads them in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Fact {
    /// The hour of the clock.
    Clock(i64),
    Incident {
        hour: i64,
        severity: u8,
    },
    Density {
        hour: i64,
        sensor: Option<String>,
        people: F64,
    },
    /// City-wide weather, copied to every zone. `issued_at` is `i64::MIN` when absent.
    Weather {
        hour: i64,
        kind: WeatherKind,
        issued_at: i64,
        seq: u64,
        temperature_c: Option<F64>,
        precip_mm: Option<F64>,
        wind_kmh: Option<F64>,
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
}

/// A zone's static parameters.
#[derive(Clone, Debug)]
pub struct ZoneInfo {
    pub params: ZoneParams,
    pub default_density: f64,
}

/// Scratch space for one zone's computation, reused across calls.
pub struct ZoneComputer {
    model: ModelParams,
    zones: Vec<ZoneInfo>,
    cal: CachedCalendar,
    inc: Vec<(u64, i64)>,
    obs: Vec<Option<f64>>,
    events: Vec<f64>,
    demo: Vec<bool>,
    deployed: Vec<u64>,
    weather: Vec<Option<(WeatherSel, [Option<f64>; 3])>>,
    scores: Vec<f64>,
    inputs: Vec<HourInputs>,
}

/// Which weather record is chosen for an hour: observed beats forecast; among observed, the
/// last arrived; among forecasts, the greatest `issued_at`, then the last arrived.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct WeatherSel {
    observed: bool,
    issued_at: i64,
    seq: u64,
}

impl ZoneComputer {
    /// A computer for these zones and coefficients.
    pub fn new(model: ModelParams, zones: Vec<ZoneInfo>, cal: CachedCalendar) -> Self {
        ZoneComputer {
            model,
            zones,
            cal,
            inc: Vec::new(),
            obs: Vec::new(),
            events: Vec::new(),
            demo: Vec::new(),
            deployed: Vec::new(),
            weather: Vec::new(),
            scores: Vec::new(),
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

        self.inc.clear();
        self.inc.resize(n + 2, (0, 0));
        self.obs.clear();
        self.obs.resize(n, None);
        self.events.clear();
        self.events.resize(n, 0.0);
        self.demo.clear();
        self.demo.resize(n, false);
        self.deployed.clear();
        self.deployed.resize(n, 0);
        self.weather.clear();
        self.weather.resize(n, None);
        let mut base = [0i64; 168];
        let mut typ = [(0.0f64, 0u64); 168];

        // Densities arrive sorted by (hour, sensor, people): fold each sensor's mean, then
        // each hour's sum over sensors.
        let mut cur_hour: Option<i64> = None;
        let mut cur_sensor: Option<&Option<String>> = None;
        let mut sensor_acc = (0.0f64, 0i64);
        let mut hour_acc = 0.0f64;
        let mut finish_hour =
            |hour: i64, value: f64, obs: &mut Vec<Option<f64>>, cal: &mut CachedCalendar| {
                if hour >= first && hour <= last {
                    obs[(hour - first) as usize] = Some(value);
                }
                if in_window(hour) {
                    let e = &mut typ[cal.how(hour) as usize];
                    e.0 += value;
                    e.1 += 1;
                }
            };

        for &(fact, mult) in facts {
            if mult <= 0 {
                continue;
            }
            match fact {
                Fact::Clock(_) => {}
                Fact::Incident { hour, severity } => {
                    let sev = *severity as i64 * mult as i64;
                    if *hour >= inc_first && *hour <= last {
                        let e = &mut self.inc[(*hour - inc_first) as usize];
                        e.0 += mult as u64;
                        e.1 += sev;
                    }
                    if in_window(*hour) {
                        base[self.cal.how(*hour) as usize] += sev;
                    }
                }
                Fact::Density {
                    hour,
                    sensor,
                    people,
                } => {
                    if cur_hour != Some(*hour) || cur_sensor != Some(sensor) {
                        if cur_sensor.is_some() {
                            hour_acc += sensor_acc.0 / sensor_acc.1 as f64;
                        }
                        if cur_hour.is_some_and(|h| h != *hour) {
                            finish_hour(cur_hour.unwrap(), hour_acc, &mut self.obs, &mut self.cal);
                            hour_acc = 0.0;
                        }
                        cur_hour = Some(*hour);
                        cur_sensor = Some(sensor);
                        sensor_acc = (0.0, 0);
                    }
                    for _ in 0..mult {
                        sensor_acc.0 += people.0;
                    }
                    sensor_acc.1 += mult as i64;
                }
                Fact::Weather {
                    hour,
                    kind,
                    issued_at,
                    seq,
                    temperature_c,
                    precip_mm,
                    wind_kmh,
                } => {
                    if *hour < first || *hour > last {
                        continue;
                    }
                    let sel = WeatherSel {
                        observed: *kind == WeatherKind::Observed,
                        // Among observed records only arrival counts.
                        issued_at: if *kind == WeatherKind::Observed {
                            0
                        } else {
                            *issued_at
                        },
                        seq: *seq,
                    };
                    let slot = &mut self.weather[(*hour - first) as usize];
                    if slot.as_ref().is_none_or(|(s, _)| sel > *s) {
                        *slot = Some((
                            sel,
                            [
                                temperature_c.map(F64::get),
                                wind_kmh.map(F64::get),
                                precip_mm.map(F64::get),
                            ],
                        ));
                    }
                }
                Fact::Event {
                    start,
                    end,
                    attendance,
                    kind,
                } => {
                    let (lo, hi) = overlapped_hours(*start, *end);
                    for h in lo.max(first)..=hi.min(last) {
                        let i = (h - first) as usize;
                        for _ in 0..mult {
                            self.events[i] += attendance.0;
                        }
                        if *kind == EventKind::Demonstration {
                            self.demo[i] = true;
                        }
                    }
                }
                Fact::Deployment { start, end, agents } => {
                    let (lo, hi) = overlapped_hours(*start, *end);
                    for h in lo.max(first)..=hi.min(last) {
                        self.deployed[(h - first) as usize] += agents * mult as u64;
                    }
                }
            }
        }
        if let (Some(h), Some(_)) = (cur_hour, cur_sensor) {
            hour_acc += sensor_acc.0 / sensor_acc.1 as f64;
            finish_hour(h, hour_acc, &mut self.obs, &mut self.cal);
        }

        self.inputs.clear();
        self.scores.clear();
        for idx in 0..n {
            let h = first + idx as i64;
            let how = self.cal.how(h) as usize;
            let crowd = match self.obs[idx] {
                Some(v) => v,
                None => {
                    let typical = match typ[how] {
                        (_, 0) => info.default_density,
                        (s, c) => s / c as f64,
                    };
                    typical + self.events[idx]
                }
            };
            let i_at = |j: usize| self.inc[j].1;
            // inc is offset by two hours: inc[idx + 2] is hour h.
            let weather = match &self.weather[idx] {
                Some((_, [t, w, r])) => formula::weather_factor(p, *t, *w, *r),
                None => 1.0,
            };
            let inputs = HourInputs {
                baseline: base[how] as f64 / p.weeks as f64,
                recent: (i_at(idx + 2) + i_at(idx + 1) + i_at(idx)) as f64,
                crowd,
                events: self.events[idx],
                weather,
                demonstration: self.demo[idx],
            };
            self.scores
                .push(formula::risk_score(p, &info.params, &inputs));
            self.inputs.push(inputs);
        }
        for idx in 3..n {
            let i = &self.inputs[idx];
            let score = self.scores[idx];
            let required = formula::required_agents(&info.params, score);
            out.push((
                IndicatorRow {
                    zone: z,
                    hour: first + idx as i64,
                    risk_score: F64(score),
                    risk_level: formula::risk_level(p, score),
                    protection_rate: F64(formula::protection_rate(self.deployed[idx], required)),
                    required_agents: required,
                    deployed_agents: self.deployed[idx],
                    trend: formula::trend(
                        p,
                        score,
                        [
                            self.scores[idx - 1],
                            self.scores[idx - 2],
                            self.scores[idx - 3],
                        ],
                    ),
                    crowd: F64(i.crowd),
                    load: F64(formula::load(&info.params, i.crowd)),
                    incidents: self.inc[idx + 2].0,
                    baseline: F64(i.baseline),
                    recent: F64(i.recent),
                    events: F64(i.events),
                    weather: F64(i.weather),
                    demonstration: i.demonstration as u8,
                },
                1,
            ));
        }
    }
}
