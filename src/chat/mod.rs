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
    use std::time::Duration;

    use super::server::{Chat, ChatLimits};

    /// Load the rooms, start the room's log writer, and plug chat into the core.
    pub async fn start(setup: &mut Setup) -> Result<(), ServeError> {
        let config = &setup.config;
        let limits = ChatLimits {
            message_rate: config.message_rate,
            message_burst: config.message_burst,
            presence_grace: Duration::from_millis(config.presence_grace_ms),
            commit_window: Duration::from_millis(config.commit_window_ms),
        };
        let chat = Chat::start(setup.store.clone(), setup.hub.clone(), setup.cluster.clone(), limits)
            .await
            .map_err(|error| ServeError::Feature(error.to_string()))?;
        setup.channel(ChatChannel { chat: chat.clone() });
        let closing = chat.clone();
        setup.on_close(async move {
            closing.close().await;
            closing.presence.close().await;
        });
        setup.provide(chat);
        Ok(())
    }
}
