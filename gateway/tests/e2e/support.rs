//! Harness: a recording upstream on a Unix socket, a gateway started
//! in-process on port 0 with a freshly generated certificate, and real TLS
//! clients (rustls + hyper) speaking HTTP/1.1 or HTTP/2.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tradehabit_gateway::{Config, Gateway, Handle};

/// A safety net for reads that should end: a broken gateway fails the test
/// instead of hanging it. Never asserted on.
pub(crate) const SAFETY: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- upstream

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// A small upstream on a Unix socket that records what it receives. Its
/// behaviour is chosen by path:
///
/// * `/api/gated` — records, then waits until [`Upstream::release`];
/// * `/api/slow` — never answers;
/// * `/api/close` — drops the connection without answering;
/// * `/api/busy` — 503 with `Retry-After: 7`;
/// * `/api/fail` — 500 with a stack-trace-like body and `Server: gunicorn`;
/// * `/api/gzip` — 200 with `Content-Encoding: gzip`;
/// * `/api/early` — answers 200 at once, then reads the body and records
///   it (nginx's way with a body it discards);
/// * anything else — reads the body, records, answers 200 JSON with leaky
///   headers (`Server`, `X-Powered-By`, its own HSTS and `Cache-Control`).
pub(crate) struct Upstream {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Request heads received (the gateway's probes left out).
    heads: Arc<std::sync::atomic::AtomicUsize>,
    arrived: Arc<Notify>,
    gate: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Upstream {
    pub(crate) async fn start(socket: &Path) -> Upstream {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let gate = Arc::new(Notify::new());
        let heads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, a, g, h) = (seen.clone(), arrived.clone(), gate.clone(), heads.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (s, a, g, h) = (s.clone(), a.clone(), g.clone(), h.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        if !req.uri().path().starts_with("/internal/") {
                            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        upstream_answer(req, s.clone(), a.clone(), g.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream {
            seen,
            heads,
            arrived,
            gate,
            task,
        }
    }

    /// Everything received so far.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many request heads have arrived so far (before their bodies).
    pub(crate) fn heads(&self) -> usize {
        self.heads.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves when the next request has arrived (recorded).
    pub(crate) async fn arrival(&self) {
        tokio::time::timeout(SAFETY, self.arrived.notified())
            .await
            .expect("the upstream received nothing");
    }

    /// Lets one waiting `/api/gated` request answer.
    pub(crate) fn release(&self) {
        self.gate.notify_one();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct Hangup;
impl std::fmt::Display for Hangup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hang up")
    }
}
impl std::error::Error for Hangup {}

async fn upstream_answer(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    arrived: Arc<Notify>,
    gate: Arc<Notify>,
) -> Result<Response<Full<Bytes>>, Hangup> {
    let path = req.uri().path().to_string();
    let (parts, body) = req.into_parts();
    let declared: usize = parts
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    let record = move |body: Bytes| {
        seen.lock().unwrap().push(Seen {
            method: parts.method.to_string(),
            target: parts.uri.to_string(),
            headers: parts.headers.clone(),
            body,
        });
        arrived.notify_one();
    };
    // The gateway's readiness probe (admin listener): answered, not
    // recorded, so tests of what is forwarded see only client requests.
    if path == "/internal/metrics" {
        let mut response = Response::new(Full::new(Bytes::from_static(WORKER_METRICS.as_bytes())));
        response.headers_mut().insert(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
                .parse()
                .unwrap(),
        );
        return Ok(response);
    }
    if path.starts_with("/internal/") {
        return Ok(json(StatusCode::OK, "{\"status\":\"ready\"}"));
    }
    match path.as_str() {
        "/api/gated" => {
            record(Bytes::new());
            gate.notified().await;
            return Ok(json(StatusCode::OK, "{\"gated\":true}"));
        }
        "/api/slow" => {
            record(Bytes::new());
            std::future::pending::<()>().await;
        }
        "/api/close" => {
            record(Bytes::new());
            return Err(Hangup);
        }
        "/api/early" => {
            // Recorded once the declared length is in: hyper ends such a
            // body only when the next request arrives on the connection.
            tokio::spawn(async move {
                let mut body = body;
                let mut received = Vec::new();
                while received.len() < declared {
                    match body.frame().await {
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                received.extend_from_slice(&data);
                            }
                        }
                        Some(Err(_)) | None => break,
                    }
                }
                record(Bytes::from(received));
            });
            return Ok(json(StatusCode::OK, "{\"early\":true}"));
        }
        _ => {}
    }
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::from_static(b"<incomplete>"),
    };
    let length = body.len();
    record(body);
    let mut response = match path.as_str() {
        "/api/busy" => {
            let mut r = json(StatusCode::SERVICE_UNAVAILABLE, "{\"busy\":true}");
            r.headers_mut().insert("retry-after", "7".parse().unwrap());
            r
        }
        "/api/fail" => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            "{\"message\":\"Traceback: KeyError 'secret-internal'\"}",
        ),
        "/api/gzip" => {
            let mut r = json(StatusCode::OK, "{}");
            r.headers_mut()
                .insert("content-encoding", "gzip".parse().unwrap());
            r
        }
        _ => json(
            StatusCode::OK,
            &format!("{{\"ok\":true,\"received\":{length}}}"),
        ),
    };
    let headers = response.headers_mut();
    headers.insert("server", "gunicorn".parse().unwrap());
    headers.insert("x-powered-by", "Flask".parse().unwrap());
    headers.insert("strict-transport-security", "max-age=0".parse().unwrap());
    headers.insert("cache-control", "public, max-age=600".parse().unwrap());
    Ok(response)
}

fn json(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

// ----------------------------------------------------------------- gateway

/// What to put in the policy file beyond the defaults.
#[derive(Clone)]
pub(crate) struct Policy {
    pub(crate) server: String,
    pub(crate) limits: String,
    pub(crate) upstream: String,
    pub(crate) plain_http: bool,
    /// Top-level policy-check tables (`[cors]`, `[api_keys]`, `[jwt]`, …).
    pub(crate) checks: String,
    pub(crate) routes: String,
    /// Extra `[admin]` keys (the listener is always on 127.0.0.1:0).
    pub(crate) admin: String,
    /// `[audit]` keys (default: stdout).
    pub(crate) audit: String,
    /// `upstream.address` (default: `unix:` and the directory's socket).
    pub(crate) upstream_address: Option<String>,
}

/// What the test upstream serves on `/internal/metrics`, like the worker.
pub(crate) const WORKER_METRICS: &str =
    "# TYPE tradehabit_worker_sessions_active gauge\ntradehabit_worker_sessions_active 3\n# EOF\n";

/// The routes most tests use: one exact, one prefix; open (no
/// authentication), so that the core tests exercise forwarding alone.
pub(crate) const ROUTES: &str = r#"
[[routes]]
name = "echo"
path = "/api/echo"
methods = ["GET", "POST"]
body_limit = 1024
auth = "none"
query = { x = { type = "string", max_length = 16 } }

[[routes]]
name = "api"
path = "/api"
match = "prefix"
methods = ["GET", "POST"]
body_limit = 1024
auth = "none"
"#;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            server: String::new(),
            limits: String::new(),
            upstream: String::new(),
            plain_http: false,
            checks: String::new(),
            routes: ROUTES.to_string(),
            admin: String::new(),
            audit: String::new(),
            upstream_address: None,
        }
    }
}

/// A certificate for `localhost` and `127.0.0.1`.
pub(crate) struct Cert {
    pub(crate) der: CertificateDer<'static>,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

impl Cert {
    pub(crate) fn generate() -> Cert {
        let generated = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .unwrap();
        Cert {
            der: generated.cert.der().clone(),
            cert_pem: generated.cert.pem(),
            key_pem: generated.key_pair.serialize_pem(),
        }
    }

    pub(crate) fn write(&self, dir: &Path) {
        std::fs::write(dir.join("cert.pem"), &self.cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &self.key_pem).unwrap();
    }
}

/// A gateway running in-process, its files in a temporary directory.
pub(crate) struct TestGateway {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) cert: Cert,
    handle: Option<Handle>,
}

impl TestGateway {
    /// The socket path the upstream should use.
    pub(crate) fn socket_in(dir: &Path) -> PathBuf {
        dir.join("upstream.sock")
    }

    /// A temp dir, an upstream in it, and a gateway in front.
    pub(crate) async fn with_upstream(policy: Policy) -> (TestGateway, Upstream) {
        let dir = tempfile::tempdir().unwrap();
        let upstream = Upstream::start(&Self::socket_in(dir.path())).await;
        (Self::start_in(dir, policy).await, upstream)
    }

    /// An upstream and a gateway in `dir`, which may already hold files the
    /// policy names (secrets, keys).
    pub(crate) async fn with_upstream_in(
        dir: tempfile::TempDir,
        policy: Policy,
    ) -> (TestGateway, Upstream) {
        let upstream = Upstream::start(&Self::socket_in(dir.path())).await;
        (Self::start_in(dir, policy).await, upstream)
    }

    /// A gateway whose upstream socket does not exist (yet).
    pub(crate) async fn without_upstream(policy: Policy) -> TestGateway {
        Self::start_in(tempfile::tempdir().unwrap(), policy).await
    }

    async fn start_in(dir: tempfile::TempDir, policy: Policy) -> TestGateway {
        let cert = Cert::generate();
        cert.write(dir.path());
        let path = Self::write_policy(dir.path(), &policy);
        let config = Config::from_file(&path).expect("test policy is valid");
        let handle = Gateway::start(config).await.expect("gateway starts");
        TestGateway {
            dir,
            cert,
            handle: Some(handle),
        }
    }

    /// Writes `gateway.toml` into `dir`; returns its path.
    pub(crate) fn write_policy(dir: &Path, policy: &Policy) -> PathBuf {
        let socket = Self::socket_in(dir);
        let plain = if policy.plain_http {
            "[plain_http]\nlisten = \"127.0.0.1:0\"\nhttps_port = 8443\n"
        } else {
            ""
        };
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{server}\n\
             [tls]\ncert = \"{dir}/cert.pem\"\nkey = \"{dir}/key.pem\"\n\n\
             {plain}\n\
             [limits]\n{limits}\n\
             [upstream]\naddress = \"{address}\"\n{upstream}\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n{admin}\n\
             [audit]\n{audit}\n\
             {checks}\n\
             {routes}",
            server = policy.server,
            dir = dir.display(),
            limits = policy.limits,
            address = policy
                .upstream_address
                .clone()
                .unwrap_or_else(|| format!("unix:{}", socket.display())),
            upstream = policy.upstream,
            checks = policy.checks,
            routes = policy.routes,
            admin = policy.admin,
            audit = policy.audit,
        );
        let path = dir.join("gateway.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    pub(crate) fn handle(&self) -> &Handle {
        self.handle.as_ref().expect("running")
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.handle().https_addr()
    }

    /// Shuts down gracefully.
    pub(crate) async fn shutdown(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await;
        }
    }

    /// A client that trusts this gateway's certificate.
    pub(crate) fn client(&self) -> Client {
        Client::new(self.addr(), &self.cert.der)
    }
}

// ------------------------------------------------------------------ client

/// Which HTTP version to speak over TLS (chosen by ALPN).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Proto {
    H1,
    H2,
}

/// A TLS client for the gateway.
#[derive(Clone)]
pub(crate) struct Client {
    pub(crate) addr: SocketAddr,
    roots: RootCertStore,
}

/// A collected response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

impl Client {
    pub(crate) fn new(addr: SocketAddr, root: &CertificateDer<'static>) -> Client {
        let mut roots = RootCertStore::empty();
        roots.add(root.clone()).unwrap();
        Client { addr, roots }
    }

    pub(crate) fn config(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<ClientConfig> {
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(self.roots.clone())
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A TLS connection with the given versions and ALPN offer.
    pub(crate) async fn tls_with(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        TlsConnector::from(self.config(versions, alpn))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    /// A TLS connection speaking `proto`.
    pub(crate) async fn tls(&self, proto: Proto) -> TlsStream<TcpStream> {
        let alpn: &[&[u8]] = match proto {
            Proto::H1 => &[b"http/1.1"],
            Proto::H2 => &[b"h2"],
        };
        self.tls_with(rustls::ALL_VERSIONS, alpn)
            .await
            .expect("TLS handshake")
    }

    /// Sends one request on a fresh connection.
    pub(crate) async fn send(&self, proto: Proto, request: Request<Full<Bytes>>) -> Reply {
        let stream = self.tls(proto).await;
        send_on(stream, proto, request).await
    }

    /// `GET path` over HTTP/1.1.
    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.send(Proto::H1, request("GET", path, "")).await
    }
}

/// Sends one request over an established TLS stream.
pub(crate) async fn send_on(
    stream: TlsStream<TcpStream>,
    proto: Proto,
    mut request: Request<Full<Bytes>>,
) -> Reply {
    let io = TokioIo::new(stream);
    let response = match proto {
        Proto::H1 => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            request
                .headers_mut()
                .entry("host")
                .or_insert("localhost".parse().unwrap());
            sender.send_request(request).await.unwrap()
        }
        Proto::H2 => {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let uri = format!(
                "https://localhost{}",
                request.uri().path_and_query().unwrap()
            );
            *request.uri_mut() = uri.parse().unwrap();
            *request.version_mut() = http::Version::HTTP_2;
            sender.send_request(request).await.unwrap()
        }
    };
    collect(response).await
}

pub(crate) async fn collect(response: Response<Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(SAFETY, body.collect())
        .await
        .expect("body within the safety net")
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A request with a body (empty: none).
pub(crate) fn request(method: &str, path: &str, body: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Writes raw bytes on a fresh TLS (HTTP/1.1) connection and reads until
/// the gateway closes it.
pub(crate) async fn raw_exchange(client: &Client, bytes: &[u8]) -> String {
    let mut stream = client.tls(Proto::H1).await;
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(SAFETY, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in a raw HTTP/1.1 answer.
pub(crate) fn raw_status(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// The security headers every HTTPS answer must carry, each exactly once.
pub(crate) fn assert_security_headers(reply: &Reply) {
    let one = |name: &str, expected: &str| {
        let values: Vec<_> = reply.headers.get_all(name).iter().collect();
        assert_eq!(
            values.len(),
            1,
            "{name} on a {} answer: {values:?}",
            reply.status
        );
        assert_eq!(values[0], expected, "{name} on a {} answer", reply.status);
    };
    one(
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    );
    one("x-content-type-options", "nosniff");
    one("x-frame-options", "DENY");
    one("referrer-policy", "no-referrer");
    one(
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    );
    one("cache-control", "no-store");
    assert!(reply.headers.get("server").is_none(), "Server leaked");
    assert!(
        reply.headers.get("x-powered-by").is_none(),
        "X-Powered-By leaked"
    );
    assert!(reply.headers.get("x-request-id").is_some(), "no request id");
}

/// Asserts the body is the error envelope.
pub(crate) fn assert_envelope(reply: &Reply) {
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let json = reply.json();
    assert_eq!(json["status"], "ERROR", "{json}");
    assert!(json["message"].is_string(), "{json}");
    assert_eq!(json["details"], serde_json::json!([]), "{json}");
}

/// Waits (bounded by the safety net) until the audit file `path` holds at
/// least `count` lines: a serving thread writes its buffered lines just
/// after it answers, when it runs out of work (`audit.flush_interval`), so
/// a client can see its answer a moment before the line is in the file.
pub(crate) async fn audit_lines_written(path: &Path, count: usize) {
    let waiting = async {
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.lines().count() >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(SAFETY, waiting)
        .await
        .unwrap_or_else(|_| panic!("fewer than {count} audit lines in {}", path.display()));
}
