//! `torua-coordinator`: configured by the original environment variables.
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = torua::config::CoordinatorCli::parse();
    torua::server_main(
        "torua-coordinator",
        cli.config.listen,
        cli.log_json,
        |listener, stop| torua::coordinator::run(cli.config, listener, stop),
    )
}
