//! `replay-bench`: vigie's replay against the plain single-threaded loop, in the same run.
//!
//! ```text
//! cargo build --release && cargo run --release -p vigie-benchmarks --bin replay-bench -- \
//!     --records 1000000 --out benchmarks/results
//! ```
//!
//! For a generated workload of `--records` records (seeded) and for the real files of the
//! repository's `data/`, it runs the plain loop (`replay-bench plain`, in a process of its own so its
//! memory is its own) and `vigie replay` on 1 and 2 workers, checks that vigie's output equals
//! the loop's figures, and reports throughput, latency and peak memory as ratios to the loop.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use vigie_benchmarks::{generate, machine, plain_loop, write_config};
use vigie_config::Config;
use vigie_connectors::InputSpec;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Records in the generated workload.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The vigie binary (default: target/release/vigie beside this one).
    #[arg(long)]
    vigie: Option<PathBuf>,
    /// Runs of each measurement; the fastest is kept.
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// Skip the real files.
    #[arg(long)]
    no_real: bool,
    /// Folder for report.md and report.json.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Mode {
    /// Bounded state: replays 1, 2 and 4 years of generated records at the same rate and
    /// reports vigie's peak memory for each, which must stay flat once the baseline window
    /// (one year) is full.
    Bounded {
        /// Records per generated year.
        #[arg(long, default_value_t = 300_000)]
        per_year: usize,
        /// The vigie binary (default: beside this one).
        #[arg(long)]
        vigie: Option<PathBuf>,
        /// Records per epoch and worker.
        #[arg(long, default_value_t = 20_000)]
        batch: usize,
    },
    /// Writes the generated workload and its configuration into a folder, to replay by hand.
    Generate {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Days the records span.
        #[arg(long, default_value_t = 30)]
        days: i64,
    },
    /// The plain loop on one input; prints a JSON line and writes the output.
    Plain {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        input: String,
        #[arg(long)]
        output: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.mode {
        Some(Mode::Plain {
            config,
            input,
            output,
        }) => return plain(&config, &input, &output),
        Some(Mode::Generate {
            dir,
            records,
            seed,
            days,
        }) => {
            std::fs::create_dir_all(&dir)?;
            write_config(&dir)?;
            let mut w =
                std::io::BufWriter::new(std::fs::File::create(dir.join("generated.ndjson"))?);
            return Ok(vigie_benchmarks::generate_over(
                seed,
                records,
                days * 86_400,
                &mut w,
            )?);
        }
        Some(Mode::Bounded {
            per_year,
            vigie,
            batch,
        }) => return bounded(per_year, vigie, batch),
        None => {}
    }
    let vigie = match &cli.vigie {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("vigie"),
    };
    if !vigie.exists() {
        bail!(
            "{} not found: run `cargo build --release` first, or pass --vigie",
            vigie.display()
        );
    }
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path())?;
    let generated = dir.path().join("generated.ndjson");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&generated)?);
        generate(cli.seed, cli.records, &mut w)?;
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let data = repo.join("data");
    let mut workloads: Vec<(String, PathBuf, String)> = vec![(
        format!("generated, {} records (seed {})", cli.records, cli.seed),
        config.clone(),
        generated.display().to_string(),
    )];
    if !cli.no_real && data.exists() {
        for (name, cfg, spec) in [
            (
                "Vancouver crime 2020 (incidents)",
                "vancouver.toml",
                "vancouver_crime=vancouver_vpd_crime_2020.zip",
            ),
            (
                "Melbourne pedestrians 2013-12..2014-02 (densities)",
                "melbourne.toml",
                "melbourne_counts=melbourne_pedestrian_counts_hourly_2013-12_2014-02.zip",
            ),
            (
                "Chicago events 2019-2021 (events)",
                "chicago.toml",
                "chicago_events=chicago_events_predicthq_2019-01_2021-03.zip",
            ),
            (
                "I-94 weather 2012-2018 (weather)",
                "i94.toml",
                "i94_weather=metro_interstate_traffic_volume_i94.zip",
            ),
        ] {
            let (m, f) = spec.split_once('=').expect("spec");
            workloads.push((
                name.to_string(),
                repo.join("config").join(cfg),
                format!("{m}={}", data.join(f).display()),
            ));
        }
    }
    let this = std::env::current_exe()?;
    let mut results = Vec::new();
    for (name, cfg, input) in &workloads {
        eprintln!("== {name}");
        let plain_out = dir.path().join("plain.ndjson");
        let plain = best_of(cli.runs, || {
            let t = Instant::now();
            let out = Command::new(&this)
                .args(["plain", "--config"])
                .arg(cfg)
                .args(["--input", input, "--output"])
                .arg(&plain_out)
                .output()?;
            let wall = t.elapsed().as_secs_f64();
            if !out.status.success() {
                bail!(
                    "plain loop failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let mut v: Value = serde_json::from_slice(&out.stdout)?;
            v["wall_s"] = json!(wall);
            Ok(v)
        })?;
        let mut row = json!({"workload": name, "plain": plain});
        for workers in [1, 2] {
            let vout = dir.path().join(format!("vigie-{workers}.ndjson"));
            let report = dir.path().join("report.json");
            let args: Vec<OsString> = vec![
                "--config".into(),
                cfg.into(),
                "--input".into(),
                input.into(),
                "--workers".into(),
                workers.to_string().into(),
                "--output".into(),
                vout.clone().into(),
            ];
            let v = best_of(cli.runs, || replay(&vigie, &report, &args))?;
            let diffs = compare(&plain_out, &vout)?;
            if diffs > 0 {
                bail!("{name}: vigie on {workers} worker(s) differs from the plain loop on {diffs} lines");
            }
            row[format!("vigie_{workers}w")] = v;
        }
        if results.is_empty() {
            // The latency side of the trade-off: the generated workload in epochs of 10,000.
            let report = dir.path().join("report.json");
            let args: Vec<OsString> = vec![
                "--config".into(),
                cfg.into(),
                "--input".into(),
                input.into(),
                "--batch".into(),
                "10000".into(),
            ];
            row["vigie_1w_small_epochs"] = replay(&vigie, &report, &args)?;
        }
        results.push(row);
    }
    let report = render(&results, cli.records);
    println!("{report}");
    if let Some(out) = &cli.out {
        std::fs::create_dir_all(out)?;
        std::fs::write(out.join("report.md"), &report)?;
        std::fs::write(
            out.join("report.json"),
            serde_json::to_string_pretty(&json!({"machine": machine(), "results": results}))?,
        )?;
    }
    Ok(())
}

fn bounded(per_year: usize, vigie: Option<PathBuf>, batch: usize) -> anyhow::Result<()> {
    const YEARS: usize = 4;
    let vigie = vigie.unwrap_or(std::env::current_exe()?.with_file_name("vigie"));
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path())?;
    let input = dir.path().join("years.ndjson");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&input)?);
        vigie_benchmarks::generate_over(7, per_year * YEARS, YEARS as i64 * 365 * 86_400, &mut w)?;
    }
    let report = dir.path().join("report.json");
    let mut child = Command::new(&vigie)
        .args(["replay", "--config"])
        .arg(&config)
        .arg("--input")
        .arg(&input)
        .args(["--batch", &batch.to_string(), "--report-json"])
        .arg(&report)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Resident memory sampled every 100 ms; the records are spread evenly over the years and
    // read at a steady pace, so each quarter of the run is about one year of data.
    let status = format!("/proc/{}/status", child.id());
    let mut samples = Vec::new();
    while child.try_wait()?.is_none() {
        if let Some(kb) = std::fs::read_to_string(&status).ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        }) {
            samples.push(kb as f64 / 1024.0);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
    println!(
        "{} records over {YEARS} years (W = 52 weeks), {} retired, {:.0} records/s",
        v["records_read"],
        v["retired"],
        v["records_per_s"].as_f64().unwrap_or(0.0)
    );
    println!("| quarter of the run (~ year of data) | max resident MiB |\n|---|---|");
    let q = samples.len().div_ceil(YEARS).max(1);
    for (i, chunk) in samples.chunks(q).enumerate() {
        println!(
            "| {} | {:.0} |",
            i + 1,
            chunk.iter().cloned().fold(0.0, f64::max)
        );
    }
    Ok(())
}

/// Runs `vigie replay` with `args`; returns its JSON report with the process's wall time.
fn replay(vigie: &Path, report: &Path, args: &[OsString]) -> anyhow::Result<Value> {
    let t = Instant::now();
    let out = Command::new(vigie)
        .arg("replay")
        .args(args)
        .arg("--report-json")
        .arg(report)
        .output()?;
    let wall = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "vigie failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(report)?)?;
    v["wall_s"] = json!(wall);
    Ok(v)
}

fn best_of(runs: usize, mut f: impl FnMut() -> anyhow::Result<Value>) -> anyhow::Result<Value> {
    let mut best: Option<Value> = None;
    for _ in 0..runs.max(1) {
        let v = f()?;
        if best
            .as_ref()
            .is_none_or(|b| v["wall_s"].as_f64() < b["wall_s"].as_f64())
        {
            best = Some(v);
        }
    }
    Ok(best.expect("one run"))
}

fn plain(config: &Path, input: &str, output: &Path) -> anyhow::Result<()> {
    let config = Config::from_file(config).context("config")?;
    let spec = InputSpec::parse(input, &config).map_err(anyhow::Error::msg)?;
    let t = Instant::now();
    let run = plain_loop(&config, vec![spec]);
    let elapsed = t.elapsed().as_secs_f64();
    let ids: Vec<&str> = config.zones.iter().map(|z| z.id.as_str()).collect();
    vigie_connectors::output::write_ndjson(
        output,
        &run.output.indicators,
        &run.output.clashes,
        &ids,
    )?;
    println!(
        "{}",
        json!({"records_read": run.read, "accepted": run.accepted, "elapsed_s": elapsed, "peak_rss_bytes": vigie_connectors::sys::peak_rss_bytes(),
               "indicator_rows": run.output.indicators.len(), "clashes": run.output.clashes.len()})
    );
    Ok(())
}

/// Lines of `b` that differ from `a` (matched by type, zone, hour or pair; floats within 1e-9).
fn compare(a: &Path, b: &Path) -> anyhow::Result<usize> {
    let load = |p: &Path| -> anyhow::Result<HashMap<String, Value>> {
        let mut m = HashMap::new();
        for line in std::fs::read_to_string(p)?.lines() {
            let v: Value = serde_json::from_str(line)?;
            let key = format!(
                "{}|{}|{}|{}|{}",
                v["type"], v["zone"], v["hour"], v["a"], v["b"]
            );
            m.insert(key, v);
        }
        Ok(m)
    };
    let (a, b) = (load(a)?, load(b)?);
    let mut diffs = a.len().abs_diff(b.len());
    for (k, va) in &a {
        match b.get(k) {
            Some(vb) if same(va, vb) => {}
            _ => diffs += 1,
        }
    }
    Ok(diffs)
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs())
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn render(results: &[Value], n: usize) -> String {
    let m = machine();
    let mut s = format!(
        "# vigie replay benchmark\n\nMachine: {} CPUs ({}), {}. Generated workload: {n} records. Each figure is the best of the runs; ratios are against the plain single-threaded loop measured in the same run (parse + validate + recompute from scratch, no dataflow). Throughput counts every line read over the whole process's wall time.\n\n",
        m["cpus"],
        m["cpu"].as_str().unwrap_or("?"),
        m["memory"].as_str().unwrap_or("?").replace("MemTotal:", "memory").split_whitespace().collect::<Vec<_>>().join(" ")
    );
    s.push_str("| workload | records | plain loop rec/s | vigie 1 worker rec/s (ratio) | vigie 2 workers rec/s (ratio) | latency p50 / p99 / p99.9 ms (1 worker) | peak MiB plain / vigie 1w / 2w |\n|---|---|---|---|---|---|---|\n");
    for r in results {
        let read = r["plain"]["records_read"].as_f64().unwrap_or(0.0);
        let rate = |v: &Value| read / v["wall_s"].as_f64().unwrap_or(f64::NAN);
        let mib = |v: &Value| v["peak_rss_bytes"].as_f64().unwrap_or(0.0) / 1048576.0;
        let (p, v1, v2) = (&r["plain"], &r["vigie_1w"], &r["vigie_2w"]);
        let lat = &v1["latency_ms"];
        s.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} ({:.2}×) | {:.0} ({:.2}×) | {:.1} / {:.1} / {:.1} | {:.0} / {:.0} / {:.0} |\n",
            r["workload"].as_str().unwrap_or("?"),
            read,
            rate(p),
            rate(v1),
            rate(v1) / rate(p),
            rate(v2),
            rate(v2) / rate(p),
            lat["p50"].as_f64().unwrap_or(f64::NAN),
            lat["p99"].as_f64().unwrap_or(f64::NAN),
            lat["p999"].as_f64().unwrap_or(f64::NAN),
            mib(p),
            mib(v1),
            mib(v2)
        ));
    }
    if let Some(small) = results
        .first()
        .map(|r| &r["vigie_1w_small_epochs"])
        .filter(|v| !v.is_null())
    {
        let lat = &small["latency_ms"];
        s.push_str(&format!(
            "\nLatency against throughput: the generated workload on 1 worker in epochs of 10,000 records instead of 200,000: {:.0} records/s, latency p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms.\n",
            small["records_per_s"].as_f64().unwrap_or(f64::NAN),
            lat["p50"].as_f64().unwrap_or(f64::NAN),
            lat["p99"].as_f64().unwrap_or(f64::NAN),
            lat["p999"].as_f64().unwrap_or(f64::NAN)
        ));
    }
    s.push_str("\nvigie's output equals the plain loop's on every workload (checked by the harness, floats within 1e-9).\n");
    s
}
