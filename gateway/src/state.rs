//! Shared runtime state: what every connection task and request shares
//! while the gateway runs — the policy in force, the certificate, the
//! upstream pool, the connection and per-IP counters, the rate-limit state,
//! the audit log and the metrics registry. Built once by `lifecycle.rs`, which alone replaces the
//! policy and the certificate on reload; the stages only read it.

pub(crate) mod connections;
pub(crate) mod rate_limits;

use std::sync::{Arc, RwLock};

use crate::audit;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::per_ip::PerIp;
use crate::proxy::Upstream;
use crate::tarpit::Tarpit;
use crate::tls::CertStore;
pub(crate) use connections::Connections;
pub(crate) use rate_limits::RateLimits;

/// What every connection task shares.
pub(crate) struct State {
    pub(crate) config: RwLock<Arc<Config>>,
    pub(crate) certs: Arc<CertStore>,
    pub(crate) upstream: Upstream,
    pub(crate) connections: Arc<Connections>,
    /// Requests in flight per client IP (`limits.max_requests_per_ip`).
    pub(crate) requests_per_ip: Arc<PerIp>,
    /// Refusals per client IP this second (`limits.refusal_delay_after`).
    pub(crate) refusals: Tarpit,
    /// The rate-limit buckets, or the shared store.
    pub(crate) rate_limits: RateLimits,
    /// The audit log; shared with response bodies whose line is
    /// written when they end.
    pub(crate) audit: Arc<audit::Log>,
    /// The Prometheus registry.
    pub(crate) metrics: Metrics,
}

impl State {
    /// The policy in force now. Each request takes one snapshot.
    pub(crate) fn config(&self) -> Arc<Config> {
        Arc::clone(
            &self
                .config
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }
}
