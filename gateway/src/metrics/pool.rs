//! The worker pool's series beyond readiness: how many workers
//! `upstream.addresses` configures, and whether each answered the last
//! scrape of its metrics (`admin/worker_metrics.rs`). Workers are named by
//! their index in `upstream.addresses`, never by socket path or host
//! (`docs/audit-and-metrics.md`, "Metrics").

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabel {
    worker: String,
}

/// Handles on the pool series.
#[derive(Clone, Debug, Default)]
pub(super) struct PoolMetrics {
    configured: Gauge,
    scrape_up: Family<WorkerLabel, Gauge>,
}

impl PoolMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "upstream_workers_configured",
            "Workers listed in upstream.addresses (1 with upstream.address)",
            self.configured.clone(),
        );
        registry.register(
            "worker_scrape_up",
            "1 when the worker (its index in upstream.addresses) answered the last metrics scrape with an OpenMetrics document",
            self.scrape_up.clone(),
        );
    }

    /// The pool size, with every worker's scrape series at 0 until its
    /// first scrape (`addresses` only changes with a restart).
    pub(super) fn configured(&self, workers: usize) {
        self.configured
            .set(i64::try_from(workers).unwrap_or(i64::MAX));
        for index in 0..workers {
            let _ = self.scrape_up.get_or_create(&label(index));
        }
    }

    pub(super) fn scraped(&self, index: usize, is_up: bool) {
        self.scrape_up
            .get_or_create(&label(index))
            .set(i64::from(is_up));
    }
}

fn label(index: usize) -> WorkerLabel {
    WorkerLabel {
        worker: index.to_string(),
    }
}
