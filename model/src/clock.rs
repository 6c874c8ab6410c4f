//! The wall clock, read in one place: microseconds, milliseconds and the current hour since
//! the Unix epoch. `vigie run` takes its clock hour from here (`docs/model.md`: live, the
//! clock is the wall clock), and every timestamp the server writes (dead letters, event ids,
//! feed ages, alert times) comes from here too.

use crate::time::HOUR_US;

/// Microseconds since the Unix epoch (0 if the system clock is before it).
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    now_us().div_euclid(1000)
}

/// The current hour: hours since the Unix epoch.
pub fn wall_hour() -> i64 {
    now_us().div_euclid(HOUR_US)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_readings_agree() {
        let (us, ms, h) = (now_us(), now_ms(), wall_hour());
        assert!(us > 1_700_000_000_000_000, "the clock is after 2023: {us}");
        assert!((ms - us / 1000).abs() < 60_000);
        assert!((h - us / HOUR_US).abs() <= 1);
    }
}
