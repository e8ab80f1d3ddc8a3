//! A real server on a real socket, and a WebSocket client that speaks to it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use redis::Commands;
use serde_json::{json, Value};
use switchboard::server::config::Config;
use switchboard::server::{AppState, Server};
use switchboard::store::testing::TestDatabase;
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
    /// Where plain HTTP is redirected to HTTPS, when the test asked for it.
    pub redirect: Option<SocketAddr>,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
    /// The database of its own on the test PostgreSQL, when the tests run on PostgreSQL.
    _database: Option<Arc<TestDatabase>>,
}

/// The test Redis (`tools/services.sh start` found or started it).
pub fn redis_url() -> String {
    switchboard::store::testing::service_url("SWITCHBOARD_TEST_REDIS")
        .expect("no Redis for the tests: run `tools/services.sh start` (make test does)")
}

/// A Redis key prefix of a test's own; its keys are deleted when it is dropped.
pub struct RedisPrefix(String);

impl std::ops::Deref for RedisPrefix {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(redis_url()) else { return };
        let Ok(mut redis) = client.get_connection() else { return };
        let keys: Vec<String> = match redis.scan_match::<_, String>(format!("{}*", self.0)) {
            Ok(keys) => keys.filter_map(Result::ok).collect(),
            Err(_) => return,
        };
        if !keys.is_empty() {
            let _ = redis::cmd("DEL").arg(&keys).query::<()>(&mut redis);
        }
    }
}

pub fn redis_prefix() -> RedisPrefix {
    RedisPrefix(format!("switchboard-test-{:016x}:", rand::random::<u64>()))
}

/// The engine the servers of these tests store in: SQLite, unless `SWITCHBOARD_TEST_ENGINE` is
/// `postgres` (`make test` runs the feature suites on both).
pub fn on_postgres() -> bool {
    std::env::var("SWITCHBOARD_TEST_ENGINE").is_ok_and(|engine| engine == "postgres")
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = if on_postgres() { Some(Arc::new(TestDatabase::create().await)) } else { None };
        let url = match &database {
            Some(database) => database.url().to_owned(),
            None => format!("sqlite://{}/test.db", dir.path().display()),
        };
        let mut config = Config::for_tests(url);
        adjust(&mut config);
        Self::launch(config, dir, database).await
    }

    /// A node of a cluster: on `database` (PostgreSQL), with Redis keys under `prefix`.
    pub async fn node(database: &Arc<TestDatabase>, prefix: &str) -> TestServer {
        Self::node_with(database, prefix, |_| {}).await
    }

    /// As [`TestServer::node`], with the configuration adjusted.
    pub async fn node_with(database: &Arc<TestDatabase>, prefix: &str, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::for_tests(database.url().to_owned());
        config.redis_url = Some(redis_url());
        config.redis_prefix = prefix.to_owned();
        adjust(&mut config);
        Self::launch(config, dir, Some(database.clone())).await
    }

    /// Stop, then start again on the same database.
    pub async fn restart(mut self) -> TestServer {
        self.stop().await;
        let config = (*self.state.config).clone();
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().expect("temp dir"));
        Self::launch(config, dir, self._database.take()).await
    }

    async fn launch(config: Config, dir: tempfile::TempDir, database: Option<Arc<TestDatabase>>) -> TestServer {
        let server = Server::bind(config).await.expect("server binds");
        let addr = server.local_addr();
        let redirect = server.redirect_addr();
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
        TestServer { addr, redirect, state, stop: Some(stop), task: Some(task), _dir: dir, _database: database }
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

impl From<WebSocketStream<MaybeTlsStream<TcpStream>>> for Client {
    fn from(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Client {
        Client { ws, next_id: 1 }
    }
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

    /// The next text frame as JSON; panics on anything else or after the wait (pings do not
    /// extend it).
    /// Everything received until the pong of a ping sent now.
    pub async fn drain(&mut self) -> Vec<Value> {
        self.send(json!({"type": "ping", "id": "drain"})).await;
        let mut frames = Vec::new();
        loop {
            let frame = self.next().await;
            if frame["type"] == "pong" && frame["id"] == "drain" {
                return frames;
            }
            frames.push(frame);
        }
    }

    pub async fn next(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
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

    /// The next poll `tally` whose counts add up to `votes` (earlier ones are skipped).
    pub async fn next_tally_counting(&mut self, votes: u64) -> Value {
        loop {
            let tally = self.next_of("tally").await;
            let sum: u64 = tally["counts"].as_array().expect("counts").iter().filter_map(Value::as_u64).sum();
            if sum == votes {
                return tally;
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

/// A plain HTTP/1.1 response.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The session secret this response sets, if any.
    pub fn session(&self) -> Option<String> {
        let cookie = self.header("set-cookie")?;
        let value = cookie.split(';').next()?.strip_prefix("switchboard_session=")?;
        (!value.is_empty()).then(|| value.to_owned())
    }
}

/// One HTTP request on its own connection: enough for server functions and the API.
pub async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await.expect("response in time").expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status");
    let headers = lines.filter_map(|l| l.split_once(": ")).map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
    HttpResponse { status, headers, body: body.to_owned() }
}

/// Call a server function with a form body, as a browser with JavaScript does.
pub async fn server_fn(addr: SocketAddr, name: &str, form: &str, session: Option<&str>) -> HttpResponse {
    let cookie = session.map(|s| format!("switchboard_session={s}")).unwrap_or_default();
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")];
    if session.is_some() {
        headers.push(("Cookie", cookie.as_str()));
    }
    http(addr, "POST", &format!("/api/{name}"), &headers, form).await
}

impl TestServer {
    /// Sign up over HTTP and return the session secret.
    pub async fn sign_up(&self, username: &str) -> String {
        let response =
            server_fn(self.addr, "sign_up", &format!("username={username}&password=correct-horse"), None).await;
        assert_eq!(response.status, 200, "sign up: {}", response.body);
        response.session().expect("a session cookie")
    }

    /// A WebSocket as the holder of `session`.
    pub async fn web_as(&self, session: &str) -> Client {
        let mut request = self.url("/ws").into_client_request().expect("request");
        request.headers_mut().insert("cookie", format!("switchboard_session={session}").parse().expect("cookie"));
        let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("websocket connects");
        Client { ws, next_id: 1 }
    }

    /// The HTTP status of a refused upgrade, or 101.
    pub async fn upgrade_status(&self, path: &str, session: Option<&str>) -> u16 {
        let mut request = self.url(path).into_client_request().expect("request");
        if let Some(session) = session {
            request.headers_mut().insert("cookie", format!("switchboard_session={session}").parse().expect("cookie"));
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok(_) => 101,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
            Err(other) => panic!("unexpected upgrade error: {other}"),
        }
    }
}
