//! The sensors' side of the socket: joining `sensor:<id>` (a latest-value topic: the latest
//! reading first, then every batch as it is stored) and `sensors` (the list's changes); and
//! the `reading` request, acknowledged once the readings are durable.

use std::sync::Arc;

use async_trait::async_trait;

use super::protocol::{sensor_topic, NewReading, Reading, SensorFrame, SensorRequest, SensorTopic};
use super::server::{check_batch, may_manage, parse_list, Origin, SensorError, Sensors};
use super::store::Sensor;
use crate::realtime::protocol::{ErrorCode, Rejection, Request, ServerFrame};
use crate::realtime::server::channel::{Channel, Closed, Flow, Join};
use crate::realtime::server::gateway::Conn;
use crate::store::now_ms;

pub struct SensorChannel {
    pub sensors: Arc<Sensors>,
}

/// Read a `reading` frame. Its readings are checked one by one first, so that an error names
/// the bad one (serde would only say the list is wrong).
pub fn read_request(request: Request) -> Result<SensorRequest, Rejection> {
    if let Some(serde_json::Value::Array(items)) = request.frame.get("readings") {
        parse_list(items).map_err(|bad| request.reject(bad.code, bad.message))?;
    }
    request.read()
}

/// A sensor by id, or an error frame sent and `None`.
pub async fn sensor(
    conn: &mut Conn,
    sensors: &Sensors,
    id: Option<&str>,
    sensor_id: i64,
) -> Result<Option<Sensor>, Closed> {
    match sensors.get(sensor_id).await {
        Ok(sensor) => Ok(Some(sensor)),
        Err(SensorError::UnknownSensor(_)) => {
            let message = format!("no sensor has the id {sensor_id}");
            conn.error(id.map(str::to_owned), ErrorCode::UnknownSensor, &message).await?;
            Ok(None)
        }
        Err(error) => {
            conn.internal_error(id.map(str::to_owned), &error).await?;
            Ok(None)
        }
    }
}

/// The error frame's code and text for a write that failed.
pub fn write_failure(error: SensorError) -> (ErrorCode, String) {
    match error {
        SensorError::UnknownSensor(_) => (ErrorCode::UnknownSensor, "the sensor was deleted".to_owned()),
        error @ SensorError::RateLimited => (ErrorCode::RateLimited, error.to_string()),
        error => {
            tracing::warn!(%error, "storing readings failed");
            (ErrorCode::Internal, "the readings could not be stored; retry".to_owned())
        }
    }
}

impl SensorChannel {
    /// A `reading` frame: the sensor's owner or an admin posts readings; acked once durable.
    async fn post_readings(&self, conn: &mut Conn, id: String, sensor_id: i64, readings: Vec<NewReading>) -> Flow {
        let Some(sensor) = sensor(conn, &self.sensors, Some(&id), sensor_id).await? else { return Ok(()) };
        if !conn.who().user().is_some_and(|user| may_manage(&sensor, user)) {
            let message = "only the sensor's owner or an admin may post its readings";
            return conn.error(Some(id), ErrorCode::Forbidden, message).await;
        }
        let max = self.sensors.limits().batch_max;
        if readings.len() > max {
            return conn.error(Some(id), ErrorCode::TooLarge, &format!("at most {max} readings per frame")).await;
        }
        let checked: Vec<Reading> = match check_batch(&sensor.info, &readings, now_ms()) {
            Ok(checked) => checked,
            Err(bad) => return conn.error(Some(id), bad.code, &bad.message).await,
        };
        // The frame's `id` makes the write idempotent: a retry is acked as a duplicate.
        let sensors = self.sensors.clone();
        conn.defer(async move {
            let frame = match sensors.write(sensor_id, checked, Origin::Api, Some(id.clone())).await {
                Ok(stored) => {
                    ServerFrame::Ack { id, topic: sensor_topic(sensor_id), offset: 0, duplicate: stored.duplicate }
                }
                Err(error) => {
                    let (code, message) = write_failure(error);
                    ServerFrame::Error { id: Some(id), code, message }
                }
            };
            Some(serde_json::to_string(&frame).unwrap_or_default())
        });
        Ok(())
    }
}

#[async_trait]
impl Channel for SensorChannel {
    fn topics(&self) -> &'static [&'static str] {
        &["sensor:", "sensors"]
    }

    fn spelling(&self) -> &'static [&'static str] {
        &["sensor:<id>", "sensors"]
    }

    fn requests(&self) -> &'static [&'static str] {
        &SensorRequest::TYPES
    }

    async fn join(&self, conn: &mut Conn, join: Join) -> Flow {
        let Join { id, topic, .. } = join;
        match SensorTopic::parse(&topic) {
            Some(SensorTopic::List) => {
                conn.subscribe(&topic);
                conn.send(&ServerFrame::Subscribed { id, topic, epoch: String::new(), head: 0 }).await
            }
            Some(SensorTopic::Sensor(sensor_id)) => {
                if sensor(conn, &self.sensors, Some(&id), sensor_id).await?.is_none() {
                    return Ok(());
                }
                let sensors = self.sensors.clone();
                let frame_topic = topic.clone();
                let latest = async move {
                    let latest = sensors.latest(sensor_id).await?;
                    let frame =
                        latest.map(|reading| SensorFrame::Readings { topic: frame_topic, readings: vec![reading] });
                    Ok::<_, SensorError>(frame)
                };
                conn.join_latest(id, topic, String::new(), latest).await
            }
            None => {
                let message = format!("{topic:?} is not a sensor topic (sensor:<id>, sensors)");
                conn.error(Some(id), ErrorCode::UnknownTopic, &message).await
            }
        }
    }

    async fn request(&self, conn: &mut Conn, request: Request) -> Flow {
        match read_request(request) {
            Ok(SensorRequest::Reading { id, sensor, readings }) => self.post_readings(conn, id, sensor, readings).await,
            Err(rejection) => conn.reject(rejection).await,
        }
    }
}
