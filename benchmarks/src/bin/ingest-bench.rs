//! `ingest-bench`: sustained live ingest into `vigie run`, over HTTP and over MQTT, on
//! loopback, each beside a baseline measured in the same run.
//!
//! ```text
//! cargo build --release --workspace
//! target/release/ingest-bench --records 200000 --out benchmarks/results
//! ```
//!
//! It starts a Mosquitto broker (Debian's `mosquitto`, as the tests do) and `vigie run` with
//! an HTTP source and an MQTT topic, then:
//! - HTTP: posts NDJSON batches from several connections; records per second until the
//!   engine has taken them all in, and the latency of each request (publish → durable
//!   acknowledgement) in an hdrhistogram. Baseline: `GET /health` over the same connections
//!   (the cost of the HTTP round trip alone).
//! - MQTT: publishes one record per QoS 1 message; records per second until the engine has
//!   them. Baseline: the same messages published to a topic vigie does not read (the broker
//!   alone).
//! - The engine's own histogram of commit → indicator update (`/metrics`), so that publish →
//!   update is the acknowledgement latency plus that.

use anyhow::bail;
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vigie_benchmarks::live::{free_port, metric, Killed};
use vigie_benchmarks::{machine, vigie_binary};

#[derive(Parser)]
struct Cli {
    /// The vigie binary (default: beside this one).
    #[arg(long)]
    vigie: Option<PathBuf>,
    /// Records sent over each transport.
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// Records per HTTP request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Concurrent HTTP connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Timely workers of `vigie run` (`--workers`): worker 0 takes the records in, the others
    /// share the dataflow's work.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Folder for ingest.md and ingest.json.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn http(port: u16, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    vigie_benchmarks::live::http(port, method, path, "bench-token", body)
}

fn wait_records(port: u16, n: f64, limit: Duration) -> anyhow::Result<Instant> {
    let t = Instant::now();
    let mut said = Instant::now();
    loop {
        let got = metric(port, "vigie_engine_records_total")?.unwrap_or(0.0);
        if got >= n {
            return Ok(Instant::now());
        }
        if said.elapsed() > Duration::from_secs(5) {
            eprintln!("  the engine has {got} of {n} records");
            said = Instant::now();
        }
        if t.elapsed() > limit {
            bail!("the engine did not take in {n} records within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn record(i: usize, now_hour: i64) -> String {
    format!(
        "{{\"feed\":\"incident\",\"ts\":{},\"zone\":\"130{:02}\",\"severity\":{}}}",
        (now_hour - 1 - (i % 150) as i64) * 3600 + (i % 3600) as i64,
        1 + i % 16,
        1 + i % 5
    )
}

fn percentiles(h: &Histogram<u64>) -> Value {
    json!({"p50_ms": h.value_at_quantile(0.5) as f64 / 1000.0, "p99_ms": h.value_at_quantile(0.99) as f64 / 1000.0,
           "p999_ms": h.value_at_quantile(0.999) as f64 / 1000.0, "max_ms": h.max() as f64 / 1000.0, "count": h.len()})
}

/// Runs `f(connection, request index)` for `requests` requests over `connections` threads;
/// returns the per-request latency histogram and the wall time.
fn load(
    connections: usize,
    requests: usize,
    f: impl Fn(usize) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<(Histogram<u64>, Duration)> {
    let t = Instant::now();
    let hists: Vec<anyhow::Result<Histogram<u64>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..connections)
            .map(|c| {
                let f = &f;
                s.spawn(move || {
                    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
                    for r in (c..requests).step_by(connections) {
                        let t = Instant::now();
                        f(r)?;
                        h.saturating_record(t.elapsed().as_micros().max(1) as u64);
                    }
                    Ok(h)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut all = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for h in hists {
        all.add(h?)?;
    }
    Ok((all, t.elapsed()))
}

fn mqtt_publish(port: u16, topic: &str, payloads: &[String]) -> anyhow::Result<Duration> {
    use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet, QoS};
    let mut opts = MqttOptions::new(format!("bench-{}", free_port()), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(100);
    let (client, mut conn) = Client::new(opts, 1000);
    let n = payloads.len();
    let t = Instant::now();
    let acks = std::thread::spawn(move || {
        let mut acked = 0;
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acked += 1;
                    if acked == n {
                        return Ok(());
                    }
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => return Err(anyhow::anyhow!("mqtt: {e}")),
            }
        }
        bail!("the connection ended after {acked} of {n} acknowledgements")
    });
    for p in payloads {
        client.publish(topic, QoS::AtLeastOnce, false, p.clone().into_bytes())?;
    }
    acks.join().expect("ack thread")?;
    let _ = client.disconnect();
    Ok(t.elapsed())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let vigie = vigie_binary(cli.vigie)?;
    let mosquitto = Path::new("/usr/sbin/mosquitto");
    if !mosquitto.exists() {
        bail!("this benchmark needs Debian's mosquitto (apt-get install mosquitto)");
    }
    let tmp = tempfile::tempdir()?;
    let mport = free_port();
    std::fs::write(
        tmp.path().join("mosquitto.conf"),
        // Mosquitto drops QoS 1 messages queued for a subscriber beyond
        // `max_queued_messages` (1,000 by default): a broker fed faster than its subscriber
        // must be allowed to queue them all.
        format!("listener {mport} 127.0.0.1\nallow_anonymous true\nuser root\nmax_queued_messages 0\nmax_queued_bytes 0\n"),
    )?;
    let _broker = Killed(
        Command::new(mosquitto)
            .arg("-c")
            .arg(tmp.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let zones = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/zones/marseille.geojson");
    let config = tmp.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "zones = {:?}\n[ingest]\nepoch_ms = 200\n[ingest.http]\nmax_lines = 100000\n[[sources]]\nname = \"bench\"\nfeeds = [\"incident\"]\ntoken_env = \"BENCH_TOKEN\"\n[ingest.mqtt]\nurl = \"mqtt://127.0.0.1:{mport}\"\nclient_id = \"vigie-bench\"\ntopics = [{{ filter = \"bench/incident\", feed = \"incident\", qos = 1, source = \"bench\" }}]\n",
            zones.display().to_string()
        ),
    )?;
    let port = free_port();
    let _vigie = Killed(
        Command::new(&vigie)
            .args(["run", "--config"])
            .arg(&config)
            .arg("--data")
            .arg(tmp.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--workers", &cli.workers.to_string()])
            .env("BENCH_TOKEN", "bench-token")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let t = Instant::now();
    while http(port, "GET", "/health", "").map(|r| r.0).unwrap_or(0) != 200 {
        if t.elapsed() > Duration::from_secs(30) {
            bail!("vigie run did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let now_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64
        / 3600;
    let n = cli.records;
    let requests = n.div_ceil(cli.batch);

    eprintln!("HTTP baseline: {requests} GET /health");
    let (base_h, base_t) = load(cli.connections, requests, |_| {
        let (code, _) = http(port, "GET", "/health", "")?;
        if code != 200 {
            bail!("/health answered {code}");
        }
        Ok(())
    })?;
    eprintln!(
        "HTTP: {n} records in {requests} requests over {} connections",
        cli.connections
    );
    let bodies: Vec<String> = (0..requests)
        .map(|r| {
            (r * cli.batch..((r + 1) * cli.batch).min(n))
                .map(|i| record(i, now_hour) + "\n")
                .collect()
        })
        .collect();
    let start = Instant::now();
    let (http_h, http_t) = load(cli.connections, requests, |r| {
        let (code, body) = http(port, "POST", "/api/v1/records", &bodies[r])?;
        if code != 200 {
            bail!("POST answered {code}: {body}");
        }
        Ok(())
    })?;
    let done = wait_records(port, n as f64, Duration::from_secs(600))?;
    let http_rate = n as f64 / done.duration_since(start).as_secs_f64();

    eprintln!("MQTT baseline: {n} messages to a topic vigie does not read");
    let payloads: Vec<String> = (n..2 * n).map(|i| record(i, now_hour)).collect();
    let mqtt_base = mqtt_publish(mport, "elsewhere/none", &payloads)?;
    eprintln!("MQTT: {n} messages");
    let start = Instant::now();
    let _published = mqtt_publish(mport, "bench/incident", &payloads)?;
    let done = wait_records(port, 2.0 * n as f64, Duration::from_secs(600))?;
    let mqtt_rate = n as f64 / done.duration_since(start).as_secs_f64();
    let q = |name: &str| {
        metric(
            port,
            &format!("vigie_update_latency_seconds{{quantile=\"{name}\"}}"),
        )
    };
    let update = json!({"p50_ms": q("0.5")?.map(|v| v * 1000.0), "p99_ms": q("0.99")?.map(|v| v * 1000.0), "p999_ms": q("0.999")?.map(|v| v * 1000.0)});
    let report = json!({
        "machine": machine(), "workers": cli.workers, "records": n, "batch": cli.batch, "connections": cli.connections,
        "http": {"records_per_s": http_rate, "post_wall_s": http_t.as_secs_f64(), "ack_latency": percentiles(&http_h),
                 "baseline_health_requests_per_s": requests as f64 / base_t.as_secs_f64(), "baseline_latency": percentiles(&base_h),
                 "requests_per_s": requests as f64 / http_t.as_secs_f64()},
        "mqtt": {"records_per_s": mqtt_rate, "baseline_broker_only_per_s": n as f64 / mqtt_base.as_secs_f64()},
        "commit_to_update": update,
    });
    let h = &report["http"];
    let m = &report["mqtt"];
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let md = format!(
        "# vigie live ingest benchmark\n\nMachine: {} CPUs ({}). `vigie run` with {} timely worker(s), epochs of 200 ms, a Mosquitto broker, all on loopback; {n} records over each transport (incidents of the last 150 hours in 16 zones).\n\n| transport | records/s into the engine | baseline | ratio |\n|---|---|---|---|\n| HTTP, {} records a request, {} connections | {:.0} | `GET /health` {:.0} requests/s ({:.0} records/s at this batch) | {:.2} |\n| MQTT, one record a QoS 1 message | {:.0} | the broker alone, {:.0} messages/s | {:.2} |\n\n| latency, ms | p50 | p99 | p99.9 | max |\n|---|---|---|---|---|\n| HTTP publish → durable acknowledgement | {:.2} | {:.2} | {:.2} | {:.2} |\n| baseline: `GET /health` | {:.2} | {:.2} | {:.2} | {:.2} |\n| commit → indicator update (engine) | {:.1} | {:.1} | {:.1} | |\n\nPublish → indicator update is the acknowledgement latency plus the commit → update latency (the engine closes an epoch every 200 ms).\n",
        report["machine"]["cpus"], report["machine"]["cpu"].as_str().unwrap_or("?"), cli.workers,
        cli.batch, cli.connections, f(&h["records_per_s"]), f(&h["baseline_health_requests_per_s"]),
        f(&h["baseline_health_requests_per_s"]) * cli.batch as f64,
        f(&h["records_per_s"]) / (f(&h["baseline_health_requests_per_s"]) * cli.batch as f64),
        f(&m["records_per_s"]), f(&m["baseline_broker_only_per_s"]), f(&m["records_per_s"]) / f(&m["baseline_broker_only_per_s"]),
        f(&h["ack_latency"]["p50_ms"]), f(&h["ack_latency"]["p99_ms"]), f(&h["ack_latency"]["p999_ms"]), f(&h["ack_latency"]["max_ms"]),
        f(&h["baseline_latency"]["p50_ms"]), f(&h["baseline_latency"]["p99_ms"]), f(&h["baseline_latency"]["p999_ms"]), f(&h["baseline_latency"]["max_ms"]),
        f(&report["commit_to_update"]["p50_ms"]), f(&report["commit_to_update"]["p99_ms"]), f(&report["commit_to_update"]["p999_ms"]),
    );
    println!("{md}");
    if let Some(out) = cli.out {
        std::fs::create_dir_all(&out)?;
        std::fs::write(out.join("ingest.md"), &md)?;
        std::fs::write(
            out.join("ingest.json"),
            serde_json::to_string_pretty(&report)?,
        )?;
    }
    Ok(())
}
