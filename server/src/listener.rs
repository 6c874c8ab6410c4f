//! The HTTP listener of `vigie run`, with the limits that keep any one client from taking
//! every connection or file descriptor of the process (`[ingest.http]`):
//!
//! - **File descriptors.** At start the soft `RLIMIT_NOFILE` is raised to the hard limit
//!   ([`raise_fd_limit`]); HTTP connections may take all of them but `reserved_fds`, which stay
//!   for the ingest log, the store, MQTT and the sinks.
//! - **A cap on open connections**: `max_connections`, and at most the descriptors above. A
//!   connection accepted at the cap takes the place of the oldest open connection that has no
//!   request under way (one that never sent a full request head, or idles between two
//!   requests): that one is closed. When every open connection has a request under way, the
//!   newcomer is closed at once. So idle connections, however many, never lock out a client
//!   that sends its request (`/health` answers under 20,000 of them, `tests/e2e.rs`).
//! - **Timeouts.** A new connection's first request head must arrive in full within
//!   `header_read_timeout_secs`; between requests of a keep-alive connection, the next head
//!   within `idle_timeout_secs` (hyper's header-read clock, which runs whenever a connection
//!   waits for a request); a body within `body_timeout_secs` of its head, else the route
//!   answers 408 ([`BodyTimeout`]).
//! - **Counted**: `/metrics` shows the open connections and the closed ones by reason
//!   ([`ConnStats`]).
//!
//! The live streams have their own caps ([`crate::query`]); this module serves HTTP/1.1 only,
//! as `vigie run` always has.

use crate::AppState;
use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The soft limit on open files after raising it to the hard limit (as it was, if it cannot
/// be raised); `None` where it cannot be read.
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let soft = limit.current?;
    match limit.maximum {
        Some(hard) if hard > soft => {
            limit.current = Some(hard);
            match setrlimit(Resource::Nofile, limit) {
                Ok(()) => Some(hard),
                Err(_) => Some(soft),
            }
        }
        // No hard limit: raising the soft one to "unlimited" is refused by Linux for files,
        // so keep it.
        _ => Some(soft),
    }
}

/// The listener's limits, from `[ingest.http]` and the process's file descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    /// Open connections at most: `max_connections`, and no more than the descriptors left.
    pub max_connections: usize,
}

impl Limits {
    /// The limits of `config`, the cap bounded by `open_files` (the soft limit on open
    /// files) less the reserve; with fewer descriptors than the reserve, half of them.
    pub fn of(config: &vigie_config::HttpConfig, open_files: Option<u64>) -> Limits {
        let by_files = open_files.map_or(usize::MAX, |n| {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n > config.reserved_fds {
                n - config.reserved_fds
            } else {
                n / 2
            }
        });
        Limits {
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(config.idle_timeout_secs),
            body_timeout: Duration::from_secs(config.body_timeout_secs),
            max_connections: config.max_connections.min(by_files).max(1),
        }
    }
}

/// The listener's counters, on `/metrics`.
#[derive(Debug, Default)]
pub struct ConnStats {
    open: AtomicUsize,
    accepted: AtomicU64,
    /// Closed to make room for a newer one at the cap.
    replaced: AtomicU64,
    /// Closed at once: the cap reached and every connection busy.
    refused: AtomicU64,
    /// Closed because a request head did not arrive in time.
    header_timeouts: AtomicU64,
    /// Accepting failed (out of descriptors, mostly).
    accept_errors: AtomicU64,
    cap: AtomicUsize,
}

impl ConnStats {
    /// Open HTTP connections now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Writes the counters in Prometheus' text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP vigie_http_connections_open HTTP connections open now.\n\
             # TYPE vigie_http_connections_open gauge\n\
             vigie_http_connections_open {}\n\
             # HELP vigie_http_connections_max The cap on open HTTP connections (max_connections, bounded by the file descriptors).\n\
             # TYPE vigie_http_connections_max gauge\n\
             vigie_http_connections_max {}\n\
             # HELP vigie_http_connections_accepted_total HTTP connections accepted.\n\
             # TYPE vigie_http_connections_accepted_total counter\n\
             vigie_http_connections_accepted_total {}\n\
             # HELP vigie_http_connections_closed_total HTTP connections closed by the listener's limits, by reason.\n\
             # TYPE vigie_http_connections_closed_total counter\n\
             vigie_http_connections_closed_total{{reason=\"replaced_at_cap\"}} {}\n\
             vigie_http_connections_closed_total{{reason=\"refused_at_cap\"}} {}\n\
             vigie_http_connections_closed_total{{reason=\"header_timeout\"}} {}\n\
             # HELP vigie_http_accept_errors_total Failed accepts (out of file descriptors, mostly).\n\
             # TYPE vigie_http_accept_errors_total counter\n\
             vigie_http_accept_errors_total {}",
            self.open(),
            self.cap.load(Ordering::Relaxed),
            self.accepted.load(Ordering::Relaxed),
            self.replaced.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.header_timeouts.load(Ordering::Relaxed),
            self.accept_errors.load(Ordering::Relaxed),
        );
    }
}

/// One open connection, as the registry sees it.
#[derive(Debug, Default)]
struct Conn {
    /// Requests under way (from their head to the end of their answer's body).
    busy: AtomicUsize,
    /// Requests begun since it was accepted.
    requests: AtomicU64,
    /// Told to close (to make room).
    close: Notify,
    closing: AtomicBool,
}

/// The open connections, oldest first.
#[derive(Debug, Default)]
struct Registry {
    conns: Mutex<BTreeMap<u64, Arc<Conn>>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        // A panic while holding it leaves a consistent map: go on with it.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `conn` in under the cap: directly below it; at it, in the place of the oldest
    /// connection with no request under way, told to close; not at all when every one is
    /// busy. The open count is the registry's size (the stats follow it).
    fn admit(&self, id: u64, conn: &Arc<Conn>, cap: usize, stats: &ConnStats) -> Admitted {
        let mut conns = self.lock();
        let mut admitted = Admitted::Below;
        if conns.len() >= cap {
            let victim = conns
                .iter()
                .find(|(_, c)| c.busy.load(Ordering::SeqCst) == 0)
                .map(|(id, _)| *id);
            match victim.and_then(|id| conns.remove(&id)) {
                Some(c) => {
                    c.closing.store(true, Ordering::SeqCst);
                    c.close.notify_one();
                    admitted = Admitted::Replacing;
                }
                None => return Admitted::Refused,
            }
        }
        conns.insert(id, conn.clone());
        stats.open.store(conns.len(), Ordering::Relaxed);
        admitted
    }

    /// A connection's task ended (a replaced one was removed already).
    fn remove(&self, id: u64, stats: &ConnStats) {
        let mut conns = self.lock();
        conns.remove(&id);
        stats.open.store(conns.len(), Ordering::Relaxed);
    }
}

enum Admitted {
    Below,
    Replacing,
    Refused,
}

/// Removes a connection from the registry when its task ends.
struct Registered {
    id: u64,
    registry: Arc<Registry>,
    stats: Arc<ConnStats>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.remove(self.id, &self.stats);
    }
}

/// A request under way on a connection, until its answer's body is sent or dropped.
struct Busy(Arc<Conn>);

impl Busy {
    fn new(conn: &Arc<Conn>) -> Busy {
        conn.busy.fetch_add(1, Ordering::SeqCst);
        conn.requests.fetch_add(1, Ordering::SeqCst);
        Busy(conn.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The error a request body gives when it did not arrive within `body_timeout_secs`.
#[derive(Debug)]
pub struct BodyTimeout(pub Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the body did not arrive within {} s (ingest.http.body_timeout_secs)",
            self.0.as_secs()
        )
    }
}

impl std::error::Error for BodyTimeout {}

impl BodyTimeout {
    /// The timeout behind an error of reading a body, if that is what it is.
    pub fn find<'a>(mut e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTimeout> {
        loop {
            if let Some(t) = e.downcast_ref::<BodyTimeout>() {
                return Some(t);
            }
            e = e.source()?;
        }
    }
}

/// A request body that fails with [`BodyTimeout`] when it is not in full by its deadline.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl hyper::body::Body for DeadlineBody {
    type Data = hyper::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => Poll::Ready(r.map(|f| f.map_err(Into::into))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An answer's body that keeps its request counted as under way until it is sent or dropped.
struct CountedBody {
    inner: Body,
    _busy: Busy,
}

impl hyper::body::Body for CountedBody {
    type Data = hyper::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `app` on `listener` with `limits` until `state`'s shutdown signal; then stops
/// accepting, lets the requests under way finish, and returns once every connection closed.
pub async fn serve_with_limits(
    listener: TcpListener,
    app: Router,
    state: AppState,
    limits: Limits,
) -> std::io::Result<()> {
    let stats = state.conn_stats().clone();
    stats.cap.store(limits.max_connections, Ordering::Relaxed);
    let registry = Arc::new(Registry::default());
    let shutdown = state.shutdown().clone();
    // Every connection task holds a sender; all dropped: every connection closed.
    let (alive, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let mut next_id = 0u64;
    let stop = shutdown.triggered();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stop => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors (EMFILE, ENFILE) or a connection reset before it was
                // taken: wait a little rather than spin, and go on.
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                ) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                continue;
            }
        };
        let id = next_id;
        next_id += 1;
        let conn = Arc::new(Conn::default());
        match registry.admit(id, &conn, limits.max_connections, &stats) {
            Admitted::Refused => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                drop(stream);
                continue;
            }
            Admitted::Replacing => {
                stats.replaced.fetch_add(1, Ordering::Relaxed);
            }
            Admitted::Below => {}
        }
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let registered = Registered {
            id,
            registry: registry.clone(),
            stats: stats.clone(),
        };
        let alive = alive.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let _alive = alive;
            let _registered = registered;
            serve_connection(stream, app, conn, limits, shutdown, &stats).await;
        });
    }
    drop(alive);
    let _ = all_closed.recv().await;
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: Router,
    conn: Arc<Conn>,
    limits: Limits,
    shutdown: crate::Shutdown,
    stats: &ConnStats,
) {
    let service_conn = conn.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let busy = Busy::new(&service_conn);
        let timeout = limits.body_timeout;
        let req = req.map(|inner| {
            Body::new(DeadlineBody {
                inner,
                deadline: Box::pin(tokio::time::sleep(timeout)),
                timeout,
            })
        });
        let mut app = app.clone();
        async move {
            use tower_service::Service;
            let response = app.call(req).await?;
            Ok::<_, std::convert::Infallible>(
                response.map(|inner| Body::new(CountedBody { inner, _busy: busy })),
            )
        }
    });
    let http = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // hyper's clock runs whenever the connection waits for a request head; the first
        // head has the (shorter, by default) clock below.
        .header_read_timeout(limits.idle_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(http);
    let first_head = tokio::time::sleep(limits.header_read_timeout);
    tokio::pin!(first_head);
    let mut first_head_due = true;
    let stop = shutdown.triggered();
    tokio::pin!(stop);
    let mut stopping = false;
    loop {
        tokio::select! {
            done = http.as_mut() => {
                if let Err(e) = done {
                    if e.is_timeout() {
                        stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                }
                return;
            }
            _ = conn.close.notified() => return,
            _ = &mut first_head, if first_head_due => {
                first_head_due = false;
                if conn.requests.load(Ordering::SeqCst) == 0 {
                    stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            _ = &mut stop, if !stopping => {
                stopping = true;
                http.as_mut().graceful_shutdown();
            }
        }
        if conn.closing.load(Ordering::SeqCst) {
            return;
        }
    }
}
