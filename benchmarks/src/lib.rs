//! Benchmark workloads for vigie: a seeded generator of records in the `docs/model.md` format,
//! and the plain single-threaded loop that computes the same final figures without a dataflow,
//! the baseline every replay figure is compared with in the same run.
//!
//! [`peers`] holds the peers' workload (the same file through Pathway, Bytewax and vigie) and
//! its checks, [`measure`] the process-tree measurements; `bench-all` runs every benchmark.
//!
//! `replay-bench` (in `src/bin`) runs both on a generated million records and on the real files
//! of the repository's `data/`; `benches/hot_paths.rs` holds the criterion micro-benchmarks.

pub mod live;
pub mod measure;
pub mod peers;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::path::Path;
use vigie_config::Config;
use vigie_connectors::{InputSpec, Item, RecordReader};
use vigie_model::time::Calendar;
use vigie_queries::reference;

/// Zones of the generated workload: `z000`… like the peers' workload.
pub const ZONES: usize = 100;
/// 2026-10-01T00:00:00Z, the start of the generated span.
pub const T0: i64 = 1_790_812_800;
/// The generated span: thirty days.
pub const SPAN_S: i64 = 30 * 86_400;

/// Writes the generated workload's zone file and configuration into `dir`; returns the
/// configuration's path.
pub fn write_config(dir: &Path) -> std::io::Result<std::path::PathBuf> {
    let mut zones = String::from("{\"type\":\"FeatureCollection\",\"features\":[\n");
    for i in 0..ZONES {
        let sep = if i + 1 < ZONES { "," } else { "" };
        zones.push_str(&format!(
            "{{\"type\":\"Feature\",\"geometry\":null,\"properties\":{{\"id\":\"z{i:03}\",\"name\":\"zone {i}\",\"capacity\":{},\"scale\":{},\"min_agents\":1,\"max_agents\":{},\"default_density\":{}}}}}{sep}\n",
            5_000 + 250 * (i % 40),
            8 + i % 5,
            4 + i % 9,
            500 + 20 * (i % 30)
        ));
    }
    zones.push_str("]}\n");
    std::fs::write(dir.join("bench-zones.geojson"), zones)?;
    let path = dir.join("bench.toml");
    std::fs::write(&path, "# The generated benchmark workload: 100 zones, Europe/Paris, default model.\nzones = \"bench-zones.geojson\"\n")?;
    Ok(path)
}

/// Writes `n` records from `seed`: 75 % incidents (one in twenty with an id, some of those
/// cancelled), 17 % densities from three sensors per zone, 4 % events (upserted by id,
/// announced up to 30 days ahead), 2 % weather (observed up to 3 days back, forecast up to 10
/// days ahead), 2 % deployments (planned up to a week ahead); ~2.6 s apart over thirty days,
/// 5 % late by up to 300 s.
pub fn generate(seed: u64, n: usize, out: &mut impl Write) -> std::io::Result<()> {
    generate_over(seed, n, SPAN_S, out)
}

/// As [`generate`], over `span_s` seconds from [`T0`].
pub fn generate_over(
    seed: u64,
    n: usize,
    span_s: i64,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let kinds = [
        "concert",
        "sport",
        "festival",
        "market",
        "demonstration",
        "roadworks",
        "other",
    ];
    let step = span_s as f64 / n as f64;
    for i in 0..n {
        let mut ts = T0 + (i as f64 * step) as i64;
        if rng.gen_bool(0.05) {
            ts -= rng.gen_range(1..=300);
        }
        let zone = rng.gen_range(0..ZONES);
        let pick = rng.gen_range(0..100);
        if pick < 75 {
            let sev = rng.gen_range(1..=5);
            if rng.gen_bool(0.05) {
                let id = rng.gen_range(0..20_000);
                let status = if rng.gen_bool(0.1) {
                    ",\"status\":\"cancelled\""
                } else {
                    ""
                };
                writeln!(out, "{{\"feed\":\"incident\",\"ts\":{ts},\"id\":\"i{id}\"{status},\"zone\":\"z{zone:03}\",\"severity\":{sev},\"category\":\"theft\"}}")?;
            } else {
                writeln!(out, "{{\"feed\":\"incident\",\"ts\":{ts},\"zone\":\"z{zone:03}\",\"severity\":{sev},\"category\":\"theft\"}}")?;
            }
        } else if pick < 92 {
            let sensor = rng.gen_range(0..3);
            writeln!(out, "{{\"feed\":\"density\",\"ts\":{ts},\"zone\":\"z{zone:03}\",\"sensor\":\"s{sensor}\",\"people\":{}}}", rng.gen_range(0..8000))?;
        } else if pick < 96 {
            let start = ts + rng.gen_range(-86_400..30 * 86_400);
            let end = start + rng.gen_range(3_600..4 * 86_400);
            let kind = kinds[rng.gen_range(0..kinds.len())];
            writeln!(out, "{{\"feed\":\"event\",\"ts\":{ts},\"id\":\"e{}\",\"zone\":\"z{zone:03}\",\"start\":{start},\"end\":{end},\"attendance\":{},\"kind\":\"{kind}\"}}", rng.gen_range(0..3_000), rng.gen_range(0..20_000))?;
        } else if pick < 98 {
            let hour = (ts + rng.gen_range(-3 * 86_400..10 * 86_400)) / 3600 * 3600;
            let kind = if hour <= ts { "observed" } else { "forecast" };
            writeln!(out, "{{\"feed\":\"weather\",\"ts\":{hour},\"kind\":\"{kind}\",\"issued_at\":{ts},\"temperature_c\":{},\"wind_kmh\":{},\"precip_mm\":{}}}", rng.gen_range(-5..40), rng.gen_range(0..100), rng.gen_range(0..8))?;
        } else {
            let start = ts + rng.gen_range(-86_400..7 * 86_400);
            writeln!(out, "{{\"feed\":\"deployment\",\"ts\":{ts},\"id\":\"d{}\",\"zone\":\"z{zone:03}\",\"start\":{start},\"end\":{},\"agents\":{}}}", rng.gen_range(0..2_000), start + rng.gen_range(3_600..43_200), rng.gen_range(0..10))?;
        }
    }
    Ok(())
}

/// What the plain loop computed.
pub struct PlainRun {
    pub read: u64,
    pub accepted: u64,
    pub output: reference::Output,
}

/// The plain single-threaded loop: parse and validate every line with the same code as the
/// engine's sources, keep the records in a vector, and compute the final figures from scratch.
pub fn plain_loop(config: &Config, inputs: Vec<InputSpec>) -> PlainRun {
    let mut records = Vec::new();
    let mut read = 0;
    for item in RecordReader::new(config, inputs) {
        read += 1;
        if let Item::Record(r) = item {
            records.push(r);
        }
    }
    let output = reference::compute(
        &records,
        &config.zones,
        &config.model,
        &Calendar::new(config.timezone),
    );
    PlainRun {
        read,
        accepted: records.len() as u64,
        output,
    }
}

/// The machine a benchmark ran on: CPUs, CPU model, memory, OS.
pub fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines()
            .find(|l| l.starts_with("model name"))
            .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
    });
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(str::to_string));
    serde_json::json!({"cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0), "cpu": cpu, "memory": mem, "os": std::env::consts::OS})
}

/// The vigie binary to measure: `given`, or `vigie` beside the running benchmark; an error
/// that says how to build it when it is missing.
pub fn vigie_binary(given: Option<std::path::PathBuf>) -> anyhow::Result<std::path::PathBuf> {
    let vigie = match given {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("vigie"),
    };
    if !vigie.exists() {
        anyhow::bail!(
            "{} not found: run `cargo build --release --workspace` first",
            vigie.display()
        );
    }
    Ok(vigie)
}
