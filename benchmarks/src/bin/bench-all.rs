//! `bench-all`: every benchmark in one command, one Markdown and one JSON report.
//!
//! ```text
//! cargo build --release --workspace
//! target/release/bench-all --out benchmarks/results          # the full suite, ~10 minutes
//! target/release/bench-all --soak --rate 2000 --duration 600 --out benchmarks/results
//! ```
//!
//! The suite is `benchmarks/workloads/suite.toml`:
//! 1. **Peers**: one generated file of a million incidents through vigie (its full indicator
//!    model, `vigie replay`), Pathway and Bytewax (`benchmarks/peers/*.py`, in a virtual
//!    environment `target/peers-venv` created on first use from PyPI) and the plain
//!    single-pass Rust loop (`bench-all plain`), each in its own process, runs interleaved,
//!    medians reported. Every result is checked against the plain loop's: the peers' rows
//!    exactly, vigie's `incidents` (and severity sums through `recent`) wherever vigie reports
//!    the zone and hour. Ratios are vigie / peer and vigie / plain loop, from the same run.
//!    Beside them, Pathway and Bytewax on the same model as vigie's
//!    (`benchmarks/peers/*_model_peer.py`, written from the model's definition): the same
//!    configuration and input, vigie's NDJSON out, each line compared with vigie's
//!    (`tests/tools/compare_outputs.py`); the report's first table.
//! 2. `replay-bench`, `store-bench` and `ingest-bench` as they are (real files of
//!    the repository's `data/`, store bytes per point, live latency over HTTP and MQTT).
//! 3. **Soak**: `vigie run` fed at a fixed rate over HTTP and MQTT for a while, its memory and
//!    latencies sampled every few seconds; the slope of memory over the second half says
//!    whether it stays flat.
//!
//! The machine is shared: each run records the CPU other processes used meanwhile, and runs
//! where that exceeds a tenth of the run's wall time are flagged as disturbed.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigie_benchmarks::live::{free_port, http, metric, Killed};
use vigie_benchmarks::measure::{self, Measured};
use vigie_benchmarks::peers::{self, Groups};
use vigie_benchmarks::{machine, vigie_binary};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    sub: Option<Sub>,
    /// The suite (default: benchmarks/workloads/suite.toml).
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Folder for the report: DATE-full.md/.json (DATE-soak.* with --soak).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The vigie binary (default: beside this one).
    #[arg(long)]
    vigie: Option<PathBuf>,
    /// Runs of each peer measurement (default: the suite's).
    #[arg(long)]
    runs: Option<usize>,
    /// Records of the peers' workload (default: the suite's).
    #[arg(long)]
    records: Option<usize>,
    /// Only the soak.
    #[arg(long)]
    soak: bool,
    /// Soak rate, records per second (default: the suite's).
    #[arg(long)]
    rate: Option<u64>,
    /// Soak duration in seconds (default: the suite's).
    #[arg(long)]
    duration: Option<u64>,
    /// Share of the soak's records sent over HTTP, the rest over MQTT (default: the suite's).
    #[arg(long)]
    http_share: Option<f64>,
    /// Leave out the soak of the full suite.
    #[arg(long)]
    no_soak: bool,
    /// Leave out replay-bench, store-bench and ingest-bench.
    #[arg(long)]
    no_others: bool,
    /// Leave out Pathway and Bytewax (vigie and the plain loop only).
    #[arg(long)]
    no_peers: bool,
    /// Seconds to wait, before each measured run, for the machine to be quiet.
    #[arg(long, default_value_t = 20)]
    quiet_wait: u64,
}

#[derive(Subcommand)]
enum Sub {
    /// The plain single-pass loop on the peers' workload: EVENTS ZONES OUT.
    Plain {
        events: PathBuf,
        zones: PathBuf,
        out: PathBuf,
    },
    /// Writes the peers' workload alone (`events.csv` and `zones.csv` in DIR), as the suite
    /// generates it: e.g. to time `vigie replay` under two configurations in the same run.
    Generate {
        dir: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
        #[arg(long, default_value_t = 100)]
        zones: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Suite {
    peers: PeersSpec,
    replay: ReplaySpec,
    store: StoreSpec,
    ingest: IngestSpec,
    soak: SoakSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeersSpec {
    records: usize,
    zones: usize,
    seed: u64,
    runs: usize,
    vigie_config: PathBuf,
    mapping: String,
    vigie: Vec<VigieSpec>,
    pathway_threads: Vec<usize>,
    bytewax: Vec<BytewaxSpec>,
    python: Vec<String>,
    packages: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VigieSpec {
    workers: usize,
    batch: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BytewaxSpec {
    mode: String,
    workers: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplaySpec {
    records: usize,
    runs: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreSpec {
    queries: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestSpec {
    records: usize,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct SoakSpec {
    rate: u64,
    duration_s: u64,
    sample_s: u64,
    http_share: f64,
    ids: u64,
    flush_versions: usize,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.sub {
        Some(Sub::Plain { events, zones, out }) => return plain(events, zones, out),
        Some(Sub::Generate {
            dir,
            records,
            zones,
            seed,
        }) => {
            std::fs::create_dir_all(dir)?;
            peers::generate(dir, *records, *zones, *seed)?;
            return Ok(());
        }
        None => {}
    }
    let spec_path = cli
        .spec
        .clone()
        .unwrap_or_else(|| repo().join("benchmarks/workloads/suite.toml"));
    let suite: Suite = toml::from_str(
        &std::fs::read_to_string(&spec_path).with_context(|| spec_path.display().to_string())?,
    )
    .with_context(|| spec_path.display().to_string())?;
    let spec_dir = spec_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let vigie = vigie_binary(cli.vigie.clone())?;
    let work = repo().join("target/bench-work");
    std::fs::create_dir_all(&work)?;
    let date = vigie_model::time::format_ts(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_micros() as i64,
    )[..10]
        .to_string();
    let mut soak_spec = suite.soak.clone();
    if let Some(r) = cli.rate {
        soak_spec.rate = r;
    }
    if let Some(d) = cli.duration {
        soak_spec.duration_s = d;
    }
    if let Some(h) = cli.http_share {
        if !(0.0..=1.0).contains(&h) {
            bail!("--http-share must be between 0 and 1, got {h}");
        }
        soak_spec.http_share = h;
    }
    let zones_geojson = spec_dir.join("peers-zones.geojson");
    let m = machine();
    let machine_md = format!(
        "Machine: {} CPUs ({}), {}, {}; {}.",
        m["cpus"],
        m["cpu"].as_str().unwrap_or("?"),
        m["memory"]
            .as_str()
            .unwrap_or("?")
            .replace("MemTotal:", "memory")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        m["os"].as_str().unwrap_or("?"),
        kernel()
    );
    let (name, md, report) = if cli.soak {
        let (v, md) = soak(&vigie, &soak_spec, &zones_geojson, &work)?;
        (
            "soak",
            format!("# vigie soak\n\n{machine_md}\n\n{md}"),
            json!({"machine": m, "soak": v}),
        )
    } else {
        let quiet = Duration::from_secs(cli.quiet_wait);
        let (pv, pmd) = peers_section(&cli, &suite.peers, &spec_dir, &vigie, &work, quiet)?;
        let mut md = format!(
            "# vigie benchmarks: the full suite\n\n{machine_md} Command: `bench-all {}` (suite `{}`).\n\n{pmd}",
            std::env::args().skip(1).collect::<Vec<_>>().join(" "),
            spec_path.display()
        );
        let mut report = json!({"machine": m, "peers": pv});
        if !cli.no_others {
            let parts = work.join("parts");
            std::fs::create_dir_all(&parts)?;
            let others: [(&str, &str, Vec<String>, &str); 3] = [
                (
                    "replay",
                    "replay-bench",
                    vec![
                        "--records".into(),
                        suite.replay.records.to_string(),
                        "--runs".into(),
                        suite.replay.runs.to_string(),
                    ],
                    "report",
                ),
                (
                    "store",
                    "store-bench",
                    vec!["--queries".into(), suite.store.queries.to_string()],
                    "store",
                ),
                (
                    "ingest",
                    "ingest-bench",
                    vec!["--records".into(), suite.ingest.records.to_string()],
                    "ingest",
                ),
            ];
            for (key, bin, args, file) in others {
                eprintln!("== {bin}");
                let exe = std::env::current_exe()?.with_file_name(bin);
                let busy0 = measure::machine_busy_s();
                let t = Instant::now();
                let status = Command::new(&exe)
                    .args(&args)
                    .arg("--vigie")
                    .arg(&vigie)
                    .arg("--out")
                    .arg(&parts)
                    .stdout(Stdio::null())
                    .status();
                let wall = t.elapsed().as_secs_f64();
                let busy = measure::machine_busy_s() - busy0;
                match status {
                    Ok(s) if s.success() => {
                        let part_md = std::fs::read_to_string(parts.join(format!("{file}.md")))?;
                        let part: Value = serde_json::from_str(&std::fs::read_to_string(
                            parts.join(format!("{file}.json")),
                        )?)?;
                        md.push_str(&format!(
                            "\n{}\n",
                            part_md.replace("\n## ", "\n### ").replacen("# ", "## ", 1)
                        ));
                        md.push_str(&format!("\n({bin}: {wall:.0} s wall; the machine was busy {busy:.0} CPU-seconds meanwhile, this benchmark's own work included.)\n"));
                        report[key] = part;
                    }
                    other => {
                        md.push_str(&format!("\n## {bin}\n\nNot measured: {other:?}.\n"));
                        report[key] = json!({"error": format!("{other:?}")});
                    }
                }
            }
        }
        if !cli.no_soak {
            let (v, smd) = soak(&vigie, &soak_spec, &zones_geojson, &work)?;
            md.push_str(&format!("\n{smd}"));
            report["soak"] = v;
        }
        ("full", md, report)
    };
    println!("{md}");
    if let Some(out) = &cli.out {
        std::fs::create_dir_all(out)?;
        std::fs::write(out.join(format!("{date}-{name}.md")), &md)?;
        std::fs::write(
            out.join(format!("{date}-{name}.json")),
            serde_json::to_string_pretty(&report)?,
        )?;
        eprintln!("wrote {}", out.join(format!("{date}-{name}.md")).display());
    }
    Ok(())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_default()
}

/// The plain loop's process: reads both files, aggregates, writes the joined rows, and prints
/// its own figures as JSON.
fn plain(events: &Path, zones: &Path, out: &Path) -> anyhow::Result<()> {
    let t = Instant::now();
    let zone_table = peers::read_zones(zones)?;
    let bytes = std::fs::read(events)?;
    let (groups, bad) = peers::plain_loop(&bytes);
    peers::write_result(out, &groups, &zone_table)?;
    println!(
        "{}",
        json!({"groups": groups.len(), "bad_lines": bad, "elapsed_s": t.elapsed().as_secs_f64(),
               "peak_rss_bytes": vigie_connectors::sys::peak_rss_bytes()})
    );
    Ok(())
}

/// One system measured on the peers' workload.
struct System {
    label: String,
    kind: &'static str,
    parallelism: usize,
    command: Command,
    /// Its result file, and whether it is vigie's NDJSON.
    output: PathBuf,
    /// vigie's own JSON report, read after each run.
    report: Option<PathBuf>,
    runs: Vec<Measured>,
    own_reports: Vec<Value>,
}

fn python_ok(python: &str) -> bool {
    Command::new(python)
        .args([
            "-c",
            "import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The peers' virtual environment: `target/peers-venv`, created with the first suitable
/// interpreter and the suite's packages when it cannot import them.
fn peers_python(spec: &PeersSpec) -> anyhow::Result<(PathBuf, String)> {
    let venv = repo().join("target/peers-venv");
    let py = venv.join("bin/python");
    let probe = |py: &Path| {
        Command::new(py)
            .args([
                "-c",
                "import sys, pathway, bytewax.dataflow; from importlib.metadata import version; print(sys.version.split()[0], 'pathway', version('pathway'), 'bytewax', version('bytewax'))",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if let Some(v) = probe(&py) {
        return Ok((py, v));
    }
    let base = spec.python.iter().find(|p| python_ok(p)).context(
        "no Python 3.10–3.12 found for Pathway and Bytewax (tried the suite's `python` list)",
    )?;
    eprintln!("creating {} with {base}", venv.display());
    let ok = Command::new(base)
        .args(["-m", "venv"])
        .arg(&venv)
        .status()?
        .success()
        && Command::new(&py)
            .args(["-m", "pip", "install", "-q"])
            .args(&spec.packages)
            .status()?
            .success();
    if !ok {
        bail!(
            "could not install {:?} into {}",
            spec.packages,
            venv.display()
        );
    }
    let v = probe(&py).context("the new virtual environment cannot import pathway and bytewax")?;
    Ok((py, v))
}

/// Compares a same-model peer's NDJSON with vigie's through `tests/tools/compare_outputs.py`
/// (lines matched by zone and hour or by clash, numbers within 1e-9 relative): its summary's
/// counts, and whether every line is equal.
fn compare_outputs(python: &Path, expected: &Path, actual: &Path) -> anyhow::Result<Value> {
    let o = Command::new(python)
        .arg(repo().join("tests/tools/compare_outputs.py"))
        .arg(expected)
        .arg(actual)
        .output()
        .context("tests/tools/compare_outputs.py")?;
    let text = String::from_utf8_lossy(&o.stdout);
    let summary = text
        .lines()
        .rev()
        .find(|l| l.starts_with("expected "))
        .with_context(|| format!("compare_outputs.py printed no summary: {text}"))?
        .to_string();
    // "expected N lines, actual M lines: K matched, D differing, X missing, Y extra, P other problems"
    let numbers: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let [expected_lines, actual_lines, matched, differing, missing, extra, other] = numbers[..]
    else {
        bail!("compare_outputs.py: unexpected summary {summary:?}");
    };
    let first: Vec<&str> = text.lines().take(3).collect();
    Ok(json!({
        "ok": o.status.success(), "expected_lines": expected_lines, "actual_lines": actual_lines,
        "matched": matched, "differing": differing, "missing": missing, "extra": extra,
        "other_problems": other, "summary": summary,
        "first_differences": if o.status.success() { Vec::new() } else { first },
    }))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn peers_section(
    cli: &Cli,
    spec: &PeersSpec,
    spec_dir: &Path,
    vigie: &Path,
    work: &Path,
    quiet: Duration,
) -> anyhow::Result<(Value, String)> {
    let n = cli.records.unwrap_or(spec.records);
    let runs = cli.runs.unwrap_or(spec.runs).max(1);
    let data = work.join(format!("peers-{n}-{}", spec.seed));
    let events = data.join("events.csv");
    let zones = data.join("zones.csv");
    if !events.exists() {
        eprintln!("generating {n} incidents into {}", data.display());
        std::fs::create_dir_all(&data)?;
        peers::generate(&data, n, spec.zones, spec.seed)?;
    }
    let (reference, bad) = peers::plain_loop(&std::fs::read(&events)?);
    if bad > 0 {
        bail!("{}: {bad} unreadable lines", events.display());
    }
    let zone_table = peers::read_zones(&zones)?;
    let reference: Groups = reference
        .into_iter()
        .filter(|((z, _), _)| zone_table.contains_key(z))
        .collect();
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut systems = Vec::new();
    let this = std::env::current_exe()?;
    let out = |name: &str| work.join(format!("out-{name}"));
    let mut plain_cmd = Command::new(&this);
    plain_cmd
        .arg("plain")
        .arg(&events)
        .arg(&zones)
        .arg(out("plain.csv"));
    systems.push(System {
        label: "plain Rust loop, 1 thread".into(),
        kind: "plain",
        parallelism: 1,
        command: plain_cmd,
        output: out("plain.csv"),
        report: None,
        runs: vec![],
        own_reports: vec![],
    });
    for v in &spec.vigie {
        let w = v.workers;
        let tag = format!(
            "{w}{}",
            v.batch.map(|b| format!("-b{b}")).unwrap_or_default()
        );
        let mut c = Command::new(vigie);
        let report = work.join(format!("vigie-{tag}.json"));
        c.arg("replay")
            .arg("--config")
            .arg(spec_dir.join(&spec.vigie_config))
            .arg("--input")
            .arg(format!("{}={}", spec.mapping, events.display()))
            .args(["--workers", &w.to_string()])
            .arg("--output")
            .arg(out(&format!("vigie-{tag}.ndjson")))
            .arg("--report-json")
            .arg(&report);
        if let Some(b) = v.batch {
            c.args(["--batch", &b.to_string()]);
        }
        systems.push(System {
            label: format!(
                "vigie, {w} worker{}, {}",
                if w > 1 { "s" } else { "" },
                match v.batch {
                    Some(b) if b >= n => "one epoch".to_string(),
                    Some(b) => format!("epochs of {b}"),
                    None => "epochs of 200,000 (default)".to_string(),
                }
            ),
            kind: "vigie",
            parallelism: w,
            command: c,
            output: out(&format!("vigie-{tag}.ndjson")),
            report: Some(report),
            runs: vec![],
            own_reports: vec![],
        });
    }
    let mut python_version = Value::Null;
    if !cli.no_peers {
        let (py, version) = peers_python(spec)?;
        python_version = json!(version);
        let scripts = repo().join("benchmarks/peers");
        for &t in &spec.pathway_threads {
            let mut c = Command::new(&py);
            c.arg(scripts.join("pathway_peer.py"))
                .arg(&events)
                .arg(&zones)
                .arg(out(&format!("pathway-{t}.csv")))
                .env("PATHWAY_THREADS", t.to_string());
            systems.push(System {
                label: format!("Pathway, {t} thread{}", if t > 1 { "s" } else { "" }),
                kind: "pathway",
                parallelism: t,
                command: c,
                output: out(&format!("pathway-{t}.csv")),
                report: None,
                runs: vec![],
                own_reports: vec![],
            });
        }
        for b in &spec.bytewax {
            let name = format!("bytewax-{}-{}.csv", b.mode, b.workers);
            let mut c = Command::new(&py);
            c.args(["-m", "bytewax.run", "bytewax_peer:flow", "-w"])
                .arg(b.workers.to_string())
                .current_dir(&scripts)
                .env("PEER_EVENTS", &events)
                .env("PEER_ZONES", &zones)
                .env("PEER_OUT", out(&name))
                .env("PEER_MODE", &b.mode);
            systems.push(System {
                label: format!(
                    "Bytewax {}, {} worker{}",
                    if b.mode == "window" {
                        "1 h event-time windows"
                    } else {
                        "fold to the end"
                    },
                    b.workers,
                    if b.workers > 1 { "s" } else { "" }
                ),
                kind: "bytewax",
                parallelism: b.workers,
                command: c,
                output: out(&name),
                report: None,
                runs: vec![],
                own_reports: vec![],
            });
        }
        // The same model as vigie's (`peers/*_model_peer.py`, written from indicators.md):
        // the same configuration and mapping, vigie's NDJSON out, compared with vigie's lines.
        let config = spec_dir.join(&spec.vigie_config);
        let input = format!("{}={}", spec.mapping, events.display());
        for &t in &spec.pathway_threads {
            let name = format!("pathway-model-{t}.ndjson");
            let mut c = Command::new(&py);
            c.arg(scripts.join("pathway_model_peer.py"))
                .arg("--config")
                .arg(&config)
                .args(["--input", &input])
                .arg("--output")
                .arg(out(&name))
                .env("PATHWAY_THREADS", t.to_string())
                .env("PYTHONDONTWRITEBYTECODE", "1"); // no __pycache__ in the source tree
            systems.push(System {
                label: format!(
                    "Pathway, same model, {t} thread{}",
                    if t > 1 { "s" } else { "" }
                ),
                kind: "pathway-model",
                parallelism: t,
                command: c,
                output: out(&name),
                report: None,
                runs: vec![],
                own_reports: vec![],
            });
        }
        let mut workers: Vec<usize> = spec.bytewax.iter().map(|b| b.workers).collect();
        workers.sort_unstable();
        workers.dedup();
        for w in workers {
            let name = format!("bytewax-model-{w}.ndjson");
            let mut c = Command::new(&py);
            c.args(["-m", "bytewax.run", "bytewax_model_peer:flow", "-w"])
                .arg(w.to_string())
                .current_dir(&scripts)
                .env("PEER_CONFIG", &config)
                .env("PEER_INPUT", &input)
                .env("PEER_OUTPUT", out(&name))
                .env("PYTHONDONTWRITEBYTECODE", "1");
            systems.push(System {
                label: format!(
                    "Bytewax, same model, {w} worker{}",
                    if w > 1 { "s" } else { "" }
                ),
                kind: "bytewax-model",
                parallelism: w,
                command: c,
                output: out(&name),
                report: None,
                runs: vec![],
                own_reports: vec![],
            });
        }
    }
    // The output the same-model peers are compared with: vigie's first configuration's, which
    // runs before them in every round.
    let vigie_output = systems
        .iter()
        .find(|s| s.kind == "vigie")
        .map(|s| s.output.clone())
        .context("no vigie configuration in the suite")?;
    let compare_python = if python_version.is_null() {
        PathBuf::from("python3")
    } else {
        repo().join("target/peers-venv/bin/python")
    };
    // Runs interleaved, so a disturbance spreads over every system rather than one.
    let mut checks: Vec<Value> = vec![Value::Null; systems.len()];
    for run in 1..=runs {
        for (i, s) in systems.iter_mut().enumerate() {
            let _ = std::fs::remove_file(&s.output);
            let log = logs.join(format!("{}-{run}.log", s.label.replace([' ', ','], "_")));
            let log_file = std::fs::File::create(&log)?;
            s.command.stdout(log_file.try_clone()?).stderr(log_file);
            eprint!("run {run}/{runs}: {} … ", s.label);
            let m = measure::run(&mut s.command, quiet)
                .with_context(|| format!("{} (log: {})", s.label, log.display()))?;
            eprintln!(
                "{:.2} s, {:.0} MiB, foreign CPU {:.2} s",
                m.wall_s,
                m.peak_rss_bytes as f64 / 1048576.0,
                m.foreign_cpu_s
            );
            let mut m = m;
            if let Some(r) = &s.report {
                let v: Value = serde_json::from_str(&std::fs::read_to_string(r)?)?;
                // vigie's own peak (its VmHWM at the end) catches what the samples may miss.
                let own = v["peak_rss_bytes"].as_u64().unwrap_or(0);
                m.peak_rss_bytes = m.peak_rss_bytes.max(own);
                s.own_reports.push(v);
            } else if s.kind == "plain" {
                let text = std::fs::read_to_string(&log)?;
                if let Some(v) = text
                    .lines()
                    .find_map(|l| serde_json::from_str::<Value>(l).ok())
                {
                    m.peak_rss_bytes = m
                        .peak_rss_bytes
                        .max(v["peak_rss_bytes"].as_u64().unwrap_or(0));
                }
            }
            s.runs.push(m);
            if run == 1 {
                checks[i] = if s.kind.ends_with("-model") {
                    let c = compare_outputs(&compare_python, &vigie_output, &s.output)?;
                    if c["ok"] != true {
                        eprintln!(
                            "{}: its lines differ from vigie's: {}",
                            s.label,
                            c["summary"].as_str().unwrap_or("?")
                        );
                    }
                    c
                } else if s.kind == "vigie" {
                    let c = peers::check_vigie(&s.output, &reference)?;
                    if !c.ok() {
                        bail!(
                            "{}: its incidents differ from the reference: {c:?}",
                            s.label
                        );
                    }
                    serde_json::to_value(c)?
                } else {
                    let c = peers::check_peer(&reference, &peers::read_result(&s.output)?);
                    if !c.ok() {
                        bail!("{}: its result differs from the reference: {c:?}", s.label);
                    }
                    serde_json::to_value(c)?
                };
            }
        }
    }
    // Figures per system: medians over the runs.
    let mut rows = Vec::new();
    for (s, check) in systems.iter().zip(&checks) {
        let wall = median(s.runs.iter().map(|m| m.wall_s).collect());
        rows.push(json!({
            "label": s.label, "kind": s.kind, "parallelism": s.parallelism,
            "wall_s": wall, "records_per_s": n as f64 / wall,
            "peak_rss_bytes": median(s.runs.iter().map(|m| m.peak_rss_bytes as f64).collect()),
            "tree_cpu_s": median(s.runs.iter().map(|m| m.tree_cpu_s).collect()),
            "disturbed_runs": s.runs.iter().filter(|m| m.disturbed()).count(),
            "runs": s.runs, "check": check,
            "vigie_reports": s.own_reports,
        }));
    }
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let plain_row = rows
        .iter()
        .find(|r| r["kind"] == "plain")
        .cloned()
        .context("the plain loop")?;
    // Ratios: vigie with the same parallelism as the peer (or its 1-worker run).
    let mut ratios = Vec::new();
    for r in &rows {
        if r["kind"] == "vigie" {
            continue;
        }
        let p = r["parallelism"].as_u64().unwrap_or(1);
        let matching: Vec<&Value> = rows
            .iter()
            .filter(|v| v["kind"] == "vigie" && v["parallelism"].as_u64() == Some(p))
            .collect();
        for v in matching {
            ratios.push(json!({
                "vigie": v["label"], "other": r["label"], "kind": r["kind"],
                "throughput_ratio": f(v, "records_per_s") / f(r, "records_per_s"),
                "memory_ratio": f(v, "peak_rss_bytes") / f(r, "peak_rss_bytes"),
            }));
        }
    }
    // vigie on more workers against the plain loop too (the loop has one thread).
    for v in rows
        .iter()
        .filter(|v| v["kind"] == "vigie" && v["parallelism"] != 1)
    {
        ratios.push(json!({
            "vigie": v["label"], "other": plain_row["label"], "kind": "plain",
            "throughput_ratio": f(v, "records_per_s") / f(&plain_row, "records_per_s"),
            "memory_ratio": f(v, "peak_rss_bytes") / f(&plain_row, "peak_rss_bytes"),
        }));
    }
    let is_model = |r: &Value| r["kind"].as_str().is_some_and(|k| k.ends_with("-model"));
    let vigie_rows = checks
        .iter()
        .find_map(|c| c["vigie_rows"].as_u64())
        .unwrap_or(0);
    let row_md = |r: &Value, check: &str| {
        format!(
            "| {} | {:.2} | {:.0} | {:.0} | {:.1} | {} of {runs} | {check} |\n",
            r["label"].as_str().unwrap_or("?"),
            f(r, "wall_s"),
            f(r, "records_per_s"),
            f(r, "peak_rss_bytes") / 1048576.0,
            f(r, "tree_cpu_s"),
            r["disturbed_runs"],
        )
    };
    let ratio_md = |r: &Value| {
        let t = f(r, "throughput_ratio");
        let mem = f(r, "memory_ratio");
        let (tgoal, mgoal) = if r["kind"] == "plain" {
            (
                format!("≥ 0.33: {}", if t >= 1.0 / 3.0 { "met" } else { "missed" }),
                "—".to_string(),
            )
        } else {
            (
                format!("≥ 10: {}", if t >= 10.0 { "met" } else { "missed" }),
                format!("< 0.2: {}", if mem < 0.2 { "met" } else { "missed" }),
            )
        };
        format!(
            "| {} | {} | {t:.2}× | {tgoal} | {mem:.2}× | {mgoal} |\n",
            r["vigie"].as_str().unwrap_or("?"),
            r["other"].as_str().unwrap_or("?"),
        )
    };
    let disturbed_md = |rows: &[&Value]| {
        let disturbed: usize = rows
            .iter()
            .map(|r| r["disturbed_runs"].as_u64().unwrap_or(0) as usize)
            .sum();
        if disturbed == 0 {
            "No run was disturbed: other processes used less than a tenth of each run's wall time in CPU.".to_string()
        } else {
            format!("**{disturbed} runs were disturbed** (other processes used more than a tenth of the run's wall time in CPU: see `foreign_cpu_s` in the JSON); ratios come from the same run and suffer less than absolute figures, but rerun on a quiet machine to confirm.")
        }
    };
    let table_head = "| system | wall s (median) | records/s | peak MiB | CPU s | disturbed runs | result check |\n|---|---|---|---|---|---|---|\n";
    let ratio_head = "| vigie | against | throughput ratio | goal | memory ratio | goal |\n|---|---|---|---|---|---|\n";
    let mut md = String::new();
    // The same model: vigie's rows and the model peers', their lines compared with vigie's.
    if rows.iter().any(is_model) {
        md.push_str(&format!(
            "## vigie against Pathway and Bytewax on the same model\n\nThe {n} incidents of `events.csv` (below), and the same work: Pathway (`benchmarks/peers/pathway_model_peer.py`: tables, groupby, joins, the file read by Pathway's static CSV reader) and Bytewax (`benchmarks/peers/bytewax_model_peer.py`: keyed folds to the end of the input and joins) compute vigie's indicator model v2, written from the model's definition (`indicators.md`, its precise readings included) and not from vigie's code, with vigie's configuration (`benchmarks/workloads/peers.toml`, the same CSV mapping and zone file): the clock (the greatest incident ts), the baseline over the 52 weeks before the clock's week, recent incidents, crowd and load, exposure, risk score and level, required agents, protection rate, criticality, confidence and the three trends, for every zone and hour of the horizon (the clock's hour −168 … +720): {vigie_rows} NDJSON lines with every key of vigie's output. Result check: each peer's lines against vigie's (its first configuration, first run) with `tests/tools/compare_outputs.py`, every field, numbers within 1e-9 relative. Measured as below: the whole process, {runs} runs each interleaved with the others, medians.\n\n{table_head}"
        ));
        for r in rows.iter().filter(|r| r["kind"] == "vigie") {
            md.push_str(&row_md(r, "the reference"));
        }
        for (r, c) in rows.iter().zip(&checks).filter(|(r, _)| is_model(r)) {
            let check = if c["ok"] == true {
                format!(
                    "{} of {} lines equal vigie's",
                    c["matched"], c["expected_lines"]
                )
            } else {
                format!(
                    "**differs from vigie's**: {}",
                    c["summary"].as_str().unwrap_or("?")
                )
            };
            md.push_str(&row_md(r, &check));
        }
        md.push_str(&format!("\n### Ratios and goals on the same model\n\nvigie / peer, same run; vigie on as many workers as the peer has threads or workers. Goals (issue 18): throughput at least 10× theirs with less than a fifth of their peak memory.\n\n{ratio_head}"));
        for r in ratios.iter().filter(|r| is_model(r)) {
            md.push_str(&ratio_md(r));
        }
        let section: Vec<&Value> = rows
            .iter()
            .filter(|r| r["kind"] == "vigie" || is_model(r))
            .collect();
        md.push_str(&format!("\n{}\n\n", disturbed_md(&section)));
    }
    md.push_str(&format!(
        "## vigie against Pathway, Bytewax and the plain loop, on the same file: the simple comparison\n\n{n} incidents (`events.csv`: `ts,zone,category,severity`, unix seconds over 30 days, 100 zones, 5 % late by up to 300 s; seed {}) and `zones.csv`. Pathway and Bytewax compute per zone and hour the count and the severity sum of the incidents, joined with the zone table; the plain loop does the same in one pass of hand-written Rust; vigie runs its full indicator model (`benchmarks/workloads/peers.toml`: baseline, recent incidents, crowd, risk score and level, protection rate, trend, for every zone over its horizon) and writes its {vigie_rows} indicator rows: vigie does more work than the others here (the table above compares the same work). Each system runs in its own process from start to exit, reading the file and writing its result: records/s = {n} / wall time of the whole process, peak memory = the largest summed resident set of its process tree (sampled every 50 ms; vigie's and the loop's own peak counted too). {runs} runs each, interleaved; medians. Python {}.\n\n{table_head}",
        spec.seed,
        python_version.as_str().unwrap_or("not used")
    ));
    for (r, c) in rows.iter().zip(&checks).filter(|(r, _)| !is_model(r)) {
        let check = if r["kind"] == "vigie" {
            format!(
                "incidents = count on all {} shared (zone, hour); severity sums ok on {}",
                c["overlap"], c["recent_checked"]
            )
        } else {
            format!("{} rows, all equal", c["rows"])
        };
        md.push_str(&row_md(r, &check));
    }
    md.push_str(&format!("\n### Ratios and goals\n\nvigie / other, same run; vigie on as many workers as the other has threads or workers. Goals: throughput at least 10× Pathway's and Bytewax's with less than a fifth of their peak memory, and at least a third of the plain loop's throughput.\n\n{ratio_head}"));
    for r in ratios.iter().filter(|r| !is_model(r)) {
        md.push_str(&ratio_md(r));
    }
    let section: Vec<&Value> = rows.iter().filter(|r| !is_model(r)).collect();
    md.push_str(&format!("\n{}\n", disturbed_md(&section)));
    if let Some(v) = rows
        .iter()
        .find(|r| r["kind"] == "vigie" && r["parallelism"] == 1)
    {
        if let Some(rep) = v["vigie_reports"].get(0) {
            md.push_str(&format!(
                "\nvigie's own report ({}, first run): {} records accepted, replay {:.3} s inside the process, latency from a record's entry to its indicator update p50 {:.0} ms, p99 {:.0} ms, {} indicator changes emitted on the way.\n",
                v["label"].as_str().unwrap_or("?"), rep["accepted"], f(rep, "elapsed_s"), f(&rep["latency_ms"], "p50"), f(&rep["latency_ms"], "p99"), rep["indicator_updates"]
            ));
        }
    }
    Ok((
        json!({"records": n, "seed": spec.seed, "runs": runs, "python": python_version, "systems": rows, "ratios": ratios}),
        md,
    ))
}

/// One soak sample.
#[derive(serde::Serialize, Clone)]
struct Sample {
    t_s: f64,
    rss_mib: f64,
    anon_mib: f64,
    sent: u64,
    engine_records: f64,
    http_ack_p50_ms: f64,
    http_ack_p99_ms: f64,
    mqtt_ack_p50_ms: f64,
    mqtt_ack_p99_ms: f64,
    update_p50_ms: f64,
    update_p99_ms: f64,
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

fn soak_record(rng: &mut StdRng, now_s: i64, zones: usize, ids: u64) -> String {
    let id = if ids > 0 {
        format!("\"id\":\"soak-{}\",", rng.gen_range(0..ids))
    } else {
        String::new()
    };
    format!(
        "{{\"feed\":\"incident\",{id}\"ts\":{},\"zone\":\"z{:03}\",\"severity\":{},\"category\":\"crowd\"}}",
        now_s - rng.gen_range(0..2 * 86_400),
        rng.gen_range(0..zones),
        rng.gen_range(1..=5)
    )
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Feeds `vigie run` at `spec.rate` records/s for `spec.duration_s`, sampling every
/// `spec.sample_s`.
fn soak(
    vigie: &Path,
    spec: &SoakSpec,
    zones_geojson: &Path,
    work: &Path,
) -> anyhow::Result<(Value, String)> {
    eprintln!("== soak: {} records/s for {} s", spec.rate, spec.duration_s);
    let dir = tempfile::tempdir_in(work)?;
    let (port, mport) = (free_port(), free_port());
    let config = dir.path().join("soak.toml");
    std::fs::write(
        &config,
        format!(
            "timezone = \"UTC\"\nzones = {:?}\n[store]\nflush_versions = {}\n[ingest]\nepoch_ms = 200\nembedded_mqtt_listen = \"127.0.0.1:{mport}\"\n[ingest.http]\nmax_lines = 100000\n[[sources]]\nname = \"soak\"\nfeeds = [\"incident\"]\ntoken_env = \"SOAK_TOKEN\"\n",
            zones_geojson.canonicalize()?.display().to_string(),
            spec.flush_versions
        ),
    )?;
    let child = Command::new(vigie)
        .args(["run", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("SOAK_TOKEN", "soak-token")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("logs/soak-vigie.log"))?)
        .spawn()?;
    let pid = child.id();
    let mut vigie_guard = Killed(child);
    let t = Instant::now();
    while http(port, "GET", "/health", "", "")
        .map(|r| r.0)
        .unwrap_or(0)
        != 200
    {
        if t.elapsed() > Duration::from_secs(30) {
            bail!("vigie run did not start (log: target/bench-work/logs/soak-vigie.log)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // MQTT to the embedded broker: wait until it accepts a connection.
    while std::net::TcpStream::connect(("127.0.0.1", mport)).is_err() {
        if t.elapsed() > Duration::from_secs(30) {
            bail!("the embedded broker did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let zones = 100;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let http_hist = Arc::new(Mutex::new(new_hist()));
    let mqtt_hist = Arc::new(Mutex::new(new_hist()));
    let http_rate = (spec.rate as f64 * spec.http_share).round() as u64;
    let mqtt_rate = spec.rate - http_rate;
    let start = Instant::now();
    let end = start + Duration::from_secs(spec.duration_s);
    // HTTP: one POST every 100 ms, paced on the start so the rate holds on average.
    let http_thread = {
        let (stop, sent, hist, ids) = (stop.clone(), sent.clone(), http_hist.clone(), spec.ids);
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut rng = StdRng::seed_from_u64(1);
            let mut done = 0u64;
            let mut tick = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                tick += 1;
                let due = http_rate * tick / 10;
                let body: String = (done..due)
                    .map(|_| soak_record(&mut rng, now_s(), zones, ids) + "\n")
                    .collect();
                if !body.is_empty() {
                    let t = Instant::now();
                    let (code, answer) =
                        http(port, "POST", "/api/v1/records", "soak-token", &body)?;
                    if code != 200 {
                        bail!("POST answered {code}: {answer}");
                    }
                    hist.lock()
                        .expect("histogram")
                        .saturating_record(t.elapsed().as_micros().max(1) as u64);
                    sent.fetch_add(due - done, Ordering::Relaxed);
                    done = due;
                }
                let next = start + Duration::from_millis(100 * tick);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            Ok(())
        })
    };
    // MQTT: one record per QoS 1 message every 10 ms in small bursts; publish → PUBACK timed
    // by packet id.
    let mqtt_thread = {
        use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet, QoS};
        let (stop, sent, hist, ids) = (stop.clone(), sent.clone(), mqtt_hist.clone(), spec.ids);
        let mut opts = MqttOptions::new("soak-feeder", "127.0.0.1", mport);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_inflight(1000);
        let (client, mut conn) = Client::new(opts, 10_000);
        let acks = std::thread::spawn(move || {
            let mut sent_at: std::collections::HashMap<u16, Instant> = Default::default();
            for ev in conn.iter() {
                match ev {
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        sent_at.insert(pkid, Instant::now());
                    }
                    Ok(Event::Incoming(Packet::PubAck(a))) => {
                        if let Some(t) = sent_at.remove(&a.pkid) {
                            hist.lock()
                                .expect("histogram")
                                .saturating_record(t.elapsed().as_micros().max(1) as u64);
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("soak MQTT: {e}");
                        break;
                    }
                }
            }
        });
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut rng = StdRng::seed_from_u64(2);
            let mut done = 0u64;
            let mut tick = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                tick += 1;
                let due = mqtt_rate * tick / 100;
                while done < due {
                    let p = soak_record(&mut rng, now_s(), zones, ids);
                    client.publish("vigie/incident", QoS::AtLeastOnce, false, p.into_bytes())?;
                    done += 1;
                }
                let next = start + Duration::from_millis(10 * tick);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            // Let the last acknowledgements arrive, then leave.
            std::thread::sleep(Duration::from_secs(3));
            let _ = client.disconnect();
            let _ = acks.join();
            Ok(())
        })
    };
    let mut samples = Vec::new();
    let q = |name: &str| {
        metric(
            port,
            &format!("vigie_update_latency_seconds{{quantile=\"{name}\"}}"),
        )
        .ok()
        .flatten()
        .map_or(f64::NAN, |v| v * 1000.0)
    };
    let mut next = start;
    while Instant::now() < end {
        next += Duration::from_secs(spec.sample_s);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let take = |h: &Arc<Mutex<Histogram<u64>>>| {
            let mut h = h.lock().expect("histogram");
            let v = (
                h.value_at_quantile(0.5) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0,
            );
            h.reset();
            v
        };
        let (h50, h99) = take(&http_hist);
        let (m50, m99) = take(&mqtt_hist);
        let s = Sample {
            t_s: start.elapsed().as_secs_f64(),
            rss_mib: measure::rss_bytes(pid).unwrap_or(0) as f64 / 1048576.0,
            anon_mib: measure::rss_anon_bytes(pid).unwrap_or(0) as f64 / 1048576.0,
            sent: sent.load(Ordering::Relaxed),
            engine_records: metric(port, "vigie_engine_records_total")?.unwrap_or(f64::NAN),
            http_ack_p50_ms: h50,
            http_ack_p99_ms: h99,
            mqtt_ack_p50_ms: m50,
            mqtt_ack_p99_ms: m99,
            update_p50_ms: q("0.5"),
            update_p99_ms: q("0.99"),
        };
        eprintln!(
            "  {:>5.0} s  RSS {:.1} MiB  acknowledged {}  in the engine {}",
            s.t_s, s.rss_mib, s.sent, s.engine_records
        );
        samples.push(s);
    }
    stop.store(true, Ordering::Relaxed);
    http_thread.join().expect("http feeder")?;
    mqtt_thread.join().expect("mqtt feeder")?;
    let total = sent.load(Ordering::Relaxed);
    // Every acknowledged record reaches the engine.
    let t = Instant::now();
    let mut in_engine = 0.0;
    while t.elapsed() < Duration::from_secs(60) {
        in_engine = metric(port, "vigie_engine_records_total")?.unwrap_or(0.0);
        if in_engine >= total as f64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Stop vigie as an operator would (SIGTERM), so that it finishes cleanly and a heap
    // profiler wrapped around it (`--vigie` pointing at a script) writes its output; the
    // guard kills it if it has not stopped within 30 s.
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let t = Instant::now();
    while measure::rss_bytes(pid).is_some() && t.elapsed() < Duration::from_secs(30) {
        if vigie_guard.0.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Memory over the second half: least-squares slope, and the range.
    let half: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t_s >= spec.duration_s as f64 / 2.0)
        .collect();
    let slope = {
        let n = half.len() as f64;
        let mx = half.iter().map(|s| s.t_s).sum::<f64>() / n;
        let my = half.iter().map(|s| s.rss_mib).sum::<f64>() / n;
        let sxy: f64 = half.iter().map(|s| (s.t_s - mx) * (s.rss_mib - my)).sum();
        let sxx: f64 = half.iter().map(|s| (s.t_s - mx).powi(2)).sum();
        if sxx > 0.0 {
            sxy / sxx * 60.0
        } else {
            f64::NAN
        }
    };
    let max_first = samples
        .iter()
        .filter(|s| s.t_s < spec.duration_s as f64 / 2.0)
        .map(|s| s.rss_mib)
        .fold(0.0, f64::max);
    let max_second = half.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
    let min_second = half.iter().map(|s| s.rss_mib).fold(f64::INFINITY, f64::min);
    let mut md = format!(
        "## Soak: `vigie run` fed live for {} s at {} records/s\n\n{} records/s over HTTP (a POST of NDJSON every 100 ms) and {} over MQTT (one record per QoS 1 message to the embedded broker), incidents of the past two days in 100 zones, {}; epochs of 200 ms, store `flush_versions = {}`. Sampled every {} s: the engine's resident memory, the records acknowledged and taken in by the engine, the acknowledgement latency (publish → durable acknowledgement, per interval) and the engine's commit → indicator update latency (since start).\n\n**Memory over the second half: slope {slope:+.2} MiB/min, between {min_second:.1} and {max_second:.1} MiB (first half's peak {max_first:.1} MiB).** {total} records acknowledged, {in_engine:.0} taken in by the engine.\n\n| t s | RSS MiB (anonymous) | acknowledged | in the engine | HTTP ack p50 / p99 ms | MQTT ack p50 / p99 ms | commit → update p50 / p99 ms |\n|---|---|---|---|---|---|---|\n",
        spec.duration_s,
        spec.rate,
        http_rate,
        mqtt_rate,
        if spec.ids > 0 {
            format!("each upserting one of {} ids (vigie keeps every version of an id until it leaves the baseline window, so its state grows with the versions received)", spec.ids)
        } else {
            "without ids, so that vigie tallies them per zone and hour (a count and a severity sum): the state to hold is bounded (100 zones × 48 hours), and growing memory would be a leak".to_string()
        },
        spec.flush_versions,
        spec.sample_s
    );
    for s in &samples {
        md.push_str(&format!(
            "| {:.0} | {:.1} ({:.1}) | {} | {:.0} | {:.1} / {:.1} | {:.1} / {:.1} | {:.0} / {:.0} |\n",
            s.t_s,
            s.rss_mib,
            s.anon_mib,
            s.sent,
            s.engine_records,
            s.http_ack_p50_ms,
            s.http_ack_p99_ms,
            s.mqtt_ack_p50_ms,
            s.mqtt_ack_p99_ms,
            s.update_p50_ms,
            s.update_p99_ms
        ));
    }
    Ok((
        json!({"rate": spec.rate, "duration_s": spec.duration_s, "http_rate": http_rate, "mqtt_rate": mqtt_rate,
               "ids": spec.ids, "flush_versions": spec.flush_versions, "acknowledged": total, "in_engine": in_engine,
               "rss_slope_mib_per_min_second_half": slope, "rss_max_first_half_mib": max_first,
               "rss_max_second_half_mib": max_second, "samples": samples}),
        md,
    ))
}
