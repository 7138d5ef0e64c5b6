//! Which serving thread the code runs on: the HTTPS listener is served by
//! one single-threaded runtime per core (`server.threads`, see
//! `docs/architecture.md`), and what each of them keeps for itself (its
//! idle upstream connections) is found by this index. Threads that serve
//! nothing (the operators' listener, housekeeping, tests) are shard 0.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::sync::Arc;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
    /// The serving thread's handles ([`local`]); `None` elsewhere.
    static HANDLES: RefCell<Option<Handles>> = const { RefCell::new(None) };
}

/// A serving thread's handles, each under the address of its shared value.
type Handles = Vec<(usize, Box<dyn Any>)>;

/// The most handles a serving thread keeps (the shared values it hands
/// out per request are a handful, made once at start).
const MAX_HANDLES: usize = 64;

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
    HANDLES.with_borrow_mut(|handles| *handles = Some(Vec::new()));
}

/// Drops the calling serving thread's handles ([`local`]); called when it
/// stops serving.
pub(crate) fn leave() {
    let handles = HANDLES.with_borrow_mut(Option::take);
    drop(handles);
}

/// A handle on `shared` to keep for the length of a request (in a
/// response body, a place): on a serving thread, a handle of the thread's
/// own, so that each request counts a reference on a cache line only this
/// thread writes instead of on `shared`'s, which every serving thread
/// would write per request; elsewhere, a new one. The thread keeps
/// `shared` alive until [`leave`].
pub(crate) fn local<T: Send + Sync + 'static>(shared: &Arc<T>) -> Arc<Local<T>> {
    let key = Arc::as_ptr(shared) as usize;
    let found = HANDLES.with_borrow_mut(|handles| {
        let handles = handles.as_mut()?;
        let known = handles
            .iter()
            .find(|(of, _)| *of == key)
            .and_then(|(_, handle)| handle.downcast_ref::<Arc<Local<T>>>());
        if let Some(handle) = known {
            return Some(Arc::clone(handle));
        }
        let handle = Arc::new(Local(Arc::clone(shared)));
        if handles.len() < MAX_HANDLES {
            handles.push((key, Box::new(Arc::clone(&handle))));
        }
        Some(handle)
    });
    found.unwrap_or_else(|| Arc::new(Local(Arc::clone(shared))))
}

/// A thread's handle on a shared value ([`local`]).
#[derive(Debug)]
pub(crate) struct Local<T>(Arc<T>);

impl<T> Local<T> {
    /// A new handle on `shared`, for a thread to keep as its own.
    pub(crate) fn new(shared: Arc<T>) -> Self {
        Local(shared)
    }

    /// The shared value itself.
    pub(crate) fn shared(&self) -> &Arc<T> {
        &self.0
    }
}

impl<T> std::ops::Deref for Local<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Whether the calling thread is a serving thread ([`enter`], not yet
/// [`leave`]).
pub(crate) fn is_serving() -> bool {
    HANDLES.with_borrow(Option::is_some)
}

/// The calling thread's index, reduced to one of `shards` (at least 1).
pub(crate) fn current(shards: usize) -> usize {
    INDEX.with(Cell::get) % shards.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serving_thread_hands_out_one_handle_per_shared_value() {
        let (a, b) = (Arc::new(1_u32), Arc::new("two"));
        let (a2, b2) = (Arc::clone(&a), Arc::clone(&b));
        std::thread::spawn(move || {
            assert!(
                !Arc::ptr_eq(&local(&a2), &local(&a2)),
                "not serving: new ones"
            );
            enter(0);
            let first = local(&a2);
            assert!(Arc::ptr_eq(&first, &local(&a2)), "the thread's own");
            assert!(Arc::ptr_eq(first.shared(), &a2));
            assert!(Arc::ptr_eq(local(&b2).shared(), &b2));
            leave();
            assert!(!Arc::ptr_eq(&first, &local(&a2)), "none after leave");
        })
        .join()
        .unwrap();
        assert_eq!(Arc::strong_count(&a), 1, "given back when the thread left");
        assert_eq!(Arc::strong_count(&b), 1);
    }

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
