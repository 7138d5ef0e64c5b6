//! Goals: `GET /api/goals` (three built-in streak goals) and
//! `POST /api/goals/calculate` (the caller's goals). A goal value that
//! crashed the legacy gives that goal an `error` member instead; the
//! request stays a 200 (`docs/quirks.md`, H-16). Progress is uncapped and
//! may be negative (E-25).

use std::collections::HashMap;

use tradehabit_shared::envelope::ErrorEnvelope;

use super::json::{self, JsonValue};
use super::query;
use super::settings::read_json_body;
use super::{error, Facts, Reply, Request, Session, NO_TRADES_YET};
use crate::analysis::num::py_round;
use crate::analysis::stats::{streaks, Clean, Metric};
use crate::analysis::trades::Trade;

/// The built-in goals: title, target, the mistakes that break the streak
/// (none listed: any mistake does).
const BUILTIN_GOALS: [(&str, i64, &[&str]); 3] = [
    ("Clean Trades", 50, &[]),
    (
        "Risk Management",
        100,
        &["no stop-loss order", "excessive risk", "outsized loss"],
    ),
    ("Revenge Trades", 100, &["revenge trade"]),
];

/// `GET /api/goals`.
pub(super) fn builtin(trades: &[Trade]) -> JsonValue {
    JsonValue::Array(
        BUILTIN_GOALS
            .iter()
            .map(|(title, target, mistake_types)| {
                let mistake_types: Vec<String> = mistake_types
                    .iter()
                    .map(|name| (*name).to_owned())
                    .collect();
                let (current, best) = streaks(
                    trades,
                    Clean::from_types(&mistake_types),
                    Metric::Trades,
                    None,
                );
                JsonValue::object([
                    ("best_streak", JsonValue::count(best)),
                    ("current_streak", JsonValue::count(current)),
                    ("goal", JsonValue::int(*target)),
                    ("metric", JsonValue::string("trades")),
                    (
                        "progress",
                        JsonValue::float(py_round(current as f64 / *target as f64, 2)),
                    ),
                    ("start_date", JsonValue::Null),
                    ("title", JsonValue::string(*title)),
                ])
            })
            .collect(),
    )
}

/// `POST /api/goals/calculate`: a list of goal objects, or `{"goals": [...]}`.
pub(super) fn calculate(session: &mut Session, request: &Request<'_>) -> Reply {
    let Some(data) = session.data.as_ref() else {
        return error(
            400,
            ErrorEnvelope::new("data.not_uploaded", format!("{NO_TRADES_YET}.")),
        );
    };
    let body = match read_json_body(request) {
        Ok(body) => body,
        Err(envelope) => return error(400, envelope),
    };
    let wrong_shape = || {
        error(
            400,
            ErrorEnvelope::new(
                "goals.wrong_shape",
                "Payload must be a list of goal objects or {\"goals\": [...]}.",
            )
            .with_detail("body: array or {\"goals\": array} expected"),
        )
    };
    let goals = match &body {
        JsonValue::Array(goals) => goals,
        JsonValue::Object(_) => match body.get("goals") {
            Some(JsonValue::Array(goals)) => goals,
            _ => return wrong_shape(),
        },
        _ => return wrong_shape(),
    };
    let mut memo = StreakMemo::new();
    let items: Vec<JsonValue> = goals
        .iter()
        .filter(|goal| matches!(goal, JsonValue::Object(_)))
        .map(|goal| goal_item(&data.trades, goal, &mut memo))
        .collect();
    let reply_body = JsonValue::object([("goals", JsonValue::Array(items))]);
    match json::to_body(&reply_body) {
        Ok(body) => Reply {
            status: 200,
            body,
            headers: Vec::new(),
            facts: Facts {
                rows: None,
                trades: Some(data.trades.len()),
            },
        },
        Err(json::NonFinite) => error(
            400,
            ErrorEnvelope::new("goals.not_finite", "Goal values must be finite numbers."),
        ),
    }
}

/// Streak results already computed for this request: a goal list can be
/// long, but only a few distinct (predicate, metric, start day) occur.
type StreakMemo = HashMap<(Clean, Metric, Option<i64>), (usize, usize)>;

/// A goal's value, or the message of its `error` member.
type GoalField<T> = Result<T, String>;

/// One caller-defined goal.
fn goal_item(trades: &[Trade], goal: &JsonValue, memo: &mut StreakMemo) -> JsonValue {
    let id = goal.get("id").cloned().unwrap_or(JsonValue::Null);
    let title = goal
        .get("title")
        .cloned()
        .unwrap_or_else(|| JsonValue::string(""));
    let fields = (|| -> GoalField<_> {
        let mistake_types = mistake_types(goal)?;
        let (target, target_number) = target(goal)?;
        let (metric, metric_kind) = metric(goal)?;
        let (start_date, start_day) = start_date(goal)?;
        Ok((
            mistake_types,
            target,
            target_number,
            metric,
            metric_kind,
            start_date,
            start_day,
        ))
    })();
    let (mistake_types, target, target_number, metric, metric_kind, start_date, start_day) =
        match fields {
            Ok(fields) => fields,
            Err(message) => {
                return JsonValue::object([
                    ("error", JsonValue::string(message)),
                    ("id", id),
                    ("title", title),
                ])
            }
        };
    let key = (Clean::from_types(&mistake_types), metric_kind, start_day);
    let (current, best) = *memo
        .entry(key)
        .or_insert_with(|| streaks(trades, key.0, key.1, key.2));
    JsonValue::object([
        ("best_streak", JsonValue::count(best)),
        ("current_streak", JsonValue::count(current)),
        ("goal", target),
        ("id", id),
        ("metric", metric),
        (
            "progress",
            JsonValue::float(py_round(current as f64 / target_number, 2)),
        ),
        ("start_date", start_date.unwrap_or(JsonValue::Null)),
        ("title", title),
    ])
}

/// `mistake_types` as the legacy read it: falsy → none; a list → its
/// strings (anything else in it matches no mistake); a string → its
/// characters; an object → its keys; anything else crashed the legacy.
fn mistake_types(goal: &JsonValue) -> GoalField<Vec<String>> {
    Ok(match goal.get("mistake_types") {
        None => Vec::new(),
        Some(value) if !value.is_truthy() => Vec::new(),
        Some(JsonValue::Array(items)) => items
            .iter()
            .map(|item| match item {
                JsonValue::String(name) => name.clone(),
                _ => "\u{0}".into(),
            })
            .collect(),
        Some(JsonValue::String(text)) => text.chars().map(String::from).collect(),
        Some(JsonValue::Object(members)) => members.iter().map(|(key, _)| key.clone()).collect(),
        Some(other) => {
            return Err(format!(
                "Invalid mistake_types {}: expected a list of mistake names.",
                other.py_repr()
            ))
        }
    })
}

/// The target as given (the first truthy of `target`, `goal`, else 1) and
/// as a number.
fn target(goal: &JsonValue) -> GoalField<(JsonValue, f64)> {
    let target = [goal.get("target"), goal.get("goal")]
        .into_iter()
        .flatten()
        .find(|value| value.is_truthy())
        .cloned()
        .unwrap_or(JsonValue::Int(1));
    let number = match &target {
        JsonValue::Int(value) => Some(*value as f64),
        JsonValue::BigInt(digits) => digits.parse::<f64>().ok(),
        JsonValue::Float(value) if value.is_finite() => Some(*value),
        JsonValue::Bool(true) => Some(1.0),
        _ => None,
    };
    match number {
        Some(number) => Ok((target, number)),
        None => Err(format!(
            "Invalid target {}: expected a number.",
            target.py_repr()
        )),
    }
}

/// The metric as given (default `trades`) and what it counts.
fn metric(goal: &JsonValue) -> GoalField<(JsonValue, Metric)> {
    let metric = goal
        .get("metric")
        .cloned()
        .unwrap_or_else(|| JsonValue::string("trades"));
    let kind = match &metric {
        JsonValue::String(name) if name == "trades" => Metric::Trades,
        JsonValue::String(name) if name == "days" => Metric::Days,
        other => {
            return Err(format!(
                "Unsupported metric {}. Expected 'trades' or 'days'.",
                other.py_repr()
            ))
        }
    };
    Ok((metric, kind))
}

/// The start date as given (the first truthy of `start_date`, `startDate`)
/// and its day number; a date Python cannot read is ignored.
fn start_date(goal: &JsonValue) -> GoalField<(Option<JsonValue>, Option<i64>)> {
    let given = [goal.get("start_date"), goal.get("startDate")]
        .into_iter()
        .flatten()
        .find(|value| value.is_truthy())
        .cloned();
    let day = match &given {
        None => None,
        Some(JsonValue::String(text)) => query::fromisoformat_day(text),
        Some(other) => {
            return Err(format!(
                "Invalid start_date {}: expected an ISO date string.",
                other.py_repr()
            ))
        }
    };
    Ok((given, day))
}
