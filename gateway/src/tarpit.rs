//! Slower refusals for a client that keeps asking after being refused
//! (`docs/security-controls.md`, F-35).
//!
//! A refusal is cheap, but a client that sends as fast as it can turns
//! cheap refusals into the gateway's whole CPU: every 401, 403 or 429 it
//! gets, it answers with the next request at once. So each client IP may
//! get `limits.refusal_delay_after` such refusals a second at full speed;
//! beyond that, each further one is held for `limits.refusal_delay` before
//! it is sent. The held request keeps its place in
//! `limits.max_requests_per_ip`, so one address's refusals are bounded to
//! about `max_requests_per_ip / refusal_delay` a second, while a client
//! that gets an occasional refusal never notices. Allowed requests never
//! touch this module.
//!
//! Memory is bounded: one small entry per address refused in the current
//! second, swept when the table reaches [`MAX_TRACKED`]; an address that
//! finds the table full is not delayed (refusals still happen).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// At most this many addresses are tracked at once.
pub(crate) const MAX_TRACKED: usize = 65_536;

/// The length of one counting window.
const WINDOW: Duration = Duration::from_secs(1);

/// Refusals per client IP in the current second.
#[derive(Debug, Default)]
pub(crate) struct Tarpit {
    windows: Mutex<HashMap<IpAddr, Window>>,
}

/// One address's refusals since `opened`.
#[derive(Debug, Clone, Copy)]
struct Window {
    opened: Instant,
    refusals: u32,
}

impl Tarpit {
    /// Counts one refusal for `ip` at `now`; true when it is beyond the
    /// `allowed` refusals of the current window, so it should be held.
    pub(crate) fn refused(&self, ip: IpAddr, allowed: u32, now: Instant) -> bool {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if windows.len() >= MAX_TRACKED && !windows.contains_key(&ip) {
            windows.retain(|_, window| now.duration_since(window.opened) < WINDOW);
            if windows.len() >= MAX_TRACKED {
                return false;
            }
        }
        let window = windows.entry(ip).or_insert(Window {
            opened: now,
            refusals: 0,
        });
        if now.duration_since(window.opened) >= WINDOW {
            *window = Window {
                opened: now,
                refusals: 0,
            };
        }
        window.refusals = window.refusals.saturating_add(1);
        window.refusals > allowed
    }

    /// How many addresses are tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn refusals_beyond_the_allowance_of_a_second_are_held() {
        let tarpit = Tarpit::default();
        let start = Instant::now();
        let held: Vec<bool> = (0..5).map(|_| tarpit.refused(ip(1), 3, start)).collect();
        assert_eq!(held, [false, false, false, true, true]);
        // Another address has its own allowance.
        assert!(!tarpit.refused(ip(2), 3, start));
        // A new second starts a new window.
        let later = start + WINDOW;
        assert!(!tarpit.refused(ip(1), 3, later));
    }

    #[test]
    fn the_table_is_bounded_and_swept() {
        let tarpit = Tarpit::default();
        let start = Instant::now();
        for n in 0..MAX_TRACKED {
            let address = IpAddr::V6(std::net::Ipv6Addr::from(n as u128));
            tarpit.refused(address, 0, start);
        }
        assert_eq!(tarpit.tracked(), MAX_TRACKED);
        // Full, within the window: a new address is not tracked (not held).
        assert!(!tarpit.refused(ip(9), 0, start));
        assert_eq!(tarpit.tracked(), MAX_TRACKED);
        // A second later the old windows are swept on the next new address.
        assert!(tarpit.refused(ip(9), 0, start + WINDOW));
        assert_eq!(tarpit.tracked(), 1);
    }
}
