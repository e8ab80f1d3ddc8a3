//! A room's live map: everyone sharing their position, moving as they move.
//!
//! The basemap is Natural Earth's country outlines, served by the app (nothing loads
//! from outside), under street tiles when the server has an archive of them (`--tiles`) or
//! a tile server is configured; closer than the outlines go and without tiles, a grid.
//! Overlapping markers are drawn as clusters that split as the map zooms in (or when one
//! is clicked); a scale bar shows distances. It is drawn with the markers on one canvas, at most once per
//! animation frame; markers glide to their new position. A list beside the map says
//! the same in words: who is where and how long ago.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

use leptos::html::Canvas;
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use super::client as map_client;
use super::protocol::MapFrame;
use crate::app::Session;
use crate::chat::protocol::{RoomInfo, LOBBY};
use crate::error::AppError;
use crate::map::projection::View;
use crate::map::protocol::{location_topic, Located};
use crate::realtime::client::{self, Notice};
#[cfg(feature = "hydrate")]
use crate::ui::frames::{self, precise_now};
use crate::ui::time::now_ms;

/// How many people the list beside the map names.
const LIST_LIMIT: usize = 100;

/// How long a marker takes to glide to its new position.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
const GLIDE_MS: f64 = 600.0;

/// What the map page needs: the room, and after how long a position counts as stale.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
pub struct MapInfo {
    pub room: RoomInfo,
    pub stale_after_ms: f64,
    /// Raster tiles to draw instead of the built-in outlines, if the operator configured them.
    pub tiles: Option<Tiles>,
}

/// A tile server: its URL template (`{z}`, `{x}`, `{y}`) and the attribution it asks for.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
pub struct Tiles {
    pub url: String,
    pub attribution: Option<String>,
    /// The zooms the tiles exist at (an archive's; a tile server's are assumed to be 0-19).
    /// Closer than `max_zoom`, its tiles are drawn enlarged.
    pub min_zoom: u8,
    pub max_zoom: u8,
}

#[server(endpoint = "map_room", output = crate::codec::Json)]
pub async fn map_room(room: String) -> Result<MapInfo, AppError> {
    use crate::chat::server::room_info;
    use crate::server::session;
    let who = session::require_identity().await?;
    let state = session::state()?;
    let room = room_info(&state.get::<crate::chat::server::Chat>().room_for(&room, &who)?);
    let attribution = state.config.tile_attribution.clone();
    let tiles = match (&state.try_get::<crate::map::tiles::Archive>(), &state.config.tile_url) {
        (Some(archive), _) => Some(Tiles {
            url: crate::map::tiles::TILE_PATH.to_owned(),
            attribution: attribution.or_else(|| archive.info.attribution.clone()),
            min_zoom: archive.info.min_zoom,
            max_zoom: archive.info.max_zoom,
        }),
        (None, Some(url)) => Some(Tiles { url: url.clone(), attribution, min_zoom: 0, max_zoom: 19 }),
        (None, None) => None,
    };
    Ok(MapInfo { room, stale_after_ms: state.config.location_stale_secs as f64 * 1000.0, tiles })
}

#[server(endpoint = "world", output = crate::codec::Json)]
pub async fn world_outlines() -> Result<Vec<Vec<[f32; 2]>>, AppError> {
    use super::world;
    use crate::server::session;
    let state = session::state()?;
    let rings = world::outlines(&state.config.site_root).map_err(|e| {
        tracing::error!(error = %e, "basemap unavailable");
        AppError::Server("the basemap is not available".into())
    })?;
    Ok(rings.to_vec())
}

crate::app::lazy_page!(MapRoute, MapPage);
crate::app::lazy_page!(MapBenchRoute, MapBenchPage);

/// `/bench/map?n=1000`: the map with `n` simulated people moving once a second, no server
/// involved, and frame timings in `window.__map_bench` (see `make bench-map`).
#[component]
pub fn MapBenchPage() -> impl IntoView {
    let query = leptos_router::hooks::use_query_map();
    let count = query.read_untracked().get("n").and_then(|n| n.parse().ok()).unwrap_or(1000usize).min(20_000);
    let room = RoomInfo { name: "bench".into(), epoch: String::new(), private: false };
    view! { <MapView room stale_ms=60_000.0 bench=count/> }
}

#[component]
pub fn MapPage() -> impl IntoView {
    let params = use_params_map();
    let room = Memo::new(move |_| params.read().get("room").unwrap_or_else(|| LOBBY.to_owned()));
    let info = Resource::new(move || room.get(), map_room);
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match info.await {
                    Ok(info) => view! { <MapView room=info.room stale_ms=info.stale_after_ms tiles=info.tiles/> }.into_any(),
                    Err(AppError::Unauthorized) => view! {
                        <section class="welcome"><p>"Sign in to see the map." " " <a href="/signin">"Sign in"</a></p></section>
                    }.into_any(),
                    Err(error) => view! { <p class="error" role="alert">{error.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// Where a marker is drawn while it glides from `from` to `to`.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
struct Glide {
    from: (f64, f64),
    to: (f64, f64),
    start: f64,
}

#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
impl Glide {
    fn at(&self, now: f64) -> ((f64, f64), bool) {
        let t = ((now - self.start) / GLIDE_MS).clamp(0.0, 1.0);
        let ease = 1.0 - (1.0 - t).powi(3);
        let lerp = |a: f64, b: f64| a + (b - a) * ease;
        ((lerp(self.from.0, self.to.0), lerp(self.from.1, self.to.1)), t < 1.0)
    }
}

/// Simulated people for the benchmark: `count` of them, each moving once a second. Frame
/// timings are published as `window.__map_bench` every second.
fn start_bench(
    count: usize,
    incoming: StoredValue<Vec<MapFrame>>,
    frame_times: StoredValue<Vec<(f64, f64)>>,
    draw: Arc<dyn Fn() + Send + Sync>,
) {
    let _ = (count, incoming, frame_times, &draw);
    #[cfg(feature = "hydrate")]
    {
        let topic = "location:bench".to_owned();
        let people: Vec<Located> = (0..count)
            .map(|i| Located {
                user: format!("walker {i}"),
                latitude: js_sys::Math::random() * 120.0 - 60.0,
                longitude: js_sys::Math::random() * 340.0 - 170.0,
                ts: now_ms() as i64,
                trail: Vec::new(),
            })
            .collect();
        incoming.update_value(|q| q.push(MapFrame::Locations { topic: topic.clone(), positions: people.clone() }));
        draw();
        let people = std::rc::Rc::new(std::cell::RefCell::new(people));
        let started = precise_now();
        let tick = std::cell::Cell::new(0usize);
        // Each person moves once a second, spread over the second like real updates: every
        // 50 ms a twentieth of them move.
        let movers = people.clone();
        set_interval(
            move || {
                let slice = tick.get() % 20;
                tick.set(tick.get() + 1);
                let mut people = movers.borrow_mut();
                let moved: Vec<MapFrame> = people
                    .iter_mut()
                    .enumerate()
                    .filter(|(i, _)| i % 20 == slice)
                    .map(|(_, p)| {
                        p.latitude = (p.latitude + js_sys::Math::random() - 0.5).clamp(-80.0, 80.0);
                        p.longitude = (p.longitude + js_sys::Math::random() - 0.5).clamp(-179.0, 179.0);
                        p.ts = now_ms() as i64;
                        MapFrame::Location { topic: topic.clone(), position: p.clone() }
                    })
                    .collect();
                incoming.update_value(|q| q.extend(moved));
                draw();
            },
            std::time::Duration::from_millis(50),
        );
        set_interval(
            move || {
                let frames = frame_times.with_value(Clone::clone);
                let mut report = frames::report(&frames, (precise_now() - started) / 1000.0);
                report.insert("markers".into(), people.borrow().len().into());
                frames::publish("__map_bench", report);
            },
            std::time::Duration::from_secs(1),
        );
    }
}

#[component]
fn MapView(
    room: RoomInfo,
    stale_ms: f64,
    /// Raster tiles instead of the built-in outlines.
    #[prop(default = None)]
    tiles: Option<Tiles>,
    /// Benchmark mode: this many simulated people, each moving once a second, and no server.
    #[prop(optional)]
    bench: Option<usize>,
) -> impl IntoView {
    let session = expect_context::<Session>();
    let topic = location_topic(&room.name);
    // What is drawn: updated once per frame from the frames received since the last one.
    let positions = StoredValue::new(HashMap::<String, Located>::new());
    let incoming = StoredValue::new(Vec::<MapFrame>::new());
    // What the list beside the map shows: refreshed at most twice a second.
    let listing = RwSignal::new(Vec::<Located>::new());
    let listing_state = StoredValue::new((0.0f64, false));
    let listed_total = RwSignal::new(0usize);
    let glides = StoredValue::new(HashMap::<String, Glide>::new());
    let frame_times = StoredValue::new(Vec::<(f64, f64)>::new());
    let outlines = RwSignal::new(Vec::<Vec<[f32; 2]>>::new());
    let view_state = RwSignal::new(View { center: (10.0, 30.0), zoom: 1.0, width: 0.0, height: 0.0 });
    let sharing = RwSignal::new(false);
    let placing = RwSignal::new(false);
    let trail = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let clock = RwSignal::new(0.0f64);
    let canvas = NodeRef::<Canvas>::new();
    let watch = Arc::new(AtomicI32::new(-1));
    let frame_queued = Arc::new(AtomicBool::new(false));
    let handle = Arc::new(AtomicU64::new(0));
    // Bumped to ask for another frame while markers glide.
    let redraw = RwSignal::new(0u64);
    // Pointers down on the canvas (one pans or drags my marker, two pinch) and whether my
    // marker is being dragged, when my last position went out while dragging.
    let pointers = StoredValue::new(Vec::<(i32, f64, f64)>::new());
    let gesture_moved = StoredValue::new(0.0f64);
    let dragging_me = StoredValue::new(false);
    let drag_sent_at = StoredValue::new(0.0f64);
    let tile_source = tiles.clone();
    // Until someone moves the map, it frames everyone as they first appear.
    let touched = StoredValue::new(false);
    let framed = StoredValue::new(false);
    // Framing everyone goes as close as street level: people a few metres apart stay apart.
    let closest = 18.0;
    let frame_everyone = move || {
        let spots: Vec<(f64, f64)> = positions.with_value(|p| p.values().map(|p| (p.longitude, p.latitude)).collect());
        // Only once the canvas has its size: framed in a canvas not laid out yet (as on a
        // phone's first frames) everyone would be "fitted" into nothing, at world scale.
        let (width, height) = view_state.with_untracked(|v| (v.width, v.height));
        if !spots.is_empty() && width > 160.0 && height > 160.0 {
            view_state.update_untracked(|v| v.fit(&spots, 60.0, closest));
            framed.set_value(true);
        }
    };

    let refresh_listing = move |now: f64| {
        let mut list: Vec<Located> = positions.with_value(|p| p.values().cloned().collect());
        list.sort_by(|a, b| a.user.cmp(&b.user));
        // The canvas shows everyone; the list names the first ones (a long list costs frames).
        listed_total.set(list.len());
        list.truncate(LIST_LIMIT);
        listing.set(list);
        listing_state.set_value((now, false));
    };

    // Apply what arrived since the last frame: one pass, however many updates.
    let apply_incoming = move |now: f64| {
        let frames = incoming.try_update_value(std::mem::take).unwrap_or_default();
        if frames.is_empty() {
            return;
        }
        let mut joined_or_left = false;
        positions.update_value(|people| {
            glides.update_value(|glides| {
                for frame in frames {
                    match frame {
                        MapFrame::Locations { positions: all, .. } => {
                            glides.clear();
                            people.clear();
                            people.extend(all.into_iter().map(|p| (p.user.clone(), p)));
                            joined_or_left = true;
                        }
                        MapFrame::Location { position, .. } => {
                            // While I drag my marker, my own echoes lag behind the pointer.
                            if dragging_me.get_value() && position.user == client::my_name() {
                                continue;
                            }
                            match people.get(&position.user) {
                                Some(old) => {
                                    let from = glides
                                        .get(&position.user)
                                        .map_or((old.longitude, old.latitude), |g| g.at(now).0);
                                    let to = (position.longitude, position.latitude);
                                    glides.insert(position.user.clone(), Glide { from, to, start: now });
                                }
                                None => joined_or_left = true,
                            }
                            people.insert(position.user.clone(), position);
                        }
                        MapFrame::LocationGone { user, .. } => {
                            glides.remove(&user);
                            joined_or_left |= people.remove(&user).is_some();
                        }
                    }
                }
            });
        });
        let (listed_at, _) = listing_state.get_value();
        if joined_or_left || now - listed_at > 500.0 {
            refresh_listing(now);
        } else {
            listing_state.update_value(|(_, dirty)| *dirty = true);
        }
    };

    // Draw at most once per animation frame, and keep drawing while markers glide.
    let draw: Arc<dyn Fn() + Send + Sync> = {
        let frame_queued = frame_queued.clone();
        let tile_source = tile_source.clone();
        Arc::new(move || {
            let _ = (&frame_queued, &apply_incoming, &tile_source);
            #[cfg(feature = "hydrate")]
            {
                if frame_queued.swap(true, Ordering::AcqRel) {
                    return;
                }
                let frame_queued = frame_queued.clone();
                let tile_source = tile_source.clone();
                request_animation_frame(move || {
                    frame_queued.store(false, Ordering::Release);
                    // The page may have gone since this frame was asked for.
                    let Some(Some(el)) = canvas.try_get_untracked() else { return };
                    let started = precise_now();
                    let now = now_ms();
                    apply_incoming(now);
                    let (width, height) = super::canvas::fit(&el);
                    view_state.update_untracked(|v| {
                        if v.width == 0.0 {
                            // First frame: the whole world across the canvas.
                            v.zoom = (width / crate::map::projection::TILE).log2().max(0.0);
                        }
                        v.width = width;
                        v.height = height;
                    });
                    if !framed.get_value() && !touched.get_value() && bench.is_none() {
                        frame_everyone();
                    }
                    let me = client::my_name();
                    let mut moving = false;
                    positions.with_value(|people| {
                        glides.with_value(|glides| {
                            let dots: Vec<super::canvas::Dot> = people
                                .values()
                                .map(|p| {
                                    let ((lon, lat), still) = glides
                                        .get(&p.user)
                                        .map(|g| g.at(now))
                                        .unwrap_or(((p.longitude, p.latitude), false));
                                    moving |= still;
                                    super::canvas::Dot {
                                        name: &p.user,
                                        lon,
                                        lat,
                                        mine: p.user == me,
                                        stale: now - p.ts as f64 > stale_ms,
                                        trail: &p.trail,
                                    }
                                })
                                .collect();
                            let view = view_state.get_untracked();
                            let on_tile = move || redraw.update(|n| *n += 1);
                            outlines.with_untracked(|rings| {
                                let tiles = tile_source.as_ref().map(|t| super::canvas::TileSource {
                                    url: &t.url,
                                    min_zoom: t.min_zoom.into(),
                                    max_zoom: t.max_zoom.into(),
                                });
                                let basemap = super::canvas::Basemap { outlines: rings, tiles };
                                super::canvas::draw(&el, &view, &basemap, &dots, on_tile)
                            });
                            // For tests and tools: the view as drawn, and the groups of markers.
                            let shown = [
                                ("data-zoom", format!("{:.3}", view.zoom)),
                                ("data-mpp", format!("{:.3}", view.metres_per_pixel())),
                                ("data-drawn", super::canvas::drawn_groups()),
                            ];
                            for (name, value) in shown {
                                if el.get_attribute(name).as_deref() != Some(value.as_str()) {
                                    let _ = el.set_attribute(name, &value);
                                }
                            }
                        });
                    });
                    frame_times.update_value(|t| t.push((started, precise_now() - started)));
                    if moving {
                        redraw.update(|n| *n += 1);
                    }
                });
            }
        })
    };

    {
        let draw = draw.clone();
        Effect::new(move |_| {
            redraw.track();
            draw();
        });
    }

    let place = {
        let topic = topic.clone();
        move |lat: f64, lon: f64| map_client::locate(&topic, lat, lon, trail.get_untracked())
    };

    // Live positions (or, benchmarking, simulated ones).
    if let Some(count) = bench {
        let draw = draw.clone();
        Effect::new(move |_| start_bench(count, incoming, frame_times, draw.clone()));
    } else {
        let topic = topic.clone();
        let draw = draw.clone();
        let handle = handle.clone();
        Effect::new(move |_| {
            let draw_frame = draw.clone();
            let made = client::subscribe(&topic, None, false, move |notice: Notice<'_, MapFrame>| {
                if let Notice::Event(frame) = notice {
                    incoming.update_value(|queue| queue.push(frame.clone()));
                    draw_frame();
                }
            });
            handle.store(made, Ordering::Relaxed);
        });
    }
    // The built-in basemap, fetched once in the browser (under tiles too: where they are
    // missing or still loading, the outlines show).
    {
        let draw = draw.clone();
        let rings = LocalResource::new(world_outlines);
        Effect::new(move |_| {
            if let Some(Ok(list)) = rings.get() {
                outlines.set(list);
                #[cfg(feature = "hydrate")]
                super::canvas::invalidate_basemap();
                draw();
            }
        });
    }
    // The "updated N s ago" labels tick, and a list left behind by throttling catches up.
    Effect::new(move |_| {
        if session.hydrated.get() {
            clock.set(now_ms());
            let ticking = set_interval_with_handle(
                move || {
                    let now = now_ms();
                    clock.set(now);
                    if listing_state.get_value().1 {
                        refresh_listing(now);
                    }
                },
                std::time::Duration::from_secs(1),
            );
            // It stops with the page: leaving the map for another page must not leave it
            // ticking over values that are gone.
            if let Ok(ticking) = ticking {
                on_cleanup(move || ticking.clear());
            }
        }
    });
    {
        let topic = topic.clone();
        let watch = watch.clone();
        on_cleanup(move || {
            client::unsubscribe(&topic, handle.load(Ordering::Relaxed));
            let id = watch.swap(-1, Ordering::AcqRel);
            if id >= 0 {
                map_client::clear_watch(id);
            }
            if sharing.get_untracked() {
                map_client::stop_sharing(&topic);
            }
        });
    }

    let start_sharing = {
        let place = place.clone();
        let watch = watch.clone();
        move |_| {
            error.set(None);
            let place = place.clone();
            let id = map_client::watch_position(place, move |message| {
                error.set(Some(format!("Location unavailable: {message}. Place yourself by hand.")))
            });
            watch.store(id.unwrap_or(-1), Ordering::Release);
            sharing.set(true);
        }
    };
    let stop = {
        let topic = topic.clone();
        let watch = watch.clone();
        move |_| {
            let id = watch.swap(-1, Ordering::AcqRel);
            if id >= 0 {
                map_client::clear_watch(id);
            }
            map_client::stop_sharing(&topic);
            sharing.set(false);
            placing.set(false);
        }
    };

    // One pointer pans the map, or drags my marker when it starts on it (and my position is
    // set by hand); two pointers pinch. In "place by hand" mode a click puts me there.
    let my_spot = move || {
        let me = client::my_name();
        positions.with_value(|p| p.get(&me).map(|p| view_state.get_untracked().to_screen(p.longitude, p.latitude)))
    };
    let by_hand = {
        let watch = watch.clone();
        move || placing.get_untracked() || watch.load(Ordering::Acquire) < 0
    };
    // Move my marker to a canvas point at once, and tell the others (at most ten times a
    // second while dragging; the last position always goes out).
    let move_me = {
        let place = place.clone();
        move |x: f64, y: f64, last: bool| {
            let (lon, lat) = view_state.get_untracked().to_position(x, y);
            let me = client::my_name();
            positions.update_value(|p| {
                if let Some(mine) = p.get_mut(&me) {
                    mine.latitude = lat;
                    mine.longitude = lon;
                    mine.ts = now_ms() as i64;
                }
            });
            glides.update_value(|g| {
                g.remove(&me);
            });
            let now = now_ms();
            if last || now - drag_sent_at.get_value() >= 100.0 {
                drag_sent_at.set_value(now);
                place(lat, lon);
            }
        }
    };
    let on_pointerdown = move |ev: leptos::ev::PointerEvent| {
        touched.set_value(true);
        let (x, y) = (f64::from(ev.offset_x()), f64::from(ev.offset_y()));
        if let Some(el) = canvas.get_untracked() {
            let _ = el.set_pointer_capture(ev.pointer_id());
        }
        pointers.update_value(|p| {
            p.retain(|(id, _, _)| *id != ev.pointer_id());
            p.push((ev.pointer_id(), x, y));
        });
        gesture_moved.set_value(0.0);
        let single = pointers.with_value(|p| p.len() == 1);
        let on_me = my_spot().is_some_and(|(mx, my)| (mx - x).hypot(my - y) <= 14.0);
        dragging_me.set_value(single && on_me && by_hand());
    };
    let on_pointermove = {
        let draw = draw.clone();
        let move_me = move_me.clone();
        move |ev: leptos::ev::PointerEvent| {
            let (x, y) = (f64::from(ev.offset_x()), f64::from(ev.offset_y()));
            let before = pointers.with_value(|p| p.clone());
            let Some(index) = before.iter().position(|(id, _, _)| *id == ev.pointer_id()) else { return };
            let (_, px, py) = before[index];
            pointers.update_value(|p| p[index] = (ev.pointer_id(), x, y));
            gesture_moved.update_value(|m| *m += (x - px).abs() + (y - py).abs());
            if let [(_, ax, ay), (_, bx, by)] = before[..] {
                let mut after = [(ax, ay), (bx, by)];
                after[index] = (x, y);
                view_state.update_untracked(|v| v.pinch([(ax, ay), (bx, by)], after));
                dragging_me.set_value(false);
            } else if dragging_me.get_value() {
                move_me(x, y, false);
            } else {
                view_state.update_untracked(|v| v.pan(x - px, y - py));
            }
            draw();
        }
    };
    let on_pointerup = {
        let place = place.clone();
        let draw = draw.clone();
        move |ev: leptos::ev::PointerEvent| {
            let (x, y) = (f64::from(ev.offset_x()), f64::from(ev.offset_y()));
            let was_single = pointers.with_value(|p| p.len() == 1);
            pointers.update_value(|p| p.retain(|(id, _, _)| *id != ev.pointer_id()));
            let click = was_single && gesture_moved.get_value() < 5.0;
            if dragging_me.get_value() {
                move_me(x, y, true);
                dragging_me.set_value(false);
            } else if click && placing.get_untracked() {
                let (lon, lat) = view_state.get_untracked().to_position(x, y);
                place(lat, lon);
                sharing.set(true);
            } else if click {
                let _ = &draw;
                // A click on a cluster zooms in until its people stand apart.
                #[cfg(feature = "hydrate")]
                if let Some(cluster) = super::canvas::cluster_at(x, y) {
                    view_state.update_untracked(|v| {
                        let before = v.zoom;
                        v.fit(&cluster.members, 80.0, crate::map::projection::MAX_ZOOM);
                        if v.zoom < before + 1.0 {
                            // Too close together to frame apart: step in on the cluster.
                            v.zoom = before;
                            v.zoom_at(2.0, x, y);
                        }
                    });
                    draw();
                }
            }
        }
    };
    let on_pointercancel = move |ev: leptos::ev::PointerEvent| {
        pointers.update_value(|p| p.retain(|(id, _, _)| *id != ev.pointer_id()));
        dragging_me.set_value(false);
    };
    let on_wheel = {
        let draw = draw.clone();
        move |ev: leptos::ev::WheelEvent| {
            ev.prevent_default();
            touched.set_value(true);
            let delta = (-ev.delta_y() / 400.0).clamp(-1.0, 1.0);
            view_state.update_untracked(|v| v.zoom_at(delta, f64::from(ev.offset_x()), f64::from(ev.offset_y())));
            draw();
        }
    };
    let zoom_by = {
        let draw = draw.clone();
        move |delta: f64| {
            touched.set_value(true);
            view_state.update_untracked(|v| {
                let (w, h) = (v.width, v.height);
                v.zoom_at(delta, w / 2.0, h / 2.0);
            });
            draw();
        }
    };
    let zoom_in = {
        let zoom_by = zoom_by.clone();
        move |_| zoom_by(1.0)
    };
    let zoom_out = {
        let zoom_by = zoom_by.clone();
        move |_| zoom_by(-1.0)
    };
    let show_everyone = {
        let draw = draw.clone();
        move |_| {
            touched.set_value(true);
            frame_everyone();
            draw();
        }
    };

    // Placing by hand takes over from the device's position.
    let place_by_hand = {
        let watch = watch.clone();
        move |ev: leptos::ev::Event| {
            let on = event_target_checked(&ev);
            if on {
                let id = watch.swap(-1, Ordering::AcqRel);
                if id >= 0 {
                    map_client::clear_watch(id);
                }
            }
            placing.set(on);
        }
    };
    let attribution = tiles.and_then(|t| t.attribution);

    let age = move |ts: i64| {
        let now = clock.get();
        if now <= 0.0 {
            return String::new();
        }
        let seconds = ((now - ts as f64) / 1000.0).max(0.0).round() as u64;
        match seconds {
            0..=4 => "just now".to_owned(),
            5..=59 => format!("{seconds} s ago"),
            _ => format!("{} min ago", seconds / 60),
        }
    };

    view! {
        <div class="map-page">
            <div class="map-head">
                <h1 class="room-title">"Map of " {if room.private { "🔒 " } else { "# " }} {room.name.clone()}</h1>
                <a href=format!("/rooms/{}", room.name)>"Back to chat"</a>
                <div class="map-actions">
                    <Show
                        when=move || sharing.get()
                        fallback=move || view! {
                            <button on:click=start_sharing.clone() disabled=move || !session.hydrated.get()>"Share my location"</button>
                        }
                    >
                        <button on:click=stop.clone()>"Stop sharing"</button>
                    </Show>
                    <label class="check">
                        <input type="checkbox" prop:checked=move || placing.get() on:change=place_by_hand/>
                        "Place me by clicking the map"
                    </label>
                    <label class="check">
                        <input type="checkbox" prop:checked=move || trail.get() on:change=move |ev| trail.set(event_target_checked(&ev))/>
                        "Leave a trail"
                    </label>
                </div>
            </div>
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            <div class="map-body">
                <div class="map-frame">
                    <canvas
                        class="map-canvas"
                        class:placing=move || placing.get()
                        node_ref=canvas
                        aria-label="Map"
                        on:pointerdown=on_pointerdown
                        on:pointermove=on_pointermove
                        on:pointerup=on_pointerup
                        on:pointercancel=on_pointercancel
                        on:wheel=on_wheel
                    ></canvas>
                    {attribution.map(|text| view! { <p class="map-attribution">{text}</p> })}
                    <div class="map-zoom">
                        <button on:click=zoom_in aria-label="Zoom in">"+"</button>
                        <button on:click=zoom_out aria-label="Zoom out">"−"</button>
                        <button on:click=show_everyone aria-label="Show everyone" title="Show everyone">"⤢"</button>
                    </div>
                </div>
                <ul class="map-people" data-testid="map-people" aria-label="People on the map">
                    <For each=move || listing.get() key=|p| (p.user.clone(), p.ts) let(p)>
                        <li
                            data-user=p.user.clone()
                            data-lat=p.latitude.to_string()
                            data-lon=p.longitude.to_string()
                            class:stale={
                                let ts = p.ts as f64;
                                move || clock.get() - ts > stale_ms
                            }
                        >
                            <strong>{p.user.clone()}</strong>
                            <span class="where">{format!("{:.4}, {:.4}", p.latitude, p.longitude)}</span>
                            <span class="ago">{
                                let ts = p.ts;
                                move || age(ts)
                            }</span>
                        </li>
                    </For>
                    <Show when=move || { listed_total.get() > LIST_LIMIT }>
                        <li class="more">{move || format!("and {} more on the map", listed_total.get() - LIST_LIMIT)}</li>
                    </Show>
                    <Show when=move || listing.with(Vec::is_empty)>
                        <li class="empty">"Nobody is sharing a location here yet."</li>
                    </Show>
                </ul>
            </div>
        </div>
    }
}
