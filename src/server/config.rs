//! Command line and environment: everything an operator can set, with its default.

use std::net::SocketAddr;
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
}

/// Settings of a running server.
#[derive(Args, Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "SWITCHBOARD_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// Database URL. The default SQLite file is created and migrated at start.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://data/switchboard.db")]
    pub database_url: String,

    /// Folder holding the built site (`pkg/` with the WASM bundle, CSS, and public assets).
    #[arg(long, env = "SWITCHBOARD_SITE_ROOT", default_value = "target/site")]
    pub site_root: String,

    /// Largest WebSocket frame accepted, in bytes; larger frames get a `too_large` error.
    #[arg(long, env = "SWITCHBOARD_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,

    /// Outbound frames queued per connection before it counts as a slow consumer and is closed.
    #[arg(long, env = "SWITCHBOARD_QUEUE_FRAMES", default_value_t = 1024)]
    pub queue_frames: usize,

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

    /// Origins allowed to open WebSockets besides the server's own (comma-separated, e.g.
    /// `https://chat.example.org`). Requests without an Origin header (devices, scripts) are allowed.
    #[arg(long, env = "SWITCHBOARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
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
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs.max(1))
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(self.heartbeat_secs + 1))
    }

    pub fn chat_limits(&self) -> super::chat::ChatLimits {
        super::chat::ChatLimits {
            message_rate: self.message_rate,
            message_burst: self.message_burst,
            presence_grace: Duration::from_millis(self.presence_grace_ms),
        }
    }

    pub fn sensor_limits(&self) -> super::sensors::SensorLimits {
        super::sensors::SensorLimits {
            batch_max: self.sensor_batch_max.max(1),
            raw_retention: Duration::from_secs(self.sensor_raw_retention_secs),
            body_max_bytes: self.sensor_body_max_bytes.max(1),
        }
    }

    /// A configuration for tests: a fresh database, an ephemeral port, guests allowed,
    /// and rate limits out of the way (tests that need them set them).
    pub fn for_tests(database_url: String) -> Config {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url,
            site_root: "target/site".into(),
            max_frame_bytes: 64 * 1024,
            queue_frames: 1024,
            heartbeat_secs: 3,
            idle_timeout_secs: 8,
            allowed_origins: Vec::new(),
            guest_access: true,
            message_rate: 1e9,
            message_burst: 1e9,
            presence_grace_ms: 200,
            location_rate: 20.0,
            location_stale_secs: 60,
            tile_url: None,
            tile_attribution: None,
            sensor_raw_retention_secs: 24 * 60 * 60,
            sensor_batch_max: 1000,
            sensor_body_max_bytes: 1024 * 1024,
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
}
