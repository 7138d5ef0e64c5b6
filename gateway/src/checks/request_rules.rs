//! Request-rules stage: query parameters and JSON body shape.
//!
//! In: the raw query string and, for JSON routes, the buffered body.
//! Out: allow, or a 400 naming the parameter and what it must be.
//!
//! * Credentials never travel in URLs (ASVS 14.2.1): `api_key`,
//!   `access_token` and similar names are refused on every route, before
//!   anything else, so the refusal says why.
//! * Each route lists the parameters it accepts, with a type: `float`
//!   (finite, inside `min..=max`) or `string` (at most `max_length`
//!   characters from a small character class). Anything else, an unknown
//!   name (names are case-sensitive), a repeated parameter or a value that
//!   is not percent-decodable UTF-8, is refused. A route without a `query`
//!   table accepts no parameters at all.
//! * Float syntax is Rust's: digits with an optional sign, fraction and
//!   exponent. Unlike the legacy backend's Python `float()`, surrounding
//!   spaces and `_` separators are not accepted, and `nan`/`inf` never pass
//!   (the legacy turned them into invalid JSON).
//! * JSON bodies get a nesting-depth cap, measured by a byte scan that
//!   tracks strings and escapes (no allocation, no full parse); their size
//!   cap is the route's body limit (413).
//!
//! The parts: a route's query table and the query check
//! (`request_rules/query.rs`), its JSON table and the depth scan
//! (`request_rules/json.rs`); here, the credentials-in-URL check every route
//! runs and the refusal every rule gives.

use http::StatusCode;

use super::{echo_safe, Rejection};

mod json;
mod query;
#[cfg(test)]
mod tests;

pub use json::{validate_json, JsonRaw, JsonRules};
pub use query::{validate_query, CharClass, ParamRaw, ParamRule, QueryRules};

use query::decode;

/// Query parameter names that carry credentials, refused everywhere
/// (compared case-insensitively).
pub const CREDENTIAL_PARAMS: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "x-api-key",
    "access_token",
    "id_token",
    "refresh_token",
    "token",
    "jwt",
];

/// Default character class of string parameters.
pub const DEFAULT_STRING_CHARS: &str = "A-Za-z0-9 ._-";

/// Default JSON nesting-depth cap.
pub const DEFAULT_JSON_MAX_DEPTH: usize = 16;

/// Largest configurable JSON nesting depth.
pub const MAX_JSON_MAX_DEPTH: usize = 128;

/// Why a request broke a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// A credential in the query string.
    #[error("credentials in the query string")]
    CredentialsInUrl(String),
    /// A parameter the route does not accept.
    #[error("unknown query parameter")]
    UnknownParameter(String),
    /// A parameter given twice.
    #[error("repeated query parameter")]
    RepeatedParameter(String),
    /// Bad percent-encoding or not UTF-8.
    #[error("malformed query string")]
    MalformedQuery,
    /// A value outside its rule.
    #[error("invalid query parameter value")]
    InvalidValue {
        /// The parameter.
        name: String,
        /// What it must be.
        expected: String,
    },
    /// A JSON body nested too deeply.
    #[error("JSON nested too deeply")]
    JsonTooDeep {
        /// The cap.
        max_depth: usize,
    },
}

impl RuleError {
    /// Stable audit reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::CredentialsInUrl(_) => "query.credentials_in_url",
            Self::UnknownParameter(_) => "query.unknown_parameter",
            Self::RepeatedParameter(_) => "query.repeated_parameter",
            Self::MalformedQuery => "query.malformed",
            Self::InvalidValue { .. } => "query.invalid_value",
            Self::JsonTooDeep { .. } => "body.json_too_deep",
        }
    }
}

impl From<RuleError> for Rejection {
    fn from(err: RuleError) -> Self {
        let reason = err.reason();
        let (message, detail) = match &err {
            RuleError::CredentialsInUrl(name) => (
                format!(
                    "credentials must not be sent in the URL (query parameter '{}')",
                    echo_safe(name)
                ),
                "send an API key in the X-API-Key header or a token in the Authorization header"
                    .to_owned(),
            ),
            RuleError::UnknownParameter(name) => (
                format!(
                    "query parameter '{}' is not allowed on this endpoint",
                    echo_safe(name)
                ),
                format!("{}: unknown parameter", echo_safe(name)),
            ),
            RuleError::RepeatedParameter(name) => (
                format!(
                    "query parameter '{}' is given more than once",
                    echo_safe(name)
                ),
                format!("{}: repeated", echo_safe(name)),
            ),
            RuleError::MalformedQuery => (
                "the query string is not valid percent-encoded UTF-8".to_owned(),
                "query: malformed".to_owned(),
            ),
            RuleError::InvalidValue { name, expected } => (
                format!("invalid value for query parameter '{name}'"),
                format!("{name}: {expected}"),
            ),
            RuleError::JsonTooDeep { max_depth } => (
                "the JSON body is nested too deeply".to_owned(),
                format!("at most {max_depth} levels of arrays and objects"),
            ),
        };
        Rejection::new(StatusCode::BAD_REQUEST, message, reason).with_detail(detail)
    }
}

/// Refuses a query string that carries a credential, whatever the route
/// accepts. Segments that do not decode are left for [`QueryRules::check`].
pub fn refuse_credentials_in_url(query: Option<&str>) -> Result<(), RuleError> {
    let Some(query) = query else {
        return Ok(());
    };
    for segment in query.split('&') {
        let name = segment.split_once('=').map_or(segment, |(name, _)| name);
        if let Ok(name) = decode(name) {
            if is_credential_name(&name) {
                return Err(RuleError::CredentialsInUrl(name));
            }
        }
    }
    Ok(())
}

fn is_credential_name(name: &str) -> bool {
    CREDENTIAL_PARAMS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
}
