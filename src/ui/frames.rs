//! Frame timings, for the benchmark pages (`/bench/map`, `/bench/chart`): each drawn frame
//! is recorded as (when it started, how long drawing took), in milliseconds.

/// The value at quantile `q` (0 to 1) of `values`, nearest rank; 0 when there are none.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(((sorted.len() as f64 - 1.0) * q.clamp(0.0, 1.0)).round() as usize).copied().unwrap_or(0.0)
}

/// The figures of `frames` drawn over `seconds`: frames per second, draw time p50/p95/max,
/// the gap between frame starts p50/p95, and how many gaps missed a 60 Hz frame (> 25 ms).
pub fn report(frames: &[(f64, f64)], seconds: f64) -> serde_json::Map<String, serde_json::Value> {
    let draws: Vec<f64> = frames.iter().map(|(_, took)| *took).collect();
    let gaps: Vec<f64> = frames.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let figures = serde_json::json!({
        "seconds": seconds.round(),
        "frames": frames.len(),
        "fps": frames.len() as f64 / seconds.max(0.001),
        "draw_ms_p50": quantile(&draws, 0.5),
        "draw_ms_p95": quantile(&draws, 0.95),
        "draw_ms_max": quantile(&draws, 1.0),
        "gap_ms_p50": quantile(&gaps, 0.5),
        "gap_ms_p95": quantile(&gaps, 0.95),
        "long_gaps": gaps.iter().filter(|g| **g > 25.0).count(),
    });
    match figures {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// A sub-millisecond clock.
#[cfg(feature = "hydrate")]
pub fn precise_now() -> f64 {
    leptos::prelude::window().performance().map_or_else(js_sys::Date::now, |p| p.now())
}

/// Put a report where the benchmark script reads it: `window[name]`.
#[cfg(feature = "hydrate")]
pub fn publish(name: &str, report: serde_json::Map<String, serde_json::Value>) {
    let text = serde_json::Value::Object(report).to_string();
    if let Ok(value) = js_sys::JSON::parse(&text) {
        let _ = js_sys::Reflect::set(&leptos::prelude::window(), &wasm_bindgen::JsValue::from_str(name), &value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_gaps() {
        let values = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!((quantile(&values, 0.0), quantile(&values, 0.5), quantile(&values, 1.0)), (1.0, 3.0, 5.0));
        assert_eq!(quantile(&[], 0.5), 0.0);
        // Frames every 16 ms, one late: one long gap.
        let frames = [(0.0, 2.0), (16.0, 3.0), (32.0, 2.0), (80.0, 9.0)];
        let figures = report(&frames, 1.0);
        assert_eq!(figures["frames"], 4);
        assert_eq!(figures["long_gaps"], 1);
        assert_eq!(figures["draw_ms_max"], 9.0);
        assert_eq!(figures["gap_ms_p50"], 16.0);
    }
}
