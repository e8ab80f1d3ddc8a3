//! The live map: each room's map shows everyone's latest position (a latest-value topic,
//! coalesced per person), with trails, street tiles from a local archive, and the offline
//! country outlines.

pub mod client;
pub mod page;
pub mod projection;
pub mod protocol;

#[cfg(feature = "hydrate")]
pub mod canvas;

#[cfg(feature = "ssr")]
pub mod channel;
#[cfg(feature = "ssr")]
pub mod server;
#[cfg(feature = "ssr")]
pub mod tiles;
#[cfg(feature = "ssr")]
pub mod world;

#[cfg(feature = "ssr")]
pub use start::start;

#[cfg(feature = "ssr")]
mod start {
    use axum::routing::get;
    use axum::Router;

    use super::channel::MapChannel;
    use super::server::Locations;
    use super::tiles;
    use crate::chat::server::Chat;
    use crate::server::{ServeError, Setup};

    /// Open the tile archive (if configured), and plug the map into the core.
    pub async fn start(setup: &mut Setup) -> Result<(), ServeError> {
        let locations = Locations::new(setup.hub.clone(), setup.cluster.clone(), setup.config.location_rate);
        if let Some(archive) = tiles::open_configured(setup.config.tiles.as_deref())
            .await
            .map_err(|error| ServeError::Feature(error.to_string()))?
        {
            setup.provide(archive);
        }
        setup.routes(Router::new().route("/tiles/{z}/{x}/{y}", get(tiles::serve_tile)));
        setup.channel(MapChannel { chat: setup.get::<Chat>(), locations: locations.clone() });
        setup.provide(locations);
        Ok(())
    }
}
