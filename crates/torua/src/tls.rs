//! TLS on Torua's listeners and clients, over `secure::tls`.
//!
//! * [`Tls`] holds a process's certificate, key and CA bundle, reloads them
//!   when the files change (checked every [`RELOAD_EVERY`]) and exports
//!   `torua_tls_expiry_seconds`; a certificate close to expiry is logged.
//! * [`incoming`] is the listener every server uses ([`edge::Incoming`]):
//!   it accepts TCP, runs TLS handshakes off the accept path, capped (a
//!   slow client cannot hold up others), and gives each connection a
//!   [`Peer`]: its address and, when it presented a certificate from the
//!   cluster CA, its identity.
//! * [`HttpClient`] builds reqwest clients that present this process's
//!   certificate and trust only the cluster CA, rebuilt after a reload.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use secure::tls::{ClientAuth, Loaded, TlsFiles};
use tokio::net::TcpListener;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::config::TlsConfig;
use crate::http::{ApiError, Metrics};
use crate::shutdown::Shutdown;
use crate::Error;

/// Certificate common name of the coordinator; the node API answers only it.
pub const COORDINATOR_IDENTITY: &str = "coordinator";
/// Prefix of a node's certificate common name (`node:<NODE_ID>`).
pub const NODE_IDENTITY_PREFIX: &str = "node:";

/// How often certificate files are checked for replacement.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);
/// Certificates expiring within this are logged as warnings.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86_400);
/// How often an approaching expiry is logged again.
const EXPIRY_REMINDER: Duration = Duration::from_secs(3600);

/// Labels of the expiry gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExpiryLabels {
    /// `cert` or `ca`.
    file: String,
}

/// A process's TLS identity, reloaded when its files change.
pub struct Tls {
    files: TlsFiles,
    auth: ClientAuth,
    current: RwLock<Loaded>,
    generation: AtomicU64,
    expiry: Family<ExpiryLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

fn seconds_left(t: SystemTime) -> f64 {
    match t.duration_since(SystemTime::now()) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

impl Tls {
    /// Loads the configured files; `None` (and a warning) when TLS is off.
    /// `who` names the server in messages.
    pub fn open(cfg: &TlsConfig, auth: ClientAuth, who: &str) -> Result<Option<Arc<Tls>>, Error> {
        if !cfg.enabled {
            tracing::warn!("TORUA_TLS=off: the {who} speaks plain HTTP; credentials and data cross the network in clear text");
            return Ok(None);
        }
        let (Some(cert), Some(key), Some(ca)) = (&cfg.cert, &cfg.key, &cfg.ca) else {
            return Err(Error::Config(
                "TORUA_TLS_CERT, TORUA_TLS_KEY and TORUA_TLS_CA are required (TLS is on by default); \
                 `torua certs init` makes a development set, or set TORUA_TLS=off for plain HTTP"
                    .into(),
            ));
        };
        let files = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
        };
        let loaded =
            secure::tls::load(&files, auth).map_err(|e| Error::Config(format!("TLS: {e}")))?;
        tracing::info!(identity = %loaded.identity, cert = %files.cert.display(), "TLS configured");
        let tls = Arc::new(Tls {
            files,
            auth,
            current: RwLock::new(loaded),
            generation: AtomicU64::new(0),
            expiry: Family::default(),
        });
        tls.report_expiry(true);
        Ok(Some(tls))
    }

    /// The configs in force.
    pub fn loaded(&self) -> Loaded {
        match self.current.read() {
            Ok(l) => l.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Bumped on every reload, so clients know to rebuild.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn report_expiry(&self, log: bool) {
        let l = self.loaded();
        for (file, until) in [("cert", l.cert_not_after), ("ca", l.ca_not_after)] {
            let left = seconds_left(until);
            self.expiry
                .get_or_create(&ExpiryLabels { file: file.into() })
                .set(left);
            if log && left < EXPIRY_WARNING.as_secs_f64() {
                tracing::warn!(
                    file,
                    days_left = (left / 86_400.0).floor(),
                    path = %if file == "cert" { &self.files.cert } else { &self.files.ca }.display(),
                    "TLS certificate expires soon (or has expired); replace the file, it is reloaded without a restart"
                );
            }
        }
    }

    /// Reloads if the files changed; a failed reload keeps the old configs.
    fn reload_if_changed(&self) {
        if self.files.stamp() == self.loaded().stamp {
            return;
        }
        match secure::tls::load(&self.files, self.auth) {
            Ok(next) => {
                tracing::info!(identity = %next.identity, "TLS certificate, key or CA reloaded");
                match self.current.write() {
                    Ok(mut g) => *g = next,
                    Err(p) => *p.into_inner() = next,
                }
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.report_expiry(true);
            }
            Err(e) => {
                // Files are often replaced one at a time: retried next tick.
                tracing::warn!(error = %e, "TLS files changed but do not load; keeping the previous ones");
                if let Ok(mut g) = self.current.write() {
                    g.stamp = self.files.stamp();
                }
            }
        }
    }

    /// Registers the expiry gauge and watches the files until `shutdown`.
    pub fn watch(self: &Arc<Self>, metrics: &Metrics, shutdown: Shutdown) {
        if let Ok(mut reg) = metrics.registry.lock() {
            reg.register(
                "tls_expiry_seconds",
                "Seconds until the TLS certificate (file=cert) or the first CA of the bundle (file=ca) expires",
                self.expiry.clone(),
            );
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut last_reminder = std::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(RELOAD_EVERY) => {}
                    _ = shutdown.clone().wait() => return,
                }
                me.reload_if_changed();
                let remind = last_reminder.elapsed() >= EXPIRY_REMINDER;
                if remind {
                    last_reminder = std::time::Instant::now();
                }
                me.report_expiry(remind);
            }
        });
    }
}

pub use edge::Peer;

impl edge::TlsSource for Tls {
    fn server_config(&self) -> Arc<tokio_rustls::rustls::ServerConfig> {
        self.loaded().server
    }
}

/// The listener of every Torua server: [`edge::Incoming`] under `limits`,
/// with this process's TLS identity when TLS is on.
pub fn incoming(
    tcp: TcpListener,
    tls: Option<Arc<Tls>>,
    limits: edge::Limits,
) -> io::Result<edge::Incoming> {
    edge::Incoming::new(tcp, tls.map(|t| t as Arc<dyn edge::TlsSource>), limits)
}

/// reqwest clients for cluster-internal calls: present this process's
/// certificate, trust only the cluster CA (and, pinned, only one identity
/// of it), and follow reloads.
#[derive(Clone)]
pub struct HttpClient {
    tls: Option<Arc<Tls>>,
    /// The certificate identity a server must present, if pinned.
    pin: Option<Arc<str>>,
    configure: fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    built: Arc<RwLock<(u64, reqwest::Client)>>,
}

impl HttpClient {
    /// A client shaped by `configure` (timeouts, pools) with this TLS identity.
    pub fn new(
        tls: Option<Arc<Tls>>,
        configure: fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Self {
        Self::with_pin(tls, configure, None)
    }

    /// Like [`HttpClient::new`], accepting only servers whose certificate
    /// has the identity `identity`.
    pub fn pinned(
        tls: Arc<Tls>,
        configure: fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
        identity: String,
    ) -> Self {
        Self::with_pin(Some(tls), configure, Some(identity.into()))
    }

    fn with_pin(
        tls: Option<Arc<Tls>>,
        configure: fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
        pin: Option<Arc<str>>,
    ) -> Self {
        let generation = tls.as_ref().map_or(0, |t| t.generation());
        let client = Self::build(tls.as_deref(), pin.as_deref(), configure);
        HttpClient {
            tls,
            pin,
            configure,
            built: Arc::new(RwLock::new((generation, client))),
        }
    }

    fn build(
        tls: Option<&Tls>,
        pin: Option<&str>,
        configure: fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> reqwest::Client {
        let builder = configure(reqwest::Client::builder());
        let config = tls.map(|t| {
            let loaded = t.loaded();
            match pin {
                None => Ok(loaded.client),
                Some(id) => loaded.pinned_client(id),
            }
        });
        let builder = match config {
            None => builder,
            Some(Ok(c)) => builder.use_preconfigured_tls((*c).clone()),
            // Never unpinned: a client without the cluster CA reaches no node.
            Some(Err(e)) => {
                tracing::error!(error = %e, "pinned TLS client could not be built");
                builder
            }
        };
        builder.build().unwrap_or_else(|e| {
            tracing::error!(error = %e, "HTTP client could not be built; using defaults");
            reqwest::Client::new()
        })
    }

    /// The current client (rebuilt once after each TLS reload).
    pub fn get(&self) -> reqwest::Client {
        let Some(tls) = &self.tls else {
            return self.read().1;
        };
        let generation = tls.generation();
        let (built_at, client) = self.read();
        if built_at == generation {
            return client;
        }
        let fresh = Self::build(Some(tls), self.pin.as_deref(), self.configure);
        if let Ok(mut g) = self.built.write() {
            *g = (generation, fresh.clone());
        }
        fresh
    }

    fn read(&self) -> (u64, reqwest::Client) {
        match self.built.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

fn no_certificate() -> Response {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing_client_certificate",
        "this API needs a client certificate from the cluster CA",
    )
    .into_response()
}

/// Who may call a set of routes when TLS is on: certificates of the
/// cluster CA that `allowed` accepts (`who` and `api` name them in the
/// refusal). With TLS off it lets everything through.
#[derive(Clone, Copy)]
pub(crate) struct CertGate {
    pub tls: bool,
    pub allowed: fn(&str) -> bool,
    pub who: &'static str,
    pub api: &'static str,
}

impl CertGate {
    /// Only the coordinator's certificate (every coordinator has it).
    pub(crate) fn coordinators(tls: bool, api: &'static str) -> CertGate {
        CertGate {
            tls,
            allowed: |id| id == COORDINATOR_IDENTITY,
            who: "coordinators",
            api,
        }
    }

    /// Only nodes' certificates.
    pub(crate) fn nodes(tls: bool, api: &'static str) -> CertGate {
        CertGate {
            tls,
            allowed: |id| id.starts_with(NODE_IDENTITY_PREFIX),
            who: "nodes",
            api,
        }
    }

    /// Any certificate of the cluster CA.
    pub(crate) fn cluster(tls: bool, api: &'static str) -> CertGate {
        CertGate {
            tls,
            allowed: |_| true,
            who: "members of the cluster",
            api,
        }
    }

    /// The refusal of a call from `identity`, if it is refused.
    fn refusal(&self, identity: Option<&str>) -> Option<Response> {
        match (self.tls, identity) {
            (false, _) => None,
            (true, None) => Some(no_certificate()),
            (true, Some(id)) if (self.allowed)(id) => None,
            (true, Some(other)) => Some(
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "only {} may call the {}; this certificate is `{other}`",
                        self.who, self.api
                    ),
                )
                .into_response(),
            ),
        }
    }
}

/// Middleware: lets a call through only past the [`CertGate`].
pub(crate) async fn require_cert(
    axum::extract::State(gate): axum::extract::State<CertGate>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<Peer>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match gate.refusal(peer.identity.as_deref()) {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}
