//! HTTP ingest: live sources push records, answered only once they are durable.
//!
//! | route | body | success |
//! |---|---|---|
//! | `POST /api/v1/records` | one JSON record, or NDJSON | 200 + JSON answer |
//! | `POST /api/v1/csv/{mapping}` | CSV with a header, through a configured mapping | 200 + JSON answer |
//! | `POST /api/v2/write?org=&bucket=&precision=` | InfluxDB line protocol | 204 |
//! | `GET /api/v1/dead-letters[?limit=n]` | — | the caller's rejected lines, newest first (100 unless `limit`, at most 1000) |
//!
//! - **Auth.** A source's token ([`crate::auth`]). A line of a feed the source may not write
//!   is rejected (`forbidden_feed`); when every line is: 403.
//! - **Limits.** A body over `ingest.http.max_body_bytes` (after gzip decoding, when
//!   `Content-Encoding: gzip`), or of more than `ingest.http.max_lines` lines (CSV: after the
//!   header), is refused whole with 413, before anything is committed.
//! - **Answers.** `{"accepted": n, "rejected": [{"line", "kind", "field", "reason"}…],
//!   "rejected_total": n, "first_seq": s}` (the list holds the first [`MAX_LISTED`]). 200 when
//!   a line was accepted or the body is empty; 400 when every line was rejected; 403 when
//!   every line was a forbidden feed — those two with the same keys plus `error`. The write API
//!   answers 204 when every line was accepted; otherwise InfluxDB's `{"code": "invalid",
//!   "message": …}` with the same keys, and the good lines are still committed.
//! - **Durability.** Accepted records are committed through [`IngestLog::commit_keyed`]
//!   (fsynced) before the answer: a 2xx means durable. A failed commit answers 503; retry.
//! - **Idempotency.** With an `Idempotency-Key` header (1 to 255 visible ASCII characters),
//!   the key (per source) and a digest of the body are committed with the records; a request
//!   with a key already committed — a client retrying after a lost answer, even across a crash
//!   of vigie — is answered as the first one was (`"replayed": true`, header
//!   `Idempotent-Replayed: true`) and commits nothing; with another body, 422.
//! - Every rejected line goes to the dead-letter store and the counters.

use crate::auth::{bearer, Source};
use crate::error::ApiError;
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Read;
use vigie_connectors::ingest::dead_letters::DeadLetter;
use vigie_connectors::ingest::lineproto::Precision;
use vigie_connectors::ingest::metrics::UNKNOWN_FEED;
use vigie_connectors::ingest::payload::{
    all_forbidden, count_lines, parse_body, Format, Parsed, Rejected,
};
use vigie_connectors::ingest::{digest, LineError, Outcome};
use vigie_model::clock::now_us;
use vigie_model::Feed;

/// Rejected lines listed in an answer at most (`rejected_total` counts them all).
pub const MAX_LISTED: usize = 1000;

/// Dead letters `GET /api/v1/dead-letters` lists without `limit`.
pub const DEAD_LETTERS_DEFAULT_LIMIT: usize = 100;

/// The largest `limit` `GET /api/v1/dead-letters` takes.
pub const DEAD_LETTERS_MAX_LIMIT: usize = 1000;

pub(crate) const ROUTE_RECORDS: &str = "/api/v1/records";
pub(crate) const ROUTE_CSV: &str = "/api/v1/csv/{mapping}";
pub(crate) const ROUTE_WRITE: &str = "/api/v2/write";
pub(crate) const ROUTE_DEAD_LETTERS: &str = "/api/v1/dead-letters";

/// The header that makes a request idempotent.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Reads the body, at most `max` bytes (decoded, when gzip).
async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Bytes, ApiError> {
    let gzip = match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str()) {
        None => false,
        Some(Ok(e)) if e.trim().eq_ignore_ascii_case("identity") => false,
        Some(Ok(e)) if e.trim().eq_ignore_ascii_case("gzip") => true,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Encoding must be gzip or identity",
            )
            .field("content-encoding"))
        }
    };
    let too_big = || {
        ApiError::too_large(format!(
            "the body is larger than max_body_bytes ({max} bytes)"
        ))
        .field("body")
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
            return Err(match crate::listener::BodyTimeout::find(e.as_ref()) {
                Some(t) => ApiError::new(StatusCode::REQUEST_TIMEOUT, t.to_string()).field("body"),
                None => ApiError::bad("body", format!("cannot read the body: {e}")),
            })
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
        Err(e) => Err(ApiError::bad(
            "body",
            format!("the body is not valid gzip: {e}"),
        )),
    }
}

pub(crate) async fn post_records(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let r = ingest(&state, ROUTE_RECORDS, &headers, body, Ok(Format::Json)).await;
    counted(&state, ROUTE_RECORDS, r)
}

pub(crate) async fn post_csv(
    State(state): State<AppState>,
    Path(mapping): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mappings = &state.config().mappings;
    let format = if mappings.contains_key(&mapping) {
        Ok(Format::Csv { mapping })
    } else {
        let known: Vec<&str> = mappings.keys().map(String::as_str).collect();
        Err(ApiError::not_found(
            "mapping",
            format!("no mapping {mapping:?} (mappings: {})", known.join(", ")),
        ))
    };
    let r = ingest(&state, ROUTE_CSV, &headers, body, format).await;
    counted(&state, ROUTE_CSV, r)
}

/// The write API's query: `bucket` is required, as InfluxDB requires it (the records' feed is
/// their measurement, so `org` and `bucket` are not otherwise used); `precision` defaults to
/// nanoseconds.
fn write_format(query: Option<&str>) -> Result<Format, ApiError> {
    let mut precision = Precision::Ns;
    let mut bucket = false;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "bucket" => bucket = !v.is_empty(),
            "precision" => {
                precision = Precision::parse(&v).ok_or_else(|| {
                    ApiError::bad(
                        "precision",
                        format!("precision {v:?} is not one of ns, us, ms, s"),
                    )
                })?
            }
            _ => {}
        }
    }
    if !bucket {
        return Err(ApiError::bad(
            "bucket",
            "bucket is required (?org=…&bucket=…)",
        ));
    }
    Ok(Format::LineProtocol {
        precision,
        now_us: now_us(),
    })
}

pub(crate) async fn post_write(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let format = write_format(query.as_deref());
    let r = ingest(&state, ROUTE_WRITE, &headers, body, format).await;
    counted(&state, ROUTE_WRITE, r)
}

fn counted(state: &AppState, route: &'static str, r: Response) -> Response {
    state.ingest_metrics().request(route, r.status().as_u16());
    r
}

/// Authenticates, reads, parses, commits and answers one ingest request; the write API's
/// errors in InfluxDB's shape.
async fn ingest(
    state: &AppState,
    route: &'static str,
    headers: &HeaderMap,
    body: Body,
    format: Result<Format, ApiError>,
) -> Response {
    let influx = route == ROUTE_WRITE;
    match take(state, route, headers, body, format).await {
        Ok(r) => r,
        Err(e) if influx => e.influx().into_response(),
        Err(e) => e.into_response(),
    }
}

async fn take(
    state: &AppState,
    route: &'static str,
    headers: &HeaderMap,
    body: Body,
    format: Result<Format, ApiError>,
) -> Result<Response, ApiError> {
    let influx = route == ROUTE_WRITE;
    let source = state.tokens().source(bearer(headers)?)?;
    let format = format?;
    let limits = &state.config().ingest.http;
    let body = read_body(headers, body, limits.max_body_bytes).await?;
    // An optional Idempotency-Key: a retry of a request already committed is answered as the
    // first one was, and not committed again (even across a crash of vigie).
    let delivery = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => match v
            .to_str()
            .ok()
            .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        {
            Some(k) => Some((format!("http/{}/{k}", source.name), digest(&[&body]))),
            None => {
                return Err(ApiError::bad(
                    IDEMPOTENCY_KEY,
                    "the Idempotency-Key header must be 1 to 255 visible ASCII characters",
                ))
            }
        },
    };
    let lines =
        count_lines(&body).saturating_sub(usize::from(matches!(format, Format::Csv { .. })));
    if lines > limits.max_lines {
        return Err(ApiError::too_large(format!(
            "{lines} lines, more than max_lines ({})",
            limits.max_lines
        ))
        .field("body"));
    }
    let parsed = {
        let (config, privacy, allowed, body) = (
            state.config().clone(),
            state.privacy().clone(),
            source.feeds.clone(),
            body.clone(),
        );
        tokio::task::spawn_blocking(move || parse_body(&format, &body, &config, &privacy, &allowed))
            .await
    };
    let Parsed { records, rejected } = parsed.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("parsing failed: {e}"),
        )
    })?;
    let all_forbidden = all_forbidden(&rejected);
    let feeds: Vec<Feed> = records.iter().map(|(_, r)| r.feed).collect();
    let records: Vec<_> = records.into_iter().map(|(_, r)| r).collect();
    let listed = |rejected: &[Rejected]| -> Vec<LineError> {
        rejected
            .iter()
            .take(MAX_LISTED)
            .map(|r| r.error.clone())
            .collect()
    };
    let committed = if records.is_empty() {
        Ok(None)
    } else {
        let keys: Vec<(String, String)> = delivery.iter().cloned().collect();
        match state.log().commit_keyed(records, keys, true).await {
            Ok(Outcome::Committed(c)) => Ok(Some(c)),
            Ok(Outcome::Replayed(d)) => {
                let digest = delivery.as_ref().map(|(_, d)| d.as_str());
                if digest != Some(d.digest.as_str()) {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "this Idempotency-Key was used for another body",
                    )
                    .field(IDEMPOTENCY_KEY));
                }
                // Counted when it was committed: answered as then, nothing counted again.
                let mut r = if influx {
                    StatusCode::NO_CONTENT.into_response()
                } else {
                    Json(json!({
                        "accepted": d.count,
                        "rejected": listed(&rejected),
                        "rejected_total": rejected.len(),
                        "first_seq": d.first_seq,
                        "replayed": true,
                    }))
                    .into_response()
                };
                r.headers_mut().insert(
                    HeaderName::from_static("idempotent-replayed"),
                    HeaderValue::from_static("true"),
                );
                return Ok(r);
            }
            Err(e) => Err(e),
        }
    };
    account(state, &source, route, &feeds, &rejected, committed.is_ok());
    let committed = committed.map_err(|e| {
        ApiError::unavailable(format!(
            "the records could not be made durable ({}); nothing was accepted, retry later",
            crate::error::failure("committing to the ingest log", &e)
        ))
    })?;
    let accepted = feeds.len();
    let fields = [
        ("accepted", json!(accepted)),
        ("rejected", json!(listed(&rejected))),
        ("rejected_total", json!(rejected.len())),
        ("first_seq", json!(committed.map(|c| c.first_seq))),
    ];
    if rejected.is_empty() || (accepted > 0 && !influx) {
        return Ok(if influx {
            StatusCode::NO_CONTENT.into_response()
        } else {
            Json(Value::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            ))
            .into_response()
        });
    }
    // Not a success: the error, with the same keys.
    let error = if accepted == 0 && all_forbidden {
        ApiError::forbidden(format!(
            "source {} may not write the feed of any line: {}",
            source.name,
            first_reasons(&rejected)
        ))
    } else {
        ApiError::bad(
            "body",
            format!(
                "{} of {} lines rejected ({accepted} accepted and stored): {}",
                rejected.len(),
                rejected.len() + accepted,
                first_reasons(&rejected)
            ),
        )
    };
    Err(fields.into_iter().fold(error, |e, (k, v)| e.with(k, v)))
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
    state: &AppState,
    source: &Source,
    route: &'static str,
    accepted: &[Feed],
    rejected: &[Rejected],
    durable: bool,
) {
    let metrics = state.ingest_metrics();
    let mut per_feed: BTreeMap<&'static str, u64> = BTreeMap::new();
    for feed in accepted {
        *per_feed.entry(feed.name()).or_default() += 1;
    }
    for (feed, n) in &per_feed {
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
    let dropped = state.dead_letters().push(letters);
    if dropped > 0 {
        metrics.dead_letters_dropped(dropped);
    }
}

/// `GET /api/v1/dead-letters[?limit=n]`: the caller's own rejected lines, newest first.
pub(crate) async fn get_dead_letters(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let answer = |state: &AppState| -> Result<Response, ApiError> {
        let source = state.tokens().source(bearer(&headers)?)?;
        let mut limit = DEAD_LETTERS_DEFAULT_LIMIT;
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*k {
                "limit" => {
                    limit = v
                        .parse()
                        .ok()
                        .filter(|n| *n <= DEAD_LETTERS_MAX_LIMIT)
                        .ok_or_else(|| {
                            ApiError::bad(
                                "limit",
                                format!(
                                    "`{}` is not a whole number from 0 to {DEAD_LETTERS_MAX_LIMIT}",
                                    v.chars().take(20).collect::<String>()
                                ),
                            )
                        })?
                }
                other => {
                    return Err(ApiError::bad(
                        other.to_string(),
                        format!("unknown parameter `{other}`; this route takes [\"limit\"]"),
                    ))
                }
            }
        }
        let d = state.dead_letters();
        Ok(Json(json!({
            "source": source.name,
            "capacity": d.capacity(),
            "dead_letters": d.list(Some(&source.name), limit),
        }))
        .into_response())
    };
    let r = answer(&state).unwrap_or_else(IntoResponse::into_response);
    counted(&state, ROUTE_DEAD_LETTERS, r)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            write_format(Some("org=o")).unwrap_err().field.as_deref(),
            Some("bucket")
        );
        assert!(write_format(None).is_err());
        assert_eq!(
            write_format(Some("bucket=b&precision=h"))
                .unwrap_err()
                .field
                .as_deref(),
            Some("precision")
        );
    }
}
