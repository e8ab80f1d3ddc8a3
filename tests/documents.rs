//! Shared documents on a real server: clients with copies of their own (yrs, as the page
//! has) edit at once and end with the same text; offline edits merge on reconnecting; undo
//! is per person; a malformed or oversized update is refused and changes nothing; snapshots
//! keep the text; history and restore; who may see and manage what; and the Yjs endpoint
//! with the npm `yjs` and `y-websocket` packages as the foreign client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{Client, TestServer};
use switchboard::documents::protocol::{decode_base64, encode_base64};
use switchboard::documents::server::Documents;
use switchboard::documents::yproto::YMessage;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, Text, TextRef, Transact, Update};

/// The answer to request `id`: whatever frame carries its id.
async fn reply_to(client: &mut Client, id: &str) -> Value {
    loop {
        let frame = client.next().await;
        if frame["id"] == id {
            return frame;
        }
    }
}

/// Make a document in the lobby; its id.
async fn create(client: &mut Client, name: &str) -> i64 {
    let id = client.id();
    client.send(json!({"type": "create_document", "id": id, "topic": "chat:lobby", "name": name})).await;
    let reply = reply_to(client, &id).await;
    assert_eq!(reply["type"], "document_created", "{reply}");
    reply["document"]["id"].as_i64().unwrap()
}

/// A person with the document open: a socket and a copy of the document.
struct Editor {
    client: Client,
    doc: Doc,
    text: TextRef,
    topic: String,
    /// Requests sent and not yet answered.
    unacked: Vec<String>,
}

impl Editor {
    fn copy(id: u64) -> (Doc, TextRef) {
        let doc = Doc::with_options(Options {
            client_id: yrs::ClientID::new(id),
            offset_kind: OffsetKind::Utf16,
            ..Options::default()
        });
        let text = doc.get_or_insert_text("text");
        (doc, text)
    }

    /// Open document `doc` on `client`, syncing a copy made with client id `id`.
    async fn open(client: Client, doc: i64, id: u64) -> Editor {
        let (copy, text) = Editor::copy(id);
        let mut editor = Editor { client, doc: copy, text, topic: format!("doc:{doc}"), unacked: Vec::new() };
        editor.join().await;
        editor
    }

    /// Subscribe and sync both ways: my step 1 for what I lack; my step 2 for what it lacks.
    async fn join(&mut self) {
        let topic = self.topic.clone();
        let subscribed = self.client.subscribe(&topic, None).await;
        assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
        let vector = self.doc.transact().state_vector().encode_v1();
        self.sync(YMessage::SyncStep1(vector)).await;
        let settled = self.settle().await;
        assert!(settled.iter().any(|f| f["type"] == "document"), "{settled:?}");
    }

    /// Send a y-protocols message; its request id.
    async fn sync(&mut self, message: YMessage) -> String {
        let id = self.client.id();
        let data = encode_base64(&message.encode());
        self.client.send(json!({"type": "doc_sync", "id": id, "topic": self.topic, "data": data})).await;
        self.unacked.push(id.clone());
        id
    }

    /// Take a frame: apply what it carries, answer the server's step 1.
    async fn take(&mut self, frame: &Value) {
        if frame["type"] == "ack" || frame["type"] == "error" || frame["type"] == "doc_sync" {
            if let Some(id) = frame["id"].as_str() {
                self.unacked.retain(|u| u != id);
            }
        }
        if frame["type"] == "error" {
            panic!("refused: {frame}");
        }
        if frame["type"] != "doc_sync" {
            return;
        }
        let bytes = decode_base64(frame["data"].as_str().unwrap()).unwrap();
        match YMessage::decode(&bytes).unwrap() {
            YMessage::SyncStep1(vector) => {
                let vector = StateVector::decode_v1(&vector).unwrap();
                let missing = self.doc.transact().encode_state_as_update_v1(&vector);
                self.sync(YMessage::SyncStep2(missing)).await;
            }
            YMessage::SyncStep2(update) | YMessage::Update(update) => {
                let mut txn = self.doc.transact_mut_with("remote");
                txn.apply_update(Update::decode_v1(&update).unwrap()).unwrap();
            }
            YMessage::Awareness(_) | YMessage::QueryAwareness => {}
        }
    }

    /// Read until every request is answered and nothing more is in flight.
    async fn settle(&mut self) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let frames = self.client.drain().await;
            if frames.is_empty() && self.unacked.is_empty() {
                return seen;
            }
            for frame in frames {
                self.take(&frame).await;
                seen.push(frame);
            }
            if !self.unacked.is_empty() {
                let frame = self.client.next().await;
                self.take(&frame).await;
                seen.push(frame);
            }
        }
    }

    /// Send a request and wait for its answer, taking what comes meanwhile.
    async fn request(&mut self, mut frame: Value) -> Value {
        let id = self.client.id();
        frame["id"] = json!(id);
        frame["topic"] = json!(self.topic);
        self.client.send(frame).await;
        loop {
            let frame = self.client.next().await;
            if frame["id"] == id.as_str() {
                return frame;
            }
            self.take(&frame).await;
        }
    }

    /// Edit my copy and send the update (with `origin`, so an undo manager can track it).
    async fn edit(&mut self, change: impl FnOnce(&TextRef, &mut yrs::TransactionMut)) {
        let update = self.local(change);
        self.sync(YMessage::Update(update)).await;
    }

    /// Edit my copy only (offline); the update.
    fn local(&self, change: impl FnOnce(&TextRef, &mut yrs::TransactionMut)) -> Vec<u8> {
        let before = self.doc.transact().state_vector();
        {
            let mut txn = self.doc.transact_mut_with("local");
            change(&self.text, &mut txn);
        }
        let txn = self.doc.transact();
        txn.encode_state_as_update_v1(&before)
    }

    fn value(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    fn len(&self) -> u32 {
        self.text.len(&self.doc.transact())
    }
}

async fn server_text(server: &TestServer, doc: i64) -> String {
    server.state.get::<Documents>().open(doc).await.unwrap().text()
}

#[tokio::test]
async fn concurrent_editors_converge_and_offline_edits_merge() {
    let server = TestServer::start().await;
    let mut ann = server.web("ann").await;
    let doc = create(&mut ann, "minutes").await;
    let mut editors = vec![Editor::open(ann, doc, 1).await];
    for (i, name) in ["bob", "cy"].iter().enumerate() {
        editors.push(Editor::open(server.web(name).await, doc, 2 + i as u64).await);
    }
    // Everyone types at once, at the start and the end, without waiting for the others.
    for round in 0..15 {
        for (i, editor) in editors.iter_mut().enumerate() {
            editor.edit(|text, txn| text.insert(txn, 0, &format!("{i}"))).await;
            let end = editor.len();
            editor.edit(|text, txn| text.insert(txn, end, &format!("<{round}>"))).await;
        }
    }
    for editor in &mut editors {
        editor.settle().await;
    }
    for editor in &mut editors {
        editor.settle().await;
    }
    let text = server_text(&server, doc).await;
    let typed: usize = (0..15).map(|round| 1 + format!("<{round}>").len()).sum::<usize>() * 3;
    assert_eq!(text.len(), typed, "every character kept: {text}");
    for editor in &editors {
        assert_eq!(editor.value(), text, "every copy ends the same");
    }

    // Bob goes offline and edits the same sentence as Ann, who stays; on reconnecting both
    // keep their words, everywhere.
    let mut bob = editors.remove(1);
    let gone = std::mem::replace(&mut bob.client, server.web("bob").await);
    gone.close().await;
    let end = editors[0].len();
    editors[0].edit(|t, txn| t.insert(txn, end, " The plan is ready.")).await;
    editors[0].settle().await;
    let offline = bob.local(|t, txn| t.insert(txn, 0, "[bob was here] "));
    assert!(!offline.is_empty());
    bob.unacked.clear();
    bob.join().await;
    bob.settle().await;
    for editor in &mut editors {
        editor.settle().await;
    }
    let text = server_text(&server, doc).await;
    assert!(text.starts_with("[bob was here] ") && text.ends_with(" The plan is ready."), "{text}");
    assert_eq!(bob.value(), text);
    for editor in &editors {
        assert_eq!(editor.value(), text);
    }
}

#[tokio::test]
async fn undo_takes_back_my_edits_only() {
    let server = TestServer::start().await;
    let mut ann = server.web("ann").await;
    let doc = create(&mut ann, "undo").await;
    let mut ann = Editor::open(ann, doc, 1).await;
    let mut bob = Editor::open(server.web("bob").await, doc, 2).await;
    let mut undo: yrs::UndoManager = yrs::UndoManager::with_options(yrs::undo::Options {
        tracked_origins: [yrs::Origin::from("local")].into(),
        ..Default::default()
    });
    undo.expand_scope(&ann.doc, &ann.text);
    ann.edit(|t, txn| t.insert(txn, 0, "Ann's line.")).await;
    ann.settle().await;
    bob.settle().await;
    let end = bob.len();
    bob.edit(|t, txn| t.insert(txn, end, " Bob's line.")).await;
    bob.settle().await;
    ann.settle().await;
    assert_eq!(ann.value(), "Ann's line. Bob's line.");
    // Ann undoes: her line goes, Bob's stays, for everyone.
    let before = ann.doc.transact().state_vector();
    assert!(undo.undo_blocking());
    let update = {
        let txn = ann.doc.transact();
        txn.encode_state_as_update_v1(&before)
    };
    ann.sync(YMessage::Update(update)).await;
    ann.settle().await;
    bob.settle().await;
    assert_eq!(ann.value(), " Bob's line.");
    assert_eq!(bob.value(), " Bob's line.");
    assert_eq!(server_text(&server, doc).await, " Bob's line.");
}

#[tokio::test]
async fn a_bad_update_is_refused_and_changes_nothing() {
    let server = TestServer::start().await;
    let mut ann = server.web("ann").await;
    let doc = create(&mut ann, "limits").await;
    let mut ann = Editor::open(ann, doc, 1).await;
    ann.edit(|t, txn| t.insert(txn, 0, "kept")).await;
    ann.settle().await;
    let topic = ann.topic.clone();
    let head = server.state.store.log_head(&topic).await.unwrap();
    let refused = |data: String| json!({"type": "doc_sync", "id": "bad", "topic": topic, "data": data});
    for (data, code) in [
        ("%%% not base64".to_owned(), "invalid_field"),
        (encode_base64(&[0, 2, 3, 1]), "invalid_field"),
        (encode_base64(&YMessage::Update(vec![0xff, 0x13, 0x37]).encode()), "invalid_field"),
        (encode_base64(&YMessage::Awareness(vec![5, 1]).encode()), "invalid_field"),
        (encode_base64(&[2, 0, 0]), "invalid_field"),
    ] {
        ann.client.send(refused(data)).await;
        let reply = reply_to(&mut ann.client, "bad").await;
        assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some(code)), "{reply}");
    }
    assert_eq!(server.state.store.log_head(&topic).await.unwrap(), head, "nothing stored");
    assert_eq!(server_text(&server, doc).await, "kept");
    // Updates that would take the document past its limit (1,000,000 characters): taken up to
    // it, refused past it.
    let (big, big_text) = Editor::copy(9);
    let chunk = "x".repeat(40_000);
    let mut refused_at = None;
    for i in 0..30 {
        let before = big.transact().state_vector();
        big_text.insert(&mut big.transact_mut(), 0, &chunk);
        let update = {
            let txn = big.transact();
            txn.encode_state_as_update_v1(&before)
        };
        let reply =
            ann.request(json!({"type": "doc_sync", "data": encode_base64(&YMessage::Update(update).encode())})).await;
        if reply["type"] == "error" {
            assert_eq!(reply["code"], "too_large", "{reply}");
            refused_at = Some(i);
            break;
        }
    }
    assert_eq!(refused_at, Some(24), "4 + 24 × 40,000 characters fit; one more chunk does not");
    let head = server.state.store.log_head(&topic).await.unwrap();
    // Not subscribed: refused too.
    let mut eve = server.web("eve").await;
    eve.send(json!({"type": "doc_sync", "id": "e", "topic": topic, "data": encode_base64(&[3])})).await;
    assert_eq!(reply_to(&mut eve, "e").await["code"], "not_subscribed");
    // Nothing changed.
    assert_eq!(server.state.store.log_head(&topic).await.unwrap(), head);
    let text = server_text(&server, doc).await;
    assert_eq!((text.len(), text.contains("kept")), (4 + 24 * 40_000, true));
    ann.settle().await;
    assert_eq!(ann.value(), text);
}

#[tokio::test]
async fn snapshots_keep_the_text_history_shows_versions_and_restore_is_an_edit() {
    let server = TestServer::start().await;
    let mut ann = server.web("ann").await;
    let doc = create(&mut ann, "history").await;
    let mut ann = Editor::open(ann, doc, 1).await;
    for word in ["one ", "two ", "three "] {
        let end = ann.len();
        ann.edit(|t, txn| t.insert(txn, end, word)).await;
    }
    ann.settle().await;
    let documents = server.state.get::<Documents>();
    assert!(documents.compact(doc).await.unwrap(), "a snapshot of three edits");
    assert!(!documents.compact(doc).await.unwrap(), "nothing new to fold");
    assert_eq!(server.state.store.snapshot(doc).await.unwrap().unwrap().upto, 3);
    let end = ann.len();
    ann.edit(|t, txn| t.insert(txn, end, "four")).await;
    ann.settle().await;

    // After a restart the document is the snapshot and the edit after it.
    let topic = ann.topic.clone();
    ann.client.close().await;
    let server = server.restart().await;
    assert_eq!(server_text(&server, doc).await, "one two three four");
    let mut bob = Editor::open(server.web("bob").await, doc, 2).await;
    assert_eq!(bob.value(), "one two three four");

    // Versions: one run of edits (no long pause); the text after any offset.
    let id = bob.client.id();
    bob.client.send(json!({"type": "doc_versions", "id": id, "topic": topic})).await;
    let versions = reply_to(&mut bob.client, &id).await;
    assert_eq!(versions["versions"][0]["offset"], 4, "{versions}");
    assert_eq!(versions["versions"][0]["edits"], 4);
    assert!(versions["versions"][0]["authors"][0].as_str().unwrap().starts_with("ann"));
    for (offset, text) in [(1, "one "), (2, "one two "), (4, "one two three four")] {
        let id = bob.client.id();
        bob.client.send(json!({"type": "doc_version", "id": id, "topic": topic, "offset": offset})).await;
        assert_eq!(reply_to(&mut bob.client, &id).await["text"], text);
    }
    let id = bob.client.id();
    bob.client.send(json!({"type": "doc_version", "id": id, "topic": topic, "offset": 99})).await;
    assert_eq!(reply_to(&mut bob.client, &id).await["code"], "unknown_document");

    // Restoring the second version is an edit of Bob's, merged into everyone's copy.
    let ack = bob.request(json!({"type": "restore_version", "offset": 2})).await;
    assert_eq!((ack["type"].as_str(), ack["offset"].as_u64()), (Some("ack"), Some(5)), "{ack}");
    bob.settle().await;
    assert_eq!(bob.value(), "one two ");
    assert_eq!(server_text(&server, doc).await, "one two ");
}

#[tokio::test]
async fn who_may_see_rename_and_delete() {
    let server = TestServer::start().await;
    let mut ann = server.web("ann").await;
    let doc = create(&mut ann, "plans").await;
    let topic = format!("doc:{doc}");
    // The room's list, live.
    let mut bob = server.web("bob").await;
    assert_eq!(bob.subscribe("docs:lobby", None).await["type"], "subscribed");
    let list = bob.next_of("documents").await;
    assert_eq!(list["documents"][0]["name"], "plans", "{list}");
    assert_eq!(bob.subscribe(&topic, None).await["type"], "subscribed");
    let document = bob.next_of("document").await;
    assert_eq!(document["may_manage"], false, "{document}");

    // A name is taken once per room, and checked.
    ann.send(json!({"type": "create_document", "id": "dup", "topic": "chat:lobby", "name": "plans"})).await;
    assert_eq!(reply_to(&mut ann, "dup").await["code"], "name_taken");
    ann.send(json!({"type": "create_document", "id": "slash", "topic": "chat:lobby", "name": "a/b"})).await;
    assert_eq!(reply_to(&mut ann, "slash").await["code"], "invalid_field");
    ann.send(json!({"type": "create_document", "id": "nowhere", "topic": "chat:nowhere", "name": "x"})).await;
    assert_eq!(reply_to(&mut ann, "nowhere").await["code"], "unknown_room");

    // Only the creator (or an admin) renames and deletes.
    bob.send(json!({"type": "rename_document", "id": "r", "topic": topic, "name": "mine"})).await;
    assert_eq!(reply_to(&mut bob, "r").await["code"], "forbidden");
    bob.send(json!({"type": "delete_document", "id": "d", "topic": topic})).await;
    assert_eq!(reply_to(&mut bob, "d").await["code"], "forbidden");
    ann.send(json!({"type": "rename_document", "id": "r", "topic": topic, "name": "Plans 2027"})).await;
    assert_eq!(reply_to(&mut ann, "r").await["type"], "ack");
    assert_eq!(bob.next_of("document_renamed").await["name"], "Plans 2027");
    assert_eq!(bob.next_of("documents").await["documents"][0]["name"], "Plans 2027");
    ann.send(json!({"type": "delete_document", "id": "d", "topic": topic})).await;
    assert_eq!(reply_to(&mut ann, "d").await["type"], "ack");
    assert_eq!(bob.next_of("document_deleted").await["topic"], topic.as_str());
    assert_eq!(bob.next_of("documents").await["documents"], json!([]));
    assert_eq!(bob.subscribe(&topic, None).await["code"], "unknown_document");

    // A private room's documents are not there for others.
    let owner = server.sign_up("owner").await;
    let made = support::server_fn(server.addr, "create_room", "name=secret&private=on", Some(&owner)).await;
    assert_eq!(made.status, 200, "{}", made.body);
    let mut owner = server.web_as(&owner).await;
    owner.send(json!({"type": "create_document", "id": "c", "topic": "chat:secret", "name": "hidden"})).await;
    let created = reply_to(&mut owner, "c").await;
    let hidden = created["document"]["id"].as_i64().expect("made in the owner's private room");
    assert_eq!(bob.subscribe(&format!("doc:{hidden}"), None).await["code"], "unknown_document");
    assert_eq!(bob.subscribe("docs:secret", None).await["code"], "unknown_room");
    bob.send(json!({"type": "create_document", "id": "c", "topic": "chat:secret", "name": "mine"})).await;
    assert_eq!(reply_to(&mut bob, "c").await["code"], "unknown_room");
}

/// Run the npm Yjs client (tools/yjs-client.mjs) against the server.
fn node_client(server: &TestServer, room_doc: &str, args: &[&str]) -> tokio::process::Child {
    let root = env!("CARGO_MANIFEST_DIR");
    tokio::process::Command::new("node")
        .arg(format!("{root}/tools/yjs-client.mjs"))
        .arg(server.url("/yjs"))
        .arg(room_doc)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (make tools installs tools/node_modules)")
}

#[tokio::test]
async fn a_yjs_client_edits_the_same_document_as_the_page() {
    let server = TestServer::start().await;
    let mut ann = server.web("ann").await;
    let doc = create(&mut ann, "shared notes").await;
    let mut ann = Editor::open(ann, doc, 1).await;
    ann.edit(|t, txn| t.insert(txn, 0, "from rust.")).await;
    ann.settle().await;

    // Node joins with y-websocket, sees Ann's text, adds its own, and waits for Ann's next.
    let node = node_client(&server, "lobby/shared notes", &["--insert", " from node.", "--expect", " rust again."]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !ann.value().contains("from node.") {
        assert!(tokio::time::Instant::now() < deadline, "node's edit never came: {:?}", ann.value());
        let frame = ann.client.next().await;
        ann.take(&frame).await;
    }
    let end = ann.len();
    ann.edit(|t, txn| t.insert(txn, end, " rust again.")).await;
    ann.settle().await;
    let output = tokio::time::timeout(Duration::from_secs(15), node.wait_with_output()).await.unwrap().unwrap();
    let lines: Vec<Value> =
        String::from_utf8_lossy(&output.stdout).lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert!(output.status.success(), "{lines:?}");
    assert_eq!(lines[0]["synced"], "from rust.", "{lines:?}");
    assert_eq!(lines[1]["final"], "from rust. from node. rust again.");
    assert_eq!(ann.value(), "from rust. from node. rust again.");
    assert_eq!(server_text(&server, doc).await, ann.value());

    // A document that does not exist yet is made on first connect.
    let node = node_client(&server, "lobby/made by node", &["--insert", "hello"]);
    let output = tokio::time::timeout(Duration::from_secs(15), node.wait_with_output()).await.unwrap().unwrap();
    assert!(output.status.success());
    let room = server.state.store.room("lobby").await.unwrap().unwrap();
    let made = server.state.store.document_named(room.id, "made by node").await.unwrap().expect("made");
    assert_eq!(server_text(&server, made.id).await, "hello");
    // A room that does not exist is refused before the upgrade.
    assert_eq!(server.upgrade_status("/yjs/nowhere/doc", None).await, 404);
}

#[tokio::test]
async fn editors_on_two_nodes_converge() {
    let database = std::sync::Arc::new(switchboard::store::testing::TestDatabase::create().await);
    let prefix = support::redis_prefix();
    let nodes = [TestServer::node(&database, &prefix).await, TestServer::node(&database, &prefix).await];
    let mut ann = nodes[0].web("ann").await;
    let doc = create(&mut ann, "across").await;
    let mut editors = vec![Editor::open(ann, doc, 1).await];
    for (i, name) in ["bob", "cy", "dee"].iter().enumerate() {
        let node = &nodes[(i + 1) % 2];
        editors.push(Editor::open(node.web(name).await, doc, 2 + i as u64).await);
    }
    for round in 0..10 {
        for (i, editor) in editors.iter_mut().enumerate() {
            let at = (round * 7 + i as u32) % (editor.len() + 1);
            editor.edit(|text, txn| text.insert(txn, at, &format!("[{i}.{round}]"))).await;
        }
    }
    // Each copy settles, then takes what the other node's editors sent meanwhile, until all agree.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        for editor in &mut editors {
            editor.settle().await;
        }
        let texts: Vec<String> = editors.iter().map(Editor::value).collect();
        if texts.iter().all(|t| t.len() == 4 * 10 * 5 && *t == texts[0]) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no convergence: {texts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = editors[0].value();
    for node in &nodes {
        assert_eq!(server_text(node, doc).await, text, "every node's copy is the same");
    }
    // A newcomer on either node gets the whole text.
    let late = Editor::open(nodes[1].web("eve").await, doc, 9).await;
    assert_eq!(late.value(), text);

    // Carets: a newcomer on the other node is told at once of those announced on the first,
    // not at their next move (the page renews its own every 15 s).
    let caret = awareness(1, 1, r##"{"user":{"color":"#123456"}}"##);
    assert_eq!(editors[0].request(json!({"type": "doc_sync", "data": caret})).await["type"], "ack");
    let mut fay = nodes[1].web("fay").await;
    assert_eq!(fay.subscribe(&editors[0].topic, None).await["type"], "subscribed");
    let seen = tokio::time::timeout(Duration::from_secs(3), next_awareness(&mut fay)).await;
    let seen = seen.expect("the first node's carets in time");
    let state: Value = serde_json::from_str(&seen[0].state).unwrap();
    assert_eq!(seen[0].client, 1);
    assert!(state["user"]["name"].as_str().unwrap().starts_with("ann"), "{state}");
}

/// An awareness message from a client: one entry.
fn awareness(client: u64, clock: u64, state: &str) -> String {
    let entry = switchboard::documents::yproto::AwarenessEntry { client, clock, state: state.into() };
    let update = switchboard::documents::yproto::encode_awareness(&[entry]);
    encode_base64(&YMessage::Awareness(update).encode())
}

/// The awareness entries a `doc_sync` frame carries, if it carries awareness.
fn entries_of(frame: &Value) -> Option<Vec<switchboard::documents::yproto::AwarenessEntry>> {
    let bytes = decode_base64(frame["data"].as_str()?)?;
    match YMessage::decode(&bytes)? {
        YMessage::Awareness(update) => switchboard::documents::yproto::decode_awareness(&update),
        _ => None,
    }
}

/// The next awareness entries `client` hears.
async fn next_awareness(client: &mut Client) -> Vec<switchboard::documents::yproto::AwarenessEntry> {
    loop {
        let frame = client.next_of("doc_sync").await;
        if let Some(entries) = entries_of(&frame) {
            return entries;
        }
    }
}

#[tokio::test]
async fn awareness_carries_the_senders_name_to_the_others_and_leaves_with_them() {
    let server = TestServer::start().await;
    let mut ann = server.web("ann").await;
    let doc = create(&mut ann, "carets").await;
    let ann = Editor::open(ann, doc, 1).await;
    let mut bob = Editor::open(server.web("bob").await, doc, 2).await;
    let topic = bob.topic.clone();

    // Bob claims to be someone else: the others see his own name.
    let ack = bob
        .request(json!({"type": "doc_sync", "data": awareness(2, 1, r##"{"user":{"name":"ann","color":"#123456"}}"##)}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let mut ann = ann.client;
    let seen = next_awareness(&mut ann).await;
    let state: Value = serde_json::from_str(&seen[0].state).unwrap();
    assert!(state["user"]["name"].as_str().unwrap().starts_with("bob"), "{state}");
    assert_eq!(state["user"]["color"], "#123456");

    // A newcomer is told who is there; more than eight clients from one connection are refused
    // whole, and change nothing.
    let mut cy = server.web("cy").await;
    assert_eq!(cy.subscribe(&topic, None).await["type"], "subscribed");
    assert_eq!(next_awareness(&mut cy).await[0].client, 2);
    let many: Vec<_> = (10..20)
        .map(|client| switchboard::documents::yproto::AwarenessEntry { client, clock: 1, state: "{}".into() })
        .collect();
    let data = encode_base64(&YMessage::Awareness(switchboard::documents::yproto::encode_awareness(&many)).encode());
    assert_eq!(bob.request(json!({"type": "doc_sync", "data": data})).await["code"], "invalid_field");
    let query = encode_base64(&YMessage::QueryAwareness.encode());
    let answer = bob.request(json!({"type": "doc_sync", "data": query})).await;
    assert_eq!(answer["type"], "ack");

    // Bob leaves: the others hear that his client is gone.
    bob.client.close().await;
    let gone = next_awareness(&mut ann).await;
    assert_eq!((gone[0].client, gone[0].state.as_str()), (2, "null"));
}

#[tokio::test]
async fn edits_past_a_persons_rate_are_refused_and_stored_nowhere() {
    let server = TestServer::start_with(|config| {
        config.edit_rate = 1.0;
        config.edit_burst = 3.0;
    })
    .await;
    let mut ann = server.web("ann").await;
    let doc = create(&mut ann, "rate").await;
    let mut ann = Editor::open(ann, doc, 1).await;
    let mut codes = Vec::new();
    for i in 0..5 {
        let update = ann.local(|t, txn| t.insert(txn, 0, &i.to_string()));
        let data = encode_base64(&YMessage::Update(update).encode());
        let reply = ann.request(json!({"type": "doc_sync", "data": data})).await;
        codes.push(reply["code"].as_str().unwrap_or("ack").to_owned());
    }
    assert_eq!(codes, ["ack", "ack", "ack", "rate_limited", "rate_limited"]);
    assert_eq!(server.state.store.log_head(&ann.topic).await.unwrap(), 3, "the refused ones are not stored");
    assert_eq!(server_text(&server, doc).await.len(), 3);
}

#[tokio::test]
async fn a_member_removed_from_a_private_room_loses_its_documents() {
    let server = TestServer::start().await;
    let owner = server.sign_up("owner").await;
    let member = server.sign_up("member").await;
    let made = support::server_fn(server.addr, "create_room", "name=secret&private=on", Some(&owner)).await;
    assert_eq!(made.status, 200, "{}", made.body);
    let invited = support::server_fn(server.addr, "invite_member", "room=secret&username=member", Some(&owner)).await;
    assert_eq!(invited.status, 200, "{}", invited.body);
    let mut owner_ws = server.web_as(&owner).await;
    owner_ws.send(json!({"type": "create_document", "id": "c", "topic": "chat:secret", "name": "plans"})).await;
    let doc = reply_to(&mut owner_ws, "c").await["document"]["id"].as_i64().unwrap();
    let mut member_ws = server.web_as(&member).await;
    assert_eq!(member_ws.subscribe(&format!("doc:{doc}"), None).await["type"], "subscribed");
    assert_eq!(member_ws.subscribe("docs:secret", None).await["type"], "subscribed");

    let removed = support::server_fn(server.addr, "remove_member", "room=secret&username=member", Some(&owner)).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    let mut left = Vec::new();
    while left.len() < 2 {
        left.push(member_ws.next_of("unsubscribed").await["topic"].as_str().unwrap().to_owned());
    }
    left.sort();
    assert_eq!(left, [format!("doc:{doc}"), "docs:secret".to_owned()]);
    assert_eq!(member_ws.subscribe(&format!("doc:{doc}"), None).await["code"], "unknown_document");
}

#[tokio::test]
async fn over_http_the_plain_form_makes_a_document_and_export_gives_its_text() {
    // Without guests, so that a request with no session is no one.
    let server = TestServer::start_with(|config| config.guest_access = false).await;
    let session = server.sign_up("ann").await;
    let cookie = format!("switchboard_session={session}");
    let headers = [("cookie", cookie.as_str()), ("content-type", "application/x-www-form-urlencoded")];
    let made = support::http(server.addr, "POST", "/rooms/lobby/docs", &headers, "name=Road+map").await;
    assert_eq!(made.status, 303, "{}", made.body);
    let location = made.header("location").unwrap().to_owned();
    let doc: i64 = location.strip_prefix("/docs/").unwrap().parse().unwrap();
    let mut ann = Editor::open(server.web_as(&session).await, doc, 1).await;
    ann.edit(|t, txn| t.insert(txn, 0, "# Road map\n")).await;
    ann.settle().await;

    let export = support::http(server.addr, "GET", &format!("/docs/{doc}/export.md"), &[("cookie", &cookie)], "").await;
    assert_eq!(export.status, 200);
    assert_eq!(export.body, "# Road map\n");
    assert!(export.header("content-disposition").unwrap().contains("Road-map.md"));
    // Refused: a taken name (409), a room that is not there (404), no one signed in (401).
    let again = support::http(server.addr, "POST", "/rooms/lobby/docs", &headers, "name=Road+map").await;
    assert_eq!(again.status, 409, "{}", again.body);
    let nowhere = support::http(server.addr, "POST", "/rooms/nowhere/docs", &headers, "name=x").await;
    assert_eq!(nowhere.status, 404);
    let anonymous = support::http(server.addr, "GET", &format!("/docs/{doc}/export.md"), &[], "").await;
    assert_eq!(anonymous.status, 401);
}

#[tokio::test]
async fn the_yjs_endpoint_closes_on_a_refused_update_and_refuses_a_foreign_page() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let server = TestServer::start().await;
    let (mut yjs, _) = tokio_tungstenite::connect_async(server.url("/yjs/lobby/raw?name=raw")).await.unwrap();
    // The server's step 1 comes first.
    let first = yjs.next().await.unwrap().unwrap().into_data();
    assert!(matches!(YMessage::decode(&first), Some(YMessage::SyncStep1(_))));
    yjs.send(Message::binary(YMessage::Update(vec![0xff, 1, 2]).encode())).await.unwrap();
    let closed = loop {
        match yjs.next().await {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("expected a close, got {other:?}"),
        }
    };
    assert_eq!(closed, Some(1008));
    let room = server.state.store.room("lobby").await.unwrap().unwrap();
    let doc = server.state.store.document_named(room.id, "raw").await.unwrap().unwrap();
    assert_eq!(server.state.store.log_head(&format!("doc:{}", doc.id)).await.unwrap(), 0, "nothing stored");

    let mut request = server.url("/yjs/lobby/raw?name=evil").into_client_request().unwrap();
    request.headers_mut().insert("origin", "http://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 403),
        other => panic!("a foreign page's upgrade was not refused: {:?}", other.map(|_| ())),
    }
}
