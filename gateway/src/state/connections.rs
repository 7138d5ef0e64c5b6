//! Open connections and the over-cap answer budget: runtime state the
//! accept loop (`accept.rs`) counts against `limits.max_connections`,
//! `limits.max_connections_per_ip` and `limits.over_cap_answers_per_second`.
//! Kept across reloads: the limits are read from the policy in force at
//! each accept.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::config::Limits;

/// Open connections, in total and per client IP, and the budget for
/// answering connections over the per-IP cap (`accept/over_cap.rs` answers those).
#[derive(Debug, Default)]
pub(crate) struct Connections {
    open: Mutex<Open>,
    pub(crate) over_cap: Budget,
}

/// Which connection cap a new connection hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cap {
    Total,
    PerIp,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its place.
pub(crate) struct Admitted {
    connections: Arc<Connections>,
    ip: IpAddr,
}

impl Connections {
    /// Admits a connection from `ip` unless a cap is reached.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr, limits: &Limits) -> Result<Admitted, Cap> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let from_ip = open.per_ip.get(&ip).copied().unwrap_or(0);
        if open.total >= limits.max_connections {
            return Err(Cap::Total);
        }
        if from_ip >= limits.max_connections_per_ip {
            return Err(Cap::PerIp);
        }
        open.total += 1;
        open.per_ip.insert(ip, from_ip + 1);
        Ok(Admitted {
            connections: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        open.total -= 1;
        if let Some(count) = open.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

/// The rate at which over-cap connections may be answered.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    bucket: Mutex<Bucket>,
}

#[derive(Debug, Default)]
struct Bucket {
    tokens: f64,
    /// The last refill; `None` before the first: the bucket starts full.
    refilled: Option<Instant>,
}

impl Budget {
    /// Takes one answer from a budget of `per_second` a second (and as
    /// many at once); `false` when it is spent.
    pub(crate) fn take(&self, per_second: usize) -> bool {
        if per_second == 0 {
            return false;
        }
        let rate = per_second as f64;
        let now = Instant::now();
        let mut bucket = self
            .bucket
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let refill = bucket.refilled.map_or(rate, |last| {
            now.saturating_duration_since(last).as_secs_f64() * rate
        });
        bucket.tokens = (bucket.tokens + refill).min(rate);
        bucket.refilled = Some(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn caps_count_totals_and_per_ip_and_free_on_drop() {
        let mut limits = crate::config::tests::minimal().limits;
        limits.max_connections = 3;
        limits.max_connections_per_ip = 2;
        let connections = Arc::new(Connections::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = connections.admit(a, &limits).unwrap();
        let _second = connections.admit(a, &limits).unwrap();
        assert_eq!(connections.admit(a, &limits).err(), Some(Cap::PerIp));
        let _third = connections.admit(b, &limits).unwrap();
        assert_eq!(connections.admit(b, &limits).err(), Some(Cap::Total));
        drop(first);
        assert!(connections.admit(a, &limits).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_refills_at_its_rate_and_zero_answers_none() {
        let budget = Budget::default();
        assert!(!budget.take(0));
        for _ in 0..3 {
            assert!(budget.take(3));
        }
        assert!(!budget.take(3), "spent");
        tokio::time::advance(Duration::from_millis(340)).await;
        assert!(budget.take(3), "one more after a third of a second");
        assert!(!budget.take(3));
        tokio::time::advance(Duration::from_secs(60)).await;
        let refilled = (0..10).filter(|_| budget.take(3)).count();
        assert_eq!(refilled, 3, "never more than a second's worth at once");
    }
}
