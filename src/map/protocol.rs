//! The map's frames and topics, shared by the server and the browser (`docs/protocol.md`,
//! "Map"). Topic: `location:<room>`, a room's map: the latest position per person, not history.

use serde::{Deserialize, Serialize};

use crate::chat::protocol::valid_room_name;

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

/// The map's requests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MapRequest {
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
    StopSharing { id: String, topic: String },
}

impl MapRequest {
    /// Its frame types, as spelled on the wire.
    pub const TYPES: [&'static str; 2] = ["locate", "stop_sharing"];
}

/// The map's frames from the server.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MapFrame {
    /// Everyone's latest position in a room: sent first on subscribing to `location:<room>`.
    Locations { topic: String, positions: Vec<Located> },
    /// Someone's new position.
    Location {
        topic: String,
        #[serde(flatten)]
        position: Located,
    },
    /// Someone stopped sharing or left.
    LocationGone { topic: String, user: String },
}

impl MapFrame {
    /// Its frame types, as spelled on the wire.
    pub const TYPES: [&'static str; 3] = ["locations", "location", "location_gone"];
}

impl crate::realtime::protocol::FeatureFrame for MapFrame {
    /// Read one frame in one pass (see `ServerFrame::from_json` for why not serde's derive).
    fn from_json(text: &str) -> Result<MapFrame, serde_json::Error> {
        crate::realtime::protocol::must_be_object(text)?;
        serde_json::from_str::<wire::Fields>(text)?.into_frame()
    }
}

mod wire {
    use super::{Located, MapFrame};
    use crate::need;
    use serde::de::Error as _;
    use serde::Deserialize;
    use std::borrow::Cow;

    #[derive(Deserialize)]
    pub(super) struct Fields<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        topic: Option<String>,
        positions: Option<Vec<Located>>,
        user: Option<String>,
        latitude: Option<f64>,
        longitude: Option<f64>,
        ts: Option<i64>,
        trail: Option<Vec<[f64; 2]>>,
    }

    impl Fields<'_> {
        pub(super) fn into_frame(self) -> Result<MapFrame, serde_json::Error> {
            let Fields { kind, topic, positions, user, latitude, longitude, ts, trail } = self;
            Ok(match kind.as_ref() {
                "locations" => MapFrame::Locations { topic: need!(topic), positions: need!(positions) },
                "location" => MapFrame::Location {
                    topic: need!(topic),
                    position: Located {
                        user: need!(user),
                        latitude: need!(latitude),
                        longitude: need!(longitude),
                        ts: need!(ts),
                        trail: trail.unwrap_or_default(),
                    },
                },
                "location_gone" => MapFrame::LocationGone { topic: need!(topic), user: need!(user) },
                other => return Err(serde_json::Error::unknown_variant(other, &MapFrame::TYPES)),
            })
        }
    }
}

/// The room a `location:<room>` topic names.
pub fn map_room_of(topic: &str) -> Option<&str> {
    topic.strip_prefix("location:").filter(|room| valid_room_name(room))
}

pub fn location_topic(room: &str) -> String {
    format!("location:{room}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::protocol::FeatureFrame;

    #[test]
    fn every_frame_reads_back_as_written() {
        let located = Located {
            user: "bo".into(),
            latitude: -33.5,
            longitude: 151.25,
            ts: 9,
            trail: vec![[1.0, 2.0], [3.0, 4.5]],
        };
        let t = || "location:lobby".to_string();
        let frames = vec![
            MapFrame::Locations { topic: t(), positions: vec![located.clone()] },
            MapFrame::Location { topic: t(), position: located },
            MapFrame::LocationGone { topic: t(), user: "bo".into() },
        ];
        let types: Vec<String> =
            frames.iter().map(|f| serde_json::to_value(f).unwrap()["type"].as_str().unwrap().to_owned()).collect();
        assert_eq!(types, MapFrame::TYPES, "one example of every type, in the order of TYPES");
        for frame in frames {
            let text = serde_json::to_string(&frame).unwrap();
            assert_eq!(MapFrame::from_json(&text).unwrap(), frame, "{text}");
        }
    }

    #[test]
    fn a_location_without_a_trail_has_an_empty_one() {
        let text = r#"{"type":"location","topic":"location:a","user":"bo","latitude":1.5,"longitude":2,"ts":3}"#;
        let MapFrame::Location { position, .. } = MapFrame::from_json(text).unwrap() else { panic!("{text}") };
        assert_eq!((position.longitude, position.trail.len()), (2.0, 0));
        let missing = r#"{"type":"location","topic":"location:a","user":"bo","latitude":1.5,"ts":3}"#;
        assert!(MapFrame::from_json(missing).unwrap_err().to_string().contains("missing field `longitude`"));
    }

    #[test]
    fn map_topics_name_a_valid_room() {
        assert_eq!(map_room_of("location:lobby"), Some("lobby"));
        assert_eq!(map_room_of(&location_topic("ops")), Some("ops"));
        for bad in ["location:", "location:Lobby", "map:lobby", "chat:lobby"] {
            assert_eq!(map_room_of(bad), None, "{bad}");
        }
    }
}
