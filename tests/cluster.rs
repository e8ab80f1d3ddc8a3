//! Several nodes on one PostgreSQL and one Redis, in this process: every acknowledged message
//! reaches every subscriber on every node exactly once, in order, with contiguous offsets;
//! resume works across nodes; a lost or late bus message is filled from PostgreSQL; rooms made
//! on one node are known on the others; presence is the union of every node's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::{http, redis_prefix, server_fn, Client, TestServer};
use switchboard::chat::server::Chat;
use switchboard::realtime::server::bus::Chaos;
use switchboard::store::testing::TestDatabase;

const LOBBY: &str = "chat:lobby";

async fn cluster(nodes: usize) -> (Vec<TestServer>, support::RedisPrefix) {
    let database = Arc::new(TestDatabase::create().await);
    let prefix = redis_prefix();
    let mut servers = Vec::new();
    for _ in 0..nodes {
        servers.push(TestServer::node(&database, &prefix).await);
    }
    (servers, prefix)
}

fn offset(frame: &Value) -> u64 {
    frame["offset"].as_u64().expect("an offset")
}

/// Read `count` messages of `topic` and check that their offsets run on from `after`, one by one.
async fn expect_run(client: &mut Client, topic: &str, after: u64, count: u64) -> Vec<Value> {
    let mut got = Vec::new();
    while (got.len() as u64) < count {
        let frame = client.next_of("message").await;
        assert_eq!(frame["topic"], topic);
        assert_eq!(offset(&frame), after + got.len() as u64 + 1, "offsets arrive in order, once each: {frame}");
        got.push(frame);
    }
    got
}

#[tokio::test]
async fn publishers_on_every_node_reach_subscribers_on_every_node_once_in_order() {
    let (nodes, _prefix) = cluster(3).await;
    let mut subscribers = Vec::new();
    for node in &nodes {
        for i in 0..3 {
            let mut client = node.web(&format!("s{i}")).await;
            assert_eq!(client.subscribe(LOBBY, None).await["type"], "subscribed");
            subscribers.push(client);
        }
    }
    // Each node's publisher sends 30 messages, all three at once.
    let mut publishers = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let mut client = node.web(&format!("p{n}")).await;
        publishers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..30 {
                let ack = client.publish(LOBBY, &format!("n{n}-{i}"), &format!("from {n}: {i}")).await;
                assert_eq!(ack["type"], "ack", "{ack}");
                acked.push((offset(&ack), format!("n{n}-{i}")));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for publisher in publishers {
        acked.extend(publisher.await.unwrap());
    }
    acked.sort();
    assert_eq!(acked.iter().map(|(o, _)| *o).collect::<Vec<_>>(), (1..=90).collect::<Vec<u64>>(), "gap-free offsets");
    for client in &mut subscribers {
        let got = expect_run(client, LOBBY, 0, 90).await;
        let ids: Vec<(u64, String)> = got.iter().map(|f| (offset(f), f["id"].as_str().unwrap().to_owned())).collect();
        assert_eq!(ids, acked, "every subscriber got what was acknowledged");
        assert!(client.drain().await.iter().all(|f| f["type"] != "message"), "and nothing twice");
    }
}

#[tokio::test]
async fn lost_late_and_reordered_bus_messages_are_made_good_from_the_store() {
    let (nodes, _prefix) = cluster(2).await;
    let cluster = nodes[1].state.core.cluster.clone().expect("a node of a cluster");
    cluster.set_chaos(Some(Chaos { lose: 0.3, delay: Duration::from_millis(40) }));
    let mut subscriber = nodes[1].web("far").await;
    subscriber.subscribe(LOBBY, None).await;
    let mut typing_seen = nodes[1].web("near").await;
    typing_seen.subscribe(LOBBY, None).await;
    let mut publisher = nodes[0].web("publisher").await;
    for i in 0..100 {
        let ack = publisher.publish(LOBBY, &format!("m{i}"), &format!("{i}")).await;
        assert_eq!(offset(&ack), i + 1);
    }
    // Every message, in order, once: the lost ones read from PostgreSQL (the last ones when the
    // head is checked), the late ones dropped as delivered already or waited for.
    for client in [&mut subscriber, &mut typing_seen] {
        let got = expect_run(client, LOBBY, 0, 100).await;
        assert!(got.iter().enumerate().all(|(i, f)| f["text"].as_str() == Some(i.to_string().as_str())));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(client.drain().await.iter().all(|f| f["type"] != "message"), "nothing twice");
    }
    assert!(cluster.stats.filled.load(std::sync::atomic::Ordering::Relaxed) > 0, "some came from the store");
}

#[tokio::test]
async fn resume_on_another_node_gets_exactly_what_was_missed() {
    let (nodes, _prefix) = cluster(2).await;
    let mut reader = nodes[0].web("reader").await;
    let subscribed = reader.subscribe(LOBBY, None).await;
    let epoch = subscribed["epoch"].clone();
    let mut writer = nodes[1].web("writer").await;
    for i in 0..5 {
        writer.publish(LOBBY, &format!("a{i}"), "before").await;
    }
    let seen = expect_run(&mut reader, LOBBY, 0, 5).await;
    reader.close().await;
    for i in 0..7 {
        writer.publish(LOBBY, &format!("b{i}"), "while away").await;
    }
    let mut back = nodes[1].web("reader").await;
    let resumed = back.subscribe(LOBBY, Some(json!({"epoch": epoch, "offset": offset(&seen[4])}))).await;
    assert_eq!((resumed["type"].as_str(), resumed["head"].as_u64()), (Some("subscribed"), Some(12)));
    let missed = expect_run(&mut back, LOBBY, 5, 7).await;
    assert!(missed.iter().all(|f| f["text"] == "while away"));
    writer.publish(LOBBY, "c", "live").await;
    expect_run(&mut back, LOBBY, 12, 1).await;
}

#[tokio::test]
async fn a_room_made_on_one_node_is_open_on_the_others_and_its_messages_cross() {
    let (nodes, _prefix) = cluster(2).await;
    let mut other = nodes[1].web("other").await;
    assert_eq!(other.subscribe("rooms", None).await["type"], "subscribed");
    let chat = nodes[0].state.get::<Chat>();
    chat.create_room("ops", false, None).await.unwrap();
    // The other node's clients hear of it, and the node itself learns of it, over the bus.
    let announced = other.next_of("room").await;
    assert_eq!(announced["room"]["name"], "ops");
    let mut maker = nodes[0].web("maker").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let reply = other.subscribe("chat:ops", None).await;
        if reply["type"] == "subscribed" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the room never reached the other node: {reply}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(maker.publish("chat:ops", "x1", "hi ops").await["type"], "ack");
    let message = other.next_of("message").await;
    assert_eq!((message["topic"].as_str(), message["text"].as_str()), (Some("chat:ops"), Some("hi ops")));
}

#[tokio::test]
async fn presence_is_everyone_on_every_node() {
    let (nodes, _prefix) = cluster(2).await;
    let mut ada = nodes[0].web("ada").await;
    let ada_name = ada.next_of("welcome").await["name"].as_str().unwrap().to_owned();
    ada.send(json!({"type": "subscribe", "id": "s", "topic": LOBBY, "present": true})).await;
    let mut bob = nodes[1].web("bob").await;
    let bob_name = bob.next_of("welcome").await["name"].as_str().unwrap().to_owned();
    bob.send(json!({"type": "subscribe", "id": "s", "topic": LOBBY, "present": true})).await;
    let both = {
        let mut expected = vec![ada_name.clone(), bob_name.clone()];
        expected.sort();
        expected
    };
    for client in [&mut ada, &mut bob] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
        loop {
            let frame = client.next_of("presence").await;
            let online: Vec<String> = serde_json::from_value(frame["online"].clone()).unwrap();
            if online == both {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "presence never showed both: {online:?}");
        }
    }
    // Bob leaves: after the grace period, Ada's node lists Ada alone.
    bob.close().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        let frame = ada.next_of("presence").await;
        let online: Vec<String> = serde_json::from_value(frame["online"].clone()).unwrap();
        if online == [ada_name.clone()] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "bob never left: {online:?}");
    }
}

#[tokio::test]
async fn positions_on_one_node_reach_maps_on_the_others_and_late_subscribers_see_them() {
    const MAP: &str = "location:lobby";
    let (nodes, _prefix) = cluster(2).await;
    let mut watching = nodes[1].web("watcher").await;
    watching.subscribe(MAP, None).await;
    assert_eq!(watching.next_of("locations").await["positions"], json!([]));
    let mut ada = nodes[0].web("ada").await;
    let ada_name = ada.next_of("welcome").await["name"].clone();
    ada.send(json!({"type": "locate", "id": "l", "topic": MAP, "latitude": 12.5, "longitude": -3.25})).await;
    let moved = watching.next_of("location").await;
    assert_eq!((&moved["user"], moved["latitude"].as_f64()), (&ada_name, Some(12.5)));
    // A subscriber arriving later on the other node gets Ada's latest position first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut late = nodes[1].web("late").await;
    late.subscribe(MAP, None).await;
    let snapshot = late.next_of("locations").await;
    assert_eq!(snapshot["positions"][0]["user"], ada_name, "{snapshot}");
    assert_eq!(snapshot["positions"][0]["longitude"].as_f64(), Some(-3.25));
    // The tutorial's /ws/location/ on the other node hears the lobby's map too.
    let mut seed = Client::connect(&nodes[1].url("/ws/location/")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    ada.send(json!({"type": "locate", "id": "m", "topic": MAP, "latitude": 1.0, "longitude": 2.0})).await;
    let echoed = seed.next().await;
    assert_eq!((echoed["latitude"].as_f64(), echoed["longitude"].as_f64()), (Some(1.0), Some(2.0)), "{echoed}");
    // Leaving takes the marker off everywhere, and out of the shared snapshot.
    ada.close().await;
    assert_eq!(late.next_of("location_gone").await["user"], ada_name);
    let mut last = nodes[0].web("last").await;
    last.subscribe(MAP, None).await;
    assert_eq!(last.next_of("locations").await["positions"], json!([]));
}

#[tokio::test]
async fn a_persons_rate_limit_is_one_allowance_across_the_nodes() {
    let database = Arc::new(TestDatabase::create().await);
    let prefix = redis_prefix();
    let limited = |config: &mut switchboard::server::config::Config| {
        config.message_rate = 0.0;
        config.message_burst = 3.0;
    };
    let a = TestServer::node_with(&database, &prefix, limited).await;
    let b = TestServer::node_with(&database, &prefix, limited).await;
    let session = a.sign_up("ada").await;
    let mut on_a = a.web_as(&session).await;
    let mut on_b = b.web_as(&session).await;
    let mut answers = Vec::new();
    for i in 0..3 {
        let client = if i % 2 == 0 { &mut on_a } else { &mut on_b };
        answers.push(client.publish(LOBBY, &format!("m{i}"), "hi").await["type"].clone());
    }
    assert_eq!(answers, ["ack", "ack", "ack"]);
    for client in [&mut on_a, &mut on_b] {
        let id = client.id();
        let refused = client.publish(LOBBY, &id, "one too many").await;
        assert_eq!((refused["type"].as_str(), refused["code"].as_str()), (Some("error"), Some("rate_limited")));
    }
}

#[tokio::test]
async fn a_private_room_shared_on_one_node_opens_on_the_other_and_closes_there_on_removal() {
    let (nodes, _prefix) = cluster(2).await;
    let alice = nodes[0].sign_up("alice").await;
    let bob = nodes[1].sign_up("bob").await;
    let made = server_fn(nodes[0].addr, "create_room", "name=secret&private=on", Some(&alice)).await;
    assert_eq!(made.status, 200, "{}", made.body);
    let mut bob_ws = nodes[1].web_as(&bob).await;
    bob_ws.next_of("welcome").await;
    assert_eq!(bob_ws.subscribe("chat:secret", None).await["code"], "unknown_room", "not a member yet");
    // Alice invites Bob on node 0: Bob's connection on node 1 hears of it, and may join there.
    let invited = server_fn(nodes[0].addr, "invite_member", "room=secret&username=bob", Some(&alice)).await;
    assert_eq!(invited.status, 200, "{}", invited.body);
    assert_eq!(bob_ws.next_of("room").await["room"]["name"], "secret");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while bob_ws.subscribe("chat:secret", None).await["type"] != "subscribed" {
        assert!(tokio::time::Instant::now() < deadline, "node 1 never learnt of the membership");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut alice_ws = nodes[0].web_as(&alice).await;
    alice_ws.subscribe("chat:secret", None).await;
    // Typing crosses nodes too.
    alice_ws.send(json!({"type": "typing", "id": "t", "topic": "chat:secret"})).await;
    assert_eq!(bob_ws.next_of("typing").await["user"], "alice");
    assert_eq!(alice_ws.publish("chat:secret", "s1", "for members").await["type"], "ack");
    assert_eq!(bob_ws.next_of("message").await["text"], "for members");
    // Removed on node 0: cut off on node 1 at once, and nothing more reaches him.
    let removed = server_fn(nodes[0].addr, "remove_member", "room=secret&username=bob", Some(&alice)).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(bob_ws.next_of("room_left").await["room"], "secret");
    assert_eq!(alice_ws.publish("chat:secret", "s2", "bob must not see this").await["type"], "ack");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(bob_ws.drain().await.iter().all(|f| f["type"] != "message"), "nothing after the removal");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while bob_ws.subscribe("chat:secret", None).await["type"] == "subscribed" {
        assert!(tokio::time::Instant::now() < deadline, "node 1 never learnt of the removal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readings_posted_on_one_node_reach_watchers_and_the_tutorial_endpoint_on_the_other() {
    let (nodes, _prefix) = cluster(2).await;
    let alice = nodes[0].sign_up("alice").await;
    let created = server_fn(nodes[0].addr, "create_sensor", "name=hall&range_min=0&range_max=100", Some(&alice)).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let created: Value = serde_json::from_str(&created.body).unwrap();
    let (id, token) = (created["sensor"]["id"].as_i64().unwrap(), created["token"].as_str().unwrap().to_owned());
    let topic = format!("sensor:{id}");
    let mut watcher = nodes[1].web("watcher").await;
    assert_eq!(watcher.subscribe(&topic, None).await["type"], "subscribed");
    let mut seed = Client::connect(&nodes[1].url("/ws/sensor_data/")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let auth = format!("Bearer {token}");
    let headers = [("Content-Type", "application/json"), ("Authorization", auth.as_str())];
    let posted =
        http(nodes[0].addr, "POST", &format!("/api/sensors/{id}/readings"), &headers, r#"{"value": 21.5}"#).await;
    assert_eq!(posted.status, 200, "{}", posted.body);
    assert_eq!(watcher.next_of("readings").await["readings"][0]["value"], 21.5);
    let echoed = seed.next().await;
    assert_eq!((echoed["sensor_id"].as_i64(), echoed["sensor_value"].as_f64()), (Some(id), Some(21.5)), "{echoed}");
    // A late watcher on the other node gets the latest reading first (it is in PostgreSQL).
    let mut late = nodes[1].web("late").await;
    late.subscribe(&topic, None).await;
    assert_eq!(late.next_of("readings").await["readings"][0]["value"], 21.5);
}

#[tokio::test]
async fn a_sqlite_file_with_a_redis_url_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = switchboard::server::config::Config::for_tests(format!("sqlite://{}/s.db", dir.path().display()));
    config.redis_url = Some(support::redis_url());
    let Err(error) = switchboard::server::Server::bind(config).await else {
        panic!("a SQLite node of a cluster started")
    };
    let message = error.to_string();
    assert!(message.contains("postgres") && message.contains("SQLite file belongs to one process"), "{message}");
}

#[tokio::test]
async fn a_poll_on_two_nodes_one_vote_per_person_hidden_counts_and_tallies_everywhere() {
    let (nodes, _prefix) = cluster(2).await;
    nodes[0].sign_up("root").await;
    let ada = nodes[0].sign_up("ada").await;
    let bob = nodes[1].sign_up("bob").await;
    let mut maker = nodes[0].web_as(&ada).await;
    assert_eq!(maker.subscribe(LOBBY, None).await["type"], "subscribed");
    let spec = json!({"type": "create_poll", "id": "p1", "topic": LOBBY, "question": "Where?",
                      "options": ["here", "there", "anywhere"], "max_choices": 2, "show_results": "voted"});
    maker.send(spec).await;
    // Its ack, and its message in the lobby, in either order.
    let (mut acked, mut poll) = (false, None);
    while !acked || poll.is_none() {
        let frame = maker.next().await;
        acked |= frame["type"] == "ack" && frame["id"] == "p1";
        if frame["type"] == "message" && frame["id"] == "p1" {
            poll = frame["poll"].as_i64();
        }
    }
    let poll = poll.expect("a poll's message");
    let topic = format!("poll:{poll}");

    // Bob follows on the other node; he has not voted, so nothing he receives has counts.
    let mut bob_b = nodes[1].web_as(&bob).await;
    assert_eq!(bob_b.subscribe(&topic, None).await["type"], "subscribed");
    // Ada votes forty times at once, from a tab on each node: one vote stays.
    let mut tabs = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let mut tab = node.web_as(&ada).await;
        let topic = topic.clone();
        tabs.push(tokio::spawn(async move {
            for i in 0..20u64 {
                let id = format!("v{n}-{i}");
                let choices = json!([(n as u64 + i) % 3, (n as u64 + i + 1) % 3]);
                tab.send(json!({"type": "vote", "id": id, "topic": topic, "choices": choices})).await;
                let answer = tab.next_of("ack").await;
                assert_eq!(answer["id"], id.as_str());
            }
        }));
    }
    for tab in tabs {
        tab.await.unwrap();
    }
    let counts = nodes[1].state.store.poll_counts(poll, 3).await.unwrap();
    assert_eq!((counts.voters, counts.options.iter().sum::<u64>()), (1, 2), "one vote of Ada's");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let seen: Vec<String> = bob_b.drain().await.iter().map(Value::to_string).collect();
    assert!(seen.iter().all(|frame| !frame.contains("counts")), "no counts before Bob votes: {seen:?}");

    // Bob votes on node A, where he has no connection following: his follower on node B hears
    // that he voted, may ask for the counts, and then follows them.
    let mut bob_a = nodes[0].web_as(&bob).await;
    bob_a.send(json!({"type": "vote", "id": "b1", "topic": topic, "choices": [0]})).await;
    assert_eq!(bob_a.next_of("ack").await["id"], "b1");
    assert_eq!(bob_b.next_of("voted").await["choices"], json!([0]));
    bob_b.send(json!({"type": "results", "id": "see", "topic": topic})).await;
    let first = bob_b.next_tally_counting(3).await;
    assert_eq!(first["voters"], 2);
    // Ada changes her vote on node A: the tally reaches Bob on node B, whole.
    let mut ada_a = nodes[0].web_as(&ada).await;
    ada_a.send(json!({"type": "vote", "id": "a2", "topic": topic, "choices": [2]})).await;
    assert_eq!(ada_a.next_of("ack").await["id"], "a2");
    let mut last = bob_b.next_tally_counting(2).await;
    while last["counts"] != json!([1, 0, 1]) {
        last = bob_b.next_tally_counting(2).await;
    }
    assert!(last["version"].as_u64() > first["version"].as_u64());
}
