//! Errors a script can branch on (`docs/errors.md`): real answers of the
//! real gateway and worker over TLS, each checked for its `code` (one of the
//! listed codes, the expected one) and its `request_id` (the answer's
//! `X-Request-Id`). The four 401 causes are told apart, the worker's own
//! errors carry the gateway's request id, unknown settings keys are refused
//! by name, and the session endpoint takes an empty JSON object.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tradehabit_e2e::attack::{multipart, Reply, Stack};
use tradehabit_e2e::policy::{api_key, api_keys_table, tokens_table};
use tradehabit_shared::codes;

const PEPPER: &str = "error-code-tests-pepper-0123456789abcdef";

const ROUTES: &str = r#"
[[routes]]
name = "analyze"
path = "/api/analyze"
methods = ["POST"]
body_limit = 2162688
scopes = ["analyze"]
upload = {}

[[routes]]
name = "summary"
path = "/api/summary"
methods = ["GET"]
scopes = ["read"]
content_types = []

[[routes]]
name = "settings"
path = "/api/settings"
methods = ["GET", "POST"]
scopes = ["read"]
body_limit = 65536
content_types = ["application/json"]

[[routes]]
name = "health"
path = "/api/health"
methods = ["GET"]
auth = "none"
content_types = []
"#;

/// The stack, a valid API key and a well-formed key the gateway never
/// issued.
async fn start() -> (Stack, String, String) {
    let scopes = ["read", "analyze"];
    let alice = api_key(PEPPER, "alice", &scopes);
    let stranger = api_key(PEPPER, "stranger", &scopes);
    let entry = alice.policy_entry.clone();
    let stack = Stack::start_with(
        move |dir| {
            let session = r#"{ enabled = true, scopes = ["read", "analyze"] }"#;
            format!(
                "{}\n{}",
                api_keys_table(dir, PEPPER, &[&entry]),
                tokens_table(dir, &"s".repeat(40), session, None)
            )
        },
        ROUTES,
    )
    .await;
    (stack, alice.key, stranger.key)
}

/// Asserts `reply` is an error envelope with `code` (a listed one) and the
/// answer's request id; returns the body.
fn assert_envelope(reply: &Reply, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(reply.status, status, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["status"], "ERROR", "{body}");
    assert!(
        body["message"].is_string() && body["details"].is_array(),
        "{body}"
    );
    let emitted = body["code"].as_str().expect("a code");
    assert!(
        codes::is_listed(emitted),
        "{emitted} is not in docs/errors.md"
    );
    assert_eq!(emitted, code, "{body}");
    let header = reply.headers["x-request-id"].to_str().unwrap();
    assert_eq!(body["request_id"], header, "{body}");
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["code", "details", "message", "request_id", "status"],
        "the legacy envelope plus exactly code and request_id"
    );
    body
}

fn post_json(path: &str, headers: &[(&str, &str)], body: &'static str) -> Request<Full<Bytes>> {
    let mut builder = Request::post(path).header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

/// A session token from `POST /auth/session` sent with `{}`.
async fn session_token(stack: &Stack) -> String {
    let reply = stack.send(post_json("/auth/session", &[], "{}")).await;
    assert_eq!(
        reply.status,
        200,
        "an empty JSON object is accepted: {}",
        reply.text()
    );
    reply.json()["access_token"]
        .as_str()
        .expect("a token")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_401_causes_have_distinct_codes() {
    let (stack, key, stranger) = start().await;
    let token = session_token(&stack).await;
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let bearer = format!("Bearer {token}");
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[], "auth.missing"),
        (&[("x-api-key", &stranger)], "api_key.unknown"),
        (
            &[("authorization", &format!("Bearer {tampered}"))],
            "jwt.bad_signature",
        ),
        (
            &[("x-api-key", &key), ("authorization", &bearer)],
            "auth.ambiguous",
        ),
    ];
    for (headers, code) in cases {
        let reply = stack.get_with("/api/summary", headers).await;
        assert_envelope(&reply, 401, code);
    }
    // Both credentials alone pass the gateway; the worker answers.
    for headers in [
        [("x-api-key", key.as_str())],
        [("authorization", bearer.as_str())],
    ] {
        let reply = stack.get_with("/api/summary", &headers).await;
        assert_envelope(&reply, 400, "data.not_uploaded");
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_and_worker_errors_carry_code_and_request_id() {
    let (stack, key, _) = start().await;
    let auth = [("x-api-key", key.as_str())];
    assert_envelope(&stack.get("/api/nowhere").await, 404, "route.not_found");
    let reply = stack.get_with("/api/summary?sigma=1", &auth).await;
    assert_envelope(&reply, 400, "query.unknown_parameter");
    let reply = stack.get_with("/api/summary", &auth).await;
    assert_envelope(&reply, 400, "data.not_uploaded");

    // A file whose second line (row 2: the header is row 1) has a bad
    // quantity: the worker names the row and column.
    let csv = b"Order ID,Timestamp,Fill Time,B/S,Contract,filledQty,Avg Fill Price,Type,Limit Price,Stop Price,Status\n\
                1,01/04/2024 9:30:00,01/04/2024 9:30:00,Buy,ESH4,abc,4800,Market,,,Filled\n";
    let reply = stack.upload("bad.csv", csv, &auth).await;
    let body = assert_envelope(&reply, 400, "csv.cell_not_a_number");
    assert_eq!(
        body["details"],
        serde_json::json!(["row 2", "column filledQty", {"row": 2, "column": "filledQty"}])
    );
    let reply = stack.upload("orders.txt", b"x", &auth).await;
    assert_envelope(&reply, 400, "upload.not_csv");

    // Unknown settings keys: refused by name, nothing changed.
    let reply = stack
        .send(post_json("/api/settings", &auth, r#"{"sigma": 1.0}"#))
        .await;
    let body = assert_envelope(&reply, 400, "settings.unknown_key");
    assert_eq!(body["details"], serde_json::json!(["key sigma"]));
    let reply = stack.get_with("/api/settings", &auth).await;
    assert_eq!(reply.json()["vr"], 0.35);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoints_take_no_body_or_a_small_json_object() {
    let (stack, _, _) = start().await;
    for body in ["", "{}", " { }\n"] {
        let reply = stack.send(post_json("/auth/session", &[], body)).await;
        assert_eq!(reply.status, 200, "{body:?}: {}", reply.text());
        assert!(reply.json()["access_token"].is_string());
    }
    let (content_type, form) = multipart(&[("file", Some("a.csv"), b"x")]);
    let form = Request::post("/auth/session")
        .header("content-type", content_type)
        .body(Full::new(form))
        .unwrap();
    assert_envelope(&stack.send(form).await, 415, "content_type.unsupported");
    let large = post_json(
        "/auth/session",
        &[],
        concat!(
            "{\"padding\": \"",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "\"}"
        ),
    );
    assert_envelope(&stack.send(large).await, 413, "body.too_large");
    stack.stop().await;
}
