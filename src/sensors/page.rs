//! Sensors: the server functions and shared types of the sensor dashboard.
//!
//! Live readings come over the page's WebSocket (topic `sensor:<id>`: the latest reading
//! first, then `readings` frames); everything else is here. Every function checks who is
//! asking on the server: anyone signed in (or a guest, in guest mode) may look; only a
//! sensor's owner or an admin may change it, delete it, or rotate its token.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::sensors::protocol::{HistoryPoint, Reading, SensorInfo};

/// A sensor as the dashboard lists it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SensorSummary {
    pub info: SensorInfo,
    /// The owner's username; `None` for a sensor the tutorial's endpoint registered in guest mode.
    pub owner: Option<String>,
    /// The latest reading by time, if there is any.
    pub latest: Option<Reading>,
    /// Whether the asker may change, delete, rotate the token of, and post to this sensor.
    pub can_manage: bool,
}

/// A sensor just made, with its token: shown this once and never again (only its hash is kept).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CreatedSensor {
    pub sensor: SensorInfo,
    /// `sbs_…`: posts this sensor's readings (`Authorization: Bearer <token>`), nothing else.
    pub token: String,
}

/// A stretch of a sensor's history, oldest first.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SensorSeries {
    pub points: Vec<HistoryPoint>,
    /// 0: each point is one raw reading. Otherwise each point is a bucket this many
    /// milliseconds wide (a whole number of minutes) starting at its `ts`, with the min, max,
    /// average (`value`) and count of the readings in it.
    pub bucket_ms: i64,
}

#[cfg(feature = "ssr")]
mod ssr {
    use super::SensorSummary;
    use crate::accounts::auth::Identity;
    use crate::sensors::protocol::Reading;
    use crate::sensors::server::may_manage;
    use crate::sensors::store::Sensor;

    pub fn summary(sensor: Sensor, latest: Option<Reading>, who: &Identity) -> SensorSummary {
        let can_manage = who.user().is_some_and(|user| may_manage(&sensor, user));
        SensorSummary { info: sensor.info, owner: sensor.owner_name, latest, can_manage }
    }
}

/// Every sensor, by name, with its owner and latest reading.
#[server(endpoint = "list_sensors", output = crate::codec::Json)]
pub async fn list_sensors() -> Result<Vec<SensorSummary>, AppError> {
    use crate::server::session;
    let who = session::require_identity().await?;
    let listed = session::service::<crate::sensors::server::Sensors>()?.list().await?;
    Ok(listed.into_iter().map(|(sensor, latest)| ssr::summary(sensor, latest, &who)).collect())
}

/// One sensor, with its owner and latest reading.
#[server(endpoint = "get_sensor", output = crate::codec::Json)]
pub async fn get_sensor(id: i64) -> Result<SensorSummary, AppError> {
    use crate::server::session;
    let who = session::require_identity().await?;
    let sensors = session::service::<crate::sensors::server::Sensors>()?;
    let sensor = sensors.get(id).await?;
    let latest = sensors.latest(id).await?;
    Ok(ssr::summary(sensor, latest, &who))
}

/// Create a sensor owned by the signed-in user. `name`: 1 to 64 characters, unique without
/// regard to case, not only digits. `unit`: up to 16 characters, empty when absent. `range_min`/`range_max`:
/// readings outside are refused. `alert_low`/`alert_high`: readings outside are highlighted.
#[server(endpoint = "create_sensor", output = crate::codec::Json)]
pub async fn create_sensor(
    name: String,
    unit: Option<String>,
    range_min: Option<f64>,
    range_max: Option<f64>,
    alert_low: Option<f64>,
    alert_high: Option<f64>,
) -> Result<CreatedSensor, AppError> {
    use crate::sensors::server::SensorFields;
    use crate::server::session;
    let user = session::require_user().await?;
    let fields = SensorFields { name, unit: unit.unwrap_or_default(), range_min, range_max, alert_low, alert_high };
    let (sensor, token) = session::service::<crate::sensors::server::Sensors>()?.create(&user, fields).await?;
    Ok(CreatedSensor { sensor: sensor.info, token })
}

/// Set a sensor's alert thresholds (its owner or an admin). `None` removes a threshold.
#[server(endpoint = "update_sensor", output = crate::codec::Json)]
pub async fn update_sensor(id: i64, alert_low: Option<f64>, alert_high: Option<f64>) -> Result<SensorInfo, AppError> {
    use crate::server::session;
    let user = session::require_user().await?;
    Ok(session::service::<crate::sensors::server::Sensors>()?.set_alerts(id, &user, alert_low, alert_high).await?)
}

/// Delete a sensor and all its readings (its owner or an admin).
#[server(endpoint = "delete_sensor", output = crate::codec::Json)]
pub async fn delete_sensor(id: i64) -> Result<(), AppError> {
    use crate::server::session;
    let user = session::require_user().await?;
    session::service::<crate::sensors::server::Sensors>()?.delete(id, &user).await?;
    Ok(())
}

/// Give a sensor a new token (its owner or an admin); the old one stops working at once.
/// The new token is shown this once.
#[server(endpoint = "rotate_sensor_token", output = crate::codec::Json)]
pub async fn rotate_sensor_token(id: i64) -> Result<String, AppError> {
    use crate::server::session;
    let user = session::require_user().await?;
    Ok(session::service::<crate::sensors::server::Sensors>()?.rotate_token(id, &user).await?)
}

/// A sensor's history in `[from_ms, to_ms)`. Raw readings when there are at most
/// `max_points` (1 to 10,000) and none of the range is older than the raw retention;
/// otherwise at most about `max_points` buckets with min, max and average, built from raw
/// readings and per-minute rollups alike.
#[server(endpoint = "sensor_history", output = crate::codec::Json)]
pub async fn sensor_history(id: i64, from_ms: i64, to_ms: i64, max_points: u32) -> Result<SensorSeries, AppError> {
    use crate::server::session;
    session::require_identity().await?;
    let (points, bucket_ms) =
        session::service::<crate::sensors::server::Sensors>()?.history(id, from_ms, to_ms, max_points).await?;
    Ok(SensorSeries { points, bucket_ms })
}

// ---------------------------------------------------------------------------------------
// The dashboard.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
#[cfg(feature = "hydrate")]
use std::sync::atomic::Ordering;
use std::sync::Arc;

use leptos::html::Canvas;

use super::protocol::SensorFrame;
use crate::realtime::client::{self, Notice};
use crate::realtime::protocol::ServerFrame;
#[cfg(feature = "hydrate")]
use crate::sensors::chart::stats;
use crate::sensors::chart::{crossed, Level, Sample, Series, Stats};
use crate::sensors::protocol::{sensor_topic, SENSORS_TOPIC};
use crate::ui::browser;
#[cfg(feature = "hydrate")]
use crate::ui::frames::{self, precise_now};

/// Colours of the series, in the order sensors are picked.
const PALETTE: [&str; 10] =
    ["#1c7ed6", "#e8590c", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599", "#d6336c", "#5c940d", "#4263eb", "#862e9c"];
/// The windows a click away; "custom" takes any other.
const WINDOWS: [(&str, i64); 4] = [("1 min", 60_000), ("10 min", 600_000), ("1 h", 3_600_000), ("24 h", 86_400_000)];
/// Points kept per series in the page (the oldest go first).
const SERIES_CAP: usize = 50_000;
/// Points asked of the server for a window.
const HISTORY_POINTS: u32 = 2_000;
/// Alerts listed in the page.
const ALERTS_KEPT: usize = 20;

/// The time shown: the last so much (sliding with the clock), or a fixed stretch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Span {
    Last(i64),
    Custom(i64, i64),
}

/// A threshold crossed, as listed in the page.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub sensor: String,
    pub text: String,
    pub ts: i64,
}

/// Everything the dashboard's parts share; all of it `Copy` handles.
#[derive(Clone, Copy)]
pub struct Board {
    pub sensors: RwSignal<Vec<SensorSummary>>,
    pub selected: RwSignal<Vec<i64>>,
    pub span: RwSignal<Span>,
    /// Paused at this time: the window stops sliding; readings still arrive.
    pub paused: RwSignal<Option<i64>>,
    pub overlay: RwSignal<bool>,
    pub series: StoredValue<HashMap<i64, Series>>,
    /// Bumped when data arrives: charts draw on their next frame.
    pub version: RwSignal<u64>,
    pub stats: RwSignal<HashMap<i64, Stats>>,
    pub alerts: RwSignal<Vec<Alert>>,
    /// Draw timings (start, duration) for the benchmark page.
    pub frame_times: StoredValue<Vec<(f64, f64)>>,
}

impl Board {
    fn new(sensors: Vec<SensorSummary>, selected: Vec<i64>, span: Span) -> Self {
        Board {
            sensors: RwSignal::new(sensors),
            selected: RwSignal::new(selected),
            span: RwSignal::new(span),
            paused: RwSignal::new(None),
            overlay: RwSignal::new(false),
            series: StoredValue::new(HashMap::new()),
            version: RwSignal::new(0),
            stats: RwSignal::new(HashMap::new()),
            alerts: RwSignal::new(Vec::new()),
            frame_times: StoredValue::new(Vec::new()),
        }
    }

    /// The window `[from, to)` at `now`.
    fn bounds(&self, now: i64) -> (i64, i64) {
        match self.span.get_untracked() {
            Span::Last(ms) => {
                let end = self.paused.get_untracked().unwrap_or(now);
                (end - ms, end)
            }
            Span::Custom(from, to) => (from, to),
        }
    }

    fn sensor(&self, id: i64) -> Option<SensorSummary> {
        self.sensors.with_untracked(|list| list.iter().find(|s| s.info.id == id).cloned())
    }

    fn colour(&self, id: i64) -> &'static str {
        let index = self.selected.with_untracked(|s| s.iter().position(|x| *x == id)).unwrap_or(0);
        PALETTE[index % PALETTE.len()]
    }

    /// Readings arrived for a sensor: keep them, raise alerts for thresholds crossed.
    fn receive(&self, id: i64, readings: &[Reading]) {
        let Some(sensor) = self.sensor(id) else { return };
        let (low, high) = (sensor.info.alert_low, sensor.info.alert_high);
        let mut raised = Vec::new();
        self.series.update_value(|all| {
            let series = all.entry(id).or_insert_with(|| Series::new(SERIES_CAP));
            for reading in readings {
                let previous = series.latest().map(|p| p.value);
                series.push(Sample::from(*reading));
                if let Some(level) = crossed(previous, reading.value, low, high) {
                    raised.push((*reading, level));
                }
            }
        });
        for (reading, level) in raised {
            let unit = &sensor.info.unit;
            let text = match level {
                Level::High => format!(
                    "{} is {} {unit}, above {} {unit}",
                    sensor.info.name,
                    reading.value,
                    high.unwrap_or_default()
                ),
                _ => format!(
                    "{} is {} {unit}, below {} {unit}",
                    sensor.info.name,
                    reading.value,
                    low.unwrap_or_default()
                ),
            };
            browser::notify("Sensor alert", &text, &format!("sensor-{id}"), || ());
            self.alerts.update(|alerts| {
                alerts.insert(0, Alert { sensor: sensor.info.name.clone(), text, ts: reading.ts });
                alerts.truncate(ALERTS_KEPT);
            });
        }
        self.version.update(|v| *v += 1);
    }

    /// A sensor was deleted (here or anywhere): it leaves the list, the picks and the charts.
    fn forget(&self, id: i64) {
        if self.selected.with_untracked(|s| s.contains(&id)) {
            self.selected.update(|s| s.retain(|x| *x != id));
        }
        if self.sensors.with_untracked(|list| list.iter().any(|s| s.info.id == id)) {
            self.sensors.update(|list| list.retain(|s| s.info.id != id));
        }
        self.series.update_value(|all| {
            all.remove(&id);
        });
        if self.stats.with_untracked(|stats| stats.contains_key(&id)) {
            self.stats.update(|stats| {
                stats.remove(&id);
            });
        }
    }

    /// Load the window's history of a sensor from the store.
    fn load_history(&self, id: i64) {
        let board = *self;
        let (from, to) = self.bounds(now_ms());
        leptos::task::spawn_local(async move {
            // A sliding window's history reaches a minute ahead, so nothing stored meanwhile is missed.
            if let Ok(history) = sensor_history(id, from, to + 60_000, HISTORY_POINTS).await {
                board.series.update_value(|all| {
                    let series = all.entry(id).or_insert_with(|| Series::new(SERIES_CAP));
                    series.load(history.points.into_iter().map(Sample::from).collect());
                });
                board.version.update(|v| *v += 1);
            }
        });
    }
}

/// The browser's clock in whole milliseconds.
fn now_ms() -> i64 {
    crate::ui::time::now_ms() as i64
}

crate::app::lazy_page!(SensorsRoute, SensorsPage);
crate::app::lazy_page!(ChartBenchRoute, ChartBenchPage);

/// `/sensors`: pick sensors, watch them live, register new ones.
#[component]
pub fn SensorsPage() -> impl IntoView {
    let list = Resource::new(|| (), |_| list_sensors());
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Ok(list) => view! { <Dashboard list/> }.into_any(),
                    Err(AppError::Unauthorized) => view! {
                        <section class="welcome"><p>"Sign in to see the sensors." " " <a href="/signin">"Sign in"</a></p></section>
                    }.into_any(),
                    Err(error) => view! { <p class="error" role="alert">{error.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Dashboard(list: Vec<SensorSummary>) -> impl IntoView {
    let first: Vec<i64> = list.iter().take(3).map(|s| s.info.id).collect();
    let board = Board::new(list, first, Span::Last(600_000));
    let subscriptions = StoredValue::new(HashMap::<i64, (u64, u32)>::new());

    // Follow the picked sensors: subscribe to new ones and load their history; leave the others.
    Effect::new(move |_| {
        let picked = board.selected.get();
        let current: Vec<i64> = subscriptions.with_value(|s| s.keys().copied().collect());
        for id in current.iter().filter(|id| !picked.contains(id)) {
            if let Some((handle, _)) = subscriptions.try_update_value(|s| s.remove(id)).flatten() {
                client::unsubscribe(&sensor_topic(*id), handle);
            }
        }
        for id in picked.into_iter().filter(|id| !current.contains(id)) {
            let handle = client::subscribe(&sensor_topic(id), None, false, move |frame| match frame {
                Notice::Event(SensorFrame::Readings { readings, .. }) => board.receive(id, readings),
                Notice::Event(SensorFrame::SensorDeleted { sensor, .. }) => board.forget(*sensor),
                // Subscribed again after a reconnect: fetch what was missed meanwhile.
                Notice::Core(ServerFrame::Subscribed { .. }) => {
                    let again = subscriptions
                        .try_update_value(|s| {
                            s.get_mut(&id).map(|(_, times)| {
                                *times += 1;
                                *times > 1
                            })
                        })
                        .flatten()
                        .unwrap_or(false);
                    if again {
                        board.load_history(id);
                    }
                }
                _ => {}
            });
            subscriptions.update_value(|s| {
                s.insert(id, (handle, 0));
            });
            board.load_history(id);
        }
    });
    // A new window: load its history for every picked sensor.
    Effect::new(move |previous: Option<Span>| {
        let span = board.span.get();
        if previous.is_some_and(|p| p != span) {
            for id in board.selected.get_untracked() {
                board.load_history(id);
            }
        }
        span
    });
    // Sensors deleted anywhere leave this dashboard at once.
    let list_handle = client::subscribe(SENSORS_TOPIC, None, false, move |frame| {
        if let Notice::Event(SensorFrame::SensorDeleted { sensor, .. }) = frame {
            board.forget(*sensor);
        }
    });
    on_cleanup(move || {
        client::unsubscribe(SENSORS_TOPIC, list_handle);
        for (id, (handle, _)) in subscriptions.try_update_value(std::mem::take).unwrap_or_default() {
            client::unsubscribe(&sensor_topic(id), handle);
        }
    });

    view! {
        <div class="sensors-page">
            <SensorList board/>
            <section class="sensor-charts" aria-label="Charts">
                <Controls board/>
                <Alerts board/>
                <Show
                    when=move || !board.selected.with(Vec::is_empty)
                    fallback=|| view! { <p class="empty">"Pick sensors in the list to chart them."</p> }
                >
                    <Charts board/>
                </Show>
            </section>
        </div>
    }
}

/// Window buttons, custom range, pause and resume, one chart or one each.
#[component]
fn Controls(board: Board) -> impl IntoView {
    let custom_from = RwSignal::new(String::new());
    let custom_to = RwSignal::new(String::new());
    let custom_error = RwSignal::new(None::<String>);
    let apply_custom = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let parse = |s: String| {
            #[cfg(feature = "hydrate")]
            let ms = js_sys::Date::parse(&s);
            #[cfg(not(feature = "hydrate"))]
            let ms = s.parse::<f64>().unwrap_or(f64::NAN);
            (!ms.is_nan()).then_some(ms as i64)
        };
        match (parse(custom_from.get_untracked()), parse(custom_to.get_untracked())) {
            (Some(from), Some(to)) if from < to => {
                custom_error.set(None);
                board.span.set(Span::Custom(from, to));
            }
            (Some(_), Some(_)) => custom_error.set(Some("The start must be before the end.".into())),
            _ => custom_error.set(Some("Give a start and an end.".into())),
        }
    };
    view! {
        <div class="chart-controls">
            <div class="windows" role="group" aria-label="Time window">
                {WINDOWS
                    .into_iter()
                    .map(|(label, ms)| {
                        view! {
                            <button
                                type="button"
                                aria-pressed=move || (board.span.get() == Span::Last(ms)).to_string()
                                on:click=move |_| board.span.set(Span::Last(ms))
                            >
                                {label}
                            </button>
                        }
                    })
                    .collect_view()}
            </div>
            <form class="custom-window" on:submit=apply_custom>
                <label>"From " <input type="datetime-local" step="1" bind:value=custom_from/></label>
                <label>"to " <input type="datetime-local" step="1" bind:value=custom_to/></label>
                <button type="submit">"Show"</button>
                {move || custom_error.get().map(|e| view! { <span class="error" role="alert">{e}</span> })}
            </form>
            <Show
                when=move || board.paused.get().is_some()
                fallback=move || view! {
                    <button type="button" on:click=move |_| board.paused.set(Some(now_ms()))
                        disabled=move || matches!(board.span.get(), Span::Custom(..))>"Pause"</button>
                }
            >
                <button type="button" on:click=move |_| board.paused.set(None)>"Resume"</button>
            </Show>
            <label class="check">
                <input type="checkbox" prop:checked=move || board.overlay.get()
                    on:change=move |ev| board.overlay.set(event_target_checked(&ev))/>
                "One chart for all"
            </label>
        </div>
    }
}

#[component]
fn Alerts(board: Board) -> impl IntoView {
    view! {
        <Show when=move || !board.alerts.with(Vec::is_empty)>
            <div class="sensor-alerts" role="alert">
                <ul>
                    <For each=move || board.alerts.get() key=|a| (a.ts, a.text.clone()) let(alert)>
                        <li>"⚠ " {alert.text} " · " <crate::ui::time::Clock ms=alert.ts/></li>
                    </For>
                </ul>
                <button type="button" class="link" on:click=move |_| board.alerts.set(Vec::new())>"Clear"</button>
            </div>
        </Show>
    }
}

/// The picked sensors: one chart each, or one for all.
#[component]
fn Charts(board: Board) -> impl IntoView {
    view! {
        <Show
            when=move || board.overlay.get()
            fallback=move || view! {
                <For each=move || board.selected.get() key=|id| *id let(id)>
                    <Chart board ids=Signal::derive(move || vec![id])/>
                </For>
            }
        >
            <Chart board ids=Signal::derive(move || board.selected.get())/>
        </Show>
    }
}

/// One chart: the given sensors over the board's window, drawn at most once per frame.
#[component]
fn Chart(board: Board, ids: Signal<Vec<i64>>) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    let hover = RwSignal::new(None::<i64>);
    let frame_queued = Arc::new(AtomicBool::new(false));
    let last_drawn = StoredValue::new(0i64);
    let stats_at = StoredValue::new(0.0f64);

    let draw: Arc<dyn Fn() + Send + Sync> = {
        let frame_queued = frame_queued.clone();
        Arc::new(move || {
            let _ = (&frame_queued, last_drawn, stats_at);
            #[cfg(feature = "hydrate")]
            {
                if frame_queued.swap(true, Ordering::AcqRel) {
                    return;
                }
                let frame_queued = frame_queued.clone();
                request_animation_frame(move || {
                    frame_queued.store(false, Ordering::Release);
                    // The page may have gone since this frame was asked for.
                    let Some(Some(el)) = canvas.try_get_untracked() else { return };
                    let started = precise_now();
                    let now = now_ms();
                    let (from, to) = board.bounds(now);
                    let shown = ids.get_untracked();
                    let sensors: Vec<SensorSummary> = shown.iter().filter_map(|id| board.sensor(*id)).collect();
                    let colours: Vec<&str> = shown.iter().map(|id| board.colour(*id)).collect();
                    let mut figures = Vec::new();
                    board.series.with_value(|all| {
                        let empty = Series::default();
                        let lines: Vec<super::chart_canvas::Line> = sensors
                            .iter()
                            .zip(&colours)
                            .map(|(s, colour)| {
                                let points = all.get(&s.info.id).unwrap_or(&empty).window(from, to);
                                if let Some(figure) = stats(points) {
                                    figures.push((s.info.id, figure));
                                }
                                // Thresholds in other units would only squash the scale.
                                let own_scale = sensors.iter().all(|other| other.info.unit == s.info.unit);
                                super::chart_canvas::Line {
                                    colour,
                                    unit: &s.info.unit,
                                    points,
                                    low: s.info.alert_low.filter(|_| own_scale),
                                    high: s.info.alert_high.filter(|_| own_scale),
                                }
                            })
                            .collect();
                        super::chart_canvas::draw(&el, from, to, &lines, hover.get_untracked());
                    });
                    last_drawn.set_value(now);
                    // The figures beside the chart: at most four times a second.
                    if started - stats_at.get_value() > 250.0 {
                        stats_at.set_value(started);
                        board.stats.update(|all| {
                            for id in &shown {
                                all.remove(id);
                            }
                            all.extend(figures);
                        });
                    }
                    board.frame_times.update_value(|t| t.push((started, precise_now() - started)));
                });
            }
        })
    };
    {
        let draw = draw.clone();
        Effect::new(move |_| {
            board.version.track();
            board.span.track();
            board.paused.track();
            board.sensors.track();
            ids.track();
            hover.track();
            draw();
        });
    }
    // A sliding window moves with the clock: draw again once it has moved a pixel.
    {
        let draw = draw.clone();
        Effect::new(move |_| {
            let draw = draw.clone();
            let handle = set_interval_with_handle(
                move || {
                    let Span::Last(span) = board.span.get_untracked() else { return };
                    if board.paused.get_untracked().is_some() {
                        return;
                    }
                    let width = canvas.try_get_untracked().flatten().map_or(600.0, |c| f64::from(c.client_width()));
                    if (now_ms() - last_drawn.get_value()) as f64 * width / span as f64 >= 1.0 {
                        draw();
                    }
                },
                std::time::Duration::from_millis(50),
            );
            if let Ok(handle) = handle {
                on_cleanup(move || handle.clear());
            }
        });
    }

    let on_move = move |ev: leptos::ev::PointerEvent| {
        let _ = &ev;
        #[cfg(feature = "hydrate")]
        if let Some(el) = canvas.get_untracked() {
            let (from, to) = board.bounds(now_ms());
            hover.set(super::chart_canvas::time_at(&el, from, to, f64::from(ev.offset_x())));
        }
    };
    // What is under the pointer, in words.
    let readout = move || {
        let t = hover.get()?;
        board.version.track();
        let (from, to) = board.bounds(now_ms());
        let values: Vec<String> = ids
            .get()
            .into_iter()
            .filter_map(|id| {
                let sensor = board.sensor(id)?;
                let point = board.series.with_value(|all| all.get(&id).and_then(|s| s.nearest(t, from, to)))?;
                Some(format!("{}: {} {}", sensor.info.name, format_value(point.value), sensor.info.unit))
            })
            .collect();
        Some(view! {
            <p class="chart-readout" data-testid="chart-readout">
                <crate::ui::time::Clock ms=t/> " · " {values.join(" · ")}
            </p>
        })
    };
    let legend = move || {
        board.sensors.track();
        ids.get()
            .into_iter()
            .filter_map(|id| {
                let sensor = board.sensor(id)?;
                let colour = board.colour(id);
                let unit = sensor.info.unit.clone();
                let figures = move || board.stats.with(|all| all.get(&id).copied());
                Some(view! {
                    <li class="legend-item" data-sensor=id.to_string()>
                        <i class="swatch" style=format!("background:{colour}")></i>
                        <strong>{sensor.info.name.clone()}</strong>
                        {move || match figures() {
                            Some(f) => view! {
                                <span class="figures">
                                    "now " <b class="current">{format_value(f.current)}</b> " " {unit.clone()}
                                    " · min " {format_value(f.min)} " · max " {format_value(f.max)}
                                    " · avg " {format_value(f.average)}
                                </span>
                            }.into_any(),
                            None => view! { <span class="figures muted">"no readings in this window"</span> }.into_any(),
                        }}
                    </li>
                })
            })
            .collect_view()
    };
    view! {
        <figure class="chart">
            <ul class="legend">{legend}</ul>
            <div class="chart-frame">
                <canvas
                    class="chart-canvas"
                    node_ref=canvas
                    aria-label="Chart"
                    on:pointermove=on_move
                    on:pointerleave=move |_| hover.set(None)
                ></canvas>
            </div>
            {readout}
        </figure>
    }
}

/// A value as the page shows it: up to three decimals, no trailing zeros.
fn format_value(v: f64) -> String {
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// The sensors to pick from, their latest values, and (for their owners) their settings.
#[component]
fn SensorList(board: Board) -> impl IntoView {
    let reload = move || {
        leptos::task::spawn_local(async move {
            if let Ok(list) = list_sensors().await {
                board.sensors.set(list);
            }
        });
    };
    let toggle = move |id: i64, on: bool| {
        board.selected.update(|s| {
            s.retain(|x| *x != id);
            if on {
                s.push(id);
            }
        });
    };
    view! {
        <aside class="sensor-list" aria-label="Sensors">
            <h2>"Sensors"</h2>
            <ul>
                <For each=move || board.sensors.get() key=|s| format!("{:?}{}", s.info, s.can_manage) let(sensor)>
                    <SensorItem board sensor toggle reload/>
                </For>
            </ul>
            <Show when=move || board.sensors.with(Vec::is_empty)>
                <p class="empty">"No sensors yet. Register one below, or run " <code>"switchboard simulate"</code> "."</p>
            </Show>
            <RegisterSensor board reload/>
        </aside>
    }
}

#[component]
fn SensorItem(
    board: Board,
    sensor: SensorSummary,
    toggle: impl Fn(i64, bool) + Copy + Send + Sync + 'static,
    reload: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let id = sensor.info.id;
    let unit = sensor.info.unit.clone();
    let latest = move || {
        board.version.track();
        let live = board.series.with_value(|all| all.get(&id).and_then(Series::latest)).map(|p| p.value);
        live.or(sensor.latest.map(|r| r.value))
    };
    // The window shown; a sliding one is left open at the end, so the file has everything
    // up to the moment it is downloaded.
    let csv = move || {
        board.version.track();
        let span = board.span.get();
        let paused = board.paused.get();
        let (from, to) = board.bounds(now_ms());
        match (span, paused) {
            (Span::Last(_), None) => format!("/api/sensors/{id}/readings.csv?from={from}"),
            _ => format!("/api/sensors/{id}/readings.csv?from={from}&to={to}"),
        }
    };
    let message = RwSignal::new(None::<String>);
    let token = RwSignal::new(None::<String>);
    let confirming = RwSignal::new(false);
    let low = RwSignal::new(sensor.info.alert_low.map(|v| v.to_string()).unwrap_or_default());
    let high = RwSignal::new(sensor.info.alert_high.map(|v| v.to_string()).unwrap_or_default());
    let save_thresholds = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let parse = |s: String| -> Result<Option<f64>, ()> {
            let s = s.trim().to_owned();
            if s.is_empty() {
                Ok(None)
            } else {
                s.parse::<f64>().ok().filter(|v| v.is_finite()).map(Some).ok_or(())
            }
        };
        let (Ok(alert_low), Ok(alert_high)) = (parse(low.get_untracked()), parse(high.get_untracked())) else {
            message.set(Some("Thresholds are numbers (or empty for none).".into()));
            return;
        };
        leptos::task::spawn_local(async move {
            match update_sensor(id, alert_low, alert_high).await {
                Ok(_) => {
                    message.set(Some("Saved.".into()));
                    reload();
                }
                Err(e) => message.set(Some(e.to_string())),
            }
        });
    };
    let rotate = move |_| {
        leptos::task::spawn_local(async move {
            match rotate_sensor_token(id).await {
                Ok(secret) => token.set(Some(secret)),
                Err(e) => message.set(Some(e.to_string())),
            }
        });
    };
    let delete = move |_| {
        if !confirming.get_untracked() {
            confirming.set(true);
            return;
        }
        leptos::task::spawn_local(async move {
            match delete_sensor(id).await {
                Ok(()) => {
                    board.selected.update(|s| s.retain(|x| *x != id));
                    reload();
                }
                Err(e) => message.set(Some(e.to_string())),
            }
        });
    };
    let name = sensor.info.name.clone();
    view! {
        <li class="sensor-item" data-sensor=id.to_string()>
            <label class="check">
                <input
                    type="checkbox"
                    prop:checked=move || board.selected.with(|s| s.contains(&id))
                    on:change=move |ev| toggle(id, event_target_checked(&ev))
                />
                <strong>{name.clone()}</strong>
            </label>
            <span class="latest">{move || latest().map(|v| format!("{} {}", format_value(v), unit)).unwrap_or_else(|| "no readings".into())}</span>
            <span class="meta">
                {sensor.owner.clone().map(|o| format!("by {o}")).unwrap_or_else(|| "shared".into())}
                " · " <a href=csv download=format!("sensor-{id}.csv")>"CSV of this window"</a>
            </span>
            <Show when=move || sensor.can_manage>
                <details class="manage">
                    <summary>"Settings"</summary>
                    <form on:submit=save_thresholds class="thresholds">
                        <label>"Alert below " <input type="text" inputmode="decimal" bind:value=low size="6"/></label>
                        <label>"Alert above " <input type="text" inputmode="decimal" bind:value=high size="6"/></label>
                        <button type="submit">"Save"</button>
                    </form>
                    <div class="manage-actions">
                        <button type="button" on:click=rotate>"New token"</button>
                        <button type="button" class="danger" on:click=delete>
                            {move || if confirming.get() { "Really delete it and its readings?" } else { "Delete" }}
                        </button>
                    </div>
                    {move || token.get().map(|t| view! { <TokenOnce id token=t/> })}
                </details>
            </Show>
            {move || message.get().map(|m| view! { <p class="note" role="status">{m}</p> })}
        </li>
    }
}

/// A sensor's token, shown once, with how a device uses it.
#[component]
fn TokenOnce(id: i64, token: String) -> impl IntoView {
    let origin = {
        #[cfg(feature = "hydrate")]
        {
            window().location().origin().unwrap_or_default()
        }
        #[cfg(not(feature = "hydrate"))]
        String::new()
    };
    let example = format!(
        "curl -X POST {origin}/api/sensors/{id}/readings \\\n  -H 'Authorization: Bearer {token}' \\\n  -H 'Content-Type: application/json' -d '{{\"value\": 21.5}}'"
    );
    view! {
        <div class="token-once" data-testid="sensor-token">
            <p>"The sensor's token, shown only now:"</p>
            <code class="secret">{token}</code>
            <pre>{example}</pre>
        </div>
    }
}

#[component]
fn RegisterSensor(board: Board, reload: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let create = ServerAction::<CreateSensor>::new();
    Effect::new(move |_| {
        if let Some(Ok(created)) = create.value().get() {
            reload();
            board.selected.update(|s| {
                if !s.contains(&created.sensor.id) {
                    s.push(created.sensor.id);
                }
            });
        }
    });
    view! {
        <details class="register">
            <summary>"Register a sensor"</summary>
            <ActionForm action=create attr:class="register-form">
                <label>"Name" <input name="name" required maxlength="64"/></label>
                <label>"Unit" <input name="unit" maxlength="16" placeholder="°C"/></label>
                <fieldset>
                    <legend>"Physical range (readings outside are refused)"</legend>
                    <input name="range_min" inputmode="decimal" placeholder="min" aria-label="Range min"/>
                    <input name="range_max" inputmode="decimal" placeholder="max" aria-label="Range max"/>
                </fieldset>
                <fieldset>
                    <legend>"Alert thresholds"</legend>
                    <input name="alert_low" inputmode="decimal" placeholder="below" aria-label="Alert below"/>
                    <input name="alert_high" inputmode="decimal" placeholder="above" aria-label="Alert above"/>
                </fieldset>
                <button type="submit">"Register"</button>
            </ActionForm>
            {move || match create.value().get() {
                Some(Ok(created)) => Some(view! { <TokenOnce id=created.sensor.id token=created.token/> }.into_any()),
                Some(Err(e)) => Some(view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any()),
                None => None,
            }}
        </details>
    }
}

/// `/bench/chart?series=10&points=10000&hz=10&overlay=1`: the dashboard's charts with
/// `series` simulated sensors of `points` readings each, streaming `hz` readings a second
/// each, no server involved; frame timings in `window.__chart_bench` (see `make bench-chart`).
#[component]
pub fn ChartBenchPage() -> impl IntoView {
    let query = leptos_router::hooks::use_query_map();
    let number = |key: &str, default: usize, max: usize| {
        query.read_untracked().get(key).and_then(|v| v.parse().ok()).unwrap_or(default).min(max)
    };
    let (count, points, hz) =
        (number("series", 10, 50), number("points", 10_000, 200_000), number("hz", 10, 1000).max(1));
    let overlay = query.read_untracked().get("overlay").is_some_and(|v| v == "1");
    let sensors: Vec<SensorSummary> = (1..=count as i64)
        .map(|id| SensorSummary {
            info: SensorInfo {
                id,
                name: format!("bench {id}"),
                unit: "u".into(),
                range_min: None,
                range_max: None,
                alert_low: None,
                alert_high: None,
            },
            owner: None,
            latest: None,
            can_manage: false,
        })
        .collect();
    let ids: Vec<i64> = sensors.iter().map(|s| s.info.id).collect();
    // The window holds exactly `points` readings at `hz`.
    let span = (points as i64 * 1000) / hz as i64;
    let board = Board::new(sensors, ids.clone(), Span::Last(span));
    board.overlay.set(overlay);
    Effect::new(move |_| start_chart_bench(board, points, hz));
    view! {
        <div class="sensors-page bench">
            <section class="sensor-charts">
                <Charts board/>
            </section>
        </div>
    }
}

fn start_chart_bench(board: Board, points: usize, hz: usize) {
    let _ = (board, points, hz);
    #[cfg(feature = "hydrate")]
    {
        let ids = board.selected.get_untracked();
        let now = now_ms();
        let step = 1000 / hz as i64;
        let wave = |id: i64, ts: i64| {
            let t = ts as f64 / 1000.0;
            (t / (20.0 + id as f64)).sin() * 10.0 + id as f64 * 5.0 + js_sys::Math::random()
        };
        board.series.update_value(|all| {
            for id in &ids {
                let mut series = Series::new(points);
                for i in (0..points as i64).rev() {
                    let ts = now - i * step;
                    series.push(Sample::from(Reading { ts, value: wave(*id, ts) }));
                }
                all.insert(*id, series);
            }
        });
        board.version.update(|v| *v += 1);
        set_interval(
            move || {
                let ts = now_ms();
                for id in &ids {
                    board.receive(*id, &[Reading { ts, value: wave(*id, ts) }]);
                }
            },
            std::time::Duration::from_millis(step as u64),
        );
        let started = precise_now();
        set_interval(
            move || {
                let frames = board.frame_times.with_value(Clone::clone);
                let mut report = frames::report(&frames, (precise_now() - started) / 1000.0);
                let shown: usize = board.series.with_value(|all| all.values().map(|s| s.points().len()).sum());
                report.insert("series".into(), board.selected.with_untracked(Vec::len).into());
                report.insert("points".into(), shown.into());
                frames::publish("__chart_bench", report);
            },
            std::time::Duration::from_secs(1),
        );
    }
}
