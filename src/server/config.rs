//! Command line and environment: everything an operator can set, with its default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug, Clone)]
#[command(name = "switchboard", version, about = "Self-hosted real-time chat, maps and sensor dashboards.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: Config,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Serve the app (the default when no command is given).
    Serve,
    /// Feed a running server realistic data: sensors with readings, and people walking on a
    /// room's map. For demos and for trying the app out.
    Simulate(SimulateArgs),
}

/// `--checkpoint-ms`'s default: the store's own.
const CHECKPOINT_MS: u64 = crate::store::CHECKPOINT_EVERY.as_millis() as u64;
/// Settings of `switchboard simulate`.
#[derive(Args, Debug, Clone)]
pub struct SimulateArgs {
    /// The running server, as `http://host:port`.
    #[arg(long, default_value = "http://127.0.0.1:3000", value_parser = parse_server_url)]
    pub url: String,

    /// Sensors to feed (greenhouse temperature and humidity, office CO₂, workshop power, and
    /// so on round again).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(0..=200))]
    pub sensors: u16,

    /// Readings per second per sensor (up to 1,000).
    #[arg(long, default_value_t = 1.0, value_parser = parse_rate)]
    pub rate: f64,

    /// People walking on the room's map, each with an account of their own (`walker-<n>`).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(0..=500))]
    pub walkers: u16,

    /// The room whose map the walkers share their positions on (created if missing).
    #[arg(long, default_value = "lobby", value_parser = parse_room)]
    pub room: String,

    /// Where the walkers walk, as `LAT,LON` in degrees (default: Dam Square, Amsterdam).
    #[arg(long, default_value = "52.3731,4.8926", value_parser = parse_center, allow_hyphen_values = true)]
    pub center: Center,

    /// Stop after this many seconds (counted once set-up is done); without it, run until Ctrl-C.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: Option<u64>,

    /// The account that owns the sensors; created on first run.
    #[arg(long, default_value = "simulator", value_parser = parse_username)]
    pub user: String,

    /// The owner's password. Without it: the one saved in the state file, or a new random one
    /// (saved there).
    #[arg(long, env = "SWITCHBOARD_SIMULATE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,

    /// File keeping the accounts' passwords and API tokens, so that reruns reuse them.
    #[arg(long, default_value = "data/simulate.json")]
    pub state: PathBuf,
}

/// A point on the map, in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Center {
    pub latitude: f64,
    pub longitude: f64,
}

impl std::fmt::Display for Center {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.5},{:.5}", self.latitude, self.longitude)
    }
}

/// `http://host:port` (a path or trailing slash is not wanted: the API lives at the root).
/// Only plain http: the simulator is meant for a server on this machine or the LAN.
pub fn parse_server_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err("https is not supported; point it at the server's http address".into()),
        _ => return Err("the URL must start with http://".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty()) {
        return Err("give the server's root URL, without a path".into());
    }
    Ok(url.to_owned())
}

fn parse_rate(rate: &str) -> Result<f64, String> {
    let rate: f64 = rate.trim().parse().map_err(|_| format!("{rate:?} is not a number"))?;
    if !(rate.is_finite() && rate > 0.0 && rate <= 1000.0) {
        return Err("the rate is more than 0 and at most 1000 readings per second".into());
    }
    Ok(rate)
}

fn parse_room(room: &str) -> Result<String, String> {
    if crate::chat::protocol::valid_room_name(room) {
        Ok(room.to_owned())
    } else {
        Err("room names are 1 to 32 characters of a-z, 0-9, '-' and '_'".into())
    }
}

fn parse_username(name: &str) -> Result<String, String> {
    if crate::accounts::auth::valid_username(name) {
        Ok(name.to_owned())
    } else {
        Err("usernames are 3 to 32 characters: letters, digits, '.', '_' and '-'".into())
    }
}

pub fn parse_center(text: &str) -> Result<Center, String> {
    let (lat, lon) = text.split_once(',').ok_or("write the centre as LAT,LON, e.g. 52.3731,4.8926")?;
    let latitude: f64 = lat.trim().parse().map_err(|_| format!("the latitude {:?} is not a number", lat.trim()))?;
    let longitude: f64 = lon.trim().parse().map_err(|_| format!("the longitude {:?} is not a number", lon.trim()))?;
    // Walkers go a few km from the centre; keep clear of the poles and the date line.
    if !(-80.0..=80.0).contains(&latitude) {
        return Err("the latitude must be between -80 and 80".into());
    }
    if !(-179.0..=179.0).contains(&longitude) {
        return Err("the longitude must be between -179 and 179".into());
    }
    Ok(Center { latitude, longitude })
}

/// Settings of a running server.
#[derive(Args, Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "SWITCHBOARD_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// Database URL: `sqlite://FILE` (one process; the file is created) or `postgres://...`
    /// (one node or several). Migrated at start.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://data/switchboard.db")]
    pub database_url: String,

    /// Redis URL (`redis://host:6379`): makes this process one node of a cluster, with every
    /// node on the same PostgreSQL (`--database-url postgres://...`) and Redis. Every node
    /// serves every client.
    #[arg(long, env = "SWITCHBOARD_REDIS_URL")]
    pub redis_url: Option<String>,

    /// What every Redis key and channel of this cluster starts with, so that several clusters
    /// can share one Redis.
    #[arg(long, env = "SWITCHBOARD_REDIS_PREFIX", default_value = "switchboard:")]
    pub redis_prefix: String,

    /// Folder holding the built site (`pkg/` with the WASM bundle, CSS, and public assets).
    #[arg(long, env = "SWITCHBOARD_SITE_ROOT", default_value = "target/site")]
    pub site_root: String,

    /// Largest WebSocket frame accepted, in bytes; larger frames get a `too_large` error.
    #[arg(long, env = "SWITCHBOARD_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,

    /// Outbound frames queued per connection before it counts as a slow consumer and is closed.
    #[arg(long, env = "SWITCHBOARD_QUEUE_FRAMES", default_value_t = 1024)]
    pub queue_frames: usize,

    /// Milliseconds a busy connection's events may wait to be written together: an event
    /// that comes sooner than this after the connection's last write goes out with those
    /// that follow it, one write for several. 0: every event is written at once.
    #[arg(long, env = "SWITCHBOARD_COALESCE_MS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub coalesce_ms: u64,

    /// Milliseconds between the chat writer's batches while messages keep coming: a message
    /// that comes sooner than this after the last batch was taken (its commit included) waits
    /// and is stored with those that follow it, one `fsync` for several. 0: every batch is
    /// taken at once.
    #[arg(long, env = "SWITCHBOARD_COMMIT_WINDOW_MS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub commit_window_ms: u64,

    /// Milliseconds between checkpoints of the database's write-ahead log, made by a task of
    /// their own while writers carry on. 0: SQLite's default, inside the commit that takes
    /// the log past 1,000 pages (which then returns milliseconds later).
    #[arg(long, env = "SWITCHBOARD_CHECKPOINT_MS", default_value_t = CHECKPOINT_MS, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub checkpoint_ms: u64,

    /// Seconds between the server's heartbeat pings.
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_SECS", default_value_t = 3)]
    pub heartbeat_secs: u64,

    /// Seconds of silence from a client after which it is dropped (and leaves the online lists).
    #[arg(long, env = "SWITCHBOARD_IDLE_TIMEOUT_SECS", default_value_t = 8)]
    pub idle_timeout_secs: u64,

    /// Let visitors without an account read and write public rooms under a chosen name, and
    /// the tutorial's endpoints accept clients without a cookie or token. For demos.
    #[arg(long, env = "SWITCHBOARD_GUEST_ACCESS", value_parser = clap::builder::BoolishValueParser::new(),
          num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub guest_access: bool,

    /// Chat messages per second each person may send, on average.
    #[arg(long, env = "SWITCHBOARD_MESSAGE_RATE", default_value_t = 5.0)]
    pub message_rate: f64,

    /// Chat messages each person may send in a burst before the rate applies.
    #[arg(long, env = "SWITCHBOARD_MESSAGE_BURST", default_value_t = 20.0)]
    pub message_burst: f64,

    /// Poll votes per second each person may send, on average (changing a vote is a vote).
    #[arg(long, env = "SWITCHBOARD_VOTE_RATE", default_value_t = 5.0)]
    pub vote_rate: f64,

    /// Poll votes each person may send in a burst before the rate applies.
    #[arg(long, env = "SWITCHBOARD_VOTE_BURST", default_value_t = 20.0)]
    pub vote_burst: f64,

    /// Document edits (Yjs updates) per second each person may send, on average, per node.
    #[arg(long, env = "SWITCHBOARD_EDIT_RATE", default_value_t = 50.0)]
    pub edit_rate: f64,

    /// Document edits each person may send in a burst before the rate applies.
    #[arg(long, env = "SWITCHBOARD_EDIT_BURST", default_value_t = 500.0)]
    pub edit_burst: f64,

    /// Position updates per second passed on for each person sharing; extra ones are coalesced
    /// (the latest wins).
    #[arg(long, env = "SWITCHBOARD_LOCATION_RATE", default_value_t = 4.0)]
    pub location_rate: f64,

    /// Seconds after which a position not updated is drawn faded on the map.
    #[arg(long, env = "SWITCHBOARD_LOCATION_STALE_SECS", default_value_t = 60)]
    pub location_stale_secs: u64,

    /// Draw the map on raster tiles from this URL template (`{z}`, `{x}`, `{y}`), e.g.
    /// `https://tile.openstreetmap.org/{z}/{x}/{y}.png`, instead of the built-in offline country
    /// outlines. Tiles are requested with CORS (as OpenStreetMap's and most tile servers allow).
    /// Unset (the default), the map loads nothing from outside.
    #[arg(long, env = "SWITCHBOARD_TILE_URL", value_parser = parse_tile_url)]
    pub tile_url: Option<String>,

    /// Attribution shown under tiles from `--tile-url` (most tile servers require one).
    #[arg(long, env = "SWITCHBOARD_TILE_ATTRIBUTION")]
    pub tile_attribution: Option<String>,

    /// Milliseconds someone stays in a room's online list after their last connection left
    /// (a reload does not make them blink out).
    #[arg(long, env = "SWITCHBOARD_PRESENCE_GRACE_MS", default_value_t = 2000)]
    pub presence_grace_ms: u64,

    /// Seconds raw sensor readings are kept. Older ones are rolled up, once a minute, into one
    /// row per sensor and minute (min, max, average, count) and the raw rows deleted.
    #[arg(long, env = "SWITCHBOARD_SENSOR_RAW_RETENTION_SECS", default_value_t = 24 * 60 * 60)]
    pub sensor_raw_retention_secs: u64,

    /// The most sensor readings one request may carry (HTTP or WebSocket); more get HTTP 413
    /// or `too_large`, and nothing is stored.
    #[arg(long, env = "SWITCHBOARD_SENSOR_BATCH_MAX", default_value_t = 1000)]
    pub sensor_batch_max: usize,

    /// The largest body `POST /api/sensors/{id}/readings` accepts, in bytes; larger ones get HTTP 413.
    #[arg(long, env = "SWITCHBOARD_SENSOR_BODY_MAX_BYTES", default_value_t = 1024 * 1024)]
    pub sensor_body_max_bytes: usize,

    /// Requests (each one reading or a batch) per second each sensor may post, on average,
    /// from any source; more get HTTP 429 or `rate_limited`, and nothing is stored.
    #[arg(long, env = "SWITCHBOARD_SENSOR_REQUEST_RATE", default_value_t = 20.0)]
    pub sensor_request_rate: f64,

    /// Requests each sensor may post at once before the rate applies.
    #[arg(long, env = "SWITCHBOARD_SENSOR_REQUEST_BURST", default_value_t = 100.0)]
    pub sensor_request_burst: f64,

    /// Origins allowed to open WebSockets besides the server's own (comma-separated, e.g.
    /// `https://chat.example.org`). Requests without an Origin header (devices, scripts) are allowed.
    #[arg(long, env = "SWITCHBOARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Serve the map's street tiles from this archive, by the app itself: an MBTiles (SQLite)
    /// or PMTiles (v3) file of raster tiles (PNG, JPEG or WebP), such as a regional extract.
    /// Takes the place of `--tile-url`; its attribution is shown under the map.
    #[arg(long, env = "SWITCHBOARD_TILES", conflicts_with = "tile_url")]
    pub tiles: Option<PathBuf>,

    /// Serve HTTPS and WSS with this certificate chain (PEM); needs `--tls-key`.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", requires = "tls_key", conflicts_with = "tls_self_signed")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve HTTPS and WSS with a self-signed certificate for this machine's names and
    /// addresses, made on the first start and kept in `--data-dir`. Its SHA-256 fingerprint is
    /// printed at every start, to compare with what browsers show.
    #[arg(long, env = "SWITCHBOARD_TLS_SELF_SIGNED", value_parser = clap::builder::BoolishValueParser::new(),
          num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub tls_self_signed: bool,

    /// With HTTPS on, also listen for plain HTTP on this address and redirect every request
    /// to HTTPS (e.g. `0.0.0.0:80`).
    #[arg(long, env = "SWITCHBOARD_HTTP_REDIRECT_ADDR")]
    pub http_redirect_addr: Option<SocketAddr>,

    /// Where the server keeps files of its own (the self-signed certificate and its key).
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

/// A tile URL template must name an http(s) URL or a path on this server, with `{z}`, `{x}`
/// and `{y}` in it.
fn parse_tile_url(template: &str) -> Result<String, String> {
    let scheme_ok = template.starts_with("https://") || template.starts_with("http://") || template.starts_with('/');
    if !scheme_ok {
        return Err("the tile URL must start with https://, http:// or /".into());
    }
    if let Some(missing) = ["{z}", "{x}", "{y}"].into_iter().find(|p| !template.contains(p)) {
        return Err(format!("the tile URL template has no {missing}"));
    }
    Ok(template.to_owned())
}

impl Config {
    /// Whether the server itself speaks HTTPS.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() || self.tls_self_signed
    }

    pub fn coalesce(&self) -> Duration {
        Duration::from_millis(self.coalesce_ms)
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs.max(1))
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(self.heartbeat_secs + 1))
    }

    /// Who checkpoints the database's write-ahead log.
    pub fn checkpoints(&self) -> crate::store::Checkpoints {
        // Zero: SQLite's own (see `Checkpoints::Background`).
        crate::store::Checkpoints::Background(Duration::from_millis(self.checkpoint_ms))
    }

    /// A configuration for tests: a fresh database, an ephemeral port, guests allowed,
    /// and rate limits out of the way (tests that need them set them).
    pub fn for_tests(database_url: String) -> Config {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url,
            redis_url: None,
            redis_prefix: "switchboard:".into(),
            site_root: "target/site".into(),
            max_frame_bytes: 64 * 1024,
            queue_frames: 1024,
            coalesce_ms: 5,
            commit_window_ms: 5,
            checkpoint_ms: CHECKPOINT_MS,
            heartbeat_secs: 3,
            idle_timeout_secs: 8,
            allowed_origins: Vec::new(),
            guest_access: true,
            message_rate: 1e9,
            message_burst: 1e9,
            vote_rate: 1e9,
            vote_burst: 1e9,
            edit_rate: 1e9,
            edit_burst: 1e9,
            presence_grace_ms: 200,
            location_rate: 20.0,
            location_stale_secs: 60,
            tile_url: None,
            tile_attribution: None,
            tiles: None,
            tls_cert: None,
            tls_key: None,
            tls_self_signed: false,
            http_redirect_addr: None,
            data_dir: PathBuf::from("data"),
            sensor_raw_retention_secs: 24 * 60 * 60,
            sensor_batch_max: 1000,
            sensor_body_max_bytes: 1024 * 1024,
            sensor_request_rate: 1e9,
            sensor_request_burst: 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_url_templates_are_checked() {
        assert!(parse_tile_url("https://tile.example.org/{z}/{x}/{y}.png").is_ok());
        assert!(parse_tile_url("/tiles/{z}/{x}/{y}.png").is_ok());
        assert!(parse_tile_url("ftp://tile.example.org/{z}/{x}/{y}.png").is_err());
        let missing = parse_tile_url("https://tile.example.org/{z}/{x}.png").unwrap_err();
        assert!(missing.contains("{y}"), "{missing}");
    }

    #[test]
    fn simulate_options_are_checked() {
        assert_eq!(parse_center(" -33.86, 151.21").unwrap(), Center { latitude: -33.86, longitude: 151.21 });
        assert!(parse_center("52.3").unwrap_err().contains("LAT,LON"));
        assert!(parse_center("95,4").unwrap_err().contains("latitude"));
        assert!(parse_center("52,x").unwrap_err().contains("longitude"));
        assert_eq!(parse_server_url("http://127.0.0.1:3000/").unwrap(), "http://127.0.0.1:3000");
        assert!(parse_server_url("https://example.org").unwrap_err().contains("https"));
        assert!(parse_server_url("127.0.0.1:3000").is_err());
        assert!(parse_server_url("http://h:1/app").unwrap_err().contains("path"));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("NaN").is_err());
        assert_eq!(parse_rate("2.5").unwrap(), 2.5);
        assert!(parse_room("Lobby").is_err());
        assert!(parse_username("a").is_err());
        let cli = Cli::try_parse_from(["switchboard", "simulate", "--sensors", "3", "--center", "-1.5,2"]).unwrap();
        match cli.command {
            Some(Command::Simulate(args)) => {
                assert_eq!((args.sensors, args.walkers, args.room.as_str()), (3, 8, "lobby"));
                assert_eq!(args.center, Center { latitude: -1.5, longitude: 2.0 });
            }
            other => panic!("expected simulate, got {other:?}"),
        }
    }
}
