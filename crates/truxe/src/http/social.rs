//! Social login routes under `/auth/oauth`: the provider list, the
//! redirect to a provider, its callback, and the caller's linked identities.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{Auth, Client};
use super::routes::{
    fragment, ok, optional_json, outcome_answer, redirect_to, session_response, Mode,
};
use super::{cookies, now, ApiError, App};
use crate::model::{IdentityView, UserView};
use crate::service::{Callback, CallbackParams, LoginOutcome, BINDING_COOKIE, PAGE_MODE};

/// Seconds the binding cookie lives (as long as a sign-in may take).
pub(super) const BINDING_MAX_AGE: u64 = 600;

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "validation_error", e.body_text()))
}

/// `GET /auth/oauth/providers`.
pub(crate) async fn providers(State(app): State<App>) -> Json<Value> {
    let list: Vec<_> = app
        .auth
        .oauth_providers()
        .into_iter()
        .map(|(id, name, protocol)| {
            json!({
                "id": id,
                "name": name,
                "protocol": protocol,
                "authorizeUrl": format!("/auth/oauth/{id}/authorize"),
            })
        })
        .collect();
    ok(json!({"providers": list}))
}

#[derive(Deserialize)]
pub(crate) struct AuthorizeQuery {
    redirect_uri: Option<String>,
    login_hint: Option<String>,
    /// Read by [`Mode`].
    #[serde(rename = "mode")]
    _mode: Option<String>,
}

/// `GET /auth/oauth/{provider}/authorize[?redirect_uri=&login_hint=&mode=cookie]`:
/// 302 to the provider, with the cookie that binds the sign-in to this browser.
pub(crate) async fn authorize(
    State(app): State<App>,
    Path(provider): Path<String>,
    Mode(cookie): Mode,
    q: Result<Query<AuthorizeQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let started = app
        .auth
        .oauth_start(
            &provider,
            q.redirect_uri.as_deref(),
            cookie,
            q.login_hint.as_deref(),
            now(),
        )
        .await?;
    let mut res = redirect_to(&started.url);
    app.cookies
        .set_oauth_binding(&mut res, started.binding.expose(), BINDING_MAX_AGE);
    Ok(res)
}

/// What the original Truxe's clients send to `start` (all optional).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StartBody {
    redirect_uri: Option<String>,
    login_hint: Option<String>,
    // Accepted and not used: scopes come from the provider's configuration,
    // tenants are organizations chosen after sign-in.
    #[serde(rename = "scopes")]
    _scopes: Option<Value>,
    #[serde(rename = "prompt")]
    _prompt: Option<Value>,
    #[serde(rename = "tenantId")]
    _tenant_id: Option<Value>,
    #[serde(rename = "state")]
    _state: Option<Value>,
}

/// `POST /auth/oauth/{provider}/start` (the original Truxe's): the same
/// sign-in as `authorize`, answered as JSON `{authorizationUrl, state, …}`
/// for a client that navigates itself. It sets the same binding cookie, so
/// the browser that navigates must be the one that called (same site, or
/// `credentials: 'include'`). A body is optional.
pub(crate) async fn start(
    State(app): State<App>,
    Path(provider): Path<String>,
    Mode(cookie): Mode,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: StartBody = optional_json(&body)?;
    let t = now();
    let started = app
        .auth
        .oauth_start(
            &provider,
            b.redirect_uri.as_deref(),
            cookie,
            b.login_hint.as_deref(),
            t,
        )
        .await?;
    let param = |name: &str| {
        url::Url::parse(&started.url).ok().and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        })
    };
    let scopes: Vec<String> = param("scope")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let expires = crate::model::rfc3339(t + BINDING_MAX_AGE as i64);
    let mut res = Json(json!({
        "success": true,
        "provider": provider,
        "authorizationUrl": started.url,
        "state": param("state"),
        "expiresAt": expires,
        "tenantId": null,
        "scopes": scopes,
    }))
    .into_response();
    app.cookies
        .set_oauth_binding(&mut res, started.binding.expose(), BINDING_MAX_AGE);
    Ok(res)
}

/// `GET /auth/oauth/{provider}/callback`: finishes the sign-in. With an
/// allowed redirect, answers 302 to it (tokens, challenge or error in the
/// fragment; in cookie mode, session cookies instead of tokens); else JSON.
pub(crate) async fn callback(
    State(app): State<App>,
    Path(provider): Path<String>,
    Client(c): Client,
    headers: HeaderMap,
    q: Result<Query<CallbackParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = query(q)?;
    let binding = cookies::get(&headers, BINDING_COOKIE);
    let done = app
        .auth
        .oauth_callback(&provider, params, binding.as_deref(), c.clone(), now())
        .await;
    let cb = done?;
    app.metrics.event(if cb.result.is_ok() {
        "oauth_login_ok"
    } else {
        "oauth_login_failed"
    });
    let mut res = if cb.mode == PAGE_MODE {
        super::signin::social_callback(&app, &headers, cb, &c).await
    } else {
        app_answer(&app, cb)
    };
    // This sign-in is spent; its cookie goes too. (A forged or stale
    // callback, answered above, leaves a sign-in in progress alone.)
    app.cookies.set_oauth_binding(&mut res, "", 0);
    Ok(res)
}

/// The answer to an application's sign-in: to its allow-listed redirect,
/// or as JSON.
fn app_answer(app: &App, cb: Callback) -> Response {
    let cookie = cb.mode == "cookie";
    match (cb.result, cb.redirect) {
        (Err(e), Some(r)) => {
            let e = ApiError::from(e);
            let url = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("error", e.code())
                .append_pair("error_description", e.message())
                .finish();
            redirect_to(&format!("{r}#{url}"))
        }
        (Err(e), None) => ApiError::from(e).into_response(),
        (Ok(LoginOutcome::Authenticated(_, tokens)), Some(r)) if cookie => {
            let mut res = redirect_to(&r);
            app.cookies.set_session(&mut res, &tokens);
            res
        }
        (Ok(LoginOutcome::Authenticated(user, tokens)), None) if cookie => session_response(
            app,
            true,
            StatusCode::OK,
            json!({"user": UserView::from(user.as_ref())}),
            tokens,
        ),
        (Ok(outcome), Some(r)) => redirect_to(&fragment(&r, &outcome)),
        (Ok(outcome), None) => outcome_answer(&outcome).into_response(),
    }
}

/// `GET /auth/oauth/identities`.
pub(crate) async fn identities(
    State(app): State<App>,
    Auth(p): Auth,
) -> Result<Json<Value>, ApiError> {
    let list = app.auth.identities(&p).await?;
    let views: Vec<_> = list.iter().map(IdentityView::from).collect();
    Ok(ok(json!({"identities": views})))
}

/// `DELETE /auth/oauth/identities/{id}`.
pub(crate) async fn unlink(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    app.auth.unlink_identity(&p, &id, &c, now()).await?;
    Ok(Json(json!({"success": true})))
}
