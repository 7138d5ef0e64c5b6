//! The metrics of one answered request, written from its [`Exchange`]
//! (the same value the audit line is written from).

use http::StatusCode;

use super::Metrics;
use crate::exchange::Exchange;

impl Metrics {
    /// Counts one answered request: its durations, its refusal (by the
    /// check, the failed authentication, the rate limit) and, on an upload
    /// route, its body size.
    pub(crate) fn answered(&self, exchange: &Exchange<'_>, status: StatusCode) {
        let Exchange {
            started,
            trail,
            decision,
            bytes_in,
            ..
        } = *exchange;
        let route = trail.route();
        self.request(
            route,
            started.method(),
            status,
            exchange.duration(),
            exchange.upstream_duration(),
        );
        if decision.is_refused() {
            self.rejection(decision.outcome);
        }
        if let Some((method, reason)) = decision.auth_failure {
            self.auth_failure(method, reason);
        }
        if decision.is_rate_limited {
            self.rate_limited(route.unwrap_or("unmatched"));
        }
        if let Some(route) = route {
            // Counted only on routes with an upload rule. A refused
            // oversized upload counts at its declared size: the "near the
            // limit" alert includes uploads over it.
            self.upload(route, bytes_in.max(started.declared_length().unwrap_or(0)));
        }
    }
}
