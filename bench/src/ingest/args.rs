//! The command line of `switchboard-bench-ingest`.

use clap::Parser;

/// Measure sustained sensor ingest over HTTP against a running (throwaway) server: for each
/// scenario, C keep-alive connections post batches of B readings for a while; then check that
/// every acknowledged reading was stored. `tools/ingest-bench.sh` runs it.
#[derive(Parser, Debug, Clone)]
#[command(name = "switchboard-bench-ingest")]
pub struct BenchIngestArgs {
    /// The running server, as `http://host:port`. It gets a new account and sensors: use a
    /// throwaway one.
    #[arg(long, default_value = "http://127.0.0.1:3000", value_parser = switchboard::server::config::parse_server_url)]
    pub url: String,

    /// Seconds each scenario is measured for, after its warm-up.
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds)]
    pub seconds: f64,

    /// Seconds each scenario runs before it is measured (connections open, caches warm).
    #[arg(long, default_value_t = 1.0, value_parser = parse_warmup)]
    pub warmup: f64,

    /// Scenarios as `BATCHxCONNECTIONS` (readings per request, concurrent connections),
    /// comma-separated; the first is the baseline the others are compared with.
    #[arg(long, value_delimiter = ',', default_value = "1x1,100x4,1000x4,1x32", value_parser = parse_scenario)]
    pub scenarios: Vec<Scenario>,

    /// The server's process id, to report its CPU time per reading (from /proc/<pid>/stat).
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// Clock ticks per second of /proc/<pid>/stat (`getconf CLK_TCK`; 100 on Linux).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub clock_ticks: u64,
}

/// One load shape of `switchboard-bench-ingest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// Readings per request.
    pub batch: usize,
    /// Concurrent keep-alive connections, each posting to a sensor of its own.
    pub connections: usize,
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.batch, self.connections)
    }
}

fn parse_scenario(text: &str) -> Result<Scenario, String> {
    let wrong = || format!("{text:?} is not BATCHxCONNECTIONS, e.g. 100x4");
    let (batch, connections) = text.trim().split_once(['x', 'X']).ok_or_else(wrong)?;
    let batch: usize = batch.trim().parse().map_err(|_| wrong())?;
    let connections: usize = connections.trim().parse().map_err(|_| wrong())?;
    if !(1..=100_000).contains(&batch) {
        return Err("a batch is 1 to 100,000 readings (and at most the server's --sensor-batch-max)".into());
    }
    if !(1..=1024).contains(&connections) {
        return Err("1 to 1,024 connections".into());
    }
    Ok(Scenario { batch, connections })
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs <= 3600.0 => Ok(secs),
        _ => Err(format!("{text:?}: more than 0 and at most 3600 seconds")),
    }
}

fn parse_warmup(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..=600.0).contains(&secs) => Ok(secs),
        _ => Err(format!("{text:?}: 0 to 600 seconds")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn bench_ingest_scenarios_are_read_as_batch_by_connections() {
        assert_eq!(parse_scenario("100x4").unwrap(), Scenario { batch: 100, connections: 4 });
        assert_eq!(parse_scenario(" 1X32 ").unwrap(), Scenario { batch: 1, connections: 32 });
        assert!(parse_scenario("100").is_err());
        assert!(parse_scenario("0x4").is_err());
        assert!(parse_scenario("1x0").is_err());
        assert!(parse_seconds("0").is_err());
        assert_eq!(parse_warmup("0").unwrap(), 0.0);
        let args = BenchIngestArgs::try_parse_from(["switchboard-bench-ingest", "--scenarios", "1x1,10x2"]).unwrap();
        let expected = [Scenario { batch: 1, connections: 1 }, Scenario { batch: 10, connections: 2 }];
        assert_eq!(args.scenarios, expected);
        assert_eq!(args.seconds, 5.0);
    }
}
