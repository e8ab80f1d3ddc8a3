//! Polls over HTTP: the API for presenters and scripts (an API token, or the browser's own
//! session), the CSV export, and the plain vote form that works without JavaScript.
//!
//! - `POST /api/rooms/{room}/polls` makes a poll (the body as `create_poll`'s fields);
//! - `GET /api/polls/{id}` reads it, with the counts only if the caller may see them;
//! - `POST /api/polls/{id}/votes` (`{"choices": [..]}`) votes, `POST /api/polls/{id}/close`
//!   closes it;
//! - `GET /api/polls/{id}/results.csv` exports the counts (and, for a named poll, who chose what);
//! - `POST /polls/{id}/vote` takes the plain form (`choice=` repeated) and sends the browser
//!   back to the poll's page.
//!
//! Errors are JSON, `{"error": {"code": "...", "message": "..."}}`, with the protocol's codes.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use super::protocol::PollSpec;
use super::server::{Polls, PollsError};
use super::store::Poll;
use crate::accounts::auth::{Auth, Identity};
use crate::realtime::protocol::ErrorCode;
use crate::server::{api_caller, api_refusal, json_error, origin_allowed, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/rooms/{room}/polls", post(create))
        .route("/api/polls/{id}", get(read))
        .route("/api/polls/{id}/votes", post(vote))
        .route("/api/polls/{id}/close", post(close))
        .route("/api/polls/{id}/results.csv", get(export_csv))
        .route("/polls/{id}/vote", post(form_vote))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewVote {
    choices: Vec<u32>,
}

fn failure(error: PollsError) -> Response {
    api_refusal(error.code(), &error)
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// The API's caller: a user, by session or API token.
async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Identity, Response> {
    api_caller(state, headers, false).await
}

/// The caller (see [`api_caller`]) and the poll the path names, or the answer that refuses.
async fn caller_and_poll(
    state: &AppState,
    headers: &HeaderMap,
    raw: &str,
    guests: bool,
) -> Result<(Identity, i64), Box<Response>> {
    let who = api_caller(state, headers, guests).await.map_err(Box::new)?;
    let id = poll_id(raw).ok_or_else(|| Box::new(no_poll()))?;
    Ok((who, id))
}

/// A poll id from the path: a positive integer (anything else names no poll).
fn poll_id(raw: &str) -> Option<i64> {
    raw.parse::<i64>().ok().filter(|&id| id > 0)
}

/// The answer for a path that names no poll.
fn no_poll() -> Response {
    failure(super::protocol::PollError::UnknownPoll.into())
}

/// Read a JSON body, or answer why it cannot be read.
fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, Box<Response>> {
    serde_json::from_slice(bytes).map_err(|error| {
        Box::new(json_error(StatusCode::BAD_REQUEST, ErrorCode::InvalidField, format!("the body: {error}")))
    })
}

/// The poll, what `who` chose, and the counts if they may see them, as the API shows them.
async fn described(polls: &Polls, poll: &Poll, who: &Identity) -> Result<serde_json::Value, PollsError> {
    let (_, room) = polls.visible(poll.id, who).await?;
    let mine = polls.store().choices_of(poll.id, &who.key()).await?;
    let tally = polls.results(poll, &mine).await?;
    let turnout = polls.turnout(poll).await?;
    Ok(json!({
        "poll": polls.info(poll, &room),
        "mine": mine,
        "may_close": Polls::may_close(poll, who),
        "turnout": turnout,
        "tally": tally,
    }))
}

/// `POST /api/rooms/{room}/polls`: 201 with the poll, once it and its message are stored.
async fn create(State(state): State<AppState>, Path(room): Path<String>, headers: HeaderMap, bytes: Bytes) -> Response {
    let who = match caller(&state, &headers).await {
        Ok(who) => who,
        Err(response) => return response,
    };
    let spec: PollSpec = match body(&bytes) {
        Ok(spec) => spec,
        Err(response) => return *response,
    };
    let message_id = format!("api-{:032x}", rand::random::<u128>());
    match state.get::<Polls>().create(&room, &who, message_id, spec).await {
        Ok((poll, stored)) => json(StatusCode::CREATED, json!({ "poll": poll, "offset": stored.offset })),
        Err(error) => failure(error),
    }
}

/// `GET /api/polls/{id}`.
async fn read(State(state): State<AppState>, Path(raw): Path<String>, headers: HeaderMap) -> Response {
    let (who, id) = match caller_and_poll(&state, &headers, &raw, false).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let polls = state.get::<Polls>();
    let found = match polls.visible(id, &who).await {
        Ok((poll, _)) => described(&polls, &poll, &who).await,
        Err(error) => Err(error),
    };
    match found {
        Ok(value) => json(StatusCode::OK, value),
        Err(error) => failure(error),
    }
}

/// `POST /api/polls/{id}/votes`: the choices as stored.
async fn vote(State(state): State<AppState>, Path(raw): Path<String>, headers: HeaderMap, bytes: Bytes) -> Response {
    let (who, id) = match caller_and_poll(&state, &headers, &raw, false).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let new: NewVote = match body(&bytes) {
        Ok(new) => new,
        Err(response) => return *response,
    };
    match state.get::<Polls>().vote(id, &who, new.choices).await {
        Ok((_, choices)) => json(StatusCode::OK, json!({ "choices": choices })),
        Err(error) => failure(error),
    }
}

/// `POST /api/polls/{id}/close`: the poll, closed, with its final counts.
async fn close(State(state): State<AppState>, Path(raw): Path<String>, headers: HeaderMap) -> Response {
    let (who, id) = match caller_and_poll(&state, &headers, &raw, false).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let polls = state.get::<Polls>();
    let closed = match polls.close(id, &who).await {
        Ok(poll) => described(&polls, &poll, &who).await,
        Err(error) => Err(error),
    };
    match closed {
        Ok(value) => json(StatusCode::OK, value),
        Err(error) => failure(error),
    }
}

/// One CSV field: quoted when it must be, and a leading `=`, `+`, `-` or `@` defused so that a
/// spreadsheet shows it as text rather than running it as a formula.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The CSV of a poll's results: a line per option, with its votes and (in a named poll) who
/// chose it.
fn results_csv(poll: &Poll, counts: &[u64], names: Option<&[Vec<String>]>) -> String {
    let mut out = String::from(if names.is_some() { "option,votes,voters\n" } else { "option,votes\n" });
    for (index, option) in poll.spec.options.iter().enumerate() {
        let votes = counts.get(index).copied().unwrap_or(0);
        out.push_str(&format!("{},{votes}", csv_field(option)));
        if let Some(names) = names {
            let who = names.get(index).map(|n| n.join("; ")).unwrap_or_default();
            out.push_str(&format!(",{}", csv_field(&who)));
        }
        out.push('\n');
    }
    out
}

/// `GET /api/polls/{id}/results.csv`, for whoever may see the results.
async fn export_csv(State(state): State<AppState>, Path(raw): Path<String>, headers: HeaderMap) -> Response {
    let (who, id) = match caller_and_poll(&state, &headers, &raw, true).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let polls = state.get::<Polls>();
    let (poll, _) = match polls.visible(id, &who).await {
        Ok(found) => found,
        Err(error) => return failure(error),
    };
    let mine = match polls.store().choices_of(id, &who.key()).await {
        Ok(mine) => mine,
        Err(error) => return failure(error.into()),
    };
    if !Polls::may_see_results(&poll, &mine) {
        let message = "this poll's results are shown after you vote, or once it closes";
        return json_error(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message);
    }
    let options = poll.spec.options.len();
    let counts = match polls.store().poll_counts(id, options).await {
        Ok(counts) => counts,
        Err(error) => return failure(error.into()),
    };
    let names = if poll.spec.anonymous {
        None
    } else {
        match polls.store().named_votes(id, options).await {
            Ok(names) => Some(names),
            Err(error) => return failure(error.into()),
        }
    };
    let disposition = format!("attachment; filename=\"poll-{id}.csv\"");
    let csv = results_csv(&poll, &counts.options, names.as_deref());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)],
        csv,
    )
        .into_response()
}

/// The plain form's fields: `choice` (repeated), and a guest's `name`.
fn read_form(bytes: &[u8]) -> Result<(Vec<u32>, Option<String>), &'static str> {
    let mut choices = Vec::new();
    let mut name = None;
    for (key, value) in form_urlencoded::parse(bytes) {
        match key.as_ref() {
            "choice" => choices.push(value.parse::<u32>().map_err(|_| "a choice is an option's number")?),
            "name" if !value.trim().is_empty() => name = Some(value.into_owned()),
            _ => {}
        }
    }
    Ok((choices, name))
}

/// `POST /polls/{id}/vote`: the plain form, for browsers without JavaScript. Sends the browser
/// back to the poll's page, with `?error=<code>` when the vote was refused.
async fn form_vote(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let back = |code: Option<ErrorCode>| {
        let query = code.and_then(|c| serde_json::to_value(c).ok()).and_then(|v| v.as_str().map(str::to_owned));
        let location = match query {
            Some(code) => format!("/polls/{raw}?error={code}"),
            None => format!("/polls/{raw}"),
        };
        (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
    };
    let Some(id) = poll_id(&raw) else { return back(Some(ErrorCode::UnknownPoll)) };
    if !origin_allowed(&headers, &state.config) {
        return (StatusCode::FORBIDDEN, "a vote from another site's page").into_response();
    }
    let Ok((choices, name)) = read_form(&bytes) else { return back(Some(ErrorCode::InvalidField)) };
    let guest_name = name.as_deref();
    let auth = state.get::<Auth>();
    let Some(who) = auth.identify(&headers, None, guest_name, state.config.guest_access).await else {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, format!("/signin?next=/polls/{id}"))]).into_response();
    };
    match state.get::<Polls>().vote(id, &who, choices).await {
        Ok(_) => back(None),
        Err(error) if error.is_internal() => {
            tracing::error!(%error, "a form vote failed");
            back(Some(ErrorCode::Internal))
        }
        Err(error) => back(Some(error.code())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=1+1"), "'=1+1");
        assert_eq!(csv_field("-2"), "'-2");
    }

    #[test]
    fn the_plain_form_reads_every_choice_and_a_name() {
        assert_eq!(read_form(b"choice=0&choice=2&name=bo+b"), Ok((vec![0, 2], Some("bo b".to_owned()))));
        assert_eq!(read_form(b"name=&choice=1"), Ok((vec![1], None)));
        assert!(read_form(b"choice=x").is_err());
        assert!(read_form(b"choice=-1").is_err());
    }
}
