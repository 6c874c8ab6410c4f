//! `vigie query`: reads of the embedded store — a readable table on a terminal, NDJSON
//! otherwise (`--format table|ndjson` to choose). An unknown zone or field, or an hour out of
//! the horizon around the store's clock (the default model's, 168 hours back and 720 ahead),
//! is an error (exit code 2).
//!
//! - `latest`: every zone's figures at the current hour (the store's clock, or `--at`);
//! - `range`: one zone and field over a period, one value per step;
//! - `revisions`: every version of one zone's field at one hour;
//! - `explain`: one zone and hour, its stored figures, and — given the configuration and the
//!   inputs of the replay — the records behind each contribution and the contributions
//!   recomputed from them (under model v2 also the exposure's events, the spill by neighbour,
//!   the surge's densities and typical crowd, the calls, the traffic and fluidity, and the
//!   weather's presence; [`vigie_queries::explain`]). On a store of `vigie run` (`--data`,
//!   and `--demo` for the demo's), the records are those of its ingest log and the clock the
//!   store's.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vigie_config::Config;
use vigie_connectors::ingest::IngestLog;
use vigie_connectors::{InputSpec, Item, RecordReader};
use vigie_model::point::ALL_FIELDS;
use vigie_model::time::{format_ts, hour_of, parse_ts_str};
use vigie_model::Record;
use vigie_queries::explain::records_behind;
use vigie_queries::read::{self, HOUR_MS};
use vigie_queries::reference::{counted, replay_clock};
use vigie_store::{Agg, Options, Store};

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The store's folder (as given to `vigie replay --store`).
    #[arg(long, global = true)]
    store: Option<PathBuf>,
    /// Read as known at this time (RFC 3339 or Unix seconds): the latest revision up to it.
    #[arg(long, global = true)]
    as_of: Option<String>,
    /// `table` (the default on a terminal) or `ndjson` (the default otherwise).
    #[arg(long, global = true, value_name = "FORMAT")]
    format: Option<Format>,
    #[command(subcommand)]
    what: What,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
enum Format {
    Table,
    Ndjson,
}

#[derive(Subcommand, Debug)]
enum What {
    /// Every zone's figures at the current hour.
    Latest {
        /// The hour to read instead of the store's clock (RFC 3339 or Unix seconds).
        #[arg(long)]
        at: Option<String>,
    },
    /// One zone's field over a period, reduced per step.
    Range {
        #[arg(long)]
        zone: String,
        /// An indicator field: risk_score, risk_level, protection_rate, crowd, load, …
        #[arg(long, default_value = "risk_score")]
        field: String,
        /// Start (default: the store's clock).
        #[arg(long)]
        from: Option<String>,
        /// End, excluded (default: 30 days after the start).
        #[arg(long)]
        to: Option<String>,
        /// Step: a number with s, m, h, d or w (default 1h).
        #[arg(long, default_value = "1h")]
        step: String,
        /// mean, min, max, last, sum or count.
        #[arg(long, default_value = "mean")]
        agg: String,
    },
    /// Every revision of one zone's field at one hour.
    Revisions {
        #[arg(long)]
        zone: String,
        #[arg(long, default_value = "risk_score")]
        field: String,
        #[arg(long)]
        hour: String,
    },
    /// One zone and hour: its figures, and the records behind them.
    Explain {
        #[arg(long)]
        zone: String,
        #[arg(long)]
        hour: String,
        /// The replay's configuration (default: the embedded default, or the embedded sample's
        /// when no input is given).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The replay's inputs, as given to `vigie replay` (default: the embedded sample).
        #[arg(long = "input", num_args = 1..)]
        inputs: Vec<String>,
        /// The replay's `--clock`, if it was given one (RFC 3339 or Unix seconds).
        #[arg(long)]
        clock: Option<String>,
        /// A store written by `vigie run`: its data folder (`--data`). The records are those
        /// of its ingest log (`DATA/ingest`, read back as vigie would at start; vigie must
        /// not be running on it), and the clock is the store's (live, the wall clock's hour).
        #[arg(long, value_name = "DATA", conflicts_with_all = ["inputs", "clock"])]
        data: Option<PathBuf>,
        /// The store was written by `vigie run --demo [SCENARIO]`: its configuration (the
        /// scenario's, with the roads and alert rule the demo adds), unless `--config`.
        #[arg(long, value_enum, value_name = "SCENARIO", num_args = 0..=1, default_missing_value = "marseille", requires = "data")]
        demo: Option<crate::run::demo::Scenario>,
    },
}

fn time_ms(s: &str, what: &str) -> anyhow::Result<i64> {
    parse_ts_str(s)
        .map(|us| us.div_euclid(1000))
        .with_context(|| format!("{what}: `{s}` is not RFC 3339 or Unix seconds"))
}

fn step_ms(s: &str) -> anyhow::Result<i64> {
    read::parse_step(s).map_err(|e| anyhow::anyhow!("--step {e}"))
}

fn hour_json(h: &read::ZoneHour) -> Value {
    json!({
        "zone": h.zone,
        "hour": format_ts(h.hour_ms * 1000),
        "values": h.values,
    })
}

/// Lines of JSON objects, written as NDJSON or as a table of their keys (in the order of the
/// first line; nested values as JSON).
struct Out {
    format: Format,
    rows: Vec<Value>,
}

impl Out {
    fn push(&mut self, v: Value) {
        self.rows.push(v);
    }

    fn write(self, w: &mut impl Write) -> std::io::Result<()> {
        if self.format == Format::Ndjson {
            for r in &self.rows {
                writeln!(w, "{r}")?;
            }
            return Ok(());
        }
        let Some(first) = self.rows.first().and_then(Value::as_object) else {
            return writeln!(w, "(nothing)");
        };
        let keys: Vec<String> = first.keys().cloned().collect();
        let cell = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Null => "–".into(),
            Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() => format!("{f:.3}"),
                _ => n.to_string(),
            },
            other => other.to_string(),
        };
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| keys.iter().map(|k| cell(&r[k.as_str()])).collect())
            .collect();
        let widths: Vec<usize> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                cells
                    .iter()
                    .map(|c| c[i].chars().count())
                    .chain([k.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |w: &mut dyn Write, row: &[String]| -> std::io::Result<()> {
            let padded: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(c, n)| format!("{c:<n$}"))
                .collect();
            writeln!(w, "{}", padded.join("  ").trim_end())
        };
        line(w, &keys)?;
        line(
            w,
            &widths.iter().map(|n| "-".repeat(*n)).collect::<Vec<_>>(),
        )?;
        for c in &cells {
            line(w, c)?;
        }
        Ok(())
    }
}

/// An hour (ms) must lie in the horizon around the store's clock.
fn in_horizon(hour_ms: i64, clock: Option<i64>, what: &str) -> anyhow::Result<()> {
    let Some(clock) = clock else { return Ok(()) };
    let m = vigie_config::ModelParams::default();
    let (from, to) = (
        clock - m.past_hours * HOUR_MS,
        clock + m.future_hours * HOUR_MS,
    );
    if hour_ms < from || hour_ms > to {
        bail!(
            "{what} {} is out of the horizon ({} to {}, around the store's clock)",
            format_ts(hour_ms * 1000),
            format_ts(from * 1000),
            format_ts(to * 1000)
        );
    }
    Ok(())
}

/// A zone the store knows, and a field of model v1 or v2.
fn known(store: &Store, zone: &str, field: Option<&str>) -> anyhow::Result<()> {
    let zones = read::zones(store);
    if !zones.iter().any(|z| z == zone) {
        bail!(
            "no zone `{zone}` in the store (zones: {})",
            zones.join(", ")
        );
    }
    if let Some(f) = field {
        if !ALL_FIELDS.contains(&f) {
            bail!(
                "`{f}` is not an indicator field; one of {}",
                ALL_FIELDS.join(", ")
            );
        }
    }
    Ok(())
}

fn open(dir: &Path) -> anyhow::Result<Store> {
    if !dir.join("blocks").is_dir() {
        bail!("{} is not a vigie store (no blocks folder)", dir.display());
    }
    let (store, _) = Store::open(dir, Options::default())
        .with_context(|| format!("opening the store in {}", dir.display()))?;
    Ok(store)
}

pub fn run(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let dir = args.store.as_ref().context("--store is required")?;
    let store = open(dir)?;
    let as_of = args
        .as_of
        .as_deref()
        .map(|s| time_ms(s, "--as-of"))
        .transpose()?;
    let clock = read::clock_ms(&store);
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Ndjson
    });
    let mut out = Out {
        format,
        rows: Vec::new(),
    };
    match args.what {
        What::Latest { at } => {
            let at = match at {
                Some(s) => time_ms(&s, "--at")?,
                None => clock.context("the store holds no indicator yet")?,
            };
            in_horizon(at.div_euclid(HOUR_MS) * HOUR_MS, clock, "--at")?;
            for h in read::latest_per_zone(&store, at, as_of)? {
                out.push(match format {
                    Format::Ndjson => hour_json(&h),
                    Format::Table => {
                        let mut row = serde_json::Map::new();
                        row.insert("zone".into(), json!(h.zone));
                        row.insert("hour".into(), json!(format_ts(h.hour_ms * 1000)));
                        for (k, v) in &h.values {
                            row.insert(k.to_string(), json!(v.is_finite().then_some(*v)));
                        }
                        Value::Object(row)
                    }
                });
            }
        }
        What::Range {
            zone,
            field,
            from,
            to,
            step,
            agg,
        } => {
            let agg = Agg::parse(&agg)
                .with_context(|| format!("--agg `{agg}`: mean, min, max, last, sum or count"))?;
            let start = match from {
                Some(s) => time_ms(&s, "--from")?,
                None => clock.context("the store holds no indicator yet")?,
            };
            let end = match to {
                Some(s) => time_ms(&s, "--to")?,
                None => start + 30 * 24 * HOUR_MS,
            };
            let step = step_ms(&step)?;
            known(&store, &zone, Some(&field))?;
            for (t, v) in read::range(&store, &zone, &field, start, end, step, agg, as_of)? {
                out.push(json!({"zone": zone, "field": field, "time": format_ts(t * 1000), "value": v.is_finite().then_some(v)}));
            }
        }
        What::Revisions { zone, field, hour } => {
            let h = time_ms(&hour, "--hour")?;
            known(&store, &zone, Some(&field))?;
            in_horizon(h.div_euclid(HOUR_MS) * HOUR_MS, clock, "--hour")?;
            for (rev, v) in read::revisions(&store, &zone, &field, h)? {
                out.push(json!({"zone": zone, "field": field, "hour": format_ts(h * 1000), "known_at": format_ts(rev * 1000), "value": v.is_finite().then_some(v)}));
            }
        }
        What::Explain {
            zone,
            hour,
            config,
            inputs,
            clock: replay_clock_given,
            data,
            demo,
        } => {
            let h = time_ms(&hour, "--hour")?.div_euclid(HOUR_MS) * HOUR_MS;
            known(&store, &zone, None)?;
            in_horizon(h, clock, "--hour")?;
            let stored = read::zone_hour(&store, &zone, h, as_of)?.with_context(|| {
                format!("no figures for zone {zone} at {}", format_ts(h * 1000))
            })?;
            if let Some(data) = &data {
                let config = match (&config, demo) {
                    (Some(p), _) => {
                        Config::from_file(p).with_context(|| format!("loading {}", p.display()))?
                    }
                    (None, Some(scenario)) => {
                        let mut c = scenario.config();
                        scenario.prepare(&mut c)?;
                        c
                    }
                    (None, None) => Config::embedded_default(),
                };
                let log = data.join("ingest");
                if !log.is_dir() {
                    bail!(
                        "{} is not a vigie run data folder (no ingest folder)",
                        data.display()
                    );
                }
                // The log read back as `vigie run` reads it at start.
                let mut records = Vec::new();
                IngestLog::read_back(&log, &mut |batch| records.extend(batch))
                    .with_context(|| format!("reading the ingest log in {}", log.display()))?;
                let clock = clock.context("the store has no clock: no epoch was written")? * 1000;
                let label = format!("{} (ingest log, line = sequence number)", log.display());
                return explain(&stored, &config, records, &[label], clock, format, out);
            }
            let (config, specs) = match (config, inputs.is_empty()) {
                (None, true) => (
                    Config::embedded_sample(),
                    vec![InputSpec::embedded_sample()],
                ),
                (c, _) => {
                    let config = match c {
                        Some(p) => Config::from_file(&p)
                            .with_context(|| format!("loading {}", p.display()))?,
                        None => Config::embedded_default(),
                    };
                    let specs = inputs
                        .iter()
                        .map(|a| InputSpec::parse(a, &config))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(anyhow::Error::msg)?;
                    (config, specs)
                }
            };
            let labels: Vec<String> = specs.iter().map(InputSpec::label).collect();
            let records: Vec<Record> = RecordReader::shared(&config, specs, 0, 1)
                .filter_map(|i| match i {
                    Item::Record(r) => Some(r),
                    // A valid record with an id in no zone cancels its id, as in the replay.
                    Item::Rejected(mut rej) => rej.error.tombstone.take().map(|t| *t),
                    Item::Failed(_) => None,
                })
                .collect();
            let clock = match replay_clock_given {
                Some(c) => parse_ts_str(&c)
                    .with_context(|| format!("--clock: `{c}` is not RFC 3339 or Unix seconds"))?,
                None => replay_clock(&records).context(
                    "no clock: the inputs hold no counted incident or density; give the replay's --clock",
                )?,
            };
            return explain(&stored, &config, records, &labels, clock, format, out);
        }
    }
    out.write(&mut std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

/// The explanation of the stored figures `stored` (a zone and hour) from `records` (cited by
/// `labels`, the input a record's sequence number names) under `config`, with the clock
/// `clock` (µs). Exits with 1 when the recomputed figures differ from the stored ones.
fn explain(
    stored: &read::ZoneHour,
    config: &Config,
    records: Vec<Record>,
    labels: &[String],
    clock: i64,
    format: Format,
    mut out: Out,
) -> anyhow::Result<ExitCode> {
    let zone = &stored.zone;
    let Some(zone_idx) = config.zones.iter().position(|z| z.id == *zone) else {
        bail!("zone {zone} is not in the configuration");
    };
    let h = stored.hour_ms;
    let mut answer = json!({"zone": zone, "hour": format_ts(h * 1000), "stored": stored.values});
    let counted = counted(&records);
    let hour = h.div_euclid(HOUR_MS);
    let ev = records_behind(&counted, zone_idx as u32, hour, hour_of(clock), config);
    let re = ev.recompute(config);
    let cite = |r: &Record| -> Value {
        let input = labels
            .get((r.seq >> 40) as usize)
            .cloned()
            .unwrap_or_default();
        json!({"feed": r.feed.name(), "ts": format_ts(r.ts), "id": r.id, "input": input, "line": r.seq & ((1 << 40) - 1)})
    };
    if let Value::Object(m) = ev.to_json(&re, config, &cite) {
        answer.as_object_mut().expect("an object").extend(m);
    }
    let differ = re.differences(&stored.values);
    answer["agree"] = json!(differ.is_empty());
    answer["differ"] = differ
        .iter()
        .map(|(f, mine, stored)| json!({"field": f, "recomputed": mine, "stored": stored}))
        .collect();
    match format {
        Format::Ndjson => out.push(answer.clone()),
        Format::Table => {
            // One line a figure: stored, and recomputed from the records where it is.
            let again: std::collections::BTreeMap<&str, Option<f64>> =
                re.figures().into_iter().collect();
            for (field, value) in &stored.values {
                out.push(json!({"field": field, "stored": value.is_finite().then_some(*value), "recomputed": again.get(field).copied().flatten()}));
            }
        }
    }
    let mut w = std::io::stdout().lock();
    out.write(&mut w)?;
    if format == Format::Table {
        // The records behind the figures, wherever the explanation cites them.
        let mut cited = Vec::new();
        cited_records(&answer, "", &mut cited);
        for (what, r) in cited {
            writeln!(
                w,
                "{what}: {} line {} ({}, {})",
                r["input"].as_str().unwrap_or(""),
                r["line"],
                r["feed"].as_str().unwrap_or(""),
                r["ts"].as_str().unwrap_or("")
            )?;
        }
    }
    if !differ.is_empty() {
        eprintln!("vigie: the stored figures differ from the records given: another replay, or other inputs?");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The records an explanation cites (objects with an input and a line), with the path of keys
/// that leads to each, in the order they appear.
fn cited_records<'a>(v: &'a Value, path: &str, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(m) if m.contains_key("input") && m.contains_key("line") => {
            out.push((path.to_string(), v))
        }
        Value::Object(m) => {
            for (k, x) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                cited_records(x, &p, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|x| cited_records(x, path, out)),
        _ => {}
    }
}
