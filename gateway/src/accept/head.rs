//! Connections that end outside any request: hyper gives up on the
//! HTTP/1.1 request head (it timed out, was too large, or did not parse)
//! and closes the connection, or answers 400/431 itself, before
//! `policy::handle` runs; or h2 ends an HTTP/2 connection over a protocol
//! violation. [`classify`] and [`classify_h2`] turn hyper's error into a
//! [`HeadError`] for the audit line and `connection_errors`.
//!
//! hyper's header-read timer also runs while a kept-alive connection waits
//! for its next request, so a timeout alone is not a slow client: only a
//! timeout after the client sent part of a head counts. [`HeadWatch`]
//! tells the two apart by noting whether anything was read since the
//! gateway last wrote (a response): a connection opened and left idle, or
//! idle after its last answer, ends without a line. The same wrapper puts
//! the framing reader (`framing.rs`) between the client and hyper: hyper
//! reads only what the reader shows it, and a read fails once the reader
//! has refused a chunked body.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::framing::Framing;
pub(crate) use crate::conn::HeadError;

/// What hyper's error on an HTTP/1.1 connection means for the audit log;
/// `None` for everything that is not about a request head (the client went
/// away, an I/O error, a body error of a request that has its own line).
/// `sent_head_bytes`: the client sent something since the gateway last
/// wrote ([`HeadWatch::sent_since_answer`]).
pub(crate) fn classify(error: &hyper::Error, sent_head_bytes: bool) -> Option<HeadError> {
    if error.is_parse_too_large() {
        Some(HeadError::HeadTooLarge)
    } else if error.is_parse() {
        Some(HeadError::MalformedHead)
    } else if error.is_timeout() && sent_head_bytes {
        Some(HeadError::HeaderTimeout)
    } else {
        None
    }
}

/// What hyper's error on an HTTP/2 connection means for the audit log:
/// `None` unless h2 itself ended the connection over the client's
/// behaviour (a GOAWAY it sent with an error code). A client's own GOAWAY,
/// a reset stream, an I/O error or a plain close is not a violation.
pub(crate) fn classify_h2(error: &hyper::Error) -> Option<HeadError> {
    let h2 = std::error::Error::source(error)?.downcast_ref::<h2::Error>()?;
    let violation = h2.is_go_away()
        && h2.is_library()
        && h2
            .reason()
            .is_some_and(|reason| reason != h2::Reason::NO_ERROR);
    violation.then_some(HeadError::Http2ProtocolViolation)
}

/// A connection's byte stream that notes whether the client sent anything
/// since the gateway last wrote, and gives hyper what a [`Framing`] shows
/// of what the client sent.
pub(crate) struct HeadWatch<S> {
    inner: S,
    sent: Arc<AtomicBool>,
    framing: Framing,
    /// Bytes the reader showed that hyper has not taken yet.
    owed: Vec<u8>,
    owed_from: usize,
}

impl<S> HeadWatch<S> {
    /// Wraps `inner`; the flag is readable through the returned handle after
    /// the stream has been handed to hyper.
    pub(crate) fn new(inner: S, framing: Framing) -> (Self, Arc<AtomicBool>) {
        let sent = Arc::new(AtomicBool::new(false));
        let watch = HeadWatch {
            inner,
            sent: Arc::clone(&sent),
            framing,
            owed: Vec::new(),
            owed_from: 0,
        };
        (watch, sent)
    }
}

/// Whether the client sent bytes after the gateway's last write (or, with
/// no write yet, at all).
pub(crate) fn sent_since_answer(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Relaxed)
}

impl<S> HeadWatch<S> {
    /// Hands hyper as much of the owed bytes as `buf` takes.
    fn pay(&mut self, buf: &mut ReadBuf<'_>) {
        let owed = &self.owed[self.owed_from..];
        let n = owed.len().min(buf.remaining());
        buf.put_slice(&owed[..n]);
        self.owed_from += n;
        if self.owed_from == self.owed.len() {
            self.owed.clear();
            self.owed_from = 0;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadWatch<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.owed_from < this.owed.len() {
                this.pay(buf);
                return Poll::Ready(Ok(()));
            }
            if let Some(refused) = this.framing.body_refusal() {
                let error = std::io::Error::new(std::io::ErrorKind::InvalidData, refused);
                return Poll::Ready(Err(error));
            }
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let read = buf.filled().len() - before;
            if read == 0 {
                if this.framing.is_discarding() {
                    // hyper is answering the refused head and then closes;
                    // an end of stream now would make it drop the answer.
                    return Poll::Pending;
                }
                return Poll::Ready(Ok(()));
            }
            this.sent.store(true, Ordering::Relaxed);
            let shown = this.framing.read(&buf.filled()[before..]);
            if shown.is_unchanged(read) {
                return Poll::Ready(Ok(()));
            }
            if shown.released.is_empty() && shown.injected.is_empty() {
                buf.set_filled(before + shown.passed);
            } else {
                let mut owed = shown.released;
                owed.extend_from_slice(&buf.filled()[before..before + shown.passed]);
                owed.extend_from_slice(&shown.injected);
                buf.set_filled(before);
                this.owed = owed;
                this.owed_from = 0;
            }
            if buf.filled().len() > before {
                return Poll::Ready(Ok(()));
            }
            if this.framing.is_discarding() && this.owed.is_empty() {
                // Dropped bytes: yield, so that a client sending fast
                // cannot keep this task reading.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // Only a held-back line (read on), owed bytes or a refused
            // body (answered above).
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadWatch<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.sent.store(false, Ordering::Relaxed);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.sent.store(false, Ordering::Relaxed);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accept::framing::{BodyFramingRefused, Bounds, Verdicts};
    use std::future::{poll_fn, Future};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn test_bounds() -> Bounds {
        Bounds {
            head_bytes: 64,
            fields: 4,
            trailer_bytes: 64,
        }
    }

    fn watched(
        server: tokio::io::DuplexStream,
    ) -> (HeadWatch<tokio::io::DuplexStream>, Arc<Verdicts>) {
        let verdicts = Arc::new(Verdicts::default());
        let framing = Framing::new(test_bounds(), Arc::clone(&verdicts));
        (HeadWatch::new(server, framing).0, verdicts)
    }

    /// Whether a read of `watch` is ready now (without waiting).
    async fn read_now(
        watch: &mut HeadWatch<tokio::io::DuplexStream>,
    ) -> Option<std::io::Result<Vec<u8>>> {
        let mut buf = [0u8; 256];
        let read = watch.read(&mut buf);
        tokio::pin!(read);
        let polled = poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
        match polled {
            Poll::Ready(Ok(n)) => Some(Ok(buf[..n].to_vec())),
            Poll::Ready(Err(error)) => Some(Err(error)),
            Poll::Pending => None,
        }
    }

    #[tokio::test]
    async fn hyper_sees_head_lines_only_once_they_are_complete() {
        let (mut client, server) = tokio::io::duplex(1024);
        let (mut watch, _) = watched(server);
        client.write_all(b"GET / HT").await.unwrap();
        assert!(
            read_now(&mut watch).await.is_none(),
            "a partial line is held"
        );
        client.write_all(b"TP/1.1\r\nHost: x").await.unwrap();
        let shown = read_now(&mut watch).await.unwrap().unwrap();
        assert_eq!(shown, b"GET / HTTP/1.1\r\n");
        client.write_all(b"\r\n\r\n").await.unwrap();
        let shown = read_now(&mut watch).await.unwrap().unwrap();
        assert_eq!(shown, b"Host: x\r\n\r\n");
    }

    #[tokio::test]
    async fn a_head_over_its_bound_is_ended_short_and_the_rest_dropped() {
        let (mut client, server) = tokio::io::duplex(1024);
        let (mut watch, verdicts) = watched(server);
        let long = format!(
            "GET /x HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
            "a".repeat(64)
        );
        client.write_all(long.as_bytes()).await.unwrap();
        let shown = read_now(&mut watch).await.unwrap().unwrap();
        assert_eq!(shown, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            verdicts.next_request(),
            (1, Some(crate::accept::framing::HeadRefusal::TooLarge))
        );
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(read_now(&mut watch).await.is_none(), "dropped, never shown");
        drop(client);
        assert!(
            read_now(&mut watch).await.is_none(),
            "no end of stream either"
        );
    }

    #[tokio::test]
    async fn a_refused_chunk_line_is_cut_before_its_bad_byte_then_reads_fail() {
        let (mut client, server) = tokio::io::duplex(1024);
        let (mut watch, verdicts) = watched(server);
        let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        client.write_all(head).await.unwrap();
        client
            .write_all(b"2;a\0b\r\nab\r\n0\r\n\r\n")
            .await
            .unwrap();
        let mut shown = Vec::new();
        let error = loop {
            match read_now(&mut watch).await.unwrap() {
                Ok(bytes) => shown.extend(bytes),
                Err(error) => break error,
            }
        };
        assert_eq!(shown, [&head[..], b"2;a"].concat());
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        let refused = error
            .get_ref()
            .unwrap()
            .downcast_ref::<BodyFramingRefused>();
        assert_eq!(
            refused.map(|r| r.detail()),
            Some("a control byte in the chunked framing")
        );
        assert!(verdicts.body_refused());
    }

    #[tokio::test]
    async fn reads_set_the_flag_and_writes_clear_it() {
        let (client, server) = tokio::io::duplex(64);
        let framing = Framing::new(test_bounds(), Arc::default());
        let (mut watched, sent) = HeadWatch::new(server, framing);
        let mut client = client;
        assert!(!sent_since_answer(&sent));
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = watched.read(&mut buf).await.unwrap();
        assert!(n > 0);
        assert!(sent_since_answer(&sent));
        watched.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        assert!(!sent_since_answer(&sent));
    }

    #[test]
    fn labels_are_the_reasons_without_their_prefix() {
        for error in HeadError::ALL {
            assert_eq!(format!("http.{}", error.label()), error.reason());
        }
    }
}
