//! Points: what the engine hands to its sinks (the embedded store, InfluxDB).
//!
//! A point is one measurement at one instant: a name, tags that say which thing it is about
//! (sorted by key), and float fields. It is the unit of the InfluxDB line protocol, and the
//! store splits it into one series per field. Integer indicators (levels, agent counts) are
//! carried as floats: every integer below 2^53 is exact.

use crate::rows::{ClashRow, IndicatorRow, Trend};
use crate::F64;

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

/// The field names of an indicator point under model v1, in order; the values of
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

/// The fields model v2 adds, after [`INDICATOR_FIELDS`]. An undefined value (traffic,
/// fluidity, its level and trend where there is no traffic or road capacity) is NaN; trends
/// are −1, 0, 1; `confidence` 0 low, 1 reduced, 2 high; `missing` a sum of flags: 1 density,
/// 2 incident, 4 weather.
pub const V2_FIELDS: [&str; 12] = [
    "calls",
    "criticality",
    "traffic",
    "fluidity",
    "fluidity_level",
    "load_trend",
    "fluidity_trend",
    "confidence",
    "missing",
    "exposure",
    "spill",
    "surge",
];

/// Every indicator field, v1's then v2's.
pub const ALL_FIELDS: [&str; 26] = {
    let mut all = [""; 26];
    let mut i = 0;
    while i < 14 {
        all[i] = INDICATOR_FIELDS[i];
        i += 1;
    }
    while i < 26 {
        all[i] = V2_FIELDS[i - 14];
        i += 1;
    }
    all
};

/// The trend as a number: −1 falling, 0 stable, 1 rising.
pub fn trend_value(t: Trend) -> f64 {
    match t {
        Trend::Falling => -1.0,
        Trend::Stable => 0.0,
        Trend::Rising => 1.0,
    }
}

/// The fields of a row: v1's, and v2's when the row has them.
pub fn row_fields(r: &IndicatorRow) -> &'static [&'static str] {
    if r.v2.is_some() {
        &ALL_FIELDS
    } else {
        &INDICATOR_FIELDS
    }
}

/// The values of an indicator row, in the order of [`ALL_FIELDS`]; v2's are NaN for a row of
/// model v1 ([`row_fields`] says how many count).
pub fn indicator_values(r: &IndicatorRow) -> [f64; 26] {
    let opt = |v: Option<f64>| v.unwrap_or(f64::NAN);
    let v2 = r.v2.as_ref();
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
        opt(v2.map(|v| v.calls as f64)),
        opt(v2.map(|v| v.criticality as f64)),
        opt(v2.and_then(|v| v.traffic).map(F64::get)),
        opt(v2.and_then(|v| v.fluidity).map(F64::get)),
        opt(v2.and_then(|v| v.fluidity_level).map(f64::from)),
        opt(v2.map(|v| trend_value(v.load_trend))),
        opt(v2.and_then(|v| v.fluidity_trend).map(trend_value)),
        opt(v2.map(|v| v.missing.confidence().value() as f64)),
        opt(v2.map(|v| v.missing.0 as f64)),
        opt(v2.map(|v| v.exposure.0)),
        opt(v2.map(|v| v.spill.0)),
        opt(v2.map(|v| v.surge.0)),
    ]
}

/// The point of an indicator row that changed from `old` (none: a new row), with only the
/// fields whose value changed (bit for bit; a new row leaves out its undefined fields, and a
/// field that becomes undefined is written as NaN); `None` when nothing did. The timestamp is the
/// start of the row's hour.
pub fn indicator_point(
    old: Option<&IndicatorRow>,
    new: &IndicatorRow,
    zone_id: &str,
) -> Option<Point> {
    let values = indicator_values(new);
    let before = old.map(indicator_values);
    let fields: Vec<(String, f64)> = row_fields(new)
        .iter()
        .zip(values)
        .enumerate()
        .filter(|(i, (_, v))| match &before {
            // An undefined value is news only when it was defined before.
            None => !v.is_nan(),
            Some(b) => b[*i].to_bits() != v.to_bits(),
        })
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
