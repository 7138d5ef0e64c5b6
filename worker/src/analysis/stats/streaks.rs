//! Streaks of clean trades or clean days, for the goals.

use std::collections::BTreeMap;

use crate::analysis::trades::{Trade, TAGS};

/// What a streak counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// By trade.
    Trades,
    /// By entry day.
    Days,
}

/// Which trades keep a streak going, reduced to tag bits: an empty `mistake_types` list
/// means "no tag at all"; a non-empty one means "none of the listed tags"
/// (names that are not tags never match).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Clean {
    /// Empty list: any tag breaks the streak.
    NoTag,
    /// Non-empty list: these tag bits break the streak.
    Without(u8),
}

impl Clean {
    /// The predicate for a `mistake_types` list.
    pub fn from_types(types: &[String]) -> Clean {
        if types.is_empty() {
            return Clean::NoTag;
        }
        let mask = TAGS
            .iter()
            .filter(|(_, name)| types.iter().any(|m| m == name))
            .fold(0, |a, (b, _)| a | b);
        Clean::Without(mask)
    }
    /// Whether a trade is clean.
    pub fn is_clean(self, t: &Trade) -> bool {
        match self {
            Clean::NoTag => t.tags == 0,
            Clean::Without(mask) => t.tags & mask == 0,
        }
    }
}

/// Streaks: `(current, best)`, with an optional start day filter
/// (days since 1970-01-01, compared with the entry date). Day streaks
/// ignore calendar gaps (`docs/quirks.md`, E-24).
pub fn streaks(
    trades: &[Trade],
    clean: Clean,
    metric: Metric,
    start_day: Option<i64>,
) -> (usize, usize) {
    let day = |t: &Trade| t.entry_time.div_euclid(86_400);
    let kept = trades
        .iter()
        .filter(|t| start_day.is_none_or(|d| day(t) >= d));
    let seq: Vec<bool> = match metric {
        Metric::Trades => kept.map(|t| clean.is_clean(t)).collect(),
        Metric::Days => {
            let mut days: BTreeMap<i64, bool> = BTreeMap::new();
            for trade in kept {
                let is_clean = clean.is_clean(trade);
                let day_clean = days.entry(day(trade)).or_insert(true);
                *day_clean = *day_clean && is_clean;
            }
            days.into_values().collect()
        }
    };
    let mut cur = 0;
    let mut best = 0;
    for is_clean in seq {
        if is_clean {
            cur += 1;
            best = best.max(cur);
        } else {
            cur = 0;
        }
    }
    (cur, best)
}
