//! Lingering close for HTTP/1.1: when the gateway answers a request
//! without reading all of its body, the client is usually still sending
//! it. Closing the socket with unread bytes in the kernel's receive buffer
//! makes the kernel send a TCP reset, and a reset makes the client's kernel
//! throw away the answer it has not read yet: the client sees "connection
//! reset" instead of the refusal.
//!
//! So such a connection, once hyper has written the answer (with
//! `Connection: close`) and shuts the stream down, is closed gracefully:
//! [`Linger`] sends TLS `close_notify` and a TCP FIN, then reads and
//! discards whatever the client still sends, raw and without decrypting it,
//! until the client closes its side, `limits.refusal_drain_bytes` have been
//! discarded or `limits.refusal_drain_timeout` has passed, whichever comes
//! first. Only then is the socket closed. A connection not asked to linger
//! shuts down as before.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;

use super::send_watch::WriteWatch;

use super::DrainBounds;

/// Bytes read (and discarded) per read while lingering.
const DISCARD_CHUNK: usize = 8 * 1024;

/// Asks a connection to linger when it closes; shared between the
/// connection's service and its [`Linger`] stream.
#[derive(Debug, Default)]
pub(crate) struct LingerSwitch(AtomicBool);

impl LingerSwitch {
    /// The next close of the connection lingers.
    pub(crate) fn turn_on(&self) {
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
    /// `close_notify` and FIN sent; discarding until EOF or a bound.
    Discarding {
        left: usize,
        deadline: Pin<Box<Sleep>>,
    },
    /// Done: nothing more is read.
    Done,
}

/// A TLS connection that lingers on close when its switch is on.
pub(crate) struct Linger {
    inner: TlsStream<WriteWatch<TcpStream>>,
    switch: Arc<LingerSwitch>,
    bounds: DrainBounds,
    close: Close,
}

impl Linger {
    /// Wraps `inner`; `switch` asks it to linger when it closes.
    pub(crate) fn new(
        inner: TlsStream<WriteWatch<TcpStream>>,
        switch: Arc<LingerSwitch>,
        bounds: DrainBounds,
    ) -> Self {
        Linger {
            inner,
            switch,
            bounds,
            close: Close::Open,
        }
    }

    /// Discards what the client sends until EOF, an error or a bound.
    fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Close::Discarding { left, deadline } = &mut self.close else {
            return Poll::Ready(());
        };
        if deadline.as_mut().poll(cx).is_ready() {
            self.close = Close::Done;
            return Poll::Ready(());
        }
        // The TLS session is over: the raw bytes are read and dropped.
        let tcp = self.inner.get_mut().0;
        let mut scratch = [0u8; DISCARD_CHUNK];
        loop {
            let mut buf = ReadBuf::new(&mut scratch[..DISCARD_CHUNK.min(*left)]);
            match Pin::new(&mut *tcp).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    *left -= buf.filled().len();
                    if *left == 0 {
                        break;
                    }
                }
                // EOF (the client closed its side) or an error.
                Poll::Ready(_) => break,
                Poll::Pending => return Poll::Pending,
            }
        }
        self.close = Close::Done;
        Poll::Ready(())
    }
}

impl AsyncRead for Linger {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Linger {
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
            // `close_notify`, then FIN on the TCP write side.
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
