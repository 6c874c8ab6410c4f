//! Reads of the indicator series in the store: the city now, a zone's series over a range,
//! one zone and hour with all its figures, and the revisions of a value.
//!
//! Indicators are written by the engine as measurement `indicator`, tag `zone`, one series
//! per field of [`vigie_model::point::ALL_FIELDS`] (v1's fields, and v2's when the model is v2;
//! an undefined value is NaN), stamped with the start of the hour (ms). Every read can be made
//! "as known at" an earlier revision.

use std::collections::BTreeMap;
use vigie_model::point::{ALL_FIELDS, INDICATOR, INDICATOR_FIELDS};
use vigie_store::{Agg, SeriesKey, Store, StoreError};

/// Milliseconds in an hour.
pub const HOUR_MS: i64 = 3_600_000;

/// A step such as `30m`, `1h` or `7d` in milliseconds: a positive whole number with `s`, `m`,
/// `h` or `d`. The error says what was expected.
pub fn parse_step(s: &str) -> Result<i64, String> {
    // Quoted at most 20 characters long, whatever was sent.
    let shown: String = s.chars().take(20).collect();
    let (n, factor) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1_000),
        Some((i, 'm')) => (&s[..i], 60_000),
        Some((i, 'h')) => (&s[..i], HOUR_MS),
        Some((i, 'd')) => (&s[..i], 24 * HOUR_MS),
        Some((i, 'w')) => (&s[..i], 168 * HOUR_MS),
        _ => return Err(format!("`{shown}`: a number with s, m, h, d or w")),
    };
    match n.parse::<i64>().ok().and_then(|n| n.checked_mul(factor)) {
        Some(step) if step > 0 && step <= MAX_STEP_MS => Ok(step),
        _ => Err(format!(
            "`{shown}`: a positive whole number with s, m, h, d or w, at most 10 years"
        )),
    }
}

/// The largest step (ms): ten years of 365 days.
pub const MAX_STEP_MS: i64 = 3650 * 24 * HOUR_MS;

/// The figures of one zone and hour.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneHour {
    pub zone: String,
    /// Start of the hour, ms.
    pub hour_ms: i64,
    /// Field → value, for the fields stored at that hour; a figure of model v2 that is
    /// undefined there (fluidity without traffic, say) is absent.
    pub values: BTreeMap<&'static str, f64>,
}

/// The key of one indicator field of one zone.
pub fn indicator_key(zone: &str, field: &str) -> SeriesKey {
    SeriesKey::new(INDICATOR, &[("zone", zone)], field)
}

/// The zones that have indicators in the store, sorted.
pub fn zones(store: &Store) -> Vec<String> {
    store
        .series(INDICATOR, &[], INDICATOR_FIELDS[0])
        .into_iter()
        .filter_map(|k| k.tag("zone").map(str::to_string))
        .collect()
}

/// The engine's clock as the store knows it: the hour of the last revision (in a replay a
/// revision is stamped with the clock's hour, a millisecond or so later when two share one).
pub fn clock_ms(store: &Store) -> Option<i64> {
    let r = store.last_revision();
    (r != i64::MIN).then(|| r.div_euclid(HOUR_MS) * HOUR_MS)
}

/// Every indicator field (v1's and v2's) of `zone` at the hour starting at `hour_ms`, as known at `as_of`.
pub fn zone_hour(
    store: &Store,
    zone: &str,
    hour_ms: i64,
    as_of: Option<i64>,
) -> Result<Option<ZoneHour>, StoreError> {
    let mut values = BTreeMap::new();
    for field in ALL_FIELDS {
        let key = indicator_key(zone, field);
        // NaN: the value became undefined (the sink writes NaN then).
        if let Some((_, v)) = store.range(&key, hour_ms, hour_ms + 1, as_of)?.pop() {
            if !v.is_nan() {
                values.insert(field, v);
            }
        }
    }
    Ok((!values.is_empty()).then(|| ZoneHour {
        zone: zone.to_string(),
        hour_ms,
        values,
    }))
}

/// For each zone, its figures at the latest hour at or before `at_ms` (the current hour when
/// `at_ms` is the clock), as known at `as_of`.
pub fn latest_per_zone(
    store: &Store,
    at_ms: i64,
    as_of: Option<i64>,
) -> Result<Vec<ZoneHour>, StoreError> {
    let mut out = Vec::new();
    for zone in zones(store) {
        let key = indicator_key(&zone, INDICATOR_FIELDS[0]);
        if let Some((hour_ms, _)) = store.last_before(&key, at_ms.saturating_add(1), as_of)? {
            out.extend(zone_hour(store, &zone, hour_ms, as_of)?);
        }
    }
    Ok(out)
}

/// One field of one zone over `[start, end)`, one value per `step` reduced by `agg`.
#[allow(clippy::too_many_arguments)]
pub fn range(
    store: &Store,
    zone: &str,
    field: &str,
    start: i64,
    end: i64,
    step: i64,
    agg: Agg,
    as_of: Option<i64>,
) -> Result<Vec<(i64, f64)>, StoreError> {
    store.downsample(&indicator_key(zone, field), start, end, step, agg, as_of)
}

/// Every revision of one field of one zone at one hour: `(revision, value)`, oldest first.
pub fn revisions(
    store: &Store,
    zone: &str,
    field: &str,
    hour_ms: i64,
) -> Result<Vec<(i64, f64)>, StoreError> {
    store.revisions(&indicator_key(zone, field), hour_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_whole_units_and_errors_say_what_is_expected() {
        assert_eq!(parse_step("30m"), Ok(30 * 60_000));
        assert_eq!(parse_step("1h"), Ok(HOUR_MS));
        assert_eq!(parse_step("7d"), Ok(7 * 24 * HOUR_MS));
        assert_eq!(parse_step("15s"), Ok(15_000));
        assert_eq!(parse_step("2w"), Ok(2 * 168 * HOUR_MS));
        assert_eq!(parse_step("3650d"), Ok(MAX_STEP_MS));
        // Too large (once multiplied, or beyond i64), and a last character of two bytes.
        for bad in [
            "",
            "h",
            "0h",
            "-1h",
            "1.5h",
            "1y",
            "1H",
            "3651d",
            "9223372036854775807w",
            "99999999999999999999h",
            "1é",
        ] {
            let e = parse_step(bad).unwrap_err();
            assert!(e.contains("s, m, h, d or w"), "{bad}: {e}");
        }
    }
}
