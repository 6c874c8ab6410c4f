//! Blocks: immutable files of compressed versions, one time partition each.
//!
//! A block holds, for every series it has data for, the versions `(ts, rev, value)` of the
//! points of one partition, sorted by timestamp then revision, as two Gorilla chunks: `(ts,
//! value)` (integer-coded when every value is a whole number) and the revisions as runs,
//! `(rev, count)`. An index at the end says where each series lies; a footer points to
//! the index. Blocks are written to a temporary name, fsynced, renamed and the folder fsynced,
//! so a block either exists whole or not at all. See `store/FORMAT.md`.

use crate::chunk::{integral, ChunkDecoder, ChunkEncoder, Values};
use crate::series::SeriesKey;
use crate::StoreError;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"VGSBLK01";
const FOOTER: usize = 8 + 8 + 8 + 8 + 4 + 8;

/// One version of one point: its timestamp, the revision that wrote it, and its value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Version {
    pub ts: i64,
    pub rev: i64,
    pub value: f64,
}

/// Where a series lies in a block.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: SeriesKey,
    pub min_ts: i64,
    pub max_ts: i64,
    pub versions: u32,
    offset: u64,
    len: u32,
}

/// An open block: its partition, its index, and the file to read sections from.
#[derive(Debug)]
pub struct Block {
    pub path: PathBuf,
    pub seq: u64,
    pub part_start: i64,
    pub part_end: i64,
    pub max_rev: i64,
    pub entries: Vec<Entry>,
    pub bytes: u64,
    file: File,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The file name of block `seq` of the partition starting at `part_start`.
pub fn block_name(part_start: i64, seq: u64) -> String {
    format!("{seq:012}_{part_start}.blk")
}

fn be_i64(b: &[u8]) -> i64 {
    i64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}
fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}
fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().expect("4 bytes"))
}

/// A block being written, a series at a time: each series' section goes to the file as it is
/// pushed, and only the index stays in memory, so merging large partitions holds one series'
/// versions at a time. Dropped unfinished, it removes its temporary file.
pub struct Writer {
    tmp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    file: Option<BufWriter<File>>,
    pos: u64,
    section: Vec<u8>,
    index: Vec<u8>,
    entries: Vec<Entry>,
    seq: u64,
    part_start: i64,
    part_end: i64,
    max_rev: i64,
}

impl Writer {
    /// Starts block `seq` of the partition `[part_start, part_end)` in `dir`, as `NAME.tmp`.
    pub fn create(
        dir: &Path,
        seq: u64,
        part_start: i64,
        part_end: i64,
    ) -> Result<Writer, StoreError> {
        let name = block_name(part_start, seq);
        let tmp = dir.join(format!("{name}.tmp"));
        let mut file = BufWriter::with_capacity(1 << 16, File::create(&tmp).map_err(io(&tmp))?);
        file.write_all(MAGIC).map_err(io(&tmp))?;
        Ok(Writer {
            path: dir.join(&name),
            dir: dir.to_path_buf(),
            file: Some(file),
            tmp,
            pos: MAGIC.len() as u64,
            section: Vec::new(),
            index: Vec::new(),
            entries: Vec::new(),
            seq,
            part_start,
            part_end,
            max_rev: i64::MIN,
        })
    }

    /// Appends a series' versions (sorted by `(ts, rev)`, not empty); series are pushed in
    /// key order.
    pub fn push(&mut self, key: &SeriesKey, versions: &[Version]) -> Result<(), StoreError> {
        let coding = if versions.iter().all(|v| integral(v.value)) {
            Values::Int
        } else {
            Values::Xor
        };
        let mut tv = ChunkEncoder::with_values(coding);
        for v in versions {
            tv.push(v.ts, v.value);
            self.max_rev = self.max_rev.max(v.rev);
        }
        // Revisions as runs: (revision, how many consecutive versions have it).
        let mut rv = ChunkEncoder::with_values(Values::Int);
        let mut i = 0;
        while i < versions.len() {
            let run = versions[i..]
                .iter()
                .take_while(|v| v.rev == versions[i].rev)
                .count();
            rv.push(versions[i].rev, run as f64);
            i += run;
        }
        let (tv, rv) = (tv.to_bytes(), rv.to_bytes());
        let section = &mut self.section;
        section.clear();
        section.extend_from_slice(&(tv.len() as u32).to_be_bytes());
        section.extend_from_slice(&tv);
        section.extend_from_slice(&rv);
        let crc = crc32fast::hash(section);
        section.extend_from_slice(&crc.to_be_bytes());
        let file = self.file.as_mut().expect("open until finished");
        file.write_all(section).map_err(io(&self.tmp))?;
        let offset = self.pos;
        let len = section.len() as u32;
        self.pos += len as u64;
        let min_ts = versions.first().map_or(0, |v| v.ts);
        let max_ts = versions.last().map_or(0, |v| v.ts);
        let index = &mut self.index;
        key.encode(index);
        index.extend_from_slice(&min_ts.to_be_bytes());
        index.extend_from_slice(&max_ts.to_be_bytes());
        index.extend_from_slice(&(versions.len() as u32).to_be_bytes());
        index.extend_from_slice(&offset.to_be_bytes());
        index.extend_from_slice(&len.to_be_bytes());
        self.entries.push(Entry {
            key: key.clone(),
            min_ts,
            max_ts,
            versions: versions.len() as u32,
            offset,
            len,
        });
        Ok(())
    }

    /// Series pushed so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no series was pushed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Ends the block and renames it into its folder: the block then exists whole.
    pub fn finish(self) -> Result<Block, StoreError> {
        self.finish_unpublished()?.publish()
    }

    /// Ends the block and makes it durable under its temporary name, where the store does
    /// not see it (recovery removes it): [`Unpublished::publish`] renames it into place.
    pub fn finish_unpublished(mut self) -> Result<Unpublished, StoreError> {
        let mut file = self.file.take().expect("open until finished");
        let count = (self.entries.len() as u32).to_be_bytes();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&count);
        crc.update(&self.index);
        let index_offset = self.pos;
        let mut tail = Vec::with_capacity(4 + self.index.len() + FOOTER);
        tail.extend_from_slice(&count);
        tail.extend_from_slice(&self.index);
        tail.extend_from_slice(&self.part_start.to_be_bytes());
        tail.extend_from_slice(&self.part_end.to_be_bytes());
        tail.extend_from_slice(&self.max_rev.to_be_bytes());
        tail.extend_from_slice(&index_offset.to_be_bytes());
        tail.extend_from_slice(&crc.finalize().to_be_bytes());
        tail.extend_from_slice(MAGIC);
        file.write_all(&tail).map_err(io(&self.tmp))?;
        let file = file
            .into_inner()
            .map_err(|e| io(&self.tmp)(e.into_error()))?;
        file.sync_all().map_err(io(&self.tmp))?;
        drop(file);
        Ok(Unpublished {
            tmp: std::mem::take(&mut self.tmp),
            path: std::mem::take(&mut self.path),
            dir: std::mem::take(&mut self.dir),
            seq: self.seq,
            part_start: self.part_start,
            part_end: self.part_end,
            max_rev: self.max_rev,
            entries: std::mem::take(&mut self.entries),
            bytes: index_offset + tail.len() as u64,
            published: false,
        })
    }
}

/// A block written whole under its temporary name ([`Writer::finish_unpublished`]). Dropped
/// unpublished, its file goes.
#[derive(Debug)]
pub struct Unpublished {
    tmp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    pub seq: u64,
    pub part_start: i64,
    pub part_end: i64,
    max_rev: i64,
    entries: Vec<Entry>,
    bytes: u64,
    published: bool,
}

impl Unpublished {
    /// Renames the block into its folder, durably, and opens it.
    pub fn publish(self) -> Result<Block, StoreError> {
        Ok(publish_all(vec![self])?
            .pop()
            .expect("one block in, one out"))
    }

    fn open(mut self) -> Result<Block, StoreError> {
        let file = File::open(&self.path).map_err(io(&self.path))?;
        Ok(Block {
            path: self.path.clone(),
            seq: self.seq,
            part_start: self.part_start,
            part_end: self.part_end,
            max_rev: self.max_rev,
            entries: std::mem::take(&mut self.entries),
            bytes: self.bytes,
            file,
        })
    }
}

/// Renames blocks into their folders, then syncs each folder once (not once a block: a sync
/// of the folder takes milliseconds, and a flush or a compaction publishes a block per
/// partition under the store's lock, while writers wait), and opens them, in order.
pub fn publish_all(blocks: Vec<Unpublished>) -> Result<Vec<Block>, StoreError> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut renamed = Vec::with_capacity(blocks.len());
    for mut b in blocks {
        fs::rename(&b.tmp, &b.path).map_err(io(&b.path))?;
        b.published = true;
        if !dirs.contains(&b.dir) {
            dirs.push(b.dir.clone());
        }
        renamed.push(b);
    }
    for dir in &dirs {
        sync_dir(dir)?;
    }
    renamed.into_iter().map(Unpublished::open).collect()
}

impl Drop for Unpublished {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Unfinished (an error, or abandoned): the temporary file goes. Recovery would remove
        // it too.
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Fsyncs a folder, so that names created or removed in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

impl Block {
    /// Opens a block file and reads its index; a bad footer or index is an error.
    pub fn open(path: &Path, seq: u64) -> Result<Block, StoreError> {
        let file = File::open(path).map_err(io(path))?;
        let bytes = file.metadata().map_err(io(path))?.len();
        if bytes < (MAGIC.len() + FOOTER) as u64 {
            return Err(corrupt(path, "shorter than a block's header and footer"));
        }
        let mut footer = [0u8; FOOTER];
        file.read_exact_at(&mut footer, bytes - FOOTER as u64)
            .map_err(io(path))?;
        if &footer[36..44] != MAGIC {
            return Err(corrupt(path, "the footer's magic bytes are wrong"));
        }
        let part_start = be_i64(&footer[0..]);
        let part_end = be_i64(&footer[8..]);
        let max_rev = be_i64(&footer[16..]);
        let index_offset = be_u64(&footer[24..]);
        let index_crc = be_u32(&footer[32..]);
        let index_end = bytes - FOOTER as u64;
        if index_offset < MAGIC.len() as u64 || index_offset > index_end {
            return Err(corrupt(path, "the index offset is out of the file"));
        }
        let mut index = vec![0u8; (index_end - index_offset) as usize];
        file.read_exact_at(&mut index, index_offset)
            .map_err(io(path))?;
        if crc32fast::hash(&index) != index_crc {
            return Err(corrupt(path, "the index checksum does not match"));
        }
        let bad = || corrupt(path, "the index is malformed");
        let count = be_u32(index.get(0..4).ok_or_else(bad)?) as usize;
        let mut pos = 4;
        let mut entries = Vec::with_capacity(count.min(1 << 20));
        for _ in 0..count {
            let (key, n) = SeriesKey::decode(&index[pos..]).map_err(|_| bad())?;
            pos += n;
            let rest = index.get(pos..pos + 32).ok_or_else(bad)?;
            let entry = Entry {
                key,
                min_ts: be_i64(&rest[0..]),
                max_ts: be_i64(&rest[8..]),
                versions: be_u32(&rest[16..]),
                offset: be_u64(&rest[20..]),
                len: be_u32(&rest[28..]),
            };
            pos += 32;
            if entry.offset + entry.len as u64 > index_offset {
                return Err(bad());
            }
            entries.push(entry);
        }
        Ok(Block {
            path: path.to_path_buf(),
            seq,
            part_start,
            part_end,
            max_rev,
            entries,
            bytes,
            file,
        })
    }

    /// Reads and checks the versions of entry `i`.
    pub fn read(&self, i: usize) -> Result<Vec<Version>, StoreError> {
        let e = &self.entries[i];
        let mut section = vec![0u8; e.len as usize];
        self.file
            .read_exact_at(&mut section, e.offset)
            .map_err(io(&self.path))?;
        let bad = |what: &str| corrupt(&self.path, format!("series {}: {what}", e.key));
        if section.len() < 8 {
            return Err(bad("section too short"));
        }
        let (body, crc) = section.split_at(section.len() - 4);
        if crc32fast::hash(body) != be_u32(crc) {
            return Err(bad("checksum does not match"));
        }
        let tv_len = be_u32(body) as usize;
        let tv = body.get(4..4 + tv_len).ok_or_else(|| bad("chunk length"))?;
        let rv = &body[4 + tv_len..];
        let tvs = ChunkDecoder::new(tv).map_err(|e| bad(&e.to_string()))?;
        let rvs = ChunkDecoder::new(rv).map_err(|e| bad(&e.to_string()))?;
        let mut out = Vec::with_capacity(e.versions as usize);
        let mut runs = rvs.map(|r| r.map_err(|e| bad(&e.to_string())));
        let (mut rev, mut left) = (0i64, 0u64);
        for a in tvs {
            let (ts, value) = a.map_err(|e| bad(&e.to_string()))?;
            while left == 0 {
                let (r, n) = runs
                    .next()
                    .ok_or_else(|| bad("fewer revisions than versions"))??;
                (rev, left) = (r, n as u64);
            }
            left -= 1;
            out.push(Version { ts, rev, value });
        }
        if out.len() != e.versions as usize {
            return Err(bad("version count differs from the index"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ts: i64, rev: i64, value: f64) -> Version {
        Version { ts, rev, value }
    }

    #[test]
    fn a_streamed_block_reads_back_and_an_abandoned_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = SeriesKey::new("indicator", &[("zone", "a")], "risk_score");
        let b = SeriesKey::new("indicator", &[("zone", "b")], "incidents");
        let va = vec![v(0, 1, 0.5), v(0, 2, 0.75), v(3_600_000, 2, -1.25)];
        let vb = vec![v(7_200_000, 3, 4.0)];
        let mut w = Writer::create(dir.path(), 7, 0, 86_400_000).unwrap();
        w.push(&a, &va).unwrap();
        w.push(&b, &vb).unwrap();
        assert_eq!(w.len(), 2);
        let written = w.finish().unwrap();
        let opened = Block::open(&written.path, 7).unwrap();
        assert_eq!(opened.bytes, written.bytes);
        assert_eq!(opened.max_rev, 3);
        assert_eq!((opened.part_start, opened.part_end), (0, 86_400_000));
        let keys: Vec<_> = opened.entries.iter().map(|e| e.key.clone()).collect();
        assert_eq!(keys, vec![a.clone(), b]);
        assert_eq!(opened.read(0).unwrap(), va);
        assert_eq!(opened.read(1).unwrap(), vb);

        let mut w = Writer::create(dir.path(), 8, 0, 86_400_000).unwrap();
        w.push(&a, &va).unwrap();
        drop(w);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![block_name(0, 7)]);
    }
}
