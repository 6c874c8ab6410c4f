//! The HTTP face of `vigie run`, on axum: every route it serves, one application state, one
//! error shape, one table of tokens. It builds without the engine (no timely, no
//! differential): the binary wires the engine to it through plain data of `vigie_model`
//! ([`vigie_model::Changes`], [`vigie_model::FeedHealth`], [`vigie_model::EngineStats`]) and
//! the shared [`Board`], the store and the index of recent records.
//!
//! | module | routes |
//! |---|---|
//! | [`ingest`] | `POST /api/v1/records`, `POST /api/v1/csv/{mapping}`, `POST /api/v2/write` (InfluxDB), `GET /api/v1/dead-letters` |
//! | [`query`], [`explain`] | `GET /api/v1/zones`, `/indicators`, `/indicators/range`, `/explain`, `/clashes`, `/feeds`, `/stream`, `/whoami` |
//! | [`alerts`] | alerts, their history and acknowledgement, rules, silences |
//! | [`metrics`] | `GET /metrics` |
//! | here | `GET /` (the wall), `/wall.css`, `/wall.js`, `/api/openapi.json`, `/health` |
//!
//! - Every answer, page or API, carries the [`SECURITY_HEADERS`]: a Content-Security-Policy
//!   that allows no inline script nor style and no framing, `X-Frame-Options: DENY`,
//!   `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.
//! - [`auth`]: sources' and API roles' tokens, one parser, one constant-time comparison.
//! - [`error`]: [`ApiError`], `{"error", "field"}` on every route but the InfluxDB write
//!   route, which answers in InfluxDB's `{"code", "message"}`.
//! - [`board`]: the latest rows, clashes and feeds, and the events of the live stream.
//! - [`shutdown`]: the stop signal the server shares with the sources and the engine loop.
//! - [`state`]: the application state, and how a request's token names its caller.
//! - [`streams`]: the live streams open, against their caps.
//!
//! Build the state with [`AppState::new`] from its [`Parts`] (every collaborator handed in
//! before the first request), then [`app`] gives the router and [`serve`] serves it until the
//! shutdown signal.

pub mod alerts;
pub mod auth;
pub mod board;
pub mod error;
pub mod explain;
pub mod ingest;
pub mod listener;
pub mod metrics;
pub mod query;
pub mod shutdown;
pub mod state;
pub mod streams;

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;

pub use auth::Tokens;
pub use board::Board;
pub use error::ApiError;
pub use shutdown::Shutdown;
pub use state::{AppState, Parts};

/// The wall page and its parts (no external resource), and the OpenAPI description.
pub mod assets {
    pub const INDEX_HTML: &str = include_str!("../assets/index.html");
    pub const WALL_CSS: &str = include_str!("../assets/wall.css");
    pub const WALL_JS: &str = include_str!("../assets/wall.js");
    /// The OpenAPI 3.1 description of every route.
    pub const OPENAPI: &str = include_str!("../assets/openapi.json");
}

/// The headers set on every answer. The wall loads its script, style and data from its own
/// origin only (`assets/`: no inline script, no `style` attribute, no external resource).
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
];

async fn security_headers(mut r: Response) -> Response {
    let headers = r.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    r
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

async fn health(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    if state.shutdown().is_triggered() {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn not_found(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    state.ingest_metrics().request("other", 404);
    ApiError::not_found("path", "no such route").into_response()
}

/// Every route of `vigie run`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", assets::INDEX_HTML) }),
        )
        .route(
            "/wall.css",
            get(|| async { asset("text/css; charset=utf-8", assets::WALL_CSS) }),
        )
        .route(
            "/wall.js",
            get(|| async { asset("text/javascript; charset=utf-8", assets::WALL_JS) }),
        )
        .route(
            "/api/openapi.json",
            get(|| async { asset("application/json", assets::OPENAPI) }),
        )
        .route("/health", get(health))
        .route("/metrics", get(metrics::get_metrics))
        .route(ingest::ROUTE_RECORDS, post(ingest::post_records))
        .route(ingest::ROUTE_CSV, post(ingest::post_csv))
        .route(ingest::ROUTE_WRITE, post(ingest::post_write))
        .route(ingest::ROUTE_DEAD_LETTERS, get(ingest::get_dead_letters))
        .route("/api/v1/zones", get(query::zones))
        .route("/api/v1/indicators", get(query::indicators))
        .route("/api/v1/indicators/range", get(query::range))
        .route("/api/v1/explain", get(explain::explain))
        .route("/api/v1/clashes", get(query::clashes))
        .route("/api/v1/feeds", get(query::feeds))
        .route("/api/v1/stream", get(query::stream))
        .route("/api/v1/whoami", get(query::whoami))
        .route("/api/v1/alerts", get(alerts::list_alerts))
        .route("/api/v1/alerts/history", get(alerts::history))
        .route("/api/v1/alerts/{id}/ack", post(alerts::ack))
        .route(
            "/api/v1/rules",
            get(alerts::list_rules).post(alerts::create_rule),
        )
        .route(
            "/api/v1/rules/{name}",
            get(alerts::get_rule)
                .put(alerts::put_rule)
                .delete(alerts::delete_rule),
        )
        .route(
            "/api/v1/silences",
            get(alerts::list_silences).post(alerts::add_silence),
        )
        .route("/api/v1/silences/{id}", delete(alerts::delete_silence))
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Sends the alerting's transitions to the live stream (a client that lagged is told to
/// refetch); ends when the alert service closes.
pub fn forward_alerts(state: &AppState) -> tokio::task::JoinHandle<()> {
    let mut events = state.alerts().subscribe();
    let board = state.board().clone();
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match events.recv().await {
                Ok(event) => match serde_json::to_value(&event) {
                    Ok(v) => board.publish("alert", &v),
                    Err(e) => tracing::warn!("vigie server: an alert event for the stream: {e}"),
                },
                Err(RecvError::Lagged(n)) => board.publish(
                    "reset",
                    &serde_json::json!({"reason": format!("{n} alert events missed")}),
                ),
                Err(RecvError::Closed) => break,
            }
        }
    })
}

/// Serves [`app`] on `listener` until the shutdown signal (SIGTERM, Ctrl-C, or a trigger);
/// requests under way are finished (their records committed), open streams end. The soft
/// limit on open files is raised to the hard one first, and the listener holds the limits of
/// `[ingest.http]` ([`listener`]).
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    let open_files = listener::raise_fd_limit();
    let limits = listener::Limits::of(&state.config().ingest.http, open_files);
    tracing::info!(
        "vigie run: HTTP: at most {} connections (open files: {}), first request head within {} s, \
         bodies within {} s",
        limits.max_connections,
        open_files.map_or_else(|| "unknown".to_string(), |n| n.to_string()),
        limits.header_read_timeout.as_secs(),
        limits.body_timeout.as_secs(),
    );
    let forwarding = forward_alerts(&state);
    let signals = state.shutdown().clone();
    let watching = tokio::spawn(async move {
        signals.on_signals().await;
        tracing::info!("vigie run: stopping (finishing requests under way, then the last epoch)");
    });
    let served = listener::serve_with_limits(listener, app(state.clone()), state, limits).await;
    forwarding.abort();
    watching.abort();
    served
}
