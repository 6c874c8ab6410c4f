//! A memo in front of [`Calendar`]: time-zone conversions cost a binary search over the zone's
//! transitions, and the zone computation asks for the same hours again and again.

use vigie_model::time::Calendar;

const SLOTS: usize = 1 << 15;

/// `how`, `week` and week starts, memoised (a direct-mapped cache of 32,768 hours).
#[derive(Clone)]
pub struct CachedCalendar {
    cal: Calendar,
    slots: Vec<(i64, u8, i64)>,
    week_starts: Vec<(i64, i64)>,
}

impl CachedCalendar {
    /// A memo over `cal`.
    pub fn new(cal: Calendar) -> Self {
        CachedCalendar {
            cal,
            slots: vec![(i64::MIN, 0, 0); SLOTS],
            week_starts: vec![(i64::MIN, 0); 64],
        }
    }

    fn lookup(&mut self, h: i64) -> (u8, i64) {
        let slot = &mut self.slots[h.rem_euclid(SLOTS as i64) as usize];
        if slot.0 != h {
            let (how, week) = self.cal.how_week(h);
            *slot = (h, how, week);
        }
        (slot.1, slot.2)
    }

    /// Hour of week of hour `h`.
    pub fn how(&mut self, h: i64) -> u8 {
        self.lookup(h).0
    }

    /// Week index of hour `h`.
    pub fn week(&mut self, h: i64) -> i64 {
        self.lookup(h).1
    }

    /// The first hour of week `w`.
    pub fn week_start_hour(&mut self, w: i64) -> i64 {
        let slot = &mut self.week_starts[w.rem_euclid(64) as usize];
        if slot.0 != w {
            *slot = (w, self.cal.week_start_hour(w));
        }
        slot.1
    }
}
