//! A reader of InfluxDB line protocol, for the InfluxDB 2 write API of HTTP ingest
//! (`POST /api/v2/write`), so that Telegraf or any InfluxDB client can push records.
//!
//! One point a line: `measurement[,tag=value…] field=value[,field=value…] [timestamp]`. The
//! measurement is the feed; tags and fields fill the record's fields by name (unknown names,
//! such as Telegraf's `host` tag, are ignored, as unknown JSON fields are), and the point goes
//! through the same validation as a JSON record ([`crate::validate::validate`]):
//!
//! ```text
//! incident,zone=13001,category=theft severity=3i 1764338400000000000
//! density,zone=13001,sensor=s1 people=1200
//! event,zone=13008,kind=sport id="ev-1",start=1764338400i,end=1764352800i,attendance=500i
//! ```
//!
//! - **Escapes.** The measurement escapes `,` and space; tag keys, tag values and field keys
//!   escape `,`, `=` and space; a backslash before one of these (or before a backslash) takes
//!   the next character literally, any other backslash is itself. So `\\` reads as one
//!   backslash, which is what [`crate::influx::line`] writes.
//! - **Field values.** Floats (`1`, `-2.5`, `1e3`; NaN and infinities refused), integers
//!   (`3i`), unsigned integers (`3u`), booleans (`t`, `true`, `True`, `TRUE`, `f`, …) and
//!   double-quoted strings (escapes `\"` and `\\`). A string cannot span lines.
//! - **Timestamp.** Optional, an integer in the request's precision (ns, us, ms or s); without
//!   one, a `ts` tag or field is used if present, else the time the request arrived.
//! - Blank lines and lines starting with `#` are skipped.

use crate::raw::{RawRecord, Scalar};
use crate::validate::{RecordError, RejectKind};
use std::borrow::Cow;

/// A field's value as written.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    Float(f64),
    Int(i64),
    UInt(u64),
    Str(String),
    Bool(bool),
}

/// One parsed line.
#[derive(Clone, Debug, PartialEq)]
pub struct LinePoint {
    pub measurement: String,
    /// Tags in the order written.
    pub tags: Vec<(String, String)>,
    /// Fields in the order written (at least one).
    pub fields: Vec<(String, FieldValue)>,
    /// The timestamp as written, in the request's precision.
    pub timestamp: Option<i64>,
}

/// The unit of timestamps (`precision=` of the write API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    Ns,
    Us,
    Ms,
    S,
}

impl Precision {
    /// `ns`, `us`, `ms` or `s`.
    pub fn parse(s: &str) -> Option<Precision> {
        Some(match s {
            "ns" => Precision::Ns,
            "us" => Precision::Us,
            "ms" => Precision::Ms,
            "s" => Precision::S,
            _ => return None,
        })
    }

    /// A timestamp in this precision as microseconds (nanoseconds are rounded down); `None`
    /// when it overflows.
    pub fn to_us(self, ts: i64) -> Option<i64> {
        match self {
            Precision::Ns => Some(ts.div_euclid(1000)),
            Precision::Us => Some(ts),
            Precision::Ms => ts.checked_mul(1000),
            Precision::S => ts.checked_mul(1_000_000),
        }
    }
}

/// Reads up to an unescaped byte of `stops`; returns the unescaped text and the stop (`None`
/// at the end of the line). A backslash before a byte of `escapable` takes it literally.
fn token(line: &str, pos: &mut usize, stops: &[u8], escapable: &[u8]) -> (String, Option<u8>) {
    let bytes = line.as_bytes();
    let mut out = String::new();
    let mut run = *pos;
    let mut i = *pos;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\' && i + 1 < bytes.len() && escapable.contains(&bytes[i + 1]) {
            // Both are ASCII, so these are character boundaries.
            out.push_str(&line[run..i]);
            out.push(bytes[i + 1] as char);
            i += 2;
            run = i;
        } else if stops.contains(&b) {
            out.push_str(&line[run..i]);
            *pos = i + 1;
            return (out, Some(b));
        } else {
            i += 1;
        }
    }
    out.push_str(&line[run..]);
    *pos = bytes.len();
    (out, None)
}

const MEASUREMENT_ESCAPES: &[u8] = b", \\";
const KEY_ESCAPES: &[u8] = b",= \\";

/// Parses one line; `Ok(None)` for a blank or comment line. The error says what is wrong.
pub fn parse_line(line: &str) -> Result<Option<LinePoint>, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let line = line.trim_start_matches([' ', '\t']);
    if line.trim().is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut pos = 0;
    let (measurement, mut stop) = token(line, &mut pos, b", ", MEASUREMENT_ESCAPES);
    if measurement.is_empty() {
        return Err("the measurement (the feed) is empty".into());
    }
    let mut tags = Vec::new();
    while stop == Some(b',') {
        let (key, s) = token(line, &mut pos, b"=, ", KEY_ESCAPES);
        if s != Some(b'=') {
            return Err(format!("tag {key:?} has no `=value`"));
        }
        let (value, s) = token(line, &mut pos, b"=, ", KEY_ESCAPES);
        if s == Some(b'=') {
            return Err(format!("tag {key:?}: unescaped `=` in its value"));
        }
        if key.is_empty() || value.is_empty() {
            return Err(format!("tag {key:?}={value:?}: empty key or value"));
        }
        tags.push((key, value));
        stop = s;
    }
    if stop != Some(b' ') {
        return Err("no field set (a point needs at least one field=value)".into());
    }
    // Several spaces may separate the sections.
    while line.as_bytes().get(pos) == Some(&b' ') {
        pos += 1;
    }
    let mut fields = Vec::new();
    loop {
        let (key, s) = token(line, &mut pos, b"=, ", KEY_ESCAPES);
        if s != Some(b'=') {
            if key.is_empty() && fields.is_empty() {
                return Err("no field set (a point needs at least one field=value)".into());
            }
            return Err(format!("field {key:?} has no `=value`"));
        }
        if key.is_empty() {
            return Err("a field has an empty key".into());
        }
        let (value, s) = field_value(line, &mut pos, &key)?;
        fields.push((key, value));
        match s {
            Some(b',') => continue,
            _ => {
                stop = s;
                break;
            }
        }
    }
    let timestamp =
        match stop {
            None => None,
            _ => {
                let rest = line[pos..].trim();
                if rest.is_empty() {
                    None
                } else {
                    Some(rest.parse::<i64>().map_err(|_| {
                        format!("{:?} is not an integer timestamp", truncate(rest, 40))
                    })?)
                }
            }
        };
    Ok(Some(LinePoint {
        measurement,
        tags,
        fields,
        timestamp,
    }))
}

/// Reads a field value at `pos`; returns it and the byte after it (`,`, space, or `None`).
fn field_value(line: &str, pos: &mut usize, key: &str) -> Result<(FieldValue, Option<u8>), String> {
    let bytes = line.as_bytes();
    if bytes.get(*pos) == Some(&b'"') {
        let mut out = String::new();
        let mut i = *pos + 1;
        let mut run = i;
        loop {
            match bytes.get(i) {
                None => return Err(format!("field {key:?}: unterminated string")),
                Some(b'\\') if matches!(bytes.get(i + 1), Some(b'"' | b'\\')) => {
                    out.push_str(&line[run..i]);
                    out.push(bytes[i + 1] as char);
                    i += 2;
                    run = i;
                }
                Some(b'"') => {
                    out.push_str(&line[run..i]);
                    i += 1;
                    break;
                }
                Some(_) => i += 1,
            }
        }
        *pos = i;
        return match bytes.get(i) {
            None => Ok((FieldValue::Str(out), None)),
            Some(&b) if b == b',' || b == b' ' => {
                *pos = i + 1;
                Ok((FieldValue::Str(out), Some(b)))
            }
            Some(_) => Err(format!("field {key:?}: text after the closing quote")),
        };
    }
    let start = *pos;
    let end = line[start..]
        .find([',', ' '])
        .map_or(line.len(), |n| start + n);
    let text = &line[start..end];
    let stop = bytes.get(end).copied();
    *pos = if stop.is_some() { end + 1 } else { end };
    let bad = || {
        format!(
            "field {key:?}: {:?} is not a float, an integer (3i), an unsigned integer (3u), a \
             boolean or a quoted string",
            truncate(text, 40)
        )
    };
    let value = if let Some(digits) = text.strip_suffix('i') {
        FieldValue::Int(digits.parse().map_err(|_| bad())?)
    } else if let Some(digits) = text.strip_suffix('u') {
        FieldValue::UInt(digits.parse().map_err(|_| bad())?)
    } else {
        match text {
            "t" | "T" | "true" | "True" | "TRUE" => FieldValue::Bool(true),
            "f" | "F" | "false" | "False" | "FALSE" => FieldValue::Bool(false),
            _ => {
                // Only digits, signs, a point and an exponent: Rust also reads `inf`, `NaN`.
                if text.is_empty()
                    || !text
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
                {
                    return Err(bad());
                }
                let v: f64 = text.parse().map_err(|_| bad())?;
                if !v.is_finite() {
                    return Err(bad());
                }
                FieldValue::Float(v)
            }
        }
    };
    Ok((value, stop))
}

/// At most `n` characters of `s`.
fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The raw record of a point, for [`crate::validate::validate`]: the measurement as `feed`,
/// tags and fields by name, the timestamp (in `precision`) as `ts`, else a `ts` tag or field,
/// else `now_us`.
pub fn raw_record(
    p: &LinePoint,
    precision: Precision,
    now_us: i64,
) -> Result<RawRecord<'_>, RecordError> {
    let mut raw = RawRecord::default();
    for (k, v) in &p.tags {
        if let Some(slot) = raw.slot(k) {
            *slot = Some(Scalar::Str(Cow::Borrowed(v)));
        }
    }
    for (k, v) in &p.fields {
        if let Some(slot) = raw.slot(k) {
            *slot = Some(match v {
                FieldValue::Float(f) => Scalar::Num(*f),
                FieldValue::Int(i) => Scalar::Num(*i as f64),
                FieldValue::UInt(u) => Scalar::Num(*u as f64),
                FieldValue::Str(s) => Scalar::Str(Cow::Borrowed(s)),
                FieldValue::Bool(b) => Scalar::Bool(*b),
            });
        }
    }
    raw.feed = Some(Scalar::Str(Cow::Borrowed(&p.measurement)));
    let us = match p.timestamp {
        Some(ts) => Some(
            precision
                .to_us(ts)
                .and_then(vigie_model::time::in_range)
                .ok_or_else(|| {
                    RecordError::field(
                        RejectKind::InvalidField,
                        "ts",
                        format!("timestamp {ts} ({precision:?}) is outside the years 1900 to 9999"),
                    )
                })?,
        ),
        None if raw.ts.is_some() => None,
        None => Some(now_us),
    };
    if let Some(us) = us {
        raw.ts = Some(Scalar::Num(us as f64 / 1e6));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use FieldValue::*;

    fn p(line: &str) -> LinePoint {
        parse_line(line).unwrap().unwrap()
    }

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn reads_the_brief_s_examples() {
        assert_eq!(
            p("incident,zone=13001,category=theft severity=3i 1764338400000000000"),
            LinePoint {
                measurement: s("incident"),
                tags: vec![(s("zone"), s("13001")), (s("category"), s("theft"))],
                fields: vec![(s("severity"), Int(3))],
                timestamp: Some(1_764_338_400_000_000_000),
            }
        );
        let d = p("density,zone=13001,sensor=s1 people=1200");
        assert_eq!(d.fields, vec![(s("people"), Float(1200.0))]);
        assert_eq!(d.timestamp, None);
    }

    #[test]
    fn escapes_strings_and_types() {
        let x = p(
            r#"my\ m\,x,t\ k\=1=v\,a\ l\=ue\\,u=\x f\=k="say \"hi\" \\ \n",b=T,d=1e3,e=-2i   -5 "#,
        );
        assert_eq!(x.measurement, "my m,x");
        assert_eq!(
            x.tags,
            vec![(s("t k=1"), s("v,a l=ue\\")), (s("u"), s("\\x"))]
        );
        assert_eq!(x.fields[0], (s("f=k"), Str(s("say \"hi\" \\ \\n"))));
        assert_eq!(x.fields[1], (s("b"), Bool(true)));
        assert!(parse_line("m c=-7u").is_err());
        assert_eq!(x.fields[2..], [(s("d"), Float(1000.0)), (s("e"), Int(-2))]);
        assert_eq!(x.timestamp, Some(-5));
        assert_eq!(p("m s=\"a,b c\" 9").fields, vec![(s("s"), Str(s("a,b c")))]);
        assert_eq!(p("m u=7u\r").fields, vec![(s("u"), UInt(7))]);
    }

    #[test]
    fn skips_blank_and_comment_lines_and_refuses_bad_ones() {
        assert_eq!(parse_line("").unwrap(), None);
        assert_eq!(parse_line("   \r").unwrap(), None);
        assert_eq!(parse_line("# a comment").unwrap(), None);
        for bad in [
            "m",
            "m ",
            "m,t=1",
            "m,t f=1",
            "m,=1 f=1",
            "m,t= f=1",
            "m,t=a=b f=1",
            ",t=1 f=1",
            "m f",
            "m f=",
            "m =1",
            "m f=1,",
            "m f=inf",
            "m f=NaN",
            "m f=1.2.3",
            "m f=abc",
            "m f=\"open",
            "m f=\"x\"y",
            "m f=1 12x",
            "m f=99999999999999999999i",
            "m f=1 1 2",
        ] {
            assert!(parse_line(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn raw_records_take_the_timestamp_in_its_precision() {
        let pt = p("incident,zone=13001 severity=3i,ts=\"ignored\" 1764338400123");
        let raw = raw_record(&pt, Precision::Ms, 0).unwrap();
        assert_eq!(raw.ts, Some(Scalar::Num(1_764_338_400.123)));
        assert_eq!(raw.severity, Some(Scalar::Num(3.0)));
        assert_eq!(raw.feed, Some(Scalar::Str(Cow::Borrowed("incident"))));
        let pt = p("incident,zone=13001 severity=3i");
        let raw = raw_record(&pt, Precision::Ns, 5_000_000).unwrap();
        assert_eq!(raw.ts, Some(Scalar::Num(5.0)));
        let pt = p("incident,ts=2026-11-28T14:00:00Z severity=3i");
        let raw = raw_record(&pt, Precision::Ns, 5_000_000).unwrap();
        assert_eq!(
            raw.ts,
            Some(Scalar::Str(Cow::Borrowed("2026-11-28T14:00:00Z")))
        );
        let pt = p("incident severity=3i 9223372036854775807");
        let e = raw_record(&pt, Precision::S, 0).unwrap_err();
        assert_eq!(e.field, Some("ts"));
        assert_eq!(Precision::Ns.to_us(-1), Some(-1));
    }
}
