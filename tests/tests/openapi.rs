//! The OpenAPI document (`docs/openapi.json`): valid OpenAPI 3.1 for a real
//! validator (Python's `openapi-spec-validator`), served by the gateway on a
//! `serve = "openapi"` route exactly as committed, and true of the real
//! answers: every golden sequence is replayed through the gateway and the
//! worker, and each answer is checked against the document's schema for its
//! operation and status (Python's `jsonschema`, via
//! `tests/python/check_openapi.py`).
//!
//! The Python modules are installed by `scripts/test.sh`; a missing one is a
//! failure that says how to install it.

#[allow(dead_code, unreachable_pub, clippy::all)]
#[path = "../../worker/tests/harness/mod.rs"]
mod harness;

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tradehabit_e2e::attack::{Stack, ROUTES};
use tradehabit_e2e::{policy_for_test, start_gateway, workspace_root, write_test_certificate};
use tradehabit_e2e::{TlsClient, Version};

use harness::golden::{self, CSV_GOLDENS};
use harness::{Answer, TestWorker, Transport};

const OPENAPI_ROUTE: &str = r#"
[[routes]]
name = "openapi"
path = "/api/openapi.json"
methods = ["GET"]
auth = "none"
serve = "openapi"
"#;

/// Runs the checker script with `args`; panics with its output unless it
/// succeeds.
fn check_with_python(args: &[&Path]) {
    let script = workspace_root().join("tests/python/check_openapi.py");
    let output = Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .expect("python3 is installed (scripts/test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !text.contains("ModuleNotFoundError"),
        "a Python module is missing: pip install openapi-spec-validator jsonschema\n{text}"
    );
    assert!(output.status.success(), "{text}");
}

#[test]
fn the_committed_document_is_valid_openapi_3_1() {
    check_with_python(&[&workspace_root().join("docs/openapi.json")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_the_committed_document_on_an_openapi_route() {
    let routes = format!("{ROUTES}\n{OPENAPI_ROUTE}");
    let stack = Stack::start_with(|_| String::new(), &routes).await;
    let reply = stack.get("/api/openapi.json").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.headers["content-type"], "application/json");
    let committed = std::fs::read(workspace_root().join("docs/openapi.json")).unwrap();
    assert!(
        reply.body == committed,
        "the served document is the committed one"
    );
    // The route's checks apply: its query rules (none), its methods.
    let reply = stack.get("/api/openapi.json?x=1").await;
    assert_eq!(reply.status, 400);
    stack.stop().await;
    // Without the route the path is not served.
    let stack = Stack::start().await;
    assert_eq!(stack.get("/api/openapi.json").await.status, 404);
    stack.stop().await;
}

/// The gateway as a harness transport that keeps every answer.
struct Recording {
    client: TlsClient,
    answers: Mutex<Vec<serde_json::Value>>,
}

impl Transport for Recording {
    async fn send(&self, request: Request<Full<Bytes>>) -> Answer {
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let reply = self.client.send(request).await;
        if let Ok(body) = serde_json::from_slice::<serde_json::Value>(&reply.body) {
            self.answers.lock().unwrap().push(serde_json::json!({
                "method": method,
                "path": path,
                "status": reply.status.as_u16(),
                "body": body,
            }));
        }
        Answer {
            status: reply.status,
            headers: reply.headers,
            body: reply.body,
        }
    }
}

/// Every route of the example policy without credentials or quotas, as in
/// `full_path.rs`.
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_golden_answer_matches_the_documents_schemas() {
    let worker = TestWorker::start_legacy().await;
    let dir = tempfile::tempdir().unwrap();
    let cert = write_test_certificate(dir.path());
    let upstream = format!("unix:{}", worker.socket().display());
    let config = policy_for_test(
        &workspace_root().join("config/gateway.example.toml"),
        dir.path(),
        &upstream,
        open_routes,
    );
    let gateway = start_gateway(config).await;
    let recording = Recording {
        client: TlsClient::new(gateway.https_addr(), cert, Version::Http1),
        answers: Mutex::new(Vec::new()),
    };
    for name in CSV_GOLDENS.iter().copied().chain(["errors"]) {
        // The comparison with the legacy is `full_path.rs`'s job; here only
        // the answers matter.
        let _ = golden::replay(&recording, None, &golden::load(name)).await;
    }
    gateway.shutdown().await;
    worker.stop().await;

    let answers = recording.answers.into_inner().unwrap();
    assert!(answers.len() > 300, "{} answers", answers.len());
    let path = dir.path().join("answers.jsonl");
    let mut file = std::fs::File::create(&path).unwrap();
    for answer in &answers {
        writeln!(file, "{answer}").unwrap();
    }
    drop(file);
    check_with_python(&[&workspace_root().join("docs/openapi.json"), &path]);
}
