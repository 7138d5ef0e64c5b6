//! Rate-limit stage, with governor (GCRA): per client IP before
//! authentication, so credential guessing is throttled too, and per
//! principal after it.
//!
//! In: a route's quotas and a key (the client IP, or the principal id).
//! Out: the usage of every quota (for the `RateLimit-Policy` and `RateLimit`
//! headers, draft-ietf-httpapi-ratelimit-headers, with generic policy names
//! and no partition keys) or a 429 with `Retry-After`.
//!
//! * Quotas are written `"5/minute"`, `"200/day"`, `"10/second"`,
//!   `"100/hour"`; a route may have several per kind. Each (route, quota)
//!   pair has its own keyed limiter, because a governor limiter enforces one
//!   quota.
//! * **All or nothing within a stage.** The per-IP quotas of a route are one
//!   stage, its per-principal quotas another. A stage first *looks* at every
//!   one of its quotas (governor's own decision on the stored state, with
//!   nothing stored: `rate_limit/store.rs`), and only when all of them allow
//!   the request does it spend one cell of each. A request refused by any
//!   quota of a stage spends none of that stage's quotas, so a client held
//!   back by `5/minute` does not burn its `200/day` with refused requests.
//!   Its `Retry-After` is the longest wait among the refusing quotas (the
//!   earliest moment all of them allow it). A stage with several quotas
//!   decides one request at a time (a lock per stage and route, held for the
//!   look and the spend, never across an await), so no other request can
//!   spend in between; a stage with one quota needs no lock (governor's
//!   single decision is atomic).
//! * **Across stages, in order.** The per-IP stage runs before
//!   authentication and is spent as soon as the request passes it: whatever
//!   happens afterwards (failed authentication, missing scopes, a refusal
//!   by the per-principal stage, a bad body) the request has used its per-IP
//!   cells. That is deliberate: the per-IP quotas bound how often one
//!   address gets its credentials checked, so failed authentication must
//!   count. A request refused by the per-IP stage never reaches the
//!   per-principal stage and spends nothing there.
//! * IPv6 clients are keyed by their /64 network: one host usually owns a
//!   whole /64 and could otherwise rotate addresses to escape the limit.
//! * Memory is bounded. Idle keys are dropped by [`RouteLimiters::retain_recent`]
//!   (call it every `purge_interval`), and each limiter tracks at most
//!   `max_tracked_keys` keys. A new key that arrives when a limiter is full
//!   is not tracked on its own: it shares one **overflow bucket** with every
//!   other untracked key. Clients already tracked keep their own budget,
//!   while a flood of distinct (possibly spoofed) addresses is throttled as
//!   one client and cannot grow memory. Refusing new keys outright would
//!   lock out every newcomer for as long as the table stays full; the shared
//!   bucket still lets a trickle through. Every overflow decision is counted
//!   so operators can see it and raise the cap.
//! * Time comes from governor's clock abstraction: the real monotonic clock
//!   in production, `FakeRelativeClock` in tests.

//!
//! The parts: the `[rate_limit]` settings and a route's quotas, validated
//! (`rate_limit/quotas.rs`); the limiters and the all-or-nothing decision
//! of a stage (`rate_limit/limiters.rs`) on a bounded keyed store
//! (`rate_limit/store.rs`); here, what a decision gives the client (the
//! 429, the `RateLimit` headers) and the key an address is counted under.

use std::net::IpAddr;
use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{HeaderName, HeaderValue, StatusCode};

use super::Rejection;

mod limiters;
mod quotas;
mod store;
mod store_settings;
#[cfg(test)]
mod tests;

pub use limiters::{usage_of, RouteLimiters};
pub use quotas::{
    validate_quotas, validate_route, validate_settings, KeyKind, QuotaError, QuotaSpec,
    RateLimitSettings, RateLimitSettingsRaw, RouteRateLimits, RouteRateLimitsRaw, Window,
};
pub use store_settings::{
    OnStoreError, RedisAddress, RedisSettings, RedisSettingsRaw, StoreSettings,
    DEFAULT_ON_STORE_ERROR, DEFAULT_REDIS_POOL_SIZE, DEFAULT_REDIS_TIMEOUT, MAX_REDIS_POOL_SIZE,
    MAX_REDIS_TIMEOUT,
};

/// Default cap on keys tracked by one limiter. At roughly 100 bytes per
/// entry this is about 1 MB per limiter.
pub const DEFAULT_MAX_TRACKED_KEYS: usize = 10_000;

/// Largest accepted `max_tracked_keys`.
pub const MAX_MAX_TRACKED_KEYS: usize = 10_000_000;

/// Default interval between purges of idle keys.
pub const DEFAULT_PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Largest count in a quota.
pub const MAX_QUOTA_COUNT: u32 = 1_000_000;

/// `RateLimit-Policy` header name.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// `RateLimit` header name.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Prefix length IPv6 clients are grouped by.
const IPV6_CLIENT_PREFIX: u8 = 64;

/// The current usage of one quota, for the response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// Generic policy name (`ip-minute`, `principal-day`).
    pub name: String,
    /// Requests per window (`q`).
    pub limit: u32,
    /// Window length in seconds (`w`).
    pub window_seconds: u64,
    /// Requests left right now (`r`).
    pub remaining: u32,
    /// Seconds until the quota is fully replenished (`t`).
    pub reset_seconds: u64,
}

/// A request over one of its quotas.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limited by {}", .usage.name)]
pub struct RateLimited {
    /// The exhausted quota with the longest wait (remaining 0, reset =
    /// retry after).
    pub usage: Usage,
    /// The stage's other quotas as they stand (nothing was spent), for the
    /// headers.
    pub others: Vec<Usage>,
    /// Whole seconds until a retry can succeed (rounded up, at least 1).
    pub retry_after_seconds: u64,
    /// Whether the key was in the shared overflow bucket.
    pub overflow: bool,
}

impl From<RateLimited> for Rejection {
    fn from(limited: RateLimited) -> Self {
        let reason = if limited.overflow {
            "rate_limit.overflow"
        } else {
            "rate_limit.exceeded"
        };
        let mut usages = limited.others.clone();
        usages.push(limited.usage.clone());
        let mut rejection =
            Rejection::new(StatusCode::TOO_MANY_REQUESTS, "too many requests", reason)
                .with_detail(format!(
                    "retry after {} seconds",
                    limited.retry_after_seconds
                ))
                .with_audit_detail(limited.usage.name.clone())
                .with_header(RETRY_AFTER, HeaderValue::from(limited.retry_after_seconds));
        rejection.headers.extend(headers(&usages));
        rejection
    }
}

/// The key an IP address is counted under: itself for IPv4, its /64 for
/// IPv6.
pub fn rate_key_for_ip(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        v4 @ IpAddr::V4(_) => v4,
        v6 @ IpAddr::V6(_) => mask(v6, IPV6_CLIENT_PREFIX),
    }
}

/// Keeps the first `prefix` bits of `ip`.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let shift = 32 - u32::from(prefix.min(32));
            let masked = bits
                .checked_shr(shift)
                .unwrap_or(0)
                .checked_shl(shift)
                .unwrap_or(0);
            IpAddr::V4(masked.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let shift = 128 - u32::from(prefix.min(128));
            let masked = bits
                .checked_shr(shift)
                .unwrap_or(0)
                .checked_shl(shift)
                .unwrap_or(0);
            IpAddr::V6(masked.into())
        }
    }
}

/// The per-principal key of an anonymous caller.
pub fn anonymous_key(ip: IpAddr) -> String {
    format!("ip:{}", rate_key_for_ip(ip))
}

/// The `RateLimit-Policy` and `RateLimit` headers for these usages (none
/// when the route has no quota).
pub fn headers(usages: &[Usage]) -> Vec<(HeaderName, HeaderValue)> {
    if usages.is_empty() {
        return Vec::new();
    }
    use std::fmt::Write as _;
    let (mut policy, mut current) = (String::with_capacity(64), String::with_capacity(64));
    for (i, u) in usages.iter().enumerate() {
        let separator = if i == 0 { "" } else { ", " };
        // Writing into a String cannot fail.
        let _ = write!(
            policy,
            "{separator}\"{}\";q={};w={}",
            u.name, u.limit, u.window_seconds
        );
        let _ = write!(
            current,
            "{separator}\"{}\";r={};t={}",
            u.name, u.remaining, u.reset_seconds
        );
    }
    vec![
        (
            RATELIMIT_POLICY,
            HeaderValue::from_str(&policy).expect("policy names are header-safe"),
        ),
        (
            RATELIMIT,
            super::unindexed(
                HeaderValue::from_str(&current).expect("policy names are header-safe"),
            ),
        ),
    ]
}
