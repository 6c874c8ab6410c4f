//! Alerting in `vigie run`: the alert service ([`vigie_alerts::Service`]) fed by an engine
//! observer and a timer on a thread of its own, its notifiers, and its HTTP API.
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
//! Errors are JSON `{"error": …, "field": …}`: 400 for a bad body or parameter (naming the
//! field), 401 / 403 from [`crate::auth`], 404, 409, 503 when the state cannot be saved.

use crate::auth::{Caller, Operator};
use crate::run::Observer;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use vigie_alerts::eval::Silence;
use vigie_alerts::{ActionError, Service};
use vigie_config::{AlertRule, Config};
use vigie_model::point::Point;
use vigie_model::time::{format_ts, parse_ts_str};
use vigie_model::{ClashRow, Feed, IndicatorRow};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Delivery counts of feeds and sources (`feed:<name>`, `source:<name>`).
pub type Probe = Box<dyn Fn() -> BTreeMap<String, u64> + Send>;

struct Input {
    rows: Vec<IndicatorRow>,
    clashes: Vec<(ClashRow, bool)>,
    clock_hour: i64,
}

/// The running alert service and its threads.
pub struct Alerts {
    pub service: Arc<Service>,
    input: Mutex<Option<mpsc::Sender<Input>>>,
    probe: Arc<Mutex<Option<Probe>>>,
    threads: Vec<JoinHandle<()>>,
}

/// Opens the alert state in `dir` and starts the evaluation thread (observer input and a
/// timer every `alerts.tick_ms`) and the notifiers, which stop with `stop`.
pub fn start(
    config: &Config,
    dir: &std::path::Path,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Alerts> {
    let zone_ids: Vec<String> = config.zones.iter().map(|z| z.id.clone()).collect();
    let service = Arc::new(Service::open(&config.alerts, zone_ids, dir, now_ms())?);
    let (tx, rx) = mpsc::channel::<Input>();
    let probe: Arc<Mutex<Option<Probe>>> = Arc::new(Mutex::new(None));
    let mut threads = vigie_alerts::notify::start(service.clone(), stop.clone());
    let tick = Duration::from_millis(config.alerts.tick_ms);
    let (s, p) = (service.clone(), probe.clone());
    threads.push(
        std::thread::Builder::new()
            .name("alerts".into())
            .spawn(move || loop {
                let r = match rx.recv_timeout(tick) {
                    Ok(i) => s.observe(i.rows, i.clashes, i.clock_hour, now_ms()),
                    Err(mpsc::RecvTimeoutError::Timeout) => Ok(()),
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                };
                let counts = p
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(|f| f())
                    .unwrap_or_default();
                let r = r.and_then(|_| s.tick(&counts, now_ms()));
                if let Err(e) = r {
                    eprintln!("vigie alerts: {e:#}");
                }
            })?,
    );
    Ok(Alerts {
        service,
        input: Mutex::new(Some(tx)),
        probe,
        threads,
    })
}

impl Alerts {
    /// The engine observer: hands each epoch's rows and clashes to the alert thread (never
    /// blocks the engine).
    pub fn observer(&self) -> Observer {
        let tx = self
            .input
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .expect("one observer");
        Box::new(move |changes, clock_hour, _health| {
            let _ = tx.send(Input {
                rows: changes.indicators.iter().map(|(_, r)| r.clone()).collect(),
                clashes: changes.clashes.clone(),
                clock_hour,
            });
        })
    }

    /// The alert history points waiting for the store.
    pub fn points(&self) -> Box<dyn FnMut() -> Vec<Point> + Send> {
        let s = self.service.clone();
        Box::new(move || s.take_points())
    }

    /// Sets where deadman rules read deliveries from.
    pub fn set_probe(&self, probe: Probe) {
        *self.probe.lock().unwrap_or_else(|e| e.into_inner()) = Some(probe);
    }

    /// Waits for the threads (after the engine has stopped and `stop` is set).
    pub fn join(self) {
        drop(self.input);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// The probe of `vigie run`: records accepted per source and feed over HTTP, and per topic
/// filter over MQTT (the filter's source from `mqtt_config`). Every configured feed and
/// source is listed from the start, at 0.
pub fn probe(
    config: &Config,
    mqtt_config: &Config,
    http: Arc<vigie_connectors::ingest::Metrics>,
    mqtt: Arc<vigie_connectors::ingest::MqttCounters>,
) -> Probe {
    let mut zero: BTreeMap<String, u64> = Feed::ALL
        .iter()
        .map(|f| (format!("feed:{}", f.name()), 0))
        .collect();
    for s in &config.sources {
        zero.insert(format!("source:{}", s.name), 0);
    }
    let topic_source: BTreeMap<String, String> = mqtt_config
        .ingest
        .mqtt
        .iter()
        .flat_map(|m| m.topics.iter())
        .map(|t| (t.filter.clone(), t.source.clone()))
        .collect();
    for s in topic_source.values() {
        zero.insert(format!("source:{s}"), 0);
    }
    Box::new(move || {
        let mut c = zero.clone();
        for (source, feed, n) in http.accepted() {
            *c.entry(format!("source:{source}")).or_default() += n;
            *c.entry(format!("feed:{feed}")).or_default() += n;
        }
        for ((filter, feed), t) in mqtt.snapshot().topics {
            if let Some(s) = topic_source.get(&filter) {
                *c.entry(format!("source:{s}")).or_default() += t.accepted;
            }
            *c.entry(format!("feed:{feed}")).or_default() += t.accepted;
        }
        c
    })
}

/// An API error as JSON.
struct ApiError(StatusCode, String, Option<String>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.1 });
        if let Some(f) = self.2 {
            body["field"] = f.into();
        }
        (self.0, Json(body)).into_response()
    }
}

impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> ApiError {
        match e {
            ActionError::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m, None),
            ActionError::Conflict(m) => ApiError(StatusCode::CONFLICT, m, None),
            ActionError::Invalid(f, m) => ApiError(StatusCode::BAD_REQUEST, m, Some(f)),
            ActionError::Storage(m) => ApiError(StatusCode::SERVICE_UNAVAILABLE, m, None),
        }
    }
}

fn bad(field: &str, m: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, m.into(), Some(field.to_string()))
}

/// A JSON body, or 400 saying where it is wrong.
fn body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| bad("body", format!("invalid JSON body: {e}")))
}

/// The routes, with the service as their state (the router needs an
/// `Extension<Arc<Tokens>>` layer for [`Caller`] and [`Operator`]).
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/history", get(history))
        .route("/api/v1/alerts/{id}/ack", post(ack))
        .route("/api/v1/rules", get(list_rules).post(create_rule))
        .route(
            "/api/v1/rules/{name}",
            get(get_rule).put(put_rule).delete(delete_rule),
        )
        .route("/api/v1/silences", get(list_silences).post(add_silence))
        .route(
            "/api/v1/silences/{id}",
            axum::routing::delete(delete_silence),
        )
        .with_state(service)
}

#[derive(Deserialize)]
struct AlertsQuery {
    state: Option<String>,
}

async fn list_alerts(
    _: Caller,
    State(s): State<Arc<Service>>,
    Query(q): Query<AlertsQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(s.alerts(q.state.as_deref().unwrap_or("active"))?).into_response())
}

#[derive(Deserialize)]
struct HistoryQuery {
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
                bad(
                    field,
                    format!("`{t}` is not an RFC 3339 time nor Unix seconds"),
                )
            }),
    }
}

async fn history(
    _: Caller,
    State(s): State<Arc<Service>>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    let from = time_param("from", q.from.as_deref(), i64::MIN)?;
    let to = time_param("to", q.to.as_deref(), i64::MAX)?;
    Ok(Json(s.history(from, to, q.zone.as_deref())).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    #[serde(default)]
    comment: String,
}

async fn ack(
    Operator(c): Operator,
    State(s): State<Arc<Service>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let b: AckBody = if bytes.is_empty() {
        AckBody {
            comment: String::new(),
        }
    } else {
        body(&bytes)?
    };
    Ok(Json(s.ack(&id, &c.name, &b.comment, now_ms())?).into_response())
}

async fn list_rules(_: Caller, State(s): State<Arc<Service>>) -> Response {
    Json(s.rules()).into_response()
}

async fn get_rule(
    _: Caller,
    State(s): State<Arc<Service>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    s.rule(&name)
        .map(|r| Json(r).into_response())
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no rule `{name}`"), None))
}

async fn create_rule(
    Operator(_): Operator,
    State(s): State<Arc<Service>>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let rule: AlertRule = body(&bytes)?;
    Ok((StatusCode::CREATED, Json(s.put_rule(rule, true)?)).into_response())
}

async fn put_rule(
    Operator(_): Operator,
    State(s): State<Arc<Service>>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let mut v: serde_json::Value = body(&bytes)?;
    match v.get("name") {
        None => v["name"] = name.clone().into(),
        Some(n) if n.as_str() == Some(name.as_str()) => {}
        Some(_) => return Err(bad("name", "differs from the name in the path")),
    }
    let rule: AlertRule =
        serde_json::from_value(v).map_err(|e| bad("body", format!("invalid rule: {e}")))?;
    Ok(Json(s.put_rule(rule, false)?).into_response())
}

async fn delete_rule(
    Operator(_): Operator,
    State(s): State<Arc<Service>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    s.delete_rule(&name, now_ms())?;
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

async fn list_silences(_: Caller, State(s): State<Arc<Service>>) -> Response {
    let list: Vec<serde_json::Value> = s.silences(now_ms()).iter().map(silence_json).collect();
    Json(list).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    rule: Option<String>,
    zone: Option<String>,
    until: Option<String>,
    duration_s: Option<u64>,
    #[serde(default)]
    comment: String,
}

async fn add_silence(
    Operator(c): Operator,
    State(s): State<Arc<Service>>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let b: SilenceBody = body(&bytes)?;
    let now = now_ms();
    let until = match (&b.until, b.duration_s) {
        (Some(u), None) => time_param("until", Some(u), 0)?,
        (None, Some(d)) => now.saturating_add((d as i64).saturating_mul(1000)),
        _ => return Err(bad("until", "give until (a time) or duration_s (seconds)")),
    };
    let silence = s.add_silence(b.rule, b.zone, until, &c.name, &b.comment, now)?;
    Ok((StatusCode::CREATED, Json(silence_json(&silence))).into_response())
}

async fn delete_silence(
    Operator(_): Operator,
    State(s): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    s.delete_silence(&id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Caller, Tokens};
    use tower::ServiceExt;
    use vigie_config::Role;

    fn app(dir: &std::path::Path) -> Router {
        let config = Config::embedded_default();
        let zone_ids = config.zones.iter().map(|z| z.id.clone()).collect();
        let service = Arc::new(Service::open(&config.alerts, zone_ids, dir, now_ms()).unwrap());
        let caller = |name: &str, role| Caller {
            name: name.into(),
            role,
        };
        let tokens = Tokens::from_pairs([
            ("op".to_string(), caller("duty", Role::Operator)),
            ("view".to_string(), caller("wall", Role::Viewer)),
        ]);
        router(service).layer(axum::Extension(Arc::new(tokens)))
    }

    async fn call(app: &Router, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let r = app.clone().oneshot(req).await.unwrap();
        let status = r.status().as_u16();
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    use serde_json::{json, Value};

    #[tokio::test]
    async fn rules_and_silences_through_the_api_with_roles_and_errors_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let rule = r#"{"name":"hot","indicator":"risk_score","zones":["13001"],"threshold":75,"reset":70,"lookahead_h":24,"severity":"critical"}"#;
        assert_eq!(
            call(&app, "POST", "/api/v1/rules", "view", rule).await.0,
            403
        );
        assert_eq!(
            call(&app, "POST", "/api/v1/rules", "bad", rule).await.0,
            401
        );
        let (code, created) = call(&app, "POST", "/api/v1/rules", "op", rule).await;
        assert_eq!(code, 201, "{created}");
        assert_eq!(created["origin"], "api");
        assert_eq!(call(&app, "POST", "/api/v1/rules", "op", rule).await.0, 409);
        let (code, err) = call(
            &app,
            "POST",
            "/api/v1/rules",
            "op",
            r#"{"name":"x","indicator":"load","zones":["99999"],"threshold":1}"#,
        )
        .await;
        assert_eq!((code, err["field"].clone()), (400, json!("zones[0]")));
        let (code, err) = call(&app, "POST", "/api/v1/rules", "op", "{\"name\":").await;
        assert_eq!((code, err["field"].clone()), (400, json!("body")));
        let (code, put) = call(
            &app,
            "PUT",
            "/api/v1/rules/hot",
            "op",
            r#"{"indicator":"risk_score","zones":["13001"],"threshold":80}"#,
        )
        .await;
        assert_eq!((code, put["threshold"].clone()), (200, json!(80.0)));
        let (_, one) = call(&app, "GET", "/api/v1/rules/hot", "view", "").await;
        assert_eq!(one["threshold"], 80.0);
        assert_eq!(
            call(&app, "GET", "/api/v1/rules", "view", "")
                .await
                .1
                .as_array()
                .unwrap()
                .len(),
            1
        );
        // Silences.
        let (code, s) = call(
            &app,
            "POST",
            "/api/v1/silences",
            "op",
            r#"{"rule":"hot","zone":"13001","duration_s":3600,"comment":"works"}"#,
        )
        .await;
        assert_eq!(code, 201, "{s}");
        assert_eq!(s["by"], "duty");
        let (code, err) = call(
            &app,
            "POST",
            "/api/v1/silences",
            "op",
            r#"{"rule":"nope","duration_s":60}"#,
        )
        .await;
        assert_eq!((code, err["field"].clone()), (400, json!("rule")));
        assert_eq!(
            call(&app, "GET", "/api/v1/silences", "view", "")
                .await
                .1
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let id = s["id"].as_str().unwrap();
        assert_eq!(
            call(
                &app,
                "DELETE",
                &format!("/api/v1/silences/{id}"),
                "view",
                ""
            )
            .await
            .0,
            403
        );
        assert_eq!(
            call(&app, "DELETE", &format!("/api/v1/silences/{id}"), "op", "")
                .await
                .0,
            204
        );
        assert_eq!(
            call(&app, "DELETE", &format!("/api/v1/silences/{id}"), "op", "")
                .await
                .0,
            404
        );
        // Alerts.
        assert_eq!(
            call(&app, "GET", "/api/v1/alerts?state=bogus", "view", "")
                .await
                .0,
            400
        );
        assert_eq!(
            call(&app, "GET", "/api/v1/alerts", "view", "").await.1,
            json!([])
        );
        assert_eq!(
            call(
                &app,
                "GET",
                "/api/v1/alerts/history?from=yesterday",
                "view",
                ""
            )
            .await
            .0,
            400
        );
        assert_eq!(
            call(&app, "DELETE", "/api/v1/rules/hot", "op", "").await.0,
            204
        );
        assert_eq!(
            call(&app, "DELETE", "/api/v1/rules/hot", "op", "").await.0,
            404
        );
        // What the API changed is saved: a new service on the same folder has no rule left.
        let again = self::app(dir.path());
        assert_eq!(
            call(&again, "GET", "/api/v1/rules", "view", "").await.1,
            json!([])
        );
    }
}
