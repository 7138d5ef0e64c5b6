//! Harness for the end-to-end tests in `tests/`: the real gateway started
//! in-process from a policy file, with a freshly generated certificate, in
//! front of an upstream Unix socket, and a real TLS client (rustls + hyper)
//! speaking HTTP/1.1 or HTTP/2 to it.
//!
//! Shared with every test that needs them, written once: the in-process
//! worker ([`worker`]), the policy tables with credentials and the static
//! app directory ([`policy`]), one request over a fresh TLS connection
//! ([`send_http1`]), the attack stack ([`attack`]) and the browser harness
//! ([`browser`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tradehabit_gateway::{Config, Gateway, Handle};

/// A safety net for exchanges that should end; never asserted on.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The workspace root (where `config/`, `compose.yaml` and `examples/` are).
pub fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A self-signed certificate for `localhost`/`127.0.0.1`, written into
/// `dir` as `cert.pem` and `key.pem`; returns the certificate's DER.
pub fn write_test_certificate(dir: &Path) -> CertificateDer<'static> {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("generate a test certificate");
    std::fs::write(dir.join("cert.pem"), generated.cert.pem()).expect("write cert.pem");
    std::fs::write(dir.join("key.pem"), generated.key_pair.serialize_pem()).expect("write key.pem");
    generated.cert.der().clone()
}

/// Loads a policy file and points it at this test: HTTPS on a free loopback
/// port, the certificate in `dir`, the given upstream, and any other
/// listener it declares moved to a free loopback port too. `edit` may change
/// anything else before validation.
pub fn policy_for_test(
    policy: &Path,
    dir: &Path,
    upstream: &str,
    edit: impl FnOnce(&mut toml::Table),
) -> Config {
    let table = policy_table_for_test(policy, dir, upstream, edit);
    Config::from_toml(&toml::to_string(&table).expect("serialise the policy"))
        .unwrap_or_else(|error| panic!("the test policy is invalid: {error}"))
}

/// [`policy_for_test`] before validation: the edited policy as a TOML table.
pub fn policy_table_for_test(
    policy: &Path,
    dir: &Path,
    upstream: &str,
    edit: impl FnOnce(&mut toml::Table),
) -> toml::Table {
    let text = std::fs::read_to_string(policy).expect("read the policy file");
    let mut table: toml::Table = text.parse().expect("the policy file is TOML");
    let section = |table: &mut toml::Table, name: &str| -> toml::Table {
        table
            .get(name)
            .and_then(toml::Value::as_table)
            .cloned()
            .unwrap_or_default()
    };
    let mut server = section(&mut table, "server");
    server.insert("listen".into(), "127.0.0.1:0".into());
    table.insert("server".into(), server.into());
    let mut tls = section(&mut table, "tls");
    tls.insert("cert".into(), path_value(&dir.join("cert.pem")));
    tls.insert("key".into(), path_value(&dir.join("key.pem")));
    table.insert("tls".into(), tls.into());
    let mut upstream_table = section(&mut table, "upstream");
    upstream_table.insert("address".into(), upstream.into());
    upstream_table.remove("spawn");
    table.insert("upstream".into(), upstream_table.into());
    if let Some(toml::Value::Table(section)) = table.get_mut("plain_http") {
        section.insert("listen".into(), "127.0.0.1:0".into());
    }
    // The admin listener always exists (default 127.0.0.1:9901).
    let mut admin = section(&mut table, "admin");
    admin.insert("listen".into(), "127.0.0.1:0".into());
    table.insert("admin".into(), admin.into());
    edit(&mut table);
    table
}

fn path_value(path: &Path) -> toml::Value {
    toml::Value::String(path.to_str().expect("UTF-8 temp path").to_owned())
}

/// Starts the gateway in-process.
pub async fn start_gateway(config: Config) -> Handle {
    Gateway::start(config).await.expect("start the gateway")
}

/// An answer: status, headers and the whole body.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (panics with the body text if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// One header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A rustls client configuration that trusts exactly `cert` and offers
/// `alpn` (in order).
pub fn client_config(cert: CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(cert).expect("trust the test certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to `localhost` over `tcp`, trusting exactly `cert`,
/// offering only `protocol` with ALPN.
pub async fn tls_over(
    tcp: TcpStream,
    cert: &CertificateDer<'static>,
    protocol: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    TlsConnector::from(client_config(cert.clone(), &[protocol]))
        .connect(ServerName::try_from("localhost").expect("server name"), tcp)
        .await
        .expect("TLS handshake")
}

/// Sends one request over HTTP/1.1 on a fresh TLS connection to `addr`
/// (`Host: localhost` unless the request names one) and reads the whole
/// answer, within the safety net.
pub async fn send_http1(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
    mut request: Request<Full<Bytes>>,
) -> Reply {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let io = TokioIo::new(tls_over(tcp, cert, b"http/1.1").await);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    request
        .headers_mut()
        .entry(http::header::HOST)
        .or_insert(http::HeaderValue::from_static("localhost"));
    let response = sender.send_request(request).await.expect("an answer");
    collect(response).await
}

/// A response, read to its end (within the safety net).
pub async fn collect(response: http::Response<hyper::body::Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(PATIENCE, body.collect())
        .await
        .expect("body within the safety net")
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Which HTTP version the client negotiates with ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `http/1.1`
    Http1,
    /// `h2`
    Http2,
}

/// A TLS client for the gateway that trusts exactly one certificate.
#[derive(Clone)]
pub struct TlsClient {
    addr: SocketAddr,
    connector: TlsConnector,
    version: Version,
}

impl TlsClient {
    /// A client for `addr` trusting `cert`, negotiating `version`.
    pub fn new(addr: SocketAddr, cert: CertificateDer<'static>, version: Version) -> Self {
        let alpn: &[u8] = match version {
            Version::Http1 => b"http/1.1",
            Version::Http2 => b"h2",
        };
        Self {
            addr,
            connector: TlsConnector::from(client_config(cert, &[alpn])),
            version,
        }
    }

    /// Sends one request on a new TLS connection. The request's URI is a
    /// path; the `Host`/`:authority` is set here.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Reply {
        tokio::time::timeout(PATIENCE, self.exchange(request))
            .await
            .expect("the gateway answers in time")
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Reply {
        let tcp = TcpStream::connect(self.addr).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("server name");
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let authority = format!("localhost:{}", self.addr.port());
        // The client, not the caller, names the host it connects to.
        parts.headers.remove(http::header::HOST);
        let response = match self.version {
            Version::Http1 => {
                parts.uri = path.parse().expect("path");
                parts
                    .headers
                    .insert(http::header::HOST, authority.parse().expect("host"));
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tls))
                        .await
                        .expect("HTTP/1.1 handshake");
                tokio::spawn(connection);
                sender
                    .send_request(Request::from_parts(parts, body))
                    .await
                    .expect("HTTP/1.1 exchange")
            }
            Version::Http2 => {
                parts.uri = format!("https://{authority}{path}").parse().expect("uri");
                let (mut sender, connection) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                        .await
                        .expect("HTTP/2 handshake");
                tokio::spawn(connection);
                sender
                    .send_request(Request::from_parts(parts, body))
                    .await
                    .expect("HTTP/2 exchange")
            }
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("response body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

pub mod attack;
pub mod browser;
pub mod policy;
pub mod worker;
