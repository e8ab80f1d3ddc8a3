//! Every decoder of frames, fuzzed: the web protocol's envelope and each feature's reading of
//! its requests, the tutorial's three dialects, and the browser's readers of server frames.
//! Inputs are arbitrary text, and JSON frames built from the protocol's own field names and
//! types with random values, whole or cut short. No decoder may panic; every frame the server
//! refuses is refused with a stable error code. Last, random frames over a real socket: each
//! one answered in order, and the connection survives them all.
//!
//! `make test` runs each target for a bounded number of cases (`FUZZ_CASES`, 10,000 by
//! default); `FUZZ_CASES=1000000 cargo test --release --features ssr --test fuzz` runs longer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use proptest::prelude::*;
use std::cell::RefCell;

use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as RunConfig, TestRunner};
use serde_json::{json, Map, Value};
use support::TestServer;
use switchboard::chat::protocol::{ChatFrame, ChatRequest};
use switchboard::map::protocol::{MapFrame, MapRequest};
use switchboard::realtime::protocol::{
    decode, Envelope, ErrorCode, FeatureFrame, Incoming, Rejection, ServerFrame, MAX_ID_BYTES,
};
use switchboard::sensors::channel::read_request;
use switchboard::sensors::protocol::SensorRequest;
use switchboard::tutorial::codec;

/// Whether a feature answers this request type on `/ws` (the features' own lists).
fn is_request(kind: &str) -> bool {
    ChatRequest::TYPES.contains(&kind) || MapRequest::TYPES.contains(&kind) || SensorRequest::TYPES.contains(&kind)
}
/// The types a client sends, and a few it does not.
const TYPES: [&str; 13] = [
    "subscribe",
    "unsubscribe",
    "ping",
    "publish",
    "history",
    "typing",
    "read",
    "locate",
    "stop_sharing",
    "reading",
    "message",
    "",
    "PING",
];
/// Every field name of every frame, both ways, and of the tutorial's.
const FIELDS: [&str; 27] = [
    "type",
    "id",
    "topic",
    "text",
    "resume",
    "epoch",
    "offset",
    "present",
    "before",
    "limit",
    "latitude",
    "longitude",
    "trail",
    "sensor",
    "readings",
    "value",
    "ts",
    "message",
    "sensor_id",
    "sensor_value",
    "head",
    "code",
    "online",
    "positions",
    "room",
    "user",
    "duplicate",
];

fn cases() -> u32 {
    std::env::var("FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000)
}

fn runner() -> TestRunner {
    TestRunner::new(RunConfig { cases: cases(), failure_persistence: None, ..RunConfig::default() })
}

/// A JSON value of any shape, with the numbers and strings decoders trip on.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop_oneof![Just(0.0), Just(-0.0), Just(90.0), Just(-180.000001), Just(1e308), Just(f64::MIN_POSITIVE)]
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::from),
        prop_oneof![Just("chat:lobby"), Just("location:lobby"), Just("sensor:1"), Just("sensors"), Just("rooms")]
            .prop_map(Value::from),
        "[a-z]{65,70}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((field(), inner), 0..5)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// A number as often in range as not, or anything else.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![(-200.0..200.0f64).prop_map(|f| json!(f)), (-200..200i64).prop_map(Value::from), value()]
}

fn field() -> impl Strategy<Value = String> {
    prop_oneof![4 => prop::sample::select(&FIELDS[..]).prop_map(str::to_owned), 1 => "[a-z_]{0,8}"]
}

/// A frame as a client might send it: an object with a `type` (usually one the server knows)
/// and fields of the protocol with values of any type.
fn frame() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![9 => prop::sample::select(&TYPES[..]).prop_map(Value::from), 1 => value()];
    (kind, prop::collection::vec((field(), value()), 0..7), any::<bool>()).prop_map(|(kind, fields, typed)| {
        let mut object: Map<String, Value> = fields.into_iter().collect();
        if typed {
            object.insert("type".into(), kind);
        }
        Value::Object(object)
    })
}

/// A frame's text: a frame, cut short or with a byte changed now and then, or any text.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => frame().prop_map(|f| f.to_string()),
        2 => (frame(), any::<prop::sample::Index>()).prop_map(|(f, at)| {
            let text = f.to_string();
            let cut = at.index(text.len() + 1);
            text.char_indices().map(|(i, _)| i).take_while(|&i| i <= cut).last().map_or(String::new(), |i| text[..i].to_owned())
        }),
        1 => (frame(), any::<prop::sample::Index>(), any::<char>()).prop_map(|(f, at, c)| {
            let mut chars: Vec<char> = f.to_string().chars().collect();
            let i = at.index(chars.len().max(1)).min(chars.len().saturating_sub(1));
            if let Some(slot) = chars.get_mut(i) {
                *slot = c;
            }
            chars.into_iter().collect()
        }),
        1 => ".{0,40}",
    ]
}

/// The server's whole reading of a frame on `/ws`: the envelope, then the feature's reading
/// of its request (as `chat::channel`, `map::channel` and `sensors::channel` do).
fn read_web(text: &str) -> Result<(), Rejection> {
    match decode(text, is_request)? {
        Incoming::Core(_) => Ok(()),
        Incoming::Request(request) => {
            let kind = request.kind.as_str();
            if ChatRequest::TYPES.contains(&kind) {
                request.read::<ChatRequest>().map(drop)
            } else if MapRequest::TYPES.contains(&kind) {
                request.read::<MapRequest>().map(drop)
            } else if SensorRequest::TYPES.contains(&kind) {
                read_request(request).map(drop)
            } else {
                panic!("the envelope let {kind:?} through")
            }
        }
    }
}

/// What the envelope and the features' readers may answer a bad frame with.
const READING_CODES: [ErrorCode; 4] =
    [ErrorCode::Malformed, ErrorCode::InvalidField, ErrorCode::UnknownType, ErrorCode::OutOfRange];

#[test]
fn the_web_protocol_reads_any_frame_or_refuses_it_with_a_code() {
    let refused = RefCell::new([0usize; 4]);
    runner()
        .run(&text(), |text| {
            if let Err(rejection) = read_web(&text) {
                let at = READING_CODES.iter().position(|c| *c == rejection.code);
                prop_assert!(at.is_some(), "{text}: {rejection:?}");
                refused.borrow_mut()[at.unwrap_or_default()] += 1;
                prop_assert!(rejection.id.as_ref().is_none_or(|id| !id.is_empty() && id.len() <= MAX_ID_BYTES));
                prop_assert!(!rejection.message.is_empty());
            }
            Ok(())
        })
        .unwrap();
    // The inputs reach every kind of refusal, not only "not JSON" (`out_of_range` needs a
    // number JSON cannot hold, so it is allowed but not expected).
    let refused = refused.into_inner();
    assert!(refused[..3].iter().all(|&n| n > 0), "refusals by code {READING_CODES:?}: {refused:?}");
}

#[test]
fn valid_requests_of_every_feature_are_read() {
    let frames = [
        json!({"type": "ping", "id": "1"}),
        json!({"type": "subscribe", "id": "1", "topic": "chat:lobby", "resume": {"epoch": "e", "offset": 3}}),
        json!({"type": "publish", "id": "1", "topic": "chat:lobby", "text": "hi"}),
        json!({"type": "history", "id": "1", "topic": "chat:lobby", "before": 9}),
        json!({"type": "locate", "id": "1", "topic": "location:lobby", "latitude": 1, "longitude": 2}),
        json!({"type": "reading", "id": "1", "sensor": 3, "readings": [{"value": 1.5}]}),
    ];
    for frame in frames {
        assert_eq!(read_web(&frame.to_string()), Ok(()), "{frame}");
    }
}

#[test]
fn decode_tells_every_bad_frame_apart() {
    let code = |text: &str| read_web(text).unwrap_err().code;
    assert_eq!(code("{not json"), ErrorCode::Malformed);
    assert_eq!(code("[1,2]"), ErrorCode::InvalidField);
    assert_eq!(code(r#"{"id":"1"}"#), ErrorCode::InvalidField);
    assert_eq!(code(r#"{"type":"dance","id":"1"}"#), ErrorCode::UnknownType);
    assert_eq!(code(r#"{"type":"publish","id":"1","topic":"chat:lobby"}"#), ErrorCode::InvalidField);
    assert_eq!(code(r#"{"type":"publish","id":"1","topic":"chat:lobby","text":5}"#), ErrorCode::InvalidField);
    assert_eq!(code(r#"{"type":"ping","id":""}"#), ErrorCode::InvalidField);
    let long = "x".repeat(65);
    assert_eq!(code(&format!(r#"{{"type":"ping","id":"{long}"}}"#)), ErrorCode::InvalidField);
    // Found by the fuzzer: an empty id was echoed back in the error of a frame without a type.
    assert_eq!(read_web(r#"{"id":""}"#).unwrap_err().id, None, "no id a client may not choose");
    let rejected = read_web(r#"{"type":"publish","id":"r7","topic":"chat:lobby"}"#).unwrap_err();
    assert_eq!(rejected.id.as_deref(), Some("r7"), "errors carry the request id");
    assert!(read_web(r#"{"type":"ping","id":"1","extra":true}"#).is_ok(), "unknown fields are ignored");
    let bad_reading = r#"{"type":"reading","id":"r8","sensor":1,"readings":[{"value":1},{"value":"x"}]}"#;
    let rejected = read_web(bad_reading).unwrap_err();
    assert_eq!((rejected.code, rejected.id.as_deref()), (ErrorCode::InvalidField, Some("r8")));
    assert!(rejected.message.contains("reading 1"), "the error names the bad reading: {}", rejected.message);
}

/// What the tutorial's decoders may answer a bad frame with.
const TUTORIAL_CODES: [ErrorCode; 3] = [ErrorCode::Malformed, ErrorCode::InvalidField, ErrorCode::OutOfRange];

#[test]
fn the_tutorials_dialects_read_any_frame_or_refuse_it_with_a_code() {
    let tutorial_frame = prop_oneof![
        text(),
        (value(), value()).prop_map(|(a, b)| json!({"message": a, "x": b}).to_string()),
        (number(), number()).prop_map(|(a, b)| json!({"latitude": a, "longitude": b}).to_string()),
        (prop_oneof![(1..5i64).prop_map(Value::from), value()], number())
            .prop_map(|(a, b)| json!({"sensor_id": a, "sensor_value": b}).to_string()),
    ];
    let accepted = RefCell::new([0usize; 3]);
    runner()
        .run(&tutorial_frame, |text| {
            let results = [
                codec::decode_chat(&text).map(drop),
                codec::decode_location(&text).map(drop),
                codec::decode_sensor(&text).map(drop),
            ];
            for (i, result) in results.into_iter().enumerate() {
                match result {
                    Ok(()) => accepted.borrow_mut()[i] += 1,
                    Err((code, message)) => {
                        prop_assert!(TUTORIAL_CODES.contains(&code), "{text}: {code:?}");
                        prop_assert!(!message.is_empty());
                    }
                }
            }
            if let Ok((latitude, longitude)) = codec::decode_location(&text) {
                prop_assert!((-90.0..=90.0).contains(&latitude) && (-180.0..=180.0).contains(&longitude));
            }
            if let Ok(reading) = codec::decode_sensor(&text) {
                prop_assert!(reading.value.is_finite());
            }
            Ok(())
        })
        .unwrap();
    let accepted = accepted.into_inner();
    assert!(accepted.iter().all(|&n| n > 0), "each dialect accepted some frames: {accepted:?}");
}

#[test]
fn the_browsers_readers_take_any_frame_without_panicking() {
    let server_frame = prop_oneof![
        text(),
        (
            prop::sample::select(
                &["welcome", "ack", "message", "history", "room", "location", "readings", "error"][..]
            ),
            frame()
        )
            .prop_map(|(kind, mut f)| {
                f["type"] = json!(kind);
                f.to_string()
            }),
    ];
    runner()
        .run(&server_frame, |text| {
            let envelope = Envelope::read(&text);
            let core = ServerFrame::from_json(&text);
            // What the envelope calls its own, the core reads; nothing else is.
            if core.is_ok() {
                prop_assert!(envelope.as_ref().is_ok_and(Envelope::is_core), "{text}");
            }
            let _ = ChatFrame::from_json(&text);
            let _ = MapFrame::from_json(&text);
            let _ = switchboard::sensors::protocol::SensorFrame::from_json(&text);
            Ok(())
        })
        .unwrap();
}

/// Random frames over a real connection: each is answered before the ping that follows it
/// (nothing is skipped, nothing hangs), every answer is a frame of the protocol, and the
/// connection stays open throughout.
#[tokio::test]
async fn a_live_connection_answers_random_frames_and_survives_them() {
    let server = TestServer::start().await;
    let mut client = server.web("fuzz").await;
    let mut runner = runner();
    let frames = (0..cases().min(400)).map(|_| text().new_tree(&mut runner).unwrap().current()).collect::<Vec<_>>();
    let mut errors = 0;
    for (i, text) in frames.iter().enumerate() {
        client.send_raw(tokio_tungstenite::tungstenite::Message::text(text.clone())).await;
        let marker = format!("probe-{i}");
        client.send(json!({"type": "ping", "id": marker})).await;
        loop {
            let answer = client.next().await;
            let kind = answer["type"].as_str().unwrap_or_default().to_owned();
            if kind == "pong" && answer["id"] == marker.as_str() {
                break;
            }
            if kind == "error" {
                errors += 1;
                let code: ErrorCode = serde_json::from_value(answer["code"].clone()).expect("a known code");
                assert_ne!(code, ErrorCode::Internal, "{text} -> {answer}");
            }
            assert!(!kind.is_empty(), "{text} -> {answer}");
        }
    }
    assert!(errors > frames.len() / 4, "most random frames are refused: {errors} of {}", frames.len());
}
