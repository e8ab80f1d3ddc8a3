//! Accounts: users (argon2id), sessions and API tokens, guests, and their pages (sign up,
//! sign in, settings). Every connection's identity comes from here.

pub mod page;
pub mod settings;

#[cfg(feature = "ssr")]
pub mod auth;
#[cfg(feature = "ssr")]
pub mod store;

#[cfg(feature = "ssr")]
pub use start::start;

#[cfg(feature = "ssr")]
mod start {
    use std::sync::Arc;

    use super::auth::Auth;
    use crate::server::{ServeError, Setup};

    /// Load the installation's keys.
    pub async fn start(setup: &mut Setup) -> Result<(), ServeError> {
        setup.provide(Arc::new(Auth::open(setup.store.clone()).await?));
        Ok(())
    }
}
