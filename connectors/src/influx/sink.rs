//! [`InfluxSink`]: the synchronous API the binary calls, and the thread that sends.
//!
//! The engine's threads are not async: [`InfluxSink::start`] builds a single-threaded tokio
//! runtime and moves it into a thread of its own, and every method here is a plain blocking
//! call.
//!
//! **Backpressure.** When the buffer holds `buffer_max_bytes` of unconfirmed points,
//! [`InfluxSink::send`] blocks until the server confirms enough of them, with a warning on
//! stderr when it starts blocking and the time blocked counted in [`SinkStats::blocked`]:
//! nothing is ever dropped to make room. A producer that must not block calls
//! [`InfluxSink::try_send`], which returns [`InfluxError::Full`] instead.
//!
//! **Failures.** A write that fails (no connection, timeout, 5xx, 429, 401/403/404: anything
//! that may pass later or once an operator fixes the server) is retried with a delay that
//! starts at `retry_min_ms` and doubles up to `retry_max_ms`, forever: the buffer keeps the
//! points meanwhile. A write the server refuses as malformed (400, 422) can never pass: its
//! points are counted in [`SinkStats::points_rejected`], logged, and passed over.
//!
//! **Samples the server ignored.** A server may answer 2xx and still drop samples:
//! VictoriaMetrics ignores those more than two days ahead or before its retention, and says so
//! only in its own counter `vm_rows_ignored_total` (one row per field) at `/metrics`. The
//! sink reads that counter before its first write, after confirmed writes (at most once a
//! second, and after the batch that empties the buffer), and again 3 s after the last one
//! (VictoriaMetrics counts a moment after it answers; a sink that stops waits for that last
//! read), and counts the increase in
//! [`SinkStats::samples_ignored`], logged when it grows. The counter is the server's, so what
//! other clients get ignored meanwhile counts too. A server without the counter (InfluxDB 2,
//! which refuses such points with a 422 instead) or whose `/metrics` cannot be read leaves it
//! `None`: the sink cannot tell.
//!
//! The token is read once, at start, from the variable or file the configuration names; it
//! lives only in the HTTP client, whose `Debug` does not show it, and no message of this
//! module contains it.

use super::buffer::{Batch, Buffer, Recovery};
use super::line::{encode, Encoded};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vigie_config::InfluxConfig;
use vigie_model::Point;

/// What can go wrong with the sink.
#[derive(Debug, thiserror::Error)]
pub enum InfluxError {
    /// The on-disk buffer could not be opened, written or synced.
    #[error("InfluxDB buffer: {0}")]
    Buffer(#[from] std::io::Error),
    /// The token's variable or file could not be read (the message names it, never the
    /// token).
    #[error("InfluxDB token: {0}")]
    Token(String),
    /// The client or its runtime could not be built.
    #[error("InfluxDB client: {0}")]
    Client(String),
    /// [`InfluxSink::try_send`]: the buffer is full.
    #[error("InfluxDB buffer is full ({0} bytes unconfirmed)")]
    Full(u64),
    /// The sending thread is gone (it panicked).
    #[error("the InfluxDB sink has stopped")]
    Stopped,
}

/// Counters of the sink since it started; [`InfluxSink::stats`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SinkStats {
    /// Points appended to the buffer by this process.
    pub points_buffered: u64,
    /// Unconfirmed points found in the buffer at start (left by a previous run).
    pub points_recovered: u64,
    /// Points the server confirmed.
    pub points_confirmed: u64,
    /// Points in batches the server refused as malformed (400, 422), passed over.
    pub points_rejected: u64,
    /// Points, fields and tags that line protocol cannot carry, left out when encoding.
    pub skipped: Encoded,
    /// Write requests the server confirmed.
    pub requests: u64,
    /// Write attempts that failed and were (or will be) retried.
    pub retries: u64,
    /// Points in the buffer not yet confirmed.
    pub unconfirmed_points: u64,
    /// Bytes in the buffer not yet confirmed.
    pub buffered_bytes: u64,
    /// Calls to `send` that had to wait for room in the buffer…
    pub blocked_sends: u64,
    /// …and the time they waited in all.
    pub blocked: Duration,
    /// Bytes cut from the buffer's files at start (torn tails of a crash).
    pub truncated_bytes: u64,
    /// Samples (one per field) the server took but ignored since the sink's first write,
    /// as VictoriaMetrics counts them (`vm_rows_ignored_total`); `None` when the server has
    /// no such counter or it could not be read (the module's doc).
    pub samples_ignored: Option<u64>,
    /// The last error of a write or of the buffer, if any since start.
    pub last_error: Option<String>,
}

/// What [`InfluxSink::flush`] achieved.
#[derive(Clone, Debug, PartialEq)]
pub struct FlushReport {
    /// Whether everything sent before the call was confirmed by the server.
    pub complete: bool,
    /// Points still unconfirmed when the call returned.
    pub unconfirmed_points: u64,
    /// Bytes still unconfirmed when the call returned.
    pub unconfirmed_bytes: u64,
    /// How long the call waited.
    pub waited: Duration,
}

struct State {
    buffer: Buffer,
    stats: SinkStats,
    /// When the oldest point not yet in a batch arrived (or when a batch was last confirmed).
    pending_since: Option<Instant>,
    /// Calls of `flush` waiting: send at once, without waiting for `batch_ms`.
    flushing: usize,
    /// Set by `close` and `drop`: the thread stops.
    stop: bool,
    /// Set by the thread when it ends.
    stopped: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Notified when the server confirms (room in the buffer; progress for `flush`) and when
    /// the thread stops.
    progress: Condvar,
    /// Wakes the thread: points appended, flush asked, stop asked.
    wake: tokio::sync::Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters and a buffer whose every step is
        // completed or taken back; carry on with them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The InfluxDB 2 sink. Dropping it stops its thread without waiting for the server: what was
/// not confirmed stays in the buffer, and the next sink on the same directory sends it.
pub struct InfluxSink {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    batch_points: usize,
}

impl std::fmt::Debug for InfluxSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfluxSink")
            .field("batch_points", &self.batch_points)
            .finish_non_exhaustive()
    }
}

/// The API token, kept out of `Debug` output.
struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Reads the token as [`InfluxSink::start`] does, for `vigie check-config`: the error a run
/// would stop on (an unset variable, an unreadable or empty file), the token itself dropped.
pub fn check_token(cfg: &InfluxConfig) -> Result<(), InfluxError> {
    read_token(cfg).map(drop)
}

fn read_token(cfg: &InfluxConfig) -> Result<Option<Token>, InfluxError> {
    let token = if let Some(var) = &cfg.token_env {
        let value = std::env::var(var).map_err(|e| {
            InfluxError::Token(format!("environment variable {var}: {e} (token_env)"))
        })?;
        Some(value)
    } else if let Some(path) = &cfg.token_file {
        let value = std::fs::read_to_string(path)
            .map_err(|e| InfluxError::Token(format!("{}: {e} (token_file)", path.display())))?;
        Some(value)
    } else {
        None
    };
    match token.map(|t| t.trim().to_string()) {
        Some(t) if t.is_empty() => Err(InfluxError::Token(
            "the token is empty (token_env or token_file)".into(),
        )),
        Some(t) => Ok(Some(Token(t))),
        None => Ok(None),
    }
}

fn log(msg: impl std::fmt::Display) {
    tracing::warn!("vigie: influxdb: {msg}");
}

impl InfluxSink {
    /// Opens the buffer (recovering what a previous run left unconfirmed, which is sent
    /// first), reads the token, and starts the sending thread. Fails on a buffer that cannot
    /// be opened or a token that cannot be read; an unreachable server is not an error here
    /// (points wait in the buffer).
    pub fn start(cfg: &InfluxConfig) -> Result<InfluxSink, InfluxError> {
        let token = read_token(cfg)?;
        let url = url::Url::parse(&cfg.url)
            .map_err(|e| InfluxError::Client(format!("url {:?}: {e}", cfg.url)))?;
        let client = influxdb2::ClientBuilder::new(
            url.as_str(),
            cfg.org.clone(),
            token.map(|t| t.0).unwrap_or_default(),
        )
        .build()
        .map_err(|e| InfluxError::Client(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| InfluxError::Client(format!("cannot start a runtime: {e}")))?;
        let (buffer, recovery) = Buffer::open(&cfg.buffer_dir, cfg.buffer_max_bytes)?;
        report_recovery(&recovery, cfg);
        let stats = SinkStats {
            points_recovered: recovery.lines,
            truncated_bytes: recovery.truncated_bytes,
            unconfirmed_points: buffer.unconfirmed_lines(),
            buffered_bytes: buffer.unconfirmed_bytes(),
            ..SinkStats::default()
        };
        let pending = buffer.unconfirmed_lines() > 0;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buffer,
                stats,
                // What a previous run left goes out at once.
                pending_since: pending
                    .then(|| Instant::now() - Duration::from_millis(cfg.batch_ms)),
                flushing: 0,
                stop: false,
                stopped: false,
            }),
            progress: Condvar::new(),
            wake: tokio::sync::Notify::new(),
        });
        let ignored = Ignored::new(&url, Duration::from_millis(cfg.timeout_ms))?;
        let sender = Sender {
            shared: shared.clone(),
            client,
            ignored: tokio::sync::Mutex::new(ignored),
            org: cfg.org.clone(),
            bucket: cfg.bucket.clone(),
            batch_points: cfg.batch_points as u64,
            batch: Duration::from_millis(cfg.batch_ms),
            retry_min: Duration::from_millis(cfg.retry_min_ms),
            retry_max: Duration::from_millis(cfg.retry_max_ms),
            timeout: Duration::from_millis(cfg.timeout_ms),
        };
        let thread = std::thread::Builder::new()
            .name("influxdb-sink".into())
            .spawn(move || {
                let guard = StoppedGuard(sender.shared.clone());
                runtime.block_on(sender.run());
                drop(guard);
            })
            .map_err(|e| InfluxError::Client(format!("cannot start the thread: {e}")))?;
        Ok(InfluxSink {
            shared,
            thread: Some(thread),
            batch_points: cfg.batch_points,
        })
    }

    /// Encodes `points` and appends them to the buffer, in records of at most `batch_points`
    /// points; returns once they are written to the buffer's file (they survive a crash of
    /// vigie, not of the machine: see [`InfluxSink::send_durable`]). Blocks while the buffer
    /// is full, with a warning when it starts waiting. Points that line protocol cannot carry
    /// are left out and counted ([`SinkStats::skipped`]).
    pub fn send(&self, points: Vec<Point>) -> Result<(), InfluxError> {
        self.append(&points, true)
    }

    /// [`InfluxSink::send`], then fsync: the points survive a crash of the machine.
    pub fn send_durable(&self, points: Vec<Point>) -> Result<(), InfluxError> {
        self.append(&points, true)?;
        self.sync()
    }

    /// [`InfluxSink::send`] that never blocks: [`InfluxError::Full`] when the buffer has no
    /// room for the next record (the records before it are in the buffer).
    pub fn try_send(&self, points: Vec<Point>) -> Result<(), InfluxError> {
        self.append(&points, false)
    }

    /// Makes everything sent so far durable (fsync of the buffer).
    pub fn sync(&self) -> Result<(), InfluxError> {
        let mut st = self.shared.lock();
        st.buffer.sync()?;
        Ok(())
    }

    fn append(&self, points: &[Point], block: bool) -> Result<(), InfluxError> {
        let mut text = String::new();
        for chunk in points.chunks(self.batch_points.max(1)) {
            text.clear();
            let n = encode(chunk, &mut text);
            let mut st = self.shared.lock();
            st.stats.skipped.add(Encoded { lines: 0, ..n });
            if n.lines == 0 {
                continue;
            }
            let mut waited_since: Option<Instant> = None;
            while !st.buffer.has_room(text.len())
                && Buffer::record_bytes(text.len()) <= st.buffer_max()
            {
                if st.stopped {
                    return Err(InfluxError::Stopped);
                }
                if !block {
                    return Err(InfluxError::Full(st.buffer.unconfirmed_bytes()));
                }
                if waited_since.is_none() {
                    waited_since = Some(Instant::now());
                    st.stats.blocked_sends += 1;
                    log(format_args!(
                        "the buffer is full ({} bytes, {} points unconfirmed; last error: {}); \
                         send blocks until the server confirms",
                        st.buffer.unconfirmed_bytes(),
                        st.buffer.unconfirmed_lines(),
                        st.stats.last_error.as_deref().unwrap_or("none"),
                    ));
                }
                st = self
                    .shared
                    .progress
                    .wait_timeout(st, Duration::from_millis(500))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if let Some(t) = waited_since {
                let waited = t.elapsed();
                st.stats.blocked += waited;
                log(format_args!(
                    "send resumes after {:.3} s blocked",
                    waited.as_secs_f64()
                ));
            }
            if st.stopped {
                return Err(InfluxError::Stopped);
            }
            st.buffer.append(n.lines as u32, text.as_bytes())?;
            if st.pending_since.is_none() {
                st.pending_since = Some(Instant::now());
            }
            st.stats.points_buffered += n.lines as u64;
            st.stats.unconfirmed_points = st.buffer.unconfirmed_lines();
            st.stats.buffered_bytes = st.buffer.unconfirmed_bytes();
            drop(st);
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Waits until everything sent before the call is confirmed by the server, or `timeout`
    /// passes; batches go out at once meanwhile (without waiting for `batch_ms`). Syncs the
    /// buffer first. `Ok` with `complete: false` on a timeout; errors are the buffer's.
    pub fn flush(&self, timeout: Duration) -> Result<FlushReport, InfluxError> {
        let t0 = Instant::now();
        let mut st = self.shared.lock();
        st.buffer.sync()?;
        let target = st.buffer.write_end();
        st.flushing += 1;
        self.shared.wake.notify_one();
        loop {
            let done = st.buffer.confirmed() >= target || st.buffer.unconfirmed_lines() == 0;
            let left = timeout.saturating_sub(t0.elapsed());
            if done || left.is_zero() || st.stopped {
                st.flushing -= 1;
                return Ok(FlushReport {
                    complete: done,
                    unconfirmed_points: st.buffer.unconfirmed_lines(),
                    unconfirmed_bytes: st.buffer.unconfirmed_bytes(),
                    waited: t0.elapsed(),
                });
            }
            st = self
                .shared
                .progress
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> SinkStats {
        let st = self.shared.lock();
        let mut s = st.stats.clone();
        s.unconfirmed_points = st.buffer.unconfirmed_lines();
        s.buffered_bytes = st.buffer.unconfirmed_bytes();
        s
    }

    /// Flushes for at most `timeout`, then stops the thread; what is still unconfirmed stays
    /// in the buffer for the next start. Returns the flush's report and the final counters.
    pub fn close(mut self, timeout: Duration) -> Result<(FlushReport, SinkStats), InfluxError> {
        let report = self.flush(timeout);
        self.stop();
        let stats = self.stats();
        Ok((report?, stats))
    }

    fn stop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let mut st = self.shared.lock();
        if let Err(e) = st.buffer.sync() {
            log(format_args!("cannot sync the buffer at stop: {e}"));
            st.stats.last_error = Some(e.to_string());
        }
    }
}

impl Drop for InfluxSink {
    fn drop(&mut self) {
        self.stop();
    }
}

impl State {
    fn buffer_max(&self) -> u64 {
        self.buffer.max_bytes()
    }
}

/// Marks the sink stopped when the thread ends, even by a panic.
struct StoppedGuard(Arc<Shared>);

impl Drop for StoppedGuard {
    fn drop(&mut self) {
        self.0.lock().stopped = true;
        self.0.progress.notify_all();
    }
}

fn report_recovery(r: &Recovery, cfg: &InfluxConfig) {
    let dir = cfg.buffer_dir.display();
    if r.cursor_reset {
        log(format_args!(
            "{dir}: the cursor file was missing or damaged; everything still in the buffer is sent again"
        ));
    }
    if r.truncated_bytes > 0 {
        log(format_args!(
            "{dir}: cut {} bytes of torn or damaged records ({} segments damaged before their end)",
            r.truncated_bytes, r.damaged_segments
        ));
    }
    if r.lines > 0 {
        log(format_args!(
            "{dir}: {} points left unconfirmed by the previous run are sent again",
            r.lines
        ));
    }
}

/// The sending thread's side.
struct Sender {
    shared: Arc<Shared>,
    client: influxdb2::Client,
    ignored: tokio::sync::Mutex<Ignored>,
    org: String,
    bucket: String,
    batch_points: u64,
    batch: Duration,
    retry_min: Duration,
    retry_max: Duration,
    timeout: Duration,
}

/// Whether the server's counter of ignored samples can be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    /// Not read yet (the server may be down): tried before each write.
    Unknown,
    /// Read: the count goes on.
    Counting,
    /// The server answered without the counter, or refused to show it: the sink cannot tell.
    Unsupported,
}

/// How long after a confirmed write the counter of ignored samples is read again.
const RECOUNT_AFTER: Duration = Duration::from_secs(3);

/// The count of samples the server ignored, from VictoriaMetrics' `vm_rows_ignored_total`.
struct Ignored {
    http: reqwest::Client,
    metrics: reqwest::Url,
    probe: Probe,
    /// The counter's last value read.
    last: u64,
    /// Increase since the first read, across restarts of the server (the counter starts
    /// again from 0).
    total: u64,
    read_at: Instant,
    /// When to read the counter again after the last confirmed write.
    recheck_at: Option<Instant>,
}

impl Ignored {
    fn new(url: &url::Url, timeout: Duration) -> Result<Ignored, InfluxError> {
        let metrics = reqwest::Url::parse(url.as_str())
            .and_then(|u| u.join("metrics"))
            .map_err(|e| InfluxError::Client(format!("url {url}: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| InfluxError::Client(e.to_string()))?;
        Ok(Ignored {
            http,
            metrics,
            probe: Probe::Unknown,
            last: 0,
            total: 0,
            read_at: Instant::now(),
            recheck_at: None,
        })
    }

    /// Reads the counter and updates the count; the new value of
    /// [`SinkStats::samples_ignored`] when it changed what the sink can tell, else `None`.
    async fn read(&mut self) -> Option<Option<u64>> {
        self.read_at = Instant::now();
        let answer = match self.http.get(self.metrics.clone()).send().await {
            // Unreachable: maybe down; try again later.
            Err(_) => return None,
            Ok(a) => a,
        };
        let value = if answer.status().is_success() {
            answer.text().await.ok().and_then(|t| ignored_rows(&t))
        } else {
            None
        };
        match (self.probe, value) {
            (Probe::Unknown, None) => {
                self.probe = Probe::Unsupported;
                log("the server shows no count of ignored samples (vm_rows_ignored_total at /metrics): samples it may ignore cannot be counted");
                Some(None)
            }
            (Probe::Unknown, Some(v)) => {
                self.probe = Probe::Counting;
                self.last = v;
                Some(Some(0))
            }
            (_, Some(v)) => {
                // A smaller value: the server restarted, and counts from 0 again.
                self.total += if v >= self.last { v - self.last } else { v };
                self.last = v;
                Some(Some(self.total))
            }
            (_, None) => None,
        }
    }
}

/// The sum of `vm_rows_ignored_total` over its labels (its reasons) in a Prometheus text
/// exposition; `None` when it is not there.
fn ignored_rows(text: &str) -> Option<u64> {
    let mut sum = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("vm_rows_ignored_total") else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(v) = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            *sum.get_or_insert(0u64) += v as u64;
        }
    }
    sum
}

/// What the thread does next.
enum Step {
    Stop,
    /// Nothing due: wait this long, or until woken.
    Wait(Duration),
    /// The buffer could not be read: wait `retry_max`, then try again.
    Pause,
    Send(Batch),
}

/// How a write attempt ended.
enum Outcome {
    Confirmed,
    /// The server will never take this batch.
    Refused(String),
    /// Try again later.
    Failed(String),
    /// Stop asked while waiting.
    Stop,
}

impl Sender {
    async fn run(self) {
        let mut body = Vec::new();
        loop {
            body.clear();
            match self.next_step(&mut body) {
                Step::Stop => {
                    self.recount(true).await;
                    return;
                }
                Step::Wait(d) => {
                    let d = match self.ignored.lock().await.recheck_at {
                        Some(t) => d.min(t.saturating_duration_since(Instant::now())),
                        None => d,
                    };
                    let _ = tokio::time::timeout(d, self.shared.wake.notified()).await;
                    self.recount(false).await;
                }
                Step::Pause => {
                    if self.sleep(self.retry_max).await {
                        return;
                    }
                }
                Step::Send(batch) => {
                    if self.deliver(&batch, &body).await {
                        return;
                    }
                }
            }
        }
    }

    /// What to do next: a batch is due when full, old enough, or asked for by a flush.
    fn next_step(&self, body: &mut Vec<u8>) -> Step {
        let mut st = self.shared.lock();
        if st.stop {
            return Step::Stop;
        }
        let pending = st.buffer.unconfirmed_lines();
        if pending == 0 {
            st.pending_since = None;
            return Step::Wait(Duration::from_secs(3600));
        }
        let deadline = *st.pending_since.get_or_insert_with(Instant::now) + self.batch;
        let now = Instant::now();
        if pending < self.batch_points && st.flushing == 0 && now < deadline {
            return Step::Wait(deadline - now);
        }
        match st.buffer.read_batch(self.batch_points, body) {
            Ok(Some(b)) => Step::Send(b),
            Ok(None) => {
                st.pending_since = None;
                Step::Wait(Duration::from_secs(3600))
            }
            Err(e) => {
                let msg = format!("cannot read the buffer: {e}");
                log(&msg);
                st.stats.last_error = Some(msg);
                Step::Pause
            }
        }
    }

    /// Sends one batch until the server confirms or refuses it; `true` if stop was asked.
    async fn deliver(&self, batch: &Batch, body: &[u8]) -> bool {
        let mut delay = self.retry_min;
        let mut failures = 0u64;
        loop {
            match self.attempt(body).await {
                Outcome::Stop => return true,
                Outcome::Confirmed => {
                    self.count_ignored(batch).await;
                    if failures > 0 {
                        log(format_args!(
                            "the server took the batch after {failures} failed attempts"
                        ));
                    }
                    self.confirm(batch, None);
                    return false;
                }
                Outcome::Refused(msg) => {
                    let msg = format!(
                        "the server refused a batch of {} points, passed over: {msg}",
                        batch.lines
                    );
                    log(&msg);
                    self.confirm(batch, Some(msg));
                    return false;
                }
                Outcome::Failed(msg) => {
                    failures += 1;
                    {
                        let mut st = self.shared.lock();
                        st.stats.retries += 1;
                        st.stats.last_error = Some(msg.clone());
                    }
                    // Say it at the first failure, then at every power of two: a long outage
                    // does not flood the log.
                    if failures.is_power_of_two() {
                        log(format_args!(
                            "write failed ({failures} in a row, {} points waiting), retry in {} ms: {msg}",
                            self.shared.lock().buffer.unconfirmed_lines(),
                            delay.as_millis()
                        ));
                    }
                    if self.sleep(delay).await {
                        return true;
                    }
                    delay = (delay * 2).min(self.retry_max);
                }
            }
        }
    }

    async fn attempt(&self, body: &[u8]) -> Outcome {
        {
            // The counter's value before the first write, as the base of the count.
            let mut ignored = self.ignored.lock().await;
            if ignored.probe == Probe::Unknown {
                if let Some(n) = ignored.read().await {
                    self.shared.lock().stats.samples_ignored = n;
                }
            }
        }
        let write = self.client.write_line_protocol_with_precision(
            &self.org,
            &self.bucket,
            body.to_vec(),
            influxdb2::api::write::TimestampPrecision::Milliseconds,
        );
        let result = tokio::select! {
            r = tokio::time::timeout(self.timeout, write) => r,
            () = self.stop_asked() => return Outcome::Stop,
        };
        match result {
            Err(_) => Outcome::Failed(format!("no answer within {} ms", self.timeout.as_millis())),
            Ok(Ok(())) => Outcome::Confirmed,
            Ok(Err(influxdb2::RequestError::Http { status, text })) => {
                let code = status.as_u16();
                let msg = format!("HTTP {status}: {}", text.trim());
                match code {
                    // The client takes only 204 for success; any 2xx is a confirmation.
                    200..=299 => Outcome::Confirmed,
                    400 | 422 => Outcome::Refused(msg),
                    _ => Outcome::Failed(msg),
                }
            }
            Ok(Err(e)) => Outcome::Failed(e.to_string()),
        }
    }

    /// After a confirmed write: reads the server's counter of ignored samples (at most once a
    /// second, and always when this batch empties the buffer), and counts its increase.
    async fn count_ignored(&self, batch: &Batch) {
        let mut ignored = self.ignored.lock().await;
        if ignored.probe != Probe::Counting {
            return;
        }
        ignored.recheck_at = Some(Instant::now() + RECOUNT_AFTER);
        let last_batch = self.shared.lock().buffer.unconfirmed_lines() <= batch.lines;
        if !last_batch && ignored.read_at.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.read_ignored(&mut ignored).await;
    }

    /// Reads the counter again once [`RECOUNT_AFTER`] has passed since the last confirmed write
    /// (at once, after waiting for it, when `stopping`): VictoriaMetrics counts what it ignores
    /// when it processes its in-memory buffer, a moment after it answered.
    async fn recount(&self, stopping: bool) {
        let mut ignored = self.ignored.lock().await;
        let Some(at) = ignored.recheck_at else {
            return;
        };
        let left = at.saturating_duration_since(Instant::now());
        if !left.is_zero() {
            if !stopping {
                return;
            }
            tokio::time::sleep(left).await;
        }
        ignored.recheck_at = None;
        self.read_ignored(&mut ignored).await;
    }

    /// Reads the counter, updates [`SinkStats::samples_ignored`], and says when it grew.
    async fn read_ignored(&self, ignored: &mut Ignored) {
        let before = ignored.total;
        if let Some(n) = ignored.read().await {
            self.shared.lock().stats.samples_ignored = n;
        }
        let grown = ignored.total - before;
        if grown > 0 {
            log(format_args!(
                "the server took but ignored {grown} samples (vm_rows_ignored_total; {} since start): \
                 timestamps beyond its limits (VictoriaMetrics: more than 2 days ahead, or before its retention)",
                ignored.total
            ));
        }
    }

    /// Resolves when stop is asked (checked at every wake-up).
    async fn stop_asked(&self) {
        loop {
            if self.shared.lock().stop {
                return;
            }
            let _ =
                tokio::time::timeout(Duration::from_millis(200), self.shared.wake.notified()).await;
        }
    }

    /// Sleeps `d`, or less if stop is asked: `true` then.
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => self.shared.lock().stop,
            () = self.stop_asked() => true,
        }
    }

    fn confirm(&self, batch: &Batch, refused: Option<String>) {
        let mut st = self.shared.lock();
        match st.buffer.confirm(batch) {
            Ok(()) => {
                if let Some(msg) = refused {
                    st.stats.points_rejected += batch.lines;
                    st.stats.last_error = Some(msg);
                } else {
                    st.stats.points_confirmed += batch.lines;
                    st.stats.requests += 1;
                }
            }
            Err(e) => {
                // The server has the points but the cursor did not move: they are sent again
                // (same values), which is harmless.
                let msg = format!("cannot move the buffer's cursor: {e}");
                log(&msg);
                st.stats.last_error = Some(msg);
            }
        }
        st.stats.unconfirmed_points = st.buffer.unconfirmed_lines();
        st.stats.buffered_bytes = st.buffer.unconfirmed_bytes();
        st.pending_since = (st.buffer.unconfirmed_lines() > 0).then(Instant::now);
        drop(st);
        self.shared.progress.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::ignored_rows;

    #[test]
    fn the_ignored_rows_counter_is_summed_over_its_reasons() {
        let text = "# HELP x\nvm_rows_ignored_total{reason=\"big_timestamp\"} 4\n\
                    vm_rows_ignored_total_other 99\n\
                    vm_rows_ignored_total{reason=\"small_timestamp\"} 2\nvm_rows 7\n";
        assert_eq!(ignored_rows(text), Some(6));
        assert_eq!(ignored_rows("vm_rows_ignored_total 3\n"), Some(3));
        // InfluxDB 2's /metrics, or any other: no such counter.
        assert_eq!(
            ignored_rows("http_api_requests_total{path=\"/api/v2/write\"} 12\n"),
            None
        );
    }
}
