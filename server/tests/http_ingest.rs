//! HTTP ingest end to end: the server on a loopback port over a real ingest log in a
//! temporary folder (the harness of `support/`), and the engine's side of the log, which must
//! receive exactly the accepted records, with their sequence numbers, before the answer. A real
//! InfluxDB client library (Python `influxdb-client`) writes through the InfluxDB 2 write API, run
//! by the interpreter `VIGIE_TEST_PYTHON` names (`tests/run` creates a virtual environment with the
//! client in `target/test-env/venv` and sets it), else `python3`.
//! Errors are the server's `{"error", "field"}`, but on the write route, InfluxDB's
//! `{"code", "message"}`.

mod support;

use serde_json::Value;
use std::path::Path;
use std::sync::mpsc;
use support::{Harness, CAMS, GATEWAY, POLICE, VIEWER};
use vigie_connectors::ingest::IngestLog;
use vigie_model::{Body, EventKind, Feed, Record, F64};

struct Server {
    url: String,
    harness: Harness,
    client: reqwest::Client,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

async fn start(dead_letters: usize) -> Server {
    start_with(dead_letters, |_| String::new()).await
}

/// A server whose configuration ends with `extra(dir)`.
async fn start_with(dead_letters: usize, extra: impl Fn(&Path) -> String) -> Server {
    let harness = Harness::start(dead_letters, extra);
    let (url, served) = harness.serve().await;
    Server {
        url,
        harness,
        client: reqwest::Client::new(),
        served: Some(served),
    }
}

impl Server {
    async fn post(
        &self,
        path: &str,
        auth: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let mut req = self.client.post(format!("{}{path}", self.url)).body(body);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
        };
        (status, value)
    }

    async fn records(&self, token: &str, body: &str) -> (u16, Value) {
        self.post(
            "/api/v1/records",
            Some(&format!("Bearer {token}")),
            body.to_string(),
        )
        .await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut req = self.client.get(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// What the engine has received since the last call.
    fn received(&self) -> Vec<Record> {
        self.harness.received()
    }

    async fn stop(self) {
        self.stop_keeping_files().await;
    }

    /// Stops the server; its folder (the ingest log) stays until the result is dropped.
    async fn stop_keeping_files(mut self) -> tempfile::TempDir {
        self.harness.state.shutdown().trigger();
        if let Some(h) = self.served.take() {
            h.await.unwrap().unwrap();
        }
        self.harness.close()
    }
}

const TS: i64 = 1_764_338_400_000_000; // 2025-11-28T14:00:00Z

fn incident(zone: u32, severity: u8, ts: i64, seq: u64) -> Record {
    Record {
        feed: Feed::Incident,
        ts,
        seq,
        id: None,
        body: Some(Body::Incident { zone, severity }),
    }
}

fn density(zone: u32, sensor: Option<&str>, people: f64, ts: i64, seq: u64) -> Record {
    Record {
        feed: Feed::Density,
        ts,
        seq,
        id: None,
        body: Some(Body::Density {
            zone,
            sensor: sensor.map(str::to_string),
            people: F64(people),
        }),
    }
}

fn rejected(answer: &Value) -> Vec<(u64, String, Option<String>)> {
    answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["kind"].as_str().unwrap().to_string(),
                r["field"].as_str().map(str::to_string),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_records_are_durable_and_reach_the_engine_with_their_seq() {
    let s = start(100).await;
    let body = "{\"feed\":\"incident\",\"ts\":\"2025-11-28T14:00:00Z\",\"zone\":\"13001\",\"severity\":3}\n\
                \n\
                {\"feed\":\"incident\",\"ts\":1764338400,\"zone\":\"13002\",\"severity\":5,\"category\":\"theft\"}\n";
    let (status, answer) = s.records(POLICE, body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["rejected"], serde_json::json!([]));
    assert_eq!(answer["first_seq"], 0);
    // 2xx means committed: the engine has the records already.
    assert_eq!(
        s.received(),
        vec![incident(0, 3, TS, 0), incident(1, 5, TS, 1)]
    );
    // One record, pretty-printed, with the `Token` scheme of InfluxDB clients.
    let pretty = "{\n  \"feed\": \"density\",\n  \"ts\": 1764338400,\n  \"zone\": \"13003\",\n  \"people\": 40\n}\n";
    let (status, answer) = s
        .post("/api/v1/records", Some(&format!("Token {CAMS}")), pretty)
        .await;
    assert_eq!((status, &answer["first_seq"]), (200, &serde_json::json!(2)));
    assert_eq!(s.received(), vec![density(2, None, 40.0, TS, 2)]);
    // An empty body is fine, and commits nothing.
    let (status, answer) = s.records(POLICE, "").await;
    assert_eq!((status, &answer["accepted"]), (200, &serde_json::json!(0)));
    assert_eq!(answer["first_seq"], Value::Null);
    assert!(s.received().is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_invalid_lines_are_named_and_good_ones_still_committed() {
    let s = start(100).await;
    let bad =
        "{\"feed\":\"incident\",\"ts\":1764338400,\"zone\":\"13001\",\"severity\":9}\n{\"feed\":";
    let (status, answer) = s.records(POLICE, bad).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["accepted"], 0);
    assert_eq!(
        rejected(&answer),
        vec![
            (1, "invalid_field".into(), Some("severity".into())),
            (2, "malformed".into(), None),
        ]
    );
    assert!(answer["rejected"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("from 1 to 5"));
    assert!(s.received().is_empty(), "nothing committed");

    // A mixed batch: the good lines are committed, the bad ones listed.
    let mut mixed =
        b"{\"feed\":\"incident\",\"ts\":1764338400,\"zone\":\"13001\",\"severity\":1}\n".to_vec();
    mixed.extend_from_slice(
        b"{\"feed\":\"incident\",\"ts\":1764338400,\"zone\":\"99999\",\"severity\":1}\n",
    );
    mixed.extend_from_slice(b"\xff\xfe not utf-8\n");
    mixed.extend_from_slice(
        b"{\"feed\":\"incident\",\"ts\":1764338400,\"zone\":\"13004\",\"severity\":2}\n",
    );
    mixed.extend_from_slice(b"{\"feed\":\"incident\",\"zone\":\"13004\",\"severity\":2}");
    let (status, answer) = s
        .post("/api/v1/records", Some(&format!("Bearer {POLICE}")), mixed)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["first_seq"], 0);
    assert_eq!(
        rejected(&answer),
        vec![
            (2, "unknown_zone".into(), Some("zone".into())),
            (3, "malformed".into(), None),
            (5, "missing_field".into(), Some("ts".into())),
        ]
    );
    assert_eq!(
        s.received(),
        vec![incident(0, 1, TS, 0), incident(3, 2, TS, 1)]
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_authentication_refuse_the_whole_request() {
    let s = start(100).await;
    let line = "{\"feed\":\"incident\",\"ts\":1764338400,\"zone\":\"13001\",\"severity\":1}\n";
    // Over max_body_bytes (4096).
    let big = line.repeat(80);
    let (status, answer) = s.records(POLICE, &big).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["field"], "body");
    // More than max_lines (10), under the byte limit.
    let (status, answer) = s.records(POLICE, &line.repeat(11)).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("max_lines"));
    let (status, _) = s.records(POLICE, &line.repeat(10)).await;
    assert_eq!(status, 200);
    assert_eq!(s.received().len(), 10, "only the request within limits");

    // No token, an unknown token, an unknown scheme.
    for auth in [
        None,
        Some("Bearer nope"),
        Some(&*format!("Basic {POLICE}")),
        Some("Bearer"),
    ] {
        let resp = s
            .client
            .post(format!("{}/api/v1/records", s.url))
            .body(line.to_string());
        let resp = match auth {
            Some(a) => resp.header("Authorization", a),
            None => resp,
        };
        let resp = resp.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{auth:?}");
        assert!(resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        let answer: Value = resp.json().await.unwrap();
        assert!(answer["error"].as_str().is_some(), "{answer}");
        assert!(!answer.to_string().contains(POLICE));
    }
    assert!(s.received().is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_feeds_are_rejected_per_line_and_403_when_all_are() {
    let s = start(100).await;
    let inc = "{\"feed\":\"incident\",\"ts\":1764338400,\"zone\":\"13001\",\"severity\":1}";
    let den = "{\"feed\":\"density\",\"ts\":1764338400,\"zone\":\"13001\",\"people\":5}";
    let (status, answer) = s.records(CAMS, &format!("{inc}\n{inc}\n")).await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("may not write"),
        "{answer}"
    );
    assert_eq!(
        rejected(&answer),
        vec![
            (1, "forbidden_feed".into(), Some("feed".into())),
            (2, "forbidden_feed".into(), Some("feed".into())),
        ]
    );
    let (status, answer) = s.records(CAMS, &format!("{inc}\n{den}\n")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1);
    assert_eq!(rejected(&answer)[0].1, "forbidden_feed");
    assert_eq!(s.received(), vec![density(0, None, 5.0, TS, 0)]);
    // Through a mapping whose feed the source may not write.
    let (status, _) = s
        .post(
            "/api/v1/csv/incidents_csv",
            Some(&format!("Bearer {CAMS}")),
            "t,z,s,c\n1764338400,13001,2,theft\n",
        )
        .await;
    assert_eq!(status, 403);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_through_a_mapping_keeps_the_file_s_line_numbers() {
    let s = start(100).await;
    let body = "t,z,s,c\n1764338400,13001,2,theft\n1764338400,13001,7,theft\n\"1764338400\",\"13005\",\"4\",\"with\nbreak\"\nnot-a-time,13001,2,x\n";
    let (status, answer) = s
        .post(
            "/api/v1/csv/incidents_csv",
            Some(&format!("Bearer {POLICE}")),
            body,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 2);
    // The header is line 1; the quoted line break moves the last row to line 6.
    assert_eq!(
        rejected(&answer),
        vec![
            (3, "invalid_field".into(), Some("severity".into())),
            (6, "invalid_field".into(), Some("ts".into())),
        ]
    );
    assert_eq!(
        s.received(),
        vec![incident(0, 2, TS, 0), incident(4, 4, TS, 1)]
    );
    // A header the mapping cannot read, an unknown mapping.
    let (status, answer) = s
        .post(
            "/api/v1/csv/incidents_csv",
            Some(&format!("Bearer {POLICE}")),
            "a,b\n1,2\n",
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(rejected(&answer), vec![(1, "malformed".into(), None)]);
    let (status, answer) = s
        .post("/api/v1/csv/nope", Some(&format!("Bearer {POLICE}")), "a\n")
        .await;
    assert_eq!((status, answer["field"].as_str()), (404, Some("mapping")));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_protocol_through_the_influxdb_write_api() {
    let s = start(100).await;
    let auth = format!("Token {GATEWAY}");
    let body = "incident,zone=13001,category=theft severity=3i 1764338400000000000\n\
                # a comment\n\
                density,zone=13001,sensor=s1,host=telegraf people=1200 1764338400000000000\n\
                event,zone=13008,kind=sport id=\"ev-1\",start=\"2025-11-28T18:00:00Z\",end=1764367200i,attendance=500u 1764338400000000000\n";
    let (status, answer) = s
        .post("/api/v2/write?org=city&bucket=vigie", Some(&auth), body)
        .await;
    assert_eq!((status, answer), (204, Value::Null));
    let got = s.received();
    assert_eq!(got[0], incident(0, 3, TS, 0));
    assert_eq!(got[1], density(0, Some("s1"), 1200.0, TS, 1));
    assert_eq!(
        got[2],
        Record {
            feed: Feed::Event,
            ts: TS,
            seq: 2,
            id: Some("ev-1".into()),
            body: Some(Body::Event {
                zone: 7,
                start: TS + 4 * 3_600_000_000,
                end: TS + 8 * 3_600_000_000,
                attendance: F64(500.0),
                kind: EventKind::Sport,
            }),
        }
    );
    assert_eq!(got.len(), 3);

    // Seconds; some lines bad: InfluxDB's error shape, and the good line still committed.
    let body = "incident,zone=13002 severity=2i 1764338400\nincident,zone=13002 severity=\"high\" 1764338400\nincident,zone=13002 severity=2i,oops\n";
    let (status, answer) = s
        .post(
            "/api/v2/write?org=city&bucket=vigie&precision=s",
            Some(&auth),
            body,
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["code"], "invalid");
    assert!(answer["message"]
        .as_str()
        .unwrap()
        .contains("2 of 3 lines rejected"));
    assert_eq!(
        rejected(&answer),
        vec![
            (2, "invalid_field".into(), Some("severity".into())),
            (3, "malformed".into(), None),
        ]
    );
    assert_eq!(answer["first_seq"], 3);
    assert_eq!(s.received(), vec![incident(1, 2, TS, 3)]);

    // Milliseconds, no timestamp (now), a bad precision, no bucket, no token.
    let (status, _) = s
        .post(
            "/api/v2/write?bucket=b&precision=ms",
            Some(&auth),
            "density,zone=13003 people=1 1764338400123",
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(s.received()[0].ts, TS + 123_000);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let (status, _) = s
        .post(
            "/api/v2/write?bucket=b",
            Some(&auth),
            "density,zone=13003 people=1",
        )
        .await;
    assert_eq!(status, 204);
    let ts = s.received()[0].ts;
    assert!(ts >= before && ts < before + 60_000_000, "{ts} {before}");
    let (status, answer) = s
        .post(
            "/api/v2/write?bucket=b&precision=h",
            Some(&auth),
            "density,zone=13003 people=1",
        )
        .await;
    assert_eq!((status, answer["code"].as_str()), (400, Some("invalid")));
    let (status, _) = s
        .post(
            "/api/v2/write?org=city",
            Some(&auth),
            "density,zone=13003 people=1",
        )
        .await;
    assert_eq!(status, 400);
    let (status, answer) = s
        .post(
            "/api/v2/write?bucket=b",
            None,
            "density,zone=13003 people=1",
        )
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert!(s.received().is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_influxdb_client_library_writes_records() {
    let s = start(100).await;
    let python = std::env::var("VIGIE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let has = std::process::Command::new(&python)
        .args(["-c", "import influxdb_client"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        has.status.success(),
        "the Python package influxdb-client is missing for {python} ({}): run the tests with \
         tests/run, which installs it in target/test-env/venv, or set VIGIE_TEST_PYTHON to a \
         Python that has it",
        String::from_utf8_lossy(&has.stderr)
            .lines()
            .last()
            .unwrap_or("")
    );
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tools/influx_client_write.py");
    let (url, token) = (s.url.clone(), GATEWAY.to_string());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .args([url, token])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the client failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let got = s.received();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[0], incident(0, 3, TS, 0));
    assert_eq!(got[1], density(1, Some("s 1"), 1200.0, TS, 1));
    assert_eq!(got[2].id.as_deref(), Some("ev-1"));
    assert!(matches!(
        got[2].body,
        Some(Body::Event { zone: 7, attendance: F64(a), kind: EventKind::Sport, .. }) if a == 500.0
    ));
    // Written with `enable_gzip=True`.
    assert_eq!(got[3], density(2, None, 7.5, TS, 3));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_and_metrics_show_what_was_rejected() {
    let s = start(4).await;
    let good = "{\"feed\":\"incident\",\"ts\":1764338400,\"zone\":\"13001\",\"severity\":1}";
    let body = format!("{good}\nnot json at all\n{{\"feed\":\"incident\",\"ts\":1,\"zone\":\"13001\",\"severity\":0}}\n");
    let (status, _) = s.records(POLICE, &body).await;
    assert_eq!(status, 200);
    let (status, _) = s
        .post(
            "/api/v2/write?bucket=b",
            Some(&format!("Token {POLICE}")),
            "incident,zone=13001 severity=1i,x=\nincident,zone=13001 severity=1i\ndensity,zone=13001 people=3",
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = s.records(CAMS, "{\"feed\":\"density\"}").await;
    assert_eq!(status, 400);
    let _ = s.records("wrong", good).await;

    // Five rejected lines in a store of 4: the oldest dropped; the police's 3 newest first.
    let (status, text) = s.get("/api/v1/dead-letters", Some(POLICE)).await;
    assert_eq!(status, 200, "{text}");
    let letters: Value = serde_json::from_str(&text).unwrap();
    let list = letters["dead_letters"].as_array().unwrap();
    let seen: Vec<(&str, u64, &str)> = list
        .iter()
        .map(|l| {
            (
                l["route"].as_str().unwrap(),
                l["line"].as_u64().unwrap(),
                l["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("/api/v2/write", 3, "forbidden_feed"),
            ("/api/v2/write", 1, "malformed"),
            ("/api/v1/records", 3, "invalid_field"),
        ]
    );
    assert_eq!(list[0]["source"], "police");
    // The sample is what privacy lets be shown of the line, as a record's fields.
    let sample = list[0]["sample"].as_str().unwrap();
    assert!(
        sample.starts_with(r#"{"feed":"density","ts":"#)
            && sample.ends_with(r#""zone":"13001","people":3.0}"#),
        "{sample}"
    );
    assert_eq!(list[2]["field"], "severity");
    assert!(list[2]["reason"].as_str().unwrap().contains("1 to 5"));
    assert!(list[0]["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(letters["capacity"], 4);
    // Each source sees its own.
    let (_, text) = s.get("/api/v1/dead-letters?limit=5", Some(CAMS)).await;
    let cams: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(cams["dead_letters"].as_array().unwrap().len(), 1);
    assert_eq!(cams["dead_letters"][0]["kind"], "missing_field");
    let (status, _) = s.get("/api/v1/dead-letters", None).await;
    assert_eq!(status, 401);

    let (status, _) = s.get("/metrics", None).await;
    assert_eq!(status, 401);
    let (status, page) = s.get("/metrics", Some(VIEWER)).await;
    assert_eq!(status, 200);
    for line in [
        "vigie_ingest_received_total{source=\"police\",feed=\"incident\"} 3\n",
        "vigie_ingest_received_total{source=\"police\",feed=\"density\"} 1\n",
        "vigie_ingest_received_total{source=\"police\",feed=\"unknown\"} 2\n",
        "vigie_ingest_accepted_total{source=\"police\",feed=\"incident\"} 2\n",
        "vigie_ingest_rejected_total{source=\"police\",feed=\"incident\",kind=\"invalid_field\"} 1\n",
        "vigie_ingest_rejected_total{source=\"police\",feed=\"unknown\",kind=\"malformed\"} 2\n",
        "vigie_ingest_rejected_total{source=\"police\",feed=\"density\",kind=\"forbidden_feed\"} 1\n",
        "vigie_ingest_rejected_total{source=\"cams\",feed=\"density\",kind=\"missing_field\"} 1\n",
        "vigie_http_requests_total{route=\"/api/v1/records\",status=\"200\"} 1\n",
        "vigie_http_requests_total{route=\"/api/v1/records\",status=\"400\"} 1\n",
        "vigie_http_requests_total{route=\"/api/v1/records\",status=\"401\"} 1\n",
        "vigie_http_requests_total{route=\"/api/v2/write\",status=\"400\"} 1\n",
        "vigie_http_requests_total{route=\"/api/v1/dead-letters\",status=\"200\"} 2\n",
        "vigie_http_requests_total{route=\"/metrics\",status=\"401\"} 1\n",
        "vigie_http_requests_total{route=\"/metrics\",status=\"200\"} 1\n",
        "vigie_ingest_dead_letters_dropped_total 1\n",
        "# TYPE vigie_ingest_rejected_total counter\n",
        "vigie_engine_epochs_total 0\n",
    ] {
        assert!(page.contains(line), "missing {line:?} in\n{page}");
    }
    assert!(!page.contains(POLICE));
    assert_eq!(s.received().len(), 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_rules_hold_for_what_reaches_the_ingest_log_and_the_dead_letters() {
    const KEY: &str = "an HMAC key of at least 16 bytes, for the test only";
    let s = start_with(100, |dir| {
        std::fs::write(dir.join("privacy-key"), format!("{KEY}\n")).unwrap();
        format!(
            "[privacy]\nkey_file = \"{}/privacy-key\"\n\
             [privacy.feeds.density]\npseudonymise = [\"sensor\"]\nmin_count = 5\n\
             [privacy.feeds.incident]\npseudonymise = [\"id\"]\n",
            dir.display()
        )
    })
    .await;
    // Raw identifiers, coordinates and free text that must not be kept anywhere.
    let secrets = [
        "case-4711",
        "case-4712",
        "cam-rue-de-rome-7",
        "cam-lp-9",
        "43.2986",
        "5.3799",
        "48.8566",
        "2.3522",
        "Officer Dupont",
        "Jean Martin",
        "free text secret",
    ];
    let body = [
        // Located by coordinates (inside 13001), with an id and free text.
        r#"{"feed":"incident","ts":1764338400,"id":"case-4711","lat":43.298644274335,"lon":5.379927349415,"severity":3,"category":"Theft from Jean Martin","source":"Officer Dupont"}"#,
        r#"{"feed":"density","ts":1764338400,"zone":"13001","sensor":"cam-rue-de-rome-7","people":40}"#,
        // Below k = 5: suppressed.
        r#"{"feed":"density","ts":1764338400,"zone":"13001","sensor":"cam-rue-de-rome-7","people":3}"#,
        // Outside every zone: rejected, the point quoted nowhere.
        r#"{"feed":"incident","ts":1764338400,"id":"case-4712","lat":48.8566,"lon":2.3522,"severity":2}"#,
        // Invalid count: rejected, the sensor quoted nowhere.
        r#"{"feed":"density","ts":1764338400,"zone":"13001","sensor":"cam-rue-de-rome-7","people":"many"}"#,
    ]
    .join("\n");
    let (status, answer) = s.records(GATEWAY, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 2, "{answer}");
    let kinds: Vec<_> = rejected(&answer).into_iter().map(|r| r.1).collect();
    assert_eq!(
        kinds,
        vec!["suppressed_below_k", "outside_zones", "invalid_field"]
    );
    let csv = "t,z,s,c\n1764338400,13001,2,free text secret\n";
    let (status, answer) = s
        .post(
            "/api/v1/csv/incidents_csv",
            Some(&format!("Bearer {GATEWAY}")),
            csv,
        )
        .await;
    assert_eq!((status, answer["accepted"].as_u64()), (200, Some(1)));
    let (status, _) = s
        .post(
            "/api/v2/write?bucket=b",
            Some(&format!("Token {GATEWAY}")),
            "density,zone=13001,sensor=cam-lp-9 people=2\ndensity,zone=13001,sensor=cam-lp-9 people=50",
        )
        .await;
    assert_eq!(status, 400);
    let (status, letters) = s.get("/api/v1/dead-letters", Some(GATEWAY)).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&letters).unwrap()["dead_letters"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    for secret in secrets {
        assert!(
            !letters.contains(secret),
            "{secret} in the dead letters: {letters}"
        );
    }
    assert!(
        letters.contains(r#"\"people\":\"<withheld>\""#),
        "{letters}"
    );

    let dir = s.stop_keeping_files().await;
    let (tx, _rx) = mpsc::channel();
    let log = IngestLog::open(&dir.path().join("log"), tx).unwrap();
    let stored = log.recovered;
    assert_eq!(stored.len(), 4, "{stored:?}");
    let text = serde_json::to_string(&stored).unwrap();
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} in the ingest log: {text}");
    }
    let pseudonym = |feed: &str, value: &str| {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
        mac.update(format!("{feed}\0{value}").as_bytes());
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        hex[..32].to_string()
    };
    assert_eq!(stored[0].id, Some(pseudonym("incident", "case-4711")));
    assert_eq!(
        stored[0].body,
        Some(Body::Incident {
            zone: 0,
            severity: 3
        })
    );
    let densities: Vec<(Option<String>, f64)> = stored
        .iter()
        .filter_map(|r| match &r.body {
            Some(Body::Density { sensor, people, .. }) => Some((sensor.clone(), people.0)),
            _ => None,
        })
        .collect();
    assert_eq!(
        densities,
        vec![
            (Some(pseudonym("density", "cam-rue-de-rome-7")), 40.0),
            (Some(pseudonym("density", "cam-lp-9")), 50.0),
        ]
    );
    assert!(densities.iter().all(|d| d.1 >= 5.0));
}
