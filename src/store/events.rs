//! The log of every durable topic (`events`): each event at its offset in its topic, with the
//! id its publisher chose and the feature's payload (JSON). The offsets and the idempotency of
//! every durable topic are kept here, once: [`EventWriter`] is the one writer, which hands out
//! each topic's next offsets and recognises a retry by its id; the readers serve resume and
//! history. Features only say what their payload is (chat: an author and a text).

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Connection, Row};

use super::{now_ms, Store, StoreError};

/// An event on its way into its topic's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub topic: Arc<str>,
    /// The publisher's idempotency key, unique within the topic.
    pub id: String,
    /// The feature's JSON.
    pub payload: String,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// Its offset in its topic: 1, 2, 3, ... with no gaps.
    pub offset: u64,
    pub id: String,
    pub payload: String,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub ts: i64,
}

/// What became of a [`NewEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub event: Logged,
    /// True when an earlier try with the same id was stored already (this one stored nothing).
    pub duplicate: bool,
}

fn row_to_logged(row: &SqliteRow) -> Result<Logged, sqlx::Error> {
    Ok(Logged {
        offset: row.try_get::<i64, _>("seq")? as u64,
        id: row.try_get("client_id")?,
        payload: row.try_get("payload")?,
        ts: row.try_get("ts")?,
    })
}

impl Store {
    /// A topic's last offset, 0 when it has no events.
    pub async fn log_head(&self, topic: &str) -> Result<u64, StoreError> {
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events WHERE topic = ?")
            .bind(topic)
            .fetch_one(&self.pool)
            .await?;
        Ok(head as u64)
    }

    /// Up to `limit` events after `offset`, oldest first.
    pub async fn events_after(&self, topic: &str, offset: u64, limit: u32) -> Result<Vec<Logged>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, client_id, payload, ts FROM events WHERE topic = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(topic)
        .bind(offset.min(i64::MAX as u64) as i64)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(row_to_logged).collect::<Result<_, _>>()?)
    }

    /// Up to `limit` events before `before` (the latest when `None`), oldest first, and
    /// whether older ones exist.
    pub async fn events_before(
        &self,
        topic: &str,
        before: Option<u64>,
        limit: u32,
    ) -> Result<(Vec<Logged>, bool), StoreError> {
        let before = before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64);
        let rows = sqlx::query(
            "SELECT seq, client_id, payload, ts FROM events WHERE topic = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
        )
        .bind(topic)
        .bind(before)
        .bind(limit.saturating_add(1))
        .fetch_all(&self.pool)
        .await?;
        let more = rows.len() > limit as usize;
        let mut events = rows.iter().take(limit as usize).map(row_to_logged).collect::<Result<Vec<_>, _>>()?;
        events.reverse();
        Ok((events, more))
    }

    /// The log's writer: one connection of its own, kept for as long as it runs. There is one
    /// per process (see `realtime::server::durable`).
    pub async fn event_writer(&self) -> Result<EventWriter, StoreError> {
        Ok(EventWriter { conn: self.pool.acquire().await?.detach(), heads: HashMap::new() })
    }
}

/// Appends events: the one writer of the `events` table. Each topic's head (its last offset)
/// is kept in memory, so that the usual batch of new events is one multi-row INSERT, one
/// statement and one trip to SQLite's thread, atomic on its own.
pub struct EventWriter {
    conn: SqliteConnection,
    heads: HashMap<Arc<str>, i64>,
}

impl EventWriter {
    /// Store a batch atomically: each new event at its topic's next offset. An event whose id
    /// its topic has seen comes back as the stored one, marked duplicate, and uses no offset.
    /// On error nothing is stored and no offset is used.
    pub async fn append_batch(&mut self, batch: &[NewEvent]) -> Result<Vec<Appended>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        for event in batch {
            if !self.heads.contains_key(&event.topic) {
                let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events WHERE topic = ?")
                    .bind(&*event.topic)
                    .fetch_one(&mut self.conn)
                    .await?;
                self.heads.insert(event.topic.clone(), head);
            }
        }
        match self.append_new(batch).await {
            Ok(out) => Ok(out),
            // An id seen before: the statement stored nothing. Sort the batch out row by row.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => self.append_with_duplicates(batch).await,
            Err(e) => Err(e.into()),
        }
    }

    /// The usual case: every event is new.
    async fn append_new(&mut self, batch: &[NewEvent]) -> Result<Vec<Appended>, sqlx::Error> {
        let ts = now_ms();
        let mut heads = self.heads.clone();
        let mut out = Vec::with_capacity(batch.len());
        let mut sql = String::from("INSERT INTO events (topic, seq, client_id, payload, ts) VALUES ");
        for i in 0..batch.len() {
            sql.push_str(if i == 0 { "(?, ?, ?, ?, ?)" } else { ", (?, ?, ?, ?, ?)" });
        }
        let mut query = sqlx::query(&sql);
        for event in batch {
            let head = heads.entry(event.topic.clone()).or_insert(0);
            *head += 1;
            query = query.bind(&*event.topic).bind(*head).bind(&event.id).bind(&event.payload).bind(ts);
            out.push(stored(event, *head, ts));
        }
        query.execute(&mut self.conn).await?;
        self.heads = heads;
        Ok(out)
    }

    /// A batch with a retried event in it: one transaction, looking each id up.
    async fn append_with_duplicates(&mut self, batch: &[NewEvent]) -> Result<Vec<Appended>, StoreError> {
        let ts = now_ms();
        let mut heads = self.heads.clone();
        let mut out = Vec::with_capacity(batch.len());
        let mut tx = self.conn.begin_with("BEGIN IMMEDIATE").await?;
        for event in batch {
            let existing =
                sqlx::query("SELECT seq, client_id, payload, ts FROM events WHERE topic = ? AND client_id = ?")
                    .bind(&*event.topic)
                    .bind(&event.id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(row) = existing {
                out.push(Appended { event: row_to_logged(&row)?, duplicate: true });
                continue;
            }
            let head = heads.entry(event.topic.clone()).or_insert(0);
            *head += 1;
            sqlx::query("INSERT INTO events (topic, seq, client_id, payload, ts) VALUES (?, ?, ?, ?, ?)")
                .bind(&*event.topic)
                .bind(*head)
                .bind(&event.id)
                .bind(&event.payload)
                .bind(ts)
                .execute(&mut *tx)
                .await?;
            out.push(stored(event, *head, ts));
        }
        tx.commit().await?;
        self.heads = heads;
        Ok(out)
    }
}

fn stored(event: &NewEvent, offset: i64, ts: i64) -> Appended {
    let event = Logged { offset: offset as u64, id: event.id.clone(), payload: event.payload.clone(), ts };
    Appended { event, duplicate: false }
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

    fn new(topic: &str, id: &str) -> NewEvent {
        NewEvent { topic: Arc::from(topic), id: id.into(), payload: format!(r#"{{"n":"{id}"}}"#) }
    }

    #[tokio::test]
    async fn offsets_increase_per_topic_and_retries_are_stored_once() {
        let (_dir, store) = store().await;
        let (a, b) = ("t:a", "t:b");
        let mut log = store.event_writer().await.unwrap();
        let out = log.append_batch(&[new(a, "1"), new(b, "2"), new(a, "3"), new(a, "1")]).await.unwrap();
        let offsets: Vec<_> = out.iter().map(|x| (x.event.offset, x.duplicate)).collect();
        assert_eq!(offsets, vec![(1, false), (1, false), (2, false), (1, true)]);
        assert_eq!(out[3].event.payload, r#"{"n":"1"}"#, "a duplicate comes back as stored");
        assert_eq!(store.log_head(a).await.unwrap(), 2);
        // The fast path after the slow one, then a new writer (a restart) picks the heads up.
        let next = log.append_batch(&[new(a, "4"), new(b, "5")]).await.unwrap();
        assert_eq!(next.iter().map(|x| x.event.offset).collect::<Vec<_>>(), vec![3, 2]);
        drop(log);
        let mut log = store.event_writer().await.unwrap();
        let after = log.append_batch(&[new(a, "6"), new(a, "4")]).await.unwrap();
        let offsets: Vec<_> = after.iter().map(|x| (x.event.offset, x.duplicate)).collect();
        assert_eq!(offsets, vec![(4, false), (3, true)]);
        assert_eq!((store.log_head(a).await.unwrap(), store.log_head(b).await.unwrap()), (4, 2));
    }

    #[tokio::test]
    async fn a_failed_batch_stores_nothing_and_uses_no_offset() {
        let (_dir, store) = store().await;
        let mut log = store.event_writer().await.unwrap();
        log.append_batch(&[new("t", "a")]).await.unwrap();
        // A payload that is not JSON is refused (a CHECK), and with it the whole batch.
        let bad = NewEvent { topic: Arc::from("t"), id: "c".into(), payload: "{not json".into() };
        assert!(log.append_batch(&[new("t", "b"), bad]).await.is_err());
        assert_eq!(store.log_head("t").await.unwrap(), 1);
        let out = log.append_batch(&[new("t", "b")]).await.unwrap();
        assert_eq!((out[0].event.offset, out[0].duplicate), (2, false));
    }

    #[tokio::test]
    async fn events_page_backwards_and_forwards() {
        let (_dir, store) = store().await;
        let batch: Vec<_> = (0..10).map(|i| new("t", &i.to_string())).collect();
        store.event_writer().await.unwrap().append_batch(&batch).await.unwrap();
        let (latest, more) = store.events_before("t", None, 4).await.unwrap();
        assert_eq!(latest.iter().map(|e| e.offset).collect::<Vec<_>>(), vec![7, 8, 9, 10]);
        assert!(more);
        let (older, more) = store.events_before("t", Some(7), 10).await.unwrap();
        assert_eq!(older.len(), 6);
        assert!(!more);
        let after = store.events_after("t", 8, 10).await.unwrap();
        assert_eq!(after.iter().map(|e| e.offset).collect::<Vec<_>>(), vec![9, 10]);
        assert!(store.events_after("other", 0, 10).await.unwrap().is_empty());
    }
}
