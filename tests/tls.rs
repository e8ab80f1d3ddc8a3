//! HTTPS and WSS served by the app itself, with its self-signed certificate; plain HTTP
//! redirected to HTTPS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use support::{http, TestServer, WAIT};
use switchboard::server::tls::SELF_SIGNED_CERT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A server speaking HTTPS with a certificate it made; its data folder.
async fn https_server(redirect: bool) -> (TestServer, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_owned();
    let server = TestServer::start_with(move |c| {
        c.tls_self_signed = true;
        c.data_dir = dir;
        if redirect {
            c.http_redirect_addr = Some("127.0.0.1:0".parse().unwrap());
        }
    })
    .await;
    (server, data)
}

/// A TLS connection that trusts only the server's own certificate, to `localhost`.
async fn secure(server: &TestServer, data: &tempfile::TempDir) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(data.path().join(SELF_SIGNED_CERT)).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("the handshake verifies the certificate")
}

type Wss = WebSocketStream<TlsStream<TcpStream>>;

async fn wss(server: &TestServer, data: &tempfile::TempDir, name: &str) -> Wss {
    let stream = secure(server, data).await;
    let request = format!("wss://localhost:{}/ws?name={name}", server.addr.port()).into_client_request().unwrap();
    let (ws, _) = tokio_tungstenite::client_async(request, stream).await.expect("a WSS upgrade");
    ws
}

async fn send(ws: &mut Wss, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

async fn next_of(ws: &mut Wss, kind: &str) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next()).await.expect("a frame in time").unwrap().unwrap();
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["type"] == kind {
                return frame;
            }
        }
    }
}

#[tokio::test]
async fn wss_clients_chat_and_resume_over_the_servers_own_certificate() {
    let (server, data) = https_server(false).await;
    let mut listener = wss(&server, &data, "reader").await;
    send(&mut listener, json!({"type": "subscribe", "id": "s", "topic": "chat:lobby"})).await;
    assert_eq!(next_of(&mut listener, "subscribed").await["id"], "s");
    let mut writer = wss(&server, &data, "writer").await;
    let epoch = {
        send(&mut writer, json!({"type": "subscribe", "id": "s", "topic": "chat:lobby"})).await;
        next_of(&mut writer, "subscribed").await["epoch"].clone()
    };
    // Enough messages that the replay below takes many records and partial writes.
    const COUNT: u64 = 700;
    for i in 0..COUNT {
        let text = format!("message {i} {}", "x".repeat(200));
        send(&mut writer, json!({"type": "publish", "id": format!("m{i}"), "topic": "chat:lobby", "text": text})).await;
    }
    for i in 0..COUNT {
        let frame = next_of(&mut listener, "message").await;
        assert_eq!(frame["offset"], i + 1, "live, in order, over TLS");
    }
    // A new connection resumes from the start and gets everything, in order.
    let mut late = wss(&server, &data, "late").await;
    let resume = json!({"epoch": epoch, "offset": 0});
    send(&mut late, json!({"type": "subscribe", "id": "r", "topic": "chat:lobby", "resume": resume})).await;
    for i in 0..COUNT {
        assert_eq!(next_of(&mut late, "message").await["offset"], i + 1);
    }
    drop((listener, writer, late));
}

#[tokio::test]
async fn https_pages_set_secure_cookies_and_plain_http_is_redirected() {
    let (server, data) = https_server(true).await;
    let mut stream = secure(&server, &data).await;
    let request =
        format!("GET /healthz HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n", server.addr.port());
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let cookie = text.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).expect("a guest cookie");
    assert!(cookie.contains("switchboard_guest=") && cookie.contains("; Secure"), "{cookie}");

    // The same server does not answer plain HTTP on its HTTPS port…
    let plain = tokio::time::timeout(Duration::from_secs(5), async {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut raw = Vec::new();
        let _ = tcp.read_to_end(&mut raw).await;
        raw
    })
    .await
    .unwrap();
    assert!(!String::from_utf8_lossy(&plain).contains("200 OK"));

    // …and its redirect listener sends browsers to HTTPS, same host and path.
    let redirect = server.redirect.expect("a redirect listener");
    let answer = http(redirect, "GET", "/rooms/lobby?x=1", &[], "").await;
    assert_eq!(answer.status, 308);
    let port = server.addr.port();
    assert_eq!(answer.header("location"), Some(format!("https://127.0.0.1:{port}/rooms/lobby?x=1").as_str()));
    drop(data);
}

#[tokio::test]
async fn a_redirect_to_https_without_https_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = switchboard::server::config::Config::for_tests(format!("sqlite://{}/t.db", dir.path().display()));
    config.http_redirect_addr = Some("127.0.0.1:0".parse().unwrap());
    let error = switchboard::server::Server::bind(config).await.err().expect("refused");
    assert!(error.to_string().contains("--tls-self-signed"), "{error}");
}
