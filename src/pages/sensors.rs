//! Sensors: the server functions and shared types of the sensor dashboard.
//!
//! Live readings come over the page's WebSocket (topic `sensor:<id>`: the latest reading
//! first, then `readings` frames); everything else is here. Every function checks who is
//! asking on the server: anyone signed in (or a guest, in guest mode) may look; only a
//! sensor's owner or an admin may change it, delete it, or rotate its token.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::protocol::{HistoryPoint, Reading, SensorInfo};

/// A sensor as the dashboard lists it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SensorSummary {
    pub info: SensorInfo,
    /// The owner's username; `None` for a sensor the tutorial's endpoint registered in guest mode.
    pub owner: Option<String>,
    /// The latest reading by time, if there is any.
    pub latest: Option<Reading>,
    /// Whether the asker may change, delete, rotate the token of, and post to this sensor.
    pub can_manage: bool,
}

/// A sensor just made, with its token: shown this once and never again (only its hash is kept).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CreatedSensor {
    pub sensor: SensorInfo,
    /// `sbs_…`: posts this sensor's readings (`Authorization: Bearer <token>`), nothing else.
    pub token: String,
}

/// A stretch of a sensor's history, oldest first.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SensorSeries {
    pub points: Vec<HistoryPoint>,
    /// 0: each point is one raw reading. Otherwise each point is a bucket this many
    /// milliseconds wide (a whole number of minutes) starting at its `ts`, with the min, max,
    /// average (`value`) and count of the readings in it.
    pub bucket_ms: i64,
}

#[cfg(feature = "ssr")]
mod ssr {
    use super::SensorSummary;
    use crate::protocol::Reading;
    use crate::server::auth::Identity;
    use crate::server::sensors::may_manage;
    use crate::server::store::Sensor;

    pub fn summary(sensor: Sensor, latest: Option<Reading>, who: &Identity) -> SensorSummary {
        let can_manage = who.user().is_some_and(|user| may_manage(&sensor, user));
        SensorSummary { info: sensor.info, owner: sensor.owner_name, latest, can_manage }
    }
}

/// Every sensor, by name, with its owner and latest reading.
#[server(endpoint = "list_sensors")]
pub async fn list_sensors() -> Result<Vec<SensorSummary>, AppError> {
    use crate::server::session;
    let who = session::require_identity().await?;
    let listed = session::state()?.sensors.list().await?;
    Ok(listed.into_iter().map(|(sensor, latest)| ssr::summary(sensor, latest, &who)).collect())
}

/// One sensor, with its owner and latest reading.
#[server(endpoint = "get_sensor")]
pub async fn get_sensor(id: i64) -> Result<SensorSummary, AppError> {
    use crate::server::session;
    let who = session::require_identity().await?;
    let sensors = session::state()?.sensors;
    let sensor = sensors.get(id).await?;
    let latest = sensors.latest(id).await?;
    Ok(ssr::summary(sensor, latest, &who))
}

/// Create a sensor owned by the signed-in user. `name`: 1 to 64 characters, unique without
/// regard to case, not only digits. `unit`: up to 16 characters, empty when absent. `range_min`/`range_max`:
/// readings outside are refused. `alert_low`/`alert_high`: readings outside are highlighted.
#[server(endpoint = "create_sensor")]
pub async fn create_sensor(
    name: String,
    unit: Option<String>,
    range_min: Option<f64>,
    range_max: Option<f64>,
    alert_low: Option<f64>,
    alert_high: Option<f64>,
) -> Result<CreatedSensor, AppError> {
    use crate::server::sensors::SensorFields;
    use crate::server::session;
    let user = session::require_user().await?;
    let fields = SensorFields { name, unit: unit.unwrap_or_default(), range_min, range_max, alert_low, alert_high };
    let (sensor, token) = session::state()?.sensors.create(&user, fields).await?;
    Ok(CreatedSensor { sensor: sensor.info, token })
}

/// Set a sensor's alert thresholds (its owner or an admin). `None` removes a threshold.
#[server(endpoint = "update_sensor")]
pub async fn update_sensor(id: i64, alert_low: Option<f64>, alert_high: Option<f64>) -> Result<SensorInfo, AppError> {
    use crate::server::session;
    let user = session::require_user().await?;
    Ok(session::state()?.sensors.set_alerts(id, &user, alert_low, alert_high).await?)
}

/// Delete a sensor and all its readings (its owner or an admin).
#[server(endpoint = "delete_sensor")]
pub async fn delete_sensor(id: i64) -> Result<(), AppError> {
    use crate::server::session;
    let user = session::require_user().await?;
    session::state()?.sensors.delete(id, &user).await?;
    Ok(())
}

/// Give a sensor a new token (its owner or an admin); the old one stops working at once.
/// The new token is shown this once.
#[server(endpoint = "rotate_sensor_token")]
pub async fn rotate_sensor_token(id: i64) -> Result<String, AppError> {
    use crate::server::session;
    let user = session::require_user().await?;
    Ok(session::state()?.sensors.rotate_token(id, &user).await?)
}

/// A sensor's history in `[from_ms, to_ms)`. Raw readings when there are at most
/// `max_points` (1 to 10,000) and none of the range is older than the raw retention;
/// otherwise at most about `max_points` buckets with min, max and average, built from raw
/// readings and per-minute rollups alike.
#[server(endpoint = "sensor_history")]
pub async fn sensor_history(id: i64, from_ms: i64, to_ms: i64, max_points: u32) -> Result<SensorSeries, AppError> {
    use crate::server::session;
    session::require_identity().await?;
    let (points, bucket_ms) = session::state()?.sensors.history(id, from_ms, to_ms, max_points).await?;
    Ok(SensorSeries { points, bucket_ms })
}
