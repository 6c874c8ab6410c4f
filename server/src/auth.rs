//! Who is calling: one table of tokens for the live sources (ingest) and the API's roles
//! (viewer, operator), one parser of the `Authorization` header, one constant-time comparison.
//!
//! - A request carries `Authorization: Bearer <token>`, or `Token <token>` as InfluxDB clients
//!   send it (the scheme in any case). The live stream also takes `?access_token=`, since a
//!   browser's `EventSource` cannot send a header.
//! - A **source** token (`[[sources]]`) may write the feeds its entry lists and read its own
//!   dead letters; nothing else. An **API** token (`[[api.tokens]]`) reads (viewer) or also acts
//!   (operator); it cannot write records. With no API token configured, reads are open (an
//!   anonymous viewer) and nobody may act.
//! - No token where one is needed, an unknown token, or a token of the other kind: 401; a
//!   viewer acting: 403. Every known token is compared with the one given, in constant time,
//!   so the time taken does not tell which one matched nor where they differ. Tokens are read
//!   once, never logged, and not shown by `Debug`.

use crate::error::ApiError;
use axum::http::{header, HeaderMap};
use vigie_config::{Config, Role};
use vigie_model::Feed;

/// Equality that takes the same time wherever the first difference is (the lengths are not
/// secret: a token's length says nothing of its bytes).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(x ^ y);
    }
    diff == 0
}

/// A secret, kept out of `Debug` and logs.
struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A live source that may write records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    /// The feeds it may write.
    pub feeds: Vec<Feed>,
}

/// A reader of the API, from its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's name in `[[api.tokens]]`, or `anonymous`.
    pub name: String,
    pub role: Role,
}

/// A caller allowed to act (acknowledge, silence, change rules).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator(pub Caller);

/// Whom a token names.
#[derive(Clone, Debug)]
pub enum Holder {
    Source(Source),
    Api(Caller),
}

/// The known tokens.
#[derive(Debug, Default)]
pub struct Tokens {
    known: Vec<(Secret, Holder)>,
    /// True when `[api]` has tokens (reads then need one).
    api_closed: bool,
}

impl Tokens {
    /// Reads every token of `[[sources]]` (those with an HTTP token) and `[[api.tokens]]`.
    /// The error names the entry whose secret cannot be read, or the two entries that share
    /// one (a token must say who calls), never the secret.
    pub fn load(config: &Config) -> Result<Tokens, String> {
        let mut pairs = Vec::new();
        for s in config.sources.iter().filter(|s| s.has_token()) {
            let token = s
                .read_token()
                .map_err(|e| format!("source {}: cannot read its token: {e}", s.name))?;
            let holder = Holder::Source(Source {
                name: s.name.clone(),
                feeds: s.allowed(),
            });
            pairs.push((token, holder));
        }
        for t in &config.api.tokens {
            let token = t
                .read_token()
                .map_err(|e| format!("api token {}: cannot read its token: {e}", t.name))?;
            let holder = Holder::Api(Caller {
                name: t.name.clone(),
                role: t.role,
            });
            pairs.push((token, holder));
        }
        Tokens::from_pairs(pairs)
    }

    /// Tokens given directly; refused when two holders share one.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, Holder)>) -> Result<Tokens, String> {
        let mut t = Tokens::default();
        for (secret, holder) in pairs {
            if let Some((_, other)) = t
                .known
                .iter()
                .find(|(s, _)| constant_time_eq(&s.0, secret.as_bytes()))
            {
                return Err(format!(
                    "{} and {} have the same token",
                    describe(other),
                    describe(&holder)
                ));
            }
            t.api_closed |= matches!(holder, Holder::Api(_));
            t.known.push((Secret(secret.into_bytes()), holder));
        }
        Ok(t)
    }

    /// The holder of `token`, every known token compared.
    fn holder(&self, token: &str) -> Option<&Holder> {
        let mut found = None;
        for (secret, holder) in &self.known {
            if constant_time_eq(&secret.0, token.as_bytes()) && found.is_none() {
                found = Some(holder);
            }
        }
        found
    }

    /// The API caller a token names (`None`: no token given).
    pub fn caller(&self, token: Option<&str>) -> Result<Caller, ApiError> {
        match token {
            None if !self.api_closed => Ok(Caller {
                name: "anonymous".into(),
                role: Role::Viewer,
            }),
            None => Err(ApiError::unauthorized(
                "a token is required: `Authorization: Bearer <token>`",
            )),
            Some(t) => match self.holder(t) {
                Some(Holder::Api(c)) => Ok(c.clone()),
                _ => Err(ApiError::unauthorized("unknown token")),
            },
        }
    }

    /// The source a token names.
    pub fn source(&self, token: Option<&str>) -> Result<Source, ApiError> {
        match token.and_then(|t| self.holder(t)) {
            Some(Holder::Source(s)) => Ok(s.clone()),
            _ => Err(ApiError::unauthorized(
                "a source's token is required: `Authorization: Bearer <token>` or `Token <token>`",
            )),
        }
    }
}

fn describe(h: &Holder) -> String {
    match h {
        Holder::Source(s) => format!("source {}", s.name),
        Holder::Api(c) => format!("api token {}", c.name),
    }
}

/// The token of an `Authorization` header: `Bearer <token>` or `Token <token>` (scheme in
/// any case). `Ok(None)` without the header; 401 for another scheme or an empty token.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let refused = || {
        ApiError::unauthorized(
            "the Authorization header must be `Bearer <token>` or `Token <token>`",
        )
        .field("authorization")
    };
    let value = value.to_str().map_err(|_| refused())?.trim();
    let (scheme, token) = value.split_once(' ').ok_or_else(refused)?;
    let token = token.trim();
    if token.is_empty()
        || !(scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
    {
        return Err(refused());
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        let api = |name: &str, role| {
            Holder::Api(Caller {
                name: name.into(),
                role,
            })
        };
        Tokens::from_pairs([
            ("wall-secret".to_string(), api("wall", Role::Viewer)),
            ("duty-secret".to_string(), api("duty", Role::Operator)),
            (
                "cams-secret".to_string(),
                Holder::Source(Source {
                    name: "cams".into(),
                    feeds: vec![Feed::Density],
                }),
            ),
        ])
        .unwrap()
    }

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abc\0"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn one_parser_for_both_schemes() {
        assert_eq!(bearer(&headers("Bearer x")).unwrap(), Some("x"));
        assert_eq!(bearer(&headers("token  x ")).unwrap(), Some("x"));
        assert_eq!(bearer(&HeaderMap::new()).unwrap(), None);
        for bad in ["Basic x", "Bearer", "Bearer  ", "x"] {
            assert_eq!(bearer(&headers(bad)).unwrap_err().status, 401, "{bad}");
        }
    }

    #[test]
    fn tokens_name_their_holders_and_kinds_do_not_mix() {
        let t = tokens();
        assert_eq!(t.caller(Some("duty-secret")).unwrap().role, Role::Operator);
        assert_eq!(t.caller(Some("wall-secret")).unwrap().name, "wall");
        assert_eq!(t.source(Some("cams-secret")).unwrap().name, "cams");
        assert!(
            t.caller(Some("cams-secret")).is_err(),
            "a source token reads nothing"
        );
        assert!(
            t.source(Some("duty-secret")).is_err(),
            "an API token writes nothing"
        );
        assert!(t.caller(None).is_err() && t.source(None).is_err());
        let open = Tokens::default();
        assert_eq!(open.caller(None).unwrap().role, Role::Viewer);
        assert!(open.caller(Some("x")).is_err());
        let twice = Tokens::from_pairs([
            (
                "same".to_string(),
                Holder::Api(Caller {
                    name: "a".into(),
                    role: Role::Viewer,
                }),
            ),
            (
                "same".to_string(),
                Holder::Source(Source {
                    name: "b".into(),
                    feeds: vec![],
                }),
            ),
        ]);
        assert_eq!(
            twice.unwrap_err(),
            "api token a and source b have the same token"
        );
        let d = format!("{:?}", tokens());
        assert!(d.contains("cams") && !d.contains("cams-secret"), "{d}");
    }
}
