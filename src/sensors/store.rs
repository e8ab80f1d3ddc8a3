//! Sensors, their readings, and the per-minute rollups that replace old raw readings.
//!
//! Readings arrive in batches from the sensors' single writer and are stored in one
//! transaction per batch. Compaction folds raw readings older than the retention into
//! one row per sensor and minute (min, max, average, count), merging into a row that
//! exists already, and deletes them, in one transaction.

use sqlx::Row;

use crate::sensors::protocol::{HistoryPoint, Reading, SensorInfo};
use crate::store::{now_ms, Store, StoreError};

/// A sensor as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Sensor {
    pub info: SensorInfo,
    /// `None` for sensors registered by the tutorial's endpoint in guest mode.
    pub owner_id: Option<i64>,
    pub owner_name: Option<String>,
    pub token_hash: String,
}

/// A sensor to create; the caller has checked every field.
#[derive(Debug, Clone)]
pub struct NewSensor<'a> {
    pub owner_id: Option<i64>,
    pub name: &'a str,
    pub unit: &'a str,
    pub range_min: Option<f64>,
    pub range_max: Option<f64>,
    pub alert_low: Option<f64>,
    pub alert_high: Option<f64>,
    pub token_hash: &'a str,
}

/// The readings of one sensor in one write batch.
#[derive(Debug, Clone)]
pub struct ReadingBatch {
    pub sensor_id: i64,
    pub readings: Vec<Reading>,
    /// The id the poster chose (a `reading` frame's): a batch with an id stored before is
    /// not stored again.
    pub client_id: Option<String>,
}

/// What became of one batch of [`Store::append_readings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadingsStored {
    Stored,
    /// Its id was stored before: nothing was stored this time.
    Duplicate,
    /// The sensor was deleted meanwhile.
    UnknownSensor,
}

/// One row of a CSV export: a raw reading, or a minute rolled up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExportRow {
    Raw { id: i64, reading: Reading },
    Minute { minute: i64, min: f64, max: f64, avg: f64, count: i64 },
}

impl ExportRow {
    /// Where the row sorts: time, then rollups before raw rows, then storage order.
    pub fn key(&self) -> (i64, i64, i64) {
        match *self {
            ExportRow::Minute { minute, .. } => (minute, 0, 0),
            ExportRow::Raw { id, reading } => (reading.ts, 1, id),
        }
    }
}

/// What one compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Compacted {
    /// Raw readings folded into rollups and deleted.
    pub readings: u64,
    /// Rollup rows written or merged into.
    pub minutes: u64,
}

const SENSOR_COLUMNS: &str = "s.id, s.owner_id, s.name, s.unit, s.range_min, s.range_max, s.alert_low, s.alert_high,
     s.token_hash, u.username AS owner_name";

fn row_to_sensor(r: &sqlx::sqlite::SqliteRow) -> Result<Sensor, sqlx::Error> {
    Ok(Sensor {
        info: SensorInfo {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            unit: r.try_get("unit")?,
            range_min: r.try_get("range_min")?,
            range_max: r.try_get("range_max")?,
            alert_low: r.try_get("alert_low")?,
            alert_high: r.try_get("alert_high")?,
        },
        owner_id: r.try_get("owner_id")?,
        owner_name: r.try_get("owner_name")?,
        token_hash: r.try_get("token_hash")?,
    })
}

pub const MINUTE_MS: i64 = 60_000;

/// Rows per multi-row `INSERT` of readings, largest first. Every statement round trip to
/// SQLite's connection thread costs about as much as the row itself, so rows go in chunks;
/// the sizes are powers of two so that a few statements, each prepared once per connection
/// and cached, cover any count (256 rows are 768 parameters, under SQLite's limit).
const INSERT_CHUNKS: [usize; 9] = [256, 128, 64, 32, 16, 8, 4, 2, 1];

/// One row's `INSERT`, also the fallback of [`insert_chunk`].
const INSERT_ONE: &str = "INSERT INTO sensor_readings (sensor_id, ts, value) VALUES (?, ?, ?)";

/// The largest chunk of [`INSERT_CHUNKS`] that fits in `remaining` rows (at least 1), with
/// its statement; the statements' texts are built once.
fn insert_chunk(remaining: usize) -> (usize, &'static str) {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let texts = SQL.get_or_init(|| {
        INSERT_CHUNKS
            .iter()
            .map(|&size| {
                let values = vec!["(?, ?, ?)"; size].join(", ");
                format!("INSERT INTO sensor_readings (sensor_id, ts, value) VALUES {values}")
            })
            .collect()
    });
    INSERT_CHUNKS
        .into_iter()
        .zip(texts)
        .find(|&(size, _)| size <= remaining)
        .map_or((1, INSERT_ONE), |(size, sql)| (size, sql.as_str()))
}

impl Store {
    /// Create a sensor. Fails with `NameTaken` when another sensor has the name (in any case).
    pub async fn create_sensor(&self, new: &NewSensor<'_>) -> Result<Sensor, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let result = sqlx::query(
            "INSERT INTO sensors (owner_id, name, unit, range_min, range_max, alert_low, alert_high, token_hash, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(new.owner_id)
        .bind(new.name)
        .bind(new.unit)
        .bind(new.range_min)
        .bind(new.range_max)
        .bind(new.alert_low)
        .bind(new.alert_high)
        .bind(new.token_hash)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await;
        let id: i64 = match result {
            Ok(row) => row.try_get("id")?,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::NameTaken(new.name.to_owned()))
            }
            Err(e) => return Err(e.into()),
        };
        let row = sqlx::query(&format!(
            "SELECT {SENSOR_COLUMNS} FROM sensors s LEFT JOIN users u ON u.id = s.owner_id WHERE s.id = ?"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let sensor = row_to_sensor(&row)?;
        tx.commit().await?;
        Ok(sensor)
    }

    pub async fn sensor(&self, id: i64) -> Result<Option<Sensor>, StoreError> {
        self.sensor_where("s.id = ?", id).await
    }

    /// A sensor by name, in any case.
    pub async fn sensor_by_name(&self, name: &str) -> Result<Option<Sensor>, StoreError> {
        self.sensor_where("s.name = ?", name.to_owned()).await
    }

    /// The sensor whose own token has this hash.
    pub async fn sensor_by_token(&self, token_hash: &str) -> Result<Option<Sensor>, StoreError> {
        self.sensor_where("s.token_hash = ?", token_hash.to_owned()).await
    }

    /// The sensor matching `condition` (one `?`, bound to `value`).
    async fn sensor_where<T>(&self, condition: &str, value: T) -> Result<Option<Sensor>, StoreError>
    where
        T: for<'q> sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send,
    {
        let sql =
            format!("SELECT {SENSOR_COLUMNS} FROM sensors s LEFT JOIN users u ON u.id = s.owner_id WHERE {condition}");
        let row = sqlx::query(&sql).bind(value).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(row_to_sensor).transpose()?)
    }

    /// Every sensor, by name.
    pub async fn sensors(&self) -> Result<Vec<Sensor>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SENSOR_COLUMNS} FROM sensors s LEFT JOIN users u ON u.id = s.owner_id ORDER BY s.name COLLATE NOCASE, s.id"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(row_to_sensor).collect::<Result<_, _>>()?)
    }

    /// Set a sensor's alert thresholds. False when there is no such sensor.
    pub async fn set_sensor_alerts(&self, id: i64, low: Option<f64>, high: Option<f64>) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE sensors SET alert_low = ?, alert_high = ? WHERE id = ?")
            .bind(low)
            .bind(high)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replace a sensor's token. False when there is no such sensor.
    pub async fn set_sensor_token(&self, id: i64, token_hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE sensors SET token_hash = ? WHERE id = ?")
            .bind(token_hash)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Delete a sensor with its readings and rollups. False when there is no such sensor.
    pub async fn delete_sensor(&self, id: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("DELETE FROM sensor_readings WHERE sensor_id = ?").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM sensor_minutes WHERE sensor_id = ?").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM sensor_posts WHERE sensor_id = ?").bind(id).execute(&mut *tx).await?;
        let done = sqlx::query("DELETE FROM sensors WHERE id = ?").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Store batches of readings in one transaction, in order, with multi-row inserts. Batches
    /// of sensors deleted meanwhile, and batches whose id was stored before (in an earlier
    /// transaction or earlier in this one), are skipped; the answer says, per batch, which.
    pub async fn append_readings(&self, batches: &[ReadingBatch]) -> Result<Vec<ReadingsStored>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut stored = Vec::with_capacity(batches.len());
        let mut known: Vec<(i64, bool)> = Vec::new();
        let mut rows: Vec<(i64, &Reading)> = Vec::with_capacity(batches.iter().map(|b| b.readings.len()).sum());
        for batch in batches {
            let exists = match known.iter().find(|(id, _)| *id == batch.sensor_id) {
                Some(&(_, exists)) => exists,
                None => {
                    let exists = sqlx::query("SELECT 1 FROM sensors WHERE id = ?")
                        .bind(batch.sensor_id)
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_some();
                    known.push((batch.sensor_id, exists));
                    exists
                }
            };
            if !exists {
                stored.push(ReadingsStored::UnknownSensor);
                continue;
            }
            if let Some(client_id) = &batch.client_id {
                let first = sqlx::query(
                    "INSERT INTO sensor_posts (sensor_id, client_id, created_at) VALUES (?, ?, ?)
                     ON CONFLICT (sensor_id, client_id) DO NOTHING",
                )
                .bind(batch.sensor_id)
                .bind(client_id)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if !first {
                    stored.push(ReadingsStored::Duplicate);
                    continue;
                }
            }
            rows.extend(batch.readings.iter().map(|reading| (batch.sensor_id, reading)));
            stored.push(ReadingsStored::Stored);
        }
        let mut rest = rows.as_slice();
        while !rest.is_empty() {
            let (size, sql) = insert_chunk(rest.len());
            let (chunk, tail) = rest.split_at(size);
            let mut insert = sqlx::query(sql);
            for &(sensor_id, reading) in chunk {
                insert = insert.bind(sensor_id).bind(reading.ts).bind(reading.value);
            }
            insert.execute(&mut *tx).await?;
            rest = tail;
        }
        tx.commit().await?;
        Ok(stored)
    }

    /// The latest reading of a sensor by time: the latest raw one, else the average of the
    /// latest rolled-up minute.
    pub async fn latest_reading(&self, sensor_id: i64) -> Result<Option<Reading>, StoreError> {
        let row =
            sqlx::query("SELECT ts, value FROM sensor_readings WHERE sensor_id = ? ORDER BY ts DESC, id DESC LIMIT 1")
                .bind(sensor_id)
                .fetch_optional(&self.pool)
                .await?;
        let raw = row
            .map(|r| Ok::<_, sqlx::Error>(Reading { ts: r.try_get("ts")?, value: r.try_get("value")? }))
            .transpose()?;
        let row =
            sqlx::query("SELECT minute, avg FROM sensor_minutes WHERE sensor_id = ? ORDER BY minute DESC LIMIT 1")
                .bind(sensor_id)
                .fetch_optional(&self.pool)
                .await?;
        let minute = row
            .map(|r| Ok::<_, sqlx::Error>(Reading { ts: r.try_get("minute")?, value: r.try_get("avg")? }))
            .transpose()?;
        Ok(match (raw, minute) {
            (Some(raw), Some(minute)) if minute.ts > raw.ts => Some(minute),
            (Some(raw), _) => Some(raw),
            (None, minute) => minute,
        })
    }

    /// How many raw readings and rollup rows a sensor has in `[from, to)`.
    pub async fn history_counts(&self, sensor_id: i64, from: i64, to: i64) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM sensor_readings WHERE sensor_id = ? AND ts >= ? AND ts < ?) AS raw,
                    (SELECT COUNT(*) FROM sensor_minutes WHERE sensor_id = ? AND minute >= ? AND minute < ?) AS minutes",
        )
        .bind(sensor_id)
        .bind(from)
        .bind(to)
        .bind(sensor_id)
        .bind(from)
        .bind(to)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("raw")?, row.try_get("minutes")?))
    }

    /// Raw readings in `[from, to)`, oldest first, at most `limit`.
    pub async fn raw_readings(
        &self,
        sensor_id: i64,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<Reading>, StoreError> {
        let rows = sqlx::query(
            "SELECT ts, value FROM sensor_readings WHERE sensor_id = ? AND ts >= ? AND ts < ? ORDER BY ts, id LIMIT ?",
        )
        .bind(sensor_id)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(Reading { ts: r.try_get("ts")?, value: r.try_get("value")? }))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Raw readings and rollups in `[from, to)` grouped into buckets of `width` ms starting at
    /// `from`: each bucket's min, max, average (weighted by count) and count, oldest first.
    pub async fn bucketed_history(
        &self,
        sensor_id: i64,
        from: i64,
        to: i64,
        width: i64,
    ) -> Result<Vec<HistoryPoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT bucket, MIN(lo) AS lo, MAX(hi) AS hi, SUM(total) AS total, SUM(n) AS n FROM (
                 SELECT (ts - ?) / ? AS bucket, value AS lo, value AS hi, value AS total, 1 AS n
                 FROM sensor_readings WHERE sensor_id = ? AND ts >= ? AND ts < ?
                 UNION ALL
                 SELECT (minute - ?) / ?, min, max, avg * count, count
                 FROM sensor_minutes WHERE sensor_id = ? AND minute >= ? AND minute < ?
             ) GROUP BY bucket ORDER BY bucket",
        )
        .bind(from)
        .bind(width)
        .bind(sensor_id)
        .bind(from)
        .bind(to)
        .bind(from)
        .bind(width)
        .bind(sensor_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let count: i64 = r.try_get("n")?;
                let total: f64 = r.try_get("total")?;
                Ok(HistoryPoint {
                    ts: from + r.try_get::<i64, _>("bucket")? * width,
                    value: total / count.max(1) as f64,
                    min: r.try_get("lo")?,
                    max: r.try_get("hi")?,
                    count,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Up to `limit` export rows in `[from, to)` after `after` (a row's [`ExportRow::key`]), in
    /// key order: rolled-up minutes and raw readings merged by time.
    pub async fn export_page(
        &self,
        sensor_id: i64,
        from: i64,
        to: i64,
        after: (i64, i64, i64),
        limit: i64,
    ) -> Result<Vec<ExportRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT ts, kind, rid, value, lo, hi, n FROM (
                 SELECT minute AS ts, 0 AS kind, 0 AS rid, avg AS value, min AS lo, max AS hi, count AS n
                 FROM sensor_minutes WHERE sensor_id = ? AND minute >= ? AND minute < ?
                 UNION ALL
                 SELECT ts, 1, id, value, NULL, NULL, NULL
                 FROM sensor_readings WHERE sensor_id = ? AND ts >= ? AND ts < ?
             ) WHERE (ts, kind, rid) > (?, ?, ?) ORDER BY ts, kind, rid LIMIT ?",
        )
        .bind(sensor_id)
        .bind(from)
        .bind(to)
        .bind(sensor_id)
        .bind(from)
        .bind(to)
        .bind(after.0)
        .bind(after.1)
        .bind(after.2)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let ts: i64 = r.try_get("ts")?;
                let value: f64 = r.try_get("value")?;
                Ok(if r.try_get::<i64, _>("kind")? == 0 {
                    ExportRow::Minute {
                        minute: ts,
                        min: r.try_get("lo")?,
                        max: r.try_get("hi")?,
                        avg: value,
                        count: r.try_get("n")?,
                    }
                } else {
                    ExportRow::Raw { id: r.try_get("rid")?, reading: Reading { ts, value } }
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Fold every raw reading before `cutoff` (a minute boundary) into per-minute rollups,
    /// merging with rollups that exist already, and delete those readings; one transaction.
    pub async fn compact_readings(&self, cutoff: i64) -> Result<Compacted, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // `WHERE true` lets SQLite parse the upsert after a SELECT with GROUP BY.
        let merged = sqlx::query(
            "INSERT INTO sensor_minutes (sensor_id, minute, min, max, avg, count)
             SELECT sensor_id, (ts / 60000) * 60000 AS minute, MIN(value), MAX(value), AVG(value), COUNT(*)
             FROM sensor_readings WHERE ts < ? AND true GROUP BY sensor_id, minute
             ON CONFLICT (sensor_id, minute) DO UPDATE SET
                 min = MIN(sensor_minutes.min, excluded.min),
                 max = MAX(sensor_minutes.max, excluded.max),
                 avg = (sensor_minutes.avg * sensor_minutes.count + excluded.avg * excluded.count)
                       / (sensor_minutes.count + excluded.count),
                 count = sensor_minutes.count + excluded.count",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        let deleted = sqlx::query("DELETE FROM sensor_readings WHERE ts < ?").bind(cutoff).execute(&mut *tx).await?;
        // Ids of posts as old as the readings dropped: no retry comes that late.
        sqlx::query("DELETE FROM sensor_posts WHERE created_at < ?").bind(cutoff).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Compacted { readings: deleted.rows_affected(), minutes: merged.rows_affected() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_inserted_in_a_few_chunks_of_cached_sizes() {
        let mut left = 1000;
        let mut sizes = Vec::new();
        while left > 0 {
            let (size, sql) = insert_chunk(left);
            assert_eq!(sql.matches('?').count(), 3 * size);
            sizes.push(size);
            left -= size;
        }
        assert_eq!(sizes, [256, 256, 256, 128, 64, 32, 8]);
        assert_eq!(insert_chunk(1), (1, INSERT_ONE));
    }

    #[tokio::test]
    async fn chunked_appends_keep_every_reading_in_order_and_skip_unknown_sensors() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/test.db", dir.path().display())).await.unwrap();
        let new = NewSensor {
            owner_id: None,
            name: "chunks",
            unit: "",
            range_min: None,
            range_max: None,
            alert_low: None,
            alert_high: None,
            token_hash: "h",
        };
        let sensor = store.create_sensor(&new).await.unwrap().info.id;
        let readings = |from: i64, count: i64| -> Vec<Reading> {
            (from..from + count).map(|i| Reading { ts: 1_764_000_000_000 + i, value: i as f64 / 3.0 }).collect()
        };
        let batches = [
            ReadingBatch { sensor_id: sensor, readings: readings(0, 300), client_id: None },
            ReadingBatch { sensor_id: sensor + 1, readings: readings(300, 2), client_id: None },
            ReadingBatch { sensor_id: sensor, readings: readings(302, 5), client_id: None },
        ];
        assert_eq!(
            store.append_readings(&batches).await.unwrap(),
            [ReadingsStored::Stored, ReadingsStored::UnknownSensor, ReadingsStored::Stored]
        );
        let stored = store.raw_readings(sensor, 0, i64::MAX, 1000).await.unwrap();
        let expected: Vec<Reading> = readings(0, 300).into_iter().chain(readings(302, 5)).collect();
        assert_eq!(stored, expected);

        // A batch with an id is stored once: again in the same transaction, or in a later one,
        // it is a duplicate; the same id for another sensor is another post.
        let other = store.create_sensor(&NewSensor { name: "other", token_hash: "h2", ..new }).await.unwrap().info.id;
        let with_id = |sensor_id: i64, from: i64, id: &str| ReadingBatch {
            sensor_id,
            readings: readings(from, 2),
            client_id: Some(id.to_owned()),
        };
        let first = [with_id(sensor, 400, "r1"), with_id(sensor, 410, "r1"), with_id(other, 420, "r1")];
        let answer = store.append_readings(&first).await.unwrap();
        assert_eq!(answer, [ReadingsStored::Stored, ReadingsStored::Duplicate, ReadingsStored::Stored]);
        let second = [with_id(sensor, 430, "r1"), with_id(sensor, 440, "r2")];
        let answer = store.append_readings(&second).await.unwrap();
        assert_eq!(answer, [ReadingsStored::Duplicate, ReadingsStored::Stored]);
        assert_eq!(store.raw_readings(sensor, 0, i64::MAX, 1000).await.unwrap().len(), 305 + 2 + 2);
        assert_eq!(store.raw_readings(other, 0, i64::MAX, 1000).await.unwrap().len(), 2);
        // Compaction forgets ids as old as the readings it drops.
        store.compact_readings(i64::MAX / 2).await.unwrap();
        assert_eq!(store.append_readings(&[with_id(sensor, 450, "r1")]).await.unwrap(), [ReadingsStored::Stored]);
    }
}
