//! A future polled only when it asked to be.
//!
//! A connection's task waits on its connection and, beside it, on a few
//! rare events (a stalled client, shutdown, the idle timeout). A plain
//! `select!` polls every one of them each time the task wakes, and the
//! task wakes several times for every request, for the connection's sake
//! alone. [`OnWake`] gives its future a waker of its own and polls it only
//! after that waker fired (and once at the start); the task's own waker is
//! woken too, so the task still runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crate::task_waker::{Registered, TaskWaker};

/// `future`, polled only after its own wake-up.
pub(crate) struct OnWake<F> {
    future: Pin<Box<F>>,
    signal: Arc<Signal>,
    /// The waker handed to `future`, built once.
    waker: Waker,
    /// The task waker last given to `signal.task`: a connection's task
    /// polls with the same one every time, so it is registered once, and
    /// an unwoken poll costs no atomic read-modify-write
    /// (`docs/benchmarks.md`, "Atomic instructions").
    registered: Registered,
}

/// Whether the inner future was woken, and the task to wake with it.
struct Signal {
    woken: AtomicBool,
    task: TaskWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Wraps `future` (boxed once: it is polled in place from then on).
pub(crate) fn on_wake<F: Future>(future: F) -> OnWake<F> {
    let signal = Arc::new(Signal {
        // The first poll always happens: it registers the future's wakers.
        woken: AtomicBool::new(true),
        task: TaskWaker::default(),
    });
    OnWake {
        future: Box::pin(future),
        waker: Waker::from(Arc::clone(&signal)),
        signal,
        registered: Registered::default(),
    }
}

impl<F: Future> Future for OnWake<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Registered before the flag is read: a wake-up in between is not
        // lost.
        this.registered.register(&this.signal.task, cx.waker());
        // Read first: cleared (a read-modify-write) only when set.
        if !this.signal.woken.load(Ordering::Acquire)
            || !this.signal.woken.swap(false, Ordering::AcqRel)
        {
            return Poll::Pending;
        }
        let mut own = Context::from_waker(&this.waker);
        this.future.as_mut().poll(&mut own)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// Counts its polls; pending until `ready` is set.
    struct Counted<'a> {
        polls: &'a AtomicUsize,
        ready: &'a AtomicBool,
    }

    impl Future for Counted<'_> {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            if self.ready.load(Ordering::Relaxed) {
                Poll::Ready(())
            } else {
                // Asks to be polled again only when something wakes it;
                // nothing does here but the test's explicit wake below.
                WAKER.with(|w| *w.borrow_mut() = Some(cx.waker().clone()));
                Poll::Pending
            }
        }
    }

    thread_local! {
        static WAKER: std::cell::RefCell<Option<Waker>> = const { std::cell::RefCell::new(None) };
    }

    #[test]
    fn polled_once_then_only_after_its_own_wake() {
        let (polls, ready) = (AtomicUsize::new(0), AtomicBool::new(false));
        let mut watched = on_wake(Counted {
            polls: &polls,
            ready: &ready,
        });
        let task = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&task);
        for _ in 0..5 {
            assert!(Pin::new(&mut watched).poll(&mut cx).is_pending());
        }
        // The task woke five times for other reasons: one poll.
        assert_eq!(polls.load(Ordering::Relaxed), 1);
        ready.store(true, Ordering::Relaxed);
        WAKER.with(|w| w.borrow_mut().take().unwrap().wake());
        assert!(Pin::new(&mut watched).poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_inside_still_fires_and_wakes_the_task() {
        let slept = on_wake(tokio::time::sleep(Duration::from_secs(5)));
        let started = tokio::time::Instant::now();
        tokio::select! {
            biased;
            () = std::future::pending::<()>() => unreachable!(),
            () = slept => {}
        }
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
