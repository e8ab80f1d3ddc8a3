//! Several nodes as one: the bus between them (Redis pub/sub), and each node's delivery of
//! durable topics in offset order, exactly once, whatever the bus loses.
//!
//! With `--redis-url`, this process is one node of a cluster. Every node stores in the same
//! PostgreSQL and subscribes to one Redis channel, `<prefix>bus`, on which each node publishes:
//! - **events** of the hub that every node's subscribers should get (typing, presence, positions,
//!   a sensor's readings, a user's own notices): [`Hub::publish`] hands them to [`Relay`], and
//!   other nodes give them to their own subscribers;
//! - **durable events** once committed (a chat message at its offset): each node runs the
//!   feature's fan-out for them ([`Deliver`]), through a [`Sequencer`] that delivers each topic's
//!   offsets in order, once, and fills a gap from PostgreSQL;
//! - **changes**: a feature's notice that something it keeps in memory changed in the store
//!   (a room made, a member added), so that every node reloads it ([`Cluster::on_change`]).
//!
//! Redis pub/sub is at most once, and a node can die between its commit and its publish: a
//! durable event that does not come is found in PostgreSQL, when a later one shows the gap,
//! when Redis reconnects, or by the check of every followed topic's head each second. So an
//! acknowledged message reaches every subscriber on every node exactly once, in order; when
//! Redis is down, at the pace of that check.
//!
//! The subscription runs on a `redis` `ConnectionManager` over RESP3, which reconnects and
//! resubscribes by itself and says so: a disconnection, then a new `subscribe` confirmation.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{PushInfo, PushKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::hub::{Event, Hub, Relay};
use crate::store::events::Logged;
use crate::store::{Store, StoreError};

/// How often each followed durable topic's head is compared with what this node delivered.
pub const HEAD_CHECK: Duration = Duration::from_secs(1);

/// Messages waiting to be published before new ones are dropped (Redis is down or slow: the
/// durable ones are found in PostgreSQL meanwhile).
const OUTBOX: usize = 65_536;

/// Events read from PostgreSQL per query when a gap is filled.
const FILL_PAGE: u32 = 1000;

/// A topic followed by no one here for this long is forgotten.
const IDLE_TOPIC: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Config(String),
}

/// What a node does when another says something changed: given what (`""`: everything).
pub type Change = Arc<dyn Fn(&str) + Send + Sync>;

/// A feature's fan-out of a stored event of its durable topics, run on every node.
pub trait Deliver: Send + Sync {
    fn deliver(&self, hub: &Hub, topic: &Arc<str>, event: Logged);
}

/// What the bus carries.
#[derive(Debug, Clone, PartialEq)]
enum Message {
    Event { topic: Arc<str>, frame: Bytes, revoke: Option<Arc<str>> },
    Durable { topic: Arc<str>, event: Logged },
    Change { kind: String, detail: String },
}

/// A message on the bus: a kind byte, the sending node, then its fields, each a length (u32,
/// little-endian) and its bytes.
mod wire {
    use super::*;

    const EVENT: u8 = b'E';
    const DURABLE: u8 = b'D';
    const CHANGE: u8 = b'C';

    fn put(out: &mut Vec<u8>, field: &[u8]) {
        out.extend_from_slice(&(field.len() as u32).to_le_bytes());
        out.extend_from_slice(field);
    }

    pub fn encode(node: u64, message: &Message) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        let kind = match message {
            Message::Event { .. } => EVENT,
            Message::Durable { .. } => DURABLE,
            Message::Change { .. } => CHANGE,
        };
        out.push(kind);
        out.extend_from_slice(&node.to_le_bytes());
        match message {
            Message::Event { topic, frame, revoke } => {
                put(&mut out, topic.as_bytes());
                put(&mut out, revoke.as_deref().unwrap_or("").as_bytes());
                put(&mut out, frame);
            }
            Message::Durable { topic, event } => {
                put(&mut out, topic.as_bytes());
                put(&mut out, &event.offset.to_le_bytes());
                put(&mut out, event.id.as_bytes());
                put(&mut out, event.payload.as_bytes());
                put(&mut out, &event.ts.to_le_bytes());
            }
            Message::Change { kind, detail } => {
                put(&mut out, kind.as_bytes());
                put(&mut out, detail.as_bytes());
            }
        }
        out
    }

    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            if self.0.len() < n {
                return None;
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Some(head)
        }
        fn field(&mut self) -> Option<&'a [u8]> {
            let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
            self.take(len)
        }
        fn text(&mut self) -> Option<&'a str> {
            std::str::from_utf8(self.field()?).ok()
        }
        fn u64(&mut self) -> Option<u64> {
            Some(u64::from_le_bytes(self.field()?.try_into().ok()?))
        }
    }

    /// The sending node and the message; `None` for bytes that are not one.
    pub fn decode(bytes: &[u8]) -> Option<(u64, Message)> {
        let mut r = Reader(bytes);
        let kind = r.take(1)?[0];
        let node = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let message = match kind {
            EVENT => {
                let topic = Arc::from(r.text()?);
                let revoke = Some(r.text()?).filter(|t| !t.is_empty()).map(Arc::from);
                let frame = Bytes::copy_from_slice(r.field()?);
                std::str::from_utf8(&frame).ok()?;
                Message::Event { topic, frame, revoke }
            }
            DURABLE => {
                let topic = Arc::from(r.text()?);
                let offset = r.u64()?;
                let id = r.text()?.to_owned();
                let payload = r.text()?.to_owned();
                let ts = r.u64()? as i64;
                Message::Durable { topic, event: Logged { offset, id, payload, ts } }
            }
            CHANGE => Message::Change { kind: r.text()?.to_owned(), detail: r.text()?.to_owned() },
            _ => return None,
        };
        r.0.is_empty().then_some((node, message))
    }
}

/// Where this node stands in one durable topic.
struct Track {
    /// The last offset delivered here.
    delivered: u64,
    /// Events that came ahead of a gap, by offset.
    pending: BTreeMap<u64, Logged>,
    /// A known head past `delivered` (from PostgreSQL): filled up to it.
    head: u64,
    /// A task is reading the gap from PostgreSQL.
    filling: bool,
    last_used: Instant,
    /// `delivered`, for whoever waits for it to reach an offset ([`Cluster::reach`]).
    watch: tokio::sync::watch::Sender<u64>,
}

impl Track {
    /// Deliver what waits, in order, under the topic's lock.
    fn drain(&mut self, hub: &Hub, topic: &Arc<str>, deliver: &dyn Deliver) {
        let before = self.delivered;
        loop {
            let next = self.delivered + 1;
            let Some(event) = self.pending.remove(&next) else { break };
            self.delivered = next;
            deliver.deliver(hub, topic, event);
        }
        if self.delivered != before {
            self.watch.send_replace(self.delivered);
        }
    }
}

/// Delivers each durable topic's events on this node in offset order, once each: what comes
/// twice (the bus echoes this node's own, a retry republishes) is dropped, what comes early
/// waits, and a gap is read from PostgreSQL.
struct Sequencer {
    topics: Mutex<HashMap<Arc<str>, Arc<Mutex<Track>>>>,
}

/// The nodes of a cluster as this node sees them.
pub struct Cluster {
    node: u64,
    channel: String,
    prefix: String,
    hub: Arc<Hub>,
    store: Store,
    outbox: mpsc::Sender<Vec<u8>>,
    /// Commands (publish, presence, ...), on a connection of their own.
    redis: ConnectionManager,
    durables: RwLock<Vec<(String, Arc<dyn Deliver>)>>,
    changes: RwLock<HashMap<String, Vec<Change>>>,
    sequencer: Sequencer,
    stop: CancellationToken,
    /// How many events this node read from PostgreSQL to fill gaps.
    pub stats: Stats,
    /// A test's seam: what happens to messages this node receives.
    chaos: Mutex<Option<Chaos>>,
    /// Until when (ms since the Unix epoch) Redis is taken as down after a command failed:
    /// what can do without it (a rate limit) does not wait for it meanwhile.
    down_until: std::sync::atomic::AtomicI64,
}

/// How long a joining connection waits for this node to catch up with its replay.
const REACH_WAIT: Duration = Duration::from_secs(5);

/// How long a command that someone waits on may take.
pub const QUICK: Duration = Duration::from_millis(300);

/// How long Redis is left alone after a command to it failed.
const REDIS_BACKOFF_MS: i64 = 1000;

/// What a test makes the bus do to the messages a node receives, as a bad network or a
/// restarting Redis would: lose some, and hold others back so that they arrive late and out
/// of order.
#[derive(Debug, Clone, Copy)]
pub struct Chaos {
    /// The share of messages lost, 0 to 1.
    pub lose: f64,
    /// Each message that is not lost waits up to this long.
    pub delay: Duration,
}

/// Events read from PostgreSQL to fill gaps (tests check that a gap was filled).
#[derive(Default, Debug)]
pub struct Stats {
    pub filled: std::sync::atomic::AtomicU64,
}

/// The Redis URL with RESP3 asked for (the subscription's pushes need it).
fn resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

impl Cluster {
    /// Join the cluster: connect to Redis twice (commands, and the subscription), subscribe,
    /// and start the tasks that publish, listen and check heads. `prefix` starts every key and
    /// channel, so that several clusters (or tests) can share one Redis.
    pub async fn start(url: &str, prefix: &str, store: Store, hub: Arc<Hub>) -> Result<Arc<Cluster>, ClusterError> {
        if store.engine() != crate::store::Engine::Postgres {
            return Err(ClusterError::Config(
                "--redis-url needs --database-url postgres://...: a SQLite file belongs to one process".into(),
            ));
        }
        let client = redis::Client::open(resp3(url))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_max_delay(Duration::from_secs(1));
        let redis = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
        let (pushes, mut pushed) = mpsc::unbounded_channel::<PushInfo>();
        let channel = format!("{prefix}bus");
        let listen = Listen { client, config, pushes, channel: channel.clone() };
        let listener = listen.connect().await?;
        let (outbox, outgoing) = mpsc::channel(OUTBOX);
        let cluster = Arc::new(Cluster {
            node: rand::random(),
            channel,
            prefix: prefix.to_owned(),
            hub: hub.clone(),
            store,
            outbox,
            redis,
            durables: RwLock::new(Vec::new()),
            changes: RwLock::new(HashMap::new()),
            sequencer: Sequencer { topics: Mutex::new(HashMap::new()) },
            stop: CancellationToken::new(),
            stats: Stats::default(),
            chaos: Mutex::new(None),
            down_until: std::sync::atomic::AtomicI64::new(0),
        });
        hub.set_relay(cluster.clone());
        tokio::spawn(publish_loop(cluster.redis.clone(), cluster.channel.clone(), outgoing, cluster.stop.clone()));
        let weak = Arc::downgrade(&cluster);
        let stop = cluster.stop.clone();
        tokio::spawn(async move {
            let mut reconnecting = false;
            loop {
                let push = tokio::select! {
                    _ = stop.cancelled() => return,
                    push = pushed.recv() => push,
                };
                let (Some(push), Some(cluster)) = (push, weak.upgrade()) else { return };
                match push.kind {
                    PushKind::Message => cluster.received(&push),
                    PushKind::Disconnection => {
                        tracing::warn!("the bus (Redis) disconnected; reconnecting");
                        reconnecting = true;
                    }
                    PushKind::Subscribe if reconnecting => {
                        reconnecting = false;
                        tracing::info!("the bus (Redis) is back: catching up from the store");
                        cluster.caught_up();
                    }
                    _ => {}
                }
            }
        });
        tokio::spawn(keep_loop(Arc::downgrade(&cluster), listen, listener, cluster.stop.clone()));
        Ok(cluster)
    }

    /// This node's id on the bus.
    pub fn node(&self) -> u64 {
        self.node
    }

    /// The start of every Redis key of this cluster.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A connection for commands (presence, latest values, rate limits).
    pub fn redis(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// Whether Redis answered the last command sent to it (or failed long enough ago to try
    /// again). When it did not, callers that can do without it do.
    pub fn redis_up(&self) -> bool {
        crate::store::now_ms() >= self.down_until.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Run a command for a caller that waits on it (a rate limit, a join): `Err` when Redis is
    /// taken as down, fails, or takes longer than [`QUICK`], which leaves Redis alone for a
    /// moment. (A command sent while the connection is being made again would wait for it.)
    pub async fn quick<T>(
        &self,
        command: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        if !self.redis_up() {
            return Err("Redis was down a moment ago".into());
        }
        match tokio::time::timeout(QUICK, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                self.redis_failed();
                Err(error.to_string())
            }
            Err(_) => {
                self.redis_failed();
                Err(format!("Redis did not answer within {QUICK:?}"))
            }
        }
    }

    /// A command to Redis failed: leave it alone for a moment.
    pub fn redis_failed(&self) {
        let until = crate::store::now_ms() + REDIS_BACKOFF_MS;
        self.down_until.store(until, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stop publishing and listening.
    pub fn close(&self) {
        self.stop.cancel();
    }

    /// Run `deliver` on every node for the durable events of topics starting with `prefix`.
    pub fn durable(&self, prefix: &str, deliver: Arc<dyn Deliver>) {
        self.durables.write().unwrap_or_else(PoisonError::into_inner).push((prefix.to_owned(), deliver));
    }

    /// Call `reload` with the change's detail when another node says `kind` changed, and with
    /// `""` (everything) after the bus reconnects: a change may have been missed meanwhile.
    pub fn on_change(&self, kind: &str, reload: Change) {
        self.changes.write().unwrap_or_else(PoisonError::into_inner).entry(kind.to_owned()).or_default().push(reload);
    }

    /// Tell the other nodes that `kind` changed (`detail` says what, if not everything).
    pub fn changed(&self, kind: &str, detail: &str) {
        self.send(&Message::Change { kind: kind.to_owned(), detail: detail.to_owned() });
    }

    /// A stored event of a durable topic: to the other nodes, and to this node's sequencer.
    pub fn stored(self: &Arc<Self>, topic: &Arc<str>, event: Logged) {
        self.send(&Message::Durable { topic: topic.clone(), event: event.clone() });
        self.offer(topic, event);
    }

    fn send(&self, message: &Message) {
        if self.outbox.try_send(wire::encode(self.node, message)).is_err() {
            tracing::warn!("the bus is not keeping up: a message was dropped");
        }
    }

    /// Lose and delay what this node receives from now on (`None`: stop). For tests.
    pub fn set_chaos(&self, chaos: Option<Chaos>) {
        *self.chaos.lock().unwrap_or_else(PoisonError::into_inner) = chaos;
    }

    fn received(self: &Arc<Self>, push: &PushInfo) {
        // A message push: [channel, payload].
        let Some(redis::Value::BulkString(bytes)) = push.data.get(1) else { return };
        let Some((node, message)) = wire::decode(bytes) else {
            tracing::warn!("a message on the bus that is not one of ours");
            return;
        };
        if node == self.node {
            return;
        }
        let chaos = *self.chaos.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(chaos) = chaos {
            if rand::random::<f64>() < chaos.lose {
                return;
            }
            let wait = chaos.delay.mul_f64(rand::random::<f64>());
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                this.handle(message);
            });
            return;
        }
        self.handle(message);
    }

    fn handle(self: &Arc<Self>, message: Message) {
        match message {
            Message::Event { topic, frame, revoke } => {
                self.hub.publish_local(Event::new(topic, 0, frame, revoke));
            }
            Message::Durable { topic, event } => self.offer(&topic, event),
            Message::Change { kind, detail } => self.reload(&kind, &detail),
        }
    }

    fn reload(&self, kind: &str, detail: &str) {
        let handlers = self.changes.read().unwrap_or_else(PoisonError::into_inner).get(kind).cloned();
        for reload in handlers.unwrap_or_default() {
            reload(detail);
        }
    }

    /// After a reconnection: reload what may have changed, and check every topic's head.
    fn caught_up(self: &Arc<Self>) {
        let kinds: Vec<String> = self.changes.read().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect();
        for kind in kinds {
            self.reload(&kind, "");
        }
        let this = self.clone();
        tokio::spawn(async move { this.check_heads().await });
    }

    fn deliverer(&self, topic: &str) -> Option<Arc<dyn Deliver>> {
        let durables = self.durables.read().unwrap_or_else(PoisonError::into_inner);
        durables.iter().find(|(prefix, _)| topic.starts_with(prefix.as_str())).map(|(_, d)| d.clone())
    }

    fn track(&self, topic: &Arc<str>, delivered: impl FnOnce() -> u64) -> Arc<Mutex<Track>> {
        let mut topics = self.sequencer.topics.lock().unwrap_or_else(PoisonError::into_inner);
        topics
            .entry(topic.clone())
            .or_insert_with(|| {
                let delivered = delivered();
                Arc::new(Mutex::new(Track {
                    delivered,
                    pending: BTreeMap::new(),
                    head: delivered,
                    filling: false,
                    last_used: Instant::now(),
                    watch: tokio::sync::watch::Sender::new(delivered),
                }))
            })
            .clone()
    }

    /// Follow `topic` from its head on (a connection here joins it): whatever is committed
    /// after the head read here is delivered here, in order. Call after subscribing to the hub
    /// and before reading the head the connection replays up to.
    pub async fn follow(&self, topic: &Arc<str>) -> Result<(), StoreError> {
        if self.sequencer.topics.lock().unwrap_or_else(PoisonError::into_inner).contains_key(topic) {
            return Ok(());
        }
        let head = self.store.log_head(topic).await?;
        let track = self.track(topic, || head);
        track.lock().unwrap_or_else(PoisonError::into_inner).last_used = Instant::now();
        Ok(())
    }

    /// An event of a durable topic, from the bus, this node's writer or PostgreSQL: deliver it
    /// and whatever waited for it, drop it if delivered already, keep it if it came early.
    fn offer(self: &Arc<Self>, topic: &Arc<str>, event: Logged) {
        // A topic first heard of now: nobody here could have wanted what came before.
        let first = event.offset.saturating_sub(1);
        let track = self.track(topic, || first);
        let Some(deliver) = self.deliverer(topic) else { return };
        let mut state = track.lock().unwrap_or_else(PoisonError::into_inner);
        state.last_used = Instant::now();
        if event.offset <= state.delivered {
            return;
        }
        state.head = state.head.max(event.offset);
        state.pending.insert(event.offset, event);
        // Delivered under the topic's lock: two sources never pass each other.
        state.drain(&self.hub, topic, &*deliver);
        if state.head > state.delivered && !state.filling {
            state.filling = true;
            let (this, topic, track) = (self.clone(), topic.clone(), track.clone());
            tokio::spawn(async move { this.fill(topic, track).await });
        }
    }

    /// Read a topic's gap from PostgreSQL until what was delivered reaches the known head.
    async fn fill(self: Arc<Self>, topic: Arc<str>, track: Arc<Mutex<Track>>) {
        let mut wait = Duration::from_millis(50);
        loop {
            let (from, to) = {
                let mut state = track.lock().unwrap_or_else(PoisonError::into_inner);
                if state.delivered >= state.head {
                    state.filling = false;
                    return;
                }
                (state.delivered, state.head)
            };
            let limit = (to - from).min(u64::from(FILL_PAGE)) as u32;
            match self.store.events_after(&topic, from, limit).await {
                Ok(events) if events.is_empty() => {
                    // Not in the store (the topic was reset): give the gap up.
                    let mut state = track.lock().unwrap_or_else(PoisonError::into_inner);
                    tracing::warn!(%topic, from, to, "events missing from the store: skipped");
                    let skip_to = state.pending.keys().next().map_or(state.head, |&first| first - 1);
                    state.delivered = state.delivered.max(skip_to);
                    state.watch.send_replace(state.delivered);
                    drop(state);
                    self.drain(&topic, &track);
                }
                Ok(events) => {
                    self.stats.filled.fetch_add(events.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    let mut state = track.lock().unwrap_or_else(PoisonError::into_inner);
                    for event in events {
                        if event.offset > state.delivered {
                            state.pending.insert(event.offset, event);
                        }
                    }
                    drop(state);
                    self.drain(&topic, &track);
                    wait = Duration::from_millis(50);
                }
                Err(error) => {
                    tracing::warn!(%topic, %error, "filling a gap from the store failed; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Deliver what waits in order.
    fn drain(&self, topic: &Arc<str>, track: &Arc<Mutex<Track>>) {
        let Some(deliver) = self.deliverer(topic) else { return };
        track.lock().unwrap_or_else(PoisonError::into_inner).drain(&self.hub, topic, &*deliver);
    }

    /// Wait (a few seconds at most) until this node has delivered `topic` up to `offset`,
    /// reading what it lacks from PostgreSQL now. A connection that replayed up to `offset`
    /// from the store waits for this before it takes live events, which are written to it
    /// without a look at their offsets: nothing it replayed then comes again.
    pub async fn reach(self: &Arc<Self>, topic: &Arc<str>, offset: u64) {
        let track = self.sequencer.topics.lock().unwrap_or_else(PoisonError::into_inner).get(topic).cloned();
        let Some(track) = track else { return };
        let mut delivered = {
            let mut state = track.lock().unwrap_or_else(PoisonError::into_inner);
            if state.delivered >= offset {
                return;
            }
            state.head = state.head.max(offset);
            if !state.filling {
                state.filling = true;
                let (this, topic, track) = (self.clone(), topic.clone(), track.clone());
                tokio::spawn(async move { this.fill(topic, track).await });
            }
            state.watch.subscribe()
        };
        let reached = tokio::time::timeout(REACH_WAIT, delivered.wait_for(|&d| d >= offset)).await;
        if !matches!(reached, Ok(Ok(_))) {
            tracing::warn!(%topic, offset, "this node did not catch up in time: a subscriber may get an event twice");
        }
    }

    /// Compare every followed topic's head in PostgreSQL with what was delivered here, and
    /// fill what is missing (a lost last message, a node that died before it published).
    /// Forget topics nobody here follows any more.
    async fn check_heads(self: &Arc<Self>) {
        let tracks: Vec<(Arc<str>, Arc<Mutex<Track>>)> = {
            let mut topics = self.sequencer.topics.lock().unwrap_or_else(PoisonError::into_inner);
            topics.retain(|topic, track| {
                let idle = track.lock().unwrap_or_else(PoisonError::into_inner).last_used.elapsed() > IDLE_TOPIC;
                !idle || self.hub.subscriber_count(topic) > 0
            });
            topics.iter().map(|(t, s)| (t.clone(), s.clone())).collect()
        };
        if tracks.is_empty() {
            return;
        }
        let names: Vec<&str> = tracks.iter().map(|(t, _)| &**t).collect();
        let heads = match self.store.log_heads(&names).await {
            Ok(heads) => heads,
            Err(error) => {
                tracing::warn!(%error, "reading the topics' heads failed");
                return;
            }
        };
        for (topic, track) in tracks {
            let Some(&head) = heads.get(&*topic) else { continue };
            let mut state = track.lock().unwrap_or_else(PoisonError::into_inner);
            if head > state.head {
                state.head = head;
            }
            if state.head > state.delivered && !state.filling {
                state.filling = true;
                let this = self.clone();
                let track = track.clone();
                tokio::spawn(async move { this.fill(topic, track).await });
            }
        }
    }
}

impl Relay for Cluster {
    fn forward(&self, event: &Event) {
        let message =
            Message::Event { topic: event.topic.clone(), frame: event.frame.clone(), revoke: event.revoke.clone() };
        self.send(&message);
    }

    /// Every node may have subscribers: whether any does is not known here.
    fn everywhere(&self) -> bool {
        true
    }
}

/// Publish what the outbox holds, many messages per trip to Redis.
async fn publish_loop(
    mut redis: ConnectionManager,
    channel: String,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(256);
    let mut failing = false;
    loop {
        let got = tokio::select! {
            _ = stop.cancelled() => 0,
            got = outgoing.recv_many(&mut batch, 256) => got,
        };
        if got == 0 {
            return;
        }
        let mut pipe = redis::pipe();
        for message in batch.drain(..) {
            pipe.cmd("PUBLISH").arg(&channel).arg(message).ignore();
        }
        match pipe.query_async::<()>(&mut redis).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("publishing on the bus works again");
            }
            Ok(()) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "publishing on the bus failed; the store carries durable events meanwhile");
            }
            Err(_) => {}
        }
    }
}

/// How the subscription is made (again).
struct Listen {
    client: redis::Client,
    config: ConnectionManagerConfig,
    pushes: mpsc::UnboundedSender<PushInfo>,
    channel: String,
}

impl Listen {
    /// A connection of its own that subscribes to the bus, resubscribes after a reconnection
    /// by itself, and pushes what it hears (and its disconnections) to the listening task.
    async fn connect(&self) -> redis::RedisResult<ConnectionManager> {
        let config = self.config.clone().set_push_sender(self.pushes.clone()).set_automatic_resubscription();
        let mut listener = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        listener.subscribe(&self.channel).await?;
        Ok(listener)
    }
}

/// Pings that go unanswered in a row before the subscription counts as silent.
const SILENT_AFTER: u32 = 3;

/// Each second: ping through the subscription's connection, and check the followed topics'
/// heads. A manager that gave up reconnecting tries again at its next command; a connection
/// that stays open but answers nothing (a half-open socket, a paused Redis) reports no
/// disconnection: after [`SILENT_AFTER`] unanswered pings the subscription counts as silent,
/// the node catches up from PostgreSQL, and a new subscription replaces it (catching up again
/// once it is made, for what was published meanwhile).
async fn keep_loop(cluster: Weak<Cluster>, listen: Listen, mut listener: ConnectionManager, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(HEAD_CHECK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unanswered = 0u32;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let ping = redis::cmd("PING");
        let answered = tokio::time::timeout(Duration::from_secs(1), ping.query_async::<()>(&mut listener)).await;
        // Only silence counts: an error says the connection is gone, and the manager is
        // connecting again already (and will say so); a second subscription beside it would
        // hear every event twice.
        unanswered = if answered.is_err() { unanswered + 1 } else { 0 };
        let Some(cluster) = cluster.upgrade() else { return };
        if unanswered >= SILENT_AFTER {
            if unanswered == SILENT_AFTER {
                tracing::warn!("the bus (Redis) went silent: catching up from the store, subscribing again");
                cluster.caught_up();
            }
            if let Ok(Ok(fresh)) = tokio::time::timeout(Duration::from_secs(3), listen.connect()).await {
                tracing::info!("the bus (Redis) answers again on a new subscription");
                listener = fresh;
                unanswered = 0;
                cluster.caught_up();
            }
        }
        cluster.check_heads().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_messages_read_back_as_sent_and_nothing_else_reads() {
        let messages = [
            Message::Event { topic: Arc::from("t"), frame: Bytes::from_static(b"{\"a\":1}"), revoke: None },
            Message::Event {
                topic: Arc::from("user:1"),
                frame: Bytes::from_static(b"{}"),
                revoke: Some(Arc::from("chat:x")),
            },
            Message::Durable {
                topic: Arc::from("chat:lobby"),
                event: Logged {
                    offset: 7,
                    id: "id-é".into(),
                    payload: "{\"text\":\"hi\"}".into(),
                    ts: 1_700_000_000_000,
                },
            },
            Message::Change { kind: "chat.rooms".into(), detail: String::new() },
            Message::Change { kind: "presence".into(), detail: "chat:lobby".into() },
        ];
        for message in messages {
            let bytes = wire::encode(42, &message);
            assert_eq!(wire::decode(&bytes), Some((42, message.clone())));
            // Cut short or with bytes after it, it is not a message.
            assert_eq!(wire::decode(&bytes[..bytes.len() - 1]), None);
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(wire::decode(&longer), None);
        }
        assert_eq!(wire::decode(b""), None);
        assert_eq!(wire::decode(b"X12345678"), None);
    }

    #[test]
    fn the_subscription_asks_for_resp3() {
        assert_eq!(resp3("redis://h:1"), "redis://h:1?protocol=resp3");
        assert_eq!(resp3("redis://h:1/2?x=y"), "redis://h:1/2?x=y&protocol=resp3");
        assert_eq!(resp3("redis://h?protocol=resp3"), "redis://h?protocol=resp3");
    }
}
