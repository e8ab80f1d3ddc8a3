//! `switchboard-bench-ingest`: how many sensor readings a running server takes in and makes
//! durable per second, over its public HTTP API (see `run`). `tools/ingest-bench.sh` starts a
//! throwaway server and runs it; `make bench-ingest` runs that.

mod args;
mod run;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = args::BenchIngestArgs::parse();
    match run::run(args).await {
        Ok(outcomes) if outcomes.iter().all(|o| o.errors == 0 && o.stored == o.acknowledged) => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!("switchboard-bench-ingest: requests failed, or stored counts differ from acknowledged ones");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("switchboard-bench-ingest: {error}");
            ExitCode::FAILURE
        }
    }
}
