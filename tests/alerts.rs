//! End-to-end tests of alerting: the real `vigie run` binary, a real webhook receiver (a
//! plain HTTP server in the test), the embedded MQTT broker with a real rumqttc publisher.

#[path = "support/client.rs"]
mod client;
#[path = "support/vigie.rs"]
mod vigie;

use client::{free_port, now_s, wait_for};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigie::{Setup, Vigie, OPERATOR, VIEWER};

/// `vigie run` with `alerts` (TOML; `MQTT_PORT` names the embedded broker's port) and
/// evaluations every 200 ms; `ops` writes incidents, events and densities.
fn start(dir: &std::path::Path, alerts: &str) -> Vigie {
    Vigie::start(
        dir,
        Setup {
            feeds: &["incident", "event", "density"],
            extra: &format!("[alerts]\ntick_ms = 200\n{alerts}"),
            ..Setup::default()
        },
    )
}

/// A webhook receiver: a real HTTP server on `port` that records each POST body and answers
/// 200.
fn receiver(port: u16, got: Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("the receiver's port");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            let mut key = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let l = line.trim_end().to_ascii_lowercase();
                if l.is_empty() {
                    break;
                }
                if let Some(v) = l.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if let Some(v) = l.strip_prefix("idempotency-key:") {
                    key = v.trim().to_string();
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            assert_eq!(
                v["event_id"].as_str(),
                Some(key.as_str()),
                "Idempotency-Key"
            );
            got.lock().unwrap().push(v);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
}

fn events(got: &Mutex<Vec<Value>>) -> Vec<(String, String)> {
    got.lock()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["event"].as_str().unwrap().to_string(),
                v["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn incident(id: &str, ts: i64, cancelled: bool) -> String {
    let status = if cancelled {
        ",\"status\":\"cancelled\""
    } else {
        ""
    };
    format!("{{\"feed\":\"incident\",\"id\":\"{id}\",\"ts\":{ts},\"zone\":\"13001\",\"severity\":5{status}}}")
}

#[test]
fn a_webhook_down_then_up_gets_each_notification_once_and_a_restart_while_firing_does_not_fire_again(
) {
    let dir = tempfile::tempdir().unwrap();
    let hook = free_port();
    // risk(13001, now) with six incidents of severity 5 this hour: recent = 30, raw = 15,
    // risk = 100·(1 − e^−1.5) = 77.7 ≥ 70; without them 0.
    let alerts = format!(
        "[[alerts.rules]]\nname = \"risk-13001\"\nindicator = \"risk_score\"\nzones = [\"13001\"]\nthreshold = 70.0\nreset = 50.0\nseverity = \"critical\"\n\
         [[alerts.notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{hook}/hook\"\nretry_min_ms = 100\nretry_max_ms = 400\ntimeout_ms = 2000\n"
    );
    let run = start(dir.path(), &alerts);
    let ts = now_s() - 1;
    let ids: Vec<String> = (0..6).map(|i| format!("inc-{i}")).collect();
    run.post_records(
        &ids.iter()
            .map(|id| incident(id, ts, false))
            .collect::<Vec<_>>(),
    );
    wait_for(20, "the alert to fire", || {
        run.json("GET", "/api/v1/alerts?state=firing", Some(VIEWER), "")
            .1
            .as_array()
            .is_some_and(|a| a.len() == 1)
    });
    // The receiver is down: deliveries fail and are retried.
    wait_for(20, "failed deliveries", || {
        run.metric("vigie_alerts_delivery_failures_total", "") >= 3.0
    });
    let got = Arc::new(Mutex::new(Vec::new()));
    receiver(hook, got.clone());
    wait_for(20, "the firing notification", || {
        !got.lock().unwrap().is_empty()
    });
    let first = got.lock().unwrap()[0].clone();
    assert_eq!(first["event"], "firing");
    assert_eq!(first["rule"], "risk-13001");
    assert_eq!(first["zone"], "13001");
    assert_eq!(first["severity"], "critical");
    assert_eq!(first["threshold"], 70.0);
    assert!(first["value"].as_f64().unwrap() > 77.0, "{first}");
    assert!(first["hour"].as_str().is_some());
    assert_eq!(first["contributions"]["recent"], 30.0, "{first}");
    assert_eq!(
        first["contributions"]["top"][0]["name"], "recent",
        "{first}"
    );
    let id = first["id"].as_str().unwrap().to_string();

    // Acknowledgement: roles, then the operator.
    let ack = format!("/api/v1/alerts/{id}/ack");
    assert_eq!(run.json("POST", &ack, None, "{}").0, 401);
    assert_eq!(run.json("POST", &ack, Some("nope"), "{}").0, 401);
    assert_eq!(run.json("POST", &ack, Some(VIEWER), "{}").0, 403);
    assert_eq!(
        run.json("POST", "/api/v1/alerts/999/ack", Some(OPERATOR), "{}")
            .0,
        404
    );
    let (code, acked) = run.json("POST", &ack, Some(OPERATOR), r#"{"comment":"patrol sent"}"#);
    assert_eq!(code, 200, "{acked}");
    assert_eq!(acked["acknowledged"]["by"], "duty");
    assert_eq!(acked["acknowledged"]["comment"], "patrol sent");

    // A restart while firing: no second firing notification.
    run.stop();
    let run = start(dir.path(), &alerts);
    wait_for(20, "epochs after the restart", || {
        run.metric("vigie_engine_epochs_total", "") >= 10.0
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(events(&got), vec![("firing".to_string(), id.clone())]);
    let (_, firing) = run.json("GET", "/api/v1/alerts?state=firing", Some(VIEWER), "");
    assert_eq!(firing[0]["id"], id.as_str());
    assert_eq!(
        firing[0]["acknowledged"]["by"], "duty",
        "the acknowledgement survives"
    );

    // The value falls back (the incidents are cancelled): the resolution goes out, once.
    run.post_records(
        &ids.iter()
            .map(|id| incident(id, ts + 1, true))
            .collect::<Vec<_>>(),
    );
    wait_for(20, "the resolution", || got.lock().unwrap().len() >= 2);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        events(&got),
        vec![
            ("firing".to_string(), id.clone()),
            ("resolved".to_string(), id.clone())
        ]
    );
    let (_, history) = run.json("GET", "/api/v1/alerts/history?zone=13001", Some(VIEWER), "");
    let kinds: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["firing", "acknowledged", "resolved"]);
    assert_eq!(
        run.json("GET", "/api/v1/alerts?state=active", Some(VIEWER), "")
            .1,
        serde_json::json!([])
    );
    run.stop();

    // The history is in the store too.
    let (store, _) = vigie_store::Store::open(
        &dir.path().join("data/store"),
        vigie_store::Options::default(),
    )
    .unwrap();
    let states: BTreeMap<String, usize> = store
        .keys()
        .into_iter()
        .filter(|k| k.measurement == "alert" && k.field == "state")
        .map(|k| {
            let event = k.tags.iter().find(|(t, _)| t == "event").unwrap().1.clone();
            (
                event,
                store.range(&k, i64::MIN, i64::MAX, None).unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        states,
        BTreeMap::from([
            ("acknowledged".into(), 1),
            ("firing".into(), 1),
            ("resolved".into(), 1)
        ])
    );
}

#[test]
fn a_large_event_ten_days_ahead_raises_a_forecast_alert_and_its_cancellation_resolves_it() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = "[alerts.groups]\nstadium = [\"13008\", \"13009\"]\n\
         [[alerts.rules]]\nname = \"forecast-stadium\"\nindicator = \"risk_score\"\ngroup = \"stadium\"\nthreshold = 75.0\nreset = 60.0\nlookahead_h = 300\n";
    let run = start(dir.path(), alerts);
    let target = now_s() / 3600 + 240; // ten days ahead
                                       // A baseline for that hour of the week: incidents 3 to 6 weeks before it (any daylight
                                       // saving shift moves them by an hour at most, inside the event's three hours).
    let mut lines = Vec::new();
    for week in 3..=6 {
        for i in 0..10 {
            let ts = (target + 1 - week * 168) * 3600 + 60 + i;
            lines.push(format!(
                "{{\"feed\":\"incident\",\"ts\":{ts},\"zone\":\"13008\",\"severity\":5}}"
            ));
        }
    }
    run.post_records(&lines);
    std::thread::sleep(Duration::from_millis(1000));
    // The baseline alone (about 3.8 → risk 32) stays below 75.
    let (_, all) = run.json("GET", "/api/v1/alerts?state=all", Some(VIEWER), "");
    assert_eq!(all, serde_json::json!([]), "no alert before the event");
    let event = |status: &str| {
        format!(
            "{{\"feed\":\"event\",\"id\":\"match-1\",\"ts\":{},\"zone\":\"13008\",\"start\":{},\"end\":{},\"attendance\":400000,\"kind\":\"sport\"{status}}}",
            now_s(),
            target * 3600,
            (target + 3) * 3600
        )
    };
    run.post_records(&[event("")]);
    wait_for(20, "the forecast alert", || {
        run.json("GET", "/api/v1/alerts?state=firing", Some(VIEWER), "")
            .1
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    let (_, firing) = run.json("GET", "/api/v1/alerts?state=firing", Some(VIEWER), "");
    let a = &firing[0];
    assert_eq!(a["zone"], "13008", "{a}");
    assert!(a["value"].as_f64().unwrap() >= 75.0, "{a}");
    let hour = a["hour"].as_str().unwrap();
    let hours: Vec<String> = (target..target + 3)
        .map(vigie_model::time::format_hour)
        .collect();
    assert!(hours.iter().any(|h| h == hour), "{hour} not in {hours:?}");
    assert!(
        a["contributions"]["events"].as_f64().unwrap() >= 400000.0,
        "{a}"
    );
    assert!(
        a["message"]
            .as_str()
            .unwrap()
            .contains("within the next 300 h"),
        "{a}"
    );
    std::thread::sleep(Duration::from_millis(1100)); // the cancellation's ts is later
    run.post_records(&[event(",\"status\":\"cancelled\"")]);
    wait_for(20, "the resolution", || {
        run.json("GET", "/api/v1/alerts?state=active", Some(VIEWER), "")
            .1
            == serde_json::json!([])
    });
    let (_, history) = run.json("GET", "/api/v1/alerts/history", Some(VIEWER), "");
    let kinds: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["event"].as_str().unwrap(), h["zone"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("firing", "13008"), ("resolved", "13008")]);
    run.stop();
}

#[test]
fn a_deadman_alert_fires_when_a_live_mqtt_feed_stops_and_resolves_when_it_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = "[[alerts.rules]]\nname = \"density-silent\"\nindicator = \"feed_silence\"\nfeed = \"density\"\nthreshold = 2\n\
         [[alerts.rules]]\nname = \"broker-silent\"\nindicator = \"feed_silence\"\nsource = \"embedded-mqtt\"\nthreshold = 2\n\
         [[alerts.notify]]\nkind = \"mqtt\"\nurl = \"mqtt://127.0.0.1:MQTT_PORT\"\ntopic = \"city/alerts\"\n";
    let run = start(dir.path(), alerts);
    // An operator's MQTT client subscribed to the notifications.
    let notified = Arc::new(Mutex::new(Vec::<(String, Value)>::new()));
    {
        let mut options = rumqttc::MqttOptions::new("e2e-operator", "127.0.0.1", run.mqtt);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut connection) = rumqttc::Client::new(options, 10);
        client
            .subscribe("city/alerts/#", rumqttc::QoS::AtLeastOnce)
            .unwrap();
        let notified = notified.clone();
        std::thread::spawn(move || {
            let _client = client;
            for event in connection.iter() {
                if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) = event {
                    let v: Value = serde_json::from_slice(&p.payload).unwrap();
                    notified.lock().unwrap().push((p.topic.clone(), v));
                }
            }
        });
    }
    let history = |rule: &str| -> Vec<String> {
        run.json("GET", "/api/v1/alerts/history", Some(VIEWER), "")
            .1
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["rule"] == rule)
            .map(|h| h["event"].as_str().unwrap().to_string())
            .collect()
    };
    // Never seen since the start: fires once the interval has passed.
    wait_for(15, "the never-seen deadman", || {
        history("density-silent") == ["firing"]
    });
    let (_, firing) = run.json("GET", "/api/v1/alerts?state=firing", Some(VIEWER), "");
    let dead = firing
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "density-silent")
        .unwrap()
        .clone();
    assert_eq!(dead["feed"], "density");
    assert!(
        dead["message"]
            .as_str()
            .unwrap()
            .contains("not seen since the start"),
        "{dead}"
    );

    let mut options = rumqttc::MqttOptions::new("e2e-sensor", "127.0.0.1", run.mqtt);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut connection) = rumqttc::Client::new(options, 100);
    std::thread::spawn(move || for _ in connection.iter() {});
    let publish = |secs: u64| {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            let payload = format!("{{\"feed\":\"density\",\"ts\":{},\"people\":800}}", now_s());
            client
                .publish(
                    "vigie/density/13001",
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .unwrap();
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    publish(3);
    assert_eq!(history("density-silent"), ["firing", "resolved"]);
    // The feed stops: fires after 2 s of silence; resumes: resolves.
    wait_for(15, "the deadman on silence", || {
        history("density-silent").len() == 3
    });
    publish(2);
    assert_eq!(
        history("density-silent"),
        ["firing", "resolved", "firing", "resolved"]
    );
    assert_eq!(
        history("broker-silent"),
        ["firing", "resolved", "firing", "resolved"]
    );
    // The MQTT notifier published each of them on city/alerts/<rule>/<feed> (the first
    // firing may have gone out before the subscription was made).
    let on_topic = || -> Vec<String> {
        notified
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == "city/alerts/density-silent/density")
            .map(|(_, v)| v["event"].as_str().unwrap().to_string())
            .collect()
    };
    wait_for(10, "the MQTT notifications", || on_topic().len() >= 3);
    let got = on_topic();
    let want = ["firing", "resolved", "firing", "resolved"].map(String::from);
    assert!(want.ends_with(&got), "{got:?}");
    run.stop();
}

/// The indicator row of `zone` at `hour` (hours since the epoch) through the query API.
fn row_at(run: &Vigie, zone: &str, hour: i64) -> Value {
    let (code, v) = run.json(
        "GET",
        &format!("/api/v1/indicators?hour={}", hour * 3600),
        Some(VIEWER),
        "",
    );
    assert_eq!(code, 200, "{v}");
    client::zone_row(&v, zone).unwrap_or_else(|| panic!("no row for {zone} at {hour}: {v}"))
}

/// A square zone with its lower-left corner at (x, y) degrees, and no `neighbours` key: its
/// neighbours are the zones whose squares touch it.
fn square(id: &str, x: f64, y: f64, capacity: u32, default_density: u32) -> String {
    format!(
        r#"{{"type":"Feature","geometry":{{"type":"Polygon","coordinates":[[[{x},{y}],[{x1},{y}],[{x1},{y1}],[{x},{y1}],[{x},{y}]]]}},"properties":{{"id":"{id}","capacity":{capacity},"scale":10,"min_agents":2,"max_agents":40,"default_density":{default_density}}}}}"#,
        x1 = x + 1.0,
        y1 = y + 1.0
    )
}

/// The seed's case (issue 15), on model v2 (the default) and the real `vigie run`: a match of
/// 80,000 people in a stadium zone of capacity 19,230 with no incident history reaches level 4
/// and fires forecast alerts on risk_level and criticality 29 days ahead (inside a 720-hour
/// look-ahead); the zones whose polygons touch the stadium's rise by their spill, 0.25 ·
/// 80,000/1000 · 0.12 = 2.4, and a zone that does not touch it gets none; a crowd surge seen
/// only by a density record raises the risk of a zone with no incident from 0.
#[test]
fn the_seeds_match_reaches_level_4_a_month_ahead_spills_to_the_neighbours_and_a_surge_raises_the_risk(
) {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones.geojson");
    std::fs::write(
        &zones,
        format!(
            "{{\"type\":\"FeatureCollection\",\"features\":[\n{}\n]}}",
            [
                square("stadium", 0.0, 0.0, 19_230, 1_000),
                square("north", 0.0, 1.0, 5_000, 500),
                square("east", 1.0, 0.0, 5_000, 500),
                square("far", 5.0, 5.0, 5_000, 1_000),
            ]
            .join(",\n")
        ),
    )
    .unwrap();
    let alerts = "[[alerts.rules]]\nname = \"stadium-level-4\"\nindicator = \"risk_level\"\nzones = [\"stadium\"]\nthreshold = 4\nlookahead_h = 720\nseverity = \"critical\"\n\
         [[alerts.rules]]\nname = \"stadium-critical\"\nindicator = \"criticality\"\nzones = [\"stadium\"]\nthreshold = 4\nlookahead_h = 720\nseverity = \"critical\"\n";
    let run = Vigie::start(
        dir.path(),
        Setup {
            feeds: &["incident", "event", "density"],
            extra: &format!("[alerts]\ntick_ms = 200\n{alerts}"),
            zones: Some(zones.clone()),
            ..Setup::default()
        },
    );
    let now_hour = now_s() / 3600;
    let target = now_hour + 29 * 24;
    wait_for(20, "the first rows", || {
        run.json("GET", "/api/v1/indicators", Some(VIEWER), "").0 == 200
    });
    // Before: no incident, no event, no density: every risk 0, no alert.
    for zone in ["stadium", "north", "east", "far"] {
        assert_eq!(row_at(&run, zone, target)["risk_score"], 0.0, "{zone}");
    }
    assert_eq!(row_at(&run, "far", now_hour)["risk_score"], 0.0);
    let (_, all) = run.json("GET", "/api/v1/alerts?state=all", Some(VIEWER), "");
    assert_eq!(all, serde_json::json!([]));

    run.post_records(&[format!(
            "{{\"feed\":\"event\",\"id\":\"match-1\",\"ts\":{},\"zone\":\"stadium\",\"start\":{},\"end\":{},\"attendance\":80000,\"kind\":\"sport\"}}",
            now_s(),
            target * 3600,
            (target + 3) * 3600
        )]);
    wait_for(20, "both forecast alerts", || {
        run.json("GET", "/api/v1/alerts?state=firing", Some(VIEWER), "")
            .1
            .as_array()
            .is_some_and(|a| a.len() == 2)
    });
    let (_, firing) = run.json("GET", "/api/v1/alerts?state=firing", Some(VIEWER), "");
    let hours: Vec<String> = (target..target + 3)
        .map(vigie_model::time::format_hour)
        .collect();
    for a in firing.as_array().unwrap() {
        assert_eq!(a["zone"], "stadium", "{a}");
        assert_eq!(a["value"], 4.0, "{a}");
        let hour = a["hour"].as_str().unwrap().to_string();
        assert!(hours.contains(&hour), "{hour} not in {hours:?}");
        assert!(
            a["message"]
                .as_str()
                .unwrap()
                .contains("within the next 720 h"),
            "{a}"
        );
        // The match's exposure is what the alert names first.
        assert_eq!(a["contributions"]["top"][0]["name"], "events", "{a}");
    }
    // 80,000 against 19,230 (load 4.2, from the default 1,000 plus the attendance) with no
    // incident: X = 9.6, raw = 9.6 · (1 + 0.8 · (81,000/19,230 − 1)), risk 96.8, level 4, and
    // with no agent deployed, criticality 4.
    let x = 80_000.0 / 1000.0 * 0.12;
    let stadium = row_at(&run, "stadium", target);
    let raw = x * (1.0 + 0.8 * (81_000.0 / 19_230.0 - 1.0));
    let risk = 100.0 * (1.0 - (-raw / 10.0f64).exp());
    assert!(
        (stadium["risk_score"].as_f64().unwrap() - risk).abs() < 1e-9,
        "{stadium}"
    );
    assert_eq!(
        (&stadium["risk_level"], &stadium["criticality"]),
        (&serde_json::json!(4), &serde_json::json!(4)),
        "{stadium}"
    );
    assert_eq!(stadium["incidents"], 0, "{stadium}");
    // The neighbours rise by their spill; the far zone gets none.
    let spill = 0.25 * x;
    assert!((spill - 2.4).abs() < 1e-12);
    for zone in ["north", "east"] {
        let r = row_at(&run, zone, target);
        let c = &r["contributions"];
        assert!((c["spill"].as_f64().unwrap() - spill).abs() < 1e-12, "{r}");
        assert!(
            (c["exposure"].as_f64().unwrap() - spill).abs() < 1e-12,
            "{r}"
        );
        let risk = 100.0 * (1.0 - (-spill / 10.0f64).exp());
        assert!(
            (r["risk_score"].as_f64().unwrap() - risk).abs() < 1e-9,
            "{r}"
        );
    }
    let far = row_at(&run, "far", target);
    assert_eq!(far["contributions"]["spill"], 0.0, "{far}");
    assert_eq!(far["risk_score"], 0.0, "{far}");

    // A crowd surge seen only by densities: 50,000 people now in the far zone, whose typical
    // crowd is its default 1,000: surge = 0.05 · 49 = 2.45, and its risk rises from 0.
    let ts = now_s();
    let hour = ts / 3600;
    run.post_records(&[format!(
        "{{\"feed\":\"density\",\"ts\":{ts},\"zone\":\"far\",\"people\":50000}}"
    )]);
    wait_for(20, "the surge", || {
        row_at(&run, "far", hour)["risk_score"].as_f64() > Some(0.0)
    });
    let far = row_at(&run, "far", hour);
    let surge = 0.05 * (50_000.0 - 1_000.0) / 1000.0;
    let c = &far["contributions"];
    assert!(
        (c["surge"].as_f64().unwrap() - surge).abs() < 1e-12,
        "{far}"
    );
    assert_eq!(far["incidents"], 0, "{far}");
    // Load 10 (50,000 / 5,000): raw = 2.45 · (1 + 0.8 · 9).
    let risk = 100.0 * (1.0 - (-(surge * (1.0 + 0.8 * 9.0)) / 10.0f64).exp());
    assert!(
        (far["risk_score"].as_f64().unwrap() - risk).abs() < 1e-9,
        "{far}"
    );
    run.stop();
}
