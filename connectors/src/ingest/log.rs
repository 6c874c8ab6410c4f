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

impl IngestLog {
    /// Opens (or creates) the log in `dir`; committed batches are sent on `engine` in log
    /// order after they are durable.
    pub fn open(dir: &Path, engine: mpsc::Sender<Vec<Record>>) -> Result<Opened, IngestError> {
        let (mut wal, rec) = Wal::open(dir, SEGMENT_BYTES)?;
        let mut recovered = Vec::new();
        for (index, bytes) in rec.records.iter().enumerate() {
            let batch: Vec<Record> =
                serde_json::from_slice(bytes).map_err(|e| IngestError::Corrupt {
                    index,
                    reason: e.to_string(),
                })?;
            recovered.extend(batch);
        }
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
                        if result.is_ok() && !batch.is_empty() {
                            let bytes = serde_json::to_vec(&batch).expect("records serialize");
                            if let Err(e) = wal.append(&bytes) {
                                result = Err(e.to_string());
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
                        // records rather than acknowledge any more.
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
