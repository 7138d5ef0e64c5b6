//! Per-request series that serving threads write without sharing a cache
//! line: a counter and a histogram split into one shard per thread, summed
//! when `/metrics` is scraped; and each shard's handles on the series it
//! has written, so a request neither allocates its label set nor takes the
//! family's lock (`docs/benchmarks.md`, "The floor of the stack").
//!
//! The encoded text is the same as `prometheus_client`'s own `Counter` and
//! `Histogram` give (the tests below compare them).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Shards per series. Shard 0 is written by any thread, with atomic adds;
/// each of the others by the one thread that claimed it, with a plain
/// load and store: no atomic read-modify-write instruction, which costs
/// as much as dozens of plain ones (`docs/benchmarks.md`, "Atomic
/// instructions"). Threads that write series are the serving threads, one
/// per core by default; past 15 of them, the rest share shard 0.
const SHARDS: usize = 16;

/// A thread's shard, and whether it is the only thread writing it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shard {
    index: usize,
    owned: bool,
}

/// The shared shard.
const SHARED: Shard = Shard {
    index: 0,
    owned: false,
};

/// Shards claimed by a thread, one bit each (bit 0, the shared one, never).
static CLAIMED: AtomicUsize = AtomicUsize::new(0);

/// This thread's shard: claimed on first use, given back when the thread
/// ends.
pub(super) fn shard() -> Shard {
    thread_local! {
        static CLAIM: Claim = Claim::take();
    }
    CLAIM.try_with(|claim| claim.0).unwrap_or(SHARED)
}

/// A thread's claim on its shard.
struct Claim(Shard);

impl Claim {
    fn take() -> Claim {
        let mut claimed = CLAIMED.load(Ordering::Relaxed);
        loop {
            let free = (!(claimed | 1)).trailing_zeros() as usize;
            if free >= SHARDS {
                return Claim(SHARED);
            }
            match CLAIMED.compare_exchange_weak(
                claimed,
                claimed | 1 << free,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Claim(Shard {
                        index: free,
                        owned: true,
                    })
                }
                Err(now) => claimed = now,
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.0.owned {
            CLAIMED.fetch_and(!(1 << self.0.index), Ordering::AcqRel);
        }
    }
}

/// Replaces `cell` of `shard` with `change` of it: a plain load and store
/// where the thread writes it alone.
fn update(cell: &AtomicU64, shard: Shard, change: impl Fn(u64) -> u64) {
    if shard.owned {
        cell.store(change(cell.load(Ordering::Relaxed)), Ordering::Relaxed);
    } else {
        let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            Some(change(old))
        });
    }
}

/// Adds one to `cell` of `shard`.
fn increment(cell: &AtomicU64, shard: Shard) {
    update(cell, shard, |count| count.wrapping_add(1));
}

use crate::shard::Line;

/// A counter in shards.
#[derive(Debug, Clone, Default)]
pub(super) struct ShardedCounter(Arc<[Line<AtomicU64>; SHARDS]>);

impl ShardedCounter {
    pub(super) fn inc(&self) {
        let shard = shard();
        increment(&self.0[shard.index], shard);
    }

    fn get(&self) -> u64 {
        self.0
            .iter()
            .map(|line| line.0.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for ShardedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ShardedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A histogram in shards, over fixed bucket bounds (and `+Inf`).
#[derive(Debug, Clone)]
pub(super) struct ShardedHistogram {
    bounds: &'static [f64],
    shards: Arc<[HistogramShard]>,
}

/// Counters per cache line.
const PER_LINE: usize = 16;

/// One shard of a histogram: the sum of its observations (as `f64` bits),
/// their count, and one count per bucket (one more than the bounds: the
/// last is `+Inf`), on cache lines of its own.
#[derive(Debug)]
struct HistogramShard(Box<[Line<[AtomicU64; PER_LINE]>]>);

/// Where a histogram shard keeps its sum and count; buckets follow.
const SUM: usize = 0;
const COUNT: usize = 1;
const FIRST_BUCKET: usize = 2;

impl HistogramShard {
    fn new(buckets: usize) -> Self {
        let lines = (FIRST_BUCKET + buckets).div_ceil(PER_LINE);
        HistogramShard((0..lines).map(|_| Line::default()).collect())
    }

    fn at(&self, index: usize) -> &AtomicU64 {
        &self.0[index / PER_LINE].0[index % PER_LINE]
    }
}

impl ShardedHistogram {
    pub(super) fn new(bounds: &'static [f64]) -> Self {
        let shards = (0..SHARDS)
            .map(|_| HistogramShard::new(bounds.len() + 1))
            .collect();
        ShardedHistogram { bounds, shards }
    }

    pub(super) fn observe(&self, value: f64) {
        let which = shard();
        let shard = &self.shards[which.index];
        let bucket = self
            .bounds
            .iter()
            .position(|bound| *bound >= value)
            .unwrap_or(self.bounds.len());
        increment(shard.at(FIRST_BUCKET + bucket), which);
        increment(shard.at(COUNT), which);
        update(shard.at(SUM), which, |bits| {
            (f64::from_bits(bits) + value).to_bits()
        });
    }
}

impl TypedMetric for ShardedHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for ShardedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (mut sum, mut count) = (0.0, 0);
        let mut buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .map(|bound| (bound, 0))
            .collect();
        for shard in self.shards.iter() {
            sum += f64::from_bits(shard.at(SUM).load(Ordering::Relaxed));
            count += shard.at(COUNT).load(Ordering::Relaxed);
            for (index, total) in buckets.iter_mut().enumerate() {
                total.1 += shard.at(FIRST_BUCKET + index).load(Ordering::Relaxed);
            }
        }
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Handles a shard keeps on the series it has written, looked up by key.
/// The lock is the shard's own: only its thread takes it, so it is never
/// contended. At most [`MAX_REMEMBERED`] keys per shard are kept (policy
/// reloads may rename routes); past that the list starts over.
#[derive(Debug)]
pub(super) struct Remembered<K, V> {
    shards: Box<[RememberedShard<K, V>]>,
}

/// One shard's remembered keys and their handles.
type Entries<K, V> = Vec<(K, V)>;
type RememberedShard<K, V> = Line<Mutex<Entries<K, V>>>;

const MAX_REMEMBERED: usize = 256;

impl<K, V> Default for Remembered<K, V> {
    fn default() -> Self {
        Remembered {
            shards: (0..SHARDS).map(|_| Line(Mutex::new(Vec::new()))).collect(),
        }
    }
}

impl<K, V> Remembered<K, V> {
    /// Runs `then` on the handles of the first key that `matches`, or on
    /// those `create` makes (then remembered under `key()`). The handles
    /// are lent, not cloned: a clone of a series' handle is an atomic
    /// reference count taken and given back.
    pub(super) fn with<R>(
        &self,
        matches: impl Fn(&K) -> bool,
        key: impl FnOnce() -> K,
        create: impl FnOnce() -> V,
        then: impl FnOnce(&V) -> R,
    ) -> R {
        let mut list = self.lock();
        if let Some((_, value)) = list.iter().find(|(k, _)| matches(k)) {
            return then(value);
        }
        if list.len() >= MAX_REMEMBERED {
            list.clear();
        }
        list.push((key(), create()));
        let (_, value) = list.last().expect("just pushed");
        then(value)
    }

    fn lock(&self) -> MutexGuard<'_, Entries<K, V>> {
        self.shards[shard().index]
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    use super::*;

    const BOUNDS: [f64; 3] = [0.01, 0.1, 1.0];

    fn text(register: impl FnOnce(&mut Registry)) -> String {
        let mut registry = Registry::default();
        register(&mut registry);
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn sharded_series_encode_as_the_plain_ones_across_threads() {
        // Values whose sums are exact in any order.
        let values = [0.005, 0.25, 0.5, 4.0, 0.0625, 0.125];
        let (plain_counter, plain_histogram) = (Counter::<u64>::default(), Histogram::new(BOUNDS));
        let (counter, histogram) = (ShardedCounter::default(), ShardedHistogram::new(&BOUNDS));
        // Alive together, so each holds a shard of its own if one is free.
        let together = std::sync::Barrier::new(3);
        std::thread::scope(|scope| {
            for chunk in values.chunks(2) {
                let (counter, histogram, together) = (&counter, &histogram, &together);
                scope.spawn(move || {
                    together.wait();
                    for value in chunk {
                        counter.inc();
                        histogram.observe(*value);
                    }
                    together.wait();
                });
            }
        });
        for value in values {
            plain_counter.inc();
            plain_histogram.observe(value);
        }
        // Which shards the threads got depends on what other tests' threads
        // hold at the time; the text must be the same either way.
        let expected = text(|r| {
            r.register("requests", "help", plain_counter);
            r.register("duration", "help", plain_histogram);
        });
        let sharded = text(|r| {
            r.register("requests", "help", counter);
            r.register("duration", "help", histogram);
        });
        assert_eq!(sharded, expected);
        assert!(
            sharded.contains("duration_bucket{le=\"+Inf\"} 6"),
            "{sharded}"
        );
    }

    #[test]
    fn more_threads_than_shards_lose_no_count() {
        let (counter, histogram) = (ShardedCounter::default(), ShardedHistogram::new(&BOUNDS));
        let threads = SHARDS + 4;
        let together = std::sync::Barrier::new(threads);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    // All alive at once: the last ones find every shard
                    // claimed and share shard 0.
                    together.wait();
                    for _ in 0..1000 {
                        counter.inc();
                        histogram.observe(0.5);
                    }
                    together.wait();
                });
            }
        });
        let expected = u64::try_from(threads * 1000).unwrap();
        assert_eq!(counter.get(), expected);
        let text = text(|registry| registry.register("h", "", histogram.clone()));
        assert!(text.contains(&format!("h_count {expected}")), "{text}");
    }

    #[test]
    fn remembered_handles_are_found_again_and_bounded() {
        let remembered = Remembered::<String, ShardedCounter>::default();
        remembered.with(
            |k| k == "a",
            || "a".into(),
            ShardedCounter::default,
            ShardedCounter::inc,
        );
        let again = remembered.with(
            |k| k == "a",
            || unreachable!(),
            || unreachable!(),
            |c| c.get(),
        );
        assert_eq!(again, 1, "the same series");
        for i in 0..MAX_REMEMBERED {
            let name = format!("route-{i}");
            remembered.with(
                |k| *k == name,
                || name.clone(),
                ShardedCounter::default,
                |_| (),
            );
        }
        assert!(remembered.lock().len() <= MAX_REMEMBERED);
    }
}
