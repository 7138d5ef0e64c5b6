//! HTTP/2 streams run inside their connection's task.
//!
//! hyper hands each HTTP/2 stream (the request's service future, then the
//! piping of its answer's body) to the connection's executor. Spawning
//! each as a task of its own cost a task's allocation, scheduling and
//! harness for every request, and every answer crossed from the stream's
//! task to the connection's to be written: two tasks woken per answer
//! (`docs/benchmarks.md`, "HTTP/2 streams in their connection's task").
//!
//! Here the executor ([`StreamExecutor`]) only drops the stream, watched
//! for stalls (`accept/send_watch.rs`), into an inbox, and [`Served`]
//! polls hyper's connection and its streams together. The two wake each
//! other within one poll all the time (an answer wakes the connection to
//! write it, a frame read wakes its stream); with the wakers of
//! `quiet.rs`, such a wake only marks the side to poll again before the
//! poll returns. Only the streams that were woken are polled
//! (`FuturesUnordered`).
//!
//! A stream keeps what a task of its own gave it: a panic in it drops that
//! stream alone (h2 resets it) and is logged; streams still running when
//! the connection's future ends or is dropped are handed to a task of
//! their own, so each finishes (against a connection that is gone) and
//! writes its audit line as before.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use prometheus_client::metrics::counter::Counter;

use super::send_watch::{Ended, Watched};
use super::Graceful;
use crate::quiet::{Quiet, Side};

/// Rounds of one poll in which the connection and its streams may keep
/// waking each other; then the task yields and takes the next turn.
const MAX_ROUNDS: usize = 8;

/// The executor of one HTTP/2 connection's streams: each goes to the
/// connection's [`Served`].
#[derive(Clone)]
pub(crate) struct StreamExecutor {
    inbox: Arc<Inbox>,
    send_timeout: Duration,
}

/// Streams handed over and not yet taken by [`Served`].
struct Inbox {
    streams: Mutex<Vec<Watched>>,
    /// Whether `streams` may hold any: read without the lock.
    filled: AtomicBool,
    /// The streams' side of [`Served`]'s wakers: marks them to be polled
    /// (hyper hands streams over during the connection's poll), or wakes
    /// the task if that ever happens outside it.
    wake: std::task::Waker,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, Vec<Watched>> {
        self.streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Moves the streams handed over into `into`.
    fn take(&self, into: &mut FuturesUnordered<Watched>) {
        if self.filled.load(Ordering::Acquire) {
            self.filled.store(false, Ordering::Release);
            for stream in self.lock().drain(..) {
                into.push(stream);
            }
        }
    }
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        // Boxed once: from here on the stream moves as a pointer.
        let stream = Watched::new(Box::pin(stream), self.send_timeout);
        self.inbox.lock().push(stream);
        self.inbox.filled.store(true, Ordering::Release);
        self.inbox.wake.wake_by_ref();
    }
}

/// The streams of one HTTP/2 connection, before the connection is built:
/// its executor comes from here, then [`Streams::serve`] drives it.
pub(crate) struct Streams {
    inbox: Arc<Inbox>,
    quiet: Quiet,
    /// `client_stalls_total{protocol="h2"}`.
    stalls: Counter,
}

impl Streams {
    pub(crate) fn new(send_timeout: Duration, stalls: Counter) -> (StreamExecutor, Streams) {
        let quiet = Quiet::new();
        let inbox = Arc::new(Inbox {
            streams: Mutex::new(Vec::new()),
            filled: AtomicBool::new(false),
            wake: quiet.waker(Side::Partner).clone(),
        });
        let executor = StreamExecutor {
            inbox: Arc::clone(&inbox),
            send_timeout,
        };
        (
            executor,
            Streams {
                inbox,
                quiet,
                stalls,
            },
        )
    }

    /// `connection` (built with this executor), driven with its streams.
    pub(crate) fn serve<C>(self, connection: C) -> Served<C> {
        Served {
            connection,
            running: FuturesUnordered::new(),
            streams: self,
        }
    }
}

pin_project_lite::pin_project! {
    /// An HTTP/2 connection and its streams, polled in one task.
    pub(crate) struct Served<C> {
        #[pin]
        connection: C,
        running: FuturesUnordered<Watched>,
        streams: Streams,
    }

    impl<C> PinnedDrop for Served<C> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.streams.inbox.take(this.running);
            if this.running.is_empty() {
                return;
            }
            // Each finishes on its own (the connection is gone or going).
            let mut rest = std::mem::take(this.running);
            let stalls = this.streams.stalls.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(crate::clock::turns(async move {
                    while let Some(ended) = rest.next().await {
                        record(&ended, &stalls);
                    }
                }));
            }
        }
    }
}

/// Counts and logs how a stream ended, if not plainly.
fn record(ended: &Ended, stalls: &Counter) {
    match ended {
        Ended::Done => {}
        Ended::Stalled => {
            stalls.inc();
            tracing::debug!("response stalled; reset the stream");
        }
        Ended::Panicked => tracing::error!("a stream's handler panicked; reset the stream"),
    }
}

/// Polls the streams that were woken (or are new) until none is ready.
fn poll_running(running: &mut FuturesUnordered<Watched>, cx: &mut Context<'_>, stalls: &Counter) {
    while let Poll::Ready(Some(ended)) = running.poll_next_unpin(cx) {
        record(&ended, stalls);
    }
}

impl<C: Future> Future for Served<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.project();
        let mut connection = this.connection;
        let (running, streams) = (this.running, this.streams);
        // Whatever woke the task, both are looked at once: streams first,
        // so that an answer one hands over is written by the connection's
        // poll that follows.
        let (mut streams_due, mut connection_due) = (true, true);
        for _ in 0..MAX_ROUNDS {
            if streams_due {
                streams.quiet.begin(cx);
                streams.inbox.take(running);
                poll_running(
                    running,
                    &mut streams.quiet.context(Side::Partner),
                    &streams.stalls,
                );
                let woken = streams.quiet.end();
                streams_due = woken.partner;
                connection_due |= woken.connection;
            }
            if connection_due {
                streams.quiet.begin(cx);
                let polled = connection
                    .as_mut()
                    .poll(&mut streams.quiet.context(Side::Connection));
                let woken = streams.quiet.end();
                if polled.is_ready() {
                    return polled;
                }
                connection_due = woken.connection;
                streams_due |= woken.partner;
            }
            if !streams_due && !connection_due {
                return Poll::Pending;
            }
        }
        // Still waking each other: the task's next turn goes on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<C: Graceful> Graceful for Served<C> {
    type Error = C::Error;

    fn graceful_shutdown(self: Pin<&mut Self>) {
        // The streams go on: the connection ends once they have.
        self.project().connection.graceful_shutdown();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Waker;

    use hyper::rt::Executor;
    use tokio::sync::oneshot;

    use super::*;
    use crate::task_waker::tests::Counting;

    /// Stands in for hyper's connection: hands `streams` to the executor
    /// at its first poll, then ends once `ends` fires; counts its polls and
    /// keeps its waker, which a stream's answer wakes.
    struct Connection {
        executor: StreamExecutor,
        streams: Vec<Stream>,
        ends: oneshot::Receiver<()>,
        polls: Arc<AtomicUsize>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    type Stream = Pin<Box<dyn Future<Output = ()> + Send>>;

    impl Future for Connection {
        type Output = Result<(), std::convert::Infallible>;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            for stream in std::mem::take(&mut self.streams) {
                self.executor.execute(stream);
            }
            match Pin::new(&mut self.ends).poll(cx) {
                Poll::Ready(_) => Poll::Ready(Ok(())),
                Poll::Pending => Poll::Pending,
            }
        }
    }

    /// A connection handing over `streams`, served; with the sender that
    /// ends it, its poll count and its waker.
    #[allow(clippy::type_complexity)]
    fn served(
        streams: Vec<Stream>,
    ) -> (
        Served<Connection>,
        oneshot::Sender<()>,
        Arc<AtomicUsize>,
        Arc<Mutex<Option<Waker>>>,
    ) {
        let (executor, served) = Streams::new(Duration::from_secs(30), Counter::default());
        let (end, ends) = oneshot::channel();
        let (polls, waker) = (Arc::default(), Arc::default());
        let connection = Connection {
            executor,
            streams,
            ends,
            polls: Arc::clone(&polls),
            waker: Arc::clone(&waker),
        };
        (served.serve(connection), end, polls, waker)
    }

    #[test]
    fn an_answer_is_written_within_the_poll_that_made_it_without_waking_the_task() {
        let connection_waker: Arc<Mutex<Option<Waker>>> = Arc::default();
        let wakes = Arc::clone(&connection_waker);
        let (tx, rx) = oneshot::channel::<()>();
        // Waits for its upstream, then hands its answer to the connection
        // (which wakes it to write the answer), as hyper's streams do.
        let stream: Stream = Box::pin(async move {
            let _ = rx.await;
            let waker = wakes.lock().unwrap().clone();
            waker.expect("the connection was polled").wake();
        });
        let (mut served, _end, polls, waker) = served(vec![stream]);
        *connection_waker.lock().unwrap() = None;
        let counting = Arc::new(Counting::default());
        let task = Waker::from(Arc::clone(&counting));
        let mut cx = Context::from_waker(&task);
        let mut served = Pin::new(&mut served);
        assert!(served.as_mut().poll(&mut cx).is_pending());
        // The connection's waker, as the stream will find it.
        *connection_waker.lock().unwrap() = waker.lock().unwrap().clone();
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        assert_eq!(served.running.len(), 1, "the stream runs in this task");
        assert_eq!(
            counting.0.load(Ordering::SeqCst),
            0,
            "nothing woke the task"
        );
        // The upstream answers: that wake reaches the task.
        tx.send(()).unwrap();
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
        assert!(served.as_mut().poll(&mut cx).is_pending());
        assert!(served.running.is_empty(), "the stream ended");
        assert_eq!(
            polls.load(Ordering::SeqCst),
            2,
            "the connection was polled again within the same poll"
        );
        assert_eq!(
            counting.0.load(Ordering::SeqCst),
            1,
            "the stream's wake of the connection did not wake the task"
        );
    }

    #[tokio::test]
    async fn streams_add_no_task_and_a_panicking_one_leaves_the_others_running() {
        let (first_tx, first_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let (release, released) = oneshot::channel::<()>();
        let streams: Vec<Stream> = vec![
            Box::pin(async move {
                let _ = released.await;
                panic!("a handler's bug");
            }),
            Box::pin(async move {
                let _ = first_rx.await;
                let _ = done_tx.send(());
            }),
        ];
        let (served, end, _, _) = served(streams);
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        let connection = tokio::spawn(served);
        tokio::task::yield_now().await;
        assert_eq!(metrics.num_alive_tasks(), before + 1, "one task for all");
        release.send(()).unwrap();
        tokio::task::yield_now().await;
        first_tx.send(()).unwrap();
        done_rx.await.expect("the other stream finished");
        end.send(()).unwrap();
        let ended = connection
            .await
            .expect("the connection's task did not panic");
        assert!(ended.is_ok());
    }

    #[tokio::test]
    async fn streams_left_when_the_connection_ends_still_finish() {
        let (tx, rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let stream: Stream = Box::pin(async move {
            let _ = rx.await;
            let _ = done_tx.send(());
        });
        let (served, end, _, _) = served(vec![stream]);
        let connection = tokio::spawn(served);
        tokio::task::yield_now().await;
        end.send(()).unwrap();
        connection.await.unwrap().unwrap();
        // The connection's future is gone; its stream still runs.
        tx.send(()).unwrap();
        done_rx
            .await
            .expect("the stream finished after its connection");
    }
}
