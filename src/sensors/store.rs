//! Sensors, their readings, and the per-minute rollups that replace old raw readings.
//!
//! Readings arrive in batches from the sensors' single writer and are stored in one
//! transaction per batch. Compaction folds raw readings older than the retention into
//! one row per sensor and minute (min, max, average, count), merging into a row that
//! exists already, and deletes them, in one transaction.

use crate::sensors::protocol::{HistoryPoint, Reading, SensorInfo};
use crate::store::{now_ms, on_pool, BeginWrite, Store, StoreError};

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

/// A row of [`SENSOR_COLUMNS`].
#[derive(sqlx::FromRow)]
struct SensorRow {
    id: i64,
    owner_id: Option<i64>,
    name: String,
    unit: String,
    range_min: Option<f64>,
    range_max: Option<f64>,
    alert_low: Option<f64>,
    alert_high: Option<f64>,
    token_hash: String,
    owner_name: Option<String>,
}

impl From<SensorRow> for Sensor {
    fn from(r: SensorRow) -> Sensor {
        Sensor {
            info: SensorInfo {
                id: r.id,
                name: r.name,
                unit: r.unit,
                range_min: r.range_min,
                range_max: r.range_max,
                alert_low: r.alert_low,
                alert_high: r.alert_high,
            },
            owner_id: r.owner_id,
            owner_name: r.owner_name,
            token_hash: r.token_hash,
        }
    }
}

/// Which sensor [`Store::sensor_where`] looks for.
enum SensorKey<'a> {
    Id(i64),
    Name(&'a str),
    Token(&'a str),
}

pub const MINUTE_MS: i64 = 60_000;

/// Rows per multi-row `INSERT` of readings, largest first. Every statement round trip to
/// SQLite's connection thread costs about as much as the row itself, so rows go in chunks;
/// the sizes are powers of two so that a few statements, each prepared once per connection
/// and cached, cover any count (256 rows are 768 parameters, under SQLite's limit).
const INSERT_CHUNKS: [usize; 9] = [256, 128, 64, 32, 16, 8, 4, 2, 1];

/// One row's `INSERT`, also the fallback of [`insert_chunk`].
const INSERT_ONE: &str = "INSERT INTO sensor_readings (sensor_id, ts, value) VALUES ($1, $2, $3)";

/// The largest chunk of [`INSERT_CHUNKS`] that fits in `remaining` rows (at least 1), with
/// its statement; the statements' texts are built once.
fn insert_chunk(remaining: usize) -> (usize, &'static str) {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let texts = SQL.get_or_init(|| {
        INSERT_CHUNKS
            .iter()
            .map(|&size| {
                let values: Vec<String> =
                    (0..size).map(|row| format!("(${}, ${}, ${})", 3 * row + 1, 3 * row + 2, 3 * row + 3)).collect();
                let values = values.join(", ");
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
        let select =
            format!("SELECT {SENSOR_COLUMNS} FROM sensors s LEFT JOIN users u ON u.id = s.owner_id WHERE s.id = $1");
        let created: Result<SensorRow, sqlx::Error> = on_pool!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO sensors (owner_id, name, unit, range_min, range_max, alert_low, alert_high, token_hash, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
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
            .await?;
            let row: SensorRow = sqlx::query_as(&select).bind(id).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            Ok(row)
        }
        .await);
        match created {
            Ok(row) => Ok(row.into()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::NameTaken(new.name.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn sensor(&self, id: i64) -> Result<Option<Sensor>, StoreError> {
        self.sensor_where(SensorKey::Id(id)).await
    }

    /// A sensor by name, in any case.
    pub async fn sensor_by_name(&self, name: &str) -> Result<Option<Sensor>, StoreError> {
        self.sensor_where(SensorKey::Name(name)).await
    }

    /// The sensor whose own token has this hash.
    pub async fn sensor_by_token(&self, token_hash: &str) -> Result<Option<Sensor>, StoreError> {
        self.sensor_where(SensorKey::Token(token_hash)).await
    }

    async fn sensor_where(&self, key: SensorKey<'_>) -> Result<Option<Sensor>, StoreError> {
        let condition = match key {
            SensorKey::Id(_) => "s.id = $1",
            // SQLite's column compares without case (NOCASE); PostgreSQL's index is on lower(name).
            SensorKey::Name(_) => self.pick("s.name = $1", "lower(s.name) = lower($1)"),
            SensorKey::Token(_) => "s.token_hash = $1",
        };
        let sql =
            format!("SELECT {SENSOR_COLUMNS} FROM sensors s LEFT JOIN users u ON u.id = s.owner_id WHERE {condition}");
        let row: Option<SensorRow> = on_pool!(self, pool => {
            let query = sqlx::query_as(&sql);
            let query = match key {
                SensorKey::Id(id) => query.bind(id),
                SensorKey::Name(text) | SensorKey::Token(text) => query.bind(text),
            };
            query.fetch_optional(pool).await?
        });
        Ok(row.map(Sensor::from))
    }

    /// Every sensor, by name.
    pub async fn sensors(&self) -> Result<Vec<Sensor>, StoreError> {
        let sql = format!(
            "SELECT {SENSOR_COLUMNS} FROM sensors s LEFT JOIN users u ON u.id = s.owner_id ORDER BY lower(s.name), s.id"
        );
        let rows: Vec<SensorRow> = on_pool!(self, pool => sqlx::query_as(&sql).fetch_all(pool).await?);
        Ok(rows.into_iter().map(Sensor::from).collect())
    }

    /// Set a sensor's alert thresholds. False when there is no such sensor.
    pub async fn set_sensor_alerts(&self, id: i64, low: Option<f64>, high: Option<f64>) -> Result<bool, StoreError> {
        let sql = "UPDATE sensors SET alert_low = $1, alert_high = $2 WHERE id = $3";
        let done =
            on_pool!(self, pool => sqlx::query(sql).bind(low).bind(high).bind(id).execute(pool).await?.rows_affected());
        Ok(done == 1)
    }

    /// Replace a sensor's token. False when there is no such sensor.
    pub async fn set_sensor_token(&self, id: i64, token_hash: &str) -> Result<bool, StoreError> {
        let sql = "UPDATE sensors SET token_hash = $1 WHERE id = $2";
        let done =
            on_pool!(self, pool => sqlx::query(sql).bind(token_hash).bind(id).execute(pool).await?.rows_affected());
        Ok(done == 1)
    }

    /// Delete a sensor with its readings and rollups. False when there is no such sensor.
    pub async fn delete_sensor(&self, id: i64) -> Result<bool, StoreError> {
        let done = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            for sql in [
                "DELETE FROM sensor_readings WHERE sensor_id = $1",
                "DELETE FROM sensor_minutes WHERE sensor_id = $1",
                "DELETE FROM sensor_posts WHERE sensor_id = $1",
            ] {
                sqlx::query(sql).bind(id).execute(&mut *tx).await?;
            }
            let done = sqlx::query("DELETE FROM sensors WHERE id = $1").bind(id).execute(&mut *tx).await?;
            tx.commit().await?;
            done.rows_affected()
        });
        Ok(done == 1)
    }

    /// Store batches of readings in one transaction, in order, with multi-row inserts. Batches
    /// of sensors deleted meanwhile, and batches whose id was stored before (in an earlier
    /// transaction or earlier in this one), are skipped; the answer says, per batch, which.
    pub async fn append_readings(&self, batches: &[ReadingBatch]) -> Result<Vec<ReadingsStored>, StoreError> {
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let mut stored = Vec::with_capacity(batches.len());
            let mut known: Vec<(i64, bool)> = Vec::new();
            let mut rows: Vec<(i64, &Reading)> = Vec::with_capacity(batches.iter().map(|b| b.readings.len()).sum());
            for batch in batches {
                let exists = match known.iter().find(|(id, _)| *id == batch.sensor_id) {
                    Some(&(_, exists)) => exists,
                    None => {
                        let exists = sqlx::query("SELECT 1 FROM sensors WHERE id = $1")
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
                        "INSERT INTO sensor_posts (sensor_id, client_id, created_at) VALUES ($1, $2, $3)
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
            stored
        }))
    }

    /// The latest reading of a sensor by time: the latest raw one, else the average of the
    /// latest rolled-up minute.
    pub async fn latest_reading(&self, sensor_id: i64) -> Result<Option<Reading>, StoreError> {
        let raw = "SELECT ts, value FROM sensor_readings WHERE sensor_id = $1 ORDER BY ts DESC, id DESC LIMIT 1";
        let minute = "SELECT minute, avg FROM sensor_minutes WHERE sensor_id = $1 ORDER BY minute DESC LIMIT 1";
        type Point = Option<(i64, f64)>;
        let (raw, minute): (Point, Point) = on_pool!(self, pool => (
            sqlx::query_as(raw).bind(sensor_id).fetch_optional(pool).await?,
            sqlx::query_as(minute).bind(sensor_id).fetch_optional(pool).await?,
        ));
        let reading = |(ts, value)| Reading { ts, value };
        Ok(match (raw.map(reading), minute.map(reading)) {
            (Some(raw), Some(minute)) if minute.ts > raw.ts => Some(minute),
            (Some(raw), _) => Some(raw),
            (None, minute) => minute,
        })
    }

    /// How many raw readings and rollup rows a sensor has in `[from, to)`.
    pub async fn history_counts(&self, sensor_id: i64, from: i64, to: i64) -> Result<(i64, i64), StoreError> {
        let sql = "SELECT (SELECT COUNT(*) FROM sensor_readings WHERE sensor_id = $1 AND ts >= $2 AND ts < $3),
                          (SELECT COUNT(*) FROM sensor_minutes WHERE sensor_id = $1 AND minute >= $2 AND minute < $3)";
        Ok(on_pool!(self, pool => sqlx::query_as(sql).bind(sensor_id).bind(from).bind(to).fetch_one(pool).await?))
    }

    /// Raw readings in `[from, to)`, oldest first, at most `limit`.
    pub async fn raw_readings(
        &self,
        sensor_id: i64,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<Reading>, StoreError> {
        let sql = "SELECT ts, value FROM sensor_readings WHERE sensor_id = $1 AND ts >= $2 AND ts < $3
                   ORDER BY ts, id LIMIT $4";
        let rows: Vec<(i64, f64)> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(sensor_id)
            .bind(from)
            .bind(to)
            .bind(limit)
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(|(ts, value)| Reading { ts, value }).collect())
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
        // The sums are cast back: PostgreSQL's SUM of BIGINT is NUMERIC.
        let sql = "SELECT bucket, MIN(lo), MAX(hi), SUM(total), CAST(SUM(n) AS BIGINT) FROM (
                       SELECT (ts - $1) / $2 AS bucket, value AS lo, value AS hi, value AS total, CAST(1 AS BIGINT) AS n
                       FROM sensor_readings WHERE sensor_id = $3 AND ts >= $1 AND ts < $4
                       UNION ALL
                       SELECT (minute - $1) / $2, min, max, avg * count, count
                       FROM sensor_minutes WHERE sensor_id = $3 AND minute >= $1 AND minute < $4
                   ) AS points GROUP BY bucket ORDER BY bucket";
        let rows: Vec<(i64, f64, f64, f64, i64)> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(from)
            .bind(width)
            .bind(sensor_id)
            .bind(to)
            .fetch_all(pool)
            .await?);
        Ok(rows
            .into_iter()
            .map(|(bucket, min, max, total, count)| HistoryPoint {
                ts: from + bucket * width,
                value: total / count.max(1) as f64,
                min,
                max,
                count,
            })
            .collect())
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
        let sql = "SELECT ts, kind, rid, value, lo, hi, n FROM (
                       SELECT minute AS ts, CAST(0 AS BIGINT) AS kind, CAST(0 AS BIGINT) AS rid, avg AS value,
                              min AS lo, max AS hi, count AS n
                       FROM sensor_minutes WHERE sensor_id = $1 AND minute >= $2 AND minute < $3
                       UNION ALL
                       SELECT ts, 1, id, value, NULL, NULL, NULL
                       FROM sensor_readings WHERE sensor_id = $1 AND ts >= $2 AND ts < $3
                   ) AS rows WHERE (ts, kind, rid) > ($4, $5, $6) ORDER BY ts, kind, rid LIMIT $7";
        type Row = (i64, i64, i64, f64, Option<f64>, Option<f64>, Option<i64>);
        let rows: Vec<Row> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(sensor_id)
            .bind(from)
            .bind(to)
            .bind(after.0)
            .bind(after.1)
            .bind(after.2)
            .bind(limit)
            .fetch_all(pool)
            .await?);
        Ok(rows
            .into_iter()
            .map(|(ts, kind, rid, value, lo, hi, n)| match (kind, lo, hi, n) {
                (0, Some(min), Some(max), Some(count)) => ExportRow::Minute { minute: ts, min, max, avg: value, count },
                _ => ExportRow::Raw { id: rid, reading: Reading { ts, value } },
            })
            .collect())
    }

    /// Fold every raw reading before `cutoff` (a minute boundary) into per-minute rollups,
    /// merging with rollups that exist already, and delete those readings; one transaction.
    pub async fn compact_readings(&self, cutoff: i64) -> Result<Compacted, StoreError> {
        // `WHERE true` lets SQLite parse the upsert after a SELECT with GROUP BY.
        let merge = "INSERT INTO sensor_minutes (sensor_id, minute, min, max, avg, count)
                     SELECT sensor_id, (ts / 60000) * 60000 AS minute, MIN(value), MAX(value), AVG(value), COUNT(*)
                     FROM sensor_readings WHERE ts < $1 AND true GROUP BY sensor_id, (ts / 60000) * 60000
                     ON CONFLICT (sensor_id, minute) DO UPDATE SET
                         min = CASE WHEN excluded.min < sensor_minutes.min THEN excluded.min ELSE sensor_minutes.min END,
                         max = CASE WHEN excluded.max > sensor_minutes.max THEN excluded.max ELSE sensor_minutes.max END,
                         avg = (sensor_minutes.avg * sensor_minutes.count + excluded.avg * excluded.count)
                               / (sensor_minutes.count + excluded.count),
                         count = sensor_minutes.count + excluded.count";
        // On PostgreSQL, every node compacts: one at a time, or two would fold the same readings
        // (each statement of the second then sees what the first deleted).
        let serialize = self.pick("SELECT 1", "SELECT pg_advisory_xact_lock(7231001)");
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(serialize).execute(&mut *tx).await?;
            let merged = sqlx::query(merge).bind(cutoff).execute(&mut *tx).await?;
            let deleted = sqlx::query("DELETE FROM sensor_readings WHERE ts < $1").bind(cutoff).execute(&mut *tx).await?;
            // Ids of posts as old as the readings dropped: no retry comes that late.
            sqlx::query("DELETE FROM sensor_posts WHERE created_at < $1").bind(cutoff).execute(&mut *tx).await?;
            tx.commit().await?;
            Compacted { readings: deleted.rows_affected(), minutes: merged.rows_affected() }
        }))
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
            assert_eq!(sql.matches('$').count(), 3 * size);
            assert!(sql.ends_with(&format!("${})", 3 * size)));
            sizes.push(size);
            left -= size;
        }
        assert_eq!(sizes, [256, 256, 256, 128, 64, 32, 8]);
        assert_eq!(insert_chunk(1), (1, INSERT_ONE));
    }

    #[tokio::test]
    async fn chunked_appends_keep_every_reading_in_order_and_skip_unknown_sensors() {
        for store in crate::store::testing::each_engine().await {
            chunked_appends(&store).await;
        }
    }

    /// Every node compacts on its own schedule: run at once, they still fold each reading once.
    #[tokio::test]
    async fn compactions_at_once_on_several_nodes_fold_each_reading_once() {
        let store = crate::store::testing::postgres().await;
        let sensor = store.create_sensor(&plain("folded", "h")).await.unwrap().info.id;
        let readings: Vec<Reading> =
            (0..2000).map(|i| Reading { ts: 1_764_000_000_000 + i * 97, value: (i % 10) as f64 }).collect();
        store.append_readings(&[ReadingBatch { sensor_id: sensor, readings, client_id: None }]).await.unwrap();
        let nodes: Vec<_> = (0..4)
            .map(|_| {
                let store = store.store.clone();
                tokio::spawn(async move { store.compact_readings(1_800_000_000_000).await.unwrap() })
            })
            .collect();
        let mut folded = 0;
        for node in nodes {
            folded += node.await.unwrap().readings;
        }
        assert_eq!(folded, 2000, "each reading folded by one compaction");
        let all = store.bucketed_history(sensor, 0, i64::MAX / 2, i64::MAX / 4).await.unwrap();
        assert_eq!(all.iter().map(|p| p.count).sum::<i64>(), 2000);
        assert!((all[0].value - 4.5).abs() < 1e-9, "the average is kept: {}", all[0].value);
    }

    /// A sensor with no unit, range or alerts, owned by nobody.
    fn plain<'a>(name: &'a str, token_hash: &'a str) -> NewSensor<'a> {
        NewSensor {
            owner_id: None,
            name,
            unit: "",
            range_min: None,
            range_max: None,
            alert_low: None,
            alert_high: None,
            token_hash,
        }
    }

    async fn chunked_appends(store: &Store) {
        let sensor = store.create_sensor(&plain("chunks", "h")).await.unwrap().info.id;
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
        let other = store.create_sensor(&plain("other", "h2")).await.unwrap().info.id;
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
