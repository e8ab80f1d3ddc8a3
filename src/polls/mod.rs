//! Live polls: a question in a room, 2 to 20 options, votes that move everyone's bars at once.
//! (In progress, issue 18: the storage and its rules are here; the topic, the page and the
//! HTTP API follow.)

pub mod protocol;

#[cfg(feature = "ssr")]
pub mod store;
