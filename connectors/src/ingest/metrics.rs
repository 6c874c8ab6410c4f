//! Counters of live ingest, rendered in the Prometheus text format for `GET /metrics`.
//!
//! Lines received, accepted and rejected per source and feed (rejected also per kind), and
//! requests per route and status. The server (`vigie-server`) renders them first on its
//! `/metrics` page, then its other counters (engine, log, MQTT, alerting, wall).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// The feed label of a line whose feed is not known (a malformed line).
pub const UNKNOWN_FEED: &str = "unknown";

#[derive(Default)]
struct Counters {
    received: BTreeMap<(String, &'static str), u64>,
    accepted: BTreeMap<(String, &'static str), u64>,
    rejected: BTreeMap<(String, &'static str, &'static str), u64>,
    requests: BTreeMap<(&'static str, u16), u64>,
    dead_letters_dropped: u64,
}

/// The counters; shared by every request (one short lock per update).
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics { .. }")
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Counters) -> T) -> T {
        // A panic elsewhere while counting leaves counts, not broken invariants.
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut c)
    }

    /// `n` lines of `feed` received from `source`, of which `accepted` were accepted (made
    /// durable).
    pub fn lines(&self, source: &str, feed: &'static str, received: u64, accepted: u64) {
        self.with(|c| {
            *c.received.entry((source.to_string(), feed)).or_default() += received;
            *c.accepted.entry((source.to_string(), feed)).or_default() += accepted;
        })
    }

    /// `n` lines of `feed` from `source` rejected as `kind`.
    pub fn rejected(&self, source: &str, feed: &'static str, kind: &'static str, n: u64) {
        self.with(|c| {
            *c.rejected
                .entry((source.to_string(), feed, kind))
                .or_default() += n
        })
    }

    /// Lines accepted so far, per (source, feed).
    pub fn accepted(&self) -> Vec<(String, &'static str, u64)> {
        self.with(|c| {
            c.accepted
                .iter()
                .map(|((s, f), n)| (s.clone(), *f, *n))
                .collect()
        })
    }

    /// Lines rejected so far, by feed (`unknown` for lines whose feed could not be told).
    pub fn rejected_by_feed(&self) -> BTreeMap<&'static str, u64> {
        self.with(|c| {
            let mut out = BTreeMap::new();
            for ((_, feed, _), n) in &c.rejected {
                *out.entry(*feed).or_default() += n;
            }
            out
        })
    }

    /// A request to `route` answered with `status`.
    pub fn request(&self, route: &'static str, status: u16) {
        self.with(|c| *c.requests.entry((route, status)).or_default() += 1)
    }

    /// Dead letters pushed out of the bounded store.
    pub fn dead_letters_dropped(&self, n: u64) {
        self.with(|c| c.dead_letters_dropped += n)
    }

    /// Appends the counters in the Prometheus text format (version 0.0.4).
    pub fn render(&self, out: &mut String) {
        self.with(|c| {
            header(
                out,
                "vigie_ingest_received_total",
                "Lines received by live ingest, per source and feed.",
            );
            for ((source, feed), n) in &c.received {
                sample(
                    out,
                    "vigie_ingest_received_total",
                    &[("source", source), ("feed", feed)],
                    *n,
                );
            }
            header(
                out,
                "vigie_ingest_accepted_total",
                "Records accepted and made durable in the ingest log, per source and feed.",
            );
            for ((source, feed), n) in &c.accepted {
                sample(
                    out,
                    "vigie_ingest_accepted_total",
                    &[("source", source), ("feed", feed)],
                    *n,
                );
            }
            header(
                out,
                "vigie_ingest_rejected_total",
                "Lines rejected, per source, feed and kind.",
            );
            for ((source, feed, kind), n) in &c.rejected {
                sample(
                    out,
                    "vigie_ingest_rejected_total",
                    &[("source", source), ("feed", feed), ("kind", kind)],
                    *n,
                );
            }
            header(
                out,
                "vigie_http_requests_total",
                "HTTP requests, per route and status.",
            );
            for ((route, status), n) in &c.requests {
                sample(
                    out,
                    "vigie_http_requests_total",
                    &[("route", route), ("status", &status.to_string())],
                    *n,
                );
            }
            header(
                out,
                "vigie_ingest_dead_letters_dropped_total",
                "Dead letters dropped from the bounded store to make room for newer ones.",
            );
            sample(
                out,
                "vigie_ingest_dead_letters_dropped_total",
                &[],
                c.dead_letters_dropped,
            );
        })
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a counter.
pub fn header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
}

/// Writes one sample line: `name{label="value",…} n`, label values escaped.
pub fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            for ch in v.chars() {
                match ch {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_escaped_labels() {
        let m = Metrics::new();
        m.lines("cams \"east\"", "density", 3, 2);
        m.rejected("cams \"east\"", "density", "invalid_field", 1);
        m.request("/api/v1/records", 200);
        m.request("/api/v1/records", 200);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains(
            "vigie_ingest_received_total{source=\"cams \\\"east\\\"\",feed=\"density\"} 3\n"
        ));
        assert!(out.contains(
            "vigie_ingest_rejected_total{source=\"cams \\\"east\\\"\",feed=\"density\",kind=\"invalid_field\"} 1\n"
        ));
        assert!(
            out.contains("vigie_http_requests_total{route=\"/api/v1/records\",status=\"200\"} 2\n")
        );
        assert!(out.contains("# TYPE vigie_ingest_accepted_total counter\n"));
        assert!(out.contains("vigie_ingest_dead_letters_dropped_total 0\n"));
    }
}
