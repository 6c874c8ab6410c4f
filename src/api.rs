//! The query API and the wall page of `vigie run` (JSON over HTTP, described in
//! `src/wall/openapi.json`, served at `/api/openapi.json`).
//!
//! | route | what |
//! |---|---|
//! | `GET /` , `/wall.css`, `/wall.js` | the wall page (no external resource) |
//! | `GET /api/v1/zones` | the zones as GeoJSON, each with its figures at an hour |
//! | `GET /api/v1/indicators` | every zone's figures at an hour (default: the clock's) |
//! | `GET /api/v1/indicators/range` | one zone's field over a period, one value per step |
//! | `GET /api/v1/explain` | one zone and hour: the figures and how they make the score |
//! | `GET /api/v1/clashes` | the active clashes |
//! | `GET /api/v1/feeds` | the feeds' health |
//! | `GET /api/v1/stream` | live events (server-sent events, see [`crate::wall`]) |
//! | `GET /api/v1/whoami` | the caller's name and role (the page shows it) |
//!
//! Every read takes a [`Caller`] (a viewer or an operator; with no `[api]` tokens, anyone).
//! `EventSource` cannot send headers, so the stream also takes the token as `access_token`.
//! Bad requests get 400 with `{"error", "field"}`; an unknown zone 404.

use crate::auth::{AuthError, Caller, Tokens};
use crate::wall::{clash_json, row_json, Event, Wall};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use vigie_model::point::INDICATOR_FIELDS;
use vigie_model::time::{format_ts, parse_ts_str};
use vigie_queries::read::{self, HOUR_MS};
use vigie_store::Agg;

const INDEX_HTML: &str = include_str!("wall/index.html");
const WALL_CSS: &str = include_str!("wall/wall.css");
const WALL_JS: &str = include_str!("wall/wall.js");
/// The OpenAPI description of every route `vigie run` serves.
pub const OPENAPI: &str = include_str!("wall/openapi.json");

/// Values a range may hold at most.
const MAX_POINTS: i64 = 10_000;

/// The routes this module serves, `(method, path)`, as written in the OpenAPI file.
#[cfg(test)]
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/wall.css"),
    ("get", "/wall.js"),
    ("get", "/api/openapi.json"),
    ("get", "/api/v1/zones"),
    ("get", "/api/v1/indicators"),
    ("get", "/api/v1/indicators/range"),
    ("get", "/api/v1/explain"),
    ("get", "/api/v1/clashes"),
    ("get", "/api/v1/feeds"),
    ("get", "/api/v1/stream"),
    ("get", "/api/v1/whoami"),
];

/// A refused request: status, message and the parameter at fault.
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<&'static str>,
}

impl ApiError {
    fn bad(field: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: Some(field),
        }
    }

    fn not_found(field: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            field: Some(field),
        }
    }

    fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            field: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        (self.status, Json(body)).into_response()
    }
}

type Params = Query<HashMap<String, String>>;

/// Refuses parameters the route does not know (a typo should not silently read defaults).
fn only(params: &HashMap<String, String>, known: &[&'static str]) -> Result<(), ApiError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("unknown parameter `{k}`; this route takes {known:?}"),
            field: None,
        }),
    }
}

/// A time parameter (RFC 3339 or Unix seconds), in ms.
fn time_param(
    params: &HashMap<String, String>,
    name: &'static str,
) -> Result<Option<i64>, ApiError> {
    params
        .get(name)
        .map(|s| {
            parse_ts_str(s)
                .map(|us| us.div_euclid(1000))
                .ok_or_else(|| {
                    ApiError::bad(name, format!("`{s}` is not RFC 3339 or Unix seconds"))
                })
        })
        .transpose()
}

fn zone_param(wall: &Wall, params: &HashMap<String, String>) -> Result<(u32, String), ApiError> {
    let id = params
        .get("zone")
        .ok_or_else(|| ApiError::bad("zone", "give a zone id"))?;
    wall.config
        .zones
        .by_id(id)
        .map(|i| (i, id.clone()))
        .ok_or_else(|| ApiError::not_found("zone", format!("no zone `{id}`")))
}

fn step_param(s: &str) -> Result<i64, ApiError> {
    read::parse_step(s).map_err(|e| ApiError::bad("step", e))
}

/// The clock hour, or 503 before the engine's first epoch.
fn clock(wall: &Wall) -> Result<i64, ApiError> {
    wall.board
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clock
        .ok_or_else(|| ApiError::unavailable("the engine has not closed its first epoch yet"))
}

/// The hour asked (`hour`, default the clock's), which must be in the horizon: hours since
/// the epoch.
fn hour_param(wall: &Wall, params: &HashMap<String, String>) -> Result<(i64, i64), ApiError> {
    let clock = clock(wall)?;
    let hour = time_param(params, "hour")?.map_or(clock, |ms| ms.div_euclid(HOUR_MS));
    let (from, to) = horizon(wall, clock);
    if hour < from || hour > to {
        return Err(ApiError::bad(
            "hour",
            format!(
                "{} is out of the horizon ({} to {}); ranges read older hours",
                format_ts(hour * 3_600_000_000),
                format_ts(from * 3_600_000_000),
                format_ts(to * 3_600_000_000)
            ),
        ));
    }
    Ok((clock, hour))
}

fn horizon(wall: &Wall, clock: i64) -> (i64, i64) {
    (
        clock - wall.config.model.past_hours,
        clock + wall.config.model.future_hours,
    )
}

fn hour_text(h: i64) -> String {
    format_ts(h * 3_600_000_000)
}

/// Every zone's row at `hour`, by zone index.
fn rows_at(wall: &Wall, hour: i64) -> Vec<Option<Value>> {
    let board = wall.board.read().unwrap_or_else(|e| e.into_inner());
    (0..wall.config.zones.len() as u32)
        .map(|z| {
            board
                .rows
                .get(&(z, hour))
                .map(|r| row_json(r, wall.zone_id(z)))
        })
        .collect()
}

async fn zones(
    State(wall): State<Arc<Wall>>,
    _c: Caller,
    Query(p): Params,
) -> Result<Response, ApiError> {
    only(&p, &["hour"])?;
    let (clock, hour) = hour_param(&wall, &p)?;
    let rows = rows_at(&wall, hour);
    let features: Vec<Value> = wall
        .config
        .zones
        .iter()
        .zip(rows)
        .map(|(z, row)| {
            let geometry = z
                .polygon
                .as_ref()
                .map(|mp| {
                    serde_json::to_value(geojson::Geometry::new(geojson::Value::from(mp)))
                        .unwrap_or(Value::Null)
                })
                .unwrap_or(Value::Null);
            json!({
                "type": "Feature",
                "id": z.id,
                "geometry": geometry,
                "properties": {
                    "id": z.id, "name": z.name, "capacity": z.capacity,
                    "indicator": row,
                },
            })
        })
        .collect();
    let body = json!({
        "type": "FeatureCollection",
        "clock": hour_text(clock),
        "hour": hour_text(hour),
        "features": features,
    });
    Ok(Json(body).into_response())
}

async fn indicators(
    State(wall): State<Arc<Wall>>,
    _c: Caller,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    only(&p, &["hour"])?;
    let (clock, hour) = hour_param(&wall, &p)?;
    let (from, to) = horizon(&wall, clock);
    let rows: Vec<Value> = rows_at(&wall, hour).into_iter().flatten().collect();
    Ok(Json(json!({
        "clock": hour_text(clock),
        "hour": hour_text(hour),
        "horizon": { "from": hour_text(from), "to": hour_text(to) },
        "indicators": rows,
    })))
}

fn store(wall: &Wall) -> Result<crate::sink::SharedStore, ApiError> {
    wall.store
        .get()
        .cloned()
        .ok_or_else(|| ApiError::unavailable("the store is not open yet"))
}

async fn range(
    State(wall): State<Arc<Wall>>,
    _c: Caller,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    only(&p, &["zone", "field", "from", "to", "step", "agg", "as_of"])?;
    let (_, zone) = zone_param(&wall, &p)?;
    let field = p.get("field").map_or("risk_score", String::as_str);
    if !INDICATOR_FIELDS.contains(&field) {
        return Err(ApiError::bad(
            "field",
            format!("`{field}` is not an indicator field; one of {INDICATOR_FIELDS:?}"),
        ));
    }
    let agg_name = p.get("agg").map_or("mean", String::as_str);
    let agg = Agg::parse(agg_name).ok_or_else(|| {
        ApiError::bad(
            "agg",
            format!("`{agg_name}`: mean, min, max, last, sum or count"),
        )
    })?;
    let step = step_param(p.get("step").map_or("1h", String::as_str))?;
    let clock = clock(&wall)?;
    let (h_from, h_to) = horizon(&wall, clock);
    let from = time_param(&p, "from")?.unwrap_or(h_from * HOUR_MS);
    let to = time_param(&p, "to")?.unwrap_or((h_to + 1) * HOUR_MS);
    if to <= from {
        return Err(ApiError::bad("to", "`to` must come after `from`"));
    }
    if (to - from) / step > MAX_POINTS {
        return Err(ApiError::bad(
            "step",
            format!("more than {MAX_POINTS} values: a larger step or a shorter period"),
        ));
    }
    let as_of = time_param(&p, "as_of")?;
    let store = store(&wall)?;
    let values = {
        let store = store.read().unwrap_or_else(|e| e.into_inner());
        read::range(&store, &zone, field, from, to, step, agg, as_of)
    }
    .map_err(|e| ApiError::unavailable(format!("reading the store: {e}")))?;
    let points: Vec<Value> = values
        .into_iter()
        .map(|(t, v)| json!({ "time": format_ts(t * 1000), "value": v }))
        .collect();
    Ok(Json(json!({
        "zone": zone, "field": field, "agg": agg_name, "step_seconds": step / 1000,
        "from": format_ts(from * 1000), "to": format_ts(to * 1000),
        "points": points,
    })))
}

async fn explain(
    State(wall): State<Arc<Wall>>,
    _c: Caller,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    only(&p, &["zone", "hour", "as_of"])?;
    let (z, zone) = zone_param(&wall, &p)?;
    let hour_ms = time_param(&p, "hour")?
        .ok_or_else(|| ApiError::bad("hour", "give an hour (RFC 3339 or Unix seconds)"))?
        .div_euclid(HOUR_MS)
        * HOUR_MS;
    let as_of = time_param(&p, "as_of")?;
    let store = store(&wall)?;
    let (stored, revisions) = {
        let store = store.read().unwrap_or_else(|e| e.into_inner());
        let stored = read::zone_hour(&store, &zone, hour_ms, as_of);
        let revisions = read::revisions(&store, &zone, "risk_score", hour_ms);
        (stored, revisions)
    };
    let stored = stored
        .map_err(|e| ApiError::unavailable(format!("reading the store: {e}")))?
        .ok_or_else(|| {
            ApiError::not_found(
                "hour",
                format!(
                    "no figures for zone {zone} at {}",
                    format_ts(hour_ms * 1000)
                ),
            )
        })?;
    let revisions: Vec<Value> = revisions
        .unwrap_or_default()
        .into_iter()
        .filter(|(rev, _)| as_of.is_none_or(|a| *rev <= a))
        .map(|(rev, v)| json!({ "known_at": format_ts(rev * 1000), "risk_score": v }))
        .collect();
    let v = |f: &str| stored.values.get(f).copied().unwrap_or(0.0);
    let m = &wall.config.model;
    let zc = wall.config.zones.get(z);
    // The formula of `docs/model.md`, step by step, from the stored contributions.
    let base = v("baseline") + m.recent_weight * v("recent");
    let crowd_factor = 1.0
        + m.overload_weight * (v("load") - 1.0).max(0.0)
        + m.event_weight * v("events") / zc.capacity;
    let weather_factor = v("weather");
    let demo_factor = 1.0 + m.demonstration_weight * v("demonstration");
    let raw = base * crowd_factor * weather_factor * demo_factor;
    let contributions = json!([
        {"name": "baseline", "value": v("baseline"), "part": "base",
         "what": "mean severity at this hour of the week over the past weeks"},
        {"name": "recent", "value": v("recent"), "weight": m.recent_weight, "part": "base",
         "what": "severity of incidents in this hour and the two before"},
        {"name": "crowd", "value": v("crowd"), "load": v("load"), "part": "crowd_factor",
         "what": "people expected against the zone's capacity"},
        {"name": "events", "value": v("events"), "part": "crowd_factor",
         "what": "attendance of events overlapping the hour"},
        {"name": "weather", "value": weather_factor, "part": "weather_factor",
         "what": "heat, wind and rain factor"},
        {"name": "demonstration", "value": v("demonstration"), "part": "demonstration_factor",
         "what": "a demonstration overlaps the hour"},
    ]);
    Ok(Json(json!({
        "zone": zone,
        "name": zc.name,
        "hour": format_ts(hour_ms * 1000),
        "figures": stored.values,
        "contributions": contributions,
        "formula": {
            "base": base, "crowd_factor": crowd_factor, "weather_factor": weather_factor,
            "demonstration_factor": demo_factor, "raw": raw, "scale": zc.scale,
            "risk_score": 100.0 * (1.0 - (-raw / zc.scale).exp()),
            "text": "risk_score = 100·(1 − exp(−raw/scale)), raw = base · crowd_factor · weather_factor · demonstration_factor",
        },
        "revisions": revisions,
    })))
}

async fn clashes(
    State(wall): State<Arc<Wall>>,
    _c: Caller,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    only(&p, &["zone"])?;
    let zone = p
        .contains_key("zone")
        .then(|| zone_param(&wall, &p))
        .transpose()?;
    let board = wall.board.read().unwrap_or_else(|e| e.into_inner());
    let list: Vec<Value> = board
        .clashes
        .iter()
        .filter(|c| zone.as_ref().is_none_or(|(z, _)| c.zone == *z))
        .map(|c| {
            let mut v = clash_json(c, wall.zone_id(c.zone));
            v["name"] = json!(wall.config.zones.get(c.zone).name);
            v
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

async fn feeds(
    State(wall): State<Arc<Wall>>,
    _c: Caller,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    only(&p, &[])?;
    Ok(Json(wall.feeds_json()))
}

fn sse_event(e: &Event) -> sse::Event {
    sse::Event::default()
        .id(e.id.to_string())
        .event(e.kind)
        .data(&e.data)
}

async fn stream(
    State(wall): State<Arc<Wall>>,
    headers: HeaderMap,
    axum::Extension(tokens): axum::Extension<Arc<Tokens>>,
    Query(p): Params,
) -> Result<Response, Response> {
    only(&p, &["access_token", "last_event_id"]).map_err(IntoResponse::into_response)?;
    // A header wins; else the token given in the address (EventSource sends no header).
    let from_query = p.get("access_token").map(|t| format!("Bearer {t}"));
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(from_query);
    tokens
        .caller(auth.as_deref())
        .map_err(|e: AuthError| e.into_response())?;
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| p.get("last_event_id").cloned());
    let last = match last {
        None => None,
        Some(s) => Some(s.trim().parse::<u64>().map_err(|_| {
            ApiError::bad("last_event_id", format!("`{s}` is not an event id")).into_response()
        })?),
    };
    let (missed, rx) = wall.subscribe(last);
    let mut first: Vec<sse::Event> = Vec::new();
    let mut seen = last.unwrap_or(0);
    match missed {
        Some(events) => {
            for e in &events {
                first.push(sse_event(e));
                seen = e.id;
            }
        }
        None => {
            first.push(
                sse::Event::default()
                    .event("reset")
                    .data(json!({"reason": "missed more events than are kept"}).to_string()),
            );
            seen = 0;
        }
    }
    let replay =
        futures_util::stream::iter(first.into_iter().map(Ok::<_, std::convert::Infallible>));
    let stopped = wall.stopped();
    let live = futures_util::stream::unfold(
        (rx, seen, stopped),
        |(mut rx, seen, mut stopped)| async move {
            loop {
                let received = tokio::select! {
                    r = rx.recv() => r,
                    _ = stopped.wait_for(|s| *s) => return None,
                };
                match received {
                    Ok(e) if e.id <= seen => continue,
                    Ok(e) => {
                        let id = e.id;
                        return Some((Ok(sse_event(&e)), (rx, id, stopped)));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let reset = sse::Event::default()
                            .event("reset")
                            .data(json!({"reason": "this client fell behind"}).to_string());
                        return Some((Ok(reset), (rx, seen, stopped)));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    use futures_util::StreamExt;
    Ok(Sse::new(replay.chain(live))
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The routes of the query API and the page, with the wall as their state.
pub fn router(wall: Arc<Wall>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/wall.css",
            get(|| async { asset("text/css; charset=utf-8", WALL_CSS) }),
        )
        .route(
            "/wall.js",
            get(|| async { asset("text/javascript; charset=utf-8", WALL_JS) }),
        )
        .route(
            "/api/openapi.json",
            get(|| async { asset("application/json", OPENAPI) }),
        )
        .route("/api/v1/zones", get(zones))
        .route("/api/v1/indicators", get(indicators))
        .route("/api/v1/indicators/range", get(range))
        .route("/api/v1/explain", get(explain))
        .route("/api/v1/clashes", get(clashes))
        .route("/api/v1/feeds", get(feeds))
        .route("/api/v1/stream", get(stream))
        .route(
            "/api/v1/whoami",
            get(|c: Caller| async move { Json(json!({"name": c.name, "role": c.role.as_str()})) }),
        )
        .with_state(wall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_file_describes_every_route() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        let mut routes: Vec<(&str, &str)> = ROUTES.to_vec();
        // The ingest routes and /health, served beside them.
        routes.extend([
            ("post", "/api/v1/records"),
            ("post", "/api/v1/csv/{mapping}"),
            ("post", "/api/v2/write"),
            ("get", "/api/v1/dead-letters"),
            ("get", "/metrics"),
            ("get", "/health"),
            // The alerting's (src/alerts_api.rs).
            ("get", "/api/v1/alerts"),
            ("get", "/api/v1/alerts/history"),
            ("post", "/api/v1/alerts/{id}/ack"),
            ("get", "/api/v1/rules"),
            ("post", "/api/v1/rules"),
            ("get", "/api/v1/rules/{name}"),
            ("put", "/api/v1/rules/{name}"),
            ("delete", "/api/v1/rules/{name}"),
            ("get", "/api/v1/silences"),
            ("post", "/api/v1/silences"),
            ("delete", "/api/v1/silences/{id}"),
        ]);
        // Every path routed in the sources is there too (methods checked above).
        for source in [
            include_str!("api.rs"),
            include_str!("alerts_api.rs"),
            include_str!("live.rs"),
        ] {
            // Written in two parts, so that this line is not one of the calls it finds.
            for call in source.split(concat!(".rou", "te(")).skip(1) {
                let Some(rest) = call.trim_start().strip_prefix('"') else {
                    continue; // not a route call with a literal path
                };
                let path = rest.split('"').next().unwrap();
                assert!(paths.contains_key(path), "{path} is not in openapi.json");
            }
        }
        for (method, path) in routes {
            assert!(
                paths.get(path).and_then(|p| p.get(method)).is_some(),
                "{method} {path} is not in openapi.json"
            );
        }
    }
}
