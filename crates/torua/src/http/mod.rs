//! HTTP plumbing shared by the coordinator and node servers: the error
//! type, extractors, request metrics, fallbacks and graceful serving.

mod body;
mod error;
pub mod extract;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use body::{
    check_content_type, content_type_of, etag, expect_of, parse_etag, value_body, value_response,
    written, ListQuery, DEFAULT_LIMIT, KEEP_VERSION, MAX_LIMIT,
};
pub use error::{method_not_allowed_fallback, not_found_fallback, ApiError};

/// Labels of the per-request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    method: String,
    route: String,
    status: u16,
}

/// Labels of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOnly {
    method: String,
    route: String,
}

/// A Prometheus registry plus the HTTP metrics every server records.
pub struct Metrics {
    /// Registry that `/metrics` renders; servers add their own metrics.
    pub registry: std::sync::Mutex<Registry>,
    requests: Family<RouteLabels, Counter>,
    latency: Family<RouteOnly, Histogram>,
}

impl Metrics {
    /// New registry with `torua_http_requests_total` and `torua_http_request_seconds`.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("torua");
        let requests = Family::<RouteLabels, Counter>::default();
        let latency = Family::<RouteOnly, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        Arc::new(Metrics {
            registry: std::sync::Mutex::new(registry),
            requests,
            latency,
        })
    }

    /// Renders the registry in Prometheus text format.
    pub fn render(&self) -> Result<String, ApiError> {
        let mut out = String::new();
        let reg = self
            .registry
            .lock()
            .map_err(|_| ApiError::internal("metrics lock poisoned"))?;
        prometheus_client::encoding::text::encode(&mut out, &reg).map_err(ApiError::internal)?;
        Ok(out)
    }
}

/// Middleware: counts and times requests by matched route (never by raw
/// path, which would put user keys into labels).
pub async fn track(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let res = next.run(req).await;
    m.requests
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
            status: res.status().as_u16(),
        })
        .inc();
    m.latency
        .get_or_create(&RouteOnly { method, route })
        .observe(start.elapsed().as_secs_f64());
    res
}

/// `GET /metrics` handler.
pub async fn metrics_handler(State(m): State<Arc<Metrics>>) -> Result<Response, ApiError> {
    let body = m.render()?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

/// `GET /metrics`, for a server to place inside or outside its
/// authentication layer.
pub fn metrics_route(metrics: Arc<Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        axum::routing::get(metrics_handler).with_state(metrics),
    )
}

/// The request's id: the client's `X-Request-ID` when it is sane, else a
/// new one (a random per-process prefix and a counter: unique without a
/// system call per request). Echoed in the response; audit events carry it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

const REQUEST_ID: &str = "x-request-id";

fn next_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| secure::token::random_uuid()[..18].to_owned());
    format!("{prefix}{:016x}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Middleware: assigns the [`RequestId`].
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_owned)
        .unwrap_or_else(next_request_id);
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.run(req).await;
    if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    res
}

/// Adds what every Torua server has: `/health`, the JSON fallbacks,
/// request ids and request tracking.
pub fn finish(router: Router, metrics: Arc<Metrics>) -> Router {
    router
        .route(
            "/health",
            axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .fallback(not_found_fallback)
        .method_not_allowed_fallback(method_not_allowed_fallback)
        .layer(axum::middleware::from_fn_with_state(metrics, track))
        .layer(axum::middleware::from_fn(request_id))
}

/// Longest a request may take: above the longest wait a handler makes
/// (draining a node, 120 s).
pub const REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(150);

/// Parses `?consistency=`: `linearizable` (the default) or `stale`;
/// returns whether a stale read is allowed.
pub fn stale_read(consistency: Option<&str>) -> Result<bool, ApiError> {
    match consistency {
        None | Some("linearizable") => Ok(false),
        Some("stale") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            "invalid_consistency",
            format!("consistency `{other}` is not `linearizable` or `stale`"),
        )),
    }
}
