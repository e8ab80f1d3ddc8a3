//! A document's text as the server holds it: a yrs `Doc` with one text, loaded from its
//! snapshot and the log after it, taking updates that decode and keep the size limit, answering
//! a client's state vector with what it lacks, and folding itself into a snapshot.
//!
//! Offsets are UTF-16 code units, as in the browser and in Yjs.

use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, Text, TextRef, Transact, Update};

/// The name of a document's text in its yrs `Doc` (the page's and Yjs clients' too).
pub const TEXT: &str = super::protocol::TEXT_NAME;

/// Why an update was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrdtError {
    #[error("the update does not decode: {0}")]
    Malformed(String),
    #[error("the update is {0} bytes; updates are limited to {1}")]
    UpdateTooLarge(usize, usize),
    #[error("the document would be {0} characters long; documents are limited to {1}")]
    DocumentTooLarge(u32, u32),
}

/// Limits on what a document takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Characters (UTF-16 code units, as the browser counts) a document may hold.
    pub text_units: u32,
    /// Bytes one update may have.
    pub update_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { text_units: 1_000_000, update_bytes: 256 << 10 }
    }
}

/// A document in memory.
pub struct DocState {
    doc: Doc,
    text: TextRef,
    limits: Limits,
}

fn new_doc() -> Doc {
    Doc::with_options(Options { offset_kind: OffsetKind::Utf16, ..Options::default() })
}

impl DocState {
    /// An empty document.
    pub fn new(limits: Limits) -> DocState {
        let doc = new_doc();
        let text = doc.get_or_insert_text(TEXT);
        DocState { doc, text, limits }
    }

    /// A document from its snapshot (if any) and the updates logged after it, in order. An
    /// update of the log that does not decode is skipped (none should: each was checked before
    /// it was stored).
    pub fn load<'a>(snapshot: Option<&'a [u8]>, log: impl IntoIterator<Item = &'a [u8]>, limits: Limits) -> DocState {
        let state = DocState::new(limits);
        state.apply_all(snapshot.into_iter().chain(log));
        state
    }

    /// Take updates already checked (a snapshot and the log after it), in one transaction: a
    /// transaction's commit costs far more than one keystroke's update, so a long log is read
    /// many times faster than update by update. One that does not decode is skipped.
    pub fn apply_all<'a>(&self, updates: impl IntoIterator<Item = &'a [u8]>) {
        let mut txn = self.doc.transact_mut();
        for update in updates {
            let applied = Update::decode_v1(update)
                .map_err(|e| e.to_string())
                .and_then(|decoded| txn.apply_update(decoded).map_err(|e| e.to_string()));
            if let Err(error) = applied {
                tracing::warn!(%error, "a stored document update was skipped");
            }
        }
    }

    /// Take an update already checked (one of the log's): whatever it holds that is new here.
    pub fn apply_unchecked(&self, update: &[u8]) -> Result<(), CrdtError> {
        let decoded = Update::decode_v1(update).map_err(|e| CrdtError::Malformed(e.to_string()))?;
        let mut txn = self.doc.transact_mut();
        txn.apply_update(decoded).map_err(|e| CrdtError::Malformed(e.to_string()))
    }

    /// Take a client's update, if it decodes and keeps the limits; otherwise nothing changes.
    /// An update adds at most as many characters as it has bytes, so one that cannot pass the
    /// limit is applied at once; one that might is tried on a copy first.
    pub fn apply(&self, update: &[u8]) -> Result<(), CrdtError> {
        self.check(update)?;
        self.apply_unchecked(update)
    }

    /// Whether `update` may be taken: it decodes, and the document stays within its limits
    /// with it. Changes nothing.
    pub fn check(&self, update: &[u8]) -> Result<(), CrdtError> {
        if update.len() > self.limits.update_bytes {
            return Err(CrdtError::UpdateTooLarge(update.len(), self.limits.update_bytes));
        }
        Update::decode_v1(update).map_err(|e| CrdtError::Malformed(e.to_string()))?;
        let room = u64::from(self.limits.text_units).saturating_sub(u64::from(self.len()));
        if update.len() as u64 > room {
            let trial = DocState::load(Some(&self.full_state()), [], self.limits);
            trial.apply_unchecked(update)?;
            let size = trial.len();
            if size > self.limits.text_units {
                return Err(CrdtError::DocumentTooLarge(size, self.limits.text_units));
            }
        }
        Ok(())
    }

    /// An update that makes the text `target`, from an editor of its own (a fresh client id):
    /// one deletion and one insertion between what the two share at their start and end.
    /// Empty when the text is `target` already.
    pub fn edit_to(&self, target: &str) -> Vec<u8> {
        let editor = DocState::load(Some(&self.full_state()), [], self.limits);
        let now: Vec<u16> = editor.text().encode_utf16().collect();
        let want: Vec<u16> = target.encode_utf16().collect();
        if now == want {
            return Vec::new();
        }
        let start = now.iter().zip(&want).take_while(|(a, b)| a == b).count();
        let tail = now[start..].iter().rev().zip(want[start..].iter().rev()).take_while(|(a, b)| a == b).count();
        let before = editor.doc.transact().state_vector();
        {
            let mut txn = editor.doc.transact_mut();
            let removed = (now.len() - tail - start) as u32;
            if removed > 0 {
                editor.text.remove_range(&mut txn, start as u32, removed);
            }
            let inserted = String::from_utf16_lossy(&want[start..want.len() - tail]);
            if !inserted.is_empty() {
                editor.text.insert(&mut txn, start as u32, &inserted);
            }
        }
        let txn = editor.doc.transact();
        txn.encode_state_as_update_v1(&before)
    }

    /// The text's length, in UTF-16 code units.
    pub fn len(&self) -> u32 {
        self.text.len(&self.doc.transact())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text now.
    pub fn text(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    /// Everything a client with `state_vector` (Yjs v1 encoding) lacks, as one update.
    pub fn missing(&self, state_vector: &[u8]) -> Result<Vec<u8>, CrdtError> {
        let vector = StateVector::decode_v1(state_vector).map_err(|e| CrdtError::Malformed(e.to_string()))?;
        Ok(self.doc.transact().encode_state_as_update_v1(&vector))
    }

    /// This document's state vector (Yjs v1 encoding).
    pub fn state_vector(&self) -> Vec<u8> {
        self.doc.transact().state_vector().encode_v1()
    }

    /// The whole document as one update: a snapshot.
    pub fn full_state(&self) -> Vec<u8> {
        self.doc.transact().encode_state_as_update_v1(&StateVector::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's own copy of the document, as a browser or a Yjs client holds it.
    struct Client {
        doc: Doc,
        text: TextRef,
    }

    impl Client {
        fn new(id: u64) -> Client {
            let doc = Doc::with_options(Options {
                client_id: yrs::ClientID::new(id),
                offset_kind: OffsetKind::Utf16,
                ..Options::default()
            });
            let text = doc.get_or_insert_text(TEXT);
            Client { doc, text }
        }

        /// Edit: insert at `index`; the update to send.
        fn insert(&self, index: u32, chunk: &str) -> Vec<u8> {
            let before = self.doc.transact().state_vector();
            {
                let mut txn = self.doc.transact_mut();
                self.text.insert(&mut txn, index, chunk);
            }
            self.doc.transact().encode_state_as_update_v1(&before)
        }

        fn receive(&self, update: &[u8]) {
            let mut txn = self.doc.transact_mut();
            txn.apply_update(Update::decode_v1(update).unwrap()).unwrap();
        }

        fn text(&self) -> String {
            self.text.get_string(&self.doc.transact())
        }

        /// What it has, to ask the server for the rest (a read transaction of its own, ended
        /// before anything writes).
        fn vector(&self) -> Vec<u8> {
            self.doc.transact().state_vector().encode_v1()
        }

        fn len(&self) -> u32 {
            self.text.len(&self.doc.transact())
        }
    }

    #[test]
    fn concurrent_edits_converge_and_offline_edits_merge() {
        let server = DocState::new(Limits::default());
        let clients: Vec<Client> = (1..=3).map(Client::new).collect();
        // Each types at the start and the end of what it has seen, without waiting for the
        // others: every update reaches the server, and the server's state every client.
        for round in 0..20 {
            let mut updates = Vec::new();
            for (i, client) in clients.iter().enumerate() {
                updates.push(client.insert(0, &format!("{i}")));
                updates.push(client.insert(client.len(), &format!("<{round}>")));
            }
            for update in &updates {
                server.apply(update).unwrap();
            }
            for client in &clients {
                let missing = server.missing(&client.vector()).unwrap();
                client.receive(&missing);
            }
        }
        let text = server.text();
        let typed: usize = (0..20).map(|round| 1 + format!("<{round}>").len()).sum::<usize>() * clients.len();
        assert_eq!(text.len(), typed, "every character is kept");
        for client in &clients {
            assert_eq!(client.text(), text, "every copy ends the same");
        }

        // Two people edit the same sentence offline; on reconnecting both keep their words.
        let server = DocState::new(Limits::default());
        let (ann, bob) = (Client::new(10), Client::new(11));
        let base = ann.insert(0, "The plan is ready.");
        server.apply(&base).unwrap();
        let missing = server.missing(&bob.vector()).unwrap();
        bob.receive(&missing);
        let ann_edit = ann.insert(12, "almost ");
        let bob_edit = bob.insert(17, " today");
        server.apply(&bob_edit).unwrap();
        server.apply(&ann_edit).unwrap();
        assert_eq!(server.text(), "The plan is almost ready today.");
    }

    #[test]
    fn a_bad_or_oversized_update_changes_nothing() {
        let limits = Limits { text_units: 20, update_bytes: 1000 };
        let server = DocState::new(limits);
        let ann = Client::new(1);
        server.apply(&ann.insert(0, "hello")).unwrap();
        let before = server.full_state();
        assert!(matches!(server.apply(b"\xff\x00garbage"), Err(CrdtError::Malformed(_))));
        assert!(matches!(server.apply(&ann.insert(5, &"x".repeat(30))), Err(CrdtError::DocumentTooLarge(35, 20))));
        assert!(matches!(server.apply(&vec![0u8; 2000]), Err(CrdtError::UpdateTooLarge(2000, 1000))));
        assert_eq!(server.full_state(), before, "nothing changed");
        assert_eq!(server.text(), "hello");
        assert!(server.missing(b"\xff\xff\xff").is_err());
    }

    #[test]
    fn an_edit_to_a_text_makes_it_that_text_and_keeps_others_edits() {
        let server = DocState::new(Limits::default());
        let ann = Client::new(1);
        server.apply(&ann.insert(0, "one two three 😀 four")).unwrap();
        let update = server.edit_to("one 2 three 😀 four!");
        assert!(server.check(&update).is_ok());
        server.apply(&update).unwrap();
        assert_eq!(server.text(), "one 2 three 😀 four!");
        assert!(server.edit_to("one 2 three 😀 four!").is_empty(), "nothing to do");
        // Someone who had not seen it merges it with an edit of their own.
        ann.insert(0, ">");
        ann.receive(&update);
        assert_eq!(ann.text(), ">one 2 three 😀 four!");
    }

    #[test]
    fn a_snapshot_and_the_log_after_it_load_the_same_text() {
        let ann = Client::new(1);
        let mut log = Vec::new();
        for i in 0..200u32 {
            log.push(ann.insert(i.min(ann.len()), "é"));
        }
        let whole = DocState::load(None, log.iter().map(Vec::as_slice), Limits::default());
        let snapshot = DocState::load(None, log[..150].iter().map(Vec::as_slice), Limits::default()).full_state();
        let compacted = DocState::load(Some(&snapshot), log[150..].iter().map(Vec::as_slice), Limits::default());
        assert_eq!(compacted.text(), whole.text());
        assert_eq!(whole.text(), ann.text());
        assert_eq!(compacted.state_vector(), whole.state_vector());
    }
}
