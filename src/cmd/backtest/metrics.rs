//! The skill scores of a forecast over one window of zone-hours, each a pure function of two
//! slices of the same length: what the forecast said for each zone-hour and what happened there
//! (the realised incident severity).

/// The predictive accuracy index at `share` of the zone-hours: the share of the realised
/// severity that falls in the `share · n` zone-hours the forecast ranks highest, divided by
/// `share`. 1 is what a random ranking scores on average; higher is better.
///
/// Forecasts that tie are ranked as a random order would on average: where the cut falls inside
/// a group of equal forecasts, the group contributes its severity in proportion to the places
/// left for it. `share · n` need not be whole. `None` when nothing happened (no severity) or
/// the window is empty.
pub fn pai(forecast: &[f64], realised: &[f64], share: f64) -> Option<f64> {
    assert_eq!(forecast.len(), realised.len());
    let total: f64 = realised.iter().sum();
    if forecast.is_empty() || total <= 0.0 || share <= 0.0 {
        return None;
    }
    let places = share.min(1.0) * forecast.len() as f64;
    let mut order: Vec<usize> = (0..forecast.len()).collect();
    order.sort_by(|&a, &b| forecast[b].total_cmp(&forecast[a]));
    let (mut taken, mut captured) = (0.0, 0.0);
    for group in order.chunk_by(|&a, &b| forecast[a] == forecast[b]) {
        let size = group.len() as f64;
        let severity: f64 = group.iter().map(|&i| realised[i]).sum();
        if taken + size <= places {
            taken += size;
            captured += severity;
        } else {
            captured += severity * (places - taken) / size;
            break;
        }
    }
    Some(captured / total / share.min(1.0))
}

/// Ranks from 1, ties given the mean of the ranks they span.
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut first = 0;
    for group in order.chunk_by(|&a, &b| x[a] == x[b]) {
        // Ranks first + 1 ..= first + len, whose mean is first + (len + 1) / 2.
        let mean = first as f64 + (group.len() as f64 + 1.0) / 2.0;
        for &i in group {
            ranks[i] = mean;
        }
        first += group.len();
    }
    ranks
}

/// Spearman's rank correlation: Pearson's correlation of the average ranks. `None` when either
/// side is constant (or there are fewer than two values).
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    assert_eq!(x.len(), y.len());
    let (rx, ry) = (average_ranks(x), average_ranks(y));
    let n = x.len() as f64;
    // Both rank vectors have the mean (n + 1) / 2.
    let mean = (n + 1.0) / 2.0;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        let (dx, dy) = (a - mean, b - mean);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// How the zone-hours a forecast puts at level 3 or 4 (its alarms) met the zone-hours with at
/// least one incident.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Hits {
    /// Zone-hours forecast at level 3 or above.
    pub alarms: u64,
    /// Zone-hours with at least one incident.
    pub incident_hours: u64,
    /// Zone-hours that were both.
    pub hits: u64,
}

impl Hits {
    /// Counts over one window: `levels` forecast, `realised` severity.
    pub fn count(levels: &[u8], realised: &[f64]) -> Hits {
        assert_eq!(levels.len(), realised.len());
        let mut h = Hits::default();
        for (&level, &sev) in levels.iter().zip(realised) {
            let alarm = level >= 3;
            let happened = sev > 0.0;
            h.alarms += alarm as u64;
            h.incident_hours += happened as u64;
            h.hits += (alarm && happened) as u64;
        }
        h
    }

    /// The hit rate: the share of alarms in which an incident happened (`None`: no alarm).
    pub fn precision(&self) -> Option<f64> {
        (self.alarms > 0).then(|| self.hits as f64 / self.alarms as f64)
    }

    /// The share of the zone-hours with an incident that had an alarm (`None`: no incident).
    pub fn recall(&self) -> Option<f64> {
        (self.incident_hours > 0).then(|| self.hits as f64 / self.incident_hours as f64)
    }

    /// Adds another window's counts.
    pub fn add(&mut self, other: Hits) {
        self.alarms += other.alarms;
        self.incident_hours += other.incident_hours;
        self.hits += other.hits;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn pai_of_a_strict_ranking() {
        // 4 zone-hours; 4 of the 8 units of severity lie in the forecast's top one.
        let f = [4.0, 3.0, 2.0, 1.0];
        let r = [4.0, 0.0, 3.0, 1.0];
        // Top 25 %: 4/8 of the severity in 1/4 of the zone-hours.
        assert!(close(pai(&f, &r, 0.25), 2.0));
        // Top 50 %: still 4/8, in half.
        assert!(close(pai(&f, &r, 0.5), 1.0));
        // Top 75 %: 7/8 in three quarters.
        assert!(close(pai(&f, &r, 0.75), (7.0 / 8.0) / 0.75));
        // Everything: 1.
        assert!(close(pai(&f, &r, 1.0), 1.0));
        // A share that is not a whole number of zone-hours: 1.5 places, the top one and half
        // of the second: (4 + 0.5 · 0) / 8 / 0.375.
        assert!(close(pai(&f, &r, 0.375), 0.5 / 0.375));
        // The reversed ranking puts the severity at the bottom.
        let rev = [1.0, 2.0, 3.0, 4.0];
        assert!(close(pai(&rev, &r, 0.25), (1.0 / 8.0) / 0.25));
    }

    #[test]
    fn pai_shares_a_tied_group_in_proportion() {
        // The two tied leaders hold 2 + 0 of 4; one place for two: half of their 2.
        let f = [1.0, 1.0, 0.0, 0.0];
        let r = [2.0, 0.0, 0.0, 2.0];
        assert!(close(pai(&f, &r, 0.25), (1.0 / 4.0) / 0.25));
        // A constant forecast scores 1 at any share: it ranks nothing.
        let flat = [0.0; 4];
        for s in [0.05, 0.1, 0.25, 0.5] {
            assert!(close(pai(&flat, &r, s), 1.0), "{s}");
        }
        // 20 zone-hours, the top 5 % is one place; three tied leaders hold 3 + 0 + 0 of 6.
        let mut f = vec![0.0; 20];
        let mut r = vec![0.0; 20];
        f[..3].copy_from_slice(&[9.0, 9.0, 9.0]);
        r[0] = 3.0;
        r[10] = 3.0;
        assert!(close(pai(&f, &r, 0.05), (3.0 / 3.0 / 6.0) / 0.05));
    }

    #[test]
    fn pai_is_undefined_when_nothing_happened() {
        assert_eq!(pai(&[1.0, 2.0], &[0.0, 0.0], 0.1), None);
        assert_eq!(pai(&[], &[], 0.1), None);
    }

    #[test]
    fn average_ranks_share_ties() {
        assert_eq!(
            average_ranks(&[10.0, 20.0, 20.0, 5.0]),
            [2.0, 3.5, 3.5, 1.0]
        );
        assert_eq!(average_ranks(&[0.0, 0.0, 0.0]), [2.0, 2.0, 2.0]);
    }

    #[test]
    fn spearman_with_ties_by_hand() {
        // x ranks 1, 2.5, 2.5, 4; y ranks 1, 3, 2, 4; both centred on 2.5:
        // Σdxdy = 2.25 + 0 + 0 + 2.25 = 4.5, Σdx² = 4.5, Σdy² = 5.
        let x = [1.0, 2.0, 2.0, 3.0];
        let y = [1.0, 3.0, 2.0, 4.0];
        assert!(close(spearman(&x, &y), 4.5 / (4.5f64 * 5.0).sqrt()));
        // Without ties it is 1 − 6Σd² / (n(n² − 1)): d = 0, 1, −1, 0 → 1 − 12/60.
        let x = [1.0, 2.0, 3.0, 4.0];
        let y = [10.0, 30.0, 20.0, 40.0];
        assert!(close(spearman(&x, &y), 0.8));
        // Any increasing transformation keeps it; reversal negates it.
        let y2: Vec<f64> = y.iter().map(|v| v * v + 7.0).collect();
        assert!(close(spearman(&x, &y2), 0.8));
        let neg: Vec<f64> = y.iter().map(|v| -v).collect();
        assert!(close(spearman(&x, &neg), -0.8));
    }

    #[test]
    fn spearman_is_undefined_for_a_constant_side() {
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[0.0, 0.0, 0.0]), None);
        assert_eq!(spearman(&[1.0], &[1.0]), None);
    }

    #[test]
    fn hits_count_alarms_against_incident_hours() {
        let levels = [4, 3, 3, 2, 1, 1];
        let realised = [2.0, 0.0, 1.0, 5.0, 0.0, 0.0];
        let h = Hits::count(&levels, &realised);
        assert_eq!(
            h,
            Hits {
                alarms: 3,
                incident_hours: 3,
                hits: 2
            }
        );
        assert!(close(h.precision(), 2.0 / 3.0));
        assert!(close(h.recall(), 2.0 / 3.0));
        let none = Hits::count(&[1, 2], &[0.0, 0.0]);
        assert_eq!((none.precision(), none.recall()), (None, None));
        let mut pooled = h;
        pooled.add(Hits::count(&[3, 1], &[0.0, 4.0]));
        assert_eq!(
            (pooled.alarms, pooled.incident_hours, pooled.hits),
            (4, 4, 2)
        );
    }
}
