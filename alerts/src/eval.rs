//! The evaluator: pure and deterministic. It holds the latest indicator rows, the active
//! clashes and the feeds' activity, and for each (rule, subject) — a zone, or for a deadman
//! rule a feed or a source — a small state machine driven by explicit `now` timestamps:
//!
//! ```text
//!  inactive ──breach──> pending ──breach lasted for_s──> firing ──clear lasted resolve_for_s──> resolved
//!     ^  (for_s = 0: straight to firing)  │ no breach                  │ breach again: the clear
//!     └───────────────────────────────────┘ (cleared, never notified)  │ timer starts over
//! ```
//!
//! A breach is `value >= threshold` (`op = above`) or `value <= threshold` (`below`); a clear
//! is `value < reset` (or `> reset`): between the two the state holds (hysteresis). With no
//! value (no row yet for the zone, e.g. just after a restart) nothing moves. A figure of model
//! v2 that is undefined at an hour (fluidity without traffic or road capacity) is skipped; when
//! it is undefined at every hour read, the reading neither breaches nor holds: it clears. A deadman value
//! is the seconds since the feed or source last delivered, counted from the start for one
//! never seen since; a deadman alert clears only once data has arrived.
//!
//! Notifications go out on firing and on resolution only (never per update); a silence that
//! matches holds the firing notification back until it ends (a resolution is sent only for an
//! alert whose firing was sent).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use vigie_config::{AlertRule, Indicator, Op, Severity};
use vigie_model::time::{format_hour, format_ts, hour_start};
use vigie_model::{ClashRow, IndicatorRow};

/// Where a rule comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Config,
    Api,
}

/// The state of an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Firing,
    Resolved,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Firing => "firing",
            State::Resolved => "resolved",
        }
    }
}

/// What happened to an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// Breach seen, waiting for `for_s`.
    Pending,
    Firing,
    Resolved,
    /// A pending alert whose breach ended before it fired (never notified).
    Cleared,
    Acknowledged,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Pending => "pending",
            EventKind::Firing => "firing",
            EventKind::Resolved => "resolved",
            EventKind::Cleared => "cleared",
            EventKind::Acknowledged => "acknowledged",
        }
    }
}

/// An acknowledgement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub by: String,
    pub at_ms: i64,
    pub comment: String,
}

/// One alert: a (rule, subject) from its breach to its resolution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: u64,
    pub rule: String,
    pub severity: Severity,
    pub indicator: Indicator,
    pub zone: Option<String>,
    pub feed: Option<String>,
    pub source: Option<String>,
    pub state: State,
    pub value: Option<f64>,
    pub threshold: f64,
    /// The hour concerned (index of hours since the epoch).
    pub hour: Option<i64>,
    pub since_ms: i64,
    pub updated_ms: i64,
    pub message: String,
    pub contributions: Option<serde_json::Value>,
    pub acknowledged: Option<Ack>,
    /// Its firing notification went out.
    pub notified: bool,
}

/// The alert as the API and the notifications show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertView {
    pub id: String,
    pub rule: String,
    pub severity: Severity,
    pub zone: Option<String>,
    pub feed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source: Option<String>,
    pub state: State,
    pub value: Option<f64>,
    pub threshold: f64,
    pub hour: Option<String>,
    pub since: String,
    pub updated: String,
    pub message: String,
    pub contributions: Option<serde_json::Value>,
    pub acknowledged: Option<AckView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AckView {
    pub by: String,
    pub at: String,
    pub comment: String,
}

fn ms_text(ms: i64) -> String {
    format_ts(ms.saturating_mul(1000))
}

impl Alert {
    pub fn view(&self) -> AlertView {
        AlertView {
            id: self.id.to_string(),
            rule: self.rule.clone(),
            severity: self.severity,
            zone: self.zone.clone(),
            feed: self.feed.clone(),
            source: self.source.clone(),
            state: self.state,
            value: self.value,
            threshold: self.threshold,
            hour: self.hour.map(format_hour),
            since: ms_text(self.since_ms),
            updated: ms_text(self.updated_ms),
            message: self.message.clone(),
            contributions: self.contributions.clone(),
            acknowledged: self.acknowledged.as_ref().map(|a| AckView {
                by: a.by.clone(),
                at: ms_text(a.at_ms),
                comment: a.comment.clone(),
            }),
        }
    }
}

/// A transition or an acknowledgement: what the live stream, the notifiers and the history
/// get. It serializes as the alert's JSON plus `event` and `event_id` (the idempotency key of
/// its notification: `<alert id>-<event>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub event_id: String,
    pub event: EventKind,
    pub at: String,
    #[serde(flatten)]
    pub alert: AlertView,
}

/// A transition the evaluator made.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub kind: EventKind,
    pub at_ms: i64,
    pub alert: Alert,
    /// A notification goes out for it.
    pub notify: bool,
}

impl Transition {
    pub fn event(&self) -> AlertEvent {
        AlertEvent {
            event_id: format!("{}-{}", self.alert.id, self.kind.name()),
            event: self.kind,
            at: ms_text(self.at_ms),
            alert: self.alert.view(),
        }
    }
}

/// A silence: no notification for matching alerts until `until_ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: u64,
    /// The rule silenced (none: every rule)…
    pub rule: Option<String>,
    /// …for this zone, feed or source (none: every one).
    pub zone: Option<String>,
    pub until_ms: i64,
    pub by: String,
    pub comment: String,
    pub created_ms: i64,
}

impl Silence {
    fn matches(&self, a: &Alert, now_ms: i64) -> bool {
        now_ms < self.until_ms
            && self.rule.as_ref().is_none_or(|r| *r == a.rule)
            && self.zone.as_ref().is_none_or(|z| {
                a.zone.as_ref() == Some(z)
                    || a.feed.as_ref() == Some(z)
                    || a.source.as_ref() == Some(z)
            })
    }
}

/// The machine of one (rule, subject) while it is pending or firing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Track {
    pub alert: u64,
    /// When the current breach began (pending) or the alert fired.
    pub since_ms: i64,
    /// While firing: since when the value has been clear.
    pub clear_since_ms: Option<i64>,
}

/// What the evaluator keeps across restarts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Persisted {
    /// Rules created or replaced through the API (they win over a config rule of that name).
    pub api_rules: BTreeMap<String, AlertRule>,
    /// Config rules deleted through the API.
    pub deleted_rules: BTreeSet<String>,
    /// `(rule, subject)` → machine; subject is `zone:<id>`, `feed:<name>` or `source:<name>`.
    pub tracks: BTreeMap<String, BTreeMap<String, Track>>,
    /// Pending and firing alerts, and the latest resolved ones.
    pub alerts: BTreeMap<u64, Alert>,
    pub silences: BTreeMap<u64, Silence>,
    /// `rule` → subject → the times it fired within its flap window (flap damping).
    #[serde(default)]
    pub fired: BTreeMap<String, BTreeMap<String, Vec<i64>>>,
    pub next_alert: u64,
    pub next_silence: u64,
}

/// One reading of a rule for a subject.
#[derive(Clone, Debug, PartialEq)]
struct Reading {
    /// NaN: the figure is undefined at every hour read (it never breaches, and clears).
    value: f64,
    hour: Option<i64>,
    /// A deadman subject never seen since the start: it cannot clear.
    can_clear: bool,
    /// The row read (its contributions are computed only for an alert).
    row: Option<IndicatorRow>,
}

/// The pure evaluator.
pub struct Evaluator {
    zone_ids: Vec<String>,
    groups: BTreeMap<String, Vec<String>>,
    config_rules: BTreeMap<String, AlertRule>,
    keep_resolved: usize,
    /// The model is v1: rules on v2's figures are refused.
    model_v1: bool,
    pub state: Persisted,
    board: BTreeMap<(u32, i64), IndicatorRow>,
    clashes: BTreeSet<ClashRow>,
    clock_hour: Option<i64>,
    /// Per `feed:<name>` / `source:<name>`: the count last seen and when it last grew.
    activity: BTreeMap<String, (u64, Option<i64>)>,
    started_ms: i64,
}

/// Why a rule change was refused.
#[derive(Debug, PartialEq)]
pub enum RuleError {
    NotFound,
    Exists,
    Invalid(String, String),
}

impl Evaluator {
    /// An evaluator on `zone_ids`, with the configuration's rules and groups, restoring
    /// `state`; `started_ms` is when deadman silences start counting.
    pub fn new(
        zone_ids: Vec<String>,
        config: &vigie_config::AlertsConfig,
        state: Persisted,
        started_ms: i64,
    ) -> Evaluator {
        Evaluator {
            zone_ids,
            groups: config.groups.clone(),
            config_rules: config
                .rules
                .iter()
                .map(|r| (r.name.clone(), r.clone()))
                .collect(),
            keep_resolved: config.keep_resolved,
            model_v1: config.model_v1,
            state,
            board: BTreeMap::new(),
            clashes: BTreeSet::new(),
            clock_hour: None,
            activity: BTreeMap::new(),
            started_ms,
        }
    }

    /// The rules in force, by name, with their origin.
    pub fn rules(&self) -> BTreeMap<String, (AlertRule, Origin)> {
        let mut out: BTreeMap<String, (AlertRule, Origin)> = self
            .config_rules
            .iter()
            .filter(|(n, _)| !self.state.deleted_rules.contains(*n))
            .map(|(n, r)| (n.clone(), (r.clone(), Origin::Config)))
            .collect();
        for (n, r) in &self.state.api_rules {
            out.insert(n.clone(), (r.clone(), Origin::Api));
        }
        out
    }

    /// Adds (`create`: refused if the name exists) or replaces a rule.
    pub fn put_rule(&mut self, rule: AlertRule, create: bool) -> Result<(), RuleError> {
        rule.validate(&self.zone_ids, &self.groups, self.model_v1)
            .map_err(|(k, m)| RuleError::Invalid(k, m))?;
        if create && self.rules().contains_key(&rule.name) {
            return Err(RuleError::Exists);
        }
        self.state.deleted_rules.remove(&rule.name);
        self.state.api_rules.insert(rule.name.clone(), rule);
        Ok(())
    }

    /// Deletes a rule; its pending alerts go, its firing ones resolve.
    pub fn delete_rule(&mut self, name: &str, now_ms: i64) -> Result<Vec<Transition>, RuleError> {
        if !self.rules().contains_key(name) {
            return Err(RuleError::NotFound);
        }
        self.state.api_rules.remove(name);
        if self.config_rules.contains_key(name) {
            self.state.deleted_rules.insert(name.to_string());
        }
        let out = self.retire(name, "rule deleted", now_ms);
        self.trim_resolved();
        Ok(out)
    }

    /// Ends the alerts of a rule that is gone: pending ones are cleared, firing ones resolve.
    fn retire(&mut self, name: &str, why: &str, now_ms: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        self.state.fired.remove(name);
        for (_, t) in self.state.tracks.remove(name).unwrap_or_default() {
            let Some(a) = self.state.alerts.get_mut(&t.alert) else {
                continue;
            };
            if a.state == State::Firing {
                a.state = State::Resolved;
                a.updated_ms = now_ms;
                a.message = format!("{} ({why})", a.message);
                out.push(Transition {
                    kind: EventKind::Resolved,
                    at_ms: now_ms,
                    notify: a.notified,
                    alert: a.clone(),
                });
            } else {
                let a = self.state.alerts.remove(&t.alert).expect("present");
                out.push(Transition {
                    kind: EventKind::Cleared,
                    at_ms: now_ms,
                    notify: false,
                    alert: a,
                });
            }
        }
        out
    }

    /// Takes an epoch's changes: indicator rows, clashes that appeared or ended, the clock.
    pub fn observe(
        &mut self,
        rows: impl IntoIterator<Item = IndicatorRow>,
        clashes: impl IntoIterator<Item = (ClashRow, bool)>,
        clock_hour: i64,
    ) {
        // Hours before the clock's are of no interest to any rule: they are not kept, and the
        // board is swept of them only when the clock moves (a sweep visits every zone-hour held,
        // some 70,000 on 100 zones, and epochs come every few milliseconds live).
        for r in rows {
            if r.hour >= clock_hour {
                self.board.insert((r.zone, r.hour), r);
            }
        }
        for (c, active) in clashes {
            if active {
                self.clashes.insert(c);
            } else {
                self.clashes.remove(&c);
            }
        }
        if self.clock_hour != Some(clock_hour) {
            self.board.retain(|(_, h), _| *h >= clock_hour);
        }
        self.clock_hour = Some(clock_hour);
    }

    /// Takes the feeds' and sources' delivery counts (`feed:<name>`, `source:<name>` →
    /// records accepted so far) at `now_ms`: a count that grew means data arrived. The first
    /// counts seen are the start's (what the log held before does not count as arrival).
    pub fn activity(&mut self, counts: &BTreeMap<String, u64>, now_ms: i64) {
        for (k, n) in counts {
            match self.activity.get_mut(k) {
                None => {
                    self.activity.insert(k.clone(), (*n, None));
                }
                Some((last, seen)) => {
                    if *n > *last {
                        *last = *n;
                        *seen = Some(now_ms);
                    }
                }
            }
        }
    }

    fn zones_of(&self, rule: &AlertRule) -> Vec<u32> {
        if rule.zones.is_empty() && rule.group.is_none() {
            return (0..self.zone_ids.len() as u32).collect();
        }
        let mut ids: BTreeSet<&String> = rule.zones.iter().collect();
        if let Some(g) = rule.group.as_ref().and_then(|g| self.groups.get(g)) {
            ids.extend(g.iter());
        }
        ids.into_iter()
            .filter_map(|id| self.zone_ids.iter().position(|z| z == id))
            .map(|i| i as u32)
            .collect()
    }

    fn read_zone(&self, rule: &AlertRule, zone: u32) -> Option<Reading> {
        let clock = self.clock_hour?;
        let last = clock + rule.lookahead_h as i64;
        if rule.indicator == Indicator::Clash {
            let (lo, hi) = (hour_start(clock), hour_start(last + 1));
            let mut n = 0usize;
            let mut first: Option<i64> = None;
            for c in self.clashes.iter().filter(|c| c.zone == zone) {
                if c.start < hi && c.end > lo {
                    n += 1;
                    let h = vigie_model::time::hour_of(c.start.max(lo));
                    first = Some(first.map_or(h, |f: i64| f.min(h)));
                }
            }
            return Some(Reading {
                value: n as f64,
                hour: first.or(Some(clock)),
                can_clear: true,
                row: None,
            });
        }
        let mut best: Option<(f64, &IndicatorRow)> = None;
        let mut undefined: Option<&IndicatorRow> = None;
        for (_, row) in self.board.range((zone, clock)..=(zone, last)) {
            let Some(v) = value_of(rule.indicator, row) else {
                undefined = undefined.or(Some(row));
                continue;
            };
            let worse = match (best, rule.op) {
                (None, _) => true,
                (Some((b, _)), Op::Above) => v > b,
                (Some((b, _)), Op::Below) => v < b,
            };
            if worse {
                best = Some((v, row));
            }
        }
        best.or(undefined.map(|row| (f64::NAN, row)))
            .map(|(v, row)| Reading {
                value: v,
                hour: Some(row.hour),
                can_clear: true,
                row: Some(row.clone()),
            })
    }

    fn read_activity(&self, key: &str, now_ms: i64) -> Reading {
        let seen = self.activity.get(key).and_then(|(_, s)| *s);
        let from = seen.unwrap_or(self.started_ms);
        Reading {
            value: (now_ms - from).max(0) as f64 / 1000.0,
            hour: None,
            can_clear: seen.is_some(),
            row: None,
        }
    }

    /// Evaluates every rule for every subject at `now_ms`; returns the transitions, in order
    /// (rules by name, subjects by key).
    pub fn evaluate(&mut self, now_ms: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        let rules = self.rules();
        // Alerts of a rule the configuration no longer has (changed between two runs).
        let gone: Vec<String> = self
            .state
            .tracks
            .keys()
            .filter(|n| !rules.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            out.extend(self.retire(&name, "rule removed", now_ms));
        }
        for (name, (rule, _)) in rules {
            let subjects: Vec<(String, Option<Reading>)> = match rule.indicator {
                Indicator::FeedSilence => {
                    let key = match (&rule.feed, &rule.source) {
                        (Some(f), _) => format!("feed:{f}"),
                        (None, Some(s)) => format!("source:{s}"),
                        (None, None) => continue,
                    };
                    let r = self.read_activity(&key, now_ms);
                    vec![(key, Some(r))]
                }
                _ => self
                    .zones_of(&rule)
                    .into_iter()
                    .map(|z| {
                        (
                            format!("zone:{}", self.zone_ids[z as usize]),
                            self.read_zone(&rule, z),
                        )
                    })
                    .collect(),
            };
            for (subject, reading) in subjects {
                self.step(&name, &rule, &subject, reading, now_ms, &mut out);
            }
        }
        // Firing alerts whose notification a silence held back, now that it is over.
        let silences: Vec<Silence> = self.state.silences.values().cloned().collect();
        for a in self.state.alerts.values_mut() {
            if a.state == State::Firing
                && !a.notified
                && !silences.iter().any(|s| s.matches(a, now_ms))
            {
                a.notified = true;
                out.push(Transition {
                    kind: EventKind::Firing,
                    at_ms: now_ms,
                    notify: true,
                    alert: a.clone(),
                });
            }
        }
        self.state.silences.retain(|_, s| s.until_ms > now_ms);
        if !out.is_empty() {
            self.trim_resolved();
        }
        out
    }

    fn step(
        &mut self,
        name: &str,
        rule: &AlertRule,
        subject: &str,
        reading: Option<Reading>,
        now_ms: i64,
        out: &mut Vec<Transition>,
    ) {
        let Some(r) = reading else { return };
        // NaN (undefined) compares false: no breach; and it clears.
        let breach = match rule.op {
            Op::Above => r.value >= rule.threshold,
            Op::Below => r.value <= rule.threshold,
        };
        let clear = r.can_clear
            && (r.value.is_nan()
                || match rule.op {
                    Op::Above => r.value < rule.reset(),
                    Op::Below => r.value > rule.reset(),
                });
        let for_ms = rule.for_s as i64 * 1000;
        let resolve_ms = rule.resolve_for_s as i64 * 1000;
        let track = self
            .state
            .tracks
            .get(name)
            .and_then(|t| t.get(subject))
            .cloned();
        let silenced =
            |a: &Alert, s: &BTreeMap<u64, Silence>| s.values().any(|s| s.matches(a, now_ms));
        match track {
            None => {
                if !breach {
                    return;
                }
                let id = self.state.next_alert;
                self.state.next_alert += 1;
                let (kind, sub) = subject.split_once(':').unwrap_or(("zone", subject));
                let mut a = Alert {
                    id,
                    rule: name.to_string(),
                    severity: rule.severity,
                    indicator: rule.indicator,
                    zone: (kind == "zone").then(|| sub.to_string()),
                    feed: (kind == "feed").then(|| sub.to_string()),
                    source: (kind == "source").then(|| sub.to_string()),
                    state: State::Pending,
                    value: None,
                    threshold: rule.threshold,
                    hour: None,
                    since_ms: now_ms,
                    updated_ms: now_ms,
                    message: String::new(),
                    contributions: None,
                    acknowledged: None,
                    notified: false,
                };
                refresh(&mut a, rule, &r);
                let kind = if for_ms == 0 {
                    a.state = State::Firing;
                    a.notified = !silenced(&a, &self.state.silences);
                    self.note_fired(name, rule, subject, now_ms);
                    EventKind::Firing
                } else {
                    EventKind::Pending
                };
                out.push(Transition {
                    kind,
                    at_ms: now_ms,
                    notify: a.notified,
                    alert: a.clone(),
                });
                self.state.alerts.insert(id, a);
                self.state
                    .tracks
                    .entry(name.to_string())
                    .or_default()
                    .insert(
                        subject.to_string(),
                        Track {
                            alert: id,
                            since_ms: now_ms,
                            clear_since_ms: None,
                        },
                    );
            }
            Some(mut t) => {
                let Some(mut a) = self.state.alerts.get(&t.alert).cloned() else {
                    // An alert trimmed away under its track: start over.
                    self.drop_track(name, subject);
                    return;
                };
                refresh(&mut a, rule, &r);
                a.threshold = rule.threshold;
                a.severity = rule.severity;
                match a.state {
                    State::Pending if !breach => {
                        self.state.alerts.remove(&a.id);
                        self.drop_track(name, subject);
                        out.push(Transition {
                            kind: EventKind::Cleared,
                            at_ms: now_ms,
                            notify: false,
                            alert: a,
                        });
                        return;
                    }
                    State::Pending if now_ms - t.since_ms >= for_ms => {
                        a.state = State::Firing;
                        a.updated_ms = now_ms;
                        a.notified = !silenced(&a, &self.state.silences);
                        t.since_ms = now_ms;
                        self.note_fired(name, rule, subject, now_ms);
                        out.push(Transition {
                            kind: EventKind::Firing,
                            at_ms: now_ms,
                            notify: a.notified,
                            alert: a.clone(),
                        });
                    }
                    State::Firing if clear => {
                        let since = *t.clear_since_ms.get_or_insert(now_ms);
                        let flapping = rule.flap_max > 0
                            && self.fired_count(name, subject, rule, t.since_ms)
                                >= rule.flap_max as usize;
                        let needed = if flapping {
                            resolve_ms.max(rule.flap_window_s as i64 * 1000)
                        } else {
                            resolve_ms
                        };
                        if now_ms - since >= needed {
                            a.state = State::Resolved;
                            a.updated_ms = now_ms;
                            out.push(Transition {
                                kind: EventKind::Resolved,
                                at_ms: now_ms,
                                notify: a.notified,
                                alert: a.clone(),
                            });
                            self.state.alerts.insert(a.id, a);
                            self.drop_track(name, subject);
                            return;
                        }
                    }
                    State::Firing => t.clear_since_ms = None,
                    _ => {}
                }
                self.state.alerts.insert(a.id, a);
                self.state
                    .tracks
                    .entry(name.to_string())
                    .or_default()
                    .insert(subject.to_string(), t);
            }
        }
    }

    fn note_fired(&mut self, name: &str, rule: &AlertRule, subject: &str, now_ms: i64) {
        if rule.flap_max == 0 {
            return;
        }
        let window = rule.flap_window_s as i64 * 1000;
        let times = self
            .state
            .fired
            .entry(name.to_string())
            .or_default()
            .entry(subject.to_string())
            .or_default();
        times.retain(|t| now_ms - t < window);
        times.push(now_ms);
    }

    /// Firings of a subject in the flap window that ends at `at_ms` (its latest firing).
    fn fired_count(&self, name: &str, subject: &str, rule: &AlertRule, at_ms: i64) -> usize {
        let window = rule.flap_window_s as i64 * 1000;
        self.state
            .fired
            .get(name)
            .and_then(|s| s.get(subject))
            .map_or(0, |t| {
                t.iter()
                    .filter(|t| **t <= at_ms && at_ms - **t < window)
                    .count()
            })
    }

    fn drop_track(&mut self, name: &str, subject: &str) {
        if let Some(t) = self.state.tracks.get_mut(name) {
            t.remove(subject);
            if t.is_empty() {
                self.state.tracks.remove(name);
            }
        }
    }

    fn trim_resolved(&mut self) {
        let resolved: Vec<u64> = self
            .state
            .alerts
            .values()
            .filter(|a| a.state == State::Resolved)
            .map(|a| a.id)
            .collect();
        if resolved.len() > self.keep_resolved {
            for id in &resolved[..resolved.len() - self.keep_resolved] {
                self.state.alerts.remove(id);
            }
        }
    }

    /// Acknowledges an alert.
    pub fn ack(&mut self, id: u64, by: &str, comment: &str, now_ms: i64) -> Option<Transition> {
        let a = self.state.alerts.get_mut(&id)?;
        a.acknowledged = Some(Ack {
            by: by.to_string(),
            at_ms: now_ms,
            comment: comment.to_string(),
        });
        a.updated_ms = now_ms;
        Some(Transition {
            kind: EventKind::Acknowledged,
            at_ms: now_ms,
            notify: false,
            alert: a.clone(),
        })
    }

    /// Adds a silence; returns it.
    pub fn silence(
        &mut self,
        rule: Option<String>,
        zone: Option<String>,
        until_ms: i64,
        by: &str,
        comment: &str,
        now_ms: i64,
    ) -> Silence {
        let id = self.state.next_silence;
        self.state.next_silence += 1;
        let s = Silence {
            id,
            rule,
            zone,
            until_ms,
            by: by.to_string(),
            comment: comment.to_string(),
            created_ms: now_ms,
        };
        self.state.silences.insert(id, s.clone());
        s
    }
}

/// The value a rule on `indicator` reads in `row`; `None` where it is undefined (a figure of
/// model v2 on a row without them, fluidity and traffic where they have no value).
pub fn value_of(indicator: Indicator, row: &IndicatorRow) -> Option<f64> {
    let v2 = row.v2.as_ref();
    match indicator {
        Indicator::RiskScore => Some(row.risk_score.0),
        Indicator::RiskLevel => Some(row.risk_level as f64),
        Indicator::ProtectionRate => Some(row.protection_rate.0),
        Indicator::Load => Some(row.load.0),
        Indicator::Crowd => Some(row.crowd.0),
        Indicator::Criticality => v2.map(|v| v.criticality as f64),
        Indicator::Fluidity => v2.and_then(|v| v.fluidity).map(|f| f.0),
        Indicator::FluidityLevel => v2.and_then(|v| v.fluidity_level).map(f64::from),
        Indicator::Confidence => v2.map(|v| v.missing.confidence().value() as f64),
        Indicator::Calls => v2.map(|v| v.calls as f64),
        Indicator::Exposure => v2.map(|v| v.exposure.0),
        Indicator::Traffic => v2.and_then(|v| v.traffic).map(|t| t.0),
        Indicator::Clash | Indicator::FeedSilence => None,
    }
}

/// How a value is written in a message: a confidence by its level's name.
fn value_text(indicator: Indicator, v: f64) -> String {
    if v.is_nan() {
        return "undefined".into();
    }
    if indicator == Indicator::Confidence {
        if let Some((name, _)) = vigie_config::alerts::CONFIDENCE_LEVELS
            .iter()
            .find(|(_, x)| *x == v)
        {
            return (*name).to_string();
        }
    }
    round3(v).to_string()
}

/// Brings an alert's value, hour, contributions and message up to date with a reading.
fn refresh(a: &mut Alert, rule: &AlertRule, r: &Reading) {
    a.value = (!r.value.is_nan()).then_some(r.value);
    a.hour = r.hour;
    a.contributions = r.row.as_ref().map(contributions);
    let what = match (&a.zone, &a.feed, &a.source) {
        (Some(z), _, _) => format!("zone {z}"),
        (_, Some(f), _) => format!("feed {f}"),
        (_, _, Some(s)) => format!("source {s}"),
        _ => "?".into(),
    };
    let op = match rule.op {
        Op::Above => ">=",
        Op::Below => "<=",
    };
    a.message = if rule.indicator == Indicator::FeedSilence {
        if r.can_clear {
            format!(
                "{what} silent for {:.0} s (threshold {} s)",
                r.value, rule.threshold
            )
        } else {
            format!(
                "{what} not seen since the start, {:.0} s ago (threshold {} s)",
                r.value, rule.threshold
            )
        }
    } else {
        let when = match (r.hour, rule.lookahead_h) {
            (Some(h), 0) => format!("at {}", format_hour(h)),
            (Some(h), l) => format!("at {} (within the next {l} h)", format_hour(h)),
            (None, _) => String::new(),
        };
        let top = a
            .contributions
            .as_ref()
            .and_then(|c| c.get("top"))
            .and_then(|t| t.as_array())
            .map(|t| {
                t.iter()
                    .take(3)
                    .filter_map(|x| {
                        Some(format!(
                            "{} {:.3}",
                            x.get("name")?.as_str()?,
                            x.get("value")?.as_f64()?
                        ))
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let mut m = format!(
            "{} in {what} {when}: {} (threshold {op} {})",
            rule.indicator.name(),
            value_text(rule.indicator, r.value),
            value_text(rule.indicator, rule.threshold)
        );
        if rule.indicator == Indicator::Confidence {
            let missing: Vec<&str> = r
                .row
                .as_ref()
                .and_then(|row| row.v2.as_ref())
                .map(|v| v.missing.names().collect())
                .unwrap_or_default();
            if !missing.is_empty() {
                m.push_str("; missing: ");
                m.push_str(&missing.join(", "));
            }
        }
        if !top.is_empty() {
            m.push_str("; top contributions: ");
            m.push_str(&top);
        }
        m
    };
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The contributions of a row (`docs/model.md`), with `top`: the terms of the risk formula
/// ranked by their weight, with the default coefficients — the additive terms (baseline,
/// 0.5·recent, and under model v2 the exposure's parts: the events' own, spill, surge) and the
/// multiplier terms (0.8·overload, under v1 0.3·E/capacity, weather f_w − 1,
/// 0.5·demonstration). Under model v2 it also carries the row's v2 figures.
pub fn contributions(r: &IndicatorRow) -> serde_json::Value {
    let load = r.load.0;
    let mut top = vec![
        ("baseline", r.baseline.0),
        ("recent", 0.5 * r.recent.0),
        ("overload", 0.8 * (load - 1.0).max(0.0)),
        ("weather", r.weather.0 - 1.0),
        ("demonstration", 0.5 * r.demonstration as f64),
    ];
    match &r.v2 {
        None => {
            let e_over_cap = if r.crowd.0 > 0.0 {
                r.events.0 / r.crowd.0 * load
            } else {
                0.0
            };
            top.push(("events", 0.3 * e_over_cap));
        }
        Some(v) => {
            top.push(("events", v.exposure.0 - v.spill.0 - v.surge.0));
            top.push(("spill", v.spill.0));
            top.push(("surge", v.surge.0));
        }
    }
    top.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(b.0)));
    let top: Vec<serde_json::Value> = top
        .iter()
        .filter(|(_, v)| *v != 0.0)
        .map(|(n, v)| serde_json::json!({"name": n, "value": v}))
        .collect();
    let mut out = serde_json::json!({
        "baseline": r.baseline.0,
        "recent": r.recent.0,
        "events": r.events.0,
        "weather": r.weather.0,
        "demonstration": r.demonstration,
        "load": load,
        "crowd": r.crowd.0,
        "incidents": r.incidents,
        "top": top,
    });
    if let Some(v) = &r.v2 {
        let extra = serde_json::json!({
            "exposure": v.exposure.0,
            "spill": v.spill.0,
            "surge": v.surge.0,
            "calls": v.calls,
            "criticality": v.criticality,
            "traffic": v.traffic.map(|t| t.0),
            "fluidity": v.fluidity.map(|f| f.0),
            "fluidity_level": v.fluidity_level,
            "confidence": v.missing.confidence().name(),
            "missing": v.missing.names().collect::<Vec<_>>(),
        });
        if let (Some(o), serde_json::Value::Object(e)) = (out.as_object_mut(), extra) {
            o.extend(e);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vigie_config::AlertsConfig;
    use vigie_model::{Missing, RowV2, Trend, F64};

    const H: i64 = 490_000;

    fn row(zone: u32, hour: i64, risk: f64) -> IndicatorRow {
        IndicatorRow {
            zone,
            hour,
            risk_score: F64(risk),
            risk_level: 1,
            protection_rate: F64(1.0),
            required_agents: 1,
            deployed_agents: 1,
            trend: Trend::Stable,
            crowd: F64(100.0),
            load: F64(0.1),
            incidents: 0,
            baseline: F64(0.5),
            recent: F64(1.0),
            events: F64(0.0),
            weather: F64(1.0),
            demonstration: 0,
            v2: None,
        }
    }

    fn rule(threshold: f64, reset: f64, for_s: u64, resolve_for_s: u64) -> AlertRule {
        AlertRule {
            name: "risk".into(),
            indicator: Indicator::RiskScore,
            zones: vec!["13001".into()],
            group: None,
            op: Op::Above,
            threshold,
            reset: Some(reset),
            for_s,
            resolve_for_s,
            flap_max: 0,
            flap_window_s: 3600,
            lookahead_h: 0,
            severity: Severity::Critical,
            feed: None,
            source: None,
        }
    }

    fn evaluator(rules: Vec<AlertRule>, state: Persisted) -> Evaluator {
        let config = AlertsConfig {
            rules,
            ..AlertsConfig::default()
        };
        Evaluator::new(vec!["13001".into(), "13002".into()], &config, state, 0)
    }

    /// Feeds `(seconds, risk)` samples; returns the notifications `(event, alert id, at s)`.
    fn play(e: &mut Evaluator, samples: &[(i64, f64)]) -> Vec<(EventKind, u64, i64)> {
        let mut out = Vec::new();
        for &(t, v) in samples {
            e.observe([row(0, H, v), row(1, H, 99.0)], [], H);
            for tr in e.evaluate(t * 1000) {
                if tr.notify {
                    out.push((tr.kind, tr.alert.id, t));
                }
            }
        }
        out
    }

    #[test]
    fn oscillation_around_the_threshold_notifies_exactly_once_per_crossing() {
        let mut e = evaluator(vec![rule(75.0, 70.0, 60, 0)], Persisted::default());
        let script = [
            (0, 60.0),   // below: nothing
            (10, 76.0),  // breach: pending (alert 0)
            (40, 74.0),  // below the threshold before `for`: cleared, never notified
            (50, 80.0),  // breach again: pending (alert 1)
            (80, 77.0),  // still pending (30 s)
            (110, 78.0), // 60 s of breach: firing
            (120, 72.0), // between reset and threshold: holds
            (130, 76.0),
            (140, 69.0), // below reset: resolved
            (150, 71.0), // below the threshold: nothing
            (160, 90.0), // pending (alert 2)
            (230, 90.0), // firing
            (240, 10.0), // resolved
        ];
        use EventKind::*;
        assert_eq!(
            play(&mut e, &script),
            vec![
                (Firing, 1, 110),
                (Resolved, 1, 140),
                (Firing, 2, 230),
                (Resolved, 2, 240)
            ]
        );
        // Zone 13002 is at 99 all along but not in the rule's zones.
        assert!(e
            .state
            .alerts
            .values()
            .all(|a| a.zone.as_deref() == Some("13001")));
        assert_eq!(e.state.alerts.len(), 2);
    }

    #[test]
    fn resolve_for_damps_flapping() {
        let mut e = evaluator(vec![rule(75.0, 70.0, 0, 30)], Persisted::default());
        let script = [
            (0, 80.0),  // fires at once (for_s = 0)
            (10, 60.0), // clear…
            (20, 80.0), // …not for 30 s: still firing, clear timer reset
            (30, 60.0),
            (50, 60.0), // 20 s clear
            (60, 60.0), // 30 s clear: resolved
        ];
        use EventKind::*;
        assert_eq!(
            play(&mut e, &script),
            vec![(Firing, 0, 0), (Resolved, 0, 60)]
        );
    }

    #[test]
    fn a_restart_while_firing_does_not_fire_again_and_still_resolves() {
        let mut e = evaluator(vec![rule(75.0, 70.0, 0, 0)], Persisted::default());
        assert_eq!(play(&mut e, &[(0, 80.0)]).len(), 1);
        let saved = serde_json::to_string(&e.state).unwrap();
        let mut e = evaluator(
            vec![rule(75.0, 70.0, 0, 0)],
            serde_json::from_str(&saved).unwrap(),
        );
        // Before any row, nothing moves; then the same high value: no second firing.
        assert!(e.evaluate(5_000).is_empty());
        assert!(play(&mut e, &[(10, 85.0), (20, 79.0)]).is_empty());
        assert_eq!(
            play(&mut e, &[(30, 50.0)]),
            vec![(EventKind::Resolved, 0, 30)]
        );
    }

    #[test]
    fn forecast_alerts_look_ahead_and_name_the_hour() {
        let mut r = rule(75.0, 70.0, 0, 0);
        r.lookahead_h = 24;
        let mut e = evaluator(vec![r], Persisted::default());
        e.observe(
            [row(0, H, 10.0), row(0, H + 20, 90.0), row(0, H + 30, 99.0)],
            [],
            H,
        );
        let t = e.evaluate(0);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].alert.value, Some(90.0));
        assert_eq!(t[0].alert.hour, Some(H + 20));
        assert!(
            t[0].alert.message.contains("within the next 24 h"),
            "{}",
            t[0].alert.message
        );
        e.observe([row(0, H + 20, 20.0)], [], H);
        assert_eq!(e.evaluate(1000)[0].kind, EventKind::Resolved);
    }

    #[test]
    fn deadman_fires_for_a_feed_never_seen_and_clears_when_it_delivers() {
        let r = AlertRule {
            name: "dead".into(),
            indicator: Indicator::FeedSilence,
            zones: vec![],
            group: None,
            op: Op::Above,
            threshold: 2.0,
            reset: None,
            for_s: 0,
            resolve_for_s: 0,
            flap_max: 0,
            flap_window_s: 3600,
            lookahead_h: 0,
            severity: Severity::Warning,
            feed: Some("density".into()),
            source: None,
        };
        let mut e = evaluator(vec![r], Persisted::default());
        let counts = |n: u64| BTreeMap::from([("feed:density".to_string(), n)]);
        e.activity(&counts(5), 0); // what the log held: not an arrival
        assert!(e.evaluate(1000).is_empty());
        let t = e.evaluate(2500);
        assert_eq!(t[0].kind, EventKind::Firing);
        assert!(t[0].alert.message.contains("not seen since the start"));
        e.activity(&counts(5), 3000);
        assert!(e.evaluate(3000).is_empty(), "still silent");
        e.activity(&counts(6), 3500);
        assert_eq!(e.evaluate(3500)[0].kind, EventKind::Resolved);
        assert!(e.evaluate(5000).is_empty());
        assert_eq!(e.evaluate(5600)[0].kind, EventKind::Firing);
    }

    #[test]
    fn silences_hold_the_firing_notification_until_they_end() {
        let mut e = evaluator(vec![rule(75.0, 70.0, 0, 0)], Persisted::default());
        e.silence(None, Some("13001".into()), 50_000, "duty", "drill", 0);
        assert!(play(&mut e, &[(0, 80.0), (40, 80.0)]).is_empty());
        assert_eq!(
            play(&mut e, &[(60, 80.0)]),
            vec![(EventKind::Firing, 0, 60)]
        );
        assert!(e.state.silences.is_empty());
        // Silenced and resolved before the silence ends: nothing at all.
        e.silence(Some("risk".into()), None, 500_000, "duty", "", 60_000);
        assert!(
            play(&mut e, &[(70, 10.0)]).len() == 1,
            "the resolution of a notified firing goes out"
        );
        assert!(play(&mut e, &[(80, 80.0), (90, 10.0)]).is_empty());
    }

    #[test]
    fn protection_rate_below_and_clashes_in_the_look_ahead() {
        let mut low = rule(0.5, 0.8, 0, 0);
        low.name = "thin".into();
        low.indicator = Indicator::ProtectionRate;
        low.op = Op::Below;
        let mut clash = rule(1.0, 1.0, 0, 0);
        clash.name = "clash".into();
        clash.indicator = Indicator::Clash;
        clash.lookahead_h = 48;
        let mut e = evaluator(vec![low, clash], Persisted::default());
        let mut r = row(0, H, 10.0);
        r.protection_rate = F64(0.4);
        let c = ClashRow {
            zone: 0,
            a: "ev-1".into(),
            b: "ev-2".into(),
            start: hour_start(H + 30),
            end: hour_start(H + 32),
            reason: vigie_model::ClashReason::Capacity,
        };
        e.observe([r.clone()], [(c.clone(), true)], H);
        let t = e.evaluate(0);
        let fired: Vec<(&str, Option<i64>)> = t
            .iter()
            .map(|t| (t.alert.rule.as_str(), t.alert.hour))
            .collect();
        assert_eq!(fired, [("clash", Some(H + 30)), ("thin", Some(H))]);
        // 0.7 is above the threshold but not above the reset (0.8): holds.
        r.protection_rate = F64(0.7);
        e.observe([r.clone()], [], H);
        assert!(e.evaluate(1000).is_empty());
        r.protection_rate = F64(0.9);
        e.observe([r], [(c, false)], H);
        let t = e.evaluate(2000);
        let kinds: Vec<(&str, EventKind)> =
            t.iter().map(|t| (t.alert.rule.as_str(), t.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("clash", EventKind::Resolved),
                ("thin", EventKind::Resolved)
            ]
        );
    }

    #[test]
    fn a_rule_gone_from_the_configuration_resolves_its_alerts() {
        let mut e = evaluator(vec![rule(75.0, 70.0, 0, 0)], Persisted::default());
        assert_eq!(play(&mut e, &[(0, 80.0)]).len(), 1);
        let mut e = evaluator(vec![], e.state.clone());
        let t = e.evaluate(1000);
        assert_eq!((t[0].kind, t[0].notify), (EventKind::Resolved, true));
        assert!(e.state.tracks.is_empty());
    }

    #[test]
    fn a_flapping_zone_resolves_only_after_the_flap_window() {
        let mut r = rule(75.0, 70.0, 0, 0);
        r.flap_max = 2;
        r.flap_window_s = 100;
        let mut e = evaluator(vec![r], Persisted::default());
        use EventKind::*;
        let got = play(
            &mut e,
            &[
                (0, 80.0),
                (10, 60.0),
                (20, 80.0),
                (30, 60.0),
                (60, 90.0),
                (70, 60.0),
                (169, 60.0),
                (170, 60.0),
            ],
        );
        // Fired at 0, resolved at 10; fired again at 20: twice in 100 s, flapping, so the
        // dips at 30 and 70 do not resolve it; 100 s clear from 70 does.
        assert_eq!(
            got,
            vec![
                (Firing, 0, 0),
                (Resolved, 0, 10),
                (Firing, 1, 20),
                (Resolved, 1, 170)
            ]
        );
    }

    /// The specification, restated plainly: one subject, for_s and resolve_for_s, hysteresis,
    /// either side of the threshold; `None` is an undefined value, which never breaches and
    /// clears.
    fn oracle(
        samples: &[(i64, Option<f64>)],
        op: Op,
        th: f64,
        reset: f64,
        for_s: i64,
        res_s: i64,
    ) -> Vec<(bool, i64)> {
        let breaches = |v: Option<f64>| match op {
            Op::Above => v.is_some_and(|v| v >= th),
            Op::Below => v.is_some_and(|v| v <= th),
        };
        let clears = |v: Option<f64>| match op {
            Op::Above => v.is_none_or(|v| v < reset),
            Op::Below => v.is_none_or(|v| v > reset),
        };
        let mut out = Vec::new();
        let (mut firing, mut breach_since, mut clear_since) = (false, None::<i64>, None::<i64>);
        for &(t, v) in samples {
            if !firing {
                if breaches(v) {
                    let s = *breach_since.get_or_insert(t);
                    if t - s >= for_s {
                        firing = true;
                        clear_since = None;
                        out.push((true, t));
                    }
                } else {
                    breach_since = None;
                }
            } else if clears(v) {
                let s = *clear_since.get_or_insert(t);
                if t - s >= res_s {
                    firing = false;
                    breach_since = None;
                    out.push((false, t));
                }
            } else {
                clear_since = None;
            }
        }
        out
    }

    /// A row of model v2 with `fluidity` (None: undefined) and the inputs `missing`.
    fn row_v2(zone: u32, hour: i64, fluidity: Option<f64>, missing: Missing) -> IndicatorRow {
        let mut r = row(zone, hour, 10.0);
        r.v2 = Some(RowV2 {
            calls: 3,
            criticality: 2,
            traffic: fluidity.map(|_| F64(1500.0)),
            fluidity: fluidity.map(F64),
            fluidity_level: fluidity.map(|f| if f >= 0.9 { 1 } else { 3 }),
            load_trend: Trend::Stable,
            fluidity_trend: None,
            missing,
            exposure: F64(2.5),
            spill: F64(0.5),
            surge: F64(0.0),
        });
        r
    }

    /// Feeds `(seconds, row of zone 13001)` samples; returns the notifications.
    fn play_rows(e: &mut Evaluator, samples: &[(i64, IndicatorRow)]) -> Vec<(EventKind, u64, i64)> {
        let mut out = Vec::new();
        for (t, r) in samples {
            e.observe([r.clone()], [], H);
            for tr in e.evaluate(t * 1000) {
                if tr.notify {
                    out.push((tr.kind, tr.alert.id, *t));
                }
            }
        }
        out
    }

    /// Notifications as `(firing, at s)`: true for a firing, false for a resolution.
    type Notified = Vec<(bool, i64)>;

    /// The notifications of `rule` over `rows`, played straight, and played with the state
    /// saved and restored after `cut` of them.
    fn played(rule: &AlertRule, rows: &[(i64, IndicatorRow)], cut: usize) -> (Notified, Notified) {
        let firings = |n: Vec<(EventKind, u64, i64)>| -> Notified {
            n.into_iter()
                .map(|(k, _, t)| (k == EventKind::Firing, t))
                .collect()
        };
        let mut e = evaluator(vec![rule.clone()], Persisted::default());
        let straight = firings(play_rows(&mut e, rows));
        let cut = cut.min(rows.len());
        let mut a = evaluator(vec![rule.clone()], Persisted::default());
        let mut both = play_rows(&mut a, &rows[..cut]);
        let saved = serde_json::to_string(&a.state).unwrap();
        let mut b = evaluator(vec![rule.clone()], serde_json::from_str(&saved).unwrap());
        both.extend(play_rows(&mut b, &rows[cut..]));
        (straight, firings(both))
    }

    fn v2_rule(indicator: Indicator, op: Op, threshold: f64, reset: f64) -> AlertRule {
        let mut r = rule(threshold, reset, 0, 0);
        r.name = indicator.name().into();
        r.indicator = indicator;
        r.op = op;
        r
    }

    #[test]
    fn confidence_below_reduced_fires_on_a_missing_input_and_names_it() {
        let cfg: AlertsConfig = toml::from_str(
            "[[rules]]\nname = \"blind\"\nindicator = \"confidence\"\nzones = [\"13001\"]\nop = \"below\"\nthreshold = \"reduced\"\nreset = \"reduced\"\n",
        )
        .unwrap();
        let r = cfg.rules[0].clone();
        assert_eq!((r.threshold, r.reset()), (1.0, 1.0));
        cfg.validate(&["13001".into()]).unwrap();
        let mut e = evaluator(vec![r], Persisted::default());
        let high = Missing::default();
        let reduced = Missing::default().with(Missing::INCIDENT, true);
        let low = reduced.with(Missing::WEATHER, true);
        e.observe([row_v2(0, H, None, high)], [], H);
        assert!(e.evaluate(0).is_empty(), "high confidence: no breach");
        e.observe([row_v2(0, H, None, reduced)], [], H);
        let t = e.evaluate(1000);
        assert_eq!(t[0].kind, EventKind::Firing);
        assert_eq!(t[0].alert.value, Some(1.0));
        let m = &t[0].alert.message;
        assert!(
            m.contains(": reduced (threshold <= reduced)") && m.contains("missing: incident"),
            "{m}"
        );
        let c = t[0].alert.contributions.as_ref().unwrap();
        assert_eq!(c["confidence"], "reduced");
        assert_eq!(c["missing"], serde_json::json!(["incident"]));
        // Low is further below, and back to reduced: still firing, no second notification;
        // high (above the reset) resolves it.
        for (t, m) in [(2000, low), (2500, reduced)] {
            e.observe([row_v2(0, H, None, m)], [], H);
            assert!(e.evaluate(t).is_empty());
        }
        e.observe([row_v2(0, H, None, high)], [], H);
        assert_eq!(e.evaluate(3000)[0].kind, EventKind::Resolved);
        // A name that is no level, and a v2 figure under model v1, are refused with their key.
        let err = toml::from_str::<AlertsConfig>(
            "[[rules]]\nname = \"x\"\nindicator = \"confidence\"\nthreshold = \"fair\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`fair` is neither a number nor a confidence level"),
            "{err}"
        );
        let v1 = AlertsConfig {
            model_v1: true,
            ..cfg
        };
        assert_eq!(
            v1.validate(&["13001".into()]).unwrap_err().0,
            "rules[0].indicator"
        );
    }

    #[test]
    fn an_undefined_fluidity_never_breaches_and_the_look_ahead_skips_it() {
        let mut r = v2_rule(Indicator::Fluidity, Op::Below, 0.5, 0.6);
        r.lookahead_h = 5;
        let mut e = evaluator(vec![r], Persisted::default());
        // No fluidity anywhere: nothing, whatever the threshold.
        e.observe(
            (0..6).map(|h| row_v2(0, H + h, None, Missing::default())),
            [],
            H,
        );
        assert!(e.evaluate(0).is_empty());
        // One congested hour among undefined ones: the worst defined hour is read.
        e.observe([row_v2(0, H + 3, Some(0.4), Missing::default())], [], H);
        let t = e.evaluate(1000);
        assert_eq!(
            (t[0].kind, t[0].alert.hour),
            (EventKind::Firing, Some(H + 3))
        );
        assert_eq!(t[0].alert.value, Some(0.4));
        assert_eq!(t[0].alert.contributions.as_ref().unwrap()["fluidity"], 0.4);
        // It becomes undefined again: the alert clears (an undefined value is not a breach).
        e.observe([row_v2(0, H + 3, None, Missing::default())], [], H);
        let t = e.evaluate(2000);
        assert_eq!(t[0].kind, EventKind::Resolved);
        assert_eq!(t[0].alert.value, None);
        assert!(
            t[0].alert.message.contains("undefined"),
            "{}",
            t[0].alert.message
        );
        // Rows of model v1 have no v2 figure: a criticality rule never breaches on them.
        let mut e = evaluator(
            vec![v2_rule(Indicator::Criticality, Op::Above, 1.0, 1.0)],
            Persisted::default(),
        );
        e.observe([row(0, H, 99.0)], [], H);
        assert!(e.evaluate(0).is_empty());
        e.observe([row_v2(0, H, None, Missing::default())], [], H);
        assert_eq!(e.evaluate(1000)[0].alert.value, Some(2.0));
    }

    #[test]
    fn v2_figures_are_read_from_the_row() {
        let r = row_v2(
            0,
            H,
            Some(0.8),
            Missing::default().with(Missing::DENSITY, true),
        );
        let got: Vec<Option<f64>> = [
            Indicator::Criticality,
            Indicator::Fluidity,
            Indicator::FluidityLevel,
            Indicator::Confidence,
            Indicator::Calls,
            Indicator::Exposure,
            Indicator::Traffic,
        ]
        .map(|i| value_of(i, &r))
        .to_vec();
        assert_eq!(
            got,
            [2.0, 0.8, 3.0, 1.0, 3.0, 2.5, 1500.0].map(Some).to_vec()
        );
        let top = contributions(&r)["top"].clone();
        assert_eq!(top[0]["name"], "events", "{top}"); // X = 2.5 − 0.5 − 0
        assert_eq!(top[0]["value"], 2.0, "{top}");
        // Ties (baseline 0.5, 0.5·recent, spill 0.5) by name; no zero term (surge).
        let names: Vec<&str> = top
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["events", "baseline", "recent", "spill"]);
    }

    proptest! {
        #[test]
        fn notifications_follow_the_specification_and_survive_restarts(
            steps in proptest::collection::vec((1i64..40, 50.0f64..100.0), 1..80),
            for_s in 0u64..60,
            res_s in 0u64..60,
            gap in 0.0f64..10.0,
            cut in 0usize..80,
        ) {
            let (th, reset) = (75.0, 75.0 - gap);
            let mut t = 0;
            let samples: Vec<(i64, f64)> = steps.iter().map(|(dt, v)| { t += dt; (t, *v) }).collect();
            let r = rule(th, reset, for_s, res_s);
            let rows: Vec<(i64, IndicatorRow)> = samples.iter().map(|(t, v)| (*t, row(0, H, *v))).collect();
            let (got, restarted) = played(&r, &rows, cut);
            let given: Vec<(i64, Option<f64>)> = samples.iter().map(|(t, v)| (*t, Some(*v))).collect();
            prop_assert_eq!(&got, &oracle(&given, Op::Above, th, reset, for_s as i64, res_s as i64));
            // Cut anywhere, saved and restored: the same notifications.
            prop_assert_eq!(restarted, got);
        }

        /// Fluidity below a threshold, where an hour may have no fluidity at all: the same
        /// specification, an undefined value never breaching and clearing; and across a
        /// restart.
        #[test]
        fn fluidity_rules_follow_the_specification_with_undefined_hours(
            steps in proptest::collection::vec((1i64..40, proptest::option::weighted(0.7, 0.0f64..1.0)), 1..80),
            for_s in 0u64..60,
            res_s in 0u64..60,
            gap in 0.0f64..0.2,
            cut in 0usize..80,
        ) {
            let (th, reset) = (0.5, 0.5 + gap);
            let mut t = 0;
            let samples: Vec<(i64, Option<f64>)> = steps.iter().map(|(dt, v)| { t += dt; (t, *v) }).collect();
            let mut r = v2_rule(Indicator::Fluidity, Op::Below, th, reset);
            r.for_s = for_s;
            r.resolve_for_s = res_s;
            let rows: Vec<(i64, IndicatorRow)> = samples
                .iter()
                .map(|(t, f)| (*t, row_v2(0, H, *f, Missing::default())))
                .collect();
            let (got, restarted) = played(&r, &rows, cut);
            prop_assert_eq!(&got, &oracle(&samples, Op::Below, th, reset, for_s as i64, res_s as i64));
            prop_assert_eq!(restarted, got);
        }

        /// Confidence below a level, from the inputs an hour lacks: the rule reads
        /// `Confidence::value` of `missing` (0 low, 1 reduced, 2 high).
        #[test]
        fn confidence_rules_read_the_level_of_the_missing_inputs(
            steps in proptest::collection::vec((1i64..40, 0u8..8), 1..60),
            level in 0u8..3,
        ) {
            let th = level as f64;
            let r = v2_rule(Indicator::Confidence, Op::Below, th, th);
            let mut t = 0;
            let rows: Vec<(i64, IndicatorRow)> = steps
                .iter()
                .map(|(dt, m)| { t += dt; (t, row_v2(0, H, None, Missing(*m))) })
                .collect();
            let values: Vec<(i64, Option<f64>)> = steps
                .iter()
                .zip(&rows)
                .map(|((_, m), (t, _))| (*t, Some(match m.count_ones() { 0 => 2.0, 1 => 1.0, _ => 0.0 })))
                .collect();
            prop_assert_eq!(played(&r, &rows, 0).0, oracle(&values, Op::Below, th, th, 0, 0));
        }
    }
}
