//! Who has each room open.
//!
//! A person counts once however many tabs they have open. When their last
//! connection leaves, they stay listed for a short grace period, so a reload does
//! not make them blink out and back; after it they are gone. Every change sends the
//! room's whole list (it is small) on the room's chat topic, encoded once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::encode;
use super::hub::{Event, Hub};
use crate::realtime::protocol::ServerFrame;

struct Entry {
    name: String,
    connections: usize,
}

pub struct Presence {
    hub: Arc<Hub>,
    rooms: Mutex<HashMap<Arc<str>, HashMap<String, Entry>>>,
    grace: Duration,
}

impl Presence {
    pub fn new(hub: Arc<Hub>, grace: Duration) -> Arc<Presence> {
        Arc::new(Presence { hub, rooms: Mutex::new(HashMap::new()), grace })
    }

    /// The names of who is in `topic`, sorted.
    pub fn online(&self, topic: &str) -> Vec<String> {
        let rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<String> =
            rooms.get(topic).map(|people| people.values().map(|e| e.name.clone()).collect()).unwrap_or_default();
        names.sort();
        names.dedup();
        names
    }

    pub fn frame(&self, topic: &str) -> ServerFrame {
        ServerFrame::Presence { topic: topic.to_owned(), online: self.online(topic) }
    }

    fn broadcast(&self, topic: &Arc<str>) {
        let frame = encode(&self.frame(topic));
        self.hub.publish(Event::new(topic.clone(), 0, frame, None));
    }

    /// Count a connection of `key` as present in `topic`, shown as `name`. A person's newest
    /// connection names them: a guest who changed their name is listed under the new one.
    pub fn join(&self, topic: &Arc<str>, key: &str, name: &str) {
        let changed = {
            let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = rooms
                .entry(topic.clone())
                .or_default()
                .entry(key.to_owned())
                .or_insert_with(|| Entry { name: name.to_owned(), connections: 0 });
            entry.connections += 1;
            let renamed = entry.name != name;
            if renamed {
                name.clone_into(&mut entry.name);
            }
            entry.connections == 1 || renamed
        };
        if changed {
            self.broadcast(topic);
        }
    }

    pub fn leave(self: &Arc<Self>, topic: &Arc<str>, key: &str) {
        let gone = {
            let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
            match rooms.get_mut(topic).and_then(|people| people.get_mut(key)) {
                Some(entry) => {
                    entry.connections = entry.connections.saturating_sub(1);
                    entry.connections == 0
                }
                None => false,
            }
        };
        if !gone {
            return;
        }
        let presence = self.clone();
        let topic = topic.clone();
        let key = key.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(presence.grace).await;
            let removed = {
                let mut rooms = presence.rooms.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(people) = rooms.get_mut(&topic) else { return };
                let removed = people.get(&key).is_some_and(|e| e.connections == 0);
                if removed {
                    people.remove(&key);
                }
                if people.is_empty() {
                    rooms.remove(&topic);
                }
                removed
            };
            if removed {
                presence.broadcast(&topic);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_tabs_count_once_and_leaving_takes_the_grace_period() {
        let hub = Hub::new();
        let presence = Presence::new(hub.clone(), Duration::from_millis(50));
        let topic: Arc<str> = Arc::from("chat:x");
        presence.join(&topic, "u:1", "ada");
        presence.join(&topic, "u:1", "ada");
        presence.join(&topic, "u:2", "bob");
        assert_eq!(presence.online("chat:x"), vec!["ada", "bob"]);
        presence.leave(&topic, "u:1");
        assert_eq!(presence.online("chat:x"), vec!["ada", "bob"], "one tab of ada's is still open");
        presence.leave(&topic, "u:1");
        presence.leave(&topic, "u:2");
        assert_eq!(presence.online("chat:x"), vec!["ada", "bob"], "listed during the grace period");
        presence.join(&topic, "u:2", "bob");
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(presence.online("chat:x"), vec!["bob"], "bob came back within the grace period");
    }

    #[tokio::test]
    async fn a_guest_who_renames_is_listed_under_the_new_name_at_once() {
        let hub = Hub::new();
        let presence = Presence::new(hub.clone(), Duration::from_millis(50));
        let topic: Arc<str> = Arc::from("chat:x");
        let (watcher, mut events) = hub.connect(8);
        hub.subscribe(&topic, &watcher);
        presence.join(&topic, "g:1", "anonymous (guest 3f2a)");
        // The browser reconnects under its new name before the old connection has gone.
        presence.join(&topic, "g:1", "alice (guest 3f2a)");
        assert_eq!(presence.online("chat:x"), vec!["alice (guest 3f2a)"]);
        presence.leave(&topic, "g:1");
        assert_eq!(presence.online("chat:x"), vec!["alice (guest 3f2a)"]);
        let mut last = None;
        while let Ok(event) = events.try_recv() {
            last = Some(String::from_utf8_lossy(&event.frame).into_owned());
        }
        assert!(last.is_some_and(|frame| frame.contains("alice (guest 3f2a)")), "the rename was announced");
    }
}
