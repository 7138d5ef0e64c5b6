//! Session stage: each principal's [`Session`], in memory only, with idle
//! expiry and caps on count and bytes.
//!
//! A request checks out its principal's `Slot` (creating it on first use),
//! runs the engine while holding the slot's session lock, then records the
//! session's new size. Sessions end when idle for [`Limits::idle_timeout`],
//! when `DELETE /api/session` asks, or — least recently used first — when
//! there are more than [`Limits::max_sessions`] or they hold more than
//! [`Limits::max_bytes`]. Time comes from a [`Clock`] so that tests can move
//! it. Nothing here is ever written to disk.
//!
//! A request still running when its session ends finishes against the
//! detached session and its result is discarded with it.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::api::{Session, UnknownSettings};
use crate::identity::Principal;

/// Default idle time after which a session ends: 30 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Default cap on the number of sessions.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;
/// Default cap on the bytes all sessions hold together: 512 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 512 * 1024 * 1024;

/// Limits on the session store.
///
/// # Defaults
/// * `idle_timeout`: [`DEFAULT_IDLE_TIMEOUT`] (30 min)
/// * `max_sessions`: [`DEFAULT_MAX_SESSIONS`] (10,000)
/// * `max_bytes`: [`DEFAULT_MAX_BYTES`] (512 MiB, as estimated by
///   [`Session::held_bytes`]). The session used last is never evicted for
///   bytes, so the real bound is `max_bytes` plus one session.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A session unused for this long ends.
    pub idle_timeout: Duration,
    /// At most this many sessions exist at once.
    pub max_sessions: NonZeroUsize,
    /// The sessions hold at most about this many bytes together.
    pub max_bytes: u64,
    /// What a new session does with unknown settings keys
    /// (`--legacy-settings-keys`).
    pub unknown_settings: UnknownSettings,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_sessions: NonZeroUsize::new(DEFAULT_MAX_SESSIONS).expect("default is non-zero"),
            max_bytes: DEFAULT_MAX_BYTES,
            unknown_settings: UnknownSettings::Refuse,
        }
    }
}

/// Where the store reads the time. Only differences between instants
/// matter; the store needs them never to go backwards.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The monotonic system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to, for tests of expiry.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Instant>,
}

impl ManualClock {
    /// A clock standing at the current instant.
    pub fn new() -> Self {
        Self {
            now: Mutex::new(Instant::now()),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One principal's session and the bookkeeping of the requests using it.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Tells this slot apart from a later one for the same principal.
    id: u64,
    /// The data. A tokio mutex: a request waits for its turn without holding
    /// a thread, and the owned guard travels into the blocking engine task.
    pub(crate) session: Arc<tokio::sync::Mutex<Session>>,
    /// Requests of this principal between checkout and reply.
    pub(crate) pending: AtomicUsize,
}

/// Why a session ended (the `reason` label of
/// `tradehabit_worker_sessions_ended_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are written as exposed
enum EndReason {
    /// Unused for the idle timeout.
    idle,
    /// Evicted (least recently used) to stay within the session count.
    max_sessions,
    /// Evicted (least recently used) to stay within the byte cap.
    max_bytes,
    /// Erased by `DELETE /api/session`.
    deleted,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndLabels {
    reason: EndReason,
}

/// The store's metrics.
#[derive(Debug, Clone)]
pub(crate) struct SessionMetrics {
    active: Gauge,
    bytes: Gauge,
    ended: Family<EndLabels, Counter>,
}

impl SessionMetrics {
    /// Registers `sessions_active`, `session_bytes` and
    /// `sessions_ended_total{reason}` under the registry's prefix.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            active: Gauge::default(),
            bytes: Gauge::default(),
            ended: Family::default(),
        };
        registry.register(
            "sessions_active",
            "Principals with a session in memory",
            metrics.active.clone(),
        );
        registry.register(
            "session_bytes",
            "Estimated bytes held by all sessions",
            metrics.bytes.clone(),
        );
        registry.register(
            "sessions_ended",
            "Sessions ended, by reason",
            metrics.ended.clone(),
        );
        for reason in [
            EndReason::idle,
            EndReason::max_sessions,
            EndReason::max_bytes,
            EndReason::deleted,
        ] {
            let _ = metrics.ended.get_or_create(&EndLabels { reason });
        }
        metrics
    }

    fn count_end(&self, reason: EndReason) {
        self.ended.get_or_create(&EndLabels { reason }).inc();
    }
}

/// The sessions of all principals.
#[derive(Debug)]
pub(crate) struct Store {
    limits: Limits,
    clock: Arc<dyn Clock>,
    metrics: SessionMetrics,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Principal, Entry>,
    /// Use order: the smallest tick is the least recently used session.
    by_use: BTreeMap<u64, Principal>,
    next_tick: u64,
    next_id: u64,
    total_bytes: u64,
}

#[derive(Debug)]
struct Entry {
    slot: Arc<Slot>,
    tick: u64,
    last_used: Instant,
    bytes: u64,
}

impl Store {
    /// An empty store.
    pub(crate) fn new(limits: Limits, clock: Arc<dyn Clock>, metrics: SessionMetrics) -> Self {
        Self {
            limits,
            clock,
            metrics,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The principal's slot, created (with a fresh [`Session`]) if there is
    /// none, and marked as just used. Ends idle sessions first, and evicts
    /// the least recently used one if a new slot would exceed the count cap.
    pub(crate) fn checkout(&self, principal: &Principal) -> Arc<Slot> {
        let now = self.clock.now();
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        if let Some(entry) = inner.entries.get(principal) {
            let slot = Arc::clone(&entry.slot);
            Self::touch(&mut inner, principal, now);
            return slot;
        }
        while inner.entries.len() >= self.limits.max_sessions.get() {
            if !self.evict_oldest(&mut inner, EndReason::max_sessions) {
                break;
            }
        }
        let slot = Arc::new(Slot {
            id: inner.next_id,
            session: Arc::new(tokio::sync::Mutex::new(Session::with_unknown_settings(
                self.limits.unknown_settings,
            ))),
            pending: AtomicUsize::new(0),
        });
        inner.next_id += 1;
        let tick = Self::next_tick(&mut inner);
        inner.by_use.insert(tick, principal.clone());
        inner.entries.insert(
            principal.clone(),
            Entry {
                slot: Arc::clone(&slot),
                tick,
                last_used: now,
                bytes: 0,
            },
        );
        self.publish(&inner);
        slot
    }

    /// Records the session's size after a request, marks it as just used,
    /// and evicts least recently used sessions while the total is over the
    /// byte cap (never this one). Ignored if the slot has ended meanwhile.
    pub(crate) fn record(&self, principal: &Principal, slot: &Slot, held_bytes: u64) {
        let now = self.clock.now();
        let mut inner = self.lock();
        let Some(entry) = inner.entries.get_mut(principal) else {
            return;
        };
        if entry.slot.id != slot.id {
            return;
        }
        let before = std::mem::replace(&mut entry.bytes, held_bytes);
        inner.total_bytes = inner.total_bytes - before + held_bytes;
        Self::touch(&mut inner, principal, now);
        while inner.total_bytes > self.limits.max_bytes && inner.entries.len() > 1 {
            if !self.evict_oldest(&mut inner, EndReason::max_bytes) {
                break;
            }
        }
        self.publish(&inner);
    }

    /// Erases the principal's session at once. Returns whether there was one.
    pub(crate) fn remove(&self, principal: &Principal) -> bool {
        let mut inner = self.lock();
        let removed = Self::drop_entry(&mut inner, principal).is_some();
        if removed {
            self.metrics.count_end(EndReason::deleted);
            self.publish(&inner);
        }
        removed
    }

    /// Ends every session idle for the timeout; returns how many. Called by
    /// the periodic sweep and before metrics are read.
    pub(crate) fn expire_idle(&self) -> usize {
        let now = self.clock.now();
        let mut inner = self.lock();
        let ended = self.expire(&mut inner, now);
        if ended > 0 {
            self.publish(&inner);
        }
        ended
    }

    /// The number of sessions and the bytes they hold.
    #[cfg(test)]
    fn usage(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.entries.len(), inner.total_bytes)
    }

    /// The limits this store enforces.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The critical sections below cannot leave `Inner` half-updated in a
        // way that matters (no user code runs under the lock), so a poisoned
        // lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn expire(&self, inner: &mut Inner, now: Instant) -> usize {
        let mut ended = 0;
        while let Some((_, principal)) = inner.by_use.first_key_value() {
            let last_used = inner.entries[principal].last_used;
            if now.saturating_duration_since(last_used) < self.limits.idle_timeout {
                break;
            }
            let principal = principal.clone();
            Self::drop_entry(inner, &principal);
            self.metrics.count_end(EndReason::idle);
            ended += 1;
        }
        ended
    }

    fn evict_oldest(&self, inner: &mut Inner, reason: EndReason) -> bool {
        let Some((_, principal)) = inner.by_use.first_key_value() else {
            return false;
        };
        let principal = principal.clone();
        Self::drop_entry(inner, &principal);
        self.metrics.count_end(reason);
        true
    }

    fn drop_entry(inner: &mut Inner, principal: &Principal) -> Option<Entry> {
        let entry = inner.entries.remove(principal)?;
        inner.by_use.remove(&entry.tick);
        inner.total_bytes -= entry.bytes;
        Some(entry)
    }

    fn touch(inner: &mut Inner, principal: &Principal, now: Instant) {
        let tick = Self::next_tick(inner);
        let Some(entry) = inner.entries.get_mut(principal) else {
            return;
        };
        let old_tick = std::mem::replace(&mut entry.tick, tick);
        entry.last_used = now;
        inner.by_use.remove(&old_tick);
        inner.by_use.insert(tick, principal.clone());
    }

    fn next_tick(inner: &mut Inner) -> u64 {
        inner.next_tick += 1;
        inner.next_tick
    }

    fn publish(&self, inner: &Inner) {
        self.metrics
            .active
            .set(i64::try_from(inner.entries.len()).unwrap_or(i64::MAX));
        self.metrics
            .bytes
            .set(i64::try_from(inner.total_bytes).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> Principal {
        Principal::Named(name.as_bytes().into())
    }

    fn store(limits: Limits) -> (Store, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        let metrics = SessionMetrics::register(&mut Registry::default());
        (Store::new(limits, clock.clone(), metrics), clock)
    }

    fn limits(max_sessions: usize, max_bytes: u64) -> Limits {
        Limits {
            idle_timeout: Duration::from_secs(60),
            max_sessions: NonZeroUsize::new(max_sessions).unwrap(),
            max_bytes,
            unknown_settings: UnknownSettings::Refuse,
        }
    }

    fn has(store: &Store, principal: &Principal) -> bool {
        store.lock().entries.contains_key(principal)
    }

    #[test]
    fn each_principal_gets_its_own_slot_and_keeps_it() {
        let (store, _) = store(Limits::default());
        let a1 = store.checkout(&named("a"));
        let b = store.checkout(&named("b"));
        let a2 = store.checkout(&named("a"));
        let anonymous = store.checkout(&Principal::Anonymous);
        assert!(Arc::ptr_eq(&a1, &a2));
        assert!(!Arc::ptr_eq(&a1, &b));
        assert!(!Arc::ptr_eq(&a1, &anonymous));
        assert_eq!(store.usage().0, 3);
    }

    #[test]
    fn a_session_idle_for_the_timeout_ends_and_a_used_one_does_not() {
        let (store, clock) = store(limits(10, u64::MAX));
        let first = store.checkout(&named("idle"));
        store.checkout(&named("busy"));
        clock.advance(Duration::from_secs(59));
        store.checkout(&named("busy"));
        assert_eq!(store.expire_idle(), 0);
        clock.advance(Duration::from_secs(1));
        assert_eq!(store.expire_idle(), 1);
        assert!(!has(&store, &named("idle")));
        assert!(has(&store, &named("busy")));
        // Coming back after expiry gives a fresh session, not the old one.
        assert!(!Arc::ptr_eq(&first, &store.checkout(&named("idle"))));
    }

    #[test]
    fn recording_counts_as_use_for_idle_expiry() {
        let (store, clock) = store(limits(10, u64::MAX));
        let slot = store.checkout(&named("a"));
        clock.advance(Duration::from_secs(50));
        store.record(&named("a"), &slot, 10);
        clock.advance(Duration::from_secs(50));
        assert_eq!(store.expire_idle(), 0);
        clock.advance(Duration::from_secs(10));
        assert_eq!(store.expire_idle(), 1);
        assert_eq!(store.usage(), (0, 0));
    }

    #[test]
    fn over_the_count_cap_the_least_recently_used_session_is_evicted() {
        let (store, _) = store(limits(2, u64::MAX));
        store.checkout(&named("a"));
        store.checkout(&named("b"));
        store.checkout(&named("a")); // b is now the least recently used
        store.checkout(&named("c"));
        assert!(has(&store, &named("a")));
        assert!(!has(&store, &named("b")));
        assert!(has(&store, &named("c")));
        assert_eq!(store.usage().0, 2);
    }

    #[test]
    fn over_the_byte_cap_least_recently_used_sessions_go_but_never_the_one_just_used() {
        let (store, _) = store(limits(10, 100));
        let a = store.checkout(&named("a"));
        store.record(&named("a"), &a, 40);
        let b = store.checkout(&named("b"));
        store.record(&named("b"), &b, 40);
        let c = store.checkout(&named("c"));
        store.record(&named("c"), &c, 40);
        assert!(!has(&store, &named("a")));
        assert_eq!(store.usage(), (2, 80));
        // One session alone over the cap is kept (the bound is cap + one).
        store.record(&named("c"), &c, 500);
        assert_eq!(store.usage(), (1, 500));
        assert!(has(&store, &named("c")));
    }

    #[test]
    fn remove_erases_at_once_and_a_late_record_for_the_old_slot_is_ignored() {
        let (store, _) = store(limits(10, u64::MAX));
        let old = store.checkout(&named("a"));
        store.record(&named("a"), &old, 30);
        assert!(store.remove(&named("a")));
        assert!(!store.remove(&named("a")));
        assert_eq!(store.usage(), (0, 0));
        let new = store.checkout(&named("a"));
        store.record(&named("a"), &old, 999);
        assert_eq!(store.usage(), (1, 0));
        store.record(&named("a"), &new, 5);
        assert_eq!(store.usage(), (1, 5));
    }

    #[test]
    fn the_byte_total_follows_every_change() {
        let (store, clock) = store(limits(10, u64::MAX));
        let a = store.checkout(&named("a"));
        let b = store.checkout(&named("b"));
        store.record(&named("a"), &a, 10);
        store.record(&named("b"), &b, 20);
        store.record(&named("a"), &a, 5);
        assert_eq!(store.usage(), (2, 25));
        clock.advance(Duration::from_secs(60));
        store.expire_idle();
        assert_eq!(store.usage(), (0, 0));
    }
}
