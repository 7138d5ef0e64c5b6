//! `POST /api/analyze`: the upload. The file is checked (present, `.csv`,
//! at most [`MAX_UPLOAD_BYTES`]), parsed, reconstructed and tagged with the
//! request's thresholds, and the reply is written — all before the session
//! changes, so a failed upload keeps the previous data (`docs/quirks.md`,
//! H-5, H-6).

use serde::Serialize;
use tradehabit_shared::envelope::ErrorEnvelope;

use super::json::JsonValue;
use super::query::Query;
use super::rows::TradeRows;
use super::{error, number_param, reply, Facts, Reply, Request, Session, Upload, MAX_UPLOAD_BYTES};
use crate::analysis::pipeline::tag_trades;
use crate::analysis::stats::Tally;
use crate::analysis::trades::{Dataset, TAGS};
use crate::analysis::{self, ParseError};

/// The upload reply: the run's facts and every trade.
#[derive(Serialize)]
struct UploadReply<'a> {
    meta: JsonValue,
    trades: TradeRows<'a>,
}

/// Answers an upload; stores the dataset only when the reply is a 200.
pub(super) fn upload(session: &mut Session, request: &Request<'_>, query: &Query) -> Reply {
    let content = match checked_file(request) {
        Ok(content) => content,
        Err(envelope) => return error(400, envelope),
    };
    let mut data = match analysis::load(content) {
        Ok(data) => data,
        Err(parse_error) => {
            let mut reply = error(
                400,
                located(
                    ErrorEnvelope::new(parse_error.code(), parse_error.message())
                        .with_details(parse_error.details()),
                    &parse_error,
                ),
            );
            if let ParseError::NoTrades { rows, .. } = parse_error {
                reply.facts.rows = Some(rows);
                reply.facts.trades = Some(0);
            }
            return reply;
        }
    };
    let stored = session.thresholds;
    let thresholds = (|| -> Result<(f64, f64, f64), ErrorEnvelope> {
        Ok((
            number_param(query, "sigma", stored.sigma_loss)?,
            number_param(query, "sigma_risk", stored.sigma_risk)?,
            number_param(query, "k", stored.k)?,
        ))
    })();
    let (sigma, sigma_risk, k) = match thresholds {
        Ok(thresholds) => thresholds,
        Err(envelope) => return error(400, envelope),
    };
    tag_trades(&mut data.trades, sigma, k, sigma_risk);
    let body = UploadReply {
        meta: meta(&data, sigma),
        trades: TradeRows(&data),
    };
    let facts = Facts {
        rows: Some(data.rows),
        trades: Some(data.trades.len()),
    };
    let answer = reply(200, &body, facts, query);
    if answer.status == 200 {
        session.data = Some(data);
    }
    answer
}

/// The file part's bytes, or why they cannot be analysed: no part, not a
/// `.csv` name, or over the size limit (`docs/quirks.md`, H-10).
fn checked_file<'a>(request: &Request<'a>) -> Result<&'a [u8], ErrorEnvelope> {
    let Some(Upload::File { filename, content }) = request.upload else {
        return Err(ErrorEnvelope::new("upload.no_file_part", "No file part")
            .with_detail("form field file"));
    };
    if !filename.to_lowercase().ends_with(".csv") {
        return Err(ErrorEnvelope::new(
            "upload.not_csv",
            "TradeHabit only works with the CSV file format.",
        )
        .with_detail("extension: .csv required"));
    }
    if content.len() > MAX_UPLOAD_BYTES {
        return Err(ErrorEnvelope::new(
            "upload.too_large",
            "This file exceeds the 2 MB size limit.",
        )
        .with_detail(format!("limit {MAX_UPLOAD_BYTES} bytes")));
    }
    Ok(content)
}

/// The envelope with the error's file location as data, after the readable
/// details (`docs/errors.md`, "Locations").
fn located(envelope: ErrorEnvelope, error: &ParseError) -> ErrorEnvelope {
    match error.location() {
        Some((row, column)) => envelope.with_location(row, column),
        None => envelope,
    }
}

/// The upload reply's `meta` object.
fn meta(data: &Dataset, sigma: f64) -> JsonValue {
    let tally = Tally::of(&data.trades);
    JsonValue::object([
        ("cleanTradeRate", JsonValue::float(tally.clean_rate())),
        ("csvRows", JsonValue::count(data.rows)),
        ("flaggedTrades", JsonValue::count(tally.flagged)),
        ("mistakeCounts", mistake_counts(&tally)),
        ("sigmaUsed", JsonValue::float(sigma)),
        ("totalMistakes", JsonValue::count(tally.total)),
        ("tradesDetected", JsonValue::count(data.trades.len())),
    ])
}

/// `{tag name: count}` for the tags that occur.
pub(super) fn mistake_counts(tally: &Tally) -> JsonValue {
    JsonValue::Object(
        TAGS.iter()
            .zip(tally.counts)
            .filter(|(_, count)| *count > 0)
            .map(|((_, name), count)| ((*name).to_owned(), JsonValue::count(count)))
            .collect(),
    )
}
