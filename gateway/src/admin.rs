//! Admin: the plain-HTTP listener for operators and orchestrators, bound to
//! `[admin] listen` (loopback by default, never the public port).
//!
//! * `GET /metrics` — the gateway's registry, then every worker's own
//!   (`/internal/metrics` fetched over the upstream sockets), each sample
//!   labelled `worker="<index in upstream.addresses>"`, one `# HELP` and
//!   `# TYPE` per family (`admin/worker_metrics.rs`); a worker that does
//!   not answer shows as `tradehabit_gateway_worker_scrape_up` 0. One
//!   OpenMetrics document ending in `# EOF`.
//! * `GET /healthz` — 200 while the process runs.
//! * `GET /readyz` — 200 when the policy is loaded, the audit log takes
//!   lines (or `audit.on_failure = "continue"`) and the upstream answers
//!   its readiness path (`[upstream] ready_path`), else 503 with the reason
//!   in the body; with several workers, when at least one does
//!   (`admin/probe.rs`: the others are ejected). Each call probes on
//!   demand; a background task also probes every
//!   `admin.ready_probe_interval`. Every probe sets `upstream_up` and
//!   `upstream_workers_ready`.
//!
//! Nothing here touches the request path: a slow scrape cannot delay a
//! trader's request.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

mod probe;
mod worker_metrics;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::conn::stopped;
use crate::state::State;
pub(crate) use probe::Probe;

/// OpenMetrics text, what both registries produce.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `/readyz` while requests are refused for want of an audit log.
const AUDIT_FAILING: &str =
    "not ready: the audit log cannot be written and audit.on_failure = \"refuse\"\n";
/// An admin request head must arrive within this time.
const ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Probes readiness every `admin.ready_probe_interval` of the policy in
/// force until `stop`, keeping `upstream_up` current for the alert rules.
pub(crate) async fn probe_periodically(
    state: Arc<State>,
    probe: Arc<Probe>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let policy = state.config();
        probe::check(&state, &probe).await;
        tokio::select! {
            () = stopped(&mut stop) => return,
            () = tokio::time::sleep(policy.admin.ready_probe_interval) => {}
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
    probe: &Arc<Probe>,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "alive\n"),
        // Digests of the running policy's restart-only settings, for
        // `check-config --admin` (no values leave the process).
        crate::config::RESTART_ONLY_PATH => {
            let mut response = text(StatusCode::OK, "");
            *response.body_mut() = Full::new(Bytes::from(state.config().restart_only_digest()));
            response
        }
        "/readyz" => {
            let policy = state.config();
            let is_up = probe::check(state, probe).await;
            // The policy is loaded whenever the gateway runs: a start-up
            // without a valid policy never gets this far. While the audit
            // log refuses traffic, so does the gateway: not ready
            // (`docs/security-controls.md`, F-15).
            let on_failure = policy.audit.on_failure;
            if !state.audit.admits(on_failure) {
                text(StatusCode::SERVICE_UNAVAILABLE, AUDIT_FAILING)
            } else if is_up {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "upstream not ready\n")
            }
        }
        "/metrics" => {
            let body = metrics_document(state, probe).await;
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, http::HeaderValue::from_static(OPENMETRICS));
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The gateway's registry followed by every worker's metrics, each sample
/// labelled with its worker's index (`admin/worker_metrics.rs`), as one
/// document. Each worker's `worker_scrape_up` is set first, so this very
/// document reports a worker that did not answer.
async fn metrics_document(state: &State, probe: &Probe) -> String {
    let timeout = state.config().admin.ready_probe_timeout;
    let scraped = probe.worker_metrics(timeout).await;
    for (index, text) in scraped.iter().enumerate() {
        state.metrics.worker_scraped(index, text.is_some());
    }
    let ours = state.metrics.encode();
    let answered = scraped
        .iter()
        .enumerate()
        .filter_map(|(index, text)| Some((index, text.as_deref()?)));
    let workers = worker_metrics::merge(answered);
    match ours.strip_suffix("# EOF\n") {
        // One document: drop our `# EOF`, the merged workers' ends it.
        Some(ours) => format!("{ours}{workers}"),
        None => ours,
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
