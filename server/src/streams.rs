//! The live streams open now (`GET /api/v1/stream`), per caller and in all, against their
//! caps: `ingest.http.max_streams_per_token` per caller (more: 429) and
//! `ingest.http.max_streams` in all (more: 503), so that no caller can hold the server's
//! connections and memory with streams.

use crate::error::ApiError;
use axum::http::StatusCode;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The live streams open now, per caller and in all, against their caps; cheap to clone.
#[derive(Clone, Debug)]
pub struct Streams {
    inner: Arc<StreamsInner>,
}

#[derive(Debug)]
struct StreamsInner {
    max_total: usize,
    max_per_caller: usize,
    /// Open streams per caller name (absent: none).
    open: Mutex<HashMap<String, usize>>,
    refused_per_caller: AtomicU64,
    refused_total: AtomicU64,
}

/// One open stream: counted until dropped (when its client goes or the server stops).
#[derive(Debug)]
pub struct StreamSlot {
    streams: Arc<StreamsInner>,
    caller: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.lock();
        if let Some(n) = open.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.caller);
            }
        }
    }
}

impl StreamsInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Streams {
    /// No stream open; the caps of `[ingest.http]`.
    pub fn new(http: &vigie_config::HttpConfig) -> Streams {
        Streams {
            inner: Arc::new(StreamsInner {
                max_total: http.max_streams,
                max_per_caller: http.max_streams_per_token,
                open: Mutex::default(),
                refused_per_caller: AtomicU64::new(0),
                refused_total: AtomicU64::new(0),
            }),
        }
    }

    /// A stream for `caller`, or 429 (its own cap reached) or 503 (the server's).
    pub fn open(&self, caller: &str) -> Result<StreamSlot, ApiError> {
        let s = &self.inner;
        let mut open = s.lock();
        let mine = open.get(caller).copied().unwrap_or(0);
        if mine >= s.max_per_caller {
            s.refused_per_caller.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{caller} has {mine} live streams open, the most one caller may hold \
                     (ingest.http.max_streams_per_token); close one first"
                ),
            ));
        }
        let total: usize = open.values().sum();
        if total >= s.max_total {
            s.refused_total.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::unavailable(format!(
                "{total} live streams are open, the most the server holds \
                 (ingest.http.max_streams); try again later"
            )));
        }
        *open.entry(caller.to_string()).or_insert(0) += 1;
        Ok(StreamSlot {
            streams: s.clone(),
            caller: caller.to_string(),
        })
    }

    /// Streams open now, in all.
    pub fn open_now(&self) -> usize {
        self.inner.lock().values().sum()
    }

    /// Writes the open streams and the refusals in Prometheus' text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP vigie_streams_open Live streams (GET /api/v1/stream) open now.\n\
             # TYPE vigie_streams_open gauge\n\
             vigie_streams_open {}\n\
             # HELP vigie_streams_refused_total Live streams refused at a cap, by cap.\n\
             # TYPE vigie_streams_refused_total counter\n\
             vigie_streams_refused_total{{cap=\"per_token\"}} {}\n\
             vigie_streams_refused_total{{cap=\"total\"}} {}",
            self.open_now(),
            self.inner.refused_per_caller.load(Ordering::Relaxed),
            self.inner.refused_total.load(Ordering::Relaxed),
        );
    }
}
