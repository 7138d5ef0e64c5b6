//! Batched audit writes: each serving thread (`server.threads`) keeps its
//! own buffer of serialised lines, appended without the log's lock, and
//! hands it to the sink with one `write` (`docs/audit-and-metrics.md`,
//! "Batched writes").
//!
//! A buffer is flushed when its serving thread's runtime is about to park
//! (it ran out of work: a single request's line goes out without any
//! further traffic), when it holds [`MAX_BATCH_BYTES`], when a line is
//! appended and the oldest line waiting is `audit.flush_interval` old, when
//! the thread stops (after its connections drained), before the file is
//! reopened (so lines written before a rotation end in the old file), and at
//! shutdown. The chain fields are computed at flush time under the sink's
//! lock (`writer.rs`), in the order the lines are written, so a file
//! written by several threads verifies. A failed flush loses its lines
//! whole: they are counted and one gap record says so.
//!
//! Threads that are not serving threads (the plain-HTTP listener, tests)
//! and `audit.flush_interval = "0s"` write each line at once, as before.
//! Each buffer sits behind its own mutex, which only its serving thread
//! takes on the request path; a reopen or the shutdown takes it to flush
//! from another thread. The lock order is buffer, then sink.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A buffer holding this many bytes is flushed at the next append.
pub(super) const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Lines waiting to be written by one serving thread.
#[derive(Default)]
pub(super) struct Batch {
    /// Serialised records without `prev_hash`, each ending in `\n`.
    pub(super) text: String,
    /// How many lines `text` holds.
    pub(super) lines: u64,
    /// When the first of them was appended.
    oldest: Option<Instant>,
}

impl Batch {
    /// Appends one serialised record (without its newline); returns
    /// whether the buffer is due for a flush.
    fn push(&mut self, line: &str, interval: Duration) -> bool {
        self.push_with(|text| text.push_str(line), interval)
    }

    /// [`Batch::push`] of the record `write` writes straight into the
    /// buffer (no text of its own to copy).
    fn push_with(&mut self, write: impl FnOnce(&mut String), interval: Duration) -> bool {
        let now = crate::clock::now_std();
        let oldest = *self.oldest.get_or_insert(now);
        write(&mut self.text);
        self.text.push('\n');
        self.lines += 1;
        self.text.len() >= MAX_BATCH_BYTES || now.duration_since(oldest) >= interval
    }

    /// Empties the buffer after a flush (written or lost), keeping its
    /// capacity.
    pub(super) fn clear(&mut self) {
        self.text.clear();
        self.lines = 0;
        self.oldest = None;
    }
}

/// The buffers of one log's serving threads.
pub(super) struct Batches {
    /// The log these buffers belong to (a thread serves one gateway).
    id: u64,
    /// Zero: no buffering, one write per line.
    interval: Duration,
    /// Every serving thread's buffer, for the flushes from other threads.
    all: Mutex<Vec<Arc<Mutex<Batch>>>>,
}

/// The calling serving thread's buffer and the log it belongs to.
struct Slot {
    log: u64,
    batch: Arc<Mutex<Batch>>,
}

thread_local! {
    static SLOT: RefCell<Option<Slot>> = const { RefCell::new(None) };
}

/// Gives each log its own identity for [`SLOT`].
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Batches {
    pub(super) fn new(interval: Duration) -> Batches {
        Batches {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            interval,
            all: Mutex::new(Vec::new()),
        }
    }

    /// Makes the calling thread a serving thread with its own buffer
    /// (nothing with a zero interval).
    pub(super) fn enter(&self) {
        if self.interval.is_zero() {
            return;
        }
        let batch = Arc::new(Mutex::new(Batch::default()));
        lock(&self.all).push(Arc::clone(&batch));
        SLOT.with(|slot| {
            *slot.borrow_mut() = Some(Slot {
                log: self.id,
                batch,
            })
        });
    }

    /// Ends the calling thread's buffering: `flush` gets its buffer one
    /// last time, later lines are written at once.
    pub(super) fn leave(&self, flush: impl FnOnce(&mut Batch)) {
        let Some(slot) = SLOT.with(|slot| {
            let mut slot = slot.borrow_mut();
            match &*slot {
                Some(mine) if mine.log == self.id => slot.take(),
                _ => None,
            }
        }) else {
            return;
        };
        flush(&mut lock(&slot.batch));
        lock(&self.all).retain(|batch| !Arc::ptr_eq(batch, &slot.batch));
    }

    /// Appends `line` to the calling thread's buffer and calls `flush` on
    /// it when it is due. Returns `line` back when this thread has no
    /// buffer of this log (the caller writes it at once).
    pub(super) fn append(&self, line: String, flush: impl FnOnce(&mut Batch)) -> Option<String> {
        SLOT.with(|slot| match &*slot.borrow() {
            Some(mine) if mine.log == self.id => {
                let mut batch = lock(&mine.batch);
                if batch.push(&line, self.interval) {
                    flush(&mut batch);
                }
                None
            }
            _ => Some(line),
        })
    }

    /// [`Batches::append`] of the record `write` writes straight into the
    /// calling thread's buffer. Gives `write` back when this thread has no
    /// buffer of this log.
    pub(super) fn append_with<W: FnOnce(&mut String)>(
        &self,
        write: W,
        flush: impl FnOnce(&mut Batch),
    ) -> Result<(), W> {
        SLOT.with(|slot| match &*slot.borrow() {
            Some(mine) if mine.log == self.id => {
                let mut batch = lock(&mine.batch);
                if batch.push_with(write, self.interval) {
                    flush(&mut batch);
                }
                Ok(())
            }
            _ => Err(write),
        })
    }

    /// Calls `flush` on the calling thread's buffer if it holds lines (the
    /// serving thread's runtime is about to park).
    pub(super) fn flush_here(&self, flush: impl FnOnce(&mut Batch)) {
        SLOT.with(|slot| {
            if let Some(mine) = &*slot.borrow() {
                if mine.log == self.id {
                    let mut batch = lock(&mine.batch);
                    if batch.lines > 0 {
                        flush(&mut batch);
                    }
                }
            }
        });
    }

    /// Calls `flush` on every buffer that holds lines, from any thread.
    pub(super) fn flush_all(&self, mut flush: impl FnMut(&mut Batch)) {
        let all: Vec<_> = lock(&self.all).clone();
        for batch in all {
            let mut batch = lock(&batch);
            if batch.lines > 0 {
                flush(&mut batch);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
