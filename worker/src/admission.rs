//! Admission stage: who may run the engine now, who waits, who is told to
//! come back later.
//!
//! A request that reached the engine stage passes three gates, in order:
//!
//! 1. **Per principal**: at most [`Limits::max_per_principal`] requests of
//!    one principal are in progress (waiting or running); more get 429. A
//!    principal's requests then take turns on its session lock — they wait
//!    without a thread and without an engine slot, so one caller's burst
//!    (or huge file) holds at most one slot and cannot starve others.
//! 2. **Engine slot**: at most [`Limits::max_concurrent`] engine calls run at
//!    once (each on a blocking thread). Requests wait for a slot in FIFO
//!    order, but at most [`Limits::max_queued`] of them; past that the
//!    answer is 503 with `Retry-After` instead of piling up memory.
//! 3. The caller then runs the engine with the session and the slot; both
//!    guards move into the blocking task, so they are released when the
//!    engine finishes, even if the client has gone.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use crate::api::Session;
use crate::refusal::Refusal;
use crate::session::Slot;

/// Default number of requests waiting for an engine slot before 503s.
pub const DEFAULT_MAX_QUEUED: usize = 64;
/// Default number of one principal's requests in progress before 429s.
/// A dashboard fires about a dozen GETs at once, so this stays above that.
pub const DEFAULT_MAX_PER_PRINCIPAL: usize = 16;

/// Default number of engine calls at once: the CPUs available to the
/// process (1 if that cannot be read).
pub fn default_max_concurrent() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// Admission limits.
///
/// # Defaults
/// * `max_concurrent`: [`default_max_concurrent`] (number of CPUs)
/// * `max_queued`: [`DEFAULT_MAX_QUEUED`] (64)
/// * `max_per_principal`: [`DEFAULT_MAX_PER_PRINCIPAL`] (16)
#[derive(Debug, Clone)]
pub struct Limits {
    /// Engine calls running at once.
    pub max_concurrent: NonZeroUsize,
    /// Requests waiting for an engine slot; 0 means none wait.
    pub max_queued: usize,
    /// Requests of one principal in progress (waiting or running).
    pub max_per_principal: NonZeroUsize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent: default_max_concurrent(),
            max_queued: DEFAULT_MAX_QUEUED,
            max_per_principal: NonZeroUsize::new(DEFAULT_MAX_PER_PRINCIPAL)
                .expect("default is non-zero"),
        }
    }
}

/// Where a request is waiting (the `stage` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are written as exposed
enum Stage {
    /// For its principal's session lock.
    session,
    /// For an engine slot.
    slot,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StageLabels {
    stage: Stage,
}

/// Why a request was refused for capacity (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are written as exposed
enum Overload {
    queue_full,
    principal_busy,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OverloadLabels {
    reason: Overload,
}

/// Admission metrics.
#[derive(Debug, Clone)]
pub(crate) struct AdmissionMetrics {
    running: Gauge,
    waiting: Family<StageLabels, Gauge>,
    rejected: Family<OverloadLabels, Counter>,
}

impl AdmissionMetrics {
    /// Registers `engine_calls_running`, `engine_calls_waiting{stage}` and
    /// `overload_rejections_total{reason}` under the registry's prefix.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            running: Gauge::default(),
            waiting: Family::default(),
            rejected: Family::default(),
        };
        registry.register(
            "engine_calls_running",
            "Engine calls running now",
            metrics.running.clone(),
        );
        registry.register(
            "engine_calls_waiting",
            "Requests waiting for their session (stage=session) or an engine slot (stage=slot)",
            metrics.waiting.clone(),
        );
        registry.register(
            "overload_rejections",
            "Requests refused for capacity, by reason",
            metrics.rejected.clone(),
        );
        for stage in [Stage::session, Stage::slot] {
            let _ = metrics.waiting.get_or_create(&StageLabels { stage });
        }
        for reason in [Overload::queue_full, Overload::principal_busy] {
            let _ = metrics.rejected.get_or_create(&OverloadLabels { reason });
        }
        metrics
    }

    fn reject(&self, reason: Overload) {
        self.rejected
            .get_or_create(&OverloadLabels { reason })
            .inc();
    }

    fn waiting(&self, stage: Stage) -> Gauge {
        self.waiting.get_or_create(&StageLabels { stage }).clone()
    }
}

/// The gates; one per worker.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: Limits,
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
    metrics: AdmissionMetrics,
}

/// A principal's place among its requests in progress; released on drop.
#[derive(Debug)]
pub(crate) struct Ticket {
    slot: Arc<Slot>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.slot.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The right to run one engine call; released on drop.
#[derive(Debug)]
pub(crate) struct EngineSlot {
    _permit: OwnedSemaphorePermit,
    running: Gauge,
}

impl Drop for EngineSlot {
    fn drop(&mut self) {
        self.running.dec();
    }
}

/// Decrements a waiting count and gauge when the wait ends, however it ends
/// (admitted, refused, or the request dropped because the client left).
struct Waiting<'a> {
    count: Option<&'a AtomicUsize>,
    gauge: Gauge,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(count) = self.count {
            count.fetch_sub(1, Ordering::AcqRel);
        }
        self.gauge.dec();
    }
}

impl Admission {
    /// Gates with these limits.
    pub(crate) fn new(limits: Limits, metrics: AdmissionMetrics) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_concurrent.get())),
            queued: AtomicUsize::new(0),
            limits,
            metrics,
        }
    }

    /// Gate 1: counts the request against its principal; 429 when the
    /// principal already has [`Limits::max_per_principal`] in progress.
    pub(crate) fn enter(&self, slot: &Arc<Slot>) -> Result<Ticket, Refusal> {
        let before = slot.pending.fetch_add(1, Ordering::AcqRel);
        let ticket = Ticket {
            slot: Arc::clone(slot),
        };
        if before >= self.limits.max_per_principal.get() {
            self.metrics.reject(Overload::principal_busy);
            return Err(Refusal::PrincipalBusy {
                limit: self.limits.max_per_principal.get(),
            });
        }
        Ok(ticket)
    }

    /// Waits for the principal's turn on its session.
    pub(crate) async fn session(&self, slot: &Slot) -> OwnedMutexGuard<Session> {
        let gauge = self.metrics.waiting(Stage::session);
        gauge.inc();
        let _waiting = Waiting { count: None, gauge };
        Arc::clone(&slot.session).lock_owned().await
    }

    /// Gate 2: an engine slot now, or a place in the bounded queue; 503 when
    /// the queue is full.
    pub(crate) async fn engine_slot(&self) -> Result<EngineSlot, Refusal> {
        let permit = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => self.wait_for_slot().await?,
        };
        self.metrics.running.inc();
        Ok(EngineSlot {
            _permit: permit,
            running: self.metrics.running.clone(),
        })
    }

    async fn wait_for_slot(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        let before = self.queued.fetch_add(1, Ordering::AcqRel);
        let gauge = self.metrics.waiting(Stage::slot);
        gauge.inc();
        let _waiting = Waiting {
            count: Some(&self.queued),
            gauge,
        };
        if before >= self.limits.max_queued {
            self.metrics.reject(Overload::queue_full);
            return Err(Refusal::QueueFull);
        }
        // The semaphore is never closed; an error would mean it was.
        Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| Refusal::EngineLost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Principal;
    use crate::session::{ManualClock, SessionMetrics, Store};

    fn admission(max_concurrent: usize, max_queued: usize, per_principal: usize) -> Admission {
        let limits = Limits {
            max_concurrent: NonZeroUsize::new(max_concurrent).unwrap(),
            max_queued,
            max_per_principal: NonZeroUsize::new(per_principal).unwrap(),
        };
        Admission::new(limits, AdmissionMetrics::register(&mut Registry::default()))
    }

    fn slot() -> Arc<Slot> {
        let store = Store::new(
            crate::session::Limits::default(),
            Arc::new(ManualClock::new()),
            SessionMetrics::register(&mut Registry::default()),
        );
        store.checkout(&Principal::Anonymous)
    }

    #[test]
    fn a_principal_over_its_limit_is_refused_and_its_place_comes_back() {
        let gates = admission(1, 0, 2);
        let slot = slot();
        let first = gates.enter(&slot).unwrap();
        let _second = gates.enter(&slot).unwrap();
        assert!(matches!(
            gates.enter(&slot),
            Err(Refusal::PrincipalBusy { .. })
        ));
        drop(first);
        assert!(gates.enter(&slot).is_ok());
    }

    #[tokio::test]
    async fn with_no_queue_a_second_call_is_refused_until_the_first_ends() {
        let gates = admission(1, 0, 1);
        let running = gates.engine_slot().await.unwrap();
        assert!(matches!(gates.engine_slot().await, Err(Refusal::QueueFull)));
        drop(running);
        assert!(gates.engine_slot().await.is_ok());
    }

    #[tokio::test]
    async fn a_queued_call_runs_when_a_slot_frees_and_the_queue_is_bounded() {
        let gates = Arc::new(admission(1, 1, 1));
        let running = gates.engine_slot().await.unwrap();
        let queued = tokio::spawn({
            let gates = Arc::clone(&gates);
            async move { gates.engine_slot().await.map(drop) }
        });
        while gates.queued.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(gates.engine_slot().await, Err(Refusal::QueueFull)));
        drop(running);
        assert!(queued.await.unwrap().is_ok());
        assert_eq!(gates.queued.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_wait_abandoned_by_its_request_gives_its_place_back() {
        let gates = Arc::new(admission(1, 1, 1));
        let _running = gates.engine_slot().await.unwrap();
        let abandoned = tokio::spawn({
            let gates = Arc::clone(&gates);
            async move { gates.engine_slot().await.map(drop) }
        });
        while gates.queued.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        abandoned.abort();
        let _ = abandoned.await;
        assert_eq!(gates.queued.load(Ordering::Acquire), 0);
    }
}
