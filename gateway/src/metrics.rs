//! Metrics: the gateway's Prometheus registry. Every stage reports here;
//! the admin listener (`admin.rs`) serves it on `/metrics`.
//!
//! The names are a contract: `deploy/prometheus/alerts.yml` and its
//! promtool tests depend on them, and `docs/audit-and-metrics.md` lists
//! them. Labels are bounded: route *names* (or `unmatched`), known methods
//! (or `OTHER`), status classes, check names — never user ids, IPs or raw
//! paths.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use http::{Method, StatusCode};
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::conn::HeadError;

mod answered;
mod info;
mod pool;
mod rate_limit_store;
mod sharded;
pub(crate) use rate_limit_store::StoreMetrics;
use sharded::{Remembered, ShardedCounter, ShardedHistogram};

/// Request and upstream duration buckets, in seconds.
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Upload size buckets, as fractions of the route's file limit. The
/// "uploads near the limit" alert relies on a boundary at exactly 90% of
/// the limit; for the default 2 MiB they are 16384, 65536, 262144, 1048576,
/// 1887436.8, 2097152 and 4194304 bytes.
const UPLOAD_BUCKET_FRACTIONS: [f64; 7] = [1.0 / 128.0, 1.0 / 32.0, 0.125, 0.5, 0.9, 1.0, 2.0];
/// The methods that get their own label value; anything else is `OTHER`.
const KNOWN_METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    method: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabel {
    check: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabel {
    protocol: &'static str,
}

/// The `protocol` labels of `client_stalls_total`.
pub(crate) const STALL_PROTOCOLS: [&str; 2] = ["h2", "http1"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

fn duration_histogram() -> ShardedHistogram {
    ShardedHistogram::new(&DURATION_BUCKETS)
}

fn route_label(route: &str) -> RouteLabel {
    RouteLabel {
        route: route.to_owned(),
    }
}

/// The series one answer writes.
#[derive(Debug)]
struct AnswerSeries {
    /// `requests` (route, method, status class).
    count: ShardedCounter,
    /// `request_duration_seconds` (route).
    duration: ShardedHistogram,
    /// `upstream_duration_seconds` (route), made when first observed: an
    /// answer that never reached the upstream adds no series.
    upstream: std::sync::OnceLock<ShardedHistogram>,
}

/// The handles one serving thread keeps on the per-request series it has
/// written (`metrics/sharded.rs`).
#[derive(Debug, Default)]
struct RequestSeries {
    /// By route, method and status class: one look-up per request for
    /// all three series it writes.
    answers: Remembered<(String, &'static str, &'static str), AnswerSeries>,
    /// `upload_bytes` by route (`None`: not an upload route), as of a
    /// generation of the upload routes.
    uploads: Remembered<(String, u64), Option<Histogram>>,
}

/// The upload routes of the policy in force, by name: every route with an
/// `upload` rule, its file limit and the histogram of its body sizes.
/// Replaced on each policy load; a route whose limit is unchanged keeps its
/// histogram.
#[derive(Debug, Clone, Default)]
struct UploadRoutes(Arc<RwLock<BTreeMap<String, UploadRoute>>>);

#[derive(Debug)]
struct UploadRoute {
    limit: u64,
    sizes: Histogram,
}

impl UploadRoute {
    fn new(limit: u64) -> Self {
        // Exact for the alert: `limit * 0.9` is computed the same way by
        // PromQL, and the shortest round-trip formatting keeps it exact.
        let buckets = UPLOAD_BUCKET_FRACTIONS.map(|fraction| limit as f64 * fraction);
        UploadRoute {
            limit,
            sizes: Histogram::new(buckets),
        }
    }
}

impl UploadRoutes {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, UploadRoute>> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `upload_bytes`: one histogram per upload route.
#[derive(Debug)]
struct UploadSizes(UploadRoutes);

impl EncodeMetric for UploadSizes {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (route, upload) in self.0.read().iter() {
            let label = RouteLabel {
                route: route.clone(),
            };
            upload.sizes.encode(encoder.encode_family(&label)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// `upload_limit_bytes`: one gauge per upload route.
#[derive(Debug)]
struct UploadLimits(UploadRoutes);

impl EncodeMetric for UploadLimits {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (route, upload) in self.0.read().iter() {
            let label = RouteLabel {
                route: route.clone(),
            };
            let limit = ConstGauge::new(i64::try_from(upload.limit).unwrap_or(i64::MAX));
            limit.encode(encoder.encode_family(&label)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// The registry and a handle on every metric in it.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, ShardedCounter>,
    request_duration: Family<RouteLabel, ShardedHistogram, fn() -> ShardedHistogram>,
    upstream_duration: Family<RouteLabel, ShardedHistogram, fn() -> ShardedHistogram>,
    request_series: RequestSeries,
    auth_failures: Family<AuthLabels, Counter>,
    rate_limited: Family<RouteLabel, Counter>,
    rejections: Family<CheckLabel, Counter>,
    upload_routes: UploadRoutes,
    /// Counts the replacements of `upload_routes`.
    upload_generation: AtomicU64,
    active_connections: Gauge,
    tls_handshake_failures: Counter,
    connection_errors: Family<ReasonLabel, Counter>,
    client_stalls: Family<ProtocolLabel, Counter>,
    refusals_delayed: Counter,
    config_reloads: Family<ResultLabel, Counter>,
    worker_restarts: Counter,
    upstream_up: Gauge,
    upstream_workers_ready: Gauge,
    /// The supervisor's restart count, mirrored into `worker_restarts`
    /// at each scrape.
    restarts_source: OnceLock<Arc<AtomicU64>>,
    audit_write_failures: Counter,
    /// The audit log's count of lines it could not write, mirrored into
    /// `audit_write_failures` at each scrape.
    audit_failures_source: OnceLock<Arc<AtomicU64>>,
    /// The policy hash, last reload and certificate expiry (`info.rs`).
    in_force: info::InForce,
    /// The shared rate-limit store's latency and errors.
    rate_limit_store: StoreMetrics,
    /// The pool size and each worker's metrics scrape (`pool.rs`).
    pool: pool::PoolMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric, with `config_reloads` and
    /// `connection_errors` pre-initialised. The upload metrics stay empty
    /// until [`Metrics::follow_upload_routes`] is given a policy.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("tradehabit_gateway");
        let metrics = Metrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(duration_histogram),
            upstream_duration: Family::new_with_constructor(duration_histogram),
            request_series: RequestSeries::default(),
            auth_failures: Family::default(),
            rate_limited: Family::default(),
            rejections: Family::default(),
            upload_routes: UploadRoutes::default(),
            upload_generation: AtomicU64::new(0),
            active_connections: Gauge::default(),
            tls_handshake_failures: Counter::default(),
            connection_errors: Family::default(),
            client_stalls: Family::default(),
            refusals_delayed: Counter::default(),
            config_reloads: Family::default(),
            worker_restarts: Counter::default(),
            upstream_up: Gauge::default(),
            upstream_workers_ready: Gauge::default(),
            restarts_source: OnceLock::new(),
            audit_write_failures: Counter::default(),
            audit_failures_source: OnceLock::new(),
            in_force: info::InForce::default(),
            rate_limit_store: StoreMetrics::new(),
            pool: pool::PoolMetrics::default(),
            registry: Registry::default(),
        };
        metrics.register_requests(&mut registry);
        metrics.register_connections(&mut registry);
        metrics.register_services(&mut registry);
        metrics.in_force.register(&mut registry);
        metrics.rate_limit_store.register(&mut registry);
        metrics.pool.register(&mut registry);
        let m = &metrics;
        for result in ["success", "failure"] {
            let _ = m.config_reloads.get_or_create(&ResultLabel { result });
        }
        for protocol in STALL_PROTOCOLS {
            let _ = m.client_stalls.get_or_create(&ProtocolLabel { protocol });
        }
        for error in HeadError::ALL {
            let _ = m.connection_errors.get_or_create(&ReasonLabel {
                reason: error.label(),
            });
        }
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Registers the per-request series (counts, durations, refusals, uploads).
    fn register_requests(&self, registry: &mut Registry) {
        registry.register(
            "requests",
            "Requests answered, by route name, method and status class",
            self.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from the request head to the response head",
            self.request_duration.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time the upstream took to answer a forwarded request",
            self.upstream_duration.clone(),
        );
        registry.register(
            "auth_failures",
            "Failed authentications, by method and reason",
            self.auth_failures.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit, by route",
            self.rate_limited.clone(),
        );
        registry.register(
            "rejections",
            "Requests refused by the gateway, by the check that refused",
            self.rejections.clone(),
        );
        registry.register(
            "upload_bytes",
            "Request body sizes on the routes with an upload rule, by route",
            UploadSizes(self.upload_routes.clone()),
        );
        registry.register(
            "upload_limit_bytes",
            "The configured upload file limit, by route",
            UploadLimits(self.upload_routes.clone()),
        );
    }

    /// Registers the connection series (open connections, handshake failures, connection errors, stalls).
    fn register_connections(&self, registry: &mut Registry) {
        registry.register(
            "active_connections",
            "Open client connections",
            self.active_connections.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            self.tls_handshake_failures.clone(),
        );
        registry.register(
            "connection_errors",
            "Connections closed before a request existed (request head timed out, too large or malformed), by reason",
            self.connection_errors.clone(),
        );
        registry.register(
            "client_stalls",
            "Response bodies abandoned because the client took nothing for limits.send_timeout, by protocol",
            self.client_stalls.clone(),
        );
        registry.register(
            "refusals_delayed",
            "Refusals held for limits.refusal_delay because their client IP had more than limits.refusal_delay_after a second",
            self.refusals_delayed.clone(),
        );
    }

    /// Registers the gateway's own series (reloads, upstream restarts and readiness, audit failures).
    fn register_services(&self, registry: &mut Registry) {
        registry.register(
            "config_reloads",
            "Policy reloads, by result",
            self.config_reloads.clone(),
        );
        registry.register(
            "worker_restarts",
            "Restarts of the supervised upstream",
            self.worker_restarts.clone(),
        );
        registry.register(
            "upstream_up",
            "1 when the last readiness probe of the upstream succeeded",
            self.upstream_up.clone(),
        );
        registry.register(
            "upstream_workers_ready",
            "Workers of upstream.addresses that passed the last readiness probe",
            self.upstream_workers_ready.clone(),
        );
        registry.register(
            "audit_write_failures",
            "Audit lines that could not be written (full disk, I/O error); each is counted in the next audit_gap record",
            self.audit_write_failures.clone(),
        );
    }

    /// The shared rate-limit store's series.
    pub(crate) fn rate_limit_store(&self) -> StoreMetrics {
        self.rate_limit_store.clone()
    }

    /// Counts one answered request and its durations.
    pub(crate) fn request(
        &self,
        route: Option<&str>,
        method: &Method,
        status: StatusCode,
        duration: Duration,
        upstream: Option<Duration>,
    ) {
        let route = route.unwrap_or("unmatched");
        let (method, status_class) = (method_label(method), status_class(status));
        let series = &self.request_series;
        series.answers.with(
            |(r, m, s)| r == route && *m == method && *s == status_class,
            || (route.to_owned(), method, status_class),
            || {
                let labels = RequestLabels {
                    route: route.to_owned(),
                    method,
                    status_class,
                };
                AnswerSeries {
                    count: self.requests.get_or_create(&labels).clone(),
                    duration: self
                        .request_duration
                        .get_or_create(&route_label(route))
                        .clone(),
                    upstream: std::sync::OnceLock::new(),
                }
            },
            |series| {
                series.count.inc();
                series.duration.observe(duration.as_secs_f64());
                if let Some(upstream) = upstream {
                    let histogram = series.upstream.get_or_init(|| {
                        self.upstream_duration
                            .get_or_create(&route_label(route))
                            .clone()
                    });
                    histogram.observe(upstream.as_secs_f64());
                }
            },
        );
    }

    /// Counts a refusal by the check that refused.
    pub(crate) fn rejection(&self, check: &'static str) {
        self.rejections.get_or_create(&CheckLabel { check }).inc();
    }

    /// Counts a failed authentication. The auth checks feed this
    /// through `audit::decision` (`method` = `api_key` | `jwt` | `session`,
    /// `reason` = the precise reason without the method prefix).
    pub(crate) fn auth_failure(&self, method: &'static str, reason: &'static str) {
        self.auth_failures
            .get_or_create(&AuthLabels { method, reason })
            .inc();
    }

    /// Counts a request refused by a rate limit on `route`.
    pub(crate) fn rate_limited(&self, route: &str) {
        self.rate_limited
            .get_or_create(&RouteLabel {
                route: route.to_string(),
            })
            .inc();
    }

    /// Takes the upload routes and their file limits from `config` (at
    /// start and after each reload). A route whose limit is unchanged keeps
    /// its histogram; routes no longer carrying an upload rule disappear.
    pub(crate) fn follow_upload_routes(&self, config: &Config) {
        let mut routes = self
            .upload_routes
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut previous = std::mem::take(&mut *routes);
        for route in &config.routes {
            let Some(rules) = &route.checks.upload else {
                continue;
            };
            let limit = rules.max_file_bytes();
            let upload = match previous.remove(&route.name) {
                Some(kept) if kept.limit == limit => kept,
                _ => UploadRoute::new(limit),
            };
            routes.insert(route.name.clone(), upload);
        }
        // After the map is replaced: a thread that sees the new generation
        // looks its routes up again (`upload`).
        self.upload_generation.fetch_add(1, Ordering::Release);
    }

    /// Records the body size of one request on `route`, if it is an upload
    /// route.
    pub(crate) fn upload(&self, route: &str, bytes: u64) {
        let generation = self.upload_generation.load(Ordering::Acquire);
        self.request_series.uploads.with(
            |(r, g)| r == route && *g == generation,
            || (route.to_owned(), generation),
            || {
                let routes = self.upload_routes.read();
                routes.get(route).map(|upload| upload.sizes.clone())
            },
            |sizes| {
                if let Some(sizes) = sizes {
                    sizes.observe(bytes as f64);
                }
            },
        );
    }

    /// Counts an open connection until the guard is dropped.
    pub(crate) fn connection_opened(&self) -> ConnectionGuard {
        self.active_connections.inc();
        ConnectionGuard(self.active_connections.clone())
    }

    /// Counts a failed or timed-out TLS handshake.
    pub(crate) fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.inc();
    }

    /// Counts a connection closed before a request existed.
    pub(crate) fn connection_error(&self, error: HeadError) {
        self.connection_errors
            .get_or_create(&ReasonLabel {
                reason: error.label(),
            })
            .inc();
    }

    /// The counter of stalled responses on `protocol` (one of
    /// [`STALL_PROTOCOLS`]), for the connection layer to count into.
    pub(crate) fn client_stalls(&self, protocol: &'static str) -> Counter {
        self.client_stalls
            .get_or_create(&ProtocolLabel { protocol })
            .clone()
    }

    /// Counts a refusal held back by the tarpit (`tarpit.rs`).
    pub(crate) fn refusal_delayed(&self) {
        self.refusals_delayed.inc();
    }

    /// Counts a reload attempt.
    pub(crate) fn config_reload(&self, is_success: bool) {
        let result = if is_success { "success" } else { "failure" };
        self.config_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// `config` and a certificate valid until `not_after` are in force
    /// from now (start-up, or a successful reload).
    pub(crate) fn policy_in_force(&self, config: &Config, not_after: Option<time::OffsetDateTime>) {
        self.in_force.loaded(config.sha256(), not_after);
    }

    /// Mirrors the supervisor's restart count from now on.
    pub(crate) fn watch_restarts(&self, restarts: Arc<AtomicU64>) {
        let _ = self.restarts_source.set(restarts);
    }

    /// Mirrors the audit log's count of lines it could not write from now on.
    pub(crate) fn watch_audit_failures(&self, lost_lines: Arc<AtomicU64>) {
        let _ = self.audit_failures_source.set(lost_lines);
    }

    /// Sets `upstream_up` from the last readiness probe.
    pub(crate) fn upstream_up(&self, is_up: bool) {
        self.upstream_up.set(i64::from(is_up));
    }

    /// Sets `upstream_workers_ready` from the last readiness probe.
    pub(crate) fn upstream_workers_ready(&self, ready: usize) {
        self.upstream_workers_ready
            .set(i64::try_from(ready).unwrap_or(i64::MAX));
    }

    /// Sets `upstream_workers_configured` (and starts every worker's
    /// `worker_scrape_up` at 0).
    pub(crate) fn upstream_workers_configured(&self, workers: usize) {
        self.pool.configured(workers);
    }

    /// Sets `worker_scrape_up` of worker `index` from the scrape just made.
    pub(crate) fn worker_scraped(&self, index: usize, is_up: bool) {
        self.pool.scraped(index, is_up);
    }

    /// The registry as OpenMetrics text, ending with `# EOF`.
    pub(crate) fn encode(&self) -> String {
        if let Some(source) = self.restarts_source.get() {
            let seen = source.load(Ordering::Relaxed);
            let counted = self.worker_restarts.get();
            self.worker_restarts.inc_by(seen.saturating_sub(counted));
        }
        if let Some(source) = self.audit_failures_source.get() {
            let seen = source.load(Ordering::Relaxed);
            let counted = self.audit_write_failures.get();
            self.audit_write_failures
                .inc_by(seen.saturating_sub(counted));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

/// One open connection in `active_connections`.
pub(crate) struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `2xx` … `5xx` (anything else is `1xx`).
pub(crate) fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "1xx",
    }
}

/// A bounded method label.
pub(crate) fn method_label(method: &Method) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|known| *known == method)
        .map_or("OTHER", Method::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy with one upload route, `analyze` (default 2 MiB limit), and
    /// the given extra routes.
    fn policy(extra_routes: &str) -> Config {
        let text = format!(
            "{}\n[[routes]]\nname = \"analyze\"\npath = \"/api/analyze\"\n\
             methods = [\"POST\"]\nbody_limit = 3000000\nauth = \"none\"\nupload = {{}}\n{extra_routes}",
            crate::config::tests::MINIMAL
        );
        Config::from_toml(&text).unwrap()
    }

    #[test]
    fn names_are_the_alerting_contract() {
        let metrics = Metrics::new();
        metrics.follow_upload_routes(&policy(""));
        metrics.request(
            Some("analyze"),
            &Method::POST,
            StatusCode::OK,
            Duration::from_millis(3),
            Some(Duration::from_millis(2)),
        );
        metrics.upload("analyze", 2_000_000);
        metrics.upload("health", 2_000_000);
        metrics.connection_error(HeadError::HeaderTimeout);
        metrics.auth_failure("jwt", "expired");
        metrics.rate_limited("analyze");
        metrics.rejection("route");
        metrics.tls_handshake_failed();
        metrics.upstream_workers_configured(2);
        metrics.worker_scraped(0, true);
        let text = metrics.encode();
        for name in [
            "tradehabit_gateway_requests_total{route=\"analyze\",method=\"POST\",status_class=\"2xx\"} 1",
            "tradehabit_gateway_request_duration_seconds_bucket{le=\"0.005\",route=\"analyze\"} 1",
            "tradehabit_gateway_upstream_duration_seconds_count{route=\"analyze\"} 1",
            "tradehabit_gateway_auth_failures_total{method=\"jwt\",reason=\"expired\"} 1",
            "tradehabit_gateway_rate_limited_total{route=\"analyze\"} 1",
            "tradehabit_gateway_rejections_total{check=\"route\"} 1",
            "tradehabit_gateway_upload_bytes_bucket{le=\"16384.0\",route=\"analyze\"} 0",
            "tradehabit_gateway_upload_bytes_bucket{le=\"1887436.8\",route=\"analyze\"} 0",
            "tradehabit_gateway_upload_bytes_bucket{le=\"2097152.0\",route=\"analyze\"} 1",
            "tradehabit_gateway_upload_bytes_bucket{le=\"4194304.0\",route=\"analyze\"} 1",
            "tradehabit_gateway_upload_bytes_count{route=\"analyze\"} 1",
            "tradehabit_gateway_upload_limit_bytes{route=\"analyze\"} 2097152",
            "tradehabit_gateway_connection_errors_total{reason=\"header_timeout\"} 1",
            "tradehabit_gateway_connection_errors_total{reason=\"head_too_large\"} 0",
            "tradehabit_gateway_connection_errors_total{reason=\"malformed_head\"} 0",
            "tradehabit_gateway_active_connections 0",
            "tradehabit_gateway_tls_handshake_failures_total 1",
            "tradehabit_gateway_config_reloads_total{result=\"success\"} 0",
            "tradehabit_gateway_config_reloads_total{result=\"failure\"} 0",
            "tradehabit_gateway_worker_restarts_total 0",
            "tradehabit_gateway_upstream_up 0",
            "tradehabit_gateway_upstream_workers_configured 2",
            "tradehabit_gateway_worker_scrape_up{worker=\"0\"} 1",
            "tradehabit_gateway_worker_scrape_up{worker=\"1\"} 0",
            "tradehabit_gateway_audit_write_failures_total 0",
            "tradehabit_gateway_rate_limit_store_errors_total{reason=\"timeout\"} 0",
            "tradehabit_gateway_rate_limit_store_duration_seconds_count 0",
        ] {
            assert!(text.contains(name), "missing `{name}` in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        assert!(
            !text.contains("route=\"health\"} 2"),
            "a route without an upload rule has no upload series:\n{text}"
        );
    }

    #[test]
    fn upload_metrics_follow_the_policy_across_reloads() {
        let metrics = Metrics::new();
        metrics.follow_upload_routes(&policy(""));
        metrics.upload("analyze", 100);
        // Not an upload route yet: not counted, and a serving thread must
        // not go on believing so after the reload below.
        metrics.upload("bulk", 9500);
        // Reload: `analyze` unchanged keeps its count; a new upload route
        // with its own limit gets buckets scaled to it.
        let reloaded = policy(
            "[[routes]]\nname = \"bulk\"\npath = \"/api/bulk\"\nmethods = [\"POST\"]\n\
             body_limit = 30000\nauth = \"none\"\nupload = { max_file_bytes = 10000 }\n",
        );
        metrics.follow_upload_routes(&reloaded);
        metrics.upload("bulk", 9500);
        let text = metrics.encode();
        for line in [
            "tradehabit_gateway_upload_bytes_count{route=\"analyze\"} 1",
            "tradehabit_gateway_upload_limit_bytes{route=\"bulk\"} 10000",
            "tradehabit_gateway_upload_bytes_bucket{le=\"9000.0\",route=\"bulk\"} 0",
            "tradehabit_gateway_upload_bytes_bucket{le=\"10000.0\",route=\"bulk\"} 1",
        ] {
            assert!(text.contains(line), "missing `{line}` in\n{text}");
        }
        // Back to the first policy: `bulk` is gone.
        metrics.follow_upload_routes(&policy(""));
        let text = metrics.encode();
        assert!(!text.contains("route=\"bulk\""), "{text}");
        assert!(text.contains("tradehabit_gateway_upload_bytes_count{route=\"analyze\"} 1"));
    }

    #[test]
    fn the_90_percent_bucket_is_exactly_what_promql_computes() {
        for limit in [2_097_152u64, 2_300_000, 1024, 10_000, 67_108_864] {
            let metrics = Metrics::new();
            let route = format!(
                "[[routes]]\nname = \"bulk\"\npath = \"/api/bulk\"\nmethods = [\"POST\"]\n\
                 body_limit = 70000000\nauth = \"none\"\nupload = {{ max_file_bytes = {limit} }}\n"
            );
            metrics.follow_upload_routes(&policy(&route));
            // The bounds as Prometheus parses them from the text.
            let bounds: Vec<f64> = metrics
                .encode()
                .lines()
                .filter_map(|l| l.strip_prefix("tradehabit_gateway_upload_bytes_bucket{le=\""))
                .filter(|l| l.contains("route=\"bulk\""))
                .filter_map(|l| l.split('"').next()?.parse().ok())
                .collect();
            assert_eq!(
                bounds.len(),
                8,
                "{limit}: seven bounds and +Inf: {bounds:?}"
            );
            assert!(
                bounds.contains(&(0.9 * limit as f64)),
                "{limit}: {bounds:?}"
            );
            assert!(bounds.contains(&(limit as f64)), "{limit}: {bounds:?}");
            assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
        }
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        assert_eq!(status_class(StatusCode::PAYLOAD_TOO_LARGE), "4xx");
    }

    #[test]
    fn worker_restarts_follow_the_supervisor() {
        let metrics = Metrics::new();
        let restarts = Arc::new(AtomicU64::new(0));
        metrics.watch_restarts(Arc::clone(&restarts));
        restarts.store(2, Ordering::Relaxed);
        assert!(metrics
            .encode()
            .contains("tradehabit_gateway_worker_restarts_total 2"));
    }

    #[test]
    fn audit_write_failures_follow_the_audit_log() {
        let metrics = Metrics::new();
        let lost = Arc::new(AtomicU64::new(0));
        metrics.watch_audit_failures(Arc::clone(&lost));
        lost.store(7, Ordering::Relaxed);
        assert!(metrics
            .encode()
            .contains("tradehabit_gateway_audit_write_failures_total 7"));
    }
}
