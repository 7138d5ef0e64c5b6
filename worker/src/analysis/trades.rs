//! Fills → trades (position tracking, entries, exits, P&L), and the two
//! order-table facts each
//! trade needs that do not depend on thresholds: stop-loss protection
//! and risk points. Both use per-symbol, per-side indexes of
//! stop orders sorted by time and binary search, so the whole build is
//! O(n log n) in the number of orders.

use super::num::{np_round, py_round};
use super::parse::{OrderId, OrderTable, ParseError, Side};

/// Tag bits, in pipeline order.
pub const TAG_NO_STOP: u8 = 1;
/// `outsized loss`.
pub const TAG_OUTSIZED: u8 = 2;
/// `revenge trade`.
pub const TAG_REVENGE: u8 = 4;
/// `excessive risk`.
pub const TAG_EXCESSIVE: u8 = 8;
/// Tag names, in pipeline order, with their bits.
pub const TAGS: [(u8, &str); 4] = [
    (TAG_NO_STOP, "no stop-loss order"),
    (TAG_OUTSIZED, "outsized loss"),
    (TAG_REVENGE, "revenge trade"),
    (TAG_EXCESSIVE, "excessive risk"),
];

/// One reconstructed trade.
#[derive(Debug, Clone)]
pub struct Trade {
    /// Random UUIDv4, fixed for the life of the upload.
    pub id: uuid::Uuid,
    /// Interned contract.
    pub symbol: u32,
    /// The position's side.
    pub side: Side,
    /// Entry fill time (seconds).
    pub entry_time: i64,
    /// Entry price.
    pub entry_price: f64,
    /// `min(q, |net|)`.
    pub entry_qty: i64,
    /// Exit fill time.
    pub exit_time: i64,
    /// Exit price.
    pub exit_price: f64,
    /// The whole exit fill quantity (E-8).
    pub exit_qty: i64,
    /// The exit row's order id.
    pub exit_order_id: OrderId,
    /// P&L in points × contracts, 2 dp.
    pub pnl: f64,
    /// |points| per contract, 2 dp (also for winners, E-10).
    pub points_lost: f64,
    /// Stop detection's verdict: no protective stop found.
    pub no_stop: bool,
    /// Distance from entry to the defining stop (null when `no_stop`).
    pub risk_points: Option<f64>,
    /// Tag bits ([`TAGS`]).
    pub tags: u8,
}

impl Trade {
    /// A win has `pnl > 0`.
    pub fn is_win(&self) -> bool {
        self.pnl > 0.0
    }
    /// A loss has `pnl < 0`.
    pub fn is_loss(&self) -> bool {
        self.pnl < 0.0
    }
    /// Holding time in seconds.
    pub fn hold(&self) -> f64 {
        (self.exit_time - self.entry_time) as f64
    }
    /// Tag names in pipeline order.
    pub fn tag_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        TAGS.iter()
            .filter(move |(b, _)| self.tags & b != 0)
            .map(|(_, n)| *n)
    }
}

/// One upload, analysed up to the threshold-dependent tags.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// Data rows (csvRows).
    pub rows: usize,
    /// Fills used.
    pub fills: usize,
    /// Interned contracts.
    pub symbols: Vec<String>,
    /// Interned side texts other than `Buy`/`Sell`.
    pub side_texts: Vec<String>,
    /// Trades in exit-fill order.
    pub trades: Vec<Trade>,
}

impl Dataset {
    /// The text of a side.
    pub fn side_text(&self, side: Side) -> &str {
        match side {
            Side::Buy => "Buy",
            Side::Sell => "Sell",
            Side::Other(i) => &self.side_texts[i as usize],
            Side::Missing => "",
        }
    }
    /// A trade's contract.
    pub fn symbol(&self, trade: &Trade) -> &str {
        &self.symbols[trade.symbol as usize]
    }
    /// An estimate of the heap bytes held.
    pub fn held_bytes(&self) -> usize {
        let strings: usize = self
            .symbols
            .iter()
            .chain(&self.side_texts)
            .map(|s| s.len() + 24)
            .sum();
        let ids: usize = self
            .trades
            .iter()
            .map(|t| match &t.exit_order_id {
                OrderId::Str(s) => s.len(),
                _ => 0,
            })
            .sum();
        std::mem::size_of::<Self>()
            + strings
            + ids
            + self.trades.capacity() * std::mem::size_of::<Trade>()
    }
}

struct Position {
    side: Side,
    net: i128,
    entry_time: i64,
    entry_price: f64,
}

/// Reconstructs trades and attaches stop detection and risk points.
pub fn build_trades(table: &OrderTable) -> Result<Dataset, ParseError> {
    // Fills sorted by fill time, ties in file order (E-14 fixed).
    let mut by_time: Vec<usize> = (0..table.fills.len()).collect();
    by_time.sort_by_key(|&i| table.fills[i].time);

    let mut positions: Vec<Option<Position>> = (0..table.symbols.len()).map(|_| None).collect();
    let mut trades: Vec<Trade> = Vec::new();
    for &fill_index in &by_time {
        let fill = &table.fills[fill_index];
        let order = &table.orders[fill.order as usize];
        let symbol = order.symbol.expect("fills have a contract") as usize;
        let qty = fill.qty as i128;
        let signed = if order.side == Side::Buy { qty } else { -qty };
        let slot = &mut positions[symbol];
        match slot {
            None => {
                *slot = Some(Position {
                    side: order.side,
                    net: signed,
                    entry_time: fill.time,
                    entry_price: fill.price,
                });
            }
            Some(pos) if signed * pos.net > 0 => {
                pos.net += signed;
            }
            Some(pos) => {
                trades.push(Trade {
                    id: uuid::Uuid::nil(),
                    symbol: symbol as u32,
                    side: pos.side,
                    entry_time: pos.entry_time,
                    entry_price: pos.entry_price,
                    entry_qty: qty.min(pos.net.abs()) as i64,
                    exit_time: fill.time,
                    exit_price: fill.price,
                    exit_qty: fill.qty,
                    exit_order_id: fill.order_id.clone(),
                    pnl: 0.0,
                    points_lost: 0.0,
                    no_stop: false,
                    risk_points: None,
                    tags: 0,
                });
                let net_after = pos.net + signed;
                if net_after == 0 {
                    *slot = None;
                } else {
                    pos.net = net_after;
                    pos.entry_time = fill.time;
                    pos.entry_price = fill.price;
                    pos.side = if net_after > 0 { Side::Buy } else { Side::Sell };
                }
            }
        }
    }
    if trades.is_empty() {
        return Err(ParseError::NoTrades {
            rows: table.rows,
            fills: table.fills.len(),
        });
    }

    assign_ids(&mut trades);

    // P&L.
    for trade in &mut trades {
        let is_buy = table.side_text(trade.side).to_lowercase() == "buy";
        let dir = if is_buy { 1.0 } else { -1.0 };
        let raw = trade.exit_price - trade.entry_price;
        trade.pnl = py_round((raw * dir) * trade.exit_qty as f64, 2);
        trade.points_lost = py_round(raw * dir, 2).abs();
    }

    detect_stops(table, &mut trades)?;

    Ok(Dataset {
        rows: table.rows,
        fills: table.fills.len(),
        symbols: table.symbols.clone(),
        side_texts: table.side_texts.clone(),
        trades,
    })
}

/// Random UUIDv4 ids, drawn from the OS in one call for the whole upload.
fn assign_ids(trades: &mut [Trade]) {
    let mut bytes = vec![0u8; trades.len() * 16];
    if getrandom::fill(&mut bytes).is_err() {
        for trade in trades.iter_mut() {
            trade.id = uuid::Uuid::new_v4();
        }
        return;
    }
    for (trade, chunk) in trades.iter_mut().zip(bytes.chunks_exact(16)) {
        let mut random = [0u8; 16];
        random.copy_from_slice(chunk);
        trade.id = uuid::Builder::from_random_bytes(random).into_uuid();
    }
}

fn side_slot(side: Side) -> Option<usize> {
    match side {
        Side::Buy => Some(0),
        Side::Sell => Some(1),
        _ => None,
    }
}

/// Whether a sorted slice has an element in `[lo, hi]`.
fn any_in(sorted: &[i64], lo: i64, hi: i64) -> bool {
    if lo > hi {
        return false;
    }
    let i = sorted.partition_point(|&x| x < lo);
    i < sorted.len() && sorted[i] <= hi
}

/// Stop detection (no stop-loss, `docs/quirks.md` E-1…E-6) and risk points.
fn detect_stops(table: &OrderTable, trades: &mut [Trade]) -> Result<(), ParseError> {
    let ns = table.symbols.len();
    // Event-time column E.
    let use_ts = table.any_ts;
    let use_fill = !use_ts && table.any_fill_ts;
    let mut last_event: Vec<Option<i64>> = vec![None; ns];
    let mut live: Vec<[Vec<i64>; 2]> = (0..ns).map(|_| [Vec::new(), Vec::new()]).collect();
    let mut canceled: Vec<[Vec<i64>; 2]> = (0..ns).map(|_| [Vec::new(), Vec::new()]).collect();
    let mut risk: Vec<[Vec<(i64, u32)>; 2]> = (0..ns).map(|_| [Vec::new(), Vec::new()]).collect();
    for (i, order) in table.orders.iter().enumerate() {
        let Some(symbol) = order.symbol else { continue };
        let symbol = symbol as usize;
        let event_time = if use_ts {
            order.ts
        } else if use_fill {
            order.fill_ts
        } else {
            None
        };
        if let Some(event_time) = event_time {
            last_event[symbol] = Some(last_event[symbol].map_or(event_time, |m| m.max(event_time)));
            if order.is_stop {
                if let Some(side) = side_slot(order.side) {
                    if order.canceled {
                        canceled[symbol][side].push(event_time);
                    } else {
                        live[symbol][side].push(event_time);
                    }
                }
            }
        }
        if order.risk_type && order.stop_present {
            if let (Some(ts), Some(side)) = (order.ts, side_slot(order.side)) {
                risk[symbol][side].push((ts, i as u32));
            }
        }
    }
    for symbol in 0..ns {
        for side in 0..2 {
            live[symbol][side].sort_unstable();
            canceled[symbol][side].sort_unstable();
            risk[symbol][side].sort_unstable();
        }
    }
    let has_event_times = use_ts || use_fill;
    for trade in trades.iter_mut() {
        let symbol = trade.symbol as usize;
        let opp = if trade.side == Side::Buy { 1 } else { 0 };
        let (entered, exited) = (trade.entry_time, trade.exit_time);
        let protected = has_event_times
            && last_event[symbol].is_some_and(|m| m >= entered)
            && (any_in(&live[symbol][opp], entered, exited + 2)
                || any_in(&canceled[symbol][opp], entered + 2, exited + 2)
                || (exited >= entered
                    && (any_in(&live[symbol][opp], exited, exited)
                        || any_in(&canceled[symbol][opp], exited, exited)))
                || any_in(&live[symbol][opp], entered - 60, entered - 1));
        trade.no_stop = !protected;
        trade.risk_points = None;
        if trade.no_stop {
            continue;
        }
        let candidates = &risk[symbol][opp];
        let i = candidates.partition_point(|&(ts, _)| ts < entered);
        if i < candidates.len() && candidates[i].0 <= exited {
            if let Some(line) = table.stop_price_bad_line {
                return Err(ParseError::StopPriceNotNumeric { line });
            }
            let row = &table.orders[candidates[i].1 as usize];
            let stop = row.stop_price;
            let dir = if trade.side == Side::Buy { 1.0 } else { -1.0 };
            let points = np_round(((trade.entry_price - stop) * dir).abs(), 2);
            if !points.is_finite() {
                return Err(ParseError::Cell {
                    line: row.line as usize,
                    column: super::parse::COL_STOP,
                    problem: super::parse::CellProblem::OutOfRange,
                });
            }
            trade.risk_points = Some(points);
        }
    }
    Ok(())
}
