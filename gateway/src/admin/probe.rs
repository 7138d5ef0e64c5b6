//! The readiness probe and the worker-metrics fetch, over the upstream
//! socket(s): one unpooled client per worker of `upstream.addresses`, so a
//! restarted worker is seen at once. With `upstream.hmac_key` every probe
//! is signed like a forwarded request (the worker refuses unsigned ones).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http::header::CONTENT_TYPE;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tradehabit_shared::signature::Key;

use crate::config::{self, UpstreamAddress};
use crate::proxy::{sign, Connector};
use crate::state::State;

/// The worker's metrics endpoint (docs/worker.md).
const WORKER_METRICS_PATH: &str = "/internal/metrics";

/// One worker's client and the `Host` it is asked with.
struct Target {
    client: Client<Connector, Empty<Bytes>>,
    authority: String,
}

/// Asks the upstream's workers whether they are ready, and for metrics.
pub(crate) struct Probe {
    targets: Vec<Target>,
    hmac_key: Option<Key>,
}

impl Probe {
    /// A probe of every configured worker. The readiness path and the
    /// deadline are the policy's in force at each probe, so a reload
    /// changes them.
    pub(crate) fn new(upstream: &config::Upstream) -> Probe {
        let targets = upstream
            .addresses
            .iter()
            .map(|address| Target {
                client: Client::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(0)
                    .build(Connector::new(address.clone(), upstream.connect_timeout)),
                authority: match address {
                    UpstreamAddress::Unix(_) => "localhost".to_string(),
                    UpstreamAddress::Tcp { host, port } if host.contains(':') => {
                        format!("[{host}]:{port}")
                    }
                    UpstreamAddress::Tcp { host, port } => format!("{host}:{port}"),
                },
            })
            .collect();
        Probe {
            targets,
            hmac_key: upstream.hmac_key.clone(),
        }
    }

    /// Which workers answer their readiness path with a 2xx in time, in
    /// configuration order (all probed at once).
    async fn ready_workers(&self, policy: &config::Config) -> Vec<bool> {
        let (path, timeout) = (
            &policy.upstream.ready_path,
            policy.admin.ready_probe_timeout,
        );
        join_all(self.targets.iter().map(|target| async move {
            self.get(target, path, timeout)
                .await
                .is_some_and(|response| response.status().is_success())
        }))
        .await
    }

    /// Every worker's metrics text, in configuration order (all asked at
    /// once); `None` for a worker that did not answer with an OpenMetrics
    /// document within `timeout`.
    pub(super) async fn worker_metrics(&self, timeout: Duration) -> Vec<Option<String>> {
        join_all(
            self.targets
                .iter()
                .map(|target| self.metrics_of(target, timeout)),
        )
        .await
    }

    async fn metrics_of(&self, target: &Target, timeout: Duration) -> Option<String> {
        let response = self.get(target, WORKER_METRICS_PATH, timeout).await?;
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
        let body = tokio::time::timeout(timeout, response.into_body().collect())
            .await
            .ok()?
            .ok()?;
        String::from_utf8(body.to_bytes().to_vec())
            .ok()
            .filter(|text| text.ends_with("# EOF\n"))
    }

    async fn get(
        &self,
        target: &Target,
        path: &str,
        timeout: Duration,
    ) -> Option<Response<Incoming>> {
        let uri: Uri = format!("http://{}{path}", target.authority).parse().ok()?;
        let mut request = Request::get(uri).body(Empty::new()).ok()?;
        if let Some(key) = &self.hmac_key {
            let (method, uri) = (request.method().clone(), request.uri().clone());
            sign(key, &method, &uri, request.headers_mut());
        }
        tokio::time::timeout(timeout, target.client.request(request))
            .await
            .ok()?
            .ok()
    }
}

/// Probes every worker, ejects those that are not ready (with several),
/// and updates `upstream_up` (any ready) and `upstream_workers_ready`.
/// Whether the gateway can serve: at least one worker is ready.
pub(crate) async fn check(state: &State, probe: &Arc<Probe>) -> bool {
    let ready = probe.ready_workers(&state.config()).await;
    for (index, is_ready) in ready.iter().enumerate() {
        if !is_ready {
            state.upstream.eject(index);
        }
    }
    let count = ready.iter().filter(|r| **r).count();
    state.metrics.upstream_workers_ready(count);
    state.metrics.upstream_up(count > 0);
    count > 0
}
