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
use vigie_model::{EventKind, IndicatorRow, Missing, RowV2, Trend, ZoneIdx, F64};
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

/// The frame of a zone's computation at a clock: the horizon with the three hours before it
/// that the trends read (`first..=last`), the baseline window `[win_lo, win_hi)` (the `W`
/// weeks before the clock's week `k`), and the hour of the last incident.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Frame {
    hc: i64,
    first: i64,
    last: i64,
    k: i64,
    win_lo: i64,
    win_hi: i64,
    last_incident: Option<i64>,
}

impl Frame {
    fn len(&self) -> usize {
        (self.last - self.first + 1) as usize
    }

    fn in_window(&self, g: i64) -> bool {
        self.win_lo <= g && g < self.win_hi
    }

    /// The hours of `[start, end)` within the frame.
    fn span(&self, start: i64, end: i64) -> std::ops::RangeInclusive<i64> {
        let (lo, hi) = overlapped_hours(start, end);
        lo.max(self.first)..=hi.min(self.last)
    }
}

/// Sums over the baseline window, per hour of week.
#[derive(Clone)]
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

impl Default for Windowed {
    fn default() -> Self {
        Windowed {
            base: [0; 168],
            base_v2: [0.0; 168],
            typ: [(0.0, 0); 168],
            traffic_typ: [(0.0, 0); 168],
        }
    }
}

impl Windowed {
    /// Adds the point facts of hour `g` (of hour of week `how`), in hour order.
    fn add(&mut self, p: &ModelParams, how: usize, fact: &Fact) {
        match fact {
            Fact::Incidents { sum, calls, .. } => {
                self.base[how] += sum;
                self.base_v2[how] += formula::incident_pressure(p, *sum, *calls);
            }
            Fact::Observed { value, .. } => {
                let e = &mut self.typ[how];
                e.0 += value.0;
                e.1 += 1;
            }
            Fact::Traffic { value, .. } => {
                let e = &mut self.traffic_typ[how];
                e.0 += value.0;
                e.1 += 1;
            }
            _ => {}
        }
    }

    fn clear(&mut self, how: usize) {
        self.base[how] = 0;
        self.base_v2[how] = 0.0;
        self.typ[how] = (0.0, 0);
        self.traffic_typ[how] = (0.0, 0);
    }
}

/// The facts of one hour of a zone, as the hour's computation needs them.
#[derive(Clone, Copy, Debug, Default)]
struct HourFacts {
    /// `(N, severity sum, C)` at h−2, h−1 and h.
    inc: [(u64, i64, u64); 3],
    obs: Option<f64>,
    traffic: Option<f64>,
    /// `f_w`, when a weather record describes the hour.
    weather: Option<f64>,
    /// `E`: attendance of the overlapping events.
    events: f64,
    /// `X`: exposure of the overlapping events.
    exposure: f64,
    /// Σ of the neighbours' events' exposure.
    spill: f64,
    demo: bool,
    deployed: u64,
}

impl HourFacts {
    /// Adds an agenda fact that overlaps the hour, `mult` times, in fact order.
    fn add_agenda(&mut self, p: &ModelParams, fact: &Fact, mult: isize) {
        match fact {
            Fact::Event {
                attendance, kind, ..
            } => {
                let x = formula::event_exposure(&p.exposure_rates, attendance.0, *kind);
                for _ in 0..mult {
                    self.events += attendance.0;
                    self.exposure += x;
                }
                if *kind == EventKind::Demonstration {
                    self.demo = true;
                }
            }
            Fact::Deployment { agents, .. } => self.deployed += agents * mult as u64,
            Fact::Spill { x, .. } => {
                for _ in 0..mult {
                    self.spill += x.0;
                }
            }
            _ => {}
        }
    }
}

/// What the trends of the next three hours read of an hour.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Series {
    score: f64,
    load: f64,
    fluidity: Option<f64>,
}

/// The `[start, end)` of an agenda fact (event, deployment, spill).
fn agenda_interval(fact: &Fact) -> Option<(i64, i64)> {
    match fact {
        Fact::Event { start, end, .. }
        | Fact::Deployment { start, end, .. }
        | Fact::Spill { start, end, .. } => Some((*start, *end)),
        _ => None,
    }
}

/// The lowest float in `F64`'s order (a negative NaN with the largest payload), to start
/// ranges of facts at an hour.
const F64_MIN: F64 = F64(f64::from_bits(u64::MAX));

/// A point fact's hour.
fn point_hour(f: &Fact) -> Option<i64> {
    match f {
        Fact::Incidents { hour, .. }
        | Fact::Observed { hour, .. }
        | Fact::Traffic { hour, .. }
        | Fact::Weather { hour, .. } => Some(*hour),
        _ => None,
    }
}

/// The incidents' tallies of hours `lo..=hi`, in hour order: of each hour, its first fact,
/// when it counts. One walk down the facts' tree for the whole span.
fn incidents_in(
    facts: &BTreeMap<Fact, isize>,
    lo: i64,
    hi: i64,
) -> impl Iterator<Item = (i64, &Fact)> {
    let lowest = Fact::Incidents {
        hour: lo,
        n: 0,
        sum: i64::MIN,
        calls: 0,
    };
    let mut last = lo - 1;
    facts
        .range(lowest..)
        .map_while(move |(f, m)| match f {
            Fact::Incidents { hour, .. } if *hour <= hi => Some((*hour, f, *m)),
            _ => None,
        })
        .filter(move |(hour, _, _)| {
            let first = *hour > last;
            last = *hour;
            first
        })
        .filter(|(_, _, m)| *m > 0)
        .map(|(hour, f, _)| (hour, f))
}

/// The incidents' tally of hour `g`.
fn incidents_at(facts: &BTreeMap<Fact, isize>, g: i64) -> Option<&Fact> {
    incidents_in(facts, g, g).next().map(|(_, f)| f)
}

/// The `observed`, `traffic_obs` and `f_w` facts of hour `g`.
fn values_at(facts: &BTreeMap<Fact, isize>, g: i64) -> [Option<&Fact>; 3] {
    let at = |lowest: Fact| {
        let kind = std::mem::discriminant(&lowest);
        facts
            .range(lowest..)
            .next()
            .filter(|(f, m)| {
                **m > 0 && std::mem::discriminant(*f) == kind && point_hour(f) == Some(g)
            })
            .map(|(f, _)| f)
    };
    [
        at(Fact::Observed {
            hour: g,
            value: F64_MIN,
        }),
        at(Fact::Traffic {
            hour: g,
            value: F64_MIN,
        }),
        at(Fact::Weather {
            hour: g,
            factor: F64_MIN,
        }),
    ]
}

/// One zone's computation as it was last done: its frame, window sums, the values the trends
/// read for every hour of the frame, its output rows (`first + 3..=last`, in hour order), and
/// the agenda facts that overlap the frame (a zone keeps its whole agenda, but an hour's
/// figures only read these).
struct View {
    frame: Frame,
    windowed: Box<Windowed>,
    series: Vec<Series>,
    rows: Vec<IndicatorRow>,
    active: BTreeMap<Fact, isize>,
}

/// What an epoch's fact updates made stale in a zone's [`View`].
#[derive(Default)]
struct Stale {
    /// The first computation: every hour.
    all: bool,
    /// The clock or the last incident moved.
    frame: bool,
    hours: Vec<i64>,
    /// Hours of week whose window sums changed.
    hows: Vec<u8>,
    /// Updates of agenda facts that overlap the frame.
    agenda: Vec<(Fact, isize)>,
}

/// Scratch space and parameters for the zones' computations.
pub struct ZoneComputer {
    model: ModelParams,
    zones: Vec<ZoneInfo>,
    cal: CachedCalendar,
    hours: Vec<HourFacts>,
    inc: Vec<(u64, i64, u64)>,
}

impl ZoneComputer {
    /// A computer for these zones and coefficients.
    pub fn new(model: ModelParams, zones: Vec<ZoneInfo>, cal: CachedCalendar) -> Self {
        ZoneComputer {
            model,
            zones,
            cal,
            hours: Vec::new(),
            inc: Vec::new(),
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
        if let Some(view) = self.full(z, facts.iter().map(|(f, m)| (*f, *m))) {
            out.extend(view.rows.into_iter().map(|r| (r, 1)));
        }
    }

    /// The frame at the clock of `facts` (sorted: the clock and the last incident come first).
    fn frame<'a>(&mut self, facts: impl Iterator<Item = (&'a Fact, isize)>) -> Option<Frame> {
        let (mut hc, mut last_incident) = (None, None);
        for (f, m) in facts {
            match f {
                _ if m <= 0 => {}
                Fact::Clock(h) => hc = hc.max(Some(*h)),
                Fact::LastIncident(h) => last_incident = last_incident.max(Some(*h)),
                _ => break,
            }
        }
        let hc = hc?;
        let p = &self.model;
        let k = self.cal.week(hc);
        Some(Frame {
            hc,
            first: hc - p.past_hours - 3,
            last: hc + p.future_hours,
            k,
            win_lo: self.cal.week_start_hour(k - p.weeks),
            win_hi: self.cal.week_start_hour(k),
            last_incident,
        })
    }

    /// The whole computation of zone `z` from its facts (sorted): every hour of the frame.
    fn full<'a>(
        &mut self,
        z: ZoneIdx,
        facts: impl Iterator<Item = (&'a Fact, isize)> + Clone,
    ) -> Option<View> {
        let fr = self.frame(facts.clone())?;
        let n = fr.len();
        // Incidents are needed two hours before `first` for `recent`.
        let inc_first = fr.first - 2;
        self.inc.clear();
        self.inc.resize(n + 2, (0, 0, 0));
        self.hours.clear();
        self.hours.resize(n, HourFacts::default());
        let mut windowed = Box::<Windowed>::default();
        let mut active = BTreeMap::new();
        let p = &self.model;
        for (fact, mult) in facts {
            if mult <= 0 {
                continue;
            }
            if let Some(g) = point_hour(fact) {
                if fr.in_window(g) {
                    windowed.add(p, self.cal.how(g) as usize, fact);
                }
            }
            let slot = |h: i64| {
                (fr.first..=fr.last)
                    .contains(&h)
                    .then(|| (h - fr.first) as usize)
            };
            match fact {
                Fact::Incidents {
                    hour,
                    n,
                    sum,
                    calls,
                    ..
                } => {
                    if (inc_first..=fr.last).contains(hour) {
                        self.inc[(*hour - inc_first) as usize] = (*n, *sum, *calls);
                    }
                }
                Fact::Observed { hour, value } => {
                    if let Some(i) = slot(*hour) {
                        self.hours[i].obs = Some(value.0);
                    }
                }
                Fact::Traffic { hour, value } => {
                    if let Some(i) = slot(*hour) {
                        self.hours[i].traffic = Some(value.0);
                    }
                }
                Fact::Weather { hour, factor } => {
                    if let Some(i) = slot(*hour) {
                        self.hours[i].weather = Some(factor.0);
                    }
                }
                _ => {
                    if let Some((start, end)) = agenda_interval(fact) {
                        let span = fr.span(start, end);
                        if !span.is_empty() {
                            active.insert(fact.clone(), mult);
                        }
                        for h in span {
                            self.hours[(h - fr.first) as usize].add_agenda(p, fact, mult);
                        }
                    }
                }
            }
        }
        for (i, hour) in self.hours.iter_mut().enumerate() {
            hour.inc = [self.inc[i], self.inc[i + 1], self.inc[i + 2]];
        }
        let mut series = Vec::with_capacity(n);
        let mut protos = Vec::with_capacity(n);
        for i in 0..n {
            let h = fr.first + i as i64;
            let f = self.hours[i];
            let (row, s) = self.hour_row(z, &fr, &windowed, h, &f);
            series.push(s);
            protos.push(row);
        }
        let rows = protos
            .into_iter()
            .enumerate()
            .skip(3)
            .map(|(i, row)| self.with_trends(row, &series[i - 3..=i]))
            .collect();
        Some(View {
            frame: fr,
            windowed,
            series,
            rows,
            active,
        })
    }

    /// The facts of hour `h` of a zone, read from its facts and its active agenda.
    fn hour_facts(
        &self,
        facts: &BTreeMap<Fact, isize>,
        active: &BTreeMap<Fact, isize>,
        h: i64,
    ) -> HourFacts {
        let mut f = HourFacts::default();
        // The tallies of h−2..=h in one walk down the tree, not three.
        for (g, fact) in incidents_in(facts, h - 2, h) {
            if let Fact::Incidents { n, sum, calls, .. } = fact {
                f.inc[(g - (h - 2)) as usize] = (*n, *sum, *calls);
            }
        }
        let [obs, traffic, weather] = values_at(facts, h);
        f.obs = match obs {
            Some(Fact::Observed { value, .. }) => Some(value.0),
            _ => None,
        };
        f.traffic = match traffic {
            Some(Fact::Traffic { value, .. }) => Some(value.0),
            _ => None,
        };
        f.weather = match weather {
            Some(Fact::Weather { factor, .. }) => Some(factor.0),
            _ => None,
        };
        for (fact, mult) in active {
            if *mult <= 0 {
                continue;
            }
            if let Some((start, end)) = agenda_interval(fact) {
                let (lo, hi) = overlapped_hours(start, end);
                if lo <= h && h <= hi {
                    f.add_agenda(&self.model, fact, *mult);
                }
            }
        }
        f
    }

    /// The window sums of one hour of week, recomputed from the facts of the hours that have
    /// it in each week of the window, in hour order (the order of the whole computation).
    fn window_how(&mut self, facts: &BTreeMap<Fact, isize>, fr: &Frame, how: u8, w: &mut Windowed) {
        let i = how as usize;
        w.clear(i);
        for week in fr.k - self.model.weeks..fr.k {
            let ws = self.cal.week_start_hour(week);
            let we = self.cal.week_start_hour(week + 1);
            let near = ws + how as i64;
            for g in (near - 2).max(ws)..=(near + 2).min(we - 1) {
                if self.cal.how(g) != how {
                    continue;
                }
                if let Some(f) = incidents_at(facts, g) {
                    w.add(&self.model, i, f);
                }
                let [obs, traffic, _] = values_at(facts, g);
                for f in [obs, traffic].into_iter().flatten() {
                    w.add(&self.model, i, f);
                }
            }
        }
    }

    /// Recomputes what `stale` names of a zone's view, and calls `emit` with the output rows
    /// that changed (old, then new). False when it would cost more than the whole computation,
    /// which the caller then does instead.
    fn update(
        &mut self,
        z: ZoneIdx,
        facts: &BTreeMap<Fact, isize>,
        view: &mut View,
        stale: &mut Stale,
        mut emit: impl FnMut(&IndicatorRow, isize),
    ) -> bool {
        const MOST_HOWS: usize = 24;
        let old = view.frame;
        let fr = if stale.frame {
            match self.frame(facts.iter().map(|(f, m)| (f, *m))) {
                Some(fr) => fr,
                None => return false,
            }
        } else {
            old
        };
        let n = fr.len();
        let shift = fr.first - old.first;
        // A new week moves the baseline window: every hour of week changes.
        if fr.k != old.k || fr.len() != old.len() || shift.unsigned_abs() as usize >= n {
            return false;
        }
        stale.hows.sort_unstable();
        stale.hows.dedup();
        if stale.hows.len() > MOST_HOWS {
            return false;
        }
        if fr != old {
            // Hours that enter the frame or its rows; and those up to the clock whose missing
            // inputs depend on where the clock and the last incident are.
            stale
                .hours
                .extend((fr.first..=fr.last).filter(|h| *h < old.first + 3 || *h > old.last));
            let (lo, hi) = (old.hc.min(fr.hc), old.hc.max(fr.hc));
            let p = &self.model;
            stale.hours.extend((fr.first..=hi).filter(|h| {
                *h > lo
                    || formula::incident_stale(p, *h, old.hc, old.last_incident)
                        != formula::incident_stale(p, *h, fr.hc, fr.last_incident)
            }));
        }
        if !stale.hows.is_empty() {
            for h in fr.first..=fr.last {
                if stale.hows.binary_search(&self.cal.how(h)).is_ok() {
                    stale.hours.push(h);
                }
            }
        }
        stale.hours.retain(|h| (fr.first..=fr.last).contains(h));
        stale.hours.sort_unstable();
        stale.hours.dedup();
        if stale.hours.len() > n / 3 {
            return false;
        }
        // From here on the view changes: the hour-by-hour path is taken.
        let mut entered = vec![false; n - 3];
        if fr != old {
            // Rows that leave the frame go; those that enter are computed below (they are
            // stale); series and rows move to the new frame's positions.
            let mut series = view.series.clone();
            let mut rows = std::mem::take(&mut view.rows);
            for (j, row) in rows.iter().enumerate() {
                let h = old.first + 3 + j as i64;
                if h < fr.first + 3 || h > fr.last {
                    emit(row, -1);
                }
            }
            let moved = |i: usize| i as i64 + shift;
            for (i, s) in series.iter_mut().enumerate() {
                let oi = moved(i);
                if (0..n as i64).contains(&oi) {
                    *s = view.series[oi as usize];
                }
            }
            let mut placeholder = None;
            let mut kept: Vec<IndicatorRow> = Vec::with_capacity(n - 3);
            for (j, entering) in entered.iter_mut().enumerate() {
                let oj = moved(j);
                if (0..(n - 3) as i64).contains(&oj) {
                    kept.push(rows[oj as usize].clone());
                } else {
                    // Computed below: the hour is stale.
                    *entering = true;
                    let any = placeholder.get_or_insert_with(|| rows[0].clone());
                    kept.push(any.clone());
                }
            }
            rows.clear();
            view.rows = kept;
            view.series = series;
            view.frame = fr;
            // The agenda facts that overlap the new frame, this epoch's updates included.
            let lowest = Fact::Event {
                start: i64::MIN,
                end: i64::MIN,
                attendance: F64_MIN,
                kind: EventKind::Market,
            };
            view.active = facts
                .range(lowest..)
                .filter(|(f, m)| {
                    **m > 0 && agenda_interval(f).is_some_and(|(s, e)| !fr.span(s, e).is_empty())
                })
                .map(|(f, m)| (f.clone(), *m))
                .collect();
            stale.agenda.clear();
        }
        for (fact, d) in stale.agenda.drain(..) {
            match view.active.entry(fact) {
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
        }
        for &how in &stale.hows {
            self.window_how(facts, &fr, how, &mut view.windowed);
        }
        let mut fresh = Vec::with_capacity(stale.hours.len());
        for &h in &stale.hours {
            let f = self.hour_facts(facts, &view.active, h);
            let (row, s) = self.hour_row(z, &fr, &view.windowed, h, &f);
            view.series[(h - fr.first) as usize] = s;
            fresh.push(row);
        }
        // The stale hours' rows, and the trends of the three hours after each.
        let mut touched: Vec<i64> = stale
            .hours
            .iter()
            .flat_map(|h| *h..=*h + 3)
            .filter(|h| *h >= fr.first + 3 && *h <= fr.last)
            .collect();
        touched.sort_unstable();
        touched.dedup();
        for h in touched {
            let i = (h - fr.first) as usize;
            let proto = match stale.hours.binary_search(&h) {
                Ok(j) => fresh[j].clone(),
                Err(_) => view.rows[i - 3].clone(),
            };
            let row = self.with_trends(proto, &view.series[i - 3..=i]);
            if entered[i - 3] {
                emit(&row, 1);
                view.rows[i - 3] = row;
            } else if row != view.rows[i - 3] {
                emit(&view.rows[i - 3], -1);
                emit(&row, 1);
                view.rows[i - 3] = row;
            }
        }
        true
    }

    /// Hour `h`'s row (trends left to [`ZoneComputer::with_trends`]) and what the trends of the
    /// next hours read of it.
    fn hour_row(
        &mut self,
        z: ZoneIdx,
        fr: &Frame,
        w: &Windowed,
        h: i64,
        f: &HourFacts,
    ) -> (IndicatorRow, Series) {
        let p = &self.model;
        let v2 = p.v2();
        let info = &self.zones[z as usize];
        let how = self.cal.how(h) as usize;
        let typical = match w.typ[how] {
            (_, 0) => info.default_density,
            (s, c) => s / c as f64,
        };
        let crowd = match f.obs {
            Some(v) => v,
            None => typical + f.events,
        };
        let (baseline, recent) = if v2 {
            let i = |(_, sum, calls): (u64, i64, u64)| formula::incident_pressure(p, sum, calls);
            (
                w.base_v2[how] / p.weeks as f64,
                i(f.inc[2]) + i(f.inc[1]) + i(f.inc[0]),
            )
        } else {
            (
                w.base[how] as f64 / p.weeks as f64,
                (f.inc[2].1 + f.inc[1].1 + f.inc[0].1) as f64,
            )
        };
        let (spill, surge) = if v2 {
            (
                p.spill_share * f.spill,
                f.obs.map_or(0.0, |o| formula::surge(p, o, typical)),
            )
        } else {
            (0.0, 0.0)
        };
        let inputs = HourInputs {
            baseline,
            recent,
            crowd,
            events: f.events,
            weather: f.weather.unwrap_or(1.0),
            demonstration: f.demo,
            exposure: f.exposure + spill + surge,
            spill,
            surge,
        };
        let score = formula::risk_score(p, &info.params, &inputs);
        let load = formula::load(&info.params, crowd);
        let level = formula::risk_level(p, score);
        let required = formula::required_agents(&info.params, score);
        let mut fluidity = None;
        let row_v2 = v2.then(|| {
            let traffic = f.traffic.or_else(|| match w.traffic_typ[how] {
                (_, 0) => None,
                (s, c) => Some(formula::traffic_estimate(p, s / c as f64, f.events)),
            });
            fluidity = traffic.and_then(|t| formula::fluidity(p, &info.params, t));
            let missing = Missing::default()
                .with(
                    Missing::DENSITY,
                    h <= fr.hc && f.obs.is_none() && w.typ[how].1 > 0,
                )
                .with(
                    Missing::INCIDENT,
                    formula::incident_stale(p, h, fr.hc, fr.last_incident),
                )
                .with(Missing::WEATHER, f.weather.is_none());
            RowV2 {
                calls: f.inc[2].2,
                criticality: formula::criticality(level, required, f.deployed),
                traffic: traffic.map(F64),
                fluidity: fluidity.map(F64),
                fluidity_level: fluidity.map(|x| formula::fluidity_level(p, x)),
                load_trend: Trend::Stable,
                fluidity_trend: None,
                missing,
                exposure: F64(inputs.exposure),
                spill: F64(spill),
                surge: F64(surge),
            }
        });
        let row = IndicatorRow {
            zone: z,
            hour: h,
            risk_score: F64(score),
            risk_level: level,
            protection_rate: F64(formula::protection_rate(f.deployed, required)),
            required_agents: required,
            deployed_agents: f.deployed,
            trend: Trend::Stable,
            crowd: F64(crowd),
            load: F64(load),
            incidents: f.inc[2].0,
            baseline: F64(baseline),
            recent: F64(recent),
            events: F64(f.events),
            weather: F64(inputs.weather),
            demonstration: f.demo as u8,
            v2: row_v2,
        };
        (
            row,
            Series {
                score,
                load,
                fluidity,
            },
        )
    }

    /// `row` with its trends, from the series of its hour and the three before:
    /// `s = [h−3, h−2, h−1, h]`.
    fn with_trends(&self, mut row: IndicatorRow, s: &[Series]) -> IndicatorRow {
        let p = &self.model;
        let (now, prev) = (s[3], [s[2], s[1], s[0]]);
        row.trend = formula::trend(p, now.score, prev.map(|x| x.score));
        if let Some(v) = &mut row.v2 {
            v.load_trend =
                formula::trend_by(p.load_trend_threshold, now.load, prev.map(|x| x.load));
            v.fluidity_trend = match (
                now.fluidity,
                prev[0].fluidity,
                prev[1].fluidity,
                prev[2].fluidity,
            ) {
                (Some(f), Some(a), Some(b), Some(c)) => {
                    Some(formula::trend_by(p.fluidity_trend_threshold, f, [a, b, c]))
                }
                _ => None,
            };
        }
        row
    }
}

/// One zone's state in [`zone_rows`]: its facts with their counts (none zero), and its last
/// computation (none without a clock).
#[derive(Default)]
struct ZoneState {
    facts: BTreeMap<Fact, isize>,
    view: Option<View>,
}

impl ZoneState {
    /// Applies one fact update and notes what it makes stale in the view.
    fn apply(&mut self, cal: &mut CachedCalendar, fact: Fact, d: isize, stale: &mut Stale) {
        match (&fact, &self.view) {
            (_, None) => stale.all = true,
            (Fact::Clock(_) | Fact::LastIncident(_), _) => stale.frame = true,
            (_, Some(view)) if !stale.all => {
                let fr = &view.frame;
                match &fact {
                    Fact::Incidents { hour, .. } => {
                        stale.hours.extend(*hour..=*hour + 2);
                        if fr.in_window(*hour) {
                            stale.hows.push(cal.how(*hour));
                        }
                    }
                    Fact::Observed { hour, .. } | Fact::Traffic { hour, .. } => {
                        stale.hours.push(*hour);
                        if fr.in_window(*hour) {
                            stale.hows.push(cal.how(*hour));
                        }
                    }
                    Fact::Weather { hour, .. } => stale.hours.push(*hour),
                    _ => {
                        if let Some((start, end)) = agenda_interval(&fact) {
                            let span = fr.span(start, end);
                            if !span.is_empty() {
                                stale.hours.extend(span);
                                stale.agenda.push((fact.clone(), d));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        match self.facts.entry(fact) {
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
    }
}

/// An epoch's fact updates in [`zone_rows`], with the capability to output at that epoch.
type Epoch = (Capability<u64>, Vec<(ZoneIdx, Fact, isize)>);

/// Rows (hours) [`zone_rows`] computes in one activation before it asks to be scheduled again
/// for the rest of the epoch, a zone at a time: a zone's whole horizon is some 900 rows, so
/// when the clock moves every zone's horizon the worker gets back every two zones, within a
/// millisecond or two; a live epoch that updates a few hours of each zone is done in one
/// activation. (Not more: the engine's oracle tests, on four zones, then go through epochs
/// computed in slices.)
const ROWS_PER_ACTIVATION: usize = 1_500;

/// The zone operator: every zone's indicator rows, as a collection, from the zones' facts.
///
/// It does what a differential `reduce` keyed by zone would (and did, before it): at each
/// complete epoch, the rows of a zone that received fact updates become those a computation
/// from all its facts gives, and the difference with its previous rows goes out. It is written
/// by hand for two reasons. A zone's rows are one per hour, already in hour order: the
/// difference is a single pass pairing old and new rows by hour, where the reduce sorted and
/// consolidated them together and kept every epoch's rows in an output arrangement. And an
/// epoch's changes usually touch a few hours: an incident at hour t changes `recent` at t..t+2
/// (and, in the baseline window, the hours of its hour of week), an event the hours it overlaps,
/// a weather record its hour; the trends read three hours back. So the operator keeps each
/// zone's last computation ([`View`]) and recomputes only the stale hours and the trends after
/// them, from the same facts and with the same float operations in the same order as the whole
/// computation, which it does when the clock or the last incident changes, on a zone's first
/// computation, or when most hours are stale.
///
/// An epoch is computed in slices of about [`ROWS_PER_ACTIVATION`] rows, one per activation
/// (the operator schedules itself again for the rest), epochs in order: a worker that steps its
/// dataflow between other work (a replay reading its next records) gets back within a few
/// milliseconds, not after every zone of an epoch whose clock moved. Same output, same epochs.
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
    let scope = facts.inner.scope();
    let stream = facts
        .inner
        .unary_frontier(exchange, "Zone", move |_capability, info| {
            let activator = scope.activator_for(info.address);
            let mut pending: BTreeMap<u64, Epoch> = BTreeMap::new();
            let mut zones: Vec<ZoneState> = (0..n_zones).map(|_| ZoneState::default()).collect();
            let mut stale: Vec<Stale> = (0..n_zones).map(|_| Stale::default()).collect();
            // The epoch being computed: its capability and how many of its zones with
            // updates (`dirty`) are done.
            let mut current: Option<(Capability<u64>, usize)> = None;
            let mut dirty: Vec<ZoneIdx> = Vec::new();
            let empty: Vec<IndicatorRow> = Vec::new();
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
                // Complete epochs, in order, until ROWS_PER_ACTIVATION rows are computed in
                // this activation.
                let mut computed = 0;
                loop {
                    if current.is_none() {
                        let Some(first) = pending.first_entry() else {
                            break;
                        };
                        if frontier.less_equal(first.key()) {
                            break;
                        }
                        let (cap, updates) = first.remove();
                        dirty.clear();
                        for (z, fact, d) in updates {
                            let (state, stale) = (&mut zones[z as usize], &mut stale[z as usize]);
                            state.apply(&mut computer.cal, fact, d, stale);
                            dirty.push(z);
                        }
                        dirty.sort_unstable();
                        dirty.dedup();
                        current = Some((cap, 0));
                    }
                    let (cap, done) = current.as_mut().expect("an epoch under way");
                    let t = *cap.time();
                    let mut session = output.session(&*cap);
                    while *done < dirty.len() && computed < ROWS_PER_ACTIVATION {
                        let z = dirty[*done];
                        *done += 1;
                        let state = &mut zones[z as usize];
                        let mut s = std::mem::take(&mut stale[z as usize]);
                        let updated = !s.all
                            && state.view.as_mut().is_some_and(|view| {
                                computer.update(z, &state.facts, view, &mut s, |row, d| {
                                    session.give((row.clone(), t, d))
                                })
                            });
                        if updated {
                            computed += s.hours.len();
                        } else {
                            let view = computer.full(z, state.facts.iter().map(|(f, m)| (f, *m)));
                            let old = state.view.as_ref().map_or(&empty, |v| &v.rows);
                            let new = view.as_ref().map_or(&empty, |v| &v.rows);
                            diff_by_hour(old, new, |row, d| session.give((row.clone(), t, d)));
                            computed += new.len();
                            state.view = view;
                        }
                        // Keep the allocations of the stale lists.
                        s.all = false;
                        s.frame = false;
                        s.hours.clear();
                        s.hows.clear();
                        s.agenda.clear();
                        stale[z as usize] = s;
                    }
                    drop(session);
                    if *done < dirty.len() {
                        // The rest at the next activation: what runs beside the operator (a
                        // replay's reading, other operators) need not wait for a whole epoch.
                        activator.activate();
                        break;
                    }
                    current = None;
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
    new: &[IndicatorRow],
    mut emit: impl FnMut(&IndicatorRow, isize),
) {
    debug_assert!(old.windows(2).all(|w| w[0].hour < w[1].hour));
    debug_assert!(new.windows(2).all(|w| w[0].hour < w[1].hour));
    let (mut i, mut j) = (0, 0);
    loop {
        match (old.get(i), new.get(j)) {
            (None, None) => return,
            (Some(o), Some(n)) if o.hour == n.hour => {
                if o != n {
                    emit(o, -1);
                    emit(n, 1);
                }
                i += 1;
                j += 1;
            }
            (Some(o), Some(n)) if o.hour < n.hour => {
                emit(o, -1);
                i += 1;
            }
            (Some(o), None) => {
                emit(o, -1);
                i += 1;
            }
            (_, Some(n)) => {
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
            let mut updates = Vec::new();
            diff_by_hour(&old, &new, |r, d| updates.push((r.clone(), d)));

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

#[cfg(test)]
mod update_tests {
    use super::*;
    use proptest::prelude::*;
    use vigie_model::time::{Calendar, HOUR_US};

    /// Hour 0 of the tests: 2026-03-16T00:00Z, a Monday. The clocks (H0 + 480..520, early
    /// April) have the change to summer time in Paris (29 March) in their baseline window.
    const H0: i64 = 1_773_619_200 / 3600;

    fn computer(version: u8) -> ZoneComputer {
        let model = ModelParams {
            version,
            weeks: 2,
            past_hours: 30,
            future_hours: 60,
            ..ModelParams::default()
        };
        let zone = ZoneInfo {
            params: ZoneParams {
                capacity: 800.0,
                scale: 6.0,
                min_agents: 1,
                max_agents: 6,
                road_capacity: Some(1500.0),
            },
            default_density: 300.0,
            neighbours: vec![],
        };
        ZoneComputer::new(
            model,
            vec![zone],
            CachedCalendar::new(Calendar::new(chrono_tz::Europe::Paris)),
        )
    }

    /// A change to one zone's facts: a point fact at an hour replaced or removed, an agenda
    /// fact added or removed, or the clock or the last incident moved.
    #[derive(Clone, Debug)]
    enum Change {
        Point(u8, i64, u32),
        Agenda(u8, i64, i64, u32, bool),
        Clock(i64),
        LastIncident(i64),
    }

    fn change() -> impl Strategy<Value = Change> {
        // Hours from three weeks before H0 + 500 to 100 after: the window, the horizon and
        // beyond, across the change to summer time.
        let hour = (H0 + 500 - 3 * 168)..(H0 + 600);
        prop_oneof![
            8 => (0u8..4, hour.clone(), 0u32..6).prop_map(|(k, h, v)| Change::Point(k, h, v)),
            3 => (0u8..3, hour.clone(), 1i64..40, 0u32..5, any::<bool>())
                .prop_map(|(k, h, len, v, add)| Change::Agenda(k, h, len, v, add)),
            1 => ((H0 + 480)..(H0 + 520)).prop_map(Change::Clock),
            1 => ((H0 + 440)..(H0 + 520)).prop_map(Change::LastIncident),
        ]
    }

    /// The fact a point change puts at its hour (value 0: none).
    fn point(kind: u8, hour: i64, v: u32) -> Option<Fact> {
        let x = F64(v as f64 * 137.5);
        (v > 0).then(|| match kind {
            0 => Fact::Incidents {
                hour,
                n: v as u64,
                sum: 2 * v as i64 + 1,
                calls: (v % 3) as u64,
            },
            1 => Fact::Observed { hour, value: x },
            2 => Fact::Traffic { hour, value: x },
            _ => Fact::Weather {
                hour,
                factor: F64(1.0 + v as f64 / 10.0),
            },
        })
    }

    fn agenda(kind: u8, hour: i64, len: i64, v: u32) -> Fact {
        let (start, end) = (hour * HOUR_US + 600_000_000, (hour + len) * HOUR_US);
        match kind {
            0 => Fact::Event {
                start,
                end,
                attendance: F64(v as f64 * 900.0),
                kind: [
                    EventKind::Sport,
                    EventKind::Demonstration,
                    EventKind::Market,
                ][v as usize % 3],
            },
            1 => Fact::Deployment {
                start,
                end,
                agents: v as u64,
            },
            _ => Fact::Spill {
                from: 1,
                start,
                end,
                x: F64(v as f64 * 0.7),
            },
        }
    }

    /// The updates that make `facts` reflect `c`, as the zone's reduces would send them.
    fn updates(facts: &BTreeMap<Fact, isize>, c: &Change) -> Vec<(Fact, isize)> {
        let mut out = Vec::new();
        let mut replace = |old: Option<Fact>, new: Option<Fact>| {
            if let Some(o) = old {
                out.push((o, -1));
            }
            if let Some(n) = new {
                out.push((n, 1));
            }
        };
        let same_kind = |f: &Fact, g: &Fact| std::mem::discriminant(f) == std::mem::discriminant(g);
        match c {
            Change::Point(k, h, v) => {
                let probe = point(*k, *h, 1).unwrap();
                let old = facts
                    .keys()
                    .find(|f| same_kind(f, &probe) && point_hour(f) == Some(*h))
                    .cloned();
                replace(old, point(*k, *h, *v));
            }
            Change::Agenda(k, h, len, v, add) => {
                let f = agenda(*k, *h, *len, *v);
                match (add, facts.contains_key(&f)) {
                    (true, _) => out.push((f, 1)),
                    (false, true) => out.push((f, -1)),
                    (false, false) => {}
                }
            }
            Change::Clock(h) => {
                let old = facts.keys().find(|f| matches!(f, Fact::Clock(_))).cloned();
                replace(old, Some(Fact::Clock(*h)));
            }
            Change::LastIncident(h) => {
                let old = facts
                    .keys()
                    .find(|f| matches!(f, Fact::LastIncident(_)))
                    .cloned();
                replace(old, Some(Fact::LastIncident(*h)));
            }
        }
        out
    }

    /// The clock moving by an hour within its week, back or forth, or the last incident
    /// moving, is done hour by hour and gives the whole computation's rows.
    #[test]
    fn a_clock_hour_shifts_the_frame_without_the_whole_computation() {
        for version in [1, 2] {
            let mut c = computer(version);
            let mut state = ZoneState::default();
            let mut stale = Stale::default();
            let mut clock = H0 + 490;
            state.apply(&mut c.cal, Fact::Clock(clock), 1, &mut stale);
            for ch in [
                Change::Point(0, H0 + 470, 3),
                Change::Point(0, H0 + 330, 2),
                Change::Point(1, H0 + 489, 4),
                Change::Point(1, H0 + 489 - 168, 2),
                Change::Point(2, H0 + 488, 5),
                Change::Point(2, H0 + 488 - 168, 5),
                Change::Point(3, H0 + 491, 1),
                Change::Agenda(0, H0 + 485, 10, 3, true),
                Change::Agenda(1, H0 + 500, 30, 2, true),
                Change::Agenda(2, H0 + 440, 3, 4, true),
            ] {
                for (f, d) in updates(&state.facts, &ch) {
                    state.apply(&mut c.cal, f, d, &mut stale);
                }
            }
            state.view = c.full(0, state.facts.iter().map(|(f, m)| (f, *m)));
            for change in [
                Change::Clock(H0 + 491),
                Change::Clock(H0 + 492),
                Change::Clock(H0 + 489),
                Change::LastIncident(H0 + 470),
                Change::LastIncident(H0 + 488),
                Change::Clock(H0 + 497),
            ] {
                if let Change::Clock(h) = change {
                    clock = h;
                }
                let mut stale = Stale::default();
                for (f, d) in updates(&state.facts, &change) {
                    state.apply(&mut c.cal, f, d, &mut stale);
                }
                assert!(!stale.all && stale.frame);
                let mut emitted = 0;
                let view = state.view.as_mut().unwrap();
                assert!(
                    c.update(0, &state.facts, view, &mut stale, |_, _| emitted += 1),
                    "v{version}: {change:?} at clock {clock} took the whole computation"
                );
                let whole = c.full(0, state.facts.iter().map(|(f, m)| (f, *m))).unwrap();
                let view = state.view.as_ref().unwrap();
                assert_eq!(view.frame, whole.frame, "v{version}: {change:?}");
                assert_eq!(view.rows, whole.rows, "v{version}: {change:?}");
                assert_eq!(view.series, whole.series, "v{version}: {change:?}");
                assert_eq!(view.active, whole.active, "v{version}: {change:?}");
                // A clock hour moves rows in and out of the horizon.
                assert!(emitted > 0 || matches!(change, Change::LastIncident(_)));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// After any epochs of changes, a zone's rows kept up to date hour by hour are exactly
        /// (bit for bit) those of the whole computation, and the rows emitted on the way turn
        /// the old rows into the new.
        #[test]
        fn updating_stale_hours_equals_the_whole_computation(
            version in 1u8..=2,
            start in proptest::collection::vec(change(), 0..120),
            epochs in proptest::collection::vec(proptest::collection::vec(change(), 1..6), 1..25),
        ) {
            let mut c = computer(version);
            let mut state = ZoneState::default();
            let mut stale = Stale::default();
            state.apply(&mut c.cal, Fact::Clock(H0 + 500), 1, &mut stale);
            for ch in &start {
                for (f, d) in updates(&state.facts, ch) {
                    state.apply(&mut c.cal, f, d, &mut stale);
                }
            }
            state.view = c.full(0, state.facts.iter().map(|(f, m)| (f, *m)));
            let mut partial = 0;
            for epoch in &epochs {
                let mut stale = Stale::default();
                for ch in epoch {
                    for (f, d) in updates(&state.facts, ch) {
                        state.apply(&mut c.cal, f, d, &mut stale);
                    }
                }
                let whole = c.full(0, state.facts.iter().map(|(f, m)| (f, *m))).unwrap();
                let mut rows: BTreeMap<IndicatorRow, isize> = state
                    .view
                    .as_ref()
                    .unwrap()
                    .rows
                    .iter()
                    .map(|r| (r.clone(), 1))
                    .collect();
                let mut emitted = Vec::new();
                let updated = !stale.all
                    && c.update(0, &state.facts, state.view.as_mut().unwrap(), &mut stale, |r, d| {
                        emitted.push((r.clone(), d))
                    });
                if updated {
                    partial += 1;
                    let view = state.view.as_ref().unwrap();
                    prop_assert_eq!(&view.rows, &whole.rows);
                    prop_assert_eq!(&view.series, &whole.series);
                    prop_assert_eq!(&view.active, &whole.active);
                    for (r, d) in emitted {
                        *rows.entry(r).or_default() += d;
                    }
                    rows.retain(|_, d| *d != 0);
                    let want: BTreeMap<IndicatorRow, isize> =
                        whole.rows.iter().map(|r| (r.clone(), 1)).collect();
                    prop_assert_eq!(rows, want);
                }
                state.view = Some(whole);
            }
            // An epoch of one small change (a point, or an agenda entry of at most 12 hours:
            // well under a third of the test's 94-hour frame) takes the hour-by-hour path; a
            // larger one may take the whole computation, by design.
            let small = |e: &Vec<Change>| {
                e.len() == 1
                    && match &e[0] {
                        Change::Point(..) => true,
                        Change::Agenda(_, _, len, _, _) => *len <= 12,
                        Change::Clock(_) | Change::LastIncident(_) => false,
                    }
            };
            let small_epochs = epochs.iter().filter(|e| small(e)).count();
            prop_assert!(small_epochs == 0 || partial > 0, "{small_epochs} small epochs, none partial");
        }
    }
}
