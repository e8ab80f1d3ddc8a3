//! The store: what must survive a restart, in SQLite (the default engine). This module opens
//! and migrates the database and keeps it healthy; each feature's queries are an `impl Store`
//! in its own folder (`chat/store.rs`, `sensors/store.rs`, `accounts/store.rs`), so that a
//! second engine is added beside each feature's queries, not through its code.
//!
//! Writes come in batches from each log's single writer, one transaction per batch (group
//! commit), so a burst of messages costs one fsync, not one each.
//!
//! The write-ahead log is copied back into the database file (a checkpoint) by a task of
//! its own, on a pooled connection, not a writer's ([`Checkpoints::Background`]). SQLite's
//! default is to do it inside whichever commit passes 1,000 pages of log: every few hundred
//! commits, one would then copy the log and `fsync` the database file before it returns,
//! delaying that batch's acknowledgements and fan-out by milliseconds (docs/benchmarks.md).

use std::str::FromStr;
use std::time::Duration;

pub mod events;

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
}

#[derive(Clone, Debug)]
pub struct Store {
    /// Each feature's queries (`impl Store` in its `store.rs`) run on it.
    pub(crate) pool: SqlitePool,
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
        Ok(Store { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
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
