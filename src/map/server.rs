//! Live positions on each room's map.
//!
//! Positions are fast-changing state, not history: each room keeps only the latest
//! position of each person sharing, which a new subscriber receives first. Updates
//! from one person are coalesced to at most one per interval; the latest always wins
//! and is sent when the interval ends, so nothing stale is left on anyone's map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::protocol::{Located, MapFrame};
use crate::realtime::protocol::ErrorCode;
use crate::realtime::server::bus::Cluster;
use crate::realtime::server::encode;
use crate::realtime::server::hub::{Event, Hub};
use crate::realtime::server::latest::Latest;
use crate::store::now_ms;

/// The most earlier positions a trail keeps.
pub const TRAIL_POINTS: usize = 30;

/// Someone else told of every position passed on (the tutorial's `/ws/location/` mirrors
/// the lobby's map): the room's topic and the position.
pub type Observer = Box<dyn Fn(&Hub, &str, &Located) + Send + Sync>;

/// Check a position: finite, latitude in [-90, 90], longitude in [-180, 180].
pub fn validate(latitude: f64, longitude: f64) -> Result<(f64, f64), (ErrorCode, String)> {
    if !latitude.is_finite() || !longitude.is_finite() {
        return Err((ErrorCode::OutOfRange, "latitude and longitude must be finite numbers".into()));
    }
    if !(-90.0..=90.0).contains(&latitude) {
        return Err((ErrorCode::OutOfRange, format!("latitude {latitude} is outside [-90, 90]")));
    }
    if !(-180.0..=180.0).contains(&longitude) {
        return Err((ErrorCode::OutOfRange, format!("longitude {longitude} is outside [-180, 180]")));
    }
    Ok((latitude, longitude))
}

struct Entry {
    position: Located,
    last_sent: Option<Instant>,
    /// A flush is scheduled for the end of the interval.
    pending: bool,
}

pub struct Locations {
    hub: Arc<Hub>,
    /// On several nodes: everyone's latest position, in Redis.
    shared: Option<Arc<Latest>>,
    interval: Duration,
    /// Per room topic (`location:<room>`), per person key.
    rooms: Mutex<HashMap<Arc<str>, HashMap<String, Entry>>>,
    observers: RwLock<Vec<Observer>>,
}

impl Locations {
    /// `per_second`: how many updates of one person are passed on each second at most.
    /// On several nodes (`cluster`), positions are shared through Redis: a new subscriber
    /// on any node gets everyone's, and a position whose node died goes within seconds.
    pub fn new(hub: Arc<Hub>, cluster: Option<Arc<Cluster>>, per_second: f64) -> Arc<Locations> {
        let interval = Duration::from_secs_f64(1.0 / per_second.max(0.01));
        let shared = cluster.map(|cluster| Latest::new(cluster, hub.clone(), "location"));
        if let Some(shared) = &shared {
            let hub = hub.clone();
            shared.on_expired(Box::new(move |topic, value| {
                let Ok(position) = serde_json::from_str::<Located>(value) else { return };
                let frame = encode(&MapFrame::LocationGone { topic: topic.to_string(), user: position.user });
                hub.publish(Event::new(topic.clone(), 0, frame, None));
            }));
        }
        Arc::new(Locations { hub, shared, interval, rooms: Mutex::new(HashMap::new()), observers: RwLock::default() })
    }

    /// Everyone's latest position in a room (on several nodes, everyone's on every node).
    pub async fn snapshot(&self, topic: &str) -> Vec<Located> {
        let mut positions: Vec<Located> = match &self.shared {
            Some(shared) => match shared.all(topic).await {
                Ok(values) => values.iter().filter_map(|value| serde_json::from_str(value).ok()).collect(),
                Err(error) => {
                    tracing::warn!(%error, "reading positions from Redis failed: this node's only");
                    self.here(topic)
                }
            },
            None => self.here(topic),
        };
        positions.sort_by(|a, b| a.user.cmp(&b.user));
        positions
    }

    /// The latest positions shared through this node.
    fn here(&self, topic: &str) -> Vec<Located> {
        let rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        rooms.get(topic).map(|people| people.values().map(|e| e.position.clone()).collect()).unwrap_or_default()
    }

    fn broadcast(&self, topic: &Arc<str>, key: &str, position: &Located) {
        if let Some(shared) = &self.shared {
            shared.set(topic, key, serde_json::to_string(position).unwrap_or_default());
        }
        if self.hub.wanted(topic) {
            let frame = encode(&MapFrame::Location { topic: topic.to_string(), position: position.clone() });
            self.hub.publish(Event::new(topic.clone(), 0, frame, None));
        }
        for observer in self.observers.read().unwrap_or_else(PoisonError::into_inner).iter() {
            observer(&self.hub, topic, position);
        }
    }

    /// Tell `observer` of every position passed on from now on.
    pub fn observe(&self, observer: Observer) {
        self.observers.write().unwrap_or_else(PoisonError::into_inner).push(observer);
    }

    /// Record a position; pass it on now, or at the end of the person's interval. With
    /// `trail`, the earlier positions are kept (up to [`TRAIL_POINTS`]); without, forgotten.
    pub fn update(self: &Arc<Self>, topic: &Arc<str>, key: &str, user: &str, at: (f64, f64), trail: bool) {
        let (latitude, longitude) = at;
        let mut position = Located { user: user.to_owned(), latitude, longitude, ts: now_ms(), trail: Vec::new() };
        let now = Instant::now();
        let send_now = {
            let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = rooms.entry(topic.clone()).or_default().entry(key.to_owned()).or_insert(Entry {
                position: position.clone(),
                last_sent: None,
                pending: false,
            });
            if trail {
                let previous = [entry.position.latitude, entry.position.longitude];
                let mut points = std::mem::take(&mut entry.position.trail);
                if previous != [latitude, longitude] {
                    points.push(previous);
                }
                let excess = points.len().saturating_sub(TRAIL_POINTS);
                points.drain(..excess);
                position.trail = points;
            }
            entry.position = position.clone();
            let due = entry.last_sent.is_none_or(|at| now.duration_since(at) >= self.interval);
            if due {
                entry.last_sent = Some(now);
                true
            } else {
                if !entry.pending {
                    entry.pending = true;
                    let wait = self
                        .interval
                        .saturating_sub(entry.last_sent.map_or(Duration::ZERO, |at| now.duration_since(at)));
                    self.schedule_flush(topic.clone(), key.to_owned(), wait);
                }
                false
            }
        };
        if send_now {
            self.broadcast(topic, key, &position);
        }
    }

    fn schedule_flush(self: &Arc<Self>, topic: Arc<str>, key: String, wait: Duration) {
        let locations = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let latest = {
                let mut rooms = locations.rooms.lock().unwrap_or_else(PoisonError::into_inner);
                rooms.get_mut(&topic).and_then(|people| people.get_mut(&key)).filter(|e| e.pending).map(|entry| {
                    entry.pending = false;
                    entry.last_sent = Some(Instant::now());
                    entry.position.clone()
                })
            };
            if let Some(position) = latest {
                locations.broadcast(&topic, &key, &position);
            }
        });
    }

    /// Forget a person's position (they stopped sharing or left) and tell the room.
    pub fn remove(&self, topic: &Arc<str>, key: &str) {
        let removed = {
            let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
            let removed = rooms.get_mut(topic).and_then(|people| people.remove(key));
            if rooms.get(topic).is_some_and(HashMap::is_empty) {
                rooms.remove(topic);
            }
            removed
        };
        if let Some(shared) = &self.shared {
            shared.remove(topic, key);
        }
        if let Some(entry) = removed {
            let frame = encode(&MapFrame::LocationGone { topic: topic.to_string(), user: entry.position.user });
            self.hub.publish(Event::new(topic.clone(), 0, frame, None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_must_be_on_the_globe() {
        assert!(validate(0.0, 0.0).is_ok());
        assert!(validate(90.0, -180.0).is_ok());
        assert_eq!(validate(90.5, 0.0).unwrap_err().0, ErrorCode::OutOfRange);
        assert_eq!(validate(0.0, 180.1).unwrap_err().0, ErrorCode::OutOfRange);
        assert_eq!(validate(f64::NAN, 0.0).unwrap_err().0, ErrorCode::OutOfRange);
        assert_eq!(validate(0.0, f64::INFINITY).unwrap_err().0, ErrorCode::OutOfRange);
    }

    #[tokio::test]
    async fn updates_are_coalesced_and_the_latest_wins() {
        let hub = Hub::new();
        let (peer, mut rx) = hub.connect(64);
        hub.subscribe("location:x", &peer);
        let locations = Locations::new(hub.clone(), None, 10.0);
        let topic: Arc<str> = Arc::from("location:x");
        for i in 0..5 {
            locations.update(&topic, "u:1", "ada", (f64::from(i), 0.0), false);
        }
        let first: serde_json::Value = serde_json::from_slice(&rx.recv().await.unwrap().frame).unwrap();
        assert_eq!(first["latitude"], 0.0);
        let second: serde_json::Value = serde_json::from_slice(&rx.recv().await.unwrap().frame).unwrap();
        assert_eq!(second["latitude"], 4.0, "the updates in between were coalesced into the latest");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(rx.try_recv().is_err(), "nothing else was sent");
        assert_eq!(locations.snapshot("location:x").await[0].latitude, 4.0);
        locations.remove(&topic, "u:1");
        let gone: serde_json::Value = serde_json::from_slice(&rx.recv().await.unwrap().frame).unwrap();
        assert_eq!(gone["type"], "location_gone");
        assert!(locations.snapshot("location:x").await.is_empty());
    }

    #[tokio::test]
    async fn a_trail_keeps_the_last_points_until_it_is_turned_off() {
        let locations = Locations::new(Hub::new(), None, 1000.0);
        let topic: Arc<str> = Arc::from("location:x");
        for i in 0..40 {
            locations.update(&topic, "u:1", "ada", (f64::from(i), 1.0), true);
        }
        let now = &locations.snapshot("location:x").await[0];
        assert_eq!(now.latitude, 39.0);
        assert_eq!(now.trail.len(), TRAIL_POINTS);
        assert_eq!(now.trail.first(), Some(&[9.0, 1.0]));
        assert_eq!(now.trail.last(), Some(&[38.0, 1.0]));
        locations.update(&topic, "u:1", "ada", (50.0, 1.0), false);
        assert!(locations.snapshot("location:x").await[0].trail.is_empty());
    }
}
