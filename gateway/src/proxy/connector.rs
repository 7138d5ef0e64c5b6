//! Opening upstream connections: a Unix socket or a TCP address (with
//! `TCP_NODELAY`), within `upstream.connect_timeout`. The forwarding pool
//! calls [`Connector::connect`]; the admin probe's client uses it as a
//! `tower` service and ignores the URI it is given.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::config::UpstreamAddress;

/// Connects to the configured upstream; the pool keys connections by the
/// URI, which is always the same.
#[derive(Clone)]
pub(crate) struct Connector {
    address: Arc<UpstreamAddress>,
    timeout: Duration,
}

impl Connector {
    pub(crate) fn new(address: UpstreamAddress, timeout: Duration) -> Self {
        Self {
            address: Arc::new(address),
            timeout,
        }
    }

    /// Opens a connection; a timeout is an `io::ErrorKind::TimedOut` error.
    pub(crate) async fn connect(&self) -> io::Result<TokioIo<Stream>> {
        connect(Arc::clone(&self.address), self.timeout).await
    }
}

/// An open upstream connection.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Reads what is there without waiting (`io::ErrorKind::WouldBlock`
    /// when nothing is).
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_read(buf),
            Stream::Unix(s) => s.try_read(buf),
        }
    }
}

async fn connect(address: Arc<UpstreamAddress>, timeout: Duration) -> io::Result<TokioIo<Stream>> {
    let connecting = async {
        match &*address {
            UpstreamAddress::Unix(path) => UnixStream::connect(path).await.map(Stream::Unix),
            UpstreamAddress::Tcp { host, port } => {
                let stream = TcpStream::connect((host.as_str(), *port)).await?;
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }
        }
    };
    match tokio::time::timeout(timeout, connecting).await {
        Ok(stream) => stream.map(TokioIo::new),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "upstream connect timed out",
        )),
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Stream>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        Box::pin(connect(Arc::clone(&self.address), self.timeout))
    }
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Whether a Unix socket accepts connections now (the spawned upstream's
/// readiness probe).
pub(crate) async fn is_accepting(path: &PathBuf) -> bool {
    UnixStream::connect(path).await.is_ok()
}
