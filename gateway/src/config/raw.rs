//! The policy file exactly as the operator wrote it: serde mirrors of every
//! TOML table, with unknown keys refused. Every field is optional here so
//! that `config.rs` can report every missing or bad value at once, each with
//! its key path, instead of stopping at the first.

use std::collections::BTreeMap;

use serde::Deserialize;

pub(crate) use super::admin::RawAdmin;
pub(crate) use super::audit::RawAudit;
use super::compressed::RawCompressedBody;
use crate::checks::api_key::ApiKeysRaw;
use crate::checks::auth::AuthMode;
use crate::checks::cors::CorsRaw;
use crate::checks::jwt::JwtRaw;
use crate::checks::rate_limit::{RateLimitSettingsRaw, RouteRateLimitsRaw};
use crate::checks::request_rules::{JsonRaw, ParamRaw};
use crate::checks::secret::SecretSourceRaw;
use crate::checks::session_token::TokensRaw;
use crate::checks::upload::UploadRaw;
use crate::static_files::StaticFilesRaw;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) server: Option<RawServer>,
    pub(crate) tls: Option<RawTls>,
    pub(crate) plain_http: Option<RawPlainHttp>,
    pub(crate) limits: Option<RawLimits>,
    pub(crate) headers: Option<RawHeaders>,
    pub(crate) upstream: Option<RawUpstream>,
    /// The default CORS policy of every route (`checks::cors`).
    pub(crate) cors: Option<CorsRaw>,
    /// API keys (`checks::api_key`).
    pub(crate) api_keys: Option<ApiKeysRaw>,
    /// JWT issuers (`checks::jwt`).
    pub(crate) jwt: Option<JwtRaw>,
    /// The gateway's own tokens (`checks::session_token`).
    pub(crate) tokens: Option<TokensRaw>,
    /// Rate-limit memory bounds (`checks::rate_limit`).
    pub(crate) rate_limit: Option<RateLimitSettingsRaw>,
    /// What every route inherits unless it sets its own
    /// (`config/route_defaults.rs`).
    pub(crate) route_defaults: Option<RawRoute>,
    pub(crate) routes: Option<Vec<RawRoute>>,
    pub(crate) admin: Option<RawAdmin>,
    pub(crate) audit: Option<RawAudit>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) listen: Option<String>,
    pub(crate) shutdown_timeout: Option<String>,
    pub(crate) trusted_proxies: Option<Vec<String>>,
    pub(crate) names: Option<Vec<String>>,
    pub(crate) threads: Option<i64>,
}

/// `[tls]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) self_signed_if_missing: Option<bool>,
}

/// `[plain_http]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlainHttp {
    pub(crate) listen: Option<String>,
    pub(crate) https_port: Option<i64>,
    pub(crate) redirect_host: Option<String>,
    pub(crate) api_prefixes: Option<Vec<String>>,
}

/// `[limits]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub(crate) tls_handshake_timeout: Option<String>,
    pub(crate) header_read_timeout: Option<String>,
    pub(crate) idle_timeout: Option<String>,
    pub(crate) request_timeout: Option<String>,
    pub(crate) max_header_bytes: Option<i64>,
    pub(crate) max_header_count: Option<i64>,
    pub(crate) max_header_field_bytes: Option<i64>,
    pub(crate) max_request_line_bytes: Option<i64>,
    pub(crate) h2_max_concurrent_streams: Option<i64>,
    pub(crate) max_connections: Option<i64>,
    pub(crate) max_connections_per_ip: Option<i64>,
    pub(crate) refusal_drain_timeout: Option<String>,
    pub(crate) refusal_drain_bytes: Option<i64>,
    pub(crate) over_cap_answers_per_second: Option<i64>,
    pub(crate) underscore_headers: Option<String>,
    pub(crate) send_timeout: Option<String>,
    pub(crate) max_requests_per_ip: Option<i64>,
    pub(crate) max_upstream_per_ip: Option<i64>,
    pub(crate) refusal_delay: Option<String>,
    pub(crate) refusal_delay_after: Option<i64>,
}

/// `[headers]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaders {
    pub(crate) hsts_max_age: Option<i64>,
    pub(crate) hsts_include_subdomains: Option<bool>,
    pub(crate) hsts_preload: Option<bool>,
    pub(crate) content_security_policy: Option<String>,
}

/// `[upstream]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub(crate) address: Option<String>,
    pub(crate) addresses: Option<Vec<String>>,
    pub(crate) eject_for: Option<String>,
    pub(crate) hmac_key: Option<SecretSourceRaw>,
    pub(crate) connect_timeout: Option<String>,
    pub(crate) response_timeout: Option<String>,
    pub(crate) max_in_flight: Option<i64>,
    pub(crate) queue_timeout: Option<String>,
    pub(crate) pool_idle_timeout: Option<String>,
    pub(crate) pool_max_idle: Option<i64>,
    pub(crate) retry_after: Option<String>,
    pub(crate) response_buffer_bytes: Option<i64>,
    pub(crate) request_buffer_bytes: Option<i64>,
    pub(crate) replace_error_bodies: Option<bool>,
    pub(crate) ready_path: Option<String>,
    pub(crate) spawn: Option<RawSpawn>,
}

/// `[upstream.spawn]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSpawn {
    pub(crate) command: Option<Vec<String>>,
    pub(crate) ready_timeout: Option<String>,
    pub(crate) restart_backoff_max: Option<String>,
}

/// One `[[routes]]` entry (also the shape of `[route_defaults]`, which
/// may not name a path).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) name: Option<String>,
    pub(crate) path: Option<String>,
    /// Several paths with one policy: one route per path, all named `name`.
    pub(crate) paths: Option<Vec<String>>,
    #[serde(rename = "match")]
    pub(crate) match_: Option<String>,
    pub(crate) methods: Option<Vec<String>>,
    pub(crate) body_limit: Option<i64>,
    /// `required` (default), `optional` or `none`.
    pub(crate) auth: Option<AuthMode>,
    /// Scopes the principal must all hold.
    pub(crate) scopes: Option<Vec<String>>,
    /// Quotas per client IP and per principal.
    pub(crate) rate_limit: Option<RouteRateLimitsRaw>,
    /// Replaces the top-level `[cors]` for this route.
    pub(crate) cors: Option<CorsRaw>,
    /// Accepted query parameters; none when absent.
    pub(crate) query: Option<BTreeMap<String, ParamRaw>>,
    /// JSON body nesting cap.
    pub(crate) json: Option<JsonRaw>,
    /// Accepted request body media types; bodies refused when absent.
    pub(crate) content_types: Option<Vec<String>>,
    /// Multipart upload rules.
    pub(crate) upload: Option<UploadRaw>,
    /// Compressed bodies accepted, with a decoded-size cap.
    pub(crate) compressed_body: Option<RawCompressedBody>,
    /// Files served by the gateway itself instead of forwarding
    /// (`static_files.rs`).
    pub(crate) static_files: Option<StaticFilesRaw>,
    /// Who answers: `upstream` (default) or `openapi` (the gateway, with
    /// the API's OpenAPI document).
    pub(crate) serve: Option<String>,
}
