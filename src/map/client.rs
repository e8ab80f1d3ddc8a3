//! The map's requests from the browser, and the device's position.

use super::protocol::MapRequest;
use crate::realtime::client;

/// Share my position in a room's map; with `trail`, my earlier positions are kept too.
pub fn locate(topic: &str, latitude: f64, longitude: f64, trail: bool) {
    client::send(&MapRequest::Locate { id: client::request_id(), topic: topic.to_owned(), latitude, longitude, trail });
}

pub fn stop_sharing(topic: &str) {
    client::send(&MapRequest::StopSharing { id: client::request_id(), topic: topic.to_owned() });
}

#[cfg(feature = "hydrate")]
mod browser {
    use leptos::prelude::*;
    use wasm_bindgen::prelude::*;
    use wasm_bindgen::JsCast;

    /// Follow the device's position; returns the watch id for [`clear_watch`].
    pub fn watch_position(
        on_position: impl Fn(f64, f64) + 'static,
        on_error: impl Fn(String) + 'static,
    ) -> Option<i32> {
        let geolocation = window().navigator().geolocation().ok()?;
        // web-sys marks the position types unstable, so the fields are read by name.
        let field = |value: &JsValue, name: &str| js_sys::Reflect::get(value, &JsValue::from_str(name)).ok();
        let success = Closure::<dyn FnMut(JsValue)>::new(move |position: JsValue| {
            let coords = field(&position, "coords");
            let number = |name| coords.as_ref().and_then(|c| field(c, name)).and_then(|v| v.as_f64());
            if let (Some(latitude), Some(longitude)) = (number("latitude"), number("longitude")) {
                on_position(latitude, longitude);
            }
        });
        let failure = Closure::<dyn FnMut(JsValue)>::new(move |error: JsValue| {
            on_error(field(&error, "message").and_then(|m| m.as_string()).unwrap_or_else(|| "unknown error".into()))
        });
        let options = web_sys::PositionOptions::new();
        options.set_enable_high_accuracy(true);
        let id = geolocation
            .watch_position_with_error_callback_and_options(
                success.as_ref().unchecked_ref(),
                Some(failure.as_ref().unchecked_ref()),
                &options,
            )
            .ok();
        // The callbacks live as long as the watch, which may be the page's life.
        success.forget();
        failure.forget();
        id
    }

    pub fn clear_watch(id: i32) {
        if let Ok(geolocation) = window().navigator().geolocation() {
            geolocation.clear_watch(id);
        }
    }
}
#[cfg(feature = "hydrate")]
pub use browser::*;

#[cfg(not(feature = "hydrate"))]
mod inert {
    pub fn watch_position(
        _on_position: impl Fn(f64, f64) + 'static,
        _on_error: impl Fn(String) + 'static,
    ) -> Option<i32> {
        None
    }
    pub fn clear_watch(_id: i32) {}
}
#[cfg(not(feature = "hydrate"))]
pub use inert::*;
