//! Serving stage: accept connections on the Unix socket, speak HTTP/1.1 on
//! each, and drain them on shutdown.
//!
//! [`Worker`] gathers the configuration; [`Worker::bind`] creates the
//! socket (see [`crate::socket`]) and the shared state; [`Listening::run`]
//! serves until the shutdown future completes — `main` passes
//! [`shutdown_signal`], tests pass a trigger of their own. Then it stops
//! accepting, removes the socket file, reports not-ready, lets requests in
//! flight finish, and gives up on them at the configured deadline.
//!
//! Each connection is one task with a span, owned by a `JoinSet`; at most
//! [`ConnectionLimits::max_connections`] are open at once (further
//! connections wait in the kernel's backlog). Request headers must arrive
//! within [`ConnectionLimits::header_read_timeout`]; bodies have their own
//! deadline (see [`crate::dispatch`]). A request answered before its body
//! was read to the end gets `Connection: close` and a lingering close
//! ([`crate::linger`]), so that the client reads the answer.

use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::admission::{Admission, AdmissionMetrics};
use crate::config::{Config, ConnectionLimits};
use crate::dispatch::{self, State};
use crate::engine::{self, Engine, EngineMetrics, Handler, HandlerBox};
use crate::identity::TagKey;
use crate::linger;
use crate::metrics::{self, RequestMetrics};
use crate::session::{Clock, SessionMetrics, Store, SystemClock};
use crate::socket::{BoundSocket, SocketError};
use crate::trust::{PeerVerdict, TrustMetrics};
use tradehabit_shared::linger::{Linger, LingerSwitch};

/// Pause after a failed `accept` (e.g. out of file descriptors), so that
/// the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Bounds on how often idle sessions are swept (a quarter of the idle
/// timeout, within these).
const MIN_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// A worker to be started.
#[derive(Debug)]
pub struct Worker {
    config: Config,
    clock: Arc<dyn Clock>,
    handler: HandlerBox,
}

impl Worker {
    /// A worker with this configuration, the system clock and the legacy
    /// API as its engine.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            clock: Arc::new(SystemClock),
            handler: HandlerBox(engine::legacy_api()),
        }
    }

    /// Uses another clock for session expiry.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Uses another engine entry point (tests).
    pub fn with_handler(mut self, handler: Handler) -> Self {
        self.handler = HandlerBox(handler);
        self
    }

    /// Creates the socket and the worker's state. Must be called inside a
    /// Tokio runtime. Fails if the socket cannot be created safely.
    pub fn bind(self) -> Result<Listening, SocketError> {
        let Self {
            config,
            clock,
            handler,
        } = self;
        let socket = BoundSocket::bind(&config.socket)?;
        let mut registry = metrics::registry();
        let sessions = Arc::new(Store::new(
            config.sessions.clone(),
            clock,
            SessionMetrics::register(&mut registry),
        ));
        let admission = Admission::new(
            config.admission.clone(),
            AdmissionMetrics::register(&mut registry),
        );
        let engine = Engine::new(
            handler,
            Arc::clone(&sessions),
            EngineMetrics::register(&mut registry),
        );
        let requests = RequestMetrics::register(&mut registry);
        let untrusted = TrustMetrics::register(&mut registry);
        let state = State {
            body: config.body.clone(),
            sessions,
            admission,
            engine,
            registry,
            requests,
            tag_key: TagKey::random(),
            draining: AtomicBool::new(false),
            trust: config.trust,
            untrusted,
        };
        tracing::info!(socket = %socket.path().display(), "listening");
        Ok(Listening {
            socket,
            state: Arc::new(state),
            connections: config.connections,
            shutdown_grace: config.shutdown_grace,
        })
    }
}

/// A bound worker, ready to serve.
#[derive(Debug)]
pub struct Listening {
    socket: BoundSocket,
    state: Arc<State>,
    connections: ConnectionLimits,
    shutdown_grace: Duration,
}

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every request in flight finished within the grace period.
    Drained,
    /// The grace period ran out; this many connections were cut.
    DeadlineReached {
        /// Connections still open at the deadline.
        abandoned: usize,
    },
}

impl Listening {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        self.socket.path()
    }

    /// Serves until `shutdown` completes, then drains (see the module doc).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Stopped {
        let Self {
            socket,
            state,
            connections: limits,
            shutdown_grace,
        } = self;
        let sweeper =
            tokio::spawn(sweep(Arc::clone(&state)).instrument(tracing::info_span!("sweep")));
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        let open = Arc::new(Semaphore::new(limits.max_connections.get()));
        let graceful = GracefulShutdown::new();
        let mut tasks = JoinSet::new();
        let mut next_id: u64 = 0;
        tokio::pin!(shutdown);

        loop {
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                biased;
                () = &mut shutdown => break,
                permit = Arc::clone(&open).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = socket.listener().accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accept failed; backing off");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            };
            next_id += 1;
            let peer = state.trust.judge_peer(stream.peer_cred().ok());
            let service_state = Arc::clone(&state);
            let switch = Arc::new(LingerSwitch::default());
            let lingers = Arc::clone(&switch);
            let service = service_fn(move |request| {
                answer(
                    Arc::clone(&service_state),
                    Arc::clone(&lingers),
                    peer,
                    request,
                )
            });
            let io = TokioIo::new(Linger::new(stream, switch, linger::BOUNDS));
            let connection = graceful.watch(http.serve_connection(io, service));
            let gauge = state.requests.connections().clone();
            gauge.inc();
            let span = tracing::debug_span!("connection", connection.id = next_id);
            tasks.spawn(
                async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    gauge.dec();
                    drop(permit);
                }
                .instrument(span),
            );
        }

        tracing::info!("shutting down: no new connections, draining requests in flight");
        state.draining.store(true, Ordering::Release);
        socket.close();
        sweeper.abort();
        let stopped = match tokio::time::timeout(shutdown_grace, graceful.shutdown()).await {
            Ok(()) => Stopped::Drained,
            Err(_) => {
                let abandoned = tasks.len();
                tracing::warn!(
                    abandoned,
                    grace_secs = shutdown_grace.as_secs(),
                    "shutdown grace period over; cutting remaining connections"
                );
                tasks.abort_all();
                Stopped::DeadlineReached { abandoned }
            }
        };
        while tasks.join_next().await.is_some() {}
        stopped
    }
}

/// Answers one request of a connection whose peer was judged `peer`.
async fn answer(
    state: Arc<State>,
    lingers: Arc<LingerSwitch>,
    peer: PeerVerdict,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (mut request, read) = linger::watch(request);
    request.extensions_mut().insert(peer);
    let mut response = dispatch::respond(state, request).await;
    if !read.is_finished() || !peer.allowed {
        // Answered before the body's end, or a peer that is not allowed:
        // close, gracefully.
        let close = http::HeaderValue::from_static("close");
        response
            .headers_mut()
            .insert(http::header::CONNECTION, close);
        lingers.turn_on();
    }
    Ok(response)
}

/// Ends idle sessions periodically, so that memory is freed without traffic.
async fn sweep(state: Arc<State>) {
    let every =
        (state.sessions.limits().idle_timeout / 4).clamp(MIN_SWEEP_INTERVAL, MAX_SWEEP_INTERVAL);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let ended = state.sessions.expire_idle();
        if ended > 0 {
            tracing::debug!(ended, "idle sessions ended");
        }
    }
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; only Ctrl-C will stop the worker");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
