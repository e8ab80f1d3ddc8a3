//! The wire types of the `/ws` protocol, shared by the server and the browser.
//!
//! Every frame is one JSON object in one WebSocket text frame, tagged by its
//! `"type"`. `docs/protocol.md` is the prose contract for these types; a change
//! here is a change there.

use serde::{Deserialize, Serialize};

/// The room every installation has, and the one the tutorial's `/ws/chat/` talks to.
pub const LOBBY: &str = "lobby";
/// The topic of the sensors' list: what every open dashboard hears (a sensor deleted).
pub const SENSORS_TOPIC: &str = "sensors";
/// How many messages a room shows when it is opened, and a page of older ones.
pub const HISTORY_PAGE: u32 = 50;
/// The most messages one `history` request may ask for.
pub const HISTORY_MAX: u32 = 200;
/// The longest chat message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4000;
/// The longest request id a client may choose, in bytes.
pub const MAX_ID_BYTES: usize = 64;
/// The longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 32;
/// The longest room name, in bytes.
pub const MAX_ROOM_BYTES: usize = 32;

/// One stored chat message, as every client sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    /// Position in the room's history: strictly increasing, starting at 1.
    pub offset: u64,
    /// The id the publisher chose; a retry with the same id is not stored twice.
    pub id: String,
    pub author: String,
    pub text: String,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub ts: i64,
}

/// A room as listed on the page.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RoomInfo {
    pub name: String,
    /// Changes only when the room's history is reset; offsets of one epoch mean nothing in another.
    pub epoch: String,
    /// Members only; others cannot see it exists.
    #[serde(default)]
    pub private: bool,
}

/// Someone's latest position on a room's map.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Located {
    pub user: String,
    pub latitude: f64,
    pub longitude: f64,
    /// When the server received it, in milliseconds since the Unix epoch.
    pub ts: i64,
    /// Earlier positions, oldest first, when this person leaves a trail (at most 30).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trail: Vec<[f64; 2]>,
}

/// A sensor as every viewer sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SensorInfo {
    pub id: i64,
    /// Unique among sensors, compared without case.
    pub name: String,
    /// Shown after values, e.g. `°C`; may be empty.
    pub unit: String,
    /// The physical range: readings outside it are refused (`out_of_range`).
    pub range_min: Option<f64>,
    pub range_max: Option<f64>,
    /// Thresholds to highlight: readings outside them are stored and shown as alerts.
    pub alert_low: Option<f64>,
    pub alert_high: Option<f64>,
}

/// One sensor reading.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    /// When it was measured, in milliseconds since the Unix epoch.
    pub ts: i64,
    pub value: f64,
}

/// A reading on its way in: without `ts` it is taken as measured when the server receives it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct NewReading {
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
}

/// A point of a sensor's history: one raw reading (`count` 1, `min` = `max` = `value`) or a
/// bucket of several, with `value` their average and `ts` the bucket's start.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct HistoryPoint {
    pub ts: i64,
    pub value: f64,
    pub min: f64,
    pub max: f64,
    pub count: i64,
}

/// Where a client left a durable topic: the server sends what came after.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    pub epoch: String,
    pub offset: u64,
}

/// Frames a client sends.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Start receiving a topic's events; with `resume`, first every event after it.
    Subscribe {
        id: String,
        topic: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<Resume>,
        /// Count me as present in this room (the room is open on my screen).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        present: bool,
    },
    Unsubscribe {
        id: String,
        topic: String,
    },
    /// Post a chat message. `id` is the idempotency key: choose it at random, keep it for retries.
    Publish {
        id: String,
        topic: String,
        text: String,
    },
    /// Older messages: those before `before` (or the latest when absent), oldest first.
    History {
        id: String,
        topic: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Share my position on the room's map (`location:<room>`).
    Locate {
        id: String,
        topic: String,
        latitude: f64,
        longitude: f64,
        /// Keep my last positions and draw them as a line.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        trail: bool,
    },
    /// Stop sharing my position; it disappears from everyone's map.
    StopSharing {
        id: String,
        topic: String,
    },
    /// I am typing in this room (send at most every couple of seconds).
    Typing {
        id: String,
        topic: String,
    },
    /// I have read the room up to `offset` (for unread counts).
    Read {
        id: String,
        topic: String,
        offset: u64,
    },
    /// Post readings of a sensor (its owner or an admin only). Answered by `ack` (with
    /// `topic` `sensor:<id>` and `offset` 0) once they are durable, or by `error`. All or
    /// nothing: one bad reading refuses the whole frame.
    Reading {
        id: String,
        sensor: i64,
        readings: Vec<NewReading>,
    },
    Ping {
        id: String,
    },
}

impl ClientFrame {
    /// The frame types a client may send, as spelled on the wire.
    pub const TYPES: [&'static str; 10] = [
        "subscribe",
        "unsubscribe",
        "publish",
        "history",
        "locate",
        "stop_sharing",
        "typing",
        "read",
        "reading",
        "ping",
    ];
}

/// Frames the server sends. Read them with [`ServerFrame::from_json`].
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame on every connection.
    Welcome {
        name: String,
        heartbeat_ms: u64,
        max_frame_bytes: usize,
    },
    /// The subscription is live. `head` is the room's last offset when it started.
    Subscribed {
        id: String,
        topic: String,
        epoch: String,
        head: u64,
    },
    Unsubscribed {
        id: String,
        topic: String,
    },
    /// A chat message, live or replayed.
    Message {
        topic: String,
        #[serde(flatten)]
        message: ChatMessage,
    },
    History {
        id: String,
        topic: String,
        epoch: String,
        messages: Vec<ChatMessage>,
        /// Whether there are messages older than the first one here.
        more: bool,
    },
    /// The publish `id` is durable at `offset`. `duplicate`: it was stored by an earlier try.
    Ack {
        id: String,
        topic: String,
        offset: u64,
        duplicate: bool,
    },
    /// A resume could not be honoured (the epoch changed): drop what you hold and reload.
    Reset {
        id: String,
        topic: String,
        epoch: String,
        head: u64,
    },
    /// A room became visible to me (created, or I was invited).
    Room {
        topic: String,
        room: RoomInfo,
    },
    /// I lost access to a room (removed from its members).
    RoomLeft {
        topic: String,
        room: String,
    },
    /// Who has the room open now, sorted; sent on subscribe and on every change.
    Presence {
        topic: String,
        online: Vec<String>,
    },
    /// A message was posted in a room I can see (on `activity`): for unread counts and
    /// notifications without following every room.
    Activity {
        topic: String,
        room: String,
        offset: u64,
        author: String,
        text: String,
    },
    /// Everyone's latest position in a room: sent first on subscribing to `location:<room>`.
    Locations {
        topic: String,
        positions: Vec<Located>,
    },
    /// Someone's new position.
    Location {
        topic: String,
        #[serde(flatten)]
        position: Located,
    },
    /// Someone stopped sharing or left.
    LocationGone {
        topic: String,
        user: String,
    },
    /// Someone is typing in the room.
    Typing {
        topic: String,
        user: String,
    },
    /// Readings of a sensor (`sensor:<id>`): right after `subscribed`, the latest one (if
    /// any); then every new batch as it is stored, several readings per frame when they
    /// arrive together, in the order they were received.
    Readings {
        topic: String,
        readings: Vec<Reading>,
    },
    /// A sensor was deleted, on `sensors` (every dashboard) and on `sensor:<id>` (whoever
    /// watches it); the subscription to `sensor:<id>` ends with it.
    SensorDeleted {
        topic: String,
        sensor: i64,
    },
    Pong {
        id: String,
    },
    Error {
        #[serde(default)]
        id: Option<String>,
        code: ErrorCode,
        message: String,
    },
}

impl ServerFrame {
    /// The frame types, as spelled on the wire.
    pub const TYPES: [&'static str; 19] = [
        "welcome",
        "subscribed",
        "unsubscribed",
        "message",
        "history",
        "ack",
        "reset",
        "room",
        "room_left",
        "presence",
        "activity",
        "locations",
        "location",
        "location_gone",
        "typing",
        "readings",
        "sensor_deleted",
        "pong",
        "error",
    ];

    /// Read one frame.
    ///
    /// The frame's fields are read in one pass into one struct of them all, and the `type`
    /// picks the variant. serde's derive for an internally tagged enum would buffer every
    /// frame into a generic tree first and needs a deserializer per variant; this is the
    /// browser's hot path, and that code was the largest function of its bundle (60 KB).
    pub fn from_json(text: &str) -> Result<ServerFrame, serde_json::Error> {
        // A derived struct would also take an array of its fields in order: frames are objects.
        if !text.trim_start().starts_with('{') {
            use serde::de::Error as _;
            let found = serde::de::Unexpected::Other("something else");
            return Err(serde_json::Error::invalid_type(found, &"a frame: a JSON object"));
        }
        serde_json::from_str::<wire::Fields>(text)?.into_frame()
    }
}

/// The decoding behind [`ServerFrame::from_json`].
mod wire {
    use super::{ChatMessage, ErrorCode, Located, Reading, ServerFrame};
    use serde::de::Error as _;
    use serde::Deserialize;
    use serde_json::value::RawValue;
    use std::borrow::Cow;

    /// Every field any server frame has. `room` is an object in `room` frames and a name
    /// elsewhere, so it is kept raw until the type is known.
    #[derive(Deserialize)]
    pub(super) struct Fields<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        name: Option<String>,
        heartbeat_ms: Option<u64>,
        max_frame_bytes: Option<usize>,
        id: Option<String>,
        topic: Option<String>,
        epoch: Option<String>,
        head: Option<u64>,
        offset: Option<u64>,
        author: Option<String>,
        text: Option<String>,
        ts: Option<i64>,
        messages: Option<Vec<ChatMessage>>,
        more: Option<bool>,
        duplicate: Option<bool>,
        #[serde(borrow)]
        room: Option<&'a RawValue>,
        online: Option<Vec<String>>,
        positions: Option<Vec<Located>>,
        user: Option<String>,
        latitude: Option<f64>,
        longitude: Option<f64>,
        trail: Option<Vec<[f64; 2]>>,
        readings: Option<Vec<Reading>>,
        sensor: Option<i64>,
        code: Option<ErrorCode>,
        message: Option<String>,
    }

    /// The value of a field the frame's type requires, or "missing field" with its name.
    macro_rules! need {
        ($field:ident) => {
            $field.ok_or_else(|| serde_json::Error::missing_field(stringify!($field)))?
        };
    }

    impl Fields<'_> {
        pub(super) fn into_frame(self) -> Result<ServerFrame, serde_json::Error> {
            let Fields {
                kind,
                name,
                heartbeat_ms,
                max_frame_bytes,
                id,
                topic,
                epoch,
                head,
                offset,
                author,
                text,
                ts,
                messages,
                more,
                duplicate,
                room,
                online,
                positions,
                user,
                latitude,
                longitude,
                trail,
                readings,
                sensor,
                code,
                message,
            } = self;
            Ok(match kind.as_ref() {
                "welcome" => ServerFrame::Welcome {
                    name: need!(name),
                    heartbeat_ms: need!(heartbeat_ms),
                    max_frame_bytes: need!(max_frame_bytes),
                },
                "subscribed" => ServerFrame::Subscribed {
                    id: need!(id),
                    topic: need!(topic),
                    epoch: need!(epoch),
                    head: need!(head),
                },
                "unsubscribed" => ServerFrame::Unsubscribed { id: need!(id), topic: need!(topic) },
                "message" => ServerFrame::Message {
                    topic: need!(topic),
                    message: ChatMessage {
                        offset: need!(offset),
                        id: need!(id),
                        author: need!(author),
                        text: need!(text),
                        ts: need!(ts),
                    },
                },
                "history" => ServerFrame::History {
                    id: need!(id),
                    topic: need!(topic),
                    epoch: need!(epoch),
                    messages: need!(messages),
                    more: need!(more),
                },
                "ack" => ServerFrame::Ack {
                    id: need!(id),
                    topic: need!(topic),
                    offset: need!(offset),
                    duplicate: need!(duplicate),
                },
                "reset" => {
                    ServerFrame::Reset { id: need!(id), topic: need!(topic), epoch: need!(epoch), head: need!(head) }
                }
                "room" => ServerFrame::Room { topic: need!(topic), room: serde_json::from_str(need!(room).get())? },
                "room_left" => {
                    ServerFrame::RoomLeft { topic: need!(topic), room: serde_json::from_str(need!(room).get())? }
                }
                "presence" => ServerFrame::Presence { topic: need!(topic), online: need!(online) },
                "activity" => ServerFrame::Activity {
                    topic: need!(topic),
                    room: serde_json::from_str(need!(room).get())?,
                    offset: need!(offset),
                    author: need!(author),
                    text: need!(text),
                },
                "locations" => ServerFrame::Locations { topic: need!(topic), positions: need!(positions) },
                "location" => ServerFrame::Location {
                    topic: need!(topic),
                    position: Located {
                        user: need!(user),
                        latitude: need!(latitude),
                        longitude: need!(longitude),
                        ts: need!(ts),
                        trail: trail.unwrap_or_default(),
                    },
                },
                "location_gone" => ServerFrame::LocationGone { topic: need!(topic), user: need!(user) },
                "typing" => ServerFrame::Typing { topic: need!(topic), user: need!(user) },
                "readings" => ServerFrame::Readings { topic: need!(topic), readings: need!(readings) },
                "sensor_deleted" => ServerFrame::SensorDeleted { topic: need!(topic), sensor: need!(sensor) },
                "pong" => ServerFrame::Pong { id: need!(id) },
                "error" => ServerFrame::Error { id, code: need!(code), message: need!(message) },
                other => return Err(serde_json::Error::unknown_variant(other, &ServerFrame::TYPES)),
            })
        }
    }
}

/// Stable error codes. Clients match on these, never on the message text.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not JSON.
    Malformed,
    /// The frame's `type` is none this server knows.
    UnknownType,
    /// A field is missing or has the wrong type or value.
    InvalidField,
    /// The frame is larger than the configured limit.
    TooLarge,
    /// A binary frame where only text frames are spoken.
    BinaryFrame,
    /// A message with no text.
    EmptyMessage,
    /// A message longer than the limit.
    MessageTooLong,
    /// The topic names no room that exists.
    UnknownRoom,
    /// The topic is not of a known form.
    UnknownTopic,
    /// Too many messages too fast; wait and retry.
    RateLimited,
    /// The request needs a subscription to the topic first.
    NotSubscribed,
    /// A number outside its allowed range (or not finite).
    OutOfRange,
    /// No sensor has that id (or name).
    UnknownSensor,
    /// Not signed in, or the credentials are not valid (HTTP API).
    Unauthorized,
    /// Signed in, but not allowed to do this (for example, not the sensor's owner).
    Forbidden,
    /// The server could not do it; the request may be retried.
    Internal,
}

/// WebSocket close codes the server uses, beyond the standard ones.
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down; reconnect later.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame over the hard size limit; the stream cannot be resynchronised.
    pub const TOO_BIG: u16 = 1009;
    /// The client did not read fast enough and its queue filled up; reconnect and resume.
    pub const SLOW_CONSUMER: u16 = 4001;
    /// Nothing was heard from the client within the idle timeout.
    pub const IDLE_TIMEOUT: u16 = 4002;
}

/// A topic, parsed from its wire name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `chat:<room>`: a room's messages. Durable: offsets, resume.
    Chat(String),
    /// `rooms`: rooms being created.
    Rooms,
    /// `activity`: a short notice of every message in every room I can see.
    Activity,
    /// `location:<room>`: the room's map. Latest position per person, not history.
    Location(String),
    /// `sensor:<id>`: a sensor's readings. The latest first, then live; history is read
    /// with the `sensor_history` server function.
    Sensor(i64),
    /// `sensors`: changes to the list of sensors (one deleted).
    Sensors,
}

impl Topic {
    pub fn parse(name: &str) -> Option<Topic> {
        match name {
            "rooms" => return Some(Topic::Rooms),
            "activity" => return Some(Topic::Activity),
            SENSORS_TOPIC => return Some(Topic::Sensors),
            _ => {}
        }
        if let Some(id) = name.strip_prefix("sensor:") {
            // Digits only, so that each sensor has exactly one topic name.
            let digits =
                !id.is_empty() && id.len() <= 18 && id.bytes().all(|b| b.is_ascii_digit()) && !id.starts_with('0');
            return id.parse().ok().filter(|_| digits).map(Topic::Sensor);
        }
        if let Some(room) = name.strip_prefix("location:") {
            return valid_room_name(room).then(|| Topic::Location(room.to_owned()));
        }
        let room = name.strip_prefix("chat:")?;
        valid_room_name(room).then(|| Topic::Chat(room.to_owned()))
    }
}

pub fn location_topic(room: &str) -> String {
    format!("location:{room}")
}

pub fn sensor_topic(sensor_id: i64) -> String {
    format!("sensor:{sensor_id}")
}

pub fn chat_topic(room: &str) -> String {
    format!("chat:{room}")
}

/// Room names are short slugs so that they read well in URLs: `a-z`, `0-9`, `-`, `_`.
pub fn valid_room_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ROOM_BYTES
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A display name is 1 to 32 characters after trimming, with no control characters.
pub fn clean_display_name(name: &str) -> Option<String> {
    let name = name.trim();
    let chars = name.chars().count();
    (chars > 0 && chars <= MAX_NAME_CHARS && !name.chars().any(char::is_control)).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_round_trip_through_their_wire_spelling() {
        let frame: ClientFrame = serde_json::from_str(
            r#"{"type":"subscribe","id":"1","topic":"chat:lobby","resume":{"epoch":"e","offset":7}}"#,
        )
        .unwrap();
        assert_eq!(
            frame,
            ClientFrame::Subscribe {
                id: "1".into(),
                topic: "chat:lobby".into(),
                resume: Some(Resume { epoch: "e".into(), offset: 7 }),
                present: false,
            }
        );
        let text = serde_json::to_string(&frame).unwrap();
        assert_eq!(serde_json::from_str::<ClientFrame>(&text).unwrap(), frame);
    }

    #[test]
    fn message_frames_are_flat() {
        let frame = ServerFrame::Message {
            topic: "chat:lobby".into(),
            message: ChatMessage { offset: 3, id: "x".into(), author: "a".into(), text: "<b>".into(), ts: 5 },
        };
        let value: serde_json::Value = serde_json::to_value(&frame).unwrap();
        assert_eq!(value["type"], "message");
        assert_eq!(value["offset"], 3);
        assert_eq!(value["text"], "<b>");
        assert_eq!(ServerFrame::from_json(&value.to_string()).unwrap(), frame);
    }

    /// One frame of every type, with every optional part present.
    fn every_server_frame() -> Vec<ServerFrame> {
        let message =
            ChatMessage { offset: 3, id: "m\"1".into(), author: "ann".into(), text: "<b>hi</b>".into(), ts: 5 };
        let located = Located {
            user: "bo".into(),
            latitude: -33.5,
            longitude: 151.25,
            ts: 9,
            trail: vec![[1.0, 2.0], [3.0, 4.5]],
        };
        let t = || "chat:lobby".to_string();
        vec![
            ServerFrame::Welcome { name: "ann".into(), heartbeat_ms: 25_000, max_frame_bytes: 65_536 },
            ServerFrame::Subscribed { id: "s1".into(), topic: t(), epoch: "e1".into(), head: 42 },
            ServerFrame::Unsubscribed { id: "u1".into(), topic: t() },
            ServerFrame::Message { topic: t(), message: message.clone() },
            ServerFrame::History {
                id: "h1".into(),
                topic: t(),
                epoch: "e1".into(),
                messages: vec![message],
                more: true,
            },
            ServerFrame::Ack { id: "p1".into(), topic: t(), offset: 7, duplicate: true },
            ServerFrame::Reset { id: "s2".into(), topic: t(), epoch: "e2".into(), head: 0 },
            ServerFrame::Room {
                topic: "rooms".into(),
                room: RoomInfo { name: "ops".into(), epoch: "e3".into(), private: true },
            },
            ServerFrame::RoomLeft { topic: "rooms".into(), room: "ops".into() },
            ServerFrame::Presence { topic: t(), online: vec!["ann".into(), "bo".into()] },
            ServerFrame::Activity {
                topic: "activity".into(),
                room: "ops".into(),
                offset: 8,
                author: "bo".into(),
                text: "yo".into(),
            },
            ServerFrame::Locations { topic: "location:lobby".into(), positions: vec![located.clone()] },
            ServerFrame::Location { topic: "location:lobby".into(), position: located },
            ServerFrame::LocationGone { topic: "location:lobby".into(), user: "bo".into() },
            ServerFrame::Typing { topic: t(), user: "bo".into() },
            ServerFrame::Readings {
                topic: "sensor:3".into(),
                readings: vec![Reading { ts: 1, value: 0.5 }, Reading { ts: 2, value: -1e300 }],
            },
            ServerFrame::SensorDeleted { topic: "sensors".into(), sensor: 3 },
            ServerFrame::Pong { id: "p".into() },
            ServerFrame::Error { id: Some("p2".into()), code: ErrorCode::RateLimited, message: "slow down".into() },
            ServerFrame::Error { id: None, code: ErrorCode::Malformed, message: "not JSON".into() },
        ]
    }

    #[test]
    fn every_server_frame_reads_back_as_written() {
        let frames = every_server_frame();
        let mut types: Vec<String> =
            frames.iter().map(|f| serde_json::to_value(f).unwrap()["type"].as_str().unwrap().to_owned()).collect();
        types.dedup();
        assert_eq!(types, ServerFrame::TYPES, "one example of every type, in the order of TYPES");
        for frame in frames {
            let text = serde_json::to_string(&frame).unwrap();
            assert_eq!(ServerFrame::from_json(&text).unwrap(), frame, "{text}");
        }
    }

    #[test]
    fn server_frames_read_in_any_key_order_with_unknown_fields_ignored() {
        let text = r#"{"ts":5,"extra":[1,{"a":null}],"text":"hi","author":"ann","id":"x","offset":3,"topic":"chat:a","type":"message"}"#;
        let frame = ServerFrame::from_json(text).unwrap();
        let message = ChatMessage { offset: 3, id: "x".into(), author: "ann".into(), text: "hi".into(), ts: 5 };
        assert_eq!(frame, ServerFrame::Message { topic: "chat:a".into(), message });
        // A location without a trail has an empty one.
        let text = r#"{"type":"location","topic":"location:a","user":"bo","latitude":1.5,"longitude":2,"ts":3}"#;
        let ServerFrame::Location { position, .. } = ServerFrame::from_json(text).unwrap() else { panic!("{text}") };
        assert_eq!((position.longitude, position.trail.len()), (2.0, 0));
    }

    #[test]
    fn bad_server_frames_are_refused_with_the_reason() {
        let cases = [
            (r#"{"type":"ack","id":"p","topic":"chat:a","offset":1}"#, "missing field `duplicate`"),
            (r#"{"type":"subscribed","id":"s","topic":"chat:a","epoch":"e","head":"7"}"#, "invalid type"),
            (r#"{"type":"room","topic":"rooms","room":"ops"}"#, "invalid type"),
            (r#"{"type":"room_left","topic":"rooms","room":{"name":"ops"}}"#, "invalid type"),
            (r#"{"type":"warp","topic":"chat:a"}"#, "unknown variant `warp`"),
            (r#"{"topic":"chat:a"}"#, "missing field `type`"),
            (r#"{"type":"pong","id":"a","id":"b"}"#, "duplicate field `id`"),
            (r#"{"type":"error","code":"no_such_code","message":"m"}"#, "unknown variant `no_such_code`"),
            (r#"{"type":"pong","id":"a"} x"#, "trailing characters"),
            (r#"["pong"]"#, "expected a frame: a JSON object"),
            (r#"  "pong""#, "expected a frame: a JSON object"),
        ];
        for (text, why) in cases {
            let error = ServerFrame::from_json(text).expect_err(text).to_string();
            assert!(error.contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn error_codes_serialize_as_their_stable_names() {
        // Clients match on these strings: changing one is a breaking change to the protocol.
        let names = [
            (ErrorCode::Malformed, "malformed"),
            (ErrorCode::UnknownType, "unknown_type"),
            (ErrorCode::InvalidField, "invalid_field"),
            (ErrorCode::TooLarge, "too_large"),
            (ErrorCode::BinaryFrame, "binary_frame"),
            (ErrorCode::EmptyMessage, "empty_message"),
            (ErrorCode::MessageTooLong, "message_too_long"),
            (ErrorCode::UnknownRoom, "unknown_room"),
            (ErrorCode::UnknownTopic, "unknown_topic"),
            (ErrorCode::RateLimited, "rate_limited"),
            (ErrorCode::NotSubscribed, "not_subscribed"),
            (ErrorCode::OutOfRange, "out_of_range"),
            (ErrorCode::UnknownSensor, "unknown_sensor"),
            (ErrorCode::Unauthorized, "unauthorized"),
            (ErrorCode::Forbidden, "forbidden"),
            (ErrorCode::Internal, "internal"),
        ];
        for (code, name) in names {
            assert_eq!(serde_json::to_value(code).unwrap(), name);
        }
    }

    #[test]
    fn topics_parse_only_valid_room_names() {
        assert_eq!(Topic::parse("chat:lobby"), Some(Topic::Chat("lobby".into())));
        assert_eq!(Topic::parse("rooms"), Some(Topic::Rooms));
        assert_eq!(Topic::parse("chat:"), None);
        assert_eq!(Topic::parse("chat:Lobby"), None);
        assert_eq!(Topic::parse("chat:a b"), None);
        assert_eq!(Topic::parse("map:lobby"), None);
        assert_eq!(Topic::parse("location:lobby"), Some(Topic::Location("lobby".into())));
        assert_eq!(Topic::parse(&format!("chat:{}", "a".repeat(33))), None);
        assert_eq!(Topic::parse("sensor:12"), Some(Topic::Sensor(12)));
        assert_eq!(Topic::parse(&sensor_topic(7)), Some(Topic::Sensor(7)));
        for bad in ["sensor:", "sensor:0", "sensor:012", "sensor:-1", "sensor:+1", "sensor:x", "sensor:1.5"] {
            assert_eq!(Topic::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn reading_frames_have_an_optional_timestamp() {
        let frame: ClientFrame = serde_json::from_str(
            r#"{"type":"reading","id":"1","sensor":3,"readings":[{"value":1.5},{"value":-2,"ts":1764000000000}]}"#,
        )
        .unwrap();
        assert_eq!(
            frame,
            ClientFrame::Reading {
                id: "1".into(),
                sensor: 3,
                readings: vec![
                    NewReading { value: 1.5, ts: None },
                    NewReading { value: -2.0, ts: Some(1_764_000_000_000) }
                ],
            }
        );
        let out = ServerFrame::Readings { topic: sensor_topic(3), readings: vec![Reading { ts: 5, value: 0.25 }] };
        assert_eq!(
            serde_json::to_value(&out).unwrap(),
            serde_json::json!({"type": "readings", "topic": "sensor:3", "readings": [{"ts": 5, "value": 0.25}]})
        );
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(clean_display_name("  ada "), Some("ada".into()));
        assert_eq!(clean_display_name("   "), None);
        assert_eq!(clean_display_name("a\u{7}b"), None);
        assert_eq!(clean_display_name(&"é".repeat(32)), Some("é".repeat(32)));
        assert_eq!(clean_display_name(&"é".repeat(33)), None);
    }
}
