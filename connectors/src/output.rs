//! The output file of a replay: NDJSON lines as `docs/model.md` shows them, indicators then
//! clashes, zones written by their ids.

use serde_json::ser::{CompactFormatter, Formatter};
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
    let zones: Vec<Vec<u8>> = zone_ids
        .iter()
        .map(|z| serde_json::to_vec(z.as_ref()))
        .collect::<Result<_, _>>()?;
    // Every zone has the same hours: each is formatted once.
    let mut hours: rustc_hash::FxHashMap<i64, Vec<u8>> = Default::default();
    let mut line = Vec::with_capacity(512);
    for row in indicators {
        let hour = match hours.entry(row.hour) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(serde_json::to_vec(
                &vigie_model::time::format_hour(row.hour),
            )?),
        };
        line.clear();
        indicator_line(row, &zones[row.zone as usize], hour, &mut line)?;
        w.write_all(&line)?;
    }
    for row in clashes {
        serde_json::to_writer(&mut w, &row.to_json(zone_ids[row.zone as usize].as_ref()))?;
        w.write_all(b"\n")?;
    }
    w.flush()
}

/// Appends the line of `row`, newline included: the bytes serde_json writes for
/// [`IndicatorRow::to_json`], with the keys written as they are and the numbers through
/// serde_json's own formatter (a tenth of the time, most of a replay's output). `zone` and
/// `hour` are JSON strings, quotes included.
fn indicator_line(
    row: &IndicatorRow,
    zone: &[u8],
    hour: &[u8],
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut f = CompactFormatter;
    let mut float = |out: &mut Vec<u8>, key: &[u8], v: f64| {
        out.extend_from_slice(key);
        // serde_json writes what is not finite as null.
        if v.is_finite() {
            f.write_f64(out, v)
        } else {
            out.extend_from_slice(b"null");
            Ok(())
        }
    };
    out.extend_from_slice(br#"{"type":"indicator","zone":"#);
    out.extend_from_slice(zone);
    out.extend_from_slice(br#","hour":"#);
    out.extend_from_slice(hour);
    float(out, br#","risk_score":"#, row.risk_score.0)?;
    out.extend_from_slice(br#","risk_level":"#);
    CompactFormatter.write_u8(out, row.risk_level)?;
    float(out, br#","protection_rate":"#, row.protection_rate.0)?;
    out.extend_from_slice(br#","required_agents":"#);
    CompactFormatter.write_u64(out, row.required_agents)?;
    out.extend_from_slice(br#","deployed_agents":"#);
    CompactFormatter.write_u64(out, row.deployed_agents)?;
    out.extend_from_slice(br#","trend":""#);
    out.extend_from_slice(row.trend.name().as_bytes());
    out.push(b'"');
    float(out, br#","crowd":"#, row.crowd.0)?;
    float(out, br#","load":"#, row.load.0)?;
    out.extend_from_slice(br#","incidents":"#);
    CompactFormatter.write_u64(out, row.incidents)?;
    if let Some(v) = &row.v2 {
        out.extend_from_slice(br#","calls":"#);
        CompactFormatter.write_u64(out, v.calls)?;
        out.extend_from_slice(br#","criticality":"#);
        CompactFormatter.write_u8(out, v.criticality)?;
        match v.traffic {
            Some(t) => float(out, br#","traffic":"#, t.0)?,
            None => out.extend_from_slice(br#","traffic":null"#),
        }
        match v.fluidity {
            Some(f) => float(out, br#","fluidity":"#, f.0)?,
            None => out.extend_from_slice(br#","fluidity":null"#),
        }
        out.extend_from_slice(br#","fluidity_level":"#);
        match v.fluidity_level {
            Some(l) => CompactFormatter.write_u8(out, l)?,
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(br#","load_trend":""#);
        out.extend_from_slice(v.load_trend.name().as_bytes());
        out.extend_from_slice(br#"","fluidity_trend":"#);
        match v.fluidity_trend {
            Some(t) => {
                out.push(b'"');
                out.extend_from_slice(t.name().as_bytes());
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(br#","confidence":""#);
        out.extend_from_slice(v.missing.confidence().name().as_bytes());
        out.extend_from_slice(br#"","missing":["#);
        for (i, name) in v.missing.names().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.push(b'"');
        }
        out.push(b']');
    }
    float(out, br#","contributions":{"baseline":"#, row.baseline.0)?;
    float(out, br#","recent":"#, row.recent.0)?;
    float(out, br#","events":"#, row.events.0)?;
    float(out, br#","weather":"#, row.weather.0)?;
    out.extend_from_slice(br#","demonstration":"#);
    CompactFormatter.write_u8(out, row.demonstration)?;
    if let Some(v) = &row.v2 {
        float(out, br#","exposure":"#, v.exposure.0)?;
        float(out, br#","spill":"#, v.spill.0)?;
        float(out, br#","surge":"#, v.surge.0)?;
    }
    out.extend_from_slice(b"}}\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigie_model::{Missing, RowV2, Trend, F64};

    fn row(i: u64, x: f64, trend: Trend) -> IndicatorRow {
        IndicatorRow {
            zone: 0,
            hour: 470_000 + i as i64,
            risk_score: F64(x),
            risk_level: (i % 5) as u8,
            protection_rate: F64(-x),
            required_agents: i,
            deployed_agents: u64::MAX - i,
            trend,
            crowd: F64(x * 1e10),
            load: F64(x / 3.0),
            incidents: i * 7,
            baseline: F64(1.0 / 3.0),
            recent: F64(0.1 + 0.2),
            events: F64(-0.0),
            weather: F64(x.sqrt()),
            demonstration: (i % 2) as u8,
            // Every other row has v2's figures, with undefined traffic every fourth.
            v2: (i % 2 == 1).then(|| RowV2 {
                calls: i * 3,
                criticality: (i % 4) as u8 + 1,
                traffic: (i % 4 != 1).then_some(F64(x * 7.0)),
                fluidity: (i % 4 != 1).then_some(F64(1.0 / (1.0 + x))),
                fluidity_level: (i % 4 != 1).then_some((i % 4) as u8),
                load_trend: trend,
                fluidity_trend: (i % 4 != 1).then_some(Trend::Falling),
                missing: Missing((i % 8) as u8),
                exposure: F64(x / 7.0),
                spill: F64(-x),
                surge: F64(0.25),
            }),
        }
    }

    #[test]
    fn lines_are_what_serde_json_writes() {
        let values = [
            0.0,
            -0.0,
            1.0,
            0.1,
            91.32488443353799,
            1e300,
            5e-324,
            -2.5e-7,
            123456789.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN_POSITIVE,
        ];
        let trends = [Trend::Falling, Trend::Stable, Trend::Rising];
        for zone in ["z000", "13001", "quote \" back \\ é \u{1}"] {
            let zone_json = serde_json::to_vec(zone).unwrap();
            for (i, x) in values.iter().enumerate() {
                let r = row(i as u64, *x, trends[i % 3]);
                let hour = vigie_model::time::format_hour(r.hour);
                let mut want = serde_json::to_vec(&r.to_json(zone)).unwrap();
                want.push(b'\n');
                let mut got = Vec::new();
                indicator_line(
                    &r,
                    &zone_json,
                    &serde_json::to_vec(&hour).unwrap(),
                    &mut got,
                )
                .unwrap();
                assert_eq!(
                    String::from_utf8(got).unwrap(),
                    String::from_utf8(want).unwrap()
                );
            }
        }
    }
}
