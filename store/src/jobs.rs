//! The store's two jobs that write blocks, made to run without the store: writing a head set
//! aside as blocks ([`Flush`], from [`Store::begin_flush`]) and merging a partition's blocks
//! ([`Compaction`], from [`Store::plan_compaction`]). The store takes its lock only to set a
//! job up and to put its blocks in place ([`Store::finish_flush`],
//! [`Store::finish_compaction`]); `run` is the long part, done on whatever thread the caller
//! likes (`vigie run`'s upkeep thread).
//!
//! [`Store::begin_flush`]: crate::Store::begin_flush
//! [`Store::plan_compaction`]: crate::Store::plan_compaction
//! [`Store::finish_flush`]: crate::Store::finish_flush
//! [`Store::finish_compaction`]: crate::Store::finish_compaction

use crate::block::{self, Block, Unpublished, Version};
use crate::series::SeriesKey;
use crate::StoreError;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What [`Store::compact`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactReport {
    pub partitions_merged: usize,
    pub blocks_removed: usize,
    pub versions_pruned: usize,
    pub partitions_dropped: usize,
}

/// The start of the time partition of span `partition_ms` that holds `ts`.
pub(crate) fn partition_start(ts: i64, partition_ms: i64) -> i64 {
    ts.div_euclid(partition_ms) * partition_ms
}

/// A head set aside by [`Store::begin_flush`], to be written out as blocks.
#[derive(Debug)]
pub struct Flush {
    pub(crate) dir: PathBuf,
    pub(crate) partition_ms: i64,
    pub(crate) head: Arc<FxHashMap<u32, Vec<Version>>>,
    pub(crate) keys: FxHashMap<u32, SeriesKey>,
    pub(crate) seqs: Arc<AtomicU64>,
    pub(crate) sealed_below: u64,
}

/// The blocks of a [`Flush`], for [`Store::finish_flush`].
#[derive(Debug)]
pub struct Flushed {
    pub(crate) blocks: Vec<Unpublished>,
    pub(crate) sealed_below: u64,
}

impl Flush {
    /// Writes the set-aside head as one block per time partition, durable under temporary
    /// names when this returns; nothing in the store changes until [`Store::finish_flush`]
    /// renames them into place (a crash before leaves the log, which still holds it all).
    pub fn run(self) -> Result<Flushed, StoreError> {
        // Each partition's block is written a series at a time, in the order of the keys.
        let mut head: Vec<(&SeriesKey, Vec<Version>)> = self
            .head
            .iter()
            .map(|(id, vs)| (&self.keys[id], vs.clone()))
            .collect();
        head.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut parts: BTreeMap<i64, Vec<(usize, std::ops::Range<usize>)>> = BTreeMap::new();
        for (hi, (_, vs)) in head.iter_mut().enumerate() {
            normalise(vs);
            let mut start = 0;
            while start < vs.len() {
                let p = partition_start(vs[start].ts, self.partition_ms);
                let end = start + vs[start..].partition_point(|v| v.ts < p + self.partition_ms);
                parts.entry(p).or_default().push((hi, start..end));
                start = end;
            }
        }
        let mut blocks = Vec::with_capacity(parts.len());
        for (p, series) in parts {
            let seq = self.seqs.fetch_add(1, Ordering::Relaxed);
            let mut w = block::Writer::create(&self.dir, seq, p, p + self.partition_ms)?;
            for (hi, range) in series {
                let (key, vs) = &head[hi];
                w.push(key, &vs[range])?;
            }
            blocks.push(w.finish_unpublished()?);
        }
        Ok(Flushed {
            blocks,
            sealed_below: self.sealed_below,
        })
    }
}

/// A compaction planned by [`Store::plan_compaction`]: the partitions to merge and their
/// blocks (shared with the store, read without it).
#[derive(Debug)]
pub struct Compaction {
    pub(crate) dir: PathBuf,
    pub(crate) prune_before: Option<i64>,
    pub(crate) parts: Vec<(i64, Vec<Arc<Block>>)>,
    pub(crate) seqs: Arc<AtomicU64>,
    pub(crate) report: CompactReport,
}

/// The merged blocks of a [`Compaction`], for [`Store::finish_compaction`]: each with the
/// numbers of the blocks it replaces.
#[derive(Debug)]
pub struct Merged {
    pub(crate) parts: Vec<(Vec<u64>, Unpublished)>,
    pub(crate) report: CompactReport,
}

impl Compaction {
    /// True when there is nothing to merge (the retention, if any, is already applied).
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Merges each planned partition's blocks into one block, durable under a temporary
    /// name when this returns; nothing in the store changes until
    /// [`Store::finish_compaction`] renames it into place (a crash before leaves the blocks
    /// it merges).
    pub fn run(self) -> Result<Merged, StoreError> {
        let Compaction {
            dir,
            prune_before,
            parts,
            seqs,
            mut report,
        } = self;
        let mut merged_parts = Vec::new();
        for (p, blocks) in parts {
            // Where each series lies in the partition's blocks; the merge then reads, merges
            // and writes one series at a time.
            let mut series: BTreeMap<&SeriesKey, Vec<(usize, usize)>> = BTreeMap::new();
            for (bi, b) in blocks.iter().enumerate() {
                for (ei, e) in b.entries.iter().enumerate() {
                    series.entry(&e.key).or_default().push((bi, ei));
                }
            }
            let merged = |locs: &[(usize, usize)]| -> Result<(Vec<Version>, usize), StoreError> {
                let mut vs = Vec::new();
                for &(bi, ei) in locs {
                    vs.extend(blocks[bi].read(ei)?);
                }
                normalise(&mut vs);
                let Some(before) = prune_before else {
                    return Ok((vs, 0));
                };
                let n = vs.len();
                let mut kept = Vec::with_capacity(n);
                for i in 0..n {
                    let superseded_early =
                        i + 1 < n && vs[i + 1].ts == vs[i].ts && vs[i + 1].rev < before;
                    if !superseded_early {
                        kept.push(vs[i]);
                    }
                }
                let pruned = n - kept.len();
                Ok((kept, pruned))
            };
            if blocks.len() < 2 {
                // One block: rewritten only if pruning drops something, which a first pass
                // finds without writing.
                let mut any = false;
                for locs in series.values() {
                    if merged(locs)?.1 > 0 {
                        any = true;
                        break;
                    }
                }
                if !any {
                    continue;
                }
            }
            // The blocks of one partition start may span differently (written with another
            // partition span): the merged block spans them all.
            let part_end = blocks.iter().map(|b| b.part_end).max().unwrap_or(p);
            let seq = seqs.fetch_add(1, Ordering::Relaxed);
            let mut w = block::Writer::create(&dir, seq, p, part_end)?;
            let mut pruned = 0;
            for (k, locs) in &series {
                let (vs, n) = merged(locs)?;
                pruned += n;
                w.push(k, &vs)?;
            }
            let b = w.finish_unpublished()?;
            report.versions_pruned += pruned;
            merged_parts.push((blocks.iter().map(|b| b.seq).collect(), b));
        }
        Ok(Merged {
            parts: merged_parts,
            report,
        })
    }
}

/// Sorts versions by timestamp then revision and keeps one per pair: the last given (a write
/// that names a point twice keeps its last sample; a version found both in a block and in the
/// log, after a crash between the flush and the log's checkpoint, is the same twice).
pub(crate) fn normalise(v: &mut Vec<Version>) {
    v.sort_by_key(|a| (a.ts, a.rev));
    let mut w = 0;
    for r in 0..v.len() {
        if w > 0 && v[w - 1].ts == v[r].ts && v[w - 1].rev == v[r].rev {
            v[w - 1] = v[r];
        } else {
            v[w] = v[r];
            w += 1;
        }
    }
    v.truncate(w);
}
