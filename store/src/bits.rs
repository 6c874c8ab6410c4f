//! Bit-level writer and reader, most significant bit first.

/// Appends bits to a byte vector.
#[derive(Clone, Debug, Default)]
pub struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 when it is full or there is none).
    used: u8,
}

impl BitWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the `n` low bits of `value` (n ≤ 64), the highest of them first.
    pub fn write(&mut self, value: u64, n: u8) {
        debug_assert!(n <= 64);
        let mut left = n;
        while left > 0 {
            if self.used == 0 {
                self.bytes.push(0);
            }
            let free = 8 - self.used;
            let take = free.min(left);
            let shift = left - take;
            let chunk = ((value >> shift) & ((1u64 << take) - 1)) as u8;
            let last = self.bytes.last_mut().expect("pushed");
            *last |= chunk << (free - take);
            self.used = (self.used + take) % 8;
            left -= take;
        }
    }

    /// Appends one bit.
    pub fn bit(&mut self, b: bool) {
        self.write(b as u64, 1);
    }

    /// Bits written so far.
    pub fn len_bits(&self) -> usize {
        if self.used == 0 {
            self.bytes.len() * 8
        } else {
            (self.bytes.len() - 1) * 8 + self.used as usize
        }
    }

    /// The bytes, the last one padded with zero bits.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Reads bits from a byte slice.
#[derive(Clone, Debug)]
pub struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// A reader at the first bit of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        BitReader { bytes, pos: 0 }
    }

    /// Reads `n` bits (n ≤ 64) as the low bits of a number; `None` past the end.
    pub fn read(&mut self, n: u8) -> Option<u64> {
        if self.pos + n as usize > self.bytes.len() * 8 {
            return None;
        }
        let mut v = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = self.bytes[self.pos / 8];
            let offset = (self.pos % 8) as u8;
            let avail = 8 - offset;
            let take = avail.min(left);
            let chunk = (byte >> (avail - take)) & (((1u16 << take) - 1) as u8);
            v = if take == 64 {
                chunk as u64
            } else {
                (v << take) | chunk as u64
            };
            self.pos += take as usize;
            left -= take;
        }
        Some(v)
    }

    /// Reads one bit.
    pub fn bit(&mut self) -> Option<bool> {
        self.read(1).map(|b| b == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_fields_of_every_width() {
        let mut w = BitWriter::new();
        let fields: Vec<(u64, u8)> = (0..=64u8)
            .map(|n| {
                (
                    if n == 64 {
                        u64::MAX - 5
                    } else {
                        (1u64 << n) - 1 - (n as u64 % 3).min((1u64 << n).saturating_sub(1))
                    },
                    n,
                )
            })
            .collect();
        for (v, n) in &fields {
            w.write(*v, *n);
        }
        assert_eq!(w.len_bits(), (0..=64).sum::<usize>());
        let mut r = BitReader::new(w.bytes());
        for (v, n) in &fields {
            assert_eq!(r.read(*n), Some(*v), "width {n}");
        }
        assert!(r.read(8).is_none());
    }
}
