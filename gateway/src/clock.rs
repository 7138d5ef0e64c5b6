//! One read of each clock per poll of a serving task.
//!
//! A request notes the time at a dozen points: its arrival (both clocks),
//! the checks' wall-clock time, the hand-over to the upstream, the answer,
//! the end of each body, the upstream connection's idle time, hyper's
//! header-read deadline. Most of them fall within one poll of the task that
//! serves it, microseconds apart, and each read of the clock costs about as
//! much as a small allocation (`docs/benchmarks.md`, "One clock read per
//! poll"). Inside a [`Turns`] future, [`now`] reads the monotonic clock and
//! [`now_utc`] the wall clock at most once per poll, and every later call
//! in the same poll gets the same value. Outside one they read the clock
//! each time.
//!
//! What this costs in accuracy: durations that start and end in the same
//! poll come out as zero, and every time noted in a poll is its first
//! reading, late by at most the poll's length. A poll ends as soon as its
//! task waits for anything (a socket, the upstream, a timer), so the error
//! is the gateway's own computing time within one turn, never a wait.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

/// The readings of the current poll; `None` outside one.
#[derive(Clone, Copy, Default)]
struct Readings {
    /// Which poll of the thread this is (see [`poll_number`]).
    number: u64,
    /// Whether the future asked to be polled again after this poll.
    again: bool,
    monotonic: Option<Instant>,
    wall: Option<OffsetDateTime>,
}

thread_local! {
    static POLL: Cell<Option<Readings>> = const { Cell::new(None) };
    /// The number of the thread's last poll inside a [`Turns`].
    static POLLS: Cell<u64> = const { Cell::new(0) };
}

/// A number that tells the current poll of a [`Turns`] future from every
/// other poll on this thread; `None` outside one.
pub(crate) fn poll_number() -> Option<u64> {
    POLL.with(|poll| poll.get().map(|readings| readings.number))
}

/// Asks for another poll of the enclosing [`Turns`] future once this one
/// ends (its task is woken: queued behind the thread's other ready tasks).
/// The current poll's number, `None` (and nothing asked) outside one.
pub(crate) fn poll_again() -> Option<u64> {
    POLL.with(|poll| {
        let mut readings = poll.get()?;
        readings.again = true;
        poll.set(Some(readings));
        Some(readings.number)
    })
}

/// The monotonic time: read once per poll inside [`Turns`].
///
/// A `tokio` instant, so that tests with a paused clock see paused time.
pub(crate) fn now() -> Instant {
    once_per_poll(|readings| &mut readings.monotonic, Instant::now)
}

/// [`now`] as a standard-library instant.
pub(crate) fn now_std() -> std::time::Instant {
    now().into_std()
}

/// The time since `earlier` (zero if it is later), by [`now`].
pub(crate) fn elapsed(earlier: impl Into<Instant>) -> Duration {
    now().saturating_duration_since(earlier.into())
}

/// The wall-clock time (UTC): read once per poll inside [`Turns`].
pub(crate) fn now_utc() -> OffsetDateTime {
    once_per_poll(|readings| &mut readings.wall, OffsetDateTime::now_utc)
}

/// The poll's reading in `field`, made with `read` on first use; `read`
/// each time outside a poll.
fn once_per_poll<T: Copy>(field: fn(&mut Readings) -> &mut Option<T>, read: fn() -> T) -> T {
    POLL.with(|poll| {
        let Some(mut readings) = poll.get() else {
            return read();
        };
        if let Some(at) = *field(&mut readings) {
            return at;
        }
        let at = read();
        *field(&mut readings) = Some(at);
        poll.set(Some(readings));
        at
    })
}

/// `future`, each of whose polls shares one reading of each clock.
pub(crate) fn turns<F: Future>(future: F) -> Turns<F> {
    Turns { future }
}

pin_project_lite::pin_project! {
    /// See [`turns`].
    pub(crate) struct Turns<F> {
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Turns<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _scope = PollScope::begin();
        let polled = self.project().future.poll(cx);
        if POLL.with(|poll| poll.get().is_some_and(|readings| readings.again)) {
            cx.waker().wake_by_ref();
        }
        polled
    }
}

/// The readings of one poll, from its start to its end; the enclosing
/// poll's (if any) are put back at the end, so nested [`Turns`] share
/// nothing across their boundaries.
struct PollScope {
    outer: Option<Readings>,
}

impl PollScope {
    fn begin() -> PollScope {
        let number = POLLS.with(|polls| {
            let number = polls.get().wrapping_add(1);
            polls.set(number);
            number
        });
        let readings = Readings {
            number,
            ..Readings::default()
        };
        PollScope {
            outer: POLL.with(|poll| poll.replace(Some(readings))),
        }
    }
}

impl Drop for PollScope {
    fn drop(&mut self) {
        POLL.with(|poll| poll.set(self.outer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Notes [`now`] and [`now_utc`] twice within each of its polls, with
    /// `gap` between the two readings, for `polls` polls.
    struct Noting {
        polls: usize,
        gap: Duration,
        seen: Vec<(Instant, Instant, OffsetDateTime, OffsetDateTime)>,
    }

    impl Future for Noting {
        type Output = Vec<(Instant, Instant, OffsetDateTime, OffsetDateTime)>;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let (first, first_wall) = (now(), now_utc());
            std::thread::sleep(self.gap);
            let (second, second_wall) = (now(), now_utc());
            self.seen.push((first, second, first_wall, second_wall));
            if self.seen.len() == self.polls {
                return Poll::Ready(std::mem::take(&mut self.seen));
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn noting(polls: usize) -> Noting {
        Noting {
            polls,
            gap: Duration::from_millis(2),
            seen: Vec::new(),
        }
    }

    #[tokio::test]
    async fn one_reading_per_poll_and_a_new_one_each_poll() {
        let seen = turns(noting(3)).await;
        for (first, second, first_wall, second_wall) in &seen {
            assert_eq!(first, second);
            assert_eq!(first_wall, second_wall);
        }
        // Each poll slept 2 ms after its reading: the next one reads anew.
        for pair in seen.windows(2) {
            assert!(pair[1].0 >= pair[0].0 + Duration::from_millis(2));
            assert!(pair[1].2 > pair[0].2);
        }
    }

    #[tokio::test]
    async fn outside_a_turn_every_call_reads_the_clock() {
        let seen = noting(1).await;
        let (first, second, first_wall, second_wall) = seen[0];
        assert!(second >= first + Duration::from_millis(2));
        assert!(second_wall > first_wall);
    }

    #[tokio::test]
    async fn a_nested_turn_leaves_the_outer_readings_as_they_were() {
        let (before, inner, after) = turns(async {
            let before = now();
            std::thread::sleep(Duration::from_millis(2));
            let inner = turns(async { now() }).await;
            (before, inner, now())
        })
        .await;
        assert_eq!(before, after);
        assert!(inner >= before + Duration::from_millis(2));
    }
}
