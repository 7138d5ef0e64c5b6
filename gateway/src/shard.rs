//! Which serving thread the code runs on: the HTTPS listener is served by
//! one single-threaded runtime per core (`server.threads`, see
//! `docs/architecture.md`), and what each of them keeps for itself (its
//! idle upstream connections) is found by this index. Threads that serve
//! nothing (the operators' listener, housekeeping, tests) are shard 0.

use std::cell::Cell;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// A value on a cache line of its own (128 bytes: two lines, which the
/// adjacent-line prefetcher fetches together): what one serving thread
/// writes for every request must not share a line with what another
/// writes, or the line moves between their cores at every write.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Line<T>(pub(crate) T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Marks the calling thread as serving thread `index` (from 0).
pub(crate) fn enter(index: usize) {
    INDEX.with(|cell| cell.set(index));
}

/// The calling thread's index, reduced to one of `shards` (at least 1).
pub(crate) fn current(shards: usize) -> usize {
    INDEX.with(Cell::get) % shards.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_its_index_and_others_are_shard_zero() {
        std::thread::spawn(|| {
            enter(3);
            assert_eq!(current(4), 3);
            assert_eq!(current(2), 1);
        })
        .join()
        .unwrap();
        std::thread::spawn(|| assert_eq!(current(4), 0))
            .join()
            .unwrap();
    }
}
