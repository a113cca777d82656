//! Configuration from the original Truxe environment variables (flags
//! override), validated once. Production mode (`TRUXE_ENV=production` or
//! `NODE_ENV=production`) refuses default or weak secrets and says which.

pub mod original;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use secure::jwt::KeyAlg;
use secure::password::PasswordCost;
use secure::ratelimit::Quota;

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration such as 15m, 30d or 2s: {e}"))
}

fn alg(s: &str) -> Result<KeyAlg, String> {
    s.parse().map_err(|e: secure::Error| e.to_string())
}

fn quota(s: &str) -> Result<Quota, String> {
    s.parse().map_err(|e: secure::Error| e.to_string())
}

/// Whether `url` names PostgreSQL on another host than this one without
/// `sslmode=verify-full` (a password and data would cross the network
/// unverified, or in clear).
fn postgres_without_verified_tls(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return false;
    };
    let query = rest.split_once('?').map_or("", |(_, q)| q);
    !is_local_host(url_host(rest)) && !query.split('&').any(|kv| kv == "sslmode=verify-full")
}

/// The host of a `scheme://[user[:password]@]host[:port][/…]` URL.
fn url_host(rest: &str) -> &str {
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    }
}

/// Whether `host` is this machine (or a Unix socket path).
fn is_local_host(host: &str) -> bool {
    host.is_empty()
        || host == "localhost"
        || host.starts_with('/')
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `url` names Redis on another host without TLS and a password.
fn redis_without_tls(url: &str) -> bool {
    match url.strip_prefix("rediss://") {
        Some(rest) => {
            let authority = rest.split(['/', '?']).next().unwrap_or_default();
            !authority.contains('@') && !is_local_host(url_host(rest))
        }
        None => url
            .strip_prefix("redis://")
            .is_some_and(|rest| !is_local_host(url_host(rest))),
    }
}

fn flag(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("`{s}` is not true or false")),
    }
}

/// Every setting of `truxe`.
#[derive(Debug, Clone, Args)]
pub struct RawConfig {
    /// `sqlite://path` (default: a file under TRUXE_DATA_DIR) or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", value_name = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Directory for the SQLite file and signing keys.
    #[arg(
        long,
        env = "TRUXE_DATA_DIR",
        value_name = "TRUXE_DATA_DIR",
        default_value = "truxe-data"
    )]
    pub data_dir: PathBuf,
    /// Listen address.
    #[arg(long, env = "HOST", value_name = "HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Listen port.
    #[arg(long, env = "PORT", value_name = "PORT", default_value_t = 3001)]
    pub port: u16,
    /// `iss` of issued tokens (default `http://HOST:PORT`, `https://` with TLS).
    #[arg(long, env = "JWT_ISSUER", value_name = "JWT_ISSUER")]
    pub issuer: Option<String>,
    /// `aud` of issued tokens.
    #[arg(
        long,
        env = "JWT_AUDIENCE",
        value_name = "JWT_AUDIENCE",
        default_value = "truxe-api"
    )]
    pub audience: String,
    /// Signing algorithm: RS256, ES256 or EdDSA.
    #[arg(long, env = "JWT_ALGORITHM", value_name = "JWT_ALGORITHM", default_value = "RS256", value_parser = alg)]
    pub algorithm: KeyAlg,
    /// Access token lifetime.
    #[arg(long, env = "JWT_ACCESS_TOKEN_TTL", value_name = "JWT_ACCESS_TOKEN_TTL", default_value = "15m", value_parser = duration)]
    pub access_ttl: Duration,
    /// Refresh token (session) lifetime.
    #[arg(long, env = "JWT_REFRESH_TOKEN_TTL", value_name = "JWT_REFRESH_TOKEN_TTL", default_value = "30d", value_parser = duration)]
    pub refresh_ttl: Duration,
    /// A PKCS#8 PEM signing key to use instead of the managed key store (no rotation).
    #[arg(
        long,
        env = "JWT_PRIVATE_KEY_FILE",
        value_name = "JWT_PRIVATE_KEY_FILE"
    )]
    pub private_key_file: Option<PathBuf>,
    /// The signing key as PEM text (`\n` escapes allowed), the original
    /// Truxe's way; PKCS#8, or PKCS#1 for RS256.
    #[arg(
        long,
        env = "JWT_PRIVATE_KEY",
        value_name = "JWT_PRIVATE_KEY",
        hide_env_values = true
    )]
    pub private_key: Option<String>,
    /// The same, base64-encoded.
    #[arg(
        long,
        env = "JWT_PRIVATE_KEY_BASE64",
        value_name = "JWT_PRIVATE_KEY_BASE64",
        hide_env_values = true
    )]
    pub private_key_base64: Option<String>,
    /// The `kid` of a key given by JWT_PRIVATE_KEY(_BASE64) or
    /// JWT_PRIVATE_KEY_FILE (default: its RFC 7638 thumbprint); keep the
    /// original Truxe's so its tokens still verify.
    #[arg(long, env = "JWT_KEY_ID", value_name = "JWT_KEY_ID")]
    pub key_id: Option<String>,
    /// Base URL of emailed sign-in links (`{base}/auth/verify?token=…`),
    /// for an application page that completes them with
    /// `POST /auth/verify-magic-link` (default: this server).
    #[arg(long, env = "MAGIC_LINK_BASE_URL", value_name = "MAGIC_LINK_BASE_URL")]
    pub magic_link_base_url: Option<String>,
    /// Live sessions per user; the oldest is ended beyond this.
    #[arg(long, env = "MAX_CONCURRENT_SESSIONS", value_name = "MAX_CONCURRENT_SESSIONS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_sessions: u32,
    /// Whether anyone may register.
    #[arg(long, env = "ENABLE_SIGNUP", value_name = "ENABLE_SIGNUP", default_value = "true", value_parser = flag)]
    pub enable_signup: bool,
    /// Secret for cookie signing (required in production, ≥ 32 bytes).
    #[arg(
        long,
        env = "COOKIE_SECRET",
        value_name = "COOKIE_SECRET",
        hide_env_values = true
    )]
    pub cookie_secret: Option<String>,
    /// Key for TOTP secrets at rest (required in production, ≥ 32 bytes).
    #[arg(
        long,
        env = "MFA_ENCRYPTION_KEY",
        value_name = "MFA_ENCRYPTION_KEY",
        hide_env_values = true
    )]
    pub mfa_key: Option<String>,
    /// Key for OAuth provider tokens at rest (≥ 32 bytes; used by social login).
    #[arg(
        long,
        env = "OAUTH_TOKEN_ENCRYPTION_KEY",
        value_name = "OAUTH_TOKEN_ENCRYPTION_KEY",
        hide_env_values = true
    )]
    pub oauth_key: Option<String>,
    /// Earlier OAuth token keys, comma-separated: still opened, never sealed
    /// with (`truxe keys rotate-encryption` moves values off them).
    #[arg(
        long,
        env = "OAUTH_TOKEN_ENCRYPTION_KEY_PREVIOUS",
        value_name = "OAUTH_TOKEN_ENCRYPTION_KEY_PREVIOUS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub oauth_key_previous: Vec<String>,
    /// Earlier MFA keys, comma-separated (as for OAuth token keys).
    #[arg(
        long,
        env = "MFA_ENCRYPTION_KEY_PREVIOUS",
        value_name = "MFA_ENCRYPTION_KEY_PREVIOUS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub mfa_key_previous: Vec<String>,
    /// Social login providers, comma-separated: `github`, `google`,
    /// `microsoft`, or any other id for an OpenID Connect provider. Each
    /// reads TRUXE_OAUTH_<ID>_CLIENT_ID, _CLIENT_SECRET and (OpenID
    /// Connect) _ISSUER; see docs/operations.md.
    #[arg(
        long,
        env = "TRUXE_OAUTH_PROVIDERS",
        value_name = "TRUXE_OAUTH_PROVIDERS",
        value_delimiter = ','
    )]
    pub oauth_providers: Vec<String>,
    /// Where social login may send the browser back, comma-separated, matched exactly.
    #[arg(
        long,
        env = "TRUXE_OAUTH_REDIRECTS",
        value_name = "TRUXE_OAUTH_REDIRECTS",
        value_delimiter = ','
    )]
    pub oauth_redirects: Vec<String>,
    /// Bearer token that Prometheus sends to `/metrics` (≥ 32 bytes).
    /// Without it, `/metrics` answers administrators' access tokens only.
    #[arg(
        long,
        env = "TRUXE_METRICS_TOKEN",
        value_name = "TRUXE_METRICS_TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,
    /// Minimum password length.
    #[arg(long, env = "PASSWORD_MIN_LENGTH", value_name = "PASSWORD_MIN_LENGTH", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(8..=128))]
    pub password_min_length: u32,
    /// Require a lower-case letter.
    #[arg(long, env = "PASSWORD_REQUIRE_LOWERCASE", value_name = "PASSWORD_REQUIRE_LOWERCASE", default_value = "true", value_parser = flag)]
    pub password_require_lowercase: bool,
    /// Require an upper-case letter.
    #[arg(long, env = "PASSWORD_REQUIRE_UPPERCASE", value_name = "PASSWORD_REQUIRE_UPPERCASE", default_value = "true", value_parser = flag)]
    pub password_require_uppercase: bool,
    /// Require a digit.
    #[arg(long, env = "PASSWORD_REQUIRE_NUMBERS", value_name = "PASSWORD_REQUIRE_NUMBERS", default_value = "true", value_parser = flag)]
    pub password_require_numbers: bool,
    /// Require a symbol.
    #[arg(long, env = "PASSWORD_REQUIRE_SYMBOLS", value_name = "PASSWORD_REQUIRE_SYMBOLS", default_value = "false", value_parser = flag)]
    pub password_require_symbols: bool,
    /// Argon2id memory in KiB (OWASP minimum 19456).
    #[arg(
        long,
        env = "TRUXE_ARGON2_MEMORY_KIB",
        value_name = "TRUXE_ARGON2_MEMORY_KIB",
        default_value_t = 19456
    )]
    pub argon2_memory_kib: u32,
    /// Argon2id iterations (OWASP minimum 2).
    #[arg(
        long,
        env = "TRUXE_ARGON2_ITERATIONS",
        value_name = "TRUXE_ARGON2_ITERATIONS",
        default_value_t = 2
    )]
    pub argon2_iterations: u32,
    /// Concurrent password hashes (each holds the Argon2 memory); by
    /// default one per core: more only take turns on the cores, each
    /// switch costing time and cache.
    #[arg(
        long,
        env = "TRUXE_HASH_CONCURRENCY",
        value_name = "TRUXE_HASH_CONCURRENCY"
    )]
    pub hash_concurrency: Option<usize>,
    /// Failed logins that lock an account.
    #[arg(
        long,
        env = "TRUXE_LOCKOUT_THRESHOLD",
        value_name = "TRUXE_LOCKOUT_THRESHOLD",
        default_value_t = 5
    )]
    pub lockout_threshold: u32,
    /// Window for counting failures, and the lock's length.
    #[arg(long, env = "TRUXE_LOCKOUT_DURATION", value_name = "TRUXE_LOCKOUT_DURATION", default_value = "15m", value_parser = duration)]
    pub lockout_duration: Duration,
    /// A spent refresh token presented again within this time is refused
    /// without ending the session (a client's concurrent retry); later, it
    /// is treated as theft and the session is revoked.
    #[arg(long, env = "TRUXE_REFRESH_REUSE_GRACE", value_name = "TRUXE_REFRESH_REUSE_GRACE", default_value = "2s", value_parser = duration)]
    pub refresh_reuse_grace: Duration,
    /// Login attempts per client address (`LIMIT/WINDOW`).
    #[arg(long, env = "TRUXE_RATE_LIMIT_LOGIN_IP", value_name = "TRUXE_RATE_LIMIT_LOGIN_IP", default_value = "20/1m", value_parser = quota)]
    pub rate_login_ip: Quota,
    /// Login attempts per account, from any address.
    #[arg(long, env = "TRUXE_RATE_LIMIT_LOGIN_ACCOUNT", value_name = "TRUXE_RATE_LIMIT_LOGIN_ACCOUNT", default_value = "10/15m", value_parser = quota)]
    pub rate_login_account: Quota,
    /// Registrations per client address.
    #[arg(long, env = "TRUXE_RATE_LIMIT_REGISTER_IP", value_name = "TRUXE_RATE_LIMIT_REGISTER_IP", default_value = "10/1h", value_parser = quota)]
    pub rate_register_ip: Quota,
    /// Token refreshes per client address.
    #[arg(long, env = "TRUXE_RATE_LIMIT_REFRESH_IP", value_name = "TRUXE_RATE_LIMIT_REFRESH_IP", default_value = "60/1m", value_parser = quota)]
    pub rate_refresh_ip: Quota,
    /// Second-factor attempts per client address.
    #[arg(long, env = "TRUXE_RATE_LIMIT_MFA_IP", value_name = "TRUXE_RATE_LIMIT_MFA_IP", default_value = "30/1m", value_parser = quota)]
    pub rate_mfa_ip: Quota,
    /// Origins allowed by CORS, comma-separated (`*`: any origin, without credentials).
    #[arg(
        long,
        env = "CORS_ORIGIN",
        value_name = "CORS_ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origin: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is trusted (IPs or CIDRs, comma-separated).
    #[arg(
        long,
        env = "TRUXE_TRUSTED_PROXIES",
        value_name = "TRUXE_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,
    /// PEM certificate chain: Truxe serves HTTPS itself (reloaded when the
    /// file changes). With `TRUXE_TLS_KEY`.
    #[arg(long, env = "TRUXE_TLS_CERT", value_name = "TRUXE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `TRUXE_TLS_CERT`.
    #[arg(long, env = "TRUXE_TLS_KEY", value_name = "TRUXE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// A TLS-terminating proxy stands in front: production may then serve
    /// plain HTTP to it.
    #[arg(long, env = "TRUXE_BEHIND_TLS_PROXY", value_name = "TRUXE_BEHIND_TLS_PROXY", default_value = "false", value_parser = flag)]
    pub behind_tls_proxy: bool,
    /// Open connections at most; more are answered `503` with `Retry-After`.
    #[arg(long, env = "TRUXE_MAX_CONNECTIONS", value_name = "TRUXE_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Keep outgoing mail in a local mailbox readable at `GET /dev/mailbox`
    /// by loopback clients, when SMTP is not set (development only; `torua
    /// dev` switches it on for its Truxe).
    #[arg(long, env = "TRUXE_DEV_MAILBOX", value_name = "TRUXE_DEV_MAILBOX", default_value = "false", value_parser = flag)]
    pub dev_mailbox: bool,
    /// Stop once the process that started this one has exited (`torua
    /// dev` sets it for its Truxe, so a killed `torua dev` leaves no
    /// server behind).
    #[arg(long, env = "TRUXE_EXIT_WITH_PARENT", value_name = "TRUXE_EXIT_WITH_PARENT", default_value = "false", value_parser = flag)]
    pub exit_with_parent: bool,
    /// Webhooks may reach loopback receivers (development only).
    #[arg(long, env = "TRUXE_WEBHOOK_ALLOW_LOOPBACK", value_name = "TRUXE_WEBHOOK_ALLOW_LOOPBACK", default_value = "false", value_parser = flag)]
    pub webhook_allow_loopback: bool,
    /// Networks webhooks may reach although private (IPs or CIDRs, comma-separated).
    #[arg(
        long,
        env = "TRUXE_WEBHOOK_ALLOWED_NETWORKS",
        value_name = "TRUXE_WEBHOOK_ALLOWED_NETWORKS",
        value_delimiter = ','
    )]
    pub webhook_allowed_networks: Vec<String>,
    /// Time limit of one webhook delivery attempt.
    #[arg(long, env = "TRUXE_WEBHOOK_TIMEOUT", value_name = "TRUXE_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub webhook_timeout: Duration,
    /// Attempts before a delivery is dead-lettered.
    #[arg(
        long,
        env = "TRUXE_WEBHOOK_MAX_ATTEMPTS",
        value_name = "TRUXE_WEBHOOK_MAX_ATTEMPTS",
        default_value_t = 12
    )]
    pub webhook_max_attempts: u32,
    /// First retry delay; each further retry doubles it (with jitter, at most 6 h).
    #[arg(long, env = "TRUXE_WEBHOOK_RETRY_BASE", value_name = "TRUXE_WEBHOOK_RETRY_BASE", default_value = "30s", value_parser = duration)]
    pub webhook_retry_base: Duration,
    /// Redis for rate limits shared between instances (unset: in memory).
    #[arg(
        long,
        env = "REDIS_URL",
        value_name = "REDIS_URL",
        hide_env_values = true
    )]
    pub redis_url: Option<String>,
    /// PEM bundle of the CA a `rediss://` server's certificate must chain to
    /// (default: the system's roots).
    #[arg(long, env = "TRUXE_REDIS_CA", value_name = "TRUXE_REDIS_CA")]
    pub redis_ca: Option<PathBuf>,
    /// How mail leaves: `smtp` (SMTP_HOST) or `resend` (Resend's HTTP API,
    /// RESEND_API_KEY); the sender is SMTP_FROM either way.
    #[arg(
        long,
        env = "EMAIL_PROVIDER",
        value_name = "EMAIL_PROVIDER",
        default_value = "smtp"
    )]
    pub email_provider: String,
    /// Resend API key (`re_…`).
    #[arg(
        long,
        env = "RESEND_API_KEY",
        value_name = "RESEND_API_KEY",
        hide_env_values = true
    )]
    pub resend_api_key: Option<String>,
    /// Resend's API base URL (a stand-in in tests).
    #[arg(
        long,
        env = "TRUXE_RESEND_URL",
        value_name = "TRUXE_RESEND_URL",
        default_value = "https://api.resend.com"
    )]
    pub resend_url: String,
    /// Mail a welcome to each new account (the original Truxe did).
    #[arg(long, env = "TRUXE_MAIL_WELCOME")]
    pub mail_welcome: bool,
    /// Name in mail subjects, greetings and hosted pages.
    #[arg(
        long,
        env = "TRUXE_BRAND_NAME",
        value_name = "TRUXE_BRAND_NAME",
        default_value = "Truxe"
    )]
    pub brand_name: String,
    /// Accent colour of mail and hosted pages, `#rrggbb`.
    #[arg(
        long,
        env = "TRUXE_BRAND_COLOR",
        value_name = "TRUXE_BRAND_COLOR",
        default_value = "#2f54eb"
    )]
    pub brand_color: String,
    /// Logo above mail and hosted pages (an `https://` URL).
    #[arg(
        long,
        env = "TRUXE_BRAND_LOGO_URL",
        value_name = "TRUXE_BRAND_LOGO_URL"
    )]
    pub brand_logo_url: Option<String>,
    /// SMTP server for outgoing mail (unset: development mailbox, or no mail in production).
    #[arg(long, env = "SMTP_HOST", value_name = "SMTP_HOST")]
    pub smtp_host: Option<String>,
    /// SMTP port (default: 587 for starttls, 465 for tls, 25 for none).
    #[arg(long, env = "SMTP_PORT", value_name = "SMTP_PORT")]
    pub smtp_port: Option<u16>,
    /// SMTP user name.
    #[arg(long, env = "SMTP_USER", value_name = "SMTP_USER")]
    pub smtp_user: Option<String>,
    /// SMTP password.
    #[arg(
        long,
        env = "SMTP_PASSWORD",
        value_name = "SMTP_PASSWORD",
        hide_env_values = true
    )]
    pub smtp_password: Option<String>,
    /// Sender address, e.g. `Truxe <no-reply@example.com>`.
    #[arg(long, env = "SMTP_FROM", value_name = "SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// PEM bundle of the CA the SMTP server's certificate must chain to
    /// (default: the system's roots).
    #[arg(long, env = "SMTP_CA", value_name = "SMTP_CA")]
    pub smtp_ca: Option<PathBuf>,
    /// `starttls` (default), `tls` (implicit) or `none` (loopback only).
    #[arg(
        long,
        env = "SMTP_TLS",
        value_name = "SMTP_TLS",
        default_value = "starttls"
    )]
    pub smtp_tls: String,
    /// Rotate the signing key automatically after this long (e.g. `30d`).
    #[arg(long, env = "TRUXE_KEY_ROTATION_PERIOD", value_name = "TRUXE_KEY_ROTATION_PERIOD", value_parser = duration)]
    pub key_rotation_period: Option<Duration>,
    /// Base URL put in emailed links (default: JWT_ISSUER).
    #[arg(long, env = "TRUXE_PUBLIC_URL", value_name = "TRUXE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Allowed magic-link redirect URIs, comma-separated, matched exactly.
    #[arg(
        long,
        env = "TRUXE_MAGIC_LINK_REDIRECTS",
        value_name = "TRUXE_MAGIC_LINK_REDIRECTS",
        value_delimiter = ','
    )]
    pub magic_link_redirects: Vec<String>,
    /// How long a rotated API key keeps working beside its successor.
    #[arg(long, env = "TRUXE_API_KEY_ROTATION_GRACE", value_name = "TRUXE_API_KEY_ROTATION_GRACE", default_value = "24h", value_parser = duration)]
    pub api_key_rotation_grace: Duration,
    /// How long an organization invitation stays valid.
    #[arg(long, env = "TRUXE_INVITATION_TTL", value_name = "TRUXE_INVITATION_TTL", default_value = "7d", value_parser = duration)]
    pub invitation_ttl: Duration,
    /// How long a session is kept after it expires (then it is deleted
    /// with its refresh tokens), or `off` to keep every session.
    #[arg(
        long,
        env = "TRUXE_SESSION_RETENTION",
        value_name = "TRUXE_SESSION_RETENTION",
        default_value = "30d"
    )]
    pub session_retention: String,
    /// How often expired sessions past their retention are deleted.
    #[arg(long, env = "TRUXE_SESSION_PURGE_INTERVAL", value_name = "TRUXE_SESSION_PURGE_INTERVAL", default_value = "1h", value_parser = duration)]
    pub session_purge_interval: Duration,
    /// Requests per account (email, user, challenge or token) on register,
    /// refresh, MFA, magic-link and password endpoints, from any address.
    #[arg(long, env = "TRUXE_RATE_LIMIT_ACCOUNT", value_name = "TRUXE_RATE_LIMIT_ACCOUNT", default_value = "20/15m", value_parser = quota)]
    pub rate_account: Quota,
    /// Emailed-link requests per client address.
    #[arg(long, env = "TRUXE_RATE_LIMIT_EMAIL_IP", value_name = "TRUXE_RATE_LIMIT_EMAIL_IP", default_value = "10/1h", value_parser = quota)]
    pub rate_email_ip: Quota,
    /// `production` enables the strict start-up checks.
    #[arg(long, env = "TRUXE_ENV", value_name = "TRUXE_ENV")]
    pub env: Option<String>,
    /// Log JSON lines.
    #[arg(long, env = "TRUXE_LOG_JSON")]
    pub log_json: bool,
}

/// Password rules.
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    /// Minimum length in characters.
    pub min_length: usize,
    /// Rules.
    pub lowercase: bool,
    /// Rules.
    pub uppercase: bool,
    /// Rules.
    pub numbers: bool,
    /// Rules.
    pub symbols: bool,
}

/// Longest password accepted (bounds hashing work per request).
pub const MAX_PASSWORD_LEN: usize = 256;

impl PasswordPolicy {
    /// Every rule `password` breaks, as sentences.
    pub fn violations(&self, password: &str) -> Vec<String> {
        let mut v = Vec::new();
        let n = password.chars().count();
        if n < self.min_length {
            v.push(format!("must be at least {} characters", self.min_length));
        }
        if password.len() > MAX_PASSWORD_LEN {
            v.push(format!("must be at most {MAX_PASSWORD_LEN} bytes"));
        }
        if self.lowercase && !password.chars().any(char::is_lowercase) {
            v.push("must contain a lower-case letter".into());
        }
        if self.uppercase && !password.chars().any(char::is_uppercase) {
            v.push("must contain an upper-case letter".into());
        }
        if self.numbers && !password.chars().any(|c| c.is_ascii_digit()) {
            v.push("must contain a digit".into());
        }
        if self.symbols
            && !password
                .chars()
                .any(|c| !c.is_alphanumeric() && !c.is_whitespace())
        {
            v.push("must contain a symbol".into());
        }
        v
    }
}

/// Rate-limit quotas.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Logins per address.
    pub login_ip: Quota,
    /// Logins per account.
    pub login_account: Quota,
    /// Registrations per address.
    pub register_ip: Quota,
    /// Refreshes per address.
    pub refresh_ip: Quota,
    /// Second-factor attempts per address.
    pub mfa_ip: Quota,
    /// Emailed-link requests per address.
    pub email_ip: Quota,
    /// Requests per account on the other sensitive endpoints.
    pub account: Quota,
}

/// How to reach the SMTP server.
#[derive(Debug, Clone)]
pub struct Smtp {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Transport security.
    pub tls: SmtpTls,
    /// User name and password, if the server needs them.
    pub credentials: Option<(String, secure::Secret<String>)>,
    /// Sender.
    pub from: String,
    /// The CA certificates (PEM) to trust instead of the system's roots.
    pub ca_pem: Option<Vec<u8>>,
}

/// Resend's HTTP API.
#[derive(Debug, Clone)]
pub struct Resend {
    /// API base URL, no trailing `/`.
    pub url: String,
    /// API key.
    pub key: secure::Secret<String>,
    /// Sender.
    pub from: String,
}

/// SMTP transport security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Upgrade with STARTTLS (required).
    StartTls,
    /// TLS from the first byte.
    Tls,
    /// Plain text; only to a loopback address.
    None,
}

/// Which cross-origin callers may use the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// None (the default): same-origin only.
    Off,
    /// Any origin, without credentials (cookies, authorization).
    AnyOrigin,
    /// These exact origins, with credentials.
    Origins(Vec<String>),
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Database URL.
    pub database_url: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// Token issuer.
    pub issuer: String,
    /// Token audience.
    pub audience: String,
    /// Signing algorithm for new keys.
    pub algorithm: KeyAlg,
    /// Access token lifetime.
    pub access_ttl: Duration,
    /// Session lifetime.
    pub refresh_ttl: Duration,
    /// Fixed key file, if any.
    pub private_key_file: Option<PathBuf>,
    /// Fixed key given as PEM text (JWT_PRIVATE_KEY or its base64 form), if any.
    pub private_key_pem: Option<secure::Secret<String>>,
    /// `kid` of the fixed key, if not its thumbprint.
    pub key_id: Option<String>,
    /// Base of emailed sign-in links (defaults to `public_url`).
    pub magic_link_base: Option<String>,
    /// Sessions per user.
    pub max_sessions: usize,
    /// Registration open.
    pub enable_signup: bool,
    /// Password rules.
    pub password: PasswordPolicy,
    /// Argon2id cost.
    pub cost: PasswordCost,
    /// Hashes running at once (one per core unless set).
    pub hash_concurrency: usize,
    /// Lockout threshold.
    pub lockout_threshold: i64,
    /// Lockout window and length.
    pub lockout_duration: Duration,
    /// Concurrent-retry grace for spent refresh tokens.
    pub refresh_reuse_grace: Duration,
    /// Rate limits.
    pub limits: Limits,
    /// Redis URL for shared rate limits.
    pub redis_url: Option<secure::Secret<String>>,
    /// The CA a `rediss://` server's certificate chains to.
    pub redis_ca: Option<PathBuf>,
    /// SMTP delivery, when configured.
    pub smtp: Option<Smtp>,
    /// Resend delivery (`EMAIL_PROVIDER=resend`), if chosen.
    pub resend: Option<Resend>,
    /// Name, colour and logo of mail and pages.
    pub brand: crate::service::Brand,
    /// Mail a welcome to new accounts.
    pub mail_welcome: bool,
    /// Automatic rotation period of the signing key.
    pub key_rotation_period: Option<Duration>,
    /// CORS allow-list (empty: no cross-origin access).
    pub cors: Cors,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Webhook delivery settings.
    pub webhooks: Webhooks,
    /// Base URL of emailed links.
    pub public_url: String,
    /// Allowed magic-link redirects.
    pub magic_link_redirects: Vec<String>,
    /// Lifetime of organization invitations.
    pub invitation_ttl: Duration,
    /// How long expired sessions are kept; `None` keeps them all.
    pub session_retention: Option<Duration>,
    /// How often expired sessions past their retention are deleted.
    pub session_purge_interval: Duration,
    /// Default overlap of a rotated API key.
    pub api_key_rotation_grace: Duration,
    /// `COOKIE_SECRET`, if set (required in production).
    pub cookie_secret: Option<secure::Secret<String>>,
    /// `MFA_ENCRYPTION_KEY`, if set (≥ 32 bytes).
    pub mfa_key: Option<secure::Secret<String>>,
    /// `MFA_ENCRYPTION_KEY_PREVIOUS`.
    pub mfa_key_previous: Vec<secure::Secret<String>>,
    /// `OAUTH_TOKEN_ENCRYPTION_KEY`, if set (≥ 32 bytes).
    pub oauth_key: Option<secure::Secret<String>>,
    /// `OAUTH_TOKEN_ENCRYPTION_KEY_PREVIOUS`.
    pub oauth_key_previous: Vec<secure::Secret<String>>,
    /// Social login providers.
    pub oauth_providers: Vec<OAuthProvider>,
    /// Allowed social-login redirects.
    pub oauth_redirects: Vec<String>,
    /// `TRUXE_METRICS_TOKEN`, if set.
    pub metrics_token: Option<secure::Secret<String>>,
    /// Production checks on.
    pub production: bool,
    /// Mail kept in the development mailbox (`TRUXE_DEV_MAILBOX`).
    pub dev_mailbox: bool,
    /// Stop when the parent process exits (`TRUXE_EXIT_WITH_PARENT`).
    pub exit_with_parent: bool,
    /// Open connections at most.
    pub max_connections: usize,
    /// The certificate and key Truxe serves HTTPS with, if it does.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// JSON logs.
    pub log_json: bool,
}

impl Config {
    /// Validates raw settings; every problem is reported, each naming its variable.
    pub fn from_raw(raw: RawConfig) -> Result<Config, String> {
        let production = raw
            .env
            .as_deref()
            .or(std::env::var("NODE_ENV").ok().as_deref())
            == Some("production");
        let mut problems = Vec::new();
        let database_url = raw
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", raw.data_dir.join("truxe.db").display()));
        let supported = ["sqlite:", "postgres://", "postgresql://"];
        if !supported.iter().any(|p| database_url.starts_with(p)) {
            problems.push(format!(
                "DATABASE_URL: use sqlite://PATH or postgres://USER@HOST/DB (got a URL starting `{}`)",
                database_url.split("://").next().unwrap_or("")
            ));
        }
        if production && raw.redis_url.as_deref().is_some_and(redis_without_tls) {
            problems.push("REDIS_URL: production reaches Redis on another host only over TLS with a password: `rediss://:PASSWORD@HOST:PORT` (and TRUXE_REDIS_CA for a private CA)".into());
        }
        if production && postgres_without_verified_tls(&database_url) {
            problems.push("DATABASE_URL: production reaches PostgreSQL on another host only over verified TLS; add `sslmode=verify-full&sslrootcert=/path/to/ca.pem`".into());
        }
        let cost = PasswordCost {
            memory_kib: raw.argon2_memory_kib,
            iterations: raw.argon2_iterations,
            parallelism: 1,
        };
        if raw.argon2_memory_kib < 8 || raw.argon2_iterations < 1 {
            problems.push("TRUXE_ARGON2_MEMORY_KIB / TRUXE_ARGON2_ITERATIONS: out of range".into());
        }
        if raw.access_ttl < Duration::from_secs(10)
            || raw.access_ttl > Duration::from_secs(24 * 3600)
        {
            problems.push("JWT_ACCESS_TOKEN_TTL: use between 10s and 24h".into());
        }
        if raw.refresh_ttl < raw.access_ttl {
            problems.push(
                "JWT_REFRESH_TOKEN_TTL: must not be shorter than JWT_ACCESS_TOKEN_TTL".into(),
            );
        }
        if raw.audience.trim().is_empty() {
            problems.push("JWT_AUDIENCE: must not be empty".into());
        }
        let hash_concurrency = raw.hash_concurrency.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        if hash_concurrency == 0 || raw.lockout_threshold == 0 {
            problems.push(
                "TRUXE_HASH_CONCURRENCY and TRUXE_LOCKOUT_THRESHOLD must be at least 1".into(),
            );
        }
        let issuer = raw.issuer.clone().unwrap_or_else(|| {
            let scheme = if raw.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}:{}", raw.host, raw.port)
        });
        let origins: Vec<String> = raw
            .cors_origin
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        let cors = match origins.as_slice() {
            [] => Cors::Off,
            [any] if any == "*" => Cors::AnyOrigin,
            list if list.iter().any(|o| o == "*") => {
                problems.push("CORS_ORIGIN: `*` cannot be combined with named origins".into());
                Cors::Off
            }
            list => {
                for o in list {
                    if !(o.starts_with("https://") || o.starts_with("http://"))
                        || o.matches('/').count() != 2
                    {
                        problems.push(format!(
                            "CORS_ORIGIN: `{o}` is not an origin like https://app.example.com"
                        ));
                    }
                }
                Cors::Origins(list.to_vec())
            }
        };
        if production && cors == Cors::AnyOrigin {
            problems.push("CORS_ORIGIN: `*` is not allowed in production; list the origins".into());
        }
        let trusted_proxies =
            networks("TRUXE_TRUSTED_PROXIES", &raw.trusted_proxies, &mut problems);
        let webhook_allowed_networks = networks(
            "TRUXE_WEBHOOK_ALLOWED_NETWORKS",
            &raw.webhook_allowed_networks,
            &mut problems,
        );
        let tls = match (&raw.tls_cert, &raw.tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => {
                problems.push("TRUXE_TLS_CERT and TRUXE_TLS_KEY: set both, or neither".into());
                None
            }
        };
        if production
            && tls.is_none()
            && !raw.behind_tls_proxy
            && raw.tls_cert.is_none()
            && raw.tls_key.is_none()
        {
            problems.push("TRUXE_TLS_CERT: production serves HTTPS; set TRUXE_TLS_CERT and TRUXE_TLS_KEY, or TRUXE_BEHIND_TLS_PROXY=true when a TLS-terminating proxy stands in front".into());
        }
        if production && raw.dev_mailbox {
            problems.push(
                "TRUXE_DEV_MAILBOX: not allowed in production; it shows every emailed link".into(),
            );
        }
        if raw.dev_mailbox && raw.smtp_host.is_some() {
            problems.push("TRUXE_DEV_MAILBOX: SMTP_HOST is set too; choose one".into());
        }
        if production && raw.webhook_allow_loopback {
            problems.push("TRUXE_WEBHOOK_ALLOW_LOOPBACK: not allowed in production; list internal receivers in TRUXE_WEBHOOK_ALLOWED_NETWORKS".into());
        }
        if raw.webhook_max_attempts == 0 {
            problems.push("TRUXE_WEBHOOK_MAX_ATTEMPTS: must be at least 1".into());
        }
        let smtp = match &raw.smtp_host {
            None => None,
            Some(host) => {
                let tls = match raw.smtp_tls.as_str() {
                    "starttls" => SmtpTls::StartTls,
                    "tls" => SmtpTls::Tls,
                    "none" => SmtpTls::None,
                    other => {
                        problems.push(format!("SMTP_TLS: `{other}` is not starttls, tls or none"));
                        SmtpTls::StartTls
                    }
                };
                let loopback = host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if tls == SmtpTls::None && !loopback {
                    problems.push("SMTP_TLS: `none` sends mail and credentials in clear; it is allowed only to a loopback SMTP_HOST".into());
                }
                let from = raw.smtp_from.clone().unwrap_or_default();
                if from.parse::<lettre::message::Mailbox>().is_err() {
                    problems.push("SMTP_FROM: required with SMTP_HOST, an address such as `Truxe <no-reply@example.com>`".into());
                }
                let default_port = match tls {
                    SmtpTls::StartTls => 587,
                    SmtpTls::Tls => 465,
                    SmtpTls::None => 25,
                };
                let credentials = match (&raw.smtp_user, &raw.smtp_password) {
                    (Some(u), Some(p)) => Some((u.clone(), secure::Secret::new(p.clone()))),
                    (None, None) => None,
                    _ => {
                        problems.push("SMTP_USER and SMTP_PASSWORD: give both or neither".into());
                        None
                    }
                };
                let ca_pem = raw
                    .smtp_ca
                    .as_ref()
                    .and_then(|path| match std::fs::read(path) {
                        Ok(pem) if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => {
                            Some(pem)
                        }
                        Ok(_) => {
                            problems.push(format!(
                                "SMTP_CA: {} holds no PEM certificate",
                                path.display()
                            ));
                            None
                        }
                        Err(e) => {
                            problems.push(format!("SMTP_CA: {}: {e}", path.display()));
                            None
                        }
                    });
                Some(Smtp {
                    host: host.clone(),
                    port: raw.smtp_port.unwrap_or(default_port),
                    tls,
                    credentials,
                    from,
                    ca_pem,
                })
            }
        };
        let resend = match raw.email_provider.as_str() {
            "smtp" => None,
            "resend" => {
                if raw.smtp_host.is_some() {
                    problems.push(
                        "EMAIL_PROVIDER=resend and SMTP_HOST: choose one way for mail".into(),
                    );
                }
                let key = raw.resend_api_key.clone().unwrap_or_default();
                if key.trim().is_empty() {
                    problems.push("RESEND_API_KEY: required with EMAIL_PROVIDER=resend".into());
                }
                let from = raw.smtp_from.clone().unwrap_or_default();
                if from.parse::<lettre::message::Mailbox>().is_err() {
                    problems.push("SMTP_FROM: the sender, required for mail: an address such as `Truxe <no-reply@example.com>`".into());
                }
                let url = url_list(
                    "TRUXE_RESEND_URL",
                    std::slice::from_ref(&raw.resend_url),
                    production,
                    &mut problems,
                )
                .pop()
                .unwrap_or_default();
                Some(Resend {
                    url: url.trim_end_matches('/').to_owned(),
                    key: secure::Secret::new(key),
                    from,
                })
            }
            other => {
                problems.push(format!("EMAIL_PROVIDER: `{other}` is not smtp or resend"));
                None
            }
        };
        let color_ok = raw.brand_color.len() == 7
            && raw.brand_color.starts_with('#')
            && raw.brand_color[1..].chars().all(|c| c.is_ascii_hexdigit());
        if !color_ok {
            problems.push(format!(
                "TRUXE_BRAND_COLOR: `{}` is not a colour like #2f54eb",
                raw.brand_color
            ));
        }
        if raw.brand_name.trim().is_empty() || raw.brand_name.chars().count() > 64 {
            problems.push("TRUXE_BRAND_NAME: 1 to 64 characters".into());
        }
        let logo = raw.brand_logo_url.as_ref().and_then(|u| {
            let ok = url::Url::parse(u).is_ok_and(|p| p.scheme() == "https");
            if !ok {
                problems.push(format!(
                    "TRUXE_BRAND_LOGO_URL: `{u}` is not an https:// URL"
                ));
            }
            ok.then(|| u.clone())
        });
        let brand = crate::service::Brand {
            name: raw.brand_name.trim().to_owned(),
            color: raw.brand_color.to_ascii_lowercase(),
            logo_url: logo,
        };
        if raw
            .key_rotation_period
            .is_some_and(|p| p < Duration::from_secs(1))
        {
            problems.push("TRUXE_KEY_ROTATION_PERIOD: must be at least 1s".into());
        }
        let session_retention = match raw.session_retention.trim() {
            "off" => None,
            text => match duration(text) {
                Ok(d) => Some(d),
                Err(_) => {
                    problems.push(format!(
                        "TRUXE_SESSION_RETENTION: `{text}` is neither a duration (e.g. `30d`) nor `off`"
                    ));
                    None
                }
            },
        };
        if raw.session_purge_interval < Duration::from_millis(100) {
            problems.push("TRUXE_SESSION_PURGE_INTERVAL: must be at least 100ms".into());
        }
        for (name, current, previous) in [
            (
                "OAUTH_TOKEN_ENCRYPTION_KEY",
                &raw.oauth_key,
                &raw.oauth_key_previous,
            ),
            ("MFA_ENCRYPTION_KEY", &raw.mfa_key, &raw.mfa_key_previous),
        ] {
            if current.as_deref().is_some_and(|k| k.len() < 32) {
                problems.push(format!("{name}: must be at least 32 bytes"));
            }
            if previous.iter().any(|k| k.len() < 32) {
                problems.push(format!(
                    "{name}_PREVIOUS: every key must be at least 32 bytes"
                ));
            }
            if !previous.is_empty() && current.is_none() {
                problems.push(format!(
                    "{name}_PREVIOUS: set {name} too (the key new values are sealed with)"
                ));
            }
        }
        let oauth_providers = oauth_providers(
            &raw.oauth_providers,
            |var| std::env::var(var).ok().filter(|v| !v.is_empty()),
            production,
            &mut problems,
        );
        let oauth_redirects = url_list(
            "TRUXE_OAUTH_REDIRECTS",
            &raw.oauth_redirects,
            production,
            &mut problems,
        );
        if production && !oauth_providers.is_empty() && raw.oauth_key.is_none() {
            problems.push("OAUTH_TOKEN_ENCRYPTION_KEY: required in production when TRUXE_OAUTH_PROVIDERS is set".into());
        }
        if raw
            .metrics_token
            .as_deref()
            .is_some_and(|k| k.len() < 32 || is_weak(k))
        {
            problems.push(
                "TRUXE_METRICS_TOKEN: must be at least 32 bytes and not a placeholder".into(),
            );
        }
        if raw.mfa_key.as_deref().is_some_and(|k| k.len() < 32) {
            problems.push("MFA_ENCRYPTION_KEY: must be at least 32 bytes".into());
        }
        if production {
            for (name, value) in [
                ("COOKIE_SECRET", &raw.cookie_secret),
                ("MFA_ENCRYPTION_KEY", &raw.mfa_key),
            ] {
                match value.as_deref() {
                    None | Some("") => problems.push(format!("{name}: required in production")),
                    Some(v) if v.len() < 32 => {
                        problems.push(format!("{name}: must be at least 32 bytes in production"))
                    }
                    Some(v) if is_weak(v) => {
                        problems.push(format!("{name}: looks like a default or placeholder value"))
                    }
                    _ => {}
                }
            }
            if !cost.meets_owasp_minimum() {
                problems.push("TRUXE_ARGON2_MEMORY_KIB / TRUXE_ARGON2_ITERATIONS: below the OWASP minimum (19456 KiB, 2 iterations)".into());
            }
            if !issuer.starts_with("https://") {
                problems.push("JWT_ISSUER: must be an https:// URL in production".into());
            }
        }
        let private_key_pem = fixed_key(&raw, &mut problems);
        if raw.key_id.is_some() && private_key_pem.is_none() && raw.private_key_file.is_none() {
            problems.push("JWT_KEY_ID: names a key given by JWT_PRIVATE_KEY, JWT_PRIVATE_KEY_BASE64 or JWT_PRIVATE_KEY_FILE; managed keys are named by their thumbprint".into());
        }
        let magic_link_base = raw
            .magic_link_base_url
            .as_deref()
            .map(|u| u.trim_end_matches('/').to_owned());
        if let Some(u) = &magic_link_base {
            url_list(
                "MAGIC_LINK_BASE_URL",
                std::slice::from_ref(u),
                production,
                &mut problems,
            );
        }
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        let public_url = raw
            .public_url
            .clone()
            .unwrap_or_else(|| issuer.clone())
            .trim_end_matches('/')
            .to_owned();
        // A provider's own callback URL must reach this server.
        let elsewhere: Vec<String> = oauth_providers
            .iter()
            .filter_map(|p| p.redirect_uri.as_ref().map(|r| (p, r)))
            .filter(|(_, r)| !r.starts_with(&format!("{public_url}/")))
            .map(|(p, r)| format!("TRUXE_OAUTH_{}_REDIRECT_URI: `{r}` is not on this server's public URL `{public_url}` (TRUXE_PUBLIC_URL)", p.id.to_ascii_uppercase().replace('-', "_")))
            .collect();
        if !elsewhere.is_empty() {
            return Err(elsewhere.join("\n"));
        }
        Ok(Config {
            database_url,
            data_dir: raw.data_dir,
            listen: SocketAddr::new(raw.host, raw.port),
            issuer,
            audience: raw.audience,
            algorithm: raw.algorithm,
            access_ttl: raw.access_ttl,
            refresh_ttl: raw.refresh_ttl,
            resend,
            brand,
            mail_welcome: raw.mail_welcome,
            private_key_file: raw.private_key_file,
            private_key_pem,
            key_id: raw.key_id,
            magic_link_base,
            max_sessions: raw.max_sessions as usize,
            enable_signup: raw.enable_signup,
            password: PasswordPolicy {
                min_length: raw.password_min_length as usize,
                lowercase: raw.password_require_lowercase,
                uppercase: raw.password_require_uppercase,
                numbers: raw.password_require_numbers,
                symbols: raw.password_require_symbols,
            },
            cost,
            hash_concurrency,
            lockout_threshold: i64::from(raw.lockout_threshold),
            lockout_duration: raw.lockout_duration,
            refresh_reuse_grace: raw.refresh_reuse_grace,
            mfa_key: raw.mfa_key.clone().map(secure::Secret::new),
            mfa_key_previous: raw
                .mfa_key_previous
                .iter()
                .cloned()
                .map(secure::Secret::new)
                .collect(),
            oauth_key: raw.oauth_key.clone().map(secure::Secret::new),
            oauth_key_previous: raw
                .oauth_key_previous
                .iter()
                .cloned()
                .map(secure::Secret::new)
                .collect(),
            oauth_providers,
            oauth_redirects,
            metrics_token: raw.metrics_token.clone().map(secure::Secret::new),
            cookie_secret: raw.cookie_secret.clone().map(secure::Secret::new),
            public_url,
            cors,
            trusted_proxies,
            webhooks: Webhooks {
                allow_loopback: raw.webhook_allow_loopback,
                allowed_networks: webhook_allowed_networks,
                timeout: raw.webhook_timeout,
                max_attempts: raw.webhook_max_attempts,
                retry_base: raw.webhook_retry_base,
                https_only: production,
            },
            key_rotation_period: raw.key_rotation_period,
            smtp,
            redis_url: raw.redis_url.clone().map(secure::Secret::new),
            redis_ca: raw.redis_ca.clone(),
            invitation_ttl: raw.invitation_ttl,
            session_retention,
            session_purge_interval: raw.session_purge_interval,
            api_key_rotation_grace: raw.api_key_rotation_grace,
            magic_link_redirects: raw
                .magic_link_redirects
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            limits: Limits {
                login_ip: raw.rate_login_ip,
                login_account: raw.rate_login_account,
                register_ip: raw.rate_register_ip,
                refresh_ip: raw.rate_refresh_ip,
                mfa_ip: raw.rate_mfa_ip,
                email_ip: raw.rate_email_ip,
                account: raw.rate_account,
            },
            production,
            dev_mailbox: raw.dev_mailbox,
            exit_with_parent: raw.exit_with_parent,
            max_connections: raw.max_connections as usize,
            tls,
            log_json: raw.log_json,
        })
    }

    /// Where the development MFA key lives when `MFA_ENCRYPTION_KEY` is unset.
    pub fn mfa_key_file(&self) -> PathBuf {
        self.keys_dir().join("mfa.key")
    }

    /// Where the development OAuth token key lives when
    /// `OAUTH_TOKEN_ENCRYPTION_KEY` is unset.
    pub fn oauth_key_file(&self) -> PathBuf {
        self.keys_dir().join("oauth.key")
    }

    /// The redirect URI registered with a provider: the one configured for
    /// it, else Truxe's own callback.
    pub fn oauth_callback(&self, provider: &str) -> String {
        self.oauth_providers
            .iter()
            .find(|p| p.id == provider)
            .and_then(|p| p.redirect_uri.clone())
            .unwrap_or_else(|| format!("{}/auth/oauth/{provider}/callback", self.public_url))
    }

    /// Where managed signing keys live.
    pub fn keys_dir(&self) -> PathBuf {
        self.data_dir.join("keys")
    }
}

/// Webhook delivery settings.
#[derive(Debug, Clone)]
pub struct Webhooks {
    /// Loopback receivers allowed (development).
    pub allow_loopback: bool,
    /// Private networks allowed.
    pub allowed_networks: Vec<ipnet::IpNet>,
    /// Per-attempt time limit.
    pub timeout: Duration,
    /// Attempts before dead-lettering.
    pub max_attempts: u32,
    /// First retry delay.
    pub retry_base: Duration,
    /// Only https:// destinations (production).
    pub https_only: bool,
}

/// A social login provider.
#[derive(Debug, Clone)]
pub struct OAuthProvider {
    /// Id in URLs (`/auth/oauth/{id}/…`) and in linked identities.
    pub id: String,
    /// Shown to people choosing how to sign in.
    pub name: String,
    /// Protocol and endpoints.
    pub kind: ProviderKind,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: secure::Secret<String>,
    /// Requested scopes.
    pub scopes: Vec<String>,
    /// The callback URL registered with the provider, when it is not
    /// Truxe's own (`TRUXE_OAUTH_<ID>_REDIRECT_URI`; e.g. the original
    /// Truxe's `/auth/oauth/callback/{id}`, which is served too).
    pub redirect_uri: Option<String>,
}

/// How a provider is spoken to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenID Connect, endpoints by discovery from `issuer`.
    Oidc {
        /// Issuer URL; discovery is `{issuer}/.well-known/openid-configuration`.
        issuer: String,
        /// Whether the provider's discovered issuer is a `{tenantid}`
        /// template (Microsoft's `common`, `organizations`, `consumers`).
        multi_tenant: bool,
    },
    /// GitHub's OAuth apps (no OpenID Connect): identity from its REST API.
    Github {
        /// Web base, `https://github.com` (or a GitHub Enterprise host).
        web: String,
        /// REST API base, `https://api.github.com`.
        api: String,
    },
}

/// Social login providers from `TRUXE_OAUTH_PROVIDERS` and their
/// `TRUXE_OAUTH_<ID>_*` settings, read through `env`.
fn oauth_providers(
    ids: &[String],
    env: impl Fn(&str) -> Option<String>,
    production: bool,
    problems: &mut Vec<String>,
) -> Vec<OAuthProvider> {
    let mut out: Vec<OAuthProvider> = Vec::new();
    for id in ids.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
        let valid_id = id.len() <= 32
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid_id {
            problems.push(format!("TRUXE_OAUTH_PROVIDERS: `{id}` is not an id of lower-case letters, digits and `-` (at most 32)"));
            continue;
        }
        if out.iter().any(|p| p.id == id) {
            problems.push(format!("TRUXE_OAUTH_PROVIDERS: `{id}` is listed twice"));
            continue;
        }
        let var = |suffix: &str| {
            format!(
                "TRUXE_OAUTH_{}_{suffix}",
                id.to_ascii_uppercase().replace('-', "_")
            )
        };
        let get = |suffix: &str| env(&var(suffix)).map(|v| v.trim().to_owned());
        let mut need = |suffix: &str| {
            get(suffix).unwrap_or_else(|| {
                problems.push(format!("{}: required for provider `{id}`", var(suffix)));
                String::new()
            })
        };
        let client_id = need("CLIENT_ID");
        let client_secret = need("CLIENT_SECRET");
        let (kind, name, scopes) = match id {
            "github" => (
                ProviderKind::Github {
                    web: get("URL").unwrap_or_else(|| "https://github.com".into()),
                    api: get("API_URL").unwrap_or_else(|| "https://api.github.com".into()),
                },
                "GitHub",
                "read:user user:email",
            ),
            "google" => (
                ProviderKind::Oidc {
                    issuer: "https://accounts.google.com".into(),
                    multi_tenant: false,
                },
                "Google",
                "openid email profile",
            ),
            "microsoft" => {
                let tenant = get("TENANT").unwrap_or_else(|| "common".into());
                (
                    ProviderKind::Oidc {
                        issuer: format!("https://login.microsoftonline.com/{tenant}/v2.0"),
                        multi_tenant: ["common", "organizations", "consumers"]
                            .contains(&tenant.as_str()),
                    },
                    "Microsoft",
                    "openid email profile",
                )
            }
            _ => (
                ProviderKind::Oidc {
                    issuer: need("ISSUER"),
                    multi_tenant: false,
                },
                id,
                "openid email profile",
            ),
        };
        let urls: Vec<&String> = match &kind {
            ProviderKind::Oidc { issuer, .. } => vec![issuer],
            ProviderKind::Github { web, api } => vec![web, api],
        };
        for u in urls {
            if u.is_empty() {
                continue;
            }
            match url::Url::parse(u) {
                Ok(parsed) if parsed.scheme() == "https" => {}
                Ok(parsed) if parsed.scheme() == "http" && !production => {}
                _ => problems.push(format!(
                    "provider `{id}`: `{u}` is not an https:// URL{}",
                    if production {
                        ""
                    } else {
                        " (or http:// in development)"
                    }
                )),
            }
        }
        let scopes = get("SCOPES").unwrap_or_else(|| scopes.into());
        // Another callback must still be one of this server's two paths.
        let redirect_uri = get("REDIRECT_URI");
        if let Some(r) = &redirect_uri {
            let ours = [
                format!("/auth/oauth/{id}/callback"),
                format!("/auth/oauth/callback/{id}"),
            ];
            let ok = url::Url::parse(r).is_ok_and(|u| {
                (u.scheme() == "https" || (u.scheme() == "http" && !production))
                    && ours.iter().any(|p| u.path().ends_with(p.as_str()))
                    && u.query().is_none()
                    && u.fragment().is_none()
            });
            if !ok {
                problems.push(format!(
                    "{}: `{r}` must be this server's URL ending in {} or {}",
                    var("REDIRECT_URI"),
                    ours[0],
                    ours[1]
                ));
            }
        }
        out.push(OAuthProvider {
            id: id.to_owned(),
            name: get("NAME").unwrap_or_else(|| name.to_owned()),
            kind: match kind {
                ProviderKind::Oidc {
                    issuer,
                    multi_tenant,
                } => ProviderKind::Oidc {
                    issuer: issuer.trim_end_matches('/').to_owned(),
                    multi_tenant,
                },
                ProviderKind::Github { web, api } => ProviderKind::Github {
                    web: web.trim_end_matches('/').to_owned(),
                    api: api.trim_end_matches('/').to_owned(),
                },
            },
            client_id,
            client_secret: secure::Secret::new(client_secret),
            scopes: scopes
                .split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            redirect_uri,
        });
    }
    out
}

/// The signing key given as text: JWT_PRIVATE_KEY (PEM, `\n` escapes
/// allowed, as in a `.env` file) or JWT_PRIVATE_KEY_BASE64; at most one
/// of them and JWT_PRIVATE_KEY_FILE.
fn fixed_key(raw: &RawConfig, problems: &mut Vec<String>) -> Option<secure::Secret<String>> {
    use base64::Engine;
    let given = [
        raw.private_key_file.is_some(),
        raw.private_key.is_some(),
        raw.private_key_base64.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        problems.push(
            "JWT_PRIVATE_KEY_FILE, JWT_PRIVATE_KEY, JWT_PRIVATE_KEY_BASE64: give one of them"
                .into(),
        );
        return None;
    }
    if let Some(pem) = &raw.private_key {
        return Some(secure::Secret::new(pem.replace("\\n", "\n")));
    }
    let b64 = raw.private_key_base64.as_deref()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    if decoded.is_none() {
        problems.push("JWT_PRIVATE_KEY_BASE64: not base64 of a PEM key".into());
    }
    decoded.map(secure::Secret::new)
}

/// Absolute URLs from a list setting (https in production; http allowed in
/// development); each bad entry is a named problem.
fn url_list(
    var: &str,
    list: &[String],
    production: bool,
    problems: &mut Vec<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for u in list.iter().map(|u| u.trim()).filter(|u| !u.is_empty()) {
        match url::Url::parse(u) {
            Ok(p) if p.scheme() == "https" || (!production && p.scheme() == "http") => {
                if p.fragment().is_some() {
                    problems.push(format!("{var}: `{u}` must not have a #fragment"));
                }
                out.push(u.to_owned());
            }
            _ => problems.push(format!("{var}: `{u}` is not an https:// URL")),
        }
    }
    out
}

/// IPs or CIDRs from a list setting; each bad entry is a named problem.
fn networks(var: &str, list: &[String], problems: &mut Vec<String>) -> Vec<ipnet::IpNet> {
    let mut out = Vec::new();
    for p in list.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        match p
            .parse::<ipnet::IpNet>()
            .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        {
            Ok(net) => out.push(net),
            Err(_) => problems.push(format!("{var}: `{p}` is not an IP address or CIDR")),
        }
    }
    out
}

fn is_weak(v: &str) -> bool {
    let l = v.to_ascii_lowercase();
    [
        "changeme",
        "change-me",
        "secret",
        "default",
        "example",
        "password",
        "your-",
    ]
    .iter()
    .any(|w| l.contains(w))
        || v.chars().collect::<std::collections::BTreeSet<_>>().len() < 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_redis_needs_tls_and_a_password() {
        for bad in [
            "redis://cache.example.com:6379",
            "redis://:pw@10.0.0.7:6379",
            "rediss://cache.example.com:6380",
        ] {
            assert!(redis_without_tls(bad), "{bad}");
        }
        for ok in [
            "rediss://:pw@cache.example.com:6380",
            "redis://127.0.0.1:6379",
            "redis://localhost",
            "rediss://[::1]:6380",
        ] {
            assert!(!redis_without_tls(ok), "{ok}");
        }
    }

    #[test]
    fn remote_postgres_needs_verified_tls() {
        for bad in [
            "postgres://u:p@db.example.com/truxe",
            "postgres://u:p@10.0.0.5:5432/truxe?sslmode=require",
            "postgresql://u@[2001:db8::1]/t?sslmode=prefer",
        ] {
            assert!(postgres_without_verified_tls(bad), "{bad}");
        }
        for ok in [
            "postgres://u:p@db.example.com/truxe?sslmode=verify-full&sslrootcert=/ca.pem",
            "postgres://u:p@127.0.0.1:5432/truxe",
            "postgres://u@localhost/truxe",
            "postgresql://u@[::1]/t",
            "sqlite:///var/lib/truxe/truxe.db",
        ] {
            assert!(!postgres_without_verified_tls(ok), "{ok}");
        }
    }

    #[test]
    fn policy_lists_every_unmet_rule() {
        let p = PasswordPolicy {
            min_length: 10,
            lowercase: true,
            uppercase: true,
            numbers: true,
            symbols: true,
        };
        assert_eq!(p.violations("abc").len(), 4);
        assert!(p.violations("Abcdefgh1!x").is_empty());
        assert!(
            p.violations("ÄbcdefghÖ1!").is_empty(),
            "unicode letters count"
        );
    }

    #[test]
    fn oauth_providers_from_the_environment() {
        let env = |v: &str| {
            match v {
                "TRUXE_OAUTH_GOOGLE_CLIENT_ID" | "TRUXE_OAUTH_CORP_SSO_CLIENT_ID" => Some("cid"),
                "TRUXE_OAUTH_GOOGLE_CLIENT_SECRET" | "TRUXE_OAUTH_CORP_SSO_CLIENT_SECRET" => {
                    Some("cs")
                }
                "TRUXE_OAUTH_CORP_SSO_ISSUER" => Some("http://127.0.0.1:9000/"),
                "TRUXE_OAUTH_CORP_SSO_SCOPES" => Some("openid,email"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let ids = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut problems = Vec::new();
        let p = oauth_providers(&ids(&["google", "corp-sso"]), env, false, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(p[0].name, "Google");
        assert_eq!(
            p[1].kind,
            ProviderKind::Oidc {
                issuer: "http://127.0.0.1:9000".into(),
                multi_tenant: false
            }
        );
        assert_eq!(p[1].scopes, ["openid", "email"]);
        // Production: http issuers are refused; missing settings are named.
        let mut problems = Vec::new();
        oauth_providers(
            &ids(&["corp-sso", "github", "Bad!"]),
            env,
            true,
            &mut problems,
        );
        let all = problems.join("\n");
        assert!(all.contains("not an https:// URL"), "{all}");
        assert!(all.contains("TRUXE_OAUTH_GITHUB_CLIENT_ID"), "{all}");
        assert!(all.contains("`Bad!`"), "{all}");
    }

    #[test]
    fn a_provider_may_call_back_on_the_original_path_only_of_this_server() {
        let with = |uri: &'static str| {
            move |v: &str| {
                match v {
                    "TRUXE_OAUTH_GOOGLE_CLIENT_ID" => Some("cid"),
                    "TRUXE_OAUTH_GOOGLE_CLIENT_SECRET" => Some("cs"),
                    "TRUXE_OAUTH_GOOGLE_REDIRECT_URI" => Some(uri),
                    _ => None,
                }
                .map(str::to_owned)
            }
        };
        let ids = vec!["google".to_owned()];
        for good in [
            "https://id.example.com/auth/oauth/callback/google",
            "https://id.example.com/auth/oauth/google/callback",
        ] {
            let mut problems = Vec::new();
            let p = oauth_providers(&ids, with(good), true, &mut problems);
            assert!(problems.is_empty(), "{good}: {problems:?}");
            assert_eq!(p[0].redirect_uri.as_deref(), Some(good));
        }
        for bad in [
            "https://id.example.com/auth/oauth/callback/github",
            "https://evil.example/steal",
            "http://id.example.com/auth/oauth/callback/google",
            "https://id.example.com/auth/oauth/callback/google?x=1",
            "not a url",
        ] {
            let mut problems = Vec::new();
            oauth_providers(&ids, with(bad), true, &mut problems);
            assert!(
                problems
                    .iter()
                    .any(|p| p.contains("TRUXE_OAUTH_GOOGLE_REDIRECT_URI")),
                "{bad}: {problems:?}"
            );
        }
    }

    #[test]
    fn weak_secrets() {
        assert!(is_weak("changeme-changeme-changeme-changeme"));
        assert!(is_weak(&"a".repeat(40)));
        assert!(!is_weak("8fJ2kq9ZxP0wLm3Tn7Vb4Rc6Yd1Hs5Ge"));
    }
}
