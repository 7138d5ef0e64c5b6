//! TradeHabit worker: the existing backend's JSON API, served on a private
//! Unix socket, with each principal's data kept apart in memory.
//!
//! A request's path through this crate:
//!
//! 0. [`cli`] — the command line (also run by the local-stack launcher).
//! 1. [`config`] — start-up: flags and environment → a validated `Config`.
//! 2. [`socket`] — the Unix socket, created with owner/group-only
//!    permissions in a directory nobody else can write to. No TCP.
//! 3. [`serve`] — accept loop, one HTTP/1.1 connection task each, header
//!    timeout, connection cap, graceful drain on shutdown.
//!    [`trust`] — with allowed peer uids/gids or a shared key configured,
//!    only the gateway's connections and signed requests are answered.
//! 4. [`dispatch`] — one request: our own routes (readiness, metrics,
//!    `DELETE /api/session`) or the legacy API; one log line each.
//! 5. [`identity`] — the principal the gateway forwards (or the shared
//!    anonymous space) and the request id; principals are logged only as
//!    keyed-hash tags.
//! 6. [`upload`] — body → bytes or the multipart `file` part, streamed with
//!    size caps; shape errors become specific 400s.
//! 7. [`session`] — each principal's session in memory: idle expiry, count
//!    and byte caps with least-recently-used eviction, explicit delete.
//! 8. [`admission`] — per-principal turn taking, a bounded number of engine
//!    calls at once and a bounded queue (503 + `Retry-After` beyond it).
//! 9. [`engine`] — one [`api`] call on a blocking thread; panics contained,
//!    the session restored.
//! 10. [`api`] — the legacy HTTP contract as pure functions: route, validate
//!     parameters and bodies, run the engine over one principal's session,
//!     render the JSON reply. No sockets, no clocks.
//! 11. [`analysis`] — the engine: CSV bytes → orders → trades → mistake tags →
//!     statistics and diagnostics. Pure and I/O-free.
//!
//! Cross-cutting: [`refusal`] (the HTTP layer's own errors → envelope
//! responses), [`linger`] (a graceful close after an answer given before
//! the request body was read) and [`metrics`] (the registry served on
//! `/internal/metrics`).

pub mod admission;
pub mod analysis;
pub mod api;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod engine;
pub mod identity;
pub mod linger;
pub mod metrics;
pub mod refusal;
pub mod serve;
pub mod session;
pub mod socket;
pub mod trust;
pub mod upload;
