//! Metrics: the worker's prometheus-client registry and its text exposition
//! (`GET /internal/metrics`, fetched and re-served by the gateway's admin
//! listener).
//!
//! Every name starts with `tradehabit_worker_`. Each stage registers its own
//! metrics ([`crate::session`], [`crate::admission`], [`crate::engine`]);
//! this module owns the registry and the per-request counter. Labels are
//! bounded: route names from a fixed list, status classes, reasons.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Prefix of every metric name.
pub const PREFIX: &str = "tradehabit_worker";

/// `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status_class: &'static str,
}

/// Per-request and per-connection metrics.
#[derive(Debug, Clone)]
pub(crate) struct RequestMetrics {
    requests: Family<RequestLabels, Counter>,
    connections: Gauge,
}

impl RequestMetrics {
    /// Registers `requests_total{route,status_class}` and
    /// `connections_active`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            connections: Gauge::default(),
        };
        registry.register(
            "requests",
            "Requests answered, by route and status class",
            metrics.requests.clone(),
        );
        registry.register(
            "connections_active",
            "Open connections on the socket",
            metrics.connections.clone(),
        );
        metrics
    }

    /// Counts one answered request.
    pub(crate) fn count(&self, route: &'static str, status: u16) {
        let status_class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests
            .get_or_create(&RequestLabels {
                route,
                status_class,
            })
            .inc();
    }

    /// The open-connections gauge.
    pub(crate) fn connections(&self) -> &Gauge {
        &self.connections
    }
}

/// A fresh registry with the worker's prefix.
pub(crate) fn registry() -> Registry {
    Registry::with_prefix(PREFIX)
}

/// The registry in the OpenMetrics text format.
pub(crate) fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_and_status_class_under_the_prefix() {
        let mut registry = registry();
        let metrics = RequestMetrics::register(&mut registry);
        metrics.count("/api/summary", 200);
        metrics.count("/api/summary", 204);
        metrics.count("other", 404);
        let text = encode(&registry).unwrap();
        assert!(text.contains(
            "tradehabit_worker_requests_total{route=\"/api/summary\",status_class=\"2xx\"} 2"
        ));
        assert!(text
            .contains("tradehabit_worker_requests_total{route=\"other\",status_class=\"4xx\"} 1"));
        assert!(text.ends_with("# EOF\n"));
    }
}
