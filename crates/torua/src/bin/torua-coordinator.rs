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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    torua::init_tracing(cli.log_json);
    let (trigger, shutdown) = torua::shutdown::channel();
    tokio::spawn(async move {
        torua::shutdown::os_signal().await;
        trigger.fire();
    });
    let result = async {
        let listener = torua::bind(cli.config.listen).await?;
        torua::coordinator::run(cli.config, listener, shutdown).await
    };
    match result.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("torua-coordinator: {e}");
            ExitCode::from(2)
        }
    }
}
