//! Documents' queries, on both engines: a room's documents (list, create, rename, delete) and
//! each document's snapshot. A document's edits are the events of its durable topic
//! (`doc:<id>`, `crate::store::events`); a snapshot folds them up to an offset, so that opening a
//! long-edited document reads one row and the few events after it.

use super::protocol::{decode_base64, doc_topic};
use crate::store::{now_ms, on_pool, Engine, Store, StoreError};

/// A document as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub id: i64,
    pub room_id: i64,
    pub name: String,
    pub creator_key: String,
    pub creator_name: String,
    pub created_at: i64,
}

/// A document's state up to (and with) offset `upto` of its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub upto: u64,
    pub state: Vec<u8>,
}

/// An edit in a document's log: when, and whose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub offset: u64,
    pub ts: i64,
    pub author: String,
}

fn taken(error: sqlx::Error, name: &str) -> StoreError {
    match &error {
        sqlx::Error::Database(e) if e.is_unique_violation() => StoreError::NameTaken(name.to_owned()),
        _ => StoreError::Db(error),
    }
}

type DocumentRow = (i64, i64, String, String, String, i64);

const COLUMNS: &str = "id, room_id, name, creator_key, creator_name, created_at";

fn document((id, room_id, name, creator_key, creator_name, created_at): DocumentRow) -> Document {
    Document { id, room_id, name, creator_key, creator_name, created_at }
}

impl Store {
    /// Make a document in a room; `name` is checked by the caller (`clean_name`), and taken
    /// by no other document of the room ([`StoreError::NameTaken`]).
    pub async fn create_document(
        &self,
        room_id: i64,
        name: &str,
        creator_key: &str,
        creator_name: &str,
    ) -> Result<Document, StoreError> {
        let now = now_ms();
        let sql = "INSERT INTO documents (room_id, name, creator_key, creator_name, created_at)
                   VALUES ($1, $2, $3, $4, $5) RETURNING id";
        let id: i64 = on_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(room_id)
            .bind(name)
            .bind(creator_key)
            .bind(creator_name)
            .bind(now)
            .fetch_one(pool)
            .await
            .map_err(|e| taken(e, name))?);
        let (creator_key, creator_name) = (creator_key.to_owned(), creator_name.to_owned());
        Ok(Document { id, room_id, name: name.to_owned(), creator_key, creator_name, created_at: now })
    }

    /// A document that is not deleted.
    pub async fn document(&self, id: i64) -> Result<Option<Document>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM documents WHERE id = $1 AND deleted_at IS NULL");
        let row: Option<DocumentRow> =
            on_pool!(self, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?);
        Ok(row.map(document))
    }

    /// A room's documents, by name.
    pub async fn documents_in_room(&self, room_id: i64) -> Result<Vec<Document>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM documents WHERE room_id = $1 AND deleted_at IS NULL ORDER BY name, id");
        let rows: Vec<DocumentRow> = on_pool!(self, pool => sqlx::query_as(&sql).bind(room_id).fetch_all(pool).await?);
        Ok(rows.into_iter().map(document).collect())
    }

    /// The room's document of that name.
    pub async fn document_named(&self, room_id: i64, name: &str) -> Result<Option<Document>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM documents WHERE room_id = $1 AND name = $2 AND deleted_at IS NULL");
        let row: Option<DocumentRow> =
            on_pool!(self, pool => sqlx::query_as(&sql).bind(room_id).bind(name).fetch_optional(pool).await?);
        Ok(row.map(document))
    }

    /// Rename a document; false if there is none (or it is deleted).
    pub async fn rename_document(&self, id: i64, name: &str) -> Result<bool, StoreError> {
        let sql = "UPDATE documents SET name = $1 WHERE id = $2 AND deleted_at IS NULL";
        let done = on_pool!(self, pool => sqlx::query(sql)
            .bind(name)
            .bind(id)
            .execute(pool)
            .await
            .map_err(|e| taken(e, name))?
            .rows_affected());
        Ok(done == 1)
    }

    /// Delete a document, its snapshot and its log; false if there was none.
    pub async fn delete_document(&self, id: i64) -> Result<bool, StoreError> {
        let mark = "UPDATE documents SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL";
        let snapshot = "DELETE FROM document_snapshots WHERE document_id = $1";
        let log = "DELETE FROM events WHERE topic = $1";
        let topic = doc_topic(id);
        let done = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query(mark).bind(now_ms()).bind(id).execute(&mut *tx).await?.rows_affected();
            sqlx::query(snapshot).bind(id).execute(&mut *tx).await?;
            sqlx::query(log).bind(&topic).execute(&mut *tx).await?;
            tx.commit().await?;
            done
        });
        Ok(done == 1)
    }

    /// Every edit in a document's log after `offset`, oldest first: when, and whose (for its
    /// history; the updates themselves are not read).
    pub async fn edits(&self, id: i64, offset: u64) -> Result<Vec<Edit>, StoreError> {
        let author = match self.engine() {
            Engine::Sqlite => "json_extract(payload, '$.author')",
            Engine::Postgres => "(payload::jsonb)->>'author'",
        };
        let sql =
            format!("SELECT seq, ts, COALESCE({author}, '') FROM events WHERE topic = $1 AND seq > $2 ORDER BY seq");
        let rows: Vec<(i64, i64, String)> = on_pool!(self, pool => sqlx::query_as(&sql)
            .bind(doc_topic(id))
            .bind(offset as i64)
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(|(offset, ts, author)| Edit { offset: offset as u64, ts, author }).collect())
    }

    /// The updates of a document's log at offsets after `after` and up to `upto`, oldest first.
    ///
    /// They come back as one row, the updates' base64 joined by the database: read row by row,
    /// a long log cost far more in handing rows over than in anything else (a document of
    /// 100,000 edits took half a second to open). The aggregate joins them in the order its
    /// subquery gives them, by offset: sorting them again in it cost a fifth more on both
    /// engines, and the order is only for speed (updates commute: any order gives the same
    /// text). On PostgreSQL the column is `json`, read as it was written; a cast to `jsonb` cost
    /// half as much again. Callers read a long log a range of offsets at a time: with `LIMIT`
    /// instead, a planner without fresh statistics sorted the whole rest of the log for each page.
    pub async fn updates(&self, id: i64, after: u64, upto: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let sql = self.pick(
            "SELECT group_concat(json_extract(payload, '$.update'), ' ')
             FROM (SELECT payload FROM events WHERE topic = $1 AND seq > $2 AND seq <= $3 ORDER BY seq)",
            "SELECT string_agg(payload->>'update', ' ')
             FROM (SELECT payload FROM events WHERE topic = $1 AND seq > $2 AND seq <= $3 ORDER BY seq) page",
        );
        let upto = i64::try_from(upto).unwrap_or(i64::MAX);
        let joined: Option<String> = on_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(doc_topic(id))
            .bind(after as i64)
            .bind(upto)
            .fetch_one(pool)
            .await?);
        let Some(joined) = joined else { return Ok(Vec::new()) };
        joined
            .split(' ')
            .map(|update| {
                decode_base64(update).ok_or_else(|| StoreError::Payload("an update that is not base64".into()))
            })
            .collect()
    }

    /// The document's snapshot, if one was taken.
    pub async fn snapshot(&self, id: i64) -> Result<Option<Snapshot>, StoreError> {
        let sql = "SELECT upto, state FROM document_snapshots WHERE document_id = $1";
        let row: Option<(i64, Vec<u8>)> =
            on_pool!(self, pool => sqlx::query_as(sql).bind(id).fetch_optional(pool).await?);
        Ok(row.map(|(upto, state)| Snapshot { upto: upto as u64, state }))
    }

    /// Keep `snapshot` as the document's, unless the one kept already goes further.
    pub async fn save_snapshot(&self, id: i64, snapshot: &Snapshot) -> Result<bool, StoreError> {
        let sql = "INSERT INTO document_snapshots (document_id, upto, state, taken_at) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (document_id) DO UPDATE SET upto = excluded.upto, state = excluded.state,
                       taken_at = excluded.taken_at
                   WHERE document_snapshots.upto < excluded.upto";
        let done = on_pool!(self, pool => sqlx::query(sql)
            .bind(id)
            .bind(snapshot.upto as i64)
            .bind(&snapshot.state)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected());
        Ok(done == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::each_engine;

    #[tokio::test]
    async fn documents_are_listed_renamed_and_deleted_with_their_log_and_snapshot() {
        for store in each_engine().await {
            let engine = store.engine();
            let lobby = store.room("lobby").await.unwrap().unwrap();
            let notes = store.create_document(lobby.id, "notes", "u:1", "ada").await.unwrap();
            store.create_document(lobby.id, "agenda", "u:1", "ada").await.unwrap();
            let again = store.create_document(lobby.id, "agenda", "u:2", "bob").await;
            assert!(matches!(again, Err(StoreError::NameTaken(_))), "{engine:?}: a name is taken once per room");
            assert!(matches!(store.rename_document(notes.id, "agenda").await, Err(StoreError::NameTaken(_))));
            assert_eq!(store.document_named(lobby.id, "agenda").await.unwrap().unwrap().creator_name, "ada");
            let names = |docs: Vec<Document>| docs.into_iter().map(|d| d.name).collect::<Vec<_>>();
            assert_eq!(names(store.documents_in_room(lobby.id).await.unwrap()), ["agenda", "notes"], "{engine:?}");
            assert!(store.rename_document(notes.id, "minutes").await.unwrap());
            assert_eq!(store.document(notes.id).await.unwrap().unwrap().name, "minutes");

            // A snapshot is replaced only by one that goes further.
            assert_eq!(store.snapshot(notes.id).await.unwrap(), None);
            let first = Snapshot { upto: 5, state: vec![1, 2, 3] };
            assert!(store.save_snapshot(notes.id, &first).await.unwrap());
            assert!(!store.save_snapshot(notes.id, &Snapshot { upto: 4, state: vec![9] }).await.unwrap());
            assert_eq!(store.snapshot(notes.id).await.unwrap(), Some(first), "{engine:?}");

            // Its log goes with it.
            let mut log = store.event_writer().await.unwrap();
            let topic: std::sync::Arc<str> = std::sync::Arc::from(doc_topic(notes.id));
            let payload = r#"{"author":"ada","key":"u:1","update":"AAA="}"#;
            let edit =
                crate::store::events::NewEvent { topic: topic.clone(), id: "e1".into(), payload: payload.into() };
            log.append_batch(&[edit]).await.unwrap();
            assert_eq!(store.events_after(&topic, 0, 10).await.unwrap().len(), 1);
            let edits = store.edits(notes.id, 0).await.unwrap();
            assert_eq!((edits.len(), edits[0].offset, edits[0].author.as_str()), (1, 1, "ada"), "{engine:?}");
            assert!(store.edits(notes.id, 1).await.unwrap().is_empty());
            assert!(store.delete_document(notes.id).await.unwrap());
            assert!(!store.delete_document(notes.id).await.unwrap(), "{engine:?}: once");
            assert_eq!(store.document(notes.id).await.unwrap(), None);
            assert_eq!(store.snapshot(notes.id).await.unwrap(), None);
            assert!(store.events_after(&topic, 0, 10).await.unwrap().is_empty());
            assert_eq!(names(store.documents_in_room(lobby.id).await.unwrap()), ["agenda"]);
            assert!(!store.rename_document(notes.id, "again").await.unwrap());
        }
    }

    #[tokio::test]
    async fn a_log_is_read_a_range_of_offsets_at_a_time_in_order() {
        for store in each_engine().await {
            let engine = store.engine();
            let lobby = store.room("lobby").await.unwrap().unwrap();
            let doc = store.create_document(lobby.id, "notes", "u:1", "ada").await.unwrap();
            let other = store.create_document(lobby.id, "other", "u:1", "ada").await.unwrap();
            let mut log = store.event_writer().await.unwrap();
            let edit = |id: i64, n: u8| {
                let update = super::super::protocol::encode_base64(&[n, n, 255 - n]);
                let payload = format!(r#"{{"author":"ada","key":"u:1","update":"{update}"}}"#);
                let topic = std::sync::Arc::from(doc_topic(id));
                crate::store::events::NewEvent { topic, id: format!("e{id}-{n}"), payload }
            };
            let edits: Vec<_> = (1..=5).map(|n| edit(doc.id, n)).chain([edit(other.id, 9)]).collect();
            log.append_batch(&edits).await.unwrap();
            let bytes = |n: u8| vec![n, n, 255 - n];
            assert_eq!(store.updates(doc.id, 0, 2).await.unwrap(), [bytes(1), bytes(2)], "{engine:?}");
            assert_eq!(store.updates(doc.id, 2, 4).await.unwrap(), [bytes(3), bytes(4)], "{engine:?}");
            assert_eq!(store.updates(doc.id, 4, u64::MAX).await.unwrap(), [bytes(5)], "{engine:?}");
            assert!(store.updates(doc.id, 5, u64::MAX).await.unwrap().is_empty(), "{engine:?}: no more");
            assert_eq!(store.updates(other.id, 0, 10).await.unwrap(), [bytes(9)], "{engine:?}: its own log");
        }
    }
}
