//! `torua-node`: configured by the original environment variables.
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = torua::config::NodeCli::parse();
    torua::server_main(
        "torua-node",
        cli.config.listen,
        cli.log_json,
        |listener, stop| torua::node::run(cli.config, listener, stop),
    )
}
