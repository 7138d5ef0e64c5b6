//! The whole request path, for real: a TLS client → the gateway (started
//! from the shipped example policy) → the worker's Unix socket → the engine.
//! The golden sequences are one anonymous caller making hundreds of requests
//! within a second, so the example's routes are opened for them (no
//! credentials, no scopes, no quotas); every other check of the example
//! (CORS, query parameters, content types, upload and JSON rules) stays on.
//! Every golden sequence of the existing backend is replayed through it
//! over HTTP/2 and HTTP/1.1, with the same comparison rules as the worker's
//! own replay (ids and free text exempt, everything else type-exact).

#[allow(dead_code, unreachable_pub, clippy::all)]
#[path = "../../worker/tests/harness/mod.rs"]
mod harness;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tradehabit_e2e::{policy_for_test, start_gateway, workspace_root, write_test_certificate};
use tradehabit_e2e::{TlsClient, Version};

use harness::golden;
use harness::{Answer, TestWorker, Transport};

/// The gateway as a harness transport.
struct ThroughGateway(TlsClient);

impl Transport for ThroughGateway {
    async fn send(&self, request: Request<Full<Bytes>>) -> Answer {
        let reply = self.0.send(request).await;
        Answer {
            status: reply.status,
            headers: reply.headers,
            body: reply.body,
        }
    }
}

/// A worker and a gateway in front of it, from the example policy.
struct Stack {
    worker: TestWorker,
    gateway: tradehabit_gateway::Handle,
    cert: rustls::pki_types::CertificateDer<'static>,
    _dir: tempfile::TempDir,
}

impl Stack {
    async fn start() -> Stack {
        let worker = TestWorker::start_legacy().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = write_test_certificate(dir.path());
        let upstream = format!("unix:{}", worker.socket().display());
        let config = policy_for_test(
            &workspace_root().join("config/gateway.example.toml"),
            dir.path(),
            &upstream,
            open_routes,
        );
        let gateway = start_gateway(config).await;
        Stack {
            worker,
            gateway,
            cert,
            _dir: dir,
        }
    }

    fn client(&self, version: Version) -> ThroughGateway {
        ThroughGateway(TlsClient::new(
            self.gateway.https_addr(),
            self.cert.clone(),
            version,
        ))
    }

    async fn stop(self) {
        self.gateway.shutdown().await;
        self.worker.stop().await;
    }
}

/// Every route without authentication, scopes or rate limits.
fn open_routes(policy: &mut toml::Table) {
    let routes = policy
        .get_mut("routes")
        .and_then(toml::Value::as_array_mut)
        .expect("the example policy has routes");
    for route in routes.iter_mut().filter_map(toml::Value::as_table_mut) {
        route.insert("auth".into(), "none".into());
        route.remove("scopes");
        route.remove("rate_limit");
    }
    if let Some(defaults) = policy
        .get_mut("route_defaults")
        .and_then(toml::Value::as_table_mut)
    {
        defaults.remove("scopes");
        defaults.remove("rate_limit");
    }
}

/// Where the example policy is deliberately stricter than the legacy
/// contract, so the gateway answers before the worker sees the request:
/// (step name, what the gateway answers).
const STRICTER_AT_THE_GATEWAY: &[(&str, &str)] = &[
    // `sigma=-1` is outside the policy's 0.1–5.0 (the worker, like the
    // legacy backend, computes with it).
    ("losses-bad-param", "status 400 Bad Request instead of 200"),
    // A non-JSON body on a JSON route: 415 here, 400 from the worker.
    (
        "settings-not-json",
        "status 415 Unsupported Media Type instead of 400",
    ),
];

async fn replay_through_gateway(name: &str, version: Version) {
    let mut mismatches = replay(name, version).await;
    if name == "errors" {
        for (step, answer) in STRICTER_AT_THE_GATEWAY {
            let position = mismatches
                .iter()
                .position(|m| m.contains(&format!("({step}): {answer}")));
            let position = position.unwrap_or_else(|| {
                panic!("the gateway no longer refuses {step} itself: {mismatches:#?}")
            });
            mismatches.remove(position);
        }
    }
    assert!(
        mismatches.is_empty(),
        "{name} over {version:?}: {} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

async fn replay(name: &str, version: Version) -> Vec<String> {
    let stack = Stack::start().await;
    let mismatches = golden::replay(&stack.client(version), None, &golden::load(name)).await;
    stack.stop().await;
    mismatches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_golden_sequence_matches_through_tls_gateway_and_socket() {
    for name in [
        "legacy-8-trades-1-no-stop",
        "legacy-all-no-stops",
        "legacy-test-data",
        "legacy-314-trades",
        "gen-seed1",
        "gen-seed2",
        "gen-seed3",
    ] {
        replay_through_gateway(name, Version::Http2).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_golden_sequence_matches_over_http1_too() {
    replay_through_gateway("legacy-314-trades", Version::Http1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_sequence_matches_through_the_gateway() {
    replay_through_gateway("errors", Version::Http2).await;
}
