//! The alert service: the evaluator behind a lock, its state on disk, the history journal, the
//! notification outbox, the live stream of events and the history points for the store.
//!
//! Every change that matters (a transition, an acknowledgement, a silence, a rule) is saved
//! to `DIR/state.json` — written to `state.json.tmp`, fsynced, renamed over, the folder
//! fsynced — before it is announced, together with the notifications it queued (the
//! outbox). So a restart finds the alerts as they were and sends what was queued and not yet
//! delivered, and nothing twice that was confirmed. Transitions are appended to
//! `DIR/history.ndjson` (fsynced). Both formats: `alerts/FORMAT.md`.

use crate::eval::{
    AlertEvent, AlertView, Evaluator, EventKind, Origin, Persisted, RuleError, Silence, State,
    Transition,
};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::broadcast;
use vigie_config::{AlertRule, AlertsConfig, NotifierConfig, NotifierKind};
use vigie_model::point::Point;
use vigie_model::{ClashRow, IndicatorRow};

/// The version of `state.json`.
pub const STATE_VERSION: u32 = 1;

/// A notification waiting for its notifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The notifier's key ([`notifier_key`]).
    pub notifier: String,
    pub event: AlertEvent,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    state: Persisted,
    outbox: Vec<Delivery>,
}

/// One line of the history: a transition or an acknowledgement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at_ms: i64,
    /// A notification went out for it.
    pub notified: bool,
    #[serde(flatten)]
    pub event: AlertEvent,
}

/// A rule with where it comes from.
#[derive(Clone, Debug, Serialize)]
pub struct RuleView {
    #[serde(flatten)]
    pub rule: AlertRule,
    pub origin: Origin,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Counters {
    pub transitions: AtomicU64,
    pub notifications_queued: AtomicU64,
    pub delivered: AtomicU64,
    pub delivery_failures: AtomicU64,
    pub dropped: AtomicU64,
}

/// A notifier's key: its kind and address (the outbox names notifiers by it, so a changed
/// configuration does not send a queued notification to another receiver).
pub fn notifier_key(n: &NotifierConfig) -> String {
    let kind = match n.kind {
        NotifierKind::Log => "log",
        NotifierKind::Webhook => "webhook",
        NotifierKind::Mqtt => "mqtt",
    };
    format!(
        "{kind} {} {}",
        n.url.as_deref().unwrap_or(""),
        n.topic.as_deref().unwrap_or("")
    )
}

struct Inner {
    eval: Evaluator,
    outbox: Vec<Delivery>,
    history: Vec<HistoryEntry>,
    journal: File,
}

/// Errors of the API's actions.
#[derive(Debug, PartialEq)]
pub enum ActionError {
    NotFound(String),
    Conflict(String),
    Invalid(String, String),
    Storage(String),
}

/// The alert service of `vigie run`.
pub struct Service {
    inner: Mutex<Inner>,
    dir: PathBuf,
    notifiers: Vec<NotifierConfig>,
    events: broadcast::Sender<AlertEvent>,
    points: Mutex<Vec<Point>>,
    history_ms: i64,
    pub counters: Counters,
}

fn io_context(path: &Path) -> String {
    format!("alert state in {}", path.display())
}

impl Service {
    /// Opens (creates) the alert state in `dir`: restores `state.json`, reads the history
    /// journal (dropping what is older than `history_days`).
    pub fn open(
        config: &AlertsConfig,
        zone_ids: Vec<String>,
        dir: &Path,
        now_ms: i64,
    ) -> anyhow::Result<Service> {
        std::fs::create_dir_all(dir).with_context(|| io_context(dir))?;
        let state_path = dir.join("state.json");
        let (state, mut outbox) = match std::fs::read(&state_path) {
            Ok(bytes) => {
                let f: StateFile = serde_json::from_slice(&bytes)
                    .with_context(|| format!("reading {}", state_path.display()))?;
                if f.version != STATE_VERSION {
                    anyhow::bail!(
                        "{}: version {} (this vigie reads {STATE_VERSION})",
                        state_path.display(),
                        f.version
                    );
                }
                (f.state, f.outbox)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (Persisted::default(), Vec::new())
            }
            Err(e) => return Err(e).with_context(|| io_context(dir)),
        };
        let keys: Vec<String> = config.notify.iter().map(notifier_key).collect();
        let before = outbox.len();
        outbox.retain(|d| keys.contains(&d.notifier));
        if outbox.len() < before {
            eprintln!(
                "vigie alerts: {} queued notifications for notifiers no longer configured were dropped",
                before - outbox.len()
            );
        }
        let history_ms = config.history_days as i64 * 86_400_000;
        let journal_path = dir.join("history.ndjson");
        let mut history = Vec::new();
        let mut stale = false;
        if let Ok(text) = std::fs::read_to_string(&journal_path) {
            for line in text.lines() {
                // A torn last line (a crash mid-append) is skipped.
                match serde_json::from_str::<HistoryEntry>(line) {
                    Ok(h) if h.at_ms >= now_ms - history_ms => history.push(h),
                    _ => stale = true,
                }
            }
        }
        if stale {
            let mut text = String::new();
            for h in &history {
                text.push_str(&serde_json::to_string(h)?);
                text.push('\n');
            }
            write_atomic(dir, "history.ndjson", text.as_bytes())?;
        }
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .with_context(|| io_context(dir))?;
        let eval = Evaluator::new(zone_ids, config, state, now_ms);
        let (events, _) = broadcast::channel(1024);
        Ok(Service {
            inner: Mutex::new(Inner {
                eval,
                outbox,
                history,
                journal,
            }),
            dir: dir.to_path_buf(),
            notifiers: config.notify.clone(),
            events,
            points: Mutex::new(Vec::new()),
            history_ms,
            counters: Counters::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live stream of transitions and acknowledgements.
    pub fn subscribe(&self) -> broadcast::Receiver<AlertEvent> {
        self.events.subscribe()
    }

    /// The sender of the live stream (for a server that subscribes per client).
    pub fn sender(&self) -> broadcast::Sender<AlertEvent> {
        self.events.clone()
    }

    /// The notifiers configured.
    pub fn notifiers(&self) -> &[NotifierConfig] {
        &self.notifiers
    }

    /// Takes an epoch's changes and evaluates.
    pub fn observe(
        &self,
        rows: Vec<IndicatorRow>,
        clashes: Vec<(ClashRow, bool)>,
        clock_hour: i64,
        now_ms: i64,
    ) -> anyhow::Result<()> {
        let mut inner = self.lock();
        inner.eval.observe(rows, clashes, clock_hour);
        let t = inner.eval.evaluate(now_ms);
        self.commit(&mut inner, t, now_ms)
    }

    /// Takes the delivery counts of feeds and sources and evaluates (the timer).
    pub fn tick(&self, counts: &BTreeMap<String, u64>, now_ms: i64) -> anyhow::Result<()> {
        let mut inner = self.lock();
        inner.eval.activity(counts, now_ms);
        let t = inner.eval.evaluate(now_ms);
        self.commit(&mut inner, t, now_ms)
    }

    fn save(&self, inner: &Inner) -> anyhow::Result<()> {
        let f = StateFile {
            version: STATE_VERSION,
            state: inner.eval.state.clone(),
            outbox: inner.outbox.clone(),
        };
        let bytes = serde_json::to_vec(&f)?;
        write_atomic(&self.dir, "state.json", &bytes)
    }

    /// Saves the state with the notifications `transitions` queue, then journals and
    /// announces them.
    fn commit(
        &self,
        inner: &mut Inner,
        transitions: Vec<Transition>,
        now_ms: i64,
    ) -> anyhow::Result<()> {
        if transitions.is_empty() {
            return Ok(());
        }
        for t in &transitions {
            if !t.notify {
                continue;
            }
            let event = t.event();
            // The log: always, above a `kind = "log"` entry's `min_severity` if there is one.
            let log_min = self
                .notifiers
                .iter()
                .filter(|n| n.kind == NotifierKind::Log)
                .map(|n| n.min_severity)
                .min();
            if log_min.is_none_or(|m| t.alert.severity >= m) {
                if let Ok(line) = serde_json::to_string(&event) {
                    eprintln!("vigie alert: {line}");
                }
            }
            for n in &self.notifiers {
                if n.kind == NotifierKind::Log || t.alert.severity < n.min_severity {
                    continue;
                }
                let key = notifier_key(n);
                let queued = inner.outbox.iter().filter(|d| d.notifier == key).count();
                if queued >= n.queue_max {
                    let i = inner
                        .outbox
                        .iter()
                        .position(|d| d.notifier == key)
                        .expect("counted");
                    let dropped = inner.outbox.remove(i);
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "vigie alerts: queue of {key} full ({}): dropped notification {}",
                        n.queue_max, dropped.event.event_id
                    );
                }
                inner.outbox.push(Delivery {
                    notifier: key,
                    event: event.clone(),
                });
                self.counters
                    .notifications_queued
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        self.save(inner)?;
        let mut lines = String::new();
        let mut points = Vec::new();
        for t in &transitions {
            let h = HistoryEntry {
                at_ms: t.at_ms,
                notified: t.notify,
                event: t.event(),
            };
            lines.push_str(&serde_json::to_string(&h)?);
            lines.push('\n');
            points.push(history_point(&h));
            inner.history.push(h);
            let _ = self.events.send(t.event());
        }
        self.counters
            .transitions
            .fetch_add(transitions.len() as u64, Ordering::Relaxed);
        inner
            .journal
            .write_all(lines.as_bytes())
            .and_then(|_| inner.journal.sync_data())
            .with_context(|| io_context(&self.dir))?;
        let horizon = now_ms - self.history_ms;
        if inner.history.first().is_some_and(|h| h.at_ms < horizon) {
            inner.history.retain(|h| h.at_ms >= horizon);
        }
        self.points
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(points);
        Ok(())
    }

    /// The history points not yet handed to the store.
    pub fn take_points(&self) -> Vec<Point> {
        std::mem::take(&mut *self.points.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The alerts in `state`: `active` (pending or firing), `pending`, `firing`, `resolved`
    /// or `all`; newest first.
    pub fn alerts(&self, state: &str) -> Result<Vec<AlertView>, ActionError> {
        let keep: fn(State) -> bool = match state {
            "active" => |s| s != State::Resolved,
            "pending" => |s| s == State::Pending,
            "firing" => |s| s == State::Firing,
            "resolved" => |s| s == State::Resolved,
            "all" => |_| true,
            other => {
                return Err(ActionError::Invalid(
                    "state".into(),
                    format!("`{other}`: give active, pending, firing, resolved or all"),
                ))
            }
        };
        let inner = self.lock();
        Ok(inner
            .eval
            .state
            .alerts
            .values()
            .rev()
            .filter(|a| keep(a.state))
            .map(|a| a.view())
            .collect())
    }

    /// The transitions between `from_ms` and `to_ms` (inclusive), of `zone` (a zone, feed or
    /// source name) when given, oldest first.
    pub fn history(&self, from_ms: i64, to_ms: i64, zone: Option<&str>) -> Vec<HistoryEntry> {
        let inner = self.lock();
        inner
            .history
            .iter()
            .filter(|h| h.at_ms >= from_ms && h.at_ms <= to_ms)
            .filter(|h| {
                zone.is_none_or(|z| {
                    let a = &h.event.alert;
                    a.zone.as_deref() == Some(z)
                        || a.feed.as_deref() == Some(z)
                        || a.source.as_deref() == Some(z)
                })
            })
            .cloned()
            .collect()
    }

    /// Acknowledges alert `id`.
    pub fn ack(
        &self,
        id: &str,
        by: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<AlertView, ActionError> {
        let not_found = || ActionError::NotFound(format!("no alert {id}"));
        let n: u64 = id.parse().map_err(|_| not_found())?;
        let mut inner = self.lock();
        let t = inner
            .eval
            .ack(n, by, comment, now_ms)
            .ok_or_else(not_found)?;
        let view = t.alert.view();
        self.commit(&mut inner, vec![t], now_ms)
            .map_err(|e| ActionError::Storage(format!("{e:#}")))?;
        Ok(view)
    }

    /// Every rule in force.
    pub fn rules(&self) -> Vec<RuleView> {
        self.lock()
            .eval
            .rules()
            .into_values()
            .map(|(rule, origin)| RuleView { rule, origin })
            .collect()
    }

    /// One rule.
    pub fn rule(&self, name: &str) -> Option<RuleView> {
        self.lock()
            .eval
            .rules()
            .remove(name)
            .map(|(rule, origin)| RuleView { rule, origin })
    }

    /// Adds (`create`) or replaces a rule, and saves.
    pub fn put_rule(&self, rule: AlertRule, create: bool) -> Result<RuleView, ActionError> {
        let name = rule.name.clone();
        let mut inner = self.lock();
        let before = inner.eval.state.clone();
        inner.eval.put_rule(rule, create).map_err(|e| match e {
            RuleError::Exists => ActionError::Conflict(format!("rule `{name}` exists")),
            RuleError::NotFound => ActionError::NotFound(format!("no rule `{name}`")),
            RuleError::Invalid(k, m) => ActionError::Invalid(k, m),
        })?;
        if let Err(e) = self.save(&inner) {
            inner.eval.state = before;
            return Err(ActionError::Storage(format!("{e:#}")));
        }
        let (rule, origin) = inner.eval.rules().remove(&name).expect("just put");
        Ok(RuleView { rule, origin })
    }

    /// Deletes a rule (its firing alerts resolve), and saves.
    pub fn delete_rule(&self, name: &str, now_ms: i64) -> Result<(), ActionError> {
        let mut inner = self.lock();
        let t = inner
            .eval
            .delete_rule(name, now_ms)
            .map_err(|_| ActionError::NotFound(format!("no rule `{name}`")))?;
        let r = if t.is_empty() {
            self.save(&inner)
        } else {
            self.commit(&mut inner, t, now_ms)
        };
        r.map_err(|e| ActionError::Storage(format!("{e:#}")))
    }

    /// The silences in force.
    pub fn silences(&self, now_ms: i64) -> Vec<Silence> {
        self.lock()
            .eval
            .state
            .silences
            .values()
            .filter(|s| s.until_ms > now_ms)
            .cloned()
            .collect()
    }

    /// Adds a silence of `rule` and/or `zone` (a zone, feed or source) until `until_ms`.
    pub fn add_silence(
        &self,
        rule: Option<String>,
        zone: Option<String>,
        until_ms: i64,
        by: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<Silence, ActionError> {
        if rule.is_none() && zone.is_none() {
            return Err(ActionError::Invalid(
                "rule".into(),
                "give rule or zone (or both)".into(),
            ));
        }
        if until_ms <= now_ms {
            return Err(ActionError::Invalid(
                "until".into(),
                "must be in the future".into(),
            ));
        }
        let mut inner = self.lock();
        if let Some(r) = &rule {
            if !inner.eval.rules().contains_key(r) {
                return Err(ActionError::Invalid(
                    "rule".into(),
                    format!("no rule `{r}`"),
                ));
            }
        }
        let s = inner
            .eval
            .silence(rule, zone, until_ms, by, comment, now_ms);
        self.save(&inner)
            .map_err(|e| ActionError::Storage(format!("{e:#}")))?;
        Ok(s)
    }

    /// Ends a silence.
    pub fn delete_silence(&self, id: &str) -> Result<(), ActionError> {
        let not_found = || ActionError::NotFound(format!("no silence {id}"));
        let n: u64 = id.parse().map_err(|_| not_found())?;
        let mut inner = self.lock();
        inner.eval.state.silences.remove(&n).ok_or_else(not_found)?;
        self.save(&inner)
            .map_err(|e| ActionError::Storage(format!("{e:#}")))
    }

    /// The oldest notification waiting for notifier `key`.
    pub fn next_delivery(&self, key: &str) -> Option<Delivery> {
        self.lock()
            .outbox
            .iter()
            .find(|d| d.notifier == key)
            .cloned()
    }

    /// Notifications waiting, all notifiers.
    pub fn queued(&self) -> usize {
        self.lock().outbox.len()
    }

    /// Notifier `key` took `event_id` (or refused it for good): out of the outbox, saved.
    pub fn delivered(&self, key: &str, event_id: &str) -> anyhow::Result<()> {
        let mut inner = self.lock();
        let before = inner.outbox.len();
        inner
            .outbox
            .retain(|d| !(d.notifier == key && d.event.event_id == event_id));
        if inner.outbox.len() < before {
            self.save(&inner)?;
        }
        Ok(())
    }

    /// Prometheus text lines.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let (active, firing, queued) = {
            let inner = self.lock();
            let a = &inner.eval.state.alerts;
            (
                a.values().filter(|a| a.state != State::Resolved).count(),
                a.values().filter(|a| a.state == State::Firing).count(),
                inner.outbox.len(),
            )
        };
        let c = &self.counters;
        let mut line = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        line(
            "vigie_alerts_active",
            "gauge",
            "Alerts pending or firing.",
            active as u64,
        );
        line(
            "vigie_alerts_firing",
            "gauge",
            "Alerts firing.",
            firing as u64,
        );
        line(
            "vigie_alerts_transitions_total",
            "counter",
            "Alert transitions and acknowledgements.",
            c.transitions.load(Ordering::Relaxed),
        );
        line(
            "vigie_alerts_notifications_queued_total",
            "counter",
            "Notifications queued for webhook and MQTT notifiers.",
            c.notifications_queued.load(Ordering::Relaxed),
        );
        line(
            "vigie_alerts_notifications_delivered_total",
            "counter",
            "Notifications delivered.",
            c.delivered.load(Ordering::Relaxed),
        );
        line(
            "vigie_alerts_delivery_failures_total",
            "counter",
            "Failed delivery attempts (retried).",
            c.delivery_failures.load(Ordering::Relaxed),
        );
        line(
            "vigie_alerts_notifications_dropped_total",
            "counter",
            "Notifications dropped: queue full, or refused for good by the receiver.",
            c.dropped.load(Ordering::Relaxed),
        );
        line(
            "vigie_alerts_queue",
            "gauge",
            "Notifications waiting for delivery.",
            queued as u64,
        );
    }

    /// The events a transition kind maps to (for tests and callers).
    pub fn is_notified(kind: EventKind) -> bool {
        matches!(kind, EventKind::Firing | EventKind::Resolved)
    }
}

/// The history point of a transition: measurement `alert`, tags `rule`, `severity`, `event`
/// and `zone` / `feed` / `source`; fields `id`, `state` (0 resolved or cleared, 1 pending,
/// 2 firing; an acknowledgement keeps the alert's), `value`, `threshold`, `hour_ms`,
/// `notified`; at the transition's time.
pub fn history_point(h: &HistoryEntry) -> Point {
    let a = &h.event.alert;
    let mut tags = vec![
        ("rule".to_string(), a.rule.clone()),
        ("severity".to_string(), a.severity.name().to_string()),
        ("event".to_string(), h.event.event.name().to_string()),
    ];
    for (k, v) in [("zone", &a.zone), ("feed", &a.feed), ("source", &a.source)] {
        if let Some(v) = v {
            tags.push((k.to_string(), v.clone()));
        }
    }
    let state = match (h.event.event, a.state) {
        (EventKind::Cleared, _) | (_, State::Resolved) => 0.0,
        (_, State::Pending) => 1.0,
        (_, State::Firing) => 2.0,
    };
    let mut fields = vec![
        ("id".to_string(), a.id.parse::<f64>().unwrap_or(f64::NAN)),
        ("state".to_string(), state),
        ("threshold".to_string(), a.threshold),
        ("notified".to_string(), if h.notified { 1.0 } else { 0.0 }),
    ];
    if let Some(v) = a.value {
        fields.push(("value".to_string(), v));
    }
    if let Some(hour) = a.hour.as_deref().and_then(vigie_model::time::parse_ts_str) {
        fields.push(("hour_ms".to_string(), (hour / 1000) as f64));
    }
    Point::new("alert", tags, fields, h.at_ms)
}

/// Writes `name` in `dir` atomically: `name.tmp`, fsync, rename, fsync the folder.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigie_config::{Indicator, Op, Severity};
    use vigie_model::{Trend, F64};

    fn config() -> AlertsConfig {
        let toml = "[[rules]]\nname = \"hot\"\nindicator = \"risk_score\"\nthreshold = 75.0\nreset = 70.0\n\
                    [[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/h\"\nqueue_max = 2\n";
        let c: AlertsConfig = toml::from_str(toml).unwrap();
        assert_eq!(c.rules[0].indicator, Indicator::RiskScore);
        assert_eq!(
            (c.rules[0].op, c.rules[0].severity),
            (Op::Above, Severity::Warning)
        );
        c
    }

    fn row(zone: u32, risk: f64) -> IndicatorRow {
        IndicatorRow {
            zone,
            hour: 100,
            risk_score: F64(risk),
            risk_level: 1,
            protection_rate: F64(1.0),
            required_agents: 1,
            deployed_agents: 1,
            trend: Trend::Stable,
            crowd: F64(1.0),
            load: F64(0.1),
            incidents: 0,
            baseline: F64(0.0),
            recent: F64(1.0),
            events: F64(0.0),
            weather: F64(1.0),
            demonstration: 0,
            v2: None,
        }
    }

    #[test]
    fn the_outbox_and_history_survive_a_reopen_and_the_queue_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let zones = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let key = notifier_key(&config().notify[0]);
        {
            let s = Service::open(&config(), zones.clone(), dir.path(), 0).unwrap();
            let mut live = s.subscribe();
            s.observe(
                vec![row(0, 80.0), row(1, 90.0), row(2, 95.0)],
                vec![],
                100,
                1000,
            )
            .unwrap();
            // Three firings for a queue of two: the oldest is dropped, and counted.
            assert_eq!(s.queued(), 2);
            assert_eq!(s.counters.dropped.load(Ordering::Relaxed), 1);
            assert_eq!(live.try_recv().unwrap().event, EventKind::Firing);
            assert_eq!(s.take_points().len(), 3);
        }
        // A torn last line in the journal (a crash mid-append) is skipped.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("history.ndjson"))
            .unwrap();
        f.write_all(b"{\"at_ms\":12").unwrap();
        let s = Service::open(&config(), zones.clone(), dir.path(), 2000).unwrap();
        assert_eq!(s.history(i64::MIN, i64::MAX, None).len(), 3);
        assert_eq!(s.history(i64::MIN, i64::MAX, Some("c")).len(), 1);
        let next = s.next_delivery(&key).unwrap();
        assert_eq!(next.event.event_id, "1-firing");
        s.delivered(&key, &next.event.event_id).unwrap();
        drop(s);
        let s = Service::open(&config(), zones, dir.path(), 3000).unwrap();
        assert_eq!(s.next_delivery(&key).unwrap().event.event_id, "2-firing");
        assert_eq!(s.alerts("firing").unwrap().len(), 3);
        // The same values after the restart: nothing new.
        s.observe(
            vec![row(0, 80.0), row(1, 90.0), row(2, 95.0)],
            vec![],
            100,
            4000,
        )
        .unwrap();
        assert_eq!(s.queued(), 1);
    }
}
