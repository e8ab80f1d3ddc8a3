//! Switchboard: a self-hosted real-time web app. The server renders every page (`ssr`), the
//! browser hydrates it to WebAssembly (`hydrate`).
//!
//! - [`realtime`]: the core, which knows topics and frames but no feature;
//! - one folder per feature: [`chat`], [`map`], [`sensors`], [`accounts`], and the
//!   tutorial's endpoints (`tutorial`), registered in `features`;
//! - `store`: the database engine; [`ui`]: components shared by several pages; `server`:
//!   the process (HTTP, TLS, start and shutdown).

#![recursion_limit = "256"]

pub mod accounts;
pub mod app;
pub mod chat;
pub mod codec;
pub mod documents;
pub mod error;
pub mod map;
pub mod polls;
pub mod realtime;
pub mod sensors;
pub mod ui;

#[cfg(feature = "ssr")]
pub mod features;
#[cfg(feature = "ssr")]
pub mod server;
#[cfg(feature = "ssr")]
pub mod store;
#[cfg(feature = "ssr")]
pub mod tutorial;

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // As `leptos::mount::hydrate_lazy`: a page's own module (see `app::lazy_page`) is fetched
    // before its part of the page hydrates. Only when all of it has is the page marked live.
    wasm_bindgen_futures::spawn_local(async {
        let owner = leptos::mount::hydrate_from_async(leptos::tachys::dom::body(), app::App).await;
        owner.forget();
        realtime::client::hydrated();
    });
}
