//! The one error type of Truxe's HTTP API:
//! `{"success":false,"error":{"code","message",…}}` with the right status.
//! 5xx answers say "internal error"; the detail goes to the log only.

use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::model::rfc3339;
use crate::service::AuthError;

/// An HTTP error.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    extra: Option<(&'static str, Value)>,
    headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: None,
            headers: Vec::new(),
        }
    }

    /// The status it is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message shown to clients.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// 429 with `Retry-After` and the `RateLimit-*` headers.
    pub fn rate_limited(d: &secure::ratelimit::Decision) -> Self {
        let secs = d.retry_after.map(|r| r.as_secs().max(1)).unwrap_or(1);
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests; retry in {secs} s"),
        );
        e.headers = d.headers();
        e
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match &e {
            AuthError::Invalid(_) | AuthError::WeakPassword(_) => StatusCode::BAD_REQUEST,
            AuthError::SignupDisabled | AuthError::Disabled | AuthError::Forbidden(_) => {
                StatusCode::FORBIDDEN
            }
            AuthError::EmailTaken | AuthError::Conflict { .. } => StatusCode::CONFLICT,
            AuthError::InvalidCredentials
            | AuthError::Unauthenticated(_)
            | AuthError::RefreshReused => StatusCode::UNAUTHORIZED,
            AuthError::Locked { .. } => StatusCode::LOCKED,
            AuthError::NotFound(_) => StatusCode::NOT_FOUND,
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                );
            }
            #[allow(unreachable_patterns)]
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let extra = match &e {
            AuthError::WeakPassword(rules) => Some(("details", json!(rules))),
            AuthError::Locked { unlock_at } => Some(("unlock_at", json!(rfc3339(*unlock_at)))),
            _ => None,
        };
        ApiError {
            status,
            code: e.code(),
            message: e.to_string(),
            extra,
            headers: Vec::new(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(r.status(), "payload_too_large", "request body is too large")
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                r.status(),
                "unsupported_media_type",
                "send the body as application/json",
            ),
            _ => ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", r.body_text()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some((k, v)) = self.extra {
            error[k] = v;
        }
        let mut res =
            (self.status, Json(json!({"success": false, "error": error}))).into_response();
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                res.headers_mut().insert(name, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        res
    }
}

/// Unknown route.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {}", uri.path()),
    )
}

/// Known route, wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}
