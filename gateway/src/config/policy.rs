//! The policy checks' part of the file: the top-level `[cors]`,
//! `[api_keys]`, `[jwt]`, `[tokens]` and `[rate_limit]` tables and each
//! route's `auth`, `scopes`, `rate_limit`, `cors`, `query`, `json`,
//! `content_types` and `upload`. Each section is validated by its own
//! check module (`crate::checks`); this file only puts them together,
//! checks how they fit each other. The rate-limit buckets are runtime state
//! (`state/rate_limits.rs`): here a route only describes its quotas.
//!
//! Secrets (the API-key pepper, HMAC keys) are read here, from the
//! environment or files, and nowhere else.

use std::sync::Arc;

use super::raw::{RawConfig, RawRoute};
use super::Problems;
use crate::checks::api_key::{self, ApiKeys};
use crate::checks::auth::{AuthMode, Authenticator};
use crate::checks::cors::{self, CorsPolicy};
use crate::checks::jwt::{self, JwtVerifier};
use crate::checks::rate_limit::{self, RateLimitSettings, RouteRateLimits, StoreSettings};
use crate::checks::request_rules::{self, JsonRules, QueryRules};
use crate::checks::scopes;
use crate::checks::secret::LoadContext;
use crate::checks::session_token::{self, GatewayTokens, SESSION_PATH, TOKEN_PATH};
use crate::checks::upload::{self, UploadRules};

/// Media type of multipart uploads.
const MULTIPART: &str = "multipart/form-data";

/// Media type of JSON bodies.
const JSON: &str = "application/json";

/// The process-wide part of the policy.
#[derive(Debug, Clone)]
pub(crate) struct PolicyChecks {
    /// API keys, JWT issuers and the gateway's own tokens.
    pub(crate) auth: Authenticator,
    /// The CORS policy of routes that set none.
    pub(crate) cors: Arc<CorsPolicy>,
    /// Rate-limit memory bounds and store.
    pub(crate) rate_limit: RateLimitSettings,
    /// Per-IP quotas of `POST /auth/session`, when enabled.
    pub(crate) session_quotas: Option<RouteRateLimits>,
    /// Per-IP quotas of `POST /auth/token`, when enabled.
    pub(crate) token_quotas: Option<RouteRateLimits>,
}

/// One route's checks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RouteChecks {
    /// How credentials are treated.
    pub(crate) auth: AuthMode,
    /// Scopes the principal must all hold.
    pub(crate) scopes: Vec<String>,
    /// The route's CORS policy (its own, or the top-level one).
    pub(crate) cors: Arc<CorsPolicy>,
    /// The quotas, as written (their buckets are runtime state:
    /// `state/rate_limits.rs`).
    pub(crate) quotas: RouteRateLimits,
    /// Accepted query parameters.
    pub(crate) query: QueryRules,
    /// JSON body rules, for JSON routes.
    pub(crate) json: Option<JsonRules>,
    /// Accepted body media types: `None` accepts any, an empty list no
    /// body at all.
    pub(crate) content_types: Option<Vec<String>>,
    /// Upload rules, for the upload route.
    pub(crate) upload: Option<UploadRules>,
}

impl RouteChecks {
    /// Whether the body must be read in full before it is forwarded (the
    /// multipart form or the JSON depth is checked first).
    pub(crate) fn buffers_body(&self) -> bool {
        self.upload.is_some() || self.json.is_some()
    }
}

/// Validates the top-level tables of the checks.
pub(crate) fn validate_global(
    raw: &mut RawConfig,
    ctx: &LoadContext<'_>,
    problems: &mut Problems,
) -> Option<PolicyChecks> {
    let cors = cors::validate(&raw.cors.take().unwrap_or_default(), "cors", problems);
    let api_keys = match &raw.api_keys {
        Some(section) => api_key::validate(section, "api_keys", ctx, problems),
        None => Some(ApiKeys::empty()),
    };
    let jwt = match &raw.jwt {
        Some(section) => jwt::validate(section, "jwt", ctx, problems),
        None => Some(JwtVerifier::default()),
    };
    let tokens = match &raw.tokens {
        Some(section) => session_token::validate(section, "tokens", ctx, problems),
        None => Some(GatewayTokens::default()),
    };
    let rate_limit = rate_limit::validate_settings(
        &raw.rate_limit.take().unwrap_or_default(),
        "rate_limit",
        super::duration::parse,
        problems,
    );
    let (cors, api_keys, jwt, tokens, rate_limit) = (cors?, api_keys?, jwt?, tokens?, rate_limit?);
    let endpoint_quotas = |endpoint: Option<&session_token::Endpoint>| {
        endpoint.map(|e| RouteRateLimits {
            per_ip: e.rate_limit_per_ip.clone(),
            ..RouteRateLimits::default()
        })
    };
    let session_quotas = endpoint_quotas(tokens.session());
    let token_quotas = endpoint_quotas(tokens.exchange());
    Some(PolicyChecks {
        auth: Authenticator::new(api_keys, jwt, tokens),
        cors: Arc::new(cors),
        rate_limit,
        session_quotas,
        token_quotas,
    })
}

/// Validates one route's checks; `body_limit` is the route's validated
/// limit, when it is valid.
pub(crate) fn validate_route(
    route_key: &str,
    raw: &RawRoute,
    body_limit: Option<u64>,
    global: Option<&PolicyChecks>,
    problems: &mut Problems,
) -> Option<RouteChecks> {
    let key = |field: &str| format!("{route_key}.{field}");
    let auth = raw.auth.unwrap_or_default();
    let scopes = scopes::validate(
        raw.scopes.as_deref().unwrap_or_default(),
        &key("scopes"),
        problems,
    );
    if auth == AuthMode::None && raw.scopes.as_ref().is_some_and(|s| !s.is_empty()) {
        problems.push(
            key("scopes"),
            "a route with auth = \"none\" cannot require scopes",
        );
    }
    let quotas = rate_limit::validate_route(
        &raw.rate_limit.clone().unwrap_or_default(),
        &key("rate_limit"),
        problems,
    );
    let cors = match &raw.cors {
        Some(section) => cors::validate(section, &key("cors"), problems).map(Arc::new),
        None => global.map(|g| Arc::clone(&g.cors)),
    };
    let query = request_rules::validate_query(
        &raw.query.clone().unwrap_or_default(),
        &key("query"),
        problems,
    );
    let json = raw
        .json
        .as_ref()
        .map(|section| request_rules::validate_json(section, &key("json"), problems));
    let upload = raw
        .upload
        .as_ref()
        .map(|section| upload::validate_upload(section, &key("upload"), problems));
    let content_types = validate_content_types(
        route_key,
        raw,
        upload.as_ref(),
        json.is_some(),
        body_limit,
        problems,
    );
    if let Some(path) = &raw.path {
        check_reserved_path(route_key, path, global, problems);
    }
    let global = global?;
    let quotas = quotas?;
    if quotas.on_store_error.is_some() && global.rate_limit.store == StoreSettings::Memory {
        problems.push(
            key("rate_limit.on_store_error"),
            "only used with rate_limit.store = \"redis\"",
        );
    }
    Some(RouteChecks {
        auth,
        scopes: scopes?,
        cors: cors?,
        quotas,
        query: query?,
        json: json.map(|j| j.ok_or(())).transpose().ok()?,
        content_types: content_types?,
        upload: upload.map(|u| u.ok_or(())).transpose().ok()?,
    })
}

/// The route's accepted content types: as listed, or else the upload's or
/// the JSON body's own type. An upload route must accept multipart, and its
/// body limit must leave room for its largest file.
fn validate_content_types(
    route_key: &str,
    raw: &RawRoute,
    upload: Option<&Option<UploadRules>>,
    has_json: bool,
    body_limit: Option<u64>,
    problems: &mut Problems,
) -> Option<Option<Vec<String>>> {
    let key = |field: &str| format!("{route_key}.{field}");
    // Upload and JSON routes take their own type unless told otherwise.
    let default_types = match (upload, has_json) {
        (Some(_), _) => Some(vec![MULTIPART.to_owned()]),
        (None, true) => Some(vec![JSON.to_owned()]),
        (None, false) => None,
    };
    let content_types = match &raw.content_types {
        Some(list) => {
            upload::validate_content_types(list, &key("content_types"), problems).map(Some)
        }
        None => Some(default_types),
    };
    if let (Some(Some(rules)), Some(types)) = (upload, &content_types) {
        if !types
            .as_ref()
            .is_some_and(|t| t.iter().any(|t| t == MULTIPART))
        {
            problems.push(
                key("content_types"),
                "an upload route must accept multipart/form-data",
            );
        }
        if body_limit.is_some_and(|limit| limit < rules.body_limit()) {
            problems.push(
                key("body_limit"),
                format!(
                    "must be at least {} (upload.max_file_bytes plus {} bytes of multipart framing)",
                    rules.body_limit(),
                    upload::MULTIPART_OVERHEAD_BYTES
                ),
            );
        }
    }
    content_types
}

/// Reports a route on a path the gateway serves itself (the session and
/// token endpoints) while that endpoint is enabled.
fn check_reserved_path(
    route_key: &str,
    path: &str,
    global: Option<&PolicyChecks>,
    problems: &mut Problems,
) {
    let key = |field: &str| format!("{route_key}.{field}");
    let tokens = global.map(|g| g.auth.tokens());
    let served = [
        (
            SESSION_PATH,
            tokens.and_then(|t| t.session()).is_some(),
            "tokens.session",
        ),
        (
            TOKEN_PATH,
            tokens.and_then(|t| t.exchange()).is_some(),
            "tokens.exchange",
        ),
    ];
    for (reserved, enabled, section) in served {
        if enabled && path == reserved {
            problems.push(
                key("path"),
                format!("{reserved} is served by the gateway itself while {section} is enabled"),
            );
        }
    }
}
