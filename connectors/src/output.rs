//! The output file of a replay: NDJSON lines as `indicators.md` shows them, indicators then
//! clashes, zones written by their ids.

use std::io::Write;
use vigie_model::{ClashRow, IndicatorRow};

/// Writes the lines of `indicators` and `clashes` to `path`; `zone_ids[z]` names zone `z`.
pub fn write_ndjson<'r, S: AsRef<str>>(
    path: &std::path::Path,
    indicators: impl IntoIterator<Item = &'r IndicatorRow>,
    clashes: &[ClashRow],
    zone_ids: &[S],
) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    // Every zone has the same hours: each is formatted once.
    let mut hours: rustc_hash::FxHashMap<i64, String> = Default::default();
    for row in indicators {
        let hour = hours
            .entry(row.hour)
            .or_insert_with(|| vigie_model::time::format_hour(row.hour));
        let line = row.to_json_at(zone_ids[row.zone as usize].as_ref(), hour.as_str());
        serde_json::to_writer(&mut w, &line)?;
        w.write_all(b"\n")?;
    }
    for row in clashes {
        serde_json::to_writer(&mut w, &row.to_json(zone_ids[row.zone as usize].as_ref()))?;
        w.write_all(b"\n")?;
    }
    w.flush()
}
