//! Crash recovery of the write-ahead log, against a model: whatever a crash does to the bytes
//! written after the last sync, reopening gives back every synced record, then the unsynced
//! records that reached the disk whole, in order, and nothing else.

use proptest::prelude::*;
use std::fs;
use vigie_store::Wal;

fn last_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn a_torn_or_corrupt_tail_loses_only_unsynced_records(
        synced in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..20),
        unsynced in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..20),
        cut in any::<prop::sample::Index>(),
        flip in any::<bool>(),
        segment_bytes in prop_oneof![Just(1u64 << 20), 64u64..400],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), segment_bytes).unwrap();
        for r in &synced {
            wal.append(r).unwrap();
        }
        wal.sync().unwrap();
        let seg = last_segment(dir.path());
        let durable_len = fs::metadata(&seg).unwrap().len();
        let seg_count_before = fs::read_dir(dir.path()).unwrap().count();
        for r in &unsynced {
            wal.append(r).unwrap();
        }
        wal.sync().unwrap();
        drop(wal);
        // The crash damages only what came after the last sync, in the last segment.
        let seg = last_segment(dir.path());
        let mut bytes = fs::read(&seg).unwrap();
        let start = if fs::read_dir(dir.path()).unwrap().count() == seg_count_before { durable_len as usize } else { 0 };
        prop_assume!(bytes.len() > start);
        let at = start + cut.index(bytes.len() - start);
        if flip {
            bytes[at] ^= 0x5a;
        } else {
            bytes.truncate(at);
        }
        fs::write(&seg, &bytes).unwrap();

        let (mut wal, rec) = Wal::open(dir.path(), segment_bytes).unwrap();
        let all: Vec<Vec<u8>> = synced.iter().chain(&unsynced).cloned().collect();
        prop_assert!(rec.records.len() >= synced.len(), "lost synced records");
        prop_assert_eq!(&rec.records[..], &all[..rec.records.len()]);
        // The log goes on after recovery.
        wal.append(b"after").unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, again) = Wal::open(dir.path(), segment_bytes).unwrap();
        prop_assert_eq!(again.records.len(), rec.records.len() + 1);
        prop_assert_eq!(again.truncated_bytes, 0);
    }
}
