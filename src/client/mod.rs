//! The browser's live connection to the server.
//!
//! Components call these functions unconditionally: in the browser they drive the
//! tab's WebSocket; during the server render they do nothing, since nothing live
//! happens there.

#[cfg(feature = "hydrate")]
mod socket;
#[cfg(feature = "hydrate")]
pub use socket::{publish, request_history, start, store_name, stored_name, subscribe, unsubscribe};

#[cfg(not(feature = "hydrate"))]
mod inert {
    use leptos::prelude::RwSignal;

    use crate::components::connection::ConnState;
    use crate::protocol::{Resume, ServerFrame};

    pub fn start(_name: Option<String>, _status: RwSignal<ConnState>) {}
    pub fn subscribe(_topic: &str, _resume: Option<Resume>, _handler: impl Fn(&ServerFrame) + 'static) {}
    pub fn unsubscribe(_topic: &str) {}
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
