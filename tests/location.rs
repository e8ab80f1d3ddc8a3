//! The live map over real sockets: validation, latest positions, the tutorial's endpoint.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::{Client, TestServer};
use tokio_tungstenite::tungstenite::Message;

const MAP: &str = "location:lobby";

async fn watcher(server: &TestServer, name: &str) -> Client {
    let mut client = server.web(name).await;
    let reply = client.subscribe(MAP, None).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    client
}

#[tokio::test]
async fn bad_positions_get_an_error_and_are_not_broadcast() {
    let server = TestServer::start().await;
    let mut watching = watcher(&server, "w").await;
    assert_eq!(watching.next_of("locations").await["positions"], json!([]));
    let mut sharer = server.web("s").await;
    sharer.next_of("welcome").await;
    let cases = [
        (r#"{"type":"locate","id":"a","topic":"location:lobby","latitude":90.5,"longitude":0}"#, "out_of_range"),
        (r#"{"type":"locate","id":"b","topic":"location:lobby","latitude":0,"longitude":-180.01}"#, "out_of_range"),
        (r#"{"type":"locate","id":"c","topic":"location:lobby","latitude":"1","longitude":2}"#, "invalid_field"),
        (r#"{"type":"locate","id":"d","topic":"location:lobby","longitude":2}"#, "invalid_field"),
        (r#"{"type":"locate","id":"e","topic":"location:nowhere","latitude":1,"longitude":2}"#, "unknown_room"),
        (r#"{"type":"locate","id":"f","topic":"chat:lobby","latitude":1,"longitude":2}"#, "unknown_topic"),
        (r#"{"type":"locate","id":"g","topic":"location:lobby","latitude":NaN,"longitude":2}"#, "malformed"),
        (r#"{"type":"locate","id":"h","topic":"location:lobby","latitude":1e999,"longitude":2}"#, "malformed"),
    ];
    for (frame, code) in cases {
        sharer.send_raw(Message::text(frame)).await;
        let error = sharer.next_of("error").await;
        assert_eq!(error["code"], code, "{frame} → {error}");
    }
    assert!(watching.drain().await.iter().all(|f| f["type"] != "location"), "nothing was broadcast");
    assert!(server.state.get::<switchboard::map::server::Locations>().snapshot(MAP).await.is_empty());
}

#[tokio::test]
async fn a_late_subscriber_first_gets_everyones_latest_position() {
    let server = TestServer::start().await;
    let mut ada = server.web("ada").await;
    let ada_name = ada.next_of("welcome").await["name"].clone();
    for (lat, lon) in [(10.0, 20.0), (11.0, 21.0), (12.5, -3.25)] {
        ada.send(json!({"type": "locate", "id": "l", "topic": MAP, "latitude": lat, "longitude": lon})).await;
    }
    let mut bob = server.web("bob").await;
    let bob_name = bob.next_of("welcome").await["name"].clone();
    bob.send(json!({"type": "locate", "id": "l", "topic": MAP, "latitude": -33.9, "longitude": 151.2})).await;
    // Let the coalescing interval pass so the latest is what is kept and sent.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut late = watcher(&server, "late").await;
    let snapshot = late.next_of("locations").await;
    let positions = snapshot["positions"].as_array().unwrap();
    assert_eq!(positions.len(), 2);
    assert_eq!(positions[0]["user"], ada_name);
    assert_eq!((positions[0]["latitude"].as_f64(), positions[0]["longitude"].as_f64()), (Some(12.5), Some(-3.25)));
    assert_eq!(positions[1]["user"], bob_name);

    // Live updates follow; stopping removes the marker for everyone.
    ada.send(json!({"type": "locate", "id": "m", "topic": MAP, "latitude": 1.0, "longitude": 2.0})).await;
    let moved = late.next_of("location").await;
    assert_eq!((&moved["user"], moved["latitude"].as_f64()), (&ada_name, Some(1.0)));
    ada.send(json!({"type": "stop_sharing", "id": "s", "topic": MAP})).await;
    assert_eq!(late.next_of("location_gone").await["user"], ada_name);
    bob.close().await;
    assert_eq!(late.next_of("location_gone").await["user"], bob_name, "leaving removes the marker too");
    assert!(server.state.get::<switchboard::map::server::Locations>().snapshot(MAP).await.is_empty());
}

#[tokio::test]
async fn the_tutorial_location_endpoint_and_the_lobby_map_see_each_other() {
    let server = TestServer::start().await;
    let mut web = watcher(&server, "web").await;
    web.next_of("locations").await;
    let mut device = Client::connect(&server.url("/ws/location/")).await;
    let mut other = Client::connect(&server.url("/ws/location/")).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    device.send(json!({"latitude": 48.8566, "longitude": 2.3522})).await;
    assert_eq!(other.next().await, json!({"latitude": 48.8566, "longitude": 2.3522}));
    assert_eq!(device.next().await, json!({"latitude": 48.8566, "longitude": 2.3522}), "the sender gets it too");
    let seen = web.next_of("location").await;
    assert_eq!((seen["latitude"].as_f64(), seen["longitude"].as_f64()), (Some(48.8566), Some(2.3522)));

    let mut sharer = server.web("sharer").await;
    sharer.send(json!({"type": "locate", "id": "x", "topic": MAP, "latitude": -1.5, "longitude": 36.8})).await;
    assert_eq!(other.next().await, json!({"latitude": -1.5, "longitude": 36.8}));
    assert_eq!(device.next().await, json!({"latitude": -1.5, "longitude": 36.8}));

    // The tutorial's bad frames get an error and change nothing.
    let before = web.drain().await;
    assert!(before.iter().any(|f| f["type"] == "location" && f["latitude"] == -1.5), "{before:?}");
    device.send(json!({"latitude": 200, "longitude": 0})).await;
    assert_eq!(device.next().await["error"]["code"], "out_of_range");
    device.send(json!({"latitude": "north", "longitude": 0})).await;
    assert_eq!(device.next().await["error"]["code"], "invalid_field");
    device.send(json!({"longitude": 0})).await;
    assert_eq!(device.next().await["error"]["code"], "invalid_field");
    device.send_raw(Message::text("not json")).await;
    assert_eq!(device.next().await["error"]["code"], "malformed");
    assert!(web.drain().await.iter().all(|f| f["type"] != "location"));
}

#[tokio::test]
async fn a_private_rooms_map_is_for_members_only() {
    let server = TestServer::start_with(|c| c.guest_access = false).await;
    let alice = server.sign_up("alice").await;
    let bob = server.sign_up("bob").await;
    let created = support::server_fn(server.addr, "create_room", "name=hq&private=on", Some(&alice)).await;
    assert_eq!(created.status, 200);
    let mut outsider = server.web_as(&bob).await;
    assert_eq!(outsider.subscribe("location:hq", None).await["code"], "unknown_room");
    outsider.send(json!({"type": "locate", "id": "l", "topic": "location:hq", "latitude": 1, "longitude": 1})).await;
    assert_eq!(outsider.next_of("error").await["code"], "unknown_room");
    let mut member = server.web_as(&alice).await;
    assert_eq!(member.subscribe("location:hq", None).await["type"], "subscribed");
}

#[tokio::test]
async fn updates_faster_than_the_rate_are_coalesced_and_the_latest_wins() {
    let server = TestServer::start_with(|c| c.location_rate = 2.0).await;
    let mut late = watcher(&server, "w").await;
    late.next_of("locations").await;
    let mut fast = server.web("fast").await;
    for i in 0..20 {
        fast.send(json!({"type": "locate", "id": "f", "topic": MAP, "latitude": f64::from(i), "longitude": 0})).await;
    }
    let first = late.next_of("location").await;
    assert_eq!(first["latitude"], 0.0);
    let second = late.next_of("location").await;
    assert_eq!(second["latitude"], 19.0, "the burst arrives as its latest position");
    assert!(late.drain().await.iter().all(|f| f["type"] != "location"), "and nothing else");
}

#[tokio::test]
async fn a_trail_is_sent_with_the_position_to_late_subscribers() {
    let server = TestServer::start().await;
    let mut walker = server.web("walker").await;
    walker.next_of("welcome").await;
    for lat in [1.0, 2.0, 3.0] {
        walker
            .send(json!({"type": "locate", "id": "t", "topic": MAP, "latitude": lat, "longitude": 5.0, "trail": true}))
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(80)).await;
    }
    let mut late = watcher(&server, "late").await;
    let snapshot = late.next_of("locations").await;
    assert_eq!(snapshot["positions"][0]["latitude"], 3.0);
    assert_eq!(snapshot["positions"][0]["trail"], json!([[1.0, 5.0], [2.0, 5.0]]));
    walker.send(json!({"type": "locate", "id": "t", "topic": MAP, "latitude": 4.0, "longitude": 5.0})).await;
    let update = late.next_of("location").await;
    assert!(update.get("trail").is_none(), "turning the trail off forgets it: {update}");
}
