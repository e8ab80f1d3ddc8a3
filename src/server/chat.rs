//! Chat rooms: the room directory, history reads, and the single writer that makes
//! each message durable before it is fanned out.
//!
//! All writes go through one task. It takes whatever requests are queued (up to a
//! batch), stores them in one transaction, and only after the commit publishes them
//! to the hub, in offset order, and answers each publisher. One writer means offsets
//! are handed out in the order they are broadcast, so a client that drops everything
//! at or below its last offset never drops something it has not seen.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::auth::Identity;
use super::hub::{Burst, Event, Hub};
use super::limit::RateLimiter;
use super::presence::Presence;
use super::seed;
use super::store::{Appended, MessageWriter, NewMessage, Room, Store, StoreError, User};
use crate::protocol::{chat_topic, valid_room_name, ChatMessage, RoomInfo, ServerFrame, LOBBY};

/// The most messages stored in one transaction.
const MAX_BATCH: usize = 256;
/// Requests waiting for the writer before publishers wait for room.
const WRITER_QUEUE: usize = 4096;

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
    #[error("storing the message failed: {0}")]
    WriteFailed(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct AppendRequest {
    room: Arc<str>,
    /// Where the message's activity notice goes: `activity` for a public room, each
    /// member's own topic for a private one.
    activity: Vec<Arc<str>>,
    message: NewMessage,
    reply: oneshot::Sender<Result<Appended, ChatError>>,
}

pub struct Chat {
    store: Store,
    hub: Arc<Hub>,
    rooms: RwLock<HashMap<String, Room>>,
    /// Members of private rooms, by room id.
    members: RwLock<HashMap<i64, HashSet<i64>>>,
    limiter: RateLimiter,
    pub presence: Arc<Presence>,
    writer: mpsc::Sender<AppendRequest>,
    writer_task: Mutex<Option<JoinHandle<()>>>,
    stop_writer: tokio_util::sync::CancellationToken,
}

/// Encode a frame once; the bytes are shared by every recipient.
pub fn encode(frame: &ServerFrame) -> Bytes {
    // Serializing these types cannot fail: they hold only strings, numbers and lists.
    Bytes::from(serde_json::to_vec(frame).unwrap_or_default())
}

impl Chat {
    /// Load the rooms and start the writer.
    pub async fn start(store: Store, hub: Arc<Hub>, limits: ChatLimits) -> Result<Arc<Chat>, ChatError> {
        let rooms = store.rooms().await?.into_iter().map(|r| (r.name.clone(), r)).collect();
        let mut members: HashMap<i64, HashSet<i64>> = HashMap::new();
        for (room, user) in store.memberships().await? {
            members.entry(room).or_default().insert(user);
        }
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let stop = tokio_util::sync::CancellationToken::new();
        let writer = store.message_writer().await?;
        let task = tokio::spawn(write_loop(writer, hub.clone(), rx, stop.clone(), limits.commit_window));
        Ok(Arc::new(Chat {
            store,
            hub: hub.clone(),
            rooms: RwLock::new(rooms),
            members: RwLock::new(members),
            limiter: RateLimiter::new(limits.message_rate, limits.message_burst),
            presence: Presence::new(hub.clone(), limits.presence_grace),
            writer: tx,
            writer_task: Mutex::new(Some(task)),
            stop_writer: stop,
        }))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn room(&self, name: &str) -> Option<Room> {
        self.rooms.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    fn is_member(&self, room_id: i64, user_id: i64) -> bool {
        self.members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&room_id)
            .is_some_and(|members| members.contains(&user_id))
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
            self.members.write().unwrap_or_else(PoisonError::into_inner).entry(room.id).or_default().insert(user.id);
        }
        self.rooms.write().unwrap_or_else(PoisonError::into_inner).insert(room.name.clone(), room);
        let frame = encode(&ServerFrame::Room { topic: "rooms".into(), room: info.clone() });
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
        self.members.write().unwrap_or_else(PoisonError::into_inner).entry(room.id).or_default().insert(invitee.id);
        let frame = encode(&ServerFrame::Room { topic: "rooms".into(), room: room_info(&room) });
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
        if let Some(members) = self.members.write().unwrap_or_else(PoisonError::into_inner).get_mut(&room.id) {
            members.remove(&member.id);
        }
        let frame = encode(&ServerFrame::RoomLeft { topic: "rooms".into(), room: room.name.clone() });
        let revoke = Some(Arc::from(chat_topic(&room.name)));
        self.hub.publish(Event::new(user_topic(member.id), 0, frame, revoke));
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
    pub fn check_rate(&self, who: &Identity) -> Result<(), ChatError> {
        if self.limiter.allow(&who.key()) {
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
        let (messages, more) = self.store.messages_before(room.id, None, limit).await?;
        Ok((room, messages, more))
    }

    /// Store a message, then publish it. Resolves once it is durable.
    pub async fn append(&self, room: &str, id: String, author: String, text: String) -> Result<Appended, ChatError> {
        let found = self.room(room).ok_or_else(|| ChatError::UnknownRoom(room.to_owned()))?;
        let activity = if found.private {
            let members = self.members.read().unwrap_or_else(PoisonError::into_inner);
            members.get(&found.id).map(|m| m.iter().map(|&u| user_topic(u)).collect()).unwrap_or_default()
        } else {
            vec![Arc::from(ACTIVITY_TOPIC)]
        };
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest {
            room: Arc::from(room),
            activity,
            message: NewMessage { room_id: found.id, client_id: id, author, text },
            reply,
        };
        self.writer.send(request).await.map_err(|_| ChatError::ShuttingDown)?;
        answer.await.map_err(|_| ChatError::ShuttingDown)?
    }

    /// Stop taking messages, store every one already taken, and wait for the writer.
    pub async fn close(&self) {
        self.stop_writer.cancel();
        let task = self.writer_task.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

async fn write_loop(
    mut writer: MessageWriter,
    hub: Arc<Hub>,
    mut rx: mpsc::Receiver<AppendRequest>,
    stop: tokio_util::sync::CancellationToken,
    commit_window: Duration,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut pace = super::batch::Pace::new(commit_window);
    while super::batch::next(&mut rx, &stop, MAX_BATCH, &mut pace, &mut batch).await {
        write_batch(&mut writer, &hub, &mut batch).await;
    }
}

async fn write_batch(writer: &mut MessageWriter, hub: &Hub, batch: &mut Vec<AppendRequest>) {
    let messages: Vec<NewMessage> = batch.iter().map(|r| r.message.clone()).collect();
    match writer.append_batch(&messages).await {
        Ok(stored) => {
            // Several messages: each connection gets them in one write (see `Burst`), before
            // any publisher hears back. One: written at once, connection by connection, which
            // spares a second pass over every subscriber (measured: docs/benchmarks.md).
            let mut burst = Burst::default();
            let several = stored.len() > 1;
            for (request, appended) in batch.iter().zip(&stored) {
                if !appended.duplicate {
                    let burst = several.then_some(&mut burst);
                    publish_message(hub, &request.room, &request.activity, &appended.message, burst);
                }
            }
            burst.finish();
            for (request, appended) in batch.drain(..).zip(stored) {
                let _ = request.reply.send(Ok(appended));
            }
        }
        Err(error) => {
            tracing::error!(%error, "storing {} messages failed", batch.len());
            let reason = error.to_string();
            for request in batch.drain(..) {
                let _ = request.reply.send(Err(ChatError::WriteFailed(reason.clone())));
            }
        }
    }
}

/// Fan a stored message out to the room's web subscribers and, for the lobby, to the
/// tutorial's `/ws/chat/` clients. Each format is encoded once.
fn publish_message(hub: &Hub, room: &str, activity: &[Arc<str>], message: &ChatMessage, mut burst: Option<&mut Burst>) {
    let topic: Arc<str> = Arc::from(chat_topic(room));
    if hub.subscriber_count(&topic) > 0 {
        let frame = encode(&ServerFrame::Message { topic: topic.to_string(), message: message.clone() });
        hub.publish_in(Event::new(topic, message.offset, frame, None), burst.as_deref_mut());
    }
    if activity.iter().any(|topic| hub.subscriber_count(topic) > 0) {
        let frame = encode(&ServerFrame::Activity {
            topic: ACTIVITY_TOPIC.into(),
            room: room.to_owned(),
            offset: message.offset,
            author: message.author.clone(),
            text: message.text.chars().take(200).collect(),
        });
        for topic in activity {
            hub.publish_in(Event::new(topic.clone(), 0, frame.clone(), None), burst.as_deref_mut());
        }
    }
    if room == LOBBY && hub.subscriber_count(seed::CHAT_TOPIC) > 0 {
        let frame = seed::encode_chat(&message.text);
        hub.publish_in(Event::new(Arc::from(seed::CHAT_TOPIC), 0, frame, None), burst);
    }
}

/// The hub topic of activity notices for public rooms.
pub const ACTIVITY_TOPIC: &str = "activity";

/// The hub topic of one user's own events (rooms they gained or lost).
pub fn user_topic(user_id: i64) -> Arc<str> {
    Arc::from(format!("user:{user_id}"))
}

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
