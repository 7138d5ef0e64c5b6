//! Admin: the plain-HTTP listener for operators and orchestrators, bound to
//! `[admin] listen` (loopback by default, never the public port).
//!
//! * `GET /metrics` — the gateway's registry, then the worker's own
//!   (`/internal/metrics` fetched over the upstream socket) when the
//!   upstream serves one; one OpenMetrics document ending in `# EOF`.
//! * `GET /healthz` — 200 while the process runs.
//! * `GET /readyz` — 200 when the policy is loaded and the upstream answers
//!   its readiness path (`[upstream] ready_path`), else 503. Each call
//!   probes on demand; a background task also probes every
//!   `admin.ready_probe_interval`. Every probe sets `upstream_up`.
//!
//! Nothing here touches the request path: a slow scrape cannot delay a
//! trader's request.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{self, UpstreamAddress};
use crate::conn::stopped;
use crate::proxy::Connector;
use crate::state::State;

/// The worker's metrics endpoint (docs/worker.md).
const WORKER_METRICS_PATH: &str = "/internal/metrics";
/// OpenMetrics text, what both registries produce.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// An admin request head must arrive within this time.
const ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the upstream whether it is ready, and for its metrics.
pub(crate) struct Probe {
    client: Client<Connector, Empty<Bytes>>,
    authority: String,
    timeout: Duration,
}

impl Probe {
    /// A probe of the configured upstream; no pooling, so a restarted
    /// upstream is seen at once.
    pub(crate) fn new(upstream: &config::Upstream, timeout: Duration) -> Probe {
        let connector = Connector::new(upstream.address.clone(), upstream.connect_timeout);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        let authority = match &upstream.address {
            UpstreamAddress::Unix(_) => "localhost".to_string(),
            UpstreamAddress::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            UpstreamAddress::Tcp { host, port } => format!("{host}:{port}"),
        };
        Probe {
            client,
            authority,
            timeout,
        }
    }

    /// Whether the upstream answers `ready_path` (the running policy's
    /// `[upstream] ready_path`, so that a reload applies it) with a 2xx in
    /// time.
    pub(crate) async fn is_ready(&self, ready_path: &str) -> bool {
        self.get(ready_path)
            .await
            .is_some_and(|response| response.status().is_success())
    }

    /// The worker's metrics text, if the upstream has that endpoint.
    async fn worker_metrics(&self) -> Option<String> {
        let response = self.get(WORKER_METRICS_PATH).await?;
        // Only a real OpenMetrics document is appended (the legacy backend
        // answers this path with something else, or not at all).
        let is_openmetrics = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/openmetrics-text"));
        if !response.status().is_success() || !is_openmetrics {
            return None;
        }
        let body = tokio::time::timeout(self.timeout, response.into_body().collect())
            .await
            .ok()?
            .ok()?;
        String::from_utf8(body.to_bytes().to_vec())
            .ok()
            .filter(|text| text.ends_with("# EOF\n"))
    }

    async fn get(&self, path: &str) -> Option<Response<Incoming>> {
        let uri: Uri = format!("http://{}{path}", self.authority).parse().ok()?;
        let request = Request::get(uri).body(Empty::new()).ok()?;
        tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .ok()?
            .ok()
    }
}

/// Probes readiness every `interval` until `stop`, keeping `upstream_up`
/// current for the alert rules.
pub(crate) async fn probe_periodically(
    state: Arc<State>,
    probe: Arc<Probe>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let is_up = probe.is_ready(&state.config().upstream.ready_path).await;
        state.metrics.upstream_up(is_up);
        tokio::select! {
            () = stopped(&mut stop) => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Serves the admin endpoints until `stop`.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    probe: Arc<Probe>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (state, probe) = (Arc::clone(&state), Arc::clone(&probe));
                let service = service_fn(move |request| {
                    let (state, probe) = (Arc::clone(&state), Arc::clone(&probe));
                    async move { Ok::<_, Infallible>(answer(&request, &state, &probe).await) }
                });
                let mut builder = http1::Builder::new();
                builder.timer(TokioTimer::new()).header_read_timeout(ADMIN_HEADER_TIMEOUT);
                connections.spawn(async move {
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        }
    }
    // Scrapes and probes are short and idempotent: no drain needed.
    connections.shutdown().await;
}

async fn answer(
    request: &Request<Incoming>,
    state: &State,
    probe: &Probe,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "alive\n"),
        // Digests of the running policy's restart-only settings, for
        // `check-config --admin` (no values leave the process).
        config::RESTART_ONLY_PATH => {
            let mut response = text(StatusCode::OK, "");
            *response.body_mut() = Full::new(Bytes::from(state.config().restart_only_digest()));
            response
        }
        "/readyz" => {
            let is_up = probe.is_ready(&state.config().upstream.ready_path).await;
            state.metrics.upstream_up(is_up);
            // The policy is loaded whenever the gateway runs: a start-up
            // without a valid policy never gets this far.
            if is_up {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "upstream not ready\n")
            }
        }
        "/metrics" => {
            let mut body = state.metrics.encode();
            if let Some(worker) = probe.worker_metrics().await {
                // One document: drop our `# EOF`, the worker's ends it.
                if let Some(ours) = body.strip_suffix("# EOF\n") {
                    body = format!("{ours}{worker}");
                }
            }
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, http::HeaderValue::from_static(OPENMETRICS));
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
