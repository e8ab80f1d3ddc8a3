//! Faults, with real processes: nodes of the `switchboard` binary on one PostgreSQL and a Redis
//! of this test's own (it is restarted here, so it cannot be the machine's shared one). A
//! checker subscribes on every node and verifies that every acknowledged message arrives
//! exactly once, in order, with contiguous offsets, on every subscriber, while a node is killed
//! with `kill -9` (its publishers retry on another node with the same ids), Redis is restarted,
//! then paused (its connections open and silent), and the nodes' PostgreSQL connections are
//! terminated; a single SQLite node killed with
//! `kill -9` and restarted loses nothing acknowledged either; presence forgets a killed node's
//! people within 10 s. Every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchboard::store::testing::TestDatabase;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

const LOBBY: &str = "chat:lobby";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn wait_until_answers(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "{what} did not answer on port {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node: the `switchboard` binary, with its own port.
struct Node {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
    /// What the node logs (warnings and errors).
    log: tempfile::NamedTempFile,
}

impl Node {
    async fn start(database: &str, redis: Option<&str>, prefix: &str) -> Node {
        let port = free_port();
        let mut args = vec![
            format!("--addr=127.0.0.1:{port}"),
            format!("--database-url={database}"),
            format!("--redis-prefix={prefix}"),
            "--guest-access".into(),
            "--message-rate=100000".into(),
            "--message-burst=100000".into(),
            "--presence-grace-ms=200".into(),
        ];
        if let Some(redis) = redis {
            args.push(format!("--redis-url={redis}"));
        }
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut node = Node { child: None, port, args, log };
        node.run().await;
        node
    }

    async fn run(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(self.log.reopen().unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("the switchboard binary starts");
        self.child = Some(child);
        wait_until_answers(self.port, "a node").await;
    }

    /// `kill -9`.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("SIGKILL");
        }
    }

    /// A graceful stop (SIGTERM), as a rolling restart does.
    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().expect("a running node") as i32;
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            tokio::time::timeout(Duration::from_secs(15), child.wait()).await.expect("stops in time").unwrap();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    fn logged(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

/// A Redis of this test's own, which it may restart.
struct PrivateRedis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    async fn start() -> PrivateRedis {
        let mut redis = PrivateRedis { child: None, port: free_port(), dir: tempfile::tempdir().unwrap() };
        redis.run().await;
        redis
    }

    async fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts (tools/services.sh installs it)");
        self.child = Some(child);
        wait_until_answers(self.port, "redis-server").await;
    }

    /// Pause Redis (SIGSTOP) for `long`: its connections stay open and answer nothing.
    async fn pause(&mut self, long: Duration) {
        let pid = self.child.as_ref().and_then(Child::id).expect("a running Redis") as i32;
        // SAFETY: signals to our own child process.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        tokio::time::sleep(long).await;
        unsafe { libc::kill(pid, libc::SIGCONT) };
    }

    async fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.run().await;
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Option<Socket> {
    let connected = tokio::time::timeout(Duration::from_secs(3), tokio_tungstenite::connect_async(url)).await;
    match connected {
        Ok(Ok((socket, _))) => Some(socket),
        _ => None,
    }
}

/// The next JSON frame within `wait`; `None` when the connection ended or stayed silent.
async fn next(socket: &mut Socket, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return serde_json::from_str(&text).ok(),
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// What the checker saw: the acknowledgements, by offset.
#[derive(Default)]
struct Acked {
    by_offset: BTreeMap<u64, String>,
    by_id: BTreeMap<String, u64>,
}

impl Acked {
    fn record(&mut self, id: &str, offset: u64) {
        if let Some(&earlier) = self.by_id.get(id) {
            assert_eq!(earlier, offset, "{id} was acknowledged at two offsets");
        }
        if let Some(other) = self.by_offset.get(&offset) {
            assert_eq!(other, id, "offset {offset} was acknowledged for two messages");
        }
        self.by_id.insert(id.to_owned(), offset);
        self.by_offset.insert(offset, id.to_owned());
    }
}

/// Publish `count` messages named `name-i`, each until acknowledged: on an error or a dead
/// connection, the same id again on the next node.
async fn publisher(
    name: String,
    urls: Vec<String>,
    start: usize,
    count: usize,
    pace: Duration,
    acked: Arc<Mutex<Acked>>,
) {
    let mut at = start;
    let mut socket: Option<Socket> = None;
    for i in 0..count {
        let id = format!("{name}-{i}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "{id} was never acknowledged");
            if socket.is_none() {
                socket = connect(&urls[at % urls.len()]).await;
                if socket.is_none() {
                    at += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
            let ws = socket.as_mut().unwrap();
            let frame = json!({"type": "publish", "id": id, "topic": LOBBY, "text": format!("{i}")});
            if ws.send(Message::text(frame.to_string())).await.is_err() {
                socket = None;
                at += 1;
                continue;
            }
            let answer = loop {
                match next(ws, Duration::from_secs(5)).await {
                    Some(frame) if frame["id"] == id.as_str() => break Some(frame),
                    Some(_) => continue,
                    None => break None,
                }
            };
            match answer {
                Some(frame) if frame["type"] == "ack" => {
                    acked.lock().unwrap().record(&id, frame["offset"].as_u64().unwrap());
                    break;
                }
                // Not stored (the store was away): the same id again, in a moment.
                Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                None => {
                    socket = None;
                    at += 1;
                }
            }
        }
        tokio::time::sleep(pace).await;
    }
}

/// Follow the lobby from its start, on `urls[start]`, moving to the next node (resuming) when
/// the connection dies, until `until` says where the end is and it is reached. Returns every
/// message received, in order: (offset, id).
async fn subscriber(urls: Vec<String>, start: usize, until: tokio::sync::watch::Receiver<u64>) -> Vec<(u64, String)> {
    let mut at = start;
    let mut got: Vec<(u64, String)> = Vec::new();
    let mut epoch: Option<Value> = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let end = *until.borrow();
        if end > 0 && got.last().map_or(0, |m| m.0) >= end {
            return got;
        }
        assert!(Instant::now() < deadline, "the subscriber reached only {:?}", got.last());
        let Some(mut ws) = connect(&urls[at % urls.len()]).await else {
            at += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // Resume from the last message received (from the start at first): a first try without
        // the epoch is answered `reset` with it, and tried again.
        let resume = json!({"epoch": epoch.clone().unwrap_or(json!("")), "offset": got.last().map_or(0, |m| m.0)});
        let subscribe = json!({"type": "subscribe", "id": "s", "topic": LOBBY, "resume": resume});
        if ws.send(Message::text(subscribe.to_string())).await.is_err() {
            at += 1;
            continue;
        }
        loop {
            let end = *until.borrow();
            if end > 0 && got.last().map_or(0, |m| m.0) >= end {
                return got;
            }
            let Some(frame) = next(&mut ws, Duration::from_secs(3)).await else {
                // Dead, or silent for 3 s: try the next node (a live node sends pings).
                at += 1;
                break;
            };
            match frame["type"].as_str() {
                Some("subscribed") => epoch = Some(frame["epoch"].clone()),
                Some("reset") => {
                    assert!(epoch.is_none(), "the epoch never changes: {frame}");
                    epoch = Some(frame["epoch"].clone());
                    break;
                }
                Some("message") => {
                    let offset = frame["offset"].as_u64().unwrap();
                    let expected = got.last().map_or(1, |m| m.0 + 1);
                    assert_eq!(offset, expected, "offsets arrive in order, once each, with no gap");
                    got.push((offset, frame["id"].as_str().unwrap().to_owned()));
                }
                _ => {}
            }
        }
    }
}

/// Run publishers and subscribers over `urls`, doing `fault` when the acknowledgements pass each
/// of its marks; then check what every subscriber got against what was acknowledged.
async fn check(urls: Vec<String>, publishers: usize, per_publisher: usize, mut faults: Vec<(usize, FaultFn)>) {
    let acked = Arc::new(Mutex::new(Acked::default()));
    let (end, until) = tokio::sync::watch::channel(0u64);
    let subscribers: Vec<_> =
        (0..urls.len()).map(|i| tokio::spawn(subscriber(urls.clone(), i, until.clone()))).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let writers: Vec<_> = (0..publishers)
        .map(|p| {
            let (urls, acked) = (urls.clone(), acked.clone());
            tokio::spawn(publisher(format!("p{p}"), urls, p, per_publisher, Duration::from_millis(15), acked))
        })
        .collect();
    faults.sort_by_key(|(mark, _)| *mark);
    for (mark, fault) in faults {
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().by_offset.len() < mark {
            assert!(Instant::now() < deadline, "publishing stalled before {mark} acknowledgements");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        fault().await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let total = (publishers * per_publisher) as u64;
    let offsets: Vec<u64> = acked.by_offset.keys().copied().collect();
    assert_eq!(offsets, (1..=total).collect::<Vec<u64>>(), "every message acknowledged once, offsets gap-free");
    end.send(total).unwrap();
    let expected: Vec<(u64, String)> = acked.by_offset.into_iter().collect();
    for subscriber in subscribers {
        let got = subscriber.await.unwrap();
        assert_eq!(got, expected, "a subscriber got exactly what was acknowledged");
    }
}

type FaultFn = Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send>;

fn fault<F: std::future::Future<Output = ()> + Send + 'static>(f: impl FnOnce() -> F + Send + 'static) -> FaultFn {
    Box::new(move || Box::pin(f()))
}

/// The first words of the names in a presence frame.
fn online(frame: &Value) -> Vec<String> {
    let names = frame["online"].as_array().unwrap();
    names.iter().map(|n| n.as_str().unwrap().split(' ').next().unwrap().to_owned()).collect()
}

/// Read until a presence frame lists exactly `want` (first words), within `within`; else the
/// last list seen.
async fn wait_for(watcher: &mut Socket, want: Vec<&str>, within: Duration) -> Result<(), Vec<String>> {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = Vec::new();
    while tokio::time::Instant::now() < deadline {
        let left = deadline - tokio::time::Instant::now();
        let Some(frame) = next(watcher, left).await else { break };
        if frame["type"] == "presence" {
            last = online(&frame);
            if last == want {
                return Ok(());
            }
        }
    }
    Err(last)
}

/// Terminate every connection to `database` but the caller's, as a failover or an
/// administrator would.
async fn terminate_connections(database: &str) {
    let admin = switchboard::store::testing::postgres_admin_url();
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    let name = database.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&name)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!killed.is_empty(), "the nodes had connections to terminate");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_or_repeated_through_a_killed_node_a_redis_restart_and_lost_connections() {
    let database = TestDatabase::create().await;
    let redis = Arc::new(tokio::sync::Mutex::new(PrivateRedis::start().await));
    let redis_url = redis.lock().await.url();
    let prefix = support::redis_prefix();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Node::start(database.url(), Some(&redis_url), &prefix).await);
    }
    let urls: Vec<String> = nodes.iter().map(|n| n.url("/ws?name=checker")).collect();
    let victim = Arc::new(tokio::sync::Mutex::new(nodes.pop().unwrap()));
    let url = database.url().to_owned();
    let faults = vec![
        (60, {
            let victim = victim.clone();
            fault(move || async move { victim.lock().await.kill().await })
        }),
        (130, {
            let redis = redis.clone();
            fault(move || async move { redis.lock().await.restart().await })
        }),
        (170, {
            let redis = redis.clone();
            fault(move || async move { redis.lock().await.pause(Duration::from_secs(5)).await })
        }),
        (200, fault(move || async move { terminate_connections(&url).await })),
    ];
    check(urls, 3, 90, faults).await;
    let logs: Vec<String> = nodes.iter().map(Node::logged).collect();
    assert!(logs.iter().any(|log| log.contains("went silent")), "a node noticed the paused Redis: {logs:?}");
}

#[tokio::test]
async fn a_killed_sqlite_node_restarted_has_everything_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("s.db").display());
    let node = Arc::new(tokio::sync::Mutex::new(Node::start(&database, None, "unused:").await));
    let urls = vec![node.lock().await.url("/ws?name=checker")];
    let restart = {
        let node = node.clone();
        fault(move || async move {
            let mut node = node.lock().await;
            node.kill().await;
            node.run().await;
        })
    };
    check(urls, 2, 80, vec![(50, restart)]).await;
    assert!(Path::new(&dir.path().join("s.db")).exists());
}

#[tokio::test]
async fn a_killed_nodes_people_leave_the_online_lists_within_ten_seconds_and_a_stopped_nodes_at_once() {
    let database = TestDatabase::create().await;
    let redis = support::redis_url();
    let prefix = support::redis_prefix();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Node::start(database.url(), Some(&redis), &prefix).await);
    }
    let mut watcher = connect(&nodes[0].url("/ws?name=watcher")).await.unwrap();
    let present = json!({"type": "subscribe", "id": "s", "topic": LOBBY, "present": true});
    watcher.send(Message::text(present.to_string())).await.unwrap();
    let mut others = Vec::new();
    for (node, name) in [(1, "killed"), (2, "stopped")] {
        let mut socket = connect(&nodes[node].url(&format!("/ws?name={name}"))).await.unwrap();
        socket.send(Message::text(present.to_string())).await.unwrap();
        others.push(socket);
    }
    // The watcher sees all three.
    wait_for(&mut watcher, vec!["killed", "stopped", "watcher"], Duration::from_secs(10)).await.expect("all three");
    let killed_at = Instant::now();
    nodes[1].kill().await;
    wait_for(&mut watcher, vec!["stopped", "watcher"], Duration::from_secs(10))
        .await
        .expect("the killed node's person left within 10 s");
    eprintln!("a killed node's person left the list after {:?}", killed_at.elapsed());
    let stopped_at = Instant::now();
    nodes[2].stop().await;
    wait_for(&mut watcher, vec!["watcher"], Duration::from_secs(3))
        .await
        .expect("the stopped node's person left at once");
    eprintln!("a stopped node's person left the list after {:?}", stopped_at.elapsed());
    drop(others);
}
