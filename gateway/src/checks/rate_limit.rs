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

use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{NotUntil, Quota, RateLimiter};
use http::header::RETRY_AFTER;
use http::{HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;

use super::problems::{index, join, Problems};
use super::Rejection;
use store::BoundedStore;
use store::Probe;

mod store;

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

/// The global `[rate_limit]` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettingsRaw {
    /// Keys one limiter tracks before new keys share the overflow bucket.
    /// Default [`DEFAULT_MAX_TRACKED_KEYS`].
    pub max_tracked_keys: Option<usize>,
    /// Seconds between purges of idle keys. Default 60.
    pub purge_interval_seconds: Option<u64>,
}

/// Validated global settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Keys one limiter tracks.
    pub max_tracked_keys: usize,
    /// Interval between purges of idle keys.
    pub purge_interval: Duration,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            max_tracked_keys: DEFAULT_MAX_TRACKED_KEYS,
            purge_interval: DEFAULT_PURGE_INTERVAL,
        }
    }
}

/// Validates `[rate_limit]` at key path `path`.
pub fn validate_settings(
    raw: &RateLimitSettingsRaw,
    path: &str,
    problems: &mut Problems,
) -> Option<RateLimitSettings> {
    let before = problems.len();
    let max_tracked_keys = raw.max_tracked_keys.unwrap_or(DEFAULT_MAX_TRACKED_KEYS);
    if !(1..=MAX_MAX_TRACKED_KEYS).contains(&max_tracked_keys) {
        problems.push(
            join(path, "max_tracked_keys"),
            format!("must be between 1 and {MAX_MAX_TRACKED_KEYS}"),
        );
    }
    let purge = raw
        .purge_interval_seconds
        .unwrap_or(DEFAULT_PURGE_INTERVAL.as_secs());
    if !(1..=3600).contains(&purge) {
        problems.push(
            join(path, "purge_interval_seconds"),
            "must be between 1 and 3600",
        );
    }
    (problems.len() == before).then_some(RateLimitSettings {
        max_tracked_keys,
        purge_interval: Duration::from_secs(purge),
    })
}

/// A route's `rate_limit` table.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteRateLimitsRaw {
    /// Quotas per client IP, checked before authentication.
    #[serde(default)]
    pub per_ip: Vec<String>,
    /// Quotas per principal (or per client IP for anonymous callers),
    /// checked after authentication.
    #[serde(default)]
    pub per_principal: Vec<String>,
}

/// The window of a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day.
    Day,
}

impl Window {
    /// Length in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3600,
            Self::Day => 86_400,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Second => "second",
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }
}

/// A quota: `count` requests per `window`, allowed in a burst and
/// replenished evenly (one every `window / count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaSpec {
    /// Requests per window.
    pub count: NonZeroU32,
    /// The window.
    pub window: Window,
}

/// Why a quota string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// Not `N/unit`.
    #[error("expected COUNT/UNIT, e.g. \"5/minute\" (units: second, minute, hour, day)")]
    Malformed,
    /// Count out of range.
    #[error("the count must be between 1 and {MAX_QUOTA_COUNT}")]
    CountOutOfRange,
}

impl FromStr for QuotaSpec {
    type Err = QuotaError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (count, unit) = text.split_once('/').ok_or(QuotaError::Malformed)?;
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(QuotaError::Malformed);
        }
        let window = match unit {
            "second" => Window::Second,
            "minute" => Window::Minute,
            "hour" => Window::Hour,
            "day" => Window::Day,
            _ => return Err(QuotaError::Malformed),
        };
        let count: u32 = count.parse().map_err(|_| QuotaError::CountOutOfRange)?;
        if count > MAX_QUOTA_COUNT {
            return Err(QuotaError::CountOutOfRange);
        }
        let count = NonZeroU32::new(count).ok_or(QuotaError::CountOutOfRange)?;
        Ok(Self { count, window })
    }
}

impl fmt::Display for QuotaSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.window.name())
    }
}

impl QuotaSpec {
    fn governor_quota(self) -> Quota {
        let period = Duration::from_secs(self.window.seconds()) / self.count.get();
        Quota::with_period(period)
            .expect("a window of at least 1 s over at most 10^6 cells is a non-zero period")
            .allow_burst(self.count)
    }
}

/// Who a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// The client IP (IPv6: its /64).
    Ip,
    /// The principal.
    Principal,
}

impl KeyKind {
    fn name(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Principal => "principal",
        }
    }
}

/// A route's validated quotas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteRateLimits {
    /// Quotas per client IP.
    pub per_ip: Vec<QuotaSpec>,
    /// Quotas per principal.
    pub per_principal: Vec<QuotaSpec>,
}

/// Validates a route's `rate_limit` table at key path `path`.
pub fn validate_route(
    raw: &RouteRateLimitsRaw,
    path: &str,
    problems: &mut Problems,
) -> Option<RouteRateLimits> {
    let before = problems.len();
    let per_ip = validate_quotas(&raw.per_ip, &join(path, "per_ip"), problems);
    let per_principal = validate_quotas(&raw.per_principal, &join(path, "per_principal"), problems);
    (problems.len() == before).then_some(RouteRateLimits {
        per_ip,
        per_principal,
    })
}

/// Validates a list of quota strings at key path `path`; each window may
/// appear once (the stricter of two quotas with one window makes the other
/// pointless, and policy names must be unique).
pub fn validate_quotas(texts: &[String], path: &str, problems: &mut Problems) -> Vec<QuotaSpec> {
    let mut quotas: Vec<QuotaSpec> = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        match text.parse::<QuotaSpec>() {
            Ok(q) if quotas.iter().any(|other| other.window == q.window) => problems.push(
                index(path, i),
                format!(
                    "a quota per {} is already listed; keep the stricter one",
                    q.window.name()
                ),
            ),
            Ok(q) => quotas.push(q),
            Err(err) => problems.push(index(path, i), format!("{text:?}: {err}")),
        }
    }
    quotas
}

type Limiter<K, C> = RateLimiter<Probe<K>, BoundedStore<K>, C, StateInformationMiddleware>;

struct Limit<K: Hash + Eq + Clone, C: Clock> {
    name: String,
    spec: QuotaSpec,
    limiter: Limiter<K, C>,
    /// The store's overflow counter (the limiter owns the store).
    overflowed: Arc<AtomicU64>,
}

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
    /// ([`anonymous_key`]).
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
                name: format!("{}-{}", kind.name(), spec.window.name()),
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
    let count = limit.spec.count.get();
    let window_seconds = limit.spec.window.seconds();
    let used = u64::from(count.saturating_sub(remaining));
    // Each used cell comes back after window/count; round up.
    let reset_seconds = (used * window_seconds).div_ceil(u64::from(count));
    Usage {
        name: limit.name.clone(),
        limit: count,
        window_seconds,
        remaining,
        reset_seconds,
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
            HeaderValue::from_str(&current).expect("policy names are header-safe"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn quotas(per_ip: &[&str], per_principal: &[&str]) -> RouteRateLimits {
        let raw = RouteRateLimitsRaw {
            per_ip: per_ip.iter().map(|s| (*s).to_owned()).collect(),
            per_principal: per_principal.iter().map(|s| (*s).to_owned()).collect(),
        };
        let mut problems = Problems::new();
        let limits = validate_route(&raw, "routes[0].rate_limit", &mut problems);
        assert!(problems.is_empty(), "{problems}");
        limits.unwrap()
    }

    fn limiters(
        per_ip: &[&str],
        per_principal: &[&str],
        max_keys: usize,
    ) -> (RouteLimiters<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let settings = RateLimitSettings {
            max_tracked_keys: max_keys,
            ..RateLimitSettings::default()
        };
        (
            RouteLimiters::new(&quotas(per_ip, per_principal), &settings, clock.clone()),
            clock,
        )
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn quota_syntax_is_strict() {
        assert_eq!(
            "5/minute".parse::<QuotaSpec>().unwrap().to_string(),
            "5/minute"
        );
        assert_eq!("200/day".parse::<QuotaSpec>().unwrap().window, Window::Day);
        assert_eq!("10/second".parse::<QuotaSpec>().unwrap().count.get(), 10);
        for bad in [
            "5/minutes",
            "5 /minute",
            "5/Minute",
            "-5/minute",
            "+5/minute",
            "five/minute",
            "5",
            "/minute",
            "5/min",
            "1.5/hour",
        ] {
            assert_eq!(
                bad.parse::<QuotaSpec>(),
                Err(QuotaError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            "0/minute".parse::<QuotaSpec>(),
            Err(QuotaError::CountOutOfRange)
        );
        assert_eq!(
            "1000001/day".parse::<QuotaSpec>(),
            Err(QuotaError::CountOutOfRange)
        );
        assert_eq!(
            "99999999999/day".parse::<QuotaSpec>(),
            Err(QuotaError::CountOutOfRange)
        );
    }

    #[test]
    fn route_problems_have_paths() {
        let raw = RouteRateLimitsRaw {
            per_ip: vec!["5/minute".into(), "10/minute".into(), "x".into()],
            per_principal: vec!["0/day".into()],
        };
        let mut problems = Problems::new();
        assert!(validate_route(&raw, "routes[3].rate_limit", &mut problems).is_none());
        assert!(problems.has("routes[3].rate_limit.per_ip[1]"));
        assert!(problems.has("routes[3].rate_limit.per_ip[2]"));
        assert!(problems.has("routes[3].rate_limit.per_principal[0]"));
        assert_eq!(problems.len(), 3);

        let mut problems = Problems::new();
        let raw = RateLimitSettingsRaw {
            max_tracked_keys: Some(0),
            purge_interval_seconds: Some(0),
        };
        assert!(validate_settings(&raw, "rate_limit", &mut problems).is_none());
        assert_eq!(problems.len(), 2);
    }

    #[test]
    fn limit_hit_gives_retry_after_and_recovers_on_the_fake_clock() {
        let (limits, clock) = limiters(&["5/minute"], &[], 100);
        let client = ip("203.0.113.1");
        for expected_remaining in (0..5).rev() {
            let usages = limits.check_ip(client).unwrap();
            assert_eq!(usages[0].remaining, expected_remaining);
        }
        let limited = limits.check_ip(client).unwrap_err();
        // One cell every 12 s.
        assert_eq!(limited.retry_after_seconds, 12);
        assert!(!limited.overflow);
        let rejection = Rejection::from(limited);
        assert_eq!(rejection.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(rejection.reason, "rate_limit.exceeded");
        let header = |name: &HeaderName| {
            rejection
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_str().unwrap().to_owned())
        };
        assert_eq!(header(&RETRY_AFTER).as_deref(), Some("12"));
        assert_eq!(
            header(&RATELIMIT_POLICY).as_deref(),
            Some("\"ip-minute\";q=5;w=60")
        );
        assert_eq!(
            header(&RATELIMIT).as_deref(),
            Some("\"ip-minute\";r=0;t=12")
        );

        clock.advance(Duration::from_secs(11));
        let limited = limits.check_ip(client).unwrap_err();
        assert_eq!(limited.retry_after_seconds, 1);
        clock.advance(Duration::from_secs(1));
        assert_eq!(limits.check_ip(client).unwrap()[0].remaining, 0);
    }

    #[test]
    fn retry_after_rounds_up() {
        let (limits, clock) = limiters(&["3/second"], &[], 100);
        let client = ip("203.0.113.1");
        for _ in 0..3 {
            limits.check_ip(client).unwrap();
        }
        clock.advance(Duration::from_millis(100));
        // 333 ms period, 100 ms elapsed: 233 ms left → 1 s.
        assert_eq!(limits.check_ip(client).unwrap_err().retry_after_seconds, 1);
    }

    #[test]
    fn several_windows_are_all_enforced() {
        let (limits, clock) = limiters(&[], &["2/minute", "3/day"], 100);
        assert_eq!(limits.check_principal("key:ci").unwrap().len(), 2);
        limits.check_principal("key:ci").unwrap();
        let limited = limits.check_principal("key:ci").unwrap_err();
        assert_eq!(limited.usage.name, "principal-minute");
        clock.advance(Duration::from_secs(60));
        let usages = limits.check_principal("key:ci").unwrap();
        assert_eq!(usages[1].remaining, 0);
        let limited = limits.check_principal("key:ci").unwrap_err();
        assert_eq!(limited.usage.name, "principal-day");
        // The day quota replenishes one cell every 8 hours.
        assert!(
            limited.retry_after_seconds > 7 * 3600,
            "{}",
            limited.retry_after_seconds
        );
        assert_eq!(limited.others.len(), 1);
    }

    #[test]
    fn a_request_refused_by_one_quota_spends_none_of_its_stage() {
        // The day quota is listed first: before, each refusal by the minute
        // quota still used a cell of the day.
        let (limits, clock) = limiters(&["10/day", "1/minute"], &[], 100);
        let client = ip("203.0.113.9");
        let usages = limits.check_ip(client).unwrap();
        assert_eq!((usages[0].remaining, usages[1].remaining), (9, 0));
        for _ in 0..5 {
            let limited = limits.check_ip(client).unwrap_err();
            assert_eq!(limited.usage.name, "ip-minute");
            assert_eq!(limited.others[0].name, "ip-day");
            assert_eq!(limited.others[0].remaining, 9, "nothing spent");
        }
        clock.advance(Duration::from_secs(60));
        let usages = limits.check_ip(client).unwrap();
        assert_eq!((usages[0].remaining, usages[1].remaining), (8, 0));
    }

    #[test]
    fn retry_after_is_the_longest_wait_of_the_refusing_quotas() {
        let (limits, _clock) = limiters(&[], &["1/minute", "1/day"], 100);
        limits.check_principal("key:ci").unwrap();
        let limited = limits.check_principal("key:ci").unwrap_err();
        assert_eq!(limited.usage.name, "principal-day");
        assert_eq!(limited.retry_after_seconds, 86_400);
        assert_eq!(limited.others.len(), 1);
        assert_eq!(limited.others[0].name, "principal-minute");
    }

    #[test]
    fn the_ip_stage_is_spent_even_when_the_principal_stage_refuses() {
        // The per-IP stage runs before authentication and counts every
        // request that passes it, whatever happens later.
        let (limits, _clock) = limiters(&["3/minute"], &["1/minute"], 100);
        let client = ip("198.51.100.7");
        limits.check_ip(client).unwrap();
        limits.check_principal("key:ci").unwrap();
        assert_eq!(limits.check_ip(client).unwrap()[0].remaining, 1);
        assert!(limits.check_principal("key:ci").is_err());
        assert_eq!(limits.check_ip(client).unwrap()[0].remaining, 0);
    }

    #[test]
    fn looks_never_create_state_for_unknown_keys() {
        let (limits, _clock) = limiters(&["1/minute", "1/hour"], &[], 100);
        limits.check_ip(ip("192.0.2.1")).unwrap();
        assert_eq!(limits.tracked_keys(), 2);
        assert!(limits.check_ip(ip("192.0.2.1")).is_err());
        assert_eq!(limits.tracked_keys(), 2);
    }

    #[test]
    fn principals_are_independent() {
        let (limits, _clock) = limiters(&[], &["2/minute"], 100);
        limits.check_principal("jwt:idp|alice").unwrap();
        limits.check_principal("jwt:idp|alice").unwrap();
        assert!(limits.check_principal("jwt:idp|alice").is_err());
        assert!(limits.check_principal("jwt:idp|bob").is_ok());
        assert!(limits
            .check_principal(&anonymous_key(ip("198.51.100.1")))
            .is_ok());
    }

    #[test]
    fn mask_keeps_the_prefix() {
        assert_eq!(mask(ip("2001:db8:1:2:3:4:5:6"), 64), ip("2001:db8:1:2::"));
        assert_eq!(mask(ip("192.168.7.9"), 24), ip("192.168.7.0"));
        assert_eq!(mask(ip("192.168.7.9"), 0), ip("0.0.0.0"));
        assert_eq!(mask(ip("192.168.7.9"), 32), ip("192.168.7.9"));
    }

    #[test]
    fn ipv6_clients_are_grouped_by_their_64() {
        let (limits, _clock) = limiters(&["1/minute"], &[], 100);
        limits.check_ip(ip("2001:db8:1:2::1")).unwrap();
        assert!(limits.check_ip(ip("2001:db8:1:2:ffff::9")).is_err());
        assert!(limits.check_ip(ip("2001:db8:1:3::1")).is_ok());
        assert_eq!(anonymous_key(ip("2001:db8:1:2::1")), "ip:2001:db8:1:2::");
        assert_eq!(rate_key_for_ip(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn a_flood_of_distinct_addresses_leaves_tracked_keys_bounded() {
        let (limits, clock) = limiters(&["5/minute"], &["5/minute"], 1_000);
        // A client seen before the flood keeps its own budget.
        let regular = ip("192.0.2.77");
        limits.check_ip(regular).unwrap();

        let mut refused = 0;
        for i in 0..10_000u32 {
            let addr = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            if limits.check_ip(addr).is_err() {
                refused += 1;
            }
            let _ = limits.check_principal(&anonymous_key(addr));
        }
        // Each of the two limiters: at most 1,000 keys plus the overflow slot.
        assert!(
            limits.tracked_keys() <= 2 * 1_001,
            "{}",
            limits.tracked_keys()
        );
        // Untracked newcomers shared one 5/minute bucket.
        assert!(refused >= 10_000 - 1_000 - 5, "{refused}");
        assert!(limits.overflow_decisions() >= 2 * (10_000 - 1_000));
        let limited = limits.check_ip(ip("10.200.0.1")).unwrap_err();
        assert!(limited.overflow);
        assert_eq!(Rejection::from(limited).reason, "rate_limit.overflow");
        assert_eq!(limits.check_ip(regular).unwrap()[0].remaining, 3);

        // Once idle for a full window (governor keeps one replenish
        // interval of margin), every key is purged.
        clock.advance(Duration::from_secs(73));
        limits.retain_recent();
        assert_eq!(limits.tracked_keys(), 0);
        assert!(limits.check_ip(ip("10.200.0.1")).is_ok());
    }

    #[test]
    fn purge_keeps_active_keys() {
        let (limits, clock) = limiters(&["5/minute"], &[], 100);
        limits.check_ip(ip("192.0.2.1")).unwrap();
        clock.advance(Duration::from_secs(30));
        for _ in 0..4 {
            limits.check_ip(ip("192.0.2.2")).unwrap();
        }
        clock.advance(Duration::from_secs(1));
        limits.retain_recent();
        // 192.0.2.1 replenished its single cell after 12 s; .2 is still busy.
        assert_eq!(limits.tracked_keys(), 1);
        assert_eq!(limits.check_ip(ip("192.0.2.2")).unwrap()[0].remaining, 0);
    }

    #[test]
    fn usage_headers_list_every_policy() {
        let (limits, _clock) = limiters(&["10/second"], &["100/hour"], 100);
        let mut usages = limits.check_ip(ip("192.0.2.1")).unwrap();
        usages.extend(limits.check_principal("key:ci").unwrap());
        let headers = headers(&usages);
        assert_eq!(headers[0].0, RATELIMIT_POLICY);
        assert_eq!(
            headers[0].1,
            "\"ip-second\";q=10;w=1, \"principal-hour\";q=100;w=3600"
        );
        assert_eq!(
            headers[1].1,
            "\"ip-second\";r=9;t=1, \"principal-hour\";r=99;t=36"
        );
        assert!(super::headers(&[]).is_empty());
    }

    #[test]
    fn empty_route_allows_everything() {
        let (limits, _clock) = limiters(&[], &[], 100);
        assert!(limits.is_empty());
        for _ in 0..100 {
            assert!(limits.check_ip(ip("192.0.2.1")).unwrap().is_empty());
        }
    }
}
