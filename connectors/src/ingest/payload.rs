//! Payloads of live ingest: a request body (NDJSON records, CSV through a mapping, or line
//! protocol) to validated records and rejected lines, each with its line number.
//!
//! Lines are read with file replay's own functions ([`crate::files::ndjson_text`],
//! [`crate::files::CsvRows`]) and checked by the one validator ([`crate::validate::validate`]),
//! so a record is accepted live exactly when it would be in a file. One more check comes
//! first: the source must be allowed to write the record's feed (`forbidden_feed`). Every
//! record then goes through [`Privacy::admit`] (the `[privacy]` rules, around the validator),
//! and each rejection carries the sample of its line that privacy lets be shown. Nothing
//! here panics on any input; each bad line is one rejection and the lines around it go on.

use super::lineproto::{self, Precision};
use super::LineError;
use crate::files::{ndjson_text, CsvRow, CsvRows};
use crate::privacy::{Privacy, Refused, WITHHELD};
use crate::raw::{parse_json_line, RawRecord, Scalar};
use crate::validate::{Checks, RecordError};
use vigie_config::Config;
use vigie_model::{Feed, Record};

/// The kind of a line whose feed the source may not write.
pub const FORBIDDEN_FEED: &str = "forbidden_feed";

/// What a body holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    /// One JSON record, or NDJSON: one record a line (`feed` in each).
    Json,
    /// CSV with a header line, through the configuration's mapping of this name (which gives
    /// the feed). Line numbers count the header as line 1.
    Csv { mapping: String },
    /// InfluxDB line protocol; timestamps in `precision`, and `now_us` for points without one.
    LineProtocol { precision: Precision, now_us: i64 },
}

/// A line that was not accepted, and its feed when known (for the counters).
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    pub feed: Option<Feed>,
    pub error: LineError,
    /// What may be shown of the line (the dead letters' sample): its fields after the
    /// `[privacy]` rules, or [`WITHHELD`] when the line could not be read as a record.
    pub sample: String,
}

/// A parsed body: the records with their line, and the rejected lines, each in line order.
#[derive(Debug, Default)]
pub struct Parsed {
    pub records: Vec<(u64, Record)>,
    pub rejected: Vec<Rejected>,
}

impl Parsed {
    fn reject(&mut self, line: u64, feed: Option<Feed>, e: RecordError) {
        self.refuse(
            line,
            feed,
            Refused {
                error: e,
                sample: WITHHELD.into(),
            },
        )
    }

    fn refuse(&mut self, line: u64, feed: Option<Feed>, Refused { error: e, sample }: Refused) {
        self.rejected.push(Rejected {
            feed,
            sample,
            error: LineError {
                line,
                kind: e.kind.name(),
                field: e.field.map(str::to_string),
                reason: e.reason,
            },
        });
    }

    fn forbidden(&mut self, line: u64, feed: Feed, allowed: &[Feed]) {
        self.rejected.push(Rejected {
            feed: Some(feed),
            sample: WITHHELD.into(),
            error: LineError {
                line,
                kind: FORBIDDEN_FEED,
                field: Some("feed".into()),
                reason: format!(
                    "this source may not write the {} feed (it may write: {})",
                    feed.name(),
                    allowed
                        .iter()
                        .map(|f| f.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        });
    }

    /// Admits `raw` (privacy, validation) unless its feed is forbidden.
    fn check(
        &mut self,
        line: u64,
        raw: RawRecord,
        config: &Config,
        privacy: &Privacy,
        allowed: &[Feed],
    ) {
        let feed = match &raw.feed {
            Some(Scalar::Str(name)) => Feed::parse(name.trim()),
            _ => None,
        };
        let mut raw = raw;
        if let Some(f) = feed {
            if !allowed.contains(&f) {
                privacy.scrub(Some(f), &mut raw);
                let sample = privacy.sample(Some(f), &mut raw, false);
                self.forbidden(line, f, allowed);
                if let Some(last) = self.rejected.last_mut() {
                    last.sample = sample;
                }
                return;
            }
        }
        match privacy.admit(raw, None, live(config), 0) {
            Ok(r) => self.records.push((line, r)),
            Err(refused) => self.refuse(line, feed, refused),
        }
    }
}

/// The number of lines of a body (a last line without its line break counts; an empty body
/// has none).
pub fn count_lines(body: &[u8]) -> usize {
    let breaks = body.iter().filter(|&&b| b == b'\n').count();
    breaks + usize::from(body.last().is_some_and(|&b| b != b'\n'))
}

/// The checks of live ingest now ([`Checks::live`]).
fn live(config: &Config) -> Checks<'_> {
    Checks::from(config).live(config, vigie_model::clock::now_us())
}

/// Parses and admits a body (privacy rules and validation); `allowed` are the feeds its
/// source may write. Records get `seq` 0: the ingest log numbers them when it commits them.
pub fn parse_body(
    format: &Format,
    body: &[u8],
    config: &Config,
    privacy: &Privacy,
    allowed: &[Feed],
) -> Parsed {
    let mut out = Parsed::default();
    match format {
        Format::Json => {
            // One record over several lines (pretty-printed) is one record, of line 1.
            if body.contains(&b'\n') {
                if let Ok(Some(text)) = ndjson_text(body) {
                    if let Ok(raw) = parse_json_line(text) {
                        out.check(1, raw, config, privacy, allowed);
                        return out;
                    }
                }
            }
            for (i, bytes) in body.split(|&b| b == b'\n').enumerate() {
                let line = i as u64 + 1;
                match ndjson_text(bytes) {
                    Ok(None) => {}
                    Ok(Some(text)) => match parse_json_line(text) {
                        Ok(raw) => out.check(line, raw, config, privacy, allowed),
                        Err(reason) => out.reject(line, None, RecordError::malformed(reason)),
                    },
                    Err(e) => out.reject(line, None, e),
                }
            }
        }
        Format::Csv { mapping } => {
            let mut rows = match CsvRows::open(body, mapping, config) {
                Ok(rows) => rows,
                Err(reason) => {
                    out.reject(1, None, RecordError::malformed(reason));
                    return out;
                }
            };
            let feed = rows.mapping().feed();
            let permitted = allowed.contains(&feed);
            let mut row = csv::StringRecord::new();
            while let Some(next) = rows.next_row(&mut row) {
                match next {
                    CsvRow::Row { line, .. } if !permitted => out.forbidden(line, feed, allowed),
                    CsvRow::Row { line, .. } => {
                        let admitted = rows
                            .mapping()
                            .raw(&row)
                            .map_err(|e| Refused {
                                error: privacy.scrub_error(e),
                                sample: WITHHELD.into(),
                            })
                            .and_then(|raw| privacy.admit(raw, Some(feed), live(config), 0));
                        match admitted {
                            Ok(r) => out.records.push((line, r)),
                            Err(refused) => out.refuse(line, Some(feed), refused),
                        }
                    }
                    CsvRow::Bad { line, reason, .. } => {
                        out.reject(line, Some(feed), RecordError::malformed(reason))
                    }
                    // Reading from memory does not fail; were it to, the rest is one bad line.
                    CsvRow::Failed(reason) => {
                        let line = out
                            .records
                            .last()
                            .map(|r| r.0)
                            .max(out.rejected.last().map(|r| r.error.line))
                            .unwrap_or(1)
                            + 1;
                        out.reject(line, Some(feed), RecordError::malformed(reason));
                        break;
                    }
                }
            }
        }
        Format::LineProtocol { precision, now_us } => {
            for (i, bytes) in body.split(|&b| b == b'\n').enumerate() {
                let line = i as u64 + 1;
                let text = match std::str::from_utf8(bytes) {
                    Ok(t) => t,
                    Err(e) => {
                        out.reject(
                            line,
                            None,
                            RecordError::malformed(format!("not UTF-8 text: {e}")),
                        );
                        continue;
                    }
                };
                let point = match lineproto::parse_line(text) {
                    Ok(Some(p)) => p,
                    Ok(None) => continue,
                    Err(reason) => {
                        out.reject(
                            line,
                            None,
                            RecordError::malformed(format!("line protocol: {reason}")),
                        );
                        continue;
                    }
                };
                match lineproto::raw_record(&point, *precision, *now_us) {
                    Ok(raw) => out.check(line, raw, config, privacy, allowed),
                    Err(e) => out.reject(line, Feed::parse(&point.measurement), e),
                }
            }
        }
    }
    out
}

/// Whether every rejection is a forbidden feed (a 403 when nothing was accepted).
pub fn all_forbidden(rejected: &[Rejected]) -> bool {
    !rejected.is_empty() && rejected.iter().all(|r| r.error.kind == FORBIDDEN_FEED)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Feed; 7] = Feed::ALL;

    /// `config` taking any date of the past century: these tests post fixed dates.
    fn wide(mut config: Config) -> Config {
        config.ingest.max_past_days = vigie_config::ingest::MAX_WINDOW_DAYS;
        config
    }

    #[test]
    fn live_ingest_refuses_times_too_far_from_now() {
        let config = Config::embedded_default();
        let now = vigie_model::clock::now_us() / 1_000_000;
        let day = 86_400;
        let line = |ts: i64| {
            format!("{{\"feed\":\"incident\",\"ts\":{ts},\"zone\":\"13001\",\"severity\":3}}\n")
        };
        let body: String = [
            now,
            now + 39 * day,
            now - 399 * day,
            now + 41 * day,
            now - 401 * day,
            253_402_300_000, // 9999-12-31
        ]
        .map(line)
        .concat();
        let p = parse_body(
            &Format::Json,
            body.as_bytes(),
            &config,
            &Privacy::default(),
            &ALL,
        );
        assert_eq!(p.records.len(), 3);
        let refused: Vec<_> = p
            .rejected
            .iter()
            .map(|r| {
                (
                    r.error.line,
                    r.error.field.as_deref(),
                    r.error.reason.clone(),
                )
            })
            .collect();
        assert_eq!(refused.len(), 3, "{refused:?}");
        for (i, (line, field, reason)) in refused.iter().enumerate() {
            assert_eq!((*line, *field), (i as u64 + 4, Some("ts")), "{refused:?}");
            let key = if i == 1 {
                "max_past_days"
            } else {
                "max_future_days"
            };
            assert!(reason.contains(key), "{reason}");
        }
        assert!(refused[2].2.starts_with("9999-12-31"), "{refused:?}");
    }

    #[test]
    fn ndjson_lines_are_numbered_and_checked() {
        let config = wide(Config::embedded_default());
        let body = b"{\"feed\":\"incident\",\"ts\":1764338400,\"zone\":\"13001\",\"severity\":3}\n\n{\"feed\":\n\xff\r\n{\"feed\":\"event\",\"ts\":1,\"id\":\"e\",\"zone\":\"13001\",\"start\":1,\"end\":2,\"attendance\":1,\"kind\":\"sport\"}\n";
        let p = parse_body(
            &Format::Json,
            body,
            &config,
            &Privacy::default(),
            &[Feed::Incident],
        );
        assert_eq!(p.records.len(), 1);
        assert_eq!(p.records[0].0, 1);
        let kinds: Vec<_> = p
            .rejected
            .iter()
            .map(|r| (r.error.line, r.error.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![(3, "malformed"), (4, "malformed"), (5, FORBIDDEN_FEED)]
        );
        assert!(!all_forbidden(&p.rejected));
        assert_eq!(count_lines(body), 5);
        assert_eq!(count_lines(b"a\nb"), 2);
        assert_eq!(count_lines(b""), 0);
    }

    #[test]
    fn one_pretty_printed_record_is_one_record() {
        let config = wide(Config::embedded_default());
        let body = b"{\n  \"feed\": \"density\",\n  \"ts\": 1764338400,\n  \"zone\": \"13001\",\n  \"people\": 12\n}\n";
        let p = parse_body(&Format::Json, body, &config, &Privacy::default(), &ALL);
        assert_eq!((p.records.len(), p.rejected.len()), (1, 0));
    }

    #[test]
    fn csv_through_a_mapping_and_a_forbidden_mapping() {
        let config = wide(Config::embedded_sample());
        let body = b"TYPE,YEAR,MONTH,DAY,HOUR,MINUTE,HUNDRED_BLOCK,NEIGHBOURHOOD,X,Y\nMischief,2020,12,3,14,5,10XX BLOCK,West End,0,0\nMischief,2020,13,3,14,5,10XX BLOCK,West End,0,0\n";
        let f = Format::Csv {
            mapping: "vancouver_crime".into(),
        };
        let p = parse_body(&f, body, &config, &Privacy::default(), &ALL);
        assert_eq!(p.records.len(), 1);
        assert_eq!(p.records[0].0, 2);
        assert_eq!(p.rejected.len(), 1);
        assert_eq!(p.rejected[0].error.line, 3);
        let p = parse_body(&f, body, &config, &Privacy::default(), &[Feed::Density]);
        assert!(p.records.is_empty());
        assert!(all_forbidden(&p.rejected));
        let p = parse_body(&f, b"a,b\n1,2\n", &config, &Privacy::default(), &ALL);
        assert_eq!(p.rejected[0].error.line, 1);
        assert!(p.rejected[0].error.reason.contains("column"));
    }

    #[test]
    fn line_protocol_goes_through_the_same_validation() {
        let config = wide(Config::embedded_default());
        let body = b"incident,zone=13001,category=theft severity=3i 1764338400000000000\ndensity,zone=13001,sensor=s1 people=1200\nincident,zone=99999 severity=3i\nincident severity=\nevent,zone=13001 id=\"e\"\n";
        let f = Format::LineProtocol {
            precision: Precision::Ns,
            now_us: 1_764_338_400_000_000,
        };
        let p = parse_body(
            &f,
            body,
            &config,
            &Privacy::default(),
            &[Feed::Incident, Feed::Density],
        );
        assert_eq!(p.records.len(), 2);
        assert_eq!(p.records[0].1.ts, 1_764_338_400_000_000);
        assert_eq!(p.records[1].1.ts, 1_764_338_400_000_000);
        let kinds: Vec<_> = p
            .rejected
            .iter()
            .map(|r| (r.error.line, r.error.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![(3, "unknown_zone"), (4, "malformed"), (5, FORBIDDEN_FEED)]
        );
    }
}
