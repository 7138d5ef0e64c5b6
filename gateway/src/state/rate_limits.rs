//! The rate-limit state at run time, owned by `State`: the buckets of the
//! memory store, or the connection to the Redis store. The validated
//! `Config` only describes the quotas (`RouteChecks::quotas`, the token
//! endpoints' quotas in `PolicyChecks`); a request asks here with its
//! policy snapshot's quotas.
//!
//! **The reload rule, in one place** ([`RateLimits::follow`]): memory
//! buckets are keyed by their owner (a route's name, or a token endpoint)
//! *and* its quotas. A reload keeps the buckets of every owner whose quotas
//! did not change and drops the rest; an owner with new quotas starts with
//! fresh buckets on its first request. Redis keys need no rule: they are
//! named after owner and quota window, and expire with their window.
//!
//! The decisions (GCRA, all or nothing within a stage) are the same in both
//! stores: `checks/rate_limit.rs` for the memory store, `rate_limits/
//! gcra.lua` for Redis. What a request gets while Redis cannot answer is
//! `on_store_error`: let through uncounted (`rate_limit.store_unavailable`
//! on its audit line) or refused with a 503 (`docs/configuration.md`).

mod redis;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

use governor::clock::DefaultClock;
use http::header::RETRY_AFTER;
use http::{HeaderValue, StatusCode};

use crate::checks::rate_limit::{
    rate_key_for_ip, KeyKind, OnStoreError, RateLimitSettings, RouteLimiters, RouteRateLimits,
    StoreSettings, Usage,
};
use crate::checks::Rejection as CheckRejection;
use crate::config::Config;
use crate::exchange::Trail;
use crate::metrics::StoreMetrics;
use crate::reject::{check, Rejection};
use redis::{Quota, RedisStore, StoreError};

/// Seconds a client is told to wait while the store is unavailable.
const STORE_RETRY_AFTER_SECONDS: u32 = 1;

/// Whose quotas: a route, or one of the gateway's token endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner<'a> {
    /// The route with this name and path (one entry of a path group).
    Route {
        /// Its name.
        name: &'a str,
        /// Its path.
        path: &'a str,
    },
    /// `POST /auth/session`.
    Session,
    /// `POST /auth/token`.
    Token,
}

impl Owner<'_> {
    /// The path part of the memory buckets' key (the endpoints' own name).
    fn path(&self) -> &str {
        match self {
            Owner::Route { path, .. } => path,
            Owner::Session => "session",
            Owner::Token => "token",
        }
    }
}

/// Which stage of a request, and who it counts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stage<'a> {
    /// The per-IP quotas, before authentication.
    Ip(IpAddr),
    /// The per-principal quotas (anonymous callers: `anonymous_key`).
    Principal(&'a str),
}

/// Memory buckets of one owner name: per path (empty for the token
/// endpoints) and the quotas they were built for.
type Held = Vec<(String, RouteRateLimits, Arc<RouteLimiters>)>;

#[derive(Default)]
struct Buckets {
    routes: HashMap<String, Held>,
    session: Held,
    token: Held,
}

impl Buckets {
    fn of(&self, owner: Owner<'_>) -> Option<&Held> {
        match owner {
            Owner::Route { name, .. } => self.routes.get(name),
            Owner::Session => Some(&self.session),
            Owner::Token => Some(&self.token),
        }
    }

    fn of_mut(&mut self, owner: Owner<'_>) -> &mut Held {
        match owner {
            Owner::Route { name, .. } => self.routes.entry(name.to_owned()).or_default(),
            Owner::Session => &mut self.session,
            Owner::Token => &mut self.token,
        }
    }

    fn all(&self) -> impl Iterator<Item = &Arc<RouteLimiters>> {
        self.routes
            .values()
            .chain([&self.session, &self.token])
            .flatten()
            .map(|(_, _, limiters)| limiters)
    }
}

/// The rate-limit state of a running gateway.
pub(crate) struct RateLimits {
    memory: RwLock<Buckets>,
    redis: Option<RedisStore>,
}

/// The 503 of a request refused while the store is unavailable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unavailable(StoreError);

impl From<Unavailable> for CheckRejection {
    fn from(unavailable: Unavailable) -> Self {
        CheckRejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "rate limits cannot be checked right now",
            "rate_limit.store_unavailable",
        )
        .with_detail(format!("retry after {STORE_RETRY_AFTER_SECONDS} seconds"))
        .with_audit_detail(unavailable.0.label())
        .with_header(RETRY_AFTER, HeaderValue::from(STORE_RETRY_AFTER_SECONDS))
    }
}

impl RateLimits {
    /// The state for `settings`' store (nothing connects yet), used by
    /// `threads` serving threads (`server.threads`; 1 off the request path).
    pub(crate) fn new(
        settings: &RateLimitSettings,
        metrics: StoreMetrics,
        threads: usize,
    ) -> anyhow::Result<Self> {
        let redis = match &settings.store {
            StoreSettings::Memory => None,
            StoreSettings::Redis(redis) => Some(RedisStore::new(redis, metrics, threads)?),
        };
        Ok(RateLimits {
            memory: RwLock::new(Buckets::default()),
            redis,
        })
    }

    /// Decides one stage of a request against `quotas` (see the module
    /// doc): the usages for the headers, or the refusal.
    pub(crate) async fn check(
        &self,
        config: &Config,
        owner: Owner<'_>,
        quotas: &RouteRateLimits,
        stage: Stage<'_>,
        trail: &Trail,
    ) -> Result<Vec<Usage>, Rejection> {
        let specs = match stage {
            Stage::Ip(_) => &quotas.per_ip,
            Stage::Principal(_) => &quotas.per_principal,
        };
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let Some(redis) = &self.redis else {
            let limiters = self.memory_buckets(owner, quotas, &config.checks.rate_limit);
            return match stage {
                Stage::Ip(ip) => limiters.check_ip(ip),
                Stage::Principal(principal) => limiters.check_principal(principal),
            }
            .map_err(check);
        };
        let (kind, key) = match stage {
            Stage::Ip(ip) => (KeyKind::Ip, rate_key_for_ip(ip).to_string()),
            Stage::Principal(principal) => (KeyKind::Principal, principal.to_owned()),
        };
        let owner_part = match owner {
            Owner::Route { name, path } => format!("r:{name}:{path}"),
            Owner::Session => "session".to_owned(),
            Owner::Token => "token".to_owned(),
        };
        let store_quotas: Vec<Quota<'_>> = specs
            .iter()
            .map(|spec| Quota {
                owner: &owner_part,
                kind,
                spec: *spec,
            })
            .collect();
        // Boxed: the store's exchange is a large future, and held inline it
        // would grow every request's, memory store or not, by as much
        // (`docs/benchmarks.md`, "Smaller futures").
        let decided = Box::pin(redis.decide(&redis::tag(kind, &key), &store_quotas)).await;
        match decided {
            Ok(decided) => decided.map_err(check),
            Err(error) => {
                let policy = quotas
                    .on_store_error
                    .unwrap_or_else(|| config.checks.rate_limit.store.on_store_error());
                match policy {
                    OnStoreError::Allow => {
                        trail.rate_limit_skipped("rate_limit.store_unavailable");
                        Ok(Vec::new())
                    }
                    OnStoreError::Deny => Err(check(Unavailable(error))),
                }
            }
        }
    }

    /// The memory buckets of `owner` for exactly these quotas, made on
    /// first use.
    fn memory_buckets(
        &self,
        owner: Owner<'_>,
        quotas: &RouteRateLimits,
        settings: &RateLimitSettings,
    ) -> Arc<RouteLimiters> {
        let path = owner.path();
        let find = |held: &Held| {
            held.iter()
                .find(|(at, built_for, _)| at == path && built_for.same_quotas(quotas))
                .map(|(_, _, limiters)| Arc::clone(limiters))
        };
        let buckets = self.memory.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = buckets.of(owner).and_then(find) {
            return found;
        }
        drop(buckets);
        let mut buckets = self.memory.write().unwrap_or_else(PoisonError::into_inner);
        let held = buckets.of_mut(owner);
        if let Some(found) = find(held) {
            return found;
        }
        let made = Arc::new(RouteLimiters::new(
            quotas,
            settings,
            DefaultClock::default(),
        ));
        held.push((path.to_owned(), quotas.clone(), Arc::clone(&made)));
        made
    }

    /// The reload rule: keeps the memory buckets of every owner (route
    /// name and path, or token endpoint) whose quotas `config` still has,
    /// drops every other (a renamed or removed route, changed quotas, a
    /// disabled endpoint).
    pub(crate) fn follow(&self, config: &Config) {
        let in_force = |owner: Owner<'_>| -> Option<&RouteRateLimits> {
            match owner {
                Owner::Route { name, path } => config
                    .routes
                    .iter()
                    .find(|route| route.name == name && route.path == path)
                    .map(|route| &route.checks.quotas),
                Owner::Session => config.checks.session_quotas.as_ref(),
                Owner::Token => config.checks.token_quotas.as_ref(),
            }
        };
        let keep = |name: Option<&str>, held: &mut Held| {
            held.retain(|(path, built_for, _)| {
                let owner = match name {
                    Some(name) => Owner::Route { name, path },
                    None if path == "session" => Owner::Session,
                    None => Owner::Token,
                };
                in_force(owner).is_some_and(|q| q.same_quotas(built_for))
            });
        };
        let mut buckets = self.memory.write().unwrap_or_else(PoisonError::into_inner);
        for (name, held) in &mut buckets.routes {
            keep(Some(name), held);
        }
        buckets.routes.retain(|_, held| !held.is_empty());
        keep(None, &mut buckets.session);
        keep(None, &mut buckets.token);
    }

    /// Drops idle memory keys everywhere (every
    /// `rate_limit.purge_interval_seconds`), and the buckets `config` no
    /// longer uses.
    pub(crate) fn purge(&self, config: &Config) {
        self.follow(config);
        let buckets = self.memory.read().unwrap_or_else(PoisonError::into_inner);
        for limiters in buckets.all() {
            limiters.retain_recent();
        }
    }

    /// Keys tracked by every memory bucket.
    pub(crate) fn tracked_keys(&self) -> usize {
        let buckets = self.memory.read().unwrap_or_else(PoisonError::into_inner);
        buckets.all().map(|limiters| limiters.tracked_keys()).sum()
    }
}

#[cfg(test)]
mod bench;
#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod tests;
