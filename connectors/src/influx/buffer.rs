//! The sink's bounded on-disk buffer: what was handed to the sink and not yet confirmed by the
//! server, kept on disk so that an outage of the server loses nothing and a restart of vigie
//! resends it.
//!
//! A directory of append-only **segment files** and one **cursor file** (byte format in
//! `connectors/FORMAT.md`). Every record is framed with its length and a CRC32, and records
//! are addressed by a logical byte offset that grows forever: a segment is named by the offset
//! of its first byte. The cursor holds the offset up to which the server confirmed the records;
//! it is replaced atomically (write a temporary file, fsync, rename, fsync the directory).
//! Segments entirely below the cursor are deleted.
//!
//! On open, every segment is checked record by record and cut at the first record whose frame
//! or checksum is wrong (the torn tail of a crash), and reading starts again at the cursor, so
//! what was not confirmed is sent again. A record confirmed by the server whose confirmation
//! did not reach the cursor file before a crash is sent twice: the buffer gives at-least-once
//! delivery, and the same bytes twice write the same values.
//!
//! The buffer holds at most `max_bytes` of unconfirmed records ([`Buffer::has_room`]); the
//! disk also holds the confirmed head of the oldest segment, less than one segment
//! (`max_bytes / 16`, at least 64 KiB, at most 64 MiB) plus one record.
//!
//! One process per directory: the buffer takes no lock on it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: &[u8; 8] = b"VIGIEIB1";
/// First bytes of the cursor file.
pub const CURSOR_MAGIC: &[u8; 8] = b"VIGIEIC1";
/// Bytes before a record's payload: length (u32) and CRC32 (u32).
pub const FRAME_BYTES: u64 = 8;
/// Bytes of the cursor file: magic, offset (u64), CRC32 (u32).
const CURSOR_BYTES: usize = 20;
/// The largest payload a record may have.
pub const MAX_PAYLOAD: u64 = 1 << 30;

const CURSOR_FILE: &str = "cursor";
const CURSOR_TMP: &str = "cursor.tmp";

/// What [`Buffer::open`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Unconfirmed records found, to be sent again.
    pub records: u64,
    /// Their points (lines).
    pub lines: u64,
    /// Their bytes (frames included).
    pub bytes: u64,
    /// Bytes cut off the segments: torn or corrupt tails.
    pub truncated_bytes: u64,
    /// Segments whose tail was cut although a later segment follows (not a torn tail, but
    /// damage: the records after the damage in that segment are lost).
    pub damaged_segments: u64,
    /// The cursor file was missing or unreadable, and reading starts at the first segment.
    pub cursor_reset: bool,
}

/// A run of records read for sending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Offset just past the last record: the cursor once the server confirms the batch.
    pub end: u64,
    /// Points (lines) in the batch.
    pub lines: u64,
    /// Records in the batch.
    pub records: u64,
    /// Bytes of the records, frames included.
    pub bytes: u64,
}

#[derive(Debug)]
struct Segment {
    /// Logical offset of the file's first byte (its magic).
    start: u64,
    /// Bytes of the file that hold valid records (the magic included).
    len: u64,
    path: PathBuf,
}

impl Segment {
    fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// The on-disk buffer. Not shared: the sink guards it with a mutex.
#[derive(Debug)]
pub struct Buffer {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: Vec<Segment>,
    /// The last segment, open for appending.
    active: File,
    /// Read handle and the start of the segment it reads.
    reader: Option<(u64, File)>,
    /// Offset up to which the server confirmed (records before it are never read again).
    confirmed: u64,
    /// Unconfirmed bytes (frames included) and lines.
    unconfirmed_bytes: u64,
    unconfirmed_lines: u64,
    /// Whether the active segment has writes that were not fsynced.
    dirty: bool,
}

fn segment_name(start: u64) -> String {
    format!("seg-{start:020}.log")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn frame_crc(len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn ctx(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

impl Buffer {
    /// Opens (or creates) the buffer in `dir`, recovering what a previous run left.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<(Buffer, Recovery)> {
        fs::create_dir_all(dir).map_err(|e| ctx(e, "cannot create", dir))?;
        let mut rec = Recovery::default();
        let _ = fs::remove_file(dir.join(CURSOR_TMP));
        let cursor = read_cursor(&dir.join(CURSOR_FILE))?;
        let mut starts = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| ctx(e, "cannot list", dir))? {
            let entry = entry.map_err(|e| ctx(e, "cannot list", dir))?;
            if let Some(start) = entry.file_name().to_str().and_then(parse_segment_name) {
                starts.push(start);
            }
        }
        starts.sort_unstable();
        let mut confirmed = match cursor {
            Some(c) => c,
            None => {
                rec.cursor_reset = !starts.is_empty();
                starts.first().copied().unwrap_or(0)
            }
        };
        let mut segments = Vec::new();
        let n = starts.len();
        for (i, &start) in starts.iter().enumerate() {
            let path = dir.join(segment_name(start));
            let next = starts.get(i + 1).copied();
            let (len, cut) = check_segment(&path, start, next)?;
            if cut > 0 {
                rec.truncated_bytes += cut;
                if i + 1 < n {
                    rec.damaged_segments += 1;
                }
            }
            segments.push(Segment { start, len, path });
        }
        // Segments wholly confirmed are garbage left by a crash between the cursor's update
        // and their deletion.
        while segments.len() > 1 && segments[0].end() <= confirmed {
            let s = segments.remove(0);
            fs::remove_file(&s.path).map_err(|e| ctx(e, "cannot delete", &s.path))?;
        }
        if segments.len() == 1 && segments[0].end() <= confirmed && segments[0].len > 8 {
            // Everything is confirmed: start afresh at the cursor.
            let s = segments.remove(0);
            fs::remove_file(&s.path).map_err(|e| ctx(e, "cannot delete", &s.path))?;
        }
        let write_end = segments.last().map_or(0, Segment::end);
        if segments.is_empty() || confirmed > write_end {
            // A cursor beyond the data (the data was lost with the page cache while the
            // cursor had been synced): new records start at the cursor.
            let start = confirmed.max(write_end);
            segments.push(create_segment(dir, start)?);
        }
        confirmed = confirmed.max(segments[0].start);
        let active = OpenOptions::new()
            .append(true)
            .open(&segments[segments.len() - 1].path)
            .map_err(|e| ctx(e, "cannot open", &segments[segments.len() - 1].path))?;
        let mut buf = Buffer {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes: (max_bytes / 16).clamp(64 << 10, 64 << 20),
            segments,
            active,
            reader: None,
            confirmed,
            unconfirmed_bytes: 0,
            unconfirmed_lines: 0,
            dirty: false,
        };
        // Count what is left to send.
        let mut off = buf.confirmed;
        let mut scratch = Vec::new();
        while let Some((lines, next)) = buf.read_record(off, &mut scratch)? {
            rec.records += 1;
            rec.lines += lines as u64;
            rec.bytes += FRAME_BYTES + scratch.len() as u64 + 4;
            off = next;
        }
        buf.unconfirmed_bytes = rec.bytes;
        buf.unconfirmed_lines = rec.lines;
        if rec.cursor_reset {
            buf.write_cursor(buf.confirmed)?;
        }
        Ok((buf, rec))
    }

    /// The bytes a record of `text_len` bytes of text takes (frame included).
    pub fn record_bytes(text_len: usize) -> u64 {
        FRAME_BYTES + 4 + text_len as u64
    }

    /// Whether a record of `text_len` bytes of text fits within the bound now. A record
    /// larger than the whole bound never does (see [`Buffer::append`]).
    pub fn has_room(&self, text_len: usize) -> bool {
        self.unconfirmed_bytes + Buffer::record_bytes(text_len) <= self.max_bytes
    }

    /// Appends one record: `lines` points as line-protocol `text`. Written to the file (it
    /// survives a crash of the process) but not fsynced: see [`Buffer::sync`]. Fails if the
    /// record is larger than the bound; the caller waits for [`Buffer::has_room`] first.
    pub fn append(&mut self, lines: u32, text: &[u8]) -> io::Result<()> {
        let size = Buffer::record_bytes(text.len());
        if size > self.max_bytes || size - FRAME_BYTES > MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a record of {size} bytes is larger than the buffer's bound ({} bytes)",
                    self.max_bytes
                ),
            ));
        }
        if self.segments[self.segments.len() - 1].len >= self.segment_bytes {
            self.roll()?;
        }
        let payload_len = (4 + text.len()) as u32;
        let mut frame = Vec::with_capacity(size as usize);
        frame.extend_from_slice(&payload_len.to_le_bytes());
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(&lines.to_le_bytes());
        frame.extend_from_slice(text);
        let crc = frame_crc(payload_len, &frame[8..]);
        frame[4..8].copy_from_slice(&crc.to_le_bytes());
        let seg = self.segments.len() - 1;
        if let Err(e) = self.active.write_all(&frame) {
            // Take back a partial write, so that the next record does not follow garbage.
            let path = &self.segments[seg].path;
            self.active
                .set_len(self.segments[seg].len)
                .map_err(|e2| ctx(e2, "cannot take back a failed write to", path))?;
            return Err(ctx(e, "cannot write to", path));
        }
        self.segments[seg].len += size;
        self.unconfirmed_bytes += size;
        self.unconfirmed_lines += lines as u64;
        self.dirty = true;
        Ok(())
    }

    /// Makes every appended record durable (fsync).
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            let path = &self.segments[self.segments.len() - 1].path;
            self.active
                .sync_data()
                .map_err(|e| ctx(e, "cannot sync", path))?;
            self.dirty = false;
        }
        Ok(())
    }

    fn roll(&mut self) -> io::Result<()> {
        self.sync()?;
        let start = self.segments[self.segments.len() - 1].end();
        let seg = create_segment(&self.dir, start)?;
        self.active = OpenOptions::new()
            .append(true)
            .open(&seg.path)
            .map_err(|e| ctx(e, "cannot open", &seg.path))?;
        self.segments.push(seg);
        Ok(())
    }

    /// The bound on unconfirmed bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Unconfirmed bytes, frames included.
    pub fn unconfirmed_bytes(&self) -> u64 {
        self.unconfirmed_bytes
    }

    /// Unconfirmed points (lines).
    pub fn unconfirmed_lines(&self) -> u64 {
        self.unconfirmed_lines
    }

    /// The offset up to which the server confirmed.
    pub fn confirmed(&self) -> u64 {
        self.confirmed
    }

    /// The offset just past the last record appended.
    pub fn write_end(&self) -> u64 {
        self.segments[self.segments.len() - 1].end()
    }

    /// Reads the unconfirmed records from the cursor on, whole records only, until they hold
    /// `max_lines` points (at least one record however many it holds), appending their text to
    /// `out`. `None` when nothing is unconfirmed.
    pub fn read_batch(&mut self, max_lines: u64, out: &mut Vec<u8>) -> io::Result<Option<Batch>> {
        let mut off = self.confirmed;
        let mut batch = Batch {
            end: off,
            lines: 0,
            records: 0,
            bytes: 0,
        };
        let mut scratch = Vec::new();
        while batch.lines < max_lines {
            let Some((lines, next)) = self.read_record(off, &mut scratch)? else {
                break;
            };
            if batch.records > 0 && batch.lines + lines as u64 > max_lines {
                break;
            }
            out.extend_from_slice(&scratch);
            batch.lines += lines as u64;
            batch.records += 1;
            batch.bytes += Buffer::record_bytes(scratch.len());
            batch.end = next;
            off = next;
        }
        Ok((batch.records > 0).then_some(batch))
    }

    /// Records that the server confirmed everything up to `batch.end`: moves the cursor
    /// (durably) and deletes the segments wholly before it.
    pub fn confirm(&mut self, batch: &Batch) -> io::Result<()> {
        if batch.end <= self.confirmed {
            return Ok(());
        }
        self.write_cursor(batch.end)?;
        self.confirmed = batch.end;
        self.unconfirmed_bytes = self.unconfirmed_bytes.saturating_sub(batch.bytes);
        self.unconfirmed_lines = self.unconfirmed_lines.saturating_sub(batch.lines);
        while self.segments.len() > 1 && self.segments[0].end() <= self.confirmed {
            let s = self.segments.remove(0);
            if self
                .reader
                .as_ref()
                .is_some_and(|(start, _)| *start == s.start)
            {
                self.reader = None;
            }
            fs::remove_file(&s.path).map_err(|e| ctx(e, "cannot delete", &s.path))?;
        }
        Ok(())
    }

    fn write_cursor(&self, offset: u64) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(CURSOR_BYTES);
        bytes.extend_from_slice(CURSOR_MAGIC);
        bytes.extend_from_slice(&offset.to_le_bytes());
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let tmp = self.dir.join(CURSOR_TMP);
        let mut f = File::create(&tmp).map_err(|e| ctx(e, "cannot create", &tmp))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| ctx(e, "cannot write", &tmp))?;
        let path = self.dir.join(CURSOR_FILE);
        fs::rename(&tmp, &path).map_err(|e| ctx(e, "cannot replace", &path))?;
        sync_dir(&self.dir).map_err(|e| ctx(e, "cannot sync", &self.dir))
    }

    /// Reads the record at or after `off` (skipping segment ends and gaps); its text goes to
    /// `text` (replaced). Returns its lines and the offset after it, `None` at the end.
    fn read_record(&mut self, mut off: u64, text: &mut Vec<u8>) -> io::Result<Option<(u32, u64)>> {
        let Some(i) = self.segments.iter().position(|s| off < s.end()) else {
            return Ok(None);
        };
        let seg = &self.segments[i];
        off = off.max(seg.start + SEGMENT_MAGIC.len() as u64);
        if off >= seg.end() {
            // An empty segment (only its magic): look in the next one.
            return match self.segments.get(i + 1) {
                Some(next) => {
                    let start = next.start;
                    self.read_record(start, text)
                }
                None => Ok(None),
            };
        }
        let (start, end, path) = (seg.start, seg.end(), seg.path.clone());
        if self.reader.as_ref().is_none_or(|(s, _)| *s != start) {
            let f = File::open(&path).map_err(|e| ctx(e, "cannot open", &path))?;
            self.reader = Some((start, f));
        }
        let Some((_, f)) = &self.reader else {
            return Ok(None);
        };
        let mut head = [0u8; 8];
        f.read_exact_at(&mut head, off - start)
            .map_err(|e| ctx(e, "cannot read", &path))?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let next = off + FRAME_BYTES + len as u64;
        if len < 4 || next > end {
            return Err(invalid(format!(
                "{}: bad record frame at offset {off}",
                path.display()
            )));
        }
        let mut payload = vec![0u8; len as usize];
        f.read_exact_at(&mut payload, off - start + FRAME_BYTES)
            .map_err(|e| ctx(e, "cannot read", &path))?;
        if frame_crc(len, &payload) != crc {
            return Err(invalid(format!(
                "{}: checksum mismatch at offset {off}",
                path.display()
            )));
        }
        let lines = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
        text.clear();
        text.extend_from_slice(&payload[4..]);
        Ok(Some((lines, next)))
    }
}

fn create_segment(dir: &Path, start: u64) -> io::Result<Segment> {
    let path = dir.join(segment_name(start));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| ctx(e, "cannot create", &path))?;
    f.write_all(SEGMENT_MAGIC)
        .and_then(|()| f.sync_all())
        .map_err(|e| ctx(e, "cannot write", &path))?;
    sync_dir(dir).map_err(|e| ctx(e, "cannot sync", dir))?;
    Ok(Segment {
        start,
        len: SEGMENT_MAGIC.len() as u64,
        path,
    })
}

/// The cursor's offset; `None` if there is no cursor file or it is damaged (a rename is
/// atomic, so damage means the disk's; then everything still on disk is sent again).
fn read_cursor(path: &Path) -> io::Result<Option<u64>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ctx(e, "cannot read", path)),
    };
    if bytes.len() != CURSOR_BYTES || &bytes[..8] != CURSOR_MAGIC {
        return Ok(None);
    }
    let crc = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    if crc32fast::hash(&bytes[..16]) != crc {
        return Ok(None);
    }
    let mut off = [0u8; 8];
    off.copy_from_slice(&bytes[8..16]);
    Ok(Some(u64::from_le_bytes(off)))
}

/// Checks a segment record by record and cuts it after the last good one. Returns the valid
/// length and the bytes cut. A file too short for its magic (a crash while creating it) is
/// rewritten empty; a file with another magic is refused.
fn check_segment(path: &Path, start: u64, next: Option<u64>) -> io::Result<(u64, u64)> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| ctx(e, "cannot open", path))?;
    let size = f.metadata().map_err(|e| ctx(e, "cannot stat", path))?.len();
    let magic_len = SEGMENT_MAGIC.len() as u64;
    if size < magic_len {
        f.set_len(0)
            .and_then(|()| f.write_all_at(SEGMENT_MAGIC, 0))
            .and_then(|()| f.sync_all())
            .map_err(|e| ctx(e, "cannot repair", path))?;
        return Ok((magic_len, size));
    }
    let mut magic = [0u8; 8];
    f.read_exact(&mut magic)
        .map_err(|e| ctx(e, "cannot read", path))?;
    if &magic != SEGMENT_MAGIC {
        return Err(invalid(format!(
            "{} is not a segment of vigie's InfluxDB buffer (unknown magic)",
            path.display()
        )));
    }
    // A segment may not run into the next one's offsets.
    let limit = next.map_or(u64::MAX, |n| n.saturating_sub(start));
    let mut pos = magic_len;
    let mut reader = io::BufReader::with_capacity(1 << 20, f);
    let mut payload = Vec::new();
    loop {
        let mut head = [0u8; 8];
        if pos + FRAME_BYTES > size || reader.read_exact(&mut head).is_err() {
            break;
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as u64;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let end = pos + FRAME_BYTES + len;
        if !(4..=MAX_PAYLOAD).contains(&len) || end > size || end > limit {
            break;
        }
        payload.resize(len as usize, 0);
        if reader.read_exact(&mut payload).is_err() || frame_crc(len as u32, &payload) != crc {
            break;
        }
        pos = end;
    }
    let f = reader.into_inner();
    if pos < size {
        f.set_len(pos)
            .and_then(|()| f.sync_all())
            .map_err(|e| ctx(e, "cannot truncate", path))?;
    }
    Ok((pos, size - pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(i: usize) -> Vec<u8> {
        format!("m,k=v{i} f={i}.5 {i}\n").into_bytes()
    }

    fn drain(b: &mut Buffer, max_lines: u64) -> (Vec<u8>, Option<Batch>) {
        let mut out = Vec::new();
        let batch = b.read_batch(max_lines, &mut out).unwrap();
        (out, batch)
    }

    #[test]
    fn records_come_back_in_order_and_confirmed_ones_are_not_resent() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, rec) = Buffer::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(rec, Recovery::default());
        for i in 0..10 {
            b.append(1, &text(i)).unwrap();
        }
        assert_eq!(b.unconfirmed_lines(), 10);
        let (out, batch) = drain(&mut b, 4);
        let batch = batch.unwrap();
        assert_eq!((batch.lines, batch.records), (4, 4));
        assert_eq!(out, [text(0), text(1), text(2), text(3)].concat());
        b.confirm(&batch).unwrap();
        assert_eq!(b.unconfirmed_lines(), 6);
        drop(b);
        let (mut b, rec) = Buffer::open(dir.path(), 1 << 20).unwrap();
        assert_eq!((rec.records, rec.lines, rec.truncated_bytes), (6, 6, 0));
        let (out, batch) = drain(&mut b, 100);
        assert_eq!(out, (4..10).map(text).collect::<Vec<_>>().concat());
        b.confirm(&batch.unwrap()).unwrap();
        assert_eq!((b.unconfirmed_lines(), b.unconfirmed_bytes()), (0, 0));
        assert_eq!(drain(&mut b, 100).1, None);
        // Appends after a reopen go after what was there.
        b.append(2, b"x f=1.0 1\ny f=2.0 2\n").unwrap();
        let (out, batch) = drain(&mut b, 1);
        assert_eq!(out, b"x f=1.0 1\ny f=2.0 2\n");
        assert_eq!(batch.unwrap().lines, 2);
    }

    #[test]
    fn segments_roll_and_confirmed_ones_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, _) = Buffer::open(dir.path(), 1 << 20).unwrap();
        let big = vec![b'a'; 20_000];
        for _ in 0..20 {
            b.append(1, &big).unwrap();
        }
        let segs = |d: &Path| {
            fs::read_dir(d)
                .unwrap()
                .filter(|e| {
                    let name = e.as_ref().unwrap().file_name();
                    name.to_str().unwrap().starts_with("seg-")
                })
                .count()
        };
        assert!(segs(dir.path()) >= 5, "{}", segs(dir.path()));
        loop {
            let (_, batch) = drain(&mut b, 3);
            let Some(batch) = batch else { break };
            b.confirm(&batch).unwrap();
        }
        assert_eq!(segs(dir.path()), 1);
        assert_eq!(b.unconfirmed_bytes(), 0);
        let (_, rec) = Buffer::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(rec.records, 0);
    }

    #[test]
    fn the_bound_counts_unconfirmed_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, _) = Buffer::open(dir.path(), 1 << 20).unwrap();
        let chunk = vec![b'z'; 100_000];
        let mut n = 0;
        while b.has_room(chunk.len()) {
            b.append(1, &chunk).unwrap();
            n += 1;
        }
        assert_eq!(n, 10);
        let (_, batch) = drain(&mut b, 1);
        b.confirm(&batch.unwrap()).unwrap();
        assert!(b.has_room(chunk.len()));
        let e = b.append(1, &vec![0; 2 << 20]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    fn only_segment(dir: &Path) -> PathBuf {
        let mut segs: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("seg-"))
            .collect();
        segs.sort();
        segs.pop().unwrap()
    }

    #[test]
    fn a_torn_tail_is_cut_at_every_length() {
        // Write 5 records, then cut the file at every byte of the last one, and flip a byte
        // in it: the first four come back, the fifth is gone, and appends carry on.
        let dir = tempfile::tempdir().unwrap();
        let (mut b, _) = Buffer::open(dir.path(), 1 << 20).unwrap();
        for i in 0..5 {
            b.append(1, &text(i)).unwrap();
        }
        drop(b);
        let seg = only_segment(dir.path());
        let full = fs::read(&seg).unwrap();
        let last = Buffer::record_bytes(text(4).len()) as usize;
        let good = full.len() - last;
        let mut damaged: Vec<Vec<u8>> = (good..full.len()).map(|n| full[..n].to_vec()).collect();
        for i in good..full.len() {
            let mut v = full.clone();
            v[i] ^= 0x40;
            damaged.push(v);
        }
        for bytes in damaged {
            fs::write(&seg, &bytes).unwrap();
            let (mut b, rec) = Buffer::open(dir.path(), 1 << 20).unwrap();
            assert_eq!(rec.records, 4, "cut at {}", bytes.len());
            assert_eq!(rec.truncated_bytes, (bytes.len() - good) as u64);
            assert_eq!(fs::metadata(&seg).unwrap().len(), good as u64);
            b.append(1, &text(9)).unwrap();
            let (out, _) = drain(&mut b, 100);
            assert_eq!(out, [text(0), text(1), text(2), text(3), text(9)].concat());
        }
    }

    #[test]
    fn a_lost_or_damaged_cursor_means_resending_everything_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, _) = Buffer::open(dir.path(), 1 << 20).unwrap();
        for i in 0..3 {
            b.append(1, &text(i)).unwrap();
        }
        let (_, batch) = drain(&mut b, 2);
        b.confirm(&batch.unwrap()).unwrap();
        drop(b);
        let cursor = dir.path().join(CURSOR_FILE);
        let mut bytes = fs::read(&cursor).unwrap();
        bytes[10] ^= 1;
        fs::write(&cursor, &bytes).unwrap();
        fs::write(dir.path().join(CURSOR_TMP), b"half").unwrap();
        let (mut b, rec) = Buffer::open(dir.path(), 1 << 20).unwrap();
        assert!(rec.cursor_reset);
        assert_eq!(rec.records, 3);
        assert!(!dir.path().join(CURSOR_TMP).exists());
        let (out, _) = drain(&mut b, 100);
        assert_eq!(out, [text(0), text(1), text(2)].concat());
    }

    #[test]
    fn a_cursor_beyond_the_data_starts_a_new_segment_there() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, _) = Buffer::open(dir.path(), 1 << 20).unwrap();
        for i in 0..3 {
            b.append(1, &text(i)).unwrap();
        }
        let (_, batch) = drain(&mut b, 100);
        let batch = batch.unwrap();
        b.confirm(&batch).unwrap();
        drop(b);
        // The page cache lost the records, not the synced cursor.
        let seg = only_segment(dir.path());
        fs::write(&seg, SEGMENT_MAGIC).unwrap();
        let (mut b, rec) = Buffer::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(rec.records, 0);
        assert_eq!(b.write_end(), batch.end + SEGMENT_MAGIC.len() as u64);
        b.append(1, &text(7)).unwrap();
        let (out, _) = drain(&mut b, 100);
        assert_eq!(out, text(7));
    }

    #[test]
    fn foreign_files_are_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(segment_name(0)), b"SOMETHING ELSE").unwrap();
        let e = Buffer::open(dir.path(), 1 << 20).unwrap_err();
        assert!(e.to_string().contains("not a segment"), "{e}");
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Records of random sizes, then the file cut or one byte flipped anywhere after the
        /// magic: the records wholly before the damage come back, none after it, and
        /// appending carries on.
        #[test]
        fn recovery_keeps_exactly_the_records_before_the_damage(
            sizes in proptest::collection::vec(0usize..300, 1..20),
            at in any::<prop::sample::Index>(),
            flip in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (mut b, _) = Buffer::open(dir.path(), 1 << 20).unwrap();
            let records: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, n)| vec![b'a' + (i % 26) as u8; *n])
                .collect();
            let mut ends = Vec::new();
            let mut end = SEGMENT_MAGIC.len();
            for r in &records {
                b.append(1, r).unwrap();
                end += Buffer::record_bytes(r.len()) as usize;
                ends.push(end);
            }
            drop(b);
            let seg = only_segment(dir.path());
            let mut bytes = fs::read(&seg).unwrap();
            let pos = SEGMENT_MAGIC.len() + at.index(bytes.len() - SEGMENT_MAGIC.len());
            if flip {
                bytes[pos] ^= 0x01;
            } else {
                bytes.truncate(pos);
            }
            fs::write(&seg, &bytes).unwrap();
            // Records whose every byte is before the damage survive.
            let survivors = ends.iter().filter(|e| **e <= pos).count();
            let (mut b, rec) = Buffer::open(dir.path(), 1 << 20).unwrap();
            prop_assert_eq!(rec.records as usize, survivors);
            b.append(1, b"after").unwrap();
            let (out, batch) = drain(&mut b, u64::MAX);
            let mut want = records[..survivors].concat();
            want.extend_from_slice(b"after");
            prop_assert_eq!(out, want);
            prop_assert_eq!(batch.unwrap().records as usize, survivors + 1);
        }
    }
}
