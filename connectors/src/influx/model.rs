//! The data model vigie writes to an external time-series database (InfluxDB 2, or
//! VictoriaMetrics and other Prometheus-style stores through InfluxDB's write API): how the
//! engine's [`Point`]s, which the embedded store keeps as *(hour, revision)* pairs, become
//! points a database with one time axis can hold in full. `docs/tsdb.md` documents it for the
//! people who query it.
//!
//! The engine's indicator points are stamped at the hour they are about, up to 30 days ahead.
//! A database keeps one time axis, so stamping a forecast at its hour has two flaws: a server
//! may refuse the future (VictoriaMetrics ignores samples more than two days ahead, answering
//! 204 all the same), and each revision of an hour overwrites the last at the same timestamp
//! (under VictoriaMetrics' deduplication an arbitrary one wins). Here every point is stamped
//! with its **revision time**, the time vigie computed it (always "now" live, so always
//! accepted; never repeated, so never deduplicated away), and what it is about goes in tags:
//!
//! - `vigie_forecast`, tags `zone`, `target` (the hour the figures are for, RFC 3339 in UTC,
//!   `2026-12-05T14:00:00Z`) and `day` (the target's date in the city's time zone); fields:
//!   the indicator fields that changed at this revision, and `lead_h`, the target hour minus
//!   the revision's hour (0 the current hour, negative for the past week). The latest sample
//!   of a (zone, target, field) series is the latest forecast; the last sample at or before a
//!   time T is the forecast as known at T.
//! - `vigie_now`, tag `zone`: the current hour's figures. At the first revision of each hour
//!   every field of every zone's row for that hour; within the hour, the fields that changed.
//!   The last sample within an hour is therefore always the risk now.
//! - `vigie_clash`, tags `zone`, `a`, `b`, `reason` and `start` (the overlap's start, RFC 3339):
//!   fields `active` (1 appeared, 0 ended) and `end_ms`.
//! - `vigie_feed`, tag `feed`: the feeds' health, as the engine gives it.
//!
//! Any other point (none today) goes unchanged. `lead_h` is a field, not a tag: as a tag every
//! revision would open new series (one per zone, target, field and revision) and "the latest
//! value" would need a join across them; as a field the revisions of one (zone, target, field)
//! stay one series.
//!
//! The model keeps, for the current hour and the hours after it, the latest value of every
//! indicator field of every zone, to write the full `vigie_now` rows when the hour turns: at
//! most zones × future hours × 26 floats (about 30 MB for 200 zones and 30 days).

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use std::collections::BTreeMap;
use vigie_model::point::{ALL_FIELDS, CLASH, FEED, INDICATOR};
use vigie_model::Point;

/// The measurement of forecasts, stamped at their revision.
pub const FORECAST: &str = "vigie_forecast";
/// The measurement of the current hour's figures.
pub const NOW: &str = "vigie_now";
/// The measurement of clashes, stamped at their revision.
pub const CLASH_OUT: &str = "vigie_clash";
/// The measurement of the feeds' health.
pub const FEED_OUT: &str = "vigie_feed";

const HOUR_MS: i64 = 3_600_000;

/// The hour as RFC 3339 in UTC, to the second: `2026-12-05T14:00:00Z`.
pub fn rfc3339(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) if ms % 1000 == 0 => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => ms.to_string(),
    }
}

/// Turns the engine's points into the database's, revision by revision; see the module's doc.
pub struct TsdbModel {
    tz: Tz,
    /// The hour of the last revision, whose `vigie_now` rows were written whole.
    now_hour: Option<i64>,
    /// Latest value of each indicator field (NaN: undefined or never given) by (hour, zone),
    /// for the hours from `now_hour` on.
    rows: BTreeMap<(i64, String), [f64; ALL_FIELDS.len()]>,
}

impl TsdbModel {
    /// A model whose `day` tags are dates in `tz`, the city's time zone.
    pub fn new(tz: Tz) -> TsdbModel {
        TsdbModel {
            tz,
            now_hour: None,
            rows: BTreeMap::new(),
        }
    }

    /// The database's points for the engine's `points` of one revision made at `rev_ms`
    /// (increasing from one call to the next).
    pub fn points(&mut self, points: &[Point], rev_ms: i64) -> Vec<Point> {
        let hour = rev_ms.div_euclid(HOUR_MS);
        let new_hour = self.now_hour != Some(hour);
        if new_hour {
            // The hours before this one are past: their rows are no longer needed.
            self.rows = self.rows.split_off(&(hour, String::new()));
            self.now_hour = Some(hour);
        }
        let mut out = Vec::with_capacity(points.len() + 16);
        // Within the hour, the changed fields of the current hour's rows, by zone.
        let mut now_changes: BTreeMap<&str, Vec<(String, f64)>> = BTreeMap::new();
        for p in points {
            match p.measurement.as_str() {
                INDICATOR => {
                    let target = p.ts_ms.div_euclid(HOUR_MS);
                    let zone = tag(p, "zone").unwrap_or("");
                    if target >= hour {
                        let row = self
                            .rows
                            .entry((target, zone.to_string()))
                            .or_insert([f64::NAN; ALL_FIELDS.len()]);
                        for (k, v) in &p.fields {
                            if let Some(i) = ALL_FIELDS.iter().position(|f| f == k) {
                                row[i] = *v;
                            }
                        }
                        if target == hour && !new_hour {
                            now_changes
                                .entry(zone)
                                .or_default()
                                .extend(p.fields.iter().cloned());
                        }
                    }
                    let mut tags = p.tags.clone();
                    tags.push(("target".into(), rfc3339(target * HOUR_MS)));
                    tags.push(("day".into(), self.local_day(target * HOUR_MS)));
                    let mut fields = p.fields.clone();
                    fields.push(("lead_h".into(), (target - hour) as f64));
                    out.push(Point::new(FORECAST, tags, fields, rev_ms));
                }
                CLASH => {
                    let mut tags = p.tags.clone();
                    tags.push(("start".into(), rfc3339(p.ts_ms)));
                    out.push(Point::new(CLASH_OUT, tags, p.fields.clone(), rev_ms));
                }
                FEED => out.push(Point {
                    measurement: FEED_OUT.into(),
                    ..p.clone()
                }),
                _ => out.push(p.clone()),
            }
        }
        if new_hour {
            let from = (hour, String::new());
            let to = (hour + 1, String::new());
            for ((_, zone), row) in self.rows.range(from..to) {
                let fields: Vec<(String, f64)> = ALL_FIELDS
                    .iter()
                    .zip(row)
                    .filter(|(_, v)| !v.is_nan())
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect();
                if !fields.is_empty() {
                    out.push(Point::new(
                        NOW,
                        vec![("zone".into(), zone.clone())],
                        fields,
                        rev_ms,
                    ));
                }
            }
        } else {
            for (zone, fields) in now_changes {
                out.push(Point::new(
                    NOW,
                    vec![("zone".into(), zone.to_string())],
                    fields,
                    rev_ms,
                ));
            }
        }
        out
    }

    fn local_day(&self, ms: i64) -> String {
        match self.tz.timestamp_millis_opt(ms).single() {
            Some(t) => t.format("%Y-%m-%d").to_string(),
            None => rfc3339(ms)[..10].to_string(),
        }
    }
}

fn tag<'a>(p: &'a Point, key: &str) -> Option<&'a str> {
    p.tags
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_MS;
    /// 2026-12-04T10:00:00Z, a Friday.
    const T0: i64 = 1_796_378_400_000;

    fn indicator(zone: &str, hour_ms: i64, fields: &[(&str, f64)]) -> Point {
        Point::new(
            INDICATOR,
            vec![("zone".into(), zone.into())],
            fields.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            hour_ms,
        )
    }

    fn find<'a>(out: &'a [Point], m: &str, tags: &[(&str, &str)]) -> Vec<&'a Point> {
        out.iter()
            .filter(|p| p.measurement == m)
            .filter(|p| tags.iter().all(|(k, v)| tag(p, k) == Some(*v)))
            .collect()
    }

    #[test]
    fn rfc3339_is_utc_to_the_second() {
        assert_eq!(rfc3339(T0), "2026-12-04T10:00:00Z");
        assert_eq!(rfc3339(T0 + 1), "2026-12-04T10:00:00.001Z");
    }

    #[test]
    fn forecasts_are_stamped_at_their_revision_with_target_day_and_lead() {
        let mut m = TsdbModel::new("America/Vancouver".parse().unwrap());
        let rev = T0 + 123;
        // 30 days ahead, and a week back; 2026-12-06T05:00Z is still the 5th in Vancouver.
        let far = T0 + 720 * H;
        let past = T0 - 168 * H;
        let sat = 1_796_533_200_000; // 2026-12-06T05:00:00Z
        let out = m.points(
            &[
                indicator("z1", far, &[("risk_score", 7.5)]),
                indicator("z1", past, &[("risk_score", 1.0), ("risk_level", 1.0)]),
                indicator("z2", sat, &[("risk_score", 2.0)]),
            ],
            rev,
        );
        let f = find(&out, FORECAST, &[("target", "2027-01-03T10:00:00Z")]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].ts_ms, rev);
        assert_eq!(tag(f[0], "zone"), Some("z1"));
        assert_eq!(tag(f[0], "day"), Some("2027-01-03"));
        assert_eq!(
            f[0].fields,
            vec![("risk_score".into(), 7.5), ("lead_h".into(), 720.0)]
        );
        let p = find(&out, FORECAST, &[("target", "2026-11-27T10:00:00Z")]);
        assert_eq!(p[0].fields.last(), Some(&("lead_h".into(), -168.0)));
        let s = find(&out, FORECAST, &[("zone", "z2")]);
        assert_eq!(tag(s[0], "day"), Some("2026-12-05"));
        // No row of the current hour yet: no `vigie_now`.
        assert!(find(&out, NOW, &[]).is_empty());
    }

    #[test]
    fn the_now_series_is_whole_at_each_new_hour_and_changes_within_it() {
        let mut m = TsdbModel::new(chrono_tz::UTC);
        // Revision 1, hour T0: rows for T0 and T0 + 1h.
        let out = m.points(
            &[
                indicator("a", T0, &[("risk_score", 5.0), ("risk_level", 1.0)]),
                indicator("b", T0, &[("risk_score", 6.0)]),
                indicator("a", T0 + H, &[("risk_score", 8.0), ("risk_level", 2.0)]),
            ],
            T0 + 10,
        );
        let now = find(&out, NOW, &[]);
        assert_eq!(now.len(), 2);
        assert!(now.iter().all(|p| p.ts_ms == T0 + 10));
        assert_eq!(
            find(&out, NOW, &[("zone", "a")])[0].fields,
            vec![("risk_score".into(), 5.0), ("risk_level".into(), 1.0)]
        );
        // Revision 2, same hour: a's level changes, and a future hour: only a's change.
        let out = m.points(
            &[
                indicator("a", T0, &[("risk_level", 3.0)]),
                indicator("a", T0 + H, &[("risk_score", 9.0)]),
            ],
            T0 + 20,
        );
        let now = find(&out, NOW, &[]);
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].fields, vec![("risk_level".into(), 3.0)]);
        assert_eq!(now[0].ts_ms, T0 + 20);
        // Revision 3, next hour, with no change at all: the whole row of T0 + 1h, as last
        // revised, for the zone that has one.
        let out = m.points(&[], T0 + H + 5);
        let now = find(&out, NOW, &[]);
        assert_eq!(now.len(), 1);
        assert_eq!(tag(now[0], "zone"), Some("a"));
        assert_eq!(
            now[0].fields,
            vec![("risk_score".into(), 9.0), ("risk_level".into(), 2.0)]
        );
        assert_eq!(now[0].ts_ms, T0 + H + 5);
        // The past hour's rows are forgotten.
        assert!(m.rows.keys().all(|(h, _)| *h > T0 / H));
    }

    #[test]
    fn clashes_and_feeds_are_stamped_at_their_revision() {
        let mut m = TsdbModel::new(chrono_tz::UTC);
        let clash = Point::new(
            CLASH,
            vec![
                ("zone".into(), "a".into()),
                ("reason".into(), "capacity".into()),
            ],
            vec![("active".into(), 1.0)],
            T0 + 300 * H + 1_800_000,
        );
        let feed = Point::new(
            FEED,
            vec![("feed".into(), "weather".into())],
            vec![("accepted".into(), 3.0)],
            T0 + 7,
        );
        let out = m.points(&[clash, feed], T0 + 7);
        let c = find(&out, CLASH_OUT, &[("start", "2026-12-16T22:30:00Z")]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].ts_ms, T0 + 7);
        assert_eq!(c[0].fields, vec![("active".into(), 1.0)]);
        let f = find(&out, FEED_OUT, &[("feed", "weather")]);
        assert_eq!(f[0].ts_ms, T0 + 7);
    }
}
