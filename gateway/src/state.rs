//! Shared runtime state: what every connection task and request shares
//! while the gateway runs — the policy in force, the certificate, the
//! upstream pool, the connection and per-IP counters, the rate-limit state,
//! the audit log and the metrics registry. Built once by `lifecycle.rs`, which alone replaces the
//! policy and the certificate on reload; the stages only read it.

pub(crate) mod connections;
pub(crate) mod rate_limits;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
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
    pub(crate) config: InForce,
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
        self.config.snapshot()
    }
}

/// The policy in force, and each thread's own copy of it.
///
/// Every request takes a snapshot of the policy. Taken from one shared
/// `Arc`, that is a read lock and a reference count that every serving
/// thread writes for every request, so the cache line holding them moves
/// from core to core all the time. Instead each thread keeps a copy of
/// its own (a deep clone; what the policy shares at run time, such as the
/// token cache, sits behind `Arc`s and stays shared), made the first
/// time the thread sees a new generation: a snapshot is then a read of
/// the generation, which only a reload writes, and a count on the
/// thread's own `Arc`.
pub(crate) struct InForce {
    shared: RwLock<Arc<Config>>,
    /// Bumped by each [`InForce::replace`], after the policy is in place.
    generation: AtomicU64,
    /// Tells this policy's copies apart from another gateway's in the same
    /// process (tests run several).
    id: u64,
}

/// Gives each [`InForce`] its own identity for [`COPY`].
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The calling thread's copy: which [`InForce`], which generation.
struct Copy {
    id: u64,
    generation: u64,
    config: Arc<Config>,
}

thread_local! {
    static COPY: RefCell<Option<Copy>> = const { RefCell::new(None) };
}

impl InForce {
    pub(crate) fn new(config: Config) -> InForce {
        InForce {
            shared: RwLock::new(Arc::new(config)),
            generation: AtomicU64::new(0),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Puts `next` in force; each thread copies it at its next snapshot.
    pub(crate) fn replace(&self, next: Config) {
        *self
            .shared
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(next);
        // After the policy: a thread that sees the new generation reads it.
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The policy in force, as the calling thread's copy.
    pub(crate) fn snapshot(&self) -> Arc<Config> {
        let generation = self.generation.load(Ordering::Acquire);
        COPY.with_borrow_mut(|copy| match copy {
            Some(copy) if copy.id == self.id && copy.generation == generation => {
                Arc::clone(&copy.config)
            }
            _ => {
                let shared = Arc::clone(
                    &self
                        .shared
                        .read()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()),
                );
                let config = Arc::new(Config::clone(&shared));
                *copy = Some(Copy {
                    id: self.id,
                    generation,
                    config: Arc::clone(&config),
                });
                config
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_connections: usize) -> Config {
        let mut config = crate::config::tests::minimal();
        config.limits.max_connections = max_connections;
        config
    }

    #[test]
    fn each_thread_sees_the_policy_in_force_and_a_replacement_at_once() {
        let in_force = Arc::new(InForce::new(config(1)));
        assert_eq!(in_force.snapshot().limits.max_connections, 1);
        let here = in_force.snapshot();
        assert!(
            Arc::ptr_eq(&here, &in_force.snapshot()),
            "the thread's copy"
        );
        let there = {
            let in_force = Arc::clone(&in_force);
            std::thread::spawn(move || in_force.snapshot())
                .join()
                .unwrap()
        };
        assert!(!Arc::ptr_eq(&here, &there), "each thread its own");
        in_force.replace(config(2));
        assert_eq!(in_force.snapshot().limits.max_connections, 2);
        let there = {
            let in_force = Arc::clone(&in_force);
            std::thread::spawn(move || in_force.snapshot())
                .join()
                .unwrap()
        };
        assert_eq!(there.limits.max_connections, 2);
        // Another gateway's policy in the same thread is its own.
        let other = InForce::new(config(3));
        assert_eq!(other.snapshot().limits.max_connections, 3);
        assert_eq!(in_force.snapshot().limits.max_connections, 2);
    }
}
