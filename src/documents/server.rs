//! Documents on the server: who may see and change which, each open document's copy in
//! memory, its update log, awareness, history and snapshots.
//!
//! **The log.** Every update is an event of the document's durable topic `doc:<id>`
//! (`store::events`): stored by the core's writer (group commit) before it is acknowledged,
//! carried between nodes by the bus in order, with gaps filled from PostgreSQL. The node that
//! takes an update from its editor applies it to its copy and sends it to its own subscribers
//! at once, before it is stored (nothing is lost by that: see [`Documents::edit`]); every other
//! node does both once it is stored ([`DocLog`], a [`Durable`]). Merging is the CRDT's: updates
//! commute and applying one twice changes nothing, so a copy is the snapshot, the log read at
//! opening, and whatever was stored meanwhile, in any order.
//!
//! **Snapshots.** Once a document has been quiet for a moment, or its log has grown past a
//! bound since the last one, a snapshot is made from the store (the last snapshot and the
//! events after it) and kept if it goes further than the one kept. Opening a document reads
//! the snapshot and the events after it. The log stays: it is the history.
//!
//! **Awareness** (carets, selections, who is in the document) is not stored: each node keeps
//! the entries its own connections announced, sends them to a newcomer, and passes every change
//! to every node's subscribers. The name in an entry is always its sender's, set here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::crdt::{CrdtError, DocState, Limits};
use super::protocol::{
    doc_topic, docs_topic, encode_base64, parse_doc_topic, DocFrame, DocListFrame, DocumentInfo, Version,
    DOC_TOPIC_PREFIX,
};
use super::store::{Document, Snapshot};
use super::yproto::{decode_awareness, encode_awareness, is_empty_update, AwarenessEntry, YMessage};
use crate::accounts::auth::Identity;
use crate::chat::server::Chat;
use crate::chat::store::Room;
use crate::realtime::protocol::{ErrorCode, ServerFrame};
use crate::realtime::server::bus::Cluster;
use crate::realtime::server::durable::{Durable, WriteError, Writer};
use crate::realtime::server::hub::{Burst, Event, Hub, Relay};
use crate::realtime::server::limit::RateLimiter;
use crate::realtime::server::user_topic;
use crate::store::events::{Logged, NewEvent};
use crate::store::{now_ms, Store, StoreError};

/// The change that asks the other nodes for their awareness entries of a document (its
/// detail: the document's id).
const AWARENESS_WANTED: &str = "doc-awareness";
/// Offsets of the log read per query.
const READ_PAGE: u64 = 20_000;
/// Updates stored per transaction at most.
const MAX_BATCH: usize = 256;
/// A document quiet this long gets a snapshot of what its log gained.
const QUIET: Duration = Duration::from_secs(3);
/// A log that gained this many updates since the last snapshot gets one, quiet or not.
const SNAPSHOT_EVERY: u64 = 1000;
/// A document nobody here has open is dropped from memory after this long.
const IDLE: Duration = Duration::from_secs(30);
/// A pause between edits longer than this starts a new version in the history.
const VERSION_PAUSE_MS: i64 = 60_000;
/// Versions listed at most, newest first.
const MAX_VERSIONS: usize = 200;
/// Awareness clients one connection may announce in one document.
pub const MAX_CLIENTS_PER_CONNECTION: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("no such document")]
    UnknownDocument,
    #[error("no room is named {0:?}")]
    UnknownRoom(String),
    #[error("a document name is 1 to 100 characters, without `/`")]
    BadName,
    #[error("the room has a document named {0:?} already")]
    NameTaken(String),
    #[error("only the document's creator or an admin may do that")]
    Forbidden,
    #[error("too many edits too fast; wait a moment")]
    RateLimited,
    #[error("{0}")]
    Crdt(#[from] CrdtError),
    #[error("not a y-protocols sync or awareness message")]
    NotYjs,
    #[error("an awareness update is a few entries of at most {MAX_CLIENTS_PER_CONNECTION} clients")]
    BadAwareness,
    #[error("no version at offset {0}")]
    UnknownVersion(u64),
    #[error(transparent)]
    Store(StoreError),
    #[error("storing failed: {0}")]
    Write(#[from] WriteError),
}

impl From<StoreError> for DocError {
    fn from(error: StoreError) -> DocError {
        match error {
            StoreError::NameTaken(name) => DocError::NameTaken(name),
            other => DocError::Store(other),
        }
    }
}

impl DocError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DocError::UnknownDocument | DocError::UnknownVersion(_) => ErrorCode::UnknownDocument,
            DocError::UnknownRoom(_) => ErrorCode::UnknownRoom,
            DocError::BadName | DocError::NotYjs | DocError::BadAwareness => ErrorCode::InvalidField,
            DocError::Crdt(CrdtError::Malformed(_)) => ErrorCode::InvalidField,
            DocError::Crdt(_) => ErrorCode::TooLarge,
            DocError::NameTaken(_) => ErrorCode::NameTaken,
            DocError::Forbidden => ErrorCode::Forbidden,
            DocError::RateLimited => ErrorCode::RateLimited,
            DocError::Store(_) | DocError::Write(_) => ErrorCode::Internal,
        }
    }

    pub fn is_internal(&self) -> bool {
        self.code() == ErrorCode::Internal
    }
}

/// An update as the log keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct DocUpdate {
    pub author: String,
    pub update: Bytes,
    /// The node that took it from its editor (0 on one node).
    pub node: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Payload {
    author: String,
    key: String,
    update: String,
    #[serde(default)]
    node: u64,
}

/// A document open on this node.
pub struct OpenDoc {
    pub id: i64,
    state: Mutex<DocState>,
    /// Read from the store once; until then, updates stored meanwhile are applied already.
    loaded: OnceCell<()>,
    awareness: Mutex<HashMap<u64, (u64, String)>>,
    /// Updates applied since the last snapshot was asked for.
    since_snapshot: AtomicU64,
    /// When it was last edited or followed (milliseconds since the Unix epoch).
    last_used: AtomicI64,
}

impl OpenDoc {
    fn state(&self) -> std::sync::MutexGuard<'_, DocState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The text now.
    pub fn text(&self) -> String {
        self.state().text()
    }

    fn touch(&self) {
        self.last_used.store(now_ms(), Ordering::Relaxed);
    }
}

/// Documents' durable topics: what a stored update is, and what every node does with it.
pub struct DocLog {
    open: Mutex<HashMap<i64, Arc<OpenDoc>>>,
    /// This node's number in the cluster (0 on one node).
    node: u64,
}

impl DocLog {
    fn get(&self, id: i64) -> Option<Arc<OpenDoc>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).get(&id).cloned()
    }
}

fn frame<T: serde::Serialize>(frame: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(frame).unwrap_or_default())
}

/// A `doc_sync` frame carrying `message`.
pub fn sync_frame(topic: &str, message: &YMessage) -> Bytes {
    frame(&DocFrame::DocSync { topic: topic.to_owned(), data: encode_base64(&message.encode()) })
}

impl Durable for DocLog {
    type Value = DocUpdate;

    fn value(&self, _topic: &str, event: &Logged) -> Result<DocUpdate, StoreError> {
        let payload: Payload = serde_json::from_str(&event.payload).map_err(|e| StoreError::Payload(e.to_string()))?;
        let update = super::protocol::decode_base64(&payload.update)
            .ok_or_else(|| StoreError::Payload("an update that is not base64".into()))?;
        Ok(DocUpdate { author: payload.author, update: Bytes::from(update), node: payload.node })
    }

    /// Apply a stored update to this node's copy, and send it to this node's subscribers,
    /// unless this node took it from its editor: it did both then already (see
    /// [`Documents::edit`]).
    fn fan_out(&self, hub: &Hub, topic: &Arc<str>, value: &DocUpdate, burst: Option<&mut Burst>) {
        let Some(id) = parse_doc_topic(topic) else { return };
        if let Some(open) = self.get(id) {
            if value.node != self.node {
                if let Err(error) = open.state().apply_unchecked(&value.update) {
                    tracing::warn!(%topic, %error, "a stored update did not apply");
                }
            }
            open.since_snapshot.fetch_add(1, Ordering::Relaxed);
            open.touch();
        }
        if value.node != self.node && hub.subscriber_count(topic) > 0 {
            let text = sync_frame(topic, &YMessage::Update(value.update.to_vec()));
            hub.publish_in(Event::new(topic.clone(), 0, text, None), burst);
        }
    }
}

/// What one connection announced in the documents it has open: their awareness clients.
#[derive(Default)]
pub struct Announced {
    clients: HashMap<i64, Vec<(u64, u64)>>,
}

impl Announced {
    /// The clients (and their last clocks) announced in a document, forgotten here.
    pub fn take(&mut self, doc: i64) -> Vec<(u64, u64)> {
        self.clients.remove(&doc).unwrap_or_default()
    }

    /// Every document's clients.
    pub fn all(self) -> impl Iterator<Item = (i64, Vec<(u64, u64)>)> {
        self.clients.into_iter()
    }
}

pub struct Documents {
    store: Store,
    hub: Arc<Hub>,
    chat: Arc<Chat>,
    cluster: Option<Arc<Cluster>>,
    log: Arc<DocLog>,
    writer: Writer<DocLog>,
    limiter: RateLimiter,
    limits: Limits,
    stop: CancellationToken,
}

impl Documents {
    /// Start the log's writer and the keeper of snapshots. `rates`: each person's edits per
    /// second, and at once.
    pub async fn start(
        store: Store,
        hub: Arc<Hub>,
        chat: Arc<Chat>,
        cluster: Option<Arc<Cluster>>,
        (rate, burst): (f64, f64),
        commit_window: Duration,
        limits: Limits,
    ) -> Result<Arc<Documents>, StoreError> {
        let node = cluster.as_ref().map_or(0, |cluster| cluster.node());
        let log = Arc::new(DocLog { open: Mutex::new(HashMap::new()), node });
        let writer = Writer::start(
            store.event_writer().await?,
            log.clone(),
            hub.clone(),
            cluster.clone(),
            MAX_BATCH,
            commit_window,
        );
        if let Some(cluster) = &cluster {
            cluster.durable(DOC_TOPIC_PREFIX, log.clone());
        }
        let documents = Arc::new(Documents {
            store,
            hub,
            chat,
            cluster,
            log,
            writer,
            limiter: RateLimiter::new(rate, burst),
            limits,
            stop: CancellationToken::new(),
        });
        tokio::spawn(keep_snapshots(Arc::downgrade(&documents), documents.stop.clone()));
        let weak = Arc::downgrade(&documents);
        documents.chat.on_member_removed(Box::new(move |room: &Room, user: i64| {
            let (weak, room) = (weak.clone(), room.clone());
            tokio::spawn(async move {
                if let Some(documents) = weak.upgrade() {
                    documents.revoke(&room, user).await;
                }
            });
        }));
        if let Some(cluster) = &documents.cluster {
            let weak = Arc::downgrade(&documents);
            cluster.on_change(
                AWARENESS_WANTED,
                Arc::new(move |detail: &str| {
                    if let (Some(documents), Ok(id)) = (weak.upgrade(), detail.parse()) {
                        documents.resend_awareness(id);
                    }
                }),
            );
        }
        Ok(documents)
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Stop: the writer stores what it took.
    pub async fn close(&self) {
        self.stop.cancel();
        self.writer.close().await;
    }

    /// The document and its room, if `who` may see it.
    pub async fn visible(&self, id: i64, who: &Identity) -> Result<(Document, Room), DocError> {
        let document = self.store.document(id).await?.ok_or(DocError::UnknownDocument)?;
        let room = self.chat.room_by_id(document.room_id).filter(|room| self.chat.can_access(room, who));
        let room = room.ok_or(DocError::UnknownDocument)?;
        Ok((document, room))
    }

    pub fn info(document: &Document, room: &Room) -> DocumentInfo {
        DocumentInfo {
            id: document.id,
            room: room.name.clone(),
            name: document.name.clone(),
            creator: document.creator_name.clone(),
            created_at: document.created_at,
        }
    }

    /// Whether `who` may rename or delete the document: its creator, or an admin.
    pub fn may_manage(document: &Document, who: &Identity) -> bool {
        document.creator_key == who.key() || who.user().is_some_and(|user| user.is_admin)
    }

    /// A room's documents, if `who` may see the room.
    pub async fn list(&self, room: &str, who: &Identity) -> Result<Vec<DocumentInfo>, DocError> {
        let room = self.chat.room_for(room, who).map_err(|_| DocError::UnknownRoom(room.to_owned()))?;
        let documents = self.store.documents_in_room(room.id).await?;
        Ok(documents.iter().map(|document| Documents::info(document, &room)).collect())
    }

    /// Tell everyone following the room's list what it is now.
    async fn list_changed(&self, room: &Room) {
        let topic = docs_topic(&room.name);
        match self.store.documents_in_room(room.id).await {
            Ok(documents) => {
                let documents = documents.iter().map(|document| Documents::info(document, room)).collect();
                let text = frame(&DocListFrame::Documents { topic: topic.clone(), documents });
                self.hub.publish(Event::new(Arc::from(topic), 0, text, None));
            }
            Err(error) => tracing::warn!(%error, "reading a room's documents failed"),
        }
    }

    /// Make a document in a room (anyone who may write there).
    pub async fn create(&self, room: &str, name: &str, who: &Identity) -> Result<DocumentInfo, DocError> {
        let room = self.chat.room_for(room, who).map_err(|_| DocError::UnknownRoom(room.to_owned()))?;
        let name = super::protocol::clean_name(name).ok_or(DocError::BadName)?;
        self.chat.check_rate(who).await.map_err(|_| DocError::RateLimited)?;
        let document = self.store.create_document(room.id, &name, &who.key(), &who.display_name()).await?;
        self.list_changed(&room).await;
        Ok(Documents::info(&document, &room))
    }

    /// The room's document named `name`, made now if there is none and `who` may make it (the
    /// Yjs endpoint's way).
    pub async fn find_or_create(&self, room: &str, name: &str, who: &Identity) -> Result<i64, DocError> {
        let found = self.chat.room_for(room, who).map_err(|_| DocError::UnknownRoom(room.to_owned()))?;
        if let Some(document) = self.store.document_named(found.id, name).await? {
            return Ok(document.id);
        }
        match self.create(room, name, who).await {
            Ok(info) => Ok(info.id),
            // Someone made it meanwhile.
            Err(DocError::NameTaken(_)) => {
                let document = self.store.document_named(found.id, name).await?;
                document.map(|d| d.id).ok_or(DocError::UnknownDocument)
            }
            Err(error) => Err(error),
        }
    }

    /// Rename a document (its creator, or an admin).
    pub async fn rename(&self, id: i64, name: &str, who: &Identity) -> Result<(), DocError> {
        let (document, room) = self.visible(id, who).await?;
        if !Documents::may_manage(&document, who) {
            return Err(DocError::Forbidden);
        }
        let name = super::protocol::clean_name(name).ok_or(DocError::BadName)?;
        if !self.store.rename_document(id, &name).await? {
            return Err(DocError::UnknownDocument);
        }
        let topic = doc_topic(id);
        let text = frame(&DocFrame::DocumentRenamed { topic: topic.clone(), name });
        self.hub.publish(Event::new(Arc::from(topic), 0, text, None));
        self.list_changed(&room).await;
        Ok(())
    }

    /// Delete a document and its history (its creator, or an admin). Everyone who has it open
    /// is told, and follows it no more.
    pub async fn delete(&self, id: i64, who: &Identity) -> Result<(), DocError> {
        let (document, room) = self.visible(id, who).await?;
        if !Documents::may_manage(&document, who) {
            return Err(DocError::Forbidden);
        }
        if !self.store.delete_document(id).await? {
            return Err(DocError::UnknownDocument);
        }
        self.log.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        let topic: Arc<str> = Arc::from(doc_topic(id));
        let text = frame(&DocFrame::DocumentDeleted { topic: topic.to_string() });
        self.hub.publish(Event::new(topic.clone(), 0, text, Some(topic)));
        self.list_changed(&room).await;
        Ok(())
    }

    /// Someone removed from a private room follows its documents and their list no more.
    async fn revoke(&self, room: &Room, user: i64) {
        let documents = match self.store.documents_in_room(room.id).await {
            Ok(documents) => documents,
            Err(error) => {
                return tracing::error!(%error, "reading a room's documents failed; a removed member keeps them")
            }
        };
        let topics = documents.iter().map(|document| doc_topic(document.id)).chain([docs_topic(&room.name)]);
        for topic in topics {
            let frame = serde_json::to_vec(&ServerFrame::Unsubscribed { id: String::new(), topic: topic.clone() });
            let frame = Bytes::from(frame.unwrap_or_default());
            self.hub.publish(Event::new(user_topic(user), 0, frame, Some(Arc::from(topic))));
        }
    }

    /// The document in memory, read from the store the first time. Call once following its
    /// topic (subscribed to the hub, and on several nodes followed through the bus), so that
    /// nothing stored after the read is missed.
    pub async fn open(&self, id: i64) -> Result<Arc<OpenDoc>, DocError> {
        let topic: Arc<str> = Arc::from(doc_topic(id));
        if let Some(cluster) = &self.cluster {
            cluster.follow(&topic).await?;
        }
        let open = {
            let mut open = self.log.open.lock().unwrap_or_else(PoisonError::into_inner);
            open.entry(id)
                .or_insert_with(|| {
                    Arc::new(OpenDoc {
                        id,
                        state: Mutex::new(DocState::new(self.limits)),
                        loaded: OnceCell::new(),
                        awareness: Mutex::new(HashMap::new()),
                        since_snapshot: AtomicU64::new(0),
                        last_used: AtomicI64::new(now_ms()),
                    })
                })
                .clone()
        };
        open.loaded.get_or_try_init(|| self.load(&open)).await?;
        open.touch();
        Ok(open)
    }

    /// Read a document into its copy: its snapshot and the log after it, up to the head it had
    /// as the read began (what is stored after that comes as events: see [`Documents::open`]).
    /// Each page of the log is applied (off the threads that serve connections: it is CPU
    /// work) while the next is read, so a long log costs about the longer of the two, not
    /// their sum.
    async fn load(&self, open: &Arc<OpenDoc>) -> Result<(), DocError> {
        let started = std::time::Instant::now();
        let head = self.store.log_head(&doc_topic(open.id)).await?;
        let snapshot = self.store.snapshot(open.id).await?;
        let mut from = snapshot.as_ref().map_or(0, |snapshot| snapshot.upto);
        let apply = |doc: Arc<OpenDoc>, updates: Vec<Vec<u8>>| async move {
            let applied = tokio::task::spawn_blocking(move || {
                doc.state().apply_all(updates.iter().map(|update| &update[..]));
            });
            applied.await.map_err(|e| DocError::Store(StoreError::Payload(e.to_string())))
        };
        let mut applying = Box::pin(apply(open.clone(), snapshot.map(|s| s.state).into_iter().collect()));
        let mut updates = 0;
        while from < head {
            let to = (from + READ_PAGE).min(head);
            let (page, applied) = tokio::join!(self.store.updates(open.id, from, to), applying);
            applied?;
            let page = page?;
            updates += page.len();
            applying = Box::pin(apply(open.clone(), page));
            from = to;
        }
        applying.await?;
        open.since_snapshot.fetch_add(updates as u64, Ordering::Relaxed);
        tracing::debug!(id = open.id, updates, took = ?started.elapsed(), "document read");
        Ok(())
    }

    /// The snapshot (if it does not go past `upto`) and the updates after it, up to `upto` (at
    /// most the log's head).
    async fn read(&self, id: i64, upto: u64) -> Result<(Option<Snapshot>, Vec<Vec<u8>>), DocError> {
        let snapshot = self.store.snapshot(id).await?.filter(|snapshot| snapshot.upto <= upto);
        let mut from = snapshot.as_ref().map_or(0, |snapshot| snapshot.upto);
        let mut updates = Vec::new();
        while from < upto {
            let to = (from + READ_PAGE).min(upto);
            updates.extend(self.store.updates(id, from, to).await?);
            from = to;
        }
        Ok((snapshot, updates))
    }

    /// The server's sync step 1: what this node's copy has.
    pub fn step1(&self, open: &OpenDoc) -> YMessage {
        YMessage::SyncStep1(open.state().state_vector())
    }

    /// What a newcomer to the document gets of the others' awareness: the entries of this
    /// node's connections, as one message (`None`: none). On several nodes, the other nodes are
    /// asked to send theirs again, so that the newcomer sees everyone's carets at once rather
    /// than at their next move or renewal.
    pub fn newcomer_awareness(&self, open: &OpenDoc) -> Option<YMessage> {
        if let Some(cluster) = &self.cluster {
            cluster.changed(AWARENESS_WANTED, &open.id.to_string());
        }
        self.awareness_of(open)
    }

    /// Another node asked for the awareness of a document: send it this node's entries, if
    /// it has the document open (its own subscribers have them already).
    fn resend_awareness(&self, id: i64) {
        let (Some(cluster), Some(open)) = (&self.cluster, self.log.get(id)) else { return };
        if let Some(message) = self.awareness_of(&open) {
            let topic = doc_topic(id);
            let frame = sync_frame(&topic, &message);
            cluster.forward(&Event::new(Arc::from(topic), 0, frame, None));
        }
    }

    /// Everyone's awareness this node knows of in the document, as one message (`None`: none).
    pub fn awareness_of(&self, open: &OpenDoc) -> Option<YMessage> {
        let entries: Vec<AwarenessEntry> = open
            .awareness
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(&client, (clock, state))| AwarenessEntry { client, clock: *clock, state: state.clone() })
            .collect();
        (!entries.is_empty()).then(|| YMessage::Awareness(encode_awareness(&entries)))
    }

    /// Take a y-protocols message from `who` (an update once it is stored). Returns the
    /// message to answer with, if any: sync step 2 for step 1, everyone's awareness for a query.
    pub async fn receive(
        &self,
        open: &Arc<OpenDoc>,
        who: &Identity,
        message: YMessage,
        announced: &mut Announced,
    ) -> Result<Option<YMessage>, DocError> {
        match message {
            YMessage::SyncStep1(vector) => Ok(Some(YMessage::SyncStep2(open.state().missing(&vector)?))),
            YMessage::SyncStep2(update) | YMessage::Update(update) => {
                self.edit(open, who, update).await?;
                Ok(None)
            }
            YMessage::Awareness(update) => {
                self.announce(open, who, &update, announced)?;
                Ok(None)
            }
            YMessage::QueryAwareness => Ok(self.awareness_of(open)),
        }
    }

    /// Store an update of `who`'s, if it decodes and keeps the limits. Resolves once it is
    /// stored, with its offset (0: it held nothing).
    pub async fn edit(&self, open: &Arc<OpenDoc>, who: &Identity, update: Vec<u8>) -> Result<u64, DocError> {
        if is_empty_update(&update) {
            return Ok(0);
        }
        if !self.limiter.allow_here(&who.key()) {
            return Err(DocError::RateLimited);
        }
        let topic: Arc<str> = Arc::from(doc_topic(open.id));
        {
            // Checked, applied here and sent to this node's other editors at once; stored
            // next, and acknowledged once stored. Showing an edit before it is stored loses
            // nothing: until its `ack`, its editor keeps it and sends it again, and whoever
            // received it holds it in their copy, which gives it back on reconnecting.
            let state = open.state();
            state.check(&update)?;
            state.apply_unchecked(&update)?;
        }
        let text = sync_frame(&topic, &YMessage::Update(update.clone()));
        self.hub.publish_local(Event::new(topic.clone(), 0, text, None));
        let payload =
            Payload { author: who.display_name(), key: who.key(), update: encode_base64(&update), node: self.log.node };
        let event = NewEvent {
            topic,
            // Updates commute and repeat harmlessly: each is its own event.
            id: crate::accounts::auth::hex(&rand::random::<[u8; 12]>()),
            payload: serde_json::to_string(&payload).unwrap_or_default(),
        };
        open.touch();
        Ok(self.writer.append(event).await?.offset)
    }

    /// Take an awareness update: each entry's name is its sender's; passed to everyone
    /// following the document, on every node.
    pub fn announce(
        &self,
        open: &OpenDoc,
        who: &Identity,
        update: &[u8],
        announced: &mut Announced,
    ) -> Result<(), DocError> {
        let mut entries = decode_awareness(update).ok_or(DocError::BadAwareness)?;
        // Checked whole before anything is kept: a refused update changes nothing.
        let mine = announced.clients.entry(open.id).or_default();
        let new = entries.iter().filter(|e| !mine.iter().any(|(client, _)| *client == e.client)).count();
        if mine.len() + new > MAX_CLIENTS_PER_CONNECTION {
            return Err(DocError::BadAwareness);
        }
        for entry in &mut entries {
            entry.state = named(&entry.state, who).ok_or(DocError::BadAwareness)?;
        }
        let mut awareness = open.awareness.lock().unwrap_or_else(PoisonError::into_inner);
        for entry in &entries {
            match mine.iter_mut().find(|(client, _)| *client == entry.client) {
                Some(known) => known.1 = entry.clock,
                None => mine.push((entry.client, entry.clock)),
            }
            if entry.state == "null" {
                awareness.remove(&entry.client);
            } else {
                awareness.insert(entry.client, (entry.clock, entry.state.clone()));
            }
        }
        drop(awareness);
        let topic = doc_topic(open.id);
        let text = sync_frame(&topic, &YMessage::Awareness(encode_awareness(&entries)));
        self.hub.publish(Event::new(Arc::from(topic), 0, text, None));
        Ok(())
    }

    /// A connection left the document: its awareness clients leave with it.
    pub fn forget(&self, doc: i64, clients: Vec<(u64, u64)>) {
        if clients.is_empty() {
            return;
        }
        if let Some(open) = self.log.get(doc) {
            let mut awareness = open.awareness.lock().unwrap_or_else(PoisonError::into_inner);
            for (client, _) in &clients {
                awareness.remove(client);
            }
        }
        let gone: Vec<AwarenessEntry> = clients
            .into_iter()
            .map(|(client, clock)| AwarenessEntry { client, clock: clock + 1, state: "null".into() })
            .collect();
        let topic = doc_topic(doc);
        let text = sync_frame(&topic, &YMessage::Awareness(encode_awareness(&gone)));
        self.hub.publish(Event::new(Arc::from(topic), 0, text, None));
    }

    /// The document's versions, newest first: runs of edits with no long pause.
    pub async fn versions(&self, id: i64) -> Result<Vec<Version>, DocError> {
        let edits = self.store.edits(id, 0).await?;
        let mut versions: Vec<(Version, i64)> = Vec::new();
        for edit in edits {
            match versions.last_mut() {
                Some((version, _)) if edit.ts - version.at <= VERSION_PAUSE_MS => {
                    version.offset = edit.offset;
                    version.at = edit.ts;
                    version.edits += 1;
                    if !version.authors.contains(&edit.author) {
                        version.authors.push(edit.author);
                    }
                }
                _ => versions.push((
                    Version { offset: edit.offset, at: edit.ts, authors: vec![edit.author], edits: 1 },
                    edit.ts,
                )),
            }
        }
        Ok(versions.into_iter().rev().take(MAX_VERSIONS).map(|(version, _)| version).collect())
    }

    /// The text as it was after the log's event at `offset`.
    pub async fn version_text(&self, id: i64, offset: u64) -> Result<String, DocError> {
        let head = self.store.log_head(&doc_topic(id)).await?;
        if offset == 0 || offset > head {
            return Err(DocError::UnknownVersion(offset));
        }
        let (snapshot, log) = self.read(id, offset).await?;
        let limits = self.limits;
        // Applying a long log is CPU work: off the threads that serve connections.
        let text = tokio::task::spawn_blocking(move || {
            let snapshot = snapshot.as_ref().map(|s| s.state.as_slice());
            DocState::load(snapshot, log.iter().map(|u| &u[..]), limits).text()
        })
        .await
        .map_err(|e| DocError::Store(StoreError::Payload(e.to_string())))?;
        Ok(text)
    }

    /// Make the text what it was after `offset`, as a new edit of `who`'s. The offset it was
    /// stored at (0: the text was that already).
    pub async fn restore(&self, open: &Arc<OpenDoc>, who: &Identity, offset: u64) -> Result<u64, DocError> {
        let text = self.version_text(open.id, offset).await?;
        let update = open.state().edit_to(&text);
        if update.is_empty() {
            return Ok(0);
        }
        self.edit(open, who, update).await
    }

    /// Fold the document's log into a snapshot, from the store: the last snapshot and the
    /// events after it. Kept if it goes further than the one kept (another node may have
    /// made one meanwhile).
    pub async fn compact(&self, id: i64) -> Result<bool, DocError> {
        let head = self.store.log_head(&doc_topic(id)).await?;
        let (snapshot, log) = self.read(id, head).await?;
        if log.is_empty() {
            return Ok(false);
        }
        let limits = self.limits;
        // Folding a log is CPU work: off the threads that serve connections.
        let state = tokio::task::spawn_blocking(move || {
            let snapshot = snapshot.as_ref().map(|s| s.state.as_slice());
            DocState::load(snapshot, log.iter().map(|u| &u[..]), limits).full_state()
        })
        .await
        .map_err(|e| DocError::Store(StoreError::Payload(e.to_string())))?;
        let snapshot = Snapshot { upto: head, state };
        Ok(self.store.save_snapshot(id, &snapshot).await?)
    }

    /// Snapshot what is due, and drop from memory what nobody here follows.
    async fn tend(&self) {
        let now = now_ms();
        let open: Vec<Arc<OpenDoc>> =
            self.log.open.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        for doc in open {
            let quiet = now - doc.last_used.load(Ordering::Relaxed) >= QUIET.as_millis() as i64;
            let since = doc.since_snapshot.load(Ordering::Relaxed);
            if since >= SNAPSHOT_EVERY || (since > 0 && quiet) {
                doc.since_snapshot.fetch_sub(since, Ordering::Relaxed);
                if let Err(error) = self.compact(doc.id).await {
                    tracing::warn!(id = doc.id, %error, "a document's snapshot failed");
                    doc.since_snapshot.fetch_add(since, Ordering::Relaxed);
                }
            }
            let idle = now - doc.last_used.load(Ordering::Relaxed) >= IDLE.as_millis() as i64;
            if idle && self.hub.subscriber_count(&doc_topic(doc.id)) == 0 {
                let mut open = self.log.open.lock().unwrap_or_else(PoisonError::into_inner);
                if doc.since_snapshot.load(Ordering::Relaxed) == 0 {
                    open.remove(&doc.id);
                }
            }
        }
    }
}

async fn keep_snapshots(documents: std::sync::Weak<Documents>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(documents) = documents.upgrade() else { return };
        documents.tend().await;
    }
}

/// An awareness state (JSON) with its `user.name` set to `who`'s name; `null` as it is.
/// `None` if it is not JSON.
fn named(state: &str, who: &Identity) -> Option<String> {
    let mut value: serde_json::Value = serde_json::from_str(state).ok()?;
    match &mut value {
        serde_json::Value::Null => return Some("null".into()),
        serde_json::Value::Object(fields) => {
            let user = fields.entry("user").or_insert_with(|| serde_json::json!({}));
            if !user.is_object() {
                *user = serde_json::json!({});
            }
            if let Some(user) = user.as_object_mut() {
                user.insert("name".into(), serde_json::Value::String(who.display_name()));
            }
        }
        _ => return None,
    }
    serde_json::to_string(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn awareness_names_are_the_senders() {
        let who = Identity::Guest { id: "0".repeat(32), name: "ann".into() };
        let named = |state: &str| named(state, &who);
        let name = who.display_name();
        let read = |state: Option<String>| serde_json::from_str::<serde_json::Value>(&state.unwrap()).unwrap();
        assert_eq!(read(named(r##"{"user":{"name":"admin","color":"#f00"}}"##))["user"]["name"], name);
        assert_eq!(read(named(r##"{"user":{"name":"admin","color":"#f00"}}"##))["user"]["color"], "#f00");
        assert_eq!(read(named(r#"{"cursor":null}"#))["user"]["name"], name);
        assert_eq!(read(named(r#"{"user":"x"}"#))["user"]["name"], name);
        assert_eq!(named("null").as_deref(), Some("null"));
        assert_eq!(named("[1]"), None);
        assert_eq!(named("{"), None);
    }
}
