//! Statistics blocks: tag tallies, breakeven, outsized losses, excessive
//! risk, risk-sizing consistency, stop-loss discipline, revenge trading and
//! the summary's risk flag; streaks for the goals live in `streaks`. Every
//! output is already rounded the way the legacy rounds it (`docs/quirks.md`,
//! E-15); the unrounded values that decide branches are kept alongside
//! where needed.

mod streaks;

pub use streaks::{streaks, Clean, Metric};

use super::exact::{mean, pstdev};
use super::num::{median, np_round, plain_sum, py_round};
use super::trades::{Trade, TAGS, TAG_NO_STOP, TAG_REVENGE};

/// Python's `int` vs `float` for the few values whose JSON type varies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// A Python int.
    Int(i64),
    /// A Python float.
    Float(f64),
}

/// Tag tallies: per tag, in total, and trades with any tag.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Trades.
    pub n: usize,
    /// Occurrences per tag, in [`TAGS`] order.
    pub counts: [usize; 4],
    /// Sum of the counts.
    pub total: usize,
    /// Trades with at least one tag.
    pub flagged: usize,
}

impl Tally {
    /// Counts the stored tags.
    pub fn of(trades: &[Trade]) -> Tally {
        let mut tally = Tally {
            n: trades.len(),
            ..Default::default()
        };
        for trade in trades {
            if trade.tags != 0 {
                tally.flagged += 1;
            }
            for (i, (bit, _)) in TAGS.iter().enumerate() {
                if trade.tags & bit != 0 {
                    tally.counts[i] += 1;
                    tally.total += 1;
                }
            }
        }
        tally
    }
    /// Trades without a tag.
    pub fn clean(&self) -> usize {
        self.n - self.flagged
    }
    /// `py_round(clean / n, 2)`.
    pub fn clean_rate(&self) -> f64 {
        py_round(self.clean() as f64 / self.n as f64, 2)
    }
}

/// Where the win rate stands against the breakeven win rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// No losing trade.
    InsufficientData,
    /// delta ≥ 0.02.
    ComfortablyAbove,
    /// 0 < delta < 0.02.
    JustAbove,
    /// −0.02 ≤ delta ≤ 0.
    Around,
    /// Anything else.
    Below,
}

/// The breakeven block: win rate, averages, payoff, expectancy and the
/// win rates required to break even (rounded outputs; `docs/quirks.md`,
/// E-28).
#[derive(Debug, Clone)]
pub struct Breakeven {
    /// Trades.
    pub n: usize,
    /// Wins.
    pub wins: usize,
    /// Losses.
    pub losses: usize,
    /// py4.
    pub win_rate: f64,
    /// py2.
    pub avg_win: f64,
    /// py2.
    pub avg_loss: f64,
    /// py2.
    pub payoff: f64,
    /// py2.
    pub expectancy: f64,
    /// py4 (+0.01 form).
    pub breakeven_win_rate: f64,
    /// py4.
    pub required_wr_raw: Option<f64>,
    /// py2 of the ×1.01 form.
    pub required_wr_adj: Option<f64>,
    /// py4.
    pub delta: f64,
    /// Branch.
    pub category: Category,
}

fn avg_plain<I: IntoIterator<Item = f64>>(xs: I, count: usize) -> f64 {
    if count == 0 {
        return 0.0;
    }
    plain_sum(xs).unwrap_or(0.0) / count as f64
}

impl Breakeven {
    /// Computes the block over all trades (`n ≥ 1`).
    pub fn of(trades: &[Trade]) -> Breakeven {
        let n = trades.len();
        let wins = trades.iter().filter(|t| t.is_win()).count();
        let losses = trades.iter().filter(|t| t.is_loss()).count();
        let win_rate = wins as f64 / n as f64;
        let avg_win = avg_plain(trades.iter().filter(|t| t.is_win()).map(|t| t.pnl), wins);
        let avg_loss = avg_plain(
            trades.iter().filter(|t| t.is_loss()).map(|t| t.pnl.abs()),
            losses,
        );
        let payoff = if avg_loss > 0.0 {
            avg_win / avg_loss
        } else {
            0.0
        };
        let expectancy = win_rate * avg_win - (1.0 - win_rate) * avg_loss;
        let (breakeven_rate, raw, adj, delta, category) = if avg_loss == 0.0 {
            (0.0, None, None, 0.0, Category::InsufficientData)
        } else {
            let breakeven_rate = avg_loss / (avg_win + avg_loss) + 0.01;
            let raw = breakeven_rate - 0.01;
            let adj = py_round(raw * 1.01, 2);
            let delta = win_rate - breakeven_rate;
            let category = if delta >= 0.02 {
                Category::ComfortablyAbove
            } else if delta > 0.0 {
                Category::JustAbove
            } else if delta >= -0.02 {
                Category::Around
            } else {
                Category::Below
            };
            (breakeven_rate, Some(raw), Some(adj), delta, category)
        };
        Breakeven {
            n,
            wins,
            losses,
            win_rate: py_round(win_rate, 4),
            avg_win: py_round(avg_win, 2),
            avg_loss: py_round(avg_loss, 2),
            payoff: py_round(payoff, 2),
            expectancy: py_round(expectancy, 2),
            breakeven_win_rate: py_round(breakeven_rate, 4),
            required_wr_raw: raw.map(|r| py_round(r, 4)),
            required_wr_adj: adj,
            delta: py_round(delta, 4),
            category,
        }
    }
}

/// Outsized-loss statistics over losing trades (rounded outputs).
#[derive(Debug, Clone)]
pub struct Outsized {
    /// |L|.
    pub total_losing: usize,
    /// py2.
    pub mean: f64,
    /// py2.
    pub median: f64,
    /// py2.
    pub std: f64,
    /// py2.
    pub threshold: f64,
    /// Unrounded threshold.
    pub threshold_raw: f64,
    /// py2.
    pub mad: f64,
    /// py4.
    pub mad_cv: f64,
    /// Outsized count.
    pub count: usize,
    /// py1.
    pub percent: f64,
    /// py2.
    pub avg_outsized: f64,
    /// py2, or the int 0 (E-34).
    pub excess: Number,
}

impl Outsized {
    /// Computes the block over `set` (the losing trades are selected here).
    pub fn of<'a, I: IntoIterator<Item = &'a Trade>>(set: I, sigma: f64) -> Outsized {
        let losing: Vec<&Trade> = set.into_iter().filter(|t| t.is_loss()).collect();
        if losing.is_empty() {
            return Outsized {
                total_losing: 0,
                mean: 0.0,
                median: 0.0,
                std: 0.0,
                threshold: 0.0,
                threshold_raw: 0.0,
                mad: 0.0,
                mad_cv: 0.0,
                count: 0,
                percent: 0.0,
                avg_outsized: 0.0,
                excess: Number::Float(0.0),
            };
        }
        let points_lost: Vec<f64> = losing.iter().map(|t| t.points_lost).collect();
        let mean_lost = mean(&points_lost);
        let med = median(&points_lost);
        let sd = if points_lost.len() > 1 {
            pstdev(&points_lost)
        } else {
            0.0
        };
        let thr = mean_lost + sigma * sd;
        let dev: Vec<f64> = points_lost.iter().map(|v| (v - med).abs()).collect();
        let mad = median(&dev);
        let mad_cv = if med > 0.0 { mad / med } else { 0.0 };
        let out: Vec<&&Trade> = losing.iter().filter(|t| t.points_lost > thr).collect();
        let count = out.len();
        let percent = py_round(100.0 * count as f64 / losing.len() as f64, 1);
        let abs_pnl: Vec<f64> = out.iter().map(|t| t.pnl.abs()).collect();
        let avg_outsized = if abs_pnl.is_empty() {
            0.0
        } else {
            mean(&abs_pnl)
        };
        let excess = match plain_sum(abs_pnl.iter().map(|p| p - mean_lost)) {
            None => Number::Int(0),
            Some(excess_sum) => Number::Float(py_round(excess_sum, 2)),
        };
        Outsized {
            total_losing: losing.len(),
            mean: py_round(mean_lost, 2),
            median: py_round(med, 2),
            std: py_round(sd, 2),
            threshold: py_round(thr, 2),
            threshold_raw: thr,
            mad: py_round(mad, 2),
            mad_cv: py_round(mad_cv, 4),
            count,
            percent,
            avg_outsized: py_round(avg_outsized, 2),
            excess,
        }
    }
}

/// Excessive-risk statistics over trades with a stop (rounded outputs).
#[derive(Debug, Clone)]
pub struct Excessive {
    /// |V|.
    pub n_with_stops: usize,
    /// np2.
    pub mean: f64,
    /// np2.
    pub median: f64,
    /// py2.
    pub std: f64,
    /// np2.
    pub threshold: f64,
    /// np2.
    pub mad: f64,
    /// np4.
    pub mad_cv: f64,
    /// Values above the threshold.
    pub count: usize,
    /// py1.
    pub percent: f64,
    /// np2.
    pub avg_excessive: f64,
}

impl Excessive {
    /// Computes the block over the stored risk points.
    pub fn of(trades: &[Trade], sigma: f64) -> Excessive {
        let risk: Vec<f64> = trades.iter().filter_map(|t| t.risk_points).collect();
        if risk.is_empty() {
            return Excessive {
                n_with_stops: 0,
                mean: 0.0,
                median: 0.0,
                std: 0.0,
                threshold: 0.0,
                mad: 0.0,
                mad_cv: 0.0,
                count: 0,
                percent: 0.0,
                avg_excessive: 0.0,
            };
        }
        let mean_risk = mean(&risk);
        let med = median(&risk);
        let sd = if risk.len() > 1 { pstdev(&risk) } else { 0.0 };
        let thr = mean_risk + sigma * sd;
        let dev: Vec<f64> = risk.iter().map(|x| (x - med).abs()).collect();
        let mad = median(&dev);
        let mad_cv = if med != 0.0 { mad / med } else { 0.0 };
        let exc: Vec<f64> = risk.iter().copied().filter(|x| *x > thr).collect();
        let percent = py_round(100.0 * exc.len() as f64 / risk.len() as f64, 1);
        let avg = if exc.is_empty() { 0.0 } else { mean(&exc) };
        Excessive {
            n_with_stops: risk.len(),
            mean: np_round(mean_risk, 2),
            median: np_round(med, 2),
            std: py_round(sd, 2),
            threshold: np_round(thr, 2),
            mad: np_round(mad, 2),
            mad_cv: np_round(mad_cv, 4),
            count: exc.len(),
            percent,
            avg_excessive: np_round(avg, 2),
        }
    }
}

/// Risk-sizing consistency: the spread of risk points (rounded outputs).
#[derive(Debug, Clone)]
pub struct RiskSizing {
    /// |V|.
    pub count: usize,
    /// np2.
    pub min: f64,
    /// np2.
    pub max: f64,
    /// np2.
    pub mean: f64,
    /// py2.
    pub std: f64,
    /// np2.
    pub ratio: f64,
    /// `None` when fewer than two values (insufficient data).
    pub consistent: Option<bool>,
}

impl RiskSizing {
    /// Computes the block with limit `vr`.
    pub fn of(trades: &[Trade], vr: f64) -> RiskSizing {
        let risk: Vec<f64> = trades.iter().filter_map(|t| t.risk_points).collect();
        if risk.len() < 2 {
            return RiskSizing {
                count: risk.len(),
                min: 0.0,
                max: 0.0,
                mean: 0.0,
                std: 0.0,
                ratio: 0.0,
                consistent: None,
            };
        }
        let mean_risk = mean(&risk);
        let sd = pstdev(&risk);
        let min = risk.iter().copied().fold(f64::INFINITY, f64::min);
        let max = risk.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let ratio = if mean_risk > 0.0 { sd / mean_risk } else { 0.0 };
        RiskSizing {
            count: risk.len(),
            min: np_round(min, 2),
            max: np_round(max, 2),
            mean: np_round(mean_risk, 2),
            std: py_round(sd, 2),
            ratio: np_round(ratio, 2),
            consistent: Some(ratio < vr),
        }
    }
}

/// Stop-loss statistics: trades and losses with and without a stop
/// (rounded outputs).
#[derive(Debug, Clone)]
pub struct StopLoss {
    /// Trades.
    pub n: usize,
    /// Trades tagged `no stop-loss order`.
    pub without: usize,
    /// py2.
    pub avg_with: f64,
    /// py2.
    pub avg_without: f64,
    /// py2.
    pub max_without: f64,
    /// py1.
    pub percent_without: f64,
    /// py1.
    pub performance_diff: f64,
}

impl StopLoss {
    /// Computes the block from the stored tags.
    pub fn of(trades: &[Trade]) -> StopLoss {
        let tagged = |t: &&Trade| t.tags & TAG_NO_STOP != 0;
        let without = trades.iter().filter(tagged).count();
        let losses_with_stop: Vec<f64> = trades
            .iter()
            .filter(|t| !tagged(t) && t.is_loss())
            .map(|t| t.pnl.abs())
            .collect();
        let losses_without_stop: Vec<f64> = trades
            .iter()
            .filter(|t| tagged(t) && t.is_loss())
            .map(|t| t.pnl.abs())
            .collect();
        let avg_with = if losses_with_stop.is_empty() {
            0.0
        } else {
            mean(&losses_with_stop)
        };
        let avg_without = if losses_without_stop.is_empty() {
            0.0
        } else {
            mean(&losses_without_stop)
        };
        let max_without = losses_without_stop
            .iter()
            .copied()
            .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))));
        let perf = if avg_with > 0.0 {
            (avg_without - avg_with) / avg_with * 100.0
        } else {
            0.0
        };
        StopLoss {
            n: trades.len(),
            without,
            avg_with: py_round(avg_with, 2),
            avg_without: py_round(avg_without, 2),
            max_without: py_round(max_without.unwrap_or(0.0), 2),
            percent_without: py_round(100.0 * without as f64 / trades.len() as f64, 1),
            performance_diff: py_round(perf, 1),
        }
    }
}

/// Revenge-trading statistics against all trades (rounded outputs).
#[derive(Debug, Clone)]
pub struct Revenge {
    /// Trades.
    pub n: usize,
    /// |R|.
    pub count: usize,
    /// py2.
    pub win_rate: f64,
    /// py2.
    pub avg_win: f64,
    /// py2.
    pub avg_loss: f64,
    /// py2.
    pub payoff: f64,
    /// py2.
    pub net: f64,
    /// py2.
    pub net_per_trade: f64,
    /// py1.
    pub percent: f64,
    /// py2.
    pub win_rate_overall: f64,
    /// py2.
    pub avg_win_overall: f64,
    /// py2.
    pub avg_loss_overall: f64,
    /// py2.
    pub payoff_overall: f64,
}

impl Revenge {
    /// Computes the block; `flags[i]` says whether trade `i` is in `R`.
    pub fn of(trades: &[Trade], flags: &[bool]) -> Revenge {
        let n = trades.len();
        let wins: Vec<&Trade> = trades.iter().filter(|t| t.is_win()).collect();
        let losses: Vec<&Trade> = trades.iter().filter(|t| t.is_loss()).collect();
        let wr_o = wins.len() as f64 / n as f64;
        let aw_o = avg_plain(wins.iter().map(|t| t.pnl), wins.len());
        let al_o = avg_plain(losses.iter().map(|t| t.pnl.abs()), losses.len());
        let po_o = if al_o > 0.0 { aw_o / al_o } else { 0.0 };
        let revenge: Vec<&Trade> = trades
            .iter()
            .zip(flags)
            .filter(|(_, f)| **f)
            .map(|(t, _)| t)
            .collect();
        let mut out = Revenge {
            n,
            count: revenge.len(),
            win_rate: 0.0,
            avg_win: 0.0,
            avg_loss: 0.0,
            payoff: 0.0,
            net: 0.0,
            net_per_trade: 0.0,
            percent: 0.0,
            win_rate_overall: py_round(wr_o, 2),
            avg_win_overall: py_round(aw_o, 2),
            avg_loss_overall: py_round(al_o, 2),
            payoff_overall: py_round(po_o, 2),
        };
        if revenge.is_empty() {
            return out;
        }
        let revenge_wins: Vec<&&Trade> = revenge.iter().filter(|t| t.is_win()).collect();
        let revenge_losses: Vec<&&Trade> = revenge.iter().filter(|t| t.is_loss()).collect();
        let wr = revenge_wins.len() as f64 / revenge.len() as f64;
        let aw = avg_plain(revenge_wins.iter().map(|t| t.pnl), revenge_wins.len());
        let al = avg_plain(
            revenge_losses.iter().map(|t| t.pnl.abs()),
            revenge_losses.len(),
        );
        let po = if al > 0.0 { aw / al } else { 0.0 };
        let net = plain_sum(revenge.iter().map(|t| t.pnl)).unwrap_or(0.0);
        out.win_rate = py_round(wr, 2);
        out.avg_win = py_round(aw, 2);
        out.avg_loss = py_round(al, 2);
        out.payoff = py_round(po, 2);
        out.net = py_round(net, 2);
        out.net_per_trade = py_round(net / revenge.len() as f64, 2);
        out.percent = py_round(100.0 * revenge.len() as f64 / n as f64, 1);
        out
    }

    /// The revenge set from the stored tags.
    pub fn stored_flags(trades: &[Trade]) -> Vec<bool> {
        trades.iter().map(|t| t.tags & TAG_REVENGE != 0).collect()
    }
}

/// The summary's risk-variation flag, with the stored `vr`
/// (`docs/quirks.md`, E-33).
pub fn risk_variation_flag(trades: &[Trade], vr: f64) -> bool {
    let risk: Vec<f64> = trades.iter().filter_map(|t| t.risk_points).collect();
    if risk.is_empty() {
        return false;
    }
    let sd = if risk.len() > 1 { pstdev(&risk) } else { 0.0 };
    let mean_risk = mean(&risk);
    if mean_risk == 0.0 {
        return false;
    }
    sd / mean_risk >= vr
}
