//! The Redis store: every quota of a stage decided and spent in one round
//! trip by one Lua script (`gcra.lua`, sent as `EVALSHA`, loaded again on
//! `NOSCRIPT`), over multiplexed connections opened by each serving thread
//! for itself (`redis/slots.rs`), each call bounded by
//! `rate_limit.redis.timeout`. A stage Redis refused is refused by the
//! thread from memory until Redis' wait ends (`redis/refused.rs`), so a
//! flooding client costs no round trip per request.
//!
//! Keys share one hash tag per stage, so all of a request's keys of a
//! stage live in one Redis Cluster slot (`docs/scaling.md`):
//! `th:rl:{ip:192.0.2.1}:r:<route>:<path>:ip-minute` and
//! `th:rl:{p:<hash>}:r:<route>:<path>:principal-day`, where `<hash>` is a SHA-256
//! of the principal id (no credential is ever a key; the id itself stays
//! out of Redis).

mod refused;
mod slots;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{Client, Cmd, ConnectionAddr, RedisError, Script, ServerErrorKind, Value};
use sha2::{Digest, Sha256};

use crate::checks::rate_limit::{
    usage_of, KeyKind, QuotaSpec, RateLimited, RedisAddress, RedisSettings, Usage,
};
use crate::metrics::StoreMetrics;
use slots::Shard;

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

/// The shared store.
pub(crate) struct RedisStore {
    client: Client,
    /// One group of connections per serving thread (`slots.rs`).
    shards: Box<[Shard]>,
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
    /// A store for `settings` serving `threads` serving threads; nothing
    /// is connected until the first call.
    pub(crate) fn new(
        settings: &RedisSettings,
        metrics: StoreMetrics,
        threads: usize,
    ) -> anyhow::Result<Self> {
        let addr = match &settings.address {
            RedisAddress::Tcp { host, port } => ConnectionAddr::Tcp(host.clone(), *port),
            RedisAddress::Unix(path) => ConnectionAddr::Unix(path.clone()),
        };
        Ok(RedisStore {
            client: Client::open(addr)?,
            shards: Shard::for_threads(threads, settings.pool_size),
            timeout: settings.timeout,
            script: Script::new(include_str!("gcra.lua")),
            metrics,
        })
    }

    /// Decides a request against every quota of one stage (`tag`: the
    /// client's rate key or principal), all or nothing, in one round trip,
    /// or none while Redis' last answer for the stage still refuses it
    /// (`refused.rs`).
    pub(crate) async fn decide(
        &self,
        tag: &str,
        quotas: &[Quota<'_>],
    ) -> Result<Result<Vec<Usage>, RateLimited>, StoreError> {
        let shard = &self.shards[crate::shard::current(self.shards.len())];
        let held = refused::key(tag, quotas);
        let started = Instant::now();
        if let Some(limited) = lock(&shard.refused).answer(&held, started) {
            return Ok(Err(limited));
        }
        let slot = shard.slot();
        let answer = tokio::time::timeout(self.timeout, self.call(slot, tag, quotas)).await;
        self.metrics.call(started.elapsed());
        let failed = |error: StoreError| {
            self.metrics.error(error.label());
            slot.drop_connection();
            error
        };
        let reply = match answer {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => return Err(failed(error)),
            Err(_elapsed) => return Err(failed(StoreError::Timeout)),
        };
        let decided = decision(&reply, quotas).ok_or_else(|| failed(StoreError::Reply))?;
        if let Err(limited) = &decided {
            let wait = longest_wait(&reply);
            lock(&shard.refused).remember(held, started + wait, limited);
        }
        Ok(decided)
    }

    async fn call(
        &self,
        slot: &slots::Slot,
        tag: &str,
        quotas: &[Quota<'_>],
    ) -> Result<Vec<i64>, StoreError> {
        let mut connection = slot.connection(&self.client, self.timeout).await?;
        let command = self.evalsha(tag, quotas);
        let mut reply = connection
            .send_packed_command(&command)
            .await
            .map_err(store_error)?;
        if matches!(&reply, Value::ServerError(e) if e.kind() == Some(ServerErrorKind::NoScript)) {
            self.load(&mut connection).await?;
            reply = connection
                .send_packed_command(&command)
                .await
                .map_err(store_error)?;
        }
        integers(reply).ok_or(StoreError::Reply)
    }

    /// `EVALSHA <sha> <n> <keys…> <t_1> <count_1> …`, written straight into
    /// one command (no per-key strings).
    fn evalsha(&self, tag: &str, quotas: &[Quota<'_>]) -> Cmd {
        let mut command = Cmd::with_capacity(3 + 3 * quotas.len(), 64 + 96 * quotas.len());
        command
            .arg("EVALSHA")
            .arg(self.script.get_hash())
            .arg(quotas.len());
        let mut key_text = String::with_capacity(96);
        for quota in quotas {
            key_text.clear();
            write_key(&mut key_text, tag, quota);
            command.arg(key_text.as_str());
        }
        for quota in quotas {
            let window_us = quota.spec.window.seconds() * 1_000_000;
            let t = (window_us / u64::from(quota.spec.count.get())).max(1);
            command.arg(t).arg(quota.spec.count.get());
        }
        command
    }

    /// Loads the script after a `NOSCRIPT` (a restarted or flushed Redis).
    async fn load(&self, connection: &mut MultiplexedConnection) -> Result<(), StoreError> {
        self.script
            .load_async(connection)
            .await
            .map(drop)
            .map_err(store_error)
    }

    /// Connections open on each serving thread's group.
    #[cfg(test)]
    pub(crate) fn open_per_thread(&self) -> Vec<usize> {
        self.shards.iter().map(Shard::open).collect()
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn store_error(error: RedisError) -> StoreError {
    if error.is_io_error() || error.is_connection_dropped() {
        StoreError::Connection
    } else {
        StoreError::Reply
    }
}

/// The script's reply as integers, `None` for anything else.
fn integers(reply: Value) -> Option<Vec<i64>> {
    let Value::Array(items) = reply else {
        return None;
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::Int(n) => Some(n),
            _ => None,
        })
        .collect()
}

/// The longest wait of a refusal in the script's reply.
fn longest_wait(reply: &[i64]) -> Duration {
    let longest = reply
        .get(1..)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|pair| pair[1])
        .max()
        .unwrap_or(0);
    Duration::from_micros(u64::try_from(longest).unwrap_or(0))
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
#[cfg(test)]
fn key(tag: &str, quota: &Quota<'_>) -> String {
    let mut key = String::new();
    write_key(&mut key, tag, quota);
    key
}

/// Appends `th:rl:{<tag>}:<owner>:<policy>` to `out`.
fn write_key(out: &mut String, tag: &str, quota: &Quota<'_>) {
    let _ = write!(
        out,
        "{KEY_PREFIX}{{{tag}}}:{}:{}-{}",
        quota.owner,
        quota.kind.name(),
        quota.spec.window.name()
    );
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
