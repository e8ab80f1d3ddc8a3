//! Switchboard: a self-hosted real-time web app. The server renders every page
//! (`ssr`), the browser hydrates it to WebAssembly (`hydrate`); the wire types in
//! [`protocol`] are shared by both.

#![recursion_limit = "256"]

pub mod app;
pub mod client;
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
    leptos::mount::hydrate_body(app::App);
}
