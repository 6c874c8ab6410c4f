use crate::time::{format_hour, format_ts};
use crate::{ZoneIdx, F64};
use serde::{Deserialize, Serialize};
use serde_json::json;

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
    /// The output line of `indicators.md`, with the zone written as its id.
    pub fn to_json(&self, zone_id: &str) -> serde_json::Value {
        json!({
            "type": "indicator",
            "zone": zone_id,
            "hour": format_hour(self.hour),
            "risk_score": self.risk_score.0,
            "risk_level": self.risk_level,
            "protection_rate": self.protection_rate.0,
            "required_agents": self.required_agents,
            "deployed_agents": self.deployed_agents,
            "trend": self.trend.name(),
            "crowd": self.crowd.0,
            "load": self.load.0,
            "incidents": self.incidents,
            "contributions": {
                "baseline": self.baseline.0,
                "recent": self.recent.0,
                "events": self.events.0,
                "weather": self.weather.0,
                "demonstration": self.demonstration,
            }
        })
    }
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
    /// The output line of `indicators.md`, with the zone written as its id.
    pub fn to_json(&self, zone_id: &str) -> serde_json::Value {
        json!({
            "type": "clash",
            "zone": zone_id,
            "a": self.a,
            "b": self.b,
            "start": format_ts(self.start),
            "end": format_ts(self.end),
            "reason": self.reason.name(),
        })
    }
}
