//! Request and response bodies shared by the coordinator and node data APIs.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use torua_store::{Expect, Record};

use super::ApiError;

/// Default page size for listings.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size for listings.
pub const MAX_LIMIT: usize = 10_000;

/// Header a coordinator sends with a write to a move target: store the
/// record with this version (the owner's), unconditionally.
pub const KEEP_VERSION: &str = "x-torua-version";

/// `"<version>"`, the strong `ETag` of a record version.
pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// The version an `ETag` names (`"7"`; weak tags are refused).
pub fn parse_etag(tag: &str) -> Option<u64> {
    tag.trim()
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .and_then(|v| v.parse().ok())
}

/// 200 with the stored bytes, content type and `ETag` (its version).
pub fn value_response(rec: Record) -> Response {
    (
        [
            (header::CONTENT_TYPE, rec.content_type),
            (header::ETAG, etag(rec.version)),
        ],
        rec.value,
    )
        .into_response()
}

/// 204 carrying the `ETag` of the version a write made.
pub fn written(version: u64) -> Response {
    (StatusCode::NO_CONTENT, [(header::ETAG, etag(version))]).into_response()
}

/// The precondition of a write: `If-Match: "v"` (that version), `If-Match:
/// *` (exists), `If-None-Match: *` (absent), or none. Lists of tags, weak
/// tags and both headers at once are refused with 400.
pub fn expect_of(headers: &HeaderMap) -> Result<Expect, ApiError> {
    let text = |name: header::HeaderName| -> Result<Option<String>, ApiError> {
        match headers.get_all(&name).iter().count() {
            0 => Ok(None),
            1 => headers
                .get(&name)
                .and_then(|v| v.to_str().ok())
                .map(|s| Some(s.trim().to_owned()))
                .ok_or_else(|| bad_precondition(&name)),
            _ => Err(bad_precondition(&name)),
        }
    };
    match (text(header::IF_MATCH)?, text(header::IF_NONE_MATCH)?) {
        (None, None) => Ok(Expect::Any),
        (Some(m), None) if m == "*" => Ok(Expect::Exists),
        (Some(m), None) => parse_etag(&m)
            .map(Expect::Version)
            .ok_or_else(|| bad_precondition(&header::IF_MATCH)),
        (None, Some(n)) if n == "*" => Ok(Expect::Absent),
        (None, Some(_)) => Err(bad_precondition(&header::IF_NONE_MATCH)),
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "invalid_precondition",
            "send If-Match or If-None-Match, not both",
        )),
    }
}

fn bad_precondition(name: &header::HeaderName) -> ApiError {
    let what = if name == header::IF_MATCH {
        "If-Match takes one version as a quoted ETag (\"7\") or *"
    } else {
        "If-None-Match takes only *"
    };
    ApiError::bad_request("invalid_precondition", what)
}

/// Reads the body of a PUT, answering 413 beyond `limit`.
pub fn value_body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(limit)
        } else {
            ApiError::bad_request("invalid_body", e.body_text())
        }
    })
}

/// The content type to store: the request's, or `application/octet-stream`.
pub fn content_type_of(headers: &HeaderMap) -> Result<String, ApiError> {
    match headers.get(header::CONTENT_TYPE) {
        None => Ok("application/octet-stream".into()),
        Some(v) => check_content_type(v.as_bytes()).map(str::to_owned),
    }
}

/// A content type as a header may carry it: visible ASCII, at most 255 bytes.
pub fn check_content_type(s: &[u8]) -> Result<&str, ApiError> {
    let visible = |b: &u8| *b == b'\t' || (b' '..=b'~').contains(b);
    if !s.iter().all(visible) {
        return Err(ApiError::bad_request(
            "invalid_content_type",
            "Content-Type must be visible ASCII",
        ));
    }
    if s.len() > torua_store::MAX_CONTENT_TYPE_LEN {
        return Err(ApiError::bad_request(
            "invalid_content_type",
            "Content-Type is longer than 255 bytes",
        ));
    }
    // All ASCII, checked above.
    std::str::from_utf8(s).map_err(|_| ApiError::internal("ASCII is UTF-8"))
}

/// Query of listing endpoints.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    /// Only keys starting with this.
    pub prefix: String,
    /// Only keys strictly after this one.
    pub after: Option<String>,
    /// Page size (default 100, at most 10 000).
    pub limit: Option<usize>,
}

impl ListQuery {
    /// The page size asked for, checked.
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(l) if (1..=MAX_LIMIT).contains(&l) => Ok(l),
            Some(l) => Err(ApiError::bad_request(
                "invalid_limit",
                format!("limit {l} is not between 1 and {MAX_LIMIT}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                k,
                v.parse()
                    .unwrap_or_else(|_| axum::http::HeaderValue::from_static("")),
            );
        }
        h
    }

    #[test]
    fn preconditions_from_headers() {
        let e = |p: &[(header::HeaderName, &str)]| expect_of(&with(p)).map_err(|e| e.code);
        assert_eq!(e(&[]), Ok(Expect::Any));
        assert_eq!(e(&[(header::IF_MATCH, "\"42\"")]), Ok(Expect::Version(42)));
        assert_eq!(e(&[(header::IF_MATCH, "*")]), Ok(Expect::Exists));
        assert_eq!(e(&[(header::IF_NONE_MATCH, "*")]), Ok(Expect::Absent));
        for bad in ["42", "W/\"42\"", "\"1\", \"2\"", "\"-1\"", ""] {
            assert_eq!(
                e(&[(header::IF_MATCH, bad)]),
                Err("invalid_precondition"),
                "{bad}"
            );
        }
        assert_eq!(
            e(&[(header::IF_NONE_MATCH, "\"3\"")]),
            Err("invalid_precondition")
        );
        assert_eq!(
            e(&[(header::IF_MATCH, "*"), (header::IF_NONE_MATCH, "*")]),
            Err("invalid_precondition")
        );
        assert_eq!(
            e(&[(header::IF_MATCH, "\"1\""), (header::IF_MATCH, "\"2\"")]),
            Err("invalid_precondition")
        );
        assert_eq!(parse_etag(&etag(7)), Some(7));
    }
}
