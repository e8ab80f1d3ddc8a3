//! Chat's queries: rooms, memberships and read markers; and its messages, which are the
//! events of each room's durable topic (`chat:<room>`) in the store's log of events
//! (`store::events`), with an author and a text as their payload.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::protocol::{chat_topic, ChatMessage};
use crate::store::events::Logged;
use crate::store::{now_ms, on_pool, BeginWrite, Store, StoreError};

/// A room as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub id: i64,
    pub name: String,
    pub epoch: String,
    pub private: bool,
    pub created_by: Option<i64>,
}

/// A row of `rooms`: id, name, epoch, is_private, created_by.
type RoomRow = (i64, String, String, i64, Option<i64>);

fn room((id, name, epoch, private, created_by): RoomRow) -> Room {
    Room { id, name, epoch, private: private != 0, created_by }
}

impl Store {
    pub async fn rooms(&self) -> Result<Vec<Room>, StoreError> {
        let sql = "SELECT id, name, epoch, is_private, created_by FROM rooms ORDER BY name";
        let rows: Vec<RoomRow> = on_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await?);
        Ok(rows.into_iter().map(room).collect())
    }

    pub async fn room(&self, name: &str) -> Result<Option<Room>, StoreError> {
        let sql = "SELECT id, name, epoch, is_private, created_by FROM rooms WHERE name = $1";
        let row: Option<RoomRow> = on_pool!(self, pool => sqlx::query_as(sql).bind(name).fetch_optional(pool).await?);
        Ok(row.map(room))
    }

    /// Create a room; the caller has checked the name. Fails with `RoomExists` on a taken name.
    /// A private room's creator is its first member.
    pub async fn create_room(&self, name: &str, private: bool, created_by: Option<i64>) -> Result<Room, StoreError> {
        let epoch = format!("{:016x}", rand::random::<u64>());
        let id: Result<i64, sqlx::Error> = on_pool!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO rooms (name, epoch, created_at, is_private, created_by) VALUES ($1, $2, $3, $4, $5)
                 RETURNING id",
            )
            .bind(name)
            .bind(&epoch)
            .bind(now_ms())
            .bind(i64::from(private))
            .bind(created_by)
            .fetch_one(&mut *tx)
            .await?;
            if let (true, Some(user)) = (private, created_by) {
                sqlx::query("INSERT INTO room_members (room_id, user_id, added_at) VALUES ($1, $2, $3)")
                    .bind(id)
                    .bind(user)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(id)
        }
        .await);
        match id {
            Ok(id) => Ok(Room { id, name: name.to_owned(), epoch, private, created_by }),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::RoomExists(name.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    /// The room's last offset, 0 when it has no messages.
    pub async fn head(&self, room: &str) -> Result<u64, StoreError> {
        self.log_head(&chat_topic(room)).await
    }

    /// Up to `limit` messages after `offset`, oldest first.
    pub async fn messages_after(&self, room: &str, offset: u64, limit: u32) -> Result<Vec<ChatMessage>, StoreError> {
        self.events_after(&chat_topic(room), offset, limit).await?.into_iter().map(message).collect()
    }

    /// Up to `limit` messages before `before` (the latest when `None`), oldest first, and
    /// whether older ones exist.
    pub async fn messages_before(
        &self,
        room: &str,
        before: Option<u64>,
        limit: u32,
    ) -> Result<(Vec<ChatMessage>, bool), StoreError> {
        let (events, more) = self.events_before(&chat_topic(room), before, limit).await?;
        Ok((events.into_iter().map(message).collect::<Result<_, _>>()?, more))
    }

    /// Every (room, member) pair of private rooms.
    pub async fn memberships(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        let sql = "SELECT room_id, user_id FROM room_members";
        Ok(on_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await?))
    }

    pub async fn add_member(&self, room_id: i64, user_id: i64) -> Result<(), StoreError> {
        let sql = "INSERT INTO room_members (room_id, user_id, added_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
        on_pool!(self, pool => sqlx::query(sql).bind(room_id).bind(user_id).bind(now_ms()).execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn remove_member(&self, room_id: i64, user_id: i64) -> Result<(), StoreError> {
        let sql = "DELETE FROM room_members WHERE room_id = $1 AND user_id = $2";
        on_pool!(self, pool => sqlx::query(sql).bind(room_id).bind(user_id).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Usernames of a private room's members.
    pub async fn member_names(&self, room_id: i64) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT u.username FROM room_members m JOIN users u ON u.id = m.user_id WHERE m.room_id = $1
                   ORDER BY u.username";
        Ok(on_pool!(self, pool => sqlx::query_scalar(sql).bind(room_id).fetch_all(pool).await?))
    }

    /// Move the user's read marker forward (never back).
    pub async fn mark_read(&self, user_id: i64, room_id: i64, offset: u64) -> Result<(), StoreError> {
        let sql = "INSERT INTO room_reads (user_id, room_id, last_read) VALUES ($1, $2, $3)
                   ON CONFLICT (user_id, room_id) DO UPDATE SET last_read = CASE
                       WHEN excluded.last_read > room_reads.last_read THEN excluded.last_read
                       ELSE room_reads.last_read END";
        let offset = offset.min(i64::MAX as u64) as i64;
        on_pool!(self, pool => sqlx::query(sql).bind(user_id).bind(room_id).bind(offset).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// For each room: (room id, head offset, the user's last read offset).
    pub async fn read_state(&self, user_id: i64) -> Result<Vec<(i64, u64, u64)>, StoreError> {
        let sql = "SELECT r.id,
                          (SELECT COALESCE(MAX(seq), 0) FROM events e WHERE e.topic = 'chat:' || r.name),
                          COALESCE((SELECT last_read FROM room_reads x WHERE x.room_id = r.id AND x.user_id = $1), 0)
                   FROM rooms r";
        let rows: Vec<(i64, i64, i64)> =
            on_pool!(self, pool => sqlx::query_as(sql).bind(user_id).fetch_all(pool).await?);
        Ok(rows.into_iter().map(|(room, head, read)| (room, head as u64, read as u64)).collect())
    }
}

/// A chat message's payload in the log of its room's topic.
#[derive(Serialize, Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    author: Cow<'a, str>,
    #[serde(borrow)]
    text: Cow<'a, str>,
    /// A poll's message: the poll (its question is the text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    poll: Option<i64>,
}

/// The payload of a message by `author` (a poll's, with the poll's id).
pub fn payload(author: &str, text: &str, poll: Option<i64>) -> String {
    let body = Body { author: Cow::Borrowed(author), text: Cow::Borrowed(text), poll };
    // Strings and a number: serializing cannot fail.
    serde_json::to_string(&body).unwrap_or_default()
}

/// A message read back from its room's log.
pub fn message(event: Logged) -> Result<ChatMessage, StoreError> {
    let body: Body<'_> = serde_json::from_str(&event.payload).map_err(|e| StoreError::Payload(e.to_string()))?;
    Ok(ChatMessage {
        offset: event.offset,
        id: event.id,
        author: body.author.into_owned(),
        text: body.text.into_owned(),
        ts: event.ts,
        poll: body.poll,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::events::NewEvent;

    use crate::store::testing::each_engine;

    fn new(room: &str, id: &str, text: &str) -> NewEvent {
        NewEvent { topic: Arc::from(chat_topic(room)), id: id.into(), payload: payload("ann", text, None) }
    }

    #[tokio::test]
    async fn messages_are_their_rooms_events() {
        for store in each_engine().await {
            store.create_room("other", false, None).await.unwrap();
            let mut log = store.event_writer().await.unwrap();
            let texts = ["a \"quoted\" <b>text</b>", "é\n😀", "third"];
            let batch = [new("lobby", "1", texts[0]), new("other", "2", texts[1]), new("lobby", "3", texts[2])];
            log.append_batch(&batch).await.unwrap();
            let lobby = store.messages_after("lobby", 0, 10).await.unwrap();
            let read: Vec<_> =
                lobby.iter().map(|m| (m.offset, m.id.as_str(), m.author.as_str(), m.text.as_str())).collect();
            assert_eq!(read, vec![(1, "1", "ann", texts[0]), (2, "3", "ann", texts[2])]);
            assert_eq!(store.messages_after("other", 0, 10).await.unwrap()[0].text, texts[1]);
            assert_eq!((store.head("lobby").await.unwrap(), store.head("other").await.unwrap()), (2, 1));
            let (latest, more) = store.messages_before("lobby", None, 1).await.unwrap();
            assert_eq!((latest[0].offset, more), (2, true));
        }
    }

    #[tokio::test]
    async fn unread_counts_come_from_each_rooms_head() {
        for store in each_engine().await {
            let user = store.create_user("reader", "hash").await.unwrap();
            let lobby = store.room("lobby").await.unwrap().unwrap();
            let mut log = store.event_writer().await.unwrap();
            log.append_batch(&[new("lobby", "1", "a"), new("lobby", "2", "b"), new("lobby", "3", "c")]).await.unwrap();
            store.mark_read(user.id, lobby.id, 1).await.unwrap();
            store.mark_read(user.id, lobby.id, 0).await.unwrap();
            assert_eq!(store.read_state(user.id).await.unwrap(), vec![(lobby.id, 3, 1)], "the marker never moves back");
        }
    }

    /// The migration that moved messages into the log of events keeps every message as it was.
    #[tokio::test]
    async fn the_move_to_the_event_log_keeps_every_message() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/old.db", dir.path().display());
        let options: sqlx::sqlite::SqliteConnectOptions =
            url.parse::<sqlx::sqlite::SqliteConnectOptions>().unwrap().create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::raw_sql(include_str!("../../migrations/sqlite/20261123000001_chat.sql")).execute(&pool).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO rooms (name, epoch, created_at) VALUES ('ops', 'e', 0);
             INSERT INTO messages (room_id, seq, client_id, author, body, ts) VALUES
               (1, 1, 'a', 'ann', 'hi \"there\"', 10), (1, 2, 'b', 'bo', 'yo', 11), (2, 1, 'c', 'cy', 'é', 12);",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::raw_sql(include_str!("../../migrations/sqlite/20261206000003_events.sql")).execute(&pool).await.unwrap();
        let rows: Vec<(String, i64, String, String, i64)> =
            sqlx::query_as("SELECT topic, seq, client_id, payload, ts FROM events ORDER BY topic, seq")
                .fetch_all(&pool)
                .await
                .unwrap();
        let read: Vec<_> = rows
            .into_iter()
            .map(|(topic, seq, id, payload, ts)| {
                let m = message(Logged { offset: seq as u64, id, payload, ts }).unwrap();
                (topic, m.offset, m.id, m.author, m.text, m.ts)
            })
            .collect();
        let row =
            |t: &str, o, i: &str, a: &str, x: &str, ts| (t.to_owned(), o, i.to_owned(), a.to_owned(), x.to_owned(), ts);
        assert_eq!(
            read,
            vec![
                row("chat:lobby", 1, "a", "ann", "hi \"there\"", 10),
                row("chat:lobby", 2, "b", "bo", "yo", 11),
                row("chat:ops", 1, "c", "cy", "é", 12),
            ]
        );
        assert!(sqlx::query("SELECT 1 FROM messages").fetch_all(&pool).await.is_err(), "the old table is gone");
    }

    #[tokio::test]
    async fn appends_succeed_while_other_connections_write() {
        for store in each_engine().await {
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
            let mut log = store.event_writer().await.unwrap();
            for i in 0..200 {
                let out = log.append_batch(&[new("lobby", &format!("c{i}"), "x")]).await;
                assert!(out.is_ok(), "append {i} failed: {out:?}");
            }
            writer.await.unwrap();
        }
    }

    #[tokio::test]
    async fn room_names_are_unique() {
        for store in each_engine().await {
            assert!(matches!(store.create_room("lobby", false, None).await, Err(StoreError::RoomExists(_))));
            store.create_room("x", false, None).await.unwrap();
            let names: Vec<_> = store.rooms().await.unwrap().into_iter().map(|r| r.name).collect();
            assert_eq!(names, vec!["lobby", "x"]);
        }
    }
}
