//! `switchboard simulate` against a real server without guest access: it makes its own
//! accounts, sensors whose readings are stored at the asked rate within their ranges, walkers
//! that others see on the map; a rerun reuses all of it; bad credentials and an absent server
//! get clear errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use futures_util::StreamExt;
use serde_json::Value;
use support::{server_fn, TestServer};
use switchboard::server::config::{Center, SimulateArgs};
use switchboard::server::simulate::models::distance_m;
use switchboard::server::simulate::{self, Report, SimulateError};
use switchboard::store::now_ms;
use tokio_tungstenite::tungstenite::Message;

const CENTER: Center = Center { latitude: 48.8566, longitude: 2.3522 };
const NAMES: [&str; 3] = ["Greenhouse 1 temperature", "Greenhouse 1 humidity", "Office 1 CO₂"];

fn args(url: String, state: &Path, duration: u64) -> SimulateArgs {
    SimulateArgs {
        url,
        sensors: 3,
        rate: 5.0,
        walkers: 3,
        room: "lobby".into(),
        center: CENTER,
        duration: Some(duration),
        user: "simulator".into(),
        password: None,
        state: state.to_owned(),
    }
}

/// The sensors as `session` sees them, by name.
async fn sensors(server: &TestServer, session: &str) -> BTreeMap<String, Value> {
    let listed = server_fn(server.addr, "list_sensors", "", Some(session)).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let listed: Vec<Value> = serde_json::from_str(&listed.body).unwrap();
    listed.into_iter().map(|s| (s["info"]["name"].as_str().unwrap().to_owned(), s)).collect()
}

/// Every stored reading of a sensor, oldest first, as (ts, value).
async fn readings(server: &TestServer, session: &str, id: i64) -> Vec<(i64, f64)> {
    let form = format!("id={id}&from_ms=0&to_ms={}&max_points=10000", now_ms() + 60_000);
    let history = server_fn(server.addr, "sensor_history", &form, Some(session)).await;
    assert_eq!(history.status, 200, "{}", history.body);
    let history: Value = serde_json::from_str(&history.body).unwrap();
    assert_eq!(history["bucket_ms"], 0, "raw readings");
    history["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["ts"].as_i64().unwrap(), p["value"].as_f64().unwrap()))
        .collect()
}

/// Run the simulator while a signed-in observer watches the lobby's map; the report and the
/// last position seen of each person.
async fn run_watched(
    server: &TestServer,
    observer: &str,
    args: SimulateArgs,
) -> (Report, BTreeMap<String, (f64, f64)>) {
    let mut map = server.web_as(observer).await;
    let subscribed = map.subscribe("location:lobby", None).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    let run = tokio::spawn(simulate::run(args, std::future::pending()));
    tokio::pin!(run);
    let mut seen = BTreeMap::new();
    let report = loop {
        tokio::select! {
            finished = &mut run => break finished.expect("the simulator task").expect("the simulation runs"),
            message = map.ws.next() => match message.expect("the map stays open").expect("a readable frame") {
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    if frame["type"] == "location" {
                        let at = (frame["latitude"].as_f64().unwrap(), frame["longitude"].as_f64().unwrap());
                        seen.insert(frame["user"].as_str().unwrap().to_owned(), at);
                    }
                }
                Message::Close(frame) => panic!("the map was closed: {frame:?}"),
                _ => {}
            },
        }
    };
    map.close().await;
    (report, seen)
}

#[tokio::test]
async fn simulate_feeds_sensors_and_walkers_with_accounts_of_its_own_and_reuses_them_on_a_rerun() {
    let server = TestServer::start_with(|c| c.guest_access = false).await;
    let observer = server.sign_up("observer").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("simulate.json");
    let url = format!("http://{}", server.addr);
    let started = now_ms();

    let (report, seen) = run_watched(&server, &observer, args(url.clone(), &state, 3)).await;
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!((report.created_accounts, report.created_sensors), (4, 3), "{report:?}");
    assert_eq!(report.walkers, ["walker-1", "walker-2", "walker-3"]);

    // The sensors exist under the simulator's account, with their ranges.
    let listed = sensors(&server, &observer).await;
    assert_eq!(listed.keys().map(String::as_str).collect::<Vec<_>>(), {
        let mut names = NAMES.to_vec();
        names.sort();
        names
    });
    let mut stored = 0;
    for name in NAMES {
        let sensor = &listed[name];
        assert_eq!(sensor["owner"], "simulator");
        let info = &sensor["info"];
        let (low, high) = (info["range_min"].as_f64().unwrap(), info["range_max"].as_f64().unwrap());
        assert!(info["alert_high"].is_f64(), "{name} has an alert threshold: {info}");
        // About 3 s at 5 readings a second, each with its own time, 200 ms apart.
        let points = readings(&server, &observer, info["id"].as_i64().unwrap()).await;
        assert!((5..=25).contains(&points.len()), "{name}: {} readings", points.len());
        for pair in points.windows(2) {
            assert!((199..=201).contains(&(pair[1].0 - pair[0].0)), "{name}: readings at {pair:?}");
        }
        for (ts, value) in &points {
            assert!(*ts >= started && *ts <= now_ms(), "{name}: a reading at {ts}, the run started at {started}");
            assert!((low..=high).contains(value), "{name}: {value} outside [{low}, {high}]");
        }
        stored += points.len() as u64;
    }
    assert_eq!(stored, report.readings_sent, "what the simulator counts is what is stored");

    // Three walkers, each seen by a signed-in user near the centre.
    assert_eq!(seen.keys().map(String::as_str).collect::<Vec<_>>(), ["walker-1", "walker-2", "walker-3"]);
    for (walker, at) in &seen {
        let away = distance_m(*at, (CENTER.latitude, CENTER.longitude));
        assert!(away < 1_500.0, "{walker} is {away} m from the centre");
    }
    assert!(report.positions_sent >= 6, "{report:?}");

    // The state file keeps each account's password and token.
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    for account in ["simulator", "walker-1", "walker-2", "walker-3"] {
        assert!(saved["accounts"][account]["token"].as_str().unwrap().starts_with("sbt_"), "{saved}");
    }

    // A rerun with the same state reuses the accounts and the sensors, and adds readings.
    let (again, seen) = run_watched(&server, &observer, args(url, &state, 1)).await;
    assert_eq!(again.errors, 0, "{again:?}");
    assert_eq!((again.created_accounts, again.created_sensors), (0, 0), "{again:?}");
    assert_eq!(seen.len(), 3, "{seen:?}");
    let listed_again = sensors(&server, &observer).await;
    assert_eq!(listed_again.len(), 3, "no new sensors: {:?}", listed_again.keys());
    for name in NAMES {
        assert_eq!(listed_again[name]["info"]["id"], listed[name]["info"]["id"], "{name} is the same sensor");
    }
    let id = listed[NAMES[0]]["info"]["id"].as_i64().unwrap();
    assert!(readings(&server, &observer, id).await.len() > 5, "the rerun fed the same sensor");
}

#[tokio::test]
async fn an_existing_account_with_another_password_or_no_server_gets_a_clear_error() {
    let server = TestServer::start_with(|c| c.guest_access = false).await;
    server.sign_up("simulator").await;
    let dir = tempfile::tempdir().unwrap();
    let mut wrong = args(format!("http://{}", server.addr), &dir.path().join("a.json"), 1);
    wrong.password = Some("not-the-password".into());
    let error = simulate::run(wrong, std::future::pending()).await.expect_err("a wrong password is refused");
    assert!(matches!(error, SimulateError::WrongPassword { .. }), "{error:?}");
    assert!(error.to_string().contains("--password"), "{error}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nowhere = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let error = simulate::run(args(nowhere.clone(), &dir.path().join("b.json"), 1), std::future::pending())
        .await
        .expect_err("no server, no simulation");
    assert!(matches!(error, SimulateError::Unreachable { .. }), "{error:?}");
    assert!(error.to_string().contains(&nowhere), "{error}");
}
