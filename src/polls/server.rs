//! Polls' service: making a poll (stored, then a message in its room's timeline), votes,
//! closing (by hand, or at its time), and what every follower of a poll hears:
//!
//! - on `poll:<id>`, to everyone who may see the room: that the poll closed, its turnout, and
//!   after closing its final tally;
//! - on `poll-results:<id>` (internal: the channel subscribes a connection to it once it may
//!   see the counts), each tally: the whole counts and a version, never increments;
//! - on `poll-voter:<id>:<identity>` (internal), to each of a person's connections: that they
//!   voted, and how.
//!
//! Tallies are taken from the store at most once per [`TALLY_WINDOW_MS`] per poll across every
//! node (the store's `take_tally` is the gate), the first vote after a quiet moment at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use super::protocol::{
    poll_topic, PollError, PollFrame, PollInfo, PollSpec, Tally, Turnout, NAMES_SHOWN, POLL_TOPIC_PREFIX,
};
use super::store::{Poll, PollStoreError, Taken, Tallied, Voter};
use crate::accounts::auth::Identity;
use crate::chat::protocol::{chat_topic, ChatMessage};
use crate::chat::server::{Chat, ChatError};
use crate::chat::store::Room;
use crate::realtime::protocol::{ErrorCode, ServerFrame};
use crate::realtime::server::bus::Cluster;
use crate::realtime::server::durable::Stored;
use crate::realtime::server::hub::{Event, Hub};
use crate::realtime::server::limit::RateLimiter;
use crate::realtime::server::{encode, user_topic};
use crate::store::{now_ms, Store, StoreError};

/// The least time between two tallies of one poll, across every node (the issue asks for
/// 100 to 250 ms).
pub const TALLY_WINDOW_MS: i64 = 150;
/// How often each node checks the turnout of the polls its connections follow.
const TURNOUT_EVERY: Duration = Duration::from_secs(1);
/// How often each node looks for polls whose closing time has come.
const CLOSER_EVERY: Duration = Duration::from_secs(1);

/// The internal topic of a poll's tallies.
pub fn results_topic(poll: i64) -> Arc<str> {
    Arc::from(format!("poll-results:{poll}"))
}

/// The internal topic of one person's votes in a poll: each of their connections hears it.
pub fn voter_topic(poll: i64, key: &str) -> Arc<str> {
    Arc::from(format!("poll-voter:{poll}:{key}"))
}

#[derive(Debug, thiserror::Error)]
pub enum PollsError {
    #[error(transparent)]
    Rule(#[from] PollError),
    #[error("no room is named {0:?}")]
    UnknownRoom(String),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("too many requests; wait a moment")]
    RateLimited,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Chat(#[from] ChatError),
}

impl From<PollStoreError> for PollsError {
    fn from(error: PollStoreError) -> Self {
        match error {
            PollStoreError::Rule(rule) => PollsError::Rule(rule),
            PollStoreError::Store(store) => PollsError::Store(store),
        }
    }
}

impl PollsError {
    /// The protocol's code for it.
    pub fn code(&self) -> ErrorCode {
        match self {
            PollsError::Rule(rule) => rule.code(),
            PollsError::UnknownRoom(_) | PollsError::Chat(ChatError::UnknownRoom(_)) => ErrorCode::UnknownRoom,
            PollsError::Forbidden(_) => ErrorCode::Forbidden,
            PollsError::RateLimited | PollsError::Chat(ChatError::RateLimited) => ErrorCode::RateLimited,
            PollsError::Store(_) | PollsError::Chat(_) => ErrorCode::Internal,
        }
    }

    /// Whether it is the server's failure (logged; the client is told to retry).
    pub fn is_internal(&self) -> bool {
        self.code() == ErrorCode::Internal
    }
}

pub struct Polls {
    store: Store,
    hub: Arc<Hub>,
    chat: Arc<Chat>,
    limiter: RateLimiter,
    /// Polls whose tally this node is sending, and whether votes came since it read the counts.
    pending: Mutex<HashMap<i64, bool>>,
    /// The turnout this node last sent, per poll.
    turnouts: Mutex<HashMap<i64, Turnout>>,
}

impl Polls {
    /// Start the service, and its closer and turnout checks (they stop when it is dropped).
    /// `vote_rate` and `vote_burst`: each person's votes per second, and at once.
    pub fn start(
        store: Store,
        hub: Arc<Hub>,
        chat: Arc<Chat>,
        cluster: Option<Arc<Cluster>>,
        (vote_rate, vote_burst): (f64, f64),
    ) -> Arc<Polls> {
        let polls = Arc::new(Polls {
            store,
            hub,
            chat,
            limiter: RateLimiter::new(vote_rate, vote_burst).shared(cluster, "polls"),
            pending: Mutex::new(HashMap::new()),
            turnouts: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&polls);
        polls.chat.on_member_removed(Box::new(move |room: &Room, user: i64| {
            let (weak, room_id) = (weak.clone(), room.id);
            tokio::spawn(async move {
                if let Some(polls) = weak.upgrade() {
                    polls.revoke(room_id, user).await;
                }
            });
        }));
        every(Arc::downgrade(&polls), CLOSER_EVERY, |polls| async move { polls.close_due().await });
        every(Arc::downgrade(&polls), TURNOUT_EVERY, |polls| async move { polls.check_turnouts().await });
        polls
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A poll as sent to those who may see it.
    pub fn info(&self, poll: &Poll, room: &Room) -> PollInfo {
        PollInfo {
            id: poll.id,
            room: room.name.clone(),
            creator: poll.creator_name.clone(),
            spec: poll.spec.clone(),
            closed_at: poll.closed_at.or(poll.spec.closes_at.filter(|&at| at <= now_ms())),
            created_at: poll.created_at,
        }
    }

    /// The poll and its room, if `who` may see the room; a poll in a room they may not see is
    /// as unknown as one that does not exist.
    pub async fn visible(&self, id: i64, who: &Identity) -> Result<(Poll, Room), PollsError> {
        let poll = self.store.poll(id).await?.ok_or(PollError::UnknownPoll)?;
        let room = self.chat.room_by_id(poll.room_id).filter(|room| self.chat.can_access(room, who));
        let room = room.ok_or(PollError::UnknownPoll)?;
        Ok((poll, room))
    }

    /// Whether `who` may close the poll: its creator, or an admin.
    pub fn may_close(poll: &Poll, who: &Identity) -> bool {
        poll.creator_key == who.key() || who.user().is_some_and(|user| user.is_admin)
    }

    /// Whether `who`, with these choices of theirs, may see the poll's counts now.
    pub fn may_see_results(poll: &Poll, mine: &[u32]) -> bool {
        poll.spec.show_results.visible(!mine.is_empty(), poll.closed(now_ms()))
    }

    /// Make a poll in `room` (anyone who may write there), then its message in the room's
    /// timeline under `message_id`. Resolves once both are stored.
    pub async fn create(
        &self,
        room: &str,
        who: &Identity,
        message_id: String,
        spec: PollSpec,
    ) -> Result<(PollInfo, Stored<ChatMessage>), PollsError> {
        let room = self.chat.room_for(room, who).map_err(|_| PollsError::UnknownRoom(room.to_owned()))?;
        let spec = spec.checked(now_ms())?;
        self.chat.check_rate(who).await?;
        let name = who.display_name();
        let poll = self.store.create_poll(room.id, &Voter { key: &who.key(), name: &name }, spec).await?;
        let question = poll.spec.question.clone();
        let stored = self.chat.append(&room.name, message_id, name, question, Some(poll.id)).await?;
        Ok((self.info(&poll, &room), stored))
    }

    /// Record `who`'s vote, replacing their last one; tell each of their connections, and
    /// schedule a tally. Returns the poll and the choices as stored (sorted).
    pub async fn vote(
        self: &Arc<Self>,
        id: i64,
        who: &Identity,
        choices: Vec<u32>,
    ) -> Result<(Poll, Vec<u32>), PollsError> {
        let (poll, _room) = self.visible(id, who).await?;
        if !self.limiter.allow(&who.key()).await {
            return Err(PollsError::RateLimited);
        }
        let key = who.key();
        let name = who.display_name();
        let choices = self.store.vote(id, &Voter { key: &key, name: &name }, choices).await?;
        let frame = encode(&PollFrame::Voted { topic: poll_topic(id), choices: choices.clone() });
        self.hub.publish(Event::new(voter_topic(id, &key), 0, frame, None));
        self.changed(&poll);
        Ok((poll, choices))
    }

    /// Close a poll by hand (its creator, or an admin): everyone following it hears so, and the
    /// final tally.
    pub async fn close(&self, id: i64, who: &Identity) -> Result<Poll, PollsError> {
        let (poll, _room) = self.visible(id, who).await?;
        if !Polls::may_close(&poll, who) {
            return Err(PollsError::Forbidden("only the poll's creator or an admin closes it"));
        }
        if poll.closed(now_ms()) || !self.store.close_poll(id).await? {
            return Err(PollError::Closed.into());
        }
        let poll = self.store.poll(id).await?.ok_or(PollError::UnknownPoll)?;
        self.announce_closed(&poll).await;
        Ok(poll)
    }

    /// The counts now, if `who` (with `mine`) may see them.
    pub async fn results(&self, poll: &Poll, mine: &[u32]) -> Result<Option<Tally>, StoreError> {
        if !Polls::may_see_results(poll, mine) {
            return Ok(None);
        }
        let taken = self.store.read_tally(poll.id, poll.spec.options.len(), !poll.spec.anonymous).await?;
        Ok(Some(tally(taken)))
    }

    /// The turnout this node sent its followers last (checked every second), or, for a poll
    /// no one here follows yet, read now: a join does not read every voter's name again.
    pub async fn known_turnout(&self, poll: &Poll) -> Result<Turnout, StoreError> {
        let known = self.turnouts.lock().unwrap_or_else(PoisonError::into_inner).get(&poll.id).copied();
        match known {
            Some(turnout) => Ok(turnout),
            None => self.turnout(poll).await,
        }
    }

    /// How many voted, and how many of those online in the poll's room.
    pub async fn turnout(&self, poll: &Poll) -> Result<Turnout, StoreError> {
        let names = self.store.voter_names(poll.id).await?;
        let count = names.len() as u64;
        let voters: HashSet<String> = names.into_iter().collect();
        let online = match self.chat.room_by_id(poll.room_id) {
            Some(room) => self.chat.presence.online(&chat_topic(&room.name)).await,
            None => Vec::new(),
        };
        let voted_online = online.iter().filter(|name| voters.contains(*name)).count();
        Ok(Turnout { voters: count, online: online.len() as u64, voted_online: voted_online as u64 })
    }

    /// A member was removed from a private room: end their subscriptions to its polls, on every
    /// connection and node (each `unsubscribed`, then the topic and its internal ones left).
    async fn revoke(&self, room_id: i64, user: i64) {
        let polls = match self.store.polls_in_room(room_id).await {
            Ok(polls) => polls,
            Err(error) => return tracing::error!(%error, "reading a room's polls failed; a removed member keeps them"),
        };
        for poll in polls {
            let topic = poll_topic(poll);
            let frame = encode(&ServerFrame::Unsubscribed { id: String::new(), topic: topic.clone() });
            self.hub.publish(Event::new(user_topic(user), 0, frame, Some(Arc::from(topic))));
        }
    }

    /// Votes came: send a tally now, or once the window since the last one has passed.
    fn changed(self: &Arc<Self>, poll: &Poll) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(dirty) = pending.get_mut(&poll.id) {
                *dirty = true;
                return;
            }
            pending.insert(poll.id, false);
        }
        let (polls, poll) = (self.clone(), poll.clone());
        tokio::spawn(async move {
            loop {
                polls.send_tally(&poll, false).await;
                tokio::time::sleep(Duration::from_millis(TALLY_WINDOW_MS as u64)).await;
                let mut pending = polls.pending.lock().unwrap_or_else(PoisonError::into_inner);
                match pending.get_mut(&poll.id) {
                    Some(dirty) if *dirty => *dirty = false,
                    _ => {
                        pending.remove(&poll.id);
                        return;
                    }
                }
            }
        });
    }

    /// Take a tally (waiting out another node's window) and send it: while the poll is open
    /// to those who may see counts; once closed (`last`), to everyone following it.
    async fn send_tally(&self, poll: &Poll, last: bool) {
        let (options, named) = (poll.spec.options.len(), !poll.spec.anonymous);
        loop {
            match self.store.take_tally(poll.id, options, named, TALLY_WINDOW_MS, last).await {
                Ok(Tallied::Taken(taken)) => {
                    let frame = encode(&PollFrame::tally(poll_topic(poll.id), tally(taken)));
                    let topic = if last { Arc::from(poll_topic(poll.id)) } else { results_topic(poll.id) };
                    self.hub.publish(Event::new(topic, 0, frame, None));
                    return;
                }
                Ok(Tallied::Wait(ms)) => tokio::time::sleep(Duration::from_millis(ms)).await,
                Err(error) => {
                    tracing::error!(%error, poll = poll.id, "taking a poll's tally failed");
                    return;
                }
            }
        }
    }

    /// Tell everyone following a poll that it closed, then send them its final tally.
    async fn announce_closed(&self, poll: &Poll) {
        let closed_at = poll.closed_at.unwrap_or_else(now_ms);
        let frame = encode(&PollFrame::PollClosed { topic: poll_topic(poll.id), closed_at });
        self.hub.publish(Event::new(Arc::from(poll_topic(poll.id)), 0, frame, None));
        self.send_tally(poll, true).await;
    }

    /// Close the polls whose time has come (each by one node).
    async fn close_due(&self) {
        let closed = match self.store.close_due_polls().await {
            Ok(closed) => closed,
            Err(error) => return tracing::warn!(%error, "closing polls failed"),
        };
        for id in closed {
            match self.store.poll(id).await {
                Ok(Some(poll)) => self.announce_closed(&poll).await,
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "reading a closed poll failed"),
            }
        }
    }

    /// Send each poll's turnout to this node's followers when it changed.
    async fn check_turnouts(&self) {
        let followed: Vec<(Arc<str>, i64)> = self
            .hub
            .topics_with_prefix(POLL_TOPIC_PREFIX)
            .into_iter()
            .filter_map(|topic| super::protocol::parse_poll_topic(&topic).map(|id| (topic, id)))
            .collect();
        self.turnouts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id, _| followed.iter().any(|(_, followed)| followed == id));
        for (topic, id) in followed {
            let turnout = match self.store.poll(id).await {
                Ok(Some(poll)) => self.turnout(&poll).await,
                Ok(None) => continue,
                Err(error) => Err(error),
            };
            let turnout = match turnout {
                Ok(turnout) => turnout,
                Err(error) => {
                    tracing::warn!(%error, "reading a poll's turnout failed");
                    continue;
                }
            };
            let last = self.turnouts.lock().unwrap_or_else(PoisonError::into_inner).insert(id, turnout);
            if last != Some(turnout) {
                let frame = encode(&PollFrame::turnout(topic.to_string(), turnout));
                self.hub.publish_local(Event::new(topic, 0, frame, None));
            }
        }
    }
}

/// A tally as sent: a named poll's names cut to [`NAMES_SHOWN`] per option.
fn tally(taken: Taken) -> Tally {
    let names = taken.names.map(|mut names| {
        for option in &mut names {
            option.truncate(NAMES_SHOWN);
        }
        names
    });
    Tally { version: taken.version, counts: taken.counts.options, voters: taken.counts.voters, names }
}

/// Run `work` every `period` while the service lives.
fn every<F, Fut>(service: Weak<Polls>, period: Duration, work: F)
where
    F: Fn(Arc<Polls>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(polls) = service.upgrade() else { return };
            work(polls).await;
        }
    });
}
