//! The write-ahead log: numbered segment files of checksummed records.
//!
//! A record is framed as `len:u32 · crc32:u32 · payload` (big-endian; the CRC-32 (IEEE) covers
//! the payload). [`Wal::append`] writes into the current segment through a buffer;
//! [`Wal::sync`] flushes and fsyncs, and only then are the records appended so far durable —
//! callers append a batch and sync once (group commit). Segments roll over past
//! `segment_bytes` and are named by their first record's sequence number.
//!
//! Recovery ([`Wal::open`], or [`Wal::open_each`] a record at a time) reads every segment in
//! order. A record cut short or failing its checksum at the end of the *last* segment is the
//! trace of a crash mid-write: the segment is truncated there and the log goes on. The same damage in an earlier segment is corruption of
//! data that was once durable, and is an error, never skipped silently.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const HEADER: usize = 8;
/// The largest payload a record may carry.
pub const MAX_RECORD: usize = 16 << 20;

/// Errors of the write-ahead log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("wal I/O on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("wal segment {path} is corrupt at byte {offset}, before the last segment: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("wal record of {0} bytes is larger than the {MAX_RECORD}-byte limit")]
    TooLarge(usize),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An open write-ahead log.
pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    current: BufWriter<File>,
    current_path: PathBuf,
    current_len: u64,
    next_seq: u64,
}

/// What recovery found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Every intact record, in order.
    pub records: Vec<Vec<u8>>,
    /// Bytes cut from the end of the last segment (a write the crash interrupted).
    pub truncated_bytes: u64,
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads a segment's records one at a time, from a file or from bytes in memory.
struct SegmentReader<R> {
    r: R,
    /// Bytes of intact records read so far.
    pos: u64,
}

impl<R: Read> SegmentReader<R> {
    fn new(r: R) -> Self {
        SegmentReader { r, pos: 0 }
    }

    /// The next intact record, `Ok(None)` at the clean end, or what is wrong at `pos`.
    fn next_record(&mut self) -> io::Result<Result<Option<Vec<u8>>, String>> {
        let mut header = [0u8; HEADER];
        match fill(&mut self.r, &mut header)? {
            0 => return Ok(Ok(None)),
            n if n < HEADER => return Ok(Err("a record header is cut short".into())),
            _ => {}
        }
        let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(header[4..].try_into().expect("4 bytes"));
        if len > MAX_RECORD {
            return Ok(Err(format!("a record of {len} bytes is cut short")));
        }
        let mut payload = vec![0u8; len];
        if fill(&mut self.r, &mut payload)? < len {
            return Ok(Err(format!("a record of {len} bytes is cut short")));
        }
        if crc32fast::hash(&payload) != crc {
            return Ok(Err("a checksum does not match".into()));
        }
        self.pos += (HEADER + len) as u64;
        Ok(Ok(Some(payload)))
    }
}

/// Reads into `buf` until it is full or the input ends; returns the bytes read.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Wal {
    /// Opens (or creates) the log in `dir`, recovering what it holds.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(Wal, Recovered), WalError> {
        let mut records = Vec::new();
        let (wal, truncated_bytes) = Wal::open_each(dir, segment_bytes, |r| {
            records.push(r);
            Ok::<(), WalError>(())
        })?;
        Ok((
            wal,
            Recovered {
                records,
                truncated_bytes,
            },
        ))
    }

    /// [`Wal::open`] that hands each intact record to `f` as it is read, in order, instead of
    /// holding them: recovery in the memory of one record, whatever the log's size. Returns the
    /// log and the bytes cut from the end of the last segment.
    pub fn open_each<E: From<WalError>>(
        dir: &Path,
        segment_bytes: u64,
        mut f: impl FnMut(Vec<u8>) -> Result<(), E>,
    ) -> Result<(Wal, u64), E> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let segs = segments(dir)?;
        let mut truncated_bytes = 0;
        let mut last: Option<(u64, PathBuf, u64)> = None;
        for (i, (seq, path)) in segs.iter().enumerate() {
            let file = File::open(path).map_err(io_err(path))?;
            let mut reader = SegmentReader::new(io::BufReader::with_capacity(1 << 16, file));
            let mut n = 0u64;
            let damage = loop {
                match reader.next_record().map_err(io_err(path))? {
                    Ok(Some(r)) => {
                        n += 1;
                        f(r)?;
                    }
                    Ok(None) => break None,
                    Err(damage) => break Some(damage),
                }
            };
            let good_len = reader.pos;
            let is_last = i + 1 == segs.len();
            if let Some(reason) = damage {
                if !is_last {
                    return Err(WalError::Corrupt {
                        path: path.clone(),
                        offset: good_len,
                        reason,
                    }
                    .into());
                }
                let full = fs::metadata(path).map_err(io_err(path))?.len();
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                f.set_len(good_len).map_err(io_err(path))?;
                f.sync_all().map_err(io_err(path))?;
                truncated_bytes = full - good_len;
            }
            last = Some((*seq + n, path.clone(), good_len));
        }
        let next_seq = last.as_ref().map_or(0, |(next, _, _)| *next);
        let fresh = last.is_none();
        let (path, len) = match last {
            Some((_, path, len)) => (path, len),
            None => (dir.join(segment_name(next_seq)), 0),
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        file.seek(SeekFrom::End(0)).map_err(io_err(&path))?;
        if fresh {
            // A new log's first segment, and the folder itself, must survive a crash too.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(dir))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(parent)
                    .and_then(|d| d.sync_all())
                    .map_err(io_err(parent))?;
            }
        }
        let wal = Wal {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(HEADER as u64 + 1),
            current: BufWriter::with_capacity(1 << 16, file),
            current_path: path,
            current_len: len,
            next_seq,
        };
        Ok((wal, truncated_bytes))
    }

    /// Appends a record; durable only after the next [`Wal::sync`]. Returns its sequence number.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, WalError> {
        if payload.len() > MAX_RECORD {
            return Err(WalError::TooLarge(payload.len()));
        }
        if self.current_len > 0
            && self.current_len + (HEADER + payload.len()) as u64 > self.segment_bytes
        {
            self.roll()?;
        }
        let path = self.current_path.clone();
        self.current
            .write_all(&(payload.len() as u32).to_be_bytes())
            .map_err(io_err(&path))?;
        self.current
            .write_all(&crc32fast::hash(payload).to_be_bytes())
            .map_err(io_err(&path))?;
        self.current.write_all(payload).map_err(io_err(&path))?;
        self.current_len += (HEADER + payload.len()) as u64;
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Makes every record appended so far durable (flush, then fsync).
    pub fn sync(&mut self) -> Result<(), WalError> {
        let path = self.current_path.clone();
        self.current.flush().map_err(io_err(&path))?;
        self.current.get_ref().sync_data().map_err(io_err(&path))
    }

    fn roll(&mut self) -> Result<(), WalError> {
        self.sync()?;
        let path = self.dir.join(segment_name(self.next_seq));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        // The new segment's name must survive a crash too.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))?;
        self.current = BufWriter::with_capacity(1 << 16, file);
        self.current_path = path;
        self.current_len = 0;
        Ok(())
    }

    /// Starts a new segment and deletes every older one. Call it once what the log held is
    /// durable elsewhere ([`Wal::seal`] then [`Wal::remove_sealed`], which the store's flush
    /// does in two steps, its blocks written in between).
    pub fn checkpoint(&mut self) -> Result<(), WalError> {
        let below = self.seal()?;
        self.remove_sealed(below)
    }

    /// Deletes the sealed segments named below `below` (from [`Wal::seal`]), newest first:
    /// call it once what they held is durable elsewhere.
    pub fn remove_sealed(&mut self, below: u64) -> Result<(), WalError> {
        remove_sealed_in(&self.dir, below)
    }

    /// The log's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Ends the current segment (if it holds anything) so that every record appended so far
    /// is in a *sealed* segment, one the log will not write again; returns the number of the
    /// segment now written to: every segment named below it is sealed. Lets a caller rewrite
    /// sealed segments ([`Replacement`]) while appends go on.
    pub fn seal(&mut self) -> Result<u64, WalError> {
        if self.current_len > 0 {
            self.roll()?;
        }
        Ok(self.next_seq_of_current())
    }

    fn next_seq_of_current(&self) -> u64 {
        self.current_path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(self.next_seq)
    }

    /// Bytes in the log's segments now. A sealed segment deleted between the folder's listing
    /// and its size (by [`remove_sealed_in`], which a store's flush runs without holding the
    /// log) counts for nothing.
    pub fn size_bytes(&self) -> Result<u64, WalError> {
        let mut total = self.current_len;
        for (_, path) in segments(&self.dir)? {
            if path != self.current_path {
                total += match fs::metadata(&path) {
                    Ok(m) => m.len(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
                    Err(e) => return Err(io_err(&path)(e)),
                };
            }
        }
        Ok(total)
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

/// The sealed segments of the log in `dir`: those named below `below` (from [`Wal::seal`]), in
/// order, without reading them.
pub fn sealed_segments(dir: &Path, below: u64) -> Result<Vec<(u64, PathBuf)>, WalError> {
    Ok(segments(dir)?
        .into_iter()
        .filter(|(s, _)| *s < below)
        .collect())
}

/// Deletes the sealed segments of the log in `dir` named below `below` (from [`Wal::seal`]),
/// newest first, then syncs the folder: what [`Wal::remove_sealed`] does, without the log, so
/// that a store's flush can do it after letting the store go (deleting a large segment takes
/// tens of milliseconds on some file systems). Segments below `below` are sealed: the log never
/// writes them again. One already gone is no error (two clean-ups may overlap).
pub fn remove_sealed_in(dir: &Path, below: u64) -> Result<(), WalError> {
    for (_, path) in sealed_segments(dir, below)?.into_iter().rev() {
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_err(&path)(e));
            }
            _ => {}
        }
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Gives `f` the records of sealed segments `sealed`, in order, one at a time, so that a
/// segment is never held whole. Damage is an error (a sealed segment was synced whole).
pub fn for_each_record<E: From<WalError>>(
    sealed: &[(u64, PathBuf)],
    mut f: impl FnMut(Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    for (_, path) in sealed {
        let file = File::open(path).map_err(io_err(path))?;
        let mut reader = SegmentReader::new(io::BufReader::with_capacity(1 << 16, file));
        loop {
            match reader.next_record().map_err(io_err(path))? {
                Ok(Some(r)) => f(r)?,
                Ok(None) => break,
                Err(reason) => {
                    return Err(WalError::Corrupt {
                        path: path.clone(),
                        offset: reader.pos,
                        reason,
                    }
                    .into())
                }
            }
        }
    }
    Ok(())
}

/// The segment that replaces sealed segments, written a record at a time, then put in their
/// place ([`Replacement::finish`]) crash-safely for a reader that skips what it has already
/// read: the new segment is written aside, fsynced and renamed over the *last* sealed segment,
/// then the earlier ones are deleted newest first. At every step, reading the folder in order
/// gives the old records, then (possibly) the new segment, whose records repeat some already
/// read.
pub struct Replacement {
    dir: PathBuf,
    tmp: PathBuf,
    w: BufWriter<File>,
    /// Bytes written, headers included.
    pub bytes: u64,
}

impl Replacement {
    /// Starts the new segment aside, in `dir`.
    pub fn create(dir: &Path) -> Result<Replacement, WalError> {
        let tmp = dir.join("replace.tmp");
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        Ok(Replacement {
            dir: dir.to_path_buf(),
            tmp,
            w: BufWriter::with_capacity(1 << 16, file),
            bytes: 0,
        })
    }

    /// Appends one record.
    pub fn append(&mut self, r: &[u8]) -> Result<(), WalError> {
        if r.len() > MAX_RECORD {
            return Err(WalError::TooLarge(r.len()));
        }
        let tmp = &self.tmp;
        self.w
            .write_all(&(r.len() as u32).to_be_bytes())
            .and_then(|_| self.w.write_all(&crc32fast::hash(r).to_be_bytes()))
            .and_then(|_| self.w.write_all(r))
            .map_err(io_err(tmp))?;
        self.bytes += (HEADER + r.len()) as u64;
        Ok(())
    }

    /// Fsyncs the new segment and puts it in place of `sealed` (at least one; nothing is done
    /// otherwise): renamed over the last, the others deleted newest first.
    pub fn finish(self, sealed: &[(u64, PathBuf)]) -> Result<(), WalError> {
        let Replacement { dir, tmp, w, .. } = self;
        let file = w.into_inner().map_err(|e| WalError::Io {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        let Some((_, last)) = sealed.last() else {
            return fs::remove_file(&tmp).map_err(io_err(&tmp));
        };
        fs::rename(&tmp, last).map_err(io_err(last))?;
        let sync_dir = || {
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&dir))
        };
        sync_dir()?;
        for (_, path) in sealed[..sealed.len() - 1].iter().rev() {
            fs::remove_file(path).map_err(io_err(path))?;
        }
        sync_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reopen_and_segments_roll() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, rec) = Wal::open(dir.path(), 100).unwrap();
        assert!(rec.records.is_empty());
        for i in 0..20u8 {
            assert_eq!(wal.append(&[i; 30]).unwrap(), i as u64);
        }
        wal.sync().unwrap();
        drop(wal);
        assert!(segments(dir.path()).unwrap().len() > 5);
        let (wal, rec) = Wal::open(dir.path(), 100).unwrap();
        assert_eq!(
            rec.records,
            (0..20u8).map(|i| vec![i; 30]).collect::<Vec<_>>()
        );
        assert_eq!(wal.next_seq(), 20);
    }

    #[test]
    fn a_checkpoint_cut_short_leaves_the_oldest_segments_and_numbering_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 100).unwrap();
        for i in 0..20u8 {
            wal.append(&[i; 30]).unwrap();
        }
        wal.sync().unwrap();
        drop(wal);
        // A checkpoint deletes newest first: a crash part-way leaves the oldest segment and
        // the current one, with a gap between them.
        let segs = segments(dir.path()).unwrap();
        for (_, path) in &segs[1..segs.len() - 1] {
            fs::remove_file(path).unwrap();
        }
        let (wal, rec) = Wal::open(dir.path(), 100).unwrap();
        assert_eq!(rec.records.first(), Some(&vec![0u8; 30]));
        assert_eq!(rec.records.last(), Some(&vec![19u8; 30]));
        assert_eq!(wal.next_seq(), 20);
    }

    #[test]
    fn damage_before_the_last_segment_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 50).unwrap();
        for i in 0..6u8 {
            wal.append(&[i; 30]).unwrap();
        }
        wal.sync().unwrap();
        drop(wal);
        let first = &segments(dir.path()).unwrap()[0].1;
        let mut bytes = fs::read(first).unwrap();
        bytes[10] ^= 0xff;
        fs::write(first, bytes).unwrap();
        assert!(matches!(
            Wal::open(dir.path(), 50),
            Err(WalError::Corrupt { .. })
        ));
    }
}
