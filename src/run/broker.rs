//! The embedded MQTT broker of `vigie run`: zero setup.
//!
//! With no `[ingest.mqtt]` in the configuration, `vigie run` starts an MQTT 3.1.1 broker
//! (`rumqttd`) inside the process, on a loopback address (`--mqtt-listen`, else
//! `ingest.embedded_mqtt_listen`, else `127.0.0.1:1883`), and points its own MQTT source at it:
//!
//! ```text
//!  sensors / scripts on this machine ──PUBLISH──> embedded broker (rumqttd, 127.0.0.1:1883)
//!                                                      │  vigie/<feed>, vigie/<feed>/<zone>
//!                                                      v
//!                            vigie's MQTT source (connectors/src/ingest/mqtt.rs) ──> ingest log
//! ```
//!
//! - **Topics**: for every feed, `vigie/<feed>` (records carry their zone) and
//!   `vigie/<feed>/+`, where the last level is the zone of records that have none (weather is
//!   city-wide: `vigie/weather` only). Payloads are NDJSON records of `docs/model.md`.
//! - **Who writes**: every message is attributed to the built-in source [`SOURCE`]
//!   (`embedded-mqtt`), allowed every feed. A `[[sources]]` entry of that name narrows it: only
//!   the feeds it lists get topics. Other `[[sources]]` entries (tokens) govern HTTP only.
//! - **Logins**: when `[[sources]]` have MQTT logins ([`Logins`]), only they and vigie's own
//!   subscriber (a secret drawn at each start) get in. rumqttd does not tell a subscriber who
//!   published a message and has no publish ACL, so the topics carry only the feeds every
//!   source with a login may write; sources with logins and different feeds are refused (use
//!   Mosquitto and `vigie mqtt-acl`, which holds each to its topics).
//! - **Access**: without logins the broker accepts anonymous clients, so it listens on a loopback address
//!   only (a non-loopback address is refused): anything that can connect runs on this machine.
//!   There is no TLS and no authentication; to take data from other machines, run a real
//!   broker and point vigie at it with one line, `[ingest.mqtt] url = "mqtt://host:1883"` (and
//!   `topics`), which turns the embedded broker off.
//! - **vigie's client id**: with logins, the client id `vigie` ([`SUBSCRIBER_CLIENT_ID`]) is
//!   let in only with vigie's own login, so no source can take over vigie's session. Without
//!   logins, rumqttd asks nobody about a client that sends no login (its auth handler runs
//!   only for clients that send one), so it cannot refuse an id: vigie's subscriber then
//!   connects with an id drawn at each start (`vigie-` and 128 random bits), which nobody else
//!   knows; a client that connects as `vigie` takes nothing (tested in `tests/e2e.rs`).
//! - **Connections**: a client must send its CONNECT within [`CONNECT_TIMEOUT_MS`] of
//!   connecting, else it is closed (an idle TCP connection holds a descriptor that long at
//!   most), and the router takes [`MAX_CONNECTIONS`] MQTT sessions at most (more are closed
//!   without a CONNACK). rumqttd has no cap on TCP connections that have not sent CONNECT yet:
//!   the connect timeout bounds how long each lasts, and the HTTP listener's reserve of
//!   descriptors (`ingest.http.reserved_fds`) leaves room for them.
//! - **Sessions**: the broker lives and dies with vigie, so vigie connects with a clean
//!   session; QoS 1 messages are acknowledged to vigie's broker once fsynced in the ingest log,
//!   as with an external broker. The broker acknowledges a publisher's QoS 1 message when it has
//!   taken it in memory: a message published just before vigie stops may be lost, unlike with a
//!   persistent external broker.
//! - **Limits**: messages up to [`MAX_PAYLOAD`] bytes. rumqttd keeps the recent messages of
//!   each subscribed topic filter in memory, in [`SEGMENTS`] segments of [`SEGMENT_BYTES`]
//!   (8 MiB of topics and payloads per filter; vigie subscribes one filter per entry of
//!   `ingest.mqtt.topics`). rumqttd counts only topic and payload bytes: a message also holds
//!   some 250 bytes of its own and a share of the connection's read buffer, so a small record
//!   (100 bytes) costs about 335 bytes, and the bound is some 80,000 small records and 27 MB
//!   per filter. A filter's log grows until it reaches that bound, then drops its oldest
//!   segment for each new one (a soak over MQTT grows until then, then stays flat). It is also
//!   the only buffer between a publisher and vigie: the broker acknowledges a QoS 1 message on
//!   receipt, and a subscriber that falls further behind loses the oldest (rumqttd skips to
//!   what it still holds). vigie reads the broker as fast as it arrives and acknowledges after
//!   its own fsync, so at 2,000 records/s the bound leaves 40 s of stall before a loss. It is
//!   meant for one machine and modest rates (a demo, a pilot, tests), not a city's sensor
//!   fleet: those use an external broker with persistent sessions.
//! - **Quiet**: rumqttd logs through `tracing`; vigie installs no subscriber, so it prints
//!   nothing, and its console, metrics and Prometheus exporter are off.

use anyhow::{bail, Context};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};
use vigie_config::{Config, MqttConfig, MqttTopic, SourceConfig};
use vigie_model::Feed;
use vigie_server::auth::constant_time_eq;

/// The built-in source every message of the embedded broker is attributed to.
pub const SOURCE: &str = "embedded-mqtt";
/// Largest message the embedded broker accepts (bytes).
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Size of one segment of a topic filter's in-memory log (bytes)…
pub const SEGMENT_BYTES: usize = 1 << 20;
/// …and segments kept per filter.
pub const SEGMENTS: usize = 8;
/// A client must send its CONNECT within this (milliseconds) of connecting.
pub const CONNECT_TIMEOUT_MS: u16 = 5_000;
/// MQTT sessions the embedded broker holds at most.
pub const MAX_CONNECTIONS: usize = 1_000;
/// Default address of the embedded broker.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1883";

/// The user name vigie's own subscriber logs in with when the broker asks for logins; no
/// source may take it, nor the client id `vigie`.
pub const SUBSCRIBER_USER: &str = "vigie-subscriber";
/// The client id of vigie's own subscriber when the broker asks for logins (with none, an id
/// drawn at each start: see the module's documentation).
pub const SUBSCRIBER_CLIENT_ID: &str = "vigie";

/// Who may connect to the embedded broker when `[[sources]]` have MQTT credentials: each
/// such source's user name and password, and vigie's own subscriber with a secret drawn for
/// this run. Never shown by `Debug`.
pub struct Logins {
    users: Vec<(String, String)>,
}

impl std::fmt::Debug for Logins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.users.iter().map(|(u, _)| u.as_str()).collect();
        f.debug_struct("Logins").field("users", &names).finish()
    }
}

impl Logins {
    /// The logins of `config`'s sources with MQTT credentials (passwords read now), and of
    /// the subscriber with `subscriber_secret`; `None` when no source has MQTT credentials
    /// (the broker then takes anonymous clients).
    pub fn of(config: &Config, subscriber_secret: &str) -> anyhow::Result<Option<Logins>> {
        let mut users = Vec::new();
        for s in &config.sources {
            let Some(user) = &s.mqtt_username else {
                continue;
            };
            if user == SUBSCRIBER_USER {
                bail!(
                    "source {}: the MQTT user `{SUBSCRIBER_USER}` is vigie's own",
                    s.name
                );
            }
            let password = s
                .read_mqtt_password()
                .map_err(|e| anyhow::anyhow!("source {}: its MQTT password: {e}", s.name))?
                .unwrap_or_default();
            users.push((user.clone(), password));
        }
        if users.is_empty() {
            return Ok(None);
        }
        users.push((SUBSCRIBER_USER.into(), subscriber_secret.into()));
        Ok(Some(Logins { users }))
    }

    /// Whether a CONNECT with this client id, user and password gets in: a known user with
    /// its password; the client id `vigie` only for vigie's subscriber (so that no source can
    /// take its session over).
    pub fn admits(&self, client_id: &str, user: &str, password: &str) -> bool {
        let mut ok = false;
        for (u, p) in &self.users {
            let matched = constant_time_eq(u.as_bytes(), user.as_bytes())
                & constant_time_eq(p.as_bytes(), password.as_bytes());
            ok |= matched;
        }
        ok && ((user == SUBSCRIBER_USER) == (client_id == SUBSCRIBER_CLIENT_ID))
    }
}

/// The feeds every source with MQTT credentials may write: on the embedded broker any
/// logged-in client can publish on any topic, so its topics carry only feeds that all of
/// them may write; sources with different feeds are refused (run Mosquitto with
/// `vigie mqtt-acl` instead, which gives each source its own topics).
fn credentialed_feeds(config: &Config) -> anyhow::Result<Option<(String, Vec<Feed>)>> {
    let with: Vec<&SourceConfig> = config
        .sources
        .iter()
        .filter(|s| s.mqtt_username.is_some())
        .collect();
    let Some(first) = with.first() else {
        return Ok(None);
    };
    let mut feeds = first.allowed();
    feeds.sort();
    for s in &with[1..] {
        let mut f = s.allowed();
        f.sort();
        if f != feeds {
            bail!(
                "sources {} and {} have MQTT logins and different feeds: the embedded broker \
                 cannot tell which of them published a message, so it cannot hold each to its \
                 feeds. Run Mosquitto with the password and ACL files of `vigie mqtt-acl` and \
                 set [ingest.mqtt] url, or give them the same feeds",
                first.name,
                s.name
            );
        }
    }
    let name = if with.len() == 1 {
        first.name.clone()
    } else {
        SOURCE.to_string()
    };
    Ok(Some((name, feeds)))
}

/// A secret for vigie's subscriber, drawn for this run.
pub fn subscriber_secret() -> String {
    random_token("mqtt-")
}

/// `prefix` and 128 bits from the standard library's randomly keyed hasher (seeded by the
/// system).
pub fn random_token(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let part = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_i64(vigie_model::clock::now_us());
        h.finish()
    };
    format!("{prefix}{:016x}{:016x}", part(1), part(2))
}

/// Writes `secret` owner-only to `dir/mqtt-subscriber-secret` (the MQTT source reads its
/// password from a file); returns the file.
pub fn write_secret(dir: &std::path::Path, secret: &str) -> anyhow::Result<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("mqtt-subscriber-secret");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(secret.as_bytes())?;
    Ok(path)
}

/// The running embedded broker. Its threads end with the process (rumqttd has no stop).
pub struct EmbeddedBroker {
    pub addr: SocketAddr,
}

/// Parses and checks a listen address: loopback only.
pub fn listen_addr(text: &str) -> anyhow::Result<SocketAddr> {
    let addr: SocketAddr = text
        .parse()
        .with_context(|| format!("`{text}` is not an address such as {DEFAULT_LISTEN}"))?;
    if !addr.ip().is_loopback() {
        bail!(
            "the embedded MQTT broker accepts anonymous clients and listens on loopback only, not {addr}; \
             for other machines, run a broker and set [ingest.mqtt] url"
        );
    }
    Ok(addr)
}

impl EmbeddedBroker {
    /// Starts rumqttd with one MQTT 3.1.1 server on `addr` (port 0: a free port), and waits
    /// until it accepts connections.
    /// With `logins`, only they get in (a client without a login, or with a wrong one, is
    /// disconnected before its CONNACK).
    pub fn start(addr: SocketAddr, logins: Option<Logins>) -> anyhow::Result<EmbeddedBroker> {
        // Bind first, for a clear error when the port is taken and to resolve port 0; rumqttd
        // binds again once it is released.
        let addr = {
            let probe = TcpListener::bind(addr).with_context(|| {
                format!(
                    "the embedded MQTT broker cannot listen on {addr} (another broker there? \
                     pass --mqtt-listen 127.0.0.1:PORT, or set [ingest.mqtt] url to use it)"
                )
            })?;
            probe.local_addr()?
        };
        let mut server = rumqttd::ServerSettings {
            name: "vigie-embedded-v4".into(),
            listen: addr,
            tls: None,
            next_connection_delay_ms: 1,
            connections: rumqttd::ConnectionSettings {
                connection_timeout_ms: CONNECT_TIMEOUT_MS,
                max_payload_size: MAX_PAYLOAD,
                max_inflight_count: 100,
                auth: None,
                external_auth: None,
                // Publishers may publish before vigie subscribes.
                dynamic_filters: true,
            },
        };
        if let Some(logins) = logins {
            let logins = std::sync::Arc::new(logins);
            server.set_auth_handler(move |client_id: String, user: String, password: String| {
                std::future::ready(logins.admits(&client_id, &user, &password))
            });
        }
        let config = rumqttd::Config {
            id: 0,
            router: rumqttd::RouterConfig {
                max_connections: MAX_CONNECTIONS,
                max_outgoing_packet_count: 200,
                max_segment_size: SEGMENT_BYTES,
                max_segment_count: SEGMENTS,
                custom_segment: None,
                initialized_filters: None,
                shared_subscriptions_strategy: Default::default(),
            },
            v4: Some(HashMap::from([("1".to_string(), server)])),
            v5: None,
            ws: None,
            cluster: None,
            console: None,
            bridge: None,
            prometheus: None,
            metrics: None,
        };
        let thread = std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                let mut broker = rumqttd::Broker::new(config);
                // Returns only if its server ends (it could not bind).
                let _ = broker.start();
            })
            .context("starting the embedded MQTT broker")?;
        let started = Instant::now();
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(EmbeddedBroker { addr });
            }
            if thread.is_finished() || started.elapsed() > Duration::from_secs(10) {
                bail!("the embedded MQTT broker did not start on {addr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The feeds the built-in source may write: all, or those of a `[[sources]]` entry named
/// [`SOURCE`].
fn allowed(config: &Config) -> Vec<Feed> {
    match config.sources.iter().find(|s| s.name == SOURCE) {
        Some(s) => s.allowed(),
        None => Feed::ALL.to_vec(),
    }
}

/// The topic of a feed's records (zone in the records), and of a zone's.
pub fn topic(feed: Feed, zone: Option<&str>) -> String {
    match zone {
        Some(z) => format!("vigie/{}/{z}", feed.name()),
        None => format!("vigie/{}", feed.name()),
    }
}

/// The configuration vigie's MQTT source runs with on the embedded broker: `config` with an
/// `[ingest.mqtt]` pointing at `addr`, its topics, and the built-in source.
///
/// With sources that have MQTT credentials, `subscriber_password` is the file of vigie's
/// subscriber secret ([`subscriber_secret`]); the topics carry their (common) feeds and their
/// messages are attributed to the source (to [`SOURCE`] when there are several).
pub fn source_config(
    config: &Config,
    addr: SocketAddr,
    subscriber_password: Option<std::path::PathBuf>,
) -> anyhow::Result<Config> {
    let mut c = config.clone();
    let (source, feeds) = match credentialed_feeds(config)? {
        Some((name, feeds)) => {
            if subscriber_password.is_none() {
                bail!("sources have MQTT logins: the embedded broker needs vigie's own secret");
            }
            (name, feeds)
        }
        None => (SOURCE.to_string(), allowed(config)),
    };
    if !c.sources.iter().any(|s| s.name == source) {
        // MQTT only: no HTTP token (the HTTP side is started from `config`, without it).
        c.sources.push(SourceConfig {
            name: SOURCE.into(),
            feeds: feeds.iter().map(|f| f.name().to_string()).collect(),
            token_env: None,
            token_file: None,
            mqtt_username: None,
            mqtt_password_env: None,
            mqtt_password_file: None,
        });
    }
    let mut topics = Vec::new();
    for feed in feeds {
        let plain = |filter: String, zone: Option<usize>| MqttTopic {
            filter,
            feed: feed.name().into(),
            qos: 1,
            source: source.clone(),
            mapping: None,
            columns: None,
            zone_from_topic: zone,
            sensor_from_topic: None,
        };
        topics.push(plain(topic(feed, None), None));
        if feed != Feed::Weather {
            topics.push(plain(topic(feed, Some("+")), Some(2)));
        }
    }
    // With logins, the id `vigie` is refused to anyone but vigie's login; without, the broker
    // cannot refuse it, so vigie takes an id nobody else knows.
    let client_id = match &subscriber_password {
        Some(_) => SUBSCRIBER_CLIENT_ID.to_string(),
        None => random_token("vigie-"),
    };
    let mqtt = MqttConfig {
        url: format!("mqtt://{addr}"),
        client_id,
        clean_session: true,
        keep_alive_s: 30,
        username: subscriber_password
            .as_ref()
            .map(|_| SUBSCRIBER_USER.to_string()),
        password_env: None,
        password_file: subscriber_password,
        ca_file: None,
        reconnect_min_ms: 100,
        reconnect_max_ms: 2_000,
        max_payload_bytes: MAX_PAYLOAD,
        topics,
    };
    mqtt.validate(&c.sources, &c.mappings)
        .map_err(|(k, m)| anyhow::anyhow!("embedded MQTT broker: ingest.mqtt.{k}: {m}"))?;
    c.ingest.mqtt = Some(mqtt);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_topics_cover_every_feed_and_validate() {
        let c = source_config(
            &Config::embedded_default(),
            "127.0.0.1:1883".parse().unwrap(),
            None,
        )
        .unwrap();
        let m = c.ingest.mqtt.unwrap();
        assert_eq!(m.url, "mqtt://127.0.0.1:1883");
        assert_eq!(m.topics.len(), 2 * Feed::ALL.len() - 1);
        let (_, t) = m.topic_for("vigie/incident/13001").unwrap();
        assert_eq!((t.feed.as_str(), t.zone_from_topic), ("incident", Some(2)));
        let (_, t) = m.topic_for("vigie/weather").unwrap();
        assert_eq!(t.feed, "weather");
        assert!(m.topic_for("vigie/weather/13001").is_none());
        assert!(c.sources.iter().any(|s| s.name == SOURCE));
        // Anonymous: an id drawn for this start, not the well-known `vigie`.
        assert!(m.client_id.starts_with("vigie-") && m.client_id.len() > 30);
        let again = source_config(
            &Config::embedded_default(),
            "127.0.0.1:1883".parse().unwrap(),
            None,
        )
        .unwrap();
        assert_ne!(again.ingest.mqtt.unwrap().client_id, m.client_id);
    }

    #[test]
    fn logins_need_the_password_and_keep_vigies_client_id_for_vigie() {
        let l = Logins {
            users: vec![
                ("police".into(), "pw".into()),
                (SUBSCRIBER_USER.into(), "secret".into()),
            ],
        };
        assert!(l.admits("cam-1", "police", "pw"));
        assert!(!l.admits("cam-1", "police", "pw2"));
        assert!(!l.admits("cam-1", "police", "secret"));
        assert!(!l.admits("cam-1", "nobody", "pw"));
        // No source can take vigie's session over, and vigie uses its own client id.
        assert!(!l.admits(SUBSCRIBER_CLIENT_ID, "police", "pw"));
        assert!(l.admits(SUBSCRIBER_CLIENT_ID, SUBSCRIBER_USER, "secret"));
        assert!(!l.admits("other", SUBSCRIBER_USER, "secret"));
        assert!(!format!("{l:?}").contains("pw"));
    }

    #[test]
    fn sources_with_logins_and_different_feeds_are_refused_on_the_embedded_broker() {
        let text = "zones = \"zones/marseille.geojson\"\n\
            [[sources]]\nname = \"a\"\nfeeds = [\"incident\"]\nmqtt_username = \"a\"\nmqtt_password_env = \"A\"\n\
            [[sources]]\nname = \"b\"\nfeeds = [\"density\"]\nmqtt_username = \"b\"\nmqtt_password_env = \"B\"\n";
        let config = Config::parse(text, "t.toml", None).unwrap();
        let addr = "127.0.0.1:1883".parse().unwrap();
        let e = source_config(&config, addr, Some("s".into())).unwrap_err();
        assert!(format!("{e}").contains("mqtt-acl"), "{e}");
    }

    #[test]
    fn only_loopback_addresses() {
        assert!(listen_addr("127.0.0.1:0").is_ok());
        assert!(listen_addr("[::1]:1883").is_ok());
        assert!(listen_addr("0.0.0.0:1883").is_err());
        assert!(listen_addr("localhost").is_err());
    }
}
