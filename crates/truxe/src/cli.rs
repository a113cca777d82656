//! The `truxe` command: turns flags into calls and results into output.

use std::io::BufRead;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use secure::audit::{AuditEvent, Outcome};
use secure::envelope::Envelope;
use secure::keystore::KeyStore;
use secure::password::PasswordHasher;
use secure::Secret;

use crate::config::{Config, RawConfig};
use crate::http::cookies::CookieConfig;
use crate::http::{now, App, Metrics};
use crate::repo::{SqlStore, Store};
use crate::service::mail::{DevMailbox, Mailer, NoMailer, ResendMailer, SmtpMailer};
use crate::service::{AuthService, ClientInfo, KeyManager, Vaults};
use sha2::Digest;

/// Command line of `truxe`.
#[derive(Debug, Parser)]
#[command(name = "truxe", version, about = "Truxe identity service")]
pub struct Cli {
    #[command(flatten)]
    config: RawConfig,
    /// `table` for people (default), `json` for scripts (`keys list`,
    /// `keys rotate-encryption`).
    #[arg(
        long,
        short = 'o',
        global = true,
        env = "TRUXE_OUTPUT",
        value_enum,
        default_value = "table"
    )]
    output: edge::cli::Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Copy users, organizations and webhooks from another system.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Validate the configuration and exit (non-zero with reasons if invalid).
    CheckConfig,
    #[command(flatten)]
    Reference(edge::cli::Reference),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Add a key: published at once, signing after the next `rotate` (or
    /// at once if there is no key yet).
    Generate,
    /// List keys and their states.
    List,
    /// Make the newest pending key (or a new one) sign; the old one retires
    /// once every token it signed has expired.
    Rotate,
    /// Stop publishing a key now (e.g. if it leaked).
    Retire {
        /// Key id. Ids are base64url and may start with `-`, so a value
        /// starting with one is taken as the id, not as a flag.
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// Re-seal stored secrets (TOTP and webhook secrets, provider tokens)
    /// that are not under the current MFA_ENCRYPTION_KEY /
    /// OAUTH_TOKEN_ENCRYPTION_KEY; safe while servers run.
    RotateEncryption {
        /// Only count values per key id.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// From the original (Node) Truxe's PostgreSQL database: users with
    /// their password hashes, verification and TOTP secrets,
    /// organizations, memberships and roles, linked social accounts and
    /// webhook endpoints. Ids are kept and nothing present is overwritten,
    /// so it can run again (or on after an interruption).
    #[command(name = "truxe-v1")]
    TruxeV1 {
        /// The original's database (`postgres://…`); only read.
        #[arg(long, env = "TRUXE_V1_DATABASE_URL")]
        from: String,
        /// Read and check everything, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// File holding the original's MFA_ENCRYPTION_KEY, to open its
        /// TOTP secrets. Default: TRUXE_V1_MFA_ENCRYPTION_KEY, else this
        /// Truxe's MFA_ENCRYPTION_KEY (the same variable name).
        #[arg(long)]
        v1_mfa_key_file: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user; the password is read from the first line of stdin.
    Create {
        /// Email address.
        #[arg(long)]
        email: String,
        /// Give the user the admin role.
        #[arg(long)]
        admin: bool,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Needs no configuration.
    if let Command::Reference(r) = &cli.command {
        r.answer(<Cli as clap::CommandFactory>::command())?;
        return Ok(ExitCode::SUCCESS);
    }
    // What production mode would refuse of these settings, for the
    // banner of a development server (`serve` only).
    let production_refuses = match cli.config.env.as_deref() {
        _ if !matches!(cli.command, Command::Serve) => None,
        Some("production") => None,
        _ => Config::from_raw(RawConfig {
            env: Some("production".into()),
            ..cli.config.clone()
        })
        .err(),
    };
    let output = cli.output;
    let cfg = match Config::from_raw(cli.config) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("truxe: invalid configuration:\n{problems}");
            return Ok(ExitCode::from(2));
        }
    };
    init_tracing(cfg.log_json);
    // The original Truxe's names that were set and are not used, once each.
    for r in crate::config::original::report() {
        if !matches!(r.outcome, crate::config::original::Outcome::Read { .. }) {
            tracing::warn!("{}", crate::config::original::describe(r));
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Serve => serve(cfg, production_refuses).await,
            Command::Migrate => {
                open_store(&cfg).await?;
                println!("database is up to date");
                Ok(ExitCode::SUCCESS)
            }
            Command::CheckConfig => {
                // Read only: a check writes no key.
                let key = KeyManager::check(&cfg).context("signing keys")?;
                // The original Truxe's names that were set, and what became of them.
                for r in crate::config::original::report() {
                    println!("{}", crate::config::original::describe(r));
                }
                println!(
                    "configuration is valid (database {}, issuer {}, signing key {})",
                    redact_url(&cfg.database_url),
                    cfg.issuer,
                    key
                );
                Ok(ExitCode::SUCCESS)
            }
            // Sealed secrets, not signing keys: no key store involved.
            Command::Keys(KeysCommand::RotateEncryption { dry_run }) => {
                rotate_encryption(&cfg, dry_run, output).await
            }
            Command::Keys(k) => keys(&cfg, k, output).await,
            Command::Import(ImportCommand::TruxeV1 {
                from,
                dry_run,
                v1_mfa_key_file,
            }) => import_truxe_v1(&cfg, &from, dry_run, v1_mfa_key_file, output).await,
            // Answered above, before the configuration is read.
            Command::Reference(_) => Ok(ExitCode::SUCCESS),
            Command::User(UserCommand::Create { email, admin }) => {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                let password = Secret::new(line.trim_end_matches(['\n', '\r']).to_owned());
                let auth = service(&cfg, mailer(&cfg)?.0).await?;
                let ctx = ClientInfo::default();
                let user = auth
                    .create_user(&email, password, serde_json::json!({}), admin, now())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let e = auth
                    .event("user_created", Outcome::Success, &ctx, now())
                    .actor("cli")
                    .target(&user.id);
                auth.record(e.details(serde_json::json!({"admin": admin})))
                    .await;
                println!(
                    "created user {} ({}){}",
                    user.email,
                    user.id,
                    if admin { " with the admin role" } else { "" }
                );
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn".into());
    let colour = edge::cli::colour_on(&std::io::stderr());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let _ = if json {
        b.json().try_init()
    } else {
        b.try_init()
    };
}

/// Hides credentials in a database URL.
fn redact_url(url: &str) -> String {
    match url
        .split_once("://")
        .and_then(|(scheme, rest)| rest.split_once('@').map(|(_, host)| (scheme, host)))
    {
        Some((scheme, host)) => format!("{scheme}://…@{host}"),
        None => url.to_owned(),
    }
}

/// The SQLite file of the configuration, if it uses one.
fn sqlite_path(cfg: &Config) -> Option<&std::path::Path> {
    cfg.database_url
        .strip_prefix("sqlite://")
        .map(|p| std::path::Path::new(p.split('?').next().unwrap_or(p)))
}

/// One server per SQLite file: a server keeps the sessions and users of
/// verified requests in memory (`repo::sql::principals`) and hears only of
/// its own writes, so a second server on the same file could revoke a
/// session the first would go on accepting. Held until the process exits.
fn lock_sqlite(cfg: &Config) -> anyhow::Result<Option<std::fs::File>> {
    let Some(db) = sqlite_path(cfg) else {
        return Ok(None);
    };
    let path = db.with_extension("serve-lock");
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another `truxe serve` is using {}: SQLite serves one instance (each keeps sessions in memory); run several instances on PostgreSQL",
            db.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

async fn open_store(cfg: &Config) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(path) = sqlite_path(cfg) {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        // Credentials live here: create the file owner-only; SQLite gives its
        // -wal and -shm files the same mode.
        if !path.exists() {
            secure::keystore::write_private(path, b"")?;
        }
    }
    let store = SqlStore::open(&cfg.database_url)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Arc::new(store))
}

/// SMTP when `SMTP_HOST` is set; the development mailbox (readable at
/// `/dev/mailbox` from loopback) when `TRUXE_DEV_MAILBOX` is on; otherwise
/// no mail. The mailer, and the mailbox when mail is kept locally.
type Outgoing = (Arc<dyn Mailer>, Option<Arc<DevMailbox>>);

fn mailer(cfg: &Config) -> anyhow::Result<Outgoing> {
    if let Some(resend) = &cfg.resend {
        return Ok((
            Arc::new(ResendMailer::new(resend).map_err(anyhow::Error::msg)?),
            None,
        ));
    }
    if let Some(smtp) = &cfg.smtp {
        return Ok((
            Arc::new(SmtpMailer::new(smtp).map_err(anyhow::Error::msg)?),
            None,
        ));
    }
    if cfg.dev_mailbox {
        tracing::warn!("TRUXE_DEV_MAILBOX is on: mail is kept locally and shown at /dev/mailbox to loopback clients; development only");
        let mailbox = Arc::new(DevMailbox::new(cfg.data_dir.join("mailbox.jsonl")));
        return Ok((mailbox.clone(), Some(mailbox)));
    }
    tracing::warn!("SMTP_HOST is not set: emailed flows (reset, verification, magic links) are unavailable (TRUXE_DEV_MAILBOX=on keeps mail locally in development)");
    Ok((Arc::new(NoMailer), None))
}

async fn service(cfg: &Config, mailer: Arc<dyn Mailer>) -> anyhow::Result<AuthService> {
    let store = open_store(cfg).await?;
    let keys = Arc::new(KeyManager::load(cfg).context("signing keys")?);
    let hasher = PasswordHasher::new(cfg.cost, cfg.hash_concurrency)?;
    Ok(AuthService::new(
        store,
        hasher,
        keys,
        vaults(cfg)?,
        Arc::new(crate::oauth::Providers::new(&cfg.oauth_providers).context("OAuth HTTP client")?),
        mailer,
        cfg.clone(),
    ))
}

/// The two vaults: `MFA_ENCRYPTION_KEY` and `OAUTH_TOKEN_ENCRYPTION_KEY`
/// (each with its `…_PREVIOUS` keys), or in development random keys kept
/// in the key directory (0600), created on first use. Production refuses
/// to start without the MFA key, and without the OAuth key when providers
/// are configured.
fn vaults(cfg: &Config) -> anyhow::Result<Vaults> {
    let (mfa, _) = envelope(
        cfg,
        &cfg.mfa_key,
        &cfg.mfa_key_previous,
        cfg.mfa_key_file(),
        "MFA_ENCRYPTION_KEY",
    )?;
    let (oauth, oauth_key) = envelope(
        cfg,
        &cfg.oauth_key,
        &cfg.oauth_key_previous,
        cfg.oauth_key_file(),
        "OAUTH_TOKEN_ENCRYPTION_KEY",
    )?;
    // The state HMAC key is derived from the OAuth key, so every instance
    // sharing that key accepts the others' states.
    let state_key =
        sha2::Sha256::digest([b"truxe-oauth-state-key:".as_slice(), &oauth_key].concat());
    Ok(Vaults {
        mfa,
        oauth,
        state_key: Secret::new(state_key.to_vec()),
    })
}

fn envelope(
    cfg: &Config,
    current: &Option<Secret<String>>,
    previous: &[Secret<String>],
    dev_file: std::path::PathBuf,
    var: &str,
) -> anyhow::Result<(Envelope, [u8; 32])> {
    let key = match current {
        Some(k) => secure::envelope::derive_key(k.expose())?,
        // Production without the key: configuration guarantees nothing
        // needs it (no providers), so no key file is made either.
        None if cfg.production => secure::envelope::generate_key(),
        None => {
            let text = match std::fs::read_to_string(&dev_file) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let fresh = secure::token::generate("").plaintext;
                    std::fs::create_dir_all(cfg.keys_dir())?;
                    secure::keystore::write_private(&dev_file, fresh.expose().as_bytes())?;
                    tracing::info!(path = %dev_file.display(), "created a development key; set {var} in production");
                    fresh.expose().clone()
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}", dev_file.display())),
            };
            secure::envelope::derive_key(text.trim())?
        }
    };
    let older = previous
        .iter()
        .map(|k| secure::envelope::derive_key(k.expose()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((Envelope::new(key, &older), key))
}

/// The CSRF HMAC key: `COOKIE_SECRET`, or in development a random key per
/// process (cookie sessions then end at restart). Production requires it.
fn cookie_key(cfg: &Config) -> Vec<u8> {
    match &cfg.cookie_secret {
        Some(s) => s.expose().as_bytes().to_vec(),
        None => secure::token::generate("")
            .plaintext
            .expose()
            .as_bytes()
            .to_vec(),
    }
}

async fn serve(cfg: Config, production_refuses: Option<String>) -> anyhow::Result<ExitCode> {
    let _only_server = lock_sqlite(&cfg)?;
    let (mail, mailbox) = mailer(&cfg)?;
    let auth = Arc::new(service(&cfg, mail).await?);
    tokio::spawn(auth.clone().watch_keys(Duration::from_secs(2)));
    tokio::spawn(
        auth.clone()
            .purge_sessions_every(cfg.session_purge_interval),
    );
    let dispatcher = crate::webhook::Dispatcher::new(auth.clone(), cfg.webhooks.clone())
        .context("webhook HTTP client")?;
    tokio::spawn(Arc::new(dispatcher).run());
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    tracing::info!(listen = %cfg.listen, https = cfg.tls.is_some(), issuer = %cfg.issuer, database = %redact_url(&cfg.database_url),
        production = cfg.production, "truxe started");
    if !cfg.production {
        tracing::warn!("development mode: set TRUXE_ENV=production to enforce strong secrets");
    }
    print_banner(&cfg, production_refuses.as_deref());
    let app = App {
        auth,
        metrics: Metrics::new(),
        metrics_token: cfg.metrics_token.clone().map(Arc::new),
        issuer: cfg.issuer.clone(),
        algorithm: cfg.algorithm.as_str(),
        limiter: match &cfg.redis_url {
            Some(url) => crate::http::ratelimit::Limiter::shared(Arc::new(
                crate::repo::RedisRateLimitStore::connect(url.expose(), cfg.redis_ca.as_deref())
                    .await
                    .map_err(anyhow::Error::msg)?,
            )),
            None => crate::http::ratelimit::Limiter::in_memory(),
        },
        limits: cfg.limits,
        key_tiers: Arc::new(
            crate::service::RATE_TIERS
                .iter()
                .map(|(tier, q)| q.parse().map(|q| (*tier, q)))
                .collect::<Result<_, secure::Error>>()?,
        ),
        mailbox,
        production: cfg.production,
        cors: cfg.cors.clone(),
        trusted_proxies: Arc::new(cfg.trusted_proxies.clone()),
        cookies: Arc::new(CookieConfig {
            key: cookie_key(&cfg),
            secure: cfg.production,
            refresh_ttl: cfg.refresh_ttl.as_secs(),
        }),
    };
    let tls = match &cfg.tls {
        Some((cert, key)) => Some(edge::FileTls::open(cert, key).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let stop = shutdown_signal(cfg.exit_with_parent);
    crate::http::serve(listener, app, tls, cfg.max_connections, stop).await?;
    tracing::info!("truxe stopped");
    Ok(ExitCode::SUCCESS)
}

/// What a user starting `truxe serve` reads first: where it serves, on
/// what, where its keys are, and what production mode would refuse.
fn print_banner(cfg: &Config, production_refuses: Option<&str>) {
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let mode = if cfg.production {
        "production"
    } else {
        "development"
    };
    let mail = match (&cfg.smtp, &cfg.resend, cfg.dev_mailbox) {
        (Some(_), _, _) => "SMTP".to_owned(),
        (None, Some(_), _) => "Resend's HTTP API".to_owned(),
        (None, None, true) => "kept locally, shown at /dev/mailbox to loopback clients".to_owned(),
        (None, None, false) => {
            "none (emailed flows are off; set SMTP_HOST or EMAIL_PROVIDER=resend)".to_owned()
        }
    };
    let keys = match (&cfg.private_key_file, &cfg.private_key_pem) {
        (Some(path), _) => format!("fixed, {}", path.display()),
        (None, Some(_)) => "fixed, from JWT_PRIVATE_KEY(_BASE64)".to_owned(),
        (None, None) => cfg.keys_dir().display().to_string(),
    };
    let mut b = format!(
        "\nTruxe is serving on {scheme}://{} ({mode} mode)\n  issuer    {}\n  database  {}\n  keys      {keys}\n  mail      {mail}\n  JWKS      {scheme}://{}/.well-known/jwks.json\n",
        cfg.listen,
        cfg.issuer,
        redact_url(&cfg.database_url),
        cfg.listen,
    );
    match production_refuses {
        Some(problems) => {
            b.push_str("Production mode (TRUXE_ENV=production) would refuse to start with these settings:\n");
            for p in problems.lines() {
                b.push_str(&format!("  - {p}\n"));
            }
        }
        None if !cfg.production => {
            b.push_str("These settings would also pass production mode's checks.\n")
        }
        None => {}
    }
    println!("{b}");
}

/// Ctrl-C, SIGTERM, or (with `exit_with_parent`) the parent's exit.
async fn shutdown_signal(exit_with_parent: bool) {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            () = parent_gone(), if exit_with_parent => {
                tracing::warn!("the process that started truxe has exited; stopping");
            }
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Resolves once the parent process has exited. An orphan is adopted (by
/// init or a subreaper), so its parent id changes; a parent killed with
/// SIGKILL gets no chance to stop its children, so the child watches.
#[cfg(unix)]
async fn parent_gone() {
    let parent = std::os::unix::process::parent_id();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    while std::os::unix::process::parent_id() == parent {
        tick.tick().await;
    }
}

/// `keys rotate-encryption`: one line per sealed column; non-zero exit if
/// any value did not open.
async fn rotate_encryption(
    cfg: &Config,
    dry_run: bool,
    output: edge::cli::Output,
) -> anyhow::Result<ExitCode> {
    let auth = service(cfg, Arc::new(NoMailer)).await?;
    let bar = edge::cli::Progress::new();
    let what = if dry_run {
        "counting sealed values"
    } else {
        "re-sealing secrets"
    };
    let reports = auth
        .rotate_encryption(dry_run, &|done, total| bar.update(what, done, total))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let took = bar.finish();
    let failed: u64 = reports.iter().map(|r| r.failed).sum();
    if output == edge::cli::Output::Json {
        println!(
            "{}",
            serde_json::json!({ "dry_run": dry_run, "columns": reports })
        );
    } else {
        println!(
            "{:<40} {:>8} {:>9} {:>8} {:>7}  BY KEY",
            "COLUMN", "CURRENT", "RESEALED", "CHANGED", "FAILED"
        );
        for r in &reports {
            let keys: Vec<String> = r.by_key.iter().map(|(k, n)| format!("{k}:{n}")).collect();
            println!(
                "{:<40} {:>8} {:>9} {:>8} {:>7}  {}",
                r.column,
                r.current,
                r.resealed,
                r.raced,
                r.failed,
                keys.join(" ")
            );
        }
        let resealed: u64 = reports.iter().map(|r| r.resealed).sum();
        println!(
            "{} {resealed} value(s) in {} column(s); {failed} failed ({:.1} s)",
            if dry_run { "would reseal" } else { "resealed" },
            reports.len(),
            took.as_secs_f64()
        );
    }
    if !dry_run {
        let e = AuditEvent::new("encryption_rotated", Outcome::Success, now() * 1000)
            .actor("cli")
            .details(serde_json::json!({"columns": reports}));
        auth.record(e).await;
    }
    if failed > 0 {
        eprintln!("truxe: {failed} value(s) did not open: configure the key they were sealed with in …_PREVIOUS");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `import truxe-v1`: progress on stderr, the report on stdout; audited.
async fn import_truxe_v1(
    cfg: &Config,
    from: &str,
    dry_run: bool,
    key_file: Option<std::path::PathBuf>,
    output: edge::cli::Output,
) -> anyhow::Result<ExitCode> {
    let v1_mfa_key = match key_file {
        Some(path) => Some(Secret::new(
            std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim()
                .to_owned(),
        )),
        None => std::env::var("TRUXE_V1_MFA_ENCRYPTION_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .map(Secret::new)
            .or_else(|| cfg.mfa_key.clone()),
    };
    let auth = service(cfg, Arc::new(NoMailer)).await?;
    let src = crate::repo::truxe_v1::V1Source::connect(from)
        .await
        .with_context(|| format!("connecting to {}", redact_url(from)))?;
    let bar = edge::cli::Progress::new();
    let opts = crate::service::ImportOptions {
        dry_run,
        v1_mfa_key,
    };
    let report = auth
        .import_truxe_v1(&src, &opts, &|p| bar.update(p.kind, p.done, p.total), now())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let took = bar.finish();
    if output == edge::cli::Output::Json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{:<20} {:>8} {:>9} {:>8} {:>8}",
            "KIND", "FOUND", "IMPORTED", "PRESENT", "SKIPPED"
        );
        for k in &report.kinds {
            println!(
                "{:<20} {:>8} {:>9} {:>8} {:>8}",
                k.kind, k.found, k.imported, k.present, k.skipped
            );
        }
        if !report.problems.is_empty() {
            println!();
            for p in &report.problems {
                println!("{:<8} {} {}: {}", p.outcome, p.kind, p.id, p.reason);
            }
            if report.more_problems > 0 {
                println!("… and {} more", report.more_problems);
            }
        }
        let imported: u64 = report.kinds.iter().map(|k| k.imported).sum();
        let present: u64 = report.kinds.iter().map(|k| k.present).sum();
        println!(
            "{} {imported} row(s), {present} already here, {} left out, in {:.1}s{}",
            if dry_run { "would import" } else { "imported" },
            report.skipped(),
            took.as_secs_f64(),
            if dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        );
    }
    if !dry_run {
        let e = AuditEvent::new("import_completed", Outcome::Success, now() * 1000)
            .actor("cli")
            .details(serde_json::json!({"source": "truxe-v1", "kinds": report.kinds}));
        auth.record(e).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Key commands act on the key store; each change is also audited.
async fn keys(
    cfg: &Config,
    cmd: KeysCommand,
    output: edge::cli::Output,
) -> anyhow::Result<ExitCode> {
    if cfg.private_key_file.is_some() || cfg.private_key_pem.is_some() {
        bail!("a fixed signing key is set (JWT_PRIVATE_KEY_FILE, JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_BASE64); unset it to use managed, rotating keys");
    }
    let store = KeyStore::new(cfg.keys_dir());
    let audit = open_store(cfg).await?;
    let record = |action: &str, kid: &str| {
        let mut e = AuditEvent::new(action, Outcome::Success, now() * 1000)
            .actor("cli")
            .target(kid);
        e.details = serde_json::json!({"alg": cfg.algorithm.as_str()});
        e
    };
    let t = now() as u64;
    match cmd {
        KeysCommand::Generate => {
            let e = store.generate(cfg.algorithm, t)?;
            audit.record(&record("key_generated", &e.kid)).await?;
            println!("generated {} key {} ({:?})", e.alg, e.kid, e.state);
        }
        KeysCommand::Rotate => {
            let (old, new) = store.rotate(cfg.algorithm, t)?;
            audit.record(&record("key_rotated", &new)).await?;
            println!("key {new} signs from now on");
            if let Some(old) = old {
                println!(
                    "key {old} is retiring: published until its tokens expire ({}s)",
                    cfg.access_ttl.as_secs() + 60
                );
            }
        }
        KeysCommand::Retire { kid } => {
            store.retire(&kid)?;
            audit.record(&record("key_retired", &kid)).await?;
            println!("key {kid} retired: tokens it signed are no longer accepted");
        }
        KeysCommand::RotateEncryption { dry_run } => {
            return rotate_encryption(cfg, dry_run, output).await
        }
        KeysCommand::List if output == edge::cli::Output::Json => {
            let list: Vec<_> = store
                .entries()?
                .into_iter()
                .map(|e| {
                    serde_json::json!({
                        "kid": e.kid,
                        "alg": e.alg,
                        "state": format!("{:?}", e.state).to_lowercase(),
                        "created_at": crate::model::rfc3339(e.created_at as i64),
                        "retiring_since": e.retiring_since.map(|s| crate::model::rfc3339(s as i64)),
                    })
                })
                .collect();
            println!("{}", serde_json::json!({ "keys": list }));
        }
        KeysCommand::List => {
            println!(
                "{:<44} {:<6} {:<9} {:<21} RETIRING SINCE",
                "KID", "ALG", "STATE", "CREATED"
            );
            for e in store.entries()? {
                let since = e
                    .retiring_since
                    .map(|s| crate::model::rfc3339(s as i64))
                    .unwrap_or_default();
                println!(
                    "{:<44} {:<6} {:<9} {:<21} {since}",
                    e.kid,
                    e.alg,
                    format!("{:?}", e.state).to_lowercase(),
                    crate::model::rfc3339(e.created_at as i64)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
