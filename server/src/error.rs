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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
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
            ActionError::Storage(m) => ApiError::unavailable(m),
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
}
