//! `torua-node`: configured by the original environment variables.
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(version, about = "Torua storage node")]
struct Cli {
    #[command(flatten)]
    config: torua::config::NodeConfig,
    /// Log JSON lines instead of human-readable text.
    #[arg(long, env = "TORUA_LOG_JSON")]
    log_json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    torua::server_main(
        "torua-node",
        cli.config.listen,
        cli.log_json,
        |listener, stop| torua::node::run(cli.config, listener, stop),
    )
}
