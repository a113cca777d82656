//! Torua: a durable, sharded key-value store behind the original Torua HTTP API.
//!
//! # Brief overview
//!
//! * [`coordinator`] — membership, placement and the client API: routes each
//!   `/data/{key}` request to the node owning the key's shard, detects failed
//!   nodes, and moves shards (with their data) to keep them balanced.
//! * [`node`] — a storage node serving the shards it holds from
//!   [`torua_store`].
//! * [`placement`] — the key → shard hash and the balancing planner (pure).
//! * [`security`] — authentication (API keys, Truxe tokens), role-based
//!   access on key prefixes, rate limits and the audit log.
//! * [`tls`] — TLS and mutual TLS on every listener and cluster client,
//!   reloaded when the files change.
//! * [`config`] — the original environment variables, validated at start-up.
//! * [`cli`] — the `torua` command: `dev`, `put`/`get`/`del`/`ls`, `status`.
//!
//! Data flow: client → coordinator (`/data/{key}`) → shard = xxh3(key) mod N
//! → owning node (`/shard/{id}/store/{key}`) → redb file of that shard.
//!
//! # Example
//! ```
//! let shard = torua::placement::shard_for_key("user:42", 64);
//! assert!(shard < 64);
//! ```
#![deny(missing_docs)]

// Every request allocates across threads (hyper, openraft, the log's
// writer); glibc's allocator spent about a tenth of a write's CPU in
// `malloc`, `free` and consolidating its arenas (benchmarks.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod cli;
pub mod config;
pub mod coordinator;
pub mod http;
pub mod node;
pub mod persist;
pub mod placement;
pub(crate) mod raft;
pub mod security;
pub mod shutdown;
pub mod stream;
pub mod tls;
pub mod wire;

/// Why a Torua server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: std::net::SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The node's storage failed to open.
    #[error("storage: {0}")]
    Store(#[from] torua_store::StoreError),
    /// The coordinator's metadata could not be read or written.
    #[error("metadata {path}: {message}")]
    Meta {
        /// File involved.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A setting is invalid or contradicts stored state.
    #[error("{0}")]
    Config(String),
    /// The HTTP server failed.
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// The body of a server binary: logging, a runtime, signal handling, the
/// listener; `run` serves until shutdown. Errors print as one line and exit 2.
pub fn server_main<F, Fut>(
    name: &str,
    listen: std::net::SocketAddr,
    log_json: bool,
    run: F,
) -> std::process::ExitCode
where
    F: FnOnce(tokio::net::TcpListener, shutdown::Shutdown) -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    init_tracing(log_json);
    let result = tokio::runtime::Runtime::new()
        .map_err(Error::Serve)
        .and_then(|rt| {
            rt.block_on(async {
                let (trigger, stop) = shutdown::channel();
                tokio::spawn(async move {
                    shutdown::os_signal().await;
                    trigger.fire();
                });
                run(bind(listen).await?, stop).await
            })
        });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Binds a listener, naming the address on failure.
pub async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Installs the log subscriber: human-readable, or JSON lines with `json`.
/// `RUST_LOG` overrides the default: `info`, with openraft at `warn` (at
/// `info` it logs every vote and group start, dozens of lines per shard;
/// Torua logs the group events that matter itself). Colours only on a
/// terminal, and never with `NO_COLOR` set (no-color.org).
pub fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,openraft=warn"));
    let colour = edge::cli::colour_on(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
