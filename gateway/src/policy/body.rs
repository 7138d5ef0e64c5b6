//! Body: the request body must fit the route's limit and arrive
//! uncompressed.
//!
//! A declared `Content-Length` over the limit is refused (413) before a
//! byte of the body is read. A body without a declared length (chunked, or
//! HTTP/2 DATA frames) is counted while it streams to the upstream by
//! [`Limited`]; past the limit the stream fails, the upstream exchange is
//! abandoned and the client gets 413. Compressed bodies are refused with
//! 415: the gateway cannot cap their decoded size (ASVS 5.2.3), and no route
//! accepts them yet.
//!
//! Routes whose body is checked before it is forwarded (the upload form, JSON
//! depth) read it in full first, under the same limit ([`collect`]); the
//! upstream then gets it as one buffer ([`ForwardBody::Buffered`]).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use http::request::Parts;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::Notify;

use crate::body::BoxError;
use crate::config::Route;
use crate::reject::Rejection;

/// Checks what the head says about the body.
pub(crate) fn check(parts: &Parts, route: &Route) -> Result<(), Rejection> {
    let is_compressed = parts
        .headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .any(|value| !value.as_bytes().eq_ignore_ascii_case(b"identity"));
    if is_compressed {
        return Err(Rejection::CompressedBody);
    }
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(length) if length > route.body_limit => Err(Rejection::BodyTooLarge {
            limit: route.body_limit,
        }),
        _ => Ok(()),
    }
}

/// What happened to a streamed request body, for the forwarder to tell a
/// client fault (413, 408) from an upstream one.
#[derive(Debug)]
pub(crate) struct BodyWatch {
    limit: u64,
    /// Body bytes read so far (audit `bytes_in`, `upload_bytes`).
    received: AtomicU64,
    exceeded: AtomicBool,
    malformed: AtomicBool,
    finished: AtomicBool,
    finished_notify: Notify,
}

impl BodyWatch {
    /// A watch for a body allowed `limit` bytes.
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit,
            received: AtomicU64::new(0),
            exceeded: AtomicBool::new(false),
            malformed: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            finished_notify: Notify::new(),
        }
    }

    /// The body's limit in bytes.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// Body bytes read so far.
    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Whether the body went over its limit.
    pub(crate) fn is_exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Acquire)
    }

    /// Whether reading the client's body failed (broken chunked framing,
    /// the client hanging up mid-body) rather than the upstream.
    pub(crate) fn is_malformed(&self) -> bool {
        self.malformed.load(Ordering::Acquire)
    }

    /// Whether the whole body has been read.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Resolves once the whole body has been read.
    pub(crate) async fn finished(&self) {
        loop {
            let notified = self.finished_notify.notified();
            if self.is_finished() {
                return;
            }
            notified.await;
        }
    }

    fn mark_finished(&self) {
        self.finished.store(true, Ordering::Release);
        self.finished_notify.notify_waiters();
    }
}

/// The body over the limit, as a stream error.
#[derive(Debug, thiserror::Error)]
#[error("request body over the route limit of {0} bytes")]
pub(crate) struct BodyTooLarge(u64);

/// Reads a whole body under `watch`'s limit. Over the limit:
/// [`Rejection::BodyTooLarge`]; a broken body: [`Rejection::BodyIncomplete`].
pub(crate) async fn collect(body: Incoming, watch: Arc<BodyWatch>) -> Result<Bytes, Rejection> {
    let limited = Limited::new(body, Arc::clone(&watch));
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) if watch.is_exceeded() => Err(Rejection::BodyTooLarge {
            limit: watch.limit(),
        }),
        Err(_) => Err(Rejection::BodyIncomplete),
    }
}

/// What the upstream receives: the client's body as it streams, or a body
/// already read and checked.
pub(crate) enum ForwardBody {
    /// Counted against the limit on its way.
    Streamed(Limited),
    /// Read in full by [`collect`]; `None` once sent.
    Buffered(Option<Bytes>),
}

impl HttpBody for ForwardBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ForwardBody::Streamed(limited) => Pin::new(limited).poll_frame(cx),
            ForwardBody::Buffered(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ForwardBody::Streamed(limited) => limited.is_end_stream(),
            ForwardBody::Buffered(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ForwardBody::Streamed(limited) => limited.size_hint(),
            ForwardBody::Buffered(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// A request body counted against a limit as it streams.
pub(crate) struct Limited {
    inner: Incoming,
    remaining: u64,
    watch: Arc<BodyWatch>,
}

impl Limited {
    /// Wraps a client's body; `watch` holds the limit and reports the
    /// outcome.
    pub(crate) fn new(inner: Incoming, watch: Arc<BodyWatch>) -> Self {
        if inner.is_end_stream() {
            watch.mark_finished();
        }
        Self {
            inner,
            remaining: watch.limit,
            watch,
        }
    }
}

impl HttpBody for Limited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let length = frame.data_ref().map_or(0, |data| data.len() as u64);
                this.watch.received.fetch_add(length, Ordering::Relaxed);
                match this.remaining.checked_sub(length) {
                    Some(remaining) => {
                        this.remaining = remaining;
                        Poll::Ready(Some(Ok(frame)))
                    }
                    None => {
                        this.watch.exceeded.store(true, Ordering::Release);
                        Poll::Ready(Some(Err(BodyTooLarge(this.watch.limit).into())))
                    }
                }
            }
            Poll::Ready(None) => {
                this.watch.mark_finished();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                this.watch.malformed.store(true, Ordering::Release);
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PathMatch;

    fn route(limit: u64) -> Route {
        Route {
            name: "r".into(),
            path: "/".into(),
            path_match: PathMatch::Exact,
            methods: vec![http::Method::POST],
            body_limit: limit,
            checks: crate::config::tests::minimal().routes[0].checks.clone(),
        }
    }

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().method("POST").uri("/");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn declared_length_over_the_limit_is_413() {
        assert!(check(&parts(&[("content-length", "10")]), &route(10)).is_ok());
        assert!(matches!(
            check(&parts(&[("content-length", "11")]), &route(10)),
            Err(Rejection::BodyTooLarge { limit: 10 })
        ));
    }

    #[tokio::test]
    async fn a_buffered_body_is_sent_once_with_its_exact_size() {
        let body = ForwardBody::Buffered(Some(Bytes::from_static(b"abc")));
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(!body.is_end_stream());
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected, Bytes::from_static(b"abc"));
        let empty = ForwardBody::Buffered(Some(Bytes::new()));
        assert!(empty.is_end_stream());
        assert!(empty.collect().await.unwrap().to_bytes().is_empty());
    }

    #[test]
    fn compressed_bodies_are_415_identity_is_fine() {
        assert!(check(&parts(&[("content-encoding", "identity")]), &route(10)).is_ok());
        for coding in ["gzip", "br", "deflate", "GZIP"] {
            assert!(matches!(
                check(&parts(&[("content-encoding", coding)]), &route(10)),
                Err(Rejection::CompressedBody)
            ));
        }
    }
}
