//! The dead-letter store: the latest rejected lines of live ingest, for operators to see what
//! a source sends wrong (`GET /api/v1/dead-letters`). Bounded (`ingest.dead_letters`): the
//! oldest are dropped and counted when it is full. It lives in memory; the counters of
//! [`super::metrics`] keep the totals.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Characters of the line kept as its sample.
pub const SAMPLE_CHARS: usize = 120;

/// One rejected line.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DeadLetter {
    /// When it was rejected (RFC 3339, UTC).
    pub time: String,
    /// The source that sent it.
    pub source: String,
    /// The route it came through (`/api/v1/records`, …).
    pub route: &'static str,
    /// Its line in the request body, from 1.
    pub line: u64,
    pub kind: &'static str,
    pub field: Option<String>,
    pub reason: String,
    /// The start of the line, as text (invalid UTF-8 replaced).
    pub sample: String,
}

/// The bounded store.
pub struct DeadLetters {
    capacity: usize,
    letters: Mutex<VecDeque<DeadLetter>>,
}

impl DeadLetters {
    /// A store of at most `capacity` letters.
    pub fn new(capacity: usize) -> DeadLetters {
        DeadLetters {
            capacity,
            letters: Mutex::new(VecDeque::with_capacity(capacity.min(1 << 16))),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds letters (oldest first); returns how many older ones were dropped to make room.
    pub fn push(&self, new: impl IntoIterator<Item = DeadLetter>) -> u64 {
        let mut letters = self.letters.lock().unwrap_or_else(|e| e.into_inner());
        let mut dropped = 0;
        for l in new {
            letters.push_back(l);
            while letters.len() > self.capacity {
                letters.pop_front();
                dropped += 1;
            }
        }
        dropped
    }

    /// The letters of `source` (all when `None`), newest first, at most `limit`.
    pub fn list(&self, source: Option<&str>, limit: usize) -> Vec<DeadLetter> {
        let letters = self.letters.lock().unwrap_or_else(|e| e.into_inner());
        letters
            .iter()
            .rev()
            .filter(|l| source.is_none_or(|s| l.source == s))
            .take(limit)
            .cloned()
            .collect()
    }
}

/// The sample of line `line` (from 1) of `body`: its first [`SAMPLE_CHARS`] characters.
pub fn sample(body: &[u8], line: u64) -> String {
    let Some(bytes) = body.split(|&b| b == b'\n').nth((line.max(1) - 1) as usize) else {
        return String::new();
    };
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    // Enough bytes for the characters kept, whatever their width.
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(SAMPLE_CHARS * 4)]);
    match text.char_indices().nth(SAMPLE_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.into_owned(),
    }
}

/// Samples of several lines of one body, found in one pass (`lines` ascending).
pub fn samples(body: &[u8], lines: &[u64]) -> Vec<String> {
    let mut out = Vec::with_capacity(lines.len());
    let mut rest = body;
    let mut current = 1u64;
    for &line in lines {
        while current < line {
            match rest.iter().position(|&b| b == b'\n') {
                Some(n) => {
                    rest = &rest[n + 1..];
                    current += 1;
                }
                None => break,
            }
        }
        out.push(if current == line {
            sample(rest, 1)
        } else {
            String::new()
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(source: &str, line: u64) -> DeadLetter {
        DeadLetter {
            time: String::new(),
            source: source.into(),
            route: "/api/v1/records",
            line,
            kind: "malformed",
            field: None,
            reason: String::new(),
            sample: String::new(),
        }
    }

    #[test]
    fn keeps_the_newest_and_counts_the_dropped() {
        let d = DeadLetters::new(3);
        assert_eq!(
            d.push((1..=5).map(|i| letter(if i % 2 == 0 { "a" } else { "b" }, i))),
            2
        );
        let lines: Vec<u64> = d.list(None, 10).iter().map(|l| l.line).collect();
        assert_eq!(lines, vec![5, 4, 3]);
        let lines: Vec<u64> = d.list(Some("b"), 1).iter().map(|l| l.line).collect();
        assert_eq!(lines, vec![5]);
        let none = DeadLetters::new(0);
        assert_eq!(none.push([letter("a", 1)]), 1);
        assert!(none.list(None, 10).is_empty());
    }

    #[test]
    fn samples_are_the_lines_cut_short() {
        let body = b"one\r\ntwo\n\xffthree\n".as_slice();
        assert_eq!(sample(body, 1), "one");
        assert_eq!(sample(body, 3), "\u{fffd}three");
        assert_eq!(sample(body, 9), "");
        assert_eq!(
            samples(body, &[1, 3, 3, 9]),
            vec!["one", "\u{fffd}three", "\u{fffd}three", ""]
        );
        let long = "é".repeat(500);
        assert_eq!(sample(long.as_bytes(), 1).chars().count(), SAMPLE_CHARS + 1);
    }
}
