//! The `torua` command. This module is the binary's front end: it turns
//! flags into calls and results into output and exit codes.

mod admin;
pub mod certs;
mod data;
mod dev;
mod devlog;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Command-line interface of `torua`.
#[derive(Debug, Parser)]
#[command(
    name = "torua",
    version,
    about = "Torua: a durable sharded key-value store"
)]
pub struct Cli {
    /// Coordinator URL used by data and status commands; several,
    /// comma-separated, to use the first that answers.
    #[arg(
        long,
        global = true,
        env = "TORUA_COORDINATOR",
        default_value = "https://127.0.0.1:8080"
    )]
    pub coordinator: String,
    /// CA bundle to trust for an `https://` coordinator (`torua dev` prints it).
    #[arg(long, global = true, env = "TORUA_CA")]
    pub ca: Option<std::path::PathBuf>,
    /// Credential for the coordinator: a Torua API key or a Truxe access token.
    #[arg(long, global = true, env = "TORUA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// `table` for people (default), `json` for scripts (`status`, `ls`,
    /// `apikey list`, `keys rotate`, `keys status`).
    #[arg(
        long,
        short = 'o',
        global = true,
        env = "TORUA_OUTPUT",
        value_enum,
        default_value = "table"
    )]
    pub output: Output,
    #[command(subcommand)]
    command: Command,
}

pub use edge::cli::Output;

// Parsed once at start-up: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run a local cluster: one coordinator and N nodes on loopback.
    Dev(dev::DevArgs),
    /// Store a value: `torua put KEY VALUE`, or the value from a file or `-` for stdin.
    Put {
        /// Key.
        key: String,
        /// Value (omit with --file).
        value: Option<String>,
        /// Read the value from this file (`-` is stdin).
        #[arg(long, short)]
        file: Option<std::path::PathBuf>,
        /// Content type to store.
        #[arg(long, default_value = "application/octet-stream")]
        content_type: String,
    },
    /// Print a value to stdout.
    Get {
        /// Key.
        key: String,
    },
    /// Delete a key.
    Del {
        /// Key.
        key: String,
    },
    /// List keys in order.
    Ls {
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// At most this many keys (0: all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
    },
    /// Show nodes and shard placement.
    Status {
        /// Refresh every INTERVAL (in place on a terminal) until Ctrl-C.
        #[arg(long, short, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "2s",
              value_parser = crate::config::parse_interval)]
        watch: Option<std::time::Duration>,
    },
    /// Manage Torua API keys (needs `admin`).
    #[command(subcommand)]
    Apikey(admin::ApiKeyCommand),
    /// Read or replace the access policy (needs `admin`).
    #[command(subcommand)]
    Policy(admin::PolicyCommand),
    /// Rotate and inspect encryption keys (needs `admin`).
    #[command(subcommand)]
    Keys(admin::KeysCommand),
    /// How shard copies spread over the nodes; the coordinator rebalances
    /// when nodes join or leave (needs `monitor`). Exit 1 while moving.
    Balance {
        /// Follow the rebalancing to its end, showing how many copies have moved.
        #[arg(long)]
        wait: bool,
    },
    /// Take nodes out of the cluster (needs `admin`).
    #[command(subcommand)]
    Node(admin::NodeCommand),
    /// Make development TLS certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Work with audit logs.
    #[command(subcommand)]
    Audit(admin::AuditCommand),
    #[command(flatten)]
    Reference(edge::cli::Reference),
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// A development CA and certificates for a coordinator, nodes and clients on loopback.
    Init(certs::InitArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Reference(r) = &cli.command {
        // The servers' pages too: a package ships them all.
        r.answer(Cli::command())?;
        if let edge::cli::Reference::Man { dir } = r {
            edge::cli::man_pages(crate::config::CoordinatorCli::command(), dir)?;
            edge::cli::man_pages(crate::config::NodeCli::command(), dir)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let urls = crate::config::parse_urls(&cli.coordinator).map_err(anyhow::Error::msg)?;
    let api = data::Api::new(&urls.0, cli.token.as_deref(), cli.ca.as_deref())?;
    rt.block_on(async move {
        let api = &api;
        match cli.command {
            Command::Dev(args) => dev::run(args).await,
            Command::Put {
                key,
                value,
                file,
                content_type,
            } => data::put(api, &key, value, file, &content_type).await,
            Command::Get { key } => data::get(api, &key).await,
            Command::Del { key } => data::del(api, &key).await,
            Command::Ls { prefix, limit } => data::ls(api, &prefix, limit, cli.output).await,
            Command::Status { watch: None } => data::status(api, cli.output).await,
            Command::Status { watch: Some(every) } => data::watch(api, cli.output, every).await,
            Command::Apikey(cmd) => admin::apikey(api, cmd, cli.output).await,
            Command::Policy(cmd) => admin::policy(api, cmd).await,
            Command::Keys(cmd) => admin::keys(api, cmd, cli.output).await,
            Command::Node(cmd) => admin::node(api, cmd, cli.output).await,
            Command::Balance { wait } => admin::balance(api, wait, cli.output).await,
            Command::Audit(cmd) => admin::audit(cmd),
            Command::Certs(CertsCommand::Init(args)) => certs::init(args),
            // Answered above, before any connection.
            Command::Reference(_) => Ok(ExitCode::SUCCESS),
        }
    })
}
