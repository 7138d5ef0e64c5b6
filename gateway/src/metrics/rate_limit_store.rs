//! The shared rate-limit store's series: how long each call took and how
//! many failed (`rate_limit.store = "redis"`; both stay empty with the
//! memory store). `deploy/prometheus/alerts.yml` alerts on the errors.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Store call duration buckets, in seconds (100 µs to 1 s).
const STORE_BUCKETS: [f64; 11] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0,
];

/// Why a store call failed: the label values of
/// `rate_limit_store_errors_total`.
pub(crate) const STORE_ERROR_REASONS: [&str; 3] = ["timeout", "connection", "reply"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Handles on the store series; cheap to clone (the store keeps one).
#[derive(Clone, Debug)]
pub(crate) struct StoreMetrics {
    duration: Histogram,
    errors: Family<ReasonLabel, Counter>,
}

impl StoreMetrics {
    pub(super) fn new() -> Self {
        let metrics = StoreMetrics {
            duration: Histogram::new(STORE_BUCKETS),
            errors: Family::default(),
        };
        for reason in STORE_ERROR_REASONS {
            let _ = metrics.errors.get_or_create(&ReasonLabel { reason });
        }
        metrics
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "rate_limit_store_duration_seconds",
            "Time one call to the shared rate-limit store took (successful or not)",
            self.duration.clone(),
        );
        registry.register(
            "rate_limit_store_errors",
            "Calls to the shared rate-limit store that failed, by reason (timeout, connection, reply); each request then followed on_store_error",
            self.errors.clone(),
        );
    }

    /// Notes one call and how long it took.
    pub(crate) fn call(&self, took: Duration) {
        self.duration.observe(took.as_secs_f64());
    }

    /// Counts one failed call; `reason` is one of [`STORE_ERROR_REASONS`].
    pub(crate) fn error(&self, reason: &'static str) {
        self.errors.get_or_create(&ReasonLabel { reason }).inc();
    }
}
