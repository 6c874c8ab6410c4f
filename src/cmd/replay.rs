//! `vigie replay`: files through the dataflow, on one or more workers and processes.

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use vigie_config::Config;
use vigie_connectors::{InputSpec, Item, ReadAhead, RecordReader, Rejection};
use vigie_engine::{timely, Driver, GraphParams};

use super::progress::Progress;
use crate::sink::{change_points, Sinks, SinksReport};
use vigie_model::{FeedHealth, LocalHealth};

/// Rejections kept with their reason, per process.
const FIRST_REJECTIONS: usize = 10;
/// How long the end of a replay waits for InfluxDB to confirm what it was sent.
const INFLUX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// Epochs a worker may have in flight before it waits for the oldest.
const IN_FLIGHT: usize = 2;

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Configuration file (TOML). Default: the embedded sample configuration when no input is
    /// given, else the embedded default configuration (Marseille).
    #[arg(long)]
    config: Option<PathBuf>,
    /// An input: `PATH` (NDJSON records) or `MAPPING=PATH` (CSV through a mapping of the
    /// configuration; a `.zip` is read through its first file). Repeat for several; they arrive in order.
    /// Default: the embedded sample (VPD incidents, December 2020).
    #[arg(long = "input", num_args = 1..)]
    inputs: Vec<String>,
    /// Where to write the final indicators and clashes (NDJSON, as in docs/model.md).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Also write the report as JSON.
    #[arg(long)]
    report_json: Option<PathBuf>,
    #[command(flatten)]
    cluster: super::cluster::ClusterArgs,
    /// Records per epoch and worker (default: the configuration's `engine.batch`).
    #[arg(long)]
    batch: Option<usize>,
    /// Write every indicator change, clash and the feeds' health into the embedded store in
    /// this folder, one acknowledged revision per complete epoch (created if missing).
    /// Default: the configuration's `store.dir`, if set. (InfluxDB, when the configuration
    /// has `[outputs.influxdb]`, receives the same points.)
    #[arg(long)]
    store: Option<PathBuf>,
    /// Versions the store keeps in memory before writing them out as blocks (default: the
    /// configuration's `store.flush_versions`).
    #[arg(long)]
    store_flush_versions: Option<usize>,
    /// The clock (RFC 3339): the figures are those known at TIME, whatever the records say.
    /// Without it the clock is the greatest `ts` of the counted incident and density records,
    /// and a replay with none is refused: give the clock for feeds that do not move it
    /// (traffic, weather, events, calls, deployments).
    #[arg(long, value_name = "TIME", value_parser = clock_arg)]
    clock: Option<i64>,
    /// Whether each worker reads and parses its share of the inputs on a thread of its own,
    /// overlapping with the dataflow: `auto` does when the machine has a core for each such
    /// thread beside the workers (one worker on two cores: yes; two: no).
    #[arg(long, value_enum, default_value_t = ReadAheadMode::Auto)]
    read_ahead: ReadAheadMode,
}

/// `--read-ahead`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadAheadMode {
    Auto,
    On,
    Off,
}

impl ReadAheadMode {
    /// Whether `workers` workers of a process each get a reading thread.
    fn enabled(self, workers: usize) -> bool {
        match self {
            ReadAheadMode::On => true,
            ReadAheadMode::Off => false,
            ReadAheadMode::Auto => {
                std::thread::available_parallelism().is_ok_and(|cores| cores.get() >= 2 * workers)
            }
        }
    }
}

/// A worker's share of the inputs, read where it runs or on a thread of its own.
enum Items<'c> {
    Here(RecordReader<'c>),
    Ahead(ReadAhead),
}

impl Items<'_> {
    fn defaulted_ends(&self) -> u64 {
        match self {
            Items::Here(r) => r.defaulted_ends(),
            Items::Ahead(r) => r.defaulted_ends(),
        }
    }
}

impl Iterator for Items<'_> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        match self {
            Items::Here(r) => r.next(),
            Items::Ahead(r) => r.next(),
        }
    }
}

/// `--clock`: an RFC 3339 time with its offset, as microseconds.
fn clock_arg(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .and_then(|t| vigie_model::time::in_range(t.timestamp_micros()))
        .ok_or_else(|| format!("`{s}` is not an RFC 3339 time such as 2018-09-30T23:00:00Z"))
}

/// Why a replay without a clock is refused.
const NO_CLOCK: &str = "no clock: the inputs hold no counted incident or density record, the only ones that move it (docs/model.md, precise readings); give it with --clock TIME (RFC 3339)";

/// What one worker measured.
struct WorkerReport {
    accepted: u64,
    /// Accepted events that took their mapping's default duration.
    defaulted_ends: u64,
    rejected: BTreeMap<&'static str, u64>,
    first_rejections: Vec<Rejection>,
    failures: Vec<String>,
    retired: u64,
    unused: u64,
    latency: Histogram<u64>,
    rows: Option<(usize, usize, Option<i64>)>,
    updates: u64,
    sinks: Option<SinksReport>,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let (config, inputs) = match (&args.config, args.inputs.is_empty()) {
        (None, true) => (
            Config::embedded_sample(),
            vec![InputSpec::embedded_sample()],
        ),
        (Some(path), true) => bail!("no --input given to replay with {}", path.display()),
        (path, false) => config_and_inputs(path.as_deref(), &args.inputs)?,
    };
    let workers = args.cluster.workers(config.engine.workers);
    let batch = args.batch.unwrap_or(config.engine.batch).max(1);
    let timely_config = args.cluster.timely_config(workers)?;
    let mut params = GraphParams::from_config(&config);
    // An explicit clock is held as the live one is: the records do not move it.
    let fixed_clock = args.clock.map(vigie_model::time::hour_of);
    if fixed_clock.is_some() {
        params = params.live();
    }
    let config = Arc::new(config);
    let zone_ids: Arc<Vec<String>> = Arc::new(config.zones.iter().map(|z| z.id.clone()).collect());
    let output = args.output.clone();
    let store_dir = args.store.clone().or(config.store.dir.clone());
    let mut store_config = config.store.clone();
    if let Some(n) = args.store_flush_versions {
        store_config.flush_versions = n;
    }
    let health = Arc::new(FeedHealth::default());
    let shared = (config.clone(), inputs.clone());
    let read_ahead = args.read_ahead.enabled(workers);
    // The lines to read, counted only for a progress line on a terminal; a process of a
    // cluster reads its share.
    let progress = Progress::new(None);
    if progress.enabled() {
        let lines: std::io::Result<u64> = inputs.iter().map(InputSpec::line_count).sum();
        if let Ok(lines) = lines {
            progress.set_total(lines / args.cluster.processes.max(1) as u64);
        }
    }
    progress.set_message("replaying");
    let progress = Arc::new(progress);
    let shown = progress.clone();

    eprintln!(
        "vigie replay: {} input(s), {} zones, {} worker(s) × {} process(es), batches of {}{}",
        inputs.len(),
        config.zones.len(),
        workers,
        args.cluster.processes,
        batch,
        if read_ahead {
            ", each worker's inputs read on a thread of their own"
        } else {
            ""
        }
    );
    let started = Instant::now();
    let guards = timely::execute(timely_config, move |worker| {
        let (config, inputs) = (&shared.0, shared.1.clone());
        let mut driver = Driver::new(worker, &params);
        if let (Some(h), 0) = (fixed_clock, worker.index()) {
            driver.set_clock_hour(h);
        }
        let mut sinks = None;
        let mut failures = Vec::new();
        if worker.index() == 0 {
            match Sinks::open(
                store_dir.as_deref(),
                &store_config,
                config.outputs.influxdb.as_ref(),
                config.timezone,
            ) {
                Ok(s) if s.any() => {
                    driver.collected.borrow_mut().track_changes();
                    sinks = Some(s);
                }
                Ok(_) => driver.collected.borrow_mut().final_only(),
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
        let mut publish = |driver: &Driver, epoch: Option<u64>, failures: &mut Vec<String>| {
            if let Some(s) = &mut sinks {
                let changes = driver.collected.borrow_mut().drain();
                let points = change_points(&changes, &zone_ids);
                let known_at = driver.clock().map_or(0, |h| h * 3_600_000);
                if let Err(e) = s.publish(points, &health, known_at, epoch) {
                    failures.push(format!("writing to the sinks: {e:#}"));
                    sinks = None;
                }
            }
        };
        let mut report = WorkerReport {
            accepted: 0,
            defaulted_ends: 0,
            rejected: BTreeMap::new(),
            first_rejections: Vec::new(),
            failures: Vec::new(),
            retired: 0,
            unused: 0,
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds"),
            rows: None,
            updates: 0,
            sinks: None,
        };
        report.failures = failures;
        let mut in_flight: VecDeque<(u64, Vec<(Instant, u64)>)> = VecDeque::new();
        let mut chunks: Vec<(Instant, u64)> = Vec::new();
        let mut in_epoch = 0usize;
        let mut chunk_count = 0u64;
        let mut chunk_start = Instant::now();
        let mut local_health = LocalHealth::default();
        let (index, peers) = (worker.index(), worker.peers());
        let ahead = read_ahead
            .then(|| ReadAhead::spawn(shared.0.clone(), inputs.clone(), index, peers).ok())
            .flatten();
        // Without a reading thread (not asked for, or none to be had), read here.
        let mut reader = match ahead {
            Some(r) => Items::Ahead(r),
            None => Items::Here(RecordReader::shared(config, inputs, index, peers)),
        };
        let mut unshown = 0;
        for item in reader.by_ref() {
            unshown += 1;
            if unshown == 4096 {
                shown.inc(unshown);
                unshown = 0;
            }
            match item {
                Item::Record(r) => {
                    if chunk_count == 0 {
                        chunk_start = Instant::now();
                    }
                    local_health.accept(&r);
                    driver.insert(r);
                    report.accepted += 1;
                    in_epoch += 1;
                    chunk_count += 1;
                    if chunk_count == 1024 {
                        chunks.push((chunk_start, chunk_count));
                        chunk_count = 0;
                        // The dataflow goes on with the epochs in flight (in slices: the zone
                        // operator computes a few zones per step), so that a reading thread
                        // never waits long for the worker to take its records.
                        worker.step();
                    }
                }
                Item::Rejected(mut rej) => {
                    // A valid record with an id in no zone still wins or loses its id's upsert:
                    // its cancellation takes its place.
                    if let Some(tombstone) = rej.error.tombstone.take() {
                        driver.insert(*tombstone);
                        in_epoch += 1;
                    }
                    local_health.reject();
                    *report.rejected.entry(rej.error.kind.name()).or_default() += 1;
                    if report.first_rejections.len() < FIRST_REJECTIONS {
                        report.first_rejections.push(rej);
                    }
                }
                Item::Failed(e) => report.failures.push(e.to_string()),
            }
            if in_epoch >= batch {
                health.add(&mut local_health);
                if chunk_count > 0 {
                    chunks.push((chunk_start, chunk_count));
                    chunk_count = 0;
                }
                let epoch = driver.advance();
                in_flight.push_back((epoch, std::mem::take(&mut chunks)));
                in_epoch = 0;
                worker.step();
                if let Some(epoch) = settle(
                    worker,
                    &driver,
                    &mut in_flight,
                    &mut report.latency,
                    IN_FLIGHT,
                ) {
                    publish(&driver, Some(epoch), &mut report.failures);
                }
            }
        }
        report.defaulted_ends = reader.defaulted_ends();
        shown.inc(unshown);
        health.add(&mut local_health);
        if chunk_count > 0 {
            chunks.push((chunk_start, chunk_count));
        }
        let epoch = driver.advance();
        in_flight.push_back((epoch, chunks));
        driver.close();
        settle(worker, &driver, &mut in_flight, &mut report.latency, 0);
        worker.step_while(|| !driver.finished());
        publish(&driver, None, &mut report.failures);
        if let Some(s) = sinks {
            match s.finish(INFLUX_WAIT) {
                Ok(r) => report.sinks = Some(r),
                Err(e) => report.failures.push(format!("closing the sinks: {e:#}")),
            }
        }
        report.retired = driver.retired;
        report.unused = driver.unused;
        if worker.index() == 0 {
            let c = driver.collected.borrow();
            let (rows, clashes) = (c.indicator_refs(), c.clash_rows());
            report.rows = Some((rows.len(), clashes.len(), driver.clock()));
            report.updates = c.updates;
            if driver.clock().is_none() {
                report.failures.push(NO_CLOCK.to_string());
            } else if let Some(path) = &output {
                if let Err(e) =
                    vigie_connectors::output::write_ndjson(path, rows, &clashes, &zone_ids)
                {
                    report
                        .failures
                        .push(format!("writing {}: {e}", path.display()));
                }
            }
        }
        report
    })
    .map_err(anyhow::Error::msg)?;
    let reports: Vec<WorkerReport> = guards
        .join()
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    let elapsed = started.elapsed();
    progress.finish();
    Ok(print_report(&args, &inputs, reports, elapsed))
}

/// The configuration of `path` (none: the embedded default one) and the `--input` values read
/// against it.
pub fn config_and_inputs(
    path: Option<&std::path::Path>,
    inputs: &[String],
) -> anyhow::Result<(Config, Vec<InputSpec>)> {
    let config = match path {
        Some(p) => Config::from_file(p).with_context(|| format!("loading {}", p.display()))?,
        None => Config::embedded_default(),
    };
    let inputs = inputs
        .iter()
        .map(|a| InputSpec::parse(a, &config))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    Ok((config, inputs))
}

/// Waits until at most `keep` epochs are in flight, recording the latency of completed ones;
/// returns the latest epoch completed, if any.
fn settle(
    worker: &mut timely::worker::Worker,
    driver: &Driver,
    in_flight: &mut VecDeque<(u64, Vec<(Instant, u64)>)>,
    hist: &mut Histogram<u64>,
    keep: usize,
) -> Option<u64> {
    let mut completed = None;
    loop {
        while let Some((epoch, _)) = in_flight.front() {
            if !driver.done(*epoch) {
                break;
            }
            let (epoch, chunks) = in_flight.pop_front().expect("front");
            completed = Some(epoch);
            let now = Instant::now();
            for (at, n) in chunks {
                let us = now.duration_since(at).as_micros().max(1) as u64;
                hist.saturating_record_n(us, n);
            }
        }
        if in_flight.len() <= keep {
            return completed;
        }
        worker.step();
    }
}

fn print_report(
    args: &ReplayArgs,
    inputs: &[InputSpec],
    reports: Vec<WorkerReport>,
    elapsed: std::time::Duration,
) -> ExitCode {
    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds");
    let mut accepted = 0;
    let mut defaulted_ends = 0;
    let mut retired = 0;
    let mut unused = 0;
    let mut rejected: BTreeMap<&str, u64> = BTreeMap::new();
    let mut first: Vec<Rejection> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut rows = None;
    let mut updates = 0;
    let mut sinks = None;
    for r in reports {
        sinks = sinks.or(r.sinks);
        accepted += r.accepted;
        defaulted_ends += r.defaulted_ends;
        retired += r.retired;
        unused += r.unused;
        for (k, v) in r.rejected {
            *rejected.entry(k).or_default() += v;
        }
        first.extend(r.first_rejections);
        failures.extend(r.failures);
        latency.add(&r.latency).expect("same bounds");
        rows = rows.or(r.rows);
        updates += r.updates;
    }
    // In arrival order: by input, then line.
    let order = |label: &str| {
        inputs
            .iter()
            .position(|i| i.label() == label)
            .unwrap_or(usize::MAX)
    };
    first.sort_by_key(|r| (order(&r.input), r.line));
    first.truncate(FIRST_REJECTIONS);
    failures.sort();
    failures.dedup();
    let n_rejected: u64 = rejected.values().sum();
    let read = accepted + n_rejected;
    let secs = elapsed.as_secs_f64();
    let rate = read as f64 / secs.max(1e-9);
    let peak = vigie_connectors::sys::peak_rss_bytes();
    let q = |p: f64| latency.value_at_quantile(p) as f64 / 1000.0;

    let process = if args.cluster.processes > 1 {
        format!(
            " (process {} of {})",
            args.cluster.process, args.cluster.processes
        )
    } else {
        String::new()
    };
    println!("vigie replay report{process}");
    println!(
        "  inputs:       {}",
        inputs
            .iter()
            .map(InputSpec::label)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  records read: {read}");
    println!("  accepted:     {accepted}");
    if defaulted_ends > 0 {
        println!(
            "  defaulted:    {defaulted_ends} events without an end after their start took their kind's default duration (accepted; default_duration_h)"
        );
    }
    println!("  rejected:     {n_rejected}");
    for (k, v) in &rejected {
        println!("    {k}: {v}");
    }
    if !first.is_empty() {
        println!("  first rejections:");
        for r in &first {
            println!("    {r}");
        }
    }
    if unused > 0 {
        println!("  unused:       {unused} calls and traffic (accepted; not inputs of model v1)");
    }
    println!("  retired:      {retired} (left the horizon and the baseline window)");
    println!("  elapsed:      {secs:.3} s");
    println!("  throughput:   {rate:.0} records/s");
    if latency.is_empty() {
        println!("  latency:      no record");
    } else {
        println!(
            "  latency (entry to indicator update, ms): p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            latency.max() as f64 / 1000.0
        );
    }
    if let Some(p) = peak {
        println!("  peak memory:  {:.1} MiB", p as f64 / 1048576.0);
    }
    if let Some((ind, cl, clock_hour)) = rows {
        let clock = match (clock_hour, args.clock) {
            (Some(h), Some(_)) => format!("{} (--clock)", vigie_model::time::format_hour(h)),
            (Some(h), None) => vigie_model::time::format_hour(h),
            (None, _) => "none (no incident or density record)".into(),
        };
        println!("  clock hour:   {clock}");
        println!(
            "  output:       {ind} indicator rows, {cl} clashes{}",
            match (&args.output, clock_hour) {
                (Some(p), Some(_)) => format!(" -> {}", p.display()),
                (Some(p), None) => format!(" ({} not written)", p.display()),
                (None, _) => String::new(),
            }
        );
        println!("  updates:      {updates} indicator row changes emitted on the way");
    }
    let store = sinks.as_ref().and_then(|s| s.store.as_ref());
    if let Some((samples, writes, busy, st)) = store {
        println!(
            "  store:        {samples} samples in {writes} acknowledged writes ({:.0} samples/s while writing), {} series",
            *samples as f64 / busy.as_secs_f64().max(1e-9),
            st.series
        );
        println!(
            "                {} blocks, {} versions in {} bytes ({:.3} bytes per version)",
            st.blocks,
            st.block_versions,
            st.block_bytes,
            st.block_bytes as f64 / (st.block_versions.max(1)) as f64
        );
    }
    let influx = sinks.as_ref().and_then(|s| s.influx.as_ref());
    if let Some((flush, st)) = influx {
        println!(
            "  influxdb:     {} points confirmed in {} requests ({} retries); {} left in the buffer for the next run; {}{}",
            st.points_confirmed,
            st.requests,
            st.retries,
            flush.unconfirmed_points,
            match st.samples_ignored {
                Some(n) => format!("{n} samples ignored by the server"),
                None => "samples ignored by the server: cannot tell".into(),
            },
            st.last_error
                .as_ref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        );
    }
    for f in &failures {
        println!("  error: {f}");
    }
    if failures.iter().any(|f| f == NO_CLOCK) {
        eprintln!("vigie replay: refused: {NO_CLOCK}");
    }
    if let Some(path) = &args.report_json {
        let json = serde_json::json!({
            "records_read": read,
            "accepted": accepted,
            "events_default_duration": defaulted_ends,
            "rejected": n_rejected,
            "rejected_by_kind": rejected,
            "first_rejections": first.iter().map(|r| serde_json::json!({"input": r.input, "line": r.line, "field": r.error.field, "reason": r.error.reason})).collect::<Vec<_>>(),
            "retired": retired,
            "unused": unused,
            "elapsed_s": secs,
            "records_per_s": rate,
            "latency_ms": if latency.is_empty() { serde_json::Value::Null } else { serde_json::json!({"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": latency.max() as f64 / 1000.0}) },
            "peak_rss_bytes": peak,
            "indicator_rows": rows.map(|r| r.0),
            "indicator_updates": updates,
            "clashes": rows.map(|r| r.1),
            "store": store.map(|(samples, writes, busy, st)| serde_json::json!({"samples": samples, "writes": writes, "busy_s": busy.as_secs_f64(), "series": st.series, "blocks": st.blocks, "versions": st.block_versions, "bytes": st.block_bytes})),
            "influxdb": influx.map(|(flush, st)| serde_json::json!({"confirmed": st.points_confirmed, "requests": st.requests, "retries": st.retries, "unconfirmed": flush.unconfirmed_points, "rejected": st.points_rejected, "samples_ignored": st.samples_ignored})),
            "errors": failures,
        });
        if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&json).expect("json")) {
            eprintln!("vigie: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
