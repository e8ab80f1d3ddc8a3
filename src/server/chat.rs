//! Chat rooms: the room directory, history reads, and the single writer that makes
//! each message durable before it is fanned out.
//!
//! All writes go through one task. It takes whatever requests are queued (up to a
//! batch), stores them in one transaction, and only after the commit publishes them
//! to the hub, in offset order, and answers each publisher. One writer means offsets
//! are handed out in the order they are broadcast, so a client that drops everything
//! at or below its last offset never drops something it has not seen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::hub::{Event, Hub};
use super::seed;
use super::store::{Appended, NewMessage, Room, Store, StoreError};
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
    #[error("storing the message failed: {0}")]
    WriteFailed(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct AppendRequest {
    room: Arc<str>,
    message: NewMessage,
    reply: oneshot::Sender<Result<Appended, ChatError>>,
}

pub struct Chat {
    store: Store,
    hub: Arc<Hub>,
    rooms: RwLock<HashMap<String, Room>>,
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
    pub async fn start(store: Store, hub: Arc<Hub>) -> Result<Arc<Chat>, ChatError> {
        let rooms = store.rooms().await?.into_iter().map(|r| (r.name.clone(), r)).collect();
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(write_loop(store.clone(), hub.clone(), rx, stop.clone()));
        Ok(Arc::new(Chat {
            store,
            hub,
            rooms: RwLock::new(rooms),
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

    pub fn rooms(&self) -> Vec<RoomInfo> {
        let mut rooms: Vec<RoomInfo> = self
            .rooms
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|r| RoomInfo { name: r.name.clone(), epoch: r.epoch.clone() })
            .collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        rooms
    }

    /// Create a room and tell everyone subscribed to `rooms`.
    pub async fn create_room(&self, name: &str) -> Result<RoomInfo, ChatError> {
        if !valid_room_name(name) {
            return Err(ChatError::BadRoomName);
        }
        let room = self.store.create_room(name).await?;
        let info = RoomInfo { name: room.name.clone(), epoch: room.epoch.clone() };
        self.rooms.write().unwrap_or_else(PoisonError::into_inner).insert(room.name.clone(), room);
        let frame = encode(&ServerFrame::Room { topic: "rooms".into(), room: info.clone() });
        self.hub.publish(Event { topic: Arc::from("rooms"), offset: 0, frame });
        Ok(info)
    }

    /// The latest `limit` messages of a room, oldest first, and whether there are older ones.
    pub async fn latest(&self, room: &str, limit: u32) -> Result<(Room, Vec<ChatMessage>, bool), ChatError> {
        let room = self.room(room).ok_or_else(|| ChatError::UnknownRoom(room.to_owned()))?;
        let (messages, more) = self.store.messages_before(room.id, None, limit).await?;
        Ok((room, messages, more))
    }

    /// Store a message, then publish it. Resolves once it is durable.
    pub async fn append(&self, room: &str, id: String, author: String, text: String) -> Result<Appended, ChatError> {
        let found = self.room(room).ok_or_else(|| ChatError::UnknownRoom(room.to_owned()))?;
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest {
            room: Arc::from(room),
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
    store: Store,
    hub: Arc<Hub>,
    mut rx: mpsc::Receiver<AppendRequest>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let first = tokio::select! {
            request = rx.recv() => request,
            _ = stop.cancelled() => {
                // No new requests; the ones already queued were accepted and are stored below.
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        write_batch(&store, &hub, &mut batch).await;
    }
}

async fn write_batch(store: &Store, hub: &Hub, batch: &mut Vec<AppendRequest>) {
    let messages: Vec<NewMessage> = batch.iter().map(|r| r.message.clone()).collect();
    match store.append_batch(&messages).await {
        Ok(stored) => {
            for (request, appended) in batch.drain(..).zip(stored) {
                if !appended.duplicate {
                    publish_message(hub, &request.room, &appended.message);
                }
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
fn publish_message(hub: &Hub, room: &str, message: &ChatMessage) {
    let topic: Arc<str> = Arc::from(chat_topic(room));
    if hub.subscriber_count(&topic) > 0 {
        let frame = encode(&ServerFrame::Message { topic: topic.to_string(), message: message.clone() });
        hub.publish(Event { topic, offset: message.offset, frame });
    }
    if room == LOBBY && hub.subscriber_count(seed::CHAT_TOPIC) > 0 {
        hub.publish(Event { topic: Arc::from(seed::CHAT_TOPIC), offset: 0, frame: seed::encode_chat(&message.text) });
    }
}
