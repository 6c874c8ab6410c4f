//! Validation at the door: a [`RawRecord`] becomes a typed [`Record`], or an error that names
//! the field and says what is wrong with it. Nothing past this point can see a bad value.

use crate::raw::{number_text, quote, trim, RawRecord, Scalar};
use std::borrow::Cow;
use std::fmt;
use vigie_config::{Config, Ranges, ZoneSet};
use vigie_model::time::{parse_ts_str, seconds_to_us};
use vigie_model::{Body, EventKind, Feed, Record, WeatherKind, ZoneIdx, F64};

/// What made a record invalid.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectKind {
    /// Not JSON, or not a CSV row the mapping can read.
    Malformed,
    /// A required field is absent.
    MissingField,
    /// A field has a value of the wrong type or out of range.
    InvalidField,
    /// `zone` names no configured zone.
    UnknownZone,
    /// `lat`/`lon` fall in no zone polygon.
    OutsideZones,
    /// An interval whose end is before its start.
    EndBeforeStart,
    /// A density below the feed's `privacy` minimum count k: never stored.
    SuppressedBelowK,
}

impl RejectKind {
    /// A short name for reports and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            RejectKind::Malformed => "malformed",
            RejectKind::MissingField => "missing_field",
            RejectKind::InvalidField => "invalid_field",
            RejectKind::UnknownZone => "unknown_zone",
            RejectKind::OutsideZones => "outside_zones",
            RejectKind::EndBeforeStart => "end_before_start",
            RejectKind::SuppressedBelowK => "suppressed_below_k",
        }
    }
}

/// A rejected record: the kind, the field at fault if any, and a readable reason.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordError {
    pub kind: RejectKind,
    pub field: Option<&'static str>,
    pub reason: String,
    /// For a valid record with an id that lies in no zone: the cancellation of its id at its
    /// `ts` and `seq`. The model chooses an id's winner before locating it, so a winner in no
    /// zone makes the id absent; readers feed this record in the refused one's place.
    pub tombstone: Option<Box<Record>>,
}

/// The longest `id` or `sensor` a record may have, in bytes: a longer one is refused
/// (`invalid_field`), never stored, indexed nor quoted.
pub const MAX_ID_BYTES: usize = 128;

/// Characters of a reason kept: values are quoted short ([`crate::raw::quote`]); this bounds
/// whatever else a reason holds (a parser's message, say).
pub const MAX_REASON_CHARS: usize = 300;

/// `reason` cut at [`MAX_REASON_CHARS`] characters.
fn bounded(mut reason: String) -> String {
    if let Some((i, _)) = reason.char_indices().nth(MAX_REASON_CHARS) {
        reason.truncate(i);
        reason.push('…');
    }
    reason
}

impl RecordError {
    pub(crate) fn malformed(reason: String) -> Self {
        RecordError {
            kind: RejectKind::Malformed,
            field: None,
            reason: bounded(reason),
            tombstone: None,
        }
    }
    pub(crate) fn field(kind: RejectKind, field: &'static str, reason: String) -> Self {
        RecordError {
            kind,
            field: Some(field),
            reason: bounded(reason),
            tombstone: None,
        }
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "field `{field}`: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

type R<T> = Result<T, RecordError>;

fn missing(field: &'static str) -> RecordError {
    RecordError::field(
        RejectKind::MissingField,
        field,
        "required field is missing".into(),
    )
}

fn invalid(field: &'static str, reason: String) -> RecordError {
    RecordError::field(RejectKind::InvalidField, field, reason)
}

fn present<'s, 'a>(v: &'s Option<Scalar<'a>>) -> Option<&'s Scalar<'a>> {
    match v {
        None | Some(Scalar::Null) => None,
        Some(Scalar::Str(s)) if trim(s).is_empty() => None,
        Some(s) => Some(s),
    }
}

fn number(field: &'static str, v: &Scalar) -> R<f64> {
    let n = match v {
        Scalar::Num(n) => *n,
        Scalar::Str(s) => trim(s)
            .parse::<f64>()
            .map_err(|_| invalid(field, format!("{} is not a number", v.describe())))?,
        other => {
            return Err(invalid(
                field,
                format!("{} is not a number", other.describe()),
            ))
        }
    };
    if !n.is_finite() {
        return Err(invalid(
            field,
            format!("{} is not a finite number", v.describe()),
        ));
    }
    Ok(n)
}

fn opt_number(field: &'static str, v: &Option<Scalar>) -> R<Option<f64>> {
    present(v).map(|s| number(field, s)).transpose()
}

/// A required count (people, attendance, agents, vehicles): from 0 to `max` (`[ranges]`).
fn count(field: &'static str, v: &Option<Scalar>, max: f64) -> R<f64> {
    let n = number(field, present(v).ok_or_else(|| missing(field))?)?;
    if n < 0.0 {
        return Err(invalid(field, format!("{} is negative", number_text(n))));
    }
    if n > max {
        return Err(invalid(
            field,
            format!(
                "{} is above {max}, the most it can physically be ([ranges])",
                number_text(n)
            ),
        ));
    }
    Ok(n)
}

/// An optional measurement within `[lo, hi]` (`[ranges]`).
fn measure(field: &'static str, v: &Option<Scalar>, [lo, hi]: [f64; 2]) -> R<Option<F64>> {
    match opt_number(field, v)? {
        Some(x) if !(lo..=hi).contains(&x) => Err(invalid(
            field,
            format!(
                "{} is outside [{lo}, {hi}], its physical range ([ranges])",
                number_text(x)
            ),
        )),
        x => Ok(x.map(F64)),
    }
}

/// An identifier (`id`, `sensor`): text of at most [`MAX_ID_BYTES`] bytes.
fn identifier(field: &'static str, v: &Scalar) -> R<String> {
    let s = text(field, v)?;
    if s.len() > MAX_ID_BYTES {
        return Err(invalid(
            field,
            format!(
                "{} bytes, longer than the limit of {MAX_ID_BYTES} bytes",
                s.len()
            ),
        ));
    }
    Ok(s.into_owned())
}

fn text<'a>(field: &'static str, v: &Scalar<'a>) -> R<Cow<'a, str>> {
    match v {
        Scalar::Str(s) => Ok(s.clone()),
        Scalar::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => {
            Ok(Cow::Owned(format!("{}", *n as i64)))
        }
        other => Err(invalid(
            field,
            format!("{} is not a string", other.describe()),
        )),
    }
}

/// A time as a record gives it (RFC 3339, or Unix seconds), in microseconds.
pub(crate) fn time_us(v: &Scalar) -> Option<i64> {
    match v {
        Scalar::Num(n) => seconds_to_us(*n),
        Scalar::Str(s) => parse_ts_str(s),
        _ => None,
    }
}

fn time(field: &'static str, v: &Scalar) -> R<i64> {
    time_us(v).ok_or_else(|| {
        invalid(
            field,
            format!("{} is neither RFC 3339 nor Unix seconds", v.describe()),
        )
    })
}

fn required_time(field: &'static str, v: &Option<Scalar>) -> R<i64> {
    time(field, present(v).ok_or_else(|| missing(field))?)
}

/// Locates a record: by `zone`, else by `lat`/`lon`.
fn locate(raw: &RawRecord, zones: &ZoneSet) -> R<ZoneIdx> {
    if let Some(z) = present(&raw.zone) {
        let id = text("zone", z)?;
        return zones.by_id(trim(&id)).ok_or_else(|| {
            RecordError::field(
                RejectKind::UnknownZone,
                "zone",
                format!("unknown zone {}", quote(&id)),
            )
        });
    }
    match (present(&raw.lat), present(&raw.lon)) {
        (Some(lat), Some(lon)) => {
            let lat = number("lat", lat)?;
            let lon = number("lon", lon)?;
            if !(-90.0..=90.0).contains(&lat) {
                return Err(invalid("lat", format!("{lat} is out of [-90, 90]")));
            }
            if !(-180.0..=180.0).contains(&lon) {
                return Err(invalid("lon", format!("{lon} is out of [-180, 180]")));
            }
            zones.locate(lat, lon).ok_or_else(|| {
                RecordError::field(
                    RejectKind::OutsideZones,
                    "lat",
                    format!("point ({lat}, {lon}) is outside every zone"),
                )
            })
        }
        (Some(_), None) => Err(missing("lon")),
        (None, Some(_)) => Err(missing("lat")),
        (None, None) => Err(missing("zone")),
    }
}

fn interval(raw: &RawRecord) -> R<(i64, i64)> {
    let start = required_time("start", &raw.start)?;
    let end = required_time("end", &raw.end)?;
    if end <= start {
        return Err(RecordError::field(
            RejectKind::EndBeforeStart,
            "end",
            "end is not after start".to_string(),
        ));
    }
    Ok((start, end))
}

/// What a record is checked against: the zones that locate it and the physical ranges of its
/// values (`[ranges]`).
#[derive(Clone, Copy, Debug)]
pub struct Checks<'a> {
    pub zones: &'a ZoneSet,
    pub ranges: &'a Ranges,
    /// Live ingest: the `ts` accepted, first and last (µs, both included); `None`: any date
    /// (file replay).
    pub window: Option<(i64, i64)>,
}

impl<'a> From<&'a Config> for Checks<'a> {
    fn from(c: &'a Config) -> Self {
        Checks {
            zones: &c.zones,
            ranges: &c.ranges,
            window: None,
        }
    }
}

impl Checks<'_> {
    /// The checks of live ingest at `now_us`: `ts` within `[ingest] max_past_days` before
    /// and `max_future_days` after it.
    pub fn live(mut self, config: &Config, now_us: i64) -> Self {
        self.window = Some(config.ingest.live_window(now_us));
        self
    }
}

/// The default ranges, for checks built from zones alone.
static DEFAULT_RANGES: std::sync::LazyLock<Ranges> = std::sync::LazyLock::new(Ranges::default);

impl<'a> Checks<'a> {
    /// `zones` with the default ranges.
    pub fn zones(zones: &'a ZoneSet) -> Self {
        Checks {
            zones,
            ranges: &DEFAULT_RANGES,
            window: None,
        }
    }
}

/// Validates a raw record. `feed` overrides the record's own `feed` field (mapped sources).
pub fn validate(raw: &RawRecord, feed: Option<Feed>, checks: Checks, seq: u64) -> R<Record> {
    let (zones, ranges) = (checks.zones, checks.ranges);
    let feed = match feed {
        Some(f) => f,
        None => {
            let name = text("feed", present(&raw.feed).ok_or_else(|| missing("feed"))?)?;
            Feed::parse(&name).ok_or_else(|| {
                invalid(
                    "feed",
                    format!(
                        "unknown feed {} (expected one of {})",
                        quote(&name),
                        Feed::ALL.map(Feed::name).join(", ")
                    ),
                )
            })?
        }
    };
    let ts = required_time("ts", &raw.ts)?;
    if let Some((first, last)) = checks.window {
        if ts > last {
            return Err(invalid(
                "ts",
                format!(
                    "{} is more than ingest.max_future_days after now",
                    vigie_model::time::format_ts(ts)
                ),
            ));
        }
        if ts < first {
            return Err(invalid(
                "ts",
                format!(
                    "{} is more than ingest.max_past_days before now",
                    vigie_model::time::format_ts(ts)
                ),
            ));
        }
    }
    let id = present(&raw.id).map(|v| identifier("id", v)).transpose()?;
    let cancelled = match present(&raw.status) {
        Some(v) => text("status", v)?.trim() == "cancelled",
        None => false,
    };
    if matches!(feed, Feed::Event | Feed::Deployment) && id.is_none() {
        return Err(missing("id"));
    }
    // `status` has no effect on a record without `id`.
    if cancelled && id.is_some() {
        return Ok(Record {
            feed,
            ts,
            seq,
            id,
            body: None,
        });
    }
    // Every other field is checked before the location: a record with a bad value is refused
    // whatever its place, while a valid record in no zone still takes part in its id's upsert
    // (the model chooses the winner before locating it).
    let zone = || locate(raw, zones);
    let body = match feed {
        Feed::Incident => {
            let v = number(
                "severity",
                present(&raw.severity).ok_or_else(|| missing("severity"))?,
            )?;
            if v.fract() != 0.0 || !(1.0..=5.0).contains(&v) {
                return Err(invalid(
                    "severity",
                    format!("{v} is not an integer from 1 to 5"),
                ));
            }
            located(zone(), &id, feed, ts, seq, |zone| Body::Incident {
                zone,
                severity: v as u8,
            })?
        }
        Feed::Density => {
            let people = count("people", &raw.people, ranges.people_max)?;
            let sensor = sensor(raw)?;
            located(zone(), &id, feed, ts, seq, |zone| Body::Density {
                zone,
                sensor,
                people: F64(people),
            })?
        }
        Feed::Event => {
            let (start, end) = interval(raw)?;
            let attendance = count("attendance", &raw.attendance, ranges.attendance_max)?;
            let k = text("kind", present(&raw.kind).ok_or_else(|| missing("kind"))?)?;
            let kind = EventKind::parse(k.trim()).ok_or_else(|| {
                invalid(
                    "kind",
                    format!(
                        "unknown event kind {} (expected one of {})",
                        quote(&k),
                        EventKind::ALL.map(EventKind::name).join(", ")
                    ),
                )
            })?;
            located(zone(), &id, feed, ts, seq, |zone| Body::Event {
                zone,
                start,
                end,
                attendance: F64(attendance),
                kind,
            })?
        }
        Feed::Weather => {
            let k = text("kind", present(&raw.kind).ok_or_else(|| missing("kind"))?)?;
            let kind = match k.trim() {
                "observed" => WeatherKind::Observed,
                "forecast" => WeatherKind::Forecast,
                _ => {
                    return Err(invalid(
                        "kind",
                        format!("{} is neither \"observed\" nor \"forecast\"", quote(&k)),
                    ))
                }
            };
            let issued_at = present(&raw.issued_at)
                .map(|v| time("issued_at", v))
                .transpose()?;
            Body::Weather {
                kind,
                issued_at,
                temperature_c: measure("temperature_c", &raw.temperature_c, ranges.temperature_c)?,
                precip_mm: measure("precip_mm", &raw.precip_mm, ranges.precip_mm)?,
                wind_kmh: measure("wind_kmh", &raw.wind_kmh, ranges.wind_kmh)?,
            }
        }
        Feed::Deployment => {
            let (start, end) = interval(raw)?;
            let agents = count("agents", &raw.agents, ranges.agents_max)?;
            if agents.fract() != 0.0 {
                return Err(invalid(
                    "agents",
                    format!("{agents} is not a whole number of agents"),
                ));
            }
            located(zone(), &id, feed, ts, seq, |zone| Body::Deployment {
                zone,
                start,
                end,
                agents: agents as u64,
            })?
        }
        Feed::Traffic => {
            let volume = count("volume", &raw.volume, ranges.volume_max)?;
            let sensor = sensor(raw)?;
            located(zone(), &id, feed, ts, seq, |zone| Body::Traffic {
                zone,
                sensor,
                volume: F64(volume),
            })?
        }
        Feed::Call => located(zone(), &id, feed, ts, seq, |zone| Body::Call { zone })?,
    };
    Ok(Record {
        feed,
        ts,
        seq,
        id,
        body: Some(body),
    })
}

/// `sensor`, when present (null and `""` are the unnamed sensor).
fn sensor(raw: &RawRecord) -> R<Option<String>> {
    present(&raw.sensor)
        .map(|v| identifier("sensor", v))
        .transpose()
}

/// The body of a valid record once located. A record in no zone (an unknown `zone`, or a point
/// outside every polygon) is refused; when it has an id, the error carries the cancellation
/// that stands for it in its id's upsert ([`RecordError::tombstone`]).
fn located(
    zone: R<ZoneIdx>,
    id: &Option<String>,
    feed: Feed,
    ts: i64,
    seq: u64,
    body: impl FnOnce(ZoneIdx) -> Body,
) -> R<Body> {
    match zone {
        Ok(z) => Ok(body(z)),
        Err(mut e) => {
            if matches!(e.kind, RejectKind::UnknownZone | RejectKind::OutsideZones) {
                e.tombstone = id.as_ref().map(|id| {
                    Box::new(Record {
                        feed,
                        ts,
                        seq,
                        id: Some(id.clone()),
                        body: None,
                    })
                });
            }
            Err(e)
        }
    }
}

/// Parses and validates one NDJSON line.
pub fn parse_ndjson_line(line: &str, checks: Checks, seq: u64) -> R<Record> {
    let raw = crate::raw::parse_json_line(line).map_err(RecordError::malformed)?;
    validate(&raw, None, checks, seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigie_config::Zone;

    fn zones() -> ZoneSet {
        ZoneSet::from_zones(vec![
            Zone::without_polygon("13001", 1000.0, 10.0, 1, 5, 100.0),
            Zone::without_polygon("13002", 1000.0, 10.0, 1, 5, 100.0),
        ])
    }

    fn parse(line: &str) -> R<Record> {
        parse_ndjson_line(line, Checks::zones(&zones()), 7)
    }

    #[test]
    fn parses_every_feed() {
        let r = parse(r#"{"feed":"incident","ts":"2026-11-28T14:05:00Z","zone":"13002","severity":3,"category":"theft"}"#).unwrap();
        assert_eq!(
            r.body,
            Some(Body::Incident {
                zone: 1,
                severity: 3
            })
        );
        assert_eq!(r.seq, 7);
        let r =
            parse(r#"{"feed":"density","ts":1764338700,"zone":13001,"people":12.5,"sensor":"s1"}"#)
                .unwrap();
        assert_eq!(
            r.body,
            Some(Body::Density {
                zone: 0,
                sensor: Some("s1".into()),
                people: F64(12.5)
            })
        );
        assert_eq!(r.ts, 1_764_338_700_000_000);
        let r = parse(r#"{"feed":"event","ts":1,"id":"ev-1","zone":"13001","start":10,"end":20,"attendance":500,"kind":"official_visit"}"#).unwrap();
        assert!(matches!(
            r.body,
            Some(Body::Event {
                kind: EventKind::OfficialVisit,
                ..
            })
        ));
        let r =
            parse(r#"{"feed":"weather","ts":3600,"kind":"forecast","issued_at":0,"wind_kmh":70}"#)
                .unwrap();
        assert!(matches!(
            r.body,
            Some(Body::Weather {
                kind: WeatherKind::Forecast,
                issued_at: Some(0),
                ..
            })
        ));
        let r = parse(r#"{"feed":"deployment","ts":1,"id":"d1","zone":"13001","start":0,"end":7200,"agents":4}"#).unwrap();
        assert!(matches!(r.body, Some(Body::Deployment { agents: 4, .. })));
        let r =
            parse(r#"{"feed":"traffic","ts":1,"zone":"13001","volume":5545,"sensor":""}"#).unwrap();
        assert_eq!(
            r.body,
            Some(Body::Traffic {
                zone: 0,
                sensor: None,
                volume: F64(5545.0)
            })
        );
        let r = parse(r#"{"feed":"call","ts":1,"zone":"13002","category":"noise"}"#).unwrap();
        assert_eq!(r.body, Some(Body::Call { zone: 1 }));
        assert_eq!(
            parse(r#"{"feed":"traffic","ts":1,"zone":"13001","volume":-1}"#)
                .unwrap_err()
                .field,
            Some("volume")
        );
        assert_eq!(
            parse(r#"{"feed":"traffic","ts":1,"zone":"13001"}"#)
                .unwrap_err()
                .field,
            Some("volume")
        );
        let r = parse(r#"{"feed":"event","ts":5,"id":"ev-1","status":"cancelled"}"#).unwrap();
        assert_eq!((r.id.as_deref(), r.body), (Some("ev-1"), None));
    }

    fn err(line: &str) -> RecordError {
        parse(line).unwrap_err()
    }

    #[test]
    fn values_outside_their_physical_range_are_refused_with_the_range() {
        let refused = |line: &str, field: &str| {
            let e = err(line);
            assert_eq!(
                (e.kind, e.field),
                (RejectKind::InvalidField, Some(field)),
                "{line}"
            );
            assert!(e.reason.contains("[ranges]"), "{}", e.reason);
        };
        // One weather record of 1e308 °C would put every zone at level 4.
        refused(
            r#"{"feed":"weather","ts":1,"kind":"observed","temperature_c":1e308}"#,
            "temperature_c",
        );
        refused(
            r#"{"feed":"weather","ts":1,"kind":"observed","temperature_c":-95}"#,
            "temperature_c",
        );
        refused(
            r#"{"feed":"weather","ts":1,"kind":"forecast","wind_kmh":900}"#,
            "wind_kmh",
        );
        refused(
            r#"{"feed":"weather","ts":1,"kind":"forecast","precip_mm":-1}"#,
            "precip_mm",
        );
        refused(
            r#"{"feed":"density","ts":1,"zone":"13001","people":6e6}"#,
            "people",
        );
        refused(
            r#"{"feed":"traffic","ts":1,"zone":"13001","volume":50000}"#,
            "volume",
        );
        refused(
            r#"{"feed":"deployment","ts":1,"id":"d","zone":"13001","start":0,"end":7200,"agents":200000}"#,
            "agents",
        );
        refused(
            r#"{"feed":"event","ts":1,"id":"e","zone":"13001","start":1,"end":2,"attendance":1e7,"kind":"sport"}"#,
            "attendance",
        );
        // At the edges: accepted.
        parse(r#"{"feed":"weather","ts":1,"kind":"observed","temperature_c":60,"wind_kmh":0,"precip_mm":500}"#)
            .unwrap();
        parse(r#"{"feed":"density","ts":1,"zone":"13001","people":5e6}"#).unwrap();
        // A city may narrow a range.
        let ranges = Ranges {
            temperature_c: [-30.0, 45.0],
            ..Ranges::default()
        };
        let zones = zones();
        let checks = Checks {
            zones: &zones,
            ranges: &ranges,
            window: None,
        };
        let line = r#"{"feed":"weather","ts":1,"kind":"observed","temperature_c":50}"#;
        assert!(parse_ndjson_line(line, Checks::zones(&zones), 1).is_ok());
        assert_eq!(
            parse_ndjson_line(line, checks, 1).unwrap_err().field,
            Some("temperature_c")
        );
    }

    #[test]
    fn status_counts_only_with_an_id() {
        // Without an id, `status` has no effect: the record counts.
        let r =
            parse(r#"{"feed":"incident","ts":1,"zone":"13001","severity":2,"status":"cancelled"}"#)
                .unwrap();
        assert!(matches!(r.body, Some(Body::Incident { severity: 2, .. })));
        let r = parse(r#"{"feed":"call","ts":1,"id":7,"status":"cancelled"}"#).unwrap();
        assert_eq!((r.id.as_deref(), r.body), (Some("7"), None));
    }

    #[test]
    fn a_record_with_an_id_in_no_zone_stands_as_its_ids_cancellation() {
        let e = err(r#"{"feed":"incident","ts":5,"id":"i1","zone":"13009","severity":2}"#);
        assert_eq!(e.kind, RejectKind::UnknownZone);
        let t = e.tombstone.expect("a tombstone");
        assert_eq!(
            (t.feed, t.ts, t.seq, t.id.as_deref(), t.body),
            (Feed::Incident, 5_000_000, 7, Some("i1"), None)
        );
        let e = err(
            r#"{"feed":"event","ts":1,"id":"e","lat":1,"lon":2,"start":1,"end":2,"attendance":1,"kind":"sport"}"#,
        );
        assert_eq!(e.kind, RejectKind::OutsideZones);
        assert!(e.tombstone.is_some());
        // Without an id, or with a bad value besides, there is no tombstone.
        assert!(
            err(r#"{"feed":"incident","ts":1,"zone":"13009","severity":2}"#)
                .tombstone
                .is_none()
        );
        let e = err(r#"{"feed":"incident","ts":1,"id":"i1","zone":"13009","severity":9}"#);
        assert_eq!((e.field, e.tombstone), (Some("severity"), None));
    }

    #[test]
    fn rejections_name_the_field_and_the_kind() {
        let e = err(r#"{"feed":"incident","ts":1,"zone":"13001","severity":6}"#);
        assert_eq!(
            (e.kind, e.field),
            (RejectKind::InvalidField, Some("severity"))
        );
        let e = err(r#"{"feed":"incident","ts":1,"zone":"13001","severity":2.5}"#);
        assert_eq!(e.field, Some("severity"));
        let e = err(r#"{"feed":"incident","ts":1,"zone":"13009","severity":2}"#);
        assert_eq!(e.kind, RejectKind::UnknownZone);
        let e = err(r#"{"feed":"incident","ts":1,"lat":1,"lon":2,"severity":2}"#);
        assert_eq!(e.kind, RejectKind::OutsideZones);
        let e = err(r#"{"feed":"incident","zone":"13001","severity":2}"#);
        assert_eq!((e.kind, e.field), (RejectKind::MissingField, Some("ts")));
        let e = err(
            r#"{"feed":"event","ts":1,"id":"e","zone":"13001","start":20,"end":10,"attendance":1,"kind":"sport"}"#,
        );
        assert_eq!(e.kind, RejectKind::EndBeforeStart);
        let e = err(
            r#"{"feed":"event","ts":1,"zone":"13001","start":1,"end":10,"attendance":1,"kind":"sport"}"#,
        );
        assert_eq!(e.field, Some("id"));
        let e = err(r#"{"feed":"density","ts":1,"zone":"13001","people":-1}"#);
        assert_eq!(e.field, Some("people"));
        let e = err(
            r#"{"feed":"event","ts":1,"id":"e","zone":"13001","start":1,"end":2,"attendance":1e308,"kind":"sport"}"#,
        );
        assert_eq!(e.field, Some("attendance"));
        let e = err(r#"{"feed":"incident","ts":8210248387200,"zone":"13001","severity":3}"#);
        assert_eq!(e.field, Some("ts"));
        let e = err(
            r#"{"feed":"event","ts":1,"id":"e","zone":"13001","start":1,"end":1e300,"attendance":1,"kind":"sport"}"#,
        );
        assert_eq!(e.field, Some("end"));
        let e = err(
            r#"{"feed":"event","ts":1,"id":"e","zone":"13001","start":10,"end":10,"attendance":1,"kind":"sport"}"#,
        );
        assert_eq!(e.kind, RejectKind::EndBeforeStart);
        let e = err(r#"{"feed":"riot","ts":1}"#);
        assert_eq!(e.field, Some("feed"));
        let e = err(r#"{"feed":"incident","ts":"noon","zone":"13001","severity":2}"#);
        assert_eq!(e.field, Some("ts"));
        assert_eq!(err("{\"feed\":").kind, RejectKind::Malformed);
        assert_eq!(err("[1,2]").kind, RejectKind::Malformed);
        assert_eq!(
            err(r#"{"feed":"incident"} trailing"#).kind,
            RejectKind::Malformed
        );
    }
}
