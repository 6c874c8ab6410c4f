//! Strict CSV text: rows out of a byte stream, each either read whole or refused with the line
//! it starts on, so that the counts of a reading always add up (every row of the text is one
//! accepted row or one refused row) and no damaged row can swallow the rows after it.
//!
//! The grammar is RFC 4180's, with these rules:
//! - a row is one line (`\n`, or `\r\n`); blank lines (only spaces, tabs or `\r`) are not rows;
//! - a cell that starts with `"` is quoted: it may hold the delimiter, doubled quotes (`""` is
//!   one `"`) and line breaks, and must end with `"` followed by the delimiter or the end of
//!   its line; a `"` inside an unquoted cell is plain text;
//! - a row has exactly as many cells as the header (when the width is known);
//! - a row is UTF-8 text, at most [`MAX_ROW_BYTES`] long (line breaks of quoted cells included);
//! - a UTF-8 byte-order mark before the first line is dropped.
//!
//! A quote that is never closed (the text ends, or the row grows past [`MAX_ROW_BYTES`]) or a
//! quote closed in the middle of a cell (`"ab"cd`) refuses the row *at its first line* only:
//! reading starts again at the next line, which is read as a row of its own. A quoted line
//! break is therefore read as one only when the row it opens ends well; text after an open
//! quote that happens to close it validly (`"a,b` then `"""c",d`) is valid CSV and is read as
//! one row, as any CSV reader would.
//!
//! Memory is bounded by [`MAX_ROW_BYTES`] (plus the lines of one refused row kept to be read
//! again), whatever the input.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};

/// The longest row read, in bytes (1 MiB): a longer one is refused (its bytes are skipped,
/// not kept).
pub const MAX_ROW_BYTES: usize = 1 << 20;

/// What [`StrictCsv::next_row`] read.
#[derive(Debug, PartialEq)]
pub enum Row {
    /// A row whose cells are now in the caller's record; `line` is the line it starts on.
    Cells { line: u64 },
    /// A row refused: the line it starts on and why (the reason never quotes the row).
    Bad { line: u64, reason: String },
    /// Reading failed altogether (an I/O error).
    Failed(String),
}

/// One physical line: its number and bytes (no line break), or too long to keep.
struct Line {
    number: u64,
    bytes: Vec<u8>,
    too_long: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    /// A `"` read inside a quoted cell: a doubled quote, or the cell's end.
    QuoteInQuoted,
}

/// A strict CSV reader over any byte stream (module docs).
pub struct StrictCsv<R> {
    input: BufReader<R>,
    delimiter: u8,
    /// Cells per row; `None` until a header (or the caller) sets it.
    width: Option<usize>,
    /// Lines to read before the input: those after the first line of a refused row.
    again: VecDeque<Line>,
    /// Physical lines read from the input so far.
    lines: u64,
    /// Whether the input ended.
    ended: bool,
    /// Cells of the row being read, as bytes, and where each ends in `cells`.
    cells: Vec<u8>,
    ends: Vec<usize>,
    /// The last line's buffer, reused for the next (one allocation per reader, not per line).
    spare: Vec<u8>,
}

impl<R: Read> StrictCsv<R> {
    /// A reader of `input` with cells separated by `delimiter`; rows may have any width until
    /// [`StrictCsv::set_width`].
    pub fn new(input: R, delimiter: u8) -> Self {
        StrictCsv {
            input: BufReader::with_capacity(1 << 16, input),
            delimiter,
            width: None,
            again: VecDeque::new(),
            lines: 0,
            ended: false,
            cells: Vec::new(),
            ends: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// Every row read from now on must have `width` cells.
    pub fn set_width(&mut self, width: usize) {
        self.width = Some(width);
    }

    /// The next physical line, at most [`MAX_ROW_BYTES`] of it kept; `None` at the end.
    fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        if let Some(line) = self.again.pop_front() {
            return Ok(Some(line));
        }
        if self.ended {
            return Ok(None);
        }
        let mut bytes = std::mem::take(&mut self.spare);
        bytes.clear();
        let mut too_long = false;
        let mut any = false;
        loop {
            let buf = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                self.ended = true;
                break;
            }
            any = true;
            let (take, done) = match memchr::memchr(b'\n', buf) {
                Some(i) => (i, true),
                None => (buf.len(), false),
            };
            if !too_long {
                if bytes.len() + take > MAX_ROW_BYTES {
                    too_long = true;
                    bytes = Vec::new();
                } else {
                    bytes.extend_from_slice(&buf[..take]);
                }
            }
            self.input.consume(take + done as usize);
            if done {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        self.lines += 1;
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        if self.lines == 1 && bytes.starts_with(b"\xef\xbb\xbf") {
            bytes.drain(..3);
        }
        Ok(Some(Line {
            number: self.lines,
            bytes,
            too_long,
        }))
    }

    /// The common row, read in place: a whole line already in the input's buffer, with no
    /// quote, that is UTF-8 text and not blank. Its cells go from the buffer to `out` in one
    /// copy, where the general path copies the line, then its cells, then the record. `None`
    /// (nothing consumed) for any other line, which the general path then reads: the two agree
    /// on every line the fast one takes, since without a quote a line is exactly its cells
    /// split at the delimiter.
    fn next_plain_row(&mut self, out: &mut csv::StringRecord) -> Option<Row> {
        // The first line may start with a byte-order mark; lines read again come first.
        if self.lines == 0 || !self.again.is_empty() || self.ended || !self.delimiter.is_ascii() {
            return None;
        }
        let buf = self.input.fill_buf().ok()?;
        let end = memchr::memchr(b'\n', buf)?;
        let mut bytes = &buf[..end];
        if bytes.last() == Some(&b'\r') {
            bytes = &bytes[..bytes.len() - 1];
        }
        // Where the cells end, in one pass that also finds any quote.
        self.ends.clear();
        for i in memchr::memchr2_iter(self.delimiter, b'"', bytes) {
            if bytes[i] == b'"' {
                return None;
            }
            self.ends.push(i);
        }
        if is_blank(bytes) {
            return None;
        }
        let text = std::str::from_utf8(bytes).ok()?;
        self.ends.push(text.len());
        let line = self.lines + 1;
        let row = wrong_width(self.width, self.ends.len(), line)
            .unwrap_or_else(|| record(out, text, &self.ends, 1, line));
        self.input.consume(end + 1);
        self.lines = line;
        Some(row)
    }

    /// Reads the next row into `out` (its cells and position); `None` at the end of the text.
    pub fn next_row(&mut self, out: &mut csv::StringRecord) -> Option<Row> {
        if let Some(row) = self.next_plain_row(out) {
            return Some(row);
        }
        let first = loop {
            match self.next_line() {
                Err(e) => return Some(Row::Failed(e.to_string())),
                Ok(None) => return None,
                Ok(Some(l)) if !l.too_long && is_blank(&l.bytes) => continue,
                Ok(Some(l)) => break l,
            }
        };
        let line = first.number;
        if first.too_long {
            return Some(bad(line, format!("longer than {MAX_ROW_BYTES} bytes")));
        }
        self.cells.clear();
        self.ends.clear();
        let mut state = State::FieldStart;
        let mut size = first.bytes.len();
        // The lines of a row whose quoted cell holds line breaks, but the one being read: all
        // but the first are read again as rows of their own if the row turns out bad.
        let mut more: Vec<Line> = Vec::new();
        let mut current = first;
        loop {
            if let Err(reason) = self.scan(&current.bytes, &mut state) {
                let reason = if more.is_empty() {
                    reason
                } else {
                    format!(
                        "a quote opened on this line is not closed properly (on line {}, {reason})",
                        current.number
                    )
                };
                more.push(current);
                self.read_again(more);
                return Some(bad(line, reason));
            }
            if state != State::Quoted {
                break;
            }
            let next = match self.next_line() {
                Err(e) => return Some(Row::Failed(e.to_string())),
                Ok(n) => n,
            };
            let next = match next {
                Some(n) if !n.too_long && size + 1 + n.bytes.len() <= MAX_ROW_BYTES => n,
                n => {
                    let reason = match &n {
                        None => "a quote opened on this line is never closed".to_string(),
                        Some(_) => format!(
                            "a quote opened on this line is not closed within {MAX_ROW_BYTES} bytes"
                        ),
                    };
                    more.push(current);
                    more.extend(n);
                    self.read_again(more);
                    return Some(bad(line, reason));
                }
            };
            size += 1 + next.bytes.len();
            self.cells.push(b'\n');
            more.push(std::mem::replace(&mut current, next));
        }
        self.ends.push(self.cells.len());
        if more.is_empty() {
            self.spare = current.bytes;
        }
        if let Some(wrong) = wrong_width(self.width, self.ends.len(), line) {
            return Some(wrong);
        }
        let text = match std::str::from_utf8(&self.cells) {
            Ok(t) => t,
            Err(e) => return Some(bad(line, format!("not UTF-8 text: {e}"))),
        };
        Some(record(out, text, &self.ends, 0, line))
    }

    /// Puts the lines after a refused row's first back in front of the input, in order.
    fn read_again(&mut self, more: Vec<Line>) {
        // The first of `more` is the refused row's first line, already answered for.
        for l in more.into_iter().skip(1).rev() {
            self.again.push_front(l);
        }
    }

    /// Reads one line's bytes on from `state`, cells into `self.cells`: runs of plain bytes are
    /// copied whole, up to the next delimiter (unquoted) or quote (quoted).
    fn scan(&mut self, bytes: &[u8], state: &mut State) -> Result<(), String> {
        let mut i = 0;
        while i < bytes.len() {
            match *state {
                State::FieldStart if bytes[i] == b'"' => {
                    *state = State::Quoted;
                    i += 1;
                }
                State::FieldStart | State::Unquoted => {
                    let rest = &bytes[i..];
                    let run = rest
                        .iter()
                        .position(|&b| b == self.delimiter)
                        .unwrap_or(rest.len());
                    self.cells.extend_from_slice(&rest[..run]);
                    i += run;
                    if i < bytes.len() {
                        self.ends.push(self.cells.len());
                        *state = State::FieldStart;
                        i += 1;
                    } else {
                        *state = State::Unquoted;
                    }
                }
                State::Quoted => {
                    let rest = &bytes[i..];
                    let run = rest.iter().position(|&b| b == b'"').unwrap_or(rest.len());
                    self.cells.extend_from_slice(&rest[..run]);
                    i += run;
                    if i < bytes.len() {
                        *state = State::QuoteInQuoted;
                        i += 1;
                    }
                }
                State::QuoteInQuoted => {
                    match bytes[i] {
                        b'"' => {
                            self.cells.push(b'"');
                            *state = State::Quoted;
                        }
                        d if d == self.delimiter => {
                            self.ends.push(self.cells.len());
                            *state = State::FieldStart;
                        }
                        _ => {
                            return Err("a quoted cell goes on after its closing quote (a quote \
                                        inside one must be doubled)"
                                .into())
                        }
                    }
                    i += 1;
                }
            }
        }
        Ok(())
    }
}

/// The refusal of a row of `cells` cells at `line` when the header has another width.
fn wrong_width(width: Option<usize>, cells: usize, line: u64) -> Option<Row> {
    let w = width?;
    (cells != w).then(|| bad(line, format!("{cells} cells where the header has {w}")))
}

/// Puts a row's cells in `out`: the cells of `text` that end at `ends`, each followed by `gap`
/// bytes (1 for a line's delimiter, 0 for cells already taken out of their line).
fn record(out: &mut csv::StringRecord, text: &str, ends: &[usize], gap: usize, line: u64) -> Row {
    out.clear();
    let mut start = 0;
    for &end in ends {
        out.push_field(&text[start..end]);
        start = end + gap;
    }
    let mut position = csv::Position::new();
    position.set_line(line);
    out.set_position(Some(position));
    Row::Cells { line }
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r'))
}

fn bad(line: u64, reason: String) -> Row {
    Row::Bad {
        line,
        reason: format!("bad CSV row: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Accepted rows (line, cells) and refused ones (line, reason).
    type Read = (Vec<(u64, Vec<String>)>, Vec<(u64, String)>);

    /// Rows of `text` read with width `width`: cells of accepted rows, lines of refused ones.
    fn read(text: &[u8], width: usize) -> Read {
        read_from(text, width)
    }

    /// The same, from any reader.
    fn read_from(text: impl std::io::Read, width: usize) -> Read {
        let mut rdr = StrictCsv::new(text, b',');
        rdr.set_width(width);
        let mut row = csv::StringRecord::new();
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        while let Some(next) = rdr.next_row(&mut row) {
            match next {
                Row::Cells { line } => good.push((line, row.iter().map(String::from).collect())),
                Row::Bad { line, reason } => bad.push((line, reason)),
                Row::Failed(e) => panic!("{e}"),
            }
        }
        (good, bad)
    }

    /// A reader that gives at most `.1` bytes a read.
    struct Chunked<'a>(&'a [u8], usize);

    impl std::io::Read for Chunked<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn cells(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_unterminated_quote_refuses_its_row_and_only_it() {
        // The report of issue 19: 7 rows, 3 of them good; every other one is refused.
        let text = b"1,a,x\n2,\"b,y\n3,c,z\n4,d\n5,e,w,extra\n6,\"f\"g,v\n7,h,u\n";
        let (good, bad) = read(text, 3);
        assert_eq!(
            good,
            vec![
                (1, cells(&["1", "a", "x"])),
                (3, cells(&["3", "c", "z"])),
                (7, cells(&["7", "h", "u"])),
            ]
        );
        let lines: Vec<u64> = bad.iter().map(|b| b.0).collect();
        assert_eq!(lines, vec![2, 4, 5, 6], "{bad:?}");
        // Line 6's quote ends the cell opened on line 2 in its middle: line 2 is refused.
        assert!(bad[0].1.contains("opened on this line"), "{bad:?}");
        assert!(
            bad[1].1.contains("2 cells where the header has 3"),
            "{bad:?}"
        );
        assert!(bad[2].1.contains("4 cells"), "{bad:?}");
        assert!(bad[3].1.contains("closing quote"), "{bad:?}");
    }

    #[test]
    fn quoted_line_breaks_doubled_quotes_crlf_and_a_bom_are_read() {
        let text = b"\xef\xbb\xbf\"a\",b\r\n\"x\ny\",\"say \"\"hi\"\"\"\r\n\n  \nq,\"\"\n";
        let (good, bad) = read(text, 2);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(
            good,
            vec![
                (1, cells(&["a", "b"])),
                (2, cells(&["x\ny", "say \"hi\""])),
                (6, cells(&["q", ""])),
            ]
        );
    }

    #[test]
    fn a_row_too_long_is_refused_without_being_kept() {
        let mut text = b"a,b\n".to_vec();
        text.extend(std::iter::repeat_n(b'z', MAX_ROW_BYTES + 10));
        text.extend_from_slice(b",1\n\"open");
        text.extend(std::iter::repeat_n(b'\n', 3));
        text.extend(std::iter::repeat_n(b'y', MAX_ROW_BYTES));
        text.extend_from_slice(b"\nc,d\n");
        let (good, bad) = read(&text, 2);
        assert_eq!(good, vec![(1, cells(&["a", "b"])), (7, cells(&["c", "d"]))]);
        let lines: Vec<u64> = bad.iter().map(|b| b.0).collect();
        // Line 2 is too long; line 3 opens a quote that runs past the limit on line 6, which
        // is then a row of its own: one cell, too long for the header as well as a row.
        assert_eq!(lines, vec![2, 3, 6], "{bad:?}");
        assert!(bad[0].1.contains("longer than"), "{bad:?}");
        assert!(bad[1].1.contains("not closed within"), "{bad:?}");
        assert!(bad.iter().all(|b| b.1.len() < 200), "{bad:?}");
    }

    #[test]
    fn text_that_is_not_utf8_is_one_bad_row() {
        let (good, bad) = read(b"a,\xff\nb,c\n", 2);
        assert_eq!(good, vec![(2, cells(&["b", "c"]))]);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].1.contains("UTF-8"), "{bad:?}");
    }

    /// A cell: text that may hold the delimiter, quotes and spaces, never empty nor starting
    /// with a quote (a row whose open quote is followed by text that closes it validly is
    /// valid CSV, see the module docs).
    fn cell() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9 ,\"]{0,6}"
    }

    fn encode(cell: &str) -> String {
        if cell.contains([',', '"', '\n']) || cell.starts_with(' ') {
            format!("\"{}\"", cell.replace('"', "\"\""))
        } else {
            cell.to_string()
        }
    }

    /// How a row is damaged: not at all, one cell missing, one too many, a quote opened and
    /// never closed, a byte that is not UTF-8.
    #[derive(Debug, Clone, Copy)]
    enum Damage {
        None,
        Missing,
        Extra,
        OpenQuote,
        NotUtf8,
    }

    fn damage() -> impl Strategy<Value = Damage> {
        prop_oneof![
            3 => Just(Damage::None),
            1 => Just(Damage::Missing),
            1 => Just(Damage::Extra),
            1 => Just(Damage::OpenQuote),
            1 => Just(Damage::NotUtf8),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

        /// For random rows with random damage, every row is accepted or refused once:
        /// accepted + refused = rows; the undamaged ones are accepted with their cells, the
        /// damaged ones refused with their line.
        #[test]
        fn every_row_is_accepted_or_refused_once(
            width in 2usize..5,
            rows in proptest::collection::vec(
                (proptest::collection::vec(cell(), 5), damage(), 0usize..5), 0..40),
            crlf in any::<bool>(),
            chunk in 1usize..12,
        ) {
            let mut text = Vec::new();
            let mut want_good = Vec::new();
            let mut want_bad = Vec::new();
            for (i, (cs, dmg, at)) in rows.iter().enumerate() {
                let line = i as u64 + 1;
                let mut cs: Vec<String> = cs[..width].to_vec();
                let at = at % width;
                let mut encoded: Vec<String> = cs.iter().map(|c| encode(c)).collect();
                match dmg {
                    Damage::None => want_good.push((line, std::mem::take(&mut cs))),
                    Damage::Missing => { encoded.remove(at); }
                    Damage::Extra => encoded.insert(at, "more".into()),
                    Damage::OpenQuote => {
                        encoded[at] = format!("\"{}", cs[at].replace('"', "\"\""));
                    }
                    Damage::NotUtf8 => encoded[at].push('\u{1}'),
                }
                if !matches!(dmg, Damage::None) {
                    want_bad.push(line);
                }
                let mut bytes = encoded.join(",").into_bytes();
                if let Damage::NotUtf8 = dmg {
                    let p = bytes.iter().position(|&b| b == 1).unwrap();
                    bytes[p] = 0xfe;
                }
                text.extend_from_slice(&bytes);
                text.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            }
            let (good, bad) = read(&text, width);
            // Read a few bytes at a time, lines straddle the buffer's end, and rows whose
            // lines are whole in it go the fast way or not: the same rows and reasons.
            let chunked = read_from(Chunked(&text, chunk), width);
            prop_assert_eq!(&chunked, &(good.clone(), bad.clone()));
            prop_assert_eq!(good.len() + bad.len(), rows.len());
            prop_assert_eq!(good, want_good);
            prop_assert_eq!(bad.into_iter().map(|b| b.0).collect::<Vec<_>>(), want_bad);
        }
    }
}
