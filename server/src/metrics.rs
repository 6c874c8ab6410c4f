//! `GET /metrics`: Prometheus text. The ingest counters first, then the engine, the ingest
//! log (its size and running compactions), the MQTT source when there is one, the alerting,
//! the live stream and the index of recent records. When API tokens are configured, it takes
//! one (any role, viewer or above; 401 without); otherwise it is open, as the rest of the API.

use crate::auth::bearer;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use std::sync::atomic::Ordering;
use vigie_model::clock::now_us;
use vigie_model::{EngineStats, Latency, Phase};

const ROUTE_METRICS: &str = "/metrics";

fn gauge(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// The engine's lines.
pub fn render_engine(e: &EngineStats, out: &mut String) {
    gauge(
        out,
        "vigie_engine_records_total",
        "counter",
        "Records the engine took in.",
        e.records(),
    );
    gauge(
        out,
        "vigie_engine_epochs_total",
        "counter",
        "Epochs closed.",
        e.epochs(),
    );
    gauge(
        out,
        "vigie_engine_queue_records",
        "gauge",
        "Records committed to the ingest log and not yet in the dataflow.",
        e.queued(),
    );
    if let Some(last) = e.last_event_us() {
        let lag = (now_us() - last) as f64 / 1e6;
        gauge(
            out,
            "vigie_engine_event_lag_seconds",
            "gauge",
            "Wall clock minus the latest event time taken in.",
            format!("{lag:.3}"),
        );
    }
    gauge(
        out,
        "vigie_store_writes_total",
        "counter",
        "Revisions the store acknowledged.",
        e.store_writes.load(Ordering::Relaxed),
    );
    if let Some(l) = e.latency() {
        summary(
            out,
            "vigie_update_latency_seconds",
            "From a record's commit to the indicator update it causes.",
            &l,
        );
    }
    let _ = writeln!(out, "# HELP vigie_engine_epoch_phase_seconds_total Time the epochs spent in each phase: dataflow (computing the epoch), sinks (writing its changes to the store and InfluxDB's buffer), publish (the wall's board and stream, the alerting).\n# TYPE vigie_engine_epoch_phase_seconds_total counter");
    for phase in Phase::ALL {
        let _ = writeln!(
            out,
            "vigie_engine_epoch_phase_seconds_total{{phase=\"{}\"}} {:.6}",
            phase.name(),
            e.phase_seconds(phase)
        );
    }
    if let Some(w) = e.epoch_work() {
        summary(
            out,
            "vigie_engine_epoch_seconds",
            "An epoch's work, from its close until its changes are published (epochs with news).",
            &w,
        );
    }
}

/// A summary's lines: its quantiles (seconds) and count.
fn summary(out: &mut String, name: &str, help: &str, l: &Latency) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} summary");
    for (q, v) in [("0.5", l.p50), ("0.99", l.p99), ("0.999", l.p999)] {
        let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {v:.6}");
    }
    let _ = writeln!(out, "{name}_count {}", l.count);
}

fn render_log(state: &AppState, out: &mut String) {
    let c = state.compactions();
    gauge(
        out,
        "vigie_ingest_log_compactions_total",
        "counter",
        "Compactions of the ingest log while running.",
        c.runs.load(Ordering::Relaxed),
    );
    gauge(
        out,
        "vigie_ingest_log_compacted_records_total",
        "counter",
        "Records running compactions dropped (superseded or retired).",
        c.records_dropped.load(Ordering::Relaxed),
    );
    gauge(
        out,
        "vigie_ingest_log_compaction_errors_total",
        "counter",
        "Running compactions that failed (the log was left whole).",
        c.errors.load(Ordering::Relaxed),
    );
    let bytes: u64 = std::fs::read_dir(state.log_dir())
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    gauge(
        out,
        "vigie_ingest_log_bytes",
        "gauge",
        "Bytes in the durable ingest log's segments.",
        bytes,
    );
}

pub(crate) async fn get_metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = bearer(&headers).and_then(|t| state.tokens().caller(t)) {
        state
            .ingest_metrics()
            .request(ROUTE_METRICS, e.status.as_u16());
        return e.into_response();
    }
    // This request is counted before rendering, so the page includes it.
    state.ingest_metrics().request(ROUTE_METRICS, 200);
    let mut out = String::new();
    state.ingest_metrics().render(&mut out);
    render_engine(state.engine(), &mut out);
    render_log(&state, &mut out);
    if let Some(m) = state.mqtt() {
        m.render_prometheus(&mut out);
    }
    state.alerts().render(&mut out);
    state.board().render(&mut out);
    state.conn_stats().render(&mut out);
    state.streams().render(&mut out);
    gauge(
        &mut out,
        "vigie_recent_records",
        "gauge",
        "Records the engine keeps at hand to explain its figures.",
        state.recent().len(),
    );
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
