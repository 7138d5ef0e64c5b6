//! TradeHabit gateway: the TLS front door. It is the only process that
//! touches the network; it checks every request against the operator's
//! policy file and forwards what passes to the upstream (our worker, or the
//! existing Flask backend) over a Unix socket or TCP.
//!
//! A request's path through this crate, in order:
//!
//! 1. [`config`] — the policy file → a validated `Config` (loaded at start
//!    and on `SIGHUP`; every problem reported at once).
//! 2. `lifecycle` — [`Gateway::start`] binds the listeners and starts the
//!    supervised upstream (`supervise`); the [`Handle`] reloads and shuts
//!    down gracefully.
//! 3. `accept` — one task per connection under the connection caps; the TLS
//!    handshake (`tls`) under its deadline; HTTP/2 or HTTP/1.1 by ALPN, with
//!    header-read and idle deadlines. The plain-HTTP listener (`plain_http`)
//!    only redirects navigations and refuses API calls.
//! 4. `policy` — the ordered checks: identify (client IP, request id) →
//!    shape (head limits, framing, host) → path normalisation → route (404 /
//!    405) → CORS (preflights answered) → per-IP rate limit → authenticate
//!    (401) → scopes (403) → per-principal rate limit (429) → query (400) →
//!    body (413 / 415 / upload 400) → forward. The checks themselves are the
//!    pure modules of [`checks`], one per check, each with its config section.
//! 5. `proxy` — the pooled upstream client: header rewriting, timeouts,
//!    streaming both ways, upstream failures as 502/503/504.
//! 6. `reject` — the one place a refusal becomes a JSON envelope response;
//!    `respond` adds the security headers to every answer.
//!
//! Alongside: `audit` writes one JSON line per request and per connection
//! event; `metrics` holds the Prometheus registry; `admin` serves
//! `/metrics`, `/healthz` and `/readyz` on its own listener; [`healthcheck`]
//! is the client side of `/readyz` for container health checks.
//!
//! [`explain`] is the dry run for operators: what the policy decides for
//! a request, check by check, through the live admission code, and the
//! policy tests built on it.
//!
//! [`dev`] is the one-command local stack (self-signed certificate, worker
//! as a supervised child).

mod accept;
mod admin;
pub mod audit;
mod body;
mod cert_dates;
pub mod check_config;
pub mod checks;
mod clock;
pub mod config;
mod conn;
pub mod dev;
mod exchange;
pub mod explain;
pub mod healthcheck;
mod host;
mod identity;
pub mod keys;
mod lifecycle;
pub mod logging;
mod metrics;
mod path;
mod per_ip;
mod plain_http;
mod policy;
mod proxy;
mod record;
mod reject;
mod request_body;
mod respond;
pub mod selftest;
mod shard;
mod state;
pub mod static_files;
mod supervise;
mod tarpit;
mod task_waker;
mod timers;
mod tls;

pub use config::{Config, ConfigError};
pub use lifecycle::{run, shutdown_signal, Gateway, Handle, ReloadError, StartError};
pub use tls::{check_certificate, CertError};

/// Entry points for the fuzz targets (`fuzz/`) and the in-suite fuzz smoke
/// test; not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    /// Path normalisation (`path::check`): `Err` says why a request
    /// path is refused.
    pub fn check_path(path: &str) -> Result<(), &'static str> {
        crate::path::check(path)
    }

    /// What the HTTP/1.1 framing reader (`accept/framing.rs`) finds in
    /// `stream`, fed in pieces cut at the offsets `cuts`.
    pub use crate::accept::Followed;

    /// The HTTP/1.1 framing reader over `stream`, fed in pieces cut at the
    /// offsets `cuts`: how many request heads it read, the first request
    /// (numbered from 1) whose head it refuses, with the refusal's detail,
    /// the refused chunked body's detail, the heads read when it stopped
    /// following the connection, and every byte hyper is shown.
    pub fn follow_framing(stream: &[u8], cuts: &[usize]) -> Followed {
        crate::accept::follow_framing(stream, cuts)
    }
}
