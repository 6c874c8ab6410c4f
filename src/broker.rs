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
//!   city-wide: `vigie/weather` only). Payloads are NDJSON records of `indicators.md`.
//! - **Who writes**: every message is attributed to the built-in source [`SOURCE`]
//!   (`embedded-mqtt`), allowed every feed. A `[[sources]]` entry of that name narrows it: only
//!   the feeds it lists get topics. Other `[[sources]]` entries (tokens) govern HTTP only.
//! - **Access**: the broker accepts anonymous clients, so it listens on a loopback address
//!   only (a non-loopback address is refused): anything that can connect runs on this machine.
//!   There is no TLS and no authentication; to take data from other machines, run a real
//!   broker and point vigie at it with one line, `[ingest.mqtt] url = "mqtt://host:1883"` (and
//!   `topics`), which turns the embedded broker off.
//! - **Sessions**: the broker lives and dies with vigie, so vigie connects with a clean
//!   session; QoS 1 messages are acknowledged to vigie's broker once fsynced in the ingest log,
//!   as with an external broker. The broker acknowledges a publisher's QoS 1 message when it has
//!   taken it in memory: a message published just before vigie stops may be lost, unlike with a
//!   persistent external broker.
//! - **Limits**: messages up to [`MAX_PAYLOAD`] bytes; rumqttd keeps each topic filter's recent
//!   messages in memory ([`SEGMENT_BYTES`] × [`SEGMENTS`] at most). It is meant for one machine
//!   and modest rates (a demo, a pilot, tests), not a city's sensor fleet.
//! - **Quiet**: rumqttd logs through `tracing`; vigie installs no subscriber, so it prints
//!   nothing, and its console, metrics and Prometheus exporter are off.

use anyhow::{bail, Context};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};
use vigie_config::{Config, MqttConfig, MqttTopic, SourceConfig};
use vigie_model::Feed;

/// The built-in source every message of the embedded broker is attributed to.
pub const SOURCE: &str = "embedded-mqtt";
/// Largest message the embedded broker accepts (bytes).
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Size of one segment of a topic filter's in-memory log (bytes)…
pub const SEGMENT_BYTES: usize = 4 << 20;
/// …and segments kept per filter.
pub const SEGMENTS: usize = 8;
/// Default address of the embedded broker.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1883";

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
    pub fn start(addr: SocketAddr) -> anyhow::Result<EmbeddedBroker> {
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
        let server = rumqttd::ServerSettings {
            name: "vigie-embedded-v4".into(),
            listen: addr,
            tls: None,
            next_connection_delay_ms: 1,
            connections: rumqttd::ConnectionSettings {
                connection_timeout_ms: 60_000,
                max_payload_size: MAX_PAYLOAD,
                max_inflight_count: 100,
                auth: None,
                external_auth: None,
                // Publishers may publish before vigie subscribes.
                dynamic_filters: true,
            },
        };
        let config = rumqttd::Config {
            id: 0,
            router: rumqttd::RouterConfig {
                max_connections: 1000,
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
pub fn source_config(config: &Config, addr: SocketAddr) -> anyhow::Result<Config> {
    let mut c = config.clone();
    let feeds = allowed(config);
    if !c.sources.iter().any(|s| s.name == SOURCE) {
        // MQTT only: no HTTP token (the HTTP side is started from `config`, without it).
        c.sources.push(SourceConfig {
            name: SOURCE.into(),
            feeds: feeds.iter().map(|f| f.name().to_string()).collect(),
            token_env: None,
            token_file: None,
        });
    }
    let mut topics = Vec::new();
    for feed in feeds {
        let plain = |filter: String, zone: Option<usize>| MqttTopic {
            filter,
            feed: feed.name().into(),
            qos: 1,
            source: SOURCE.into(),
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
    let mqtt = MqttConfig {
        url: format!("mqtt://{addr}"),
        client_id: "vigie".into(),
        clean_session: true,
        keep_alive_s: 30,
        username: None,
        password_env: None,
        password_file: None,
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
    }

    #[test]
    fn only_loopback_addresses() {
        assert!(listen_addr("127.0.0.1:0").is_ok());
        assert!(listen_addr("[::1]:1883").is_ok());
        assert!(listen_addr("0.0.0.0:1883").is_err());
        assert!(listen_addr("localhost").is_err());
    }
}
