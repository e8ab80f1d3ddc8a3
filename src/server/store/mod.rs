//! The store: what must survive a restart (rooms and their messages, accounts, sensors and
//! their readings), in SQLite.
//!
//! Writes come in batches from the chat log's single writer, one transaction per
//! batch (group commit), so a burst of messages costs one fsync, not one each.
//!
//! The write-ahead log is copied back into the database file (a checkpoint) by a task of
//! its own, on a pooled connection, not a writer's ([`Checkpoints::Background`]). SQLite's
//! default is to do it inside whichever commit passes 1,000 pages of log: every few hundred
//! commits, one would then copy the log and `fsync` the database file before it returns,
//! delaying that batch's acknowledgements and fan-out by milliseconds (docs/benchmarks.md).

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Row};

use crate::protocol::ChatMessage;

mod accounts;
mod sensors;
pub use accounts::{TokenInfo, User};
pub use sensors::{Compacted, ExportRow, NewSensor, ReadingBatch, ReadingsStored, Sensor, MINUTE_MS};

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
}

/// A room as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub id: i64,
    pub name: String,
    pub epoch: String,
    pub private: bool,
    pub created_by: Option<i64>,
}

fn row_to_room(r: &sqlx::sqlite::SqliteRow) -> Result<Room, sqlx::Error> {
    Ok(Room {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        epoch: r.try_get("epoch")?,
        private: r.try_get::<i64, _>("is_private")? != 0,
        created_by: r.try_get("created_by")?,
    })
}

const ROOM_COLUMNS: &str = "id, name, epoch, is_private, created_by";

/// A message on its way in.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub room_id: i64,
    pub client_id: String,
    pub author: String,
    pub text: String,
}

impl NewMessage {
    /// The message as stored, at `offset`.
    fn stored(&self, offset: u64, ts: i64) -> Appended {
        let message = ChatMessage {
            offset,
            id: self.client_id.clone(),
            author: self.author.clone(),
            text: self.text.clone(),
            ts,
        };
        Appended { message, duplicate: false }
    }
}

/// What became of a [`NewMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub message: ChatMessage,
    /// True when an earlier try with the same client id was stored already.
    pub duplicate: bool,
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
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

fn row_to_message(row: &sqlx::sqlite::SqliteRow) -> Result<ChatMessage, sqlx::Error> {
    Ok(ChatMessage {
        offset: row.try_get::<i64, _>("seq")? as u64,
        id: row.try_get("client_id")?,
        author: row.try_get("author")?,
        text: row.try_get("body")?,
        ts: row.try_get("ts")?,
    })
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
        sqlx::migrate!("./migrations").run(&pool).await?;
        if let Checkpoints::Background(every) = checkpoints {
            tokio::spawn(checkpoint_loop(pool.clone(), every));
        }
        Ok(Store { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn rooms(&self) -> Result<Vec<Room>, StoreError> {
        let rows =
            sqlx::query(&format!("SELECT {ROOM_COLUMNS} FROM rooms ORDER BY name")).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(row_to_room).collect::<Result<_, _>>()?)
    }

    pub async fn room(&self, name: &str) -> Result<Option<Room>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE name = ?"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(row_to_room).transpose()?)
    }

    /// Create a room; the caller has checked the name. Fails with `RoomExists` on a taken name.
    /// A private room's creator is its first member.
    pub async fn create_room(&self, name: &str, private: bool, created_by: Option<i64>) -> Result<Room, StoreError> {
        let epoch = format!("{:016x}", rand::random::<u64>());
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let result = sqlx::query(
            "INSERT INTO rooms (name, epoch, created_at, is_private, created_by) VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(name)
        .bind(&epoch)
        .bind(now_ms())
        .bind(private)
        .bind(created_by)
        .fetch_one(&mut *tx)
        .await;
        match result {
            Ok(row) => {
                let id: i64 = row.try_get("id")?;
                if let (true, Some(user)) = (private, created_by) {
                    sqlx::query("INSERT INTO room_members (room_id, user_id, added_at) VALUES (?, ?, ?)")
                        .bind(id)
                        .bind(user)
                        .bind(now_ms())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(Room { id, name: name.to_owned(), epoch, private, created_by })
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::RoomExists(name.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    /// The room's last offset, 0 when it has no messages.
    pub async fn head(&self, room_id: i64) -> Result<u64, StoreError> {
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM messages WHERE room_id = ?")
            .bind(room_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(head as u64)
    }

    /// Up to `limit` messages after `offset`, oldest first.
    pub async fn messages_after(&self, room_id: i64, offset: u64, limit: u32) -> Result<Vec<ChatMessage>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, client_id, author, body, ts FROM messages
             WHERE room_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(room_id)
        .bind(offset as i64)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(row_to_message).collect::<Result<_, _>>()?)
    }

    /// Up to `limit` messages before `before` (the latest when `None`), oldest first, and
    /// whether older ones exist.
    pub async fn messages_before(
        &self,
        room_id: i64,
        before: Option<u64>,
        limit: u32,
    ) -> Result<(Vec<ChatMessage>, bool), StoreError> {
        let before = before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64);
        let rows = sqlx::query(
            "SELECT seq, client_id, author, body, ts FROM messages
             WHERE room_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
        )
        .bind(room_id)
        .bind(before)
        .bind(limit.saturating_add(1))
        .fetch_all(&self.pool)
        .await?;
        let more = rows.len() > limit as usize;
        let mut messages = rows.iter().take(limit as usize).map(row_to_message).collect::<Result<Vec<_>, _>>()?;
        messages.reverse();
        Ok((messages, more))
    }

    /// The chat log's writer: one connection of its own, kept for as long as the log runs.
    pub async fn message_writer(&self) -> Result<MessageWriter, StoreError> {
        Ok(MessageWriter { conn: self.pool.acquire().await?.detach(), heads: HashMap::new() })
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

/// Appends messages: the one writer of the `messages` table. Each room's head (its last
/// offset) is kept in memory, so that the usual batch of new messages is one multi-row
/// INSERT, one statement and one trip to SQLite's thread, atomic on its own.
pub struct MessageWriter {
    conn: SqliteConnection,
    heads: HashMap<i64, i64>,
}

impl MessageWriter {
    /// Store a batch atomically. A message whose client id the room has seen comes back as
    /// the stored one, marked duplicate.
    pub async fn append_batch(&mut self, batch: &[NewMessage]) -> Result<Vec<Appended>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        for m in batch {
            if !self.heads.contains_key(&m.room_id) {
                let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM messages WHERE room_id = ?")
                    .bind(m.room_id)
                    .fetch_one(&mut self.conn)
                    .await?;
                self.heads.insert(m.room_id, head);
            }
        }
        match self.append_new(batch).await {
            Ok(out) => Ok(out),
            // A client id seen before: the statement stored nothing. Sort the batch out row by row.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => self.append_with_duplicates(batch).await,
            Err(e) => Err(e.into()),
        }
    }

    /// The usual case: every message is new.
    async fn append_new(&mut self, batch: &[NewMessage]) -> Result<Vec<Appended>, sqlx::Error> {
        let ts = now_ms();
        let mut heads = self.heads.clone();
        let mut out = Vec::with_capacity(batch.len());
        let mut sql = String::from("INSERT INTO messages (room_id, seq, client_id, author, body, ts) VALUES ");
        for i in 0..batch.len() {
            sql.push_str(if i == 0 { "(?, ?, ?, ?, ?, ?)" } else { ", (?, ?, ?, ?, ?, ?)" });
        }
        let mut query = sqlx::query(&sql);
        for m in batch {
            let head = heads.entry(m.room_id).or_insert(0);
            *head += 1;
            query = query.bind(m.room_id).bind(*head).bind(&m.client_id).bind(&m.author).bind(&m.text).bind(ts);
            out.push(m.stored(*head as u64, ts));
        }
        query.execute(&mut self.conn).await?;
        self.heads = heads;
        Ok(out)
    }

    /// A batch with a retried message in it: one transaction, looking each client id up.
    async fn append_with_duplicates(&mut self, batch: &[NewMessage]) -> Result<Vec<Appended>, StoreError> {
        let ts = now_ms();
        let mut heads = self.heads.clone();
        let mut out = Vec::with_capacity(batch.len());
        let mut tx = self.conn.begin_with("BEGIN IMMEDIATE").await?;
        for m in batch {
            let existing = sqlx::query(
                "SELECT seq, client_id, author, body, ts FROM messages WHERE room_id = ? AND client_id = ?",
            )
            .bind(m.room_id)
            .bind(&m.client_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = existing {
                out.push(Appended { message: row_to_message(&row)?, duplicate: true });
                continue;
            }
            let head = heads.entry(m.room_id).or_insert(0);
            *head += 1;
            sqlx::query("INSERT INTO messages (room_id, seq, client_id, author, body, ts) VALUES (?, ?, ?, ?, ?, ?)")
                .bind(m.room_id)
                .bind(*head)
                .bind(&m.client_id)
                .bind(&m.author)
                .bind(&m.text)
                .bind(ts)
                .execute(&mut *tx)
                .await?;
            out.push(m.stored(*head as u64, ts));
        }
        tx.commit().await?;
        self.heads = heads;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/db/test.db", dir.path().display());
        let store = Store::open(&url).await.unwrap();
        (dir, store)
    }

    fn new(room_id: i64, id: &str) -> NewMessage {
        NewMessage { room_id, client_id: id.into(), author: "a".into(), text: format!("text {id}") }
    }

    #[tokio::test]
    async fn offsets_increase_per_room_and_retries_are_stored_once() {
        let (_dir, store) = store().await;
        let lobby = store.room("lobby").await.unwrap().unwrap();
        let other = store.create_room("other", false, None).await.unwrap();
        let mut log = store.message_writer().await.unwrap();
        let out = log
            .append_batch(&[new(lobby.id, "a"), new(other.id, "b"), new(lobby.id, "c"), new(lobby.id, "a")])
            .await
            .unwrap();
        let offsets: Vec<_> = out.iter().map(|a| (a.message.offset, a.duplicate)).collect();
        assert_eq!(offsets, vec![(1, false), (1, false), (2, false), (1, true)]);
        assert_eq!(store.head(lobby.id).await.unwrap(), 2);
        let again = log.append_batch(&[new(lobby.id, "c"), new(lobby.id, "d")]).await.unwrap();
        assert_eq!((again[0].message.offset, again[0].duplicate), (2, true));
        assert_eq!((again[1].message.offset, again[1].duplicate), (3, false));
        // The fast path again after the slow one, then a new writer (a restart) picks the heads up
        // from the table: no offset is skipped or given twice.
        let next = log.append_batch(&[new(lobby.id, "e"), new(other.id, "f")]).await.unwrap();
        assert_eq!(next.iter().map(|a| a.message.offset).collect::<Vec<_>>(), vec![4, 2]);
        drop(log);
        let mut log = store.message_writer().await.unwrap();
        let after = log.append_batch(&[new(lobby.id, "g"), new(lobby.id, "e")]).await.unwrap();
        let offsets: Vec<_> = after.iter().map(|a| (a.message.offset, a.duplicate)).collect();
        assert_eq!(offsets, vec![(5, false), (4, true)]);
        assert_eq!(store.head(lobby.id).await.unwrap(), 5);
        assert_eq!(store.head(other.id).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_failed_batch_stores_nothing_and_uses_no_offset() {
        let (_dir, store) = store().await;
        let lobby = store.room("lobby").await.unwrap().unwrap();
        let mut log = store.message_writer().await.unwrap();
        log.append_batch(&[new(lobby.id, "a")]).await.unwrap();
        // Room 999 does not exist: the foreign key refuses the row, and with it the batch.
        assert!(log.append_batch(&[new(lobby.id, "b"), new(999, "c")]).await.is_err());
        assert_eq!(store.head(lobby.id).await.unwrap(), 1);
        let out = log.append_batch(&[new(lobby.id, "b")]).await.unwrap();
        assert_eq!((out[0].message.offset, out[0].duplicate), (2, false));
    }

    #[tokio::test]
    async fn history_pages_backwards_and_forwards() {
        let (_dir, store) = store().await;
        let lobby = store.room("lobby").await.unwrap().unwrap();
        let batch: Vec<_> = (0..10).map(|i| new(lobby.id, &i.to_string())).collect();
        store.message_writer().await.unwrap().append_batch(&batch).await.unwrap();
        let (latest, more) = store.messages_before(lobby.id, None, 4).await.unwrap();
        assert_eq!(latest.iter().map(|m| m.offset).collect::<Vec<_>>(), vec![7, 8, 9, 10]);
        assert!(more);
        let (older, more) = store.messages_before(lobby.id, Some(7), 10).await.unwrap();
        assert_eq!(older.len(), 6);
        assert!(!more);
        let after = store.messages_after(lobby.id, 8, 10).await.unwrap();
        assert_eq!(after.iter().map(|m| m.offset).collect::<Vec<_>>(), vec![9, 10]);
    }

    #[tokio::test]
    async fn appends_succeed_while_other_connections_write() {
        let (_dir, store) = store().await;
        let lobby = store.room("lobby").await.unwrap().unwrap();
        let user = store.create_user("reader", "hash").await.unwrap();
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..200u64 {
                    store.mark_read(user.id, lobby.id, i).await.unwrap();
                }
            })
        };
        let mut log = store.message_writer().await.unwrap();
        for i in 0..200 {
            let out = log.append_batch(&[new(lobby.id, &format!("c{i}"))]).await;
            assert!(out.is_ok(), "append {i} failed: {out:?}");
        }
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn room_names_are_unique() {
        let (_dir, store) = store().await;
        assert!(matches!(store.create_room("lobby", false, None).await, Err(StoreError::RoomExists(_))));
        store.create_room("x", false, None).await.unwrap();
        let names: Vec<_> = store.rooms().await.unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, vec!["lobby", "x"]);
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
        let lobby = store.room("lobby").await.unwrap().unwrap();
        let mut log = store.message_writer().await.unwrap();
        for i in 0..commits {
            log.append_batch(&[new(lobby.id, &i.to_string())]).await.unwrap();
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
