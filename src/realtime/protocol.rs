//! The envelope of the `/ws` protocol, shared by the server and the browser: the frames every
//! topic has (subscribing, acknowledgements, errors, heartbeats), the stable error codes and
//! close codes, and the reading of a frame up to the feature that answers it.
//!
//! Every frame is one JSON object in one WebSocket text frame, tagged by its `"type"`. A
//! feature's own frames (a chat message, a position) are defined in its folder
//! (`chat/protocol.rs`, ...) and travel in the same shape: the server tells them apart by their
//! `type`, the browser by their `topic`. `docs/protocol.md` is the prose contract.

use serde::{Deserialize, Serialize};

/// The longest request id a client may choose, in bytes.
pub const MAX_ID_BYTES: usize = 64;
/// The longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 32;

/// Where a client left a durable topic: the server sends what came after.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    pub epoch: String,
    pub offset: u64,
}

/// The frames of the envelope a client sends. Feature requests (`publish`, `locate`, ...) are
/// read by their feature (see [`Request`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Start receiving a topic's events; with `resume`, first every event after it.
    Subscribe {
        id: String,
        topic: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<Resume>,
        /// Count me as present in this topic (it is open on my screen).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        present: bool,
    },
    Unsubscribe {
        id: String,
        topic: String,
    },
    Ping {
        id: String,
    },
}

impl ClientFrame {
    /// The envelope's frame types, as spelled on the wire.
    pub const TYPES: [&'static str; 3] = ["subscribe", "unsubscribe", "ping"];
}

/// The frames of the envelope the server sends. Read them with [`ServerFrame::from_json`];
/// a feature's frames are read by the feature, whose topic they carry.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame on every connection.
    Welcome {
        name: String,
        heartbeat_ms: u64,
        max_frame_bytes: usize,
    },
    /// The subscription is live. `head` is a durable topic's last offset when it started.
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
    /// Who has the topic open now, sorted; sent on subscribing with `present` and on every
    /// change (the presence service, see `realtime::server::presence`).
    Presence {
        topic: String,
        online: Vec<String>,
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
    /// The envelope's frame types, as spelled on the wire.
    pub const TYPES: [&'static str; 8] =
        ["welcome", "subscribed", "unsubscribed", "ack", "reset", "presence", "pong", "error"];

    /// Read one frame of the envelope.
    ///
    /// The frame's fields are read in one pass into one struct of them all, and the `type`
    /// picks the variant. serde's derive for an internally tagged enum would buffer every
    /// frame into a generic tree first and needs a deserializer per variant; this is the
    /// browser's hot path, and that code was the largest function of its bundle (60 KB).
    pub fn from_json(text: &str) -> Result<ServerFrame, serde_json::Error> {
        must_be_object(text)?;
        serde_json::from_str::<wire::Fields>(text)?.into_frame()
    }
}

/// Refuse anything but an object: a derived struct would also take an array of its fields
/// in order, and frames are objects.
pub fn must_be_object(text: &str) -> Result<(), serde_json::Error> {
    if text.trim_start().starts_with('{') {
        return Ok(());
    }
    use serde::de::Error as _;
    let found = serde::de::Unexpected::Other("something else");
    Err(serde_json::Error::invalid_type(found, &"a frame: a JSON object"))
}

/// The value of a field a frame's type requires, or "missing field" with its name. For the
/// one-pass readers of frames (here and in each feature's `protocol.rs`).
#[macro_export]
macro_rules! need {
    ($field:ident) => {
        $field.ok_or_else(|| <serde_json::Error as serde::de::Error>::missing_field(stringify!($field)))?
    };
}

/// What the browser needs of any frame to route it: its type, its topic, and the offset of a
/// durable topic's event.
#[derive(Deserialize, Debug)]
pub struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub offset: Option<u64>,
}

impl Envelope<'_> {
    /// Whether the frame is one of the envelope's own (see [`ServerFrame::TYPES`]).
    pub fn is_core(&self) -> bool {
        ServerFrame::TYPES.contains(&self.kind.as_ref())
    }
}

impl<'a> Envelope<'a> {
    pub fn read(text: &'a str) -> Result<Envelope<'a>, serde_json::Error> {
        must_be_object(text)?;
        serde_json::from_str(text)
    }
}

/// The decoding behind [`ServerFrame::from_json`].
mod wire {
    use super::{ErrorCode, ServerFrame};
    use serde::de::Error as _;
    use serde::Deserialize;
    use std::borrow::Cow;

    /// Every field any envelope frame has.
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
        duplicate: Option<bool>,
        online: Option<Vec<String>>,
        code: Option<ErrorCode>,
        message: Option<String>,
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
                duplicate,
                online,
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
                "ack" => ServerFrame::Ack {
                    id: need!(id),
                    topic: need!(topic),
                    offset: need!(offset),
                    duplicate: need!(duplicate),
                },
                "reset" => {
                    ServerFrame::Reset { id: need!(id), topic: need!(topic), epoch: need!(epoch), head: need!(head) }
                }
                "presence" => ServerFrame::Presence { topic: need!(topic), online: need!(online) },
                "pong" => ServerFrame::Pong { id: need!(id) },
                "error" => ServerFrame::Error { id, code: need!(code), message: need!(message) },
                other => return Err(serde_json::Error::unknown_variant(other, &ServerFrame::TYPES)),
            })
        }
    }
}

/// Stable error codes. Clients match on these, never on the message text. One catalogue for
/// every feature, as HTTP has one list of statuses.
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
    /// No poll has that id, or it is in a room I cannot see.
    UnknownPoll,
    /// A vote for an option the poll does not have.
    UnknownOption,
    /// A vote for more options than the poll takes.
    TooManyChoices,
    /// The poll is closed: it takes no more votes.
    PollClosed,
    /// No document has that id (or name), or it is in a room I cannot see.
    UnknownDocument,
    /// The name is taken by another of the room's documents.
    NameTaken,
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

/// A frame refused before any feature acted on it, or by a feature's reading of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub id: Option<String>,
    pub code: ErrorCode,
    pub message: String,
}

impl Rejection {
    pub fn new(id: Option<String>, code: ErrorCode, message: impl Into<String>) -> Rejection {
        Rejection { id, code, message: message.into() }
    }
}

/// A client's frame, read as far as the envelope goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// One of the envelope's own frames.
    Core(ClientFrame),
    /// A feature's request: its `type`, its `id`, and the whole frame, for the feature that
    /// answers that type to read.
    Request(Request),
}

/// A feature's request, as the envelope reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub kind: String,
    pub id: Option<String>,
    pub frame: serde_json::Value,
}

impl Request {
    /// Read the frame as the feature's type of requests; a wrong or missing field is
    /// `invalid_field`, with the request's id.
    pub fn read<T: serde::de::DeserializeOwned>(self) -> Result<T, Rejection> {
        let id = self.id;
        serde_json::from_value(self.frame).map_err(|e| Rejection::new(id, ErrorCode::InvalidField, e.to_string()))
    }

    pub fn reject(&self, code: ErrorCode, message: impl Into<String>) -> Rejection {
        Rejection::new(self.id.clone(), code, message)
    }
}

/// The request id of a frame, if it has a usable one (1 to 64 bytes): an error about a frame
/// carries it, and never one a client may not choose.
pub fn request_id(value: &serde_json::Value) -> Option<String> {
    value
        .get("id")
        .and_then(serde_json::Value::as_str)
        .filter(|id| !id.is_empty() && id.len() <= MAX_ID_BYTES)
        .map(str::to_owned)
}

/// Read one text frame of the web protocol as far as the envelope goes, telling apart every
/// way it can be wrong. `known` says whether a feature answers a request type.
pub fn decode(text: &str, known: impl Fn(&str) -> bool) -> Result<Incoming, Rejection> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Rejection::new(None, ErrorCode::Malformed, format!("the frame is not JSON: {e}")))?;
    let id = request_id(&value);
    let Some(object) = value.as_object() else {
        return Err(Rejection::new(None, ErrorCode::InvalidField, "a frame is a JSON object"));
    };
    let Some(kind) = object.get("type").and_then(serde_json::Value::as_str) else {
        return Err(Rejection::new(id, ErrorCode::InvalidField, "missing string field `type`"));
    };
    let core = ClientFrame::TYPES.contains(&kind);
    if !core && !known(kind) {
        return Err(Rejection::new(id, ErrorCode::UnknownType, format!("unknown frame type {kind:?}")));
    }
    match object.get("id") {
        Some(serde_json::Value::String(s)) if s.is_empty() || s.len() > MAX_ID_BYTES => {
            return Err(Rejection::new(None, ErrorCode::InvalidField, "`id` must be 1 to 64 bytes"));
        }
        _ => {}
    }
    if core {
        return serde_json::from_value(value)
            .map(Incoming::Core)
            .map_err(|e| Rejection::new(id, ErrorCode::InvalidField, e.to_string()));
    }
    let kind = kind.to_owned();
    Ok(Incoming::Request(Request { kind, id, frame: value }))
}

/// A display name is 1 to 32 characters after trimming, with no control characters.
pub fn clean_display_name(name: &str) -> Option<String> {
    let name = name.trim();
    let chars = name.chars().count();
    (chars > 0 && chars <= MAX_NAME_CHARS && !name.chars().any(char::is_control)).then(|| name.to_owned())
}

/// The frames a feature sends, read in the browser from a frame's text.
pub trait FeatureFrame: Sized + 'static {
    fn from_json(text: &str) -> Result<Self, serde_json::Error>;
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

    /// One frame of every type, with every optional part present.
    fn every_server_frame() -> Vec<ServerFrame> {
        let t = || "chat:lobby".to_string();
        vec![
            ServerFrame::Welcome { name: "ann".into(), heartbeat_ms: 25_000, max_frame_bytes: 65_536 },
            ServerFrame::Subscribed { id: "s1".into(), topic: t(), epoch: "e1".into(), head: 42 },
            ServerFrame::Unsubscribed { id: "u1".into(), topic: t() },
            ServerFrame::Ack { id: "p1".into(), topic: t(), offset: 7, duplicate: true },
            ServerFrame::Reset { id: "s2".into(), topic: t(), epoch: "e2".into(), head: 0 },
            ServerFrame::Presence { topic: t(), online: vec!["ann".into(), "bo".into()] },
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
            let envelope = Envelope::read(&text).unwrap();
            assert!(envelope.is_core(), "{text}");
        }
    }

    #[test]
    fn server_frames_read_in_any_key_order_with_unknown_fields_ignored() {
        let text = r#"{"duplicate":false,"extra":[1,{"a":null}],"offset":3,"topic":"chat:a","id":"x","type":"ack"}"#;
        let frame = ServerFrame::from_json(text).unwrap();
        assert_eq!(frame, ServerFrame::Ack { id: "x".into(), topic: "chat:a".into(), offset: 3, duplicate: false });
    }

    #[test]
    fn bad_server_frames_are_refused_with_the_reason() {
        let cases = [
            (r#"{"type":"ack","id":"p","topic":"chat:a","offset":1}"#, "missing field `duplicate`"),
            (r#"{"type":"subscribed","id":"s","topic":"chat:a","epoch":"e","head":"7"}"#, "invalid type"),
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
    fn the_envelope_routes_any_frame_by_topic_and_offset() {
        let text = r#"{"type":"message","topic":"chat:a","offset":9,"id":"x","author":"a","text":"hi","ts":1}"#;
        let envelope = Envelope::read(text).unwrap();
        assert_eq!(
            (envelope.kind.as_ref(), envelope.topic.as_deref(), envelope.offset),
            ("message", Some("chat:a"), Some(9))
        );
        assert!(!envelope.is_core());
        assert!(Envelope::read(r#"["message"]"#).is_err());
        assert!(Envelope::read(r#"{"topic":"chat:a"}"#).is_err());
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
            (ErrorCode::UnknownPoll, "unknown_poll"),
            (ErrorCode::UnknownOption, "unknown_option"),
            (ErrorCode::TooManyChoices, "too_many_choices"),
            (ErrorCode::PollClosed, "poll_closed"),
            (ErrorCode::UnknownDocument, "unknown_document"),
            (ErrorCode::NameTaken, "name_taken"),
            (ErrorCode::Internal, "internal"),
        ];
        for (code, name) in names {
            assert_eq!(serde_json::to_value(code).unwrap(), name);
        }
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
