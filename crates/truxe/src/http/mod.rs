//! Truxe's HTTP surface: [`router`] builds every route and layer, so tests
//! and the server use the same stack.

mod admin;
mod compat;
mod console;
pub mod cookies;
mod error;
mod extract;
mod machines;
mod oidc;
mod orgs;
mod pages;
mod passkeys;
pub mod ratelimit;
mod routes;
mod signin;
mod social;
mod webhooks;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue};
use axum::routing::{delete, get, post, put};
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;

pub use error::ApiError;

use crate::service::AuthService;
use signin::{social_route, step_route, Step, Surface};

/// Largest request body: auth requests are small.
const BODY_LIMIT: usize = 64 * 1024;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct App {
    /// Accounts and sessions.
    pub auth: Arc<AuthService>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Bearer token accepted on `/metrics` besides administrators' tokens.
    pub metrics_token: Option<Arc<secure::Secret<String>>>,
    /// Token issuer, for discovery.
    pub issuer: String,
    /// Signing algorithm name, for discovery.
    pub algorithm: &'static str,
    /// Rate limiter.
    pub limiter: Arc<ratelimit::Limiter>,
    /// Quotas.
    pub limits: crate::config::Limits,
    /// Quotas of API keys by rate-limit tier.
    pub key_tiers: Arc<std::collections::HashMap<&'static str, secure::ratelimit::Quota>>,
    /// Production mode (HSTS on).
    pub production: bool,
    /// CORS allow-list.
    pub cors: crate::config::Cors,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    /// Cookie mode settings.
    pub cookies: Arc<cookies::CookieConfig>,
    /// The development mailbox (`GET /dev/mailbox`); `None` in production.
    pub mailbox: Option<Arc<crate::service::mail::DevMailbox>>,
}

/// Current unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: String,
}

/// Authentication event counters (`truxe_auth_events_total{event}`).
pub struct Metrics {
    registry: Registry,
    events: Family<EventLabel, Counter>,
}

impl Metrics {
    /// A fresh registry.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("truxe");
        let events = Family::<EventLabel, Counter>::default();
        registry.register(
            "auth_events",
            "Authentication events by outcome",
            events.clone(),
        );
        Arc::new(Metrics { registry, events })
    }
    fn event(&self, event: &str) {
        self.events
            .get_or_create(&EventLabel {
                event: event.into(),
            })
            .inc();
    }
    fn render(&self) -> Result<String, String> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }
}

/// Every route with its layers, read top to bottom: request id → security
/// headers → body limit → handlers.
pub fn router(app: App) -> Router {
    let x_request_id = HeaderName::from_static("x-request-id");
    let headers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(
            x_request_id.clone(),
            MakeRequestUuid,
        ))
        .layer(PropagateRequestIdLayer::new(x_request_id))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        // Hosted pages set their own (still without script); everything
        // else may load nothing.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(tower::util::option_layer(app.production.then(|| {
            SetResponseHeaderLayer::overriding(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=63072000; includeSubDomains"),
            )
        })))
        .layer(tower::util::option_layer(cors_layer(&app.cors)))
        .layer(axum::middleware::from_fn_with_state(
            app.trusted_proxies.clone(),
            extract::client_addr,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    let per_ip = |rule: &'static str, quota| {
        let rule = ratelimit::PerIp {
            limiter: app.limiter.clone(),
            rule,
            quota,
        };
        axum::middleware::from_fn_with_state(rule, ratelimit::per_ip)
    };
    let limits = app.limits;
    let discovery = routes::discovery(&app.issuer, app.algorithm);
    // Every admin route passes the gate: authenticated, administrator, audited.
    let admin = Router::new()
        .route("/api/admin/users", get(admin::users))
        .route(
            "/api/admin/users/{id}",
            get(admin::user).delete(admin::delete_user),
        )
        .route("/api/admin/users/{id}/block", post(admin::block))
        .route("/api/admin/users/{id}/unblock", post(admin::unblock))
        .route("/api/admin/users/{id}/unlock", post(admin::unlock))
        .route("/api/admin/users/{id}/logout", post(admin::logout))
        .route(
            "/api/admin/users/{id}/identities/{identity_id}/tokens",
            get(admin::identity_tokens),
        )
        .route("/api/admin/sessions", get(admin::sessions))
        .route("/api/admin/sessions/{id}", delete(admin::end_session))
        .route("/api/admin/audit", get(admin::audit))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            admin::gate,
        ));
    // The admin console: every request audited, sign-in steps rate-limited.
    let console = Router::new()
        .route("/admin/console", get(console::users))
        .route("/admin/console/users/{id}", get(console::user))
        .route(
            "/admin/console/users/{id}/{action}",
            post(console::user_action),
        )
        .route(
            "/admin/console/sessions/{id}/end",
            post(console::end_session),
        )
        .route(
            "/admin/console/clients",
            get(console::clients).post(console::create_client),
        )
        .route(
            "/admin/console/clients/{id}/{action}",
            post(console::client_action),
        )
        .route("/admin/console/organizations", get(console::organizations))
        .route(
            "/admin/console/organizations/{id}",
            get(console::organization),
        )
        .route(
            "/admin/console/organizations/{id}/{action}",
            post(console::organization_action),
        )
        .route(
            "/admin/console/deliveries/{id}/retry",
            post(console::retry_delivery),
        )
        .route("/admin/console/keys", get(console::keys))
        .route("/admin/console/keys/rotate", post(console::rotate_key))
        .route(
            "/admin/console/keys/{kid}/retire",
            post(console::retire_key),
        )
        .route("/admin/console/audit", get(console::audit_log))
        .route(
            "/admin/console/login",
            step_route(Surface::Console, Step::Password).layer(per_ip("login_ip", limits.login_ip)),
        )
        .route(
            "/admin/console/mfa",
            step_route(Surface::Console, Step::SecondFactor).layer(per_ip("mfa_ip", limits.mfa_ip)),
        )
        .route(
            "/admin/console/passkey",
            step_route(Surface::Console, Step::Passkey).layer(per_ip("login_ip", limits.login_ip)),
        )
        .route(
            "/admin/console/passkey/finish",
            step_route(Surface::Console, Step::PasskeyAnswer)
                .layer(per_ip("login_ip", limits.login_ip)),
        )
        .route(
            "/admin/console/link",
            step_route(Surface::Console, Step::Link).layer(per_ip("email_ip", limits.email_ip)),
        )
        .route(
            "/admin/console/social/{provider}",
            social_route(Surface::Console).layer(per_ip("login_ip", limits.login_ip)),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            console::audit,
        ));
    Router::new()
        .merge(admin)
        .merge(console)
        .route(
            "/api/auth/register",
            post(routes::register).layer(per_ip("register_ip", limits.register_ip)),
        )
        .route(
            "/api/auth/login",
            post(routes::login).layer(per_ip("login_ip", limits.login_ip)),
        )
        .route(
            "/auth/refresh",
            post(routes::refresh).layer(per_ip("refresh_ip", limits.refresh_ip)),
        )
        .route("/auth/logout", post(routes::logout))
        .route("/auth/revoke", post(routes::revoke))
        .route("/auth/me", get(routes::me))
        .route("/auth/sessions", get(routes::sessions))
        .route("/auth/sessions/{id}", delete(routes::end_session))
        .route(
            "/api/auth/password/forgot",
            post(routes::forgot_password).layer(per_ip("email_ip", limits.email_ip)),
        )
        .route(
            "/api/auth/password/reset",
            post(routes::reset_password).layer(per_ip("reset_ip", limits.login_ip)),
        )
        .route(
            "/api/auth/password/change",
            put(routes::change_password).layer(per_ip("password_ip", limits.login_ip)),
        )
        .route(
            "/api/auth/email/send-verification",
            post(routes::send_verification).layer(per_ip("email_ip", limits.email_ip)),
        )
        .route(
            "/api/auth/email/resend-verification",
            post(routes::send_verification).layer(per_ip("email_ip", limits.email_ip)),
        )
        .route(
            "/api/auth/email/verification-status",
            get(routes::verification_status),
        )
        .route("/api/auth/email/verify", get(routes::verify_email))
        .route(
            "/auth/magic-link",
            post(routes::magic_link).layer(per_ip("email_ip", limits.email_ip)),
        )
        .route(
            "/auth/verify",
            get(routes::verify_magic_link).layer(per_ip("login_ip", limits.login_ip)),
        )
        .route(
            "/auth/verify-magic-link",
            post(routes::verify_magic_link_post).layer(per_ip("login_ip", limits.login_ip)),
        )
        .route("/dev/mailbox", get(routes::dev_mailbox))
        .route("/auth/oauth/providers", get(social::providers))
        .route(
            "/auth/oauth/{provider}/authorize",
            get(social::authorize).layer(per_ip("oauth_ip", limits.login_ip)),
        )
        .route(
            "/auth/oauth/{provider}/callback",
            get(social::callback).layer(per_ip("login_ip", limits.login_ip)),
        )
        // The original Truxe's paths for the same two steps.
        .route(
            "/auth/oauth/{provider}/start",
            post(social::start).layer(per_ip("oauth_ip", limits.login_ip)),
        )
        .route(
            "/auth/oauth/callback/{provider}",
            get(social::callback).layer(per_ip("login_ip", limits.login_ip)),
        )
        .route("/auth/oauth/identities", get(social::identities))
        .route("/auth/oauth/identities/{id}", delete(social::unlink))
        .route(
            "/auth/mfa/setup",
            post(routes::mfa_setup).layer(per_ip("mfa_ip", limits.mfa_ip)),
        )
        .route(
            "/auth/mfa/enable",
            post(routes::mfa_enable).layer(per_ip("mfa_ip", limits.mfa_ip)),
        )
        .route("/auth/mfa/status", get(routes::mfa_status))
        .route(
            "/auth/mfa/disable",
            post(routes::mfa_disable).layer(per_ip("mfa_ip", limits.mfa_ip)),
        )
        .route(
            "/auth/mfa/backup/regenerate",
            post(routes::mfa_regenerate).layer(per_ip("mfa_ip", limits.mfa_ip)),
        )
        .route(
            "/auth/mfa/verify",
            post(routes::mfa_verify).layer(per_ip("mfa_ip", limits.mfa_ip)),
        )
        .route(
            "/auth/mfa/backup/verify",
            post(routes::mfa_backup_verify).layer(per_ip("mfa_ip", limits.mfa_ip)),
        )
        .route(
            "/auth/mfa/challenge/verify",
            post(routes::mfa_challenge).layer(per_ip("mfa_ip", limits.mfa_ip)),
        )
        .route(
            "/api/service-accounts/token",
            post(machines::token).layer(per_ip("token_ip", limits.login_ip)),
        )
        .route(
            "/api/service-accounts",
            post(machines::create).get(machines::list),
        )
        .route(
            "/api/service-accounts/{id}",
            get(machines::get)
                .patch(machines::update)
                .delete(machines::delete),
        )
        .route(
            "/api/service-accounts/{id}/keys",
            post(machines::create_key).get(machines::keys),
        )
        .route("/api/api-keys/{key_id}/rotate", post(machines::rotate_key))
        .route("/api/api-keys/{key_id}", delete(machines::revoke_key))
        .route(
            "/webhooks/supported-events",
            get(webhooks::supported_events),
        )
        .route(
            "/webhooks/endpoints",
            post(webhooks::create).get(webhooks::list),
        )
        .route(
            "/webhooks/endpoints/{id}",
            get(webhooks::get)
                .put(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/webhooks/endpoints/{id}/test", post(webhooks::test))
        .route(
            "/webhooks/endpoints/{id}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route("/webhooks/deliveries", get(webhooks::deliveries))
        .route("/webhooks/deliveries/{id}", get(webhooks::delivery))
        .route("/webhooks/deliveries/{id}/retry", post(webhooks::retry))
        .route("/auth/organizations", get(orgs::mine))
        .route("/auth/switch-org", post(orgs::switch))
        .route("/organizations", post(orgs::create).get(orgs::list))
        .route("/organizations/invitations/accept", post(orgs::accept))
        .route(
            "/organizations/{id}",
            get(orgs::get).put(orgs::update).delete(orgs::delete),
        )
        .route("/organizations/{id}/settings", put(orgs::settings))
        .route("/organizations/{id}/hierarchy", get(orgs::hierarchy))
        .route("/organizations/{id}/members", get(orgs::members))
        .route(
            "/organizations/{id}/members/{user_id}",
            put(orgs::set_member).delete(orgs::remove_member),
        )
        .route("/organizations/{id}/invite", post(orgs::invite))
        .route("/organizations/{id}/invitations", get(orgs::invitations))
        .route(
            "/organizations/{id}/invitations/{invitation_id}",
            delete(orgs::revoke_invitation),
        )
        .route(
            "/organizations/{id}/roles",
            get(orgs::roles).post(orgs::create_role),
        )
        .route(
            "/organizations/{id}/roles/{name}",
            put(orgs::update_role).delete(orgs::delete_role),
        )
        .route(
            "/oauth/authorize",
            get(oidc::authorize).layer(per_ip("authorize_ip", limits.login_ip)),
        )
        .route(
            "/api/oauth/authorize",
            get(oidc::authorize).layer(per_ip("authorize_ip", limits.login_ip)),
        )
        .route(
            "/oauth/authorize/login",
            step_route(Surface::Client, Step::Password).layer(per_ip("login_ip", limits.login_ip)),
        )
        .route(
            "/oauth/authorize/mfa",
            step_route(Surface::Client, Step::SecondFactor).layer(per_ip("mfa_ip", limits.mfa_ip)),
        )
        .route(
            "/oauth/authorize/link",
            step_route(Surface::Client, Step::Link).layer(per_ip("email_ip", limits.email_ip)),
        )
        .route(
            "/oauth/authorize/social/{provider}",
            social_route(Surface::Client).layer(per_ip("login_ip", limits.login_ip)),
        )
        .route(
            "/sign-in/link",
            get(signin::link).layer(per_ip("login_ip", limits.login_ip)),
        )
        .route("/oauth/authorize/consent", post(oidc::consent))
        .route(
            "/oauth/authorize/signup",
            get(oidc::signup_form)
                .merge(post(oidc::signup).layer(per_ip("register_ip", limits.register_ip))),
        )
        .route(
            "/oauth/authorize/forgot",
            get(oidc::forgot_form)
                .merge(post(oidc::forgot).layer(per_ip("login_ip", limits.login_ip))),
        )
        .route(
            "/verify-email",
            get(oidc::verify_email_form)
                .merge(post(oidc::verify_email).layer(per_ip("login_ip", limits.login_ip))),
        )
        .route(
            "/reset-password",
            get(oidc::reset_form)
                .merge(post(oidc::reset).layer(per_ip("login_ip", limits.login_ip))),
        )
        .route(
            "/oauth/token",
            post(oidc::token).layer(per_ip("token_ip", limits.login_ip)),
        )
        .route(
            "/api/oauth/token",
            post(oidc::token).layer(per_ip("token_ip", limits.login_ip)),
        )
        .route("/oauth/userinfo", get(oidc::userinfo).post(oidc::userinfo))
        .route(
            "/oauth/introspect",
            post(oidc::introspect).layer(per_ip("token_ip", limits.login_ip)),
        )
        .route(
            "/api/oauth/introspect",
            post(oidc::introspect).layer(per_ip("token_ip", limits.login_ip)),
        )
        .route(
            "/oauth/revoke",
            post(oidc::revoke).layer(per_ip("token_ip", limits.login_ip)),
        )
        .route(
            "/api/oauth/revoke",
            post(oidc::revoke).layer(per_ip("token_ip", limits.login_ip)),
        )
        .route(
            "/oauth/end_session",
            get(oidc::end_session).post(oidc::end_session_confirmed),
        )
        .route(
            "/api/oauth/userinfo",
            get(oidc::userinfo).post(oidc::userinfo),
        )
        .route(
            "/api/oauth/clients",
            post(oidc::create_client).get(oidc::list_clients),
        )
        .route(
            "/api/oauth/clients/{id}",
            get(oidc::get_client)
                .put(oidc::update_client)
                .delete(oidc::delete_client),
        )
        .route(
            "/api/oauth/clients/{id}/regenerate-secret",
            post(oidc::regenerate_secret),
        )
        .route("/api/oauth/clients/{id}/stats", get(oidc::client_stats))
        .route("/api/oauth/consents", get(oidc::consents))
        .route(
            "/api/oauth/consents/{client_id}",
            delete(oidc::revoke_consent),
        )
        .route("/assets/truxe.css", get(oidc::stylesheet))
        .route("/account", get(oidc::account))
        .route(
            "/account/login",
            step_route(Surface::Account, Step::Password).layer(per_ip("login_ip", limits.login_ip)),
        )
        .route(
            "/account/mfa",
            step_route(Surface::Account, Step::SecondFactor).layer(per_ip("mfa_ip", limits.mfa_ip)),
        )
        .route(
            "/account/link",
            step_route(Surface::Account, Step::Link).layer(per_ip("email_ip", limits.email_ip)),
        )
        .route(
            "/account/social/{provider}",
            social_route(Surface::Account).layer(per_ip("login_ip", limits.login_ip)),
        )
        .route("/account/sessions/end", post(oidc::account_end_session))
        .route("/account/consents/withdraw", post(oidc::account_withdraw))
        .route("/account/logout", post(oidc::account_logout))
        .route(
            "/account/passkey",
            step_route(Surface::Account, Step::Passkey).layer(per_ip("login_ip", limits.login_ip)),
        )
        .route(
            "/account/passkey/finish",
            step_route(Surface::Account, Step::PasskeyAnswer)
                .layer(per_ip("login_ip", limits.login_ip)),
        )
        .route("/account/passkeys/add", post(oidc::account_add_passkey))
        .route("/account/identities/unlink", post(oidc::account_unlink))
        .route(
            "/account/mfa/setup",
            post(oidc::account_mfa_setup).layer(per_ip("mfa_ip", limits.mfa_ip)),
        )
        .route(
            "/account/mfa/enable",
            post(oidc::account_mfa_enable).layer(per_ip("mfa_ip", limits.mfa_ip)),
        )
        .route(
            "/account/mfa/disable",
            post(oidc::account_mfa_disable).layer(per_ip("mfa_ip", limits.mfa_ip)),
        )
        .route(
            "/account/passkeys/remove",
            post(oidc::account_remove_passkey),
        )
        .route(
            "/oauth/authorize/passkey",
            step_route(Surface::Client, Step::Passkey).layer(per_ip("login_ip", limits.login_ip)),
        )
        .route(
            "/oauth/authorize/passkey/finish",
            step_route(Surface::Client, Step::PasskeyAnswer)
                .layer(per_ip("login_ip", limits.login_ip)),
        )
        .route("/assets/passkey.js", get(oidc::passkey_script))
        .route(
            "/auth/passkeys",
            get(passkeys::list).post(passkeys::register),
        )
        .route("/auth/passkeys/{id}", delete(passkeys::remove))
        .route(
            "/auth/passkeys/register/options",
            post(passkeys::register_options),
        )
        .route(
            "/auth/passkeys/login/options",
            post(passkeys::login_options).layer(per_ip("login_ip", limits.login_ip)),
        )
        .route(
            "/auth/passkeys/login",
            post(passkeys::login).layer(per_ip("login_ip", limits.login_ip)),
        )
        .route(
            "/auth/mfa/passkey/options",
            post(passkeys::mfa_options).layer(per_ip("mfa_ip", limits.mfa_ip)),
        )
        .route("/.well-known/jwks.json", get(routes::jwks))
        .route("/.well-known/public-key.pem", get(routes::public_key_pem))
        .route(
            "/.well-known/openid-configuration",
            get({
                let d = discovery.clone();
                move |headers: axum::http::HeaderMap| async move { routes::published(&headers, &d) }
            }),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(move |headers: axum::http::HeaderMap| async move {
                routes::published(&headers, &discovery)
            }),
        )
        .route("/health", get(routes::health))
        .route("/ready", get(routes::ready))
        .route("/metrics", get(routes::metrics))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(headers)
        .with_state(app)
}

/// CORS for the configured origins; `None` answers no cross-origin request.
fn cors_layer(cors: &crate::config::Cors) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::Method;
    use tower_http::cors::{AllowOrigin, Any, CorsLayer};
    let base = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-csrf-token"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("retry-after"),
        ])
        .max_age(std::time::Duration::from_secs(600));
    match cors {
        crate::config::Cors::Off => None,
        crate::config::Cors::AnyOrigin => Some(base.allow_origin(Any)),
        crate::config::Cors::Origins(list) => {
            let origins = list.iter().filter_map(|o| HeaderValue::from_str(o).ok());
            Some(
                base.allow_origin(AllowOrigin::list(origins))
                    .allow_credentials(true),
            )
        }
    }
}

/// Longest a request may take, body upload included.
pub const REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves until `shutdown` resolves, then drains in-flight requests, under
/// the edge's bounds (`edge`): headers within 10 s (also the keep-alive
/// idle timeout), whole requests within [`REQUEST_DEADLINE`], at most
/// `max_connections` open (more are answered `503` with `Retry-After`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    tls: Option<Arc<edge::FileTls>>,
    max_connections: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = edge::Limits {
        request: REQUEST_DEADLINE,
        max_connections,
        ..edge::Limits::default()
    };
    let tls = tls.map(|t| t as Arc<dyn edge::TlsSource>);
    let incoming = edge::Incoming::new(listener, tls, limits)?;
    edge::serve(incoming, router(app), limits, shutdown).await
}
