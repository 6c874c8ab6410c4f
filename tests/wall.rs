//! The wall of `vigie run` in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver), at 1920×1080 and at 390×844 (a phone): only
//! what needs a browser — the routes themselves are tested through the router in
//! `server/tests/routes.rs`. The real binary runs on the 16 Marseille zones (eight with a road
//! capacity, so that fluidity shows), with a viewer, an operator, a source and its embedded
//! MQTT broker (the harness of `tests/support/vigie.rs`).
//!
//! The tests fail (they do not skip) when Chromium or its driver is missing; they keep a
//! screenshot of each behaviour in `target/wall-screenshots/` (copied to `docs/screenshots/`).

#[path = "support/client.rs"]
mod client;
#[path = "support/vigie.rs"]
mod vigie;

use client::{free_port, now_s};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vigie::{Setup, Vigie, OPERATOR, VIEWER};

const SIZES: [(u32, u32, &str); 2] = [(1920, 1080, "1920x1080"), (390, 844, "390x844")];

fn rfc3339(hour: i64) -> String {
    chrono::DateTime::from_timestamp(hour * 3600, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn incident(zone: &str, ts: i64, severity: u8) -> String {
    json!({"feed": "incident", "ts": ts, "zone": zone, "severity": severity}).to_string()
}

/// The Marseille zones, the first eight with a road capacity, in `dir`.
fn zones_with_roads(dir: &Path) -> PathBuf {
    let text =
        std::fs::read_to_string(vigie::repo().join("config/zones/marseille.geojson")).unwrap();
    let mut zones: Value = serde_json::from_str(&text).unwrap();
    for f in zones["features"].as_array_mut().unwrap().iter_mut().take(8) {
        f["properties"]["road_capacity"] = json!(1800.0);
    }
    let path = dir.join("zones.geojson");
    std::fs::write(&path, zones.to_string()).unwrap();
    path
}

/// `vigie run` for the wall: incidents, events, traffic and weather from `ops`, and an alert
/// rule on 13003's risk.
fn start(dir: &Path) -> Vigie {
    let v = Vigie::start(
        dir,
        Setup {
            feeds: &["incident", "event", "traffic", "weather"],
            zones: Some(zones_with_roads(dir)),
            extra: "[[alerts.rules]]\nname = \"risk-13003\"\nindicator = \"risk_score\"\nzones = [\"13003\"]\nthreshold = 70.0\nreset = 50.0\nseverity = \"critical\"\n",
            ..Setup::default()
        },
    );
    // Up once the engine has closed its first epoch.
    client::wait_for(30, "the first epoch", || {
        v.json("GET", "/api/v1/indicators", Some(VIEWER), "").0 == 200
    });
    v
}

/// GET with the viewer's token, as JSON.
fn get(v: &Vigie, path: &str) -> Value {
    let (code, body) = v.json("GET", path, Some(VIEWER), "");
    assert_eq!(code, 200, "{path}: {body}");
    body
}

/// Zone `zone`'s row in an answer of `/api/v1/indicators`.
fn row_in<'a>(answer: &'a Value, zone: &Value) -> &'a Value {
    let rows = answer["indicators"].as_array().unwrap();
    rows.iter().find(|r| r["zone"] == *zone).unwrap()
}

/// Zone `zone`'s row at `hour`.
fn row(v: &Vigie, zone: &str, hour: i64) -> Value {
    let all = get(v, &format!("/api/v1/indicators?hour={}", hour * 3600));
    all["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["zone"] == zone)
        .cloned()
        .unwrap_or(Value::Null)
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

    /// A Chromium session with a window of `width`×`height`.
    async fn browser(&self, width: u32, height: u32) -> fantoccini::Client {
        let chromium = ["/usr/bin/chromium", "/usr/lib/chromium/chromium"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("Debian's chromium must be installed: tests/run installs it");
        // Chromium keeps a window at least 500 pixels wide: a phone's viewport is emulated.
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         format!("--window-size={},{height}", width.max(500)), "--hide-scrollbars"],
                "mobileEmulation": {"deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0}},
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

/// A screenshot of the page as `NAME-SIZE.png`.
async fn shot(b: &fantoccini::Client, name: &str, size: &str) {
    let png = b.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(screenshots().join(format!("{name}-{size}.png")), png).unwrap();
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

/// Types `token` into the field `input` and submits it with `button`.
async fn type_token(b: &fantoccini::Client, input: &str, button: &str, token: &str) {
    let field = b.find(fantoccini::Locator::Id(input)).await.unwrap();
    field.send_keys(token).await.unwrap();
    let submit = b.find(fantoccini::Locator::Css(button)).await.unwrap();
    submit.click().await.unwrap();
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

const LEVELS: &str = "return Array.from(document.querySelectorAll('#map g.zone[data-zone]')).map(g => [g.dataset.zone, g.dataset.level, g.querySelector('path.area').getAttribute('fill')]);";

/// Clicks zone `zone` on the map.
async fn click_zone(b: &fantoccini::Client, zone: &str) {
    js(b, &format!("document.querySelector('#map g.zone[data-zone=\"{zone}\"] path.area').dispatchEvent(new MouseEvent('click', {{bubbles: true}}));")).await;
}

/// The hour as the page writes it in `data-hour` (JavaScript's ISO form).
fn iso(hour: i64) -> String {
    rfc3339(hour).replace(":00:00Z", ":00:00.000Z")
}

/// Moves the slider to `offset` hours from `hour` (now), and waits for the map of that hour.
async fn slide(b: &fantoccini::Client, hour: i64, offset: i64) {
    js(b, &format!("const s = document.getElementById('slider'); s.value = 168 + ({offset}); s.dispatchEvent(new Event('input'));")).await;
    let ready = format!(
        "return document.getElementById('hour-when').dataset.offset === '{offset}' && document.getElementById('map').dataset.hour === '{}';",
        iso(hour + offset)
    );
    js_wait(b, 10, "the slider's hour", &ready).await;
}

/// Every wall behaviour at one window size, on a running city (`busy` already posted).
async fn the_wall_at(v: &Vigie, driver: &Driver, (w, h, size): (u32, u32, &str), hour: i64) {
    let b = driver.browser(w, h).await;
    // The token given in the address is kept, and leaves the address bar.
    b.goto(&v.url(&format!("/?token={VIEWER}"))).await.unwrap();
    js_wait(&b, 15, "16 painted zones", "return document.querySelectorAll('#map g.zone[data-level]').length === 16 && document.getElementById('live').className === 'up';").await;
    let address = js(&b, "return location.href").await;
    assert!(!address.as_str().unwrap().contains("token"), "{address}");
    assert!(js(&b, "return document.getElementById('who').textContent")
        .await
        .as_str()
        .unwrap()
        .contains("viewer"));
    // Each zone shows the API's level, one colour per level, and a trend arrow.
    let zones = js(&b, LEVELS).await;
    let latest = get(v, "/api/v1/indicators");
    let mut fills = std::collections::BTreeMap::new();
    for z in zones.as_array().unwrap() {
        let r = row_in(&latest, &z[0]);
        assert_eq!(z[1], r["risk_level"].to_string(), "zone {}", z[0]);
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
    let arrows = js(&b, "return Array.from(document.querySelectorAll('#map g[data-label] text.trend')).map(t => t.textContent).join('')").await;
    assert!(
        arrows
            .as_str()
            .unwrap()
            .chars()
            .filter(|c| "↑↓→".contains(*c))
            .count()
            == 16,
        "{arrows}"
    );
    // Times in the city's time zone (Paris), UTC on hover; the legend's score bands.
    let label = js(
        &b,
        "const l = document.getElementById('hour-label'); return [l.textContent, l.title];",
    )
    .await;
    assert!(label[1].as_str().unwrap().ends_with("UTC"), "{label}");
    let paris = chrono::DateTime::from_timestamp(hour * 3600, 0)
        .unwrap()
        .with_timezone(&chrono_tz::Europe::Paris)
        .format("%H:%M")
        .to_string();
    assert!(
        label[0].as_str().unwrap().contains(&paris),
        "{label} in Paris is {paris}"
    );
    let legend = js(&b, "return document.getElementById('legend').textContent").await;
    assert!(
        legend.as_str().unwrap().contains("score < 25")
            && legend.as_str().unwrap().contains("≥ 75"),
        "{legend}"
    );
    // The slider: a tick a day, the thumb's date.
    let ticks = js(
        &b,
        "return document.querySelectorAll('#slider-ticks span.day').length",
    )
    .await;
    assert!(
        (36..=38).contains(&ticks.as_u64().unwrap()),
        "{ticks} day ticks"
    );
    assert!(!js(
        &b,
        "return document.getElementById('thumb-date').textContent"
    )
    .await
    .as_str()
    .unwrap()
    .is_empty());
    if w < 800 {
        // One column: the side panels under the map, nothing wider than the screen.
        let layout = js(&b, "return [document.documentElement.scrollWidth, document.querySelector('aside').getBoundingClientRect().top, document.getElementById('map-panel').getBoundingClientRect().bottom];").await;
        assert!(
            layout[0].as_f64().unwrap() <= w as f64,
            "the page overflows: {layout}"
        );
        assert!(
            layout[1].as_f64().unwrap() >= layout[2].as_f64().unwrap() - 1.0,
            "not one column: {layout}"
        );
    }
    shot(&b, "wall-loaded", size).await;

    // A zone selected: its headline, then the slider moves and the headline follows the hour.
    click_zone(&b, "13012").await;
    js_wait(
        &b,
        10,
        "the contributions",
        "return document.querySelector('#contributions tr[data-contribution=\"recent\"]');",
    )
    .await;
    let units = js(&b, "return document.querySelector('#contributions tr[data-contribution=\"crowd\"] td.unit').textContent").await;
    assert_eq!(units, "people");
    assert!(
        js(&b, "return document.querySelectorAll('#formula li').length")
            .await
            .as_u64()
            .unwrap()
            >= 7
    );
    let now_row = row(v, "13012", hour);
    let headline = js(
        &b,
        "return document.getElementById('zone-figures').textContent",
    )
    .await;
    assert!(
        headline.as_str().unwrap().contains(&format!(
            "risk {:.1} of 100",
            now_row["risk_score"].as_f64().unwrap()
        )),
        "{headline}"
    );
    shot(&b, "wall-zone", size).await;
    slide(&b, hour, 48).await;
    let later = row(v, "13012", hour + 48);
    let want = format!("risk {:.1} of 100", later["risk_score"].as_f64().unwrap());
    let got = js_wait(&b, 10, "the headline of the forecast hour", &format!("const f = document.getElementById('zone-figures'); return f.dataset.hour === '{}' && f.textContent.includes('{want}') && f.textContent;", iso(hour + 48))).await;
    assert_ne!(
        later["risk_level"], now_row["risk_level"],
        "the hours differ in level, so the headline shows which"
    );
    assert!(
        got.as_str()
            .unwrap()
            .contains(&format!("level {}", later["risk_level"])),
        "{got}"
    );
    js_wait(&b, 10, "the forecast explained", &format!("return document.getElementById('zone-figures') && document.querySelector('#contributions th time') && document.querySelector('#contributions th time').getAttribute('datetime') === '{}';", iso(hour + 48))).await;
    shot(&b, "wall-headline-after-slider", size).await;

    // Model v2's layers: criticality, then fluidity (zones with a road capacity and traffic).
    click(&b, "#layers button[data-layer=\"criticality\"]").await;
    slide(&b, hour, 0).await;
    let crit = js(&b, "return Array.from(document.querySelectorAll('#map g.zone[data-zone]')).map(g => [g.dataset.zone, g.dataset.level]);").await;
    for z in crit.as_array().unwrap() {
        let r = row_in(&latest, &z[0]);
        assert_eq!(
            z[1],
            r["criticality"].to_string(),
            "criticality of {}",
            z[0]
        );
    }
    shot(&b, "wall-layer-criticality", size).await;
    click(&b, "#layers button[data-layer=\"fluidity\"]").await;
    let fluid = js(&b, "return Object.fromEntries(Array.from(document.querySelectorAll('#map g.zone[data-zone]')).map(g => [g.dataset.zone, g.dataset.level]));").await;
    assert_eq!(
        fluid["13001"],
        row(v, "13001", hour)["fluidity_level"].to_string(),
        "{fluid}"
    );
    assert_eq!(
        fluid["13016"], "0",
        "no road capacity, no fluidity: {fluid}"
    );
    shot(&b, "wall-layer-fluidity", size).await;
    click(&b, "#layers button[data-layer=\"risk\"]").await;
    // An hour without weather: reduced confidence, hatched, saying what is missing.
    slide(&b, hour, 30).await;
    let doubt = js_wait(&b, 10, "the hatched hours", "const g = document.querySelector('#map g.zone[data-zone=\"13005\"]'); return g.dataset.confidence === 'reduced' && g.dataset.missing;").await;
    assert_eq!(doubt, "weather");
    let label = js(
        &b,
        "return document.querySelector('#map g[data-label=\"13005\"] text.missing').textContent",
    )
    .await;
    assert!(label == "? no weather" || label == "?", "{label}");
    shot(&b, "wall-confidence", size).await;

    // Clashes drawn on the map; the clash read as a sentence naming the zone; a click selects
    // the zone and moves the slider to its hour.
    let clash = js_wait(&b, 10, "the clash", "const li = document.querySelector('#clashes li[data-clash] .msg'); return li && li.textContent;").await;
    assert!(
        clash
            .as_str()
            .unwrap()
            .starts_with("Marseille 2e: events demo-1 and market-1 overlap"),
        "{clash}"
    );
    assert_eq!(
        js(
            &b,
            "return document.querySelector('#map g.zone[data-zone=\"13002\"]').dataset.clash"
        )
        .await,
        "active"
    );
    click(&b, "#clashes li[data-clash]").await;
    js_wait(&b, 10, "the clash's hour", "return document.getElementById('hour-when').dataset.offset === '3' && document.querySelector('#map g.zone[data-zone=\"13002\"]').dataset.clash === 'now';").await;
    assert!(js(
        &b,
        "return document.querySelector('#zone-name').textContent"
    )
    .await
    .as_str()
    .unwrap()
    .starts_with("Marseille 2e"));
    shot(&b, "wall-clash", size).await;
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wall_shows_the_city_at_both_sizes_and_follows_it_live() {
    let dir = tempfile::tempdir().unwrap();
    let v = start(dir.path());
    let driver = Driver::start();
    let hour = now_s() / 3600;
    // Some zones busier than others (13003 left quiet for later), so every level shows; a
    // demonstration and a market clash in 13002 in three hours; traffic where roads are
    // known; the weather of this hour only.
    let mut busy: Vec<String> = [
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
    busy.extend([
        json!({"feed": "event", "ts": hour * 3600, "id": "demo-1", "zone": "13002", "start": (hour + 3) * 3600, "end": (hour + 5) * 3600, "attendance": 500, "kind": "demonstration"}).to_string(),
        json!({"feed": "event", "ts": hour * 3600, "id": "market-1", "zone": "13002", "start": (hour + 3) * 3600, "end": (hour + 6) * 3600, "attendance": 300, "kind": "market"}).to_string(),
        json!({"feed": "weather", "ts": hour * 3600, "kind": "observed", "temperature_c": 14}).to_string(),
    ]);
    busy.extend(["13001", "13002", "13003", "13004"].iter().map(|z| {
        json!({"feed": "traffic", "ts": hour * 3600 + 30, "zone": z, "volume": 1900}).to_string()
    }));
    v.post_records(&busy);
    client::wait_for(10, "the busy zones", || {
        row(&v, "13012", hour)["incidents"] == 12
    });
    for size in SIZES {
        the_wall_at(&v, &driver, size, hour).await;
    }

    // Live, at 1920×1080: a record published over MQTT repaints its zone within two seconds,
    // with no reload; the zone pulses and the change is listed.
    let b = driver.browser(1920, 1080).await;
    b.goto(&v.url(&format!("/?token={VIEWER}"))).await.unwrap();
    js_wait(&b, 15, "16 painted zones", "return document.querySelectorAll('#map g.zone[data-level]').length === 16 && document.getElementById('live').className === 'up';").await;
    let before = js(&b, LEVELS)
        .await
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z[0] == "13003")
        .unwrap()
        .clone();
    assert_eq!(before[1], "1", "13003 starts quiet: {before}");
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
    let api_level = row(&v, "13003", hour)["risk_level"].as_u64().unwrap();
    assert_eq!(
        js(
            &b,
            "return document.querySelector('#map g.zone[data-zone=\"13003\"]').dataset.level"
        )
        .await,
        api_level.to_string()
    );
    assert_eq!(js(&b, "return document.querySelector('#map g.zone[data-zone=\"13003\"]').classList.contains('pulse')").await, true, "the zone pulses");
    let change = js_wait(&b, 5, "the change listed", "const li = document.querySelector('#changes li[data-zone=\"13003\"]'); return li && li.textContent;").await;
    assert!(
        change.as_str().unwrap().starts_with(&format!(
            "{api_level}Marseille 3e went from risk level 1 to {api_level}"
        )),
        "{change}"
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
    shot(&b, "wall-live-change", "1920x1080").await;

    // The alert the record raised: a sentence naming the zone, its age; a click selects the
    // zone at its hour. A viewer's acknowledgement is refused…
    let alert = js_wait(&b, 15, "the alert on the page", "const li = document.querySelector('#alerts li[data-alert]'); return li && li.querySelector('button.ack') && li.textContent;").await;
    assert!(
        alert.as_str().unwrap().contains("Marseille 3e reached"),
        "{alert}"
    );
    assert!(
        alert.as_str().unwrap().contains("ago"),
        "the alert's age: {alert}"
    );
    click_zone(&b, "13012").await;
    click(&b, "#alerts li[data-alert] span.msg").await;
    js_wait(&b, 10, "the alert's zone", "const n = document.getElementById('zone-name'); return n && n.textContent.startsWith('Marseille 3e') && document.getElementById('hour-when').dataset.offset === '0';").await;
    let alerts = get(&v, "/api/v1/alerts?state=active");
    let id = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["zone"] == "13003")
        .expect("an alert for 13003")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let button = format!("#alerts li[data-alert=\"{id}\"] button.ack");
    click(&b, &button).await;
    let refusal = js_wait(&b, 10, "the refusal", "const s = document.getElementById('ack-status'); return s.className === 'refused' && s.textContent;").await;
    assert!(refusal.as_str().unwrap().contains("403"), "{refusal}");
    // Wall mode: larger type, the top alert as a banner.
    click(&b, "#wall-mode").await;
    let banner = js_wait(
        &b,
        5,
        "the banner",
        "const b = document.getElementById('banner'); return !b.hidden && b.textContent;",
    )
    .await;
    assert!(
        banner
            .as_str()
            .unwrap()
            .starts_with("CRITICAL: Marseille 3e reached"),
        "{banner}"
    );
    let sizes = js(
        &b,
        "return parseFloat(getComputedStyle(document.body).fontSize)",
    )
    .await;
    assert!(
        sizes.as_f64().unwrap() > 20.0,
        "larger type in wall mode: {sizes}"
    );
    shot(&b, "wall-mode-banner", "1920x1080").await;
    click(&b, "#wall-mode").await;
    // …an operator's, typed into the page, goes through, and every wall sees it live.
    type_token(&b, "token", "#login button", OPERATOR).await;
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
    shot(&b, "wall-acknowledged", "1920x1080").await;
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_token_is_asked_for_and_a_lost_connection_greys_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = start(dir.path());
    let driver = Driver::start();
    let hour = now_s() / 3600;
    v.post_records(&[incident("13001", hour * 3600 + 60, 4)]);
    for (w, h, size) in SIZES {
        let b = driver.browser(w, h).await;
        // No token: the page asks for one (401), and takes it.
        b.goto(&v.url("/")).await.unwrap();
        js(&b, "localStorage.clear();").await;
        b.goto(&v.url("/")).await.unwrap();
        let why = js_wait(&b, 10, "the token prompt", "const a = document.getElementById('auth'); return !a.hidden && document.getElementById('auth-why').textContent;").await;
        assert!(why.as_str().unwrap().contains("401"), "{why}");
        shot(&b, "wall-401-prompt", size).await;
        type_token(&b, "auth-token", "#auth-form button", VIEWER).await;
        js_wait(&b, 15, "the wall after the token", "return document.getElementById('auth').hidden && document.querySelectorAll('#map g.zone[data-level]').length === 16 && document.getElementById('live').className === 'up';").await;
        b.close().await.unwrap();
    }
    // vigie goes away: the map greys, saying since when its data is.
    let b = driver.browser(1920, 1080).await;
    let b2 = driver.browser(390, 844).await;
    for b in [&b, &b2] {
        b.goto(&v.url(&format!("/?token={VIEWER}"))).await.unwrap();
        js_wait(b, 15, "the wall", "return document.querySelectorAll('#map g.zone[data-level]').length === 16 && document.getElementById('live').className === 'up';").await;
    }
    let _ = v.child.kill();
    let _ = v.child.wait();
    for (b, size) in [(&b, "1920x1080"), (&b2, "390x844")] {
        let stale = js_wait(b, 15, "the lost connection", "const s = document.getElementById('stale'); return !s.hidden && document.getElementById('map-box').classList.contains('stale') && s.textContent;").await;
        let text = stale.as_str().unwrap();
        assert!(
            text.starts_with("data as of ") && text.ends_with(", connection lost"),
            "{text}"
        );
        let filter = js(
            b,
            "return getComputedStyle(document.getElementById('map')).filter",
        )
        .await;
        assert!(filter.as_str().unwrap().contains("grayscale"), "{filter}");
        shot(b, "wall-disconnected", size).await;
    }
    b.close().await.unwrap();
    b2.close().await.unwrap();
}

/// The newcomer's demo as the README shows it: `vigie run --demo` (Marseille, every feed) at
/// ten times its default speed, watched from the first second by a 1920×1080 wall; at "now",
/// once the scenario has played: a zone above level 2, the clashes of 13001, the demo's alert
/// firing, 13013 hatched for its silent density feed. Its screenshot in wall mode, the alert
/// as the banner, is the README's (`docs/wall.png`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_marseille_raised_clashing_alerted_and_partly_blind() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("vigie.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_vigie"))
        .args([
            "run",
            "--demo",
            "--demo-speed",
            "36000",
            "--epoch-ms",
            "200",
        ])
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--mqtt-listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("vigie starts");
    let v = Vigie {
        child,
        port,
        mqtt: 0,
        log: log.clone(),
    };
    client::wait_healthy(port, Some(&log));
    let driver = Driver::start();
    let b = driver.browser(1920, 1080).await;
    // No token configured: anyone reads. The map is painted from the first second.
    b.goto(&v.url("/")).await.unwrap();
    js_wait(&b, 15, "16 painted zones", "return document.querySelectorAll('#map g.zone[data-level]').length === 16 && document.getElementById('live').className === 'up';").await;
    client::wait_for(60, "the scenario played", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("the scenario is played"))
    });
    let hour = now_s() / 3600;
    // The engine has computed the played scenario (on a loaded machine its epochs lag the
    // feeder): the Vieux-Port above level 2 at now, as the API says.
    client::wait_for(60, "13001 above level 2 in the API", || {
        let (code, now) = v.json(
            "GET",
            &format!("/api/v1/indicators?hour={}", hour * 3600),
            None,
            "",
        );
        code == 200
            && row_in(&now, &json!("13001"))["risk_level"]
                .as_u64()
                .is_some_and(|l| l >= 3)
    });
    // And on the map.
    let raised = js_wait(&b, 30, "a zone above level 2", "return Array.from(document.querySelectorAll('#map g.zone[data-zone]')).filter(g => +g.dataset.level > 2).map(g => g.dataset.zone).join(',');").await;
    assert!(raised.as_str().unwrap().contains("13001"), "{raised}");
    let open = |path: &str| {
        let (code, body) = v.json("GET", path, None, "");
        assert_eq!(code, 200, "{path}: {body}");
        body
    };
    let now = open(&format!("/api/v1/indicators?hour={}", hour * 3600));
    let vieux_port = row_in(&now, &json!("13001"));
    assert!(
        vieux_port["risk_level"].as_u64().unwrap() >= 3,
        "{vieux_port}"
    );
    // The clashes of 13001, in the list and on the map at the hour shown.
    let clash = js_wait(&b, 15, "the clash", "const li = document.querySelector('#clashes li[data-clash] .msg'); return li && li.textContent;").await;
    assert!(
        clash.as_str().unwrap().starts_with("Marseille 1er"),
        "{clash}"
    );
    assert_eq!(
        js(
            &b,
            "return document.querySelector('#map g.zone[data-zone=\"13001\"]').dataset.clash"
        )
        .await,
        "now"
    );
    // The demo's forecast alert, firing, as a sentence on the wall.
    let alert = js_wait(
        &b,
        15,
        "the alert on the page",
        "const li = document.querySelector('#alerts li[data-alert]'); return li && li.textContent;",
    )
    .await;
    assert!(alert.as_str().unwrap().contains("Marseille"), "{alert}");
    let firing = open("/api/v1/alerts?state=firing");
    assert!(
        firing
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "demo-level-3-within-24h" && a["zone"] == "13008"),
        "the match's alert: {firing}"
    );
    // 13013's density feed fell silent: its hour is hatched, saying what is missing.
    let blind = js_wait(&b, 15, "13013 hatched", "const g = document.querySelector('#map g.zone[data-zone=\"13013\"]'); return g.dataset.confidence === 'reduced' && g.dataset.missing;").await;
    assert_eq!(blind, "density");
    // The Vieux-Port selected, explained; the screenshot the README shows.
    click_zone(&b, "13001").await;
    js_wait(
        &b,
        10,
        "the contributions",
        "return document.querySelector('#contributions tr[data-contribution=\"recent\"]');",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    shot(&b, "wall-demo", "1920x1080").await;
    // Wall mode, as a wall in the operations centre shows it: the demo's alert as the banner
    // above the map. The README's screenshot.
    click(&b, "#wall-mode").await;
    let banner = js_wait(
        &b,
        10,
        "the demo's alert as the banner",
        "const b = document.getElementById('banner'); return !b.hidden && b.textContent;",
    )
    .await;
    assert!(
        banner.as_str().unwrap().contains("demo-level-3-within-24h"),
        "{banner}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    shot(&b, "wall-demo-wall-mode", "1920x1080").await;
    std::fs::copy(
        screenshots().join("wall-demo-wall-mode-1920x1080.png"),
        vigie::repo().join("docs/wall.png"),
    )
    .unwrap();
    b.close().await.unwrap();
    v.stop();
}
