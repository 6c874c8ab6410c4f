//! `vigie`: the command line of the vigie engine.
//!
//! - `vigie replay`: pushes recorded feeds through the indicator dataflow as fast as it can,
//!   writes the final indicators and clashes, and reports throughput, latency and rejections.
//!   With no arguments, it replays the embedded real sample on the embedded configuration.
//! - `vigie run`: the long-running engine on live feeds: HTTP ingest (records, CSV, the
//!   InfluxDB write API) and MQTT (an embedded broker unless one is configured), a durable
//!   ingest log, the store, `/metrics`. `vigie run --demo` plays a scripted day on Marseille live (every feed).
//! - `vigie query`: reads the embedded store a replay wrote (`--store`): the latest figures
//!   per zone, a range with a step, the revisions of a value, the explanation of a zone and hour.
//! - `vigie backtest`: replays a history and scores the forecast known at each cutoff against
//!   what happened (models v1 and v2 against naive forecasts); Markdown, JSON and SVG reports.
//! - `vigie mqtt-acl`: the password and ACL files of a Mosquitto broker, from the sources.
//! - `vigie check-config`: loads and validates a configuration, and says what it holds.
//!
//! The binary holds the command line (`cmd/`: one module a command) and the wiring of
//! `vigie run` (`run/`); what `vigie run` serves over HTTP is the `vigie-server` crate, and
//! everything else the workspace's crates (`ARCHITECTURE.md`).

mod cmd;
mod run;
mod sink;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "vigie",
    version,
    about = "Risk levels and protection rates per zone and hour, incrementally, for a city's operations centre",
    after_help = "New here? `vigie replay` replays a bundled real sample and prints a report;\n\
                  `vigie run --demo` runs the live engine and plays a scripted day on Marseille into it\n\
                  over MQTT and HTTP; then open the wall it prints."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replays recorded feeds through the indicator graph and prints a report.
    Replay(cmd::replay::ReplayArgs),
    /// Runs the engine on live feeds (HTTP, MQTT) until SIGTERM or Ctrl-C; `--demo` plays a
    /// scripted day on Marseille into it live.
    Run(run::RunArgs),
    /// Scores the forecasts as known at each cutoff of a history against what happened.
    Backtest(cmd::backtest::BacktestArgs),
    /// Reads the embedded store: latest figures, ranges, revisions, explanations.
    Query(cmd::query::QueryArgs),
    /// Writes a Mosquitto password file and ACL file from `[[sources]]` and `[ingest.mqtt]`:
    /// each source may publish on its own topics only.
    MqttAcl(cmd::mqtt_acl::MqttAclArgs),
    /// Validates a configuration file and prints what it holds.
    CheckConfig {
        /// The configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
}

/// What the logs show unless `VIGIE_LOG` says otherwise: vigie's own notices (start, stop,
/// recovery, the demo's scenes) and its libraries' warnings and errors. The embedded broker's
/// lines are left out, whatever `VIGIE_LOG` says unless it names `rumqttd`: it logs each client
/// that drops its connection as an error (`VIGIE_LOG=info,rumqttd=warn` shows them).
const DEFAULT_LOG: &str = "warn,rumqttd=off,vigie=info,vigie_server=info,vigie_connectors=info,\
                           vigie_store=info,vigie_alerts=info";

/// Leveled logs on standard error, one line each: time (UTC), level, message. `VIGIE_LOG`
/// filters them in `RUST_LOG`'s syntax (`VIGIE_LOG=warn`, `VIGIE_LOG=debug`,
/// `VIGIE_LOG=warn,vigie=info`).
fn init_logs() {
    let spec = match std::env::var("VIGIE_LOG") {
        // The broker stays out unless named.
        Ok(s) if !s.contains("rumqttd") => format!("{s},rumqttd=off"),
        Ok(s) => s,
        Err(_) => DEFAULT_LOG.to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&spec).unwrap_or_else(|e| {
        eprintln!("vigie: VIGIE_LOG={spec:?} is not a log filter ({e}): the default is used");
        tracing_subscriber::EnvFilter::new(DEFAULT_LOG)
    });
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logs();
    let result = match cli.command {
        Command::Replay(args) => cmd::replay::run(args),
        Command::Query(args) => cmd::query::run(args),
        Command::Backtest(args) => cmd::backtest::run(args),
        Command::Run(args) => run::run(args),
        Command::MqttAcl(args) => cmd::mqtt_acl::run(args),
        Command::CheckConfig { config } => cmd::check_config::run(&config),
    };
    match result {
        Ok(code) => code,
        // A reader that stops early (`| head`) is not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vigie: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
