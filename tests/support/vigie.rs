//! The one harness of the binary's end-to-end tests (`tests/e2e.rs`, `tests/alerts.rs`,
//! `tests/wall.rs`): `vigie run` started on a data folder with a configuration written for the
//! test, on free loopback ports (HTTP, and the embedded MQTT broker unless the configuration
//! names one), killed when dropped. Needs `mod client;` beside it.
#![allow(dead_code)]

use crate::client;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The HTTP token of the source `ops`.
pub const SOURCE_TOKEN: &str = "s3cret-token";
/// The API's viewer (`wall`) and operator (`duty`) tokens.
pub const VIEWER: &str = client::METRICS_TOKEN;
pub const OPERATOR: &str = "duty-operator-token";

/// What a test's `vigie run` is given.
pub struct Setup<'a> {
    /// The feeds the source `ops` may write.
    pub feeds: &'a [&'a str],
    /// Configuration appended at the end; `MQTT_PORT` in it is replaced by the embedded
    /// broker's port. With an `[ingest.mqtt]` section, there is no embedded broker.
    pub extra: &'a str,
    /// The zone file (default: the Marseille zones).
    pub zones: Option<PathBuf>,
    /// Start the embedded broker even when `extra` is not empty (it has no `[ingest.mqtt]`).
    pub embedded_broker: bool,
    /// More arguments of `vigie run` (`--workers 2`, say).
    pub args: &'a [&'a str],
    /// Keep the default window of dates live ingest takes (`[ingest] max_past_days` and
    /// `max_future_days`); otherwise any date of the past century is taken, as the tests
    /// post records of fixed dates.
    pub live_window: bool,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup {
            feeds: &["incident"],
            extra: "",
            zones: None,
            embedded_broker: true,
            args: &[],
            live_window: false,
        }
    }
}

impl Setup<'_> {
    /// Writes `dir/run.toml` (see [`Vigie::start`]), `MQTT_PORT` in `extra` replaced by
    /// `mqtt`; its path.
    pub fn write(&self, dir: &Path, mqtt: u16) -> PathBuf {
        let zones = self
            .zones
            .clone()
            .unwrap_or_else(|| repo().join("config/zones/marseille.geojson"));
        let feeds: Vec<String> = self.feeds.iter().map(|f| format!("{f:?}")).collect();
        let config = dir.join("run.toml");
        std::fs::write(
            &config,
            format!(
                "zones = {:?}\n[ingest]\nepoch_ms = 100\ncompact_every_ms = 50\ncompact_min_bytes = 16384\n{}\
                 [[sources]]\nname = \"ops\"\nfeeds = [{}]\ntoken_env = \"VIGIE_TEST_TOKEN\"\n\
                 [[api.tokens]]\nname = \"duty\"\nrole = \"operator\"\ntoken_env = \"VIGIE_TEST_OPERATOR\"\n\
                 [[api.tokens]]\nname = \"wall\"\nrole = \"viewer\"\ntoken_env = \"VIGIE_TEST_VIEWER\"\n{}",
                zones.display().to_string(),
                if self.live_window { "" } else { "max_past_days = 36500\n" },
                feeds.join(", "),
                self.extra.replace("MQTT_PORT", &mqtt.to_string())
            ),
        )
        .unwrap();
        config
    }
}

/// The repository.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running `vigie run`.
pub struct Vigie {
    pub child: Child,
    pub port: u16,
    /// The embedded broker's port (unused when the configuration names a broker).
    pub mqtt: u16,
    /// Its standard error.
    pub log: PathBuf,
}

impl Vigie {
    /// `vigie run` on `dir/data` with `dir/run.toml`: the zones, epochs of 100 ms, the ingest
    /// log compacted while running from 16 KiB on (so the tests that kill vigie kill it around
    /// compactions too), the source `ops` with [`SOURCE_TOKEN`], the API's viewer and operator,
    /// then `setup.extra`. Waits until `/health` answers.
    pub fn start(dir: &Path, setup: Setup) -> Vigie {
        let (port, mqtt) = (client::free_port(), client::free_port());
        let config = setup.write(dir, mqtt);
        let log = dir.join("vigie.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigie"));
        cmd.args(["run", "--config"])
            .arg(&config)
            .arg("--data")
            .arg(dir.join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(setup.args);
        if setup.embedded_broker && !setup.extra.contains("[ingest.mqtt]") {
            cmd.args(["--mqtt-listen", &format!("127.0.0.1:{mqtt}")]);
        }
        let child = cmd
            .env("VIGIE_TEST_TOKEN", SOURCE_TOKEN)
            .env("VIGIE_TEST_OPERATOR", OPERATOR)
            .env("VIGIE_TEST_VIEWER", VIEWER)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("vigie starts");
        client::wait_healthy(port, Some(&log));
        Vigie {
            child,
            port,
            mqtt,
            log,
        }
    }

    /// `http://127.0.0.1:PORT` and `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// One request (JSON body); `None` if vigie does not answer.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> Option<(u16, String)> {
        client::request(self.port, method, path, token, "application/json", "", body)
    }

    /// One request, its answer as JSON (null when it is not).
    pub fn json(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let (code, text) = self
            .request(method, path, token, body)
            .expect("vigie answers");
        (
            code,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Posts NDJSON records as `ops`; asserts they were all accepted.
    pub fn post_records(&self, lines: &[String]) {
        let (code, body) = self
            .request(
                "POST",
                "/api/v1/records",
                Some(SOURCE_TOKEN),
                &lines.join("\n"),
            )
            .expect("vigie answers");
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["accepted"].as_u64(), Some(lines.len() as u64), "{body}");
    }

    /// The sum of a metric's samples whose labels contain `labels` (0 if vigie is down).
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        client::metric(self.port, name, labels)
    }

    /// SIGTERM, as an operator stops it; waits for a clean exit.
    pub fn stop(mut self) {
        client::stop_cleanly(&mut self.child);
    }
}

impl Drop for Vigie {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
