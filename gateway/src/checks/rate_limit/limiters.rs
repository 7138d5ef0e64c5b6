//! The limiters of a route, one per quota, and a stage's decision: look at
//! every quota, then spend one cell of each, or refuse with the longest
//! wait (the module doc of `rate_limit.rs`).

use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{NotUntil, RateLimiter};

use super::store::{BoundedStore, Probe};
use super::{
    rate_key_for_ip, KeyKind, QuotaSpec, RateLimitSettings, RateLimited, RouteRateLimits, Usage,
};

type Limiter<K, C> = RateLimiter<Probe<K>, BoundedStore<K>, C, StateInformationMiddleware>;

struct Limit<K: Hash + Eq + Clone, C: Clock> {
    name: String,
    spec: QuotaSpec,
    limiter: Limiter<K, C>,
    /// The store's overflow counter (the limiter owns the store).
    overflowed: Arc<AtomicU64>,
}

/// The limiters of one route.
pub struct RouteLimiters<C: Clock = DefaultClock> {
    per_ip: Vec<Limit<IpAddr, C>>,
    per_principal: Vec<Limit<String, C>>,
    /// One decision at a time per stage (used when it has several quotas).
    ip_stage: Mutex<()>,
    principal_stage: Mutex<()>,
    clock: C,
}

impl<C: Clock> fmt::Debug for RouteLimiters<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .per_ip
            .iter()
            .map(|l| l.name.as_str())
            .chain(self.per_principal.iter().map(|l| l.name.as_str()))
            .collect();
        f.debug_struct("RouteLimiters")
            .field("policies", &names)
            .finish()
    }
}

/// Ceiling of a duration in whole seconds.
fn ceil_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

impl<C: Clock + Clone> RouteLimiters<C> {
    /// Builds the limiters for a route's quotas, on `clock`.
    pub fn new(quotas: &RouteRateLimits, settings: &RateLimitSettings, clock: C) -> Self {
        Self {
            per_ip: build(&quotas.per_ip, KeyKind::Ip, settings, &clock),
            per_principal: build(&quotas.per_principal, KeyKind::Principal, settings, &clock),
            ip_stage: Mutex::new(()),
            principal_stage: Mutex::new(()),
            clock,
        }
    }

    /// Whether the route has any quota.
    pub fn is_empty(&self) -> bool {
        self.per_ip.is_empty() && self.per_principal.is_empty()
    }

    /// Whether the route has per-principal quotas.
    pub fn has_principal_quotas(&self) -> bool {
        !self.per_principal.is_empty()
    }

    /// Counts a request from `ip` against the per-IP quotas, all or
    /// nothing.
    pub fn check_ip(&self, ip: IpAddr) -> Result<Vec<Usage>, RateLimited> {
        let key = rate_key_for_ip(ip);
        check_all(&self.per_ip, &self.ip_stage, key, &self.clock)
    }

    /// Counts a request by `principal` against the per-principal quotas,
    /// all or nothing. Anonymous callers pass a key derived from their IP
    /// ([`super::anonymous_key`]).
    pub fn check_principal(&self, principal: &str) -> Result<Vec<Usage>, RateLimited> {
        let key = principal.to_owned();
        check_all(&self.per_principal, &self.principal_stage, key, &self.clock)
    }

    /// Drops keys whose state is indistinguishable from a fresh one, and
    /// gives the memory back.
    pub fn retain_recent(&self) {
        for limit in &self.per_ip {
            limit.limiter.retain_recent();
            limit.limiter.shrink_to_fit();
        }
        for limit in &self.per_principal {
            limit.limiter.retain_recent();
            limit.limiter.shrink_to_fit();
        }
    }

    /// Keys tracked over all limiters of the route.
    pub fn tracked_keys(&self) -> usize {
        self.per_ip.iter().map(|l| l.limiter.len()).sum::<usize>()
            + self
                .per_principal
                .iter()
                .map(|l| l.limiter.len())
                .sum::<usize>()
    }

    /// Decisions that used the overflow bucket, over all limiters.
    pub fn overflow_decisions(&self) -> u64 {
        self.per_ip
            .iter()
            .map(|l| l.overflowed.load(Ordering::Relaxed))
            .chain(
                self.per_principal
                    .iter()
                    .map(|l| l.overflowed.load(Ordering::Relaxed)),
            )
            .sum()
    }
}

fn build<K: Hash + Eq + Clone, C: Clock + Clone>(
    quotas: &[QuotaSpec],
    kind: KeyKind,
    settings: &RateLimitSettings,
    clock: &C,
) -> Vec<Limit<K, C>> {
    quotas
        .iter()
        .map(|spec| {
            let overflowed = Arc::new(AtomicU64::new(0));
            Limit {
                name: kind.policy_name(spec.window),
                spec: *spec,
                limiter: Limiter::new(
                    spec.governor_quota(),
                    BoundedStore::new(settings.max_tracked_keys, Arc::clone(&overflowed)),
                    clock.clone(),
                ),
                overflowed,
            }
        })
        .collect()
}

/// Decides a request against every quota of one stage, all or nothing
/// (see the module doc).
fn check_all<K: Hash + Eq + Clone, C: Clock>(
    limits: &[Limit<K, C>],
    stage: &Mutex<()>,
    key: K,
    clock: &C,
) -> Result<Vec<Usage>, RateLimited> {
    let look = Probe { key, spend: false };
    let spend = Probe {
        spend: true,
        ..look.clone()
    };
    if let [only] = limits {
        // One quota: governor's decision is already one atomic step.
        return match decide(only, &spend, clock) {
            Ok(usage) => Ok(vec![usage]),
            Err(refused) => Err(refused.limited(Vec::new())),
        };
    }
    let _one_at_a_time = stage.lock().unwrap_or_else(PoisonError::into_inner);
    let mut others = Vec::with_capacity(limits.len());
    let mut worst: Option<Refused> = None;
    for limit in limits {
        match decide(limit, &look, clock) {
            // It would have one cell less after the spend that did not happen.
            Ok(after) => others.push(usage(limit, after.remaining.saturating_add(1))),
            Err(refused) => match worst.take() {
                Some(other) if other.wait >= refused.wait => {
                    others.push(refused.usage);
                    worst = Some(other);
                }
                Some(other) => {
                    others.push(other.usage);
                    worst = Some(refused);
                }
                None => worst = Some(refused),
            },
        }
    }
    if let Some(refused) = worst {
        return Err(refused.limited(others));
    }
    // Every quota allows it, and no other decision of this stage can come
    // in between: spend one cell of each. (Time only moves on, and a purge
    // only drops states equal to fresh ones, so a quota that allowed the
    // look allows the spend.)
    limits
        .iter()
        .map(|limit| decide(limit, &spend, clock).map_err(|refused| refused.limited(Vec::new())))
        .collect()
}

/// One quota refusing a request.
struct Refused {
    usage: Usage,
    wait: Duration,
    overflow: bool,
}

impl Refused {
    fn limited(self, others: Vec<Usage>) -> RateLimited {
        RateLimited {
            retry_after_seconds: self.usage.reset_seconds,
            usage: self.usage,
            others,
            overflow: self.overflow,
        }
    }
}

/// One quota's decision for `probe`: its usage afterwards, or why not.
fn decide<K: Hash + Eq + Clone, C: Clock>(
    limit: &Limit<K, C>,
    probe: &Probe<K>,
    clock: &C,
) -> Result<Usage, Refused> {
    // Under concurrency another key's overflow may land in between; the
    // flag only labels the audit reason, so that is acceptable.
    let overflowed_before = limit.overflowed.load(Ordering::Relaxed);
    match limit.limiter.check_key(probe) {
        Ok(snapshot) => Ok(usage(limit, snapshot.remaining_burst_capacity())),
        Err(not_until) => Err(refusal(limit, &not_until, clock, overflowed_before)),
    }
}

fn refusal<K: Hash + Eq + Clone, C: Clock>(
    limit: &Limit<K, C>,
    not_until: &NotUntil<C::Instant>,
    clock: &C,
    overflowed_before: u64,
) -> Refused {
    let wait = not_until.wait_time_from(clock.now());
    let mut exhausted = usage(limit, 0);
    exhausted.reset_seconds = ceil_seconds(wait).max(1);
    Refused {
        usage: exhausted,
        wait,
        overflow: limit.overflowed.load(Ordering::Relaxed) != overflowed_before,
    }
}

fn usage<K: Hash + Eq + Clone, C: Clock>(limit: &Limit<K, C>, remaining: u32) -> Usage {
    usage_of(&limit.name, limit.spec, remaining)
}

/// The usage of quota `spec` (policy `name`) with `remaining` requests
/// left: every used cell comes back after window/count (rounded up). Both
/// stores report their decisions through it.
pub fn usage_of(name: &str, spec: QuotaSpec, remaining: u32) -> Usage {
    let count = spec.count.get();
    let window_seconds = spec.window.seconds();
    let used = u64::from(count.saturating_sub(remaining));
    let reset_seconds = (used * window_seconds).div_ceil(u64::from(count));
    Usage {
        name: name.to_owned(),
        limit: count,
        window_seconds,
        remaining,
        reset_seconds,
    }
}
