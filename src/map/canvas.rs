//! Drawing the map on a canvas: the basemap (country outlines, a grid closer than they are
//! good for, raster tiles where there are any), then the people on it, then the scale bar.
//! Called at most once per animation frame.
//!
//! People whose markers would overlap are drawn as one cluster with their count, which
//! splits as the map zooms in; at the closest zoom a cluster is fanned out around its place.
//!
//! The basemap only changes when the view does, so it is drawn into an offscreen canvas and
//! copied while markers glide. A marker is drawn once into a small sprite and stamped for each
//! person (rasterising a thousand anti-aliased circles every frame is what made frames slow),
//! and names are written only when few enough are visible to be read.

use std::cell::RefCell;
use std::collections::HashMap;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, HtmlImageElement};

use crate::map::projection::{clusters, fanned_out, project, scale_bar, View, CLUSTER_PX, MAX_ZOOM};

/// Closer than this zoom, the built-in outlines (1:110 million) would mislead: the map shows
/// a neutral background with a grid instead.
pub const OUTLINE_DETAIL: f64 = 6.0;

/// Above this many people in view, only my own name is written next to a marker.
const LABEL_LIMIT: usize = 200;
/// Tiles kept in memory; past this, those out of view are dropped.
const TILE_CACHE: usize = 300;

/// A person on the map as drawn now.
pub struct Dot<'a> {
    pub name: &'a str,
    pub lon: f64,
    pub lat: f64,
    pub mine: bool,
    /// Drawn faded: the position is older than the stale age.
    pub stale: bool,
    /// Earlier positions (latitude, longitude), oldest first, drawn as a line to the dot.
    pub trail: &'a [[f64; 2]],
}

/// What is under the markers: country outlines (longitude, latitude rings, served by the
/// app), and raster tiles over them where there are any.
pub struct Basemap<'a> {
    pub outlines: &'a [Vec<[f32; 2]>],
    pub tiles: Option<TileSource<'a>>,
}

/// Raster tiles: a URL template with `{z}`, `{x}`, `{y}`, and the zooms they exist at.
pub struct TileSource<'a> {
    pub url: &'a str,
    pub min_zoom: u32,
    pub max_zoom: u32,
}

/// A group of people as drawn: where, how many, and where each of them is.
#[derive(Clone, Debug)]
pub struct Drawn {
    pub x: f64,
    pub y: f64,
    pub radius: f64,
    /// Longitude and latitude of each member.
    pub members: Vec<(f64, f64)>,
}

#[derive(Default)]
struct Cache {
    base: Option<HtmlCanvasElement>,
    /// What the offscreen basemap shows: the view and the generation it was drawn at.
    drawn: Option<(View, f64, u64)>,
    generation: u64,
    tiles: HashMap<(u32, u32, u32), HtmlImageElement>,
    /// Names' widths in the label font: measuring text every frame is not free.
    widths: HashMap<String, f64>,
    /// Marker sprites (someone else's, mine) for a pixel ratio.
    sprites: Option<(f64, [HtmlCanvasElement; 2])>,
    /// The clusters of the last frame, for clicks.
    clusters: Vec<Drawn>,
}

/// Marker radius in CSS pixels: someone else's, mine.
const RADIUS: [f64; 2] = [6.0, 8.0];
const COLOUR: [&str; 2] = ["#2f5d8a", "#d9480f"];

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// The basemap's data changed (the outlines arrived): draw it again on the next frame.
pub fn invalidate_basemap() {
    CACHE.with_borrow_mut(|c| c.generation += 1);
}

fn new_canvas() -> Option<HtmlCanvasElement> {
    web_sys::window()?.document()?.create_element("canvas").ok()?.dyn_into().ok()
}

/// A filled circle with a white rim, `radius` CSS pixels, drawn at the screen's pixel ratio.
fn sprite(radius: f64, colour: &str, ratio: f64) -> Option<HtmlCanvasElement> {
    let canvas = new_canvas()?;
    let side = ((radius + 2.0) * 2.0 * ratio).ceil() as u32;
    canvas.set_width(side);
    canvas.set_height(side);
    let ctx = context(&canvas)?;
    let _ = ctx.set_transform(ratio, 0.0, 0.0, ratio, 0.0, 0.0);
    ctx.begin_path();
    let centre = radius + 2.0;
    let _ = ctx.arc(centre, centre, radius, 0.0, std::f64::consts::TAU);
    ctx.set_fill_style_str(colour);
    ctx.fill();
    ctx.set_stroke_style_str("#ffffff");
    ctx.set_line_width(2.0);
    ctx.stroke();
    Some(canvas)
}

fn sprites(cache: &mut Cache, ratio: f64) -> Option<[HtmlCanvasElement; 2]> {
    match &cache.sprites {
        Some((made_for, sprites)) if *made_for == ratio => Some(sprites.clone()),
        _ => {
            let made = [sprite(RADIUS[0], COLOUR[0], ratio)?, sprite(RADIUS[1], COLOUR[1], ratio)?];
            cache.sprites = Some((ratio, made.clone()));
            Some(made)
        }
    }
}

fn context(canvas: &HtmlCanvasElement) -> Option<CanvasRenderingContext2d> {
    canvas.get_context("2d").ok()??.dyn_into::<CanvasRenderingContext2d>().ok()
}

fn pixel_ratio() -> f64 {
    web_sys::window().map_or(1.0, |w| w.device_pixel_ratio())
}

/// Size the canvas to its box (sharp on high-density screens) and return the view's size.
pub fn fit(canvas: &HtmlCanvasElement) -> (f64, f64) {
    let ratio = pixel_ratio();
    let (width, height) = (f64::from(canvas.client_width()), f64::from(canvas.client_height()));
    let (pw, ph) = ((width * ratio).round() as u32, (height * ratio).round() as u32);
    if canvas.width() != pw || canvas.height() != ph {
        canvas.set_width(pw);
        canvas.set_height(ph);
    }
    (width, height)
}

/// The cluster of several people drawn under a canvas point, if any (from the last frame).
pub fn cluster_at(x: f64, y: f64) -> Option<Drawn> {
    CACHE.with_borrow(|cache| {
        cache.clusters.iter().find(|c| c.members.len() > 1 && (c.x - x).hypot(c.y - y) <= c.radius + 4.0).cloned()
    })
}

/// The sizes of the groups drawn in the last frame, largest first (`2` for a cluster of two,
/// `1 1` for two markers), for tests and tools.
pub fn drawn_groups() -> String {
    CACHE.with_borrow(|cache| {
        let mut sizes: Vec<usize> = cache.clusters.iter().map(|c| c.members.len()).collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        sizes.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
    })
}

/// Draw a frame. `on_tile` is called when a tile image arrives, to ask for another frame.
pub fn draw(
    canvas: &HtmlCanvasElement,
    view: &View,
    basemap: &Basemap,
    dots: &[Dot],
    on_tile: impl Fn() + Clone + 'static,
) {
    let Some(ctx) = context(canvas) else { return };
    let ratio = pixel_ratio();
    let (base, sprites) = CACHE.with_borrow_mut(|cache| {
        (refresh_basemap(cache, canvas, view, ratio, basemap, on_tile), sprites(cache, ratio))
    });
    let _ = ctx.set_transform(1.0, 0.0, 0.0, 1.0, 0.0, 0.0);
    match base {
        Some(base) => {
            let _ = ctx.draw_image_with_html_canvas_element(&base, 0.0, 0.0);
        }
        None => {
            ctx.set_fill_style_str("#dce9f5");
            ctx.fill_rect(0.0, 0.0, f64::from(canvas.width()), f64::from(canvas.height()));
        }
    }
    let _ = ctx.set_transform(ratio, 0.0, 0.0, ratio, 0.0, 0.0);
    if let Some(sprites) = sprites {
        let drawn = draw_people(&ctx, view, dots, &sprites);
        CACHE.with_borrow_mut(|cache| cache.clusters = drawn);
    }
    draw_scale(&ctx, view);
}

/// The scale bar, bottom left: a round length at the centre's latitude.
fn draw_scale(ctx: &CanvasRenderingContext2d, view: &View) {
    let (_, px, label) = scale_bar(view.metres_per_pixel(), 120.0);
    let (left, bottom) = (10.0, view.height - 12.0);
    ctx.set_global_alpha(0.85);
    ctx.set_fill_style_str("#ffffff");
    ctx.fill_rect(left - 4.0, bottom - 20.0, px + 8.0, 26.0);
    ctx.set_global_alpha(1.0);
    ctx.set_stroke_style_str("#1d232b");
    ctx.set_line_width(2.0);
    ctx.begin_path();
    ctx.move_to(left, bottom - 6.0);
    ctx.line_to(left, bottom);
    ctx.line_to(left + px, bottom);
    ctx.line_to(left + px, bottom - 6.0);
    ctx.stroke();
    ctx.set_font("12px system-ui, sans-serif");
    ctx.set_text_baseline("alphabetic");
    ctx.set_fill_style_str("#1d232b");
    let _ = ctx.fill_text(&label, left + 2.0, bottom - 6.0);
}

/// The offscreen basemap for this view, drawn again only if the view or its data changed.
fn refresh_basemap(
    cache: &mut Cache,
    canvas: &HtmlCanvasElement,
    view: &View,
    ratio: f64,
    basemap: &Basemap,
    on_tile: impl Fn() + Clone + 'static,
) -> Option<HtmlCanvasElement> {
    if cache.base.is_none() {
        cache.base = new_canvas();
    }
    let base = cache.base.clone()?;
    let key = (*view, ratio, cache.generation);
    if cache.drawn == Some(key) && base.width() == canvas.width() && base.height() == canvas.height() {
        return Some(base);
    }
    base.set_width(canvas.width());
    base.set_height(canvas.height());
    let ctx = context(&base)?;
    let _ = ctx.set_transform(ratio, 0.0, 0.0, ratio, 0.0, 0.0);
    if view.zoom <= OUTLINE_DETAIL {
        ctx.set_fill_style_str("#dce9f5");
        ctx.fill_rect(0.0, 0.0, view.width, view.height);
        draw_outlines(&ctx, view, basemap.outlines);
    } else {
        ctx.set_fill_style_str("#eceef0");
        ctx.fill_rect(0.0, 0.0, view.width, view.height);
        draw_grid(&ctx, view);
    }
    if let Some(tiles) = &basemap.tiles {
        draw_tiles(&ctx, cache, view, tiles, on_tile);
    }
    cache.drawn = Some(key);
    Some(base)
}

/// Land: every ring in every copy of the world the canvas shows, in one path, filled and
/// stroked once. Rings reach past ±180° where they cross the antimeridian (the server made
/// them continuous), so each copy draws its share of them and no edge crosses the map.
fn draw_outlines(ctx: &CanvasRenderingContext2d, view: &View, rings: &[Vec<[f32; 2]>]) {
    let (left, top, size) = view.origin();
    let scale = size / 360.0;
    ctx.begin_path();
    for copy in view.world_copies() {
        let shift = copy as f64 * size - left;
        for ring in rings {
            let mut points = ring.iter();
            let Some(first) = points.next() else { continue };
            let (_, y) = project(0.0, f64::from(first[1]), view.zoom);
            ctx.move_to((f64::from(first[0]) + 180.0) * scale + shift, y - top);
            for point in points {
                let (_, y) = project(0.0, f64::from(point[1]), view.zoom);
                ctx.line_to((f64::from(point[0]) + 180.0) * scale + shift, y - top);
            }
            ctx.close_path();
        }
    }
    ctx.set_fill_style_str("#f4f1e8");
    ctx.fill();
    ctx.set_stroke_style_str("#a9a397");
    ctx.set_line_width(0.6);
    ctx.stroke();
}

/// Closer than the outlines go: a grid of round distances (those of the scale bar), fixed to
/// the ground, so that panning and zooming still show movement and scale.
fn draw_grid(ctx: &CanvasRenderingContext2d, view: &View) {
    let (_, step, _) = scale_bar(view.metres_per_pixel(), 120.0);
    let (left, top, _) = view.origin();
    if !step.is_finite() || step <= 4.0 {
        return;
    }
    ctx.begin_path();
    let mut x = -(left.rem_euclid(step));
    while x <= view.width {
        ctx.move_to(x.round() + 0.5, 0.0);
        ctx.line_to(x.round() + 0.5, view.height);
        x += step;
    }
    let mut y = -(top.rem_euclid(step));
    while y <= view.height {
        ctx.move_to(0.0, y.round() + 0.5);
        ctx.line_to(view.width, y.round() + 0.5);
        y += step;
    }
    ctx.set_stroke_style_str("#d3d7dc");
    ctx.set_line_width(1.0);
    ctx.stroke();
}

fn tile_url(template: &str, z: u32, x: u32, y: u32) -> String {
    template.replace("{z}", &z.to_string()).replace("{x}", &x.to_string()).replace("{y}", &y.to_string())
}

fn draw_tiles(
    ctx: &CanvasRenderingContext2d,
    cache: &mut Cache,
    view: &View,
    source: &TileSource,
    on_tile: impl Fn() + Clone + 'static,
) {
    // Farther out than the tiles go, asking for them would only fetch nothing (or, for an
    // archive that starts at street level, thousands of tiles).
    if view.zoom.round() < f64::from(source.min_zoom) {
        return;
    }
    let template = source.url;
    let spots = view.tiles(source.max_zoom);
    if cache.tiles.len() > TILE_CACHE {
        let wanted: Vec<_> = spots.iter().map(|t| (t.z, t.x, t.y)).collect();
        cache.tiles.retain(|key, _| wanted.contains(key));
    }
    for spot in spots {
        let key = (spot.z, spot.x, spot.y);
        let image = match cache.tiles.get(&key) {
            Some(image) => image.clone(),
            None => {
                let Ok(image) = HtmlImageElement::new() else { continue };
                let on_tile = on_tile.clone();
                // A tile that arrives invalidates the basemap and asks for a frame.
                let loaded = Closure::<dyn Fn()>::new(move || {
                    invalidate_basemap();
                    on_tile();
                });
                image.set_onload(Some(loaded.as_ref().unchecked_ref()));
                // Loaded with CORS, so tiles do not taint the canvas (tile servers allow it).
                image.set_cross_origin(Some("anonymous"));
                loaded.forget();
                image.set_src(&tile_url(template, spot.z, spot.x, spot.y));
                cache.tiles.insert(key, image.clone());
                image
            }
        };
        if image.complete() && image.natural_width() > 0 {
            let _ = ctx.draw_image_with_html_image_element_and_dw_and_dh(
                &image,
                spot.left.floor(),
                spot.top.floor(),
                spot.size.ceil() + 1.0,
                spot.size.ceil() + 1.0,
            );
        }
    }
}

fn text_width(ctx: &CanvasRenderingContext2d, text: &str) -> f64 {
    CACHE.with_borrow_mut(|cache| {
        if let Some(width) = cache.widths.get(text) {
            return *width;
        }
        if cache.widths.len() > 5_000 {
            cache.widths.clear();
        }
        let width = ctx.measure_text(text).map_or(60.0, |m| m.width());
        cache.widths.insert(text.to_owned(), width);
        width
    })
}

/// Trails, then markers and clusters, then names. Returns the groups drawn.
fn draw_people(
    ctx: &CanvasRenderingContext2d,
    view: &View,
    dots: &[Dot],
    sprites: &[HtmlCanvasElement; 2],
) -> Vec<Drawn> {
    let on_canvas = |(x, y): (f64, f64)| x > -50.0 && y > -50.0 && x < view.width + 50.0 && y < view.height + 50.0;
    for dot in dots.iter().filter(|d| !d.trail.is_empty()) {
        ctx.begin_path();
        for (i, [lat, lon]) in dot.trail.iter().enumerate() {
            let (x, y) = view.to_screen(*lon, *lat);
            if i == 0 {
                ctx.move_to(x, y);
            } else {
                ctx.line_to(x, y);
            }
        }
        let (x, y) = view.to_screen(dot.lon, dot.lat);
        ctx.line_to(x, y);
        ctx.set_global_alpha(if dot.stale { 0.3 } else { 0.7 });
        ctx.set_stroke_style_str(COLOUR[usize::from(dot.mine)]);
        ctx.set_line_width(2.5);
        ctx.stroke();
    }
    let on_screen: Vec<(&Dot, (f64, f64))> =
        dots.iter().map(|d| (d, view.to_screen(d.lon, d.lat))).filter(|(_, at)| on_canvas(*at)).collect();
    // Overlapping markers become one cluster; at the closest zoom (where zooming in cannot
    // split it) a cluster is fanned out around its place instead.
    let points: Vec<(f64, f64)> = on_screen.iter().map(|(_, at)| *at).collect();
    let groups = clusters(&points, CLUSTER_PX);
    let fan_out = view.zoom >= MAX_ZOOM - 1e-6;
    let mut drawn = Vec::with_capacity(groups.len());
    let mut visible: Vec<(&Dot, (f64, f64))> = Vec::with_capacity(on_screen.len());
    let mut bubbles: Vec<((f64, f64), f64, usize, bool)> = Vec::new();
    for (members, centre) in &groups {
        let place = |i: usize| (on_screen[i].0.lon, on_screen[i].0.lat);
        if members.len() == 1 {
            visible.push(on_screen[members[0]]);
            drawn.push(Drawn { x: centre.0, y: centre.1, radius: 10.0, members: vec![place(members[0])] });
        } else if fan_out {
            for (&i, at) in members.iter().zip(fanned_out(*centre, members.len())) {
                visible.push((on_screen[i].0, at));
                drawn.push(Drawn { x: at.0, y: at.1, radius: 10.0, members: vec![place(i)] });
            }
        } else {
            let mine = members.iter().any(|&i| on_screen[i].0.mine);
            let radius = 12.0 + (members.len() as f64).log10() * 4.0;
            bubbles.push((*centre, radius, members.len(), mine));
            drawn.push(Drawn {
                x: centre.0,
                y: centre.1,
                radius,
                members: members.iter().map(|&i| place(i)).collect(),
            });
        }
    }
    // Trails left the alpha lowered.
    ctx.set_global_alpha(1.0);
    for &((x, y), radius, count, mine) in &bubbles {
        ctx.begin_path();
        let _ = ctx.arc(x, y, radius, 0.0, std::f64::consts::TAU);
        ctx.set_fill_style_str(COLOUR[0]);
        ctx.fill();
        ctx.set_stroke_style_str(if mine { COLOUR[1] } else { "#ffffff" });
        ctx.set_line_width(if mine { 3.0 } else { 2.0 });
        ctx.stroke();
        ctx.set_fill_style_str("#ffffff");
        ctx.set_font("bold 12px system-ui, sans-serif");
        ctx.set_text_align("center");
        ctx.set_text_baseline("middle");
        let _ = ctx.fill_text(&count.to_string(), x, y + 0.5);
    }
    ctx.set_text_align("start");
    let labels = visible.len() <= LABEL_LIMIT;
    ctx.set_font("12px system-ui, sans-serif");
    ctx.set_text_baseline("middle");
    ctx.set_fill_style_str("#1d232b");
    // Names go where they do not cover another name; mine first, so it always shows.
    let mut placed: Vec<(f64, f64, f64, f64)> = Vec::new();
    let mut label_at = |dot: &Dot, x: f64, y: f64| -> Option<(f64, f64)> {
        let radius = RADIUS[usize::from(dot.mine)];
        let width = text_width(ctx, dot.name);
        let (left, top) = (x + radius + 4.0, y - 8.0);
        let free =
            placed.iter().all(|(l, t, w, h)| left + width < *l || *l + w < left || top + 16.0 < *t || *t + h < top);
        free.then(|| {
            placed.push((left, top, width, 16.0));
            (left, y)
        })
    };
    let mut labels_at: Vec<Option<(f64, f64)>> = vec![None; visible.len()];
    if labels {
        let order =
            (0..visible.len()).filter(|i| visible[*i].0.mine).chain((0..visible.len()).filter(|i| !visible[*i].0.mine));
        for i in order.collect::<Vec<_>>() {
            let (dot, (x, y)) = visible[i];
            labels_at[i] = label_at(dot, x, y);
        }
    } else if let Some(i) = visible.iter().position(|(d, _)| d.mine) {
        let (dot, (x, y)) = visible[i];
        labels_at[i] = label_at(dot, x, y);
    }
    // Stale ones first, then fresh ones, then mine, so that mine is on top.
    let layer = |d: &Dot| if d.mine { 2 } else { u8::from(!d.stale) };
    for pass in 0..3u8 {
        ctx.set_global_alpha(if pass == 0 { 0.35 } else { 1.0 });
        for (i, (dot, (x, y))) in visible.iter().enumerate().filter(|(_, (d, _))| layer(d) == pass) {
            let mine = usize::from(dot.mine);
            let half = RADIUS[mine] + 2.0;
            // Whole pixels: stamping at fractional positions would resample the sprite.
            let (left, top) = ((x - half).round(), (y - half).round());
            let _ = ctx.draw_image_with_html_canvas_element_and_dw_and_dh(
                &sprites[mine],
                left,
                top,
                half * 2.0,
                half * 2.0,
            );
            if let Some((lx, ly)) = labels_at[i] {
                let _ = ctx.fill_text(dot.name, lx, ly);
            }
        }
    }
    ctx.set_global_alpha(1.0);
    drawn
}
