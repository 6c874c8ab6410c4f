//! The peers' workload and its checks: the same incidents run through vigie, Pathway, Bytewax
//! and a plain single-pass Rust loop.
//!
//! The workload is two CSV files: `events.csv` (`ts,zone,category,severity`; unix seconds,
//! zones `z000`…, about 2.6 s apart so a million records span thirty days, one in twenty late
//! by 1–300 s) and `zones.csv` (`zone,weight`). The peers compute, per zone and hour
//! (`hour = ts - ts % 3600`), the number of incidents and the sum of their severities, joined
//! with the zone table; vigie runs its full indicator model on the same file. Their results
//! are compared with the plain loop's ([`plain_loop`]), which is the reference.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;

/// The first timestamp of the workload: 2023-11-14T22:13:20Z.
pub const T0: i64 = 1_700_000_000;
/// Categories of the generated incidents.
pub const CATEGORIES: [&str; 8] = [
    "fire",
    "medical",
    "crowd",
    "security",
    "traffic",
    "weather",
    "lost_person",
    "other",
];

/// Per (zone, hour start in unix seconds): (count, sum of severities).
pub type Groups = HashMap<(String, i64), (u64, u64)>;

/// Writes `events.csv` (`n` incidents) and `zones.csv` (`zones` zones) into `dir` from `seed`:
/// the same seed and sizes give the same bytes.
pub fn generate(dir: &Path, n: usize, zones: usize, seed: u64) -> std::io::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let names: Vec<String> = (0..zones).map(|z| format!("z{z:03}")).collect();
    let mut zf = std::io::BufWriter::new(std::fs::File::create(dir.join("zones.csv"))?);
    writeln!(zf, "zone,weight")?;
    for name in &names {
        writeln!(zf, "{name},{:.3}", rng.gen_range(0.5..2.0))?;
    }
    zf.flush()?;
    // Some zones are busier: popularity 1 + 4u³, drawn through its cumulative sums.
    let mut cumulative = Vec::with_capacity(zones);
    let mut total = 0.0;
    for _ in 0..zones {
        total += 1.0 + 4.0 * rng.gen::<f64>().powi(3);
        cumulative.push(total);
    }
    let severity_cumulative = [40, 70, 85, 95, 100];
    let mut ef = std::io::BufWriter::new(std::fs::File::create(dir.join("events.csv"))?);
    writeln!(ef, "ts,zone,category,severity")?;
    let mut t = T0 as f64;
    for _ in 0..n {
        // Exponential gaps of mean 2.592 s: a million records span thirty days.
        t += -2.592 * (1.0 - rng.gen::<f64>()).ln();
        let mut ts = t as i64;
        if rng.gen_bool(0.05) {
            ts -= rng.gen_range(1..=300);
        }
        let pick = rng.gen::<f64>() * total;
        let zone = cumulative.partition_point(|c| *c < pick).min(zones - 1);
        let category = CATEGORIES[rng.gen_range(0..CATEGORIES.len())];
        let s = rng.gen_range(0..100);
        let severity = 1 + severity_cumulative.partition_point(|c| *c <= s);
        writeln!(ef, "{ts},{},{category},{severity}", names[zone])?;
    }
    ef.flush()
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    b.iter().try_fold(0u64, |a, &c| {
        c.is_ascii_digit().then(|| a * 10 + u64::from(c - b'0'))
    })
}

/// The plain single-pass loop over `events.csv`'s bytes: split lines and fields by hand, count
/// and sum per zone and hour in a hash map. No engine, no validation beyond what parsing needs:
/// the floor of what this workload costs. Lines it cannot read are counted, not aggregated.
pub fn plain_loop(events: &[u8]) -> (Groups, u64) {
    let mut groups: HashMap<(&[u8], i64), (u64, u64)> = HashMap::with_capacity(1 << 17);
    let mut bad = 0;
    for line in events.split(|&c| c == b'\n').skip(1) {
        if line.is_empty() {
            continue;
        }
        let mut f = line.split(|&c| c == b',');
        let (Some(ts), Some(zone), Some(_), Some(sev), None) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            bad += 1;
            continue;
        };
        let (Some(ts), Some(sev)) = (parse_u64(ts), parse_u64(sev)) else {
            bad += 1;
            continue;
        };
        let ts = ts as i64;
        let e = groups.entry((zone, ts - ts % 3600)).or_insert((0, 0));
        e.0 += 1;
        e.1 += sev;
    }
    let groups = groups
        .into_iter()
        .map(|((z, h), v)| ((String::from_utf8_lossy(z).into_owned(), h), v))
        .collect();
    (groups, bad)
}

/// Reads `zones.csv`: zone → weight.
pub fn read_zones(path: &Path) -> anyhow::Result<HashMap<String, f64>> {
    let mut out = HashMap::new();
    for (i, line) in std::fs::read_to_string(path)?.lines().enumerate().skip(1) {
        let (z, w) = line
            .split_once(',')
            .ok_or_else(|| anyhow::anyhow!("{}:{}: no comma", path.display(), i + 1))?;
        out.insert(z.to_string(), w.trim().parse()?);
    }
    Ok(out)
}

/// Writes the result rows every peer writes: `zone,hour,count,sum_severity,weight,risk`, the
/// groups inner-joined with the zones, sorted.
pub fn write_result(
    path: &Path,
    groups: &Groups,
    zones: &HashMap<String, f64>,
) -> std::io::Result<()> {
    let mut rows: Vec<_> = groups.iter().collect();
    rows.sort();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "zone,hour,count,sum_severity,weight,risk")?;
    for ((zone, hour), (c, s)) in rows {
        if let Some(w) = zones.get(zone) {
            writeln!(out, "{zone},{hour},{c},{s},{w},{}", w * *s as f64)?;
        }
    }
    out.flush()
}

/// Reads a peer's result CSV (header optional; columns `zone,hour,count,sum_severity`, then
/// anything). A Pathway update stream (columns `time` and `diff` at the end) is collapsed to
/// its final rows: an insertion sets a row, a deletion of the same figures removes it.
pub fn read_result(path: &Path) -> anyhow::Result<Groups> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut out = Groups::new();
    let mut diff_col = None;
    for (i, line) in file.lines().enumerate() {
        let line = line?;
        let cols: Vec<&str> = line.split(',').map(|c| c.trim_matches('"')).collect();
        if i == 0 && cols.first() == Some(&"zone") {
            diff_col = cols.iter().position(|c| *c == "diff");
            continue;
        }
        if cols.len() < 4 {
            anyhow::bail!("{}:{}: fewer than 4 columns", path.display(), i + 1);
        }
        let num = |k: usize| -> anyhow::Result<i64> {
            let c = cols[k];
            c.parse::<i64>()
                .or_else(|_| c.parse::<f64>().map(|f| f as i64))
                .map_err(|_| {
                    anyhow::anyhow!("{}:{}: column {} is {c:?}", path.display(), i + 1, k + 1)
                })
        };
        let key = (cols[0].to_string(), num(1)?);
        let value = (num(2)? as u64, num(3)? as u64);
        match diff_col {
            Some(d) if num(d)? < 0 => {
                if out.get(&key) == Some(&value) {
                    out.remove(&key);
                }
            }
            _ => {
                out.insert(key, value);
            }
        }
    }
    Ok(out)
}

/// How a peer's result compares with the reference (the plain loop's groups joined with the
/// zones).
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct PeerCheck {
    pub reference_rows: usize,
    pub rows: usize,
    /// Reference rows missing from the peer's result.
    pub missing: usize,
    /// Rows the reference does not have.
    pub extra: usize,
    /// Rows with another count or severity sum.
    pub different: usize,
}

impl PeerCheck {
    pub fn ok(&self) -> bool {
        self.missing == 0 && self.extra == 0 && self.different == 0
    }
}

/// Compares a peer's rows with the reference's, exactly.
pub fn check_peer(reference: &Groups, peer: &Groups) -> PeerCheck {
    let mut c = PeerCheck {
        reference_rows: reference.len(),
        rows: peer.len(),
        ..PeerCheck::default()
    };
    for (k, v) in reference {
        match peer.get(k) {
            None => c.missing += 1,
            Some(p) if p != v => c.different += 1,
            Some(_) => {}
        }
    }
    c.extra = peer.keys().filter(|k| !reference.contains_key(*k)).count();
    c
}

/// How vigie's indicators compare with the reference where both speak of a zone and hour.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct VigieCheck {
    /// vigie's indicator rows (its horizon: the past week and the next 30 days).
    pub vigie_rows: usize,
    /// Rows of the reference, and how many fall in vigie's horizon.
    pub reference_rows: usize,
    /// (zone, hour) the reference reports that vigie reports too.
    pub overlap: usize,
    /// Reference rows inside vigie's horizon that vigie does not report.
    pub missing_in_horizon: usize,
    /// Rows of the overlap whose `incidents` differ from the reference's count.
    pub count_mismatches: usize,
    /// vigie rows inside the reference's span of hours that report incidents where the
    /// reference has none.
    pub phantom_incidents: usize,
    /// Rows whose `contributions.recent` (the severity sum of the hour and the two before)
    /// was checked against the reference's sums, and how many differ.
    pub recent_checked: usize,
    pub recent_mismatches: usize,
}

impl VigieCheck {
    pub fn ok(&self) -> bool {
        self.overlap > 0
            && self.missing_in_horizon == 0
            && self.count_mismatches == 0
            && self.phantom_incidents == 0
            && self.recent_mismatches == 0
    }
}

/// Checks vigie's output (NDJSON indicator lines) against the reference groups: where both
/// report a zone and hour, vigie's `incidents` must equal the count; inside the reference's
/// span, vigie's `recent` must equal the severity sums of the hour and the two before.
pub fn check_vigie(vigie_ndjson: &Path, reference: &Groups) -> anyhow::Result<VigieCheck> {
    let mut c = VigieCheck {
        reference_rows: reference.len(),
        ..VigieCheck::default()
    };
    let first = reference.keys().map(|k| k.1).min().unwrap_or(0);
    let last = reference.keys().map(|k| k.1).max().unwrap_or(-1);
    let sum = |zone: &str, hour: i64| reference.get(&(zone.to_string(), hour)).map_or(0, |v| v.1);
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    let mut seen = std::collections::HashSet::new();
    let file = std::io::BufReader::new(std::fs::File::open(vigie_ndjson)?);
    for (i, line) in file.lines().enumerate() {
        let line = line?;
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", vigie_ndjson.display(), i + 1))?;
        if v["type"] != "indicator" {
            continue;
        }
        c.vigie_rows += 1;
        let zone = v["zone"].as_str().unwrap_or_default();
        let hour = v["hour"]
            .as_str()
            .and_then(vigie_model::time::parse_ts_str)
            .ok_or_else(|| anyhow::anyhow!("{}:{}: no hour", vigie_ndjson.display(), i + 1))?
            / 1_000_000;
        lo = lo.min(hour);
        hi = hi.max(hour);
        seen.insert((zone.to_string(), hour));
        let incidents = v["incidents"].as_u64().unwrap_or(u64::MAX);
        match reference.get(&(zone.to_string(), hour)) {
            Some(&(count, _)) => {
                c.overlap += 1;
                if incidents != count {
                    c.count_mismatches += 1;
                }
            }
            None if (first..=last).contains(&hour) && incidents != 0 => c.phantom_incidents += 1,
            None => {}
        }
        if hour - 2 * 3600 >= first && hour <= last {
            c.recent_checked += 1;
            let expected = sum(zone, hour) + sum(zone, hour - 3600) + sum(zone, hour - 7200);
            let recent = v["contributions"]["recent"].as_f64().unwrap_or(f64::NAN);
            if recent != expected as f64 {
                c.recent_mismatches += 1;
            }
        }
    }
    c.missing_in_horizon = reference
        .keys()
        .filter(|k| (lo..=hi).contains(&k.1) && !seen.contains(*k))
        .count();
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_the_plain_loop_counts_every_line() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        generate(a.path(), 20_000, 100, 7).unwrap();
        generate(b.path(), 20_000, 100, 7).unwrap();
        let ea = std::fs::read(a.path().join("events.csv")).unwrap();
        assert_eq!(ea, std::fs::read(b.path().join("events.csv")).unwrap());
        let (groups, bad) = plain_loop(&ea);
        assert_eq!(bad, 0);
        assert_eq!(groups.values().map(|v| v.0).sum::<u64>(), 20_000);
        // Oracle: the same groups by a straightforward parse of every line.
        let mut oracle = Groups::new();
        for line in std::str::from_utf8(&ea).unwrap().lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            assert!(CATEGORIES.contains(&f[2]));
            let ts: i64 = f[0].parse().unwrap();
            let sev: u64 = f[3].parse().unwrap();
            assert!((1..=5).contains(&sev));
            let e = oracle
                .entry((f[1].to_string(), ts - ts % 3600))
                .or_default();
            e.0 += 1;
            e.1 += sev;
        }
        assert_eq!(groups, oracle);
        let zones = read_zones(&a.path().join("zones.csv")).unwrap();
        assert_eq!(zones.len(), 100);
        // Written and read back, the result is the same; a changed row is caught.
        let out = a.path().join("out.csv");
        write_result(&out, &groups, &zones).unwrap();
        let back = read_result(&out).unwrap();
        assert!(check_peer(&groups, &back).ok());
        let mut changed = back.clone();
        let k = changed.keys().next().unwrap().clone();
        changed.get_mut(&k).unwrap().0 += 1;
        changed.insert(("z999".into(), 0), (1, 1));
        let c = check_peer(&groups, &changed);
        assert_eq!((c.different, c.extra, c.missing), (1, 1, 0));
    }

    #[test]
    fn vigie_rows_are_checked_on_counts_and_severity_sums() {
        let mut reference = Groups::new();
        for h in 0..6i64 {
            reference.insert(("z001".into(), h * 3600), (h as u64 + 1, 2 * h as u64 + 1));
        }
        let line = |hour: i64, incidents: u64, recent: f64| {
            format!(
                "{{\"type\":\"indicator\",\"zone\":\"z001\",\"hour\":\"{}\",\"incidents\":{incidents},\"contributions\":{{\"recent\":{recent}}}}}\n",
                vigie_model::time::format_hour(hour)
            )
        };
        // vigie's horizon here: hours 3 to 7; sums 1, 3, 5, 7, 9, 11 by hour.
        let good = [
            line(3, 4, 3.0 + 5.0 + 7.0),
            line(4, 5, 5.0 + 7.0 + 9.0),
            line(5, 6, 7.0 + 9.0 + 11.0),
            line(6, 0, 9.0 + 11.0),
            line(7, 0, 11.0),
        ]
        .concat();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("v.ndjson");
        std::fs::write(&p, &good).unwrap();
        let c = check_vigie(&p, &reference).unwrap();
        assert!(c.ok(), "{c:?}");
        assert_eq!((c.overlap, c.recent_checked, c.vigie_rows), (3, 3, 5));
        // A wrong count, a wrong sum, a missing hour: each is caught.
        let bad = good
            .replace("\"incidents\":5", "\"incidents\":4")
            .replace("\"recent\":27", "\"recent\":26");
        std::fs::write(&p, bad).unwrap();
        let c = check_vigie(&p, &reference).unwrap();
        assert_eq!((c.count_mismatches, c.recent_mismatches), (1, 1));
        let missing: String = good.lines().skip(1).map(|l| format!("{l}\n")).collect();
        std::fs::write(&p, missing).unwrap();
        assert_eq!(check_vigie(&p, &reference).unwrap().missing_in_horizon, 0);
        let gap: String = good
            .lines()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        std::fs::write(&p, gap).unwrap();
        assert_eq!(check_vigie(&p, &reference).unwrap().missing_in_horizon, 1);
    }

    #[test]
    fn an_update_stream_collapses_to_its_final_rows() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("u.csv");
        std::fs::write(
            &p,
            "zone,hour,count,sum_severity,weight,risk,time,diff\nz001,3600,1,2,1.0,2.0,10,1\nz001,3600,1,2,1.0,2.0,12,-1\nz001,3600,2,5,1.0,5.0,12,1\nz002,0,3,3,1.0,3.0,12,1\n",
        )
        .unwrap();
        let r = read_result(&p).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[&("z001".to_string(), 3600)], (2, 5));
    }
}
