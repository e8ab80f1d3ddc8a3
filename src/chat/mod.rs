//! Chat: rooms (public and private), their messages (a durable topic per room: offsets,
//! resume, idempotent publish), who is online, typing, unread counts and notifications.

pub mod client;
pub mod page;
pub mod protocol;

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
    use crate::server::{ServeError, Setup};

    use super::channel::ChatChannel;
    use super::server::Chat;

    /// Load the rooms, start the room's log writer, and plug chat into the core.
    pub async fn start(setup: &mut Setup) -> Result<(), ServeError> {
        let limits = setup.config.chat_limits();
        let chat = Chat::start(setup.store.clone(), setup.hub.clone(), limits)
            .await
            .map_err(|error| ServeError::Feature(error.to_string()))?;
        setup.channel(ChatChannel { chat: chat.clone() });
        let closing = chat.clone();
        setup.on_close(async move { closing.close().await });
        setup.provide(chat);
        Ok(())
    }
}
