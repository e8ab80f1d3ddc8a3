//! `switchboard-bench-docs`: shared documents under load (`make bench-docs`, issue 19,
//! `docs/benchmarks.md`). One workload per subcommand; `tools/docs-bench.sh` runs them in turn:
//!
//! - `type`: E editors (guests, spread over the nodes given) open one new document, each with a
//!   copy of its own (yrs, as the page has), and each types R characters a second at random
//!   places of its copy for S seconds, evenly paced with a little jitter. Measured: the time from
//!   a keystroke until the frame carrying it is read by every other editor (p50, p99, max), until
//!   it is acknowledged (stored), and the servers' CPU per update. Checked: at the end every
//!   copy holds every keystroke and the same text, and so does a newcomer's on every node.
//! - `seed`: a document of N one-character edits, and D small documents of C characters each
//!   with their snapshots, written straight into a store (the app's library) as the server
//!   writes them; run while no server is on the store.
//! - `open`: a new client opens a document: the time from its subscribe until it holds the
//!   whole text (the server reads the document, answers the client's sync step 1 with it).
//! - `snapshot`: wait until a document's snapshot covers its whole log (the server makes one in
//!   the background once the document is open).
//! - `hold`: one client per document opens each of D documents: the server's memory per open
//!   document.
//!
//! One process, one thread: every send and receive time comes from one clock, so a keystroke's
//! latency is exact. A keystroke is known in every copy by its yrs id: the editor's client id
//! ([`EDITOR_CLIENT`] plus its number) and its clock, which counts the editor's characters. The
//! clocks an update read from the socket carries past those already read are keystrokes that
//! just arrived, each timed against the moment its editor typed it. Copies apply what they read
//! in batches, before typing (see `Editor::merge`).

// Shared with `switchboard-bench`, which uses the parts this program does not.
#[allow(dead_code)]
#[path = "../process.rs"]
mod process;
#[allow(dead_code)]
#[path = "../wire.rs"]
mod wire;

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use switchboard::documents::crdt::TEXT;
use switchboard::documents::protocol::{decode_base64, doc_topic, encode_base64};
use switchboard::documents::store::Snapshot;
use switchboard::documents::yproto::YMessage;
use switchboard::store::events::NewEvent;
use switchboard::store::{Checkpoints, Store};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, Text, TextRef, Transact, Update};

#[derive(Parser, Debug)]
#[command(name = "switchboard-bench-docs", about = "Shared documents under load.")]
struct Cli {
    /// Print the result as one JSON line (the script's table is made from these).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand, Debug)]
enum Workload {
    /// Editors typing at once in one new document: keystroke latency, CPU per update, convergence.
    Type {
        /// The nodes (`ws://host:port`, separated by commas): editors are spread over them in
        /// turn, the document made on the first.
        #[arg(long = "url", alias = "urls", value_delimiter = ',', value_parser = parse_url, default_value = "ws://127.0.0.1:3000")]
        urls: Vec<SocketAddr>,
        #[arg(long, default_value_t = 50)]
        editors: usize,
        /// Characters each editor types per second.
        #[arg(long, default_value_t = 5.0)]
        rate: f64,
        /// Seconds of typing.
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        /// Processes whose CPU is the server's: the nodes, and PostgreSQL's and Redis's.
        #[arg(long, value_delimiter = ',')]
        server_pid: Vec<u32>,
    },
    /// A document of many one-character edits and small documents with snapshots, straight into a
    /// store (`sqlite://FILE` or a PostgreSQL URL) no server is running on.
    Seed {
        #[arg(long)]
        db: String,
        /// One-character edits of the large document, each an update of its own in the log.
        #[arg(long, default_value_t = 100_000)]
        edits: u64,
        /// The longest run typed at one place before the cursor jumps elsewhere (1: every
        /// keystroke at a random place, the most fragmented document).
        #[arg(long, default_value_t = 40)]
        run_max: u32,
        /// Small documents, for `hold`.
        #[arg(long, default_value_t = 200)]
        documents: usize,
        /// Characters of each small document.
        #[arg(long, default_value_t = 2000)]
        doc_chars: u32,
    },
    /// A new client opens a document: the time until it holds the whole text.
    Open {
        #[arg(long, value_parser = parse_url, default_value = "ws://127.0.0.1:3000")]
        url: SocketAddr,
        #[arg(long)]
        document: i64,
        /// Fail unless the text has this many characters (UTF-16 code units).
        #[arg(long)]
        expect_chars: Option<u32>,
    },
    /// Wait until a document's snapshot covers its whole log.
    Snapshot {
        #[arg(long)]
        db: String,
        #[arg(long)]
        document: i64,
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 60.0)]
        wait: f64,
    },
    /// One client per document opens each: the server's memory per open document.
    Hold {
        #[arg(long, value_parser = parse_url, default_value = "ws://127.0.0.1:3000")]
        url: SocketAddr,
        /// The documents' ids, separated by commas (as `seed` made them).
        #[arg(long, value_delimiter = ',', required = true)]
        documents: Vec<i64>,
        /// The node's process: its resident memory is read from /proc.
        #[arg(long)]
        server_pid: u32,
        /// Seconds to wait before each reading of the server's memory.
        #[arg(long, default_value_t = 3.0)]
        settle: f64,
    },
}

/// A node's address from `ws://host:port` (a path after it is ignored: the socket is `/ws`) or
/// `host:port`.
fn parse_url(url: &str) -> Result<SocketAddr, String> {
    let rest = url.strip_prefix("ws://").unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .to_socket_addrs()
        .map_err(|e| format!("{url:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url:?} names no address"))
}

/// The first editor's yrs client id; editor i's is `EDITOR_CLIENT + i`, so that a keystroke's id
/// says whose it is.
const EDITOR_CLIENT: u64 = 1000;
/// The yrs client id of copies that only read (they never type, so any id not an editor's).
const READER_CLIENT: u64 = 999;
/// A keystroke comes up to this share of the interval between keystrokes late.
const JITTER: f64 = 0.2;
/// Who the seeded edits are by, stored as `Payload` in `src/documents/server.rs` stores a person's.
const SEED_AUTHOR: &str = "bench";
const SEED_KEY: &str = "g:bench";
/// Edits stored per transaction when seeding, as the server's writer stores at most.
const SEED_BATCH: usize = 256;

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0)
}

fn cpu(pids: &[u32]) -> Duration {
    pids.iter().filter_map(|&pid| process::cpu_time(pid).ok()).sum()
}

/// A name no other run has given a document.
fn unique_tag() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

/// A small deterministic generator (xorshift64*): where keystrokes go and what they type.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn bits(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.bits() % n.max(1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.bits() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A character as prose has them: letters, and a space now and then (ASCII: one UTF-16
    /// unit, one clock).
    fn key(&mut self) -> char {
        const KEYS: &[u8] = b"etaoinshrdlucmfwypvbgkjqxz      ";
        KEYS[self.below(KEYS.len() as u64) as usize] as char
    }
}

/// A copy of a document (a yrs `Doc` with the text the page edits, UTF-16 offsets as in the
/// browser) and someone typing into it: runs of up to `run_max` characters at a cursor that then
/// jumps to a random place.
struct Typist {
    doc: Doc,
    text: TextRef,
    client: ClientID,
    rng: Rng,
    run_max: u32,
    cursor: u32,
    run_left: u32,
}

impl Typist {
    fn new(client: u64, run_max: u32) -> Typist {
        let client = ClientID::new(client);
        let doc =
            Doc::with_options(Options { client_id: client, offset_kind: OffsetKind::Utf16, ..Options::default() });
        let text = doc.get_or_insert_text(TEXT);
        Typist { doc, text, client, rng: Rng::new(client.get()), run_max: run_max.max(1), cursor: 0, run_left: 0 }
    }

    fn len(&self) -> u32 {
        self.text.len(&self.doc.transact())
    }

    fn text(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    fn state_vector(&self) -> Vec<u8> {
        self.doc.transact().state_vector().encode_v1()
    }

    /// The whole document as one update: what a snapshot holds.
    fn full_state(&self) -> Vec<u8> {
        self.doc.transact().encode_state_as_update_v1(&StateVector::default())
    }

    /// What a copy with state vector `vector` lacks of mine (sync step 2).
    fn missing(&self, vector: &[u8]) -> Result<Vec<u8>, String> {
        let vector = StateVector::decode_v1(vector).map_err(|e| format!("a state vector that does not decode: {e}"))?;
        Ok(self.doc.transact().encode_state_as_update_v1(&vector))
    }

    /// Type one character, in a transaction of its own: its clock, and the update it makes.
    fn keystroke(&mut self) -> (u32, Vec<u8>) {
        let (before, len) = {
            let txn = self.doc.transact();
            (txn.state_vector(), self.text.len(&txn))
        };
        if self.run_left == 0 || self.cursor > len {
            self.cursor = self.rng.below(u64::from(len) + 1) as u32;
            self.run_left = 1 + self.rng.below(u64::from(self.run_max)) as u32;
        }
        let key = self.rng.key();
        self.text.insert(&mut self.doc.transact_mut(), self.cursor, key.encode_utf8(&mut [0; 4]));
        self.cursor += 1;
        self.run_left -= 1;
        let update = self.doc.transact().encode_state_as_update_v1(&before);
        (before.get(&self.client), update)
    }

    /// Type a run of up to `most` characters at a random place, as one update (what an editor
    /// sends for what was typed in one moment).
    fn run(&mut self, most: u32) -> Vec<u8> {
        let (before, len) = {
            let txn = self.doc.transact();
            (txn.state_vector(), self.text.len(&txn))
        };
        let at = self.rng.below(u64::from(len) + 1) as u32;
        let count = (1 + self.rng.below(u64::from(self.run_max)) as u32).min(most.max(1));
        let chars: String = (0..count).map(|_| self.rng.key()).collect();
        self.text.insert(&mut self.doc.transact_mut(), at, &chars);
        self.doc.transact().encode_state_as_update_v1(&before)
    }

    /// Apply updates from the server, in one transaction: a transaction's commit costs far
    /// more than a keystroke's update.
    fn apply(&self, updates: &[Vec<u8>]) -> Result<(), String> {
        let decoded = updates.iter().map(|update| decode_update(update)).collect::<Result<Vec<_>, _>>()?;
        self.apply_decoded(decoded)
    }

    /// As [`Typist::apply`], with the updates decoded already.
    fn apply_decoded(&self, updates: impl IntoIterator<Item = Update>) -> Result<(), String> {
        let mut txn = self.doc.transact_mut();
        for update in updates {
            txn.apply_update(update).map_err(|e| format!("an update that does not apply: {e}"))?;
        }
        Ok(())
    }

    /// Whether this copy holds `count` keystrokes of each of `editors` editors.
    fn holds(&self, editors: usize, count: u32) -> bool {
        let vector = self.doc.transact().state_vector();
        (0..editors as u64).all(|e| vector.get(&ClientID::new(EDITOR_CLIENT + e)) >= count)
    }
}

fn decode_update(update: &[u8]) -> Result<Update, String> {
    Update::decode_v1(update).map_err(|e| format!("an update that does not decode: {e}"))
}

/// One WebSocket connection speaking the app's JSON frames.
struct Client {
    conn: wire::Conn,
    scratch: RefCell<Vec<u8>>,
    /// The clock reads are timed by.
    epoch: Instant,
}

impl Client {
    /// Connect as the guest `name`; reads go through a buffer of `scratch` bytes.
    async fn open(addr: SocketAddr, name: &str, scratch: usize) -> Result<Client, String> {
        let conn = wire::Conn::open(addr, None, &format!("/ws?name={name}"))
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        Ok(Client { conn, scratch: RefCell::new(vec![0; scratch]), epoch: Instant::now() })
    }

    /// Queue a frame for the next flush.
    fn send(&mut self, frame: &Value) {
        self.conn.queue_text(frame.to_string().as_bytes());
    }

    /// Queue a `doc_sync` request `id` carrying `message`.
    fn sync(&mut self, topic: &str, id: &str, message: &YMessage) {
        let data = encode_base64(&message.encode());
        self.send(&json!({"type": "doc_sync", "id": id, "topic": topic, "data": data}));
    }

    /// Write what is queued (and the pongs the reads queued).
    async fn flush(&mut self) -> Result<(), String> {
        self.conn.flush().await.map_err(|e| format!("writing: {e}"))
    }

    /// Wait for bytes: the frames they completed (maybe none) and when they were read. An
    /// error once the server closed. Cancel-safe.
    async fn read(&mut self) -> Result<(Vec<Value>, Instant), String> {
        let epoch = self.epoch;
        let mut frames = Vec::new();
        let mut read_at = 0u64;
        let read = self
            .conn
            .read(
                &self.scratch,
                || epoch.elapsed().as_nanos() as u64,
                |payload, at, _| {
                    read_at = at;
                    if let Ok(frame) = serde_json::from_slice::<Value>(payload) {
                        frames.push(frame);
                    }
                },
            )
            .await
            .map_err(|e| format!("reading: {e}"))?;
        if let wire::Read::Closed(code) = read {
            return Err(format!("closed by the server ({code:?})"));
        }
        Ok((frames, epoch + Duration::from_nanos(read_at)))
    }

    /// As [`Client::read`], failing once `deadline` passes.
    async fn read_by(&mut self, deadline: Instant, waiting_for: &str) -> Result<(Vec<Value>, Instant), String> {
        match tokio::time::timeout_at(deadline.into(), self.read()).await {
            Ok(read) => read,
            Err(_) => Err(format!("no {waiting_for} in time")),
        }
    }
}

/// The y-protocols message a `doc_sync` frame carries.
fn carried(frame: &Value) -> Result<YMessage, String> {
    let bytes = frame["data"].as_str().and_then(decode_base64);
    bytes
        .as_deref()
        .and_then(YMessage::decode)
        .ok_or_else(|| format!("a doc_sync frame without a y-protocols message: {frame}"))
}

/// Make a new document in the lobby, from a client of its own; its id.
async fn make_document(addr: SocketAddr) -> Result<i64, String> {
    let mut client = Client::open(addr, "bench-maker", 16 << 10).await?;
    let name = format!("bench {}", unique_tag());
    client.send(&json!({"type": "create_document", "id": "create", "topic": "chat:lobby", "name": name}));
    client.flush().await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (frames, _) = client.read_by(deadline, "document_created").await?;
        if let Some(reply) = frames.iter().find(|frame| frame["id"] == "create") {
            return match reply["type"].as_str() {
                Some("document_created") => reply["document"]["id"].as_i64().ok_or_else(|| format!("no id in {reply}")),
                _ => Err(format!("making the document: {reply}")),
            };
        }
        client.flush().await?;
    }
}

/// What a new client opening a document saw.
struct Opened {
    /// From its subscribe until `subscribed` (the server has the document in memory then).
    subscribed: Duration,
    /// From its subscribe until it held the whole text (the step 2 answering its step 1 applied).
    whole: Duration,
    text: String,
    chars: u32,
    /// The step 2's update, in bytes.
    bytes: usize,
}

/// Open document `id` as a new client does: subscribe, send sync step 1 once subscribed, apply
/// the step 2 that answers it. Timed from the subscribe.
async fn open_document(addr: SocketAddr, id: i64) -> Result<Opened, String> {
    let mut client = Client::open(addr, "bench-reader", 256 << 10).await?;
    let copy = Typist::new(READER_CLIENT, 1);
    let topic = doc_topic(id);
    client.send(&json!({"type": "subscribe", "id": "open", "topic": topic}));
    let started = Instant::now();
    client.flush().await?;
    let deadline = started + Duration::from_secs(120);
    let mut subscribed = None;
    loop {
        let (frames, at) = client.read_by(deadline, "whole text").await?;
        for frame in &frames {
            match frame["type"].as_str() {
                Some("subscribed") if frame["id"] == "open" => {
                    subscribed = Some(at.saturating_duration_since(started));
                    client.sync(&topic, "step1", &YMessage::SyncStep1(copy.state_vector()));
                }
                Some("error") => return Err(format!("opening {topic}: {frame}")),
                Some("doc_sync") => {
                    if let YMessage::SyncStep2(update) = carried(frame)? {
                        copy.apply(std::slice::from_ref(&update))?;
                        let whole = started.elapsed();
                        let subscribed = subscribed.unwrap_or(whole);
                        return Ok(Opened {
                            subscribed,
                            whole,
                            text: copy.text(),
                            chars: copy.len(),
                            bytes: update.len(),
                        });
                    }
                }
                _ => {}
            }
        }
        client.flush().await?;
    }
}

/// The typing run as its editors share it: the plan, and what they measured.
struct Typing {
    topic: String,
    editors: usize,
    /// Keystrokes each editor types.
    per_editor: u32,
    rate: f64,
    /// When typing starts: set once every editor has the document.
    start: Cell<Option<Instant>>,
    stop: Cell<bool>,
    /// When each editor typed each of its keystrokes, by clock.
    typed: Vec<RefCell<Vec<Instant>>>,
    /// Milliseconds from a keystroke until another editor read it, one per keystroke and
    /// other editor; until its editor had it acknowledged (stored).
    arrived_ms: RefCell<Vec<f64>>,
    stored_ms: RefCell<Vec<f64>>,
    /// Editors whose sync step 1 was answered.
    joined: Cell<usize>,
    failed: Cell<usize>,
    /// Each editor's text once its copy held every keystroke and its own were acknowledged.
    finished: RefCell<Vec<Option<String>>>,
}

impl Typing {
    fn finished_count(&self) -> usize {
        self.finished.borrow().iter().filter(|text| text.is_some()).count()
    }
}

/// Which editor a yrs client id is, if it is an editor's.
fn editor_of(client: u64, editors: usize) -> Option<usize> {
    let index = usize::try_from(client.checked_sub(EDITOR_CLIENT)?).ok()?;
    (index < editors).then_some(index)
}

/// The other editors' keystrokes that `update` carries and `seen` did not have yet, as
/// (editor, clock), marked seen. `seen` has one entry per editor; `me` is the reader's own.
fn newly_arrived(seen: &mut [Vec<bool>], update: &Update, me: usize) -> Vec<(usize, u32)> {
    let mut arrived = Vec::new();
    for (client, ranges) in update.insertions(true).iter() {
        let Some(other) = editor_of(client.get(), seen.len()).filter(|&other| other != me) else { continue };
        let marks = &mut seen[other];
        for range in ranges.iter() {
            if marks.len() < range.end as usize {
                marks.resize(range.end as usize, false);
            }
            for clock in range.clone() {
                if !std::mem::replace(&mut marks[clock as usize], true) {
                    arrived.push((other, clock));
                }
            }
        }
    }
    arrived
}

/// One editor: a connection (to a node of its own turn) and a copy of the document.
struct Editor {
    index: usize,
    client: Client,
    copy: Typist,
    /// Keystrokes typed, and those not yet acknowledged.
    typed: u32,
    unacked: u32,
    /// Sync step 2s sent in answer to the server's step 1.
    answers: u64,
    /// Updates read and timed but not yet applied to the copy (see [`Editor::catch_up`]).
    backlog: Vec<Update>,
    /// Which of each editor's keystrokes (by clock) the updates read so far carried.
    seen: Vec<Vec<bool>>,
}

impl Editor {
    /// Take a frame: acknowledgements timed, the server's step 1 answered with what it lacks,
    /// updates applied and each keystroke they brought from another editor timed.
    /// Updates are kept in `pending`, for [`Editor::merge`].
    fn take(&mut self, frame: &Value, at: Instant, typing: &Typing, pending: &mut Vec<Vec<u8>>) -> Result<(), String> {
        match frame["type"].as_str() {
            Some("subscribed") => {
                let vector = self.copy.state_vector();
                self.client.sync(&typing.topic, "join", &YMessage::SyncStep1(vector));
            }
            Some("ack") => match frame["id"].as_str() {
                Some("join") => typing.joined.set(typing.joined.get() + 1),
                Some(id) => {
                    if let Some(clock) = id.strip_prefix('k').and_then(|clock| clock.parse::<usize>().ok()) {
                        self.unacked = self.unacked.saturating_sub(1);
                        if let Some(&typed) = typing.typed[self.index].borrow().get(clock) {
                            typing.stored_ms.borrow_mut().push(ms(at.saturating_duration_since(typed)));
                        }
                    }
                }
                None => {}
            },
            Some("error") => return Err(format!("refused: {frame}")),
            Some("doc_sync") => match carried(frame)? {
                YMessage::SyncStep1(vector) => {
                    self.catch_up()?;
                    let missing = self.copy.missing(&vector)?;
                    self.answers += 1;
                    let id = format!("answer{}", self.answers);
                    self.client.sync(&typing.topic, &id, &YMessage::SyncStep2(missing));
                }
                YMessage::SyncStep2(update) | YMessage::Update(update) => pending.push(update),
                YMessage::Awareness(_) | YMessage::QueryAwareness => {}
            },
            _ => {}
        }
        Ok(())
    }

    /// Time each keystroke from another editor that the updates read at `at` bring, and keep
    /// the updates for [`Editor::catch_up`].
    ///
    /// A keystroke counts as arrived when the frame carrying it is read: that is when a page
    /// would show it. Applying it to the copy is the page's own work, each page on its own
    /// processor; here one thread applies every editor's, so it applies them in batches, just
    /// before its editor types or answers (which need the copy current). Applied one by one,
    /// the generator's own work grew with the document until it, not the server, set the tail.
    fn merge(&mut self, pending: &mut Vec<Vec<u8>>, at: Instant, typing: &Typing) -> Result<(), String> {
        for update in pending.drain(..) {
            let decoded = decode_update(&update)?;
            let times = &typing.typed;
            let waited =
                newly_arrived(&mut self.seen, &decoded, self.index).into_iter().filter_map(|(other, clock)| {
                    times[other].borrow().get(clock as usize).map(|&typed| ms(at.saturating_duration_since(typed)))
                });
            typing.arrived_ms.borrow_mut().extend(waited);
            self.backlog.push(decoded);
        }
        Ok(())
    }

    /// Apply the updates kept by [`Editor::merge`], in one transaction.
    fn catch_up(&mut self) -> Result<(), String> {
        if !self.backlog.is_empty() {
            self.copy.apply_decoded(self.backlog.drain(..))?;
        }
        Ok(())
    }

    /// Type the next keystroke somewhere in my copy and send it.
    fn type_key(&mut self, typing: &Typing) -> Result<(), String> {
        self.catch_up()?;
        let now = Instant::now();
        let (clock, update) = self.copy.keystroke();
        let mut times = typing.typed[self.index].borrow_mut();
        // The clock counts my characters: keystroke n has clock n.
        debug_assert_eq!(clock as usize, times.len());
        times.push(now);
        self.client.sync(&typing.topic, &format!("k{clock}"), &YMessage::Update(update));
        self.typed += 1;
        self.unacked += 1;
        Ok(())
    }

    /// Open the document, type my share once the run starts, and read until it stops.
    async fn run(&mut self, typing: &Typing) -> Result<(), String> {
        self.client.send(&json!({"type": "subscribe", "id": "subscribe", "topic": typing.topic}));
        self.client.flush().await?;
        let mut rng = Rng::new(self.index as u64 + 7);
        let interval = 1.0 / typing.rate;
        // Editors start a share of an interval apart, so that keystrokes come evenly.
        let stagger = interval * self.index as f64 / typing.editors as f64;
        let mut due: Option<Instant> = None;
        while !typing.stop.get() {
            if due.is_none() && self.typed < typing.per_editor {
                if let Some(start) = typing.start.get() {
                    let after = stagger + (f64::from(self.typed) + rng.unit() * JITTER) * interval;
                    due = Some(start + Duration::from_secs_f64(after));
                }
            }
            // Until the next keystroke; until typing starts or stops, look again every 50 ms.
            let wake = due.unwrap_or_else(|| Instant::now() + Duration::from_millis(50));
            tokio::select! {
                read = self.client.read() => {
                    let (frames, at) = read?;
                    let mut pending = Vec::new();
                    for frame in &frames {
                        self.take(frame, at, typing, &mut pending)?;
                    }
                    self.merge(&mut pending, at, typing)?;
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    if due.is_some_and(|due| Instant::now() >= due) {
                        due = None;
                        self.type_key(typing)?;
                    }
                }
            }
            self.client.flush().await?;
            let done = self.typed == typing.per_editor && self.unacked == 0;
            if done && typing.finished.borrow()[self.index].is_none() {
                self.catch_up()?;
            }
            if done
                && typing.finished.borrow()[self.index].is_none()
                && self.copy.holds(typing.editors, typing.per_editor)
            {
                typing.finished.borrow_mut()[self.index] = Some(self.copy.text());
            }
        }
        Ok(())
    }
}

async fn editor(typing: Rc<Typing>, index: usize, addr: SocketAddr) {
    let outcome = async {
        let client = Client::open(addr, &format!("editor{index}"), 64 << 10).await?;
        let copy = Typist::new(EDITOR_CLIENT + index as u64, 1);
        let mut editor = Editor {
            index,
            client,
            copy,
            typed: 0,
            unacked: 0,
            answers: 0,
            backlog: Vec::new(),
            seen: vec![Vec::new(); typing.editors],
        };
        editor.run(&typing).await
    };
    if let Err(error) = outcome.await {
        eprintln!("editor {index}: {error}");
        typing.failed.set(typing.failed.get() + 1);
    }
}

/// Wait until `done`, looking every 5 ms; an error saying `what` after `limit`.
async fn wait_until(limit: Duration, what: impl Fn() -> String, done: impl Fn() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return Err(what());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn type_run(
    urls: Vec<SocketAddr>,
    editors: usize,
    rate: f64,
    seconds: f64,
    server_pid: Vec<u32>,
) -> Result<Value, String> {
    process::raise_file_limit();
    if editors < 2 || rate <= 0.0 || seconds <= 0.0 || urls.is_empty() {
        return Err("typing needs two editors or more, a rate, seconds and a node".into());
    }
    let document = make_document(urls[0]).await?;
    let per_editor = (rate * seconds).round().max(1.0) as u32;
    let typing = Rc::new(Typing {
        topic: doc_topic(document),
        editors,
        per_editor,
        rate,
        start: Cell::new(None),
        stop: Cell::new(false),
        typed: (0..editors).map(|_| RefCell::new(Vec::with_capacity(per_editor as usize))).collect(),
        arrived_ms: RefCell::new(Vec::with_capacity(per_editor as usize * editors * (editors - 1))),
        stored_ms: RefCell::new(Vec::with_capacity(per_editor as usize * editors)),
        joined: Cell::new(0),
        failed: Cell::new(0),
        finished: RefCell::new(vec![None; editors]),
    });
    let tasks: Vec<_> = (0..editors)
        .map(|index| tokio::task::spawn_local(editor(typing.clone(), index, urls[index % urls.len()])))
        .collect();
    // Everyone has the document; then the typing.
    let ready = || typing.joined.get() + typing.failed.get() >= editors;
    wait_until(Duration::from_secs(60), || "the editors did not all open the document in 60 s".into(), ready).await?;
    if typing.failed.get() > 0 {
        return Err(format!("{} editors could not open the document", typing.failed.get()));
    }
    let (server_before, own_before) = (cpu(&server_pid), process::own_cpu_time());
    let start = Instant::now() + Duration::from_millis(100);
    typing.start.set(Some(start));
    let limit = Duration::from_secs_f64(seconds + 60.0);
    let missing = || {
        let lacking = editors - typing.finished_count();
        format!("{lacking} editors never held every keystroke ({} failed)", typing.failed.get())
    };
    wait_until(limit, &missing, || typing.finished_count() == editors || typing.failed.get() > 0).await?;
    if typing.failed.get() > 0 {
        return Err(missing());
    }
    let everywhere = Instant::now();
    let server_cpu = cpu(&server_pid).saturating_sub(server_before);
    let own_cpu = process::own_cpu_time().saturating_sub(own_before);
    typing.stop.set(true);
    for task in tasks {
        let _ = task.await;
    }

    // Every copy the same, and the servers' copies too: a newcomer on each node has that text.
    let texts: Vec<String> = typing.finished.take().into_iter().flatten().collect();
    let text = texts.first().cloned().unwrap_or_default();
    let differing = texts.iter().filter(|other| **other != text).count();
    if differing > 0 {
        return Err(format!("the copies did not converge: {differing} of {editors} differ from editor 0's"));
    }
    for &addr in &urls {
        let newcomer = open_document(addr, document).await?;
        if newcomer.text != text {
            return Err(format!(
                "a newcomer on {addr} has another text than the editors ({} characters)",
                newcomer.chars
            ));
        }
    }

    let updates = u64::from(per_editor) * editors as u64;
    let expected = updates * (editors as u64 - 1);
    let mut arrived = typing.arrived_ms.take();
    if arrived.len() as u64 != expected {
        return Err(format!("{} keystrokes reached other editors; {expected} should have", arrived.len()));
    }
    arrived.sort_by(f64::total_cmp);
    let mut stored = typing.stored_ms.take();
    stored.sort_by(f64::total_cmp);
    // Each editor's keystrokes are in the order typed.
    let first = typing.typed.iter().filter_map(|times| times.borrow().first().copied()).min();
    let last = typing.typed.iter().filter_map(|times| times.borrow().last().copied()).max();
    let typing_s = first.zip(last).map_or(0.0, |(first, last)| (last - first).as_secs_f64());
    let measured = !server_pid.is_empty();
    let server_us = measured.then(|| server_cpu.as_secs_f64() * 1e6 / updates as f64);
    let server_cores = measured.then(|| server_cpu.as_secs_f64() / (everywhere - start).as_secs_f64());
    Ok(json!({
        "mode": "type",
        "nodes": urls.len(),
        "editors": editors,
        "rate": rate,
        "seconds": seconds,
        "document": document,
        "updates": updates,
        "typing_s": typing_s,
        "deliveries": arrived.len(),
        "keystroke_ms_p50": quantile(&arrived, 0.5),
        "keystroke_ms_p99": quantile(&arrived, 0.99),
        "keystroke_ms_max": quantile(&arrived, 1.0),
        "stored_ms_p50": quantile(&stored, 0.5),
        "stored_ms_p99": quantile(&stored, 0.99),
        "everywhere_after_last_keystroke_ms": last.map(|last| ms(everywhere.saturating_duration_since(last))),
        "server_cpu_us_per_update": server_us,
        "server_cores": server_cores,
        "generator_cpu_s": own_cpu.as_secs_f64(),
        "converged": true,
        "text_chars": text.encode_utf16().count(),
    }))
}

/// An edit as the document's log keeps it (`Payload` in `src/documents/server.rs`).
fn logged_edit(topic: &Arc<str>, n: u64, update: &[u8]) -> NewEvent {
    let payload = json!({"author": SEED_AUTHOR, "key": SEED_KEY, "update": encode_base64(update)});
    NewEvent { topic: topic.clone(), id: format!("seed{n}"), payload: payload.to_string() }
}

async fn seed(db: &str, edits: u64, run_max: u32, documents: usize, doc_chars: u32) -> Result<Value, String> {
    let started = Instant::now();
    let failed = |e: switchboard::store::StoreError| e.to_string();
    let store = Store::open(db).await.map_err(failed)?;
    let lobby = store.room("lobby").await.map_err(failed)?.ok_or("no lobby")?;
    let tag = unique_tag();
    let mut writer = store.event_writer().await.map_err(failed)?;

    // The long one: every keystroke an update of its own in the log, as the page sends them.
    let name = format!("bench {edits} edits {tag}");
    let long = store.create_document(lobby.id, &name, SEED_KEY, SEED_AUTHOR).await.map_err(failed)?;
    let topic: Arc<str> = Arc::from(doc_topic(long.id));
    let mut typist = Typist::new(1, run_max);
    let mut batch = Vec::with_capacity(SEED_BATCH);
    for n in 0..edits {
        let (_, update) = typist.keystroke();
        batch.push(logged_edit(&topic, n, &update));
        if batch.len() == SEED_BATCH || n + 1 == edits {
            writer.append_batch(&batch).await.map_err(failed)?;
            batch.clear();
        }
    }
    let chars = typist.len();

    // The small ones, at rest: their log (runs of typing, one update each) and a snapshot of
    // all of it, so that opening one reads one row, as for a document edited a while ago.
    let mut small = Vec::with_capacity(documents);
    for d in 0..documents {
        let name = format!("bench {doc_chars} characters {d} {tag}");
        let document = store.create_document(lobby.id, &name, SEED_KEY, SEED_AUTHOR).await.map_err(failed)?;
        let topic: Arc<str> = Arc::from(doc_topic(document.id));
        let mut typist = Typist::new(2 + d as u64, run_max);
        let mut log = Vec::new();
        while typist.len() < doc_chars {
            let update = typist.run(doc_chars - typist.len());
            log.push(logged_edit(&topic, log.len() as u64, &update));
        }
        for chunk in log.chunks(SEED_BATCH) {
            writer.append_batch(chunk).await.map_err(failed)?;
        }
        let upto = store.log_head(&topic).await.map_err(failed)?;
        store.save_snapshot(document.id, &Snapshot { upto, state: typist.full_state() }).await.map_err(failed)?;
        small.push(document.id);
    }
    drop(writer);
    store.close().await;
    Ok(json!({
        "mode": "seed",
        "document": long.id,
        "edits": edits,
        "run_max": run_max,
        "chars": chars,
        "documents": small,
        "document_chars": doc_chars,
        "seed_s": started.elapsed().as_secs_f64(),
    }))
}

async fn open_run(url: SocketAddr, document: i64, expect_chars: Option<u32>) -> Result<Value, String> {
    let opened = open_document(url, document).await?;
    if let Some(expected) = expect_chars.filter(|&expected| expected != opened.chars) {
        return Err(format!("the document has {} characters, not {expected}", opened.chars));
    }
    Ok(json!({
        "mode": "open",
        "document": document,
        "chars": opened.chars,
        "update_bytes": opened.bytes,
        "subscribed_ms": ms(opened.subscribed),
        "whole_text_ms": ms(opened.whole),
    }))
}

async fn snapshot_run(db: &str, document: i64, wait: f64) -> Result<Value, String> {
    let started = Instant::now();
    // No checkpoints of this process's: the server's store is the file's writer.
    let store = Store::open_with(db, Checkpoints::InCommit).await.map_err(|e| e.to_string())?;
    let topic = doc_topic(document);
    loop {
        let head = store.log_head(&topic).await.map_err(|e| e.to_string())?;
        let snapshot = store.snapshot(document).await.map_err(|e| e.to_string())?;
        if let Some(snapshot) = snapshot.filter(|snapshot| head > 0 && snapshot.upto >= head) {
            store.close().await;
            return Ok(json!({
                "mode": "snapshot",
                "document": document,
                "upto": snapshot.upto,
                "snapshot_bytes": snapshot.state.len(),
                "waited_s": started.elapsed().as_secs_f64(),
            }));
        }
        if started.elapsed().as_secs_f64() > wait {
            store.close().await;
            return Err(format!("no snapshot of {topic} covering its {head} edits after {wait} s"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The holders of open documents, as they share their progress.
#[derive(Default)]
struct Holding {
    /// Set once the server's memory before was read: open the documents.
    open: Cell<bool>,
    stop: Cell<bool>,
    connected: Cell<usize>,
    opened: Cell<usize>,
    chars: Cell<u64>,
    failed: Cell<usize>,
}

/// Connect, wait for the word, open the document (subscribe, sync step 1, the text), and keep the
/// connection alive until the run stops.
async fn hold_one(holding: &Holding, addr: SocketAddr, index: usize, document: i64) -> Result<(), String> {
    let mut client = Client::open(addr, &format!("holder{index}"), 16 << 10).await?;
    holding.connected.set(holding.connected.get() + 1);
    let copy = Typist::new(READER_CLIENT, 1);
    let topic = doc_topic(document);
    let (mut asked, mut held) = (false, false);
    while !holding.stop.get() {
        if holding.open.get() && !asked {
            asked = true;
            client.send(&json!({"type": "subscribe", "id": "open", "topic": topic}));
        }
        client.flush().await?;
        tokio::select! {
            read = client.read() => {
                let (frames, _) = read?;
                for frame in &frames {
                    match frame["type"].as_str() {
                        Some("subscribed") => client.sync(&topic, "step1", &YMessage::SyncStep1(copy.state_vector())),
                        Some("error") => return Err(format!("opening {topic}: {frame}")),
                        Some("doc_sync") => {
                            if let YMessage::SyncStep2(update) = carried(frame)? {
                                copy.apply(std::slice::from_ref(&update))?;
                                if !held {
                                    held = true;
                                    holding.opened.set(holding.opened.get() + 1);
                                    holding.chars.set(holding.chars.get() + u64::from(copy.len()));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    Ok(())
}

async fn hold_run(url: SocketAddr, documents: Vec<i64>, server_pid: u32, settle: f64) -> Result<Value, String> {
    process::raise_file_limit();
    let count = documents.len();
    let holding = Rc::new(Holding::default());
    let tasks: Vec<_> = documents
        .iter()
        .enumerate()
        .map(|(index, &document)| {
            let holding = holding.clone();
            tokio::task::spawn_local(async move {
                if let Err(error) = hold_one(&holding, url, index, document).await {
                    eprintln!("holder {index}: {error}");
                    holding.failed.set(holding.failed.get() + 1);
                }
            })
        })
        .collect();
    let settle = Duration::from_secs_f64(settle);
    let rss = || process::rss_bytes(server_pid).map_err(|e| format!("the server's memory: {e}"));
    // The connections first, so that only the documents are between the two readings.
    let connected = || holding.connected.get() + holding.failed.get() >= count;
    wait_until(Duration::from_secs(60), || "the holders did not all connect in 60 s".into(), connected).await?;
    tokio::time::sleep(settle).await;
    let before = rss()?;
    holding.open.set(true);
    let opened = || holding.opened.get() + holding.failed.get() >= count;
    wait_until(Duration::from_secs(120), || "the documents were not all open in 120 s".into(), opened).await?;
    if holding.failed.get() > 0 {
        return Err(format!("{} of {count} documents could not be held", holding.failed.get()));
    }
    tokio::time::sleep(settle).await;
    let after = rss()?;
    holding.stop.set(true);
    for task in tasks {
        let _ = task.await;
    }
    Ok(json!({
        "mode": "hold",
        "documents": count,
        "chars_per_document": holding.chars.get() as f64 / count.max(1) as f64,
        "server_rss_before": before,
        "server_rss_after": after,
        "server_bytes_per_document": (after as f64 - before as f64) / count.max(1) as f64,
    }))
}

async fn run(workload: Workload) -> Result<Value, String> {
    match workload {
        Workload::Type { urls, editors, rate, seconds, server_pid } => {
            type_run(urls, editors, rate, seconds, server_pid).await
        }
        Workload::Seed { db, edits, run_max, documents, doc_chars } => {
            seed(&db, edits, run_max, documents, doc_chars).await
        }
        Workload::Open { url, document, expect_chars } => open_run(url, document, expect_chars).await,
        Workload::Snapshot { db, document, wait } => snapshot_run(&db, document, wait).await,
        Workload::Hold { url, documents, server_pid, settle } => hold_run(url, documents, server_pid, settle).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_out = cli.json;
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("switchboard-bench-docs: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tokio::task::LocalSet::new().run_until(run(cli.workload))) {
        Ok(result) => {
            if json_out {
                println!("{result}");
            } else {
                println!("{}", serde_json::to_string_pretty(&result).unwrap_or_default());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("switchboard-bench-docs: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystrokes_are_one_clock_each_and_each_counts_once_when_it_arrives() {
        let mut ann = Typist::new(EDITOR_CLIENT, 1);
        let bob = Typist::new(EDITOR_CLIENT + 1, 1);
        let updates: Vec<(u32, Vec<u8>)> = (0..5).map(|_| ann.keystroke()).collect();
        assert_eq!(updates.iter().map(|(clock, _)| *clock).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        // Bob (editor 1) reads Ann's (editor 0): each keystroke counts once, when its frame
        // comes, in whatever order; his own never count.
        let mut seen = vec![Vec::new(); 2];
        let read = |seen: &mut Vec<Vec<bool>>, n: usize| newly_arrived(seen, &decode_update(&updates[n].1).unwrap(), 1);
        assert_eq!(read(&mut seen, 0), [(0, 0)]);
        assert_eq!(read(&mut seen, 2), [(0, 2)]);
        assert_eq!(read(&mut seen, 1), [(0, 1)], "one that came late still counts");
        assert!(read(&mut seen, 1).is_empty(), "twice counts once");
        assert!(newly_arrived(&mut seen, &decode_update(&updates[3].1).unwrap(), 0).is_empty(), "my own");
        for (_, update) in &updates {
            bob.apply(std::slice::from_ref(update)).unwrap();
        }
        assert_eq!(bob.text(), ann.text());
        assert!(bob.holds(1, 5) && !bob.holds(2, 5));
        assert_eq!(editor_of(EDITOR_CLIENT + 1, 2), Some(1));
        assert_eq!(editor_of(EDITOR_CLIENT + 2, 2), None);
        assert_eq!(editor_of(1, 2), None);
    }

    #[test]
    fn runs_and_snapshots_make_the_same_text() {
        let mut typist = Typist::new(7, 40);
        let mut log = Vec::new();
        while typist.len() < 500 {
            log.push(typist.run(500 - typist.len()));
        }
        assert_eq!(typist.len(), 500);
        let (from_log, from_snapshot) = (Typist::new(READER_CLIENT, 1), Typist::new(READER_CLIENT + 1, 1));
        from_log.apply(&log).unwrap();
        from_snapshot.apply(&[typist.full_state()]).unwrap();
        assert_eq!(from_log.text(), typist.text());
        assert_eq!(from_snapshot.text(), typist.text());
        assert_eq!(typist.missing(&from_log.state_vector()).unwrap(), [0, 0], "nothing missing");
    }

    #[test]
    fn urls_name_nodes() {
        assert_eq!(parse_url("ws://127.0.0.1:7701").unwrap(), "127.0.0.1:7701".parse().unwrap());
        assert_eq!(parse_url("ws://127.0.0.1:7701/ws").unwrap(), "127.0.0.1:7701".parse().unwrap());
        assert_eq!(parse_url("127.0.0.1:7702").unwrap(), "127.0.0.1:7702".parse().unwrap());
        assert!(parse_url("ws://nowhere").is_err());
    }
}
