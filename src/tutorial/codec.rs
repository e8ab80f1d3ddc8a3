//! The tutorial's JSON, read and written: `{"message": ...}` on `/ws/chat/`,
//! `{"latitude": .., "longitude": ..}` on `/ws/location/`, `{"sensor_id": .., "sensor_value":
//! ..}` on `/ws/sensor_data/`. The tutorial has no error frames; ours are `{"error": {"code":
//! ..., "message": ...}}`, which its clients ignore (they read the fields they know).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::map::server::validate;
use crate::realtime::protocol::ErrorCode;

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

/// The tutorial's location frame.
pub fn encode_location(latitude: f64, longitude: f64) -> Bytes {
    Bytes::from(serde_json::json!({ "latitude": latitude, "longitude": longitude }).to_string())
}

/// Read a tutorial location frame.
pub fn decode_location(text: &str) -> Result<(f64, f64), (ErrorCode, String)> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| (ErrorCode::Malformed, format!("not JSON: {e}")))?;
    let field = |name: &str| match value.get(name) {
        Some(serde_json::Value::Number(n)) => {
            n.as_f64().ok_or((ErrorCode::InvalidField, format!("`{name}` is not a number")))
        }
        Some(_) => Err((ErrorCode::InvalidField, format!("`{name}` must be a number"))),
        None => Err((ErrorCode::InvalidField, format!("missing field `{name}`"))),
    };
    validate(field("latitude")?, field("longitude")?)
}

/// The tutorial's sensor frame.
pub fn encode_sensor(sensor_id: &serde_json::Value, sensor_value: &serde_json::Value) -> Bytes {
    Bytes::from(serde_json::json!({ "sensor_id": sensor_id, "sensor_value": sensor_value }).to_string())
}

/// Which sensor a tutorial frame names.
#[derive(Debug, Clone, PartialEq)]
pub enum SeedTarget {
    Id(i64),
    Name(String),
}

/// A tutorial sensor frame, read.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedReading {
    pub target: SeedTarget,
    /// `sensor_id` as the sender wrote it, echoed to the other clients.
    pub sensor_id: serde_json::Value,
    pub sensor_value: serde_json::Number,
    pub value: f64,
}

/// Read a tutorial sensor frame `{"sensor_id": .., "sensor_value": ..}`. `sensor_id` is an
/// integer id, a string holding one, or otherwise a sensor's name.
pub fn decode_sensor(text: &str) -> Result<SeedReading, (ErrorCode, String)> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| (ErrorCode::Malformed, format!("not JSON: {e}")))?;
    let target = match value.get("sensor_id") {
        Some(serde_json::Value::Number(n)) => match n.as_i64() {
            Some(id) => SeedTarget::Id(id),
            None => return Err((ErrorCode::InvalidField, "a numeric `sensor_id` must be an integer".into())),
        },
        Some(serde_json::Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(id) => SeedTarget::Id(id),
            Err(_) if !s.trim().is_empty() => SeedTarget::Name(s.trim().to_owned()),
            Err(_) => return Err((ErrorCode::InvalidField, "`sensor_id` is empty".into())),
        },
        Some(_) => return Err((ErrorCode::InvalidField, "`sensor_id` must be a number or a string".into())),
        None => return Err((ErrorCode::InvalidField, "missing field `sensor_id`".into())),
    };
    let number = match value.get("sensor_value") {
        Some(serde_json::Value::Number(n)) => n.clone(),
        Some(serde_json::Value::Null) | None => {
            return Err((ErrorCode::InvalidField, "missing number `sensor_value`".into()));
        }
        Some(other) => return Err((ErrorCode::InvalidField, format!("`sensor_value` must be a number, not {other}"))),
    };
    let Some(reading) = number.as_f64().filter(|v| v.is_finite()) else {
        return Err((ErrorCode::OutOfRange, "`sensor_value` must be a finite number".into()));
    };
    let sensor_id = value.get("sensor_id").cloned().unwrap_or_default();
    Ok(SeedReading { target, sensor_id, sensor_value: number, value: reading })
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

    #[test]
    fn tutorial_frames_are_checked_like_ours() {
        assert_eq!(decode_location(r#"{"latitude": 48.85, "longitude": 2.35}"#), Ok((48.85, 2.35)));
        assert_eq!(decode_location(r#"{"latitude": "48", "longitude": 2}"#).unwrap_err().0, ErrorCode::InvalidField);
        assert_eq!(decode_location(r#"{"latitude": 48}"#).unwrap_err().0, ErrorCode::InvalidField);
        assert_eq!(decode_location(r#"{"latitude": 91, "longitude": 2}"#).unwrap_err().0, ErrorCode::OutOfRange);
        assert_eq!(decode_location("NaN").unwrap_err().0, ErrorCode::Malformed);
        assert_eq!(&encode_location(1.5, -2.0)[..], br#"{"latitude":1.5,"longitude":-2.0}"#);
    }

    #[test]
    fn tutorial_frames_name_a_sensor_by_id_or_name() {
        let read = |text: &str| decode_sensor(text);
        let by_id = read(r#"{"sensor_id": 7, "sensor_value": 21}"#).unwrap();
        assert_eq!((by_id.target, by_id.value), (SeedTarget::Id(7), 21.0));
        assert_eq!(read(r#"{"sensor_id": "7", "sensor_value": 1}"#).unwrap().target, SeedTarget::Id(7));
        let by_name = read(r#"{"sensor_id": "hall", "sensor_value": 1.5}"#).unwrap();
        assert_eq!(by_name.target, SeedTarget::Name("hall".into()));
        assert_eq!(by_name.sensor_id, serde_json::json!("hall"));
        assert_eq!(read("nope").unwrap_err().0, ErrorCode::Malformed);
        assert_eq!(read(r#"{"sensor_id": 1, "sensor_value": "1"}"#).unwrap_err().0, ErrorCode::InvalidField);
        assert_eq!(read(r#"{"sensor_id": 1, "sensor_value": null}"#).unwrap_err().0, ErrorCode::InvalidField);
        assert_eq!(read(r#"{"sensor_id": 1}"#).unwrap_err().0, ErrorCode::InvalidField);
        assert_eq!(read(r#"{"sensor_id": 1.5, "sensor_value": 1}"#).unwrap_err().0, ErrorCode::InvalidField);
        assert_eq!(read(r#"{"sensor_id": true, "sensor_value": 1}"#).unwrap_err().0, ErrorCode::InvalidField);
        assert_eq!(read(r#"{"sensor_value": 1}"#).unwrap_err().0, ErrorCode::InvalidField);
        assert_eq!(
            &encode_sensor(&serde_json::json!("hall"), &serde_json::json!(1.5))[..],
            br#"{"sensor_id":"hall","sensor_value":1.5}"#
        );
    }
}
