//! Delivery of queued notifications: one thread per webhook or MQTT notifier takes the oldest
//! notification of its queue (the service's outbox, saved on disk), sends it, and removes it
//! once the receiver confirmed it — a 2xx answer, or an MQTT PUBACK. A failure is retried
//! after `retry_min_ms`, doubling up to `retry_max_ms`; notifications go in order, one at a
//! time. A receiver that answers 4xx (other than 408 and 429) refused it for good: it is
//! logged, counted as dropped, and passed over. Each message carries `event_id`
//! (`<alert id>-<event>`, also the webhook's `Idempotency-Key` header): delivery is at least
//! once (a confirmation lost in a crash sends it again), and the receiver tells duplicates.

use crate::service::{notifier_key, Service};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;
use vigie_config::{NotifierConfig, NotifierKind};

/// Starts a delivery thread per webhook and MQTT notifier; they stop when `stop` is set
/// (what is still queued stays on disk for the next start).
pub fn start(service: Arc<Service>, stop: Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    let mut out = Vec::new();
    for n in service.notifiers().to_vec() {
        let (service, stop) = (service.clone(), stop.clone());
        let h = match n.kind {
            NotifierKind::Log => continue,
            NotifierKind::Webhook => std::thread::Builder::new()
                .name("alerts-webhook".into())
                .spawn(move || webhook(service, n, stop)),
            NotifierKind::Mqtt => std::thread::Builder::new()
                .name("alerts-mqtt".into())
                .spawn(move || mqtt(service, n, stop)),
        };
        match h {
            Ok(h) => out.push(h),
            Err(e) => eprintln!("vigie alerts: cannot start a notifier thread: {e}"),
        }
    }
    out
}

enum Outcome {
    Delivered,
    /// Refused for good: drop it.
    Refused(String),
    Failed(String),
}

/// Sleeps up to `d`, in slices, returning early when `stop` is set.
fn nap(d: Duration, stop: &AtomicBool) {
    let end = std::time::Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let left = end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// The loop every notifier runs: oldest first, retried with a capped doubling delay.
fn deliver_loop(
    service: &Service,
    n: &NotifierConfig,
    stop: &AtomicBool,
    mut send: impl FnMut(&crate::eval::AlertEvent) -> Outcome,
) {
    let key = notifier_key(n);
    let mut delay = n.retry_min_ms;
    while !stop.load(Ordering::SeqCst) {
        let Some(d) = service.next_delivery(&key) else {
            nap(Duration::from_millis(50), stop);
            continue;
        };
        match send(&d.event) {
            Outcome::Delivered => {
                service.counters.delivered.fetch_add(1, Ordering::Relaxed);
                delay = n.retry_min_ms;
                if let Err(e) = service.delivered(&key, &d.event.event_id) {
                    eprintln!("vigie alerts: {e:#}");
                    nap(Duration::from_millis(delay), stop);
                }
            }
            Outcome::Refused(why) => {
                service.counters.dropped.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "vigie alerts: {key} refused notification {}: {why}; dropped",
                    d.event.event_id
                );
                if let Err(e) = service.delivered(&key, &d.event.event_id) {
                    eprintln!("vigie alerts: {e:#}");
                }
            }
            Outcome::Failed(why) => {
                service
                    .counters
                    .delivery_failures
                    .fetch_add(1, Ordering::Relaxed);
                if delay == n.retry_min_ms || delay >= n.retry_max_ms {
                    eprintln!(
                        "vigie alerts: {key}: delivery of {} failed ({why}); retrying in {delay} ms",
                        d.event.event_id
                    );
                }
                nap(Duration::from_millis(delay), stop);
                delay = (delay * 2).min(n.retry_max_ms);
            }
        }
    }
}

fn webhook(service: Arc<Service>, n: NotifierConfig, stop: Arc<AtomicBool>) {
    let url = n.url.clone().unwrap_or_default();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vigie alerts: webhook {url}: {e}");
            return;
        }
    };
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_millis(n.timeout_ms))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vigie alerts: webhook {url}: {e}");
            return;
        }
    };
    deliver_loop(&service, &n, &stop, |event| {
        runtime.block_on(async {
            let sent = client
                .post(&url)
                .header("Idempotency-Key", &event.event_id)
                .json(event)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => Outcome::Delivered,
                Ok(r)
                    if r.status().is_client_error()
                        && r.status().as_u16() != 408
                        && r.status().as_u16() != 429 =>
                {
                    Outcome::Refused(format!("HTTP {}", r.status()))
                }
                Ok(r) => Outcome::Failed(format!("HTTP {}", r.status())),
                Err(e) => Outcome::Failed(e.to_string()),
            }
        })
    });
}

fn mqtt(service: Arc<Service>, n: NotifierConfig, stop: Arc<AtomicBool>) {
    let url = n.url.clone().unwrap_or_default();
    let prefix = n.topic.clone().unwrap_or_else(|| "vigie/alerts".into());
    let id = format!("vigie-alerts-{}", std::process::id());
    let Some((host, port)) = url
        .strip_prefix("mqtt://")
        .map(|a| a.trim_end_matches('/'))
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
    else {
        eprintln!("vigie alerts: mqtt notifier {url}: give mqtt://host:port");
        return;
    };
    let mut opts = rumqttc::MqttOptions::new(id, host, port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut connection) = rumqttc::Client::new(opts, 16);
    let (acks, acked) = mpsc::channel::<()>();
    let stop_conn = stop.clone();
    let retry = n.retry_min_ms;
    let conn = std::thread::spawn(move || {
        while !stop_conn.load(Ordering::SeqCst) {
            match connection.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))) => {
                    let _ = acks.send(());
                }
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(_)) => nap(Duration::from_millis(retry), &stop_conn),
            }
        }
    });
    let timeout = Duration::from_millis(n.timeout_ms);
    deliver_loop(&service, &n, &stop, |event| {
        while acked.try_recv().is_ok() {}
        let subject = event
            .alert
            .zone
            .as_deref()
            .or(event.alert.feed.as_deref())
            .or(event.alert.source.as_deref())
            .unwrap_or("-");
        let topic = format!("{prefix}/{}/{subject}", event.alert.rule);
        let payload = match serde_json::to_vec(event) {
            Ok(p) => p,
            Err(e) => return Outcome::Refused(e.to_string()),
        };
        if let Err(e) = client.try_publish(topic, rumqttc::QoS::AtLeastOnce, false, payload) {
            return Outcome::Failed(e.to_string());
        }
        match acked.recv_timeout(timeout) {
            Ok(()) => Outcome::Delivered,
            Err(_) => Outcome::Failed("no PUBACK in time".into()),
        }
    });
    let _ = client.try_disconnect();
    let _ = conn.join();
}
