//! `[ranges]`: the physical ranges of the records' numeric fields. A value outside its range is
//! refused at the door (`invalid_field`, naming the field and the range), so that one absurd
//! value (a temperature of 1e308, a crowd of a billion) cannot move a figure. The defaults hold
//! for any city on Earth; a city may narrow them or, for a very large venue, widen them.

use serde::Deserialize;

/// `[ranges]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ranges {
    /// Most people one density record may count (a zone's whole crowd, from one sensor).
    pub people_max: f64,
    /// Most attendees of one event.
    pub attendance_max: f64,
    /// Most agents of one deployment.
    pub agents_max: f64,
    /// Most vehicles per hour at one counter.
    pub volume_max: f64,
    /// Air temperature, °C, lowest and highest.
    pub temperature_c: [f64; 2],
    /// Precipitation of an hour, mm, lowest and highest.
    pub precip_mm: [f64; 2],
    /// Wind speed, km/h, lowest and highest.
    pub wind_kmh: [f64; 2],
}

impl Default for Ranges {
    fn default() -> Self {
        Ranges {
            // The largest gatherings on record draw a few million people over a day; no zone
            // of a city holds more at once.
            people_max: 5_000_000.0,
            attendance_max: 5_000_000.0,
            agents_max: 100_000.0,
            // A motorway lane carries about 2,000 vehicles an hour; 20 lanes at one counter.
            volume_max: 40_000.0,
            // Earth's records: −89.2 °C and 56.7 °C; about 300 mm of rain in an hour; gusts of
            // 408 km/h.
            temperature_c: [-90.0, 60.0],
            precip_mm: [0.0, 500.0],
            wind_kmh: [0.0, 500.0],
        }
    }
}

impl Ranges {
    /// Checks the ranges themselves; errors name the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (k, v) in [
            ("people_max", self.people_max),
            ("attendance_max", self.attendance_max),
            ("agents_max", self.agents_max),
            ("volume_max", self.volume_max),
        ] {
            if !(v.is_finite() && (0.0..=1e12).contains(&v)) {
                return Err((
                    k.into(),
                    format!("must be a number from 0 to 1e12, got {v}"),
                ));
            }
        }
        for (k, [lo, hi]) in [
            ("temperature_c", self.temperature_c),
            ("precip_mm", self.precip_mm),
            ("wind_kmh", self.wind_kmh),
        ] {
            if !(lo.is_finite() && hi.is_finite() && lo <= hi && lo.abs() <= 1e6 && hi.abs() <= 1e6)
            {
                return Err((
                    k.into(),
                    format!("must be [lowest, highest], finite and ascending, got [{lo}, {hi}]"),
                ));
            }
        }
        Ok(())
    }
}
