//! Chat rooms: the room directory, memberships, rate limits, and the room's log: each
//! message is made durable before it is fanned out, by the core's durable-topic writer
//! ([`Writer`]), to which this module says how messages are stored and what they look like
//! on the wire ([`ChatLog`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use super::protocol::{chat_topic, valid_room_name, ChatFrame, ChatMessage, RoomInfo, CHAT_TOPIC_PREFIX};
use super::store::{message, payload, Room};
use crate::accounts::auth::Identity;
use crate::accounts::store::User;
use crate::realtime::server::bus::Cluster;
use crate::realtime::server::durable::{Durable, Stored, WriteError, Writer};
use crate::realtime::server::hub::{Burst, Event, Hub};
use crate::realtime::server::limit::RateLimiter;
use crate::realtime::server::presence::Presence;
use crate::realtime::server::{encode, user_topic};
use crate::store::events::{Logged, NewEvent};
use crate::store::{Store, StoreError};

/// The most messages stored in one transaction.
const MAX_BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("no room is named {0:?}")]
    UnknownRoom(String),
    #[error("room names are 1 to 32 characters of a-z, 0-9, - and _")]
    BadRoomName,
    #[error("no user is named {0:?}")]
    UnknownUser(String),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("too many messages; wait a moment")]
    RateLimited,
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Someone else told of every message stored (the tutorial's `/ws/chat/` mirrors the lobby):
/// the room, the message, and the burst its fan-out is part of. On several nodes, every node
/// tells its own observers.
pub type Observer = Box<dyn Fn(&Hub, &str, &ChatMessage, Option<&mut Burst>) + Send + Sync>;

/// Told when a member is removed from a private room (the room, the user's id), so that a
/// feature that shows the room's things ends that user's subscriptions to them too.
pub type Removed = Box<dyn Fn(&Room, i64) + Send + Sync>;

/// The rooms and the members of private rooms, as kept in memory from the store. On several
/// nodes, a node that changes them tells the others, which reload them (`chat.rooms`).
#[derive(Default)]
struct Directory {
    rooms: RwLock<HashMap<String, Room>>,
    /// Members of private rooms, by room id.
    members: RwLock<HashMap<i64, HashSet<i64>>>,
}

impl Directory {
    async fn load(&self, store: &Store) -> Result<(), StoreError> {
        let rooms = store.rooms().await?.into_iter().map(|r| (r.name.clone(), r)).collect();
        let mut members: HashMap<i64, HashSet<i64>> = HashMap::new();
        for (room, user) in store.memberships().await? {
            members.entry(room).or_default().insert(user);
        }
        *self.rooms.write().unwrap_or_else(PoisonError::into_inner) = rooms;
        *self.members.write().unwrap_or_else(PoisonError::into_inner) = members;
        Ok(())
    }

    fn room(&self, name: &str) -> Option<Room> {
        self.rooms.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    fn is_member(&self, room_id: i64, user_id: i64) -> bool {
        self.members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&room_id)
            .is_some_and(|members| members.contains(&user_id))
    }

    /// Where a message's activity notice goes: `activity` for a public room, each member's own
    /// topic for a private one.
    fn activity_topics(&self, room: &str) -> Vec<Arc<str>> {
        match self.room(room) {
            Some(found) if found.private => {
                let members = self.members.read().unwrap_or_else(PoisonError::into_inner);
                members.get(&found.id).map(|m| m.iter().map(|&u| user_topic(u)).collect()).unwrap_or_default()
            }
            Some(_) => vec![Arc::from(ACTIVITY_TOPIC)],
            None => Vec::new(),
        }
    }
}

/// What a room's stored messages mean, and their fan-out (see [`Durable`]).
struct Messages {
    directory: Arc<Directory>,
    observers: RwLock<Vec<Observer>>,
}

impl Durable for Messages {
    type Value = ChatMessage;

    fn value(&self, _topic: &str, event: &Logged) -> Result<ChatMessage, StoreError> {
        message(event.clone())
    }

    /// Fan a stored message out to the room's subscribers, a notice of it to whoever sees the
    /// room, and to observers. Each format is encoded once. Every node does this for itself.
    fn fan_out(&self, hub: &Hub, topic: &Arc<str>, message: &ChatMessage, mut burst: Option<&mut Burst>) {
        let Some(room) = topic.strip_prefix(CHAT_TOPIC_PREFIX) else { return };
        if hub.subscriber_count(topic) > 0 {
            let frame = encode(&ChatFrame::Message { topic: topic.to_string(), message: message.clone() });
            hub.publish_in(Event::new(topic.clone(), message.offset, frame, None), burst.as_deref_mut());
        }
        let activity = self.directory.activity_topics(room);
        if activity.iter().any(|topic| hub.subscriber_count(topic) > 0) {
            let frame = encode(&ChatFrame::Activity {
                topic: ACTIVITY_TOPIC.into(),
                room: room.to_owned(),
                offset: message.offset,
                author: message.author.clone(),
                text: message.text.chars().take(200).collect(),
            });
            for topic in activity {
                hub.publish_in(Event::new(topic, 0, frame.clone(), None), burst.as_deref_mut());
            }
        }
        for observer in self.observers.read().unwrap_or_else(PoisonError::into_inner).iter() {
            observer(hub, room, message, burst.as_deref_mut());
        }
    }
}

/// The change every node reloads the directory on.
const ROOMS_CHANGED: &str = "chat.rooms";

pub struct Chat {
    store: Store,
    hub: Arc<Hub>,
    directory: Arc<Directory>,
    limiter: RateLimiter,
    pub presence: Arc<Presence>,
    writer: Writer<Messages>,
    messages: Arc<Messages>,
    cluster: Option<Arc<Cluster>>,
    removed: RwLock<Vec<Removed>>,
}

impl Chat {
    /// Load the rooms and start the writer.
    pub async fn start(
        store: Store,
        hub: Arc<Hub>,
        cluster: Option<Arc<Cluster>>,
        limits: ChatLimits,
    ) -> Result<Arc<Chat>, ChatError> {
        let directory = Arc::new(Directory::default());
        directory.load(&store).await?;
        let messages = Arc::new(Messages { directory: directory.clone(), observers: RwLock::new(Vec::new()) });
        let writer = Writer::start(
            store.event_writer().await?,
            messages.clone(),
            hub.clone(),
            cluster.clone(),
            MAX_BATCH,
            limits.commit_window,
        );
        if let Some(cluster) = &cluster {
            cluster.durable(CHAT_TOPIC_PREFIX, messages.clone());
            let (store, directory) = (store.clone(), Arc::downgrade(&directory));
            cluster.on_change(
                ROOMS_CHANGED,
                Arc::new(move |_: &str| {
                    let (store, directory) = (store.clone(), directory.clone());
                    tokio::spawn(async move {
                        let Some(directory) = directory.upgrade() else { return };
                        if let Err(error) = directory.load(&store).await {
                            tracing::error!(%error, "reloading the rooms failed");
                        }
                    });
                }),
            );
        }
        Ok(Arc::new(Chat {
            store,
            hub: hub.clone(),
            directory,
            limiter: RateLimiter::new(limits.message_rate, limits.message_burst).shared(cluster.clone(), "chat"),
            presence: Presence::new(hub.clone(), cluster.clone(), limits.presence_grace),
            writer,
            messages,
            cluster,
            removed: RwLock::new(Vec::new()),
        }))
    }

    /// Tell the other nodes that rooms or members changed.
    fn rooms_changed(&self) {
        if let Some(cluster) = &self.cluster {
            cluster.changed(ROOMS_CHANGED, "");
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn room(&self, name: &str) -> Option<Room> {
        self.directory.room(name)
    }

    /// The room with this id.
    pub fn room_by_id(&self, id: i64) -> Option<Room> {
        let rooms = self.directory.rooms.read().unwrap_or_else(PoisonError::into_inner);
        rooms.values().find(|room| room.id == id).cloned()
    }

    fn is_member(&self, room_id: i64, user_id: i64) -> bool {
        self.directory.is_member(room_id, user_id)
    }

    /// Whether `who` may read and write `room`.
    pub fn can_access(&self, room: &Room, who: &Identity) -> bool {
        !room.private || who.user().is_some_and(|user| self.is_member(room.id, user.id))
    }

    /// The room, if it exists and `who` may see it. A private room is indistinguishable
    /// from a missing one to a non-member.
    pub fn room_for(&self, name: &str, who: &Identity) -> Result<Room, ChatError> {
        self.room(name).filter(|room| self.can_access(room, who)).ok_or_else(|| ChatError::UnknownRoom(name.to_owned()))
    }

    /// The rooms `who` may see, by name.
    pub fn rooms_for(&self, who: &Identity) -> Vec<Room> {
        let mut rooms: Vec<Room> = self
            .directory
            .rooms
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|room| self.can_access(room, who))
            .cloned()
            .collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        rooms
    }

    /// Create a room. Public rooms are announced to everyone, private ones to their creator.
    pub async fn create_room(&self, name: &str, private: bool, creator: Option<&User>) -> Result<RoomInfo, ChatError> {
        if !valid_room_name(name) {
            return Err(ChatError::BadRoomName);
        }
        if private && creator.is_none() {
            return Err(ChatError::Forbidden("only signed-in users create private rooms"));
        }
        let room = self.store.create_room(name, private, creator.map(|u| u.id)).await?;
        let info = room_info(&room);
        if let (true, Some(user)) = (private, creator) {
            let mut members = self.directory.members.write().unwrap_or_else(PoisonError::into_inner);
            members.entry(room.id).or_default().insert(user.id);
        }
        self.directory.rooms.write().unwrap_or_else(PoisonError::into_inner).insert(room.name.clone(), room);
        self.rooms_changed();
        let frame = encode(&ChatFrame::Room { topic: "rooms".into(), room: info.clone() });
        let topic = match (private, creator) {
            (true, Some(user)) => user_topic(user.id),
            _ => Arc::from("rooms"),
        };
        self.hub.publish(Event::new(topic, 0, frame, None));
        Ok(info)
    }

    /// A member adds `username` to a private room.
    pub async fn invite(&self, room: &str, by: &User, username: &str) -> Result<(), ChatError> {
        let room = self.room_for(room, &Identity::User(by.clone()))?;
        if !room.private {
            return Err(ChatError::Forbidden("public rooms are open to everyone"));
        }
        let invitee = self
            .store
            .user_by_name(username.trim())
            .await?
            .ok_or_else(|| ChatError::UnknownUser(username.trim().to_owned()))?;
        self.store.add_member(room.id, invitee.id).await?;
        let mut members = self.directory.members.write().unwrap_or_else(PoisonError::into_inner);
        members.entry(room.id).or_default().insert(invitee.id);
        drop(members);
        self.rooms_changed();
        let frame = encode(&ChatFrame::Room { topic: "rooms".into(), room: room_info(&room) });
        self.hub.publish(Event::new(user_topic(invitee.id), 0, frame, None));
        Ok(())
    }

    /// The room's creator or an admin removes `username`; their open subscriptions end at once.
    pub async fn remove_member(&self, room: &str, by: &User, username: &str) -> Result<(), ChatError> {
        let room = self.room(room).filter(|r| r.private).ok_or_else(|| ChatError::UnknownRoom(room.to_owned()))?;
        let allowed = by.is_admin || room.created_by == Some(by.id);
        if !allowed {
            // Members who may not remove still may not learn more than members do.
            return Err(if self.is_member(room.id, by.id) {
                ChatError::Forbidden("only the room's creator or an admin removes members")
            } else {
                ChatError::UnknownRoom(room.name.clone())
            });
        }
        let member = self
            .store
            .user_by_name(username.trim())
            .await?
            .ok_or_else(|| ChatError::UnknownUser(username.trim().to_owned()))?;
        self.store.remove_member(room.id, member.id).await?;
        if let Some(members) = self.directory.members.write().unwrap_or_else(PoisonError::into_inner).get_mut(&room.id)
        {
            members.remove(&member.id);
        }
        self.rooms_changed();
        let frame = encode(&ChatFrame::RoomLeft { topic: "rooms".into(), room: room.name.clone() });
        let revoke = Some(Arc::from(chat_topic(&room.name)));
        self.hub.publish(Event::new(user_topic(member.id), 0, frame, revoke));
        for removed in self.removed.read().unwrap_or_else(PoisonError::into_inner).iter() {
            removed(&room, member.id);
        }
        Ok(())
    }

    /// The members of a private room, for its members and admins.
    pub async fn members(&self, room: &str, who: &User) -> Result<Vec<String>, ChatError> {
        let found = self.room(room).filter(|r| r.private).ok_or_else(|| ChatError::UnknownRoom(room.to_owned()))?;
        if !who.is_admin && !self.is_member(found.id, who.id) {
            return Err(ChatError::UnknownRoom(room.to_owned()));
        }
        Ok(self.store.member_names(found.id).await?)
    }

    /// Take one message from `who`'s allowance, or say they are over it.
    pub async fn check_rate(&self, who: &Identity) -> Result<(), ChatError> {
        if self.limiter.allow(&who.key()).await {
            Ok(())
        } else {
            Err(ChatError::RateLimited)
        }
    }

    /// The latest `limit` messages of a room, oldest first, and whether there are older ones.
    pub async fn latest(
        &self,
        room: &str,
        who: &Identity,
        limit: u32,
    ) -> Result<(Room, Vec<ChatMessage>, bool), ChatError> {
        let room = self.room_for(room, who)?;
        let (messages, more) = self.store.messages_before(&room.name, None, limit).await?;
        Ok((room, messages, more))
    }

    /// Store a message (a poll's, with `poll`), then publish it. Resolves once it is durable.
    pub async fn append(
        &self,
        room: &str,
        id: String,
        author: String,
        text: String,
        poll: Option<i64>,
    ) -> Result<Stored<ChatMessage>, ChatError> {
        self.room(room).ok_or_else(|| ChatError::UnknownRoom(room.to_owned()))?;
        let event = NewEvent { topic: Arc::from(chat_topic(room)), id, payload: payload(&author, &text, poll) };
        Ok(self.writer.append(event).await?)
    }

    /// Tell `removed` of every member removed from a private room from now on.
    pub fn on_member_removed(&self, removed: Removed) {
        self.removed.write().unwrap_or_else(PoisonError::into_inner).push(removed);
    }

    /// Tell `observer` of every message stored from now on.
    pub fn observe(&self, observer: Observer) {
        self.messages.observers.write().unwrap_or_else(PoisonError::into_inner).push(observer);
    }

    /// Stop taking messages, store every one already taken, and wait for the writer.
    pub async fn close(&self) {
        self.writer.close().await;
    }
}

/// The hub topic of activity notices for public rooms.
pub const ACTIVITY_TOPIC: &str = "activity";

pub fn room_info(room: &Room) -> RoomInfo {
    RoomInfo { name: room.name.clone(), epoch: room.epoch.clone(), private: room.private }
}

/// Settings of the chat service.
#[derive(Debug, Clone, Copy)]
pub struct ChatLimits {
    /// Messages per second each person may send, on average.
    pub message_rate: f64,
    /// Messages each person may send at once.
    pub message_burst: f64,
    /// How long someone stays listed as present after their last connection left.
    pub presence_grace: Duration,
    /// Under load, commits at least this far apart (see `batch::Pace`).
    pub commit_window: Duration,
}
