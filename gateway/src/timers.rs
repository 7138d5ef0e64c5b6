//! Timers kept by each serving thread and reused from one request to the
//! next, instead of a new timer registered and cancelled per request
//! (`docs/benchmarks.md`, "Per-request work, shared cache lines and
//! timers").
//!
//! Every request on a serving thread needs two timers: hyper's
//! header-read timer while its HTTP/1.1 head arrives, and the request's
//! deadline (`policy/deadline.rs`). Both almost never go off. A new tokio
//! timer costs an allocation, a registration in the runtime's timer wheel
//! on its first poll and a removal under the driver's lock when it is
//! dropped. A timer given back here instead stays in the wheel, and the
//! next request of the same kind moves it to its own, later deadline,
//! which tokio does with one atomic store (the wheel moves it when the
//! old deadline comes, at most once per timeout). A reused timer goes off
//! exactly as a new one would: at its new deadline, waking the task that
//! last polled it.
//!
//! Only serving threads keep timers ([`enter`] and [`leave`], around the
//! life of the thread's runtime); anywhere else, and beyond
//! [`MAX_SPARE`] per kind, a timer is simply dropped. A timer kept in the
//! pool until its old deadline wakes the task that polled it last, once,
//! for nothing: that task polls and finds nothing to do.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// What a timer is for: timers are reused within a kind, whose deadlines
/// follow each other, so that a reuse is nearly always a move to a later
/// deadline (the cheap case).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// hyper's HTTP/1.1 header-read timer (`limits.header_read_timeout`).
    HeadRead = 0,
    /// A request's deadline (`policy/deadline.rs`).
    Request = 1,
}

const KINDS: usize = 2;

/// The most timers of one kind a serving thread keeps.
pub(crate) const MAX_SPARE: usize = 1024;

type Spare = [Vec<Pin<Box<Sleep>>>; KINDS];

thread_local! {
    /// The calling serving thread's spare timers; `None` elsewhere.
    static SPARE: RefCell<Option<Spare>> = const { RefCell::new(None) };
}

/// Starts keeping timers on the calling thread (a serving thread, inside
/// whose runtime every timer it is given back was made).
pub(crate) fn enter() {
    SPARE.with(|spare| *spare.borrow_mut() = Some(Default::default()));
}

/// Stops keeping timers on the calling thread and drops the spare ones;
/// called before the thread's runtime is dropped.
pub(crate) fn leave() {
    let spare = SPARE.with(|spare| spare.borrow_mut().take());
    drop(spare);
}

/// The address of the calling thread's pool: a timer goes back only to
/// the pool of the thread it was taken on.
fn home() -> usize {
    SPARE
        .try_with(|spare| std::ptr::from_ref(spare) as usize)
        .unwrap_or(0)
}

/// A timer that goes off at `deadline`: a spare one of `kind` moved there,
/// or a new one.
pub(crate) fn sleep_until(kind: Kind, deadline: Instant) -> Reused {
    let spare = SPARE
        .try_with(|spare| spare.try_borrow_mut().ok()?.as_mut()?[kind as usize].pop())
        .ok()
        .flatten();
    let sleep = match spare {
        Some(mut sleep) => {
            sleep.as_mut().reset(deadline);
            sleep
        }
        None => Box::pin(tokio::time::sleep_until(deadline)),
    };
    Reused {
        sleep: Some(sleep),
        kind,
        home: home(),
    }
}

/// A timer from [`sleep_until`]; given back to its thread's spare timers
/// when dropped.
#[derive(Debug)]
pub(crate) struct Reused {
    /// Always `Some` until dropped.
    sleep: Option<Pin<Box<Sleep>>>,
    kind: Kind,
    home: usize,
}

impl Reused {
    /// Moves the timer to `deadline`.
    pub(crate) fn reset(&mut self, deadline: Instant) {
        if let Some(sleep) = self.sleep.as_mut() {
            sleep.as_mut().reset(deadline);
        }
    }

    /// The deadline the timer goes off at.
    #[cfg(test)]
    pub(crate) fn deadline(&self) -> Instant {
        self.sleep.as_ref().expect("set until dropped").deadline()
    }
}

impl Future for Reused {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.sleep.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl Drop for Reused {
    fn drop(&mut self) {
        let mut sleep = self.sleep.take();
        let _ = SPARE.try_with(|spare| {
            if std::ptr::from_ref(spare) as usize != self.home {
                return;
            }
            let Ok(mut spare) = spare.try_borrow_mut() else {
                return;
            };
            if let Some(kept) = spare.as_mut().map(|all| &mut all[self.kind as usize]) {
                if kept.len() < MAX_SPARE {
                    kept.extend(sleep.take());
                }
            }
        });
        // Not kept: dropped here, outside the pool's borrow.
        drop(sleep);
    }
}

/// hyper's timer for HTTP/1.1 connections: its header-read timers are
/// [`Reused`] ones of kind [`Kind::HeadRead`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HyperTimer;

/// A [`Reused`] timer as hyper's `Sleep`.
struct HyperSleep(Reused);

impl Future for HyperSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl hyper::rt::Sleep for HyperSleep {}

impl hyper::rt::Timer for HyperTimer {
    fn sleep(&self, duration: std::time::Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(crate::clock::now_std() + duration)
    }

    /// hyper reads this for the header-read deadline of every HTTP/1.1
    /// request: the poll's reading (`clock.rs`).
    fn now(&self) -> std::time::Instant {
        crate::clock::now_std()
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(sleep_until(Kind::HeadRead, deadline.into())))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: std::time::Instant) {
        match sleep.as_mut().downcast_mut_pin::<HyperSleep>() {
            Some(mut ours) => ours.0.reset(new_deadline.into()),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spare(kind: Kind) -> usize {
        SPARE.with(|spare| {
            spare
                .borrow()
                .as_ref()
                .map_or(0, |all| all[kind as usize].len())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_given_back_goes_off_at_its_new_deadline() {
        enter();
        let start = Instant::now();
        // The first one goes back to the pool with its deadline pending.
        drop(sleep_until(Kind::Request, start + Duration::from_secs(30)));
        assert_eq!(spare(Kind::Request), 1);
        assert_eq!(spare(Kind::HeadRead), 0);
        let reused = sleep_until(Kind::Request, start + Duration::from_secs(45));
        assert_eq!(spare(Kind::Request), 0, "taken from the pool");
        assert_eq!(reused.deadline(), start + Duration::from_secs(45));
        reused.await;
        assert_eq!(start.elapsed(), Duration::from_secs(45));
        // An earlier deadline than the one it had works as well.
        let again = sleep_until(Kind::Request, Instant::now() + Duration::from_secs(5));
        let at = Instant::now();
        again.await;
        assert_eq!(at.elapsed(), Duration::from_secs(5));
        leave();
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_moved_later_does_not_go_off_at_its_old_deadline() {
        enter();
        let start = Instant::now();
        let mut timer = sleep_until(Kind::Request, start + Duration::from_secs(10));
        // Registered with the wheel at 10 s, then moved to 20 s.
        assert!(futures_util::FutureExt::now_or_never(&mut timer).is_none());
        timer.reset(start + Duration::from_secs(20));
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert!(
            futures_util::FutureExt::now_or_never(&mut timer).is_none(),
            "not at 10 s"
        );
        timer.await;
        assert_eq!(start.elapsed(), Duration::from_secs(20));
        leave();
    }

    #[tokio::test]
    async fn outside_a_serving_thread_nothing_is_kept() {
        drop(sleep_until(Kind::HeadRead, Instant::now()));
        assert_eq!(spare(Kind::HeadRead), 0);
    }

    #[tokio::test]
    async fn a_thread_keeps_at_most_its_bound() {
        enter();
        let timers: Vec<_> = (0..MAX_SPARE + 5)
            .map(|_| sleep_until(Kind::HeadRead, Instant::now() + Duration::from_secs(60)))
            .collect();
        drop(timers);
        assert_eq!(spare(Kind::HeadRead), MAX_SPARE);
        leave();
        assert_eq!(spare(Kind::HeadRead), 0);
    }
}
