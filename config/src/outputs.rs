//! Where results go besides the output file: the `[outputs]` section.
//!
//! For now one output, `[outputs.influxdb]`: the InfluxDB 2 sink of `vigie-connectors`
//! (`connectors/src/influx`). The section is optional; without it nothing is sent anywhere.
//! The configuration names where the token is (an environment variable or a file), never the
//! token itself, so that a configuration can be shown, logged or committed.

use serde::Deserialize;
use std::path::PathBuf;

/// The `[outputs]` section.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Outputs {
    /// `[outputs.influxdb]`: the InfluxDB 2 sink, if configured.
    pub influxdb: Option<InfluxConfig>,
}

/// `[outputs.influxdb]`: an InfluxDB 2 server (or one that speaks its write API, such as
/// VictoriaMetrics) that receives the engine's points.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxConfig {
    /// Base URL of the server, `http://host:port` or `https://host:port`.
    pub url: String,
    /// The organization (`org` of `/api/v2/write`).
    pub org: String,
    /// The bucket (`bucket` of `/api/v2/write`).
    pub bucket: String,
    /// Name of the environment variable that holds the API token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File that holds the API token (surrounding whitespace is ignored). Relative to the
    /// configuration file's directory once loaded.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Points per write request, at most.
    #[serde(default = "default_batch_points")]
    pub batch_points: usize,
    /// Milliseconds a point may wait for its batch to fill before the batch is sent anyway.
    #[serde(default = "default_batch_ms")]
    pub batch_ms: u64,
    /// Directory of the on-disk buffer. Relative to the configuration file's directory
    /// once loaded. One running sink per directory.
    #[serde(default = "default_buffer_dir")]
    pub buffer_dir: PathBuf,
    /// Bytes of unconfirmed points the buffer holds at most; beyond, `send` blocks.
    #[serde(default = "default_buffer_max_bytes")]
    pub buffer_max_bytes: u64,
    /// First delay before a failed write is retried (milliseconds); it doubles at each
    /// failure…
    #[serde(default = "default_retry_min_ms")]
    pub retry_min_ms: u64,
    /// …up to this (milliseconds).
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Milliseconds a write request may take before it counts as failed.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_batch_points() -> usize {
    5000
}
fn default_batch_ms() -> u64 {
    1000
}
fn default_buffer_dir() -> PathBuf {
    PathBuf::from("data/influx-buffer")
}
fn default_buffer_max_bytes() -> u64 {
    256 << 20
}
fn default_retry_min_ms() -> u64 {
    100
}
fn default_retry_max_ms() -> u64 {
    30_000
}
fn default_timeout_ms() -> u64 {
    10_000
}

/// The smallest `buffer_max_bytes`: room for a few batches of points.
pub const MIN_BUFFER_BYTES: u64 = 1 << 20;

impl InfluxConfig {
    /// A configuration with the given server, org and bucket and every other key at its
    /// default (no token).
    pub fn new(url: &str, org: &str, bucket: &str) -> InfluxConfig {
        InfluxConfig {
            url: url.to_string(),
            org: org.to_string(),
            bucket: bucket.to_string(),
            token_env: None,
            token_file: None,
            batch_points: default_batch_points(),
            batch_ms: default_batch_ms(),
            buffer_dir: default_buffer_dir(),
            buffer_max_bytes: default_buffer_max_bytes(),
            retry_min_ms: default_retry_min_ms(),
            retry_max_ms: default_retry_max_ms(),
            timeout_ms: default_timeout_ms(),
        }
    }

    /// Checks every value; the error names the key (relative to `[outputs.influxdb]`).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let url = self.url.trim();
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or((
                "url",
                format!("must start with http:// or https://, got {url:?}"),
            ))?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(("url", format!("has no valid host: {url:?}")));
        }
        if self.org.trim().is_empty() {
            return Err(("org", "must not be empty".into()));
        }
        if self.bucket.trim().is_empty() {
            return Err(("bucket", "must not be empty".into()));
        }
        if self.token_env.is_some() && self.token_file.is_some() {
            return Err((
                "token_env",
                "give token_env or token_file, not both".to_string(),
            ));
        }
        if let Some(name) = &self.token_env {
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err(("token_env", format!("not a variable name: {name:?}")));
            }
        }
        if self
            .token_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(("token_file", "must not be empty".into()));
        }
        if !(1..=1_000_000).contains(&self.batch_points) {
            return Err((
                "batch_points",
                format!("must be from 1 to 1000000, got {}", self.batch_points),
            ));
        }
        if !(1..=3_600_000).contains(&self.batch_ms) {
            return Err((
                "batch_ms",
                format!("must be from 1 to 3600000, got {}", self.batch_ms),
            ));
        }
        if self.buffer_dir.as_os_str().is_empty() {
            return Err(("buffer_dir", "must not be empty".into()));
        }
        if self.buffer_max_bytes < MIN_BUFFER_BYTES {
            return Err((
                "buffer_max_bytes",
                format!(
                    "must be at least {MIN_BUFFER_BYTES} (1 MiB), got {}",
                    self.buffer_max_bytes
                ),
            ));
        }
        if !(1..=3_600_000).contains(&self.retry_min_ms) {
            return Err((
                "retry_min_ms",
                format!("must be from 1 to 3600000, got {}", self.retry_min_ms),
            ));
        }
        if self.retry_max_ms < self.retry_min_ms || self.retry_max_ms > 3_600_000 {
            return Err((
                "retry_max_ms",
                format!(
                    "must be from retry_min_ms ({}) to 3600000, got {}",
                    self.retry_min_ms, self.retry_max_ms
                ),
            ));
        }
        if !(1..=3_600_000).contains(&self.timeout_ms) {
            return Err((
                "timeout_ms",
                format!("must be from 1 to 3600000, got {}", self.timeout_ms),
            ));
        }
        Ok(())
    }
}
