//! Lingering close, for both sides' HTTP/1.1 connections.
//!
//! When a server answers a request without reading all of its body, the
//! client is usually still sending it. Closing the socket with unread bytes
//! in the kernel's receive buffer makes the kernel send a TCP reset, and
//! the reset makes the client's kernel throw away the answer it has not
//! read yet: the client sees "connection reset" or "broken pipe" instead of
//! the refusal.
//!
//! So such a connection is closed gracefully: once the answer (sent with
//! `Connection: close`) is written and hyper shuts the stream down,
//! [`Linger`] shuts the write side down (for TLS: `close_notify`, then
//! FIN), then reads and discards whatever the client still sends, below any
//! encryption, until the client closes its side, [`Bounds::max_bytes`] have
//! been discarded or [`Bounds::timeout`] has passed, whichever comes first.
//! Only then is the socket closed. A connection whose [`LingerSwitch`] was
//! not turned on shuts down at once, as without the wrapper.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Bytes read (and discarded) per read while lingering.
const DISCARD_CHUNK: usize = 8 * 1024;

/// How long, and how much, a closing connection discards at most. Either
/// at zero turns lingering off.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The longest wait for the client to close its side.
    pub timeout: Duration,
    /// The most bytes read and thrown away.
    pub max_bytes: usize,
}

/// Asks a connection to linger when it closes; shared between the
/// connection's service and its [`Linger`] stream.
#[derive(Debug, Default)]
pub struct LingerSwitch(AtomicBool);

impl LingerSwitch {
    /// The next close of the connection lingers.
    pub fn turn_on(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Where the close is.
enum Close {
    /// Not closing (or closing without lingering).
    Open,
    /// The write side is shut; discarding until EOF or a bound.
    Discarding {
        left: usize,
        deadline: Pin<Box<Sleep>>,
    },
    /// Done: the socket may close.
    Done,
}

/// The stream a lingering connection discards from: the raw socket under
/// any encryption, so nothing is decrypted only to be thrown away.
pub type RawReader<S> = for<'a> fn(&'a mut S) -> &'a mut (dyn AsyncRead + Unpin + 'a);

/// A connection that lingers on close when its switch is on.
pub struct Linger<S> {
    inner: S,
    raw: RawReader<S>,
    switch: Arc<LingerSwitch>,
    bounds: Bounds,
    close: Close,
}

impl<S: AsyncRead + Unpin> Linger<S> {
    /// Wraps `inner`, discarding from `inner` itself while lingering.
    pub fn new(inner: S, switch: Arc<LingerSwitch>, bounds: Bounds) -> Self {
        Self::with_raw(inner, |stream| stream, switch, bounds)
    }
}

impl<S> Linger<S> {
    /// Wraps `inner`, discarding from what `raw` reaches under it while
    /// lingering (e.g. the TCP stream under TLS).
    pub fn with_raw(
        inner: S,
        raw: RawReader<S>,
        switch: Arc<LingerSwitch>,
        bounds: Bounds,
    ) -> Self {
        Linger {
            inner,
            raw,
            switch,
            bounds,
            close: Close::Open,
        }
    }

    /// Reads and drops what the client sends until EOF, an error or a
    /// bound.
    fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Close::Discarding { left, deadline } = &mut self.close else {
            return Poll::Ready(());
        };
        if deadline.as_mut().poll(cx).is_ready() {
            self.close = Close::Done;
            return Poll::Ready(());
        }
        let raw = (self.raw)(&mut self.inner);
        let mut scratch = [0u8; DISCARD_CHUNK];
        loop {
            let mut buf = ReadBuf::new(&mut scratch[..DISCARD_CHUNK.min(*left)]);
            match Pin::new(&mut *raw).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    *left -= buf.filled().len();
                    if *left == 0 {
                        break;
                    }
                }
                // EOF (the client closed its side) or an error: done.
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

impl<S: AsyncWrite + Unpin> AsyncWrite for Linger<S> {
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
            let lingers = this.switch.is_on()
                && !this.bounds.timeout.is_zero()
                && this.bounds.max_bytes > 0
                && shut.is_ok();
            if !lingers {
                this.close = Close::Done;
                return Poll::Ready(shut);
            }
            this.close = Close::Discarding {
                left: this.bounds.max_bytes,
                deadline: Box::pin(tokio::time::sleep(this.bounds.timeout)),
            };
        }
        ready!(this.poll_discard(cx));
        Poll::Ready(Ok(()))
    }
}
