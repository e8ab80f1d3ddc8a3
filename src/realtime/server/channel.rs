//! How a feature plugs into the realtime core, the way a Phoenix channel does: for the topics
//! it owns it answers *join* (authorize, send `subscribed` and the initial state), its
//! *requests*, and *leave*. The core does the rest: the socket, the envelope, fan-out,
//! heartbeats, durable topics ([`Conn::join_durable`]), presence, errors.
//!
//! A feature registers one [`Channel`] (in `crate::features`); an endpoint that speaks another
//! dialect on a socket of its own (the tutorial's) is a [`Dialect`].

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::gateway::Conn;
use crate::realtime::protocol::{ErrorCode, Request, Resume};

/// The socket could not be written: the connection is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// What a channel's handlers return: `Err` only when the socket failed. Refusals are error
/// frames sent to the client, and `Ok`.
pub type Flow = Result<(), Closed>;

/// A client asks to follow a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    pub id: String,
    pub topic: String,
    /// Where it left a durable topic.
    pub resume: Option<Resume>,
    /// It asks to count as present (see [`Conn::be_present`]).
    pub present: bool,
}

/// A feature's side of the socket.
#[async_trait]
pub trait Channel: Send + Sync + 'static {
    /// The topics it owns: exact names (`rooms`) or prefixes that end in `:` (`chat:`).
    fn topics(&self) -> &'static [&'static str];

    /// How its topics are spelled, for the error that names every topic the server knows
    /// (`chat:<room>`).
    fn spelling(&self) -> &'static [&'static str];

    /// The request types it answers (`publish`, ...).
    fn requests(&self) -> &'static [&'static str] {
        &[]
    }

    /// Subscribe the connection to `join.topic`, one of its topics, or refuse with an error
    /// frame (`unknown_room`, `forbidden`, ...).
    async fn join(&self, conn: &mut Conn, join: Join) -> Flow;

    /// Answer a request of one of its types. The envelope is checked; reading the rest of
    /// the frame is the channel's ([`Request::read`]).
    async fn request(&self, conn: &mut Conn, request: Request) -> Flow {
        let rejection = request.reject(ErrorCode::UnknownType, format!("unknown frame type {:?}", request.kind));
        conn.reject(rejection).await
    }

    /// The connection left `topic` (it unsubscribed, or its access was revoked). Closing
    /// calls [`Channel::disconnect`] instead.
    fn leave(&self, _conn: &mut Conn, _topic: &str) {}

    /// The connection is closing: drop whatever it held that its topics do not cover.
    fn disconnect(&self, _conn: &mut Conn) {}
}

/// An endpoint of its own that speaks another dialect (the tutorial's `/ws/chat/`): its
/// connections hear one topic, and every text frame they send is the dialect's.
#[async_trait]
pub trait Dialect: Send + Sync + 'static {
    /// The topic its connections hear.
    fn topic(&self) -> &'static str;

    /// Answer one text frame.
    async fn frame(&self, conn: &mut Conn, text: &str) -> Flow;

    /// The dialect's error frame.
    fn encode_error(&self, code: ErrorCode, message: &str) -> String;
}

/// Every channel, by the topics and requests it answers.
#[derive(Default)]
pub struct Channels {
    channels: Vec<Arc<dyn Channel>>,
    exact: HashMap<&'static str, usize>,
    prefixes: Vec<(&'static str, usize)>,
    requests: HashMap<&'static str, usize>,
}

impl Channels {
    /// Add a channel. Two channels may not claim the same topic or request.
    pub fn add(&mut self, channel: Arc<dyn Channel>) {
        let index = self.channels.len();
        for &topic in channel.topics() {
            let claimed = if topic.ends_with(':') {
                let taken = self.prefixes.iter().any(|(p, _)| *p == topic);
                self.prefixes.push((topic, index));
                taken
            } else {
                self.exact.insert(topic, index).is_some()
            };
            assert!(!claimed, "two channels claim the topic {topic:?}");
        }
        for &kind in channel.requests() {
            assert!(self.requests.insert(kind, index).is_none(), "two channels answer {kind:?}");
        }
        self.channels.push(channel);
    }

    /// The channel that owns `topic`.
    pub fn for_topic(&self, topic: &str) -> Option<&Arc<dyn Channel>> {
        let index = match self.exact.get(topic) {
            Some(&index) => index,
            None => self.prefixes.iter().find(|(prefix, _)| topic.starts_with(prefix)).map(|&(_, index)| index)?,
        };
        self.channels.get(index)
    }

    /// The channel that answers a request type.
    pub fn for_request(&self, kind: &str) -> Option<&Arc<dyn Channel>> {
        self.requests.get(kind).and_then(|&index| self.channels.get(index))
    }

    pub fn all(&self) -> &[Arc<dyn Channel>] {
        &self.channels
    }

    /// Every topic's spelling, for errors: `chat:<room>, rooms, ...`.
    pub fn spellings(&self) -> String {
        self.channels.iter().flat_map(|c| c.spelling().iter().copied()).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(&'static [&'static str], &'static [&'static str]);

    #[async_trait]
    impl Channel for Fake {
        fn topics(&self) -> &'static [&'static str] {
            self.0
        }
        fn spelling(&self) -> &'static [&'static str] {
            self.0
        }
        fn requests(&self) -> &'static [&'static str] {
            self.1
        }
        async fn join(&self, _conn: &mut Conn, _join: Join) -> Flow {
            Ok(())
        }
    }

    #[test]
    fn topics_go_to_the_channel_that_owns_them() {
        let mut channels = Channels::default();
        channels.add(Arc::new(Fake(&["chat:", "rooms"], &["publish"])));
        channels.add(Arc::new(Fake(&["sensor:", "sensors"], &["reading"])));
        let owner = |topic: &str| channels.for_topic(topic).map(|c| c.topics()[0]);
        assert_eq!(owner("chat:lobby"), Some("chat:"));
        assert_eq!(owner("rooms"), Some("chat:"));
        assert_eq!(owner("sensors"), Some("sensor:"));
        assert_eq!(owner("sensor:3"), Some("sensor:"));
        assert_eq!(owner("roomsx"), None);
        assert_eq!(owner("chat"), None);
        assert_eq!(channels.for_request("reading").map(|c| c.topics()[0]), Some("sensor:"));
        assert!(channels.for_request("subscribe").is_none());
        assert_eq!(channels.spellings(), "chat:, rooms, sensor:, sensors");
    }

    #[test]
    #[should_panic(expected = "two channels claim")]
    fn two_channels_cannot_claim_one_topic() {
        let mut channels = Channels::default();
        channels.add(Arc::new(Fake(&["chat:"], &[])));
        channels.add(Arc::new(Fake(&["chat:"], &[])));
    }
}
