//! The tutorial's endpoints, kept so that its clients and devices work unchanged: adapters
//! onto the features' topics, in the tutorial's JSON ([`codec`]).
//!
//! - `/ws/chat/`: `{"message": "..."}` in, the same out to every `/ws/chat/` client. Its
//!   messages are the lobby's: stored, shown in the web app; lobby messages reach these
//!   clients.
//! - `/ws/location/`: a position in is the sender's position on the lobby's map; every
//!   position on the lobby's map goes out.
//! - `/ws/sensor_data/`: a reading in is stored through the sensors' writer (in guest mode an
//!   unknown name registers a sensor); every reading stored goes out to every client.
//!
//! Each endpoint's clients hear a topic of its own (`seed:*`), fed by observing the
//! features: chat's stored messages, the map's positions, the sensors' stored readings.

pub mod codec;

use std::sync::Arc;

use async_trait::async_trait;

use crate::accounts::auth::Identity;
use crate::chat::protocol::{check_text, LOBBY};
use crate::chat::server::Chat;
use crate::map::protocol::location_topic;
use crate::map::server::Locations;
use crate::realtime::protocol::ErrorCode;
use crate::realtime::server::channel::{Closed, Dialect, Flow};
use crate::realtime::server::gateway::Conn;
use crate::realtime::server::hub::{Event, Hub};
use crate::sensors::channel::write_failure;
use crate::sensors::protocol::NewReading;
use crate::sensors::server::{check_batch, may_manage, Origin, SensorError, Sensors};
use crate::sensors::store::Sensor;
use crate::server::{ServeError, Setup};
use crate::store::now_ms;
use codec::{SeedReading, SeedTarget};

/// The topic `/ws/chat/` clients hear.
pub const CHAT_TOPIC: &str = "seed:chat";
/// The topic `/ws/location/` clients hear.
pub const LOCATION_TOPIC: &str = "seed:location";
/// The topic `/ws/sensor_data/` clients hear.
pub const SENSOR_TOPIC: &str = "seed:sensor_data";

/// Serve the three endpoints, and feed their topics from the features.
pub async fn start(setup: &mut Setup) -> Result<(), ServeError> {
    let chat = setup.get::<Chat>();
    let locations = setup.get::<Locations>();
    let sensors = setup.get::<Sensors>();
    let guest_access = setup.config.guest_access;
    chat.observe(Box::new(|hub, room, message, burst| {
        if room == LOBBY && hub.subscriber_count(CHAT_TOPIC) > 0 {
            let frame = codec::encode_chat(&message.text);
            hub.publish_in(Event::new(Arc::from(CHAT_TOPIC), 0, frame, None), burst);
        }
    }));
    let lobby_map = location_topic(LOBBY);
    locations.observe(Box::new(move |hub, topic, position| {
        if topic == lobby_map && hub.wanted(LOCATION_TOPIC) {
            let frame = codec::encode_location(position.latitude, position.longitude);
            hub.publish(Event::new(Arc::from(LOCATION_TOPIC), 0, frame, None));
        }
    }));
    sensors.observe(Box::new(echo_readings));
    setup.dialect("/ws/chat/", ChatDialect { chat });
    setup.dialect("/ws/location/", LocationDialect { locations });
    setup.dialect("/ws/sensor_data/", SensorDialect { sensors, guest_access });
    Ok(())
}

/// What `/ws/sensor_data/` sent, for the echo to the others: the sensor as it was named.
struct Echo {
    sensor_id: serde_json::Value,
    sensor_value: serde_json::Number,
}

/// Every reading stored reaches every `/ws/sensor_data/` client: readings from this endpoint
/// with the sensor named as the sender named it, others with its integer id.
fn echo_readings(hub: &Hub, sensor_id: i64, readings: &[crate::sensors::protocol::Reading], origin: &Origin) {
    if !hub.wanted(SENSOR_TOPIC) {
        return;
    }
    let topic: Arc<str> = Arc::from(SENSOR_TOPIC);
    if let Origin::Tagged(tag) = origin {
        if let Some(echo) = tag.downcast_ref::<Echo>() {
            let frame = codec::encode_sensor(&echo.sensor_id, &serde_json::Value::Number(echo.sensor_value.clone()));
            hub.publish(Event::new(topic, 0, frame, None));
            return;
        }
    }
    for reading in readings {
        let value = serde_json::Number::from_f64(reading.value).map_or(serde_json::Value::Null, Into::into);
        let frame = codec::encode_sensor(&sensor_id.into(), &value);
        hub.publish(Event::new(topic.clone(), 0, frame, None));
    }
}

/// Who may post readings through the tutorial's endpoint: the sensor's owner or an admin,
/// and anyone for sensors owned by nobody (those the endpoint registered in guest mode).
pub fn may_post_seed(sensor: &Sensor, who: &Identity) -> bool {
    sensor.owner_id.is_none() || who.user().is_some_and(|user| may_manage(sensor, user))
}

struct ChatDialect {
    chat: Arc<Chat>,
}

#[async_trait]
impl Dialect for ChatDialect {
    fn topic(&self) -> &'static str {
        CHAT_TOPIC
    }

    async fn frame(&self, conn: &mut Conn, text: &str) -> Flow {
        let message = match codec::decode_chat(text) {
            Ok(message) => message,
            Err((code, message)) => return conn.error(None, code, &message).await,
        };
        if let Err((code, message)) = check_text(&message) {
            return conn.error(None, code, &message).await;
        }
        if let Err(error) = self.chat.check_rate(conn.who()).await {
            return conn.error(None, ErrorCode::RateLimited, &error.to_string()).await;
        }
        let id = format!("seed-{:032x}", rand::random::<u128>());
        let chat = self.chat.clone();
        let author = conn.who().display_name();
        conn.defer(async move {
            match chat.append(LOBBY, id, author, message, None).await {
                // The tutorial has no acknowledgements: its clients see their echo.
                Ok(_) => None,
                Err(error) => {
                    tracing::warn!(%error, "publish failed");
                    Some(codec::encode_error(ErrorCode::Internal, "the message could not be stored"))
                }
            }
        });
        Ok(())
    }

    fn encode_error(&self, code: ErrorCode, message: &str) -> String {
        codec::encode_error(code, message)
    }
}

struct LocationDialect {
    locations: Arc<Locations>,
}

#[async_trait]
impl Dialect for LocationDialect {
    fn topic(&self) -> &'static str {
        LOCATION_TOPIC
    }

    async fn frame(&self, conn: &mut Conn, text: &str) -> Flow {
        match codec::decode_location(text) {
            Ok(at) => {
                crate::map::channel::share(conn, &self.locations, &location_topic(LOBBY), at, false);
                Ok(())
            }
            Err((code, message)) => conn.error(None, code, &message).await,
        }
    }

    fn encode_error(&self, code: ErrorCode, message: &str) -> String {
        codec::encode_error(code, message)
    }
}

struct SensorDialect {
    sensors: Arc<Sensors>,
    guest_access: bool,
}

impl SensorDialect {
    /// The sensor a frame names; in guest mode, an unknown name registers one. Else an error
    /// sent and `None`.
    async fn find(&self, conn: &mut Conn, reading: &SeedReading) -> Result<Option<Sensor>, Closed> {
        let store = self.sensors.store();
        let found = match &reading.target {
            SeedTarget::Id(id) => store.sensor(*id).await,
            SeedTarget::Name(name) => store.sensor_by_name(name).await,
        };
        match (found, &reading.target) {
            (Ok(Some(sensor)), _) => Ok(Some(sensor)),
            (Ok(None), SeedTarget::Name(name)) if self.guest_access => self.register(conn, name).await,
            (Ok(None), _) => {
                conn.error(None, ErrorCode::UnknownSensor, &format!("no sensor is {}", reading.sensor_id)).await?;
                Ok(None)
            }
            (Err(error), _) => {
                conn.internal_error(None, &error).await?;
                Ok(None)
            }
        }
    }

    async fn register(&self, conn: &mut Conn, name: &str) -> Result<Option<Sensor>, Closed> {
        let (code, message) = match self.sensors.register_unowned(name).await {
            Ok(sensor) => return Ok(Some(sensor)),
            // Registered by someone else a moment ago.
            Err(SensorError::NameTaken(_)) => match self.sensors.store().sensor_by_name(name).await {
                Ok(Some(sensor)) => return Ok(Some(sensor)),
                _ => (ErrorCode::Internal, "the sensor could not be found".to_owned()),
            },
            Err(SensorError::Invalid(message)) => (ErrorCode::InvalidField, message),
            Err(error) => {
                tracing::error!(%error, "registering a sensor failed");
                (ErrorCode::Internal, "the sensor could not be registered".to_owned())
            }
        };
        conn.error(None, code, &message).await?;
        Ok(None)
    }
}

#[async_trait]
impl Dialect for SensorDialect {
    fn topic(&self) -> &'static str {
        SENSOR_TOPIC
    }

    async fn frame(&self, conn: &mut Conn, text: &str) -> Flow {
        let reading = match codec::decode_sensor(text) {
            Ok(reading) => reading,
            Err((code, message)) => return conn.error(None, code, &message).await,
        };
        let Some(sensor) = self.find(conn, &reading).await? else { return Ok(()) };
        if !may_post_seed(&sensor, conn.who()) {
            let message = "only the sensor's owner or an admin may post its readings";
            return conn.error(None, ErrorCode::Forbidden, message).await;
        }
        let new = [NewReading { value: reading.value, ts: None }];
        let checked = match check_batch(&sensor.info, &new, now_ms()) {
            Ok(checked) => checked,
            Err(bad) => return conn.error(None, bad.code, &bad.message).await,
        };
        let echo = Echo { sensor_id: reading.sensor_id, sensor_value: reading.sensor_value };
        let sensors = self.sensors.clone();
        let sensor_id = sensor.info.id;
        conn.defer(async move {
            match sensors.write(sensor_id, checked, Origin::Tagged(Arc::new(echo)), None).await {
                Ok(_) => None,
                Err(error) => {
                    let (code, message) = write_failure(error);
                    Some(codec::encode_error(code, &message))
                }
            }
        });
        Ok(())
    }

    fn encode_error(&self, code: ErrorCode, message: &str) -> String {
        codec::encode_error(code, message)
    }
}
