//! The shipped legacy-compatible policy (`config/gateway.legacy.toml`) in
//! front of a real worker: an upload the legacy backend would refuse is
//! refused by the gateway with the legacy backend's exact message (its web
//! app shows `message` to users verbatim), and a valid upload passes. The
//! strict example, without `upload.messages = "legacy"`, words the same
//! refusals its own way.

#[allow(dead_code, unreachable_pub, clippy::all)]
#[path = "../../worker/tests/harness/mod.rs"]
mod harness;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tradehabit_e2e::{policy_for_test, start_gateway, workspace_root, write_test_certificate};
use tradehabit_e2e::{TlsClient, Version};

use harness::TestWorker;

const BOUNDARY: &str = "legacy-policy-boundary";

/// A multipart body with one part named `field` (a file when `filename`).
fn form(field: &str, filename: Option<&str>, content: &[u8]) -> Vec<u8> {
    let disposition = match filename {
        Some(name) => format!("form-data; name=\"{field}\"; filename=\"{name}\""),
        None => format!("form-data; name=\"{field}\""),
    };
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\nContent-Type: text/csv\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn upload(body: Vec<u8>) -> Request<Full<Bytes>> {
    Request::post("/api/analyze")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// The refusals the legacy backend makes, and its words for them.
fn cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let csv = b"Date,Symbol\n".to_vec();
    vec![
        (
            "no file part",
            form("other", Some("t.csv"), &csv),
            "No file part",
        ),
        (
            "not CSV",
            form("file", Some("trades.xlsx"), &csv),
            "TradeHabit only works with the CSV file format.",
        ),
        (
            "too large",
            form("file", Some("t.csv"), &vec![b'a'; 2 * 1024 * 1024 + 1]),
            "This file exceeds the 2 MB size limit.",
        ),
    ]
}

async fn answers(policy: &str, worker: &TestWorker) -> Vec<(u16, String)> {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_test_certificate(dir.path());
    let upstream = format!("unix:{}", worker.socket().display());
    let config = policy_for_test(
        &workspace_root().join("config").join(policy),
        dir.path(),
        &upstream,
        |table| {
            // The strict example's upload route, opened for this caller.
            if let Some(routes) = table.get_mut("routes").and_then(toml::Value::as_array_mut) {
                for route in routes.iter_mut().filter_map(toml::Value::as_table_mut) {
                    route.insert("auth".into(), "none".into());
                    route.remove("scopes");
                }
            }
        },
    );
    let gateway = start_gateway(config).await;
    let client = TlsClient::new(gateway.https_addr(), cert, Version::Http2);
    let mut found = Vec::new();
    for (_, body, _) in cases() {
        let reply = client.send(upload(body)).await;
        let message = reply.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        found.push((reply.status.as_u16(), message));
    }
    let good =
        std::fs::read(workspace_root().join("tests/fixtures/csv/legacy-8-trades-1-no-stop.csv"))
            .unwrap();
    let reply = client
        .send(upload(form("file", Some("trades.csv"), &good)))
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    gateway.shutdown().await;
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn the_legacy_policy_refuses_uploads_in_the_legacy_backends_words() {
    let worker = TestWorker::start().await;
    let legacy = answers("gateway.legacy.toml", &worker).await;
    for ((name, _, expected), (status, message)) in cases().into_iter().zip(&legacy) {
        assert_eq!(*status, 400, "{name}");
        assert_eq!(message, expected, "{name}");
    }
    // The switch is what makes the difference: the strict example keeps
    // the gateway's own wording for the same refusals.
    let strict = answers("gateway.example.toml", &worker).await;
    for ((name, _, expected), (status, message)) in cases().into_iter().zip(&strict) {
        assert_eq!(*status, 400, "{name}");
        assert_ne!(message, expected, "{name}");
    }
    worker.stop().await;
}
