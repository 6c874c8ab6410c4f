//! Privacy at the door: the one place every live record goes through before it is committed.
//!
//! [`Privacy::admit`] takes a raw record (NDJSON, line protocol, a CSV row through a mapping,
//! an MQTT payload line), applies the `[privacy]` rules of its feed, validates it with
//! [`crate::validate::validate`], and pseudonymises or suppresses what must be:
//!
//! 1. fields listed in `drop`, and free-text fields (`source`, `category`) not listed in
//!    `allow_free_text`, are removed from the raw record (before validation);
//! 2. the record is validated: `lat`/`lon` become the zone's index, and a [`Record`] keeps no
//!    coordinate;
//! 3. `id` and `sensor` listed in `pseudonymise` become the first [`PSEUDONYM_HEX`] hex digits
//!    of `HMAC-SHA-256(key, feed || 0x00 || value)`;
//! 4. a density record whose `people` is below `min_count` is refused as
//!    `suppressed_below_k`: it is never committed, so it reaches neither the log, the engine,
//!    the store nor any output.
//!
//! A refusal comes with what may be shown of the line ([`Refused::sample`]): the fields left
//! after step 1, coordinates withheld, identifiers pseudonymised as they would have been
//! stored (withheld when the feed is unknown), and the count of a suppressed record withheld.
//! Reasons that would quote a coordinate or an identifier are replaced by
//! [`Privacy::scrub_error`].

use crate::raw::{RawRecord, Scalar};
use crate::validate::{validate, Checks, RecordError, RejectKind};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeMap;
use vigie_config::privacy::{Key, FIELDS, FREE_TEXT};
use vigie_config::PrivacyConfig;
use vigie_model::{Body, Feed, Record};

/// Hex digits kept of a pseudonym (128 bits).
pub const PSEUDONYM_HEX: usize = 32;

/// What a sample or a reason shows in place of a value it may not show.
pub const WITHHELD: &str = "<withheld>";

/// Characters of a refused line kept as its sample.
pub const SAMPLE_CHARS: usize = 120;

#[derive(Clone, Debug, Default)]
struct Rules {
    drop: Vec<String>,
    pseudonymise_id: bool,
    pseudonymise_sensor: bool,
    allow_free_text: Vec<String>,
    min_count: Option<u64>,
}

/// The compiled `[privacy]` rules and keys. `Debug` never shows a key.
#[derive(Clone, Debug, Default)]
pub struct Privacy {
    key: Option<Key>,
    previous: Option<Key>,
    rules: BTreeMap<Feed, Rules>,
    defaults: Rules,
}

/// A refused record: why, and what of the line may be shown.
#[derive(Clone, Debug, PartialEq)]
pub struct Refused {
    pub error: RecordError,
    pub sample: String,
}

/// `hex(HMAC-SHA-256(key, feed || 0x00 || value))`, its first [`PSEUDONYM_HEX`] digits.
pub fn pseudonym(key: &[u8], feed: Feed, value: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(feed.name().as_bytes());
    mac.update(&[0]);
    mac.update(value.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(PSEUDONYM_HEX);
    for b in digest.iter().take(PSEUDONYM_HEX / 2) {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl Privacy {
    /// The rules of `config`, with its keys read (from the environment or files).
    pub fn from_config(config: &PrivacyConfig) -> Result<Privacy, String> {
        let (key, previous) = config.read_keys()?;
        Privacy::with_keys(config, key.map(|k| k.0), previous.map(|k| k.0))
    }

    /// The rules of `config` with the keys given (tests, tools).
    pub fn with_keys(
        config: &PrivacyConfig,
        key: Option<Vec<u8>>,
        previous: Option<Vec<u8>>,
    ) -> Result<Privacy, String> {
        let mut rules = BTreeMap::new();
        for (name, f) in &config.feeds {
            let feed = Feed::parse(name).ok_or_else(|| format!("`{name}` is not a feed"))?;
            let r = Rules {
                drop: f.drop.clone(),
                pseudonymise_id: f.pseudonymise.iter().any(|p| p == "id"),
                pseudonymise_sensor: f.pseudonymise.iter().any(|p| p == "sensor"),
                allow_free_text: f.allow_free_text.clone(),
                min_count: f.min_count,
            };
            if (r.pseudonymise_id || r.pseudonymise_sensor) && key.is_none() {
                return Err(format!(
                    "privacy.feeds.{name} pseudonymises identifiers but no key is configured"
                ));
            }
            rules.insert(feed, r);
        }
        Ok(Privacy {
            key: key.map(Key),
            previous: previous.map(Key),
            rules,
            defaults: Rules::default(),
        })
    }

    fn rules(&self, feed: Option<Feed>) -> &Rules {
        feed.and_then(|f| self.rules.get(&f))
            .unwrap_or(&self.defaults)
    }

    /// The pseudonym of `value` under the current key, if the feed pseudonymises `field`.
    pub fn pseudonymise(&self, feed: Feed, field: &str, value: &str) -> Option<String> {
        let r = self.rules(Some(feed));
        let on = match field {
            "id" => r.pseudonymise_id,
            "sensor" => r.pseudonymise_sensor,
            _ => false,
        };
        match (&self.key, on) {
            (Some(k), true) => Some(pseudonym(&k.0, feed, value)),
            _ => None,
        }
    }

    /// The pseudonyms `value` has in the log: under the current key, then under the previous
    /// one (to find one known identifier's records across a rotation).
    pub fn lookup(&self, feed: Feed, value: &str) -> Vec<String> {
        [&self.key, &self.previous]
            .into_iter()
            .flatten()
            .map(|k| pseudonym(&k.0, feed, value))
            .collect()
    }

    /// Step 1: removes the dropped fields and the free text the feed does not allow.
    pub fn scrub(&self, feed: Option<Feed>, raw: &mut RawRecord) {
        let r = self.rules(feed);
        for name in &r.drop {
            if let Some(slot) = raw.slot(name) {
                *slot = None;
            }
        }
        for name in FREE_TEXT {
            if !r.allow_free_text.iter().any(|a| a == name) {
                if let Some(slot) = raw.slot(name) {
                    *slot = None;
                }
            }
        }
    }

    /// A reason that quotes no coordinate and no identifier.
    pub fn scrub_error(&self, mut e: RecordError) -> RecordError {
        match (&e.kind, e.field) {
            (RejectKind::OutsideZones, Some("sensor")) => {
                e.reason = "no known position for this sensor (identifier withheld)".into()
            }
            (RejectKind::OutsideZones, _) => {
                e.reason = "the point is outside every zone (coordinates withheld)".into()
            }
            // Text in `zone` that names no zone may be anything an operator typed there, a
            // person's name included: withheld like an identifier.
            (RejectKind::UnknownZone, _) => {
                e.reason = "not the id of a configured zone (value withheld)".into()
            }
            (_, Some("lat" | "lon")) => {
                e.reason = format!("{} (coordinates withheld)", e.kind.name())
            }
            (_, Some("id" | "sensor")) => {
                e.reason = format!("{} (identifier withheld)", e.kind.name())
            }
            _ => {}
        }
        e
    }

    /// Steps 1 to 4 (see the module): the record to commit, or why not and what to show.
    /// `feed` overrides the record's own `feed` field (mappings, MQTT topics).
    pub fn admit(
        &self,
        mut raw: RawRecord,
        feed: Option<Feed>,
        checks: Checks,
        seq: u64,
    ) -> Result<Record, Refused> {
        let feed = feed.or_else(|| match &raw.feed {
            Some(Scalar::Str(s)) => Feed::parse(s.trim()),
            _ => None,
        });
        self.scrub(feed, &mut raw);
        let refuse = |this: &Self, raw: &mut RawRecord, e: RecordError| {
            if e.kind == RejectKind::UnknownZone {
                raw.zone = Some(Scalar::Str(WITHHELD.into()));
            }
            Refused {
                sample: this.sample(feed, raw, e.kind == RejectKind::SuppressedBelowK),
                error: this.scrub_error(e),
            }
        };
        let mut record = match validate(&raw, feed, checks, seq) {
            Ok(r) => r,
            Err(e) => return Err(refuse(self, &mut raw, e)),
        };
        let f = record.feed;
        if let Some(id) = &record.id {
            if let Some(p) = self.pseudonymise(f, "id", id) {
                record.id = Some(p);
            }
        }
        if let Some(Body::Density { sensor, people, .. }) = &mut record.body {
            if let Some(k) = self.rules(Some(f)).min_count {
                if people.0 < k as f64 {
                    let e = RecordError::field(
                        RejectKind::SuppressedBelowK,
                        "people",
                        format!("fewer people than the minimum count ({k}): suppressed"),
                    );
                    return Err(refuse(self, &mut raw, e));
                }
            }
            if let Some(s) = sensor {
                if let Some(p) = self.pseudonymise(f, "sensor", s) {
                    *s = p;
                }
            }
        }
        Ok(record)
    }

    /// How an identifier value may be shown: pseudonymised if the feed says so, as is if the
    /// feed keeps it as is (it is stored so), withheld when the feed is unknown.
    pub fn show_identifier(&self, feed: Option<Feed>, field: &str, value: &str) -> String {
        let Some(f) = feed else {
            return WITHHELD.into();
        };
        if self.rules(Some(f)).drop.iter().any(|d| d == field) {
            return WITHHELD.into();
        }
        self.pseudonymise(f, field, value)
            .unwrap_or_else(|| value.to_string())
    }

    /// What may be shown of a (scrubbed) raw record: a JSON object of its fields, coordinates
    /// withheld, identifiers as [`Privacy::show_identifier`] says, `people` withheld when the
    /// record was suppressed; at most [`SAMPLE_CHARS`] characters.
    pub fn sample(&self, feed: Option<Feed>, raw: &mut RawRecord, suppressed: bool) -> String {
        let mut map = serde_json::Map::new();
        for name in FIELDS {
            let Some(Some(v)) = raw.slot(name).map(|s| s.as_ref()) else {
                continue;
            };
            let withheld = serde_json::Value::String(WITHHELD.into());
            let shown = match (name, v) {
                ("lat" | "lon", _) => withheld,
                ("people", _) if suppressed => withheld,
                ("id" | "sensor", Scalar::Str(s)) => {
                    serde_json::Value::String(self.show_identifier(feed, name, s))
                }
                ("id" | "sensor", Scalar::Num(n)) if n.fract() == 0.0 && n.abs() < 1e15 => {
                    let s = format!("{}", *n as i64);
                    serde_json::Value::String(self.show_identifier(feed, name, &s))
                }
                ("id" | "sensor", _) => withheld,
                (_, Scalar::Num(n)) => serde_json::Number::from_f64(*n)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number),
                (_, Scalar::Str(s)) => serde_json::Value::String(s.to_string()),
                (_, Scalar::Bool(b)) => serde_json::Value::Bool(*b),
                (_, Scalar::Null) => serde_json::Value::Null,
                // A pair is a [lon, lat] point; anything nested may hold anything.
                (_, Scalar::Pair(..) | Scalar::Nested(_)) => withheld,
            };
            map.insert(name.to_string(), shown);
        }
        let text = serde_json::Value::Object(map).to_string();
        match text.char_indices().nth(SAMPLE_CHARS) {
            Some((i, _)) => format!("{}…", &text[..i]),
            None => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::parse_json_line;
    use vigie_config::Config;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OLD: &[u8] = b"an older key, retired 2025-01-01";

    fn config(text: &str) -> PrivacyConfig {
        let c = Config::parse(
            &format!("zones = \"zones/marseille.geojson\"\n{text}"),
            "t.toml",
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        c.privacy
    }

    fn privacy() -> Privacy {
        let c = config(
            "[privacy]\nkey_env = \"K\"\nprevious_key_env = \"P\"\n\
             [privacy.feeds.density]\npseudonymise = [\"sensor\"]\nmin_count = 5\n\
             [privacy.feeds.incident]\npseudonymise = [\"id\"]\ndrop = [\"status\"]\nallow_free_text = [\"category\"]\n",
        );
        Privacy::with_keys(&c, Some(KEY.to_vec()), Some(OLD.to_vec())).unwrap()
    }

    fn admit(p: &Privacy, line: &str) -> Result<Record, Refused> {
        let zones = Config::embedded_default().zones;
        p.admit(
            parse_json_line(line).unwrap(),
            None,
            Checks::zones(&zones),
            7,
        )
    }

    /// The expected values were computed with Python's standard library:
    /// `hmac.new(key, b"density\x00" + value, hashlib.sha256).hexdigest()[:32]`.
    #[test]
    fn pseudonyms_are_hmac_sha256_of_feed_nul_value_truncated() {
        assert_eq!(
            pseudonym(KEY, Feed::Density, "cam-42"),
            "3de2cbe9000e85627e0853a4596208d7"
        );
        assert_eq!(
            pseudonym(KEY, Feed::Incident, "cam-42"),
            "41c31b35599b92b8ba3693ddf7ee39e3"
        );
        // RFC 4231 test case 2 (key "Jefe"): the HMAC itself.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn identifiers_are_pseudonymised_and_rotation_changes_them() {
        let p = privacy();
        let r = admit(
            &p,
            r#"{"feed":"density","ts":1764338400,"zone":"13001","sensor":"cam-42","people":12}"#,
        )
        .unwrap();
        let Some(Body::Density { sensor, .. }) = &r.body else {
            panic!("{r:?}")
        };
        assert_eq!(
            sensor.as_deref(),
            Some(pseudonym(KEY, Feed::Density, "cam-42").as_str())
        );
        let r = admit(
            &p,
            r#"{"feed":"incident","ts":1764338400,"zone":"13001","id":"case 17","severity":3}"#,
        )
        .unwrap();
        assert_eq!(r.id, Some(pseudonym(KEY, Feed::Incident, "case 17")));
        // Numeric ids are pseudonymised as their text.
        let r = admit(
            &p,
            r#"{"feed":"incident","ts":1764338400,"zone":"13001","id":17,"severity":3}"#,
        )
        .unwrap();
        assert_eq!(r.id, Some(pseudonym(KEY, Feed::Incident, "17")));
        // Rotation: the new key gives other pseudonyms; lookup finds both.
        let both = p.lookup(Feed::Incident, "case 17");
        assert_eq!(
            both,
            vec![
                pseudonym(KEY, Feed::Incident, "case 17"),
                pseudonym(OLD, Feed::Incident, "case 17")
            ]
        );
        assert_ne!(both[0], both[1]);
        // Feeds that do not pseudonymise keep their ids (the agenda's are not personal).
        let r = admit(
            &p,
            r#"{"feed":"event","ts":1,"id":"E1","zone":"13001","start":1,"end":2,"attendance":100,"kind":"sport"}"#,
        )
        .unwrap();
        assert_eq!(r.id.as_deref(), Some("E1"));
    }

    #[test]
    fn drop_and_free_text() {
        let p = privacy();
        // `status` is dropped for incidents: the cancellation becomes a plain (valid) record.
        let r = admit(
            &p,
            r#"{"feed":"incident","ts":1764338400,"zone":"13001","id":"x","status":"cancelled","severity":2,"category":"theft","source":"Officer Dupont"}"#,
        )
        .unwrap();
        assert!(r.body.is_some());
        // Free text is gone from what could be shown; `category` is allowed for incidents.
        let mut raw = parse_json_line(
            r#"{"feed":"incident","ts":1,"category":"theft","source":"Officer Dupont"}"#,
        )
        .unwrap();
        p.scrub(Some(Feed::Incident), &mut raw);
        assert!(raw.source.is_none() && raw.category.is_some());
        let mut raw =
            parse_json_line(r#"{"feed":"density","ts":1,"category":"x","source":"y"}"#).unwrap();
        p.scrub(Some(Feed::Density), &mut raw);
        assert!(raw.source.is_none() && raw.category.is_none());
        // A dropped required field makes the record invalid, as if it was never sent.
        let c = config("[privacy.feeds.incident]\ndrop = [\"severity\"]\n");
        let q = Privacy::with_keys(&c, None, None).unwrap();
        let e = admit(
            &q,
            r#"{"feed":"incident","ts":1764338400,"zone":"13001","severity":3}"#,
        )
        .unwrap_err();
        assert_eq!(e.error.kind, RejectKind::MissingField);
        assert!(!e.sample.contains("severity"), "{}", e.sample);
    }

    #[test]
    fn densities_below_k_are_suppressed_and_their_count_withheld() {
        let p = privacy();
        let e = admit(
            &p,
            r#"{"feed":"density","ts":1764338400,"zone":"13001","sensor":"cam-42","people":4}"#,
        )
        .unwrap_err();
        assert_eq!(e.error.kind.name(), "suppressed_below_k");
        assert!(
            e.sample.contains(r#""people":"<withheld>""#),
            "{}",
            e.sample
        );
        assert!(!e.sample.contains("cam-42"), "{}", e.sample);
        assert!(admit(
            &p,
            r#"{"feed":"density","ts":1764338400,"zone":"13001","people":5}"#
        )
        .is_ok());
        // A cancellation carries no count: it goes through.
        assert!(admit(
            &p,
            r#"{"feed":"density","ts":1764338400,"id":"d","status":"cancelled"}"#
        )
        .is_ok());
    }

    #[test]
    fn coordinates_are_reduced_to_the_zone_and_never_shown() {
        let p = privacy();
        let zones = Config::embedded_default().zones;
        // Inside Marseille 1er (13001), the mean of its outline's vertices.
        let (lat, lon) = (43.298_644_274_335_53, 5.379_927_349_415_915);
        let line = format!(
            r#"{{"feed":"density","ts":1764338400,"lat":{lat},"lon":{lon},"sensor":"cam-42","people":50}}"#
        );
        let r = admit(&p, &line).unwrap();
        assert_eq!(r.body.as_ref().unwrap().zone(), zones.by_id("13001"));
        let text = serde_json::to_string(&r).unwrap();
        assert!(
            !text.contains(&format!("{lat}")) && !text.contains("cam-42"),
            "{text}"
        );
        // Outside every zone: neither the reason nor the sample quotes the point.
        let e = admit(
            &p,
            r#"{"feed":"density","ts":1764338400,"lat":48.8566,"lon":2.3522,"sensor":"cam-42","people":50}"#,
        )
        .unwrap_err();
        assert_eq!(e.error.kind, RejectKind::OutsideZones);
        for shown in [&e.error.reason, &e.sample] {
            assert!(
                !shown.contains("48.8566")
                    && !shown.contains("2.3522")
                    && !shown.contains("cam-42"),
                "{shown}"
            );
        }
        // A feed that cannot be told: identifiers withheld.
        let e = admit(&p, r#"{"feed":"nope","ts":1,"id":"case 17","sensor":"s"}"#).unwrap_err();
        assert!(!e.sample.contains("case 17"), "{}", e.sample);
    }

    #[test]
    fn debug_shows_no_key() {
        let p = privacy();
        let d = format!("{p:?}");
        assert!(
            !d.contains("0123456789abcdef") && !d.contains("older key"),
            "{d}"
        );
    }
}
