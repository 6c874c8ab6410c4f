//! End-to-end tests of the `vigie` binary: each starts the real program on real files.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "support/client.rs"]
mod client;
#[path = "support/mosquitto.rs"]
mod mosquitto;
#[path = "support/victoria.rs"]
mod victoria;
#[path = "support/vigie.rs"]
mod vigie;
use client::{free_port, metric, wait_for};
use vigie::{Setup, Vigie, SOURCE_TOKEN};

fn vigie() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigie"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The real data shipped in the repository (`data/README.md`).
fn data() -> PathBuf {
    repo().join("data")
}

/// The text of the one file in a zip archive of `data/`.
fn zipped_text(path: &Path) -> String {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut archive.by_index(0).unwrap(), &mut text).unwrap();
    text
}

fn run(cmd: &mut Command) -> (Output, String) {
    let out = cmd.output().expect("vigie starts");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

fn report_value(report: &str, key: &str) -> u64 {
    report
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(key)
                .map(|v| v.split_whitespace().next().unwrap_or("").parse::<u64>())
        })
        .unwrap_or_else(|| panic!("no {key} in report:\n{report}"))
        .unwrap_or_else(|e| panic!("{key}: {e}\n{report}"))
}

/// Asserts two outputs are the same set of lines, showing a few differences if not.
fn assert_same(got: &BTreeSet<String>, want: &BTreeSet<String>, what: &str) {
    if got != want {
        let missing: Vec<_> = want.difference(got).take(3).collect();
        let extra: Vec<_> = got.difference(want).take(3).collect();
        panic!(
            "{what}: {} lines vs {} expected\nmissing: {missing:#?}\nunexpected: {extra:#?}",
            got.len(),
            want.len()
        );
    }
}

fn lines(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_main_command_replays_the_embedded_sample() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.ndjson");
    let (out, report) = run(vigie().args(["replay", "--output"]).arg(&out_path));
    assert!(out.status.success(), "{report}");
    assert_eq!(report_value(&report, "records read:"), 2720, "{report}");
    assert_eq!(report_value(&report, "accepted:"), 2720);
    assert!(report.contains("p99.9"), "{report}");
    assert!(report.contains("peak memory"), "{report}");
    // 24 neighbourhoods × (168 + 1 + 720) hours.
    let rows = lines(&out_path);
    assert_eq!(rows.len(), 24 * 889);
    let first: serde_json::Value = serde_json::from_str(rows.iter().next().unwrap()).unwrap();
    for key in [
        "type",
        "zone",
        "hour",
        "risk_score",
        "risk_level",
        "protection_rate",
        "required_agents",
        "deployed_agents",
        "trend",
        "crowd",
        "load",
        "incidents",
        "contributions",
    ] {
        assert!(first.get(key).is_some(), "missing {key} in {first}");
    }
    // The sample's incidents show up: the Central Business District has some in its last week.
    let cbd_incidents: u64 = rows
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["zone"] == "Central Business District")
        .map(|v| v["incidents"].as_u64().unwrap())
        .sum();
    assert!(cbd_incidents > 50, "{cbd_incidents}");
}

#[test]
fn bad_lines_are_counted_with_their_line_and_the_good_ones_processed() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.ndjson");
    let good = |sev: u32, minute: u32| {
        format!(
            r#"{{"feed":"incident","ts":"2026-11-28T10:{minute:02}:00Z","zone":"13001","severity":{sev}}}"#
        )
    };
    let text = [
        good(2, 1),
        "{\"feed\":\"incident\",".to_string(),                                                         // 2 malformed
        r#"{"feed":"incident","ts":"2026-11-28T10:05:00Z","zone":"99999","severity":2}"#.into(),       // 3 unknown zone
        r#"{"feed":"incident","ts":"2026-11-28T10:06:00Z","zone":"13001"}"#.into(),                    // 4 missing severity
        r#"{"feed":"incident","ts":"2026-11-28T10:07:00Z","zone":"13001","severity":9}"#.into(),       // 5 out of range
        r#"{"feed":"event","ts":1,"id":"e","zone":"13001","start":100,"end":50,"attendance":1,"kind":"sport"}"#.into(), // 6 end before start
        r#"{"feed":"incident","ts":"2026-11-28T10:08:00Z","lat":48.85,"lon":2.35,"severity":2}"#.into(), // 7 Paris: outside Marseille
        good(3, 9),
        r#"{"feed":"incident","ts":"2026-11-28T10:10:00Z","lat":43.299,"lon":5.381,"severity":4}"#.into(), // 9 near the Canebière: 13001
        String::new(),
        "\u{0}\u{1}garbage".into(),                                                                    // 11 malformed
    ]
    .join("\n");
    std::fs::write(&input, text).unwrap();
    let out_path = dir.path().join("out.ndjson");
    let (out, report) = run(vigie()
        .arg("replay")
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&out_path));
    assert!(out.status.success(), "{report}");
    assert_eq!(report_value(&report, "accepted:"), 3, "{report}");
    assert_eq!(report_value(&report, "rejected:"), 7, "{report}");
    for (kind, n) in [
        ("malformed:", 2),
        ("unknown_zone:", 1),
        ("missing_field:", 1),
        ("invalid_field:", 1),
        ("end_before_start:", 1),
        ("outside_zones:", 1),
    ] {
        assert_eq!(report_value(&report, kind), n, "{kind}\n{report}");
    }
    for needle in [
        "line 2:",
        "line 3: field `zone`: unknown zone \"99999\"",
        "line 4: field `severity`",
        "line 5: field `severity`",
        "line 6: field `end`",
        "line 7: field `lat`",
        "line 11:",
    ] {
        assert!(report.contains(needle), "no {needle:?} in\n{report}");
    }
    let rows: Vec<serde_json::Value> = lines(&out_path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let hour = rows
        .iter()
        .find(|v| v["zone"] == "13001" && v["hour"] == "2026-11-28T10:00:00Z")
        .expect("the clock's hour");
    assert_eq!(hour["incidents"], 3);
    assert_eq!(hour["contributions"]["recent"], 9.0);
    assert_eq!(rows.len(), 16 * 889);

    // A line that is not UTF-8 is one rejection, not the end of the file; a byte-order mark
    // before the first record is not an error.
    let bytes_input = dir.path().join("bytes.ndjson");
    let mut bytes = b"\xef\xbb\xbf".to_vec();
    bytes.extend_from_slice(good(1, 20).as_bytes());
    bytes.extend_from_slice(b"\n{\"feed\":\"incident\",\xff\xfe}\n");
    bytes.extend_from_slice(good(1, 21).as_bytes());
    std::fs::write(&bytes_input, bytes).unwrap();
    let (out, report) = run(vigie().arg("replay").arg("--input").arg(&bytes_input));
    assert!(out.status.success(), "{report}");
    assert_eq!(report_value(&report, "accepted:"), 2, "{report}");
    assert!(report.contains("line 2: not UTF-8 text"), "{report}");
}

#[test]
fn a_missing_input_or_a_bad_config_is_an_error_that_names_it() {
    let (out, report) = run(vigie().args(["replay", "--input", "/nonexistent/records.ndjson"]));
    assert!(!out.status.success());
    assert!(report.contains("/nonexistent/records.ndjson"), "{report}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::copy(
        repo().join("config/zones/marseille.geojson"),
        dir.path().join("m.geojson"),
    )
    .unwrap();
    std::fs::write(&cfg, "zones = \"m.geojson\"\n[model]\nweeks = -1\n").unwrap();
    let (out, report) = run(vigie().arg("check-config").arg("--config").arg(&cfg));
    assert!(!out.status.success());
    assert!(report.contains("model.weeks"), "{report}");
    let (out, report) = run(vigie()
        .arg("check-config")
        .arg("--config")
        .arg(repo().join("config/default.toml")));
    assert!(out.status.success(), "{report}");
    assert!(report.contains("zones: 16 (16 with a polygon)"), "{report}");
    // What a run would refuse at start, check-config refuses too: a source's token in a
    // variable that is not set, a privacy key in a file that cannot be read.
    let unreadable = dir.path().join("no-such-key");
    std::fs::write(
        &cfg,
        format!(
            "zones = \"m.geojson\"\n[[sources]]\nname = \"sensors\"\nfeeds = [\"density\"]\n\
             token_env = \"VIGIE_E2E_NEVER_SET\"\n[privacy]\nkey_file = {:?}\n",
            unreadable.display().to_string()
        ),
    )
    .unwrap();
    let (out, report) = run(vigie()
        .arg("check-config")
        .arg("--config")
        .arg(&cfg)
        .env_remove("VIGIE_E2E_NEVER_SET"));
    assert!(!out.status.success(), "{report}");
    assert!(
        report.contains("a run would refuse 2")
            && report.contains("source sensors")
            && report.contains("VIGIE_E2E_NEVER_SET")
            && report.contains("no-such-key"),
        "{report}"
    );
    let (out, report) = run(vigie()
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0"])
        .env_remove("VIGIE_E2E_NEVER_SET"));
    assert!(!out.status.success(), "run refuses it too: {report}");
    assert!(
        report.contains("VIGIE_E2E_NEVER_SET") || report.contains("no-such-key"),
        "{report}"
    );
    // With the variable set and the key readable, both accept it.
    std::fs::write(
        &unreadable,
        "a-privacy-key-of-32-bytes-or-more-0123456789\n",
    )
    .unwrap();
    let (out, report) = run(vigie()
        .arg("check-config")
        .arg("--config")
        .arg(&cfg)
        .env("VIGIE_E2E_NEVER_SET", "sensors-token-0123456789"));
    assert!(out.status.success(), "{report}");
}

/// Records for the Marseille zones with no ties that arrival order would break, so that any
/// order of the lines gives the same result.
fn tie_free_records(seed: u64, n: usize) -> Vec<String> {
    tie_free_records_from(seed, n, 1_790_000_000) // 2026-09-21
}

/// [`tie_free_records`] over the 40 days from `t0` (seconds).
fn tie_free_records_from(seed: u64, n: usize, t0: i64) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let span = 40 * 86_400;
    let zones: Vec<String> = (1..=16).map(|i| format!("130{i:02}")).collect();
    let kinds = [
        "concert",
        "sport",
        "demonstration",
        "roadworks",
        "market",
        "festival",
    ];
    let mut out = Vec::new();
    let mut used_ts = BTreeSet::new();
    let mut weather_hours = 0i64;
    let mut unique_ts = |rng: &mut StdRng| loop {
        let t = t0 + rng.gen_range(0..span);
        if used_ts.insert(t) {
            return t;
        }
    };
    for i in 0..n {
        let zone = &zones[rng.gen_range(0..16)];
        let ts = unique_ts(&mut rng);
        let line = match rng.gen_range(0..100) {
            0..=49 => {
                let id = if rng.gen_bool(0.2) {
                    format!(r#","id":"inc-{}""#, rng.gen_range(0..200))
                } else {
                    String::new()
                };
                let status = if !id.is_empty() && rng.gen_bool(0.2) {
                    r#","status":"cancelled""#
                } else {
                    ""
                };
                format!(
                    r#"{{"feed":"incident","ts":{ts}{id}{status},"zone":"{zone}","severity":{}}}"#,
                    rng.gen_range(1..=5)
                )
            }
            50..=74 => {
                let sensor = ["", r#","sensor":"a""#, r#","sensor":"b""#][rng.gen_range(0..3)];
                format!(
                    r#"{{"feed":"density","ts":{ts},"zone":"{zone}","people":{}{sensor}}}"#,
                    rng.gen_range(0..5000)
                )
            }
            75..=86 => {
                let start = t0 + rng.gen_range(0..span);
                let end = start + rng.gen_range(0..200_000);
                let status = if rng.gen_bool(0.1) {
                    r#","status":"cancelled""#
                } else {
                    ""
                };
                format!(
                    r#"{{"feed":"event","ts":{ts},"id":"ev-{}"{status},"zone":"{zone}","start":{start},"end":{end},"attendance":{},"kind":"{}"}}"#,
                    rng.gen_range(0..400),
                    rng.gen_range(0..9000),
                    kinds[rng.gen_range(0..kinds.len())]
                )
            }
            87..=92 => {
                // At most one weather record per hour.
                let hour = t0 / 3600 * 3600 + weather_hours * 3600;
                weather_hours += 1;
                let kind = if i % 2 == 0 { "observed" } else { "forecast" };
                format!(
                    r#"{{"feed":"weather","ts":{hour},"kind":"{kind}","issued_at":{},"temperature_c":{},"wind_kmh":{},"precip_mm":{}}}"#,
                    hour - 7200,
                    rng.gen_range(5..40),
                    rng.gen_range(0..90),
                    rng.gen_range(0..5)
                )
            }
            _ => {
                let start = t0 + rng.gen_range(0..span);
                format!(
                    r#"{{"feed":"deployment","ts":{ts},"id":"dep-{}","zone":"{zone}","start":{start},"end":{},"agents":{}}}"#,
                    rng.gen_range(0..40),
                    start + rng.gen_range(0..30_000),
                    rng.gen_range(0..8)
                )
            }
        };
        out.push(line);
    }
    out
}

#[test]
fn the_same_output_for_any_order_batching_workers_and_processes() {
    let dir = tempfile::tempdir().unwrap();
    let records = tie_free_records(11, 6000);
    let input = dir.path().join("records.ndjson");
    std::fs::write(&input, records.join("\n")).unwrap();
    let mut shuffled = records.clone();
    shuffled.shuffle(&mut StdRng::seed_from_u64(3));
    let shuffled_input = dir.path().join("shuffled.ndjson");
    std::fs::write(&shuffled_input, shuffled.join("\n")).unwrap();

    let replay = |name: &str, input: &Path, extra: &[&str]| {
        let out_path = dir.path().join(format!("out-{name}.ndjson"));
        let (out, report) = run(vigie()
            .arg("replay")
            .arg("--input")
            .arg(input)
            .arg("--output")
            .arg(&out_path)
            .args(extra));
        assert!(out.status.success(), "{name}: {report}");
        assert_eq!(report_value(&report, "accepted:"), 6000, "{name}: {report}");
        lines(&out_path)
    };
    let baseline = replay("baseline", &input, &["--batch", "10000"]);
    assert!(
        baseline.iter().any(|l| l.contains("\"type\":\"clash\"")),
        "the workload should have clashes"
    );
    assert_same(
        &replay("shuffled", &shuffled_input, &["--batch", "10000"]),
        &baseline,
        "shuffled input",
    );
    assert_same(
        &replay("batch1", &input, &["--batch", "1"]),
        &baseline,
        "batches of 1",
    );
    assert_same(
        &replay(
            "workers2",
            &shuffled_input,
            &["--workers", "2", "--batch", "500"],
        ),
        &baseline,
        "2 workers",
    );

    // Two processes on loopback, from one host file.
    let hostfile = dir.path().join("hosts.txt");
    std::fs::write(
        &hostfile,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .unwrap();
    let out0 = dir.path().join("proc0.ndjson");
    let spawn = |i: usize| {
        let mut cmd = vigie();
        cmd.arg("replay")
            .arg("--input")
            .arg(&input)
            .args([
                "--batch",
                "700",
                "--processes",
                "2",
                "--process",
                &i.to_string(),
            ])
            .arg("--hostfile")
            .arg(&hostfile);
        if i == 0 {
            cmd.arg("--output").arg(&out0);
        }
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (p0, p1) = (spawn(0), spawn(1));
    let (o0, o1) = (
        p0.wait_with_output().unwrap(),
        p1.wait_with_output().unwrap(),
    );
    assert!(
        o0.status.success() && o1.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o0.stderr),
        String::from_utf8_lossy(&o1.stderr)
    );
    // Each process took its share of the lines.
    let accepted = |o: &Output| report_value(&String::from_utf8_lossy(&o.stdout), "accepted:");
    assert_eq!(accepted(&o0) + accepted(&o1), 6000);
    assert!(accepted(&o0) > 0 && accepted(&o1) > 0);
    assert_same(&lines(&out0), &baseline, "two processes");
}

/// The indicator line of `zone` at `hour` (RFC 3339) in an output file.
fn indicator_at(path: &Path, zone: &str, hour: &str) -> serde_json::Value {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["type"] == "indicator" && v["zone"] == zone && v["hour"] == hour)
        .unwrap_or_else(|| panic!("no row for {zone} at {hour} in {}", path.display()))
}

#[test]
fn the_shipped_mappings_replay_the_real_data() {
    let data = data();
    // Events, weather and traffic do not move the clock: those replays are given one.
    let cases = [
        (
            "vancouver.toml",
            "vancouver_crime",
            "vancouver_vpd_crime_2020.zip",
            37_000u64,
            None,
        ),
        (
            "chicago.toml",
            "chicago_events",
            "chicago_events_predicthq_2019-01_2021-03.zip",
            3_000,
            Some("2021-03-31T00:00:00Z"),
        ),
        (
            "i94.toml",
            "i94_weather",
            "metro_interstate_traffic_volume_i94.zip",
            48_000,
            Some("2018-09-30T23:00:00Z"),
        ),
        (
            "melbourne.toml",
            "melbourne_counts",
            "melbourne_pedestrian_counts_hourly_2013-12_2014-02.zip",
            66_960,
            None,
        ),
    ];
    for (cfg, mapping, file, min_accepted, clock) in cases {
        let dir = tempfile::tempdir().unwrap();
        let out_path = dir.path().join("out.ndjson");
        let mut cmd = vigie();
        cmd.arg("replay")
            .arg("--config")
            .arg(repo().join("config").join(cfg))
            .arg("--input")
            .arg(format!("{mapping}={}", data.join(file).display()))
            .arg("--output")
            .arg(&out_path);
        if let Some(c) = clock {
            cmd.args(["--clock", c]);
        }
        let (out, report) = run(&mut cmd);
        assert!(out.status.success(), "{cfg}: {report}");
        let accepted = report_value(&report, "accepted:");
        assert!(
            accepted >= min_accepted,
            "{cfg}: accepted {accepted}\n{report}"
        );
        if cfg == "chicago.toml" {
            // 3,282 events of the file have end == start: those in a zone (all but 12) take
            // their kind's default duration (chicago.toml) instead of being refused, as they
            // were before (1,106 accepted, 230 clashes). The 12 refused are outside the grid.
            assert_eq!(report_value(&report, "defaulted:"), 3_270, "{report}");
            assert_eq!(accepted, 4_376, "{report}");
            assert_eq!(report_value(&report, "rejected:"), 12, "{report}");
            assert_eq!(report_value(&report, "outside_zones:"), 12, "{report}");
            let clashes = lines(&out_path)
                .iter()
                .filter(|l| l.contains("\"type\":\"clash\""))
                .count();
            assert_eq!(clashes, 815, "Chicago's clashes, defaulted events included");
            // The Bulls against the Cavaliers, 2021-03-25 00:00Z, 2,409 people at the United
            // Center (chi-21), given in the file with end == start: a sport lasts 3 hours.
            let x = 2409.0 / 1000.0 * 0.12;
            for h in 0..4 {
                let hour = format!("2021-03-25T0{h}:00:00Z");
                let row = indicator_at(&out_path, "chi-21", &hour);
                let c = &row["contributions"];
                let (events, exposure) = if h < 3 { (2409.0, x) } else { (0.0, 0.0) };
                assert_eq!(c["events"].as_f64(), Some(events), "{row}");
                assert!(
                    (c["exposure"].as_f64().unwrap() - exposure).abs() < 1e-12,
                    "{row}"
                );
                // Its neighbours (the grid's touching cells) get a quarter of it.
                let n = indicator_at(&out_path, "chi-22", &hour);
                let spill = n["contributions"]["spill"].as_f64().unwrap();
                assert!((spill - 0.25 * exposure).abs() < 1e-12, "{n}");
            }
            // Without --clock, the same replay is refused: no incident or density moves it.
            let (out, text) = run(vigie()
                .arg("replay")
                .arg("--config")
                .arg(repo().join("config").join(cfg))
                .arg("--input")
                .arg(format!("{mapping}={}", data.join(file).display())));
            assert!(!out.status.success() && text.contains("--clock"), "{text}");
        }
        if cfg == "i94.toml" {
            // The same file as traffic: every hour's volume accepted.
            let (out, report) = run(vigie()
                .arg("replay")
                .arg("--config")
                .arg(repo().join("config").join(cfg))
                .arg("--input")
                .arg(format!("i94_traffic={}", data.join(file).display()))
                .args(["--clock", "2018-09-30T23:00:00Z"]));
            assert!(out.status.success(), "{report}");
            assert_eq!(report_value(&report, "accepted:"), 48_204, "{report}");
        }
        if cfg == "vancouver.toml" {
            // Five rows have no neighbourhood: a missing zone, with their line numbers.
            assert_eq!(report_value(&report, "missing_field:"), 5, "{report}");
            let rows = lines(&out_path);
            assert_eq!(rows.len(), 24 * 889);
        }
        if cfg == "melbourne.toml" {
            // Every count of the three months is placed by its sensor's position; the
            // horizon (the week before the last count, and 30 days on) holds White Night.
            assert_eq!(report_value(&report, "rejected:"), 0, "{report}");
            let rows: Vec<serde_json::Value> = lines(&out_path)
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(rows.len(), 9 * 889);
            // The busiest zone and hour: White Night, 22 February 2014 at 10 pm in Melbourne,
            // 39,667 people counted by the sensors of cell mel-12, over its capacity of 30,000.
            let busiest = rows
                .iter()
                .max_by(|a, b| {
                    a["crowd"]
                        .as_f64()
                        .unwrap()
                        .total_cmp(&b["crowd"].as_f64().unwrap())
                })
                .unwrap();
            assert_eq!(
                (busiest["zone"].as_str(), busiest["hour"].as_str()),
                (Some("mel-12"), Some("2014-02-22T11:00:00Z")),
                "{busiest}"
            );
            assert_eq!(busiest["crowd"].as_f64(), Some(39_667.0), "{busiest}");
            assert!(busiest["load"].as_f64().unwrap() > 1.0, "{busiest}");
        }
    }
}

/// The Milan telecom activity as crowd densities (`config/milan.toml`): every hour of the week
/// in the four grid squares becomes that square's observed crowd, `internet_traffic × 0.5`.
#[test]
fn the_milan_telecom_mapping_gives_crowds_from_real_activity() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.ndjson");
    let file = data().join("milan_telecom_4squares_hourly_2013-11-03_week.csv");
    let (out, report) = run(vigie()
        .arg("replay")
        .arg("--config")
        .arg(repo().join("config/milan.toml"))
        .arg("--input")
        .arg(format!("milan_telecom={}", file.display()))
        .arg("--output")
        .arg(&out_path));
    assert!(out.status.success(), "{report}");
    // 4 squares × 168 hours, every one accepted.
    assert_eq!(report_value(&report, "records read:"), 672, "{report}");
    assert_eq!(report_value(&report, "accepted:"), 672, "{report}");
    assert_eq!(report_value(&report, "rejected:"), 0, "{report}");
    let rows: std::collections::BTreeMap<(String, i64), serde_json::Value> = lines(&out_path)
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|r| {
            let key = (
                r["zone"].as_str().unwrap().to_string(),
                ms(r["hour"].as_str().unwrap()),
            );
            (key, r)
        })
        .collect();
    // The clock is the last hour of the week; the horizon, 168 hours back and 720 on, covers it.
    assert_eq!(rows.len(), 4 * 889);
    // Each row of the file: square_id, time, time_interval (Unix ms), internet_traffic, …
    let text = std::fs::read_to_string(&file).unwrap();
    let mut checked = 0;
    for line in text.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let (square, hour_ms) = (cells[0].to_string(), cells[2].parse::<i64>().unwrap());
        let activity: f64 = cells[3].parse().unwrap();
        let row = &rows[&(square.clone(), hour_ms)];
        let crowd = row["crowd"].as_f64().unwrap();
        assert!(
            (crowd - activity * 0.5).abs() <= 1e-9 * crowd.abs(),
            "square {square} at {}: crowd {crowd}, activity {activity}",
            cells[1]
        );
        checked += 1;
    }
    assert_eq!(checked, 672);
    // The busiest hour of square 5060: Tuesday 5 November 2013, 1 pm in Milan, 7,552.6 units of
    // internet activity, so 3,776.3 people, three quarters of the square's capacity of 5,000.
    let (busiest, row) = rows
        .iter()
        .filter(|((zone, _), _)| zone == "5060")
        .max_by(|a, b| {
            let crowd = |r: &serde_json::Value| r["crowd"].as_f64().unwrap();
            crowd(a.1).total_cmp(&crowd(b.1))
        })
        .unwrap();
    assert_eq!(busiest.1, ms("2013-11-05T12:00:00Z"), "{row}");
    let crowd = row["crowd"].as_f64().unwrap();
    assert!((crowd - 7_552.608_189_77 * 0.5).abs() < 1e-6, "{row}");
    assert!(
        (row["load"].as_f64().unwrap() - crowd / 5000.0).abs() < 1e-12,
        "{row}"
    );
}

/// Hourly volumes of the I-94 file by local time (`YYYY-MM-DD HH:MM:SS`, America/Chicago):
/// every row's volume, duplicated hours included.
fn i94_volumes() -> std::collections::BTreeMap<chrono::NaiveDateTime, Vec<f64>> {
    let text = zipped_text(&data().join("metro_interstate_traffic_volume_i94.zip"));
    let mut out = std::collections::BTreeMap::<_, Vec<f64>>::new();
    for line in text.lines().skip(1) {
        // No cell of the file is quoted: the time and the volume are the last two cells.
        let mut cells = line.rsplit(',');
        let volume: f64 = cells.next().unwrap().parse().unwrap();
        let t = chrono::NaiveDateTime::parse_from_str(cells.next().unwrap(), "%Y-%m-%d %H:%M:%S")
            .unwrap();
        out.entry(t).or_default().push(volume);
    }
    out
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// A replay whose records do not move the clock is refused, and `--clock` gives it one: the
/// I-94 traffic alone, with the corridor's road capacity, gives the fluidity of each hour from
/// the file's own volumes (BPR: `1 / (1 + 0.15 · (v/c)^4)`), and ahead of the file the
/// typical volume of the hour of the week.
#[test]
fn a_replay_needs_a_clock_and_takes_one_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.ndjson");
    let input = format!(
        "i94_traffic={}",
        data()
            .join("metro_interstate_traffic_volume_i94.zip")
            .display()
    );
    let replay = |clock: Option<&str>| {
        let mut cmd = vigie();
        cmd.arg("replay")
            .arg("--config")
            .arg(repo().join("config/i94.toml"))
            .args(["--input", &input])
            .arg("--output")
            .arg(&out_path);
        if let Some(c) = clock {
            cmd.args(["--clock", c]);
        }
        run(&mut cmd)
    };
    let (out, text) = replay(None);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("no clock") && text.contains("--clock TIME"),
        "{text}"
    );
    assert!(!out_path.exists(), "a refused replay writes no output");
    let (out, text) = replay(Some("yesterday"));
    assert!(
        !out.status.success() && text.contains("`yesterday` is not an RFC 3339 time"),
        "{text}"
    );

    let (out, text) = replay(Some("2018-09-30T23:00:00Z"));
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("clock hour:   2018-09-30T23:00:00Z (--clock)"),
        "{text}"
    );
    let zones: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("config/zones/i94.geojson")).unwrap(),
    )
    .unwrap();
    let c = zones["features"][0]["properties"]["road_capacity"]
        .as_f64()
        .expect("the corridor has a road capacity");
    let bpr = |v: f64| 1.0 / (1.0 + 0.15 * (v / c).powi(4));
    let level = |f: f64| match f {
        f if f >= 0.9 => 1,
        f if f >= 0.75 => 2,
        f if f >= 0.5 => 3,
        _ => 4,
    };
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&out_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 168 + 1 + 720, "one zone over the horizon");
    let check = |row: &serde_json::Value, traffic: f64| {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        assert!(close(row["traffic"].as_f64().unwrap(), traffic), "{row}");
        let f = bpr(traffic);
        assert!(close(row["fluidity"].as_f64().unwrap(), f), "{row}");
        assert_eq!(row["fluidity_level"].as_u64(), Some(level(f)), "{row}");
    };
    // The week before the clock, in daylight saving time (UTC−5): each hour's traffic is the
    // file's volume at that hour (the mean of a duplicated hour's rows).
    let volumes = i94_volumes();
    let mut checked = 0;
    let mut levels = BTreeSet::new();
    for row in &rows {
        let utc = chrono::DateTime::parse_from_rfc3339(row["hour"].as_str().unwrap()).unwrap();
        let local = utc.naive_utc() - chrono::Duration::hours(5);
        if let Some(v) = volumes.get(&local) {
            check(row, mean(v));
            levels.insert(row["fluidity_level"].as_u64().unwrap());
            checked += 1;
        }
    }
    assert!(checked >= 160, "{checked} hours of the file in the horizon");
    assert!(
        levels.len() >= 2,
        "rush hours and nights differ: levels {levels:?}"
    );
    // A day after the clock, beyond the file (Monday 2018-10-01, 18:00 local): the typical
    // traffic, the mean of the Mondays at 18:00 of the 52 weeks before the clock's week.
    let monday = chrono::NaiveDate::from_ymd_opt(2018, 10, 1)
        .unwrap()
        .and_hms_opt(18, 0, 0)
        .unwrap();
    let seen: Vec<f64> = (2..=53)
        .filter_map(|w| volumes.get(&(monday - chrono::Duration::weeks(w))))
        .map(|v| mean(v))
        .collect();
    assert!(seen.len() >= 40, "{} Mondays", seen.len());
    let row = rows
        .iter()
        .find(|r| r["hour"] == "2018-10-01T23:00:00Z")
        .unwrap();
    check(row, mean(&seen));
}

/// The binary against an independent implementation of the model in Python
/// (`tests/tools/indicators_reference.py`, written from the text alone), on generated records
/// with every feed, upserts, ties broken by arrival, cancellations, a change of clock time, and
/// for model v2 zones whose neighbours come from their polygons or their lists, road
/// capacities, silent feeds and hours without weather; under model 2 (the default) and 1.
#[test]
fn an_independent_python_implementation_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let tools = repo().join("tests/tools");
    let python = |args: &[&std::ffi::OsStr]| {
        let out = Command::new("python3")
            .args(args)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    for model in ["2", "1"] {
        let records = dir.path().join(format!("records-{model}.ndjson"));
        let zones = dir.path().join(format!("zones-{model}.geojson"));
        python(&[
            tools.join("gen_records.py").as_os_str(),
            "--model".as_ref(),
            model.as_ref(),
            "--seed".as_ref(),
            "5".as_ref(),
            "--n".as_ref(),
            "6000".as_ref(),
            "--out".as_ref(),
            records.as_os_str(),
            "--zones-out".as_ref(),
            zones.as_os_str(),
        ]);
        let config = dir.path().join(format!("config-{model}.toml"));
        std::fs::write(
            &config,
            format!(
                "timezone = \"Europe/Paris\"\nzones = \"zones-{model}.geojson\"\n[model]\nversion = {model}\nweeks = 4\npast_hours = 900\nfuture_hours = 300\n"
            ),
        )
        .unwrap();
        let expected = dir.path().join(format!("expected-{model}.ndjson"));
        python(&[
            tools.join("indicators_reference.py").as_os_str(),
            "--model".as_ref(),
            model.as_ref(),
            "--zones".as_ref(),
            zones.as_os_str(),
            "--tz".as_ref(),
            "Europe/Paris".as_ref(),
            "--records".as_ref(),
            records.as_os_str(),
            "--weeks".as_ref(),
            "4".as_ref(),
            "--past-hours".as_ref(),
            "900".as_ref(),
            "--future-hours".as_ref(),
            "300".as_ref(),
            "--out".as_ref(),
            expected.as_os_str(),
        ]);
        for (name, extra) in [
            ("one", vec![]),
            ("many", vec!["--workers", "2", "--batch", "37"]),
        ] {
            let actual = dir.path().join(format!("actual-{model}-{name}.ndjson"));
            let (out, report) = run(vigie()
                .arg("replay")
                .arg("--config")
                .arg(&config)
                .arg("--input")
                .arg(&records)
                .arg("--output")
                .arg(&actual)
                .args(&extra));
            assert!(out.status.success(), "{report}");
            assert!(
                report_value(&report, "rejected:") > 0,
                "the generator writes some invalid lines"
            );
            let cmp = Command::new("python3")
                .arg(tools.join("compare_outputs.py"))
                .arg(&expected)
                .arg(&actual)
                .output()
                .unwrap();
            assert!(
                cmp.status.success(),
                "model {model}, {name}: {}{}",
                String::from_utf8_lossy(&cmp.stdout),
                String::from_utf8_lossy(&cmp.stderr)
            );
        }
    }
}

/// Acknowledgements printed by `vigie replay --store`: (revision, last complete epoch; none
/// for the final one).
fn acks(stderr: &str) -> Vec<(i64, Option<u64>)> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("vigie: store acknowledged revision "))
        .map(|l| {
            let rev = l.split_whitespace().next().unwrap().parse().unwrap();
            let epoch = l
                .split("through epoch ")
                .nth(1)
                .map(|e| e.trim_end_matches(')').parse().unwrap());
            (rev, epoch)
        })
        .collect()
}

/// The indicator rows and clashes of an output file, as the store's series would hold them:
/// ((zone, hour ms), field → value) and (zone, a, b, reason, start ms).
type Figures = (
    std::collections::BTreeMap<(String, i64), std::collections::BTreeMap<String, f64>>,
    BTreeSet<(String, String, String, String, i64)>,
);

fn ms(rfc3339: &str) -> i64 {
    vigie_model::time::parse_ts_str(rfc3339).unwrap() / 1000
}

fn output_figures(path: &Path) -> Figures {
    let mut rows = std::collections::BTreeMap::new();
    let mut clashes = BTreeSet::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let s = |k: &str| v[k].as_str().unwrap().to_string();
        if v["type"] == "clash" {
            clashes.insert((s("zone"), s("a"), s("b"), s("reason"), ms(&s("start"))));
            continue;
        }
        let mut fields = std::collections::BTreeMap::new();
        // As the store writes them (vigie_model::point): trends −1, 0, 1; confidence 0, 1,
        // 2; missing a sum of flags; an undefined v2 figure (null) has no value.
        let v2 = v.get("criticality").is_some();
        let all = vigie_model::point::ALL_FIELDS;
        let fields_of = if v2 { &all[..] } else { &all[..14] };
        for f in fields_of {
            let x = match *f {
                "trend" | "load_trend" | "fluidity_trend" => match v[*f].as_str() {
                    Some("falling") => Some(-1.0),
                    Some("rising") => Some(1.0),
                    Some(_) => Some(0.0),
                    None => None,
                },
                "confidence" => ["low", "reduced", "high"]
                    .iter()
                    .position(|c| v["confidence"] == *c)
                    .map(|i| i as f64),
                "missing" => Some(
                    v["missing"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|m| match m.as_str().unwrap() {
                            "density" => 1.0,
                            "incident" => 2.0,
                            _ => 4.0,
                        })
                        .sum(),
                ),
                "baseline" | "recent" | "events" | "weather" | "demonstration" | "exposure"
                | "spill" | "surge" => v["contributions"][*f].as_f64(),
                _ => v[*f].as_f64(),
            };
            if let Some(x) = x {
                fields.insert(f.to_string(), x);
            }
        }
        // Model v2's fields, as the store keeps them (numbers; an undefined one absent).
        if v.get("criticality").is_some() {
            let trend = |t: &serde_json::Value| match t.as_str() {
                Some("falling") => Some(-1.0),
                Some("rising") => Some(1.0),
                Some(_) => Some(0.0),
                None => None,
            };
            let confidence = match v["confidence"].as_str().unwrap() {
                "low" => 0.0,
                "reduced" => 1.0,
                _ => 2.0,
            };
            let missing: f64 = v["missing"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| match m.as_str().unwrap() {
                    "density" => 1.0,
                    "incident" => 2.0,
                    _ => 4.0,
                })
                .sum();
            let c = &v["contributions"];
            for (f, x) in [
                ("calls", v["calls"].as_f64()),
                ("criticality", v["criticality"].as_f64()),
                ("traffic", v["traffic"].as_f64()),
                ("fluidity", v["fluidity"].as_f64()),
                ("fluidity_level", v["fluidity_level"].as_f64()),
                ("load_trend", trend(&v["load_trend"])),
                ("fluidity_trend", trend(&v["fluidity_trend"])),
                ("confidence", Some(confidence)),
                ("missing", Some(missing)),
                ("exposure", c["exposure"].as_f64()),
                ("spill", c["spill"].as_f64()),
                ("surge", c["surge"].as_f64()),
            ] {
                if let Some(x) = x {
                    fields.insert(f.to_string(), x);
                }
            }
        }
        rows.insert((s("zone"), ms(&s("hour"))), fields);
    }
    (rows, clashes)
}

/// What the store says about the rows of `want` and about clashes, as known at `as_of`.
fn store_figures(store: &vigie_store::Store, want: &Figures, as_of: Option<i64>) -> Figures {
    let mut rows = std::collections::BTreeMap::new();
    for (zone, hour) in want.0.keys() {
        let h = vigie_queries::read::zone_hour(store, zone, *hour, as_of)
            .unwrap()
            .map(|h| {
                h.values
                    .into_iter()
                    .filter(|(_, v)| !v.is_nan()) // a field that became undefined
                    .map(|(k, v)| (k.to_string(), v))
                    .collect()
            })
            .unwrap_or_default();
        rows.insert((zone.clone(), *hour), h);
    }
    let mut clashes = BTreeSet::new();
    for key in store.series("clash", &[], "active") {
        for (start, active) in store.range(&key, i64::MIN, i64::MAX, as_of).unwrap() {
            if active == 1.0 {
                let t = |k: &str| key.tag(k).unwrap().to_string();
                clashes.insert((t("zone"), t("a"), t("b"), t("reason"), start));
            }
        }
    }
    (rows, clashes)
}

#[test]
fn the_store_holds_each_figure_as_known_at_each_acknowledged_revision() {
    let dir = tempfile::tempdir().unwrap();
    let records = tie_free_records(21, 2400);
    let all = dir.path().join("all.ndjson");
    std::fs::write(&all, records.join("\n") + "\n").unwrap();
    let store_dir = dir.path().join("store");
    let final_out = dir.path().join("final.ndjson");
    let (out, text) = run(vigie()
        .args(["replay", "--batch", "300", "--store-flush-versions", "5000"])
        .arg("--input")
        .arg(&all)
        .arg("--store")
        .arg(&store_dir)
        .arg("--output")
        .arg(&final_out));
    assert!(out.status.success(), "{text}");
    let acks = acks(&text);
    assert!(acks.len() >= 4, "{text}");
    let (store, _) = vigie_store::Store::open(&store_dir, vigie_store::Options::default()).unwrap();
    // The latest revision of everything is the final output.
    let want = output_figures(&final_out);
    assert!(want.0.len() > 10_000 && !want.1.is_empty());
    assert_eq!(store_figures(&store, &want, None), want, "latest");
    // Each earlier revision is what a replay of the records of its complete epochs gives.
    let mut checked = 0;
    for &(rev, epoch) in &acks {
        let Some(epoch) = epoch else { continue };
        let n = ((epoch + 1) * 300) as usize;
        let prefix = dir.path().join(format!("prefix-{n}.ndjson"));
        std::fs::write(&prefix, records[..n].join("\n") + "\n").unwrap();
        let expected = dir.path().join(format!("expected-{n}.ndjson"));
        let (out, text) = run(vigie()
            .args(["replay", "--batch", "300"])
            .arg("--input")
            .arg(&prefix)
            .arg("--output")
            .arg(&expected));
        assert!(out.status.success(), "{text}");
        let want = output_figures(&expected);
        assert_eq!(
            store_figures(&store, &want, Some(rev)),
            want,
            "as known at revision {rev} (epoch {epoch}, {n} records)"
        );
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} revisions checked");
    // The query command reads the same store: the revisions of one figure end at its value.
    let (zone, hour) = want.0.keys().nth(want.0.len() / 2).unwrap().clone();
    let (out, text) = run(vigie()
        .args([
            "query",
            "revisions",
            "--zone",
            &zone,
            "--field",
            "risk_score",
            "--hour",
        ])
        .arg(vigie_model::time::format_ts(hour * 1000))
        .arg("--store")
        .arg(&store_dir));
    assert!(out.status.success(), "{text}");
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(
        last["value"].as_f64(),
        Some(want.0[&(zone, hour)]["risk_score"])
    );
}

#[test]
fn an_explanation_names_the_records_behind_a_figure_and_agrees_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let out_file = dir.path().join("out.ndjson");
    let (out, text) = run(vigie()
        .arg("replay")
        .arg("--store")
        .arg(&store_dir)
        .arg("--output")
        .arg(&out_file));
    assert!(out.status.success(), "{text}");
    // The busiest row of the embedded sample: the most recent incidents.
    let (rows, _) = output_figures(&out_file);
    let ((zone, hour), fields) = rows
        .iter()
        .max_by(|a, b| a.1["recent"].total_cmp(&b.1["recent"]))
        .unwrap();
    assert!(fields["recent"] > 0.0);
    let (out, text) = run(vigie()
        .args(["query", "explain", "--zone", zone, "--hour"])
        .arg(vigie_model::time::format_ts(hour * 1000))
        .arg("--store")
        .arg(&store_dir));
    assert!(out.status.success(), "{text}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["agree"], true, "{v}");
    let recent = v["records"]["recent"].as_array().unwrap();
    assert!(!recent.is_empty());
    for r in recent {
        assert_eq!(r["feed"], "incident");
        assert!(
            r["line"].as_u64().unwrap() >= 2,
            "a line of the CSV, after its header: {r}"
        );
    }
    assert_eq!(
        v["stored"]["risk_score"].as_f64(),
        Some(fields["risk_score"])
    );
    // Latest per zone: one line per zone of the sample, at the clock's hour.
    let (out, text) = run(vigie().args(["query", "latest", "--store"]).arg(&store_dir));
    assert!(out.status.success(), "{text}");
    let zones: BTreeSet<String> = rows.keys().map(|(z, _)| z.clone()).collect();
    assert_eq!(text.lines().count(), zones.len(), "{text}");
    // A bad step or an unknown zone is an error that names it.
    let (out, text) = run(vigie()
        .args(["query", "range", "--zone", zone, "--step", "5x", "--store"])
        .arg(&store_dir));
    assert!(
        !out.status.success() && text.contains("--step `5x`"),
        "{text}"
    );
}

/// Model v2's explanation: a match in the stadium zone spills into the zone that lists it as
/// a neighbour, cited by neighbour with its kind, rate and X; a crowd above its typical level
/// (from densities of the same hour in earlier weeks) makes a surge; calls count in `I`; a
/// zone's traffic counts give its fluidity; and every recomputed figure agrees with the store.
#[test]
fn an_explanation_under_model_v2_cites_the_events_densities_calls_and_traffic_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones.geojson");
    std::fs::write(
        &zones,
        r#"{"type":"FeatureCollection","features":[
{"type":"Feature","geometry":null,"properties":{"id":"stadium","capacity":19230,"scale":10,"min_agents":2,"max_agents":40,"default_density":1000,"road_capacity":4000,"neighbours":[]}},
{"type":"Feature","geometry":null,"properties":{"id":"north","capacity":5000,"scale":10,"min_agents":1,"max_agents":8,"default_density":500,"neighbours":["stadium"]}},
{"type":"Feature","geometry":null,"properties":{"id":"east","capacity":5000,"scale":10,"min_agents":1,"max_agents":8,"default_density":500,"road_capacity":2000,"neighbours":["stadium"]}}
]}"#,
    )
    .unwrap();
    let config = dir.path().join("city.toml");
    std::fs::write(
        &config,
        format!("zones = {:?}\n", zones.display().to_string()),
    )
    .unwrap();
    // H0: Sunday 2026-11-22 18:00Z; the match from H0 + 2 to H0 + 5.
    let h0 = 1_795_370_400 / 3600;
    let at = |h: i64, min: i64| (h * 3600 + min * 60).to_string();
    let week = 168;
    let m1 = format!(
        r#","id":"m1","start":{},"end":{},"attendance":80000,"kind":"sport""#,
        at(h0 + 2, 0),
        at(h0 + 5, 0)
    );
    // (feed, zone (none: city-wide), hour, minute, the other fields).
    let table: [(&str, &str, i64, i64, &str); 14] = [
        ("event", "stadium", h0 - 48, 0, &m1),
        // North: densities at H0 (two sensors) and at the same hour one and two weeks before.
        ("density", "north", h0, 5, r#","sensor":"a","people":3000"#),
        ("density", "north", h0, 10, r#","sensor":"b","people":1000"#),
        ("density", "north", h0 - week, 5, r#","people":600"#),
        ("density", "north", h0 - 2 * week, 5, r#","people":1000"#),
        ("call", "north", h0, 1, ""),
        ("call", "north", h0, 2, ""),
        ("call", "north", h0 - 1, 2, r#","id":"c7""#),
        ("incident", "north", h0, 30, r#","severity":3"#),
        // East: two counts of one counter at H0, one of another; one a week before.
        ("traffic", "east", h0, 0, r#","sensor":"s1","volume":1000"#),
        ("traffic", "east", h0, 30, r#","sensor":"s1","volume":1400"#),
        ("traffic", "east", h0, 40, r#","sensor":"s2","volume":500"#),
        ("traffic", "east", h0 - week, 0, r#","volume":900"#),
        (
            "weather",
            "",
            h0,
            0,
            r#","kind":"observed","temperature_c":12"#,
        ),
    ];
    let lines: Vec<String> = table
        .iter()
        .map(|(feed, zone, h, min, more)| {
            let zone = match *zone {
                "" => String::new(),
                z => format!(r#","zone":"{z}""#),
            };
            format!(r#"{{"feed":"{feed}","ts":{}{zone}{more}}}"#, at(*h, *min))
        })
        .collect();
    let records = dir.path().join("records.ndjson");
    std::fs::write(&records, lines.join("\n")).unwrap();
    let store_dir = dir.path().join("store");
    let (out, text) = run(vigie()
        .arg("replay")
        .arg("--config")
        .arg(&config)
        .arg("--input")
        .arg(&records)
        .arg("--store")
        .arg(&store_dir));
    assert!(out.status.success(), "{text}");
    let explain = |zone: &str, hour: i64| -> serde_json::Value {
        let (out, text) = run(vigie()
            .args(["query", "explain", "--zone", zone, "--hour", &at(hour, 0)])
            .arg("--store")
            .arg(&store_dir)
            .arg("--config")
            .arg(&config)
            .arg("--input")
            .arg(&records));
        assert!(out.status.success(), "{zone} at {hour}: {text}");
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["agree"], true, "{v}");
        v
    };
    let x = 80_000.0 / 1000.0 * 0.12;
    // The stadium during the match: its own event, with kind, rate and X.
    let v = explain("stadium", h0 + 3);
    let e = &v["v2"]["exposure"]["events"][0];
    assert_eq!(
        (&e["record"]["id"], &e["kind"], &e["rate"]),
        (
            &serde_json::json!("m1"),
            &serde_json::json!("sport"),
            &serde_json::json!(0.12)
        ),
        "{v}"
    );
    assert!((e["x"].as_f64().unwrap() - x).abs() < 1e-12, "{v}");
    assert!(
        (v["stored"]["exposure"].as_f64().unwrap() - x).abs() < 1e-12,
        "{v}"
    );
    // North at that hour: the spill, by neighbour, the match cited.
    let v = explain("north", h0 + 3);
    let spill = &v["v2"]["spill"];
    assert_eq!(spill["neighbours"][0]["zone"], "stadium", "{v}");
    assert_eq!(
        spill["neighbours"][0]["events"][0]["record"]["id"], "m1",
        "{v}"
    );
    assert!(
        (spill["spill"].as_f64().unwrap() - 0.25 * x).abs() < 1e-12,
        "{v}"
    );
    assert!(
        (v["stored"]["spill"].as_f64().unwrap() - 2.4).abs() < 1e-12,
        "{v}"
    );
    // North at H0: observed 4000 against a typical 800 (two earlier weeks): surge 0.16; the
    // two calls of the hour and the one before count in I (recent = 3 + 0.25 · 3).
    let v = explain("north", h0);
    let surge = &v["v2"]["surge"];
    assert_eq!(surge["densities"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(surge["observed"], 4000.0, "{v}");
    assert_eq!(surge["typical"]["origin"], "observed", "{v}");
    assert_eq!(
        surge["typical"]["hours"].as_array().unwrap().len(),
        2,
        "{v}"
    );
    assert!(
        (surge["surge"].as_f64().unwrap() - 0.05 * 3.2).abs() < 1e-12,
        "{v}"
    );
    let calls = &v["v2"]["calls"];
    assert_eq!(
        (
            calls["hour"].as_array().unwrap().len(),
            calls["recent"].as_array().unwrap().len()
        ),
        (2, 3),
        "{v}"
    );
    assert_eq!(v["recomputed"]["recent"], 3.75, "{v}");
    assert_eq!(v["v2"]["weather"]["present"], true, "{v}");
    // East at H0: counter s1's mean (1200) plus s2 (500); fluidity by BPR on 2000 vehicles/h.
    let v = explain("east", h0);
    let t = &v["v2"]["traffic"];
    assert_eq!(t["records"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(t["traffic"], 1700.0, "{v}");
    let f = 1.0 / (1.0 + 0.15 * (1700.0f64 / 2000.0).powi(4));
    assert!((t["fluidity"].as_f64().unwrap() - f).abs() < 1e-12, "{v}");
    assert_eq!(t["fluidity_level"], 1, "{v}");
    // East a day later, no count: the typical traffic of that hour of the week is unknown
    // (the week before had none at that hour), so no fluidity; no weather either.
    let v = explain("east", h0 + 24);
    assert_eq!(
        v["v2"]["traffic"]["traffic"],
        serde_json::Value::Null,
        "{v}"
    );
    assert_eq!(v["v2"]["weather"]["present"], false, "{v}");
    assert!(
        v["recomputed"]["missing"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("weather")),
        "{v}"
    );
}

#[test]
fn a_replay_killed_while_writing_loses_no_acknowledged_point() {
    let dir = tempfile::tempdir().unwrap();
    let records = tie_free_records(33, 30_000);
    let all = dir.path().join("all.ndjson");
    std::fs::write(&all, records.join("\n") + "\n").unwrap();
    let args = |store: &Path| {
        let mut c = vigie();
        c.args([
            "replay",
            "--batch",
            "400",
            "--store-flush-versions",
            "30000",
        ])
        .arg("--input")
        .arg(&all)
        .arg("--store")
        .arg(store);
        c
    };
    let reference = dir.path().join("reference");
    let (out, text) = run(&mut args(&reference));
    assert!(out.status.success(), "{text}");
    let (reference, _) =
        vigie_store::Store::open(&reference, vigie_store::Options::default()).unwrap();
    let keys = reference.keys();
    for (round, kill_after) in [2usize, 9, 17].into_iter().enumerate() {
        let crashed = dir.path().join(format!("crashed-{round}"));
        let mut child = args(&crashed)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut last_ack = None;
        let mut seen = 0;
        for line in std::io::BufRead::lines(stderr) {
            let line = line.unwrap();
            if let Some(&(rev, epoch)) = acks(&line).first() {
                assert!(
                    epoch.is_some(),
                    "the replay ended before the kill: make it longer"
                );
                last_ack = Some(rev);
                seen += 1;
                if seen == kill_after {
                    break;
                }
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "still running when killed"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let acked = last_ack.expect("acknowledgements before the kill");
        let (store, report) = vigie_store::Store::open(&crashed, vigie_store::Options::default())
            .unwrap_or_else(|e| panic!("round {round}: reopening after SIGKILL: {e}"));
        assert!(store.last_revision() >= acked);
        let mut points = 0;
        for key in &keys {
            let want = reference
                .range(key, i64::MIN, i64::MAX, Some(acked))
                .unwrap();
            let got = store.range(key, i64::MIN, i64::MAX, Some(acked)).unwrap();
            assert!(
                got.iter().map(|p| (p.0, p.1.to_bits())).eq(want.iter().map(|p| (p.0, p.1.to_bits()))),
                "round {round}: {key} as known at the last acknowledged revision {acked} ({report:?})"
            );
            points += got.len();
        }
        assert!(
            points > 1000,
            "round {round}: only {points} points acknowledged"
        );
    }
}

/// The Vancouver sample moved forward by whole days so that its last incident falls a day or
/// two before now: a replay of it makes its revisions at recent hours, and its forecasts reach
/// about 30 days past now, far beyond the 2 days ahead VictoriaMetrics accepts.
fn recent_vancouver(dir: &Path) -> PathBuf {
    use chrono::NaiveDate;
    let text =
        std::fs::read_to_string(repo().join("config/samples/vancouver_crime_2020-12.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let time = |r: &[&str]| {
        let n = |i: usize| r[i].parse::<u32>().unwrap();
        NaiveDate::from_ymd_opt(n(1) as i32, n(2), n(3))
            .unwrap()
            .and_hms_opt(n(4), n(5), 0)
            .unwrap()
    };
    let last = rows.iter().map(|r| time(r)).max().unwrap();
    let days = (chrono::Utc::now().naive_utc() - last - chrono::Duration::days(1)).num_days();
    let mut out = format!("{header}\n");
    for r in &rows {
        let t = time(r) + chrono::Duration::days(days);
        use chrono::{Datelike, Timelike};
        let moved = [
            t.year().to_string(),
            t.month().to_string(),
            t.day().to_string(),
            t.hour().to_string(),
            t.minute().to_string(),
        ];
        let cells: Vec<&str> = r[..1]
            .iter()
            .copied()
            .chain(moved.iter().map(String::as_str))
            .chain(r[6..].iter().copied())
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    let path = dir.join("vancouver_crime_recent.csv");
    std::fs::write(&path, out).unwrap();
    path
}

/// A series of `vigie_forecast_<field>` in VictoriaMetrics: zone, target hour (RFC 3339) and
/// field.
type ForecastKey = (String, String, String);

/// `GET path` on VictoriaMetrics as JSON.
fn victoria_json(port: u16, path: &str) -> serde_json::Value {
    let (code, body) = victoria::get(port, path).unwrap();
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Every sample of the metrics matching `selector` (URL-encoded), by series labels: timestamp
/// (ms) → value.
fn victoria_export(
    port: u16,
    selector: &str,
) -> std::collections::BTreeMap<
    std::collections::BTreeMap<String, String>,
    std::collections::BTreeMap<i64, f64>,
> {
    let (code, body) =
        victoria::get(port, &format!("/api/v1/export?match%5B%5D={selector}")).unwrap();
    assert_eq!(code, 200, "{body}");
    let mut out = std::collections::BTreeMap::new();
    for line in body.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let labels: std::collections::BTreeMap<String, String> = v["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let series: &mut std::collections::BTreeMap<i64, f64> = out.entry(labels).or_default();
        for (t, x) in v["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .zip(v["values"].as_array().unwrap())
        {
            series.insert(t.as_i64().unwrap(), x.as_f64().unwrap());
        }
    }
    out
}

/// VictoriaMetrics keeps about 12 significant digits (connectors/tests/influx_victoria.rs).
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-11 * a.abs().max(1.0)
}

/// A replay whose forecasts reach 30 days past now, sent to a real VictoriaMetrics in the
/// model of `docs/tsdb.md`: every revision the store holds of every zone, hour and field is in
/// VictoriaMetrics (so the latest value of the whole 37-day horizon reads back, not only the
/// next 2 days), the documented MetricsQL reads the forecast as it was made at a past hour, and
/// the `vigie_now` series holds the current hour's figures.
#[test]
fn a_replay_writes_to_influxdb_what_it_writes_to_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let vm = victoria::Vm::start(&dir.path().join("vm"), free_port());
    // The embedded sample's configuration, with an InfluxDB output (VictoriaMetrics serves
    // InfluxDB 2's write API).
    let config = dir.path().join("vancouver-influx.toml");
    let text = std::fs::read_to_string(repo().join("config/vancouver.toml"))
        .unwrap()
        .replace(
            "zones = \"zones/vancouver.geojson\"",
            &format!(
                "zones = {:?}",
                repo()
                    .join("config/zones/vancouver.geojson")
                    .display()
                    .to_string()
            ),
        );
    std::fs::write(
        &config,
        format!(
            "{text}\n[outputs.influxdb]\nurl = \"http://127.0.0.1:{}\"\norg = \"city\"\nbucket = \"vigie\"\nbatch_ms = 200\nbuffer_dir = {:?}\n",
            vm.port,
            dir.path().join("buffer").display().to_string()
        ),
    )
    .unwrap();
    let store_dir = dir.path().join("store");
    let (out, text) = run(vigie()
        .args(["replay", "--batch", "100", "--config"])
        .arg(&config)
        .arg("--input")
        .arg(format!(
            "vancouver_crime={}",
            recent_vancouver(dir.path()).display()
        ))
        .arg("--store")
        .arg(&store_dir));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("0 left in the buffer"), "{text}");
    // The sink read VictoriaMetrics' own counter: nothing was ignored.
    assert!(text.contains("; 0 samples ignored by the server"), "{text}");

    // Every version of every indicator the store holds: (zone, target, field) → revision →
    // value. A field that became undefined (NaN) cannot be written in line protocol.
    let (store, _) = vigie_store::Store::open(&store_dir, vigie_store::Options::default()).unwrap();
    let target = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let mut want: std::collections::BTreeMap<ForecastKey, std::collections::BTreeMap<i64, f64>> =
        Default::default();
    let mut fields = BTreeSet::new();
    for key in store.keys() {
        if key.measurement != "indicator" {
            continue;
        }
        let zone = key
            .tags
            .iter()
            .find(|(k, _)| k == "zone")
            .unwrap()
            .1
            .clone();
        fields.insert(key.field.clone());
        for v in store.versions(&key, i64::MIN, i64::MAX).unwrap() {
            if !v.value.is_nan() {
                want.entry((zone.clone(), target(v.ts), key.field.clone()))
                    .or_default()
                    .insert(v.rev, v.value);
            }
        }
    }
    let revisions: BTreeSet<i64> = want.values().flat_map(|s| s.keys().copied()).collect();
    let last_rev = *revisions.last().unwrap();
    let now_ms = chrono::Utc::now().timestamp_millis();
    assert!(
        last_rev <= now_ms && last_rev > now_ms - 3 * 86_400_000,
        "the replay's last revision is recent"
    );
    // The horizon reaches 30 days past the last revision, far past what VictoriaMetrics takes
    // when a point is stamped at its hour (2 days ahead).
    let hours: BTreeSet<&str> = want.keys().map(|(_, t, _)| t.as_str()).collect();
    let beyond = target(now_ms + 2 * 86_400_000 + 3_600_000);
    let far = hours.iter().filter(|t| **t > beyond.as_str()).count();
    assert!(
        far >= 25 * 24,
        "{far} hours of the horizon beyond 2 days ahead"
    );
    let total: usize = want.values().map(|s| s.len()).sum();
    assert!(total > 250_000, "{total} versions");

    // What VictoriaMetrics holds, field by field (it makes samples searchable about a second
    // after it acknowledged them).
    let started = std::time::Instant::now();
    let got = loop {
        let mut got: std::collections::BTreeMap<ForecastKey, std::collections::BTreeMap<i64, f64>> =
            Default::default();
        for field in &fields {
            for (labels, series) in victoria_export(vm.port, &format!("vigie_forecast_{field}")) {
                let (zone, hour) = (labels["zone"].clone(), labels["target"].clone());
                got.insert((zone, hour, field.clone()), series);
            }
        }
        let n: usize = got.values().map(|s| s.len()).sum();
        if n >= total || started.elapsed() > std::time::Duration::from_secs(120) {
            break got;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(
        got.len(),
        want.len(),
        "as many series as (zone, hour, field)"
    );
    for (key, series) in &want {
        let theirs = got.get(key).unwrap_or_else(|| panic!("{key:?} missing"));
        assert_eq!(
            theirs.keys().collect::<Vec<_>>(),
            series.keys().collect::<Vec<_>>(),
            "{key:?}: the revisions"
        );
        for ((rev, v1), v2) in series.iter().zip(theirs.values()) {
            assert!(
                close(*v1, *v2),
                "{key:?} at revision {rev}: {v1} in the store, {v2} in VictoriaMetrics"
            );
        }
    }
    // The feeds' health, stamped at each revision as in the store.
    let mut feeds = 0;
    for key in store.keys() {
        if key.measurement != "feed" {
            continue;
        }
        let series = store.range(&key, i64::MIN, i64::MAX, None).unwrap();
        let theirs = victoria_export(vm.port, &format!("vigie_feed_{}", key.field));
        let labels: std::collections::BTreeMap<String, String> = key
            .tags
            .iter()
            .cloned()
            .chain([("__name__".to_string(), format!("vigie_feed_{}", key.field))])
            .collect();
        let theirs: Vec<(i64, f64)> = theirs[&labels].iter().map(|(t, v)| (*t, *v)).collect();
        assert_eq!(theirs.len(), series.len(), "{key:?}");
        for ((t1, v1), (t2, v2)) in series.iter().zip(&theirs) {
            assert!(
                t1 == t2 && close(*v1, *v2),
                "{key:?}: {t1} {v1} vs {t2} {v2}"
            );
        }
        feeds += 1;
    }
    assert!(feeds > 0, "feed health points");
    // The lead time of each forecast is its target hour minus its revision's hour.
    let leads = victoria_export(vm.port, "vigie_forecast_lead_h");
    let (labels, series) = leads.iter().next().unwrap();
    let target_h = chrono::DateTime::parse_from_rfc3339(&labels["target"])
        .unwrap()
        .timestamp()
        / 3600;
    for (rev, lead) in series {
        assert_eq!(*lead as i64, target_h - rev / 3_600_000, "{labels:?}");
    }

    // The forecast as it was made at an earlier revision: the documented MetricsQL at a revision
    // before the last, against the store as known then. (The sample's lines are not in time
    // order, so the replay's clock reaches its last hours with the first batches: its revisions
    // are epochs of the same hours, milliseconds apart, which the query tells apart.)
    let past: Vec<i64> = revisions
        .iter()
        .copied()
        .filter(|r| *r < last_rev)
        .collect();
    let at = past[past.len() / 2];
    let answer = victoria_json(
        vm.port,
        &format!(
            "/api/v1/query?query=last_over_time%28vigie_forecast_risk_score%5B38d%5D%29&time={}.{:03}",
            at / 1000,
            at % 1000
        ),
    );
    let mut then = std::collections::BTreeMap::new();
    for r in answer["data"]["result"].as_array().unwrap() {
        let m = &r["metric"];
        let v: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
        then.insert(
            (
                m["zone"].as_str().unwrap().to_string(),
                m["target"].as_str().unwrap().to_string(),
            ),
            v,
        );
    }
    let mut known_then = std::collections::BTreeMap::new();
    let mut latest = std::collections::BTreeMap::new();
    for ((zone, hour, field), series) in &want {
        if field == "risk_score" {
            if let Some((_, v)) = series.range(..=at).next_back() {
                known_then.insert((zone.clone(), hour.clone()), *v);
            }
            latest.insert(
                (zone.clone(), hour.clone()),
                *series.values().last().unwrap(),
            );
        }
    }
    assert_eq!(
        then.keys().collect::<Vec<_>>(),
        known_then.keys().collect::<Vec<_>>(),
        "the hours forecast at {at}"
    );
    for (k, v) in &known_then {
        assert!(
            close(*v, then[k]),
            "{k:?} as known at {at}: {v} vs {}",
            then[k]
        );
    }
    let revised = known_then
        .iter()
        .filter(|(k, v)| !close(**v, latest[*k]))
        .count();
    assert!(
        revised > 0,
        "the past revision differs from the latest ({revised} values revised)"
    );

    // The risk now: the last `vigie_now` sample of each zone is the store's latest figure for
    // the last revision's hour.
    let now_hour = target(last_rev / 3_600_000 * 3_600_000);
    let now = victoria_export(vm.port, "vigie_now_risk_score");
    let zones: BTreeSet<&str> = want.keys().map(|(z, _, _)| z.as_str()).collect();
    assert_eq!(now.len(), zones.len(), "one now series per zone");
    for (labels, series) in &now {
        let key = (
            labels["zone"].clone(),
            now_hour.clone(),
            "risk_score".into(),
        );
        let (ts, v) = series.iter().next_back().unwrap();
        assert!(
            *ts <= last_rev && ts / 3_600_000 == last_rev / 3_600_000,
            "{labels:?}: stamped in the last revision's hour"
        );
        assert!(
            close(*v, *want[&key].values().last().unwrap()),
            "{labels:?}: the risk now"
        );
    }
}

/// A plain HTTP/1.1 request on loopback (Connection: close): status and body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Option<(u16, String)> {
    http_with(port, method, path, token, "", body)
}

/// [`http`] with more header lines (`extra`, each ending in CRLF).
fn http_with(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &str,
    body: &str,
) -> Option<(u16, String)> {
    client::request(
        port,
        method,
        path,
        token,
        "application/x-ndjson",
        extra,
        body,
    )
}

/// The current hour, since the epoch.
fn now_hour() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 3600
}

#[test]
fn vigie_run_killed_mid_stream_counts_every_acknowledged_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let now_hour = now_hour();
    // One incident per zone and hour over the last 100 hours: a zone-hour counted twice would
    // show `incidents = 2`.
    let record = move |i: usize| {
        let zone = format!("130{:02}", 1 + i % 16);
        let hour = now_hour - 1 - (i / 16) as i64;
        let line = format!(
            "{{\"feed\":\"incident\",\"ts\":{},\"zone\":\"{zone}\",\"severity\":{}}}",
            hour * 3600 + 120,
            1 + i % 5
        );
        (zone, hour, line)
    };
    let total = 1600;
    let run = Vigie::start(dir.path(), Setup::default());
    let port = run.port;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let poster = {
        let acked = acked.clone();
        std::thread::spawn(move || {
            for batch in (0..total).collect::<Vec<_>>().chunks(10) {
                let body: String = batch.iter().map(|&i| record(i).2 + "\n").collect();
                match http(port, "POST", "/api/v1/records", Some(SOURCE_TOKEN), &body) {
                    Some((200, _)) => acked.lock().unwrap().extend_from_slice(batch),
                    _ => return,
                }
            }
        })
    };
    // Kill it once the log has been compacted while running, at least once.
    let compactions = loop {
        let n = acked.lock().unwrap().len();
        if n >= 400 {
            let c = metric(port, "vigie_ingest_log_compactions_total", "");
            if c >= 1.0 || n >= 1200 {
                break c;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert!(compactions >= 1.0, "no compaction while running");
    drop(run); // SIGKILL, mid-stream
    poster.join().unwrap();
    let acked: Vec<usize> = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 400 && acked.len() < total,
        "{} acknowledged",
        acked.len()
    );
    let run = Vigie::start(dir.path(), Setup::default());
    std::thread::sleep(std::time::Duration::from_millis(500));
    run.stop();
    let (store, _) = vigie_store::Store::open(
        &dir.path().join("data/store"),
        vigie_store::Options::default(),
    )
    .unwrap();
    let mut counted = 0;
    for i in 0..total {
        let (zone, hour, _) = record(i);
        let n = vigie_queries::read::zone_hour(&store, &zone, hour * 3_600_000, None)
            .unwrap()
            .map_or(0.0, |h| h.values["incidents"]);
        assert!(
            n == 0.0 || n == 1.0,
            "zone {zone} hour {hour}: {n} incidents"
        );
        if acked.contains(&i) {
            assert_eq!(
                n, 1.0,
                "acknowledged record {i} (zone {zone}, hour {hour}) lost"
            );
        }
        counted += n as usize;
    }
    assert!(counted >= acked.len());
}

#[test]
fn vigie_run_on_several_workers_or_processes_computes_what_a_replay_does() {
    let feeds = ["incident", "density", "event", "weather", "deployment"];
    // The live clock is the wall clock's hour: if it moves during a try, the runs may have
    // closed their last epochs at different hours, and the try is made again.
    for _ in 0..3 {
        let hour = now_hour();
        let records = tie_free_records_from(17, 3000, (hour - 20 * 24) * 3600);
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        // A cluster of two processes of one worker each; the second runs workers only.
        let hostfile = dirs[2].path().join("hosts.txt");
        std::fs::write(
            &hostfile,
            format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
        )
        .unwrap();
        let hosts = hostfile.to_str().unwrap();
        let setup = |args| Setup {
            feeds: &feeds,
            args,
            ..Setup::default()
        };
        let config = setup(&[]).write(dirs[2].path(), 0);
        let mut follower = vigie()
            .args(["run", "--config"])
            .arg(&config)
            .args(["--processes", "2", "--process", "1", "--hostfile", hosts])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let runs = [
            Vigie::start(dirs[0].path(), setup(&["--workers", "1"])),
            Vigie::start(dirs[1].path(), setup(&["--workers", "2"])),
            Vigie::start(
                dirs[2].path(),
                setup(&["--processes", "2", "--process", "0", "--hostfile", hosts]),
            ),
        ];
        for chunk in records.chunks(250) {
            for run in &runs {
                run.post_records(chunk);
            }
        }
        for run in runs {
            run.stop();
        }
        let status = follower.wait().unwrap();
        assert!(status.success(), "the cluster's second process: {status}");
        if now_hour() != hour {
            continue;
        }
        let input = dirs[0].path().join("records.ndjson");
        std::fs::write(&input, records.join("\n") + "\n").unwrap();
        let output = dirs[0].path().join("replay.ndjson");
        let (out, text) = run(vigie()
            .args(["replay", "--config"])
            .arg(dirs[0].path().join("run.toml"))
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .arg("--clock")
            .arg(vigie_model::time::format_ts(hour * 3_600_000_000)));
        assert!(out.status.success(), "{text}");
        let want = output_figures(&output);
        assert!(want.0.len() > 10_000 && !want.1.is_empty());
        for (dir, what) in dirs
            .iter()
            .zip(["one worker", "two workers", "two processes"])
        {
            let (store, _) = vigie_store::Store::open(
                &dir.path().join("data/store"),
                vigie_store::Options::default(),
            )
            .unwrap();
            assert_eq!(store_figures(&store, &want, None), want, "{what}");
        }
        return;
    }
    panic!("the wall clock's hour changed during each of three tries");
}

#[test]
fn vigie_run_with_no_broker_configured_takes_mqtt_from_its_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    let hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 3600
        - 2;
    let run = Vigie::start(dir.path(), Setup::default());
    let port = run.port;
    wait_for(15, "vigie's subscription to its broker", || {
        metric(port, "vigie_mqtt_subscriptions_acked_total", "") >= 1.0
    });
    let mut options = rumqttc::MqttOptions::new("e2e-publisher", "127.0.0.1", run.mqtt);
    options.set_keep_alive(std::time::Duration::from_secs(5));
    let (client, mut connection) = rumqttc::Client::new(options, 10);
    let acks = std::thread::spawn(move || {
        let mut acked = 0;
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => panic!("publisher: {e}"),
            }
            if acked == 2 {
                break;
            }
        }
    });
    // The zone from the topic's last level, and the zone in the record.
    client
        .publish(
            "vigie/incident/13005",
            rumqttc::QoS::AtLeastOnce,
            false,
            format!(
                "{{\"feed\":\"incident\",\"ts\":{},\"severity\":4}}\n",
                hour * 3600 + 60
            ),
        )
        .unwrap();
    client
        .publish(
            "vigie/incident",
            rumqttc::QoS::AtLeastOnce,
            false,
            format!(
                "{{\"feed\":\"incident\",\"ts\":{},\"zone\":\"13007\",\"severity\":2}}",
                hour * 3600 + 120
            ),
        )
        .unwrap();
    acks.join().unwrap();
    wait_for(15, "the records in the engine", || {
        metric(port, "vigie_mqtt_records_accepted_total", "") >= 2.0
            && metric(port, "vigie_engine_records_total", "") >= 2.0
    });
    run.stop();
    let (store, _) = vigie_store::Store::open(
        &dir.path().join("data/store"),
        vigie_store::Options::default(),
    )
    .unwrap();
    for zone in ["13005", "13007"] {
        let n = vigie_queries::read::zone_hour(&store, zone, hour * 3_600_000, None)
            .unwrap()
            .map_or(0.0, |h| h.values["incidents"]);
        assert_eq!(n, 1.0, "zone {zone}");
    }
}

/// `vigie run --demo` on `data` at a high speed, until the scenario is played: the number of
/// records it announced and its standard error so far.
fn play_demo(data: &Path) -> (Vigie, u64, std::sync::mpsc::Receiver<String>) {
    let port = free_port();
    let mut child = vigie()
        .args([
            "run",
            "--demo",
            "--demo-speed",
            "200000",
            "--epoch-ms",
            "200",
        ])
        .arg("--data")
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--mqtt-listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(stderr).map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let run = Vigie {
        child,
        port,
        mqtt: 0,
        log: PathBuf::new(),
    };
    let mut total = None;
    let started = std::time::Instant::now();
    loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60).saturating_sub(started.elapsed()))
            .expect("the demo plays its scenario within a minute");
        if let Some((_, rest)) = line.split_once("vigie demo: Marseille") {
            let n = rest
                .split(" records")
                .next()
                .unwrap()
                .rsplit(' ')
                .next()
                .unwrap();
            total = Some(n.parse::<u64>().unwrap());
        }
        assert!(!line.contains("rejected"), "{line}");
        if line.contains("the scenario is played") {
            break;
        }
    }
    (run, total.expect("the announcement of the scenario"), rx)
}

/// The sum of `field` over every zone and hour of the store's horizon around now.
fn store_sum(store: &vigie_store::Store, field: &str) -> f64 {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut sum = 0.0;
    for zone in vigie_queries::read::zones(store) {
        let key = vigie_queries::read::indicator_key(&zone, field);
        for (_, v) in store
            .range(
                &key,
                now_ms - 8 * 86_400_000,
                now_ms + 31 * 86_400_000,
                None,
            )
            .unwrap()
        {
            sum += v;
        }
    }
    sum
}

#[test]
fn vigie_run_demo_plays_marseille_over_mqtt_and_http_and_a_second_run_upserts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (run, total, _log) = play_demo(&data);
    let port = run.port;
    // Every record of the scenario reaches the engine, through both doors, none refused.
    wait_for(30, "every record in the engine", || {
        metric(port, "vigie_engine_records_total", "") >= total as f64
    });
    // Counted as it enters the dataflow: two more closed epochs, and the last record's epoch
    // has been computed and published.
    let epochs = metric(port, "vigie_engine_epochs_total", "");
    wait_for(30, "two epochs after the last record", || {
        metric(port, "vigie_engine_epochs_total", "") >= epochs + 2.0
    });
    // Where the epochs' time went, by phase, and the epochs with news that were measured.
    for phase in ["dataflow", "sinks", "publish"] {
        let spent = metric(
            port,
            "vigie_engine_epoch_phase_seconds_total",
            &format!("phase=\"{phase}\""),
        );
        assert!(spent > 0.0, "{phase}: {spent} s");
    }
    assert!(metric(port, "vigie_engine_epoch_seconds_count", "") >= 2.0);
    let mqtt = metric(port, "vigie_mqtt_records_accepted_total", "");
    let http = metric(port, "vigie_ingest_accepted_total", "source=\"demo\"");
    assert!(
        mqtt > 10_000.0 && http > 10_000.0,
        "MQTT {mqtt}, HTTP {http}"
    );
    assert_eq!(mqtt + http, total as f64, "MQTT {mqtt}, HTTP {http}");
    assert_eq!(metric(port, "vigie_ingest_rejected_total", ""), 0.0);
    // At now: the Vieux-Port above level 2 and short of patrols, 13013 blind on its crowd,
    // clashes in 13001, and the demo's forecast alert firing.
    let hour = vigie_model::clock::wall_hour();
    let (code, answer) = client::request(port, "GET", "/api/v1/indicators", None, "", "", "")
        .expect("the API answers");
    assert_eq!(code, 200, "{answer}");
    let rows: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let row = |zone: &str| client::zone_row(&rows, zone).unwrap();
    let vieux_port = row("13001");
    assert!(
        vieux_port["risk_level"].as_u64().unwrap() >= 3,
        "{vieux_port}"
    );
    assert!(
        vieux_port["criticality"].as_u64().unwrap() >= 3,
        "{vieux_port}"
    );
    assert!(
        vieux_port["protection_rate"].as_f64().unwrap() < 1.0,
        "{vieux_port}"
    );
    assert!(vieux_port["calls"].as_u64().unwrap() >= 5, "{vieux_port}");
    assert_eq!(row("13013")["confidence"], "reduced", "{}", row("13013"));
    assert_eq!(row("13013")["missing"], serde_json::json!(["density"]));
    assert_eq!(row("13005")["confidence"], "high", "{}", row("13005"));
    assert!(
        row("13002")["contributions"]["surge"].as_f64().unwrap() > 0.3,
        "{}",
        row("13002")
    );
    let (_, clashes) =
        client::request(port, "GET", "/api/v1/clashes?zone=13001", None, "", "", "").unwrap();
    assert!(
        clashes.contains("demo-demonstration") && clashes.contains("demo-roadworks-canebiere"),
        "{clashes}"
    );
    wait_for(10, "the demo's alert", || {
        client::request(port, "GET", "/api/v1/alerts?state=firing", None, "", "", "")
            .is_some_and(|(_, a)| a.contains("demo-level-3-within-24h") && a.contains("13008"))
    });
    // The match, in the forecast: 13008 at level 4 with a shortfall, its neighbour 13006
    // taking the spill, the heat wave in the weather factor, fluidity down.
    let (_, at) = client::request(
        port,
        "GET",
        &format!("/api/v1/indicators?hour={}", (hour + 3) * 3600),
        None,
        "",
        "",
        "",
    )
    .unwrap();
    let at: serde_json::Value = serde_json::from_str(&at).unwrap();
    let during = |zone: &str| client::zone_row(&at, zone).unwrap();
    let velodrome = during("13008");
    assert_eq!(velodrome["risk_level"], 4, "{velodrome}");
    assert!(
        velodrome["protection_rate"].as_f64().unwrap() < 1.0,
        "{velodrome}"
    );
    assert!(
        velodrome["fluidity_level"].as_u64().unwrap() >= 3,
        "{velodrome}"
    );
    // The heat wave: the weather factor above 1.1 at some hour of the next day, whatever
    // the hour now.
    let (_, weather) = client::request(
        port,
        "GET",
        &format!(
            "/api/v1/indicators/range?zone=13008&field=weather&from={}&to={}&step=1d&agg=max",
            (hour + 1) * 3600,
            (hour + 25) * 3600
        ),
        None,
        "",
        "",
        "",
    )
    .unwrap();
    let weather: serde_json::Value = serde_json::from_str(&weather).unwrap();
    assert!(
        weather["points"][0]["value"].as_f64().unwrap() > 1.1,
        "{weather}"
    );
    assert!(
        during("13006")["contributions"]["spill"].as_f64().unwrap() > 1.0,
        "{}",
        during("13006")
    );
    run.stop();
    let sums = |data: &Path| {
        let (store, _) =
            vigie_store::Store::open(&data.join("store"), vigie_store::Options::default()).unwrap();
        assert_eq!(
            vigie_queries::read::zones(&store).len(),
            16,
            "the arrondissements"
        );
        (store_sum(&store, "incidents"), store_sum(&store, "calls"))
    };
    let first = sums(&data);
    // The stored figures of the Vieux-Port at now, explained from the demo's ingest log under
    // the demo's configuration: they agree, and cite the demonstration and the calls.
    let explained = vigie()
        .arg("query")
        .arg("--store")
        .arg(data.join("store"))
        .args(["--format", "ndjson", "explain", "--zone", "13001", "--hour"])
        .arg((hour * 3600).to_string())
        .arg("--data")
        .arg(&data)
        .arg("--demo")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&explained.stdout);
    assert!(
        explained.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&explained.stderr)
    );
    let answer: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(answer["agree"], true, "{answer}");
    assert!(
        text.contains("demo-demonstration") && text.contains("\"call\""),
        "{text}"
    );
    assert!(
        first.0 > 100.0 && first.1 > 100.0,
        "incidents and calls of the horizon: {first:?}"
    );
    // Played again on the same data: every record is upserted, nothing counts twice.
    let (again, total_again, _log) = play_demo(&data);
    assert_eq!(total_again, total);
    // Every record committed again; stopping hands the engine all of them before it ends.
    wait_for(30, "every record committed again", || {
        metric(again.port, "vigie_mqtt_records_accepted_total", "")
            + metric(again.port, "vigie_ingest_accepted_total", "source=\"demo\"")
            >= total as f64
    });
    again.stop();
    assert_eq!(sums(&data), first, "a second run upserts");
}

#[test]
fn mqtt_records_reach_the_indicators_and_survive_a_sigkill_of_vigie() {
    let dir = tempfile::tempdir().unwrap();
    let mport = free_port();
    let _broker = mosquitto::Broker::start(&dir.path().join("broker"), mport);
    let mqtt = format!(
        "[ingest.mqtt]\nurl = \"mqtt://127.0.0.1:{mport}\"\nclient_id = \"vigie-e2e\"\ntopics = [{{ filter = \"city/incident/+\", feed = \"incident\", qos = 1, source = \"ops\", zone_from_topic = 2 }}]\n"
    );
    let now_hour = now_hour();
    // One incident per zone and hour, without id (no upsert absorbs a second copy): a message
    // committed just before the kill and redelivered after it must not count twice.
    let record = move |i: usize| {
        let zone = format!("130{:02}", 1 + i % 16);
        let hour = now_hour - 1 - (i / 16) as i64;
        let payload = format!(
            "{{\"feed\":\"incident\",\"ts\":{},\"severity\":2}}",
            hour * 3600 + 60
        );
        (format!("city/incident/{zone}"), zone, hour, payload)
    };
    let total = 800;
    let external = || Setup {
        extra: &mqtt,
        embedded_broker: false,
        ..Setup::default()
    };
    let run = Vigie::start(dir.path(), external());
    // One message from Mosquitto's own client…
    let (topic, _, _, payload) = record(0);
    mosquitto::mosquitto_pub(mport, &topic, &payload);
    // …and the rest from a rumqttc client, at QoS 1, while vigie is killed and restarted.
    let publisher = std::thread::spawn(move || {
        use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
        let (client, mut conn) = Client::new(MqttOptions::new("e2e-pub", "127.0.0.1", mport), 100);
        let acks = std::thread::spawn(move || {
            let mut acked = 0;
            for ev in conn.iter() {
                if let Ok(Event::Incoming(Packet::PubAck(_))) = ev {
                    acked += 1;
                    if acked == total - 1 {
                        return acked;
                    }
                }
            }
            acked
        });
        for i in 1..total {
            let (topic, _, _, payload) = record(i);
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let acked = acks.join().unwrap();
        let _ = client.disconnect();
        acked
    });
    let started = std::time::Instant::now();
    while metric(run.port, "vigie_engine_records_total", "") < 200.0 {
        assert!(
            started.elapsed().as_secs() < 30,
            "the MQTT records do not arrive"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(run); // SIGKILL, mid-stream: the broker keeps what vigie has not acknowledged
    assert_eq!(
        publisher.join().unwrap(),
        total - 1,
        "the broker acknowledged every message"
    );
    let run = Vigie::start(dir.path(), external());
    // Read back from the log, then the broker's queue for the persistent session.
    let started = std::time::Instant::now();
    while metric(run.port, "vigie_engine_records_total", "") < total as f64 {
        assert!(
            started.elapsed().as_secs() < 30,
            "records are missing after the restart"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert!(metric(run.port, "vigie_ingest_log_bytes", "") > 0.0);
    assert_eq!(metric(run.port, "vigie_engine_queue_records", ""), 0.0);
    eprintln!(
        "committed before the kill, redelivered and recognised after it: {} message(s)",
        metric(run.port, "vigie_mqtt_duplicates_skipped_total", "")
    );
    run.stop();
    let (store, _) = vigie_store::Store::open(
        &dir.path().join("data/store"),
        vigie_store::Options::default(),
    )
    .unwrap();
    for i in 0..total {
        let (_, zone, hour, _) = record(i);
        let n = vigie_queries::read::zone_hour(&store, &zone, hour * 3_600_000, None)
            .unwrap()
            .map_or(0.0, |h| h.values["incidents"]);
        assert_eq!(
            n, 1.0,
            "record {i} (zone {zone}, hour {hour}): {n} incidents"
        );
    }
}

/// Two MQTT sources, `police` (incidents) and `sensors` (densities), with password files in
/// `dir`, then `mqtt` (an `[ingest.mqtt]` section, or nothing for the embedded broker).
fn mqtt_sources(dir: &Path, mqtt: &str) -> String {
    for (name, pw) in [
        ("police", "police-pw"),
        ("sensors", "sensors-pw"),
        ("vigie", "vigie-pw"),
    ] {
        std::fs::write(dir.join(format!("{name}.pw")), format!("{pw}\n")).unwrap();
    }
    format!(
        "[[sources]]\nname = \"police\"\nfeeds = [\"incident\"]\nmqtt_username = \"police\"\nmqtt_password_file = \"police.pw\"\n\
         [[sources]]\nname = \"sensors\"\nfeeds = [\"density\"]\nmqtt_username = \"sensors\"\nmqtt_password_file = \"sensors.pw\"\n{mqtt}"
    )
}

#[test]
fn mosquitto_with_the_files_of_mqtt_acl_holds_each_source_to_its_feeds() {
    let dir = tempfile::tempdir().unwrap();
    let mport = free_port();
    let extra = mqtt_sources(
        dir.path(),
        &format!(
            "[ingest.mqtt]\nurl = \"mqtt://127.0.0.1:{mport}\"\nclient_id = \"vigie-acl\"\nusername = \"vigie\"\npassword_file = \"vigie.pw\"\n\
             topics = [{{ filter = \"city/incident/+\", feed = \"incident\", source = \"police\", zone_from_topic = 2 }},\
                       {{ filter = \"city/density/+\", feed = \"density\", source = \"sensors\", zone_from_topic = 2 }}]\n"
        ),
    );
    let config = Setup {
        extra: &extra,
        ..Setup::default()
    }
    .write(dir.path(), 0);
    let acl_dir = dir.path().join("acl");
    let (out, stderr) = run(vigie()
        .args(["mqtt-acl", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&acl_dir));
    assert!(out.status.success(), "{stderr}");
    let passwd = std::fs::read_to_string(acl_dir.join("passwd")).unwrap();
    assert_eq!(passwd.lines().count(), 3, "{passwd}");
    assert!(
        !passwd.contains("-pw"),
        "a clear password in the file: {passwd}"
    );
    let _broker = mosquitto::Broker::start_with(
        &dir.path().join("broker"),
        mport,
        &format!(
            "allow_anonymous false\npassword_file {}\nacl_file {}\n",
            acl_dir.join("passwd").display(),
            acl_dir.join("acl").display()
        ),
    );
    let run = Vigie::start(
        dir.path(),
        Setup {
            extra: &extra,
            embedded_broker: false,
            ..Setup::default()
        },
    );
    let port = run.port;
    wait_for(15, "vigie's subscription to Mosquitto", || {
        metric(port, "vigie_mqtt_subscriptions_acked_total", "") >= 1.0
    });
    let hour = now_hour() - 1;
    let incident = format!("{{\"ts\":{},\"severity\":3}}", hour * 3600 + 60);
    let density = format!("{{\"ts\":{},\"people\":500}}", hour * 3600 + 60);
    // A wrong password, and no login at all: refused at the door.
    let wrong = mosquitto::mosquitto_pub_as(
        mport,
        Some(("police", "guess")),
        "city/incident/13001",
        &incident,
    );
    assert!(wrong.is_err(), "a wrong password got in");
    assert!(
        mosquitto::mosquitto_pub_as(mport, None, "city/incident/13001", &incident).is_err(),
        "an anonymous client got in"
    );
    // The police writing densities: Mosquitto takes the message (MQTT 3.1.1 cannot refuse
    // one) and drops it.
    mosquitto::mosquitto_pub_as(
        mport,
        Some(("police", "police-pw")),
        "city/density/13002",
        &density,
    )
    .unwrap();
    // What each may write arrives.
    mosquitto::mosquitto_pub_as(
        mport,
        Some(("police", "police-pw")),
        "city/incident/13001",
        &incident,
    )
    .unwrap();
    mosquitto::mosquitto_pub_as(
        mport,
        Some(("sensors", "sensors-pw")),
        "city/density/13003",
        &density,
    )
    .unwrap();
    wait_for(15, "the allowed records", || {
        metric(port, "vigie_mqtt_records_accepted_total", "") >= 2.0
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let received = |filter: &str| {
        metric(
            port,
            "vigie_mqtt_messages_received_total",
            &format!("filter=\"{filter}\""),
        )
    };
    assert_eq!(received("city/incident/+"), 1.0);
    assert_eq!(
        received("city/density/+"),
        1.0,
        "the police's density arrived"
    );
    assert_eq!(metric(port, "vigie_mqtt_records_accepted_total", ""), 2.0);
    run.stop();
    let (store, _) = vigie_store::Store::open(
        &dir.path().join("data/store"),
        vigie_store::Options::default(),
    )
    .unwrap();
    let incidents = |zone: &str| {
        vigie_queries::read::zone_hour(&store, zone, hour * 3_600_000, None)
            .unwrap()
            .map_or(0.0, |h| h.values["incidents"])
    };
    assert_eq!(incidents("13001"), 1.0);
}

#[test]
fn the_embedded_broker_lets_in_only_the_logins_of_the_sources() {
    let dir = tempfile::tempdir().unwrap();
    // One source with an MQTT login: the embedded broker asks for logins, and its topics
    // carry that source's feeds only.
    std::fs::write(dir.path().join("police.pw"), "police-pw\n").unwrap();
    let extra = "[[sources]]\nname = \"police\"\nfeeds = [\"incident\"]\nmqtt_username = \"police\"\nmqtt_password_file = \"police.pw\"\n";
    let run = Vigie::start(
        dir.path(),
        Setup {
            extra,
            ..Setup::default()
        },
    );
    let (port, mport) = (run.port, run.mqtt);
    wait_for(15, "vigie's subscription to its broker", || {
        metric(port, "vigie_mqtt_subscriptions_acked_total", "") >= 1.0
    });
    let hour = now_hour() - 1;
    let incident = format!("{{\"ts\":{},\"severity\":3}}", hour * 3600 + 60);
    for login in [
        None,
        Some(("police", "guess")),
        Some(("nobody", "police-pw")),
    ] {
        assert!(
            mosquitto::mosquitto_pub_as(mport, login, "vigie/incident/13001", &incident).is_err(),
            "{login:?} got in"
        );
    }
    let police = Some(("police", "police-pw"));
    mosquitto::mosquitto_pub_as(
        mport,
        police,
        "vigie/density/13002",
        "{\"ts\":1,\"people\":9}",
    )
    .unwrap();
    mosquitto::mosquitto_pub_as(mport, police, "vigie/incident/13001", &incident).unwrap();
    wait_for(15, "the police's incident", || {
        metric(port, "vigie_mqtt_records_accepted_total", "") >= 1.0
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(metric(port, "vigie_mqtt_messages_received_total", ""), 1.0);
    assert_eq!(
        metric(
            port,
            "vigie_mqtt_messages_received_total",
            "feed=\"density\""
        ),
        0.0
    );
    // A bad record over MQTT counts in the feed's health.
    let bad = incident.replace("\"severity\":3", "\"severity\":9");
    mosquitto::mosquitto_pub_as(mport, police, "vigie/incident/13001", &bad).unwrap();
    wait_for(15, "the rejection", || {
        metric(port, "vigie_mqtt_records_rejected_total", "") >= 1.0
    });
    std::thread::sleep(std::time::Duration::from_millis(400));
    run.stop();
    let (store, _) = vigie_store::Store::open(
        &dir.path().join("data/store"),
        vigie_store::Options::default(),
    )
    .unwrap();
    let key = vigie_store::SeriesKey::new("feed", &[("feed", "incident")], "rejected");
    let got = store.last_before(&key, i64::MAX, None).unwrap();
    assert_eq!(got.map(|(_, v)| v), Some(1.0));
}

#[test]
fn an_http_retry_with_its_idempotency_key_after_a_sigkill_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let hour = now_hour() - 1;
    let body = format!(
        "{{\"feed\":\"incident\",\"ts\":{},\"zone\":\"13009\",\"severity\":3}}\n",
        hour * 3600 + 60
    );
    let post = |port: u16, key: &str, body: &str| {
        http_with(
            port,
            "POST",
            "/api/v1/records",
            Some(SOURCE_TOKEN),
            &format!("Idempotency-Key: {key}\r\n"),
            body,
        )
        .unwrap()
    };
    let run = Vigie::start(dir.path(), Setup::default());
    let (code, first) = post(run.port, "batch-0042", &body);
    assert_eq!(code, 200, "{first}");
    // vigie is killed; the client never saw its answer, and sends the request again.
    drop(run);
    let run = Vigie::start(dir.path(), Setup::default());
    let (code, again) = post(run.port, "batch-0042", &body);
    assert_eq!(code, 200, "{again}");
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["replayed"], true, "{again}");
    assert_eq!(again["first_seq"], first["first_seq"]);
    assert_eq!(again["accepted"], 1);
    // The key with another body: refused; another key: a new batch.
    let other = body.replace("13009", "13010");
    assert_eq!(post(run.port, "batch-0042", &other).0, 422);
    assert_eq!(post(run.port, "batch-0043", &other).0, 200);
    assert_eq!(post(run.port, "bad key", &other).0, 400);
    // Rejected lines count in the feeds' health, by feed, even when nothing else arrives.
    let bad = other.replace("\"severity\":3", "\"severity\":9");
    let (code, _) = http(
        run.port,
        "POST",
        "/api/v1/records",
        Some(SOURCE_TOKEN),
        &bad,
    )
    .unwrap();
    assert_eq!(code, 400);
    std::thread::sleep(std::time::Duration::from_millis(400));
    run.stop();
    let (store, _) = vigie_store::Store::open(
        &dir.path().join("data/store"),
        vigie_store::Options::default(),
    )
    .unwrap();
    for zone in ["13009", "13010"] {
        let n = vigie_queries::read::zone_hour(&store, zone, hour * 3_600_000, None)
            .unwrap()
            .map_or(0.0, |h| h.values["incidents"]);
        assert_eq!(n, 1.0, "zone {zone}");
    }
    for (feed, want) in [("incident", 1.0), ("all", 1.0)] {
        let key = vigie_store::SeriesKey::new("feed", &[("feed", feed)], "rejected");
        let got = store.last_before(&key, i64::MAX, None).unwrap();
        assert_eq!(got.map(|(_, v)| v), Some(want), "feed {feed}");
    }
}

#[test]
fn sigterm_with_a_wall_following_the_stream_stops_cleanly() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let run = Vigie::start(dir.path(), Setup::default());
    // A wall follows the live stream, and never hangs up.
    let mut wall = std::net::TcpStream::connect(("127.0.0.1", run.port)).unwrap();
    write!(
        wall,
        "GET /api/v1/stream?access_token={} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        vigie::VIEWER
    )
    .unwrap();
    wall.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut first = [0u8; 64];
    let n = wall.read(&mut first).unwrap();
    assert!(
        String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&first[..n])
    );
    wait_for(10, "the stream counted", || {
        metric(run.port, "vigie_wall_streams", "") >= 1.0
    });
    // SIGTERM: the stream ends, and vigie stops cleanly (a graceful shutdown must not wait
    // for screens that never hang up).
    let started = std::time::Instant::now();
    run.stop();
    assert!(
        started.elapsed().as_secs() < 20,
        "vigie took {:?} to stop",
        started.elapsed()
    );
    let mut rest = Vec::new();
    let _ = wall.read_to_end(&mut rest);
}

#[test]
fn vigie_query_prints_a_table_or_ndjson_and_refuses_an_unknown_zone_field_or_hour() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let (out, text) = run(vigie().arg("replay").arg("--store").arg(&store_dir));
    assert!(out.status.success(), "{text}");
    let query = |args: &[&str]| {
        let mut cmd = vigie();
        cmd.arg("query").args(args).arg("--store").arg(&store_dir);
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // A table: a header, a rule, one line a zone (24 Vancouver zones).
    let (code, table, _) = query(&["latest", "--format", "table"]);
    assert_eq!(code, Some(0));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("zone") && lines[0].contains("risk_score"),
        "{table}"
    );
    assert!(lines[1].starts_with("----"), "{table}");
    assert_eq!(lines.len(), 2 + 24, "{table}");
    // NDJSON when piped (no terminal here), or asked for.
    let (_, piped, _) = query(&["latest"]);
    let (_, ndjson, _) = query(&["latest", "--format", "ndjson"]);
    assert_eq!(piped, ndjson);
    assert_eq!(ndjson.lines().count(), 24);
    let first: serde_json::Value = serde_json::from_str(ndjson.lines().next().unwrap()).unwrap();
    let zone = first["zone"].as_str().unwrap().to_string();
    let (code, range, _) = query(&[
        "range",
        "--zone",
        &zone,
        "--field",
        "incidents",
        "--step",
        "1d",
        "--agg",
        "sum",
        "--format",
        "table",
    ]);
    assert_eq!(code, Some(0), "{range}");
    assert!(range.lines().next().unwrap().contains("value"), "{range}");
    // Refused, naming what is wrong.
    for (args, says) in [
        (
            vec!["range", "--zone", "Atlantis", "--field", "incidents"],
            "no zone `Atlantis`",
        ),
        (
            vec!["range", "--zone", zone.as_str(), "--field", "happiness"],
            "`happiness` is not an indicator field",
        ),
        (
            vec![
                "revisions",
                "--zone",
                zone.as_str(),
                "--hour",
                "2019-01-01T00:00:00Z",
            ],
            "out of the horizon",
        ),
        (
            vec![
                "explain",
                "--zone",
                zone.as_str(),
                "--hour",
                "2030-01-01T00:00:00Z",
            ],
            "out of the horizon",
        ),
        (
            vec!["latest", "--at", "2019-01-01T00:00:00Z"],
            "out of the horizon",
        ),
    ] {
        let (code, _, err) = query(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// The resident memory of process `pid` (`VmRSS` of `/proc/<pid>/status`), in MiB.
fn rss_mib(pid: u32) -> f64 {
    proc_status_mib(pid, "VmRSS:")
}

/// A memory line of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:` the peak), in MiB.
fn proc_status_mib(pid: u32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{key} in /proc/<pid>/status"));
    kib / 1024.0
}

/// Issue 19: a restart reads the ingest log back a batch at a time. `vigie run` takes N
/// incidents of the last two days over HTTP (without ids: the engine tallies them per zone and
/// hour, so its state stays small while the log grows with every record), is killed, and
/// restarts on the same data: the restart's peak resident memory (`VmHWM`) stays under twice
/// what the first run held once it had taken them all, and every record is back in the engine.
/// `VIGIE_TEST_RESTART_RECORDS` sets N (default 1.5 M, a 180–250 MiB log, about 12 s; the
/// code before this test peaked at 2.7x there). With 5 M (a 525 MiB log): running 153 MiB,
/// restart peak 103 MiB (0.67x), against 1,197 MiB (8.0x) before.
#[test]
fn a_restart_reads_a_large_ingest_log_back_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let n: usize = std::env::var("VIGIE_TEST_RESTART_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_500_000);
    let now_hour = now_hour();
    let run = Vigie::start(dir.path(), Setup::default());
    let lines: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{{\"feed\":\"incident\",\"ts\":{},\"zone\":\"130{:02}\",\"severity\":{},\"category\":\"restart-{}\"}}",
                (now_hour - 47) * 3600 + (i as i64 * 7919) % (47 * 3600),
                1 + i % 16,
                1 + i % 5,
                i % 7
            )
        })
        .collect();
    for chunk in lines.chunks(20_000) {
        run.post_records(chunk);
    }
    drop(lines);
    wait_for(120, "every record in the engine", || {
        run.metric("vigie_engine_records_total", "") >= n as f64
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    let running = rss_mib(run.child.id());
    let log_mib = dir_bytes(&dir.path().join("data/ingest")) as f64 / (1 << 20) as f64;
    drop(run); // SIGKILL
    let again = Vigie::start(dir.path(), Setup::default());
    wait_for(120, "every record read back", || {
        again.metric("vigie_engine_records_total", "") >= n as f64
    });
    let peak = proc_status_mib(again.child.id(), "VmHWM:");
    eprintln!(
        "{n} records, ingest log {log_mib:.0} MiB: running {running:.0} MiB, restart peak {peak:.0} MiB ({:.2}x)",
        peak / running
    );
    assert!(
        peak < 2.0 * running,
        "restart peak {peak:.0} MiB, running {running:.0} MiB, log {log_mib:.0} MiB"
    );
    assert_eq!(again.metric("vigie_engine_records_total", ""), n as f64);
    // The figures are those of every record: the zone-hours' incidents add up to N.
    let path = format!(
        "/api/v1/indicators/range?zone=13001&field=incidents&from={}&to={}&step=1d&agg=sum",
        (now_hour - 48) * 3600,
        (now_hour + 1) * 3600
    );
    wait_for(30, "the first epoch after the restart", || {
        again.json("GET", &path, Some(vigie::VIEWER), "").0 == 200
    });
    let (_, rows) = again.json("GET", &path, Some(vigie::VIEWER), "");
    let counted: f64 = rows["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .sum();
    assert_eq!(counted, n.div_ceil(16) as f64, "{rows}");
    // The log: leveled lines, the read-back said once, no line per epoch.
    let log = std::fs::read_to_string(&again.log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains(" INFO ") && l.contains(&format!("{n} records read back"))),
        "{log}"
    );
    assert!(!log.contains("store acknowledged revision"), "{log}");
    again.stop();
}

/// `VIGIE_LOG` filters the logs by level: at `warn`, a run that starts, writes its epochs and
/// stops cleanly writes nothing.
#[test]
fn vigie_log_sets_the_level_of_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("vigie.log");
    let child = vigie()
        .args(["run", "--data"])
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--mqtt-listen", "127.0.0.1:0"])
        .env("VIGIE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let run = Vigie {
        child,
        port,
        mqtt: 0,
        log: log.clone(),
    };
    client::wait_healthy(port, Some(&log));
    wait_for(10, "three epochs", || {
        metric(port, "vigie_engine_epochs_total", "") >= 3.0
    });
    run.stop();
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "");
}

/// The bytes of the files in `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Hostile input against the real `vigie run` (issue 19): 120 requests whose record has a 4 MiB
/// zone leave the resident memory within a bound and every reason short; damaged CSV is counted
/// row by row; a record dated 9999, an id over 128 bytes and a name typed into `zone` are
/// refused without quoting them; a huge range step is a 400; every answer carries the security
/// headers, `/metrics` takes a token, and the data folder is its owner's only.
#[test]
fn hostile_input_is_counted_and_costs_bounded_memory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let run = Vigie::start(
        dir.path(),
        Setup {
            extra: "[mappings.incidents_csv]\nfeed = \"incident\"\n\
                    time = { column = \"t\", format = \"unix\" }\n\
                    location = { zone = { column = \"z\" } }\nfields.severity = { column = \"s\" }\n",
            live_window: true,
            ..Setup::default()
        },
    );
    let pid = run.child.id();
    let now = chrono::Utc::now().timestamp();
    let post = |path: &str, content_type: &str, body: &str| -> (u16, serde_json::Value) {
        let (code, text) = client::request(
            run.port,
            "POST",
            path,
            Some(SOURCE_TOKEN),
            content_type,
            "",
            body,
        )
        .expect("vigie answers");
        (code, serde_json::from_str(&text).unwrap_or_default())
    };
    // Warm up (the first requests allocate what every request reuses), then measure.
    for _ in 0..5 {
        let (code, _) = post(
            "/api/v1/records",
            "application/json",
            &format!(r#"{{"feed":"incident","ts":{now},"zone":"13001","severity":2}}"#),
        );
        assert_eq!(code, 200);
    }
    let before = rss_mib(pid);
    let zone = "Z".repeat(4 << 20);
    for i in 0..120 {
        let body = format!(r#"{{"feed":"incident","ts":{now},"zone":"{zone}{i}","severity":2}}"#);
        let (code, answer) = post("/api/v1/records", "application/json", &body);
        assert_eq!(code, 400, "{answer}");
        assert_eq!(answer["rejected_total"], 1, "{answer}");
        let reason = answer["rejected"][0]["reason"].as_str().unwrap();
        assert!(reason.len() < 100 && !reason.contains("ZZ"), "{reason}");
    }
    let after = rss_mib(pid);
    eprintln!("RSS of vigie run: {before:.1} MiB before, {after:.1} MiB after 120 requests with a 4 MiB zone");
    // The issue measured +499 MiB (160 → 659), growing with every request (the dead letters
    // kept the values whole: ~8 GiB at worst); what stays now is the allocator's slack of the
    // request bodies, not the rejected values (measured here: +65 MiB on 2 cores, debug build).
    assert!(
        after - before < 128.0,
        "RSS grew by {:.1} MiB ({before:.1} → {after:.1})",
        after - before
    );
    let (code, letters) = client::request(
        run.port,
        "GET",
        "/api/v1/dead-letters",
        Some(SOURCE_TOKEN),
        "application/json",
        "",
        "",
    )
    .unwrap();
    assert_eq!(code, 200);
    assert!(
        letters.len() < 100 * 1024,
        "{} bytes of dead letters",
        letters.len()
    );

    // CSV of 7 rows, 3 good: an open quote, too few and too many cells, a quote closed in the
    // middle of a cell are each one rejected row, and swallow nothing.
    let csv = format!(
        "t,z,s\n{now},13001,2\n{now},\"13002,3\n{now},13003,3\n{now},13004\n{now},13005,1,9\n{now},\"130\"06,2\n{now},13007,4\n"
    );
    let (code, answer) = post("/api/v1/csv/incidents_csv", "text/csv", &csv);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        (&answer["accepted"], &answer["rejected_total"]),
        (&serde_json::json!(3), &serde_json::json!(4)),
        "{answer}"
    );
    let lines: Vec<u64> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![3, 5, 6, 7], "{answer}");

    // Dated 9999, an id of 129 bytes, a name in `zone`: refused, none of them quoted.
    let body = [
        r#"{"feed":"incident","ts":"9999-12-31T23:00:00Z","zone":"13001","severity":2}"#
            .to_string(),
        format!(
            r#"{{"feed":"incident","ts":{now},"id":"{}","zone":"13001","severity":2}}"#,
            "i".repeat(129)
        ),
        format!(r#"{{"feed":"incident","ts":{now},"zone":"Marie Curie","severity":2}}"#),
    ]
    .join("\n");
    let (code, answer) = post("/api/v1/records", "application/json", &body);
    assert_eq!(code, 400, "{answer}");
    let fields: Vec<&str> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["ts", "id", "zone"], "{answer}");
    let text = answer.to_string();
    assert!(!text.contains("iiii") && !text.contains("Curie"), "{text}");

    // The counters add up: 5 + 3 accepted; 120 + 4 + 3 rejected.
    wait_for(5, "the counters", || {
        run.metric("vigie_ingest_accepted_total", "source=\"ops\"") == 8.0
    });
    assert_eq!(
        run.metric("vigie_ingest_rejected_total", "source=\"ops\""),
        127.0
    );

    // A step whose milliseconds overflow: 400 naming `step`, and vigie still answers.
    let (code, answer) = run.json(
        "GET",
        "/api/v1/indicators/range?zone=13001&field=risk_score&step=9223372036854775807w",
        Some(vigie::VIEWER),
        "",
    );
    assert_eq!(
        (code, &answer["field"]),
        (400, &serde_json::json!("step")),
        "{answer}"
    );

    // Headers of a page and of an error; /metrics without a token.
    for path in ["/", "/api/v1/nowhere"] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", run.port)).unwrap();
        std::io::Write::write_all(
            &mut s,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let mut head = String::new();
        std::io::Read::read_to_string(&mut s, &mut head).unwrap();
        let head = head.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
        for h in [
            "content-security-policy: default-src 'none'; script-src 'self'",
            "x-frame-options: deny",
            "x-content-type-options: nosniff",
            "referrer-policy: no-referrer",
        ] {
            assert!(head.contains(h), "{path}: no {h} in\n{head}");
        }
    }
    let (code, _) = run.json("GET", "/metrics", None, "");
    assert_eq!(code, 401);

    // Owner-only: the data folder, the ingest log's files.
    let data = dir.path().join("data");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for sub in ["ingest", "store", "alerts"] {
        assert_eq!(mode(&data.join(sub)), 0o700, "{sub}");
    }
    let mut files = 0;
    for entry in std::fs::read_dir(data.join("ingest")).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            assert_eq!(mode(&p) & 0o077, 0, "{} is readable by others", p.display());
            files += 1;
        }
    }
    assert!(files > 0, "no file in the ingest log's folder");
    run.stop();
}
#[test]
fn health_answers_within_a_second_under_twenty_thousand_idle_connections() {
    // As many connections as this process may open, up to 20,000, less what the test itself
    // needs (its files, pipes, the requests below).
    let files = vigie_server::listener::raise_fd_limit().expect("the limit on open files");
    let wanted = (files.saturating_sub(300) as usize).min(20_000);
    assert!(
        wanted >= 2_000,
        "only {files} open files: raise the hard limit (ulimit -Hn) to run this test"
    );
    let dir = tempfile::tempdir().unwrap();
    // The default cap (10,000 connections, or the descriptors less 512); a short header
    // timeout to see half request lines closed within the test.
    let run = Vigie::start(
        dir.path(),
        Setup {
            extra: "[ingest.http]\nheader_read_timeout_secs = 6\n",
            ..Setup::default()
        },
    );
    let port = run.port;
    let cap = metric(port, "vigie_http_connections_max", "");
    assert!(cap >= 1_000.0, "cap {cap}");
    let t0 = std::time::Instant::now();
    let mut held = Vec::with_capacity(wanted);
    let mut half = Vec::new();
    let mut last_half_sent = t0;
    for i in 0..wanted {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        if i % 10 == 0 {
            // Half a request line and a header, never finished.
            use std::io::Write;
            let _ = s.write_all(b"GET /api/v1/zones HTTP/1.1\r\nHost: 127.0.0.1\r\n");
            half.push(i);
            last_half_sent = std::time::Instant::now();
        }
        held.push(s);
    }
    let opened = t0.elapsed();
    eprintln!(
        "{} idle connections ({} with a half request) opened in {opened:?}; cap {cap}",
        held.len(),
        half.len()
    );
    // Meanwhile /health answers, each time within a second…
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let answer = run.request("GET", "/health", None, "");
        let took = t.elapsed();
        assert_eq!(answer.map(|a| a.0), Some(200), "/health under load");
        assert!(
            took < std::time::Duration::from_secs(1),
            "/health took {took:?}"
        );
    }
    // …ingest takes a record…
    let record = format!(
        "{{\"feed\":\"incident\",\"zone\":\"13001\",\"ts\":{},\"severity\":2}}",
        client::now_s() - 60
    );
    let t = std::time::Instant::now();
    run.post_records(&[record]);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "ingest took {:?}",
        t.elapsed()
    );
    // …and the embedded broker too.
    let t = std::time::Instant::now();
    mosquitto::mosquitto_pub(
        run.mqtt,
        "vigie/incident/13002",
        &format!("{{\"ts\":{},\"severity\":1}}", client::now_s() - 60),
    );
    wait_for(10, "the MQTT record", || {
        metric(port, "vigie_mqtt_records_accepted_total", "") >= 1.0
    });
    eprintln!("an MQTT record in {:?} under the load", t.elapsed());
    let open = metric(port, "vigie_http_connections_open", "");
    let replaced = metric(
        port,
        "vigie_http_connections_closed_total",
        "reason=\"replaced_at_cap\"",
    );
    eprintln!("vigie holds {open} connections; {replaced} replaced at the cap");
    assert!(open <= cap + 1.0, "{open} open over the cap {cap}");
    // Every connection over the cap made room by closing an idle one (or an idle one had
    // timed out already); a few may still wait in the listen backlog.
    let timed_out = metric(
        port,
        "vigie_http_connections_closed_total",
        "reason=\"header_timeout\"",
    );
    assert!(
        replaced + timed_out + 200.0 >= wanted as f64 - cap,
        "{replaced} replaced and {timed_out} timed out for {wanted} connections over a cap of {cap}"
    );
    // The last half request line (the newest, still held by vigie) is closed once its header
    // timeout is past.
    let last = *half.last().unwrap();
    let s = &mut held[last];
    s.set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    let t = std::time::Instant::now();
    let mut buf = [0u8; 64];
    use std::io::Read;
    let n = s.read(&mut buf);
    assert!(
        matches!(n, Ok(0))
            || n.as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the half request was not closed: {n:?} after {:?}",
        t.elapsed()
    );
    // Closed by its header timeout (6 s), not by the end of the test: counted from when it was
    // sent, since opening the connections may take a minute on a loaded machine (63 s once in
    // CI, beside the other tests).
    assert!(
        last_half_sent.elapsed() < std::time::Duration::from_secs(6 + 30),
        "closed {:?} after it was sent",
        last_half_sent.elapsed()
    );
    drop(held);
    assert!(
        metric(
            port,
            "vigie_http_connections_closed_total",
            "reason=\"header_timeout\""
        ) >= 1.0
    );
    run.stop();
}

#[test]
fn a_client_taking_the_id_vigie_on_the_embedded_broker_takes_nothing_from_vigie() {
    let dir = tempfile::tempdir().unwrap();
    let run = Vigie::start(dir.path(), Setup::default());
    let port = run.port;
    wait_for(15, "vigie's subscription", || {
        metric(port, "vigie_mqtt_subscriptions_acked_total", "") >= 1.0
    });
    // A local client connects with the client id `vigie` and stays.
    let mut taker = std::process::Command::new(mosquitto::binary("mosquitto_sub", "/usr/bin"))
        .args(["-h", "127.0.0.1", "-p", &run.mqtt.to_string()])
        .args(["-i", "vigie", "-q", "1", "-t", "vigie/#"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mosquitto_sub");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let now = client::now_s();
    let lines: Vec<String> = (0..1_000)
        .map(|i| {
            format!(
                "{{\"ts\":{},\"severity\":1,\"id\":\"t-{i}\"}}",
                now - 3_600 + i
            )
        })
        .collect();
    mosquitto::mosquitto_pub_lines(run.mqtt, None, "vigie/incident/13001", &lines).unwrap();
    wait_for(30, "the 1,000 records", || {
        metric(port, "vigie_mqtt_records_accepted_total", "") >= 1_000.0
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        metric(port, "vigie_mqtt_records_accepted_total", ""),
        1_000.0
    );
    // vigie's subscriber was never pushed off: one connection all along.
    assert_eq!(metric(port, "vigie_mqtt_connections_total", ""), 1.0);
    assert_eq!(metric(port, "vigie_mqtt_connection_errors_total", ""), 0.0);
    let _ = taker.kill();
    let _ = taker.wait();
    run.stop();
}

#[test]
fn mosquitto_with_the_settings_of_mqtt_acl_keeps_3000_messages_while_vigie_is_away() {
    let dir = tempfile::tempdir().unwrap();
    let mport = free_port();
    // [ingest.mqtt] with its defaults: client id `vigie`, clean_session = false.
    let extra = mqtt_sources(
        dir.path(),
        &format!(
            "[ingest.mqtt]\nurl = \"mqtt://127.0.0.1:{mport}\"\nusername = \"vigie\"\npassword_file = \"vigie.pw\"\n\
             topics = [{{ filter = \"city/incident/+\", feed = \"incident\", source = \"police\", zone_from_topic = 2 }}]\n"
        ),
    );
    let setup = || Setup {
        extra: &extra,
        embedded_broker: false,
        ..Setup::default()
    };
    let config = setup().write(dir.path(), 0);
    let acl_dir = dir.path().join("acl");
    let (out, stderr) = run(vigie()
        .args(["mqtt-acl", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&acl_dir));
    assert!(out.status.success(), "{stderr}");
    let conf = std::fs::read_to_string(acl_dir.join("vigie.conf")).unwrap();
    assert!(conf.contains("max_queued_messages 1000000"), "{conf}");
    // Mosquitto with Debian's defaults and the settings included as the command advises.
    let broker = mosquitto::Broker::start_plain(
        &dir.path().join("broker"),
        mport,
        &format!("include_dir {}\n", acl_dir.display()),
    );
    // vigie subscribes once, then stops.
    let first = Vigie::start(dir.path(), setup());
    let port = first.port;
    wait_for(15, "vigie's subscription to Mosquitto", || {
        metric(port, "vigie_mqtt_subscriptions_acked_total", "") >= 1.0
    });
    first.stop();
    // 3,000 QoS 1 messages while it is away.
    let now = client::now_s();
    let lines: Vec<String> = (0..3_000)
        .map(|i| {
            format!(
                "{{\"ts\":{},\"severity\":1,\"id\":\"away-{i}\"}}",
                now - 7_200 + i
            )
        })
        .collect();
    mosquitto::mosquitto_pub_lines(
        mport,
        Some(("police", "police-pw")),
        "city/incident/13001",
        &lines,
    )
    .unwrap();
    // Back: every one arrives.
    let again = Vigie::start(dir.path(), setup());
    let port = again.port;
    wait_for(60, "the 3,000 queued messages", || {
        metric(port, "vigie_mqtt_records_accepted_total", "") >= 3_000.0
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        metric(port, "vigie_mqtt_records_accepted_total", ""),
        3_000.0
    );
    let log = broker.log();
    assert!(
        !log.contains("dropped"),
        "Mosquitto dropped messages: {}",
        log.lines()
            .filter(|l| l.contains("dropped"))
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    );
    again.stop();
}
