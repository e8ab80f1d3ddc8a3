//! The simulator's side of the server's HTTP API: server functions (form-encoded, answered
//! with JSON or a JSON `AppError`) and `POST /api/sensors/{id}/readings`, over one HTTP/1.1
//! connection kept alive and reopened when the server closes it. `switchboard-bench-ingest`
//! uses it too, one client per connection.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

use super::SimulateError;
use crate::accounts::auth::SESSION_COOKIE;
use crate::error::AppError;
use crate::sensors::protocol::NewReading;

/// Longer than a sign-up takes (password hashing) on a busy two-core machine.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How a request proves who it is from.
#[derive(Clone, Copy)]
pub enum Credential<'a> {
    Nobody,
    Session(&'a str),
    Token(&'a str),
}

/// A response, read whole.
pub struct Answer {
    pub status: StatusCode,
    /// The session secret a sign-up or sign-in set.
    pub session: Option<String>,
    pub body: Bytes,
}

pub struct Api {
    url: String,
    /// `host:port`, to connect to and to send as `Host`.
    authority: String,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl Api {
    /// A client of the server at `url` (`http://host[:port]`, as checked by the command line).
    pub fn new(url: &str) -> Result<Api, SimulateError> {
        let bad = |why: &str| SimulateError::BadUrl { url: url.to_owned(), why: why.to_owned() };
        let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// is supported"));
        }
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?;
        let authority = format!("{host}:{}", uri.port_u16().unwrap_or(80));
        Ok(Api { url: url.trim_end_matches('/').to_owned(), authority, connection: None })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The WebSocket URL of the web protocol, identified by an API token.
    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/ws?token={token}", self.authority)
    }

    /// The open connection, or a new one when there is none or the server closed it.
    async fn connection(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, SimulateError> {
        if let Some(mut open) = self.connection.take() {
            if open.ready().await.is_ok() {
                return Ok(self.connection.insert(open));
            }
        }
        let unreachable = |source| SimulateError::Unreachable { url: self.url.clone(), source };
        let stream = TcpStream::connect(&self.authority).await.map_err(unreachable)?;
        stream.set_nodelay(true).map_err(unreachable)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the server closes the connection or the sender is dropped.
            let _ = connection.await;
        });
        Ok(self.connection.insert(sender))
    }

    async fn request(
        &mut self,
        method: Method,
        path: &str,
        content_type: &str,
        credential: Credential<'_>,
        body: Bytes,
    ) -> Result<Answer, SimulateError> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.authority)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::ACCEPT, "application/json");
        match credential {
            Credential::Nobody => {}
            Credential::Session(secret) => {
                request = request.header(header::COOKIE, format!("{SESSION_COOKIE}={secret}"))
            }
            Credential::Token(token) => request = request.header(header::AUTHORIZATION, format!("Bearer {token}")),
        }
        let request = request.body(Full::new(body))?;
        let exchange = async {
            let response = self.connection().await?.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, SimulateError>(Answer { status: parts.status, session: session_cookie(&parts.headers), body })
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => {
                // The connection may be half-way through a response: start afresh next time.
                self.connection = None;
                Err(error)
            }
            Err(_) => {
                self.connection = None;
                Err(SimulateError::Timeout { url: self.url.clone(), path: path.to_owned() })
            }
        }
    }

    /// Call the server function `endpoint` with a form; its answer, or its `AppError`.
    pub async fn call(
        &mut self,
        endpoint: &str,
        form: &[(&str, &str)],
        credential: Credential<'_>,
    ) -> Result<Answer, SimulateError> {
        let path = format!("/api/{endpoint}");
        let body = Bytes::from(form_encode(form));
        let answer = self.request(Method::POST, &path, "application/x-www-form-urlencoded", credential, body).await?;
        if answer.status.is_success() {
            return Ok(answer);
        }
        match serde_json::from_slice::<AppError>(&answer.body) {
            Ok(error) => Err(SimulateError::Call { endpoint: endpoint.to_owned(), error }),
            Err(_) => Err(SimulateError::Status {
                what: path,
                status: answer.status.as_u16(),
                body: String::from_utf8_lossy(&answer.body).into_owned(),
            }),
        }
    }

    /// Call a server function and read its JSON answer as `T`.
    pub async fn call_json<T: DeserializeOwned>(
        &mut self,
        endpoint: &str,
        form: &[(&str, &str)],
        credential: Credential<'_>,
    ) -> Result<T, SimulateError> {
        let answer = self.call(endpoint, form, credential).await?;
        serde_json::from_slice(&answer.body)
            .map_err(|source| SimulateError::Decode { what: endpoint.to_owned(), source })
    }

    /// Post readings of one sensor with an API token; how many were stored.
    pub async fn post_readings(
        &mut self,
        sensor: i64,
        token: &str,
        readings: &[NewReading],
    ) -> Result<u64, SimulateError> {
        let body = serde_json::to_vec(readings)
            .map_err(|source| SimulateError::Decode { what: format!("/api/sensors/{sensor}/readings"), source })?;
        self.post_readings_body(sensor, token, Bytes::from(body)).await
    }

    /// Post a JSON body of readings as it is (the benchmark builds it once and sends it again
    /// and again); how many were stored.
    pub async fn post_readings_body(&mut self, sensor: i64, token: &str, body: Bytes) -> Result<u64, SimulateError> {
        let path = format!("/api/sensors/{sensor}/readings");
        let answer = self.request(Method::POST, &path, "application/json", Credential::Token(token), body).await?;
        let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        if answer.status.is_success() {
            return json["accepted"].as_u64().ok_or_else(|| SimulateError::Status {
                what: path,
                status: 200,
                body: json.to_string(),
            });
        }
        let message = json["error"]["message"].as_str().map(str::to_owned);
        Err(SimulateError::Status {
            what: path,
            status: answer.status.as_u16(),
            body: message.unwrap_or_else(|| String::from_utf8_lossy(&answer.body).into_owned()),
        })
    }
}

/// The session secret in a response's `Set-Cookie`, if it sets a non-empty one.
fn session_cookie(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
        .find(|secret| !secret.is_empty())
        .map(str::to_owned)
}

/// `application/x-www-form-urlencoded`, as browsers write it.
fn form_encode(pairs: &[(&str, &str)]) -> String {
    let escape = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => (b as char).to_string(),
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs.iter().map(|(name, value)| format!("{}={}", escape(name), escape(value))).collect::<Vec<_>>().join("&")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn forms_are_encoded_like_a_browser_does() {
        assert_eq!(form_encode(&[("name", "Office 1 CO₂"), ("unit", "°C")]), "name=Office+1+CO%E2%82%82&unit=%C2%B0C");
        assert_eq!(form_encode(&[("password", "a&b=c%")]), "password=a%26b%3Dc%25");
        assert_eq!(form_encode(&[]), "");
    }

    #[test]
    fn the_session_is_read_from_set_cookie() {
        let mut headers = http::HeaderMap::new();
        headers.append(header::SET_COOKIE, "other=1; Path=/".parse().unwrap());
        assert_eq!(session_cookie(&headers), None);
        headers.append(header::SET_COOKIE, "switchboard_session=; Max-Age=0".parse().unwrap());
        assert_eq!(session_cookie(&headers), None);
        headers.append(header::SET_COOKIE, "switchboard_session=abc; HttpOnly; Path=/".parse().unwrap());
        assert_eq!(session_cookie(&headers).as_deref(), Some("abc"));
    }

    #[test]
    fn only_plain_http_urls_make_a_client() {
        let api = Api::new("http://127.0.0.1:3000").unwrap();
        assert_eq!(api.ws_url("sbt_x"), "ws://127.0.0.1:3000/ws?token=sbt_x");
        assert_eq!(Api::new("http://example.org").unwrap().authority, "example.org:80");
        assert!(Api::new("https://example.org").is_err());
    }
}
