//! Polls' side of the socket: joining `poll:<id>` (the poll, my choices, its turnout, and the
//! counts only if I may see them), and the requests `create_poll`, `vote`, `close_poll` and
//! `results`.
//!
//! What a connection may not see is never written to it: the tallies travel on an internal
//! topic that a connection is subscribed to only once it may see them (see `server`).

use std::sync::Arc;

use async_trait::async_trait;

use super::protocol::{parse_poll_topic, PollFrame, PollRequest, POLL_TOPIC_PREFIX};
use super::server::{results_topic, voter_topic, Polls, PollsError};
use super::store::Poll;
use crate::chat::protocol::ChatTopic;
use crate::realtime::protocol::{ErrorCode, Request, ServerFrame};
use crate::realtime::server::channel::{Channel, Flow, Join};
use crate::realtime::server::gateway::Conn;

pub struct PollsChannel {
    pub polls: Arc<Polls>,
}

/// Answer a refusal (see [`Conn::refuse`]).
async fn refuse(conn: &mut Conn, id: String, error: PollsError) -> Flow {
    conn.refuse(id, error.code(), &error).await
}

impl PollsChannel {
    /// The poll a `poll:<id>` topic names, or an error frame sent and `None`.
    async fn poll_of(
        &self,
        conn: &mut Conn,
        id: &str,
        topic: &str,
    ) -> Result<Option<i64>, crate::realtime::server::channel::Closed> {
        match parse_poll_topic(topic) {
            Some(poll) => Ok(Some(poll)),
            None => {
                let message = format!("{topic:?} is not a poll topic (poll:<id>)");
                conn.error(Some(id.to_owned()), ErrorCode::UnknownTopic, &message).await?;
                Ok(None)
            }
        }
    }

    /// Subscribe this connection to the poll's tallies and send it the counts now, if it may
    /// see them and does not yet.
    async fn show_results(&self, conn: &mut Conn, id: &str, poll: &Poll, mine: &[u32]) -> Flow {
        let results = results_topic(poll.id);
        if conn.subscribed(&results).is_some() {
            return Ok(());
        }
        match self.polls.results(poll, mine).await {
            Ok(Some(tally)) => {
                // Subscribed before the counts were read: a newer tally follows if there is one.
                conn.subscribe(&results);
                conn.send(&PollFrame::tally(super::protocol::poll_topic(poll.id), tally)).await
            }
            Ok(None) => Ok(()),
            Err(error) => conn.internal_error(Some(id.to_owned()), &error).await,
        }
    }
}

#[async_trait]
impl Channel for PollsChannel {
    fn topics(&self) -> &'static [&'static str] {
        &[POLL_TOPIC_PREFIX]
    }

    fn spelling(&self) -> &'static [&'static str] {
        &["poll:<id>"]
    }

    fn requests(&self) -> &'static [&'static str] {
        &PollRequest::TYPES
    }

    async fn join(&self, conn: &mut Conn, join: Join) -> Flow {
        let Join { id, topic, .. } = join;
        let Some(poll_id) = self.poll_of(conn, &id, &topic).await? else { return Ok(()) };
        let (poll, room) = match self.polls.visible(poll_id, conn.who()).await {
            Ok(found) => found,
            Err(error) => return refuse(conn, id, error).await,
        };
        conn.subscribe(&topic);
        conn.subscribe(&voter_topic(poll.id, &conn.who().key()));
        let store = self.polls.store();
        let (mine, turnout) =
            match (store.choices_of(poll.id, &conn.who().key()).await, self.polls.known_turnout(&poll).await) {
                (Ok(mine), Ok(turnout)) => (mine, turnout),
                (Err(error), _) | (_, Err(error)) => return conn.internal_error(Some(id), &error).await,
            };
        conn.send(&ServerFrame::Subscribed { id: id.clone(), topic: topic.clone(), epoch: String::new(), head: 0 })
            .await?;
        let may_close = Polls::may_close(&poll, conn.who());
        let info = self.polls.info(&poll, &room);
        conn.send(&PollFrame::Poll { topic, poll: info, mine: mine.clone(), may_close, turnout }).await?;
        self.show_results(conn, &id, &poll, &mine).await
    }

    async fn request(&self, conn: &mut Conn, request: Request) -> Flow {
        let request = match request.read::<PollRequest>() {
            Ok(request) => request,
            Err(rejection) => return conn.reject(rejection).await,
        };
        match request {
            PollRequest::CreatePoll { id, topic, spec } => {
                let Some(ChatTopic::Room(room)) = ChatTopic::parse(&topic) else {
                    let message = format!("{topic:?} is not a room's topic (chat:<room>)");
                    return conn.error(Some(id), ErrorCode::UnknownTopic, &message).await;
                };
                let (polls, who) = (self.polls.clone(), conn.who().clone());
                // Answered once the poll and its message are stored, without holding up the
                // connection meanwhile.
                conn.defer(async move {
                    let frame = match polls.create(&room, &who, id.clone(), spec).await {
                        Ok((_, stored)) => {
                            ServerFrame::Ack { id, topic, offset: stored.offset, duplicate: stored.duplicate }
                        }
                        Err(error) => {
                            if error.is_internal() {
                                tracing::warn!(%error, "making a poll failed");
                            }
                            let message = if error.is_internal() {
                                "the poll could not be stored; retry".into()
                            } else {
                                error.to_string()
                            };
                            ServerFrame::Error { id: Some(id), code: error.code(), message }
                        }
                    };
                    Some(serde_json::to_string(&frame).unwrap_or_default())
                });
                Ok(())
            }
            PollRequest::Vote { id, topic, choices } => {
                let Some(poll_id) = self.poll_of(conn, &id, &topic).await? else { return Ok(()) };
                match self.polls.vote(poll_id, conn.who(), choices).await {
                    Ok((poll, mine)) => {
                        conn.send(&ServerFrame::Ack { id: id.clone(), topic, offset: 0, duplicate: false }).await?;
                        self.show_results(conn, &id, &poll, &mine).await
                    }
                    Err(error) => refuse(conn, id, error).await,
                }
            }
            PollRequest::ClosePoll { id, topic } => {
                let Some(poll_id) = self.poll_of(conn, &id, &topic).await? else { return Ok(()) };
                match self.polls.close(poll_id, conn.who()).await {
                    Ok(_) => conn.send(&ServerFrame::Ack { id, topic, offset: 0, duplicate: false }).await,
                    Err(error) => refuse(conn, id, error).await,
                }
            }
            PollRequest::Results { id, topic } => {
                let Some(poll_id) = self.poll_of(conn, &id, &topic).await? else { return Ok(()) };
                if conn.subscribed(&topic).is_none() {
                    let message = "subscribe to the poll before asking for its results";
                    return conn.error(Some(id), ErrorCode::NotSubscribed, message).await;
                }
                let (poll, _) = match self.polls.visible(poll_id, conn.who()).await {
                    Ok(found) => found,
                    Err(error) => return refuse(conn, id, error).await,
                };
                let mine = match self.polls.store().choices_of(poll_id, &conn.who().key()).await {
                    Ok(mine) => mine,
                    Err(error) => return conn.internal_error(Some(id), &error).await,
                };
                if !Polls::may_see_results(&poll, &mine) {
                    let message = "this poll's results are shown after you vote, or once it closes";
                    return conn.error(Some(id), ErrorCode::Forbidden, message).await;
                }
                self.show_results(conn, &id, &poll, &mine).await
            }
        }
    }

    /// Leaving a poll leaves its internal topics too.
    fn leave(&self, conn: &mut Conn, topic: &str) {
        if let Some(poll) = parse_poll_topic(topic) {
            conn.unsubscribe(&results_topic(poll));
            let mine = voter_topic(poll, &conn.who().key());
            conn.unsubscribe(&mine);
        }
    }
}
