//! Points: what the engine hands to its sinks (the embedded store, InfluxDB).
//!
//! A point is one measurement at one instant: a name, tags that say which thing it is about
//! (sorted by key), and float fields. It is the unit of the InfluxDB line protocol, and the
//! store splits it into one series per field. Integer indicators (levels, agent counts) are
//! carried as floats: every integer below 2^53 is exact.

use crate::rows::{ClashRow, IndicatorRow, Trend};

/// One measurement at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub measurement: String,
    /// Tag pairs, sorted by key, keys unique.
    pub tags: Vec<(String, String)>,
    /// Field pairs, in a stable order, names unique; at least one.
    pub fields: Vec<(String, f64)>,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: i64,
}

impl Point {
    /// A point with its tags sorted by key.
    pub fn new(
        measurement: impl Into<String>,
        mut tags: Vec<(String, String)>,
        fields: Vec<(String, f64)>,
        ts_ms: i64,
    ) -> Point {
        tags.sort();
        Point {
            measurement: measurement.into(),
            tags,
            fields,
            ts_ms,
        }
    }
}

/// The measurement of indicator rows.
pub const INDICATOR: &str = "indicator";
/// The measurement of clashes.
pub const CLASH: &str = "clash";
/// The measurement of feed health.
pub const FEED: &str = "feed";

/// The field names of an indicator point, in order; the values of
/// [`indicator_values`] come in the same order.
pub const INDICATOR_FIELDS: [&str; 14] = [
    "risk_score",
    "risk_level",
    "protection_rate",
    "required_agents",
    "deployed_agents",
    "trend",
    "crowd",
    "load",
    "incidents",
    "baseline",
    "recent",
    "events",
    "weather",
    "demonstration",
];

/// The trend as a number: −1 falling, 0 stable, 1 rising.
pub fn trend_value(t: Trend) -> f64 {
    match t {
        Trend::Falling => -1.0,
        Trend::Stable => 0.0,
        Trend::Rising => 1.0,
    }
}

/// The values of an indicator row, in the order of [`INDICATOR_FIELDS`].
pub fn indicator_values(r: &IndicatorRow) -> [f64; 14] {
    [
        r.risk_score.0,
        r.risk_level as f64,
        r.protection_rate.0,
        r.required_agents as f64,
        r.deployed_agents as f64,
        trend_value(r.trend),
        r.crowd.0,
        r.load.0,
        r.incidents as f64,
        r.baseline.0,
        r.recent.0,
        r.events.0,
        r.weather.0,
        r.demonstration as f64,
    ]
}

/// The point of an indicator row that changed from `old` (none: a new row), with only the
/// fields whose value changed (bit for bit); `None` when nothing did. The timestamp is the
/// start of the row's hour.
pub fn indicator_point(
    old: Option<&IndicatorRow>,
    new: &IndicatorRow,
    zone_id: &str,
) -> Option<Point> {
    let values = indicator_values(new);
    let before = old.map(indicator_values);
    let fields: Vec<(String, f64)> = INDICATOR_FIELDS
        .iter()
        .zip(values)
        .enumerate()
        .filter(|(i, (_, v))| before.is_none_or(|b| b[*i].to_bits() != v.to_bits()))
        .map(|(_, (name, v))| (name.to_string(), v))
        .collect();
    if fields.is_empty() {
        return None;
    }
    Some(Point::new(
        INDICATOR,
        vec![("zone".into(), zone_id.into())],
        fields,
        new.hour * 3_600_000,
    ))
}

/// The point of a clash that appeared (`active` 1) or ended (`active` 0), at the start of the
/// overlap, tagged with the zone, both event ids and the reason; `end_ms` is the overlap's end.
pub fn clash_point(c: &ClashRow, zone_id: &str, active: bool) -> Point {
    Point::new(
        CLASH,
        vec![
            ("zone".into(), zone_id.into()),
            ("a".into(), c.a.clone()),
            ("b".into(), c.b.clone()),
            ("reason".into(), c.reason.name().into()),
        ],
        vec![
            ("active".into(), if active { 1.0 } else { 0.0 }),
            ("end_ms".into(), (c.end / 1000) as f64),
        ],
        c.start / 1000,
    )
}
