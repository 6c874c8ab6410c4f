//! `store-bench`: the embedded store's size, write rate and query latency, each beside a
//! baseline measured in the same run.
//!
//! ```text
//! cargo build --release --workspace
//! target/release/store-bench --out benchmarks/results
//! ```
//!
//! 1. Raw series: the Melbourne pedestrian counts (one series per sensor, hourly) written in
//!    batches, each an fsynced revision. Bytes per point on disk against the 16 bytes of a raw
//!    (timestamp, float) pair and the 1.37 the Gorilla paper reports; write rate against a
//!    plain append of the same samples (20 bytes each) with one fsync per batch.
//! 2. Indicator series: `vigie replay --store` on the real Vancouver and Melbourne files, then
//!    compaction; bytes per version with the whole revision history, and per point once the
//!    superseded versions are pruned.
//! 3. Queries on the Vancouver indicator store: a 30-day hourly range of one zone's risk score,
//!    and the latest figures of every zone, as hdrhistogram percentiles; the same range read
//!    from a plain in-memory vector is the baseline.

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use vigie_benchmarks::{machine, vigie_binary};
use vigie_config::Config;
use vigie_connectors::{InputSpec, Item, RecordReader};
use vigie_model::{Body, Point};
use vigie_queries::read::{self, HOUR_MS};
use vigie_store::{Agg, Options, Store};

#[derive(Parser)]
struct Cli {
    /// The vigie binary (default: beside this one).
    #[arg(long)]
    vigie: Option<PathBuf>,
    /// Samples per write (one fsynced revision each) for the raw series.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Queries timed for each kind.
    #[arg(long, default_value_t = 2_000)]
    queries: usize,
    /// Folder for store.md and store.json.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        total += if e.file_type()?.is_dir() {
            dir_bytes(&e.path())?
        } else {
            e.metadata()?.len()
        };
    }
    Ok(total)
}

/// The Melbourne counts as points: measurement `pedestrians`, tag `sensor`, field `count`.
fn melbourne_points() -> anyhow::Result<Vec<Point>> {
    let config = Config::from_file(&repo().join("config/melbourne.toml"))?;
    let spec = InputSpec::parse(
        &format!(
            "melbourne_counts={}",
            repo()
                .join("data/melbourne_pedestrian_counts_hourly_2013-12_2014-02.zip")
                .display()
        ),
        &config,
    )
    .map_err(anyhow::Error::msg)?;
    let mut points = Vec::new();
    for item in RecordReader::shared(&config, vec![spec], 0, 1) {
        if let Item::Record(r) = item {
            if let Some(Body::Density { sensor, people, .. }) = &r.body {
                points.push(Point::new(
                    "pedestrians",
                    vec![("sensor".into(), sensor.clone().unwrap_or_default())],
                    vec![("count".into(), people.0)],
                    r.ts / 1000,
                ));
            }
        }
    }
    // As a live feed would bring them: in time order.
    points.sort_by_key(|p| p.ts_ms);
    Ok(points)
}

fn raw_series(batch: usize) -> anyhow::Result<Value> {
    let points = melbourne_points()?;
    let n = points.len();
    eprintln!("raw series: {n} Melbourne counts, batches of {batch}");
    let tmp = tempfile::tempdir()?;
    // Baseline: the same samples appended as 20-byte records, one fsync per batch.
    let t = Instant::now();
    {
        let mut f = std::fs::File::create(tmp.path().join("plain.bin"))?;
        let mut buf = Vec::with_capacity(batch * 20);
        for chunk in points.chunks(batch) {
            buf.clear();
            for (i, p) in chunk.iter().enumerate() {
                buf.extend_from_slice(&(i as u32).to_be_bytes());
                buf.extend_from_slice(&p.ts_ms.to_be_bytes());
                buf.extend_from_slice(&p.fields[0].1.to_bits().to_be_bytes());
            }
            f.write_all(&buf)?;
            f.sync_data()?;
        }
    }
    let plain_s = t.elapsed().as_secs_f64();
    let dir = tmp.path().join("store");
    let (mut store, _) = Store::open(&dir, Options::default())?;
    let t = Instant::now();
    for chunk in points.chunks(batch) {
        let known_at = chunk.last().map_or(0, |p| p.ts_ms);
        store.write_points(chunk, known_at)?;
    }
    let write_s = t.elapsed().as_secs_f64();
    store.flush()?;
    store.compact(i64::MAX)?;
    let st = store.stats()?;
    let bytes = st.block_bytes as f64 / st.block_versions as f64;
    Ok(json!({
        "points": n, "series": st.series, "batch": batch,
        "write_points_per_s": n as f64 / write_s,
        "plain_append_points_per_s": n as f64 / plain_s,
        "block_bytes": st.block_bytes, "versions": st.block_versions,
        "bytes_per_point": bytes,
        "ratio_to_raw_16_bytes": bytes / 16.0,
        "ratio_to_gorilla_paper_1_37": bytes / 1.37,
    }))
}

fn indicator_store(
    vigie: &Path,
    name: &str,
    cfg: &str,
    input: &str,
    dir: &Path,
) -> anyhow::Result<Value> {
    let (m, f) = input.split_once('=').expect("MAPPING=FILE");
    let input = format!("{m}={}", repo().join("data").join(f).display());
    eprintln!("indicator series: replaying {name}");
    let t = Instant::now();
    let out = Command::new(vigie)
        .args(["replay", "--config"])
        .arg(repo().join("config").join(cfg))
        .args(["--input", &input, "--batch", "20000", "--store"])
        .arg(dir)
        .output()?;
    if !out.status.success() {
        bail!(
            "vigie replay failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let replay_s = t.elapsed().as_secs_f64();
    let (mut store, _) = Store::open(dir, Options::default())?;
    store.compact(i64::MAX)?;
    let all = store.stats()?;
    let revisions = store.last_revision();
    // The latest versions alone: a copy compacted with no revision history kept.
    let copy = dir.with_extension("latest");
    let status = Command::new("cp").arg("-r").arg(dir).arg(&copy).status()?;
    if !status.success() {
        bail!("cp failed");
    }
    let opts = Options {
        keep_revisions_ms: Some(0),
        ..Options::default()
    };
    let (mut latest, _) = Store::open(&copy, opts)?;
    latest.compact(i64::MAX)?;
    let one = latest.stats()?;
    Ok(json!({
        "workload": name, "replay_s": replay_s, "series": all.series,
        "versions": all.block_versions, "bytes": all.block_bytes,
        "bytes_per_version": all.block_bytes as f64 / all.block_versions as f64,
        "points": one.block_versions, "bytes_latest_only": one.block_bytes,
        "bytes_per_point_latest_only": one.block_bytes as f64 / one.block_versions as f64,
        "folder_bytes": dir_bytes(dir)?, "last_revision": revisions,
    }))
}

fn percentiles(h: &Histogram<u64>) -> Value {
    json!({
        "p50_us": h.value_at_quantile(0.5), "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999), "max_us": h.max(), "count": h.len(),
    })
}

fn queries(dir: &Path, n: usize) -> anyhow::Result<Value> {
    let (store, _) = Store::open(dir, Options::default())?;
    let zones = read::zones(&store);
    let clock = read::clock_ms(&store).context("an empty store")?;
    let mut rng = StdRng::seed_from_u64(7);
    let span = 30 * 24 * HOUR_MS;
    let new_hist = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    // Baseline: each zone's risk score as a plain sorted vector in memory.
    let vectors: Vec<Vec<(i64, f64)>> = zones
        .iter()
        .map(|z| {
            store.range(
                &read::indicator_key(z, "risk_score"),
                i64::MIN,
                i64::MAX,
                None,
            )
        })
        .collect::<Result<_, _>>()?;
    let first = vectors
        .iter()
        .filter_map(|v| v.first())
        .map(|p| p.0)
        .min()
        .unwrap_or(clock);
    let last = vectors
        .iter()
        .filter_map(|v| v.last())
        .map(|p| p.0)
        .max()
        .unwrap_or(clock);
    let (mut range_h, mut plain_h, mut latest_h) = (new_hist(), new_hist(), new_hist());
    let mut checksum = 0.0;
    for _ in 0..n {
        let zi = rng.gen_range(0..zones.len());
        let start = first + rng.gen_range(0..=((last - first - span).max(0) / HOUR_MS)) * HOUR_MS;
        let t = Instant::now();
        let got = read::range(
            &store,
            &zones[zi],
            "risk_score",
            start,
            start + span,
            HOUR_MS,
            Agg::Mean,
            None,
        )?;
        range_h.saturating_record(t.elapsed().as_micros() as u64);
        let t = Instant::now();
        let v = &vectors[zi];
        let a = v.partition_point(|p| p.0 < start);
        let b = v.partition_point(|p| p.0 < start + span);
        let plain: Vec<(i64, f64)> = v[a..b].to_vec();
        plain_h.saturating_record(t.elapsed().as_micros().max(1) as u64);
        if got != plain {
            bail!(
                "the range query and the plain vector differ for zone {}",
                zones[zi]
            );
        }
        checksum += got.len() as f64;
    }
    for _ in 0..n / 10 {
        let t = Instant::now();
        let all = read::latest_per_zone(&store, clock, None)?;
        latest_h.saturating_record(t.elapsed().as_micros() as u64);
        if all.len() != zones.len() {
            bail!("latest: {} zones of {}", all.len(), zones.len());
        }
    }
    Ok(json!({
        "zones": zones.len(), "range_points_read": checksum,
        "range_30_days_hourly": percentiles(&range_h),
        "plain_vector_range": percentiles(&plain_h),
        "latest_all_zones": percentiles(&latest_h),
    }))
}

fn render(r: &Value) -> String {
    let m = &r["machine"];
    let raw = &r["raw"];
    let mut s = format!(
        "# vigie store benchmark\n\nMachine: {} CPUs ({}). Ratios are against baselines measured in the same run.\n\n",
        m["cpus"], m["cpu"].as_str().unwrap_or("?")
    );
    s += &format!(
        "## Raw series: Melbourne pedestrian counts\n\n{} points in {} series (sensors, hourly), written in fsynced batches of {}.\n\n| | value | ratio |\n|---|---|---|\n| bytes per point | {:.3} | {:.3} of a raw 16-byte pair; {:.2} of Gorilla's 1.37 |\n| points written per second | {:.0} | {:.2} of a plain append + fsync ({:.0}/s) |\n\n",
        raw["points"], raw["series"], raw["batch"],
        raw["bytes_per_point"].as_f64().unwrap_or(0.0),
        raw["ratio_to_raw_16_bytes"].as_f64().unwrap_or(0.0),
        raw["ratio_to_gorilla_paper_1_37"].as_f64().unwrap_or(0.0),
        raw["write_points_per_s"].as_f64().unwrap_or(0.0),
        raw["write_points_per_s"].as_f64().unwrap_or(0.0) / raw["plain_append_points_per_s"].as_f64().unwrap_or(1.0),
        raw["plain_append_points_per_s"].as_f64().unwrap_or(0.0),
    );
    s += "## Indicator series of real replays (`vigie replay --batch 20000 --store`)\n\n| replay | series | versions (all revisions) | bytes per version | points (latest only) | bytes per point (latest only) |\n|---|---|---|---|---|---|\n";
    for w in r["indicators"].as_array().into_iter().flatten() {
        s += &format!(
            "| {} | {} | {} | {:.3} | {} | {:.3} |\n",
            w["workload"].as_str().unwrap_or("?"),
            w["series"],
            w["versions"],
            w["bytes_per_version"].as_f64().unwrap_or(0.0),
            w["points"],
            w["bytes_per_point_latest_only"].as_f64().unwrap_or(0.0)
        );
    }
    let q = &r["queries"];
    let row = |name: &str, v: &Value| {
        format!(
            "| {name} | {} | {} | {} | {} |\n",
            v["p50_us"], v["p99_us"], v["p999_us"], v["max_us"]
        )
    };
    s += &format!(
        "\n## Queries on the Vancouver indicator store ({} zones)\n\n| query | p50 µs | p99 µs | p99.9 µs | max µs |\n|---|---|---|---|---|\n",
        q["zones"]
    );
    s += &row(
        "30-day hourly range of one zone's risk score (blocks + head)",
        &q["range_30_days_hourly"],
    );
    s += &row(
        "baseline: the same range from a sorted vector in memory",
        &q["plain_vector_range"],
    );
    s += &row(
        "latest figures of every zone (14 fields each)",
        &q["latest_all_zones"],
    );
    s
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let vigie = vigie_binary(cli.vigie)?;
    let tmp = tempfile::tempdir()?;
    let raw = raw_series(cli.batch)?;
    let vancouver = tmp.path().join("vancouver");
    let indicators = vec![
        indicator_store(
            &vigie,
            "Vancouver crime 2020",
            "vancouver.toml",
            "vancouver_crime=vancouver_vpd_crime_2020.zip",
            &vancouver,
        )?,
        indicator_store(
            &vigie,
            "Melbourne pedestrians 2013-12..2014-02",
            "melbourne.toml",
            "melbourne_counts=melbourne_pedestrian_counts_hourly_2013-12_2014-02.zip",
            &tmp.path().join("melbourne"),
        )?,
    ];
    let queries = queries(&vancouver, cli.queries)?;
    let report =
        json!({"machine": machine(), "raw": raw, "indicators": indicators, "queries": queries});
    let md = render(&report);
    println!("{md}");
    if let Some(out) = cli.out {
        std::fs::create_dir_all(&out)?;
        std::fs::write(out.join("store.md"), &md)?;
        std::fs::write(
            out.join("store.json"),
            serde_json::to_string_pretty(&report)?,
        )?;
    }
    Ok(())
}
