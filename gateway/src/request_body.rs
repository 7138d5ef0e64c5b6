//! Body: the request body must fit the route's limit and arrive
//! uncompressed, unless the route accepts a compressed body.
//!
//! A declared `Content-Length` over the limit is refused (413) before a
//! byte of the body is read. A body without a declared length (chunked, or
//! HTTP/2 DATA frames) is counted while it streams to the upstream by
//! [`Limited`]; past the limit the stream fails, the upstream exchange is
//! abandoned and the client gets 413.
//!
//! Compressed bodies (`Content-Encoding` other than `identity`) are refused
//! with 415, except on a route with `compressed_body`: there one layer of a
//! listed encoding is decoded while it streams ([`decode`]), the compressed
//! bytes still count against the route's limit, and the decoded bytes are
//! capped at `max_decoded_bytes` (413; ASVS 5.0 5.2.3). A corrupt stream is
//! 400; several layers or an unlisted encoding 415. The checks and the
//! upstream see the decoded body, without `Content-Encoding` and
//! `Content-Length`.
//!
//! Routes whose body is checked before it is forwarded (the upload form, JSON
//! depth) read it in full first, under the same limit ([`collect`]); the
//! upstream then gets it as one buffer ([`ForwardBody::Buffered`]). On other
//! routes a body that declares a length within
//! `upstream.request_buffer_bytes` is read in full too, once the request
//! has its upstream slot ([`ForwardBody::buffered_within`]); the rest
//! stream.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use http::request::Parts;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::body::BoxError;
use crate::config::{Encoding, Route};
use crate::conn::BodyFramingRefused;
use crate::reject::Rejection;

pub(crate) mod decode;

pub(crate) use decode::Decoding;

/// Checks what the head says about the body: its declared length, and its
/// encoding. A body the route accepts compressed is decoded: the answer
/// says how, and `Content-Encoding` and `Content-Length` are removed from
/// the head (they describe the compressed bytes).
pub(crate) fn check(parts: &mut Parts, route: &Route) -> Result<Option<Decoding>, Rejection> {
    let is_compressed = parts
        .headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .any(|value| !value.as_bytes().eq_ignore_ascii_case(b"identity"));
    if is_compressed && route.compressed_body.is_none() {
        return Err(Rejection::CompressedBody);
    }
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > route.body_limit) {
        return Err(Rejection::BodyTooLarge {
            limit: route.body_limit,
        });
    }
    let Some(allowed) = route.compressed_body.as_ref().filter(|_| is_compressed) else {
        return Ok(None);
    };
    let mut layers = Vec::new();
    for value in parts.headers.get_all(CONTENT_ENCODING) {
        let Ok(text) = value.to_str() else {
            return Err(Rejection::EncodingNotAccepted("not a token"));
        };
        layers.extend(text.split(',').map(str::trim).filter(|t| !t.is_empty()));
    }
    let encoding = match layers.as_slice() {
        [one] => Encoding::from_token(one)
            .filter(|e| allowed.encodings.contains(e))
            .ok_or(Rejection::EncodingNotAccepted(
                "encoding not listed for the route",
            ))?,
        _ => {
            return Err(Rejection::EncodingNotAccepted(
                "not exactly one encoding layer",
            ))
        }
    };
    parts.headers.remove(CONTENT_ENCODING);
    parts.headers.remove(CONTENT_LENGTH);
    Ok(Some(Decoding {
        encoding,
        max_decoded_bytes: allowed.max_decoded_bytes,
    }))
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
    /// Why the connection's framing reader refused the body's chunked
    /// framing, if it did.
    chunked_framing: OnceLock<&'static str>,
    /// When the body was read whole (the response deadline counts from
    /// then); unset while it is not.
    finished_at: OnceLock<tokio::time::Instant>,
    /// Why decoding a compressed body failed, if it did.
    decode_failure: OnceLock<decode::DecodeFailure>,
}

impl BodyWatch {
    /// A watch for a body allowed `limit` bytes.
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit,
            received: AtomicU64::new(0),
            exceeded: AtomicBool::new(false),
            malformed: AtomicBool::new(false),
            chunked_framing: OnceLock::new(),
            finished_at: OnceLock::new(),
            decode_failure: OnceLock::new(),
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
        self.finished_at.get().is_some()
    }

    /// The precise answer for a body failure the forwarder reported in
    /// general terms: a refused chunked framing replaces the 400 it was
    /// reported as, a decoding failure (decoded body over its cap, corrupt
    /// stream) the 413 / 400.
    pub(crate) fn refine(&self, rejection: Rejection) -> Rejection {
        match (self.decode_failure.get(), &rejection) {
            (_, Rejection::BodyIncomplete) if self.chunked_framing.get().is_some() => {
                self.failure()
            }
            (Some(failure), Rejection::BodyTooLarge { .. } | Rejection::BodyIncomplete) => {
                failure.rejection()
            }
            _ => rejection,
        }
    }

    /// Why the body could not be read: its framing, decoding, the limit,
    /// or the client.
    fn failure(&self) -> Rejection {
        if let Some(why) = self.chunked_framing.get() {
            Rejection::ChunkedFraming(why)
        } else if let Some(failure) = self.decode_failure.get() {
            failure.rejection()
        } else if self.is_exceeded() {
            Rejection::BodyTooLarge { limit: self.limit }
        } else {
            Rejection::BodyIncomplete
        }
    }

    /// When the whole body had been read, once it has.
    pub(crate) fn finished_at(&self) -> Option<tokio::time::Instant> {
        self.finished_at.get().copied()
    }

    /// Marks the body read whole, now.
    #[cfg(test)]
    pub(crate) fn finish_now(&self) {
        self.mark_finished();
    }

    fn mark_finished(&self) {
        let _ = self.finished_at.set(crate::clock::now());
    }
}

/// The body over the limit, as a stream error.
#[derive(Debug, thiserror::Error)]
#[error("request body over the route limit of {0} bytes")]
pub(crate) struct BodyTooLarge(u64);

/// Reads a whole body under `watch`'s limit, decoded if `decoding` says
/// so. Over the limit: [`Rejection::BodyTooLarge`]; a broken body:
/// [`Rejection::BodyIncomplete`]; decoding failures: see [`decode`].
pub(crate) async fn collect(
    body: Incoming,
    watch: Arc<BodyWatch>,
    decoding: Option<Decoding>,
) -> Result<Bytes, Rejection> {
    let stream = ForwardBody::streamed(body, Arc::clone(&watch), decoding);
    match stream.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(watch.failure()),
    }
}

/// What the upstream receives: the client's body as it streams, or a body
/// already read and checked.
pub(crate) enum ForwardBody {
    /// Counted against the limit on its way.
    Streamed(Limited),
    /// Counted against the limit, then decoded under its cap.
    Decoded(Box<decode::Decoded>),
    /// Read in full by [`collect`]; `None` once sent.
    Buffered(Option<Bytes>),
    /// Read in full by [`ForwardBody::buffered_within`].
    Gathered(Gathered),
}

/// A body read in full, kept in the pieces it arrived in (a TLS record's
/// worth each) rather than copied into one buffer: the upstream connection
/// writes them together.
#[derive(Default)]
pub(crate) struct Gathered {
    chunks: std::collections::VecDeque<Bytes>,
    /// Bytes not sent yet.
    remaining: u64,
}

impl Gathered {
    fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.remaining += chunk.len() as u64;
            self.chunks.push_back(chunk);
        }
    }
}

impl ForwardBody {
    /// The body read in full when it is still to be streamed and declares
    /// a length of at most `limit` bytes (request buffering: the upstream
    /// then gets it at once, however slowly the client sends it); any
    /// other body as it is. A failure while reading is the client's, as
    /// [`collect`] reports it.
    pub(crate) async fn buffered_within(
        self,
        limit: u64,
        watch: &BodyWatch,
    ) -> Result<ForwardBody, Rejection> {
        let mut body = match self {
            ForwardBody::Streamed(body)
                if !body.is_end_stream()
                    && body.size_hint().exact().is_some_and(|n| n <= limit) =>
            {
                body
            }
            other => return Ok(other),
        };
        let mut gathered = Gathered::default();
        while !body.is_end_stream() {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        gathered.push(data);
                    }
                }
                Some(Err(_)) => return Err(watch.failure()),
                None => break,
            }
        }
        Ok(ForwardBody::Gathered(gathered))
    }

    /// The client's body as it streams: counted, and decoded if
    /// `decoding` says so.
    pub(crate) fn streamed(
        body: Incoming,
        watch: Arc<BodyWatch>,
        decoding: Option<Decoding>,
    ) -> Self {
        let limited = Limited::new(body, Arc::clone(&watch));
        match decoding {
            None => ForwardBody::Streamed(limited),
            Some(decoding) => {
                ForwardBody::Decoded(Box::new(decode::Decoded::new(limited, watch, decoding)))
            }
        }
    }
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
            ForwardBody::Decoded(decoded) => Pin::new(decoded.as_mut()).poll_frame(cx),
            ForwardBody::Buffered(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            ForwardBody::Gathered(gathered) => {
                Poll::Ready(gathered.chunks.pop_front().map(|chunk| {
                    gathered.remaining -= chunk.len() as u64;
                    Ok(Frame::data(chunk))
                }))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ForwardBody::Streamed(limited) => limited.is_end_stream(),
            ForwardBody::Decoded(decoded) => decoded.is_end_stream(),
            ForwardBody::Buffered(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            ForwardBody::Gathered(gathered) => gathered.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ForwardBody::Streamed(limited) => limited.size_hint(),
            // The decoded size is unknown until the end: sent chunked.
            ForwardBody::Decoded(_) => SizeHint::default(),
            ForwardBody::Buffered(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ForwardBody::Gathered(gathered) => SizeHint::with_exact(gathered.remaining),
        }
    }
}

/// A request body counted against a limit as it streams.
pub(crate) struct Limited {
    inner: Incoming,
    remaining: u64,
    watch: Arc<BodyWatch>,
    /// Whether the body was seen to end: asked again, an HTTP/2 body
    /// would take its connection's stream lock each time.
    ended: bool,
}

impl Limited {
    /// Wraps a client's body; `watch` holds the limit and reports the
    /// outcome.
    pub(crate) fn new(inner: Incoming, watch: Arc<BodyWatch>) -> Self {
        let ended = inner.is_end_stream();
        if ended {
            watch.mark_finished();
        }
        Self {
            inner,
            remaining: watch.limit,
            watch,
            ended,
        }
    }
}

/// The framing reader's refusal behind a body error, if that is what
/// ended the body (hyper wraps the failed read's `io::Error`).
fn framing_refusal(error: &hyper::Error) -> Option<BodyFramingRefused> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = cause {
        let inner = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref);
        if let Some(refused) = inner.and_then(|e| e.downcast_ref::<BodyFramingRefused>()) {
            return Some(*refused);
        }
        cause = error.source();
    }
    None
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
                        // A body of known length ends with its last byte:
                        // the reader may never ask for the end after it.
                        if this.inner.is_end_stream() {
                            this.ended = true;
                            this.watch.mark_finished();
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    None => {
                        this.watch.exceeded.store(true, Ordering::Release);
                        Poll::Ready(Some(Err(BodyTooLarge(this.watch.limit).into())))
                    }
                }
            }
            Poll::Ready(None) => {
                this.ended = true;
                this.watch.mark_finished();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                if let Some(refused) = framing_refusal(&error) {
                    let _ = this.watch.chunked_framing.set(refused.detail());
                }
                this.watch.malformed.store(true, Ordering::Release);
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
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
            compressed_body: None,
            static_files: None,
            serve: crate::config::Serve::Upstream,
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
        assert!(check(&mut parts(&[("content-length", "10")]), &route(10)).is_ok());
        assert!(matches!(
            check(&mut parts(&[("content-length", "11")]), &route(10)),
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

    #[tokio::test]
    async fn a_gathered_body_is_sent_in_its_pieces_with_the_exact_size_left() {
        let mut gathered = Gathered::default();
        for piece in [&b"ab"[..], b"", b"cde"] {
            gathered.push(Bytes::from_static(piece));
        }
        let mut body = ForwardBody::Gathered(gathered);
        assert_eq!(body.size_hint().exact(), Some(5));
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, Bytes::from_static(b"ab"));
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(!body.is_end_stream());
        let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(second, Bytes::from_static(b"cde"));
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none());
    }

    #[test]
    fn compressed_bodies_are_415_identity_is_fine() {
        assert!(matches!(
            check(&mut parts(&[("content-encoding", "identity")]), &route(10)),
            Ok(None)
        ));
        // Refused as compressed before its length is looked at, as before
        // routes could accept compressed bodies.
        assert!(matches!(
            check(
                &mut parts(&[("content-encoding", "gzip"), ("content-length", "99")]),
                &route(10)
            ),
            Err(Rejection::CompressedBody)
        ));
        for coding in ["gzip", "br", "deflate", "GZIP", ""] {
            assert!(matches!(
                check(&mut parts(&[("content-encoding", coding)]), &route(10)),
                Err(Rejection::CompressedBody)
            ));
        }
    }

    fn gzip_route(limit: u64, cap: u64) -> Route {
        Route {
            compressed_body: Some(crate::config::CompressedBody {
                encodings: vec![Encoding::Gzip],
                max_decoded_bytes: cap,
            }),
            ..route(limit)
        }
    }

    #[test]
    fn one_listed_layer_is_decoded_and_its_framing_headers_dropped() {
        let mut head = parts(&[
            ("content-encoding", "GZip"),
            ("content-length", "10"),
            ("content-type", "application/json"),
        ]);
        let decoding = check(&mut head, &gzip_route(10, 99)).unwrap().unwrap();
        assert_eq!(decoding.encoding, Encoding::Gzip);
        assert_eq!(decoding.max_decoded_bytes, 99);
        assert!(!head.headers.contains_key(CONTENT_ENCODING));
        assert!(!head.headers.contains_key(CONTENT_LENGTH));
        assert_eq!(head.headers["content-type"], "application/json");

        // The compressed bytes on the wire still count against the limit.
        assert!(matches!(
            check(
                &mut parts(&[("content-encoding", "gzip"), ("content-length", "11")]),
                &gzip_route(10, 99)
            ),
            Err(Rejection::BodyTooLarge { limit: 10 })
        ));
        // Identity stays untouched.
        let mut plain = parts(&[("content-length", "3")]);
        assert!(matches!(check(&mut plain, &gzip_route(10, 99)), Ok(None)));
        assert_eq!(plain.headers[CONTENT_LENGTH], "3");
    }

    #[test]
    fn unlisted_encodings_and_stacked_layers_are_415() {
        let cases: [&[(&str, &str)]; 5] = [
            &[("content-encoding", "br")],
            &[("content-encoding", "deflate")],
            &[("content-encoding", "gzip, gzip")],
            &[("content-encoding", "gzip"), ("content-encoding", "gzip")],
            &[("content-encoding", "identity, gzip")],
        ];
        for headers in cases {
            let mut head = parts(headers);
            assert!(
                matches!(
                    check(&mut head, &gzip_route(10, 99)),
                    Err(Rejection::EncodingNotAccepted(_))
                ),
                "{headers:?}"
            );
        }
    }
}
