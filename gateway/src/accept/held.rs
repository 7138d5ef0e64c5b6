//! An HTTP/1.1 client's answers held to the end of the thread's turn.
//!
//! A serving thread runs the tasks that are ready one after another: under
//! load, a dozen connections whose next request has arrived. Each wrote
//! its answer to its socket as soon as its poll produced it, so the turn's
//! writes were spread across the turn, and each could find its reader
//! asleep and wake it: a wake-up paid in the writer's kernel time, and
//! often the writer preempted by the reader it woke. [`HeldWrites`] keeps
//! what a poll writes and sends it in the task's next poll, which comes
//! after the tasks already queued on the thread: the turn's answers go out
//! together at its end (`docs/benchmarks.md`, "Answers sent at the end of
//! the turn").
//!
//! * Only inside a poll of a [`crate::clock::Turns`] future, which is what
//!   wakes the task for that next poll ([`crate::clock::poll_again`]);
//!   outside one every write goes straight to the socket.
//! * Only small writes: one that would hold more than [`HOLD_LIMIT`] first
//!   sends what is held and then goes straight to the socket, so a large
//!   body is neither copied twice nor delayed.
//! * Only once turned on ([`HeldWrites::hold`]): the TLS handshake, and an
//!   HTTP/2 connection (whose writes already follow its streams' tasks),
//!   write straight through.
//!
//! What is held is always sent before anything written after it, before
//! the socket is shut down and, as far as the socket takes it at once,
//! when it is dropped. A flush answers "done" in the poll that wrote, and
//! sends in the next: the send watch (`send_watch.rs`) sees a client that
//! takes nothing then, one poll later than before.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::clock;

/// The most bytes held for the end of the turn: an answer's head and a
/// small body, in TLS records.
const HOLD_LIMIT: usize = 16 * 1024;

/// A buffer that grew beyond this for a large answer is let go once sent,
/// so an idle connection keeps no more than an answer's worth of memory.
const KEPT_CAPACITY: usize = 4 * 1024;

/// A socket whose small writes are sent in the task's next poll.
pub(crate) struct HeldWrites {
    inner: TcpStream,
    held: Vec<u8>,
    /// How much of `held` the socket has taken.
    sent: usize,
    /// The poll that wrote the first byte now held.
    held_in: Option<u64>,
    holding: bool,
}

impl HeldWrites {
    /// `inner`, written straight through until [`HeldWrites::hold`].
    pub(crate) fn new(inner: TcpStream) -> Self {
        HeldWrites {
            inner,
            held: Vec::new(),
            sent: 0,
            held_in: None,
            holding: false,
        }
    }

    /// From now on, holds small writes to the end of the turn.
    pub(crate) fn hold(&mut self) {
        self.holding = true;
    }

    fn unsent(&self) -> usize {
        self.held.len() - self.sent
    }

    /// Whether `len` more bytes are held rather than written; the first
    /// byte held asks for the task's next poll. Nothing is added to what
    /// an earlier poll held: that is due, and goes first.
    fn holds(&mut self, len: usize) -> bool {
        if !self.holding || self.unsent() + len > HOLD_LIMIT {
            return false;
        }
        match self.held_in {
            Some(at) => clock::poll_number() == Some(at),
            None => {
                self.held_in = clock::poll_again();
                self.held_in.is_some()
            }
        }
    }

    /// Whether what is held was written in an earlier poll than this one
    /// (or outside any), and is to be sent now.
    fn is_due(&self) -> bool {
        self.held_in.is_none() || clock::poll_number() != self.held_in
    }

    /// Sends everything held.
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        if self.held.capacity() > KEPT_CAPACITY {
            self.held = Vec::new();
        } else {
            self.held.clear();
        }
        self.sent = 0;
        self.held_in = None;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for HeldWrites {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Whoever polls next, what is due goes out before anything waits
        // on the client (a socket that takes nothing now is retried by the
        // next write or flush).
        if self.unsent() > 0 && self.is_due() {
            if let Poll::Ready(Err(error)) = self.poll_send_held(cx) {
                return Poll::Ready(Err(error));
            }
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for HeldWrites {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|buf| buf.len()).sum();
        if self.holds(len) {
            for buf in bufs {
                self.held.extend_from_slice(buf);
            }
            return Poll::Ready(Ok(len));
        }
        ready!(self.poll_send_held(cx))?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.unsent() > 0 {
            if !self.is_due() {
                // Sent in the next poll, which is already asked for.
                return Poll::Ready(Ok(()));
            }
            ready!(self.poll_send_held(cx))?;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_held(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Drop for HeldWrites {
    fn drop(&mut self) {
        while self.sent < self.held.len() {
            match self.inner.try_write(&self.held[self.sent..]) {
                Ok(n) if n > 0 => self.sent += n,
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::{poll_fn, Future};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;
    use crate::clock::turns;

    /// A connected pair: ours (wrapped) and the peer's end.
    async fn pair() -> (HeldWrites, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (ours, peer) = tokio::join!(
            TcpStream::connect(listener.local_addr().unwrap()),
            listener.accept()
        );
        let mut ours = HeldWrites::new(ours.unwrap());
        ours.hold();
        (ours, peer.unwrap().0)
    }

    /// What the peer can read now, waiting at most a moment (to show that
    /// nothing was sent).
    async fn readable_now(peer: &mut TcpStream) -> Vec<u8> {
        let mut got = vec![0; 64 * 1024];
        match tokio::time::timeout(Duration::from_millis(100), peer.read(&mut got)).await {
            Ok(n) => got[..n.unwrap()].to_vec(),
            Err(_) => Vec::new(),
        }
    }

    /// The next `n` bytes the peer receives (within five seconds).
    async fn read_exactly(peer: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        tokio::time::timeout(Duration::from_secs(5), peer.read_exact(&mut got))
            .await
            .expect("the bytes arrive")
            .unwrap();
        got
    }

    /// One poll of `ours`: writes `data`, flushes, and reports whether the
    /// flush was done in this poll and whether the task was woken again.
    async fn write_and_flush_in_one_poll(ours: &mut HeldWrites, data: &[u8]) -> bool {
        let woken = Arc::new(Woken::default());
        let waker = Waker::from(Arc::clone(&woken));
        let mut cx = Context::from_waker(&waker);
        let mut once = Box::pin(turns(poll_fn(|cx| {
            let n = ready!(Pin::new(&mut *ours).poll_write(cx, data)).unwrap();
            assert_eq!(n, data.len());
            ready!(Pin::new(&mut *ours).poll_flush(cx)).unwrap();
            Poll::Ready(())
        })));
        assert!(once.as_mut().poll(&mut cx).is_ready());
        woken.0.load(Ordering::SeqCst)
    }

    /// A waker that notes that it was woken.
    #[derive(Default)]
    struct Woken(AtomicBool);

    impl Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_small_write_is_sent_in_the_next_poll_which_it_asks_for() {
        let (mut ours, mut peer) = pair().await;
        let woken = write_and_flush_in_one_poll(&mut ours, b"answer").await;
        assert!(woken, "the task is woken for the poll that sends");
        assert!(
            readable_now(&mut peer).await.is_empty(),
            "held in the poll that wrote it"
        );
        // The next poll's flush sends it.
        turns(poll_fn(|cx| Pin::new(&mut ours).poll_flush(cx)))
            .await
            .unwrap();
        assert_eq!(read_exactly(&mut peer, 6).await, b"answer");
    }

    #[tokio::test]
    async fn writes_outside_a_turn_or_before_hold_go_straight_through() {
        let (mut ours, mut peer) = pair().await;
        // Outside a `Turns` poll: no one would poll again to send it.
        poll_fn(|cx| Pin::new(&mut ours).poll_write(cx, b"now"))
            .await
            .unwrap();
        assert_eq!(read_exactly(&mut peer, 3).await, b"now");

        let (mut unheld, mut peer) = pair().await;
        unheld.holding = false;
        let woken = write_and_flush_in_one_poll(&mut unheld, b"handshake").await;
        assert!(!woken);
        assert_eq!(read_exactly(&mut peer, 9).await, b"handshake");
    }

    #[tokio::test]
    async fn a_large_write_sends_what_is_held_first_then_goes_straight_through() {
        let (mut ours, mut peer) = pair().await;
        let large = vec![b'b'; HOLD_LIMIT];
        turns(poll_fn(|cx| {
            ready!(Pin::new(&mut ours).poll_write(cx, b"a")).unwrap();
            let n = ready!(Pin::new(&mut ours).poll_write(cx, &large)).unwrap();
            assert!(n > 0);
            Poll::Ready(())
        }))
        .await;
        assert_eq!(ours.unsent(), 0);
        assert_eq!(
            read_exactly(&mut peer, 2).await,
            b"ab",
            "in the order written"
        );
    }

    #[tokio::test]
    async fn a_write_in_a_later_poll_sends_what_is_due_before_itself() {
        let (mut ours, mut peer) = pair().await;
        write_and_flush_in_one_poll(&mut ours, b"first ").await;
        // The next poll writes without flushing: nothing may wait for a
        // poll that no one asked for.
        turns(poll_fn(|cx| Pin::new(&mut ours).poll_write(cx, b"second")))
            .await
            .unwrap();
        assert_eq!(ours.unsent(), 0);
        assert_eq!(read_exactly(&mut peer, 12).await, b"first second");
    }

    #[tokio::test]
    async fn a_buffer_grown_for_a_large_answer_is_let_go_once_sent() {
        let (mut ours, mut peer) = pair().await;
        let answer = vec![b'x'; HOLD_LIMIT / 2];
        write_and_flush_in_one_poll(&mut ours, &answer).await;
        assert!(ours.held.capacity() > KEPT_CAPACITY);
        turns(poll_fn(|cx| Pin::new(&mut ours).poll_flush(cx)))
            .await
            .unwrap();
        assert_eq!(read_exactly(&mut peer, answer.len()).await, answer);
        assert_eq!(ours.held.capacity(), 0);
    }

    #[tokio::test]
    async fn shutdown_and_drop_send_what_is_held() {
        let (mut ours, mut peer) = pair().await;
        write_and_flush_in_one_poll(&mut ours, b"last answer").await;
        turns(poll_fn(|cx| Pin::new(&mut ours).poll_shutdown(cx)))
            .await
            .unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last answer");

        let (mut ours, mut peer) = pair().await;
        write_and_flush_in_one_poll(&mut ours, b"dropped").await;
        drop(ours);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"dropped");
    }

    #[tokio::test]
    async fn a_read_in_a_later_poll_sends_what_is_due() {
        let (mut ours, mut peer) = pair().await;
        write_and_flush_in_one_poll(&mut ours, b"question").await;
        let mut buf = [0u8; 8];
        let mut read = ReadBuf::new(&mut buf);
        let polled = turns(poll_fn(|cx| {
            Poll::Ready(Pin::new(&mut ours).poll_read(cx, &mut read))
        }))
        .await;
        assert!(polled.is_pending(), "nothing to read yet");
        assert_eq!(read_exactly(&mut peer, 8).await, b"question");
    }
}
