//! Guests are people of their own: one per browser (by a signed cookie), or one per
//! connection for clients that bring none, whatever name they pick.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::{http, Client, TestServer, WAIT};
use switchboard::tutorial as seed;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const LOBBY: &str = "chat:lobby";
const MAP: &str = "location:lobby";

/// A server with the real default allowance: 5 messages a second, bursts of 20, per person.
async fn limited_server() -> TestServer {
    TestServer::start_with(|c| {
        c.message_rate = 5.0;
        c.message_burst = 20.0;
    })
    .await
}

async fn tutorial_clients(server: &TestServer, count: usize) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..count {
        clients.push(server.seed_chat().await);
    }
    // Every one subscribed before anyone speaks.
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.state.hub.subscriber_count(seed::CHAT_TOPIC) < count {
        assert!(tokio::time::Instant::now() < deadline, "the clients did not all subscribe");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    clients
}

/// Read until `want` distinct messages arrived; the errors met on the way are returned.
async fn collect(client: &mut Client, want: usize) -> (HashSet<String>, Vec<Value>) {
    let mut seen = HashSet::new();
    let mut errors = Vec::new();
    while seen.len() < want {
        let frame = client.next().await;
        match frame["message"].as_str() {
            Some(text) => {
                assert!(seen.insert(text.to_owned()), "{text} came twice");
            }
            None => errors.push(frame),
        }
    }
    (seen, errors)
}

#[tokio::test]
async fn ten_anonymous_tutorial_clients_each_have_their_own_allowance() {
    let server = limited_server().await;
    let mut clients = tutorial_clients(&server, 10).await;
    // Each sends its whole burst at once: within its own allowance, over a shared one.
    for (i, client) in clients.iter_mut().enumerate() {
        for j in 0..20 {
            client.send(json!({"message": format!("c{i} m{j}")})).await;
        }
    }
    for client in &mut clients {
        let (seen, errors) = collect(client, 200).await;
        assert!(errors.is_empty(), "nobody was refused: {errors:?}");
        assert_eq!(seen.len(), 200);
    }
}

#[tokio::test]
async fn one_client_over_its_allowance_is_refused_and_the_others_are_not() {
    let server = limited_server().await;
    let mut clients = tutorial_clients(&server, 4).await;
    for j in 0..40 {
        clients[0].send(json!({"message": format!("greedy {j}")})).await;
    }
    for (i, client) in clients.iter_mut().enumerate().skip(1) {
        for j in 0..20 {
            client.send(json!({"message": format!("c{i} m{j}")})).await;
        }
    }
    // The greedy one hears about each refusal; its burst and every polite message go through.
    let mut refused = 0;
    let mut greedy_stored = 0;
    for (i, client) in clients.iter_mut().enumerate() {
        let mut polite = 0;
        loop {
            let frame = tokio::time::timeout(Duration::from_millis(1500), client.next()).await;
            let Ok(frame) = frame else { break };
            match frame["message"].as_str() {
                Some(text) if text.starts_with("greedy") => greedy_stored += usize::from(i == 0),
                Some(_) => polite += 1,
                None => {
                    assert_eq!(i, 0, "only the greedy client is refused: {frame}");
                    assert_eq!(frame["error"]["code"], "rate_limited", "{frame}");
                    refused += 1;
                }
            }
        }
        assert_eq!(polite, 60, "client {i} got every polite message");
    }
    assert!((20..=22).contains(&greedy_stored), "the greedy client's burst went through: {greedy_stored}");
    assert_eq!(refused + greedy_stored, 40, "every message of the greedy client was stored or refused");
}

/// Both clients open the lobby (counted as present); who a newcomer then sees online.
async fn online_after_joining(server: &TestServer, clients: [&mut Client; 2]) -> Vec<String> {
    for client in clients {
        let id = client.id();
        client.send(json!({"type": "subscribe", "id": id, "topic": LOBBY, "present": true})).await;
        client.next_of("subscribed").await;
        // Counted once its own list arrives: `subscribed` comes before the connection counts
        // as present, so a newcomer right after it could see the list without it.
        client.next_of("presence").await;
    }
    let mut watching = server.web("watcher").await;
    watching.subscribe(LOBBY, None).await;
    let online = watching.next_of("presence").await["online"].clone();
    online.as_array().unwrap().iter().filter_map(Value::as_str).map(str::to_owned).collect()
}

#[tokio::test]
async fn two_guests_with_one_name_are_two_people() {
    let server = TestServer::start().await;
    let mut one = server.web("alice").await;
    let mut two = server.web("alice").await;
    let name_one = one.next_of("welcome").await["name"].as_str().unwrap().to_owned();
    let name_two = two.next_of("welcome").await["name"].as_str().unwrap().to_owned();
    assert!(name_one.starts_with("alice (guest ") && name_two.starts_with("alice (guest "), "{name_one}, {name_two}");
    assert_ne!(name_one, name_two, "told apart where both are shown");

    // Presence lists both.
    let mut online = online_after_joining(&server, [&mut one, &mut two]).await;
    online.sort_unstable();
    let mut both = vec![name_one.clone(), name_two.clone()];
    both.sort_unstable();
    assert_eq!(online, both);

    // Two markers on the map.
    one.send(json!({"type": "locate", "id": "l", "topic": MAP, "latitude": 52.37, "longitude": 4.89})).await;
    two.send(json!({"type": "locate", "id": "l", "topic": MAP, "latitude": 52.3702, "longitude": 4.8902})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut map = server.web("map").await;
    map.subscribe(MAP, None).await;
    let snapshot = map.next_of("locations").await;
    let users: HashSet<&str> =
        snapshot["positions"].as_array().unwrap().iter().filter_map(|p| p["user"].as_str()).collect();
    assert_eq!(users, HashSet::from([name_one.as_str(), name_two.as_str()]));
}

/// A WebSocket to `/ws?name=…` carrying `cookie`.
async fn web_with_cookie(server: &TestServer, name: &str, cookie: &str) -> Client {
    let mut request = server.url(&format!("/ws?name={name}")).into_client_request().unwrap();
    request.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("websocket connects");
    Client::from(ws)
}

#[tokio::test]
async fn a_browser_is_one_guest_in_every_tab_by_its_signed_cookie() {
    let server = TestServer::start().await;
    let first = http(server.addr, "GET", "/healthz", &[], "").await;
    let set = first.header("set-cookie").expect("a first visit gets a guest cookie");
    assert!(set.starts_with("switchboard_guest=") && set.contains("HttpOnly"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();

    // Coming back with it sets no new one.
    let again = http(server.addr, "GET", "/healthz", &[("Cookie", &cookie)], "").await;
    assert_eq!(again.header("set-cookie"), None);

    // Two tabs: one guest, one presence entry.
    let mut tab_one = web_with_cookie(&server, "alice", &cookie).await;
    let mut tab_two = web_with_cookie(&server, "alice", &cookie).await;
    let name = tab_one.next_of("welcome").await["name"].clone();
    assert_eq!(tab_two.next_of("welcome").await["name"], name);
    assert_eq!(online_after_joining(&server, [&mut tab_one, &mut tab_two]).await, [name.as_str().unwrap()]);

    // A cookie with another id but this signature is nobody's: a new guest.
    let (id, signature) = cookie.split_once('.').unwrap();
    let flipped = if id.ends_with('0') { "1" } else { "0" };
    let forged = format!("{}{flipped}.{signature}", &id[..id.len() - 1]);
    let mut other = web_with_cookie(&server, "alice", &forged).await;
    assert_ne!(other.next_of("welcome").await["name"], name);
    let answer = http(server.addr, "GET", "/healthz", &[("Cookie", &forged)], "").await;
    assert!(
        answer.header("set-cookie").is_some_and(|c| c.starts_with("switchboard_guest=")),
        "a forged cookie is replaced"
    );
}

#[tokio::test]
async fn without_guest_mode_nobody_gets_a_guest_cookie() {
    let server = TestServer::start_with(|c| c.guest_access = false).await;
    let response = http(server.addr, "GET", "/healthz", &[], "").await;
    assert_eq!(response.header("set-cookie"), None);
}
