//! The read-only endpoints over a session's last good upload: summary,
//! trades, losses, revenge, risk sizing, excessive risk, stop loss, win
//! rate and payoff, insights and the built-in goals. Each reads its
//! parameters (stored thresholds as defaults) and builds its reply.

use serde::Serialize;
use tradehabit_shared::envelope::ErrorEnvelope;
use tradehabit_shared::routes::Endpoint;

use super::analyze::mistake_counts;
use super::json::JsonValue;
use super::query::Query;
use super::rows::{order_id_value, TradeRows};
use super::{goals, number_param};
use crate::analysis::num::py_round;
use crate::analysis::parse::iso;
use crate::analysis::pipeline::{revenge_flags, Thresholds};
use crate::analysis::stats::{
    risk_variation_flag, streaks, Breakeven, Clean, Excessive, Metric, Number, Outsized, Revenge,
    RiskSizing, StopLoss, Tally,
};
use crate::analysis::text::{self, SummaryVariant};
use crate::analysis::trades::{Dataset, Trade};

/// A report's reply body.
#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum Report<'a> {
    /// Built as a value.
    Value(JsonValue),
    /// `/api/trades`: written straight from the trades.
    Trades(TradesReport<'a>),
}

/// The `/api/trades` reply.
#[derive(Serialize)]
pub(super) struct TradesReport<'a> {
    date_range: JsonValue,
    trades: TradeRows<'a>,
}

/// The reply of a read-only `endpoint`, or a 400 envelope for a bad
/// parameter.
pub(super) fn report<'a>(
    endpoint: Endpoint,
    data: &'a Dataset,
    thresholds: &Thresholds,
    query: &Query,
) -> Result<Report<'a>, ErrorEnvelope> {
    let trades = &data.trades;
    Ok(Report::Value(match endpoint {
        Endpoint::Summary => summary(trades, thresholds),
        Endpoint::Trades => return Ok(Report::Trades(trades_report(data))),
        Endpoint::Losses => losses(
            data,
            number_param(query, "sigma", thresholds.sigma_loss)?,
            query,
        ),
        Endpoint::Revenge => revenge(trades, number_param(query, "k", thresholds.k)?),
        Endpoint::RiskSizing => risk_sizing(trades, number_param(query, "vr", thresholds.vr)?),
        Endpoint::ExcessiveRisk => {
            excessive_risk(trades, number_param(query, "sigma", thresholds.sigma_risk)?)
        }
        Endpoint::StopLoss => stop_loss(trades),
        Endpoint::WinratePayoff => winrate_payoff(trades),
        Endpoint::Insights => insights(trades, thresholds, query)?,
        Endpoint::Goals => goals::builtin(trades),
        _ => JsonValue::Null,
    }))
}

fn summary(trades: &[Trade], thresholds: &Thresholds) -> JsonValue {
    let tally = Tally::of(trades);
    let breakeven = Breakeven::of(trades);
    let (current_streak, best_streak) = streaks(trades, Clean::NoTag, Metric::Trades, None);
    let win_rate = py_round(breakeven.win_rate, 2);
    let shortfall = breakeven
        .required_wr_adj
        .is_some_and(|required| win_rate < required);
    let risk_flag = risk_variation_flag(trades, thresholds.vr);
    let diagnostic = text::summary(
        &tally,
        SummaryVariant::Summary {
            shortfall,
            risk_flag,
        },
    );
    JsonValue::object([
        ("average_loss", JsonValue::float(breakeven.avg_loss)),
        ("average_win", JsonValue::float(breakeven.avg_win)),
        ("clean_trade_rate", JsonValue::float(tally.clean_rate())),
        ("diagnostic_text", JsonValue::string(diagnostic)),
        ("expectancy", JsonValue::float(breakeven.expectancy)),
        ("flagged_trades", JsonValue::count(tally.flagged)),
        ("loss_count", JsonValue::count(breakeven.losses)),
        ("mistake_counts", mistake_counts(&tally)),
        ("payoff_ratio", JsonValue::float(breakeven.payoff)),
        (
            "required_wr_adj",
            JsonValue::float_or_null(breakeven.required_wr_adj),
        ),
        ("streak_current", JsonValue::count(current_streak)),
        ("streak_record", JsonValue::count(best_streak)),
        ("total_mistakes", JsonValue::count(tally.total)),
        ("total_trades", JsonValue::count(trades.len())),
        ("win_count", JsonValue::count(breakeven.wins)),
        ("win_rate", JsonValue::float(win_rate)),
    ])
}

fn trades_report(data: &Dataset) -> TradesReport<'_> {
    let trades = &data.trades;
    let start = trades
        .iter()
        .map(|trade| trade.entry_time)
        .min()
        .unwrap_or(0);
    let end = trades
        .iter()
        .map(|trade| trade.exit_time)
        .max()
        .unwrap_or(0);
    TradesReport {
        date_range: JsonValue::object([
            ("end", JsonValue::string(iso(end))),
            ("start", JsonValue::string(iso(start))),
        ]),
        trades: TradeRows(data),
    }
}

/// Losing trades (optionally of one `symbol`) and the outsized-loss
/// statistics over them with `sigma`.
fn losses(data: &Dataset, sigma: f64, query: &Query) -> JsonValue {
    let symbol = query.first("symbol");
    let selected: Vec<&Trade> = data
        .trades
        .iter()
        .filter(|trade| trade.is_loss() && symbol.is_none_or(|symbol| data.symbol(trade) == symbol))
        .collect();
    let outsized = Outsized::of(selected.iter().copied(), sigma);
    let losses = selected
        .iter()
        .enumerate()
        .map(|(index, trade)| {
            JsonValue::object([
                ("entryTime", JsonValue::string(iso(trade.entry_time))),
                ("exitOrderId", order_id_value(&trade.exit_order_id)),
                ("exitQty", JsonValue::int(trade.exit_qty)),
                (
                    "hasMistake",
                    JsonValue::Bool(trade.points_lost > outsized.threshold),
                ),
                ("lossIndex", JsonValue::count(index + 1)),
                ("pointsLost", JsonValue::float(trade.points_lost)),
                ("side", JsonValue::string(data.side_text(trade.side))),
                ("symbol", JsonValue::string(data.symbol(trade))),
                ("tradeId", JsonValue::string(trade.id.to_string())),
            ])
        })
        .collect();
    JsonValue::object([
        ("count", JsonValue::count(outsized.count)),
        ("diagnostic", JsonValue::string(text::outsized(&outsized))),
        ("excessLossPoints", number(outsized.excess)),
        ("losses", JsonValue::Array(losses)),
        ("meanPointsLost", JsonValue::float(outsized.mean)),
        ("percentage", JsonValue::float(outsized.percent)),
        ("sigmaUsed", JsonValue::float(sigma)),
        ("stdDevPointsLost", JsonValue::float(outsized.std)),
        (
            "symbolFiltered",
            symbol.map_or(JsonValue::Null, JsonValue::string),
        ),
        ("thresholdPointsLost", JsonValue::float(outsized.threshold)),
    ])
}

/// Revenge statistics with multiplier `k`, over a re-tagged copy of the
/// flags (`docs/quirks.md`, H-1).
fn revenge(trades: &[Trade], k: f64) -> JsonValue {
    let flags = revenge_flags(trades, k);
    let revenge = Revenge::of(trades, &flags);
    JsonValue::object([
        ("average_loss_revenge", JsonValue::float(revenge.avg_loss)),
        ("average_win_revenge", JsonValue::float(revenge.avg_win)),
        ("diagnostic", JsonValue::string(text::revenge(&revenge))),
        (
            "net_pnl_per_trade_revenge",
            JsonValue::float(revenge.net_per_trade),
        ),
        ("net_pnl_revenge", JsonValue::float(revenge.net)),
        (
            "overall_payoff_ratio",
            JsonValue::float(revenge.payoff_overall),
        ),
        (
            "overall_win_rate",
            JsonValue::float(revenge.win_rate_overall),
        ),
        ("payoff_ratio_revenge", JsonValue::float(revenge.payoff)),
        ("revenge_multiplier", JsonValue::float(k)),
        ("revenge_win_rate", JsonValue::float(revenge.win_rate)),
        ("total_revenge_trades", JsonValue::count(revenge.count)),
    ])
}

fn risk_sizing(trades: &[Trade], variation_threshold: f64) -> JsonValue {
    let sizing = RiskSizing::of(trades, variation_threshold);
    let diagnostic = text::risk_sizing(&sizing, variation_threshold, trades.len());
    JsonValue::object([
        ("count", JsonValue::count(sizing.count)),
        ("diagnostic", JsonValue::string(diagnostic)),
        ("maxRiskPoints", JsonValue::float(sizing.max)),
        ("meanRiskPoints", JsonValue::float(sizing.mean)),
        ("minRiskPoints", JsonValue::float(sizing.min)),
        ("stdDevRiskPoints", JsonValue::float(sizing.std)),
        ("variationRatio", JsonValue::float(sizing.ratio)),
        ("variationThreshold", JsonValue::float(variation_threshold)),
    ])
}

fn excessive_risk(trades: &[Trade], sigma: f64) -> JsonValue {
    let excessive = Excessive::of(trades, sigma);
    JsonValue::object([
        (
            "averageRiskAmongExcessive",
            JsonValue::float(excessive.avg_excessive),
        ),
        ("diagnostic", JsonValue::string(text::excessive(&excessive))),
        ("excessiveRiskCount", JsonValue::count(excessive.count)),
        ("excessiveRiskPercent", JsonValue::float(excessive.percent)),
        (
            "excessiveRiskThreshold",
            JsonValue::float(excessive.threshold),
        ),
        ("meanRiskPoints", JsonValue::float(excessive.mean)),
        ("sigmaUsed", JsonValue::float(sigma)),
        ("stdDevRiskPoints", JsonValue::float(excessive.std)),
        (
            "totalTradesWithStops",
            JsonValue::count(excessive.n_with_stops),
        ),
    ])
}

fn stop_loss(trades: &[Trade]) -> JsonValue {
    let stops = StopLoss::of(trades);
    JsonValue::object([
        ("averageLossWithStop", JsonValue::float(stops.avg_with)),
        (
            "averageLossWithoutStop",
            JsonValue::float(stops.avg_without),
        ),
        ("diagnostic", JsonValue::string(text::stop_loss(&stops))),
        ("maxLossWithoutStop", JsonValue::float(stops.max_without)),
        ("totalTrades", JsonValue::count(stops.n)),
        ("tradesWithStops", JsonValue::count(stops.n - stops.without)),
        ("tradesWithoutStops", JsonValue::count(stops.without)),
    ])
}

/// Win rate and payoff, or a lone `message` without both wins and losses
/// (`docs/quirks.md`, H-12).
fn winrate_payoff(trades: &[Trade]) -> JsonValue {
    let breakeven = Breakeven::of(trades);
    if breakeven.wins == 0 || breakeven.losses == 0 {
        return JsonValue::object([("message", JsonValue::string(text::winrate_needs_both()))]);
    }
    JsonValue::object([
        ("averageLoss", JsonValue::float(breakeven.avg_loss)),
        ("averageWin", JsonValue::float(breakeven.avg_win)),
        ("diagnostic", JsonValue::string(text::breakeven(&breakeven))),
        ("payoffRatio", JsonValue::float(breakeven.payoff)),
        ("winRate", JsonValue::float(breakeven.win_rate)),
    ])
}

/// A statistics number that keeps Python's int/float distinction.
fn number(value: Number) -> JsonValue {
    match value {
        Number::Int(value) => JsonValue::int(value),
        Number::Float(value) => JsonValue::float(value),
    }
}

/// One diagnostic section of `/api/insights` and how it is ordered.
struct Section {
    title: &'static str,
    /// Trades the section is about; sections with none go last.
    count: usize,
    /// Order among sections with the same count (lower first).
    tie_rank: u8,
    /// Order among the sections with a zero count (lower first).
    zero_rank: u8,
    diagnostic: String,
}

/// Every diagnostic, ordered: the summary, the sections with findings (most
/// first), risk sizing, breakeven, then the sections without findings.
/// `k` is read and ignored, as the legacy did (`docs/quirks.md`, H-8).
fn insights(
    trades: &[Trade],
    thresholds: &Thresholds,
    query: &Query,
) -> Result<JsonValue, ErrorEnvelope> {
    let variation_threshold = number_param(query, "vr", thresholds.vr)?;
    let sigma_loss = number_param(query, "sigma_loss", thresholds.sigma_loss)?;
    let sigma_risk = number_param(query, "sigma_risk", thresholds.sigma_risk)?;
    let _k = number_param(query, "k", thresholds.k)?;
    let tally = Tally::of(trades);
    let outsized = Outsized::of(trades.iter(), sigma_loss);
    let excessive = Excessive::of(trades, sigma_risk);
    let sections = [
        Section {
            title: "Stop-Loss Discipline",
            count: tally.counts[0],
            tie_rank: 0,
            zero_rank: 0,
            diagnostic: text::stop_loss(&StopLoss::of(trades)),
        },
        Section {
            title: "Outsized Losses",
            count: outsized.count,
            tie_rank: 1,
            zero_rank: 2,
            diagnostic: text::outsized(&outsized),
        },
        Section {
            title: "Excessive Risk Sizing",
            count: excessive.count,
            tie_rank: 2,
            zero_rank: 1,
            diagnostic: text::excessive(&excessive),
        },
        Section {
            title: "Revenge Trading",
            count: tally.counts[2],
            tie_rank: 3,
            zero_rank: 3,
            diagnostic: text::revenge(&Revenge::of(trades, &Revenge::stored_flags(trades))),
        },
    ];
    let mut with_findings: Vec<&Section> = sections.iter().filter(|s| s.count > 0).collect();
    with_findings.sort_by(|a, b| b.count.cmp(&a.count).then(a.tie_rank.cmp(&b.tie_rank)));
    let mut without_findings: Vec<&Section> = sections.iter().filter(|s| s.count == 0).collect();
    without_findings.sort_by_key(|section| section.zero_rank);
    let sizing = RiskSizing::of(trades, variation_threshold);
    let mut items: Vec<(&str, String)> = vec![(
        "Trading Summary",
        text::summary(&tally, SummaryVariant::Insights),
    )];
    items.extend(
        with_findings
            .iter()
            .map(|s| (s.title, s.diagnostic.clone())),
    );
    items.push((
        "Risk Sizing Consistency",
        text::risk_sizing(&sizing, variation_threshold, trades.len()),
    ));
    items.push((
        "Breakeven Analysis",
        text::breakeven(&Breakeven::of(trades)),
    ));
    items.extend(
        without_findings
            .iter()
            .map(|s| (s.title, s.diagnostic.clone())),
    );
    Ok(JsonValue::Array(
        items
            .into_iter()
            .enumerate()
            .map(|(priority, (title, diagnostic))| {
                JsonValue::object([
                    ("diagnostic", JsonValue::string(diagnostic)),
                    ("priority", JsonValue::count(priority)),
                    ("title", JsonValue::string(title)),
                ])
            })
            .collect(),
    ))
}
