//! The analysis engine: CSV bytes in, typed results out. No I/O.
//!
//! * [`parse`] — the order export → an order table (analysis.md §2).
//! * [`trades`] — fills → trades, P&L, stop detection and risk points (§3–§6.4).
//! * [`pipeline`] — the threshold-dependent mistake tags (§6).
//! * [`stats`] — every statistics block (§7), streaks and goals (§8).
//! * [`text`] — the diagnostics (§9), in our own words.
//! * [`num`], [`exact`] — Python/numpy-exact arithmetic (§1).

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
