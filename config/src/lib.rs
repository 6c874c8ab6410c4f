//! Configuration of vigie: one typed tree, parsed from TOML with unknown keys rejected, and
//! validated so that every bad value is reported with the key that holds it.
//!
//! The documented default is `config/default.toml`; [`ModelParams::default`] and the other
//! `Default`s in code equal it (a test checks). Zones come from GeoJSON zone files
//! ([`zones`]); CSV feeds are described by [`mapping::Mapping`]s.
//!
//! A small real sample (Vancouver Police Department incidents of December 2020) and its
//! configuration are embedded, so that `vigie replay` runs with no file at all.

pub mod alerts;
pub mod api;
pub mod ingest;
pub mod mapping;
pub mod outputs;
pub mod privacy;
pub mod ranges;
pub mod store;
pub mod zones;

use chrono_tz::Tz;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use alerts::{AlertRule, AlertsConfig, Indicator, NotifierConfig, NotifierKind, Op, Severity};
pub use api::{ApiConfig, ApiToken, Role};
pub use ingest::{HttpConfig, IngestConfig, MqttConfig, MqttTopic, SourceConfig};
pub use mapping::Mapping;
pub use outputs::{InfluxConfig, Outputs};
pub use privacy::{FeedPrivacy, PrivacyConfig};
pub use ranges::Ranges;
pub use store::StoreConfig;
pub use zones::{Zone, ZoneSet};

/// A configuration error, naming the key or the file and line at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: invalid value for `{key}`: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
    #[error("cannot read {file}: {message}")]
    Io { file: String, message: String },
}

/// The embedded files: the default configuration, the Marseille zones, and the sample job.
pub mod embedded {
    /// `config/default.toml`.
    pub const DEFAULT_CONFIG: &str = include_str!("../default.toml");
    /// `config/zones/marseille.geojson`.
    pub const MARSEILLE_ZONES: &str = include_str!("../zones/marseille.geojson");
    /// `config/vancouver.toml`: the configuration of the embedded sample job.
    pub const SAMPLE_CONFIG: &str = include_str!("../vancouver.toml");
    /// `config/zones/vancouver.geojson`.
    pub const VANCOUVER_ZONES: &str = include_str!("../zones/vancouver.geojson");
    /// `config/samples/vancouver_crime_2020-12.csv`: VPD incidents of December 2020.
    pub const SAMPLE_DATA: &str = include_str!("../samples/vancouver_crime_2020-12.csv");
    /// The mapping name that reads [`SAMPLE_DATA`].
    pub const SAMPLE_MAPPING: &str = "vancouver_crime";

    /// The embedded file at a path relative to `config/`, if any.
    pub fn file(path: &str) -> Option<&'static str> {
        match path.trim_start_matches("./") {
            "default.toml" => Some(DEFAULT_CONFIG),
            "vancouver.toml" => Some(SAMPLE_CONFIG),
            "zones/marseille.geojson" => Some(MARSEILLE_ZONES),
            "zones/vancouver.geojson" => Some(VANCOUVER_ZONES),
            "samples/vancouver_crime_2020-12.csv" => Some(SAMPLE_DATA),
            _ => None,
        }
    }
}

/// Coefficients of the reference indicator model (`docs/model.md`), v1 and v2; defaults are
/// the documented ones.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelParams {
    /// Which model: 1 (incidents, crowd, events, weather) or 2 (the default: adds exposure,
    /// calls, traffic fluidity, criticality and confidence).
    pub version: u8,
    /// `W`: weeks of history in the baseline and the typical crowd.
    pub weeks: i64,
    /// Hours of the horizon before the clock's hour.
    pub past_hours: i64,
    /// Hours of the horizon after the clock's hour.
    pub future_hours: i64,
    /// Weight of `recent` beside `baseline`.
    pub recent_weight: f64,
    /// Weight of `max(0, load − 1)`.
    pub overload_weight: f64,
    /// Weight of `E / capacity`.
    pub event_weight: f64,
    /// Temperature above which heat raises the risk (°C).
    pub heat_threshold_c: f64,
    /// Weight per degree above `heat_threshold_c`.
    pub heat_weight: f64,
    /// Wind speed above which wind raises the risk (km/h).
    pub wind_threshold_kmh: f64,
    /// Weight of strong wind.
    pub wind_weight: f64,
    /// Precipitation above which rain lowers the risk (mm).
    pub rain_threshold_mm: f64,
    /// Weight of rain (subtracted).
    pub rain_weight: f64,
    /// Weight of a demonstration in the zone and hour.
    pub demonstration_weight: f64,
    /// Scores below which the level is 1, 2 and 3 (else 4).
    pub level_thresholds: [f64; 3],
    /// Difference from the mean of the three previous hours that makes a trend.
    pub trend_threshold: f64,
    /// v2: weight of a hotline call in `I` beside an incident's severity.
    pub call_weight: f64,
    /// v2: exposure per 1000 attendees, by kind of event.
    pub exposure_rates: ExposureRates,
    /// v2: share of the neighbours' events' exposure that spills into a zone.
    pub spill_share: f64,
    /// v2: exposure per 1000 people observed above the typical crowd.
    pub surge_rate: f64,
    /// v2: vehicles per hour an event adds per attendee where traffic is not observed.
    pub vehicles_per_attendee: f64,
    /// v2: α of the BPR travel-time curve, `fluidity = 1 / (1 + α·(v/c)^β)`.
    pub bpr_alpha: f64,
    /// v2: β of the BPR curve.
    pub bpr_beta: f64,
    /// v2: fluidity at or above which the level is 1, 2 and 3 (else 4), descending.
    pub fluidity_thresholds: [f64; 3],
    /// v2: difference in load from the mean of the three previous hours that makes a trend.
    pub load_trend_threshold: f64,
    /// v2: the same for fluidity.
    pub fluidity_trend_threshold: f64,
    /// v2: hours without any incident after which the incident feed counts as missing.
    pub stale_incident_hours: i64,
}

impl ModelParams {
    /// True under model v2.
    pub fn v2(&self) -> bool {
        self.version >= 2
    }
}

/// v2: exposure per 1000 attendees, by kind of event (`[model.exposure_rates]`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExposureRates {
    pub market: f64,
    pub festival: f64,
    pub sport: f64,
    pub concert: f64,
    pub demonstration: f64,
    pub official_visit: f64,
    pub filming: f64,
    pub roadworks: f64,
    pub other: f64,
}

impl Default for ExposureRates {
    fn default() -> Self {
        ExposureRates {
            market: 0.03,
            festival: 0.08,
            sport: 0.12,
            concert: 0.08,
            demonstration: 0.15,
            official_visit: 0.05,
            filming: 0.01,
            roadworks: 0.0,
            other: 0.05,
        }
    }
}

impl ExposureRates {
    /// The rate of a kind.
    pub fn of(&self, kind: vigie_model::EventKind) -> f64 {
        use vigie_model::EventKind as K;
        match kind {
            K::Market => self.market,
            K::Festival => self.festival,
            K::Sport => self.sport,
            K::Concert => self.concert,
            K::Demonstration => self.demonstration,
            K::OfficialVisit => self.official_visit,
            K::Filming => self.filming,
            K::Roadworks => self.roadworks,
            K::Other => self.other,
        }
    }

    fn all(&self) -> [(&'static str, f64); 9] {
        [
            ("market", self.market),
            ("festival", self.festival),
            ("sport", self.sport),
            ("concert", self.concert),
            ("demonstration", self.demonstration),
            ("official_visit", self.official_visit),
            ("filming", self.filming),
            ("roadworks", self.roadworks),
            ("other", self.other),
        ]
    }
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams {
            version: 2,
            weeks: 52,
            past_hours: 168,
            future_hours: 720,
            recent_weight: 0.5,
            overload_weight: 0.8,
            event_weight: 0.3,
            heat_threshold_c: 30.0,
            heat_weight: 0.02,
            wind_threshold_kmh: 60.0,
            wind_weight: 0.1,
            rain_threshold_mm: 2.0,
            rain_weight: 0.1,
            demonstration_weight: 0.5,
            level_thresholds: [25.0, 50.0, 75.0],
            trend_threshold: 5.0,
            call_weight: 0.25,
            exposure_rates: ExposureRates::default(),
            spill_share: 0.25,
            surge_rate: 0.05,
            vehicles_per_attendee: 0.1,
            bpr_alpha: 0.15,
            bpr_beta: 4.0,
            fluidity_thresholds: [0.9, 0.75, 0.5],
            load_trend_threshold: 0.05,
            fluidity_trend_threshold: 0.05,
            stale_incident_hours: 6,
        }
    }
}

/// How the engine runs.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineParams {
    /// Timely worker threads per process.
    pub workers: usize,
    /// Records per epoch in a replay: larger batches give throughput, smaller ones latency.
    pub batch: usize,
}

impl Default for EngineParams {
    fn default() -> Self {
        EngineParams {
            workers: 1,
            batch: 200_000,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_tz")]
    timezone: String,
    zones: String,
    #[serde(default)]
    model: ModelParams,
    #[serde(default)]
    engine: EngineParams,
    #[serde(default)]
    ranges: Ranges,
    #[serde(default)]
    mappings: BTreeMap<String, Mapping>,
    #[serde(default)]
    outputs: Outputs,
    #[serde(default)]
    store: StoreConfig,
    #[serde(default)]
    ingest: IngestConfig,
    #[serde(default)]
    sources: Vec<SourceConfig>,
    #[serde(default)]
    privacy: PrivacyConfig,
    #[serde(default)]
    api: ApiConfig,
    #[serde(default)]
    alerts: AlertsConfig,
}

fn default_tz() -> String {
    "Europe/Paris".to_string()
}

/// A loaded and validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from (`<embedded …>` for embedded ones).
    pub origin: String,
    /// Directory that relative paths in the configuration are resolved against.
    pub base_dir: Option<PathBuf>,
    pub timezone: Tz,
    pub zones: ZoneSet,
    pub model: ModelParams,
    pub engine: EngineParams,
    /// The physical ranges of the records' values.
    pub ranges: Ranges,
    pub mappings: BTreeMap<String, Mapping>,
    /// Where results go besides the output file; paths in it are resolved against
    /// `base_dir` already.
    pub outputs: Outputs,
    /// The embedded store; its folder is resolved against `base_dir` already.
    pub store: StoreConfig,
    /// Live ingest (`vigie run`); its folder is resolved against `base_dir` already.
    pub ingest: IngestConfig,
    /// Who may write which feeds.
    pub sources: Vec<SourceConfig>,
    /// What a record may keep at the door; its key files are resolved against `base_dir`
    /// already.
    pub privacy: PrivacyConfig,
    /// Who may read and act on the query API and the wall; token files resolved against
    /// `base_dir` already.
    pub api: ApiConfig,
    /// Alert rules, zone groups and notifiers (`vigie run`).
    pub alerts: AlertsConfig,
}

impl Config {
    /// Loads a configuration file; relative paths in it are resolved against its directory.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            file: path.display().to_string(),
            message: e.to_string(),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Config::parse(&text, &path.display().to_string(), Some(base))
    }

    /// The embedded default configuration (`config/default.toml`, Marseille zones).
    pub fn embedded_default() -> Config {
        Config::parse(embedded::DEFAULT_CONFIG, "<embedded default.toml>", None)
            .expect("the embedded default configuration is valid")
    }

    /// The embedded configuration of the sample job (`config/vancouver.toml`).
    pub fn embedded_sample() -> Config {
        Config::parse(embedded::SAMPLE_CONFIG, "<embedded vancouver.toml>", None)
            .expect("the embedded sample configuration is valid")
    }

    /// Reads a file named in the configuration: relative to `base_dir`, or embedded.
    pub fn read_relative(&self, rel: &str) -> Result<String, ConfigError> {
        read_relative(self.base_dir.as_deref(), rel, &self.origin)
    }

    /// Resolves a path named in the configuration against `base_dir`.
    pub fn resolve(&self, rel: &str) -> PathBuf {
        match &self.base_dir {
            Some(dir) => dir.join(rel),
            None => PathBuf::from(rel),
        }
    }

    /// Parses a configuration text. `base_dir` is `None` for embedded configurations, whose
    /// zone files are embedded too.
    pub fn parse(
        text: &str,
        origin: &str,
        base_dir: Option<PathBuf>,
    ) -> Result<Config, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: origin.to_string(),
            message: e.to_string(),
        })?;
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            file: origin.to_string(),
            key: key.to_string(),
            message,
        };
        let timezone: Tz = raw
            .timezone
            .parse()
            .map_err(|_| invalid("timezone", format!("unknown time zone {:?}", raw.timezone)))?;
        validate_model(&raw.model).map_err(|(k, m)| invalid(&format!("model.{k}"), m))?;
        if raw.engine.workers == 0 {
            return Err(invalid("engine.workers", "must be at least 1".into()));
        }
        if raw.engine.batch == 0 {
            return Err(invalid("engine.batch", "must be at least 1".into()));
        }
        raw.ranges
            .validate()
            .map_err(|(k, m)| invalid(&format!("ranges.{k}"), m))?;
        let zone_text = read_relative(base_dir.as_deref(), &raw.zones, origin)?;
        let zones = ZoneSet::from_geojson(&zone_text)
            .map_err(|m| invalid("zones", format!("{}: {m}", raw.zones)))?;
        for (name, mapping) in &raw.mappings {
            mapping
                .validate()
                .map_err(|(k, m)| invalid(&format!("mappings.{name}.{k}"), m))?;
        }
        let mut outputs = raw.outputs;
        if let Some(influx) = &mut outputs.influxdb {
            influx
                .validate()
                .map_err(|(k, m)| invalid(&format!("outputs.influxdb.{k}"), m))?;
            if let Some(dir) = &base_dir {
                influx.buffer_dir = dir.join(&influx.buffer_dir);
                if let Some(f) = &mut influx.token_file {
                    *f = dir.join(&*f);
                }
            }
        }
        let mut store = raw.store;
        store
            .validate()
            .map_err(|(k, m)| invalid(&format!("store.{k}"), m))?;
        if let (Some(dir), Some(base)) = (&mut store.dir, &base_dir) {
            *dir = base.join(&*dir);
        }
        let mut ingest = raw.ingest;
        ingest
            .validate()
            .map_err(|(k, m)| invalid(&format!("ingest.{k}"), m))?;
        let mut sources = raw.sources;
        let mut names = std::collections::BTreeSet::new();
        let mut users = std::collections::BTreeSet::new();
        for (i, s) in sources.iter_mut().enumerate() {
            if let Some(u) = &s.mqtt_username {
                let vigie_user = ingest.mqtt.as_ref().and_then(|m| m.username.as_ref());
                if !users.insert(u.clone()) || vigie_user == Some(u) {
                    return Err(invalid(
                        &format!("sources[{i}].mqtt_username"),
                        format!("`{u}` is taken: an MQTT user must say who publishes"),
                    ));
                }
            }
            s.validate()
                .map_err(|(k, m)| invalid(&format!("sources[{i}].{k}"), m))?;
            if !names.insert(s.name.clone()) {
                return Err(invalid(
                    &format!("sources[{i}].name"),
                    format!("`{}` is given twice", s.name),
                ));
            }
            if let Some(base) = &base_dir {
                for f in [&mut s.token_file, &mut s.mqtt_password_file]
                    .into_iter()
                    .flatten()
                {
                    *f = base.join(&*f);
                }
            }
        }
        if let Some(base) = &base_dir {
            ingest.log_dir = base.join(&ingest.log_dir);
        }
        if let Some(mqtt) = &mut ingest.mqtt {
            mqtt.validate(&sources, &raw.mappings)
                .map_err(|(k, m)| invalid(&format!("ingest.mqtt.{k}"), m))?;
            if let Some(base) = &base_dir {
                for f in [&mut mqtt.password_file, &mut mqtt.ca_file]
                    .into_iter()
                    .flatten()
                {
                    *f = base.join(&*f);
                }
            }
        }
        let mut privacy = raw.privacy;
        privacy
            .validate()
            .map_err(|(k, m)| invalid(&format!("privacy.{k}"), m))?;
        if let Some(base) = &base_dir {
            for f in [&mut privacy.key_file, &mut privacy.previous_key_file]
                .into_iter()
                .flatten()
            {
                *f = base.join(&*f);
            }
        }
        let mut api = raw.api;
        api.validate()
            .map_err(|(k, m)| invalid(&format!("api.{k}"), m))?;
        if let Some(base) = &base_dir {
            for t in &mut api.tokens {
                if let Some(f) = &mut t.token_file {
                    *f = base.join(&*f);
                }
            }
        }
        let zone_ids: Vec<String> = zones.iter().map(|z| z.id.clone()).collect();
        raw.alerts.model_v1 = !raw.model.v2();
        raw.alerts
            .validate(&zone_ids)
            .map_err(|(k, m)| invalid(&format!("alerts.{k}"), m))?;
        Ok(Config {
            origin: origin.to_string(),
            alerts: raw.alerts,
            api,
            privacy,
            store,
            ingest,
            sources,
            base_dir,
            timezone,
            zones,
            model: raw.model,
            engine: raw.engine,
            ranges: raw.ranges,
            mappings: raw.mappings,
            outputs,
        })
    }
}

fn read_relative(base: Option<&Path>, rel: &str, origin: &str) -> Result<String, ConfigError> {
    match base {
        Some(dir) => {
            let p = dir.join(rel);
            std::fs::read_to_string(&p).map_err(|e| ConfigError::Io {
                file: p.display().to_string(),
                message: e.to_string(),
            })
        }
        None => embedded::file(rel)
            .map(str::to_string)
            .ok_or_else(|| ConfigError::Io {
                file: rel.to_string(),
                message: format!("{origin} is embedded and names a file that is not"),
            }),
    }
}

fn validate_model(m: &ModelParams) -> Result<(), (String, String)> {
    if !(1..=2).contains(&m.version) {
        return Err((
            "version".into(),
            format!("must be 1 or 2, got {}", m.version),
        ));
    }
    // Ten years of baseline or horizon is far beyond any operations room's need, and keeps
    // every week and hour computation within the calendar.
    let within = |k: &str, v: i64, lo: i64, hi: i64| {
        if (lo..=hi).contains(&v) {
            Ok(())
        } else {
            Err((k.to_string(), format!("must be from {lo} to {hi}, got {v}")))
        }
    };
    within("weeks", m.weeks, 1, 520)?;
    within("future_hours", m.future_hours, 0, 87_600)?;
    within("past_hours", m.past_hours, 0, 87_600)?;
    within("stale_incident_hours", m.stale_incident_hours, 0, 87_600)?;
    let finite = [
        ("recent_weight", m.recent_weight),
        ("overload_weight", m.overload_weight),
        ("event_weight", m.event_weight),
        ("heat_threshold_c", m.heat_threshold_c),
        ("heat_weight", m.heat_weight),
        ("wind_threshold_kmh", m.wind_threshold_kmh),
        ("wind_weight", m.wind_weight),
        ("rain_threshold_mm", m.rain_threshold_mm),
        ("rain_weight", m.rain_weight),
        ("demonstration_weight", m.demonstration_weight),
        ("trend_threshold", m.trend_threshold),
        ("call_weight", m.call_weight),
        ("spill_share", m.spill_share),
        ("surge_rate", m.surge_rate),
        ("vehicles_per_attendee", m.vehicles_per_attendee),
        ("bpr_alpha", m.bpr_alpha),
        ("bpr_beta", m.bpr_beta),
        ("load_trend_threshold", m.load_trend_threshold),
        ("fluidity_trend_threshold", m.fluidity_trend_threshold),
    ];
    for (k, v) in finite {
        if !v.is_finite() {
            return Err((k.into(), format!("must be a finite number, got {v}")));
        }
    }
    for (k, v) in m.exposure_rates.all() {
        if !v.is_finite() || v < 0.0 {
            return Err((
                format!("exposure_rates.{k}"),
                format!("must be a finite number >= 0, got {v}"),
            ));
        }
    }
    let t = m.level_thresholds;
    if !(t[0] <= t[1] && t[1] <= t[2]) || t.iter().any(|v| !v.is_finite()) {
        return Err((
            "level_thresholds".into(),
            format!("must be finite and ascending, got {t:?}"),
        ));
    }
    let f = m.fluidity_thresholds;
    if !(f[0] >= f[1] && f[1] >= f[2]) || f.iter().any(|v| !v.is_finite()) {
        return Err((
            "fluidity_thresholds".into(),
            format!("must be finite and descending, got {f:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_equals_the_defaults_in_code() {
        let c = Config::embedded_default();
        assert_eq!(c.model, ModelParams::default());
        assert_eq!(c.engine, EngineParams::default());
        assert_eq!(c.ranges, Ranges::default());
        assert_eq!(c.timezone, chrono_tz::Europe::Paris);
        assert_eq!(c.zones.len(), 16);
    }

    #[test]
    fn every_shipped_configuration_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "toml") && p.file_name().unwrap() != "Cargo.toml"
            {
                Config::from_file(&p).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 5, "expected the shipped configurations, found {n}");
        Config::embedded_sample();
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.toml", None)
    }

    #[test]
    fn ranges_are_checked_and_named() {
        let c =
            parse("zones = \"zones/marseille.geojson\"\n[ranges]\ntemperature_c = [-40.0, 48.0]\n")
                .unwrap();
        assert_eq!(c.ranges.temperature_c, [-40.0, 48.0]);
        assert_eq!(c.ranges.people_max, Ranges::default().people_max);
        let e = parse("zones = \"zones/marseille.geojson\"\n[ranges]\nwind_kmh = [100.0, 10.0]\n")
            .unwrap_err();
        assert!(e.to_string().contains("ranges.wind_kmh"), "{e}");
        let e = parse("zones = \"zones/marseille.geojson\"\n[ranges]\nvolume_max = -1.0\n")
            .unwrap_err();
        assert!(e.to_string().contains("ranges.volume_max"), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let e = parse("zones = \"zones/marseille.geojson\"\n[model]\nweekz = 3\n").unwrap_err();
        assert!(e.to_string().contains("weekz"), "{e}");
        let e = parse("zones = \"zones/marseille.geojson\"\ncolour = 1\n").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }

    #[test]
    fn a_rule_on_a_v2_figure_is_refused_under_model_v1() {
        let rule = "[[alerts.rules]]\nname = \"c\"\nindicator = \"criticality\"\nthreshold = 3\n";
        let v2 = parse(&format!("zones = \"zones/marseille.geojson\"\n{rule}")).unwrap();
        assert!(!v2.alerts.model_v1);
        let e = parse(&format!(
            "zones = \"zones/marseille.geojson\"\n[model]\nversion = 1\n{rule}"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("alerts.rules[0].indicator") && e.contains("model v2"),
            "{e}"
        );
    }

    #[test]
    fn invalid_values_name_their_key() {
        let e = parse("zones = \"zones/marseille.geojson\"\n[model]\nweeks = 0\n").unwrap_err();
        assert!(e.to_string().contains("model.weeks"), "{e}");
        let e =
            parse("zones = \"zones/marseille.geojson\"\n[model]\nweeks = 30000000\n").unwrap_err();
        assert!(e.to_string().contains("model.weeks"), "{e}");
        let e = parse("zones = \"zones/marseille.geojson\"\n[model]\npast_hours = 100000000000\n")
            .unwrap_err();
        assert!(e.to_string().contains("model.past_hours"), "{e}");
        let e = parse(
            "zones = \"zones/marseille.geojson\"\n[mappings.x]\nfeed = \"weather\"\ntime = { column = \"t\", format = \"%Y-%Q\" }\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("mappings.x.time"), "{e}");
        let e = parse("zones = \"zones/marseille.geojson\"\ntimezone = \"Mars/Olympus\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("timezone"), "{e}");
        let e = parse(
            "zones = \"zones/marseille.geojson\"\n[model]\nlevel_thresholds = [50.0, 25.0, 75.0]\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("model.level_thresholds"), "{e}");
        let e = parse("zones = \"zones/marseille.geojson\"\n[engine]\nworkers = 0\n").unwrap_err();
        assert!(e.to_string().contains("engine.workers"), "{e}");
        let e = parse(
            "zones = \"zones/marseille.geojson\"\n[mappings.x]\nfeed = \"incident\"\ntime = { column = \"t\" }\nfields = { severty = { column = \"s\" } }\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("mappings.x.fields.severty"), "{e}");
    }

    /// The `[outputs.influxdb]` section of `default.toml`, uncommented.
    fn default_influx_section() -> String {
        let text = embedded::DEFAULT_CONFIG;
        let start = text
            .find("# [outputs.influxdb]")
            .expect("documented in default.toml");
        text[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .filter(|l| !l.starts_with("# "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_documented_influx_section_parses_with_its_defaults() {
        let text = format!(
            "zones = \"zones/marseille.geojson\"\n{}",
            default_influx_section()
        );
        let c = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let i = c.outputs.influxdb.expect("the section is there");
        let mut expected = InfluxConfig::new("http://127.0.0.1:8086", "city", "vigie");
        expected.token_env = Some("VIGIE_INFLUX_TOKEN".into());
        assert_eq!(i, expected);
        // Without the section, there is no sink.
        assert!(Config::embedded_default().outputs.influxdb.is_none());
    }

    #[test]
    fn the_documented_alerts_section_parses() {
        let text = embedded::DEFAULT_CONFIG;
        let start = text.find("# [alerts]").expect("documented in default.toml");
        let section: Vec<&str> = text[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .collect();
        let text = format!(
            "zones = \"zones/marseille.geojson\"\n{}",
            section.join("\n")
        );
        let c = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(c.alerts.rules.len(), 3);
        assert_eq!(c.alerts.rules[0].lookahead_h, 24);
        assert_eq!(c.alerts.rules[1].indicator, Indicator::Confidence);
        assert_eq!(c.alerts.rules[1].threshold, 1.0);
        assert_eq!(c.alerts.rules[2].feed.as_deref(), Some("density"));
        assert_eq!(c.alerts.notify[0].min_severity, Severity::Warning);
        assert_eq!(c.alerts.tick_ms, AlertsConfig::default().tick_ms);
        assert!(Config::embedded_default().alerts.rules.is_empty());
    }

    #[test]
    fn influx_paths_are_relative_to_the_configuration_file() {
        let text = "zones = \"zones/marseille.geojson\"\n[outputs.influxdb]\nurl = \"http://h:1\"\norg = \"o\"\nbucket = \"b\"\ntoken_file = \"secret\"\n";
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let c = Config::parse(text, "t.toml", Some(dir.to_path_buf())).unwrap();
        let i = c.outputs.influxdb.unwrap();
        assert_eq!(i.buffer_dir, dir.join("data/influx-buffer"));
        assert_eq!(i.token_file, Some(dir.join("secret")));
    }

    #[test]
    fn the_store_section_resolves_its_folder_and_names_bad_keys() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = "zones = \"zones/marseille.geojson\"\n[store]\ndir = \"data/store\"\nretention_days = 400\n";
        let c = Config::parse(text, "t.toml", Some(dir.to_path_buf())).unwrap();
        assert_eq!(c.store.dir, Some(dir.join("data/store")));
        assert_eq!(
            (c.store.partition_days, c.store.retention_days),
            (30, Some(400))
        );
        for (extra, key) in [
            ("partition_days = 0", "store.partition_days"),
            ("retention_days = 0", "store.retention_days"),
            ("flush_versions = 0", "store.flush_versions"),
            ("retention = 3", "retention"),
        ] {
            let e = parse(&format!(
                "zones = \"zones/marseille.geojson\"\n[store]\n{extra}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains(key), "{extra}: {e}");
        }
    }

    #[test]
    fn bad_influx_values_name_their_key() {
        let base = "zones = \"zones/marseille.geojson\"\n[outputs.influxdb]\norg = \"o\"\nbucket = \"b\"\n";
        let cases = [
            ("url = \"ftp://x\"", "outputs.influxdb.url"),
            ("url = \"http://\"", "outputs.influxdb.url"),
            (
                "url = \"http://h\"\nbatch_points = 0",
                "outputs.influxdb.batch_points",
            ),
            (
                "url = \"http://h\"\nbatch_ms = 0",
                "outputs.influxdb.batch_ms",
            ),
            (
                "url = \"http://h\"\nbuffer_max_bytes = 1000",
                "outputs.influxdb.buffer_max_bytes",
            ),
            (
                "url = \"http://h\"\nretry_min_ms = 0",
                "outputs.influxdb.retry_min_ms",
            ),
            (
                "url = \"http://h\"\nretry_min_ms = 500\nretry_max_ms = 10",
                "outputs.influxdb.retry_max_ms",
            ),
            (
                "url = \"http://h\"\ntimeout_ms = 0",
                "outputs.influxdb.timeout_ms",
            ),
            (
                "url = \"http://h\"\ntoken_env = \"A\"\ntoken_file = \"f\"",
                "outputs.influxdb.token_env",
            ),
            (
                "url = \"http://h\"\ntoken_env = \"\"",
                "outputs.influxdb.token_env",
            ),
            ("url = \"http://h\"\ntoken = \"s3cret\"", "token"),
            ("url = \"http://h\"\nbatch_point = 3", "batch_point"),
        ];
        for (extra, key) in cases {
            let e = parse(&format!("{base}{extra}\n")).unwrap_err().to_string();
            assert!(e.contains(key), "{extra}: {e}");
        }
        let e = parse("zones = \"zones/marseille.geojson\"\n[outputs.influxdb]\nurl = \"http://h\"\nbucket = \"b\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("org"), "{e}");
        let e = parse("zones = \"zones/marseille.geojson\"\n[outputs.influxdb]\nurl = \"http://h\"\norg = \" \"\nbucket = \"b\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("outputs.influxdb.org"), "{e}");
        let e = parse("zones = \"zones/marseille.geojson\"\n[outputs.kafka]\nurl = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kafka"), "{e}");
    }

    /// The `[ingest.mqtt]` section of `default.toml`, uncommented.
    fn default_mqtt_section() -> String {
        let text = embedded::DEFAULT_CONFIG;
        let start = text
            .find("# [ingest.mqtt]")
            .expect("documented in default.toml");
        text[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .filter(|l| !l.starts_with('#') && !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_documented_privacy_section_parses_and_bad_keys_are_named() {
        let text = embedded::DEFAULT_CONFIG;
        let start = text
            .find("# [privacy]")
            .expect("documented in default.toml");
        let section: String = text[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let c = parse(&format!("zones = \"zones/marseille.geojson\"\n{section}"))
            .unwrap_or_else(|e| panic!("{e}\n{section}"));
        let p = c.privacy;
        assert_eq!(p.key_env.as_deref(), Some("VIGIE_PRIVACY_KEY"));
        let d = p.feed(vigie_model::Feed::Density);
        assert_eq!(
            (d.pseudonymise, d.min_count),
            (vec!["sensor".to_string()], Some(5))
        );
        assert_eq!(
            p.feed(vigie_model::Feed::Incident).allow_free_text,
            vec!["category".to_string()]
        );
        assert_eq!(Config::embedded_default().privacy, PrivacyConfig::default());
        for (extra, key) in [
            ("key_env = \"A\"\nkey_file = \"f\"", "privacy.key_env"),
            ("previous_key_env = \"A\"", "privacy.previous_key_env"),
            (
                "[privacy.feeds.density]\npseudonymise = [\"sensor\"]",
                "privacy.key_env",
            ),
            (
                "key_env = \"A\"\n[privacy.feeds.density]\npseudonymise = [\"people\"]",
                "privacy.feeds.density.pseudonymise",
            ),
            (
                "[privacy.feeds.incident]\nmin_count = 3",
                "privacy.feeds.incident.min_count",
            ),
            (
                "[privacy.feeds.incident]\ndrop = [\"colour\"]",
                "privacy.feeds.incident.drop",
            ),
            (
                "[privacy.feeds.incident]\nallow_free_text = [\"zone\"]",
                "privacy.feeds.incident.allow_free_text",
            ),
            ("[privacy.feeds.crowds]\ndrop = []", "privacy.feeds.crowds"),
            ("key = \"s3cret\"", "key"),
        ] {
            let e = parse(&format!(
                "zones = \"zones/marseille.geojson\"\n[privacy]\n{extra}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains(key), "{extra}: {e}");
        }
    }

    const SENSORS: &str =
        "[[sources]]\nname = \"sensors\"\nfeeds = [\"density\"]\ntoken_env = \"T\"\n";

    #[test]
    fn the_documented_mqtt_section_parses_with_its_defaults() {
        let text = format!(
            "zones = \"zones/marseille.geojson\"\n{SENSORS}{}",
            default_mqtt_section()
        );
        let c = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let m = c.ingest.mqtt.expect("the section is there");
        assert_eq!(m.url, "mqtt://127.0.0.1:1883");
        assert_eq!(m.client_id, "vigie");
        assert!(!m.clean_session);
        assert_eq!(
            (m.keep_alive_s, m.reconnect_min_ms, m.reconnect_max_ms),
            (30, 100, 30_000)
        );
        assert_eq!(m.max_payload_bytes, 8 << 20);
        assert_eq!(m.topics.len(), 1);
        let t = &m.topics[0];
        assert_eq!(
            (t.filter.as_str(), t.feed.as_str(), t.qos),
            ("city/density/+", "density", 1)
        );
        assert_eq!((t.source.as_str(), t.zone_from_topic), ("sensors", Some(2)));
        assert!(Config::embedded_default().ingest.mqtt.is_none());
    }

    #[test]
    fn bad_mqtt_values_name_their_key() {
        let cases = [
            (
                "url = \"http://h:1\"",
                "filter = \"a/+\", feed = \"density\", source = \"sensors\"",
                "ingest.mqtt.url",
            ),
            (
                "url = \"mqtt://h\"",
                "filter = \"a/+\", feed = \"incident\", source = \"sensors\"",
                "ingest.mqtt.topics[0].feed",
            ),
            (
                "url = \"mqtt://h\"",
                "filter = \"a/+\", feed = \"density\", source = \"cameras\"",
                "ingest.mqtt.topics[0].source",
            ),
            (
                "url = \"mqtt://h\"",
                "filter = \"a/#/b\", feed = \"density\", source = \"sensors\"",
                "ingest.mqtt.topics[0].filter",
            ),
            (
                "url = \"mqtt://h\"",
                "filter = \"a/+\", feed = \"density\", source = \"sensors\", qos = 3",
                "ingest.mqtt.topics[0].qos",
            ),
            (
                "url = \"mqtt://h\"",
                "filter = \"a/+\", feed = \"density\", source = \"sensors\", zone_from_topic = 2",
                "ingest.mqtt.topics[0].zone_from_topic",
            ),
            (
                "url = \"mqtt://h\"",
                "filter = \"a/+\", feed = \"density\", source = \"sensors\", mapping = \"nope\"",
                "ingest.mqtt.topics[0].mapping",
            ),
            (
                "url = \"mqtt://h\"",
                "filter = \"a/+\", feed = \"density\", source = \"sensors\", colour = 1",
                "colour",
            ),
            (
                "url = \"mqtt://h\"\npassword_env = \"P\"",
                "filter = \"a/+\", feed = \"density\", source = \"sensors\"",
                "ingest.mqtt.username",
            ),
            (
                "url = \"mqtt://h\"\nreconnect_max_ms = 1",
                "filter = \"a/+\", feed = \"density\", source = \"sensors\"",
                "ingest.mqtt.reconnect_max_ms",
            ),
        ];
        for (head, topic, key) in cases {
            let text = format!(
                "zones = \"zones/marseille.geojson\"\n{SENSORS}[ingest.mqtt]\n{head}\ntopics = [{{ {topic} }}]\n"
            );
            let e = parse(&text).expect_err(key).to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
        let text = format!(
            "zones = \"zones/marseille.geojson\"\n{SENSORS}[ingest.mqtt]\nurl = \"mqtt://h\"\ntopics = [{{ filter = \"a/+\", feed = \"density\", source = \"sensors\" }}, {{ filter = \"a/#\", feed = \"density\", source = \"sensors\" }}]\n"
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("ingest.mqtt.topics[1].filter") && e.contains("overlaps"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod mqtt_login_tests {
    use super::*;

    fn parse(sources: &str) -> Result<Config, ConfigError> {
        Config::parse(
            &format!("zones = \"zones/marseille.geojson\"\n{sources}"),
            "t.toml",
            None,
        )
    }

    #[test]
    fn a_source_may_have_an_mqtt_login_instead_of_a_token_and_its_faults_are_named() {
        let s = "[[sources]]\nname = \"cams\"\nfeeds = [\"density\"]\n";
        let c = parse(&format!(
            "{s}mqtt_username = \"cams\"\nmqtt_password_file = \"cams.pw\"\n"
        ))
        .unwrap();
        assert!(!c.sources[0].has_token());
        for (extra, key) in [
            ("", "sources[0].token_env"),
            ("mqtt_username = \"cams\"\n", "sources[0].mqtt_password_env"),
            ("mqtt_password_env = \"P\"\n", "sources[0].mqtt_username"),
            (
                "mqtt_username = \"a:b\"\nmqtt_password_env = \"P\"\n",
                "sources[0].mqtt_username",
            ),
            (
                "mqtt_username = \"c\"\nmqtt_password_env = \"P\"\nmqtt_password_file = \"f\"\n",
                "sources[0].mqtt_password_env",
            ),
        ] {
            let e = parse(&format!("{s}{extra}")).unwrap_err().to_string();
            assert!(e.contains(key), "{extra}: {e}");
        }
        let twice = format!(
            "{s}mqtt_username = \"u\"\nmqtt_password_env = \"P\"\n\
             [[sources]]\nname = \"other\"\nfeeds = [\"density\"]\nmqtt_username = \"u\"\nmqtt_password_env = \"Q\"\n"
        );
        let e = parse(&twice).unwrap_err().to_string();
        assert!(e.contains("sources[1].mqtt_username"), "{e}");
    }

    #[test]
    fn source_names_cannot_make_one_source_s_idempotency_keys_another_s() {
        let s = |name: &str| {
            format!("[[sources]]\nname = {name:?}\nfeeds = [\"density\"]\ntoken_env = \"T\"\n")
        };
        assert!(parse(&s("cams-2.north_side")).is_ok());
        for bad in ["", "a/b", "with space", &"n".repeat(65)] {
            let e = parse(&s(bad)).unwrap_err().to_string();
            assert!(e.contains("sources[0].name"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_live_window_of_dates_is_checked_and_defaults_to_40_and_400_days() {
        let c = parse("").unwrap();
        assert_eq!(
            (c.ingest.max_future_days, c.ingest.max_past_days),
            (40, 400)
        );
        let day = 86_400_000_000i64;
        assert_eq!(c.ingest.live_window(1000 * day), (600 * day, 1040 * day));
        for (text, key) in [
            ("[ingest]\nmax_future_days = 0\n", "ingest.max_future_days"),
            ("[ingest]\nmax_past_days = 36501\n", "ingest.max_past_days"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
