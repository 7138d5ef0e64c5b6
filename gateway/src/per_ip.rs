//! Per-client-IP counters of things held at once (requests in flight,
//! upstream slots), so that one address never holds more than its share
//! (`docs/security-controls.md`, F-4).
//!
//! A [`PerIp`] counts; [`PerIp::try_take`] either counts one more for an
//! address, under a cap given at the call (the policy in force may change
//! between calls), or refuses; [`PerIp::take`] waits for a place instead.
//! The [`Held`] they return gives the place back when dropped. Addresses with nothing held are forgotten, so the map
//! holds at most one entry per address with something in flight.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// What each client IP holds now.
#[derive(Debug, Default)]
pub(crate) struct PerIp {
    held: Mutex<HashMap<IpAddr, usize>>,
    /// Woken whenever a place is given back while someone waits.
    freed: Notify,
    /// How many [`PerIp::take`] calls wait now: a place given back wakes
    /// them only if there are any (most counters never have a waiter, and
    /// waking nobody still takes `Notify`'s lock).
    waiting: AtomicUsize,
}

/// One counted place; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Held {
    /// The serving thread's own handle (`shard.rs`).
    counter: Arc<crate::shard::Local<PerIp>>,
    ip: IpAddr,
}

impl PerIp {
    /// Counts one more for `ip`, unless it already holds `cap`.
    pub(crate) fn try_take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<Held> {
        let mut held = self.lock();
        let count = held.entry(ip).or_insert(0);
        if *count >= cap {
            if *count == 0 {
                held.remove(&ip);
            }
            return None;
        }
        *count += 1;
        Some(Held {
            counter: crate::shard::local(self),
            ip,
        })
    }

    /// Counts one more for `ip`, waiting until it holds fewer than `cap`
    /// (bound the wait with a timeout).
    pub(crate) async fn take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Held {
        // Counted before the first look: a place given back after the
        // look (under the map's lock) sees the count and wakes this one.
        let _waiting = Waiting::count(&self.waiting);
        loop {
            // Registered before looking, so a place freed in between wakes it.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(held) = self.try_take(ip, cap) {
                return held;
            }
            freed.await;
        }
    }

    /// How many `ip` holds now.
    #[cfg(test)]
    fn count(&self, ip: IpAddr) -> usize {
        self.lock().get(&ip).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.counter.lock();
        if let Some(count) = held.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.ip);
            }
        }
        drop(held);
        if self.counter.waiting.load(Ordering::SeqCst) > 0 {
            self.counter.freed.notify_waiters();
        }
    }
}

/// One waiting [`PerIp::take`], counted for as long as it waits (also
/// when its future is dropped, e.g. on a timeout).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(waiting: &'a AtomicUsize) -> Waiting<'a> {
        waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_is_capped_alone_and_places_come_back_on_drop() {
        let counter = Arc::new(PerIp::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = counter.try_take(a, 2).unwrap();
        let _second = counter.try_take(a, 2).unwrap();
        assert!(counter.try_take(a, 2).is_none(), "a is at its cap");
        let other = counter.try_take(b, 2).expect("b has its own share");
        drop(first);
        assert_eq!(counter.count(a), 1);
        assert!(counter.try_take(a, 2).is_some());
        drop(other);
        assert!(
            counter.lock().get(&b).is_none(),
            "idle addresses are forgotten"
        );
        assert!(counter.try_take(b, 0).is_none(), "a cap of 0 refuses");
        assert!(counter.lock().get(&b).is_none());
    }

    #[tokio::test]
    async fn a_waiter_gets_the_next_place_freed_for_its_address() {
        let counter = Arc::new(PerIp::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let first = counter.try_take(a, 1).unwrap();
        let waiting = tokio::spawn({
            let counter = Arc::clone(&counter);
            async move { counter.take(a, 1).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        let second = waiting.await.unwrap();
        assert_eq!(counter.count(a), 1);
        assert_eq!(counter.waiting.load(Ordering::SeqCst), 0);
        drop(second);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_is_no_longer_counted() {
        let counter = Arc::new(PerIp::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let _first = counter.try_take(a, 1).unwrap();
        let waited =
            tokio::time::timeout(std::time::Duration::from_secs(1), counter.take(a, 1)).await;
        assert!(waited.is_err(), "no place came free");
        assert_eq!(counter.waiting.load(Ordering::SeqCst), 0);
    }
}
