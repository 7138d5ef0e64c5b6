//! A new TLS connection per request: the load client behind the
//! "resumed" and "full handshake" scenarios of `benches/gateway-vs-nginx.sh`
//! (see `docs/benchmarks.md`). wrk and h2load keep connections open, so
//! this client opens one connection per request: TCP connect, TLS handshake
//! (resuming a session from its ticket cache, or never with `--full`),
//! `GET` with `Connection: close`, read the answer to its end.
//!
//! ```sh
//! bench-connect --addr 127.0.0.1:18443 --ca cert.pem --path /api/health \
//!     --connections 16 --seconds 6 [--full] [--header 'Origin: https://x']
//! ```
//!
//! Prints one line: `requests p50_ms p99_ms resumed_percent errors`.

use std::io::BufReader;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Parser)]
struct Args {
    /// Address of the front door under test.
    #[arg(long)]
    addr: SocketAddr,
    /// The certificate to trust (PEM).
    #[arg(long)]
    ca: std::path::PathBuf,
    /// Server name sent in the handshake.
    #[arg(long, default_value = "localhost")]
    host: String,
    #[arg(long, default_value = "/api/health")]
    path: String,
    /// Connections open at once (each one request, then the next).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    #[arg(long, default_value_t = 6.0)]
    seconds: f64,
    /// Never resume: a full handshake every time.
    #[arg(long)]
    full: bool,
    /// Extra request headers, `Name: value`.
    #[arg(long)]
    header: Vec<String>,
}

/// What one connection loop saw: latencies in microseconds, resumed handshakes, errors.
#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    resumed: u64,
    errors: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let connector = TlsConnector::from(Arc::new(client_config(&args)?));
    let name = ServerName::try_from(args.host.clone())?;
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        args.path, args.host
    );
    for header in &args.header {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let request: Arc<[u8]> = request.into_bytes().into();
    let until = Instant::now() + Duration::from_secs_f64(args.seconds);
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..args.connections {
        let (connector, name, request) = (connector.clone(), name.clone(), request.clone());
        let addr = args.addr;
        loops.spawn(async move {
            let mut tally = Tally::default();
            let mut answer = Vec::with_capacity(4096);
            while Instant::now() < until {
                let started = Instant::now();
                match one(&connector, &name, addr, &request, &mut answer).await {
                    Ok(resumed) => {
                        tally
                            .latencies
                            .push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        tally.resumed += u64::from(resumed);
                    }
                    Err(error) => {
                        if tally.errors == 0 {
                            eprintln!("bench-connect: {error:#}");
                        }
                        tally.errors += 1;
                    }
                }
            }
            tally
        });
    }
    let mut all = Tally::default();
    while let Some(tally) = loops.join_next().await {
        let tally = tally?;
        all.latencies.extend(tally.latencies);
        all.resumed += tally.resumed;
        all.errors += tally.errors;
    }
    all.latencies.sort_unstable();
    let count = all.latencies.len();
    if count == 0 {
        bail!("no request succeeded ({} errors)", all.errors);
    }
    let pick = |q: f64| all.latencies[((count as f64 * q) as usize).min(count - 1)] as f64 / 1000.0;
    println!(
        "{count} {:.3} {:.3} {:.1} {}",
        pick(0.50),
        pick(0.99),
        100.0 * all.resumed as f64 / count as f64,
        all.errors
    );
    Ok(())
}

fn client_config(args: &Args) -> anyhow::Result<ClientConfig> {
    let pem = std::fs::read(&args.ca).with_context(|| format!("reading {}", args.ca.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut BufReader::new(pem.as_slice())) {
        roots.add(cert?)?;
    }
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = if args.full {
        Resumption::disabled()
    } else {
        // Every connection leaves tickets behind; keep plenty for the next ones.
        Resumption::in_memory_sessions(4096)
    };
    Ok(config)
}

/// One request on a new connection; `Ok(true)` when the handshake resumed.
async fn one(
    connector: &TlsConnector,
    name: &ServerName<'static>,
    addr: SocketAddr,
    request: &[u8],
    answer: &mut Vec<u8>,
) -> anyhow::Result<bool> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(name.clone(), tcp).await?;
    let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
    tls.write_all(request).await?;
    answer.clear();
    // The server closes after the answer; a close without close_notify is
    // fine once the whole answer is in.
    if let Err(error) = tls.read_to_end(answer).await {
        if error.kind() != std::io::ErrorKind::UnexpectedEof || answer.is_empty() {
            return Err(error.into());
        }
    }
    if !answer.starts_with(b"HTTP/1.1 200") {
        bail!("not a 200 answer");
    }
    Ok(resumed)
}
