//! Gorilla chunks: one series' points, `(timestamp in ms, f64)`, compressed.
//!
//! Timestamps are delta-of-delta coded in buckets widened for milliseconds; values are XOR-ed
//! with the previous value and only the meaningful bits are kept. A regular hourly series with a
//! slowly changing value costs a couple of bits a point. See `store/FORMAT.md` for the bytes.

use crate::bits::{BitReader, BitWriter};

/// Delta-of-delta buckets: (prefix, prefix length, payload bits).
const BUCKETS: [(u64, u8, u8); 3] = [(0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20)];
/// Integer-delta buckets (zigzag payload): after `0` (no change), `10`, `110`, `1110`, `11110`;
/// `11111` is followed by all 64 bits.
const INT_BUCKETS: [(u64, u8, u8); 4] = [
    (0b10, 2, 6),
    (0b110, 3, 9),
    (0b1110, 4, 13),
    (0b11110, 5, 20),
];

/// How a chunk codes its values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Values {
    /// Gorilla's XOR of consecutive floats: any f64, bit for bit.
    #[default]
    Xor,
    /// The zigzag difference of consecutive integers: for values that are all integral
    /// ([`integral`]); much smaller for counts that move by a few units or hundreds.
    Int,
}

/// True when `v` survives `v as i64 as f64` bit for bit: a whole number of magnitude below
/// 2^53, and not −0.0.
pub fn integral(v: f64) -> bool {
    v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 && !(v == 0.0 && v.is_sign_negative())
}

fn zigzag(d: i64) -> u64 {
    ((d << 1) ^ (d >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

/// A chunk that could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("chunk truncated at point {0}")]
    Truncated(u32),
    #[error("chunk shorter than its 5-byte header")]
    NoHeader,
    #[error("chunk value coding {0} is unknown")]
    UnknownCoding(u8),
}

/// Appends points to a chunk.
#[derive(Clone, Debug, Default)]
pub struct ChunkEncoder {
    bits: BitWriter,
    values: Values,
    count: u32,
    prev_ts: i64,
    prev_delta: i64,
    prev_value: u64,
    /// Leading and trailing zeros of the last stored XOR window.
    window: Option<(u8, u8)>,
}

fn fits(v: i64, bits: u8) -> bool {
    let half = 1i64 << (bits - 1);
    (-half..half).contains(&v)
}

impl ChunkEncoder {
    /// An empty chunk of floats (XOR coding).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty chunk with the given value coding; with [`Values::Int`], every value pushed
    /// must be [`integral`].
    pub fn with_values(values: Values) -> Self {
        ChunkEncoder {
            values,
            ..Self::default()
        }
    }

    /// Points in the chunk.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// True when the chunk holds no point.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a point. Timestamps may go back (the delta is signed); the store keeps them
    /// ascending.
    pub fn push(&mut self, ts_ms: i64, value: f64) {
        let bits = match self.values {
            Values::Xor => value.to_bits(),
            Values::Int => {
                debug_assert!(integral(value), "{value} in an integer chunk");
                value as i64 as u64
            }
        };
        if self.count == 0 {
            self.bits.write(ts_ms as u64, 64);
            self.bits.write(bits, 64);
        } else {
            let delta = ts_ms.wrapping_sub(self.prev_ts);
            self.write_dod(delta.wrapping_sub(self.prev_delta));
            self.prev_delta = delta;
            match self.values {
                Values::Xor => self.write_value(bits),
                Values::Int => self.write_int(bits),
            }
        }
        self.prev_ts = ts_ms;
        self.prev_value = bits;
        self.count += 1;
    }

    fn write_dod(&mut self, dod: i64) {
        if dod == 0 {
            self.bits.bit(false);
            return;
        }
        for (prefix, plen, width) in BUCKETS {
            if fits(dod, width) {
                self.bits.write(prefix, plen);
                self.bits.write(dod as u64 & ((1u64 << width) - 1), width);
                return;
            }
        }
        self.bits.write(0b1111, 4);
        self.bits.write(dod as u64, 64);
    }

    fn write_int(&mut self, bits: u64) {
        let z = zigzag((bits as i64).wrapping_sub(self.prev_value as i64));
        if z == 0 {
            self.bits.bit(false);
            return;
        }
        for (prefix, plen, width) in INT_BUCKETS {
            if z < 1u64 << width {
                self.bits.write(prefix, plen);
                self.bits.write(z, width);
                return;
            }
        }
        self.bits.write(0b11111, 5);
        self.bits.write(z, 64);
    }

    fn write_value(&mut self, bits: u64) {
        let xor = bits ^ self.prev_value;
        if xor == 0 {
            self.bits.bit(false);
            return;
        }
        self.bits.bit(true);
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if let Some((pl, pt)) = self.window {
            if leading >= pl && trailing >= pt {
                self.bits.bit(false);
                let len = 64 - pl - pt;
                self.bits.write(xor >> pt, len);
                return;
            }
        }
        let len = 64 - leading - trailing;
        self.bits.bit(true);
        self.bits.write(leading as u64, 5);
        // 64 meaningful bits are written as 0 in six bits.
        self.bits.write((len % 64) as u64, 6);
        self.bits.write(xor >> trailing, len);
        self.window = Some((leading, trailing));
    }

    /// The chunk's bytes: the point count (4 bytes, big-endian), the value coding (one byte:
    /// 0 XOR, 1 integer), then the bit stream.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.bits.bytes().len());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.push(match self.values {
            Values::Xor => 0,
            Values::Int => 1,
        });
        out.extend_from_slice(self.bits.bytes());
        out
    }

    /// Size of the chunk in bytes.
    pub fn size_bytes(&self) -> usize {
        5 + self.bits.bytes().len()
    }
}

/// Reads the points of a chunk back.
pub struct ChunkDecoder<'a> {
    bits: BitReader<'a>,
    values: Values,
    count: u32,
    read: u32,
    prev_ts: i64,
    prev_delta: i64,
    prev_value: u64,
    window: (u8, u8),
}

impl<'a> ChunkDecoder<'a> {
    /// A decoder over a chunk's bytes, as [`ChunkEncoder::to_bytes`] gives them.
    pub fn new(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let header: [u8; 4] = bytes
            .get(..4)
            .ok_or(DecodeError::NoHeader)?
            .try_into()
            .expect("four bytes");
        let values = match bytes.get(4) {
            None => return Err(DecodeError::NoHeader),
            Some(0) => Values::Xor,
            Some(1) => Values::Int,
            Some(&c) => return Err(DecodeError::UnknownCoding(c)),
        };
        Ok(ChunkDecoder {
            bits: BitReader::new(&bytes[5..]),
            values,
            count: u32::from_be_bytes(header),
            read: 0,
            prev_ts: 0,
            prev_delta: 0,
            prev_value: 0,
            window: (0, 0),
        })
    }

    fn next_point(&mut self) -> Option<(i64, f64)> {
        let b = &mut self.bits;
        if self.read == 0 {
            self.prev_ts = b.read(64)? as i64;
            self.prev_value = b.read(64)?;
        } else {
            let dod = if !b.bit()? {
                0
            } else {
                // The prefixes are unary: `10`, `110`, `1110`, then `1111` for a raw 64 bits.
                let mut ones = 1;
                while ones < 4 && b.bit()? {
                    ones += 1;
                }
                match BUCKETS.get(ones - 1) {
                    Some(&(_, _, width)) => {
                        let raw = b.read(width)?;
                        let shift = 64 - width as u32;
                        ((raw << shift) as i64) >> shift
                    }
                    None => b.read(64)? as i64,
                }
            };
            self.prev_delta = self.prev_delta.wrapping_add(dod);
            self.prev_ts = self.prev_ts.wrapping_add(self.prev_delta);
            if self.values == Values::Int {
                if b.bit()? {
                    let mut ones = 1;
                    while ones < 5 && b.bit()? {
                        ones += 1;
                    }
                    let z = match INT_BUCKETS.get(ones - 1) {
                        Some(&(_, _, width)) => b.read(width)?,
                        None => b.read(64)?,
                    };
                    self.prev_value = (self.prev_value as i64).wrapping_add(unzigzag(z)) as u64;
                }
            } else if b.bit()? {
                if b.bit()? {
                    let leading = b.read(5)? as u8;
                    let len = match b.read(6)? as u8 {
                        0 => 64,
                        l => l,
                    };
                    if leading as u32 + len as u32 > 64 {
                        return None;
                    }
                    self.window = (leading, 64 - leading - len);
                }
                let (l, t) = self.window;
                let len = 64 - l - t;
                let xor = b.read(len)? << t;
                self.prev_value ^= xor;
            }
        }
        self.read += 1;
        let value = match self.values {
            Values::Xor => f64::from_bits(self.prev_value),
            Values::Int => self.prev_value as i64 as f64,
        };
        Some((self.prev_ts, value))
    }
}

impl Iterator for ChunkDecoder<'_> {
    type Item = Result<(i64, f64), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.read >= self.count {
            return None;
        }
        let at = self.read;
        match self.next_point() {
            Some(p) => Some(Ok(p)),
            None => {
                self.read = self.count;
                Some(Err(DecodeError::Truncated(at)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(points: &[(i64, f64)]) -> Vec<(i64, f64)> {
        let mut enc = ChunkEncoder::new();
        for (t, v) in points {
            enc.push(*t, *v);
        }
        ChunkDecoder::new(&enc.to_bytes())
            .unwrap()
            .map(|p| p.unwrap())
            .collect()
    }

    #[test]
    fn an_hourly_series_costs_bits_not_bytes_per_point() {
        let start = 1_764_338_400_000i64;
        let points: Vec<(i64, f64)> = (0..889)
            .map(|i| (start + i * 3_600_000, if i % 24 < 8 { 0.0 } else { 12.5 }))
            .collect();
        let mut enc = ChunkEncoder::new();
        for (t, v) in &points {
            enc.push(*t, *v);
        }
        assert_eq!(round_trip(&points), points);
        let per_point = enc.size_bytes() as f64 / points.len() as f64;
        assert!(per_point < 0.5, "{per_point} bytes a point");
    }

    #[test]
    fn every_bucket_and_odd_values_round_trip() {
        let pts = vec![
            (0, 1.0),
            (10, f64::NAN),
            (20, -0.0),
            (30 + 8_000, f64::INFINITY),
            (30 + 8_000 + 70_000, f64::MIN_POSITIVE),
            (i64::MAX, 1e308),
            (i64::MIN, -1e-308),
            (5, 5.0),
            (5, 5.0),
        ];
        let back = round_trip(&pts);
        assert_eq!(back.len(), pts.len());
        for ((t, v), (bt, bv)) in pts.iter().zip(&back) {
            assert_eq!((t, v.to_bits()), (bt, bv.to_bits()));
        }
    }

    #[test]
    fn truncated_chunks_are_errors_not_panics() {
        let mut enc = ChunkEncoder::new();
        for i in 0..100 {
            enc.push(i * 1000 + (i * i) % 7, (i as f64).sqrt());
        }
        let bytes = enc.to_bytes();
        for cut in 0..bytes.len() {
            match ChunkDecoder::new(&bytes[..cut]) {
                Err(e) => assert_eq!(e, DecodeError::NoHeader),
                Ok(dec) => {
                    let results: Vec<_> = dec.collect();
                    assert!(results.len() <= 100);
                }
            }
        }
        assert_eq!(
            ChunkDecoder::new(&bytes)
                .unwrap()
                .filter(|p| p.is_ok())
                .count(),
            100
        );
    }
}
