//! Who has each room open.
//!
//! A person counts once however many tabs they have open. When their last
//! connection leaves, they stay listed for a short grace period, so a reload does
//! not make them blink out and back; after it they are gone. Every change sends the
//! room's whole list (it is small) on the room's chat topic, encoded once.
//!
//! On several nodes, each node keeps who is present through its own connections and writes
//! that to Redis, per topic: a hash (node → its people) and a sorted set (node → when its
//! entry expires), renewed every [`RENEW`] with an expiry [`TTL`] ahead, as Centrifuge lays
//! presence out. The list is the union of the entries that have not expired. A node that
//! changes its entry tells the others, and each node sends its own subscribers the new list;
//! each also reads the lists again every [`RENEW`], so a node killed without a word leaves the
//! lists within [`TTL`] + [`RENEW`] (8 s).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use super::bus::Cluster;
use super::encode;
use super::hub::{Event, Hub};
use crate::realtime::protocol::ServerFrame;

/// How long a node's entry lasts unless renewed.
pub const TTL: Duration = Duration::from_secs(6);
/// How often each node renews its entries and reads every list again.
pub const RENEW: Duration = Duration::from_secs(2);

/// The change that says a topic's list may have changed (its detail: the topic).
const PRESENCE_CHANGED: &str = "presence";

struct Entry {
    name: String,
    connections: usize,
}

pub struct Presence {
    hub: Arc<Hub>,
    /// Who is present through this node's connections.
    rooms: Mutex<HashMap<Arc<str>, HashMap<String, Entry>>>,
    grace: Duration,
    cluster: Option<Arc<Cluster>>,
    /// On several nodes: each topic's list as last sent to this node's subscribers.
    merged: Mutex<HashMap<Arc<str>, Vec<String>>>,
    /// This node's entries that Redis may not have yet (written by `renew`).
    dirty: Mutex<Vec<Arc<str>>>,
}

impl Presence {
    pub fn new(hub: Arc<Hub>, cluster: Option<Arc<Cluster>>, grace: Duration) -> Arc<Presence> {
        let presence = Arc::new(Presence {
            hub,
            rooms: Mutex::new(HashMap::new()),
            grace,
            cluster: cluster.clone(),
            merged: Mutex::new(HashMap::new()),
            dirty: Mutex::new(Vec::new()),
        });
        if let Some(cluster) = cluster {
            let weak = Arc::downgrade(&presence);
            cluster.on_change(
                PRESENCE_CHANGED,
                Arc::new(move |topic: &str| {
                    let Some(presence) = weak.upgrade() else { return };
                    let topic: Arc<str> = Arc::from(topic);
                    tokio::spawn(async move {
                        if topic.is_empty() {
                            presence.refresh_all().await;
                        } else {
                            presence.refresh(&topic).await;
                        }
                    });
                }),
            );
            tokio::spawn(renew_while(
                Arc::downgrade(&presence),
                |presence| async move { presence.refresh_all().await },
            ));
        }
        presence
    }

    /// The names of who is present in `topic` through this node, sorted.
    fn local(&self, topic: &str) -> Vec<String> {
        let rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<String> =
            rooms.get(topic).map(|people| people.values().map(|e| e.name.clone()).collect()).unwrap_or_default();
        names.sort();
        names.dedup();
        names
    }

    /// The names of who is in `topic`, sorted: on several nodes, the union of every node's.
    pub async fn online(&self, topic: &str) -> Vec<String> {
        let Some(cluster) = &self.cluster else { return self.local(topic) };
        let known = self.merged.lock().unwrap_or_else(PoisonError::into_inner).get(topic).cloned();
        match known {
            Some(names) => names,
            None => match cluster.quick(read(cluster, topic)).await {
                Ok(names) => {
                    self.merged.lock().unwrap_or_else(PoisonError::into_inner).insert(Arc::from(topic), names.clone());
                    names
                }
                Err(error) => {
                    tracing::warn!(%error, "reading presence from Redis failed");
                    self.local(topic)
                }
            },
        }
    }

    pub async fn frame(&self, topic: &str) -> ServerFrame {
        ServerFrame::Presence { topic: topic.to_owned(), online: self.online(topic).await }
    }

    /// This node's people in `topic` changed: tell its subscribers (on several nodes, write
    /// the entry, tell the other nodes, and send the union).
    fn broadcast(self: &Arc<Self>, topic: &Arc<str>) {
        if self.cluster.is_none() {
            let frame = ServerFrame::Presence { topic: topic.to_string(), online: self.local(topic) };
            self.hub.publish(Event::new(topic.clone(), 0, encode(&frame), None));
            return;
        }
        self.dirty.lock().unwrap_or_else(PoisonError::into_inner).push(topic.clone());
        let (presence, topic) = (self.clone(), topic.clone());
        tokio::spawn(async move {
            presence.write(&topic).await;
            if let Some(cluster) = &presence.cluster {
                cluster.changed(PRESENCE_CHANGED, &topic);
            }
            presence.refresh(&topic).await;
        });
    }

    /// Write this node's entry for `topic` to Redis.
    async fn write(&self, topic: &Arc<str>) {
        let Some(cluster) = &self.cluster else { return };
        let people: Vec<(String, String)> = {
            let rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
            rooms.get(topic).map(|p| p.iter().map(|(k, e)| (k.clone(), e.name.clone())).collect()).unwrap_or_default()
        };
        if let Err(error) = write(cluster, topic, &people).await {
            tracing::warn!(%error, %topic, "writing presence to Redis failed; renewing retries");
        } else {
            self.dirty.lock().unwrap_or_else(PoisonError::into_inner).retain(|t| t != topic);
        }
    }

    /// Read `topic`'s list from Redis and send it to this node's subscribers if it changed.
    async fn refresh(&self, topic: &Arc<str>) {
        let Some(cluster) = &self.cluster else { return };
        if self.hub.subscriber_count(topic) == 0 {
            self.merged.lock().unwrap_or_else(PoisonError::into_inner).remove(topic);
            return;
        }
        let names = match read(cluster, topic).await {
            Ok(names) => names,
            Err(error) => {
                tracing::warn!(%error, "reading presence from Redis failed");
                return;
            }
        };
        let changed = {
            let mut merged = self.merged.lock().unwrap_or_else(PoisonError::into_inner);
            let changed = merged.get(topic) != Some(&names);
            merged.insert(topic.clone(), names.clone());
            changed
        };
        if changed {
            let frame = ServerFrame::Presence { topic: topic.to_string(), online: names };
            self.hub.publish_local(Event::new(topic.clone(), 0, encode(&frame), None));
        }
    }

    /// Renew this node's entries, then read every list this node's subscribers follow.
    async fn refresh_all(&self) {
        let mine: Vec<Arc<str>> = self.rooms.lock().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect();
        let dirty = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(PoisonError::into_inner));
        for topic in mine.iter().chain(dirty.iter().filter(|t| !mine.contains(t))) {
            self.write(topic).await;
        }
        let followed: Vec<Arc<str>> = {
            let merged = self.merged.lock().unwrap_or_else(PoisonError::into_inner);
            merged.keys().chain(mine.iter()).cloned().collect()
        };
        let mut seen = std::collections::HashSet::new();
        for topic in followed {
            if seen.insert(topic.clone()) {
                self.refresh(&topic).await;
            }
        }
    }

    /// A node shutting down takes its entries out at once.
    pub async fn close(&self) {
        let Some(cluster) = &self.cluster else { return };
        let mine: Vec<Arc<str>> =
            std::mem::take(&mut *self.rooms.lock().unwrap_or_else(PoisonError::into_inner)).into_keys().collect();
        for topic in mine {
            if write(cluster, &topic, &[]).await.is_ok() {
                cluster.changed(PRESENCE_CHANGED, &topic);
            }
        }
    }

    /// Count a connection of `key` as present in `topic`, shown as `name`. A person's newest
    /// connection names them: a guest who changed their name is listed under the new one.
    pub fn join(self: &Arc<Self>, topic: &Arc<str>, key: &str, name: &str) {
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

/// Every [`RENEW`], run `tick` on what `owner` points to, for as long as it lives.
pub(crate) async fn renew_while<T, F, Fut>(owner: Weak<T>, tick: F)
where
    F: Fn(Arc<T>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticks = tokio::time::interval(RENEW);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(owner) = owner.upgrade() else { return };
        tick(owner).await;
    }
}

fn keys(cluster: &Cluster, topic: &str) -> (String, String) {
    (format!("{}presence:{topic}", cluster.prefix()), format!("{}presence-expiry:{topic}", cluster.prefix()))
}

/// Replace this node's entry for `topic` with `people` (key, name); none: remove it.
async fn write(cluster: &Cluster, topic: &str, people: &[(String, String)]) -> redis::RedisResult<()> {
    let (hash, expiry) = keys(cluster, topic);
    let node = cluster.node().to_string();
    let mut pipe = redis::pipe();
    pipe.atomic();
    if people.is_empty() {
        pipe.hdel(&hash, &node).ignore().zrem(&expiry, &node).ignore();
    } else {
        let until = crate::store::now_ms() + TTL.as_millis() as i64;
        let entry = serde_json::to_string(people).unwrap_or_default();
        // The keys go when no node renews them any more.
        let keep = (TTL * 10).as_millis() as i64;
        pipe.hset(&hash, &node, entry)
            .ignore()
            .zadd(&expiry, &node, until)
            .ignore()
            .pexpire(&hash, keep)
            .ignore()
            .pexpire(&expiry, keep)
            .ignore();
    }
    pipe.query_async(&mut cluster.redis()).await
}

/// Who is in `topic` on every node whose entry has not expired, by name, sorted; a person
/// present through several nodes once.
async fn read(cluster: &Cluster, topic: &str) -> redis::RedisResult<Vec<String>> {
    let (hash, expiry) = keys(cluster, topic);
    let now = crate::store::now_ms();
    let (live, entries): (Vec<String>, HashMap<String, String>) =
        redis::pipe().zrangebyscore(&expiry, now, "+inf").hgetall(&hash).query_async(&mut cluster.redis()).await?;
    let mut people: HashMap<String, String> = HashMap::new();
    for node in &live {
        let Some(entry) = entries.get(node) else { continue };
        let Ok(list) = serde_json::from_str::<Vec<(String, String)>>(entry) else { continue };
        people.extend(list);
    }
    let mut names: Vec<String> = people.into_values().collect();
    names.sort();
    names.dedup();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_tabs_count_once_and_leaving_takes_the_grace_period() {
        let hub = Hub::new();
        let presence = Presence::new(hub.clone(), None, Duration::from_millis(50));
        let topic: Arc<str> = Arc::from("chat:x");
        presence.join(&topic, "u:1", "ada");
        presence.join(&topic, "u:1", "ada");
        presence.join(&topic, "u:2", "bob");
        assert_eq!(presence.online("chat:x").await, vec!["ada", "bob"]);
        presence.leave(&topic, "u:1");
        assert_eq!(presence.online("chat:x").await, vec!["ada", "bob"], "one tab of ada's is still open");
        presence.leave(&topic, "u:1");
        presence.leave(&topic, "u:2");
        assert_eq!(presence.online("chat:x").await, vec!["ada", "bob"], "listed during the grace period");
        presence.join(&topic, "u:2", "bob");
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(presence.online("chat:x").await, vec!["bob"], "bob came back within the grace period");
    }

    #[tokio::test]
    async fn a_guest_who_renames_is_listed_under_the_new_name_at_once() {
        let hub = Hub::new();
        let presence = Presence::new(hub.clone(), None, Duration::from_millis(50));
        let topic: Arc<str> = Arc::from("chat:x");
        let (watcher, mut events) = hub.connect(8);
        hub.subscribe(&topic, &watcher);
        presence.join(&topic, "g:1", "anonymous (guest 3f2a)");
        // The browser reconnects under its new name before the old connection has gone.
        presence.join(&topic, "g:1", "alice (guest 3f2a)");
        assert_eq!(presence.online("chat:x").await, vec!["alice (guest 3f2a)"]);
        presence.leave(&topic, "g:1");
        assert_eq!(presence.online("chat:x").await, vec!["alice (guest 3f2a)"]);
        let mut last = None;
        while let Ok(event) = events.try_recv() {
            last = Some(String::from_utf8_lossy(&event.frame).into_owned());
        }
        assert!(last.is_some_and(|frame| frame.contains("alice (guest 3f2a)")), "the rename was announced");
    }
}
