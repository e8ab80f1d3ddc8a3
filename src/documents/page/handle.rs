//! The view's way to its editor. The editor (and yrs with it) is in a module loaded after the
//! page (`live`, started by the `#[lazy]` `start_editor`); the view knows it only as an
//! [`EditorApi`] in this tab's registry, under a number its handlers (which must be `Send`) hold.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use leptos::prelude::*;

/// What the view asks of an editor.
pub trait EditorApi {
    /// Stop following the document.
    fn stop(&self);
    /// The connection came or went: show it.
    fn refresh(&self);
    /// Undo (or redo) my last edit.
    fn undo(&self, redo: bool);
    /// The textarea changed under my fingers.
    fn input(&self);
    /// My selection may have moved.
    fn selection(&self);
    /// Where the text is scrolled to.
    fn scroll_top(&self) -> i32;
}

thread_local! {
    static EDITORS: RefCell<HashMap<u64, Rc<dyn EditorApi>>> = RefCell::new(HashMap::new());
    static NEXT: Cell<u64> = const { Cell::new(1) };
}

pub fn register(handle: u64, editor: Rc<dyn EditorApi>) {
    EDITORS.with(|editors| editors.borrow_mut().insert(handle, editor));
}

pub fn get(handle: u64) -> Option<Rc<dyn EditorApi>> {
    EDITORS.with(|editors| editors.borrow().get(&handle).cloned())
}

/// The view's handle on its editor: the number it is registered under (0: none yet).
#[derive(Clone, Copy)]
pub struct Handle(StoredValue<u64>);

impl Handle {
    pub fn new() -> Handle {
        Handle(StoredValue::new(0))
    }

    fn get(&self) -> Option<Rc<dyn EditorApi>> {
        get(self.0.try_get_value().unwrap_or(0))
    }

    /// A number for the editor about to start, unless it has one.
    pub fn reserve(&self) -> Option<u64> {
        if self.0.try_get_value().unwrap_or(0) != 0 {
            return None;
        }
        let number = NEXT.with(|next| {
            let number = next.get();
            next.set(number + 1);
            number
        });
        self.0.set_value(number);
        Some(number)
    }

    pub fn stop(&self) {
        let number = self.0.try_get_value().unwrap_or(0);
        if let Some(editor) = EDITORS.with(|editors| editors.borrow_mut().remove(&number)) {
            editor.stop();
        }
    }

    pub fn refresh(&self) {
        if let Some(editor) = self.get() {
            editor.refresh();
        }
    }

    pub fn undo(&self) {
        if let Some(editor) = self.get() {
            editor.undo(false);
        }
    }

    pub fn redo(&self) {
        if let Some(editor) = self.get() {
            editor.undo(true);
        }
    }

    pub fn input(&self) {
        if let Some(editor) = self.get() {
            editor.input();
        }
    }

    pub fn selection(&self) {
        if let Some(editor) = self.get() {
            editor.selection();
        }
    }

    /// Ctrl+Z and Ctrl+Shift+Z (or Ctrl+Y) are my undo and redo, not the textarea's.
    pub fn keydown(&self, event: &leptos::ev::KeyboardEvent) {
        let Some(editor) = self.get() else { return };
        if !(event.ctrl_key() || event.meta_key()) {
            return;
        }
        let key = event.key().to_lowercase();
        if key == "z" || key == "y" {
            event.prevent_default();
            editor.undo((key == "z" && event.shift_key()) || key == "y");
        }
    }

    /// Keep the carets' overlay scrolled with the text.
    pub fn scrolled(&self, mirror: NodeRef<leptos::html::Div>) {
        if let (Some(editor), Some(mirror)) = (self.get(), mirror.get_untracked()) {
            mirror.set_scroll_top(editor.scroll_top());
        }
    }
}

pub fn confirm(question: &str) -> bool {
    web_sys::window().and_then(|w| w.confirm_with_message(question).ok()).unwrap_or(false)
}
