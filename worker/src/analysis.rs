//! The analysis engine: CSV bytes in, typed results out. No I/O.
//!
//! * [`parse`] — the order export → an order table.
//! * [`trades`] — fills → trades, P&L, stop detection and risk points.
//! * [`pipeline`] — the threshold-dependent mistake tags.
//! * [`stats`] — every statistics block, streaks for the goals.
//! * [`text`] — the diagnostics, in our own words.
//! * [`num`], [`exact`] — Python/numpy-exact arithmetic.
//!
//! Where the engine keeps or fixes a behaviour of the legacy backend, the
//! comment names its id in `docs/quirks.md` (E-… for the engine, H-… for
//! the HTTP API).

pub mod exact;
pub mod num;
pub mod parse;
pub mod pipeline;
pub mod stats;
pub mod text;
pub mod trades;

pub use parse::{parse_orders, OrderTable, ParseError};
pub use pipeline::{tag_trades, Thresholds};
pub use trades::{build_trades, Dataset, Trade};

/// Parses and reconstructs an upload: CSV bytes → trades with their
/// threshold-independent facts (stop detection, risk points). Tags are then
/// applied with [`tag_trades`].
pub fn load(bytes: &[u8]) -> Result<Dataset, ParseError> {
    let table = parse_orders(bytes)?;
    build_trades(&table)
}
