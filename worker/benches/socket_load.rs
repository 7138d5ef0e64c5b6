//! Load benchmark over the Unix socket: requests per second and latency
//! percentiles for `POST /api/analyze` with the 92 KB fixture
//! (`tests/fixtures/csv/legacy-314-trades.csv`) and for `GET /api/summary`.
//!
//! ```text
//! # an in-process worker (release build) on a temporary socket
//! cargo bench -p tradehabit-worker --bench socket_load
//! # a worker you started yourself, e.g. target/release/tradehabit-worker
//! cargo bench -p tradehabit-worker --bench socket_load -- --socket /run/tradehabit/worker.sock
//! # options: --connections N (8)  --seconds S (10)  --warmup S (2)
//! #          --scenario analyze|summary (both)
//! # memory per session: upload N principals' files, nothing else
//! cargo bench -p tradehabit-worker --bench socket_load -- --socket … --sessions 1000
//! ```
//!
//! `benches/worker-capacity.sh` runs it against a release worker process
//! and adds the worker's CPU time and memory (docs/scaling.md, "Capacity
//! per worker").
//!
//! Each connection is one keep-alive HTTP/1.1 client with its own
//! principal (a principal's requests take turns on its session, so one
//! principal alone would measure one core). Clients and an in-process
//! worker share the machine; against a separate worker process, pin them
//! apart for cleaner numbers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::task::JoinSet;
use tradehabit_shared::headers::PRINCIPAL;
use tradehabit_worker::config::Config;
use tradehabit_worker::serve::Worker;

const FIXTURE: &str = "legacy-314-trades.csv";
const BOUNDARY: &str = "----tradehabit-bench-boundary";

struct Options {
    socket: Option<PathBuf>,
    connections: usize,
    seconds: u64,
    warmup: u64,
    scenarios: Vec<Scenario>,
    /// Upload this many principals' files and stop (no scenarios).
    sessions: Option<usize>,
}

impl Options {
    fn parse() -> Self {
        let mut options = Self {
            socket: None,
            connections: 8,
            seconds: 10,
            warmup: 2,
            scenarios: vec![Scenario::Analyze, Scenario::Summary],
            sessions: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
            match arg.as_str() {
                "--socket" => options.socket = Some(PathBuf::from(value())),
                "--connections" => options.connections = value().parse().expect("a number"),
                "--seconds" => options.seconds = value().parse().expect("a number"),
                "--warmup" => options.warmup = value().parse().expect("a number"),
                "--scenario" => {
                    options.scenarios = vec![match value().as_str() {
                        "analyze" => Scenario::Analyze,
                        "summary" => Scenario::Summary,
                        other => panic!("--scenario analyze|summary, not {other}"),
                    }];
                }
                "--sessions" => options.sessions = Some(value().parse().expect("a number")),
                // `cargo bench` passes `--bench`; ignore what we do not know.
                _ => {}
            }
        }
        options
    }
}

#[derive(Clone, Copy)]
enum Scenario {
    Analyze,
    Summary,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Analyze => "POST /api/analyze (92 KB CSV)",
            Self::Summary => "GET /api/summary",
        }
    }
}

fn upload_body() -> Bytes {
    let csv = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/csv")
            .join(FIXTURE),
    )
    .expect("fixture CSV");
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{FIXTURE}\"\r\n\
         Content-Type: text/csv\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&csv);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    Bytes::from(body)
}

fn analyze(principal: &str, body: &Bytes) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::POST)
        .uri("/api/analyze")
        .header("host", "worker")
        .header(PRINCIPAL, principal)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Full::new(body.clone()))
        .expect("valid request")
}

fn summary(principal: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::GET)
        .uri("/api/summary")
        .header("host", "worker")
        .header(PRINCIPAL, principal)
        .body(Full::default())
        .expect("valid request")
}

async fn connect(socket: &Path) -> SendRequest<Full<Bytes>> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect to the worker socket");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
}

async fn exchange(sender: &mut SendRequest<Full<Bytes>>, request: Request<Full<Bytes>>) -> u16 {
    sender.ready().await.expect("connection ready");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    response.into_body().collect().await.expect("body");
    status
}

/// One client: warm up, then measure until the deadline.
async fn client(
    socket: PathBuf,
    scenario: Scenario,
    n: usize,
    body: Bytes,
    warmup_until: Instant,
    until: Instant,
) -> (Vec<Duration>, Vec<u16>, usize) {
    let principal = format!("bench:{n}");
    let mut sender = connect(&socket).await;
    // Every scenario starts from an analysed upload.
    exchange(&mut sender, analyze(&principal, &body)).await;
    let request = || match scenario {
        Scenario::Analyze => analyze(&principal, &body),
        Scenario::Summary => summary(&principal),
    };
    let mut warmup = 1;
    while Instant::now() < warmup_until {
        exchange(&mut sender, request()).await;
        warmup += 1;
    }
    let mut latencies = Vec::new();
    let mut statuses = Vec::new();
    while Instant::now() < until {
        let started = Instant::now();
        let status = exchange(&mut sender, request()).await;
        latencies.push(started.elapsed());
        statuses.push(status);
    }
    (latencies, statuses, warmup)
}

async fn run(socket: &Path, scenario: Scenario, options: &Options) {
    let body = upload_body();
    let warmup_until = Instant::now() + Duration::from_secs(options.warmup);
    let until = warmup_until + Duration::from_secs(options.seconds);
    let mut clients = JoinSet::new();
    for n in 0..options.connections {
        clients.spawn(client(
            socket.to_owned(),
            scenario,
            n,
            body.clone(),
            warmup_until,
            until,
        ));
    }
    let mut latencies = Vec::new();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut unmeasured = 0;
    while let Some(result) = clients.join_next().await {
        let (client_latencies, client_statuses, warmup) = result.expect("client task");
        unmeasured += warmup;
        latencies.extend(client_latencies);
        for status in client_statuses {
            *statuses.entry(status).or_default() += 1;
        }
    }
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
        latencies.get(index).copied().unwrap_or_default()
    };
    let rate = latencies.len() as f64 / options.seconds as f64;
    // `sent` counts the warm-up and each client's first upload too: what
    // the worker did in all, for CPU time per request.
    println!(
        "{:<32} {:>8} req  {:>9.1} req/s  p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms  sent {}  statuses {:?}",
        scenario.name(),
        latencies.len(),
        rate,
        percentile(0.50).as_secs_f64() * 1e3,
        percentile(0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        latencies.len() + unmeasured,
        statuses,
    );
    if statuses.keys().any(|status| *status != 200) {
        println!("  warning: not every answer was 200 — these numbers do not measure the analysis");
    }
}

/// Uploads the fixture as principals `session:0` … `session:{count-1}`,
/// over `connections` connections, so that the worker holds that many
/// sessions (the memory measurement reads the worker from outside).
async fn upload_sessions(socket: &Path, count: usize, connections: usize) {
    let body = upload_body();
    let started = Instant::now();
    let mut clients = JoinSet::new();
    for n in 0..connections.max(1) {
        let (socket, body) = (socket.to_owned(), body.clone());
        clients.spawn(async move {
            let mut sender = connect(&socket).await;
            let mut failed = 0;
            for i in (n..count).step_by(connections.max(1)) {
                let request = analyze(&format!("session:{i}"), &body);
                if exchange(&mut sender, request).await != 200 {
                    failed += 1;
                }
            }
            failed
        });
    }
    let mut failed = 0;
    while let Some(result) = clients.join_next().await {
        failed += result.expect("client task");
    }
    println!(
        "sessions: {count} principals uploaded in {:.1} s, {failed} not answered 200",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let options = Options::parse();
    println!(
        "socket_load: {} connections, {} s warm-up, {} s per scenario",
        options.connections, options.warmup, options.seconds
    );
    let mut local = None;
    let socket = match &options.socket {
        Some(socket) => socket.clone(),
        None => {
            let dir = tempfile::tempdir().expect("temp dir");
            let socket = dir.path().join("worker.sock");
            let mut config = Config::new(&socket);
            // Every client may wait for an engine slot: measure throughput,
            // not 503s.
            config.admission.max_queued = options.connections.max(config.admission.max_queued);
            let listening = Worker::new(config).bind().expect("bind the worker");
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(listening.run(async move {
                let _ = stopped.await;
            }));
            local = Some((dir, stop, task));
            socket
        }
    };
    if let Some(sessions) = options.sessions {
        upload_sessions(&socket, sessions, options.connections).await;
    } else {
        for &scenario in &options.scenarios {
            run(&socket, scenario, &options).await;
        }
    }
    if let Some((_dir, stop, task)) = local {
        let _ = stop.send(());
        let _ = task.await;
    }
}
