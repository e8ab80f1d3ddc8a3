//! The realtime core: topics and frames, not features. The envelope of the protocol
//! ([`protocol`]), the server's socket tasks, hub and services (`server`), and the browser's
//! live connection ([`client`]). Features plug into it (see `crate::features`).

pub mod client;
pub mod protocol;
#[cfg(feature = "ssr")]
pub mod server;
