//! Test harness: a real worker on a real Unix socket in a temporary
//! directory, a real hyper HTTP/1.1 client, real multipart bodies.
//!
//! (`mod.rs` because Cargo would build a `tests/harness.rs` as a test crate
//! of its own.)

// Each test crate uses a different part of the harness, and `pub` here
// means "for the test crates", which `unreachable_pub` cannot see.
#![allow(dead_code, unreachable_pub)]

pub mod golden;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Body, Frame};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tradehabit_shared::headers::PRINCIPAL;
use tradehabit_worker::api::{self, Facts, Reply, Session};
use tradehabit_worker::config::Config;
use tradehabit_worker::engine::Handler;
use tradehabit_worker::serve::{Stopped, Worker};
use tradehabit_worker::session::ManualClock;

/// The longest any wait-for-a-condition loop in a test may take before the
/// test fails (a safety net against hangs, not a timing assertion).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A worker serving on a socket in its own temporary directory, with a
/// manual clock; stopped (and its socket removed) by [`TestWorker::stop`].
pub struct TestWorker {
    dir: tempfile::TempDir,
    socket: PathBuf,
    clock: Arc<ManualClock>,
    trigger: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Stopped>>,
}

impl TestWorker {
    /// A worker with the default configuration and the real engine.
    pub async fn start() -> Self {
        Self::start_with(|_| {}, None).await
    }

    /// A worker that ignores unknown settings keys as the legacy backend
    /// did (`--legacy-settings-keys`): the golden captures send one.
    pub async fn start_legacy() -> Self {
        Self::start_with(
            |config| {
                config.sessions.unknown_settings = tradehabit_worker::api::UnknownSettings::Ignore
            },
            None,
        )
        .await
    }

    /// A worker with a tuned configuration and, optionally, another engine
    /// entry point.
    pub async fn start_with(tune: impl FnOnce(&mut Config), handler: Option<Handler>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("worker.sock");
        let mut config = Config::new(&socket);
        tune(&mut config);
        let clock = Arc::new(ManualClock::new());
        let mut worker = Worker::new(config).with_clock(clock.clone());
        if let Some(handler) = handler {
            worker = worker.with_handler(handler);
        }
        let listening = worker.bind().expect("bind the worker socket");
        let (trigger, fired) = oneshot::channel::<()>();
        let task = tokio::spawn(listening.run(async move {
            let _ = fired.await;
        }));
        Self {
            dir,
            socket,
            clock,
            trigger: Some(trigger),
            task: Some(task),
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The temporary directory holding the socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The worker's session clock.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// Fires the shutdown trigger without waiting.
    pub fn trigger_shutdown(&mut self) {
        if let Some(trigger) = self.trigger.take() {
            let _ = trigger.send(());
        }
    }

    /// Fires the shutdown trigger and waits for the worker to stop.
    pub async fn stop(mut self) -> Stopped {
        self.trigger_shutdown();
        let task = self.task.take().expect("worker task");
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("the worker stops")
            .expect("the worker task does not panic")
    }

    /// `GET path` as `principal` (`None`: anonymous).
    pub async fn get(&self, path: &str, principal: Option<&str>) -> Answer {
        send(
            &self.socket,
            request(Method::GET, path, principal)
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
    }

    /// `POST path` with a JSON body as `principal`.
    pub async fn post_json(&self, path: &str, principal: Option<&str>, json: &str) -> Answer {
        let request = request(Method::POST, path, principal)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(json.to_owned())))
            .unwrap();
        send(&self.socket, request).await
    }

    /// `POST path` with a multipart form as `principal`.
    pub async fn post_form(&self, path: &str, principal: Option<&str>, form: Form) -> Answer {
        let (content_type, body) = form.finish();
        let request = request(Method::POST, path, principal)
            .header("content-type", content_type)
            .body(Full::new(body))
            .unwrap();
        send(&self.socket, request).await
    }

    /// Uploads `content` as `filename` to `/api/analyze`.
    pub async fn upload(&self, principal: Option<&str>, filename: &str, content: &[u8]) -> Answer {
        self.post_form(
            "/api/analyze",
            principal,
            Form::new().file("file", filename, content),
        )
        .await
    }

    /// `DELETE /api/session` as `principal`.
    pub async fn delete_session(&self, principal: Option<&str>) -> Answer {
        let request = request(Method::DELETE, "/api/session", principal)
            .body(Full::<Bytes>::default())
            .unwrap();
        send(&self.socket, request).await
    }

    /// The current value of one sample of `/internal/metrics`, e.g.
    /// `tradehabit_worker_sessions_active` or
    /// `tradehabit_worker_sessions_ended_total{reason="idle"}`; 0 if absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let answer = self.get("/internal/metrics", None).await;
        assert_eq!(answer.status, 200, "metrics: {}", answer.text());
        metric_value(&answer.text(), sample)
    }

    /// Waits until a metric sample reaches `value`.
    pub async fn wait_for_metric(&self, sample: &str, value: f64) {
        let started = Instant::now();
        loop {
            let current = self.metric(sample).await;
            if current == value {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{sample} stayed at {current}, expected {value}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        self.trigger_shutdown();
    }
}

/// A request builder with `Host` and, if given, the principal header.
pub fn request(method: Method, uri: &str, principal: Option<&str>) -> http::request::Builder {
    let builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "worker");
    match principal {
        Some(principal) => builder.header(PRINCIPAL, principal),
        None => builder,
    }
}

/// What came back.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON (the test fails if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {}", self.text()))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts an error envelope with this status and JSON content type.
    pub fn assert_envelope(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(
            self.headers
                .get("content-type")
                .map(|v| v.to_str().unwrap()),
            Some("application/json"),
            "content type of a {status}"
        );
        let body = self.json();
        assert_eq!(body["status"], "ERROR", "{body}");
        assert!(body["details"].is_array(), "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        body
    }
}

/// Where a test sends its requests: the worker's socket here, the gateway
/// over TLS in the end-to-end crate (which includes this harness).
pub trait Transport {
    /// Sends one request and returns the whole answer.
    fn send(&self, request: Request<Full<Bytes>>) -> impl std::future::Future<Output = Answer>;
}

impl Transport for Path {
    async fn send(&self, request: Request<Full<Bytes>>) -> Answer {
        send(self, request).await
    }
}

/// Sends one request on a new connection.
pub async fn send<B>(socket: &Path, request: Request<B>) -> Answer
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    try_send(socket, request).await.expect("request failed")
}

/// Sends one request on a new connection; transport errors (and no answer
/// within [`PATIENCE`]) are returned.
pub async fn try_send<B>(socket: &Path, request: Request<B>) -> Result<Answer, String>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::time::timeout(PATIENCE, exchange(socket, request))
        .await
        .map_err(|_| "no answer in time".to_owned())?
}

async fn exchange<B>(socket: &Path, request: Request<B>) -> Result<Answer, String>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|error| format!("connect: {error}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("handshake: {error}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| format!("send: {error}"))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|error| format!("body: {error}"))?
        .to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Reads one sample from an OpenMetrics text exposition; 0 if absent.
pub fn metric_value(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(sample)?;
            rest.strip_prefix(' ')?.trim().parse::<f64>().ok()
        })
        .unwrap_or(0.0)
}

/// A `multipart/form-data` body, built by hand as a browser would send it.
pub struct Form {
    boundary: String,
    body: Vec<u8>,
}

impl Form {
    /// An empty form.
    pub fn new() -> Self {
        Self {
            boundary: "----tradehabit-test-boundary-7MA4YWxkTrZu0gW".to_owned(),
            body: Vec::new(),
        }
    }

    /// A plain field.
    pub fn field(mut self, name: &str, value: &str) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self
    }

    /// A file part.
    pub fn file(mut self, name: &str, filename: &str, content: &[u8]) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
                 Content-Type: text/csv\r\n\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(content);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// The `Content-Type` header value and the body with its closing
    /// boundary.
    pub fn finish(mut self) -> (String, Bytes) {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (self.content_type(), Bytes::from(self.body))
    }

    /// The `Content-Type` header value.
    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    /// The bytes so far, without the closing boundary (for hand-made
    /// malformed bodies).
    pub fn unfinished(self) -> Vec<u8> {
        self.body
    }
}

/// A body produced chunk by chunk, counting the bytes the client actually
/// pulled (so a test can tell how much the server read).
pub fn counted_body<I>(
    chunks: I,
    pulled: Arc<AtomicUsize>,
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send>
where
    I: IntoIterator<Item = Bytes>,
    I::IntoIter: Send + 'static,
{
    let stream = futures_util::stream::iter(chunks.into_iter().map(move |chunk| {
        pulled.fetch_add(chunk.len(), Ordering::SeqCst);
        Ok(Frame::data(chunk))
    }));
    StreamBody::new(stream)
}

/// Path that makes [`observer`] and [`gated`] handlers wait at their gate.
pub const HOLD_PATH: &str = "/test/hold";
/// Path that makes the [`observer`] handler panic after changing the
/// session through the real engine.
pub const PANIC_PATH: &str = "/test/panic";

/// An engine entry point that answers 200 with what the HTTP layer handed
/// over — method, path, query, content type, body length, the upload
/// (filename, length, SHA-256) and the session's address — without
/// calling the engine; its log facts count the upload's lines as rows.
/// Requests to [`HOLD_PATH`] first wait at `gate`.
pub fn observer(gate: Option<&Gate>) -> Handler {
    let gate = gate.map(|gate| gate.inner.clone());
    Arc::new(move |session: &mut Session, request: api::Request<'_>| {
        if request.path == HOLD_PATH {
            if let Some(gate) = &gate {
                gate.pass();
            }
        }
        if request.path == PANIC_PATH {
            panic!("test panic");
        }
        let rows = match request.upload {
            Some(api::Upload::File { content, .. }) => {
                Some(content.iter().filter(|b| **b == b'\n').count())
            }
            _ => None,
        };
        let upload = request.upload.map(|upload| match upload {
            api::Upload::Missing => json!("missing"),
            api::Upload::File { filename, content } => json!({
                "filename": filename,
                "len": content.len(),
                "sha256": hex::encode(Sha256::digest(content)),
            }),
        });
        let body = json!({
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "content_type": request.content_type,
            "body_len": request.body.len(),
            "upload": upload,
            "session": format!("{:p}", session as *const Session),
        });
        Reply {
            status: 200,
            body: format!("{body}\n").into_bytes(),
            headers: Vec::new(),
            facts: Facts { rows, trades: None },
        }
    })
}

/// The real engine, except that [`HOLD_PATH`] requests wait at `gate` and
/// `POST` [`PANIC_PATH`] runs a real upload of its body's CSV into the
/// session (as `POST /api/analyze` would) and then panics.
pub fn real_engine_with(gate: Option<&Gate>) -> Handler {
    let gate = gate.map(|gate| gate.inner.clone());
    Arc::new(move |session: &mut Session, request: api::Request<'_>| {
        if request.path == HOLD_PATH {
            if let Some(gate) = &gate {
                gate.pass();
            }
        }
        if request.path == PANIC_PATH {
            let upload = api::Request::upload("changed.csv", request.body, "");
            let _ = api::handle(session, upload);
            panic!("test panic after changing the session");
        }
        api::handle(session, request)
    })
}

/// A gate engine calls wait at until the test opens it. Dropping the
/// `Gate` opens it, so a failing test never leaves a blocking thread stuck.
pub struct Gate {
    inner: Arc<GateInner>,
}

pub struct GateInner {
    state: Mutex<(bool, usize)>,
    changed: Condvar,
}

impl GateInner {
    /// Counts the arrival and blocks until the gate is open.
    fn pass(&self) {
        let mut state = self.state.lock().unwrap();
        state.1 += 1;
        self.changed.notify_all();
        while !state.0 {
            state = self.changed.wait(state).unwrap();
        }
    }
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(GateInner {
                state: Mutex::new((false, 0)),
                changed: Condvar::new(),
            }),
        }
    }

    /// How many calls have arrived at the gate.
    pub fn arrived(&self) -> usize {
        self.inner.state.lock().unwrap().1
    }

    /// Waits until `count` calls have arrived.
    pub async fn wait_for_arrivals(&self, count: usize) {
        let started = Instant::now();
        while self.arrived() < count {
            assert!(started.elapsed() < PATIENCE, "calls never reached the gate");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Lets every waiting and future call through.
    pub fn open(&self) {
        self.inner.state.lock().unwrap().0 = true;
        self.inner.changed.notify_all();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

/// The project's fixtures directory (`tests/fixtures` at the workspace
/// root).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// A fixture CSV's bytes.
pub fn csv(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("csv").join(name)).expect("fixture CSV")
}
