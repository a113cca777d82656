//! `torua`: the command-line tool (dev cluster, data commands, status, bench).
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = torua::cli::Cli::parse();
    match torua::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("torua: {e:#}");
            ExitCode::from(2)
        }
    }
}
