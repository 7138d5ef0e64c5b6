//! The JSON schemas of the request and response bodies, as the API writes
//! them (the legacy camelCase / snake_case mix included; `docs/quirks.md`
//! has the why of each odd type).

use serde_json::{json, Map, Value};

use crate::routes::Endpoint;

/// A JSON number: the API writes Python's `int` or `float` text, and some
/// fields switch between the two (`docs/quirks.md`, E-23, E-34).
fn number() -> Value {
    json!({"type": "number"})
}

fn integer() -> Value {
    json!({"type": "integer"})
}

fn string() -> Value {
    json!({"type": "string"})
}

fn nullable(kind: &str) -> Value {
    json!({"type": [kind, "null"]})
}

/// An object whose listed properties are all present; more may be added.
fn object(properties: &[(&str, Value)]) -> Value {
    let required: Vec<&str> = properties.iter().map(|(name, _)| *name).collect();
    let properties: Map<String, Value> = properties
        .iter()
        .map(|(name, schema)| ((*name).to_owned(), schema.clone()))
        .collect();
    json!({"type": "object", "properties": properties, "required": required})
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn array_of(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

/// The name of the 200 body's schema for an endpoint.
pub(super) fn response_schema_name(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Analyze => "AnalyzeResponse",
        Endpoint::Summary => "Summary",
        Endpoint::Trades => "TradesResponse",
        Endpoint::Losses => "LossesResponse",
        Endpoint::Revenge => "RevengeResponse",
        Endpoint::RiskSizing => "RiskSizingResponse",
        Endpoint::ExcessiveRisk => "ExcessiveRiskResponse",
        Endpoint::StopLoss => "StopLossResponse",
        Endpoint::WinratePayoff => "WinratePayoffResponse",
        Endpoint::Insights => "InsightsResponse",
        Endpoint::Goals => "GoalsResponse",
        Endpoint::GoalsCalculate => "GoalsCalculateResponse",
        Endpoint::Settings => "Thresholds",
        Endpoint::Health => "Health",
        Endpoint::Session => "StatusOk",
    }
}

fn mistake_counts() -> Value {
    json!({
        "type": "object",
        "additionalProperties": {"type": "integer"},
        "description": "Trades per mistake tag: `no stop-loss order`, `outsized loss`, `revenge trade`, `excessive risk`."
    })
}

fn trade() -> Value {
    object(&[
        ("id", json!({"type": "string", "format": "uuid"})),
        ("symbol", string()),
        ("side", string()),
        ("entryTime", string()),
        ("exitTime", string()),
        ("entryPrice", number()),
        ("exitPrice", number()),
        ("entryQty", integer()),
        ("exitQty", integer()),
        (
            "exitOrderId",
            json!({"type": ["integer", "number", "string", "null"], "description": "Typed like the file's whole `Order ID` column (`docs/quirks.md`, E-23)."}),
        ),
        ("pnl", number()),
        ("pointsLost", number()),
        ("riskPoints", nullable("number")),
        ("mistakes", array_of(string())),
    ])
}

fn goal() -> Value {
    json!({
        "type": "object",
        "properties": {
            "id": {"type": ["string", "null"]},
            "title": {"type": "string"},
            "metric": {"type": "string"},
            "goal": {"type": "integer"},
            "progress": {"type": "number"},
            "current_streak": {"type": "integer"},
            "best_streak": {"type": "integer"},
            "start_date": {"type": ["string", "null"]},
            "error": {"type": "string", "description": "Set instead of a crash for a goal the legacy could not compute (`docs/quirks.md`, H-16)."}
        }
    })
}

fn thresholds() -> Value {
    object(&[
        ("k", number()),
        ("sigma_loss", number()),
        ("sigma_risk", number()),
        ("vr", number()),
    ])
}

/// Every schema of the document's `components.schemas`.
pub(super) fn all(codes: &[&str]) -> Value {
    let mut schemas = Map::new();
    schemas.insert("ErrorEnvelope".to_owned(), envelope(codes));
    for (name, schema) in upload_and_trades()
        .into_iter()
        .chain(reports())
        .chain(settings_goals_and_tokens())
    {
        schemas.insert(name.to_owned(), schema);
    }
    Value::Object(schemas)
}

/// The upload's answer, the summary, the trades and the losses.
fn upload_and_trades() -> Vec<(&'static str, Value)> {
    vec![
        ("Trade", trade()),
        (
            "AnalyzeResponse",
            object(&[
                (
                    "meta",
                    object(&[
                        ("csvRows", integer()),
                        ("tradesDetected", integer()),
                        ("flaggedTrades", integer()),
                        ("totalMistakes", integer()),
                        ("cleanTradeRate", number()),
                        ("sigmaUsed", number()),
                        ("mistakeCounts", mistake_counts()),
                    ]),
                ),
                ("trades", array_of(reference("Trade"))),
            ]),
        ),
        (
            "Summary",
            object(&[
                ("total_trades", integer()),
                ("win_count", integer()),
                ("loss_count", integer()),
                ("win_rate", number()),
                ("average_win", number()),
                ("average_loss", number()),
                ("payoff_ratio", number()),
                ("expectancy", number()),
                ("required_wr_adj", nullable("number")),
                ("flagged_trades", integer()),
                ("total_mistakes", integer()),
                ("clean_trade_rate", number()),
                ("streak_current", integer()),
                ("streak_record", integer()),
                ("mistake_counts", mistake_counts()),
                ("diagnostic_text", string()),
            ]),
        ),
        (
            "TradesResponse",
            object(&[
                ("trades", array_of(reference("Trade"))),
                (
                    "date_range",
                    object(&[("start", string()), ("end", string())]),
                ),
            ]),
        ),
        (
            "LossesResponse",
            object(&[
                ("count", integer()),
                ("percentage", number()),
                ("meanPointsLost", number()),
                ("stdDevPointsLost", number()),
                ("thresholdPointsLost", number()),
                ("excessLossPoints", number()),
                ("sigmaUsed", number()),
                ("symbolFiltered", nullable("string")),
                ("diagnostic", string()),
                (
                    "losses",
                    array_of(object(&[
                        ("lossIndex", integer()),
                        ("tradeId", string()),
                        ("symbol", string()),
                        ("side", string()),
                        ("entryTime", string()),
                        ("exitQty", integer()),
                        (
                            "exitOrderId",
                            json!({"type": ["integer", "number", "string", "null"]}),
                        ),
                        ("pointsLost", number()),
                        ("hasMistake", json!({"type": "boolean"})),
                    ])),
                ),
            ]),
        ),
    ]
}

/// The other read-only reports.
fn reports() -> Vec<(&'static str, Value)> {
    vec![
        (
            "RevengeResponse",
            object(&[
                ("total_revenge_trades", integer()),
                ("revenge_win_rate", number()),
                ("overall_win_rate", number()),
                ("average_win_revenge", number()),
                ("average_loss_revenge", number()),
                ("payoff_ratio_revenge", number()),
                ("overall_payoff_ratio", number()),
                ("net_pnl_revenge", number()),
                ("net_pnl_per_trade_revenge", number()),
                ("revenge_multiplier", number()),
                ("diagnostic", string()),
            ]),
        ),
        (
            "RiskSizingResponse",
            object(&[
                ("count", integer()),
                ("meanRiskPoints", number()),
                ("stdDevRiskPoints", number()),
                ("minRiskPoints", number()),
                ("maxRiskPoints", number()),
                ("variationRatio", number()),
                ("variationThreshold", number()),
                ("diagnostic", string()),
            ]),
        ),
        (
            "ExcessiveRiskResponse",
            object(&[
                ("totalTradesWithStops", integer()),
                ("excessiveRiskCount", integer()),
                ("excessiveRiskPercent", number()),
                ("excessiveRiskThreshold", number()),
                ("averageRiskAmongExcessive", number()),
                ("meanRiskPoints", number()),
                ("stdDevRiskPoints", number()),
                ("sigmaUsed", number()),
                ("diagnostic", string()),
            ]),
        ),
        (
            "StopLossResponse",
            object(&[
                ("totalTrades", integer()),
                ("tradesWithStops", integer()),
                ("tradesWithoutStops", integer()),
                ("averageLossWithStop", number()),
                ("averageLossWithoutStop", number()),
                ("maxLossWithoutStop", number()),
                ("diagnostic", string()),
            ]),
        ),
        (
            "WinratePayoffResponse",
            json!({
                "description": "The statistics, or a lone `message` when there are no winners or no losers (`docs/quirks.md`, H-12).",
                "type": "object",
                "properties": {
                    "winRate": {"type": "number"},
                    "averageWin": {"type": "number"},
                    "averageLoss": {"type": "number"},
                    "payoffRatio": {"type": "number"},
                    "diagnostic": {"type": "string"},
                    "message": {"type": "string"}
                }
            }),
        ),
        (
            "InsightsResponse",
            array_of(object(&[
                ("title", string()),
                ("diagnostic", string()),
                ("priority", integer()),
            ])),
        ),
    ]
}

/// Goals, settings, health, the upload form and the gateway's tokens.
fn settings_goals_and_tokens() -> Vec<(&'static str, Value)> {
    vec![
        ("Goal", goal()),
        ("GoalsResponse", array_of(reference("Goal"))),
        (
            "GoalsCalculateRequest",
            json!({
                "description": "A list of goal objects, or `{\"goals\": [...]}`.",
                "oneOf": [
                    {"type": "array", "items": {"type": "object"}},
                    {"type": "object", "properties": {"goals": {"type": "array", "items": {"type": "object"}}}, "required": ["goals"]}
                ]
            }),
        ),
        (
            "GoalsCalculateResponse",
            object(&[("goals", array_of(reference("Goal")))]),
        ),
        ("Thresholds", thresholds()),
        (
            "SettingsRequest",
            json!({
                "description": "Any of the four thresholds, each a finite number or a numeric string; other keys are refused (`settings.unknown_key`).",
                "type": "object",
                "properties": {
                    "k": {"type": ["number", "string"]},
                    "sigma_loss": {"type": ["number", "string"]},
                    "sigma_risk": {"type": ["number", "string"]},
                    "vr": {"type": ["number", "string"]}
                },
                "additionalProperties": false
            }),
        ),
        (
            "SettingsResponse",
            object(&[
                ("status", json!({"const": "OK"})),
                ("thresholds", reference("Thresholds")),
                (
                    "updated",
                    json!({"type": "object", "additionalProperties": {"type": "number"}}),
                ),
            ]),
        ),
        ("Health", object(&[("Status", string())])),
        ("StatusOk", object(&[("status", json!({"const": "OK"}))])),
        (
            "UploadForm",
            json!({
                "type": "object",
                "properties": {"file": {"type": "string", "contentMediaType": "text/csv", "description": "The NinjaTrader order export, a `.csv` file of at most 2 MiB."}},
                "required": ["file"]
            }),
        ),
        ("IssuedToken", issued_token()),
    ]
}

/// The error envelope: the legacy keys plus `code` and `request_id`.
fn envelope(codes: &[&str]) -> Value {
    json!({
        "type": "object",
        "description": "Every error answer (`docs/errors.md`).",
        "properties": {
            "status": {"const": "ERROR"},
            "message": {"type": "string", "description": "Readable; may change. Branch on `code`."},
            "details": {
                "type": "array",
                "description": "Short readable facts (a parameter, `row 3`, `column Contract`), then, for a problem in the uploaded file, its location as data.",
                "items": {"oneOf": [
                    {"type": "string"},
                    {"type": "object", "properties": {"row": {"type": "integer", "minimum": 1, "description": "Spreadsheet row: the header is row 1."}, "column": {"type": "string"}}, "required": ["row"], "additionalProperties": false}
                ]}
            },
            "code": {"type": "string", "enum": codes, "description": "The stable cause, `<check>.<why>`."},
            "request_id": {"type": "string", "description": "The answer's `X-Request-Id`; quote it when reporting a failure."}
        },
        "required": ["status", "message", "details", "code"],
        "additionalProperties": false
    })
}

fn issued_token() -> Value {
    json!({
        "type": "object",
        "description": "A gateway token (`docs/scripting.md`): send it as `Authorization: Bearer <access_token>` until `expires_in` seconds have passed, then ask for a new one.",
        "properties": {
            "access_token": {"type": "string"},
            "token_type": {"const": "Bearer"},
            "expires_in": {"type": "integer"},
            "scope": {"type": "string"}
        },
        "required": ["access_token", "token_type", "expires_in"]
    })
}
