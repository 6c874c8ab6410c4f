use crate::F64;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Index of a zone in the configuration's zone list. Every process of a cluster loads the same
/// configuration, so an index means the same zone everywhere.
pub type ZoneIdx = u32;

/// The feeds of the reference model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Feed {
    Incident,
    Density,
    Event,
    Weather,
    Deployment,
    /// Vehicle counts (vehicles per hour at a counter): traffic fluidity under model v2.
    Traffic,
    /// Citizen hotline calls (311): part of the incident pressure `I` under model v2.
    Call,
}

impl Feed {
    /// All feeds, in a fixed order.
    pub const ALL: [Feed; 7] = [
        Feed::Incident,
        Feed::Density,
        Feed::Event,
        Feed::Weather,
        Feed::Deployment,
        Feed::Traffic,
        Feed::Call,
    ];

    /// The feed's name in records and configuration.
    pub fn name(self) -> &'static str {
        match self {
            Feed::Incident => "incident",
            Feed::Density => "density",
            Feed::Event => "event",
            Feed::Weather => "weather",
            Feed::Deployment => "deployment",
            Feed::Traffic => "traffic",
            Feed::Call => "call",
        }
    }

    /// The feed with this name.
    pub fn parse(name: &str) -> Option<Feed> {
        Feed::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl fmt::Display for Feed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `kind` of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventKind {
    Market,
    Festival,
    Sport,
    Concert,
    Demonstration,
    OfficialVisit,
    Filming,
    Roadworks,
    Other,
}

impl EventKind {
    /// All kinds, in a fixed order.
    pub const ALL: [EventKind; 9] = [
        EventKind::Market,
        EventKind::Festival,
        EventKind::Sport,
        EventKind::Concert,
        EventKind::Demonstration,
        EventKind::OfficialVisit,
        EventKind::Filming,
        EventKind::Roadworks,
        EventKind::Other,
    ];

    /// The kind's name in records.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Market => "market",
            EventKind::Festival => "festival",
            EventKind::Sport => "sport",
            EventKind::Concert => "concert",
            EventKind::Demonstration => "demonstration",
            EventKind::OfficialVisit => "official_visit",
            EventKind::Filming => "filming",
            EventKind::Roadworks => "roadworks",
            EventKind::Other => "other",
        }
    }

    /// The kind with this name.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// `kind` of a weather record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WeatherKind {
    Observed,
    Forecast,
}

/// The validated payload of a record that counts (not a cancellation). Times are microseconds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Body {
    Incident {
        zone: ZoneIdx,
        severity: u8,
    },
    Density {
        zone: ZoneIdx,
        sensor: Option<String>,
        people: F64,
    },
    Event {
        zone: ZoneIdx,
        start: i64,
        end: i64,
        attendance: F64,
        kind: EventKind,
    },
    Weather {
        kind: WeatherKind,
        issued_at: Option<i64>,
        temperature_c: Option<F64>,
        precip_mm: Option<F64>,
        wind_kmh: Option<F64>,
    },
    Deployment {
        zone: ZoneIdx,
        start: i64,
        end: i64,
        agents: u64,
    },
    Traffic {
        zone: ZoneIdx,
        /// The counter; records without one form one (unnamed) counter.
        sensor: Option<String>,
        /// Vehicles per hour at the counter.
        volume: F64,
    },
    Call {
        zone: ZoneIdx,
    },
}

impl Body {
    /// The zone of a located body (weather is city-wide).
    pub fn zone(&self) -> Option<ZoneIdx> {
        match self {
            Body::Incident { zone, .. }
            | Body::Density { zone, .. }
            | Body::Event { zone, .. }
            | Body::Deployment { zone, .. }
            | Body::Traffic { zone, .. }
            | Body::Call { zone } => Some(*zone),
            Body::Weather { .. } => None,
        }
    }
}

/// A validated record as it enters the dataflow.
///
/// `seq` is the arrival position (file and line in a replay, ingest-log offset live): the only
/// use of arrival order is to break ties the model says the last arrived wins.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Record {
    pub feed: Feed,
    /// Event time, microseconds since the epoch.
    pub ts: i64,
    pub seq: u64,
    /// Upsert key within the feed.
    pub id: Option<String>,
    /// `None` for `"status": "cancelled"`.
    pub body: Option<Body>,
}
