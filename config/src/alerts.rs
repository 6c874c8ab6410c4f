//! The `[alerts]` section: alert rules, zone groups and where notifications go.
//!
//! ```toml
//! [alerts.groups]
//! stadium = ["13008", "13009", "13010"]        # zones named together in rules
//!
//! [[alerts.rules]]
//! name = "risk-high-stadium"                   # unique; the rule's key in the API
//! indicator = "risk_score"                     # risk_score, risk_level, protection_rate,
//!                                              # load, crowd, clash, feed_silence, and of
//!                                              # model v2: criticality, fluidity,
//!                                              # fluidity_level, confidence, calls,
//!                                              # exposure, traffic
//! group = "stadium"                            # or zones = ["13001"]; neither: every zone
//! op = "above"                                 # above: value >= threshold breaches; below: <=
//! threshold = 75.0
//! reset = 70.0                                 # clears only below 70 (hysteresis); default: threshold
//! for_s = 600                                  # the breach must last 10 min before it fires
//! resolve_for_s = 300                          # and the clear 5 min before it resolves (damping)
//! lookahead_h = 24                             # forecast: the worst hour from now to now + 24 h
//! severity = "critical"                        # info, warning, critical
//!
//! [[alerts.rules]]
//! name = "stadium-blind"
//! indicator = "confidence"                     # 0 low, 1 reduced, 2 high
//! group = "stadium"
//! op = "below"                                 # breaches at reduced or low
//! threshold = "reduced"                        # a level's name stands for its number
//!
//! [[alerts.rules]]
//! name = "density-feed-silent"
//! indicator = "feed_silence"                   # deadman: seconds since the feed last delivered
//! feed = "density"                             # or source = "sensors"
//! threshold = 300                              # silent 5 min (never seen since start counts)
//!
//! [[alerts.notify]]
//! kind = "webhook"                             # log, webhook, mqtt
//! url = "https://ops.example/hooks/vigie"
//! ```
//!
//! The indicators of model v2 (`criticality`, `fluidity`, `fluidity_level`, `confidence`,
//! `calls`, `exposure`, `traffic`) are read from the row's v2 figures. Where a figure is
//! undefined (no fluidity or traffic without a count or a typical one, or no road capacity) the
//! hour is skipped: an undefined value never breaches, and an alert whose every hour became
//! undefined clears. `confidence` is a number, 0 low, 1 reduced, 2 high
//! (`vigie_model::Confidence::value`), and a threshold or a reset may name the level instead:
//! `op = "below"` with `threshold = "reduced"` breaches at reduced and low confidence. A
//! configuration with `[model] version = 1` has none of these figures and refuses rules on them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[alerts]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// `[[alerts.rules]]`: the rules of the configuration (the API adds and changes others).
    pub rules: Vec<AlertRule>,
    /// `[alerts.groups]`: named lists of zone ids.
    pub groups: BTreeMap<String, Vec<String>>,
    /// `[[alerts.notify]]`: where notifications go besides the log.
    pub notify: Vec<NotifierConfig>,
    /// Milliseconds between two evaluations when nothing changes (pending alerts reaching
    /// their `for_s`, deadman rules).
    pub tick_ms: u64,
    /// Resolved alerts kept in the list (the oldest go first; the history keeps all).
    pub keep_resolved: usize,
    /// Days of transitions kept in the history journal.
    pub history_days: u32,
    /// The configuration's model is v1 (set from `[model]`, not written in `[alerts]`): rules
    /// on the figures of model v2 are refused.
    #[serde(skip)]
    pub model_v1: bool,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            rules: Vec::new(),
            groups: BTreeMap::new(),
            notify: Vec::new(),
            tick_ms: 1000,
            keep_resolved: 1000,
            history_days: 30,
            model_v1: false,
        }
    }
}

/// What a rule watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Indicator {
    RiskScore,
    RiskLevel,
    ProtectionRate,
    /// Crowd load: crowd / capacity.
    Load,
    Crowd,
    /// Active clashes in the zone overlapping the window (now, or up to the look-ahead).
    Clash,
    /// Deadman: seconds since a feed or a source last delivered a record.
    FeedSilence,
    /// v2: 1–4, the risk level against the shortfall of agents.
    Criticality,
    /// v2: traffic fluidity, 0–1 (1: free flow); undefined without traffic or road capacity.
    Fluidity,
    /// v2: 1–4 (4: the most congested); undefined where fluidity is.
    FluidityLevel,
    /// v2: 0 low, 1 reduced, 2 high.
    Confidence,
    /// v2: hotline calls in the hour.
    Calls,
    /// v2: the exposure term (events, their spill from neighbours, crowd surge).
    Exposure,
    /// v2: vehicles per hour, counted or typical; undefined with neither.
    Traffic,
}

impl Indicator {
    pub fn name(self) -> &'static str {
        match self {
            Indicator::RiskScore => "risk_score",
            Indicator::RiskLevel => "risk_level",
            Indicator::ProtectionRate => "protection_rate",
            Indicator::Load => "load",
            Indicator::Crowd => "crowd",
            Indicator::Clash => "clash",
            Indicator::FeedSilence => "feed_silence",
            Indicator::Criticality => "criticality",
            Indicator::Fluidity => "fluidity",
            Indicator::FluidityLevel => "fluidity_level",
            Indicator::Confidence => "confidence",
            Indicator::Calls => "calls",
            Indicator::Exposure => "exposure",
            Indicator::Traffic => "traffic",
        }
    }

    /// A figure of model v2 only.
    pub fn v2(self) -> bool {
        matches!(
            self,
            Indicator::Criticality
                | Indicator::Fluidity
                | Indicator::FluidityLevel
                | Indicator::Confidence
                | Indicator::Calls
                | Indicator::Exposure
                | Indicator::Traffic
        )
    }
}

/// The confidence levels by name, with their number (`vigie_model::Confidence::value`).
pub const CONFIDENCE_LEVELS: [(&str, f64); 3] = [("low", 0.0), ("reduced", 1.0), ("high", 2.0)];

/// A threshold or a reset: a number, or the name of a confidence level.
fn level<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Number(f64),
        Name(String),
    }
    match Given::deserialize(d)? {
        Given::Number(v) => Ok(v),
        Given::Name(n) => CONFIDENCE_LEVELS
            .iter()
            .find(|(name, _)| *name == n)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "`{n}` is neither a number nor a confidence level (low, reduced, high)"
                ))
            }),
    }
}

fn maybe_level<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    level(d).map(Some)
}

/// How bad an alert is.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Which side of the threshold is a breach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// `value >= threshold` breaches; `value < reset` clears.
    #[default]
    Above,
    /// `value <= threshold` breaches; `value > reset` clears.
    Below,
}

/// One alert rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub name: String,
    pub indicator: Indicator,
    /// Zones it watches (ids); with `group`, the union; neither: every zone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default)]
    pub op: Op,
    /// For `feed_silence`: seconds of silence. A confidence level's name stands for its number
    /// ([`CONFIDENCE_LEVELS`]).
    #[serde(deserialize_with = "level")]
    pub threshold: f64,
    /// The clearing threshold (hysteresis); default: `threshold`.
    #[serde(
        default,
        deserialize_with = "maybe_level",
        skip_serializing_if = "Option::is_none"
    )]
    pub reset: Option<f64>,
    /// Seconds the breach must last before the alert fires.
    #[serde(default)]
    pub for_s: u64,
    /// Seconds the value must stay clear before a firing alert resolves.
    #[serde(default)]
    pub resolve_for_s: u64,
    /// Flap damping: a zone (or feed) whose alert fired `flap_max` times within
    /// `flap_window_s` is flapping, and its alert resolves only once the value has been clear
    /// for `flap_window_s` (instead of `resolve_for_s`). 0: off.
    #[serde(default)]
    pub flap_max: u32,
    #[serde(default = "flap_window_s")]
    pub flap_window_s: u64,
    /// Hours ahead of the clock's hour the rule looks at (0: the current hour only).
    #[serde(default)]
    pub lookahead_h: u32,
    #[serde(default)]
    pub severity: Severity,
    /// `feed_silence`: the feed watched…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed: Option<String>,
    /// …or the source (a `[[sources]]` name, or `embedded-mqtt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl AlertRule {
    /// The clearing threshold.
    pub fn reset(&self) -> f64 {
        self.reset.unwrap_or(self.threshold)
    }

    /// Checks the rule against the zone ids, the groups and the model (`model_v1`: the figures
    /// of model v2 do not exist); the error names the field.
    pub fn validate(
        &self,
        zone_ids: &[String],
        groups: &BTreeMap<String, Vec<String>>,
        model_v1: bool,
    ) -> Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((k.to_string(), m));
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 100
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            return err(
                "name",
                "must be 1 to 100 characters among letters, digits, - _ .".into(),
            );
        }
        if !self.threshold.is_finite() {
            return err("threshold", "must be a finite number".into());
        }
        let reset = self.reset();
        if !reset.is_finite() {
            return err("reset", "must be a finite number".into());
        }
        match self.op {
            Op::Above if reset > self.threshold => {
                return err(
                    "reset",
                    "must not be above the threshold (op = above)".into(),
                )
            }
            Op::Below if reset < self.threshold => {
                return err(
                    "reset",
                    "must not be below the threshold (op = below)".into(),
                )
            }
            _ => {}
        }
        if model_v1 && self.indicator.v2() {
            return err(
                "indicator",
                format!(
                    "`{}` is a figure of model v2, and the configuration has [model] version = 1",
                    self.indicator.name()
                ),
            );
        }
        if self.lookahead_h > 24 * 366 {
            return err("lookahead_h", "must be at most 8784 (a year)".into());
        }
        if self.indicator == Indicator::FeedSilence {
            if !self.zones.is_empty() || self.group.is_some() {
                return err(
                    "zones",
                    "a feed_silence rule watches a feed or a source, not zones".into(),
                );
            }
            match (&self.feed, &self.source) {
                (Some(_), Some(_)) | (None, None) => {
                    return err("feed", "give feed or source (one of them)".into())
                }
                (Some(f), None) if vigie_model::Feed::parse(f).is_none() => {
                    return err("feed", format!("unknown feed `{f}`"))
                }
                _ => {}
            }
            if self.op != Op::Above || self.threshold <= 0.0 {
                return err(
                    "threshold",
                    "a feed_silence rule takes op = above and a positive number of seconds".into(),
                );
            }
        } else {
            if self.feed.is_some() || self.source.is_some() {
                return err(
                    "feed",
                    "only feed_silence rules name a feed or a source".into(),
                );
            }
            for (i, z) in self.zones.iter().enumerate() {
                if !zone_ids.contains(z) {
                    return err(&format!("zones[{i}]"), format!("unknown zone `{z}`"));
                }
            }
            if let Some(g) = &self.group {
                if !groups.contains_key(g) {
                    return err("group", format!("unknown group `{g}`"));
                }
            }
        }
        Ok(())
    }
}

/// Where notifications go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifierKind {
    /// One JSON line on the standard error (always on; this entry only sets `min_severity`).
    Log,
    /// HTTP POST of the JSON notification, retried until a 2xx.
    Webhook,
    /// MQTT publish (QoS 1) to `topic`/<rule>/<zone or feed>.
    Mqtt,
}

/// One `[[alerts.notify]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    pub kind: NotifierKind,
    /// Webhook: the URL (http or https). MQTT: the broker (mqtt://host:port).
    #[serde(default)]
    pub url: Option<String>,
    /// MQTT: the topic prefix (default `vigie/alerts`).
    #[serde(default)]
    pub topic: Option<String>,
    /// Notifications below this severity are not sent here.
    #[serde(default = "min_severity")]
    pub min_severity: Severity,
    /// Notifications waiting at most; past it the oldest is dropped (counted, logged).
    #[serde(default = "queue_max")]
    pub queue_max: usize,
    /// Delay after a failed delivery, doubling up to `retry_max_ms`.
    #[serde(default = "retry_min_ms")]
    pub retry_min_ms: u64,
    #[serde(default = "retry_max_ms")]
    pub retry_max_ms: u64,
    /// A delivery slower than this has failed.
    #[serde(default = "timeout_ms")]
    pub timeout_ms: u64,
}

fn flap_window_s() -> u64 {
    3600
}
fn min_severity() -> Severity {
    Severity::Info
}
fn queue_max() -> usize {
    10_000
}
fn retry_min_ms() -> u64 {
    200
}
fn retry_max_ms() -> u64 {
    30_000
}
fn timeout_ms() -> u64 {
    5_000
}

impl AlertsConfig {
    /// Checks the section; the error names the key (under `alerts.`).
    pub fn validate(&self, zone_ids: &[String]) -> Result<(), (String, String)> {
        for (g, zones) in &self.groups {
            for z in zones {
                if !zone_ids.contains(z) {
                    return Err((format!("groups.{g}"), format!("unknown zone `{z}`")));
                }
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            r.validate(zone_ids, &self.groups, self.model_v1)
                .map_err(|(k, m)| (format!("rules[{i}].{k}"), m))?;
            if !names.insert(r.name.as_str()) {
                return Err((
                    format!("rules[{i}].name"),
                    format!("`{}` is given twice", r.name),
                ));
            }
        }
        for (i, n) in self.notify.iter().enumerate() {
            let key = |k: &str| format!("notify[{i}].{k}");
            match n.kind {
                NotifierKind::Log => {}
                NotifierKind::Webhook => match &n.url {
                    Some(u) if u.starts_with("http://") || u.starts_with("https://") => {}
                    _ => return Err((key("url"), "a webhook needs an http(s):// url".into())),
                },
                NotifierKind::Mqtt => match &n.url {
                    Some(u)
                        if u.strip_prefix("mqtt://")
                            .and_then(|a| a.trim_end_matches('/').rsplit_once(':'))
                            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) => {}
                    _ => {
                        return Err((
                            key("url"),
                            "an mqtt notifier needs an mqtt://host:port url".into(),
                        ))
                    }
                },
            }
            if n.queue_max == 0 {
                return Err((key("queue_max"), "must be at least 1".into()));
            }
            if n.retry_min_ms == 0 || n.retry_max_ms < n.retry_min_ms {
                return Err((
                    key("retry_min_ms"),
                    "must be at least 1 and at most retry_max_ms".into(),
                ));
            }
        }
        if self.tick_ms == 0 {
            return Err(("tick_ms".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_errors_name_the_field() {
        let zones = vec!["13001".to_string(), "13008".to_string()];
        let c: AlertsConfig = toml::from_str(
            "[groups]\nstadium = [\"13008\"]\n\
             [[rules]]\nname = \"r1\"\nindicator = \"risk_score\"\ngroup = \"stadium\"\nthreshold = 75.0\nreset = 70.0\nfor_s = 60\nlookahead_h = 24\nseverity = \"critical\"\n\
             [[rules]]\nname = \"dead\"\nindicator = \"feed_silence\"\nfeed = \"density\"\nthreshold = 2\n\
             [[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/h\"\n",
        )
        .unwrap();
        c.validate(&zones).unwrap();
        assert_eq!(c.rules[0].reset(), 70.0);
        assert_eq!(c.rules[1].reset(), 2.0);
        let mut bad = c.clone();
        bad.rules[0].reset = Some(80.0);
        assert_eq!(bad.validate(&zones).unwrap_err().0, "rules[0].reset");
        let mut bad = c.clone();
        bad.rules[0].zones = vec!["99999".into()];
        assert_eq!(bad.validate(&zones).unwrap_err().0, "rules[0].zones[0]");
        let mut bad = c.clone();
        bad.rules[1].feed = Some("gossip".into());
        assert_eq!(bad.validate(&zones).unwrap_err().0, "rules[1].feed");
        assert!(toml::from_str::<AlertsConfig>(
            "[[rules]]\nname = \"x\"\nindicator = \"traffic_fluidity\"\nthreshold = 1\n"
        )
        .is_err());
    }

    #[test]
    fn v2_rules_take_confidence_levels_by_name_and_need_model_v2() {
        let zones = vec!["13001".to_string()];
        let c: AlertsConfig = toml::from_str(
            "[[rules]]\nname = \"blind\"\nindicator = \"confidence\"\nop = \"below\"\nthreshold = \"reduced\"\n\
             [[rules]]\nname = \"jam\"\nindicator = \"fluidity_level\"\nthreshold = 4\n\
             [[rules]]\nname = \"slow\"\nindicator = \"fluidity\"\nop = \"below\"\nthreshold = 0.5\nreset = 0.6\n\
             [[rules]]\nname = \"crit\"\nindicator = \"criticality\"\nthreshold = 3\nlookahead_h = 720\n",
        )
        .unwrap();
        c.validate(&zones).unwrap();
        assert_eq!(c.rules[0].threshold, 1.0);
        let names: Vec<&str> = c.rules.iter().map(|r| r.indicator.name()).collect();
        assert_eq!(
            names,
            ["confidence", "fluidity_level", "fluidity", "criticality"]
        );
        assert!(c.rules.iter().all(|r| r.indicator.v2()));
        // Under model v1 the same rules are refused, the first one named.
        let v1 = AlertsConfig {
            model_v1: true,
            ..c.clone()
        };
        let (key, message) = v1.validate(&zones).unwrap_err();
        assert_eq!(key, "rules[0].indicator");
        assert!(message.contains("[model] version = 1"), "{message}");
        // A rule written back to TOML or JSON carries numbers.
        let json = serde_json::to_value(&c.rules[0]).unwrap();
        assert_eq!(json["threshold"], 1.0);
    }
}
