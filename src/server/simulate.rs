//! `switchboard simulate`: a client that makes a running server look lived in. It sets up
//! accounts (an owner for the sensors, one per walker, each with an API token) and sensors
//! through the server's own HTTP API, then feeds the sensors readings over
//! `POST /api/sensors/{id}/readings` and walks people around a room's map over `/ws`, until
//! stopped. Credentials are kept in a state file so that reruns reuse them.
//!
//! It is an ordinary client of the public API, not a backdoor into the database: what works
//! for it works for any script or device.

pub mod api;
pub mod models;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use self::api::{Api, Credential};
use self::models::{sensor_spec, SensorModel, Walker};
use super::config::SimulateArgs;
use crate::accounts::page::Me;
use crate::accounts::settings::NewToken;
use crate::chat::protocol::LOBBY;
use crate::error::AppError;
use crate::map::protocol::location_topic;
use crate::map::protocol::MapRequest;
use crate::realtime::protocol::ServerFrame;
use crate::sensors::page::{CreatedSensor, SensorSummary};
use crate::sensors::protocol::{NewReading, SensorInfo};
use crate::store::now_ms;

/// How often accumulated readings are sent.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// How often each walker reports its position.
const STEP_EVERY: Duration = Duration::from_secs(1);
/// How often a status line is printed.
const STATUS_EVERY: Duration = Duration::from_secs(10);
/// Readings per request; well under the server's default `--sensor-batch-max` of 1,000.
const BATCH_MAX: usize = 500;
/// After a stall (the server was down), readings older than this are not made up.
const MAX_BACKLOG_MS: f64 = 10_000.0;
/// Sign-in throttling waits up to this long are sat out; longer ones are reported.
const MAX_THROTTLE_WAIT_SECS: u64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("{url} is not a server URL the simulator can use: {why}")]
    BadUrl { url: String, why: String },
    #[error("cannot reach the server at {url}: {source} (is it running? `make run` starts one)")]
    Unreachable { url: String, source: std::io::Error },
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("HTTP request: {0}")]
    Request(#[from] http::Error),
    #[error("{url}{path} did not answer within 30 s")]
    Timeout { url: String, path: String },
    #[error("{endpoint}: {error}")]
    Call { endpoint: String, error: AppError },
    #[error("{what} answered HTTP {status}: {body}")]
    Status { what: String, status: u16, body: String },
    #[error("unexpected answer from {what}: {source}")]
    Decode { what: String, source: serde_json::Error },
    #[error(
        "the account {user:?} exists on the server with another password: pass its password with --password \
         (or SWITCHBOARD_SIMULATE_PASSWORD), or choose another --user"
    )]
    WrongPassword { user: String },
    #[error("signing in as {user:?} is throttled after failed attempts; try again in {secs} s")]
    Throttled { user: String, secs: u64 },
    #[error("the account {user:?} was signed in but the server set no session")]
    NoSession { user: String },
    #[error("the sensor {name:?} exists and belongs to {owner}; choose another --user or rename that sensor")]
    SensorTaken { name: String, owner: String },
    #[error("state file {}: {source}", path.display())]
    State { path: PathBuf, source: std::io::Error },
    #[error("state file {} is not what the simulator wrote ({source}); fix or delete it", path.display())]
    StateFormat { path: PathBuf, source: serde_json::Error },
    #[error("nothing to simulate: --sensors and --walkers are both 0")]
    Nothing,
    #[error("stopped before the set-up was done")]
    Stopped,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    pub sensors: Vec<SensorInfo>,
    pub walkers: Vec<String>,
    /// Accounts signed up by this run (0 on a rerun that found them all).
    pub created_accounts: usize,
    /// Sensors created by this run (0 on a rerun).
    pub created_sensors: usize,
    /// Readings the server stored.
    pub readings_sent: u64,
    /// `locate` frames sent.
    pub positions_sent: u64,
    pub errors: u64,
}

/// Set up, then simulate until `stop` resolves or `--duration` has passed. Stopping during the
/// set-up gives [`SimulateError::Stopped`]; after it, the report of what was done.
pub async fn run(args: SimulateArgs, stop: impl Future<Output = ()>) -> Result<Report, SimulateError> {
    let cancel = CancellationToken::new();
    let work = simulate(args, cancel.clone());
    tokio::pin!(work);
    tokio::pin!(stop);
    tokio::select! {
        result = &mut work => return result,
        () = &mut stop => cancel.cancel(),
    }
    work.await
}

/// Runs `work` unless `cancel` fires first.
async fn unless_cancelled<T>(
    cancel: &CancellationToken,
    work: impl Future<Output = Result<T, SimulateError>>,
) -> Result<T, SimulateError> {
    cancel.run_until_cancelled(work).await.unwrap_or(Err(SimulateError::Stopped))
}

async fn simulate(args: SimulateArgs, cancel: CancellationToken) -> Result<Report, SimulateError> {
    if args.sensors == 0 && args.walkers == 0 {
        return Err(SimulateError::Nothing);
    }
    let mut api = Api::new(&args.url)?;
    let mut state = StateFile::load(&args.state)?;
    println!("switchboard simulate: setting up on {}", api.url());

    let setup = async {
        let owner = ensure_account(&mut api, &mut state, &args.user, args.password.as_deref(), &cancel).await?;
        if owner.created && owner.admin {
            println!(
                "  note: {:?} is this server's first account, so it is the admin; its password is in {}",
                args.user,
                args.state.display()
            );
        }
        if args.room != LOBBY {
            ensure_room(&mut api, &owner.token, &args.room).await?;
        }
        let (sensors, created_sensors) =
            ensure_sensors(&mut api, &owner.token, usize::from(args.sensors), args.center.longitude).await?;
        let mut walkers = Vec::new();
        for n in 1..=args.walkers {
            walkers.push(ensure_account(&mut api, &mut state, &format!("walker-{n}"), None, &cancel).await?);
        }
        Ok((owner, sensors, created_sensors, walkers))
    };
    let (owner, sensors, created_sensors, walkers) = unless_cancelled(&cancel, setup).await?;
    let created_accounts = usize::from(owner.created) + walkers.iter().filter(|w| w.created).count();

    let infos: Vec<SensorInfo> = sensors.iter().map(|s| s.info.clone()).collect();
    let names: Vec<String> = walkers.iter().map(|w| w.username.clone()).collect();
    print_plan(&args, api.url(), &infos, &names);

    let stats = Arc::new(Stats::default());
    let mut tasks = Vec::new();
    for walker in &walkers {
        let mut rng = StdRng::from_os_rng();
        let model = Walker::new(args.center, &mut rng);
        let walk = Walk {
            name: walker.username.clone(),
            url: api.ws_url(&walker.token),
            topic: location_topic(&args.room),
            stats: stats.clone(),
            cancel: cancel.clone(),
        };
        tasks.push(tokio::spawn(walk.run(model, rng)));
    }
    if !sensors.is_empty() {
        let feed = Feed { api, token: owner.token.clone(), sensors, rate: args.rate, stats: stats.clone() };
        tasks.push(tokio::spawn(feed.run(cancel.clone())));
    }

    let started = Instant::now();
    let deadline = async {
        match args.duration {
            Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut status = tokio::time::interval_at(started + STATUS_EVERY, STATUS_EVERY);
    let mut last_errors = 0;
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            () = &mut deadline => break,
            _ = status.tick() => last_errors = stats.print(started, last_errors),
        }
    }
    cancel.cancel();
    for task in tasks {
        let _ = task.await;
    }
    let report = Report {
        sensors: infos,
        walkers: names,
        created_accounts,
        created_sensors,
        readings_sent: stats.readings.load(Ordering::Relaxed),
        positions_sent: stats.positions.load(Ordering::Relaxed),
        errors: stats.errors.load(Ordering::Relaxed),
    };
    println!(
        "switchboard simulate: stopped after {} s: {} readings, {} positions, {} errors",
        started.elapsed().as_secs(),
        report.readings_sent,
        report.positions_sent,
        report.errors
    );
    Ok(report)
}

fn print_plan(args: &SimulateArgs, url: &str, sensors: &[SensorInfo], walkers: &[String]) {
    if !sensors.is_empty() {
        let list: Vec<String> = sensors.iter().map(|s| format!("{} ({})", s.name, s.unit)).collect();
        let (count, per) = (plural(sensors.len(), "sensor"), if args.rate == 1.0 { "reading" } else { "readings" });
        println!("  {count} of {:?}, {} {per}/s each: {}", args.user, args.rate, list.join(", "));
    }
    if let (Some(first), Some(last)) = (walkers.first(), walkers.last()) {
        let who = if walkers.len() == 1 { first.clone() } else { format!("{first} … {last}") };
        println!("  {} ({who}) around {} on the map of {:?}", plural(walkers.len(), "walker"), args.center, args.room);
    }
    println!("  see them at {url}/sensors and {url}/rooms/{}/map (signed in); Ctrl-C stops", args.room);
    println!("  accounts and API tokens are kept in {}", args.state.display());
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// Counters shared by the feeding and walking tasks.
#[derive(Default)]
struct Stats {
    readings: AtomicU64,
    positions: AtomicU64,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Stats {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(what);
    }

    /// Print a status line; returns the error count, to tell new errors next time.
    fn print(&self, started: Instant, last_errors: u64) -> u64 {
        let errors = self.errors.load(Ordering::Relaxed);
        let mut line = format!(
            "[{:>5} s] readings {}, positions {}, errors {}",
            started.elapsed().as_secs(),
            self.readings.load(Ordering::Relaxed),
            self.positions.load(Ordering::Relaxed),
            errors
        );
        if errors > last_errors {
            if let Some(error) = self.last_error.lock().unwrap_or_else(PoisonError::into_inner).as_deref() {
                line.push_str(&format!(" (latest: {error})"));
            }
        }
        println!("{line}");
        errors
    }
}

/// The state file: each account's password and API token, by username.
#[derive(Serialize, Deserialize, Default)]
struct SavedState {
    #[serde(default)]
    accounts: BTreeMap<String, SavedAccount>,
}

#[derive(Serialize, Deserialize, Clone)]
struct SavedAccount {
    password: String,
    #[serde(default)]
    token: Option<String>,
}

struct StateFile {
    path: PathBuf,
    saved: SavedState,
}

impl StateFile {
    fn load(path: &Path) -> Result<StateFile, SimulateError> {
        let saved = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| SimulateError::StateFormat { path: path.to_owned(), source })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => SavedState::default(),
            Err(source) => return Err(SimulateError::State { path: path.to_owned(), source }),
        };
        Ok(StateFile { path: path.to_owned(), saved })
    }

    /// Write the file whole (to a temporary name, then renamed), readable by its owner only:
    /// it holds passwords.
    fn save(&self) -> Result<(), SimulateError> {
        let failed = |source| SimulateError::State { path: self.path.clone(), source };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        let json = serde_json::to_vec_pretty(&self.saved)
            .map_err(|source| SimulateError::StateFormat { path: self.path.clone(), source })?;
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(".tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary).map_err(failed)?;
        std::io::Write::write_all(&mut file, &json).map_err(failed)?;
        drop(file);
        std::fs::rename(&temporary, &self.path).map_err(failed)
    }

    fn account(&self, username: &str) -> Option<&SavedAccount> {
        self.saved.accounts.get(username)
    }

    fn remember(&mut self, username: &str, account: SavedAccount) -> Result<(), SimulateError> {
        self.saved.accounts.insert(username.to_owned(), account);
        self.save()
    }
}

/// An account ready to use: its API token, and whether this run created it.
struct Account {
    username: String,
    token: String,
    created: bool,
    admin: bool,
}

/// Make sure `username` exists and has a working API token: reuse the saved token if the
/// server still knows it; otherwise sign up (or, if the name is taken, sign in) and make a
/// new token. The password is `password`, else the saved one, else a new random one.
async fn ensure_account(
    api: &mut Api,
    state: &mut StateFile,
    username: &str,
    password: Option<&str>,
    cancel: &CancellationToken,
) -> Result<Account, SimulateError> {
    let saved = state.account(username).cloned();
    if let Some(token) = saved.as_ref().and_then(|s| s.token.clone()) {
        let me: Me = api.call_json("me", &[], Credential::Token(&token)).await?;
        if me.user.as_deref() == Some(username) {
            if let (Some(password), Some(saved)) = (password, &saved) {
                if saved.password != password {
                    state.remember(
                        username,
                        SavedAccount { password: password.to_owned(), token: Some(token.clone()) },
                    )?;
                }
            }
            return Ok(Account { username: username.to_owned(), token, created: false, admin: me.admin });
        }
    }
    let password = match (password, &saved) {
        (Some(given), _) => given.to_owned(),
        (None, Some(saved)) => saved.password.clone(),
        (None, None) => {
            let generated = crate::accounts::auth::new_secret()[..24].to_owned();
            // Saved before signing up, so that a failure right after cannot lose it.
            state.remember(username, SavedAccount { password: generated.clone(), token: None })?;
            generated
        }
    };
    let form = [("username", username), ("password", password.as_str())];
    let (session, created) = match api.call("sign_up", &form, Credential::Nobody).await {
        Ok(answer) => (answer.session, true),
        Err(SimulateError::Call { error: AppError::Conflict(_), .. }) => {
            (sign_in(api, username, &password, cancel).await?, false)
        }
        Err(error) => return Err(error),
    };
    let session = session.ok_or_else(|| SimulateError::NoSession { user: username.to_owned() })?;
    let created_token: NewToken =
        api.call_json("create_token", &[("name", "switchboard simulate")], Credential::Session(&session)).await?;
    // The session was only needed to make the token.
    let _ = api.call("sign_out", &[], Credential::Session(&session)).await;
    let token = created_token.secret;
    state.remember(username, SavedAccount { password, token: Some(token.clone()) })?;
    let me: Me = api.call_json("me", &[], Credential::Token(&token)).await?;
    Ok(Account { username: username.to_owned(), token, created, admin: me.admin })
}

/// Sign in, sitting out short throttling waits; the session secret.
async fn sign_in(
    api: &mut Api,
    username: &str,
    password: &str,
    cancel: &CancellationToken,
) -> Result<Option<String>, SimulateError> {
    let form = [("username", username), ("password", password)];
    let mut attempts = 0;
    loop {
        attempts += 1;
        match api.call("sign_in", &form, Credential::Nobody).await {
            Ok(answer) => return Ok(answer.session),
            Err(SimulateError::Call { error: AppError::Invalid(message), .. }) => {
                if message.contains("wrong username or password") {
                    return Err(SimulateError::WrongPassword { user: username.to_owned() });
                }
                let Some(secs) = throttled_for(&message) else {
                    return Err(SimulateError::Call { endpoint: "sign_in".into(), error: AppError::Invalid(message) });
                };
                if secs > MAX_THROTTLE_WAIT_SECS || attempts >= 4 {
                    return Err(SimulateError::Throttled { user: username.to_owned(), secs });
                }
                println!("  signing in as {username:?} is throttled; waiting {secs} s");
                if cancel.run_until_cancelled(tokio::time::sleep(Duration::from_secs(secs))).await.is_none() {
                    return Err(SimulateError::Stopped);
                }
            }
            Err(error) => return Err(error),
        }
    }
}

/// The wait in a sign-in throttling message ("… try again in 4 seconds").
fn throttled_for(message: &str) -> Option<u64> {
    let (_, after) = message.split_once("try again in ")?;
    after.split_whitespace().next()?.parse().ok()
}

/// Create a public room for the map when it does not exist (the lobby always does).
async fn ensure_room(api: &mut Api, token: &str, room: &str) -> Result<(), SimulateError> {
    match api.call("create_room", &[("name", room)], Credential::Token(token)).await {
        Ok(_) | Err(SimulateError::Call { error: AppError::Conflict(_), .. }) => Ok(()),
        Err(error) => Err(error),
    }
}

/// A sensor being fed.
struct FedSensor {
    info: SensorInfo,
    model: SensorModel,
    /// When its next reading is due, in milliseconds since the epoch.
    next_ts: f64,
}

/// Find the simulator's sensors by name, creating the missing ones; also how many were created.
async fn ensure_sensors(
    api: &mut Api,
    token: &str,
    count: usize,
    longitude: f64,
) -> Result<(Vec<FedSensor>, usize), SimulateError> {
    if count == 0 {
        return Ok((Vec::new(), 0));
    }
    let listed: Vec<SensorSummary> = api.call_json("list_sensors", &[], Credential::Token(token)).await?;
    let mut rng = StdRng::from_os_rng();
    let mut sensors = Vec::new();
    let mut created = 0;
    for index in 0..count {
        let spec = sensor_spec(index);
        let info = match listed.iter().find(|s| s.info.name.to_lowercase() == spec.name.to_lowercase()) {
            Some(found) if found.can_manage => found.info.clone(),
            Some(found) => {
                let owner = found.owner.clone().unwrap_or_else(|| "nobody".into());
                return Err(SimulateError::SensorTaken { name: spec.name, owner });
            }
            None => {
                let (range_min, range_max) = (spec.range_min.to_string(), spec.range_max.to_string());
                let (alert_low, alert_high) = (
                    spec.alert_low.map(|v| v.to_string()).unwrap_or_default(),
                    spec.alert_high.map(|v| v.to_string()).unwrap_or_default(),
                );
                let form = [
                    ("name", spec.name.as_str()),
                    ("unit", spec.unit),
                    ("range_min", range_min.as_str()),
                    ("range_max", range_max.as_str()),
                    ("alert_low", alert_low.as_str()),
                    ("alert_high", alert_high.as_str()),
                ];
                let made: CreatedSensor = api.call_json("create_sensor", &form, Credential::Token(token)).await?;
                created += 1;
                made.sensor
            }
        };
        sensors.push(FedSensor { info, model: SensorModel::new(spec.kind, longitude, &mut rng), next_ts: 0.0 });
    }
    Ok((sensors, created))
}

/// Feeds every sensor `rate` readings a second, each with its own time, sending what has
/// accumulated every [`FLUSH_EVERY`] on one connection.
struct Feed {
    api: Api,
    token: String,
    sensors: Vec<FedSensor>,
    rate: f64,
    stats: Arc<Stats>,
}

impl Feed {
    async fn run(mut self, cancel: CancellationToken) {
        let period_ms = 1000.0 / self.rate;
        let mut rng = StdRng::from_os_rng();
        let start = now_ms() as f64;
        for sensor in &mut self.sensors {
            sensor.next_ts = start;
        }
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = now_ms() as f64;
            for sensor in &mut self.sensors {
                let batch = sensor.due(now, period_ms, &mut rng);
                for chunk in batch.chunks(BATCH_MAX) {
                    match self.api.post_readings(sensor.info.id, &self.token, chunk).await {
                        Ok(stored) => {
                            self.stats.readings.fetch_add(stored, Ordering::Relaxed);
                        }
                        Err(error) => self.stats.error(format!("{}: {error}", sensor.info.name)),
                    }
                }
            }
        }
    }
}

impl FedSensor {
    /// The readings due up to `now`, each at its own time, within the sensor's range.
    fn due(&mut self, now: f64, period_ms: f64, rng: &mut impl Rng) -> Vec<NewReading> {
        self.next_ts = self.next_ts.max(now - MAX_BACKLOG_MS);
        let low = self.info.range_min.unwrap_or(f64::MIN);
        let high = self.info.range_max.unwrap_or(f64::MAX).max(low);
        let mut readings = Vec::new();
        while self.next_ts <= now {
            let ts = self.next_ts.round() as i64;
            let value = self.model.sample(ts, period_ms / 1000.0, rng);
            readings.push(NewReading { value: self.model.round(value).clamp(low, high), ts: Some(ts) });
            self.next_ts += period_ms;
        }
        readings
    }
}

/// One person walking on the map, on a WebSocket of their own.
struct Walk {
    name: String,
    url: String,
    topic: String,
    stats: Arc<Stats>,
    cancel: CancellationToken,
}

impl Walk {
    async fn run(self, mut walker: Walker, mut rng: StdRng) {
        let mut backoff = Duration::from_millis(500);
        let mut sent: u64 = 0;
        while !self.cancel.is_cancelled() {
            let connected = tokio::select! {
                () = self.cancel.cancelled() => return,
                connected = tokio_tungstenite::connect_async(self.url.as_str()) => connected,
            };
            match connected {
                Ok((ws, _)) => {
                    if self.walk(ws, &mut walker, &mut rng, &mut sent).await {
                        backoff = Duration::from_millis(500);
                    }
                }
                Err(error) => self.stats.error(format!("{}: cannot connect: {error}", self.name)),
            }
            // Jittered exponential backoff: between half and all of the ceiling.
            let delay = backoff.mul_f64(rng.random_range(0.5..=1.0));
            backoff = (backoff * 2).min(Duration::from_secs(30));
            if self.cancel.run_until_cancelled(tokio::time::sleep(delay)).await.is_none() {
                return;
            }
        }
    }

    /// Walk on one connection until it ends or the run stops; whether any position got through.
    async fn walk(
        &self,
        mut ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
        walker: &mut Walker,
        rng: &mut StdRng,
        sent: &mut u64,
    ) -> bool {
        let mut progressed = false;
        let mut tick = tokio::time::interval(STEP_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last = Instant::now();
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => {
                    let _ = ws.close(None).await;
                    return progressed;
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    let (latitude, longitude) = walker.step((now - last).as_secs_f64(), rng);
                    last = now;
                    *sent += 1;
                    let frame = MapRequest::Locate {
                        id: format!("{}-{sent}", self.name),
                        topic: self.topic.clone(),
                        latitude,
                        longitude,
                        trail: true,
                    };
                    let text = match serde_json::to_string(&frame) {
                        Ok(text) => text,
                        Err(error) => {
                            self.stats.error(format!("{}: {error}", self.name));
                            continue;
                        }
                    };
                    // Writing also flushes the pongs to the server's pings.
                    if let Err(error) = ws.send(Message::text(text)).await {
                        self.stats.error(format!("{}: {error}", self.name));
                        return progressed;
                    }
                    self.stats.positions.fetch_add(1, Ordering::Relaxed);
                    progressed = true;
                }
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        if let Ok(ServerFrame::Error { code, message, .. }) = ServerFrame::from_json(&text) {
                            self.stats.error(format!("{}: {code:?}: {message}", self.name));
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let why = frame.map(|f| format!("{} {}", u16::from(f.code), f.reason)).unwrap_or_default();
                        self.stats.error(format!("{}: the server closed the connection {why}", self.name));
                        return progressed;
                    }
                    // Pings are answered by tungstenite itself.
                    Some(Ok(_)) => {}
                    Some(Err(error)) => {
                        self.stats.error(format!("{}: {error}", self.name));
                        return progressed;
                    }
                    None => return progressed,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn throttling_waits_are_read_from_the_message() {
        assert_eq!(throttled_for("too many failed sign-ins; try again in 4 seconds"), Some(4));
        assert_eq!(throttled_for("wrong username or password"), None);
    }

    #[test]
    fn due_readings_are_spaced_by_the_rate_and_stay_in_range() {
        let mut rng = StdRng::seed_from_u64(3);
        let spec = sensor_spec(0);
        let info = SensorInfo {
            id: 1,
            name: spec.name.clone(),
            unit: spec.unit.into(),
            range_min: Some(20.0),
            range_max: Some(21.0),
            alert_low: None,
            alert_high: None,
        };
        let model = SensorModel::new(spec.kind, 0.0, &mut rng);
        let mut sensor = FedSensor { info, model, next_ts: 1_000_000.0 };
        let readings = sensor.due(1_000_999.0, 200.0, &mut rng);
        let times: Vec<i64> = readings.iter().map(|r| r.ts.unwrap()).collect();
        assert_eq!(times, [1_000_000, 1_000_200, 1_000_400, 1_000_600, 1_000_800]);
        assert!(readings.iter().all(|r| (20.0..=21.0).contains(&r.value)));
        assert!(sensor.due(1_000_999.0, 200.0, &mut rng).is_empty(), "nothing is due twice");
        // After a long stall, only the last few seconds are made up.
        assert_eq!(sensor.due(2_000_000.0, 200.0, &mut rng).len(), (MAX_BACKLOG_MS / 200.0) as usize + 1);
    }
}
