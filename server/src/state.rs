//! The application state every route shares ([`AppState`], built from its [`Parts`]), and how
//! a request's token names its caller: the extractors of [`Caller`], [`Operator`] and
//! [`Source`] read the state's token table ([`crate::auth`]).

use crate::auth::{bearer, Caller, Operator, Source, Tokens};
use crate::board::Board;
use crate::error::ApiError;
use crate::listener::ConnStats;
use crate::shutdown::Shutdown;
use crate::streams::Streams;
use axum::extract::FromRequestParts;
use axum::http::request::Parts as RequestParts;
use std::path::PathBuf;
use std::sync::Arc;
use vigie_alerts::Service;
use vigie_config::{Config, Role};
use vigie_connectors::ingest::{CompactionStats, DeadLetters, IngestLog, Metrics, MqttCounters};
use vigie_connectors::privacy::Privacy;
use vigie_model::EngineStats;
use vigie_queries::recent::RecentRecords;
use vigie_store::SharedStore;

/// What the server is built from; every part exists before the first request.
pub struct Parts {
    pub config: Arc<Config>,
    /// Where accepted records are committed.
    pub log: IngestLog,
    /// The ingest log's folder (its size on `/metrics`) and its running compactions.
    pub log_dir: PathBuf,
    pub compactions: Arc<CompactionStats>,
    /// HTTP ingest's counters (also read by the alerting's deadman rules and the feeds' health).
    pub ingest_metrics: Arc<Metrics>,
    /// The MQTT source's counters, when it runs.
    pub mqtt: Option<Arc<MqttCounters>>,
    pub engine: Arc<EngineStats>,
    pub board: Arc<Board>,
    pub store: SharedStore,
    pub recent: Arc<RecentRecords>,
    pub alerts: Arc<Service>,
    pub shutdown: Shutdown,
}

struct Inner {
    parts: Parts,
    tokens: Tokens,
    privacy: Arc<Privacy>,
    dead_letters: DeadLetters,
    conn_stats: Arc<ConnStats>,
    streams: Streams,
}

/// The application state every route shares; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("tokens", &self.inner.tokens)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Reads the tokens and the privacy key (once; the error names the entry at fault, never
    /// a secret).
    pub fn new(parts: Parts) -> Result<AppState, String> {
        let tokens = Tokens::load(&parts.config)?;
        let privacy = Arc::new(Privacy::from_config(&parts.config.privacy)?);
        let dead_letters = DeadLetters::new(parts.config.ingest.dead_letters);
        let parts_http = parts.config.ingest.http.clone();
        Ok(AppState {
            inner: Arc::new(Inner {
                parts,
                tokens,
                privacy,
                dead_letters,
                conn_stats: Arc::default(),
                streams: Streams::new(&parts_http),
            }),
        })
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.inner.parts.config
    }
    pub fn tokens(&self) -> &Tokens {
        &self.inner.tokens
    }
    pub fn board(&self) -> &Arc<Board> {
        &self.inner.parts.board
    }
    pub fn store(&self) -> &SharedStore {
        &self.inner.parts.store
    }
    pub fn recent(&self) -> &RecentRecords {
        &self.inner.parts.recent
    }
    pub fn alerts(&self) -> &Arc<Service> {
        &self.inner.parts.alerts
    }
    pub fn engine(&self) -> &EngineStats {
        &self.inner.parts.engine
    }
    pub fn shutdown(&self) -> &Shutdown {
        &self.inner.parts.shutdown
    }
    pub fn ingest_metrics(&self) -> &Arc<Metrics> {
        &self.inner.parts.ingest_metrics
    }
    pub fn dead_letters(&self) -> &DeadLetters {
        &self.inner.dead_letters
    }
    /// The HTTP listener's counters.
    pub fn conn_stats(&self) -> &Arc<ConnStats> {
        &self.inner.conn_stats
    }
    /// The live streams open now, and their caps.
    pub fn streams(&self) -> &Streams {
        &self.inner.streams
    }
    pub(crate) fn log(&self) -> &IngestLog {
        &self.inner.parts.log
    }
    pub(crate) fn log_dir(&self) -> &std::path::Path {
        &self.inner.parts.log_dir
    }
    pub(crate) fn compactions(&self) -> &CompactionStats {
        &self.inner.parts.compactions
    }
    pub(crate) fn mqtt(&self) -> Option<&MqttCounters> {
        self.inner.parts.mqtt.as_deref()
    }
    pub(crate) fn privacy(&self) -> &Arc<Privacy> {
        &self.inner.privacy
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut RequestParts,
        state: &AppState,
    ) -> Result<Caller, ApiError> {
        state.tokens().caller(bearer(&parts.headers)?)
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut RequestParts,
        state: &AppState,
    ) -> Result<Operator, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.role < Role::Operator {
            return Err(ApiError::forbidden(format!(
                "{} is a {}; this needs an operator",
                caller.name,
                caller.role.as_str()
            )));
        }
        Ok(Operator(caller))
    }
}

impl FromRequestParts<AppState> for Source {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut RequestParts,
        state: &AppState,
    ) -> Result<Source, ApiError> {
        state.tokens().source(bearer(&parts.headers)?)
    }
}
