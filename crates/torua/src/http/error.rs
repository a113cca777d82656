//! The one error type of Torua's HTTP APIs. Every failure, extractor
//! rejections and unknown routes included, answers
//! `{"error":{"code","message"}}` with the matching status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use torua_store::StoreError;

/// An HTTP error with a stable snake_case code.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Status to answer with.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human sentence; never contains secrets or internals.
    pub message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    /// 400 with the given code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 503 with the given code.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
    /// 500: the detail goes to the log, the client gets a generic sentence.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
    /// 413 for an oversized body.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(m) => ApiError::bad_request("invalid_input", m),
            e @ StoreError::Precondition { .. } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                e.to_string(),
            ),
            StoreError::Closed(id) => ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "shard_not_owned",
                format!("shard {id} is not held by this node"),
            ),
            other => ApiError::internal(other),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                r.body_text(),
            );
        }
        if r.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            return Self::new(r.status(), "unsupported_media_type", r.body_text());
        }
        // Syntax and shape errors alike are the client's bad input: 400.
        Self::bad_request("invalid_json", r.body_text())
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(r: axum::extract::rejection::BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                r.body_text(),
            );
        }
        Self::bad_request("invalid_body", r.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        Self::bad_request("invalid_query", r.body_text())
    }
}

/// Unknown route.
pub async fn not_found_fallback(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

/// Known route, wrong method.
pub async fn method_not_allowed_fallback(method: axum::http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("method {method} is not allowed on this route"),
    )
}
