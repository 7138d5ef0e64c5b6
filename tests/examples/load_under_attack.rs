//! Load under attack: do legitimate traders keep working while one client
//! floods the API far beyond its rate limit and others hold hundreds of slow
//! connections?
//!
//! Run through `benches/load-under-attack.sh`, which builds the release
//! binaries and passes their paths. This program
//!
//! 1. starts the real worker (Unix socket) and the real gateway (TLS) as
//!    child processes, with the shipped strict policy
//!    (`config/gateway.example.toml`: API keys, per-IP and per-principal
//!    quotas, connection caps, header and handshake deadlines) and three
//!    fresh API keys;
//! 2. **quiet phase**: the legitimate traders work alone for `--phase`
//!    seconds, each from its own loopback address at `--trader-rate`
//!    requests a second, well inside their quotas: the eleven read routes in
//!    turn, an upload of a 92 KB export every 15 s; every fourth request on
//!    a fresh TLS connection, the others on a kept-alive one;
//! 3. **attack phase**: the same again while
//!    * a flooder from 127.0.0.2 sends `--flood-rate` requests a second
//!      (0 = as fast as it can) over `--flood-connections` kept-alive
//!      connections: reads and uploads with its own valid key, and reads
//!      without credentials (each quota is 1 request a second or less, so
//!      nearly all are refused with 429);
//!    * `--slow-connections` slow clients spread over `--slow-addresses`
//!      loopback addresses hold connections open: half stall the TLS
//!      handshake, half send a request head one header line every 2 s
//!      (slowloris); each reconnects as soon as the gateway drops it;
//!    * clients that stop taking their answers (`load_under_attack/stalling.rs`):
//!      `--stall-h2-connections` zero-window HTTP/2 connections from
//!      127.0.0.4 keeping `--stall-streams` streams each open, and
//!      `--nonreading-connections` HTTP/1.1 connections from 127.0.0.5 that
//!      pipeline requests for large answers and never read; both with their
//!      own valid keys and data, both reopening whatever the gateway ends.
//!
//! The attackers run on a runtime of their own whose threads are lowered to
//! `--attacker-nice` (10 by default): on this one machine their clients
//! share the cores with the stack, where in production they run on the
//! attackers' own machines.
//!
//! It prints, per phase, the traders' request count, success rate (200
//! answers) and latency percentiles, the slowest requests with what the
//! gateway ended around them (slow connections dropped, zero-window
//! streams reset, non-reading connections closed), and what the attackers
//! got. Latency is
//! measured per request from the moment it is sent; requests are paced by a
//! timer that skips missed ticks, so a stalled request delays the next one
//! rather than queueing a burst.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tradehabit_gateway::checks::api_key::keygen;
use tradehabit_gateway::checks::secret::Secret;

#[path = "load_under_attack/stalling.rs"]
mod stalling;

/// The read routes a trader's dashboard calls.
const READ_ROUTES: [&str; 11] = [
    "/api/summary",
    "/api/trades",
    "/api/losses",
    "/api/revenge",
    "/api/risk-sizing",
    "/api/excessive-risk",
    "/api/stop-loss",
    "/api/winrate-payoff",
    "/api/insights",
    "/api/goals",
    "/api/settings",
];

/// A trader uploads a fresh export this often (the quota is 5 a minute).
const UPLOAD_EVERY: Duration = Duration::from_secs(15);
/// A slowloris client sends one more header line this often.
const SLOW_LINE_EVERY: Duration = Duration::from_secs(2);
/// No request may take longer than this; beyond it, it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const PEPPER: &str = "load-under-attack-pepper-0123456789abcdef";

#[derive(Parser, Debug)]
#[command(about = "Legitimate traders' success rate and latency, quiet and under attack")]
struct Args {
    /// The release `tradehabit-gateway` binary.
    #[arg(long)]
    gateway_bin: PathBuf,
    /// The release `tradehabit-worker` binary.
    #[arg(long)]
    worker_bin: PathBuf,
    /// Seconds each phase measures.
    #[arg(long, default_value_t = 45)]
    phase: u64,
    /// Seconds the attack runs before the attack phase starts measuring.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Legitimate traders, each with its own key and loopback address.
    #[arg(long, default_value_t = 2)]
    traders: u8,
    /// Requests a second per trader.
    #[arg(long, default_value_t = 5)]
    trader_rate: u32,
    /// Flood requests a second in total; 0 = as fast as possible.
    #[arg(long, default_value_t = 2000)]
    flood_rate: u32,
    /// Kept-alive connections the flooder uses.
    #[arg(long, default_value_t = 48)]
    flood_connections: u32,
    /// Slow connections held open in total.
    #[arg(long, default_value_t = 400)]
    slow_connections: u32,
    /// Loopback addresses the slow connections come from.
    #[arg(long, default_value_t = 8)]
    slow_addresses: u8,
    /// Zero-window HTTP/2 connections (from 127.0.0.4).
    #[arg(long, default_value_t = 2)]
    stall_h2_connections: u32,
    /// Streams each zero-window connection keeps open.
    #[arg(long, default_value_t = 50)]
    stall_streams: usize,
    /// Non-reading HTTP/1.1 connections (from 127.0.0.5).
    #[arg(long, default_value_t = 16)]
    nonreading_connections: u32,
    /// The nice value of the attackers' threads (0 to 19). The attackers'
    /// clients run on this machine's cores beside the gateway, the worker
    /// and the traders, where in production they run on the attackers'
    /// own machines; a lower priority keeps their own CPU work (TLS
    /// handshakes, hundreds of reconnects at once) from being charged to
    /// the stack. 0: the same priority as everything else.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=19))]
    attacker_nice: u8,
}

/// The zero-window HTTP/2 attacker's address.
const STALL_H2_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
/// The non-reading HTTP/1.1 attacker's address.
const STALL_H1_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stack = Arc::new(Stack::start(&args).await?);
    let traders: Arc<Vec<Trader>> = Arc::new(
        (0..args.traders)
            .map(|index| Trader {
                key: stack.trader_keys[usize::from(index)].clone(),
                source: Ipv4Addr::new(127, 0, 1, index + 1).into(),
                rate: args.trader_rate,
            })
            .collect(),
    );
    let phase = Duration::from_secs(args.phase);

    // Every trader has data before anything is measured.
    for trader in traders.iter() {
        let mut connection = None;
        let status = trader
            .request(&stack, &mut connection, true, upload_request(&stack))
            .await
            .map_err(|error| anyhow::anyhow!("the first upload: {error}"))?;
        if status != StatusCode::OK {
            bail!("a trader's first upload was answered {status}");
        }
    }

    // The stalling attackers have data too: their reads get real answers
    // (the trades: larger than the gateway's response buffer).
    for (source, key) in [STALL_H2_SOURCE, STALL_H1_SOURCE]
        .into_iter()
        .zip(&stack.stall_keys)
    {
        let sender = stack.http1(source.into()).await?;
        let status = send_status(sender, multipart(&stack, Some(key), &stack.stall_upload)).await?;
        if status != StatusCode::OK {
            bail!("a stalling attacker's upload was answered {status}");
        }
    }

    eprintln!("quiet phase: {} s", args.phase);
    let quiet = run_traders(&stack, &traders, phase).await;

    eprintln!(
        "attack phase: {} s warm-up, then {} s",
        args.warmup, args.phase
    );
    let attack = Attack::start(&stack, &args)?;
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let slow_open_at_start = attack.slow.open.load(Ordering::Relaxed);
    let under_attack = run_traders(&stack, &traders, phase).await;
    let attack_report = attack.stop().await;

    // The stack still answers after the attack.
    let mut connection = None;
    let after = traders[0]
        .request(
            &stack,
            &mut connection,
            true,
            get_request(&stack, "/api/summary", &stack.trader_keys[0]),
        )
        .await;

    println!(
        "{}",
        report(
            &args,
            &quiet,
            &under_attack,
            &attack_report,
            slow_open_at_start,
            &after
        )
    );
    // Dropping the stack kills both processes and removes the directory.
    Ok(())
}

/// The gateway and the worker, as child processes killed on drop.
struct Stack {
    _dir: tempfile::TempDir,
    _gateway: Child,
    _worker: Child,
    addr: SocketAddr,
    connector: TlsConnector,
    h2_connector: TlsConnector,
    trader_keys: Vec<String>,
    flooder_key: String,
    /// The zero-window HTTP/2 attacker's key, then the non-reading one's.
    stall_keys: Vec<String>,
    upload: Bytes,
    flood_upload: Bytes,
    stall_upload: Bytes,
}

impl Stack {
    async fn start(args: &Args) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let cert = tradehabit_e2e::write_test_certificate(dir.path());
        std::fs::write(dir.path().join("pepper"), PEPPER)?;
        let pepper = Secret::new(PEPPER.as_bytes().to_vec());
        let scopes = vec!["read".to_owned(), "analyze".to_owned()];
        let mut rng = rand::rngs::OsRng;
        let mut entries = Vec::new();
        let mut trader_keys = Vec::new();
        for index in 0..args.traders {
            let key = keygen(&pepper, &format!("trader-{index}"), &scopes, &mut rng)?;
            entries.push(key.policy_entry);
            trader_keys.push(key.key);
        }
        let flooder = keygen(&pepper, "flooder", &scopes, &mut rng)?;
        entries.push(flooder.policy_entry);
        let mut stall_keys = Vec::new();
        for name in ["staller-h2", "staller-h1"] {
            let key = keygen(&pepper, name, &scopes, &mut rng)?;
            entries.push(key.policy_entry);
            stall_keys.push(key.key);
        }

        let socket = dir.path().join("worker.sock");
        let port = free_port()?;
        let policy = policy(dir.path(), &socket, port, &entries)?;
        let policy_path = dir.path().join("gateway.toml");
        std::fs::write(&policy_path, policy)?;

        let worker = Command::new(&args.worker_bin)
            .arg("--socket")
            .arg(&socket)
            .stdout(std::fs::File::create(dir.path().join("worker.out"))?)
            .stderr(std::fs::File::create(dir.path().join("worker.err"))?)
            .kill_on_drop(true)
            .spawn()
            .context("start the worker")?;
        wait_for(|| socket.exists())
            .await
            .context("the worker's socket")?;
        let gateway = Command::new(&args.gateway_bin)
            .arg("run")
            .arg("--config")
            .arg(&policy_path)
            .stdout(std::fs::File::create(dir.path().join("gateway.out"))?)
            .stderr(std::fs::File::create(dir.path().join("gateway.err"))?)
            .kill_on_drop(true)
            .spawn()
            .context("start the gateway")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for_connect(addr)
            .await
            .context("the gateway's listener")?;

        let root = tradehabit_e2e::workspace_root();
        Ok(Self {
            addr,
            connector: connector(cert.clone(), b"http/1.1"),
            h2_connector: connector(cert, b"h2"),
            trader_keys,
            flooder_key: flooder.key,
            stall_keys,
            stall_upload: std::fs::read(root.join("tests/fixtures/csv/gen-seed3.csv"))?.into(),
            upload: std::fs::read(root.join("tests/fixtures/csv/legacy-314-trades.csv"))?.into(),
            flood_upload: std::fs::read(root.join("examples/sample-orders.csv"))?.into(),
            _gateway: gateway,
            _worker: worker,
            _dir: dir,
        })
    }

    /// A TLS connection from `source`.
    async fn connect(&self, source: IpAddr) -> anyhow::Result<TlsStream<TcpStream>> {
        let tcp = tcp_from(source, self.addr).await?;
        let name = ServerName::try_from("localhost")?;
        Ok(self.connector.connect(name, tcp).await?)
    }

    /// A TLS connection from `source` offering only `alpn`.
    async fn connect_alpn(
        &self,
        source: IpAddr,
        alpn: &[u8],
    ) -> anyhow::Result<TlsStream<TcpStream>> {
        let connector = if alpn == b"h2" {
            &self.h2_connector
        } else {
            &self.connector
        };
        let tcp = tcp_from(source, self.addr).await?;
        let name = ServerName::try_from("localhost")?;
        Ok(connector.connect(name, tcp).await?)
    }

    async fn http1(&self, source: IpAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let tls = self.connect(source).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// The shipped strict policy, pointed at this run.
fn policy(dir: &Path, socket: &Path, port: u16, keys: &[String]) -> anyhow::Result<String> {
    let example = tradehabit_e2e::workspace_root().join("config/gateway.example.toml");
    let upstream = format!("unix:{}", socket.display());
    let keys_toml = format!(
        "pepper = {{ file = \"{}\" }}\nkeys = [{}]\n",
        dir.join("pepper").display(),
        keys.join(", ")
    );
    let api_keys: toml::Table = keys_toml.parse()?;
    let audit_log = dir.join("audit.log").display().to_string();
    let table = tradehabit_e2e::policy_table_for_test(&example, dir, &upstream, |table| {
        let mut server = toml::Table::new();
        server.insert("listen".into(), format!("127.0.0.1:{port}").into());
        table.insert("server".into(), server.into());
        let mut audit = toml::Table::new();
        audit.insert("output".into(), audit_log.into());
        table.insert("audit".into(), audit.into());
        table.insert("api_keys".into(), api_keys.into());
    });
    Ok(toml::to_string(&table)?)
}

fn connector(cert: CertificateDer<'static>, alpn: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("trust the test certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn tcp_from(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(to).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn wait_for(mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    for _ in 0..200 {
        if ready() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("not ready after 10 s")
}

async fn wait_for_connect(addr: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("not listening after 10 s")
}

fn get_request(stack: &Stack, path: &str, key: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", format!("localhost:{}", stack.addr.port()))
        .header("x-api-key", key)
        .body(Full::new(Bytes::new()))
        .expect("a valid request")
}

fn multipart(stack: &Stack, key: Option<&str>, file: &Bytes) -> Request<Full<Bytes>> {
    const BOUNDARY: &str = "load-under-attack-boundary";
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"orders.csv\"\r\nContent-Type: text/csv\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let mut request = Request::post("/api/analyze")
        .header("host", format!("localhost:{}", stack.addr.port()))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        );
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    request
        .body(Full::new(Bytes::from(body)))
        .expect("a valid request")
}

/// Sends one request on `sender` and reads the answer; its status.
async fn send_status(
    mut sender: SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<StatusCode> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}

fn upload_request(stack: &Stack) -> Request<Full<Bytes>> {
    multipart(stack, Some(&stack.trader_keys[0]), &stack.upload)
}

/// One legitimate trader.
struct Trader {
    key: String,
    source: IpAddr,
    rate: u32,
}

/// One measured request.
struct Sample {
    kind: Kind,
    sent: Instant,
    latency: Duration,
    outcome: Result<StatusCode, String>,
}

/// What a measured request was, for the breakdown under the table.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A read on a kept-alive connection.
    Read,
    /// A read on a connection opened for it (a TLS handshake included).
    FreshRead,
    /// An upload of the trader's export.
    Upload,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Read, Kind::FreshRead, Kind::Upload];

    fn name(self) -> &'static str {
        match self {
            Kind::Read => "kept-alive reads",
            Kind::FreshRead => "reads on a new connection",
            Kind::Upload => "uploads",
        }
    }
}

impl Trader {
    /// Sends one request, on `connection` (opened if needed) or on a fresh
    /// connection; the whole exchange, body included, is timed.
    async fn request(
        &self,
        stack: &Stack,
        connection: &mut Option<SendRequest<Full<Bytes>>>,
        fresh: bool,
        mut request: Request<Full<Bytes>>,
    ) -> Result<StatusCode, String> {
        request.headers_mut().insert(
            "x-api-key",
            self.key.parse().expect("a key is a header value"),
        );
        let exchange = async {
            let mut sender = match (fresh, connection.take()) {
                (false, Some(sender)) if !sender.is_closed() => sender,
                _ => stack
                    .http1(self.source)
                    .await
                    .map_err(|e| format!("connect: {e:#}"))?,
            };
            sender.ready().await.map_err(|e| format!("ready: {e}"))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("send: {e}"))?;
            let status = response.status();
            response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?;
            if !fresh {
                *connection = Some(sender);
            }
            Ok(status)
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Err("timed out".into()),
        }
    }

    async fn work(&self, stack: &Stack, length: Duration) -> Vec<Sample> {
        let mut samples = Vec::new();
        let mut connection = None;
        let mut ticks = tokio::time::interval(Duration::from_secs(1) / self.rate);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let started = Instant::now();
        let mut last_upload = Instant::now();
        let mut index = 0usize;
        while started.elapsed() < length {
            ticks.tick().await;
            let fresh = index % 4 == 3;
            let (kind, request) = if last_upload.elapsed() >= UPLOAD_EVERY {
                last_upload = Instant::now();
                (Kind::Upload, multipart(stack, None, &stack.upload))
            } else {
                let read = get_request(stack, READ_ROUTES[index % READ_ROUTES.len()], &self.key);
                (if fresh { Kind::FreshRead } else { Kind::Read }, read)
            };
            index += 1;
            let sent = Instant::now();
            let outcome = self.request(stack, &mut connection, fresh, request).await;
            samples.push(Sample {
                kind,
                sent,
                latency: sent.elapsed(),
                outcome,
            });
        }
        samples
    }
}

/// Runs the traders for `length` on a thread and runtime of their own, so
/// that what they measure is the stack's latency, not a queue behind the
/// attackers' tasks in this process's runtime (in production the attacker's
/// client does not share the traders' scheduler). The operating system still
/// shares the machine's cores between everyone.
async fn run_traders(
    stack: &Arc<Stack>,
    traders: &Arc<Vec<Trader>>,
    length: Duration,
) -> Vec<Sample> {
    let (stack, traders) = (Arc::clone(stack), Arc::clone(traders));
    let measuring = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the traders' runtime");
        runtime.block_on(async {
            let runs = traders.iter().map(|trader| trader.work(&stack, length));
            futures_util::future::join_all(runs)
                .await
                .into_iter()
                .flatten()
                .collect()
        })
    });
    tokio::task::spawn_blocking(move || measuring.join().expect("the traders' thread"))
        .await
        .expect("the traders' thread")
}

/// What the slow clients did.
#[derive(Default)]
struct SlowCounters {
    /// Connections opened (TCP connect succeeded).
    opened: AtomicU64,
    /// Open right now.
    open: AtomicI64,
    /// The most open at once.
    peak: AtomicI64,
    /// Closed by the gateway within 200 ms of being opened (a cap).
    refused: AtomicU64,
    /// Closed by the gateway after being held (a deadline).
    dropped: AtomicU64,
    /// Sum of how long dropped connections were held, in milliseconds.
    held_ms: AtomicU64,
    timeline: Arc<Timeline>,
}

/// When the attackers saw the gateway end something of theirs, to line up
/// with the traders' slowest requests under the table.
#[derive(Default)]
struct Timeline(Mutex<Vec<(Instant, &'static str)>>);

impl Timeline {
    fn mark(&self, what: &'static str) {
        let now = Instant::now();
        self.0.lock().expect("not poisoned").push((now, what));
    }

    /// How many of each kind happened between `from` and `to`.
    fn between(&self, from: Instant, to: Instant) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for (at, what) in self.0.lock().expect("not poisoned").iter() {
            if (from..=to).contains(at) {
                *counts.entry(*what).or_default() += 1;
            }
        }
        counts
    }
}

#[derive(Default)]
struct FloodCounters {
    /// Answers by kind of request and status.
    statuses: Mutex<BTreeMap<(&'static str, u16), u64>>,
    errors: AtomicU64,
}

struct Attack {
    /// The attackers' own runtime (`--attacker-nice`).
    runtime: tokio::runtime::Runtime,
    stop: Arc<AtomicBool>,
    tasks: tokio::task::JoinSet<()>,
    slow: Arc<SlowCounters>,
    flood: Arc<FloodCounters>,
    stalls: Arc<stalling::StallCounters>,
    started: Instant,
}

struct AttackReport {
    flood_statuses: BTreeMap<(&'static str, u16), u64>,
    flood_errors: u64,
    flood_seconds: f64,
    slow_opened: u64,
    slow_peak: i64,
    slow_refused: u64,
    slow_dropped: u64,
    slow_mean_held_ms: u64,
    stalls: Arc<stalling::StallCounters>,
    timeline: Arc<Timeline>,
}

impl Attack {
    fn start(stack: &Arc<Stack>, args: &Args) -> anyhow::Result<Self> {
        let nice = args.attacker_nice;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("attacker")
            .on_thread_start(move || {
                if let Err(error) = lower_this_thread(nice) {
                    eprintln!("could not lower an attacker thread's priority: {error:#}");
                }
            })
            .enable_all()
            .build()
            .context("the attackers' runtime")?;
        let on = runtime.handle().clone();
        let stop = Arc::new(AtomicBool::new(false));
        let timeline = Arc::new(Timeline::default());
        let slow = Arc::new(SlowCounters {
            timeline: Arc::clone(&timeline),
            ..SlowCounters::default()
        });
        let flood = Arc::new(FloodCounters::default());
        let mut tasks = tokio::task::JoinSet::new();
        let per_connection = (args.flood_rate > 0)
            .then(|| Duration::from_secs(1) * args.flood_connections / args.flood_rate);
        for index in 0..args.flood_connections {
            let (stack, stop, flood) = (Arc::clone(stack), Arc::clone(&stop), Arc::clone(&flood));
            tasks.spawn_on(
                async move { flood_connection(&stack, index, per_connection, &stop, &flood).await },
                &on,
            );
        }
        for index in 0..args.slow_connections {
            let source = Ipv4Addr::new(
                127,
                0,
                2,
                1 + (index % u32::from(args.slow_addresses)) as u8,
            );
            let (stack, stop, slow) = (Arc::clone(stack), Arc::clone(&stop), Arc::clone(&slow));
            tasks.spawn_on(
                async move {
                    slow_connection(&stack, source.into(), index % 2 == 0, &stop, &slow).await
                },
                &on,
            );
        }
        let stalls = Arc::new(stalling::StallCounters {
            timeline: Arc::clone(&timeline),
            ..stalling::StallCounters::default()
        });
        for _ in 0..args.stall_h2_connections {
            let (stack, stop, stalls) = (Arc::clone(stack), Arc::clone(&stop), Arc::clone(&stalls));
            let streams = args.stall_streams;
            tasks.spawn_on(
                async move {
                    let key = stack.stall_keys[0].clone();
                    let source = STALL_H2_SOURCE.into();
                    stalling::zero_window_h2(&stack, source, &key, streams, &stop, &stalls).await
                },
                &on,
            );
        }
        for _ in 0..args.nonreading_connections {
            let (stack, stop, stalls) = (Arc::clone(stack), Arc::clone(&stop), Arc::clone(&stalls));
            tasks.spawn_on(
                async move {
                    let key = stack.stall_keys[1].clone();
                    let source = STALL_H1_SOURCE.into();
                    stalling::never_reading_h1(&stack, source, &key, &stop, &stalls).await
                },
                &on,
            );
        }
        Ok(Self {
            runtime,
            stop,
            tasks,
            slow,
            flood,
            stalls,
            started: Instant::now(),
        })
    }

    async fn stop(mut self) -> AttackReport {
        self.stop.store(true, Ordering::Relaxed);
        let flood_seconds = self.started.elapsed().as_secs_f64();
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        self.runtime.shutdown_background();
        let dropped = self.slow.dropped.load(Ordering::Relaxed);
        AttackReport {
            flood_statuses: self.flood.statuses.lock().expect("not poisoned").clone(),
            flood_errors: self.flood.errors.load(Ordering::Relaxed),
            flood_seconds,
            slow_opened: self.slow.opened.load(Ordering::Relaxed),
            slow_peak: self.slow.peak.load(Ordering::Relaxed),
            slow_refused: self.slow.refused.load(Ordering::Relaxed),
            slow_dropped: dropped,
            slow_mean_held_ms: self.slow.held_ms.load(Ordering::Relaxed) / dropped.max(1),
            stalls: Arc::clone(&self.stalls),
            timeline: Arc::clone(&self.slow.timeline),
        }
    }
}

/// Sets the calling thread's nice value (Linux: each thread has its own),
/// with `renice` on its thread id.
fn lower_this_thread(nice: u8) -> anyhow::Result<()> {
    if nice == 0 {
        return Ok(());
    }
    // "<pid>/task/<tid>"
    let link = std::fs::read_link("/proc/thread-self").context("/proc/thread-self")?;
    let tid = link
        .file_name()
        .and_then(|tid| tid.to_str())
        .context("a thread id")?
        .to_owned();
    let status = std::process::Command::new("renice")
        .args(["-n", &nice.to_string(), "-p", &tid])
        .stdout(std::process::Stdio::null())
        .status()
        .context("renice")?;
    anyhow::ensure!(status.success(), "renice exited with {status}");
    Ok(())
}

/// One flood connection from 127.0.0.2: reads and uploads with the
/// flooder's key, and reads without credentials, as fast as allowed.
async fn flood_connection(
    stack: &Stack,
    index: u32,
    pace: Option<Duration>,
    stop: &AtomicBool,
    counters: &FloodCounters,
) {
    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let mut ticks = pace.map(|pace| {
        let mut ticks = tokio::time::interval(pace);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        ticks
    });
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut round = 0u32;
    while !stop.load(Ordering::Relaxed) {
        if let Some(ticks) = ticks.as_mut() {
            ticks.tick().await;
        }
        round = round.wrapping_add(1);
        let (kind, request) = match (index % 4, round % 8) {
            (3, _) => {
                let mut request = get_request(stack, "/api/trades", "");
                request.headers_mut().remove("x-api-key");
                ("read without key", request)
            }
            (_, 0) => (
                "upload with key",
                multipart(stack, Some(&stack.flooder_key), &stack.flood_upload),
            ),
            _ => (
                "read with key",
                get_request(
                    stack,
                    READ_ROUTES[round as usize % READ_ROUTES.len()],
                    &stack.flooder_key,
                ),
            ),
        };
        let mut current = match sender.take() {
            Some(current) if !current.is_closed() => current,
            _ => match stack.http1(source).await {
                Ok(current) => current,
                Err(_) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let exchange = async {
            current.ready().await.ok()?;
            let response = current.send_request(request).await.ok()?;
            let status = response.status();
            response.into_body().collect().await.ok()?;
            Some(status)
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Some(status)) => {
                *counters
                    .statuses
                    .lock()
                    .expect("not poisoned")
                    .entry((kind, status.as_u16()))
                    .or_default() += 1;
                sender = Some(current);
            }
            _ => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One slow client: holds a connection open as long as the gateway lets
/// it, then opens another.
async fn slow_connection(
    stack: &Stack,
    source: IpAddr,
    stall_handshake: bool,
    stop: &AtomicBool,
    counters: &SlowCounters,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut tcp) = tcp_from(source, stack.addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let opened = Instant::now();
        counters.opened.fetch_add(1, Ordering::Relaxed);
        let now_open = counters.open.fetch_add(1, Ordering::Relaxed) + 1;
        counters.peak.fetch_max(now_open, Ordering::Relaxed);
        if stall_handshake {
            // Say nothing; wait for the gateway to give up.
            let mut byte = [0u8; 1];
            let _ = tcp.read(&mut byte).await;
        } else if let Ok(name) = ServerName::try_from("localhost") {
            if let Ok(mut tls) = stack.connector.connect(name, tcp).await {
                let head = b"GET /api/trades HTTP/1.1\r\nHost: localhost\r\n";
                let mut alive = tls.write_all(head).await.is_ok();
                let mut line = 0u32;
                while alive {
                    let mut byte = [0u8; 1];
                    tokio::select! {
                        read = tls.read(&mut byte) => alive = matches!(read, Ok(n) if n > 0),
                        () = tokio::time::sleep(SLOW_LINE_EVERY) => {
                            line += 1;
                            alive = tls.write_all(format!("X-Slow-{line}: x\r\n").as_bytes()).await.is_ok();
                        }
                    }
                }
            }
        }
        counters.open.fetch_sub(1, Ordering::Relaxed);
        let held = opened.elapsed();
        if held < Duration::from_millis(200) {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        } else {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            counters.timeline.mark("slow connections dropped");
            counters
                .held_ms
                .fetch_add(held.as_millis() as u64, Ordering::Relaxed);
        }
    }
}

fn stalling_report(args: &Args, stalls: &stalling::StallCounters) -> String {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let closed = load(&stalls.h1_closed);
    format!(
        "zero-window h2: {} connections x {} streams, {} heads ({} of them 200), {} streams reset by the gateway; \
         non-reading h1: {} connections opened, {} closed by the gateway after a mean {} ms",
        args.stall_h2_connections,
        args.stall_streams,
        load(&stalls.h2_heads),
        load(&stalls.h2_heads_ok),
        load(&stalls.h2_resets),
        load(&stalls.h1_opened),
        closed,
        load(&stalls.h1_held_ms) / closed.max(1),
    )
}

/// The traders' slowest requests in a phase, each with what the
/// attackers saw the gateway end from a second before it was sent until it
/// was answered.
fn slowest(phase: &str, samples: &[Sample], timeline: &Timeline) -> Vec<String> {
    let mut slowest: Vec<&Sample> = samples.iter().collect();
    slowest.sort_by_key(|s| std::cmp::Reverse(s.latency));
    let Some(first) = samples.iter().map(|s| s.sent).min() else {
        return Vec::new();
    };
    let mut out = vec![
        format!("| slowest, {phase} | sent at s | ms | meanwhile, the gateway ended |"),
        "|---|---:|---:|---|".to_owned(),
    ];
    for sample in slowest.into_iter().take(6) {
        let from = sample
            .sent
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(sample.sent);
        let events = timeline.between(from, sample.sent + sample.latency);
        let events: Vec<String> = events
            .iter()
            .map(|(what, n)| format!("{n} {what}"))
            .collect();
        out.push(format!(
            "| {} | {:.2} | {:.2} | {} |",
            sample.kind.name(),
            (sample.sent - first).as_secs_f64(),
            sample.latency.as_secs_f64() * 1000.0,
            if events.is_empty() {
                "nothing".to_owned()
            } else {
                events.join(", ")
            }
        ));
    }
    out
}

struct Summary {
    requests: usize,
    succeeded: usize,
    p50: f64,
    p99: f64,
    max: f64,
    failures: BTreeMap<String, usize>,
}

fn summarise<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Summary {
    let samples: Vec<&Sample> = samples.into_iter().collect();
    let mut latencies: Vec<f64> = samples
        .iter()
        .map(|s| s.latency.as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        latencies[rank - 1]
    };
    let mut failures = BTreeMap::new();
    for sample in &samples {
        match &sample.outcome {
            Ok(StatusCode::OK) => {}
            Ok(status) => *failures.entry(status.to_string()).or_default() += 1,
            Err(error) => *failures.entry(error.clone()).or_default() += 1,
        }
    }
    Summary {
        requests: samples.len(),
        succeeded: samples.len() - failures.values().sum::<usize>(),
        p50: percentile(0.50),
        p99: percentile(0.99),
        max: latencies.last().copied().unwrap_or(f64::NAN),
        failures,
    }
}

fn report(
    args: &Args,
    quiet: &[Sample],
    under_attack: &[Sample],
    attack: &AttackReport,
    slow_open_at_start: i64,
    after: &Result<StatusCode, String>,
) -> String {
    let (quiet_samples, loud_samples) = (quiet, under_attack);
    let quiet = summarise(quiet);
    let loud = summarise(under_attack);
    let row = |name: &str, s: &Summary| {
        format!(
            "| {name} | {} | {:.2} % | {:.2} | {:.2} | {:.2} |",
            s.requests,
            100.0 * s.succeeded as f64 / s.requests.max(1) as f64,
            s.p50,
            s.p99,
            s.max
        )
    };
    let flood_total: u64 = attack.flood_statuses.values().sum();
    let flood_statuses: Vec<String> = attack
        .flood_statuses
        .iter()
        .map(|((kind, status), count)| format!("{kind} {status}: {count}"))
        .collect();
    let mut out = vec![
        format!(
            "traders: {} x {} req/s for {} s per phase; flood: {} connections, {} req/s target; slow: {} connections from {} addresses; attackers at nice {}",
            args.traders,
            args.trader_rate,
            args.phase,
            args.flood_connections,
            if args.flood_rate == 0 { "unlimited".to_owned() } else { args.flood_rate.to_string() },
            args.slow_connections,
            args.slow_addresses,
            args.attacker_nice
        ),
        String::new(),
        "| legitimate traders | requests | success | p50 ms | p99 ms | max ms |".into(),
        "|---|---:|---:|---:|---:|---:|".into(),
        row("quiet", &quiet),
        row("under attack", &loud),
        String::new(),
        format!(
            "flood: {flood_total} answers in {:.0} s ({:.0}/s); {}; {} failed exchanges",
            attack.flood_seconds,
            flood_total as f64 / attack.flood_seconds,
            flood_statuses.join(", "),
            attack.flood_errors
        ),
        format!(
            "slow: {} connections opened, {} open when measuring started, peak {} open at once, {} closed by the gateway after a mean {} ms, {} refused at once",
            attack.slow_opened,
            slow_open_at_start,
            attack.slow_peak,
            attack.slow_dropped,
            attack.slow_mean_held_ms,
            attack.slow_refused
        ),
        stalling_report(args, &attack.stalls),
        format!("after the attack: {after:?}"),
        String::new(),
        "| by kind (quiet / under attack) | requests | p50 ms | p99 ms | max ms |".into(),
        "|---|---:|---:|---:|---:|".into(),
    ];
    for kind in Kind::ALL {
        let of = |samples: &[Sample]| summarise(samples.iter().filter(|s| s.kind == kind));
        let (q, l) = (of(quiet_samples), of(loud_samples));
        out.push(format!(
            "| {} | {} / {} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} / {:.2} |",
            kind.name(),
            q.requests,
            l.requests,
            q.p50,
            l.p50,
            q.p99,
            l.p99,
            q.max,
            l.max
        ));
    }
    out.push(String::new());
    out.extend(slowest("quiet", quiet_samples, &Timeline::default()));
    out.push(String::new());
    out.extend(slowest("under attack", loud_samples, &attack.timeline));
    out.push(String::new());
    for (name, summary) in [("quiet", &quiet), ("under attack", &loud)] {
        if !summary.failures.is_empty() {
            out.push(format!("{name} failures: {:?}", summary.failures));
        }
    }
    let success = loud.succeeded == loud.requests && quiet.succeeded == quiet.requests;
    let ratio = loud.p99 / quiet.p99;
    out.push(format!(
        "{}  100 % success in both phases",
        if success { "PASS" } else { "FAIL" }
    ));
    out.push(format!(
        "{}  p99 under attack within 2x of quiet ({ratio:.2}x)",
        if ratio <= 2.0 { "PASS" } else { "FAIL" }
    ));
    out.join("\n")
}
