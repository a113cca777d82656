//! Request and response bodies shared by the coordinator and node data APIs.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use torua_store::Record;

use super::ApiError;

/// Default page size for listings.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size for listings.
pub const MAX_LIMIT: usize = 10_000;

/// 200 with the stored bytes and content type.
pub fn value_response(rec: Record) -> Response {
    ([(header::CONTENT_TYPE, rec.content_type)], rec.value).into_response()
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
        Some(v) => {
            let s = v.to_str().map_err(|_| {
                ApiError::bad_request("invalid_content_type", "Content-Type must be visible ASCII")
            })?;
            if s.len() > torua_store::MAX_CONTENT_TYPE_LEN {
                return Err(ApiError::bad_request(
                    "invalid_content_type",
                    "Content-Type is longer than 255 bytes",
                ));
            }
            Ok(s.to_owned())
        }
    }
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
