//! Server functions' view of the request: the app state and who is asking.

use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use leptos::prelude::*;

use super::AppState;
use crate::accounts::auth::{is_https, session_cookie, session_set_cookie, Auth, Identity};
use crate::accounts::store::User;
use crate::error::AppError;

pub fn state() -> Result<AppState, AppError> {
    use_context::<AppState>().ok_or_else(|| AppError::Server("no server state".into()))
}

/// A feature's service (see [`AppState::get`]).
pub fn service<T: Send + Sync + 'static>() -> Result<std::sync::Arc<T>, AppError> {
    Ok(state()?.get::<T>())
}

fn parts() -> Result<Parts, AppError> {
    use_context::<Parts>().ok_or_else(|| AppError::Server("no request".into()))
}

/// Who sent this request: a signed-in user, a guest (in guest mode), or nobody.
pub async fn identity() -> Result<Option<Identity>, AppError> {
    let state = state()?;
    let parts = parts()?;
    Ok(state.get::<Auth>().identify(&parts.headers, None, None, state.config.guest_access).await)
}

/// The identity, or an error asking to sign in.
pub async fn require_identity() -> Result<Identity, AppError> {
    identity().await?.ok_or(AppError::Unauthorized)
}

/// The signed-in user, or an error asking to sign in.
pub async fn require_user() -> Result<User, AppError> {
    match identity().await? {
        Some(Identity::User(user)) => Ok(user),
        _ => Err(AppError::Unauthorized),
    }
}

/// The session secret of this request's cookie, if any.
pub fn session_secret() -> Option<String> {
    parts().ok().and_then(|p| session_cookie(&p.headers))
}

/// Whether the request is a plain HTML form post (JavaScript off): such a request is
/// answered with a redirect, not data.
pub fn is_plain_form() -> bool {
    parts().ok().is_some_and(|p| {
        p.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/html"))
    })
}

pub fn client_ip() -> Option<std::net::IpAddr> {
    parts()
        .ok()?
        .extensions
        .get::<axum::extract::ConnectInfo<crate::realtime::server::net::Client>>()
        .map(|info| info.0.addr.ip())
}

/// Set (or with `None`, clear) the session cookie on the response.
pub fn set_session_cookie(secret: Option<&str>) {
    let secure = parts().ok().is_some_and(|p| is_https(&p.headers));
    if let (Some(response), Ok(value)) =
        (use_context::<leptos_axum::ResponseOptions>(), HeaderValue::from_str(&session_set_cookie(secret, secure)))
    {
        response.append_header(header::SET_COOKIE, value);
    }
}

/// For a plain form post, send the browser to `path`, with `error` in the query when given.
pub fn redirect_form(path: &str, error: Option<&str>) {
    if !is_plain_form() {
        return;
    }
    match error {
        Some(error) => {
            let query: String = url_escape(error);
            leptos_axum::redirect(&format!("{path}?error={query}"));
        }
        None => leptos_axum::redirect(path),
    }
}

fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
