//! The sensors' frames and topics, shared by the server and the browser (`docs/protocol.md`,
//! "Sensors"). Topics: `sensor:<id>` (a sensor's readings: the latest first, then live) and
//! `sensors` (changes to the list of sensors).

use serde::{Deserialize, Serialize};

/// The topic of the sensors' list: what every open dashboard hears (a sensor deleted).
pub const SENSORS_TOPIC: &str = "sensors";

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

/// The sensors' requests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SensorRequest {
    /// Post readings of a sensor (its owner or an admin only). Answered by `ack` (with
    /// `topic` `sensor:<id>` and `offset` 0) once they are durable, or by `error`. All or
    /// nothing: one bad reading refuses the whole frame.
    Reading { id: String, sensor: i64, readings: Vec<NewReading> },
}

impl SensorRequest {
    /// Its frame types, as spelled on the wire.
    pub const TYPES: [&'static str; 1] = ["reading"];
}

/// The sensors' frames from the server.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SensorFrame {
    /// Readings of a sensor (`sensor:<id>`): right after `subscribed`, the latest one (if
    /// any); then every new batch as it is stored, several readings per frame when they
    /// arrive together, in the order they were received.
    Readings { topic: String, readings: Vec<Reading> },
    /// A sensor was deleted, on `sensors` (every dashboard) and on `sensor:<id>` (whoever
    /// watches it); the subscription to `sensor:<id>` ends with it.
    SensorDeleted { topic: String, sensor: i64 },
}

impl SensorFrame {
    /// Its frame types, as spelled on the wire.
    pub const TYPES: [&'static str; 2] = ["readings", "sensor_deleted"];
}

impl crate::realtime::protocol::FeatureFrame for SensorFrame {
    /// Read one frame in one pass (see `ServerFrame::from_json` for why not serde's derive).
    fn from_json(text: &str) -> Result<SensorFrame, serde_json::Error> {
        crate::realtime::protocol::must_be_object(text)?;
        serde_json::from_str::<wire::Fields>(text)?.into_frame()
    }
}

mod wire {
    use super::{Reading, SensorFrame};
    use crate::need;
    use serde::de::Error as _;
    use serde::Deserialize;
    use std::borrow::Cow;

    #[derive(Deserialize)]
    pub(super) struct Fields<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        topic: Option<String>,
        readings: Option<Vec<Reading>>,
        sensor: Option<i64>,
    }

    impl Fields<'_> {
        pub(super) fn into_frame(self) -> Result<SensorFrame, serde_json::Error> {
            let Fields { kind, topic, readings, sensor } = self;
            Ok(match kind.as_ref() {
                "readings" => SensorFrame::Readings { topic: need!(topic), readings: need!(readings) },
                "sensor_deleted" => SensorFrame::SensorDeleted { topic: need!(topic), sensor: need!(sensor) },
                other => return Err(serde_json::Error::unknown_variant(other, &SensorFrame::TYPES)),
            })
        }
    }
}

/// A sensors topic, parsed from its wire name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SensorTopic {
    /// `sensor:<id>`: a sensor's readings. The latest first, then live; history is read
    /// with the `sensor_history` server function.
    Sensor(i64),
    /// `sensors`: changes to the list of sensors (one deleted).
    List,
}

impl SensorTopic {
    pub fn parse(name: &str) -> Option<SensorTopic> {
        if name == SENSORS_TOPIC {
            return Some(SensorTopic::List);
        }
        let id = name.strip_prefix("sensor:")?;
        // Digits only, so that each sensor has exactly one topic name.
        let digits = !id.is_empty() && id.len() <= 18 && id.bytes().all(|b| b.is_ascii_digit()) && !id.starts_with('0');
        id.parse().ok().filter(|_| digits).map(SensorTopic::Sensor)
    }
}

pub fn sensor_topic(sensor_id: i64) -> String {
    format!("sensor:{sensor_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::protocol::FeatureFrame;

    #[test]
    fn every_frame_reads_back_as_written() {
        let frames = vec![
            SensorFrame::Readings {
                topic: "sensor:3".into(),
                readings: vec![Reading { ts: 1, value: 0.5 }, Reading { ts: 2, value: -1e300 }],
            },
            SensorFrame::SensorDeleted { topic: "sensors".into(), sensor: 3 },
        ];
        let types: Vec<String> =
            frames.iter().map(|f| serde_json::to_value(f).unwrap()["type"].as_str().unwrap().to_owned()).collect();
        assert_eq!(types, SensorFrame::TYPES, "one example of every type, in the order of TYPES");
        for frame in frames {
            let text = serde_json::to_string(&frame).unwrap();
            assert_eq!(SensorFrame::from_json(&text).unwrap(), frame, "{text}");
        }
    }

    #[test]
    fn sensor_topics_are_canonical_ids() {
        assert_eq!(SensorTopic::parse("sensor:12"), Some(SensorTopic::Sensor(12)));
        assert_eq!(SensorTopic::parse(&sensor_topic(7)), Some(SensorTopic::Sensor(7)));
        assert_eq!(SensorTopic::parse("sensors"), Some(SensorTopic::List));
        for bad in ["sensor:", "sensor:0", "sensor:012", "sensor:-1", "sensor:+1", "sensor:x", "sensor:1.5"] {
            assert_eq!(SensorTopic::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn reading_frames_have_an_optional_timestamp() {
        let frame: SensorRequest = serde_json::from_str(
            r#"{"type":"reading","id":"1","sensor":3,"readings":[{"value":1.5},{"value":-2,"ts":1764000000000}]}"#,
        )
        .unwrap();
        assert_eq!(
            frame,
            SensorRequest::Reading {
                id: "1".into(),
                sensor: 3,
                readings: vec![
                    NewReading { value: 1.5, ts: None },
                    NewReading { value: -2.0, ts: Some(1_764_000_000_000) }
                ],
            }
        );
        let out = SensorFrame::Readings { topic: sensor_topic(3), readings: vec![Reading { ts: 5, value: 0.25 }] };
        assert_eq!(
            serde_json::to_value(&out).unwrap(),
            serde_json::json!({"type": "readings", "topic": "sensor:3", "readings": [{"ts": 5, "value": 0.25}]})
        );
    }
}
