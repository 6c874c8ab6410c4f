//! What the dataflow keeps per zone ([`Fact`]s) and the computation of one zone's indicators
//! over the horizon from them ([`ZoneComputer`]), called by the zone reduce whenever a zone's
//! facts or the clock change.

use crate::calendar::CachedCalendar;
use serde::{Deserialize, Serialize};
use vigie_config::ModelParams;
use vigie_model::time::overlapped_hours;
use vigie_model::{EventKind, IndicatorRow, ZoneIdx, F64};
use vigie_queries::formula::{self, HourInputs, ZoneParams};

/// What a zone's indicators are computed from: per-hour aggregates of its incidents and
/// densities, the hour's weather factor, its counted events and deployments, and the clock.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Fact {
    /// The hour of the clock.
    Clock(i64),
    /// `N` and `I` of an hour with counted incidents.
    Incidents {
        hour: i64,
        n: u64,
        sum: i64,
    },
    /// `observed` of an hour with density records.
    Observed {
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
    weather: Vec<f64>,
    scores: Vec<f64>,
    inputs: Vec<HourInputs>,
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
        self.weather.resize(n, 1.0);
        let mut base = [0i64; 168];
        let mut typ = [(0.0f64, 0u64); 168];

        for &(fact, mult) in facts {
            if mult <= 0 {
                continue;
            }
            match fact {
                Fact::Clock(_) => {}
                Fact::Incidents { hour, n, sum } => {
                    if *hour >= inc_first && *hour <= last {
                        self.inc[(*hour - inc_first) as usize] = (*n, *sum);
                    }
                    if in_window(*hour) {
                        base[self.cal.how(*hour) as usize] += sum;
                    }
                }
                Fact::Observed { hour, value } => {
                    if *hour >= first && *hour <= last {
                        self.obs[(*hour - first) as usize] = Some(value.0);
                    }
                    if in_window(*hour) {
                        let e = &mut typ[self.cal.how(*hour) as usize];
                        e.0 += value.0;
                        e.1 += 1;
                    }
                }
                Fact::Weather { hour, factor } => {
                    if *hour >= first && *hour <= last {
                        self.weather[(*hour - first) as usize] = factor.0;
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
            let weather = self.weather[idx];
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
