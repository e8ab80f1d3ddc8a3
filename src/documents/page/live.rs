//! The document's editor in the browser: a yrs copy of the document behind a textarea.
//!
//! - **Typing** changes the textarea; the difference from what it showed (one deletion and one
//!   insertion, in UTF-16 units as the browser counts) is applied to the copy under the origin
//!   `local`, and the copy's update goes to the server (`doc_sync`), kept and re-sent until it
//!   is acknowledged.
//! - **Others' updates** are merged into the copy under the origin `remote`; the textarea then
//!   shows the new text, my selection carried over by sticky indexes (positions tied to the
//!   characters around them, not to offsets).
//! - **Undo** is a yrs `UndoManager` tracking the origin `local`: it takes back my edits only.
//! - **Awareness**: my name, colour and selection (as sticky indexes) go to the others; theirs
//!   come back and are drawn over the text.
//! - **Reconnecting** (the socket subscribes again): both sides send their state vector and
//!   answer with what the other lacks, so offline edits merge.
//!
//! This module (and yrs with it) is loaded once the page is on screen (`start_editor` in the
//! page is `#[lazy]`); the view reaches the editor through `handle`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::HtmlTextAreaElement;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{
    Assoc, Doc, GetString, IndexedSequence, OffsetKind, Options, ReadTxn, StateVector, StickyIndex, Text, TextRef,
    Transact, UndoManager, Update,
};

use super::super::protocol::{decode_base64, encode_base64, DocFrame, DocRequest};
use super::super::yproto::{decode_awareness, encode_awareness, AwarenessEntry, YMessage};
use super::{color_of, EditorSignals, Peer, SyncState};
use crate::realtime::client::{self, Notice};
use crate::realtime::protocol::{ErrorCode, ServerFrame};
use crate::ui::connection::ConnState;

/// Origins of transactions on the copy.
const LOCAL: &str = "local";
const REMOTE: &str = "remote";

/// My awareness is sent again this often, so that Yjs clients (which forget an entry after
/// 30 s) keep me.
const RENEW: Duration = Duration::from_secs(15);

struct Editor {
    topic: String,
    doc: Doc,
    text: TextRef,
    undo: RefCell<UndoManager>,
    textarea: HtmlTextAreaElement,
    signals: EditorSignals,
    /// Synced once: until then the textarea shows the server's render, read-only.
    synced: Cell<bool>,
    /// My updates sent and not yet acknowledged (their request ids).
    unacked: RefCell<Vec<String>>,
    /// Awareness: my clock and last selection sent; the others' entries.
    clock: Cell<u64>,
    sent_selection: Cell<Option<(u32, u32)>>,
    others: RefCell<HashMap<u64, (u64, serde_json::Value)>>,
    subscription: Cell<u64>,
    renew: RefCell<Option<IntervalHandle>>,
}

/// Start an editor of `topic` in `textarea`, registered under `handle` (see `handle`).
pub fn start(handle: u64, topic: String, textarea: HtmlTextAreaElement, signals: EditorSignals) {
    let editor = Rc::new(Editor::new(topic, textarea, signals));
    editor.listen();
    super::handle::register(handle, editor);
}

impl super::handle::EditorApi for Editor {
    fn stop(&self) {
        client::unsubscribe(&self.topic, self.subscription.get());
        if let Some(renew) = self.renew.borrow_mut().take() {
            renew.clear();
        }
    }

    fn refresh(&self) {
        self.show_state();
    }

    fn undo(&self, redo: bool) {
        Editor::undo(self, redo);
    }

    fn input(&self) {
        self.typed();
    }

    fn selection(&self) {
        self.announce(false);
    }

    fn scroll_top(&self) -> i32 {
        self.textarea.scroll_top()
    }
}

/// The difference between two texts as one deletion and one insertion, in UTF-16 units:
/// (where, how many removed, what inserted).
fn difference(before: &str, after: &str) -> (u32, u32, String) {
    let old: Vec<u16> = before.encode_utf16().collect();
    let new: Vec<u16> = after.encode_utf16().collect();
    let start = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let tail = old[start..].iter().rev().zip(new[start..].iter().rev()).take_while(|(a, b)| a == b).count();
    let removed = old.len() - start - tail;
    let inserted = String::from_utf16_lossy(&new[start..new.len() - tail]);
    (start as u32, removed as u32, inserted)
}

impl Editor {
    fn new(topic: String, textarea: HtmlTextAreaElement, signals: EditorSignals) -> Editor {
        let doc = Doc::with_options(Options { offset_kind: OffsetKind::Utf16, ..Options::default() });
        let text = doc.get_or_insert_text(super::super::protocol::TEXT_NAME);
        let mut undo = UndoManager::with_options(yrs::undo::Options {
            capture_timeout_millis: 500,
            tracked_origins: [yrs::Origin::from(LOCAL)].into(),
            capture_transaction: None,
            timestamp: Arc::new(|| js_sys::Date::now() as u64),
            init_undo_stack: Vec::new(),
            init_redo_stack: Vec::new(),
        });
        undo.expand_scope(&doc, &text);
        Editor {
            topic,
            doc,
            text,
            undo: RefCell::new(undo),
            textarea,
            signals,
            synced: Cell::new(false),
            unacked: RefCell::new(Vec::new()),
            clock: Cell::new(0),
            sent_selection: Cell::new(None),
            others: RefCell::new(HashMap::new()),
            subscription: Cell::new(0),
            renew: RefCell::new(None),
        }
    }

    /// Send every change of the copy that is not the others' to the server; follow the topic.
    /// The callbacks hold the editor weakly: it lives as long as the registry keeps it.
    fn listen(self: &Rc<Self>) {
        let weak = Rc::downgrade(self);
        let _ = self.doc.observe_update_v1("send", move |txn, event| {
            let remote = txn.origin().is_some_and(|origin| origin == &yrs::Origin::from(REMOTE));
            if let (false, Some(editor)) = (remote, weak.upgrade()) {
                editor.send_update(event.update.clone());
            }
        });
        let weak = Rc::downgrade(self);
        let subscription = client::subscribe(&self.topic, None, false, move |frame: Notice<'_, DocFrame>| {
            if let Some(editor) = weak.upgrade() {
                editor.receive(frame);
            }
        });
        self.subscription.set(subscription);
        let weak = Rc::downgrade(self);
        let renew = set_interval_with_handle(
            move || {
                if let Some(editor) = weak.upgrade() {
                    editor.announce(true);
                }
            },
            RENEW,
        );
        *self.renew.borrow_mut() = renew.ok();
    }

    fn send(&self, message: YMessage) -> String {
        let id = client::random_id();
        let data = encode_base64(&message.encode());
        client::send_durable(
            &self.topic,
            &id,
            &DocRequest::DocSync { id: id.clone(), topic: self.topic.clone(), data },
        );
        id
    }

    fn send_update(&self, update: Vec<u8>) {
        let id = self.send(YMessage::Update(update));
        self.unacked.borrow_mut().push(id);
        self.show_state();
    }

    fn show_state(&self) {
        let connected = self.signals.conn.get_untracked() == ConnState::Connected;
        let state = if !self.synced.get() {
            SyncState::Loading
        } else if !connected {
            SyncState::Offline
        } else if self.unacked.borrow().is_empty() {
            SyncState::Saved
        } else {
            SyncState::Saving
        };
        if self.signals.state.get_untracked() != state {
            self.signals.state.set(state);
        }
    }

    fn receive(&self, frame: Notice<'_, DocFrame>) {
        match frame {
            Notice::Core(ServerFrame::Subscribed { .. }) => {
                // (Re)subscribed: ask for what I lack; the server's step 1 asks for what it lacks.
                let vector = self.doc.transact().state_vector().encode_v1();
                self.send(YMessage::SyncStep1(vector));
                self.announce(true);
            }
            Notice::Core(ServerFrame::Ack { id, .. }) => {
                self.unacked.borrow_mut().retain(|u| u != id);
                self.show_state();
            }
            Notice::Core(ServerFrame::Error { id, code, message }) => {
                if let Some(id) = id {
                    self.unacked.borrow_mut().retain(|u| u != id);
                }
                if *code == ErrorCode::TooLarge {
                    // The server keeps the document within its limit: my copy goes back too.
                    self.undo(false);
                    self.signals.message.set(Some(format!("{message}: your last edit was undone.")));
                } else {
                    self.signals.message.set(Some(message.clone()));
                }
                self.show_state();
            }
            Notice::Core(ServerFrame::Unsubscribed { .. }) => self.signals.deleted.set(true),
            Notice::Core(_) => {}
            Notice::Event(DocFrame::DocSync { data, .. }) => {
                let Some(message) = decode_base64(data).as_deref().and_then(YMessage::decode) else { return };
                self.take(message);
            }
            Notice::Event(DocFrame::Document { document, may_manage, .. }) => {
                self.signals.name.set(document.name.clone());
                self.signals.may_manage.set(*may_manage);
            }
            Notice::Event(DocFrame::DocumentRenamed { name, .. }) => self.signals.name.set(name.clone()),
            Notice::Event(DocFrame::DocumentDeleted { .. }) => self.signals.deleted.set(true),
            Notice::Event(DocFrame::DocVersions { versions, .. }) => self.signals.versions.set(Some(versions.clone())),
            Notice::Event(DocFrame::DocVersion { offset, text, .. }) => {
                self.signals.version.set(Some((*offset, text.clone())))
            }
        }
    }

    fn take(&self, message: YMessage) {
        match message {
            YMessage::SyncStep1(vector) => {
                let Ok(vector) = StateVector::decode_v1(&vector) else { return };
                let missing = {
                    let txn = self.doc.transact();
                    txn.encode_state_as_update_v1(&vector)
                };
                let id = self.send(YMessage::SyncStep2(missing));
                self.unacked.borrow_mut().push(id);
            }
            YMessage::SyncStep2(update) => {
                self.merge(&update);
                if !self.synced.get() {
                    self.synced.set(true);
                    self.show_text(true);
                }
                self.show_state();
            }
            YMessage::Update(update) => self.merge(&update),
            YMessage::Awareness(update) => self.others_moved(&update),
            YMessage::QueryAwareness => self.announce(true),
        }
    }

    /// My selection in the textarea, in UTF-16 units.
    fn selection_now(&self) -> (u32, u32) {
        let start = self.textarea.selection_start().ok().flatten().unwrap_or(0);
        let end = self.textarea.selection_end().ok().flatten().unwrap_or(start);
        (start, end)
    }

    /// Merge the others' update into my copy, and show it with my selection where it was.
    fn merge(&self, update: &[u8]) {
        let Ok(update) = Update::decode_v1(update) else { return };
        let (start, end) = self.selection_now();
        let sticky = {
            let txn = self.doc.transact();
            // Tied to the character before: what someone inserts right at my caret goes after it,
            // so that two people typing at one place each keep their words together.
            (self.text.sticky_index(&txn, start, Assoc::Before), self.text.sticky_index(&txn, end, Assoc::Before))
        };
        {
            let mut txn = self.doc.transact_mut_with(REMOTE);
            if txn.apply_update(update).is_err() {
                return;
            }
        }
        if !self.synced.get() {
            return;
        }
        let moved = {
            let txn = self.doc.transact();
            let at = |index: &Option<StickyIndex>, fallback| {
                index.as_ref().and_then(|i| i.get_offset(&txn)).map_or(fallback, |offset| offset.index)
            };
            (at(&sticky.0, start), at(&sticky.1, end))
        };
        self.show_text(false);
        if is_focused(&self.textarea) {
            let _ = self.textarea.set_selection_range(moved.0, moved.1);
        }
        self.refresh_peers();
    }

    /// Put the copy's text in the textarea (and the view), if it changed.
    fn show_text(&self, force: bool) {
        let text = self.text.get_string(&self.doc.transact());
        if !force && self.signals.text.with_untracked(|shown| *shown == text) {
            return;
        }
        let scroll = self.textarea.scroll_top();
        if self.textarea.value() != text {
            self.textarea.set_value(&text);
        }
        self.textarea.set_scroll_top(scroll);
        self.signals.text.set(text);
    }

    /// The textarea changed under my fingers: make the same change to the copy.
    fn typed(&self) {
        if !self.synced.get() {
            return;
        }
        let value = self.textarea.value();
        // What the textarea showed before this change is the view's text.
        let (at, removed, inserted) = self.signals.text.with_untracked(|shown| difference(shown, &value));
        if removed > 0 || !inserted.is_empty() {
            let mut txn = self.doc.transact_mut_with(LOCAL);
            if removed > 0 {
                self.text.remove_range(&mut txn, at, removed);
            }
            if !inserted.is_empty() {
                self.text.insert(&mut txn, at, &inserted);
            }
        }
        self.signals.text.set(value);
        self.signals.message.set(None);
        self.announce(false);
        self.refresh_peers();
    }

    /// Undo (or redo) my last edit, never someone else's.
    fn undo(&self, redo: bool) {
        if !self.synced.get() {
            return;
        }
        let done = {
            let mut undo = self.undo.borrow_mut();
            if redo {
                undo.redo_blocking()
            } else {
                undo.undo_blocking()
            }
        };
        if done {
            self.show_text(false);
            self.refresh_peers();
        }
    }

    /// Tell the others where my selection is (only if it moved, unless `always`).
    fn announce(&self, always: bool) {
        if !self.synced.get() {
            return;
        }
        let selection = self.selection_now();
        let focused = is_focused(&self.textarea);
        let now = focused.then_some(selection);
        if !always && self.sent_selection.get() == now {
            return;
        }
        self.sent_selection.set(now);
        let cursor = now.map(|(start, end)| {
            let txn = self.doc.transact();
            let index = |at| self.text.sticky_index(&txn, at, Assoc::Before).map(|i| encode_base64(&i.encode_v1()));
            serde_json::json!({ "anchor": index(start), "head": index(end) })
        });
        let me = self.doc.client_id().get();
        let state = serde_json::json!({
            "user": { "name": client::my_name(), "color": color_of(me) },
            "cursor": cursor,
        });
        self.clock.set(self.clock.get() + 1);
        let entry = AwarenessEntry { client: me, clock: self.clock.get(), state: state.to_string() };
        self.send(YMessage::Awareness(encode_awareness(&[entry])));
    }

    fn others_moved(&self, update: &[u8]) {
        let Some(entries) = decode_awareness(update) else { return };
        let me = self.doc.client_id().get();
        {
            let mut others = self.others.borrow_mut();
            for entry in entries {
                if entry.client == me {
                    continue;
                }
                let newer = others.get(&entry.client).is_none_or(|(clock, _)| entry.clock >= *clock);
                if !newer {
                    continue;
                }
                match serde_json::from_str::<serde_json::Value>(&entry.state) {
                    Ok(serde_json::Value::Null) | Err(_) => {
                        others.remove(&entry.client);
                    }
                    Ok(state) => {
                        others.insert(entry.client, (entry.clock, state));
                    }
                }
            }
        }
        self.refresh_peers();
    }

    /// The others as the view draws them: their selections mapped onto my copy now.
    fn refresh_peers(&self) {
        let txn = self.doc.transact();
        let offset = |value: &serde_json::Value| -> Option<u32> {
            let bytes = decode_base64(value.as_str()?)?;
            let index = StickyIndex::decode_v1(&bytes).ok()?;
            Some(index.get_offset(&txn)?.index)
        };
        let mut peers: Vec<Peer> = self
            .others
            .borrow()
            .iter()
            .map(|(&client, (_, state))| {
                let name = state["user"]["name"].as_str().unwrap_or("someone").to_owned();
                let color = match state["user"]["color"].as_str() {
                    Some(c) if c.starts_with('#') && c.len() <= 9 && c[1..].chars().all(|d| d.is_ascii_hexdigit()) => {
                        c.to_owned()
                    }
                    _ => color_of(client).to_owned(),
                };
                let cursor = &state["cursor"];
                let selection = offset(&cursor["anchor"]).zip(offset(&cursor["head"]));
                Peer { client, name, color, selection }
            })
            .collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name).then(a.client.cmp(&b.client)));
        if self.signals.peers.with_untracked(|shown| *shown != peers) {
            self.signals.peers.set(peers);
        }
    }
}

fn is_focused(element: &HtmlTextAreaElement) -> bool {
    let active = web_sys::window().and_then(|w| w.document()).and_then(|d| d.active_element());
    active
        .is_some_and(|active| active.unchecked_ref::<web_sys::Element>() == element.unchecked_ref::<web_sys::Element>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_in_utf16_units() {
        assert_eq!(difference("héllo", "héllo!"), (5, 0, "!".into()));
        assert_eq!(difference("a😀b", "ab"), (1, 2, String::new()));
        assert_eq!(difference("abc", "aXc"), (1, 1, "X".into()));
        assert_eq!(difference("", "new"), (0, 0, "new".into()));
    }
}
