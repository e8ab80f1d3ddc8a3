//! The gateway: one task per WebSocket. It reads the envelope of every frame, hands
//! subscriptions and requests to the channel that owns their topic or type (see
//! [`super::channel`]), and writes hub events back out.
//!
//! The task owns its socket and selects over: the server shutting down, the hub
//! kicking it (its queue filled up), replies to its publishes becoming durable,
//! events queued for it, frames from the client, and the heartbeat. Queued events
//! are written in batches with a single flush. Every write has a deadline, so a peer
//! that stops reading cannot hold the task forever.
//!
//! The connection ([`Conn`]) is what a channel works with: who is connected, its
//! subscriptions, its replies, and the durable-topic service ([`Conn::join_durable`]).

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::bus::Cluster;
use super::channel::{Channels, Closed, Dialect, Flow, Join};
use super::hub::{Event, Hub, Peer};
use super::net::Socket;
use super::presence::Presence;
use super::user_topic;
use crate::accounts::auth::Identity;
use crate::realtime::protocol::{
    close, decode, request_id, ClientFrame, ErrorCode, Incoming, Rejection, Resume, ServerFrame,
};
use crate::store::StoreError;

/// Events written per flush at most.
const WRITE_BATCH: usize = 64;
/// Publishes awaiting durability per connection; past this the connection stops reading.
const MAX_PENDING: usize = 64;
/// How long one write may take before the peer is taken for dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Events replayed per store read on resume.
const REPLAY_PAGE: u32 = 500;

/// What the core needs to run connections: the hub, the channels, the limits.
pub struct Core {
    pub hub: Arc<Hub>,
    /// The other nodes, when this process is one of several.
    pub cluster: Option<Arc<Cluster>>,
    pub channels: Arc<Channels>,
    pub queue_frames: usize,
    pub max_frame_bytes: usize,
    pub heartbeat: Duration,
    pub idle_timeout: Duration,
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// A durable topic's log, as the feature that keeps it reads it: the core replays it to a
/// client that resumes.
#[async_trait]
pub trait History: Send + Sync {
    /// The offset of the last event (0: none yet).
    async fn head(&self) -> Result<u64, StoreError>;
    /// The events after `offset`, oldest first, at most `limit`: each one's offset and frame.
    async fn after(&self, offset: u64, limit: u32) -> Result<Vec<(u64, Bytes)>, StoreError>;
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

/// One connection, as the channels see it.
pub struct Conn {
    socket: WebSocket,
    /// The dialect of a tutorial endpoint; `None` on `/ws`.
    dialect: Option<Arc<dyn Dialect>>,
    who: Identity,
    peer: Arc<Peer>,
    events: mpsc::Receiver<Arc<Event>>,
    /// Topics subscribed to, with the last offset delivered in each durable one.
    subscriptions: HashMap<Arc<str>, u64>,
    /// On one node: durable topics read from the store up to an offset whose live events may
    /// not all have been fanned out yet (a writer commits, then fans out). Until a live event
    /// past that offset comes, publishers do not write to the socket themselves: their events
    /// go through this task, which drops what was read from the store already (`wants`).
    catching_up: Vec<(Arc<str>, u64)>,
    /// Topics this connection counts as present in, and the presence that counts it.
    present_in: Vec<(Arc<str>, Arc<Presence>)>,
    /// What channels keep per connection (see [`Conn::local`]).
    locals: Vec<Box<dyn Any + Send>>,
    pending: FuturesUnordered<Reply>,
    /// Events being written, kept to reuse its allocation.
    batch: Vec<Arc<Event>>,
    /// The socket under the WebSocket, which publishers write events into themselves while
    /// this task is idle (see `net`).
    direct: Socket,
    hub: Arc<Hub>,
    cluster: Option<Arc<Cluster>>,
    channels: Arc<Channels>,
    max_frame_bytes: usize,
}

/// Serve one upgraded socket until it closes. `dialect`: a tutorial endpoint's, or `None` for
/// the web protocol.
pub async fn run(socket: WebSocket, core: &Core, dialect: Option<Arc<dyn Dialect>>, who: Identity, direct: Socket) {
    let (peer, events) = core.hub.connect(core.queue_frames);
    // Held until the welcome and the first subscriptions are written.
    direct.attach(core.queue_frames);
    peer.set_direct(direct.direct());
    let mut conn = Conn {
        socket,
        dialect,
        who,
        peer: peer.clone(),
        events,
        subscriptions: HashMap::new(),
        catching_up: Vec::new(),
        present_in: Vec::new(),
        locals: Vec::new(),
        pending: FuturesUnordered::new(),
        batch: Vec::new(),
        direct,
        hub: core.hub.clone(),
        cluster: core.cluster.clone(),
        channels: core.channels.clone(),
        max_frame_bytes: core.max_frame_bytes,
    };
    let end = conn.serve(core).await;
    tracing::debug!(peer = peer.id(), ?end, "connection ended");
    core.hub.disconnect(&peer);
    conn.leave_all();
}

impl Conn {
    async fn serve(&mut self, core: &Core) -> End {
        let heartbeat_every = core.heartbeat;
        let idle_timeout = core.idle_timeout;
        match self.dialect.clone() {
            None => {
                // Every signed-in connection hears its user's own topic (rooms shared with them).
                if let Some(user) = self.who.user() {
                    let topic = self.hub.subscribe(&user_topic(user.id), &self.peer);
                    self.subscriptions.insert(topic, 0);
                }
                let welcome = ServerFrame::Welcome {
                    name: self.who.display_name(),
                    heartbeat_ms: heartbeat_every.as_millis() as u64,
                    max_frame_bytes: self.max_frame_bytes,
                };
                if self.send(&welcome).await.is_err() {
                    return End::WriteFailed;
                }
            }
            Some(dialect) => {
                self.subscribe(dialect.topic());
            }
        }
        if self.release().await.is_err() {
            return End::WriteFailed;
        }
        let mut heartbeat = tokio::time::interval_at(Instant::now() + heartbeat_every, heartbeat_every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let shutdown = core.shutdown.clone();
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
                                Err(Closed) => break End::WriteFailed,
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
    async fn write(&mut self, message: Message) -> Flow {
        match tokio::time::timeout(WRITE_TIMEOUT, self.socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Closed),
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
        if event.offset > 0 && !self.catching_up.is_empty() {
            self.catching_up.retain(|(topic, last)| !(**topic == *event.topic && event.offset > *last));
        }
        if let Some(revoked) = &event.revoke {
            if self.subscriptions.remove(&**revoked).is_some() {
                self.hub.unsubscribe(revoked, &self.peer);
                self.left(revoked);
            }
        }
        wanted
    }

    /// Write what publishers queued for this task, then let them write to the socket
    /// themselves again.
    async fn release(&mut self) -> Result<(), End> {
        if !self.catching_up.is_empty() {
            return Ok(());
        }
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
    async fn on_message(&mut self, message: Message) -> Result<bool, Closed> {
        match message {
            Message::Text(text) => {
                if text.len() > self.max_frame_bytes {
                    let id = serde_json::from_str::<serde_json::Value>(&text).ok().as_ref().and_then(request_id);
                    let limit = self.max_frame_bytes;
                    self.error(id, ErrorCode::TooLarge, &format!("frames are limited to {limit} bytes")).await?;
                    return Ok(true);
                }
                match self.dialect.clone() {
                    None => self.on_web_frame(&text).await?,
                    Some(dialect) => dialect.frame(self, &text).await?,
                }
                Ok(true)
            }
            Message::Binary(_) => {
                self.error(None, ErrorCode::BinaryFrame, "only text frames are accepted").await?;
                Ok(true)
            }
            Message::Ping(_) | Message::Pong(_) => Ok(true),
            Message::Close(_) => Ok(false),
        }
    }

    async fn on_web_frame(&mut self, text: &str) -> Flow {
        let channels = self.channels.clone();
        let frame = match decode(text, |kind| channels.for_request(kind).is_some()) {
            Ok(frame) => frame,
            Err(rejection) => return self.reject(rejection).await,
        };
        match frame {
            Incoming::Core(ClientFrame::Ping { id }) => self.send(&ServerFrame::Pong { id }).await,
            Incoming::Core(ClientFrame::Subscribe { id, topic, resume, present }) => {
                let Some(channel) = channels.for_topic(&topic) else {
                    let message = format!("{topic:?} is not a topic ({})", channels.spellings());
                    return self.error(Some(id), ErrorCode::UnknownTopic, &message).await;
                };
                channel.join(self, Join { id, topic, resume, present }).await
            }
            Incoming::Core(ClientFrame::Unsubscribe { id, topic }) => {
                if channels.for_topic(&topic).is_some() && self.subscriptions.remove(topic.as_str()).is_some() {
                    self.hub.unsubscribe(&topic, &self.peer);
                    self.left(&topic);
                }
                self.send(&ServerFrame::Unsubscribed { id, topic }).await
            }
            Incoming::Request(request) => match channels.for_request(&request.kind) {
                Some(channel) => channel.request(self, request).await,
                None => self.reject(request.reject(ErrorCode::UnknownType, "unknown frame type")).await,
            },
        }
    }

    /// The connection no longer follows `topic`: it stops counting as present there, and the
    /// topic's channel hears of it.
    fn left(&mut self, topic: &str) {
        self.catching_up.retain(|(t, _)| &**t != topic);
        if let Some(pos) = self.present_in.iter().position(|(t, _)| &**t == topic) {
            let (name, presence) = self.present_in.swap_remove(pos);
            presence.leave(&name, &self.who.key());
        }
        if let Some(channel) = self.channels.clone().for_topic(topic) {
            channel.leave(self, topic);
        }
    }

    fn leave_all(&mut self) {
        for (topic, presence) in std::mem::take(&mut self.present_in) {
            presence.leave(&topic, &self.who.key());
        }
        for channel in self.channels.clone().all() {
            channel.disconnect(self);
        }
    }

    // What channels use.

    /// Who is connected.
    pub fn who(&self) -> &Identity {
        &self.who
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Write a frame now (replies and a subscription's first frames; events go through the hub).
    pub async fn send<T: Serialize>(&mut self, frame: &T) -> Flow {
        self.send_text(serde_json::to_string(frame).unwrap_or_default()).await
    }

    pub async fn send_text(&mut self, text: String) -> Flow {
        self.write(Message::Text(text.into())).await
    }

    /// Send an error frame, in the connection's dialect.
    pub async fn error(&mut self, id: Option<String>, code: ErrorCode, message: &str) -> Flow {
        match &self.dialect {
            None => self.send(&ServerFrame::Error { id, code, message: message.to_owned() }).await,
            Some(dialect) => {
                let text = dialect.encode_error(code, message);
                self.send_text(text).await
            }
        }
    }

    pub async fn reject(&mut self, rejection: Rejection) -> Flow {
        self.error(rejection.id, rejection.code, &rejection.message).await
    }

    /// Answer request `id` with a feature's refusal: an error frame with `code` and the
    /// refusal's text, or, for the server's own failure (`internal`), logged and answered
    /// without its detail.
    pub async fn refuse(&mut self, id: String, code: ErrorCode, error: &(dyn std::fmt::Display + Sync)) -> Flow {
        if code == ErrorCode::Internal {
            return self.internal_error(Some(id), error).await;
        }
        self.error(Some(id), code, &error.to_string()).await
    }

    /// Log a failure the client cannot help, and tell it to retry.
    pub async fn internal_error(&mut self, id: Option<String>, error: &(dyn std::fmt::Display + Sync)) -> Flow {
        tracing::error!(%error, "request failed");
        self.error(id, ErrorCode::Internal, "the server could not do that; retry").await
    }

    /// Follow `topic`: its events reach this connection from now on.
    pub fn subscribe(&mut self, topic: &str) -> Arc<str> {
        let name = self.hub.subscribe(topic, &self.peer);
        self.subscriptions.entry(name.clone()).or_insert(0);
        name
    }

    /// Stop following `topic`, one the channel subscribed the connection to itself (an internal
    /// topic); the channel hears no `leave` for it.
    pub fn unsubscribe(&mut self, topic: &str) {
        if self.subscriptions.remove(topic).is_some() {
            self.hub.unsubscribe(topic, &self.peer);
        }
        self.catching_up.retain(|(t, _)| &**t != topic);
    }

    /// The topic's shared name, if this connection follows it.
    pub fn subscribed(&self, topic: &str) -> Option<Arc<str>> {
        self.subscriptions.get_key_value(topic).map(|(name, _)| name.clone())
    }

    /// Count this connection as present in `topic` (once, however often asked) until it
    /// leaves the topic or closes.
    pub fn be_present(&mut self, topic: &Arc<str>, presence: &Arc<Presence>) {
        if !self.present_in.iter().any(|(t, _)| t == topic) {
            presence.join(topic, &self.who.key(), &self.who.display_name());
            self.present_in.push((topic.clone(), presence.clone()));
        }
    }

    /// Send a reply when `reply` finishes (a write becoming durable), without holding up the
    /// connection meanwhile. `None`: nothing to send.
    pub fn defer(&mut self, reply: impl Future<Output = Option<String>> + Send + 'static) {
        self.pending.push(Box::pin(reply));
    }

    /// What a channel keeps for this connection, made on first use.
    pub fn local<T: Default + Send + 'static>(&mut self) -> &mut T {
        if !self.locals.iter().any(|local| local.is::<T>()) {
            self.locals.push(Box::new(T::default()));
        }
        match self.locals.iter_mut().find_map(|local| local.downcast_mut::<T>()) {
            Some(local) => local,
            // One was found or made just above.
            None => unreachable!("a connection's local of every type it was asked for"),
        }
    }

    /// Subscribe to a latest-value topic: `subscribed`, then the topic's latest state, then its
    /// changes. `latest` is read after subscribing and before `subscribed` is sent, so a change
    /// made after it arrives as an event, and events wait until this answer is written; `None`:
    /// no state yet.
    pub async fn join_latest<T, E>(
        &mut self,
        id: String,
        topic: String,
        epoch: String,
        latest: impl Future<Output = Result<Option<T>, E>>,
    ) -> Flow
    where
        T: Serialize,
        E: std::fmt::Display + Sync,
    {
        self.subscribe(&topic);
        let latest = latest.await;
        // `subscribed` once the state is read: whatever the client does on hearing it (post a
        // reading, move) arrives as an event, never folded into the first state.
        self.send(&ServerFrame::Subscribed { id: id.clone(), topic, epoch, head: 0 }).await?;
        match latest {
            Ok(Some(state)) => self.send(&state).await,
            Ok(None) => Ok(()),
            Err(error) => self.internal_error(Some(id), &error).await,
        }
    }

    /// Subscribe to a durable topic: `subscribed` with its epoch and head, then every event
    /// after `resume` from `history`, then the live stream, with nothing lost between the two
    /// and nothing sent twice (an event that both carry is dropped by its offset). A resume
    /// from another epoch, or past the head, is answered by `reset` and goes live from the
    /// head. Returns the topic's name once live, `None` if it did not go live.
    pub async fn join_durable(
        &mut self,
        id: String,
        topic: String,
        resume: Option<Resume>,
        epoch: String,
        history: &dyn History,
    ) -> Result<Option<Arc<str>>, Closed> {
        // Subscribe before reading the store: whatever is committed after this point arrives
        // as an event, and what both paths carry is dropped by offset.
        let name = self.hub.subscribe(&topic, &self.peer);
        // On several nodes: this node delivers every event committed from here on.
        let follow = match &self.cluster {
            Some(cluster) => cluster.follow(&name).await,
            None => Ok(()),
        };
        let head = match follow {
            Ok(()) => history.head().await,
            Err(error) => Err(error),
        };
        let head = match head {
            Ok(head) => head,
            Err(error) => {
                self.hub.unsubscribe(&topic, &self.peer);
                self.subscriptions.remove(topic.as_str());
                self.internal_error(Some(id), &error).await?;
                return Ok(None);
            }
        };
        let from = match resume {
            Some(r) if r.epoch == epoch && r.offset <= head => r.offset,
            Some(_) => {
                self.subscriptions.insert(name.clone(), head);
                self.send(&ServerFrame::Reset { id, topic, epoch, head }).await?;
                self.caught_up(&name, head).await;
                return Ok(None);
            }
            None => head,
        };
        self.subscriptions.insert(name.clone(), from);
        self.send(&ServerFrame::Subscribed { id: id.clone(), topic, epoch, head }).await?;
        self.replay(&id, &name, history).await?;
        let last = self.subscriptions.get(&name).copied().unwrap_or(head);
        self.caught_up(&name, last).await;
        Ok(Some(name))
    }

    /// Live events of `topic` are written from here on only once this node has passed `last`,
    /// the offset this connection has from the store: on several nodes, wait for the bus to
    /// pass it; on one, events go through this task until one past it comes (see
    /// `catching_up`).
    async fn caught_up(&mut self, topic: &Arc<str>, last: u64) {
        match self.cluster.clone() {
            Some(cluster) => cluster.reach(topic, last).await,
            None => {
                self.catching_up.retain(|(t, _)| t != topic);
                self.catching_up.push((topic.clone(), last));
            }
        }
    }

    /// Send every stored event after the subscription's offset, then leave the rest to live events.
    async fn replay(&mut self, id: &str, topic: &Arc<str>, history: &dyn History) -> Flow {
        loop {
            let Some(&from) = self.subscriptions.get(topic) else { return Ok(()) };
            let page = match history.after(from, REPLAY_PAGE).await {
                Ok(page) => page,
                Err(error) => return self.internal_error(Some(id.to_owned()), &error).await,
            };
            let Some(&(last, _)) = page.last() else { return Ok(()) };
            let full = page.len() == REPLAY_PAGE as usize;
            for (_, frame) in page {
                let text = Utf8Bytes::try_from(frame).map_err(|_| Closed)?;
                tokio::time::timeout(WRITE_TIMEOUT, self.socket.feed(Message::Text(text)))
                    .await
                    .map_err(|_| Closed)?
                    .map_err(|_| Closed)?;
            }
            tokio::time::timeout(WRITE_TIMEOUT, self.socket.flush()).await.map_err(|_| Closed)?.map_err(|_| Closed)?;
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
