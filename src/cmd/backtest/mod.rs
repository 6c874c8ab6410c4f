//! `vigie backtest`: how the forecasts would have done. The history is replayed in the order it
//! became known; at each cutoff the engine's forecast of the next hours, as it stood then, is
//! set beside what happened in those hours.
//!
//! The engine runs in live mode (`GraphParams::live`), in one timely worker with two dataflows,
//! model v1 and model v2, fed the same records. Before each cutoff `T` (an hour boundary) it
//! receives the records known before `T`, then its clock is set to the hour before `T`, the
//! last complete one, and the epoch is closed: its rows for the hours `T .. T + ahead` are the
//! forecast as known at the cutoff. Replaying in one pass with an explicit clock gives the
//! forecast of each cutoff from one incremental run, the same figures a replay of the records
//! known at `T` would give with that clock. (The store's revisions would give them too, but
//! stamped with a replay's clock, which is the latest record's hour rather than the cutoff's,
//! and only after writing every revision of every figure to disk.)
//!
//! A record is known from its `ts` (an event's or deployment's `ts` is when it was published),
//! but a weather forecast from its `issued_at` when it has one: the forecast of next Tuesday's
//! weather issued on Sunday is known at Monday's cutoff.

mod metrics;
mod report;

use super::progress::Progress;
use anyhow::{bail, Context};
use metrics::Hits;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigie_config::{Config, ModelParams};
use vigie_connectors::{InputSpec, Item, RecordReader};
use vigie_engine::{timely, Driver, GraphParams};
use vigie_model::time::{format_hour, hour_of, hour_start, parse_ts_str, Calendar, HOUR_US};
use vigie_model::{Body, Feed, Record, WeatherKind, ZoneIdx};
use vigie_queries::formula::{self, HourInputs, ZoneParams};

#[derive(clap::Args, Debug)]
pub struct BacktestArgs {
    /// Configuration file (TOML). Default: the embedded default configuration (Marseille).
    #[arg(long)]
    config: Option<PathBuf>,
    /// An input, as for `replay`: `PATH` (NDJSON records) or `MAPPING=PATH` (CSV through a
    /// mapping of the configuration). Repeat for several.
    #[arg(long = "input", num_args = 1.., required = true)]
    inputs: Vec<String>,
    /// Time between cutoffs: a whole number with h, d or w (hours, days, weeks).
    #[arg(long, default_value = "1w")]
    every: String,
    /// Hours forecast after each cutoff that are scored (at most the model's `future_hours`).
    #[arg(long, default_value_t = 168)]
    ahead: i64,
    /// First cutoff (RFC 3339, rounded down to the hour). Default: the first Monday 00:00 in
    /// the configuration's time zone at least `--warmup` after the first incident.
    #[arg(long)]
    from: Option<String>,
    /// No cutoff after this time (RFC 3339). Cutoffs also stop where the data does: a cutoff
    /// needs `--ahead` hours of incidents after it.
    #[arg(long)]
    to: Option<String>,
    /// History before the first cutoff when `--from` is not given (h, d or w).
    #[arg(long, default_value = "4w")]
    warmup: String,
    /// Folder for the reports (created if missing): backtest.md, backtest.json, skill.svg.
    #[arg(long)]
    out: PathBuf,
}

/// The forecasts scored, in the order of the reports.
pub const FORECASTS: [&str; 4] = ["v2", "v1", "last week", "baseline"];

/// One forecast over one window, zone by zone and hour by hour: a score per zone-hour (what
/// the ranking uses) and a level (what the alarms use).
#[derive(Clone, Debug, Default)]
pub struct Forecast {
    pub scores: Vec<f64>,
    pub levels: Vec<u8>,
}

/// What was forecast at one cutoff.
#[derive(Clone, Debug)]
pub struct Window {
    /// The first forecast hour: the cutoff is its start.
    pub cutoff: i64,
    /// Records known before the cutoff.
    pub known: usize,
    /// In the order of [`FORECASTS`].
    pub forecasts: Vec<Forecast>,
}

/// The scores of one forecast over one window.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scores {
    pub pai5: Option<f64>,
    pub pai10: Option<f64>,
    pub spearman: Option<f64>,
    pub hits: Hits,
}

impl Scores {
    fn of(f: &Forecast, realised: &[f64]) -> Scores {
        Scores {
            pai5: metrics::pai(&f.scores, realised, 0.05),
            pai10: metrics::pai(&f.scores, realised, 0.10),
            spearman: metrics::spearman(&f.scores, realised),
            hits: Hits::count(&f.levels, realised),
        }
    }
}

/// One cutoff, scored.
#[derive(Clone, Debug)]
pub struct Scored {
    pub cutoff: i64,
    pub known: usize,
    /// Realised incident severity in the window.
    pub severity: f64,
    /// Zone-hours of the window with at least one incident.
    pub incident_hours: u64,
    /// In the order of [`FORECASTS`].
    pub scores: Vec<Scores>,
}

/// What the reading found.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub labels: Vec<String>,
    pub read: u64,
    pub rejected: BTreeMap<&'static str, u64>,
    pub by_feed: BTreeMap<&'static str, u64>,
}

/// How long each part took.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    pub read: Duration,
    pub engine: Duration,
    pub score: Duration,
}

pub fn run(args: BacktestArgs) -> anyhow::Result<ExitCode> {
    let (config, specs) = super::replay::config_and_inputs(args.config.as_deref(), &args.inputs)?;
    let every = hours_of(&args.every).context("--every")?;
    let warmup = hours_of(&args.warmup).context("--warmup")?;
    let future = config.model.future_hours;
    if !(1..=future).contains(&args.ahead) {
        bail!("--ahead must be from 1 to the model's future_hours ({future})");
    }
    let time = |name: &str, v: &Option<String>| -> anyhow::Result<Option<i64>> {
        v.as_deref()
            .map(|s| {
                parse_ts_str(s)
                    .map(hour_of)
                    .context(format!("{name} {s}: not a time"))
            })
            .transpose()
    };
    let (from, to) = (time("--from", &args.from)?, time("--to", &args.to)?);

    let mut timings = Timings::default();
    let started = Instant::now();
    let (mut records, inputs) = read(&config, specs)?;
    // In the order they became known; `seq` keeps the arrival order among equals.
    records.sort_by_key(|r| (known_at(r), r.seq));
    let truth = Severity::of(&records);
    timings.read = started.elapsed();

    let (first, last) = truth
        .span
        .context("no incident in the inputs: nothing to score a forecast against")?;
    let calendar = Calendar::new(config.timezone);
    let cutoffs = cutoffs(
        &calendar,
        Span {
            first,
            end: last + 1,
        },
        from,
        to,
        every,
        warmup,
        args.ahead,
    );
    if cutoffs.is_empty() {
        bail!(
            "no cutoff: the incidents run from {} to {}, and a cutoff needs {} hours of them \
             after it (and, without --from, --warmup {} before it)",
            format_hour(first),
            format_hour(last),
            args.ahead,
            args.warmup
        );
    }
    eprintln!(
        "vigie backtest: {} records, {} zones, {} cutoffs from {} every {}, {} hours ahead",
        records.len(),
        config.zones.len(),
        cutoffs.len(),
        format_hour(cutoffs[0]),
        args.every,
        args.ahead
    );

    let engine_started = Instant::now();
    let config = Arc::new(config);
    let windows = forecast(config.clone(), Arc::new(records), &cutoffs, args.ahead)?;
    timings.engine = engine_started.elapsed();

    let score_started = Instant::now();
    let scored: Vec<Scored> = windows
        .iter()
        .map(|w| {
            let realised = truth.window(w.cutoff, args.ahead, config.zones.len());
            Scored {
                cutoff: w.cutoff,
                known: w.known,
                severity: realised.iter().sum(),
                incident_hours: realised.iter().filter(|&&s| s > 0.0).count() as u64,
                scores: w
                    .forecasts
                    .iter()
                    .map(|f| Scores::of(f, &realised))
                    .collect(),
            }
        })
        .collect();
    timings.score = score_started.elapsed();

    let run = report::Run {
        command: command_line(),
        config: config.origin.clone(),
        zones: config.zones.len(),
        model: config.model.clone(),
        inputs,
        every: args.every.clone(),
        ahead: args.ahead,
        scored,
        timings,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let files = run.write(&args.out)?;
    print!("{}", run.summary());
    for f in files {
        println!("  wrote {}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `1w`, `3d`, `12h` in hours.
fn hours_of(s: &str) -> anyhow::Result<i64> {
    let ms = vigie_queries::read::parse_step(s).map_err(anyhow::Error::msg)?;
    let hour_ms = HOUR_US / 1000;
    if ms % hour_ms != 0 {
        bail!("`{s}`: not a whole number of hours");
    }
    Ok(ms / hour_ms)
}

/// Reads every input whole; a rejected line is counted, an unreadable input is an error (the
/// history would have a hole).
fn read(config: &Config, specs: Vec<InputSpec>) -> anyhow::Result<(Vec<Record>, Inputs)> {
    let progress = Progress::new(None);
    progress.set_message("reading");
    let mut inputs = Inputs {
        labels: specs.iter().map(InputSpec::label).collect(),
        ..Inputs::default()
    };
    let mut records = Vec::new();
    for item in RecordReader::new(config, specs) {
        inputs.read += 1;
        if inputs.read.is_multiple_of(4096) {
            progress.inc(4096);
        }
        match item {
            Item::Record(r) => {
                *inputs.by_feed.entry(r.feed.name()).or_default() += 1;
                records.push(r);
            }
            Item::Rejected(mut rej) => {
                *inputs.rejected.entry(rej.error.kind.name()).or_default() += 1;
                // A valid record with an id in no zone still wins or loses its id's upsert.
                if let Some(tombstone) = rej.error.tombstone.take() {
                    records.push(*tombstone);
                }
            }
            Item::Failed(e) => bail!("{e}"),
        }
    }
    Ok((records, inputs))
}

/// When a record became known: its `ts`, or a weather forecast's `issued_at`.
pub fn known_at(r: &Record) -> i64 {
    match &r.body {
        Some(Body::Weather {
            kind: WeatherKind::Forecast,
            issued_at: Some(t),
            ..
        }) => *t,
        _ => r.ts,
    }
}

/// The hours incidents cover: from the first incident's hour to `end`, the hour after the
/// last one's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span {
    pub first: i64,
    pub end: i64,
}

/// The cutoffs, as the first hour each forecasts: from `from`, or else the first week start
/// (local Monday 00:00) at least `warmup` hours after the first incident; then every `every`
/// hours — from week start to week start when `every` is whole weeks and `from` is not given,
/// so that daylight saving does not shift them — while `ahead` hours of incidents follow the
/// cutoff and it is not after `to`.
pub fn cutoffs(
    calendar: &Calendar,
    span: Span,
    from: Option<i64>,
    to: Option<i64>,
    every: i64,
    warmup: i64,
    ahead: i64,
) -> Vec<i64> {
    let next = |t: i64| -> i64 {
        if from.is_none() && every % 168 == 0 {
            calendar.week_start_hour(calendar.week(t) + every / 168)
        } else {
            t + every
        }
    };
    let mut t = from.unwrap_or_else(|| {
        let earliest = span.first + warmup;
        let start = calendar.week_start_hour(calendar.week(earliest));
        if start >= earliest {
            start
        } else {
            calendar.week_start_hour(calendar.week(earliest) + 1)
        }
    });
    let mut out = Vec::new();
    while t + ahead <= span.end && to.is_none_or(|to| t <= to) {
        out.push(t);
        t = next(t);
    }
    out
}

/// The winning version of an incident id so far: its `ts` and `seq`, and the zone, hour and
/// severity it counts for (none: cancelled).
type Version = (i64, u64, Option<(ZoneIdx, i64, i64)>);

/// The incidents' severity per zone and hour as known from the records seen: records without
/// id add up; of each incident id, the version with the greatest `ts` (then `seq`) counts,
/// none when it is a cancellation — the model's rule, in any order of arrival.
#[derive(Clone, Debug, Default)]
pub struct Severity {
    by_hour: HashMap<(ZoneIdx, i64), i64>,
    winners: HashMap<String, Version>,
    /// The first and last hour of any incident record seen.
    pub span: Option<(i64, i64)>,
}

impl Severity {
    /// Of all `records`.
    pub fn of(records: &[Record]) -> Severity {
        let mut s = Severity::default();
        records.iter().for_each(|r| s.add(r));
        s
    }

    /// Takes one more record into account.
    pub fn add(&mut self, r: &Record) {
        if r.feed != Feed::Incident {
            return;
        }
        let h = hour_of(r.ts);
        self.span = Some(self.span.map_or((h, h), |(a, b)| (a.min(h), b.max(h))));
        let counted = match &r.body {
            Some(Body::Incident { zone, severity }) => Some((*zone, h, *severity as i64)),
            _ => None,
        };
        let Some(id) = &r.id else {
            if let Some((zone, h, s)) = counted {
                self.shift(zone, h, s);
            }
            return;
        };
        if let Some(&(ts, seq, before)) = self.winners.get(id) {
            if (ts, seq) > (r.ts, r.seq) {
                return;
            }
            if let Some((zone, h, s)) = before {
                self.shift(zone, h, -s);
            }
        }
        if let Some((zone, h, s)) = counted {
            self.shift(zone, h, s);
        }
        self.winners.insert(id.clone(), (r.ts, r.seq, counted));
    }

    fn shift(&mut self, zone: ZoneIdx, hour: i64, by: i64) {
        let e = self.by_hour.entry((zone, hour)).or_default();
        *e += by;
        if *e == 0 {
            self.by_hour.remove(&(zone, hour));
        }
    }

    /// The severity of a zone and hour.
    pub fn get(&self, zone: ZoneIdx, hour: i64) -> i64 {
        self.by_hour.get(&(zone, hour)).copied().unwrap_or(0)
    }

    /// The severities of the window `[cutoff, cutoff + ahead)`, zone by zone.
    pub fn window(&self, cutoff: i64, ahead: i64, zones: usize) -> Vec<f64> {
        (0..zones as ZoneIdx)
            .flat_map(|z| (cutoff..cutoff + ahead).map(move |h| (z, h)))
            .map(|(z, h)| self.get(z, h) as f64)
            .collect()
    }
}

/// A naive forecast's score and level: its value taken as the model's `raw` (as the baseline
/// alone, with nothing else), through the zone's scale and the level thresholds.
fn naive(model: &ModelParams, zone: &ZoneParams, raw: f64) -> (f64, u8) {
    let score = formula::risk_score(model, zone, &HourInputs::baseline_only(raw));
    (score, formula::risk_level(model, score))
}

/// A model's (risk score, level, baseline) of each zone-hour of `[cutoff, cutoff + ahead)`,
/// zone by zone, from its collected rows.
fn model_rows(
    d: &Driver,
    cutoff: i64,
    ahead: i64,
    zones: usize,
) -> anyhow::Result<Vec<(f64, u8, f64)>> {
    let mut out = vec![None; zones * ahead as usize];
    for r in d.collected.borrow().indicator_refs() {
        if (cutoff..cutoff + ahead).contains(&r.hour) {
            out[r.zone as usize * ahead as usize + (r.hour - cutoff) as usize] =
                Some((r.risk_score.get(), r.risk_level, r.baseline.get()));
        }
    }
    out.into_iter()
        .collect::<Option<Vec<_>>>()
        .with_context(|| {
            format!(
                "the engine has no row for some hours after {}",
                format_hour(cutoff)
            )
        })
}

/// Runs both models over the records and takes each cutoff's forecasts.
fn forecast(
    config: Arc<Config>,
    records: Arc<Vec<Record>>,
    cutoffs: &[i64],
    ahead: i64,
) -> anyhow::Result<Vec<Window>> {
    let last = *cutoffs.last().expect("a cutoff");
    let fed_total = records.partition_point(|r| known_at(r) < hour_start(last)) as u64;
    let progress = Arc::new(Progress::new(Some(fed_total)));
    let cutoffs = cutoffs.to_vec();
    let shown = progress.clone();
    let windows = timely::execute_directly(move |worker| -> anyhow::Result<Vec<Window>> {
        let base = GraphParams::from_config(&config).live();
        let params = |version: u8| {
            let mut p = base.clone();
            p.model.version = version;
            p
        };
        let (p1, p2) = (params(1), params(2));
        let mut v1 = Driver::new(worker, &p1);
        let mut v2 = Driver::new(worker, &p2);
        let zones: Vec<ZoneParams> = config.zones.iter().map(ZoneParams::from).collect();
        let mut known = Severity::default();
        let mut windows = Vec::with_capacity(cutoffs.len());
        let mut next = 0;
        for (k, &cutoff) in cutoffs.iter().enumerate() {
            shown.set_message(format!(
                "cutoff {}/{} {}",
                k + 1,
                cutoffs.len(),
                &format_hour(cutoff)[..10]
            ));
            let start = next;
            while next < records.len() && known_at(&records[next]) < hour_start(cutoff) {
                let r = &records[next];
                known.add(r);
                v1.insert(r.clone());
                v2.insert(r.clone());
                next += 1;
                if (next - start).is_multiple_of(4096) {
                    shown.inc(4096);
                }
            }
            shown.inc(((next - start) % 4096) as u64);
            // The clock: the last complete hour before the cutoff.
            v1.set_clock_hour(cutoff - 1);
            v2.set_clock_hour(cutoff - 1);
            let (e1, e2) = (v1.advance(), v2.advance());
            v1.wait(worker, e1);
            v2.wait(worker, e2);
            let m1 = model_rows(&v1, cutoff, ahead, zones.len())?;
            let m2 = model_rows(&v2, cutoff, ahead, zones.len())?;
            let mut f: Vec<Forecast> = vec![Forecast::default(); FORECASTS.len()];
            for (i, (&(s1, l1, baseline), &(s2, l2, _))) in m1.iter().zip(&m2).enumerate() {
                let zone = i / ahead as usize;
                let h = cutoff + (i % ahead as usize) as i64;
                // The same hour a week before, in the last week known at the cutoff.
                let weeks_back = (h - cutoff) / 168 + 1;
                let last_week = known.get(zone as ZoneIdx, h - 168 * weeks_back) as f64;
                let (s3, l3) = naive(&p1.model, &zones[zone], last_week);
                let (s4, l4) = naive(&p1.model, &zones[zone], baseline);
                for (j, (s, l)) in [(s2, l2), (s1, l1), (s3, l3), (s4, l4)]
                    .into_iter()
                    .enumerate()
                {
                    f[j].scores.push(s);
                    f[j].levels.push(l);
                }
            }
            windows.push(Window {
                cutoff,
                known: next,
                forecasts: f,
            });
        }
        v1.close();
        v2.close();
        worker.step_while(|| !(v1.finished() && v2.finished()));
        Ok(windows)
    });
    progress.finish();
    windows
}

/// The command line as typed, for the report (the program named `vigie`).
fn command_line() -> String {
    std::iter::once("vigie".to_string())
        .chain(std::env::args().skip(1).map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=./:,+@%".contains(c))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;

    fn incident(ts_h: i64, seq: u64, id: Option<&str>, zone_severity: Option<(u32, u8)>) -> Record {
        Record {
            feed: Feed::Incident,
            ts: ts_h * HOUR_US + 60_000_000,
            seq,
            id: id.map(str::to_string),
            body: zone_severity.map(|(zone, severity)| Body::Incident { zone, severity }),
        }
    }

    /// The severities from the model's own rule (`reference::counted`), for comparison.
    fn counted_severity(records: &[Record]) -> BTreeMap<(ZoneIdx, i64), i64> {
        let mut out = BTreeMap::new();
        for r in vigie_queries::reference::counted(records) {
            if let Some(Body::Incident { zone, severity }) = &r.body {
                *out.entry((*zone, hour_of(r.ts))).or_default() += *severity as i64;
            }
        }
        out.retain(|_, v| *v != 0);
        out
    }

    #[test]
    fn severity_follows_the_upsert_rule_in_any_order() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        let ids = ["a", "b", "c", "d", "e"];
        for round in 0..200 {
            let mut records: Vec<Record> = (0..rng.gen_range(1..40))
                .map(|seq| {
                    let id = rng.gen_bool(0.6).then(|| ids[rng.gen_range(0..ids.len())]);
                    // Cancellations only make sense with an id; equal hours make ties of ts.
                    let body = (id.is_none() || rng.gen_bool(0.8))
                        .then(|| (rng.gen_range(0..3), rng.gen_range(1..=5)));
                    incident(rng.gen_range(0..6), seq, id, body)
                })
                .collect();
            records.shuffle(&mut rng);
            let s = Severity::of(&records);
            let got: BTreeMap<(ZoneIdx, i64), i64> = s.by_hour.clone().into_iter().collect();
            assert_eq!(
                got,
                counted_severity(&records),
                "round {round}: {records:?}"
            );
            for ((z, h), v) in &got {
                assert_eq!(s.get(*z, *h), *v);
            }
        }
    }

    #[test]
    fn severity_window_is_zone_by_zone_and_hour_by_hour() {
        let records = [
            incident(10, 1, None, Some((0, 2))),
            incident(10, 2, None, Some((0, 3))),
            incident(12, 3, None, Some((1, 4))),
            incident(13, 4, Some("x"), Some((1, 5))),
            // A later version of x moves it out of the window; its cancellation would remove it.
            incident(15, 5, Some("x"), Some((1, 1))),
        ];
        let s = Severity::of(&records);
        assert_eq!(s.window(10, 4, 2), [5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 4.0, 0.0]);
        assert_eq!(s.span, Some((10, 15)));
    }

    #[test]
    fn cutoffs_are_local_week_starts_through_daylight_saving() {
        let cal = Calendar::new("America/Vancouver".parse().unwrap());
        // Incidents from 2020-01-01T08:00Z (local midnight) to the end of April.
        let first = hour_of(parse_ts_str("2020-01-01T08:00:00Z").unwrap());
        let end = hour_of(parse_ts_str("2020-05-01T07:00:00Z").unwrap());
        let c = cutoffs(&cal, Span { first, end }, None, None, 168, 4 * 168, 168);
        let at = |s: &str| hour_of(parse_ts_str(s).unwrap());
        // Four weeks after January 1st is Wednesday the 29th; the next Monday is February 3.
        assert_eq!(c[0], at("2020-02-03T08:00:00Z"));
        // Summer time from March 8: Mondays at 00:00 local are 07:00 UTC.
        assert!(c.contains(&at("2020-03-02T08:00:00Z")));
        assert!(c.contains(&at("2020-03-09T07:00:00Z")));
        assert!(c.iter().all(|&t| cal.how(t) == 0));
        // The last one leaves a week of incidents after it: April 20 (27 + 168 h > end).
        assert_eq!(*c.last().unwrap(), at("2020-04-20T07:00:00Z"));
        assert_eq!(c.len(), 12);
        // Two-week steps.
        let c2 = cutoffs(&cal, Span { first, end }, None, None, 336, 4 * 168, 168);
        assert_eq!(c2, c.iter().copied().step_by(2).collect::<Vec<_>>());
    }

    #[test]
    fn cutoffs_from_a_given_time_step_in_hours_up_to_the_last_allowed() {
        let cal = Calendar::new("Europe/Paris".parse().unwrap());
        let span = Span {
            first: 1000,
            end: 2000,
        };
        let c = cutoffs(&cal, span, Some(1500), None, 100, 0, 168);
        assert_eq!(c, [1500, 1600, 1700, 1800]);
        let c = cutoffs(&cal, span, Some(1500), Some(1700), 24, 0, 24);
        assert_eq!(c.len(), 9);
        assert_eq!(c.last(), Some(&1692));
        assert!(cutoffs(&cal, span, Some(1900), None, 24, 0, 168).is_empty());
    }

    #[test]
    fn durations_are_whole_hours() {
        assert_eq!(hours_of("1w").unwrap(), 168);
        assert_eq!(hours_of("3d").unwrap(), 72);
        assert_eq!(hours_of("6h").unwrap(), 6);
        assert!(hours_of("90m").is_err());
        assert!(hours_of("1").is_err());
    }

    #[test]
    fn weather_forecasts_are_known_when_issued() {
        let forecast = |issued_at| Record {
            feed: Feed::Weather,
            ts: 100 * HOUR_US,
            seq: 0,
            id: None,
            body: Some(Body::Weather {
                kind: WeatherKind::Forecast,
                issued_at,
                temperature_c: None,
                precip_mm: None,
                wind_kmh: None,
            }),
        };
        assert_eq!(known_at(&forecast(Some(40 * HOUR_US))), 40 * HOUR_US);
        assert_eq!(known_at(&forecast(None)), 100 * HOUR_US);
        assert_eq!(
            known_at(&incident(7, 0, None, Some((0, 1)))),
            7 * HOUR_US + 60_000_000
        );
    }

    #[test]
    fn naive_forecasts_go_through_the_zone_scale_and_levels() {
        let model = ModelParams::default();
        let zone = ZoneParams {
            capacity: 1000.0,
            scale: 10.0,
            min_agents: 0,
            max_agents: 4,
            road_capacity: None,
        };
        let (score, level) = naive(&model, &zone, 10.0);
        assert!((score - 100.0 * (1.0 - (-1.0f64).exp())).abs() < 1e-12);
        assert_eq!(level, 3, "63.2 is between 50 and 75");
        assert_eq!(naive(&model, &zone, 0.0), (0.0, 1));
    }
}
