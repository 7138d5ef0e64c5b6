//! Answers a client can read when the worker stops reading a body early
//! (an upload past its limits, a body refused from its `Content-Length`).
//!
//! Closing a socket with unread bytes in it makes the kernel fail the
//! client's next write (a broken pipe or a reset), and a client that
//! writes its whole request before it reads never sees the answer. So such
//! an answer carries `Connection: close`, and the connection closes
//! gracefully: the shared crate's `linger::Linger` shuts down the write side, then reads and
//! discards what the client still sends until it closes its side,
//! [`LINGER_MAX_BYTES`] have been discarded or [`LINGER_TIMEOUT`] has
//! passed, whichever comes first. [`watch`] tells whether a request's body
//! was read to its end.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper::body::{Body, Frame, SizeHint};
use tradehabit_shared::linger::Bounds;

/// How long a closing connection discards what the client still sends.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(5);
/// How much a closing connection discards at most: the largest upload the
/// worker takes (2 MiB and 1 MiB of multipart slack) with room to spare.
pub const LINGER_MAX_BYTES: usize = 4 * 1024 * 1024;

/// The bounds of the worker's lingering close.
pub(crate) const BOUNDS: Bounds = Bounds {
    timeout: LINGER_TIMEOUT,
    max_bytes: LINGER_MAX_BYTES,
};

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
