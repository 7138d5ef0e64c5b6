//! `[admin]`: the plain-HTTP admin listener (`/metrics`, `/healthz`,
//! `/readyz`) and how often it probes the upstream.
//!
//! # Defaults
//!
//! | key | default |
//! |---|---|
//! | `admin.listen` | [`DEFAULT_ADMIN_LISTEN`] (loopback only) |
//! | `admin.ready_probe_interval` | [`DEFAULT_READY_PROBE_INTERVAL`] |
//! | `admin.ready_probe_timeout` | [`DEFAULT_READY_PROBE_TIMEOUT`] |

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{duration, socket_addr, Problems};

/// Where the admin listener binds unless told otherwise: loopback, never
/// the public port.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";
/// How often the upstream's readiness is probed in the background.
pub const DEFAULT_READY_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// How long one readiness probe may take before it counts as a failure.
pub const DEFAULT_READY_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// `[admin]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub(crate) listen: Option<String>,
    pub(crate) ready_probe_interval: Option<String>,
    pub(crate) ready_probe_timeout: Option<String>,
}

/// `[admin]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Admin {
    /// The admin listener's address (plain HTTP).
    pub(crate) listen: SocketAddr,
    /// Pause between two background readiness probes.
    pub(crate) ready_probe_interval: Duration,
    /// Deadline of one readiness probe.
    pub(crate) ready_probe_timeout: Duration,
}

pub(super) fn validate_admin(raw: RawAdmin, problems: &mut Problems) -> Option<Admin> {
    let listen = socket_addr(
        raw.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN),
        "admin.listen",
        problems,
    );
    let ready_probe_interval = duration(
        raw.ready_probe_interval,
        "admin.ready_probe_interval",
        DEFAULT_READY_PROBE_INTERVAL,
        problems,
    );
    let ready_probe_timeout = duration(
        raw.ready_probe_timeout,
        "admin.ready_probe_timeout",
        DEFAULT_READY_PROBE_TIMEOUT,
        problems,
    );
    if ready_probe_interval.is_zero() {
        problems.push("admin.ready_probe_interval", "must be > 0");
    }
    if ready_probe_timeout.is_zero() {
        problems.push("admin.ready_probe_timeout", "must be > 0");
    }
    Some(Admin {
        listen: listen?,
        ready_probe_interval,
        ready_probe_timeout,
    })
}
