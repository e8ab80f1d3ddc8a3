//! The hub: topics, their subscribers, and fan-out.
//!
//! Plain tokio and std, with no HTTP or WebSocket in it, so it can be tested and
//! benchmarked alone. An event is encoded once by its publisher; the hub hands the
//! same bytes to every subscriber's bounded queue. A subscriber whose queue is full
//! is *kicked*: it gets nothing more, and its connection closes itself with a code
//! that says why. Publishing never waits and never holds a lock across an `.await`.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

/// One event as it travels to subscribers: already encoded, shared by all of them.
#[derive(Debug)]
pub struct Event {
    pub topic: Arc<str>,
    /// The event's offset in a durable topic, 0 otherwise. Lets a connection drop
    /// what it already replayed from history.
    pub offset: u64,
    /// The text it carries (JSON).
    pub frame: Bytes,
    /// The same text as a whole WebSocket frame from the server: the bytes every recipient's
    /// socket is given. (`frame` is a slice of it.)
    pub wire: Bytes,
    /// A topic each recipient leaves with this frame (access was revoked, or the topic is gone):
    /// nothing of it follows this frame.
    pub revoke: Option<Arc<str>>,
}

impl Event {
    /// An event carrying `text` (UTF-8, as every frame of the protocols is).
    pub fn new(topic: Arc<str>, offset: u64, text: Bytes, revoke: Option<Arc<str>>) -> Event {
        let wire = websocket_text_frame(&text);
        let frame = wire.slice(wire.len() - text.len()..);
        Event { topic, offset, frame, wire, revoke }
    }
}

/// A final, unmasked text frame (RFC 6455 section 5.2), as a server sends it.
pub fn websocket_text_frame(text: &[u8]) -> Bytes {
    let mut wire = Vec::with_capacity(text.len() + 10);
    wire.push(0x81);
    match text.len() {
        len @ 0..=125 => wire.push(len as u8),
        len @ 126..=0xffff => {
            wire.push(126);
            wire.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            wire.push(127);
            wire.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    wire.extend_from_slice(text);
    Bytes::from(wire)
}

/// A connection's socket, written by publishers themselves while its task is idle.
pub trait Direct: Send + Sync + std::fmt::Debug {
    /// Under the connection's output lock: write `frame` (a whole WebSocket frame) behind
    /// whatever waits, unless the connection holds events back or `hold` asks it to start;
    /// then call `queue` instead, still under the lock, so that nothing written later can
    /// pass what was queued. False: too much waits already (the peer is too slow).
    ///
    /// With a `burst`, the frame is left waiting and the connection is added to the burst
    /// (once), which writes all its frames together when it finishes; sooner, in groups, when
    /// enough wait to pass half the connection's bound. A connection that holds events back
    /// gets them queued, as without a burst.
    fn offer(&self, frame: &Bytes, hold: bool, queue: &mut dyn FnMut() -> bool, burst: Option<&mut Burst>) -> bool;

    /// The burst this connection is in has finished: write what waits.
    fn flush_burst(&self);

    /// Ask the CPU to fetch what [`Direct::offer`] reads, ahead of the call (see
    /// [`prefetch`]). Touches no memory itself.
    fn prefetch(&self) {}
}

/// Ask the CPU to start loading `value`'s cache lines, without waiting for them.
///
/// A fan-out to a thousand connections touches each one's state once, and the kernel's
/// TCP work between two of them (one `send`, a few microseconds) evicts it from the
/// nearest caches: each touch was a cache miss, 5–8 % of the server's time in `perf`.
/// Asking for the next connections' lines while the current one is written hides that
/// latency behind the `send`.
#[inline]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        const LINE: usize = 64;
        let start = (value as *const T).cast::<i8>();
        // From the start of the first line the value touches to its last byte.
        let into_line = start as usize % LINE;
        let first = start.wrapping_sub(into_line);
        for offset in (0..into_line + std::mem::size_of::<T>()).step_by(LINE) {
            // SAFETY: a prefetch is a hint: it reads nothing the program can observe and
            // never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(first.wrapping_add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// Several events published back to back (a committed batch of chat messages): each
/// connection gets all of its frames in one write when the burst finishes, rather than the
/// first at once and the others after its coalescing window. Other publishers' frames for a
/// connection in the burst wait for it too. Finishes when dropped.
#[derive(Default)]
pub struct Burst {
    touched: Vec<Arc<dyn Direct>>,
}

impl Burst {
    /// Called by a [`Direct`] the first time the burst leaves a frame waiting on it.
    pub fn touch(&mut self, direct: Arc<dyn Direct>) {
        self.touched.push(direct);
    }

    /// Write every connection's waiting frames.
    pub fn finish(&mut self) {
        let mut touched = self.touched.drain(..).peekable();
        while let Some(direct) = touched.next() {
            if let Some(next) = touched.peek() {
                next.prefetch();
            }
            direct.flush_burst();
        }
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.finish();
    }
}

pub type PeerId = u64;

/// A connection as the hub knows it: where its events go.
#[derive(Debug)]
pub struct Peer {
    id: PeerId,
    tx: mpsc::Sender<Arc<Event>>,
    kicked: AtomicBool,
    kick: Notify,
    topics: Mutex<Vec<Arc<str>>>,
    direct: OnceLock<Arc<dyn Direct>>,
}

impl Peer {
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// Whether the hub gave up on this peer because its queue was full.
    pub fn is_kicked(&self) -> bool {
        self.kicked.load(Ordering::Acquire)
    }

    /// Resolves once the peer is kicked.
    pub async fn kicked(&self) {
        loop {
            let notified = self.kick.notified();
            if self.is_kicked() {
                return;
            }
            notified.await;
        }
    }

    fn kick(&self) {
        if !self.kicked.swap(true, Ordering::AcqRel) {
            self.kick.notify_waiters();
        }
    }

    /// Let publishers write this peer's events into `direct` themselves. Once only.
    pub fn set_direct(&self, direct: Arc<dyn Direct>) {
        let _ = self.direct.set(direct);
    }

    /// Prefetch what delivering to this peer reads next: its connection's state. The peer
    /// itself must be in cache already (its own [`prefetch`] came earlier).
    fn prefetch_direct(&self) {
        if let Some(direct) = self.direct.get() {
            direct.prefetch();
        }
    }

    /// Give an event to this peer alone (for example, one that only it may see): written
    /// to its socket now when it can be, queued for its task otherwise. Returns false and
    /// kicks the peer when too much waits for it.
    pub fn deliver(&self, event: Arc<Event>) -> bool {
        self.deliver_in(event, None)
    }

    /// As [`Peer::deliver`], within a `burst` when there is one.
    fn deliver_in(&self, event: Arc<Event>, burst: Option<&mut Burst>) -> bool {
        if self.is_kicked() {
            return false;
        }
        let Some(direct) = self.direct.get() else { return self.queue(event) };
        let accepted = direct.offer(&event.wire, event.revoke.is_some(), &mut || self.queue(event.clone()), burst);
        if !accepted {
            self.kick();
        }
        accepted
    }

    /// Queue an event for the connection's task.
    fn queue(&self, event: Arc<Event>) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.kick();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

type Subscribers = RwLock<Vec<Arc<Peer>>>;

const SHARDS: usize = 16;

/// Where a node's events go beyond its own subscribers: the other nodes of a cluster
/// (`bus::Cluster`).
pub trait Relay: Send + Sync {
    /// Carry `event` to the other nodes' subscribers.
    fn forward(&self, event: &Event);
    /// Whether other nodes may have subscribers to any topic.
    fn everywhere(&self) -> bool;
}

/// Topics and their subscribers, sharded so that unrelated topics do not contend.
pub struct Hub {
    shards: [Mutex<HashMap<Arc<str>, Arc<Subscribers>>>; SHARDS],
    hasher: RandomState,
    next_peer: AtomicU64,
    relay: OnceLock<Arc<dyn Relay>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            hasher: RandomState::new(),
            next_peer: AtomicU64::new(1),
            relay: OnceLock::new(),
        }
    }
}

impl Hub {
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub::default())
    }

    /// Carry [`Hub::publish`]'s events to other nodes too. Once only.
    pub fn set_relay(&self, relay: Arc<dyn Relay>) {
        let _ = self.relay.set(relay);
    }

    /// Whether an event of `topic` has anyone to reach: a subscriber here, or maybe on
    /// another node. Publishers skip encoding what nobody would get.
    pub fn wanted(&self, topic: &str) -> bool {
        self.relay.get().is_some_and(|relay| relay.everywhere()) || self.subscriber_count(topic) > 0
    }

    /// Register a connection with an outbound queue of `queue_len` events.
    pub fn connect(&self, queue_len: usize) -> (Arc<Peer>, mpsc::Receiver<Arc<Event>>) {
        let (tx, rx) = mpsc::channel(queue_len.max(1));
        let peer = Arc::new(Peer {
            id: self.next_peer.fetch_add(1, Ordering::Relaxed),
            tx,
            kicked: AtomicBool::new(false),
            kick: Notify::new(),
            topics: Mutex::new(Vec::new()),
            direct: OnceLock::new(),
        });
        (peer, rx)
    }

    fn shard(&self, topic: &str) -> &Mutex<HashMap<Arc<str>, Arc<Subscribers>>> {
        // The modulo keeps the index in range; truncation of the hash is intended.
        let index = (self.hasher.hash_one(topic) as usize) % SHARDS;
        &self.shards[index]
    }

    fn subscribers(&self, topic: &str) -> Option<Arc<Subscribers>> {
        let shard = self.shard(topic).lock().unwrap_or_else(PoisonError::into_inner);
        shard.get(topic).cloned()
    }

    /// Add `peer` to `topic`. Subscribing twice is a no-op. Returns the topic's shared name.
    pub fn subscribe(&self, topic: &str, peer: &Arc<Peer>) -> Arc<str> {
        let mut shard = self.shard(topic).lock().unwrap_or_else(PoisonError::into_inner);
        let (name, subs) = match shard.get_key_value(topic) {
            Some((name, subs)) => (name.clone(), subs.clone()),
            None => {
                let name: Arc<str> = Arc::from(topic);
                let subs = Arc::new(RwLock::new(Vec::new()));
                shard.insert(name.clone(), subs.clone());
                (name, subs)
            }
        };
        let mut topics = peer.topics.lock().unwrap_or_else(PoisonError::into_inner);
        if !topics.iter().any(|t| **t == *topic) {
            topics.push(name.clone());
            // Pushed under the shard lock, so a concurrent last unsubscribe cannot orphan it.
            subs.write().unwrap_or_else(PoisonError::into_inner).push(peer.clone());
        }
        name
    }

    /// Remove `peer` from `topic`; forgets the topic when it has no subscribers left.
    pub fn unsubscribe(&self, topic: &str, peer: &Peer) {
        {
            let mut topics = peer.topics.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(pos) = topics.iter().position(|t| **t == *topic) else {
                return;
            };
            topics.swap_remove(pos);
        }
        self.remove_from(topic, peer.id);
    }

    fn remove_from(&self, topic: &str, peer: PeerId) {
        let mut shard = self.shard(topic).lock().unwrap_or_else(PoisonError::into_inner);
        let Some(subs) = shard.get(topic) else { return };
        let now_empty = {
            let mut subs = subs.write().unwrap_or_else(PoisonError::into_inner);
            if let Some(pos) = subs.iter().position(|p| p.id == peer) {
                subs.swap_remove(pos);
            }
            subs.is_empty()
        };
        if now_empty {
            shard.remove(topic);
        }
    }

    /// Remove `peer` from every topic it is in.
    pub fn disconnect(&self, peer: &Peer) {
        let topics = std::mem::take(&mut *peer.topics.lock().unwrap_or_else(PoisonError::into_inner));
        for topic in topics {
            self.remove_from(&topic, peer.id);
        }
    }

    /// Queue `event` for every subscriber of its topic, on every node. Returns how many got
    /// it here.
    pub fn publish(&self, event: Event) -> usize {
        if let Some(relay) = self.relay.get() {
            relay.forward(&event);
        }
        self.publish_in(event, None)
    }

    /// Queue `event` for this node's subscribers of its topic only (an event from another
    /// node, or one that every node makes for itself, as a durable topic's fan-out does).
    pub fn publish_local(&self, event: Event) -> usize {
        self.publish_in(event, None)
    }

    /// As [`Hub::publish_local`]; with a `burst`, the frames go out when the burst finishes.
    pub fn publish_in(&self, event: Event, mut burst: Option<&mut Burst>) -> usize {
        let Some(subs) = self.subscribers(&event.topic) else {
            return 0;
        };
        let event = Arc::new(event);
        let subs = subs.read().unwrap_or_else(PoisonError::into_inner);
        let mut delivered = 0;
        for (i, peer) in subs.iter().enumerate() {
            // Two steps ahead: the peer after next, whose state names its connection; then
            // the next peer's connection, now that its peer was fetched a step ago.
            if let Some(after_next) = subs.get(i + 2) {
                prefetch::<Peer>(after_next);
            }
            if let Some(next) = subs.get(i + 1) {
                next.prefetch_direct();
            }
            if peer.deliver_in(event.clone(), burst.as_deref_mut()) {
                delivered += 1;
            }
        }
        delivered
    }

    /// The topics starting with `prefix` that have subscribers here.
    pub fn topics_with_prefix(&self, prefix: &str) -> Vec<Arc<str>> {
        let mut topics = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            topics.extend(shard.keys().filter(|topic| topic.starts_with(prefix)).cloned());
        }
        topics
    }

    /// How many connections subscribe to `topic`.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.subscribers(topic).map(|subs| subs.read().unwrap_or_else(PoisonError::into_inner).len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(topic: &str, offset: u64) -> Event {
        Event::new(Arc::from(topic), offset, Bytes::from(format!("{offset}")), None)
    }

    #[test]
    fn publish_reaches_every_subscriber_with_the_same_bytes() {
        let hub = Hub::new();
        let mut receivers = Vec::new();
        for _ in 0..10 {
            let (peer, rx) = hub.connect(8);
            hub.subscribe("t", &peer);
            receivers.push((peer, rx));
        }
        assert_eq!(hub.publish(event("t", 1)), 10);
        let first = receivers[0].1.try_recv().unwrap();
        for (_, rx) in &mut receivers[1..] {
            let got = rx.try_recv().unwrap();
            assert!(Arc::ptr_eq(&got, &first), "every subscriber shares one encoded event");
        }
    }

    #[test]
    fn topics_are_independent_and_unsubscribe_stops_delivery() {
        let hub = Hub::new();
        let (a, mut rx_a) = hub.connect(8);
        let (b, mut rx_b) = hub.connect(8);
        hub.subscribe("x", &a);
        hub.subscribe("x", &a);
        hub.subscribe("y", &b);
        assert_eq!(hub.subscriber_count("x"), 1, "a double subscribe counts once");
        assert_eq!(hub.publish(event("x", 1)), 1);
        assert!(rx_b.try_recv().is_err());
        assert_eq!(rx_a.try_recv().unwrap().offset, 1);
        hub.unsubscribe("x", &a);
        assert_eq!(hub.publish(event("x", 2)), 0);
        assert!(rx_a.try_recv().is_err());
        hub.disconnect(&b);
        assert_eq!(hub.subscriber_count("y"), 0);
    }

    #[test]
    fn wire_frames_carry_their_length_in_the_smallest_form() {
        for (len, header) in [(0, vec![0x81, 0]), (125, vec![0x81, 125]), (126, vec![0x81, 126, 0, 126])] {
            let event = Event::new(Arc::from("t"), 0, Bytes::from(vec![b'x'; len]), None);
            assert_eq!(&event.wire[..header.len()], &header[..]);
            assert_eq!(event.wire.len(), header.len() + len);
            assert_eq!(event.frame.len(), len);
        }
        let big = websocket_text_frame(&vec![b'x'; 70_000]);
        assert_eq!(&big[..10], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }

    #[tokio::test]
    async fn a_full_queue_kicks_only_that_peer() {
        let hub = Hub::new();
        let (slow, _slow_rx) = hub.connect(2);
        let (fast, mut fast_rx) = hub.connect(100);
        hub.subscribe("t", &slow);
        hub.subscribe("t", &fast);
        for i in 1..=5 {
            hub.publish(event("t", i));
            assert_eq!(fast_rx.recv().await.unwrap().offset, i);
        }
        assert!(slow.is_kicked());
        assert!(!fast.is_kicked());
        tokio::time::timeout(std::time::Duration::from_secs(1), slow.kicked()).await.unwrap();
    }
}
