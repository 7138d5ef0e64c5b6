//! Upstream connections: opened on demand, driven by the task of the request
//! that uses them, kept idle between requests. What follows is hyper's
//! side, for requests with a body; the gateway's own connections for
//! bodiless requests (`proxy/h1.rs`) wait in the same pool, in lists of
//! their own, under the same cap and timeout.
//!
//! A request takes a connection ([`Pool::checkout`], else a new one from
//! [`Pool::connect`]), sends its head and body and reads the answer while
//! polling the connection itself ([`drive`]); the response body keeps
//! polling it ([`Lease::poll_with`]) until the answer has been read.
//! No task is spawned per connection and nothing is handed between tasks:
//! the connection's socket wakes the very task that waits for it.
//!
//! Idle connections wait in a LIFO list of at most `upstream.pool_max_idle`
//! entries and are closed `upstream.pool_idle_timeout` after they were last
//! used, by one housekeeping task that sleeps until the oldest one expires.
//! There is one list per serving thread (`shard.rs`), and `pool_max_idle`
//! bounds all lists together, not each thread's share of it, so a thread
//! that happens to carry more requests than the others keeps as many
//! connections as it uses instead of closing and reopening the excess: a
//! connection is registered with the event
//! loop of the thread that opened it, so it is only handed to requests on
//! that thread, and no two threads take the same list's lock.
//! An idle connection is not polled, so one the upstream closed meanwhile
//! is noticed when it is next taken (one poll sees the end of stream, and
//! it is dropped before any request is written) or at its idle timeout.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::connector::{Connector, Stream};
use super::h1::Conn;
use super::quiet::{Quiet, Side};
use crate::request_body::ForwardBody;
use crate::shard::Line;

/// The hyper side of one upstream connection.
type Connection = http1::Connection<TokioIo<Stream>, ForwardBody>;

/// One upstream connection, in use by one request.
pub(crate) struct Lease {
    pub(crate) sender: http1::SendRequest<ForwardBody>,
    /// `None` once the connection has ended. Boxed: a lease moves in and
    /// out of the pool and through the answer's body with every request,
    /// and hyper's connection state is large (`docs/benchmarks.md`,
    /// "Smaller futures").
    connection: Option<Box<Connection>>,
    /// Whether it served an earlier request (a stale keep-alive
    /// connection is only possible then).
    pub(crate) reused: bool,
    /// The wakers the connection and what waits on it are polled with.
    quiet: Quiet,
}

/// How many times one poll of a lease goes round while its two sides keep
/// waking each other, before it leaves the rest to the task's next turn.
const MAX_ROUNDS: usize = 8;

impl Lease {
    /// Sends `request` on the connection. Handing it over wakes the
    /// connection, which the next poll of the lease drives anyway.
    pub(crate) fn send(
        &mut self,
        request: http::Request<ForwardBody>,
    ) -> impl Future<Output = Result<http::Response<hyper::body::Incoming>, TrySendError>> {
        let sender = &mut self.sender;
        self.quiet.hush(|| sender.try_send_request(request))
    }

    /// Polls the connection, then `partner` (what waits on it: the
    /// answer's head or its body), with the lease's own wakers
    /// (`quiet.rs`): while one wakes the other, both are polled again
    /// here rather than in another turn of the task. `partner` is not
    /// polled again once it is ready; the connection is not polled after
    /// it has ended.
    ///
    /// With `first` = [`Side::Partner`], the first round polls `partner`
    /// alone, and the connection follows only if `partner` is not ready or
    /// woke it. That is for the body: a frame the connection has already
    /// handed over, or the end it has already seen, needs no poll of the
    /// connection.
    pub(crate) fn poll_with<R>(
        &mut self,
        cx: &mut Context<'_>,
        first: Side,
        mut partner: impl FnMut(&mut Context<'_>) -> Poll<R>,
    ) -> Poll<R> {
        let mut done = None;
        let mut with_connection = matches!(first, Side::Connection);
        for _ in 0..MAX_ROUNDS {
            self.quiet.begin(cx);
            if with_connection {
                poll_connection(
                    &mut self.connection,
                    &mut self.quiet.context(Side::Connection),
                );
            }
            if done.is_none() {
                if let Poll::Ready(output) = partner(&mut self.quiet.context(Side::Partner)) {
                    done = Some(output);
                }
            }
            let woken = self.quiet.end();
            let again = woken.connection && self.connection.is_some()
                || (woken.partner || !with_connection) && done.is_none();
            if !again {
                return done.map_or(Poll::Pending, Poll::Ready);
            }
            with_connection = true;
        }
        // Still waking each other: the task's next turn goes on.
        cx.waker().wake_by_ref();
        done.map_or(Poll::Pending, Poll::Ready)
    }

    /// Drives the connection until it can take another request (`true`)
    /// or has ended (`false`).
    pub(crate) fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        let _ = self.poll_with(cx, Side::Connection, |_| Poll::Ready(()));
        if !self.is_reusable() {
            Poll::Ready(false)
        } else if self.sender.is_ready() {
            Poll::Ready(true)
        } else {
            Poll::Pending
        }
    }

    /// Whether the connection can carry another request.
    fn is_reusable(&self) -> bool {
        self.connection.is_some() && !self.sender.is_closed()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The sender's end wakes the connection, which goes with it.
        self.quiet.forget_task();
    }
}

/// What handing a request to a connection may fail with.
pub(crate) type TrySendError = hyper::client::conn::TrySendError<http::Request<ForwardBody>>;

/// Lets the connection read and write what it can; after it ends it is not
/// polled again.
fn poll_connection(connection: &mut Option<Box<Connection>>, cx: &mut Context<'_>) {
    if let Some(running) = connection {
        if let Poll::Ready(result) = Pin::new(running.as_mut()).poll(cx) {
            if let Err(error) = result {
                tracing::debug!(%error, "upstream connection ended");
            }
            *connection = None;
        }
    }
}

/// Runs `exchange` (a request sent on `lease`) while driving the
/// connection, in the caller's task.
pub(crate) async fn drive<F: Future>(lease: &mut Lease, exchange: F) -> F::Output {
    let mut exchange = pin!(exchange);
    // The connection first: what it reads completes the exchange in the
    // same poll.
    poll_fn(|cx| lease.poll_with(cx, Side::Connection, |cx| exchange.as_mut().poll(cx))).await
}

/// Why no connection could be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// Refused, missing socket, timed out (`io::ErrorKind::TimedOut`).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The HTTP/1.1 handshake failed.
    #[error(transparent)]
    Handshake(#[from] hyper::Error),
}

/// The idle connections to the one upstream, and how to open new ones.
///
/// Two kinds wait here: hyper's connections ([`Lease`]), which carry
/// requests with a body, and the gateway's own ([`Conn`], `proxy/h1.rs`),
/// which carry bodiless ones. Each kind has its own lists (a connection is
/// only ever driven by the code that opened it); `upstream.pool_max_idle`
/// and `upstream.pool_idle_timeout` apply to both together.
pub(crate) struct Pool {
    connector: Connector,
    leases: Lists<Lease>,
    conns: Lists<Conn>,
    /// All lists together.
    max_idle: usize,
    /// Connections in all lists now.
    idle_now: AtomicUsize,
    idle_timeout: Duration,
    reaper: Option<JoinHandle<()>>,
}

/// One idle list per serving thread, each on a cache line of its own (its
/// lock is taken for every request).
struct Lists<T>(Box<[Line<List<T>>]>);

/// One serving thread's idle connections of one kind, oldest first.
type List<T> = Mutex<VecDeque<Idle<T>>>;

struct Idle<T> {
    connection: T,
    since: Instant,
}

impl<T> Lists<T> {
    fn new(shards: usize, per_shard: usize) -> Self {
        Lists(
            (0..shards)
                .map(|_| Line(Mutex::new(VecDeque::with_capacity(per_shard.min(1024)))))
                .collect(),
        )
    }

    /// The calling serving thread's idle list.
    fn mine(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle<T>>> {
        lock(&self.0[crate::shard::current(self.0.len())])
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        self.0.iter().map(|list| lock(list).len()).sum()
    }
}

impl Pool {
    /// An empty pool of `shards` idle lists holding at most `max_idle`
    /// connections together. With `max_idle > 0` it starts the task that
    /// closes expired idle connections, so it must be called inside the
    /// runtime.
    pub(crate) fn new(
        connector: Connector,
        max_idle: usize,
        idle_timeout: Duration,
        shards: usize,
    ) -> Arc<Pool> {
        let shards = shards.max(1);
        let per_shard = max_idle.div_ceil(shards);
        Arc::new_cyclic(|pool: &Weak<Pool>| Pool {
            connector,
            leases: Lists::new(shards, per_shard),
            conns: Lists::new(shards, per_shard),
            max_idle,
            idle_now: AtomicUsize::new(0),
            idle_timeout,
            reaper: (max_idle > 0).then(|| tokio::spawn(reap(pool.clone(), idle_timeout))),
        })
    }

    /// A new connection, within the connect timeout.
    pub(crate) async fn connect(&self) -> Result<Lease, ConnectError> {
        let io = self.connector.connect().await?;
        let (sender, connection) = http1::Builder::new().handshake(io).await?;
        Ok(Lease {
            sender,
            connection: Some(Box::new(connection)),
            reused: false,
            quiet: Quiet::new(),
        })
    }

    /// A new connection for the gateway's own exchange, within the connect
    /// timeout (`io::ErrorKind::TimedOut`).
    pub(crate) async fn connect_own(&self) -> std::io::Result<Conn> {
        Ok(Conn::new(self.connector.connect().await?.into_inner()))
    }

    /// The most recently used idle connection that is still open and
    /// ready for a request, if any.
    pub(crate) async fn checkout(&self) -> Option<Lease> {
        loop {
            let Idle {
                connection: mut lease,
                ..
            } = self.pop(&self.leases)?;
            // One poll: an upstream that closed the connection while it
            // was idle is seen here, before a request is written to it.
            poll_fn(|cx| lease.poll_with(cx, Side::Connection, |_| Poll::Ready(()))).await;
            if lease.is_reusable() && lease.sender.is_ready() {
                lease.reused = true;
                return Some(lease);
            }
        }
    }

    /// The most recently used idle connection of the gateway's own that
    /// the upstream has neither closed nor written to since, if any.
    pub(crate) fn checkout_own(&self) -> Option<Conn> {
        loop {
            let Idle {
                connection: conn, ..
            } = self.pop(&self.conns)?;
            if let Some(conn) = conn.reuse() {
                return Some(conn);
            }
        }
    }

    /// The calling thread's most recent idle connection of one kind, after
    /// closing the expired ones.
    fn pop<T>(&self, lists: &Lists<T>) -> Option<Idle<T>> {
        let mut idle = lists.mine();
        self.evict_expired(&mut idle, crate::clock::now());
        let idle = idle.pop_back()?;
        self.idle_now.fetch_sub(1, Ordering::Relaxed);
        Some(idle)
    }

    /// Returns a connection whose exchange is complete; it is closed
    /// instead when it cannot be reused or the pool is full.
    pub(crate) fn checkin(&self, mut lease: Lease) {
        if !lease.is_reusable() {
            return;
        }
        lease.quiet.forget_task();
        self.push(&self.leases, lease);
    }

    /// Returns a connection of the gateway's own whose answer was read to
    /// its end and may carry another request; closed when the pool is full.
    pub(crate) fn checkin_own(&self, conn: Conn) {
        self.push(&self.conns, conn);
    }

    fn push<T>(&self, lists: &Lists<T>, connection: T) {
        if self.idle_now.fetch_add(1, Ordering::Relaxed) >= self.max_idle {
            self.idle_now.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        lists.mine().push_back(Idle {
            connection,
            since: crate::clock::now(),
        });
    }

    /// Closes the connections of `idle` idle for `idle_timeout` or longer
    /// (the oldest are at the front); returns when the next one expires.
    fn evict_expired<T>(&self, idle: &mut VecDeque<Idle<T>>, now: Instant) -> Option<Instant> {
        while let Some(oldest) = idle.front() {
            let expires = oldest.since + self.idle_timeout;
            if expires > now {
                return Some(expires);
            }
            idle.pop_front();
            self.idle_now.fetch_sub(1, Ordering::Relaxed);
        }
        None
    }

    /// How many connections are idle now.
    #[cfg(test)]
    pub(crate) fn idle_count(&self) -> usize {
        self.leases.count() + self.conns.count()
    }
}

fn lock<T>(list: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    list.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(reaper) = &self.reaper {
            reaper.abort();
        }
    }
}

/// The housekeeping task: sleeps until the oldest idle connection expires,
/// closes what has expired, until the pool is gone.
async fn reap(pool: Weak<Pool>, timeout: Duration) {
    // Nothing is idle before the first request; the first sleep also lets
    // `Pool::new` finish before the pool is looked at.
    let mut next = Instant::now() + timeout;
    loop {
        tokio::time::sleep_until(next).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let now = Instant::now();
        next = now + timeout;
        for list in pool.leases.0.iter() {
            if let Some(expires) = pool.evict_expired(&mut lock(list), now) {
                next = next.min(expires);
            }
        }
        for list in pool.conns.0.iter() {
            if let Some(expires) = pool.evict_expired(&mut lock(list), now) {
                next = next.min(expires);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamAddress;
    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt, Full};
    use tokio::io::AsyncReadExt;
    use tokio::net::UnixListener;

    /// An upstream answering every request on `path` with 200 "ok".
    fn answer(listener: UnixListener) -> JoinHandle<()> {
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        })
    }

    fn get() -> Request<ForwardBody> {
        Request::builder()
            .uri("/")
            .header("host", "upstream")
            .body(ForwardBody::Buffered(None))
            .unwrap()
    }

    /// Sends one GET on `lease` and reads the whole answer.
    async fn exchange(lease: &mut Lease) -> Bytes {
        let sending = lease.send(get());
        let response = drive(lease, sending)
            .await
            .map_err(|unsent| unsent.into_error())
            .unwrap();
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = drive(lease, body.frame()).await {
            if let Ok(data) = frame.unwrap().into_data() {
                bytes.extend_from_slice(&data);
            }
        }
        Bytes::from(bytes)
    }

    fn pool(dir: &tempfile::TempDir, max_idle: usize, timeout: Duration) -> Arc<Pool> {
        pool_for_threads(dir, max_idle, timeout, 1)
    }

    /// A pool for `threads` serving threads.
    fn pool_for_threads(
        dir: &tempfile::TempDir,
        max_idle: usize,
        timeout: Duration,
        threads: usize,
    ) -> Arc<Pool> {
        let address = UpstreamAddress::Unix(dir.path().join("up.sock"));
        Pool::new(
            Connector::new(address, Duration::from_secs(5)),
            max_idle,
            timeout,
            threads,
        )
    }

    #[tokio::test]
    async fn a_returned_connection_is_reused_and_the_pool_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let _up = answer(UnixListener::bind(dir.path().join("up.sock")).unwrap());
        let pool = pool(&dir, 1, Duration::from_secs(60));
        assert!(pool.checkout().await.is_none());
        let mut first = pool.connect().await.unwrap();
        assert_eq!(exchange(&mut first).await, "ok");
        let mut second = pool.connect().await.unwrap();
        assert_eq!(exchange(&mut second).await, "ok");
        pool.checkin(first);
        pool.checkin(second);
        assert_eq!(pool.idle_count(), 1, "pool_max_idle caps the idle list");
        let mut again = pool.checkout().await.expect("an idle connection");
        assert!(again.reused);
        assert_eq!(exchange(&mut again).await, "ok");
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_while_idle_is_not_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("up.sock")).unwrap();
        let pool = pool(&dir, 4, Duration::from_secs(60));
        let (lease, accepted) = tokio::join!(pool.connect(), listener.accept());
        let (server_side, _) = accepted.unwrap();
        pool.checkin(lease.unwrap());
        drop(server_side);
        // The close reaches the connection's socket when the runtime next
        // polls the OS for events (it parks during the sleep).
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(pool.checkout().await.is_none());
    }

    #[tokio::test]
    async fn an_idle_connection_is_only_handed_out_on_the_thread_that_returned_it() {
        let dir = tempfile::tempdir().unwrap();
        let _up = answer(UnixListener::bind(dir.path().join("up.sock")).unwrap());
        let pool = pool_for_threads(&dir, 4, Duration::from_secs(60), 2);
        let mut lease = pool.connect().await.unwrap();
        assert_eq!(exchange(&mut lease).await, "ok");
        pool.checkin(lease);
        // Serving thread 1, with its own event loop: not this thread's list.
        let other = Arc::clone(&pool);
        let taken_elsewhere = std::thread::spawn(move || {
            crate::shard::enter(1);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(other.checkout()).is_some()
        })
        .join()
        .unwrap();
        assert!(
            !taken_elsewhere,
            "a connection crossed to another serving thread"
        );
        assert!(
            pool.checkout().await.is_some(),
            "the returning thread gets it back"
        );
    }

    #[tokio::test]
    async fn one_serving_thread_may_keep_the_whole_pool_but_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let _up = answer(UnixListener::bind(dir.path().join("up.sock")).unwrap());
        let pool = pool_for_threads(&dir, 4, Duration::from_secs(60), 2);
        let mut leases = Vec::new();
        for _ in 0..5 {
            let mut lease = pool.connect().await.unwrap();
            assert_eq!(exchange(&mut lease).await, "ok");
            leases.push(lease);
        }
        for lease in leases {
            pool.checkin(lease);
        }
        assert_eq!(
            pool.idle_count(),
            4,
            "this thread keeps all of pool_max_idle, not half of it"
        );
        for _ in 0..4 {
            assert!(pool.checkout().await.is_some());
        }
        assert!(pool.checkout().await.is_none());
        assert_eq!(pool.idle_now.load(Ordering::Relaxed), 0);
    }

    /// Wakes of the task that came while it was being polled: each only
    /// schedules another turn with nothing new to do.
    #[derive(Default)]
    struct SelfWakes {
        task: Mutex<Option<std::task::Waker>>,
        polling: std::sync::atomic::AtomicBool,
        counted: AtomicUsize,
    }

    impl std::task::Wake for SelfWakes {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            if self.polling.load(Ordering::SeqCst) {
                self.counted.fetch_add(1, Ordering::SeqCst);
            }
            if let Some(task) = &*self.task.lock().unwrap() {
                task.wake_by_ref();
            }
        }
    }

    /// Runs `future` to its end, counting its self-wakes.
    async fn counting_self_wakes<F: Future>(future: F) -> (F::Output, usize) {
        let wakes = Arc::new(SelfWakes::default());
        let waker = std::task::Waker::from(Arc::clone(&wakes));
        let mut future = pin!(future);
        let output = poll_fn(|cx| {
            *wakes.task.lock().unwrap() = Some(cx.waker().clone());
            wakes.polling.store(true, Ordering::SeqCst);
            let polled = future.as_mut().poll(&mut Context::from_waker(&waker));
            wakes.polling.store(false, Ordering::SeqCst);
            polled
        })
        .await;
        (output, wakes.counted.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn an_exchange_wakes_its_task_only_for_what_the_sockets_bring() {
        let dir = tempfile::tempdir().unwrap();
        let _up = answer(UnixListener::bind(dir.path().join("up.sock")).unwrap());
        let pool = pool(&dir, 4, Duration::from_secs(60));
        let (answers, self_wakes) = counting_self_wakes(async {
            let mut lease = pool.connect().await.unwrap();
            let first = exchange(&mut lease).await;
            pool.checkin(lease);
            let mut lease = pool.checkout().await.expect("the connection, idle");
            let second = exchange(&mut lease).await;
            [first, second]
        })
        .await;
        assert_eq!(answers, ["ok", "ok"]);
        assert_eq!(
            self_wakes, 0,
            "handing over the request, the answer's head or its body woke the task being polled"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("up.sock")).unwrap();
        let timeout = Duration::from_secs(30);
        let pool = pool(&dir, 4, timeout);
        let (lease, accepted) = tokio::join!(pool.connect(), listener.accept());
        let (mut server_side, _) = accepted.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        pool.checkin(lease.unwrap());
        tokio::time::sleep(timeout - Duration::from_secs(1)).await;
        assert_eq!(pool.idle_count(), 1, "still within its idle timeout");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(pool.idle_count(), 0);
        let mut buf = [0u8; 1];
        let read = server_side.read(&mut buf).await.unwrap();
        assert_eq!(read, 0, "the upstream sees the connection closed");
    }
}
