//! The one error type of every route, and its JSON shape.
//!
//! A refused request is answered with its status and `{"error": message, "field": name}` —
//! `field` names the parameter, header or body field at fault when one is — plus, for ingest,
//! what was accepted and rejected. **The one exception** is the InfluxDB write route
//! (`POST /api/v2/write`), whose clients (Telegraf, the InfluxDB libraries) read InfluxDB's
//! own shape, `{"code": …, "message": …}`: an error built for it is marked with
//! [`ApiError::influx`] and rendered that way.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use vigie_alerts::ActionError;

/// A refused request: status, message, the field at fault, extra keys of the answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub field: Option<String>,
    /// Boxed: an error stays small on the paths that return it.
    extra: Option<Box<Map<String, Value>>>,
    influx: bool,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
            extra: None,
            influx: false,
        }
    }

    /// 400, naming the parameter or field at fault.
    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message).field(field)
    }

    /// 404, naming what was not found.
    pub fn not_found(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message).field(field)
    }

    /// 401 (answered with `WWW-Authenticate: Bearer`).
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    /// 503: the server cannot answer now (the engine or the store is not ready, a write failed).
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 413.
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// Names the field at fault.
    pub fn field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    /// Adds a key to the answer (an ingest answer's counts and rejected lines).
    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), value);
        self
    }

    /// Rendered in InfluxDB's shape (`POST /api/v2/write` only).
    pub fn influx(mut self) -> ApiError {
        self.influx = true;
        self
    }

    /// InfluxDB's `code` for a status.
    fn influx_code(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not found",
            StatusCode::PAYLOAD_TOO_LARGE => "request too large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported media type",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            s if s.is_server_error() => "internal error",
            _ => "invalid",
        }
    }
}

/// What failed, told without saying where: the kind of the first I/O error in `e`'s chain
/// ("no storage space", "permission denied"…), else that it was an internal error. The whole
/// error, paths included, goes to vigie's log (standard error) under `context`.
pub fn failure(context: &str, e: &(dyn std::error::Error + 'static)) -> String {
    tracing::error!("vigie server: {context}: {e}");
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return io.kind().to_string();
        }
        cause = c.source();
    }
    "an internal error (vigie's log says more)".into()
}

/// `message` with every absolute file path (a word starting with `/` after a space, a quote or
/// a parenthesis) replaced by `<path>`: a server error never tells a caller where vigie keeps
/// its files.
pub fn without_paths(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars().peekable();
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        if c == '/' && matches!(prev, ' ' | '"' | '\'' | '`' | '(' | '[' | '=') {
            while chars.peek().is_some_and(|n| {
                !n.is_whitespace() && !matches!(n, '"' | '\'' | '`' | ')' | ']' | ',' | ':')
            }) {
                chars.next();
            }
            // A path followed by `: reason` keeps its colon.
            out.push_str("<path>");
            prev = '>';
            continue;
        }
        out.push(c);
        prev = c;
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(mut self) -> Response {
        if self.status.is_server_error() {
            self.message = without_paths(&self.message);
        }
        let mut body = Map::new();
        if self.influx {
            body.insert("code".into(), json!(self.influx_code()));
            body.insert("message".into(), json!(self.message));
        } else {
            body.insert("error".into(), json!(self.message));
            if let Some(f) = &self.field {
                body.insert("field".into(), json!(f));
            }
        }
        if let Some(extra) = self.extra {
            body.extend(*extra);
        }
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            Value::Object(body).to_string(),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"vigie\""),
            );
        }
        response
    }
}

impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> ApiError {
        match e {
            ActionError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            ActionError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            ActionError::Invalid(f, m) => ApiError::bad(f, m),
            ActionError::Storage(m) => {
                tracing::error!("vigie server: the alerting's files: {m}");
                ApiError::unavailable(format!(
                    "the alerting's files could not be written: {}",
                    without_paths(&m)
                ))
            }
        }
    }
}

/// A JSON body, or 400 naming `body`.
pub fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad("body", format!("invalid JSON body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> (StatusCode, Value, Option<String>) {
        let status = r.status();
        let auth = r
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap(), auth)
    }

    #[tokio::test]
    async fn one_shape_and_influxdb_s_for_the_write_route() {
        let (s, v, _) = body(ApiError::bad("hour", "not a time").into_response()).await;
        assert_eq!(
            (s.as_u16(), v),
            (400, json!({"error": "not a time", "field": "hour"}))
        );
        let (s, v, auth) = body(ApiError::unauthorized("no token").influx().into_response()).await;
        assert_eq!(s, 401);
        assert_eq!(v, json!({"code": "unauthorized", "message": "no token"}));
        assert_eq!(auth.as_deref(), Some("Bearer realm=\"vigie\""));
        let e = ApiError::bad("body", "3 of 3 lines rejected").with("accepted", json!(0));
        let (_, v, _) = body(e.into_response()).await;
        assert_eq!(v["accepted"], 0);
        let (_, v, _) = body(
            ApiError::from(ActionError::Conflict("x".into()))
                .influx()
                .into_response(),
        )
        .await;
        assert_eq!(v["code"], "invalid");
    }

    #[tokio::test]
    async fn server_errors_say_what_failed_never_where() {
        // The error a full disk gives the store: its path, then the OS's reason.
        let full = vigie_store::StoreError::Io {
            path: "/var/lib/vigie/data/store/wal/00000007.wal".into(),
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        };
        let what = failure("writing", &full);
        assert_eq!(what, std::io::ErrorKind::StorageFull.to_string());
        let e = ApiError::unavailable(format!("could not be made durable ({what})"));
        let (s, v, _) = body(e.into_response()).await;
        assert_eq!(s, 503);
        assert!(!v.to_string().contains("/var"), "{v}");
        // Whatever a 5xx message holds, its paths are taken out; a 4xx is left as it is.
        let (_, v, _) = body(ApiError::unavailable(full.to_string()).into_response()).await;
        assert_eq!(
            v["error"],
            format!(
                "store I/O on <path>: {}",
                std::io::Error::from(std::io::ErrorKind::StorageFull)
            )
        );
        assert_eq!(
            without_paths("cannot open \"/etc/vigie/key\" (or '/run/x', `/tmp/y`)"),
            "cannot open \"<path>\" (or '<path>', `<path>`)"
        );
        assert_eq!(without_paths("I/O error at 12/03"), "I/O error at 12/03");
        let (_, v, _) = body(ApiError::bad("path", "/api/v9 is unknown").into_response()).await;
        assert_eq!(v["error"], "/api/v9 is unknown");
    }
}
