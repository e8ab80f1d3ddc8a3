//! Chat's queries: rooms, their messages, memberships and read markers; and the one writer
//! of the `messages` table (the chat log behind `realtime::server::durable`).

use std::collections::HashMap;

use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Row};

use super::protocol::ChatMessage;
use crate::store::{now_ms, Store, StoreError};

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
}
