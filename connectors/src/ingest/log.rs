//! The durable ingest log: accepted records, in arrival order, fsynced before acknowledgement.
//!
//! It is a write-ahead log of the store's kind ([`vigie_store::Wal`]: segments of length- and
//! CRC-framed records, a torn tail cut on recovery). Each log record is one committed batch:
//! the JSON array of its [`Record`]s, each with its `seq` — its position in the log, which is
//! the arrival order the model's ties use. One thread owns the log: callers hand it batches
//! and wait; it appends every batch waiting, fsyncs once (group commit), answers them all, and
//! passes the batches on to the engine in the same order.
//!
//! **Deliveries.** A batch may carry delivery keys ([`Delivery`]): an HTTP `Idempotency-Key`,
//! an MQTT packet id of vigie's session with a digest of the message. They are written with the
//! batch (in its last log record, so a batch cut short by a crash has none) and remembered
//! (the last [`DELIVERIES_KEPT`]), so that a request or message redelivered after a crash
//! between the commit and its acknowledgement is recognised and not committed twice.
//!
//! **Compaction.** At start ([`IngestLog::compact`]) the whole log is rewritten into one
//! segment, a record at a time, as a running compaction rewrites its sealed segments. While
//! running ([`Compaction`]), a thread of its own asks the log thread to *seal* the current
//! segment (start a new one; commits go on into it), rewrites the sealed
//! segments into one — the records the `keep` rule retains, the last record, the deliveries —
//! written aside, fsynced and renamed over the last sealed segment, then deletes the earlier
//! sealed segments newest first ([`vigie_store::wal::Replacement`]). A reader skips a
//! record whose `seq` is not above the greatest one read before it, so the log read at any
//! point of that sequence (a crash) holds each record once.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use vigie_model::Record;
use vigie_store::Wal;

/// Records handed over at a time as [`IngestLog::open_streaming`] reads the log back.
pub const RECOVERY_BATCH: usize = 50_000;

/// Deliveries remembered (and carried over by compaction), newest kept.
pub const DELIVERIES_KEPT: usize = 200_000;

/// One delivery a committed batch answers: `key` names it (`http/<source>/<Idempotency-Key>`,
/// `mqtt/<session>/<packet id>`), `digest` fingerprints what was delivered under it, and the
/// batch's sequence numbers say what was committed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Delivery {
    pub key: String,
    pub digest: String,
    pub first_seq: u64,
    pub count: usize,
}

/// A log record with deliveries: `{"records": [...], "deliveries": [...]}` (one without is the
/// plain JSON array of its records).
#[derive(serde::Serialize, serde::Deserialize)]
struct Keyed {
    records: Vec<Record>,
    deliveries: Vec<Delivery>,
}

/// The deliveries remembered, by key, the oldest forgotten first.
#[derive(Default)]
struct Deliveries {
    by_key: HashMap<String, Delivery>,
    order: VecDeque<String>,
}

impl Deliveries {
    fn insert(&mut self, d: Delivery) {
        if self.by_key.insert(d.key.clone(), d.clone()).is_none() {
            self.order.push_back(d.key);
        }
        while self.order.len() > DELIVERIES_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.by_key.remove(&old);
            }
        }
    }

    fn in_order(&self) -> Vec<Delivery> {
        self.order
            .iter()
            .filter_map(|k| self.by_key.get(k).cloned())
            .collect()
    }
}

/// Segment size of the ingest log.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Largest log record written (well under the write-ahead log's 16 MiB limit): a batch whose
/// JSON is larger is written as several records, appended and synced together.
const RECORD_BYTES: usize = 4 << 20;

/// The log records of a batch: [`encode_chunks`], the deliveries in the last one.
fn encode_batch(records: &[Record], deliveries: &[Delivery]) -> Vec<Vec<u8>> {
    let mut chunks = encode_chunks(records);
    if !deliveries.is_empty() {
        let last = chunks.pop().unwrap_or_else(|| b"[]".to_vec());
        let records: Vec<Record> = serde_json::from_slice(&last).expect("our own JSON");
        let keyed = Keyed {
            records,
            deliveries: deliveries.to_vec(),
        };
        chunks.push(serde_json::to_vec(&keyed).expect("deliveries serialize"));
    }
    chunks
}

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

/// What [`IngestLog::commit_keyed`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The batch is durable.
    Committed(Committed),
    /// Its key was committed before (with this digest and these sequence numbers): nothing
    /// was written.
    Replayed(Delivery),
}

type Reply = tokio::sync::oneshot::Sender<Result<Outcome, String>>;

enum Request {
    Commit {
        records: Vec<Record>,
        /// (key, digest) of each delivery the batch answers.
        keys: Vec<(String, String)>,
        /// Whether a batch whose (single) key is known is a replay, not written.
        idempotent: bool,
        reply: Reply,
    },
}

/// A handle on the ingest log; clone it for each source.
#[derive(Clone)]
pub struct IngestLog {
    tx: mpsc::Sender<Request>,
    deliveries: Arc<Mutex<Deliveries>>,
}

/// Compaction while running: every `every`, when the sealed segments and the current one hold
/// at least `min_bytes` and twice what the last compaction left, the log is sealed and the
/// sealed segments rewritten with the records a [`Keep`] made by `keep` retains (the last
/// record is always kept). The sealed log is read twice, a record at a time, and never held
/// whole.
pub struct Compaction {
    pub every: Duration,
    pub min_bytes: u64,
    pub keep: Box<dyn FnMut() -> Box<dyn Keep> + Send>,
}

/// What one compaction keeps, decided in two passes over the sealed log: [`Keep::observe`]
/// sees every record in order, then [`Keep::keeps`] is asked of every record in order.
pub trait Keep {
    fn observe(&mut self, r: &Record);
    fn keeps(&mut self, r: &Record) -> bool;
}

/// What running compactions did, for `/metrics`.
#[derive(Debug, Default)]
pub struct CompactionStats {
    pub runs: std::sync::atomic::AtomicU64,
    pub records_dropped: std::sync::atomic::AtomicU64,
    pub bytes_before: std::sync::atomic::AtomicU64,
    pub bytes_after: std::sync::atomic::AtomicU64,
    pub errors: std::sync::atomic::AtomicU64,
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
    /// What running compaction does (zeros without [`Compaction`]).
    pub compactions: Arc<CompactionStats>,
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

/// Every record of the log's records in order — a record whose `seq` is not above the greatest
/// read before it is a copy a compaction left (see the module) and is skipped — and the
/// deliveries.
#[cfg(test)]
fn read_all(wal_records: &[Vec<u8>]) -> Result<(Vec<Record>, Vec<Delivery>), IngestError> {
    let mut out: Vec<Record> = Vec::new();
    let mut deliveries = Vec::new();
    for (index, bytes) in wal_records.iter().enumerate() {
        let (batch, d) = decode(index, bytes)?;
        deliveries.extend(d);
        for r in batch {
            if out.last().is_none_or(|last| r.seq > last.seq) {
                out.push(r);
            }
        }
    }
    Ok((out, deliveries))
}

/// Opens the log in `dir` (cutting a torn tail) and reads it through: `deliveries` gets the
/// deliveries, `f` the records in log order, at most [`RECOVERY_BATCH`] at a time — a record
/// whose `seq` is not above the last one read is a compaction's copy and is skipped. Returns the
/// open log, the bytes cut and the last `seq`.
fn read_in_batches(
    dir: &Path,
    deliveries: &mut dyn FnMut(Delivery),
    f: &mut dyn FnMut(Vec<Record>),
) -> Result<(Wal, u64, Option<u64>), IngestError> {
    let mut reader = LogReader::default();
    let mut batch: Vec<Record> = Vec::new();
    let (wal, truncated) = Wal::open_each(dir, SEGMENT_BYTES, |raw| {
        reader.read(&raw, deliveries, &mut |r| {
            batch.push(r);
            if batch.len() >= RECOVERY_BATCH {
                f(std::mem::take(&mut batch));
            }
            Ok(())
        })
    })?;
    if !batch.is_empty() {
        f(batch);
    }
    Ok((wal, truncated, reader.last_seq))
}

/// Reads log records in order: hands over their deliveries, and each record once — a record
/// whose `seq` is not above the greatest read before it is a copy a compaction left.
#[derive(Default)]
struct LogReader {
    index: usize,
    last_seq: Option<u64>,
}

impl LogReader {
    fn read(
        &mut self,
        raw: &[u8],
        deliveries: &mut dyn FnMut(Delivery),
        f: &mut dyn FnMut(Record) -> Result<(), IngestError>,
    ) -> Result<(), IngestError> {
        let (records, d) = decode(self.index, raw)?;
        self.index += 1;
        d.into_iter().for_each(deliveries);
        for r in records {
            if self.last_seq.is_none_or(|s| r.seq > s) {
                self.last_seq = Some(r.seq);
                f(r)?;
            }
        }
        Ok(())
    }
}

/// The records and deliveries of the log record at `index`.
fn decode(index: usize, bytes: &[u8]) -> Result<(Vec<Record>, Vec<Delivery>), IngestError> {
    let corrupt = |e: serde_json::Error| IngestError::Corrupt {
        index,
        reason: e.to_string(),
    };
    if bytes.first() == Some(&b'{') {
        let keyed: Keyed = serde_json::from_slice(bytes).map_err(corrupt)?;
        Ok((keyed.records, keyed.deliveries))
    } else {
        Ok((serde_json::from_slice(bytes).map_err(corrupt)?, Vec::new()))
    }
}

/// Gives `f` the records of the sealed segments in order, a log record at a time, skipping the
/// copies a compaction left (as [`read_all`] does); `deliveries` gets their deliveries.
fn each_sealed(
    files: &[(u64, std::path::PathBuf)],
    deliveries: &mut dyn FnMut(Delivery),
    f: &mut dyn FnMut(Record) -> Result<(), IngestError>,
) -> Result<u64, IngestError> {
    let (mut reader, mut bytes) = (LogReader::default(), 0u64);
    vigie_store::wal::for_each_record(files, |raw| {
        bytes += raw.len() as u64 + 8;
        reader.read(&raw, deliveries, f)
    })?;
    Ok(bytes)
}

/// The log records of a compacted log: the deliveries first (with no record), then the kept
/// records.
fn encode_compacted(kept: &[Record], deliveries: Vec<Delivery>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for chunk in deliveries.chunks(10_000) {
        out.push(
            serde_json::to_vec(&Keyed {
                records: Vec::new(),
                deliveries: chunk.to_vec(),
            })
            .expect("deliveries serialize"),
        );
    }
    out.extend(encode_chunks(kept));
    out
}

impl IngestLog {
    /// Compacts the log in `dir` (not open), a log record at a time: `keep` sees every record
    /// in order, then says which still matter; the last record is always kept, so that
    /// sequence numbers keep increasing. When some go, the deliveries and the kept records are
    /// written into one segment that replaces the others as a running compaction's does
    /// (crash-safe for a reader that skips sequence numbers it has read); when none go, nothing
    /// is written. It holds the deliveries and what `keep` holds, never the records: a start
    /// in bounded memory, whatever the log's size. Returns (kept, before).
    pub fn compact(dir: &Path, keep: &mut dyn Keep) -> Result<(usize, usize), IngestError> {
        settle_compaction(dir)?;
        if !dir.exists() {
            return Ok((0, 0));
        }
        // Recovery first: a torn tail is cut, so that every segment reads whole.
        drop(Wal::open_each(dir, SEGMENT_BYTES, |_| {
            Ok::<(), IngestError>(())
        })?);
        let files = vigie_store::wal::sealed_segments(dir, u64::MAX)?;
        let r = rewrite(dir, &files, keep, true)?;
        Ok((r.kept, r.before))
    }

    /// Reads the log in `dir` back (cutting a torn tail, as an open does) and hands its records
    /// to `f` in log order, at most [`RECOVERY_BATCH`] at a time.
    pub fn read_back(dir: &Path, f: &mut dyn FnMut(Vec<Record>)) -> Result<(), IngestError> {
        settle_compaction(dir)?;
        read_in_batches(dir, &mut |_| {}, f).map(drop)
    }

    /// Opens (or creates) the log in `dir`; committed batches are sent on `engine` in log
    /// order after they are durable.
    pub fn open(dir: &Path, engine: mpsc::Sender<Vec<Record>>) -> Result<Opened, IngestError> {
        IngestLog::open_with(dir, engine, None)
    }

    /// [`IngestLog::open`], compacting while running when `compaction` is given.
    pub fn open_with(
        dir: &Path,
        engine: mpsc::Sender<Vec<Record>>,
        compaction: Option<Compaction>,
    ) -> Result<Opened, IngestError> {
        let mut all = Vec::new();
        let mut opened =
            IngestLog::open_streaming(dir, engine, compaction, &mut |batch| all.extend(batch))?;
        opened.recovered = all;
        Ok(opened)
    }

    /// [`IngestLog::open_with`] that hands the records read back to `recovered` as it reads
    /// them, in log order, at most [`RECOVERY_BATCH`] at a time, and holds none of them: a
    /// restart in bounded memory, whatever the log's size (`Opened::recovered` is empty).
    /// Returns once every record is handed over.
    pub fn open_streaming(
        dir: &Path,
        engine: mpsc::Sender<Vec<Record>>,
        compaction: Option<Compaction>,
        recovered: &mut dyn FnMut(Vec<Record>),
    ) -> Result<Opened, IngestError> {
        settle_compaction(dir)?;
        let mut seen = Deliveries::default();
        let (mut wal, truncated_bytes, last_seq) =
            read_in_batches(dir, &mut |d| seen.insert(d), recovered)?;
        let deliveries = Arc::new(Mutex::new(seen));
        let mut next_seq = last_seq.map_or(0, |s| s + 1);
        let (tx, rx) = mpsc::channel::<Request>();
        let known = deliveries.clone();
        let compactions = Arc::new(CompactionStats::default());
        let mut compactor = match compaction {
            None => None,
            Some(c) => {
                let (sealed_tx, sealed_rx) = mpsc::channel::<u64>();
                let state = Arc::new(CompactorState {
                    floor: std::sync::atomic::AtomicU64::new(c.min_bytes),
                    busy: std::sync::atomic::AtomicBool::new(false),
                });
                let every = c.every;
                let (dir, stats, shared) = (dir.to_path_buf(), compactions.clone(), state.clone());
                let handle = std::thread::Builder::new()
                    .name("ingest-compact".into())
                    .spawn(move || compactor_thread(&dir, c, sealed_rx, &shared, &stats))
                    .expect("spawn the ingest-log compaction thread");
                Some(Sealer {
                    every,
                    last: std::time::Instant::now(),
                    state,
                    tx: sealed_tx,
                    handle: Some(handle),
                })
            }
        };
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
                    let mut replays = Vec::new();
                    for request in waiting {
                        let Request::Commit {
                            records: mut batch,
                            keys,
                            idempotent,
                            reply,
                        } = request;
                        if idempotent {
                            let known_before = {
                                let d = known.lock().unwrap_or_else(|e| e.into_inner());
                                keys.iter().find_map(|(k, _)| d.by_key.get(k).cloned())
                            };
                            // A key committed earlier in this group is a replay as well.
                            let earlier = known_before.or_else(|| {
                                answers
                                    .iter()
                                    .flat_map(|(_, _, _, ds): &(_, _, _, Vec<Delivery>)| ds.iter())
                                    .find(|x| keys.iter().any(|(k, _)| *k == x.key))
                                    .cloned()
                            });
                            if let Some(seen) = earlier {
                                replays.push((reply, Outcome::Replayed(seen)));
                                continue;
                            }
                        }
                        let committed = Committed {
                            first_seq: next_seq,
                            count: batch.len(),
                        };
                        for r in &mut batch {
                            r.seq = next_seq;
                            next_seq += 1;
                        }
                        let ds: Vec<Delivery> = keys
                            .into_iter()
                            .map(|(key, digest)| Delivery {
                                key,
                                digest,
                                first_seq: committed.first_seq,
                                count: committed.count,
                            })
                            .collect();
                        if result.is_ok() {
                            for bytes in encode_batch(&batch, &ds) {
                                if let Err(e) = wal.append(&bytes) {
                                    result = Err(e.to_string());
                                    break;
                                }
                            }
                        }
                        answers.push((batch, reply, committed, ds));
                    }
                    if result.is_ok() && !answers.is_empty() {
                        if let Err(e) = wal.sync() {
                            result = Err(e.to_string());
                        }
                    }
                    for (batch, reply, committed, ds) in answers {
                        match &result {
                            Ok(()) => {
                                if !ds.is_empty() {
                                    let mut d = known.lock().unwrap_or_else(|e| e.into_inner());
                                    for x in ds {
                                        d.insert(x);
                                    }
                                }
                                if !batch.is_empty() {
                                    // The engine may have stopped first, at shutdown.
                                    let _ = engine.send(batch);
                                }
                                let _ = reply.send(Ok(Outcome::Committed(committed)));
                            }
                            Err(e) => {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
                    }
                    for (reply, outcome) in replays {
                        let _ = match &result {
                            Ok(()) => reply.send(Ok(outcome)),
                            Err(e) => reply.send(Err(e.clone())),
                        };
                    }
                    if let (Ok(()), Some(c)) = (&result, &mut compactor) {
                        c.maybe_seal(&mut wal);
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
        let log = IngestLog { tx, deliveries };
        Ok(Opened {
            log,
            recovered: Vec::new(),
            truncated_bytes,
            thread,
            compactions,
        })
    }

    /// Makes `records` durable and hands them to the engine; returns once they are fsynced.
    pub async fn commit(&self, records: Vec<Record>) -> Result<Committed, IngestError> {
        match self.commit_keyed(records, Vec::new(), false).await? {
            Outcome::Committed(c) => Ok(c),
            Outcome::Replayed(d) => Ok(Committed {
                first_seq: d.first_seq,
                count: d.count,
            }),
        }
    }

    /// [`IngestLog::commit`] with the deliveries the batch answers, `(key, digest)`. With
    /// `idempotent`, a batch one of whose keys is already known is not written: the answer is
    /// the earlier delivery.
    pub async fn commit_keyed(
        &self,
        records: Vec<Record>,
        keys: Vec<(String, String)>,
        idempotent: bool,
    ) -> Result<Outcome, IngestError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx
            .send(Request::Commit {
                records,
                keys,
                idempotent,
                reply,
            })
            .map_err(|_| IngestError::Stopped)?;
        Self::answered(answer.await.map_err(|_| IngestError::Stopped)?)
    }

    fn answered(a: Result<Outcome, String>) -> Result<Outcome, IngestError> {
        a.map_err(|e| IngestError::Corrupt {
            index: 0,
            reason: format!("writing failed: {e}"),
        })
    }

    /// [`IngestLog::commit`] for a thread that is not async.
    pub fn commit_blocking(&self, records: Vec<Record>) -> Result<Committed, IngestError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx
            .send(Request::Commit {
                records,
                keys: Vec::new(),
                idempotent: false,
                reply,
            })
            .map_err(|_| IngestError::Stopped)?;
        match Self::answered(answer.blocking_recv().map_err(|_| IngestError::Stopped)?)? {
            Outcome::Committed(c) => Ok(c),
            Outcome::Replayed(d) => Ok(Committed {
                first_seq: d.first_seq,
                count: d.count,
            }),
        }
    }

    /// The delivery committed under `key`, if remembered.
    pub fn delivered(&self, key: &str) -> Option<Delivery> {
        let d = self.deliveries.lock().unwrap_or_else(|e| e.into_inner());
        d.by_key.get(key).cloned()
    }

    /// The deliveries remembered whose key starts with `prefix`, oldest first.
    pub fn delivered_under(&self, prefix: &str) -> Vec<Delivery> {
        let d = self.deliveries.lock().unwrap_or_else(|e| e.into_inner());
        d.in_order()
            .into_iter()
            .filter(|x| x.key.starts_with(prefix))
            .collect()
    }
}

/// What the log thread and the compaction thread share.
struct CompactorState {
    /// Compact once the log holds this many bytes: the larger of `min_bytes` and twice what
    /// the last compaction left.
    floor: std::sync::atomic::AtomicU64,
    /// A compaction is under way: do not seal again.
    busy: std::sync::atomic::AtomicBool,
}

/// The log thread's side of running compaction.
struct Sealer {
    every: Duration,
    last: std::time::Instant,
    state: Arc<CompactorState>,
    tx: mpsc::Sender<u64>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Sealer {
    /// The log thread ends: the compaction under way (if any) finishes before it does, so
    /// that a log reopened in the same process is not rewritten under its reader.
    fn drop(&mut self) {
        drop(std::mem::replace(&mut self.tx, mpsc::channel().0));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Sealer {
    /// After a group commit: at most every `every`, when the log has grown past the floor and
    /// no compaction runs, seals the current segment and hands the sealed ones over.
    fn maybe_seal(&mut self, wal: &mut Wal) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.last.elapsed() < self.every || self.state.busy.load(SeqCst) {
            return;
        }
        self.last = std::time::Instant::now();
        let big = wal
            .size_bytes()
            .is_ok_and(|b| b >= self.state.floor.load(SeqCst));
        if !big {
            return;
        }
        match wal.seal() {
            Ok(below) => {
                self.state.busy.store(true, SeqCst);
                if self.tx.send(below).is_err() {
                    self.state.busy.store(false, SeqCst);
                }
            }
            Err(e) => {
                tracing::error!("vigie: ingest log: cannot seal a segment for compaction: {e}")
            }
        }
    }
}

/// The compaction thread: rewrites the sealed segments below each number it is handed, until
/// the log thread ends.
fn compactor_thread(
    dir: &Path,
    mut c: Compaction,
    sealed: mpsc::Receiver<u64>,
    state: &CompactorState,
    stats: &CompactionStats,
) {
    use std::sync::atomic::Ordering::{Relaxed, SeqCst};
    for below in sealed {
        match compact_sealed(dir, below, &mut *(c.keep)()) {
            Ok((dropped, before, after)) => {
                stats.runs.fetch_add(1, Relaxed);
                stats.records_dropped.fetch_add(dropped as u64, Relaxed);
                stats.bytes_before.store(before, Relaxed);
                stats.bytes_after.store(after, Relaxed);
                state.floor.store(c.min_bytes.max(2 * after), SeqCst);
            }
            Err(e) => {
                stats.errors.fetch_add(1, Relaxed);
                tracing::error!("vigie: ingest log: compaction failed, the log is left whole: {e}");
                state
                    .floor
                    .store(c.min_bytes.max(2 * dir_bytes(dir)), SeqCst);
            }
        }
        state.busy.store(false, SeqCst);
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Rewrites the segments of `dir` sealed below `below`: returns (records dropped, bytes
/// before, bytes after).
fn compact_sealed(
    dir: &Path,
    below: u64,
    keep: &mut dyn Keep,
) -> Result<(usize, u64, u64), IngestError> {
    let files = vigie_store::wal::sealed_segments(dir, below)?;
    let r = rewrite(dir, &files, keep, false)?;
    Ok((r.before - r.kept, r.bytes_before, r.bytes_after))
}

/// What [`rewrite`] did.
struct Rewritten {
    before: usize,
    kept: usize,
    bytes_before: u64,
    bytes_after: u64,
}

/// Rewrites the segments `files` of `dir` into one, a log record at a time: the first pass
/// shows `keep` every record and gathers the deliveries to carry over, the second writes the
/// deliveries, then the records kept, into the replacement segment. With `only_if_smaller`, a
/// pass between them counts what would be kept, and nothing is written if that is all.
fn rewrite(
    dir: &Path,
    files: &[(u64, std::path::PathBuf)],
    keep: &mut dyn Keep,
    only_if_smaller: bool,
) -> Result<Rewritten, IngestError> {
    if files.is_empty() {
        return Ok(Rewritten {
            before: 0,
            kept: 0,
            bytes_before: 0,
            bytes_after: 0,
        });
    }
    let mut delivered = Deliveries::default();
    let (mut n, mut last) = (0usize, None::<u64>);
    let bytes_before = each_sealed(files, &mut |d| delivered.insert(d), &mut |r| {
        keep.observe(&r);
        n += 1;
        last = Some(r.seq);
        Ok(())
    })?;
    if only_if_smaller {
        let mut would = 0usize;
        each_sealed(files, &mut |_| {}, &mut |r| {
            if keep.keeps(&r) || Some(r.seq) == last {
                would += 1;
            }
            Ok(())
        })?;
        if would == n {
            return Ok(Rewritten {
                before: n,
                kept: n,
                bytes_before,
                bytes_after: bytes_before,
            });
        }
    }
    let mut out = vigie_store::wal::Replacement::create(dir)?;
    for bytes in encode_compacted(&[], delivered.in_order()) {
        out.append(&bytes)?;
    }
    let mut kept = 0usize;
    let mut batch: Vec<Record> = Vec::new();
    let write = |batch: &mut Vec<Record>, out: &mut vigie_store::wal::Replacement| {
        for bytes in encode_chunks(batch) {
            out.append(&bytes)?;
        }
        batch.clear();
        Ok::<(), IngestError>(())
    };
    each_sealed(files, &mut |_| {}, &mut |r| {
        // The last record is always kept, so that sequence numbers keep increasing.
        if keep.keeps(&r) || Some(r.seq) == last {
            kept += 1;
            batch.push(r);
            if batch.len() >= 4096 {
                write(&mut batch, &mut out)?;
            }
        }
        Ok(())
    })?;
    write(&mut batch, &mut out)?;
    let bytes_after = out.bytes;
    out.finish(files)?;
    Ok(Rewritten {
        before: n,
        kept,
        bytes_before,
        bytes_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps the records `0` says.
    struct KeepIf<F>(F);

    impl<F: FnMut(&Record) -> bool> Keep for KeepIf<F> {
        fn observe(&mut self, _: &Record) {}
        fn keeps(&mut self, r: &Record) -> bool {
            (self.0)(r)
        }
    }

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
        let (kept, before) =
            IngestLog::compact(&log_dir, &mut KeepIf(|r: &Record| r.ts % 2 == 0)).unwrap();
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

    /// Of each id, the last version; the others as they are.
    #[derive(Default)]
    struct LastOfEachId(HashMap<String, u64>);

    impl Keep for LastOfEachId {
        fn observe(&mut self, r: &Record) {
            if let Some(id) = &r.id {
                self.0.insert(id.clone(), r.seq);
            }
        }
        fn keeps(&mut self, r: &Record) -> bool {
            r.id.as_ref().is_none_or(|id| self.0[id] == r.seq)
        }
    }

    /// The same over a whole log (the order kept).
    fn last_of_each_id(all: Vec<Record>) -> Vec<Record> {
        let mut k = LastOfEachId::default();
        all.iter().for_each(|r| k.observe(r));
        all.into_iter().filter(|r| k.keeps(r)).collect()
    }

    fn upsert(i: usize) -> Record {
        let mut r = incident(i as i64);
        r.id = Some(format!("sensor-{:03}-{}", i % 50, "x".repeat(40)));
        r
    }

    #[test]
    fn running_compaction_bounds_the_log_and_loses_no_winner() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel();
        let opened = IngestLog::open_with(
            dir.path(),
            tx,
            Some(Compaction {
                every: Duration::from_millis(1),
                min_bytes: 64 << 10,
                keep: Box::new(|| Box::new(LastOfEachId::default())),
            }),
        )
        .unwrap();
        let total = 20_000;
        let mut largest = 0;
        for batch in (0..total).collect::<Vec<_>>().chunks(20) {
            let c = opened
                .log
                .commit_blocking(batch.iter().map(|&i| upsert(i)).collect())
                .unwrap();
            assert_eq!(c.count, batch.len());
            largest = largest.max(dir_bytes(dir.path()));
        }
        let stats = opened.compactions.clone();
        drop(opened.log);
        opened.thread.join().unwrap();
        let written: u64 = rx
            .try_iter()
            .flatten()
            .map(|r| serde_json::to_vec(&r).unwrap().len() as u64 + 1)
            .sum();
        let runs = stats.runs.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "{total} upserts of 50 ids: {written} bytes of records committed, the log held at most {largest} bytes, {runs} compactions"
        );
        assert!(runs > 0);
        // Bounded: a floor of 64 KiB, doubled at most, plus the segment being written.
        assert!(largest < 512 << 10, "{largest} bytes");
        assert!(written > 8 * largest);
        // Nothing that wins is lost: each id's last version is read back, once.
        let (tx, _rx) = mpsc::channel();
        let again = IngestLog::open(dir.path(), tx).unwrap();
        let winners = last_of_each_id(again.recovered.clone());
        assert_eq!(winners.len(), 50);
        for r in &winners {
            let i = r.ts as usize;
            assert!(i >= total - 50, "id {:?} came back at version {i}", r.id);
        }
        let seqs: Vec<u64> = again.recovered.iter().map(|r| r.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(*seqs.last().unwrap(), total as u64 - 1);
    }

    #[test]
    fn a_running_compaction_cut_at_any_step_reads_back_each_record_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), SEGMENT_BYTES).unwrap();
        let mut all = Vec::new();
        for seg in 0..4 {
            for i in 0..10 {
                let mut r = upsert(seg * 10 + i);
                r.seq = (seg * 10 + i) as u64;
                wal.append(&encode_chunks(std::slice::from_ref(&r))[0])
                    .unwrap();
                all.push(r);
            }
            wal.seal().unwrap();
        }
        let below = wal.seal().unwrap();
        drop(wal);
        let files = vigie_store::wal::sealed_segments(dir.path(), below).unwrap();
        assert_eq!(files.len(), 4);
        let mut bytes = Vec::new();
        vigie_store::wal::for_each_record(&files, |r| {
            bytes.push(r);
            Ok::<(), vigie_store::WalError>(())
        })
        .unwrap();
        let (read, _) = read_all(&bytes).unwrap();
        let kept: Vec<Record> = read.into_iter().filter(|r| r.seq % 3 == 0).collect();
        let out = encode_compacted(&kept, Vec::new());
        // The steps of Replacement::finish, one at a time: the new segment over the last sealed
        // one, then the earlier ones deleted newest first.
        let check = |what: &str| {
            let (_, rec) = Wal::open(dir.path(), SEGMENT_BYTES).unwrap();
            let (got, _) = read_all(&rec.records).unwrap();
            let seqs: Vec<u64> = got.iter().map(|r| r.seq).collect();
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{what}: {seqs:?}");
            for k in &kept {
                assert!(seqs.contains(&k.seq), "{what}: {} lost", k.seq);
            }
            for r in &got {
                assert_eq!(r, &all[r.seq as usize], "{what}");
            }
            seqs.len()
        };
        assert_eq!(check("before"), 40);
        let last = &files[3].1;
        let tmp = dir.path().join("replace.tmp");
        let mut framed = Vec::new();
        for r in &out {
            framed.extend_from_slice(&(r.len() as u32).to_be_bytes());
            framed.extend_from_slice(&crc32fast::hash(r).to_be_bytes());
            framed.extend_from_slice(r);
        }
        std::fs::write(&tmp, &framed).unwrap();
        assert_eq!(check("written aside"), 40);
        std::fs::rename(&tmp, last).unwrap();
        assert_eq!(check("renamed over the last sealed segment"), 30 + 4);
        std::fs::remove_file(&files[2].1).unwrap();
        check("one deleted");
        std::fs::remove_file(&files[1].1).unwrap();
        check("two deleted");
        std::fs::remove_file(&files[0].1).unwrap();
        assert_eq!(check("done"), kept.len());
    }

    #[test]
    fn a_delivery_key_is_committed_once_across_restarts_and_compactions() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = || vec![("http/ops/k1".to_string(), "d1".to_string())];
        let (tx, _rx) = mpsc::channel();
        let opened = IngestLog::open(dir.path(), tx).unwrap();
        let first = rt
            .block_on(
                opened
                    .log
                    .commit_keyed(vec![incident(1), incident(2)], key(), true),
            )
            .unwrap();
        assert_eq!(
            first,
            Outcome::Committed(Committed {
                first_seq: 0,
                count: 2
            })
        );
        let again = rt
            .block_on(
                opened
                    .log
                    .commit_keyed(vec![incident(1), incident(2)], key(), true),
            )
            .unwrap();
        let replayed = |o: &Outcome| matches!(o, Outcome::Replayed(d) if d.first_seq == 0 && d.count == 2 && d.digest == "d1");
        assert!(replayed(&again), "{again:?}");
        drop(opened.log);
        opened.thread.join().unwrap();
        // After a restart, and after the start's compaction dropped the records themselves.
        IngestLog::compact(dir.path(), &mut KeepIf(|_: &Record| false)).unwrap();
        let (tx, _rx) = mpsc::channel();
        let opened = IngestLog::open(dir.path(), tx).unwrap();
        assert_eq!(opened.recovered.len(), 1, "the last record stays");
        assert_eq!(opened.log.delivered("http/ops/k1").unwrap().count, 2);
        let third = rt
            .block_on(opened.log.commit_keyed(vec![incident(1)], key(), true))
            .unwrap();
        assert!(replayed(&third), "{third:?}");
        assert_eq!(opened.log.delivered_under("http/ops/").len(), 1);
    }

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
