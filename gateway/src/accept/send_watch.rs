//! The send watch: a response body that makes no progress toward the
//! client for `limits.send_timeout` is abandoned (`docs/security-controls.md`,
//! F-4 and F-5).
//!
//! On HTTP/2, hyper runs each stream (the request's service future, then
//! the piping of its response body) as a future it hands to the
//! connection's executor. [`StreamExecutor`] is that executor: it gives each
//! stream its own [`Progress`], visible to the service through a task-local
//! ([`current`]), and drops the stream when its body has not been polled
//! for `send_timeout` (hyper polls it only when the client's window has
//! room). The stream's timer is started only when a poll leaves a body in
//! flight, so a stream answered at once, or waiting for its upstream,
//! costs no timer (the HTTP/1.1 path has one per connection). Dropping an
//! unfinished stream makes h2 send `RST_STREAM(CANCEL)`; the response body
//! goes with it, so its upstream connection is closed and its slot freed.
//!
//! On HTTP/1.1 the connection runs in the gateway's own task: one
//! [`Progress`] per connection (requests on it come one at a time), fed
//! also by the socket ([`WriteWatch`]: hyper hands a whole answer to its
//! write buffer and then only waits for the socket), and the connection
//! task closes the connection when [`stalled`] resolves.
//!
//! The flag is set before anything is dropped, so the request's audit line
//! (written when its body is dropped) records the stall.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use prometheus_client::metrics::counter::Counter;
use tokio::time::{sleep, sleep_until, Instant};

pub(crate) use crate::body::progress::Progress;

tokio::task_local! {
    /// The send progress of the stream or connection being served.
    static PROGRESS: Arc<Progress>;
}

/// The progress of the stream (HTTP/2) or connection (HTTP/1.1) whose
/// request is being served, if the caller runs inside one.
pub(crate) fn current() -> Option<Arc<Progress>> {
    PROGRESS.try_with(Arc::clone).ok()
}

/// Runs `future` with `progress` as [`current`]. A plain function, not an
/// `async fn`: that would hold `future` twice (`docs/benchmarks.md`,
/// "Smaller futures").
pub(crate) fn scoped<F: Future>(
    progress: Arc<Progress>,
    future: F,
) -> impl Future<Output = F::Output> {
    PROGRESS.scope(progress, future)
}

/// Resolves once a body has been in flight on `progress` with no progress
/// for `timeout`, after marking it stalled. Never resolves while no body is
/// in flight; it looks again every `timeout` meanwhile.
pub(crate) async fn stalled(progress: &Progress, timeout: Duration) {
    loop {
        match progress.deadline(timeout) {
            Some(at) if at <= Instant::now() => {
                progress.set_stalled();
                return;
            }
            Some(at) => sleep_until(at).await,
            None => sleep(timeout).await,
        }
    }
}

/// The executor of an HTTP/2 connection's streams: each stream is spawned
/// with its own [`Progress`] and dropped when it stalls.
#[derive(Clone)]
pub(crate) struct StreamExecutor {
    send_timeout: Duration,
    /// `client_stalls_total{protocol="h2"}`.
    stalls: Counter,
}

impl StreamExecutor {
    pub(crate) fn new(send_timeout: Duration, stalls: Counter) -> Self {
        StreamExecutor {
            send_timeout,
            stalls,
        }
    }
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        let progress = Arc::new(Progress::default());
        let (timeout, stalls) = (self.send_timeout, self.stalls.clone());
        // Boxed once: from here on the stream's task moves a pointer.
        let stream = Box::pin(stream);
        let watched = async move {
            let progress = current().expect("scoped below");
            if until_done_or_stalled(stream, &progress, timeout).await == Ended::Stalled {
                // `stream` was dropped: h2 resets it.
                stalls.inc();
                tracing::debug!(?timeout, "response stalled; resetting the stream");
            }
        };
        // Each poll of the stream reads the clocks once (`clock.rs`).
        tokio::spawn(crate::clock::turns(scoped(progress, watched)));
    }
}

/// How a watched stream ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Done,
    Stalled,
}

/// Runs `stream` until it ends, or drops it once it has had a body in
/// flight on `progress` with no progress for `timeout` (marking it
/// stalled first). The timer is armed lazily: only when a poll of the
/// stream leaves a body in flight. Most streams end within the poll that
/// hands their answer over, or wait only for the upstream, and never
/// start one. A body is armed only inside a poll of `stream` (the service
/// future and the body piping are both part of it), so looking after each
/// poll is enough; a timer that fires looks again and moves to the
/// current deadline.
async fn until_done_or_stalled<F: Future<Output = ()>>(
    mut stream: Pin<Box<F>>,
    progress: &Progress,
    timeout: Duration,
) -> Ended {
    let mut timer = std::pin::pin!(None::<tokio::time::Sleep>);
    std::future::poll_fn(|cx| {
        if stream.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ended::Done);
        }
        loop {
            let Some(at) = progress.deadline(timeout) else {
                // Nothing in flight: an old timer may fire; it looks again.
                return Poll::Pending;
            };
            match timer.as_mut().as_pin_mut() {
                None => timer.set(Some(sleep_until(at))),
                Some(mut sleep) => {
                    if sleep.deadline() > at {
                        sleep.as_mut().reset(at);
                    }
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    if at <= Instant::now() {
                        progress.set_stalled();
                        return Poll::Ready(Ended::Stalled);
                    }
                    // Fired early (the body moved on meanwhile): wait for
                    // the current deadline.
                    sleep.as_mut().reset(at);
                }
            }
        }
    })
    .await
}

/// A socket that reports to a [`Progress`] whether it takes the bytes
/// written to it.
pub(crate) struct WriteWatch<S> {
    inner: S,
    progress: Arc<Progress>,
}

impl<S> WriteWatch<S> {
    pub(crate) fn new(inner: S, progress: Arc<Progress>) -> Self {
        WriteWatch { inner, progress }
    }

    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Notes how a write went.
    fn report<T>(&self, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match &polled {
            Poll::Pending => self.progress.write_blocked(),
            Poll::Ready(_) => self.progress.written(),
        }
        polled
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteWatch<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteWatch<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.report(polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.report(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Held writes (`held.rs`) reach the socket here.
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.report(polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::progress::Marked;

    #[tokio::test(start_paused = true)]
    async fn a_body_not_polled_for_the_timeout_is_stalled() {
        let progress = Arc::new(Progress::default());
        let timeout = Duration::from_secs(30);
        let watch = stalled(&progress, timeout);
        tokio::pin!(watch);
        // Nothing in flight: no stall however long it waits.
        assert!(tokio::time::timeout(timeout * 3, watch.as_mut())
            .await
            .is_err());
        let started = Instant::now();
        let body = Marked::new(crate::body::empty(), Arc::clone(&progress));
        watch.await;
        assert!(progress.is_stalled());
        assert!(started.elapsed() >= timeout);
        assert!(started.elapsed() <= timeout * 2);
        drop(body);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_whose_body_is_not_taken_is_dropped_after_the_timeout() {
        let progress = Arc::new(Progress::default());
        let timeout = Duration::from_secs(30);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let held = Arc::clone(&progress);
        // Hands its head over (arms), then waits for a client that never
        // takes the body.
        let stream = async move {
            let _body = Marked::new(crate::body::empty(), held);
            let _ = rx.await;
        };
        let started = Instant::now();
        let ended = until_done_or_stalled(Box::pin(stream), &progress, timeout).await;
        assert_eq!(ended, Ended::Stalled);
        assert!(progress.is_stalled());
        assert!(started.elapsed() >= timeout);
        assert!(started.elapsed() <= timeout * 2);
        assert!(tx.is_closed(), "the stream was dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_waiting_with_no_body_in_flight_is_never_dropped() {
        let progress = Arc::new(Progress::default());
        let timeout = Duration::from_secs(30);
        let held = Arc::clone(&progress);
        let stream = async move {
            // Waits for its upstream (nothing in flight), then hands its
            // head over and is taken a frame at a time, never for
            // `timeout` without progress (what `Marked` reports).
            tokio::time::sleep(timeout * 5).await;
            held.arm();
            for _ in 0..5 {
                tokio::time::sleep(timeout / 2).await;
                held.arm();
            }
            held.disarm();
        };
        let ended = until_done_or_stalled(Box::pin(stream), &progress, timeout).await;
        assert_eq!(ended, Ended::Done);
        assert!(!progress.is_stalled());
    }
}
