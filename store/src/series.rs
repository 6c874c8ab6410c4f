//! Series keys: a measurement, its tags and one field name.

use std::fmt;

/// What identifies a series: the measurement, tag pairs sorted by key, and the field.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub field: String,
}

/// A key's bytes could not be read back.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("series key bytes are malformed")]
pub struct KeyDecodeError;

impl SeriesKey {
    /// A key; the tags are sorted by key here.
    pub fn new(
        measurement: impl Into<String>,
        tags: &[(&str, &str)],
        field: impl Into<String>,
    ) -> SeriesKey {
        let mut tags: Vec<(String, String)> = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tags.sort();
        SeriesKey {
            measurement: measurement.into(),
            tags,
            field: field.into(),
        }
    }

    /// The value of a tag.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// True when the key has this measurement and field, and every tag of `filter`.
    pub fn matches(&self, measurement: &str, filter: &[(&str, &str)], field: &str) -> bool {
        self.measurement == measurement
            && self.field == field
            && filter.iter().all(|(k, v)| self.tag(k) == Some(v))
    }

    /// The key's bytes: every string as `len:u16 · UTF-8`, in the order measurement, tag
    /// count (u16), each tag's key and value, field.
    pub fn encode(&self, out: &mut Vec<u8>) {
        Self::encode_prefix(&self.measurement, &self.tags, out);
        put_str(out, &self.field);
    }

    /// The bytes of a key's measurement and tags alone, as [`SeriesKey::encode`] starts.
    pub fn encode_prefix(measurement: &str, tags: &[(String, String)], out: &mut Vec<u8>) {
        put_str(out, measurement);
        out.extend_from_slice(&(tags.len() as u16).to_be_bytes());
        for (k, v) in tags {
            put_str(out, k);
            put_str(out, v);
        }
    }

    /// Reads a key written by [`SeriesKey::encode`]; returns it and the bytes read.
    pub fn decode(bytes: &[u8]) -> Result<(SeriesKey, usize), KeyDecodeError> {
        let mut pos = 0;
        let measurement = get_str(bytes, &mut pos)?;
        let n = get_u16(bytes, &mut pos)?;
        let mut tags = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let k = get_str(bytes, &mut pos)?;
            let v = get_str(bytes, &mut pos)?;
            tags.push((k, v));
        }
        let field = get_str(bytes, &mut pos)?;
        Ok((
            SeriesKey {
                measurement,
                tags,
                field,
            },
            pos,
        ))
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Keys longer than 65,535 bytes are cut at a character boundary; no real tag is that long.
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn get_u16(bytes: &[u8], pos: &mut usize) -> Result<u16, KeyDecodeError> {
    let b = bytes.get(*pos..*pos + 2).ok_or(KeyDecodeError)?;
    *pos += 2;
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

fn get_str(bytes: &[u8], pos: &mut usize) -> Result<String, KeyDecodeError> {
    let n = get_u16(bytes, pos)? as usize;
    let b = bytes.get(*pos..*pos + n).ok_or(KeyDecodeError)?;
    *pos += n;
    String::from_utf8(b.to_vec()).map_err(|_| KeyDecodeError)
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.measurement)?;
        for (k, v) in &self.tags {
            write!(f, ",{k}={v}")?;
        }
        write!(f, " {}", self.field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_their_tags() {
        let k = SeriesKey::new("indicator", &[("zone", "13001"), ("a", "é")], "risk_score");
        assert_eq!(k.tags[0].0, "a");
        let mut b = Vec::new();
        k.encode(&mut b);
        assert_eq!(SeriesKey::decode(&b), Ok((k.clone(), b.len())));
        assert_eq!(SeriesKey::decode(&b[..b.len() - 1]), Err(KeyDecodeError));
        assert_eq!(k.to_string(), "indicator,a=é,zone=13001 risk_score");
    }
}
