//! The realtime core's server side: the listener and output queues ([`net`]), the hub and
//! its fan-out ([`hub`]), one task per socket ([`gateway`]), how features plug in
//! ([`channel`]), and the services any feature may use: durable topics
//! ([`gateway::Conn::join_durable`], [`durable`]), presence ([`presence`]), rate limits
//! ([`limit`]) and the group commit's intake ([`batch`]); with several nodes, the bus between
//! them ([`bus`]) and the latest values they share ([`latest`]). It knows topics and frames, not features.

pub mod batch;
pub mod bus;
pub mod channel;
pub mod durable;
pub mod gateway;
pub mod hub;
pub mod latest;
pub mod limit;
pub mod net;
pub mod presence;

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

/// Encode a frame once; the bytes are shared by every recipient.
pub fn encode<T: Serialize>(frame: &T) -> Bytes {
    // Serializing the protocol's types cannot fail: they hold only strings, numbers and lists.
    Bytes::from(serde_json::to_vec(frame).unwrap_or_default())
}

/// A signed-in user's own topic: every connection of theirs on `/ws` hears it (a private
/// room shared with them, or taken away). Not a topic clients can subscribe to.
pub fn user_topic(user_id: i64) -> Arc<str> {
    Arc::from(format!("user:{user_id}"))
}
