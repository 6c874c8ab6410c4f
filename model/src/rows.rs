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
            contributions: Contributions {
                baseline: self.baseline.0,
                recent: self.recent.0,
                events: self.events.0,
                weather: self.weather.0,
                demonstration: self.demonstration,
            },
        }
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
    contributions: Contributions,
}

/// The contributions that explain an indicator.
#[derive(Serialize)]
struct Contributions {
    baseline: f64,
    recent: f64,
    events: f64,
    weather: f64,
    demonstration: u8,
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
        };
        assert_eq!(
            serde_json::to_string(&row.to_json("13001")).unwrap(),
            r#"{"type":"indicator","zone":"13001","hour":"2025-11-28T14:00:00Z","risk_score":41.2,"risk_level":2,"protection_rate":0.75,"required_agents":4,"deployed_agents":3,"trend":"rising","crowd":5210.0,"load":0.52,"incidents":3,"contributions":{"baseline":0.8,"recent":3.0,"events":1200.0,"weather":1.0,"demonstration":0}}"#
        );
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
