//! `torua-coordinator`: configured by the original environment variables.
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "Torua coordinator: membership, placement and the client API"
)]
struct Cli {
    #[command(flatten)]
    config: torua::config::CoordinatorConfig,
    /// Log JSON lines instead of human-readable text.
    #[arg(long, env = "TORUA_LOG_JSON")]
    log_json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    torua::server_main(
        "torua-coordinator",
        cli.config.listen,
        cli.log_json,
        |listener, stop| torua::coordinator::run(cli.config, listener, stop),
    )
}
