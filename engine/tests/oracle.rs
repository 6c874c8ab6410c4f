//! The engine against the reference: random streams of records with upserts, cancellations,
//! late arrivals, expiring history and every feed; after every epoch, the incremental output
//! must equal the from-scratch recomputation of `docs/model.md` over the records so far. Then
//! the same final output for any order, batch size and number of workers.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use vigie_config::{ModelParams, Zone, ZoneSet};
use vigie_engine::driver::Driver;
use vigie_engine::zone::ZoneInfo;
use vigie_engine::GraphParams;
use vigie_model::time::{Calendar, HOUR_US};
use vigie_model::{Body, ClashRow, EventKind, Feed, IndicatorRow, Record, WeatherKind, F64};
use vigie_queries::reference;

/// Four zones: z3 has no incident history of its own (only events and calls reach it); the
/// neighbour relation is one-way in places (z3 lists z0, z0 does not list z3); two zones have
/// a road capacity.
fn zones() -> ZoneSet {
    let mut z = vec![
        Zone::without_polygon("z0", 800.0, 6.0, 1, 6, 300.0),
        Zone::without_polygon("z1", 2000.0, 15.0, 0, 10, 0.0),
        Zone::without_polygon("z2", 150.0, 3.0, 2, 4, 50.0),
        Zone::without_polygon("z3", 19_230.0, 10.0, 2, 40, 1000.0),
    ];
    z[0].neighbours = vec![1];
    z[1].neighbours = vec![0, 2, 3];
    z[3].neighbours = vec![0, 2];
    z[0].road_capacity = Some(1800.0);
    z[3].road_capacity = Some(4000.0);
    ZoneSet::from_zones(z)
}

/// Short windows, so that a few weeks of records exercise the baseline window, the horizon
/// and the retiring of expired records.
fn model() -> ModelParams {
    ModelParams {
        weeks: 2,
        past_hours: 30,
        future_hours: 60,
        ..ModelParams::default()
    }
}

/// A horizon reaching further back than the baseline window, so that the horizon decides
/// when records expire.
fn long_horizon() -> ModelParams {
    ModelParams {
        weeks: 1,
        past_hours: 200,
        future_hours: 24,
        ..ModelParams::default()
    }
}

/// The same under model v1.
fn v1(m: ModelParams) -> ModelParams {
    ModelParams { version: 1, ..m }
}

fn params() -> GraphParams {
    params_with(model())
}

fn params_with(model: ModelParams) -> GraphParams {
    GraphParams {
        model,
        zones: zones().iter().map(ZoneInfo::from).collect(),
        calendar: Calendar::new(chrono_tz::Europe::Paris),
        live: false,
    }
}

/// 2026-03-10T00:00Z: the span crosses the change to summer time in Paris (29 March).
const T0: i64 = 1_773_100_800 * 1_000_000;
const SPAN_H: i64 = 24 * 35;

/// Every feed, with upserts and cancellations in each: incidents stop 20 hours before the end
/// of the span (so the incident feed goes stale), zone z3 gets no incident at all, densities
/// of zone z2 stop a week before the end, weather covers some hours only, and events include
/// large matches whose exposure spills into the neighbours.
fn random_records(seed: u64, n: usize) -> Vec<Record> {
    let mut rng = StdRng::seed_from_u64(seed);
    let kinds = [
        EventKind::Concert,
        EventKind::Sport,
        EventKind::Demonstration,
        EventKind::Roadworks,
        EventKind::Market,
        EventKind::Festival,
        EventKind::OfficialVisit,
        EventKind::Filming,
        EventKind::Other,
    ];
    let sensors = [None, Some("a".to_string()), Some("b".to_string())];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ts = T0 + rng.gen_range(0..SPAN_H * HOUR_US);
        let zone = rng.gen_range(0..4u32);
        let pick = rng.gen_range(0..100);
        let keyed = |rng: &mut StdRng, p: f64, prefix: &str, n: u32| {
            rng.gen_bool(p)
                .then(|| format!("{prefix}{}", rng.gen_range(0..n)))
        };
        let (feed, id, body) = if pick < 35 {
            let ts = T0 + rng.gen_range(0..(SPAN_H - 20) * HOUR_US);
            let zone = zone % 3;
            let id = keyed(&mut rng, 0.3, "i", 40);
            let body = if id.is_some() && rng.gen_bool(0.2) {
                None
            } else {
                Some(Body::Incident {
                    zone,
                    severity: rng.gen_range(1..=5),
                })
            };
            out.push(Record {
                feed: Feed::Incident,
                ts,
                seq: i as u64,
                id,
                body,
            });
            continue;
        } else if pick < 45 {
            let id = keyed(&mut rng, 0.3, "c", 30);
            let body = if id.is_some() && rng.gen_bool(0.2) {
                None
            } else {
                Some(Body::Call { zone })
            };
            (Feed::Call, id, body)
        } else if pick < 62 {
            let ts = if zone == 2 {
                T0 + rng.gen_range(0..(SPAN_H - 24 * 7) * HOUR_US)
            } else {
                ts
            };
            let id = keyed(&mut rng, 0.1, "d", 10);
            let body = if id.is_some() && rng.gen_bool(0.15) {
                None
            } else {
                Some(Body::Density {
                    zone,
                    sensor: sensors[rng.gen_range(0..3)].clone(),
                    people: F64(rng.gen_range(0..40) as f64 * 25.5 * (1 + zone * 10) as f64),
                })
            };
            out.push(Record {
                feed: Feed::Density,
                ts,
                seq: i as u64,
                id,
                body,
            });
            continue;
        } else if pick < 72 {
            let id = keyed(&mut rng, 0.15, "t", 10);
            let body = if id.is_some() && rng.gen_bool(0.15) {
                None
            } else {
                Some(Body::Traffic {
                    zone,
                    sensor: sensors[rng.gen_range(0..3)].clone(),
                    volume: F64(rng.gen_range(0..100) as f64 * 40.5),
                })
            };
            (Feed::Traffic, id, body)
        } else if pick < 82 {
            let start = T0 + rng.gen_range(0..SPAN_H * HOUR_US);
            let end = start + rng.gen_range(1..30 * HOUR_US);
            let body = if rng.gen_bool(0.15) {
                None
            } else {
                let kind = kinds[rng.gen_range(0..kinds.len())];
                let attendance = if kind == EventKind::Sport && rng.gen_bool(0.5) {
                    rng.gen_range(20_000..80_000)
                } else {
                    rng.gen_range(0..1200)
                };
                Some(Body::Event {
                    zone,
                    start,
                    end,
                    attendance: F64(attendance as f64),
                    kind,
                })
            };
            (
                Feed::Event,
                Some(format!("e{}", rng.gen_range(0..60))),
                body,
            )
        } else if pick < 90 {
            let kind = if rng.gen_bool(0.5) {
                WeatherKind::Observed
            } else {
                WeatherKind::Forecast
            };
            let opt = |rng: &mut StdRng, lo: i32, hi: i32| {
                if rng.gen_bool(0.8) {
                    Some(F64(rng.gen_range(lo..hi) as f64))
                } else {
                    None
                }
            };
            let body = Body::Weather {
                kind,
                issued_at: if rng.gen_bool(0.8) {
                    Some(ts - rng.gen_range(0..5) * HOUR_US)
                } else {
                    None
                },
                temperature_c: opt(&mut rng, 10, 40),
                precip_mm: opt(&mut rng, 0, 5),
                wind_kmh: opt(&mut rng, 20, 90),
            };
            (Feed::Weather, None, Some(body))
        } else {
            let start = T0 + rng.gen_range(0..SPAN_H * HOUR_US);
            let end = start + rng.gen_range(0..12 * HOUR_US);
            let body = if rng.gen_bool(0.1) {
                None
            } else {
                Some(Body::Deployment {
                    zone,
                    start,
                    end,
                    agents: rng.gen_range(0..6),
                })
            };
            (
                Feed::Deployment,
                Some(format!("p{}", rng.gen_range(0..15))),
                body,
            )
        };
        out.push(Record {
            feed,
            ts,
            seq: i as u64,
            id,
            body,
        });
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300)
}

fn same_row(a: &IndicatorRow, b: &IndicatorRow) -> bool {
    let floats = |r: &IndicatorRow| {
        let v2 = r.v2.as_ref();
        let opt = |f: Option<F64>| f.map_or(f64::NAN, F64::get);
        [
            r.risk_score.0,
            r.protection_rate.0,
            r.crowd.0,
            r.load.0,
            r.baseline.0,
            r.recent.0,
            r.events.0,
            r.weather.0,
            opt(v2.map(|v| v.exposure)),
            opt(v2.map(|v| v.spill)),
            opt(v2.map(|v| v.surge)),
            opt(v2.and_then(|v| v.traffic)),
            opt(v2.and_then(|v| v.fluidity)),
        ]
    };
    let discrete = |r: &IndicatorRow| {
        r.v2.as_ref().map(|v| {
            (
                v.calls,
                v.criticality,
                v.fluidity_level,
                v.load_trend,
                v.fluidity_trend,
                v.missing,
            )
        })
    };
    (
        a.zone,
        a.hour,
        a.risk_level,
        a.required_agents,
        a.deployed_agents,
        a.trend,
        a.incidents,
        a.demonstration,
    ) == (
        b.zone,
        b.hour,
        b.risk_level,
        b.required_agents,
        b.deployed_agents,
        b.trend,
        b.incidents,
        b.demonstration,
    ) && discrete(a) == discrete(b)
        && floats(a)
            .iter()
            .zip(floats(b))
            .all(|(x, y)| close(*x, y) || (x.is_nan() && y.is_nan()))
}

fn assert_matches(
    got: &[IndicatorRow],
    got_clashes: &[ClashRow],
    records: &[Record],
    context: &str,
) {
    assert_matches_with(&params(), got, got_clashes, records, context)
}

fn assert_matches_with(
    p: &GraphParams,
    got: &[IndicatorRow],
    got_clashes: &[ClashRow],
    records: &[Record],
    context: &str,
) {
    let want = reference::compute(records, &zones(), &p.model, &p.calendar);
    let mut want_rows = want.indicators.clone();
    want_rows.sort_by_key(|r| (r.zone, r.hour));
    assert_eq!(
        got.len(),
        want_rows.len(),
        "{context}: number of indicator rows"
    );
    for (g, w) in got.iter().zip(&want_rows) {
        assert!(same_row(g, w), "{context}: engine {g:?}\n reference {w:?}");
    }
    let mut want_clashes = want.clashes;
    want_clashes.sort();
    assert_eq!(got_clashes, &want_clashes[..], "{context}: clashes");
}

/// Runs the records through one worker in epochs of random sizes, checking every epoch.
fn check_every_epoch(p: GraphParams, seed: u64, n: usize) -> (u64, usize) {
    let records = random_records(seed, n);
    timely::execute_directly(move |worker| {
        let mut driver = Driver::new(worker, &p);
        driver.collected.borrow_mut().track_changes();
        // What a sink fed only with the drained changes holds.
        let mut mirror: std::collections::BTreeMap<(u32, i64), IndicatorRow> = Default::default();
        let mut mirror_clashes: std::collections::BTreeSet<ClashRow> = Default::default();
        let mut rng = StdRng::seed_from_u64(seed ^ 0xabc);
        let mut fed = 0;
        let mut clashes_seen = 0;
        while fed < records.len() {
            let size = rng.gen_range(1..=60).min(records.len() - fed);
            for r in &records[fed..fed + size] {
                driver.insert(r.clone());
            }
            fed += size;
            let epoch = driver.advance();
            driver.wait(worker, epoch);
            let changes = driver.collected.borrow_mut().drain();
            for (old, new) in changes.indicators {
                let key = (new.zone, new.hour);
                let had = mirror.insert(key, new.clone());
                if let Some(old) = old {
                    assert_eq!(
                        had.as_ref(),
                        Some(&old),
                        "seed {seed}: the old row handed out"
                    );
                    assert_ne!(old, new, "seed {seed}: a change that is none");
                }
            }
            for (c, appeared) in changes.clashes {
                assert_eq!(
                    mirror_clashes.insert(c.clone()),
                    appeared,
                    "seed {seed}: clash {c:?}"
                );
                if !appeared {
                    mirror_clashes.remove(&c);
                }
            }
            let c = driver.collected.borrow();
            for row in c.indicator_rows() {
                assert_eq!(
                    mirror.get(&(row.zone, row.hour)),
                    Some(&row),
                    "seed {seed}: a row the sink missed"
                );
            }
            assert_eq!(
                mirror_clashes.iter().cloned().collect::<Vec<_>>(),
                c.clash_rows(),
                "seed {seed}: clashes the sink holds"
            );
            clashes_seen = clashes_seen.max(c.clash_rows().len());
            assert_matches_with(
                &p,
                &c.indicator_rows(),
                &c.clash_rows(),
                &records[..fed],
                &format!("seed {seed}, after {fed} records"),
            );
        }
        (driver.retired, clashes_seen)
    })
}

#[test]
fn incremental_output_equals_recomputation_at_every_epoch() {
    let mut retired = 0;
    let mut clashes = 0;
    for seed in 0..12 {
        let model =
            [model(), long_horizon(), v1(model()), v1(long_horizon())][seed as usize % 4].clone();
        let (r, c) = check_every_epoch(params_with(model), seed, 1500);
        retired += r;
        clashes += c;
    }
    // The streams must exercise what they claim to: expiry and clashes happened.
    assert!(retired > 1000, "only {retired} records were retired");
    assert!(clashes > 10, "only {clashes} clashes");
}

/// Runs the records on `workers` threads, in batches of `batch`, and returns the final output
/// as collected on worker 0.
fn run(records: Vec<Record>, batch: usize, workers: usize) -> (Vec<IndicatorRow>, Vec<ClashRow>) {
    run_with(records, batch, workers, false)
}

/// As [`run`]; with `final_only`, the output is collected as it arrives
/// ([`vigie_engine::driver::Collected::final_only`]) and read once the inputs are closed and the
/// output complete.
fn run_with(
    records: Vec<Record>,
    batch: usize,
    workers: usize,
    final_only: bool,
) -> (Vec<IndicatorRow>, Vec<ClashRow>) {
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let mut driver = Driver::new(worker, &params());
        if final_only {
            driver.collected.borrow_mut().final_only();
        }
        let mine: Vec<Record> = records
            .iter()
            .enumerate()
            .filter(|(i, _)| i % peers == index)
            .map(|(_, r)| r.clone())
            .collect();
        for chunk in mine.chunks(batch) {
            for r in chunk {
                driver.insert(r.clone());
            }
            if final_only {
                driver.advance();
                worker.step();
            } else {
                let epoch = driver.advance();
                driver.wait(worker, epoch);
            }
        }
        if final_only {
            driver.close();
            worker.step_while(|| !driver.finished());
        } else {
            // Workers with fewer chunks keep stepping until everyone is done.
            driver.advance();
        }
        drop(mine);
        let c = driver.collected.borrow();
        let out = (c.indicator_rows(), c.clash_rows());
        drop(c);
        out
    })
    .expect("timely runs");
    let mut results = guards.join().into_iter().map(|r| r.expect("worker ran"));
    results.next().expect("worker 0")
}

#[test]
fn final_output_is_independent_of_order_batching_and_workers() {
    let records = random_records(42, 4000);
    let reference_run = run(records.clone(), 10_000, 1);
    let mut shuffled = records.clone();
    shuffled.shuffle(&mut StdRng::seed_from_u64(7));
    assert!(
        !reference_run.0.is_empty() && !reference_run.1.is_empty(),
        "{} rows, {} clashes",
        reference_run.0.len(),
        reference_run.1.len()
    );
    assert_eq!(run(shuffled.clone(), 10_000, 1), reference_run, "shuffled");
    assert_eq!(run(records.clone(), 1, 1), reference_run, "batches of 1");
    assert_eq!(run(shuffled.clone(), 97, 2), reference_run, "two workers");
    assert_eq!(
        run(records.clone(), 1, 2),
        reference_run,
        "two workers, batches of 1"
    );
    assert_matches(&reference_run.0, &reference_run.1, &records, "final");
    // The stream exercises every part of model v2.
    let v2: Vec<&vigie_model::RowV2> = reference_run
        .0
        .iter()
        .filter_map(|r| r.v2.as_ref())
        .collect();
    let count = |f: &dyn Fn(&vigie_model::RowV2) -> bool| v2.iter().filter(|v| f(v)).count();
    use vigie_model::Missing;
    for (what, n) in [
        ("calls", count(&|v| v.calls > 0)),
        ("spill", count(&|v| v.spill.0 > 0.0)),
        ("surge", count(&|v| v.surge.0 > 0.0)),
        (
            "exposure beyond spill and surge",
            count(&|v| v.exposure.0 > v.spill.0 + v.surge.0),
        ),
        ("fluidity", count(&|v| v.fluidity.is_some())),
        (
            "traffic without fluidity",
            count(&|v| v.traffic.is_some() && v.fluidity.is_none()),
        ),
        ("fluidity trend", count(&|v| v.fluidity_trend.is_some())),
        ("criticality 4", count(&|v| v.criticality == 4)),
        ("criticality 1", count(&|v| v.criticality == 1)),
        (
            "missing density",
            count(&|v| v.missing.has(Missing::DENSITY)),
        ),
        (
            "missing incident",
            count(&|v| v.missing.has(Missing::INCIDENT)),
        ),
        (
            "missing weather",
            count(&|v| v.missing.has(Missing::WEATHER)),
        ),
        (
            "high confidence",
            count(&|v| v.missing == Missing::default()),
        ),
    ] {
        assert!(n > 0, "no row with {what}");
    }
    // Collected as it arrives, without waiting for each epoch: the same once complete.
    assert_eq!(
        run_with(shuffled.clone(), 97, 1, true),
        reference_run,
        "final only"
    );
    assert_eq!(
        run_with(records.clone(), 500, 2, true),
        reference_run,
        "final only, two workers"
    );
}

/// What `vigie query explain` recomputes from the records behind one zone and hour
/// (`vigie_queries::explain`) against the reference: for every zone and hour of the horizon,
/// every figure it recomputes — v1's contributions and crowd, and under v2 calls, exposure,
/// spill, surge, traffic, fluidity and its level, the missing inputs — is the reference's.
#[test]
fn explain_recomputes_the_reference_figures_of_every_zone_and_hour() {
    use std::collections::BTreeMap;
    use vigie_model::point::{indicator_values, row_fields};
    use vigie_queries::explain::{records_behind, Typical};
    for (seed, m) in [(3, model()), (4, long_horizon()), (5, v1(model()))] {
        let records = random_records(seed, 1500);
        let config = vigie_config::Config {
            zones: zones(),
            model: m,
            timezone: chrono_tz::Europe::Paris,
            ..vigie_config::Config::embedded_default()
        };
        let calendar = Calendar::new(config.timezone);
        let want = reference::compute(&records, &config.zones, &config.model, &calendar);
        let clock = vigie_model::time::hour_of(reference::replay_clock(&records).unwrap());
        let counted = reference::counted(&records);
        // How often each part of v2 was exercised: spill, surge, calls, observed traffic,
        // typical traffic only, typical crowd from densities, a missing density.
        let mut seen = [0usize; 7];
        for row in &want.indicators {
            let ev = records_behind(&counted, row.zone, row.hour, clock, &config);
            let re = ev.recompute(&config);
            let stored: BTreeMap<&str, f64> = row_fields(row)
                .iter()
                .copied()
                .zip(indicator_values(row))
                .filter(|(_, v)| !v.is_nan())
                .collect();
            let differ = re.differences(&stored);
            assert!(
                differ.is_empty(),
                "seed {seed}, zone {} hour {}: (field, explained, reference) {differ:?}",
                row.zone,
                row.hour
            );
            if let Some(v2) = &re.v2 {
                let parts = [
                    v2.spill > 0.0,
                    v2.surge > 0.0,
                    v2.calls > 0,
                    v2.traffic_observed.is_some(),
                    v2.traffic_observed.is_none() && v2.traffic.is_some(),
                    matches!(re.typical_origin, Typical::Observed(_)),
                    v2.missing.has(vigie_model::Missing::DENSITY),
                ];
                for (n, p) in seen.iter_mut().zip(parts) {
                    *n += p as usize;
                }
            } else {
                assert!(!stored.contains_key("calls"));
            }
        }
        if config.model.v2() {
            assert!(
                seen.iter().all(|n| *n > 0),
                "seed {seed}: exercised {seen:?}"
            );
        }
    }
}
