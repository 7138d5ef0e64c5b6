//! TradeHabit worker: the existing backend's JSON API, served on a private
//! Unix socket, with each principal's data kept apart in memory.
//!
//! A request's path through this crate:
//!
//! 1. [`api`] — the legacy HTTP contract as pure functions: route, validate
//!    parameters and bodies, run the engine over one principal's session,
//!    render the JSON reply. No sockets, no clocks.
//! 2. [`analysis`] — the engine: CSV bytes → orders → trades → mistake tags →
//!    statistics and diagnostics. Pure and I/O-free.

pub mod analysis;
pub mod api;
