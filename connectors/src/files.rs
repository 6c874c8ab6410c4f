//! File replay: NDJSON files in the record format, and CSV files through a mapping, read as
//! one stream of validated records or rejections with their file and line.
//!
//! Arrival order is the order of the inputs and of their lines: record `seq` is
//! `(input index << 40) | line`. A reader can take a share of the lines (`index` of `peers`),
//! so that every timely worker parses its own part of the same files and the `seq`s stay
//! global.

use crate::csvtext::StrictCsv;
use crate::mapped::CompiledMapping;
use crate::validate::{parse_ndjson_line, RecordError};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use vigie_config::Config;
use vigie_model::Record;

/// One input of a replay.
#[derive(Clone, Debug, PartialEq)]
pub struct InputSpec {
    /// A file, or `None` for the embedded sample.
    pub path: Option<PathBuf>,
    /// The mapping that reads it (CSV), or `None` for NDJSON.
    pub mapping: Option<String>,
}

impl InputSpec {
    /// Parses `--input` values: `PATH` (NDJSON, or CSV when the configuration has exactly one
    /// mapping) or `MAPPING=PATH`.
    pub fn parse(arg: &str, config: &Config) -> Result<InputSpec, String> {
        let (mapping, path) = match arg.split_once('=') {
            Some((m, p)) if config.mappings.contains_key(m) => (Some(m.to_string()), p),
            Some((m, _)) if !std::path::Path::new(arg).exists() => {
                return Err(format!(
                    "--input {arg}: no mapping {m:?} in {} (it has: {})",
                    config.origin,
                    config
                        .mappings
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
            _ => (None, arg),
        };
        let lower = path.to_ascii_lowercase();
        let is_csv = lower.ends_with(".csv") || lower.ends_with(".zip");
        let mapping = match (mapping, is_csv) {
            (Some(m), _) => Some(m),
            (None, false) => None,
            (None, true) if config.mappings.len() == 1 => config.mappings.keys().next().cloned(),
            (None, true) => {
                return Err(format!(
                "--input {arg}: a CSV file needs a mapping, as MAPPING={arg} (mappings in {}: {})",
                config.origin,
                config
                    .mappings
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            }
        };
        Ok(InputSpec {
            path: Some(PathBuf::from(path)),
            mapping,
        })
    }

    /// The embedded sample (VPD incidents of December 2020 through the `vancouver_crime` mapping).
    pub fn embedded_sample() -> InputSpec {
        InputSpec {
            path: None,
            mapping: Some(vigie_config::embedded::SAMPLE_MAPPING.to_string()),
        }
    }

    /// How the input is named in reports.
    pub fn label(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "<embedded sample>".to_string(),
        }
    }

    /// The number of lines of the input (a CSV's header included; a last line without a line
    /// break counts), read through once: how many records to expect, for a progress estimate.
    pub fn line_count(&self) -> std::io::Result<u64> {
        let mut reader = self.open()?;
        let mut buf = vec![0u8; 1 << 16];
        let (mut lines, mut last) = (0, b'\n');
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(lines + u64::from(last != b'\n'));
            }
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            last = buf[n - 1];
        }
    }

    fn open(&self) -> std::io::Result<Box<dyn Read>> {
        let Some(path) = &self.path else {
            return Ok(Box::new(vigie_config::embedded::SAMPLE_DATA.as_bytes()));
        };
        let file = File::open(path)?;
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("zip"))
        {
            let mut archive = zip::ZipArchive::new(file).map_err(std::io::Error::other)?;
            let mut data = Vec::new();
            archive
                .by_index(0)
                .map_err(std::io::Error::other)?
                .read_to_end(&mut data)?;
            return Ok(Box::new(std::io::Cursor::new(data)));
        }
        Ok(Box::new(file))
    }
}

/// A record that was not accepted: where, what and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    pub input: String,
    pub line: u64,
    pub error: RecordError,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} line {}: {}", self.input, self.line, self.error)
    }
}

/// Errors that stop reading an input altogether (a missing file, a bad header).
#[derive(Debug, thiserror::Error)]
#[error("{input}: {message}")]
pub struct InputError {
    pub input: String,
    pub message: String,
}

enum Current {
    Ndjson(Box<dyn BufRead>),
    Csv(Box<CsvRows<'static, Box<dyn Read>>>),
}

/// Reads the inputs in order, yielding this reader's share of their lines.
pub struct RecordReader<'c> {
    config: &'c Config,
    inputs: Vec<InputSpec>,
    next_input: usize,
    current: Option<(usize, Current)>,
    line: u64,
    index: u64,
    peers: u64,
    buf: Vec<u8>,
    row: csv::StringRecord,
    /// Accepted events that took their mapping's default duration (no end, or none after
    /// their start).
    defaulted_ends: u64,
}

impl<'c> RecordReader<'c> {
    /// A reader of all lines.
    pub fn new(config: &'c Config, inputs: Vec<InputSpec>) -> Self {
        Self::shared(config, inputs, 0, 1)
    }

    /// A reader of the lines `l` with `(input + l) % peers == index`.
    pub fn shared(config: &'c Config, inputs: Vec<InputSpec>, index: usize, peers: usize) -> Self {
        RecordReader {
            config,
            inputs,
            next_input: 0,
            current: None,
            line: 0,
            index: index as u64,
            peers: peers.max(1) as u64,
            buf: Vec::new(),
            row: csv::StringRecord::new(),
            defaulted_ends: 0,
        }
    }

    /// The accepted events read so far that took their mapping's default duration for their
    /// kind (`default_duration_h`): their end was missing or not after their start.
    pub fn defaulted_ends(&self) -> u64 {
        self.defaulted_ends
    }

    fn open_next(&mut self) -> Option<Result<(), InputError>> {
        let i = self.next_input;
        let spec = self.inputs.get(i)?.clone();
        self.next_input += 1;
        self.line = 0;
        let err = |message: String| InputError {
            input: spec.label(),
            message,
        };
        let reader = match spec.open() {
            Ok(r) => r,
            Err(e) => return Some(Err(err(e.to_string()))),
        };
        let current = match &spec.mapping {
            None => Current::Ndjson(Box::new(BufReader::with_capacity(1 << 16, reader))),
            Some(name) => match CsvRows::open(reader, name, self.config) {
                Ok(rows) => Current::Csv(Box::new(rows)),
                Err(e) => return Some(Err(err(e))),
            },
        };
        self.current = Some((i, current));
        Some(Ok(()))
    }

    fn mine(&self, input: usize) -> bool {
        mine(input, self.line, self.index, self.peers)
    }
}

fn mine(input: usize, line: u64, index: u64, peers: u64) -> bool {
    (input as u64 + line) % peers == index
}

/// A line that cannot be read as a record at all.
fn malformed(input: String, line: u64, reason: String) -> Item {
    Item::Rejected(Rejection {
        input,
        line,
        error: RecordError::malformed(reason),
    })
}

/// What a reader yields: a record, a rejected line, or an input that could not be read.
#[derive(Debug)]
pub enum Item {
    Record(Record),
    Rejected(Rejection),
    Failed(InputError),
}

impl Iterator for RecordReader<'_> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        loop {
            if self.current.is_none() {
                match self.open_next()? {
                    Ok(()) => {}
                    Err(e) => return Some(Item::Failed(e)),
                }
            }
            let (input, current) = self.current.as_mut().expect("opened");
            let input = *input;
            let label = || self.inputs[input].label();
            match current {
                Current::Ndjson(r) => {
                    self.buf.clear();
                    match r.read_until(b'\n', &mut self.buf) {
                        Ok(0) => {
                            self.current = None;
                            continue;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            self.current = None;
                            return Some(Item::Failed(InputError {
                                input: label(),
                                message: e.to_string(),
                            }));
                        }
                    }
                    self.line += 1;
                    if !self.mine(input) {
                        continue;
                    }
                    let text = match ndjson_text(&self.buf) {
                        Ok(Some(text)) => text,
                        Ok(None) => continue,
                        Err(error) => {
                            return Some(Item::Rejected(Rejection {
                                input: label(),
                                line: self.line,
                                error,
                            }))
                        }
                    };
                    let seq = ((input as u64) << 40) | self.line;
                    return Some(match parse_ndjson_line(text, self.config.into(), seq) {
                        Ok(r) => Item::Record(r),
                        Err(error) => Item::Rejected(Rejection {
                            input: label(),
                            line: self.line,
                            error,
                        }),
                    });
                }
                Current::Csv(csv) => {
                    if !mine(input, csv.next_index(), self.index, self.peers) {
                        match csv.skip_row() {
                            None => self.current = None,
                            Some(Ok(())) => {}
                            Some(Err(message)) => {
                                self.current = None;
                                return Some(Item::Failed(InputError {
                                    input: label(),
                                    message,
                                }));
                            }
                        }
                        continue;
                    }
                    let (index, line) = match csv.next_row(&mut self.row) {
                        None => {
                            self.current = None;
                            continue;
                        }
                        Some(CsvRow::Failed(message)) => {
                            self.current = None;
                            return Some(Item::Failed(InputError {
                                input: label(),
                                message,
                            }));
                        }
                        Some(CsvRow::Bad {
                            index,
                            line,
                            reason,
                        }) => {
                            debug_assert!(mine(input, index, self.index, self.peers));
                            return Some(malformed(label(), line, reason));
                        }
                        Some(CsvRow::Row { index, line }) => (index, line),
                    };
                    let seq = ((input as u64) << 40) | index;
                    return Some(
                        match csv
                            .mapping()
                            .record_noting(&self.row, self.config.into(), seq)
                        {
                            Ok((r, defaulted)) => {
                                self.defaulted_ends += defaulted as u64;
                                Item::Record(r)
                            }
                            Err(error) => Item::Rejected(Rejection {
                                input: label(),
                                line,
                                error,
                            }),
                        },
                    );
                }
            }
        }
    }
}

/// Items read ahead per batch handed from a [`ReadAhead`]'s thread.
const READ_AHEAD_BATCH: usize = 1024;
/// Batches a [`ReadAhead`]'s thread may have read that were not taken yet.
const READ_AHEAD_BATCHES: usize = 256;

/// A [`RecordReader`]'s items, read and parsed on a thread of its own, so that reading,
/// parsing and validating the next lines overlap with what the caller does with the items.
/// Same items in the same order as the reader gives; at most
/// `READ_AHEAD_BATCH × READ_AHEAD_BATCHES` items wait between the two. A panic of the
/// reading thread is raised again in the caller when it reaches the end.
pub struct ReadAhead {
    batches: std::sync::mpsc::Receiver<Vec<Item>>,
    current: std::vec::IntoIter<Item>,
    thread: Option<std::thread::JoinHandle<u64>>,
    defaulted_ends: u64,
}

impl ReadAhead {
    /// Starts reading `index` of `peers` shares of `inputs` (as [`RecordReader::shared`]).
    pub fn spawn(
        config: std::sync::Arc<Config>,
        inputs: Vec<InputSpec>,
        index: usize,
        peers: usize,
    ) -> std::io::Result<ReadAhead> {
        let (send, batches) = std::sync::mpsc::sync_channel(READ_AHEAD_BATCHES);
        let thread = std::thread::Builder::new()
            .name(format!("vigie-reader-{index}"))
            .spawn(move || {
                let mut reader = RecordReader::shared(&config, inputs, index, peers);
                loop {
                    let batch: Vec<Item> = reader.by_ref().take(READ_AHEAD_BATCH).collect();
                    let last = batch.len() < READ_AHEAD_BATCH;
                    // The taker is gone: nobody reads the rest.
                    if (!batch.is_empty() && send.send(batch).is_err()) || last {
                        return reader.defaulted_ends();
                    }
                }
            })?;
        Ok(ReadAhead {
            batches,
            current: Vec::new().into_iter(),
            thread: Some(thread),
            defaulted_ends: 0,
        })
    }

    /// Accepted events that took their mapping's default duration, once every item was taken.
    pub fn defaulted_ends(&self) -> u64 {
        self.defaulted_ends
    }
}

impl Iterator for ReadAhead {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.current.next() {
                return Some(item);
            }
            match self.batches.recv() {
                Ok(batch) => self.current = batch.into_iter(),
                Err(_) => {
                    // The thread has ended: with what it counted, or with a panic.
                    if let Some(thread) = self.thread.take() {
                        match thread.join() {
                            Ok(n) => self.defaulted_ends = n,
                            Err(panic) => std::panic::resume_unwind(panic),
                        }
                    }
                    return None;
                }
            }
        }
    }
}

/// The text of one NDJSON line, without a leading byte-order mark and surrounding whitespace:
/// `Ok(None)` when it is blank. A line that is not UTF-8 is one bad line (malformed), not the
/// end of the input. File replay and live ingest read lines through it.
pub fn ndjson_text(bytes: &[u8]) -> Result<Option<&str>, RecordError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| RecordError::malformed(format!("not UTF-8 text: {e}")))?
        .trim_start_matches('\u{feff}')
        .trim();
    Ok((!text.is_empty()).then_some(text))
}

/// CSV text read through a mapping: the header (line 1) compiles the mapping, then rows come
/// one by one with their line numbers, read strictly ([`crate::csvtext`]: every row has the
/// header's cell count, an unterminated quote refuses its row and only it). File replay and
/// live ingest (HTTP, MQTT) read CSV through it; text without a header
/// ([`CsvRows::headless`], MQTT messages) is read with a mapping compiled beforehand.
pub struct CsvRows<'m, R> {
    rdr: StrictCsv<R>,
    mapping: MappingRef<'m>,
    /// Rows read so far, the header included.
    count: u64,
    /// Where rows of other readers' shares are read into.
    skipped: csv::StringRecord,
}

/// A compiled mapping, compiled for this text or lent.
enum MappingRef<'m> {
    Owned(Box<CompiledMapping>),
    Lent(&'m CompiledMapping),
}

/// What [`CsvRows::next_row`] read.
#[derive(Debug)]
pub enum CsvRow {
    /// A row, now in the caller's record. `index` counts the rows read, header = 1 (a row
    /// with quoted line breaks counts once); `line` is the line of the text it starts on.
    Row { index: u64, line: u64 },
    /// A row refused (a cell count other than the header's, an unterminated quote, not
    /// UTF-8, too long): one bad row, reading goes on at the line after its first.
    Bad {
        index: u64,
        line: u64,
        reason: String,
    },
    /// Reading failed altogether (an I/O error).
    Failed(String),
}

impl<'m, R: Read> CsvRows<'m, R> {
    /// Rows of `reader`, which has no header, through `mapping` (compiled against the header
    /// the rows would have had, whose width each row must have), with the mapping's
    /// `delimiter`; rows count from line 1.
    pub fn headless(reader: R, mapping: &'m CompiledMapping, delimiter: u8) -> CsvRows<'m, R> {
        let mut rdr = StrictCsv::new(reader, delimiter);
        rdr.set_width(mapping.width());
        CsvRows {
            rdr,
            mapping: MappingRef::Lent(mapping),
            count: 0,
            skipped: csv::StringRecord::new(),
        }
    }

    /// Reads the header of `reader` and compiles the mapping `name` of `config` against it.
    pub fn open(reader: R, name: &str, config: &Config) -> Result<CsvRows<'m, R>, String> {
        let Some(mapping) = config.mappings.get(name) else {
            return Err(format!("no mapping {name:?} in {}", config.origin));
        };
        let mut rdr = StrictCsv::new(reader, mapping.delimiter_byte());
        let mut header = csv::StringRecord::new();
        let header: Vec<String> = match rdr.next_row(&mut header) {
            Some(crate::csvtext::Row::Cells { .. }) => header.iter().map(str::to_string).collect(),
            Some(crate::csvtext::Row::Bad { reason, .. }) => {
                return Err(format!("cannot read the CSV header: {reason}"))
            }
            Some(crate::csvtext::Row::Failed(e)) => {
                return Err(format!("cannot read the CSV header: {e}"))
            }
            None => Vec::new(),
        };
        let mapping = CompiledMapping::compile(name, mapping, &header, config)?;
        rdr.set_width(header.len());
        Ok(CsvRows {
            rdr,
            mapping: MappingRef::Owned(Box::new(mapping)),
            count: 1,
            skipped: csv::StringRecord::new(),
        })
    }

    /// The compiled mapping, to turn rows into records.
    pub fn mapping(&self) -> &CompiledMapping {
        match &self.mapping {
            MappingRef::Owned(m) => m,
            MappingRef::Lent(m) => m,
        }
    }

    /// The `index` the next row read will have.
    pub fn next_index(&self) -> u64 {
        self.count + 1
    }

    /// Reads past the next row, another reader's share, without handing out its fields:
    /// `None` at the end, `Some(Err)` if reading failed altogether (an I/O error). Its row
    /// boundaries are found as [`CsvRows::next_row`] finds them, so every reader counts the
    /// same rows.
    pub fn skip_row(&mut self) -> Option<Result<(), String>> {
        let mut skipped = std::mem::take(&mut self.skipped);
        let next = self.next_row(&mut skipped);
        self.skipped = skipped;
        match next? {
            CsvRow::Failed(e) => Some(Err(e)),
            _ => Some(Ok(())),
        }
    }

    /// Reads the next row into `row`; `None` at the end.
    pub fn next_row(&mut self, row: &mut csv::StringRecord) -> Option<CsvRow> {
        let next = self.rdr.next_row(row)?;
        self.count += 1;
        let index = self.count;
        Some(match next {
            crate::csvtext::Row::Cells { line } => CsvRow::Row { index, line },
            crate::csvtext::Row::Bad { line, reason } => CsvRow::Bad {
                index,
                line,
                reason,
            },
            crate::csvtext::Row::Failed(e) => CsvRow::Failed(e),
        })
    }
}
