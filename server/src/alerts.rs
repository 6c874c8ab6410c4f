//! The alerting's routes (the alert service of `vigie_alerts`, which `vigie run` feeds from
//! the engine and a timer on a thread of its own).
//!
//! | route | who | does |
//! |---|---|---|
//! | `GET /api/v1/alerts?state=active\|firing\|pending\|resolved\|all` | viewer | the alerts (default `active`), newest first |
//! | `GET /api/v1/alerts/history?from=&to=&zone=` | viewer | transitions and acknowledgements, oldest first (`from`/`to`: RFC 3339 or Unix seconds) |
//! | `POST /api/v1/alerts/{id}/ack` `{"comment"}` | operator | acknowledges; 200 with the alert, 404 unknown id |
//! | `GET /api/v1/rules`, `GET /api/v1/rules/{name}` | viewer | the rules in force, with their `origin` (config or api) |
//! | `POST /api/v1/rules` (201, 409 if it exists), `PUT /api/v1/rules/{name}`, `DELETE /api/v1/rules/{name}` (204) | operator | changes the rules (saved) |
//! | `GET /api/v1/silences`, `POST /api/v1/silences` `{"rule"?, "zone"?, "until" or "duration_s", "comment"}`, `DELETE /api/v1/silences/{id}` | viewer / operator | silences |
//!
//! Errors are the server's ([`crate::error`]): 400 for a bad body or parameter (naming the
//! field), 401 / 403 ([`crate::auth`]), 404, 409, 503 when the state cannot be saved.

use crate::auth::{Caller, Operator};
use crate::error::{json_body, ApiError};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use vigie_alerts::eval::Silence;
use vigie_config::AlertRule;
use vigie_model::clock::now_ms;
use vigie_model::time::{format_ts, parse_ts_str};

#[derive(Deserialize)]
pub(crate) struct AlertsQuery {
    state: Option<String>,
}

pub(crate) async fn list_alerts(
    _: Caller,
    State(state): State<AppState>,
    Query(q): Query<AlertsQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(
        state
            .alerts()
            .alerts(q.state.as_deref().unwrap_or("active"))?,
    )
    .into_response())
}

#[derive(Deserialize)]
pub(crate) struct HistoryQuery {
    from: Option<String>,
    to: Option<String>,
    zone: Option<String>,
}

fn time_param(field: &str, v: Option<&str>, default: i64) -> Result<i64, ApiError> {
    match v {
        None | Some("") => Ok(default),
        Some(t) => parse_ts_str(t)
            .map(|us| us.div_euclid(1000))
            .ok_or_else(|| {
                ApiError::bad(
                    field,
                    format!("`{t}` is not an RFC 3339 time nor Unix seconds"),
                )
            }),
    }
}

pub(crate) async fn history(
    _: Caller,
    State(state): State<AppState>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    let from = time_param("from", q.from.as_deref(), i64::MIN)?;
    let to = time_param("to", q.to.as_deref(), i64::MAX)?;
    Ok(Json(state.alerts().history(from, to, q.zone.as_deref())).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckBody {
    #[serde(default)]
    comment: String,
}

pub(crate) async fn ack(
    Operator(c): Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let b: AckBody = if bytes.is_empty() {
        AckBody {
            comment: String::new(),
        }
    } else {
        json_body(&bytes)?
    };
    Ok(Json(state.alerts().ack(&id, &c.name, &b.comment, now_ms())?).into_response())
}

pub(crate) async fn list_rules(_: Caller, State(state): State<AppState>) -> Response {
    Json(state.alerts().rules()).into_response()
}

pub(crate) async fn get_rule(
    _: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state
        .alerts()
        .rule(&name)
        .map(|r| Json(r).into_response())
        .ok_or_else(|| ApiError::not_found("name", format!("no rule `{name}`")))
}

pub(crate) async fn create_rule(
    Operator(_): Operator,
    State(state): State<AppState>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let rule: AlertRule = json_body(&bytes)?;
    Ok((
        StatusCode::CREATED,
        Json(state.alerts().put_rule(rule, true)?),
    )
        .into_response())
}

pub(crate) async fn put_rule(
    Operator(_): Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let mut v: serde_json::Value = json_body(&bytes)?;
    match v.get("name") {
        None => v["name"] = name.clone().into(),
        Some(n) if n.as_str() == Some(name.as_str()) => {}
        Some(_) => return Err(ApiError::bad("name", "differs from the name in the path")),
    }
    let rule: AlertRule = serde_json::from_value(v)
        .map_err(|e| ApiError::bad("body", format!("invalid rule: {e}")))?;
    Ok(Json(state.alerts().put_rule(rule, false)?).into_response())
}

pub(crate) async fn delete_rule(
    Operator(_): Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state.alerts().delete_rule(&name, now_ms())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn silence_json(s: &Silence) -> serde_json::Value {
    serde_json::json!({
        "id": s.id.to_string(),
        "rule": s.rule,
        "zone": s.zone,
        "until": format_ts(s.until_ms * 1000),
        "by": s.by,
        "comment": s.comment,
        "created": format_ts(s.created_ms * 1000),
    })
}

pub(crate) async fn list_silences(_: Caller, State(state): State<AppState>) -> Response {
    let list: Vec<serde_json::Value> = state
        .alerts()
        .silences(now_ms())
        .iter()
        .map(silence_json)
        .collect();
    Json(list).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SilenceBody {
    rule: Option<String>,
    zone: Option<String>,
    until: Option<String>,
    duration_s: Option<u64>,
    #[serde(default)]
    comment: String,
}

pub(crate) async fn add_silence(
    Operator(c): Operator,
    State(state): State<AppState>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let b: SilenceBody = json_body(&bytes)?;
    let now = now_ms();
    let until = match (&b.until, b.duration_s) {
        (Some(u), None) => time_param("until", Some(u), 0)?,
        (None, Some(d)) => now.saturating_add((d as i64).saturating_mul(1000)),
        _ => {
            return Err(ApiError::bad(
                "until",
                "give until (a time) or duration_s (seconds)",
            ))
        }
    };
    let silence = state
        .alerts()
        .add_silence(b.rule, b.zone, until, &c.name, &b.comment, now)?;
    Ok((StatusCode::CREATED, Json(silence_json(&silence))).into_response())
}

pub(crate) async fn delete_silence(
    Operator(_): Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.alerts().delete_silence(&id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
