//! Durable topics, the writing side: one writer task per log that makes events durable in
//! batches (group commit: one transaction, one `fsync`, many events) and only then fans them
//! out, in offset order, and answers each publisher.
//!
//! A feature says what its stored events mean and how one is fanned out ([`Durable`]);
//! offsets, idempotency (a retry under the same id is answered `duplicate` and stored once)
//! and the order of commit, fan-out and acknowledgement are kept here, once. One writer per
//! log means offsets are handed out in the order they are broadcast, so a client that drops
//! everything at or below its last offset never drops something it has not seen. The reading
//! side (subscribe, resume, replay) is [`super::gateway::Conn::join_durable`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use bytes::Bytes;

use super::batch::{self, Pace};
use super::bus::{Cluster, Deliver};
use super::gateway::History;
use super::hub::{Burst, Hub};
use crate::store::events::{EventWriter, Logged, NewEvent};
use crate::store::{Store, StoreError};

/// A durable topic's history in the store's log of events (`store::events`), as the core
/// replays it: `frame` makes an event's frame.
pub struct EventHistory<'a, F> {
    pub store: &'a Store,
    pub topic: &'a str,
    pub frame: F,
}

#[async_trait]
impl<F> History for EventHistory<'_, F>
where
    F: Fn(&str, Logged) -> Result<Bytes, StoreError> + Send + Sync,
{
    async fn head(&self) -> Result<u64, StoreError> {
        self.store.log_head(self.topic).await
    }

    async fn after(&self, offset: u64, limit: u32) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let events = self.store.events_after(self.topic, offset, limit).await?;
        events.into_iter().map(|event| Ok((event.offset, (self.frame)(self.topic, event)?))).collect()
    }
}

/// Requests waiting for a writer before publishers wait for room.
const WRITER_QUEUE: usize = 4096;

/// An event as stored: at its offset, or found stored already under its id.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<T> {
    pub value: T,
    pub offset: u64,
    /// An earlier try with the same id stored it; this one stored nothing.
    pub duplicate: bool,
}

/// A feature's durable topics: what their stored events mean, and how one is fanned out.
pub trait Durable: Send + Sync + 'static {
    /// An event as its feature reads it (a chat message), as its publisher hears back.
    type Value: Clone + Send + 'static;

    /// Read a stored event of `topic`.
    fn value(&self, topic: &str, event: &Logged) -> Result<Self::Value, StoreError>;

    /// Fan a stored event out to this node's subscribers (on several nodes, each node does,
    /// in offset order: see [`super::bus`]). With a burst, frames wait for the batch's last
    /// (see [`Burst`]).
    fn fan_out(&self, hub: &Hub, topic: &Arc<str>, value: &Self::Value, burst: Option<&mut Burst>);
}

impl<D: Durable> Deliver for D {
    fn deliver(&self, hub: &Hub, topic: &Arc<str>, event: Logged) {
        match self.value(topic, &event) {
            Ok(value) => self.fan_out(hub, topic, &value, None),
            Err(error) => tracing::error!(%topic, offset = event.offset, %error, "a stored event is not readable"),
        }
    }
}

/// Why an append was not stored.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WriteError {
    #[error("storing failed: {0}")]
    Failed(String),
    #[error("the server is shutting down")]
    ShuttingDown,
}

struct Pending<D: Durable> {
    event: NewEvent,
    reply: oneshot::Sender<Result<Stored<D::Value>, WriteError>>,
}

/// This node's one writer of a feature's durable topics.
pub struct Writer<D: Durable> {
    tx: mpsc::Sender<Pending<D>>,
    task: Mutex<Option<JoinHandle<()>>>,
    stop: CancellationToken,
}

/// Where a writer's stored events go: this node's subscribers, or through the cluster's
/// sequencer to every node's.
struct Fanout<D> {
    durable: Arc<D>,
    hub: Arc<Hub>,
    cluster: Option<Arc<Cluster>>,
}

impl<D: Durable> Writer<D> {
    /// Start the writer: at most `max_batch` events per transaction, batches at least
    /// `commit_window` apart while busy (see [`Pace`]). In a cluster, `durable` is also
    /// what every node runs for the events other nodes store.
    pub fn start(
        events: EventWriter,
        durable: Arc<D>,
        hub: Arc<Hub>,
        cluster: Option<Arc<Cluster>>,
        max_batch: usize,
        commit_window: Duration,
    ) -> Writer<D> {
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let stop = CancellationToken::new();
        let fanout = Fanout { durable, hub, cluster };
        let task = tokio::spawn(write_loop(events, fanout, rx, stop.clone(), max_batch, commit_window));
        Writer { tx, task: Mutex::new(Some(task)), stop }
    }

    /// Store an event, then publish it. Resolves once it is durable.
    pub async fn append(&self, event: NewEvent) -> Result<Stored<D::Value>, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Pending { event, reply }).await.map_err(|_| WriteError::ShuttingDown)?;
        answer.await.map_err(|_| WriteError::ShuttingDown)?
    }

    /// Stop taking events, store every one already taken, and wait for the writer.
    pub async fn close(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

async fn write_loop<D: Durable>(
    mut log: EventWriter,
    fanout: Fanout<D>,
    mut rx: mpsc::Receiver<Pending<D>>,
    stop: CancellationToken,
    max_batch: usize,
    commit_window: Duration,
) {
    let mut pending = Vec::with_capacity(max_batch);
    let mut events = Vec::with_capacity(max_batch);
    let mut pace = Pace::new(commit_window);
    while batch::next(&mut rx, &stop, max_batch, &mut pace, &mut pending).await {
        let replies: Vec<_> = pending
            .drain(..)
            .map(|p: Pending<D>| {
                events.push(p.event);
                p.reply
            })
            .collect();
        match log.append_batch(&events).await {
            Ok(appended) => {
                let read: Vec<_> =
                    appended.iter().zip(&events).map(|(a, e)| fanout.durable.value(&e.topic, &a.event)).collect();
                match &fanout.cluster {
                    // Several events: each connection gets them in one write (see `Burst`),
                    // before any publisher hears back. One: written at once, connection by
                    // connection, which spares a second pass over every subscriber
                    // (docs/benchmarks.md).
                    None => {
                        let mut burst = Burst::default();
                        let several = appended.len() > 1;
                        for ((appended, event), value) in appended.iter().zip(&events).zip(&read) {
                            if let (false, Ok(value)) = (appended.duplicate, value) {
                                fanout.durable.fan_out(&fanout.hub, &event.topic, value, several.then_some(&mut burst));
                            }
                        }
                        burst.finish();
                    }
                    // Every node's sequencer delivers it, this one's included. A duplicate too:
                    // its first try's node may have died before it published.
                    Some(cluster) => {
                        for (appended, event) in appended.iter().zip(&events) {
                            cluster.stored(&event.topic, appended.event.clone());
                        }
                    }
                }
                for ((reply, appended), value) in replies.into_iter().zip(appended).zip(read) {
                    let answer = value
                        .map(|value| Stored { value, offset: appended.event.offset, duplicate: appended.duplicate })
                        .map_err(|error| WriteError::Failed(error.to_string()));
                    let _ = reply.send(answer);
                }
            }
            Err(error) => {
                tracing::error!(%error, "storing {} events failed", events.len());
                let reason = error.to_string();
                for reply in replies {
                    let _ = reply.send(Err(WriteError::Failed(reason.clone())));
                }
            }
        }
        events.clear();
    }
}
