//! The browser's live connection to the server.
//!
//! Components call these functions unconditionally: in the browser they drive the
//! tab's WebSocket; during the server render they do nothing, since nothing live
//! happens there.

#[cfg(feature = "hydrate")]
pub mod chart_canvas;
#[cfg(feature = "hydrate")]
pub mod map_canvas;
#[cfg(feature = "hydrate")]
mod socket;
#[cfg(feature = "hydrate")]
pub use socket::{clear_watch, locate, stop_sharing, watch_position};
#[cfg(feature = "hydrate")]
pub use socket::{
    hydrated, mark_read, muted_rooms, my_name, notification_permission, notify, on_hydrated, on_visible, page_hidden,
    publish, request_history, request_notifications, set_muted_rooms, start, store_name, stored_name, subscribe,
    typing, unsubscribe,
};

#[cfg(not(feature = "hydrate"))]
mod inert {
    use leptos::prelude::RwSignal;

    use crate::components::connection::ConnState;
    use crate::protocol::{Resume, ServerFrame};

    pub fn start(_name: Option<String>, _status: RwSignal<ConnState>) {}
    pub fn subscribe(
        _topic: &str,
        _resume: Option<Resume>,
        _present: bool,
        _handler: impl Fn(&ServerFrame) + 'static,
    ) -> u64 {
        0
    }
    pub fn on_hydrated(_f: impl FnOnce() + 'static) {}
    pub fn locate(_topic: &str, _latitude: f64, _longitude: f64, _trail: bool) {}
    pub fn stop_sharing(_topic: &str) {}
    pub fn watch_position(
        _on_position: impl Fn(f64, f64) + 'static,
        _on_error: impl Fn(String) + 'static,
    ) -> Option<i32> {
        None
    }
    pub fn clear_watch(_id: i32) {}
    pub fn my_name() -> String {
        String::new()
    }
    pub fn typing(_topic: &str) {}
    pub fn mark_read(_topic: &str, _offset: u64) {}
    pub fn page_hidden() -> bool {
        false
    }
    pub fn on_visible(_f: impl Fn() + 'static) {}
    pub fn notification_permission() -> String {
        "default".into()
    }
    pub fn request_notifications(_done: impl Fn(String) + 'static) {}
    pub fn notify(_title: &str, _body: &str, _tag: &str, _on_click: impl Fn() + 'static) {}
    pub fn muted_rooms() -> Vec<String> {
        Vec::new()
    }
    pub fn set_muted_rooms(_rooms: &[String]) {}
    pub fn unsubscribe(_topic: &str, _handle: u64) {}
    pub fn publish(_topic: &str, _text: String) -> String {
        String::new()
    }
    pub fn request_history(_topic: &str, _before: Option<u64>) -> bool {
        false
    }
    pub fn stored_name() -> Option<String> {
        None
    }
    pub fn store_name(_name: &str) {}
}
#[cfg(not(feature = "hydrate"))]
pub use inert::*;
