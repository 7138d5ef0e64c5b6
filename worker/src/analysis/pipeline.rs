//! The mistake pipeline: no stop-loss, outsized loss,
//! revenge, (risk points), excessive risk — always in this order, on
//! cleared tags.

use super::exact::{mean, pstdev};
use super::num::median;
use super::trades::{Trade, TAG_EXCESSIVE, TAG_NO_STOP, TAG_OUTSIZED, TAG_REVENGE};

/// The four thresholds a session stores (`/api/settings`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Revenge window multiplier.
    pub k: f64,
    /// Outsized-loss sigma.
    pub sigma_loss: f64,
    /// Excessive-risk sigma.
    pub sigma_risk: f64,
    /// Risk variation ratio limit.
    pub vr: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            k: 1.0,
            sigma_loss: 1.0,
            sigma_risk: 1.5,
            vr: 0.35,
        }
    }
}

/// Clears every tag and runs the whole pipeline.
pub fn tag_trades(trades: &mut [Trade], sigma_loss: f64, k: f64, sigma_risk: f64) {
    for trade in trades.iter_mut() {
        trade.tags = if trade.no_stop { TAG_NO_STOP } else { 0 };
    }
    // Outsized loss.
    let losses: Vec<f64> = trades
        .iter()
        .filter(|trade| trade.is_loss())
        .map(|trade| trade.points_lost)
        .collect();
    if !losses.is_empty() {
        let thr = mean(&losses) + sigma_loss * pstdev(&losses);
        for trade in trades.iter_mut() {
            if trade.is_loss() && trade.points_lost > thr {
                trade.tags |= TAG_OUTSIZED;
            }
        }
    }
    // Revenge.
    let flags = revenge_flags(trades, k);
    for (trade, flag) in trades.iter_mut().zip(flags) {
        if flag {
            trade.tags |= TAG_REVENGE;
        }
    }
    // Excessive risk.
    let risks: Vec<f64> = trades
        .iter()
        .filter_map(|trade| trade.risk_points)
        .collect();
    if !risks.is_empty() {
        let sd = if risks.len() > 1 { pstdev(&risks) } else { 0.0 };
        let thr = mean(&risks) + sigma_risk * sd;
        for trade in trades.iter_mut() {
            if trade.risk_points.is_some_and(|r| r > thr) {
                trade.tags |= TAG_EXCESSIVE;
            }
        }
    }
}

/// Which trades the revenge rule flags with multiplier `k`
/// (`docs/quirks.md`, E-11).
pub fn revenge_flags(trades: &[Trade], k: f64) -> Vec<bool> {
    let mut out = vec![false; trades.len()];
    if trades.is_empty() {
        return out;
    }
    let holds: Vec<f64> = trades.iter().map(Trade::hold).collect();
    let window = median(&holds) * k;
    for i in 1..trades.len() {
        let prev = &trades[i - 1];
        if prev.pnl < 0.0 && ((trades[i].entry_time - prev.exit_time) as f64) <= window {
            out[i] = true;
        }
    }
    out
}
