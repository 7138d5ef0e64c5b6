//! Diagnostics: our own wording, the legacy's facts,
//! numbers and branch conditions.

use super::num::{fixed, pct1, py_repr, py_round, py_round_int};
use super::stats::{
    Breakeven, Category, Excessive, Outsized, Revenge, RiskSizing, StopLoss, Tally,
};

/// Which Trading Summary.
#[derive(Debug, Clone, Copy)]
pub enum SummaryVariant {
    /// `/api/summary`: may add a secondary issue.
    Summary {
        /// 2-dp win rate below `required_wr_adj`.
        shortfall: bool,
        /// The summary's risk-variation flag.
        risk_flag: bool,
    },
    /// `/api/insights`: always the compliment (E-30).
    Insights,
}

/// The Trading Summary diagnostic.
pub fn summary(tally: &Tally, variant: SummaryVariant) -> String {
    if tally.n == 0 {
        return "There are no trades to analyse yet.".into();
    }
    let [no_stop, outsized, revenge, excessive] = tally.counts;
    if tally.total == 0 {
        let mut text = String::from(
            "No tracked mistake (missing stop-loss, outsized loss, revenge trade, excessive risk) was found in these trades.",
        );
        match variant {
            SummaryVariant::Summary { shortfall: true, .. } => text.push_str(
                " One thing still needs work: with your current win rate and payoff ratio you do not reach breakeven, so this way of trading loses money over time.",
            ),
            SummaryVariant::Summary { risk_flag: true, .. } => text.push_str(
                " One thing still needs work: the distance to your stop varies a lot from trade to trade. Consistent risk per trade makes results comparable and drawdowns predictable.",
            ),
            _ => text.push_str(" Your risk per trade is consistent and your trading shows a profitable edge. Keep it up."),
        }
        return text;
    }
    let top = *tally.counts.iter().max().unwrap_or(&0);
    // Priority for the biggest problem: no stop, outsized, excessive, revenge.
    let order = [(no_stop, 0), (outsized, 1), (excessive, 3), (revenge, 2)];
    let biggest = order
        .iter()
        .find(|(c, _)| *c == top)
        .map(|(_, i)| *i)
        .unwrap_or(0);
    let clean_pct = py_round_int(tally.clean() as f64 / tally.n as f64 * 100.0);
    let mut text =
        format!("{clean_pct}% of your trades in this period were free of tracked mistakes. ");
    text.push_str(match biggest {
        0 => "Your most frequent problem is trading without a stop-loss order. Without a stop a single trade can lose far more than planned, and the open risk makes decisions more emotional. See the Stop-Loss Discipline section.",
        1 => "Your most frequent problem is letting losses run beyond your usual size. A handful of oversized losses can wipe out many good trades; keep losses close to your typical loss. See the Outsized Losses section.",
        2 => "Your most frequent problem is re-entering quickly after a losing trade. Trades taken to win back a loss are rarely part of the plan. See the Revenge Trading section.",
        _ => "Your most frequent problem is risking much more than usual on some trades. A few oversized bets can do lasting damage to the account. See the Risk Sizing Analysis section.",
    });
    if no_stop > 1 && biggest != 0 {
        text.push_str(&format!(
            " Also note: {no_stop} trades had no stop-loss order. It is not your most frequent mistake, but it is the one with unlimited downside."
        ));
    }
    text
}

/// The Stop-Loss Discipline diagnostic.
pub fn stop_loss(block: &StopLoss) -> String {
    if block.without == 0 {
        if block.n == 0 {
            return "There are no trades to analyse.".into();
        }
        return format!(
            "All {} of your trades had a stop-loss order. Excellent discipline.",
            block.n
        );
    }
    let head = format!(
        "{} of your {} trades ({}%) had no stop-loss order.",
        block.without,
        block.n,
        py_repr(block.percent_without)
    );
    if block.avg_without == 0.0 {
        return format!(
            "{head} None of them ended in a loss, but trading without a stop still leaves the downside open and makes decisions more emotional."
        );
    }
    let diff = block.performance_diff;
    let cmp = if diff >= 3.0 {
        format!(
            "Losses without a stop were {}% larger, which shows what stops are worth.",
            fixed(diff, 0)
        )
    } else if diff <= -3.0 {
        format!(
            "Losses without a stop were {}% smaller here, but that does not make the open risk acceptable.",
            fixed(diff.abs(), 0)
        )
    } else if (1.0..3.0).contains(&diff) {
        format!(
            "Losses without a stop were {}% larger: a small gap, but a large blow-up risk.",
            fixed(diff, 0)
        )
    } else if diff > -3.0 && diff <= -1.0 {
        format!(
            "Losses without a stop were {}% smaller: a small edge that does not justify the risk.",
            fixed(diff.abs(), 0)
        )
    } else {
        "Losses with and without a stop were about the same size, which still does not justify the open risk.".into()
    };
    format!(
        "{head} Their average loss was {} points, against {} points for trades with a stop, and the largest loss without a stop was {} points. {cmp} Always place the stop when you enter.",
        py_repr(block.avg_without),
        py_repr(block.avg_with),
        py_repr(block.max_without)
    )
}

/// The Excessive Risk Sizing diagnostic.
pub fn excessive(block: &Excessive) -> String {
    if block.n_with_stops == 0 {
        return "There is no stop-loss data to assess excessive risk.".into();
    }
    if block.count == 0 {
        return format!(
            "No trade risked more than your excessive-risk threshold of {} points. Your risk per trade is well controlled.",
            fixed(block.threshold, 2)
        );
    }
    if block.mad_cv < 0.2 {
        format!(
            "{} of your {} trades with a stop ({}%) risked more than the excessive-risk threshold: {} points on average against your typical {} points ({} points more). The other trades vary by only {}, so your sizing is disciplined with occasional lapses that expose the account.",
            block.count,
            block.n_with_stops,
            fixed(block.percent, 1),
            fixed(block.avg_excessive, 1),
            fixed(block.mean, 1),
            fixed(block.avg_excessive - block.mean, 1),
            pct1(block.mad_cv)
        )
    } else {
        let mult = if block.mean != 0.0 {
            (block.avg_excessive / block.mean - 1.0) * 100.0
        } else {
            0.0
        };
        format!(
            "{} of your {} trades with a stop ({}%) risked more than the excessive-risk threshold, {} points on average, {}% more than your typical {} points. Risk that large on single trades is out of proportion to the rest of your trading.",
            block.count,
            block.n_with_stops,
            fixed(block.percent, 1),
            fixed(block.avg_excessive, 2),
            fixed(mult, 0),
            fixed(block.mean, 2)
        )
    }
}

/// The Outsized Losses diagnostic.
pub fn outsized(block: &Outsized) -> String {
    if block.total_losing == 0 {
        return "There are no losing trades to analyse.".into();
    }
    if block.count == 0 {
        return format!(
            "No losing trade went beyond your outsized-loss threshold of {} points. Your losses are well contained.",
            fixed(block.threshold, 2)
        );
    }
    let excess = match block.excess {
        super::stats::Number::Int(i) => i as f64,
        super::stats::Number::Float(f) => f,
    };
    let head = format!(
        "{} of your {} losing trades ({}%) went beyond the outsized-loss threshold, on average {} points more than your typical {} point loss, {} points of excess loss in total.",
        block.count,
        block.total_losing,
        fixed(block.percent, 1),
        fixed(block.avg_outsized - block.mean, 1),
        fixed(block.mean, 1),
        fixed(excess, 1)
    );
    if block.mad_cv < 0.2 {
        format!(
            "{head} The other losses vary by only {}, so your loss control is usually sound, with occasional lapses.",
            pct1(block.mad_cv)
        )
    } else {
        format!("{head} Large outliers like these can erase the gains of many good trades.")
    }
}

/// The Revenge Trading diagnostic.
pub fn revenge(block: &Revenge) -> String {
    if block.n == 0 {
        return "There are no trades to analyse.".into();
    }
    if block.count == 0 {
        return format!(
            "None of your {} trades was flagged as a revenge trade. You stay in control after losses.",
            block.n
        );
    }
    let head = format!(
        "{} of your {} trades ({}%) were revenge trades, opened soon after a losing trade.",
        block.count,
        block.n,
        py_repr(block.percent)
    );
    let e_r = block.win_rate * block.avg_win - (1.0 - block.win_rate) * block.avg_loss;
    let e_o = block.win_rate_overall * block.avg_win_overall
        - (1.0 - block.win_rate_overall) * block.avg_loss_overall;
    let pr = (block.win_rate * 100.0) as i64;
    let po = (block.win_rate_overall * 100.0) as i64;
    let body = if block.win_rate > block.win_rate_overall && e_r < e_o {
        format!(
            "They win more often ({pr}% against {po}%) but lose more when they lose ({} against {} points on average), so they cost you {} points in total. The size of the losses matters more than the win rate.",
            fixed(block.avg_loss, 2),
            fixed(block.avg_loss_overall, 2),
            fixed(block.net.abs(), 2)
        )
    } else if block.win_rate > block.win_rate_overall {
        format!(
            "Surprisingly they win more often ({pr}% against {po}%) and have a better expectancy ({} against {}), but trading on emotion remains risky.",
            fixed(e_r, 2),
            fixed(e_o, 2)
        )
    } else if e_r < e_o {
        format!(
            "They win less often ({pr}% against {po}%) and have a lower expectancy ({} against {}); they cost you {} points. Take a break after a loss.",
            fixed(e_r, 2),
            fixed(e_o, 2),
            fixed(block.net.abs(), 2)
        )
    } else {
        format!(
            "Although they win less often ({pr}% against {po}%), their expectancy is better ({} against {}) thanks to larger wins ({} against {} points), but trading on emotion remains risky.",
            fixed(e_r, 2),
            fixed(e_o, 2),
            fixed(block.avg_win, 2),
            fixed(block.avg_win_overall, 2)
        )
    };
    format!("{head} {body}")
}

/// The Risk Sizing Consistency diagnostic.
pub fn risk_sizing(block: &RiskSizing, vr: f64, n: usize) -> String {
    match block.consistent {
        None if block.count == 0 => format!(
            "None of your {n} trades has risk data. Risk sizing can only be assessed for trades with a stop-loss order."
        ),
        None => format!("Only 1 of your {n} trades has risk data; at least 2 are needed to assess risk sizing."),
        Some(true) => format!(
            "Your average risk per trade was {} points with a standard deviation of {} and a variation ratio of {}, below your threshold of {}. Consistent sizing makes your results easier to judge. Well done.",
            fixed(block.mean, 2),
            fixed(block.std, 2),
            fixed(block.ratio, 2),
            fixed(vr, 2)
        ),
        Some(false) => format!(
            "Your risk per trade ranged from {} to {} points, {} on average, with a standard deviation of {} and a variation ratio of {}, above your threshold of {}. Stops placed at very different distances make drawdowns harder to control; aim for a steadier risk per trade.",
            fixed(block.min, 2),
            fixed(block.max, 2),
            fixed(block.mean, 2),
            fixed(block.std, 2),
            fixed(block.ratio, 2),
            fixed(vr, 2)
        ),
    }
}

/// The Breakeven Analysis diagnostic.
pub fn breakeven(block: &Breakeven) -> String {
    if block.n == 0 {
        return "There are no trades to analyse.".into();
    }
    if block.category == Category::InsufficientData {
        return "Without a losing trade the payoff ratio cannot be computed yet.".into();
    }
    let head = format!(
        "Your win rate is {}%, your average win {} points and your average loss {} points, a payoff ratio of {}.",
        py_repr(py_round(block.win_rate * 100.0, 1)),
        fixed(block.avg_win, 2),
        fixed(block.avg_loss, 2),
        py_repr(block.payoff)
    );
    let need = py_repr(py_round(block.breakeven_win_rate * 100.0, 1));
    let exp = fixed(block.expectancy, 2);
    let tail = match block.category {
        Category::ComfortablyAbove => {
            format!("Your expectancy is positive at {exp} per trade: you are comfortably above breakeven. Keep doing what works.")
        }
        Category::JustAbove => format!(
            "Your expectancy is {exp} per trade and breakeven needs a win rate of {need}%: you are just above it, with a thin margin. Small gains in win rate or payoff would help."
        ),
        Category::Around => format!(
            "Your expectancy is {exp} per trade and breakeven needs a win rate of {need}%: you are around breakeven. Improve either your win rate or your payoff."
        ),
        _ => format!(
            "Your expectancy is negative at {exp} per trade and breakeven needs a win rate of {need}%: you are below breakeven. Either the win rate or the payoff ratio has to improve."
        ),
    };
    format!("{head} {tail}")
}

/// H-12: `/api/winrate-payoff` without both wins and losses.
pub fn winrate_needs_both() -> String {
    "Win rate and payoff need at least one winning and one losing trade.".into()
}
