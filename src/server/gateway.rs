//! The gateway: one task per WebSocket, turning frames into hub and chat calls and
//! hub events back into frames.
//!
//! The task owns its socket and selects over: the server shutting down, the hub
//! kicking it (its queue filled up), replies to its publishes becoming durable,
//! events queued for it, frames from the client, and the heartbeat. Queued events
//! are written in batches with a single flush. Every write has a deadline, so a peer
//! that stops reading cannot hold the task forever.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::auth::Identity;
use super::chat::{encode, user_topic, Chat};
use super::hub::{Event, Hub, Peer};
use super::location::{self, Locations};
use super::net::Socket;
use super::seed;
use super::sensors::{self, Origin, SeedTarget, SensorError, Sensors};
use super::store::now_ms;
use super::AppState;
use crate::protocol::{
    close, location_topic, sensor_topic, ClientFrame, ErrorCode, NewReading, Reading, Resume, ServerFrame, Topic,
    HISTORY_MAX, HISTORY_PAGE, LOBBY, MAX_ID_BYTES, MAX_MESSAGE_CHARS,
};

/// Events written per flush at most.
const WRITE_BATCH: usize = 64;
/// Publishes awaiting durability per connection; past this the connection stops reading.
const MAX_PENDING: usize = 64;
/// How long one write may take before the peer is taken for dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages replayed per store read on resume.
const REPLAY_PAGE: u32 = 500;

/// Which protocol a socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The app's own protocol on `/ws`.
    Web,
    /// The tutorial's `/ws/chat/`.
    SeedChat,
    /// The tutorial's `/ws/location/`.
    SeedLocation,
    /// The tutorial's `/ws/sensor_data/`.
    SeedSensor,
}

/// A frame rejected before it reached any handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub id: Option<String>,
    pub code: ErrorCode,
    pub message: String,
}

impl Rejection {
    fn new(id: Option<String>, code: ErrorCode, message: impl Into<String>) -> Rejection {
        Rejection { id, code, message: message.into() }
    }
}

/// The request id of a frame, if it has a usable one.
fn request_id(value: &serde_json::Value) -> Option<String> {
    value.get("id").and_then(serde_json::Value::as_str).filter(|id| id.len() <= MAX_ID_BYTES).map(str::to_owned)
}

/// Decode one text frame of the web protocol, telling apart every way it can be wrong.
pub fn decode(text: &str) -> Result<ClientFrame, Rejection> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Rejection::new(None, ErrorCode::Malformed, format!("the frame is not JSON: {e}")))?;
    let id = request_id(&value);
    let Some(object) = value.as_object() else {
        return Err(Rejection::new(None, ErrorCode::InvalidField, "a frame is a JSON object"));
    };
    let Some(kind) = object.get("type").and_then(serde_json::Value::as_str) else {
        return Err(Rejection::new(id, ErrorCode::InvalidField, "missing string field `type`"));
    };
    if !ClientFrame::TYPES.contains(&kind) {
        return Err(Rejection::new(id, ErrorCode::UnknownType, format!("unknown frame type {kind:?}")));
    }
    match object.get("id") {
        Some(serde_json::Value::String(s)) if s.is_empty() || s.len() > MAX_ID_BYTES => {
            return Err(Rejection::new(None, ErrorCode::InvalidField, "`id` must be 1 to 64 bytes"));
        }
        _ => {}
    }
    if kind == "reading" {
        // Checked here, not by serde, so that the error names the bad reading.
        if let Some(serde_json::Value::Array(items)) = object.get("readings") {
            sensors::parse_list(items).map_err(|bad| Rejection::new(id.clone(), bad.code, bad.message))?;
        }
    }
    serde_json::from_value(value).map_err(|e| Rejection::new(id, ErrorCode::InvalidField, e.to_string()))
}

/// Check a chat message's text: not blank, not too long.
pub fn check_text(text: &str) -> Result<(), (ErrorCode, String)> {
    if text.trim().is_empty() {
        return Err((ErrorCode::EmptyMessage, "the message is empty".into()));
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err((ErrorCode::MessageTooLong, format!("a message has at most {MAX_MESSAGE_CHARS} characters")));
    }
    Ok(())
}

type Reply = Pin<Box<dyn Future<Output = Option<String>> + Send>>;

/// Why a connection ended, for the log.
#[derive(Debug)]
enum End {
    ClientClosed,
    ServerShutdown,
    SlowConsumer,
    IdleTimeout,
    WriteFailed,
    TooBig,
}

/// Typing notices per connection at most this often; extra ones are dropped.
const TYPING_EVERY: Duration = Duration::from_millis(1000);

struct Connection {
    socket: WebSocket,
    dialect: Dialect,
    who: Identity,
    /// Chat topics this connection counts as present in.
    present_in: Vec<Arc<str>>,
    /// Location topics this connection shares a position in.
    sharing_in: Vec<Arc<str>>,
    locations: Arc<Locations>,
    last_typing: Option<Instant>,
    peer: Arc<Peer>,
    events: mpsc::Receiver<Arc<Event>>,
    /// Topics subscribed to, with the last offset delivered in each durable one.
    subscriptions: HashMap<Arc<str>, u64>,
    pending: FuturesUnordered<Reply>,
    /// Events being written, kept to reuse its allocation.
    batch: Vec<Arc<Event>>,
    /// The socket under the WebSocket, which publishers write events into themselves while
    /// this task is idle (see `net`).
    direct: Socket,
    hub: Arc<Hub>,
    chat: Arc<Chat>,
    sensors: Arc<Sensors>,
    guest_access: bool,
    max_frame_bytes: usize,
}

/// Serve one upgraded socket until it closes.
pub async fn run(socket: WebSocket, state: AppState, dialect: Dialect, who: Identity, direct: Socket) {
    let (peer, events) = state.hub.connect(state.config.queue_frames);
    // Held until the welcome and the first subscriptions are written.
    direct.attach(state.config.queue_frames);
    peer.set_direct(direct.direct());
    let mut conn = Connection {
        socket,
        dialect,
        who,
        present_in: Vec::new(),
        sharing_in: Vec::new(),
        locations: state.locations.clone(),
        last_typing: None,
        peer: peer.clone(),
        events,
        subscriptions: HashMap::new(),
        pending: FuturesUnordered::new(),
        batch: Vec::new(),
        direct,
        hub: state.hub.clone(),
        chat: state.chat.clone(),
        sensors: state.sensors.clone(),
        guest_access: state.config.guest_access,
        max_frame_bytes: state.config.max_frame_bytes,
    };
    let end = conn.serve(&state).await;
    tracing::debug!(peer = peer.id(), ?end, "connection ended");
    state.hub.disconnect(&peer);
    conn.leave_all();
}

impl Connection {
    async fn serve(&mut self, state: &AppState) -> End {
        let heartbeat_every = state.config.heartbeat();
        let idle_timeout = state.config.idle_timeout();
        match self.dialect {
            Dialect::Web => {
                if let Some(user) = self.who.user() {
                    let topic = self.hub.subscribe(&user_topic(user.id), &self.peer);
                    self.subscriptions.insert(topic, 0);
                }
                let welcome = ServerFrame::Welcome {
                    name: self.who.display_name(),
                    heartbeat_ms: heartbeat_every.as_millis() as u64,
                    max_frame_bytes: self.max_frame_bytes,
                };
                if self.send_frame(&welcome).await.is_err() {
                    return End::WriteFailed;
                }
            }
            Dialect::SeedChat => {
                let topic = self.hub.subscribe(seed::CHAT_TOPIC, &self.peer);
                self.subscriptions.insert(topic, 0);
            }
            Dialect::SeedLocation => {
                let topic = self.hub.subscribe(location::SEED_TOPIC, &self.peer);
                self.subscriptions.insert(topic, 0);
            }
            Dialect::SeedSensor => {
                let topic = self.hub.subscribe(sensors::SEED_TOPIC, &self.peer);
                self.subscriptions.insert(topic, 0);
            }
        }
        if self.release().await.is_err() {
            return End::WriteFailed;
        }
        let mut heartbeat = tokio::time::interval_at(Instant::now() + heartbeat_every, heartbeat_every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let shutdown = state.shutdown.clone();
        let peer = self.peer.clone();
        // Made once, not at every turn of the loop: each of them registers a waiter under a lock.
        let cancelled = shutdown.cancelled();
        let kicked = peer.kicked();
        tokio::pin!(cancelled, kicked);
        let direct = self.direct.clone();

        let end = loop {
            tokio::select! {
                biased;
                _ = &mut cancelled => break End::ServerShutdown,
                _ = &mut kicked => break End::SlowConsumer,
                Some(reply) = self.pending.next(), if !self.pending.is_empty() => {
                    if let Some(text) = reply {
                        if self.send_text(text).await.is_err() {
                            break End::WriteFailed;
                        }
                    }
                }
                // What publishers wrote that the socket did not take at once.
                drained = std::future::poll_fn(|cx| direct.poll_drain(cx)) => {
                    if drained.is_err() {
                        break End::WriteFailed;
                    }
                }
                event = self.events.recv() => {
                    let Some(event) = event else { break End::ServerShutdown };
                    if let Err(end) = self.forward(event).await {
                        break end;
                    }
                    if let Err(end) = self.release().await {
                        break end;
                    }
                }
                message = self.socket.recv(), if self.pending.len() < MAX_PENDING => {
                    last_heard = Instant::now();
                    match message {
                        None => break End::ClientClosed,
                        Some(Err(error)) => {
                            tracing::debug!(%error, "websocket read failed");
                            break if is_capacity_error(&error) { End::TooBig } else { End::ClientClosed };
                        }
                        // Boxed: handling a request needs a large future, and held inline it would
                        // be reserved in every connection's task, idle ones included.
                        Some(Ok(message)) => {
                            // Events wait for the answer: a client sees `subscribed` before the
                            // topic's events, and a replay before what followed it.
                            direct.hold();
                            match Box::pin(self.on_message(message)).await {
                                Ok(true) => {}
                                Ok(false) => break End::ClientClosed,
                                Err(()) => break End::WriteFailed,
                            }
                            if let Err(end) = self.release().await {
                                break end;
                            }
                        }
                    }
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > idle_timeout {
                        break End::IdleTimeout;
                    }
                    if self.write(Message::Ping(Default::default())).await.is_err() {
                        break End::WriteFailed;
                    }
                }
            }
        };
        let (code, reason) = match end {
            End::ServerShutdown => (close::GOING_AWAY, "server shutting down"),
            End::SlowConsumer => (close::SLOW_CONSUMER, "slow consumer: reconnect and resume"),
            End::IdleTimeout => (close::IDLE_TIMEOUT, "nothing heard within the idle timeout"),
            End::TooBig => (close::TOO_BIG, "frame over the hard size limit"),
            End::ClientClosed | End::WriteFailed => return end,
        };
        // Replies already durable still go out before the close frame.
        if matches!(end, End::ServerShutdown) {
            while let Some(reply) = self.pending.next().await {
                if let Some(text) = reply {
                    let _ = self.send_text(text).await;
                }
            }
        }
        // Nothing may follow the close frame (RFC 6455, 5.5.1): publishers stop writing into
        // the socket themselves, and what they queue from now on is never read. Frames that
        // already wait go out before the close frame.
        self.direct.hold();
        let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
        let _ = tokio::time::timeout(Duration::from_secs(1), self.socket.send(Message::Close(Some(frame)))).await;
        end
    }

    /// Write one message with a deadline.
    async fn write(&mut self, message: Message) -> Result<(), ()> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    async fn send_text(&mut self, text: String) -> Result<(), ()> {
        self.write(Message::Text(text.into())).await
    }

    async fn send_frame(&mut self, frame: &ServerFrame) -> Result<(), ()> {
        self.send_text(serde_json::to_string(frame).unwrap_or_default()).await
    }

    async fn send_error(&mut self, id: Option<String>, code: ErrorCode, message: &str) -> Result<(), ()> {
        match self.dialect {
            Dialect::Web => self.send_frame(&ServerFrame::Error { id, code, message: message.to_owned() }).await,
            Dialect::SeedChat | Dialect::SeedLocation | Dialect::SeedSensor => {
                self.send_text(seed::encode_error(code, message)).await
            }
        }
    }

    /// Whether this connection still wants `event`; moves its topic's offset on. The topic the
    /// event revokes is left after it: the event itself is the last one its receiver gets of
    /// that topic (a `room_left` on the user's topic, a deleted sensor's `sensor_deleted`).
    fn wants(&mut self, event: &Event) -> bool {
        let wanted = match self.subscriptions.get_mut(&*event.topic) {
            None => false,
            Some(_) if event.offset == 0 => true,
            Some(last) if event.offset <= *last => false,
            Some(last) => {
                *last = event.offset;
                true
            }
        };
        if let Some(revoked) = &event.revoke {
            if self.subscriptions.remove(&**revoked).is_some() {
                self.hub.unsubscribe(revoked, &self.peer);
                self.leave(revoked);
            }
        }
        wanted
    }

    /// Write what publishers queued for this task, then let them write to the socket
    /// themselves again.
    async fn release(&mut self) -> Result<(), End> {
        let direct = self.direct.clone();
        loop {
            let events = &self.events;
            if direct.release(|| events.is_empty()) {
                return Ok(());
            }
            if let Ok(event) = self.events.try_recv() {
                self.forward(event).await?;
            }
        }
    }

    /// Write `first` and whatever else is queued, with one flush.
    async fn forward(&mut self, first: Arc<Event>) -> Result<(), End> {
        let mut batch = std::mem::take(&mut self.batch);
        batch.push(first);
        while batch.len() < WRITE_BATCH {
            match self.events.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        batch.retain(|event| self.wants(event));
        let result = if batch.is_empty() { Ok(()) } else { self.write_events(&batch).await };
        batch.clear();
        self.batch = batch;
        result
    }

    /// Write events as publishers would have: their frames, built once for every recipient,
    /// into the socket's queue (this task's own WebSocket writes are all flushed by now).
    async fn write_events(&mut self, batch: &[Arc<Event>]) -> Result<(), End> {
        let send = self.direct.write_frames(batch.iter().map(|event| &event.wire));
        tokio::pin!(send);
        // Usually the socket takes it all at once: then no timer is armed.
        if let Some(result) = (&mut send).now_or_never() {
            return result.map_err(|_| End::WriteFailed);
        }
        // A peer that stopped reading blocks this write; once the hub kicks it there is
        // no point waiting for the write to finish.
        tokio::select! {
            result = tokio::time::timeout(WRITE_TIMEOUT, send) => match result {
                Ok(Ok(())) => Ok(()),
                _ => Err(End::WriteFailed),
            },
            _ = self.peer.kicked() => Err(End::SlowConsumer),
        }
    }

    /// Handle one frame from the client. `Ok(false)`: the client closed.
    async fn on_message(&mut self, message: Message) -> Result<bool, ()> {
        match message {
            Message::Text(text) => {
                if text.len() > self.max_frame_bytes {
                    let id = serde_json::from_str::<serde_json::Value>(&text).ok().as_ref().and_then(request_id);
                    let limit = self.max_frame_bytes;
                    self.send_error(id, ErrorCode::TooLarge, &format!("frames are limited to {limit} bytes")).await?;
                    return Ok(true);
                }
                match self.dialect {
                    Dialect::Web => self.on_web_frame(&text).await?,
                    Dialect::SeedChat => self.on_seed_chat(&text).await?,
                    Dialect::SeedLocation => self.on_seed_location(&text).await?,
                    Dialect::SeedSensor => self.on_seed_sensor(&text).await?,
                }
                Ok(true)
            }
            Message::Binary(_) => {
                self.send_error(None, ErrorCode::BinaryFrame, "only text frames are accepted").await?;
                Ok(true)
            }
            Message::Ping(_) | Message::Pong(_) => Ok(true),
            Message::Close(_) => Ok(false),
        }
    }

    async fn on_web_frame(&mut self, text: &str) -> Result<(), ()> {
        let frame = match decode(text) {
            Ok(frame) => frame,
            Err(r) => return self.send_error(r.id, r.code, &r.message).await,
        };
        match frame {
            ClientFrame::Ping { id } => self.send_frame(&ServerFrame::Pong { id }).await,
            ClientFrame::Subscribe { id, topic, resume, present } => self.subscribe(id, topic, resume, present).await,
            ClientFrame::Unsubscribe { id, topic } => {
                if Topic::parse(&topic).is_some() {
                    self.hub.unsubscribe(&topic, &self.peer);
                    self.subscriptions.remove(topic.as_str());
                    self.leave(&topic);
                }
                self.send_frame(&ServerFrame::Unsubscribed { id, topic }).await
            }
            ClientFrame::Locate { id, topic, latitude, longitude, trail } => {
                let Some(room) = self.map_room(&id, &topic).await? else { return Ok(()) };
                match location::validate(latitude, longitude) {
                    Ok(at) => {
                        self.share(&location_topic(&room.name), at, trail);
                        Ok(())
                    }
                    Err((code, message)) => self.send_error(Some(id), code, &message).await,
                }
            }
            ClientFrame::StopSharing { id, topic } => {
                let Some(room) = self.map_room(&id, &topic).await? else { return Ok(()) };
                self.stop_sharing(&location_topic(&room.name));
                Ok(())
            }
            ClientFrame::Typing { id, topic } => {
                let Some(name) = self.subscriptions.get_key_value(topic.as_str()).map(|(k, _)| k.clone()) else {
                    let message = "subscribe to a room before typing in it";
                    return self.send_error(Some(id), ErrorCode::NotSubscribed, message).await;
                };
                let now = Instant::now();
                if self.last_typing.is_some_and(|at| now.duration_since(at) < TYPING_EVERY) {
                    return Ok(());
                }
                self.last_typing = Some(now);
                let frame = encode(&ServerFrame::Typing { topic, user: self.who.display_name() });
                self.hub.publish(Event::new(name, 0, frame, None));
                Ok(())
            }
            ClientFrame::Read { id, topic, offset } => {
                let Some(room) = self.chat_room(&id, &topic).await? else { return Ok(()) };
                if let Some(user) = self.who.user() {
                    if let Err(error) = self.chat.store().mark_read(user.id, room.id, offset).await {
                        return self.internal_error(id, &error).await;
                    }
                }
                Ok(())
            }
            ClientFrame::History { id, topic, before, limit } => {
                let Some(room) = self.chat_room(&id, &topic).await? else { return Ok(()) };
                let limit = limit.unwrap_or(HISTORY_PAGE).clamp(1, HISTORY_MAX);
                match self.chat.store().messages_before(room.id, before, limit).await {
                    Ok((messages, more)) => {
                        let frame = ServerFrame::History { id, topic, epoch: room.epoch, messages, more };
                        self.send_frame(&frame).await
                    }
                    Err(error) => self.internal_error(id, &error).await,
                }
            }
            ClientFrame::Reading { id, sensor, readings } => self.post_readings(id, sensor, readings).await,
            ClientFrame::Publish { id, topic, text } => {
                let Some(room) = self.chat_room(&id, &topic).await? else { return Ok(()) };
                if let Err((code, message)) = check_text(&text) {
                    return self.send_error(Some(id), code, &message).await;
                }
                if let Err(error) = self.chat.check_rate(&self.who) {
                    return self.send_error(Some(id), ErrorCode::RateLimited, &error.to_string()).await;
                }
                self.queue_publish(room.name, id, Some(topic), text);
                Ok(())
            }
        }
    }

    /// Start a publish; its ack or error is written when the store answers.
    fn queue_publish(&mut self, room: String, id: String, topic: Option<String>, text: String) {
        let chat = self.chat.clone();
        let author = self.who.display_name();
        let dialect = self.dialect;
        self.pending.push(Box::pin(async move {
            let result = chat.append(&room, id.clone(), author, text).await;
            match (result, dialect) {
                (Ok(appended), Dialect::Web) => Some(
                    serde_json::to_string(&ServerFrame::Ack {
                        id,
                        topic: topic.unwrap_or_default(),
                        offset: appended.message.offset,
                        duplicate: appended.duplicate,
                    })
                    .unwrap_or_default(),
                ),
                // The tutorial has no acknowledgements: its clients see their echo.
                (Ok(_), _) => None,
                (Err(error), Dialect::Web) => {
                    tracing::warn!(%error, "publish failed");
                    Some(
                        serde_json::to_string(&ServerFrame::Error {
                            id: Some(id),
                            code: ErrorCode::Internal,
                            message: "the message could not be stored; retry".into(),
                        })
                        .unwrap_or_default(),
                    )
                }
                (Err(error), _) => {
                    tracing::warn!(%error, "publish failed");
                    Some(seed::encode_error(ErrorCode::Internal, "the message could not be stored"))
                }
            }
        }));
    }

    async fn on_seed_chat(&mut self, text: &str) -> Result<(), ()> {
        let message = match seed::decode_chat(text) {
            Ok(message) => message,
            Err((code, message)) => return self.send_error(None, code, &message).await,
        };
        if let Err((code, message)) = check_text(&message) {
            return self.send_error(None, code, &message).await;
        }
        if let Err(error) = self.chat.check_rate(&self.who) {
            return self.send_error(None, ErrorCode::RateLimited, &error.to_string()).await;
        }
        let id = format!("seed-{:032x}", rand::random::<u128>());
        self.queue_publish(LOBBY.to_owned(), id, None, message);
        Ok(())
    }

    /// The chat room a topic names, or an error frame sent and `None`.
    async fn chat_room(&mut self, id: &str, topic: &str) -> Result<Option<super::store::Room>, ()> {
        match Topic::parse(topic) {
            Some(Topic::Chat(room)) => match self.chat.room_for(&room, &self.who) {
                Ok(room) => Ok(Some(room)),
                Err(_) => {
                    self.send_error(Some(id.to_owned()), ErrorCode::UnknownRoom, &format!("no room is named {room:?}"))
                        .await?;
                    Ok(None)
                }
            },
            _ => {
                let message = format!("{topic:?} is not a chat topic (chat:<room>)");
                self.send_error(Some(id.to_owned()), ErrorCode::UnknownTopic, &message).await?;
                Ok(None)
            }
        }
    }

    /// The room a `location:<room>` topic names, if this connection may use it; else an
    /// error frame sent and `None`.
    async fn map_room(&mut self, id: &str, topic: &str) -> Result<Option<super::store::Room>, ()> {
        match Topic::parse(topic) {
            Some(Topic::Location(room)) => match self.chat.room_for(&room, &self.who) {
                Ok(room) => Ok(Some(room)),
                Err(_) => {
                    let message = format!("no room is named {room:?}");
                    self.send_error(Some(id.to_owned()), ErrorCode::UnknownRoom, &message).await?;
                    Ok(None)
                }
            },
            _ => {
                let message = format!("{topic:?} is not a map topic (location:<room>)");
                self.send_error(Some(id.to_owned()), ErrorCode::UnknownTopic, &message).await?;
                Ok(None)
            }
        }
    }

    fn share(&mut self, topic: &str, at: (f64, f64), trail: bool) {
        let topic: Arc<str> = match self.sharing_in.iter().find(|t| &***t == topic) {
            Some(known) => known.clone(),
            None => {
                let topic: Arc<str> = Arc::from(topic);
                self.sharing_in.push(topic.clone());
                topic
            }
        };
        self.locations.update(&topic, &self.who.key(), &self.who.display_name(), at, trail);
    }

    fn stop_sharing(&mut self, topic: &str) {
        if let Some(pos) = self.sharing_in.iter().position(|t| &**t == topic) {
            let topic = self.sharing_in.swap_remove(pos);
            self.locations.remove(&topic, &self.who.key());
        }
    }

    async fn on_seed_location(&mut self, text: &str) -> Result<(), ()> {
        match location::decode_seed(text) {
            Ok(at) => {
                self.share(&location_topic(LOBBY), at, false);
                Ok(())
            }
            Err((code, message)) => self.send_error(None, code, &message).await,
        }
    }

    /// A sensor by id, or an error frame sent and `None`.
    async fn sensor(&mut self, id: Option<&str>, sensor_id: i64) -> Result<Option<super::store::Sensor>, ()> {
        match self.sensors.get(sensor_id).await {
            Ok(sensor) => Ok(Some(sensor)),
            Err(SensorError::UnknownSensor(_)) => {
                let message = format!("no sensor has the id {sensor_id}");
                self.send_error(id.map(str::to_owned), ErrorCode::UnknownSensor, &message).await?;
                Ok(None)
            }
            Err(error) => {
                tracing::error!(%error, "sensor lookup failed");
                self.send_error(id.map(str::to_owned), ErrorCode::Internal, "the server could not do that; retry")
                    .await?;
                Ok(None)
            }
        }
    }

    /// A `reading` frame: the sensor's owner or an admin posts readings; acked once durable.
    async fn post_readings(&mut self, id: String, sensor_id: i64, readings: Vec<NewReading>) -> Result<(), ()> {
        let Some(sensor) = self.sensor(Some(&id), sensor_id).await? else { return Ok(()) };
        if !self.who.user().is_some_and(|user| sensors::may_manage(&sensor, user)) {
            let message = "only the sensor's owner or an admin may post its readings";
            return self.send_error(Some(id), ErrorCode::Forbidden, message).await;
        }
        let max = self.sensors.limits().batch_max;
        if readings.len() > max {
            return self.send_error(Some(id), ErrorCode::TooLarge, &format!("at most {max} readings per frame")).await;
        }
        let checked = match sensors::check_batch(&sensor.info, &readings, now_ms()) {
            Ok(checked) => checked,
            Err(bad) => return self.send_error(Some(id), bad.code, &bad.message).await,
        };
        self.queue_readings(Some(id), sensor_id, checked, Origin::Api);
        Ok(())
    }

    /// Start a sensor write; its ack (web) or error is written when the store answers. The
    /// web protocol's `id` makes the write idempotent: a retry is acked as a duplicate.
    fn queue_readings(&mut self, id: Option<String>, sensor_id: i64, readings: Vec<Reading>, origin: Origin) {
        let sensors = self.sensors.clone();
        let dialect = self.dialect;
        self.pending.push(Box::pin(async move {
            let result = sensors.write(sensor_id, readings, origin, id.clone()).await;
            let (code, message) = match result {
                Ok(_) if dialect != Dialect::Web => return None,
                Ok(stored) => {
                    let ack = ServerFrame::Ack {
                        id: id.unwrap_or_default(),
                        topic: sensor_topic(sensor_id),
                        offset: 0,
                        duplicate: stored.duplicate,
                    };
                    return Some(serde_json::to_string(&ack).unwrap_or_default());
                }
                Err(SensorError::UnknownSensor(_)) => (ErrorCode::UnknownSensor, "the sensor was deleted".to_owned()),
                Err(error @ SensorError::RateLimited) => (ErrorCode::RateLimited, error.to_string()),
                Err(error) => {
                    tracing::warn!(%error, "storing readings failed");
                    (ErrorCode::Internal, "the readings could not be stored; retry".to_owned())
                }
            };
            Some(match dialect {
                Dialect::Web => serde_json::to_string(&ServerFrame::Error { id, code, message }).unwrap_or_default(),
                _ => seed::encode_error(code, &message),
            })
        }));
    }

    /// A tutorial sensor frame: stored through the same writer, echoed to every
    /// `/ws/sensor_data/` client. In guest mode an unknown name registers a sensor.
    async fn on_seed_sensor(&mut self, text: &str) -> Result<(), ()> {
        let reading = match sensors::decode_seed(text) {
            Ok(reading) => reading,
            Err((code, message)) => return self.send_error(None, code, &message).await,
        };
        let found = match &reading.target {
            SeedTarget::Id(id) => self.sensors.store().sensor(*id).await,
            SeedTarget::Name(name) => self.sensors.store().sensor_by_name(name).await,
        };
        let sensor = match (found, &reading.target) {
            (Ok(Some(sensor)), _) => sensor,
            (Ok(None), SeedTarget::Name(name)) if self.guest_access => {
                match self.sensors.register_unowned(name).await {
                    Ok(sensor) => sensor,
                    // Registered by someone else a moment ago.
                    Err(SensorError::NameTaken(_)) => match self.sensors.store().sensor_by_name(name).await {
                        Ok(Some(sensor)) => sensor,
                        _ => return self.send_error(None, ErrorCode::Internal, "the sensor could not be found").await,
                    },
                    Err(SensorError::Invalid(message)) => {
                        return self.send_error(None, ErrorCode::InvalidField, &message).await
                    }
                    Err(error) => {
                        tracing::error!(%error, "registering a sensor failed");
                        return self.send_error(None, ErrorCode::Internal, "the sensor could not be registered").await;
                    }
                }
            }
            (Ok(None), _) => {
                let message = format!("no sensor is {}", reading.sensor_id);
                return self.send_error(None, ErrorCode::UnknownSensor, &message).await;
            }
            (Err(error), _) => {
                tracing::error!(%error, "sensor lookup failed");
                return self.send_error(None, ErrorCode::Internal, "the server could not do that; retry").await;
            }
        };
        if !sensors::may_post_seed(&sensor, &self.who) {
            let message = "only the sensor's owner or an admin may post its readings";
            return self.send_error(None, ErrorCode::Forbidden, message).await;
        }
        let new = [NewReading { value: reading.value, ts: None }];
        let checked = match sensors::check_batch(&sensor.info, &new, now_ms()) {
            Ok(checked) => checked,
            Err(bad) => return self.send_error(None, bad.code, &bad.message).await,
        };
        let origin = Origin::Seed { sensor_id: reading.sensor_id, sensor_value: reading.sensor_value };
        self.queue_readings(None, sensor.info.id, checked, origin);
        Ok(())
    }

    /// Stop counting as present in `topic`.
    fn leave(&mut self, topic: &str) {
        if let Some(pos) = self.present_in.iter().position(|t| &**t == topic) {
            let name = self.present_in.swap_remove(pos);
            self.chat.presence.leave(&name, &self.who.key());
        }
    }

    fn leave_all(&mut self) {
        for topic in std::mem::take(&mut self.present_in) {
            self.chat.presence.leave(&topic, &self.who.key());
        }
        for topic in std::mem::take(&mut self.sharing_in) {
            self.locations.remove(&topic, &self.who.key());
        }
    }

    async fn internal_error(&mut self, id: String, error: &(dyn std::fmt::Display + Sync)) -> Result<(), ()> {
        tracing::error!(%error, "request failed");
        self.send_error(Some(id), ErrorCode::Internal, "the server could not do that; retry").await
    }

    async fn subscribe(&mut self, id: String, topic: String, resume: Option<Resume>, present: bool) -> Result<(), ()> {
        match Topic::parse(&topic) {
            Some(Topic::Location(_)) => {
                let Some(room) = self.map_room(&id, &topic).await? else { return Ok(()) };
                let name = self.hub.subscribe(&topic, &self.peer);
                self.subscriptions.insert(name, 0);
                let frame = ServerFrame::Subscribed { id, topic: topic.clone(), epoch: room.epoch, head: 0 };
                self.send_frame(&frame).await?;
                let positions = self.locations.snapshot(&topic);
                self.send_frame(&ServerFrame::Locations { topic, positions }).await
            }
            Some(Topic::Sensor(sensor_id)) => {
                if self.sensor(Some(&id), sensor_id).await?.is_none() {
                    return Ok(());
                }
                // Subscribe before reading the latest: anything stored after this arrives live.
                let name = self.hub.subscribe(&topic, &self.peer);
                self.subscriptions.insert(name, 0);
                let frame =
                    ServerFrame::Subscribed { id: id.clone(), topic: topic.clone(), epoch: String::new(), head: 0 };
                self.send_frame(&frame).await?;
                match self.sensors.latest(sensor_id).await {
                    Ok(Some(latest)) => self.send_frame(&ServerFrame::Readings { topic, readings: vec![latest] }).await,
                    Ok(None) => Ok(()),
                    Err(error) => self.internal_error(id, &error).await,
                }
            }
            Some(Topic::Rooms | Topic::Activity | Topic::Sensors) => {
                let name = self.hub.subscribe(&topic, &self.peer);
                self.subscriptions.insert(name, 0);
                let frame = ServerFrame::Subscribed { id, topic, epoch: String::new(), head: 0 };
                self.send_frame(&frame).await
            }
            Some(Topic::Chat(_)) => {
                let Some(room) = self.chat_room(&id, &topic).await? else { return Ok(()) };
                // Subscribe before reading the store: whatever is committed after this
                // point arrives as an event, and what both paths carry is dropped by offset.
                let name = self.hub.subscribe(&topic, &self.peer);
                let head = match self.chat.store().head(room.id).await {
                    Ok(head) => head,
                    Err(error) => {
                        self.hub.unsubscribe(&topic, &self.peer);
                        self.subscriptions.remove(topic.as_str());
                        return self.internal_error(id, &error).await;
                    }
                };
                let from = match resume {
                    Some(r) if r.epoch == room.epoch && r.offset <= head => r.offset,
                    Some(_) => {
                        self.subscriptions.insert(name, head);
                        let frame = ServerFrame::Reset { id, topic, epoch: room.epoch, head };
                        return self.send_frame(&frame).await;
                    }
                    None => head,
                };
                self.subscriptions.insert(name.clone(), from);
                let frame = ServerFrame::Subscribed { id: id.clone(), topic: topic.clone(), epoch: room.epoch, head };
                self.send_frame(&frame).await?;
                self.replay(&id, &name, room.id).await?;
                if present && !self.present_in.contains(&name) {
                    self.chat.presence.join(&name, &self.who.key(), &self.who.display_name());
                    self.present_in.push(name.clone());
                }
                let presence = self.chat.presence.frame(&name);
                self.send_frame(&presence).await
            }
            None => {
                let message = format!(
                    "{topic:?} is not a topic (chat:<room>, location:<room>, sensor:<id>, rooms, activity, sensors)"
                );
                self.send_error(Some(id), ErrorCode::UnknownTopic, &message).await
            }
        }
    }

    /// Send every stored message after the subscription's offset, then leave the rest to live events.
    async fn replay(&mut self, id: &str, topic: &Arc<str>, room_id: i64) -> Result<(), ()> {
        loop {
            let Some(&from) = self.subscriptions.get(topic) else { return Ok(()) };
            let page = match self.chat.store().messages_after(room_id, from, REPLAY_PAGE).await {
                Ok(page) => page,
                Err(error) => return self.internal_error(id.to_owned(), &error).await,
            };
            let Some(last) = page.last().map(|m| m.offset) else { return Ok(()) };
            let full = page.len() == REPLAY_PAGE as usize;
            for message in page {
                let frame = ServerFrame::Message { topic: topic.to_string(), message };
                let text = Utf8Bytes::try_from(encode(&frame)).map_err(|_| ())?;
                tokio::time::timeout(WRITE_TIMEOUT, self.socket.feed(Message::Text(text)))
                    .await
                    .map_err(|_| ())?
                    .map_err(|_| ())?;
            }
            tokio::time::timeout(WRITE_TIMEOUT, self.socket.flush()).await.map_err(|_| ())?.map_err(|_| ())?;
            self.subscriptions.insert(topic.clone(), last);
            if !full {
                return Ok(());
            }
        }
    }
}

fn is_capacity_error(error: &axum::Error) -> bool {
    let text = error.to_string();
    text.contains("Space limit exceeded") || text.contains("too long") || text.contains("Capacity")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_tells_every_bad_frame_apart() {
        let code = |text: &str| decode(text).unwrap_err().code;
        assert_eq!(code("{not json"), ErrorCode::Malformed);
        assert_eq!(code("[1,2]"), ErrorCode::InvalidField);
        assert_eq!(code(r#"{"id":"1"}"#), ErrorCode::InvalidField);
        assert_eq!(code(r#"{"type":"dance","id":"1"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"publish","id":"1","topic":"chat:lobby"}"#), ErrorCode::InvalidField);
        assert_eq!(code(r#"{"type":"publish","id":"1","topic":"chat:lobby","text":5}"#), ErrorCode::InvalidField);
        assert_eq!(code(r#"{"type":"ping","id":""}"#), ErrorCode::InvalidField);
        let long = "x".repeat(65);
        assert_eq!(code(&format!(r#"{{"type":"ping","id":"{long}"}}"#)), ErrorCode::InvalidField);
        let rejected = decode(r#"{"type":"publish","id":"r7","topic":"chat:lobby"}"#).unwrap_err();
        assert_eq!(rejected.id.as_deref(), Some("r7"), "errors carry the request id");
        assert!(decode(r#"{"type":"ping","id":"1","extra":true}"#).is_ok(), "unknown fields are ignored");
    }

    #[test]
    fn text_must_be_present_and_bounded() {
        assert_eq!(check_text(" \n ").unwrap_err().0, ErrorCode::EmptyMessage);
        assert!(check_text(&"a".repeat(MAX_MESSAGE_CHARS)).is_ok());
        assert_eq!(check_text(&"a".repeat(MAX_MESSAGE_CHARS + 1)).unwrap_err().0, ErrorCode::MessageTooLong);
    }
}
