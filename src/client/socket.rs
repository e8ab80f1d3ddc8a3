//! The live connection in the browser: one WebSocket per tab, shared by every component.
//!
//! It reconnects by itself with jittered exponential backoff, resubscribes each
//! topic from the last offset it delivered (so nothing is missed and nothing is
//! delivered twice), and re-sends every publish not yet acknowledged under its
//! original id, which the server recognises and does not store twice.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use leptos::prelude::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use crate::components::connection::ConnState;
use crate::protocol::{ClientFrame, ErrorCode, Resume, ServerFrame};

/// Client heartbeat: a ping this often, and the socket is taken for dead after this
/// long without hearing anything.
const PING_EVERY: Duration = Duration::from_secs(10);
const SILENCE_LIMIT_MS: f64 = 25_000.0;
const BACKOFF_BASE_MS: f64 = 500.0;
const BACKOFF_MAX_MS: f64 = 30_000.0;

type Handler = Rc<dyn Fn(&ServerFrame)>;

struct Subscription {
    /// Which `subscribe` call this is, so that a late `unsubscribe` from a view that was
    /// replaced does not end its successor's subscription.
    handle: u64,
    resume: Option<Resume>,
    present: bool,
    handler: Handler,
}

struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        let _ = self.ws.close();
    }
}

struct Live {
    name: RefCell<Option<String>>,
    status: Cell<Option<RwSignal<ConnState>>>,
    started: Cell<bool>,
    socket: RefCell<Option<Socket>>,
    open: Cell<bool>,
    subscriptions: RefCell<HashMap<String, Subscription>>,
    /// Publishes not yet acknowledged, in the order they were made.
    outbox: RefCell<Vec<ClientFrame>>,
    attempt: Cell<u32>,
    next_request: Cell<u64>,
    last_heard: Cell<f64>,
    generation: Cell<u64>,
    /// My name as the server knows it (from `welcome`).
    me: RefCell<String>,
    last_typing: Cell<f64>,
    next_handle: Cell<u64>,
}

thread_local! {
    static LIVE: RefCell<Option<Rc<Live>>> = const { RefCell::new(None) };
}

fn live() -> Option<Rc<Live>> {
    LIVE.with(|l| l.borrow().clone())
}

/// The tab's connection state, created on first use; `start` opens the socket.
fn live_or_init() -> Rc<Live> {
    LIVE.with(|l| {
        l.borrow_mut()
            .get_or_insert_with(|| {
                Rc::new(Live {
                    name: RefCell::new(None),
                    status: Cell::new(None),
                    started: Cell::new(false),
                    socket: RefCell::new(None),
                    open: Cell::new(false),
                    subscriptions: RefCell::new(HashMap::new()),
                    outbox: RefCell::new(Vec::new()),
                    attempt: Cell::new(0),
                    next_request: Cell::new(1),
                    last_heard: Cell::new(now_ms()),
                    generation: Cell::new(0),
                    me: RefCell::new(String::new()),
                    last_typing: Cell::new(0.0),
                    next_handle: Cell::new(1),
                })
            })
            .clone()
    })
}

impl Live {
    fn set_status(&self, state: ConnState) {
        if let Some(status) = self.status.get() {
            status.set(state);
        }
    }
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// A random id for a publish: 104 bits, enough never to collide in one room.
pub fn random_id() -> String {
    let a = (js_sys::Math::random() * 9007199254740992.0) as u64;
    let b = (js_sys::Math::random() * 9007199254740992.0) as u64;
    format!("{a:013x}{b:013x}")
}

fn ws_url(name: Option<&str>) -> Option<String> {
    let location = window().location();
    let protocol = if location.protocol().ok()? == "https:" { "wss" } else { "ws" };
    let host = location.host().ok()?;
    Some(match name {
        Some(name) => format!("{protocol}://{host}/ws?name={}", String::from(js_sys::encode_uri_component(name))),
        None => format!("{protocol}://{host}/ws"),
    })
}

/// Open the tab's connection, or reopen it under another display name (keeping its
/// subscriptions and unacknowledged publishes).
pub fn start(name: Option<String>, status: RwSignal<ConnState>) {
    let live = live_or_init();
    live.status.set(Some(status));
    if live.started.get() && *live.name.borrow() == name {
        return;
    }
    *live.name.borrow_mut() = name;
    live.started.set(true);
    watch_network();
    start_heartbeat();
    drop_socket_and_reconnect(&live);
}

fn connect(live: &Rc<Live>) {
    if !window().navigator().on_line() {
        live.set_status(ConnState::Offline);
        return;
    }
    let Some(url) = ws_url(live.name.borrow().as_deref()) else { return };
    let Ok(ws) = WebSocket::new(&url) else {
        schedule_reconnect(live);
        return;
    };
    live.generation.set(live.generation.get() + 1);
    let generation = live.generation.get();
    live.set_status(if live.attempt.get() == 0 { ConnState::Connecting } else { ConnState::Reconnecting });

    let on_open = Closure::<dyn FnMut()>::new(move || {
        if let Some(live) = current(generation) {
            live.open.set(true);
            live.attempt.set(0);
            live.last_heard.set(now_ms());
            live.set_status(ConnState::Connected);
            resume_all(&live);
        }
    });
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let Some(live) = current(generation) else { return };
        live.last_heard.set(now_ms());
        let Some(text) = event.data().as_string() else { return };
        match ServerFrame::from_json(&text) {
            Ok(frame) => dispatch(&live, frame),
            Err(error) => leptos::logging::warn!("unreadable frame: {error}"),
        }
    });
    let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |_event: CloseEvent| {
        if let Some(live) = current(generation) {
            live.open.set(false);
            live.socket.borrow_mut().take();
            schedule_reconnect(&live);
        }
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    *live.socket.borrow_mut() = Some(Socket { ws, _on_open: on_open, _on_message: on_message, _on_close: on_close });
}

/// The live connection, if `generation` is still its current socket.
fn current(generation: u64) -> Option<Rc<Live>> {
    live().filter(|l| l.generation.get() == generation)
}

fn schedule_reconnect(live: &Rc<Live>) {
    live.open.set(false);
    if !window().navigator().on_line() {
        live.set_status(ConnState::Offline);
        return;
    }
    let attempt = live.attempt.get();
    live.attempt.set(attempt.saturating_add(1));
    let ceiling = (BACKOFF_BASE_MS * 2f64.powi(attempt.min(16) as i32)).min(BACKOFF_MAX_MS);
    // Full jitter between half and all of the ceiling, so tabs do not return in lockstep.
    let delay = ceiling * (0.5 + js_sys::Math::random() * 0.5);
    live.set_status(ConnState::Reconnecting);
    let generation = live.generation.get();
    set_timeout(
        move || {
            if let Some(live) = current(generation) {
                if !live.open.get() && live.socket.borrow().is_none() {
                    connect(&live);
                }
            }
        },
        Duration::from_millis(delay as u64),
    );
}

fn drop_socket_and_reconnect(live: &Rc<Live>) {
    live.socket.borrow_mut().take();
    live.open.set(false);
    live.attempt.set(0);
    connect(live);
}

fn watch_network() {
    thread_local! { static WATCHING: Cell<bool> = const { Cell::new(false) }; }
    if WATCHING.with(|w| w.replace(true)) {
        return;
    }
    let on_offline = Closure::<dyn FnMut()>::new(|| {
        if let Some(live) = live() {
            live.socket.borrow_mut().take();
            live.open.set(false);
            live.set_status(ConnState::Offline);
        }
    });
    let on_online = Closure::<dyn FnMut()>::new(|| {
        if let Some(live) = live() {
            drop_socket_and_reconnect(&live);
        }
    });
    let window = window();
    let _ = window.add_event_listener_with_callback("offline", on_offline.as_ref().unchecked_ref());
    let _ = window.add_event_listener_with_callback("online", on_online.as_ref().unchecked_ref());
    // Both listeners live as long as the page.
    on_offline.forget();
    on_online.forget();
}

fn start_heartbeat() {
    thread_local! { static BEATING: Cell<bool> = const { Cell::new(false) }; }
    if BEATING.with(|b| b.replace(true)) {
        return;
    }
    set_interval(
        || {
            let Some(live) = live() else { return };
            if !live.open.get() {
                return;
            }
            if now_ms() - live.last_heard.get() > SILENCE_LIMIT_MS {
                // The server went quiet: the connection is dead even if the browser has not noticed.
                drop_socket_and_reconnect(&live);
                return;
            }
            let id = request_id(&live);
            send(&live, &ClientFrame::Ping { id });
        },
        PING_EVERY,
    );
}

fn request_id(live: &Live) -> String {
    let id = live.next_request.get();
    live.next_request.set(id + 1);
    format!("r{id}")
}

fn send(live: &Live, frame: &ClientFrame) -> bool {
    if !live.open.get() {
        return false;
    }
    let Ok(text) = serde_json::to_string(frame) else { return false };
    match live.socket.borrow().as_ref() {
        Some(socket) => socket.ws.send_with_str(&text).is_ok(),
        None => false,
    }
}

fn resume_all(live: &Rc<Live>) {
    let frames: Vec<ClientFrame> = live
        .subscriptions
        .borrow()
        .iter()
        .map(|(topic, sub)| ClientFrame::Subscribe {
            id: format!("sub-{topic}"),
            topic: topic.clone(),
            resume: sub.resume.clone(),
            present: sub.present,
        })
        .collect();
    for frame in frames {
        send(live, &frame);
    }
    let outbox = live.outbox.borrow().clone();
    for frame in outbox {
        send(live, &frame);
    }
}

fn dispatch(live: &Rc<Live>, frame: ServerFrame) {
    let topic = match &frame {
        ServerFrame::Welcome { name, .. } => {
            *live.me.borrow_mut() = name.clone();
            return;
        }
        ServerFrame::Message { topic, message } => {
            if let Some(sub) = live.subscriptions.borrow_mut().get_mut(topic) {
                if let Some(resume) = sub.resume.as_mut() {
                    if message.offset <= resume.offset {
                        return; // Seen already.
                    }
                    resume.offset = message.offset;
                }
            }
            topic.clone()
        }
        ServerFrame::Subscribed { topic, epoch, head, .. } | ServerFrame::Reset { topic, epoch, head, .. } => {
            if let Some(sub) = live.subscriptions.borrow_mut().get_mut(topic) {
                let reset = matches!(frame, ServerFrame::Reset { .. });
                if !epoch.is_empty() && (reset || sub.resume.is_none()) {
                    sub.resume = Some(Resume { epoch: epoch.clone(), offset: *head });
                }
            }
            topic.clone()
        }
        ServerFrame::Ack { id, topic, .. } => {
            live.outbox.borrow_mut().retain(|f| !matches!(f, ClientFrame::Publish { id: pid, .. } if pid == id));
            topic.clone()
        }
        ServerFrame::History { topic, .. }
        | ServerFrame::Room { topic, .. }
        | ServerFrame::RoomLeft { topic, .. }
        | ServerFrame::Activity { topic, .. }
        | ServerFrame::Presence { topic, .. }
        | ServerFrame::Typing { topic, .. }
        | ServerFrame::Locations { topic, .. }
        | ServerFrame::Location { topic, .. }
        | ServerFrame::LocationGone { topic, .. }
        | ServerFrame::Readings { topic, .. }
        | ServerFrame::SensorDeleted { topic, .. } => topic.clone(),
        ServerFrame::Error { id: Some(id), code, .. } => {
            let failed = live
                .outbox
                .borrow()
                .iter()
                .find(|f| matches!(f, ClientFrame::Publish { id: pid, .. } if pid == id))
                .cloned();
            let Some(frame) = failed else { return };
            let ClientFrame::Publish { topic, .. } = &frame else { return };
            let topic = topic.clone();
            if matches!(code, ErrorCode::Internal | ErrorCode::RateLimited) {
                // Worth another try under the same id, which the server will not store twice.
                let generation = live.generation.get();
                set_timeout(
                    move || {
                        if let Some(live) = current(generation) {
                            if live.outbox.borrow().contains(&frame) {
                                send(&live, &frame);
                            }
                        }
                    },
                    Duration::from_millis(1500),
                );
                return;
            }
            // Refused for good: not retried; the view shows why.
            live.outbox.borrow_mut().retain(|f| !matches!(f, ClientFrame::Publish { id: pid, .. } if pid == id));
            topic
        }
        _ => return,
    };
    let handler = live.subscriptions.borrow().get(&topic).map(|s| s.handler.clone());
    if let Some(handler) = handler {
        handler(&frame);
    }
}

/// Follow a topic. With `resume`, the server first sends everything after it. `present`:
/// count me in the room's online list while subscribed.
///
/// Returns a handle for [`unsubscribe`]. A second subscription to the same topic replaces
/// the first (its handler and its presence).
pub fn subscribe(topic: &str, resume: Option<Resume>, present: bool, handler: impl Fn(&ServerFrame) + 'static) -> u64 {
    let live = live_or_init();
    let handle = live.next_handle.get();
    live.next_handle.set(handle + 1);
    live.subscriptions
        .borrow_mut()
        .insert(topic.to_owned(), Subscription { handle, resume: resume.clone(), present, handler: Rc::new(handler) });
    send(&live, &ClientFrame::Subscribe { id: format!("sub-{topic}"), topic: topic.to_owned(), resume, present });
    handle
}

/// My name as the server shows it to others.
pub fn my_name() -> String {
    live().map(|l| l.me.borrow().clone()).unwrap_or_default()
}

/// Tell the room I am typing; sent at most every two seconds.
pub fn typing(topic: &str) {
    let Some(live) = live() else { return };
    if now_ms() - live.last_typing.get() < 2000.0 {
        return;
    }
    live.last_typing.set(now_ms());
    let id = request_id(&live);
    send(&live, &ClientFrame::Typing { id, topic: topic.to_owned() });
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
        if let Some(live) = live() {
            let id = request_id(&live);
            send(&live, &ClientFrame::Read { id, topic: topic.to_owned(), offset });
        }
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

thread_local! {
    static ON_HYDRATED: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
}

/// Run `f` when the page has hydrated (see [`hydrated`]).
pub fn on_hydrated(f: impl FnOnce() + 'static) {
    ON_HYDRATED.with(|slot| *slot.borrow_mut() = Some(Box::new(f)));
}

/// The whole page has hydrated, its lazily loaded part included: run what waits for that, and
/// leave a mark that tests (and the curious) can wait for.
pub fn hydrated() {
    if let Some(f) = ON_HYDRATED.with(|slot| slot.borrow_mut().take()) {
        f();
    }
    let _ = js_sys::Reflect::set(&window(), &JsValue::from_str("__switchboard_hydrated"), &JsValue::TRUE);
}

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

/// End the subscription `handle` made, unless a newer one has replaced it.
pub fn unsubscribe(topic: &str, handle: u64) {
    let Some(live) = live() else { return };
    let current = live.subscriptions.borrow().get(topic).map(|s| s.handle);
    if current == Some(handle) {
        live.subscriptions.borrow_mut().remove(topic);
        let id = request_id(&live);
        send(&live, &ClientFrame::Unsubscribe { id, topic: topic.to_owned() });
    }
}

/// Post a message; it is kept and re-sent until the server acknowledges it. Returns its id.
pub fn publish(topic: &str, text: String) -> String {
    let id = random_id();
    let frame = ClientFrame::Publish { id: id.clone(), topic: topic.to_owned(), text };
    let live = live_or_init();
    live.outbox.borrow_mut().push(frame.clone());
    send(&live, &frame);
    id
}

/// Ask for older messages; the answer reaches the topic's handler as a `History` frame.
pub fn request_history(topic: &str, before: Option<u64>) -> bool {
    let Some(live) = live() else { return false };
    let id = request_id(&live);
    send(&live, &ClientFrame::History { id, topic: topic.to_owned(), before, limit: None })
}

const NAME_KEY: &str = "switchboard.name";

/// The display name this browser chose before, if any.
pub fn stored_name() -> Option<String> {
    let storage = window().local_storage().ok().flatten()?;
    storage.get_item(NAME_KEY).ok().flatten().and_then(|n| crate::protocol::clean_display_name(&n))
}

pub fn store_name(name: &str) {
    if let Some(storage) = window().local_storage().ok().flatten() {
        let _ = storage.set_item(NAME_KEY, name);
    }
}

/// Share my position in a room's map; with `trail`, my earlier positions are kept too.
pub fn locate(topic: &str, latitude: f64, longitude: f64, trail: bool) {
    let Some(live) = live() else { return };
    let id = request_id(&live);
    send(&live, &ClientFrame::Locate { id, topic: topic.to_owned(), latitude, longitude, trail });
}

pub fn stop_sharing(topic: &str) {
    let Some(live) = live() else { return };
    let id = request_id(&live);
    send(&live, &ClientFrame::StopSharing { id, topic: topic.to_owned() });
}

/// Follow the device's position; returns the watch id for [`clear_watch`].
pub fn watch_position(on_position: impl Fn(f64, f64) + 'static, on_error: impl Fn(String) + 'static) -> Option<i32> {
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
