//! Live polls on a real server: a poll is a message of its room's timeline; votes move every
//! follower's tallies (whole counts with a version, at most one tally per window); one person,
//! one vote; hidden results and anonymous choices are never in a frame to whoever may not see
//! them; closing by hand and by time; bad input gets its code and changes nothing; the HTTP API
//! with a token, the CSV export, and the plain form.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{http, server_fn, Client, TestServer};

const LOBBY: &str = "chat:lobby";

/// Make a poll in the lobby over `/ws`; the ack's offset is its message's.
async fn create(client: &mut Client, spec: Value) -> Value {
    let id = client.id();
    let mut frame = json!({"type": "create_poll", "id": id, "topic": LOBBY});
    for (key, value) in spec.as_object().unwrap() {
        frame[key] = value.clone();
    }
    client.send(frame).await;
    reply(client, &id).await
}

/// The ack or error that answers request `id`.
async fn reply(client: &mut Client, id: &str) -> Value {
    loop {
        let frame = client.next().await;
        if frame["id"] == id && (frame["type"] == "ack" || frame["type"] == "error") {
            return frame;
        }
    }
}

/// Whatever frame answers request `id`.
async fn reply_to(client: &mut Client, id: &str) -> Value {
    loop {
        let frame = client.next().await;
        if frame["id"] == id {
            return frame;
        }
    }
}

/// Make a poll and return its id, read from its message in the lobby.
async fn make_poll(client: &mut Client, spec: Value) -> i64 {
    assert_eq!(client.subscribe(LOBBY, None).await["type"], "subscribed");
    let id = client.id();
    let mut frame = json!({"type": "create_poll", "id": id, "topic": LOBBY});
    for (key, value) in spec.as_object().unwrap() {
        frame[key] = value.clone();
    }
    client.send(frame).await;
    // The message (fanned out once stored) and the ack, in either order.
    let (mut ack, mut message) = (None, None);
    while ack.is_none() || message.is_none() {
        let frame = client.next().await;
        match frame["type"].as_str() {
            Some("ack") | Some("error") if frame["id"] == id.as_str() => ack = Some(frame),
            Some("message") if frame["id"] == id.as_str() => message = Some(frame),
            _ => {}
        }
        assert_ne!(ack.as_ref().map(|a| a["type"].clone()), Some(json!("error")), "{ack:?}");
    }
    let (ack, message) = (ack.unwrap(), message.unwrap());
    assert_eq!(message["offset"], ack["offset"]);
    message["poll"].as_i64().expect("a poll's message names its poll")
}

async fn vote(client: &mut Client, poll: i64, choices: Value) -> Value {
    let id = client.id();
    client.send(json!({"type": "vote", "id": id, "topic": format!("poll:{poll}"), "choices": choices})).await;
    reply(client, &id).await
}

/// Follow a poll: the `poll` frame (after `subscribed`).
async fn follow(client: &mut Client, poll: i64) -> Value {
    let subscribed = client.subscribe(&format!("poll:{poll}"), None).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    client.next_of("poll").await
}

fn lunch() -> Value {
    json!({"question": "Lunch?", "options": ["pizza", "soup", "salad"]})
}

/// A server whose first account (the admin) is taken, so that the tests' users are not admins.
async fn server_with_users(names: &[&str]) -> (TestServer, Vec<String>) {
    let server = TestServer::start().await;
    server.sign_up("root").await;
    let mut sessions = Vec::new();
    for name in names {
        sessions.push(server.sign_up(name).await);
    }
    (server, sessions)
}

#[tokio::test]
async fn a_poll_is_a_message_and_votes_move_every_followers_bars() {
    let (server, sessions) = server_with_users(&["ada", "bob"]).await;
    let mut ada = server.web_as(&sessions[0]).await;
    let mut bob = server.web_as(&sessions[1]).await;
    let poll = make_poll(&mut ada, lunch()).await;

    // Replayed like any message: a resume from the start carries it, with its poll.
    let mut late = server.web("late").await;
    let epoch = late.subscribe(LOBBY, None).await["epoch"].clone();
    late.subscribe(LOBBY, Some(json!({"epoch": epoch, "offset": 0}))).await;
    let replayed = late.next_of("message").await;
    assert_eq!((replayed["text"].as_str(), replayed["poll"].as_i64()), (Some("Lunch?"), Some(poll)));

    let first = follow(&mut bob, poll).await;
    assert_eq!(first["poll"]["options"], json!(["pizza", "soup", "salad"]));
    assert_eq!((first["poll"]["creator"].as_str(), first["mine"].clone()), (Some("ada"), json!([])));
    assert_eq!(first["may_close"], false, "bob did not make it");
    let start = bob.next_of("tally").await;
    assert_eq!(start["counts"], json!([0, 0, 0]));
    assert_eq!(follow(&mut ada, poll).await["may_close"], true);

    assert_eq!(vote(&mut ada, poll, json!([0])).await["type"], "ack");
    let one = bob.next_tally_counting(1).await;
    assert_eq!((one["counts"].clone(), one["voters"].clone()), (json!([1, 0, 0]), json!(1)));
    assert_eq!(one["names"], json!([["ada"], [], []]), "a named poll says who chose what");
    assert!(one["version"].as_u64() > start["version"].as_u64());
    assert_eq!(vote(&mut bob, poll, json!([2])).await["type"], "ack");
    // Ada changes her mind: still one vote of hers.
    assert_eq!(vote(&mut ada, poll, json!([2])).await["type"], "ack");
    let mut last = ada.next_tally_counting(2).await;
    while last["counts"] != json!([0, 0, 2]) {
        last = ada.next_tally_counting(2).await;
    }
    assert_eq!(last["voters"], 2);
    // Bob's connection hears his vote, and the same final counts.
    let mut seen = bob.next_tally_counting(2).await;
    while seen["counts"] != json!([0, 0, 2]) {
        seen = bob.next_tally_counting(2).await;
    }
}

/// Every frame a connection has received, as text.
async fn raw_frames(client: &mut Client) -> String {
    client.drain().await.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn hidden_results_and_anonymous_choices_are_never_sent() {
    let (server, sessions) = server_with_users(&["ada", "bob", "cyd"]).await;
    let mut ada = server.web_as(&sessions[0]).await;
    let mut bob = server.web_as(&sessions[1]).await;
    let mut cy = server.web_as(&sessions[2]).await;

    // Results after voting, anonymous.
    let spec = json!({"question": "Secret?", "options": ["yes", "no"], "show_results": "voted", "anonymous": true});
    let poll = make_poll(&mut ada, spec).await;
    follow(&mut bob, poll).await;
    follow(&mut cy, poll).await;
    assert_eq!(vote(&mut ada, poll, json!([0])).await["type"], "ack");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = raw_frames(&mut bob).await;
    assert!(!before.contains("counts") && !before.contains("\"tally\""), "no counts before voting: {before}");
    // Bob votes: his reply is followed by the counts, and from then on he hears tallies.
    assert_eq!(vote(&mut bob, poll, json!([1])).await["type"], "ack");
    let tally = bob.next_of("tally").await;
    assert_eq!(tally["counts"], json!([1, 1]));
    assert!(tally.get("names").is_none(), "an anonymous poll names nobody: {tally}");
    // Cy, who has not voted, has still seen no count.
    let cy_frames = raw_frames(&mut cy).await;
    assert!(!cy_frames.contains("counts"), "{cy_frames}");

    // Results when closed: not even the voter or its creator sees counts before.
    let spec = json!({"question": "Later?", "options": ["a", "b"], "show_results": "closed"});
    let closed = make_poll(&mut ada, spec).await;
    follow(&mut bob, closed).await;
    follow(&mut ada, closed).await;
    assert_eq!(vote(&mut bob, closed, json!([0])).await["type"], "ack");
    assert_eq!(vote(&mut ada, closed, json!([0])).await["type"], "ack");
    tokio::time::sleep(Duration::from_millis(400)).await;
    for client in [&mut ada, &mut bob] {
        let frames = raw_frames(client).await;
        assert!(!frames.contains("counts"), "no counts before closing: {frames}");
    }
    // An API read before closing carries none either.
    let read =
        http(server.addr, "GET", &format!("/api/polls/{closed}"), &[("Cookie", &cookie(&sessions[1]))], "").await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(serde_json::from_str::<Value>(&read.body).unwrap()["tally"], Value::Null, "{}", read.body);
    let csv =
        http(server.addr, "GET", &format!("/api/polls/{closed}/results.csv"), &[("Cookie", &cookie(&sessions[1]))], "")
            .await;
    assert_eq!(csv.status, 403);

    // Bob may not close it; Ada, its creator, does: everyone hears it, and the final counts.
    let id = bob.id();
    bob.send(json!({"type": "close_poll", "id": id, "topic": format!("poll:{closed}")})).await;
    assert_eq!(reply(&mut bob, &id).await["code"], "forbidden");
    let id = ada.id();
    ada.send(json!({"type": "close_poll", "id": id, "topic": format!("poll:{closed}")})).await;
    assert_eq!(reply(&mut ada, &id).await["type"], "ack");
    assert!(bob.next_of("poll_closed").await["closed_at"].as_i64().is_some());
    assert_eq!(bob.next_of("tally").await["counts"], json!([2, 0]));
    assert_eq!(vote(&mut bob, closed, json!([1])).await["code"], "poll_closed");
    let again = ada.id();
    ada.send(json!({"type": "close_poll", "id": again, "topic": format!("poll:{closed}")})).await;
    assert_eq!(reply(&mut ada, &again).await["code"], "poll_closed");
}

#[tokio::test]
async fn a_member_removed_from_a_private_room_stops_hearing_its_polls() {
    let (server, sessions) = server_with_users(&["ada", "bob"]).await;
    let made = server_fn(server.addr, "create_room", "name=secret&private=on", Some(&sessions[0])).await;
    assert_eq!(made.status, 200, "{}", made.body);
    let invited = server_fn(server.addr, "invite_member", "room=secret&username=bob", Some(&sessions[0])).await;
    assert_eq!(invited.status, 200, "{}", invited.body);
    let mut ada = server.web_as(&sessions[0]).await;
    assert_eq!(ada.subscribe("chat:secret", None).await["type"], "subscribed");
    let id = ada.id();
    ada.send(json!({"type": "create_poll", "id": id, "topic": "chat:secret", "question": "q", "options": ["a", "b"]}))
        .await;
    let poll = ada.next_of("message").await["poll"].as_i64().unwrap();
    let mut bob = server.web_as(&sessions[1]).await;
    follow(&mut bob, poll).await;
    // An outsider cannot follow it: to them it does not exist.
    let mut outsider = server.web("eve").await;
    assert_eq!(outsider.subscribe(&format!("poll:{poll}"), None).await["code"], "unknown_poll");

    let removed = server_fn(server.addr, "remove_member", "room=secret&username=bob", Some(&sessions[0])).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    let ended = bob.next_of("unsubscribed").await;
    assert_eq!(ended["topic"], format!("poll:{poll}"));
    assert_eq!(vote(&mut ada, poll, json!([0])).await["type"], "ack");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let frames = raw_frames(&mut bob).await;
    assert!(!frames.contains("tally") && !frames.contains("turnout"), "nothing of the poll after removal: {frames}");
    assert_eq!(vote(&mut bob, poll, json!([1])).await["code"], "unknown_poll");
}

fn cookie(session: &str) -> String {
    format!("switchboard_session={session}")
}

#[tokio::test]
async fn bad_input_gets_its_code_and_changes_nothing() {
    let (server, sessions) = server_with_users(&["ada"]).await;
    let mut ada = server.web_as(&sessions[0]).await;
    let poll = make_poll(&mut ada, json!({"question": "q", "options": ["a", "b", "c"], "max_choices": 2})).await;
    let many: Vec<String> = (0..21).map(|i| format!("o{i}")).collect();
    let refused = [
        (json!({"question": "q", "options": ["only"]}), "invalid_field"),
        (json!({"question": "q", "options": many}), "invalid_field"),
        (json!({"question": "   ", "options": ["a", "b"]}), "invalid_field"),
        (json!({"question": "q".repeat(301), "options": ["a", "b"]}), "invalid_field"),
        (json!({"question": "q", "options": ["a", "b".repeat(201)]}), "invalid_field"),
        (json!({"question": "q", "options": ["a", "a"]}), "invalid_field"),
        (json!({"question": "q", "options": ["a", "b"], "max_choices": 3}), "invalid_field"),
        (json!({"question": "q", "options": ["a", "b"], "closes_at": 1000}), "invalid_field"),
        (json!({"question": "q", "options": ["a", "b"], "show_results": "never"}), "invalid_field"),
        (json!({"question": 7, "options": ["a", "b"]}), "invalid_field"),
    ];
    for (spec, code) in refused {
        let answer = create(&mut ada, spec.clone()).await;
        assert_eq!(answer["code"], code, "{spec}: {answer}");
    }
    let id = ada.id();
    ada.send(json!({"type": "create_poll", "id": id, "topic": "chat:nowhere", "question": "q", "options": ["a", "b"]}))
        .await;
    assert_eq!(reply(&mut ada, &id).await["code"], "unknown_room");

    let votes = [
        (json!([5]), "unknown_option"),
        (json!([0, 1, 2]), "too_many_choices"),
        (json!([]), "invalid_field"),
        (json!([1, 1]), "invalid_field"),
        (json!(["a"]), "invalid_field"),
        (json!([-1]), "invalid_field"),
    ];
    for (choices, code) in votes {
        assert_eq!(vote(&mut ada, poll, choices.clone()).await["code"], code, "{choices}");
    }
    assert_eq!(vote(&mut ada, poll + 1000, json!([0])).await["code"], "unknown_poll");
    let subscribed = ada.subscribe(&format!("poll:{}", poll + 1000), None).await;
    assert_eq!(subscribed["code"], "unknown_poll");
    assert_eq!(ada.subscribe("poll:abc", None).await["code"], "unknown_topic");
    assert_eq!(ada.subscribe(&format!("poll-results:{poll}"), None).await["code"], "unknown_topic");

    // Nothing was stored: the lobby holds the one poll, which has no votes.
    let (messages, _) = server.state.store.messages_before("lobby", None, 50).await.unwrap();
    assert_eq!(messages.iter().filter(|m| m.poll.is_some()).count(), 1);
    let counts = server.state.store.poll_counts(poll, 3).await.unwrap();
    assert_eq!(counts.voters, 0);
}

#[tokio::test]
async fn one_person_votes_once_from_every_tab_and_a_guest_by_browser_not_name() {
    let (server, sessions) = server_with_users(&["ada"]).await;
    let mut maker = server.web_as(&sessions[0]).await;
    let poll = make_poll(&mut maker, json!({"question": "q", "options": ["a", "b", "c"], "max_choices": 2})).await;

    // Five tabs of Ada's, twenty votes each, all at once.
    let mut tabs = Vec::new();
    for tab in 0..5u64 {
        let mut client = server.web_as(&sessions[0]).await;
        tabs.push(tokio::spawn(async move {
            for i in 0..20u64 {
                let choices = json!([(tab + i) % 3, (tab + i + 1) % 3]);
                let answer = vote(&mut client, poll, choices).await;
                assert_eq!(answer["type"], "ack", "{answer}");
            }
        }));
    }
    for tab in tabs {
        tab.await.unwrap();
    }
    let counts = server.state.store.poll_counts(poll, 3).await.unwrap();
    assert_eq!((counts.voters, counts.options.iter().sum::<u64>()), (1, 2), "one vote of two choices");

    // A guest: one browser (its cookie), two tabs with two names, is one voter.
    let visit = http(server.addr, "GET", "/healthz", &[], "").await;
    let guest = visit.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    for name in ["gus", "gustav"] {
        let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            server.url(&format!("/ws?name={name}")),
        )
        .unwrap();
        request.headers_mut().insert("cookie", guest.parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let mut tab = Client::from(ws);
        assert_eq!(vote(&mut tab, poll, json!([2])).await["type"], "ack");
    }
    let counts = server.state.store.poll_counts(poll, 3).await.unwrap();
    assert_eq!(counts.voters, 2, "Ada and one guest");
}

#[tokio::test]
async fn tallies_are_whole_numbered_and_spaced_however_fast_votes_come() {
    let server = TestServer::start().await;
    let mut maker = server.web("maker").await;
    let poll = make_poll(&mut maker, json!({"question": "q", "options": ["a", "b"], "anonymous": true})).await;
    let mut watcher = server.web("watcher").await;
    follow(&mut watcher, poll).await;
    let first = watcher.next_of("tally").await;

    // The watcher reads as tallies come, noting when each arrives.
    let reading = tokio::spawn(async move {
        let mut tallies = vec![first];
        let mut arrivals = Vec::new();
        loop {
            let tally = watcher.next_of("tally").await;
            arrivals.push(tokio::time::Instant::now());
            let done = tally["voters"] == 60;
            tallies.push(tally);
            if done {
                return (tallies, arrivals);
            }
        }
    });
    // Sixty guests vote as fast as they can.
    let mut voters = Vec::new();
    for i in 0..60 {
        voters.push(server.web(&format!("v{i}")).await);
    }
    let started = tokio::time::Instant::now();
    let mut votes = Vec::new();
    for (i, mut voter) in voters.into_iter().enumerate() {
        votes.push(tokio::spawn(async move { vote(&mut voter, poll, json!([i % 2])).await }));
    }
    for answer in votes {
        assert_eq!(answer.await.unwrap()["type"], "ack");
    }
    let (tallies, arrivals) = reading.await.unwrap();
    let elapsed = started.elapsed();
    let last = tallies.last().unwrap();
    assert_eq!(last["counts"], json!([30, 30]), "the last tally is whole");
    let versions: Vec<u64> = tallies.iter().map(|t| t["version"].as_u64().unwrap()).collect();
    assert!(versions.windows(2).all(|w| w[1] > w[0]), "versions rise: {versions:?}");
    // At most one tally per 150 ms window, plus the first at once.
    let most = elapsed.as_millis() as usize / 150 + 2;
    assert!(tallies.len() - 1 <= most, "{} tallies in {elapsed:?}", tallies.len() - 1);
    for pair in arrivals.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(100),
            "tallies at least 100 ms apart: {:?}",
            pair[1] - pair[0]
        );
    }
}

#[tokio::test]
async fn a_poll_closes_at_its_time_and_turnout_follows_who_is_online() {
    let server = TestServer::start().await;
    let mut ada = server.web("ada").await;
    let mut bob = server.web("bob").await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let spec = json!({"question": "Quick?", "options": ["y", "n"], "closes_at": now + 4000});
    let poll = make_poll(&mut ada, spec).await;
    for (client, name) in [(&mut ada, "ada"), (&mut bob, "bob")] {
        client.send(json!({"type": "subscribe", "id": "here", "topic": LOBBY, "present": true})).await;
        assert_eq!(reply_to(client, "here").await["type"], "subscribed");
        // `subscribed` comes before the history is replayed; one counts as present after it.
        loop {
            let presence = client.next_of("presence").await;
            let online = presence["online"].as_array().unwrap();
            if online.iter().any(|who| who.as_str().unwrap().starts_with(name)) {
                break;
            }
        }
    }
    assert_eq!(vote(&mut ada, poll, json!([0])).await["type"], "ack");
    let mut watcher = server.web("watcher").await;
    let first = follow(&mut watcher, poll).await;
    let names = |frame: &Value| (frame["voters"].clone(), frame["online"].clone(), frame["voted_online"].clone());
    assert_eq!(names(&first["turnout"]), (json!(1), json!(2), json!(1)), "{first}");
    // Bob leaves: the turnout says so within a couple of seconds.
    bob.close().await;
    loop {
        let turnout = watcher.next_of("turnout").await;
        if turnout["online"] == 1 {
            assert_eq!(names(&turnout), (json!(1), json!(1), json!(1)));
            break;
        }
    }
    // Its time comes: closed, with the final tally, to everyone.
    let closed = watcher.next_of("poll_closed").await;
    assert!(closed["closed_at"].as_i64().unwrap() >= now + 4000);
    assert_eq!(watcher.next_of("tally").await["counts"], json!([1, 0]));
    assert_eq!(vote(&mut ada, poll, json!([1])).await["code"], "poll_closed");
}

#[tokio::test]
async fn scripts_use_the_http_api_with_a_token() {
    let (server, sessions) = server_with_users(&["ada", "bob"]).await;
    let mut tokens = Vec::new();
    for session in &sessions {
        let created = server_fn(server.addr, "create_token", "name=script", Some(session)).await;
        let created: Value = serde_json::from_str(&created.body).unwrap();
        tokens.push(format!("Bearer {}", created["secret"].as_str().unwrap()));
    }
    let json_type = ("Content-Type", "application/json");
    let body = json!({"question": "Ship it?", "options": ["yes", "no"], "show_results": "voted"}).to_string();
    let none = http(server.addr, "POST", "/api/rooms/lobby/polls", &[json_type], &body).await;
    assert_eq!(none.status, 401);
    let made =
        http(server.addr, "POST", "/api/rooms/lobby/polls", &[json_type, ("Authorization", &tokens[0])], &body).await;
    assert_eq!(made.status, 201, "{}", made.body);
    let made: Value = serde_json::from_str(&made.body).unwrap();
    let poll = made["poll"]["id"].as_i64().unwrap();
    assert!(made["offset"].as_u64().unwrap() >= 1);
    let unknown =
        http(server.addr, "POST", "/api/rooms/nowhere/polls", &[json_type, ("Authorization", &tokens[0])], &body).await;
    assert_eq!(unknown.status, 404);
    let bad = json!({"question": "", "options": ["a", "b"]}).to_string();
    let bad =
        http(server.addr, "POST", "/api/rooms/lobby/polls", &[json_type, ("Authorization", &tokens[0])], &bad).await;
    assert_eq!((bad.status, bad.body.contains("invalid_field")), (400, true), "{}", bad.body);

    // A follower over `/ws` with the token.
    let mut follower = Client::connect(&server.url(&format!("/ws?token={}", &tokens[1][7..]))).await;
    follow(&mut follower, poll).await;

    let read = |auth: String| {
        let addr = server.addr;
        async move {
            let response = http(addr, "GET", &format!("/api/polls/{poll}"), &[("Authorization", &auth)], "").await;
            assert_eq!(response.status, 200, "{}", response.body);
            serde_json::from_str::<Value>(&response.body).unwrap()
        }
    };
    assert_eq!(read(tokens[1].clone()).await["tally"], Value::Null, "hidden until bob votes");
    let vote_path = format!("/api/polls/{poll}/votes");
    let voted =
        http(server.addr, "POST", &vote_path, &[json_type, ("Authorization", &tokens[1])], r#"{"choices":[0]}"#).await;
    assert_eq!((voted.status, voted.body.as_str()), (200, r#"{"choices":[0]}"#));
    let refused =
        http(server.addr, "POST", &vote_path, &[json_type, ("Authorization", &tokens[1])], r#"{"choices":[9]}"#).await;
    assert_eq!(refused.status, 400);
    assert_eq!(read(tokens[1].clone()).await["tally"]["counts"], json!([1, 0]));
    // Bob's `/ws` connection hears that he voted, asks for the results, and follows them.
    assert_eq!(follower.next_of("voted").await["choices"], json!([0]));
    follower.send(json!({"type": "results", "id": "see", "topic": format!("poll:{poll}")})).await;
    assert_eq!(follower.next_of("tally").await["counts"], json!([1, 0]));

    let close_path = format!("/api/polls/{poll}/close");
    let forbidden = http(server.addr, "POST", &close_path, &[("Authorization", &tokens[1])], "").await;
    assert_eq!(forbidden.status, 403);
    let closed = http(server.addr, "POST", &close_path, &[("Authorization", &tokens[0])], "").await;
    assert_eq!(closed.status, 200, "{}", closed.body);
    let closed: Value = serde_json::from_str(&closed.body).unwrap();
    assert!(closed["poll"]["closed_at"].as_i64().is_some());
    assert_eq!(closed["tally"]["counts"], json!([1, 0]), "the creator sees the counts once closed");
    let twice = http(server.addr, "POST", &close_path, &[("Authorization", &tokens[0])], "").await;
    assert_eq!(twice.status, 409);

    let csv =
        http(server.addr, "GET", &format!("/api/polls/{poll}/results.csv"), &[("Authorization", &tokens[0])], "").await;
    assert_eq!(csv.status, 200);
    assert_eq!(csv.body, "option,votes,voters\nyes,1,bob\nno,0,\n");
    let missing = http(server.addr, "GET", "/api/polls/99999", &[("Authorization", &tokens[0])], "").await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn the_plain_form_votes_without_javascript() {
    let (server, sessions) = server_with_users(&["ada"]).await;
    let mut ada = server.web_as(&sessions[0]).await;
    let poll = make_poll(&mut ada, json!({"question": "q", "options": ["a", "b", "c"], "max_choices": 2})).await;
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let path = format!("/polls/{poll}/vote");
    let voted = http(server.addr, "POST", &path, &[form, ("Cookie", &cookie(&sessions[0]))], "choice=0&choice=2").await;
    assert_eq!((voted.status, voted.header("location")), (303, Some(format!("/polls/{poll}").as_str())));
    assert_eq!(server.state.store.choices_of(poll, "u:2").await.unwrap(), vec![0, 2]);
    let many =
        http(server.addr, "POST", &path, &[form, ("Cookie", &cookie(&sessions[0]))], "choice=0&choice=1&choice=2")
            .await;
    assert_eq!(many.header("location"), Some(format!("/polls/{poll}?error=too_many_choices").as_str()));
    let foreign = [form, ("Cookie", &cookie(&sessions[0])), ("Origin", "http://evil.example")];
    assert_eq!(http(server.addr, "POST", &path, &foreign, "choice=1").await.status, 403);
    assert_eq!(server.state.store.choices_of(poll, "u:2").await.unwrap(), vec![0, 2], "unchanged");

    // The poll's own page is in the first HTML, with the form.
    let page = http(server.addr, "GET", &format!("/polls/{poll}"), &[("Cookie", &cookie(&sessions[0]))], "").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&format!("action=\"/polls/{poll}/vote\"")), "{}", page.body);
}
