//! The log of every durable topic (`events`): each event at its offset in its topic, with the
//! id its publisher chose and the feature's payload (JSON). The offsets and the idempotency of
//! every durable topic are kept here, once: [`EventWriter`] is the one writer, which hands out
//! each topic's next offsets and recognises a retry by its id; the readers serve resume and
//! history. Features only say what their payload is (chat: an author and a text).

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqliteConnection;
use sqlx::Connection;

use super::{now_ms, on_pool, Pool, Store, StoreError};

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

/// A row of `events` as read: offset, id, payload, time.
type Row = (i64, String, String, i64);

fn logged((offset, id, payload, ts): Row) -> Logged {
    Logged { offset: offset as u64, id, payload, ts }
}

/// A bound on a count, as both engines take it (PostgreSQL has no unsigned integers).
fn count(n: u32) -> i64 {
    i64::from(n)
}

/// An offset as stored.
fn stored_offset(offset: u64) -> i64 {
    offset.min(i64::MAX as u64) as i64
}

impl Store {
    /// A topic's last offset, 0 when it has no events.
    pub async fn log_head(&self, topic: &str) -> Result<u64, StoreError> {
        let sql = "SELECT COALESCE(MAX(seq), 0) FROM events WHERE topic = $1";
        let head: i64 = on_pool!(self, pool => sqlx::query_scalar(sql).bind(topic).fetch_one(pool).await?);
        Ok(head as u64)
    }

    /// The last offsets of several topics (those with events).
    pub async fn log_heads(&self, topics: &[&str]) -> Result<HashMap<String, u64>, StoreError> {
        let heads: Vec<(String, i64)> = match &self.pool {
            // The counter rows: one index lookup each.
            Pool::Postgres(pool) => {
                sqlx::query_as("SELECT topic, head FROM topics WHERE topic = ANY($1)")
                    .bind(topics)
                    .fetch_all(pool)
                    .await?
            }
            Pool::Sqlite(pool) => {
                let mut heads = Vec::with_capacity(topics.len());
                for topic in topics {
                    let sql = "SELECT COALESCE(MAX(seq), 0) FROM events WHERE topic = $1";
                    let head: i64 = sqlx::query_scalar(sql).bind(topic).fetch_one(pool).await?;
                    heads.push(((*topic).to_owned(), head));
                }
                heads
            }
        };
        Ok(heads.into_iter().filter(|&(_, head)| head > 0).map(|(topic, head)| (topic, head as u64)).collect())
    }

    /// Up to `limit` events after `offset`, oldest first.
    pub async fn events_after(&self, topic: &str, offset: u64, limit: u32) -> Result<Vec<Logged>, StoreError> {
        let sql = self.pick(
            "SELECT seq, client_id, payload, ts FROM events WHERE topic = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            "SELECT seq, client_id, payload::text, ts FROM events WHERE topic = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        );
        let rows: Vec<Row> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(topic)
            .bind(stored_offset(offset))
            .bind(count(limit))
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(logged).collect())
    }

    /// Up to `limit` events before `before` (the latest when `None`), oldest first, and
    /// whether older ones exist.
    pub async fn events_before(
        &self,
        topic: &str,
        before: Option<u64>,
        limit: u32,
    ) -> Result<(Vec<Logged>, bool), StoreError> {
        let before = before.map_or(i64::MAX, stored_offset);
        let sql = self.pick(
            "SELECT seq, client_id, payload, ts FROM events WHERE topic = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
            "SELECT seq, client_id, payload::text, ts FROM events WHERE topic = $1 AND seq < $2
             ORDER BY seq DESC LIMIT $3",
        );
        let rows: Vec<Row> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(topic)
            .bind(before)
            .bind(count(limit) + 1)
            .fetch_all(pool)
            .await?);
        let more = rows.len() > limit as usize;
        let mut events: Vec<Logged> = rows.into_iter().take(limit as usize).map(logged).collect();
        events.reverse();
        Ok((events, more))
    }

    /// The log's writer. On SQLite there is one per process (see `realtime::server::durable`),
    /// with a connection of its own, kept for as long as it runs. On PostgreSQL there is one per
    /// node, and the nodes' writers take offsets from each topic's counter row.
    pub async fn event_writer(&self) -> Result<EventWriter, StoreError> {
        Ok(match &self.pool {
            Pool::Sqlite(pool) => {
                EventWriter::Sqlite(SqliteWriter { conn: pool.acquire().await?.detach(), heads: HashMap::new() })
            }
            Pool::Postgres(pool) => EventWriter::Postgres(PostgresWriter { pool: pool.clone() }),
        })
    }
}

/// Appends events. The usual batch of new events is a few statements in one transaction,
/// atomic: on error nothing is stored and no offset is used.
pub enum EventWriter {
    Sqlite(SqliteWriter),
    Postgres(PostgresWriter),
}

impl EventWriter {
    /// Store a batch atomically: each new event at its topic's next offset. An event whose id
    /// its topic has seen (before, or earlier in the batch) comes back as the stored one,
    /// marked duplicate, and uses no offset. On error nothing is stored and no offset is used.
    pub async fn append_batch(&mut self, batch: &[NewEvent]) -> Result<Vec<Appended>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            EventWriter::Sqlite(writer) => writer.append_batch(batch).await,
            EventWriter::Postgres(writer) => writer.append_batch(batch).await,
        }
    }
}

/// SQLite's writer: the one writer of the `events` table. Each topic's head (its last offset)
/// is kept in memory, so that the usual batch of new events is one multi-row INSERT, one
/// statement and one trip to SQLite's thread, atomic on its own.
pub struct SqliteWriter {
    conn: SqliteConnection,
    heads: HashMap<Arc<str>, i64>,
}

impl SqliteWriter {
    async fn append_batch(&mut self, batch: &[NewEvent]) -> Result<Vec<Appended>, StoreError> {
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
            let existing: Option<Row> =
                sqlx::query_as("SELECT seq, client_id, payload, ts FROM events WHERE topic = ? AND client_id = ?")
                    .bind(&*event.topic)
                    .bind(&event.id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(row) = existing {
                out.push(Appended { event: logged(row), duplicate: true });
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

/// PostgreSQL's writer, one per node. Offsets come from each topic's counter row in `topics`,
/// updated in the batch's own transaction: the row's lock, held until commit, orders the
/// nodes' writers, so offsets are gap-free and follow commit order, and a rollback gives them
/// back (a sequence would not: ids can commit out of order, and a rollback skips them).
pub struct PostgresWriter {
    pool: PgPool,
}

/// SQLSTATEs of a transaction PostgreSQL gave up to break a deadlock or a serialization
/// conflict: tried again.
const RETRY_STATES: [&str; 2] = ["40P01", "40001"];

/// How many times a batch is tried when PostgreSQL asks for it again.
const TRIES: usize = 3;

impl PostgresWriter {
    async fn append_batch(&mut self, batch: &[NewEvent]) -> Result<Vec<Appended>, StoreError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.try_batch(batch).await {
                Err(sqlx::Error::Database(e))
                    if tries < TRIES && e.code().is_some_and(|code| RETRY_STATES.contains(&&*code)) => {}
                other => return Ok(other?),
            }
        }
    }

    /// One transaction, whatever the number of topics: lock the batch's counters (in topic
    /// order, so that two writers never wait for each other in a circle), look the batch's ids
    /// up, insert the new events at the next offsets, and move the counters on.
    async fn try_batch(&self, batch: &[NewEvent]) -> Result<Vec<Appended>, sqlx::Error> {
        let mut topics: Vec<&str> = batch.iter().map(|e| &*e.topic).collect();
        topics.sort_unstable();
        topics.dedup();
        let mut tx = self.pool.begin().await?;
        let locked: Vec<(String, i64)> = sqlx::query_as(
            "INSERT INTO topics (topic, head) SELECT t, 0 FROM UNNEST($1::text[]) AS t ORDER BY t
             ON CONFLICT (topic) DO UPDATE SET head = topics.head RETURNING topic, head",
        )
        .bind(&topics)
        .fetch_all(&mut *tx)
        .await?;
        let mut heads: HashMap<String, i64> = locked.into_iter().collect();
        // With the counters locked, every earlier event of these topics is committed: a retry
        // is found here whichever node stored its first try.
        let (batch_topics, batch_ids): (Vec<&str>, Vec<&str>) =
            batch.iter().map(|e| (&*e.topic, e.id.as_str())).unzip();
        let found: Vec<(String, i64, String, String, i64)> = sqlx::query_as(
            "SELECT topic, seq, client_id, payload::text, ts FROM events
             WHERE (topic, client_id) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))",
        )
        .bind(&batch_topics)
        .bind(&batch_ids)
        .fetch_all(&mut *tx)
        .await?;
        let mut known: HashMap<(String, String), Logged> = found
            .into_iter()
            .map(|(topic, offset, id, payload, ts)| ((topic, id.clone()), logged((offset, id, payload, ts))))
            .collect();
        let ts = now_ms();
        let mut out = Vec::with_capacity(batch.len());
        let (mut new_topics, mut new_offsets, mut new_ids, mut new_payloads) = (vec![], vec![], vec![], vec![]);
        for event in batch {
            let key = (event.topic.to_string(), event.id.clone());
            if let Some(existing) = known.get(&key) {
                out.push(Appended { event: existing.clone(), duplicate: true });
                continue;
            }
            let head = heads.entry(key.0.clone()).or_insert(0);
            *head += 1;
            let appended = stored(event, *head, ts);
            known.insert(key, appended.event.clone());
            new_topics.push(&*event.topic);
            new_offsets.push(*head);
            new_ids.push(event.id.as_str());
            new_payloads.push(event.payload.as_str());
            out.push(appended);
        }
        if !new_topics.is_empty() {
            sqlx::query(
                "INSERT INTO events (topic, seq, client_id, payload, ts)
                 SELECT t, s, c, p::json, $5 FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[]) AS u(t, s, c, p)",
            )
            .bind(&new_topics)
            .bind(&new_offsets)
            .bind(&new_ids)
            .bind(&new_payloads)
            .bind(ts)
            .execute(&mut *tx)
            .await?;
            let (moved, to): (Vec<&str>, Vec<i64>) =
                topics.iter().filter_map(|t| heads.get(*t).map(|head| (*t, *head))).unzip();
            sqlx::query(
                "UPDATE topics SET head = u.h FROM UNNEST($1::text[], $2::int8[]) AS u(t, h) WHERE topics.topic = u.t",
            )
            .bind(&moved)
            .bind(&to)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
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
    use crate::store::testing::each_engine;

    fn new(topic: &str, id: &str) -> NewEvent {
        NewEvent { topic: Arc::from(topic), id: id.into(), payload: format!(r#"{{"n":"{id}"}}"#) }
    }

    #[tokio::test]
    async fn offsets_increase_per_topic_and_retries_are_stored_once() {
        for store in each_engine().await {
            let engine = store.engine();
            let (a, b) = ("t:a", "t:b");
            let mut log = store.event_writer().await.unwrap();
            let out = log.append_batch(&[new(a, "1"), new(b, "2"), new(a, "3"), new(a, "1")]).await.unwrap();
            let offsets: Vec<_> = out.iter().map(|x| (x.event.offset, x.duplicate)).collect();
            assert_eq!(offsets, vec![(1, false), (1, false), (2, false), (1, true)], "{engine:?}");
            assert_eq!(out[3].event.payload, r#"{"n":"1"}"#, "a duplicate comes back as stored");
            assert_eq!(store.log_head(a).await.unwrap(), 2);
            // The fast path after the slow one, then a new writer (a restart) picks the heads up.
            let next = log.append_batch(&[new(a, "4"), new(b, "5")]).await.unwrap();
            assert_eq!(next.iter().map(|x| x.event.offset).collect::<Vec<_>>(), vec![3, 2], "{engine:?}");
            drop(log);
            let mut log = store.event_writer().await.unwrap();
            let after = log.append_batch(&[new(a, "6"), new(a, "4")]).await.unwrap();
            let offsets: Vec<_> = after.iter().map(|x| (x.event.offset, x.duplicate)).collect();
            assert_eq!(offsets, vec![(4, false), (3, true)], "{engine:?}");
            assert_eq!((store.log_head(a).await.unwrap(), store.log_head(b).await.unwrap()), (4, 2));
            let stored = store.events_after(a, 0, 10).await.unwrap();
            assert_eq!(stored[2].payload, r#"{"n":"4"}"#, "{engine:?}: the payload reads back as written");
        }
    }

    #[tokio::test]
    async fn a_failed_batch_stores_nothing_and_uses_no_offset() {
        for store in each_engine().await {
            let mut log = store.event_writer().await.unwrap();
            log.append_batch(&[new("t", "a")]).await.unwrap();
            // A payload that is not JSON is refused, and with it the whole batch.
            let bad = NewEvent { topic: Arc::from("t"), id: "c".into(), payload: "{not json".into() };
            assert!(log.append_batch(&[new("t", "b"), bad]).await.is_err());
            assert_eq!(store.log_head("t").await.unwrap(), 1);
            let out = log.append_batch(&[new("t", "b")]).await.unwrap();
            assert_eq!((out[0].event.offset, out[0].duplicate), (2, false), "{:?}", store.engine());
        }
    }

    #[tokio::test]
    async fn events_page_backwards_and_forwards() {
        for store in each_engine().await {
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

    /// Several nodes' writers on one PostgreSQL: each event stored once, at its own offset, and
    /// every topic's offsets 1..n with no gap, also with retries racing their first tries.
    #[tokio::test]
    async fn writers_on_several_nodes_share_each_topics_offsets() {
        let store = crate::store::testing::postgres().await;
        let mut writers = Vec::new();
        for node in 0..4 {
            let store = store.store.clone();
            writers.push(tokio::spawn(async move {
                let mut log = store.event_writer().await.unwrap();
                let mut got = Vec::new();
                for i in 0..30 {
                    // Each node stores its own events and retries its neighbour's (same ids).
                    let mine = new(["t:a", "t:b"][i % 2], &format!("{node}-{i}"));
                    let retry = new(["t:a", "t:b"][i % 2], &format!("{}-{i}", (node + 1) % 4));
                    got.extend(log.append_batch(&[mine, retry]).await.unwrap());
                }
                got
            }));
        }
        let mut firsts = Vec::new();
        for writer in writers {
            for appended in writer.await.unwrap() {
                if !appended.duplicate {
                    firsts.push(appended.event.offset);
                }
            }
        }
        assert_eq!(firsts.len(), 120, "each of the 120 ids was stored once");
        for topic in ["t:a", "t:b"] {
            let offsets: Vec<u64> =
                store.events_after(topic, 0, 1000).await.unwrap().iter().map(|e| e.offset).collect();
            assert_eq!(offsets, (1..=60).collect::<Vec<u64>>(), "{topic}");
        }
    }
}
