//! Chat's frames and topics, shared by the server and the browser (`docs/protocol.md`, "Chat").
//!
//! Topics: `chat:<room>` (a room's messages: durable, with offsets and resume), `rooms` (rooms
//! becoming visible) and `activity` (a notice of every message in every room I can see).

use serde::{Deserialize, Serialize};

/// The room every installation has, and the one the tutorial's `/ws/chat/` talks to.
pub const LOBBY: &str = "lobby";
/// How many messages a room shows when it is opened, and a page of older ones.
pub const HISTORY_PAGE: u32 = 50;
/// The most messages one `history` request may ask for.
pub const HISTORY_MAX: u32 = 200;
/// The longest chat message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4000;
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
    /// A poll's message: the poll's id (its topic is `poll:<id>`; `text` is its question).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<i64>,
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

/// Chat's requests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatRequest {
    /// Post a chat message. `id` is the idempotency key: choose it at random, keep it for retries.
    Publish { id: String, topic: String, text: String },
    /// Older messages: those before `before` (or the latest when absent), oldest first.
    History {
        id: String,
        topic: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// I am typing in this room (send at most every couple of seconds).
    Typing { id: String, topic: String },
    /// I have read the room up to `offset` (for unread counts).
    Read { id: String, topic: String, offset: u64 },
}

impl ChatRequest {
    /// Its frame types, as spelled on the wire.
    pub const TYPES: [&'static str; 4] = ["publish", "history", "typing", "read"];
}

/// Chat's frames from the server.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatFrame {
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
    /// A room became visible to me (created, or I was invited).
    Room { topic: String, room: RoomInfo },
    /// I lost access to a room (removed from its members).
    RoomLeft { topic: String, room: String },
    /// A message was posted in a room I can see (on `activity`): for unread counts and
    /// notifications without following every room.
    Activity { topic: String, room: String, offset: u64, author: String, text: String },
    /// Someone is typing in the room.
    Typing { topic: String, user: String },
}

impl ChatFrame {
    /// Its frame types, as spelled on the wire.
    pub const TYPES: [&'static str; 6] = ["message", "history", "room", "room_left", "activity", "typing"];
}

impl crate::realtime::protocol::FeatureFrame for ChatFrame {
    /// Read one frame in one pass (see `ServerFrame::from_json` for why not serde's derive).
    fn from_json(text: &str) -> Result<ChatFrame, serde_json::Error> {
        crate::realtime::protocol::must_be_object(text)?;
        serde_json::from_str::<wire::Fields>(text)?.into_frame()
    }
}

mod wire {
    use super::{ChatFrame, ChatMessage};
    use crate::need;
    use serde::de::Error as _;
    use serde::Deserialize;
    use serde_json::value::RawValue;
    use std::borrow::Cow;

    /// Every field any chat frame has. `room` is an object in `room` frames and a name
    /// elsewhere, so it is kept raw until the type is known.
    #[derive(Deserialize)]
    pub(super) struct Fields<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        id: Option<String>,
        topic: Option<String>,
        epoch: Option<String>,
        offset: Option<u64>,
        author: Option<String>,
        text: Option<String>,
        ts: Option<i64>,
        messages: Option<Vec<ChatMessage>>,
        more: Option<bool>,
        #[serde(borrow)]
        room: Option<&'a RawValue>,
        user: Option<String>,
        poll: Option<i64>,
    }

    impl Fields<'_> {
        pub(super) fn into_frame(self) -> Result<ChatFrame, serde_json::Error> {
            let Fields { kind, id, topic, epoch, offset, author, text, ts, messages, more, room, user, poll } = self;
            Ok(match kind.as_ref() {
                "message" => ChatFrame::Message {
                    topic: need!(topic),
                    message: ChatMessage {
                        offset: need!(offset),
                        id: need!(id),
                        author: need!(author),
                        text: need!(text),
                        ts: need!(ts),
                        poll,
                    },
                },
                "history" => ChatFrame::History {
                    id: need!(id),
                    topic: need!(topic),
                    epoch: need!(epoch),
                    messages: need!(messages),
                    more: need!(more),
                },
                "room" => ChatFrame::Room { topic: need!(topic), room: serde_json::from_str(need!(room).get())? },
                "room_left" => {
                    ChatFrame::RoomLeft { topic: need!(topic), room: serde_json::from_str(need!(room).get())? }
                }
                "activity" => ChatFrame::Activity {
                    topic: need!(topic),
                    room: serde_json::from_str(need!(room).get())?,
                    offset: need!(offset),
                    author: need!(author),
                    text: need!(text),
                },
                "typing" => ChatFrame::Typing { topic: need!(topic), user: need!(user) },
                other => return Err(serde_json::Error::unknown_variant(other, &ChatFrame::TYPES)),
            })
        }
    }
}

/// A chat topic, parsed from its wire name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ChatTopic {
    /// `chat:<room>`: a room's messages. Durable: offsets, resume.
    Room(String),
    /// `rooms`: rooms being created.
    Rooms,
    /// `activity`: a short notice of every message in every room I can see.
    Activity,
}

impl ChatTopic {
    pub fn parse(name: &str) -> Option<ChatTopic> {
        match name {
            "rooms" => Some(ChatTopic::Rooms),
            "activity" => Some(ChatTopic::Activity),
            _ => name
                .strip_prefix(CHAT_TOPIC_PREFIX)
                .filter(|room| valid_room_name(room))
                .map(|room| ChatTopic::Room(room.into())),
        }
    }
}

/// What every room's topic starts with.
pub const CHAT_TOPIC_PREFIX: &str = "chat:";

pub fn chat_topic(room: &str) -> String {
    format!("{CHAT_TOPIC_PREFIX}{room}")
}

/// Room names are short slugs so that they read well in URLs: `a-z`, `0-9`, `-`, `_`.
pub fn valid_room_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ROOM_BYTES
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Check a chat message's text: not blank, not too long.
pub fn check_text(text: &str) -> Result<(), (crate::realtime::protocol::ErrorCode, String)> {
    use crate::realtime::protocol::ErrorCode;
    if text.trim().is_empty() {
        return Err((ErrorCode::EmptyMessage, "the message is empty".into()));
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err((ErrorCode::MessageTooLong, format!("a message has at most {MAX_MESSAGE_CHARS} characters")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::protocol::{ErrorCode, FeatureFrame};

    #[test]
    fn message_frames_are_flat() {
        let frame = ChatFrame::Message {
            topic: "chat:lobby".into(),
            message: ChatMessage {
                offset: 3,
                id: "x".into(),
                author: "a".into(),
                text: "<b>".into(),
                ts: 5,
                poll: None,
            },
        };
        let value: serde_json::Value = serde_json::to_value(&frame).unwrap();
        assert_eq!(value["type"], "message");
        assert_eq!(value["offset"], 3);
        assert_eq!(value["text"], "<b>");
        assert_eq!(ChatFrame::from_json(&value.to_string()).unwrap(), frame);
    }

    fn every_frame() -> Vec<ChatFrame> {
        let message = ChatMessage {
            offset: 3,
            id: "m\"1".into(),
            author: "ann".into(),
            text: "<b>hi</b>".into(),
            ts: 5,
            poll: None,
        };
        let t = || "chat:lobby".to_string();
        vec![
            ChatFrame::Message { topic: t(), message: message.clone() },
            ChatFrame::History { id: "h1".into(), topic: t(), epoch: "e1".into(), messages: vec![message], more: true },
            ChatFrame::Room {
                topic: "rooms".into(),
                room: RoomInfo { name: "ops".into(), epoch: "e3".into(), private: true },
            },
            ChatFrame::RoomLeft { topic: "rooms".into(), room: "ops".into() },
            ChatFrame::Activity {
                topic: "activity".into(),
                room: "ops".into(),
                offset: 8,
                author: "bo".into(),
                text: "yo".into(),
            },
            ChatFrame::Typing { topic: t(), user: "bo".into() },
        ]
    }

    #[test]
    fn every_frame_reads_back_as_written() {
        let frames = every_frame();
        let types: Vec<String> =
            frames.iter().map(|f| serde_json::to_value(f).unwrap()["type"].as_str().unwrap().to_owned()).collect();
        assert_eq!(types, ChatFrame::TYPES, "one example of every type, in the order of TYPES");
        for frame in frames {
            let text = serde_json::to_string(&frame).unwrap();
            assert_eq!(ChatFrame::from_json(&text).unwrap(), frame, "{text}");
        }
    }

    #[test]
    fn frames_read_in_any_key_order_with_unknown_fields_ignored() {
        let text = r#"{"ts":5,"extra":[1,{"a":null}],"text":"hi","author":"ann","id":"x","offset":3,"topic":"chat:a","type":"message"}"#;
        let frame = ChatFrame::from_json(text).unwrap();
        let message =
            ChatMessage { offset: 3, id: "x".into(), author: "ann".into(), text: "hi".into(), ts: 5, poll: None };
        assert_eq!(frame, ChatFrame::Message { topic: "chat:a".into(), message });
    }

    #[test]
    fn bad_frames_are_refused_with_the_reason() {
        let cases = [
            (r#"{"type":"message","topic":"chat:a","offset":1,"id":"x","author":"a","ts":1}"#, "missing field `text`"),
            (r#"{"type":"room","topic":"rooms","room":"ops"}"#, "invalid type"),
            (r#"{"type":"room_left","topic":"rooms","room":{"name":"ops"}}"#, "invalid type"),
            (r#"{"type":"warp","topic":"chat:a"}"#, "unknown variant `warp`"),
            (r#"["message"]"#, "expected a frame: a JSON object"),
        ];
        for (text, why) in cases {
            let error = ChatFrame::from_json(text).expect_err(text).to_string();
            assert!(error.contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn topics_parse_only_valid_room_names() {
        assert_eq!(ChatTopic::parse("chat:lobby"), Some(ChatTopic::Room("lobby".into())));
        assert_eq!(ChatTopic::parse("rooms"), Some(ChatTopic::Rooms));
        assert_eq!(ChatTopic::parse("activity"), Some(ChatTopic::Activity));
        assert_eq!(ChatTopic::parse("chat:"), None);
        assert_eq!(ChatTopic::parse("chat:Lobby"), None);
        assert_eq!(ChatTopic::parse("chat:a b"), None);
        assert_eq!(ChatTopic::parse("map:lobby"), None);
        assert_eq!(ChatTopic::parse(&format!("chat:{}", "a".repeat(33))), None);
    }

    #[test]
    fn text_must_be_present_and_bounded() {
        assert_eq!(check_text(" \n ").unwrap_err().0, ErrorCode::EmptyMessage);
        assert!(check_text(&"a".repeat(MAX_MESSAGE_CHARS)).is_ok());
        assert_eq!(check_text(&"a".repeat(MAX_MESSAGE_CHARS + 1)).unwrap_err().0, ErrorCode::MessageTooLong);
    }
}
