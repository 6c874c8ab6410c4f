//! `vigie run --demo`: the bundled real sample replayed live into the running engine.
//!
//! The engine starts as usual (the embedded Vancouver configuration unless `--config`, the
//! embedded MQTT broker unless `[ingest.mqtt]`, a new data folder in the system's temporary
//! folder unless `--data`); then a feeder thread plays the 2,720 Vancouver Police Department
//! incidents of December 2020 (`config/samples/`) into it, through the same doors as any
//! live source:
//!
//! - **Times.** Records are shifted by a whole number of hours so that the sample's last hour
//!   becomes the current hour: live, the engine's clock is the wall clock's hour, and its
//!   horizon is the past week and the next 30 days, so the shifted sample falls inside it.
//! - **Pace.** The records older than the horizon (the sample's first three weeks or so,
//!   which only feed the baseline) are sent at once; the last week is then played at
//!   `--demo-speed` sample seconds per wall second: at the default 3600, one sample hour a
//!   second, the week takes under three minutes. The sample is played once.
//! - **Doors.** Every other record goes over MQTT (QoS 1, a rumqttc client, to
//!   `vigie/incident/<zone>` on the embedded broker, the zone taken from the topic), the
//!   others over HTTP (`POST /api/v1/records` with the token of a `demo` source the demo
//!   configures for itself, kept in `DATA/demo-token`). With an external broker configured,
//!   everything goes over HTTP.
//! - **Idempotent.** Each record carries an id (`vpd-<line>`), so running the demo again on
//!   the same `--data` upserts the same incidents instead of counting them twice.
//! - **What it prints.** Every few seconds: the sample time reached, records sent and
//!   accepted by each door, and the busiest zone of the past sample day with its figures now.

use super::broker;
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vigie_config::{Config, SourceConfig};
use vigie_connectors::ingest::MqttCounters;
use vigie_connectors::{InputSpec, Item, RecordReader};
use vigie_model::clock::wall_hour;
use vigie_model::{Body, Feed};
use vigie_server::Board;

/// The name of the HTTP source the demo adds.
pub const SOURCE: &str = "demo";
const HOUR_US: i64 = 3_600_000_000;
/// Horizon of the engine into the past (hours): `docs/model.md`.
const PAST_HOURS: i64 = 168;
/// How often the feeder wakes to send what is due, and how often it prints.
const TICK: Duration = Duration::from_millis(100);
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// Records per HTTP request.
const HTTP_BATCH: usize = 500;

/// A new data folder for a demo: `<temp>/vigie-demo-<pid>`.
pub fn data_dir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("vigie-demo-{}", std::process::id()));
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}

/// Adds the `demo` HTTP source (every feed), its token in a new file `DATA/demo-token`
/// (owner-only, in the data folder `dir`); returns the token.
pub fn add_source(config: &mut Config, dir: &Path) -> anyhow::Result<String> {
    if config.sources.iter().any(|s| s.name == SOURCE) {
        bail!("--demo adds a source named `{SOURCE}`: the configuration has one already");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let token = broker::random_token("demo-");
    let path = dir.join("demo-token");
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?
    };
    f.write_all(token.as_bytes())?;
    config.sources.push(SourceConfig {
        name: SOURCE.into(),
        feeds: Feed::ALL.iter().map(|f| f.name().to_string()).collect(),
        token_env: None,
        token_file: Some(path),
        mqtt_username: None,
        mqtt_password_env: None,
        mqtt_password_file: None,
    });
    Ok(token)
}

/// What the feeder needs of the running engine.
pub struct Demo {
    pub config: Arc<Config>,
    pub http: SocketAddr,
    pub token: String,
    /// The embedded broker; `None` with an external one (then HTTP only).
    pub mqtt: Option<SocketAddr>,
    pub speed: f64,
    pub counters: Arc<MqttCounters>,
    /// The server's board: the latest rows, read for the status line.
    pub board: Arc<Board>,
    /// The shutdown signal's flag: the feeder stops when it is set.
    pub stopping: Arc<AtomicBool>,
}

/// One sample record, shifted: time (µs), zone id, its NDJSON line without and with the zone.
struct Shifted {
    ts: i64,
    zone: String,
    bare: String,
    full: String,
}

/// The sample's incidents, sorted by time, shifted so the last hour is the current hour.
fn shifted_sample(now_hour: i64) -> anyhow::Result<Vec<Shifted>> {
    let sample = Config::embedded_sample();
    let mut records = Vec::new();
    for item in RecordReader::new(&sample, vec![InputSpec::embedded_sample()]) {
        match item {
            Item::Record(r) => records.push(r),
            Item::Rejected(_) => {}
            Item::Failed(e) => bail!("reading the sample: {}", e.message),
        }
    }
    let last_hour = records
        .iter()
        .map(|r| r.ts.div_euclid(HOUR_US))
        .max()
        .context("the sample is empty")?;
    let shift = (now_hour - last_hour) * HOUR_US;
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let Some(Body::Incident { zone, severity }) = r.body else {
            continue;
        };
        let ts = r.ts + shift;
        let zone = sample.zones.get(zone).id.clone();
        let line = r.seq & ((1 << 40) - 1);
        let head = format!(
            "{{\"feed\":\"incident\",\"id\":\"vpd-{line}\",\"ts\":{}",
            ts.div_euclid(1_000_000)
        );
        let tail = format!(",\"severity\":{severity}}}");
        out.push(Shifted {
            bare: format!("{head}{tail}"),
            full: format!("{head},\"zone\":{}{tail}", serde_json::json!(zone)),
            ts,
            zone,
        });
    }
    out.sort_by_key(|s| s.ts);
    Ok(out)
}

/// Starts the feeder thread; it ends once `stopping` is set.
pub fn start(demo: Demo) -> anyhow::Result<JoinHandle<()>> {
    if !(demo.speed.is_finite() && demo.speed > 0.0) {
        bail!("--demo-speed must be a positive number");
    }
    let records = shifted_sample(wall_hour())?;
    std::thread::Builder::new()
        .name("demo".into())
        .spawn(move || {
            if let Err(e) = feed(&demo, records) {
                eprintln!("vigie demo: stopped: {e:#}");
            }
        })
        .context("starting the demo feeder")
}

fn show(ts_us: i64) -> String {
    chrono::DateTime::from_timestamp(ts_us.div_euclid(1_000_000), 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// The MQTT side: a rumqttc client whose event loop runs in a thread of its own.
struct Publisher {
    client: rumqttc::Client,
    thread: JoinHandle<()>,
}

impl Publisher {
    fn connect(addr: SocketAddr, stopping: Arc<AtomicBool>) -> Publisher {
        let mut o = rumqttc::MqttOptions::new(
            format!("vigie-demo-{}", std::process::id()),
            addr.ip().to_string(),
            addr.port(),
        );
        o.set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(broker::MAX_PAYLOAD + 1024, 64 << 10);
        let (client, mut connection) = rumqttc::Client::new(o, 1024);
        let thread = std::thread::spawn(move || {
            for event in connection.iter() {
                if event.is_err() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        });
        Publisher { client, thread }
    }
}

/// Counts of the demo's two doors.
#[derive(Default)]
struct Sent {
    mqtt: AtomicU64,
    http: AtomicU64,
    http_accepted: AtomicU64,
}

fn feed(demo: &Demo, records: Vec<Shifted>) -> anyhow::Result<()> {
    // Wait for the endpoint, and for vigie's subscription on the embedded broker (a message
    // published before it would find no subscriber).
    let ready = Instant::now();
    while http(demo.http, "GET", "/health", None, "").is_none_or(|(c, _)| c != 200) {
        if demo.stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        if ready.elapsed() > Duration::from_secs(30) {
            bail!("the HTTP endpoint did not answer");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if demo.mqtt.is_some() {
        while demo.counters.snapshot().subscriptions_acked == 0 {
            if demo.stopping.load(Ordering::SeqCst) {
                return Ok(());
            }
            if ready.elapsed() > Duration::from_secs(30) {
                bail!("vigie's MQTT source did not subscribe to the embedded broker");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let publisher = demo
        .mqtt
        .map(|a| Publisher::connect(a, demo.stopping.clone()));
    let now_hour = wall_hour();
    let horizon_start = (now_hour - PAST_HOURS + 1) * HOUR_US;
    let warm = records.iter().take_while(|r| r.ts < horizon_start).count();
    let live_start = records.get(warm).map_or(horizon_start, |r| r.ts);
    let live_end = (now_hour + 1) * HOUR_US;
    eprintln!(
        "vigie demo: {} Vancouver incidents (Dec 2020) shifted to end at the current hour; {} before the \
         horizon sent at once, the last {:.0} h played at {}× (about {:.0} s), half over MQTT, half over HTTP",
        records.len(),
        warm,
        (live_end - live_start) as f64 / HOUR_US as f64,
        demo.speed,
        (live_end - live_start) as f64 / 1e6 / demo.speed
    );
    eprintln!(
        "vigie demo: watch http://{}/metrics; after Ctrl-C, read the store with `vigie query --store <the store above> latest`",
        demo.http
    );
    let sent = Sent::default();
    let mut next = 0;
    let started = Instant::now();
    let mut last_status = Instant::now();
    let mut done = false;
    loop {
        if demo.stopping.load(Ordering::SeqCst) {
            break;
        }
        // Sample time reached: the warm-up at once, then the horizon at the demo's pace.
        let sim = live_start + (started.elapsed().as_secs_f64() * demo.speed * 1e6) as i64;
        let due = if next < warm {
            warm
        } else {
            next + records[next..].iter().take_while(|r| r.ts <= sim).count()
        };
        if due > next {
            send(demo, publisher.as_ref(), &records, next, due, &sent);
            next = due;
        }
        if last_status.elapsed() >= STATUS_EVERY || (!done && next == records.len()) {
            status(demo, &sent, sim.min(live_end));
            last_status = Instant::now();
        }
        if !done && next == records.len() {
            done = true;
            eprintln!("vigie demo: the sample is played; vigie keeps running until Ctrl-C");
        }
        std::thread::sleep(TICK);
    }
    if let Some(p) = publisher {
        let _ = p.client.disconnect();
        let _ = p.thread.join();
    }
    Ok(())
}

/// Sends `records[from..to]`: even ones over MQTT (one message per zone), odd ones over HTTP.
fn send(
    demo: &Demo,
    publisher: Option<&Publisher>,
    records: &[Shifted],
    from: usize,
    to: usize,
    sent: &Sent,
) {
    let mut by_zone: BTreeMap<&str, String> = BTreeMap::new();
    let mut posted: Vec<&str> = Vec::new();
    for (i, r) in records.iter().enumerate().take(to).skip(from) {
        match publisher {
            Some(_) if i % 2 == 0 => {
                let p = by_zone.entry(&r.zone).or_default();
                p.push_str(&r.bare);
                p.push('\n');
            }
            _ => posted.push(&r.full),
        }
    }
    if let Some(p) = publisher {
        for (zone, payload) in by_zone {
            let n = payload.lines().count() as u64;
            let topic = broker::topic(Feed::Incident, Some(zone));
            if p.client
                .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
                .is_ok()
            {
                sent.mqtt.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
    for chunk in posted.chunks(HTTP_BATCH) {
        let body: String = chunk.iter().flat_map(|l| [*l, "\n"]).collect();
        sent.http.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        match http(
            demo.http,
            "POST",
            "/api/v1/records",
            Some(&demo.token),
            &body,
        ) {
            Some((200, answer)) => {
                let accepted = serde_json::from_str::<serde_json::Value>(&answer)
                    .ok()
                    .and_then(|v| v["accepted"].as_u64())
                    .unwrap_or(0);
                sent.http_accepted.fetch_add(accepted, Ordering::Relaxed);
            }
            Some((code, answer)) => {
                eprintln!("vigie demo: HTTP {code}: {}", answer.trim())
            }
            None => eprintln!("vigie demo: the HTTP endpoint did not answer"),
        }
    }
}

/// One line: sample time, sent and accepted per door, the busiest zone of the past sample day.
fn status(demo: &Demo, sent: &Sent, sim: i64) {
    let mqtt_accepted: u64 = demo
        .counters
        .snapshot()
        .topics
        .values()
        .map(|t| t.accepted)
        .sum();
    let sim_hour = sim.div_euclid(HOUR_US);
    let now = wall_hour();
    let busiest = demo.board.read(|b| {
        let mut per_zone: BTreeMap<u32, u64> = BTreeMap::new();
        let day = sim_hour - 23..=sim_hour;
        for ((zone, _), row) in b.rows.iter().filter(|((_, h), _)| day.contains(h)) {
            *per_zone.entry(*zone).or_default() += row.incidents;
        }
        let (zone, n) = per_zone
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .max_by_key(|(z, n)| (*n, std::cmp::Reverse(*z)))?;
        let (risk, level) = b
            .rows
            .get(&(zone, now))
            .map_or((0.0, 0), |r| (r.risk_score.get(), r.risk_level));
        Some((zone, n, risk, level))
    });
    let zone = match busiest {
        Some((z, n, risk, level)) => format!(
            "busiest zone of the past sample day: {} ({n} incidents), risk now {risk:.1} (level {level})",
            demo.config.zones.get(z).id
        ),
        None => "no incident in the past sample day yet".into(),
    };
    eprintln!(
        "vigie demo: sample time {} | sent {} MQTT + {} HTTP | accepted {} MQTT + {} HTTP | {zone}",
        show(sim),
        sent.mqtt.load(Ordering::Relaxed),
        sent.http.load(Ordering::Relaxed),
        mqtt_accepted,
        sent.http_accepted.load(Ordering::Relaxed),
    );
}

/// A plain HTTP/1.1 request on loopback (Connection: close): status and body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}
