//! The HTTP API for devices and scripts: posting sensor readings, exporting them as CSV.
//!
//! Errors are JSON, `{"error": {"code": "...", "message": "...", "index": n}}`, with the
//! protocol's stable codes (`index`: the first bad reading of a batch, when there is one).
//! Credentials are checked before the body is read, and the body is read only up to the
//! configured limit.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use serde::Deserialize;

use super::server::{iso8601, parse_body, Origin, SensorError, Sensors};
use super::store::ExportRow;
use crate::realtime::protocol::ErrorCode;
use crate::server::AppState;

/// Export rows read from the store at a time.
const EXPORT_PAGE: i64 = 5000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/sensors/{id}/readings", post(post_readings))
        .route("/api/sensors/{id}/readings.csv", get(export_csv))
}

/// A JSON error response.
fn error(status: StatusCode, code: ErrorCode, message: impl Into<String>, index: Option<usize>) -> Response {
    let Some(index) = index else { return crate::server::json_error(status, code, message) };
    let body = serde_json::json!({ "error": { "code": code, "message": message.into(), "index": index } });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn unknown_sensor(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, ErrorCode::UnknownSensor, format!("no sensor has the id {id:?}"), None)
}

fn internal(error_text: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %error_text, "sensor API request failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "the server could not do that; retry", None)
}

fn sensor_error(failure: SensorError) -> Response {
    match failure {
        SensorError::UnknownSensor(id) => {
            error(StatusCode::NOT_FOUND, ErrorCode::UnknownSensor, format!("no sensor is {id}"), None)
        }
        SensorError::BadReading(bad) if bad.code == ErrorCode::TooLarge => {
            error(StatusCode::PAYLOAD_TOO_LARGE, bad.code, bad.message, bad.index)
        }
        SensorError::BadReading(bad) => error(StatusCode::BAD_REQUEST, bad.code, bad.message, bad.index),
        SensorError::Invalid(message) => error(StatusCode::BAD_REQUEST, ErrorCode::InvalidField, message, None),
        SensorError::Forbidden(message) => error(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message, None),
        SensorError::RateLimited => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, failure.to_string(), None);
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            response
        }
        SensorError::ShuttingDown => error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal,
            "the server is shutting down; nothing was stored, retry",
            None,
        ),
        other => internal(&other),
    }
}

/// The `Authorization: Bearer` token, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// A sensor id from the path: a positive integer.
fn sensor_id(raw: &str) -> Option<i64> {
    raw.parse::<i64>().ok().filter(|&id| id > 0)
}

/// `POST /api/sensors/{id}/readings`: store readings, answer once they are durable.
async fn post_readings(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(token) = bearer(&headers) else {
        let message = "send the sensor's token (or your API token) as `Authorization: Bearer <token>`";
        return error(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message, None);
    };
    let Some(id) = sensor_id(&raw_id) else { return unknown_sensor(&raw_id) };
    let sensor = match state.get::<Sensors>().get(id).await {
        Ok(sensor) => sensor,
        Err(failure) => return sensor_error(failure),
    };
    match state.get::<Sensors>().token_may_post(token, &sensor).await {
        Ok(Some(true)) => {}
        Ok(Some(false)) => {
            let message =
                "this token may not post readings of this sensor (it is another sensor's, or not its owner's)";
            return error(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message, None);
        }
        Ok(None) => return error(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, "the token is not valid", None),
        Err(failure) => return sensor_error(failure),
    }
    let limit = state.get::<Sensors>().limits().body_max_bytes;
    let too_big = || {
        error(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge, format!("bodies are limited to {limit} bytes"), None)
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return too_big();
    }
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(failure) => {
            let text = format!("{failure:?}");
            if text.contains("LengthLimit") {
                return too_big();
            }
            let message = format!("the body could not be read: {failure}");
            return error(StatusCode::BAD_REQUEST, ErrorCode::Malformed, message, None);
        }
    };
    let readings = match parse_body(&bytes) {
        Ok(readings) => readings,
        Err(bad) => return error(StatusCode::BAD_REQUEST, bad.code, bad.message, bad.index),
    };
    match state.get::<Sensors>().accept(&sensor, &readings, Origin::Api).await {
        Ok(accepted) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "accepted": accepted }).to_string(),
        )
            .into_response(),
        Err(failure) => sensor_error(failure),
    }
}

#[derive(Deserialize)]
struct Range {
    from: Option<String>,
    to: Option<String>,
}

/// One CSV line per row: raw readings fill `timestamp,value`; rolled-up minutes also fill
/// `min,max,count`, with `value` their average and `timestamp` the minute's start.
fn csv_lines(rows: &[ExportRow]) -> String {
    let mut out = String::with_capacity(rows.len() * 48);
    for row in rows {
        let line = match *row {
            ExportRow::Raw { reading, .. } => format!("{},{},,,\n", iso8601(reading.ts), reading.value),
            ExportRow::Minute { minute, min, max, avg, count } => {
                format!("{},{avg},{min},{max},{count}\n", iso8601(minute))
            }
        };
        out.push_str(&line);
    }
    out
}

/// `GET /api/sensors/{id}/readings.csv?from=<ms>&to=<ms>`: the readings in `[from, to)`,
/// streamed page by page, oldest first.
async fn export_csv(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    Query(range): Query<Range>,
    headers: HeaderMap,
) -> Response {
    if state
        .get::<crate::accounts::auth::Auth>()
        .identify(&headers, None, None, state.config.guest_access)
        .await
        .is_none()
    {
        let message = "sign in, or send your API token as `Authorization: Bearer <token>`";
        return error(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message, None);
    }
    let bound = |name: &str, raw: &Option<String>, default: i64| match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some(text) => {
            text.parse::<i64>().map_err(|_| format!("`{name}` must be an integer (milliseconds since the Unix epoch)"))
        }
    };
    let (from, to) = match (bound("from", &range.from, 0), bound("to", &range.to, i64::MAX)) {
        (Ok(from), Ok(to)) if from < to => (from, to),
        (Ok(_), Ok(_)) => {
            return error(StatusCode::BAD_REQUEST, ErrorCode::InvalidField, "`from` must be before `to`", None)
        }
        (Err(message), _) | (_, Err(message)) => {
            return error(StatusCode::BAD_REQUEST, ErrorCode::InvalidField, message, None)
        }
    };
    let Some(id) = sensor_id(&raw_id) else { return unknown_sensor(&raw_id) };
    if let Err(failure) = state.get::<Sensors>().get(id).await {
        return sensor_error(failure);
    }
    let store = state.get::<Sensors>().store().clone();
    let pages = futures_util::stream::unfold(Some((i64::MIN, 0, 0)), move |cursor| {
        let store = store.clone();
        async move {
            let after = cursor?;
            match store.export_page(id, from, to, after, EXPORT_PAGE).await {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let next = if rows.len() as i64 == EXPORT_PAGE { rows.last().map(ExportRow::key) } else { None };
                    Some((Ok::<Bytes, std::io::Error>(Bytes::from(csv_lines(&rows))), next))
                }
                Err(failure) => {
                    // The status is sent already; cutting the body short tells the client.
                    tracing::error!(error = %failure, "CSV export failed");
                    Some((Err(std::io::Error::other(failure.to_string())), None))
                }
            }
        }
    });
    let header_line = futures_util::stream::once(async { Ok(Bytes::from_static(b"timestamp,value,min,max,count\n")) });
    let disposition = format!("attachment; filename=\"sensor-{id}.csv\"");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)],
        Body::from_stream(header_line.chain(pages)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensors::protocol::Reading;

    #[test]
    fn csv_rows_say_which_are_rolled_up() {
        let rows = [
            ExportRow::Minute { minute: 1_764_000_000_000, min: 1.0, max: 3.5, avg: 2.25, count: 4 },
            ExportRow::Raw { id: 9, reading: Reading { ts: 1_764_000_090_500, value: -0.5 } },
        ];
        assert_eq!(csv_lines(&rows), "2025-11-24T16:00:00.000Z,2.25,1,3.5,4\n2025-11-24T16:01:30.500Z,-0.5,,,\n");
    }

    #[test]
    fn bearer_tokens_and_ids_are_read_strictly() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer  sbs_x ".parse().unwrap());
        assert_eq!(bearer(&headers), Some("sbs_x"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        assert_eq!(sensor_id("12"), Some(12));
        assert_eq!(sensor_id("0"), None);
        assert_eq!(sensor_id("-3"), None);
        assert_eq!(sensor_id("x"), None);
    }
}
