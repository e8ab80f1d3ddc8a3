//! Sensors over real sockets: the HTTP API and its credentials, validation (all or nothing),
//! the CSV export, live `readings` frames, the tutorial's `/ws/sensor_data/`, rollups past
//! the retention, and who may change what.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use support::{http, server_fn, Client, HttpResponse, TestServer};
use switchboard::store::now_ms;
use tokio_tungstenite::tungstenite::Message;

const MINUTE: i64 = 60_000;

/// A server with an admin (`root`, the first user) and two users; returns their sessions.
async fn server_with_users(guest_access: bool) -> (TestServer, String, String, String) {
    let server = TestServer::start_with(|c| {
        c.guest_access = guest_access;
        c.sensor_batch_max = 5;
        c.sensor_body_max_bytes = 2000;
    })
    .await;
    let root = server.sign_up("root").await;
    let alice = server.sign_up("alice").await;
    let bob = server.sign_up("bob").await;
    (server, root, alice, bob)
}

/// Create a sensor as the holder of `session`; its id and token.
async fn create_sensor(server: &TestServer, session: &str, form: &str) -> (i64, String) {
    let created = server_fn(server.addr, "create_sensor", form, Some(session)).await;
    assert_eq!(created.status, 200, "create_sensor: {}", created.body);
    let created: Value = serde_json::from_str(&created.body).unwrap();
    (created["sensor"]["id"].as_i64().unwrap(), created["token"].as_str().unwrap().to_owned())
}

/// A user API token for the holder of `session`.
async fn api_token(server: &TestServer, session: &str) -> String {
    let created = server_fn(server.addr, "create_token", "name=device", Some(session)).await;
    let created: Value = serde_json::from_str(&created.body).unwrap();
    created["secret"].as_str().unwrap().to_owned()
}

async fn post(server: &TestServer, sensor: i64, token: Option<&str>, body: &str) -> HttpResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    http(server.addr, "POST", &format!("/api/sensors/{sensor}/readings"), &headers, body).await
}

fn error_code(response: &HttpResponse) -> String {
    let body: Value = serde_json::from_str(&response.body).unwrap_or_else(|_| panic!("JSON: {}", response.body));
    body["error"]["code"].as_str().unwrap().to_owned()
}

/// Undo HTTP/1.1 chunked transfer encoding.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    out
}

/// The CSV export's lines (header included), as the holder of `session`.
async fn csv(server: &TestServer, sensor: i64, session: &str, query: &str) -> Vec<String> {
    let cookie = format!("switchboard_session={session}");
    let path = format!("/api/sensors/{sensor}/readings.csv{query}");
    let response = http(server.addr, "GET", &path, &[("Cookie", cookie.as_str())], "").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(response.header("content-type").unwrap().starts_with("text/csv"));
    assert!(response.header("content-disposition").unwrap().starts_with("attachment"));
    let body = if response.header("transfer-encoding") == Some("chunked") {
        dechunk(&response.body)
    } else {
        response.body.clone()
    };
    body.lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn the_http_api_takes_the_sensors_token_or_its_owners_and_nothing_else() {
    let (server, root, alice, bob) = server_with_users(false).await;
    let (hall, hall_token) = create_sensor(&server, &alice, "name=hall&unit=C").await;
    let (_, cellar_token) = create_sensor(&server, &bob, "name=cellar&unit=C").await;
    let alice_api = api_token(&server, &alice).await;
    let bob_api = api_token(&server, &bob).await;
    let root_api = api_token(&server, &root).await;
    let body = r#"{"value": 1}"#;

    let none = post(&server, hall, None, body).await;
    assert_eq!((none.status, error_code(&none).as_str()), (401, "unauthorized"));
    let wrong = post(&server, hall, Some("sbs_0000"), body).await;
    assert_eq!((wrong.status, error_code(&wrong).as_str()), (401, "unauthorized"));
    let other_sensor = post(&server, hall, Some(&cellar_token), body).await;
    assert_eq!((other_sensor.status, error_code(&other_sensor).as_str()), (403, "forbidden"));
    let not_owner = post(&server, hall, Some(&bob_api), body).await;
    assert_eq!((not_owner.status, error_code(&not_owner).as_str()), (403, "forbidden"));
    let session_only = http(
        server.addr,
        "POST",
        &format!("/api/sensors/{hall}/readings"),
        &[("Cookie", format!("switchboard_session={alice}").as_str())],
        body,
    )
    .await;
    assert_eq!(session_only.status, 401, "a cookie is no device credential");
    assert_eq!(csv(&server, hall, &alice, "").await.len(), 1, "nothing was stored");

    for token in [&hall_token, &alice_api, &root_api] {
        let ok = post(&server, hall, Some(token), body).await;
        assert_eq!(ok.status, 200, "{}", ok.body);
        assert_eq!(serde_json::from_str::<Value>(&ok.body).unwrap(), json!({"accepted": 1}));
    }
    assert_eq!(csv(&server, hall, &bob, "").await.len(), 4, "any signed-in user may read");

    let unknown = post(&server, 999, Some(&hall_token), body).await;
    assert_eq!((unknown.status, error_code(&unknown).as_str()), (404, "unknown_sensor"));

    // Rotating the token ends the old one at once.
    let rotated = server_fn(server.addr, "rotate_sensor_token", &format!("id={hall}"), Some(&alice)).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new_token: String = serde_json::from_str(&rotated.body).unwrap();
    assert_eq!(post(&server, hall, Some(&hall_token), body).await.status, 401);
    assert_eq!(post(&server, hall, Some(&new_token), body).await.status, 200);
}

#[tokio::test]
async fn single_and_batch_readings_are_stored_and_exported_as_csv_in_time_order() {
    let (server, _root, alice, _bob) = server_with_users(false).await;
    let (id, token) = create_sensor(&server, &alice, "name=Hall&unit=%C2%B0C&range_min=-40&range_max=85").await;
    let t: i64 = 1_764_000_000_000;
    let single = post(&server, id, Some(&token), &format!(r#"{{"value": 21.5, "ts": {t}}}"#)).await;
    assert_eq!(single.body, r#"{"accepted":1}"#);
    let batch = format!(r#"[{{"value": 22, "ts": {}}}, {{"value": -3.25, "ts": {}}}]"#, t + 2000, t + 1000);
    assert_eq!(post(&server, id, Some(&token), &batch).await.body, r#"{"accepted":2}"#);
    let wrapped =
        format!(r#"{{"readings": [{{"value": 85, "ts": {}}}, {{"value": -40, "ts": {}}}]}}"#, t + 3000, t + 4000);
    assert_eq!(post(&server, id, Some(&token), &wrapped).await.body, r#"{"accepted":2}"#);
    let before = now_ms();
    assert_eq!(post(&server, id, Some(&token), r#"{"value": 0.5}"#).await.status, 200);

    let lines = csv(&server, id, &alice, "").await;
    assert_eq!(
        lines[..6],
        [
            "timestamp,value,min,max,count",
            "2025-11-24T16:00:00.000Z,21.5,,,",
            "2025-11-24T16:00:01.000Z,-3.25,,,",
            "2025-11-24T16:00:02.000Z,22,,,",
            "2025-11-24T16:00:03.000Z,85,,,",
            "2025-11-24T16:00:04.000Z,-40,,,",
        ]
    );
    assert_eq!(lines.len(), 7);
    assert!(lines[6].ends_with(",0.5,,,"), "a reading without ts is taken as now: {}", lines[6]);
    let stored = server
        .state
        .get::<switchboard::sensors::server::Sensors>()
        .store()
        .raw_readings(id, before - 1000, now_ms() + 1, 10)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].ts >= before && stored[0].ts <= now_ms());

    let window = csv(&server, id, &alice, &format!("?from={}&to={}", t + 1000, t + 3000)).await;
    assert_eq!(window.len(), 3, "from is inclusive, to exclusive: {window:?}");

    // The export needs a signed-in user; bad ranges are refused.
    let anonymous = http(server.addr, "GET", &format!("/api/sensors/{id}/readings.csv"), &[], "").await;
    assert_eq!((anonymous.status, error_code(&anonymous).as_str()), (401, "unauthorized"));
    let cookie = format!("switchboard_session={alice}");
    for query in ["?from=x", &format!("?from={t}&to={t}")] {
        let path = format!("/api/sensors/{id}/readings.csv{query}");
        let bad = http(server.addr, "GET", &path, &[("Cookie", cookie.as_str())], "").await;
        assert_eq!((bad.status, error_code(&bad).as_str()), (400, "invalid_field"), "{query}");
    }
    let missing = http(server.addr, "GET", "/api/sensors/999/readings.csv", &[("Cookie", cookie.as_str())], "").await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn every_bad_input_is_refused_with_its_error_and_stores_nothing() {
    let (server, _root, alice, _bob) = server_with_users(false).await;
    let (id, token) = create_sensor(&server, &alice, "name=hall&unit=C&range_min=-40&range_max=85").await;
    let mut watcher = server.web_as(&alice).await;
    assert_eq!(watcher.subscribe(&format!("sensor:{id}"), None).await["type"], "subscribed");
    let now = now_ms();
    let future = now + 6 * MINUTE;
    let cases: Vec<(String, u16, &str, Option<u64>)> = vec![
        (r#"{"value": "NaN"}"#.into(), 400, "invalid_field", Some(0)),
        (r#"{"value": NaN}"#.into(), 400, "malformed", None),
        (r#"{"value": "21.5"}"#.into(), 400, "invalid_field", Some(0)),
        (r#"{"value": null}"#.into(), 400, "invalid_field", Some(0)),
        (r#"{"ts": 1764000000000}"#.into(), 400, "invalid_field", Some(0)),
        (r#"{"value": 85.01}"#.into(), 400, "out_of_range", Some(0)),
        (r#"{"value": -41}"#.into(), 400, "out_of_range", Some(0)),
        (format!(r#"{{"value": 1, "ts": {future}}}"#), 400, "out_of_range", Some(0)),
        (r#"{"value": 1, "ts": 1764000000}"#.into(), 400, "out_of_range", Some(0)),
        (r#"{"value": 1, "ts": "yesterday"}"#.into(), 400, "invalid_field", Some(0)),
        (r#"[{"value": 1}, {"value": 2}, {"value": "x"}, {"value": 4}]"#.into(), 400, "invalid_field", Some(2)),
        (r#"[{"value": 1}, {"value": 2}, {"value": 3}, {"value": 400}]"#.into(), 400, "out_of_range", Some(3)),
        (r#"[]"#.into(), 400, "invalid_field", None),
        (r#"{"value": 1"#.into(), 400, "malformed", None),
        ("".into(), 400, "malformed", None),
        (r#""hello""#.into(), 400, "invalid_field", None),
        (format!("[{}]", [r#"{"value": 1}"#; 6].join(",")), 413, "too_large", None),
        (format!(r#"{{"value": 1, "pad": "{}"}}"#, "x".repeat(3000)), 413, "too_large", None),
    ];
    for (body, status, code, index) in cases {
        let response = post(&server, id, Some(&token), &body).await;
        let shown = &body[..body.len().min(80)];
        assert_eq!((response.status, error_code(&response).as_str()), (status, code), "{shown} → {}", response.body);
        let error: Value = serde_json::from_str(&response.body).unwrap();
        assert_eq!(error["error"]["index"].as_u64(), index, "{shown} → {}", response.body);
        assert!(!error["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(csv(&server, id, &alice, "").await.len(), 1, "nothing was stored");
    assert!(watcher.drain().await.iter().all(|f| f["type"] != "readings"), "nothing was broadcast");
    // The limit is inclusive.
    let five = format!("[{}]", [r#"{"value": 1}"#; 5].join(","));
    assert_eq!(post(&server, id, Some(&token), &five).await.body, r#"{"accepted":5}"#);
}

#[tokio::test]
async fn web_subscribers_get_the_latest_reading_then_every_batch_in_one_frame() {
    let (server, _root, alice, bob) = server_with_users(true).await;
    let (id, token) = create_sensor(&server, &alice, "name=hall&range_min=0&range_max=100").await;
    let topic = format!("sensor:{id}");
    let mut guest = server.web("visitor").await;
    assert_eq!(guest.subscribe(&topic, None).await["type"], "subscribed");
    let t = now_ms() - 10_000;
    let batch =
        format!(r#"[{{"value": 1, "ts": {t}}}, {{"value": 2, "ts": {}}}, {{"value": 3, "ts": {}}}]"#, t + 1, t + 2);
    assert_eq!(post(&server, id, Some(&token), &batch).await.status, 200);
    let frame = guest.next_of("readings").await;
    assert_eq!(
        frame,
        json!({"type": "readings", "topic": topic, "readings": [
            {"ts": t, "value": 1.0}, {"ts": t + 1, "value": 2.0}, {"ts": t + 2, "value": 3.0}
        ]})
    );

    // A late subscriber first gets the latest reading by time.
    let mut late = server.web("late").await;
    assert_eq!(late.subscribe(&topic, None).await["type"], "subscribed");
    assert_eq!(late.next_of("readings").await["readings"], json!([{"ts": t + 2, "value": 3.0}]));

    // The owner posts over the web protocol and gets an ack once it is durable.
    let mut owner = server.web_as(&alice).await;
    owner.send(json!({"type": "reading", "id": "w1", "sensor": id, "readings": [{"value": 42.5}]})).await;
    let ack = owner.next_of("ack").await;
    assert_eq!((ack["id"].as_str(), ack["topic"].as_str()), (Some("w1"), Some(topic.as_str())));
    assert_eq!(late.next_of("readings").await["readings"][0]["value"], 42.5);
    assert_eq!(csv(&server, id, &alice, "").await.len(), 5);

    // Others may not; bad frames get their error; nothing is stored.
    let other = server.web_as(&bob).await;
    let mut clients = [other, guest, owner];
    let (bob_ws, guest_ws, owner_ws) = (0, 1, 2);
    let refusals = [
        (bob_ws, json!({"type": "reading", "id": "b", "sensor": id, "readings": [{"value": 1}]}), "forbidden"),
        (guest_ws, json!({"type": "reading", "id": "g", "sensor": id, "readings": [{"value": 1}]}), "forbidden"),
        (owner_ws, json!({"type": "reading", "id": "u", "sensor": 999, "readings": [{"value": 1}]}), "unknown_sensor"),
        (
            owner_ws,
            json!({"type": "reading", "id": "r", "sensor": id, "readings": [{"value": 1}, {"value": 101}]}),
            "out_of_range",
        ),
        (
            owner_ws,
            json!({"type": "reading", "id": "s", "sensor": id, "readings": [{"value": 1}, {"value": "2"}]}),
            "invalid_field",
        ),
        (owner_ws, json!({"type": "reading", "id": "n", "sensor": id, "readings": [{"value": null}]}), "invalid_field"),
        (
            owner_ws,
            json!({"type": "reading", "id": "f", "sensor": id, "readings": [{"value": 1, "ts": now_ms() + 6 * MINUTE}]}),
            "out_of_range",
        ),
        (owner_ws, json!({"type": "reading", "id": "e", "sensor": id, "readings": []}), "invalid_field"),
        (
            owner_ws,
            json!({"type": "reading", "id": "l", "sensor": id, "readings": vec![json!({"value": 1}); 6]}),
            "too_large",
        ),
    ];
    for (who, frame, code) in refusals {
        let client = &mut clients[who];
        client.send(frame.clone()).await;
        let error = client.next_of("error").await;
        assert_eq!((error["code"].as_str(), &error["id"]), (Some(code), &frame["id"]), "{frame} → {error}");
    }
    let mut indexed = server.web_as(&alice).await;
    indexed.send(json!({"type": "reading", "id": "i", "sensor": id, "readings": [{"value": 1}, {"value": "2"}]})).await;
    assert!(indexed.next_of("error").await["message"].as_str().unwrap().contains("reading 1"));
    assert_eq!(csv(&server, id, &alice, "").await.len(), 5, "nothing more was stored");
    assert!(late.drain().await.iter().all(|f| f["type"] != "readings"), "nothing was broadcast");
    assert_eq!(late.subscribe("sensor:999", None).await["code"], "unknown_sensor");
    assert_eq!(late.subscribe("sensor:01", None).await["code"], "unknown_topic");
}

#[tokio::test]
async fn the_tutorial_sensor_endpoint_echoes_to_every_client_and_sees_http_readings() {
    let (server, _root, alice, _bob) = server_with_users(true).await;
    let (hall, hall_token) = create_sensor(&server, &alice, "name=hall&range_min=0&range_max=50").await;
    let mut one = Client::connect(&server.url("/ws/sensor_data/")).await;
    let mut two = Client::connect(&server.url("/ws/sensor_data/")).await;
    let mut web = server.web("w").await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    // In guest mode an unknown name registers a sensor owned by nobody.
    one.send(json!({"sensor_id": "garden", "sensor_value": 12.5})).await;
    assert_eq!(two.next().await, json!({"sensor_id": "garden", "sensor_value": 12.5}));
    assert_eq!(one.next().await, json!({"sensor_id": "garden", "sensor_value": 12.5}), "the sender gets it too");
    let listed = server_fn(server.addr, "list_sensors", "", Some(&alice)).await;
    let listed: Value = serde_json::from_str(&listed.body).unwrap();
    let garden = listed.as_array().unwrap().iter().find(|s| s["info"]["name"] == "garden").unwrap().clone();
    assert_eq!(garden["owner"], Value::Null);
    assert_eq!(garden["latest"]["value"], 12.5);
    let garden_id = garden["info"]["id"].as_i64().unwrap();
    assert_eq!(web.subscribe(&format!("sensor:{garden_id}"), None).await["type"], "subscribed");
    web.next_of("readings").await;

    // The id as a number, or as a string, or the name in another case: echoed as written.
    for sensor_id in [json!(garden_id), json!(garden_id.to_string()), json!("GARDEN")] {
        one.send(json!({"sensor_id": sensor_id, "sensor_value": 7})).await;
        assert_eq!(two.next().await, json!({"sensor_id": sensor_id, "sensor_value": 7}));
        assert_eq!(one.next().await, json!({"sensor_id": sensor_id, "sensor_value": 7}));
        assert_eq!(web.next_of("readings").await["readings"][0]["value"], 7.0);
    }
    assert_eq!(csv(&server, garden_id, &alice, "").await.len(), 5);

    // Readings from HTTP reach the tutorial's clients with the integer id.
    assert_eq!(post(&server, hall, Some(&hall_token), r#"[{"value": 20.5}, {"value": 21}]"#).await.status, 200);
    assert_eq!(two.next().await, json!({"sensor_id": hall, "sensor_value": 20.5}));
    assert_eq!(two.next().await, json!({"sensor_id": hall, "sensor_value": 21.0}));
    assert_eq!(one.next().await, json!({"sensor_id": hall, "sensor_value": 20.5}));
    assert_eq!(one.next().await, json!({"sensor_id": hall, "sensor_value": 21.0}));

    // Refused: an unknown id, someone else's sensor, bad values. Nothing is stored or sent.
    let refusals = [
        (json!({"sensor_id": 999, "sensor_value": 1}), "unknown_sensor"),
        (json!({"sensor_id": "999", "sensor_value": 1}), "unknown_sensor"),
        (json!({"sensor_id": hall, "sensor_value": 1}), "forbidden"),
        (json!({"sensor_id": "garden", "sensor_value": "NaN"}), "invalid_field"),
        (json!({"sensor_id": "garden", "sensor_value": null}), "invalid_field"),
        (json!({"sensor_id": "garden"}), "invalid_field"),
        (json!({"sensor_id": true, "sensor_value": 1}), "invalid_field"),
        (json!({"sensor_id": "12345", "sensor_value": 1}), "unknown_sensor"),
    ];
    for (frame, code) in refusals {
        one.send(frame.clone()).await;
        assert_eq!(one.next().await["error"]["code"], code, "{frame}");
    }
    one.send_raw(Message::text(r#"{"sensor_id": "garden", "sensor_value": NaN}"#)).await;
    assert_eq!(one.next().await["error"]["code"], "malformed");
    two.send(json!({"sensor_id": "x", "sensor_value": 1})).await;
    let registered = two.next().await;
    assert_eq!(registered, json!({"sensor_id": "x", "sensor_value": 1}), "nothing else reached the other client");
    assert_eq!(csv(&server, garden_id, &alice, "").await.len(), 5, "nothing more was stored");
    assert_eq!(csv(&server, hall, &alice, "").await.len(), 3);
}

#[tokio::test]
async fn without_guest_mode_the_tutorial_endpoint_needs_a_token_and_registers_nothing() {
    let (server, _root, alice, _bob) = server_with_users(false).await;
    let (hall, _) = create_sensor(&server, &alice, "name=hall").await;
    assert_eq!(server.upgrade_status("/ws/sensor_data/", None).await, 401);
    let token = api_token(&server, &alice).await;
    let mut device = Client::connect(&server.url(&format!("/ws/sensor_data/?token={token}"))).await;
    device.send(json!({"sensor_id": "garden", "sensor_value": 1})).await;
    assert_eq!(device.next().await["error"]["code"], "unknown_sensor");
    device.send(json!({"sensor_id": "hall", "sensor_value": 3})).await;
    assert_eq!(device.next().await, json!({"sensor_id": "hall", "sensor_value": 3}));
    let listed = server_fn(server.addr, "list_sensors", "", Some(&alice)).await;
    let listed: Value = serde_json::from_str(&listed.body).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "no sensor was registered: {listed}");
    assert_eq!(listed[0]["info"]["id"], hall);
    assert_eq!(listed[0]["can_manage"], true);
}

#[tokio::test]
async fn old_readings_are_rolled_up_per_minute_and_stay_in_the_history_and_the_csv() {
    let (server, _root, alice, _bob) = server_with_users(false).await;
    let (id, token) = create_sensor(&server, &alice, "name=hall").await;
    let now = now_ms();
    let m0 = (now - 3 * 86_400_000) / MINUTE * MINUTE;
    let m1 = m0 + MINUTE;
    let old = [(m0, 1.0), (m0 + 10, 2.0), (m0 + 59_999, 6.0), (m0 + 30_000, 3.0), (m1 + 5, 10.0), (m1 + 6, 20.0)];
    let body: Vec<Value> = old.iter().map(|(ts, value)| json!({"ts": ts, "value": value})).collect();
    assert_eq!(post(&server, id, Some(&token), &Value::from(body[..5].to_vec()).to_string()).await.status, 200);
    assert_eq!(post(&server, id, Some(&token), &json!([body[5]]).to_string()).await.status, 200);
    assert_eq!(post(&server, id, Some(&token), &json!({"value": 99, "ts": now - 1000}).to_string()).await.status, 200);

    let done = server.state.get::<switchboard::sensors::server::Sensors>().compact(now_ms()).await.unwrap();
    assert_eq!((done.readings, done.minutes), (6, 2));
    let store = &server.state.store;
    assert_eq!(
        store.history_counts(id, 0, i64::MAX).await.unwrap(),
        (1, 2),
        "old raw rows are gone, the recent one stays"
    );
    let lines = csv(&server, id, &alice, "").await;
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[1].split(',').skip(1).collect::<Vec<_>>(), ["3", "1", "6", "4"]);
    assert_eq!(lines[2].split(',').skip(1).collect::<Vec<_>>(), ["15", "10", "20", "2"]);
    assert!(lines[3].ends_with(",99,,,"));

    // A late reading for a rolled-up minute is merged into it at the next compaction.
    assert_eq!(post(&server, id, Some(&token), &json!({"value": 0, "ts": m0 + 1}).to_string()).await.status, 200);
    let again = server.state.get::<switchboard::sensors::server::Sensors>().compact(now_ms()).await.unwrap();
    assert_eq!((again.readings, again.minutes), (1, 1));
    let lines = csv(&server, id, &alice, "").await;
    assert_eq!(lines[1].split(',').skip(1).collect::<Vec<_>>(), ["2.4", "0", "6", "5"]);
    assert_eq!(
        server.state.get::<switchboard::sensors::server::Sensors>().compact(now_ms()).await.unwrap().readings,
        0,
        "compacting twice changes nothing"
    );

    // History over the rolled-up range comes in minute buckets with min, max, average, count.
    let form = format!("id={id}&from_ms={}&to_ms={}&max_points=1000", m0 - MINUTE, now + 1);
    let history = server_fn(server.addr, "sensor_history", &form, Some(&alice)).await;
    assert_eq!(history.status, 200, "{}", history.body);
    let history: Value = serde_json::from_str(&history.body).unwrap();
    assert!(history["bucket_ms"].as_i64().unwrap() >= MINUTE);
    let points = history["points"].as_array().unwrap();
    let total: i64 = points.iter().map(|p| p["count"].as_i64().unwrap()).sum();
    assert_eq!(total, 8, "every reading is counted once: {points:?}");
    assert_eq!(points[0]["min"], 0.0);
    assert_eq!(points.last().unwrap()["max"], 99.0);

    // Within the retention and under max_points: the raw readings themselves.
    let form = format!("id={id}&from_ms={}&to_ms={}&max_points=1000", now - 60_000, now + 1);
    let raw: Value =
        serde_json::from_str(&server_fn(server.addr, "sensor_history", &form, Some(&alice)).await.body).unwrap();
    assert_eq!(
        raw,
        json!({"points": [{"ts": now - 1000, "value": 99.0, "min": 99.0, "max": 99.0, "count": 1}], "bucket_ms": 0})
    );
}

#[tokio::test]
async fn more_raw_readings_than_max_points_come_downsampled() {
    let (server, _root, alice, _bob) = server_with_users(false).await;
    let (id, token) = create_sensor(&server, &alice, "name=hall").await;
    let start = (now_ms() - 10 * MINUTE) / MINUTE * MINUTE;
    let body: Vec<Value> = (0..5).map(|i| json!({"ts": start + i * 1000, "value": i})).collect();
    assert_eq!(post(&server, id, Some(&token), &Value::from(body).to_string()).await.status, 200);
    let body: Vec<Value> = (0..4).map(|i| json!({"ts": start + 5 * MINUTE + i, "value": 10 + i})).collect();
    assert_eq!(post(&server, id, Some(&token), &Value::from(body).to_string()).await.status, 200);
    let form = format!("id={id}&from_ms={start}&to_ms={}&max_points=2", start + 10 * MINUTE);
    let history: Value =
        serde_json::from_str(&server_fn(server.addr, "sensor_history", &form, Some(&alice)).await.body).unwrap();
    assert_eq!(history["bucket_ms"], 5 * MINUTE);
    assert_eq!(
        history["points"],
        json!([
            {"ts": start, "value": 2.0, "min": 0.0, "max": 4.0, "count": 5},
            {"ts": start + 5 * MINUTE, "value": 11.5, "min": 10.0, "max": 13.0, "count": 4},
        ])
    );
    let bad =
        server_fn(server.addr, "sensor_history", &format!("id={id}&from_ms=5&to_ms=5&max_points=2"), Some(&alice))
            .await;
    assert_ne!(bad.status, 200);
}

#[tokio::test]
async fn only_the_owner_or_an_admin_changes_deletes_or_rotates_a_sensor() {
    let (server, root, alice, bob) = server_with_users(true).await;
    let (id, token) = create_sensor(&server, &alice, "name=hall&alert_low=5&alert_high=30").await;
    for (name, form) in [
        ("delete_sensor", format!("id={id}")),
        ("rotate_sensor_token", format!("id={id}")),
        ("update_sensor", format!("id={id}&alert_low=1")),
    ] {
        let refused = server_fn(server.addr, name, &form, Some(&bob)).await;
        assert_ne!(refused.status, 200, "{name}: {}", refused.body);
        assert!(refused.body.contains("owner"), "{name}: {}", refused.body);
        let anonymous = server_fn(server.addr, name, &form, None).await;
        assert_ne!(anonymous.status, 200, "{name} without a session");
    }
    assert_eq!(post(&server, id, Some(&token), r#"{"value": 1}"#).await.status, 200, "the token still works");
    let sensor: Value =
        serde_json::from_str(&server_fn(server.addr, "get_sensor", &format!("id={id}"), Some(&bob)).await.body)
            .unwrap();
    assert_eq!((sensor["info"]["alert_low"].as_f64(), sensor["can_manage"].as_bool()), (Some(5.0), Some(false)));
    assert_eq!(sensor["owner"], "alice");

    // Guests may look but not create.
    let guest_list = server_fn(server.addr, "list_sensors", "", None).await;
    assert_eq!(guest_list.status, 200, "{}", guest_list.body);
    assert_ne!(server_fn(server.addr, "create_sensor", "name=mine&unit=", None).await.status, 200);

    // Bad settings and taken names are refused.
    for form in ["name=HALL&unit=", "name=42&unit=", "name=x&unit=&range_min=5&range_max=1", "name=&unit="] {
        let refused = server_fn(server.addr, "create_sensor", form, Some(&bob)).await;
        assert_ne!(refused.status, 200, "{form}");
    }

    // An empty numeric field (a form left blank) means none.
    let blank = server_fn(server.addr, "create_sensor", "name=blank&unit=&range_min=&range_max=5", Some(&bob)).await;
    let blank: Value = serde_json::from_str(&blank.body).unwrap();
    assert_eq!((blank["sensor"]["range_min"].clone(), blank["sensor"]["range_max"].as_f64()), (Value::Null, Some(5.0)));

    let updated = server_fn(server.addr, "update_sensor", &format!("id={id}&alert_high=25"), Some(&alice)).await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    let updated: Value = serde_json::from_str(&updated.body).unwrap();
    assert_eq!((updated["alert_low"].clone(), updated["alert_high"].as_f64()), (Value::Null, Some(25.0)));
    let deleted = server_fn(server.addr, "delete_sensor", &format!("id={id}"), Some(&root)).await;
    assert_eq!(deleted.status, 200, "an admin may delete: {}", deleted.body);
    assert_eq!(post(&server, id, Some(&token), r#"{"value": 1}"#).await.status, 404);
    assert_eq!(
        server
            .state
            .get::<switchboard::sensors::server::Sensors>()
            .store()
            .history_counts(id, 0, i64::MAX)
            .await
            .unwrap(),
        (0, 0)
    );
}

#[tokio::test]
async fn concurrent_posts_are_all_stored_and_survive_a_restart() {
    let (server, _root, alice, _bob) = server_with_users(false).await;
    let (id, token) = create_sensor(&server, &alice, "name=hall").await;
    let mut posts = Vec::new();
    for i in 0..20 {
        let (addr, token) = (server.addr, token.clone());
        posts.push(tokio::spawn(async move {
            let auth = format!("Bearer {token}");
            let body = format!(r#"[{{"value": {i}}}, {{"value": {i}.5}}]"#);
            let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
            http(addr, "POST", &format!("/api/sensors/{id}/readings"), &headers, &body).await.status
        }));
    }
    for post in posts {
        assert_eq!(post.await.unwrap(), 200);
    }
    let server = server.restart().await;
    assert_eq!(csv(&server, id, &alice, "").await.len(), 41, "every acknowledged reading was kept");
}

#[tokio::test]
async fn each_sensor_is_rate_limited_with_429_and_nothing_stored_past_the_limit() {
    let server = TestServer::start_with(|c| {
        c.sensor_request_rate = 0.0;
        c.sensor_request_burst = 2.0;
    })
    .await;
    let alice = server.sign_up("alice").await;
    let (hall, token) = create_sensor(&server, &alice, "name=Hall").await;
    let (porch, porch_token) = create_sensor(&server, &alice, "name=Porch").await;
    for value in [1, 2] {
        assert_eq!(post(&server, hall, Some(&token), &format!(r#"{{"value": {value}}}"#)).await.status, 200);
    }
    let refused = post(&server, hall, Some(&token), r#"{"value": 3}"#).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(error_code(&refused), "rate_limited");
    assert_eq!(refused.header("retry-after"), Some("1"));
    // Another sensor has its own allowance.
    assert_eq!(post(&server, porch, Some(&porch_token), r#"{"value": 9}"#).await.status, 200);
    // The refused reading was not stored.
    let lines = csv(&server, hall, &alice, "").await;
    let values: Vec<&str> = lines[1..].iter().filter_map(|l| l.split(',').nth(1)).collect();
    assert_eq!(values, ["1", "2"]);
}

#[tokio::test]
async fn a_reading_frame_retried_after_a_lost_ack_is_stored_once() {
    let (server, _root, alice, _bob) = server_with_users(false).await;
    let (id, _token) = create_sensor(&server, &alice, "name=retry").await;
    let topic = format!("sensor:{id}");
    let mut watcher = server.web_as(&alice).await;
    assert_eq!(watcher.subscribe(&topic, None).await["type"], "subscribed");
    let frame = json!({"type": "reading", "id": "once", "sensor": id, "readings": [{"value": 7}]});

    // The first try is stored; its ack is lost with its connection.
    let mut first = server.web_as(&alice).await;
    first.send(frame.clone()).await;
    assert_eq!(first.next_of("ack").await["duplicate"], false);
    first.close().await;

    // The retry, on a new connection, is acked as a duplicate and stores nothing.
    let mut retry = server.web_as(&alice).await;
    retry.send(frame).await;
    let ack = retry.next_of("ack").await;
    assert_eq!((ack["id"].as_str(), &ack["duplicate"]), (Some("once"), &json!(true)), "{ack}");
    retry.send(json!({"type": "reading", "id": "twice", "sensor": id, "readings": [{"value": 8}]})).await;
    assert_eq!(retry.next_of("ack").await["duplicate"], false);

    assert_eq!(csv(&server, id, &alice, "").await.len(), 1 + 2, "a header and two readings");
    let values: Vec<Value> = watcher
        .drain()
        .await
        .into_iter()
        .filter(|f| f["type"] == "readings")
        .flat_map(|f| f["readings"].as_array().unwrap().clone())
        .map(|r| r["value"].clone())
        .collect();
    assert_eq!(values, [json!(7.0), json!(8.0)], "the retry was not broadcast again");
}

#[tokio::test]
async fn deleting_a_sensor_tells_every_dashboard_and_ends_its_subscriptions() {
    let (server, _root, alice, bob) = server_with_users(false).await;
    let (id, token) = create_sensor(&server, &alice, "name=doomed").await;
    let topic = format!("sensor:{id}");
    // Bob's dashboard hears the list and charts the sensor; another only hears the list; a
    // script only watches the sensor.
    let mut charting = server.web_as(&bob).await;
    assert_eq!(charting.subscribe("sensors", None).await["type"], "subscribed");
    assert_eq!(charting.subscribe(&topic, None).await["type"], "subscribed");
    let mut listing = server.web_as(&bob).await;
    assert_eq!(listing.subscribe("sensors", None).await["type"], "subscribed");
    let mut script = server.web_as(&alice).await;
    assert_eq!(script.subscribe(&topic, None).await["type"], "subscribed");

    assert_eq!(server_fn(server.addr, "delete_sensor", &format!("id={id}"), Some(&alice)).await.status, 200);
    let on_list = json!({"type": "sensor_deleted", "topic": "sensors", "sensor": id});
    let on_sensor = json!({"type": "sensor_deleted", "topic": topic, "sensor": id});
    assert_eq!(listing.next_of("sensor_deleted").await, on_list);
    assert_eq!(script.next_of("sensor_deleted").await, on_sensor);
    let mut heard = vec![charting.next_of("sensor_deleted").await, charting.next_of("sensor_deleted").await];
    heard.sort_by_key(|f| f["topic"].as_str().map(str::to_owned));
    assert_eq!(heard, [on_sensor, on_list]);

    // Nobody is subscribed to the sensor's topic any more.
    for client in [&mut charting, &mut script] {
        client.drain().await;
    }
    assert_eq!(server.state.hub.subscriber_count(&topic), 0);
    assert_eq!(server.state.hub.subscriber_count("sensors"), 2);
    assert_eq!(post(&server, id, Some(&token), r#"{"value": 1}"#).await.status, 404, "the sensor is gone");
}
