//! Every feature, registered on the server: one line each. (In the browser, a feature is a
//! lazily loaded page: one line in `app.rs`.) A feature may use what those before it
//! provide: the map, polls and documents use chat's rooms, the tutorial's endpoints use chat, map and sensors.

use crate::server::{ServeError, Setup};

pub async fn start(setup: &mut Setup) -> Result<(), ServeError> {
    crate::accounts::start(setup).await?;
    crate::chat::start(setup).await?;
    crate::map::start(setup).await?;
    crate::sensors::start(setup).await?;
    crate::polls::start(setup).await?;
    crate::documents::start(setup).await?;
    crate::tutorial::start(setup).await?;
    Ok(())
}
