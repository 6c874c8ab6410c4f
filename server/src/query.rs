//! The query API of `vigie run` (JSON, described in `assets/openapi.json`, served at
//! `/api/openapi.json`).
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/zones` | the zones as GeoJSON, each with its figures at an hour |
//! | `GET /api/v1/indicators` | every zone's figures at an hour (default: the clock's) |
//! | `GET /api/v1/indicators/range` | one zone's field over a period, one value per step |
//! | `GET /api/v1/explain` | one zone and hour: the figures, how they make the score, the records behind them |
//! | `GET /api/v1/clashes` | the active clashes |
//! | `GET /api/v1/feeds` | the feeds' health |
//! | `GET /api/v1/stream` | live events (server-sent events, see [`crate::board`]) |
//! | `GET /api/v1/whoami` | the caller's name and role (the page shows it) |
//!
//! Every read takes a [`Caller`] (a viewer or an operator; with no `[api]` tokens, anyone).
//! `EventSource` cannot send headers, so the stream also takes the token as `access_token`.
//! Bad requests get 400 naming the parameter; an unknown zone 404; every field of model v1
//! and v2 ([`ALL_FIELDS`]) can be read.
//!
//! Live streams are capped ([`crate::streams::Streams`]): `ingest.http.max_streams_per_token` per caller
//! (more: 429) and `ingest.http.max_streams` in all (more: 503), so that no caller can hold
//! the server's connections and memory with streams.

use crate::auth::{bearer, Caller};
use crate::board::{clash_json, row_json, Event};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use vigie_model::point::ALL_FIELDS;
use vigie_model::time::{format_ts, parse_ts_str};
use vigie_queries::read::{self, HOUR_MS};
use vigie_store::Agg;

/// Values a range may hold at most.
const MAX_POINTS: i64 = 10_000;

type Params = Query<HashMap<String, String>>;

/// Refuses parameters the route does not know (a typo should not silently read defaults).
pub(crate) fn only(
    params: &HashMap<String, String>,
    known: &[&'static str],
) -> Result<(), ApiError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(ApiError::bad(
            k.clone(),
            format!("unknown parameter `{k}`; this route takes {known:?}"),
        )),
    }
}

/// A time parameter (RFC 3339 or Unix seconds), in ms.
pub(crate) fn time_param(
    params: &HashMap<String, String>,
    name: &'static str,
) -> Result<Option<i64>, ApiError> {
    params
        .get(name)
        .map(|s| {
            parse_ts_str(s)
                .map(|us| us.div_euclid(1000))
                .ok_or_else(|| {
                    ApiError::bad(
                        name,
                        format!(
                            "`{}` is not RFC 3339 or Unix seconds",
                            s.chars().take(40).collect::<String>()
                        ),
                    )
                })
        })
        .transpose()
}

pub(crate) fn zone_param(
    state: &AppState,
    params: &HashMap<String, String>,
) -> Result<(u32, String), ApiError> {
    let id = params
        .get("zone")
        .ok_or_else(|| ApiError::bad("zone", "give a zone id"))?;
    state
        .config()
        .zones
        .by_id(id)
        .map(|i| (i, id.clone()))
        .ok_or_else(|| ApiError::not_found("zone", format!("no zone `{id}`")))
}

fn step_param(s: &str) -> Result<i64, ApiError> {
    read::parse_step(s).map_err(|e| ApiError::bad("step", e))
}

/// The clock hour, or 503 before the engine's first epoch.
pub(crate) fn clock(state: &AppState) -> Result<i64, ApiError> {
    state
        .board()
        .read(|b| b.clock)
        .ok_or_else(|| ApiError::unavailable("the engine has not closed its first epoch yet"))
}

/// The hour asked (`hour`, default the clock's), which must be in the horizon: hours since
/// the epoch.
pub(crate) fn hour_param(
    state: &AppState,
    params: &HashMap<String, String>,
) -> Result<(i64, i64), ApiError> {
    let clock = clock(state)?;
    let hour = time_param(params, "hour")?.map_or(clock, |ms| ms.div_euclid(HOUR_MS));
    let (from, to) = horizon(state, clock);
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

fn horizon(state: &AppState, clock: i64) -> (i64, i64) {
    let m = &state.config().model;
    (clock - m.past_hours, clock + m.future_hours)
}

pub(crate) fn hour_text(h: i64) -> String {
    format_ts(h * 3_600_000_000)
}

/// Every zone's row at `hour`, by zone index.
fn rows_at(state: &AppState, hour: i64) -> Vec<Option<Value>> {
    let board = state.board();
    board.read(|b| {
        (0..state.config().zones.len() as u32)
            .map(|z| {
                b.rows
                    .get(&(z, hour))
                    .map(|r| row_json(r, board.zone_id(z)))
            })
            .collect()
    })
}

pub(crate) async fn zones(
    State(state): State<AppState>,
    _c: Caller,
    Query(p): Params,
) -> Result<Response, ApiError> {
    only(&p, &["hour"])?;
    let (clock, hour) = hour_param(&state, &p)?;
    let rows = rows_at(&state, hour);
    let features: Vec<Value> = state
        .config()
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
                    "road_capacity": z.road_capacity,
                    "indicator": row,
                },
            })
        })
        .collect();
    let config = state.config();
    let body = json!({
        "type": "FeatureCollection",
        "clock": hour_text(clock),
        "hour": hour_text(hour),
        "timezone": config.timezone.name(),
        "model": config.model.version,
        "level_thresholds": config.model.level_thresholds,
        "fluidity_thresholds": config.model.fluidity_thresholds,
        "features": features,
    });
    Ok(Json(body).into_response())
}

pub(crate) async fn indicators(
    State(state): State<AppState>,
    _c: Caller,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    only(&p, &["hour"])?;
    let (clock, hour) = hour_param(&state, &p)?;
    let (from, to) = horizon(&state, clock);
    // Read before the rows: the stream's events after it carry every change they may lack.
    let event_id = state.board().last_event_id();
    let rows: Vec<Value> = rows_at(&state, hour).into_iter().flatten().collect();
    Ok(Json(json!({
        "clock": hour_text(clock),
        "hour": hour_text(hour),
        "horizon": { "from": hour_text(from), "to": hour_text(to) },
        "model": state.config().model.version,
        "event_id": event_id,
        "indicators": rows,
    })))
}

pub(crate) async fn range(
    State(state): State<AppState>,
    _c: Caller,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    only(&p, &["zone", "field", "from", "to", "step", "agg", "as_of"])?;
    let (_, zone) = zone_param(&state, &p)?;
    let field = p.get("field").map_or("risk_score", String::as_str);
    if !ALL_FIELDS.contains(&field) {
        return Err(ApiError::bad(
            "field",
            format!("`{field}` is not an indicator field; one of {ALL_FIELDS:?}"),
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
    let clock = clock(&state)?;
    let (h_from, h_to) = horizon(&state, clock);
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
    let values = {
        let store = state.store().read().unwrap_or_else(|e| e.into_inner());
        read::range(&store, &zone, field, from, to, step, agg, as_of)
    }
    .map_err(|e| {
        ApiError::unavailable(format!(
            "reading the store: {}",
            crate::error::failure("reading the store", &e)
        ))
    })?;
    // An undefined value (v2's fluidity where there is no traffic) is NaN: written null.
    let points: Vec<Value> = values
        .into_iter()
        .map(|(t, v)| json!({ "time": format_ts(t * 1000), "value": v.is_finite().then_some(v) }))
        .collect();
    Ok(Json(json!({
        "zone": zone, "field": field, "agg": agg_name, "step_seconds": step / 1000,
        "from": format_ts(from * 1000), "to": format_ts(to * 1000),
        "points": points,
    })))
}

pub(crate) async fn clashes(
    State(state): State<AppState>,
    _c: Caller,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    only(&p, &["zone"])?;
    let zone = p
        .contains_key("zone")
        .then(|| zone_param(&state, &p))
        .transpose()?;
    let board = state.board();
    let list: Vec<Value> = board.read(|b| {
        b.clashes
            .iter()
            .filter(|c| zone.as_ref().is_none_or(|(z, _)| c.zone == *z))
            .map(|c| clash_json(c, &state.config().zones))
            .collect()
    });
    Ok(Json(Value::Array(list)))
}

pub(crate) async fn feeds(
    State(state): State<AppState>,
    _c: Caller,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    only(&p, &[])?;
    Ok(Json(state.board().feeds_json()))
}

/// An event as the stream writes it; id 0 (a `reset` made for one client) goes without id.
fn sse_event(e: &Event) -> sse::Event {
    let event = sse::Event::default().event(e.kind).data(&e.data);
    match e.id {
        0 => event,
        id => event.id(id.to_string()),
    }
}

pub(crate) async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Params,
) -> Result<Response, ApiError> {
    only(&p, &["access_token", "last_event_id"])?;
    // A header wins; else the token given in the address (EventSource sends no header).
    let token = bearer(&headers)?.or(p.get("access_token").map(String::as_str));
    let caller = state.tokens().caller(token)?;
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| p.get("last_event_id").cloned());
    let last =
        match last {
            None => None,
            Some(s) => Some(s.trim().parse::<u64>().map_err(|_| {
                ApiError::bad("last_event_id", format!("`{s}` is not an event id"))
            })?),
        };
    // Counted from here until the client goes or the server stops.
    let slot = state.streams().open(&caller.name)?;
    let board = state.board().clone();
    let (missed, rx) = board.subscribe(last);
    // What the client missed, as shared events (their text is not copied): each is written
    // out only as the client reads, so a reconnecting stream costs the ring's references, not
    // its text.
    let (missed, seen) = match missed {
        Some(events) => {
            let seen = events.last().map_or(last.unwrap_or(0), |e| e.id);
            (events, seen)
        }
        None => {
            let reset = Event {
                id: 0,
                kind: "reset",
                data: json!({"reason": "missed more events than are kept"})
                    .to_string()
                    .into(),
            };
            (vec![reset], 0)
        }
    };
    let replay = futures_util::stream::iter(missed)
        .map(|e| Ok::<_, std::convert::Infallible>(sse_event(&e)));
    // Open streams end when the server stops: a graceful shutdown must not wait for screens
    // that never hang up.
    let stopped = state.shutdown().clone();
    let live =
        futures_util::stream::unfold((rx, seen, stopped), |(mut rx, seen, stopped)| async move {
            loop {
                let received = tokio::select! {
                    r = rx.recv() => r,
                    _ = stopped.triggered() => return None,
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
        });
    let live = live.map(move |event| {
        let _held = &slot;
        event
    });
    Ok(Sse::new(replay.chain(live))
        .keep_alive(KeepAlive::default())
        .into_response())
}

pub(crate) async fn whoami(c: Caller) -> Json<Value> {
    Json(json!({"name": c.name, "role": c.role.as_str()}))
}
