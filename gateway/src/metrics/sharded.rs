//! Per-request series that serving threads write without sharing a cache
//! line: a counter and a histogram split into one shard per thread, summed
//! when `/metrics` is scraped; and each shard's handles on the series it
//! has written, so a request neither allocates its label set nor takes the
//! family's lock (`docs/benchmarks.md`, "The floor of the stack").
//!
//! The encoded text is the same as `prometheus_client`'s own `Counter` and
//! `Histogram` give (the tests below compare them).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Shards per series: serving threads take them in turn (one per core by
/// default), any other thread shares them. A power of two.
const SHARDS: usize = 8;

/// This thread's shard: assigned on first use, in turn.
pub(super) fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<Option<usize>> = const { Cell::new(None) };
    }
    SHARD.with(|shard| {
        shard.get().unwrap_or_else(|| {
            let next = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            shard.set(Some(next));
            next
        })
    })
}

use crate::shard::Line;

/// A counter in shards.
#[derive(Debug, Clone, Default)]
pub(super) struct ShardedCounter(Arc<[Line<AtomicU64>; SHARDS]>);

impl ShardedCounter {
    pub(super) fn inc(&self) {
        self.0[shard()].0.fetch_add(1, Ordering::Relaxed);
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
    shards: Arc<[Line<HistogramShard>]>,
}

#[derive(Debug, Default)]
struct HistogramShard {
    /// The sum of the observations, as `f64` bits.
    sum: AtomicU64,
    count: AtomicU64,
    /// One more than the bounds: the last is `+Inf`. Each on a line of its
    /// own: the shards' bucket arrays are allocated one after the other.
    buckets: Box<[Line<AtomicU64>]>,
}

impl ShardedHistogram {
    pub(super) fn new(bounds: &'static [f64]) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Line(HistogramShard {
                    buckets: (0..=bounds.len()).map(|_| Line::default()).collect(),
                    ..HistogramShard::default()
                })
            })
            .collect();
        ShardedHistogram { bounds, shards }
    }

    pub(super) fn observe(&self, value: f64) {
        let shard = &self.shards[shard()].0;
        let bucket = self
            .bounds
            .iter()
            .position(|bound| *bound >= value)
            .unwrap_or(self.bounds.len());
        shard.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        shard.count.fetch_add(1, Ordering::Relaxed);
        // Only this thread writes its shard (others only when more threads
        // than shards run), so the update rarely retries.
        let _ = shard
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
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
        for Line(shard) in self.shards.iter() {
            sum += f64::from_bits(shard.sum.load(Ordering::Relaxed));
            count += shard.count.load(Ordering::Relaxed);
            for (total, bucket) in buckets.iter_mut().zip(shard.buckets.iter()) {
                total.1 += bucket.load(Ordering::Relaxed);
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
    shards: Box<[Shard<K, V>]>,
}

/// One shard's remembered keys and their handles.
type Entries<K, V> = Vec<(K, V)>;
type Shard<K, V> = Line<Mutex<Entries<K, V>>>;

const MAX_REMEMBERED: usize = 256;

impl<K, V> Default for Remembered<K, V> {
    fn default() -> Self {
        Remembered {
            shards: (0..SHARDS).map(|_| Line(Mutex::new(Vec::new()))).collect(),
        }
    }
}

impl<K, V: Clone> Remembered<K, V> {
    /// The handles of the first key that `matches`, or those `create`
    /// makes (then remembered under `key()`).
    pub(super) fn get_or_insert(
        &self,
        matches: impl Fn(&K) -> bool,
        key: impl FnOnce() -> K,
        create: impl FnOnce() -> V,
    ) -> V {
        let mut list = self.lock();
        if let Some((_, value)) = list.iter().find(|(k, _)| matches(k)) {
            return value.clone();
        }
        if list.len() >= MAX_REMEMBERED {
            list.clear();
        }
        let value = create();
        list.push((key(), value.clone()));
        value
    }

    fn lock(&self) -> MutexGuard<'_, Entries<K, V>> {
        self.shards[shard()]
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
        std::thread::scope(|scope| {
            for chunk in values.chunks(2) {
                let (counter, histogram) = (&counter, &histogram);
                scope.spawn(move || {
                    for value in chunk {
                        counter.inc();
                        histogram.observe(*value);
                    }
                });
            }
        });
        for value in values {
            plain_counter.inc();
            plain_histogram.observe(value);
        }
        assert!(
            counter
                .0
                .iter()
                .filter(|l| l.0.load(Ordering::Relaxed) > 0)
                .count()
                > 1
        );
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
    fn remembered_handles_are_found_again_and_bounded() {
        let remembered = Remembered::<String, ShardedCounter>::default();
        let first = remembered.get_or_insert(|k| k == "a", || "a".into(), ShardedCounter::default);
        first.inc();
        let again = remembered.get_or_insert(|k| k == "a", || unreachable!(), || unreachable!());
        assert_eq!(again.get(), 1, "the same series");
        for i in 0..MAX_REMEMBERED {
            let name = format!("route-{i}");
            remembered.get_or_insert(|k| *k == name, || name.clone(), ShardedCounter::default);
        }
        assert!(remembered.lock().len() <= MAX_REMEMBERED);
    }
}
