//! Handlers: parse (extractors), make one service call, answer JSON.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use secure::Secret;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{Auth, Client, ClientAddr, ValidJson};
use super::{compat, cookies};
use super::{now, ApiError, App};
use crate::model::{SessionView, UserView};
use crate::service::{LoginOutcome, Published, SecondFactor, Tokens};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials {
    email: String,
    password: String,
    #[serde(default)]
    metadata: Option<Value>,
}

/// Per-account limit (from any address) on what the request names: an
/// email, a user, a challenge or a token. Emails are compared lower-cased.
pub(crate) async fn per_account(app: &App, rule: &str, key: &str) -> Result<(), ApiError> {
    let key = key.trim().to_lowercase();
    app.limiter
        .check(rule, &key, &app.limits.account)
        .await
        .map(drop)
}

pub(crate) fn ok(data: Value) -> Json<Value> {
    Json(json!({"success": true, "data": data}))
}

/// How many registrations a refused one (`email_taken`) counts as against
/// the address's registration limit.
const TAKEN_WEIGHT: u32 = 5;

pub(crate) async fn register(
    State(app): State<App>,
    axum::Extension(addr): axum::Extension<ClientAddr>,
    Client(c): Client,
    Mode(cookie): Mode,
    ValidJson(b): ValidJson<Credentials>,
) -> Result<Response, ApiError> {
    per_account(&app, "register_account", &b.email).await?;
    let ip = super::ratelimit::client_key(Some(&addr));
    let registered = app
        .auth
        .register(&b.email, Secret::new(b.password), b.metadata, c, now())
        .await;
    let (user, tokens) = match registered {
        Err(crate::service::AuthError::EmailTaken) => {
            // `409 email_taken` is the original's contract, and it tells
            // which addresses have accounts: each such answer costs the
            // address several registrations' worth of its budget, so
            // probing addresses runs out fast.
            for _ in 1..TAKEN_WEIGHT {
                let _ = app
                    .limiter
                    .check("register_ip", &ip, &app.limits.register_ip)
                    .await;
            }
            return Err(crate::service::AuthError::EmailTaken.into());
        }
        other => other?,
    };
    app.metrics.event("register");
    Ok(session_response(
        &app,
        cookie,
        StatusCode::CREATED,
        json!({"user": UserView::from(&user)}),
        tokens,
    ))
}

pub(crate) async fn login(
    State(app): State<App>,
    Client(c): Client,
    Mode(cookie): Mode,
    ValidJson(b): ValidJson<Credentials>,
) -> Result<Response, ApiError> {
    if b.metadata.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "unknown field `metadata`",
        ));
    }
    // Per account, from any address: slows distributed guessing of one password.
    let account = b.email.trim().to_lowercase();
    app.limiter
        .check("login_account", &account, &app.limits.login_account)
        .await?;
    let result = app
        .auth
        .login(&b.email, Secret::new(b.password), c, now())
        .await;
    app.metrics.event(if result.is_ok() {
        "login_ok"
    } else {
        "login_failed"
    });
    match result? {
        LoginOutcome::Authenticated(user, tokens) => Ok(session_response(
            &app,
            cookie,
            StatusCode::OK,
            json!({"user": UserView::from(user.as_ref())}),
            tokens,
        )),
        // No tokens until the second factor: the original Truxe issued them here.
        mfa @ LoginOutcome::MfaRequired { .. } => Ok(outcome_answer(&mfa).into_response()),
    }
}

/// `?mode=cookie`: answer with session cookies instead of tokens in the body.
pub(crate) struct Mode(pub(crate) bool);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Mode {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        match query.split('&').find_map(|kv| kv.strip_prefix("mode=")) {
            None | Some("token") => Ok(Mode(false)),
            Some("cookie") => Ok(Mode(true)),
            Some(other) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "validation_error",
                format!("mode `{other}` is not token or cookie"),
            )),
        }
    }
}

/// A signed-in answer: tokens in the body, or in cookie mode the session
/// cookies plus the CSRF token the page must echo.
pub(crate) fn session_response(
    app: &App,
    cookie: bool,
    status: StatusCode,
    mut data: Value,
    tokens: Tokens,
) -> Response {
    if cookie {
        data["csrf_token"] = json!(app.cookies.csrf_for(&tokens.session_id));
        data["expires_in"] = json!(tokens.expires_in);
        let mut res = (status, ok(data)).into_response();
        app.cookies.set_session(&mut res, &tokens);
        res
    } else {
        data["tokens"] = json!(tokens);
        let user = data.get("user").cloned();
        let Json(mut body) = ok(data);
        compat::tokens(&mut body, &tokens);
        if let Some(user) = user {
            compat::add(&mut body, json!({ "user": user }));
        }
        (status, Json(body)).into_response()
    }
}

#[derive(Deserialize)]
pub(crate) struct EmailBody {
    email: String,
    #[serde(rename = "redirectUri", alias = "redirect_uri", default)]
    redirect_uri: Option<String>,
}

/// The same answer whether or not the account exists; the work runs in the
/// background so the response time does not tell either.
fn accepted() -> Json<Value> {
    Json(
        json!({"success": true, "message": "if an account exists for this address, an email is on its way"}),
    )
}

/// Mails in the background: a request naming an address answers the same,
/// in the same time, whether or not the address has an account (the work
/// that would tell them apart happens after the answer).
pub(crate) fn mail_in_background(
    what: &'static str,
    work: impl std::future::Future<Output = Result<(), crate::service::AuthError>> + Send + 'static,
) {
    tokio::spawn(async move {
        if let Err(e) = work.await {
            tracing::warn!(error = %e, "{what} not sent");
        }
    });
}

pub(crate) async fn forgot_password(
    State(app): State<App>,
    Client(c): Client,
    ValidJson(b): ValidJson<EmailBody>,
) -> Result<Json<Value>, ApiError> {
    per_account(&app, "email_account", &b.email).await?;
    let auth = app.auth.clone();
    mail_in_background("password reset mail", async move {
        auth.forgot_password(&b.email, &c, now()).await
    });
    Ok(accepted())
}

#[derive(Deserialize)]
pub(crate) struct ResetBody {
    token: String,
    password: String,
}

pub(crate) async fn reset_password(
    State(app): State<App>,
    Client(c): Client,
    ValidJson(b): ValidJson<ResetBody>,
) -> Result<Json<Value>, ApiError> {
    per_account(&app, "reset_token", &secure::token::digest(&b.token)).await?;
    app.auth
        .reset_password(&b.token, Secret::new(b.password), &c, now())
        .await?;
    Ok(Json(json!({"success": true})))
}

#[derive(Deserialize)]
pub(crate) struct ChangeBody {
    #[serde(rename = "currentPassword", alias = "current_password")]
    current_password: String,
    #[serde(rename = "newPassword", alias = "new_password")]
    new_password: String,
}

pub(crate) async fn change_password(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    ValidJson(b): ValidJson<ChangeBody>,
) -> Result<Json<Value>, ApiError> {
    per_account(&app, "password_account", &p.user.id).await?;
    app.auth
        .change_password(
            &p,
            Secret::new(b.current_password),
            Secret::new(b.new_password),
            &c,
            now(),
        )
        .await?;
    Ok(Json(json!({"success": true})))
}

pub(crate) async fn send_verification(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
) -> Result<Json<Value>, ApiError> {
    let sent = app.auth.send_verification(&p, &c, now()).await?;
    let message = match sent {
        true => "Verification email sent.",
        false => "Email address is already verified.",
    };
    let mut body = ok(json!({"sent": sent, "emailVerified": !sent}));
    body["message"] = json!(message);
    Ok(body)
}

/// `GET /api/auth/email/verification-status` (the original Truxe's shape).
pub(crate) async fn verification_status(
    State(app): State<App>,
    Auth(p): Auth,
) -> Result<Json<Value>, ApiError> {
    let at = app.auth.email_verified_at(&p).await?;
    Ok(Json(json!({
        "success": true,
        "verified": p.user.email_verified,
        "verified_at": at.map(crate::model::rfc3339),
    })))
}

#[derive(Deserialize)]
pub(crate) struct TokenQuery {
    token: String,
}

fn token_query(
    q: Result<axum::extract::Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<String, ApiError> {
    q.map(|axum::extract::Query(q)| q.token).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "validation_error",
            "`token` is required",
        )
    })
}

pub(crate) async fn verify_email(
    State(app): State<App>,
    Client(c): Client,
    q: Result<axum::extract::Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    app.auth.verify_email(&token_query(q)?, &c, now()).await?;
    Ok(ok(json!({"emailVerified": true})))
}

pub(crate) async fn magic_link(
    State(app): State<App>,
    Client(c): Client,
    ValidJson(b): ValidJson<EmailBody>,
) -> Result<Json<Value>, ApiError> {
    app.auth.check_redirect(b.redirect_uri.as_deref())?;
    per_account(&app, "email_account", &b.email).await?;
    let auth = app.auth.clone();
    mail_in_background("magic link", async move {
        auth.send_magic_link(&b.email, b.redirect_uri.as_deref(), &c, now())
            .await
    });
    Ok(accepted())
}

/// Signs in with a magic link. With an allowed redirect, answers 302 to it
/// with the tokens in the fragment (never sent to servers); else JSON.
pub(crate) async fn verify_magic_link(
    State(app): State<App>,
    Client(c): Client,
    q: Result<axum::extract::Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (outcome, redirect) = app
        .auth
        .verify_magic_link(&token_query(q)?, c, now())
        .await?;
    match redirect {
        Some(r) => Ok(redirect_to(&fragment(&r, &outcome))),
        None => Ok(outcome_answer(&outcome).into_response()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    token: String,
}

/// `POST /auth/verify-magic-link` `{token}` (the original Truxe's SDK): the
/// same sign-in as `GET /auth/verify?token=`, always answered as JSON.
pub(crate) async fn verify_magic_link_post(
    State(app): State<App>,
    Client(c): Client,
    ValidJson(b): ValidJson<TokenBody>,
) -> Result<Json<Value>, ApiError> {
    let (outcome, _) = app.auth.verify_magic_link(&b.token, c, now()).await?;
    Ok(outcome_answer(&outcome))
}

/// The answer of a sign-in's outcome: user and tokens, or the MFA challenge
/// (with the original Truxe's fields beside).
pub(crate) fn outcome_answer(outcome: &LoginOutcome) -> Json<Value> {
    match outcome {
        LoginOutcome::Authenticated(user, tokens) => {
            let user = UserView::from(user.as_ref());
            let Json(mut body) = ok(json!({"user": user, "tokens": tokens}));
            compat::tokens(&mut body, tokens);
            compat::add(&mut body, json!({ "user": user }));
            Json(body)
        }
        LoginOutcome::MfaRequired { challenge_id } => {
            let Json(mut body) = ok(json!({"mfa_required": true, "challenge_id": challenge_id}));
            compat::mfa_required(&mut body, challenge_id);
            Json(body)
        }
    }
}

/// `redirect#…` carrying a sign-in's outcome in the fragment, which
/// browsers never send to servers (so tokens stay out of access logs).
pub(crate) fn fragment(redirect: &str, outcome: &LoginOutcome) -> String {
    match outcome {
        LoginOutcome::Authenticated(_, t) => format!(
            "{redirect}#access_token={}&refresh_token={}&expires_in={}&token_type=Bearer",
            t.access_token, t.refresh_token, t.expires_in
        ),
        LoginOutcome::MfaRequired { challenge_id } => {
            format!("{redirect}#mfa_required=true&challenge_id={challenge_id}")
        }
    }
}

/// `302 Found` to `location`.
pub(crate) fn redirect_to(location: &str) -> Response {
    let mut res = StatusCode::FOUND.into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(location) {
        res.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    res
}

#[derive(Deserialize)]
pub(crate) struct MailboxQuery {
    to: Option<String>,
}

/// Development only: the local mailbox, when `TRUXE_DEV_MAILBOX` is on and
/// the client (after forwarded-address resolution) is on loopback; 404
/// otherwise, as if the route did not exist.
pub(crate) async fn dev_mailbox(
    State(app): State<App>,
    axum::Extension(ClientAddr(client)): axum::Extension<ClientAddr>,
    axum::extract::Query(q): axum::extract::Query<MailboxQuery>,
) -> Result<Json<Value>, ApiError> {
    let local = client.is_some_and(|ip| ip.is_loopback());
    let Some(mailbox) = app.mailbox.as_ref().filter(|_| local) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no route for /dev/mailbox",
        ));
    };
    Ok(Json(
        json!({"messages": mailbox.read(q.to.as_deref()).await}),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct MfaBody {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    password: Option<String>,
    /// The original Truxe's clients disable MFA with a backup code too.
    #[serde(default, rename = "backupCode", alias = "backup_code")]
    backup_code: Option<String>,
}

/// Reads an optional JSON body (an empty body is the default value).
pub(crate) fn optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("invalid JSON body: {e}"),
        )
    })
}

fn required(v: Option<String>, name: &str) -> Result<String, ApiError> {
    v.filter(|s| !s.is_empty()).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "validation_error",
            format!("`{name}` is required"),
        )
    })
}

pub(crate) async fn mfa_setup(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    per_account(&app, "mfa_manage", &p.user.id).await?;
    let b: MfaBody = optional_json(&body)?;
    let setup = app
        .auth
        .mfa_setup(&p, b.token.as_deref(), &c, now())
        .await?;
    let Json(mut body) = ok(json!(setup));
    compat::add(
        &mut body,
        json!({
            "secret": setup.secret,
            "qrCode": setup.qr_code,
            "otpauthUrl": setup.otpauth_url,
            "manualEntryCode": compat::grouped(&setup.secret),
        }),
    );
    Ok(Json(body))
}

pub(crate) async fn mfa_enable(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    ValidJson(b): ValidJson<MfaBody>,
) -> Result<Json<Value>, ApiError> {
    per_account(&app, "mfa_manage", &p.user.id).await?;
    let codes = app
        .auth
        .mfa_enable(&p, &required(b.token, "token")?, &c, now())
        .await?;
    let Json(mut body) = ok(json!({"enabled": true, "backup_codes": codes}));
    let message = "MFA enabled successfully. Save your backup codes.";
    compat::add(&mut body, json!({"backupCodes": codes, "message": message}));
    Ok(Json(body))
}

pub(crate) async fn mfa_status(
    State(app): State<App>,
    Auth(p): Auth,
) -> Result<Json<Value>, ApiError> {
    let (enabled, left) = app.auth.mfa_status(&p).await?;
    let Json(mut body) = ok(json!({"enabled": enabled, "backup_codes_remaining": left}));
    compat::add(
        &mut body,
        json!({"enabled": enabled, "backupCodesRemaining": left, "updatedAt": null}),
    );
    Ok(Json(body))
}

pub(crate) async fn mfa_disable(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    ValidJson(b): ValidJson<MfaBody>,
) -> Result<Json<Value>, ApiError> {
    per_account(&app, "mfa_manage", &p.user.id).await?;
    app.auth
        .mfa_disable(
            &p,
            b.token.as_deref(),
            b.backup_code.as_deref(),
            b.password.map(Secret::new),
            &c,
            now(),
        )
        .await?;
    Ok(ok(json!({"enabled": false})))
}

pub(crate) async fn mfa_regenerate(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    ValidJson(b): ValidJson<MfaBody>,
) -> Result<Json<Value>, ApiError> {
    per_account(&app, "mfa_manage", &p.user.id).await?;
    let codes = app
        .auth
        .mfa_regenerate_backup(&p, &required(b.token, "token")?, &c, now())
        .await?;
    let Json(mut body) = ok(json!({"backup_codes": codes}));
    compat::add(&mut body, json!({ "backupCodes": codes }));
    Ok(Json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepUpTotp {
    token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepUpBackup {
    code: String,
}

/// `POST /auth/mfa/verify` `{token}` (the original Truxe's step-up).
pub(crate) async fn mfa_verify(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    ValidJson(b): ValidJson<StepUpTotp>,
) -> Result<Json<Value>, ApiError> {
    step_up(&app, &p, SecondFactor::Totp(&b.token), &c).await
}

/// `POST /auth/mfa/backup/verify` `{code}`: the same with a backup code.
pub(crate) async fn mfa_backup_verify(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    ValidJson(b): ValidJson<StepUpBackup>,
) -> Result<Json<Value>, ApiError> {
    step_up(&app, &p, SecondFactor::BackupCode(&b.code), &c).await
}

/// Proves the signed-in user holds their second factor now. A wrong code
/// is `400 invalid_mfa_code` with `"success": false` (not `401`: the
/// caller's session is fine, and the original's clients sign out on 401).
async fn step_up(
    app: &App,
    p: &crate::service::Principal,
    factor: SecondFactor<'_>,
    c: &crate::service::ClientInfo,
) -> Result<Json<Value>, ApiError> {
    per_account(app, "mfa_manage", &p.user.id).await?;
    match app.auth.mfa_step_up(p, factor, c, now()).await {
        Ok(()) => Ok(Json(json!({"success": true}))),
        Err(crate::service::AuthError::Unauthenticated(m)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_mfa_code",
            m,
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChallengeBody {
    #[serde(alias = "challengeId")]
    challenge_id: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default, alias = "backupCode")]
    backup_code: Option<String>,
    /// A passkey: the ceremony of `/auth/mfa/passkey/options` and the
    /// authenticator's answer.
    #[serde(default, alias = "ceremonyId")]
    ceremony_id: Option<String>,
    #[serde(default)]
    credential: Option<Value>,
    /// The original Truxe's "remember this device": accepted, not acted on
    /// (every sign-in asks for the second factor).
    #[serde(default, rename = "trustDevice")]
    _trust_device: Option<bool>,
}

pub(crate) async fn mfa_challenge(
    State(app): State<App>,
    Client(c): Client,
    Mode(cookie): Mode,
    ValidJson(b): ValidJson<ChallengeBody>,
) -> Result<Response, ApiError> {
    per_account(&app, "mfa_challenge", &b.challenge_id).await?;
    let credential = b.credential.as_ref().map(Value::to_string);
    let factor =
        match (
            b.token.as_deref(),
            b.backup_code.as_deref(),
            b.ceremony_id.as_deref(),
            credential.as_deref(),
        ) {
            (Some(t), None, None, None) => SecondFactor::Totp(t),
            (None, Some(code), None, None) => SecondFactor::BackupCode(code),
            (None, None, Some(ceremony_id), Some(credential)) => SecondFactor::Passkey {
                ceremony_id,
                credential,
            },
            _ => return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "validation_error",
                "give exactly one of `token`, `backup_code`, or `ceremony_id` with `credential`",
            )),
        };
    let (user, tokens) = app
        .auth
        .mfa_verify_challenge(&b.challenge_id, factor, c, now())
        .await?;
    Ok(session_response(
        &app,
        cookie,
        StatusCode::OK,
        json!({"user": UserView::from(&user)}),
        tokens,
    ))
}

#[derive(Deserialize, Default)]
pub(crate) struct RefreshBody {
    #[serde(rename = "refreshToken", alias = "refresh_token", default)]
    refresh_token: Option<String>,
}

/// The refresh token comes from the body, or in cookie mode from the
/// refresh cookie (then the CSRF header must match the CSRF cookie).
pub(crate) async fn refresh(
    State(app): State<App>,
    Client(c): Client,
    Mode(cookie): Mode,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: RefreshBody = optional_json(&body)?;
    let (token, from_cookie) = match b.refresh_token {
        Some(t) => (t, false),
        None => match cookies::session(&headers, cookies::REFRESH) {
            Some(t) => (t, true),
            None => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "validation_error",
                    "`refreshToken` is required",
                ))
            }
        },
    };
    per_account(&app, "refresh_token", &secure::token::digest(&token)).await?;
    if from_cookie && !cookies::csrf_ok(&app.cookies, &headers, None) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_failed",
            "cookie-authenticated requests must send X-CSRF-Token",
        ));
    }
    let result = app.auth.refresh(&token, &c, now()).await;
    app.metrics.event(if result.is_ok() {
        "refresh_ok"
    } else {
        "refresh_failed"
    });
    Ok(session_response(
        &app,
        cookie || from_cookie,
        StatusCode::OK,
        json!({}),
        result?,
    ))
}

pub(crate) async fn logout(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
) -> Result<Response, ApiError> {
    app.auth.logout(&p, &c, now()).await?;
    let mut res = Json(json!({"success": true})).into_response();
    app.cookies.clear(&mut res);
    Ok(res)
}

#[derive(Deserialize, Default)]
pub(crate) struct RevokeBody {
    #[serde(rename = "revokeAll", alias = "revoke_all", default)]
    revoke_all: bool,
}

/// The body is optional: an empty body means "this session only".
pub(crate) async fn revoke(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let all = optional_json::<RevokeBody>(&body)?.revoke_all;
    let n = app.auth.revoke(&p, all, &c, now()).await?;
    let Json(mut body) = ok(json!({"revoked_sessions": n}));
    let message = match all {
        true => format!("Successfully logged out from {n} sessions"),
        false => "Successfully logged out".to_owned(),
    };
    compat::add(&mut body, json!({"revokedSessions": n, "message": message}));
    Ok(Json(body))
}

pub(crate) async fn me(Auth(p): Auth) -> Json<Value> {
    Json(json!({"user": UserView::from(&p.user), "session": SessionView::new(&p.session, true)}))
}

pub(crate) async fn sessions(
    State(app): State<App>,
    Auth(p): Auth,
) -> Result<Json<Value>, ApiError> {
    let list = app.auth.sessions(&p, now()).await?;
    let views: Vec<SessionView> = list
        .iter()
        .map(|s| SessionView::new(s, s.id == p.session.id))
        .collect();
    Ok(Json(json!({"sessions": views})))
}

pub(crate) async fn end_session(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    app.auth.end_session(&p, &id, &c, now()).await?;
    Ok(Json(json!({"success": true})))
}

/// Answers a published document with its `ETag` and a public cache
/// lifetime: `304 Not Modified` without a body when the client already holds
/// this version (`If-None-Match`), the serialized body otherwise.
pub(crate) fn published(headers: &HeaderMap, doc: &Published) -> Response {
    use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
    let held = headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.trim_start_matches("W/") == doc.etag);
    let cache = [
        (CACHE_CONTROL, "public, max-age=60"),
        (ETAG, doc.etag.as_str()),
    ];
    if held {
        (StatusCode::NOT_MODIFIED, cache).into_response()
    } else {
        (cache, [(CONTENT_TYPE, doc.content_type)], doc.body.clone()).into_response()
    }
}

pub(crate) async fn jwks(State(app): State<App>, headers: HeaderMap) -> Response {
    published(&headers, &app.auth.keys().jwks())
}

/// `GET /.well-known/public-key.pem` (the original Truxe's): the current
/// signing key only. Verifiers that can should use the JWKS, which also
/// carries the keys of a rotation.
pub(crate) async fn public_key_pem(State(app): State<App>, headers: HeaderMap) -> Response {
    published(&headers, &app.auth.keys().public_pem())
}

/// The discovery document (built once; it changes only with the configuration).
pub(crate) fn discovery(issuer: &str, algorithm: &str) -> Published {
    let scopes: Vec<&str> = crate::service::oidc::SCOPES
        .iter()
        .map(|(s, _)| *s)
        .collect();
    Published::new(&json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "userinfo_endpoint": format!("{issuer}/oauth/userinfo"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "end_session_endpoint": format!("{issuer}/oauth/end_session"),
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "id_token_signing_alg_values_supported": [algorithm],
        "subject_types_supported": ["public"],
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_supported": ["iss", "aud", "sub", "iat", "exp", "auth_time", "nonce", "amr", "acr", "at_hash", "sid", "email", "email_verified", "name", "updated_at", "organizations", "org_id", "roles", "permissions"],
        "authorization_response_iss_parameter_supported": true,
    }))
}

pub(crate) async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub(crate) async fn ready(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    if app.auth.ready().await {
        Ok(Json(json!({"status": "ready"})))
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "database is not reachable",
        ))
    }
}

/// `/metrics` answers the configured scrape token (compared in constant
/// time) or an administrator's access token; nobody else.
pub(crate) async fn metrics(
    State(app): State<App>,
    mut parts: axum::http::request::Parts,
) -> Result<Response, ApiError> {
    use axum::extract::FromRequestParts;
    let bearer = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let scrape_token = app.metrics_token.as_ref().is_some_and(|t| {
        !bearer.is_empty() && secure::ct_eq(t.expose().as_bytes(), bearer.as_bytes())
    });
    if !scrape_token {
        let Auth(p) = Auth::from_request_parts(&mut parts, &app).await?;
        if !p.user.is_admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "metrics are for administrators and the TRUXE_METRICS_TOKEN holder",
            ));
        }
    }
    let body = app
        .metrics
        .render()
        .map_err(|e| ApiError::from(crate::service::AuthError::Internal(e)))?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}
