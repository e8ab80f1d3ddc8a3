//! Switchboard: a self-hosted real-time web app. The server renders every page
//! (`ssr`), the browser hydrates it to WebAssembly (`hydrate`); the wire types in
//! [`protocol`] are shared by both.

#![recursion_limit = "256"]

pub mod app;
pub mod client;
pub mod codec;
pub mod components;
pub mod error;
pub mod pages;
pub mod protocol;

#[cfg(feature = "ssr")]
pub mod server;

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // As `leptos::mount::hydrate_lazy`: a page's own module (see `app::lazy_page`) is fetched
    // before its part of the page hydrates. Only when all of it has is the page marked live.
    wasm_bindgen_futures::spawn_local(async {
        let owner = leptos::mount::hydrate_from_async(leptos::tachys::dom::body(), app::App).await;
        owner.forget();
        client::hydrated();
    });
}
