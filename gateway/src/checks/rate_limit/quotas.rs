//! The `[rate_limit]` settings and a route's quotas (`"5/minute"`), parsed
//! and validated with their key paths.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use governor::Quota;
use serde::Deserialize;

use super::store_settings::{
    validate_store, OnStoreError, ParseDuration, RedisSettingsRaw, StoreSettings,
};
use super::{
    DEFAULT_MAX_TRACKED_KEYS, DEFAULT_PURGE_INTERVAL, MAX_MAX_TRACKED_KEYS, MAX_QUOTA_COUNT,
};
use crate::checks::problems::{index, join, Problems};

/// The global `[rate_limit]` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettingsRaw {
    /// Keys one limiter tracks before new keys share the overflow bucket.
    /// Default [`DEFAULT_MAX_TRACKED_KEYS`].
    pub max_tracked_keys: Option<usize>,
    /// Seconds between purges of idle keys. Default 60.
    pub purge_interval_seconds: Option<u64>,
    /// `"memory"` (default) or `"redis"`.
    pub store: Option<String>,
    /// The Redis store's settings.
    pub redis: Option<RedisSettingsRaw>,
}

/// Validated global settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Keys one limiter tracks.
    pub max_tracked_keys: usize,
    /// Interval between purges of idle keys.
    pub purge_interval: Duration,
    /// Where the state lives.
    pub store: StoreSettings,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            max_tracked_keys: DEFAULT_MAX_TRACKED_KEYS,
            purge_interval: DEFAULT_PURGE_INTERVAL,
            store: StoreSettings::Memory,
        }
    }
}

/// Validates `[rate_limit]` at key path `path`, durations read by
/// `parse_duration`.
pub fn validate_settings(
    raw: &RateLimitSettingsRaw,
    path: &str,
    parse_duration: ParseDuration,
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
    let store = validate_store(
        raw.store.as_deref(),
        raw.redis.as_ref(),
        path,
        parse_duration,
        problems,
    );
    (problems.len() == before).then_some(RateLimitSettings {
        max_tracked_keys,
        purge_interval: Duration::from_secs(purge),
        store: store?,
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
    /// This route's answer while a shared store is unreachable (default:
    /// `rate_limit.redis.on_store_error`).
    pub on_store_error: Option<OnStoreError>,
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

    pub(crate) fn name(self) -> &'static str {
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
    pub(super) fn governor_quota(self) -> Quota {
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
    /// The generic policy name of its quota per `window` (`ip-minute`).
    pub fn policy_name(self, window: Window) -> String {
        format!("{}-{}", self.name(), window.name())
    }

    pub(crate) fn name(self) -> &'static str {
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
    /// This route's answer while a shared store is unreachable, if it sets
    /// its own.
    pub on_store_error: Option<OnStoreError>,
}

impl RouteRateLimits {
    /// Whether `other` counts the same quotas (what the buckets depend on).
    pub fn same_quotas(&self, other: &RouteRateLimits) -> bool {
        self.per_ip == other.per_ip && self.per_principal == other.per_principal
    }

    /// Whether there is no quota at all.
    pub fn is_empty(&self) -> bool {
        self.per_ip.is_empty() && self.per_principal.is_empty()
    }
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
        on_store_error: raw.on_store_error,
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
