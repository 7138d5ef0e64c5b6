//! Accept: the listeners, the connection caps, one task per connection, and
//! the drain on shutdown.
//!
//! For each accepted TCP connection: admit it under `limits.max_connections`
//! and `limits.max_connections_per_ip` (else close it at once, or, over the
//! per-IP cap and within `limits.over_cap_answers_per_second`, answer it
//! with 503: `accept/over_cap.rs`), run the TLS
//! handshake under its deadline (`tls.rs`), then serve HTTP/2 if ALPN chose
//! `h2` and HTTP/1.1 otherwise, every request going to `policy::handle`.
//! The plain-HTTP listener serves HTTP/1.1 and answers with
//! `plain_http::answer` only.
//!
//! Deadlines on a connection: the handshake; the request head
//! (`header_read_timeout`, hyper's timer — for HTTP/1.1 it also bounds how
//! long a kept-alive connection waits for its next request);
//! `idle_timeout` for a connection with no request in flight (the only
//! idle bound HTTP/2 has); and `send_timeout` for a response body the
//! client takes nothing of (`accept/send_watch.rs`): the HTTP/2 stream is
//! reset, the HTTP/1.1 connection closed. On shutdown every connection is asked to finish
//! gracefully (HTTP/1.1 closes after the current response, HTTP/2 sends
//! GOAWAY); whatever is still open at `server.shutdown_timeout` is dropped.
//!
//! On HTTP/1.1 hyper reads the connection through the gateway's framing
//! reader (`accept/framing.rs`), which follows each request's framing as
//! the client wrote it and decides what hyper is shown:
//!
//! * a head with both `Content-Length` and `Transfer-Encoding`, or
//!   `Content-Length` twice, is refused with 400 by `policy::shape`,
//!   although hyper would have resolved it;
//! * a head over twice `limits.max_header_bytes`, with more than
//!   `limits.max_header_count` fields, or with a request line beyond those
//!   bounds, is ended short by the reader before hyper's own bounds (set
//!   just above the reader's) are reached, so hyper never answers its bare
//!   431/414: `policy::shape` refuses it with the gateway's 431/414
//!   envelope, security headers, request id and audit line;
//! * a chunked body that breaks RFC 9112 §7.1 (lenient chunk-size lines,
//!   control bytes, bare LF, oversized extensions or trailers) ends in an
//!   error the body stage answers with a 400 envelope.
//!
//! Each of these answers carries `Connection: close`, and nothing the
//! client sent after the refused part is read as a request. A head over
//! the policy's limits but within twice them reaches `policy::shape` whole
//! and gets the same envelope. Where the reader stops following the
//! connection (an `Upgrade` or `CONNECT` head, which `policy::shape`
//! refuses, or a head it cannot parse), the answer then being written
//! carries `Connection: close` too, and a request hyper reads after that
//! point is refused with 400.
//!
//! On HTTP/2 the h2 crate bounds a header list at twice
//! `limits.max_header_bytes` (as HPACK counts it: name, value and 32 bytes
//! per field), advertised to the client in `SETTINGS_MAX_HEADER_LIST_SIZE`.
//! A list within that reaches `policy::shape` and gets the envelope. Beyond
//! it, h2 answers the stream itself, inside the crate, before hyper or the
//! gateway learn of the request: a HEADERS frame with `:status 431` and
//! END_STREAM (no body, no security headers, no request id, no request
//! audit line), then RST_STREAM; the connection stays open. No hook exists
//! there, and the bound cannot go: it also sets h2's limit on CONTINUATION
//! frames per header block (the CONTINUATION-flood protection) and on the
//! header block h2 buffers, and a list far beyond it (h2's abuse limit)
//! ends the connection with GOAWAY `ENHANCE_YOUR_CALM`, audited as a
//! protocol violation (below). Conforming clients read the advertised
//! setting and never send such a list.
//!
//! A request answered before its body was read (`policy::Leftover`): on
//! HTTP/1.1 the answer carries `Connection: close` and the connection
//! closes gracefully (`accept/linger.rs`); on HTTP/2 the stream ends after
//! the rest of the body is drained (`accept/drain.rs`); both within
//! `limits.refusal_drain_timeout` and `limits.refusal_drain_bytes`.
//!
//! An HTTPS HTTP/1.1 connection that hyper closes over a request head (timed
//! out after some bytes, too large, malformed), and an HTTP/2 connection
//! that h2 ends over a protocol violation, gets one audit line and a
//! `connection_errors` count (`accept/head.rs`): no request exists for it.

mod drain;
mod framing;
mod head;
mod held;
mod linger;
mod on_wake;
mod over_cap;
mod send_watch;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::body::progress::Marked;
use crate::body::{Body, Guarded};
use crate::config::Limits;
use crate::conn::{stopped, ConnInfo};
use crate::policy::Leftover;
use crate::state::connections::Cap;
use crate::state::State;
use crate::{plain_http, policy, tls};
pub(crate) use framing::follow as follow_framing;
pub use framing::Followed;
use held::HeldWrites;
use linger::LingerSwitch;
use send_watch::WriteWatch;

/// After a failed `accept` (e.g. out of file descriptors), pause this long.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Which kind of listener.
#[derive(Clone)]
pub(crate) enum Listener {
    /// TLS, forwarding through the policy.
    Https(TlsAcceptor),
    /// Plain HTTP: redirect or refuse, never forward.
    PlainHttp,
}

/// Accepts until `stop` turns true, then drains the connections within
/// `server.shutdown_timeout`.
pub(crate) async fn serve(
    listener: TcpListener,
    kind: Listener,
    state: Arc<State>,
    stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let mut accepting = stop.clone();
    loop {
        tokio::select! {
            () = stopped(&mut accepting) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let config = state.config();
                    let admitted = match state.connections.admit(peer.ip(), &config.limits) {
                        Ok(admitted) => admitted,
                        Err(cap) => {
                            // debug, not info: a connection flood must not become a log flood
                            // (the connection-error metric counts these).
                            tracing::debug!(client.addr = %peer, ?cap, "connection cap reached");
                            state.audit.connection(crate::audit::ConnectionEvent::ConnectionRefused, peer);
                            let answers = config.limits.over_cap_answers_per_second;
                            if let (Cap::PerIp, Listener::Https(acceptor)) = (cap, &kind) {
                                if state.connections.over_cap.take(answers) {
                                    let task = over_cap::answer(stream, peer, acceptor.clone(), Arc::clone(&state), stop.clone());
                                    connections.spawn(task.instrument(tracing::info_span!("over_cap", client.addr = %peer)));
                                }
                            }
                            continue;
                        }
                    };
                    let task = serve_connection(stream, peer, kind.clone(), Arc::clone(&state), stop.clone());
                    let active = state.metrics.connection_opened();
                    // Each poll of the connection reads the clocks once (`clock.rs`).
                    connections.spawn(
                        crate::clock::turns(async move {
                            let _admitted = (admitted, active);
                            task.await;
                        })
                        .instrument(tracing::info_span!("accept", client.addr = %peer)),
                    );
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    drain(connections, state.config().server.shutdown_timeout).await;
}

async fn drain(mut connections: JoinSet<()>, deadline: Duration) {
    let all_closed = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(deadline, all_closed).await.is_err() {
        tracing::warn!(
            open = connections.len(),
            ?deadline,
            "shutdown deadline reached; closing the remaining connections"
        );
        connections.shutdown().await;
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    kind: Listener,
    state: Arc<State>,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let limits = state.config().limits.clone();
    let activity = Arc::new(Activity::new());
    let in_flight = Arc::clone(&activity);
    match kind {
        Listener::Https(acceptor) => {
            // HTTP/1.1 watches its socket for a client that takes no bytes.
            let progress = Arc::new(send_watch::Progress::default());
            let stream = WriteWatch::new(HeldWrites::new(stream), Arc::clone(&progress));
            let failed = |error: tls::HandshakeError| {
                tracing::debug!(%error, "closing");
                state.metrics.tls_handshake_failed();
                let is_timeout = matches!(error, tls::HandshakeError::TimedOut(_));
                let event = crate::audit::ConnectionEvent::TlsHandshakeFailed { is_timeout };
                state.audit.connection(event, peer);
            };
            let handshake = tls::handshake(&acceptor, stream, limits.tls_handshake_timeout, failed);
            let Some(mut stream) = handshake.instrument(tracing::debug_span!("tls")).await else {
                return;
            };
            let conn = Arc::new(ConnInfo {
                peer,
                tls: crate::conn::TlsInfo::of(stream.get_ref().1),
            });
            let is_h2 = negotiated_h2(&mut stream);
            let bounds = DrainBounds::of(&limits);
            // HTTP/1.1 only: asks the connection to linger when it closes.
            let linger = (!is_h2).then(|| Arc::new(LingerSwitch::default()));
            let lingers = linger.clone();
            // Requests count their references on this thread's handle.
            let (records, state) = (Arc::clone(&state), crate::shard::local(&state));
            // What the HTTP/1.1 framing reader finds (HTTP/2 has no reader,
            // so nothing is ever found there).
            let head_bounds = reader_bounds(&limits);
            let verdicts = Arc::new(framing::Verdicts::default());
            let found = Arc::clone(&verdicts);
            let answer = move |mut request: Request<Incoming>| {
                let (state, conn) = (Arc::clone(&state), Arc::clone(&conn));
                let guard = InFlight::start(&activity);
                let (number, refused) = found.next_request();
                if let Some(why) = refused {
                    request
                        .extensions_mut()
                        .insert(head_as_written(why, &head_bounds));
                }
                let lingers = lingers.clone();
                let found = Arc::clone(&found);
                async move {
                    // HTTP/2: this stream's; HTTP/1.1: this connection's.
                    let progress = send_watch::current().unwrap_or_default();
                    let (response, leftover) =
                        policy::handle(request, &conn, &state, Some(&progress)).await;
                    // Nothing after a refused head or body, or after the
                    // point where the reader stopped following the
                    // connection (upgrade, tunnel, a head it cannot parse),
                    // is read as a request: this answer is the last.
                    // Checked once the answer is ready, as the reader may
                    // stop or refuse while this request's body is read.
                    let close =
                        refused.is_some() || found.body_refused() || found.ends_connection(number);
                    let response = finish(response, leftover, close, lingers.as_deref(), bounds);
                    Ok::<_, Infallible>(
                        response.map(|body| Guarded::new(Marked::new(body, progress), guard)),
                    )
                }
            };
            let io = TokioIo::new(stream);
            if is_h2 {
                // Boxed: hyper moves each stream's future several times on
                // its way to the executor (`accept/send_watch.rs`), and the
                // policy's future is large; a box makes each move a pointer.
                let service = service_fn(move |request| Box::pin(answer(request)));
                let streams = h2_streams(&limits, &records);
                let connection = h2_builder(&limits, streams).serve_connection(io, service);
                let never = std::future::pending();
                let ended = drive(connection, in_flight, limits.idle_timeout, stop, never).await;
                if let Some(error) = ended.err().and_then(|e| head::classify_h2(&e)) {
                    records.metrics.connection_error(error);
                    let event = crate::audit::ConnectionEvent::RequestHeadFailed(error);
                    records.audit.connection(event, peer);
                }
            } else {
                let framing = framing::Framing::new(head_bounds, verdicts);
                let switch = linger.unwrap_or_default();
                let io = linger::lingering(io.into_inner(), switch, bounds);
                let (io, client_sent) = head::HeadWatch::new(io, framing);
                // Boxed as on HTTP/2: hyper moves the future into its slot
                // for every request (`docs/benchmarks.md`, "Smaller futures").
                let service = service_fn(move |request| Box::pin(answer(request)));
                let connection = h1_builder(&limits).serve_connection(TokioIo::new(io), service);
                let ended = drive_h1(connection, in_flight, &limits, stop, &progress).await;
                record_h1_stall(&records, &progress, peer);
                let sent = head::sent_since_answer(&client_sent);
                if let Some(error) = ended.err().and_then(|e| head::classify(&e, sent)) {
                    records.metrics.connection_error(error);
                    let event = crate::audit::ConnectionEvent::RequestHeadFailed(error);
                    records.audit.connection(event, peer);
                }
            }
        }
        Listener::PlainHttp => {
            let service = service_fn(move |request| {
                let guard = InFlight::start(&activity);
                let response = plain_http::answer(&request, &state.config());
                let response = response.map(|body| Guarded::new(body.boxed_unsync(), guard));
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = h1_builder(&limits).serve_connection(TokioIo::new(stream), service);
            let never = std::future::pending();
            let _ = drive(connection, in_flight, limits.idle_timeout, stop, never).await;
        }
    }
}

/// Whether the client chose HTTP/2. From here on an HTTP/1.1 connection's
/// answers are held to the end of the thread's turn (`accept/held.rs`).
fn negotiated_h2(stream: &mut TlsStream<WriteWatch<HeldWrites>>) -> bool {
    let is_h2 = chose_h2(stream);
    if !is_h2 {
        stream.get_mut().0.get_mut().hold();
    }
    is_h2
}

/// Whether the client chose HTTP/2 in the handshake (ALPN).
fn chose_h2<S>(stream: &TlsStream<S>) -> bool {
    stream.get_ref().1.alpn_protocol() == Some(tls::ALPN_H2)
}

/// How long and how much of a refused request's unread body is read and
/// discarded before its stream (HTTP/2) or connection (HTTP/1.1) ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DrainBounds {
    pub(crate) timeout: Duration,
    pub(crate) max_bytes: usize,
}

impl DrainBounds {
    fn of(limits: &Limits) -> Self {
        DrainBounds {
            timeout: limits.refusal_drain_timeout,
            max_bytes: limits.refusal_drain_bytes,
        }
    }
}

/// What an answer needs when its request's body was not read in full
/// (`leftover`) or the connection must close after it (`close`). HTTP/1.1
/// (`linger` given): `Connection: close`, and the connection lingers when
/// it closes (`accept/linger.rs`). HTTP/2: the stream ends after the unread
/// body is drained (`accept/drain.rs`).
fn finish(
    mut response: http::Response<Body>,
    leftover: Leftover,
    close: bool,
    linger: Option<&LingerSwitch>,
    bounds: DrainBounds,
) -> http::Response<Body> {
    match (linger, leftover) {
        (Some(switch), leftover) => {
            if close || leftover.is_pending() {
                let close = http::HeaderValue::from_static("close");
                response
                    .headers_mut()
                    .insert(http::header::CONNECTION, close);
                switch.turn_on();
            }
        }
        (None, Leftover::Unread(body)) => {
            response =
                response.map(|answer| drain::Drained::new(answer, body, bounds).boxed_unsync());
        }
        (None, _) => {}
    }
    response
}

/// The executor of an HTTP/2 connection's streams: each is reset when its
/// client takes nothing of its answer for `limits.send_timeout`.
pub(crate) fn h2_streams(limits: &Limits, state: &State) -> send_watch::StreamExecutor {
    let stalls = state.metrics.client_stalls("h2");
    send_watch::StreamExecutor::new(limits.clients.send_timeout, stalls)
}

/// [`drive`] for an HTTP/1.1 connection whose socket and answers
/// `progress` follows: closed at once when its client takes nothing for
/// `limits.send_timeout`.
async fn drive_h1<C>(
    connection: C,
    in_flight: Arc<Activity>,
    limits: &Limits,
    stop: watch::Receiver<bool>,
    progress: &Arc<send_watch::Progress>,
) -> Result<(), C::Error>
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    // The handshake's writes are not the answer's.
    progress.written();
    let stalled = send_watch::stalled(progress, limits.clients.send_timeout);
    let driving = drive(connection, in_flight, limits.idle_timeout, stop, stalled);
    send_watch::scoped(Arc::clone(progress), driving).await
}

/// Counts an HTTP/1.1 connection closed over a stall, and audits it when
/// no request's line does (the answers had been handed over whole).
fn record_h1_stall(state: &State, progress: &send_watch::Progress, peer: SocketAddr) {
    if progress.is_stalled() {
        state.metrics.client_stalls("http1").inc();
    }
    if progress.is_stalled_after_body() {
        let event = crate::audit::ConnectionEvent::SendStalled;
        state.audit.connection(event, peer);
    }
}

/// The framing reader's bound on an HTTP/1.1 head, and h2's on an HTTP/2
/// header list, as a multiple of the policy's.
const HEAD_BYTES_FACTOR: usize = 2;

/// hyper's default bound on its read buffer; raised when a head may be
/// longer.
const HYPER_DEFAULT_MAX_BUF: usize = 8192 + 4096 * 100;

/// hyper keeps this many header slots on the stack; any other
/// `max_headers` moves them to the heap for every request.
const HYPER_STACK_HEADERS: usize = 100;

/// The framing reader's bound on an HTTP/1.1 head, and h2's on an HTTP/2
/// header list.
fn head_bytes(limits: &Limits) -> usize {
    limits.max_header_bytes.saturating_mul(HEAD_BYTES_FACTOR)
}

/// The HTTP/1.1 framing reader's bounds.
fn reader_bounds(limits: &Limits) -> framing::Bounds {
    framing::Bounds {
        head_bytes: head_bytes(limits),
        fields: limits.max_header_count,
        trailer_bytes: limits.max_header_bytes,
    }
}

/// The request extension for a head the reader refused.
fn head_as_written(why: framing::HeadRefusal, bounds: &framing::Bounds) -> policy::HeadAsWritten {
    use framing::HeadRefusal;
    match why {
        HeadRefusal::LengthAndChunked | HeadRefusal::SeveralLengths | HeadRefusal::Unfollowed => {
            policy::HeadAsWritten::Ambiguous(why.detail())
        }
        HeadRefusal::TooLarge | HeadRefusal::TooManyFields => {
            policy::HeadAsWritten::TooLarge(why.detail())
        }
        HeadRefusal::RequestLineTooLong => policy::HeadAsWritten::RequestLineTooLong {
            at_least: bounds.request_line_bytes() + 1,
        },
    }
}

fn h1_builder(limits: &Limits) -> http1::Builder {
    // Just above the reader's bounds: every head the reader shows fits.
    let hyper_head_bytes = reader_bounds(limits).hyper_head_bytes();
    let mut builder = http1::Builder::new();
    builder
        // Its header-read timers are reused per serving thread (`timers.rs`).
        .timer(crate::timers::HyperTimer)
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(hyper_head_bytes)
        .max_buf_size(hyper_head_bytes.max(HYPER_DEFAULT_MAX_BUF));
    if limits.max_header_count != HYPER_STACK_HEADERS {
        builder.max_headers(limits.max_header_count);
    }
    builder
}

fn h2_builder(
    limits: &Limits,
    streams: send_watch::StreamExecutor,
) -> http2::Builder<send_watch::StreamExecutor> {
    let mut builder = http2::Builder::new(streams);
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        // The same headroom as HTTP/1.1 (HPACK also counts 32 bytes per
        // field): a head over the policy's limits reaches `policy::shape`
        // and gets the gateway's envelope, not the h2 crate's bare 431.
        .max_header_list_size(u32::try_from(head_bytes(limits)).unwrap_or(u32::MAX))
        // Extended CONNECT (RFC 8441) is let through to the policy, which
        // refuses every CONNECT with its 400 envelope and an audit line;
        // without this h2 would reset such a stream with no answer at all.
        .enable_connect_protocol();
    builder
}

/// Runs a connection until it ends, asking it to finish gracefully on
/// shutdown or when it has been idle too long, and dropping it at once
/// when `stalled` resolves (its client stopped taking a response); returns
/// how it ended.
async fn drive<C>(
    connection: C,
    in_flight: Arc<Activity>,
    idle_timeout: Duration,
    mut stop: watch::Receiver<bool>,
    stalled: impl std::future::Future<Output = ()>,
) -> Result<(), C::Error>
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    tokio::pin!(connection);
    // The rare events are polled only when they wake, not each time the
    // connection does (`accept/on_wake.rs`).
    let mut stalled = on_wake::on_wake(stalled);
    let ends = on_wake::on_wake(async {
        tokio::select! {
            () = stopped(&mut stop) => "shutting down",
            () = idle(&in_flight, idle_timeout) => "idle timeout",
        }
    });
    tokio::select! {
        biased;
        result = connection.as_mut() => {
            if let Err(error) = &result {
                tracing::debug!(%error, "connection ended");
            }
            return result;
        }
        () = &mut stalled => {
            tracing::debug!("response stalled; closing the connection");
            return Ok(());
        }
        why = ends => tracing::debug!("{why}"),
    }
    connection.as_mut().graceful_shutdown();
    let result = tokio::select! {
        biased;
        result = connection.as_mut() => result,
        () = stalled => {
            tracing::debug!("response stalled; closing the connection");
            Ok(())
        }
    };
    if let Err(error) = &result {
        tracing::debug!(%error, "connection ended");
    }
    result
}

/// Resolves once no request has been in flight for `timeout`. One timer
/// per connection, looked at only when it fires: requests do not touch it.
async fn idle(activity: &Activity, timeout: Duration) {
    let sleep = tokio::time::sleep(timeout);
    tokio::pin!(sleep);
    loop {
        sleep.as_mut().await;
        let now = Instant::now();
        let next = match activity.idle_since() {
            Some(since) if now.saturating_duration_since(since) >= timeout => return,
            Some(since) => since + timeout,
            // Busy: look again later; the clock restarts when it is idle.
            None => now + timeout,
        };
        sleep.as_mut().reset(next);
    }
}

/// A connection's requests in flight and when the last one ended.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// When the last response finished, in microseconds after `opened`.
    last_done: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done: AtomicU64::new(0),
        }
    }

    /// Since when nothing has been in flight; `None` while a request is.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let micros = self.last_done.load(Ordering::Relaxed);
        Some(self.opened + Duration::from_micros(micros))
    }
}

/// Counts one request as in flight until its response body is done.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let since_open = crate::clock::elapsed(self.0.opened).as_micros();
        let micros = u64::try_from(since_open).unwrap_or(u64::MAX);
        self.0.last_done.fetch_max(micros, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
