//! Drawing the map on a canvas: the country outlines, then one dot per person.
//! Called at most once per animation frame.

use wasm_bindgen::JsCast;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement};

use crate::components::projection::View;

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

fn context(canvas: &HtmlCanvasElement) -> Option<CanvasRenderingContext2d> {
    canvas.get_context("2d").ok()??.dyn_into::<CanvasRenderingContext2d>().ok()
}

/// Size the canvas to its box (sharp on high-density screens) and return the view's size.
pub fn fit(canvas: &HtmlCanvasElement) -> (f64, f64) {
    let ratio = web_sys::window().map_or(1.0, |w| w.device_pixel_ratio());
    let (width, height) = (f64::from(canvas.client_width()), f64::from(canvas.client_height()));
    let (pw, ph) = ((width * ratio).round() as u32, (height * ratio).round() as u32);
    if canvas.width() != pw || canvas.height() != ph {
        canvas.set_width(pw);
        canvas.set_height(ph);
    }
    (width, height)
}

pub fn draw(canvas: &HtmlCanvasElement, view: &View, outlines: &[Vec<[f32; 2]>], dots: &[Dot]) {
    let Some(ctx) = context(canvas) else { return };
    let ratio = web_sys::window().map_or(1.0, |w| w.device_pixel_ratio());
    let _ = ctx.set_transform(ratio, 0.0, 0.0, ratio, 0.0, 0.0);
    ctx.set_fill_style_str("#dce9f5");
    ctx.fill_rect(0.0, 0.0, view.width, view.height);

    // Land: every ring in one path, filled and stroked once.
    ctx.begin_path();
    for ring in outlines {
        let mut previous: Option<f32> = None;
        for point in ring {
            let (x, y) = view.to_screen(f64::from(point[0]), f64::from(point[1]));
            // A ring that crosses the antimeridian jumps across the whole map: lift the pen.
            match previous {
                Some(lon) if (point[0] - lon).abs() < 180.0 => ctx.line_to(x, y),
                _ => ctx.move_to(x, y),
            }
            previous = Some(point[0]);
        }
    }
    ctx.set_fill_style_str("#f4f1e8");
    ctx.fill();
    ctx.set_stroke_style_str("#a9a397");
    ctx.set_line_width(0.6);
    ctx.stroke();

    ctx.set_font("12px system-ui, sans-serif");
    ctx.set_text_baseline("middle");
    // Mine last, so it is on top.
    let mut ordered: Vec<&Dot> = dots.iter().filter(|d| !d.mine).collect();
    ordered.extend(dots.iter().filter(|d| d.mine));
    for dot in ordered.iter().filter(|d| !d.trail.is_empty()) {
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
        ctx.set_stroke_style_str(if dot.mine { "#d9480f" } else { "#2f5d8a" });
        ctx.set_line_width(2.5);
        ctx.stroke();
    }
    for dot in ordered {
        let (x, y) = view.to_screen(dot.lon, dot.lat);
        if x < -50.0 || y < -50.0 || x > view.width + 50.0 || y > view.height + 50.0 {
            continue;
        }
        ctx.set_global_alpha(if dot.stale { 0.35 } else { 1.0 });
        let radius = if dot.mine { 8.0 } else { 6.0 };
        ctx.begin_path();
        let _ = ctx.arc(x, y, radius, 0.0, std::f64::consts::TAU);
        ctx.set_fill_style_str(if dot.mine { "#d9480f" } else { "#2f5d8a" });
        ctx.fill();
        ctx.set_stroke_style_str("#ffffff");
        ctx.set_line_width(2.0);
        ctx.stroke();
        ctx.set_fill_style_str("#1d232b");
        let _ = ctx.fill_text(dot.name, x + radius + 4.0, y);
    }
    ctx.set_global_alpha(1.0);
}
