//! Roles on the query API and the wall: the bearer token of a request names its caller.
//!
//! Handlers take a [`Caller`] (any known caller; with no tokens configured, an anonymous
//! viewer) or an [`Operator`] (403 for a viewer). The [`Tokens`] are put in the router as an
//! `Extension<Arc<Tokens>>`; a request with an unknown token gets 401 whatever the route.
//! Tokens are compared in constant time and never logged.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use vigie_config::{ApiConfig, Role};

/// The accepted tokens and whom each names.
#[derive(Debug, Default)]
pub struct Tokens {
    known: Vec<(String, Caller)>,
}

/// Who is calling, from their token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's name in `[[api.tokens]]`, or `anonymous`.
    pub name: String,
    pub role: Role,
}

/// A caller allowed to act (acknowledge, silence, change rules).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator(pub Caller);

impl Tokens {
    /// Reads every token of `[api]`; the error names the token whose secret cannot be read.
    pub fn load(api: &ApiConfig) -> Result<Tokens, String> {
        let mut known = Vec::new();
        for t in &api.tokens {
            let secret = t
                .read_token()
                .map_err(|e| format!("api token {}: {e}", t.name))?;
            known.push((
                secret,
                Caller {
                    name: t.name.clone(),
                    role: t.role,
                },
            ));
        }
        Ok(Tokens { known })
    }

    /// Tokens given directly (tests, the demo).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, Caller)>) -> Tokens {
        Tokens {
            known: pairs.into_iter().collect(),
        }
    }

    /// The caller a request's `Authorization: Bearer …` names. No header: an anonymous viewer
    /// when no tokens are configured, else 401; an unknown token: 401.
    pub fn caller(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let Some(value) = authorization else {
            return if self.known.is_empty() {
                Ok(Caller {
                    name: "anonymous".into(),
                    role: Role::Viewer,
                })
            } else {
                Err(AuthError::Unauthorized("no bearer token"))
            };
        };
        let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        else {
            return Err(AuthError::Unauthorized(
                "the Authorization header is not a bearer token",
            ));
        };
        let token = token.trim().as_bytes();
        let mut found = None;
        for (secret, caller) in &self.known {
            if constant_time_eq(secret.as_bytes(), token) {
                found = Some(caller.clone());
            }
        }
        found.ok_or(AuthError::Unauthorized("unknown token"))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// 401: no token where one is needed, or an unknown one.
    Unauthorized(&'static str),
    /// 403: a known caller whose role does not allow the action.
    Forbidden(String),
    /// 500: the router has no `Extension<Arc<Tokens>>` (a wiring error).
    Unconfigured,
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            AuthError::Unauthorized(why) => (StatusCode::UNAUTHORIZED, why.to_string()),
            AuthError::Forbidden(why) => (StatusCode::FORBIDDEN, why),
            AuthError::Unconfigured => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "no tokens in the router".to_string(),
            ),
        };
        let mut response =
            (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Caller, AuthError> {
        let tokens = parts
            .extensions
            .get::<Arc<Tokens>>()
            .ok_or(AuthError::Unconfigured)?;
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        tokens.caller(value)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Operator, AuthError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.role < Role::Operator {
            return Err(AuthError::Forbidden(format!(
                "{} is a {}; this needs an operator",
                caller.name,
                caller.role.as_str()
            )));
        }
        Ok(Operator(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::from_pairs([
            (
                "wall-secret".to_string(),
                Caller {
                    name: "wall".into(),
                    role: Role::Viewer,
                },
            ),
            (
                "duty-secret".to_string(),
                Caller {
                    name: "duty".into(),
                    role: Role::Operator,
                },
            ),
        ])
    }

    #[test]
    fn tokens_name_their_callers() {
        let t = tokens();
        assert_eq!(
            t.caller(Some("Bearer duty-secret")).unwrap().role,
            Role::Operator
        );
        assert_eq!(t.caller(Some("Bearer wall-secret")).unwrap().name, "wall");
        assert!(matches!(
            t.caller(Some("Bearer nope")),
            Err(AuthError::Unauthorized(_))
        ));
        assert!(matches!(
            t.caller(Some("Basic abc")),
            Err(AuthError::Unauthorized(_))
        ));
        assert!(matches!(t.caller(None), Err(AuthError::Unauthorized(_))));
        let open = Tokens::default();
        assert_eq!(open.caller(None).unwrap().role, Role::Viewer);
        assert!(open.caller(Some("Bearer x")).is_err());
    }

    #[tokio::test]
    async fn operator_routes_refuse_viewers() {
        use axum::routing::post;
        let app = axum::Router::new()
            .route("/act", post(|Operator(c): Operator| async move { c.name }))
            .route(
                "/read",
                axum::routing::get(|c: Caller| async move { c.name }),
            )
            .layer(axum::Extension(Arc::new(tokens())));
        let call = |method: &str, path: &str, token: Option<&str>| {
            let mut req = axum::http::Request::builder().method(method).uri(path);
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            let app = app.clone();
            let req = req.body(axum::body::Body::empty()).unwrap();
            async move {
                use tower::ServiceExt;
                app.oneshot(req).await.unwrap().status()
            }
        };
        assert_eq!(
            call("POST", "/act", Some("duty-secret")).await,
            StatusCode::OK
        );
        assert_eq!(
            call("POST", "/act", Some("wall-secret")).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(call("POST", "/act", None).await, StatusCode::UNAUTHORIZED);
        assert_eq!(
            call("GET", "/read", Some("wall-secret")).await,
            StatusCode::OK
        );
        assert_eq!(
            call("GET", "/read", Some("bad")).await,
            StatusCode::UNAUTHORIZED
        );
    }
}
