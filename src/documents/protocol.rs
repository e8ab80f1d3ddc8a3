//! What a document is on the wire (`/ws`), for the page and for every other client.
//!
//! A document's edits travel as the y-protocols messages Yjs speaks (sync step 1 and 2,
//! update, awareness), base64 in a `doc_sync` frame: the same messages the Yjs endpoint
//! (`/yjs/<room>/<name>`) carries in binary frames.

use serde::{Deserialize, Serialize};

/// A document's topic: its edits, its awareness (carets, who is in it) and its fate.
pub const DOC_TOPIC_PREFIX: &str = "doc:";
/// A room's list of documents: `docs:<room>`.
pub const DOCS_TOPIC_PREFIX: &str = "docs:";

/// The name of a document's text in its Yjs document (`doc.getText("text")` in Yjs).
pub const TEXT_NAME: &str = "text";

/// The longest document name, in characters.
pub const MAX_NAME: usize = 100;

pub fn doc_topic(id: i64) -> String {
    format!("{DOC_TOPIC_PREFIX}{id}")
}

pub fn parse_doc_topic(topic: &str) -> Option<i64> {
    topic.strip_prefix(DOC_TOPIC_PREFIX)?.parse().ok().filter(|id| *id > 0)
}

pub fn docs_topic(room: &str) -> String {
    format!("{DOCS_TOPIC_PREFIX}{room}")
}

/// A name trimmed, if it is 1 to [`MAX_NAME`] characters without control characters or `/`
/// (the Yjs endpoint's path names a document `<room>/<name>`).
pub fn clean_name(name: &str) -> Option<String> {
    let name = name.trim();
    let chars = name.chars().count();
    let fine = chars > 0 && chars <= MAX_NAME && !name.chars().any(|c| c.is_control() || c == '/');
    fine.then(|| name.to_owned())
}

/// A document, as a room's list and its page show it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DocumentInfo {
    pub id: i64,
    pub room: String,
    pub name: String,
    /// Who made it (display name).
    pub creator: String,
    /// When, in milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// A version in a document's history: the state after the log's event at `offset`, the last
/// of a run of edits with no pause longer than a minute.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub offset: u64,
    /// When its last edit was stored (milliseconds since the Unix epoch).
    pub at: i64,
    /// Who edited in it, in order of their first edit.
    pub authors: Vec<String>,
    /// How many updates it holds.
    pub edits: u64,
}

/// Documents' requests on `/ws`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DocRequest {
    /// A y-protocols message (base64) for the document (`topic`: `doc:<id>`, subscribed).
    /// Each is answered by `ack` (or `error`): an update (or step 2) once stored, with its
    /// offset in the document's log (0 when it held nothing new); sync step 1 after the
    /// `doc_sync` with step 2 that answers it.
    DocSync { id: String, topic: String, data: String },
    /// Make a document in a room (`topic`: `chat:<room>`). Answered by `document_created`.
    CreateDocument { id: String, topic: String, name: String },
    /// Rename a document (its creator, or an admin). Answered by `ack`.
    RenameDocument { id: String, topic: String, name: String },
    /// Delete a document, its history with it (its creator, or an admin). Answered by `ack`.
    DeleteDocument { id: String, topic: String },
    /// The document's versions, newest first. Answered by `doc_versions`.
    DocVersions { id: String, topic: String },
    /// The text as it was after the log's event at `offset`. Answered by `doc_version`.
    DocVersion { id: String, topic: String, offset: u64 },
    /// Make the text what it was after `offset`, as a new edit of mine. Answered by `ack`.
    RestoreVersion { id: String, topic: String, offset: u64 },
}

impl DocRequest {
    pub const TYPES: [&'static str; 7] = [
        "doc_sync",
        "create_document",
        "rename_document",
        "delete_document",
        "doc_versions",
        "doc_version",
        "restore_version",
    ];
}

/// Documents' frames from the server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DocFrame {
    /// First on subscribing to `doc:<id>`: the document, and whether I may rename or delete it.
    Document { topic: String, document: DocumentInfo, may_manage: bool },
    /// A y-protocols message (base64): the server's sync step 1 after `document`, step 2 in
    /// answer to mine, then everyone's updates and awareness.
    DocSync { topic: String, data: String },
    /// The document was renamed.
    DocumentRenamed { topic: String, name: String },
    /// The document was deleted: nothing of it follows.
    DocumentDeleted { topic: String },
    /// In answer to `doc_versions`: newest first.
    DocVersions { id: String, topic: String, versions: Vec<Version> },
    /// In answer to `doc_version`.
    DocVersion { id: String, topic: String, offset: u64, text: String },
}

/// Frames of a room's list of documents, `docs:<room>` (a type of their own: the room's page,
/// which shows the list, carries no code for a document's frames).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DocListFrame {
    /// The room's documents, by name, first on subscribing and after every change.
    Documents { topic: String, documents: Vec<DocumentInfo> },
    /// In answer to `create_document` (`topic`: the room's list, `docs:<room>`).
    DocumentCreated { id: String, topic: String, document: DocumentInfo },
}

impl crate::realtime::protocol::FeatureFrame for DocListFrame {
    fn from_json(text: &str) -> Result<DocListFrame, serde_json::Error> {
        serde_json::from_str(text)
    }
}

impl crate::realtime::protocol::FeatureFrame for DocFrame {
    fn from_json(text: &str) -> Result<DocFrame, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// Base64 (standard alphabet, padded), as the frames carry binary.
pub fn encode_base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_names() {
        assert_eq!(parse_doc_topic(&doc_topic(12)), Some(12));
        assert_eq!(parse_doc_topic("doc:0"), None);
        assert_eq!(parse_doc_topic("doc:x"), None);
        assert_eq!(parse_doc_topic("docs:lobby"), None);
        assert_eq!(clean_name("  Minutes "), Some("Minutes".into()));
        assert_eq!(clean_name("  "), None);
        assert_eq!(clean_name("a/b"), None);
        assert_eq!(clean_name("a\nb"), None);
        assert_eq!(clean_name(&"é".repeat(100)), Some("é".repeat(100)));
        assert_eq!(clean_name(&"é".repeat(101)), None);
        assert_eq!(decode_base64(&encode_base64(b"\x00\xffyjs")), Some(b"\x00\xffyjs".to_vec()));
        assert_eq!(decode_base64("not base64!"), None);
    }

    #[test]
    fn frames_are_spelled_as_documented() {
        let request: DocRequest =
            serde_json::from_str(r#"{"type":"doc_sync","id":"1","topic":"doc:3","data":"AAA="}"#).unwrap();
        assert_eq!(request, DocRequest::DocSync { id: "1".into(), topic: "doc:3".into(), data: "AAA=".into() });
        let frame = DocFrame::DocumentDeleted { topic: "doc:3".into() };
        assert_eq!(serde_json::to_string(&frame).unwrap(), r#"{"type":"document_deleted","topic":"doc:3"}"#);
    }
}
