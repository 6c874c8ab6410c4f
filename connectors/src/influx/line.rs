//! InfluxDB line protocol: the text the sink sends, as a pure function of the points.
//!
//! One line per point: `measurement,tag=value,… field=value,… timestamp`, timestamps in
//! milliseconds (the sink writes with `precision=ms`).
//!
//! - **Escaping.** The measurement escapes commas and spaces; tag keys, tag values and field
//!   keys escape commas, equals signs and spaces. Backslashes are escaped too (`\\`), so that a
//!   name ending in a backslash cannot swallow the delimiter after it: every delimiter is
//!   unambiguous for any parser of the protocol. (VictoriaMetrics reads `\\` back as one
//!   backslash; InfluxDB keeps both, so a name with a backslash reads back with it doubled
//!   there.)
//! - **Floats.** Every field is a float, written in Rust's shortest form that reads back to the
//!   same bits (`{:?}`: `0.1`, `3.0`, `1e-300`), so a field's type never changes between
//!   points, which InfluxDB would refuse. NaN and ±infinity cannot be written: such fields are
//!   skipped and counted.
//! - **What cannot be written is skipped and counted, never sent half-formed**: a tag with an
//!   empty key or value (line protocol has no empty tag values), a field with an empty key, a
//!   point left with no field, a point with an empty measurement or one that starts with `#`
//!   (a comment line), and any name holding a line break (line protocol cannot escape one).

use vigie_model::Point;

/// What [`encode`] wrote and what it had to leave out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Lines written: one per point kept.
    pub lines: usize,
    /// Points left out: no writable field, or an unwritable measurement or name.
    pub skipped_points: usize,
    /// Fields left out: NaN or infinite values, or empty keys (of points that were kept or
    /// skipped).
    pub skipped_fields: usize,
    /// Tags left out: empty keys or values.
    pub skipped_tags: usize,
}

impl Encoded {
    /// Adds another count to this one.
    pub fn add(&mut self, other: Encoded) {
        self.lines += other.lines;
        self.skipped_points += other.skipped_points;
        self.skipped_fields += other.skipped_fields;
        self.skipped_tags += other.skipped_tags;
    }
}

/// Appends the line protocol of `points` to `out`, one line (ending in `\n`) per point that
/// can be written, in order; says how many lines it wrote and what it skipped.
pub fn encode(points: &[Point], out: &mut String) -> Encoded {
    let mut n = Encoded::default();
    for p in points {
        let start = out.len();
        if !encode_point(p, out, &mut n) {
            out.truncate(start);
            n.skipped_points += 1;
        } else {
            n.lines += 1;
        }
    }
    n
}

fn has_break(s: &str) -> bool {
    s.contains(['\n', '\r'])
}

/// Writes one line; `false` when the point cannot be written (the caller takes the partial
/// line back).
fn encode_point(p: &Point, out: &mut String, n: &mut Encoded) -> bool {
    if p.measurement.is_empty() || p.measurement.starts_with('#') || has_break(&p.measurement) {
        return false;
    }
    escape(&p.measurement, &[',', ' ', '\\'], out);
    for (k, v) in &p.tags {
        if k.is_empty() || v.is_empty() {
            n.skipped_tags += 1;
            continue;
        }
        if has_break(k) || has_break(v) {
            return false;
        }
        out.push(',');
        escape(k, &[',', '=', ' ', '\\'], out);
        out.push('=');
        escape(v, &[',', '=', ' ', '\\'], out);
    }
    let mut first = true;
    for (k, v) in &p.fields {
        if k.is_empty() || !v.is_finite() {
            n.skipped_fields += 1;
            continue;
        }
        if has_break(k) {
            return false;
        }
        out.push(if first { ' ' } else { ',' });
        first = false;
        escape(k, &[',', '=', ' ', '\\'], out);
        out.push('=');
        // `{:?}` is the shortest decimal that parses back to the same f64, with an exponent
        // for very large or small magnitudes and a `.0` on integers (still a float for the
        // protocol: integers are written with an `i` suffix, never used here).
        use std::fmt::Write;
        let _ = write!(out, "{v:?}");
    }
    if first {
        return false;
    }
    use std::fmt::Write;
    let _ = writeln!(out, " {}", p.ts_ms);
    true
}

fn escape(s: &str, special: &[char], out: &mut String) {
    for c in s.chars() {
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(m: &str, tags: &[(&str, &str)], fields: &[(&str, f64)], ts: i64) -> Point {
        Point::new(
            m,
            tags.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fields.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ts,
        )
    }

    fn lines(points: &[Point]) -> (String, Encoded) {
        let mut s = String::new();
        let n = encode(points, &mut s);
        (s, n)
    }

    #[test]
    fn plain_points_are_one_line_each() {
        let (s, n) = lines(&[
            point(
                "indicator",
                &[("zone", "13201")],
                &[("risk_score", 5.5), ("risk_level", 1.0)],
                1_700_000_000_000,
            ),
            point("feed", &[], &[("lag", 0.1)], -5),
        ]);
        assert_eq!(
            s,
            "indicator,zone=13201 risk_score=5.5,risk_level=1.0 1700000000000\nfeed lag=0.1 -5\n"
        );
        assert_eq!(
            n,
            Encoded {
                lines: 2,
                ..Encoded::default()
            }
        );
    }

    #[test]
    fn escaping_follows_each_element_s_rules() {
        let (s, _) = lines(&[point(
            "my meas,x=y",
            &[("tag key,=", "v a,l=ue"), ("z", "back\\slash")],
            &[("field key,=", 2.0)],
            0,
        )]);
        // Tags come sorted by key: "tag key,=" < "z".
        assert_eq!(
            s,
            "my\\ meas\\,x=y,tag\\ key\\,\\==v\\ a\\,l\\=ue,z=back\\\\slash field\\ key\\,\\==2.0 0\n"
        );
        let (s, _) = lines(&[point("m", &[("t", "ends\\")], &[("f", 1.0)], 1)]);
        assert_eq!(s, "m,t=ends\\\\ f=1.0 1\n");
        let (s, _) = lines(&[point(
            "zoné",
            &[("quartier", "Belle de Mai")],
            &[("é", 1.0)],
            1,
        )]);
        assert_eq!(s, "zoné,quartier=Belle\\ de\\ Mai é=1.0 1\n");
    }

    #[test]
    fn floats_are_written_to_read_back_bit_for_bit() {
        let values = [
            (0.1, "0.1"),
            (3.0, "3.0"),
            (-0.0, "-0.0"),
            (1e-300, "1e-300"),
            (1e300, "1e300"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e308"),
            (0.30000000000000004, "0.30000000000000004"),
            (9007199254740993.0, "9007199254740992.0"),
            (-123.456, "-123.456"),
        ];
        for (v, text) in values {
            let (s, _) = lines(&[point("m", &[], &[("f", v)], 7)]);
            assert_eq!(s, format!("m f={text} 7\n"));
            assert_eq!(text.parse::<f64>().unwrap().to_bits(), v.to_bits());
        }
    }

    #[test]
    fn what_cannot_be_written_is_skipped_and_counted() {
        let (s, n) = lines(&[
            point(
                "m",
                &[("a", ""), ("b", "1"), ("", "x")],
                &[
                    ("nan", f64::NAN),
                    ("ok", 1.5),
                    ("inf", f64::INFINITY),
                    ("", 2.0),
                ],
                1,
            ),
            point(
                "m",
                &[("b", "1")],
                &[("nan", f64::NAN), ("ninf", f64::NEG_INFINITY)],
                2,
            ),
            point("m", &[], &[], 3),
            point("", &[], &[("f", 1.0)], 4),
            point("#comment", &[], &[("f", 1.0)], 5),
            point("m", &[("z", "line\nbreak")], &[("f", 1.0)], 6),
            point("m", &[], &[("f\r", 1.0)], 7),
            point("m\n", &[], &[("f", 1.0)], 8),
            point("after", &[], &[("f", 1.0)], 9),
        ]);
        assert_eq!(s, "m,b=1 ok=1.5 1\nafter f=1.0 9\n");
        assert_eq!(
            n,
            Encoded {
                lines: 2,
                skipped_points: 7,
                skipped_fields: 5,
                skipped_tags: 2,
            }
        );
    }

    #[test]
    fn engine_points_encode_as_expected() {
        let p = Point::new(
            vigie_model::point::CLASH,
            vec![
                ("zone".into(), "13201".into()),
                ("a".into(), "ev 1".into()),
                ("b".into(), "ev=2".into()),
                ("reason".into(), "capacity".into()),
            ],
            vec![("active".into(), 1.0), ("end_ms".into(), 1.7e12)],
            1_600_000_000_000,
        );
        let (s, _) = lines(&[p]);
        assert_eq!(
            s,
            "clash,a=ev\\ 1,b=ev\\=2,reason=capacity,zone=13201 active=1.0,end_ms=1700000000000.0 1600000000000\n"
        );
    }

    /// A line-protocol reader written from the protocol's rules, for the round trip: a
    /// backslash takes the next character literally (the encoder escapes every backslash);
    /// unescaped `,`, ` ` and `=` delimit.
    #[allow(clippy::type_complexity)]
    fn parse(line: &str) -> Option<(String, Vec<(String, String)>, Vec<(String, f64)>, i64)> {
        let mut chars = line.chars().peekable();
        // Reads up to an unescaped delimiter of `stops`; returns the text and the delimiter.
        let mut token = |stops: &[char]| -> Option<(String, char)> {
            let mut out = String::new();
            loop {
                let c = chars.next()?;
                if c == '\\' {
                    out.push(chars.next()?);
                } else if stops.contains(&c) {
                    return Some((out, c));
                } else {
                    out.push(c);
                }
            }
        };
        let (measurement, mut d) = token(&[',', ' '])?;
        let mut tags = Vec::new();
        while d == ',' {
            let (k, _) = token(&['='])?;
            let (v, d2) = token(&[',', ' '])?;
            tags.push((k, v));
            d = d2;
        }
        let mut fields = Vec::new();
        loop {
            let (k, _) = token(&['='])?;
            let (v, d2) = token(&[',', ' '])?;
            fields.push((k, v.parse().ok()?));
            if d2 == ' ' {
                break;
            }
        }
        let (ts, _) = token(&['\n'])?;
        Some((measurement, tags, fields, ts.parse().ok()?))
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof!["[a-z ,=\\\\#é\n]{0,6}", "\\PC{0,12}",]
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
            (-1000i32..1000).prop_map(|i| i as f64 / 8.0),
        ]
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn escaping_round_trips_and_skips_only_what_cannot_be_written(
            measurement in name(),
            tags in proptest::collection::vec((name(), name()), 0..4),
            fields in proptest::collection::vec((name(), value()), 0..4),
            ts in any::<i64>(),
        ) {
            let p = Point::new(measurement, tags, fields, ts);
            let mut out = String::new();
            let n = encode(std::slice::from_ref(&p), &mut out);
            let breaks = |s: &str| s.contains(['\n', '\r']);
            let kept_tags: Vec<_> = p.tags.iter().filter(|(k, v)| !k.is_empty() && !v.is_empty()).cloned().collect();
            let kept_fields: Vec<_> = p.fields.iter().filter(|(k, v)| !k.is_empty() && v.is_finite()).cloned().collect();
            let writable = !p.measurement.is_empty()
                && !p.measurement.starts_with('#')
                && !breaks(&p.measurement)
                && !kept_tags.iter().any(|(k, v)| breaks(k) || breaks(v))
                && !kept_fields.iter().any(|(k, _)| breaks(k))
                && !kept_fields.is_empty();
            prop_assert_eq!(n.lines, usize::from(writable));
            prop_assert_eq!(n.skipped_points, usize::from(!writable));
            if !writable {
                prop_assert_eq!(out, "");
                return Ok(());
            }
            prop_assert_eq!(n.skipped_tags, p.tags.len() - kept_tags.len());
            prop_assert_eq!(n.skipped_fields, p.fields.len() - kept_fields.len());
            prop_assert!(out.ends_with('\n'));
            prop_assert_eq!(out.matches('\n').count(), 1);
            let (m, t, f, back_ts) = parse(&out).expect("the line parses");
            prop_assert_eq!(m, p.measurement.clone());
            prop_assert_eq!(t, kept_tags);
            prop_assert_eq!(f.len(), kept_fields.len());
            for ((k, v), (k2, v2)) in f.iter().zip(&kept_fields) {
                prop_assert_eq!(k, k2);
                prop_assert_eq!(v.to_bits(), v2.to_bits());
            }
            prop_assert_eq!(back_ts, ts);
        }
    }
}
