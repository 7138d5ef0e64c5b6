//! The legacy JSON API as pure functions over one principal's [`Session`]:
//! route, validate parameters and bodies, run the engine, render the reply.
//! No sockets, no clocks.
//!
//! The HTTP layer (the worker's server) turns a request into a [`Request`]
//! — for `POST /api/analyze` it has already pulled the first `file` part out
//! of the multipart body into an [`Upload`] — and writes the [`Reply`] back.
//! Which methods and paths exist comes from the shared route table
//! ([`tradehabit_shared::routes`]); everything else the legacy contract says
//! about parameters, bodies, status codes and JSON lives here:
//!
//! * `analyze` — the upload: file checks, parse, tag, the upload reply;
//! * `reports` — the read-only endpoints (summary, trades, losses, …);
//! * `settings` — the thresholds, read and changed;
//! * `goals` — the built-in and the user-defined goals;
//! * `rows` — the trade object shared by the upload reply and `/api/trades`;
//! * `query` — query strings, paths and dates as Werkzeug and Python read
//!   them; [`json`] — JSON as Python reads and Flask writes it.
//!
//! Deliberate differences from the legacy, each described with its id in
//! `docs/quirks.md`: failed uploads answer 400 and keep the previous data
//! (H-5, H-6, E-20…E-22); bad and non-finite query parameters answer 400
//! (H-7); settings are validated as a whole before anything changes (H-4);
//! bad goals get an `error` item (H-16); `/api/revenge` answers its
//! intended shape (H-1); no `NaN` or `Infinity` is ever written.

mod analyze;
mod goals;
pub mod json;
mod query;
mod reports;
mod rows;
mod settings;

use serde::Serialize;
use tradehabit_shared::envelope::ErrorEnvelope;
use tradehabit_shared::routes::{self, Endpoint};

use crate::analysis::num::py_float;
use crate::analysis::pipeline::Thresholds;
use crate::analysis::trades::Dataset;
use json::JsonValue;
use query::Query;

pub use settings::UnknownSettings;
pub use tradehabit_shared::routes::MAX_UPLOAD_BYTES;

/// The `file` part of an upload, as the HTTP layer found it.
#[derive(Debug, Clone, Copy)]
pub enum Upload<'a> {
    /// No part named `file` with a filename (includes non-multipart bodies
    /// and malformed multipart).
    Missing,
    /// The first `file` part. `content` may be cut short at
    /// `MAX_UPLOAD_BYTES + 1` bytes by the HTTP layer: anything longer than
    /// `MAX_UPLOAD_BYTES` is refused as too large either way.
    File {
        /// The part's filename as sent.
        filename: &'a str,
        /// The part's bytes.
        content: &'a [u8],
    },
}

/// One request, as the HTTP layer hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The path without query string, e.g. `/api/losses`.
    pub path: &'a str,
    /// The raw query string without `?` (percent-encoded), or `""`.
    pub query: &'a str,
    /// The request's `Content-Type`, if any.
    pub content_type: Option<&'a str>,
    /// The raw body (empty for an upload, whose content is in `upload`).
    pub body: &'a [u8],
    /// For `POST /api/analyze`: the file part. `None` on every other route.
    pub upload: Option<Upload<'a>>,
}

impl<'a> Request<'a> {
    /// `POST /api/analyze?{query}` carrying `content` as the `file` part
    /// named `filename`, as the HTTP layer hands over an upload.
    pub fn upload(filename: &'a str, content: &'a [u8], query: &'a str) -> Self {
        Request {
            method: "POST",
            path: routes::ANALYZE_PATH,
            query,
            content_type: Some("multipart/form-data"),
            body: &[],
            upload: Some(Upload::File { filename, content }),
        }
    }
}

/// What to send back.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// JSON body, compact, keys sorted, ending with `\n`.
    pub body: Vec<u8>,
    /// Extra headers (e.g. `Allow` on a 405).
    pub headers: Vec<(&'static str, String)>,
    /// Counts for the request log line; never contents.
    pub facts: Facts,
}

/// Non-sensitive counts about a reply, for logging.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts {
    /// CSV data rows parsed (uploads only).
    pub rows: Option<usize>,
    /// Trades reconstructed or served.
    pub trades: Option<usize>,
}

/// One principal's data: thresholds, the last good upload's orders and
/// trades with their tags.
///
/// Of the order table only what re-tagging needs is kept: every trade's
/// stop-loss verdict and risk points, which depend on the orders but on no
/// threshold, are computed once at upload time and stored with the trade.
#[derive(Debug, Clone, Default)]
pub struct Session {
    thresholds: Thresholds,
    data: Option<Dataset>,
    unknown_settings: UnknownSettings,
}

impl Session {
    /// A fresh session with the default thresholds and no trades; unknown
    /// settings keys are refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh session that treats unknown settings keys as `unknown`
    /// says (the legacy ignored them).
    pub fn with_unknown_settings(unknown: UnknownSettings) -> Self {
        Self {
            unknown_settings: unknown,
            ..Self::default()
        }
    }

    /// An estimate of the heap bytes this session holds, for the worker's
    /// total-bytes cap.
    pub fn held_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.data.as_ref().map_or(0, Dataset::held_bytes)
    }

    /// The current thresholds.
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// The number of trades held (0 before a good upload).
    pub fn trade_count(&self) -> usize {
        self.data.as_ref().map_or(0, |data| data.trades.len())
    }

    /// The log facts of a reply that served this session's trades.
    fn facts(&self) -> Facts {
        Facts {
            rows: None,
            trades: self.data.as_ref().map(|data| data.trades.len()),
        }
    }
}

/// The guard message of the read endpoints before any good upload (the
/// goals calculator adds a full stop, `docs/quirks.md` H-11).
const NO_TRADES_YET: &str = "No trades have been analyzed yet";
/// The health endpoint's sentence (`docs/quirks.md`, H-14).
const HEALTH_SENTENCE: &str = "Nuh worry yuhself, mi bredda. Everyting crisp.";

/// The `Allow` header for a path's methods, as Werkzeug writes it: `HEAD`
/// wherever `GET` is allowed, `OPTIONS` always, sorted.
fn allow_header(methods: &[&str]) -> String {
    let mut all: Vec<&str> = methods.to_vec();
    if methods.contains(&"GET") {
        all.push("HEAD");
    }
    all.push("OPTIONS");
    all.sort_unstable();
    all.join(", ")
}

/// Answers one request against one principal's session.
pub fn handle(session: &mut Session, request: Request<'_>) -> Reply {
    let path = query::percent_decode_path(request.path);
    let methods: Vec<&str> = routes::on_path(&path).map(|route| route.method).collect();
    if methods.is_empty() {
        return error(
            404,
            ErrorEnvelope::new(
                "route.not_found",
                "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.",
            ),
        );
    }
    // Werkzeug upper-cases the method before routing.
    let method = request.method.to_ascii_uppercase();
    if method == "OPTIONS" {
        return Reply {
            status: 200,
            body: Vec::new(),
            headers: vec![("Allow", allow_header(&methods))],
            facts: Facts::default(),
        };
    }
    let effective = if method == "HEAD" && methods.contains(&"GET") {
        "GET"
    } else {
        method.as_str()
    };
    let Some(route) = routes::find(effective, &path) else {
        let mut reply = error(
            405,
            ErrorEnvelope::new(
                "route.method_not_allowed",
                "The method is not allowed for the requested URL.",
            ),
        );
        reply.headers.push(("Allow", allow_header(&methods)));
        return reply;
    };
    let query = Query::parse(request.query);
    let body = match (route.endpoint, route.method) {
        (Endpoint::Analyze, _) => return analyze::upload(session, &request, &query),
        (Endpoint::Settings, "GET") => settings::thresholds_json(&session.thresholds),
        (Endpoint::Settings, _) => return settings::change(session, &request),
        (Endpoint::GoalsCalculate, _) => return goals::calculate(session, &request),
        (Endpoint::Health, _) => {
            JsonValue::object([("Status", JsonValue::string(HEALTH_SENTENCE))])
        }
        (Endpoint::Session, _) => {
            *session = Session::with_unknown_settings(session.unknown_settings);
            JsonValue::object([("status", JsonValue::string("OK"))])
        }
        (endpoint, _) => {
            let Some(data) = session.data.as_ref() else {
                return error(400, ErrorEnvelope::new("data.not_uploaded", NO_TRADES_YET));
            };
            return match reports::report(endpoint, data, &session.thresholds, &query) {
                Ok(report) => reply(200, &report, session.facts(), &query),
                Err(envelope) => error(400, envelope),
            };
        }
    };
    reply(200, &body, session.facts(), &query)
}

/// An error reply with the envelope as its body.
fn error(status: u16, envelope: ErrorEnvelope) -> Reply {
    Reply {
        status,
        body: envelope.to_bytes(),
        headers: Vec::new(),
        facts: Facts::default(),
    }
}

/// A reply with `body` written as JSON, or a 400 when a number in it is not
/// finite.
fn reply(status: u16, body: &impl Serialize, facts: Facts, query: &Query) -> Reply {
    match json::to_body(body) {
        Ok(body) => Reply {
            status,
            body,
            headers: Vec::new(),
            facts,
        },
        Err(json::NonFinite) => {
            // Finite inputs can still overflow (e.g. sigma=1e308): never
            // write NaN/Infinity, say which parameters were given instead.
            let details = query
                .names()
                .map(|name| format!("parameter {name}"))
                .collect();
            error(
                400,
                ErrorEnvelope::new(
                    "query.result_overflow",
                    "These parameters produce numbers too large to represent; use smaller values.",
                )
                .with_details(details),
            )
        }
    }
}

/// Reads a numeric query parameter like Python's `float()` (first
/// occurrence), with the rule of `docs/quirks.md` H-7: non-numeric and
/// non-finite values are a 400 naming the parameter.
fn number_param(query: &Query, name: &str, default: f64) -> Result<f64, ErrorEnvelope> {
    let Some(text) = query.first(name) else {
        return Ok(default);
    };
    match py_float(text) {
        Some(value) if value.is_finite() => Ok(value),
        Some(_) => Err(ErrorEnvelope::new(
            "query.not_finite",
            format!("Query parameter '{name}' must be a finite number."),
        )
        .with_detail(format!("parameter {name}"))),
        None => Err(ErrorEnvelope::new(
            "query.not_a_number",
            format!("Query parameter '{name}' must be a number."),
        )
        .with_detail(format!("parameter {name}"))),
    }
}
