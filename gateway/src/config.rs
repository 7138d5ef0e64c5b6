//! What the operator wrote → a validated [`Config`].
//!
//! The policy file is one TOML file (`config/gateway.example.toml` shows
//! every key with its default). Loading has two steps: `raw` mirrors the file
//! with serde and refuses unknown keys; [`Config::from_toml`] then checks
//! every value and reports **all** problems at once, each with its key path
//! (`routes["analyze"].body_limit: must be > 0`). Nothing binds a socket before this
//! has succeeded.
//!
//! # Defaults
//!
//! Every default is a named constant below, next to the field that uses it;
//! `docs/configuration.md` lists them in one table.
//!
//! The file holds no secrets: the API-key pepper and HMAC keys are read from
//! an environment variable or a file the file names (`{ env = "…" }`,
//! `{ file = "…" }`; relative paths are resolved against the policy file's
//! directory). The policy checks' own tables are validated in `config/policy.rs`.
//! The sections' types and validation live beside this file: `config/server.rs`
//! (`[server]`, `[tls]`, `[plain_http]`, `[headers]`), `config/limits.rs`,
//! `config/upstream.rs`, `config/routes.rs`, `config/admin.rs`,
//! `config/audit.rs`; this file holds the named defaults, `Config` itself and
//! the checks that span sections. The runtime state built from a `Config`
//! (rate-limit buckets aside, which still live in the route checks) is in
//! `state.rs`.

mod admin;
mod audit;
mod compressed;
mod duration;
mod effective;
mod limits;
mod policy;
mod raw;
mod restart;
mod route_defaults;
mod routes;
mod server;
mod unknown_keys;
mod upstream;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method};

use crate::checks::secret::{Environment, LoadContext, ProcessEnv, Secret};
use crate::checks::Problems;
use crate::host::{Name, ServerNames};
use crate::identity::Cidr;
use crate::path;
pub(crate) use admin::Admin;
pub use admin::{DEFAULT_ADMIN_LISTEN, DEFAULT_READY_PROBE_INTERVAL, DEFAULT_READY_PROBE_TIMEOUT};
pub(crate) use audit::{Audit, AuditOutput, PseudonymKey};
pub use audit::{
    AuditOnFailure, DEFAULT_AUDIT_FAILURE_LOG_INTERVAL, DEFAULT_AUDIT_FILE_MODE,
    DEFAULT_AUDIT_FLUSH_INTERVAL, DEFAULT_AUDIT_ON_FAILURE,
};
pub(crate) use compressed::{CompressedBody, Encoding};
use limits::validate_limits;
pub(crate) use limits::Limits;
pub use limits::UnderscoreHeaders;
pub(crate) use policy::{PolicyChecks, RouteChecks};
use raw::{
    RawConfig, RawHeaders, RawLimits, RawPlainHttp, RawRoute, RawServer, RawSpawn, RawTls,
    RawUpstream,
};
pub use restart::{differing as restart_only_differences, RESTART_ONLY_PATH};
use routes::validate_routes;
pub(crate) use routes::{PathMatch, Route, Serve};
use server::{validate_headers, validate_plain_http, validate_server, validate_tls};
pub(crate) use server::{PlainHttp, SecurityHeaders, Server, Tls};
use upstream::validate_upstream;
pub use upstream::DEFAULT_EJECT_FOR;
pub(crate) use upstream::{Spawn, Upstream, UpstreamAddress};

/// How long shutdown waits for in-flight requests before closing anyway.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// `server.threads`: `0` serves the HTTPS listener on one thread per CPU
/// core (each its own single-threaded runtime and `SO_REUSEPORT` listener).
pub const DEFAULT_SERVER_THREADS: usize = 0;
/// The most serving threads `server.threads` may ask for.
pub const MAX_SERVER_THREADS: usize = 256;
/// A TLS handshake that has not finished by then is dropped.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request head (request line and headers) must arrive within this time
/// (slowloris). For HTTP/1.1 this clock also runs while a kept-alive
/// connection waits for its next request.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request in flight is closed after this long.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The whole request, from its head to the upstream's response head,
/// including the upload of the request body.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// All request headers together, request line included (HTTP/1.1), or the
/// header list (HTTP/2). Over it: 431.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// gunicorn's `limit_request_fields`. Over it: 431.
pub const DEFAULT_MAX_HEADER_COUNT: usize = 100;
/// gunicorn's `limit_request_field_size`: one header line. Over it: 431.
pub const DEFAULT_MAX_HEADER_FIELD_BYTES: usize = 8190;
/// gunicorn's `limit_request_line`. Over it: 414.
pub const DEFAULT_MAX_REQUEST_LINE_BYTES: usize = 4094;
/// Concurrent streams one HTTP/2 connection may open.
pub const DEFAULT_H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Open client connections, all listeners together. Over it: the new
/// connection is closed at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Open client connections from one IP address.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 64;
/// How long the unread body of a refused request is read and discarded
/// (HTTP/1.1 lingering close, HTTP/2 stream drain), so that the client
/// reads the refusal instead of a reset.
pub const DEFAULT_REFUSAL_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `limits.refusal_drain_timeout` accepted.
const MAX_REFUSAL_DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How many bytes of a refused request's unread body are read and
/// discarded at most: above the largest route limit of the shipped policy
/// (about 2 MiB) with room for an upload a few MiB too large.
pub const DEFAULT_REFUSAL_DRAIN_BYTES: usize = 8 * 1024 * 1024;
/// Connections over `max_connections_per_ip` answered per second (TLS
/// handshake, then 503 with `Retry-After`); the others are closed at once.
pub const DEFAULT_OVER_CAP_ANSWERS_PER_SECOND: usize = 10;
/// What happens to request headers whose names contain `_`: dropped before
/// forwarding, as nginx does (`underscores_in_headers off`).
pub const DEFAULT_UNDERSCORE_HEADERS: UnderscoreHeaders = UnderscoreHeaders::Drop;
/// A response body that makes no progress toward the client for this long
/// is abandoned (`docs/security-controls.md`, F-4 and F-5).
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests (HTTP/2 streams included) one client IP may have in flight at
/// once, across all its connections.
pub const DEFAULT_MAX_REQUESTS_PER_IP: usize = 128;
/// Refusals (401, 403, 429) one client IP gets in a second at full speed;
/// further ones are held for `limits.refusal_delay` (`src/tarpit.rs`).
pub const DEFAULT_REFUSAL_DELAY_AFTER: usize = 10;
/// How long a refusal beyond `limits.refusal_delay_after` in a second is
/// held before it is sent (`docs/security-controls.md`, F-35).
pub const DEFAULT_REFUSAL_DELAY: Duration = Duration::from_millis(250);
/// `limits.refusal_delay` may not hold a refusal longer than this.
const MAX_REFUSAL_DELAY: Duration = Duration::from_secs(10);
/// Unless set, one client IP may hold this fraction of
/// `upstream.max_in_flight` (a quarter), and at least one slot.
pub const DEFAULT_UPSTREAM_SHARE_DIVISOR: usize = 4;
/// HSTS `max-age` in seconds: two years, as Mozilla recommends.
pub const DEFAULT_HSTS_MAX_AGE_SECS: u64 = 63_072_000;
/// The CSP sent on every HTTPS response: the API serves no documents.
pub const DEFAULT_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";
/// Path prefixes the plain-HTTP listener treats as API calls (refused, not
/// redirected).
pub const DEFAULT_API_PREFIXES: &[&str] = &["/api/", "/auth/"];
/// Time allowed to open a connection to the upstream. Over it: 502.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time allowed for the upstream's response head once the request is sent.
/// Over it: 504.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests forwarded at once. Beyond it requests wait `queue_timeout`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// How long a request waits for a free upstream slot before 503.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(1);
/// Idle pooled upstream connections are closed after this long.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle pooled upstream connections kept open.
pub const DEFAULT_POOL_MAX_IDLE: usize = 64;
/// `Retry-After` sent with a 503 when the upstream gave none.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);
/// An upstream answer up to this size is read in full and its connection
/// released before the client reads it (proxy buffering).
pub const DEFAULT_RESPONSE_BUFFER_BYTES: usize = 64 * 1024;
/// A request body that declares a length up to this is read in full before
/// an upstream connection is taken (request buffering).
pub const DEFAULT_REQUEST_BUFFER_BYTES: usize = 256 * 1024;
/// How long start-up waits for a spawned upstream to accept connections.
pub const DEFAULT_SPAWN_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause between two restarts of a spawned upstream.
pub const DEFAULT_RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A route's body limit when the route names none.
pub const DEFAULT_ROUTE_BODY_LIMIT: u64 = 16 * 1024;
/// The largest body limit a route may set (1 GiB): a typo guard.
pub const MAX_ROUTE_BODY_LIMIT: u64 = 1 << 30;
/// What `/readyz` and the readiness probe ask the upstream: the worker's
/// readiness endpoint.
pub const DEFAULT_READY_PATH: &str = "/internal/ready";
/// HSTS preload list requirement (hstspreload.org): at least one year.
const HSTS_PRELOAD_MIN_AGE_SECS: u64 = 31_536_000;

/// A validated policy file.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) source: Option<PathBuf>,
    pub(crate) server: Server,
    pub(crate) tls: Tls,
    pub(crate) plain_http: Option<PlainHttp>,
    pub(crate) limits: Limits,
    pub(crate) headers: SecurityHeaders,
    pub(crate) upstream: Upstream,
    /// Authentication, default CORS and rate-limit settings.
    pub(crate) checks: PolicyChecks,
    pub(crate) routes: Vec<Arc<Route>>,
    pub(crate) admin: Admin,
    pub(crate) audit: Audit,
    /// SHA-256 of the policy text, hex (`tradehabit_gateway_config_info`).
    pub(crate) sha256: String,
}

/// Why a policy file was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (its full path, the I/O error once).
    #[error(
        "cannot read {}: {}",
        crate::checks::problems::shown_path(path),
        crate::checks::problems::io_text(error)
    )]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong type.
    #[error("{0}")]
    Syntax(String),
    /// Values that parse but are not acceptable: every problem, one per line.
    #[error("{} problem(s) in the policy file:\n  {}", .0.len(), .0.join("\n  "))]
    Invalid(Vec<String>),
}

impl ConfigError {
    /// Every problem as `key.path: what is wrong`, one entry each.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid(problems) => problems.clone(),
            other => vec![other.to_string()],
        }
    }
}

impl Config {
    /// Reads and validates a policy file; the path is kept for reloads.
    /// Relative paths in it (certificate, key, secret and key files) are
    /// resolved against its directory; environment variables come from
    /// the process.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let mut config = Config::from_toml_with(&text, base_dir, &ProcessEnv)?;
        // Every file the policy names is found relative to the policy.
        for file in [&mut config.tls.cert, &mut config.tls.key] {
            if file.is_relative() {
                *file = base_dir.join(&*file);
            }
        }
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Validates policy text. Relative file paths stay relative to the
    /// working directory; secrets come from the process environment.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with(text, Path::new("."), &ProcessEnv)
    }

    /// Validates policy text, reading secret files relative to `base_dir`
    /// and environment variables from `env`.
    pub fn from_toml_with(
        text: &str,
        base_dir: &Path,
        env: &dyn Environment,
    ) -> Result<Config, ConfigError> {
        let mut problems = Problems::new();
        let parsed = unknown_keys::parse(text, &mut problems)?;
        let ctx = LoadContext {
            env,
            base_dir: base_dir.to_path_buf(),
        };
        let unknown = problems.len();
        let config = validate(parsed.raw, &ctx, &mut problems);
        match config {
            Some(mut config) if problems.is_empty() => {
                use sha2::Digest as _;
                config.sha256 = hex::encode(sha2::Sha256::digest(text.as_bytes()));
                Ok(config)
            }
            _ => {
                // A route listing several `paths` reports a problem of its
                // shared policy once, not once per path.
                // A misspelt key is not reported again as missing.
                let mut listed: Vec<String> = Vec::new();
                for (i, problem) in problems.iter().enumerate() {
                    let follow_on = i >= unknown && parsed.reported.contains(&problem.path);
                    let text = problem.to_string();
                    if !follow_on && !listed.contains(&text) {
                        listed.push(text);
                    }
                }
                Err(ConfigError::Invalid(listed))
            }
        }
    }

    /// Reads the API-key pepper a policy file names (for `keygen`): the
    /// file must be valid TOML of this schema; the rest is not validated.
    pub fn api_key_pepper(path: &Path) -> Result<Secret, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let raw: RawConfig =
            toml::from_str(&text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let ctx = LoadContext {
            env: &ProcessEnv,
            base_dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        };
        let mut found = crate::checks::Problems::new();
        let pepper = crate::checks::api_key::load_pepper(
            &raw.api_keys.unwrap_or_default(),
            "api_keys",
            &ctx,
            &mut found,
        );
        pepper.ok_or_else(|| ConfigError::Invalid(found.iter().map(ToString::to_string).collect()))
    }

    /// How often the idle rate-limit keys are purged
    /// (`state/rate_limits.rs`).
    pub(crate) fn purge_interval(&self) -> Duration {
        self.checks.rate_limit.purge_interval
    }

    /// Gives the policy the certificate now served (its leaf): by default
    /// its names are the ones served. Every listed name the certificate
    /// does not cover, and a `plain_http.redirect_host` that is not served,
    /// is a problem (`key: what`); then nothing changes.
    pub(crate) fn adopt_certificate(
        &mut self,
        leaf: &rustls::pki_types::CertificateDer<'_>,
    ) -> Result<(), Vec<String>> {
        let mut names = self.server.names.clone();
        let mut problems: Vec<String> = match names.adopt(leaf) {
            Ok(()) => Vec::new(),
            Err(uncovered) => uncovered
                .iter()
                .map(|name| {
                    format!("server.names: the certificate (tls.cert) is not valid for `{name}`")
                })
                .collect(),
        };
        let redirect = self
            .plain_http
            .as_ref()
            .and_then(|p| p.redirect_host.as_ref());
        if let Some(host) = redirect.filter(|host| problems.is_empty() && !names.serves(host)) {
            problems.push(format!(
                "plain_http.redirect_host: `{host}` is not one of the names served over HTTPS \
                 (server.names, default: the certificate's)"
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        self.server.names = names;
        Ok(())
    }

    /// SHA-256 of the policy text it was validated from, in hex: what
    /// `tradehabit_gateway_config_info{sha256}` reports.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The file this policy was read from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The certificate file (`tls.cert`).
    pub fn tls_cert(&self) -> &Path {
        &self.tls.cert
    }

    /// The HTTPS listen address as written (port 0 means "any").
    pub fn https_listen(&self) -> SocketAddr {
        self.server.listen
    }

    /// Settings that only take effect at start-up: a reload that changes one
    /// of them is refused, naming each.
    pub(crate) fn restart_only_changes(&self, next: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.server.listen != next.server.listen {
            changed.push("server.listen");
        }
        if self.server.threads != next.server.threads {
            changed.push("server.threads");
        }
        if self.plain_http.as_ref().map(|p| p.listen) != next.plain_http.as_ref().map(|p| p.listen)
        {
            changed.push("plain_http.listen");
        }
        let (a, b) = (&self.upstream, &next.upstream);
        if a.addresses != b.addresses {
            changed.push("upstream.address");
        }
        if (a.hmac_key.as_ref(), a.eject_for) != (b.hmac_key.as_ref(), b.eject_for) {
            changed.push("upstream.hmac_key/eject_for");
        }
        if a.spawn != b.spawn {
            changed.push("upstream.spawn");
        }
        if a.max_in_flight != b.max_in_flight {
            changed.push("upstream.max_in_flight");
        }
        if (a.pool_idle_timeout, a.pool_max_idle, a.connect_timeout)
            != (b.pool_idle_timeout, b.pool_max_idle, b.connect_timeout)
        {
            changed.push("upstream.pool_idle_timeout/pool_max_idle/connect_timeout");
        }
        if self.admin.listen != next.admin.listen {
            changed.push("admin.listen");
        }
        if self.audit.needs_restart(&next.audit) {
            changed.push("audit (all but on_failure)");
        }
        if self.limits.h2_max_concurrent_streams != next.limits.h2_max_concurrent_streams {
            changed.push("limits.h2_max_concurrent_streams");
        }
        if self.checks.rate_limit.store.connection() != next.checks.rate_limit.store.connection() {
            changed.push("rate_limit.store/redis (all but on_store_error)");
        }
        changed
    }
}

fn validate(mut raw: RawConfig, ctx: &LoadContext<'_>, problems: &mut Problems) -> Option<Config> {
    let checks = policy::validate_global(&mut raw, ctx, problems);
    let server = validate_server(raw.server, problems);
    let tls = validate_tls(raw.tls, problems);
    let mut limits = validate_limits(raw.limits.unwrap_or_default(), problems);
    let headers = validate_headers(raw.headers.unwrap_or_default(), problems);
    let upstream = validate_upstream(raw.upstream, ctx, problems);
    if limits.clients.max_upstream_per_ip == 0 {
        // Unset: a share of the upstream slots.
        let slots = upstream
            .as_ref()
            .map_or(DEFAULT_MAX_IN_FLIGHT, |u| u.max_in_flight.get());
        limits.clients.max_upstream_per_ip = (slots / DEFAULT_UPSTREAM_SHARE_DIVISOR).max(1);
    }
    let routes = validate_routes(
        raw.route_defaults.take(),
        raw.routes.unwrap_or_default(),
        checks.as_ref(),
        &ctx.base_dir,
        problems,
    );
    let admin = admin::validate_admin(raw.admin.unwrap_or_default(), problems);
    let audit = audit::validate_audit(raw.audit.unwrap_or_default(), ctx, problems);
    let plain_http = raw
        .plain_http
        .map(|p| validate_plain_http(p, server.as_ref().map(|s| s.listen.port()), problems));
    Some(Config {
        source: None,
        server: server?,
        tls: tls?,
        plain_http: plain_http.flatten(),
        limits,
        headers: headers?,
        upstream: upstream?,
        checks: checks?,
        routes,
        admin: admin?,
        audit,
        sha256: String::new(),
    })
}

fn required<T>(value: Option<T>, key: &str, problems: &mut Problems) -> Option<T> {
    if value.is_none() {
        problems.push(key, "is required");
    }
    value
}

fn socket_addr(text: &str, key: &str, problems: &mut Problems) -> Option<SocketAddr> {
    match text.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.push(
                key,
                format_args!("`{text}` is not an IP:port address (e.g. 0.0.0.0:8443)"),
            );
            None
        }
    }
}

fn duration(
    value: Option<String>,
    key: &str,
    default: Duration,
    problems: &mut Problems,
) -> Duration {
    match value {
        None => default,
        Some(text) => duration::parse(&text).unwrap_or_else(|message| {
            problems.push(key, message);
            default
        }),
    }
}

fn count(
    value: Option<i64>,
    key: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
    problems: &mut Problems,
) -> usize {
    let Some(value) = value else {
        return default;
    };
    match usize::try_from(value) {
        Ok(value) if range.contains(&value) => value,
        _ => {
            problems.push(
                key,
                format_args!("must be between {} and {}", range.start(), range.end()),
            );
            default
        }
    }
}

#[cfg(test)]
mod doc_snippets;
#[cfg(test)]
mod example_defaults;
#[cfg(test)]
pub(crate) mod tests;
