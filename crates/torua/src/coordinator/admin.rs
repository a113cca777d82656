//! Security administration on the coordinator: the policy, API keys, and
//! `/whoami`. Every change needs `admin` and is audited.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::cluster::{Cluster, Status};
use crate::http::ApiError;
use crate::security::policy::Policy;
use crate::security::{unix_now, Caller, Security};

type S = State<Arc<Security>>;

/// Longest key lifetime accepted (10 years).
const MAX_KEY_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);

pub(crate) fn router(sec: Arc<Security>, cluster: Arc<Cluster>) -> Router {
    let keys = Router::new()
        .route("/admin/keys", get(key_status))
        .route("/admin/keys/rotate", post(rotate_keys))
        .with_state(cluster);
    Router::new()
        .merge(keys)
        .route("/whoami", get(whoami))
        .route("/admin/policy", get(get_policy).put(put_policy))
        .route("/admin/apikeys", get(list_keys).post(create_key))
        .route("/admin/apikeys/{id}", delete(revoke_key))
        .with_state(sec)
}

async fn whoami(caller: Caller) -> Json<Value> {
    let p = &caller.principal;
    Json(json!({"principal": p.id, "kind": p.kind, "roles": p.roles}))
}

async fn get_policy(State(sec): S, caller: Caller) -> Result<Json<Policy>, ApiError> {
    caller.require_admin().await?;
    Ok(Json(sec.authn.state.policy()?))
}

async fn put_policy(
    State(sec): S,
    caller: Caller,
    body: Result<Json<Policy>, JsonRejection>,
) -> Result<Json<Policy>, ApiError> {
    caller.require_admin().await?;
    let stored = sec.authn.state.set_policy(body?.0).await?;
    caller
        .audit_admin(
            "policy.set",
            "policy",
            json!({"version": stored.version, "roles": stored.roles.keys().collect::<Vec<_>>()}),
        )
        .await;
    Ok(Json(stored))
}

async fn list_keys(State(sec): S, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require_admin().await?;
    let now = unix_now();
    let keys: Vec<Value> = sec
        .authn
        .state
        .keys()?
        .iter()
        .map(|k| k.view(now))
        .collect();
    Ok(Json(json!({"keys": keys})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    roles: Vec<String>,
    /// The node a `node` key registers as.
    #[serde(default)]
    node_id: Option<String>,
    /// Lifetime such as `30d` or `12h`.
    #[serde(default)]
    expires_in: Option<String>,
}

async fn create_key(
    State(sec): S,
    caller: Caller,
    body: Result<Json<CreateKey>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_admin().await?;
    let req = body?.0;
    let now = unix_now();
    let expires_at = match req.expires_in.as_deref() {
        None => None,
        Some(s) => {
            let d = humantime::parse_duration(s.trim())
                .ok()
                .filter(|d| *d >= Duration::from_secs(1) && *d <= MAX_KEY_LIFETIME)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_expiry",
                        format!("`{s}` is not a lifetime between 1s and 10 years, such as 30d"),
                    )
                })?;
            Some(now + d.as_secs())
        }
    };
    let (key, secret) = sec
        .authn
        .state
        .create_key(&req.name, req.roles, req.node_id, expires_at, now)
        .await?;
    caller
        .audit_admin(
            "apikey.create",
            &key.id,
            json!({"name": key.name, "roles": key.roles, "node_id": key.node_id, "expires_at": key.expires_at}),
        )
        .await;
    let mut view = key.view(now);
    view["key"] = json!(secret.expose());
    Ok((StatusCode::CREATED, Json(view)))
}

async fn revoke_key(
    State(sec): S,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin().await?;
    let key = sec.authn.state.revoke_key(&id, unix_now()).await?;
    caller
        .audit_admin("apikey.revoke", &key.id, json!({"name": key.name}))
        .await;
    Ok(Json(key.view(unix_now())))
}

/// Deadline for a fan-out to every node.
const FAN_OUT: Duration = Duration::from_secs(30);

/// Calls `path` on every healthy node in parallel; one entry per node, with
/// its answer or its error.
async fn on_every_node(
    c: &Cluster,
    method: reqwest::Method,
    path: &str,
) -> Result<Vec<Value>, ApiError> {
    let meta = c.snapshot()?;
    let calls = meta
        .nodes
        .keys()
        .filter(|id| c.status_of(id) == Status::Healthy)
        .filter_map(|id| meta.node_info(id))
        .map(|n| {
            let method = method.clone();
            async move {
                match c.nodes.call_json(&n, method, path, FAN_OUT).await {
                    Ok(v) => v,
                    Err(e) => json!({"node_id": n.id, "error": e.to_string()}),
                }
            }
        });
    Ok(futures::future::join_all(calls).await)
}

async fn key_status(
    State(c): State<Arc<Cluster>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin().await?;
    Ok(Json(
        json!({"nodes": on_every_node(&c, reqwest::Method::GET, "/keys").await?}),
    ))
}

async fn rotate_keys(
    State(c): State<Arc<Cluster>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin().await?;
    let nodes = on_every_node(&c, reqwest::Method::POST, "/keys/rotate").await?;
    let failed = nodes.iter().filter(|n| n.get("error").is_some()).count();
    caller
        .audit_admin(
            "keys.rotate",
            "data_keys",
            json!({"nodes": nodes.len(), "failed": failed}),
        )
        .await;
    Ok(Json(json!({"nodes": nodes})))
}
