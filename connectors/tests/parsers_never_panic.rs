//! Property tests of the parsers: arbitrary bytes and arbitrary mutations of good records
//! never panic; they give a record or a rejection that names what is wrong. Request bodies of
//! live ingest (NDJSON, CSV through a mapping, line protocol) likewise, each line accounted for
//! once at most; and points written by the InfluxDB sink's encoder read back the same through
//! the ingest's line-protocol reader.

use proptest::prelude::*;
use vigie_config::Config;
use vigie_connectors::{parse_ndjson_line, InputSpec, Item, RecordReader};

const GOOD: &[&str] = &[
    r#"{"feed":"incident","ts":"2026-11-28T14:05:00Z","zone":"13001","severity":3}"#,
    r#"{"feed":"density","ts":1764338700,"lat":43.299,"lon":5.381,"people":12.5,"sensor":"s1"}"#,
    r#"{"feed":"event","ts":1,"id":"ev-1","zone":"13008","start":10,"end":20,"attendance":500,"kind":"sport"}"#,
    r#"{"feed":"weather","ts":3600,"kind":"forecast","issued_at":0,"wind_kmh":70}"#,
    r#"{"feed":"deployment","ts":1,"id":"d1","zone":"13001","start":0,"end":7200,"agents":4}"#,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The parsers' trim is `str::trim`, whatever the text (ASCII or not, spaces or not).
    #[test]
    fn the_parsers_trim_is_str_trim(s in "[ \t\u{a0}\u{3000}a-z0-9\u{e9}]{0,6}") {
        prop_assert_eq!(vigie_connectors::raw::trim(&s), s.trim());
    }

    #[test]
    fn ndjson_arbitrary_text_never_panics(line in "\\PC{0,200}") {
        let config = Config::embedded_default();
        let _ = parse_ndjson_line(&line, (&config).into(), 1);
    }

    #[test]
    fn ndjson_mutated_records_never_panic(which in 0..GOOD.len(), cut in 0usize..120, byte in any::<u8>(), at in 0usize..120) {
        let config = Config::embedded_default();
        let mut bytes = GOOD[which].as_bytes().to_vec();
        let at = at.min(bytes.len() - 1);
        bytes[at] = byte;
        bytes.truncate(cut.max(1).min(bytes.len()));
        let line = String::from_utf8_lossy(&bytes);
        match parse_ndjson_line(&line, (&config).into(), 1) {
            Ok(_) => {}
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn mapped_csv_arbitrary_rows_never_panic(rows in proptest::collection::vec("[ -~]{0,80}", 0..20)) {
        let config = Config::embedded_sample();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.csv");
        let mut text = String::from("TYPE,YEAR,MONTH,DAY,HOUR,MINUTE,HUNDRED_BLOCK,NEIGHBOURHOOD,X,Y\n");
        text.push_str("Mischief,2020,12,3,14,5,10XX BLOCK,West End,0,0\n");
        for r in &rows {
            text.push_str(r);
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        let spec = InputSpec::parse(&format!("vancouver_crime={}", path.display()), &config).unwrap();
        let mut records = 0;
        for item in RecordReader::new(&config, vec![spec]) {
            match item {
                Item::Record(_) => records += 1,
                Item::Rejected(r) => prop_assert!(r.line >= 3),
                Item::Failed(e) => prop_assert!(false, "{e}"),
            }
        }
        // The good row before the arbitrary ones is never lost.
        prop_assert!(records >= 1);
    }
}

fn unix_time_mapping() -> Config {
    Config::parse(
        "zones = \"zones/marseille.geojson\"\n[mappings.m]\nfeed = \"incident\"\ntime = { column = \"t\", format = \"unix\" }\nlocation = { zone = { column = \"z\" } }\nfields.severity = { column = \"s\" }\n",
        "test.toml",
        None,
    )
    .unwrap()
}

fn read_csv(config: &Config, bytes: &[u8]) -> (usize, Vec<vigie_connectors::Rejection>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.csv");
    std::fs::write(&path, bytes).unwrap();
    let spec = InputSpec::parse(&format!("m={}", path.display()), config).unwrap();
    let mut records = 0;
    let mut rejections = Vec::new();
    for item in RecordReader::new(config, vec![spec]) {
        match item {
            Item::Record(_) => records += 1,
            Item::Rejected(r) => rejections.push(r),
            Item::Failed(e) => panic!("{e}"),
        }
    }
    (records, rejections)
}

#[test]
fn not_a_number_in_a_unix_time_column_is_refused_not_read_as_1970() {
    let (records, rejections) = read_csv(
        &unix_time_mapping(),
        b"t,z,s\nNaN,13001,2\n1790000000,13001,2\ninf,13001,2\n",
    );
    assert_eq!(records, 1);
    let where_what: Vec<(u64, Option<&str>)> =
        rejections.iter().map(|r| (r.line, r.error.field)).collect();
    assert_eq!(where_what, vec![(2, Some("ts")), (4, Some("ts"))]);
}

#[test]
fn a_csv_row_that_is_not_utf8_is_rejected_with_its_line() {
    let (records, rejections) = read_csv(
        &unix_time_mapping(),
        b"t,z,s\n1790000000,\"13\n001\",2\n1790000000,13\xff001,2\n1790000100,13001,3\n",
    );
    // Line 2 holds a quoted newline, so the bad row starts on line 4.
    assert_eq!(records, 1, "{rejections:?}");
    assert_eq!(rejections.len(), 2, "{rejections:?}");
    assert_eq!(rejections[1].line, 4, "{rejections:?}");
    assert!(rejections[1].error.reason.contains("CSV"), "{rejections:?}");
}

/// Records (sequence number, time) and rejections (line, error), sorted.
type Shares = (Vec<(u64, i64)>, Vec<(u64, String)>);

/// What the readers of a replay's workers yield together.
fn read_shared(config: &Config, bytes: &[u8], peers: usize) -> Shares {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.csv");
    std::fs::write(&path, bytes).unwrap();
    let spec = InputSpec::parse(&format!("m={}", path.display()), config).unwrap();
    let mut records = Vec::new();
    let mut rejections = Vec::new();
    for index in 0..peers {
        for item in RecordReader::shared(config, vec![spec.clone()], index, peers) {
            match item {
                Item::Record(r) => records.push((r.seq, r.ts)),
                Item::Rejected(r) => rejections.push((r.line, r.error.to_string())),
                Item::Failed(e) => panic!("{e}"),
            }
        }
    }
    records.sort();
    rejections.sort();
    (records, rejections)
}

/// Every item of a reader, in order: a record as (sequence number, time), a rejection as
/// (line, error), a failure as its text.
fn items(reader: impl Iterator<Item = Item>) -> Vec<(u64, String)> {
    reader
        .map(|item| match item {
            Item::Record(r) => (r.seq, r.ts.to_string()),
            Item::Rejected(r) => (r.line, r.error.to_string()),
            Item::Failed(e) => (0, e.to_string()),
        })
        .collect()
}

/// A replay's reader on a thread of its own hands out exactly what the reader does where it
/// runs, in the same order, whatever the share: over many of its batches, the last one
/// partial, with bad rows among them; and a file that cannot be opened is the same failure.
#[test]
fn reading_ahead_on_a_thread_gives_the_same_items_in_the_same_order() {
    let config = std::sync::Arc::new(unix_time_mapping());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.csv");
    let mut text = String::from("t,z,s\n");
    for i in 0..5_003u64 {
        match i % 97 {
            13 => text.push_str("NaN,13001,2\n"),
            14 => text.push_str("1790000000,13001\n"),
            _ => text.push_str(&format!(
                "{},1300{},{}\n",
                1_790_000_000 + i,
                1 + i % 9,
                1 + i % 5
            )),
        }
    }
    std::fs::write(&path, text).unwrap();
    let spec = InputSpec::parse(&format!("m={}", path.display()), &config).unwrap();
    let missing = InputSpec::parse(
        &format!("m={}", dir.path().join("none.csv").display()),
        &config,
    )
    .unwrap();
    for inputs in [vec![spec.clone()], vec![spec.clone(), missing, spec]] {
        for (index, peers) in [(0, 1), (0, 2), (1, 2)] {
            let here = items(RecordReader::shared(&config, inputs.clone(), index, peers));
            let ahead =
                vigie_connectors::ReadAhead::spawn(config.clone(), inputs.clone(), index, peers);
            let ahead = items(ahead.unwrap());
            assert!(here.len() > 2_000, "{}", here.len());
            // Rejections are among them.
            assert!(here.iter().any(|(_, e)| e.parse::<i64>().is_err()));
            assert_eq!(ahead, here, "share {index} of {peers}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Workers each read their share of a CSV file (reading past the others' rows unchecked):
    /// together they yield exactly what one reader does, bad rows and quoted line breaks
    /// included.
    #[test]
    fn the_shares_of_a_csv_file_add_up_to_the_whole(
        rows in proptest::collection::vec(prop_oneof![
            (1_700_000_000i64..1_800_000_000, 0usize..3, 1u8..6)
                .prop_map(|(t, z, s)| format!("{t},{},{s}\n", ["13001", "\"13\n001\"", "13002"][z]).into_bytes()),
            Just(b"1790000000,13\xff001,2\n".to_vec()),
            Just(b"NaN,13001,2\n".to_vec()),
            Just(b"1790000000,\"13001\n".to_vec()),
        ], 0..30),
        peers in 2usize..4,
    ) {
        let config = unix_time_mapping();
        let mut bytes = b"t,z,s\n".to_vec();
        for r in &rows {
            bytes.extend_from_slice(r);
        }
        let whole = read_shared(&config, &bytes, 1);
        prop_assert_eq!(read_shared(&config, &bytes, peers), whole);
    }
}

// Live ingest: request bodies of every format, and the line-protocol reader.

use vigie_connectors::influx::line::encode;
use vigie_connectors::ingest::lineproto::{parse_line, FieldValue, Precision};
use vigie_connectors::ingest::payload::{count_lines, parse_body, Format};
use vigie_connectors::Privacy;
use vigie_model::{Feed, Point};

/// Every line of a parsed body is accounted for once at most, in order, within the body.
fn check_parsed(format: &Format, body: &[u8], config: &Config) -> Result<(), TestCaseError> {
    let parsed = parse_body(format, body, config, &Privacy::default(), &Feed::ALL[..3]);
    let lines = count_lines(body).max(1) as u64;
    let mut seen: Vec<u64> = parsed
        .records
        .iter()
        .map(|r| r.0)
        .chain(parsed.rejected.iter().map(|r| r.error.line))
        .collect();
    for r in &parsed.records {
        prop_assert!(Feed::ALL[..3].contains(&r.1.feed));
    }
    for r in &parsed.rejected {
        prop_assert!(!r.error.reason.is_empty());
    }
    seen.sort_unstable();
    let n = seen.len();
    seen.dedup();
    prop_assert_eq!(seen.len(), n, "a line counted twice");
    prop_assert!(
        seen.iter().all(|&l| l >= 1 && l <= lines),
        "{:?} of {}",
        seen,
        lines
    );
    Ok(())
}

/// Line-protocol-like text: its delimiters and escapes, often.
fn lineish() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9,= \\\\\"#.ei+-]{0,60}",
        "(incident|density|event)(,zone=130[01][0-9])?( [a-z]{1,8}=[0-9a-z\"\\\\.-]{0,8}){1,3}( -?[0-9]{1,19})?",
        "\\PC{0,60}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn ndjson_bodies_of_arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        check_parsed(&Format::Json, &body, &Config::embedded_default())?;
    }

    #[test]
    fn ndjson_bodies_of_mutated_records_never_panic(lines in proptest::collection::vec((0..GOOD.len(), any::<u8>(), 0usize..120), 0..6)) {
        let mut body = Vec::new();
        for (which, byte, at) in lines {
            let mut line = GOOD[which].as_bytes().to_vec();
            let at = at.min(line.len() - 1);
            line[at] = byte;
            body.extend_from_slice(&line);
            body.push(b'\n');
        }
        check_parsed(&Format::Json, &body, &Config::embedded_default())?;
    }

    #[test]
    fn csv_bodies_through_a_mapping_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300), rows in proptest::collection::vec("[0-9a-z,\" \n]{0,30}", 0..8)) {
        let config = unix_time_mapping();
        let format = Format::Csv { mapping: "m".into() };
        check_parsed(&format, &body, &config)?;
        let mut text = String::from("t,z,s\n1790000000,13001,2\n");
        for r in &rows {
            text.push_str(r);
            text.push('\n');
        }
        let parsed = parse_body(&format, text.as_bytes(), &config, &Privacy::default(), &Feed::ALL);
        // The good row after the header is never lost.
        prop_assert!(parsed.records.first().is_some_and(|r| r.0 == 2));
        check_parsed(&format, text.as_bytes(), &config)?;
    }

    #[test]
    fn line_protocol_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300), lines in proptest::collection::vec(lineish(), 0..8)) {
        let config = Config::embedded_default();
        for precision in [Precision::Ns, Precision::S] {
            let format = Format::LineProtocol { precision, now_us: 1_764_338_400_000_000 };
            check_parsed(&format, &body, &config)?;
            check_parsed(&format, lines.join("\n").as_bytes(), &config)?;
        }
        for l in &lines {
            let _ = parse_line(l);
        }
    }

    #[test]
    fn points_encoded_by_the_sink_parse_back_the_same(
        measurement in "\\PC{1,12}|[a-z ,=\\\\#\"]{1,8}",
        tags in proptest::collection::vec(("\\PC{0,8}|[a-z ,=\\\\\"]{0,6}", "\\PC{0,8}|[a-z ,=\\\\\"]{0,6}"), 0..4),
        fields in proptest::collection::vec(("\\PC{0,8}|[a-z ,=\\\\\"]{0,6}", prop_oneof![any::<f64>(), (-1000i32..1000).prop_map(|i| i as f64 / 8.0)]), 1..4),
        ts in any::<i64>(),
    ) {
        let p = Point::new(measurement, tags, fields, ts);
        let mut out = String::new();
        if encode(std::slice::from_ref(&p), &mut out).lines == 0 {
            return Ok(()); // Not writable: the encoder's own tests cover what it skips.
        }
        let back = parse_line(out.trim_end_matches('\n'))
            .map_err(|e| TestCaseError::fail(format!("{out:?}: {e}")))?
            .ok_or_else(|| TestCaseError::fail(format!("{out:?} read as blank")))?;
        prop_assert_eq!(&back.measurement, &p.measurement);
        let tags: Vec<_> = p.tags.iter().filter(|(k, v)| !k.is_empty() && !v.is_empty()).cloned().collect();
        prop_assert_eq!(&back.tags, &tags);
        let fields: Vec<_> = p.fields.iter().filter(|(k, v)| !k.is_empty() && v.is_finite()).collect();
        prop_assert_eq!(back.fields.len(), fields.len());
        for ((k, v), (k2, v2)) in back.fields.iter().zip(fields) {
            prop_assert_eq!(k, k2);
            match v {
                FieldValue::Float(f) => prop_assert_eq!(f.to_bits(), v2.to_bits()),
                other => prop_assert!(false, "{:?} read back as {:?}", v2, other),
            }
        }
        prop_assert_eq!(back.timestamp, Some(ts));
    }
}
