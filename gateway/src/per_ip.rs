//! Per-client-IP counters of things held at once (requests in flight,
//! upstream slots), so that one address never holds more than its share
//! (`docs/security-controls.md`, F-4).
//!
//! A [`PerIp`] counts; [`PerIp::try_take`] either counts one more for an
//! address, under a cap given at the call (the policy in force may change
//! between calls), or refuses; [`PerIp::take`] waits for a place instead.
//! The [`Held`] they return gives the place back when dropped.
//!
//! Each address with something held has a count of its own (a `Client`),
//! which every request from it shares, whichever thread serves it; the map
//! from addresses to counts is only read when a serving thread meets an
//! address other than the last one it counted for. So the requests of a
//! keep-alive connection, or of one client's several connections, take and
//! give back their places with one atomic update each: no lock, no hash
//! (`docs/benchmarks.md`, "Per-IP counts without a lock"). An address is
//! forgotten once nothing holds it: no place taken, and no serving thread
//! remembering it as its last (at most one address per serving thread).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

use crate::shard::Local;

/// What each client IP holds now.
#[derive(Debug, Default)]
pub(crate) struct PerIp {
    /// The counts of the addresses something holds.
    clients: Mutex<HashMap<IpAddr, Weak<Client>>>,
}

/// The most counters a serving thread remembers a client for.
const MAX_REMEMBERED: usize = 8;

thread_local! {
    /// On a serving thread (`shard.rs`), the last client counted for, per
    /// counter: each on a handle of the thread's own (`shard.rs`), so that
    /// a place counts its reference on a line only this thread writes.
    static REMEMBERED: RefCell<Vec<Arc<Local<Client>>>> = const { RefCell::new(Vec::new()) };
}

/// One address's count, shared by every request from it.
#[derive(Debug)]
struct Client {
    ip: IpAddr,
    /// The [`PerIp`] it counts for, and whose map it leaves. Also tells a
    /// thread's remembered clients of one counter from another's: the
    /// `Weak` keeps the counter's address from being reused.
    registry: Weak<PerIp>,
    held: AtomicUsize,
    /// Woken whenever a place is given back while someone waits.
    freed: Notify,
    /// How many [`PerIp::take`] calls wait now: a place given back wakes
    /// them only if there are any (waking nobody still takes `Notify`'s
    /// lock).
    waiting: AtomicUsize,
}

/// One counted place; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Held {
    /// A serving thread's own handle (kept in [`REMEMBERED`]), or one
    /// made for this place alone elsewhere.
    client: Arc<Local<Client>>,
}

impl PerIp {
    /// Counts one more for `ip`, unless it already holds `cap`.
    pub(crate) fn try_take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<Held> {
        let client = self.client(ip);
        client.try_take(cap).then(|| Held { client })
    }

    /// Counts one more for `ip`, waiting until it holds fewer than `cap`
    /// (bound the wait with a timeout).
    pub(crate) async fn take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Held {
        let client = self.client(ip);
        // Counted before the first look: a place given back after the
        // look sees the count and wakes this one.
        let _waiting = Waiting::count(&client.waiting);
        loop {
            // Registered before looking, so a place freed in between wakes it.
            let freed = client.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if client.try_take(cap) {
                return Held {
                    client: Arc::clone(&client),
                };
            }
            freed.await;
        }
    }

    /// `ip`'s count: the one this thread counted for last, or the map's,
    /// or a new one.
    fn client(self: &Arc<Self>, ip: IpAddr) -> Arc<Local<Client>> {
        let remembered = REMEMBERED.with_borrow(|remembered| {
            remembered
                .iter()
                .find(|client| client.counts_for(self) && client.ip == ip)
                .cloned()
        });
        if let Some(handle) = remembered {
            return handle;
        }
        let client = {
            let mut clients = self.lock();
            match clients.get(&ip).and_then(Weak::upgrade) {
                Some(client) => client,
                None => {
                    let client = Arc::new(Client::new(ip, self));
                    clients.insert(ip, Arc::downgrade(&client));
                    client
                }
            }
        };
        let handle = Arc::new(Local::new(client));
        if crate::shard::is_serving() {
            let replaced = REMEMBERED.with_borrow_mut(|remembered| {
                let mine = remembered.iter().position(|c| c.counts_for(self));
                match mine {
                    Some(at) => Some(std::mem::replace(&mut remembered[at], Arc::clone(&handle))),
                    None if remembered.len() < MAX_REMEMBERED => {
                        remembered.push(Arc::clone(&handle));
                        None
                    }
                    None => None,
                }
            });
            // Dropped outside the borrow: the last reference leaves the map.
            drop(replaced);
        }
        handle
    }

    /// How many `ip` holds now.
    #[cfg(test)]
    fn count(&self, ip: IpAddr) -> usize {
        self.lock()
            .get(&ip)
            .and_then(Weak::upgrade)
            .map_or(0, |client| client.held.load(Ordering::SeqCst))
    }

    /// Whether the map still has `ip`.
    #[cfg(test)]
    fn knows(&self, ip: IpAddr) -> bool {
        self.lock().contains_key(&ip)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Weak<Client>>> {
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Client {
    /// `ip`'s count for `counter`, with nothing held yet.
    fn new(ip: IpAddr, counter: &Arc<PerIp>) -> Self {
        Client {
            ip,
            registry: Arc::downgrade(counter),
            held: AtomicUsize::new(0),
            freed: Notify::new(),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Whether this counts for `counter`.
    fn counts_for(&self, counter: &Arc<PerIp>) -> bool {
        std::ptr::eq(self.registry.as_ptr(), Arc::as_ptr(counter))
    }

    /// Counts one more unless `cap` are held.
    fn try_take(&self, cap: usize) -> bool {
        // Sequentially consistent with the waiters' count (see `Held`'s
        // drop): either the giver sees a waiter, or the waiter sees the
        // place given back.
        self.held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
                (held < cap).then_some(held + 1)
            })
            .is_ok()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let client = &self.client;
        client.held.fetch_sub(1, Ordering::SeqCst);
        if client.waiting.load(Ordering::SeqCst) > 0 {
            client.freed.notify_waiters();
        }
    }
}

impl Drop for Client {
    /// The last reference is gone: the map forgets the address, unless a
    /// new count for it has taken this one's place there meanwhile.
    fn drop(&mut self) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let mut clients = registry.lock();
        if clients
            .get(&self.ip)
            .is_some_and(|client| client.strong_count() == 0)
        {
            clients.remove(&self.ip);
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
        assert!(!counter.knows(b), "idle addresses are forgotten");
        assert!(counter.try_take(b, 0).is_none(), "a cap of 0 refuses");
        assert!(!counter.knows(b));
    }

    #[test]
    fn a_serving_thread_remembers_one_address_per_counter_and_counts_it_with_the_others() {
        let counter = Arc::new(PerIp::default());
        let other_counter = Arc::new(PerIp::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        // Held here, off the serving thread: the serving thread's places
        // are counted on the same client.
        let outside = counter.try_take(a, 3).unwrap();
        // Joined, not scoped: a joined thread has dropped its thread-locals.
        std::thread::spawn({
            let (counter, other_counter) = (Arc::clone(&counter), Arc::clone(&other_counter));
            move || {
                crate::shard::enter(0);
                let first = counter.try_take(a, 3).unwrap();
                let second = counter.try_take(a, 3).unwrap();
                assert!(Arc::ptr_eq(&first.client, &second.client), "remembered");
                assert!(counter.try_take(a, 3).is_none(), "three held in all");
                assert_eq!(counter.count(a), 3);
                // The other counter has its own count for the same address.
                let elsewhere = other_counter.try_take(a, 1).unwrap();
                assert!(other_counter.try_take(a, 1).is_none());
                drop((first, second, elsewhere));
                // Remembered, so still known with nothing held …
                assert_eq!(counter.count(a), 1);
                assert!(other_counter.knows(a));
                // … until the thread counts for another address.
                drop(other_counter.try_take(b, 1).unwrap());
                assert!(!other_counter.knows(a), "forgotten once replaced");
                assert!(other_counter.knows(b));
                crate::shard::leave();
            }
        })
        .join()
        .unwrap();
        // The thread's end let go of what it remembered.
        assert!(!other_counter.knows(b));
        assert_eq!(counter.count(a), 1);
        drop(outside);
        assert!(!counter.knows(a));
    }

    #[test]
    fn a_new_count_for_an_address_is_not_forgotten_by_the_old_ones_end() {
        let counter = Arc::new(PerIp::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let old = counter.client(a);
        // The map's entry is replaced while the old count is still alive
        // (as when the old one's last reference is on its way out).
        let new = Arc::new(Local::new(Arc::new(Client::new(a, &counter))));
        counter.lock().insert(a, Arc::downgrade(new.shared()));
        drop(old);
        assert!(counter.knows(a), "the new count stays");
        drop(new);
        assert!(!counter.knows(a));
    }

    #[tokio::test]
    async fn a_waiter_gets_the_next_place_freed_for_its_address() {
        let counter = Arc::new(PerIp::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let first = counter.try_take(a, 1).unwrap();
        let client = Arc::clone(&first.client);
        let waiting = tokio::spawn({
            let counter = Arc::clone(&counter);
            async move { counter.take(a, 1).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert_eq!(client.waiting.load(Ordering::SeqCst), 1);
        drop(first);
        let second = waiting.await.unwrap();
        assert_eq!(counter.count(a), 1);
        assert_eq!(client.waiting.load(Ordering::SeqCst), 0);
        drop(second);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_is_no_longer_counted() {
        let counter = Arc::new(PerIp::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let first = counter.try_take(a, 1).unwrap();
        let waited =
            tokio::time::timeout(std::time::Duration::from_secs(1), counter.take(a, 1)).await;
        assert!(waited.is_err(), "no place came free");
        assert_eq!(first.client.waiting.load(Ordering::SeqCst), 0);
    }
}
