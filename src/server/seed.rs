//! The tutorial's endpoints, kept so that its clients and devices work unchanged.
//!
//! `/ws/chat/` speaks exactly the tutorial's JSON: `{"message": "..."}` in, the same
//! out to every `/ws/chat/` client. Its messages are the lobby's: they are stored and
//! appear in the web app, and lobby messages reach these clients. The tutorial has
//! no error frames; ours are `{"error": {"code": ..., "message": ...}}`, which the
//! tutorial's `chat.js` ignores (it reads `data.message`).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::protocol::ErrorCode;

/// The hub topic that `/ws/chat/` clients subscribe to.
pub const CHAT_TOPIC: &str = "seed:chat";

#[derive(Serialize, Deserialize)]
struct ChatJson<'a> {
    #[serde(borrow)]
    message: std::borrow::Cow<'a, str>,
}

/// The tutorial's frame for a chat message.
pub fn encode_chat(text: &str) -> Bytes {
    let json = ChatJson { message: std::borrow::Cow::Borrowed(text) };
    Bytes::from(serde_json::to_vec(&json).unwrap_or_default())
}

/// Read a tutorial chat frame: the message text, or why it was refused.
pub fn decode_chat(text: &str) -> Result<String, (ErrorCode, String)> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| (ErrorCode::Malformed, format!("not JSON: {e}")))?;
    match value.get("message") {
        Some(serde_json::Value::String(message)) => Ok(message.clone()),
        Some(_) => Err((ErrorCode::InvalidField, "`message` must be a string".into())),
        None => Err((ErrorCode::InvalidField, "missing field `message`".into())),
    }
}

/// The error frame of the tutorial's endpoints.
pub fn encode_error(code: ErrorCode, message: &str) -> String {
    serde_json::json!({ "error": { "code": code, "message": message } }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_frames_are_the_tutorials() {
        assert_eq!(&encode_chat("hi \"there\"")[..], br#"{"message":"hi \"there\""}"#);
        assert_eq!(decode_chat(r#"{"message": "hello"}"#), Ok("hello".into()));
        assert_eq!(decode_chat("nope").unwrap_err().0, ErrorCode::Malformed);
        assert_eq!(decode_chat(r#"{"message": 5}"#).unwrap_err().0, ErrorCode::InvalidField);
        assert_eq!(decode_chat(r#"{"text": "x"}"#).unwrap_err().0, ErrorCode::InvalidField);
    }
}
