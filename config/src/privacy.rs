//! The `[privacy]` section: what a record may keep when it comes through the door.
//!
//! vigie is decision support and keeps no personal data. Every live record (HTTP, line
//! protocol, CSV through a mapping, MQTT) goes through the same rules before it is committed
//! to the ingest log, so nothing below reaches the log, the store, the engine or any output:
//!
//! - **Coordinates** (`lat`/`lon`) are reduced to the zone: a record keeps only its zone.
//! - **Free text** (`source`, `category`) is dropped unless the feed lists it in
//!   `allow_free_text` (no free text is an input of the model).
//! - **`drop`**: fields removed before validation (a required field dropped makes the record
//!   invalid, as if it had been sent without it).
//! - **`pseudonymise`**: `id` and `sensor` replaced by the first 32 hex digits of
//!   `HMAC-SHA-256(key, feed || 0x00 || value)`.
//! - **`min_count = k`** (density): a record whose `people` is below k is refused
//!   (`suppressed_below_k`) and never stored.
//!
//! The key is read from `key_env` or `key_file`, never held in this structure (so `Debug` and
//! logs cannot show it). Rotation: set the new key in `key_env`/`key_file` and the old one in
//! `previous_key_env`/`previous_key_file`, then restart; see the README for what linkage a
//! rotation loses.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use vigie_model::Feed;

/// The fields of the record format (`docs/model.md`).
pub const FIELDS: [&str; 22] = [
    "feed",
    "ts",
    "source",
    "id",
    "status",
    "zone",
    "lat",
    "lon",
    "severity",
    "category",
    "people",
    "sensor",
    "start",
    "end",
    "attendance",
    "kind",
    "temperature_c",
    "precip_mm",
    "wind_kmh",
    "issued_at",
    "agents",
    "volume",
];

/// The free-text fields of the record format: dropped unless a feed allows them.
pub const FREE_TEXT: [&str; 2] = ["source", "category"];

/// The identifier fields that may be pseudonymised (the only text a record keeps).
pub const IDENTIFIERS: [&str; 2] = ["id", "sensor"];

/// Shortest key accepted (bytes).
pub const MIN_KEY_BYTES: usize = 16;

/// `[privacy]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    /// Environment variable holding the HMAC key…
    #[serde(default)]
    pub key_env: Option<String>,
    /// …or file holding it (relative to the configuration file once loaded).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The key before the last rotation (environment variable)…
    #[serde(default)]
    pub previous_key_env: Option<String>,
    /// …or file.
    #[serde(default)]
    pub previous_key_file: Option<PathBuf>,
    /// `[privacy.feeds.<feed>]`: the rules of each feed; a feed not listed has the defaults
    /// (free text dropped, nothing else).
    #[serde(default)]
    pub feeds: BTreeMap<String, FeedPrivacy>,
}

/// `[privacy.feeds.<feed>]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedPrivacy {
    /// Fields removed before validation.
    #[serde(default)]
    pub drop: Vec<String>,
    /// Identifier fields (`id`, `sensor`) replaced by their keyed pseudonym.
    #[serde(default)]
    pub pseudonymise: Vec<String>,
    /// Free-text fields (`source`, `category`) kept.
    #[serde(default)]
    pub allow_free_text: Vec<String>,
    /// Density only: a record whose `people` is below this is suppressed.
    #[serde(default)]
    pub min_count: Option<u64>,
}

/// A key read from where the configuration says; never shown.
#[derive(Clone)]
pub struct Key(pub Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

fn read_key(
    env: &Option<String>,
    file: &Option<PathBuf>,
    what: &str,
) -> Result<Option<Key>, String> {
    let text = match (env, file) {
        (Some(var), _) => std::env::var(var).map_err(|e| format!("{what}: {var}: {e}"))?,
        (None, Some(path)) => {
            std::fs::read_to_string(path).map_err(|e| format!("{what}: {}: {e}", path.display()))?
        }
        (None, None) => return Ok(None),
    };
    let key = text.trim().as_bytes().to_vec();
    if key.len() < MIN_KEY_BYTES {
        return Err(format!(
            "{what} is shorter than {MIN_KEY_BYTES} bytes (use 32 random bytes, e.g. `openssl rand -hex 32`)"
        ));
    }
    Ok(Some(Key(key)))
}

impl PrivacyConfig {
    /// Checks the values; the error names the key (under `privacy.`).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let k = |s: &str| s.to_string();
        if self.key_env.is_some() && self.key_file.is_some() {
            return Err((k("key_env"), "give key_env or key_file, not both".into()));
        }
        if self.previous_key_env.is_some() && self.previous_key_file.is_some() {
            return Err((
                k("previous_key_env"),
                "give previous_key_env or previous_key_file, not both".into(),
            ));
        }
        for (name, v) in [
            ("key_env", &self.key_env),
            ("previous_key_env", &self.previous_key_env),
        ] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                return Err((k(name), "must not be empty".into()));
            }
        }
        let has_key = self.key_env.is_some() || self.key_file.is_some();
        if !has_key && (self.previous_key_env.is_some() || self.previous_key_file.is_some()) {
            return Err((
                k("previous_key_env"),
                "a previous key needs a current one (key_env or key_file)".into(),
            ));
        }
        for (feed, rules) in &self.feeds {
            let key = |field: &str| format!("feeds.{feed}.{field}");
            let Some(f) = Feed::parse(feed) else {
                return Err((format!("feeds.{feed}"), format!("`{feed}` is not a feed")));
            };
            for d in &rules.drop {
                if !FIELDS.contains(&d.as_str()) {
                    return Err((key("drop"), format!("`{d}` is not a field of records")));
                }
                if matches!(d.as_str(), "feed" | "ts") {
                    return Err((key("drop"), format!("`{d}` cannot be dropped")));
                }
            }
            for p in &rules.pseudonymise {
                if !IDENTIFIERS.contains(&p.as_str()) {
                    return Err((
                        key("pseudonymise"),
                        format!("`{p}` is not an identifier field (id, sensor)"),
                    ));
                }
                if !has_key {
                    return Err((
                        k("key_env"),
                        format!("feeds.{feed} pseudonymises `{p}`: give key_env or key_file"),
                    ));
                }
            }
            for t in &rules.allow_free_text {
                if !FREE_TEXT.contains(&t.as_str()) {
                    return Err((
                        key("allow_free_text"),
                        format!("`{t}` is not a free-text field (source, category)"),
                    ));
                }
            }
            if rules.min_count.is_some() && f != Feed::Density {
                return Err((
                    key("min_count"),
                    "only density records carry a count".into(),
                ));
            }
        }
        Ok(())
    }

    /// The rules of `feed` (the defaults when it is not listed).
    pub fn feed(&self, feed: Feed) -> FeedPrivacy {
        self.feeds.get(feed.name()).cloned().unwrap_or_default()
    }

    /// Reads the current key and the previous one (trimmed; never logged): `None` when not
    /// configured.
    pub fn read_keys(&self) -> Result<(Option<Key>, Option<Key>), String> {
        let current = read_key(&self.key_env, &self.key_file, "privacy key")?;
        let previous = read_key(
            &self.previous_key_env,
            &self.previous_key_file,
            "previous privacy key",
        )?;
        Ok((current, previous))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_and_never_shown() {
        let dir = tempfile_dir();
        let path = dir.join("key");
        std::fs::write(&path, "0123456789abcdef0123456789abcdef\n").unwrap();
        let c = PrivacyConfig {
            key_file: Some(path.clone()),
            ..Default::default()
        };
        let (k, p) = c.read_keys().unwrap();
        let k = k.unwrap();
        assert_eq!(k.0, b"0123456789abcdef0123456789abcdef");
        assert!(p.is_none());
        assert_eq!(format!("{k:?}"), "<redacted>");
        std::fs::write(&path, "s3cr3t").unwrap();
        let e = c.read_keys().unwrap_err();
        assert!(!e.contains("s3cr3t"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("vigie-privacy-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
