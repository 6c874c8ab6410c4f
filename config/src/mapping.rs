//! Mappings: how the columns of a foreign CSV file become records of a feed, by configuration
//! rather than code. A row is turned into a JSON record of `docs/model.md` and validated by the
//! same code as NDJSON records, so a mapped row obeys exactly the same rules.
//!
//! ```toml
//! [mappings.vancouver_crime]
//! feed = "incident"
//! time = { template = "{YEAR}-{MONTH}-{DAY} {HOUR}:{MINUTE}", format = "%Y-%m-%d %H:%M",
//!          timezone = "America/Vancouver" }
//! location = { zone = { column = "NEIGHBOURHOOD" } }
//! fields.severity = { column = "TYPE", table = { "Homicide" = 5, "Mischief" = 2 } }
//! fields.source = { value = "vpd" }
//! ```
//!
//! A field is exactly one of `column` (the cell), `template` (cells interpolated as
//! `{COLUMN}`) or `value` (a constant); then optionally `table` (cell text → value; a cell not in
//! the table is an error unless `default` is set), `scale` and `offset` (numbers:
//! `value × scale + offset`), and for times `format` (`rfc3339`, `unix`, `unix_ms` or a chrono
//! `strftime` pattern) with `timezone` (an IANA name, for formats without an offset).
//!
//! A mapping of the `event` feed may give events without an end a duration by kind:
//!
//! ```toml
//! [mappings.agenda.default_duration_h]
//! sport = 3        # a match whose end is missing, or not after its start, lasts 3 h
//! concert = 3
//! ```
//!
//! The kind is the record's (after `fields.kind`'s table). An event of a kind not listed keeps
//! its end, and is refused as any record whose `end` is missing or not after its `start`. A
//! replay's report counts the events that took a default duration.

use serde::Deserialize;
use std::collections::BTreeMap;
use vigie_model::Feed;

/// A CSV mapping for one feed.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The feed the rows become.
    pub feed: String,
    /// The field separator (one ASCII character).
    #[serde(default = "comma")]
    pub delimiter: String,
    /// The event time `ts`.
    pub time: FieldSpec,
    /// Where the record is: a zone id, a point, or a sensor whose position a lookup file gives.
    #[serde(default)]
    pub location: Option<LocationSpec>,
    /// The other fields of the record, by their name in `docs/model.md`.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSpec>,
    /// Feed `event`: hours an event lasts, by kind, when its `end` is missing or not after its
    /// `start`.
    #[serde(default)]
    pub default_duration_h: BTreeMap<String, f64>,
}

/// The longest default duration (a year), in hours.
pub const MAX_DEFAULT_DURATION_H: f64 = 24.0 * 366.0;

fn comma() -> String {
    ",".to_string()
}

/// How one field is computed from a row.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub column: Option<String>,
    pub template: Option<String>,
    pub value: Option<toml::Value>,
    pub table: Option<BTreeMap<String, toml::Value>>,
    pub default: Option<toml::Value>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    pub format: Option<String>,
    pub timezone: Option<String>,
}

/// Where a mapped record is.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationSpec {
    /// A zone id.
    pub zone: Option<FieldSpec>,
    /// Latitude and longitude (WGS84 degrees).
    pub lat: Option<FieldSpec>,
    pub lon: Option<FieldSpec>,
    /// A column holding `[lon, lat]` (GeoJSON order).
    pub lonlat_column: Option<String>,
    /// A position looked up in another CSV file by the value of a column (sensors).
    pub lookup: Option<Lookup>,
    /// `true`: the zone is a level of the MQTT topic the row came on (`zone_from_topic` of
    /// `[ingest.mqtt]` topics); rows of a file read through such a mapping have no zone.
    #[serde(default)]
    pub from_topic: bool,
}

/// A lookup table of positions: `file` (relative to the configuration) has columns `key`,
/// `lat` and `lon`; the mapped row's `column` holds the key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    pub file: String,
    pub key: String,
    pub lat: String,
    pub lon: String,
    pub column: String,
}

const TIME_FIELDS: [&str; 3] = ["start", "end", "issued_at"];

fn allowed_fields(feed: Feed) -> &'static [&'static str] {
    match feed {
        Feed::Incident => &["id", "status", "source", "severity", "category"],
        Feed::Density => &["id", "status", "source", "people", "sensor"],
        Feed::Event => &[
            "id",
            "status",
            "source",
            "start",
            "end",
            "attendance",
            "kind",
        ],
        Feed::Weather => &[
            "id",
            "status",
            "source",
            "kind",
            "temperature_c",
            "precip_mm",
            "wind_kmh",
            "issued_at",
        ],
        Feed::Deployment => &["id", "status", "source", "start", "end", "agents"],
        Feed::Traffic => &["id", "status", "source", "sensor", "volume"],
        Feed::Call => &["id", "status", "source", "category"],
    }
}

impl Mapping {
    /// The feed, once validated.
    pub fn feed(&self) -> Feed {
        Feed::parse(&self.feed).expect("validated")
    }

    /// The delimiter byte, once validated.
    pub fn delimiter_byte(&self) -> u8 {
        self.delimiter.as_bytes()[0]
    }

    /// Checks the mapping; errors name the key (relative to the mapping) and what is wrong.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let feed = Feed::parse(&self.feed).ok_or_else(|| {
            (
                "feed".to_string(),
                format!(
                    "unknown feed {:?} (expected one of {})",
                    self.feed,
                    Feed::ALL.map(Feed::name).join(", ")
                ),
            )
        })?;
        if self.delimiter.len() != 1 || !self.delimiter.is_ascii() {
            return Err((
                "delimiter".into(),
                format!("must be one ASCII character, got {:?}", self.delimiter),
            ));
        }
        self.time
            .validate(true)
            .map_err(|m| ("time".to_string(), m))?;
        for (name, spec) in &self.fields {
            let key = format!("fields.{name}");
            if !allowed_fields(feed).contains(&name.as_str()) {
                return Err((
                    key,
                    format!(
                        "not a field of feed {feed} (expected one of {})",
                        allowed_fields(feed).join(", ")
                    ),
                ));
            }
            spec.validate(TIME_FIELDS.contains(&name.as_str()))
                .map_err(|m| (key, m))?;
        }
        if !self.default_duration_h.is_empty() && feed != Feed::Event {
            return Err((
                "default_duration_h".into(),
                format!("only a mapping of feed event gives default durations, not {feed}"),
            ));
        }
        for (kind, hours) in &self.default_duration_h {
            let key = format!("default_duration_h.{kind}");
            if vigie_model::EventKind::parse(kind).is_none() {
                return Err((
                    key,
                    format!(
                        "not an event kind (expected one of {})",
                        vigie_model::EventKind::ALL.map(|k| k.name()).join(", ")
                    ),
                ));
            }
            if !(hours.is_finite() && *hours > 0.0 && *hours <= MAX_DEFAULT_DURATION_H) {
                return Err((
                    key,
                    format!("must be a number of hours above 0 and at most {MAX_DEFAULT_DURATION_H}, got {hours}"),
                ));
            }
        }
        match (&self.location, feed) {
            (None, Feed::Weather) => {}
            (None, _) => return Err(("location".into(), format!("feed {feed} needs a location"))),
            (Some(loc), _) => {
                let ways = [
                    loc.zone.is_some(),
                    loc.lat.is_some() || loc.lon.is_some(),
                    loc.lonlat_column.is_some(),
                    loc.lookup.is_some(),
                    loc.from_topic,
                ];
                if ways.iter().filter(|w| **w).count() != 1 {
                    return Err((
                        "location".into(),
                        "give exactly one of zone, lat and lon, lonlat_column, lookup, from_topic"
                            .into(),
                    ));
                }
                if loc.lat.is_some() != loc.lon.is_some() {
                    return Err(("location".into(), "lat and lon go together".into()));
                }
                for (k, s) in [("zone", &loc.zone), ("lat", &loc.lat), ("lon", &loc.lon)] {
                    if let Some(s) = s {
                        s.validate(false)
                            .map_err(|m| (format!("location.{k}"), m))?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl FieldSpec {
    fn validate(&self, is_time: bool) -> Result<(), String> {
        let sources = [
            self.column.is_some(),
            self.template.is_some(),
            self.value.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err("give exactly one of column, template, value".into());
        }
        if !is_time && (self.format.is_some() || self.timezone.is_some()) {
            return Err("format and timezone apply to times only".into());
        }
        if let Some(f) = &self.format {
            let named = ["rfc3339", "unix", "unix_ms"].contains(&f.as_str());
            let broken = chrono::format::StrftimeItems::new(f)
                .any(|item| matches!(item, chrono::format::Item::Error));
            if !named && broken {
                return Err(format!(
                    "format {f:?} is neither rfc3339, unix, unix_ms nor a valid strftime pattern"
                ));
            }
        }
        if let Some(tz) = &self.timezone {
            tz.parse::<chrono_tz::Tz>()
                .map_err(|_| format!("unknown time zone {tz:?}"))?;
        }
        for (k, v) in [("scale", self.scale), ("offset", self.offset)] {
            if v.is_some_and(|v| !v.is_finite()) {
                return Err(format!("{k} must be a finite number"));
            }
        }
        Ok(())
    }
}
