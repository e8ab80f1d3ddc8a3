//! Drawing a sensor chart on a canvas: grid, time and value axes, threshold lines, one line
//! per series, and the hover cursor. Called at most once per animation frame.
//!
//! However many points fall in the window, each series is drawn as one column per pixel
//! (first, min, max, last), so the cost follows the canvas width, not the data.

use wasm_bindgen::JsCast;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement};

use crate::sensors::chart::{columns, ticks, time_ticks, value_range, Sample};

/// The plot's margins in CSS pixels: left (value labels), right, top, bottom (time labels).
pub const MARGIN: (f64, f64, f64, f64) = (58.0, 14.0, 12.0, 24.0);

/// One series to draw.
pub struct Line<'a> {
    pub colour: &'a str,
    pub unit: &'a str,
    /// The points of the window, in time order.
    pub points: &'a [Sample],
    pub low: Option<f64>,
    pub high: Option<f64>,
}

fn context(canvas: &HtmlCanvasElement) -> Option<CanvasRenderingContext2d> {
    canvas.get_context("2d").ok()??.dyn_into::<CanvasRenderingContext2d>().ok()
}

/// The time under a canvas x coordinate (CSS pixels), if it is inside the plot.
pub fn time_at(canvas: &HtmlCanvasElement, from: i64, to: i64, x: f64) -> Option<i64> {
    let width = f64::from(canvas.client_width()) - MARGIN.0 - MARGIN.1;
    let t = (x - MARGIN.0) / width;
    (0.0..=1.0).contains(&t).then(|| from + ((to - from) as f64 * t) as i64)
}

/// A time as the axis shows it, in the browser's time zone.
pub fn clock_label(ms: i64, seconds: bool) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
    let (h, m, s) = (date.get_hours(), date.get_minutes(), date.get_seconds());
    if seconds {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}")
    }
}

/// A number short enough for an axis label.
pub fn short_number(v: f64) -> String {
    let a = v.abs();
    if a >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if a >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Draw the window `[from, to)`. `hover`: the time under the pointer, marked with a line.
pub fn draw(canvas: &HtmlCanvasElement, from: i64, to: i64, lines: &[Line], hover: Option<i64>) {
    let Some(ctx) = context(canvas) else { return };
    let (width, height) = crate::map::canvas::fit(canvas);
    let ratio = web_sys::window().map_or(1.0, |w| w.device_pixel_ratio());
    let _ = ctx.set_transform(ratio, 0.0, 0.0, ratio, 0.0, 0.0);
    ctx.set_fill_style_str("#ffffff");
    ctx.fill_rect(0.0, 0.0, width, height);
    let (left, right, top, bottom) = MARGIN;
    let (plot_w, plot_h) = ((width - left - right).max(1.0), (height - top - bottom).max(1.0));
    let columns_wide = plot_w.round().max(1.0) as usize;

    // Reduce each series to pixel columns once; the value range follows what is shown.
    let reduced: Vec<_> = lines.iter().map(|l| columns(l.points, from, to, columns_wide)).collect();
    let data = reduced.iter().flatten().fold(None, |acc: Option<(f64, f64)>, c| {
        Some(acc.map_or((c.min, c.max), |(lo, hi)| (lo.min(c.min), hi.max(c.max))))
    });
    let thresholds: Vec<f64> = lines.iter().flat_map(|l| [l.low, l.high]).flatten().collect();
    let (lo, hi) = value_range(data, &thresholds);
    let y = |v: f64| top + plot_h - (v - lo) / (hi - lo) * plot_h;
    let x = |t: i64| left + (t - from) as f64 / (to - from).max(1) as f64 * plot_w;

    // Grid and labels.
    ctx.set_font("11px system-ui, sans-serif");
    ctx.set_line_width(1.0);
    ctx.set_stroke_style_str("#e6e9ee");
    ctx.set_fill_style_str("#5b6472");
    ctx.set_text_align("right");
    ctx.set_text_baseline("middle");
    ctx.begin_path();
    for v in ticks(lo, hi, (plot_h / 45.0).max(2.0) as usize) {
        let yy = y(v).round() + 0.5;
        ctx.move_to(left, yy);
        ctx.line_to(left + plot_w, yy);
        let _ = ctx.fill_text(&short_number(v), left - 6.0, yy);
    }
    let seconds = to - from <= 10 * 60_000;
    ctx.set_text_align("center");
    ctx.set_text_baseline("top");
    for t in time_ticks(from, to, (plot_w / 110.0).max(2.0) as usize) {
        let xx = x(t).round() + 0.5;
        ctx.move_to(xx, top);
        ctx.line_to(xx, top + plot_h);
        let _ = ctx.fill_text(&clock_label(t, seconds), xx, top + plot_h + 6.0);
    }
    ctx.stroke();

    // Threshold lines, dashed, in the series' colour.
    let dash = js_sys::Array::of2(&6.0.into(), &4.0.into());
    let _ = ctx.set_line_dash(&dash);
    ctx.set_text_align("left");
    ctx.set_text_baseline("bottom");
    for line in lines {
        for (threshold, label) in [(line.high, "high"), (line.low, "low")] {
            let Some(v) = threshold else { continue };
            let yy = y(v).round() + 0.5;
            ctx.set_stroke_style_str("#c92a2a");
            ctx.begin_path();
            ctx.move_to(left, yy);
            ctx.line_to(left + plot_w, yy);
            ctx.stroke();
            ctx.set_fill_style_str("#c92a2a");
            let _ = ctx.fill_text(&format!("{label} {} {}", short_number(v), line.unit), left + 4.0, yy - 2.0);
        }
    }
    let _ = ctx.set_line_dash(&js_sys::Array::new());

    // The series, clipped to the plot.
    ctx.save();
    ctx.begin_path();
    ctx.rect(left, top, plot_w, plot_h);
    ctx.clip();
    ctx.set_line_width(1.5);
    ctx.set_line_join("round");
    for (line, cols) in lines.iter().zip(&reduced) {
        ctx.set_stroke_style_str(line.colour);
        ctx.begin_path();
        for (i, c) in cols.iter().enumerate() {
            let xx = left + c.x as f64 + 0.5;
            if i == 0 {
                ctx.move_to(xx, y(c.first));
            } else {
                ctx.line_to(xx, y(c.first));
            }
            if c.min != c.max {
                ctx.line_to(xx, y(c.min));
                ctx.line_to(xx, y(c.max));
            }
            ctx.line_to(xx, y(c.last));
        }
        ctx.stroke();
        // A lone point (or the latest) gets a dot, so a single reading is visible.
        if let Some(c) = cols.last() {
            ctx.set_fill_style_str(line.colour);
            ctx.begin_path();
            let _ = ctx.arc(left + c.x as f64 + 0.5, y(c.last), 2.5, 0.0, std::f64::consts::TAU);
            ctx.fill();
        }
    }
    ctx.restore();

    // The hover cursor.
    if let Some(t) = hover.filter(|t| (from..to).contains(t)) {
        let xx = x(t).round() + 0.5;
        ctx.set_stroke_style_str("#1d232b");
        ctx.set_line_width(1.0);
        ctx.begin_path();
        ctx.move_to(xx, top);
        ctx.line_to(xx, top + plot_h);
        ctx.stroke();
    }
}
