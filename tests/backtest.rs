//! End-to-end tests of `vigie backtest`: the real binary on a hand-made history whose every
//! score is known, and on the shipped year of Vancouver incidents.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn vigie() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigie"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a backtest into `out`; returns its JSON report and what it printed.
fn backtest(args: &[&str], out: &Path) -> (Value, String) {
    let res = vigie()
        .arg("backtest")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("vigie starts");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(res.status.success(), "{text}");
    for f in ["backtest.md", "backtest.json", "skill.svg"] {
        assert!(out.join(f).exists(), "{f} missing: {text}");
    }
    let json = std::fs::read_to_string(out.join("backtest.json")).unwrap();
    (serde_json::from_str(&json).unwrap(), text)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Two zones without geometry in UTC. Zone a has a severity-3 incident every day at 10:00
/// from Monday 2026-01-05 to Sunday 2026-02-15; zone b none, but a match of 80,000 on
/// Wednesday 2026-01-28 12:00-14:00 published before the first cutoff (Monday 2026-01-26), and
/// another on Thursday 2026-01-29 published after it, which that cutoff must not see.
#[test]
fn every_score_of_a_hand_made_history() {
    let dir = tempfile::tempdir().unwrap();
    let zone = |id: &str| {
        format!(
            r#"{{"type":"Feature","geometry":null,"properties":{{"id":"{id}","name":"{id}","capacity":1000000,"scale":2,"min_agents":0,"max_agents":4,"default_density":100}}}}"#
        )
    };
    std::fs::write(
        dir.path().join("zones.geojson"),
        format!(
            r#"{{"type":"FeatureCollection","features":[{},{}]}}"#,
            zone("a"),
            zone("b")
        ),
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "timezone = \"UTC\"\nzones = \"zones.geojson\"\n[model]\nweeks = 2\npast_hours = 168\nfuture_hours = 336\n",
    )
    .unwrap();
    let mut lines = Vec::new();
    for day in 0..42 {
        let ts = 1_767_607_200 + day * 86_400; // 2026-01-05T10:00:00Z
        lines.push(format!(
            r#"{{"feed":"incident","ts":{ts},"zone":"a","severity":3}}"#
        ));
    }
    for (id, published, start) in [
        ("seen", "2026-01-20T09:00:00Z", "2026-01-28T12:00:00Z"),
        ("unseen", "2026-01-27T09:00:00Z", "2026-01-29T12:00:00Z"),
    ] {
        let end = start.replace("T12", "T14");
        lines.push(format!(
            r#"{{"feed":"event","ts":"{published}","id":"{id}","zone":"b","start":"{start}","end":"{end}","attendance":80000,"kind":"sport"}}"#
        ));
    }
    let input = dir.path().join("history.ndjson");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("report");
    let (report, text) = backtest(
        &[
            "--config",
            config.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--from",
            "2026-01-26T00:00:00Z",
        ],
        &out,
    );
    let cutoffs = report["cutoffs"].as_array().unwrap();
    // February 9 would need incidents until February 16 00:00; the last is February 15 10:00.
    assert_eq!(cutoffs.len(), 2, "{text}");
    assert_eq!(cutoffs[0]["cutoff"], "2026-01-26T00:00:00Z");
    assert_eq!(cutoffs[1]["cutoff"], "2026-02-02T00:00:00Z");
    // Known before January 26: 21 incidents and the first event; before February 2, 28 and both.
    assert_eq!(cutoffs[0]["known_records"], 22);
    assert_eq!(cutoffs[1]["known_records"], 30);
    for c in cutoffs {
        // Seven incidents of severity 3 in the window, in seven zone-hours.
        assert_eq!(f(&c["realised_severity"]), 21.0);
        assert_eq!(c["incident_hours"], 7);
        for name in ["v2", "v1", "last week", "baseline"] {
            let s = &c["forecasts"][name];
            // The seven 10:00 hours of zone a rank first (after the match hours for v2):
            // 5 % of 336 zone-hours is 16.8 places, which hold all the severity.
            assert_eq!(f(&s["pai5"]), 20.0, "{name} {s}");
            assert_eq!(f(&s["pai10"]), 10.0, "{name} {s}");
        }
    }
    let at = |k: usize, name: &str, key: &str| cutoffs[k]["forecasts"][name][key].clone();
    // Every forecast but v2 at the first cutoff ranks exactly as the incidents fell. Score of
    // zone a at 10:00: the baseline (3 + 3) / 2 = 3 through scale 2, 77.7: level 4.
    for k in 0..2 {
        for name in ["v1", "last week", "baseline"] {
            assert!((f(&at(k, name, "spearman")) - 1.0).abs() < 1e-12, "{name}");
            assert_eq!(at(k, name, "alarms"), 7, "{name}");
            assert_eq!(at(k, name, "hits"), 7, "{name}");
        }
    }
    // v2 sees the first match's exposure (80 · 0.12 = 9.6 through scale 2: level 4, no
    // incident), not the second's, published after the cutoff; v1 has no exposure.
    assert_eq!(at(0, "v2", "alarms"), 9);
    assert_eq!(at(0, "v2", "hits"), 7);
    assert!(f(&at(0, "v2", "spearman")) < 0.99);
    assert_eq!(at(1, "v2", "alarms"), 7);
    assert!((f(&at(1, "v2", "spearman")) - 1.0).abs() < 1e-12);
    let v2 = &report["summary"]["v2"];
    assert_eq!(
        (v2["alarms"].clone(), v2["hits"].clone()),
        (16.into(), 14.into())
    );
    assert!((f(&v2["hit_rate"]) - 14.0 / 16.0).abs() < 1e-12);
    assert!((f(&v2["recall"]) - 1.0).abs() < 1e-12);
    // The Markdown says the same, and the plot has a line per forecast.
    let md = std::fs::read_to_string(out.join("backtest.md")).unwrap();
    assert!(md.contains("| v2 | 20.00 | 10.00 |"), "{md}");
    let svg = std::fs::read_to_string(out.join("skill.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(
        svg.matches("<polyline").count(),
        8,
        "4 forecasts × 2 panels"
    );
}

/// The shipped year of Vancouver incidents: weekly cutoffs from the first Monday four weeks
/// in to the last with a week after it; the models rank far better than chance, and on
/// incidents alone v2 forecasts what v1 does.
#[test]
fn the_shipped_vancouver_year() {
    let dir = tempfile::tempdir().unwrap();
    let data = repo().join("data/vancouver_vpd_crime_2020.zip");
    let (report, text) = backtest(
        &[
            "--config",
            repo().join("config/vancouver.toml").to_str().unwrap(),
            "--input",
            &format!("vancouver_crime={}", data.display()),
        ],
        dir.path(),
    );
    let cutoffs = report["cutoffs"].as_array().unwrap();
    assert_eq!(cutoffs.len(), 47, "{text}");
    // Mondays at local midnight: 08:00 UTC in winter, 07:00 in summer.
    assert_eq!(cutoffs[0]["cutoff"], "2020-02-03T08:00:00Z");
    assert_eq!(cutoffs[10]["cutoff"], "2020-04-13T07:00:00Z");
    assert_eq!(cutoffs[46]["cutoff"], "2020-12-21T08:00:00Z");
    let mut known = 0;
    for c in cutoffs {
        let k = c["known_records"].as_u64().unwrap();
        assert!(k > known, "the history grows");
        known = k;
        assert!(f(&c["realised_severity"]) > 500.0, "{c}");
        let (v1, v2) = (&c["forecasts"]["v1"], &c["forecasts"]["v2"]);
        for key in ["pai5", "pai10", "spearman", "alarms", "hits"] {
            assert_eq!(v1[key], v2[key], "{key} at {}", c["cutoff"]);
        }
    }
    let s = &report["summary"];
    for name in ["v1", "last week", "baseline"] {
        assert!(f(&s[name]["mean_pai10"]) > 2.0, "{name}: {s}");
        assert!(f(&s[name]["mean_spearman"]) > 0.1, "{name}: {s}");
    }
    assert!(text.contains("vigie backtest report"), "{text}");
}

#[test]
fn a_history_too_short_for_a_cutoff_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("short.ndjson");
    std::fs::write(
        &input,
        r#"{"feed":"incident","ts":"2026-11-02T10:00:00Z","zone":"13001","severity":2}"#,
    )
    .unwrap();
    let out = vigie()
        .args(["backtest", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(dir.path().join("r"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no cutoff"), "{err}");
    assert!(!dir.path().join("r").exists());
}

/// Runs `vigie` with its stdout on a pseudo-terminal (Python's pty module) and returns what it
/// wrote there.
fn on_a_terminal(args: &[&str]) -> String {
    const SCRIPT: &str = r#"
import os, pty, subprocess, sys
master, slave = pty.openpty()
p = subprocess.Popen(sys.argv[1:], stdout=slave, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
os.close(slave)
out = b""
while True:
    try:
        chunk = os.read(master, 65536)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
sys.stdout.buffer.write(out)
sys.exit(p.wait())
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT, env!("CARGO_BIN_EXE_vigie")])
        .args(args)
        .env("VIGIE_PROGRESS_AFTER_MS", "0")
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    text
}

/// On a terminal, backtests and replays show their progress (records, rate, time left) and
/// clear it before the report; into a pipe they print the report alone.
#[test]
fn progress_is_shown_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = repo().join("config/vancouver.toml");
    let input = format!(
        "vancouver_crime={}",
        repo().join("data/vancouver_vpd_crime_2020.zip").display()
    );
    let out = dir.path().join("r");
    let backtest_args = [
        "backtest",
        "--config",
        config.to_str().unwrap(),
        "--input",
        &input,
        "--to",
        "2020-03-01T00:00:00Z",
        "--out",
        out.to_str().unwrap(),
    ];
    let replay_args = [
        "replay",
        "--config",
        config.to_str().unwrap(),
        "--input",
        &input,
    ];
    for (args, doing) in [
        (&backtest_args[..], "cutoff 4/4"),
        (&replay_args[..], "replaying"),
    ] {
        let shown = on_a_terminal(args);
        assert!(shown.contains(doing), "{shown}");
        assert!(shown.contains("records"), "{shown}");
        assert!(shown.contains("ETA"), "{shown}");
        assert!(shown.contains("report"), "{shown}");
        let piped = vigie()
            .args(args)
            .env("VIGIE_PROGRESS_AFTER_MS", "0")
            .output()
            .unwrap();
        let piped = String::from_utf8_lossy(&piped.stdout);
        assert!(
            piped.contains("report") && !piped.contains("ETA"),
            "{piped}"
        );
    }
}
