//! Message times: UTC in the server's HTML, the reader's local time once hydrated.

use leptos::prelude::*;

/// The browser's clock, in milliseconds since the Unix epoch; 0 while rendering on the server,
/// where nothing live happens.
pub fn now_ms() -> f64 {
    #[cfg(feature = "hydrate")]
    return js_sys::Date::now();
    #[cfg(not(feature = "hydrate"))]
    0.0
}

/// A UTC date and time of day from milliseconds since the Unix epoch: (year, month, day,
/// hour, minute, second, millisecond), on the proleptic Gregorian calendar.
pub fn civil(ms: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let days = ms.div_euclid(86_400_000);
    let of_day = ms.rem_euclid(86_400_000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm, 400-year eras).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, of_day / 3_600_000, of_day / 60_000 % 60, of_day / 1000 % 60, of_day % 1000)
}

/// `2026-11-23 22:05` in UTC, from milliseconds since the Unix epoch.
pub fn utc_minute(ms: i64) -> String {
    let (year, month, day, hour, minute, ..) = civil(ms);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}")
}

/// The reader's local time, `HH:MM`, with the date when it is not today.
#[cfg(feature = "hydrate")]
fn local_time(ms: i64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
    let today = js_sys::Date::new_0();
    let hm = format!("{:02}:{:02}", date.get_hours(), date.get_minutes());
    if date.to_date_string() == today.to_date_string() {
        hm
    } else {
        format!("{}-{:02}-{:02} {hm}", date.get_full_year(), date.get_month() + 1, date.get_date())
    }
}

/// A timestamp. The server cannot know the reader's time zone, so the first render
/// says UTC; after hydration it switches to local time.
#[component]
pub fn Timestamp(ms: i64, hydrated: ReadSignal<bool>) -> impl IntoView {
    let text = move || {
        if hydrated.get() {
            #[cfg(feature = "hydrate")]
            return local_time(ms);
        }
        format!("{} UTC", utc_minute(ms))
    };
    view! { <time class="ts" data-ms=ms.to_string()>{text}</time> }
}

/// A time of day to the second in the reader's time zone, for what happens live (after
/// hydration); the server, not knowing the zone, writes UTC.
#[component]
pub fn Clock(ms: i64) -> impl IntoView {
    #[cfg(feature = "hydrate")]
    let text = {
        let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
        format!("{:02}:{:02}:{:02}", date.get_hours(), date.get_minutes(), date.get_seconds())
    };
    #[cfg(not(feature = "hydrate"))]
    let text = format!("{} UTC", utc_minute(ms));
    view! { <time class="ts" data-ms=ms.to_string()>{text}</time> }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_minutes_match_known_dates() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00");
        assert_eq!(utc_minute(951_782_400_000), "2000-02-29 00:00");
        assert_eq!(utc_minute(1_795_471_500_000), "2026-11-23 22:05");
        assert_eq!(utc_minute(-60_000), "1969-12-31 23:59");
    }
}
