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
    /// `[ingest.mqtt]`: the MQTT subscriber of an external broker; absent, `vigie run`
    /// starts an embedded broker and subscribes to it.
    #[serde(default)]
    pub mqtt: Option<MqttConfig>,
    /// Loopback address of the embedded MQTT broker (used when `[ingest.mqtt]` is absent).
    #[serde(default = "default_embedded_mqtt_listen")]
    pub embedded_mqtt_listen: String,
    /// While running, the ingest log is compacted when it holds at least this many bytes (and
    /// twice what the last compaction left)…
    #[serde(default = "default_compact_min_bytes")]
    pub compact_min_bytes: u64,
    /// …checked at most this often (milliseconds).
    #[serde(default = "default_compact_every_ms")]
    pub compact_every_ms: u64,
    /// Live ingest refuses a record whose `ts` is more than this many days after now…
    #[serde(default = "default_max_future_days")]
    pub max_future_days: u32,
    /// …or more than this many days before now (file replay reads any date).
    #[serde(default = "default_max_past_days")]
    pub max_past_days: u32,
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
    /// A new connection's first request head (request line and headers) must arrive in full
    /// within this many seconds, else the connection is closed: a half request line does not
    /// hold a connection.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_secs: u64,
    /// Between two requests of a keep-alive connection, the next head must arrive in full
    /// within this many seconds, else the connection is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// A request body must arrive in full within this many seconds of its head; else 408.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
    /// Open HTTP connections at most (also bounded by the process's file descriptors less
    /// `reserved_fds`). A connection over the cap takes the place of the oldest one with no
    /// request under way, or is closed at once when every one has a request under way.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// File descriptors kept for everything but HTTP connections (the ingest log, the store,
    /// the MQTT connections, the sinks).
    #[serde(default = "default_reserved_fds")]
    pub reserved_fds: usize,
    /// Live streams (`GET /api/v1/stream`) open at once, in total (more: 503)…
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// …and per caller (per API token, or all callers without one together; more: 429).
    #[serde(default = "default_max_streams_per_token")]
    pub max_streams_per_token: usize,
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
    /// Its MQTT user name: the broker (the embedded one, or Mosquitto through
    /// `vigie mqtt-acl`) lets it in with this name and its password, and lets it publish on
    /// the topics of its feeds only.
    #[serde(default)]
    pub mqtt_username: Option<String>,
    /// Environment variable holding its MQTT password…
    #[serde(default)]
    pub mqtt_password_env: Option<String>,
    /// …or file holding it (relative to the configuration file once loaded).
    #[serde(default)]
    pub mqtt_password_file: Option<PathBuf>,
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
fn default_embedded_mqtt_listen() -> String {
    "127.0.0.1:1883".into()
}
fn default_compact_min_bytes() -> u64 {
    64 << 20
}
fn default_compact_every_ms() -> u64 {
    60_000
}
/// The 30 days of the horizon ahead, with room for forecasts issued beyond it.
fn default_max_future_days() -> u32 {
    40
}
/// A year of history behind the baseline (52 weeks), and the horizon's past week.
fn default_max_past_days() -> u32 {
    400
}
fn default_max_body() -> usize {
    8 << 20
}
fn default_max_lines() -> usize {
    100_000
}
fn default_header_read_timeout() -> u64 {
    10
}
fn default_idle_timeout() -> u64 {
    60
}
fn default_body_timeout() -> u64 {
    60
}
fn default_max_connections() -> usize {
    10_000
}
fn default_reserved_fds() -> usize {
    512
}
fn default_max_streams() -> usize {
    256
}
fn default_max_streams_per_token() -> usize {
    16
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            max_body_bytes: default_max_body(),
            max_lines: default_max_lines(),
            header_read_timeout_secs: default_header_read_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            body_timeout_secs: default_body_timeout(),
            max_connections: default_max_connections(),
            reserved_fds: default_reserved_fds(),
            max_streams: default_max_streams(),
            max_streams_per_token: default_max_streams_per_token(),
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
            mqtt: None,
            embedded_mqtt_listen: default_embedded_mqtt_listen(),
            compact_min_bytes: default_compact_min_bytes(),
            compact_every_ms: default_compact_every_ms(),
            max_future_days: default_max_future_days(),
            max_past_days: default_max_past_days(),
        }
    }
}

/// The widest `max_future_days` / `max_past_days` (a century).
pub const MAX_WINDOW_DAYS: u32 = 36_500;

impl IngestConfig {
    /// The `ts` live ingest accepts at `now_us`: from `max_past_days` before to
    /// `max_future_days` after, in microseconds, both included.
    pub fn live_window(&self, now_us: i64) -> (i64, i64) {
        const DAY_US: i64 = 86_400_000_000;
        (
            now_us.saturating_sub(self.max_past_days as i64 * DAY_US),
            now_us.saturating_add(self.max_future_days as i64 * DAY_US),
        )
    }

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
        match self.embedded_mqtt_listen.parse::<std::net::SocketAddr>() {
            Ok(a) if a.ip().is_loopback() => {}
            _ => {
                return Err((
                    "embedded_mqtt_listen",
                    format!(
                        "`{}` is not a loopback address such as 127.0.0.1:1883 (the embedded broker takes anonymous clients)",
                        self.embedded_mqtt_listen
                    ),
                ))
            }
        }
        if self.compact_every_ms == 0 {
            return Err(("compact_every_ms", "must be at least 1".into()));
        }
        for (key, days) in [
            ("max_future_days", self.max_future_days),
            ("max_past_days", self.max_past_days),
        ] {
            if !(1..=MAX_WINDOW_DAYS).contains(&days) {
                return Err((key, format!("must be from 1 to {MAX_WINDOW_DAYS} days")));
            }
        }
        if self.http.max_body_bytes == 0 {
            return Err(("http.max_body_bytes", "must be at least 1".into()));
        }
        if self.http.max_lines == 0 {
            return Err(("http.max_lines", "must be at least 1".into()));
        }
        let at_least_one: [(&'static str, u64); 6] = [
            (
                "http.header_read_timeout_secs",
                self.http.header_read_timeout_secs,
            ),
            ("http.idle_timeout_secs", self.http.idle_timeout_secs),
            ("http.body_timeout_secs", self.http.body_timeout_secs),
            ("http.max_connections", self.http.max_connections as u64),
            ("http.max_streams", self.http.max_streams as u64),
            (
                "http.max_streams_per_token",
                self.http.max_streams_per_token as u64,
            ),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        Ok(())
    }
}

impl SourceConfig {
    /// Checks the values; the error names the key (under `sources[i].`).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        // The name prefixes the source's idempotency keys (`http/<name>/<key>`) and labels
        // its metrics: no `/` may make one source's keys another's.
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err((
                "name",
                "must be 1 to 64 letters, digits, `-`, `_` or `.`".into(),
            ));
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
        let mqtt_password = self.mqtt_password_env.is_some() || self.mqtt_password_file.is_some();
        if self.mqtt_password_env.is_some() && self.mqtt_password_file.is_some() {
            return Err((
                "mqtt_password_env",
                "give mqtt_password_env or mqtt_password_file, not both".into(),
            ));
        }
        match &self.mqtt_username {
            Some(u) => {
                if u.is_empty() || u.contains([':', '\n', '\r', ' ', '\0']) {
                    return Err((
                        "mqtt_username",
                        "must be non-empty, without `:`, spaces or line breaks".into(),
                    ));
                }
                if !mqtt_password {
                    return Err((
                        "mqtt_password_env",
                        "an MQTT user needs mqtt_password_env or mqtt_password_file".into(),
                    ));
                }
            }
            None if mqtt_password => {
                return Err(("mqtt_username", "an MQTT password needs a user name".into()))
            }
            None => {}
        }
        if self.token_env.is_none() && self.token_file.is_none() && self.mqtt_username.is_none() {
            return Err((
                "token_env",
                "give token_env or token_file (HTTP), or mqtt_username (MQTT)".into(),
            ));
        }
        Ok(())
    }

    /// Whether it has an HTTP token.
    pub fn has_token(&self) -> bool {
        self.token_env.is_some() || self.token_file.is_some()
    }

    /// Reads its MQTT password from the environment or the file (trailing line break
    /// trimmed; never logged); `None` for a source without MQTT credentials.
    pub fn read_mqtt_password(&self) -> Result<Option<String>, String> {
        let Some(p) = read_password(&self.mqtt_password_env, &self.mqtt_password_file)? else {
            return Ok(None);
        };
        if p.is_empty() {
            return Err(format!(
                "the MQTT password of source {} is empty",
                self.name
            ));
        }
        Ok(Some(p))
    }

    /// The feeds it may write.
    pub fn allowed(&self) -> Vec<Feed> {
        self.feeds.iter().filter_map(|f| Feed::parse(f)).collect()
    }

    /// Reads its token from the environment or the file (trimmed; never logged).
    pub fn read_token(&self) -> Result<String, String> {
        read_token(
            &self.token_env,
            &self.token_file,
            &format!("source {}", self.name),
        )
    }
}

/// A bearer token from the environment variable `env` or the file `file` (trimmed; never
/// logged); an error without either, or if it is empty. `whose` names it in that error.
pub(crate) fn read_token(
    env: &Option<String>,
    file: &Option<PathBuf>,
    whose: &str,
) -> Result<String, String> {
    let t = read_password(env, file)?.ok_or("no token_env or token_file")?;
    let t = t.trim().to_string();
    if t.is_empty() {
        return Err(format!("the token of {whose} is empty"));
    }
    Ok(t)
}

/// A password from the environment variable `env` or the file `file` (trailing line breaks
/// trimmed; never logged); `None` without either.
fn read_password(env: &Option<String>, file: &Option<PathBuf>) -> Result<Option<String>, String> {
    let p = match (env, file) {
        (Some(var), _) => std::env::var(var).map_err(|e| format!("{var}: {e}"))?,
        (None, Some(path)) => {
            std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(p.trim_end_matches(['\r', '\n']).to_string()))
}

/// `[ingest.mqtt]`: vigie subscribes to an MQTT broker (MQTT 3.1.1) and ingests what sensors
/// and other systems publish there.
///
/// ```toml
/// [ingest.mqtt]
/// url = "mqtt://127.0.0.1:1883"
/// topics = [{ filter = "city/density/+", feed = "density", source = "sensors", zone_from_topic = 2 }]
/// ```
///
/// No secret is held here: the password is read from `password_env` or `password_file` when
/// the source starts.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host[:port]` (default port 1883) or `mqtts://host[:port]` (TLS, 8883).
    pub url: String,
    /// The MQTT client id; with a persistent session, the broker keeps the session under it.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// `false` (the default): a persistent session, so QoS 1 messages published while vigie
    /// is away are delivered when it comes back. `true`: they are lost.
    #[serde(default)]
    pub clean_session: bool,
    /// Keep-alive interval (seconds).
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u64,
    /// User name, if the broker asks for one.
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variable holding the password…
    #[serde(default)]
    pub password_env: Option<String>,
    /// …or file holding it (relative to the configuration file once loaded).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM file of the certificate authorities trusted for `mqtts://` (relative to the
    /// configuration file once loaded); unset: the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// First delay before reconnecting after the broker went away; doubles…
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// …up to this.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// Largest message accepted (bytes). A larger one breaks the connection (MQTT cannot
    /// refuse one message): keep it at or above the broker's `message_size_limit`.
    #[serde(default = "default_max_payload")]
    pub max_payload_bytes: usize,
    /// What to subscribe to, and what each topic carries.
    pub topics: Vec<MqttTopic>,
}

/// One entry of `ingest.mqtt.topics`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTopic {
    /// The topic filter subscribed to (`+` one level, `#` the rest).
    pub filter: String,
    /// The feed of every record of these topics; a record whose own `feed` differs is refused.
    pub feed: String,
    /// Quality of service of the subscription: 0, 1 (the default) or 2. Only 1 and 2 survive
    /// an outage.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// The `[[sources]]` entry these messages come from; it must be allowed `feed`.
    pub source: String,
    /// A `[mappings.NAME]` that reads each payload line as a CSV row; unset: payloads are
    /// NDJSON (one JSON record per line).
    #[serde(default)]
    pub mapping: Option<String>,
    /// The CSV header of the mapping's rows (a message has none); unset: the payload's first
    /// line is the header.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Index (from 0) of the topic level holding the zone, used when a record has no `zone`
    /// nor `lat`/`lon`.
    #[serde(default)]
    pub zone_from_topic: Option<usize>,
    /// Index (from 0) of the topic level holding the sensor id, used when a record has no
    /// `sensor`.
    #[serde(default)]
    pub sensor_from_topic: Option<usize>,
}

fn default_client_id() -> String {
    "vigie".into()
}
fn default_keep_alive_s() -> u64 {
    30
}
fn default_reconnect_min_ms() -> u64 {
    100
}
fn default_reconnect_max_ms() -> u64 {
    30_000
}
fn default_max_payload() -> usize {
    8 << 20
}
fn default_qos() -> u8 {
    1
}

/// Where the broker is, from [`MqttConfig::endpoint`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MqttEndpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

/// Whether `filter` is a valid MQTT topic filter.
pub fn valid_topic_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, l)| {
        if l.contains('#') {
            *l == "#" && i == levels.len() - 1
        } else {
            !l.contains('+') || *l == "+"
        }
    })
}

/// Whether a topic matches a (valid) filter.
pub fn topic_matches(topic: &str, filter: &str) -> bool {
    // Wildcards at the first level do not match topics beginning with `$` (MQTT 4.7.2).
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut t = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match t.next() {
            Some(level) if f == "+" || f == level => {}
            _ => return false,
        }
    }
    t.next().is_none()
}

/// Whether some topic matches both (valid) filters.
pub fn filters_overlap(a: &str, b: &str) -> bool {
    let (mut x, mut y) = (a.split('/'), b.split('/'));
    loop {
        match (x.next(), y.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (Some(p), Some(q)) if p == "+" || q == "+" || p == q => {}
            _ => return false,
        }
    }
}

impl MqttConfig {
    /// The broker's address from `url`.
    pub fn endpoint(&self) -> Result<MqttEndpoint, String> {
        let (tls, rest) = if let Some(r) = self.url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = self.url.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err(format!(
                "`{}` is not mqtt://host:port or mqtts://host:port",
                self.url
            ));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("`{}`: unclosed `[`", self.url))?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err(format!("`{}`: unexpected `{after}`", self.url)),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() || host.contains(['/', '@', '?', '#', ' ']) {
            return Err(format!("`{}` has no valid host", self.url));
        }
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("`{}`: `{p}` is not a port", self.url))?,
        };
        Ok(MqttEndpoint {
            tls,
            host: host.to_string(),
            port,
        })
    }

    /// Checks the values against the sources and mappings; the error names the key (under
    /// `ingest.mqtt.`).
    pub fn validate(
        &self,
        sources: &[SourceConfig],
        mappings: &std::collections::BTreeMap<String, crate::Mapping>,
    ) -> Result<(), (String, String)> {
        let key = |k: &str| k.to_string();
        let endpoint = self.endpoint().map_err(|m| (key("url"), m))?;
        // MQTT 3.1.1 client ids: 1 to 23 characters are always accepted; brokers such as
        // Mosquitto take longer ones, so only emptiness and size are refused.
        if self.client_id.is_empty() || self.client_id.len() > 65535 {
            return Err((key("client_id"), "must be 1 to 65535 bytes".into()));
        }
        if !(1..=65535).contains(&self.keep_alive_s) {
            return Err((key("keep_alive_s"), "must be from 1 to 65535".into()));
        }
        if self.password_env.is_some() && self.password_file.is_some() {
            return Err((
                key("password_env"),
                "give password_env or password_file, not both".into(),
            ));
        }
        if (self.password_env.is_some() || self.password_file.is_some()) && self.username.is_none()
        {
            return Err((key("username"), "a password needs a username".into()));
        }
        if self.ca_file.is_some() && !endpoint.tls {
            return Err((key("ca_file"), "is for mqtts:// URLs only".into()));
        }
        if self.reconnect_min_ms == 0 {
            return Err((key("reconnect_min_ms"), "must be at least 1".into()));
        }
        if self.reconnect_max_ms < self.reconnect_min_ms {
            return Err((
                key("reconnect_max_ms"),
                "must be at least reconnect_min_ms".into(),
            ));
        }
        if self.max_payload_bytes == 0 {
            return Err((key("max_payload_bytes"), "must be at least 1".into()));
        }
        if self.topics.is_empty() {
            return Err((key("topics"), "must list at least one topic".into()));
        }
        for (i, t) in self.topics.iter().enumerate() {
            let k = |f: &str| format!("topics[{i}].{f}");
            if !valid_topic_filter(&t.filter) {
                return Err((k("filter"), format!("`{}` is not a topic filter", t.filter)));
            }
            for (j, other) in self.topics[..i].iter().enumerate() {
                if filters_overlap(&t.filter, &other.filter) {
                    return Err((
                        k("filter"),
                        format!(
                            "`{}` overlaps topics[{j}] `{}`: a message would be taken twice",
                            t.filter, other.filter
                        ),
                    ));
                }
            }
            let feed = Feed::parse(&t.feed)
                .ok_or_else(|| (k("feed"), format!("`{}` is not a feed", t.feed)))?;
            if t.qos > 2 {
                return Err((k("qos"), format!("must be 0, 1 or 2, got {}", t.qos)));
            }
            let source = sources.iter().find(|s| s.name == t.source).ok_or_else(|| {
                (
                    k("source"),
                    format!("`{}` is not the name of a [[sources]] entry", t.source),
                )
            })?;
            if !source.allowed().contains(&feed) {
                return Err((
                    k("feed"),
                    format!(
                        "source `{}` may not write `{}` (its feeds: {})",
                        source.name,
                        t.feed,
                        source.feeds.join(", ")
                    ),
                ));
            }
            match (&t.mapping, &t.columns) {
                (Some(m), _) => {
                    let mapping = mappings
                        .get(m)
                        .ok_or_else(|| (k("mapping"), format!("no [mappings.{m}]")))?;
                    let from_topic = mapping.location.as_ref().is_some_and(|l| l.from_topic);
                    if from_topic && t.zone_from_topic.is_none() {
                        return Err((
                            k("zone_from_topic"),
                            format!("mapping `{m}` takes the zone from the topic: say which level"),
                        ));
                    }
                    if mapping.feed() != feed {
                        return Err((
                            k("mapping"),
                            format!(
                                "mapping `{m}` makes `{}` records, not `{}`",
                                mapping.feed, t.feed
                            ),
                        ));
                    }
                }
                (None, Some(_)) => {
                    return Err((k("columns"), "is for CSV payloads: set mapping too".into()))
                }
                (None, None) => {}
            }
            if let Some(c) = &t.columns {
                if c.is_empty() {
                    return Err((k("columns"), "must name at least one column".into()));
                }
            }
            let levels: Vec<&str> = t.filter.split('/').collect();
            let open = levels.last() == Some(&"#");
            for (name, level) in [
                ("zone_from_topic", t.zone_from_topic),
                ("sensor_from_topic", t.sensor_from_topic),
            ] {
                if let Some(l) = level {
                    if !open && l >= levels.len() {
                        return Err((
                            k(name),
                            format!(
                                "`{}` has {} levels (counted from 0), no level {l}",
                                t.filter,
                                levels.len()
                            ),
                        ));
                    }
                }
            }
            if t.sensor_from_topic.is_some() && feed != Feed::Density {
                return Err((
                    k("sensor_from_topic"),
                    "only density records have a sensor".into(),
                ));
            }
        }
        Ok(())
    }

    /// Reads the password from the environment or the file (trailing newline trimmed; never
    /// logged); `None` without one.
    pub fn read_password(&self) -> Result<Option<String>, String> {
        read_password(&self.password_env, &self.password_file)
    }

    /// The topic whose filter `topic` matches (filters do not overlap, so at most one).
    pub fn topic_for(&self, topic: &str) -> Option<(usize, &MqttTopic)> {
        self.topics
            .iter()
            .enumerate()
            .find(|(_, t)| topic_matches(topic, &t.filter))
    }
}

#[cfg(test)]
mod mqtt_tests {
    use super::*;

    #[test]
    fn filters_match_and_overlap() {
        assert!(valid_topic_filter("city/density/+"));
        assert!(valid_topic_filter("city/#"));
        assert!(valid_topic_filter("#"));
        assert!(!valid_topic_filter("city/#/x"));
        assert!(!valid_topic_filter("city/a+"));
        assert!(!valid_topic_filter(""));
        assert!(topic_matches("city/density/13001", "city/density/+"));
        assert!(!topic_matches("city/density/13001/s1", "city/density/+"));
        assert!(topic_matches("city/density/13001/s1", "city/#"));
        assert!(topic_matches("city", "city/#"));
        assert!(!topic_matches("$SYS/x", "#"));
        assert!(filters_overlap("city/+/a", "city/density/#"));
        assert!(filters_overlap("a/+", "a/b"));
        assert!(!filters_overlap("a/+", "a/b/c"));
        assert!(!filters_overlap("city/density/+", "city/incident/+"));
    }

    fn mqtt(url: &str) -> MqttConfig {
        toml::from_str(&format!(
            "url = \"{url}\"\ntopics = [{{ filter = \"a/+\", feed = \"density\", source = \"s\" }}]"
        ))
        .unwrap()
    }

    #[test]
    fn urls_give_the_endpoint() {
        let e = mqtt("mqtt://127.0.0.1:1884").endpoint().unwrap();
        assert_eq!((e.tls, e.host.as_str(), e.port), (false, "127.0.0.1", 1884));
        let e = mqtt("mqtts://broker.city").endpoint().unwrap();
        assert_eq!(
            (e.tls, e.host.as_str(), e.port),
            (true, "broker.city", 8883)
        );
        let e = mqtt("mqtt://[::1]:1").endpoint().unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 1));
        for bad in [
            "http://h:1",
            "mqtt://:1",
            "mqtt://h:0",
            "mqtt://h:x",
            "mqtt://u@h:1",
        ] {
            assert!(mqtt(bad).endpoint().is_err(), "{bad}");
        }
    }
}
