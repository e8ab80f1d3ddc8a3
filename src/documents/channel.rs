//! Documents' side of the socket: joining `doc:<id>` (the document, the server's sync step 1,
//! everyone's awareness) and `docs:<room>` (the room's list), and the requests `doc_sync`,
//! `create_document`, `rename_document`, `delete_document`, `doc_versions`, `doc_version` and
//! `restore_version`.

use std::sync::Arc;

use async_trait::async_trait;

use super::protocol::{
    decode_base64, parse_doc_topic, DocFrame, DocListFrame, DocRequest, DOCS_TOPIC_PREFIX, DOC_TOPIC_PREFIX,
};
use super::server::{sync_frame, Announced, DocError, Documents};
use super::yproto::YMessage;
use crate::chat::protocol::ChatTopic;
use crate::realtime::protocol::{ErrorCode, Request, ServerFrame};
use crate::realtime::server::channel::{Channel, Closed, Flow, Join};
use crate::realtime::server::gateway::Conn;

pub struct DocumentsChannel {
    pub documents: Arc<Documents>,
}

/// Answer a refusal (see [`Conn::refuse`]).
async fn refuse(conn: &mut Conn, id: String, error: DocError) -> Flow {
    conn.refuse(id, error.code(), &error).await
}

/// The text of a frame made as bytes.
fn text(bytes: bytes::Bytes) -> String {
    String::from_utf8(bytes.to_vec()).unwrap_or_default()
}

/// The reply to a deferred request: `ack` with `offset`, or the error.
fn answer(id: String, topic: String, result: Result<u64, DocError>) -> Option<String> {
    let frame = match result {
        Ok(offset) => ServerFrame::Ack { id, topic, offset, duplicate: false },
        Err(error) => {
            if error.is_internal() {
                tracing::warn!(%error, "a document request failed");
            }
            let message =
                if error.is_internal() { "the edit could not be stored; retry".into() } else { error.to_string() };
            ServerFrame::Error { id: Some(id), code: error.code(), message }
        }
    };
    Some(serde_json::to_string(&frame).unwrap_or_default())
}

impl DocumentsChannel {
    /// The document a subscribed `doc:<id>` topic names, or an error frame sent and `None`.
    async fn subscribed_doc(&self, conn: &mut Conn, id: &str, topic: &str) -> Result<Option<i64>, Closed> {
        let Some(doc) = parse_doc_topic(topic) else {
            let message = format!("{topic:?} is not a document's topic (doc:<id>)");
            conn.error(Some(id.to_owned()), ErrorCode::UnknownTopic, &message).await?;
            return Ok(None);
        };
        if conn.subscribed(topic).is_none() {
            let message = "subscribe to the document first";
            conn.error(Some(id.to_owned()), ErrorCode::NotSubscribed, message).await?;
            return Ok(None);
        }
        Ok(Some(doc))
    }

    async fn join_document(&self, conn: &mut Conn, id: String, topic: String, doc: i64) -> Flow {
        let (document, room) = match self.documents.visible(doc, conn.who()).await {
            Ok(found) => found,
            Err(error) => return refuse(conn, id, error).await,
        };
        // Subscribed before the document is read: whatever is stored after it comes as an event.
        conn.subscribe(&topic);
        let open = match self.documents.open(doc).await {
            Ok(open) => open,
            Err(error) => {
                conn.unsubscribe(&topic);
                return refuse(conn, id, error).await;
            }
        };
        conn.send(&ServerFrame::Subscribed { id, topic: topic.clone(), epoch: String::new(), head: 0 }).await?;
        let may_manage = Documents::may_manage(&document, conn.who());
        let info = Documents::info(&document, &room);
        conn.send(&DocFrame::Document { topic: topic.clone(), document: info, may_manage }).await?;
        conn.send_text(text(sync_frame(&topic, &self.documents.step1(&open)))).await?;
        match self.documents.newcomer_awareness(&open) {
            Some(awareness) => conn.send_text(text(sync_frame(&topic, &awareness))).await,
            None => Ok(()),
        }
    }

    async fn join_list(&self, conn: &mut Conn, id: String, topic: String) -> Flow {
        let room = topic.strip_prefix(DOCS_TOPIC_PREFIX).unwrap_or_default().to_owned();
        conn.subscribe(&topic);
        match self.documents.list(&room, conn.who()).await {
            Ok(documents) => {
                conn.send(&ServerFrame::Subscribed { id, topic: topic.clone(), epoch: String::new(), head: 0 }).await?;
                conn.send(&DocListFrame::Documents { topic, documents }).await
            }
            Err(error) => {
                conn.unsubscribe(&topic);
                refuse(conn, id, error).await
            }
        }
    }

    async fn sync(&self, conn: &mut Conn, id: String, topic: String, data: &str) -> Flow {
        let Some(doc) = self.subscribed_doc(conn, &id, &topic).await? else { return Ok(()) };
        let Some(message) = decode_base64(data).as_deref().and_then(YMessage::decode) else {
            return refuse(conn, id, DocError::NotYjs).await;
        };
        let open = match self.documents.open(doc).await {
            Ok(open) => open,
            Err(error) => return refuse(conn, id, error).await,
        };
        match message {
            YMessage::SyncStep2(update) | YMessage::Update(update) => {
                let (documents, who) = (self.documents.clone(), conn.who().clone());
                // Acknowledged once stored, without holding up the connection meanwhile.
                conn.defer(async move { answer(id, topic, documents.edit(&open, &who, update).await) });
                Ok(())
            }
            other => {
                let who = conn.who().clone();
                match self.documents.receive(&open, &who, other, conn.local::<Announced>()).await {
                    Ok(reply) => {
                        if let Some(reply) = reply {
                            conn.send_text(text(sync_frame(&topic, &reply))).await?;
                        }
                        conn.send(&ServerFrame::Ack { id, topic, offset: 0, duplicate: false }).await
                    }
                    Err(error) => refuse(conn, id, error).await,
                }
            }
        }
    }
}

#[async_trait]
impl Channel for DocumentsChannel {
    fn topics(&self) -> &'static [&'static str] {
        &[DOC_TOPIC_PREFIX, DOCS_TOPIC_PREFIX]
    }

    fn spelling(&self) -> &'static [&'static str] {
        &["doc:<id>", "docs:<room>"]
    }

    fn requests(&self) -> &'static [&'static str] {
        &DocRequest::TYPES
    }

    async fn join(&self, conn: &mut Conn, join: Join) -> Flow {
        let Join { id, topic, .. } = join;
        if topic.starts_with(DOCS_TOPIC_PREFIX) {
            return self.join_list(conn, id, topic).await;
        }
        match parse_doc_topic(&topic) {
            Some(doc) => self.join_document(conn, id, topic, doc).await,
            None => {
                let message = format!("{topic:?} is not a document's topic (doc:<id>)");
                conn.error(Some(id), ErrorCode::UnknownTopic, &message).await
            }
        }
    }

    async fn request(&self, conn: &mut Conn, request: Request) -> Flow {
        let request = match request.read::<DocRequest>() {
            Ok(request) => request,
            Err(rejection) => return conn.reject(rejection).await,
        };
        match request {
            DocRequest::DocSync { id, topic, data } => self.sync(conn, id, topic, &data).await,
            DocRequest::CreateDocument { id, topic, name } => {
                let Some(ChatTopic::Room(room)) = ChatTopic::parse(&topic) else {
                    let message = format!("{topic:?} is not a room's topic (chat:<room>)");
                    return conn.error(Some(id), ErrorCode::UnknownTopic, &message).await;
                };
                match self.documents.create(&room, &name, conn.who()).await {
                    Ok(document) => {
                        let topic = super::protocol::docs_topic(&room);
                        conn.send(&DocListFrame::DocumentCreated { id, topic, document }).await
                    }
                    Err(error) => refuse(conn, id, error).await,
                }
            }
            DocRequest::RenameDocument { id, topic, name } => {
                let Some(doc) = parse_doc_topic(&topic) else {
                    return refuse(conn, id, DocError::UnknownDocument).await;
                };
                match self.documents.rename(doc, &name, conn.who()).await {
                    Ok(()) => conn.send(&ServerFrame::Ack { id, topic, offset: 0, duplicate: false }).await,
                    Err(error) => refuse(conn, id, error).await,
                }
            }
            DocRequest::DeleteDocument { id, topic } => {
                let Some(doc) = parse_doc_topic(&topic) else {
                    return refuse(conn, id, DocError::UnknownDocument).await;
                };
                match self.documents.delete(doc, conn.who()).await {
                    Ok(()) => conn.send(&ServerFrame::Ack { id, topic, offset: 0, duplicate: false }).await,
                    Err(error) => refuse(conn, id, error).await,
                }
            }
            DocRequest::DocVersions { id, topic } => {
                let Some(doc) = self.subscribed_doc(conn, &id, &topic).await? else { return Ok(()) };
                match self.documents.versions(doc).await {
                    Ok(versions) => conn.send(&DocFrame::DocVersions { id, topic, versions }).await,
                    Err(error) => refuse(conn, id, error).await,
                }
            }
            DocRequest::DocVersion { id, topic, offset } => {
                let Some(doc) = self.subscribed_doc(conn, &id, &topic).await? else { return Ok(()) };
                match self.documents.version_text(doc, offset).await {
                    Ok(text) => conn.send(&DocFrame::DocVersion { id, topic, offset, text }).await,
                    Err(error) => refuse(conn, id, error).await,
                }
            }
            DocRequest::RestoreVersion { id, topic, offset } => {
                let Some(doc) = self.subscribed_doc(conn, &id, &topic).await? else { return Ok(()) };
                let open = match self.documents.open(doc).await {
                    Ok(open) => open,
                    Err(error) => return refuse(conn, id, error).await,
                };
                let (documents, who) = (self.documents.clone(), conn.who().clone());
                conn.defer(async move { answer(id, topic, documents.restore(&open, &who, offset).await) });
                Ok(())
            }
        }
    }

    /// Leaving a document takes my carets out of it.
    fn leave(&self, conn: &mut Conn, topic: &str) {
        if let Some(doc) = parse_doc_topic(topic) {
            let clients = conn.local::<Announced>().take(doc);
            self.documents.forget(doc, clients);
        }
    }

    /// Closing takes my carets out of every document I had open.
    fn disconnect(&self, conn: &mut Conn) {
        for (doc, clients) in std::mem::take(conn.local::<Announced>()).all() {
            self.documents.forget(doc, clients);
        }
    }
}
