//! `vigie run`: the long-running engine, wired together. This module is the composition root:
//! it builds every part in order, hands each its collaborators before it starts, and stops
//! them in order on the one shutdown signal ([`vigie_server::Shutdown`]).
//!
//! ```text
//!  HTTP ──> vigie-server (ingest routes) ─┐                    ┌─> sinks: store, InfluxDB
//!  MQTT ──> MQTT source (connectors) ─────┴─> ingest log ──> engine thread ─┬─> board ──> query API, stream, wall
//!  (embedded broker, or an external one)      (fsynced)      (engine.rs)    ├─> alert thread (alerts.rs) ──> notifiers
//!                                                                           └─> recent records ──> live explain
//! ```
//!
//! 1. The configuration, the data folders; with `--demo`, the demo's source ([`demo`]).
//! 2. The embedded MQTT broker unless `[ingest.mqtt]` names one ([`broker`]).
//! 3. The ingest log, compacted at start ([`engine::Survivors`], a record at a time) and while
//!    running, then read back into the engine a batch at a time as it opens.
//! 4. The store and the sinks, the board, the index of recent records, the alerting
//!    ([`alerts`]) with its probe of the sources' counters.
//! 5. The engine thread ([`engine`]), the server (`vigie_server::serve`), the MQTT source, the
//!    demo's feeder.
//! 6. On SIGTERM, Ctrl-C, or an engine failure: the server finishes its requests and ends its
//!    streams, the sources stop and let go of the log, the engine closes its last epoch and
//!    flushes the store, the alerting stops.

pub mod alerts;
pub mod broker;
pub mod demo;
pub mod engine;

use crate::sink::Sinks;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use vigie_config::Config;
use vigie_connectors::ingest::{Compaction, IngestLog, Metrics, MqttCounters, MqttSource};
use vigie_engine::GraphParams;
use vigie_model::clock::wall_hour;
use vigie_model::{EngineStats, Record};
use vigie_queries::recent::{RecentRecords, DEFAULT_CAPACITY};
use vigie_server::{AppState, Board, Parts, Shutdown};

/// Rejections of MQTT messages kept for listing.
const MQTT_REJECTIONS: usize = 100;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Configuration file (TOML). Default: the embedded default configuration (Marseille);
    /// with --demo vancouver, the embedded Vancouver configuration.
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
    /// Demo for newcomers: plays a scenario live into this engine over MQTT and HTTP, its
    /// times relative to the current hour, so the indicators move while you watch. `marseille`
    /// (the default): a scripted day on every feed on Marseille's arrondissements;
    /// `vancouver`: the bundled Vancouver incidents of Dec 2020 alone.
    #[arg(long, value_enum, value_name = "SCENARIO", num_args = 0..=1, default_missing_value = "marseille")]
    pub demo: Option<demo::Scenario>,
    /// Demo speed: scenario seconds per wall second (3600: one hour a second).
    #[arg(long, value_name = "X", default_value_t = 3600.0, requires = "demo")]
    pub demo_speed: f64,
    /// Timely workers and processes. Ingest, the store and the server run on process 0
    /// (worker 0 takes the records); the other workers and processes hold their share of the
    /// dataflow's state and work. A process other than 0 of a cluster runs workers only.
    #[command(flatten)]
    pub cluster: crate::cmd::cluster::ClusterArgs,
}

/// Where the run keeps its data.
struct Dirs {
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

/// Makes what vigie keeps its owner's alone: the process's file-creation mask becomes 077 (new
/// files 0600, new folders 0700), and the data folders — `--data` when given, the ingest log's,
/// the store's and the alerting's — are created if need be and set to 0700, so that files an
/// older vigie left there are out of other users' reach as well.
fn owner_only(dirs: &Dirs, data: Option<&std::path::Path>) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    for dir in data.into_iter().chain([
        dirs.log.as_path(),
        dirs.store.as_path(),
        dirs.alerts.as_path(),
    ]) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} its owner's only", dir.display()))?;
    }
    Ok(())
}

pub fn run(mut args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut config = match &args.config {
        Some(p) => Config::from_file(p).with_context(|| format!("loading {}", p.display()))?,
        None => match args.demo {
            Some(scenario) => scenario.config(),
            None => Config::embedded_default(),
        },
    };
    let workers = args.cluster.workers(config.engine.workers);
    let cluster = args.cluster.timely_config(workers)?;
    if args.cluster.process > 0 {
        tracing::info!(
            "vigie run: process {} of {}: {workers} worker(s) of the dataflow; ingest, the store and the server run on process 0",
            args.cluster.process, args.cluster.processes
        );
        engine::follow(&config, cluster)?;
        tracing::info!("vigie run: stopped");
        return Ok(ExitCode::SUCCESS);
    }
    if args.demo.is_some() && args.data.is_none() {
        args.data = Some(demo::data_dir()?);
    }
    let dirs = Dirs::of(&args, &config);
    owner_only(&dirs, args.data.as_deref())?;
    let data_folder = dirs
        .log
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let demo_token = match args.demo {
        Some(scenario) => {
            scenario.prepare(&mut config)?;
            Some(demo::add_source(&mut config, &data_folder)?)
        }
        None => None,
    };
    let epoch = Duration::from_millis(args.epoch_ms.unwrap_or(config.ingest.epoch_ms).max(1));
    let listen = args
        .listen
        .clone()
        .unwrap_or_else(|| config.ingest.http.listen.clone());
    // The embedded broker, when no external one is configured; the MQTT source's
    // configuration either way.
    let mut embedded = None;
    let mqtt_config = match &config.ingest.mqtt {
        Some(_) => config.clone(),
        None => {
            let addr = broker::listen_addr(
                args.mqtt_listen
                    .as_deref()
                    .unwrap_or(&config.ingest.embedded_mqtt_listen),
            )?;
            let secret = broker::subscriber_secret();
            let logins = broker::Logins::of(&config, &secret)?;
            let who = if logins.is_some() {
                "logins of [[sources]]"
            } else {
                "anonymous"
            };
            let secret = match &logins {
                Some(_) => Some(broker::write_secret(&data_folder, &secret)?),
                None => None,
            };
            let b = broker::EmbeddedBroker::start(addr, logins)?;
            tracing::info!(
                "vigie run: embedded MQTT broker on mqtt://{} ({who}, loopback only; topics vigie/<feed>, vigie/<feed>/<zone>)",
                b.addr
            );
            let c = broker::source_config(&config, b.addr, secret)?;
            embedded = Some(b);
            c
        }
    };
    let http_listener =
        std::net::TcpListener::bind(&listen).with_context(|| format!("listening on {listen}"))?;
    http_listener.set_nonblocking(true)?;
    let http_addr = http_listener.local_addr()?;
    let config = Arc::new(config);
    let mqtt_config = Arc::new(mqtt_config);
    let shutdown = Shutdown::new();

    // The ingest log: compacted first (superseded upserts and records the clock has made
    // irrelevant go), then opened with a running compaction as it grows.
    let params = GraphParams::from_config(&config);
    let (kept, before) =
        IngestLog::compact(&dirs.log, &mut engine::Survivors::new(&params, wall_hour()))
            .with_context(|| format!("compacting the ingest log in {}", dirs.log.display()))?;
    if kept < before {
        tracing::info!("vigie run: compacted the ingest log: kept {kept} of {before} records");
    }
    let (log_tx, log_rx) = mpsc::channel::<Vec<Record>>();
    let compaction = Compaction {
        every: Duration::from_millis(config.ingest.compact_every_ms),
        min_bytes: config.ingest.compact_min_bytes,
        keep: Box::new(move || Box::new(engine::Survivors::new(&params, wall_hour()))),
    };

    // What the sources count, read by the alerting's deadman rules and the feeds' health.
    let http_counts = Arc::new(Metrics::new());
    let mqtt_counts = Arc::new(MqttCounters::new(MQTT_REJECTIONS));
    let stats = Arc::new(EngineStats::default());
    let mut sinks = Sinks::open(
        Some(&dirs.store),
        &config.store,
        config.outputs.influxdb.as_ref(),
        config.timezone,
    )?;
    sinks.log_acks = false;
    let store = sinks.store().context("the store is open")?;
    let board = Board::new(config.clone(), stats.clone());
    let recent = Arc::new(RecentRecords::new(
        config.model.past_hours,
        DEFAULT_CAPACITY,
    ));
    let probe = alerts::probe(
        &config,
        &mqtt_config,
        http_counts.clone(),
        mqtt_counts.clone(),
    );
    let alerting = alerts::start(&config, &dirs.alerts, probe, shutdown.flag())
        .with_context(|| format!("starting alerting in {}", dirs.alerts.display()))?;

    // What the log holds is read back into the engine as the log opens, a bounded channel
    // of batches between them: a restart holds a few batches, never the whole log.
    let (recovered_tx, recovered_rx) = mpsc::sync_channel::<Vec<Record>>(1);
    // The log hands committed batches to a forwarder that stamps their arrival and counts the
    // queue, then to the engine.
    let (eng_tx, eng_rx) = mpsc::channel::<(Instant, Vec<Record>)>();
    let forwarder = {
        let stats = stats.clone();
        std::thread::spawn(move || {
            for batch in log_rx {
                stats
                    .queued
                    .fetch_add(batch.len() as i64, Ordering::Relaxed);
                if eng_tx.send((Instant::now(), batch)).is_err() {
                    break;
                }
            }
        })
    };
    let engine_thread = {
        let to_board = board.clone();
        let mut to_alerts = alerting.observer();
        let (http, mqtt) = (http_counts.clone(), mqtt_counts.clone());
        let parts = engine::Engine {
            config: config.clone(),
            sinks,
            recovered: recovered_rx,
            batches: eng_rx,
            epoch,
            stats: stats.clone(),
            recent: recent.clone(),
            // The feeds' health counts what the sources rejected, by feed.
            rejections: Box::new(move || {
                let mut by_feed = mqtt.rejected_by_feed();
                for (feed, n) in http.rejected_by_feed() {
                    *by_feed.entry(feed.to_string()).or_default() += n;
                }
                by_feed
            }),
            observers: vec![
                Box::new(move |c, h, health| to_board.observe(c, h, health)),
                Box::new(move |c, h, _| to_alerts(c, h)),
            ],
            point_sources: vec![alerting.points()],
        };
        let stop = shutdown.clone();
        std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                let r = engine::run(parts, cluster);
                if let Err(e) = &r {
                    // Taking records nobody computes would hide an outage: stop the sources.
                    tracing::error!("vigie run: the engine stopped: {e:#}");
                    stop.trigger();
                }
                r
            })
            .context("starting the engine thread")?
    };

    let opened = IngestLog::open_streaming(&dirs.log, log_tx, Some(compaction), &mut |batch| {
        // The engine gone (it failed and said why), the rest is not needed.
        let _ = recovered_tx.send(batch);
    })
    .with_context(|| format!("opening the ingest log in {}", dirs.log.display()))?;
    drop(recovered_tx);
    if opened.truncated_bytes > 0 {
        tracing::warn!(
            "vigie run: cut {} bytes of an unfinished (never acknowledged) batch from the ingest log",
            opened.truncated_bytes
        );
    }

    let state = AppState::new(Parts {
        config: config.clone(),
        log: opened.log.clone(),
        log_dir: dirs.log.clone(),
        compactions: opened.compactions.clone(),
        ingest_metrics: http_counts,
        mqtt: mqtt_config
            .ingest
            .mqtt
            .is_some()
            .then(|| mqtt_counts.clone()),
        engine: stats,
        board: board.clone(),
        store,
        recent,
        alerts: alerting.service.clone(),
        shutdown: shutdown.clone(),
    })
    .map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mqtt_source = match &mqtt_config.ingest.mqtt {
        None => None,
        Some(m) => {
            let url = m.url.clone();
            let source =
                MqttSource::start(mqtt_config.clone(), opened.log.clone(), mqtt_counts.clone())
                    .map_err(anyhow::Error::msg)
                    .context("starting the MQTT source")?;
            tracing::info!("vigie run: MQTT source on {url}");
            Some(source)
        }
    };
    let demo = match demo_token {
        Some(token) => Some(demo::start(demo::Demo {
            scenario: args.demo.unwrap_or(demo::Scenario::Marseille),
            config: config.clone(),
            http: http_addr,
            token,
            mqtt: embedded.as_ref().map(|b| b.addr),
            speed: args.demo_speed,
            counters: mqtt_counts,
            board,
            stopping: shutdown.flag(),
        })?),
        None => None,
    };
    // The server holds the log through its state; the sources hold their own handles.
    drop(opened.log);
    tracing::info!(
        "vigie run: listening on http://{http_addr} (ingest log {}, store {})",
        dirs.log.display(),
        dirs.store.display()
    );
    tracing::info!(
        "vigie run: the wall on http://{http_addr}/ (API described at http://{http_addr}/api/openapi.json)"
    );
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(http_listener)
            .context("serving the HTTP listener")?;
        vigie_server::serve(listener, state)
            .await
            .context("serving HTTP")
    });
    // However serving ended, everything stops.
    shutdown.trigger();
    if let Some(source) = mqtt_source {
        source.stop();
    }
    if let Some(d) = demo {
        let _ = d.join();
    }
    // Every handle on the log is gone once the server and the sources have stopped: the log
    // thread ends, the forwarder ends, and the engine closes its last epoch and flushes the
    // store.
    runtime.shutdown_timeout(Duration::from_secs(5));
    let _ = opened.thread.join();
    let _ = forwarder.join();
    let engine_result = engine_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the engine thread panicked"))?;
    alerting.join();
    served?;
    engine_result?;
    tracing::info!("vigie run: stopped");
    Ok(ExitCode::SUCCESS)
}
