//! `truxe`: the identity service binary.
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Before anything reads the environment, and before any thread starts.
    truxe::config::original::adopt();
    match truxe::cli::run(truxe::cli::Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("truxe: {e:#}");
            ExitCode::from(2)
        }
    }
}
