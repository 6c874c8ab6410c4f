use crate::time::{format_hour, format_ts};
use crate::{ZoneIdx, F64};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Direction of the risk score against the mean of the three previous hours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Trend {
    Falling,
    Stable,
    Rising,
}

impl Trend {
    /// The name written in the output.
    pub fn name(self) -> &'static str {
        match self {
            Trend::Falling => "falling",
            Trend::Stable => "stable",
            Trend::Rising => "rising",
        }
    }
}

/// The inputs an hour lacks (model v2's `missing`), as a set of three flags.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Missing(pub u8);

impl Missing {
    /// No density record for an hour up to the clock where the typical crowd comes from
    /// observed values.
    pub const DENSITY: Missing = Missing(1);
    /// The incident feed is stale (or silent) at an hour up to the clock.
    pub const INCIDENT: Missing = Missing(2);
    /// No weather record, observed or forecast, describes the hour.
    pub const WEATHER: Missing = Missing(4);
    /// The inputs in the order the output lists them.
    const ORDER: [(Missing, &'static str); 3] = [
        (Missing::DENSITY, "density"),
        (Missing::INCIDENT, "incident"),
        (Missing::WEATHER, "weather"),
    ];

    /// True when `input` is in the set.
    pub fn has(self, input: Missing) -> bool {
        self.0 & input.0 != 0
    }

    /// Adds `input` when `lacking`.
    pub fn with(self, input: Missing, lacking: bool) -> Missing {
        if lacking {
            Missing(self.0 | input.0)
        } else {
            self
        }
    }

    /// The names of the missing inputs, sorted: `density`, `incident`, `weather`.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Missing::ORDER
            .into_iter()
            .filter(move |(m, _)| self.has(*m))
            .map(|(_, n)| n)
    }

    /// `high` with nothing missing, `reduced` with one input, `low` with two or three.
    pub fn confidence(self) -> Confidence {
        match self.0.count_ones() {
            0 => Confidence::High,
            1 => Confidence::Reduced,
            _ => Confidence::Low,
        }
    }
}

/// How much an hour's figures rest on live data (model v2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Confidence {
    Low,
    Reduced,
    High,
}

impl Confidence {
    /// The name written in the output.
    pub fn name(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Reduced => "reduced",
            Confidence::High => "high",
        }
    }

    /// As a number for time-series stores: 0 low, 1 reduced, 2 high.
    pub fn value(self) -> u8 {
        match self {
            Confidence::Low => 0,
            Confidence::Reduced => 1,
            Confidence::High => 2,
        }
    }
}

/// What model v2 adds to an indicator row.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RowV2 {
    /// `C`: counted hotline calls in the hour.
    pub calls: u64,
    /// 1–4: the risk level against the shortfall of agents.
    pub criticality: u8,
    /// Vehicles per hour: observed, else typical plus the events' share; `None` if neither.
    pub traffic: Option<F64>,
    /// `1 / (1 + α·(traffic / road_capacity)^β)`; `None` without traffic or road capacity.
    pub fluidity: Option<F64>,
    pub fluidity_level: Option<u8>,
    pub load_trend: Trend,
    /// `None` when fluidity is undefined at the hour or any of the three before.
    pub fluidity_trend: Option<Trend>,
    pub missing: Missing,
    /// The whole exposure term as it enters `raw`: events' own part + spill + surge.
    pub exposure: F64,
    /// Neighbours' events' exposure, shared into the zone.
    pub spill: F64,
    /// Crowd observed above its typical level.
    pub surge: F64,
}

/// The indicators of one zone and hour, with the contributions that explain them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IndicatorRow {
    pub zone: ZoneIdx,
    pub hour: i64,
    pub risk_score: F64,
    pub risk_level: u8,
    pub protection_rate: F64,
    pub required_agents: u64,
    pub deployed_agents: u64,
    pub trend: Trend,
    pub crowd: F64,
    pub load: F64,
    pub incidents: u64,
    pub baseline: F64,
    pub recent: F64,
    pub events: F64,
    pub weather: F64,
    pub demonstration: u8,
    /// The figures of model v2; `None` under model v1.
    pub v2: Option<RowV2>,
}

impl IndicatorRow {
    /// The output line of `docs/model.md`, with the zone written as its id; serializes
    /// straight to JSON, fields in the documented order.
    pub fn to_json<'a>(&'a self, zone_id: &'a str) -> IndicatorLine<'a> {
        self.to_json_at(zone_id, Cow::Owned(format_hour(self.hour)))
    }

    /// The same with the hour already written (RFC 3339, as `format_hour` writes it).
    pub fn to_json_at<'a>(
        &'a self,
        zone_id: &'a str,
        hour: impl Into<Cow<'a, str>>,
    ) -> IndicatorLine<'a> {
        IndicatorLine {
            kind: "indicator",
            zone: zone_id,
            hour: hour.into(),
            risk_score: self.risk_score.0,
            risk_level: self.risk_level,
            protection_rate: self.protection_rate.0,
            required_agents: self.required_agents,
            deployed_agents: self.deployed_agents,
            trend: self.trend.name(),
            crowd: self.crowd.0,
            load: self.load.0,
            incidents: self.incidents,
            v2: self.v2.as_ref().map(|v| LineV2 {
                calls: v.calls,
                criticality: v.criticality,
                traffic: v.traffic.map(F64::get),
                fluidity: v.fluidity.map(F64::get),
                fluidity_level: v.fluidity_level,
                load_trend: v.load_trend.name(),
                fluidity_trend: v.fluidity_trend.map(Trend::name),
                confidence: v.missing.confidence().name(),
                missing: v.missing.names().collect(),
            }),
            contributions: Contributions {
                baseline: self.baseline.0,
                recent: self.recent.0,
                events: self.events.0,
                weather: self.weather.0,
                demonstration: self.demonstration,
                v2: self.v2.as_ref().map(|v| ContributionsV2 {
                    exposure: v.exposure.0,
                    spill: v.spill.0,
                    surge: v.surge.0,
                }),
            },
        }
    }
}

/// Gives the output lines of many indicator rows, each hour's timestamp written once (the rows
/// of an epoch share a few hundred hours; formatting it again for every row was a tenth of
/// the live stream's text).
#[derive(Debug, Default)]
pub struct Lines {
    hours: std::collections::HashMap<i64, String>,
}

impl Lines {
    /// The output line of `row` (as [`IndicatorRow::to_json`] gives it), to serialize at once.
    pub fn line<'a>(&'a mut self, row: &'a IndicatorRow, zone_id: &'a str) -> IndicatorLine<'a> {
        let hour = self
            .hours
            .entry(row.hour)
            .or_insert_with(|| format_hour(row.hour));
        row.to_json_at(zone_id, hour.as_str())
    }
}

/// An indicator as written out.
#[derive(Serialize)]
pub struct IndicatorLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    zone: &'a str,
    hour: Cow<'a, str>,
    risk_score: f64,
    risk_level: u8,
    protection_rate: f64,
    required_agents: u64,
    deployed_agents: u64,
    trend: &'static str,
    crowd: f64,
    load: f64,
    incidents: u64,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    v2: Option<LineV2>,
    contributions: Contributions,
}

/// The keys model v2 adds to an indicator line.
#[derive(Serialize)]
struct LineV2 {
    calls: u64,
    criticality: u8,
    traffic: Option<f64>,
    fluidity: Option<f64>,
    fluidity_level: Option<u8>,
    load_trend: &'static str,
    fluidity_trend: Option<&'static str>,
    confidence: &'static str,
    missing: Vec<&'static str>,
}

/// The contributions that explain an indicator.
#[derive(Serialize)]
struct Contributions {
    baseline: f64,
    recent: f64,
    events: f64,
    weather: f64,
    demonstration: u8,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    v2: Option<ContributionsV2>,
}

/// The contributions model v2 adds: the exposure term and two of its parts.
#[derive(Serialize)]
struct ContributionsV2 {
    exposure: f64,
    spill: f64,
    surge: f64,
}

/// Why two events clash, in the order the model tests them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ClashReason {
    Demonstration,
    Roadworks,
    Capacity,
}

impl ClashReason {
    /// The name written in the output.
    pub fn name(self) -> &'static str {
        match self {
            ClashReason::Demonstration => "demonstration",
            ClashReason::Roadworks => "roadworks",
            ClashReason::Capacity => "capacity",
        }
    }
}

/// Two counted events of one zone that overlap and clash; `a < b` by id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClashRow {
    pub zone: ZoneIdx,
    pub a: String,
    pub b: String,
    /// Start of the overlap, microseconds.
    pub start: i64,
    /// End of the overlap, microseconds.
    pub end: i64,
    pub reason: ClashReason,
}

impl ClashRow {
    /// The output line of `docs/model.md`, with the zone written as its id.
    pub fn to_json<'a>(&'a self, zone_id: &'a str) -> ClashLine<'a> {
        ClashLine {
            kind: "clash",
            zone: zone_id,
            a: &self.a,
            b: &self.b,
            start: format_ts(self.start),
            end: format_ts(self.end),
            reason: self.reason.name(),
        }
    }
}

/// A clash as written out.
#[derive(Serialize)]
pub struct ClashLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    zone: &'a str,
    a: &'a str,
    b: &'a str,
    start: String,
    end: String,
    reason: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_indicators_md_writes_them() {
        let row = IndicatorRow {
            zone: 0,
            hour: 1_764_338_400 / 3600,
            risk_score: F64(41.2),
            risk_level: 2,
            protection_rate: F64(0.75),
            required_agents: 4,
            deployed_agents: 3,
            trend: Trend::Rising,
            crowd: F64(5210.0),
            load: F64(0.52),
            incidents: 3,
            baseline: F64(0.8),
            recent: F64(3.0),
            events: F64(1200.0),
            weather: F64(1.0),
            demonstration: 0,
            v2: None,
        };
        assert_eq!(
            serde_json::to_string(&row.to_json("13001")).unwrap(),
            r#"{"type":"indicator","zone":"13001","hour":"2025-11-28T14:00:00Z","risk_score":41.2,"risk_level":2,"protection_rate":0.75,"required_agents":4,"deployed_agents":3,"trend":"rising","crowd":5210.0,"load":0.52,"incidents":3,"contributions":{"baseline":0.8,"recent":3.0,"events":1200.0,"weather":1.0,"demonstration":0}}"#
        );
        // Model v2's keys after `incidents` and in the contributions; an absent figure as
        // null, the missing inputs as a list.
        let v2 = IndicatorRow {
            v2: Some(RowV2 {
                calls: 2,
                criticality: 3,
                traffic: None,
                fluidity: Some(F64(0.8125)),
                fluidity_level: None,
                load_trend: Trend::Falling,
                fluidity_trend: Some(Trend::Stable),
                missing: Missing::DENSITY.with(Missing::WEATHER, true),
                exposure: F64(1.5),
                spill: F64(0.25),
                surge: F64(0.0),
            }),
            ..row.clone()
        };
        assert_eq!(
            serde_json::to_string(&v2.to_json("13001")).unwrap(),
            r#"{"type":"indicator","zone":"13001","hour":"2025-11-28T14:00:00Z","risk_score":41.2,"risk_level":2,"protection_rate":0.75,"required_agents":4,"deployed_agents":3,"trend":"rising","crowd":5210.0,"load":0.52,"incidents":3,"calls":2,"criticality":3,"traffic":null,"fluidity":0.8125,"fluidity_level":null,"load_trend":"falling","fluidity_trend":"stable","confidence":"low","missing":["density","weather"],"contributions":{"baseline":0.8,"recent":3.0,"events":1200.0,"weather":1.0,"demonstration":0,"exposure":1.5,"spill":0.25,"surge":0.0}}"#
        );
        // Also as a JSON value (the API's answers): the same keys and values.
        let value = serde_json::to_value(v2.to_json("13001")).unwrap();
        assert_eq!(value["missing"], serde_json::json!(["density", "weather"]));
        assert_eq!(value["contributions"]["spill"], serde_json::json!(0.25));
        let clash = ClashRow {
            zone: 7,
            a: "ev-12".into(),
            b: "ev-40".into(),
            start: 1_764_338_400_000_000,
            end: 1_764_345_600_500_000,
            reason: ClashReason::Capacity,
        };
        assert_eq!(
            serde_json::to_string(&clash.to_json("13008")).unwrap(),
            r#"{"type":"clash","zone":"13008","a":"ev-12","b":"ev-40","start":"2025-11-28T14:00:00Z","end":"2025-11-28T16:00:00.500Z","reason":"capacity"}"#
        );
    }
}
