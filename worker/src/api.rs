//! The legacy JSON API (`spec/legacy-api.md`) as pure functions over one
//! principal's [`Session`].
//!
//! The HTTP layer (the worker's server) turns a request into a [`Request`]
//! — for `POST /api/analyze` it has already pulled the first `file` part out
//! of the multipart body into an [`Upload`] — and writes the [`Reply`] back.
//! Everything the legacy contract says about paths, methods, parameters,
//! bodies, status codes and JSON lives here.
//!
//! Deliberate differences from the legacy (decisions.md): failed uploads
//! answer 400 and keep the previous data (H-5, H-6, E-20…E-22); bad and
//! non-finite query parameters answer 400 (H-7); settings are validated as
//! a whole before anything changes (H-4); bad goals get an `error` item
//! (H-16); `/api/revenge` answers its intended shape (H-1); no `NaN` or
//! `Infinity` is ever written.

pub mod json;
mod query;

use tradehabit_shared::envelope::ErrorEnvelope;

use crate::analysis::num::{py_float, py_round};
use crate::analysis::parse::{iso, OrderId};
use crate::analysis::pipeline::{revenge_flags, tag_trades, Thresholds};
use crate::analysis::stats::{
    risk_variation_flag, streaks, Breakeven, Clean, Excessive, Metric, Number, Outsized, Revenge,
    RiskSizing, StopLoss, Tally,
};
use crate::analysis::text::{self, SummaryVariant};
use crate::analysis::trades::{Dataset, Trade, TAGS};
use json::J;
use query::Query;

/// The largest upload the legacy backend accepts: 2 × 1024 × 1024 bytes
/// (exactly this many pass).
pub const MAX_UPLOAD_BYTES: usize = 2 * 1024 * 1024;

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
            path: "/api/analyze",
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
}

impl Session {
    /// A fresh session with the default thresholds and no trades.
    pub fn new() -> Self {
        Self::default()
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
        self.data.as_ref().map_or(0, |d| d.trades.len())
    }
}

const GUARD: &str = "No trades have been analyzed yet";
const HEALTH: &str = "Nuh worry yuhself, mi bredda. Everyting crisp.";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Analyze,
    Summary,
    Trades,
    Losses,
    Revenge,
    RiskSizing,
    ExcessiveRisk,
    StopLoss,
    WinratePayoff,
    Insights,
    Goals,
    GoalsCalculate,
    Settings,
    Health,
    Session,
}

fn route(path: &str) -> Option<(Route, &'static [&'static str])> {
    const GET: &[&str] = &["GET"];
    const POST: &[&str] = &["POST"];
    Some(match path {
        "/api/analyze" => (Route::Analyze, POST),
        "/api/summary" => (Route::Summary, GET),
        "/api/trades" => (Route::Trades, GET),
        "/api/losses" => (Route::Losses, GET),
        "/api/revenge" => (Route::Revenge, GET),
        "/api/risk-sizing" => (Route::RiskSizing, GET),
        "/api/excessive-risk" => (Route::ExcessiveRisk, GET),
        "/api/stop-loss" => (Route::StopLoss, GET),
        "/api/winrate-payoff" => (Route::WinratePayoff, GET),
        "/api/insights" => (Route::Insights, GET),
        "/api/goals" => (Route::Goals, GET),
        "/api/goals/calculate" => (Route::GoalsCalculate, POST),
        "/api/settings" => (Route::Settings, &["GET", "POST"]),
        "/api/health" => (Route::Health, GET),
        "/api/session" => (Route::Session, &["DELETE"]),
        _ => return None,
    })
}

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
    let Some((r, methods)) = route(&path) else {
        return error(
            404,
            ErrorEnvelope::new(
                "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.",
            ),
        );
    };
    // Werkzeug upper-cases the method before routing.
    let method_upper = request.method.to_ascii_uppercase();
    let method = method_upper.as_str();
    if method == "OPTIONS" {
        return Reply {
            status: 200,
            body: Vec::new(),
            headers: vec![("Allow", allow_header(methods))],
            facts: Facts::default(),
        };
    }
    let effective = if method == "HEAD" && methods.contains(&"GET") {
        "GET"
    } else {
        method
    };
    if !methods.contains(&effective) {
        let mut reply = error(
            405,
            ErrorEnvelope::new("The method is not allowed for the requested URL."),
        );
        reply.headers.push(("Allow", allow_header(methods)));
        return reply;
    }
    let q = Query::parse(request.query);
    let result = match (r, effective) {
        (Route::Analyze, _) => return analyze(session, &request, &q),
        (Route::Settings, "GET") => Ok(thresholds_json(&session.thresholds)),
        (Route::Settings, _) => return post_settings(session, &request),
        (Route::Health, _) => Ok(J::obj([("Status", J::s(HEALTH))])),
        (Route::Session, _) => {
            *session = Session::new();
            Ok(J::obj([("status", J::s("OK"))]))
        }
        (Route::GoalsCalculate, _) => return goals_calculate(session, &request),
        _ => {
            let Some(data) = session.data.as_ref() else {
                return error(400, ErrorEnvelope::new(GUARD));
            };
            analytics(r, data, &session.thresholds, &q)
        }
    };
    let trades = session.data.as_ref().map(|d| d.trades.len());
    match result {
        Ok(j) => reply(200, &j, Facts { rows: None, trades }, &q),
        Err(e) => error(400, e),
    }
}

fn error(status: u16, env: ErrorEnvelope) -> Reply {
    Reply {
        status,
        body: env.to_bytes(),
        headers: Vec::new(),
        facts: Facts::default(),
    }
}

fn reply(status: u16, j: &J, facts: Facts, q: &Query) -> Reply {
    match j.to_body() {
        Ok(body) => Reply {
            status,
            body,
            headers: Vec::new(),
            facts,
        },
        Err(_) => {
            // Finite inputs can still overflow (e.g. sigma=1e308): never
            // write NaN/Infinity, say which parameters were given instead.
            let details = q.names().map(|n| format!("parameter {n}")).collect();
            error(
                400,
                ErrorEnvelope::new(
                    "These parameters produce numbers too large to represent; use smaller values.",
                )
                .with_details(details),
            )
        }
    }
}

/// Reads a numeric query parameter like Python's `float()` (first
/// occurrence), with our H-7 rule: non-numeric and non-finite values are a
/// 400 naming the parameter.
fn param(q: &Query, name: &str, default: f64) -> Result<f64, ErrorEnvelope> {
    match q.first(name) {
        None => Ok(default),
        Some(text) => match py_float(text) {
            Some(v) if v.is_finite() => Ok(v),
            Some(_) => Err(ErrorEnvelope::new(format!(
                "Query parameter '{name}' must be a finite number."
            ))
            .with_detail(format!("parameter {name}"))),
            None => Err(
                ErrorEnvelope::new(format!("Query parameter '{name}' must be a number."))
                    .with_detail(format!("parameter {name}")),
            ),
        },
    }
}

fn thresholds_json(t: &Thresholds) -> J {
    J::obj([
        ("k", J::f(t.k)),
        ("sigma_loss", J::f(t.sigma_loss)),
        ("sigma_risk", J::f(t.sigma_risk)),
        ("vr", J::f(t.vr)),
    ])
}

fn order_id_json(id: &OrderId) -> J {
    match id {
        OrderId::Null => J::Null,
        OrderId::Int(i) => J::Int(*i),
        OrderId::Float(f) => J::f(*f),
        OrderId::Str(s) => J::s(s.as_ref()),
    }
}

/// A trade object (analysis.md §10), written directly: keys in sorted
/// order, finite numbers only (prices and P&L are validated at upload).
fn trade_json(d: &Dataset, t: &Trade) -> J {
    use std::fmt::Write;
    let mut o = String::with_capacity(360);
    let f = |x: f64| crate::analysis::num::py_repr(x);
    let _ = write!(
        o,
        "{{\"entryPrice\":{},\"entryQty\":{},\"entryTime\":\"{}\",\"exitOrderId\":",
        f(t.entry_price),
        t.entry_qty,
        iso(t.entry_time)
    );
    match &t.exit_order_id {
        OrderId::Null => o.push_str("null"),
        OrderId::Int(i) => {
            let _ = write!(o, "{i}");
        }
        OrderId::Float(x) if x.is_finite() => o.push_str(&f(*x)),
        OrderId::Float(_) => o.push_str("null"),
        OrderId::Str(s) => json::write_str(s, &mut o),
    }
    let _ = write!(
        o,
        ",\"exitPrice\":{},\"exitQty\":{},\"exitTime\":\"{}\",\"id\":\"{}\",\"mistakes\":[",
        f(t.exit_price),
        t.exit_qty,
        iso(t.exit_time),
        t.id
    );
    for (i, name) in t.tag_names().enumerate() {
        if i > 0 {
            o.push(',');
        }
        json::write_str(name, &mut o);
    }
    let _ = write!(
        o,
        "],\"pnl\":{},\"pointsLost\":{},\"riskPoints\":",
        f(t.pnl),
        f(t.points_lost)
    );
    match t.risk_points {
        Some(r) => o.push_str(&f(r)),
        None => o.push_str("null"),
    }
    o.push_str(",\"side\":");
    json::write_str(d.side_text(t.side), &mut o);
    o.push_str(",\"symbol\":");
    json::write_str(d.symbol(t), &mut o);
    o.push('}');
    J::Raw(o)
}

fn mistake_counts(t: &Tally) -> J {
    J::Obj(
        TAGS.iter()
            .zip(t.counts)
            .filter(|(_, c)| *c > 0)
            .map(|((_, name), c)| (name.to_string(), J::i(c as i64)))
            .collect(),
    )
}

fn analyze(session: &mut Session, req: &Request<'_>, q: &Query) -> Reply {
    let (filename, content) = match req.upload {
        Some(Upload::File { filename, content }) => (filename, content),
        _ => {
            return error(
                400,
                ErrorEnvelope::new("No file part").with_detail("form field file"),
            )
        }
    };
    if !filename.to_lowercase().ends_with(".csv") {
        return error(
            400,
            ErrorEnvelope::new("TradeHabit only works with the CSV file format.")
                .with_detail("extension: .csv required"),
        );
    }
    if content.len() > MAX_UPLOAD_BYTES {
        return error(
            400,
            ErrorEnvelope::new("This file exceeds the 2 MB size limit.")
                .with_detail(format!("limit {MAX_UPLOAD_BYTES} bytes")),
        );
    }
    let mut data = match crate::analysis::load(content) {
        Ok(d) => d,
        Err(e) => {
            let mut r = error(
                400,
                ErrorEnvelope::new(e.message()).with_details(e.details()),
            );
            if let crate::analysis::ParseError::NoTrades { rows, .. } = e {
                r.facts.rows = Some(rows);
                r.facts.trades = Some(0);
            }
            return r;
        }
    };
    let th = session.thresholds;
    let params = (|| -> Result<(f64, f64, f64), ErrorEnvelope> {
        Ok((
            param(q, "sigma", th.sigma_loss)?,
            param(q, "sigma_risk", th.sigma_risk)?,
            param(q, "k", th.k)?,
        ))
    })();
    let (sigma, sigma_risk, k) = match params {
        Ok(p) => p,
        Err(e) => return error(400, e),
    };
    tag_trades(&mut data.trades, sigma, k, sigma_risk);
    let tally = Tally::of(&data.trades);
    let body = J::obj([
        (
            "meta",
            J::obj([
                ("cleanTradeRate", J::f(tally.clean_rate())),
                ("csvRows", J::i(data.rows as i64)),
                ("flaggedTrades", J::i(tally.flagged as i64)),
                ("mistakeCounts", mistake_counts(&tally)),
                ("sigmaUsed", J::f(sigma)),
                ("totalMistakes", J::i(tally.total as i64)),
                ("tradesDetected", J::i(data.trades.len() as i64)),
            ]),
        ),
        (
            "trades",
            J::Arr(data.trades.iter().map(|t| trade_json(&data, t)).collect()),
        ),
    ]);
    let facts = Facts {
        rows: Some(data.rows),
        trades: Some(data.trades.len()),
    };
    let out = reply(200, &body, facts, q);
    if out.status == 200 {
        session.data = Some(data);
    }
    out
}

fn analytics(r: Route, d: &Dataset, th: &Thresholds, q: &Query) -> Result<J, ErrorEnvelope> {
    let trades = &d.trades;
    Ok(match r {
        Route::Summary => {
            let tally = Tally::of(trades);
            let be = Breakeven::of(trades);
            let (cur, best) = streaks(trades, Clean::NoTag, Metric::Trades, None);
            let win_rate2 = py_round(be.win_rate, 2);
            let shortfall = be.required_wr_adj.is_some_and(|adj| win_rate2 < adj);
            let risk_flag = risk_variation_flag(trades, th.vr);
            J::obj([
                ("average_loss", J::f(be.avg_loss)),
                ("average_win", J::f(be.avg_win)),
                ("clean_trade_rate", J::f(tally.clean_rate())),
                (
                    "diagnostic_text",
                    J::s(text::summary(
                        &tally,
                        SummaryVariant::Summary {
                            shortfall,
                            risk_flag,
                        },
                    )),
                ),
                ("expectancy", J::f(be.expectancy)),
                ("flagged_trades", J::i(tally.flagged as i64)),
                ("loss_count", J::i(be.losses as i64)),
                ("mistake_counts", mistake_counts(&tally)),
                ("payoff_ratio", J::f(be.payoff)),
                ("required_wr_adj", J::of(be.required_wr_adj)),
                ("streak_current", J::i(cur as i64)),
                ("streak_record", J::i(best as i64)),
                ("total_mistakes", J::i(tally.total as i64)),
                ("total_trades", J::i(trades.len() as i64)),
                ("win_count", J::i(be.wins as i64)),
                ("win_rate", J::f(win_rate2)),
            ])
        }
        Route::Trades => {
            let start = trades.iter().map(|t| t.entry_time).min().unwrap_or(0);
            let end = trades.iter().map(|t| t.exit_time).max().unwrap_or(0);
            J::obj([
                (
                    "date_range",
                    J::obj([("end", J::s(iso(end))), ("start", J::s(iso(start)))]),
                ),
                (
                    "trades",
                    J::Arr(trades.iter().map(|t| trade_json(d, t)).collect()),
                ),
            ])
        }
        Route::Losses => {
            let sigma = param(q, "sigma", th.sigma_loss)?;
            let symbol = q.first("symbol");
            let sel: Vec<&Trade> = trades
                .iter()
                .filter(|t| t.is_loss() && symbol.is_none_or(|s| d.symbol(t) == s))
                .collect();
            let o = Outsized::of(sel.iter().copied(), sigma);
            let losses = sel
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    J::obj([
                        ("entryTime", J::s(iso(t.entry_time))),
                        ("exitOrderId", order_id_json(&t.exit_order_id)),
                        ("exitQty", J::i(t.exit_qty)),
                        ("hasMistake", J::Bool(t.points_lost > o.threshold)),
                        ("lossIndex", J::i(i as i64 + 1)),
                        ("pointsLost", J::f(t.points_lost)),
                        ("side", J::s(d.side_text(t.side))),
                        ("symbol", J::s(d.symbol(t))),
                        ("tradeId", J::s(t.id.to_string())),
                    ])
                })
                .collect();
            J::obj([
                ("count", J::i(o.count as i64)),
                ("diagnostic", J::s(text::outsized(&o))),
                ("excessLossPoints", number(o.excess)),
                ("losses", J::Arr(losses)),
                ("meanPointsLost", J::f(o.mean)),
                ("percentage", J::f(o.percent)),
                ("sigmaUsed", J::f(sigma)),
                ("stdDevPointsLost", J::f(o.std)),
                ("symbolFiltered", symbol.map_or(J::Null, J::s)),
                ("thresholdPointsLost", J::f(o.threshold)),
            ])
        }
        Route::Revenge => {
            let k = param(q, "k", th.k)?;
            let flags = revenge_flags(trades, k);
            let rv = Revenge::of(trades, &flags);
            J::obj([
                ("average_loss_revenge", J::f(rv.avg_loss)),
                ("average_win_revenge", J::f(rv.avg_win)),
                ("diagnostic", J::s(text::revenge(&rv))),
                ("net_pnl_per_trade_revenge", J::f(rv.net_per_trade)),
                ("net_pnl_revenge", J::f(rv.net)),
                ("overall_payoff_ratio", J::f(rv.payoff_overall)),
                ("overall_win_rate", J::f(rv.win_rate_overall)),
                ("payoff_ratio_revenge", J::f(rv.payoff)),
                ("revenge_multiplier", J::f(k)),
                ("revenge_win_rate", J::f(rv.win_rate)),
                ("total_revenge_trades", J::i(rv.count as i64)),
            ])
        }
        Route::RiskSizing => {
            let vr = param(q, "vr", th.vr)?;
            let rs = RiskSizing::of(trades, vr);
            J::obj([
                ("count", J::i(rs.count as i64)),
                ("diagnostic", J::s(text::risk_sizing(&rs, vr, trades.len()))),
                ("maxRiskPoints", J::f(rs.max)),
                ("meanRiskPoints", J::f(rs.mean)),
                ("minRiskPoints", J::f(rs.min)),
                ("stdDevRiskPoints", J::f(rs.std)),
                ("variationRatio", J::f(rs.ratio)),
                ("variationThreshold", J::f(vr)),
            ])
        }
        Route::ExcessiveRisk => {
            let sigma = param(q, "sigma", th.sigma_risk)?;
            let e = Excessive::of(trades, sigma);
            J::obj([
                ("averageRiskAmongExcessive", J::f(e.avg_excessive)),
                ("diagnostic", J::s(text::excessive(&e))),
                ("excessiveRiskCount", J::i(e.count as i64)),
                ("excessiveRiskPercent", J::f(e.percent)),
                ("excessiveRiskThreshold", J::f(e.threshold)),
                ("meanRiskPoints", J::f(e.mean)),
                ("sigmaUsed", J::f(sigma)),
                ("stdDevRiskPoints", J::f(e.std)),
                ("totalTradesWithStops", J::i(e.n_with_stops as i64)),
            ])
        }
        Route::StopLoss => {
            let s = StopLoss::of(trades);
            J::obj([
                ("averageLossWithStop", J::f(s.avg_with)),
                ("averageLossWithoutStop", J::f(s.avg_without)),
                ("diagnostic", J::s(text::stop_loss(&s))),
                ("maxLossWithoutStop", J::f(s.max_without)),
                ("totalTrades", J::i(s.n as i64)),
                ("tradesWithStops", J::i((s.n - s.without) as i64)),
                ("tradesWithoutStops", J::i(s.without as i64)),
            ])
        }
        Route::WinratePayoff => {
            let be = Breakeven::of(trades);
            if be.wins == 0 || be.losses == 0 {
                J::obj([("message", J::s(text::winrate_needs_both()))])
            } else {
                J::obj([
                    ("averageLoss", J::f(be.avg_loss)),
                    ("averageWin", J::f(be.avg_win)),
                    ("diagnostic", J::s(text::breakeven(&be))),
                    ("payoffRatio", J::f(be.payoff)),
                    ("winRate", J::f(be.win_rate)),
                ])
            }
        }
        Route::Insights => insights(d, th, q)?,
        Route::Goals => {
            let builtin: [(&str, i64, &[&str]); 3] = [
                ("Clean Trades", 50, &[]),
                (
                    "Risk Management",
                    100,
                    &["no stop-loss order", "excessive risk", "outsized loss"],
                ),
                ("Revenge Trades", 100, &["revenge trade"]),
            ];
            J::Arr(
                builtin
                    .iter()
                    .map(|(title, goal, types)| {
                        let types: Vec<String> = types.iter().map(|s| s.to_string()).collect();
                        let (cur, best) =
                            streaks(trades, Clean::from_types(&types), Metric::Trades, None);
                        J::obj([
                            ("best_streak", J::i(best as i64)),
                            ("current_streak", J::i(cur as i64)),
                            ("goal", J::i(*goal)),
                            ("metric", J::s("trades")),
                            ("progress", J::f(py_round(cur as f64 / *goal as f64, 2))),
                            ("start_date", J::Null),
                            ("title", J::s(*title)),
                        ])
                    })
                    .collect(),
            )
        }
        _ => J::Null,
    })
}

fn number(n: Number) -> J {
    match n {
        Number::Int(i) => J::i(i),
        Number::Float(f) => J::f(f),
    }
}

fn insights(d: &Dataset, th: &Thresholds, q: &Query) -> Result<J, ErrorEnvelope> {
    let trades = &d.trades;
    let vr = param(q, "vr", th.vr)?;
    let sigma_loss = param(q, "sigma_loss", th.sigma_loss)?;
    let sigma_risk = param(q, "sigma_risk", th.sigma_risk)?;
    let _k = param(q, "k", th.k)?; // parsed and ignored, as the legacy does (H-8)
    let tally = Tally::of(trades);
    let stop = StopLoss::of(trades);
    let exc = Excessive::of(trades, sigma_risk);
    let out = Outsized::of(trades.iter(), sigma_loss);
    let rev = Revenge::of(trades, &Revenge::stored_flags(trades));
    let rs = RiskSizing::of(trades, vr);
    let be = Breakeven::of(trades);
    // (title, count, tie-break rank, zero-group rank, text)
    let sections = [
        (
            "Stop-Loss Discipline",
            tally.counts[0],
            0,
            0,
            text::stop_loss(&stop),
        ),
        ("Outsized Losses", out.count, 1, 2, text::outsized(&out)),
        (
            "Excessive Risk Sizing",
            exc.count,
            2,
            1,
            text::excessive(&exc),
        ),
        (
            "Revenge Trading",
            tally.counts[2],
            3,
            3,
            text::revenge(&rev),
        ),
    ];
    let mut nonzero: Vec<&(&str, usize, i32, i32, String)> =
        sections.iter().filter(|s| s.1 > 0).collect();
    nonzero.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
    let mut zero: Vec<&(&str, usize, i32, i32, String)> =
        sections.iter().filter(|s| s.1 == 0).collect();
    zero.sort_by_key(|s| s.3);
    let mut items: Vec<(String, String)> = vec![(
        "Trading Summary".into(),
        text::summary(&tally, SummaryVariant::Insights),
    )];
    items.extend(nonzero.iter().map(|s| (s.0.to_string(), s.4.clone())));
    items.push((
        "Risk Sizing Consistency".into(),
        text::risk_sizing(&rs, vr, trades.len()),
    ));
    items.push(("Breakeven Analysis".into(), text::breakeven(&be)));
    items.extend(zero.iter().map(|s| (s.0.to_string(), s.4.clone())));
    Ok(J::Arr(
        items
            .into_iter()
            .enumerate()
            .map(|(i, (title, diag))| {
                J::obj([
                    ("diagnostic", J::s(diag)),
                    ("priority", J::i(i as i64)),
                    ("title", J::s(title)),
                ])
            })
            .collect(),
    ))
}

/// Whether a Content-Type is JSON for Flask (`application/json` or
/// `application/*+json`).
fn is_json_type(ct: Option<&str>) -> bool {
    let Some(ct) = ct else { return false };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn read_json_body(req: &Request<'_>) -> Result<J, ErrorEnvelope> {
    let bad = || {
        ErrorEnvelope::new("Request body must be valid JSON.").with_detail("body: JSON expected")
    };
    if !is_json_type(req.content_type) {
        return Err(bad());
    }
    match json::parse(req.body) {
        Some(J::Null) | None => Err(bad()),
        Some(v) => Ok(v),
    }
}

/// A threshold value as Python's `float()` would take it, restricted by
/// H-4: JSON numbers and numeric strings; no booleans, no NaN/inf.
fn threshold_value(v: &J) -> Option<f64> {
    let f = match v {
        J::Int(i) => *i as f64,
        J::BigInt(s) => s.parse::<f64>().ok()?,
        J::Float(f) => *f,
        J::Str(s) => py_float(s)?,
        _ => return None,
    };
    f.is_finite().then_some(f)
}

fn post_settings(session: &mut Session, req: &Request<'_>) -> Reply {
    let body = match read_json_body(req) {
        Ok(b) => b,
        Err(e) => return error(400, e),
    };
    let J::Obj(members) = body else {
        return error(
            400,
            ErrorEnvelope::new("Settings must be a JSON object of thresholds.")
                .with_detail("body: object expected"),
        );
    };
    let mut updated: Vec<(&'static str, f64)> = Vec::new();
    let mut bad: Vec<String> = Vec::new();
    for (key, value) in &members {
        let name: &'static str = match key.as_str() {
            "k" => "k",
            "sigma_loss" => "sigma_loss",
            "sigma_risk" => "sigma_risk",
            "vr" => "vr",
            _ => continue,
        };
        match threshold_value(value) {
            Some(f) => updated.push((name, f)),
            None => bad.push(name.to_string()),
        }
    }
    if let Some(first) = bad.first() {
        return error(
            400,
            ErrorEnvelope::new(format!(
                "Value for '{first}' must be a finite number. Nothing was changed."
            ))
            .with_details(bad.iter().map(|k| format!("key {k}")).collect()),
        );
    }
    for (name, f) in &updated {
        let th = &mut session.thresholds;
        match *name {
            "k" => th.k = *f,
            "sigma_loss" => th.sigma_loss = *f,
            "sigma_risk" => th.sigma_risk = *f,
            _ => th.vr = *f,
        }
    }
    let th = session.thresholds;
    if let Some(d) = session.data.as_mut() {
        tag_trades(&mut d.trades, th.sigma_loss, th.k, th.sigma_risk);
    }
    let body = J::obj([
        ("status", J::s("OK")),
        ("thresholds", thresholds_json(&th)),
        (
            "updated",
            J::Obj(
                updated
                    .iter()
                    .map(|(k, v)| (k.to_string(), J::f(*v)))
                    .collect(),
            ),
        ),
    ]);
    let trades = session.data.as_ref().map(|d| d.trades.len());
    reply(200, &body, Facts { rows: None, trades }, &Query::default())
}

fn goals_calculate(session: &mut Session, req: &Request<'_>) -> Reply {
    let Some(data) = session.data.as_ref() else {
        return error(400, ErrorEnvelope::new(format!("{GUARD}.")));
    };
    let body = match read_json_body(req) {
        Ok(b) => b,
        Err(e) => return error(400, e),
    };
    let shape_err = || {
        error(
            400,
            ErrorEnvelope::new("Payload must be a list of goal objects or {\"goals\": [...]}.")
                .with_detail("body: array or {\"goals\": array} expected"),
        )
    };
    let list = match &body {
        J::Arr(a) => a,
        J::Obj(_) => match body.get("goals") {
            Some(J::Arr(a)) => a,
            _ => return shape_err(),
        },
        _ => return shape_err(),
    };
    let mut memo = StreakMemo::new();
    let items: Vec<J> = list
        .iter()
        .filter(|g| matches!(g, J::Obj(_)))
        .map(|g| goal_item(&data.trades, g, &mut memo))
        .collect();
    let out = J::obj([("goals", J::Arr(items))]);
    let trades = Some(data.trades.len());
    match out.to_body() {
        Ok(body) => Reply {
            status: 200,
            body,
            headers: Vec::new(),
            facts: Facts { rows: None, trades },
        },
        Err(_) => error(
            400,
            ErrorEnvelope::new("Goal values must be finite numbers."),
        ),
    }
}

fn goal_error(id: &J, title: &J, message: String) -> J {
    J::obj([
        ("error", J::s(message)),
        ("id", id.clone()),
        ("title", title.clone()),
    ])
}

/// Streak results already computed for this request: a goal list can be
/// long, but only a few distinct (predicate, metric, start day) occur.
type StreakMemo = std::collections::HashMap<(Clean, Metric, Option<i64>), (usize, usize)>;

/// One user-defined goal (legacy-api 4.12), with H-16: values that crashed
/// the legacy give this goal an `error` member instead.
fn goal_item(trades: &[Trade], g: &J, memo: &mut StreakMemo) -> J {
    let id = g.get("id").cloned().unwrap_or(J::Null);
    let title = g.get("title").cloned().unwrap_or_else(|| J::s(""));
    // mistake_types: falsy → []; list → its strings; string → characters;
    // object → its keys; anything else crashed the legacy.
    let types: Vec<String> = match g.get("mistake_types") {
        None => Vec::new(),
        Some(v) if !v.truthy() => Vec::new(),
        Some(J::Arr(a)) => a
            .iter()
            .map(|x| {
                if let J::Str(s) = x {
                    s.clone()
                } else {
                    "\u{0}".into()
                }
            })
            .collect(),
        Some(J::Str(s)) => s.chars().map(String::from).collect(),
        Some(J::Obj(m)) => m.iter().map(|(k, _)| k.clone()).collect(),
        Some(other) => {
            return goal_error(
                &id,
                &title,
                format!(
                    "Invalid mistake_types {}: expected a list of mistake names.",
                    other.py_repr()
                ),
            )
        }
    };
    // target: first truthy of target, goal, 1.
    let target = [g.get("target"), g.get("goal")]
        .into_iter()
        .flatten()
        .find(|v| v.truthy())
        .cloned()
        .unwrap_or(J::Int(1));
    let target_f = match &target {
        J::Int(i) => Some(*i as f64),
        J::BigInt(s) => s.parse::<f64>().ok(),
        J::Float(f) if f.is_finite() => Some(*f),
        J::Bool(true) => Some(1.0),
        _ => None,
    };
    let Some(target_f) = target_f else {
        return goal_error(
            &id,
            &title,
            format!("Invalid target {}: expected a number.", target.py_repr()),
        );
    };
    let metric = g.get("metric").cloned().unwrap_or_else(|| J::s("trades"));
    let metric_kind = match &metric {
        J::Str(s) if s == "trades" => Metric::Trades,
        J::Str(s) if s == "days" => Metric::Days,
        other => {
            return goal_error(
                &id,
                &title,
                format!(
                    "Unsupported metric {}. Expected 'trades' or 'days'.",
                    other.py_repr()
                ),
            )
        }
    };
    let start_raw = [g.get("start_date"), g.get("startDate")]
        .into_iter()
        .flatten()
        .find(|v| v.truthy())
        .cloned();
    let start_day = match &start_raw {
        None => None,
        Some(J::Str(s)) => query::fromisoformat_day(s),
        Some(other) => {
            return goal_error(
                &id,
                &title,
                format!(
                    "Invalid start_date {}: expected an ISO date string.",
                    other.py_repr()
                ),
            )
        }
    };
    let key = (Clean::from_types(&types), metric_kind, start_day);
    let (cur, best) = *memo
        .entry(key)
        .or_insert_with(|| streaks(trades, key.0, key.1, key.2));
    J::obj([
        ("best_streak", J::i(best as i64)),
        ("current_streak", J::i(cur as i64)),
        ("goal", target),
        ("id", id),
        ("metric", metric),
        ("progress", J::f(py_round(cur as f64 / target_f, 2))),
        ("start_date", start_raw.unwrap_or(J::Null)),
        ("title", title),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written trade serialisation equals the generic sorted writer.
    #[test]
    fn trade_json_matches_generic_writer() {
        let csv = b"Order ID,Timestamp,Fill Time,B/S,Contract,filledQty,Avg Fill Price,Type,Stop Price,Status\n\
A1,01/02/2024 10:00:00,01/02/2024 10:00:00,Sell,\" E\"\"S\",2,100.5,Market,,Filled\n\
B\xc3\xa9,01/02/2024 10:00:05,,Buy,\" E\"\"S\",1,,Stop,101.25,Working\n\
C2,01/02/2024 10:05:00,01/02/2024 10:05:00,Buy,\" E\"\"S\",2,100.5,Limit,,Filled\n";
        let mut d = crate::analysis::load(csv).unwrap();
        tag_trades(&mut d.trades, 1.0, 1.0, 1.5);
        let t = &d.trades[0];
        let generic = J::obj([
            ("symbol", J::s(d.symbol(t))),
            ("side", J::s(d.side_text(t.side))),
            ("riskPoints", J::of(t.risk_points)),
            ("pointsLost", J::f(t.points_lost)),
            ("pnl", J::f(t.pnl)),
            ("mistakes", J::Arr(t.tag_names().map(J::s).collect())),
            ("id", J::s(t.id.to_string())),
            ("exitTime", J::s(iso(t.exit_time))),
            ("exitQty", J::i(t.exit_qty)),
            ("exitPrice", J::f(t.exit_price)),
            ("exitOrderId", order_id_json(&t.exit_order_id)),
            ("entryTime", J::s(iso(t.entry_time))),
            ("entryQty", J::i(t.entry_qty)),
            ("entryPrice", J::f(t.entry_price)),
        ]);
        let mut a = String::new();
        trade_json(&d, t).write(&mut a).unwrap();
        let mut b = String::new();
        generic.write(&mut b).unwrap();
        assert_eq!(a, b);
        assert!(a.contains("\"pnl\":-0.0"), "{a}");
        assert!(a.contains("\"riskPoints\":0.75"), "{a}");
    }
}
