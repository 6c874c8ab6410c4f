//! The MQTT source against a real Mosquitto (Debian's `mosquitto` 2.0, with
//! `mosquitto-clients` for `mosquitto_pub`). Each test starts its own broker on a free loopback
//! port, with persistence in a folder of its own, and kills it at the end (a guard).
//!
//! What Mosquitto does, and what the tests rely on:
//!
//! - It writes its persistence file (`mosquitto.db`: retained messages, persistent sessions
//!   with their subscriptions and queued QoS 1/2 messages) every `autosave_interval` seconds
//!   (1800 by default) and when it stops on SIGTERM. A SIGKILL loses what changed since the
//!   last save, including QoS 1 messages it had acknowledged to publishers, which no client can
//!   recover; the outage test stops it with SIGTERM.
//! - After a restart it still holds vigie's persistent session (CONNACK with session present)
//!   and delivers what was queued or in flight; in flight messages come again flagged `dup`.
//! - A new broker (lost persistence) answers with no session, and vigie subscribes again.
//!
//! If the binaries are missing the tests fail: `tests/run` installs them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use vigie_config::Config;
use vigie_connectors::ingest::{IngestLog, MqttCounters, MqttSource};
use vigie_model::Record;

#[path = "../../tests/support/mosquitto.rs"]
mod mosquitto;
use mosquitto::{free_port, mosquitto_pub, Broker};

fn config(port: u16, client_id: &str, log_dir: &Path) -> Arc<Config> {
    let text = format!(
        r#"
zones = "zones/marseille.geojson"
[ingest]
log_dir = "{}"
dead_letters = 100
[[sources]]
name = "sensors"
feeds = ["incident", "density"]
token_env = "VIGIE_TEST_UNUSED"
[ingest.mqtt]
url = "mqtt://127.0.0.1:{port}"
client_id = "{client_id}"
keep_alive_s = 5
reconnect_min_ms = 50
reconnect_max_ms = 400
topics = [
  {{ filter = "city/incident/+", feed = "incident", qos = 1, source = "sensors", zone_from_topic = 2 }},
  {{ filter = "city/density/+/+", feed = "density", qos = 1, source = "sensors", zone_from_topic = 2, sensor_from_topic = 3 }},
]
"#,
        log_dir.display()
    );
    Arc::new(Config::parse(&text, "test.toml", None).unwrap_or_else(|e| panic!("{e}")))
}

/// A source on a fresh ingest log, with the receiver the log hands committed batches to.
struct Vigie {
    source: Option<MqttSource>,
    counters: Arc<MqttCounters>,
    log: IngestLog,
    rx: mpsc::Receiver<Vec<Record>>,
    got: Vec<Record>,
}

impl Vigie {
    fn start(config: Arc<Config>) -> Vigie {
        let (tx, rx) = mpsc::channel();
        let opened = IngestLog::open(&config.ingest.log_dir, tx).unwrap();
        let counters = Arc::new(MqttCounters::new(100));
        let source = MqttSource::start(config, opened.log.clone(), counters.clone()).unwrap();
        let v = Vigie {
            source: Some(source),
            counters,
            log: opened.log,
            rx,
            got: Vec::new(),
        };
        v.wait_for("the subscription", |s| s.subscriptions_acked >= 1);
        v
    }

    /// Another source on the same ingest log (a restart of the source, not of the log).
    fn restart(&mut self, config: Arc<Config>) {
        self.source =
            Some(MqttSource::start(config, self.log.clone(), self.counters.clone()).unwrap());
    }

    fn wait_for(&self, what: &str, f: impl Fn(&vigie_connectors::ingest::MqttStats) -> bool) {
        let t0 = Instant::now();
        while !f(&self.counters.snapshot()) {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "waited in vain for {what}: {:?}",
                self.counters.snapshot()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Collects records until every id of `want` arrived, then a little longer (to see
    /// duplicates).
    fn collect_ids(&mut self, want: &[String]) {
        let t0 = Instant::now();
        loop {
            while let Ok(batch) = self.rx.try_recv() {
                self.got.extend(batch);
            }
            let ids = self.ids();
            if want.iter().all(|w| ids.contains_key(w)) {
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let missing: Vec<_> = want.iter().filter(|w| !ids.contains_key(*w)).collect();
                panic!(
                    "{} ids never arrived, e.g. {:?}; counters {:?}; rejections {:?}",
                    missing.len(),
                    &missing[..missing.len().min(10)],
                    self.counters.snapshot(),
                    self.counters.rejections()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(500));
        while let Ok(batch) = self.rx.try_recv() {
            self.got.extend(batch);
        }
    }

    /// Records by id.
    fn ids(&self) -> BTreeMap<String, Vec<&Record>> {
        let mut m: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
        for r in &self.got {
            m.entry(r.id.clone().unwrap_or_default())
                .or_default()
                .push(r);
        }
        m
    }

    fn zone_of(&self, config: &Config, r: &Record) -> String {
        match &r.body {
            Some(vigie_model::Body::Incident { zone, .. })
            | Some(vigie_model::Body::Density { zone, .. }) => config.zones.get(*zone).id.clone(),
            other => panic!("{other:?}"),
        }
    }
}

fn incident(id: &str, severity: u32) -> String {
    format!(r#"{{"id":"{id}","ts":"2026-11-28T10:00:00Z","severity":{severity}}}"#)
}

/// A rumqttc publisher with a persistent session, driven by a runtime of its own; its client
/// queues what is published while the broker is away and sends it after reconnecting.
struct Publisher {
    client: rumqttc::AsyncClient,
    runtime: tokio::runtime::Runtime,
}

impl Publisher {
    fn start(port: u16, id: &str) -> Publisher {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        o.set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 10_000);
        runtime.spawn(async move {
            loop {
                if eventloop.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        Publisher { client, runtime }
    }

    fn publish(&self, topic: &str, payload: String) {
        let c = self.client.clone();
        let topic = topic.to_string();
        self.runtime
            .block_on(async move {
                c.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
                    .await
            })
            .unwrap();
    }
}

#[test]
fn records_from_mosquitto_pub_and_rumqttc_arrive_once_with_the_zone_of_the_topic() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Broker::start(&dir.path().join("broker"), port);
    let config = config(port, "vigie-t1", &dir.path().join("ingest"));
    let mut vigie = Vigie::start(config.clone());

    let mut want = Vec::new();
    // mosquitto_pub: one record, then three lines in one message (the second is bad).
    mosquitto_pub(port, "city/incident/13001", &incident("cli-1", 3));
    want.push("cli-1".to_string());
    mosquitto_pub(
        port,
        "city/incident/13002",
        &format!(
            "{}\n{}\n{}\n",
            incident("cli-2", 2),
            incident("cli-bad", 9),
            incident("cli-3", 4)
        ),
    );
    want.extend(["cli-2".to_string(), "cli-3".to_string()]);
    // A record with its own zone keeps it; a record of another feed is refused.
    mosquitto_pub(
        port,
        "city/incident/13003",
        r#"{"id":"cli-4","ts":"2026-11-28T10:00:00Z","severity":1,"zone":"13016"}"#,
    );
    want.push("cli-4".to_string());
    mosquitto_pub(
        port,
        "city/incident/13003",
        r#"{"id":"cli-5","feed":"weather","ts":"2026-11-28T10:00:00Z","kind":"observed"}"#,
    );
    mosquitto_pub(port, "city/incident/13003", "not json at all");
    mosquitto_pub(port, "city/incident/99999", &incident("cli-6", 1));
    // A rumqttc client: 40 messages on densities, zone and sensor from the topic.
    let publisher = Publisher::start(port, "t1-publisher");
    for i in 0..40 {
        let id = format!("rq-{i}");
        publisher.publish(
            &format!("city/density/1300{}/s{i}", 1 + i % 9),
            format!(r#"{{"id":"{id}","ts":{},"people":{i}}}"#, 1_795_860_000 + i),
        );
        want.push(id);
    }
    vigie.collect_ids(&want);

    let ids = vigie.ids();
    for w in &want {
        assert_eq!(ids[w].len(), 1, "{w} arrived {} times", ids[w].len());
    }
    assert_eq!(
        ids.len(),
        want.len(),
        "unexpected records: {:?}",
        ids.keys()
    );
    let zone = |id: &str| vigie.zone_of(&config, ids[id][0]);
    assert_eq!(zone("cli-1"), "13001");
    assert_eq!(zone("cli-3"), "13002");
    assert_eq!(zone("cli-4"), "13016");
    assert_eq!(zone("rq-4"), "13005");
    match &ids["rq-7"][0].body {
        Some(vigie_model::Body::Density { sensor, people, .. }) => {
            assert_eq!(sensor.as_deref(), Some("s7"));
            assert_eq!(people.0, 7.0);
        }
        other => panic!("{other:?}"),
    }
    // Every rejection, with its line and field.
    let rejected: Vec<_> = vigie
        .counters
        .rejections()
        .into_iter()
        .map(|r| (r.topic, r.error.line, r.error.kind, r.error.field))
        .collect();
    assert_eq!(
        rejected,
        [
            (
                "city/incident/13002".into(),
                2,
                "invalid_field",
                Some("severity".into())
            ),
            (
                "city/incident/13003".into(),
                1,
                "forbidden_feed",
                Some("feed".into())
            ),
            ("city/incident/13003".into(), 1, "malformed", None),
            (
                "city/incident/99999".into(),
                1,
                "unknown_zone",
                Some("zone".into())
            ),
        ]
    );
    let s = vigie.counters.snapshot();
    let incidents = &s.topics[&("city/incident/+".to_string(), "incident".to_string())];
    assert_eq!(
        (incidents.messages, incidents.accepted, incidents.rejected),
        (6, 4, 4)
    );
    let densities = &s.topics[&("city/density/+/+".to_string(), "density".to_string())];
    assert_eq!(
        (densities.messages, densities.accepted, densities.rejected),
        (40, 40, 0)
    );
    let mut metrics = String::new();
    vigie.counters.render_prometheus(&mut metrics);
    assert!(
        metrics.contains(
            "vigie_mqtt_records_accepted_total{filter=\"city/density/+/+\",feed=\"density\"} 40\n"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("vigie_mqtt_connected 1\n"), "{metrics}");
    // Acknowledged, the rejected messages are not delivered again: nothing more comes.
    drop(vigie.source.take());
    vigie.restart(config.clone());
    vigie.wait_for("a resumed session", |s| s.sessions_resumed >= 1);
    std::thread::sleep(Duration::from_millis(500));
    assert!(vigie.rx.try_recv().is_err(), "a message came again");
}

#[test]
fn no_qos1_record_is_lost_when_the_broker_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker_dir = dir.path().join("broker");
    let mut broker = Broker::start(&broker_dir, port);
    let config = config(port, "vigie-t2", &dir.path().join("ingest"));
    let mut vigie = Vigie::start(config.clone());
    // Mid-stream: a publisher with a persistent session sends 400 messages, one every 3 ms,
    // while the broker is stopped (SIGTERM) after 0.3 s and started again on the same port and
    // folder 0.5 s later; what is published meanwhile waits in the publisher's client.
    let (done, wait_done) = mpsc::channel::<()>();
    let publisher = std::thread::spawn(move || {
        let publisher = Publisher::start(port, "t2-publisher");
        for i in 0..400 {
            publisher.publish(
                &format!("city/incident/130{:02}", 1 + i % 16),
                incident(&format!("n-{i}"), 1 + (i % 5) as u32),
            );
            std::thread::sleep(Duration::from_millis(3));
        }
        // Keep its event loop running until everything arrived.
        let _ = wait_done.recv_timeout(Duration::from_secs(60));
    });
    let want: Vec<String> = (0..400).map(|i| format!("n-{i}")).collect();
    std::thread::sleep(Duration::from_millis(300));
    broker.stop();
    std::thread::sleep(Duration::from_millis(500));
    let mut broker = Broker::start(&broker_dir, port);
    vigie.collect_ids(&want);
    let s = vigie.counters.snapshot();
    assert!(s.connections >= 2 && s.sessions_resumed >= 1, "{s:?}");
    assert!(s.connection_errors >= 1, "{s:?}");
    // Duplicates: only a message the publisher sent again after the outage (its PUBACK lost),
    // which the broker takes as a new one; the same bytes, so the same record.
    let ids = vigie.ids();
    let mut duplicated = 0;
    for (id, copies) in &ids {
        for c in &copies[1..] {
            duplicated += 1;
            let strip = |r: &Record| Record {
                seq: 0,
                ..r.clone()
            };
            assert_eq!(strip(c), strip(copies[0]), "{id}: copies differ");
        }
    }
    eprintln!(
        "broker restart: {} ids, {} duplicates, {} redeliveries skipped, counters {s:?}",
        ids.len(),
        duplicated,
        s.duplicates_skipped
    );
    assert_eq!(ids.len(), 400);
    drop(done);
    publisher.join().unwrap();

    // A broker that lost its state (a new persistence folder): vigie's session is gone, and
    // vigie subscribes again.
    broker.stop();
    let fresh = dir.path().join("fresh-broker");
    let _broker = Broker::start(&fresh, port);
    vigie.wait_for("a new session", |s| s.subscriptions_acked >= 2);
    mosquitto_pub(port, "city/incident/13005", &incident("after-loss", 2));
    vigie.collect_ids(&["after-loss".to_string()]);
}

#[test]
fn a_persistent_session_keeps_what_was_published_while_vigie_was_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Broker::start(&dir.path().join("broker"), port);
    let config = config(port, "vigie-t3", &dir.path().join("ingest"));
    let mut vigie = Vigie::start(config.clone());
    mosquitto_pub(port, "city/incident/13001", &incident("before", 2));
    vigie.collect_ids(&["before".to_string()]);
    // vigie stops (the source is dropped); sensors go on publishing at QoS 1.
    drop(vigie.source.take());
    let mut want = vec!["before".to_string()];
    for i in 0..30 {
        let id = format!("away-{i}");
        mosquitto_pub(
            port,
            &format!("city/incident/130{:02}", 1 + i % 16),
            &incident(&id, 3),
        );
        want.push(id);
    }
    // A new source with the same client id and clean_session = false gets them.
    vigie.restart(config.clone());
    vigie.collect_ids(&want);
    let ids = vigie.ids();
    assert!(ids.values().all(|c| c.len() == 1), "duplicates: {ids:?}");
    assert_eq!(ids.len(), 31);
    let s = vigie.counters.snapshot();
    assert!(s.sessions_resumed >= 1, "{s:?}");
}

#[test]
fn a_message_committed_just_before_a_crash_is_not_committed_again_when_redelivered() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Broker::start(&dir.path().join("broker"), port);
    let log_dir = dir.path().join("ingest");
    let config = config(port, "vigie-t4", &log_dir);
    // vigie's persistent session exists and is subscribed; vigie stops.
    drop(Vigie::start(config.clone()));
    // A record without id (no upsert can absorb a second copy) waits in the session.
    let topic = "city/incident/13005";
    let payload = r#"{"ts":"2026-11-28T10:00:00Z","severity":4}"#;
    mosquitto_pub(port, topic, payload);
    // vigie takes it, commits it (with its delivery, as the source does) and is killed before
    // its PUBACK leaves: a client under vigie's id with manual acks, and vigie's ingest log.
    {
        let (tx, _rx) = mpsc::channel();
        let opened = IngestLog::open(&log_dir, tx).unwrap();
        let mut o = rumqttc::MqttOptions::new("vigie-t4", "127.0.0.1", port);
        o.set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(5));
        let (client, mut connection) = rumqttc::Client::new(o, 10);
        let p = connection
            .iter()
            .find_map(|e| match e {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => Some(p),
                Ok(_) => None,
                Err(e) => panic!("{e}"),
            })
            .unwrap();
        assert_eq!(p.payload.as_ref(), payload.as_bytes());
        let mut h = Sha256::new();
        h.update(p.topic.as_bytes());
        h.update([0u8]);
        h.update(&p.payload);
        let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let key = format!("mqtt/vigie-t4@mqtt://127.0.0.1:{port}/{}", p.pkid);
        let zone = config.zones.by_id("13005").unwrap();
        let record = Record {
            feed: vigie_model::Feed::Incident,
            ts: 1_764_324_000_000_000,
            seq: 0,
            id: None,
            body: Some(vigie_model::Body::Incident { zone, severity: 4 }),
        };
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(
                opened
                    .log
                    .commit_keyed(vec![record], vec![(key, digest)], false),
            )
            .unwrap();
        // The connection drops without the PUBACK (no DISCONNECT either).
        drop((client, connection));
        drop(opened.log);
        opened.thread.join().unwrap();
    }
    // vigie starts again on its log: Mosquitto redelivers the message (dup, same packet id);
    // the source knows it from the log and acknowledges it without committing it again.
    let (tx, rx) = mpsc::channel();
    let opened = IngestLog::open(&log_dir, tx).unwrap();
    assert_eq!(opened.recovered.len(), 1);
    let counters = Arc::new(MqttCounters::new(100));
    let source = MqttSource::start(config.clone(), opened.log.clone(), counters.clone()).unwrap();
    let t0 = Instant::now();
    while counters.snapshot().duplicates_skipped < 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no redelivery recognised: {:?}",
            counters.snapshot()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.try_iter().flatten().count(), 0, "committed again");
    // It was acknowledged: a new start gets nothing more.
    source.stop();
    let source = MqttSource::start(config, opened.log.clone(), counters.clone()).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(rx.try_iter().flatten().count(), 0);
    assert_eq!(counters.snapshot().duplicates_skipped, 1);
    source.stop();
}

#[test]
fn a_publisher_faster_than_the_commits_does_not_stall_the_source() {
    // 20,000 QoS 1 messages as fast as a rumqttc publisher sends them. The source once waited
    // for room in its processing task while that task waited to queue acknowledgements only
    // the source's event loop sends: the connection stalled for good, and what the broker
    // still held never arrived.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // No limit on messages in flight to a client: the broker sends as fast as it can.
    let _broker = Broker::start_with(
        &dir.path().join("broker"),
        port,
        "allow_anonymous true\nmax_inflight_messages 0\n",
    );
    let config = config(port, "vigie-t5", &dir.path().join("ingest"));
    let mut vigie = Vigie::start(config);
    let publisher = Publisher::start(port, "fast-publisher");
    let want: Vec<String> = (0..20_000).map(|i| format!("fast-{i}")).collect();
    let client = publisher.client.clone();
    let payloads: Vec<(String, String)> = want
        .iter()
        .enumerate()
        .map(|(i, id)| {
            (
                format!("city/incident/130{:02}", 1 + i % 16),
                incident(id, 1 + (i % 5) as u32),
            )
        })
        .collect();
    publisher.runtime.block_on(async move {
        for (topic, payload) in payloads {
            client
                .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
    });
    vigie.collect_ids(&want);
    let ids = vigie.ids();
    assert!(ids.values().all(|c| c.len() == 1), "duplicates");
    assert_eq!(ids.len(), want.len());
}
