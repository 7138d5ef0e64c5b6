//! `/api/settings`: the four thresholds, read (`GET`) and changed (`POST`).
//! A change is validated as a whole before anything is stored, and then
//! re-tags the stored trades (`docs/quirks.md`, H-2, H-3, H-4).

use tradehabit_shared::envelope::ErrorEnvelope;

use super::json::{self, JsonValue};
use super::query::Query;
use super::{error, reply, Reply, Request, Session};
use crate::analysis::num::py_float;
use crate::analysis::pipeline::{tag_trades, Thresholds};

/// What `POST /api/settings` does with a key that is not one of the four
/// thresholds (`docs/quirks.md`, H-19).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnknownSettings {
    /// 400 `settings.unknown_key` naming the keys; nothing changes. The
    /// default: a typo (`sigma`, `Vr`) must not pass as a no-op.
    #[default]
    Refuse,
    /// The legacy behaviour: the key is ignored (worker flag
    /// `--legacy-settings-keys`).
    Ignore,
}

/// At most this many unknown keys are named in `details`.
const MAX_NAMED_KEYS: usize = 8;

/// At most this many characters of an unknown key are echoed.
const MAX_KEY_ECHO_CHARS: usize = 64;

/// The thresholds as the API writes them.
pub(super) fn thresholds_json(thresholds: &Thresholds) -> JsonValue {
    JsonValue::object([
        ("k", JsonValue::float(thresholds.k)),
        ("sigma_loss", JsonValue::float(thresholds.sigma_loss)),
        ("sigma_risk", JsonValue::float(thresholds.sigma_risk)),
        ("vr", JsonValue::float(thresholds.vr)),
    ])
}

/// Whether a Content-Type is JSON for Flask (`application/json` or
/// `application/*+json`).
fn is_json_type(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return false;
    };
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// The request's JSON body; a JSON content type and a non-null document
/// are required.
pub(super) fn read_json_body(request: &Request<'_>) -> Result<JsonValue, ErrorEnvelope> {
    let invalid = || {
        ErrorEnvelope::new("body.invalid_json", "Request body must be valid JSON.")
            .with_detail("body: JSON expected")
    };
    if !is_json_type(request.content_type) {
        return Err(invalid());
    }
    match json::parse(request.body) {
        Some(JsonValue::Null) | None => Err(invalid()),
        Some(value) => Ok(value),
    }
}

/// A threshold value as Python's `float()` would take it, restricted by
/// `docs/quirks.md` H-4: JSON numbers and numeric strings; no booleans, no
/// NaN/inf.
fn threshold_value(value: &JsonValue) -> Option<f64> {
    let number = match value {
        JsonValue::Int(value) => *value as f64,
        JsonValue::BigInt(digits) => digits.parse::<f64>().ok()?,
        JsonValue::Float(value) => *value,
        JsonValue::String(text) => py_float(text)?,
        _ => return None,
    };
    number.is_finite().then_some(number)
}

/// The refusal of unknown settings keys: each named (shortened), at most
/// [`MAX_NAMED_KEYS`] of them.
fn unknown_keys(keys: &[&str]) -> ErrorEnvelope {
    let echo = |key: &str| {
        let mut short: String = key.chars().take(MAX_KEY_ECHO_CHARS).collect();
        if short.len() < key.len() {
            short.push('…');
        }
        short
    };
    let mut details: Vec<String> = keys
        .iter()
        .take(MAX_NAMED_KEYS)
        .map(|key| format!("key {}", echo(key)))
        .collect();
    if keys.len() > MAX_NAMED_KEYS {
        details.push(format!("and {} more", keys.len() - MAX_NAMED_KEYS));
    }
    ErrorEnvelope::new(
        "settings.unknown_key",
        format!(
            "Unknown setting '{}': the settings are k, sigma_loss, sigma_risk and vr. Nothing was changed.",
            echo(keys[0])
        ),
    )
    .with_details(details)
}

/// `POST /api/settings`: all given thresholds or none.
pub(super) fn change(session: &mut Session, request: &Request<'_>) -> Reply {
    let body = match read_json_body(request) {
        Ok(body) => body,
        Err(envelope) => return error(400, envelope),
    };
    let JsonValue::Object(members) = body else {
        return error(
            400,
            ErrorEnvelope::new(
                "settings.not_an_object",
                "Settings must be a JSON object of thresholds.",
            )
            .with_detail("body: object expected"),
        );
    };
    let mut updated: Vec<(&'static str, f64)> = Vec::new();
    let mut invalid: Vec<&'static str> = Vec::new();
    let mut unknown: Vec<&str> = Vec::new();
    for (key, value) in &members {
        let name: &'static str = match key.as_str() {
            "k" => "k",
            "sigma_loss" => "sigma_loss",
            "sigma_risk" => "sigma_risk",
            "vr" => "vr",
            other => {
                unknown.push(other);
                continue;
            }
        };
        match threshold_value(value) {
            Some(number) => updated.push((name, number)),
            None => invalid.push(name),
        }
    }
    if session.unknown_settings == UnknownSettings::Refuse && !unknown.is_empty() {
        return error(400, unknown_keys(&unknown));
    }
    if let Some(first) = invalid.first() {
        return error(
            400,
            ErrorEnvelope::new(
                "settings.invalid_value",
                format!("Value for '{first}' must be a finite number. Nothing was changed."),
            )
            .with_details(invalid.iter().map(|name| format!("key {name}")).collect()),
        );
    }
    let thresholds = &mut session.thresholds;
    for (name, value) in &updated {
        match *name {
            "k" => thresholds.k = *value,
            "sigma_loss" => thresholds.sigma_loss = *value,
            "sigma_risk" => thresholds.sigma_risk = *value,
            _ => thresholds.vr = *value,
        }
    }
    let thresholds = session.thresholds;
    if let Some(data) = session.data.as_mut() {
        tag_trades(
            &mut data.trades,
            thresholds.sigma_loss,
            thresholds.k,
            thresholds.sigma_risk,
        );
    }
    let body = JsonValue::object([
        ("status", JsonValue::string("OK")),
        ("thresholds", thresholds_json(&thresholds)),
        (
            "updated",
            JsonValue::Object(
                updated
                    .iter()
                    .map(|(name, value)| ((*name).to_owned(), JsonValue::float(*value)))
                    .collect(),
            ),
        ),
    ]);
    reply(200, &body, session.facts(), &Query::default())
}
