//! What the operator wrote → a validated [`Config`].
//!
//! The policy file is one TOML file (`config/gateway.example.toml` shows
//! every key with its default). Loading has two steps: `raw` mirrors the file
//! with serde and refuses unknown keys; [`Config::from_toml`] then checks
//! every value and reports **all** problems at once, each with its key path
//! (`routes[3].body_limit: must be > 0`). Nothing binds a socket before this
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

mod admin;
mod audit;
mod compressed;
mod duration;
mod policy;
mod raw;

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
pub use audit::{AuditOnFailure, DEFAULT_AUDIT_FAILURE_LOG_INTERVAL, DEFAULT_AUDIT_ON_FAILURE};
pub(crate) use compressed::{CompressedBody, Encoding};
pub(crate) use policy::{PolicyChecks, RouteChecks};
use raw::{
    RawConfig, RawHeaders, RawLimits, RawPlainHttp, RawRoute, RawServer, RawSpawn, RawTls,
    RawUpstream,
};

/// How long shutdown waits for in-flight requests before closing anyway.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
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
}

/// `[server]`: the HTTPS listener and process-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Server {
    /// `listen`, required: the HTTPS address.
    pub(crate) listen: SocketAddr,
    /// `shutdown_timeout`, default [`DEFAULT_SHUTDOWN_TIMEOUT`].
    pub(crate) shutdown_timeout: Duration,
    /// `trusted_proxies`, default none: peers whose `X-Forwarded-For` and
    /// `X-Request-Id` are believed.
    pub(crate) trusted_proxies: Vec<Cidr>,
    /// `names`, default: every name the certificate covers. A request for
    /// another host gets 421 (`host.rs`). The certificate is given to
    /// it at start-up and on reload ([`Config::adopt_certificate`]).
    pub(crate) names: ServerNames,
}

/// `[tls]`: PEM files, re-read on every reload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tls {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    /// Generate a self-signed development certificate at `cert`/`key` when
    /// neither file exists (default false; logged loudly when it happens).
    pub(crate) self_signed_if_missing: bool,
}

/// `[plain_http]`: the optional listener that only redirects or refuses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlainHttp {
    pub(crate) listen: SocketAddr,
    /// The port put in redirects; default: the HTTPS listener's port.
    pub(crate) https_port: u16,
    /// The host put in redirects; default: the request's own host when it
    /// is one of the server's names (else 421). Must itself be served.
    pub(crate) redirect_host: Option<Name>,
    /// Paths under these prefixes are API calls: refused with 403.
    pub(crate) api_prefixes: Vec<String>,
}

/// `[limits]`: connection and request hardening.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Limits {
    pub(crate) tls_handshake_timeout: Duration,
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_header_count: usize,
    pub(crate) max_header_field_bytes: usize,
    pub(crate) max_request_line_bytes: usize,
    pub(crate) h2_max_concurrent_streams: u32,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_ip: usize,
    pub(crate) refusal_drain_timeout: Duration,
    pub(crate) refusal_drain_bytes: usize,
    pub(crate) over_cap_answers_per_second: usize,
    /// `underscore_headers`, default [`DEFAULT_UNDERSCORE_HEADERS`].
    pub(crate) underscore_headers: UnderscoreHeaders,
    /// What one client may hold, and for how long.
    pub(crate) clients: ClientLimits,
}

/// `[limits]` on what one client may hold, and for how long
/// (`docs/security-controls.md`, F-4 and F-5).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClientLimits {
    /// How long a response may make no progress toward the client.
    pub(crate) send_timeout: Duration,
    /// Requests in flight per client IP, across its connections.
    pub(crate) max_requests_per_ip: usize,
    /// Upstream slots held per client IP (set, or a share of
    /// `upstream.max_in_flight`).
    pub(crate) max_upstream_per_ip: usize,
}

/// `limits.underscore_headers`: request headers whose names contain `_`.
/// WSGI servers (gunicorn) map `X_Foo` and `X-Foo` to the same variable, so
/// such a header could pose as one the gateway owns. Whatever the setting,
/// none is ever forwarded (`proxy/headers.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnderscoreHeaders {
    /// `"drop"`: removed before forwarding; the request goes on.
    Drop,
    /// `"refuse"`: the request is refused with 400.
    Refuse,
}

/// `[headers]`: the security headers added to every HTTPS response.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SecurityHeaders {
    /// The complete `Strict-Transport-Security` value.
    pub(crate) hsts: HeaderValue,
    pub(crate) content_security_policy: HeaderValue,
}

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpstreamAddress {
    /// `unix:/path/to.sock`
    Unix(PathBuf),
    /// `http://host:port`
    Tcp { host: String, port: u16 },
}

/// `[upstream]`
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Upstream {
    pub(crate) address: UpstreamAddress,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) max_in_flight: NonZeroUsize,
    pub(crate) queue_timeout: Duration,
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) pool_max_idle: usize,
    pub(crate) retry_after: Duration,
    /// Answers up to this many bytes are read in full before the client
    /// gets them (0: always streamed).
    pub(crate) response_buffer_bytes: usize,
    /// Replace the bodies of upstream 5xx answers with a generic envelope
    /// (the legacy backend puts Python exception texts in its 500s).
    pub(crate) replace_error_bodies: bool,
    /// The path the readiness probe GETs, default [`DEFAULT_READY_PATH`].
    pub(crate) ready_path: String,
    pub(crate) spawn: Option<Spawn>,
}

/// `[upstream.spawn]`: a child process the gateway supervises.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spawn {
    /// Program and arguments; `{socket}` is replaced by the socket path.
    pub(crate) command: Vec<String>,
    pub(crate) ready_timeout: Duration,
    pub(crate) restart_backoff_max: Duration,
}

/// How a route's `path` is compared with the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathMatch {
    /// The request path equals `path`.
    Exact,
    /// The request path is `path` or continues it after a `/`.
    Prefix,
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Route {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) path_match: PathMatch,
    /// Allowed methods; `GET` implies `HEAD`.
    pub(crate) methods: Vec<Method>,
    /// Largest request body in bytes, default [`DEFAULT_ROUTE_BODY_LIMIT`].
    pub(crate) body_limit: u64,
    /// Authentication, scopes, rate limits, CORS, query and body rules.
    pub(crate) checks: RouteChecks,
    /// Compressed bodies accepted and decoded (`compressed_body`); `None`
    /// refuses them (415).
    pub(crate) compressed_body: Option<CompressedBody>,
}

/// Why a policy file was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
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
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
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
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let ctx = LoadContext {
            env,
            base_dir: base_dir.to_path_buf(),
        };
        let mut problems = Problems::new();
        let config = validate(raw, &ctx, &mut problems);
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(ConfigError::Invalid(
                problems.iter().map(ToString::to_string).collect(),
            )),
        }
    }

    /// Reads the API-key pepper a policy file names (for `keygen`): the
    /// file must be valid TOML of this schema; the rest is not validated.
    pub fn api_key_pepper(path: &Path) -> Result<Secret, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
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

    /// Keeps the rate-limit state of routes whose quotas did not change, so
    /// a reload does not hand every client a fresh budget.
    pub(crate) fn keep_rate_limit_state(&mut self, previous: &Config) {
        for route in &mut self.routes {
            let kept = previous
                .routes
                .iter()
                .find(|old| old.name == route.name && old.checks.quotas == route.checks.quotas);
            if let (Some(old), Some(route)) = (kept, Arc::get_mut(route)) {
                route.checks.limiters = Arc::clone(&old.checks.limiters);
            }
        }
        let (next, old) = (&mut self.checks, &previous.checks);
        let same_session = next.auth.tokens().session() == old.auth.tokens().session();
        if same_session {
            next.session_endpoint.clone_from(&old.session_endpoint);
        }
        if next.auth.tokens().exchange() == old.auth.tokens().exchange() {
            next.token_endpoint.clone_from(&old.token_endpoint);
        }
    }

    /// Drops idle rate-limit keys everywhere (called every
    /// `rate_limit.purge_interval_seconds`).
    pub(crate) fn purge_rate_limits(&self) {
        for route in &self.routes {
            route.checks.limiters.retain_recent();
        }
        let endpoints = [&self.checks.session_endpoint, &self.checks.token_endpoint];
        for limiters in endpoints.into_iter().flatten() {
            limiters.retain_recent();
        }
    }

    /// Keys tracked by every rate limiter of this policy.
    pub(crate) fn rate_limit_tracked_keys(&self) -> usize {
        let endpoints = [&self.checks.session_endpoint, &self.checks.token_endpoint];
        self.routes
            .iter()
            .map(|route| route.checks.limiters.tracked_keys())
            .chain(endpoints.into_iter().flatten().map(|l| l.tracked_keys()))
            .sum()
    }

    /// How often [`Config::purge_rate_limits`] should run.
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

    /// The file this configuration was read from, if any.
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
        if self.plain_http.as_ref().map(|p| p.listen) != next.plain_http.as_ref().map(|p| p.listen)
        {
            changed.push("plain_http.listen");
        }
        let (a, b) = (&self.upstream, &next.upstream);
        if a.address != b.address {
            changed.push("upstream.address");
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
        changed
    }
}

fn validate(mut raw: RawConfig, ctx: &LoadContext<'_>, problems: &mut Problems) -> Option<Config> {
    let checks = policy::validate_global(&mut raw, ctx, problems);
    let server = validate_server(raw.server, problems);
    let tls = validate_tls(raw.tls, problems);
    let mut limits = validate_limits(raw.limits.unwrap_or_default(), problems);
    let headers = validate_headers(raw.headers.unwrap_or_default(), problems);
    let upstream = validate_upstream(raw.upstream, problems);
    if limits.clients.max_upstream_per_ip == 0 {
        // Unset: a share of the upstream slots.
        let slots = upstream
            .as_ref()
            .map_or(DEFAULT_MAX_IN_FLIGHT, |u| u.max_in_flight.get());
        limits.clients.max_upstream_per_ip = (slots / DEFAULT_UPSTREAM_SHARE_DIVISOR).max(1);
    }
    let routes = validate_routes(raw.routes.unwrap_or_default(), checks.as_ref(), problems);
    let admin = admin::validate_admin(raw.admin.unwrap_or_default(), problems);
    let audit = audit::validate_audit(raw.audit.unwrap_or_default(), problems);
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
    })
}

fn validate_server(raw: Option<RawServer>, problems: &mut Problems) -> Option<Server> {
    let Some(raw) = raw else {
        problems.push("server", "missing table (it needs at least `listen`)");
        return None;
    };
    let listen = required(raw.listen, "server.listen", problems)
        .and_then(|text| socket_addr(&text, "server.listen", problems));
    let shutdown_timeout = duration(
        raw.shutdown_timeout,
        "server.shutdown_timeout",
        DEFAULT_SHUTDOWN_TIMEOUT,
        problems,
    );
    let mut trusted_proxies = Vec::new();
    for (i, text) in raw.trusted_proxies.unwrap_or_default().iter().enumerate() {
        match Cidr::parse(text) {
            Ok(cidr) if cidr.is_everything() => problems.push(
                format_args!("server.trusted_proxies[{i}]"),
                format_args!(
                    "`{text}` would trust every address, so any client could forge its own"
                ),
            ),
            Ok(cidr) => trusted_proxies.push(cidr),
            Err(message) => problems.push(format_args!("server.trusted_proxies[{i}]"), message),
        }
    }
    let names = raw.names.map(|names| server_names(&names, problems));
    Some(Server {
        listen: listen?,
        shutdown_timeout,
        trusted_proxies,
        names: ServerNames::new(names),
    })
}

/// `server.names`: host names or IP addresses, no ports, no wildcards.
fn server_names(texts: &[String], problems: &mut Problems) -> Vec<Name> {
    if texts.is_empty() {
        problems.push(
            "server.names",
            "must list at least one name (leave it out to serve the certificate's names)",
        );
    }
    let mut names = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        match Name::parse(text) {
            Some(name) if !names.contains(&name) => names.push(name),
            Some(_) => problems.push(
                format_args!("server.names[{i}]"),
                format_args!("`{text}` is listed twice"),
            ),
            None => problems.push(
                format_args!("server.names[{i}]"),
                format_args!(
                    "`{text}` is not a host name or IP address (no port, no wildcard, IPv6 in brackets or bare)"
                ),
            ),
        }
    }
    names
}

fn validate_tls(raw: Option<RawTls>, problems: &mut Problems) -> Option<Tls> {
    let Some(raw) = raw else {
        problems.push("tls", "missing table (it needs `cert` and `key`)");
        return None;
    };
    let cert = required(raw.cert, "tls.cert", problems).map(PathBuf::from);
    let key = required(raw.key, "tls.key", problems).map(PathBuf::from);
    Some(Tls {
        cert: cert?,
        key: key?,
        self_signed_if_missing: raw.self_signed_if_missing.unwrap_or(false),
    })
}

fn validate_plain_http(
    raw: RawPlainHttp,
    https_port: Option<u16>,
    problems: &mut Problems,
) -> Option<PlainHttp> {
    let listen = required(raw.listen, "plain_http.listen", problems)
        .and_then(|text| socket_addr(&text, "plain_http.listen", problems));
    let https_port = match raw.https_port {
        None => https_port,
        Some(port) => match u16::try_from(port) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                problems.push("plain_http.https_port", "must be between 1 and 65535");
                None
            }
        },
    };
    let redirect_host = raw.redirect_host.as_deref().and_then(|host| {
        let name = Name::parse(host);
        if name.is_none() {
            problems.push(
                "plain_http.redirect_host",
                "must be a bare host name or IP address (no port, no scheme)",
            );
        }
        name
    });
    let api_prefixes = raw
        .api_prefixes
        .unwrap_or_else(|| DEFAULT_API_PREFIXES.iter().map(|p| p.to_string()).collect());
    for (i, prefix) in api_prefixes.iter().enumerate() {
        if !prefix.starts_with('/') {
            problems.push(
                format_args!("plain_http.api_prefixes[{i}]"),
                "must start with `/`",
            );
        }
    }
    Some(PlainHttp {
        listen: listen?,
        https_port: https_port?,
        redirect_host,
        api_prefixes,
    })
}

fn validate_limits(raw: RawLimits, problems: &mut Problems) -> Limits {
    let clients = validate_client_limits(&raw, problems);
    let d = |value, key, default, problems: &mut Problems| {
        let value = duration(value, key, default, problems);
        if value.is_zero() {
            problems.push(key, "must be longer than 0");
        }
        value
    };
    Limits {
        tls_handshake_timeout: d(
            raw.tls_handshake_timeout,
            "limits.tls_handshake_timeout",
            DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            problems,
        ),
        header_read_timeout: d(
            raw.header_read_timeout,
            "limits.header_read_timeout",
            DEFAULT_HEADER_READ_TIMEOUT,
            problems,
        ),
        idle_timeout: d(
            raw.idle_timeout,
            "limits.idle_timeout",
            DEFAULT_IDLE_TIMEOUT,
            problems,
        ),
        request_timeout: d(
            raw.request_timeout,
            "limits.request_timeout",
            DEFAULT_REQUEST_TIMEOUT,
            problems,
        ),
        // hyper refuses header buffers under 8 KiB.
        max_header_bytes: count(
            raw.max_header_bytes,
            "limits.max_header_bytes",
            DEFAULT_MAX_HEADER_BYTES,
            8192..=1 << 20,
            problems,
        ),
        max_header_count: count(
            raw.max_header_count,
            "limits.max_header_count",
            DEFAULT_MAX_HEADER_COUNT,
            1..=1000,
            problems,
        ),
        max_header_field_bytes: count(
            raw.max_header_field_bytes,
            "limits.max_header_field_bytes",
            DEFAULT_MAX_HEADER_FIELD_BYTES,
            64..=1 << 20,
            problems,
        ),
        max_request_line_bytes: count(
            raw.max_request_line_bytes,
            "limits.max_request_line_bytes",
            DEFAULT_MAX_REQUEST_LINE_BYTES,
            64..=1 << 20,
            problems,
        ),
        h2_max_concurrent_streams: count(
            raw.h2_max_concurrent_streams,
            "limits.h2_max_concurrent_streams",
            DEFAULT_H2_MAX_CONCURRENT_STREAMS as usize,
            1..=10_000,
            problems,
        ) as u32,
        max_connections: count(
            raw.max_connections,
            "limits.max_connections",
            DEFAULT_MAX_CONNECTIONS,
            1..=1_000_000,
            problems,
        ),
        max_connections_per_ip: count(
            raw.max_connections_per_ip,
            "limits.max_connections_per_ip",
            DEFAULT_MAX_CONNECTIONS_PER_IP,
            1..=1_000_000,
            problems,
        ),
        refusal_drain_timeout: drain_timeout(raw.refusal_drain_timeout, problems),
        refusal_drain_bytes: count(
            raw.refusal_drain_bytes,
            "limits.refusal_drain_bytes",
            DEFAULT_REFUSAL_DRAIN_BYTES,
            0..=1 << 30,
            problems,
        ),
        over_cap_answers_per_second: count(
            raw.over_cap_answers_per_second,
            "limits.over_cap_answers_per_second",
            DEFAULT_OVER_CAP_ANSWERS_PER_SECOND,
            0..=10_000,
            problems,
        ),
        underscore_headers: underscore_headers(raw.underscore_headers.as_deref(), problems),
        clients,
    }
}

fn underscore_headers(value: Option<&str>, problems: &mut Problems) -> UnderscoreHeaders {
    match value {
        None => DEFAULT_UNDERSCORE_HEADERS,
        Some("drop") => UnderscoreHeaders::Drop,
        Some("refuse") => UnderscoreHeaders::Refuse,
        Some(other) => {
            problems.push(
                "limits.underscore_headers",
                format_args!("`{other}` is not `drop` or `refuse`"),
            );
            DEFAULT_UNDERSCORE_HEADERS
        }
    }
}

/// The `[limits]` on what one client may hold, and for how long.
fn validate_client_limits(raw: &RawLimits, problems: &mut Problems) -> ClientLimits {
    let key = "limits.send_timeout";
    let send_timeout = duration(
        raw.send_timeout.clone(),
        key,
        DEFAULT_SEND_TIMEOUT,
        problems,
    );
    if send_timeout.is_zero() {
        problems.push(key, "must be longer than 0");
    }
    ClientLimits {
        send_timeout,
        max_requests_per_ip: count(
            raw.max_requests_per_ip,
            "limits.max_requests_per_ip",
            DEFAULT_MAX_REQUESTS_PER_IP,
            1..=1_000_000,
            problems,
        ),
        // 0 until resolved against `upstream.max_in_flight` in `validate`.
        max_upstream_per_ip: count(
            raw.max_upstream_per_ip,
            "limits.max_upstream_per_ip",
            0,
            1..=1_000_000,
            problems,
        ),
    }
}

fn validate_headers(raw: RawHeaders, problems: &mut Problems) -> Option<SecurityHeaders> {
    let max_age = match raw.hsts_max_age {
        None => Some(DEFAULT_HSTS_MAX_AGE_SECS),
        Some(age) if age >= 0 => Some(age as u64),
        Some(_) => {
            problems.push("headers.hsts_max_age", "must be >= 0 (seconds)");
            None
        }
    };
    let include_subdomains = raw.hsts_include_subdomains.unwrap_or(true);
    let preload = raw.hsts_preload.unwrap_or(false);
    if let (true, Some(age)) = (preload, max_age) {
        if age < HSTS_PRELOAD_MIN_AGE_SECS || !include_subdomains {
            problems.push(
                "headers.hsts_preload",
                "the preload list needs hsts_max_age >= 31536000 and hsts_include_subdomains = true",
            );
        }
    }
    let csp_text = raw
        .content_security_policy
        .unwrap_or_else(|| DEFAULT_CONTENT_SECURITY_POLICY.to_string());
    let csp = match HeaderValue::from_str(&csp_text) {
        Ok(value) if !csp_text.trim().is_empty() => Some(value),
        _ => {
            problems.push(
                "headers.content_security_policy",
                "must be a non-empty, printable header value",
            );
            None
        }
    };
    let mut hsts = format!("max-age={}", max_age?);
    if include_subdomains {
        hsts.push_str("; includeSubDomains");
    }
    if preload {
        hsts.push_str("; preload");
    }
    Some(SecurityHeaders {
        hsts: HeaderValue::from_str(&hsts).expect("digits and ASCII words form a header value"),
        content_security_policy: csp?,
    })
}

fn validate_upstream(raw: Option<RawUpstream>, problems: &mut Problems) -> Option<Upstream> {
    let Some(raw) = raw else {
        problems.push("upstream", "missing table (it needs at least `address`)");
        return None;
    };
    let address = required(raw.address, "upstream.address", problems)
        .and_then(|text| upstream_address(&text, problems));
    let connect_timeout = duration(
        raw.connect_timeout,
        "upstream.connect_timeout",
        DEFAULT_CONNECT_TIMEOUT,
        problems,
    );
    let response_timeout = duration(
        raw.response_timeout,
        "upstream.response_timeout",
        DEFAULT_RESPONSE_TIMEOUT,
        problems,
    );
    let max_in_flight = count(
        raw.max_in_flight,
        "upstream.max_in_flight",
        DEFAULT_MAX_IN_FLIGHT,
        1..=1_000_000,
        problems,
    );
    let queue_timeout = duration(
        raw.queue_timeout,
        "upstream.queue_timeout",
        DEFAULT_QUEUE_TIMEOUT,
        problems,
    );
    let pool_idle_timeout = duration(
        raw.pool_idle_timeout,
        "upstream.pool_idle_timeout",
        DEFAULT_POOL_IDLE_TIMEOUT,
        problems,
    );
    let pool_max_idle = count(
        raw.pool_max_idle,
        "upstream.pool_max_idle",
        DEFAULT_POOL_MAX_IDLE,
        0..=1_000_000,
        problems,
    );
    let retry_after = duration(
        raw.retry_after,
        "upstream.retry_after",
        DEFAULT_RETRY_AFTER,
        problems,
    );
    let response_buffer_bytes = count(
        raw.response_buffer_bytes,
        "upstream.response_buffer_bytes",
        DEFAULT_RESPONSE_BUFFER_BYTES,
        0..=16 << 20,
        problems,
    );
    let spawn = raw
        .spawn
        .map(|spawn| validate_spawn(spawn, &address, problems));
    Some(Upstream {
        address: address?,
        connect_timeout,
        response_timeout,
        max_in_flight: NonZeroUsize::new(max_in_flight).unwrap_or(NonZeroUsize::MIN),
        queue_timeout,
        pool_idle_timeout,
        pool_max_idle,
        retry_after,
        response_buffer_bytes,
        replace_error_bodies: raw.replace_error_bodies.unwrap_or(true),
        ready_path: ready_path(raw.ready_path, problems),
        spawn: spawn.flatten(),
    })
}

fn validate_spawn(
    raw: RawSpawn,
    address: &Option<UpstreamAddress>,
    problems: &mut Problems,
) -> Option<Spawn> {
    if matches!(address, Some(UpstreamAddress::Tcp { .. })) {
        problems.push(
            "upstream.spawn",
            "needs a `unix:` upstream address (the child is given the socket path)",
        );
    }
    let command = required(raw.command, "upstream.spawn.command", problems);
    if command.as_ref().is_some_and(|c| c.is_empty()) {
        problems.push("upstream.spawn.command", "must name a program");
    }
    let ready_timeout = duration(
        raw.ready_timeout,
        "upstream.spawn.ready_timeout",
        DEFAULT_SPAWN_READY_TIMEOUT,
        problems,
    );
    let restart_backoff_max = duration(
        raw.restart_backoff_max,
        "upstream.spawn.restart_backoff_max",
        DEFAULT_RESTART_BACKOFF_MAX,
        problems,
    );
    Some(Spawn {
        command: command?,
        ready_timeout,
        restart_backoff_max,
    })
}

fn validate_routes(
    raw: Vec<RawRoute>,
    checks: Option<&PolicyChecks>,
    problems: &mut Problems,
) -> Vec<Arc<Route>> {
    if raw.is_empty() {
        problems.push(
            "routes",
            "no [[routes]]: every request would be refused with 404",
        );
    }
    let mut routes = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, raw) in raw.into_iter().enumerate() {
        if let Some(name) = &raw.name {
            if names.contains(name) {
                problems.push(
                    format_args!("routes[{i}].name"),
                    format_args!("`{name}` is used by an earlier route"),
                );
            }
            names.push(name.clone());
        }
        if let Some(route) = validate_route(i, raw, checks, problems) {
            routes.push(Arc::new(route));
        }
    }
    routes
}

fn validate_route(
    i: usize,
    raw: RawRoute,
    checks: Option<&PolicyChecks>,
    problems: &mut Problems,
) -> Option<Route> {
    let key = |field: &str| format!("routes[{i}].{field}");
    let limit_for_checks = raw
        .body_limit
        .map_or(Some(DEFAULT_ROUTE_BODY_LIMIT), |l| u64::try_from(l).ok());
    let route_checks = policy::validate_route(i, &raw, limit_for_checks, checks, problems);
    let compressed_body = match raw.compressed_body {
        None => Some(None),
        Some(allowance) => {
            compressed::validate(allowance, &key("compressed_body"), problems).map(Some)
        }
    };
    let name = required(raw.name, &key("name"), problems);
    if name.as_ref().is_some_and(|n| n.trim().is_empty()) {
        problems.push(key("name"), "must not be empty");
    }
    let route_path = required(raw.path, &key("path"), problems);
    if let Some(p) = &route_path {
        if let Err(reason) = path::check(p) {
            problems.push(key("path"), format_args!("`{p}` {reason}"));
        }
    }
    let path_match = match raw.match_.as_deref() {
        None | Some("exact") => Some(PathMatch::Exact),
        Some("prefix") => Some(PathMatch::Prefix),
        Some(other) => {
            problems.push(
                key("match"),
                format_args!("`{other}` is not `exact` or `prefix`"),
            );
            None
        }
    };
    let methods = required(raw.methods, &key("methods"), problems).map(|list| {
        if list.is_empty() {
            problems.push(key("methods"), "must list at least one method");
        }
        list.iter()
            .enumerate()
            .filter_map(|(j, text)| {
                route_method(text, &format!("{}[{j}]", key("methods")), problems)
            })
            .collect::<Vec<_>>()
    });
    let body_limit = match raw.body_limit {
        None => Some(DEFAULT_ROUTE_BODY_LIMIT),
        Some(limit) if limit > 0 && limit as u64 <= MAX_ROUTE_BODY_LIMIT => Some(limit as u64),
        Some(limit) if limit <= 0 => {
            problems.push(key("body_limit"), "must be > 0");
            None
        }
        Some(_) => {
            problems.push(
                key("body_limit"),
                format_args!("must be at most {MAX_ROUTE_BODY_LIMIT} bytes"),
            );
            None
        }
    };
    Some(Route {
        name: name?,
        path: route_path?,
        path_match: path_match?,
        methods: methods?,
        body_limit: body_limit?,
        checks: route_checks?,
        compressed_body: compressed_body?,
    })
}

fn route_method(text: &str, key: &str, problems: &mut Problems) -> Option<Method> {
    if text != text.to_ascii_uppercase() {
        problems.push(key, format_args!("`{text}` must be upper case"));
        return None;
    }
    // TRACE reflects requests (credentials included) and CONNECT opens
    // tunnels: a gateway never forwards either (ASVS 13.4.4).
    if text == "TRACE" || text == "CONNECT" {
        problems.push(key, format_args!("`{text}` is never forwarded"));
        return None;
    }
    match Method::from_bytes(text.as_bytes()) {
        Ok(method) => Some(method),
        Err(_) => {
            problems.push(key, format_args!("`{text}` is not an HTTP method"));
            None
        }
    }
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

/// `limits.refusal_drain_timeout`: 0 turns draining off; longer than
/// [`MAX_REFUSAL_DRAIN_TIMEOUT`] would let refused clients hold connections.
fn drain_timeout(value: Option<String>, problems: &mut Problems) -> Duration {
    let key = "limits.refusal_drain_timeout";
    let value = duration(value, key, DEFAULT_REFUSAL_DRAIN_TIMEOUT, problems);
    if value > MAX_REFUSAL_DRAIN_TIMEOUT {
        problems.push(key, "must be 60s or less");
        return DEFAULT_REFUSAL_DRAIN_TIMEOUT;
    }
    value
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

fn ready_path(value: Option<String>, problems: &mut Problems) -> String {
    let path = value.unwrap_or_else(|| DEFAULT_READY_PATH.to_string());
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        problems.push(
            "upstream.ready_path",
            "must be an absolute path with no query",
        );
    }
    path
}

fn upstream_address(text: &str, problems: &mut Problems) -> Option<UpstreamAddress> {
    const KEY: &str = "upstream.address";
    if let Some(socket) = text.strip_prefix("unix:") {
        if !socket.starts_with('/') {
            problems.push(KEY, "a unix: socket path must be absolute");
            return None;
        }
        return Some(UpstreamAddress::Unix(PathBuf::from(socket)));
    }
    let Some(authority) = text.strip_prefix("http://") else {
        problems.push(
            KEY,
            format_args!("`{text}` is neither `unix:/path.sock` nor `http://host:port`"),
        );
        return None;
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let uri_authority: Option<http::uri::Authority> = authority.parse().ok();
    match uri_authority {
        Some(a) if !authority.contains('@') && !a.host().is_empty() => Some(UpstreamAddress::Tcp {
            host: a.host().trim_matches(['[', ']']).to_string(),
            port: a.port_u16().unwrap_or(80),
        }),
        _ => {
            problems.push(
                KEY,
                format_args!("`{text}` must be http://host:port with no path or credentials"),
            );
            None
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
