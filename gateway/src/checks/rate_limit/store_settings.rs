//! Where the rate-limit state lives: `[rate_limit] store = "memory"` (the
//! default: each gateway counts on its own) or `"redis"` (every gateway
//! pointed at one Redis shares the quotas), and the `[rate_limit.redis]`
//! settings, parsed and validated with their key paths. The store itself
//! is runtime state (`state/rate_limits.rs`); this is only its description.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::checks::problems::{join, Problems};

/// Default number of multiplexed connections to Redis.
pub const DEFAULT_REDIS_POOL_SIZE: usize = 4;

/// Largest accepted `pool_size`.
pub const MAX_REDIS_POOL_SIZE: usize = 64;

/// Default bound on one Redis call (connecting included).
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(50);

/// Largest accepted `timeout`: a request waits at most this long per stage.
pub const MAX_REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// Default answer while the store cannot be reached.
pub const DEFAULT_ON_STORE_ERROR: OnStoreError = OnStoreError::Allow;

/// What a request gets while the shared store is unreachable or slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStoreError {
    /// Let it through uncounted (the audit line says so).
    Allow,
    /// Refuse it: 503 with `Retry-After`.
    Deny,
}

/// The `[rate_limit.redis]` table.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedisSettingsRaw {
    /// `redis://host:port` or `unix:/path/to/redis.sock`.
    pub address: Option<String>,
    /// Multiplexed connections. Default [`DEFAULT_REDIS_POOL_SIZE`].
    pub pool_size: Option<usize>,
    /// Bound on one call, e.g. `"50ms"`. Default [`DEFAULT_REDIS_TIMEOUT`].
    pub timeout: Option<String>,
    /// `"allow"` or `"deny"`. Default [`DEFAULT_ON_STORE_ERROR`].
    pub on_store_error: Option<OnStoreError>,
}

/// Where Redis listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisAddress {
    /// `redis://host:port` (no credentials in the URL).
    Tcp {
        /// Host name or IP.
        host: String,
        /// Port.
        port: u16,
    },
    /// `unix:/path`.
    Unix(PathBuf),
}

/// Validated `[rate_limit.redis]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// Where Redis listens.
    pub address: RedisAddress,
    /// Multiplexed connections.
    pub pool_size: usize,
    /// Bound on one call.
    pub timeout: Duration,
    /// What a request gets while Redis cannot answer (routes may override).
    pub on_store_error: OnStoreError,
}

/// The validated store choice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreSettings {
    /// Each gateway's own memory (governor).
    #[default]
    Memory,
    /// One Redis shared by every gateway.
    Redis(RedisSettings),
}

/// Reads an operator's duration (`"50ms"`); the config's own parser.
pub(crate) type ParseDuration = fn(&str) -> Result<Duration, String>;

impl StoreSettings {
    /// What the running store is built from (everything but
    /// `on_store_error`, which each request reads from its policy).
    pub fn connection(&self) -> Option<(&RedisAddress, usize, Duration)> {
        match self {
            StoreSettings::Memory => None,
            StoreSettings::Redis(r) => Some((&r.address, r.pool_size, r.timeout)),
        }
    }

    /// The global `on_store_error`, for the Redis store.
    pub fn on_store_error(&self) -> OnStoreError {
        match self {
            StoreSettings::Memory => DEFAULT_ON_STORE_ERROR,
            StoreSettings::Redis(r) => r.on_store_error,
        }
    }
}

/// Validates `store` and `[rate_limit.redis]` at key path `path`
/// (`rate_limit`), durations read by `parse_duration`.
pub(super) fn validate_store(
    store: Option<&str>,
    redis: Option<&RedisSettingsRaw>,
    path: &str,
    parse_duration: ParseDuration,
    problems: &mut Problems,
) -> Option<StoreSettings> {
    match (store.unwrap_or("memory"), redis) {
        ("memory", None) => Some(StoreSettings::Memory),
        ("memory", Some(_)) => {
            problems.push(
                join(path, "redis"),
                "only used with store = \"redis\"; remove it or set the store",
            );
            None
        }
        ("redis", Some(raw)) => validate_redis(raw, &join(path, "redis"), parse_duration, problems)
            .map(StoreSettings::Redis),
        ("redis", None) => {
            problems.push(
                join(path, "redis"),
                "store = \"redis\" needs a [rate_limit.redis] table with an address",
            );
            None
        }
        (other, _) => {
            problems.push(
                join(path, "store"),
                format!("{other:?}: expected \"memory\" or \"redis\""),
            );
            None
        }
    }
}

fn validate_redis(
    raw: &RedisSettingsRaw,
    path: &str,
    parse_duration: ParseDuration,
    problems: &mut Problems,
) -> Option<RedisSettings> {
    let before = problems.len();
    let address = match raw.address.as_deref() {
        None => {
            problems.push(join(path, "address"), "required");
            None
        }
        Some(text) => parse_address(text)
            .map_err(|message| problems.push(join(path, "address"), message))
            .ok(),
    };
    let pool_size = raw.pool_size.unwrap_or(DEFAULT_REDIS_POOL_SIZE);
    if !(1..=MAX_REDIS_POOL_SIZE).contains(&pool_size) {
        problems.push(
            join(path, "pool_size"),
            format!("must be between 1 and {MAX_REDIS_POOL_SIZE}"),
        );
    }
    let timeout = match raw.timeout.as_deref() {
        None => DEFAULT_REDIS_TIMEOUT,
        Some(text) => match parse_duration(text) {
            Ok(t) if !t.is_zero() && t <= MAX_REDIS_TIMEOUT => t,
            Ok(_) => {
                problems.push(join(path, "timeout"), "must be between 1ms and 5s");
                DEFAULT_REDIS_TIMEOUT
            }
            Err(message) => {
                problems.push(join(path, "timeout"), message);
                DEFAULT_REDIS_TIMEOUT
            }
        },
    };
    (problems.len() == before).then_some(RedisSettings {
        address: address?,
        pool_size,
        timeout,
        on_store_error: raw.on_store_error.unwrap_or(DEFAULT_ON_STORE_ERROR),
    })
}

/// `redis://host:port` or `unix:/absolute/path`. Credentials in the URL are
/// refused: the address is logged and shown in problems.
fn parse_address(text: &str) -> Result<RedisAddress, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        return if path.is_absolute() {
            Ok(RedisAddress::Unix(path))
        } else {
            Err("a unix: address needs an absolute path (unix:/run/redis.sock)".into())
        };
    }
    let bad = || format!("{text:?}: expected redis://host:port or unix:/path");
    let rest = text.strip_prefix("redis://").ok_or_else(bad)?;
    if rest.contains('@') {
        return Err("no credentials in the address; Redis is reached on a private network".into());
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 || host.contains('/') {
        return Err(bad());
    }
    Ok(RedisAddress::Tcp {
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(text: &str) -> Result<Duration, String> {
        let digits = text
            .strip_suffix("ms")
            .or(text.strip_suffix('s'))
            .ok_or("unit")?;
        let n: u64 = digits.parse().map_err(|_| "number".to_owned())?;
        Ok(if text.ends_with("ms") {
            Duration::from_millis(n)
        } else {
            Duration::from_secs(n)
        })
    }

    fn check(
        store: Option<&str>,
        redis: Option<RedisSettingsRaw>,
    ) -> Result<StoreSettings, String> {
        let mut problems = Problems::new();
        validate_store(store, redis.as_ref(), "rate_limit", millis, &mut problems)
            .filter(|_| problems.is_empty())
            .ok_or_else(|| problems.to_string())
    }

    #[test]
    fn memory_needs_nothing() {
        assert_eq!(check(None, None), Ok(StoreSettings::Memory));
        assert_eq!(check(Some("memory"), None), Ok(StoreSettings::Memory));
    }

    #[test]
    fn redis_defaults_and_addresses() {
        let raw = RedisSettingsRaw {
            address: Some("redis://127.0.0.1:6379".into()),
            ..RedisSettingsRaw::default()
        };
        let Ok(StoreSettings::Redis(settings)) = check(Some("redis"), Some(raw)) else {
            panic!("valid");
        };
        assert_eq!(settings.pool_size, DEFAULT_REDIS_POOL_SIZE);
        assert_eq!(settings.timeout, DEFAULT_REDIS_TIMEOUT);
        assert_eq!(settings.on_store_error, OnStoreError::Allow);
        assert_eq!(
            parse_address("unix:/run/redis.sock"),
            Ok(RedisAddress::Unix("/run/redis.sock".into()))
        );
        assert_eq!(
            parse_address("redis://[::1]:6380"),
            Ok(RedisAddress::Tcp {
                host: "::1".into(),
                port: 6380
            })
        );
    }

    #[test]
    fn problems_have_paths() {
        let raw = RedisSettingsRaw {
            address: Some("redis://user:pw@redis:6379".into()),
            pool_size: Some(0),
            timeout: Some("10s".into()),
            on_store_error: None,
        };
        let problems = check(Some("redis"), Some(raw)).unwrap_err();
        for key in [
            "rate_limit.redis.address",
            "rate_limit.redis.pool_size",
            "rate_limit.redis.timeout",
        ] {
            assert!(problems.contains(key), "{key} in {problems}");
        }
        assert!(!problems.contains("pw"), "{problems}");
        assert!(check(Some("redis"), None)
            .unwrap_err()
            .contains("rate_limit.redis"));
        assert!(check(Some("etcd"), None)
            .unwrap_err()
            .contains("rate_limit.store"));
        let stray = RedisSettingsRaw::default();
        assert!(check(None, Some(stray))
            .unwrap_err()
            .contains("rate_limit.redis"));
    }
}
