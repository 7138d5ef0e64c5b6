//! The Redis store: every quota of a stage decided and spent in one round
//! trip by one Lua script (`gcra.lua`, sent as `EVALSHA`, loaded again on
//! `NOSCRIPT`), over a small pool of multiplexed connections, each call
//! bounded by `rate_limit.redis.timeout`.
//!
//! Keys share one hash tag per stage, so all of a request's keys of a
//! stage live in one Redis Cluster slot (`docs/scaling.md`):
//! `th:rl:{ip:192.0.2.1}:r:<route>:<path>:ip-minute` and
//! `th:rl:{p:<hash>}:r:<route>:<path>:principal-day`, where `<hash>` is a SHA-256
//! of the principal id (no credential is ever a key; the id itself stays
//! out of Redis).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, Script};
use sha2::{Digest, Sha256};

use crate::checks::rate_limit::{
    usage_of, KeyKind, QuotaSpec, RateLimited, RedisAddress, RedisSettings, Usage,
};
use crate::metrics::StoreMetrics;

/// After a failed connection attempt, calls fail at once for this long
/// instead of each trying to connect again.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);

/// Prefix of every key the gateway writes.
const KEY_PREFIX: &str = "th:rl:";

/// Why the store could not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StoreError {
    /// No answer within `timeout`.
    #[error("the rate-limit store did not answer in time")]
    Timeout,
    /// No connection (refused, reset, backing off).
    #[error("the rate-limit store cannot be reached")]
    Connection,
    /// An answer that is not the script's.
    #[error("the rate-limit store gave an unexpected answer")]
    Reply,
}

impl StoreError {
    /// The `reason` label of `rate_limit_store_errors_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            StoreError::Timeout => "timeout",
            StoreError::Connection => "connection",
            StoreError::Reply => "reply",
        }
    }
}

/// One pooled connection, opened on first use and again after a failure.
#[derive(Default)]
struct Slot {
    connection: RwLock<Option<MultiplexedConnection>>,
    connecting: tokio::sync::Mutex<()>,
    backoff_until: Mutex<Option<Instant>>,
}

/// The shared store.
pub(crate) struct RedisStore {
    client: Client,
    slots: Vec<Slot>,
    next: AtomicUsize,
    timeout: Duration,
    script: Script,
    metrics: StoreMetrics,
}

/// One quota of a stage, as the store sees it.
pub(crate) struct Quota<'a> {
    /// The key's middle part: whose quota (`r:<route>:<path>`, `session`,
    /// `token`).
    pub(crate) owner: &'a str,
    /// Per IP or per principal.
    pub(crate) kind: KeyKind,
    /// The quota.
    pub(crate) spec: QuotaSpec,
}

impl RedisStore {
    /// A store for `settings`; nothing is connected until the first call.
    pub(crate) fn new(settings: &RedisSettings, metrics: StoreMetrics) -> anyhow::Result<Self> {
        let addr = match &settings.address {
            RedisAddress::Tcp { host, port } => ConnectionAddr::Tcp(host.clone(), *port),
            RedisAddress::Unix(path) => ConnectionAddr::Unix(path.clone()),
        };
        Ok(RedisStore {
            client: Client::open(addr)?,
            slots: (0..settings.pool_size).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
            timeout: settings.timeout,
            script: Script::new(include_str!("gcra.lua")),
            metrics,
        })
    }

    /// Decides a request against every quota of one stage (`tag`: the
    /// client's rate key or principal), all or nothing, in one round trip.
    pub(crate) async fn decide(
        &self,
        tag: &str,
        quotas: &[Quota<'_>],
    ) -> Result<Result<Vec<Usage>, RateLimited>, StoreError> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        let started = Instant::now();
        let answer = tokio::time::timeout(self.timeout, self.call(slot, tag, quotas)).await;
        self.metrics.call(started.elapsed());
        let reply = match answer {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => return Err(self.failed(slot, error)),
            Err(_elapsed) => return Err(self.failed(slot, StoreError::Timeout)),
        };
        decision(&reply, quotas).ok_or_else(|| self.failed(slot, StoreError::Reply))
    }

    async fn call(
        &self,
        slot: &Slot,
        tag: &str,
        quotas: &[Quota<'_>],
    ) -> Result<Vec<i64>, StoreError> {
        let mut connection = self.connection(slot).await?;
        let mut invocation = self.script.prepare_invoke();
        for quota in quotas {
            let window_us = quota.spec.window.seconds() * 1_000_000;
            let t = (window_us / u64::from(quota.spec.count.get())).max(1);
            invocation
                .key(key(tag, quota))
                .arg(t)
                .arg(quota.spec.count.get());
        }
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|error| {
                if error.is_io_error() || error.is_connection_dropped() {
                    StoreError::Connection
                } else {
                    StoreError::Reply
                }
            })
    }

    /// The slot's connection, opened if needed (one attempt at a time per
    /// slot, none while backing off).
    async fn connection(&self, slot: &Slot) -> Result<MultiplexedConnection, StoreError> {
        if let Some(open) = read(&slot.connection) {
            return Ok(open);
        }
        let _one_attempt = slot.connecting.lock().await;
        if let Some(open) = read(&slot.connection) {
            return Ok(open);
        }
        let backoff = *slot
            .backoff_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if backoff.is_some_and(|until| Instant::now() < until) {
            return Err(StoreError::Connection);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        match self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(open) => {
                *slot
                    .connection
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(open.clone());
                Ok(open)
            }
            Err(_) => {
                *slot
                    .backoff_until
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) =
                    Some(Instant::now() + RECONNECT_BACKOFF);
                Err(StoreError::Connection)
            }
        }
    }

    /// Counts a failure and drops the slot's connection: the next call on
    /// it connects again.
    fn failed(&self, slot: &Slot, error: StoreError) -> StoreError {
        self.metrics.error(error.label());
        *slot
            .connection
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
        error
    }
}

fn read(lock: &RwLock<Option<MultiplexedConnection>>) -> Option<MultiplexedConnection> {
    lock.read().unwrap_or_else(PoisonError::into_inner).clone()
}

/// The hash tag of a stage: the client's address, or a hash of the
/// principal id.
pub(crate) fn tag(kind: KeyKind, key: &str) -> String {
    match kind {
        KeyKind::Ip => format!("ip:{key}"),
        KeyKind::Principal => {
            let digest = Sha256::digest(key.as_bytes());
            format!("p:{}", hex::encode(&digest[..16]))
        }
    }
}

/// `th:rl:{<tag>}:<owner>:<policy>`.
fn key(tag: &str, quota: &Quota<'_>) -> String {
    format!(
        "{KEY_PREFIX}{{{tag}}}:{}:{}",
        quota.owner,
        quota.kind.policy_name(quota.spec.window)
    )
}

/// The script's answer as the memory store gives it: every quota's usage,
/// or the refusal with the longest wait and the others as they stand.
fn decision(reply: &[i64], quotas: &[Quota<'_>]) -> Option<Result<Vec<Usage>, RateLimited>> {
    if reply.len() != 1 + 2 * quotas.len() {
        return None;
    }
    let allowed = reply[0] == 1;
    let mut usages = Vec::with_capacity(quotas.len());
    let mut worst: Option<(u64, Usage)> = None;
    for (quota, pair) in quotas.iter().zip(reply[1..].chunks_exact(2)) {
        let name = quota.kind.policy_name(quota.spec.window);
        let remaining = u32::try_from(pair[0].max(0)).ok()?;
        let wait_us = u64::try_from(pair[1].max(0)).ok()?;
        let mut usage = usage_of(&name, quota.spec, remaining);
        if wait_us == 0 {
            usages.push(usage);
            continue;
        }
        usage.reset_seconds = wait_us.div_ceil(1_000_000).max(1);
        match worst.take() {
            Some((longest, other)) if longest >= wait_us => {
                usages.push(usage);
                worst = Some((longest, other));
            }
            Some((_, other)) => {
                usages.push(other);
                worst = Some((wait_us, usage));
            }
            None => worst = Some((wait_us, usage)),
        }
    }
    match (allowed, worst) {
        (true, None) => Some(Ok(usages)),
        (false, Some((_, usage))) => Some(Err(RateLimited {
            retry_after_seconds: usage.reset_seconds,
            usage,
            others: usages,
            overflow: false,
        })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(text: &str) -> Quota<'static> {
        Quota {
            owner: "r:health",
            kind: KeyKind::Ip,
            spec: text.parse().unwrap(),
        }
    }

    #[test]
    fn keys_share_one_hash_tag_and_hold_no_principal() {
        let tag = tag(KeyKind::Principal, "jwt:https://issuer|alice@example.com");
        assert!(!tag.contains("alice"), "{tag}");
        let day = key(&tag, &quota("10/day"));
        let minute = key(&tag, &quota("1/minute"));
        let slot = |k: &str| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_owned();
        assert_eq!(slot(&day), slot(&minute));
        assert!(
            day.starts_with("th:rl:{p:") && day.ends_with(":r:health:ip-day"),
            "{day}"
        );
    }

    #[test]
    fn a_refusal_reports_the_longest_wait() {
        let quotas = [quota("10/day"), quota("1/minute"), quota("5/hour")];
        // The day quota allows (9 left after a spend that did not happen,
        // reported as 10), the minute refuses for 30 s, the hour for 90 s.
        let reply = [0, 10, 0, 0, 30_000_000, 0, 90_000_000];
        let Some(Err(limited)) = decision(&reply, &quotas) else {
            panic!("refused");
        };
        assert_eq!(limited.usage.name, "ip-hour");
        assert_eq!(limited.retry_after_seconds, 90);
        let names: Vec<_> = limited.others.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["ip-day", "ip-minute"]);
        assert_eq!(decision(&[1, 9], &quotas), None, "a short reply is refused");
    }
}
