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

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use crate::task_waker::{Registered, TaskWaker};

/// A lease's pair of wakers and the task they report to.
///
/// Every request polls a lease several times, so this costs few atomic
/// read-modify-write instructions (each of which costs as much as dozens
/// of plain ones, `docs/benchmarks.md`, "Atomic instructions"): the marks
/// and the polling flag share one atomic byte, and the task's waker is
/// registered again only when another task polls the lease.
pub(super) struct Quiet {
    shared: Arc<Shared>,
    connection: Waker,
    partner: Waker,
    /// The task waker last given to `shared.task`.
    registered: Registered,
}

/// What both wakers share.
struct Shared {
    /// [`POLLING`] and the marks of the sides woken since.
    state: AtomicU8,
    /// The waker of the task that polls the lease.
    task: TaskWaker,
}

/// The lease is being polled: wakes are only marked.
const POLLING: u8 = 1;

/// Which side a waker belongs to.
#[derive(Clone, Copy)]
pub(super) enum Side {
    Connection,
    Partner,
}

impl Side {
    /// Its mark in [`Shared::state`].
    const fn mark(self) -> u8 {
        match self {
            Side::Connection => 2,
            Side::Partner => 4,
        }
    }
}

/// One side's waker.
struct SideWaker {
    shared: Arc<Shared>,
    side: Side,
}

/// Which sides were woken during a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Woken {
    pub(super) connection: bool,
    pub(super) partner: bool,
}

impl Quiet {
    pub(super) fn new() -> Self {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(0),
            task: TaskWaker::default(),
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
            registered: Registered::default(),
        }
    }

    /// Starts a poll on behalf of the task polling with `cx`: wakes from
    /// now on are only marked, until [`Quiet::end`]. Marks made before are
    /// dropped: the poll about to be made sees what they were for.
    pub(super) fn begin(&mut self, cx: &Context<'_>) {
        self.registered.register(&self.shared.task, cx.waker());
        self.shared.state.store(POLLING, Ordering::Release);
    }

    /// Runs `f` (which may wake either side, e.g. a request handed to the
    /// connection) with its wakes only marked; the next poll sees them.
    pub(super) fn hush<R>(&self, f: impl FnOnce() -> R) -> R {
        self.shared.state.store(POLLING, Ordering::Release);
        let result = f();
        self.shared.state.fetch_and(!POLLING, Ordering::AcqRel);
        result
    }

    /// The context to poll `side` with.
    pub(super) fn context(&self, side: Side) -> Context<'_> {
        Context::from_waker(match side {
            Side::Connection => &self.connection,
            Side::Partner => &self.partner,
        })
    }

    /// Ends a poll: which sides were woken during it (and so need polling
    /// again). A wake after this reaches the task.
    pub(super) fn end(&self) -> Woken {
        // One read-modify-write of the byte the wakers mark: a wake is
        // either in what it returns or sees the flag cleared.
        let state = self.shared.state.swap(0, Ordering::AcqRel);
        Woken {
            connection: state & Side::Connection.mark() != 0,
            partner: state & Side::Partner.mark() != 0,
        }
    }

    /// The lease is idle: later wakes reach no task.
    pub(super) fn forget_task(&mut self) {
        self.registered.forget(&self.shared.task);
    }
}

impl Wake for SideWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let shared = &self.shared;
        let before = shared.state.fetch_or(self.side.mark(), Ordering::AcqRel);
        if before & POLLING == 0 {
            shared.task.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task_waker::tests::Counting;

    #[test]
    fn a_wake_during_a_poll_is_marked_and_one_after_it_reaches_the_task() {
        let counting = Arc::new(Counting::default());
        let task = Waker::from(Arc::clone(&counting));
        let mut quiet = Quiet::new();
        quiet.begin(&Context::from_waker(&task));
        let connection = quiet.context(Side::Connection).waker().clone();
        let partner = quiet.context(Side::Partner).waker().clone();
        partner.wake_by_ref();
        let only_partner = Woken {
            connection: false,
            partner: true,
        };
        assert_eq!(quiet.end(), only_partner, "only the partner was woken");
        assert_eq!(counting.0.load(Ordering::SeqCst), 0, "the task was not");
        connection.wake_by_ref();
        assert_eq!(
            counting.0.load(Ordering::SeqCst),
            1,
            "a wake after the poll"
        );
        quiet.hush(|| connection.wake_by_ref());
        assert_eq!(
            counting.0.load(Ordering::SeqCst),
            1,
            "a hushed wake is kept"
        );
        let hushed = Woken {
            connection: true,
            partner: false,
        };
        assert_eq!(quiet.end(), hushed);
        quiet.forget_task();
        partner.wake_by_ref();
        assert_eq!(
            counting.0.load(Ordering::SeqCst),
            1,
            "an idle lease wakes nobody"
        );
    }
}
