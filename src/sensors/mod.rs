//! Sensors: devices post readings (HTTP, the web protocol, the tutorial's endpoint), which
//! are stored in batches, rolled up by the minute, charted live, and exported.

pub mod chart;
pub mod page;
pub mod protocol;

#[cfg(feature = "hydrate")]
pub mod chart_canvas;

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
    use super::channel::SensorChannel;
    use std::time::Duration;

    use super::server::{SensorLimits, Sensors};
    use crate::server::{ServeError, Setup};

    /// Start the writer and the compaction, serve the HTTP API, and plug into the core.
    pub async fn start(setup: &mut Setup) -> Result<(), ServeError> {
        let config = &setup.config;
        let limits = SensorLimits {
            batch_max: config.sensor_batch_max.max(1),
            raw_retention: Duration::from_secs(config.sensor_raw_retention_secs),
            body_max_bytes: config.sensor_body_max_bytes.max(1),
            request_rate: config.sensor_request_rate,
            request_burst: config.sensor_request_burst,
        };
        let sensors = Sensors::start(setup.store.clone(), setup.hub.clone(), setup.cluster.clone(), limits);
        setup.channel(SensorChannel { sensors: sensors.clone() });
        setup.routes(super::api::routes());
        let closing = sensors.clone();
        setup.on_close(async move { closing.close().await });
        setup.provide(sensors);
        Ok(())
    }
}
