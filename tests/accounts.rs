//! Accounts, sessions, tokens, private rooms, presence and limits, over real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{http, server_fn, TestServer};
use switchboard::accounts::auth::hash_secret;

const LOBBY: &str = "chat:lobby";

async fn closed_server() -> TestServer {
    TestServer::start_with(|c| c.guest_access = false).await
}

#[tokio::test]
async fn an_unauthenticated_upgrade_is_refused() {
    let server = closed_server().await;
    assert_eq!(server.upgrade_status("/ws", None).await, 401);
    assert_eq!(server.upgrade_status("/ws?name=mallory", None).await, 401);
    assert_eq!(server.upgrade_status("/ws/chat/", None).await, 401);
    assert_eq!(server.upgrade_status("/ws", Some("not-a-session")).await, 401);
}

#[tokio::test]
async fn guest_mode_off_keeps_visitors_out_of_server_functions_too() {
    let server = closed_server().await;
    let response = server_fn(server.addr, "load_room", "room=lobby", None).await;
    assert_ne!(response.status, 200);
    assert!(response.body.contains("Unauthorized"), "{}", response.body);
    let response = server_fn(server.addr, "list_rooms", "", None).await;
    assert_ne!(response.status, 200);
}

#[tokio::test]
async fn guest_mode_on_lets_visitors_chat_in_public_rooms_only() {
    let server = TestServer::start_with(|c| c.guest_access = true).await;
    let alice = server.sign_up("alice").await;
    let created = server_fn(server.addr, "create_room", "name=inner&private=on", Some(&alice)).await;
    assert_eq!(created.status, 200, "{}", created.body);

    let mut guest = server.web("visitor").await;
    assert!(guest.next().await["name"].as_str().unwrap().starts_with("visitor (guest "));
    let ack = guest.publish(LOBBY, "g1", "hello from a guest").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(guest.subscribe("chat:inner", None).await["code"], "unknown_room");
    // Guests create no rooms.
    let refused = server_fn(server.addr, "create_room", "name=guestroom", None).await;
    assert_ne!(refused.status, 200);
    // The tutorial's endpoint takes clients without a cookie.
    assert_eq!(server.upgrade_status("/ws/chat/", None).await, 101);
}

#[tokio::test]
async fn sign_up_sets_a_safe_session_cookie_that_survives_a_restart() {
    let server = closed_server().await;
    let response = server_fn(server.addr, "sign_up", "username=ada&password=correct-horse", None).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let cookie = response.header("set-cookie").expect("cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    let session = response.session().expect("session");

    let mut ws = server.web_as(&session).await;
    assert_eq!(ws.next().await["name"], "ada");
    let me = server_fn(server.addr, "me", "", Some(&session)).await;
    let me: Value = serde_json::from_str(&me.body).expect("json");
    assert_eq!(me["user"], "ada");
    assert_eq!(me["admin"], true, "the first account is the admin");

    let bob = server.sign_up("bob").await;
    let me: Value = serde_json::from_str(&server_fn(server.addr, "me", "", Some(&bob)).await.body).expect("json");
    assert_eq!(me["admin"], false);

    let server = server.restart().await;
    assert_eq!(server.upgrade_status("/ws", Some(&session)).await, 101, "sessions are stored");
}

#[tokio::test]
async fn sign_up_and_sign_in_say_what_went_wrong() {
    let server = closed_server().await;
    server.sign_up("carol").await;
    let taken = server_fn(server.addr, "sign_up", "username=CAROL&password=another-pass", None).await;
    assert!(taken.body.contains("taken"), "{}", taken.body);
    let short = server_fn(server.addr, "sign_up", "username=dan&password=short", None).await;
    assert!(short.body.contains("at least 8"), "{}", short.body);
    let wrong = server_fn(server.addr, "sign_in", "username=carol&password=wrong-pass", None).await;
    assert!(wrong.body.contains("wrong username or password"), "{}", wrong.body);
    assert!(wrong.session().is_none());
    let right = server_fn(server.addr, "sign_in", "username=carol&password=correct-horse", None).await;
    assert!(right.session().is_some(), "{}", right.body);
}

#[tokio::test]
async fn repeated_failed_sign_ins_are_slowed_down() {
    let server = closed_server().await;
    server.sign_up("erin").await;
    for _ in 0..5 {
        let wrong = server_fn(server.addr, "sign_in", "username=erin&password=nope-nope", None).await;
        assert!(wrong.body.contains("wrong username"), "{}", wrong.body);
    }
    let throttled = server_fn(server.addr, "sign_in", "username=erin&password=correct-horse", None).await;
    assert!(throttled.body.contains("too many failed sign-ins"), "{}", throttled.body);
    assert!(throttled.session().is_none(), "even the right password waits");
}

#[tokio::test]
async fn without_javascript_a_failed_sign_in_redirects_back_with_the_error() {
    let server = closed_server().await;
    let headers = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Accept", "text/html"),
        ("Referer", "http://x/signin"),
    ];
    let response = http(server.addr, "POST", "/api/sign_in", &headers, "username=nobody&password=whatever1").await;
    assert_eq!(response.status, 302);
    let location = response.header("location").expect("location");
    assert!(location.starts_with("/signin?error=wrong"), "{location}");
}

#[tokio::test]
async fn sign_out_ends_the_session() {
    let server = closed_server().await;
    let session = server.sign_up("frank").await;
    let out = server_fn(server.addr, "sign_out", "", Some(&session)).await;
    assert_eq!(out.status, 200, "{}", out.body);
    assert!(out.header("set-cookie").is_some_and(|c| c.contains("Max-Age=0")));
    assert_eq!(server.upgrade_status("/ws", Some(&session)).await, 401);
}

async fn private_room_with_outsider() -> (TestServer, String, String) {
    let server = closed_server().await;
    let alice = server.sign_up("alice").await;
    let bob = server.sign_up("bob").await;
    let created = server_fn(server.addr, "create_room", "name=secret&private=on", Some(&alice)).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let mut ws = server.web_as(&alice).await;
    assert_eq!(ws.publish("chat:secret", "s1", "the plan").await["type"], "ack");
    (server, alice, bob)
}

#[tokio::test]
async fn a_non_member_cannot_subscribe_to_a_private_room() {
    let (server, _alice, bob) = private_room_with_outsider().await;
    let mut ws = server.web_as(&bob).await;
    let reply = ws.subscribe("chat:secret", Some(json!({"epoch": "x", "offset": 0}))).await;
    assert_eq!(reply["code"], "unknown_room", "the room is indistinguishable from a missing one: {reply}");
}

#[tokio::test]
async fn a_non_member_cannot_read_a_private_rooms_history() {
    let (server, _alice, bob) = private_room_with_outsider().await;
    let mut ws = server.web_as(&bob).await;
    ws.send(json!({"type": "history", "id": "h", "topic": "chat:secret"})).await;
    let reply = ws.next_of("error").await;
    assert_eq!(reply["code"], "unknown_room");
    let page = server_fn(server.addr, "load_room", "room=secret", Some(&bob)).await;
    assert!(!page.body.contains("the plan"), "{}", page.body);
    let rooms = server_fn(server.addr, "list_rooms", "", Some(&bob)).await;
    assert!(!rooms.body.contains("secret"), "{}", rooms.body);
    let members = server_fn(server.addr, "room_members", "room=secret", Some(&bob)).await;
    assert!(!members.body.contains("alice"), "{}", members.body);
}

#[tokio::test]
async fn a_non_member_cannot_publish_to_a_private_room() {
    let (server, alice, bob) = private_room_with_outsider().await;
    let mut ws = server.web_as(&bob).await;
    let reply = ws.publish("chat:secret", "b1", "let me in").await;
    assert_eq!(reply["code"], "unknown_room");
    let mut member = server.web_as(&alice).await;
    member.send(json!({"type": "history", "id": "h", "topic": "chat:secret"})).await;
    let history = member.next_of("history").await;
    assert_eq!(history["messages"].as_array().expect("list").len(), 1, "nothing was stored");
}

#[tokio::test]
async fn an_invited_member_gets_in_and_a_removed_one_is_cut_off_at_once() {
    let (server, alice, bob) = private_room_with_outsider().await;
    let mut bob_ws = server.web_as(&bob).await;
    bob_ws.next_of("welcome").await;
    let invited = server_fn(server.addr, "invite_member", "room=secret&username=bob", Some(&alice)).await;
    assert_eq!(invited.status, 200, "{}", invited.body);
    let notice = bob_ws.next_of("room").await;
    assert_eq!(notice["room"]["name"], "secret");
    assert_eq!(bob_ws.subscribe("chat:secret", None).await["type"], "subscribed");

    // Bob may not remove Alice: only the creator or an admin removes.
    let refused = server_fn(server.addr, "remove_member", "room=secret&username=alice", Some(&bob)).await;
    assert_ne!(refused.status, 200);

    let removed = server_fn(server.addr, "remove_member", "room=secret&username=bob", Some(&alice)).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(bob_ws.next_of("room_left").await["room"], "secret");
    let mut alice_ws = server.web_as(&alice).await;
    alice_ws.publish("chat:secret", "after", "bob must not see this").await;
    bob_ws.send(json!({"type": "ping", "id": "p"})).await;
    loop {
        let frame = bob_ws.next().await;
        assert_ne!(frame["type"], "message", "a removed member got {frame}");
        if frame["type"] == "pong" {
            break;
        }
    }
}

#[tokio::test]
async fn the_message_rate_limit_holds() {
    let server = TestServer::start_with(|c| {
        c.guest_access = false;
        c.message_rate = 0.0;
        c.message_burst = 3.0;
    })
    .await;
    let session = server.sign_up("gabe").await;
    let mut ws = server.web_as(&session).await;
    for i in 0..3 {
        assert_eq!(ws.publish(LOBBY, &format!("ok{i}"), "fine").await["type"], "ack");
    }
    let limited = ws.publish(LOBBY, "over", "too much").await;
    assert_eq!(limited["code"], "rate_limited");
    // Another connection of the same person shares the allowance.
    let mut second = server.web_as(&session).await;
    assert_eq!(second.publish(LOBBY, "over2", "still too much").await["code"], "rate_limited");
    ws.send(json!({"type": "history", "id": "h", "topic": LOBBY})).await;
    assert_eq!(ws.next_of("history").await["messages"].as_array().expect("list").len(), 3);
}

#[tokio::test]
async fn a_revoked_token_stops_working() {
    let server = closed_server().await;
    let session = server.sign_up("hana").await;
    let created = server_fn(server.addr, "create_token", "name=sensor", Some(&session)).await;
    let created: Value = serde_json::from_str(&created.body).expect("json");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let id = created["token"]["id"].as_i64().expect("id");
    assert!(server.state.store.token_user(&hash_secret(&secret)).await.expect("query").is_some());

    assert_eq!(server.upgrade_status(&format!("/ws/chat/?token={secret}"), None).await, 101);
    let mut device = support::Client::connect(&server.url(&format!("/ws/chat/?token={secret}"))).await;
    device.send(json!({"message": "from a device"})).await;
    assert_eq!(device.next().await, json!({"message": "from a device"}));

    let revoked = server_fn(server.addr, "revoke_token", &format!("id={id}"), Some(&session)).await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(server.upgrade_status(&format!("/ws/chat/?token={secret}"), None).await, 401);
    // Another user cannot revoke someone else's token.
    let other = server.sign_up("ivan").await;
    let refused = server_fn(server.addr, "revoke_token", &format!("id={id}"), Some(&other)).await;
    assert_ne!(refused.status, 200);
}

#[tokio::test]
async fn presence_lists_each_person_once_and_drops_them_when_they_leave() {
    let server = closed_server().await;
    let alice = server.sign_up("alice").await;
    let bob = server.sign_up("bob").await;
    let mut a1 = server.web_as(&alice).await;
    let present = json!({"type": "subscribe", "id": "s", "topic": LOBBY, "present": true});
    a1.send(present.clone()).await;
    assert_eq!(a1.next_of("presence").await["online"], json!(["alice"]));
    let mut a2 = server.web_as(&alice).await;
    a2.send(present.clone()).await;
    assert_eq!(a2.next_of("presence").await["online"], json!(["alice"]), "two tabs count once");
    let mut b = server.web_as(&bob).await;
    b.send(present.clone()).await;
    assert_eq!(b.next_of("presence").await["online"], json!(["alice", "bob"]));
    until_online(&mut a1, json!(["alice", "bob"])).await;

    b.close().await;
    let started = std::time::Instant::now();
    until_online(&mut a1, json!(["alice"])).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    // Closing one of Alice's two tabs leaves her listed.
    a2.close().await;
    let mut c = server.web_as(&bob).await;
    c.send(present).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    until_online(&mut c, json!(["alice", "bob"])).await;
}

/// Read presence frames until one lists exactly `expected`.
async fn until_online(client: &mut support::Client, expected: Value) {
    loop {
        let frame = client.next_of("presence").await;
        if frame["online"] == expected {
            return;
        }
    }
}

#[tokio::test]
async fn typing_reaches_the_room() {
    let server = closed_server().await;
    let alice = server.sign_up("alice").await;
    let bob = server.sign_up("bob").await;
    let mut a = server.web_as(&alice).await;
    let mut b = server.web_as(&bob).await;
    a.subscribe(LOBBY, None).await;
    b.subscribe(LOBBY, None).await;
    a.send(json!({"type": "typing", "id": "t", "topic": LOBBY})).await;
    let notice = b.next_of("typing").await;
    assert_eq!(notice["user"], "alice");
    let mut c = server.web_as(&bob).await;
    c.send(json!({"type": "typing", "id": "t2", "topic": LOBBY})).await;
    assert_eq!(c.next_of("error").await["code"], "not_subscribed");
}

#[tokio::test]
async fn unread_counts_follow_read_markers() {
    let server = closed_server().await;
    let alice = server.sign_up("alice").await;
    let mut a = server.web_as(&alice).await;
    a.publish(LOBBY, "before", "said before bob came").await;
    let bob = server.sign_up("bob").await;
    for i in 0..4 {
        a.publish(LOBBY, &format!("u{i}"), "news").await;
    }
    let rooms: Value = serde_json::from_str(&server_fn(server.addr, "list_rooms", "", Some(&bob)).await.body).unwrap();
    assert_eq!(rooms[0]["unread"], 4);
    let mut b = server.web_as(&bob).await;
    b.send(json!({"type": "read", "id": "r", "topic": LOBBY, "offset": 4})).await;
    b.send(json!({"type": "ping", "id": "p"})).await;
    b.next_of("pong").await;
    let rooms: Value = serde_json::from_str(&server_fn(server.addr, "list_rooms", "", Some(&bob)).await.body).unwrap();
    assert_eq!(rooms[0]["unread"], 1);
}

#[tokio::test]
async fn activity_notices_reach_only_those_who_can_see_the_room() {
    let (server, alice, bob) = private_room_with_outsider().await;
    let mut b = server.web_as(&bob).await;
    b.subscribe("activity", None).await;
    let mut a = server.web_as(&alice).await;
    a.subscribe("activity", None).await;
    // Sent without waiting for acks, so the notices are not read past while waiting.
    a.send(json!({"type": "publish", "id": "s2", "topic": "chat:secret", "text": "private news"})).await;
    a.send(json!({"type": "publish", "id": "l1", "topic": LOBBY, "text": "public news"})).await;
    let seen = a.next_of("activity").await;
    assert_eq!(seen["room"], "secret");
    let first = b.next_of("activity").await;
    assert_eq!(first["room"], "lobby", "bob never hears of the private room: {first}");
    assert_eq!(first["text"], "public news");
}
