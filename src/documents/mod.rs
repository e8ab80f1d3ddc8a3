//! Shared documents: a room's Markdown documents, edited together through a CRDT (yrs, the
//! Rust port of Yjs) on the server and in the page. The wire (`protocol`, `yproto`) is shared;
//! the server keeps each document's update log and snapshots (`store`, `server`), answers the
//! socket (`channel`) and Yjs clients (`api`).

pub mod markdown;
pub mod page;
pub mod protocol;
pub mod yproto;

#[cfg(feature = "ssr")]
pub mod api;
#[cfg(feature = "ssr")]
pub mod channel;
#[cfg(feature = "ssr")]
pub mod crdt;
#[cfg(feature = "ssr")]
pub mod server;
#[cfg(feature = "ssr")]
pub mod store;

#[cfg(feature = "ssr")]
pub use start::start;

#[cfg(feature = "ssr")]
mod start {
    use std::time::Duration;

    use super::channel::DocumentsChannel;
    use super::crdt::Limits;
    use super::server::Documents;
    use crate::chat::server::Chat;
    use crate::server::{ServeError, Setup};

    /// Plug documents into the core (they live in chat's rooms), and serve their HTTP routes
    /// and the Yjs endpoint.
    pub async fn start(setup: &mut Setup) -> Result<(), ServeError> {
        let chat = setup.get::<Chat>();
        let config = setup.config.clone();
        let documents = Documents::start(
            setup.store.clone(),
            setup.hub.clone(),
            chat,
            setup.cluster.clone(),
            (config.edit_rate, config.edit_burst),
            Duration::from_millis(config.commit_window_ms),
            Limits::default(),
        )
        .await?;
        setup.channel(DocumentsChannel { documents: documents.clone() });
        setup.routes(super::api::routes());
        let closing = documents.clone();
        setup.on_close(async move { closing.close().await });
        setup.provide(documents);
        Ok(())
    }
}
