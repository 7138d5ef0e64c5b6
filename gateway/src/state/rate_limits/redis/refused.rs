//! "Refused until t", per serving thread: once Redis refused a stage (a
//! client or principal, an owner, its quotas) for `wait`, the same stage
//! is refused here until then without a round trip. The answer is the one
//! Redis would give: a GCRA refusal spends nothing, so nothing else moves
//! the stage's keys either while it lasts, and `until` is counted from
//! before the call was sent, so it ends no later than Redis' own wait
//! (`docs/security-controls.md`, F-33). The Retry-After is counted down
//! from `until`; the other quotas of the stage are reported as Redis last
//! answered. At most [`MAX_REFUSED`] stages are held per thread.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::checks::rate_limit::RateLimited;

use super::Quota;

/// Refused stages one serving thread remembers at most. A full table first
/// drops what has expired, then forgets the rest: refusing from memory is
/// an economy, never a requirement.
pub(crate) const MAX_REFUSED: usize = 10_000;

/// The refused stages of one serving thread.
#[derive(Default)]
pub(crate) struct Refused {
    until: HashMap<String, (Instant, RateLimited)>,
}

/// The table's key of a stage: its tag, owner and quotas (a reload that
/// changes the quotas asks Redis again).
pub(super) fn key(tag: &str, quotas: &[Quota<'_>]) -> String {
    let mut key = String::with_capacity(tag.len() + 64);
    key.push_str(tag);
    for quota in quotas {
        let _ = write!(
            key,
            "|{}|{}/{}",
            quota.owner,
            quota.spec.count,
            quota.spec.window.seconds()
        );
    }
    key
}

impl Refused {
    /// The refusal of `key` if Redis' last answer still holds at `now`,
    /// with its waits counted down.
    pub(super) fn answer(&mut self, key: &str, now: Instant) -> Option<RateLimited> {
        let (until, limited) = self.until.get(key)?;
        let Some(left) = until.checked_duration_since(now).filter(|d| !d.is_zero()) else {
            self.until.remove(key);
            return None;
        };
        let mut limited = limited.clone();
        let seconds = seconds_up(left);
        limited.retry_after_seconds = seconds;
        limited.usage.reset_seconds = seconds;
        Some(limited)
    }

    /// Remembers that Redis refused `key` until `until`.
    pub(super) fn remember(&mut self, key: String, until: Instant, limited: &RateLimited) {
        if self.until.len() >= MAX_REFUSED && !self.until.contains_key(&key) {
            let now = Instant::now();
            self.until.retain(|_, (until, _)| *until > now);
            if self.until.len() >= MAX_REFUSED {
                self.until.clear();
            }
        }
        self.until.insert(key, (until, limited.clone()));
    }

    /// Stages held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.until.len()
    }
}

/// Whole seconds, rounded up, at least 1 (as Retry-After).
fn seconds_up(left: Duration) -> u64 {
    u64::try_from(left.as_micros().div_ceil(1_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::rate_limit::{usage_of, KeyKind};

    fn limited() -> RateLimited {
        let spec = "1/minute".parse().unwrap();
        let mut usage = usage_of("ip-minute", spec, 0);
        usage.reset_seconds = 60;
        RateLimited {
            usage,
            others: Vec::new(),
            retry_after_seconds: 60,
            overflow: false,
        }
    }

    #[test]
    fn a_refusal_holds_until_its_end_and_counts_down() {
        let quotas = [Quota {
            owner: "r:health:/api/health",
            kind: KeyKind::Ip,
            spec: "1/minute".parse().unwrap(),
        }];
        let key = key("ip:192.0.2.1", &quotas);
        let mut refused = Refused::default();
        let now = Instant::now();
        refused.remember(key.clone(), now + Duration::from_secs(60), &limited());
        let later = refused
            .answer(&key, now + Duration::from_millis(30_500))
            .unwrap();
        assert_eq!(later.retry_after_seconds, 30);
        assert_eq!(later.usage.reset_seconds, 30);
        assert!(refused.answer("ip:192.0.2.2", now).is_none());
        assert!(refused
            .answer(&key, now + Duration::from_secs(60))
            .is_none());
        assert_eq!(refused.len(), 0, "an expired refusal is dropped");
    }

    #[test]
    fn the_table_is_bounded() {
        let mut refused = Refused::default();
        let until = Instant::now() + Duration::from_secs(60);
        for i in 0..=MAX_REFUSED {
            refused.remember(format!("ip:{i}"), until, &limited());
        }
        assert!(refused.len() <= MAX_REFUSED, "{}", refused.len());
        assert!(refused
            .answer(&format!("ip:{MAX_REFUSED}"), Instant::now())
            .is_some());
    }
}
