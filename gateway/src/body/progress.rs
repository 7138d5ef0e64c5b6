//! Send progress: whether the response body in flight on an HTTP/2 stream
//! or an HTTP/1.1 connection is still being taken by the client.
//!
//! hyper polls a response body only when it can pass more bytes on: on
//! HTTP/2 when the stream has flow-control capacity, on HTTP/1.1 when its
//! write buffer has room. So each poll is progress toward the client, and
//! a body that is not polled for `limits.send_timeout` belongs to a client
//! that stopped reading (a zero HTTP/2 window, a full TCP window). A body
//! waiting for the upstream's next bytes is not the client's fault and is
//! not counted. On HTTP/1.1 the socket is watched too: bytes waiting for a
//! client that takes none (a full TCP window) count even when the body has
//! already been handed over whole. The connection layer
//! (`accept/send_watch.rs`) watches a [`Progress`] and abandons the stream
//! or connection when it stalls; [`Marked`] is the body wrapper that
//! reports the polls (`docs/security-controls.md`, F-4, F-5).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Instant;

/// The send progress of one stream (HTTP/2) or connection (HTTP/1.1).
#[derive(Debug)]
pub(crate) struct Progress {
    base: Instant,
    /// Microseconds after `base` of the last progress, plus one; 0 when no
    /// body is in flight.
    last: AtomicU64,
    /// Microseconds after `base`, plus one, since when the socket has
    /// taken no bytes while some were waiting; 0 when it is not blocked.
    blocked: AtomicU64,
    /// [`NOT_STALLED`], [`STALLED_IN_BODY`] or [`STALLED_AFTER_BODY`].
    stalled: AtomicU8,
}

const NOT_STALLED: u8 = 0;
/// Abandoned with a response body in flight.
const STALLED_IN_BODY: u8 = 1;
/// Abandoned with the answers handed over whole, but not taken from the
/// socket.
const STALLED_AFTER_BODY: u8 = 2;

impl Default for Progress {
    fn default() -> Self {
        Progress {
            base: crate::clock::now(),
            last: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            stalled: AtomicU8::new(NOT_STALLED),
        }
    }
}

impl Progress {
    /// A response body is on its way from now on.
    pub(crate) fn arm(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
    }

    /// No body is in flight (it ended or was dropped).
    pub(crate) fn disarm(&self) {
        self.last.store(0, Ordering::Relaxed);
    }

    /// The socket refused bytes; the first refusal since it last took
    /// some starts the clock.
    pub(crate) fn write_blocked(&self) {
        let _ = self
            .blocked
            .compare_exchange(0, self.now(), Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The socket took bytes (or has none waiting).
    pub(crate) fn written(&self) {
        self.blocked.store(0, Ordering::Relaxed);
    }

    /// When the stream or connection counts as stalled: the body in flight
    /// not taken, or the socket blocked, for `timeout`; `None` when neither.
    pub(crate) fn deadline(&self, timeout: Duration) -> Option<Instant> {
        let at = |since: u64| self.base + Duration::from_micros(since - 1) + timeout;
        let body = Some(self.last.load(Ordering::Relaxed)).filter(|&t| t > 0);
        let socket = Some(self.blocked.load(Ordering::Relaxed)).filter(|&t| t > 0);
        match (body.map(at), socket.map(at)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The stream or connection is abandoned because the client stopped
    /// taking what it was sent.
    pub(crate) fn set_stalled(&self) {
        let how = if self.last.load(Ordering::Relaxed) > 0 {
            STALLED_IN_BODY
        } else {
            STALLED_AFTER_BODY
        };
        self.stalled.store(how, Ordering::Release);
    }

    /// Whether it was abandoned over a stall.
    pub(crate) fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::Acquire) != NOT_STALLED
    }

    /// Whether it was abandoned over a stall with no body in flight (so no
    /// request's audit line records it).
    pub(crate) fn is_stalled_after_body(&self) -> bool {
        self.stalled.load(Ordering::Acquire) == STALLED_AFTER_BODY
    }

    fn now(&self) -> u64 {
        let micros = crate::clock::elapsed(self.base).as_micros();
        u64::try_from(micros).unwrap_or(u64::MAX - 1) + 1
    }
}

/// A response body that reports to its [`Progress`]: armed from the head
/// on and after each frame it hands over (the next poll depends on the
/// client), disarmed while it waits for the upstream and when it ends or is
/// dropped.
pub(crate) struct Marked<B> {
    inner: B,
    progress: Arc<Progress>,
}

impl<B> Marked<B> {
    /// Arms `progress` (the head is on its way) and wraps `inner`.
    pub(crate) fn new(inner: B, progress: Arc<Progress>) -> Self {
        progress.arm();
        Marked { inner, progress }
    }
}

impl<B: HttpBody + Unpin> HttpBody for Marked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => self.progress.arm(),
            Poll::Pending | Poll::Ready(None | Some(Err(_))) => self.progress.disarm(),
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Marked<B> {
    fn drop(&mut self) {
        self.progress.disarm();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn a_polled_body_moves_the_deadline_and_an_ended_one_clears_it() {
        let progress = Arc::new(Progress::default());
        let timeout = Duration::from_secs(30);
        assert_eq!(progress.deadline(timeout), None, "nothing in flight");
        let mut body = Marked::new(crate::body::full("abc"), Arc::clone(&progress));
        let armed = progress.deadline(timeout).unwrap();
        assert_eq!(armed, Instant::now() + timeout);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(progress.deadline(timeout), Some(armed), "not polled yet");
        let _ = body.frame().await;
        assert_eq!(
            progress.deadline(timeout),
            Some(Instant::now() + timeout),
            "a poll is progress"
        );
        drop(body);
        assert_eq!(progress.deadline(timeout), None);
        assert!(!progress.is_stalled());
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocked_socket_counts_from_its_first_refusal_until_it_takes_bytes() {
        let progress = Progress::default();
        let timeout = Duration::from_secs(30);
        progress.write_blocked();
        let first = Instant::now() + timeout;
        tokio::time::advance(Duration::from_secs(10)).await;
        progress.write_blocked();
        assert_eq!(progress.deadline(timeout), Some(first));
        progress.written();
        assert_eq!(progress.deadline(timeout), None);
    }
}
