//! Shared documents (issue 19, in progress; the plan is `docs/documents.md`): a room's
//! Markdown documents, edited together through a CRDT (yrs). Built so far: the documents and
//! their snapshots in the store, on both engines, and the server's copy of a document (`crdt`).

#[cfg(feature = "ssr")]
pub mod crdt;
#[cfg(feature = "ssr")]
pub mod store;
