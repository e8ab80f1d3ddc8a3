//! Chat's side of the socket: joining a room (a durable topic, replayed by the core from the
//! room's log), `rooms` and `activity`; and its requests: `publish`, `history`, `typing`,
//! `read`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;

use super::protocol::{check_text, ChatFrame, ChatRequest, ChatTopic, CHAT_TOPIC_PREFIX, HISTORY_MAX, HISTORY_PAGE};
use super::server::Chat;
use super::store::{message, Room};
use crate::realtime::protocol::{ErrorCode, Request, ServerFrame};
use crate::realtime::server::channel::{Channel, Closed, Flow, Join};
use crate::realtime::server::durable::EventHistory;
use crate::realtime::server::encode;
use crate::realtime::server::gateway::Conn;
use crate::realtime::server::hub::Event;
use crate::store::events::Logged;
use crate::store::StoreError;

/// Typing notices per connection at most this often; extra ones are dropped.
const TYPING_EVERY: Duration = Duration::from_millis(1000);

pub struct ChatChannel {
    pub chat: Arc<Chat>,
}

/// When this connection last said it was typing.
#[derive(Default)]
struct LastTyping(Option<Instant>);

/// A room's message as the core replays it from the room's log.
fn replayed(topic: &str, event: Logged) -> Result<Bytes, StoreError> {
    Ok(encode(&ChatFrame::Message { topic: topic.to_owned(), message: message(event)? }))
}

/// The room a topic names (`room`, as its feature parsed it), if this connection may use it;
/// else an error frame sent and `None`. No room named: `unknown_topic`, saying what the topic
/// should look like (`spelling`, e.g. `map topic (location:<room>)`). A room that does not
/// exist, or is private to others: `unknown_room` (a private room is unknown to non-members).
/// Chat's topics and the map's share it.
pub async fn visible_room(
    chat: &Chat,
    conn: &mut Conn,
    id: &str,
    topic: &str,
    room: Option<&str>,
    spelling: &str,
) -> Result<Option<Room>, Closed> {
    let id = Some(id.to_owned());
    let Some(room) = room else {
        conn.error(id, ErrorCode::UnknownTopic, &format!("{topic:?} is not a {spelling}")).await?;
        return Ok(None);
    };
    match chat.room_for(room, conn.who()) {
        Ok(room) => Ok(Some(room)),
        Err(_) => {
            conn.error(id, ErrorCode::UnknownRoom, &format!("no room is named {room:?}")).await?;
            Ok(None)
        }
    }
}

impl ChatChannel {
    /// The room a `chat:<room>` topic names, if this connection may use it (see [`visible_room`]).
    async fn room(&self, conn: &mut Conn, id: &str, topic: &str) -> Result<Option<Room>, Closed> {
        let room = match ChatTopic::parse(topic) {
            Some(ChatTopic::Room(room)) => Some(room),
            _ => None,
        };
        visible_room(&self.chat, conn, id, topic, room.as_deref(), "chat topic (chat:<room>)").await
    }

    /// Start a publish; its ack or error is written when the store answers.
    fn publish(&self, conn: &mut Conn, room: String, id: String, topic: String, text: String) {
        let chat = self.chat.clone();
        let author = conn.who().display_name();
        conn.defer(async move {
            let frame = match chat.append(&room, id.clone(), author, text, None).await {
                Ok(stored) => ServerFrame::Ack { id, topic, offset: stored.offset, duplicate: stored.duplicate },
                Err(error) => {
                    tracing::warn!(%error, "publish failed");
                    let message = "the message could not be stored; retry".into();
                    ServerFrame::Error { id: Some(id), code: ErrorCode::Internal, message }
                }
            };
            Some(serde_json::to_string(&frame).unwrap_or_default())
        });
    }
}

#[async_trait]
impl Channel for ChatChannel {
    fn topics(&self) -> &'static [&'static str] {
        &[CHAT_TOPIC_PREFIX, "rooms", "activity"]
    }

    fn spelling(&self) -> &'static [&'static str] {
        &["chat:<room>", "rooms", "activity"]
    }

    fn requests(&self) -> &'static [&'static str] {
        &ChatRequest::TYPES
    }

    async fn join(&self, conn: &mut Conn, join: Join) -> Flow {
        let Join { id, topic, resume, present } = join;
        match ChatTopic::parse(&topic) {
            Some(ChatTopic::Rooms | ChatTopic::Activity) => {
                conn.subscribe(&topic);
                conn.send(&ServerFrame::Subscribed { id, topic, epoch: String::new(), head: 0 }).await
            }
            Some(ChatTopic::Room(_)) => {
                let Some(room) = self.room(conn, &id, &topic).await? else { return Ok(()) };
                let store = self.chat.store().clone();
                let log = EventHistory { store: &store, topic: &topic, frame: replayed };
                let joined = conn.join_durable(id, topic.clone(), resume, room.epoch, &log).await?;
                let Some(name) = joined else { return Ok(()) };
                if present {
                    conn.be_present(&name, &self.chat.presence);
                }
                let presence = self.chat.presence.frame(&name).await;
                conn.send(&presence).await
            }
            None => {
                let message = format!("{topic:?} is not a chat topic (chat:<room>, rooms, activity)");
                conn.error(Some(id), ErrorCode::UnknownTopic, &message).await
            }
        }
    }

    async fn request(&self, conn: &mut Conn, request: Request) -> Flow {
        let request = match request.read::<ChatRequest>() {
            Ok(request) => request,
            Err(rejection) => return conn.reject(rejection).await,
        };
        match request {
            ChatRequest::Publish { id, topic, text } => {
                let Some(room) = self.room(conn, &id, &topic).await? else { return Ok(()) };
                if let Err((code, message)) = check_text(&text) {
                    return conn.error(Some(id), code, &message).await;
                }
                if let Err(error) = self.chat.check_rate(conn.who()).await {
                    return conn.error(Some(id), ErrorCode::RateLimited, &error.to_string()).await;
                }
                self.publish(conn, room.name, id, topic, text);
                Ok(())
            }
            ChatRequest::History { id, topic, before, limit } => {
                let Some(room) = self.room(conn, &id, &topic).await? else { return Ok(()) };
                let limit = limit.unwrap_or(HISTORY_PAGE).clamp(1, HISTORY_MAX);
                match self.chat.store().messages_before(&room.name, before, limit).await {
                    Ok((messages, more)) => {
                        conn.send(&ChatFrame::History { id, topic, epoch: room.epoch, messages, more }).await
                    }
                    Err(error) => conn.internal_error(Some(id), &error).await,
                }
            }
            ChatRequest::Typing { id, topic } => {
                let Some(name) = conn.subscribed(&topic) else {
                    let message = "subscribe to a room before typing in it";
                    return conn.error(Some(id), ErrorCode::NotSubscribed, message).await;
                };
                let now = Instant::now();
                let last = conn.local::<LastTyping>();
                if last.0.is_some_and(|at| now.duration_since(at) < TYPING_EVERY) {
                    return Ok(());
                }
                last.0 = Some(now);
                let frame = encode(&ChatFrame::Typing { topic, user: conn.who().display_name() });
                conn.hub().publish(Event::new(name, 0, frame, None));
                Ok(())
            }
            ChatRequest::Read { id, topic, offset } => {
                let Some(room) = self.room(conn, &id, &topic).await? else { return Ok(()) };
                if let Some(user) = conn.who().user() {
                    if let Err(error) = self.chat.store().mark_read(user.id, room.id, offset).await {
                        return conn.internal_error(Some(id), &error).await;
                    }
                }
                Ok(())
            }
        }
    }
}
