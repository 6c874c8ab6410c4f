//! `vigie run`: the long-running engine.
//!
//! Live sources commit accepted records to the durable ingest log
//! ([`vigie_connectors::ingest::IngestLog`]), which passes them on, in log order, to the engine
//! thread. The engine closes an epoch every `ingest.epoch_ms` with the clock at the wall
//! clock's hour (`docs/model.md`: live, the clock is the wall clock), and writes what changed
//! to the store (and InfluxDB when configured), as `vigie replay --store` does. On start it
//! first reads back everything the log holds, so a restart — even after `kill -9` — rebuilds
//! the same state: every acknowledged record counted, once. Before that it compacts the log
//! ([`survivors`]): superseded upserts, and records out of the horizon and the baseline
//! window, are dropped.
//!
//! With no `[ingest.mqtt]`, it starts the embedded MQTT broker ([`crate::broker`]) and
//! subscribes to it; with `--demo`, it also replays the bundled sample live ([`crate::demo`]).

use crate::sink::{change_points, FeedHealth, Sinks};
use anyhow::Context;
use hdrhistogram::Histogram;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use vigie_config::Config;
use vigie_connectors::ingest::{IngestLog, Keep};
use vigie_engine::{timely, Driver, Expiry, GraphParams};
use vigie_model::{Feed, Record};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Configuration file (TOML). Default: the embedded default configuration (Marseille);
    /// with --demo, the embedded Vancouver configuration.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data folder: the ingest log in DATA/ingest and the store in DATA/store. Default: the
    /// configuration's `ingest.log_dir` and `store.dir` (or `store` beside the log); with
    /// --demo, a new folder in the system's temporary folder.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Address of the HTTP endpoint (default: the configuration's `ingest.http.listen`).
    #[arg(long)]
    listen: Option<String>,
    /// Milliseconds between epochs (default: the configuration's `ingest.epoch_ms`).
    #[arg(long)]
    epoch_ms: Option<u64>,
    /// Loopback address of the embedded MQTT broker, started when the configuration has no
    /// `[ingest.mqtt]` (default: `ingest.embedded_mqtt_listen`, 127.0.0.1:1883; port 0: any).
    #[arg(long, value_name = "ADDR")]
    mqtt_listen: Option<String>,
    /// Demo for newcomers: replays the bundled real sample (Vancouver incidents, Dec 2020)
    /// live into this engine, half over MQTT and half over HTTP, its times shifted to end at
    /// the current hour, so the indicators move while you watch.
    #[arg(long)]
    pub demo: bool,
    /// Demo replay speed: sample seconds per wall second (3600: one sample hour a second).
    #[arg(long, value_name = "X", default_value_t = 3600.0, requires = "demo")]
    pub demo_speed: f64,
}

/// What the engine thread publishes for `/metrics`.
#[derive(Default)]
pub struct EngineMetrics {
    pub records: AtomicU64,
    pub epochs: AtomicU64,
    pub queued: AtomicI64,
    pub last_event_us: AtomicI64,
    pub store_writes: AtomicU64,
    pub latency: Mutex<Option<Histogram<u64>>>,
    /// The latest indicator rows by (zone, hour), kept when set (the demo reads it).
    pub board: Mutex<Option<Board>>,
    /// What the ingest log's running compaction did.
    pub compactions: Mutex<Option<Arc<vigie_connectors::ingest::CompactionStats>>>,
    /// The live sources' rejected lines by feed, for the feeds' health (set by the sources).
    pub rejections: Mutex<Option<Rejections>>,
}

/// Gives the live sources' rejected lines so far, by feed name.
pub type Rejections = Box<dyn Fn() -> std::collections::BTreeMap<String, u64> + Send>;

/// Risk score, level and incidents of each (zone, hour) the engine has put out.
pub type Board = std::collections::BTreeMap<(u32, i64), (f64, u8, u64)>;

impl EngineMetrics {
    /// Prometheus text lines.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let now_us = chrono_now_us();
        let last = self.last_event_us.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP vigie_engine_records_total Records the engine took in.\n# TYPE vigie_engine_records_total counter\nvigie_engine_records_total {}", self.records.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP vigie_engine_epochs_total Epochs closed.\n# TYPE vigie_engine_epochs_total counter\nvigie_engine_epochs_total {}", self.epochs.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP vigie_engine_queue_records Records committed to the ingest log and not yet in the dataflow.\n# TYPE vigie_engine_queue_records gauge\nvigie_engine_queue_records {}", self.queued.load(Ordering::Relaxed).max(0));
        if last != i64::MIN && last != 0 {
            let _ = writeln!(out, "# HELP vigie_engine_event_lag_seconds Wall clock minus the latest event time taken in.\n# TYPE vigie_engine_event_lag_seconds gauge\nvigie_engine_event_lag_seconds {:.3}", (now_us - last) as f64 / 1e6);
        }
        if let Some(c) = self
            .compactions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = writeln!(out, "# HELP vigie_ingest_log_compactions_total Compactions of the ingest log while running.\n# TYPE vigie_ingest_log_compactions_total counter\nvigie_ingest_log_compactions_total {}", c.runs.load(Ordering::Relaxed));
            let _ = writeln!(out, "# HELP vigie_ingest_log_compacted_records_total Records running compactions dropped (superseded or retired).\n# TYPE vigie_ingest_log_compacted_records_total counter\nvigie_ingest_log_compacted_records_total {}", c.records_dropped.load(Ordering::Relaxed));
            let _ = writeln!(out, "# HELP vigie_ingest_log_compaction_errors_total Running compactions that failed (the log was left whole).\n# TYPE vigie_ingest_log_compaction_errors_total counter\nvigie_ingest_log_compaction_errors_total {}", c.errors.load(Ordering::Relaxed));
        }
        let _ = writeln!(out, "# HELP vigie_store_writes_total Revisions the store acknowledged.\n# TYPE vigie_store_writes_total counter\nvigie_store_writes_total {}", self.store_writes.load(Ordering::Relaxed));
        if let Some(h) = self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = writeln!(out, "# HELP vigie_update_latency_seconds From a record's commit to the indicator update it causes.\n# TYPE vigie_update_latency_seconds summary");
            for q in [0.5, 0.99, 0.999] {
                let _ = writeln!(
                    out,
                    "vigie_update_latency_seconds{{quantile=\"{q}\"}} {:.6}",
                    h.value_at_quantile(q) as f64 / 1e6
                );
            }
            let _ = writeln!(out, "vigie_update_latency_seconds_count {}", h.len());
        }
    }
}

fn chrono_now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn wall_hour() -> i64 {
    chrono_now_us().div_euclid(3_600_000_000)
}

/// The records of the ingest log that still matter at clock hour `clock_hour`: of each
/// upserted `(feed, id)`, the version that wins (greatest `ts`, then `seq`; a cancellation
/// included); of the others, those the engine would not retire at once (the rule of
/// [`Expiry`]: out of the horizon and of the baseline window). The order is kept.
pub fn survivors(params: &GraphParams, clock_hour: i64, all: Vec<Record>) -> Vec<Record> {
    let mut keep = Survivors::new(params, clock_hour);
    all.iter().for_each(|r| keep.observe(r));
    all.into_iter().filter(|r| keep.keeps(r)).collect()
}

/// [`survivors`] as the running compaction asks it, in two passes over the log: the winner of
/// each upserted id is known after the first.
pub struct Survivors {
    clock_hour: i64,
    expiry: Expiry,
    winners: std::collections::HashMap<(Feed, String), (i64, u64)>,
}

impl Survivors {
    pub fn new(params: &GraphParams, clock_hour: i64) -> Survivors {
        Survivors {
            clock_hour,
            expiry: Expiry::new(params),
            winners: Default::default(),
        }
    }
}

impl Keep for Survivors {
    fn observe(&mut self, r: &Record) {
        if let Some(id) = &r.id {
            let w = self
                .winners
                .entry((r.feed, id.clone()))
                .or_insert((r.ts, r.seq));
            if (r.ts, r.seq) > *w {
                *w = (r.ts, r.seq);
            }
        }
    }

    fn keeps(&mut self, r: &Record) -> bool {
        if let Some(id) = &r.id {
            if self.winners.get(&(r.feed, id.clone())) != Some(&(r.ts, r.seq)) {
                return false;
            }
        }
        self.expiry
            .expires_at(r)
            .is_none_or(|at| at > self.clock_hour)
    }
}

/// Where the run keeps its data.
pub struct Dirs {
    pub log: PathBuf,
    pub store: PathBuf,
    /// The alert state and history (`alerts/FORMAT.md`).
    pub alerts: PathBuf,
}

impl Dirs {
    fn of(args: &RunArgs, config: &Config) -> Dirs {
        match &args.data {
            Some(d) => Dirs {
                log: d.join("ingest"),
                store: d.join("store"),
                alerts: d.join("alerts"),
            },
            None => Dirs {
                alerts: config
                    .ingest
                    .log_dir
                    .parent()
                    .map(|p| p.join("alerts"))
                    .unwrap_or_else(|| PathBuf::from("alerts")),
                log: config.ingest.log_dir.clone(),
                store: config.store.dir.clone().unwrap_or_else(|| {
                    config
                        .ingest
                        .log_dir
                        .parent()
                        .map(|p| p.join("store"))
                        .unwrap_or_else(|| PathBuf::from("store"))
                }),
            },
        }
    }
}

/// The engine thread: reads back the log's records, then takes committed batches, one epoch
/// every `epoch`, until `stop` is set and the log's side has closed.
/// Something that watches each complete epoch's changes, after the sinks have taken them:
/// `(changes, the clock hour, feed health)`. Called on the engine thread; keep it short (hand
/// work to another thread).
pub type Observer = Box<dyn FnMut(&vigie_engine::Changes, i64, &FeedHealth) + Send>;

/// Something with points of its own for the store (the alert history): drained at each
/// epoch, written in the same revision as the epoch's changes.
pub type PointSource = Box<dyn FnMut() -> Vec<vigie_model::Point> + Send>;

#[allow(clippy::too_many_arguments)]
fn engine(
    config: Arc<Config>,
    observers: Vec<Observer>,
    point_sources: Vec<PointSource>,
    store_out: Arc<std::sync::OnceLock<crate::sink::SharedStore>>,
    recovered: Vec<Record>,
    rx: mpsc::Receiver<(Instant, Vec<Record>)>,
    store_dir: PathBuf,
    epoch: Duration,
    metrics: Arc<EngineMetrics>,
) -> anyhow::Result<()> {
    let params = GraphParams::from_config(&config).live();
    let zone_ids: Vec<String> = config.zones.iter().map(|z| z.id.clone()).collect();
    let result: Arc<Mutex<anyhow::Result<()>>> = Arc::new(Mutex::new(Ok(())));
    let out = result.clone();
    // Timely wants a closure it could share; the receiver and the records move in once.
    let rx = Mutex::new(rx);
    let observers = Mutex::new(observers);
    let point_sources = Mutex::new(point_sources);
    let recovered = Mutex::new(Some(recovered));
    timely::execute_directly(move |worker| {
        let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
        let mut observers = observers.lock().unwrap_or_else(|e| e.into_inner());
        let mut point_sources = point_sources.lock().unwrap_or_else(|e| e.into_inner());
        let recovered = recovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        let mut driver = Driver::new(worker, &params);
        let mut sinks = match Sinks::open(
            Some(&store_dir),
            &config.store,
            config.outputs.influxdb.as_ref(),
        ) {
            Ok(s) => s,
            Err(e) => {
                *out.lock().unwrap_or_else(|e| e.into_inner()) = Err(e);
                return;
            }
        };
        if let Some(store) = sinks.store() {
            let _ = store_out.set(store);
        }
        driver.collected.borrow_mut().track_changes();
        let health = FeedHealth::default();
        let mut latency =
            Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds");
        let n = recovered.len();
        for r in recovered {
            health.accept(&r);
            metrics.last_event_us.fetch_max(r.ts, Ordering::Relaxed);
            driver.insert(r);
        }
        metrics.records.fetch_add(n as u64, Ordering::Relaxed);
        if n > 0 {
            eprintln!("vigie run: {n} records read back from the ingest log");
        }
        let mut first = true;
        let mut last_clock = None;
        let mut last_rejections = None;
        loop {
            let deadline = Instant::now() + epoch;
            let mut arrived: Vec<(Instant, usize)> = Vec::new();
            let mut closed = false;
            if !first {
                loop {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(wait) {
                        Ok((at, batch)) => {
                            arrived.push((at, batch.len()));
                            metrics
                                .queued
                                .fetch_sub(batch.len() as i64, Ordering::Relaxed);
                            metrics
                                .records
                                .fetch_add(batch.len() as u64, Ordering::Relaxed);
                            for r in batch {
                                health.accept(&r);
                                metrics.last_event_us.fetch_max(r.ts, Ordering::Relaxed);
                                driver.insert(r);
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
            }
            let hour = wall_hour();
            driver.set_clock_hour(hour);
            let e = driver.advance();
            driver.wait(worker, e);
            metrics.epochs.fetch_add(1, Ordering::Relaxed);
            let extra: Vec<vigie_model::Point> =
                point_sources.iter_mut().flat_map(|p| p()).collect();
            // Rejections alone (no record accepted) also show in the feeds' health.
            let rejections = metrics
                .rejections
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|r| r());
            let rejections_changed = rejections.is_some() && rejections != last_rejections;
            if first
                || !arrived.is_empty()
                || last_clock != Some(hour)
                || rejections_changed
                || !extra.is_empty()
            {
                if let Some(r) = &rejections {
                    health.set_live_rejections(r);
                }
                last_rejections = rejections;
                let changes = driver.collected.borrow_mut().drain();
                if let Some(board) = metrics
                    .board
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_mut()
                {
                    for (_, r) in &changes.indicators {
                        board.insert(
                            (r.zone, r.hour),
                            (r.risk_score.get(), r.risk_level, r.incidents),
                        );
                    }
                    // Rows long out of the horizon (a week back) are of no interest.
                    board.retain(|(_, h), _| *h >= hour - 24 * 8);
                }
                let mut points = change_points(&changes, &zone_ids);
                points.extend(extra);
                // Live, a revision is the wall-clock time it was computed at.
                if let Err(e) = sinks.publish(points, &health, chrono_now_us() / 1000, Some(e)) {
                    *out.lock().unwrap_or_else(|e| e.into_inner()) =
                        Err(e.context("writing to the sinks"));
                    return;
                }
                metrics.store_writes.fetch_add(1, Ordering::Relaxed);
                for observe in observers.iter_mut() {
                    observe(&changes, hour, &health);
                }
                let done = Instant::now();
                for (at, n) in arrived {
                    latency.saturating_record_n(
                        done.duration_since(at).as_micros().max(1) as u64,
                        n as u64,
                    );
                }
                *metrics.latency.lock().unwrap_or_else(|e| e.into_inner()) = Some(latency.clone());
            }
            last_clock = Some(hour);
            first = false;
            if closed {
                break;
            }
        }
        driver.close();
        worker.step_while(|| !driver.finished());
        if let Err(e) = sinks.finish(Duration::from_secs(30)) {
            *out.lock().unwrap_or_else(|e| e.into_inner()) = Err(e);
        }
    });
    let mut guard = result.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::replace(&mut *guard, Ok(()))
}

pub fn run(mut args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut config = match &args.config {
        Some(p) => Config::from_file(p).with_context(|| format!("loading {}", p.display()))?,
        None if args.demo => Config::embedded_sample(),
        None => Config::embedded_default(),
    };
    if args.demo && args.data.is_none() {
        args.data = Some(crate::demo::data_dir()?);
    }
    let dirs = Dirs::of(&args, &config);
    let demo_token = if args.demo {
        Some(crate::demo::add_source(&mut config, &dirs)?)
    } else {
        None
    };
    let epoch = Duration::from_millis(args.epoch_ms.unwrap_or(config.ingest.epoch_ms).max(1));
    let listen = args
        .listen
        .clone()
        .unwrap_or_else(|| config.ingest.http.listen.clone());
    // The embedded broker, when no external one is configured; the MQTT source's
    // configuration either way.
    let mut broker = None;
    let mqtt_config = match &config.ingest.mqtt {
        Some(_) => config.clone(),
        None => {
            let addr = crate::broker::listen_addr(
                args.mqtt_listen
                    .as_deref()
                    .unwrap_or(&config.ingest.embedded_mqtt_listen),
            )?;
            let secret = crate::broker::subscriber_secret();
            let logins = crate::broker::Logins::of(&config, &secret)?;
            let who = if logins.is_some() {
                "logins of [[sources]]"
            } else {
                "anonymous"
            };
            let secret = match &logins {
                Some(_) => {
                    let folder = dirs.log.parent().unwrap_or(std::path::Path::new("."));
                    Some(crate::broker::write_secret(folder, &secret)?)
                }
                None => None,
            };
            let b = crate::broker::EmbeddedBroker::start(addr, logins)?;
            eprintln!(
                "vigie run: embedded MQTT broker on mqtt://{} ({who}, loopback only; topics vigie/<feed>, vigie/<feed>/<zone>)",
                b.addr
            );
            let c = crate::broker::source_config(&config, b.addr, secret)?;
            broker = Some(b);
            c
        }
    };
    let http_listener =
        std::net::TcpListener::bind(&listen).with_context(|| format!("listening on {listen}"))?;
    http_listener.set_nonblocking(true)?;
    let http_addr = http_listener.local_addr()?;
    let config = Arc::new(config);
    let metrics = Arc::new(EngineMetrics::default());
    let mqtt_counters = Arc::new(vigie_connectors::ingest::MqttCounters::new(
        crate::live::MQTT_REJECTIONS,
    ));
    if args.demo {
        *metrics.board.lock().unwrap_or_else(|e| e.into_inner()) = Some(Board::new());
    }

    // The log hands committed batches to a forwarder that stamps their arrival and counts the
    // queue, then to the engine.
    // Compact the log first: superseded upserts and records the clock has made irrelevant go.
    let params = GraphParams::from_config(&config);
    let (kept, before) = IngestLog::compact(&dirs.log, |all| survivors(&params, wall_hour(), all))
        .with_context(|| format!("compacting the ingest log in {}", dirs.log.display()))?;
    if kept < before {
        eprintln!("vigie run: compacted the ingest log: kept {kept} of {before} records");
    }
    let (log_tx, log_rx) = mpsc::channel::<Vec<Record>>();
    // …and again while running, as it grows (sealed segments, beside the commits).
    let compaction = vigie_connectors::ingest::Compaction {
        every: Duration::from_millis(config.ingest.compact_every_ms),
        min_bytes: config.ingest.compact_min_bytes,
        keep: Box::new(move || Box::new(Survivors::new(&params, wall_hour()))),
    };
    let opened = IngestLog::open_with(&dirs.log, log_tx, Some(compaction))
        .with_context(|| format!("opening the ingest log in {}", dirs.log.display()))?;
    *metrics
        .compactions
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(opened.compactions.clone());
    if opened.truncated_bytes > 0 {
        eprintln!(
            "vigie run: cut {} bytes of an unfinished (never acknowledged) batch from the ingest log",
            opened.truncated_bytes
        );
    }
    let (eng_tx, eng_rx) = mpsc::channel::<(Instant, Vec<Record>)>();
    let m = metrics.clone();
    let forwarder = std::thread::spawn(move || {
        for batch in log_rx {
            m.queued.fetch_add(batch.len() as i64, Ordering::Relaxed);
            if eng_tx.send((Instant::now(), batch)).is_err() {
                break;
            }
        }
    });
    let stopping = Arc::new(AtomicBool::new(false));
    // Alerting: an observer of the engine, a timer, notifiers, the API.
    let alerts = crate::alerts_api::start(&config, &dirs.alerts, stopping.clone())
        .with_context(|| format!("starting alerting in {}", dirs.alerts.display()))?;
    // Who watches the engine's changes besides the sinks: alerting, and the wall and query API.
    let wall = crate::wall::Wall::new(config.clone(), metrics.clone());
    let observers: Vec<Observer> = vec![alerts.observer(), wall.observer()];
    let point_sources: Vec<PointSource> = vec![alerts.points()];
    let engine_thread = {
        let (config, metrics, store) = (config.clone(), metrics.clone(), dirs.store.clone());
        let recovered = opened.recovered;
        let stop = stopping.clone();
        let store_out = wall.store.clone();
        std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                let r = engine(
                    config,
                    observers,
                    point_sources,
                    store_out,
                    recovered,
                    eng_rx,
                    store,
                    epoch,
                    metrics,
                );
                if let Err(e) = &r {
                    // Taking records nobody computes would hide an outage: stop the sources.
                    eprintln!("vigie run: the engine stopped: {e:#}");
                    stop.store(true, Ordering::SeqCst);
                }
                r
            })
            .context("starting the engine thread")?
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let demo = match demo_token {
        Some(token) => Some(crate::demo::start(crate::demo::Demo {
            config: config.clone(),
            http: http_addr,
            token,
            mqtt: broker.as_ref().map(|b| b.addr),
            speed: args.demo_speed,
            counters: mqtt_counters.clone(),
            metrics: metrics.clone(),
            stopping: stopping.clone(),
        })?),
        None => None,
    };
    let served = runtime.block_on(crate::live::serve(
        config.clone(),
        opened.log,
        http_listener,
        &dirs,
        wall,
        (Arc::new(mqtt_config), mqtt_counters),
        stopping.clone(),
        &alerts,
    ));
    // The demo feeder stops with the sources (it watches `stopping`).
    stopping.store(true, Ordering::SeqCst);
    if let Some(d) = demo {
        let _ = d.join();
    }
    // Every handle on the log is gone once the sources have stopped: the log thread ends, the
    // forwarder ends, and the engine closes its last epoch and flushes the store.
    runtime.shutdown_timeout(Duration::from_secs(5));
    let _ = opened.thread.join();
    let _ = forwarder.join();
    let engine_result = engine_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the engine thread panicked"))?;
    alerts.join();
    served?;
    engine_result?;
    eprintln!("vigie run: stopped");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigie_model::Body;

    fn rec(feed: Feed, ts_h: i64, seq: u64, id: Option<&str>, body: bool) -> Record {
        Record {
            feed,
            ts: ts_h * 3_600_000_000,
            seq,
            id: id.map(str::to_string),
            body: body.then_some(Body::Incident {
                zone: 0,
                severity: 2,
            }),
        }
    }

    #[test]
    fn compaction_keeps_upsert_winners_and_what_the_clock_has_not_retired() {
        let config = Config::embedded_default();
        let params = GraphParams::from_config(&config);
        let now = 500_000;
        let all = vec![
            rec(Feed::Incident, now - 1, 0, Some("a"), true),
            rec(Feed::Incident, now - 2, 1, Some("a"), true), // older ts: superseded
            rec(Feed::Incident, now - 1, 2, Some("b"), true),
            rec(Feed::Incident, now - 1, 3, Some("b"), false), // a cancellation wins
            rec(Feed::Incident, now - 24 * 800, 4, None, true), // out of every window
            rec(Feed::Incident, now - 24 * 30, 5, None, true), // in the baseline window
        ];
        let seqs: Vec<u64> = survivors(&params, now, all).iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![0, 3, 5]);
    }
}
