//! A real server on a real socket, and a WebSocket client that speaks to it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchboard::server::config::Config;
use switchboard::server::{AppState, Server};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::for_tests(format!("sqlite://{}/test.db", dir.path().display()));
        adjust(&mut config);
        let server = Server::bind(config).await.expect("server binds");
        let addr = server.local_addr();
        let state = server.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("server runs");
        });
        TestServer { addr, state, stop: Some(stop), task: Some(task), _dir: dir }
    }

    /// Ask for a graceful shutdown and wait until it is done.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task).await.expect("server stops in time").expect("server task");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub async fn web(&self, name: &str) -> Client {
        Client::connect(&self.url(&format!("/ws?name={name}"))).await
    }

    pub async fn seed_chat(&self) -> Client {
        Client::connect(&self.url("/ws/chat/")).await
    }
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Closed(Option<u16>),
    Dropped,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        Client { ws, next_id: 1 }
    }

    /// Connect with a tiny receive buffer, so that a client that does not read
    /// stops the server's writes quickly.
    pub async fn connect_small_buffer(url: &str, addr: SocketAddr) -> Client {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("recv buffer");
        let stream = socket.connect(addr).await.expect("tcp connects");
        let request = url.into_client_request().expect("request");
        let (ws, _) =
            tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await.expect("websocket handshake");
        Client { ws, next_id: 1 }
    }

    pub fn id(&mut self) -> String {
        self.next_id += 1;
        format!("r{}", self.next_id)
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws.send(Message::text(frame.to_string())).await.expect("send");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// The next text frame as JSON; panics on anything else or after the wait.
    pub async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait")
                .expect("the connection is open")
                .expect("a readable frame");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next frame of `kind`, skipping others (such as `welcome`).
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Read until the connection ends.
    pub async fn until_end(&mut self, wait: Duration) -> (usize, Ended) {
        let mut frames = 0;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("the connection did not end within {wait:?} ({frames} frames read)"),
                Ok(None) | Ok(Some(Err(_))) => return (frames, Ended::Dropped),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return (frames, Ended::Closed(frame.map(|f| u16::from(f.code))));
                }
                Ok(Some(Ok(Message::Text(_)))) => frames += 1,
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    pub async fn subscribe(&mut self, topic: &str, resume: Option<Value>) -> Value {
        let id = self.id();
        let mut frame = json!({"type": "subscribe", "id": id, "topic": topic});
        if let Some(resume) = resume {
            frame["resume"] = resume;
        }
        self.send(frame).await;
        loop {
            let reply = self.next().await;
            if reply["id"] == id.as_str() {
                return reply;
            }
        }
    }

    /// Publish and wait for the ack (or error) of this publish.
    pub async fn publish(&mut self, topic: &str, id: &str, text: &str) -> Value {
        self.send(json!({"type": "publish", "id": id, "topic": topic, "text": text})).await;
        loop {
            let reply = self.next().await;
            if reply["id"] == id && (reply["type"] == "ack" || reply["type"] == "error") {
                return reply;
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    }
}
