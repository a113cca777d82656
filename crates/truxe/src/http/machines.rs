//! Service accounts, API keys and client credentials: parse, one service
//! call, JSON. Secrets (client secret, API key) appear once, in the answer
//! that creates them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use secure::Secret;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{Client, OrgQuery, ValidJson, ValidQuery, Who};
use super::routes::ok;
use super::{now, ApiError, App};
use crate::model::{ApiKeyView, ServiceAccountView};
use crate::service::{AccountInput, KeyInput};

type Reply = Result<Json<Value>, ApiError>;

pub(crate) async fn create(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    ValidJson(b): ValidJson<AccountInput>,
) -> Result<Response, ApiError> {
    let (a, secret) = app.auth.create_service_account(&who, b, &c, now()).await?;
    let data = json!({
        "serviceAccount": ServiceAccountView::from(&a),
        "clientId": a.id,
        "clientSecret": secret.expose(),
    });
    Ok((StatusCode::CREATED, ok(data)).into_response())
}

pub(crate) async fn list(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    ValidQuery(q): ValidQuery<OrgQuery>,
) -> Reply {
    let list = app
        .auth
        .service_accounts(&who, q.org_id.as_deref(), &c, now())
        .await?;
    let views: Vec<_> = list.iter().map(ServiceAccountView::from).collect();
    Ok(ok(json!({"serviceAccounts": views})))
}

pub(crate) async fn get(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
) -> Reply {
    let a = app.auth.service_account(&who, &id, &c, now()).await?;
    Ok(ok(json!({"serviceAccount": ServiceAccountView::from(&a)})))
}

pub(crate) async fn update(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
    ValidJson(b): ValidJson<AccountInput>,
) -> Reply {
    let a = app
        .auth
        .update_service_account(&who, &id, b, &c, now())
        .await?;
    Ok(ok(json!({"serviceAccount": ServiceAccountView::from(&a)})))
}

pub(crate) async fn delete(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
) -> Reply {
    app.auth
        .delete_service_account(&who, &id, &c, now())
        .await?;
    Ok(Json(json!({"success": true})))
}

pub(crate) async fn create_key(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
    ValidJson(b): ValidJson<KeyInput>,
) -> Result<Response, ApiError> {
    let t = now();
    let (k, secret) = app.auth.create_api_key(&who, &id, b, &c, t).await?;
    let data = json!({"apiKey": ApiKeyView::new(&k, t), "key": secret.expose()});
    Ok((StatusCode::CREATED, ok(data)).into_response())
}

pub(crate) async fn keys(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
) -> Reply {
    let t = now();
    let list = app.auth.api_keys(&who, &id, &c, t).await?;
    let views: Vec<_> = list.iter().map(|k| ApiKeyView::new(k, t)).collect();
    Ok(ok(json!({"apiKeys": views})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RotateBody {
    #[serde(default)]
    grace_period: Option<u64>,
}

pub(crate) async fn rotate_key(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(key_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: RotateBody = super::routes::optional_json(&body)?;
    let t = now();
    let (k, secret, grace_until) = app
        .auth
        .rotate_api_key(&who, &key_id, b.grace_period, &c, t)
        .await?;
    let data = json!({
        "apiKey": ApiKeyView::new(&k, t),
        "key": secret.expose(),
        "previousKeyValidUntil": crate::model::rfc3339(grace_until),
    });
    Ok((StatusCode::CREATED, ok(data)).into_response())
}

pub(crate) async fn revoke_key(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(key_id): Path<String>,
) -> Reply {
    app.auth.revoke_api_key(&who, &key_id, &c, now()).await?;
    Ok(Json(json!({"success": true})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CredentialsBody {
    #[serde(rename = "client_id", alias = "clientId")]
    client_id: String,
    #[serde(rename = "client_secret", alias = "clientSecret")]
    client_secret: String,
    #[serde(default)]
    grant_type: Option<String>,
}

/// `POST /api/service-accounts/token`: client credentials → access token.
pub(crate) async fn token(
    State(app): State<App>,
    Client(c): Client,
    ValidJson(b): ValidJson<CredentialsBody>,
) -> Reply {
    if b.grant_type
        .as_deref()
        .is_some_and(|g| g != "client_credentials")
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        ));
    }
    app.limiter
        .check("client_credentials", &b.client_id, &app.limits.account)
        .await?;
    let (access, ttl) = app
        .auth
        .client_credentials(&b.client_id, Secret::new(b.client_secret), &c, now())
        .await?;
    Ok(Json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl,
    })))
}
