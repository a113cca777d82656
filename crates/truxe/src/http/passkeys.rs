//! Passkeys over the JSON API: registration by a signed-in user, sign-in
//! with a passkey, and a passkey as the second factor of a login
//! challenge. The hosted pages (`oidc.rs`) drive the same service.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{Auth, Client, ValidJson};
use super::routes::{ok, per_account, session_response, Mode};
use super::{now, ApiError, App};
use crate::model::UserView;
use crate::service::passkeys::Ceremonial;

type Reply = Result<Json<Value>, ApiError>;

fn ceremony(c: Ceremonial) -> Json<Value> {
    ok(json!({"ceremony_id": c.ceremony_id, "options": c.options}))
}

/// `POST /auth/passkeys/register/options`: options for
/// `navigator.credentials.create`.
pub(crate) async fn register_options(State(app): State<App>, Auth(p): Auth) -> Reply {
    Ok(ceremony(
        app.auth.passkey_register_options(&p.user, now()).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterBody {
    #[serde(alias = "ceremonyId")]
    ceremony_id: String,
    name: String,
    /// The `PublicKeyCredential`, base64url fields as WebAuthn JSON has them.
    credential: Value,
}

/// `POST /auth/passkeys`: the authenticator's answer; `201` with the passkey.
pub(crate) async fn register(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    ValidJson(b): ValidJson<RegisterBody>,
) -> Result<Response, ApiError> {
    let view = app
        .auth
        .passkey_register(
            &p.user,
            p.session.created_at,
            &b.ceremony_id,
            &b.name,
            &b.credential.to_string(),
            &c,
            now(),
        )
        .await?;
    Ok((StatusCode::CREATED, ok(json!({"passkey": view}))).into_response())
}

/// `GET /auth/passkeys`.
pub(crate) async fn list(State(app): State<App>, Auth(p): Auth) -> Reply {
    Ok(ok(json!({"passkeys": app.auth.passkeys(&p.user).await?})))
}

/// `DELETE /auth/passkeys/{id}`.
pub(crate) async fn remove(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    Path(id): Path<String>,
) -> Reply {
    app.auth.passkey_remove(&p.user, &id, &c, now()).await?;
    Ok(ok(json!({"deleted": true})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmailBody {
    email: String,
}

/// `POST /auth/passkeys/login/options`: options for
/// `navigator.credentials.get`, for the account of `email` (an address
/// without one gets options that look the same).
pub(crate) async fn login_options(
    State(app): State<App>,
    ValidJson(b): ValidJson<EmailBody>,
) -> Reply {
    per_account(&app, "passkey_login", &b.email).await?;
    Ok(ceremony(
        app.auth.passkey_login_options(&b.email, now()).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AnswerBody {
    #[serde(alias = "ceremonyId")]
    ceremony_id: String,
    credential: Value,
}

/// `POST /auth/passkeys/login`: signed in, as `/api/auth/login` answers
/// (tokens, or cookies with `?mode=cookie`).
pub(crate) async fn login(
    State(app): State<App>,
    Client(c): Client,
    Mode(cookie): Mode,
    ValidJson(b): ValidJson<AnswerBody>,
) -> Result<Response, ApiError> {
    let (user, tokens) = app
        .auth
        .passkey_login(&b.ceremony_id, &b.credential.to_string(), c, now())
        .await?;
    Ok(session_response(
        &app,
        cookie,
        StatusCode::OK,
        json!({"user": UserView::from(&user)}),
        tokens,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChallengeBody {
    #[serde(alias = "challengeId")]
    challenge_id: String,
}

/// `POST /auth/mfa/passkey/options`: options to answer a login challenge
/// with a passkey (then `POST /auth/mfa/challenge/verify` with
/// `ceremony_id` and `credential`); `totp` says whether a code works too.
pub(crate) async fn mfa_options(
    State(app): State<App>,
    ValidJson(b): ValidJson<ChallengeBody>,
) -> Reply {
    per_account(&app, "mfa_challenge", &b.challenge_id).await?;
    let (totp, passkey) = app
        .auth
        .second_factor_options(&b.challenge_id, now())
        .await?;
    let Some(c) = passkey else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "no_passkey",
            "this account has no passkey; answer with a TOTP or backup code",
        ));
    };
    Ok(ok(
        json!({"ceremony_id": c.ceremony_id, "options": c.options, "totp": totp}),
    ))
}
