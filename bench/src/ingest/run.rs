//! `switchboard-bench-ingest`: how many sensor readings a running server takes in and makes
//! durable per second, over its public HTTP API, for a few load shapes run back to back so
//! that they can be compared as ratios (the machine is shared and noisy; absolute figures
//! drift between runs, ratios within one run much less).
//!
//! For each scenario (B readings per request, C connections) it creates C sensors, opens C
//! keep-alive connections, each posting the same prebuilt batch to its own sensor with the
//! sensor's token as fast as answers come, and counts what was acknowledged: an HTTP 200 means
//! durable. Only answers inside the measured window count towards the rates; afterwards the
//! sensors' stored counts are read back and must equal everything acknowledged.
//!
//! `tools/ingest-bench.sh` starts a throwaway server, runs this with the server's pid (for its
//! CPU time per reading) and checks the database file after the server stopped.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use switchboard::accounts::auth::new_secret;
use switchboard::accounts::settings::NewToken;
use switchboard::sensors::page::{CreatedSensor, SensorSeries};
use switchboard::sensors::protocol::NewReading;
use switchboard::server::simulate::api::{Api, Credential};
use switchboard::server::simulate::SimulateError;
use switchboard::store::now_ms;

use crate::args::{BenchIngestArgs, Scenario};

/// After a failed request, wait this long before the next (a refused connection fails at once).
const ERROR_PAUSE: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Client(#[from] SimulateError),
    #[error("signing up {user:?} set no session")]
    NoSession { user: String },
    #[error("no scenarios to run")]
    NoScenarios,
}

/// What one scenario measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: Scenario,
    /// Length of the measured window, in seconds.
    pub seconds: f64,
    /// Readings acknowledged (200) inside the window.
    pub readings: u64,
    /// Requests acknowledged inside the window.
    pub requests: u64,
    /// Latencies of those requests, sorted, in microseconds.
    pub latencies_us: Vec<u64>,
    /// Failed requests (any time).
    pub errors: u64,
    pub last_error: Option<String>,
    /// Readings acknowledged at any time (warm-up and tail included).
    pub acknowledged: u64,
    /// Readings the server has stored for the scenario's sensors.
    pub stored: u64,
    /// CPU seconds (user + system) the server used inside the window, when its pid is known.
    pub server_cpu: Option<f64>,
    /// CPU seconds this load generator used inside the window.
    pub client_cpu: Option<f64>,
}

impl Outcome {
    pub fn readings_per_sec(&self) -> f64 {
        self.readings as f64 / self.seconds
    }

    pub fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// The latency below which `fraction` of the requests were answered, in milliseconds.
    pub fn latency_ms(&self, fraction: f64) -> Option<f64> {
        let last = self.latencies_us.len().checked_sub(1)?;
        let index = ((last as f64) * fraction).round() as usize;
        self.latencies_us.get(index.min(last)).map(|&us| us as f64 / 1000.0)
    }

    /// Server CPU time per reading, in microseconds.
    pub fn server_us_per_reading(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (self.readings > 0).then(|| cpu * 1e6 / self.readings as f64)
    }
}

/// Set up an account, then run every scenario in turn and print the table.
pub async fn run(args: BenchIngestArgs) -> Result<Vec<Outcome>, BenchError> {
    if args.scenarios.is_empty() {
        return Err(BenchError::NoScenarios);
    }
    let mut api = Api::new(&args.url)?;
    let run_id = &new_secret()[..6];
    let user = format!("bench-{run_id}");
    let token = sign_up(&mut api, &user).await?;
    println!(
        "switchboard-bench-ingest: {} as {user:?}; {} s per scenario after {} s of warm-up",
        api.url(),
        args.seconds,
        args.warmup
    );
    let mut outcomes = Vec::new();
    for (index, &scenario) in args.scenarios.iter().enumerate() {
        let mut sensors = Vec::new();
        for n in 1..=scenario.connections {
            let name = format!("bench {run_id} s{} c{n}", index + 1);
            let made: CreatedSensor =
                api.call_json("create_sensor", &[("name", name.as_str())], Credential::Token(&token)).await?;
            sensors.push(made);
        }
        let outcome = measure(&args, scenario, &sensors).await;
        let outcome = Outcome { stored: stored(&mut api, &token, &sensors).await?, ..outcome };
        println!(
            "  {:>9}: {:>9.0} readings/s, {:>7.0} requests/s, {} errors, {} acknowledged, {} stored",
            scenario.to_string(),
            outcome.readings_per_sec(),
            outcome.requests_per_sec(),
            outcome.errors,
            outcome.acknowledged,
            outcome.stored
        );
        if let Some(error) = &outcome.last_error {
            println!("             latest error: {error}");
        }
        outcomes.push(outcome);
    }
    println!();
    print!("{}", table(&outcomes));
    let acknowledged: u64 = outcomes.iter().map(|o| o.acknowledged).sum();
    let stored: u64 = outcomes.iter().map(|o| o.stored).sum();
    println!();
    println!("total acknowledged: {acknowledged}");
    println!("total stored: {stored}");
    Ok(outcomes)
}

/// A new account with an API token; the token.
async fn sign_up(api: &mut Api, user: &str) -> Result<String, BenchError> {
    let password = new_secret();
    let form = [("username", user), ("password", password.as_str())];
    let answer = api.call("sign_up", &form, Credential::Nobody).await?;
    let session = answer.session.ok_or_else(|| BenchError::NoSession { user: user.to_owned() })?;
    let made: NewToken =
        api.call_json("create_token", &[("name", "switchboard-bench-ingest")], Credential::Session(&session)).await?;
    let _ = api.call("sign_out", &[], Credential::Session(&session)).await;
    Ok(made.secret)
}

/// The body every request of a scenario sends: `batch` readings, each with its own time.
pub fn batch_body(batch: usize, start_ms: i64) -> Bytes {
    let readings: Vec<NewReading> = (0..batch)
        .map(|i| NewReading { value: 20.0 + (i % 100) as f64 / 10.0, ts: Some(start_ms + i as i64) })
        .collect();
    // Serialising plain numbers cannot fail.
    Bytes::from(serde_json::to_vec(&readings).unwrap_or_default())
}

/// What one connection counted.
#[derive(Default)]
struct Tally {
    readings: u64,
    requests: u64,
    latencies_us: Vec<u64>,
    errors: u64,
    last_error: Option<String>,
    acknowledged: u64,
}

/// Run one scenario: warm up, measure, let the last requests finish.
async fn measure(args: &BenchIngestArgs, scenario: Scenario, sensors: &[CreatedSensor]) -> Outcome {
    let body = batch_body(scenario.batch, now_ms());
    let from = Instant::now() + Duration::from_secs_f64(args.warmup);
    let until = from + Duration::from_secs_f64(args.seconds);
    let mut workers = Vec::new();
    for sensor in sensors {
        let api = Api::new(&args.url);
        let (id, token, body) = (sensor.sensor.id, sensor.token.clone(), body.clone());
        workers.push(tokio::spawn(async move {
            match api {
                Ok(api) => offer(api, id, token, body, from, until).await,
                Err(error) => Tally { errors: 1, last_error: Some(error.to_string()), ..Tally::default() },
            }
        }));
    }
    tokio::time::sleep_until(from).await;
    let server_before = args.server_pid.and_then(cpu_ticks_of_pid).map(|t| t as f64 / args.clock_ticks as f64);
    let client_before = cpu_ticks_of_self().map(|t| t as f64 / args.clock_ticks as f64);
    tokio::time::sleep_until(until).await;
    let server_after = args.server_pid.and_then(cpu_ticks_of_pid).map(|t| t as f64 / args.clock_ticks as f64);
    let client_after = cpu_ticks_of_self().map(|t| t as f64 / args.clock_ticks as f64);

    let mut total = Tally::default();
    for worker in workers {
        let tally = match worker.await {
            Ok(tally) => tally,
            Err(error) => Tally { errors: 1, last_error: Some(error.to_string()), ..Tally::default() },
        };
        total.readings += tally.readings;
        total.requests += tally.requests;
        total.latencies_us.extend(tally.latencies_us);
        total.errors += tally.errors;
        total.last_error = tally.last_error.or(total.last_error);
        total.acknowledged += tally.acknowledged;
    }
    total.latencies_us.sort_unstable();
    Outcome {
        scenario,
        seconds: args.seconds,
        readings: total.readings,
        requests: total.requests,
        latencies_us: total.latencies_us,
        errors: total.errors,
        last_error: total.last_error,
        acknowledged: total.acknowledged,
        stored: 0,
        server_cpu: server_before.zip(server_after).map(|(before, after)| after - before),
        client_cpu: client_before.zip(client_after).map(|(before, after)| after - before),
    }
}

/// Post `body` to one sensor over one connection, one request at a time, until `until`.
async fn offer(mut api: Api, sensor: i64, token: String, body: Bytes, from: Instant, until: Instant) -> Tally {
    let mut tally = Tally::default();
    loop {
        let sent = Instant::now();
        if sent >= until {
            return tally;
        }
        let result = api.post_readings_body(sensor, &token, body.clone()).await;
        let done = Instant::now();
        match result {
            Ok(accepted) => {
                tally.acknowledged += accepted;
                if done >= from && done <= until {
                    tally.readings += accepted;
                    tally.requests += 1;
                    tally.latencies_us.push(u64::try_from((done - sent).as_micros()).unwrap_or(u64::MAX));
                }
            }
            Err(error) => {
                tally.errors += 1;
                tally.last_error = Some(error.to_string());
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
}

/// How many readings the server stored for these sensors, from their history counts.
async fn stored(api: &mut Api, token: &str, sensors: &[CreatedSensor]) -> Result<u64, BenchError> {
    let (from, to) = ("0".to_owned(), (now_ms() + 3_600_000).to_string());
    let mut total = 0;
    for sensor in sensors {
        let id = sensor.sensor.id.to_string();
        let form = [("id", id.as_str()), ("from_ms", from.as_str()), ("to_ms", to.as_str()), ("max_points", "1")];
        let series: SensorSeries = api.call_json("sensor_history", &form, Credential::Token(token)).await?;
        total += series.points.iter().map(|p| u64::try_from(p.count).unwrap_or(0)).sum::<u64>();
    }
    Ok(total)
}

/// User plus system CPU time of a process, in clock ticks, from the text of /proc/<pid>/stat.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces; count from after it.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn cpu_ticks_of_pid(pid: u32) -> Option<u64> {
    cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn cpu_ticks_of_self() -> Option<u64> {
    cpu_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// The results as a Markdown table, with ratios to the first scenario (the baseline).
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = String::from(
        "| scenario (batch x connections) | readings/s | x baseline | requests/s | p50 ms | p99 ms | errors \
         | server CPU µs/reading | x baseline | server CPU % | client CPU % | stored = acknowledged |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let Some(base) = outcomes.first() else { return out };
    let ratio = |value: f64, base: f64| match value / base {
        r if !r.is_finite() => "-".to_owned(),
        r if r < 1.0 => format!("{r:.2}"),
        r => format!("{r:.1}"),
    };
    let number = |value: Option<f64>, digits: usize| value.map_or("-".into(), |v| format!("{v:.digits$}"));
    for outcome in outcomes {
        let cpu_ratio = match (outcome.server_us_per_reading(), base.server_us_per_reading()) {
            (Some(value), Some(base)) => ratio(value, base),
            _ => "-".into(),
        };
        let percent = |cpu: Option<f64>| number(cpu.map(|c| 100.0 * c / outcome.seconds), 0);
        let verdict = if outcome.stored == outcome.acknowledged {
            format!("yes ({})", outcome.stored)
        } else {
            format!("NO: {} stored, {} acknowledged", outcome.stored, outcome.acknowledged)
        };
        out.push_str(&format!(
            "| {} | {:.0} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            outcome.scenario,
            outcome.readings_per_sec(),
            ratio(outcome.readings_per_sec(), base.readings_per_sec()),
            outcome.requests_per_sec(),
            number(outcome.latency_ms(0.50), 2),
            number(outcome.latency_ms(0.99), 2),
            outcome.errors,
            number(outcome.server_us_per_reading(), 1),
            cpu_ratio,
            percent(outcome.server_cpu),
            percent(outcome.client_cpu),
            verdict,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces() {
        let stat = "4242 (switch board) S 1 4242 4242 0 -1 4194560 900 0 0 0 317 42 0 0 20 0 9 0 100 0 0";
        assert_eq!(cpu_ticks(stat), Some(359));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn a_batch_body_is_the_readings_the_api_takes() {
        let body = batch_body(3, 1_764_000_000_000);
        let readings = switchboard::sensors::server::parse_body(&body).unwrap();
        assert_eq!(readings.len(), 3);
        assert_eq!(readings[2], NewReading { value: 20.2, ts: Some(1_764_000_000_002) });
    }

    fn outcome(batch: usize, readings: u64, cpu: f64, stored: u64) -> Outcome {
        Outcome {
            scenario: Scenario { batch, connections: 1 },
            seconds: 2.0,
            readings,
            requests: readings / batch as u64,
            latencies_us: vec![1000, 2000, 3000],
            errors: 0,
            last_error: None,
            acknowledged: readings,
            stored,
            server_cpu: Some(cpu),
            client_cpu: None,
        }
    }

    #[test]
    fn the_table_gives_ratios_to_the_first_scenario_and_flags_lost_readings() {
        let table = table(&[outcome(1, 1000, 1.0, 1000), outcome(100, 100_000, 1.0, 99_999)]);
        let rows: Vec<&str> = table.lines().skip(2).collect();
        assert!(rows[0].starts_with("| 1x1 | 500 | 1.0 | 500 | 2.00 | 3.00 | 0 | 1000.0 | 1.0 | 50 | - | yes (1000) |"));
        assert!(rows[1].starts_with("| 100x1 | 50000 | 100.0 | 500 |"), "{}", rows[1]);
        assert!(rows[1].contains("| 10.0 | 0.01 |"), "{}", rows[1]);
        assert!(rows[1].ends_with("| NO: 99999 stored, 100000 acknowledged |"), "{}", rows[1]);
    }
}
