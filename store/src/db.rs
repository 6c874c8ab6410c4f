//! The store: series, a write-ahead log, an in-memory head and blocks on disk.
//!
//! Every write is a batch of samples `(series, timestamp, value)` stamped with one
//! *revision*: the time (ms) at which the writer knew those values, made strictly increasing
//! by the store. The batch is appended to the write-ahead log and fsynced before
//! [`Store::write`] returns its [`Ack`]; then it joins the head. A point written again (a late
//! record revised an hour already written) gets a new version; reads see the version with the
//! greatest revision, or the greatest revision up to a given time (`as_of`): what the value
//! was as known then. When the head is large, [`Store::flush`] writes it out as one block per
//! time partition and empties the log; [`Store::compact`] merges the blocks of a partition,
//! drops partitions older than the retention and, if asked, superseded versions older than a
//! window.

use crate::block::{self, Block, Version};
use crate::jobs::{normalise, partition_start, CompactReport, Compaction, Flush, Flushed, Merged};
use crate::series::SeriesKey;
use crate::wal::Wal;
use crate::StoreError;
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use vigie_model::Point;

const REC_SERIES: u8 = 1;
const REC_BATCH: u8 = 2;
const REC_DROP: u8 = 3;
const REC_REV: u8 = 4;
/// Samples per log record (20 bytes each, well under the log's record limit).
const BATCH_RECORD: usize = 200_000;

/// How the store is laid out and bounded.
#[derive(Clone, Debug)]
pub struct Options {
    /// Span of a time partition (one block per partition and flush), ms.
    pub partition_ms: i64,
    /// Versions the head may hold before a write flushes it to blocks.
    pub head_max_versions: usize,
    /// Size at which the write-ahead log starts a new segment.
    pub wal_segment_bytes: u64,
    /// Partitions wholly older than `now − retention` are dropped by [`Store::compact`].
    pub retention_ms: Option<i64>,
    /// Versions superseded before `now − keep_revisions` are dropped by [`Store::compact`];
    /// `None` keeps every version (the whole revision history).
    pub keep_revisions_ms: Option<i64>,
    /// A write that fills the head does not write it out itself: the writer asks
    /// [`Store::needs_flush`] and has the head written out by [`Store::begin_flush`]'s job,
    /// off its own path.
    pub background_flush: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            partition_ms: 30 * 24 * 3_600_000,
            head_max_versions: 2_000_000,
            wal_segment_bytes: 64 << 20,
            retention_ms: None,
            keep_revisions_ms: None,
            background_flush: false,
        }
    }
}

/// A durable write: its revision and the samples it held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub revision: i64,
    pub samples: usize,
}

/// What [`Store::open`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub blocks: usize,
    pub wal_records: usize,
    /// Bytes cut from the end of the log: a write a crash interrupted, never acknowledged.
    pub wal_truncated_bytes: u64,
    pub head_versions: usize,
    /// Unfinished block files (`.tmp`) removed.
    pub removed_tmp: usize,
}

/// Sizes, for reports and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub series: usize,
    pub head_versions: usize,
    pub blocks: usize,
    pub block_versions: u64,
    pub block_bytes: u64,
    pub wal_bytes: u64,
    pub last_revision: i64,
}

/// How [`Store::downsample`] reduces the values of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agg {
    Mean,
    Min,
    Max,
    Last,
    Sum,
    Count,
}

impl Agg {
    /// Parses `mean`, `min`, `max`, `last`, `sum` or `count`.
    pub fn parse(s: &str) -> Option<Agg> {
        Some(match s {
            "mean" => Agg::Mean,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "last" => Agg::Last,
            "sum" => Agg::Sum,
            "count" => Agg::Count,
            _ => return None,
        })
    }

    /// Reduces the values of one step, in time order (never empty).
    pub fn apply(self, values: &[f64]) -> f64 {
        match self {
            Agg::Mean => values.iter().sum::<f64>() / values.len() as f64,
            Agg::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
            Agg::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Agg::Last => values[values.len() - 1],
            Agg::Sum => values.iter().sum(),
            Agg::Count => values.len() as f64,
        }
    }
}

/// The embedded time-series store; one writer, any number of reads between writes.
pub struct Store {
    dir: PathBuf,
    opts: Options,
    wal: Wal,
    /// Series ids defined in the log since its last checkpoint.
    wal_defined: FxHashSet<u32>,
    keys: Vec<SeriesKey>,
    ids: FxHashMap<SeriesKey, u32>,
    /// Measurement-and-tags bytes → the ids of their fields.
    prefixes: FxHashMap<Vec<u8>, Vec<(String, u32)>>,
    head: FxHashMap<u32, Vec<Version>>,
    head_versions: usize,
    /// A head being written out by a [`Flush`] job, read as part of the head until
    /// [`Store::finish_flush`] puts its blocks in place.
    frozen: Option<Arc<FxHashMap<u32, Vec<Version>>>>,
    frozen_versions: usize,
    /// The greatest retention cut applied while a flush job ran, for the blocks it brings.
    cut_during_flush: Option<i64>,
    blocks: Vec<Arc<Block>>,
    /// Series id → (block, entry) pairs, rebuilt when the blocks change.
    located: FxHashMap<u32, Vec<(usize, usize)>>,
    /// The next block number, shared with the flush and compaction jobs.
    seqs: Arc<AtomicU64>,
    last_rev: i64,
    scratch: Vec<u8>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// For each timestamp of sorted versions, the value of its greatest revision up to `as_of`.
pub fn resolve(versions: &[Version], as_of: Option<i64>) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> = Vec::new();
    let mut last_ts = None;
    for v in versions {
        if as_of.is_some_and(|a| v.rev > a) {
            continue;
        }
        if last_ts == Some(v.ts) {
            *out.last_mut().expect("same ts seen") = (v.ts, v.value);
        } else {
            out.push((v.ts, v.value));
            last_ts = Some(v.ts);
        }
    }
    out
}

/// Reduces points to one value per step of `step` ms from `start`, for the steps that have
/// points; each step is stamped with its start.
pub fn downsample(points: &[(i64, f64)], start: i64, step: i64, agg: Agg) -> Vec<(i64, f64)> {
    let step = step.max(1);
    let mut out = Vec::new();
    let mut i = 0;
    let mut values = Vec::new();
    while i < points.len() {
        let bucket = start + (points[i].0 - start).div_euclid(step) * step;
        values.clear();
        while i < points.len() && points[i].0 < bucket.saturating_add(step) {
            values.push(points[i].1);
            i += 1;
        }
        out.push((bucket, agg.apply(&values)));
    }
    out
}

/// What a finished flush leaves to do once the store is let go ([`Store::finish_flush`]):
/// delete the log's segments that its blocks now hold. Until it runs they stay, and a store
/// opened meanwhile (after a crash) reads them again: the same versions as its blocks, as
/// when a crash falls between the blocks' publication and the deletion.
#[must_use = "the log's segments written out stay until it runs"]
#[derive(Debug)]
pub struct LogCleanup {
    dir: std::path::PathBuf,
    below: u64,
}

impl LogCleanup {
    /// Deletes the segments and syncs the log's folder.
    pub fn run(self) -> Result<(), StoreError> {
        Ok(crate::wal::remove_sealed_in(&self.dir, self.below)?)
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, recovering from the log what was acknowledged
    /// after the last flush.
    pub fn open(dir: &Path, opts: Options) -> Result<(Store, OpenReport), StoreError> {
        let blocks_dir = dir.join("blocks");
        fs::create_dir_all(&blocks_dir).map_err(io(&blocks_dir))?;
        let mut report = OpenReport::default();
        let mut blocks = Vec::new();
        for entry in fs::read_dir(&blocks_dir).map_err(io(&blocks_dir))? {
            let path = entry.map_err(io(&blocks_dir))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.ends_with(".tmp") {
                fs::remove_file(&path).map_err(io(&path))?;
                report.removed_tmp += 1;
            } else if let Some(stem) = name.strip_suffix(".blk") {
                let seq = stem
                    .split('_')
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| StoreError::Corrupt {
                        path: path.clone(),
                        reason: "a block file name that is not `SEQ_PARTITION.blk`".into(),
                    })?;
                blocks.push(Arc::new(Block::open(&path, seq)?));
            }
        }
        blocks.sort_by_key(|b| b.seq);
        report.blocks = blocks.len();
        let (wal, recovered) = Wal::open(&dir.join("wal"), opts.wal_segment_bytes)?;
        let mut store = Store {
            dir: dir.to_path_buf(),
            opts,
            wal,
            wal_defined: FxHashSet::default(),
            keys: Vec::new(),
            ids: FxHashMap::default(),
            prefixes: FxHashMap::default(),
            head: FxHashMap::default(),
            head_versions: 0,
            frozen: None,
            frozen_versions: 0,
            cut_during_flush: None,
            seqs: Arc::new(AtomicU64::new(blocks.last().map_or(0, |b| b.seq + 1))),
            last_rev: blocks.iter().map(|b| b.max_rev).max().unwrap_or(i64::MIN),
            blocks,
            located: FxHashMap::default(),
            scratch: Vec::new(),
        };
        let keys: Vec<SeriesKey> = store
            .blocks
            .iter()
            .flat_map(|b| b.entries.iter().map(|e| e.key.clone()))
            .collect();
        for k in keys {
            store.intern(k);
        }
        store.relocate();
        report.wal_records = recovered.records.len();
        report.wal_truncated_bytes = recovered.truncated_bytes;
        let wal_path = dir.join("wal");
        let mut wal_ids: FxHashMap<u32, u32> = FxHashMap::default();
        for (i, rec) in recovered.records.iter().enumerate() {
            let bad = |what: &str| StoreError::Corrupt {
                path: wal_path.clone(),
                reason: format!("log record {i}: {what}"),
            };
            match rec.first() {
                Some(&REC_SERIES) if rec.len() >= 5 => {
                    let wal_id = u32::from_be_bytes(rec[1..5].try_into().expect("4 bytes"));
                    let (key, _) =
                        SeriesKey::decode(&rec[5..]).map_err(|_| bad("a malformed series key"))?;
                    wal_ids.insert(wal_id, store.intern(key));
                }
                Some(&REC_BATCH) if rec.len() >= 13 && (rec.len() - 13) % 20 == 0 => {
                    let rev = i64::from_be_bytes(rec[1..9].try_into().expect("8 bytes"));
                    store.last_rev = store.last_rev.max(rev);
                    for s in rec[13..].chunks_exact(20) {
                        let wal_id = u32::from_be_bytes(s[0..4].try_into().expect("4 bytes"));
                        let id = *wal_ids
                            .get(&wal_id)
                            .ok_or_else(|| bad("a sample of an undefined series"))?;
                        let ts = i64::from_be_bytes(s[4..12].try_into().expect("8 bytes"));
                        let value =
                            f64::from_bits(u64::from_be_bytes(s[12..20].try_into().expect("8")));
                        store
                            .head
                            .entry(id)
                            .or_default()
                            .push(Version { ts, rev, value });
                        store.head_versions += 1;
                    }
                }
                Some(&REC_DROP) if rec.len() == 9 => {
                    let cutoff = i64::from_be_bytes(rec[1..9].try_into().expect("8 bytes"));
                    store.apply_drop(cutoff)?;
                }
                Some(&REC_REV) if rec.len() == 9 => {
                    let rev = i64::from_be_bytes(rec[1..9].try_into().expect("8 bytes"));
                    store.last_rev = store.last_rev.max(rev);
                }
                _ => return Err(bad("an unknown or malformed record")),
            }
        }
        report.head_versions = store.head_versions;
        Ok((store, report))
    }

    fn intern(&mut self, key: SeriesKey) -> u32 {
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let id = self.keys.len() as u32;
        self.scratch.clear();
        SeriesKey::encode_prefix(&key.measurement, &key.tags, &mut self.scratch);
        self.prefixes
            .entry(self.scratch.clone())
            .or_default()
            .push((key.field.clone(), id));
        self.ids.insert(key.clone(), id);
        self.keys.push(key);
        id
    }

    /// The id of a series named by parts, interned without building its key when known.
    fn id_of(&mut self, measurement: &str, tags: &[(String, String)], field: &str) -> u32 {
        self.scratch.clear();
        SeriesKey::encode_prefix(measurement, tags, &mut self.scratch);
        if let Some(fields) = self.prefixes.get(self.scratch.as_slice()) {
            if let Some((_, id)) = fields.iter().find(|(f, _)| f == field) {
                return *id;
            }
        }
        self.intern(SeriesKey {
            measurement: measurement.to_string(),
            tags: tags.to_vec(),
            field: field.to_string(),
        })
    }

    /// The head, and the one a flush job is writing out if any.
    fn heads(&self) -> impl Iterator<Item = &FxHashMap<u32, Vec<Version>>> {
        std::iter::once(&self.head).chain(self.frozen.as_deref())
    }

    fn relocate(&mut self) {
        self.located.clear();
        for (bi, b) in self.blocks.iter().enumerate() {
            for (ei, e) in b.entries.iter().enumerate() {
                let id = self.ids[&e.key];
                self.located.entry(id).or_default().push((bi, ei));
            }
        }
    }

    /// Writes every field of `points` as known at `known_at_ms`; durable when it returns.
    /// Non-finite values are written as they are (the store keeps any f64).
    pub fn write_points(&mut self, points: &[Point], known_at_ms: i64) -> Result<Ack, StoreError> {
        let mut samples = Vec::with_capacity(points.len() * 4);
        for p in points {
            for (field, value) in &p.fields {
                let id = self.id_of(&p.measurement, &p.tags, field);
                samples.push((id, p.ts_ms, *value));
            }
        }
        self.write_ids(&samples, known_at_ms)
    }

    /// Writes samples `(series, ts ms, value)` as known at `known_at_ms`; durable when it
    /// returns.
    pub fn write(
        &mut self,
        samples: &[(SeriesKey, i64, f64)],
        known_at_ms: i64,
    ) -> Result<Ack, StoreError> {
        let ids: Vec<(u32, i64, f64)> = samples
            .iter()
            .map(|(k, t, v)| (self.intern(k.clone()), *t, *v))
            .collect();
        self.write_ids(&ids, known_at_ms)
    }

    fn write_ids(
        &mut self,
        samples: &[(u32, i64, f64)],
        known_at_ms: i64,
    ) -> Result<Ack, StoreError> {
        if samples.is_empty() {
            return Ok(Ack {
                revision: self.last_rev,
                samples: 0,
            });
        }
        let rev = known_at_ms.max(self.last_rev.saturating_add(1));
        let mut rec = Vec::new();
        for &(id, _, _) in samples {
            if self.wal_defined.insert(id) {
                rec.clear();
                rec.push(REC_SERIES);
                rec.extend_from_slice(&id.to_be_bytes());
                self.keys[id as usize].encode(&mut rec);
                self.wal.append(&rec)?;
            }
        }
        for part in samples.chunks(BATCH_RECORD) {
            rec.clear();
            rec.push(REC_BATCH);
            rec.extend_from_slice(&rev.to_be_bytes());
            rec.extend_from_slice(&(part.len() as u32).to_be_bytes());
            for &(id, ts, value) in part {
                rec.extend_from_slice(&id.to_be_bytes());
                rec.extend_from_slice(&ts.to_be_bytes());
                rec.extend_from_slice(&value.to_bits().to_be_bytes());
            }
            self.wal.append(&rec)?;
        }
        self.wal.sync()?;
        self.last_rev = rev;
        for &(id, ts, value) in samples {
            self.head
                .entry(id)
                .or_default()
                .push(Version { ts, rev, value });
        }
        self.head_versions += samples.len();
        if !self.opts.background_flush && self.needs_flush() {
            self.flush()?;
        }
        Ok(Ack {
            revision: rev,
            samples: samples.len(),
        })
    }

    fn part_of(&self, ts: i64) -> i64 {
        partition_start(ts, self.opts.partition_ms)
    }

    /// True when the head holds enough versions to be written out, and no flush is under way
    /// (with [`Options::background_flush`]).
    pub fn needs_flush(&self) -> bool {
        self.frozen.is_none() && self.head_versions >= self.opts.head_max_versions
    }

    /// True when a flush is under way and the head has filled twice over meanwhile: a writer
    /// faster than its flushes waits for one, or the head would grow without bound.
    pub fn head_overfull(&self) -> bool {
        self.frozen.is_some() && self.head_versions >= self.opts.head_max_versions.saturating_mul(2)
    }

    /// Writes the head out as blocks, one per partition, then empties the log: the three
    /// steps of [`Store::begin_flush`], [`Flush::run`] and [`Store::finish_flush`] in one. An
    /// error if a flush job is under way.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if self.frozen.is_some() {
            return Err(StoreError::FlushUnderWay);
        }
        match self.begin_flush()? {
            Some(job) => {
                let done = job.run()?;
                self.finish_flush(done)?.run()
            }
            None => Ok(()),
        }
    }

    /// The first step of a flush, quick: ends the log's segment (what the head holds is all in
    /// segments the log will not write again), sets the head aside as read-only and starts an
    /// empty one. The job it returns writes the set-aside head as blocks without the store
    /// ([`Flush::run`]); meanwhile writes go on into the new head and segment, and reads see
    /// both heads. `None` when the head is empty or a flush is already under way.
    pub fn begin_flush(&mut self) -> Result<Option<Flush>, StoreError> {
        if self.head_versions == 0 || self.frozen.is_some() {
            return Ok(None);
        }
        let sealed_below = self.wal.seal()?;
        // The new segment starts with the last revision, so that revisions keep increasing
        // even when every block that held it is dropped later.
        let mut rec = vec![REC_REV];
        rec.extend_from_slice(&self.last_rev.to_be_bytes());
        self.wal.append(&rec)?;
        self.wal.sync()?;
        // Series are defined again in the new segment before their first sample there.
        self.wal_defined.clear();
        let head = Arc::new(std::mem::take(&mut self.head));
        let keys = head
            .keys()
            .map(|&id| (id, self.keys[id as usize].clone()))
            .collect();
        self.frozen = Some(Arc::clone(&head));
        self.frozen_versions = self.head_versions;
        self.head_versions = 0;
        Ok(Some(Flush {
            dir: self.dir.join("blocks"),
            partition_ms: self.opts.partition_ms,
            head,
            keys,
            seqs: Arc::clone(&self.seqs),
            sealed_below,
        }))
    }

    /// The last step of a flush, quick: the blocks join the store (renamed into place, the
    /// folder synced once) and the set-aside head goes. The log's segments it came from are
    /// deleted by the [`LogCleanup`] it returns, to run once the store is let go: writers need
    /// not wait for the deletion of large files.
    pub fn finish_flush(&mut self, done: Flushed) -> Result<LogCleanup, StoreError> {
        let mut blocks: Vec<Arc<Block>> = block::publish_all(done.blocks)?
            .into_iter()
            .map(Arc::new)
            .collect();
        if let Some(cut) = self.cut_during_flush.take() {
            // The retention moved while the job ran: it applies to the head the job wrote.
            blocks = self.cut_blocks(blocks, cut)?.0;
        }
        self.blocks.extend(blocks);
        self.blocks.sort_by_key(|b| b.seq);
        self.frozen = None;
        self.frozen_versions = 0;
        self.relocate();
        Ok(LogCleanup {
            dir: self.wal.dir().to_path_buf(),
            below: done.sealed_below,
        })
    }

    /// Of `blocks`, those wholly before `cutoff` deleted and those that straddle it rewritten
    /// with what lies after; returns what is kept, sorted, and how many went or were
    /// rewritten.
    fn cut_blocks(
        &self,
        blocks: Vec<Arc<Block>>,
        cutoff: i64,
    ) -> Result<(Vec<Arc<Block>>, usize), StoreError> {
        let mut dropped = 0;
        let mut keep = Vec::with_capacity(blocks.len());
        let dir = self.dir.join("blocks");
        for b in blocks {
            if b.part_end <= cutoff {
                fs::remove_file(&b.path).map_err(io(&b.path))?;
                dropped += 1;
            } else if b.part_start < cutoff && b.entries.iter().any(|e| e.min_ts < cutoff) {
                // A block written with another partition span straddles the cut: rewrite it
                // with what lies after (the new block is durable before the old one goes).
                let seq = self.seqs.fetch_add(1, Ordering::Relaxed);
                let mut w = block::Writer::create(&dir, seq, b.part_start, b.part_end)?;
                for (i, e) in b.entries.iter().enumerate() {
                    let vs: Vec<Version> =
                        b.read(i)?.into_iter().filter(|v| v.ts >= cutoff).collect();
                    if !vs.is_empty() {
                        w.push(&e.key, &vs)?;
                    }
                }
                if !w.is_empty() {
                    keep.push(Arc::new(w.finish()?));
                }
                fs::remove_file(&b.path).map_err(io(&b.path))?;
                dropped += 1;
            } else {
                keep.push(b);
            }
        }
        keep.sort_by_key(|b| b.seq);
        if dropped > 0 {
            block::sync_dir(&dir)?;
        }
        Ok((keep, dropped))
    }

    fn apply_drop(&mut self, cutoff: i64) -> Result<usize, StoreError> {
        let blocks = std::mem::take(&mut self.blocks);
        let (keep, dropped) = self.cut_blocks(blocks, cutoff)?;
        self.blocks = keep;
        let mut removed = 0;
        for vs in self.head.values_mut() {
            let before = vs.len();
            vs.retain(|v| v.ts >= cutoff);
            removed += before - vs.len();
        }
        self.head.retain(|_, vs| !vs.is_empty());
        self.head_versions -= removed;
        // The head a flush job is writing out is read without what the cut dropped; the job's
        // blocks are cut again when they come in (`finish_flush`).
        if let Some(frozen) = &mut self.frozen {
            self.cut_during_flush = Some(self.cut_during_flush.map_or(cutoff, |c| c.max(cutoff)));
            if frozen.values().flatten().any(|v| v.ts < cutoff) {
                let mut kept = (**frozen).clone();
                kept.values_mut()
                    .for_each(|vs| vs.retain(|v| v.ts >= cutoff));
                kept.retain(|_, vs| !vs.is_empty());
                self.frozen_versions = kept.values().map(Vec::len).sum();
                *frozen = Arc::new(kept);
            }
        }
        self.relocate();
        Ok(dropped)
    }

    /// Drops every point before the partition that holds `cutoff_ms`: whole partitions go,
    /// so the cut falls on a partition boundary (a block written with another partition span
    /// that straddles it is rewritten). Returns the blocks removed or rewritten.
    pub fn drop_before(&mut self, cutoff_ms: i64) -> Result<usize, StoreError> {
        let cutoff = self.part_of(cutoff_ms);
        let mut rec = vec![REC_DROP];
        rec.extend_from_slice(&cutoff.to_be_bytes());
        self.wal.append(&rec)?;
        self.wal.sync()?;
        self.apply_drop(cutoff)
    }

    /// Applies the retention, then merges the blocks of each partition into one (pruning
    /// superseded versions older than `keep_revisions_ms` if set), `now_ms` being the present.
    /// The three steps of [`Store::plan_compaction`], [`Compaction::run`] and
    /// [`Store::finish_compaction`] in one.
    pub fn compact(&mut self, now_ms: i64) -> Result<CompactReport, StoreError> {
        let plan = self.plan_compaction(now_ms)?;
        let merged = plan.run()?;
        self.finish_compaction(merged)
    }

    /// The first step of a compaction, quick: applies the retention and picks the partitions
    /// to merge, with block numbers for their merged blocks. The merge itself
    /// ([`Compaction::run`]) reads only block files, which never change once written, so it
    /// can run without the store: a writer holding the store behind a lock takes the lock for
    /// this step and for [`Store::finish_compaction`] only, and keeps writing meanwhile. One
    /// compaction at a time.
    pub fn plan_compaction(&mut self, now_ms: i64) -> Result<Compaction, StoreError> {
        let mut report = CompactReport::default();
        if let Some(r) = self.opts.retention_ms {
            report.partitions_dropped = self.drop_before(now_ms.saturating_sub(r))?;
        }
        let prune_before = self
            .opts
            .keep_revisions_ms
            .map(|k| now_ms.saturating_sub(k));
        let mut by_part: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
        for b in &self.blocks {
            by_part.entry(b.part_start).or_default().push(Arc::clone(b));
        }
        let parts: Vec<(i64, Vec<Arc<Block>>)> = by_part
            .into_iter()
            .filter(|(_, blocks)| blocks.len() >= 2 || prune_before.is_some())
            .collect();
        Ok(Compaction {
            dir: self.dir.join("blocks"),
            prune_before,
            parts,
            seqs: Arc::clone(&self.seqs),
            report,
        })
    }

    /// The last step of a compaction, quick: the merged blocks replace theirs. A partition
    /// one of whose blocks went meanwhile (the retention of another compaction) keeps what it
    /// has now, and its merged block is deleted.
    pub fn finish_compaction(&mut self, merged: Merged) -> Result<CompactReport, StoreError> {
        let Merged { parts, mut report } = merged;
        let present: FxHashSet<u64> = self.blocks.iter().map(|b| b.seq).collect();
        let mut remove: FxHashSet<u64> = FxHashSet::default();
        let mut publish = Vec::new();
        for (sources, block) in parts {
            if sources.iter().all(|seq| present.contains(seq)) {
                remove.extend(sources);
                publish.push(block);
                report.partitions_merged += 1;
            }
            // Otherwise dropped unpublished: its file goes.
        }
        let added = block::publish_all(publish)?.into_iter().map(Arc::new);
        let mut keep = Vec::with_capacity(self.blocks.len());
        for b in std::mem::take(&mut self.blocks) {
            if remove.contains(&b.seq) {
                fs::remove_file(&b.path).map_err(io(&b.path))?;
                report.blocks_removed += 1;
            } else {
                keep.push(b);
            }
        }
        keep.extend(added);
        keep.sort_by_key(|b| b.seq);
        self.blocks = keep;
        if report.blocks_removed > 0 {
            block::sync_dir(&self.dir.join("blocks"))?;
        }
        self.relocate();
        Ok(report)
    }

    /// True when a compaction at `now_ms` has work: a partition with `min_blocks` blocks or
    /// more, or a partition past the retention.
    pub fn needs_compaction(&self, now_ms: i64, min_blocks: usize) -> bool {
        let mut per_part: FxHashMap<i64, usize> = FxHashMap::default();
        for b in &self.blocks {
            *per_part.entry(b.part_start).or_default() += 1;
        }
        let expired = self.opts.retention_ms.is_some_and(|r| {
            let cutoff = self.part_of(now_ms.saturating_sub(r));
            self.blocks.iter().any(|b| b.part_end <= cutoff)
        });
        expired || per_part.values().any(|n| *n >= min_blocks.max(2))
    }

    /// Every series the store knows, sorted.
    pub fn keys(&self) -> Vec<SeriesKey> {
        let mut v = self.keys.clone();
        v.sort();
        v
    }

    /// Every series of `measurement` with `field` and all the tags of `filter`, sorted.
    pub fn series(
        &self,
        measurement: &str,
        filter: &[(&str, &str)],
        field: &str,
    ) -> Vec<SeriesKey> {
        let mut v: Vec<SeriesKey> = self
            .keys
            .iter()
            .filter(|k| k.matches(measurement, filter, field))
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Every stored version of `key` with `start ≤ ts < end`, sorted by timestamp then
    /// revision.
    pub fn versions(
        &self,
        key: &SeriesKey,
        start: i64,
        end: i64,
    ) -> Result<Vec<Version>, StoreError> {
        let Some(&id) = self.ids.get(key) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for &(bi, ei) in self.located.get(&id).map(Vec::as_slice).unwrap_or_default() {
            let e = &self.blocks[bi].entries[ei];
            if e.max_ts < start || e.min_ts >= end {
                continue;
            }
            out.extend(
                self.blocks[bi]
                    .read(ei)?
                    .into_iter()
                    .filter(|v| v.ts >= start && v.ts < end),
            );
        }
        for head in self.heads() {
            if let Some(vs) = head.get(&id) {
                out.extend(vs.iter().filter(|v| v.ts >= start && v.ts < end));
            }
        }
        normalise(&mut out);
        Ok(out)
    }

    /// The points of `key` with `start ≤ ts < end`, each at its latest revision up to `as_of`
    /// (all revisions when `None`).
    pub fn range(
        &self,
        key: &SeriesKey,
        start: i64,
        end: i64,
        as_of: Option<i64>,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        Ok(resolve(&self.versions(key, start, end)?, as_of))
    }

    /// [`Store::range`] reduced to one value per step.
    pub fn downsample(
        &self,
        key: &SeriesKey,
        start: i64,
        end: i64,
        step: i64,
        agg: Agg,
        as_of: Option<i64>,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        Ok(downsample(
            &self.range(key, start, end, as_of)?,
            start,
            step,
            agg,
        ))
    }

    /// The point of `key` with the greatest timestamp before `end`, as known at `as_of`.
    /// Reads partitions from the latest back and stops at the first that has one.
    pub fn last_before(
        &self,
        key: &SeriesKey,
        end: i64,
        as_of: Option<i64>,
    ) -> Result<Option<(i64, f64)>, StoreError> {
        let Some(&id) = self.ids.get(key) else {
            return Ok(None);
        };
        // Partitions as the blocks record them (a store may have been written with another
        // partition span) and as the head's versions fall in them now.
        let mut parts: Vec<(i64, i64)> = Vec::new();
        for &(bi, ei) in self.located.get(&id).map(Vec::as_slice).unwrap_or_default() {
            let b = &self.blocks[bi];
            if b.entries[ei].min_ts < end {
                parts.push((b.part_start, b.part_end.min(end)));
            }
        }
        let in_heads = self.heads().filter_map(|h| h.get(&id)).flatten();
        for v in in_heads {
            if v.ts < end {
                let p = self.part_of(v.ts);
                parts.push((p, p.saturating_add(self.opts.partition_ms).min(end)));
            }
        }
        parts.sort_unstable_by_key(|&(s, e)| (std::cmp::Reverse(e), s));
        parts.dedup();
        let mut best: Option<(i64, f64)> = None;
        for (start, stop) in parts {
            if best.is_some_and(|(t, _)| t >= stop) {
                break;
            }
            if let Some(p) = self.range(key, start, stop, as_of)?.pop() {
                if best.is_none_or(|(t, _)| p.0 > t) {
                    best = Some(p);
                }
            }
        }
        Ok(best)
    }

    /// The point of `key` with the greatest timestamp, as known at `as_of`.
    pub fn latest(
        &self,
        key: &SeriesKey,
        as_of: Option<i64>,
    ) -> Result<Option<(i64, f64)>, StoreError> {
        self.last_before(key, i64::MAX, as_of)
    }

    /// Every version of the point of `key` at `ts`: `(revision, value)`, oldest first.
    pub fn revisions(&self, key: &SeriesKey, ts: i64) -> Result<Vec<(i64, f64)>, StoreError> {
        Ok(self
            .versions(key, ts, ts.saturating_add(1))?
            .into_iter()
            .map(|v| (v.rev, v.value))
            .collect())
    }

    /// The revision of the last acknowledged write (`i64::MIN` for an empty store).
    pub fn last_revision(&self) -> i64 {
        self.last_rev
    }

    /// Sizes of the store now.
    pub fn stats(&self) -> Result<Stats, StoreError> {
        Ok(Stats {
            series: self.keys.len(),
            head_versions: self.head_versions + self.frozen_versions,
            blocks: self.blocks.len(),
            block_versions: self
                .blocks
                .iter()
                .flat_map(|b| b.entries.iter().map(|e| e.versions as u64))
                .sum(),
            block_bytes: self.blocks.iter().map(|b| b.bytes).sum(),
            wal_bytes: self.wal.size_bytes()?,
            last_revision: self.last_rev,
        })
    }

    /// Flushes the head, so that reopening reads blocks only.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k() -> SeriesKey {
        SeriesKey::new("indicator", &[("zone", "13001")], "risk_score")
    }

    #[test]
    fn compaction_prunes_old_superseded_versions_and_applies_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            partition_ms: 100,
            retention_ms: Some(1_000),
            keep_revisions_ms: Some(50),
            ..Options::default()
        };
        let (mut s, _) = Store::open(dir.path(), opts.clone()).unwrap();
        // Point 150 revised at 10, 20 and 900; point 5 (partition 0) written once.
        s.write(&[(k(), 150, 1.0), (k(), 5, 7.0)], 10).unwrap();
        s.flush().unwrap();
        s.write(&[(k(), 150, 2.0)], 20).unwrap();
        s.flush().unwrap();
        s.write(&[(k(), 150, 3.0)], 900).unwrap();
        s.flush().unwrap();
        assert_eq!(s.stats().unwrap().blocks, 4);
        // At now = 1,000, keep = 50: revision 10 was superseded by 20 and 20 by 900, both
        // before 950, so both go; 900 is the current version and stays.
        let r = s.compact(1_000).unwrap();
        assert_eq!(r.versions_pruned, 2);
        assert_eq!(s.revisions(&k(), 150).unwrap(), vec![(900, 3.0)]);
        assert_eq!(
            s.range(&k(), 0, 1_000, None).unwrap(),
            vec![(5, 7.0), (150, 3.0)]
        );
        // At now = 1,150 the retention drops partition [0, 100).
        let r = s.compact(1_150).unwrap();
        assert_eq!(r.partitions_dropped, 1);
        assert_eq!(s.range(&k(), 0, 1_000, None).unwrap(), vec![(150, 3.0)]);
        drop(s);
        let (s, rep) = Store::open(dir.path(), opts).unwrap();
        assert_eq!(rep.blocks, 1);
        assert_eq!(s.range(&k(), 0, 1_000, None).unwrap(), vec![(150, 3.0)]);
        assert_eq!(s.last_revision(), 900);
    }

    #[test]
    fn a_damaged_block_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Store::open(dir.path(), Options::default()).unwrap();
        s.write(&[(k(), 0, 1.0)], 1).unwrap();
        s.close().unwrap();
        let blk = std::fs::read_dir(dir.path().join("blocks"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut bytes = std::fs::read(&blk).unwrap();
        let n = bytes.len();
        bytes[n - 20] ^= 0x55;
        std::fs::write(&blk, bytes).unwrap();
        let err = Store::open(dir.path(), Options::default()).err().unwrap();
        assert!(err.to_string().contains(".blk"), "{err}");
    }
}
