//! The gateway's own HTTP/1.1 exchange on the upstream hop, for requests
//! without a body (every `GET`, most of the traffic).
//!
//! hyper's client costs about 17,000 instructions per request on this hop
//! (`docs/benchmarks.md`, "The upstream hop's own client"); most of it is
//! machinery a bodiless request does not need: a dispatch channel between
//! the request and its connection, a connection state machine polled for
//! each step, a copy of every header. Here the request's head is written
//! in one buffer with one `write`, the answer's head is parsed with
//! `httparse` (hyper's parser) straight into the request's emptied header
//! map, its values slices of the bytes read, and the body is cut from the
//! same buffer (`proxy/h1/decode.rs`). Requests with a body keep hyper's
//! client (`proxy/pool.rs`): it writes and reads at once, which an upstream
//! that answers before it has read the body needs.
//!
//! The rules, each with a test (`proxy/h1/tests.rs`,
//! `gateway/tests/e2e/upstream_framing.rs`, `gateway/tests/e2e/gunicorn.rs`):
//!
//! * An answer's length: `Content-Length`, `chunked`, or read to the close;
//!   none for `HEAD`, 1xx, 204 and 304. Conflicting or malformed framing,
//!   a transfer coding other than `chunked`, obs-folded fields, a head
//!   over [`MAX_HEAD`] or with over 100 fields, a 101: 502, the
//!   connection closed (`proxy/h1/head.rs`).
//! * Interim answers (1xx but 101) are skipped, at most [`MAX_INTERIM`].
//! * A connection carries another request only when the answer was
//!   HTTP/1.1 without `Connection: close`, framed by length or chunks,
//!   read to its end, and nothing came after it; an idle one is checked
//!   for a close or stray bytes before it is used (`proxy/pool.rs`).
//! * An answer that declares a length within
//!   `upstream.response_buffer_bytes` is read whole before its head goes
//!   on, its connection back in the pool; any other streams with
//!   back-pressure (the socket is read only when the client's side asks
//!   for more, up to [`FRAME_MOST`] at a time), holding its connection and
//!   slot until its end.
//! * A request lost to a stale keep-alive connection (the upstream closed
//!   it as the request went out) is sent once more, on a new connection,
//!   when no byte of an answer came back and either none of the request
//!   had been written or its method is idempotent (RFC 9110 §9.2.2).
//!   Sending it again costs nothing: its head is still in the buffer.

mod decode;
mod head;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::connector::Stream;
use super::pool::Pool;
use super::Slot;
use crate::body::{self, Body, BodyError};
use crate::reject::Rejection;
use crate::request_body::ForwardBody;
use crate::shard::Local;
use decode::{Decoder, Step};

/// The longest answer head taken (hyper's client takes about as much in
/// its default buffer; the legacy backend's heads are under 1 KiB).
const MAX_HEAD: usize = 64 * 1024;

/// The most interim (1xx) answers skipped before the real one.
const MAX_INTERIM: usize = 16;

/// How much room a read is given at least.
const READ_ROOM: usize = 8 * 1024;

/// The most a streamed body's frame carries (hyper's client reads up to
/// about 400 KiB at a time).
const FRAME_MOST: usize = 256 * 1024;

/// What [`Conn::poll_fill`] found.
enum Filled {
    /// Bytes, now in the read buffer.
    Some,
    /// The end of the stream, nothing before it.
    Closed,
}

/// What is wrong with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Invalid {
    #[error("malformed answer head")]
    Head,
    #[error("answer head over {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("answer head with over 100 fields")]
    TooManyFields,
    #[error("more than {MAX_INTERIM} interim answers")]
    TooManyInterim,
    #[error("switching protocols, which was not asked for")]
    Upgrade,
    #[error("invalid or conflicting Content-Length")]
    Length,
    #[error("Transfer-Encoding other than chunked, or with Content-Length or on HTTP/1.0")]
    TransferEncoding,
    #[error("malformed chunked body")]
    Chunk,
}

/// How the gateway's own exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// Refused, missing socket, timed out (`io::ErrorKind::TimedOut`).
    #[error("connecting to the upstream: {0}")]
    Connect(#[source] io::Error),
    #[error("writing the request upstream: {0}")]
    Write(#[source] io::Error),
    #[error("reading the upstream's answer: {0}")]
    Read(#[source] io::Error),
    #[error("the upstream closed the connection before answering")]
    ClosedBeforeAnswer,
    #[error("the upstream closed the connection within its answer")]
    ClosedWithin,
    #[error("invalid upstream answer: {0}")]
    Invalid(#[from] Invalid),
}

/// One upstream connection of the gateway's own.
pub(crate) struct Conn {
    stream: Stream,
    /// Bytes read and not yet taken; empty between exchanges.
    read: BytesMut,
    /// The request head; kept for its allocation.
    write: Vec<u8>,
    /// Whether it carried an earlier request (only then can it be stale).
    reused: bool,
}

impl Conn {
    pub(crate) fn new(stream: Stream) -> Conn {
        Conn {
            stream,
            read: BytesMut::new(),
            write: Vec::new(),
            reused: false,
        }
    }

    /// This idle connection, marked as reused, if it is still open with
    /// nothing unread: a close, or bytes nobody asked for, make it useless.
    /// One read attempt that does not wait (not even a system call when
    /// the event loop has seen nothing arrive since the last read drained
    /// the socket).
    pub(crate) fn reuse(mut self) -> Option<Conn> {
        let mut probe = [0_u8; 1];
        let quiet = matches!(
            self.stream.try_read(&mut probe),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock
        );
        self.reused = true;
        quiet.then_some(self)
    }

    /// Makes room for the next read.
    fn reserve(&mut self) {
        if self.read.capacity() - self.read.len() < READ_ROOM / 4 {
            self.read.reserve(READ_ROOM);
        }
    }

    /// Reads what the socket has, up to [`FRAME_MOST`] bytes buffered:
    /// a streamed body goes on in frames as large as what has arrived,
    /// as hyper's client passed them on. Small frames would fill the
    /// client connection's write queue (hyper's holds a fixed number of
    /// them) long before its bytes, so a client that stops reading would
    /// keep an answer, its connection and its upstream slot unread that
    /// the queue could have taken whole.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Filled>> {
        let mut filled = false;
        while self.read.len() < FRAME_MOST {
            if self.read.capacity() - self.read.len() < READ_ROOM {
                self.read.reserve(FRAME_MOST - self.read.len());
            }
            let reading = pin!(self.stream.read_buf(&mut self.read));
            match reading.poll(cx) {
                // What was read is passed on first; the close is seen again
                // by the next read.
                Poll::Ready(Ok(0)) if filled => break,
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(Filled::Closed)),
                Poll::Ready(Ok(_)) => filled = true,
                Poll::Pending if filled => break,
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) if filled => {
                    // Seen again by the next read.
                    tracing::debug!(%error, "upstream read failed after data");
                    break;
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            }
        }
        Poll::Ready(Ok(Filled::Some))
    }

    /// Writes the head in `self.write` and reads up to the end of the
    /// answer's head, skipping interim answers.
    async fn send(&mut self, method: &Method) -> Result<head::Head, Failure> {
        let mut written = 0;
        while written < self.write.len() {
            match self.stream.write(&self.write[written..]).await {
                Ok(0) => return Err(Failure::write(io::ErrorKind::WriteZero.into(), written)),
                Ok(wrote) => written += wrote,
                Err(error) => return Err(Failure::write(error, written)),
            }
        }
        let mut interim = 0;
        let mut answered = false;
        loop {
            if let Some(head) = head::parse(&self.read, method).map_err(Failure::invalid)? {
                if !head.is_interim() {
                    return Ok(head);
                }
                interim += 1;
                if interim > MAX_INTERIM {
                    return Err(Failure::invalid(Invalid::TooManyInterim));
                }
                self.read.advance(head.len);
                continue;
            }
            if self.read.len() >= MAX_HEAD {
                return Err(Failure::invalid(Invalid::HeadTooLarge));
            }
            self.reserve();
            match self.stream.read_buf(&mut self.read).await {
                Ok(0) if answered => return Err(Failure::answered(Error::ClosedWithin)),
                Ok(0) => return Err(Failure::unanswered(Error::ClosedBeforeAnswer, written)),
                Ok(_) => answered = true,
                Err(error) if answered => return Err(Failure::answered(Error::Read(error))),
                Err(error) => return Err(Failure::unanswered(Error::Read(error), written)),
            }
        }
    }
}

/// A failed attempt, and whether sending the request again is safe.
struct Failure {
    error: Error,
    /// `None` once any of an answer came back; else how many bytes of
    /// the request had been written.
    unanswered_after: Option<usize>,
}

impl Failure {
    fn write(error: io::Error, written: usize) -> Failure {
        Failure::unanswered(Error::Write(error), written)
    }

    fn unanswered(error: Error, written: usize) -> Failure {
        Failure {
            error,
            unanswered_after: Some(written),
        }
    }

    fn answered(error: Error) -> Failure {
        Failure {
            error,
            unanswered_after: None,
        }
    }

    fn invalid(invalid: Invalid) -> Failure {
        Failure::answered(Error::Invalid(invalid))
    }

    /// Whether this is the keep-alive race (the connection closed or reset
    /// with no answer) and sending `method` again cannot do anything twice.
    fn may_retry(&self, method: &Method) -> bool {
        let closed = match &self.error {
            Error::ClosedBeforeAnswer => true,
            Error::Write(error) | Error::Read(error) => matches!(
                error.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        };
        let idempotent = matches!(
            *method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        );
        closed
            && self
                .unanswered_after
                .is_some_and(|written| written == 0 || idempotent)
    }
}

/// An answer whose head has been read; its body not yet.
pub(crate) struct Answer {
    response: Response<()>,
    body: Reading,
}

/// An answer's body still on its connection.
struct Reading {
    conn: Conn,
    decoder: Decoder,
    keep_alive: bool,
}

/// Sends a request without a body on an idle connection of `pool` or a
/// new one, and reads the answer's head. The request's header map becomes
/// the answer's.
pub(crate) async fn exchange(pool: &Pool, request: Request<ForwardBody>) -> Result<Answer, Error> {
    let (parts, _) = request.into_parts();
    let (method, uri, mut headers) = (parts.method, parts.uri, parts.headers);
    // Written by `write_request` for the methods that need it.
    headers.remove(http::header::CONTENT_LENGTH);
    let target = uri.path_and_query().map_or("/", |target| target.as_str());
    let mut fresh_only = false;
    loop {
        let idle = if fresh_only {
            None
        } else {
            pool.checkout_own()
        };
        let mut conn = match idle {
            Some(conn) => conn,
            // Boxed: a new connection is rare, and its future held inline
            // would grow every request's (`docs/benchmarks.md`, "Smaller
            // futures").
            None => Box::pin(pool.connect_own()).await.map_err(Error::Connect)?,
        };
        conn.write.clear();
        head::write_request(&mut conn.write, &method, target, &headers);
        let head = match conn.send(&method).await {
            Ok(head) => head,
            Err(failure) if conn.reused && !fresh_only && failure.may_retry(&method) => {
                tracing::debug!(error = %failure.error, "stale upstream connection; retrying on a new one");
                fresh_only = true;
                continue;
            }
            Err(failure) => return Err(failure.error),
        };
        let bytes = conn.read.split_to(head.len).freeze();
        head::fields(&bytes, &head.framing, &mut headers)?;
        let mut response = Response::new(());
        *response.status_mut() = head.status;
        // The upstream hop's version is not the client's business (nor
        // its connection's keep-alive).
        *response.version_mut() = Version::HTTP_11;
        *response.headers_mut() = headers;
        return Ok(Answer {
            response,
            body: Reading {
                conn,
                decoder: Decoder::new(head.framing),
                keep_alive: head.keep_alive,
            },
        });
    }
}

impl Answer {
    /// The answer's status.
    pub(crate) fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// The head's fields.
    pub(crate) fn headers_mut(&mut self) -> &mut HeaderMap {
        self.response.headers_mut()
    }

    /// The answer with its body: read whole when it declares a length of
    /// at most `buffer_limit` bytes (its connection is then back in
    /// `pool` and `slot` freed), else streaming, holding both until its
    /// end. A failure while reading is the upstream's (502): no head has
    /// gone out yet.
    pub(crate) async fn with_body(
        self,
        buffer_limit: usize,
        pool: &Arc<Pool>,
        slot: Slot,
    ) -> Result<Response<Body>, Rejection> {
        let Answer { response, body } = self;
        let limit = u64::try_from(buffer_limit).unwrap_or(u64::MAX);
        // A body of known length within the limit (none at all: 0) is
        // read whole; any other streams.
        let body = match body.decoder.remaining() {
            Some(length) if length <= limit => {
                let bytes = body.read_whole(length, pool).await.map_err(|error| {
                    Rejection::UpstreamBroken(format!("reading the answer's body: {error}"))
                })?;
                body::full(bytes)
            }
            _ => Streaming {
                body: Some(body),
                pool: crate::shard::local(pool),
                slot: Some(slot),
            }
            .boxed_unsync(),
        };
        let (parts, ()) = response.into_parts();
        Ok(Response::from_parts(parts, body))
    }
}

impl Reading {
    /// Reads a body of `length` bytes whole, then returns the connection.
    async fn read_whole(mut self, length: u64, pool: &Pool) -> Result<Bytes, Error> {
        let length = usize::try_from(length).map_err(|_| Invalid::Length)?;
        let conn = &mut self.conn;
        if conn.read.len() < length {
            conn.read.reserve(length - conn.read.len());
        }
        while conn.read.len() < length {
            match conn.stream.read_buf(&mut conn.read).await {
                Ok(0) => return Err(Error::ClosedWithin),
                Ok(_) => {}
                Err(error) => return Err(Error::Read(error)),
            }
        }
        let bytes = conn.read.split_to(length).freeze();
        self.finish(pool);
        Ok(bytes)
    }

    /// Returns the connection to `pool` when it may carry another request.
    fn finish(self, pool: &Pool) {
        if self.keep_alive && self.conn.read.is_empty() {
            pool.checkin_own(self.conn);
        }
    }
}

/// A streamed answer body. Polling it reads its connection; at its end the
/// connection goes back to the pool and the upstream slot is freed.
/// Dropped before its end, the connection is closed (an HTTP/1.1 answer
/// cannot be abandoned halfway).
struct Streaming {
    /// `None` once it has ended or failed.
    body: Option<Reading>,
    /// The serving thread's own handle on the pool (`shard.rs`).
    pool: Arc<Local<Pool>>,
    slot: Option<Slot>,
}

impl Streaming {
    fn end(&mut self) {
        if let Some(body) = self.body.take() {
            body.finish(&self.pool);
        }
        self.slot = None;
    }

    fn fail(&mut self, error: Error) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.body = None;
        self.slot = None;
        Poll::Ready(Some(Err(BodyError(Box::new(error)))))
    }
}

impl HttpBody for Streaming {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        loop {
            let Some(body) = this.body.as_mut() else {
                return Poll::Ready(None);
            };
            match body.decoder.decode(&mut body.conn.read) {
                Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Step::Done) => {
                    this.end();
                    return Poll::Ready(None);
                }
                Ok(Step::More) => {}
                Err(invalid) => return this.fail(invalid.into()),
            }
            match body.conn.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(Filled::Some)) => {}
                Poll::Ready(Ok(Filled::Closed)) if body.decoder.ends_at_close() => {
                    body.keep_alive = false;
                    this.end();
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(Filled::Closed)) => return this.fail(Error::ClosedWithin),
                Poll::Ready(Err(error)) => return this.fail(Error::Read(error)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(|body| body.decoder.is_done())
    }

    fn size_hint(&self) -> SizeHint {
        match self.body.as_ref().map(|body| body.decoder.remaining()) {
            None => SizeHint::with_exact(0),
            Some(Some(left)) => SizeHint::with_exact(left),
            Some(None) => SizeHint::default(),
        }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        // A server that saw `is_end_stream` never polls the body to its end.
        if self.is_end_stream() {
            self.end();
        }
    }
}
