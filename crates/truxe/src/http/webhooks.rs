//! Webhook endpoints and deliveries: parse, one service call, JSON.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{Client, OrgQuery, ValidJson, ValidQuery, Who};
use super::routes::{ok, optional_json};
use super::{now, ApiError, App};
use crate::model::{DeliveryView, EndpointView};
use crate::repo::DeliveryFilter;
use crate::service::{EndpointInput, WEBHOOK_ALIASES, WEBHOOK_EVENTS, WEBHOOK_NEVER_SENT};

type Reply = Result<Json<Value>, ApiError>;

pub(crate) async fn supported_events(Who(_): Who) -> Json<Value> {
    let ours = WEBHOOK_EVENTS
        .iter()
        .map(|(name, description)| json!({"event": name, "description": description}));
    let aliases = WEBHOOK_ALIASES.iter().map(|(alias, ours)| {
        json!({"event": alias, "alias_of": ours, "description": format!("the original Truxe's name for `{ours}`")})
    });
    let never = WEBHOOK_NEVER_SENT.iter().map(
        |(name, description)| json!({"event": name, "description": description, "sent": false}),
    );
    let events: Vec<_> = ours.chain(aliases).chain(never).collect();
    ok(json!({"events": events}))
}

pub(crate) async fn create(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    ValidJson(b): ValidJson<EndpointInput>,
) -> Result<Response, ApiError> {
    let t = now();
    let (ep, secret) = app.auth.create_endpoint(&who, b, &c, t).await?;
    let data = json!({"endpoint": EndpointView::new(&ep, t), "secret": secret.expose()});
    Ok((StatusCode::CREATED, ok(data)).into_response())
}

pub(crate) async fn list(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    ValidQuery(q): ValidQuery<OrgQuery>,
) -> Reply {
    let t = now();
    let list = app.auth.endpoints(&who, q.org_id.as_deref(), &c, t).await?;
    let views: Vec<_> = list.iter().map(|e| EndpointView::new(e, t)).collect();
    Ok(ok(json!({"endpoints": views})))
}

pub(crate) async fn get(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
) -> Reply {
    let t = now();
    let ep = app.auth.endpoint(&who, &id, &c, t).await?;
    Ok(ok(json!({"endpoint": EndpointView::new(&ep, t)})))
}

pub(crate) async fn update(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
    ValidJson(b): ValidJson<EndpointInput>,
) -> Reply {
    let t = now();
    let ep = app.auth.update_endpoint(&who, &id, b, &c, t).await?;
    Ok(ok(json!({"endpoint": EndpointView::new(&ep, t)})))
}

pub(crate) async fn delete(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
) -> Reply {
    app.auth.delete_endpoint(&who, &id, &c, now()).await?;
    Ok(Json(json!({"success": true})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateBody {
    #[serde(default)]
    overlap: Option<u64>,
}

pub(crate) async fn rotate_secret(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Reply {
    let b: RotateBody = optional_json(&body)?;
    let t = now();
    let (ep, secret) = app
        .auth
        .rotate_endpoint_secret(&who, &id, b.overlap, &c, t)
        .await?;
    Ok(ok(
        json!({"endpoint": EndpointView::new(&ep, t), "secret": secret.expose()}),
    ))
}

pub(crate) async fn test(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let d = app.auth.test_endpoint(&who, &id, &c, now()).await?;
    Ok((
        StatusCode::ACCEPTED,
        ok(json!({"delivery": DeliveryView::from(&d)})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveryQuery {
    #[serde(rename = "orgId")]
    org_id: Option<String>,
    #[serde(rename = "endpointId")]
    endpoint_id: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub(crate) async fn deliveries(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    ValidQuery(q): ValidQuery<DeliveryQuery>,
) -> Reply {
    let before = match q.cursor.as_deref() {
        None => None,
        Some(cur) => Some(
            cur.split_once(':')
                .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_owned())))
                .ok_or_else(|| {
                    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", "bad cursor")
                })?,
        ),
    };
    let limit = q.limit.unwrap_or(50);
    let filter = DeliveryFilter {
        org_id: String::new(),
        endpoint_id: q.endpoint_id,
        status: q.status,
        before,
        limit,
    };
    let list = app
        .auth
        .deliveries(&who, q.org_id.as_deref(), filter, &c, now())
        .await?;
    let next = (list.len() == limit as usize)
        .then(|| list.last().map(|d| format!("{}:{}", d.created_at, d.id)))
        .flatten();
    let views: Vec<_> = list.iter().map(DeliveryView::from).collect();
    Ok(ok(json!({"deliveries": views, "nextCursor": next})))
}

pub(crate) async fn delivery(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
) -> Reply {
    let (d, attempts) = app.auth.delivery(&who, &id, &c, now()).await?;
    let body: Value = serde_json::from_str(&d.body).unwrap_or(Value::Null);
    Ok(ok(
        json!({"delivery": DeliveryView::from(&d), "payload": body, "attemptLog": attempts}),
    ))
}

pub(crate) async fn retry(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    app.auth.retry_delivery(&who, &id, &c, now()).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"success": true}))).into_response())
}
