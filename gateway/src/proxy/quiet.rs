//! The wakers an upstream connection and the request waiting on it are
//! polled with, so that what one of them does for the other within one
//! poll does not wake the task again.
//!
//! A lease's connection is driven by the task that uses it (`pool.rs`),
//! polled together with what waits on it: the answer's head, then its
//! body. Within one such poll the two wake each other all the time. The
//! request handed to the connection wakes the connection; the head it
//! reads wakes the request; the body it reads wakes the body's reader.
//! Each of these wakes, given to the task's own waker, schedules the whole
//! task for another turn, in which hyper, TLS and every layer of the
//! request are polled again to find nothing to do: on a keep-alive GET,
//! two of the serving task's four turns per request
//! (`docs/benchmarks.md`, "Wakes within one poll").
//!
//! [`Quiet`] gives the connection and its partner a waker each. A wake
//! that comes while the lease is being polled only marks the side woken,
//! and the poll goes round again for that side before it returns
//! ([`Lease::poll_with`](super::pool::Lease::poll_with)). A wake at any
//! other time (the socket became readable) is passed on to the waker of
//! the task that polled the lease last. An idle connection in the pool
//! wakes nobody.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use futures_util::task::AtomicWaker;

/// A lease's pair of wakers and the task they report to.
pub(super) struct Quiet {
    shared: Arc<Shared>,
    connection: Waker,
    partner: Waker,
}

/// What both wakers share.
struct Shared {
    /// The waker of the task that polled the lease last; taken by the
    /// first wake that reaches it, given again by the next poll.
    task: AtomicWaker,
    /// Whether the lease is being polled now.
    polling: AtomicBool,
    /// Woken since last polled: the connection, its partner.
    woken: [AtomicBool; 2],
}

/// Which side a waker belongs to.
#[derive(Clone, Copy)]
pub(super) enum Side {
    Connection = 0,
    Partner = 1,
}

/// One side's waker.
struct SideWaker {
    shared: Arc<Shared>,
    side: Side,
}

impl Quiet {
    pub(super) fn new() -> Self {
        let shared = Arc::new(Shared {
            task: AtomicWaker::new(),
            polling: AtomicBool::new(false),
            woken: [AtomicBool::new(false), AtomicBool::new(false)],
        });
        let waker = |side| {
            Waker::from(Arc::new(SideWaker {
                shared: Arc::clone(&shared),
                side,
            }))
        };
        Self {
            connection: waker(Side::Connection),
            partner: waker(Side::Partner),
            shared,
        }
    }

    /// Starts a poll on behalf of the task polling with `cx`: wakes from
    /// now on are only marked, until [`Quiet::end`].
    pub(super) fn begin(&self, cx: &Context<'_>) {
        self.shared.task.register(cx.waker());
        self.shared.polling.store(true, Ordering::SeqCst);
    }

    /// Runs `f` (which may wake either side, e.g. a request handed to the
    /// connection) with its wakes only marked; the next poll sees them.
    pub(super) fn hush<R>(&self, f: impl FnOnce() -> R) -> R {
        self.shared.polling.store(true, Ordering::SeqCst);
        let result = f();
        self.shared.polling.store(false, Ordering::SeqCst);
        result
    }

    /// A context for polling `side`, its earlier wakes forgotten: the poll
    /// about to be made sees whatever they were for.
    pub(super) fn context(&self, side: Side) -> Context<'_> {
        self.shared.woken[side as usize].store(false, Ordering::SeqCst);
        Context::from_waker(match side {
            Side::Connection => &self.connection,
            Side::Partner => &self.partner,
        })
    }

    /// Ends a poll; whether each side was woken during it (and so needs
    /// polling again). A wake after this reaches the task.
    pub(super) fn end(&self) -> [bool; 2] {
        // Cleared before the marks are read; a waker marks before it reads
        // `polling`. So a wake either is seen here or reaches the task.
        self.shared.polling.store(false, Ordering::SeqCst);
        [
            self.shared.woken[0].swap(false, Ordering::SeqCst),
            self.shared.woken[1].swap(false, Ordering::SeqCst),
        ]
    }

    /// The lease is idle: later wakes reach no task.
    pub(super) fn forget_task(&self) {
        drop(self.shared.task.take());
    }
}

impl Wake for SideWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let shared = &self.shared;
        shared.woken[self.side as usize].store(true, Ordering::SeqCst);
        if !shared.polling.load(Ordering::SeqCst) {
            shared.task.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A task waker that counts its wakes.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_wake_during_a_poll_is_marked_and_one_after_it_reaches_the_task() {
        let counting = Arc::new(Counting::default());
        let task = Waker::from(Arc::clone(&counting));
        let quiet = Quiet::new();
        quiet.begin(&Context::from_waker(&task));
        let connection = quiet.context(Side::Connection).waker().clone();
        let partner = quiet.context(Side::Partner).waker().clone();
        partner.wake_by_ref();
        assert_eq!(quiet.end(), [false, true], "only the partner was woken");
        assert_eq!(counting.0.load(Ordering::SeqCst), 0, "the task was not");
        connection.wake_by_ref();
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
        connection.wake_by_ref();
        assert_eq!(
            counting.0.load(Ordering::SeqCst),
            1,
            "one wake per poll: the next poll registers the task again"
        );
        quiet.hush(|| connection.wake_by_ref());
        quiet.begin(&Context::from_waker(&task));
        assert_eq!(quiet.end(), [true, false], "a hushed wake is kept");
        quiet.forget_task();
        partner.wake_by_ref();
        assert_eq!(
            counting.0.load(Ordering::SeqCst),
            1,
            "an idle lease wakes nobody"
        );
    }
}
