//! The server's test harness: a real [`AppState`] over real parts in a temporary folder — the
//! ingest log, the store, the alert service, the board, the index of recent records — and the
//! engine's part played by the model's from-scratch reference
//! ([`vigie_queries::reference`], the oracle the engine is tested against): [`Harness::epoch`]
//! recomputes every row from the committed records, writes what changed to the store and hands
//! it to the board, as the engine thread of `vigie run` does. Requests go through the router
//! ([`Harness::call`], tower's `oneshot`) or a loopback socket ([`Harness::serve`]).
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{HeaderMap, Request};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, RwLock};
use tower::ServiceExt;
use vigie_config::Config;
use vigie_connectors::ingest::{IngestLog, Metrics};
use vigie_model::clock::{now_ms, now_us};
use vigie_model::point::{clash_point, indicator_point};
use vigie_model::time::{hour_of, Calendar};
use vigie_model::{Changes, ClashRow, EngineStats, FeedHealth, IndicatorRow, Record};
use vigie_queries::recent::RecentRecords;
use vigie_server::{app, AppState, Board, Parts, Shutdown};
use vigie_store::{Options, Store};

pub const VIEWER: &str = "wall-viewer-token";
pub const OPERATOR: &str = "duty-operator-token";
pub const POLICE: &str = "police-token-1";
pub const CAMS: &str = "cams-token-2";
pub const GATEWAY: &str = "gateway-token-3";

/// The 16 Marseille zones, the first eight with a road capacity of 1,800 vehicles an hour
/// (so that they have a fluidity), written in `dir`; the file's path.
pub fn zones_with_roads(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/zones/marseille.geojson"),
    )
    .unwrap();
    let mut zones: Value = serde_json::from_str(&text).unwrap();
    for f in zones["features"].as_array_mut().unwrap().iter_mut().take(8) {
        f["properties"]["road_capacity"] = serde_json::json!(1800.0);
    }
    let path = dir.join("zones.geojson");
    std::fs::write(&path, zones.to_string()).unwrap();
    path
}

/// A configuration on the 16 Marseille zones ([`zones_with_roads`]) with three sources
/// (police: incidents, events and calls; cams: densities; gateway: incidents, densities,
/// events), a viewer and an operator, a CSV mapping, `dead_letters` kept, small ingest
/// limits, and `extra` at the end. Tokens are in files. Live ingest takes any date of the past
/// century (`max_past_days`): the tests post records of fixed dates.
pub fn config(dir: &Path, dead_letters: usize, extra: &str) -> Config {
    for (name, token) in [
        ("police", POLICE),
        ("cams", CAMS),
        ("gateway", GATEWAY),
        ("viewer", VIEWER),
        ("operator", OPERATOR),
    ] {
        // A line break after the token, as editors write files: trimmed when read.
        std::fs::write(dir.join(name), format!("{token}\n")).unwrap();
    }
    let zones = zones_with_roads(dir);
    let text = format!(
        r#"zones = {zones:?}
[ingest]
dead_letters = {dead_letters}
max_past_days = 36500
[ingest.http]
max_body_bytes = 4096
max_lines = 10
[mappings.incidents_csv]
feed = "incident"
time = {{ column = "t", format = "unix" }}
location = {{ zone = {{ column = "z" }} }}
fields.severity = {{ column = "s" }}
fields.category = {{ column = "c" }}
[[sources]]
name = "police"
feeds = ["incident", "event", "call", "traffic", "weather", "deployment"]
token_file = "{d}/police"
[[sources]]
name = "cams"
feeds = ["density"]
token_file = "{d}/cams"
[[sources]]
name = "gateway"
feeds = ["incident", "density", "event"]
token_file = "{d}/gateway"
[[api.tokens]]
name = "wall"
role = "viewer"
token_file = "{d}/viewer"
[[api.tokens]]
name = "duty"
role = "operator"
token_file = "{d}/operator"
{extra}
"#,
        zones = zones.display().to_string(),
        d = dir.display()
    );
    let path = dir.join("server-test.toml");
    std::fs::write(&path, text).unwrap();
    Config::from_file(&path).unwrap()
}

/// An answer: status, headers, body as text and as JSON (null when it is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

/// The server over real parts, and the engine's part played by the reference.
pub struct Harness {
    pub state: AppState,
    /// What the ingest log passed on to the engine.
    engine: mpsc::Receiver<Vec<Record>>,
    /// Everything committed so far, in log order (the reference recomputes from it).
    committed: Mutex<Vec<Record>>,
    /// The rows and clashes handed out so far.
    rows: Mutex<BTreeMap<(u32, i64), IndicatorRow>>,
    clashes: Mutex<Vec<ClashRow>>,
    health: FeedHealth,
    log_thread: std::thread::JoinHandle<()>,
    pub dir: tempfile::TempDir,
}

impl Harness {
    /// A harness on [`config`] with `dead_letters` kept and `extra` configuration.
    pub fn start(dead_letters: usize, extra: impl Fn(&Path) -> String) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), dead_letters, &extra(dir.path()));
        Harness::with_config(config, dir)
    }

    /// A harness on `config`, its data in `dir`.
    pub fn with_config(config: Config, dir: tempfile::TempDir) -> Harness {
        let config = Arc::new(config);
        let (tx, engine) = mpsc::channel();
        let opened = IngestLog::open(&dir.path().join("log"), tx).unwrap();
        let (store, _) = Store::open(&dir.path().join("store"), Options::default()).unwrap();
        let zone_ids = config.zones.iter().map(|z| z.id.clone()).collect();
        let alerts = vigie_alerts::Service::open(
            &config.alerts,
            zone_ids,
            &dir.path().join("alerts"),
            now_ms(),
        )
        .unwrap();
        let stats = Arc::new(EngineStats::default());
        let state = AppState::new(Parts {
            config: config.clone(),
            log: opened.log,
            log_dir: dir.path().join("log"),
            compactions: opened.compactions,
            ingest_metrics: Arc::new(Metrics::new()),
            mqtt: None,
            engine: stats.clone(),
            board: Board::new(config.clone(), stats),
            store: Arc::new(RwLock::new(store)),
            recent: Arc::new(RecentRecords::new(config.model.past_hours, 10_000)),
            alerts: Arc::new(alerts),
            shutdown: Shutdown::new(),
        })
        .unwrap();
        Harness {
            state,
            engine,
            committed: Mutex::new(opened.recovered),
            rows: Mutex::default(),
            clashes: Mutex::default(),
            health: FeedHealth::default(),
            log_thread: opened.thread,
            dir,
        }
    }

    /// Lets go of every part and waits for the ingest log to close; the folder stays until
    /// the result is dropped.
    pub fn close(self) -> tempfile::TempDir {
        let Harness {
            state,
            log_thread,
            dir,
            ..
        } = self;
        drop(state);
        log_thread.join().unwrap();
        dir
    }

    /// What the engine received since the last call (the log's side).
    pub fn received(&self) -> Vec<Record> {
        let new: Vec<Record> = self.engine.try_iter().flatten().collect();
        self.committed.lock().unwrap().extend(new.iter().cloned());
        new
    }

    /// One epoch of the engine at the wall clock's hour: every committed record counted by
    /// the reference model, what changed written to the store as one revision and observed
    /// by the board; the recent records index fed and moved.
    pub fn epoch(&self) {
        let new = self.received();
        for r in &new {
            self.health.accept(r);
        }
        let config = self.state.config();
        let committed = self.committed.lock().unwrap().clone();
        let clock_us = now_us();
        let clock = hour_of(clock_us);
        let out = vigie_queries::reference::compute_at(
            &committed,
            &config.zones,
            &config.model,
            &Calendar::new(config.timezone),
            Some(clock_us),
        );
        let mut changes = Changes::default();
        {
            let mut rows = self.rows.lock().unwrap();
            for row in out.indicators {
                let key = (row.zone, row.hour);
                if rows.get(&key) != Some(&row) {
                    changes
                        .indicators
                        .push((rows.get(&key).cloned(), row.clone()));
                    rows.insert(key, row);
                }
            }
            let mut clashes = self.clashes.lock().unwrap();
            for c in &out.clashes {
                if !clashes.contains(c) {
                    changes.clashes.push((c.clone(), true));
                }
            }
            for c in clashes.iter() {
                if !out.clashes.contains(c) {
                    changes.clashes.push((c.clone(), false));
                }
            }
            *clashes = out.clashes;
        }
        let ids: Vec<&str> = config.zones.iter().map(|z| z.id.as_str()).collect();
        let mut points: Vec<_> = changes
            .indicators
            .iter()
            .filter_map(|(old, new)| indicator_point(old.as_ref(), new, ids[new.zone as usize]))
            .collect();
        points.extend(
            changes
                .clashes
                .iter()
                .map(|(c, a)| clash_point(c, ids[c.zone as usize], *a)),
        );
        let rev = now_ms().max(self.state.store().read().unwrap().last_revision() + 1);
        points.extend(self.health.points(rev));
        self.state
            .store()
            .write()
            .unwrap()
            .write_points(&points, rev)
            .unwrap();
        self.state.recent().insert(&new);
        self.state.recent().advance(clock);
        self.state
            .engine()
            .epochs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.state.board().observe(&changes, clock, &self.health);
    }

    /// One request through the router.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: impl Into<Body>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        self.send(req.body(body.into()).unwrap()).await
    }

    /// A request built by the caller, through the router.
    pub async fn send(&self, req: Request<Body>) -> Answer {
        let r = app(self.state.clone()).oneshot(req).await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).to_string();
        Answer {
            status,
            headers,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    /// `GET` with a bearer token.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.call("GET", path, token, Body::empty()).await
    }

    /// Serves the router on a loopback port until the harness's shutdown signal; the URL.
    pub async fn serve(&self) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = self.state.shutdown().clone();
        let router = app(self.state.clone());
        let served = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { shutdown.triggered().await })
                .await
        });
        (url, served)
    }
}

/// Asserts an error answer: its status, a message, and the field it names.
pub fn refused(a: &Answer, status: u16, field: Option<&str>, what: &str) {
    assert_eq!(a.status, status, "{what}: {}", a.text);
    assert!(
        a.json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {}",
        a.text
    );
    if let Some(f) = field {
        assert_eq!(a.json["field"], f, "{what}: {}", a.text);
    }
}
