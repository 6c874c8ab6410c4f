//! The live side of `vigie run`: the HTTP endpoint (ingest, dead letters, `/metrics`,
//! `/health`, the query API and the wall page of [`crate::api`]) and the MQTT source (of an external broker, or of the embedded one), until
//! SIGTERM or Ctrl-C.

use crate::run::Dirs;
use anyhow::Context;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use vigie_config::Config;
use vigie_connectors::ingest::{router, HttpState, IngestLog, MqttCounters, MqttSource};

/// Rejections of MQTT messages kept for listing.
pub(crate) const MQTT_REJECTIONS: usize = 100;

async fn shutdown_signal(stopping: Arc<AtomicBool>) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let engine_stopped = {
        let stopping = stopping.clone();
        async move {
            while !stopping.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
        _ = engine_stopped => {}
    }
    eprintln!("vigie run: stopping (finishing requests under way, then the last epoch)");
    stopping.store(true, Ordering::SeqCst);
}

/// Serves until a stop signal; returns once every source has stopped and let go of the log.
///
/// `mqtt` is the configuration the MQTT source runs with (`config` itself with an external
/// broker, or [`crate::broker::source_config`] with the embedded one) and its counters; a
/// configuration without `[ingest.mqtt]` starts no MQTT source. `alerts` adds its routes
/// and learns where deliveries are counted (its deadman rules).
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    config: Arc<Config>,
    log: IngestLog,
    listener: std::net::TcpListener,
    dirs: &Dirs,
    wall: Arc<crate::wall::Wall>,
    mqtt: (Arc<Config>, Arc<MqttCounters>),
    stopping: Arc<AtomicBool>,
    alerts: &crate::alerts_api::Alerts,
) -> anyhow::Result<()> {
    let state = HttpState::new(config.clone(), log.clone()).map_err(anyhow::Error::msg)?;
    let tokens = Arc::new(crate::auth::Tokens::load(&config.api).map_err(anyhow::Error::msg)?);
    let shown = alerts.service.clone();
    state.add_metrics(move |out| shown.render(out));
    let shown = wall.clone();
    state.add_metrics(move |out| shown.render(out));
    let engine = wall.metrics.clone();
    state.add_metrics(move |out| engine.render(out));
    let log_dir = dirs.log.clone();
    state.add_metrics(move |out| {
        let bytes: u64 = std::fs::read_dir(&log_dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        out.push_str(&format!(
            "# HELP vigie_ingest_log_bytes Bytes in the durable ingest log's segments.\n# TYPE vigie_ingest_log_bytes gauge\nvigie_ingest_log_bytes {bytes}\n"
        ));
    });
    let (mqtt_config, counters) = mqtt;
    alerts.set_probe(crate::alerts_api::probe(
        &config,
        &mqtt_config,
        state.metrics(),
        counters.clone(),
    ));
    // The feeds' health counts what the sources rejected, by feed.
    let (http_counts, mqtt_counts) = (state.metrics(), counters.clone());
    *wall
        .metrics
        .rejections
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(Box::new(move || {
        let mut by_feed = mqtt_counts.rejected_by_feed();
        for (feed, n) in http_counts.rejected_by_feed() {
            *by_feed.entry(feed.to_string()).or_default() += n;
        }
        by_feed
    }));
    let mqtt = match &mqtt_config.ingest.mqtt {
        None => None,
        Some(m) => {
            let shown = counters.clone();
            state.add_metrics(move |out| shown.render_prometheus(out));
            let url = m.url.clone();
            let source = MqttSource::start(mqtt_config, log.clone(), counters)
                .map_err(anyhow::Error::msg)
                .context("starting the MQTT source")?;
            eprintln!("vigie run: MQTT source on {url}");
            Some(source)
        }
    };
    drop(log);
    let listener =
        tokio::net::TcpListener::from_std(listener).context("serving the HTTP listener")?;
    let addr = listener.local_addr()?;
    eprintln!(
        "vigie run: listening on http://{addr} (ingest log {}, store {})",
        dirs.log.display(),
        dirs.store.display()
    );
    eprintln!(
        "vigie run: the wall on http://{addr}/ (API described at http://{addr}/api/openapi.json)"
    );
    // Alert transitions (firing, resolved, acknowledged…) go to the wall's live stream.
    let mut alert_events = alerts.service.subscribe();
    let to_wall = wall.clone();
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match alert_events.recv().await {
                Ok(event) => match serde_json::to_value(&event) {
                    Ok(v) => to_wall.publish("alert", &v),
                    Err(e) => eprintln!("vigie run: an alert event for the wall: {e}"),
                },
                // Missed some: the walls reread the alerts.
                Err(RecvError::Lagged(n)) => to_wall.publish(
                    "reset",
                    &serde_json::json!({"reason": format!("{n} alert events missed")}),
                ),
                Err(RecvError::Closed) => break,
            }
        }
    });
    let alive = stopping.clone();
    let app = router(state)
        .merge(crate::api::router(wall.clone()))
        .merge(crate::alerts_api::router(alerts.service.clone()))
        .merge(axum::Router::new().route(
            "/health",
            axum::routing::get(move || {
                let alive = alive.clone();
                async move {
                    if alive.load(Ordering::SeqCst) {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "stopping\n")
                    } else {
                        (axum::http::StatusCode::OK, "ok\n")
                    }
                }
            }),
        ))
        .layer(axum::Extension(tokens));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal(stopping).await;
            wall.stop();
        })
        .await;
    if let Some(source) = mqtt {
        let _ = tokio::task::spawn_blocking(move || source.stop()).await;
    }
    served.context("serving HTTP")
}
