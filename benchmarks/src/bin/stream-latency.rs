//! `stream-latency`: ingest-to-stream latency of `vigie run`, measured from outside the process
//! as a wall would see it, idle and under background load.
//!
//! ```text
//! cargo build --release --workspace
//! target/release/stream-latency --loads 0,1000,10000 --out benchmarks/results
//! ```
//!
//! For each background load (records per second) it starts `vigie run` afresh on the peers'
//! 100 zones (`benchmarks/workloads/peers-zones.geojson`) with `epoch_ms` (20 by default), posts
//! a year of incident history (`--history-per-hour` incidents an hour, spread over the zones)
//! and waits until the engine has it, opens the live stream (`GET /api/v1/stream`, as the wall
//! does), starts the background load (incidents of the last 47 hours, posted every 100 ms), then
//! sends `--probes` probes one at a time: a probe posts one incident at a zone and hour that
//! nothing else touches (hours 48 to 167 before now, each used once) and times, from just before
//! the request is written to the moment an `indicators` event carrying that zone and hour is
//! read off the stream. A probe not seen within 5 s is lost. `reset` events are counted.
//! The baseline of the same run is the acknowledgement alone (the POST's round trip), so the
//! stream's share is the difference.

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigie_benchmarks::live::{free_port, http, metric, Killed};
use vigie_benchmarks::{machine, vigie_binary};
use vigie_model::Phase;

#[derive(Parser)]
struct Cli {
    /// The vigie binary (default: beside this one).
    #[arg(long)]
    vigie: Option<PathBuf>,
    /// Background loads to measure under, records per second.
    #[arg(long, value_delimiter = ',', default_value = "0,1000,10000")]
    loads: Vec<u64>,
    /// Probes per load.
    #[arg(long, default_value_t = 200)]
    probes: usize,
    /// The engine's epoch.
    #[arg(long, default_value_t = 20)]
    epoch_ms: u64,
    /// Incidents an hour in the year of history.
    #[arg(long, default_value_t = 20)]
    history_per_hour: usize,
    /// Folder for DATE-stream-latency.md and .json.
    #[arg(long)]
    out: Option<PathBuf>,
}

const TOKEN: &str = "stream-latency-token-0123456789";
const ZONES: usize = 100;

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

fn incident(zone: usize, ts: i64, severity: usize) -> String {
    format!("{{\"feed\":\"incident\",\"ts\":{ts},\"zone\":\"z{zone:03}\",\"severity\":{severity}}}")
}

fn post(port: u16, lines: &str) -> anyhow::Result<()> {
    let (code, body) = http(port, "POST", "/api/v1/records", TOKEN, lines)?;
    if code != 200 {
        bail!("POST /api/v1/records: {code} {body}");
    }
    Ok(())
}

/// What one load gave.
struct Measured {
    load: u64,
    sent_background: u64,
    seconds: f64,
    ack: Histogram<u64>,
    seen: Histogram<u64>,
    lost: usize,
    resets: u64,
    /// Time the engine's epochs spent in each of [`Phase::ALL`] while the probes ran (seconds),
    /// and the epochs with news meanwhile.
    phases: [f64; 3],
    epochs: f64,
}

/// The epochs with news so far and the time the epochs spent in each phase, in the order of
/// [`Phase::ALL`] (`vigie_engine_epoch_phase_seconds_total` on `/metrics`).
fn epoch_phases(port: u16) -> anyhow::Result<(f64, [f64; 3])> {
    let epochs = metric(port, "vigie_engine_epoch_seconds_count")?.unwrap_or(0.0);
    let mut spent = [0.0; 3];
    for (s, phase) in spent.iter_mut().zip(Phase::ALL) {
        let name = format!(
            "vigie_engine_epoch_phase_seconds_total{{phase=\"{}\"}}",
            phase.name()
        );
        *s = metric(port, &name)?.unwrap_or(0.0);
    }
    Ok((epochs, spent))
}

/// The stream's reader: rows seen, by (zone, hour start in seconds), each with the instant it
/// was read; `reset` events counted.
struct Stream {
    seen: Arc<Mutex<HashMap<(String, i64), Instant>>>,
    resets: Arc<AtomicU64>,
}

/// What the probe reads of an `indicators` event.
#[derive(serde::Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    rows: Vec<Row<'a>>,
}

#[derive(serde::Deserialize)]
struct Row<'a> {
    #[serde(borrow)]
    zone: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    hour: std::borrow::Cow<'a, str>,
}

fn open_stream(port: u16, stop: Arc<AtomicBool>) -> anyhow::Result<Stream> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    // HTTP/1.0: the answer is not chunked, its end is the connection's.
    write!(
        s,
        "GET /api/v1/stream HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    )?;
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let resets = Arc::new(AtomicU64::new(0));
    let (seen_w, resets_w) = (seen.clone(), resets.clone());
    std::thread::spawn(move || {
        let mut r = BufReader::with_capacity(1 << 20, s);
        let mut event = String::new();
        let mut line = String::new();
        while !stop.load(Ordering::Relaxed) {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(_) => return,
            }
            let at = Instant::now();
            let l = line.trim_end();
            if let Some(e) = l.strip_prefix("event:") {
                event = e.trim().to_string();
                if event == "reset" {
                    resets_w.fetch_add(1, Ordering::Relaxed);
                }
            } else if let Some(data) = l.strip_prefix("data:") {
                if event != "indicators" {
                    continue;
                }
                // Only the rows' zone and hour are read (the other fields skipped, not built
                // into values): the time taken here delays the lines after, and is the
                // client's, not vigie's.
                let Ok(ev) = serde_json::from_str::<Event>(data.trim()) else {
                    continue;
                };
                let mut seen = seen_w.lock().unwrap_or_else(|e| e.into_inner());
                for row in ev.rows {
                    if let Some(us) = vigie_model::time::parse_ts_str(&row.hour) {
                        seen.entry((row.zone.to_string(), us / 1_000_000))
                            .or_insert(at);
                    }
                }
            }
        }
    });
    Ok(Stream { seen, resets })
}

fn measure(cli: &Cli, vigie: &std::path::Path, load: u64) -> anyhow::Result<Measured> {
    let dir = tempfile::tempdir()?;
    let zones = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("workloads/peers-zones.geojson")
        .canonicalize()?;
    let config = dir.path().join("vigie.toml");
    std::fs::write(
        &config,
        format!(
            "timezone = \"UTC\"\nzones = {:?}\n[ingest]\nepoch_ms = {}\n\
             [[sources]]\nname = \"bench\"\nfeeds = [\"incident\"]\ntoken_env = \"STREAM_LATENCY_TOKEN\"\n",
            zones.display().to_string(),
            cli.epoch_ms
        ),
    )?;
    let port = free_port();
    let _vigie = Killed(
        Command::new(vigie)
            .args(["run", "--config"])
            .arg(&config)
            .arg("--data")
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--mqtt-listen", "127.0.0.1:0"])
            .env("STREAM_LATENCY_TOKEN", TOKEN)
            .env("VIGIE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting vigie run")?,
    );
    let started = Instant::now();
    while http(port, "GET", "/health", "", "").is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("vigie run did not answer within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // A year of history, up to the hour before the background's.
    let now_hour = now_s() / 3600;
    let hours = 365 * 24;
    let mut n = 0u64;
    let mut body = String::new();
    for h in 0..hours {
        let hour = now_hour - hours + h;
        for k in 0..cli.history_per_hour {
            let zone = (h as usize * 7 + k * 13) % ZONES;
            body.push_str(&incident(
                zone,
                hour * 3600 + (k as i64 * 97) % 3600,
                1 + k % 5,
            ));
            body.push('\n');
            n += 1;
            if n.is_multiple_of(10_000) {
                post(port, &body)?;
                body.clear();
            }
        }
    }
    if !body.is_empty() {
        post(port, &body)?;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while metric(port, "vigie_engine_records_total")?.unwrap_or(0.0) < n as f64 {
        if Instant::now() > deadline {
            bail!("the history did not reach the engine within 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stream = open_stream(port, stop.clone())?;
    std::thread::sleep(Duration::from_millis(500));
    // The background: every 100 ms, load/10 incidents of the last 47 hours.
    let sent = Arc::new(AtomicU64::new(0));
    let background = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let per_tick = (load / 10) as usize;
            let mut i = 0usize;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) && per_tick > 0 {
                let mut body = String::with_capacity(per_tick * 80);
                for _ in 0..per_tick {
                    let ts = now_s() - 3600 * 47 + (i as i64 * 7919) % (3600 * 47);
                    body.push_str(&incident(i % ZONES, ts, 1 + i % 5));
                    body.push('\n');
                    i += 1;
                }
                if post(port, &body).is_ok() {
                    sent.fetch_add(per_tick as u64, Ordering::Relaxed);
                }
                next += Duration::from_millis(100);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let bg_started = (Instant::now(), sent.load(Ordering::Relaxed));
    let mut ack = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut seen_h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut lost = 0;
    let resets_before = stream.resets.load(Ordering::Relaxed);
    let phases_before = epoch_phases(port)?;
    for p in 0..cli.probes {
        let zone = p % ZONES;
        let hour = now_hour - 48 - (p / ZONES) as i64;
        let key = (format!("z{zone:03}"), hour * 3600);
        stream
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        let t0 = Instant::now();
        post(port, &incident(zone, hour * 3600 + 1800, 3))?;
        ack.record(t0.elapsed().as_micros().max(1) as u64)?;
        let limit = t0 + Duration::from_secs(5);
        loop {
            let got = stream
                .seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .copied();
            if let Some(at) = got.filter(|at| *at >= t0) {
                seen_h.record(at.duration_since(t0).as_micros().max(1) as u64)?;
                break;
            }
            if Instant::now() > limit {
                lost += 1;
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    let seconds = bg_started.0.elapsed().as_secs_f64();
    let sent_background = sent.load(Ordering::Relaxed) - bg_started.1;
    let phases_after = epoch_phases(port)?;
    stop.store(true, Ordering::Relaxed);
    let _ = background.join();
    Ok(Measured {
        load,
        sent_background,
        seconds,
        ack,
        seen: seen_h,
        lost,
        resets: stream.resets.load(Ordering::Relaxed) - resets_before,
        phases: std::array::from_fn(|i| phases_after.1[i] - phases_before.1[i]),
        epochs: phases_after.0 - phases_before.0,
    })
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let vigie = vigie_binary(cli.vigie.clone())?;
    let mut rows = Vec::new();
    let mut table = String::from(
        "| background load | achieved | acknowledged (POST round trip) p50 / p99 | on the stream p50 / p99 / max | probes lost | resets | engine thread busy: dataflow / sinks / publish | epochs with news |\n|---|---|---|---|---|---|---|---|\n",
    );
    for &load in &cli.loads {
        eprintln!("stream-latency: {load} records/s of background");
        let m = measure(&cli, &vigie, load)?;
        let achieved = m.sent_background as f64 / m.seconds;
        table.push_str(&format!(
            "| {} rec/s | {:.0} rec/s | {:.2} / {:.2} ms | {:.2} / {:.2} / {:.2} ms | {} of {} | {} | {:.1} / {:.1} / {:.1} % | {:.1}/s |\n",
            m.load,
            achieved,
            ms(&m.ack, 0.5),
            ms(&m.ack, 0.99),
            ms(&m.seen, 0.5),
            ms(&m.seen, 0.99),
            m.seen.max() as f64 / 1000.0,
            m.lost,
            cli.probes,
            m.resets,
            m.phases[0] / m.seconds * 100.0,
            m.phases[1] / m.seconds * 100.0,
            m.phases[2] / m.seconds * 100.0,
            m.epochs / m.seconds,
        ));
        rows.push(serde_json::json!({
            "load": m.load, "achieved": achieved,
            "ack_ms": {"p50": ms(&m.ack, 0.5), "p99": ms(&m.ack, 0.99)},
            "stream_ms": {"p50": ms(&m.seen, 0.5), "p99": ms(&m.seen, 0.99), "max": m.seen.max() as f64 / 1000.0},
            "lost": m.lost, "probes": cli.probes, "resets": m.resets,
            "phase_seconds": Phase::ALL.iter().zip(m.phases).map(|(p, s)| (p.name().to_string(), serde_json::json!(s))).collect::<serde_json::Map<_, _>>(),
            "epochs_with_news": m.epochs, "seconds": m.seconds,
        }));
    }
    let report = format!(
        "# Ingest-to-stream latency of `vigie run`, from outside\n\n`stream-latency --loads {} --probes {} --epoch-ms {} --history-per-hour {}` (benchmarks/src/bin/stream-latency.rs): 100 zones, a year of history, one probe at a time; latency from just before the probe's POST is written to the `indicators` event carrying its zone and hour read off `GET /api/v1/stream`; the engine thread's time by phase while the probes ran, from `/metrics` (`vigie_engine_epoch_phase_seconds_total`, as a share of the wall time). Machine: {}.\n\n{table}",
        cli.loads.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(","),
        cli.probes,
        cli.epoch_ms,
        cli.history_per_hour,
        machine()
    );
    println!("{report}");
    if let Some(out) = &cli.out {
        std::fs::create_dir_all(out)?;
        let date = &vigie_model::time::format_ts(now_s() * 1_000_000)[..10];
        std::fs::write(out.join(format!("{date}-stream-latency.md")), &report)?;
        std::fs::write(
            out.join(format!("{date}-stream-latency.json")),
            serde_json::to_string_pretty(&serde_json::json!({"machine": machine(), "runs": rows}))?,
        )?;
    }
    Ok(())
}
