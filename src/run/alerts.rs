//! Alerting in `vigie run`: the alert service ([`vigie_alerts::Service`]) fed by the engine's
//! epochs and a timer on a thread of its own, and its notifiers. Its routes are the server's
//! (`vigie_server::alerts`).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;
use vigie_alerts::Service;
use vigie_config::Config;
use vigie_model::clock::now_ms;
use vigie_model::point::Point;
use vigie_model::{Changes, ClashRow, Feed, IndicatorRow};

/// Delivery counts of feeds and sources (`feed:<name>`, `source:<name>`).
pub type Probe = Box<dyn Fn() -> BTreeMap<String, u64> + Send>;

struct Input {
    rows: Vec<IndicatorRow>,
    clashes: Vec<(ClashRow, bool)>,
    clock_hour: i64,
}

/// The running alert service and its threads.
pub struct Alerts {
    pub service: Arc<Service>,
    input: mpsc::Sender<Input>,
    threads: Vec<JoinHandle<()>>,
}

/// Opens the alert state in `dir` and starts the evaluation thread (the engine's epochs, and
/// a timer every `alerts.tick_ms` that reads deliveries from `probe` for deadman rules) and
/// the notifiers, which stop with `stop`.
pub fn start(
    config: &Config,
    dir: &std::path::Path,
    probe: Probe,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Alerts> {
    let zone_ids: Vec<String> = config.zones.iter().map(|z| z.id.clone()).collect();
    let service = Arc::new(Service::open(&config.alerts, zone_ids, dir, now_ms())?);
    let (tx, rx) = mpsc::channel::<Input>();
    let mut threads = vigie_alerts::notify::start(service.clone(), stop);
    let tick = Duration::from_millis(config.alerts.tick_ms);
    let s = service.clone();
    threads.push(
        std::thread::Builder::new()
            .name("alerts".into())
            .spawn(move || loop {
                let r = match rx.recv_timeout(tick) {
                    Ok(i) => s.observe(i.rows, i.clashes, i.clock_hour, now_ms()),
                    Err(mpsc::RecvTimeoutError::Timeout) => Ok(()),
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                };
                let r = r.and_then(|_| s.tick(&probe(), now_ms()));
                if let Err(e) = r {
                    tracing::error!("vigie alerts: {e:#}");
                }
            })?,
    );
    Ok(Alerts {
        service,
        input: tx,
        threads,
    })
}

impl Alerts {
    /// What the engine calls after each epoch: hands its rows and clashes to the alert
    /// thread (never blocks the engine).
    pub fn observer(&self) -> impl FnMut(&Changes, i64) + Send + 'static {
        let tx = self.input.clone();
        move |changes, clock_hour| {
            let _ = tx.send(Input {
                rows: changes.indicators.iter().map(|(_, r)| r.clone()).collect(),
                clashes: changes.clashes.clone(),
                clock_hour,
            });
        }
    }

    /// The alert history points waiting for the store.
    pub fn points(&self) -> Box<dyn FnMut() -> Vec<Point> + Send> {
        let s = self.service.clone();
        Box::new(move || s.take_points())
    }

    /// Waits for the threads (after the engine has stopped and `stop` is set).
    pub fn join(self) {
        drop(self.input);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// The probe of `vigie run`: records accepted per source and feed over HTTP, and per topic
/// filter over MQTT (the filter's source from `mqtt_config`). Every configured feed and
/// source is listed from the start, at 0.
pub fn probe(
    config: &Config,
    mqtt_config: &Config,
    http: Arc<vigie_connectors::ingest::Metrics>,
    mqtt: Arc<vigie_connectors::ingest::MqttCounters>,
) -> Probe {
    let mut zero: BTreeMap<String, u64> = Feed::ALL
        .iter()
        .map(|f| (format!("feed:{}", f.name()), 0))
        .collect();
    for s in &config.sources {
        zero.insert(format!("source:{}", s.name), 0);
    }
    let topic_source: BTreeMap<String, String> = mqtt_config
        .ingest
        .mqtt
        .iter()
        .flat_map(|m| m.topics.iter())
        .map(|t| (t.filter.clone(), t.source.clone()))
        .collect();
    for s in topic_source.values() {
        zero.insert(format!("source:{s}"), 0);
    }
    Box::new(move || {
        let mut c = zero.clone();
        for (source, feed, n) in http.accepted() {
            *c.entry(format!("source:{source}")).or_default() += n;
            *c.entry(format!("feed:{feed}")).or_default() += n;
        }
        for ((filter, feed), t) in mqtt.snapshot().topics {
            if let Some(s) = topic_source.get(&filter) {
                *c.entry(format!("source:{s}")).or_default() += t.accepted;
            }
            *c.entry(format!("feed:{feed}")).or_default() += t.accepted;
        }
        c
    })
}
