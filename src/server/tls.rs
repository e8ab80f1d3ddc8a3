//! HTTPS built in: the certificate (the operator's PEM files, or one made for this machine),
//! the TLS settings, and the plain-HTTP listener that sends browsers to HTTPS.
//!
//! Browsers allow geolocation and notifications only on secure pages, so on a LAN without a
//! proxy in front, the app has to speak HTTPS itself. The handshake is rustls'; after it the
//! connection's records are sealed and opened by [`super::net`], which keeps writing frames
//! straight into the socket as it does for plain connections.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use sha2::{Digest, Sha256};

use super::config::Config;

/// The self-signed certificate's files in the data folder.
pub const SELF_SIGNED_CERT: &str = "tls/self-signed-cert.pem";
pub const SELF_SIGNED_KEY: &str = "tls/self-signed-key.pem";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("{path} holds no certificate")]
    NoCertificate { path: String },
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the certificate and key do not work together: {0}")]
    Config(#[from] rustls::Error),
}

/// A certificate chain and its key, with the fingerprint people compare in their browser.
pub struct Certificate {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Certificate {
    /// SHA-256 of the leaf certificate, as browsers show it: `AB:CD:…`.
    pub fn fingerprint(&self) -> String {
        let digest = self.chain.first().map(|cert| Sha256::digest(cert.as_ref())).unwrap_or_default();
        digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
    }

    /// Read a PEM chain and key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Certificate, TlsError> {
        let read_error = |path: &Path, e: &dyn std::fmt::Display| TlsError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| read_error(cert, &e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| read_error(cert, &e))?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate { path: cert.display().to_string() });
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| read_error(key, &e))?;
        Ok(Certificate { chain, key })
    }

    /// The certificate kept in `data_dir`, made first if there is none: valid for `names`
    /// (host names and addresses).
    pub fn self_signed(data_dir: &Path, names: &[String]) -> Result<Certificate, TlsError> {
        let (cert, key) = self_signed_paths(data_dir);
        if cert.exists() && key.exists() {
            return Certificate::from_pem_files(&cert, &key);
        }
        let mut params = rcgen::CertificateParams::new(names.to_vec())?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "Switchboard (self-signed)");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Switchboard");
        let year = 1970 + (crate::store::now_ms() / 1000 / 31_556_952) as i32;
        params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
        params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
        let pair = rcgen::KeyPair::generate()?;
        let made = params.self_signed(&pair)?;
        write_private(&cert, made.pem().as_bytes(), false)?;
        write_private(&key, pair.serialize_pem().as_bytes(), true)?;
        Certificate::from_pem_files(&cert, &key)
    }
}

/// Write a file, creating its folder; `secret` files are readable by their owner only.
fn write_private(path: &Path, contents: &[u8], secret: bool) -> Result<(), TlsError> {
    let error = |source| TlsError::Write { path: path.display().to_string(), source };
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder).map_err(error)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let _ = secret;
    let mut file = options.open(path).map_err(error)?;
    std::io::Write::write_all(&mut file, contents).map_err(error)
}

/// The names a self-signed certificate is made for: `localhost`, the machine's host name,
/// loopback, the listening address when it is a specific one, and every address of the
/// machine's interfaces.
pub fn machine_names(listen: &SocketAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_owned()];
    if let Some(host) = host_name() {
        names.push(host.clone());
        if !host.contains('.') {
            names.push(format!("{host}.local"));
        }
    }
    let mut addresses: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])];
    if !listen.ip().is_unspecified() {
        addresses.push(listen.ip());
    }
    addresses.extend(interface_addresses());
    for address in addresses {
        let text = address.to_string();
        if !names.contains(&text) {
            names.push(text);
        }
    }
    names
}

fn host_name() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes a NUL-terminated name.
    let done = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if done != 0 {
        return None;
    }
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
    let name = std::str::from_utf8(&buffer[..end]).ok()?.trim().to_owned();
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')).then_some(name)
}

/// The IPv4 and IPv6 addresses of this machine's network interfaces.
fn interface_addresses() -> Vec<IpAddr> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we walk and then free exactly once.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return found;
        }
        let mut entry = list;
        while !entry.is_null() {
            let address = (*entry).ifa_addr;
            if !address.is_null() {
                match i32::from((*address).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(address as *const libc::sockaddr_in);
                        found.push(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(address as *const libc::sockaddr_in6);
                        let ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
                        // Link-local addresses need a zone, which URLs and certificates do not carry.
                        if ip.segments()[0] & 0xffc0 != 0xfe80 {
                            found.push(IpAddr::V6(ip));
                        }
                    }
                    _ => {}
                }
            }
            entry = (*entry).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

/// The certificate the configuration asks for, if it asks for HTTPS.
pub fn certificate(config: &Config) -> Result<Option<Certificate>, TlsError> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(Certificate::from_pem_files(cert, key)?)),
        _ if config.tls_self_signed => {
            Ok(Some(Certificate::self_signed(&config.data_dir, &machine_names(&config.addr))?))
        }
        _ => Ok(None),
    }
}

/// rustls' settings for the server: HTTP/1.1 only (WebSockets are upgraded HTTP/1.1
/// connections), TLS 1.2 and 1.3, with the `ring` provider.
pub fn server_config(certificate: Certificate) -> Result<Arc<ServerConfig>, TlsError> {
    // ring rather than aws-lc-rs (which needs CMake to build); rustls marks it deprecated only
    // because it has no post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certificate.chain, certificate.key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Where a plain-HTTP request is sent: the same host and path on HTTPS at `https_port`.
pub fn redirect_target(host: Option<&str>, uri: &Uri, https_port: u16) -> Option<String> {
    let host = host?;
    // The host without its port (an IPv6 literal keeps its brackets).
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => name,
        _ => host,
    };
    if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace() || b == b'/' || b == b'@') {
        return None;
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Some(match https_port {
        443 => format!("https://{name}{path}"),
        port => format!("https://{name}:{port}{path}"),
    })
}

/// The plain-HTTP listener's only answer: go to HTTPS.
pub async fn redirect(https_port: u16, request: Request) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    match redirect_target(host, request.uri(), https_port) {
        Some(target) => Redirect::permanent(&target).into_response(),
        None => (StatusCode::BAD_REQUEST, "no usable Host header").into_response(),
    }
}

/// Serve the redirect on `listener` until `stop`.
pub async fn serve_redirect(
    listener: tokio::net::TcpListener,
    https_port: u16,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().fallback(move |request: Request| redirect(https_port, request));
    axum::serve(listener, app).with_graceful_shutdown(stop).await
}

/// The self-signed certificate's files (chain, key) in the data folder.
pub fn self_signed_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    (data_dir.join(SELF_SIGNED_CERT), data_dir.join(SELF_SIGNED_KEY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_sent_to_the_same_place_on_https() {
        let uri: Uri = "/rooms/lobby?x=1".parse().unwrap();
        assert_eq!(redirect_target(Some("lan.box:8080"), &uri, 8443).unwrap(), "https://lan.box:8443/rooms/lobby?x=1");
        assert_eq!(redirect_target(Some("lan.box"), &uri, 443).unwrap(), "https://lan.box/rooms/lobby?x=1");
        assert_eq!(redirect_target(Some("[::1]:80"), &uri, 3443).unwrap(), "https://[::1]:3443/rooms/lobby?x=1");
        assert_eq!(redirect_target(Some("evil.example/@x"), &uri, 443), None);
        assert_eq!(redirect_target(None, &uri, 443), None);
    }

    #[test]
    fn a_self_signed_certificate_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let names = machine_names(&"0.0.0.0:3000".parse().unwrap());
        assert!(names.contains(&"localhost".to_owned()) && names.contains(&"127.0.0.1".to_owned()), "{names:?}");
        let first = Certificate::self_signed(dir.path(), &names).unwrap();
        let again = Certificate::self_signed(dir.path(), &names).unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint(), "kept, not made again");
        assert_eq!(first.fingerprint().len(), 32 * 3 - 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SELF_SIGNED_KEY)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key is its owner's alone");
        }
        assert!(server_config(first).is_ok());
    }

    #[test]
    fn the_configuration_picks_the_operators_files_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let made = Certificate::self_signed(dir.path(), &["localhost".to_owned()]).unwrap();
        let (cert, key) = self_signed_paths(dir.path());
        let mut config = Config::for_tests(String::new());
        assert!(certificate(&config).unwrap().is_none(), "plain HTTP unless asked");
        config.tls_cert = Some(cert);
        config.tls_key = Some(key.clone());
        assert_eq!(certificate(&config).unwrap().unwrap().fingerprint(), made.fingerprint());
        config.tls_key = Some(dir.path().join("missing.pem"));
        assert!(matches!(certificate(&config), Err(TlsError::Read { .. })));
    }
}
