//! The server: the process that serves one node. It opens the store, starts each feature
//! (`crate::features`), and serves HTTP: pages, server functions, the features' routes and
//! WebSocket endpoints, with graceful shutdown. Features reach each other's services and
//! their own through [`AppState::get`].

pub mod config;
pub mod session;
pub mod simulate;
pub mod tls;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRef, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeader;

use crate::accounts::auth::{self, Auth, Identity};
use crate::app::{shell, App};
use crate::realtime::server::bus::{Cluster, ClusterError};
use crate::realtime::server::channel::{Channel, Channels, Dialect};
use crate::realtime::server::gateway::{self, Core};
use crate::realtime::server::hub::Hub;
use crate::realtime::server::net;
use crate::store::{self, Store};
use config::Config;

/// The services features provide, by type (the chat service, the sensors' writer, ...).
#[derive(Default)]
pub struct Services(HashMap<TypeId, Box<dyn Any + Send + Sync>>);

impl Services {
    fn provide<T: Send + Sync + 'static>(&mut self, service: Arc<T>) {
        self.0.insert(TypeId::of::<T>(), Box::new(service));
    }

    fn get<T: Send + Sync + 'static>(&self) -> Option<&Arc<T>> {
        self.0.get(&TypeId::of::<T>()).and_then(|service| service.downcast_ref::<Arc<T>>())
    }
}

/// What every handler and server function can reach.
#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub config: Arc<Config>,
    pub hub: Arc<Hub>,
    pub store: Store,
    /// What the realtime core runs connections with.
    pub core: Arc<Core>,
    services: Arc<Services>,
    /// Cancelled when the server begins to shut down; every connection listens to it.
    pub shutdown: CancellationToken,
    /// Counts live connections, so shutdown can wait for their close frames.
    pub connections: TaskTracker,
}

impl AppState {
    /// A service a feature provided at start. Every feature is started before the first
    /// request, so asking for one that none provides is a bug in `crate::features`.
    pub fn get<T: Send + Sync + 'static>(&self) -> Arc<T> {
        match self.services.get::<T>() {
            Some(service) => service.clone(),
            None => panic!("no feature provides {}", std::any::type_name::<T>()),
        }
    }

    /// A service that may be missing (one only some settings start).
    pub fn try_get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.services.get::<T>().cloned()
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// Something to do at shutdown, after the last connection closed (a writer's last batch).
type Closer = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a feature registers as it starts (see `crate::features`).
pub struct Setup {
    pub config: Arc<Config>,
    pub store: Store,
    pub hub: Arc<Hub>,
    /// The other nodes, when this process is one node of several (`--redis-url`).
    pub cluster: Option<Arc<Cluster>>,
    services: Services,
    channels: Channels,
    routes: Router<AppState>,
    closers: Vec<Closer>,
}

impl Setup {
    /// Offer a service to the other features, handlers and server functions.
    pub fn provide<T: Send + Sync + 'static>(&mut self, service: Arc<T>) {
        self.services.provide(service);
    }

    /// A service an earlier feature provided.
    pub fn get<T: Send + Sync + 'static>(&self) -> Arc<T> {
        match self.services.get::<T>() {
            Some(service) => service.clone(),
            None => panic!("no feature started before this one provides {}", std::any::type_name::<T>()),
        }
    }

    /// Plug a channel into the realtime core (`/ws`).
    pub fn channel(&mut self, channel: impl Channel) {
        self.channels.add(Arc::new(channel));
    }

    /// Serve a WebSocket endpoint of its own that speaks `dialect`.
    pub fn dialect(&mut self, path: &str, dialect: impl Dialect) {
        let dialect: Arc<dyn Dialect> = Arc::new(dialect);
        let routes = std::mem::take(&mut self.routes);
        self.routes = routes.route(path, ws_endpoint(Some(dialect)));
    }

    /// HTTP routes of the feature's own.
    pub fn routes(&mut self, routes: Router<AppState>) {
        let all = std::mem::take(&mut self.routes);
        self.routes = all.merge(routes);
    }

    /// Run `closer` at shutdown, once every connection has closed.
    pub fn on_close(&mut self, closer: impl Future<Output = ()> + Send + 'static) {
        self.closers.push(Box::pin(closer));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Feature(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("--http-redirect-addr redirects to HTTPS: give --tls-cert and --tls-key, or --tls-self-signed")]
    RedirectWithoutTls,
}

/// A server bound to its address, not yet serving.
pub struct Server {
    listener: tokio::net::TcpListener,
    /// With HTTPS: rustls' settings, and the plain-HTTP listener that redirects to it.
    tls: Option<Arc<rustls::ServerConfig>>,
    redirect: Option<tokio::net::TcpListener>,
    state: AppState,
    routes: Router<AppState>,
    closers: Vec<Closer>,
}

impl Server {
    /// Open the store, start every feature, and bind the listener.
    pub async fn bind(config: Config) -> Result<Server, ServeError> {
        let store = Store::open_with(&config.database_url, config.checkpoints()).await?;
        let hub = Hub::new();
        let cluster = match &config.redis_url {
            Some(url) => Some(Cluster::start(url, &config.redis_prefix, store.clone(), hub.clone()).await?),
            None => None,
        };
        let config = Arc::new(config);
        let mut setup = Setup {
            config: config.clone(),
            store: store.clone(),
            hub: hub.clone(),
            cluster: cluster.clone(),
            services: Services::default(),
            channels: Channels::default(),
            routes: Router::new(),
            closers: Vec::new(),
        };
        crate::features::start(&mut setup).await?;
        let Setup { services, channels, routes, closers, .. } = setup;
        let tls = match tls::certificate(&config)? {
            Some(certificate) => {
                let fingerprint = certificate.fingerprint();
                if config.tls_self_signed {
                    let (cert, _) = tls::self_signed_paths(&config.data_dir);
                    tracing::info!("HTTPS with the self-signed certificate {}", cert.display());
                }
                tracing::info!("certificate SHA-256 fingerprint: {fingerprint}");
                Some(tls::server_config(certificate)?)
            }
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| ServeError::Bind { addr: config.addr, source })?;
        let redirect = match config.http_redirect_addr {
            Some(_) if tls.is_none() => return Err(ServeError::RedirectWithoutTls),
            Some(addr) => {
                Some(tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?)
            }
            None => None,
        };
        let local = listener.local_addr()?;
        let leptos_options = LeptosOptions::builder()
            .output_name("switchboard")
            .site_root(config.site_root.as_str())
            .site_pkg_dir("pkg")
            .site_addr(local)
            .build();
        let shutdown = CancellationToken::new();
        let core = Arc::new(Core {
            hub: hub.clone(),
            cluster: cluster.clone(),
            channels: Arc::new(channels),
            queue_frames: config.queue_frames,
            max_frame_bytes: config.max_frame_bytes,
            heartbeat: config.heartbeat(),
            idle_timeout: config.idle_timeout(),
            shutdown: shutdown.clone(),
        });
        let state = AppState {
            leptos_options,
            config,
            hub,
            store,
            core,
            services: Arc::new(services),
            shutdown,
            connections: TaskTracker::new(),
        };
        Ok(Server { listener, tls, redirect, state, routes, closers })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.state.config.addr)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// `https` when the server speaks TLS itself, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Where the plain-HTTP redirect listens, if it does.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serve until `stop` resolves, then shut down gracefully: refuse new connections,
    /// send every socket a close frame, store every message already accepted.
    pub async fn serve(self, stop: impl std::future::Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
        let Server { listener, tls, redirect, state, routes, closers } = self;
        let https_port = listener.local_addr()?.port();
        let app = router(state.clone(), routes);
        let shutdown = state.shutdown.clone();
        tokio::spawn(async move {
            stop.await;
            shutdown.cancel();
        });
        if let Some(redirect) = redirect {
            let shutdown = state.shutdown.clone();
            tokio::spawn(async move {
                let stop = async move { shutdown.cancelled().await };
                if let Err(error) = tls::serve_redirect(redirect, https_port, stop).await {
                    tracing::error!(%error, "the HTTP redirect stopped");
                }
            });
        }
        let shutdown = state.shutdown.clone();
        let mut listener = net::Listener::new(listener, state.config.coalesce());
        let app = match tls {
            Some(config) => {
                listener = listener.with_tls(config);
                // Every request came over HTTPS: cookies are `Secure`, whatever the client said.
                app.layer(axum::middleware::map_request(|mut request: axum::extract::Request| async move {
                    request.headers_mut().insert("x-forwarded-proto", header::HeaderValue::from_static("https"));
                    request
                }))
            }
            None => app,
        };
        axum::serve(listener, app.into_make_service_with_connect_info::<net::Client>())
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await?;
        state.connections.close();
        if tokio::time::timeout(Duration::from_secs(5), state.connections.wait()).await.is_err() {
            tracing::warn!("some connections did not close within 5 s");
        }
        for closer in closers {
            closer.await;
        }
        if let Some(cluster) = &state.core.cluster {
            cluster.close();
        }
        state.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Every route of the app: the features' own (`features`) and the pages.
fn router(state: AppState, features: Router<AppState>) -> Router {
    let routes = generate_route_list(App);
    let context_state = state.clone();
    Router::new()
        .route("/ws", ws_endpoint(None))
        .route("/healthz", get(|| async { "ok" }))
        .merge(features)
        .leptos_routes_with_context(&state, routes, move || provide_context(context_state.clone()), {
            let options = state.leptos_options.clone();
            move || shell(options.clone())
        })
        .nest_service("/pkg", bundle(&state.leptos_options))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guest_cookie))
        .with_state(state)
}

/// In guest mode, a visitor who is nobody yet (no session, no token, no guest cookie of ours)
/// becomes a guest of their own: a new signed id, set as a cookie for the browser's next
/// requests and put into this request's, so that it already counts as that guest.
async fn guest_cookie(State(state): State<AppState>, mut request: axum::extract::Request, next: Next) -> Response {
    let headers = request.headers();
    let auth = state.get::<Auth>();
    let nobody = state.config.guest_access
        && auth::session_cookie(headers).is_none()
        && !headers.contains_key(header::AUTHORIZATION)
        && auth.guest_id(headers).is_none();
    if !nobody {
        return next.run(request).await;
    }
    let value = auth.guest_key().sign(&auth::new_guest_id());
    let secure = auth::is_https(request.headers());
    if let Ok(cookie) = header::HeaderValue::from_str(&format!("{}={value}", auth::GUEST_COOKIE)) {
        request.headers_mut().append(header::COOKIE, cookie);
    }
    let mut response = next.run(request).await;
    if let Ok(set) = header::HeaderValue::from_str(&auth::guest_set_cookie(&value, secure)) {
        response.headers_mut().append(header::SET_COOKIE, set);
    }
    response
}

/// The browser bundle (`/pkg`): WASM modules, their JavaScript and the CSS.
/// - Sent compressed from the copies `make` writes beside them, so no request pays for
///   compressing them: brotli (`.br`) to a client that takes it, which browsers do over
///   HTTPS, else gzip (`.gz`), else plain (also where no copy exists).
/// - Revalidated on every use (a 304 when unchanged): the modules keep their names from one
///   build to the next, and a page's main module only works with the split modules of its
///   own build, so a browser must not guess how long a copy stays fresh.
fn bundle(options: &LeptosOptions) -> SetResponseHeader<ServeDir, header::HeaderValue> {
    let dir = std::path::Path::new(options.site_root.as_ref()).join(options.site_pkg_dir.as_ref());
    let no_cache = header::HeaderValue::from_static("no-cache");
    let files = ServeDir::new(dir).precompressed_br().precompressed_gzip();
    SetResponseHeader::overriding(files, header::CACHE_CONTROL, no_cache)
}

#[derive(Deserialize)]
pub struct WsQuery {
    /// A guest's display name (guest mode only).
    name: Option<String>,
    /// An API token, for clients that cannot set headers (the tutorial's, devices).
    token: Option<String>,
}

/// An HTTP API's error: `{"error": {"code": "...", "message": "..."}}`, with the protocol's code.
pub fn json_error(
    status: StatusCode,
    code: crate::realtime::protocol::ErrorCode,
    message: impl Into<String>,
) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message.into() } });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// An HTTP API's answer to a feature's refusal: the status its code means, and the code and
/// message as [`json_error`] writes them. The server's own failures are logged and answered
/// without their detail.
pub fn api_refusal(code: crate::realtime::protocol::ErrorCode, error: &dyn std::fmt::Display) -> Response {
    use crate::realtime::protocol::ErrorCode;
    let status = match code {
        ErrorCode::UnknownPoll | ErrorCode::UnknownDocument | ErrorCode::UnknownRoom | ErrorCode::UnknownSensor => {
            StatusCode::NOT_FOUND
        }
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::PollClosed | ErrorCode::NameTaken => StatusCode::CONFLICT,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Internal => {
            tracing::error!(%error, "an API request failed");
            let message = "the server could not do that; retry";
            return json_error(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, message);
        }
        _ => StatusCode::BAD_REQUEST,
    };
    json_error(status, code, error.to_string())
}

/// Browsers send the page's Origin on upgrade; a foreign one means another site is
/// trying to use the visitor's connection (cross-site WebSocket hijacking).
pub fn origin_allowed(headers: &HeaderMap, config: &Config) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let own = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'))
        .is_some_and(|rest| rest.eq_ignore_ascii_case(host));
    own || config.allowed_origins.iter().any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// Who asks: a session or an API token (`guests`: or, where guests are let in, the browser's
/// guest identity). A request with a cookie from another site's page is refused.
pub async fn api_caller(state: &AppState, headers: &HeaderMap, guests: bool) -> Result<Identity, Response> {
    if !origin_allowed(headers, &state.config) {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            crate::realtime::protocol::ErrorCode::Forbidden,
            "a request from another site's page",
        ));
    }
    let auth = state.get::<Auth>();
    match auth.identify(headers, None, None, guests && state.config.guest_access).await {
        Some(who) => Ok(who),
        None => {
            let message = "sign in, or send your API token as `Authorization: Bearer <token>`";
            Err(json_error(StatusCode::UNAUTHORIZED, crate::realtime::protocol::ErrorCode::Unauthorized, message))
        }
    }
}

/// Who opens a WebSocket, if they may: its origin is ours (or allowed), they are signed in,
/// bring an API token, or are a guest in guest mode. Otherwise the response that refuses them.
pub async fn ws_identity(headers: &HeaderMap, state: &AppState, query: &WsQuery) -> Result<Identity, Response> {
    if !origin_allowed(headers, &state.config) {
        return Err((StatusCode::FORBIDDEN, "WebSocket upgrade from a foreign origin").into_response());
    }
    if let Some(name) = &query.name {
        if crate::realtime::protocol::clean_display_name(name).is_none() {
            return Err((StatusCode::BAD_REQUEST, "a name is 1 to 32 characters").into_response());
        }
    }
    let auth = state.get::<Auth>();
    let who = auth.identify(headers, query.token.as_deref(), query.name.as_deref(), state.config.guest_access).await;
    let Some(who) = who else {
        return Err((StatusCode::UNAUTHORIZED, "sign in, or pass an API token as ?token=").into_response());
    };
    if state.shutdown.is_cancelled() {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response());
    }
    Ok(who)
}

async fn upgrade(
    ws: WebSocketUpgrade,
    client: net::Client,
    headers: &HeaderMap,
    state: AppState,
    dialect: Option<Arc<dyn Dialect>>,
    query: WsQuery,
) -> Response {
    let who = match ws_identity(headers, &state, &query).await {
        Ok(who) => who,
        Err(refusal) => return refusal,
    };
    let max = state.config.max_frame_bytes;
    // Frames up to the hard limit are read and answered with `too_large`; past it the
    // stream cannot be resynchronised and the connection is closed (1009).
    let hard_limit = (max * 4).max(1 << 20);
    let guard = state.connections.token();
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(16 * 1024)
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| async move {
            gateway::run(socket, &state.core, dialect, who, client.socket).await;
            drop(guard);
        })
}

/// Each WebSocket's read buffer is allocated (and touched) for the life of the connection, so
/// it is most of what an idle connection costs: 4 KiB made 13.4 KiB of server memory per idle
/// connection, 1 KiB makes 9.3 (docs/benchmarks.md). Clients' frames are small; a large one
/// is read in several calls.
const READ_BUFFER_BYTES: usize = 1024;

/// The upgrade handler of an endpoint that speaks `dialect` (`None`: the web protocol).
fn ws_endpoint(dialect: Option<Arc<dyn Dialect>>) -> axum::routing::MethodRouter<AppState> {
    get(
        move |ws: WebSocketUpgrade,
              ConnectInfo(client): ConnectInfo<net::Client>,
              State(state): State<AppState>,
              headers: HeaderMap,
              Query(query): Query<WsQuery>| async move {
            upgrade(ws, client, &headers, state, dialect.clone(), query).await
        },
    )
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().unwrap());
        }
        headers
    }

    #[test]
    fn only_own_or_listed_origins_may_upgrade() {
        let mut config = Config::for_tests(String::new());
        assert!(origin_allowed(&headers(None, "h:1"), &config));
        assert!(origin_allowed(&headers(Some("http://h:1"), "h:1"), &config));
        assert!(!origin_allowed(&headers(Some("http://evil.example"), "h:1"), &config));
        config.allowed_origins = vec!["https://chat.example.org".into()];
        assert!(origin_allowed(&headers(Some("https://chat.example.org"), "h:1"), &config));
    }
}
