//! Answers a client can read when the worker stops reading a body early
//! (an upload past its limits, a body refused from its `Content-Length`).
//!
//! Closing a socket with unread bytes in it makes the kernel fail the
//! client's next write (a broken pipe or a reset), and a client that
//! writes its whole request before it reads never sees the answer. So such
//! an answer carries `Connection: close`, and the connection closes
//! gracefully: [`Linger`] shuts down the write side, then reads and
//! discards what the client still sends until it closes its side,
//! [`LINGER_MAX_BYTES`] have been discarded or [`LINGER_TIMEOUT`] has
//! passed, whichever comes first. [`watch`] tells whether a request's body
//! was read to its end.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long a closing connection discards what the client still sends.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(5);
/// How much a closing connection discards at most: the largest upload the
/// worker takes (2 MiB and 1 MiB of multipart slack) with room to spare.
pub const LINGER_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Bytes read (and discarded) per read while lingering.
const DISCARD_CHUNK: usize = 8 * 1024;

/// Asks a connection to linger when it closes.
#[derive(Debug, Default)]
pub(crate) struct LingerSwitch(AtomicBool);

impl LingerSwitch {
    /// The next close of the connection lingers.
    pub(crate) fn turn_on(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

enum Close {
    Open,
    Discarding {
        left: usize,
        deadline: Pin<Box<Sleep>>,
    },
    Done,
}

/// A connection that lingers on close when its switch is on.
pub(crate) struct Linger<S> {
    inner: S,
    switch: Arc<LingerSwitch>,
    close: Close,
}

impl<S> Linger<S> {
    pub(crate) fn new(inner: S, switch: Arc<LingerSwitch>) -> Self {
        Linger {
            inner,
            switch,
            close: Close::Open,
        }
    }
}

impl<S: AsyncRead + Unpin> Linger<S> {
    fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Close::Discarding { left, deadline } = &mut self.close else {
            return Poll::Ready(());
        };
        if deadline.as_mut().poll(cx).is_ready() {
            self.close = Close::Done;
            return Poll::Ready(());
        }
        let mut scratch = [0u8; DISCARD_CHUNK];
        loop {
            let mut buf = ReadBuf::new(&mut scratch[..DISCARD_CHUNK.min(*left)]);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    *left -= buf.filled().len();
                    if *left == 0 {
                        break;
                    }
                }
                Poll::Ready(_) => break,
                Poll::Pending => return Poll::Pending,
            }
        }
        self.close = Close::Done;
        Poll::Ready(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Linger<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Linger<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if matches!(this.close, Close::Open) {
            let shut = ready!(Pin::new(&mut this.inner).poll_shutdown(cx));
            if !this.switch.0.load(Ordering::Relaxed) || shut.is_err() {
                this.close = Close::Done;
                return Poll::Ready(shut);
            }
            this.close = Close::Discarding {
                left: LINGER_MAX_BYTES,
                deadline: Box::pin(tokio::time::sleep(LINGER_TIMEOUT)),
            };
        }
        ready!(this.poll_discard(cx));
        Poll::Ready(Ok(()))
    }
}

/// Whether a request's body has been read to its end.
#[derive(Debug, Clone)]
pub(crate) struct BodyRead(Arc<AtomicBool>);

impl BodyRead {
    pub(crate) fn is_finished(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A request body that notes when it has been read to its end.
pub(crate) struct Watched<B> {
    inner: B,
    read: BodyRead,
}

/// `request` with its body watched.
pub(crate) fn watch<B: Body>(request: Request<B>) -> (Request<Watched<B>>, BodyRead) {
    let read = BodyRead(Arc::new(AtomicBool::new(request.body().is_end_stream())));
    let handle = read.clone();
    let request = request.map(|inner| Watched { inner, read });
    (request, handle)
}

impl<B: Body<Data = Bytes> + Unpin> Body for Watched<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if polled.is_none() || self.inner.is_end_stream() {
            self.read.0.store(true, Ordering::Release);
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
