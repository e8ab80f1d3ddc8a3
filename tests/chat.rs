//! Chat over the real protocol: a real server, real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::{Client, Ended, TestServer};
use tokio_tungstenite::tungstenite::Message;

const LOBBY: &str = "chat:lobby";

fn offset(frame: &Value) -> u64 {
    frame["offset"].as_u64().expect("an offset")
}

#[tokio::test]
async fn welcome_names_the_connection() {
    let server = TestServer::start().await;
    let mut client = server.web("ada").await;
    let welcome = client.next().await;
    assert_eq!(welcome["type"], "welcome");
    let name = welcome["name"].as_str().unwrap();
    assert!(name.starts_with("ada (guest ") && name.len() == "ada (guest 3f2a)".len(), "guests are marked: {name}");
    assert_eq!(welcome["max_frame_bytes"], 64 * 1024);
}

#[tokio::test]
async fn fan_out_reaches_every_subscriber_in_order() {
    let server = TestServer::start().await;
    let mut subscribers = Vec::new();
    for i in 0..40 {
        let mut client = server.web(&format!("s{i}")).await;
        let reply = client.subscribe(LOBBY, None).await;
        assert_eq!(reply["type"], "subscribed");
        subscribers.push(client);
    }
    let mut publisher = server.web("pub").await;
    let me = publisher.next_of("welcome").await["name"].clone();
    for i in 0..25 {
        let ack = publisher.publish(LOBBY, &format!("m{i}"), &format!("hello {i}")).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(offset(&ack), i + 1);
    }
    for client in &mut subscribers {
        for i in 0..25u64 {
            let frame = client.next_of("message").await;
            assert_eq!(offset(&frame), i + 1);
            assert_eq!(frame["text"], format!("hello {i}"));
            assert_eq!(frame["author"], me);
            assert_eq!(frame["id"], format!("m{i}"));
        }
    }
}

#[tokio::test]
async fn resume_after_reconnect_delivers_exactly_what_was_missed_while_others_publish() {
    let server = TestServer::start().await;
    const TOTAL: u64 = 300;
    let mut reader = server.web("reader").await;
    let subscribed = reader.subscribe(LOBBY, None).await;
    let epoch = subscribed["epoch"].as_str().expect("epoch").to_owned();

    // A publisher keeps going the whole time, pipelining its publishes.
    let mut publisher = server.web("pub").await;
    let publishing = tokio::spawn(async move {
        for i in 0..TOTAL {
            publisher
                .send(json!({"type": "publish", "id": format!("p{i}"), "topic": LOBBY, "text": format!("n{i}")}))
                .await;
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let mut acked = 0;
        while acked < TOTAL {
            if publisher.next().await["type"] == "ack" {
                acked += 1;
            }
        }
    });

    let mut seen = Vec::new();
    while seen.len() < 40 {
        seen.push(offset(&reader.next_of("message").await));
    }
    reader.close().await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    let mut reader = server.web("reader").await;
    let last = *seen.last().expect("some messages");
    let reply = reader.subscribe(LOBBY, Some(json!({"epoch": epoch, "offset": last}))).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    while *seen.last().expect("non-empty") < TOTAL {
        seen.push(offset(&reader.next_of("message").await));
    }
    publishing.await.expect("publisher");
    let expected: Vec<u64> = (1..=TOTAL).collect();
    assert_eq!(seen, expected, "every message once, in order");
}

#[tokio::test]
async fn a_resume_from_another_epoch_is_reset() {
    let server = TestServer::start().await;
    let mut client = server.web("a").await;
    let reply = client.subscribe(LOBBY, Some(json!({"epoch": "not-this-one", "offset": 3}))).await;
    assert_eq!(reply["type"], "reset");
    assert_eq!(reply["head"], 0);
}

#[tokio::test]
async fn a_retried_publish_is_stored_once() {
    let server = TestServer::start().await;
    let mut first = server.web("a").await;
    let ack = first.publish(LOBBY, "same-id", "only once").await;
    assert_eq!((ack["type"].as_str(), ack["duplicate"].as_bool()), (Some("ack"), Some(false)));
    first.close().await;

    let mut watcher = server.web("w").await;
    watcher.subscribe(LOBBY, None).await;
    let mut retry = server.web("a").await;
    let again = retry.publish(LOBBY, "same-id", "only once").await;
    assert_eq!(again["type"], "ack");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["offset"], ack["offset"]);

    let id = retry.id();
    retry.send(json!({"type": "history", "id": id, "topic": LOBBY})).await;
    let history = retry.next_of("history").await;
    assert_eq!(history["messages"].as_array().expect("messages").len(), 1);

    // The duplicate was not broadcast: the next thing the watcher sees is a new message.
    retry.publish(LOBBY, "other-id", "second").await;
    let next = watcher.next_of("message").await;
    assert_eq!(next["id"], "other-id");
}

#[tokio::test]
async fn history_pages_backwards() {
    let server = TestServer::start().await;
    let mut client = server.web("a").await;
    for i in 0..120 {
        client.send(json!({"type": "publish", "id": format!("h{i}"), "topic": LOBBY, "text": format!("t{i}")})).await;
    }
    let mut acks = 0;
    while acks < 120 {
        if client.next().await["type"] == "ack" {
            acks += 1;
        }
    }
    client.send(json!({"type": "history", "id": "q1", "topic": LOBBY})).await;
    let latest = client.next_of("history").await;
    let offsets: Vec<u64> = latest["messages"].as_array().expect("list").iter().map(offset).collect();
    assert_eq!(offsets, (71..=120).collect::<Vec<_>>());
    assert_eq!(latest["more"], true);
    client.send(json!({"type": "history", "id": "q2", "topic": LOBBY, "before": 71, "limit": 100})).await;
    let older = client.next_of("history").await;
    assert_eq!(older["messages"].as_array().expect("list").len(), 70);
    assert_eq!(older["more"], false);
}

#[tokio::test]
async fn a_client_that_never_reads_is_disconnected_while_others_get_everything() {
    // The queue must hold a couple of whole group-commit batches (up to 256 messages each,
    // published at once) for a reader that keeps up; the slow one fills it once the socket
    // buffers are full.
    let server = TestServer::start_with(|c| c.queue_frames = 600).await;
    let mut slow = Client::connect_small_buffer(&server.url("/ws?name=slow"), server.addr).await;
    slow.subscribe(LOBBY, None).await;
    let mut fast = server.web("fast").await;
    fast.subscribe(LOBBY, None).await;
    assert_eq!(server.state.hub.subscriber_count(LOBBY), 2);

    const COUNT: u64 = 3000;
    let text = "x".repeat(3900);
    let mut publisher = server.web("pub").await;
    let publishing = tokio::spawn(async move {
        for i in 0..COUNT {
            publisher.send(json!({"type": "publish", "id": format!("b{i}"), "topic": LOBBY, "text": text})).await;
        }
        publisher
    });
    for i in 0..COUNT {
        let frame = fast.next_of("message").await;
        assert_eq!(offset(&frame), i + 1, "the fast reader misses nothing");
    }
    let _publisher = publishing.await.expect("publisher");

    // The hub let go of the slow one, and its connection ends with the slow-consumer code.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.state.hub.subscriber_count(LOBBY) != 1 {
        assert!(tokio::time::Instant::now() < deadline, "the slow consumer is still subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (frames, ended) = slow.until_end(Duration::from_secs(30)).await;
    assert!(frames < COUNT as usize, "the slow reader did not get everything ({frames})");
    assert!(matches!(ended, Ended::Closed(Some(4001)) | Ended::Dropped), "ended with {ended:?}");
}

#[tokio::test]
async fn every_bad_input_gets_its_error_and_changes_nothing() {
    let server = TestServer::start_with(|c| c.max_frame_bytes = 2048).await;
    let mut watcher = server.web("watcher").await;
    watcher.subscribe(LOBBY, None).await;
    let mut client = server.web("bad").await;
    client.next_of("welcome").await;

    let cases: Vec<(Message, &str, Option<&str>)> = vec![
        (Message::text("{not json"), "malformed", None),
        (Message::text(r#"{"type":"dance","id":"e1"}"#), "unknown_type", Some("e1")),
        (Message::text(r#"{"type":"publish","id":"e2","topic":"chat:lobby"}"#), "invalid_field", Some("e2")),
        (Message::text(r#"{"type":"publish","id":"e3","topic":"chat:lobby","text":42}"#), "invalid_field", Some("e3")),
        (
            Message::text(json!({"type":"publish","id":"e4","topic":LOBBY,"text":"y".repeat(3000)}).to_string()),
            "too_large",
            Some("e4"),
        ),
        (Message::binary(vec![1u8, 2, 3]), "binary_frame", None),
        (
            Message::text(r#"{"type":"publish","id":"e5","topic":"chat:lobby","text":"   "}"#),
            "empty_message",
            Some("e5"),
        ),
        (
            Message::text(r#"{"type":"publish","id":"e6","topic":"chat:nowhere","text":"hi"}"#),
            "unknown_room",
            Some("e6"),
        ),
        (Message::text(r#"{"type":"subscribe","id":"e7","topic":"chat:nowhere"}"#), "unknown_room", Some("e7")),
        (Message::text(r#"{"type":"publish","id":"e8","topic":"weather","text":"hi"}"#), "unknown_topic", Some("e8")),
    ];
    for (message, code, id) in cases {
        client.send_raw(message).await;
        let error = client.next().await;
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["code"], code, "{error}");
        assert_eq!(error["id"].as_str(), id, "{error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    // The connection still works, nothing was stored, and the watcher saw nothing.
    client.send(json!({"type": "ping", "id": "alive"})).await;
    assert_eq!(client.next().await, json!({"type": "pong", "id": "alive"}));
    client.send(json!({"type": "history", "id": "h", "topic": LOBBY})).await;
    assert_eq!(client.next_of("history").await["messages"], json!([]));
    let ack = client.publish(LOBBY, "good", "finally").await;
    assert_eq!(offset(&ack), 1);
    assert_eq!(watcher.next_of("message").await["id"], "good");
}

#[tokio::test]
async fn a_frame_over_the_hard_limit_closes_with_1009() {
    let server = TestServer::start_with(|c| c.max_frame_bytes = 1024).await;
    let mut client = server.web("big").await;
    client.next_of("welcome").await;
    client.send_raw(Message::text("z".repeat(2 << 20))).await;
    let (_, ended) = client.until_end(Duration::from_secs(10)).await;
    assert!(matches!(ended, Ended::Closed(Some(1009)) | Ended::Dropped), "{ended:?}");
}

#[tokio::test]
async fn the_tutorial_endpoint_and_the_lobby_see_each_other() {
    let server = TestServer::start().await;
    let mut web = server.web("ada").await;
    web.subscribe(LOBBY, None).await;
    let mut tutorial = server.seed_chat().await;
    let mut other_tutorial = server.seed_chat().await;
    // Let both upgrades register before the first message.
    tokio::time::sleep(Duration::from_millis(100)).await;

    tutorial.send(json!({"message": "from chat.js"})).await;
    let seen = web.next_of("message").await;
    assert_eq!(seen["text"], "from chat.js");
    assert_eq!(tutorial.next().await, json!({"message": "from chat.js"}), "the tutorial echoes to the sender");
    assert_eq!(other_tutorial.next().await, json!({"message": "from chat.js"}));

    web.publish(LOBBY, "w1", "from the web app").await;
    assert_eq!(tutorial.next().await, json!({"message": "from the web app"}));
    assert_eq!(other_tutorial.next().await, json!({"message": "from the web app"}));

    // Messages in other rooms stay there.
    server.state.get::<switchboard::chat::server::Chat>().create_room("elsewhere", false, None).await.expect("room");
    web.publish("chat:elsewhere", "w2", "not for the tutorial").await;
    web.publish(LOBBY, "w3", "lobby again").await;
    assert_eq!(tutorial.next().await, json!({"message": "lobby again"}));
    assert_eq!(other_tutorial.next().await, json!({"message": "lobby again"}));

    // Bad tutorial frames get an error and are not stored or broadcast.
    tutorial.send(json!({"text": "wrong key"})).await;
    let error = tutorial.next().await;
    assert_eq!(error["error"]["code"], "invalid_field");
    tutorial.send_raw(Message::text("nope")).await;
    assert_eq!(tutorial.next().await["error"]["code"], "malformed");
    tutorial.send(json!({"message": ""})).await;
    assert_eq!(tutorial.next().await["error"]["code"], "empty_message");
    tutorial.send(json!({"message": "still works"})).await;
    assert_eq!(other_tutorial.next().await, json!({"message": "still works"}));
}

#[tokio::test]
async fn a_foreign_origin_is_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = TestServer::start().await;
    let mut request = server.url("/ws").into_client_request().expect("request");
    request.headers_mut().insert("origin", "http://evil.example".parse().expect("header"));
    let refused = tokio_tungstenite::connect_async(request).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    let mut own = server.url("/ws").into_client_request().expect("request");
    own.headers_mut().insert("origin", format!("http://{}", server.addr).parse().expect("header"));
    assert!(tokio_tungstenite::connect_async(own).await.is_ok());
}

#[tokio::test]
async fn a_silent_peer_is_dropped() {
    let server = TestServer::start_with(|c| {
        c.heartbeat_secs = 1;
        c.idle_timeout_secs = 2;
    })
    .await;
    let mut silent = server.web("silent").await;
    silent.subscribe(LOBBY, None).await;
    // Not reading means not answering pings either.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(server.state.hub.subscriber_count(LOBBY), 0);
    let (_, ended) = silent.until_end(Duration::from_secs(5)).await;
    assert!(matches!(ended, Ended::Closed(Some(4002)) | Ended::Dropped), "{ended:?}");
}

#[tokio::test]
async fn shutdown_closes_sockets_and_keeps_what_was_acknowledged() {
    let mut server = TestServer::start().await;
    let mut client = server.web("a").await;
    client.subscribe(LOBBY, None).await;
    let mut acked = BTreeSet::new();
    for i in 0..20 {
        let ack = client.publish(LOBBY, &format!("s{i}"), "kept").await;
        acked.insert(offset(&ack));
    }
    let url = server.state.config.database_url.clone();
    server.stop().await;
    let (_, ended) = client.until_end(Duration::from_secs(5)).await;
    // Twenty messages were broadcast before the close frame; `until_end` counted them.
    assert_eq!(ended, Ended::Closed(Some(1001)));

    let store = switchboard::store::Store::open(&url).await.expect("reopen");
    let lobby = store.room("lobby").await.expect("query").expect("lobby");
    assert_eq!(store.head(&lobby.name).await.expect("head"), 20);
}
