//! The store: what must survive a restart, in SQLite (the default engine, one process) or in
//! PostgreSQL (several nodes, `--database-url postgres://...`). This module opens and migrates
//! the database and keeps it healthy; each feature's queries are an `impl Store` in its own
//! folder (`chat/store.rs`, `sensors/store.rs`, `accounts/store.rs`).
//!
//! The two engines are two native sqlx pools ([`Pool`]), not `sqlx::AnyPool`, which has no
//! arrays, no JSON and drops SQLite's connection options (docs/architecture.md, "Engines"). A
//! query whose SQL both engines take is written once, with `$N` placeholders, and compiled for
//! each pool by [`on_pool!`]; where they differ, [`Store::pick`] chooses the text.
//!
//! Writes come in batches from each log's single writer, one transaction per batch (group
//! commit), so a burst of messages costs one fsync, not one each.
//!
//! On SQLite, the write-ahead log is copied back into the database file (a checkpoint) by a
//! task of its own, on a pooled connection, not a writer's ([`Checkpoints::Background`]).
//! SQLite's default is to do it inside whichever commit passes 1,000 pages of log: every few
//! hundred commits, one would then copy the log and `fsync` the database file before it
//! returns, delaying that batch's acknowledgements and fan-out by milliseconds
//! (docs/benchmarks.md).

use std::str::FromStr;
use std::time::Duration;

pub mod events;
pub mod testing;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the database folder {path}: {source}")]
    Folder { path: String, source: std::io::Error },
    #[error("a room named {0:?} exists already")]
    RoomExists(String),
    #[error("the name {0:?} is taken")]
    NameTaken(String),
    #[error("a stored event is not readable: {0}")]
    Payload(String),
    #[error("unsupported database URL {0:?}: give sqlite://FILE or postgres://...")]
    Url(String),
}

/// The engine's pool. Each feature's queries (`impl Store` in its `store.rs`) run on it.
#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Run `$body` with `$pool` bound to the store's pool, whichever engine it is: the body is
/// compiled once per engine, so the same query text and binds serve both.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// A transaction that writes: on SQLite it takes the write lock at once (`BEGIN IMMEDIATE`,
/// so that it never fails half-way for want of it); on PostgreSQL a plain one (READ
/// COMMITTED), whose row locks order concurrent writers.
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>> + Send;
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin().await
    }
}

/// Which engine a database URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn of(url: &str) -> Option<Engine> {
        if url.starts_with("sqlite:") {
            Some(Engine::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Engine::Postgres)
        } else {
            None
        }
    }
}

/// Connections per node to PostgreSQL: the writers' batches and the readers' queries share
/// them. Six nodes hold 96, under PostgreSQL's default limit of 100.
const POSTGRES_CONNECTIONS: u32 = 16;

#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) pool: Pool,
}

/// Who copies the write-ahead log back into the database file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checkpoints {
    /// A task of the store's, this often, on a pooled connection, while writers carry on
    /// (a `PASSIVE` checkpoint waits for no one). A commit checkpoints only when commits
    /// came nearly back to back long enough for the log to reach 4,000 pages (see
    /// `checkpoint_loop`). A zero interval means [`Checkpoints::InCommit`].
    Background(Duration),
    /// SQLite's default: the commit that takes the log past 1,000 pages, before it returns.
    InCommit,
}

/// How often the background task checkpoints by default.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

impl Default for Checkpoints {
    fn default() -> Self {
        Checkpoints::Background(CHECKPOINT_EVERY)
    }
}

/// The file a `sqlite:` URL names, if it names one.
fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Store {
    /// Open (creating the file and its folder if needed) and migrate the database, with
    /// checkpoints in the background.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, Checkpoints::default()).await
    }

    /// As [`Store::open`], with checkpoints made as `checkpoints` says. The background task
    /// ends when the store is closed.
    pub async fn open_with(url: &str, checkpoints: Checkpoints) -> Result<Store, StoreError> {
        match Engine::of(url) {
            Some(Engine::Sqlite) => Store::open_sqlite(url, checkpoints).await,
            Some(Engine::Postgres) => Store::open_postgres(url).await,
            None => Err(StoreError::Url(url.to_owned())),
        }
    }

    /// Connect to PostgreSQL and migrate (the migrator takes an advisory lock: nodes that start
    /// together apply each migration once).
    async fn open_postgres(url: &str) -> Result<Store, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(POSTGRES_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        // As for SQLite below: after adding a migration file, touch this file.
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Store { pool: Pool::Postgres(pool) })
    }

    async fn open_sqlite(url: &str, checkpoints: Checkpoints) -> Result<Store, StoreError> {
        let checkpoints = match checkpoints {
            // No interval to wait: SQLite's own, then.
            Checkpoints::Background(every) if every.is_zero() => Checkpoints::InCommit,
            other => other,
        };
        if let Some(path) = sqlite_file(url) {
            if let Some(parent) = std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|source| StoreError::Folder { path: parent.display().to_string(), source })?;
            }
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // An acknowledged message must survive a power cut, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let options = match checkpoints {
            Checkpoints::Background(_) => options.pragma("wal_autocheckpoint", LOG_BOUND),
            Checkpoints::InCommit => options,
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // A local file: a ping before each use would only cost a trip to SQLite's thread.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        // The migrations are compiled in. Cargo rebuilds when one of them changes, but does not
        // see a new file: after adding one, touch this file (a build script would, but it
        // changes the crate's hash, and with it the browser bundle's split names and sizes).
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        if let Checkpoints::Background(every) = checkpoints {
            tokio::spawn(checkpoint_loop(pool.clone(), every));
        }
        Ok(Store { pool: Pool::Sqlite(pool) })
    }

    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }

    pub fn engine(&self) -> Engine {
        match self.pool {
            Pool::Sqlite(_) => Engine::Sqlite,
            Pool::Postgres(_) => Engine::Postgres,
        }
    }

    /// The SQL text for this store's engine, where the two differ.
    pub(crate) fn pick(&self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => sqlite,
            Pool::Postgres(_) => postgres,
        }
    }
}

/// Pages of log at which a commit checkpoints itself after all, when checkpoints are made in
/// the background: 4× SQLite's default mark, 16 MiB of log with 4 KiB pages.
const LOG_BOUND: &str = "4000";

/// Checkpoint every `every` until the pool closes.
///
/// A `PASSIVE` checkpoint copies what no reader still needs and waits for nobody, the
/// writers included. The log starts over at the first write that begins with all of it
/// copied back, so only when a checkpoint starts and ends between two commits. With gaps
/// between commits (50 messages/s, measured) that happens at every tick and no commit ever
/// checkpoints. When commits come nearly back to back (200/s, the writer's batches 5 ms
/// apart) it rarely does: the log grows to [`LOG_BOUND`] pages and the commit that passes it
/// checkpoints itself, as with SQLite's default but 4× less often and with most pages
/// copied back already (docs/benchmarks.md). A `RESTART` checkpoint from here would bound
/// the log too, but it keeps writers out while it waits for readers, up to the busy timeout.
async fn checkpoint_loop(pool: SqlitePool, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let closed = pool.close_event();
    tokio::pin!(closed);
    loop {
        tokio::select! {
            _ = &mut closed => return,
            _ = ticks.tick() => {}
        }
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(%error, "checkpoint failed; the next tick tries again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    // The checkpoint tests write through the busiest writer there is, the log of events.
    use events::NewEvent;

    fn new(topic: &str, id: &str) -> NewEvent {
        NewEvent { topic: Arc::from(topic), id: id.into(), payload: format!(r#"{{"text":"text {id}"}}"#) }
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(sqlite_file("sqlite://data/s.db"), Some("data/s.db"));
        assert_eq!(sqlite_file("sqlite:data/s.db?mode=rwc"), Some("data/s.db"));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://x"), None);
    }

    /// How many frames the write-ahead log beside `db` holds room for (its file is reused
    /// from the start once a checkpoint has copied everything back, never shrunk).
    fn wal_frames(db: &std::path::Path) -> u64 {
        let wal = std::fs::metadata(format!("{}-wal", db.display())).map_or(0, |m| m.len());
        wal.saturating_sub(32) / (24 + 4096)
    }

    /// `commits` one-message commits (two or more log frames each) into a fresh database
    /// checkpointed as `checkpoints` says, back to back or with `gaps`: a pause after every
    /// group of so many; then the log's size in frames.
    async fn log_after(checkpoints: Checkpoints, commits: usize, gaps: Option<(usize, Duration)>) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("test.db");
        let store = Store::open_with(&format!("sqlite://{}", db.display()), checkpoints).await.unwrap();
        let mut log = store.event_writer().await.unwrap();
        for i in 0..commits {
            log.append_batch(&[new("chat:lobby", &i.to_string())]).await.unwrap();
            if let Some((_, pause)) = gaps.filter(|&(group, _)| (i + 1) % group == 0) {
                tokio::time::sleep(pause).await;
            }
        }
        let frames = wal_frames(&db);
        drop(log);
        store.close().await;
        frames
    }

    #[tokio::test]
    async fn commits_leave_checkpoints_to_the_background_task() {
        // With SQLite's default, the commit that passed 1,000 pages copied the log back
        // itself, and the log started over: it never grew much past 1,000 frames.
        let in_commit = log_after(Checkpoints::InCommit, 1000, None).await;
        assert!((900..=1100).contains(&in_commit), "{in_commit} frames");
        // With a background task that has not come yet, no commit checkpointed: the log
        // holds every commit.
        let hour = Checkpoints::Background(Duration::from_secs(3600));
        let untouched = log_after(hour, 1000, None).await;
        assert!(untouched >= 2000, "{untouched} frames");
        // With one every few milliseconds and long gaps between groups of commits, the task
        // copies the log back in a gap, and the next commit starts it over. (A gap missed now
        // and then on a slow disk leaves two groups in the log, still far from all five.)
        let often = Checkpoints::Background(Duration::from_millis(5));
        let with_gaps = log_after(often, 1000, Some((200, Duration::from_millis(300)))).await;
        assert!(with_gaps < 1600, "{with_gaps} frames");
        // Back to back, no gap comes: the commit that takes the log past the bound
        // checkpoints itself, and the log starts over there.
        let bounded = log_after(hour, 2200, None).await;
        assert!((3900..=4300).contains(&bounded), "{bounded} frames");
    }
}
