//! criterion micro-benchmarks of the hot paths: parsing and validating a record (an NDJSON
//! line, and a CSV row through a mapping, as the peers' workload is read), locating a point in
//! the Marseille polygons, the indicator formula, one zone's computation over the horizon, and
//! encoding and decoding a chunk of the store; one evaluation of the alert rules; a burst's
//! changed rows written as the live stream's JSON.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use vigie_config::Config;
use vigie_connectors::mapped::CompiledMapping;
use vigie_connectors::parse_ndjson_line;
use vigie_engine::calendar::CachedCalendar;
use vigie_engine::zone::{Fact, ZoneComputer, ZoneInfo};
use vigie_model::time::Calendar;
use vigie_queries::formula::{self, HourInputs};
use vigie_store::{ChunkDecoder, ChunkEncoder, Values};

fn hot_paths(c: &mut Criterion) {
    let config = Config::embedded_default();
    let line = r#"{"feed":"incident","ts":"2026-11-28T14:05:00Z","zone":"13008","severity":3,"category":"theft"}"#;
    c.bench_function("parse and validate an incident line", |b| {
        b.iter(|| parse_ndjson_line(black_box(line), (&config).into(), 1).unwrap())
    });
    let located = r#"{"feed":"incident","ts":1764338700,"lat":43.2611,"lon":5.3798,"severity":3}"#;
    c.bench_function("parse a line located by lat/lon", |b| {
        b.iter(|| parse_ndjson_line(black_box(located), (&config).into(), 1).unwrap())
    });
    c.bench_function("locate a point in 16 polygons", |b| {
        b.iter(|| config.zones.locate(black_box(43.2611), black_box(5.3798)))
    });
    // A row of the peers' workload through its mapping (benchmarks/workloads/peers.toml).
    let peers = Config::from_file(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/peers.toml"),
    )
    .expect("the peers' configuration");
    let header: Vec<String> = ["ts", "zone", "category", "severity"]
        .map(String::from)
        .to_vec();
    let mapping = CompiledMapping::compile(
        "peer_events",
        &peers.mappings["peer_events"],
        &header,
        &peers,
    )
    .expect("the peers' mapping");
    let row = csv::StringRecord::from(vec!["1700000009", "z086", "crowd", "2"]);
    c.bench_function("a CSV row through a mapping, validated", |b| {
        b.iter(|| mapping.record(black_box(&row), (&peers).into(), 1).unwrap())
    });
    let zone = formula::ZoneParams::from(config.zones.get(7));
    let inputs = HourInputs {
        baseline: 1.2,
        recent: 7.0,
        crowd: 25_000.0,
        events: 4_000.0,
        weather: 1.1,
        demonstration: true,
        exposure: 2.4,
        spill: 0.3,
        surge: 0.1,
    };
    c.bench_function("risk score of one zone and hour", |b| {
        b.iter(|| formula::risk_score(&config.model, &zone, black_box(&inputs)))
    });

    // One zone with a year of hourly aggregates, as the zone operator hands them to the computer.
    let hc = 1_790_812_800 / 3600 + 24 * 365;
    let mut facts = vec![Fact::Clock(hc)];
    for h in hc - 24 * 365..hc {
        facts.push(Fact::Incidents {
            hour: h,
            n: 2,
            sum: h % 5 + 1,
            calls: (h % 3) as u64,
        });
        facts.push(Fact::Observed {
            hour: h,
            value: vigie_model::F64((h % 4000) as f64),
        });
        facts.push(Fact::Weather {
            hour: h,
            factor: vigie_model::F64(1.0 + (h % 3) as f64 / 10.0),
        });
    }
    facts.sort();
    let weighted: Vec<(&Fact, isize)> = facts.iter().map(|f| (f, 1)).collect();
    let zones: Vec<ZoneInfo> = config.zones.iter().map(ZoneInfo::from).collect();
    let mut computer = ZoneComputer::new(
        config.model.clone(),
        zones,
        CachedCalendar::new(Calendar::new(config.timezone)),
    );
    let mut out = Vec::new();
    c.bench_function("one zone over the horizon, a year of facts", |b| {
        b.iter(|| {
            out.clear();
            computer.compute(7, &weighted, &mut out);
            out.len()
        })
    });

    // The alert timer's work: 100 zones with their whole horizon (889 rows each), ten rules
    // on every zone, five of them looking 720 hours ahead; nothing changes (the steady tick).
    let zone_ids: Vec<String> = (0..100).map(|i| format!("z{i}")).collect();
    let mut alerts = vigie_config::AlertsConfig::default();
    for i in 0..10 {
        let rule = format!(
            "name = \"r{i}\"\nindicator = \"{}\"\nthreshold = {}\nlookahead_h = {}\n",
            ["risk_score", "load"][i % 2],
            [75.0, 2.0][i % 2],
            if i < 5 { 720 } else { 0 }
        );
        alerts.rules.push(toml_rule(&rule));
    }
    let mut evaluator = vigie_alerts::Evaluator::new(zone_ids, &alerts, Default::default(), 0);
    let rows = (0..100u32).flat_map(|z| {
        (hc - 168..=hc + 720).map(move |h| vigie_model::IndicatorRow {
            zone: z,
            hour: h,
            risk_score: vigie_model::F64(((h + z as i64) % 70) as f64),
            risk_level: 1,
            protection_rate: vigie_model::F64(1.0),
            required_agents: 1,
            deployed_agents: 1,
            trend: vigie_model::Trend::Stable,
            crowd: vigie_model::F64(100.0),
            load: vigie_model::F64(0.5),
            incidents: 0,
            baseline: vigie_model::F64(0.1),
            recent: vigie_model::F64(0.0),
            events: vigie_model::F64(0.0),
            weather: vigie_model::F64(1.0),
            demonstration: 0,
            v2: None,
        })
    });
    evaluator.observe(rows, [], hc);
    c.bench_function(
        "alert rules: 10 rules x 100 zones, 5 looking 720 h ahead",
        |b| b.iter(|| evaluator.evaluate(black_box(1000)).len()),
    );

    // The live stream's text of a burst's epoch: 2,000 changed rows (half of them model v2's),
    // written as the board writes them on the engine's thread.
    let changed: Vec<vigie_model::IndicatorRow> = (0..2000u32)
        .map(|i| vigie_model::IndicatorRow {
            zone: i % 100,
            hour: hc - 47 + (i / 100) as i64,
            risk_score: vigie_model::F64(12.5 + i as f64 / 7.0),
            risk_level: 1 + (i % 4) as u8,
            protection_rate: vigie_model::F64(1.0 / (1.0 + i as f64)),
            required_agents: 3,
            deployed_agents: 2,
            trend: vigie_model::Trend::Rising,
            crowd: vigie_model::F64(5210.25),
            load: vigie_model::F64(0.52),
            incidents: (i % 5) as u64,
            baseline: vigie_model::F64(0.8 + i as f64 / 3.0),
            recent: vigie_model::F64(3.0),
            events: vigie_model::F64(0.0),
            weather: vigie_model::F64(1.1),
            demonstration: 0,
            v2: (i % 2 == 0).then(|| vigie_model::RowV2 {
                calls: 1,
                criticality: 2,
                traffic: Some(vigie_model::F64(812.5)),
                fluidity: Some(vigie_model::F64(0.8125)),
                fluidity_level: Some(2),
                load_trend: vigie_model::Trend::Stable,
                fluidity_trend: None,
                missing: vigie_model::Missing(i as u8 % 8),
                exposure: vigie_model::F64(1.0 / 3.0),
                spill: vigie_model::F64(0.1),
                surge: vigie_model::F64(0.0),
            }),
        })
        .collect();
    let mut text = Vec::with_capacity(2000 * 768);
    c.bench_function("2,000 changed rows as the live stream's JSON", |b| {
        b.iter(|| {
            text.clear();
            let mut lines = vigie_model::Lines::default();
            for r in &changed {
                serde_json::to_writer(&mut text, &lines.line(r, "13001")).unwrap();
            }
            text.len()
        })
    });
}

fn toml_rule(text: &str) -> vigie_config::AlertRule {
    #[derive(serde::Deserialize)]
    struct One {
        rule: vigie_config::AlertRule,
    }
    let wrapped = format!("[rule]\n{text}");
    let one: One = toml::from_str(&wrapped).expect("a valid rule");
    one.rule
}

/// A store chunk of 720 hourly points (a month of one series): a risk score that drifts (XOR
/// coding) and an incident count (integer coding), encoded, and decoded back.
fn chunks(c: &mut Criterion) {
    let t0 = 1_790_812_800_000i64;
    let scores: Vec<(i64, f64)> = (0..720)
        .map(|i| (t0 + i * 3_600_000, 40.0 + 10.0 * ((i as f64) / 17.0).sin()))
        .collect();
    let counts: Vec<(i64, f64)> = (0..720)
        .map(|i| (t0 + i * 3_600_000, ((i * 7) % 5) as f64))
        .collect();
    c.bench_function("encode a chunk of 720 floats", |b| {
        b.iter(|| {
            let mut e = ChunkEncoder::new();
            for (t, v) in black_box(&scores) {
                e.push(*t, *v);
            }
            e.to_bytes()
        })
    });
    c.bench_function("encode a chunk of 720 integers", |b| {
        b.iter(|| {
            let mut e = ChunkEncoder::with_values(Values::Int);
            for (t, v) in black_box(&counts) {
                e.push(*t, *v);
            }
            e.to_bytes()
        })
    });
    let mut e = ChunkEncoder::new();
    for (t, v) in &scores {
        e.push(*t, *v);
    }
    let bytes = e.to_bytes();
    c.bench_function("decode a chunk of 720 floats", |b| {
        b.iter(|| {
            ChunkDecoder::new(black_box(&bytes))
                .unwrap()
                .map(|p| p.unwrap().1)
                .sum::<f64>()
        })
    });
}

criterion_group!(benches, hot_paths, chunks);
criterion_main!(benches);
