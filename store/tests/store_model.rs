//! Model-based test of the store: random writes, overwrites, flushes, crashes, reopens,
//! compactions and drops, each followed by queries checked against a plain in-memory model.

use proptest::prelude::*;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use vigie_store::{
    Agg, Compaction, Flush, Flushed, LogCleanup, Merged, Options, SeriesKey, Store, StoreError,
};

const PART: i64 = 10;
const KEYS: usize = 4;

fn key(i: usize) -> SeriesKey {
    let zone = format!("z{}", i % 2);
    SeriesKey::new(
        "indicator",
        &[("zone", zone.as_str())],
        ["risk", "load"][i / 2],
    )
}

#[derive(Clone, Debug)]
enum Op {
    Write(Vec<(usize, i64, u64)>, i64),
    Flush,
    /// Drop the store without flushing; optionally leave a torn, unacknowledged write at the
    /// end of the log.
    Crash(bool),
    /// Close and reopen, with the usual partition span or another one (reads must not depend
    /// on the span the blocks were written with).
    Reopen(bool),
    Compact,
    DropBefore(i64),
    /// The steps of a flush or a compaction done apart, as a writer with an upkeep thread
    /// does them, with writes, reads, crashes and the rest in between.
    Begin(Job),
    Run(Job),
    Finish(Job),
    /// A finished flush's deletion of the log's segments, run apart (as the upkeep thread
    /// runs it once it has let the store go): the newest pending one.
    Cleanup,
}

#[derive(Clone, Copy, Debug)]
enum Job {
    Flush,
    Compaction,
}

/// The jobs under way: set aside or planned, then run.
#[derive(Default)]
struct Jobs {
    flush: Option<Flush>,
    flushed: Option<Flushed>,
    compaction: Option<Compaction>,
    merged: Option<Merged>,
    /// Finished flushes' deletions of the log's segments, not run yet.
    cleanups: Vec<LogCleanup>,
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u32..5).prop_map(|v| (v as f64).to_bits()),
        any::<u64>(),
        Just(f64::NAN.to_bits()),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop::collection::vec((0..KEYS, -5i64..45, value()), 0..12), 0i64..40)
            .prop_map(|(s, k)| Op::Write(s, k)),
        1 => Just(Op::Flush),
        1 => any::<bool>().prop_map(Op::Crash),
        1 => any::<bool>().prop_map(Op::Reopen),
        1 => Just(Op::Compact),
        1 => (-5i64..30).prop_map(Op::DropBefore),
        1 => Just(Op::Cleanup),
        3 => (0..3usize, any::<bool>()).prop_map(|(step, flush)| {
            let job = if flush { Job::Flush } else { Job::Compaction };
            [Op::Begin(job), Op::Run(job), Op::Finish(job)][step].clone()
        }),
    ]
}

/// (key, ts, rev, value bits)
#[derive(Default)]
struct Model {
    versions: Vec<(usize, i64, i64, u64)>,
    last_rev: Option<i64>,
}

impl Model {
    fn resolved(&self, k: usize, as_of: Option<i64>) -> Vec<(i64, u64)> {
        let mut best: std::collections::BTreeMap<i64, (i64, u64)> = Default::default();
        for &(kk, ts, rev, v) in &self.versions {
            if kk != k || as_of.is_some_and(|a| rev > a) {
                continue;
            }
            let e = best.entry(ts).or_insert((rev, v));
            if rev >= e.0 {
                *e = (rev, v);
            }
        }
        best.into_iter().map(|(t, (_, v))| (t, v)).collect()
    }
}

fn opts(part: i64) -> Options {
    Options {
        partition_ms: part,
        head_max_versions: 9,
        wal_segment_bytes: 300,
        retention_ms: None,
        keep_revisions_ms: None,
        background_flush: false,
    }
}

fn tear_the_log(dir: &Path) {
    let mut segs: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    let last = segs.last().unwrap();
    let mut f = OpenOptions::new().append(true).open(last).unwrap();
    // A record header announcing 40 bytes, followed by only 5: a write cut by a crash.
    f.write_all(&[0, 0, 0, 40, 1, 2, 3, 4, 2, 0, 0, 0, 0])
        .unwrap();
}

fn bits(v: Vec<(i64, f64)>) -> Vec<(i64, u64)> {
    v.into_iter().map(|(t, x)| (t, x.to_bits())).collect()
}

fn check(store: &Store, model: &Model, probe: i64) -> Result<(), TestCaseError> {
    let revs: Vec<Option<i64>> = vec![None, model.last_rev.map(|r| r - 1), Some(probe)];
    for k in 0..KEYS {
        let key = key(k);
        for &as_of in &revs {
            let want = model.resolved(k, as_of);
            let got = bits(store.range(&key, i64::MIN, i64::MAX, as_of).unwrap());
            prop_assert_eq!(&got, &want, "range of {} as of {:?}", key, as_of);
            let latest = store
                .latest(&key, as_of)
                .unwrap()
                .map(|(t, v)| (t, v.to_bits()));
            prop_assert_eq!(latest, want.last().copied());
            let before = store
                .last_before(&key, probe, as_of)
                .unwrap()
                .map(|(t, v)| (t, v.to_bits()));
            prop_assert_eq!(before, want.iter().rev().find(|(t, _)| *t < probe).copied());
            let step = 1 + probe.rem_euclid(7);
            let got = store
                .downsample(&key, -3, 40, step, Agg::Max, as_of)
                .unwrap();
            let mut expect: Vec<(i64, f64)> = Vec::new();
            for &(t, v) in want.iter().filter(|(t, _)| (-3..40).contains(t)) {
                let b = -3 + (t + 3).div_euclid(step) * step;
                match expect.last_mut() {
                    Some((bb, m)) if *bb == b => *m = m.max(f64::from_bits(v)),
                    _ => expect.push((b, f64::NEG_INFINITY.max(f64::from_bits(v)))),
                }
            }
            prop_assert_eq!(bits(got), bits(expect));
        }
        let ts = probe;
        let mut want: Vec<(i64, u64)> = model
            .versions
            .iter()
            .filter(|(kk, t, _, _)| *kk == k && *t == ts)
            .map(|&(_, _, r, v)| (r, v))
            .collect();
        want.sort();
        want.dedup_by_key(|(r, _)| *r);
        prop_assert_eq!(bits(store.revisions(&key, ts).unwrap()), want);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_its_model(ops in prop::collection::vec((op(), -5i64..45), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut part = PART;
        let mut store = Some(Store::open(dir.path(), opts(part)).unwrap().0);
        let mut model = Model::default();
        let mut jobs = Jobs::default();
        for (op, probe) in ops {
            let s = store.as_mut().unwrap();
            match op {
                Op::Write(samples, known_at) => {
                    let samples: Vec<(SeriesKey, i64, f64)> = samples
                        .iter()
                        .map(|&(k, t, v)| (key(k), t, f64::from_bits(v)))
                        .collect();
                    let ack = s.write(&samples, known_at).unwrap();
                    if !samples.is_empty() {
                        let rev = model.last_rev.map_or(known_at, |r| known_at.max(r + 1));
                        prop_assert_eq!(ack.revision, rev);
                        model.last_rev = Some(rev);
                        // Within one write, a later sample of the same point wins.
                        for (k, t, v) in samples {
                            let k = (0..KEYS).find(|&i| key(i) == k).unwrap();
                            model.versions.retain(|&(kk, tt, rr, _)| !(kk == k && tt == t && rr == rev));
                            model.versions.push((k, t, rev, v.to_bits()));
                        }
                    }
                }
                Op::Flush => {
                    let under_way = jobs.flush.is_some() || jobs.flushed.is_some();
                    match s.flush() {
                        Err(StoreError::FlushUnderWay) => prop_assert!(under_way),
                        Err(e) => panic!("{e}"),
                        Ok(()) => prop_assert!(!under_way),
                    }
                }
                Op::Begin(Job::Flush) => {
                    if jobs.flush.is_none() && jobs.flushed.is_none() {
                        jobs.flush = s.begin_flush().unwrap();
                    } else {
                        prop_assert!(s.begin_flush().unwrap().is_none());
                    }
                }
                Op::Run(Job::Flush) => {
                    if let Some(job) = jobs.flush.take() {
                        jobs.flushed = Some(job.run().unwrap());
                    }
                }
                Op::Finish(Job::Flush) => {
                    if let Some(done) = jobs.flushed.take() {
                        jobs.cleanups.push(s.finish_flush(done).unwrap());
                    }
                }
                Op::Cleanup => {
                    if let Some(cleanup) = jobs.cleanups.pop() {
                        cleanup.run().unwrap();
                    }
                }
                Op::Begin(Job::Compaction) => {
                    if jobs.compaction.is_none() && jobs.merged.is_none() {
                        jobs.compaction = Some(s.plan_compaction(0).unwrap());
                    }
                }
                Op::Run(Job::Compaction) => {
                    if let Some(plan) = jobs.compaction.take() {
                        jobs.merged = Some(plan.run().unwrap());
                    }
                }
                Op::Finish(Job::Compaction) => {
                    if let Some(merged) = jobs.merged.take() {
                        s.finish_compaction(merged).unwrap();
                    }
                }
                Op::Crash(torn) => {
                    // What the jobs wrote stays on disk, put in place or not.
                    jobs = Jobs::default();
                    drop(store.take());
                    if torn {
                        tear_the_log(dir.path());
                    }
                    store = Some(Store::open(dir.path(), opts(part)).unwrap().0);
                }
                Op::Reopen(other) => {
                    // A flush under way is seen through before the store closes.
                    if let Some(job) = jobs.flush.take() {
                        jobs.flushed = Some(job.run().unwrap());
                    }
                    if let Some(done) = jobs.flushed.take() {
                        jobs.cleanups.push(s.finish_flush(done).unwrap());
                    }
                    for cleanup in jobs.cleanups.drain(..) {
                        cleanup.run().unwrap();
                    }
                    jobs = Jobs::default();
                    store.take().unwrap().close().unwrap();
                    part = if other { 7 } else { PART };
                    let (s, report) = Store::open(dir.path(), opts(part)).unwrap();
                    prop_assert_eq!(report.head_versions, 0);
                    store = Some(s);
                }
                Op::Compact => {
                    s.compact(0).unwrap();
                }
                Op::DropBefore(cut) => {
                    s.drop_before(cut).unwrap();
                    let aligned = cut.div_euclid(part) * part;
                    model.versions.retain(|v| v.1 >= aligned);
                }
            }
            check(store.as_ref().unwrap(), &model, probe)?;
        }
    }
}
