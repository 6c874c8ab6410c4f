//! The MQTT source: vigie subscribes to a broker (MQTT 3.1.1, `rumqttc`) and ingests what is
//! published on the topics of `[ingest.mqtt]`.
//!
//! ```text
//!  broker ──PUBLISH──> event-loop task ──channel──> processing task
//!     ^                 (polls rumqttc: connects,     parses each message's payload
//!     │                  pings, reconnects with a     (NDJSON lines, or CSV rows through
//!     │                  doubling delay, subscribes   the topic's mapping), fills zone and
//!     │                  when the session is new)     sensor from the topic, validates;
//!     │                                               commits the batch's records to the
//!     └─────────────PUBACK (manual acks) <─────────── IngestLog (fsynced), then acks
//! ```
//!
//! Both tasks run on a single-threaded tokio runtime in a thread of their own
//! ([`MqttSource::start`]); the binary only starts and stops the source and reads its
//! [`MqttCounters`].
//!
//! **Acknowledgement.** Acks are manual: a QoS 1 (or 2) message is acknowledged only once the
//! records it holds are durable in the ingest log, or once it was rejected as a whole (bad
//! data is counted and kept among the last rejections, not redelivered forever). A message
//! whose records could not be committed is not acknowledged: the broker keeps it in the
//! session and delivers it again. Messages waiting at the same time are committed together,
//! in one fsync.
//!
//! **Sessions.** With `clean_session = false` (the default) the broker keeps vigie's
//! subscriptions and queues QoS 1 messages while vigie is away or disconnected. vigie
//! subscribes at its first connection and again whenever the broker answers that it holds no
//! session (a new broker, or one that lost its state).
//!
//! **Duplicates.** After a reconnection the broker sends again, flagged `dup`, every message
//! whose acknowledgement it did not receive, including those vigie had committed just before
//! the connection broke. The source remembers, per packet id, a hash of the topic and payload
//! of each message it finished with in the current session; a `dup` message with the same id
//! and the same bytes is acknowledged without being committed again. A message without `dup`
//! reusing a packet id proves that the earlier one was acknowledged, and replaces it. The
//! packet id and digest of each committed message are committed with its records (a delivery
//! `mqtt/<client id>@<url>/<packet id>` of the ingest log), so after vigie crashed between a
//! commit and its acknowledgement, the next run, resuming the persistent session, knows the
//! message and acknowledges its redelivery without committing it again. Left: a broker that
//! reuses a packet id for a message with exactly the same topic and payload as the one last
//! committed under it, and redelivers it (`dup`) after vigie crashed before committing it,
//! would see it taken for the earlier one; brokers cycle through 65,535 ids before reusing one.
//!
//! **Retained messages** (delivered with the retain flag because of a subscription, not
//! because they were published now) are acknowledged and skipped: they were taken when they
//! were published, or predate vigie's subscription.

use super::{IngestError, IngestLog, LineError};
use crate::files::{ndjson_text, CsvRow, CsvRows};
use crate::mapped::CompiledMapping;
use crate::privacy::Privacy;
use crate::raw::{parse_json_line, RawRecord, Scalar};
use crate::validate::{Checks, RecordError};
use rumqttc::{
    AsyncClient, ConnectionError, Event, MqttOptions, Outgoing, Packet, Publish, QoS,
    SubscribeFilter, SubscribeReasonCode, TlsConfiguration, Transport,
};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use vigie_config::{Config, MqttConfig, MqttTopic};
use vigie_model::{Feed, Record};

/// Capacity of the channel of requests to the event loop (acks, subscriptions).
const REQUEST_CAPACITY: usize = 4096;
/// Most messages committed together.
const BATCH_MESSAGES: usize = 256;
/// How long [`MqttSource::stop`] lets the last acks and the DISCONNECT go out.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// One rejected line of a message, with the topic it came on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MqttRejection {
    pub topic: String,
    pub error: LineError,
}

/// Counts of one topic filter (and its feed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicCounts {
    /// Messages received (redeliveries of a message already taken not included).
    pub messages: u64,
    /// Records committed to the ingest log.
    pub accepted: u64,
    /// Lines (or whole messages) rejected.
    pub rejected: u64,
}

/// A copy of the counters, [`MqttCounters::snapshot`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MqttStats {
    /// Connected to the broker now.
    pub connected: bool,
    /// Connections established (CONNACK accepted).
    pub connections: u64,
    /// Of which the broker still held vigie's session.
    pub sessions_resumed: u64,
    /// Connection attempts that failed and connections that broke.
    pub connection_errors: u64,
    /// Subscription requests the broker answered (SUBACK).
    pub subscriptions_acked: u64,
    /// Subscriptions the broker refused.
    pub subscriptions_refused: u64,
    /// By (topic filter, feed).
    pub topics: BTreeMap<(String, String), TopicCounts>,
    /// Messages on a topic no configured filter matches (a subscription left from an older
    /// configuration); acknowledged and dropped.
    pub unmatched: u64,
    /// Retained messages skipped.
    pub retained_skipped: u64,
    /// Redeliveries of messages already committed, acknowledged and not committed again.
    pub duplicates_skipped: u64,
    /// Commits to the ingest log that failed (the source then stops).
    pub commit_errors: u64,
    /// Rejections dropped from the list of the last ones.
    pub rejections_dropped: u64,
}

/// The counters and the last rejections of the MQTT source, shared with the binary (for
/// `/metrics` and listings).
pub struct MqttCounters {
    inner: Mutex<Inner>,
    keep: usize,
}

#[derive(Default)]
struct Inner {
    stats: MqttStats,
    rejections: VecDeque<MqttRejection>,
}

impl MqttCounters {
    /// Counters that keep the last `keep_rejections` rejections (`ingest.dead_letters`).
    pub fn new(keep_rejections: usize) -> MqttCounters {
        MqttCounters {
            inner: Mutex::new(Inner::default()),
            keep: keep_rejections,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while counting leaves counts that are still meaningful.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> MqttStats {
        self.lock().stats.clone()
    }

    /// Lines (or whole messages) rejected so far, by feed; messages on a topic no filter
    /// matches under `unknown`.
    pub fn rejected_by_feed(&self) -> BTreeMap<String, u64> {
        let s = self.snapshot();
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for ((_, feed), c) in &s.topics {
            *out.entry(feed.clone()).or_default() += c.rejected;
        }
        if s.unmatched > 0 {
            *out.entry("unknown".to_string()).or_default() += s.unmatched;
        }
        out
    }

    /// The last rejections, oldest first.
    pub fn rejections(&self) -> Vec<MqttRejection> {
        self.lock().rejections.iter().cloned().collect()
    }

    fn update(&self, f: impl FnOnce(&mut MqttStats)) {
        f(&mut self.lock().stats)
    }

    fn reject(&self, topic: &str, errors: Vec<LineError>) {
        let mut inner = self.lock();
        for error in errors {
            if self.keep == 0 {
                inner.stats.rejections_dropped += 1;
                continue;
            }
            if inner.rejections.len() == self.keep {
                inner.rejections.pop_front();
                inner.stats.rejections_dropped += 1;
            }
            inner.rejections.push_back(MqttRejection {
                topic: topic.to_string(),
                error,
            });
        }
    }

    /// Appends the counters in the Prometheus text format (`vigie_mqtt_*`).
    pub fn render_prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        let s = self.snapshot();
        let mut metric = |name: &str, kind: &str, help: &str, rows: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        metric(
            "vigie_mqtt_connected",
            "gauge",
            "1 while connected to the MQTT broker.",
            &[(String::new(), u64::from(s.connected))],
        );
        let plain = [
            (
                "vigie_mqtt_connections_total",
                "Connections to the broker established.",
                s.connections,
            ),
            (
                "vigie_mqtt_sessions_resumed_total",
                "Connections on which the broker still held the session.",
                s.sessions_resumed,
            ),
            (
                "vigie_mqtt_connection_errors_total",
                "Connection attempts that failed and connections that broke.",
                s.connection_errors,
            ),
            (
                "vigie_mqtt_subscriptions_acked_total",
                "Subscription requests the broker answered.",
                s.subscriptions_acked,
            ),
            (
                "vigie_mqtt_subscriptions_refused_total",
                "Subscriptions the broker refused.",
                s.subscriptions_refused,
            ),
            (
                "vigie_mqtt_unmatched_messages_total",
                "Messages on a topic no configured filter matches.",
                s.unmatched,
            ),
            (
                "vigie_mqtt_retained_skipped_total",
                "Retained messages skipped.",
                s.retained_skipped,
            ),
            (
                "vigie_mqtt_duplicates_skipped_total",
                "Redeliveries of committed messages, acknowledged and not committed again.",
                s.duplicates_skipped,
            ),
            (
                "vigie_mqtt_commit_errors_total",
                "Commits to the ingest log that failed.",
                s.commit_errors,
            ),
            (
                "vigie_mqtt_rejections_dropped_total",
                "Rejections dropped from the list of the last ones.",
                s.rejections_dropped,
            ),
        ];
        for (name, help, v) in plain {
            metric(name, "counter", help, &[(String::new(), v)]);
        }
        let labelled = |f: fn(&TopicCounts) -> u64| -> Vec<(String, u64)> {
            s.topics
                .iter()
                .map(|((filter, feed), c)| {
                    (
                        format!(
                            "{{filter=\"{}\",feed=\"{}\"}}",
                            escape_label(filter),
                            escape_label(feed)
                        ),
                        f(c),
                    )
                })
                .collect()
        };
        metric(
            "vigie_mqtt_messages_received_total",
            "counter",
            "MQTT messages received, by topic filter and feed.",
            &labelled(|c| c.messages),
        );
        metric(
            "vigie_mqtt_records_accepted_total",
            "counter",
            "Records committed to the ingest log, by topic filter and feed.",
            &labelled(|c| c.accepted),
        );
        metric(
            "vigie_mqtt_records_rejected_total",
            "counter",
            "Lines or messages rejected, by topic filter and feed.",
            &labelled(|c| c.rejected),
        );
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The running MQTT source; [`MqttSource::stop`] (or dropping it) disconnects.
pub struct MqttSource {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl MqttSource {
    /// Starts the source of `config.ingest.mqtt`: connects (and keeps reconnecting) in a
    /// thread of its own, commits accepted records through `log`, counts in `counters`.
    /// Fails at once on what cannot work: no `[ingest.mqtt]`, an unreadable password or CA
    /// file, a mapping that does not fit its `columns`.
    pub fn start(
        config: Arc<Config>,
        log: IngestLog,
        counters: Arc<MqttCounters>,
    ) -> Result<MqttSource, String> {
        let mqtt = config
            .ingest
            .mqtt
            .clone()
            .ok_or("the configuration has no [ingest.mqtt]")?;
        let options = mqtt_options(&mqtt)?;
        let privacy = Arc::new(Privacy::from_config(&config.privacy)?);
        let topics = mqtt
            .topics
            .iter()
            .map(|t| TopicPlan::new(t, &config, privacy.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("mqtt: runtime: {e}"))?;
        let (stop, stop_rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || {
                runtime.block_on(run(config, mqtt, topics, options, log, counters, stop_rx));
            })
            .map_err(|e| format!("mqtt: thread: {e}"))?;
        Ok(MqttSource {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops taking messages, lets the acknowledgements of what was committed go out,
    /// disconnects (the broker keeps a persistent session), and waits for the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// Whether the source's thread still runs (it ends on [`MqttSource::stop`], or when the
    /// ingest log fails).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MqttSource {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn warn(msg: &str) {
    tracing::warn!("vigie: mqtt: {msg}");
}

/// The client options: address, TLS, session, credentials, manual acks.
/// Builds the client's options as a run does, for `vigie check-config`: the password read
/// from its variable or file, the CA file read and parsed for `mqtts://`. Nothing connects.
pub fn check_options(m: &MqttConfig) -> Result<(), String> {
    mqtt_options(m).map(drop)
}

fn mqtt_options(m: &MqttConfig) -> Result<MqttOptions, String> {
    let endpoint = m.endpoint().map_err(|e| format!("ingest.mqtt.url: {e}"))?;
    let mut o = MqttOptions::new(m.client_id.clone(), endpoint.host, endpoint.port);
    o.set_clean_session(m.clean_session)
        .set_keep_alive(Duration::from_secs(m.keep_alive_s))
        .set_manual_acks(true)
        .set_max_packet_size(m.max_payload_bytes.saturating_add(64 << 10), 64 << 10)
        .set_request_channel_capacity(REQUEST_CAPACITY);
    if let Some(user) = &m.username {
        let password = m
            .read_password()
            .map_err(|e| format!("ingest.mqtt password: {e}"))?
            .unwrap_or_default();
        o.set_credentials(user.clone(), password);
    }
    if endpoint.tls {
        o.set_transport(Transport::tls_with_config(tls_config(m)?));
    }
    Ok(o)
}

/// rustls with the ring provider; roots from `ca_file`, else the system's.
fn tls_config(m: &MqttConfig) -> Result<TlsConfiguration, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match &m.ca_file {
        Some(path) => {
            let shown = path.display();
            let pem =
                std::fs::read(path).map_err(|e| format!("ingest.mqtt.ca_file {shown}: {e}"))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("ingest.mqtt.ca_file {shown}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ingest.mqtt.ca_file {shown}: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "ingest.mqtt.ca_file {shown}: no PEM certificate in it"
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(
                    "ingest.mqtt: mqtts:// without ca_file, and no system root certificate found"
                        .into(),
                );
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("ingest.mqtt TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
}

/// What the source needs of one configured topic.
struct TopicPlan {
    filter: String,
    feed: Feed,
    feed_name: String,
    qos: QoS,
    zone_level: Option<usize>,
    sensor_level: Option<usize>,
    csv: Option<CsvPlan>,
    /// The `[privacy]` rules every record goes through before it is committed.
    privacy: Arc<Privacy>,
}

struct CsvPlan {
    name: String,
    mapping: vigie_config::Mapping,
    /// Compiled against `columns`; `None`: each payload's first line is its header.
    compiled: Option<CompiledMapping>,
}

impl TopicPlan {
    fn new(t: &MqttTopic, config: &Config, privacy: Arc<Privacy>) -> Result<TopicPlan, String> {
        let feed = Feed::parse(&t.feed).ok_or_else(|| format!("`{}` is not a feed", t.feed))?;
        let csv = match &t.mapping {
            None => None,
            Some(name) => {
                let mapping = config
                    .mappings
                    .get(name)
                    .ok_or_else(|| format!("no [mappings.{name}]"))?
                    .clone();
                let compiled = match &t.columns {
                    Some(cols) => Some(
                        CompiledMapping::compile(name, &mapping, cols, config)
                            .map_err(|e| format!("ingest.mqtt topic `{}`: {e}", t.filter))?,
                    ),
                    None => None,
                };
                Some(CsvPlan {
                    name: name.clone(),
                    mapping,
                    compiled,
                })
            }
        };
        Ok(TopicPlan {
            filter: t.filter.clone(),
            feed,
            feed_name: feed.name().to_string(),
            qos: match t.qos {
                0 => QoS::AtMostOnce,
                1 => QoS::AtLeastOnce,
                _ => QoS::ExactlyOnce,
            },
            zone_level: t.zone_from_topic,
            sensor_level: t.sensor_from_topic,
            csv,
            privacy,
        })
    }
}

/// The records and rejections of one message.
#[derive(Debug, Default)]
struct Parsed {
    records: Vec<Record>,
    rejected: Vec<LineError>,
}

fn line_error(line: u64, e: RecordError) -> LineError {
    LineError {
        line,
        kind: e.kind.name(),
        field: e.field.map(str::to_string),
        reason: e.reason,
    }
}

fn is_absent(v: &Option<Scalar>) -> bool {
    match v {
        None | Some(Scalar::Null) => true,
        Some(Scalar::Str(s)) => s.trim().is_empty(),
        Some(_) => false,
    }
}

/// Completes a raw record from the topic, checks its feed, and validates it.
fn finish<'a>(
    plan: &TopicPlan,
    mut raw: RawRecord<'a>,
    levels: &[&'a str],
    checks: Checks,
    line: u64,
) -> Result<Record, LineError> {
    if !is_absent(&raw.feed) {
        let agrees = match &raw.feed {
            Some(Scalar::Str(s)) => Feed::parse(s.trim()) == Some(plan.feed),
            _ => false,
        };
        if !agrees {
            let shown = raw.feed.as_ref().map_or(String::new(), Scalar::describe);
            return Err(LineError {
                line,
                kind: "forbidden_feed",
                field: Some("feed".into()),
                reason: format!(
                    "feed {shown} on a topic of `{}` records ({})",
                    plan.feed_name, plan.filter
                ),
            });
        }
    }
    if let Some(l) = plan.zone_level {
        if is_absent(&raw.zone) && is_absent(&raw.lat) && is_absent(&raw.lon) {
            if let Some(level) = levels.get(l).filter(|s| !s.is_empty()) {
                raw.zone = Some(Scalar::Str(Cow::Borrowed(level)));
            }
        }
    }
    if let Some(l) = plan.sensor_level {
        if is_absent(&raw.sensor) {
            if let Some(level) = levels.get(l).filter(|s| !s.is_empty()) {
                raw.sensor = Some(Scalar::Str(Cow::Borrowed(level)));
            }
        }
    }
    plan.privacy
        .admit(raw, Some(plan.feed), checks, 0)
        .map_err(|refused| line_error(line, refused.error))
}

/// The topic as it may be kept with a rejection: the level holding the sensor id shown as
/// privacy shows identifiers (pseudonymised, or withheld).
fn shown_topic(plan: &TopicPlan, topic: &str) -> String {
    let Some(l) = plan.sensor_level else {
        return topic.to_string();
    };
    topic
        .split('/')
        .enumerate()
        .map(|(i, level)| {
            if i == l && !level.is_empty() {
                plan.privacy
                    .show_identifier(Some(plan.feed), "sensor", level)
            } else {
                level.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Parses one message's payload into validated records and rejected lines: NDJSON lines, or
/// CSV rows through the topic's mapping, read by the same code as file replay and HTTP ingest
/// ([`ndjson_text`], [`CsvRows`]).
fn parse_payload(plan: &TopicPlan, config: &Config, topic: &str, payload: &[u8]) -> Parsed {
    let mut out = Parsed::default();
    let malformed = |line: u64, reason: String| LineError {
        line,
        kind: "malformed",
        field: None,
        reason,
    };
    if payload.iter().all(u8::is_ascii_whitespace) {
        out.rejected
            .push(malformed(1, "the payload is empty".to_string()));
        return out;
    }
    let levels: Vec<&str> = topic.split('/').collect();
    let checks = Checks::from(config).live(config, vigie_model::clock::now_us());
    let Some(csv_plan) = &plan.csv else {
        for (i, line) in payload.split(|b| *b == b'\n').enumerate() {
            let n = i as u64 + 1;
            let result = match ndjson_text(line) {
                Ok(None) => continue,
                Ok(Some(text)) => parse_json_line(text)
                    .map_err(|e| line_error(n, RecordError::malformed(e)))
                    .and_then(|raw| finish(plan, raw, &levels, checks, n)),
                Err(e) => Err(line_error(n, e)),
            };
            match result {
                Ok(r) => out.records.push(r),
                Err(e) => out.rejected.push(e),
            }
        }
        return out;
    };
    let mut rows = match &csv_plan.compiled {
        Some(compiled) => CsvRows::headless(payload, compiled, csv_plan.mapping.delimiter_byte()),
        None => match CsvRows::open(payload, &csv_plan.name, config) {
            Ok(rows) => rows,
            Err(e) => {
                out.rejected.push(malformed(
                    1,
                    format!("the header does not fit the mapping: {e}"),
                ));
                return out;
            }
        },
    };
    let mut row = csv::StringRecord::new();
    while let Some(next) = rows.next_row(&mut row) {
        let n = match next {
            CsvRow::Row { line, .. } => line,
            CsvRow::Bad { line, reason, .. } => {
                out.rejected.push(malformed(line, reason));
                continue;
            }
            CsvRow::Failed(reason) => {
                out.rejected.push(malformed(1, reason));
                break;
            }
        };
        if row.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let result = rows
            .mapping()
            .raw(&row)
            .map_err(|e| line_error(n, plan.privacy.scrub_error(e)))
            .and_then(|raw| finish(plan, raw, &levels, checks, n));
        match result {
            Ok(r) => out.records.push(r),
            Err(e) => out.rejected.push(e),
        }
    }
    out
}

/// The digest of a message: SHA-256 of its topic and payload.
fn fingerprint(p: &Publish) -> String {
    super::digest(&[p.topic.as_bytes(), &p.payload])
}

/// Which QoS 1/2 messages this session already finished with (committed or rejected), by
/// packet id: at most one per id, so at most 65,535. Those committed are also in the ingest
/// log (their deliveries), from which a restarted source takes them back.
#[derive(Default)]
struct Finished(HashMap<u16, String>);

impl Finished {
    /// Whether `p` is a redelivery of a message already finished with; otherwise remembers it.
    fn is_redelivery(&mut self, p: &Publish) -> bool {
        if p.qos == QoS::AtMostOnce {
            return false;
        }
        let print = fingerprint(p);
        if p.dup && self.0.get(&p.pkid) == Some(&print) {
            return true;
        }
        // Not `dup`: the broker reused the id, so it had the earlier one's acknowledgement.
        self.0.insert(p.pkid, print);
        false
    }

    /// The messages of the session committed by an earlier run, from the ingest log's
    /// deliveries under `session`.
    fn recovered(log: &IngestLog, session: &str) -> Finished {
        let mut f = Finished::default();
        for d in log.delivered_under(session) {
            if let Ok(pkid) = d.key[session.len()..].parse::<u16>() {
                f.0.insert(pkid, d.digest);
            }
        }
        f
    }

    /// The broker has no session: it will redeliver nothing of the old one.
    fn clear(&mut self) {
        self.0.clear();
    }
}

/// The prefix of the delivery keys of vigie's session on this broker.
fn session_key(m: &MqttConfig) -> String {
    format!("mqtt/{}@{}/", m.client_id, m.url)
}

/// Messages to the processing task.
enum Msg {
    Publish(Publish),
    /// The broker answered with no session: what it may redeliver is forgotten.
    NewSession,
}

async fn run(
    config: Arc<Config>,
    mqtt: MqttConfig,
    topics: Vec<TopicPlan>,
    options: MqttOptions,
    log: IngestLog,
    counters: Arc<MqttCounters>,
    mut stop: watch::Receiver<bool>,
) {
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
    let filters: Vec<SubscribeFilter> = topics
        .iter()
        .map(|t| SubscribeFilter::new(t.filter.clone(), t.qos))
        .collect();
    // Unbounded: this loop must never wait on the processing task. The task's acknowledgements
    // go out only while the event loop is polled (one request per poll, while one read brings
    // in up to ten messages), so waiting here for room in the task's channel while the task
    // waited for room in the request channel deadlocked under a fast publisher (ingest-bench:
    // 50,000 QoS 1 messages through Mosquitto; the connection stalled, then the broker closed
    // it). What the channel holds is bounded by what the broker sends without acknowledgement.
    let (tx, rx) = mpsc::unbounded_channel::<Msg>();
    let mut processor = tokio::spawn(process(
        config,
        topics,
        rx,
        client.clone(),
        log,
        counters.clone(),
        session_key(&mqtt),
    ));
    let min = Duration::from_millis(mqtt.reconnect_min_ms);
    let max = Duration::from_millis(mqtt.reconnect_max_ms);
    let mut backoff = min;
    let mut subscribed_once = false;
    let mut tx = Some(tx);
    // Phase 1: take messages until asked to stop or the processing task ends (the log failed).
    loop {
        let event = tokio::select! {
            _ = stop.changed() => break,
            _ = &mut processor => {
                tx = None;
                break;
            }
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = min;
                counters.update(|s| {
                    s.connected = true;
                    s.connections += 1;
                    s.sessions_resumed += u64::from(ack.session_present);
                });
                if !ack.session_present {
                    if let Some(tx) = &tx {
                        let _ = tx.send(Msg::NewSession);
                    }
                }
                // Subscribe when the broker holds no session, and once per run in any case
                // so that a filter added to the configuration is subscribed to.
                if !ack.session_present || !subscribed_once {
                    match client.try_subscribe_many(filters.clone()) {
                        Ok(()) => subscribed_once = true,
                        Err(e) => warn(&format!("cannot subscribe: {e}")),
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if let Some(tx) = &tx {
                    if tx.send(Msg::Publish(p)).is_err() {
                        break;
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let refused = ack
                    .return_codes
                    .iter()
                    .filter(|c| matches!(c, SubscribeReasonCode::Failure))
                    .count();
                counters.update(|s| s.subscriptions_acked += 1);
                if refused > 0 {
                    warn(&format!("the broker refused {refused} subscription(s)"));
                    counters.update(|s| s.subscriptions_refused += refused as u64);
                }
            }
            Ok(_) => {}
            Err(e) => {
                counters.update(|s| {
                    s.connected = false;
                    s.connection_errors += 1;
                });
                warn(&format!(
                    "{}; reconnecting in {} ms",
                    describe(&e),
                    backoff.as_millis()
                ));
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(max);
            }
        }
    }
    // Phase 2: let the processing task finish the messages it has (their acks queue up),
    // keep the connection served meanwhile, then disconnect.
    drop(tx);
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    if !processor.is_finished() {
        loop {
            tokio::select! {
                _ = &mut processor => break,
                _ = tokio::time::sleep_until(deadline) => {
                    processor.abort();
                    break;
                }
                e = eventloop.poll() => if e.is_err() {
                    // No connection to acknowledge on: the broker will redeliver.
                    let _ = tokio::time::timeout_at(deadline, &mut processor).await;
                    break;
                }
            }
        }
    }
    if client.try_disconnect().is_ok() {
        while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, eventloop.poll()).await {
            if matches!(event, Event::Outgoing(Outgoing::Disconnect)) {
                break;
            }
        }
    }
    counters.update(|s| s.connected = false);
}

fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            format!("the broker refused the connection: {code:?}")
        }
        other => format!("connection: {other}"),
    }
}

/// The processing task: batches of messages → parse → one commit → acks.
async fn process(
    config: Arc<Config>,
    topics: Vec<TopicPlan>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    client: AsyncClient,
    log: IngestLog,
    counters: Arc<MqttCounters>,
    session: String,
) {
    let mut finished = Finished::recovered(&log, &session);
    let mut batch: Vec<Msg> = Vec::with_capacity(BATCH_MESSAGES);
    loop {
        batch.clear();
        if rx.recv_many(&mut batch, BATCH_MESSAGES).await == 0 {
            return;
        }
        let mut records = Vec::new();
        let mut to_ack: Vec<Publish> = Vec::new();
        let mut rejected: Vec<(String, Vec<LineError>)> = Vec::new();
        let mut accepted: Vec<(usize, u64)> = Vec::new();
        let mut keys: Vec<(String, String)> = Vec::new();
        for msg in batch.drain(..) {
            let p = match msg {
                Msg::NewSession => {
                    finished.clear();
                    continue;
                }
                Msg::Publish(p) => p,
            };
            if finished.is_redelivery(&p) {
                counters.update(|s| s.duplicates_skipped += 1);
                to_ack.push(p);
                continue;
            }
            if p.retain {
                counters.update(|s| s.retained_skipped += 1);
                to_ack.push(p);
                continue;
            }
            let Some((index, plan)) = topics
                .iter()
                .enumerate()
                .find(|(_, t)| vigie_config::ingest::topic_matches(&p.topic, &t.filter))
            else {
                counters.update(|s| s.unmatched += 1);
                rejected.push((
                    p.topic.clone(),
                    vec![LineError {
                        line: 1,
                        kind: "unmatched_topic",
                        field: None,
                        reason: "no configured topic filter matches it".into(),
                    }],
                ));
                to_ack.push(p);
                continue;
            };
            let parsed = parse_payload(plan, &config, &p.topic, &p.payload);
            let key = (plan.filter.clone(), plan.feed_name.clone());
            let n_rejected = parsed.rejected.len() as u64;
            counters.update(|s| {
                let c = s.topics.entry(key).or_default();
                c.messages += 1;
                c.rejected += n_rejected;
            });
            if !parsed.rejected.is_empty() {
                rejected.push((shown_topic(plan, &p.topic), parsed.rejected));
            }
            accepted.push((index, parsed.records.len() as u64));
            if !parsed.records.is_empty() && p.qos != QoS::AtMostOnce {
                keys.push((format!("{session}{}", p.pkid), fingerprint(&p)));
            }
            records.extend(parsed.records);
            to_ack.push(p);
        }
        for (topic, errors) in rejected {
            counters.reject(&topic, errors);
        }
        if !records.is_empty() {
            if let Err(e) = log.commit_keyed(records, keys, false).await {
                report_commit_error(&counters, &e);
                // Nothing of this batch is acknowledged: the broker keeps it for the next
                // session. A log that failed takes nothing more, so the source stops.
                return;
            }
        }
        counters.update(|s| {
            for (index, n) in accepted {
                let t = &topics[index];
                s.topics
                    .entry((t.filter.clone(), t.feed_name.clone()))
                    .or_default()
                    .accepted += n;
            }
        });
        for p in to_ack {
            if p.qos != QoS::AtMostOnce {
                if let Err(e) = client.ack(&p).await {
                    warn(&format!("cannot acknowledge: {e}"));
                }
            }
        }
    }
}

fn report_commit_error(counters: &MqttCounters, e: &IngestError) {
    counters.update(|s| s.commit_errors += 1);
    warn(&format!(
        "the ingest log failed ({e}); the MQTT source stops, unacknowledged messages stay with the broker"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
zones = "zones/marseille.geojson"
[[sources]]
name = "sensors"
feeds = ["density", "incident"]
token_env = "T"
[mappings.counts]
feed = "density"
time = { column = "time", format = "unix" }
location = { from_topic = true }
fields.people = { column = "count" }
# The tests send fixed dates (ts 1): live ingest takes any date of the past century.
[ingest]
max_past_days = 36500
[ingest.mqtt]
url = "mqtt://127.0.0.1:1"
topics = [
  { filter = "city/density/+", feed = "density", source = "sensors", zone_from_topic = 2 },
  { filter = "city/counts/+/+", feed = "density", source = "sensors", mapping = "counts", columns = ["time", "count"], zone_from_topic = 2, sensor_from_topic = 3 },
  { filter = "city/raw/+", feed = "density", source = "sensors", mapping = "counts", zone_from_topic = 2 },
]
"#;

    fn setup() -> (Config, Vec<TopicPlan>) {
        let c = Config::parse(CONFIG, "t.toml", None).unwrap();
        let plans = c
            .ingest
            .mqtt
            .as_ref()
            .unwrap()
            .topics
            .iter()
            .map(|t| TopicPlan::new(t, &c, Arc::new(Privacy::default())).unwrap())
            .collect();
        (c, plans)
    }

    #[test]
    fn ndjson_payloads_take_the_zone_from_the_topic_and_reject_by_line() {
        let (c, plans) = setup();
        let payload = concat!(
            r#"{"ts":"2026-11-28T10:00:00Z","people":120}"#,
            "\n\n",
            r#"{"ts":"2026-11-28T10:00:00Z","people":-3}"#,
            "\r\n",
            r#"{"feed":"incident","ts":"2026-11-28T10:00:00Z","severity":2}"#,
            "\n",
            r#"{"feed":"density","ts":1795860000,"people":5,"zone":"13002"}"#,
            "\nnot json\n",
        );
        let p = parse_payload(&plans[0], &c, "city/density/13001", payload.as_bytes());
        assert_eq!(p.records.len(), 2, "{:?}", p.rejected);
        let zone = |r: &Record| match &r.body {
            Some(vigie_model::Body::Density { zone, .. }) => c.zones.get(*zone).id.clone(),
            _ => panic!(),
        };
        assert_eq!(zone(&p.records[0]), "13001");
        assert_eq!(zone(&p.records[1]), "13002");
        let got: Vec<_> = p
            .rejected
            .iter()
            .map(|e| (e.line, e.kind, e.field.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (3, "invalid_field", Some("people")),
                (4, "forbidden_feed", Some("feed")),
                (6, "malformed", None)
            ]
        );
        let p = parse_payload(
            &plans[0],
            &c,
            "city/density/99999",
            br#"{"ts":1,"people":1}"#,
        );
        assert_eq!(p.rejected[0].kind, "unknown_zone");
        let p = parse_payload(&plans[0], &c, "city/density/13001", &[0xff, 0xfe]);
        assert_eq!(p.rejected[0].kind, "malformed");
        let p = parse_payload(&plans[0], &c, "city/density/13001", b"  ");
        assert_eq!(p.rejected.len(), 1);
    }

    #[test]
    fn csv_payloads_go_through_the_mapping() {
        let (c, plans) = setup();
        let p = parse_payload(
            &plans[1],
            &c,
            "city/counts/13003/s-7",
            b"1795860000,42\n1795863600,x\n",
        );
        assert_eq!(p.records.len(), 1);
        match &p.records[0].body {
            Some(vigie_model::Body::Density {
                zone,
                sensor,
                people,
            }) => {
                assert_eq!(c.zones.get(*zone).id, "13003");
                assert_eq!(sensor.as_deref(), Some("s-7"));
                assert_eq!(people.0, 42.0);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.rejected[0].line, 2);
        assert_eq!(p.rejected[0].field.as_deref(), Some("people"));
        // Without `columns`, the first line is the header.
        let p = parse_payload(
            &plans[2],
            &c,
            "city/raw/13004",
            b"count,time\n7,1795860000\n",
        );
        assert_eq!((p.records.len(), p.rejected.len()), (1, 0));
        let p = parse_payload(&plans[2], &c, "city/raw/13004", b"a,b\n7,1795860000\n");
        assert_eq!(p.rejected[0].line, 1);
        assert!(p.rejected[0].reason.contains("header"), "{:?}", p.rejected);
    }

    #[test]
    fn only_a_dup_with_the_same_id_and_bytes_is_a_redelivery() {
        let publish = |pkid: u16, dup: bool, payload: &str| {
            let mut p = Publish::new("city/incident/13001", QoS::AtLeastOnce, payload);
            p.pkid = pkid;
            p.dup = dup;
            p
        };
        let mut f = Finished::default();
        assert!(!f.is_redelivery(&publish(1, false, "a")));
        assert!(f.is_redelivery(&publish(1, true, "a")));
        // Same bytes under another id, or another message under the id: new.
        assert!(!f.is_redelivery(&publish(2, true, "a")));
        assert!(!f.is_redelivery(&publish(1, true, "b")));
        // The id reused without dup: the earlier message was acknowledged; a later dup of the
        // same bytes is a redelivery of this one.
        assert!(!f.is_redelivery(&publish(2, false, "a")));
        assert!(f.is_redelivery(&publish(2, true, "a")));
        f.clear();
        assert!(!f.is_redelivery(&publish(2, true, "a")));
        let mut q0 = publish(0, true, "a");
        q0.qos = QoS::AtMostOnce;
        assert!(!f.is_redelivery(&q0) && !f.is_redelivery(&q0));
    }

    #[test]
    fn counters_render_and_keep_the_last_rejections() {
        let counters = MqttCounters::new(2);
        counters.update(|s| {
            s.connected = true;
            s.topics.insert(
                ("city/\"x\"/+".into(), "density".into()),
                TopicCounts {
                    messages: 3,
                    accepted: 5,
                    rejected: 1,
                },
            );
        });
        for i in 0..3 {
            counters.reject(
                "t",
                vec![LineError {
                    line: i,
                    kind: "malformed",
                    field: None,
                    reason: "r".into(),
                }],
            );
        }
        let kept: Vec<u64> = counters.rejections().iter().map(|r| r.error.line).collect();
        assert_eq!(kept, [1, 2]);
        assert_eq!(counters.snapshot().rejections_dropped, 1);
        let mut out = String::new();
        counters.render_prometheus(&mut out);
        assert!(out.contains("vigie_mqtt_connected 1\n"), "{out}");
        assert!(
            out.contains(
                "vigie_mqtt_records_accepted_total{filter=\"city/\\\"x\\\"/+\",feed=\"density\"} 5\n"
            ),
            "{out}"
        );
        assert!(out.contains("vigie_mqtt_rejections_dropped_total 1\n"));
    }

    #[test]
    fn tls_needs_a_readable_pem_ca() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Config::parse(CONFIG, "t.toml", None)
            .unwrap()
            .ingest
            .mqtt
            .unwrap();
        m.url = "mqtts://broker.invalid".into();
        m.ca_file = Some(dir.path().join("missing.pem"));
        assert!(mqtt_options(&m).unwrap_err().contains("missing.pem"));
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        m.ca_file = Some(bad);
        assert!(mqtt_options(&m).unwrap_err().contains("no PEM certificate"));
    }
}
