//! A request's two deadlines on one timer: `limits.request_timeout` from
//! its start, and `upstream.response_timeout` from the moment its body has
//! been read whole (for a request without a body, at once).
//!
//! One timer per request instead of one per deadline: the timer is set to
//! the earliest either deadline can still be, and when it goes off before
//! the real one (the body was still arriving), it is set again. A request
//! answered in time — nearly all of them — registers and cancels a single
//! timer (`docs/benchmarks.md`, "The floor of the stack").

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;

use crate::request_body::BodyWatch;
use crate::timers::{self, Kind};

/// One of the deadlines passed before the answer was ready.
#[derive(Debug)]
pub(super) struct TimedOut;

/// Runs `forwarded` until it is done or a deadline passes: `request` (the
/// request's own) or `response_timeout` after `watch` saw the body end.
///
/// `forwarded` is pinned by the caller (boxed, in `policy.rs`): taken by
/// value and pinned here, an `async fn` would hold it twice, as its
/// argument and as its pinned local (`docs/benchmarks.md`, "Smaller
/// futures").
pub(super) async fn within<F: Future>(
    mut forwarded: Pin<&mut F>,
    request: Instant,
    response_timeout: Duration,
    watch: &BodyWatch,
) -> Result<F::Output, TimedOut> {
    // The clock is read only when the body has not ended yet.
    let first = match watch.finished_at() {
        Some(body_end) => request.min(body_end + response_timeout),
        None => earliest(request, response_timeout, watch, crate::clock::now()),
    };
    // Reused from the thread's spare timers (`timers.rs`).
    let mut timer = timers::sleep_until(Kind::Request, first);
    loop {
        tokio::select! {
            biased;
            output = forwarded.as_mut() => return Ok(output),
            () = &mut timer => {
                let now = Instant::now();
                let next = earliest(request, response_timeout, watch, now);
                if next <= now {
                    return Err(TimedOut);
                }
                timer.reset(next);
            }
        }
    }
}

/// The earliest a deadline can pass, seen at `now`: once the body has
/// ended the response deadline is known; before, it is at least
/// `response_timeout` from now.
fn earliest(
    request: Instant,
    response_timeout: Duration,
    watch: &BodyWatch,
    now: Instant,
) -> Instant {
    let body_end = watch.finished_at().unwrap_or(now);
    request.min(body_end + response_timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESPONSE: Duration = Duration::from_secs(30);
    const REQUEST: Duration = Duration::from_secs(60);

    fn never() -> std::future::Pending<()> {
        std::future::pending()
    }

    /// How long `forwarded` ran before a deadline passed (paused time).
    async fn timed_out_after(forwarded: impl Future, watch: &BodyWatch) -> Duration {
        let start = Instant::now();
        let result = within(std::pin::pin!(forwarded), start + REQUEST, RESPONSE, watch).await;
        assert!(result.is_err());
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_body_the_response_deadline_counts_from_the_start() {
        let watch = BodyWatch::new(0);
        watch.finish_now();
        assert_eq!(timed_out_after(never(), &watch).await, RESPONSE);
    }

    #[tokio::test(start_paused = true)]
    async fn the_response_deadline_counts_from_the_end_of_a_slow_body() {
        // The body ends at 40 s: the response deadline is 70 s, after the
        // request's own at 60 s, which wins. Ending at 20 s: 50 s.
        for (body_end, expected) in [(40, 60), (20, 50), (31, 60), (29, 59)] {
            let watch = BodyWatch::new(0);
            let body = async {
                tokio::time::sleep(Duration::from_secs(body_end)).await;
                watch.finish_now();
                never().await;
            };
            assert_eq!(
                timed_out_after(body, &watch).await,
                Duration::from_secs(expected),
                "body ended at {body_end} s"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_ends_meets_the_request_deadline() {
        let watch = BodyWatch::new(0);
        assert_eq!(timed_out_after(never(), &watch).await, REQUEST);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_in_time_is_returned() {
        let watch = BodyWatch::new(0);
        let start = Instant::now();
        let answer = async {
            tokio::time::sleep(Duration::from_secs(45)).await;
            7
        };
        let result = within(std::pin::pin!(answer), start + REQUEST, RESPONSE, &watch).await;
        assert_eq!(result.ok(), Some(7));
    }
}
