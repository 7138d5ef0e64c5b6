//! The diagnostic log of audit write failures, rate-limited: a failing
//! disk must not fill the next one (or the journal) with one error per
//! request.
//!
//! The first failure is logged at once; while writes keep failing, one
//! summary per `audit.failure_log_interval` counts the failures since the
//! previous line; the first successful write after a failure logs the
//! recovery with the number of lines lost. Summaries are emitted by the
//! failures themselves, so a log that fails with no traffic stays quiet.

use std::io;
use std::time::{Duration, Instant};

/// The rate limiter's state.
pub(super) struct Diagnostics {
    interval: Duration,
    failing: Option<Failing>,
}

/// Since the first failure of the current run of failures.
struct Failing {
    since: Instant,
    last_line: Instant,
    /// Failures since `last_line`, not yet reported.
    unreported: u64,
}

/// What to say about one event; `None` from [`Diagnostics::failure`] means
/// nothing (suppressed, counted in the next summary).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Say {
    First,
    StillFailing { failures: u64, for_secs: u64 },
    Recovered { lost_lines: u64, after_secs: u64 },
}

impl Diagnostics {
    pub(super) fn new(interval: Duration) -> Diagnostics {
        Diagnostics {
            interval,
            failing: None,
        }
    }

    /// A write failed at `now`: what to say, if anything.
    pub(super) fn failure(&mut self, now: Instant) -> Option<Say> {
        let Some(failing) = &mut self.failing else {
            self.failing = Some(Failing {
                since: now,
                last_line: now,
                unreported: 0,
            });
            return Some(Say::First);
        };
        failing.unreported += 1;
        if now.saturating_duration_since(failing.last_line) < self.interval {
            return None;
        }
        let failures = std::mem::take(&mut failing.unreported);
        failing.last_line = now;
        Some(Say::StillFailing {
            failures,
            for_secs: now.saturating_duration_since(failing.since).as_secs(),
        })
    }

    /// A write succeeded at `now` after `lost_lines` were lost.
    pub(super) fn recovery(&mut self, now: Instant, lost_lines: u64) -> Say {
        let since = self.failing.take().map_or(now, |failing| failing.since);
        Say::Recovered {
            lost_lines,
            after_secs: now.saturating_duration_since(since).as_secs(),
        }
    }

    /// Logs a failed write (rate-limited). Never the line itself.
    pub(super) fn failed(&mut self, now: Instant, error: &io::Error, destination: &str) {
        match self.failure(now) {
            Some(Say::First) => tracing::error!(
                audit.destination = destination,
                %error,
                "writing the audit log failed; its lines are lost until it recovers \
                 (counted in tradehabit_gateway_audit_write_failures_total, further \
                 failures summarised every {:?})",
                self.interval
            ),
            Some(Say::StillFailing { failures, for_secs }) => tracing::error!(
                audit.destination = destination,
                %error,
                failed_writes = failures,
                failing_for_secs = for_secs,
                "the audit log is still failing"
            ),
            _ => {}
        }
    }

    /// Logs the recovery.
    pub(super) fn recovered(&mut self, now: Instant, lost_lines: u64, destination: &str) {
        if let Say::Recovered {
            lost_lines,
            after_secs,
        } = self.recovery(now, lost_lines)
        {
            tracing::warn!(
                audit.destination = destination,
                lost_lines,
                failed_for_secs = after_secs,
                "the audit log is written again; an audit_gap record notes the lost lines"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_is_said_then_one_summary_per_interval_then_the_recovery() {
        let mut diagnostics = Diagnostics::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |secs: u64, millis: u64| {
            start + Duration::from_secs(secs) + Duration::from_millis(millis)
        };
        assert_eq!(diagnostics.failure(at(0, 0)), Some(Say::First));
        // A thousand failures within the interval: silent.
        for i in 1..=1000 {
            assert_eq!(diagnostics.failure(at(0, i * 9)), None);
        }
        assert_eq!(
            diagnostics.failure(at(10, 0)),
            Some(Say::StillFailing {
                failures: 1001,
                for_secs: 10
            })
        );
        assert_eq!(diagnostics.failure(at(15, 0)), None);
        assert_eq!(
            diagnostics.failure(at(20, 0)),
            Some(Say::StillFailing {
                failures: 2,
                for_secs: 20
            })
        );
        assert_eq!(
            diagnostics.recovery(at(21, 0), 1004),
            Say::Recovered {
                lost_lines: 1004,
                after_secs: 21
            }
        );
        // A new run of failures starts over with its own first line.
        assert_eq!(diagnostics.failure(at(22, 0)), Some(Say::First));
    }
}
