//! The durable ingest log: accepted records, in arrival order, fsynced before acknowledgement.
//!
//! It is a write-ahead log of the store's kind ([`vigie_store::Wal`]: segments of length- and
//! CRC-framed records, a torn tail cut on recovery). Each log record is one committed batch:
//! the JSON array of its [`Record`]s, each with its `seq` — its position in the log, which is
//! the arrival order the model's ties use. One thread owns the log: callers hand it batches
//! and wait; it appends every batch waiting, fsyncs once (group commit), answers them all, and
//! passes the batches on to the engine in the same order.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use vigie_model::Record;
use vigie_store::Wal;

/// Segment size of the ingest log.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Largest log record written (well under the write-ahead log's 16 MiB limit): a batch whose
/// JSON is larger is written as several records, appended and synced together.
const RECORD_BYTES: usize = 4 << 20;

/// The JSON arrays of `records`, each at most [`RECORD_BYTES`] unless one record alone is
/// larger (the sources' payload limits keep a record far below the log's limit).
fn encode_chunks(records: &[Record]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    for r in records {
        let one = serde_json::to_vec(r).expect("records serialize");
        if !cur.is_empty() && cur.len() + one.len() + 2 > RECORD_BYTES {
            cur.push(b']');
            out.push(std::mem::take(&mut cur));
        }
        cur.push(if cur.is_empty() { b'[' } else { b',' });
        cur.extend_from_slice(&one);
    }
    if !cur.is_empty() {
        cur.push(b']');
        out.push(cur);
    }
    out
}

/// Errors of the ingest log.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("ingest log: {0}")]
    Wal(#[from] vigie_store::WalError),
    #[error("ingest log record {index} is not a batch of records: {reason}")]
    Corrupt { index: usize, reason: String },
    #[error("the ingest log has stopped")]
    Stopped,
}

/// A durable batch: the sequence numbers its records got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    pub first_seq: u64,
    pub count: usize,
}

type Reply = tokio::sync::oneshot::Sender<Result<Committed, String>>;

/// A handle on the ingest log; clone it for each source.
#[derive(Clone)]
pub struct IngestLog {
    tx: mpsc::Sender<(Vec<Record>, Reply)>,
}

/// What [`IngestLog::open`] recovered.
pub struct Opened {
    pub log: IngestLog,
    /// Every record the log holds, in order: the engine reads them first.
    pub recovered: Vec<Record>,
    /// Bytes cut from the log's end: a batch a crash interrupted, never acknowledged.
    pub truncated_bytes: u64,
    /// The thread that owns the log; it ends when every handle is dropped.
    pub thread: JoinHandle<()>,
}

/// `dir` with a suffix added to its name.
fn beside(dir: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

fn io_err(path: &Path, e: std::io::Error) -> IngestError {
    IngestError::Corrupt {
        index: 0,
        reason: format!("{}: {e}", path.display()),
    }
}

/// Finishes or undoes a compaction a crash interrupted: `DIR.new` is a complete new log only
/// once `DIR` has been renamed `DIR.old`.
fn settle_compaction(dir: &Path) -> Result<(), IngestError> {
    let (new, old) = (beside(dir, ".new"), beside(dir, ".old"));
    if old.exists() {
        if !dir.exists() {
            std::fs::rename(&new, dir).map_err(|e| io_err(&new, e))?;
        }
        std::fs::remove_dir_all(&old).map_err(|e| io_err(&old, e))?;
    }
    if new.exists() {
        std::fs::remove_dir_all(&new).map_err(|e| io_err(&new, e))?;
    }
    Ok(())
}

fn read_all(wal_records: &[Vec<u8>]) -> Result<Vec<Record>, IngestError> {
    let mut out = Vec::new();
    for (index, bytes) in wal_records.iter().enumerate() {
        let batch: Vec<Record> =
            serde_json::from_slice(bytes).map_err(|e| IngestError::Corrupt {
                index,
                reason: e.to_string(),
            })?;
        out.extend(batch);
    }
    Ok(out)
}

impl IngestLog {
    /// Compacts the log in `dir` (not open): `keep` gets every record, in order, and returns
    /// those that still matter (it must keep the order). They are written to `DIR.new` and
    /// fsynced; then `DIR` becomes `DIR.old`, `DIR.new` becomes `DIR`, and `DIR.old` goes. A
    /// crash anywhere leaves either the old log or the new one whole. The last record is
    /// always kept, so that sequence numbers keep increasing. Returns (kept, before).
    pub fn compact(
        dir: &Path,
        keep: impl FnOnce(Vec<Record>) -> Vec<Record>,
    ) -> Result<(usize, usize), IngestError> {
        settle_compaction(dir)?;
        if !dir.exists() {
            return Ok((0, 0));
        }
        let (wal, rec) = Wal::open(dir, SEGMENT_BYTES)?;
        drop(wal);
        let all = read_all(&rec.records)?;
        let before = all.len();
        let last = all.last().cloned();
        let mut kept = keep(all);
        if let Some(last) = last {
            if kept.last().is_none_or(|k| k.seq != last.seq) {
                kept.push(last);
            }
        }
        if kept.len() == before {
            return Ok((before, before));
        }
        let new = beside(dir, ".new");
        let (mut wal, _) = Wal::open(&new, SEGMENT_BYTES)?;
        for bytes in encode_chunks(&kept) {
            wal.append(&bytes)?;
        }
        wal.sync()?;
        drop(wal);
        std::fs::File::open(&new)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(&new, e))?;
        let old = beside(dir, ".old");
        std::fs::rename(dir, &old).map_err(|e| io_err(dir, e))?;
        std::fs::rename(&new, dir).map_err(|e| io_err(&new, e))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err(parent, e))?;
        }
        std::fs::remove_dir_all(&old).map_err(|e| io_err(&old, e))?;
        Ok((kept.len(), before))
    }

    /// Opens (or creates) the log in `dir`; committed batches are sent on `engine` in log
    /// order after they are durable.
    pub fn open(dir: &Path, engine: mpsc::Sender<Vec<Record>>) -> Result<Opened, IngestError> {
        settle_compaction(dir)?;
        let (mut wal, rec) = Wal::open(dir, SEGMENT_BYTES)?;
        let recovered = read_all(&rec.records)?;
        let mut next_seq = recovered.last().map_or(0, |r| r.seq + 1);
        let (tx, rx) = mpsc::channel::<(Vec<Record>, Reply)>();
        let thread = std::thread::Builder::new()
            .name("ingest-log".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut waiting = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        waiting.push(more);
                    }
                    let mut result: Result<(), String> = Ok(());
                    let mut answers = Vec::with_capacity(waiting.len());
                    for (mut batch, reply) in waiting {
                        let committed = Committed {
                            first_seq: next_seq,
                            count: batch.len(),
                        };
                        for r in &mut batch {
                            r.seq = next_seq;
                            next_seq += 1;
                        }
                        if result.is_ok() {
                            for bytes in encode_chunks(&batch) {
                                if let Err(e) = wal.append(&bytes) {
                                    result = Err(e.to_string());
                                    break;
                                }
                            }
                        }
                        answers.push((batch, reply, committed));
                    }
                    if result.is_ok() {
                        if let Err(e) = wal.sync() {
                            result = Err(e.to_string());
                        }
                    }
                    for (batch, reply, committed) in answers {
                        match &result {
                            Ok(()) => {
                                if !batch.is_empty() {
                                    // The engine may have stopped first, at shutdown.
                                    let _ = engine.send(batch);
                                }
                                let _ = reply.send(Ok(committed));
                            }
                            Err(e) => {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
                    }
                    if result.is_err() {
                        // A log that failed to write cannot say what it holds: stop taking
                        // records rather than acknowledge any more. Its buffer is not flushed
                        // (the log is forgotten, not dropped), so batches answered with an
                        // error here are not found in the log at the next start unless the
                        // failing write had already reached the file.
                        std::mem::forget(wal);
                        return;
                    }
                }
            })
            .expect("spawn the ingest-log thread");
        Ok(Opened {
            log: IngestLog { tx },
            recovered,
            truncated_bytes: rec.truncated_bytes,
            thread,
        })
    }

    /// Makes `records` durable and hands them to the engine; returns once they are fsynced.
    pub async fn commit(&self, records: Vec<Record>) -> Result<Committed, IngestError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx
            .send((records, reply))
            .map_err(|_| IngestError::Stopped)?;
        match answer.await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(IngestError::Corrupt {
                index: 0,
                reason: format!("writing failed: {e}"),
            }),
            Err(_) => Err(IngestError::Stopped),
        }
    }

    /// [`IngestLog::commit`] for a thread that is not async.
    pub fn commit_blocking(&self, records: Vec<Record>) -> Result<Committed, IngestError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx
            .send((records, reply))
            .map_err(|_| IngestError::Stopped)?;
        match answer.blocking_recv() {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(IngestError::Corrupt {
                index: 0,
                reason: format!("writing failed: {e}"),
            }),
            Err(_) => Err(IngestError::Stopped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_larger_than_a_log_record_is_split_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel();
        let opened = IngestLog::open(dir.path(), tx).unwrap();
        let mut big = incident(1);
        big.id = Some("x".repeat(1 << 20));
        let batch: Vec<Record> = (0..40).map(|_| big.clone()).collect();
        assert!(encode_chunks(&batch).len() > 5);
        let c = opened.log.commit_blocking(batch).unwrap();
        assert_eq!(c.count, 40);
        opened.log.commit_blocking(vec![incident(2)]).unwrap();
        drop(opened.log);
        opened.thread.join().unwrap();
        assert_eq!(rx.try_iter().flatten().count(), 41);
        let (tx, _rx) = mpsc::channel();
        let again = IngestLog::open(dir.path(), tx).unwrap();
        assert_eq!(again.recovered.len(), 41);
    }

    #[test]
    fn compaction_keeps_what_it_is_told_and_survives_an_interrupted_swap() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("ingest");
        let (tx, _rx) = mpsc::channel();
        let opened = IngestLog::open(&log_dir, tx).unwrap();
        for i in 0..10 {
            opened.log.commit_blocking(vec![incident(i)]).unwrap();
        }
        drop(opened.log);
        opened.thread.join().unwrap();
        // Keep the even timestamps; the last record (seq 9) is kept whatever keep says.
        let (kept, before) = IngestLog::compact(&log_dir, |all| {
            all.into_iter().filter(|r| r.ts % 2 == 0).collect()
        })
        .unwrap();
        assert_eq!((kept, before), (6, 10));
        let (tx, _rx) = mpsc::channel();
        let again = IngestLog::open(&log_dir, tx).unwrap();
        let seqs: Vec<u64> = again.recovered.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![0, 2, 4, 6, 8, 9]);
        assert_eq!(
            again
                .log
                .commit_blocking(vec![incident(1)])
                .unwrap()
                .first_seq,
            10
        );
        drop(again.log);
        again.thread.join().unwrap();
        // A crash after the old log was moved aside and before the new one took its place:
        // the next open finishes the swap.
        let old = beside(&log_dir, ".old");
        let new = beside(&log_dir, ".new");
        std::fs::rename(&log_dir, &new).unwrap();
        std::fs::create_dir(&old).unwrap();
        let (tx, _rx) = mpsc::channel();
        let third = IngestLog::open(&log_dir, tx).unwrap();
        assert_eq!(third.recovered.len(), 7);
        assert!(!old.exists() && !new.exists());
    }
    use vigie_model::{Body, Feed};

    fn incident(ts: i64) -> Record {
        Record {
            feed: Feed::Incident,
            ts,
            seq: 0,
            id: None,
            body: Some(Body::Incident {
                zone: 0,
                severity: 3,
            }),
        }
    }

    #[test]
    fn committed_records_come_back_in_order_with_their_seq() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel();
        let opened = IngestLog::open(dir.path(), tx).unwrap();
        assert!(opened.recovered.is_empty());
        let log = opened.log.clone();
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        log.commit_blocking(vec![incident(w * 1000 + i), incident(i)])
                            .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        drop((log, opened.log));
        opened.thread.join().unwrap();
        let sent: Vec<Record> = rx.try_iter().flatten().collect();
        assert_eq!(sent.len(), 400);
        assert!(sent.iter().enumerate().all(|(i, r)| r.seq == i as u64));
        let (tx, _rx) = mpsc::channel();
        let again = IngestLog::open(dir.path(), tx).unwrap();
        assert_eq!(again.recovered, sent);
        let c = again.log.commit_blocking(vec![incident(5)]).unwrap();
        assert_eq!(c.first_seq, 400);
    }
}
