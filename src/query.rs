//! `vigie query`: reads of the embedded store, as NDJSON on stdout.
//!
//! - `latest`: every zone's figures at the current hour (the store's clock, or `--at`);
//! - `range`: one zone and field over a period, one value per step;
//! - `revisions`: every version of one zone's field at one hour;
//! - `explain`: one zone and hour, its stored figures, and — given the configuration and the
//!   inputs of the replay — the records behind each contribution and the contributions
//!   recomputed from them.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vigie_config::Config;
use vigie_connectors::{InputSpec, Item, RecordReader};
use vigie_model::time::{format_ts, hour_of, parse_ts_str, Calendar};
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
    #[command(subcommand)]
    what: What,
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
    let mut out = std::io::stdout().lock();
    match args.what {
        What::Latest { at } => {
            let at = match at {
                Some(s) => time_ms(&s, "--at")?,
                None => clock.context("the store holds no indicator yet")?,
            };
            for h in read::latest_per_zone(&store, at, as_of)? {
                writeln!(out, "{}", hour_json(&h))?;
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
            for (t, v) in read::range(&store, &zone, &field, start, end, step, agg, as_of)? {
                writeln!(
                    out,
                    "{}",
                    json!({"zone": zone, "field": field, "time": format_ts(t * 1000), "value": v})
                )?;
            }
        }
        What::Revisions { zone, field, hour } => {
            let h = time_ms(&hour, "--hour")?;
            for (rev, v) in read::revisions(&store, &zone, &field, h)? {
                writeln!(
                    out,
                    "{}",
                    json!({"zone": zone, "field": field, "hour": format_ts(h * 1000), "known_at": format_ts(rev * 1000), "value": v})
                )?;
            }
        }
        What::Explain {
            zone,
            hour,
            config,
            inputs,
        } => {
            let h = time_ms(&hour, "--hour")?.div_euclid(HOUR_MS) * HOUR_MS;
            let stored = read::zone_hour(&store, &zone, h, as_of)?.with_context(|| {
                format!("no figures for zone {zone} at {}", format_ts(h * 1000))
            })?;
            let mut answer =
                json!({"zone": zone, "hour": format_ts(h * 1000), "stored": stored.values});
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
            let Some(zone_idx) = config.zones.iter().position(|z| z.id == zone) else {
                bail!("zone {zone} is not in the configuration");
            };
            let labels: Vec<String> = specs.iter().map(InputSpec::label).collect();
            let records: Vec<Record> = RecordReader::shared(&config, specs, 0, 1)
                .filter_map(|i| match i {
                    Item::Record(r) => Some(r),
                    _ => None,
                })
                .collect();
            let clock = replay_clock(&records)
                .context("the inputs hold no incident or density: no clock")?;
            let calendar = Calendar::new(config.timezone);
            let counted = counted(&records);
            let hour = h.div_euclid(HOUR_MS);
            let ev = records_behind(
                &counted,
                zone_idx as u32,
                hour,
                hour_of(clock),
                &config.model,
                &calendar,
            );
            let re = ev.recompute(hour, &config.model);
            let cite = |rs: &[&Record]| -> Vec<Value> {
                rs.iter()
                    .map(|r| {
                        let input = labels.get((r.seq >> 40) as usize).cloned().unwrap_or_default();
                        json!({"feed": r.feed.name(), "ts": format_ts(r.ts), "id": r.id, "input": input, "line": r.seq & ((1 << 40) - 1)})
                    })
                    .collect()
            };
            answer["recomputed"] = json!({
                "incidents": re.incidents, "recent": re.recent, "baseline": re.baseline,
                "events": re.events, "demonstration": re.demonstration,
                "deployed_agents": re.deployed_agents, "weather": re.weather,
            });
            answer["records"] = json!({
                "recent": cite(&ev.recent),
                "baseline": cite(&ev.baseline),
                "densities": cite(&ev.densities),
                "events": cite(&ev.events),
                "deployments": cite(&ev.deployments),
                "weather": cite(&ev.weather.into_iter().collect::<Vec<_>>()),
            });
            let agree = [
                ("incidents", re.incidents as f64),
                ("recent", re.recent),
                ("baseline", re.baseline),
                ("events", re.events),
                ("demonstration", re.demonstration as f64),
                ("deployed_agents", re.deployed_agents as f64),
                ("weather", re.weather),
            ]
            .iter()
            .all(|(f, v)| {
                stored
                    .values
                    .get(f)
                    .is_some_and(|s| (s - v).abs() <= 1e-9 * s.abs().max(1.0))
            });
            answer["agree"] = json!(agree);
            writeln!(out, "{answer}")?;
            if !agree {
                eprintln!("vigie: the stored figures differ from the records given: another replay, or other inputs?");
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
