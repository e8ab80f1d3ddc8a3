//! Durable topics, the writing side: one writer task per log that makes events durable in
//! batches (group commit: one transaction, one `fsync`, many events) and only then fans them
//! out, in offset order, and answers each publisher.
//!
//! A feature says how its log is stored and what an event looks like on the wire ([`Log`]);
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
use super::gateway::History;
use super::hub::{Burst, Hub};
use crate::store::events::Logged;
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

/// A feature's durable log.
#[async_trait]
pub trait Log: Send + 'static {
    /// What a publisher appends (with whatever its fan-out needs to know).
    type Entry: Send + 'static;
    /// The event as stored, as its publisher hears back.
    type Value: Clone + Send + 'static;

    /// Store a batch in one transaction, in order: each entry gets the next offset of its
    /// topic, unless its id is stored already (then it is a duplicate, and uses no offset).
    /// On error nothing of the batch is stored.
    async fn append(&mut self, batch: &[Self::Entry]) -> Result<Vec<Stored<Self::Value>>, StoreError>;

    /// Fan a newly stored event out (never called for duplicates). With a burst, frames wait
    /// for the batch's last (see [`Burst`]).
    fn publish(&self, hub: &Hub, entry: &Self::Entry, stored: &Stored<Self::Value>, burst: Option<&mut Burst>);
}

/// Why an append was not stored.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WriteError {
    #[error("storing failed: {0}")]
    Failed(String),
    #[error("the server is shutting down")]
    ShuttingDown,
}

struct Pending<L: Log> {
    entry: L::Entry,
    reply: oneshot::Sender<Result<Stored<L::Value>, WriteError>>,
}

/// The one writer of a log.
pub struct Writer<L: Log> {
    tx: mpsc::Sender<Pending<L>>,
    task: Mutex<Option<JoinHandle<()>>>,
    stop: CancellationToken,
}

impl<L: Log> Writer<L> {
    /// Start the writer: at most `max_batch` events per transaction, batches at least
    /// `commit_window` apart while busy (see [`Pace`]).
    pub fn start(log: L, hub: Arc<Hub>, max_batch: usize, commit_window: Duration) -> Writer<L> {
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let stop = CancellationToken::new();
        let task = tokio::spawn(write_loop(log, hub, rx, stop.clone(), max_batch, commit_window));
        Writer { tx, task: Mutex::new(Some(task)), stop }
    }

    /// Store an event, then publish it. Resolves once it is durable.
    pub async fn append(&self, entry: L::Entry) -> Result<Stored<L::Value>, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Pending { entry, reply }).await.map_err(|_| WriteError::ShuttingDown)?;
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

async fn write_loop<L: Log>(
    mut log: L,
    hub: Arc<Hub>,
    mut rx: mpsc::Receiver<Pending<L>>,
    stop: CancellationToken,
    max_batch: usize,
    commit_window: Duration,
) {
    let mut pending = Vec::with_capacity(max_batch);
    let mut entries = Vec::with_capacity(max_batch);
    let mut pace = Pace::new(commit_window);
    while batch::next(&mut rx, &stop, max_batch, &mut pace, &mut pending).await {
        let replies: Vec<_> = pending
            .drain(..)
            .map(|p: Pending<L>| {
                entries.push(p.entry);
                p.reply
            })
            .collect();
        match log.append(&entries).await {
            Ok(stored) => {
                // Several events: each connection gets them in one write (see `Burst`), before
                // any publisher hears back. One: written at once, connection by connection,
                // which spares a second pass over every subscriber (docs/benchmarks.md).
                let mut burst = Burst::default();
                let several = stored.len() > 1;
                for (entry, stored) in entries.iter().zip(&stored) {
                    if !stored.duplicate {
                        log.publish(&hub, entry, stored, several.then_some(&mut burst));
                    }
                }
                burst.finish();
                for (reply, stored) in replies.into_iter().zip(stored) {
                    let _ = reply.send(Ok(stored));
                }
            }
            Err(error) => {
                tracing::error!(%error, "storing {} events failed", entries.len());
                let reason = error.to_string();
                for reply in replies {
                    let _ = reply.send(Err(WriteError::Failed(reason.clone())));
                }
            }
        }
        entries.clear();
    }
}
