//! Forward: send an admitted request to the upstream over a pooled
//! keep-alive connection and stream the answer back.
//!
//! Requests without a body take the gateway's own HTTP/1.1 exchange
//! (`proxy/h1.rs`); those with one, hyper's client (`pool.rs`). Either way
//! the connection is driven by the task serving the client's request: no
//! task per upstream connection, no hand-off between tasks per request. A
//! request lost to a stale keep-alive connection is sent again once, on a
//! new connection, when that is safe (`proxy/h1.rs`; [`exchange`]).
//!
//! In: a request that passed every check, its [`Identity`] and host, and the
//! body wrapped by `request_body`. Out: the upstream's response with its
//! body streaming, or a [`Rejection`] saying whose fault the failure was:
//!
//! | what happened | answer |
//! |---|---|
//! | no free slot within `upstream.queue_timeout` | 503 + `Retry-After` |
//! | connect refused / socket missing | 502 |
//! | connect timed out, or no answer (its head; a buffered answer whole) within `response_timeout` after the body was read (enforced by the caller, `policy/deadline.rs`) | 504 |
//! | connection closed early, invalid answer, compressed answer | 502 |
//! | the client's streamed body went over the route limit | 413 |
//! | upstream answered 5xx (and `replace_error_bodies`) | same status, generic envelope; 503 keeps/gets `Retry-After` |
//! | the client's IP holds `limits.max_upstream_per_ip` slots and none of them comes free within `upstream.queue_timeout` | 503 + `Retry-After` |
//!
//! A request body that declares a length within
//! `upstream.request_buffer_bytes` is read whole once the slot is taken and
//! before a connection is, so a slow upload holds no upstream connection.
//! When an upstream answers before it has read a streamed body, the rest of
//! the body is still sent on its connection ([`send_rest`]).
//!
//! An answer that declares a length within `upstream.response_buffer_bytes`
//! is read in full before it is returned (`proxy/buffer.rs`), so its slot
//! and connection are free before the client reads a byte; a larger one
//! holds them until the client has read it (or the send watch gives up on
//! the client, `limits.send_timeout`).
//!
//! With several workers (`upstream.addresses`), each request goes to its
//! principal's worker (`proxy/workers.rs`), each worker with its own pool;
//! there a refused connection or a broken exchange answers 503 "session
//! lost, upload again" and ejects the worker for `upstream.eject_for`
//! (one worker: 502 as above). With `upstream.hmac_key`, every forwarded
//! request is signed for the worker (`proxy/sign.rs`).
//!
//! Upstream 5xx bodies are replaced by default because the legacy backend
//! writes Python exception texts into its 500s (ASVS 16.5.1); 4xx bodies
//! pass through, they are the API's own validation messages.

mod buffer;
mod connector;
mod h1;
mod headers;
mod pool;
mod quiet;
mod sign;
mod workers;

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, RETRY_AFTER};
use http::uri::PathAndQuery;
use http::{HeaderMap, Request, Response, Uri, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::body::Body;
use crate::config;
use crate::host::Authority;
use crate::identity::Identity;
use crate::per_ip::{Held, PerIp};
use crate::reject::Rejection;
use crate::request_body::{BodyWatch, ForwardBody};

pub(crate) use connector::{is_accepting, Connector};
pub(crate) use headers::{strip_hop_by_hop, to_upstream as upstream_headers, Caller};
use pool::{ConnectError, Lease, Pool};
use quiet::Side;
pub(crate) use sign::sign;
use workers::Workers;

/// The connections to the upstream's workers, and the concurrency slots.
pub(crate) struct Upstream {
    workers: Workers,
    slots: Arc<Semaphore>,
    /// The slots each client IP holds (`limits.max_upstream_per_ip`).
    per_ip: Arc<PerIp>,
}

/// One upstream slot, counted in total and for the client's IP.
struct Slot {
    _total: OwnedSemaphorePermit,
    _client: Held,
}

impl Upstream {
    /// Builds the pools, one per worker and in each one idle list per
    /// serving thread (inside the runtime: they start the idle reapers).
    /// Nothing connects until the first request.
    pub(crate) fn new(config: &config::Upstream, serving_threads: usize) -> Self {
        Self {
            workers: Workers::new(config, serving_threads),
            slots: Arc::new(Semaphore::new(config.max_in_flight.get())),
            per_ip: Arc::new(PerIp::default()),
        }
    }

    /// Forwards one request; see the module table for the failures.
    pub(crate) async fn forward(
        &self,
        request: Request<ForwardBody>,
        identity: &Identity,
        caller: &Caller<'_>,
        host: &Authority,
        policy: &config::Config,
        watch: &Arc<BodyWatch>,
    ) -> Result<Response<Body>, Rejection> {
        let config = &policy.upstream;
        let slot = self.slot(identity.client_ip, policy).await?;

        // Read whole before a connection is taken when it declares a
        // length within `upstream.request_buffer_bytes`.
        let (parts, body) = request.into_parts();
        let limit = u64::try_from(config.request_buffer_bytes).unwrap_or(u64::MAX);
        let body = body.buffered_within(limit, watch).await?;
        let mut request = to_upstream(Request::from_parts(parts, body), identity, caller, host);
        if let Some(key) = &config.hmac_key {
            let (method, uri) = (request.method().clone(), request.uri().clone());
            sign(key, &method, &uri, request.headers_mut());
        }
        let worker = self.workers.pick(caller.principal.map(|p| p.id.as_str()));
        if request.body().is_end_stream() {
            // No body: the gateway's own exchange (`proxy/h1.rs`).
            let mut answer = h1::exchange(worker.pool, request)
                .await
                .map_err(|error| self.worker_lost(worker.index, classify_own(&error), config))?;
            check_answer(answer.status(), answer.headers_mut(), config)?;
            return answer
                .with_body(config.response_buffer_bytes, worker.pool, slot)
                .await;
        }
        // `upstream.response_timeout` is the caller's to enforce, with the
        // request's own deadline on one timer (`policy/deadline.rs`): it
        // starts once the client's body has been sent, so a slow upload is
        // not blamed on the upstream.
        let (response, lease) = exchange(worker.pool, request).await.map_err(|error| {
            let rejection = classify(&error, watch);
            self.worker_lost(worker.index, rejection, config)
        })?;
        let sending = StillSending {
            watch: Arc::clone(watch),
            for_at_most: policy.limits.refusal_drain_timeout,
        };
        let response = from_upstream(response, lease, worker.pool, config, slot, sending)?;
        let (parts, body) = response.into_parts();
        let body = buffer::buffer(body, config.response_buffer_bytes).await?;
        Ok(Response::from_parts(parts, body))
    }

    /// An upstream slot within the client's share
    /// (`limits.max_upstream_per_ip`), waiting at most
    /// `upstream.queue_timeout` for both: 503 when the client's share did
    /// not come free (`limits.client_upstream_slots`), or no slot did
    /// (`upstream.busy`).
    async fn slot(&self, client: IpAddr, policy: &config::Config) -> Result<Slot, Rejection> {
        let (share, config) = (policy.limits.clients.max_upstream_per_ip, &policy.upstream);
        // Read only when a place is waited for.
        let mut deadline = None;
        let mut deadline =
            || *deadline.get_or_insert_with(|| tokio::time::Instant::now() + config.queue_timeout);
        // Free places are taken at once; only a wait needs a timer (and the
        // clock). The client's share first: a client at its share does not
        // queue for the slots others need.
        let client = match self.per_ip.try_take(client, share) {
            Some(held) => held,
            None => tokio::time::timeout_at(deadline(), self.per_ip.take(client, share))
                .await
                .map_err(|_| Rejection::ClientBusy {
                    reason: "limits.client_upstream_slots",
                    retry_after: config.retry_after,
                })?,
        };
        let total = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(total) => total,
            Err(_) => tokio::time::timeout_at(deadline(), Arc::clone(&self.slots).acquire_owned())
                .await
                .map_err(|_| Rejection::UpstreamBusy {
                    retry_after: config.retry_after,
                })?
                .expect("the semaphore is never closed"),
        };
        Ok(Slot {
            _total: total,
            _client: client,
        })
    }

    /// With several workers, a worker that refused the connection or broke
    /// the exchange has lost its sessions: it is ejected, and the caller
    /// is told to upload again (503, never 502 or 500).
    fn worker_lost(
        &self,
        index: usize,
        rejection: Rejection,
        config: &config::Upstream,
    ) -> Rejection {
        match rejection {
            Rejection::UpstreamUnreachable(error) | Rejection::UpstreamBroken(error)
                if self.workers.is_pool() =>
            {
                self.workers.eject(index);
                Rejection::WorkerLost {
                    worker: index,
                    error,
                    retry_after: config.retry_after,
                }
            }
            other => other,
        }
    }

    /// Leaves worker `index` out for `upstream.eject_for` (the readiness
    /// probe found it not ready); a no-op with one worker.
    pub(crate) fn eject(&self, index: usize) {
        if self.workers.is_pool() {
            self.workers.eject(index);
        }
    }
}

/// Sends a request with a body on an idle connection of `pool` or a new
/// one and waits for the answer's head, driving the connection in this
/// task (bodiless requests take the gateway's own exchange,
/// `proxy/h1.rs`).
///
/// A request that an idle connection handed back unsent, because the
/// upstream had closed it (the keep-alive race), is sent once more on a
/// new connection. One that was written is not: its body has been
/// streamed and is gone.
async fn exchange(
    pool: &Pool,
    mut request: Request<ForwardBody>,
) -> Result<(Response<Incoming>, Lease), ExchangeError> {
    let mut fresh_only = false;
    loop {
        let idle = if fresh_only {
            None
        } else {
            pool.checkout().await
        };
        let mut lease = match idle {
            Some(lease) => lease,
            // Boxed: a new connection is rare, and its handshake's future
            // held inline would grow every request's (`docs/benchmarks.md`,
            // "Smaller futures").
            None => Box::pin(pool.connect())
                .await
                .map_err(ExchangeError::Connect)?,
        };
        let sending = lease.send(request);
        let mut error = match pool::drive(&mut lease, sending).await {
            Ok(response) => return Ok((response, lease)),
            Err(error) => error,
        };
        request = match error.take_message() {
            Some(unsent) if lease.reused => unsent,
            _ => return Err(ExchangeError::Http(error.into_error())),
        };
        tracing::debug!(error = %error.error(), "stale upstream connection; retrying on a new one");
        fresh_only = true;
    }
}

/// Points a checked request at the upstream: origin-form target, HTTP/1.1,
/// the upstream hop's headers.
fn to_upstream(
    request: Request<ForwardBody>,
    identity: &Identity,
    caller: &Caller<'_>,
    host: &Authority,
) -> Request<ForwardBody> {
    let (mut parts, body) = request.into_parts();
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        // HTTP/2 and absolute-form HTTP/1.1 targets carry the authority;
        // the upstream gets the path and query only (and `Host`).
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::from(path_and_query);
    }
    parts.version = Version::HTTP_11;
    headers::to_upstream(&mut parts.headers, identity, caller, host);
    Request::from_parts(parts, body)
}

/// How an exchange failed.
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("connecting to the upstream: {0}")]
    Connect(#[source] ConnectError),
    #[error("upstream exchange: {0}")]
    Http(#[source] hyper::Error),
}

/// Whose fault an exchange failure was.
fn classify(error: &ExchangeError, watch: &BodyWatch) -> Rejection {
    if watch.is_exceeded() {
        return Rejection::BodyTooLarge {
            limit: watch.limit(),
        };
    }
    // A client body that broke mid-stream (e.g. a bad chunk size) fails the
    // exchange too; it is the client's fault, so 400 rather than 502.
    if watch.is_malformed() {
        return Rejection::BodyIncomplete;
    }
    match error {
        ExchangeError::Connect(ConnectError::Io(io))
            if io.kind() == std::io::ErrorKind::TimedOut =>
        {
            Rejection::UpstreamTimeout
        }
        ExchangeError::Connect(ConnectError::Io(_)) => {
            Rejection::UpstreamUnreachable(error_chain(error))
        }
        ExchangeError::Connect(ConnectError::Handshake(_)) | ExchangeError::Http(_) => {
            Rejection::UpstreamBroken(error_chain(error))
        }
    }
}

/// Whose fault a failure of the gateway's own exchange was (no body, so
/// never the client's).
fn classify_own(error: &h1::Error) -> Rejection {
    match error {
        h1::Error::Connect(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            Rejection::UpstreamTimeout
        }
        h1::Error::Connect(_) => Rejection::UpstreamUnreachable(error_chain(error)),
        _ => Rejection::UpstreamBroken(error_chain(error)),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Checks and cleans the upstream's answer. Its body keeps driving the
/// connection; the slot is released and the connection goes back to the
/// pool when the body has been read.
fn from_upstream(
    response: Response<Incoming>,
    lease: Lease,
    pool: &Arc<Pool>,
    config: &config::Upstream,
    slot: Slot,
    sending: StillSending,
) -> Result<Response<UpstreamBody>, Rejection> {
    let (mut parts, body) = response.into_parts();
    // Built first, so a refused answer with an empty body still returns
    // its connection to the pool when dropped.
    let body = UpstreamBody {
        body,
        lease: Some(lease),
        pool: crate::shard::local(pool),
        slot: Some(slot),
        sending,
    };
    check_answer(parts.status, &mut parts.headers, config)?;
    Ok(Response::from_parts(parts, body))
}

/// Refuses a compressed answer (502) and, with
/// `upstream.replace_error_bodies`, a 5xx one (its status with the
/// gateway's envelope); strips the hop-by-hop fields of any other.
fn check_answer(
    status: http::StatusCode,
    headers: &mut HeaderMap,
    config: &config::Upstream,
) -> Result<(), Rejection> {
    let is_compressed = headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .any(|value| !value.as_bytes().eq_ignore_ascii_case(b"identity"));
    if is_compressed {
        return Err(Rejection::UpstreamBroken(
            "compressed response despite Accept-Encoding: identity".into(),
        ));
    }
    if status.is_server_error() && config.replace_error_bodies {
        return Err(Rejection::UpstreamFailed {
            status,
            retry_after: headers.get(RETRY_AFTER).cloned(),
        });
    }
    strip_hop_by_hop(headers);
    Ok(())
}

/// The upstream's response body. Polling it also drives its connection;
/// once it has been read the connection goes back to the pool and the
/// upstream slot is freed. Dropped early, the connection is closed (an
/// HTTP/1.1 answer cannot be abandoned halfway).
///
/// An upstream may answer before it has read the whole request body (nginx
/// answering `return 200`, a backend refusing early), and go on reading
/// and discarding it. The connection then still carries the client's body
/// when the answer ends: it is not put back idle (unpolled, it would hold
/// the client's body, and with it the client's connection, until the next
/// request took it and found it busy) but driven by a task of its own until
/// the body is through ([`send_rest`]).
struct UpstreamBody {
    body: Incoming,
    lease: Option<Lease>,
    /// The serving thread's own handle on the pool (`shard.rs`).
    pool: Arc<crate::shard::Local<Pool>>,
    slot: Option<Slot>,
    sending: StillSending,
}

/// The client's body on its way to the upstream, and how long the rest of
/// it may take once the answer has ended (`limits.refusal_drain_timeout`,
/// the bound on reading a body nobody waits for).
struct StillSending {
    watch: Arc<BodyWatch>,
    for_at_most: Duration,
}

impl UpstreamBody {
    fn finish(&mut self) {
        let Some(lease) = self.lease.take() else {
            self.slot = None;
            return;
        };
        if self.sending.watch.is_finished() {
            self.slot = None;
            self.pool.checkin(lease);
        } else if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(send_rest(
                lease,
                Arc::clone(self.pool.shared()),
                self.slot.take(),
                self.sending.for_at_most,
            ));
        }
    }
}

/// Drives `lease` until the request body it carries has been sent, then
/// returns it to `pool`; after `for_at_most`, or when the body or the
/// connection fails, the connection is closed (and hyper closes the
/// client's, whose body was not read to its end). The upstream slot is
/// held until then: the upstream is still busy with the request.
async fn send_rest(mut lease: Lease, pool: Arc<Pool>, slot: Option<Slot>, for_at_most: Duration) {
    let through = tokio::time::timeout(for_at_most, std::future::poll_fn(|cx| lease.poll_idle(cx)));
    let reusable = matches!(through.await, Ok(true));
    drop(slot);
    if reusable {
        pool.checkin(lease);
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let body = &mut this.body;
        let polled = match &mut this.lease {
            Some(lease) => {
                lease.poll_with(cx, Side::Partner, |cx| Pin::new(&mut *body).poll_frame(cx))
            }
            None => Pin::new(body).poll_frame(cx),
        };
        match &polled {
            Poll::Ready(None) => this.finish(),
            Poll::Ready(Some(Err(_))) => {
                this.slot = None;
                this.lease = None;
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A server that saw `is_end_stream` never polls the body to its end.
        if self.body.is_end_stream() {
            self.finish();
        }
    }
}
