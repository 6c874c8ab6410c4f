//! CSV rows through a configured [`Mapping`]: the mapping is compiled once against the file's
//! header (every column it names must exist), then each row becomes a [`RawRecord`] that the
//! common validator checks. An event without an end (missing, or not after its start) takes
//! the mapping's `default_duration_h` for its kind, if it has one.

use crate::raw::{RawRecord, Scalar};
use crate::validate::{time_us, validate, Checks, RecordError, RejectKind};
use chrono::{DateTime, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use std::borrow::Cow;
use std::collections::HashMap;
use vigie_config::mapping::{FieldSpec, Lookup};
use vigie_config::{Config, Mapping};
use vigie_model::time::{format_ts, in_range, seconds_to_us};
use vigie_model::{EventKind, Feed, Record};

enum Source {
    Column(usize),
    Template(Vec<Part>),
    Const(Scalar<'static>),
}

enum Part {
    Text(String),
    Column(usize),
}

enum TimeFormat {
    Rfc3339,
    Unix,
    UnixMs,
    Pattern(String, Option<Tz>),
}

struct Field {
    name: &'static str,
    /// Where its value goes in a [`RawRecord`] ([`RawRecord::slot_at`]); none for a name
    /// without a slot, evaluated all the same (its errors count).
    slot: Option<usize>,
    source: Source,
    table: Option<HashMap<String, Scalar<'static>>>,
    default: Option<Scalar<'static>>,
    scale: Option<f64>,
    offset: Option<f64>,
    time: Option<TimeFormat>,
}

enum Location {
    None,
    Zone(Field),
    LatLon(Field, Field),
    LonLat(usize),
    Lookup(usize, HashMap<String, (f64, f64)>),
}

/// A mapping compiled against a header.
pub struct CompiledMapping {
    feed: Feed,
    fields: Vec<Field>,
    location: Location,
    /// Microseconds an event of each kind (in [`EventKind::ALL`]'s order) lasts when its end
    /// is missing or not after its start; `None`: it keeps its end.
    default_duration_us: [Option<i64>; EventKind::ALL.len()],
    /// The cells of the header it was compiled against: every row must have as many.
    width: usize,
}

/// The static name of a record field (a mapping's fields are validated against the record
/// format's, [`vigie_config::privacy::FIELDS`]).
fn static_name(name: &str) -> &'static str {
    vigie_config::privacy::FIELDS
        .iter()
        .find(|n| **n == name)
        .copied()
        .unwrap_or("field")
}

fn to_scalar(v: &toml::Value) -> Scalar<'static> {
    match v {
        toml::Value::String(s) => Scalar::Str(Cow::Owned(s.clone())),
        toml::Value::Integer(i) => Scalar::Num(*i as f64),
        toml::Value::Float(f) => Scalar::Num(*f),
        toml::Value::Boolean(b) => Scalar::Bool(*b),
        other => Scalar::Str(Cow::Owned(other.to_string())),
    }
}

fn column(header: &HashMap<&str, usize>, name: &str, key: &str) -> Result<usize, String> {
    header
        .get(name)
        .copied()
        .ok_or_else(|| format!("{key}: column {name:?} is not in the header"))
}

fn compile_field(
    name: &'static str,
    spec: &FieldSpec,
    header: &HashMap<&str, usize>,
    key: &str,
    is_time: bool,
) -> Result<Field, String> {
    let source = if let Some(c) = &spec.column {
        Source::Column(column(header, c, key)?)
    } else if let Some(t) = &spec.template {
        let mut parts = Vec::new();
        let mut rest = t.as_str();
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("{key}: unclosed {{ in template {t:?}"))?;
            parts.push(Part::Column(column(
                header,
                &rest[open + 1..open + close],
                key,
            )?));
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Source::Template(parts)
    } else {
        Source::Const(to_scalar(
            spec.value.as_ref().expect("validated: one source"),
        ))
    };
    let time = if is_time {
        let tz = spec
            .timezone
            .as_ref()
            .map(|t| t.parse::<Tz>().expect("validated"));
        Some(match spec.format.as_deref().unwrap_or("rfc3339") {
            "rfc3339" => TimeFormat::Rfc3339,
            "unix" => TimeFormat::Unix,
            "unix_ms" => TimeFormat::UnixMs,
            p => TimeFormat::Pattern(p.to_string(), tz),
        })
    } else {
        None
    };
    Ok(Field {
        name,
        slot: RawRecord::slot_index(name),
        source,
        table: spec
            .table
            .as_ref()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), to_scalar(v))).collect()),
        default: spec.default.as_ref().map(to_scalar),
        scale: spec.scale,
        offset: spec.offset,
        time,
    })
}

impl CompiledMapping {
    /// Compiles `mapping` (named `name` in `config`) against a CSV header.
    pub fn compile(
        name: &str,
        mapping: &Mapping,
        header: &[String],
        config: &Config,
    ) -> Result<CompiledMapping, String> {
        let index: HashMap<&str, usize> = header
            .iter()
            .enumerate()
            .map(|(i, h)| (h.trim(), i))
            .collect();
        let key = |k: &str| format!("mappings.{name}.{k}");
        let mut fields = vec![compile_field(
            "ts",
            &mapping.time,
            &index,
            &key("time"),
            true,
        )?];
        for (fname, spec) in &mapping.fields {
            let is_time = ["start", "end", "issued_at"].contains(&fname.as_str());
            fields.push(compile_field(
                static_name(fname),
                spec,
                &index,
                &key(&format!("fields.{fname}")),
                is_time,
            )?);
        }
        let location = match &mapping.location {
            None => Location::None,
            Some(loc) => {
                if let Some(z) = &loc.zone {
                    Location::Zone(compile_field(
                        "zone",
                        z,
                        &index,
                        &key("location.zone"),
                        false,
                    )?)
                } else if let (Some(lat), Some(lon)) = (&loc.lat, &loc.lon) {
                    Location::LatLon(
                        compile_field("lat", lat, &index, &key("location.lat"), false)?,
                        compile_field("lon", lon, &index, &key("location.lon"), false)?,
                    )
                } else if let Some(c) = &loc.lonlat_column {
                    Location::LonLat(column(&index, c, &key("location.lonlat_column"))?)
                } else if let Some(l) = &loc.lookup {
                    Location::Lookup(
                        column(&index, &l.column, &key("location.lookup.column"))?,
                        load_lookup(l, config)?,
                    )
                } else {
                    Location::None
                }
            }
        };
        let mut default_duration_us = [None; EventKind::ALL.len()];
        for (kind, hours) in &mapping.default_duration_h {
            if let Some(i) = EventKind::ALL.iter().position(|k| k.name() == kind) {
                default_duration_us[i] = Some((hours * 3_600_000_000.0).round() as i64);
            }
        }
        Ok(CompiledMapping {
            feed: mapping.feed(),
            fields,
            location,
            default_duration_us,
            width: header.len(),
        })
    }

    /// The cells of the header it was compiled against, which every row must have.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The feed its records belong to.
    pub fn feed(&self) -> Feed {
        self.feed
    }

    /// Turns one row into a validated record.
    pub fn record(
        &self,
        row: &csv::StringRecord,
        checks: Checks,
        seq: u64,
    ) -> Result<Record, RecordError> {
        self.record_noting(row, checks, seq).map(|(r, _)| r)
    }

    /// The same, and whether the record is an event that took its kind's default duration.
    pub fn record_noting(
        &self,
        row: &csv::StringRecord,
        checks: Checks,
        seq: u64,
    ) -> Result<(Record, bool), RecordError> {
        // Filled in place: a raw record is some 700 bytes, which returning it would copy.
        let mut raw = RawRecord::default();
        let defaulted = self.fill(row, &mut raw)?;
        validate(&raw, Some(self.feed), checks, seq).map(|r| (r, defaulted))
    }

    /// Turns one row into a raw record, not yet validated (a live source completes it first).
    pub fn raw<'r>(&self, row: &'r csv::StringRecord) -> Result<RawRecord<'r>, RecordError> {
        let mut raw = RawRecord::default();
        self.fill(row, &mut raw).map(|_| raw)
    }

    /// Gives an event whose end is missing or not after its start the default duration of
    /// its kind, if the mapping has one; true when it did. An end that is not a time at all,
    /// a start that is missing or unreadable, or a kind not listed change nothing: the
    /// validator reports them as it would.
    fn default_end(&self, raw: &mut RawRecord) -> bool {
        let kind = match &raw.kind {
            Some(Scalar::Str(k)) => EventKind::parse(k.trim()),
            _ => None,
        };
        let Some(duration) = kind.and_then(|k| {
            let i = EventKind::ALL.iter().position(|x| *x == k)?;
            self.default_duration_us[i]
        }) else {
            return false;
        };
        let Some(start) = raw.start.as_ref().and_then(time_us) else {
            return false;
        };
        let ends_after = match &raw.end {
            None | Some(Scalar::Null) => false,
            Some(Scalar::Str(t)) if t.trim().is_empty() => false,
            Some(end) => match time_us(end) {
                Some(end) => end > start,
                None => return false,
            },
        };
        if ends_after {
            return false;
        }
        match in_range(start.saturating_add(duration)) {
            Some(end) => {
                raw.end = Some(Scalar::Str(Cow::Owned(format_ts(end))));
                true
            }
            None => false,
        }
    }

    /// Fills `raw` (a default one) from one row; true when an event's end was defaulted.
    fn fill<'r>(
        &self,
        row: &'r csv::StringRecord,
        raw: &mut RawRecord<'r>,
    ) -> Result<bool, RecordError> {
        for f in &self.fields {
            let v = f.eval(row)?;
            if let Some(i) = f.slot {
                *raw.slot_at(i) = v;
            }
        }
        match &self.location {
            Location::None => {}
            Location::Zone(f) => raw.zone = f.eval(row)?,
            Location::LatLon(lat, lon) => {
                raw.lat = lat.eval(row)?;
                raw.lon = lon.eval(row)?;
            }
            Location::LonLat(c) => {
                let cell = row.get(*c).unwrap_or("");
                if !cell.trim().is_empty() {
                    match serde_json::from_str::<[f64; 2]>(cell) {
                        Ok([lon, lat]) => {
                            raw.lat = Some(Scalar::Num(lat));
                            raw.lon = Some(Scalar::Num(lon));
                        }
                        Err(_) => {
                            return Err(RecordError::field(
                                RejectKind::InvalidField,
                                "lat",
                                format!("{} is not a [lon, lat] pair", crate::raw::quote(cell)),
                            ))
                        }
                    }
                }
            }
            Location::Lookup(c, table) => {
                let cell = row.get(*c).unwrap_or("").trim();
                match table.get(cell) {
                    Some((lat, lon)) => {
                        raw.lat = Some(Scalar::Num(*lat));
                        raw.lon = Some(Scalar::Num(*lon));
                    }
                    None => {
                        return Err(RecordError::field(
                            RejectKind::OutsideZones,
                            "sensor",
                            format!("no known position for {}", crate::raw::quote(cell)),
                        ))
                    }
                }
            }
        }
        Ok(self.feed == Feed::Event && self.default_end(raw))
    }
}

fn load_lookup(l: &Lookup, config: &Config) -> Result<HashMap<String, (f64, f64)>, String> {
    let path = config.resolve(&l.file);
    let mut rdr =
        csv::Reader::from_path(&path).map_err(|e| format!("lookup {}: {e}", path.display()))?;
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(str::to_string)
        .collect();
    let idx = |n: &str| {
        header
            .iter()
            .position(|h| h == n)
            .ok_or_else(|| format!("lookup {}: no column {n:?}", path.display()))
    };
    let (k, la, lo) = (idx(&l.key)?, idx(&l.lat)?, idx(&l.lon)?);
    let mut out = HashMap::new();
    for (i, row) in rdr.records().enumerate() {
        let row = row.map_err(|e| format!("lookup {} line {}: {e}", path.display(), i + 2))?;
        let lat = row.get(la).and_then(|v| v.trim().parse::<f64>().ok());
        let lon = row.get(lo).and_then(|v| v.trim().parse::<f64>().ok());
        if let (Some(key), Some(lat), Some(lon)) = (row.get(k), lat, lon) {
            out.insert(key.trim().to_string(), (lat, lon));
        }
    }
    Ok(out)
}

impl Field {
    fn invalid(&self, reason: String) -> RecordError {
        RecordError::field(RejectKind::InvalidField, self.name, reason)
    }

    /// The field's value in `row`; text is borrowed from the row when it comes from one column.
    fn eval<'r>(&self, row: &'r csv::StringRecord) -> Result<Option<Scalar<'r>>, RecordError> {
        let text: Cow<'r, str> = match &self.source {
            Source::Const(v) => return Ok(Some(v.clone())),
            Source::Column(c) => Cow::Borrowed(row.get(*c).unwrap_or("")),
            Source::Template(parts) => {
                let mut s = String::new();
                for p in parts {
                    match p {
                        Part::Text(t) => s.push_str(t),
                        Part::Column(c) => s.push_str(row.get(*c).unwrap_or("")),
                    }
                }
                Cow::Owned(s)
            }
        };
        let text: Cow<'r, str> = match text {
            Cow::Borrowed(t) => Cow::Borrowed(crate::raw::trim(t)),
            Cow::Owned(t) => Cow::Owned(t.trim().to_string()),
        };
        if text.is_empty() {
            return Ok(self.default.clone());
        }
        if let Some(table) = &self.table {
            return match table.get(text.as_ref()) {
                Some(v) => Ok(Some(v.clone())),
                None => match &self.default {
                    Some(d) => Ok(Some(d.clone())),
                    None => Err(self.invalid(format!(
                        "{} is not in the mapping's table",
                        crate::raw::quote(&text)
                    ))),
                },
            };
        }
        if let Some(fmt) = &self.time {
            return self.parse_time(&text, fmt).map(Some);
        }
        if self.scale.is_some() || self.offset.is_some() {
            let v: f64 = text.parse().map_err(|_| {
                self.invalid(format!("{} is not a number", crate::raw::quote(&text)))
            })?;
            return Ok(Some(Scalar::Num(
                v * self.scale.unwrap_or(1.0) + self.offset.unwrap_or(0.0),
            )));
        }
        Ok(Some(Scalar::Str(text)))
    }

    fn parse_time(&self, text: &str, fmt: &TimeFormat) -> Result<Scalar<'static>, RecordError> {
        let bad = || {
            self.invalid(format!(
                "{} does not match the mapping's time format",
                crate::raw::quote(text)
            ))
        };
        let us = match fmt {
            TimeFormat::Rfc3339 => DateTime::parse_from_rfc3339(text)
                .map_err(|_| bad())?
                .timestamp_micros(),
            // Whole seconds, the common case, are read as an integer: exact, and no float
            // parse.
            TimeFormat::Unix => match text.parse::<i64>() {
                Ok(s) => s
                    .checked_mul(1_000_000)
                    .and_then(in_range)
                    .ok_or_else(bad)?,
                Err(_) => seconds_to_us(text.parse::<f64>().map_err(|_| bad())?).ok_or_else(bad)?,
            },
            TimeFormat::UnixMs => {
                seconds_to_us(text.parse::<f64>().map_err(|_| bad())? / 1e3).ok_or_else(bad)?
            }
            TimeFormat::Pattern(p, tz) => {
                if let Ok(dt) = DateTime::parse_from_str(text, p) {
                    dt.timestamp_micros()
                } else {
                    let naive = NaiveDateTime::parse_from_str(text, p)
                        .or_else(|_| {
                            NaiveDateTime::parse_from_str(&format!("{text} 00"), &format!("{p} %M"))
                        })
                        .map_err(|_| bad())?;
                    match tz {
                        None => naive.and_utc().timestamp_micros(),
                        Some(tz) => local_to_utc(tz, naive).ok_or_else(bad)?,
                    }
                }
            }
        };
        let us = vigie_model::time::in_range(us).ok_or_else(bad)?;
        Ok(Scalar::Num(us as f64 / 1e6))
    }
}

/// A local time to UTC microseconds: the earlier instant when the clock goes back; in a gap
/// when it goes forward, the offset from before the gap.
fn local_to_utc(tz: &Tz, naive: NaiveDateTime) -> Option<i64> {
    if let Some(dt) = tz.from_local_datetime(&naive).earliest() {
        return Some(dt.timestamp_micros());
    }
    let before = tz
        .from_local_datetime(&(naive - chrono::Duration::hours(3)))
        .earliest()?;
    let offset = *before.offset();
    Some(naive.and_utc().timestamp_micros() - offset_seconds(&offset) * 1_000_000)
}

fn offset_seconds(o: &chrono_tz::TzOffset) -> i64 {
    use chrono::Offset;
    o.fix().local_minus_utc() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InputSpec, Item, RecordReader};
    use proptest::prelude::*;
    use vigie_model::Body;

    const HOUR_US: i64 = 3_600_000_000;

    fn config() -> Config {
        Config::parse(
            "zones = \"zones/marseille.geojson\"\n[mappings.agenda]\nfeed = \"event\"\n\
             time = { column = \"seen\", format = \"unix\" }\nlocation = { zone = { value = \"13008\" } }\n\
             fields.id = { column = \"id\" }\nfields.start = { column = \"start\", format = \"unix\" }\n\
             fields.end = { column = \"end\", format = \"unix\" }\nfields.attendance = { value = 1000 }\n\
             fields.kind = { column = \"kind\" }\n\
             [mappings.agenda.default_duration_h]\nsport = 3\nfestival = 0.5\n",
            "test.toml",
            None,
        )
        .unwrap()
    }

    fn compiled(c: &Config) -> CompiledMapping {
        let header: Vec<String> = ["seen", "id", "start", "end", "kind"]
            .map(String::from)
            .to_vec();
        CompiledMapping::compile("agenda", &c.mappings["agenda"], &header, c).unwrap()
    }

    /// `(start, end)` in µs of a mapped event, and whether it took the default; or why not.
    type Mapped = Result<((i64, i64), bool), RejectKind>;

    /// The event mapped from one row.
    fn interval(m: &CompiledMapping, c: &Config, cells: [&str; 5]) -> Mapped {
        let row = csv::StringRecord::from(cells.to_vec());
        match m.record_noting(&row, c.into(), 1) {
            Ok((
                Record {
                    body: Some(Body::Event { start, end, .. }),
                    ..
                },
                d,
            )) => Ok(((start, end), d)),
            Ok(other) => panic!("not an event: {other:?}"),
            Err(e) => Err(e.kind),
        }
    }

    #[test]
    fn an_event_without_an_end_after_its_start_takes_its_kind_default() {
        let c = config();
        let m = compiled(&c);
        let s = 1_700_000_000i64;
        let at = |t: i64| t * 1_000_000;
        let start = s.to_string();
        let cases: [([&str; 5], Mapped); 7] = [
            // No end, the same end, an end before: 3 h after the start.
            (
                ["1", "a", &start, "", "sport"],
                Ok(((at(s), at(s) + 3 * HOUR_US), true)),
            ),
            (
                ["1", "b", &start, &start, "sport"],
                Ok(((at(s), at(s) + 3 * HOUR_US), true)),
            ),
            (
                ["1", "c", &start, "1600000000", "sport"],
                Ok(((at(s), at(s) + 3 * HOUR_US), true)),
            ),
            (
                ["1", "d", &start, &start, "festival"],
                Ok(((at(s), at(s) + HOUR_US / 2), true)),
            ),
            // An end after the start is kept.
            (
                ["1", "e", &start, "1700000060", "sport"],
                Ok(((at(s), at(s + 60)), false)),
            ),
            // A kind without a default, and an end that is no time, are refused as before.
            (
                ["1", "f", &start, &start, "concert"],
                Err(RejectKind::EndBeforeStart),
            ),
            (
                ["1", "g", &start, "soon", "sport"],
                Err(RejectKind::InvalidField),
            ),
        ];
        for (cells, want) in cases {
            assert_eq!(interval(&m, &c, cells), want, "{cells:?}");
        }
        // A replay's reader counts the accepted events that took a default.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agenda.csv");
        std::fs::write(
            &path,
            format!("seen,id,start,end,kind\n1,a,{s},,sport\n1,b,{s},{s},concert\n1,c,{s},{s},festival\n1,d,{s},1700000060,sport\n"),
        )
        .unwrap();
        let spec = InputSpec::parse(&format!("agenda={}", path.display()), &c).unwrap();
        let mut reader = RecordReader::new(&c, vec![spec]);
        let accepted = reader
            .by_ref()
            .filter(|i| matches!(i, Item::Record(_)))
            .count();
        assert_eq!((accepted, reader.defaulted_ends()), (3, 2));
    }

    #[test]
    fn default_durations_are_for_events_and_their_kinds_only() {
        let base = "zones = \"zones/marseille.geojson\"\n[mappings.m]\ntime = { column = \"t\" }\nlocation = { zone = { column = \"z\" } }\n";
        let err = |extra: &str| {
            Config::parse(&format!("{base}{extra}"), "test.toml", None)
                .unwrap_err()
                .to_string()
        };
        let e = err("feed = \"deployment\"\n[mappings.m.default_duration_h]\nsport = 3\n");
        assert!(
            e.contains("mappings.m.default_duration_h") && e.contains("feed event"),
            "{e}"
        );
        let e = err("feed = \"event\"\n[mappings.m.default_duration_h]\nrodeo = 3\n");
        assert!(e.contains("mappings.m.default_duration_h.rodeo"), "{e}");
        let e = err("feed = \"event\"\n[mappings.m.default_duration_h]\nsport = 0\n");
        assert!(e.contains("mappings.m.default_duration_h.sport"), "{e}");
    }

    proptest! {
        /// Whatever the end given, a defaulted kind's event ends after it starts: as given when
        /// that is after the start, else the default duration after it.
        #[test]
        fn a_defaulted_event_always_ends_after_it_starts(
            start in 0i64..4_000_000_000,
            delta in -100_000i64..100_000,
            no_end in any::<bool>(),
        ) {
            let c = config();
            let m = compiled(&c);
            let end = if no_end { String::new() } else { (start + delta).to_string() };
            let got = interval(&m, &c, ["1", "x", &start.to_string(), &end, "sport"]);
            let keeps = !no_end && delta > 0;
            let want_end = if keeps { (start + delta) * 1_000_000 } else { start * 1_000_000 + 3 * HOUR_US };
            prop_assert_eq!(got, Ok(((start * 1_000_000, want_end), !keeps)));
        }
    }
}
