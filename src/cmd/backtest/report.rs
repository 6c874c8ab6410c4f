//! The backtest's reports: Markdown for people, JSON for programs, and an SVG plot of the
//! skill at each cutoff, drawn here (a few lines and labels need no plotting library).

use super::{Inputs, Scored, Scores, Timings, FORECASTS};
use anyhow::Context;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use vigie_config::ModelParams;
use vigie_model::time::format_hour;

/// A finished backtest.
pub struct Run {
    pub command: String,
    pub config: String,
    pub zones: usize,
    pub model: ModelParams,
    pub inputs: Inputs,
    pub every: String,
    pub ahead: i64,
    pub scored: Vec<Scored>,
    pub timings: Timings,
}

/// One of a forecast's scores at a cutoff.
type Metric = fn(&Scores) -> Option<f64>;

/// One forecast's scores over all cutoffs: the mean of each index over the cutoffs where it
/// is defined, and the alarms pooled.
#[derive(Clone, Copy, Debug, Default)]
struct Summary {
    pai5: Option<f64>,
    pai10: Option<f64>,
    spearman: Option<f64>,
    hits: super::Hits,
}

fn mean(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values.flatten().collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// What the definitions say, for both reports.
const DEFINITIONS: &[(&str, &str)] = &[
    (
        "window",
        "the zone-hours of every zone in the hours [cutoff, cutoff + ahead)",
    ),
    (
        "realised",
        "the incidents' severity per zone-hour (the upsert winners, cancellations left out), from the same inputs",
    ),
    (
        "pai5, pai10",
        "predictive accuracy index: the share of the window's realised severity in the 5 % (10 %) of its zone-hours the forecast ranks highest, divided by 5 % (10 %); ties at the cut count in proportion to the places left; 1 is chance",
    ),
    (
        "spearman",
        "Spearman's rank correlation of forecast and realised severity over the window's zone-hours, ties given their average rank",
    ),
    (
        "hit rate",
        "of the zone-hours forecast at level 3 or 4 (alarms), the share with at least one incident; pooled over the cutoffs",
    ),
    (
        "recall",
        "of the zone-hours with at least one incident, the share that had an alarm; pooled over the cutoffs",
    ),
    (
        "v2, v1",
        "the engine's risk score (level) under model v2 and v1, as known at the cutoff: records known before it, the clock at the hour before it",
    ),
    (
        "last week",
        "the realised severity of the same hour one week before (known at the cutoff), as the model's raw risk through the zone's scale and the level thresholds",
    ),
    (
        "baseline",
        "model v1's baseline contribution alone, through the zone's scale and the level thresholds",
    ),
];

impl Run {
    fn summaries(&self) -> Vec<Summary> {
        (0..FORECASTS.len())
            .map(|i| {
                let of = |f: Metric| mean(self.scored.iter().map(|s| f(&s.scores[i])));
                let mut hits = super::Hits::default();
                for s in &self.scored {
                    hits.add(s.scores[i].hits);
                }
                Summary {
                    pai5: of(|s| s.pai5),
                    pai10: of(|s| s.pai10),
                    spearman: of(|s| s.spearman),
                    hits,
                }
            })
            .collect()
    }

    fn cutoff_span(&self) -> (String, String) {
        let first = self.scored.first().map(|s| format_hour(s.cutoff));
        let last = self.scored.last().map(|s| format_hour(s.cutoff));
        (first.unwrap_or_default(), last.unwrap_or_default())
    }

    /// Writes backtest.md, backtest.json and skill.svg into `dir`; returns their paths.
    pub fn write(&self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let files = [
            ("backtest.md", self.markdown()),
            (
                "backtest.json",
                serde_json::to_string_pretty(&self.json()).expect("json") + "\n",
            ),
            ("skill.svg", self.svg()),
        ];
        let mut paths = Vec::new();
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            paths.push(path);
        }
        Ok(paths)
    }

    /// The lines printed at the end of a run.
    pub fn summary(&self) -> String {
        let (first, last) = self.cutoff_span();
        let mut s = format!(
            "vigie backtest report\n  cutoffs:      {} ({first} .. {last}), {} hours ahead, {} zones\n  records read: {}\n  elapsed:      read {:.2} s, engine {:.2} s, scoring {:.2} s\n",
            self.scored.len(),
            self.ahead,
            self.zones,
            self.inputs.read,
            self.timings.read.as_secs_f64(),
            self.timings.engine.as_secs_f64(),
            self.timings.score.as_secs_f64(),
        );
        let _ = writeln!(
            s,
            "  {:<10} {:>7} {:>7} {:>8} {:>9} {:>7} {:>8}",
            "forecast", "PAI 5%", "PAI 10%", "Spearman", "hit rate", "recall", "alarms"
        );
        for (name, m) in FORECASTS.iter().zip(self.summaries()) {
            let _ = writeln!(
                s,
                "  {:<10} {:>7} {:>7} {:>8} {:>9} {:>7} {:>8}",
                name,
                num(m.pai5, 2),
                num(m.pai10, 2),
                num(m.spearman, 3),
                num(m.hits.precision(), 3),
                num(m.hits.recall(), 3),
                m.hits.alarms
            );
        }
        s
    }

    fn json(&self) -> Value {
        let scores = |s: &Scores| {
            json!({
                "pai5": s.pai5,
                "pai10": s.pai10,
                "spearman": s.spearman,
                "alarms": s.hits.alarms,
                "hits": s.hits.hits,
                "hit_rate": s.hits.precision(),
                "recall": s.hits.recall(),
            })
        };
        let by_name = |values: Vec<Value>| -> Value {
            FORECASTS
                .iter()
                .map(|n| n.to_string())
                .zip(values)
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let summary = self
            .summaries()
            .iter()
            .map(|m| {
                json!({
                    "mean_pai5": m.pai5,
                    "mean_pai10": m.pai10,
                    "mean_spearman": m.spearman,
                    "alarms": m.hits.alarms,
                    "hits": m.hits.hits,
                    "incident_hours": m.hits.incident_hours,
                    "hit_rate": m.hits.precision(),
                    "recall": m.hits.recall(),
                })
            })
            .collect();
        json!({
            "command": self.command,
            "config": self.config,
            "inputs": self.inputs.labels,
            "records_read": self.inputs.read,
            "records_by_feed": self.inputs.by_feed,
            "rejected_by_kind": self.inputs.rejected,
            "zones": self.zones,
            "model": {"weeks": self.model.weeks, "level_thresholds": self.model.level_thresholds},
            "every": self.every,
            "ahead_hours": self.ahead,
            "definitions": DEFINITIONS.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect::<serde_json::Map<_, _>>(),
            "summary": by_name(summary),
            "cutoffs": self.scored.iter().map(|s| json!({
                "cutoff": format_hour(s.cutoff),
                "known_records": s.known,
                "realised_severity": s.severity,
                "incident_hours": s.incident_hours,
                "forecasts": by_name(s.scores.iter().map(scores).collect()),
            })).collect::<Vec<_>>(),
            "elapsed_s": {
                "read": self.timings.read.as_secs_f64(),
                "engine": self.timings.engine.as_secs_f64(),
                "score": self.timings.score.as_secs_f64(),
            },
        })
    }

    fn markdown(&self) -> String {
        let (first, last) = self.cutoff_span();
        let mut m = String::new();
        let _ = writeln!(m, "# Forecast backtest\n");
        let _ = writeln!(m, "```\n{}\n```\n", self.command);
        let feeds: Vec<String> = self
            .inputs
            .by_feed
            .iter()
            .map(|(f, n)| format!("{n} {f}"))
            .collect();
        let rejected: u64 = self.inputs.rejected.values().sum();
        let _ = writeln!(
            m,
            "- configuration: `{}` ({} zones, W = {} weeks, level thresholds {:?})",
            self.config, self.zones, self.model.weeks, self.model.level_thresholds
        );
        let _ = writeln!(
            m,
            "- inputs: {}",
            self.inputs
                .labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            m,
            "- records: {} read, {} rejected; accepted by feed: {}",
            self.inputs.read,
            rejected,
            feeds.join(", ")
        );
        let _ = writeln!(
            m,
            "- cutoffs: {} from {first} to {last}, every {}; each scores the {} hours after it ({} zone-hours)",
            self.scored.len(),
            self.every,
            self.ahead,
            self.ahead * self.zones as i64
        );
        let _ = writeln!(
            m,
            "- elapsed: reading {:.2} s, both engines over every cutoff {:.2} s, scoring {:.2} s\n",
            self.timings.read.as_secs_f64(),
            self.timings.engine.as_secs_f64(),
            self.timings.score.as_secs_f64()
        );
        let _ = writeln!(m, "## Summary\n");
        let _ = writeln!(m, "Mean over the cutoffs (PAI, Spearman); alarms pooled over the cutoffs (hit rate, recall).\n");
        let _ = writeln!(
            m,
            "| forecast | PAI 5 % | PAI 10 % | Spearman | hit rate | recall | alarms | hits |"
        );
        let _ = writeln!(m, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for (name, s) in FORECASTS.iter().zip(self.summaries()) {
            let _ = writeln!(
                m,
                "| {name} | {} | {} | {} | {} | {} | {} | {} |",
                num(s.pai5, 2),
                num(s.pai10, 2),
                num(s.spearman, 3),
                num(s.hits.precision(), 3),
                num(s.hits.recall(), 3),
                s.hits.alarms,
                s.hits.hits
            );
        }
        let _ = writeln!(m, "\n![PAI 10 % and Spearman per cutoff](skill.svg)\n");
        let _ = writeln!(m, "## Definitions\n");
        for (k, v) in DEFINITIONS {
            let _ = writeln!(m, "- **{k}**: {v}.");
        }
        let _ = writeln!(m, "\n## Per cutoff\n");
        let _ = write!(m, "| cutoff (UTC) | severity | incident zone-hours |");
        for f in FORECASTS {
            let _ = write!(m, " {f} PAI 10 % |");
        }
        for f in FORECASTS {
            let _ = write!(m, " {f} ρ |");
        }
        let _ = writeln!(m);
        let _ = writeln!(
            m,
            "|---|---:|---:{}",
            "|---:".repeat(2 * FORECASTS.len()) + "|"
        );
        for s in &self.scored {
            let _ = write!(
                m,
                "| {} | {} | {} |",
                &format_hour(s.cutoff)[..16],
                s.severity,
                s.incident_hours
            );
            for sc in &s.scores {
                let _ = write!(m, " {} |", num(sc.pai10, 2));
            }
            for sc in &s.scores {
                let _ = write!(m, " {} |", num(sc.spearman, 3));
            }
            let _ = writeln!(m);
        }
        m
    }

    fn svg(&self) -> String {
        let panels: [(&str, Metric); 2] = [
            ("PAI at 10 % of zone-hours", |s| s.pai10),
            ("Spearman rank correlation", |s| s.spearman),
        ];
        let labels: Vec<String> = self
            .scored
            .iter()
            .map(|s| format_hour(s.cutoff)[..10].to_string())
            .collect();
        let series = |f: Metric| -> Vec<Vec<Option<f64>>> {
            (0..FORECASTS.len())
                .map(|i| self.scored.iter().map(|s| f(&s.scores[i])).collect())
                .collect()
        };
        let panels: Vec<(&str, Vec<Vec<Option<f64>>>)> =
            panels.iter().map(|(t, f)| (*t, series(*f))).collect();
        svg::plot("Forecast skill per cutoff", &labels, &FORECASTS, &panels)
    }
}

/// A number with `digits` decimals, or a dash when undefined.
fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".to_string(), |v| format!("{v:.digits$}"))
}

mod svg {
    //! Line charts stacked in panels sharing one axis of categories.

    use std::fmt::Write as _;

    const WIDTH: f64 = 960.0;
    const PANEL: f64 = 260.0;
    const LEFT: f64 = 60.0;
    const RIGHT: f64 = 150.0;
    const TOP: f64 = 40.0;
    const GAP: f64 = 50.0;
    const COLOURS: [&str; 6] = [
        "#c0392b", "#2471a3", "#229954", "#7f8c8d", "#8e44ad", "#d68910",
    ];

    /// `panels`: a title and one series per name, each a value (or a gap) per label.
    pub fn plot(
        title: &str,
        labels: &[String],
        names: &[&str],
        panels: &[(&str, Vec<Vec<Option<f64>>>)],
    ) -> String {
        let height = TOP + panels.len() as f64 * (PANEL + GAP) + 10.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="22" font-size="16" font-weight="bold">{}</text>"#,
            escape(title)
        );
        let plot_w = WIDTH - LEFT - RIGHT;
        let n = labels.len().max(1);
        let x = |i: usize| {
            if n == 1 {
                LEFT + plot_w / 2.0
            } else {
                LEFT + plot_w * i as f64 / (n - 1) as f64
            }
        };
        for (p, (ptitle, series)) in panels.iter().enumerate() {
            let top = TOP + p as f64 * (PANEL + GAP) + 20.0;
            let values = series.iter().flatten().flatten().copied();
            let (lo, hi) = values.fold((0.0f64, 1.0f64), |(a, b), v| (a.min(v), b.max(v)));
            let (lo, hi) = nice_range(lo, hi);
            let y = |v: f64| top + PANEL - (v - lo) / (hi - lo) * PANEL;
            let _ = writeln!(
                s,
                r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
                top - 8.0,
                escape(ptitle)
            );
            let _ = writeln!(
                s,
                r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#999"/>"##
            );
            // Horizontal grid lines with their values.
            let step = (hi - lo) / 5.0;
            for k in 0..=5 {
                let v = lo + step * k as f64;
                let yy = y(v);
                let _ = writeln!(
                    s,
                    r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                    LEFT + plot_w,
                    LEFT - 6.0,
                    yy + 4.0,
                    trim(v)
                );
            }
            // Category labels, at most about twelve.
            let every = labels.len().div_ceil(12).max(1);
            for (i, l) in labels.iter().enumerate().filter(|(i, _)| i % every == 0) {
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{}" text-anchor="middle" font-size="10">{}</text>"#,
                    x(i),
                    top + PANEL + 14.0,
                    escape(l)
                );
            }
            // The first series last, on top of those it may hide.
            for (k, line) in series.iter().enumerate().rev() {
                let colour = COLOURS[k % COLOURS.len()];
                // A polyline per run of defined values; a dot for each value.
                let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
                for (i, v) in line.iter().enumerate() {
                    match v {
                        Some(v) => runs.last_mut().expect("a run").push((x(i), y(*v))),
                        None => runs.push(Vec::new()),
                    }
                }
                for run in runs.iter().filter(|r| r.len() > 1) {
                    let points: Vec<String> =
                        run.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
                    let _ = writeln!(
                        s,
                        r#"<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{}"/>"#,
                        points.join(" ")
                    );
                }
                for (a, b) in runs.iter().flatten() {
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{a:.1}" cy="{b:.1}" r="2.5" fill="{colour}"/>"#
                    );
                }
            }
            for (k, name) in names.iter().enumerate() {
                let ly = top + 16.0 + 18.0 * k as f64;
                let lx = LEFT + plot_w + 16.0;
                let _ = writeln!(
                    s,
                    r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
                    lx + 20.0,
                    COLOURS[k % COLOURS.len()],
                    lx + 26.0,
                    ly + 4.0,
                    escape(name)
                );
            }
        }
        s.push_str("</svg>\n");
        s
    }

    /// A range that starts and ends on round values and holds `lo..hi`.
    fn nice_range(lo: f64, hi: f64) -> (f64, f64) {
        let span = (hi - lo).max(1e-9);
        let unit = 10f64.powf(span.log10().floor()) / 2.0;
        ((lo / unit).floor() * unit, (hi / unit).ceil() * unit)
    }

    fn trim(v: f64) -> String {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }

    fn escape(t: &str) -> String {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }
}
