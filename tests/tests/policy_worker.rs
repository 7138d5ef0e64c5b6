//! The gateway's policy checks in front of the real worker: the real
//! gateway over TLS, the real worker on a private Unix socket, both
//! in-process.
//!
//! * the seed document's three security tests (an executable upload, a
//!   3 MB upload, a hostile `Origin`);
//! * one principal cannot read another's trades, and forging the identity
//!   header does not help;
//! * two anonymous browser sessions get separate data spaces.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use tradehabit_e2e::attack;
use tradehabit_e2e::policy::{api_key, api_keys_table, tokens_table};

const PEPPER: &str = "worker-e2e-pepper-worker-e2e-pepper-01";
const SAMPLE_CSV: &str = include_str!("../../examples/sample-orders.csv");
const BOUNDARY: &str = "policy-worker-boundary";

const ROUTES: &str = r#"
[[routes]]
name = "analyze"
path = "/api/analyze"
methods = ["POST"]
body_limit = 2162688
scopes = ["analyze"]
upload = {}
query = { sigma = { type = "float", min = 0.1, max = 5.0 } }

[[routes]]
name = "trades"
path = "/api/trades"
methods = ["GET"]
scopes = ["read"]
content_types = []

[[routes]]
name = "health"
path = "/api/health"
methods = ["GET"]
auth = "none"
content_types = []
"#;

/// The gateway and the worker (the shared harness, default limits), and
/// the two users' keys.
struct Stack {
    stack: attack::Stack,
    alice: String,
    bob: String,
}

impl Stack {
    async fn start() -> Stack {
        let scopes = ["read", "analyze"];
        let alice = api_key(PEPPER, "alice", &scopes);
        let bob = api_key(PEPPER, "bob", &scopes);
        let entries = [alice.policy_entry.as_str(), bob.policy_entry.as_str()];
        let checks = |dir: &std::path::Path| {
            format!(
                "[cors]\nallowed_origins = [\"http://127.0.0.1:5173\", \"http://localhost:5173\", \
                 \"https://tradehabit-frontend.replit.app\", \"https://app.tradehab.it\"]\n\n{}\n{}",
                api_keys_table(dir, PEPPER, &entries),
                tokens_table(
                    dir,
                    &"t".repeat(40),
                    r#"{ enabled = true, scopes = ["read", "analyze"] }"#,
                    None,
                ),
            )
        };
        let stack = attack::Stack::start_with_limits("", checks, ROUTES).await;
        Stack {
            stack,
            alice: alice.key,
            bob: bob.key,
        }
    }

    /// One request over HTTP/1.1 on a fresh TLS connection.
    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let mut builder = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let reply = self
            .stack
            .send(builder.body(Full::new(body.into())).unwrap())
            .await;
        let json = serde_json::from_slice(&reply.body).unwrap_or(serde_json::Value::Null);
        (reply.status, reply.headers, json)
    }

    async fn stop(self) {
        self.stack.stop().await;
    }
}

fn upload(filename: &str, content: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: text/csv\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn multipart() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

#[tokio::test]
async fn the_seed_documents_security_tests_pass_in_front_of_the_worker() {
    let stack = Stack::start().await;
    let ct = multipart();
    let key = stack.alice.clone();
    let (status, _, json) = stack
        .send(
            "POST",
            "/api/analyze",
            &[("x-api-key", &key), ("content-type", &ct)],
            upload("test.exe", b"malicious"),
        )
        .await;
    assert_eq!(status, 400, "{json}");
    assert_eq!(json["status"], "ERROR");
    let (status, _, json) = stack
        .send(
            "POST",
            "/api/analyze",
            &[("x-api-key", &key), ("content-type", &ct)],
            upload("test.csv", &vec![b'a'; 3 * 1024 * 1024]),
        )
        .await;
    assert_eq!(status, 400, "{json}");
    let (status, headers, json) = stack
        .send(
            "GET",
            "/api/health",
            &[("origin", "https://malicious.com")],
            "",
        )
        .await;
    assert_eq!(status, 200, "{json}");
    assert!(
        json.get("Status").is_some(),
        "the worker's health answer: {json}"
    );
    assert!(headers.get("access-control-allow-origin").is_none());
    stack.stop().await;
}

#[tokio::test]
async fn one_principal_cannot_read_anothers_trades() {
    let stack = Stack::start().await;
    let (alice, bob) = (stack.alice.clone(), stack.bob.clone());
    let (status, _, json) = stack
        .send(
            "POST",
            "/api/analyze",
            &[("x-api-key", &alice), ("content-type", &multipart())],
            upload("orders.csv", SAMPLE_CSV.as_bytes()),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    let uploaded = json["meta"]["tradesDetected"].as_u64().unwrap();
    assert!(uploaded > 0);

    let (status, _, json) = stack
        .send("GET", "/api/trades", &[("x-api-key", &alice)], "")
        .await;
    assert_eq!(status, 200);
    assert_eq!(json["trades"].as_array().unwrap().len() as u64, uploaded);

    // Bob sees no trades, even when he claims to be Alice.
    for forged in [vec![], vec![("x-tradehabit-principal", "key:alice")]] {
        let mut headers = forged.clone();
        headers.push(("x-api-key", bob.as_str()));
        let (status, _, json) = stack.send("GET", "/api/trades", &headers, "").await;
        assert_eq!(status, 400, "{json}");
        assert!(json.get("trades").is_none(), "{json}");
    }
    // Without credentials, nothing at all.
    let (status, _, _) = stack
        .send(
            "GET",
            "/api/trades",
            &[("x-tradehabit-principal", "key:alice")],
            "",
        )
        .await;
    assert_eq!(status, 401);
    stack.stop().await;
}

#[tokio::test]
async fn browser_sessions_get_separate_data_spaces() {
    let stack = Stack::start().await;
    let token =
        |json: &serde_json::Value| format!("Bearer {}", json["access_token"].as_str().unwrap());
    let (status, _, first) = stack.send("POST", "/auth/session", &[], "").await;
    assert_eq!(status, 200);
    let (_, _, second) = stack.send("POST", "/auth/session", &[], "").await;
    let (first, second) = (token(&first), token(&second));
    let (status, _, json) = stack
        .send(
            "POST",
            "/api/analyze",
            &[("authorization", &first), ("content-type", &multipart())],
            upload("orders.csv", SAMPLE_CSV.as_bytes()),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        stack
            .send("GET", "/api/trades", &[("authorization", &first)], "")
            .await
            .0,
        200
    );
    assert_eq!(
        stack
            .send("GET", "/api/trades", &[("authorization", &second)], "")
            .await
            .0,
        400
    );
    stack.stop().await;
}
