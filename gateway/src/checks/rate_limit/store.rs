//! The key store behind every limiter: bounded (a key beyond the cap
//! shares one overflow slot) and able to *look* at a key's GCRA state
//! without changing it.
//!
//! governor decides inside [`StateStore::measure_and_replace`]: it hands
//! the store a function from the key's stored state (its theoretical
//! arrival time) to the decision and the new state, and the store saves
//! the new state. A [`Probe`] that only looks runs the very same function
//! on the stored state and saves nothing, so a look answers exactly what a
//! spend at that moment would answer, through governor's own arithmetic.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{NotKeyed, StateStore};

/// A key as a limiter sees it, and whether this decision spends a cell.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Probe<K> {
    pub(super) key: K,
    /// `false`: decide as governor would, but store nothing.
    pub(super) spend: bool,
}

/// A key slot in a bounded store: a tracked key, or the shared overflow.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Slot<K> {
    Key(K),
    Overflow,
}

/// A governor key store that tracks at most `max_keys` keys; further keys
/// share one overflow slot. Under concurrent first requests the bound can
/// be exceeded by the number of requests in flight, never more.
pub(super) struct BoundedStore<K: Hash + Eq + Clone> {
    inner: DashMapStateStore<Slot<K>>,
    max_keys: usize,
    /// Decisions (looks and spends) made in the overflow slot; shared
    /// with the owning limit.
    overflowed: Arc<AtomicU64>,
}

impl<K: Hash + Eq + Clone> BoundedStore<K> {
    pub(super) fn new(max_keys: usize, overflowed: Arc<AtomicU64>) -> Self {
        Self {
            inner: DashMapStateStore::default(),
            max_keys,
            overflowed,
        }
    }

    fn slot_for(&self, key: &K) -> Slot<K> {
        let slot = Slot::Key(key.clone());
        if self.inner.contains_key(&slot) || self.inner.len() < self.max_keys {
            slot
        } else {
            self.overflowed.fetch_add(1, Ordering::Relaxed);
            Slot::Overflow
        }
    }
}

impl<K: Hash + Eq + Clone> StateStore for BoundedStore<K> {
    type Key = Probe<K>;

    fn measure_and_replace<T, F, E>(&self, probe: &Probe<K>, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let slot = self.slot_for(&probe.key);
        if probe.spend {
            return self.inner.measure_and_replace(&slot, f);
        }
        // A look: no entry is created for an unknown key (it is fresh),
        // and a known one is written back unchanged.
        match self.inner.get(&slot) {
            None => f(None).map(|(decision, _)| decision),
            Some(state) => state.measure_and_replace(&NotKeyed::NonKey, |stored| {
                let (decision, _) = f(stored)?;
                Ok((decision, stored.unwrap_or_else(|| Nanos::from(0))))
            }),
        }
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<Probe<K>> for BoundedStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        self.inner.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        self.inner.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.inner.len()
    }

    fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}
