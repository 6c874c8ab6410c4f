//! Every route of the server through its router (tower's `oneshot`, no process, no socket),
//! good requests and bad ones, over the real parts of the harness (`support/`): the ingest
//! log, the store, the alert service, the board, the recent records; the engine's epochs are
//! played by the model's reference.

mod support;

use axum::body::Body;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::time::Duration;
use support::{refused, Harness, CAMS, GATEWAY, OPERATOR, POLICE, VIEWER};
use vigie_model::clock::wall_hour;

fn rfc3339(hour: i64) -> String {
    vigie_model::time::format_hour(hour)
}

/// A request that must be refused: method, path, token, body, status, field at fault.
type Refusal<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'static str,
    u16,
    Option<&'a str>,
);

/// The `name` of each object of a JSON list.
fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect()
}

fn incident(zone: &str, ts: i64, severity: u8) -> String {
    json!({"feed": "incident", "ts": ts, "zone": zone, "severity": severity}).to_string()
}

/// Posts NDJSON records as `token`'s source; asserts they were all accepted.
async fn post(h: &Harness, token: &str, lines: &[String]) {
    let a = h
        .call("POST", "/api/v1/records", Some(token), lines.join("\n"))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["rejected_total"], 0, "{}", a.text);
}

/// Zone `zone`'s row at `hour` from `/api/v1/indicators`.
async fn row(h: &Harness, zone: &str, hour: i64) -> Value {
    let a = h
        .get(
            &format!("/api/v1/indicators?hour={}", hour * 3600),
            Some(VIEWER),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.json["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["zone"] == zone)
        .cloned()
        .unwrap_or(Value::Null)
}

/// A harness with three incidents in 13001 this hour, a hotline call, a demonstration and a
/// market overlapping in 13002, traffic in 13003 (which has a road capacity), one epoch run.
async fn city() -> (Harness, i64) {
    let h = Harness::start(100, |_| String::new());
    let hour = wall_hour();
    post(
        &h,
        POLICE,
        &[
            incident("13001", hour * 3600 + 60, 3),
            incident("13001", hour * 3600 + 120, 4),
            incident("13001", hour * 3600 + 180, 2),
            json!({"feed": "call", "ts": hour * 3600 + 200, "zone": "13001"}).to_string(),
            json!({"feed": "event", "ts": hour * 3600, "id": "demo-1", "zone": "13002",
                   "start": (hour + 2) * 3600, "end": (hour + 5) * 3600, "attendance": 500,
                   "kind": "demonstration"})
            .to_string(),
            json!({"feed": "event", "ts": hour * 3600, "id": "market-1", "zone": "13002",
                   "start": (hour + 3) * 3600, "end": (hour + 6) * 3600, "attendance": 300,
                   "kind": "market"})
            .to_string(),
            json!({"feed": "traffic", "ts": hour * 3600 + 30, "zone": "13003", "volume": 1700})
                .to_string(),
        ],
    )
    .await;
    h.epoch();
    (h, hour)
}

#[tokio::test]
async fn the_page_its_parts_health_metrics_and_unknown_paths() {
    let h = Harness::start(100, |_| String::new());
    let a = h.get("/", None).await;
    assert_eq!(a.status, 200);
    assert!(a.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(a.text.contains("/wall.js"), "{}", a.text);
    assert!(
        !a.text.contains("http://") && !a.text.contains("https://"),
        "an external resource in the page"
    );
    assert!(
        !a.text.contains("<script>") && !a.text.contains("onclick="),
        "inline script in the page"
    );
    for (path, kind) in [
        ("/wall.js", "text/javascript"),
        ("/wall.css", "text/css"),
        ("/api/openapi.json", "application/json"),
    ] {
        let a = h.get(path, None).await;
        assert_eq!(a.status, 200, "{path}");
        assert!(
            a.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
        assert!(
            !a.text.contains("https://cdn"),
            "{path} loads something from outside"
        );
    }
    // Before the first epoch: reads that need the clock say so.
    refused(
        &h.get("/api/v1/indicators", Some(VIEWER)).await,
        503,
        None,
        "no epoch yet",
    );
    assert_eq!(h.get("/health", None).await.status, 200);
    // With API tokens configured, the metrics take one (a viewer's will do).
    assert_eq!(h.get("/metrics", None).await.status, 401);
    let m = h.get("/metrics", Some(VIEWER)).await;
    assert_eq!(m.status, 200);
    for line in [
        "vigie_engine_epochs_total 0",
        "vigie_wall_streams 0",
        "vigie_ingest_log_bytes",
        "vigie_recent_records 0",
    ] {
        assert!(m.text.contains(line), "{line} not in\n{}", m.text);
    }
    let a = h.get("/nowhere", Some(VIEWER)).await;
    refused(&a, 404, Some("path"), "unknown path");
    // Stopping: /health says so.
    h.state.shutdown().trigger();
    assert_eq!(h.get("/health", None).await.status, 503);
}

/// Every kind of answer — the page, its files, an API answer, an error, a refused token, the
/// metrics, an ingest answer — carries the security headers.
#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let h = Harness::start(100, |_| String::new());
    let answers = [
        h.get("/", None).await,
        h.get("/wall.js", None).await,
        h.get("/wall.css", None).await,
        h.get("/api/openapi.json", None).await,
        h.get("/health", None).await,
        h.get("/metrics", Some(VIEWER)).await,
        h.get("/metrics", None).await,
        h.get("/api/v1/whoami", Some(VIEWER)).await,
        h.get("/api/v1/zones", Some("not-a-token")).await,
        h.get("/nowhere", None).await,
        h.call("POST", "/api/v1/records", Some(POLICE), "{".to_string())
            .await,
    ];
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        vec![200, 200, 200, 200, 200, 200, 401, 200, 401, 404, 400]
    );
    for a in &answers {
        let csp = a.headers["content-security-policy"].to_str().unwrap();
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{part} not in {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(a.headers["x-frame-options"], "DENY");
        assert_eq!(a.headers["x-content-type-options"], "nosniff");
        assert_eq!(a.headers["referrer-policy"], "no-referrer");
    }
    // What the policy allows is enough for the page: no inline script, no inline style, no
    // style attribute, no inline event handler.
    let page = &answers[0].text;
    for inline in ["<script>", "<style", "style=", " onload=", " onclick="] {
        assert!(!page.contains(inline), "{inline} in the page");
    }
    assert!(page.contains("<script src=\"/wall.js\""), "{page}");
}

#[tokio::test]
async fn tokens_name_callers_and_each_kind_opens_only_its_routes() {
    let (h, _) = city().await;
    assert_eq!(
        h.get("/api/v1/whoami", Some(VIEWER)).await.json,
        json!({"name": "wall", "role": "viewer"})
    );
    assert_eq!(
        h.get("/api/v1/whoami", Some(OPERATOR)).await.json["role"],
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
        "/api/v1/alerts",
        "/api/v1/alerts/history",
        "/api/v1/rules",
        "/api/v1/silences",
    ] {
        for token in [None, Some("not-a-token"), Some(POLICE)] {
            let a = h.get(path, token).await;
            refused(&a, 401, None, &format!("{path} with {token:?}"));
            assert_eq!(
                a.headers["www-authenticate"], "Bearer realm=\"vigie\"",
                "{path}"
            );
        }
    }
    // An API token writes nothing; a source reads only its dead letters.
    refused(
        &h.call(
            "POST",
            "/api/v1/records",
            Some(OPERATOR),
            incident("13001", 0, 1),
        )
        .await,
        401,
        None,
        "an operator writing",
    );
    refused(
        &h.get("/api/v1/dead-letters", Some(VIEWER)).await,
        401,
        None,
        "a viewer's dead letters",
    );
    assert_eq!(h.get("/api/v1/dead-letters", Some(CAMS)).await.status, 200);
    refused(
        &h.get("/api/v1/dead-letters?limit=x", Some(CAMS)).await,
        400,
        Some("limit"),
        "bad limit",
    );
    // Another scheme is refused, `Token` is taken as InfluxDB clients send it.
    let basic = axum::http::Request::get("/api/v1/whoami")
        .header("authorization", format!("Basic {VIEWER}"))
        .body(Body::empty())
        .unwrap();
    refused(&h.send(basic).await, 401, Some("authorization"), "basic");
    let token = axum::http::Request::get("/api/v1/whoami")
        .header("authorization", format!("Token {VIEWER}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(token).await.json["name"], "wall");
}

#[tokio::test]
async fn zones_indicators_and_ranges_carry_model_v2() {
    let (h, hour) = city().await;
    let a = h.get("/api/v1/zones", Some(VIEWER)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let zones = a.json;
    assert_eq!(zones["type"], "FeatureCollection");
    assert_eq!(zones["clock"], rfc3339(hour));
    assert_eq!(zones["timezone"], "Europe/Paris");
    assert_eq!(zones["model"], 2);
    let features = zones["features"].as_array().unwrap();
    assert_eq!(features.len(), 16);
    for f in features {
        assert_eq!(f["geometry"]["type"], "MultiPolygon", "{}", f["id"]);
        assert_eq!(f["properties"]["indicator"]["hour"], rfc3339(hour));
    }
    let z1 = features.iter().find(|f| f["id"] == "13001").unwrap();
    let ind = &z1["properties"]["indicator"];
    assert_eq!(ind["incidents"], 3);
    // Model v2: calls, criticality, confidence and the exposure terms.
    assert_eq!(ind["calls"], 1);
    assert!(
        ind["criticality"]
            .as_u64()
            .is_some_and(|c| (1..=4).contains(&c)),
        "{ind}"
    );
    assert!(
        ind["confidence"].is_string() && ind["missing"].is_array(),
        "{ind}"
    );
    assert_eq!(ind["contributions"]["recent"], 9.25); // 3 + 4 + 2 + 0.25 · 1 call
                                                      // 13003 has a road capacity and traffic: a fluidity; 13010 has none.
    let z3 = features.iter().find(|f| f["id"] == "13003").unwrap();
    assert_eq!(z3["properties"]["road_capacity"], 1800.0);
    let f3 = z3["properties"]["indicator"]["fluidity"].as_f64().unwrap();
    assert!(
        (f3 - 1.0 / (1.0 + 0.15 * (1700.0f64 / 1800.0).powi(4))).abs() < 1e-9,
        "{f3}"
    );
    let z10 = features.iter().find(|f| f["id"] == "13010").unwrap();
    assert_eq!(z10["properties"]["indicator"]["fluidity"], Value::Null);

    let later = h
        .get(
            &format!("/api/v1/zones?hour={}", rfc3339(hour + 48)),
            Some(VIEWER),
        )
        .await;
    assert_eq!(
        later.json["features"][0]["properties"]["indicator"]["hour"],
        rfc3339(hour + 48)
    );
    refused(
        &h.get("/api/v1/zones?hour=yesterday", Some(VIEWER)).await,
        400,
        Some("hour"),
        "bad hour",
    );
    refused(
        &h.get(
            &format!("/api/v1/zones?hour={}", (hour + 721) * 3600),
            Some(VIEWER),
        )
        .await,
        400,
        Some("hour"),
        "after the horizon",
    );
    refused(
        &h.get("/api/v1/zones?hours=1", Some(VIEWER)).await,
        400,
        Some("hours"),
        "unknown parameter",
    );

    let latest = h.get("/api/v1/indicators", Some(VIEWER)).await.json;
    assert_eq!(latest["indicators"].as_array().unwrap().len(), 16);
    assert_eq!(latest["horizon"]["from"], rfc3339(hour - 168));
    assert_eq!(latest["horizon"]["to"], rfc3339(hour + 720));
    refused(
        &h.get(
            &format!("/api/v1/indicators?hour={}", (hour - 169) * 3600),
            Some(VIEWER),
        )
        .await,
        400,
        Some("hour"),
        "before the horizon",
    );

    // Ranges from the store: v1's and v2's fields, an undefined value as null.
    let q = |extra: &str| format!("/api/v1/indicators/range?zone=13001{extra}");
    let r = h
        .get(
            &q(&format!(
                "&field=risk_score&agg=last&from={}&to={}&step=1h",
                (hour - 2) * 3600,
                (hour + 3) * 3600
            )),
            Some(VIEWER),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let points = r.json["points"].as_array().unwrap();
    assert_eq!(points.len(), 5);
    let at = points.iter().find(|p| p["time"] == rfc3339(hour)).unwrap();
    assert_eq!(at["value"], row(&h, "13001", hour).await["risk_score"]);
    // Every field of v1 and v2 is readable.
    for field in vigie_model::point::ALL_FIELDS {
        let a = h
            .get(
                &q(&format!(
                    "&field={field}&agg=last&from={0}&to={1}",
                    hour * 3600,
                    (hour + 1) * 3600
                )),
                Some(VIEWER),
            )
            .await;
        assert_eq!(a.status, 200, "{field}: {}", a.text);
        // A field never defined in the zone (13001 has no traffic) has no series: no point.
        let undefined = ["traffic", "fluidity", "fluidity_level", "fluidity_trend"];
        let n = a.json["points"].as_array().unwrap().len();
        assert_eq!(
            n,
            usize::from(!undefined.contains(&field)),
            "{field}: {}",
            a.text
        );
    }
    let calls = h
        .get(
            &q(&format!(
                "&field=calls&agg=sum&from={0}&to={1}",
                hour * 3600,
                (hour + 1) * 3600
            )),
            Some(VIEWER),
        )
        .await;
    assert_eq!(calls.json["points"][0]["value"], 1.0);
    let fluid = h
        .get(
            &format!(
                "/api/v1/indicators/range?zone=13010&field=fluidity&agg=last&from={0}&to={1}",
                hour * 3600,
                (hour + 1) * 3600
            ),
            Some(VIEWER),
        )
        .await;
    assert_eq!(
        fluid.json["points"][0]["value"],
        Value::Null,
        "{}",
        fluid.text
    );
    let whole = h
        .get(&q("&field=protection_rate&step=1d"), Some(VIEWER))
        .await;
    assert_eq!(
        whole.json["points"].as_array().unwrap().len(),
        38,
        "{}",
        whole.text
    );
    for (extra, field, what) in [
        ("&field=nonsense", "field", "bad field"),
        ("&step=0h", "step", "zero step"),
        ("&step=5y", "step", "bad unit"),
        ("&step=1s", "step", "too many values"),
        // Steps whose milliseconds overflow, or beyond ten years: 400, not a panic.
        ("&step=9223372036854775807w", "step", "overflowing step"),
        ("&step=99999999999999999999999h", "step", "step beyond i64"),
        ("&step=3651d", "step", "step beyond ten years"),
        ("&step=1%C3%A9", "step", "a two-byte unit"),
        ("&agg=median", "agg", "bad agg"),
        ("&from=soon", "from", "bad from"),
    ] {
        refused(
            &h.get(&q(extra), Some(VIEWER)).await,
            400,
            Some(field),
            what,
        );
    }
    refused(
        &h.get(&q(&format!("&from={0}&to={0}", hour * 3600)), Some(VIEWER))
            .await,
        400,
        Some("to"),
        "empty period",
    );
    refused(
        &h.get("/api/v1/indicators/range?zone=99999", Some(VIEWER))
            .await,
        404,
        Some("zone"),
        "unknown zone",
    );
    refused(
        &h.get("/api/v1/indicators/range", Some(VIEWER)).await,
        400,
        Some("zone"),
        "no zone",
    );
}

#[tokio::test]
async fn explain_gives_v2_s_formula_step_by_step_and_cites_the_records() {
    let (h, hour) = city().await;
    let stored = row(&h, "13001", hour).await;
    let a = h
        .get(
            &format!("/api/v1/explain?zone=13001&hour={}", rfc3339(hour)),
            Some(VIEWER),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let e = a.json;
    assert_eq!(e["model"], 2);
    assert_eq!(e["figures"]["incidents"], 3.0);
    assert_eq!(e["figures"]["calls"], 1.0);
    assert_eq!(e["units"]["crowd"], "people");
    let score = e["formula"]["risk_score"].as_f64().unwrap();
    let want = stored["risk_score"].as_f64().unwrap();
    assert!(
        (score - want).abs() < 1e-9 * want.max(1.0),
        "{score} vs {want}: {e}"
    );
    let steps = names(&e["formula"]["steps"]);
    assert_eq!(
        steps,
        [
            "exposure",
            "base",
            "crowd_factor",
            "weather_factor",
            "demonstration_factor",
            "raw",
            "risk_score",
            "risk_level"
        ]
    );
    let parts = names(&e["contributions"]);
    assert_eq!(
        parts,
        [
            "baseline",
            "recent",
            "exposure",
            "events_exposure",
            "spill",
            "surge",
            "crowd",
            "events",
            "weather",
            "demonstration"
        ]
    );
    assert_eq!(e["v2"]["criticality"]["value"], stored["criticality"]);
    assert_eq!(e["v2"]["confidence"]["value"], stored["confidence"]);
    assert_eq!(e["v2"]["confidence"]["missing"], stored["missing"]);
    assert_eq!(e["bands"]["risk_level"], json!([25.0, 50.0, 75.0]));
    // The records behind the hour, from the engine's recent records, and the checks agree.
    let records = &e["records"];
    assert_eq!(records["complete"], true, "{records}");
    let recent: Vec<u64> = records["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["severity"].as_u64().unwrap())
        .collect();
    assert_eq!(recent, [3, 4, 2]);
    assert_eq!(records["agree"], true, "{records}");
    assert!(!e["revisions"].as_array().unwrap().is_empty());
    // Fluidity from traffic and road capacity, in 13003.
    let f = h
        .get(
            &format!("/api/v1/explain?zone=13003&hour={}", rfc3339(hour)),
            Some(VIEWER),
        )
        .await
        .json;
    assert_eq!(f["v2"]["fluidity"]["road_capacity"], 1800.0);
    assert_eq!(f["v2"]["fluidity"]["traffic"], 1700.0);
    assert_eq!(
        f["v2"]["fluidity"]["fluidity"],
        row(&h, "13003", hour).await["fluidity"]
    );
    // The events of 13002 cited at an hour they overlap.
    let d = h
        .get(
            &format!("/api/v1/explain?zone=13002&hour={}", rfc3339(hour + 3)),
            Some(VIEWER),
        )
        .await
        .json;
    let ids: Vec<&str> = d["records"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["demo-1", "market-1"]);
    assert_eq!(d["records"]["agree"], true, "{}", d["records"]);

    for (query, status, field) in [
        ("zone=13001", 400, "hour"),
        ("zone=13001&hour=946684800", 404, "hour"),
        ("zone=nowhere&hour=0", 404, "zone"),
        ("zone=13001&hour=0&x=1", 400, "x"),
    ] {
        let a = h
            .get(&format!("/api/v1/explain?{query}"), Some(VIEWER))
            .await;
        refused(&a, status, Some(field), query);
    }
}

#[tokio::test]
async fn explain_gives_v1_s_formula_when_the_model_is_v1() {
    let h = Harness::start(100, |_| "[model]\nversion = 1\n".into());
    let hour = wall_hour();
    post(&h, POLICE, &[incident("13004", hour * 3600 + 60, 5)]).await;
    h.epoch();
    let e = h
        .get(
            &format!("/api/v1/explain?zone=13004&hour={}", rfc3339(hour)),
            Some(VIEWER),
        )
        .await
        .json;
    assert_eq!(e["model"], 1);
    assert!(e.get("v2").is_none(), "{e}");
    let parts = names(&e["contributions"]);
    assert_eq!(
        parts,
        [
            "baseline",
            "recent",
            "crowd",
            "events",
            "weather",
            "demonstration"
        ]
    );
    assert_eq!(e["formula"]["steps"][0]["name"], "base");
    let stored = row(&h, "13004", hour).await;
    assert!(stored.get("criticality").is_none(), "a v1 row: {stored}");
    let score = e["formula"]["risk_score"].as_f64().unwrap();
    assert!((score - stored["risk_score"].as_f64().unwrap()).abs() < 1e-9);
    assert_eq!(e["records"]["agree"], true, "{}", e["records"]);
    // v2's fields are not indicators of a v1 store: nothing there.
    let r = h
        .get(
            &format!(
                "/api/v1/indicators/range?zone=13004&field=criticality&agg=last&from={0}&to={1}",
                hour * 3600,
                (hour + 1) * 3600
            ),
            Some(VIEWER),
        )
        .await;
    assert_eq!(r.json["points"][0]["value"], Value::Null, "{}", r.text);
}

#[tokio::test]
async fn clashes_and_feeds() {
    let (h, _) = city().await;
    let c = h.get("/api/v1/clashes", Some(VIEWER)).await.json;
    assert_eq!(c.as_array().unwrap().len(), 1, "{c}");
    assert_eq!(
        (c[0]["zone"].as_str(), c[0]["name"].as_str()),
        (Some("13002"), Some("Marseille 2e"))
    );
    assert_eq!(
        (
            c[0]["a"].as_str(),
            c[0]["b"].as_str(),
            c[0]["reason"].as_str()
        ),
        (Some("demo-1"), Some("market-1"), Some("demonstration"))
    );
    assert_eq!(
        h.get("/api/v1/clashes?zone=13003", Some(VIEWER)).await.json,
        json!([])
    );
    refused(
        &h.get("/api/v1/clashes?zone=00000", Some(VIEWER)).await,
        404,
        Some("zone"),
        "unknown zone",
    );
    let feeds = h.get("/api/v1/feeds", Some(VIEWER)).await.json;
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
    assert_eq!(feeds["engine"]["epochs"], 1);
    refused(
        &h.get("/api/v1/feeds?x=1", Some(VIEWER)).await,
        400,
        Some("x"),
        "unknown parameter",
    );
}

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    id: Option<u64>,
    event: String,
    data: String,
}

/// Reads server-sent events off a response body.
struct SseReader {
    body: Body,
    buf: String,
}

impl SseReader {
    async fn open(
        h: &Harness,
        query: &str,
        last: Option<u64>,
        token: Option<&str>,
    ) -> Result<SseReader, support::Answer> {
        let mut req = axum::http::Request::get(format!("/api/v1/stream{query}"));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(l) = last {
            req = req.header("last-event-id", l.to_string());
        }
        use tower::ServiceExt;
        let r = vigie_server::app(h.state.clone())
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        if r.status() != 200 {
            let status = r.status().as_u16();
            let bytes = r.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8_lossy(&bytes).to_string();
            return Err(support::Answer {
                status,
                headers: Default::default(),
                json: serde_json::from_str(&text).unwrap_or(Value::Null),
                text,
            });
        }
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        Ok(SseReader {
            body: r.into_body(),
            buf: String::new(),
        })
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
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()??
                .ok()?;
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }

    /// Events until one `pred` accepts (returned last).
    async fn until(&mut self, secs: u64, mut pred: impl FnMut(&Sse) -> bool) -> Vec<Sse> {
        let mut seen = Vec::new();
        loop {
            let e = self
                .next(secs)
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
async fn the_stream_carries_v2_rows_and_resumes_with_last_event_id() {
    let (h, hour) = city().await;
    let mut stream = SseReader::open(&h, "", None, Some(VIEWER)).await.unwrap();
    post(&h, POLICE, &[incident("13004", hour * 3600 + 300, 5)]).await;
    h.epoch();
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
    let r = rows_of(seen.last().unwrap())
        .into_iter()
        .find(|r| r["zone"] == "13004" && r["hour"] == rfc3339(hour))
        .unwrap();
    assert_eq!(r["incidents"], 1);
    assert!(
        r["criticality"].is_u64() && r["confidence"].is_string(),
        "v2 in the stream: {r}"
    );
    assert_eq!(r, row(&h, "13004", hour).await);
    let mut stayed = SseReader::open(&h, "", None, Some(VIEWER)).await.unwrap();
    drop(stream);
    // An answer names the last event it takes in: 13004's, not yet 13005's.
    let answer = h
        .get(
            &format!("/api/v1/indicators?hour={}", hour * 3600),
            Some(VIEWER),
        )
        .await;
    let taken_in = answer.json["event_id"].as_u64().expect("event_id");
    assert!(taken_in >= mark, "{taken_in} < {mark}");
    let zones_in = |a: &Value| -> Vec<Value> {
        a["indicators"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["incidents"].as_u64().is_some_and(|n| n > 0))
            .map(|r| r["zone"].clone())
            .collect()
    };
    let before = zones_in(&answer.json);
    assert!(
        before.contains(&json!("13004")) && !before.contains(&json!("13005")),
        "{before:?}"
    );
    post(&h, POLICE, &[incident("13005", hour * 3600 + 300, 1)]).await;
    h.epoch();
    post(&h, POLICE, &[incident("13006", hour * 3600 + 300, 1)]).await;
    h.epoch();
    let wanted = |e: &Sse| rows_of(e).iter().any(|r| r["zone"] == "13006");
    let live: Vec<u64> = stayed
        .until(10, wanted)
        .await
        .iter()
        .filter_map(|e| e.id)
        .collect();
    let m = h.get("/metrics", Some(VIEWER)).await.text;
    assert!(m.contains("vigie_wall_streams 1"), "{m}");
    // A stream opened from it, once both epochs are out, brings both changes the answer lacks
    // (the wall opens its stream so after its first answer).
    let after: Vec<Value> = SseReader::open(
        &h,
        &format!("?last_event_id={taken_in}"),
        None,
        Some(VIEWER),
    )
    .await
    .unwrap()
    .until(10, wanted)
    .await
    .iter()
    .flat_map(rows_of)
    .filter(|r| r["hour"] == rfc3339(hour))
    .map(|r| r["zone"].clone())
    .collect();
    assert!(
        after.contains(&json!("13005")) && after.contains(&json!("13006")),
        "{after:?}"
    );
    // The token in the address (as EventSource sends it), and Last-Event-ID as a parameter.
    let mut back = SseReader::open(
        &h,
        &format!("?access_token={VIEWER}&last_event_id={mark}"),
        None,
        None,
    )
    .await
    .unwrap();
    let resumed: Vec<u64> = back
        .until(10, wanted)
        .await
        .iter()
        .filter_map(|e| e.id)
        .collect();
    let last = *live.last().unwrap();
    assert_eq!(
        resumed,
        (mark + 1..=last).collect::<Vec<_>>(),
        "the events missed"
    );
    // An id from before this process: a reset.
    let mut old = SseReader::open(&h, "", Some(1), Some(VIEWER))
        .await
        .unwrap();
    assert_eq!(old.next(5).await.unwrap().event, "reset");
    refused(
        &SseReader::open(&h, "?last_event_id=abc", None, Some(VIEWER))
            .await
            .err()
            .unwrap(),
        400,
        Some("last_event_id"),
        "bad id",
    );
    refused(
        &SseReader::open(&h, "?access_token=wrong", None, None)
            .await
            .err()
            .unwrap(),
        401,
        None,
        "bad token",
    );
    // The server stops: open streams end.
    h.state.shutdown().trigger();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while stayed.next(5).await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream did not end with the server");
}

#[tokio::test]
async fn rules_silences_and_alerts_with_roles_and_errors_naming_the_field() {
    let (h, _) = city().await;
    let call = |m: &'static str, p: String, t: &'static str, b: &'static str| {
        let h = &h;
        async move { h.call(m, &p, Some(t), b).await }
    };
    let rule = r#"{"name":"hot","indicator":"risk_score","zones":["13001"],"threshold":75,"reset":70,"lookahead_h":24,"severity":"critical"}"#;
    let created = call("POST", "/api/v1/rules".into(), OPERATOR, rule).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["origin"], "api");
    let put = call(
        "PUT",
        "/api/v1/rules/hot".into(),
        OPERATOR,
        r#"{"indicator":"risk_score","zones":["13001"],"threshold":80}"#,
    )
    .await;
    assert_eq!(
        (put.status, put.json["threshold"].clone()),
        (200, json!(80.0))
    );
    let one = call("GET", "/api/v1/rules/hot".into(), VIEWER, "").await;
    assert_eq!(one.json["threshold"], 80.0);
    let all = call("GET", "/api/v1/rules".into(), VIEWER, "").await;
    assert_eq!(all.json.as_array().unwrap().len(), 1);
    let s = call(
        "POST",
        "/api/v1/silences".into(),
        OPERATOR,
        r#"{"rule":"hot","zone":"13001","duration_s":3600,"comment":"works"}"#,
    )
    .await;
    assert_eq!(s.status, 201, "{}", s.text);
    assert_eq!(s.json["by"], "duty");
    let listed = call("GET", "/api/v1/silences".into(), VIEWER, "").await;
    assert_eq!(listed.json.as_array().unwrap().len(), 1);
    let silence = format!("/api/v1/silences/{}", s.json["id"].as_str().unwrap());
    assert_eq!(
        call("GET", "/api/v1/alerts".into(), VIEWER, "").await.json,
        json!([])
    );
    let history = call("GET", "/api/v1/alerts/history".into(), VIEWER, "").await;
    assert_eq!(history.status, 200);
    // Refused, each with its status and the field at fault (in this order: some undo others).
    let other = r#"{"name":"other","indicator":"risk_score","zones":["13001"],"threshold":80}"#;
    let refusals: [Refusal; 18] = [
        ("POST", "/api/v1/rules", VIEWER, rule, 403, None),
        ("POST", "/api/v1/rules", "bad", rule, 401, None),
        ("POST", "/api/v1/rules", OPERATOR, rule, 409, None),
        (
            "POST",
            "/api/v1/rules",
            OPERATOR,
            r#"{"name":"x","indicator":"load","zones":["99999"],"threshold":1}"#,
            400,
            Some("zones[0]"),
        ),
        (
            "POST",
            "/api/v1/rules",
            OPERATOR,
            "{\"name\":",
            400,
            Some("body"),
        ),
        (
            "PUT",
            "/api/v1/rules/hot",
            OPERATOR,
            other,
            400,
            Some("name"),
        ),
        ("GET", "/api/v1/rules/nope", VIEWER, "", 404, Some("name")),
        (
            "POST",
            "/api/v1/silences",
            OPERATOR,
            r#"{"rule":"nope","duration_s":60}"#,
            400,
            Some("rule"),
        ),
        (
            "POST",
            "/api/v1/silences",
            OPERATOR,
            r#"{"rule":"hot"}"#,
            400,
            Some("until"),
        ),
        ("DELETE", &silence, VIEWER, "", 403, None),
        ("GET", "/api/v1/alerts?state=bogus", VIEWER, "", 400, None),
        (
            "GET",
            "/api/v1/alerts/history?from=yesterday",
            VIEWER,
            "",
            400,
            Some("from"),
        ),
        ("POST", "/api/v1/alerts/nope/ack", VIEWER, "", 403, None),
        ("POST", "/api/v1/alerts/nope/ack", OPERATOR, "", 404, None),
        (
            "POST",
            "/api/v1/alerts/nope/ack",
            OPERATOR,
            "{\"x\":1}",
            400,
            Some("body"),
        ),
        ("DELETE", "/api/v1/silences/nope", OPERATOR, "", 404, None),
        ("DELETE", "/api/v1/rules/nope", OPERATOR, "", 404, None),
        ("DELETE", "/api/v1/rules/hot", VIEWER, "", 403, None),
    ];
    for (method, path, token, body, status, field) in refusals {
        let a = h.call(method, path, Some(token), body).await;
        refused(&a, status, field, &format!("{method} {path}"));
    }
    // Deleted once, then gone.
    assert_eq!(
        call("DELETE", silence.clone(), OPERATOR, "").await.status,
        204
    );
    refused(
        &call("DELETE", silence.clone(), OPERATOR, "").await,
        404,
        None,
        "gone",
    );
    assert_eq!(
        call("DELETE", "/api/v1/rules/hot".into(), OPERATOR, "")
            .await
            .status,
        204
    );
    refused(
        &call("DELETE", "/api/v1/rules/hot".into(), OPERATOR, "").await,
        404,
        None,
        "gone",
    );
}

#[tokio::test]
async fn a_firing_alert_is_acknowledged_by_an_operator_only() {
    let h = Harness::start(100, |_| {
        "[[alerts.rules]]\nname = \"busy\"\nindicator = \"risk_score\"\nzones = [\"13007\"]\nthreshold = 20.0\nreset = 10.0\nseverity = \"warning\"\n".into()
    });
    let hour = wall_hour();
    post(
        &h,
        POLICE,
        &(0..4)
            .map(|i| incident("13007", hour * 3600 + 60 + i, 2))
            .collect::<Vec<_>>(),
    )
    .await;
    h.epoch();
    // The alert service evaluates the epoch as the alert thread of `vigie run` would.
    let rows: Vec<_> = h.state.board().read(|b| b.rows.values().cloned().collect());
    h.state
        .alerts()
        .observe(rows, vec![], hour, vigie_model::clock::now_ms())
        .unwrap();
    let alerts = h.get("/api/v1/alerts", Some(VIEWER)).await.json;
    let alert = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["zone"] == "13007")
        .expect("an alert for 13007")
        .clone();
    let id = alert["id"].as_str().unwrap();
    refused(
        &h.call(
            "POST",
            &format!("/api/v1/alerts/{id}/ack"),
            Some(VIEWER),
            "",
        )
        .await,
        403,
        None,
        "a viewer",
    );
    let acked = h
        .call(
            "POST",
            &format!("/api/v1/alerts/{id}/ack"),
            Some(OPERATOR),
            r#"{"comment":"on it"}"#,
        )
        .await;
    assert_eq!(acked.status, 200, "{}", acked.text);
    assert_eq!(acked.json["acknowledged"]["by"], "duty");
}

/// Hostile values cost little and show nothing they should not: a long zone is quoted by its
/// start and length (and, as it names no zone, withheld), a name typed into `zone` is not
/// quoted, an id over 128 bytes is refused by its length, a long kind is cut short.
#[tokio::test]
async fn bad_values_are_quoted_short_and_unknown_zones_withheld() {
    let h = Harness::start(100, |_| String::new());
    let ts = wall_hour() * 3600;
    let lines = [
        json!({"feed": "incident", "ts": ts, "zone": "Z".repeat(1500), "severity": 2}),
        json!({"feed": "incident", "ts": ts, "zone": "Jean Dupont", "severity": 2}),
        json!({"feed": "incident", "ts": ts, "id": "x".repeat(129), "zone": "13001", "severity": 2}),
        json!({"feed": "incident", "ts": ts, "id": "y".repeat(128), "zone": "13001", "severity": 2}),
        json!({"feed": "event", "ts": ts, "id": "e", "zone": "13001", "start": ts, "end": ts + 3600,
               "attendance": 10, "kind": "k".repeat(1000)}),
    ]
    .map(|l| l.to_string());
    let a = h
        .call("POST", "/api/v1/records", Some(POLICE), lines.join("\n"))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        (&a.json["accepted"], &a.json["rejected_total"]),
        (&json!(1), &json!(4))
    );
    let rejected = a.json["rejected"].as_array().unwrap();
    let got: Vec<(u64, &str, &str)> = rejected
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["kind"].as_str().unwrap(),
                r["field"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "unknown_zone", "zone"),
            (2, "unknown_zone", "zone"),
            (3, "invalid_field", "id"),
            (5, "invalid_field", "kind"),
        ]
    );
    let reason = |i: usize| rejected[i]["reason"].as_str().unwrap();
    assert!(
        reason(0).contains("withheld") && !reason(0).contains("ZZ"),
        "{}",
        reason(0)
    );
    assert!(!reason(1).contains("Dupont"), "{}", reason(1));
    // Live, a reason about an identifier withholds it (a replay gives its length).
    assert!(
        reason(2).contains("withheld") && !reason(2).contains("xx"),
        "{}",
        reason(2)
    );
    assert!(reason(3).contains("(1000 bytes)"), "{}", reason(3));
    assert!(reason(3).len() < 200, "{}", reason(3));
    // The dead letters keep the same reasons, and samples without the name or the long zone.
    let d = h.get("/api/v1/dead-letters", Some(POLICE)).await;
    let letters = d.json["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 4, "{}", d.text);
    for l in letters {
        let text = l.to_string();
        assert!(!text.contains("Dupont") && !text.contains("ZZZZ"), "{text}");
        assert!(text.len() < 800, "{text}");
    }
}

/// The dead letters are listed 100 at a time unless asked for more, at most 1,000.
#[tokio::test]
async fn dead_letters_are_listed_with_a_limit_by_default() {
    let h = Harness::start(2000, |_| String::new());
    for _ in 0..12 {
        let bad = [r#"{"feed":"incident"}"#; 10].join("\n");
        let a = h.call("POST", "/api/v1/records", Some(POLICE), bad).await;
        assert_eq!(a.status, 400, "{}", a.text);
    }
    let count = |a: &support::Answer| a.json["dead_letters"].as_array().unwrap().len();
    assert_eq!(
        count(&h.get("/api/v1/dead-letters", Some(POLICE)).await),
        100
    );
    assert_eq!(
        count(&h.get("/api/v1/dead-letters?limit=1000", Some(POLICE)).await),
        120
    );
    refused(
        &h.get("/api/v1/dead-letters?limit=1001", Some(POLICE)).await,
        400,
        Some("limit"),
        "a limit over 1000",
    );
}

/// An idempotency key is its source's: another source's request under the same key is its
/// own (committed, not answered as a replay nor refused as another body).
#[tokio::test]
async fn idempotency_keys_are_kept_per_source() {
    let h = Harness::start(100, |_| String::new());
    let ts = wall_hour() * 3600;
    let send = |token: &'static str, severity: u8| {
        let req = axum::http::Request::builder()
            .method("POST")
            .uri("/api/v1/records")
            .header("authorization", format!("Bearer {token}"))
            .header("idempotency-key", "batch-1")
            .body(Body::from(incident("13001", ts, severity)))
            .unwrap();
        h.send(req)
    };
    let first = send(POLICE, 2).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json["replayed"], Value::Null);
    // The same key from another source, with another body: committed as its own.
    let other = send(GATEWAY, 3).await;
    assert_eq!(other.status, 200, "{}", other.text);
    assert_eq!(other.json["replayed"], Value::Null, "{}", other.text);
    assert_ne!(other.json["first_seq"], first.json["first_seq"]);
    // The first source's retry is a replay of its own request.
    let again = send(POLICE, 2).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json["replayed"], true, "{}", again.text);
    assert_eq!(again.json["first_seq"], first.json["first_seq"]);
}

#[tokio::test]
async fn live_streams_are_capped_per_token_and_in_all_with_the_error_shape() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config(dir.path(), 10, "");
    config.ingest.http.max_streams = 3;
    config.ingest.http.max_streams_per_token = 2;
    let h = Harness::with_config(config, dir);
    let a = SseReader::open(&h, "", None, Some(VIEWER)).await.unwrap();
    let b = SseReader::open(&h, "", None, Some(VIEWER)).await.unwrap();
    // The viewer's third stream: its own cap (429), the JSON error shape.
    let third = match SseReader::open(&h, "", None, Some(VIEWER)).await {
        Err(answer) => answer,
        Ok(_) => panic!("a third stream for one token was let open"),
    };
    assert_eq!(third.status, 429, "{}", third.text);
    let message = third.json["error"].as_str().unwrap();
    assert!(
        message.contains("wall") && message.contains("max_streams_per_token"),
        "{message}"
    );
    // Another token still gets one, up to the server's cap (503 beyond, even for it).
    let c = SseReader::open(&h, "", None, Some(OPERATOR)).await.unwrap();
    let full = match SseReader::open(&h, "?access_token=duty-operator-token", None, None).await {
        Err(answer) => answer,
        Ok(_) => panic!("a fourth stream was let open over max_streams = 3"),
    };
    assert_eq!(full.status, 503, "{}", full.text);
    assert!(
        full.json["error"].as_str().unwrap().contains("max_streams"),
        "{}",
        full.text
    );
    let m = h.get("/metrics", Some(VIEWER)).await.text;
    assert!(m.contains("vigie_streams_open 3"), "{m}");
    assert!(
        m.contains("vigie_streams_refused_total{cap=\"per_token\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("vigie_streams_refused_total{cap=\"total\"} 1"),
        "{m}"
    );
    // A stream whose client goes gives its place back.
    drop(a);
    let again = SseReader::open(&h, "", None, Some(VIEWER)).await;
    assert!(again.is_ok(), "the viewer's place was not given back");
    drop((b, c, again));
    let m = h.get("/metrics", Some(VIEWER)).await.text;
    assert!(m.contains("vigie_streams_open 0"), "{m}");
}
