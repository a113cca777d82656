//! The system administration API under `/api/admin`. [`gate`] wraps every
//! route: it authenticates the caller, refuses anyone who is not a system
//! administrator, and records an audit event for every request (allowed or
//! not) with method, route and status. Handlers then get the administrator
//! from [`AdminCaller`] and make one service call.

use axum::extract::{FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use secure::audit::Outcome;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{Auth, Client, Page, ValidQuery};
use super::{now, ApiError, App};
use crate::model::{IdentityView, OrgView, SessionView, User, UserView};
use crate::repo::UserFilter;
use crate::service::Principal;

/// The administrator of an admin request, put in place by [`gate`].
#[derive(Clone)]
pub(crate) struct AdminCaller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for AdminCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<AdminCaller>()
            .cloned()
            .ok_or_else(|| {
                ApiError::from(crate::service::AuthError::Internal(
                    "admin route without the admin gate".into(),
                ))
            })
    }
}

/// Middleware for every admin route: authenticate, require the admin flag,
/// audit the request and its outcome.
pub(crate) async fn gate(State(app): State<App>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let Ok(Client(ctx)) = Client::from_request_parts(&mut parts, &app).await;
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    let method = parts.method.to_string();
    let t = now();
    let audit = |outcome: Outcome, actor: Option<&str>, status: StatusCode| {
        let mut e = app
            .auth
            .event("admin_request", outcome, &ctx, t)
            .details(json!({"method": method, "route": route, "status": status.as_u16()}));
        if let Some(a) = actor {
            e = e.actor(a);
        }
        e
    };
    let p = match Auth::from_request_parts(&mut parts, &app).await {
        Ok(Auth(p)) => p,
        Err(e) => {
            let res = e.into_response();
            app.auth
                .record(audit(Outcome::Failure, None, res.status()))
                .await;
            return res;
        }
    };
    if !p.user.is_admin {
        let res = ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the admin API is for system administrators",
        )
        .into_response();
        app.auth
            .record(audit(Outcome::Denied, Some(&p.user.id), res.status()))
            .await;
        return res;
    }
    let admin = p.user.id.clone();
    parts.extensions.insert(AdminCaller(p));
    let res = next.run(Request::from_parts(parts, body)).await;
    let outcome = if res.status().is_success() {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    app.auth
        .record(audit(outcome, Some(&admin), res.status()))
        .await;
    res
}

/// What administrators see of a user.
fn admin_view(u: &User) -> Value {
    let mut v = json!(UserView::from(u));
    v["isAdmin"] = json!(u.is_admin);
    v["mfaEnabled"] = json!(u.mfa_enabled);
    v["failedLogins"] = json!(u.failed_logins);
    v["lockedUntil"] = json!(u.locked_until.map(crate::model::rfc3339));
    v
}

fn ok(data: Value) -> Json<Value> {
    super::routes::ok(data)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserQuery {
    q: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub(crate) async fn users(
    State(app): State<App>,
    AdminCaller(p): AdminCaller,
    ValidQuery(q): ValidQuery<UserQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    let filter = UserFilter {
        query: q.q.filter(|s| !s.is_empty()),
        status: q.status,
        after: q.cursor,
        limit,
    };
    let list = app.auth.admin_users(&p, filter).await?;
    let next = (list.len() == limit as usize)
        .then(|| list.last().map(|u| u.id.clone()))
        .flatten();
    let views: Vec<_> = list.iter().map(admin_view).collect();
    Ok(ok(json!({"users": views, "nextCursor": next})))
}

pub(crate) async fn user(
    State(app): State<App>,
    AdminCaller(p): AdminCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let d = app.auth.admin_user(&p, &id, now()).await?;
    let sessions: Vec<_> = d
        .sessions
        .iter()
        .map(|s| SessionView::new(s, false))
        .collect();
    let orgs: Vec<_> = d
        .organizations
        .iter()
        .map(|(o, r)| OrgView::new(o, Some(r)))
        .collect();
    let identities: Vec<_> = d.identities.iter().map(IdentityView::from).collect();
    Ok(ok(json!({
        "user": admin_view(&d.user),
        "sessions": sessions,
        "organizations": orgs,
        "identities": identities,
    })))
}

/// The provider tokens of a user's linked identity (opened; audited by the gate).
pub(crate) async fn identity_tokens(
    State(app): State<App>,
    AdminCaller(p): AdminCaller,
    Path((id, identity_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let t = app
        .auth
        .admin_identity_tokens(&p, &id, &identity_id)
        .await?;
    Ok(ok(json!({"tokens": t})))
}

pub(crate) async fn delete_user(
    State(app): State<App>,
    AdminCaller(p): AdminCaller,
    Client(c): Client,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    app.auth.admin_delete_user(&p, &id, &c, now()).await?;
    Ok(Json(json!({"success": true})))
}

pub(crate) async fn block(
    State(app): State<App>,
    AdminCaller(p): AdminCaller,
    Client(c): Client,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let u = app.auth.admin_set_blocked(&p, &id, true, &c, now()).await?;
    Ok(ok(json!({"user": admin_view(&u)})))
}

pub(crate) async fn unblock(
    State(app): State<App>,
    AdminCaller(p): AdminCaller,
    Client(c): Client,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let u = app
        .auth
        .admin_set_blocked(&p, &id, false, &c, now())
        .await?;
    Ok(ok(json!({"user": admin_view(&u)})))
}

pub(crate) async fn unlock(
    State(app): State<App>,
    AdminCaller(p): AdminCaller,
    Client(c): Client,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    app.auth.unlock(&p, &id, &c, now()).await?;
    Ok(Json(json!({"success": true})))
}

pub(crate) async fn logout(
    State(app): State<App>,
    AdminCaller(p): AdminCaller,
    Client(c): Client,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let n = app.auth.admin_logout(&p, &id, &c, now()).await?;
    Ok(ok(json!({"revoked_sessions": n})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionQuery {
    #[serde(rename = "userId")]
    user_id: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub(crate) async fn sessions(
    State(app): State<App>,
    AdminCaller(p): AdminCaller,
    ValidQuery(q): ValidQuery<SessionQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = Page {
        limit: q.limit,
        cursor: q.cursor,
    };
    let list = app
        .auth
        .admin_sessions(
            &p,
            q.user_id.as_deref(),
            page.cursor.as_deref(),
            page.limit.unwrap_or(50),
            now(),
        )
        .await?;
    let next = page.next(&list, |s| s.id.clone());
    let views: Vec<_> = list
        .iter()
        .map(|s| {
            let mut v = json!(SessionView::new(s, false));
            v["userId"] = json!(s.user_id);
            v
        })
        .collect();
    Ok(ok(json!({"sessions": views, "nextCursor": next})))
}

pub(crate) async fn end_session(
    State(app): State<App>,
    AdminCaller(p): AdminCaller,
    Client(c): Client,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    app.auth.admin_end_session(&p, &id, &c, now()).await?;
    Ok(Json(json!({"success": true})))
}

#[derive(Deserialize)]
pub(crate) struct AuditParams {
    action: Option<String>,
    actor: Option<String>,
    outcome: Option<String>,
    cursor: Option<i64>,
    limit: Option<u32>,
}

/// Admin: the audit trail, newest first, filtered and paged by `cursor`.
pub(crate) async fn audit(
    State(app): State<App>,
    AdminCaller(p): AdminCaller,
    ValidQuery(q): ValidQuery<AuditParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit must be between 1 and 500",
        ));
    }
    let filter = crate::repo::AuditFilter {
        action: q.action,
        actor: q.actor,
        outcome: q.outcome,
        before: q.cursor,
        limit,
    };
    let page = app.auth.audit_events(&p, filter).await?;
    let next = (page.len() == limit as usize)
        .then(|| page.last().map(|(seq, _)| *seq))
        .flatten();
    let events: Vec<_> = page.into_iter().map(|(_, e)| e).collect();
    Ok(Json(json!({"events": events, "next_cursor": next})))
}
