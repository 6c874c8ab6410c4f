//! The wall of `vigie run`: its query API (every route, good and bad requests) and its page in
//! a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven over WebDriver);
//! each test starts the real binary on the 16 Marseille zones, with a viewer and an operator
//! token, and its embedded MQTT broker.
//!
//! The browser test fails (it does not skip) when Chromium or its driver is missing; it keeps
//! screenshots of the wall in `target/wall-screenshots/`.

#[path = "support/client.rs"]
mod client;

use client::{free_port, now_s};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const VIEWER: &str = "wall-viewer-token";
const OPERATOR: &str = "duty-operator-token";
const SOURCE: &str = "ops-source-token";

fn rfc3339(hour: i64) -> String {
    chrono::DateTime::from_timestamp(hour * 3600, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// `vigie run` on the Marseille zones, killed when dropped.
struct Vigie {
    child: std::process::Child,
    port: u16,
    mqtt: u16,
    _dir: tempfile::TempDir,
}

impl Vigie {
    async fn start() -> Vigie {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("run.toml");
        let zones =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/zones/marseille.geojson");
        std::fs::write(
            &config,
            format!(
                r#"zones = {:?}
[ingest]
epoch_ms = 100
[[sources]]
name = "ops"
feeds = ["incident", "event"]
token_env = "VIGIE_SOURCE_TOKEN"
[[api.tokens]]
name = "wall"
role = "viewer"
token_env = "VIGIE_VIEWER_TOKEN"
[[api.tokens]]
name = "duty"
role = "operator"
token_env = "VIGIE_OPERATOR_TOKEN"
[[alerts.rules]]
name = "risk-13003"
indicator = "risk_score"
zones = ["13003"]
threshold = 70.0
reset = 50.0
severity = "critical"
"#,
                zones.display().to_string()
            ),
        )
        .unwrap();
        let (port, mqtt) = (free_port(), free_port());
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_vigie"))
            .args(["run", "--config"])
            .arg(&config)
            .arg("--data")
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--mqtt-listen", &format!("127.0.0.1:{mqtt}")])
            .env("VIGIE_SOURCE_TOKEN", SOURCE)
            .env("VIGIE_VIEWER_TOKEN", VIEWER)
            .env("VIGIE_OPERATOR_TOKEN", OPERATOR)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("vigie starts");
        let v = Vigie {
            child,
            port,
            mqtt,
            _dir: dir,
        };
        // Up once the engine has closed its first epoch.
        v.wait_for(30, "the first epoch", || async {
            let req = reqwest::Client::new()
                .get(v.url("/api/v1/indicators"))
                .bearer_auth(VIEWER);
            req.send().await.is_ok_and(|r| r.status() == 200)
        })
        .await;
        v
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (u16, Value, String) {
        let client = reqwest::Client::new();
        let mut req = client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.expect("vigie answers");
        let status = resp.status().as_u16();
        let kind = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            kind + "\n" + &text,
        )
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let (s, v, _) = self.call(reqwest::Method::GET, path, token, None).await;
        (s, v)
    }

    /// Posts NDJSON records as the `ops` source.
    async fn post_records(&self, lines: &[String]) {
        let (s, v, text) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/records",
                Some(SOURCE),
                Some(lines.join("\n")),
            )
            .await;
        assert_eq!(s, 200, "{v} {text}");
    }

    async fn wait_for<F, Fut>(&self, secs: u64, what: &str, mut ok: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        while !ok().await {
            assert!(
                started.elapsed().as_secs() < secs,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Zone `zone`'s row at `hour` from `/api/v1/indicators`.
    async fn row(&self, zone: &str, hour: i64) -> Value {
        let (s, v) = self
            .get(
                &format!("/api/v1/indicators?hour={}", hour * 3600),
                Some(VIEWER),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        client::zone_row(&v, zone).unwrap_or(Value::Null)
    }
}

impl Drop for Vigie {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn incident(zone: &str, ts: i64, severity: u8) -> String {
    json!({"feed": "incident", "ts": ts, "zone": zone, "severity": severity}).to_string()
}

/// Asserts a 400 (or `status`) naming `field`.
fn refused(got: (u16, Value), status: u16, field: Option<&str>, what: &str) {
    assert_eq!(got.0, status, "{what}: {}", got.1);
    assert!(
        got.1["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {}",
        got.1
    );
    if let Some(f) = field {
        assert_eq!(got.1["field"], f, "{what}: {}", got.1);
    }
}

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    id: Option<u64>,
    event: String,
    data: String,
}

/// Reads server-sent events off a streaming response.
struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    async fn open(
        v: &Vigie,
        query: &str,
        last: Option<u64>,
        token: Option<&str>,
    ) -> (u16, Option<SseReader>) {
        let mut req = reqwest::Client::new().get(v.url(&format!("/api/v1/stream{query}")));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(l) = last {
            req = req.header("Last-Event-ID", l.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        if status != 200 {
            return (status, None);
        }
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        (
            status,
            Some(SseReader {
                resp,
                buf: String::new(),
            }),
        )
    }

    /// The next event (comments and keep-alives skipped), waiting up to `secs`.
    async fn next(&mut self, secs: u64) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut e = Sse {
                    id: None,
                    event: "message".into(),
                    data: String::new(),
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        e.id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        e.event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        e.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if !e.data.is_empty() || e.id.is_some() {
                    return Some(e);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .ok()?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk.ok()??));
        }
    }

    /// Events until one `pred` accepts (returned last), waiting up to `secs` in all.
    async fn until(&mut self, secs: u64, mut pred: impl FnMut(&Sse) -> bool) -> Vec<Sse> {
        let started = Instant::now();
        let mut seen = Vec::new();
        loop {
            let left = secs.saturating_sub(started.elapsed().as_secs()).max(1);
            let e = self
                .next(left)
                .await
                .unwrap_or_else(|| panic!("no matching event; saw {seen:?}"));
            let done = pred(&e);
            seen.push(e);
            if done {
                return seen;
            }
        }
    }
}

fn rows_of(e: &Sse) -> Vec<Value> {
    if e.event != "indicators" {
        return Vec::new();
    }
    let v: Value = serde_json::from_str(&e.data).unwrap();
    v["rows"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_api_answers_every_route_and_refuses_bad_requests() {
    let mut v = Vigie::start().await;
    let hour = now_s() / 3600;
    // Three incidents in 13001 this hour; a demonstration and a market overlapping in 13002.
    v.post_records(&[
        incident("13001", hour * 3600 + 60, 3),
        incident("13001", hour * 3600 + 120, 4),
        incident("13001", hour * 3600 + 180, 2),
        json!({"feed": "event", "ts": hour * 3600, "id": "demo-1", "zone": "13002",
               "start": (hour + 2) * 3600, "end": (hour + 5) * 3600, "attendance": 500,
               "kind": "demonstration"})
        .to_string(),
        json!({"feed": "event", "ts": hour * 3600, "id": "market-1", "zone": "13002",
               "start": (hour + 3) * 3600, "end": (hour + 6) * 3600, "attendance": 300,
               "kind": "market"})
        .to_string(),
    ])
    .await;
    v.wait_for(15, "the incidents in the board", || async {
        v.row("13001", hour).await["incidents"] == 3
    })
    .await;

    // The page and its parts, with no token: they hold no data.
    let (s, _, text) = v.call(reqwest::Method::GET, "/", None, None).await;
    assert_eq!(s, 200);
    assert!(
        text.starts_with("text/html") && text.contains("/wall.js"),
        "{text}"
    );
    assert!(
        !text.contains("http://") && !text.contains("https://"),
        "an external resource in the page"
    );
    for (path, kind) in [("/wall.js", "text/javascript"), ("/wall.css", "text/css")] {
        let (s, _, text) = v.call(reqwest::Method::GET, path, None, None).await;
        assert_eq!(s, 200, "{path}");
        assert!(text.starts_with(kind), "{path}: {text:.80}");
        assert!(
            !text.contains("https://"),
            "{path} loads something from outside"
        );
    }
    let (s, doc) = v.get("/api/openapi.json", None).await;
    assert_eq!(s, 200);
    for path in [
        "/api/v1/zones",
        "/api/v1/indicators",
        "/api/v1/indicators/range",
        "/api/v1/explain",
        "/api/v1/clashes",
        "/api/v1/feeds",
        "/api/v1/stream",
        "/api/v1/whoami",
        "/api/v1/alerts",
        "/api/v1/alerts/{id}/ack",
        "/health",
        "/metrics",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} not in openapi.json"
        );
    }
    assert_eq!(v.get("/health", None).await.0, 200);
    let (s, _, metrics) = v.call(reqwest::Method::GET, "/metrics", None, None).await;
    assert_eq!(s, 200);
    assert!(metrics.contains("vigie_engine_epochs_total"), "{metrics}");
    assert!(metrics.contains("vigie_wall_streams 0"), "{metrics}");

    // Roles: tokens name their callers; no token or an unknown one is 401 on every read.
    assert_eq!(
        v.get("/api/v1/whoami", Some(VIEWER)).await.1,
        json!({"name": "wall", "role": "viewer"})
    );
    assert_eq!(
        v.get("/api/v1/whoami", Some(OPERATOR)).await.1["role"],
        "operator"
    );
    for path in [
        "/api/v1/whoami",
        "/api/v1/zones",
        "/api/v1/indicators",
        "/api/v1/indicators/range?zone=13001",
        "/api/v1/explain?zone=13001&hour=0",
        "/api/v1/clashes",
        "/api/v1/feeds",
        "/api/v1/stream",
    ] {
        refused(v.get(path, None).await, 401, None, path);
        refused(v.get(path, Some("not-a-token")).await, 401, None, path);
        refused(v.get(path, Some(SOURCE)).await, 401, None, path); // an ingest token reads nothing
    }

    // Zones: GeoJSON with each zone's row at the clock's hour, or at a forecast hour.
    let (s, zones) = v.get("/api/v1/zones", Some(VIEWER)).await;
    assert_eq!(s, 200, "{zones}");
    assert_eq!(zones["type"], "FeatureCollection");
    assert_eq!(zones["clock"], rfc3339(hour));
    let features = zones["features"].as_array().unwrap();
    assert_eq!(features.len(), 16);
    for f in features {
        assert_eq!(f["geometry"]["type"], "MultiPolygon", "{}", f["id"]);
        assert_eq!(f["properties"]["indicator"]["hour"], rfc3339(hour));
        assert_eq!(f["properties"]["indicator"]["zone"], f["id"]);
    }
    let z1 = features.iter().find(|f| f["id"] == "13001").unwrap();
    assert_eq!(z1["properties"]["indicator"]["incidents"], 3);
    let (s, later) = v
        .get(
            &format!("/api/v1/zones?hour={}", rfc3339(hour + 48)),
            Some(VIEWER),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        later["features"][0]["properties"]["indicator"]["hour"],
        rfc3339(hour + 48)
    );
    refused(
        v.get("/api/v1/zones?hour=yesterday", Some(VIEWER)).await,
        400,
        Some("hour"),
        "bad hour",
    );
    refused(
        v.get(
            &format!("/api/v1/zones?hour={}", (hour + 721) * 3600),
            Some(VIEWER),
        )
        .await,
        400,
        Some("hour"),
        "after the horizon",
    );
    refused(
        v.get("/api/v1/zones?hours=1", Some(VIEWER)).await,
        400,
        None,
        "unknown parameter",
    );

    // Latest: the 16 rows, the horizon of 7 days back and 30 ahead.
    let (s, latest) = v.get("/api/v1/indicators", Some(VIEWER)).await;
    assert_eq!(s, 200);
    assert_eq!(latest["indicators"].as_array().unwrap().len(), 16);
    assert_eq!(latest["horizon"]["from"], rfc3339(hour - 168));
    assert_eq!(latest["horizon"]["to"], rfc3339(hour + 720));
    refused(
        v.get(
            &format!("/api/v1/indicators?hour={}", (hour - 169) * 3600),
            Some(VIEWER),
        )
        .await,
        400,
        Some("hour"),
        "before the horizon",
    );
    let row = v.row("13001", hour).await;
    // docs/model.md: with no history, raw = 0.5·recent·(crowd factors)·f_w; 9 of severity.
    assert_eq!(row["contributions"]["recent"], 9.0);
    assert_eq!(row["contributions"]["baseline"], 0.0);

    // Range, from the store: one value per step over the period; the board's value at the hour.
    let q = |extra: &str| format!("/api/v1/indicators/range?zone=13001{extra}");
    let (s, r) = v
        .get(
            &q(&format!(
                "&field=risk_score&agg=last&from={}&to={}&step=1h",
                (hour - 2) * 3600,
                (hour + 3) * 3600
            )),
            Some(VIEWER),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let points = r["points"].as_array().unwrap();
    assert_eq!(points.len(), 5, "{r}");
    let at_hour = points.iter().find(|p| p["time"] == rfc3339(hour)).unwrap();
    assert_eq!(at_hour["value"], row["risk_score"]);
    let (s, whole) = v
        .get(&q("&field=protection_rate&step=1d"), Some(VIEWER))
        .await;
    assert_eq!(s, 200);
    assert_eq!(whole["points"].as_array().unwrap().len(), 38, "{whole}"); // 889 h in days
    refused(
        v.get(&q("&field=nonsense"), Some(VIEWER)).await,
        400,
        Some("field"),
        "bad field",
    );
    refused(
        v.get(&q("&step=0h"), Some(VIEWER)).await,
        400,
        Some("step"),
        "zero step",
    );
    refused(
        v.get(&q("&step=5w"), Some(VIEWER)).await,
        400,
        Some("step"),
        "bad unit",
    );
    refused(
        v.get(&q("&step=1s"), Some(VIEWER)).await,
        400,
        Some("step"),
        "too many values",
    );
    refused(
        v.get(&q("&agg=median"), Some(VIEWER)).await,
        400,
        Some("agg"),
        "bad agg",
    );
    refused(
        v.get(&q(&format!("&from={0}&to={0}", hour * 3600)), Some(VIEWER))
            .await,
        400,
        Some("to"),
        "empty period",
    );
    refused(
        v.get(&q("&from=soon"), Some(VIEWER)).await,
        400,
        Some("from"),
        "bad from",
    );
    refused(
        v.get("/api/v1/indicators/range?zone=99999", Some(VIEWER))
            .await,
        404,
        Some("zone"),
        "unknown zone",
    );
    refused(
        v.get("/api/v1/indicators/range", Some(VIEWER)).await,
        400,
        Some("zone"),
        "no zone",
    );

    // Explain: the stored contributions, and the formula step by step gives the score.
    let (s, e) = v
        .get(
            &format!("/api/v1/explain?zone=13001&hour={}", rfc3339(hour)),
            Some(VIEWER),
        )
        .await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(e["figures"]["incidents"], 3.0);
    assert_eq!(e["figures"]["recent"], 9.0);
    let computed = e["formula"]["risk_score"].as_f64().unwrap();
    let stored = row["risk_score"].as_f64().unwrap();
    assert!(
        (computed - stored).abs() < 1e-9 * stored.max(1.0),
        "{computed} vs {stored}: {e}"
    );
    assert!(!e["revisions"].as_array().unwrap().is_empty());
    let names: Vec<&str> = e["contributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "baseline",
            "recent",
            "crowd",
            "events",
            "weather",
            "demonstration"
        ]
    );
    refused(
        v.get("/api/v1/explain?zone=13001", Some(VIEWER)).await,
        400,
        Some("hour"),
        "no hour",
    );
    refused(
        v.get("/api/v1/explain?zone=13001&hour=946684800", Some(VIEWER))
            .await,
        404,
        Some("hour"),
        "an hour with no figures",
    );
    refused(
        v.get("/api/v1/explain?zone=nowhere&hour=0", Some(VIEWER))
            .await,
        404,
        Some("zone"),
        "unknown zone",
    );

    // Clashes: the demonstration and the market, in 13002 only.
    v.wait_for(10, "the clash", || async {
        v.get("/api/v1/clashes", Some(VIEWER))
            .await
            .1
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .await;
    let (s, clashes) = v.get("/api/v1/clashes", Some(VIEWER)).await;
    assert_eq!(s, 200);
    assert_eq!(clashes.as_array().unwrap().len(), 1, "{clashes}");
    assert_eq!(clashes[0]["zone"], "13002");
    assert_eq!(
        (clashes[0]["a"].as_str(), clashes[0]["b"].as_str()),
        (Some("demo-1"), Some("market-1"))
    );
    assert_eq!(clashes[0]["reason"], "demonstration");
    assert_eq!(
        v.get("/api/v1/clashes?zone=13003", Some(VIEWER)).await.1,
        json!([])
    );
    refused(
        v.get("/api/v1/clashes?zone=00000", Some(VIEWER)).await,
        404,
        Some("zone"),
        "unknown zone",
    );

    // Feeds: what was accepted, per feed.
    let (s, feeds) = v.get("/api/v1/feeds", Some(VIEWER)).await;
    assert_eq!(s, 200);
    let of = |name: &str| {
        feeds["feeds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["feed"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(of("incident")["accepted"], 3);
    assert_eq!(of("incident")["status"], "ok");
    assert_eq!(of("event")["accepted"], 2);
    assert_eq!(of("density")["status"], "silent");
    assert!(feeds["engine"]["epochs"].as_u64().unwrap() > 0);
    refused(
        v.get("/api/v1/feeds?x=1", Some(VIEWER)).await,
        400,
        None,
        "unknown parameter",
    );

    // The stream: a record's new figures arrive as an `indicators` event; ids increase.
    let (s, stream) = SseReader::open(&v, "", None, Some(VIEWER)).await;
    assert_eq!(s, 200);
    let mut stream = stream.unwrap();
    v.post_records(&[incident("13004", hour * 3600 + 300, 5)])
        .await;
    let seen = stream
        .until(10, |e| {
            rows_of(e)
                .iter()
                .any(|r| r["zone"] == "13004" && r["hour"] == rfc3339(hour))
        })
        .await;
    let ids: Vec<u64> = seen.iter().filter_map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let mark = *ids.last().unwrap();
    let row = rows_of(seen.last().unwrap())
        .into_iter()
        .find(|r| r["zone"] == "13004" && r["hour"] == rfc3339(hour))
        .unwrap();
    assert_eq!(row["incidents"], 1);
    assert_eq!(row, v.row("13004", hour).await);
    // The client goes away; two more records; it comes back with Last-Event-ID and gets
    // every event it missed, none twice: the same events a client that stayed got.
    let (_, stayed) = SseReader::open(&v, "", None, Some(VIEWER)).await;
    let mut stayed = stayed.unwrap();
    drop(stream);
    v.post_records(&[incident("13005", hour * 3600 + 300, 1)])
        .await;
    v.post_records(&[incident("13006", hour * 3600 + 300, 1)])
        .await;
    let wanted = |e: &Sse| rows_of(e).iter().any(|r| r["zone"] == "13006");
    let live: Vec<u64> = stayed
        .until(10, wanted)
        .await
        .iter()
        .filter_map(|e| e.id)
        .collect();
    let (_, _, metrics) = v.call(reqwest::Method::GET, "/metrics", None, None).await;
    let streams: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("vigie_wall_streams "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(streams >= 1.0, "{metrics}");
    // The token in the address (as EventSource sends it), and Last-Event-ID as a parameter.
    let (s, back) = SseReader::open(
        &v,
        &format!("?access_token={VIEWER}&last_event_id={mark}"),
        None,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let resumed: Vec<u64> = back
        .unwrap()
        .until(10, wanted)
        .await
        .iter()
        .filter_map(|e| e.id)
        .collect();
    // Every id after the mark up to the last event, in order, once (ids are consecutive),
    // which includes every event the client that stayed got.
    let last = *live.last().unwrap();
    assert_eq!(
        resumed,
        (mark + 1..=last).collect::<Vec<_>>(),
        "the events missed"
    );
    assert!(live.iter().all(|id| resumed.contains(id)));
    // An id from before this process (or too old for the ring): a reset, then live events.
    let (_, old) = SseReader::open(&v, "", Some(1), Some(VIEWER)).await;
    assert_eq!(old.unwrap().next(5).await.unwrap().event, "reset");
    refused(
        v.get("/api/v1/stream?last_event_id=abc", Some(VIEWER))
            .await,
        400,
        Some("last_event_id"),
        "bad id",
    );
    assert_eq!(
        SseReader::open(&v, "?access_token=wrong", None, None)
            .await
            .0,
        401
    );

    // SIGTERM with walls connected: their streams end and vigie stops cleanly (a graceful
    // shutdown must not wait for screens that never hang up).
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &v.child.id().to_string()])
        .status();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = v.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed().as_secs() < 20,
            "vigie did not stop with a stream open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    drop(stayed);
}

// ---- the page in a real browser ------------------------------------------------------------

/// Debian's chromedriver on a free port, killed when dropped.
struct Driver(std::process::Child, u16);

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let child = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect(
                "chromedriver (Debian's chromium-driver) must be installed: tests/run installs it",
            );
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed().as_secs() < 20,
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver(child, port)
    }

    async fn browser(&self) -> fantoccini::Client {
        let chromium = ["/usr/bin/chromium", "/usr/lib/chromium/chromium"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("Debian's chromium must be installed: tests/run installs it");
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1920,1080", "--hide-scrollbars"],
            }
        });
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.as_object().unwrap().clone())
            .connect(&format!("http://127.0.0.1:{}", self.1))
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("wall-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(b: &fantoccini::Client, name: &str) {
    let png = b.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(screenshots().join(name), png).unwrap();
}

async fn js(b: &fantoccini::Client, script: &str) -> Value {
    b.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// Waits up to `secs` for `script` to return something truthy; returns it.
async fn js_wait(b: &fantoccini::Client, secs: u64, what: &str, script: &str) -> Value {
    let started = Instant::now();
    loop {
        let v = js(b, script).await;
        if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
            return v;
        }
        assert!(
            started.elapsed().as_secs() < secs,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clicks the element `css` selects, finding it again if the page redrew it meanwhile (the
/// alert list is redrawn on every alert event).
async fn click(b: &fantoccini::Client, css: &str) {
    for _ in 0..20 {
        let found = b.find(fantoccini::Locator::Css(css)).await;
        match found {
            Ok(e) => match e.click().await {
                Ok(_) => return,
                Err(fantoccini::error::CmdError::Standard(w))
                    if w.error == fantoccini::error::ErrorStatus::StaleElementReference => {}
                Err(e) => panic!("clicking {css}: {e}"),
            },
            Err(e) => panic!("finding {css}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{css} kept being redrawn");
}

/// Publishes `payload` to the embedded broker (QoS 1) and waits for its acknowledgement.
async fn publish(port: u16, topic: &str, payload: String) {
    let mut options = rumqttc::MqttOptions::new("wall-test", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = rumqttc::AsyncClient::new(options, 10);
    client
        .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) =
                events.poll().await.expect("the broker")
            {
                return;
            }
        }
    })
    .await
    .expect("the broker acknowledges");
    let _ = client.disconnect().await;
}

const LEVELS: &str = "return Array.from(document.querySelectorAll('#map g.zone[data-zone]')).map(g => [g.dataset.zone, g.dataset.level, g.querySelector('path').getAttribute('fill')]);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wall_in_headless_chromium_shows_the_city_live() {
    let v = Vigie::start().await;
    let driver = Driver::start();
    let b = driver.browser().await;
    let hour = now_s() / 3600;

    // Some zones busier than others (13003 left quiet for later), so every level shows.
    let busy: Vec<String> = [
        ("13001", 2),
        ("13002", 4),
        ("13005", 6),
        ("13006", 1),
        ("13011", 3),
        ("13012", 12),
        ("13014", 5),
    ]
    .iter()
    .flat_map(|(zone, n)| (0..*n).map(move |i| incident(zone, hour * 3600 + 60 + i, 2)))
    .collect();
    v.post_records(&busy).await;
    v.wait_for(10, "the busy zones", || async {
        v.row("13012", hour).await["incidents"] == 12
    })
    .await;

    // The page loads the 16 Marseille zones, each painted and labelled with its level.
    b.goto(&v.url(&format!("/?token={VIEWER}"))).await.unwrap();
    js_wait(&b, 15, "16 painted zones", "return document.querySelectorAll('#map g.zone[data-level]').length === 16 && document.getElementById('live').className === 'up';").await;
    let zones = js(&b, LEVELS).await;
    assert_eq!(zones.as_array().unwrap().len(), 16);
    let labels = js(&b, "return Array.from(document.querySelectorAll('#map g[data-label] text.name')).map(t => t.textContent);").await;
    assert_eq!(labels.as_array().unwrap().len(), 16, "{labels}");
    assert!(js(&b, "return document.getElementById('who').textContent")
        .await
        .as_str()
        .unwrap()
        .contains("viewer"));
    // Each zone shows the level the API gives, and one colour per level.
    let (_, latest) = v.get("/api/v1/indicators", Some(VIEWER)).await;
    let mut fills = std::collections::BTreeMap::new();
    for z in zones.as_array().unwrap() {
        let row = latest["indicators"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["zone"] == z[0])
            .unwrap();
        assert_eq!(z[1], row["risk_level"].to_string(), "zone {}", z[0]);
        fills
            .entry(z[1].to_string())
            .or_insert_with(std::collections::BTreeSet::new)
            .insert(z[2].to_string());
    }
    assert!(fills.len() >= 3, "levels shown: {fills:?}");
    assert!(
        fills.values().all(|f| f.len() == 1),
        "one fill per level: {fills:?}"
    );
    let before = zones
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z[0] == "13003")
        .unwrap()
        .clone();
    assert_eq!(before[1], "1", "13003 starts quiet: {before}");
    shot(&b, "wall-loaded.png").await;

    // A record published over MQTT repaints its zone within two seconds, with no reload.
    js(&b, "window.__loads = performance.getEntriesByType('navigation').length; window.__changed = null; \
            const g = document.querySelector('#map g.zone[data-zone=\"13003\"]'); \
            new MutationObserver(() => { if (g.dataset.level !== '1' && !window.__changed) window.__changed = Date.now(); }) \
              .observe(g, { attributes: true, attributeFilter: ['data-level'] });").await;
    let records: String = (0..10)
        .map(|i| incident("13003", hour * 3600 + 60 + i, 5) + "\n")
        .collect();
    let sent = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    publish(v.mqtt, "vigie/incident/13003", records).await;
    let changed = js_wait(&b, 10, "13003 repainted", "return window.__changed;")
        .await
        .as_i64()
        .unwrap();
    let took = changed - sent;
    println!("MQTT record to repainted zone: {took} ms");
    assert!(
        took < 2000,
        "the zone changed colour {took} ms after the record was published"
    );
    let after = js(&b, LEVELS)
        .await
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z[0] == "13003")
        .unwrap()
        .clone();
    assert_ne!(after[2], before[2], "the fill changed");
    let api_level = v.row("13003", hour).await["risk_level"].as_u64().unwrap();
    assert_eq!(
        after[1],
        api_level.to_string(),
        "the page shows the API's level"
    );
    assert_eq!(
        js(
            &b,
            "return document.querySelector('#map g[data-label=\"13003\"] text.level').textContent"
        )
        .await,
        api_level.to_string()
    );
    assert_eq!(
        js(
            &b,
            "return performance.getEntriesByType('navigation').length === window.__loads"
        )
        .await,
        true,
        "no reload"
    );

    // The zone panel: the series and what explains the selected hour.
    js(&b, "document.querySelector('#map g.zone[data-zone=\"13003\"]').dispatchEvent(new MouseEvent('click', {bubbles: true}));").await;
    js_wait(
        &b,
        10,
        "the contributions",
        "return document.querySelector('#contributions tr[data-contribution=\"recent\"]');",
    )
    .await;
    let recent = js(&b, "return document.querySelector('#contributions tr[data-contribution=\"recent\"] td.num').textContent").await;
    assert_eq!(recent, "50.00");
    assert!(
        js(
            &b,
            "return document.querySelectorAll('#chart polyline').length"
        )
        .await
            == 2
    );
    shot(&b, "wall-zone.png").await;

    // The slider shows a forecast hour: the map, the label and the panel follow it.
    js(&b, "const s = document.getElementById('slider'); s.value = 168 + 48; s.dispatchEvent(new Event('input'));").await;
    let when = js_wait(&b, 10, "the forecast hour", "const w = document.getElementById('hour-when'); return w.dataset.offset === '48' && w.textContent;").await;
    assert_eq!(when, "forecast +48 h");
    assert_eq!(
        js(
            &b,
            "return document.getElementById('hour-label').textContent"
        )
        .await,
        format!("{} UTC", &rfc3339(hour + 48)[..16].replace('T', " "))
    );
    js_wait(&b, 10, "the forecast explained", &format!("return document.querySelector('#contributions th') && document.querySelector('#contributions th').textContent.includes('{}');", &rfc3339(hour + 48)[..13].replace('T', " "))).await;
    // In two days the incidents of this hour no longer count: 13003 is back to its forecast level.
    let forecast = v.row("13003", hour + 48).await["risk_level"]
        .as_u64()
        .unwrap();
    js_wait(&b, 10, "the forecast levels", &format!("return document.querySelector('#map g.zone[data-zone=\"13003\"]').dataset.level === '{forecast}';")).await;
    shot(&b, "wall-forecast.png").await;

    // The alert the record raised reaches the page; a viewer's acknowledgement is refused…
    b.goto(&v.url(&format!("/?token={VIEWER}"))).await.unwrap();
    js_wait(
        &b,
        15,
        "the alert on the page",
        "return document.querySelector('#alerts li[data-alert] button.ack');",
    )
    .await;
    let (_, alerts) = v.get("/api/v1/alerts?state=active", Some(VIEWER)).await;
    let alert = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["zone"] == "13003")
        .expect("an alert for 13003")
        .clone();
    assert_eq!(alert["state"], "firing", "{alert}");
    let id = alert["id"].as_str().unwrap().to_string();
    let button = format!("#alerts li[data-alert=\"{id}\"] button.ack");
    click(&b, &button).await;
    let refusal = js_wait(&b, 10, "the refusal", "const s = document.getElementById('ack-status'); return s.className === 'refused' && s.textContent;").await;
    assert!(refusal.as_str().unwrap().contains("403"), "{refusal}");
    shot(&b, "wall-ack-refused.png").await;
    let (_, still) = v.get("/api/v1/alerts?state=active", Some(VIEWER)).await;
    assert!(
        still
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == id && a["acknowledged"].is_null()),
        "{still}"
    );
    // …an operator's, typed into the page, goes through, and every wall sees it live.
    let mut watcher = SseReader::open(&v, "", None, Some(VIEWER)).await.1.unwrap();
    b.find(fantoccini::Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(OPERATOR)
        .await
        .unwrap();
    b.find(fantoccini::Locator::Css("#login button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    js_wait(
        &b,
        10,
        "the operator",
        "return document.getElementById('who').textContent.includes('operator');",
    )
    .await;
    js_wait(
        &b,
        10,
        "the ack button",
        &format!("return document.querySelector('{button}');"),
    )
    .await;
    click(&b, &button).await;
    js_wait(
        &b,
        10,
        "the acknowledgement",
        "return document.getElementById('ack-status').className === 'done';",
    )
    .await;
    js_wait(&b, 10, "the acknowledged alert", &format!("const li = document.querySelector('#alerts li[data-alert=\"{id}\"]'); return li && li.textContent.includes('acknowledged by duty');")).await;
    let (_, now) = v.get("/api/v1/alerts?state=active", Some(VIEWER)).await;
    let acked = now
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(acked["acknowledged"]["by"], "duty", "{acked}");
    let event = watcher
        .until(10, |e| {
            e.event == "alert" && e.data.contains("acknowledged")
        })
        .await
        .pop()
        .unwrap();
    let event: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(event["id"], id.as_str());
    assert_eq!(event["acknowledged"]["by"], "duty");
    shot(&b, "wall-acknowledged.png").await;

    b.close().await.unwrap();
}
