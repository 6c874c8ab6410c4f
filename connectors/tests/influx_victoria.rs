//! The InfluxDB 2 sink against a real VictoriaMetrics (Debian's `victoria-metrics`, 1.79),
//! which serves InfluxDB 2's write API at `/api/v2/write`. Each test starts its own server on a
//! free loopback port with a data directory of its own, and kills it at the end (a guard).
//! What vigie wrote is read back through `/api/v1/export` (one JSON line per series: the name
//! is `measurement_field`, the labels are the tags; VictoriaMetrics adds no label for the
//! bucket or org of a v2 write).
//!
//! What VictoriaMetrics 1.79 does, and the flags chosen for it:
//!
//! - `-dedup.minScrapeInterval=1ms`: it stores every sample it receives, so a batch re-sent
//!   after an outage or a restart (at-least-once delivery) would be stored twice. With this
//!   flag it keeps one sample per series and millisecond, at query time and in its merges.
//!   Re-sent samples carry the same value as the first copy, so which copy it keeps does not
//!   matter. It does NOT make a later revision of a (series, timestamp) win: among samples of
//!   equal timestamp 1.79 keeps an arbitrary one (we saw an older revision kept for 3 series of
//!   6 after a merge); the tests therefore write each (series, timestamp) with one value only.
//! - `-search.latencyOffset=0s` and `-search.disableCache`: fresh samples are readable as soon
//!   as they leave its in-memory buffer (about a second), and no stale cached answer hides them.
//! - It stores values as decimals of about 12 significant digits, with one exponent for a
//!   block of a series' samples: `5.424263759153769` reads back as `5.424263759153`, `-0.0` as
//!   `0`, subnormals as `0`, `f64::MAX` with its last digit lost, and `99.99` as `0` in a series
//!   that also holds `1e300`. The values below are ones it keeps exactly (`0.1`, `1e-300`,
//!   `1e300`, `2^53`, …), each series within one magnitude, and they are compared bit for bit.
//!   (vigie writes every value exactly: the encoder's tests check that.)
//! - It acknowledges a write (204) before the samples reach its disk (an in-memory buffer of
//!   about a second), so a SIGKILL can lose acknowledged samples, which no client can resend.
//!   The outage tests stop it with SIGTERM, on which it writes that buffer out.
//!
//! - It ignores samples more than two days ahead of its clock (and before its retention), yet
//!   answers 204: only its counter `vm_rows_ignored_total` at `/metrics` says so. vigie's
//!   data model (`docs/tsdb.md`) stamps points at their revision, never ahead; the sink counts
//!   what the server ignored from that counter (the last test).
//!
//! If the binary is missing the tests fail: `tests/run` installs it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use vigie_config::InfluxConfig;
use vigie_connectors::influx::{InfluxError, InfluxSink};
use vigie_model::Point;

#[path = "../../tests/support/victoria.rs"]
mod victoria;
use victoria::{free_port, get, Vm};

/// A series as the export names it: metric name and labels.
type SeriesKey = (String, BTreeMap<String, String>);
/// Every series with its samples: timestamp → value bits.
type Dump = BTreeMap<SeriesKey, BTreeMap<i64, u64>>;

/// Everything the server holds. Panics on two samples of one series and timestamp with
/// different values (a duplicate that changes a value); equal duplicates are counted.
fn export(port: u16) -> (Dump, usize) {
    let (code, body) = get(
        port,
        "/api/v1/export?match%5B%5D=%7B__name__%3D~%22.%2B%22%7D",
    )
    .expect("the export answers");
    assert_eq!(code, 200, "{body}");
    let mut dump = Dump::new();
    let mut dups = 0;
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect(line);
        let mut labels: BTreeMap<String, String> = v["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let name = labels.remove("__name__").unwrap();
        let series = dump.entry((name, labels)).or_default();
        let values = v["values"].as_array().unwrap();
        let times = v["timestamps"].as_array().unwrap();
        for (t, x) in times.iter().zip(values) {
            let x = x.as_f64().unwrap_or_else(|| panic!("a number: {x}"));
            if let Some(old) = series.insert(t.as_i64().unwrap(), x.to_bits()) {
                assert_eq!(old, x.to_bits(), "two values for one timestamp: {line}");
                dups += 1;
            }
        }
    }
    (dump, dups)
}

/// What the server should hold after `points` (each series and timestamp written once).
fn expected(points: &[Point]) -> Dump {
    let mut dump = Dump::new();
    for p in points {
        let labels: BTreeMap<String, String> = p
            .tags
            .iter()
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            .cloned()
            .collect();
        for (f, v) in &p.fields {
            if v.is_finite() {
                let key = (format!("{}_{f}", p.measurement), labels.clone());
                let old = dump.entry(key).or_default().insert(p.ts_ms, v.to_bits());
                assert!(old.is_none(), "test data must not revise a sample");
            }
        }
    }
    dump
}

/// Waits until the server holds exactly `want` (its in-memory buffer takes about a second to
/// become readable), then checks it holds no duplicate.
fn assert_holds_exactly(port: u16, want: &Dump) {
    let t0 = Instant::now();
    loop {
        let (got, dups) = export(port);
        if &got == want {
            assert_eq!(dups, 0, "duplicates of equal value survived deduplication");
            return;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let missing: Vec<_> = want
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(*v))
                .take(5)
                .map(|(k, v)| {
                    format!(
                        "{k:?}: want {:?} got {:?}",
                        decode(v),
                        got.get(k).map(decode)
                    )
                })
                .collect();
            let extra: Vec<_> = got
                .keys()
                .filter(|k| !want.contains_key(*k))
                .take(5)
                .collect();
            panic!(
                "the server holds {} series, want {}; differing (first 5): {missing:#?}; extra: {extra:?}",
                got.len(),
                want.len()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn decode(series: &BTreeMap<i64, u64>) -> Vec<(i64, f64)> {
    series
        .iter()
        .map(|(t, b)| (*t, f64::from_bits(*b)))
        .collect()
}

/// Values VictoriaMetrics keeps exactly (see the module's doc), awkward for a float printer,
/// in series of one magnitude each: it stores a block of one series' values as decimals with a
/// common exponent, so `99.99` in a series that also holds `1e300` reads back as `0`.
const MODERATE: [f64; 9] = [0.1, 3.0, 0.25, 123.456, -42.0, 99.99, 0.0, 5.5, 0.001];
const BIG_INTS: [f64; 3] = [9007199254740992.0, 9007199254740991.0, 4503599627370497.0];

/// Tag values that need escaping.
const TAGS: [&str; 6] = [
    "Belle de Mai",
    "a,b=c",
    "back\\slash",
    "trailing\\",
    "é ü 漢",
    "plain",
];

/// Batch `b` of `n` points: distinct timestamps across batches, so no sample is revised.
fn batch(b: usize, n: usize) -> Vec<Point> {
    const BASE: i64 = 1_600_000_000_000; // 2020-09-13
    (0..n)
        .map(|i| {
            let k = b * 10_000 + i;
            Point::new(
                "indicator",
                vec![
                    ("zone".into(), format!("z{}", i % 7)),
                    ("quartier".into(), TAGS[k % TAGS.len()].into()),
                ],
                {
                    let mut fields = vec![
                        ("risk_score".to_string(), MODERATE[k % MODERATE.len()]),
                        ("risk_level".to_string(), (k % 4 + 1) as f64),
                    ];
                    if k.is_multiple_of(3) {
                        fields.push(("tiny".into(), 1e-300));
                        fields.push(("huge".into(), 1e300));
                        fields.push(("big_int".into(), BIG_INTS[k % BIG_INTS.len()]));
                        fields.push(("small".into(), -1.5e-7));
                        fields.push(("e22".into(), 1e22));
                    }
                    fields
                },
                BASE + k as i64 * 60_000,
            )
        })
        .collect()
}

fn config(port: u16, buffer: &Path) -> InfluxConfig {
    let mut c = InfluxConfig::new(&format!("http://127.0.0.1:{port}"), "city", "vigie");
    c.buffer_dir = buffer.to_path_buf();
    c.batch_points = 40;
    c.batch_ms = 30;
    c.retry_min_ms = 20;
    c.retry_max_ms = 200;
    c.timeout_ms = 2_000;
    c
}

const FLUSH: Duration = Duration::from_secs(30);

#[test]
fn what_vigie_writes_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let vm = Vm::start(&dir.path().join("vm"), port);
    let mut cfg = config(port, &dir.path().join("buffer"));
    std::env::set_var("VIGIE_TEST_INFLUX_TOKEN_1", "s3cret-t0ken");
    cfg.token_env = Some("VIGIE_TEST_INFLUX_TOKEN_1".into());
    let sink = InfluxSink::start(&cfg).unwrap();

    let mut sent = Vec::new();
    for b in 0..5 {
        let points = batch(b, 60);
        sink.send(points.clone()).unwrap();
        sent.extend(points);
    }
    // Names that need escaping, a field that cannot be written, an empty tag, a point left
    // with no field.
    let odd = vec![
        Point::new(
            "m x,y",
            vec![
                ("k ,=".into(), "v ,=\\".into()),
                ("empty".into(), String::new()),
            ],
            vec![
                ("f x,=".into(), 0.1),
                ("nan".into(), f64::NAN),
                ("big".into(), 1e300),
                ("small".into(), 1e-300),
            ],
            1_600_000_000_000,
        ),
        Point::new(
            "gone",
            vec![],
            vec![("inf".into(), f64::INFINITY)],
            1_600_000_000_000,
        ),
    ];
    sink.send_durable(odd.clone()).unwrap();
    sent.extend(odd);

    let report = sink.flush(FLUSH).unwrap();
    assert!(report.complete, "{report:?} {:?}", sink.stats());
    let stats = sink.stats();
    assert_eq!(stats.points_buffered, 301);
    assert_eq!(stats.points_confirmed, 301);
    assert_eq!(stats.unconfirmed_points, 0);
    assert_eq!(stats.points_rejected, 0);
    assert_eq!(
        (
            stats.skipped.skipped_points,
            stats.skipped.skipped_fields,
            stats.skipped.skipped_tags
        ),
        (1, 2, 1)
    );
    assert!(stats.requests >= 8, "{stats:?}");
    // The token is in no Debug output.
    for text in [
        format!("{sink:?}"),
        format!("{stats:?}"),
        format!("{cfg:?}"),
    ] {
        assert!(!text.contains("s3cret"), "{text}");
    }
    assert_holds_exactly(vm.port, &expected(&sent));
    let (report, _) = sink.close(FLUSH).unwrap();
    assert!(report.complete);
}

#[test]
fn an_outage_of_the_server_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut vm = Vm::start(&dir.path().join("vm"), port);
    let sink = InfluxSink::start(&config(port, &dir.path().join("buffer"))).unwrap();

    let mut sent = Vec::new();
    for b in 0..30 {
        if b == 10 {
            // The server goes down mid-stream; vigie keeps sending.
            vm.stop();
        }
        if b == 25 {
            let stats = sink.stats();
            assert!(
                stats.retries > 0,
                "writes failed while the server was down: {stats:?}"
            );
            assert!(stats.unconfirmed_points > 0, "{stats:?}");
            assert!(stats.last_error.is_some());
            vm.restart();
        }
        let points = batch(b, 25);
        sink.send(points.clone()).unwrap();
        sent.extend(points);
        std::thread::sleep(Duration::from_millis(25));
    }
    let report = sink.flush(FLUSH).unwrap();
    assert!(report.complete, "{report:?} {:?}", sink.stats());
    let stats = sink.stats();
    assert_eq!(stats.points_confirmed, 750, "{stats:?}");
    assert_holds_exactly(vm.port, &expected(&sent));
}

#[test]
fn a_restarted_sink_resends_what_was_not_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = dir.path().join("buffer");
    let port = free_port();
    let mut vm = Vm::start(&dir.path().join("vm"), port);
    let cfg = config(port, &buffer);

    let first = InfluxSink::start(&cfg).unwrap();
    let confirmed = batch(0, 50);
    first.send(confirmed.clone()).unwrap();
    assert!(first.flush(FLUSH).unwrap().complete);
    vm.stop();
    let unconfirmed = batch(1, 70);
    first.send_durable(unconfirmed.clone()).unwrap();
    let report = first.flush(Duration::from_millis(300)).unwrap();
    assert!(!report.complete);
    assert_eq!(report.unconfirmed_points, 70);
    // vigie stops without a flush while the server is down.
    drop(first);

    vm.restart();
    let second = InfluxSink::start(&cfg).unwrap();
    assert_eq!(second.stats().points_recovered, 70);
    let later = batch(2, 30);
    second.send(later.clone()).unwrap();
    let (report, stats) = second.close(FLUSH).unwrap();
    assert!(report.complete, "{report:?} {stats:?}");
    // Only what was not confirmed went again: 70 recovered + 30 new.
    assert_eq!(stats.points_confirmed, 100, "{stats:?}");
    let all: Vec<Point> = [confirmed, unconfirmed, later].concat();
    assert_holds_exactly(vm.port, &expected(&all));
}

#[test]
fn a_full_buffer_blocks_the_producer_until_the_server_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cfg = config(port, &dir.path().join("buffer"));
    cfg.buffer_max_bytes = 1 << 20;
    cfg.batch_points = 1000;
    // No server yet: fill the buffer.
    let sink = std::sync::Arc::new(InfluxSink::start(&cfg).unwrap());
    let mut sent = Vec::new();
    let mut b = 0;
    loop {
        let points = batch(b, 500);
        match sink.try_send(points.clone()) {
            Ok(()) => sent.extend(points),
            Err(InfluxError::Full(bytes)) => {
                assert!(bytes <= 1 << 20);
                break;
            }
            Err(e) => panic!("{e}"),
        }
        b += 1;
        assert!(b < 1000, "the buffer never filled");
    }
    // A blocking send waits for room…
    let blocked = batch(b, 500);
    let producer = {
        let sink = sink.clone();
        let points = blocked.clone();
        std::thread::spawn(move || sink.send(points))
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !producer.is_finished(),
        "send returned while the buffer was full"
    );
    assert_eq!(sink.stats().blocked_sends, 1);
    // …until the server comes and confirms.
    let vm = Vm::start(&dir.path().join("vm"), port);
    producer.join().unwrap().unwrap();
    sent.extend(blocked);
    assert!(sink.flush(FLUSH).unwrap().complete);
    let stats = sink.stats();
    assert!(stats.blocked >= Duration::from_millis(400), "{stats:?}");
    assert_eq!(stats.points_confirmed as usize, sent.len());
    assert_holds_exactly(vm.port, &expected(&sent));
}

/// VictoriaMetrics answers 204 to a write whose samples lie more than two days ahead, and
/// drops them; the sink reads the server's own counter (`vm_rows_ignored_total`) and counts
/// them, one per field.
#[test]
fn samples_the_server_ignores_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let vm = Vm::start(&dir.path().join("vm"), port);
    let sink = InfluxSink::start(&config(port, &dir.path().join("buffer"))).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let point = |zone: &str, fields: &[(&str, f64)], ts: i64| {
        Point::new(
            "m",
            vec![("zone".into(), zone.into())],
            fields.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ts,
        )
    };
    let day = 86_400_000;
    let kept = vec![
        point("a", &[("x", 1.0), ("y", 2.0)], now - 60_000),
        point("b", &[("x", 3.0)], now - day),
    ];
    let ahead = vec![
        point("c", &[("x", 4.0), ("y", 5.0), ("z", 6.0)], now + 3 * day),
        point("d", &[("x", 7.0)], now + 30 * day),
    ];
    sink.send([kept.clone(), ahead].concat()).unwrap();
    let report = sink.flush(FLUSH).unwrap();
    assert!(report.complete, "{report:?}");
    // All four points confirmed (204), four of their seven samples ignored: VictoriaMetrics
    // counts them a moment after it answered, and the sink reads its counter again then.
    let counted = |want: u64| {
        let t0 = Instant::now();
        while sink.stats().samples_ignored != Some(want) && t0.elapsed() < FLUSH {
            std::thread::sleep(Duration::from_millis(100));
        }
        sink.stats()
    };
    let stats = counted(4);
    assert_eq!(stats.points_confirmed, 4, "{stats:?}");
    assert_eq!(stats.samples_ignored, Some(4), "{stats:?}");
    assert_holds_exactly(vm.port, &expected(&kept));
    // A later write that is kept leaves the count as it was; closing reads it a last time.
    let more = vec![
        point("e", &[("x", 8.0)], now),
        point("f", &[("x", 9.0)], now + 5 * day),
    ];
    sink.send(more.clone()).unwrap();
    let (report, stats) = sink.close(FLUSH).unwrap();
    assert!(report.complete);
    assert_eq!(stats.samples_ignored, Some(5), "{stats:?}");
    assert_holds_exactly(vm.port, &expected(&[kept, more[..1].to_vec()].concat()));
}
