//! Browser APIs the pages share: whether the tab is visible, notifications, and the name a
//! guest chose. During the server render they do nothing (or answer as a fresh browser would).

#[cfg(feature = "hydrate")]
mod live {
    use leptos::prelude::*;
    use wasm_bindgen::prelude::*;
    use wasm_bindgen::JsCast;

    /// Whether the tab is in the background.
    pub fn page_hidden() -> bool {
        document().hidden()
    }

    /// Call `f` whenever the tab becomes visible again.
    pub fn on_visible(f: impl Fn() + 'static) {
        let callback = Closure::<dyn FnMut()>::new(move || {
            if !document().hidden() {
                f();
            }
        });
        let _ = document().add_event_listener_with_callback("visibilitychange", callback.as_ref().unchecked_ref());
        callback.forget();
    }

    /// `"granted"`, `"denied"` or `"default"` (not asked yet); `"unsupported"` without the API.
    pub fn notification_permission() -> String {
        let supported = js_sys::Reflect::has(&window(), &JsValue::from_str("Notification")).unwrap_or(false);
        if !supported {
            return "unsupported".into();
        }
        match web_sys::Notification::permission() {
            web_sys::NotificationPermission::Granted => "granted".into(),
            web_sys::NotificationPermission::Denied => "denied".into(),
            _ => "default".into(),
        }
    }

    /// Ask for permission to notify; `done` gets the answer.
    pub fn request_notifications(done: impl Fn(String) + 'static) {
        let Ok(promise) = web_sys::Notification::request_permission() else { return };
        let callback = Closure::<dyn FnMut(JsValue)>::new(move |answer: JsValue| {
            done(answer.as_string().unwrap_or_else(notification_permission));
        });
        let _ = promise.then(&callback);
        callback.forget();
    }

    /// Show a notification; clicking it focuses the tab and calls `on_click`.
    pub fn notify(title: &str, body: &str, tag: &str, on_click: impl Fn() + 'static) {
        if notification_permission() != "granted" {
            return;
        }
        let options = web_sys::NotificationOptions::new();
        options.set_body(body);
        options.set_tag(tag);
        if let Ok(notification) = web_sys::Notification::new_with_options(title, &options) {
            let callback = Closure::<dyn FnMut()>::new(move || {
                let _ = window().focus();
                on_click();
            });
            notification.set_onclick(Some(callback.as_ref().unchecked_ref()));
            callback.forget();
        }
    }

    const NAME_KEY: &str = "switchboard.name";

    /// The display name this browser chose before, if any.
    pub fn stored_name() -> Option<String> {
        let storage = window().local_storage().ok().flatten()?;
        storage.get_item(NAME_KEY).ok().flatten().and_then(|n| crate::realtime::protocol::clean_display_name(&n))
    }

    pub fn store_name(name: &str) {
        if let Some(storage) = window().local_storage().ok().flatten() {
            let _ = storage.set_item(NAME_KEY, name);
        }
    }
}
#[cfg(feature = "hydrate")]
pub use live::*;

#[cfg(not(feature = "hydrate"))]
mod inert {
    pub fn page_hidden() -> bool {
        false
    }
    pub fn on_visible(_f: impl Fn() + 'static) {}
    pub fn notification_permission() -> String {
        "default".into()
    }
    pub fn request_notifications(_done: impl Fn(String) + 'static) {}
    pub fn notify(_title: &str, _body: &str, _tag: &str, _on_click: impl Fn() + 'static) {}
    pub fn stored_name() -> Option<String> {
        None
    }
    pub fn store_name(_name: &str) {}
}
#[cfg(not(feature = "hydrate"))]
pub use inert::*;
