//! HTTP ingest on axum: live sources push records, answered only once they are durable.
//!
//! | route | body | success |
//! |---|---|---|
//! | `POST /api/v1/records` | one JSON record, or NDJSON | 200 + JSON answer |
//! | `POST /api/v1/csv/{mapping}` | CSV with a header, through a configured mapping | 200 + JSON answer |
//! | `POST /api/v2/write?org=&bucket=&precision=` | InfluxDB line protocol | 204 |
//! | `GET /api/v1/dead-letters` | — | the caller's rejected lines, newest first |
//! | `GET /metrics` | — | Prometheus text (no token needed) |
//!
//! - **Auth.** `Authorization: Bearer <token>` or `Token <token>` (InfluxDB clients); tokens are
//!   read once ([`HttpState::new`]), compared in constant time, never logged nor shown by
//!   `Debug`. No or unknown token: 401 with `WWW-Authenticate: Bearer`. A line of a feed the
//!   source may not write is rejected (`forbidden_feed`); when every line is: 403.
//! - **Limits.** A body over `ingest.http.max_body_bytes` (after gzip decoding, when
//!   `Content-Encoding: gzip`), or of more than `ingest.http.max_lines` lines (CSV: after the
//!   header), is refused whole with 413, before anything is committed.
//! - **Answers.** `{"accepted": n, "rejected": [{"line", "kind", "field", "reason"}…],
//!   "rejected_total": n, "first_seq": s}` (the list holds the first [`MAX_LISTED`]). 200 when
//!   a line was accepted or the body is empty; 400 when every line was rejected; 403 when
//!   every line was a forbidden feed. The write API answers 204 when every line was accepted;
//!   otherwise InfluxDB's `{"code": "invalid", "message": …}` with the same fields, and the
//!   good lines are still committed. Errors carry `{"code", "message"}` on every route.
//! - **Durability.** Accepted records are committed through [`IngestLog::commit`] (fsynced)
//!   before the answer: a 2xx means durable. A failed commit answers 503; retry.
//! - **Idempotency.** With an `Idempotency-Key` header (1 to 255 visible ASCII characters),
//!   the key (per source) and a digest of the body are committed with the records; a request
//!   with a key already committed — a client retrying after a lost answer, even across a crash
//!   of vigie — is answered as the first one was (`"replayed": true`, header
//!   `Idempotent-Replayed: true`) and commits nothing; with another body, 422.
//! - Every rejected line goes to the dead-letter store and the counters ([`Metrics`]).

use super::dead_letters::{DeadLetter, DeadLetters};
use super::lineproto::Precision;
use super::log::Outcome;
use super::metrics::{Metrics, UNKNOWN_FEED};
use super::payload::{all_forbidden, count_lines, parse_body, Format, Parsed, Rejected};
use super::{IngestLog, LineError};
use crate::privacy::Privacy;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Read;
use std::sync::{Arc, Mutex};
use vigie_config::Config;
use vigie_model::Feed;

/// Rejected lines listed in an answer at most (`rejected_total` counts them all).
pub const MAX_LISTED: usize = 1000;

const ROUTE_RECORDS: &str = "/api/v1/records";
const ROUTE_CSV: &str = "/api/v1/csv/{mapping}";
const ROUTE_WRITE: &str = "/api/v2/write";
const ROUTE_DEAD_LETTERS: &str = "/api/v1/dead-letters";
const ROUTE_METRICS: &str = "/metrics";
const ROUTE_OTHER: &str = "other";

/// A token, kept out of `Debug` and logs.
struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Equality that takes the same time wherever the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(x ^ y);
    }
    diff == 0
}

#[derive(Debug)]
struct Source {
    name: String,
    token: Secret,
    allowed: Vec<Feed>,
}

type Extra = Arc<dyn Fn(&mut String) + Send + Sync>;

struct Inner {
    config: Arc<Config>,
    privacy: Arc<Privacy>,
    log: IngestLog,
    sources: Vec<Source>,
    metrics: Arc<Metrics>,
    dead_letters: DeadLetters,
    extra_metrics: Mutex<Vec<Extra>>,
}

/// The header that makes a request idempotent.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// What the routes share: the configuration, the ingest log, the sources and their tokens,
/// the counters and the dead letters. Cheap to clone.
#[derive(Clone)]
pub struct HttpState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState")
            .field("sources", &self.inner.sources)
            .finish_non_exhaustive()
    }
}

impl HttpState {
    /// Reads every source's token (once; `token_env` or `token_file`); the error names the
    /// source, never the token. Two sources with the same token are refused: a token must say
    /// who writes.
    pub fn new(config: Arc<Config>, log: IngestLog) -> Result<HttpState, String> {
        let mut sources: Vec<Source> = Vec::with_capacity(config.sources.len());
        // A source with MQTT credentials only has no HTTP door.
        for s in config.sources.iter().filter(|s| s.has_token()) {
            let token = s
                .read_token()
                .map_err(|e| format!("source {}: cannot read its token: {e}", s.name))?;
            if let Some(other) = sources
                .iter()
                .find(|o| constant_time_eq(&o.token.0, token.as_bytes()))
            {
                return Err(format!(
                    "sources {} and {} have the same token",
                    other.name, s.name
                ));
            }
            sources.push(Source {
                name: s.name.clone(),
                token: Secret(token.into_bytes()),
                allowed: s.allowed(),
            });
        }
        let privacy = Privacy::from_config(&config.privacy)?;
        let dead_letters = DeadLetters::new(config.ingest.dead_letters);
        Ok(HttpState {
            inner: Arc::new(Inner {
                config,
                privacy: Arc::new(privacy),
                log,
                sources,
                metrics: Arc::new(Metrics::new()),
                dead_letters,
                extra_metrics: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The counters (also rendered at `GET /metrics`).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    /// Adds lines to the `GET /metrics` page: `render` appends Prometheus text (after the
    /// ingest counters) each time the page is asked for.
    pub fn add_metrics(&self, render: impl Fn(&mut String) + Send + Sync + 'static) {
        self.inner
            .extra_metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(render));
    }

    /// The dead-letter store.
    pub fn dead_letters(&self) -> &DeadLetters {
        &self.inner.dead_letters
    }

    /// The source whose token the request carries.
    fn authenticate(&self, headers: &HeaderMap) -> Option<&Source> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") && !scheme.eq_ignore_ascii_case("token") {
            return None;
        }
        let token = token.trim().as_bytes();
        // Every token is compared, so the time does not say which one matched.
        let mut found = None;
        for s in &self.inner.sources {
            if constant_time_eq(&s.token.0, token) && found.is_none() {
                found = Some(s);
            }
        }
        found
    }
}

/// The routes (see the module's table).
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route(ROUTE_RECORDS, post(post_records))
        .route(ROUTE_CSV, post(post_csv))
        .route(ROUTE_WRITE, post(post_write))
        .route(ROUTE_DEAD_LETTERS, get(get_dead_letters))
        .route(ROUTE_METRICS, get(get_metrics))
        .fallback(not_found)
        .with_state(state)
}

/// Serves the routes on `listener` until `shutdown` completes; requests under way are
/// finished (and their records committed) before it returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

/// An error in InfluxDB's shape, which every route uses.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    json(
        status,
        &serde_json::json!({"code": code, "message": message.into()}),
    )
}

/// A request refused before its lines are read: answered with [`error`].
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn refusal(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.status, self.code, self.message)
    }
}

fn unauthorized() -> Response {
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid token is required: `Authorization: Bearer <token>` or `Token <token>`",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"vigie\""),
    );
    r
}

fn too_large(what: String) -> Refusal {
    refusal(StatusCode::PAYLOAD_TOO_LARGE, "request too large", what)
}

/// Reads the body, at most `max` bytes (decoded, when gzip).
async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Bytes, Refusal> {
    let gzip = match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str()) {
        None => false,
        Some(Ok(e)) if e.trim().eq_ignore_ascii_case("identity") => false,
        Some(Ok(e)) if e.trim().eq_ignore_ascii_case("gzip") => true,
        Some(_) => {
            return Err(refusal(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported media type",
                "Content-Encoding must be gzip or identity",
            ))
        }
    };
    let too_big = || {
        too_large(format!(
            "the body is larger than max_body_bytes ({max} bytes)"
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_big());
    }
    let bytes = match Limited::new(body, max).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_big()),
        Err(e) => {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("cannot read the body: {e}"),
            ))
        }
    };
    if !gzip {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    let read = flate2::read::MultiGzDecoder::new(&bytes[..])
        .take(max as u64 + 1)
        .read_to_end(&mut out);
    match read {
        Ok(_) if out.len() > max => Err(too_big()),
        Ok(_) => Ok(Bytes::from(out)),
        Err(e) => Err(refusal(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("the body is not valid gzip: {e}"),
        )),
    }
}

async fn post_records(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    let r = ingest(&state, ROUTE_RECORDS, &headers, body, Ok(Format::Json)).await;
    counted(&state, ROUTE_RECORDS, r)
}

async fn post_csv(
    State(state): State<HttpState>,
    Path(mapping): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let format = if state.inner.config.mappings.contains_key(&mapping) {
        Ok(Format::Csv { mapping })
    } else {
        Err(refusal(
            StatusCode::NOT_FOUND,
            "not found",
            format!(
                "no mapping {mapping:?} (mappings: {})",
                state
                    .inner
                    .config
                    .mappings
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    };
    let r = ingest(&state, ROUTE_CSV, &headers, body, format).await;
    counted(&state, ROUTE_CSV, r)
}

/// The write API's query: `bucket` is required, as InfluxDB requires it (the records' feed is
/// their measurement, so `org` and `bucket` are not otherwise used); `precision` defaults to
/// nanoseconds.
fn write_format(query: Option<&str>) -> Result<Format, Refusal> {
    let mut precision = Precision::Ns;
    let mut bucket = false;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "bucket" => bucket = !v.is_empty(),
            "precision" => {
                precision = Precision::parse(&v).ok_or_else(|| {
                    refusal(
                        StatusCode::BAD_REQUEST,
                        "invalid",
                        format!("precision {v:?} is not one of ns, us, ms, s"),
                    )
                })?
            }
            _ => {}
        }
    }
    if !bucket {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "invalid",
            "bucket is required (?org=…&bucket=…)",
        ));
    }
    Ok(Format::LineProtocol {
        precision,
        now_us: now_us(),
    })
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

async fn post_write(
    State(state): State<HttpState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let format = write_format(query.as_deref());
    let r = ingest(&state, ROUTE_WRITE, &headers, body, format).await;
    counted(&state, ROUTE_WRITE, r)
}

fn counted(state: &HttpState, route: &'static str, r: Response) -> Response {
    state.inner.metrics.request(route, r.status().as_u16());
    r
}

/// Authenticates, reads, parses, commits and answers one ingest request.
async fn ingest(
    state: &HttpState,
    route: &'static str,
    headers: &HeaderMap,
    body: Body,
    format: Result<Format, Refusal>,
) -> Response {
    // The write API answers as InfluxDB does; the others with the JSON answer.
    let influx = route == ROUTE_WRITE;
    let Some(source) = state.authenticate(headers) else {
        return unauthorized();
    };
    let format = match format {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let limits = &state.inner.config.ingest.http;
    let body = match read_body(headers, body, limits.max_body_bytes).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    // An optional Idempotency-Key: a retry of a request already committed is answered as the
    // first one was, and not committed again (even across a crash of vigie).
    let delivery = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => match v
            .to_str()
            .ok()
            .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        {
            Some(k) => Some((format!("http/{}/{k}", source.name), super::digest(&[&body]))),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    "the Idempotency-Key header must be 1 to 255 visible ASCII characters"
                        .to_string(),
                )
            }
        },
    };
    let lines =
        count_lines(&body).saturating_sub(usize::from(matches!(format, Format::Csv { .. })));
    if lines > limits.max_lines {
        return too_large(format!(
            "{lines} lines, more than max_lines ({})",
            limits.max_lines
        ))
        .into_response();
    }
    let parsed = {
        let (config, privacy, allowed, body) = (
            state.inner.config.clone(),
            state.inner.privacy.clone(),
            source.allowed.clone(),
            body.clone(),
        );
        tokio::task::spawn_blocking(move || parse_body(&format, &body, &config, &privacy, &allowed))
            .await
    };
    let Parsed { records, rejected } = match parsed {
        Ok(p) => p,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
                format!("parsing failed: {e}"),
            )
        }
    };
    let all_forbidden = all_forbidden(&rejected);
    let feeds: Vec<Feed> = records.iter().map(|(_, r)| r.feed).collect();
    let records: Vec<_> = records.into_iter().map(|(_, r)| r).collect();
    let committed = if records.is_empty() {
        Ok(None)
    } else {
        let keys: Vec<(String, String)> = delivery.iter().cloned().collect();
        match state.inner.log.commit_keyed(records, keys, true).await {
            Ok(Outcome::Committed(c)) => Ok(Some(c)),
            Ok(Outcome::Replayed(d)) => {
                let digest = delivery.as_ref().map(|(_, d)| d.as_str());
                if digest != Some(d.digest.as_str()) {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid",
                        "this Idempotency-Key was used for another body".to_string(),
                    );
                }
                // Counted when it was committed: answered as then, nothing counted again.
                let listed: Vec<&LineError> =
                    rejected.iter().take(MAX_LISTED).map(|r| &r.error).collect();
                let mut r = if influx {
                    StatusCode::NO_CONTENT.into_response()
                } else {
                    json(
                        StatusCode::OK,
                        &serde_json::json!({
                            "accepted": d.count,
                            "rejected": listed,
                            "rejected_total": rejected.len(),
                            "first_seq": d.first_seq,
                            "replayed": true,
                        }),
                    )
                };
                r.headers_mut().insert(
                    axum::http::HeaderName::from_static("idempotent-replayed"),
                    axum::http::HeaderValue::from_static("true"),
                );
                return r;
            }
            Err(e) => Err(e),
        }
    };
    account(state, source, route, &feeds, &rejected, committed.is_ok());
    let committed = match committed {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!(
                    "the records could not be made durable ({e}); \
                     nothing was accepted, retry later"
                ),
            )
        }
    };
    let accepted = feeds.len();
    let listed: Vec<&LineError> = rejected.iter().take(MAX_LISTED).map(|r| &r.error).collect();
    let fields = serde_json::json!({
        "accepted": accepted,
        "rejected": listed,
        "rejected_total": rejected.len(),
        "first_seq": committed.map(|c| c.first_seq),
    });
    if rejected.is_empty() || (accepted > 0 && !influx) {
        return if influx {
            StatusCode::NO_CONTENT.into_response()
        } else {
            json(StatusCode::OK, &fields)
        };
    }
    // Not a success: InfluxDB's error shape, with the same fields.
    let (status, code, message) = if accepted == 0 && all_forbidden {
        (
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "source {} may not write the feed of any line: {}",
                source.name,
                first_reasons(&rejected)
            ),
        )
    } else {
        (
            StatusCode::BAD_REQUEST,
            "invalid",
            format!(
                "{} of {} lines rejected ({accepted} accepted and stored): {}",
                rejected.len(),
                rejected.len() + accepted,
                first_reasons(&rejected)
            ),
        )
    };
    let mut value = fields;
    value["code"] = code.into();
    value["message"] = message.into();
    json(status, &value)
}

/// The first reasons of a rejection, for a one-line message.
fn first_reasons(rejected: &[Rejected]) -> String {
    let mut s = rejected
        .iter()
        .take(3)
        .map(|r| match &r.error.field {
            Some(f) => format!(
                "line {}: {} (field {f}): {}",
                r.error.line, r.error.kind, r.error.reason
            ),
            None => format!(
                "line {}: {}: {}",
                r.error.line, r.error.kind, r.error.reason
            ),
        })
        .collect::<Vec<_>>()
        .join("; ");
    if rejected.len() > 3 {
        s.push_str("; …");
    }
    s
}

/// Counts the lines (`accepted`: the feeds of the records accepted) and files the rejected
/// ones as dead letters.
fn account(
    state: &HttpState,
    source: &Source,
    route: &'static str,
    accepted: &[Feed],
    rejected: &[Rejected],
    durable: bool,
) {
    let metrics = &state.inner.metrics;
    let mut per_feed: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    for feed in accepted {
        per_feed.entry(feed.name()).or_default().0 += 1;
    }
    for (feed, (n, _)) in &per_feed {
        metrics.lines(&source.name, feed, *n, if durable { *n } else { 0 });
        if !durable {
            metrics.rejected(&source.name, feed, "commit_failed", *n);
        }
    }
    let mut per_kind: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
    for r in rejected {
        let feed = r.feed.map_or(UNKNOWN_FEED, Feed::name);
        *per_kind.entry((feed, r.error.kind)).or_default() += 1;
    }
    for ((feed, kind), n) in &per_kind {
        metrics.lines(&source.name, feed, *n, 0);
        metrics.rejected(&source.name, feed, kind, *n);
    }
    if rejected.is_empty() {
        return;
    }
    let time = vigie_model::time::format_ts(now_us());
    // Samples come from the privacy rules (payload), never from the raw body.
    let letters = rejected.iter().map(|r| DeadLetter {
        time: time.clone(),
        source: source.name.clone(),
        route,
        line: r.error.line,
        kind: r.error.kind,
        field: r.error.field.clone(),
        reason: r.error.reason.clone(),
        sample: r.sample.clone(),
    });
    let dropped = state.inner.dead_letters.push(letters);
    if dropped > 0 {
        metrics.dead_letters_dropped(dropped);
    }
}

/// `GET /api/v1/dead-letters[?limit=n]`: the caller's own rejected lines, newest first.
async fn get_dead_letters(
    State(state): State<HttpState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let r = match state.authenticate(&headers) {
        None => unauthorized(),
        Some(source) => {
            let limit = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .find(|(k, _)| k == "limit")
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(usize::MAX);
            let d = &state.inner.dead_letters;
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "source": source.name,
                    "capacity": d.capacity(),
                    "dead_letters": d.list(Some(&source.name), limit),
                }),
            )
        }
    };
    counted(&state, ROUTE_DEAD_LETTERS, r)
}

/// `GET /metrics`: the ingest counters, then the lines added by [`HttpState::add_metrics`].
async fn get_metrics(State(state): State<HttpState>) -> Response {
    // This request is counted before rendering, so the page includes it.
    state.inner.metrics.request(ROUTE_METRICS, 200);
    let mut out = String::new();
    state.inner.metrics.render(&mut out);
    let extra: Vec<Extra> = state
        .inner
        .extra_metrics
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for render in extra {
        render(&mut out);
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

async fn not_found(State(state): State<HttpState>) -> Response {
    let r = error(StatusCode::NOT_FOUND, "not found", "no such route");
    counted(&state, ROUTE_OTHER, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abc\0"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let s = Source {
            name: "cams".into(),
            token: Secret(b"hunter2".to_vec()),
            allowed: vec![Feed::Density],
        };
        let d = format!("{s:?}");
        assert!(d.contains("cams") && !d.contains("hunter2"), "{d}");
    }

    #[test]
    fn the_write_query_needs_a_bucket_and_a_known_precision() {
        assert!(matches!(
            write_format(Some("org=o&bucket=b&precision=ms")),
            Ok(Format::LineProtocol {
                precision: Precision::Ms,
                ..
            })
        ));
        assert!(matches!(
            write_format(Some("bucket=b")),
            Ok(Format::LineProtocol {
                precision: Precision::Ns,
                ..
            })
        ));
        assert!(write_format(Some("org=o")).is_err());
        assert!(write_format(None).is_err());
        assert!(write_format(Some("bucket=b&precision=h")).is_err());
    }
}
