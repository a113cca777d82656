//! The OpenID Connect provider's HTTP side: the authorization endpoint
//! and its hosted pages (sign-in, second factor, consent), the token and
//! userinfo endpoints, and the client registry.
//!
//! The pages keep the authorization request in hidden fields and check it
//! again at every step, so no state is held between them but two cookies:
//! `truxe_browser` (random, the anchor of the forms' CSRF tokens) and
//! `truxe_sso` (the browser's sign-in: a Truxe session, MAC'd under
//! `COOKIE_SECRET`; the account page reads it too).

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use secure::Secret;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{Auth, Client, OrgQuery, ValidJson, ValidQuery};
use super::pages::{self, alert, field, hidden, para};
use super::routes::ok;
use super::{cookies, now, ApiError, App};
use crate::service::oidc::{
    Authorization, AuthorizeError, AuthorizeParams, BrowserSignIn, ClientInput, ClientView,
    OAuthError, TokenRequest, SCOPES,
};
use crate::service::{AuthError, ClientInfo, LoginOutcome, SecondFactor};

const BROWSER: &str = "truxe_browser";
const SSO: &str = "truxe_sso";

fn set_cookie(app: &App, res: &mut Response, name: &str, value: &str, path: &str, max_age: u64) {
    let mut c = format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax");
    if app.cookies.secure {
        c.push_str("; Secure");
    }
    if let Ok(v) = HeaderValue::from_str(&c) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The browser's anchor cookie, made if it has none (then set on `res`).
pub(super) fn browser_id(headers: &HeaderMap) -> Option<String> {
    cookies::get(headers, BROWSER)
        .filter(|b| b.len() == 64 && b.bytes().all(|c| c.is_ascii_hexdigit()))
}

pub(super) fn csrf_token(app: &App, browser: &str) -> String {
    secure::mac::sign_hex(&app.cookies.key, format!("oauth-form:{browser}").as_bytes())
}

fn sso_value(app: &App, s: &BrowserSignIn) -> String {
    let body = format!(
        "{}.{}.{}.{}",
        s.session_id,
        s.user.id,
        s.auth_time,
        s.amr.join("+")
    );
    let mac = secure::mac::sign_hex(&app.cookies.key, format!("sso:{body}").as_bytes());
    format!("{body}.{mac}")
}

/// The browser's sign-in, if its cookie is genuine and its session live.
pub(super) async fn browser_sign_in(
    app: &App,
    headers: &HeaderMap,
    t: i64,
) -> Option<BrowserSignIn> {
    let v = cookies::get(headers, SSO)?;
    let (body, mac) = v.rsplit_once('.')?;
    if !secure::mac::verify_hex(&app.cookies.key, format!("sso:{body}").as_bytes(), mac) {
        return None;
    }
    let mut parts = body.splitn(4, '.');
    let (sid, uid, at, amr) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let amr = amr
        .split('+')
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect();
    app.auth
        .browser_sign_in(sid, uid, at.parse().ok()?, amr, t)
        .await
}

pub(super) fn redirect(to: &str, status: StatusCode) -> Response {
    let mut res = status.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

pub(super) fn brand(app: &App) -> &crate::service::Brand {
    app.auth.brand()
}

/// The request as a query string.
fn raw_query(a: &Authorization) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(a.params.pairs())
        .finish()
}

/// The request as a query string (HTML-escaped, for links).
fn query_of(a: &Authorization) -> String {
    crate::service::escape(&raw_query(a))
}

/// Where a sign-in on the hosted pages leads: an application's
/// authorization request, or the account page.
#[derive(Clone, Copy)]
pub(super) enum Flow<'a> {
    Client(&'a Authorization),
    Account,
    /// The admin console's sign-in (two factors required).
    Console,
}

impl Flow<'_> {
    /// The path every page of this flow lives under.
    fn base(&self) -> &'static str {
        match self {
            Flow::Client(_) => "/oauth/authorize",
            Flow::Account => "/account",
            Flow::Console => "/admin/console",
        }
    }

    /// An application's request as a query (HTML-escaped), for links that
    /// must carry it; empty for the other flows.
    fn query(&self) -> String {
        match self {
            Flow::Client(a) => format!("?{}", query_of(a)),
            Flow::Account | Flow::Console => String::new(),
        }
    }

    /// Where a step's form posts.
    pub(super) fn action(&self, step: &str) -> String {
        format!("{}/{step}", self.base())
    }

    /// Where the sign-in starts again (HTML-escaped, for links).
    pub(super) fn start(&self) -> String {
        format!("{}{}", self.base(), self.query())
    }

    /// Where a sign-in through provider `id` starts (HTML-escaped).
    fn social(&self, id: &str) -> String {
        let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
        format!("{}/social/{id}{}", self.base(), self.query())
    }

    /// The flow as a string kept server-side while the browser is away
    /// (at a provider, or reading its mail); [`super::signin::resumed`]
    /// reads it back and checks an application's request again.
    pub(super) fn resume(&self) -> String {
        match self {
            Flow::Client(a) => format!("client?{}", raw_query(a)),
            Flow::Account => "account".into(),
            Flow::Console => "console".into(),
        }
    }

    fn intro(&self) -> String {
        match self {
            Flow::Client(a) => para(&format!("to continue to {}", a.client.name)),
            Flow::Account => para("to see and manage your account"),
            Flow::Console => {
                para("to the admin console (administrators, with two-step verification)")
            }
        }
    }

    /// The application a form's post may end up redirecting to (a browser
    /// checks that redirect against `form-action` too).
    fn form_to(&self) -> Option<&str> {
        match self {
            Flow::Client(a) => Some(&a.redirect_uri),
            Flow::Account | Flow::Console => None,
        }
    }

    /// The hidden fields every step carries: the request, if any, and the
    /// CSRF token.
    pub(super) fn carried(&self, app: &App, browser: &str) -> String {
        match self {
            Flow::Client(a) => carried(app, a, browser),
            Flow::Account | Flow::Console => hidden("csrf", &csrf_token(app, browser)),
        }
    }

    /// After the sign-in: on to the application, or to the account page.
    async fn after(
        &self,
        app: &App,
        browser: &str,
        who: &BrowserSignIn,
        c: &ClientInfo,
    ) -> Response {
        match self {
            Flow::Client(a) => go_on(app, a, browser, who, c).await,
            Flow::Account => redirect("/account", StatusCode::SEE_OTHER),
            Flow::Console => redirect("/admin/console", StatusCode::SEE_OTHER),
        }
    }
}

/// The hidden fields every step carries: the request and the CSRF token.
fn carried(app: &App, a: &Authorization, browser: &str) -> String {
    let mut out: String = a.params.pairs().iter().map(|(k, v)| hidden(k, v)).collect();
    out.push_str(&hidden("csrf", &csrf_token(app, browser)));
    out
}

pub(super) fn sign_in_page(
    app: &App,
    flow: &Flow<'_>,
    browser: &str,
    status: StatusCode,
    problem: Option<&str>,
    email: Option<&str>,
) -> Response {
    // After a failed attempt the address stays filled in, and the
    // password field has the focus. An application may suggest it.
    let hint = match flow {
        Flow::Client(a) => a.params.login_hint.as_deref().filter(|h| h.contains('@')),
        Flow::Account | Flow::Console => None,
    };
    let (email_attrs, password_attrs) = match email.or(hint) {
        Some(e) => (
            format!(r#"value="{}""#, crate::service::escape(e)),
            "autofocus".to_owned(),
        ),
        None => ("autofocus".to_owned(), String::new()),
    };
    // Sign-up and reset lead back into the application's request.
    let links = match flow {
        Flow::Client(a) => {
            let query = query_of(a);
            let signup = if app.auth.signup_enabled() {
                format!(r#"<a href="/oauth/authorize/signup?{query}">Create an account</a> · "#)
            } else {
                String::new()
            };
            format!(
                r#"<p class="muted">{signup}<a href="/oauth/authorize/forgot?{query}">Forgot your password?</a></p>"#
            )
        }
        Flow::Account | Flow::Console => String::new(),
    };
    // Email first, then the passkey: the same form, another action (no
    // password needed for it).
    let passkey = if app.auth.passkeys_available() {
        format!(
            r#"<button type="submit" class="secondary" formaction="{}" formnovalidate>Sign in with a passkey</button>"#,
            flow.action("passkey")
        )
    } else {
        String::new()
    };
    // A link by mail needs only the address too.
    let link = if app.auth.links_available() {
        format!(
            r#"<button type="submit" class="secondary" formaction="{}" formnovalidate>Email me a sign-in link</button>"#,
            flow.action("link")
        )
    } else {
        String::new()
    };
    // Providers are links (a GET that redirects): a form's redirect to
    // another origin would need that origin in `form-action`.
    let providers: String = app
        .auth
        .oauth_providers()
        .iter()
        .map(|(id, name, _)| {
            format!(
                r#"<a class="button" href="{}">Continue with {}</a>"#,
                flow.social(id),
                crate::service::escape(name)
            )
        })
        .collect();
    let providers = if providers.is_empty() {
        providers
    } else {
        format!(r#"<p class="muted or">or</p>{providers}"#)
    };
    let body = format!(
        r#"{problem}{intro}<form method="post" action="{action}">{carried}{email}{password}<button type="submit">Sign in</button>{passkey}{link}</form>{providers}{links}"#,
        problem = problem.map(alert).unwrap_or_default(),
        intro = flow.intro(),
        action = flow.action("login"),
        carried = flow.carried(app, browser),
        email = field("email", "Email address", "email", "username", &email_attrs),
        password = field(
            "password",
            "Password",
            "password",
            "current-password",
            &password_attrs
        ),
    );
    // Its post may end in the redirect to the client (consent given
    // before), which a browser checks against `form-action` too.
    pages::page(brand(app), status, "Sign in", &body, flow.form_to())
}

/// What a second-factor form carries about the first factor (`pwd`,
/// `email`, `fed`): it goes into `amr`, so it is MAC'd with the challenge.
fn first_factor(app: &App, challenge: &str, method: &str) -> String {
    let mac = secure::mac::sign_hex(
        &app.cookies.key,
        format!("first:{challenge}:{method}").as_bytes(),
    );
    format!("{method}.{mac}")
}

/// The first factor a second-factor form vouches for, if genuine.
fn first_of(app: &App, challenge: &str, presented: Option<&str>) -> Option<String> {
    let (method, mac) = presented?.split_once('.')?;
    let genuine = ["pwd", "email", "fed"].contains(&method)
        && secure::mac::verify_hex(
            &app.cookies.key,
            format!("first:{challenge}:{method}").as_bytes(),
            mac,
        );
    genuine.then(|| method.to_owned())
}

pub(super) async fn second_factor_page(
    app: &App,
    flow: &Flow<'_>,
    browser: &str,
    challenge: &str,
    first: &str,
    problem: Option<&str>,
) -> Response {
    let (totp, passkey) = match app.auth.second_factor_options(challenge, now()).await {
        Ok(x) => x,
        Err(AuthError::Unauthenticated(_)) => {
            return sign_in_page(
                app,
                flow,
                browser,
                StatusCode::UNAUTHORIZED,
                Some("That sign-in expired or had too many attempts; sign in again."),
                None,
            )
        }
        Err(e) => return failure(app, e),
    };
    let carried = format!(
        "{}{}{}",
        flow.carried(app, browser),
        hidden("challenge_id", challenge),
        hidden("first", &first_factor(app, challenge, first)),
    );
    let code_form = if totp {
        format!(
            r#"{intro}<form method="post" action="{action}">{carried}{code}<button type="submit">Verify</button></form><p class="muted">A backup code works here too.</p>"#,
            intro = para("Enter the code from your authenticator app."),
            action = flow.action("mfa"),
            code = field(
                "code",
                "Code",
                "text",
                "one-time-code",
                r#"inputmode="numeric" autofocus maxlength="32""#
            ),
        )
    } else {
        String::new()
    };
    let passkey_form = match &passkey {
        Some(p) => format!(
            "{}{}",
            para(if totp {
                "Or use one of your passkeys."
            } else {
                "Confirm it is you with one of your passkeys."
            }),
            pages::passkey_form(
                "get",
                &flow.action("mfa"),
                &p.options,
                &format!("{carried}{}", hidden("ceremony_id", &p.ceremony_id)),
                "Use a passkey",
                !totp,
            )
        ),
        None => String::new(),
    };
    let body = format!(
        "{problem}{code_form}{passkey_form}",
        problem = problem.map(alert).unwrap_or_default(),
    );
    let status = if problem.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    // Its post may end in the redirect to the client (consent given
    // before), which a browser checks against `form-action` too.
    let render = if passkey.is_some() {
        pages::with_passkeys
    } else {
        pages::page
    };
    render(
        brand(app),
        status,
        "Two-step verification",
        &body,
        flow.form_to(),
    )
}

fn consent_page(app: &App, a: &Authorization, browser: &str, who: &BrowserSignIn) -> Response {
    let scopes: String = a
        .scopes
        .iter()
        .map(|s| {
            let what = SCOPES
                .iter()
                .find(|(n, _)| n == s)
                .map_or(s.as_str(), |(_, w)| w);
            format!("<li>{}</li>", crate::service::escape(what))
        })
        .collect();
    let body = format!(
        r#"{intro}<ul class="scopes">{scopes}</ul><p class="muted">Signed in as {email}.</p><form method="post" action="/oauth/authorize/consent">{carried}<button type="submit" name="decision" value="allow">Allow</button><button type="submit" name="decision" value="deny" class="secondary">Deny</button></form>"#,
        intro = para(&format!("{} would like to:", a.client.name)),
        email = crate::service::escape(&who.user.email),
        carried = carried(app, a, browser),
    );
    pages::page(
        brand(app),
        StatusCode::OK,
        "Allow access?",
        &body,
        Some(&a.redirect_uri),
    )
}

/// After sign-in: consent if needed, else the code, back to the client.
async fn go_on(
    app: &App,
    a: &Authorization,
    browser: &str,
    who: &BrowserSignIn,
    c: &ClientInfo,
) -> Response {
    let t = now();
    let consent = match app.auth.needs_consent(&who.user.id, a).await {
        Ok(n) => n,
        Err(e) => return failure(app, e),
    };
    if consent {
        if a.prompts("none") {
            return redirect(
                &app.auth.cannot_prompt(a, "consent_required"),
                StatusCode::FOUND,
            );
        }
        return consent_page(app, a, browser, who);
    }
    match app.auth.issue_code(who, a, c, t).await {
        Ok(to) => redirect(&to, StatusCode::SEE_OTHER),
        Err(e) => failure(app, e),
    }
}

pub(super) fn failure(app: &App, e: AuthError) -> Response {
    tracing::error!(error = %e, "authorization");
    pages::error(
        brand(app),
        StatusCode::INTERNAL_SERVER_ERROR,
        "The request could not be completed; try again.",
    )
}

/// Checks the request; an error page or the client's error redirect.
pub(super) async fn checked(app: &App, params: AuthorizeParams) -> Result<Authorization, Response> {
    app.auth
        .check_authorization(params)
        .await
        .map_err(|e| match e {
            AuthorizeError::Untrusted(why) => {
                pages::error(brand(app), StatusCode::BAD_REQUEST, &why)
            }
            AuthorizeError::Redirect(to) => redirect(&to, StatusCode::FOUND),
        })
}

/// An authorization request from a page's query string, checked.
pub(super) async fn checked_query(
    app: &App,
    q: Result<Query<AuthorizeParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Authorization, Response> {
    let Ok(Query(params)) = q else {
        return Err(pages::error(
            brand(app),
            StatusCode::BAD_REQUEST,
            "The request's parameters are malformed.",
        ));
    };
    checked(app, params).await
}

/// `GET /oauth/authorize`.
pub(crate) async fn authorize(
    State(app): State<App>,
    headers: HeaderMap,
    Client(c): Client,
    q: Result<Query<AuthorizeParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let a = match checked_query(&app, q).await {
        Ok(a) => a,
        Err(res) => return res,
    };
    let (browser, fresh) = browser_for_page(&headers);
    let t = now();
    let signed_in = browser_sign_in(&app, &headers, t)
        .await
        .filter(|s| !a.prompts("login") && !a.too_old(s.auth_time, t));
    let res = match signed_in {
        Some(who) => go_on(&app, &a, &browser, &who, &c).await,
        None if a.prompts("none") => redirect(
            &app.auth.cannot_prompt(&a, "login_required"),
            StatusCode::FOUND,
        ),
        None => sign_in_page(
            &app,
            &Flow::Client(&a),
            &browser,
            StatusCode::OK,
            None,
            None,
        ),
    };
    with_browser(&app, res, &browser, fresh)
}

/// A step's form: the request, the CSRF token and the step's own fields.
#[derive(Debug, Deserialize)]
pub(crate) struct StepForm {
    #[serde(flatten)]
    pub(super) params: AuthorizeParams,
    pub(super) csrf: Option<String>,
    pub(super) email: Option<String>,
    password: Option<String>,
    challenge_id: Option<String>,
    code: Option<String>,
    decision: Option<String>,
    /// A passkey ceremony's id and the authenticator's answer (JSON).
    ceremony_id: Option<String>,
    credential: Option<String>,
    /// The first factor of a second-factor step (see `first_factor`).
    first: Option<String>,
}

/// The browser id, if the form's CSRF token is this browser's.
pub(super) fn genuine(app: &App, headers: &HeaderMap, csrf: Option<&str>) -> Option<String> {
    let browser = browser_id(headers)?;
    let token = csrf?;
    secure::mac::verify_hex(
        &app.cookies.key,
        format!("oauth-form:{browser}").as_bytes(),
        token,
    )
    .then_some(browser)
}

/// The answer to a form that is not this browser's.
pub(super) fn not_genuine(app: &App) -> Response {
    pages::error(
        brand(app),
        StatusCode::FORBIDDEN,
        "This form expired or did not come from this site. Start again from the application (cookies must be on).",
    )
}

/// Checks a step's CSRF token and request; the browser id and request.
async fn step(
    app: &App,
    headers: &HeaderMap,
    f: &StepForm,
) -> Result<(String, Authorization), Response> {
    let browser = genuine(app, headers, f.csrf.as_deref()).ok_or_else(|| not_genuine(app))?;
    Ok((browser, checked(app, f.params.clone()).await?))
}

pub(super) fn signed_in(app: &App, mut res: Response, who: &BrowserSignIn) -> Response {
    let ttl = app.cookies.refresh_ttl;
    set_cookie(app, &mut res, SSO, &sso_value(app, who), "/", ttl);
    res
}

/// The password step of either flow.
pub(super) async fn password_step(
    app: &App,
    flow: &Flow<'_>,
    browser: &str,
    f: &StepForm,
    c: &ClientInfo,
) -> Response {
    let t = now();
    let password = Secret::new(f.password.clone().unwrap_or_default());
    let email = f.email.as_deref().unwrap_or("");
    let again =
        |status, problem| sign_in_page(app, flow, browser, status, Some(problem), Some(email));
    match app.auth.login(email, password, c.clone(), t).await {
        Ok(outcome) => proceed(app, flow, browser, outcome, "pwd", c).await,
        Err(AuthError::InvalidCredentials) => {
            again(StatusCode::UNAUTHORIZED, "The email address or password is not right.")
        }
        Err(AuthError::Locked { .. }) => again(
            StatusCode::FORBIDDEN,
            "Too many failed attempts: the account is locked for a while. Try again later or reset your password.",
        ),
        Err(AuthError::Disabled) => again(StatusCode::FORBIDDEN, "This account is disabled."),
        Err(e) => failure(app, e),
    }
}

/// After a first factor (`first`): signed in and on to where the flow
/// leads, or the second-factor page.
pub(super) async fn proceed(
    app: &App,
    flow: &Flow<'_>,
    browser: &str,
    outcome: LoginOutcome,
    first: &str,
    c: &ClientInfo,
) -> Response {
    match outcome {
        LoginOutcome::Authenticated(user, tokens) => {
            let who = BrowserSignIn {
                user: *user,
                session_id: tokens.session_id,
                auth_time: now(),
                amr: vec![first.into()],
            };
            let res = flow.after(app, browser, &who, c).await;
            signed_in(app, res, &who)
        }
        LoginOutcome::MfaRequired { challenge_id } => {
            second_factor_page(app, flow, browser, &challenge_id, first, None).await
        }
    }
}

/// The second-factor step of either flow.
pub(super) async fn code_step(
    app: &App,
    flow: &Flow<'_>,
    browser: &str,
    f: &StepForm,
    c: &ClientInfo,
) -> Response {
    let t = now();
    let challenge = f.challenge_id.as_deref().unwrap_or("");
    let Some(first) = first_of(app, challenge, f.first.as_deref()) else {
        return not_genuine(app);
    };
    let code: String = f
        .code
        .as_deref()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let (factor, amr) = match (f.ceremony_id.as_deref(), f.credential.as_deref()) {
        (Some(ceremony_id), Some(credential)) if !credential.is_empty() => (
            SecondFactor::Passkey {
                ceremony_id,
                credential,
            },
            "hwk",
        ),
        _ if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) => {
            (SecondFactor::Totp(&code), "otp")
        }
        _ => (SecondFactor::BackupCode(&code), "otp"),
    };
    match app
        .auth
        .mfa_verify_challenge(challenge, factor, c.clone(), t)
        .await
    {
        Ok((user, tokens)) => {
            let who = BrowserSignIn {
                user,
                session_id: tokens.session_id,
                auth_time: t,
                amr: vec![first.clone(), amr.into()],
            };
            let res = flow.after(app, browser, &who, c).await;
            signed_in(app, res, &who)
        }
        // The page again while the challenge has attempts left; the
        // sign-in page once it has none (second_factor_page decides).
        Err(AuthError::InvalidCredentials | AuthError::Unauthenticated(_)) => {
            second_factor_page(
                app,
                flow,
                browser,
                challenge,
                &first,
                Some("That was not accepted; try again (a new code, or your passkey)."),
            )
            .await
        }
        Err(e) => failure(app, e),
    }
}

/// The first step of a passkey sign-in in either flow: the address given,
/// a page that asks the browser for one of its passkeys.
pub(super) async fn passkey_step(
    app: &App,
    flow: &Flow<'_>,
    browser: &str,
    f: &StepForm,
) -> Response {
    let email = f.email.as_deref().unwrap_or("").trim();
    let options = match app.auth.passkey_login_options(email, now()).await {
        Ok(o) => o,
        Err(AuthError::Invalid(_)) => {
            return sign_in_page(
                app,
                flow,
                browser,
                StatusCode::BAD_REQUEST,
                Some("Enter your email address, then choose Sign in with a passkey."),
                Some(email),
            )
        }
        Err(e) => return failure(app, e),
    };
    let fields = format!(
        "{}{}{}",
        flow.carried(app, browser),
        hidden("email", email),
        hidden("ceremony_id", &options.ceremony_id)
    );
    let body = format!(
        "{intro}{who}{form}",
        intro = flow.intro(),
        who = para(&format!("Signing in as {email} with a passkey.")),
        form = pages::passkey_form(
            "get",
            &flow.action("passkey/finish"),
            &options.options,
            &fields,
            "Use a passkey",
            true
        ),
    );
    pages::with_passkeys(
        brand(app),
        StatusCode::OK,
        "Use your passkey",
        &body,
        flow.form_to(),
    )
}

/// The browser's answer to a passkey sign-in: signed in (a passkey with
/// user verification stands for two factors), or the sign-in page again.
pub(super) async fn passkey_finish_step(
    app: &App,
    flow: &Flow<'_>,
    browser: &str,
    f: &StepForm,
    c: &ClientInfo,
) -> Response {
    let t = now();
    let email = f.email.as_deref().unwrap_or("");
    let ceremony = f.ceremony_id.as_deref().unwrap_or("");
    let credential = f.credential.as_deref().unwrap_or("");
    match app
        .auth
        .passkey_login(ceremony, credential, c.clone(), t)
        .await
    {
        Ok((user, tokens)) => {
            let who = BrowserSignIn {
                user,
                session_id: tokens.session_id,
                auth_time: t,
                amr: vec!["hwk".into(), "user".into()],
            };
            let res = flow.after(app, browser, &who, c).await;
            signed_in(app, res, &who)
        }
        Err(AuthError::Disabled) => sign_in_page(
            app,
            flow,
            browser,
            StatusCode::FORBIDDEN,
            Some("This account is disabled."),
            Some(email),
        ),
        Err(
            AuthError::InvalidCredentials | AuthError::Unauthenticated(_) | AuthError::Invalid(_),
        ) => sign_in_page(
            app,
            flow,
            browser,
            StatusCode::UNAUTHORIZED,
            Some("That passkey was not accepted. Try again, or sign in with your password."),
            Some(email),
        ),
        Err(e) => failure(app, e),
    }
}

/// `GET /assets/passkey.js`.
pub(crate) async fn passkey_script() -> Response {
    let mut res = pages::PASSKEY_SCRIPT.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

/// `POST /oauth/authorize/consent`.
pub(crate) async fn consent(
    State(app): State<App>,
    headers: HeaderMap,
    Client(c): Client,
    Form(f): Form<StepForm>,
) -> Response {
    let (browser, a) = match step(&app, &headers, &f).await {
        Ok(x) => x,
        Err(res) => return res,
    };
    let t = now();
    let Some(who) = browser_sign_in(&app, &headers, t).await else {
        return sign_in_page(
            &app,
            &Flow::Client(&a),
            &browser,
            StatusCode::UNAUTHORIZED,
            Some("Your sign-in ended; sign in again."),
            None,
        );
    };
    if f.decision.as_deref() != Some("allow") {
        return redirect(&app.auth.deny(&who, &a, &c, t).await, StatusCode::SEE_OTHER);
    }
    if let Err(e) = app.auth.consent(&who, &a, &c, t).await {
        return failure(&app, e);
    }
    match app.auth.issue_code(&who, &a, &c, t).await {
        Ok(to) => redirect(&to, StatusCode::SEE_OTHER),
        Err(e) => failure(&app, e),
    }
}

fn oauth_error(e: OAuthError, basic: bool) -> Response {
    let status = match e.error {
        "invalid_client" => StatusCode::UNAUTHORIZED,
        "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut res = (
        status,
        Json(json!({"error": e.error, "error_description": e.description})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED && basic {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"truxe\""),
        );
    }
    res
}

/// `client_secret_basic` credentials (RFC 6749 §2.3.1: form-encoded id and secret).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, Secret<String>)>, ()> {
    use base64::Engine;
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| ())?;
    let Some(b64) = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
    else {
        return Err(());
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| ())?;
    let raw = String::from_utf8(raw).map_err(|_| ())?;
    let (id, secret) = raw.split_once(':').ok_or(())?;
    let decode = |s: &str| percent_decode(s);
    Ok(Some((decode(id), Secret::new(decode(secret)))))
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Basic credentials (if sent) and the form of a client's call to the
/// token, introspection or revocation endpoint; or the OAuth error that
/// either is malformed.
#[allow(clippy::type_complexity)]
fn client_call<T>(
    headers: &HeaderMap,
    f: Result<Form<T>, axum::extract::rejection::FormRejection>,
) -> Result<(Option<(String, Secret<String>)>, T), Box<Response>> {
    let Ok(basic) = basic_credentials(headers) else {
        return Err(Box::new(oauth_error(
            OAuthError::new("invalid_client", "malformed Authorization header"),
            true,
        )));
    };
    match f {
        Ok(Form(f)) => Ok((basic, f)),
        Err(_) => Err(Box::new(oauth_error(
            OAuthError::new(
                "invalid_request",
                "the body must be application/x-www-form-urlencoded parameters",
            ),
            basic.is_some(),
        ))),
    }
}

/// `POST /oauth/token`.
pub(crate) async fn token(
    State(app): State<App>,
    headers: HeaderMap,
    Client(c): Client,
    f: Result<Form<TokenRequest>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (basic, req) = match client_call(&headers, f) {
        Ok(x) => x,
        Err(res) => return *res,
    };
    let used_basic = basic.is_some();
    if req.grant_type.as_deref() == Some("client_credentials") {
        return service_token(&app, basic, req, &c).await;
    }
    match app.auth.token(basic, req, &c, now()).await {
        Ok(t) => {
            let mut res = Json(t).into_response();
            res.headers_mut()
                .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            res
        }
        Err(e) => oauth_error(e, used_basic),
    }
}

/// The browser id for a page's forms: the cookie's, or a new one to set.
pub(super) fn browser_for_page(headers: &HeaderMap) -> (String, bool) {
    match browser_id(headers) {
        Some(b) => (b, false),
        None => (secure::token::generate("").digest, true),
    }
}

pub(super) fn with_browser(app: &App, mut res: Response, browser: &str, fresh: bool) -> Response {
    if fresh {
        set_cookie(app, &mut res, BROWSER, browser, "/", 86_400);
    }
    res
}

fn signup_page(
    app: &App,
    a: &Authorization,
    browser: &str,
    status: StatusCode,
    problem: Option<&str>,
) -> Response {
    let body = format!(
        r#"{problem}{intro}<form method="post" action="/oauth/authorize/signup">{carried}{email}{password}<button type="submit">Create account</button></form><p class="muted"><a href="{start}">I have an account</a></p>"#,
        problem = problem.map(alert).unwrap_or_default(),
        intro = Flow::Client(a).intro(),
        carried = carried(app, a, browser),
        email = field("email", "Email address", "email", "username", "autofocus"),
        password = field(
            "password",
            "Password",
            "password",
            "new-password",
            r#"minlength="8""#
        ),
        start = Flow::Client(a).start(),
    );
    // Its post may end in the redirect to the client (consent given
    // before), which a browser checks against `form-action` too.
    pages::page(
        brand(app),
        status,
        "Create an account",
        &body,
        Some(&a.redirect_uri),
    )
}

/// `GET /oauth/authorize/signup`: the sign-up page of an authorization.
pub(crate) async fn signup_form(
    State(app): State<App>,
    headers: HeaderMap,
    q: Result<Query<AuthorizeParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let a = match checked_query(&app, q).await {
        Ok(a) => a,
        Err(res) => return res,
    };
    if !app.auth.signup_enabled() {
        return pages::error(
            brand(&app),
            StatusCode::FORBIDDEN,
            "Sign-up is closed here; ask an administrator for an account.",
        );
    }
    let (browser, fresh) = browser_for_page(&headers);
    with_browser(
        &app,
        signup_page(&app, &a, &browser, StatusCode::OK, None),
        &browser,
        fresh,
    )
}

/// `POST /oauth/authorize/signup`: creates the account, signs the browser
/// in, and goes on (consent, then back to the application).
pub(crate) async fn signup(
    State(app): State<App>,
    headers: HeaderMap,
    Client(c): Client,
    Form(f): Form<StepForm>,
) -> Response {
    let (browser, a) = match step(&app, &headers, &f).await {
        Ok(x) => x,
        Err(res) => return res,
    };
    let t = now();
    let password = Secret::new(f.password.clone().unwrap_or_default());
    let again = |status, problem: &str| signup_page(&app, &a, &browser, status, Some(problem));
    match app
        .auth
        .register(
            f.email.as_deref().unwrap_or(""),
            password,
            None,
            c.clone(),
            t,
        )
        .await
    {
        Ok((user, tokens)) => {
            let who = BrowserSignIn {
                user,
                session_id: tokens.session_id,
                auth_time: t,
                amr: vec!["pwd".into()],
            };
            let res = go_on(&app, &a, &browser, &who, &c).await;
            signed_in(&app, res, &who)
        }
        Err(AuthError::WeakPassword(rules)) => again(
            StatusCode::BAD_REQUEST,
            &format!("Choose a stronger password: {}.", rules.join("; ")),
        ),
        Err(AuthError::EmailTaken) => again(
            StatusCode::CONFLICT,
            "An account with this address exists: sign in, or reset its password.",
        ),
        Err(AuthError::Invalid(why)) => again(StatusCode::BAD_REQUEST, &why),
        Err(AuthError::SignupDisabled) => pages::error(
            brand(&app),
            StatusCode::FORBIDDEN,
            "Sign-up is closed here; ask an administrator for an account.",
        ),
        Err(e) => failure(&app, e),
    }
}

/// `GET /oauth/authorize/forgot`: asks for the address to send a reset
/// link to.
pub(crate) async fn forgot_form(
    State(app): State<App>,
    headers: HeaderMap,
    q: Result<Query<AuthorizeParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let a = match checked_query(&app, q).await {
        Ok(a) => a,
        Err(res) => return res,
    };
    let (browser, fresh) = browser_for_page(&headers);
    let body = format!(
        r#"{intro}<form method="post" action="/oauth/authorize/forgot">{carried}{email}<button type="submit">Send a reset link</button></form><p class="muted"><a href="{start}">Back to sign-in</a></p>"#,
        intro = para("We will email you a link to choose a new password."),
        carried = carried(&app, &a, &browser),
        email = field("email", "Email address", "email", "username", "autofocus"),
        start = Flow::Client(&a).start(),
    );
    let res = pages::page(
        brand(&app),
        StatusCode::OK,
        "Reset your password",
        &body,
        None,
    );
    with_browser(&app, res, &browser, fresh)
}

/// `POST /oauth/authorize/forgot`: sends the link if the account exists,
/// and says the same either way (no account discovery).
pub(crate) async fn forgot(
    State(app): State<App>,
    headers: HeaderMap,
    Client(c): Client,
    Form(f): Form<StepForm>,
) -> Response {
    let (_, a) = match step(&app, &headers, &f).await {
        Ok(x) => x,
        Err(res) => return res,
    };
    let email = f.email.clone().unwrap_or_default();
    if let Err(res) = super::signin::mail_allowed(&app, &email).await {
        return res;
    }
    let auth = app.auth.clone();
    super::routes::mail_in_background("password reset mail", async move {
        auth.forgot_password(&email, &c, now()).await
    });
    let body = format!(
        r#"{}<p><a href="{}">Back to sign-in</a></p>"#,
        para("If an account uses that address, a link to reset its password is on its way. It works once, for a limited time."),
        Flow::Client(&a).start(),
    );
    pages::page(brand(&app), StatusCode::OK, "Check your email", &body, None)
}

/// The reset page's query and form.
#[derive(Debug, Deserialize)]
pub(crate) struct ResetForm {
    token: Option<String>,
    password: Option<String>,
    csrf: Option<String>,
}

fn reset_page(
    app: &App,
    token: &str,
    browser: &str,
    status: StatusCode,
    problem: Option<&str>,
) -> Response {
    let body = format!(
        r#"{problem}<form method="post" action="/reset-password">{token}{csrf}{password}<button type="submit">Set password</button></form>"#,
        problem = problem.map(alert).unwrap_or_default(),
        token = hidden("token", token),
        csrf = hidden("csrf", &csrf_token(app, browser)),
        password = field(
            "password",
            "New password",
            "password",
            "new-password",
            r#"autofocus minlength="8""#
        ),
    );
    pages::page(brand(app), status, "Choose a new password", &body, None)
}

/// The token of an emailed link, if the query has a plausible one.
fn link_token(
    q: Result<Query<ResetForm>, axum::extract::rejection::QueryRejection>,
) -> Option<String> {
    q.ok()
        .and_then(|Query(f)| f.token)
        .filter(|t| !t.is_empty() && t.len() <= 256)
}

/// `GET /verify-email?token=…`: where the emailed verification link leads.
/// It asks for a click: a mail scanner that fetches the link confirms
/// nothing.
pub(crate) async fn verify_email_form(
    State(app): State<App>,
    q: Result<Query<ResetForm>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(token) = link_token(q) else {
        return pages::error(
            brand(&app),
            StatusCode::BAD_REQUEST,
            "This link is incomplete; use the whole link from the email.",
        );
    };
    let body = format!(
        r#"{}<form method="post" action="/verify-email">{}<button type="submit">Confirm my address</button></form>"#,
        para("Confirm that this email address is yours."),
        hidden("token", &token),
    );
    pages::page(
        brand(&app),
        StatusCode::OK,
        "Confirm your email address",
        &body,
        None,
    )
}

/// `POST /verify-email`: spends the link and says so.
pub(crate) async fn verify_email(
    State(app): State<App>,
    Client(c): Client,
    Form(f): Form<ResetForm>,
) -> Response {
    let token = f.token.unwrap_or_default();
    match app.auth.verify_email(&token, &c, now()).await {
        Ok(()) => pages::page(
            brand(&app),
            StatusCode::OK,
            "Address confirmed",
            &para("Your email address is confirmed. You can close this page and return to the application."),
            None,
        ),
        Err(AuthError::Unauthenticated(_) | AuthError::Invalid(_) | AuthError::NotFound(_)) => {
            pages::error(
                brand(&app),
                StatusCode::BAD_REQUEST,
                "This link has expired or was used already. Ask the application for a new one.",
            )
        }
        Err(e) => failure(&app, e),
    }
}

/// `GET /reset-password?token=…`: where the emailed reset link leads.
pub(crate) async fn reset_form(
    State(app): State<App>,
    headers: HeaderMap,
    q: Result<Query<ResetForm>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(token) = link_token(q) else {
        return pages::error(
            brand(&app),
            StatusCode::BAD_REQUEST,
            "This link is incomplete; use the whole link from the email.",
        );
    };
    let (browser, fresh) = browser_for_page(&headers);
    let res = reset_page(&app, &token, &browser, StatusCode::OK, None);
    with_browser(&app, res, &browser, fresh)
}

/// `POST /reset-password`: sets the new password (every session ends).
pub(crate) async fn reset(
    State(app): State<App>,
    headers: HeaderMap,
    Client(c): Client,
    Form(f): Form<ResetForm>,
) -> Response {
    let Some(browser) = genuine(&app, &headers, f.csrf.as_deref()) else {
        return not_genuine(&app);
    };
    let token = f.token.unwrap_or_default();
    let password = Secret::new(f.password.unwrap_or_default());
    match app.auth.reset_password(&token, password, &c, now()).await {
        Ok(()) => pages::page(
            brand(&app),
            StatusCode::OK,
            "Password changed",
            &para("Your password is changed and every session has ended. Return to the application and sign in."),
            None,
        ),
        Err(AuthError::WeakPassword(rules)) => reset_page(
            &app,
            &token,
            &browser,
            StatusCode::BAD_REQUEST,
            Some(&format!("Choose a stronger password: {}.", rules.join("; "))),
        ),
        Err(AuthError::Unauthenticated(_)) | Err(AuthError::Invalid(_)) => pages::error(
            brand(&app),
            StatusCode::BAD_REQUEST,
            "This link is used, expired or not genuine. Ask for a new one from the sign-in page.",
        ),
        Err(e) => failure(&app, e),
    }
}

/// `grant_type=client_credentials`: a service account's token (as
/// `POST /api/service-accounts/token` issues), its id and secret sent as
/// an OAuth client's.
async fn service_token(
    app: &App,
    basic: Option<(String, Secret<String>)>,
    req: TokenRequest,
    c: &ClientInfo,
) -> Response {
    let used_basic = basic.is_some();
    let (id, secret) = match (basic, req.client_id, req.client_secret) {
        (Some((id, secret)), None, None) => (id, secret),
        (None, Some(id), Some(secret)) => (id, Secret::new(secret)),
        _ => {
            return oauth_error(
                OAuthError::new(
                    "invalid_client",
                    "send the service account's id and secret once, by Basic or in the form",
                ),
                used_basic,
            )
        }
    };
    if let Err(e) = app
        .limiter
        .check("client_credentials", &id, &app.limits.account)
        .await
    {
        return e.into_response();
    }
    match app.auth.client_credentials(&id, secret, c, now()).await {
        Ok((access, ttl)) => {
            Json(json!({"access_token": access, "token_type": "Bearer", "expires_in": ttl}))
                .into_response()
        }
        Err(AuthError::Unauthenticated(_))
        | Err(AuthError::Disabled)
        | Err(AuthError::Forbidden(_)) => oauth_error(
            OAuthError::new("invalid_client", "client authentication failed"),
            used_basic,
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The `token` field of introspection and revocation requests.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenField {
    token: Option<String>,
    #[serde(flatten)]
    client: TokenRequest,
}

/// `POST /oauth/introspect` (RFC 7662).
pub(crate) async fn introspect(
    State(app): State<App>,
    headers: HeaderMap,
    f: Result<Form<TokenField>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (basic, f) = match client_call(&headers, f) {
        Ok(x) => x,
        Err(res) => return *res,
    };
    let used_basic = basic.is_some();
    match app
        .auth
        .introspect(basic, &f.client, f.token.as_deref().unwrap_or(""), now())
        .await
    {
        Ok(v) => Json(v).into_response(),
        Err(e) => oauth_error(e, used_basic),
    }
}

/// `POST /oauth/revoke` (RFC 7009): `200` whether or not the token was known.
pub(crate) async fn revoke(
    State(app): State<App>,
    headers: HeaderMap,
    Client(c): Client,
    f: Result<Form<TokenField>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (basic, f) = match client_call(&headers, f) {
        Ok(x) => x,
        Err(res) => return *res,
    };
    let used_basic = basic.is_some();
    match app
        .auth
        .revoke_token(
            basic,
            &f.client,
            f.token.as_deref().unwrap_or(""),
            &c,
            now(),
        )
        .await
    {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => oauth_error(e, used_basic),
    }
}

/// RP-initiated logout parameters.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
pub(crate) struct LogoutParams {
    id_token_hint: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    client_id: Option<String>,
    csrf: Option<String>,
}

fn signed_out(app: &App, back: Option<String>, state: Option<&str>) -> Response {
    let mut res = match back {
        Some(uri) => {
            let mut u = uri;
            if let Some(s) = state {
                if let Ok(mut parsed) = url::Url::parse(&u) {
                    parsed.query_pairs_mut().append_pair("state", s);
                    u = parsed.into();
                }
            }
            redirect(&u, StatusCode::SEE_OTHER)
        }
        None => pages::page(
            brand(app),
            StatusCode::OK,
            "Signed out",
            &para("You are signed out. You can close this page."),
            None,
        ),
    };
    set_cookie(app, &mut res, SSO, "", "/", 0);
    res
}

/// `GET /oauth/end_session`: asks the signed-in user to confirm (a link
/// alone must not sign anyone out); signed-out browsers go straight on.
pub(crate) async fn end_session(
    State(app): State<App>,
    headers: HeaderMap,
    q: Result<Query<LogoutParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(p)) = q else {
        return pages::error(
            brand(&app),
            StatusCode::BAD_REQUEST,
            "The request's parameters are malformed.",
        );
    };
    let (client, _, back) = match app
        .auth
        .logout_request(
            p.id_token_hint.as_deref(),
            p.client_id.as_deref(),
            p.post_logout_redirect_uri.as_deref(),
        )
        .await
    {
        Ok(x) => x,
        Err(e) => return failure(&app, e),
    };
    if p.post_logout_redirect_uri.is_some() && back.is_none() {
        return pages::error(
            brand(&app),
            StatusCode::BAD_REQUEST,
            "The application asked to return to an address (`post_logout_redirect_uri`) it has not registered.",
        );
    }
    let Some(who) = browser_sign_in(&app, &headers, now()).await else {
        return signed_out(&app, back, p.state.as_deref());
    };
    let (browser, fresh) = browser_for_page(&headers);
    let mut fields: String = [
        ("id_token_hint", &p.id_token_hint),
        ("post_logout_redirect_uri", &p.post_logout_redirect_uri),
        ("state", &p.state),
        ("client_id", &p.client_id),
    ]
    .iter()
    .filter_map(|(k, v)| v.as_deref().map(|v| hidden(k, v)))
    .collect();
    fields.push_str(&hidden("csrf", &csrf_token(&app, &browser)));
    let from = client
        .map(|c| format!(" from {}", c.name))
        .unwrap_or_default();
    let body = format!(
        r#"{intro}<form method="post" action="/oauth/end_session">{fields}<button type="submit">Sign out</button></form>"#,
        intro = para(&format!(
            "Sign {} out of {}{from}?",
            who.user.email,
            brand(&app).name
        )),
    );
    let res = pages::page(
        brand(&app),
        StatusCode::OK,
        "Sign out",
        &body,
        back.as_deref(),
    );
    with_browser(&app, res, &browser, fresh)
}

/// `POST /oauth/end_session`: the confirmation.
pub(crate) async fn end_session_confirmed(
    State(app): State<App>,
    headers: HeaderMap,
    Client(c): Client,
    Form(p): Form<LogoutParams>,
) -> Response {
    if genuine(&app, &headers, p.csrf.as_deref()).is_none() {
        return not_genuine(&app);
    }
    let t = now();
    let (_, sid, back) = match app
        .auth
        .logout_request(
            p.id_token_hint.as_deref(),
            p.client_id.as_deref(),
            p.post_logout_redirect_uri.as_deref(),
        )
        .await
    {
        Ok(x) => x,
        Err(e) => return failure(&app, e),
    };
    let who = browser_sign_in(&app, &headers, t).await;
    if let Err(e) = app
        .auth
        .end_browser_session(who.as_ref(), sid.as_deref(), &c, t)
        .await
    {
        return failure(&app, e);
    }
    signed_out(&app, back, p.state.as_deref())
}

/// `GET|POST /oauth/userinfo`.
pub(crate) async fn userinfo(State(app): State<App>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let refused = || {
        let mut res = (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_token"})),
        )
            .into_response();
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        res
    };
    let Some(bearer) = bearer else {
        return refused();
    };
    match app.auth.userinfo(bearer, now()).await {
        Ok(claims) => Json(claims).into_response(),
        Err(AuthError::Unauthenticated(_)) => refused(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /assets/truxe.css`.
pub(crate) async fn stylesheet(State(app): State<App>) -> Response {
    let mut res = pages::stylesheet(brand(&app)).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    res
}

type Reply = Result<Json<Value>, ApiError>;

fn with_secret(c: &crate::model::OAuthClient, secret: Option<Secret<String>>) -> Value {
    let mut v = json!({"client": ClientView::from(c)});
    if let Some(s) = secret {
        v["clientSecret"] = json!(s.expose());
    }
    v
}

/// `POST /api/oauth/clients`.
pub(crate) async fn create_client(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    ValidJson(b): ValidJson<ClientInput>,
) -> Result<Response, ApiError> {
    let (client, secret) = app.auth.create_client(&p, b, &c, now()).await?;
    Ok((StatusCode::CREATED, ok(with_secret(&client, secret))).into_response())
}

/// `GET /api/oauth/clients`.
pub(crate) async fn list_clients(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    ValidQuery(q): ValidQuery<OrgQuery>,
) -> Reply {
    let org = q.org_id;
    let list: Vec<ClientView> = app
        .auth
        .list_clients(&p, org.as_deref(), &c, now())
        .await?
        .iter()
        .map(ClientView::from)
        .collect();
    Ok(ok(json!({"clients": list})))
}

/// `GET /api/oauth/clients/{id}`.
pub(crate) async fn get_client(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    Path(id): Path<String>,
) -> Reply {
    Ok(ok(with_secret(
        &app.auth.get_client(&p, &id, &c, now()).await?,
        None,
    )))
}

/// `PUT /api/oauth/clients/{id}`.
pub(crate) async fn update_client(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    Path(id): Path<String>,
    ValidJson(b): ValidJson<ClientInput>,
) -> Reply {
    Ok(ok(with_secret(
        &app.auth.update_client(&p, &id, b, &c, now()).await?,
        None,
    )))
}

/// `DELETE /api/oauth/clients/{id}`.
pub(crate) async fn delete_client(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    Path(id): Path<String>,
) -> Reply {
    app.auth.delete_client(&p, &id, &c, now()).await?;
    Ok(ok(json!({"deleted": true})))
}

/// `GET /api/oauth/clients/{id}/stats` (the original Truxe's path).
pub(crate) async fn client_stats(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    Path(id): Path<String>,
) -> Reply {
    let stats = app.auth.client_stats(&p, &id, &c, now()).await?;
    let mut v = serde_json::to_value(&stats).unwrap_or_default();
    v["clientId"] = id.into();
    v["lastUsedAt"] = stats.last_used_at.map(crate::model::rfc3339).into();
    Ok(ok(v))
}

/// `POST /api/oauth/clients/{id}/regenerate-secret`.
pub(crate) async fn regenerate_secret(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    Path(id): Path<String>,
) -> Reply {
    let (client, secret) = app
        .auth
        .regenerate_client_secret(&p, &id, &c, now())
        .await?;
    Ok(ok(with_secret(&client, Some(secret))))
}

/// `GET /api/oauth/consents`: the caller's consents.
pub(crate) async fn consents(State(app): State<App>, Auth(p): Auth) -> Reply {
    let list: Vec<Value> = app
        .auth
        .my_consents(&p)
        .await?
        .into_iter()
        .map(|(id, name, scopes, at)| {
            json!({"clientId": id, "clientName": name, "scopes": scopes, "grantedAt": crate::model::rfc3339(at)})
        })
        .collect();
    Ok(ok(json!({"consents": list})))
}

/// `DELETE /api/oauth/consents/{client_id}`: withdraws it; the client's
/// sessions of the caller end.
pub(crate) async fn revoke_consent(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    Path(client_id): Path<String>,
) -> Reply {
    app.auth
        .revoke_my_consent(&p, &client_id, &c, now())
        .await?;
    Ok(ok(json!({"revoked": true})))
}

/// A form of the account page: the CSRF token, and what it acts on.
#[derive(Debug, Deserialize)]
pub(crate) struct AccountForm {
    csrf: Option<String>,
    id: Option<String>,
    /// Adding a passkey: its name, the ceremony and the authenticator's answer.
    name: Option<String>,
    ceremony_id: Option<String>,
    credential: Option<String>,
    /// Turning TOTP on or off: a current code (or a backup code).
    code: Option<String>,
    disable_code: Option<String>,
}

/// `GET /account`: the signed-in user's sessions, applications and second
/// factor, each with what can be done about it; the sign-in page if this
/// browser is not signed in.
pub(crate) async fn account(State(app): State<App>, headers: HeaderMap) -> Response {
    account_page(app, &headers, None).await
}

/// The account page, with `problem` (of the passkeys form) shown.
async fn account_page(app: App, headers: &HeaderMap, problem: Option<String>) -> Response {
    let (browser, fresh) = browser_for_page(headers);
    let t = now();
    let Some(who) = browser_sign_in(&app, headers, t).await else {
        let res = sign_in_page(&app, &Flow::Account, &browser, StatusCode::OK, None, None);
        return with_browser(&app, res, &browser, fresh);
    };
    let view = match app.auth.account_view(&who, t).await {
        Ok(v) => v,
        Err(e) => return failure(&app, e),
    };
    let esc = crate::service::escape;
    let csrf = hidden("csrf", &csrf_token(&app, &browser));
    let button = |action: &str, id: &str, label: &str| {
        format!(
            r#"<form method="post" action="{action}">{csrf}{id}<button type="submit" class="secondary">{label}</button></form>"#,
            id = hidden("id", id),
            label = esc(label),
        )
    };
    let sessions: String = view
        .sessions
        .iter()
        .map(|s| {
            let this = if s.id == who.session_id { " (this browser)" } else { "" };
            let what = match &s.client_id {
                Some(c) => format!("{} (an application)", view.client_names.get(c).map_or(c.as_str(), String::as_str)),
                None => s.user_agent.clone().unwrap_or_else(|| "A browser or app".into()),
            };
            format!(
                "<li><p>{}{this}<br><span class=\"muted\">{} · since {} · last used {}</span></p>{}</li>",
                esc(&what),
                esc(s.ip.as_deref().unwrap_or("address unknown")),
                crate::model::rfc3339(s.created_at),
                crate::model::rfc3339(s.last_used_at),
                button("/account/sessions/end", &s.id, "End this session"),
            )
        })
        .collect();
    let linked = match app.auth.linked_identities(&who.user).await {
        Ok(l) => l,
        Err(e) => return failure(&app, e),
    };
    let linked: String = if linked.is_empty() {
        "<p class=\"muted\">None.</p>".into()
    } else {
        let items: String = linked
            .iter()
            .map(|i| {
                format!(
                    "<li><p>{}<br><span class=\"muted\">{} · linked {} · last sign-in {}</span></p>{}</li>",
                    esc(&i.provider),
                    esc(&i.email),
                    crate::model::rfc3339(i.created_at),
                    crate::model::rfc3339(i.last_login_at),
                    button("/account/identities/unlink", &i.id, "Unlink"),
                )
            })
            .collect();
        format!("<ul class=\"scopes\">{items}</ul>")
    };
    let apps: String = if view.consents.is_empty() {
        "<p class=\"muted\">None.</p>".into()
    } else {
        let items: String = view
            .consents
            .iter()
            .map(|(id, name, scopes, _)| {
                format!(
                    "<li><p>{}<br><span class=\"muted\">{}</span></p>{}</li>",
                    esc(name),
                    esc(&scopes.join(", ")),
                    button("/account/consents/withdraw", id, "Withdraw access"),
                )
            })
            .collect();
        format!("<ul class=\"scopes\">{items}</ul>")
    };
    let mfa = if view.mfa_enabled {
        format!(
            r#"{}<form method="post" action="/account/mfa/disable">{csrf}{}<button type="submit" class="secondary">Turn off</button></form>"#,
            para(&format!(
                "On ({} backup codes left).",
                view.backup_codes_left
            )),
            field(
                "disable_code",
                "A current code or a backup code, to turn it off",
                "text",
                "one-time-code",
                r#"inputmode="numeric" maxlength="32""#
            ),
        )
    } else {
        format!(
            r#"{}<form method="post" action="/account/mfa/setup">{csrf}<button type="submit" class="secondary">Set up an authenticator app</button></form>"#,
            para("Off."),
        )
    };
    let passkeys = if app.auth.passkeys_available() {
        match passkeys_section(&app, &who, &csrf, &button, t).await {
            Ok(html) => html,
            Err(e) => return failure(&app, e),
        }
    } else {
        String::new()
    };
    let console = if who.user.is_admin {
        r#"<p><a href="/admin/console">Admin console</a></p>"#
    } else {
        ""
    };
    let body = format!(
        r#"{problem}<p>Signed in as {email}.</p>{console}<h2>Sessions</h2><ul class="scopes">{sessions}</ul><h2>Applications you allowed</h2>{apps}<h2>Two-step verification</h2>{mfa}{passkeys}<h2>Linked accounts</h2>{linked}<form method="post" action="/account/logout">{csrf}<button type="submit">Sign out</button></form>"#,
        problem = problem.as_deref().map(alert).unwrap_or_default(),
        email = esc(&who.user.email),
    );
    let render = if passkeys.is_empty() {
        pages::page
    } else {
        pages::with_passkeys
    };
    let status = if problem.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let res = render(brand(&app), status, "Your account", &body, None);
    with_browser(&app, res, &browser, fresh)
}

/// The account page's passkeys: each with Remove, and a form that makes a
/// new one (its ceremony started with the page).
async fn passkeys_section(
    app: &App,
    who: &BrowserSignIn,
    csrf: &str,
    button: &(dyn Fn(&str, &str, &str) -> String + Sync),
    t: i64,
) -> Result<String, AuthError> {
    let esc = crate::service::escape;
    let list: String = app
        .auth
        .passkeys(&who.user)
        .await?
        .iter()
        .map(|p| {
            let synced = if p.backed_up { " · synced" } else { "" };
            format!(
                "<li><p>{}<br><span class=\"muted\">added {} · last used {}{synced}</span></p>{}</li>",
                esc(&p.name),
                p.created_at,
                p.last_used_at.as_deref().unwrap_or("never"),
                button("/account/passkeys/remove", &p.id, "Remove this passkey"),
            )
        })
        .collect();
    let list = if list.is_empty() {
        para("None yet. A passkey signs you in without a password, and counts as a second step after one.")
    } else {
        format!("<ul class=\"scopes\">{list}</ul>")
    };
    let options = app.auth.passkey_register_options(&who.user, t).await?;
    let fields = format!(
        "{csrf}{}{}",
        hidden("ceremony_id", &options.ceremony_id),
        field(
            "name",
            "Name for a new passkey",
            "text",
            "off",
            r#"maxlength="64" placeholder="laptop, phone…""#
        ),
    );
    Ok(format!(
        "<h2>Passkeys</h2>{list}{}",
        pages::passkey_form(
            "create",
            "/account/passkeys/add",
            &options.options,
            &fields,
            "Add a passkey",
            false
        ),
    ))
}

/// Checks an account form: the browser's sign-in, or the answer to give.
async fn account_form(
    app: &App,
    headers: &HeaderMap,
    f: &AccountForm,
) -> Result<BrowserSignIn, Response> {
    genuine(app, headers, f.csrf.as_deref()).ok_or_else(|| not_genuine(app))?;
    browser_sign_in(app, headers, now())
        .await
        .ok_or_else(|| redirect("/account", StatusCode::SEE_OTHER))
}

/// What an account form with an `id` does to it.
#[derive(Clone, Copy)]
enum AccountAction {
    /// Ends one of the user's sessions.
    EndSession,
    /// Withdraws the user's consent to an application.
    Withdraw,
    /// Removes one of the user's passkeys.
    RemovePasskey,
    /// Unlinks one of the user's social-login identities.
    Unlink,
}

async fn account_act(
    app: &App,
    headers: &HeaderMap,
    c: &ClientInfo,
    f: &AccountForm,
    action: AccountAction,
) -> Response {
    let who = match account_form(app, headers, f).await {
        Ok(w) => w,
        Err(res) => return res,
    };
    let id = f.id.as_deref().unwrap_or("");
    let done = match action {
        AccountAction::EndSession => app.auth.account_end_session(&who, id, c, now()).await,
        AccountAction::Withdraw => app.auth.account_withdraw(&who, id, c, now()).await,
        AccountAction::RemovePasskey => app.auth.passkey_remove(&who.user, id, c, now()).await,
        AccountAction::Unlink => app.auth.unlink_identity_of(&who.user, id, c, now()).await,
    };
    match done {
        // Gone already (another tab): the page shows what is left.
        Ok(()) | Err(AuthError::NotFound(_)) => redirect("/account", StatusCode::SEE_OTHER),
        Err(e) => failure(app, e),
    }
}

/// `POST /account/sessions/end`.
pub(crate) async fn account_end_session(
    State(app): State<App>,
    headers: HeaderMap,
    Client(c): Client,
    Form(f): Form<AccountForm>,
) -> Response {
    account_act(&app, &headers, &c, &f, AccountAction::EndSession).await
}

/// `POST /account/consents/withdraw`.
pub(crate) async fn account_withdraw(
    State(app): State<App>,
    headers: HeaderMap,
    Client(c): Client,
    Form(f): Form<AccountForm>,
) -> Response {
    account_act(&app, &headers, &c, &f, AccountAction::Withdraw).await
}

/// `POST /account/identities/unlink`.
pub(crate) async fn account_unlink(
    State(app): State<App>,
    headers: HeaderMap,
    Client(c): Client,
    Form(f): Form<AccountForm>,
) -> Response {
    account_act(&app, &headers, &c, &f, AccountAction::Unlink).await
}

/// `POST /account/passkeys/remove`.
pub(crate) async fn account_remove_passkey(
    State(app): State<App>,
    headers: HeaderMap,
    Client(c): Client,
    Form(f): Form<AccountForm>,
) -> Response {
    account_act(&app, &headers, &c, &f, AccountAction::RemovePasskey).await
}

/// `POST /account/passkeys/add`: the new passkey, from the browser's
/// answer to the ceremony the account page started.
pub(crate) async fn account_add_passkey(
    State(app): State<App>,
    headers: HeaderMap,
    Client(c): Client,
    Form(f): Form<AccountForm>,
) -> Response {
    let who = match account_form(&app, &headers, &f).await {
        Ok(w) => w,
        Err(res) => return res,
    };
    let added = app
        .auth
        .passkey_register(
            &who.user,
            who.auth_time,
            f.ceremony_id.as_deref().unwrap_or(""),
            f.name.as_deref().unwrap_or(""),
            f.credential.as_deref().unwrap_or(""),
            &c,
            now(),
        )
        .await;
    match added {
        Ok(_) => redirect("/account", StatusCode::SEE_OTHER),
        Err(AuthError::Invalid(why) | AuthError::Unauthenticated(why)) => {
            account_page(
                app,
                &headers,
                Some(format!("The passkey was not added: {why}")),
            )
            .await
        }
        Err(e) => failure(&app, e),
    }
}

/// The principal of an account form whose sign-in is recent enough to
/// change its factors; else the page to show.
async fn recent_principal(
    app: &App,
    headers: &HeaderMap,
    f: &AccountForm,
) -> Result<crate::service::Principal, Response> {
    let who = account_form(app, headers, f).await?;
    let t = now();
    if t - who.auth_time > crate::service::passkeys::RECENT_SIGN_IN {
        return Err(account_page(
            app.clone(),
            headers,
            Some("Sign out and in again to change how you sign in (a sign-in of the last 15 minutes is needed).".into()),
        )
        .await);
    }
    match app.auth.browser_principal(&who, t).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(redirect("/account", StatusCode::SEE_OTHER)),
        Err(e) => Err(failure(app, e)),
    }
}

/// `POST /account/mfa/setup`: a new secret as a QR code and text, and the
/// form that confirms it with a code.
pub(crate) async fn account_mfa_setup(
    State(app): State<App>,
    headers: HeaderMap,
    Client(c): Client,
    Form(f): Form<AccountForm>,
) -> Response {
    let p = match recent_principal(&app, &headers, &f).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let setup = match app.auth.mfa_setup(&p, None, &c, now()).await {
        Ok(s) => s,
        Err(e @ (AuthError::Invalid(_) | AuthError::Unauthenticated(_))) => {
            return account_page(app, &headers, Some(e.to_string())).await
        }
        Err(e) => return failure(&app, e),
    };
    // The QR code inline: an `<img>` of a data URL would need `img-src
    // data:` in the page's policy.
    let svg = {
        use base64::Engine;
        setup
            .qr_code
            .strip_prefix("data:image/svg+xml;base64,")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|s| s.trim_start().starts_with("<svg") || s.trim_start().starts_with("<?xml"))
            .map(|s| s.trim_start_matches(|c| c != '<').to_owned())
            .unwrap_or_default()
    };
    let body = format!(
        r#"{intro}<div class="qr" role="img" aria-label="QR code of the secret">{svg}</div><p class="muted">Or type this key: <code>{secret}</code></p><form method="post" action="/account/mfa/enable">{csrf}{code}<button type="submit">Turn on</button></form><p class="muted"><a href="/account">Cancel</a></p>"#,
        intro = para("Scan this with your authenticator app, then enter the code it shows."),
        secret = crate::service::escape(&setup.secret),
        csrf = hidden("csrf", f.csrf.as_deref().unwrap_or("")),
        code = field(
            "code",
            "Code",
            "text",
            "one-time-code",
            r#"inputmode="numeric" autofocus maxlength="8""#
        ),
    );
    pages::page(
        brand(&app),
        StatusCode::OK,
        "Set up an authenticator app",
        &body,
        None,
    )
}

/// `POST /account/mfa/enable`: confirms the secret; the backup codes, shown once.
pub(crate) async fn account_mfa_enable(
    State(app): State<App>,
    headers: HeaderMap,
    Client(c): Client,
    Form(f): Form<AccountForm>,
) -> Response {
    let p = match recent_principal(&app, &headers, &f).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let code: String = f.code.as_deref().unwrap_or("").split_whitespace().collect();
    match app.auth.mfa_enable(&p, &code, &c, now()).await {
        Ok(codes) => {
            let list: String = codes
                .iter()
                .map(|c| format!("<li><code>{}</code></li>", crate::service::escape(c)))
                .collect();
            let body = format!(
                r#"{}<ul class="scopes">{list}</ul>{}<p><a href="/account">Back to your account</a></p>"#,
                para("Two-step verification is on. Keep these backup codes somewhere safe: each signs you in once if your phone is not at hand. They are shown only now."),
                para("Your next sign-in asks for a code."),
            );
            pages::page(
                brand(&app),
                StatusCode::OK,
                "Two-step verification is on",
                &body,
                None,
            )
        }
        Err(e @ (AuthError::Invalid(_) | AuthError::Unauthenticated(_))) => {
            account_page(
                app,
                &headers,
                Some(format!("Not turned on: {e}. Set it up again.")),
            )
            .await
        }
        Err(e) => failure(&app, e),
    }
}

/// `POST /account/mfa/disable`: with a current code or a backup code.
pub(crate) async fn account_mfa_disable(
    State(app): State<App>,
    headers: HeaderMap,
    Client(c): Client,
    Form(f): Form<AccountForm>,
) -> Response {
    let p = match recent_principal(&app, &headers, &f).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let code: String = f
        .disable_code
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let (totp, backup) = if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        (Some(code.as_str()), None)
    } else {
        (None, Some(code.as_str()))
    };
    match app
        .auth
        .mfa_disable(&p, totp, backup, None, &c, now())
        .await
    {
        Ok(()) => redirect("/account", StatusCode::SEE_OTHER),
        Err(e @ (AuthError::Invalid(_) | AuthError::Unauthenticated(_))) => {
            account_page(app, &headers, Some(format!("Not turned off: {e}."))).await
        }
        Err(e) => failure(&app, e),
    }
}

/// `POST /account/logout`.
pub(crate) async fn account_logout(
    State(app): State<App>,
    headers: HeaderMap,
    Client(c): Client,
    Form(f): Form<AccountForm>,
) -> Response {
    let who = match account_form(&app, &headers, &f).await {
        Ok(w) => w,
        Err(res) => return res,
    };
    if let Err(e) = app
        .auth
        .end_browser_session(Some(&who), None, &c, now())
        .await
    {
        return failure(&app, e);
    }
    signed_out(&app, None, None)
}
