//! Several workers, one per principal: rendezvous (highest random weight)
//! hashing, and passive health.
//!
//! Each worker keeps a principal's session in its own memory, so every
//! request of one principal must reach the same worker, from any gateway.
//! The worker is the one with the highest score `hash(worker address,
//! principal id)` among those not ejected: a pure function of the
//! configured addresses and the principal, so gateways with the same
//! `upstream.addresses` (in any order) agree without sharing any state.
//! Callers without a principal (routes with `auth = "none"`) share the
//! worker's one anonymous space, so they all go to the worker that the
//! empty principal ranks first.
//!
//! Adding or removing a worker moves only the principals whose first
//! choice it is (about 1/n of them); everyone else keeps their worker.
//!
//! Passive health: a worker that refuses a connection or breaks an exchange
//! is ejected for `upstream.eject_for`; its principals then rank their next
//! worker first (which has no data for them: the worker's own "upload
//! first" answer), and come back to it when the time is up. When every
//! worker is ejected, the first choice is tried anyway. The readiness probe
//! ejects a worker that fails it too (`admin.rs`).
//!
//! The hash is FNV-1a followed by the SplitMix64 finaliser: fixed, so that
//! gateways built by different compilers agree. It is not keyed: principal
//! ids are chosen by the gateway's checks, not by clients, and a client
//! that picks its worker gains nothing but its own session's place.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::pool::Pool;
use super::Connector;
use crate::config::{self, UpstreamAddress};

/// One worker: its connections and when it may be used again.
struct Member {
    seed: u64,
    pool: Arc<Pool>,
    ejected_until: Mutex<Option<Instant>>,
}

/// The configured workers, in configuration order.
pub(crate) struct Workers {
    members: Vec<Member>,
    eject_for: Duration,
}

/// The worker chosen for one request.
pub(crate) struct Chosen<'a> {
    /// Its position in `upstream.addresses`.
    pub(crate) index: usize,
    pub(crate) pool: &'a Arc<Pool>,
}

impl Workers {
    /// One connection pool per worker, with one idle list per serving
    /// thread (inside the runtime).
    pub(crate) fn new(config: &config::Upstream, serving_threads: usize) -> Workers {
        let members = config
            .addresses
            .iter()
            .map(|address| Member {
                seed: fnv1a(FNV_OFFSET, address_text(address).as_bytes()),
                pool: Pool::new(
                    Connector::new(address.clone(), config.connect_timeout),
                    config.pool_max_idle,
                    config.pool_idle_timeout,
                    serving_threads,
                ),
                ejected_until: Mutex::new(None),
            })
            .collect();
        Workers {
            members,
            eject_for: config.eject_for,
        }
    }

    /// Whether there is more than one worker (ejection and the
    /// session-lost answer apply only then).
    pub(crate) fn is_pool(&self) -> bool {
        self.members.len() > 1
    }

    /// The worker for `principal` (`None`: anonymous).
    pub(crate) fn pick(&self, principal: Option<&str>) -> Chosen<'_> {
        let key = principal.unwrap_or("").as_bytes();
        let index = if self.is_pool() {
            let now = Instant::now();
            let ranked = rank(self.members.iter().map(|m| m.seed), key);
            ranked
                .iter()
                .copied()
                .find(|&i| !self.members[i].is_ejected(now))
                .unwrap_or(ranked[0])
        } else {
            0
        };
        Chosen {
            index,
            pool: &self.members[index].pool,
        }
    }

    /// Leaves worker `index` out for `upstream.eject_for`.
    pub(crate) fn eject(&self, index: usize) {
        if let Some(member) = self.members.get(index) {
            let until = Instant::now() + self.eject_for;
            *member.ejected_until.lock().expect("not poisoned") = Some(until);
            tracing::warn!(
                upstream.worker = index,
                eject_secs = self.eject_for.as_secs_f64(),
                "worker ejected; its principals go to their next worker meanwhile"
            );
        }
    }
}

impl Member {
    fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until
            .lock()
            .expect("not poisoned")
            .is_some_and(|until| now < until)
    }
}

/// How a worker is named in the hash: its address as written.
fn address_text(address: &UpstreamAddress) -> String {
    match address {
        UpstreamAddress::Unix(path) => format!("unix:{}", path.display()),
        UpstreamAddress::Tcp { host, port } => format!("http://{host}:{port}"),
    }
}

/// Worker positions, best first, for `key`: by score, ties by position.
pub(crate) fn rank(seeds: impl Iterator<Item = u64>, key: &[u8]) -> Vec<usize> {
    let mut scored: Vec<(u64, usize)> = seeds
        .enumerate()
        .map(|(index, seed)| (score(seed, key), index))
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, index)| index).collect()
}

fn score(seed: u64, key: &[u8]) -> u64 {
    splitmix64(fnv1a(seed, key))
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds(names: &[&str]) -> Vec<u64> {
        names
            .iter()
            .map(|n| fnv1a(FNV_OFFSET, n.as_bytes()))
            .collect()
    }

    fn first(names: &[&str], key: &str) -> String {
        let seeds = seeds(names);
        names[rank(seeds.into_iter(), key.as_bytes())[0]].to_owned()
    }

    #[test]
    fn the_choice_ignores_the_order_of_the_workers() {
        for user in 0..200 {
            let key = format!("key:user-{user}");
            assert_eq!(
                first(&["unix:/a", "unix:/b", "unix:/c"], &key),
                first(&["unix:/c", "unix:/a", "unix:/b"], &key)
            );
        }
    }

    #[test]
    fn principals_spread_and_a_removed_worker_moves_only_its_own() {
        let three = ["unix:/a", "unix:/b", "unix:/c"];
        let two = ["unix:/a", "unix:/b"];
        let mut counts = [0usize; 3];
        for user in 0..3000 {
            let key = format!("jwt:issuer|user-{user}");
            let before = first(&three, &key);
            counts[three.iter().position(|n| *n == before).unwrap()] += 1;
            let after = first(&two, &key);
            if before != "unix:/c" {
                assert_eq!(before, after, "{key} moved though its worker stayed");
            }
        }
        for count in counts {
            assert!((700..=1300).contains(&count), "uneven spread: {counts:?}");
        }
    }
}
