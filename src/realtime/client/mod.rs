//! The browser's live connection to the server: one WebSocket per tab, shared by every
//! component (`socket`). Features send their requests with [`send`] and [`send_durable`] and
//! follow topics with [`subscribe`], reading their own frames.
//!
//! Components call these functions unconditionally: in the browser they drive the tab's
//! WebSocket; during the server render they do nothing, since nothing live happens there.

#[cfg(feature = "hydrate")]
mod socket;
#[cfg(feature = "hydrate")]
pub use socket::{
    hydrated, my_name, on_hydrated, random_id, request_id, send, send_durable, start, subscribe, unsubscribe, Notice,
};

#[cfg(not(feature = "hydrate"))]
mod inert {
    use leptos::prelude::RwSignal;

    use crate::realtime::protocol::{FeatureFrame, Resume, ServerFrame};
    use crate::ui::connection::ConnState;

    /// As in the browser (see `socket`).
    pub enum Notice<'a, F> {
        Core(&'a ServerFrame),
        Event(&'a F),
    }

    pub fn start(_name: Option<String>, _status: RwSignal<ConnState>) {}
    pub fn subscribe<F: FeatureFrame>(
        _topic: &str,
        _resume: Option<Resume>,
        _present: bool,
        _handler: impl Fn(Notice<'_, F>) + 'static,
    ) -> u64 {
        0
    }
    pub fn unsubscribe(_topic: &str, _handle: u64) {}
    pub fn on_hydrated(_f: impl FnOnce() + 'static) {}
    pub fn my_name() -> String {
        String::new()
    }
    pub fn random_id() -> String {
        String::new()
    }
    pub fn request_id() -> String {
        String::new()
    }
    pub fn send(_frame: &impl serde::Serialize) -> bool {
        false
    }
    pub fn send_durable(_topic: &str, _id: &str, _frame: &impl serde::Serialize) {}
}
#[cfg(not(feature = "hydrate"))]
pub use inert::*;
