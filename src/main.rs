//! The `switchboard` binary: serves the app, or (`simulate`) feeds a running one demo data.

use std::process::ExitCode;

use clap::Parser;
use switchboard::server::config::{Cli, Command};
use switchboard::server::{shutdown_signal, Server};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let server = match Server::bind(cli.serve).await {
                Ok(server) => server,
                Err(error) => {
                    tracing::error!("{error}");
                    return ExitCode::FAILURE;
                }
            };
            tracing::info!("listening on {}://{}", server.scheme(), server.local_addr());
            if let Some(redirect) = server.redirect_addr() {
                tracing::info!("redirecting http://{redirect} to HTTPS");
            }
            if let Err(error) = server.serve(shutdown_signal()).await {
                tracing::error!("{error}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Command::Simulate(args) => match switchboard::server::simulate::run(args, shutdown_signal()).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("switchboard simulate: {error}");
                ExitCode::FAILURE
            }
        },
    }
}
