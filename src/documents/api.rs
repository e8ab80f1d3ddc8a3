//! Documents over HTTP and the Yjs endpoint.
//!
//! - `GET /docs/{id}/export.md`: the text as a Markdown file.
//! - `/yjs/{room}/{name}`: y-websocket as Yjs clients speak it, one y-protocols message per
//!   binary frame, so that `new WebsocketProvider("ws://host/yjs", "<room>/<name>", doc)`
//!   edits the same document as the page. Signed in as the other WebSocket endpoints are
//!   (session cookie, `?token=`, or a guest in guest mode with `?name=`); the document is made
//!   on first connect for whoever may write in the room.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::protocol::{decode_base64, doc_topic, DocFrame};
use super::server::{Announced, DocError, Documents};
use super::yproto::YMessage;
use crate::accounts::auth::Identity;
use crate::realtime::server::user_topic;
use crate::server::{api_caller, api_refusal, ws_identity, AppState, WsQuery};

/// Events waiting for a Yjs connection before it is taken for too slow.
const QUEUE: usize = 1024;
/// A ping this often; nothing heard for three of them closes the connection.
const PING: Duration = Duration::from_secs(15);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/docs/{id}/export.md", get(export))
        .route("/rooms/{room}/docs", axum::routing::post(form_create))
        .route("/yjs/{room}/{name}", get(yjs))
}

fn failure(error: DocError) -> Response {
    api_refusal(error.code(), &error)
}

/// A file name from a document's name: letters, digits, `-` and `_`, the rest `-`.
fn file_name(name: &str) -> String {
    let name: String = name.chars().map(|c| if c.is_alphanumeric() || c == '_' { c } else { '-' }).collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        "document".into()
    } else {
        name.to_owned()
    }
}

async fn export(State(state): State<AppState>, Path(raw): Path<String>, headers: HeaderMap) -> Response {
    let who = match api_caller(&state, &headers, true).await {
        Ok(who) => who,
        Err(response) => return response,
    };
    let Some(id) = raw.parse::<i64>().ok().filter(|&id| id > 0) else { return failure(DocError::UnknownDocument) };
    let documents = state.get::<Documents>();
    let (document, _) = match documents.visible(id, &who).await {
        Ok(found) => found,
        Err(error) => return failure(error),
    };
    let text = match documents.open(id).await {
        Ok(open) => open.text(),
        Err(error) => return failure(error),
    };
    // ASCII only in the plain parameter; the whole name in RFC 5987's.
    let plain = file_name(&document.name).replace(|c: char| !c.is_ascii(), "-");
    let encoded: String = form_urlencoded::byte_serialize(file_name(&document.name).as_bytes()).collect();
    let disposition = format!("attachment; filename=\"{plain}.md\"; filename*=UTF-8''{encoded}.md");
    let headers =
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)];
    (StatusCode::OK, headers, text).into_response()
}

/// The plain form that makes a document (without JavaScript): on to its page, or back to the
/// room if it could not be made.
async fn form_create(
    State(state): State<AppState>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let who = match api_caller(&state, &headers, true).await {
        Ok(who) => who,
        Err(response) => return response,
    };
    let name = form_urlencoded::parse(&body).find(|(key, _)| key == "name").map(|(_, v)| v.into_owned());
    let documents = state.get::<Documents>();
    match documents.create(&room, name.as_deref().unwrap_or_default(), &who).await {
        Ok(document) => axum::response::Redirect::to(&format!("/docs/{}", document.id)).into_response(),
        Err(error) => failure(error),
    }
}

async fn yjs(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    Path((room, name)): Path<(String, String)>,
    Query(query): Query<WsQuery>,
    headers: HeaderMap,
) -> Response {
    let who = match ws_identity(&headers, &state, &query).await {
        Ok(who) => who,
        Err(refusal) => return refusal,
    };
    let documents = state.get::<Documents>();
    let id = match documents.find_or_create(&room, &name, &who).await {
        Ok(id) => id,
        Err(error) => return failure(error),
    };
    let update_bytes = documents.limits().update_bytes;
    let guard = state.connections.token();
    ws.max_message_size(update_bytes + 1024).max_frame_size(update_bytes + 1024).on_upgrade(move |socket| async move {
        serve(socket, state, documents, id, who).await;
        drop(guard);
    })
}

/// Serve one Yjs client until it closes, the document is deleted, or access is revoked.
async fn serve(mut socket: WebSocket, state: AppState, documents: Arc<Documents>, id: i64, who: Identity) {
    let hub = state.hub.clone();
    let (peer, mut events) = hub.connect(QUEUE);
    let topic = doc_topic(id);
    hub.subscribe(&topic, &peer);
    if let Some(user) = who.user() {
        hub.subscribe(&user_topic(user.id), &peer);
    }
    let mut announced = Announced::default();
    let end = run(&mut socket, &state, &documents, &mut events, &peer, id, &who, &mut announced).await;
    hub.disconnect(&peer);
    documents.forget(id, announced.take(id));
    let frame = CloseFrame { code: end.0, reason: end.1.into() };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// How the connection ended: a close code and reason.
type End = (u16, &'static str);

#[allow(clippy::too_many_arguments)]
async fn run(
    socket: &mut WebSocket,
    state: &AppState,
    documents: &Documents,
    events: &mut tokio::sync::mpsc::Receiver<Arc<crate::realtime::server::hub::Event>>,
    peer: &crate::realtime::server::hub::Peer,
    id: i64,
    who: &Identity,
    announced: &mut Announced,
) -> End {
    let open = match documents.open(id).await {
        Ok(open) => open,
        Err(error) => {
            tracing::warn!(%error, "opening a document failed");
            return (1011, "the document could not be read");
        }
    };
    let mut first = vec![documents.step1(&open)];
    first.extend(documents.newcomer_awareness(&open));
    for message in first {
        if socket.send(Message::Binary(message.encode().into())).await.is_err() {
            return (1000, "");
        }
    }
    let topic = doc_topic(id);
    let mut ping = tokio::time::interval(PING);
    ping.reset();
    let mut quiet = 0;
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return (1001, "the server is shutting down"),
            _ = peer.kicked() => return (4001, "too slow: reconnect"),
            event = events.recv() => {
                let Some(event) = event else { return (1001, "") };
                if event.revoke.as_deref() == Some(topic.as_str()) {
                    return (4003, "the document is gone, or no longer yours to see");
                }
                let Ok(DocFrame::DocSync { data, .. }) = serde_json::from_slice::<DocFrame>(&event.frame) else { continue };
                let Some(bytes) = decode_base64(&data) else { continue };
                if socket.send(Message::Binary(bytes.into())).await.is_err() {
                    return (1000, "");
                }
            }
            message = socket.recv() => {
                quiet = 0;
                let bytes = match message {
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Text(_))) => return (1003, "binary y-protocols messages only"),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return (1000, ""),
                };
                let Some(message) = YMessage::decode(&bytes) else {
                    return (1003, "not a y-protocols sync or awareness message");
                };
                match documents.receive(&open, who, message, announced).await {
                    Ok(Some(reply)) => {
                        if socket.send(Message::Binary(reply.encode().into())).await.is_err() {
                            return (1000, "");
                        }
                    }
                    Ok(None) => {}
                    // y-websocket has no error message: a refused edit closes the connection,
                    // and the client's reconnection syncs again from what was stored.
                    Err(DocError::RateLimited) => return (1008, "too many edits too fast"),
                    Err(error) if error.is_internal() => {
                        tracing::warn!(%error, "a Yjs edit failed");
                        return (1011, "the edit could not be stored");
                    }
                    Err(_) => return (1008, "an edit that does not decode or is too large"),
                }
            }
            _ = ping.tick() => {
                quiet += 1;
                if quiet > 3 {
                    return (4002, "nothing heard");
                }
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return (1000, "");
                }
            }
        }
    }
}
