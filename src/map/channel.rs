//! The map's side of the socket: joining a room's map (`location:<room>`, a latest-value
//! topic: everyone's position first, then changes), and `locate` and `stop_sharing`.

use std::sync::Arc;

use async_trait::async_trait;

use super::protocol::{location_topic, map_room_of, MapFrame, MapRequest};
use super::server::{validate, Locations};
use crate::chat::channel::visible_room;
use crate::chat::server::Chat;
use crate::chat::store::Room;
use crate::realtime::protocol::Request;
use crate::realtime::server::channel::{Channel, Closed, Flow, Join};
use crate::realtime::server::gateway::Conn;

pub struct MapChannel {
    /// A room's map is the room's: who may see the room may see its map.
    pub chat: Arc<Chat>,
    pub locations: Arc<Locations>,
}

/// The maps this connection shares a position on; it stops when the connection closes.
#[derive(Default)]
struct Sharing(Vec<Arc<str>>);

impl MapChannel {
    /// The room a `location:<room>` topic names, if this connection may use it; else an
    /// error frame sent and `None`.
    async fn room(&self, conn: &mut Conn, id: &str, topic: &str) -> Result<Option<Room>, Closed> {
        visible_room(&self.chat, conn, id, topic, map_room_of(topic), "map topic (location:<room>)").await
    }
}

/// Share `who`'s position on the map `topic`, as this connection.
pub fn share(conn: &mut Conn, locations: &Arc<Locations>, topic: &str, at: (f64, f64), trail: bool) {
    let (key, name) = (conn.who().key(), conn.who().display_name());
    let sharing = conn.local::<Sharing>();
    let topic: Arc<str> = match sharing.0.iter().find(|t| &***t == topic) {
        Some(known) => known.clone(),
        None => {
            let topic: Arc<str> = Arc::from(topic);
            sharing.0.push(topic.clone());
            topic
        }
    };
    locations.update(&topic, &key, &name, at, trail);
}

/// Forget every position this connection shares.
pub fn stop_all(conn: &mut Conn, locations: &Locations) {
    let key = conn.who().key();
    for topic in std::mem::take(&mut conn.local::<Sharing>().0) {
        locations.remove(&topic, &key);
    }
}

#[async_trait]
impl Channel for MapChannel {
    fn topics(&self) -> &'static [&'static str] {
        &["location:"]
    }

    fn spelling(&self) -> &'static [&'static str] {
        &["location:<room>"]
    }

    fn requests(&self) -> &'static [&'static str] {
        &MapRequest::TYPES
    }

    async fn join(&self, conn: &mut Conn, join: Join) -> Flow {
        let Join { id, topic, .. } = join;
        let Some(room) = self.room(conn, &id, &topic).await? else { return Ok(()) };
        let locations = self.locations.clone();
        let snapshot = topic.clone();
        let latest = async move {
            let positions = locations.snapshot(&snapshot).await;
            Ok::<_, std::convert::Infallible>(Some(MapFrame::Locations { topic: snapshot, positions }))
        };
        conn.join_latest(id, topic, room.epoch, latest).await
    }

    async fn request(&self, conn: &mut Conn, request: Request) -> Flow {
        let request = match request.read::<MapRequest>() {
            Ok(request) => request,
            Err(rejection) => return conn.reject(rejection).await,
        };
        match request {
            MapRequest::Locate { id, topic, latitude, longitude, trail } => {
                let Some(room) = self.room(conn, &id, &topic).await? else { return Ok(()) };
                match validate(latitude, longitude) {
                    Ok(at) => {
                        share(conn, &self.locations, &location_topic(&room.name), at, trail);
                        Ok(())
                    }
                    Err((code, message)) => conn.error(Some(id), code, &message).await,
                }
            }
            MapRequest::StopSharing { id, topic } => {
                let Some(room) = self.room(conn, &id, &topic).await? else { return Ok(()) };
                let topic = location_topic(&room.name);
                let key = conn.who().key();
                let sharing = conn.local::<Sharing>();
                if let Some(pos) = sharing.0.iter().position(|t| **t == *topic) {
                    let topic = sharing.0.swap_remove(pos);
                    self.locations.remove(&topic, &key);
                }
                Ok(())
            }
        }
    }

    fn disconnect(&self, conn: &mut Conn) {
        stop_all(conn, &self.locations);
    }
}
