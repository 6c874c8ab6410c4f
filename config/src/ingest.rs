//! The `[ingest]` section and the `[[sources]]` list: how `vigie run` takes live feeds.
//!
//! Every accepted record is appended to the durable ingest log (`ingest.log_dir`) before it
//! is acknowledged. Sources are who may write: each has a name, the feeds it may write, an HTTP
//! bearer token and MQTT credentials, all given as where to read the secret (an environment
//! variable or a file), never the secret itself, so a configuration can be shown and committed.

use serde::Deserialize;
use std::path::PathBuf;
use vigie_model::Feed;

/// `[ingest]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// The durable ingest log's folder, relative to the configuration file once loaded.
    #[serde(default = "default_log_dir")]
    pub log_dir: PathBuf,
    /// How often `vigie run` closes an epoch and updates the indicators (milliseconds).
    #[serde(default = "default_epoch_ms")]
    pub epoch_ms: u64,
    /// Rejected lines kept for listing (the dead-letter store); older ones are dropped and
    /// counted.
    #[serde(default = "default_dead_letters")]
    pub dead_letters: usize,
    /// `[ingest.http]`: the HTTP ingest endpoint.
    #[serde(default)]
    pub http: HttpConfig,
}

/// `[ingest.http]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Largest request body accepted (bytes); larger: 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Most lines (records) in one request; more: 413.
    #[serde(default = "default_max_lines")]
    pub max_lines: usize,
}

/// One `[[sources]]` entry: who may write which feeds.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The source's name, in metrics and dead letters.
    pub name: String,
    /// The feeds it may write (names as in records: incident, density, …).
    pub feeds: Vec<String>,
    /// Environment variable holding its HTTP bearer token…
    #[serde(default)]
    pub token_env: Option<String>,
    /// …or file holding it (relative to the configuration file once loaded).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

fn default_log_dir() -> PathBuf {
    PathBuf::from("data/ingest")
}
fn default_epoch_ms() -> u64 {
    1000
}
fn default_dead_letters() -> usize {
    1000
}
fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_max_body() -> usize {
    8 << 20
}
fn default_max_lines() -> usize {
    100_000
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            max_body_bytes: default_max_body(),
            max_lines: default_max_lines(),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            log_dir: default_log_dir(),
            epoch_ms: default_epoch_ms(),
            dead_letters: default_dead_letters(),
            http: HttpConfig::default(),
        }
    }
}

impl IngestConfig {
    /// Checks the values; the error names the key (under `ingest.`).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.epoch_ms == 0 {
            return Err(("epoch_ms", "must be at least 1".into()));
        }
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err((
                "http.listen",
                format!(
                    "`{}` is not an address such as 127.0.0.1:8080",
                    self.http.listen
                ),
            ));
        }
        if self.http.max_body_bytes == 0 {
            return Err(("http.max_body_bytes", "must be at least 1".into()));
        }
        if self.http.max_lines == 0 {
            return Err(("http.max_lines", "must be at least 1".into()));
        }
        Ok(())
    }
}

impl SourceConfig {
    /// Checks the values; the error names the key (under `sources[i].`).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.name.trim().is_empty() {
            return Err(("name", "must not be empty".into()));
        }
        if self.feeds.is_empty() {
            return Err(("feeds", "must list at least one feed".into()));
        }
        for f in &self.feeds {
            if Feed::parse(f).is_none() {
                return Err(("feeds", format!("`{f}` is not a feed")));
            }
        }
        if self.token_env.is_some() && self.token_file.is_some() {
            return Err(("token_env", "give token_env or token_file, not both".into()));
        }
        if self.token_env.is_none() && self.token_file.is_none() {
            return Err(("token_env", "give token_env or token_file".into()));
        }
        Ok(())
    }

    /// The feeds it may write.
    pub fn allowed(&self) -> Vec<Feed> {
        self.feeds.iter().filter_map(|f| Feed::parse(f)).collect()
    }

    /// Reads its token from the environment or the file (trimmed; never logged).
    pub fn read_token(&self) -> Result<String, String> {
        let t = match (&self.token_env, &self.token_file) {
            (Some(var), _) => std::env::var(var).map_err(|e| format!("{var}: {e}"))?,
            (None, Some(path)) => {
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?
            }
            (None, None) => return Err("no token_env or token_file".into()),
        };
        let t = t.trim().to_string();
        if t.is_empty() {
            return Err(format!("the token of source {} is empty", self.name));
        }
        Ok(t)
    }
}
