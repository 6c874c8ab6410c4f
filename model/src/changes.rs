//! What one complete epoch of the engine changed: the plain data the engine hands to its
//! sinks and observers (the store, InfluxDB, the alerting, the server's board).

use crate::rows::{ClashRow, IndicatorRow};

/// The output changes of complete epochs.
#[derive(Clone, Default, Debug, PartialEq)]
pub struct Changes {
    /// `(row handed out before, if any; the row now)` for each indicator that changed.
    pub indicators: Vec<(Option<IndicatorRow>, IndicatorRow)>,
    /// Clashes that appeared (`true`) or ended (`false`).
    pub clashes: Vec<(ClashRow, bool)>,
}
