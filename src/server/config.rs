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
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_SECS", default_value_t = 15)]
    pub heartbeat_secs: u64,

    /// Seconds of silence from a client after which it is dropped.
    #[arg(long, env = "SWITCHBOARD_IDLE_TIMEOUT_SECS", default_value_t = 45)]
    pub idle_timeout_secs: u64,

    /// Origins allowed to open WebSockets besides the server's own (comma-separated, e.g.
    /// `https://chat.example.org`). Requests without an Origin header (devices, scripts) are allowed.
    #[arg(long, env = "SWITCHBOARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
}

impl Config {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs.max(1))
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(self.heartbeat_secs + 1))
    }

    /// A configuration for tests: a fresh database, an ephemeral port.
    pub fn for_tests(database_url: String) -> Config {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url,
            site_root: "target/site".into(),
            max_frame_bytes: 64 * 1024,
            queue_frames: 1024,
            heartbeat_secs: 15,
            idle_timeout_secs: 45,
            allowed_origins: Vec::new(),
        }
    }
}
