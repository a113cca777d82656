//! The hosted sign-in's steps, shared by an application's sign-in
//! (`/oauth/authorize/…`), the account page (`/account/…`) and the admin
//! console (`/admin/console/…`): password, second factor, passkey, a link
//! by mail, and a social provider.
//!
//! The last two leave the page (for the mailbox, for the provider) and
//! come back on a request of their own. What the sign-in was for goes
//! with them server-side ([`Flow::resume`]: in the link's token row, in
//! the provider sign-in's state row), never in the browser's hands, and an
//! application's request is checked again when it comes back.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};
use axum::Form;

use super::extract::Client;
use super::oidc::{
    browser_for_page, browser_id, checked, code_step, failure, genuine, not_genuine,
    passkey_finish_step, passkey_step, password_step, proceed, redirect, sign_in_page,
    with_browser, Flow, StepForm,
};
use super::pages::{self, para};
use super::{now, ApiError, App};
use crate::service::oidc::{Authorization, AuthorizeParams};
use crate::service::{AuthError, Callback, ClientInfo};

/// Which sign-in a route serves.
#[derive(Clone, Copy)]
pub(super) enum Surface {
    /// An application's authorization request, carried in the form.
    Client,
    Account,
    Console,
}

/// A step of the sign-in.
#[derive(Clone, Copy)]
pub(super) enum Step {
    Password,
    SecondFactor,
    Passkey,
    PasskeyAnswer,
    /// "Email me a sign-in link".
    Link,
}

/// The `POST` route of `step` in `surface`'s sign-in: the form's CSRF
/// token checked, and an application's request checked again.
pub(super) fn step_route(surface: Surface, step: Step) -> MethodRouter<App> {
    post(
        move |State(app): State<App>,
              headers: HeaderMap,
              Client(c): Client,
              Form(f): Form<StepForm>| async move {
            let Some(browser) = genuine(&app, &headers, f.csrf.as_deref()) else {
                return not_genuine(&app);
            };
            match surface {
                Surface::Client => match checked(&app, f.params.clone()).await {
                    Ok(a) => run(&app, &Flow::Client(&a), &browser, &f, &c, step).await,
                    Err(res) => res,
                },
                Surface::Account => run(&app, &Flow::Account, &browser, &f, &c, step).await,
                Surface::Console => run(&app, &Flow::Console, &browser, &f, &c, step).await,
            }
        },
    )
}

async fn run(
    app: &App,
    flow: &Flow<'_>,
    browser: &str,
    f: &StepForm,
    c: &ClientInfo,
    step: Step,
) -> Response {
    match step {
        Step::Password => password_step(app, flow, browser, f, c).await,
        Step::SecondFactor => code_step(app, flow, browser, f, c).await,
        Step::Passkey => passkey_step(app, flow, browser, f).await,
        Step::PasskeyAnswer => passkey_finish_step(app, flow, browser, f, c).await,
        Step::Link => link_step(app, flow, browser, f, c).await,
    }
}

/// A flow read back from [`Flow::resume`].
pub(super) enum Resumed {
    Client(Box<Authorization>),
    Account,
    Console,
}

impl Resumed {
    pub(super) fn flow(&self) -> Flow<'_> {
        match self {
            Resumed::Client(a) => Flow::Client(a),
            Resumed::Account => Flow::Account,
            Resumed::Console => Flow::Console,
        }
    }
}

/// Reads a flow back; an application's request is checked again (the
/// client may have been deleted or changed meanwhile).
pub(super) async fn resumed(app: &App, s: &str) -> Result<Resumed, Response> {
    match s {
        "account" => Ok(Resumed::Account),
        "console" => Ok(Resumed::Console),
        _ => {
            let params = s
                .strip_prefix("client?")
                .and_then(|q| format!("/?{q}").parse::<Uri>().ok())
                .and_then(|uri| Query::<AuthorizeParams>::try_from_uri(&uri).ok())
                .ok_or_else(|| {
                    pages::error(
                        super::oidc::brand(app),
                        StatusCode::BAD_REQUEST,
                        "The sign-in cannot go on; start again from the application.",
                    )
                })?;
            Ok(Resumed::Client(Box::new(checked(app, params.0).await?)))
        }
    }
}

/// "Email me a sign-in link": mailed in the background if the account
/// exists, and the same page either way (no account discovery, no timing
/// difference). The link works only in this browser.
async fn link_step(
    app: &App,
    flow: &Flow<'_>,
    browser: &str,
    f: &StepForm,
    c: &ClientInfo,
) -> Response {
    let email = f.email.as_deref().unwrap_or("").trim();
    if !email.contains('@') || email.len() > 254 {
        return sign_in_page(
            app,
            flow,
            browser,
            StatusCode::BAD_REQUEST,
            Some("Enter your email address, then choose Email me a sign-in link."),
            Some(email),
        );
    }
    if let Err(res) = mail_allowed(app, email).await {
        return res;
    }
    let (auth, email_owned, browser_owned) =
        (app.auth.clone(), email.to_owned(), browser.to_owned());
    let (resume, c) = (flow.resume(), c.clone());
    super::routes::mail_in_background("sign-in link", async move {
        auth.send_page_link(&email_owned, &browser_owned, &resume, &c, now())
            .await
    });
    let body = format!(
        r#"{}{}<p><a href="{}">Use another way to sign in</a></p>"#,
        para(&format!(
            "If an account uses {email}, a sign-in link is on its way. It works once, for 15 minutes."
        )),
        para("Open it in this browser: a link opened anywhere else does not sign in."),
        flow.start(),
    );
    pages::page(
        super::oidc::brand(app),
        StatusCode::OK,
        "Check your email",
        &body,
        None,
    )
}

/// The per-address limit on mailed links, for a page: the error page when
/// it is spent.
pub(super) async fn mail_allowed(app: &App, email: &str) -> Result<(), Response> {
    super::routes::per_account(app, "email_account", email)
        .await
        .map_err(|e| {
            pages::error(
                super::oidc::brand(app),
                e.status(),
                "Too many links were asked for that address; try again later.",
            )
        })
}

#[derive(serde::Deserialize)]
pub(crate) struct LinkQuery {
    token: Option<String>,
}

/// `GET /sign-in/link?token=`: where a hosted page's mailed link leads.
/// It signs in only in the browser that asked for it, so a mail scanner
/// (or anyone the mail was forwarded to) spends nothing and signs in
/// nobody.
pub(crate) async fn link(
    State(app): State<App>,
    headers: HeaderMap,
    Client(c): Client,
    q: Result<Query<LinkQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let unusable = |app: &App| {
        pages::error(
            super::oidc::brand(app),
            StatusCode::BAD_REQUEST,
            "This sign-in link is invalid, expired or already used, or it was asked for in another browser. Ask for a new one on the sign-in page, in the browser you sign in with.",
        )
    };
    let token = q
        .ok()
        .and_then(|Query(q)| q.token)
        .filter(|t| !t.is_empty() && t.len() <= 256);
    let (Some(token), Some(browser)) = (token, browser_id(&headers)) else {
        return unusable(&app);
    };
    match app
        .auth
        .page_link_sign_in(&token, &browser, c.clone(), now())
        .await
    {
        Ok((outcome, resume)) => match resumed(&app, &resume).await {
            Ok(r) => proceed(&app, &r.flow(), &browser, outcome, "email", &c).await,
            Err(res) => res,
        },
        Err(AuthError::Unauthenticated(_)) => unusable(&app),
        Err(AuthError::Disabled) => pages::error(
            super::oidc::brand(&app),
            StatusCode::FORBIDDEN,
            "This account is disabled.",
        ),
        Err(e) => failure(&app, e),
    }
}

/// The `GET` route that starts a sign-in with a social provider from
/// `surface`'s sign-in page: 302 to the provider, with the cookie that
/// binds the sign-in to this browser.
pub(super) fn social_route(surface: Surface) -> MethodRouter<App> {
    get(
        move |State(app): State<App>,
              Path(provider): Path<String>,
              q: Result<Query<AuthorizeParams>, axum::extract::rejection::QueryRejection>| async move {
            let a = match surface {
                Surface::Client => match super::oidc::checked_query(&app, q).await {
                    Ok(a) => Some(a),
                    Err(res) => return res,
                },
                Surface::Account | Surface::Console => None,
            };
            let (flow, hint) = match (surface, &a) {
                (Surface::Client, Some(a)) => (Flow::Client(a), a.params.login_hint.as_deref()),
                (Surface::Console, _) => (Flow::Console, None),
                _ => (Flow::Account, None),
            };
            match app
                .auth
                .oauth_start_page(&provider, &flow.resume(), hint, now())
                .await
            {
                Ok(started) => {
                    let mut res = redirect(&started.url, StatusCode::FOUND);
                    app.cookies.set_oauth_binding(
                        &mut res,
                        started.binding.expose(),
                        super::social::BINDING_MAX_AGE,
                    );
                    res
                }
                Err(e @ (AuthError::NotFound(_) | AuthError::Invalid(_))) => {
                    let e = ApiError::from(e);
                    pages::error(super::oidc::brand(&app), e.status(), e.message())
                }
                Err(e) => failure(&app, e),
            }
        },
    )
}

/// A provider's callback for a sign-in started on a hosted page: the
/// page that comes next (the second factor, consent, the application),
/// or the sign-in page saying what went wrong.
pub(super) async fn social_callback(
    app: &App,
    headers: &HeaderMap,
    cb: Callback,
    c: &ClientInfo,
) -> Response {
    let (browser, fresh) = browser_for_page(headers);
    let r = match resumed(app, cb.redirect.as_deref().unwrap_or_default()).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let flow = r.flow();
    let res = match cb.result {
        Ok(outcome) => proceed(app, &flow, &browser, outcome, "fed", c).await,
        Err(e) => {
            let e = ApiError::from(e);
            let problem = match e.code() {
                "access_denied" => "The sign-in with the provider was cancelled.".to_owned(),
                "account_disabled" => "This account is disabled.".to_owned(),
                _ => format!("Signing in with the provider did not work: {}", e.message()),
            };
            sign_in_page(app, &flow, &browser, e.status(), Some(&problem), None)
        }
    };
    with_browser(app, res, &browser, fresh)
}
