//! The output file of a replay: NDJSON lines as `indicators.md` shows them, indicators then
//! clashes, zones written by their ids.

use std::io::Write;
use vigie_model::{ClashRow, IndicatorRow};

/// Writes the lines of `indicators` and `clashes` to `path`; `zone_ids[z]` names zone `z`.
pub fn write_ndjson<S: AsRef<str>>(
    path: &std::path::Path,
    indicators: &[IndicatorRow],
    clashes: &[ClashRow],
    zone_ids: &[S],
) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for row in indicators {
        serde_json::to_writer(&mut w, &row.to_json(zone_ids[row.zone as usize].as_ref()))?;
        w.write_all(b"\n")?;
    }
    for row in clashes {
        serde_json::to_writer(&mut w, &row.to_json(zone_ids[row.zone as usize].as_ref()))?;
        w.write_all(b"\n")?;
    }
    w.flush()
}
