//! The raw, untyped form of a record: each known field as a scalar, before validation.
//! NDJSON lines deserialize into it without building a JSON tree; mapped CSV rows are
//! assembled into it. [`crate::validate`] turns it into a [`vigie_model::Record`].

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use vigie_config::privacy::FIELDS;

/// Characters of a value a reason quotes; a longer value is cut there ([`quote`]).
pub const QUOTE_CHARS: usize = 40;

/// `text` quoted for a reason: whole when it is short, else its first [`QUOTE_CHARS`]
/// characters and its length (`"abc…" (4194304 bytes)`), so that a reason stays short
/// whatever a line holds.
pub fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS) {
        None => format!("{text:?}"),
        Some((i, _)) => {
            let cut = format!("{}…", &text[..i]);
            format!("{cut:?} ({} bytes)", text.len())
        }
    }
}

/// A number for a reason: as written when it is of a usual size, in scientific notation when
/// it is huge or tiny (`1e308`, not its 309 digits).
pub fn number_text(x: f64) -> String {
    if x != 0.0 && !(1e-6..1e15).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

/// One JSON scalar (objects and arrays are kept only as their kind, to be reported).
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar<'a> {
    Num(f64),
    Str(Cow<'a, str>),
    Bool(bool),
    Null,
    /// An array or an object, where a scalar was expected. Arrays of two numbers are kept as
    /// a point for `[lon, lat]` columns.
    Pair(f64, f64),
    Nested(&'static str),
}

impl Scalar<'_> {
    /// How the value is described in error messages.
    pub fn describe(&self) -> String {
        match self {
            Scalar::Num(n) => number_text(*n),
            Scalar::Str(s) => quote(s),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Null => "null".into(),
            Scalar::Pair(a, b) => format!("[{a}, {b}]"),
            Scalar::Nested(k) => format!("an {k}"),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut nums = Vec::new();
                let mut all_nums = true;
                while let Some(v) = seq.next_element::<Scalar<'de>>()? {
                    match v {
                        Scalar::Num(n) => nums.push(n),
                        _ => all_nums = false,
                    }
                }
                Ok(if all_nums && nums.len() == 2 {
                    Scalar::Pair(nums[0], nums[1])
                } else {
                    Scalar::Nested("array")
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Nested("object"))
            }
        }
        d.deserialize_any(V)
    }
}

/// The known fields of a record, each as found (or absent). Unknown fields are ignored.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct RawRecord<'a> {
    #[serde(borrow)]
    pub feed: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub ts: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub source: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub status: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub zone: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub lat: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub lon: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub severity: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub category: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub people: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub sensor: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub start: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub end: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub attendance: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub kind: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub temperature_c: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub precip_mm: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub wind_kmh: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub issued_at: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub agents: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub volume: Option<Scalar<'a>>,
}

impl<'a> RawRecord<'a> {
    /// The slot of a field by its name.
    pub fn slot(&mut self, name: &str) -> Option<&mut Option<Scalar<'a>>> {
        Self::slot_index(name).map(|i| self.slot_at(i))
    }

    /// The index of a field's slot, for [`RawRecord::slot_at`]: a mapped CSV field finds its
    /// slot once, when the mapping is compiled, not once per row.
    pub fn slot_index(name: &str) -> Option<usize> {
        FIELDS.iter().position(|n| *n == name)
    }

    /// The slot at `index` (from [`RawRecord::slot_index`]): the slot of `FIELDS[index]`.
    ///
    /// # Panics
    /// If `index` is not below the number of slots.
    pub fn slot_at(&mut self, index: usize) -> &mut Option<Scalar<'a>> {
        match index {
            0 => &mut self.feed,
            1 => &mut self.ts,
            2 => &mut self.source,
            3 => &mut self.id,
            4 => &mut self.status,
            5 => &mut self.zone,
            6 => &mut self.lat,
            7 => &mut self.lon,
            8 => &mut self.severity,
            9 => &mut self.category,
            10 => &mut self.people,
            11 => &mut self.sensor,
            12 => &mut self.start,
            13 => &mut self.end,
            14 => &mut self.attendance,
            15 => &mut self.kind,
            16 => &mut self.temperature_c,
            17 => &mut self.precip_mm,
            18 => &mut self.wind_kmh,
            19 => &mut self.issued_at,
            20 => &mut self.agents,
            21 => &mut self.volume,
            _ => panic!("no field slot {index}"),
        }
    }
}

/// `s` without leading and trailing whitespace, as [`str::trim`] (Unicode's White_Space), but
/// without looking at any character when `s` starts and ends with printable ASCII, as
/// nearly every cell and value does: the parsers call it on every field of every record.
#[inline]
pub fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(z)) if a.is_ascii_graphic() && z.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

/// Parses one NDJSON line into its raw fields.
pub fn parse_json_line(line: &str) -> Result<RawRecord<'_>, String> {
    if !line.trim_start().starts_with('{') {
        return Err("malformed JSON: a record is a JSON object".to_string());
    }
    let mut de = serde_json::Deserializer::from_str(line);
    let raw = match RawRecord::deserialize(&mut de) {
        Ok(r) => r,
        Err(e) => return Err(format!("malformed JSON: {e}")),
    };
    de.end().map_err(|e| format!("malformed JSON: {e}"))?;
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `slot_at(slot_index(name))` is the field named `name`, for every field of the format.
    #[test]
    fn every_field_name_finds_its_own_slot() {
        for name in FIELDS {
            let line = format!("{{\"{name}\": \"x\"}}");
            let mut raw = parse_json_line(&line).unwrap();
            let i = RawRecord::slot_index(name).unwrap();
            for (j, other) in FIELDS.iter().enumerate() {
                assert_eq!(
                    raw.slot_at(j).is_some(),
                    i == j,
                    "{name} read from JSON, slot of {other}"
                );
            }
        }
        assert_eq!(RawRecord::slot_index("colour"), None);
    }
}
