//! The door "floor" of `benches/gateway-vs-nginx.sh`: how little a proxy
//! built on the gateway's stack spends per request when it does nothing but
//! proxy (see `docs/benchmarks.md`, "The floor of the stack").
//!
//! The same stack and serving model as the gateway: one current-thread
//! tokio runtime per core, each with its own `SO_REUSEPORT` listener and its
//! own keep-alive connections to the upstream; rustls (ring, TLS 1.3 and
//! 1.2, ALPN h2 and http/1.1); hyper's HTTP/1.1 and HTTP/2 servers and its
//! HTTP/1.1 client over a Unix socket; mimalloc. The same job on the wire
//! as the bench's other doors: the forwarding headers and a request id to
//! the upstream, small answers read whole, the six security headers and
//! the request id on the way back.
//!
//! And none of the gateway's own work: no policy, no checks, no limits or
//! timeouts, no audit line, no metrics, no tracing. Its CPU per request is
//! what the stack itself costs: the gateway can only come down towards it
//! by doing less of its own work, and below it only by changing the stack.
//!
//! ```sh
//! bench-floor --listen 127.0.0.1:18446 --cert cert.pem --key key.pem \
//!     --upstream /tmp/upstream.sock
//! ```

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, UnixStream};
use tokio_rustls::TlsAcceptor;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Address to listen on (TLS).
    #[arg(long)]
    listen: SocketAddr,
    /// Certificate chain (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// The upstream's Unix socket.
    #[arg(long)]
    upstream: PathBuf,
    /// Serving threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// The security headers every door of the bench adds to each answer.
const SECURITY_HEADERS: [(&str, &str); 6] = [
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("cache-control", "no-store"),
];

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tls = TlsAcceptor::from(Arc::new(server_config(&args.cert, &args.key)?));
    let threads = match args.threads {
        Some(threads) => threads,
        None => std::thread::available_parallelism()?.get(),
    };
    let serving: Vec<_> = (0..threads)
        .map(|index| {
            let (tls, upstream, listen) = (tls.clone(), args.upstream.clone(), args.listen);
            std::thread::Builder::new()
                .name(format!("floor-{index}"))
                .spawn(move || serve(listen, tls, upstream, index))
        })
        .collect::<Result<_, _>>()?;
    for thread in serving {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("a serving thread panicked"))??;
    }
    Ok(())
}

fn server_config(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let chain = rustls_pemfile::certs(&mut BufReader::new(std::fs::File::open(cert)?))
        .collect::<Result<Vec<_>, _>>()
        .context("reading the certificate")?;
    let key = rustls_pemfile::private_key(&mut BufReader::new(std::fs::File::open(key)?))?
        .context("no private key in the key file")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// One serving thread: its listener, its upstream connections, its tasks.
fn serve(
    listen: SocketAddr,
    tls: TlsAcceptor,
    upstream: PathBuf,
    index: usize,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let socket = if listen.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(listen)?;
        let listener = socket.listen(1024)?;
        let pool = Rc::new(Pool {
            path: upstream,
            idle: RefCell::new(Vec::new()),
            thread: index,
            next_id: Cell::new(0),
        });
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    eprintln!("accept: {error}");
                    continue;
                }
            };
            tcp.set_nodelay(true)?;
            let (tls, pool) = (tls.clone(), Rc::clone(&pool));
            tokio::task::spawn_local(async move {
                let Ok(stream) = tls.accept(tcp).await else {
                    return;
                };
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                let io = TokioIo::new(stream);
                let service = service_fn(move |request| {
                    let pool = Rc::clone(&pool);
                    async move { Ok::<_, Infallible>(proxy(&pool, peer, request).await) }
                });
                // A connection's end (the client closed it) is not news.
                let _ = if h2 {
                    http2::Builder::new(LocalExec)
                        .serve_connection(io, service)
                        .await
                } else {
                    http1::Builder::new().serve_connection(io, service).await
                };
            });
        }
    })
}

/// Runs HTTP/2 streams as tasks of the serving thread.
#[derive(Clone, Copy)]
struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: std::future::Future + 'static,
{
    fn execute(&self, future: F) {
        tokio::task::spawn_local(future);
    }
}

/// A serving thread's idle keep-alive connections to the upstream.
struct Pool {
    path: PathBuf,
    idle: RefCell<Vec<SendRequest<Incoming>>>,
    thread: usize,
    next_id: Cell<u64>,
}

impl Pool {
    async fn sender(&self) -> anyhow::Result<SendRequest<Incoming>> {
        loop {
            let Some(mut sender) = self.idle.borrow_mut().pop() else {
                break;
            };
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let stream = UnixStream::connect(&self.path)
            .await
            .context("connecting to the upstream")?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::task::spawn_local(connection);
        Ok(sender)
    }

    /// A request id unique per process: the thread, then a counter.
    fn request_id(&self) -> HeaderValue {
        let n = self.next_id.get();
        self.next_id.set(n + 1);
        HeaderValue::try_from(format!("{:x}-{n:x}", self.thread))
            .expect("hex digits and a dash are a valid header value")
    }
}

async fn proxy(pool: &Pool, peer: SocketAddr, request: Request<Incoming>) -> Response<Full<Bytes>> {
    match forward(pool, peer, request).await {
        Ok(response) => response,
        Err(error) => {
            eprintln!("forward: {error:#}");
            let mut response =
                Response::new(Full::new(Bytes::from_static(b"{\"status\":\"ERROR\"}")));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}

async fn forward(
    pool: &Pool,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> anyhow::Result<Response<Full<Bytes>>> {
    let id = pool.request_id();
    let (mut parts, body) = request.into_parts();
    let host = match parts.headers.get(header::HOST) {
        Some(host) => host.clone(),
        None => parts
            .uri
            .authority()
            .and_then(|authority| HeaderValue::try_from(authority.as_str()).ok())
            .unwrap_or_else(|| HeaderValue::from_static("localhost")),
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    parts.uri = Uri::try_from(path).unwrap_or_else(|_| Uri::from_static("/"));
    parts.version = Version::HTTP_11;
    let headers = &mut parts.headers;
    headers.remove(header::CONNECTION);
    headers.remove(header::TE);
    headers.remove(header::UPGRADE);
    headers.insert(header::HOST, host.clone());
    headers.insert(
        &X_FORWARDED_FOR,
        HeaderValue::try_from(peer.ip().to_string())
            .expect("an IP address is a valid header value"),
    );
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    headers.insert(&X_FORWARDED_HOST, host);
    headers.insert(&X_REQUEST_ID, id.clone());
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );

    let mut sender = pool.sender().await?;
    let response = sender
        .send_request(Request::from_parts(parts, body))
        .await?;
    let (mut parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    pool.idle.borrow_mut().push(sender);

    for (name, value) in SECURITY_HEADERS {
        parts.headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    parts.headers.insert(&X_REQUEST_ID, id);
    parts.headers.remove(header::CONNECTION);
    parts.headers.remove("keep-alive");
    Ok(Response::from_parts(parts, Full::new(body)))
}
