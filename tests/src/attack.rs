//! The attack harness: the real worker on a Unix socket in a temporary
//! directory, the real gateway in front of it over TLS (both in-process),
//! a hyper client for well-formed requests (HTTP/1.1 or HTTP/2) and raw TLS
//! sockets for the hand-written malformed ones. For what the worker cannot
//! show (a header name it ignores but a WSGI upstream would read), a
//! [`Recorder`] takes the worker's place and keeps every request head.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener};
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tradehabit_gateway::{Config, Gateway, Handle};

use crate::worker::RunningWorker;
pub use crate::Reply;
use crate::{collect, send_http1, write_test_certificate};

/// A safety net for reads that should end: a broken gateway fails the test
/// instead of hanging it. Never asserted on.
pub const SAFETY: Duration = Duration::from_secs(20);

/// The routes of the shipped example policy that the attack tests use,
/// every route exact as in `config/gateway.example.toml`, without
/// authentication (as in `config/gateway.legacy.toml`): these tests attack the
/// core, not the credential checks.
pub const ROUTES: &str = r#"
[[routes]]
name = "analyze"
path = "/api/analyze"
methods = ["POST"]
auth = "none"
body_limit = 2162688

[[routes]]
name = "summary"
path = "/api/summary"
methods = ["GET"]
auth = "none"
body_limit = 1024

[[routes]]
name = "trades"
path = "/api/trades"
methods = ["GET"]
auth = "none"
body_limit = 1024

[[routes]]
name = "settings"
path = "/api/settings"
methods = ["GET", "POST"]
auth = "none"
body_limit = 65536

[[routes]]
name = "health"
path = "/api/health"
methods = ["GET"]
auth = "none"
body_limit = 1024
"#;

/// The `[limits]` of the attack policy: short idle and header deadlines.
pub const LIMITS: &str = "idle_timeout = \"5s\"\nheader_read_timeout = \"5s\"";

/// Gateway + worker, in-process, files in one temporary directory.
pub struct Stack {
    dir: tempfile::TempDir,
    cert: CertificateDer<'static>,
    gateway: Option<Handle>,
    worker: Option<RunningWorker>,
}

/// One request head as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The method.
    pub method: http::Method,
    /// The request target.
    pub target: String,
    /// The headers.
    pub headers: HeaderMap,
}

/// An upstream in the worker's place that answers every request `200 {}`
/// and keeps its head.
pub struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Recorder {
    async fn start(socket: &Path) -> Recorder {
        let listener = UnixListener::bind(socket).expect("bind the recorder socket");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = Arc::clone(&kept);
                let service = hyper::service::service_fn(move |request: Request<_>| {
                    kept.lock().unwrap().push(Seen {
                        method: request.method().clone(),
                        target: request.uri().to_string(),
                        headers: request.headers().clone(),
                    });
                    let answer = http::Response::new(Full::new(Bytes::from_static(b"{}")));
                    async { Ok::<_, std::convert::Infallible>(answer) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Recorder { seen, task }
    }

    /// Every forwarded request head that reached the upstream, in order
    /// (the gateway's own readiness probes left out).
    pub fn seen(&self) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|request| request.target != "/internal/ready")
            .cloned()
            .collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stack {
    /// Starts the worker, then the gateway with [`ROUTES`].
    pub async fn start() -> Stack {
        Stack::start_with(|_| String::new(), ROUTES).await
    }

    /// Starts the worker, then the gateway with `routes` and the policy
    /// tables `checks` writes (given the temporary directory, where
    /// relative `file = …` secrets are read from).
    pub async fn start_with(checks: impl FnOnce(&Path) -> String, routes: &str) -> Stack {
        Stack::start_with_limits(LIMITS, checks, routes).await
    }

    /// [`Stack::start_with`], with `limits` as the body of the `[limits]`
    /// table instead of [`LIMITS`].
    pub async fn start_with_limits(
        limits: &str,
        checks: impl FnOnce(&Path) -> String,
        routes: &str,
    ) -> Stack {
        Stack::start_tuned(limits, "", checks, routes).await
    }

    /// [`Stack::start_with_limits`], with `upstream` (TOML `key = value`
    /// lines) added to the `[upstream]` table.
    pub async fn start_tuned(
        limits: &str,
        upstream: &str,
        checks: impl FnOnce(&Path) -> String,
        routes: &str,
    ) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("worker.sock");
        let worker = RunningWorker::on(&socket);
        let tables = Tables { limits, upstream };
        let mut stack = Stack::start_gateway(dir, &socket, &tables, checks, routes).await;
        stack.worker = Some(worker);
        stack
    }

    /// Starts a [`Recorder`] in the worker's place, then the gateway with
    /// [`ROUTES`] and `limits` as the body of the `[limits]` table.
    pub async fn start_recording(limits: &str) -> (Stack, Recorder) {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("upstream.sock");
        let recorder = Recorder::start(&socket).await;
        let tables = Tables {
            limits,
            upstream: "",
        };
        let stack = Stack::start_gateway(dir, &socket, &tables, |_| String::new(), ROUTES).await;
        (stack, recorder)
    }

    /// [`Stack::start_recording`] with `routes` and the policy tables
    /// `checks` writes (as [`Stack::start_with`]).
    pub async fn start_recording_with(
        checks: impl FnOnce(&Path) -> String,
        routes: &str,
    ) -> (Stack, Recorder) {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("upstream.sock");
        let recorder = Recorder::start(&socket).await;
        let tables = Tables {
            limits: LIMITS,
            upstream: "",
        };
        let stack = Stack::start_gateway(dir, &socket, &tables, checks, routes).await;
        (stack, recorder)
    }

    /// The gateway in `dir`, with a certificate for `localhost` and
    /// `127.0.0.1`, forwarding to `socket`.
    async fn start_gateway(
        dir: tempfile::TempDir,
        socket: &Path,
        tables: &Tables<'_>,
        checks: impl FnOnce(&Path) -> String,
        routes: &str,
    ) -> Stack {
        let cert = write_test_certificate(dir.path());
        let checks = checks(dir.path());
        let policy = write_policy(dir.path(), socket, tables, &checks, routes);
        let config = Config::from_file(&policy).expect("the attack policy is valid");
        let gateway = Gateway::start(config).await.expect("the gateway starts");
        Stack {
            dir,
            cert,
            gateway: Some(gateway),
            worker: None,
        }
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the gateway, then the worker.
    pub async fn stop(mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown().await;
        }
        if let Some(worker) = self.worker.take() {
            worker.stop().await;
        }
    }

    /// The gateway's HTTPS address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.gateway.as_ref().expect("running").https_addr()
    }

    /// The gateway's admin listener (`/metrics`).
    pub fn admin_addr(&self) -> std::net::SocketAddr {
        self.gateway.as_ref().expect("running").admin_addr()
    }

    /// The gateway's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let mut stream = TcpStream::connect(self.admin_addr()).await.expect("admin");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(SAFETY, stream.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// One sample of the gateway's metrics (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// The audit lines written so far, when the policy writes them to
    /// `audit.log` in the temporary directory.
    /// A line the gateway is still writing (no newline yet; a read can
    /// come between the parts of a write) is left for the next call.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir().join("audit.log")).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
        complete
            .lines()
            .map(|line| serde_json::from_str(line).expect("every audit line is JSON"))
            .collect()
    }

    /// Polls the audit log until a line satisfies `wanted` (bounded by the
    /// safety net); returns that line.
    pub async fn wait_for_audit(
        &self,
        wanted: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let waiting = async {
            loop {
                if let Some(line) = self.audit_lines().into_iter().find(|l| wanted(l)) {
                    return line;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(SAFETY, waiting)
            .await
            .unwrap_or_else(|_| panic!("no such audit line in {:?}", self.audit_lines()))
    }

    /// A TLS connection whose ALPN offers only `protocol`, from the
    /// loopback address `from` (any 127.0.0.0/8 address is local on Linux:
    /// a client of its own), with its receive buffer set to
    /// `receive_buffer` bytes if given (a client that stops reading then
    /// fills its TCP window early).
    pub async fn tls_from(
        &self,
        from: std::net::IpAddr,
        protocol: &[u8],
        receive_buffer: Option<u32>,
    ) -> TlsStream<TcpStream> {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind((from, 0).into())
            .expect("bind the client address");
        if let Some(bytes) = receive_buffer {
            socket.set_recv_buffer_size(bytes).expect("receive buffer");
        }
        let addr = self.gateway.as_ref().expect("running").https_addr();
        let tcp = socket.connect(addr).await.expect("connect");
        self.tls_over(tcp, protocol).await
    }

    /// A TLS connection speaking HTTP/1.1.
    pub async fn tls(&self) -> TlsStream<TcpStream> {
        self.tls_alpn(b"http/1.1").await
    }

    /// The plain-HTTP listener's address, when the policy has one.
    pub fn plain_http_addr(&self) -> Option<std::net::SocketAddr> {
        self.gateway.as_ref().expect("running").plain_http_addr()
    }

    /// Sends requests one after the other over one new HTTP/2 connection;
    /// each URI (and so its `:authority`) is sent as the caller wrote it.
    pub async fn send_h2(&self, requests: Vec<Request<Full<Bytes>>>) -> Vec<Reply> {
        let io = TokioIo::new(self.tls_alpn(b"h2").await);
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(connection);
        let mut replies = Vec::new();
        for request in requests {
            let response = sender.send_request(request).await.expect("an answer");
            replies.push(collect(response).await);
        }
        replies
    }

    /// A TLS connection whose ALPN offers only `protocol` (`h2`,
    /// `http/1.1`).
    pub async fn tls_alpn(&self, protocol: &[u8]) -> TlsStream<TcpStream> {
        let addr = self.gateway.as_ref().expect("running").https_addr();
        let tcp = TcpStream::connect(addr).await.expect("connect");
        self.tls_over(tcp, protocol).await
    }

    /// A TLS connection over `tcp` (connected to [`Stack::addr`]) whose
    /// ALPN offers only `protocol`.
    pub async fn tls_over(&self, tcp: TcpStream, protocol: &[u8]) -> TlsStream<TcpStream> {
        crate::tls_over(tcp, &self.cert, protocol).await
    }

    /// Writes `bytes` on a fresh connection and reads until the gateway
    /// closes it (or the safety net ends the read).
    pub async fn raw(&self, bytes: &[u8]) -> String {
        let mut stream = self.tls().await;
        stream.write_all(bytes).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(SAFETY, stream.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Sends one well-formed request on a fresh connection.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Reply {
        send_http1(self.addr(), &self.cert, request).await
    }

    /// `GET path` with extra headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut builder = Request::builder().method("GET").uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.send(builder.body(Full::default()).unwrap()).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.get_with(path, &[]).await
    }

    /// Uploads `content` as `filename` to `/api/analyze`, with extra headers.
    pub async fn upload(&self, filename: &str, content: &[u8], headers: &[(&str, &str)]) -> Reply {
        let (content_type, body) = multipart(&[("file", Some(filename), content)]);
        let mut builder = Request::builder()
            .method("POST")
            .uri("/api/analyze")
            .header("content-type", content_type);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.send(builder.body(Full::new(body)).unwrap()).await
    }

    /// Asserts the stack still answers a plain request after an attack.
    pub async fn assert_serving(&self) {
        let health = self.get("/api/health").await;
        assert_eq!(health.status, 200, "health after the attack: {health:?}");
    }
}

/// The bodies of the attack policy's `[limits]` table and the extra lines
/// of its `[upstream]` table.
struct Tables<'a> {
    limits: &'a str,
    upstream: &'a str,
}

fn write_policy(
    dir: &Path,
    socket: &Path,
    tables: &Tables<'_>,
    checks: &str,
    routes: &str,
) -> std::path::PathBuf {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [tls]\ncert = \"{dir}/cert.pem\"\nkey = \"{dir}/key.pem\"\n\n\
         [limits]\n{limits}\n\n\
         [upstream]\naddress = \"unix:{socket}\"\n{upstream}\n\n{checks}\n\n{routes}",
        dir = dir.display(),
        socket = socket.display(),
        limits = tables.limits,
        upstream = tables.upstream,
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A `multipart/form-data` body of `(name, filename, content)` parts;
/// returns the `Content-Type` and the body.
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Bytes) {
    const BOUNDARY: &str = "attackboundary7d3f";
    let mut body = Vec::new();
    for (name, filename, content) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match filename {
            Some(filename) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
                     Content-Type: text/csv\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (
        format!("multipart/form-data; boundary={BOUNDARY}"),
        Bytes::from(body),
    )
}

/// Every status code in a raw HTTP/1.1 answer, in order: more than one
/// means the gateway answered more than one request on the connection.
pub fn raw_statuses(answer: &str) -> Vec<u16> {
    answer
        .match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| answer.get(at + 9..at + 12))
        .filter_map(|code| code.parse().ok())
        .collect()
}

/// The small sample CSV shipped in `examples/`.
pub fn sample_csv() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/sample-orders.csv"))
        .expect("examples/sample-orders.csv")
}

/// A fixture from `tests/fixtures/csv/`.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/csv")
            .join(name),
    )
    .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}
