//! The Marseille demo (`vigie run --demo`, the default scenario): a scripted day on the 16
//! arrondissements of Marseille (`config/zones/marseille.geojson`, the embedded default
//! configuration, model v2) that exercises every feed. Every time is relative to the current
//! hour H; "H−3" is three hours before it. What is sent, and why:
//!
//! | feed | records | door | what it shows |
//! |---|---|---|---|
//! | `incident` | the 2,720 real Vancouver Police Department incidents of December 2020, shifted so that their last hour is H, each Vancouver neighbourhood *i* (in `config/zones/vancouver.geojson`'s order, 24 of them) put in arrondissement 13001 + (*i* mod 16) | half MQTT, half HTTP | a baseline and recent incidents from real history — **remapped, not Marseille's**: no open incident data exists for Marseille; the rule is only a fixed, deterministic spread |
//! | `incident` | six scripted incidents at the Vieux-Port (13001) and La Joliette (13002), H−2 to H | HTTP | recent incidents at "now" |
//! | `density` | every arrondissement every hour from H−35 days to H: `default_density` × the weekly shape of the real Milan telecom activity (`data/milan_telecom_citywide_10min_2013-11-03_week.csv`, the hour of the week's activity over the week's mean) × a deterministic ±10 %; the Christmas market's visitors in 13001 (+5,000 from 10:00 to 21:59 local), the demonstrators (+8,000 at H−1 and H) | MQTT, `vigie/density/<zone>` | telecom-like crowds, their typical crowd over four weeks |
//! | `density` | a surge in 13002: a cruise ship at La Joliette, +6,000, +11,000, +14,000 people at H−2, H−1, H | MQTT | v2's surge, an overload |
//! | `density` | **13013's feed falls silent** after H−7 (no record since) | — | hours H−6 to H of 13013 miss `density`: confidence `reduced`, hatched on the wall |
//! | `call` | hotline calls: about one zone-hour in five has one over the past week; 3, 4, 5 calls in 13001 at H−2, H−1, H; 2, 3 in 13002 at H−1, H | MQTT, `vigie/call/<zone>` | calls in `I` |
//! | `traffic` | every arrondissement every hour from H−35 days to H: 45 % of its road capacity × the same weekly shape × ±10 %; ×1.8 in 13001 at H−1 and H (traffic diverted around the march) | HTTP | fluidity; the match's visitors slow 13008 in the forecast |
//! | `weather` | observed every hour of the past week (13–18 °C); a routine forecast issued at H−34 for the next 30 days (13–18 °C); then, at H−10, a **heat-wave** update: 27–38 °C the next three days (an unseasonal script), mild after | MQTT, `vigie/weather` | the weather factor in the forecast; no hour lacks weather |
//! | `event` | the Christmas market at the Vieux-Port (13001, 15,000, from 14 days before H to 22 days after, published H−21 d); roadworks on the Canebière (13001, H−48 to H+72); **the match** at the Stade Vélodrome (13008, 65,000, H+2 to H+5, published H−20); **a fan zone** in the neighbouring 13006 (15,000, H+1 to H+6, published H−18); **a demonstration** in 13001 (8,000, H−1 to H+2, declared at H−4) | HTTP | exposure, spill into the neighbours of 13008 and 13006, **clashes** in 13001 (the demonstration crosses the roadworks and the market) |
//! | `deployment` | standing patrols in every arrondissement (a fifth of `max_agents`, rounded up) over the horizon; 4 more at the market; 10 more for the match (H+1 to H+6, planned at H−8) | HTTP | protection rates; a **shortfall** (protection < 1, criticality up) at 13001 now and at 13008 during the match |
//!
//! What to see at H once it has played (about 24 s at the default speed): 13001 at level 4
//! and criticality 4 (the demonstration, the market, the incidents and calls, its patrols
//! short), 13002 raised by the surge, three clashes in 13001, 13013 hatched (`? no density`);
//! in the forecast, 13008 at level 4 during the match with its neighbours taking the spill,
//! fluidity falling in 13008, the heat wave in every weather factor. The demo adds the alert
//! rule [`RULE`] (a risk level of 3 or more now or within 24 hours, in any zone), which fires
//! on 13001 and on the match and shows on the wall. The roads are the demo's too: an
//! arrondissement without a `road_capacity` gets its capacity / 5 vehicles per hour (an
//! assumption of the script, not a measured figure), so the fluidity layer has figures.
//!
//! Every record has an id (`tel-13001-<hour>`, `demo-match-velodrome`, …: names, or the
//! absolute hour), so a second run on the same `--data` upserts them. The values depend on
//! the absolute hour and the zone only (no random state): a run at the same hour sends the
//! same records.

use super::{vancouver_incidents, Door, Scripted};
use anyhow::{bail, Context};
use serde_json::{json, Value};
use vigie_config::{AlertRule, Config};
use vigie_model::time::Calendar;
use vigie_model::Feed;

/// The demo's alert rule: a risk level of 3 or more, now or in the next 24 hours.
pub const RULE: &str = "demo-level-3-within-24h";
/// The real telecom activity whose weekly shape the densities and traffic follow.
const MILAN: &str = include_str!("../../../data/milan_telecom_citywide_10min_2013-11-03_week.csv");
/// Days of density and traffic history before H (four weeks of typical crowd, and the past
/// week).
const HISTORY_DAYS: i64 = 35;

/// The arrondissements the scenario names.
const VIEUX_PORT: &str = "13001";
const JOLIETTE: &str = "13002";
const CASTELLANE: &str = "13006";
const VELODROME: &str = "13008";
const SILENT: &str = "13013";

/// Adds what the scenario needs to the configuration: road capacities where the zone file
/// has none, and the alert rule [`RULE`]. Refuses zones other than Marseille's.
pub fn prepare(config: &mut Config) -> anyhow::Result<()> {
    for n in 1..=16 {
        let id = format!("130{n:02}");
        if config.zones.by_id(&id).is_none() {
            bail!(
                "--demo marseille plays on Marseille's 16 arrondissements (zone ids 13001 to 13016): \
                 the configuration's zone file has no zone {id}"
            );
        }
    }
    let zones = config
        .zones
        .iter()
        .map(|z| {
            let mut z = z.clone();
            if z.road_capacity.is_none() {
                z.road_capacity = Some(((z.capacity / 5.0) / 100.0).round().max(1.0) * 100.0);
            }
            z
        })
        .collect();
    config.zones = vigie_config::zones::ZoneSet::from_zones(zones);
    if !config.alerts.rules.iter().any(|r| r.name == RULE) {
        let rule: AlertRule = serde_json::from_value(json!({
            "name": RULE,
            "indicator": "risk_level",
            "threshold": 3,
            "lookahead_h": 24,
            "severity": "critical",
        }))
        .context("the demo's alert rule")?;
        config.alerts.rules.push(rule);
    }
    Ok(())
}

/// A deterministic number in [0, 1) from a zone, an hour and a salt (SplitMix64).
fn unit(zone: usize, hour: i64, salt: u64) -> f64 {
    let mut x = (zone as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((hour as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(salt.wrapping_mul(0x94D0_49BB_1331_11EB));
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The weekly shape of the Milan telecom activity: for each hour of the week (`how`, read in
/// `calendar`), that hour's internet activity over the week's mean hour.
fn weekly_shape(calendar: &Calendar) -> anyhow::Result<[f64; 168]> {
    let mut lines = MILAN.lines();
    let header: Vec<&str> = lines
        .next()
        .context("the Milan file is empty")?
        .split(',')
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|c| *c == name)
            .with_context(|| format!("the Milan file has no column {name}"))
    };
    let (t, a) = (col("time_interval")?, col("internet_traffic")?);
    let mut sum = [0.0; 168];
    for (n, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        let parse = |i: usize| {
            cells
                .get(i)
                .and_then(|c| c.parse::<f64>().ok())
                .with_context(|| format!("the Milan file, line {}: column {i}", n + 2))
        };
        let hour = (parse(t)? / 3_600_000.0).floor() as i64;
        sum[calendar.how(hour) as usize] += parse(a)?;
    }
    let mean = sum.iter().sum::<f64>() / 168.0;
    if sum.iter().any(|s| *s <= 0.0) {
        bail!("the Milan file does not cover every hour of the week");
    }
    Ok(sum.map(|s| s / mean))
}

/// A record of `feed` with `fields` (without `feed` and `zone`), sent at `at` (seconds);
/// over MQTT, a record with a zone goes to `vigie/<feed>/<zone>` without it.
fn record(
    at: i64,
    door: Door,
    feed: Feed,
    zone: Option<&str>,
    fields: Value,
    scene: Option<&str>,
) -> Scripted {
    let mut bare = serde_json::Map::new();
    bare.insert("feed".into(), json!(feed.name()));
    if let Value::Object(f) = fields {
        bare.extend(f);
    }
    let mut full = bare.clone();
    if let Some(z) = zone {
        full.insert("zone".into(), json!(z));
    }
    Scripted {
        at: at * 1_000_000,
        door,
        feed,
        full: Value::Object(full).to_string(),
        per_zone: zone.map(|z| (z.to_string(), Value::Object(bare).to_string())),
        scene: scene.map(str::to_string),
    }
}

/// Every record of the scenario for the current hour `h0` (hours since 1970).
pub fn records(config: &Config, h0: i64) -> anyhow::Result<Vec<Scripted>> {
    let calendar = Calendar::new(config.timezone);
    let shape = weekly_shape(&calendar)?;
    let zones: Vec<_> = config.zones.iter().collect();
    let local_hour = |h: i64| calendar.how(h) % 24;
    // 0 at 03:00 local, 1 at 15:00: the day's warmth.
    let day = |h: i64| {
        0.5 - 0.5 * (2.0 * std::f64::consts::PI * (local_hour(h) as f64 - 3.0) / 24.0).cos()
    };
    let s = |h: i64| h * 3600;
    let mut out = Vec::new();

    // Real incident history, remapped: Vancouver neighbourhood i → arrondissement i mod 16.
    let ids: Vec<String> = zones.iter().map(|z| z.id.clone()).collect();
    out.extend(vancouver_incidents(h0, |i| ids[i % ids.len()].clone())?);

    // The agenda.
    let market = (h0 - 14 * 24, h0 + 22 * 24);
    let events = [
        ("demo-christmas-market", VIEUX_PORT, "market", 15_000, market, h0 - 21 * 24, None),
        ("demo-roadworks-canebiere", VIEUX_PORT, "roadworks", 0, (h0 - 48, h0 + 72), h0 - 72, None),
        ("demo-match-velodrome", VELODROME, "sport", 65_000, (h0 + 2, h0 + 5), h0 - 20,
            Some("the agenda: a match at the Stade Vélodrome (13008) from H+2 to H+5, 65,000 expected")),
        ("demo-fan-zone", CASTELLANE, "festival", 15_000, (h0 + 1, h0 + 6), h0 - 18,
            Some("the agenda: a fan zone next door, in 13006, from H+1 to H+6, 15,000 expected (v2 spills its exposure and the match's into the neighbours)")),
        ("demo-demonstration", VIEUX_PORT, "demonstration", 8_000, (h0 - 1, h0 + 2), h0 - 4,
            Some("a demonstration is declared in 13001 from H−1 to H+2, 8,000 expected, its route across the Canebière's roadworks and the Christmas market: clashes")),
    ];
    for (id, zone, kind, attendance, (start, end), published, scene) in events {
        out.push(record(
            s(published),
            Door::Http,
            Feed::Event,
            Some(zone),
            json!({"id": id, "ts": s(published), "start": s(start), "end": s(end), "attendance": attendance, "kind": kind}),
            scene,
        ));
    }

    // Patrols: standing ones everywhere, more at the market and for the match.
    for z in &zones {
        let agents = z.max_agents.div_ceil(5);
        let published = h0 - 9 * 24;
        out.push(record(
            s(published),
            Door::Http,
            Feed::Deployment,
            Some(z.id.as_str()),
            json!({"id": format!("demo-patrol-{}", z.id), "ts": s(published), "start": s(h0 - 8 * 24), "end": s(h0 + 31 * 24), "agents": agents}),
            None,
        ));
    }
    out.push(record(
        s(h0 - 21 * 24),
        Door::Http,
        Feed::Deployment,
        Some(VIEUX_PORT),
        json!({"id": "demo-patrol-market", "ts": s(h0 - 21 * 24), "start": s(market.0), "end": s(market.1), "agents": 4}),
        None,
    ));
    out.push(record(
        s(h0 - 8),
        Door::Http,
        Feed::Deployment,
        Some(VELODROME),
        json!({"id": "demo-patrol-match", "ts": s(h0 - 8), "start": s(h0 + 1), "end": s(h0 + 6), "agents": 10}),
        Some("patrols planned for the match: 10 more agents in 13008 from H+1, fewer than its risk will require (a shortfall)"),
    ));

    // Telecom-like densities and traffic counts, hour by hour.
    for (zi, z) in zones.iter().enumerate() {
        let road = z.road_capacity.unwrap_or(z.capacity / 5.0);
        for h in h0 - HISTORY_DAYS * 24..=h0 {
            let shape = shape[calendar.how(h) as usize];
            if !(z.id == SILENT && h > h0 - 7) {
                let mut people = z.default_density * shape * (0.9 + 0.2 * unit(zi, h, 1));
                let mut scene = None;
                if z.id == VIEUX_PORT {
                    if (market.0..market.1).contains(&h) && (10..=21).contains(&local_hour(h)) {
                        people += 5_000.0;
                    }
                    if h >= h0 - 1 {
                        people += 8_000.0;
                    }
                }
                if z.id == JOLIETTE && h >= h0 - 2 {
                    people += [6_000.0, 11_000.0, 14_000.0][(h - (h0 - 2)) as usize];
                    if h == h0 - 2 {
                        scene = Some("a cruise ship calls at La Joliette: the telecom densities of 13002 surge (v2's surge, an overload)");
                    }
                }
                if z.id == SILENT && h == h0 - 7 {
                    scene = Some("the last telecom density from 13013: its feed falls silent, so its hours from H−6 miss their crowd (confidence reduced)");
                }
                out.push(record(
                    s(h),
                    Door::Mqtt,
                    Feed::Density,
                    Some(z.id.as_str()),
                    json!({"id": format!("tel-{}-{h}", z.id), "ts": s(h), "sensor": "telecom", "people": people.round()}),
                    scene,
                ));
            }
            let mut volume = road * 0.45 * shape * (0.9 + 0.2 * unit(zi, h, 2));
            if z.id == VIEUX_PORT && h >= h0 - 1 {
                volume *= 1.8;
            }
            out.push(record(
                s(h),
                Door::Http,
                Feed::Traffic,
                Some(z.id.as_str()),
                json!({"id": format!("trf-{}-{h}", z.id), "ts": s(h), "sensor": "loops", "volume": volume.round()}),
                None,
            ));
        }
    }

    // Hotline calls: a background over the past week, a burst at the Vieux-Port and La Joliette.
    for (zi, z) in zones.iter().enumerate() {
        for h in h0 - 167..=h0 {
            let mut n = usize::from(unit(zi, h, 3) < 0.2);
            if z.id == VIEUX_PORT && h >= h0 - 2 {
                n = [3, 4, 5][(h - (h0 - 2)) as usize];
            }
            if z.id == JOLIETTE && h >= h0 - 1 {
                n = [2, 3][(h - (h0 - 1)) as usize];
            }
            for k in 0..n {
                let ts = s(h) + 60 * k as i64;
                let scene = (z.id == VIEUX_PORT && h == h0 - 2 && k == 0)
                    .then_some("hotline calls about the crowd at the Vieux-Port (13001)");
                out.push(record(
                    ts,
                    Door::Mqtt,
                    Feed::Call,
                    Some(z.id.as_str()),
                    json!({"id": format!("call-{}-{h}-{k}", z.id), "ts": ts}),
                    scene,
                ));
            }
        }
    }

    // Scripted incidents at the Vieux-Port and La Joliette.
    let incidents = [
        (
            h0 - 2,
            VIEUX_PORT,
            2,
            Some("incidents at the Vieux-Port: pickpocketing at the market"),
        ),
        (
            h0 - 1,
            VIEUX_PORT,
            3,
            Some("scuffles as the demonstration sets off (13001)"),
        ),
        (h0 - 1, VIEUX_PORT, 2, None),
        (h0 - 1, JOLIETTE, 2, None),
        (
            h0,
            VIEUX_PORT,
            3,
            Some("the demonstration meets the roadworks: two more incidents in 13001"),
        ),
        (h0, VIEUX_PORT, 3, None),
    ];
    for (n, (h, zone, severity, scene)) in incidents.into_iter().enumerate() {
        let ts = s(h) + 120 * n as i64 % 600;
        out.push(record(
            ts,
            Door::Http,
            Feed::Incident,
            Some(zone),
            json!({"id": format!("demo-incident-{n}"), "ts": ts, "severity": severity}),
            scene,
        ));
    }

    // Weather: observed over the past week, a routine forecast, then the heat-wave update.
    for h in h0 - 7 * 24..=h0 {
        out.push(record(
            s(h),
            Door::Mqtt,
            Feed::Weather,
            None,
            json!({"id": format!("wx-obs-{h}"), "ts": s(h), "kind": "observed", "temperature_c": (13.0 + 5.0 * day(h)).round(), "precip_mm": 0.0, "wind_kmh": 15.0}),
            None,
        ));
    }
    for (issued, heat) in [(h0 - 34, false), (h0 - 10, true)] {
        for h in h0 + 1..=h0 + 720 {
            let temperature = if heat && h <= h0 + 72 {
                27.0 + 11.0 * day(h)
            } else {
                13.0 + 5.0 * day(h)
            };
            let scene = (heat && h == h0 + 1).then_some(
                "a heat-wave forecast: 27 to 38 °C over the next three days (the weather factor rises in the forecast)",
            );
            out.push(record(
                s(issued),
                Door::Mqtt,
                Feed::Weather,
                None,
                json!({"id": format!("wx-fc-{h}-{issued}"), "ts": s(h), "kind": "forecast", "issued_at": s(issued), "temperature_c": temperature.round(), "wind_kmh": 15.0}),
                scene,
            ));
        }
    }
    Ok(out)
}
