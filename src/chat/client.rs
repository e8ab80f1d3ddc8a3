//! Chat's requests from the browser, and the rooms muted in this browser.

use super::protocol::ChatRequest;
use crate::realtime::client;

/// Post a message; it is kept and re-sent until the server acknowledges it. Returns its id.
pub fn publish(topic: &str, text: String) -> String {
    let id = client::random_id();
    let frame = ChatRequest::Publish { id: id.clone(), topic: topic.to_owned(), text };
    client::send_durable(topic, &id, &frame);
    id
}

/// Ask for older messages; the answer reaches the topic's handler as a `history` frame.
pub fn request_history(topic: &str, before: Option<u64>) -> bool {
    client::send(&ChatRequest::History { id: client::request_id(), topic: topic.to_owned(), before, limit: None })
}

#[cfg(feature = "hydrate")]
mod browser {
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::time::Duration;

    use leptos::prelude::*;

    use super::ChatRequest;
    use crate::realtime::client;

    fn now_ms() -> f64 {
        js_sys::Date::now()
    }

    /// Tell the room I am typing; sent at most every two seconds.
    pub fn typing(topic: &str) {
        thread_local! { static LAST: Cell<f64> = const { Cell::new(f64::MIN) }; }
        if now_ms() - LAST.with(Cell::get) < 2000.0 {
            return;
        }
        LAST.with(|last| last.set(now_ms()));
        client::send(&ChatRequest::Typing { id: client::request_id(), topic: topic.to_owned() });
    }

    /// Tell the server I have read `topic` up to `offset`.
    ///
    /// Every visible message calls this; without a limit each message would cost every reader's
    /// server a write. The first marker goes at once, then at most one a second, the latest winning.
    pub fn mark_read(topic: &str, offset: u64) {
        thread_local! {
            static READS: RefCell<HashMap<String, (f64, Option<u64>)>> = RefCell::new(HashMap::new());
        }
        const EVERY_MS: f64 = 1000.0;
        fn flush(topic: &str, offset: u64) {
            client::send(&ChatRequest::Read { id: client::request_id(), topic: topic.to_owned(), offset });
        }
        let now = now_ms();
        let send_now = READS.with(|reads| {
            let mut reads = reads.borrow_mut();
            let entry = reads.entry(topic.to_owned()).or_insert((f64::MIN, None));
            if now - entry.0 >= EVERY_MS {
                *entry = (now, None);
                return true;
            }
            let scheduled = entry.1.is_some();
            entry.1 = Some(entry.1.map_or(offset, |o| o.max(offset)));
            if !scheduled {
                let topic = topic.to_owned();
                let wait = EVERY_MS - (now - entry.0);
                set_timeout(
                    move || {
                        let latest = READS.with(|reads| {
                            let mut reads = reads.borrow_mut();
                            let entry = reads.get_mut(&topic)?;
                            let latest = entry.1.take();
                            entry.0 = now_ms();
                            latest
                        });
                        if let Some(offset) = latest {
                            flush(&topic, offset);
                        }
                    },
                    Duration::from_millis(wait.max(0.0) as u64),
                );
            }
            false
        });
        if send_now {
            flush(topic, offset);
        }
    }

    const MUTED_KEY: &str = "switchboard.muted";

    /// Rooms muted in this browser.
    pub fn muted_rooms() -> Vec<String> {
        window()
            .local_storage()
            .ok()
            .flatten()
            .and_then(|s| s.get_item(MUTED_KEY).ok().flatten())
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    pub fn set_muted_rooms(rooms: &[String]) {
        if let (Some(storage), Ok(text)) = (window().local_storage().ok().flatten(), serde_json::to_string(rooms)) {
            let _ = storage.set_item(MUTED_KEY, &text);
        }
    }
}
#[cfg(feature = "hydrate")]
pub use browser::*;

#[cfg(not(feature = "hydrate"))]
mod inert {
    pub fn typing(_topic: &str) {}
    pub fn mark_read(_topic: &str, _offset: u64) {}
    pub fn muted_rooms() -> Vec<String> {
        Vec::new()
    }
    pub fn set_muted_rooms(_rooms: &[String]) {}
}
#[cfg(not(feature = "hydrate"))]
pub use inert::*;
