//! Property tests of the parsers: arbitrary bytes and arbitrary mutations of good records
//! never panic; they give a record or a rejection that names what is wrong.

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

    #[test]
    fn ndjson_arbitrary_text_never_panics(line in "\\PC{0,200}") {
        let config = Config::embedded_default();
        let _ = parse_ndjson_line(&line, &config.zones, 1);
    }

    #[test]
    fn ndjson_mutated_records_never_panic(which in 0..GOOD.len(), cut in 0usize..120, byte in any::<u8>(), at in 0usize..120) {
        let config = Config::embedded_default();
        let mut bytes = GOOD[which].as_bytes().to_vec();
        let at = at.min(bytes.len() - 1);
        bytes[at] = byte;
        bytes.truncate(cut.max(1).min(bytes.len()));
        let line = String::from_utf8_lossy(&bytes);
        match parse_ndjson_line(&line, &config.zones, 1) {
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
