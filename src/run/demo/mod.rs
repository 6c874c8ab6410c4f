//! `vigie run --demo`: a scenario played live into the running engine, so that a newcomer sees
//! in a few minutes what vigie is for.
//!
//! Two scenarios (`--demo [marseille|vancouver]`):
//!
//! - **`marseille`** (the default; [`marseille`]): the embedded default configuration — the 16
//!   arrondissements of Marseille, model v2 — and a scripted day that exercises every feed:
//!   real incident history for the baseline (the bundled Vancouver incidents, remapped onto the
//!   arrondissements), telecom-like crowd densities with a surge, hotline calls, traffic
//!   counts, observed weather and a heat-wave forecast, the agenda (the Christmas market, a
//!   match at the Stade Vélodrome with a fan zone next door, a demonstration crossing
//!   roadworks) and the patrols deployed, which leave a shortfall; one zone's density feed
//!   falls silent. The scenario, record by record, is documented in that module.
//! - **`vancouver`**: the embedded Vancouver configuration and the 2,720 Vancouver Police
//!   Department incidents of December 2020 (`config/samples/`), shifted so that the sample's
//!   last hour is the current hour; nothing but incidents.
//!
//! How either is played, through the same doors as any live source:
//!
//! - **Times.** Every record's times are relative to the current hour H (live, the engine's
//!   clock is the wall clock's hour, its horizon the past week and the next 30 days). A record
//!   is sent at the time it would have become known: its `ts`, or a forecast's `issued_at`.
//! - **Pace.** What became known before the last 24 hours (H−23 on; the baseline's history, the
//!   older agenda) is sent at once, as soon as the HTTP endpoint answers, so the wall has
//!   figures from its first second; the last 24 hours are then played at `--demo-speed`
//!   scenario seconds per wall second: at the default 3600, one hour a second, 24 seconds in
//!   all. The scenario is played once; vigie then keeps running until Ctrl-C.
//! - **Doors.** Each record goes over MQTT (QoS 1, a rumqttc client, to the embedded broker:
//!   `vigie/<feed>/<zone>` without the zone in the record, or `vigie/<feed>` with it) or over
//!   HTTP (`POST /api/v1/records` with the token of a `demo` source the demo configures for
//!   itself, kept in `DATA/demo-token`), as the scenario says. With an external broker
//!   configured, everything goes over HTTP.
//! - **Idempotent.** Every record carries an id (`vpd-<line>` for the Vancouver incidents,
//!   names or the absolute hour for the rest), so running the demo again on the same `--data`
//!   upserts the same records instead of counting them twice.
//! - **What it prints.** The scenario's scenes as they are played, and every few seconds the
//!   scenario time reached, the records sent and accepted by each door, and the zone with the
//!   highest risk now.

pub mod marseille;

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
/// Hours before the current one played at the demo's pace (the rest is sent at once).
const PLAYED_HOURS: i64 = 24;
/// How often the feeder wakes to send what is due, and how often it prints.
const TICK: Duration = Duration::from_millis(100);
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// Records per HTTP request, and per MQTT message (some 30 KB).
const HTTP_BATCH: usize = 500;
const MQTT_LINES: usize = 200;

/// Which scenario `--demo` plays.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Marseille's arrondissements, every feed, a scripted day (the default).
    Marseille,
    /// The Vancouver incidents of December 2020 alone, on Vancouver's neighbourhoods.
    Vancouver,
}

impl Scenario {
    /// The configuration the scenario runs on when `--config` is not given.
    pub fn config(self) -> Config {
        match self {
            Scenario::Marseille => Config::embedded_default(),
            Scenario::Vancouver => Config::embedded_sample(),
        }
    }

    /// What the scenario adds to the configuration besides the `demo` source (Marseille: its
    /// roads and its alert rule, [`marseille::prepare`]).
    pub fn prepare(self, config: &mut Config) -> anyhow::Result<()> {
        match self {
            Scenario::Marseille => marseille::prepare(config),
            Scenario::Vancouver => Ok(()),
        }
    }
}

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
    pub scenario: Scenario,
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

/// Through which door a record goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    Mqtt,
    Http,
}

/// One record of a scenario, its times already relative to the current hour.
pub struct Scripted {
    /// When it is sent: the scenario time (µs) at which it became known.
    pub at: i64,
    pub door: Door,
    pub feed: Feed,
    /// The record as one NDJSON line, with its zone (if it has one).
    pub full: String,
    /// Published on `vigie/<feed>/<zone>`: the zone, and the line without it.
    pub per_zone: Option<(String, String)>,
    /// A scene of the scenario, printed when the record is played.
    pub scene: Option<String>,
}

/// The Vancouver sample's incidents, shifted so that the sample's last hour is `now_hour`,
/// each in the zone `zone_of` gives its Vancouver neighbourhood (by index in the sample's zone
/// file); even ones over MQTT, odd ones over HTTP, with ids `vpd-<line>`.
pub fn vancouver_incidents(
    now_hour: i64,
    zone_of: impl Fn(usize) -> String,
) -> anyhow::Result<Vec<Scripted>> {
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
    records.sort_by_key(|r| (r.ts, r.seq));
    let mut out = Vec::with_capacity(records.len());
    for (i, r) in records.into_iter().enumerate() {
        let Some(Body::Incident { zone, severity }) = r.body else {
            continue;
        };
        let ts = r.ts + shift;
        let zone = zone_of(zone as usize);
        let line = r.seq & ((1 << 40) - 1);
        let head = format!(
            "{{\"feed\":\"incident\",\"id\":\"vpd-{line}\",\"ts\":{}",
            ts.div_euclid(1_000_000)
        );
        let tail = format!(",\"severity\":{severity}}}");
        out.push(Scripted {
            at: ts,
            door: if i % 2 == 0 { Door::Mqtt } else { Door::Http },
            feed: Feed::Incident,
            full: format!("{head},\"zone\":{}{tail}", serde_json::json!(zone)),
            per_zone: Some((zone, format!("{head}{tail}"))),
            scene: None,
        });
    }
    Ok(out)
}

/// The records of `scenario` for the current hour `now_hour`, sorted by the time they are sent.
fn script(scenario: Scenario, config: &Config, now_hour: i64) -> anyhow::Result<Vec<Scripted>> {
    let mut records = match scenario {
        Scenario::Marseille => marseille::records(config, now_hour)?,
        Scenario::Vancouver => {
            let sample = Config::embedded_sample();
            vancouver_incidents(now_hour, |z| sample.zones.get(z as u32).id.clone())?
        }
    };
    records.sort_by_key(|r| r.at);
    Ok(records)
}

/// Starts the feeder thread; it ends once `stopping` is set.
pub fn start(demo: Demo) -> anyhow::Result<JoinHandle<()>> {
    if !(demo.speed.is_finite() && demo.speed > 0.0) {
        bail!("--demo-speed must be a positive number");
    }
    let now_hour = wall_hour();
    let records = script(demo.scenario, &demo.config, now_hour)?;
    std::thread::Builder::new()
        .name("demo".into())
        .spawn(move || {
            if let Err(e) = feed(&demo, records, now_hour) {
                tracing::error!("vigie demo: stopped: {e:#}");
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

fn feed(demo: &Demo, records: Vec<Scripted>, now_hour: i64) -> anyhow::Result<()> {
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
        std::thread::sleep(Duration::from_millis(20));
    }
    if demo.mqtt.is_some() {
        while demo.counters.snapshot().subscriptions_acked == 0 {
            if demo.stopping.load(Ordering::SeqCst) {
                return Ok(());
            }
            if ready.elapsed() > Duration::from_secs(30) {
                bail!("vigie's MQTT source did not subscribe to the embedded broker");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let publisher = demo
        .mqtt
        .map(|a| Publisher::connect(a, demo.stopping.clone()));
    let live_start = (now_hour - PLAYED_HOURS + 1) * HOUR_US;
    let live_end = (now_hour + 1) * HOUR_US;
    let warm = records.iter().take_while(|r| r.at < live_start).count();
    let by_door = |d: Door| records.iter().filter(|r| r.door == d).count();
    tracing::info!(
        "vigie demo: {} — {} records, times relative to the current hour; {} known before the last {PLAYED_HOURS} h sent at once, \
         the rest played at {}× (about {:.0} s); {} over MQTT, {} over HTTP",
        match demo.scenario {
            Scenario::Marseille => "Marseille, a scripted day on every feed (model v2)",
            Scenario::Vancouver => "Vancouver, the VPD incidents of Dec 2020",
        },
        records.len(),
        warm,
        demo.speed,
        (live_end - live_start) as f64 / 1e6 / demo.speed,
        by_door(Door::Mqtt),
        by_door(Door::Http),
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
        // Scenario time reached: the history at once, then the last hours at the demo's pace.
        let sim = live_start + (started.elapsed().as_secs_f64() * demo.speed * 1e6) as i64;
        let due = if next < warm {
            warm
        } else {
            next + records[next..].iter().take_while(|r| r.at <= sim).count()
        };
        if due > next {
            for r in &records[next..due] {
                if let Some(scene) = &r.scene {
                    tracing::info!("vigie demo: {} {scene}", relative(r.at, now_hour));
                }
            }
            send(demo, publisher.as_ref(), &records[next..due], &sent);
            next = due;
        }
        if last_status.elapsed() >= STATUS_EVERY || (!done && next == records.len()) {
            status(demo, &sent, sim.min(live_end));
            last_status = Instant::now();
        }
        if !done && next == records.len() {
            done = true;
            tracing::info!("vigie demo: the scenario is played; vigie keeps running until Ctrl-C");
        }
        std::thread::sleep(TICK);
    }
    if let Some(p) = publisher {
        let _ = p.client.disconnect();
        let _ = p.thread.join();
    }
    Ok(())
}

/// A scenario time as `H-3`, `H+0` (hours from the current one) and its clock time in UTC.
fn relative(at: i64, now_hour: i64) -> String {
    format!(
        "[H{:+}, {} UTC]",
        at.div_euclid(HOUR_US) - now_hour,
        show(at)
            .trim_end_matches(" UTC")
            .split(' ')
            .nth(1)
            .unwrap_or("")
    )
}

/// Sends `records`: MQTT ones grouped into one message per topic, HTTP ones in batches.
fn send(demo: &Demo, publisher: Option<&Publisher>, records: &[Scripted], sent: &Sent) {
    let mut by_topic: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut posted: Vec<&str> = Vec::new();
    for r in records {
        match (publisher, r.door) {
            (Some(_), Door::Mqtt) => {
                let (topic, line) = match &r.per_zone {
                    Some((zone, bare)) => (broker::topic(r.feed, Some(zone)), bare),
                    None => (broker::topic(r.feed, None), &r.full),
                };
                by_topic.entry(topic).or_default().push(line);
            }
            _ => posted.push(&r.full),
        }
    }
    if let Some(p) = publisher {
        for (topic, lines) in by_topic {
            // Messages of at most MQTT_LINES records: the client refuses larger packets than
            // its outgoing limit, and a refused packet costs the connection.
            for chunk in lines.chunks(MQTT_LINES) {
                let payload: String = chunk.iter().flat_map(|l| [*l, "\n"]).collect();
                if p.client
                    .publish(&topic, rumqttc::QoS::AtLeastOnce, false, payload)
                    .is_ok()
                {
                    sent.mqtt.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
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
                let v = serde_json::from_str::<serde_json::Value>(&answer).unwrap_or_default();
                sent.http_accepted
                    .fetch_add(v["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
                if v["rejected_total"].as_u64().unwrap_or(0) > 0 {
                    tracing::warn!("vigie demo: HTTP records rejected: {}", v["rejected"]);
                }
            }
            Some((code, answer)) => {
                tracing::warn!("vigie demo: HTTP {code}: {}", answer.trim())
            }
            None => tracing::warn!("vigie demo: the HTTP endpoint did not answer"),
        }
    }
}

/// One line: scenario time, sent and accepted per door, the zone with the highest risk now.
fn status(demo: &Demo, sent: &Sent, sim: i64) {
    let mqtt_accepted: u64 = demo
        .counters
        .snapshot()
        .topics
        .values()
        .map(|t| t.accepted)
        .sum();
    let now = wall_hour();
    let top = demo.board.read(|b| {
        let rows = b.rows.iter().filter(|((_, h), _)| *h == now).map(|(_, r)| r);
        let high = rows.clone().filter(|r| r.risk_level >= 3).count();
        let r = rows.max_by(|a, b| a.risk_score.get().total_cmp(&b.risk_score.get()))?;
        let crit = r
            .v2
            .as_ref()
            .map(|v| format!(", criticality {}", v.criticality))
            .unwrap_or_default();
        Some(format!(
            "highest risk now: {} {:.1} (level {}{crit}, protection {:.2}); {high} zone(s) at level 3 or more; {} clash(es)",
            demo.config.zones.get(r.zone).id,
            r.risk_score.get(),
            r.risk_level,
            r.protection_rate.get(),
            b.clashes.len(),
        ))
    });
    tracing::info!(
        "vigie demo: scenario time {} | sent {} MQTT + {} HTTP | accepted {} MQTT + {} HTTP | {}",
        show(sim),
        sent.mqtt.load(Ordering::Relaxed),
        sent.http.load(Ordering::Relaxed),
        mqtt_accepted,
        sent.http_accepted.load(Ordering::Relaxed),
        top.unwrap_or_else(|| "no figures yet".into()),
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
