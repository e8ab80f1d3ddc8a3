//! Live polls: a question in a room's timeline, 2 to 20 options, votes that move everyone's
//! bars at once. One person, one vote is the database's (`store`); what a person may not see
//! (hidden results, anonymous choices) is never sent to them (`channel`, `server`).

pub mod page;
pub mod protocol;

#[cfg(feature = "ssr")]
pub mod api;
#[cfg(feature = "ssr")]
pub mod channel;
#[cfg(feature = "ssr")]
pub mod server;
#[cfg(feature = "ssr")]
pub mod store;

#[cfg(feature = "ssr")]
pub use start::start;

#[cfg(feature = "ssr")]
mod start {
    use super::channel::PollsChannel;
    use super::server::Polls;
    use crate::chat::server::Chat;
    use crate::server::{ServeError, Setup};

    /// Plug polls into the core (they live in chat's rooms), and serve their HTTP API.
    pub async fn start(setup: &mut Setup) -> Result<(), ServeError> {
        let chat = setup.get::<Chat>();
        let rates = (setup.config.vote_rate, setup.config.vote_burst);
        let polls = Polls::start(setup.store.clone(), setup.hub.clone(), chat, setup.cluster.clone(), rates);
        setup.channel(PollsChannel { polls: polls.clone() });
        setup.routes(super::api::routes());
        setup.provide(polls);
        Ok(())
    }
}
