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

use crate::realtime::protocol::{ClientFrame, Envelope, ErrorCode, FeatureFrame, Resume, ServerFrame};
use crate::ui::connection::ConnState;

/// Client heartbeat: a ping this often, and the socket is taken for dead after this
/// long without hearing anything.
const PING_EVERY: Duration = Duration::from_secs(10);
const SILENCE_LIMIT_MS: f64 = 25_000.0;
const BACKOFF_BASE_MS: f64 = 500.0;
const BACKOFF_MAX_MS: f64 = 30_000.0;

/// What reaches a subscription's handler: a frame of the envelope about its topic, or one of
/// the feature's own, read by the feature (see [`subscribe`]).
pub enum Notice<'a, F> {
    /// `subscribed`, `reset`, `presence`, an `ack` of a publish to the topic, or the
    /// `error` that refused one for good.
    Core(&'a ServerFrame),
    Event(&'a F),
}

/// A frame as the socket hands it to a subscription, before the feature reads its own.
enum Delivery<'a> {
    Core(&'a ServerFrame),
    Text(&'a str),
}

type Handler = Rc<dyn Fn(Delivery<'_>)>;

/// A publish not yet acknowledged: re-sent after a reconnect, under its id.
#[derive(Clone, PartialEq)]
struct Outgoing {
    id: String,
    topic: String,
    text: String,
}

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
    outbox: RefCell<Vec<Outgoing>>,
    attempt: Cell<u32>,
    next_request: Cell<u64>,
    last_heard: Cell<f64>,
    generation: Cell<u64>,
    /// My name as the server knows it (from `welcome`).
    me: RefCell<String>,
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
        receive(&live, &text);
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
            let id = next_request_id(&live);
            send_frame(&live, &ClientFrame::Ping { id });
        },
        PING_EVERY,
    );
}

fn next_request_id(live: &Live) -> String {
    let id = live.next_request.get();
    live.next_request.set(id + 1);
    format!("r{id}")
}

/// A fresh id for a request (`r1`, `r2`, ...).
pub fn request_id() -> String {
    next_request_id(&live_or_init())
}

fn send_frame(live: &Live, frame: &impl serde::Serialize) -> bool {
    match serde_json::to_string(frame) {
        Ok(text) => send_text(live, &text),
        Err(_) => false,
    }
}

fn send_text(live: &Live, text: &str) -> bool {
    if !live.open.get() {
        return false;
    }
    match live.socket.borrow().as_ref() {
        Some(socket) => socket.ws.send_with_str(text).is_ok(),
        None => false,
    }
}

/// Send a feature's request now, if the socket is open. `false`: it was not sent.
pub fn send(frame: &impl serde::Serialize) -> bool {
    live().is_some_and(|live| send_frame(&live, frame))
}

/// Send a publish to `topic` under `id` (which the server uses to store it once): it is kept
/// and re-sent after every reconnect until the server acknowledges it, or refuses it for good.
pub fn send_durable(topic: &str, id: &str, frame: &impl serde::Serialize) {
    let Ok(text) = serde_json::to_string(frame) else { return };
    let live = live_or_init();
    let outgoing = Outgoing { id: id.to_owned(), topic: topic.to_owned(), text };
    send_text(&live, &outgoing.text);
    live.outbox.borrow_mut().push(outgoing);
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
        send_frame(live, &frame);
    }
    let outbox = live.outbox.borrow().clone();
    for outgoing in outbox {
        send_text(live, &outgoing.text);
    }
}

/// Route one frame from the server: the envelope's own are handled here (and passed on to
/// their topic's handler), a feature's go to its topic's handler, which reads them. An event
/// of a durable topic (one with an `offset`) that was delivered already is dropped.
fn receive(live: &Rc<Live>, text: &str) {
    let envelope = match Envelope::read(text) {
        Ok(envelope) => envelope,
        Err(error) => return unreadable(&error),
    };
    if envelope.is_core() {
        match ServerFrame::from_json(text) {
            Ok(frame) => dispatch(live, frame),
            Err(error) => unreadable(&error),
        }
        return;
    }
    let Some(topic) = envelope.topic else { return };
    let handler = {
        let mut subscriptions = live.subscriptions.borrow_mut();
        let Some(sub) = subscriptions.get_mut(&topic) else { return };
        if let (Some(offset), Some(resume)) = (envelope.offset, sub.resume.as_mut()) {
            if offset <= resume.offset {
                return; // Seen already.
            }
            resume.offset = offset;
        }
        sub.handler.clone()
    };
    handler(Delivery::Text(text));
}

fn dispatch(live: &Rc<Live>, frame: ServerFrame) {
    let topic = match &frame {
        ServerFrame::Welcome { name, .. } => {
            *live.me.borrow_mut() = name.clone();
            return;
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
            live.outbox.borrow_mut().retain(|o| o.id != *id);
            topic.clone()
        }
        ServerFrame::Presence { topic, .. } => topic.clone(),
        ServerFrame::Error { id: Some(id), code, .. } => {
            let failed = live.outbox.borrow().iter().find(|o| o.id == *id).cloned();
            let Some(outgoing) = failed else { return };
            if matches!(code, ErrorCode::Internal | ErrorCode::RateLimited) {
                // Worth another try under the same id, which the server will not store twice.
                let generation = live.generation.get();
                set_timeout(
                    move || {
                        if let Some(live) = current(generation) {
                            if live.outbox.borrow().contains(&outgoing) {
                                send_text(&live, &outgoing.text);
                            }
                        }
                    },
                    Duration::from_millis(1500),
                );
                return;
            }
            // Refused for good: not retried; the view shows why.
            live.outbox.borrow_mut().retain(|o| o.id != *id);
            outgoing.topic
        }
        _ => return,
    };
    let handler = live.subscriptions.borrow().get(&topic).map(|s| s.handler.clone());
    if let Some(handler) = handler {
        handler(Delivery::Core(&frame));
    }
}

/// Follow a topic. With `resume`, the server first sends everything after it. `present`:
/// count me in the room's online list while subscribed.
///
/// Returns a handle for [`unsubscribe`]. A second subscription to the same topic replaces
/// the first (its handler and its presence).
pub fn subscribe<F: FeatureFrame>(
    topic: &str,
    resume: Option<Resume>,
    present: bool,
    handler: impl Fn(Notice<'_, F>) + 'static,
) -> u64 {
    // Made a trait object at once: what follows exists once per feature's frame type, not
    // once per handler (the bundle carries every copy).
    subscribe_with::<F>(topic, resume, present, Rc::new(handler))
}

/// Log a frame that could not be read. Not inlined: its formatting code would otherwise be
/// copied into every feature's module.
#[inline(never)]
fn unreadable(error: &serde_json::Error) {
    leptos::logging::warn!("unreadable frame: {error}");
}

/// A subscription's handler, as a feature gives it.
type FeatureHandler<F> = Rc<dyn Fn(Notice<'_, F>)>;

fn subscribe_with<F: FeatureFrame>(
    topic: &str,
    resume: Option<Resume>,
    present: bool,
    handler: FeatureHandler<F>,
) -> u64 {
    let live = live_or_init();
    let handle = live.next_handle.get();
    live.next_handle.set(handle + 1);
    let handler: Handler = Rc::new(move |delivery: Delivery<'_>| match delivery {
        Delivery::Core(frame) => handler(Notice::Core(frame)),
        Delivery::Text(text) => match F::from_json(text) {
            Ok(frame) => handler(Notice::Event(&frame)),
            Err(error) => unreadable(&error),
        },
    });
    live.subscriptions
        .borrow_mut()
        .insert(topic.to_owned(), Subscription { handle, resume: resume.clone(), present, handler });
    send_frame(&live, &ClientFrame::Subscribe { id: format!("sub-{topic}"), topic: topic.to_owned(), resume, present });
    handle
}

/// My name as the server shows it to others.
pub fn my_name() -> String {
    live().map(|l| l.me.borrow().clone()).unwrap_or_default()
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

/// End the subscription `handle` made, unless a newer one has replaced it.
pub fn unsubscribe(topic: &str, handle: u64) {
    let Some(live) = live() else { return };
    let current = live.subscriptions.borrow().get(topic).map(|s| s.handle);
    if current == Some(handle) {
        live.subscriptions.borrow_mut().remove(topic);
        let id = next_request_id(&live);
        send_frame(&live, &ClientFrame::Unsubscribe { id, topic: topic.to_owned() });
    }
}
