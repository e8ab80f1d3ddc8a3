//! The error type of every server function, shown to the user as it is.

use serde::{Deserialize, Serialize};
use server_fn::codec::JsonEncoding;
use server_fn::error::{FromServerFnError, ServerFnErrorErr};

use leptos::server_fn;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("sign in first")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the server could not do that: {0}")]
    Server(String),
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::Server(value.to_string())
    }
}

#[cfg(feature = "ssr")]
impl From<crate::chat::server::ChatError> for AppError {
    fn from(error: crate::chat::server::ChatError) -> Self {
        use crate::chat::server::ChatError;
        use crate::store::StoreError;
        match error {
            ChatError::UnknownRoom(room) => AppError::NotFound(format!("no room is named {room:?}")),
            ChatError::UnknownUser(_) | ChatError::BadRoomName | ChatError::Forbidden(_) | ChatError::RateLimited => {
                AppError::Invalid(error.to_string())
            }
            ChatError::Store(StoreError::RoomExists(room)) => {
                AppError::Conflict(format!("a room named {room:?} exists already"))
            }
            other => {
                tracing::error!(error = %other, "server function failed");
                AppError::Server("internal error".into())
            }
        }
    }
}

#[cfg(feature = "ssr")]
impl From<crate::accounts::auth::AuthError> for AppError {
    fn from(error: crate::accounts::auth::AuthError) -> Self {
        use crate::accounts::auth::AuthError;
        match error {
            AuthError::NameTaken(_) => AppError::Conflict(error.to_string()),
            AuthError::Store(_) | AuthError::Hashing => {
                tracing::error!(%error, "account operation failed");
                AppError::Server("internal error".into())
            }
            other => AppError::Invalid(other.to_string()),
        }
    }
}

#[cfg(feature = "ssr")]
impl From<crate::store::StoreError> for AppError {
    fn from(error: crate::store::StoreError) -> Self {
        tracing::error!(%error, "store operation failed");
        AppError::Server("internal error".into())
    }
}

#[cfg(feature = "ssr")]
impl From<crate::sensors::server::SensorError> for AppError {
    fn from(error: crate::sensors::server::SensorError) -> Self {
        use crate::sensors::server::SensorError;
        match error {
            SensorError::UnknownSensor(_) => AppError::NotFound(error.to_string()),
            SensorError::NameTaken(_) => AppError::Conflict(error.to_string()),
            SensorError::BadReading(_) | SensorError::Invalid(_) | SensorError::Forbidden(_) => {
                AppError::Invalid(error.to_string())
            }
            other => {
                tracing::error!(error = %other, "sensor operation failed");
                AppError::Server("internal error".into())
            }
        }
    }
}

#[cfg(feature = "ssr")]
impl From<crate::polls::server::PollsError> for AppError {
    fn from(error: crate::polls::server::PollsError) -> Self {
        AppError::refused(error.code(), &error)
    }
}

#[cfg(feature = "ssr")]
impl From<crate::documents::server::DocError> for AppError {
    fn from(error: crate::documents::server::DocError) -> Self {
        AppError::refused(error.code(), &error)
    }
}

#[cfg(feature = "ssr")]
impl AppError {
    /// A feature's refusal, by its code: not found, the server's own failure (logged, its
    /// detail kept back), or an invalid request.
    fn refused(code: crate::realtime::protocol::ErrorCode, error: &dyn std::fmt::Display) -> AppError {
        use crate::realtime::protocol::ErrorCode;
        match code {
            ErrorCode::UnknownPoll | ErrorCode::UnknownDocument | ErrorCode::UnknownRoom => {
                AppError::NotFound(error.to_string())
            }
            ErrorCode::Internal => {
                tracing::error!(%error, "a request failed");
                AppError::Server("internal error".into())
            }
            _ => AppError::Invalid(error.to_string()),
        }
    }
}
