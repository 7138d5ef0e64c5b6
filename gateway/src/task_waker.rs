//! The waker of the task that polls a future of ours, for the wakes that
//! reach that future's own wakers (`accept/on_wake.rs`, `proxy/quiet.rs`).
//!
//! A task polls with the same waker every time, so it is handed over only
//! when another task polls, and a poll by the same task costs no atomic
//! read-modify-write (`docs/benchmarks.md`, "Atomic instructions").

use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

/// Where the future's wakers find the task to wake (shared with them).
#[derive(Debug, Default)]
pub(crate) struct TaskWaker(Mutex<Option<Waker>>);

/// The poller's side: the task waker it last handed over.
#[derive(Debug, Default)]
pub(crate) struct Registered(Option<Waker>);

impl TaskWaker {
    /// Wakes the task that polled last, if any. The waker stays: every
    /// wake until the next poll reaches it.
    pub(crate) fn wake(&self) {
        if let Some(task) = &*self.lock() {
            task.wake_by_ref();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Waker>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Registered {
    /// Hands `task` to `to` unless it is the one handed last.
    pub(crate) fn register(&mut self, to: &TaskWaker, task: &Waker) {
        if !self.0.as_ref().is_some_and(|known| known.will_wake(task)) {
            *to.lock() = Some(task.clone());
            self.0 = Some(task.clone());
        }
    }

    /// Takes the task back from `from`: later wakes reach nobody.
    pub(crate) fn forget(&mut self, from: &TaskWaker) {
        if self.0.take().is_some() {
            *from.lock() = None;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    /// A task waker that counts its wakes.
    #[derive(Default)]
    pub(crate) struct Counting(pub(crate) AtomicUsize);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_registered_task_is_woken_until_forgotten() {
        let counting = Arc::new(Counting::default());
        let task = Waker::from(Arc::clone(&counting));
        let (slot, mut registered) = (TaskWaker::default(), Registered::default());
        slot.wake();
        registered.register(&slot, &task);
        registered.register(&slot, &task);
        slot.wake();
        slot.wake();
        assert_eq!(counting.0.load(Ordering::SeqCst), 2);
        registered.forget(&slot);
        slot.wake();
        assert_eq!(counting.0.load(Ordering::SeqCst), 2, "forgotten");
    }
}
