//! Sensors: their readings, validated, made durable in batches, then fanned out; and the
//! compaction that turns old raw readings into per-minute rollups.
//!
//! Readings from every source (the HTTP API, the web protocol, the tutorial's
//! `/ws/sensor_data/`) go through one channel to one writer task. It takes whatever is
//! queued, stores it in one `BEGIN IMMEDIATE` transaction, and only after the commit
//! publishes it (one `readings` frame per sensor per batch, and the tutorial's frames) and
//! answers each sender. So an HTTP request is answered only once its readings are durable,
//! and nobody sees a reading that could still be lost.
//!
//! Readings are checked before they reach the writer; a batch is all or nothing.

use std::any::Any;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::protocol::{sensor_topic, HistoryPoint, NewReading, Reading, SensorFrame, SensorInfo, SENSORS_TOPIC};
use super::store::{Compacted, NewSensor, ReadingBatch, ReadingsStored, Sensor, MINUTE_MS};
use crate::accounts::auth::{hash_secret, new_secret};
use crate::accounts::store::User;
use crate::realtime::protocol::ErrorCode;
use crate::realtime::server::batch::{self, Pace};
use crate::realtime::server::bus::Cluster;
use crate::realtime::server::encode;
use crate::realtime::server::hub::{Event, Hub};
use crate::realtime::server::limit::RateLimiter;
use crate::store::{now_ms, Store, StoreError};

/// Readings may be at most this far in the future (clocks drift).
pub const MAX_FUTURE_MS: i64 = 5 * 60 * 1000;
/// Readings may not be older than 2000-01-01T00:00:00Z.
pub const MIN_TS: i64 = 946_684_800_000;
/// The longest sensor name, in characters.
pub const MAX_SENSOR_NAME_CHARS: usize = 64;
/// The longest unit, in characters.
pub const MAX_UNIT_CHARS: usize = 16;
/// The most points a history request may ask for.
pub const MAX_HISTORY_POINTS: u32 = 10_000;
/// Prefix of sensor tokens, so that they are told apart from users' API tokens (`sbt_`).
pub const TOKEN_PREFIX: &str = "sbs_";

/// Write requests stored in one transaction at most.
const MAX_BATCH: usize = 256;
/// Requests waiting for the writer before senders wait for room.
const WRITER_QUEUE: usize = 4096;
/// How often old raw readings are rolled up.
const COMPACT_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error("no sensor is {0}")]
    UnknownSensor(String),
    #[error("{0}")]
    BadReading(#[from] BadReading),
    #[error("{0}")]
    Invalid(String),
    #[error("a sensor named {0:?} exists already")]
    NameTaken(String),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("storing the readings failed: {0}")]
    WriteFailed(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("this sensor posts too often; slow down")]
    RateLimited,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for SensorError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NameTaken(name) => SensorError::NameTaken(name),
            other => SensorError::Store(other),
        }
    }
}

/// Why a batch of readings was refused: the first bad reading's index (when the batch was
/// read that far), a stable code and a readable reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BadReading {
    pub index: Option<usize>,
    pub code: ErrorCode,
    pub message: String,
}

impl BadReading {
    fn at(index: usize, code: ErrorCode, message: impl std::fmt::Display) -> BadReading {
        BadReading { index: Some(index), code, message: format!("reading {index}: {message}") }
    }

    fn whole(code: ErrorCode, message: impl Into<String>) -> BadReading {
        BadReading { index: None, code, message: message.into() }
    }
}

/// Settings of the sensors service.
#[derive(Debug, Clone, Copy)]
pub struct SensorLimits {
    /// The most readings in one request.
    pub batch_max: usize,
    /// Raw readings older than this are rolled up into minutes.
    pub raw_retention: Duration,
    /// The largest HTTP request body, in bytes.
    pub body_max_bytes: usize,
    /// Requests per second each sensor may post (token bucket), and its burst.
    pub request_rate: f64,
    pub request_burst: f64,
}

/// Read one reading object (`{"value": .., "ts": ..}`), strictly: `value` a JSON number,
/// `ts` absent, `null` or an integer. Other fields are ignored.
fn parse_one(index: usize, item: &serde_json::Value) -> Result<NewReading, BadReading> {
    let Some(object) = item.as_object() else {
        return Err(BadReading::at(
            index,
            ErrorCode::InvalidField,
            "a reading is an object {\"value\": .., \"ts\": ..}",
        ));
    };
    let value = match object.get("value") {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::Null) | None => {
            return Err(BadReading::at(index, ErrorCode::InvalidField, "missing number `value`"));
        }
        Some(other) => {
            let message = format!("`value` must be a JSON number, not {other}");
            return Err(BadReading::at(index, ErrorCode::InvalidField, message));
        }
    };
    let Some(value) = value.filter(|v| v.is_finite()) else {
        return Err(BadReading::at(index, ErrorCode::OutOfRange, "`value` must be a finite number"));
    };
    let ts = match object.get("ts") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
        Some(other) => {
            let message = format!("`ts` must be an integer (milliseconds since the Unix epoch), not {other}");
            return Err(BadReading::at(index, ErrorCode::InvalidField, message));
        }
    };
    Ok(NewReading { value, ts })
}

/// Read a list of reading objects.
pub fn parse_list(items: &[serde_json::Value]) -> Result<Vec<NewReading>, BadReading> {
    items.iter().enumerate().map(|(index, item)| parse_one(index, item)).collect()
}

/// Read an HTTP body: one reading object, an array of them, or `{"readings": [..]}`.
pub fn parse_body(body: &[u8]) -> Result<Vec<NewReading>, BadReading> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| BadReading::whole(ErrorCode::Malformed, format!("the body is not JSON: {e}")))?;
    match &value {
        serde_json::Value::Array(items) => parse_list(items),
        serde_json::Value::Object(object) => match object.get("readings") {
            Some(serde_json::Value::Array(items)) => parse_list(items),
            Some(_) => Err(BadReading::whole(ErrorCode::InvalidField, "`readings` must be an array")),
            None => Ok(vec![parse_one(0, &value)?]),
        },
        _ => Err(BadReading::whole(
            ErrorCode::InvalidField,
            "send a reading {\"value\": ..}, an array of them, or {\"readings\": [..]}",
        )),
    }
}

/// Check a batch against the sensor and the clock; the readings with their timestamps set.
/// `batch_max` is checked by the caller, which answers it differently (HTTP 413).
pub fn check_batch(sensor: &SensorInfo, readings: &[NewReading], now: i64) -> Result<Vec<Reading>, BadReading> {
    if readings.is_empty() {
        return Err(BadReading::whole(ErrorCode::InvalidField, "no readings"));
    }
    readings
        .iter()
        .enumerate()
        .map(|(index, new)| {
            if !new.value.is_finite() {
                return Err(BadReading::at(index, ErrorCode::OutOfRange, "`value` must be a finite number"));
            }
            if let Some(min) = sensor.range_min.filter(|&min| new.value < min) {
                let message = format!("{} is below the sensor's range (minimum {min})", new.value);
                return Err(BadReading::at(index, ErrorCode::OutOfRange, message));
            }
            if let Some(max) = sensor.range_max.filter(|&max| new.value > max) {
                let message = format!("{} is above the sensor's range (maximum {max})", new.value);
                return Err(BadReading::at(index, ErrorCode::OutOfRange, message));
            }
            let ts = new.ts.unwrap_or(now);
            if ts > now.saturating_add(MAX_FUTURE_MS) {
                let message = format!("`ts` {ts} is more than 5 minutes in the future");
                return Err(BadReading::at(index, ErrorCode::OutOfRange, message));
            }
            if ts < MIN_TS {
                let message = format!("`ts` {ts} is before 2000-01-01 (is it in seconds? use milliseconds)");
                return Err(BadReading::at(index, ErrorCode::OutOfRange, message));
            }
            Ok(Reading { ts, value: new.value })
        })
        .collect()
}

/// A sensor name: 1 to 64 characters after trimming, no control characters, and not only
/// digits (the tutorial's `sensor_id` is an id when it is a number, a name otherwise).
pub fn clean_sensor_name(name: &str) -> Result<String, SensorError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_SENSOR_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(SensorError::Invalid(format!(
            "a sensor's name is 1 to {MAX_SENSOR_NAME_CHARS} characters, without control characters"
        )));
    }
    if name.chars().all(|c| c.is_ascii_digit()) {
        return Err(SensorError::Invalid("a sensor's name cannot be only digits (those are ids)".into()));
    }
    Ok(name.to_owned())
}

/// A sensor's settings as a user enters them; checked by [`SensorFields::check`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SensorFields {
    pub name: String,
    pub unit: String,
    pub range_min: Option<f64>,
    pub range_max: Option<f64>,
    pub alert_low: Option<f64>,
    pub alert_high: Option<f64>,
}

fn check_pair(low: Option<f64>, high: Option<f64>, what: &str) -> Result<(), SensorError> {
    if low.into_iter().chain(high).any(|v| !v.is_finite()) {
        return Err(SensorError::Invalid(format!("the {what} must be finite numbers")));
    }
    if let (Some(low), Some(high)) = (low, high) {
        if low > high {
            return Err(SensorError::Invalid(format!("the {what}'s low end {low} is above its high end {high}")));
        }
    }
    Ok(())
}

impl SensorFields {
    pub fn check(mut self) -> Result<SensorFields, SensorError> {
        self.name = clean_sensor_name(&self.name)?;
        self.unit = self.unit.trim().to_owned();
        if self.unit.chars().count() > MAX_UNIT_CHARS || self.unit.chars().any(char::is_control) {
            return Err(SensorError::Invalid(format!("a unit is at most {MAX_UNIT_CHARS} characters")));
        }
        check_pair(self.range_min, self.range_max, "range")?;
        check_pair(self.alert_low, self.alert_high, "alert thresholds")?;
        Ok(self)
    }
}

/// Whether `user` may change, delete, rotate the token of, or post readings to `sensor`:
/// its owner or an admin. Sensors owned by nobody are the admins'.
pub fn may_manage(sensor: &Sensor, user: &User) -> bool {
    user.is_admin || sensor.owner_id == Some(user.id)
}

/// A new sensor token: shown once, stored hashed.
fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", new_secret())
}

/// Where the readings of one write request came from, as observers hear it.
#[derive(Clone)]
pub enum Origin {
    /// The HTTP API or the web protocol.
    Api,
    /// Another endpoint, with a note of its own for its observer (the tutorial's keeps how
    /// the sender spelled the sensor, to echo it).
    Tagged(Arc<dyn Any + Send + Sync>),
}

/// Someone else told of every write request stored (the tutorial's `/ws/sensor_data/`
/// echoes readings): the sensor, its readings and where they came from.
pub type Observer = Box<dyn Fn(&Hub, i64, &[Reading], &Origin) + Send + Sync>;

struct WriteRequest {
    batch: ReadingBatch,
    origin: Origin,
    reply: oneshot::Sender<Result<Stored, SensorError>>,
}

/// A write request, durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// How many readings it had.
    pub count: usize,
    /// Its id was stored before: these readings were not stored again.
    pub duplicate: bool,
}

/// The sensors service: lookups, the writer, compaction.
pub struct Sensors {
    store: Store,
    hub: Arc<Hub>,
    limits: SensorLimits,
    writer: mpsc::Sender<WriteRequest>,
    limiter: RateLimiter,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stop_writer: CancellationToken,
    stop_compactor: CancellationToken,
    observers: Arc<RwLock<Vec<Observer>>>,
}

impl Sensors {
    /// Start the writer and the periodic compaction.
    pub fn start(store: Store, hub: Arc<Hub>, cluster: Option<Arc<Cluster>>, limits: SensorLimits) -> Arc<Sensors> {
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let stop_writer = CancellationToken::new();
        let stop_compactor = CancellationToken::new();
        let observers = Arc::new(RwLock::new(Vec::new()));
        let writer = tokio::spawn(write_loop(store.clone(), hub.clone(), rx, stop_writer.clone(), observers.clone()));
        let sensors = Arc::new(Sensors {
            store,
            hub,
            limits,
            limiter: RateLimiter::new(limits.request_rate, limits.request_burst).shared(cluster, "sensor"),
            writer: tx,
            tasks: Mutex::new(vec![writer]),
            stop_writer,
            stop_compactor: stop_compactor.clone(),
            observers,
        });
        let compactor = {
            let sensors = Arc::downgrade(&sensors);
            tokio::spawn(async move {
                let mut every = tokio::time::interval(COMPACT_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop_compactor.cancelled() => break,
                        _ = every.tick() => {}
                    }
                    let Some(sensors) = sensors.upgrade() else { break };
                    match sensors.compact(now_ms()).await {
                        Ok(done) if done.readings > 0 => {
                            tracing::debug!(
                                readings = done.readings,
                                minutes = done.minutes,
                                "sensor readings rolled up"
                            )
                        }
                        Ok(_) => {}
                        Err(error) => tracing::warn!(%error, "rolling up sensor readings failed"),
                    }
                }
            })
        };
        sensors.tasks.lock().unwrap_or_else(PoisonError::into_inner).push(compactor);
        sensors
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn limits(&self) -> SensorLimits {
        self.limits
    }

    pub async fn get(&self, id: i64) -> Result<Sensor, SensorError> {
        self.store.sensor(id).await?.ok_or_else(|| SensorError::UnknownSensor(format!("#{id}")))
    }

    /// The sensor a bearer token may post to `sensor_id`: the sensor's own token, or a
    /// user API token of its owner or an admin. `None` when the token is valid for nothing.
    pub async fn token_may_post(&self, token: &str, sensor: &Sensor) -> Result<Option<bool>, SensorError> {
        let hash = hash_secret(token);
        if hash == sensor.token_hash {
            return Ok(Some(true));
        }
        if self.store.sensor_by_token(&hash).await?.is_some() {
            return Ok(Some(false));
        }
        Ok(self.store.token_user(&hash).await?.map(|user| may_manage(sensor, &user)))
    }

    /// Every sensor with its owner's name and latest reading.
    pub async fn list(&self) -> Result<Vec<(Sensor, Option<Reading>)>, SensorError> {
        let mut out = Vec::new();
        for sensor in self.store.sensors().await? {
            let latest = self.store.latest_reading(sensor.info.id).await?;
            out.push((sensor, latest));
        }
        Ok(out)
    }

    /// The latest reading of a sensor.
    pub async fn latest(&self, id: i64) -> Result<Option<Reading>, SensorError> {
        Ok(self.store.latest_reading(id).await?)
    }

    /// Create a sensor owned by `owner`; returns it and its token (shown once).
    pub async fn create(&self, owner: &User, fields: SensorFields) -> Result<(Sensor, String), SensorError> {
        let fields = fields.check()?;
        self.insert(Some(owner.id), &fields).await
    }

    /// A sensor the tutorial's endpoint named in guest mode: owned by nobody.
    pub async fn register_unowned(&self, name: &str) -> Result<Sensor, SensorError> {
        let fields = SensorFields { name: name.to_owned(), ..SensorFields::default() }.check()?;
        Ok(self.insert(None, &fields).await?.0)
    }

    async fn insert(&self, owner_id: Option<i64>, fields: &SensorFields) -> Result<(Sensor, String), SensorError> {
        let token = new_token();
        let hash = hash_secret(&token);
        let new = NewSensor {
            owner_id,
            name: &fields.name,
            unit: &fields.unit,
            range_min: fields.range_min,
            range_max: fields.range_max,
            alert_low: fields.alert_low,
            alert_high: fields.alert_high,
            token_hash: &hash,
        };
        Ok((self.store.create_sensor(&new).await?, token))
    }

    /// The sensor, if `user` may manage it.
    async fn managed(&self, id: i64, user: &User, what: &'static str) -> Result<Sensor, SensorError> {
        let sensor = self.get(id).await?;
        if may_manage(&sensor, user) {
            Ok(sensor)
        } else {
            Err(SensorError::Forbidden(what))
        }
    }

    /// Set the alert thresholds (owner or admin).
    pub async fn set_alerts(
        &self,
        id: i64,
        user: &User,
        low: Option<f64>,
        high: Option<f64>,
    ) -> Result<SensorInfo, SensorError> {
        let mut sensor = self.managed(id, user, "only the sensor's owner or an admin may change it").await?;
        check_pair(low, high, "alert thresholds")?;
        if !self.store.set_sensor_alerts(id, low, high).await? {
            return Err(SensorError::UnknownSensor(format!("#{id}")));
        }
        sensor.info.alert_low = low;
        sensor.info.alert_high = high;
        Ok(sensor.info)
    }

    /// Delete a sensor with all its readings (owner or admin), and tell everyone: those who
    /// watch it (on `sensor:<id>`, whose subscription then ends) and every open dashboard
    /// (on `sensors`).
    pub async fn delete(&self, id: i64, user: &User) -> Result<(), SensorError> {
        self.managed(id, user, "only the sensor's owner or an admin may delete it").await?;
        if !self.store.delete_sensor(id).await? {
            return Err(SensorError::UnknownSensor(format!("#{id}")));
        }
        // The sensor topic's last frame: every subscription to it ends with it.
        let topic: Arc<str> = Arc::from(sensor_topic(id));
        let watchers = encode(&SensorFrame::SensorDeleted { topic: topic.to_string(), sensor: id });
        self.hub.publish(Event::new(topic.clone(), 0, watchers, Some(topic)));
        let dashboards = encode(&SensorFrame::SensorDeleted { topic: SENSORS_TOPIC.to_owned(), sensor: id });
        self.hub.publish(Event::new(Arc::from(SENSORS_TOPIC), 0, dashboards, None));
        Ok(())
    }

    /// Replace the sensor's token; the old one stops working at once (owner or admin).
    pub async fn rotate_token(&self, id: i64, user: &User) -> Result<String, SensorError> {
        self.managed(id, user, "only the sensor's owner or an admin may rotate its token").await?;
        let token = new_token();
        if !self.store.set_sensor_token(id, &hash_secret(&token)).await? {
            return Err(SensorError::UnknownSensor(format!("#{id}")));
        }
        Ok(token)
    }

    /// Store checked readings, publish them, and resolve once they are durable. With a
    /// `client_id` (a `reading` frame's id), a retry of readings stored before is answered as
    /// a duplicate and stores nothing.
    /// Each sensor posts at most `request_rate` requests a second, from every source together.
    pub async fn write(
        &self,
        sensor_id: i64,
        readings: Vec<Reading>,
        origin: Origin,
        client_id: Option<String>,
    ) -> Result<Stored, SensorError> {
        if !self.limiter.allow(&sensor_id.to_string()).await {
            return Err(SensorError::RateLimited);
        }
        let (reply, answer) = oneshot::channel();
        let request = WriteRequest { batch: ReadingBatch { sensor_id, readings, client_id }, origin, reply };
        self.writer.send(request).await.map_err(|_| SensorError::ShuttingDown)?;
        answer.await.map_err(|_| SensorError::ShuttingDown)?
    }

    /// Check readings for `sensor` (size, values, timestamps) and write them.
    pub async fn accept(&self, sensor: &Sensor, readings: &[NewReading], origin: Origin) -> Result<usize, SensorError> {
        if readings.len() > self.limits.batch_max {
            let max = self.limits.batch_max;
            return Err(BadReading::whole(ErrorCode::TooLarge, format!("at most {max} readings per request")).into());
        }
        let checked = check_batch(&sensor.info, readings, now_ms())?;
        Ok(self.write(sensor.info.id, checked, origin, None).await?.count)
    }

    /// Roll raw readings older than the retention (as of `now`) into per-minute rows.
    pub async fn compact(&self, now: i64) -> Result<Compacted, SensorError> {
        let retention = i64::try_from(self.limits.raw_retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now.saturating_sub(retention).div_euclid(MINUTE_MS) * MINUTE_MS;
        Ok(self.store.compact_readings(cutoff).await?)
    }

    /// A sensor's history in `[from, to)`: its raw readings when there are at most
    /// `max_points` and none of the range is rolled up; otherwise buckets (at least a minute
    /// wide, a whole number of minutes) with min, max, average and count. The second value is
    /// the bucket width in ms, 0 for raw readings.
    pub async fn history(
        &self,
        id: i64,
        from: i64,
        to: i64,
        max_points: u32,
    ) -> Result<(Vec<HistoryPoint>, i64), SensorError> {
        if from >= to {
            return Err(SensorError::Invalid("`from` must be before `to`".into()));
        }
        let max_points = i64::from(max_points.clamp(1, MAX_HISTORY_POINTS));
        self.get(id).await?;
        let (raw, minutes) = self.store.history_counts(id, from, to).await?;
        if minutes == 0 && raw <= max_points {
            let readings = self.store.raw_readings(id, from, to, max_points).await?;
            let points = readings
                .into_iter()
                .map(|r| HistoryPoint { ts: r.ts, value: r.value, min: r.value, max: r.value, count: 1 })
                .collect();
            return Ok((points, 0));
        }
        let origin = from.div_euclid(MINUTE_MS) * MINUTE_MS;
        let span = to.saturating_sub(origin);
        let per_point = span / max_points + i64::from(span % max_points != 0);
        let width = (per_point.max(1) + MINUTE_MS - 1) / MINUTE_MS * MINUTE_MS;
        Ok((self.store.bucketed_history(id, origin, to, width).await?, width))
    }

    /// Tell `observer` of every write request stored from now on.
    pub fn observe(&self, observer: Observer) {
        self.observers.write().unwrap_or_else(PoisonError::into_inner).push(observer);
    }

    /// Stop taking readings, store every one already taken, and wait for the tasks.
    pub async fn close(&self) {
        self.stop_compactor.cancel();
        self.stop_writer.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in tasks {
            let _ = task.await;
        }
    }
}

async fn write_loop(
    store: Store,
    hub: Arc<Hub>,
    mut rx: mpsc::Receiver<WriteRequest>,
    stop: CancellationToken,
    observers: Arc<RwLock<Vec<Observer>>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Readings are not spaced out: an ingest request waits for its commit, and devices that
    // send often send many readings per request (docs/benchmarks.md, "Sensor ingest").
    let mut pace = Pace::new(std::time::Duration::ZERO);
    while batch::next(&mut rx, &stop, MAX_BATCH, &mut pace, &mut batch).await {
        write_batch(&store, &hub, &mut batch, &observers).await;
    }
}

async fn write_batch(store: &Store, hub: &Hub, batch: &mut Vec<WriteRequest>, observers: &RwLock<Vec<Observer>>) {
    let batches: Vec<ReadingBatch> = batch.iter().map(|r| r.batch.clone()).collect();
    match store.append_readings(&batches).await {
        Ok(stored) => {
            let requests = std::mem::take(batch);
            let fresh = requests.iter().zip(&stored).filter(|(_, &what)| what == ReadingsStored::Stored);
            publish(hub, fresh.map(|(r, _)| r), observers);
            for (request, what) in requests.into_iter().zip(stored) {
                let count = request.batch.readings.len();
                let answer = match what {
                    ReadingsStored::Stored => Ok(Stored { count, duplicate: false }),
                    ReadingsStored::Duplicate => Ok(Stored { count, duplicate: true }),
                    ReadingsStored::UnknownSensor => {
                        Err(SensorError::UnknownSensor(format!("#{}", request.batch.sensor_id)))
                    }
                };
                let _ = request.reply.send(answer);
            }
        }
        Err(error) => {
            tracing::error!(%error, "storing {} reading batches failed", batch.len());
            let reason = error.to_string();
            for request in batch.drain(..) {
                let _ = request.reply.send(Err(SensorError::WriteFailed(reason.clone())));
            }
        }
    }
}

/// Fan stored readings out: one `readings` frame per sensor to its web subscribers, and each
/// request to the observers.
fn publish<'a>(hub: &Hub, requests: impl Iterator<Item = &'a WriteRequest> + Clone, observers: &RwLock<Vec<Observer>>) {
    let mut per_sensor: Vec<(i64, Vec<Reading>)> = Vec::new();
    for request in requests.clone() {
        let id = request.batch.sensor_id;
        match per_sensor.iter_mut().find(|(sensor, _)| *sensor == id) {
            Some((_, readings)) => readings.extend_from_slice(&request.batch.readings),
            None => per_sensor.push((id, request.batch.readings.clone())),
        }
    }
    for (id, readings) in per_sensor {
        let topic: Arc<str> = Arc::from(sensor_topic(id));
        if hub.wanted(&topic) {
            let frame = encode(&SensorFrame::Readings { topic: topic.to_string(), readings });
            hub.publish(Event::new(topic, 0, frame, None));
        }
    }
    let observers = observers.read().unwrap_or_else(PoisonError::into_inner);
    for request in requests {
        for observer in observers.iter() {
            observer(hub, request.batch.sensor_id, &request.batch.readings, &request.origin);
        }
    }
}

/// Milliseconds since the epoch as ISO 8601 UTC with milliseconds, e.g.
/// `2025-11-24T16:00:00.000Z`.
pub fn iso8601(ms: i64) -> String {
    let (year, month, day, h, m, sec, milli) = crate::ui::time::civil(ms);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{sec:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sensor(min: Option<f64>, max: Option<f64>) -> SensorInfo {
        SensorInfo {
            id: 1,
            name: "t".into(),
            unit: "°C".into(),
            range_min: min,
            range_max: max,
            alert_low: None,
            alert_high: None,
        }
    }

    #[test]
    fn bodies_are_one_reading_a_list_or_an_object_with_a_list() {
        let one = parse_body(br#"{"value": 21.5, "ts": 1764000000000}"#).unwrap();
        assert_eq!(one, vec![NewReading { value: 21.5, ts: Some(1_764_000_000_000) }]);
        assert_eq!(parse_body(br#"[{"value": 1}, {"value": 2, "ts": null}]"#).unwrap().len(), 2);
        assert_eq!(parse_body(br#"{"readings": [{"value": -3}]}"#).unwrap()[0].value, -3.0);
        let code = |body: &str| parse_body(body.as_bytes()).unwrap_err();
        assert_eq!(code("{nope").code, ErrorCode::Malformed);
        assert_eq!(code(r#"{"value": NaN}"#).code, ErrorCode::Malformed);
        assert_eq!(code(r#"{"value": 1e999}"#).code, ErrorCode::Malformed);
        assert_eq!(code(r#"{"value": "NaN"}"#).code, ErrorCode::InvalidField);
        assert_eq!(code(r#"{"value": null}"#).code, ErrorCode::InvalidField);
        assert_eq!(code(r#"{"ts": 1764000000000}"#).code, ErrorCode::InvalidField);
        assert_eq!(code(r#"{"value": 1, "ts": 1.5}"#).code, ErrorCode::InvalidField);
        assert_eq!(code(r#"{"value": 1, "ts": "now"}"#).code, ErrorCode::InvalidField);
        assert_eq!(code(r#"{"readings": 5}"#).code, ErrorCode::InvalidField);
        assert_eq!(code("5").code, ErrorCode::InvalidField);
        let bad = code(r#"[{"value": 1}, {"value": 2}, {"value": "x"}]"#);
        assert_eq!(bad.index, Some(2), "the error names the bad reading");
        assert!(bad.message.starts_with("reading 2:"), "{}", bad.message);
    }

    #[test]
    fn batches_are_checked_against_the_range_and_the_clock() {
        let now = 1_764_000_000_000;
        let s = sensor(Some(-40.0), Some(85.0));
        let ok = check_batch(
            &s,
            &[NewReading { value: 85.0, ts: None }, NewReading { value: -40.0, ts: Some(now - 5) }],
            now,
        )
        .unwrap();
        assert_eq!(ok, vec![Reading { ts: now, value: 85.0 }, Reading { ts: now - 5, value: -40.0 }]);
        let err = |value: f64, ts: Option<i64>| {
            check_batch(&s, &[NewReading { value: 0.0, ts: None }, NewReading { value, ts }], now).unwrap_err()
        };
        assert_eq!(err(85.1, None).code, ErrorCode::OutOfRange);
        assert_eq!(err(85.1, None).index, Some(1));
        assert_eq!(err(-40.5, None).code, ErrorCode::OutOfRange);
        assert_eq!(err(f64::NAN, None).code, ErrorCode::OutOfRange);
        assert_eq!(err(1.0, Some(now + MAX_FUTURE_MS + 1)).code, ErrorCode::OutOfRange);
        assert!(check_batch(&s, &[NewReading { value: 1.0, ts: Some(now + MAX_FUTURE_MS) }], now).is_ok());
        assert_eq!(err(1.0, Some(MIN_TS - 1)).code, ErrorCode::OutOfRange);
        assert_eq!(err(1.0, Some(1_764_000_000)).code, ErrorCode::OutOfRange, "seconds, not milliseconds");
        assert_eq!(check_batch(&s, &[], now).unwrap_err().code, ErrorCode::InvalidField);
        let open = sensor(None, None);
        assert!(check_batch(&open, &[NewReading { value: -1e300, ts: None }], now).is_ok());
    }

    #[test]
    fn sensor_fields_are_checked() {
        let fields = |name: &str| SensorFields { name: name.into(), ..SensorFields::default() };
        assert_eq!(fields("  hall temp ").check().unwrap().name, "hall temp");
        assert!(fields("").check().is_err());
        assert!(fields("123").check().is_err(), "digits are ids");
        assert!(fields(&"x".repeat(65)).check().is_err());
        assert!(fields("a\nb").check().is_err());
        let inverted = SensorFields { range_min: Some(5.0), range_max: Some(1.0), ..fields("x") };
        assert!(inverted.check().is_err());
        let infinite = SensorFields { alert_high: Some(f64::INFINITY), ..fields("x") };
        assert!(infinite.check().is_err());
        let long_unit = SensorFields { unit: "u".repeat(17), ..fields("x") };
        assert!(long_unit.check().is_err());
    }

    #[test]
    fn timestamps_are_written_in_iso_8601_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(MIN_TS), "2000-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_764_000_000_123), "2025-11-24T16:00:00.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.999Z");
    }
}
