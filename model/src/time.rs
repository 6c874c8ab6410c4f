//! Time arithmetic of the reference model: hour buckets, hour of week and week index in the
//! configured time zone, and timestamp parsing and formatting.
//!
//! Timestamps are `i64` microseconds since the Unix epoch (UTC): fine enough for any feed, and
//! wide enough for ±292,000 years.

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, SecondsFormat, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// Microseconds in one second.
pub const SECOND_US: i64 = 1_000_000;
/// Microseconds in one hour.
pub const HOUR_US: i64 = 3_600 * SECOND_US;

/// `hour(t) = floor(t / 3600)`, with `t` in microseconds.
pub fn hour_of(ts_us: i64) -> i64 {
    ts_us.div_euclid(HOUR_US)
}

/// The first microsecond of hour `h`.
pub fn hour_start(h: i64) -> i64 {
    h * HOUR_US
}

/// Hours `h` with `start < (h+1)·3600` and `end > h·3600`: the hours an interval overlaps,
/// as an inclusive range (empty when `lo > hi`).
pub fn overlapped_hours(start_us: i64, end_us: i64) -> (i64, i64) {
    let lo = start_us.div_euclid(HOUR_US);
    // end > h·3600  <=>  h < end/3600  <=>  h <= ceil(end/3600) - 1
    let hi = -((-end_us).div_euclid(HOUR_US)) - 1;
    (lo, hi)
}

/// The earliest timestamp a record may carry: 1900-01-01T00:00:00Z.
pub const MIN_TS_US: i64 = -2_208_988_800 * SECOND_US;
/// The latest timestamp a record may carry: 9999-12-31T23:59:59Z. Within these bounds every
/// time-zone and calendar computation is defined.
pub const MAX_TS_US: i64 = 253_402_300_799 * SECOND_US;

/// The timestamp if it lies between [`MIN_TS_US`] and [`MAX_TS_US`].
pub fn in_range(ts_us: i64) -> Option<i64> {
    (MIN_TS_US..=MAX_TS_US).contains(&ts_us).then_some(ts_us)
}

/// Converts seconds (possibly fractional) to microseconds, rejecting values that are not
/// finite or fall outside the years 1900 to 9999.
pub fn seconds_to_us(seconds: f64) -> Option<i64> {
    if !seconds.is_finite() {
        return None;
    }
    let us = (seconds * 1e6).round();
    if us.abs() > 9.0e18 {
        return None;
    }
    in_range(us as i64)
}

/// Parses an RFC 3339 timestamp, or a decimal number of Unix seconds written as a string.
pub fn parse_ts_str(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return in_range(dt.timestamp_micros());
    }
    s.parse::<f64>().ok().and_then(seconds_to_us)
}

/// Formats microseconds as RFC 3339 in UTC (`2026-11-28T14:00:00Z`), with a fraction only
/// when the timestamp has one.
pub fn format_ts(ts_us: i64) -> String {
    match DateTime::<Utc>::from_timestamp_micros(ts_us) {
        Some(dt) => dt.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => ts_us.to_string(),
    }
}

/// Formats the start of hour `h` as RFC 3339 in UTC.
pub fn format_hour(h: i64) -> String {
    format_ts(hour_start(h))
}

/// The Monday that starts week index 0 (1970-01-05).
fn epoch_monday() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 5).expect("valid date")
}

/// The calendar of one time zone: `how(h)` and `week(h)` as the model defines them.
#[derive(Clone, Copy, Debug)]
pub struct Calendar {
    tz: Tz,
}

impl Calendar {
    /// A calendar in the given zone.
    pub fn new(tz: Tz) -> Self {
        Calendar { tz }
    }

    /// The time zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    fn local(&self, h: i64) -> chrono::NaiveDateTime {
        let utc = DateTime::<Utc>::from_timestamp(h * 3600, 0).unwrap_or_default();
        utc.with_timezone(&self.tz).naive_local()
    }

    /// Hour of week of hour `h`: local weekday (Monday = 0) × 24 + local hour of its start.
    pub fn how(&self, h: i64) -> u8 {
        self.how_week(h).0
    }

    /// Index of the local Monday-to-Sunday week that contains the start of hour `h`
    /// (week 0 starts on Monday 1970-01-05).
    pub fn week(&self, h: i64) -> i64 {
        self.how_week(h).1
    }

    /// Both `how(h)` and `week(h)`, with one time-zone conversion.
    pub fn how_week(&self, h: i64) -> (u8, i64) {
        let l = self.local(h);
        (
            (l.weekday().num_days_from_monday() * 24 + l.hour()) as u8,
            (l.date() - epoch_monday()).num_days().div_euclid(7),
        )
    }

    /// The first hour `h` with `week(h) >= w`.
    pub fn week_start_hour(&self, w: i64) -> i64 {
        let date = epoch_monday() + chrono::Duration::days(7 * w);
        let midnight = date.and_time(NaiveTime::MIN);
        // Local midnight may not exist (a DST gap) or exist twice: take the earliest instant
        // at or after it, then settle on the exact hour boundary by stepping.
        let mut t = None;
        for add in 0..4 {
            let candidate = midnight + chrono::Duration::hours(add);
            if let Some(dt) = self.tz.from_local_datetime(&candidate).earliest() {
                t = Some(dt.timestamp());
                break;
            }
        }
        let mut h = t
            .unwrap_or(date.and_time(NaiveTime::MIN).and_utc().timestamp())
            .div_euclid(3600);
        while self.week(h) < w {
            h += 1;
        }
        while self.week(h - 1) >= w {
            h -= 1;
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris() -> Calendar {
        Calendar::new(chrono_tz::Europe::Paris)
    }

    #[test]
    fn hours_floor_for_negative_times() {
        assert_eq!(hour_of(0), 0);
        assert_eq!(hour_of(HOUR_US - 1), 0);
        assert_eq!(hour_of(-1), -1);
    }

    #[test]
    fn overlap_follows_the_strict_inequalities() {
        // [10:00, 12:00) overlaps hours 10 and 11, not 12.
        assert_eq!(overlapped_hours(10 * HOUR_US, 12 * HOUR_US), (10, 11));
        // [10:30, 12:00:01) overlaps 10, 11 and 12.
        assert_eq!(
            overlapped_hours(10 * HOUR_US + 1, 12 * HOUR_US + 1),
            (10, 12)
        );
        // An empty interval on a boundary overlaps nothing; inside an hour it overlaps that hour.
        let (lo, hi) = overlapped_hours(10 * HOUR_US, 10 * HOUR_US);
        assert!(lo > hi);
        assert_eq!(
            overlapped_hours(10 * HOUR_US + 5, 10 * HOUR_US + 5),
            (10, 10)
        );
    }

    #[test]
    fn how_and_week_in_paris() {
        let cal = paris();
        // 2026-11-28T14:00:00Z is Saturday 15:00 in Paris (UTC+1).
        let h = parse_ts_str("2026-11-28T14:00:00Z").unwrap() / HOUR_US;
        assert_eq!(cal.how(h), 5 * 24 + 15);
        // Sunday 2026-11-29T22:30Z is Sunday 23:30 local; 23:00Z is Monday 00:00 local.
        let sun = parse_ts_str("2026-11-29T22:00:00Z").unwrap() / HOUR_US;
        assert_eq!(cal.week(sun) + 1, cal.week(sun + 1));
        assert_eq!(cal.how(sun + 1), 0);
        assert_eq!(cal.week_start_hour(cal.week(sun + 1)), sun + 1);
        // Summer time: 2026-07-06T00:00 Paris is 2026-07-05T22:00Z.
        let mon = parse_ts_str("2026-07-05T22:00:00Z").unwrap() / HOUR_US;
        assert_eq!(cal.how(mon), 0);
        assert_eq!(cal.week_start_hour(cal.week(mon)), mon);
    }

    #[test]
    fn parses_and_formats_timestamps() {
        assert_eq!(parse_ts_str("1700000000"), Some(1_700_000_000 * SECOND_US));
        assert_eq!(parse_ts_str("1700000000.5"), Some(1_700_000_000_500_000));
        assert_eq!(
            parse_ts_str("2026-11-28T15:00:00+01:00"),
            parse_ts_str("2026-11-28T14:00:00Z")
        );
        assert_eq!(format_hour(1_700_000_000 / 3600), "2023-11-14T22:00:00Z");
        assert_eq!(format_ts(1_500_000), "1970-01-01T00:00:01.500Z");
        assert_eq!(parse_ts_str("yesterday"), None);
        // Beyond the years 1900–9999: refused, not wrapped or clamped.
        assert_eq!(parse_ts_str("8210248387200"), None);
        assert_eq!(parse_ts_str("+262142-06-01T00:00:00Z"), None);
        assert_eq!(seconds_to_us(f64::NAN), None);
        assert!(parse_ts_str("9999-12-31T23:00:00Z").is_some());
        let cal = paris();
        let last = hour_of(MAX_TS_US);
        assert!(cal.week_start_hour(cal.week(last)) <= last);
    }
}
