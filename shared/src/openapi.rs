//! The OpenAPI 3.1 document of the public surface, generated from the route
//! table ([`crate::routes::ROUTES`]), the error codes ([`crate::codes`])
//! and the body schemas ([`schemas`]).
//!
//! `docs/openapi.json` is this document, committed; a test fails when the
//! two differ (regenerate with `TRADEHABIT_WRITE_OPENAPI=1 cargo test -p
//! tradehabit-shared --lib openapi`). The gateway serves it on a route whose
//! policy entry says `serve = "openapi"` (`docs/configuration.md`).
//!
//! The parameter ranges are those of the shipped example policy
//! (`config/gateway.example.toml`); the error answers are those the gateway
//! and the worker give (`docs/errors.md`).

mod schemas;

use serde_json::{json, Map, Value};

use crate::codes::CODES;
use crate::routes::{BodyKind, Endpoint, Route, ROUTES};

/// The path of the gateway's anonymous session endpoint.
pub const AUTH_SESSION_PATH: &str = "/auth/session";

/// The path of the gateway's API-key exchange.
pub const AUTH_TOKEN_PATH: &str = "/auth/token";

/// The document's version: the API's, not the crate's.
const API_VERSION: &str = "1.0.0";

/// A query parameter an endpoint reads, with the example policy's range.
struct Param {
    name: &'static str,
    /// `Some((min, max))` for a number; `None` for a string.
    range: Option<(f64, f64)>,
    description: &'static str,
}

const fn float(name: &'static str, min: f64, max: f64, description: &'static str) -> Param {
    Param {
        name,
        range: Some((min, max)),
        description,
    }
}

/// The query parameters of an endpoint.
fn params(endpoint: Endpoint) -> Vec<Param> {
    const SIGMA: &str =
        "Outsized-loss threshold in standard deviations (default: the `sigma_loss` setting).";
    const SIGMA_RISK: &str =
        "Excessive-risk threshold in standard deviations (default: the `sigma_risk` setting).";
    const K: &str = "Revenge window multiplier (default: the `k` setting).";
    const VR: &str = "Risk-sizing variation threshold (default: the `vr` setting).";
    match endpoint {
        Endpoint::Analyze => vec![
            float("sigma", 0.1, 5.0, SIGMA),
            float("sigma_risk", 0.1, 5.0, SIGMA_RISK),
            float("k", 0.1, 10.0, K),
        ],
        Endpoint::Losses => vec![
            float("sigma", 0.1, 5.0, SIGMA),
            Param {
                name: "symbol",
                range: None,
                description: "Only losses of this contract (at most 32 characters).",
            },
        ],
        Endpoint::Revenge => vec![float("k", 0.1, 10.0, K)],
        Endpoint::RiskSizing => vec![float("vr", 0.01, 5.0, VR)],
        Endpoint::ExcessiveRisk => vec![float("sigma", 0.1, 5.0, SIGMA_RISK)],
        Endpoint::Insights => vec![
            float("vr", 0.01, 5.0, VR),
            float("sigma_loss", 0.1, 5.0, SIGMA),
            float("sigma_risk", 0.1, 5.0, SIGMA_RISK),
            float("k", 0.1, 10.0, K),
        ],
        _ => Vec::new(),
    }
}

fn parameter(param: &Param) -> Value {
    let schema = match param.range {
        Some((min, max)) => json!({"type": "number", "minimum": min, "maximum": max}),
        None => json!({"type": "string", "maxLength": 32}),
    };
    json!({
        "name": param.name,
        "in": "query",
        "required": false,
        "description": param.description,
        "schema": schema
    })
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn error_ref(status: &str) -> Value {
    json!({"$ref": format!("#/components/responses/{status}")})
}

/// What each route does, for the operation's summary.
fn summary(route: &Route) -> &'static str {
    match (route.endpoint, route.method) {
        (Endpoint::Analyze, _) => "Upload and analyse a CSV order export",
        (Endpoint::Summary, _) => "The summary block",
        (Endpoint::Trades, _) => "Every trade of the last upload",
        (Endpoint::Losses, _) => "Losing trades and outsized losses",
        (Endpoint::Revenge, _) => "Revenge trading",
        (Endpoint::RiskSizing, _) => "Risk-sizing consistency",
        (Endpoint::ExcessiveRisk, _) => "Excessive risk",
        (Endpoint::StopLoss, _) => "Stop-loss discipline",
        (Endpoint::WinratePayoff, _) => "Win rate and payoff ratio",
        (Endpoint::Insights, _) => "All diagnostics, ordered",
        (Endpoint::Goals, _) => "The built-in goals",
        (Endpoint::GoalsCalculate, _) => "Progress on user-defined goals",
        (Endpoint::Settings, "GET") => "Read the thresholds",
        (Endpoint::Settings, _) => "Change thresholds (all given or none)",
        (Endpoint::Health, _) => "Liveness sentence",
        (Endpoint::Session, _) => "Erase the caller's data",
    }
}

fn request_body(route: &Route) -> Option<Value> {
    let schema = match (route.body, route.endpoint) {
        (BodyKind::Empty, _) => return None,
        (BodyKind::Upload, _) => {
            return Some(json!({
                "required": true,
                "content": {"multipart/form-data": {"schema": schema_ref("UploadForm")}}
            }))
        }
        (BodyKind::Json, Endpoint::GoalsCalculate) => schema_ref("GoalsCalculateRequest"),
        (BodyKind::Json, _) => schema_ref("SettingsRequest"),
    };
    Some(json!({"required": true, "content": json_content(schema)}))
}

/// The answers of one route: 200 and the errors it can give.
fn responses(route: &Route) -> Value {
    let ok_schema = match (route.endpoint, route.method) {
        (Endpoint::Settings, "POST") => "SettingsResponse",
        (endpoint, _) => schemas::response_schema_name(endpoint),
    };
    let mut answers = Map::new();
    answers.insert(
        "200".into(),
        json!({
            "description": "OK",
            "headers": {
                "X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"},
                "RateLimit": {"$ref": "#/components/headers/RateLimit"},
                "RateLimit-Policy": {"$ref": "#/components/headers/RateLimit-Policy"}
            },
            "content": json_content(schema_ref(ok_schema))
        }),
    );
    let mut errors = vec!["400", "401", "403", "404", "405"];
    if route.body != BodyKind::Empty {
        errors.extend(["413", "415"]);
    }
    errors.extend(["429", "500", "502", "503", "504"]);
    for status in errors {
        answers.insert(status.into(), error_ref(status));
    }
    Value::Object(answers)
}

fn operation(route: &Route) -> Value {
    let mut op = json!({
        "operationId": route.name,
        "summary": summary(route),
        "parameters": params(route.endpoint).iter().map(parameter).collect::<Vec<_>>(),
        "responses": responses(route),
    });
    if route.endpoint == Endpoint::Health {
        op["security"] = json!([{}]);
    }
    if let Some(body) = request_body(route) {
        op["requestBody"] = body;
    }
    op
}

/// The gateway's own endpoints: the anonymous session and the key
/// exchange (both enabled by the policy's `[tokens]`).
fn token_operation(name: &str, summary: &str, security: Value) -> Value {
    json!({"post": {
        "operationId": name,
        "summary": summary,
        "description": "Takes no body; an empty JSON object (`{}`, at most 64 bytes) is accepted and ignored. See `docs/scripting.md` for lifetimes, quotas and renewal.",
        "security": security,
        "responses": {
            "200": {"description": "A token", "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}, "content": json_content(schema_ref("IssuedToken"))},
            "401": error_ref("401"),
            "403": error_ref("403"),
            "413": error_ref("413"),
            "415": error_ref("415"),
            "429": error_ref("429")
        }
    }})
}

fn paths() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let item = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        item[route.method.to_ascii_lowercase()] = operation(route);
    }
    paths.insert(
        AUTH_SESSION_PATH.into(),
        token_operation(
            "auth-session",
            "An anonymous, short-lived session token",
            json!([{}]),
        ),
    );
    paths.insert(
        AUTH_TOKEN_PATH.into(),
        token_operation(
            "auth-token",
            "A short-lived token for an API key",
            json!([{"apiKey": []}]),
        ),
    );
    Value::Object(paths)
}

fn error_responses() -> Value {
    let retry = json!({
        "Retry-After": {"$ref": "#/components/headers/Retry-After"},
        "RateLimit": {"$ref": "#/components/headers/RateLimit"},
        "RateLimit-Policy": {"$ref": "#/components/headers/RateLimit-Policy"},
        "X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}
    });
    let plain = json!({"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}});
    let mut out = Map::new();
    for (status, description) in [
        ("400", "The request is malformed or its content is refused"),
        ("401", "No credential, or one that is unknown, invalid or expired; `code` says which"),
        ("403", "Not allowed (scope, origin, plain HTTP)"),
        ("404", "No such route"),
        ("405", "The route does not take this method (`Allow` lists those it takes)"),
        ("413", "The body is too large"),
        ("415", "The body's content type or encoding is not accepted"),
        ("429", "A quota is spent: wait `Retry-After` seconds; RateLimit headers name every quota that applies"),
        ("500", "An internal error; the caller's data is unchanged"),
        ("502", "The analysis service is unreachable"),
        ("503", "Busy or shutting down: wait `Retry-After` seconds"),
        ("504", "The analysis service did not answer in time"),
    ] {
        let headers = if matches!(status, "429" | "503") { &retry } else { &plain };
        out.insert(
            status.into(),
            json!({
                "description": description,
                "headers": headers,
                "content": json_content(schema_ref("ErrorEnvelope"))
            }),
        );
    }
    Value::Object(out)
}

fn headers() -> Value {
    json!({
        "X-Request-Id": {"description": "The request's id; the same as the error envelope's `request_id`.", "schema": {"type": "string"}},
        "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 1}},
        "RateLimit-Policy": {"description": "Every quota that applies: `\"name\";q=<requests>;w=<window seconds>`, comma-separated.", "schema": {"type": "string"}},
        "RateLimit": {"description": "What is left of each quota: `\"name\";r=<remaining>;t=<seconds to reset>`, comma-separated.", "schema": {"type": "string"}}
    })
}

/// The whole document.
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "TradeHabit API",
            "version": API_VERSION,
            "description": "The legacy TradeHabit JSON API behind the TradeHabit gateway. Errors: `docs/errors.md`; scripting: `docs/scripting.md`."
        },
        "servers": [{"url": "https://127.0.0.1:8443", "description": "The local development stack (`cargo run`)"}],
        "security": [{"apiKey": []}, {"bearer": []}],
        "paths": paths(),
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key issued by the operator (`th_…`)."},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "A JWT of a trusted issuer, or a gateway token from `/auth/session` or `/auth/token`."}
            },
            "schemas": schemas::all(CODES),
            "responses": error_responses(),
            "headers": headers()
        }
    })
}

/// The document as served and committed: pretty JSON with a trailing
/// newline.
pub fn to_json_bytes() -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(&document()).expect("a JSON value always serialises");
    text.push(b'\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

    #[test]
    fn the_committed_openapi_document_is_the_generated_one() {
        let generated = to_json_bytes();
        if std::env::var_os("TRADEHABIT_WRITE_OPENAPI").is_some() {
            std::fs::write(COMMITTED, &generated).expect("write docs/openapi.json");
        }
        let committed = std::fs::read(COMMITTED).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json differs from the generator: run \
             TRADEHABIT_WRITE_OPENAPI=1 cargo test -p tradehabit-shared --lib openapi"
        );
    }

    #[test]
    fn every_route_is_an_operation() {
        let doc = document();
        for route in ROUTES {
            let op = &doc["paths"][route.path][route.method.to_ascii_lowercase()];
            assert_eq!(op["operationId"], route.name, "{route:?}");
        }
        let codes = &doc["components"]["schemas"]["ErrorEnvelope"]["properties"]["code"]["enum"];
        assert_eq!(codes.as_array().map(Vec::len), Some(CODES.len()));
    }
}
