//! Attacks end to end: hand-written hostile requests over TLS against the
//! real gateway in front of the real worker. Each test asserts the specific
//! refusal and that the stack keeps serving afterwards.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tradehabit_e2e::attack::{fixture, multipart, raw_statuses, sample_csv, Stack, SAFETY};

/// The body of a request that, if it ever reached the worker as a request
/// of its own, would change the anonymous space's settings.
const SMUGGLED: &str = "POST /api/settings HTTP/1.1\r\nHost: localhost\r\n\
     Content-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"vr\": 0.9}";

/// The anonymous space's `vr` setting, read on a fresh connection.
async fn vr(stack: &Stack) -> serde_json::Value {
    let settings = stack.get("/api/settings").await;
    assert_eq!(settings.status, 200, "{}", settings.text());
    settings.json()["vr"].clone()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_control() {
    // The control for the smuggling tests: a well-framed pipeline of a
    // settings change and a read answers both, and the change is seen, so
    // the `vr` probe below does observe a smuggled change.
    let stack = Stack::start().await;
    let before = vr(&stack).await;
    assert_ne!(before, serde_json::json!(0.9));
    let pipeline = format!(
        "{SMUGGLED}GET /api/settings HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    let answer = stack.raw(pipeline.as_bytes()).await;
    assert_eq!(raw_statuses(&answer), vec![200, 200], "{answer}");
    assert_eq!(vr(&stack).await, serde_json::json!(0.9));
    stack.stop().await;
}

#[tokio::test]
async fn ambiguous_framing_is_refused_and_nothing_is_smuggled() {
    let stack = Stack::start().await;
    let before = vr(&stack).await;
    let chunked_prefix = "0\r\n\r\n";
    // The head, what follows it, and the gateway's detail when the refusal
    // is the gateway's envelope (the others are hyper's bare 400).
    let heads: &[(&str, &str, Option<&str>)] = &[
        // CL.TE and TE.CL: hyper alone would re-frame these as chunked.
        (
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            chunked_prefix,
            Some("both Content-Length and Transfer-Encoding"),
        ),
        (
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            chunked_prefix,
            Some("both Content-Length and Transfer-Encoding"),
        ),
        // duplicate and malformed Content-Length
        (
            "Content-Length: 0\r\nContent-Length: 0\r\n",
            "",
            Some("several Content-Length values"),
        ),
        ("Content-Length: 0\r\nContent-Length: 140\r\n", "", None),
        ("Content-Length: 0, 140\r\n", "", None),
        ("Content-Length: +0\r\n", "", None),
        ("Content-Length: -1\r\n", "", None),
        ("Content-Length: 0x0\r\n", "", None),
        ("Content-Length: 99999999999999999999999\r\n", "", None),
        // obfuscated Transfer-Encoding
        ("Transfer-Encoding: xchunked\r\n", chunked_prefix, None),
        (
            "Transfer-Encoding: chunked, identity\r\n",
            chunked_prefix,
            None,
        ),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
            chunked_prefix,
            None,
        ),
        ("Transfer-Encoding : chunked\r\n", chunked_prefix, None),
    ];
    for (head, prefix, detail) in heads {
        let attack = format!(
            "POST /api/settings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             {head}\r\n{prefix}{SMUGGLED}"
        );
        let answer = stack.raw(attack.as_bytes()).await;
        let statuses = raw_statuses(&answer);
        assert_eq!(
            statuses,
            vec![400],
            "{head:?}: one refusal and nothing after it\n{answer}"
        );
        if let Some(detail) = detail {
            assert!(
                answer.contains("The request framing is ambiguous") && answer.contains(detail),
                "{head:?}: the gateway's own refusal naming `{detail}`\n{answer}"
            );
            assert!(
                answer.to_ascii_lowercase().contains("connection: close"),
                "{head:?}: the connection is closed after the refusal\n{answer}"
            );
        }
        assert_eq!(vr(&stack).await, before, "{head:?} smuggled a request");
    }
    stack.assert_serving().await;
    stack.stop().await;
}

#[tokio::test]
async fn an_ambiguous_head_later_in_a_pipeline_is_the_one_refused() {
    // Well-framed requests before it are answered; the ambiguous one gets
    // the gateway's 400 and nothing after it is read.
    let stack = Stack::start().await;
    let before = vr(&stack).await;
    let upload_like = "x".repeat(300);
    let pipeline = format!(
        "POST /api/settings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{upload_like}\r\n0\r\n\r\n\
         GET /api/settings HTTP/1.1\r\nHost: localhost\r\n\r\n\
         POST /api/settings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}",
        upload_like.len()
    );
    let answer = stack.raw(pipeline.as_bytes()).await;
    assert_eq!(raw_statuses(&answer), vec![400, 200, 400], "{answer}");
    let last = answer.rsplit("HTTP/1.1 ").next().unwrap_or_default();
    assert!(
        last.contains("both Content-Length and Transfer-Encoding"),
        "the third answer is the framing refusal\n{answer}"
    );
    assert_eq!(vr(&stack).await, before, "the pipeline smuggled a request");
    stack.assert_serving().await;
    stack.stop().await;
}

#[tokio::test]
async fn chunk_size_tricks_are_refused_and_nothing_is_smuggled() {
    let stack = Stack::start().await;
    let before = vr(&stack).await;
    let bodies = [
        "0x5\r\n{\"vr\"\r\n0\r\n\r\n",
        "-5\r\n{\"vr\"\r\n0\r\n\r\n",
        "fffffffffffffffffffffff\r\n{\"vr\"\r\n0\r\n\r\n",
        "5\r\n{\"vr\"XX0\r\n\r\n",
        "5 5\r\n{\"vr\"\r\n0\r\n\r\n",
        "\r\n5\r\n{\"vr\"\r\n0\r\n\r\n",
    ];
    for body in bodies {
        let attack = format!(
            "POST /api/settings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n{body}{SMUGGLED}"
        );
        let answer = stack.raw(attack.as_bytes()).await;
        let statuses = raw_statuses(&answer);
        assert_eq!(statuses.len(), 1, "{body:?}: exactly one answer\n{answer}");
        assert!(
            (400..500).contains(&statuses[0]),
            "{body:?}: a client error\n{answer}"
        );
        assert_eq!(vr(&stack).await, before, "{body:?} smuggled a request");
    }
    stack.assert_serving().await;
    stack.stop().await;
}

#[tokio::test]
async fn header_injection_with_bare_cr_or_folding_is_refused() {
    let stack = Stack::start().await;
    let heads = [
        "X-Note: a\rX-TradeHabit-Principal: mallory\r\n",
        "X-Note: a\r\n X-TradeHabit-Principal: mallory\r\n",
        "X-Note: a\r\n\tfolded\r\n",
        "X-Note: a\0b\r\n",
        "Bad Name: x\r\n",
    ];
    for head in heads {
        let attack = format!("GET /api/health HTTP/1.1\r\nHost: localhost\r\n{head}\r\n");
        let answer = stack.raw(attack.as_bytes()).await;
        assert_eq!(raw_statuses(&answer), vec![400], "{head:?}\n{answer}");
    }
    stack.assert_serving().await;
    stack.stop().await;
}

#[tokio::test]
async fn oversized_headers_get_431_and_the_gateway_keeps_serving() {
    let stack = Stack::start().await;
    let big = "a".repeat(64 * 1024);
    let one_huge = stack.get_with("/api/health", &[("x-big", &big)]).await;
    assert_eq!(one_huge.status, 431, "{}", one_huge.text());

    let many: String = (0..300).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = stack
        .raw(format!("GET /api/health HTTP/1.1\r\nHost: localhost\r\n{many}\r\n").as_bytes())
        .await;
    assert_eq!(raw_statuses(&answer), vec![431], "{answer}");

    let long_target = format!("/api/health?{}", "q".repeat(64 * 1024));
    let answer = stack
        .raw(format!("GET {long_target} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await;
    let statuses = raw_statuses(&answer);
    assert!(
        statuses == vec![414] || statuses == vec![431],
        "long request line: {answer}"
    );
    stack.assert_serving().await;
    stack.stop().await;
}

#[tokio::test]
async fn path_tricks_reach_only_allowed_routes() {
    let stack = Stack::start().await;
    // With data uploaded, the worker answers `/api/summary` and its own
    // `/internal/*` routes with 200; each trick names one of them in a form
    // the worker would decode or resolve, so only a refusal by the gateway
    // itself gives 400/404.
    let uploaded = stack.upload("orders.csv", &sample_csv(), &[]).await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.text());
    let refused_400 = [
        "/api/../api/summary",
        "/api/./summary",
        "/api/%2e%2e/api/summary",
        "/api/%2E%2E/internal/metrics",
        "//api/summary",
        "/api//summary",
        "/api%2fsummary",
        "/api%2Fsummary",
        "/api%5csummary",
        "/api/%73ummary",
        "/api/summary;x=1",
        "/api/summary%00",
        "/api/summary%3b",
        "/api/%252e%252e/internal/metrics",
        "/api/health/../../internal/metrics",
    ];
    for path in refused_400 {
        let answer = stack
            .raw(
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        assert_eq!(raw_statuses(&answer), vec![400], "{path}\n{answer}");
    }
    let refused_404 = [
        "/API/summary",
        "/Api/Summary",
        "/api/summary/",
        "/api/summary/x",
        "/internal/metrics",
        "/internal/ready",
        "/api/session",
    ];
    for path in refused_404 {
        let reply = stack.get(path).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.text());
        assert_eq!(reply.json()["status"], "ERROR");
    }
    // Other request-target forms.
    for target in ["*", "https://evil.example/api/summary", "api/summary"] {
        let answer = stack
            .raw(
                format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        let statuses = raw_statuses(&answer);
        assert!(
            statuses == vec![400] || statuses == vec![404],
            "{target}: {answer}"
        );
    }
    // The allowed spelling works.
    assert_eq!(stack.get("/api/summary").await.status, 200);
    stack.assert_serving().await;
    stack.stop().await;
}

#[tokio::test]
async fn spoofed_identity_headers_land_in_the_anonymous_space() {
    let stack = Stack::start().await;
    // Anonymous upload; a caller claiming to be someone else sees the same
    // trades, so the claimed principal never reached the worker.
    let uploaded = stack.upload("orders.csv", &sample_csv(), &[]).await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.text());
    let anonymous = stack.get("/api/trades").await;
    assert_eq!(anonymous.status, 200);
    let spoofs: &[&[(&str, &str)]] = &[
        &[("x-tradehabit-principal", "jwt:https://issuer|alice")],
        &[
            ("x-tradehabit-principal", "key:admin"),
            ("x-tradehabit-scopes", "admin"),
            ("x-tradehabit-auth-method", "api-key"),
        ],
        &[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-real-ip", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1"),
        ],
    ];
    for spoof in spoofs {
        let seen = stack.get_with("/api/trades", spoof).await;
        assert_eq!(seen.status, 200, "{spoof:?}: {}", seen.text());
        assert_eq!(seen.body, anonymous.body, "{spoof:?} saw other data");
    }
    // And an upload under a claimed principal lands in the anonymous space.
    let other = fixture("legacy-all-no-stops.csv");
    let spoofed = stack
        .upload(
            "other.csv",
            &other,
            &[("x-tradehabit-principal", "jwt:https://issuer|mallory")],
        )
        .await;
    assert_eq!(spoofed.status, 200, "{}", spoofed.text());
    let after = stack.get("/api/trades").await;
    assert_eq!(after.status, 200);
    assert_ne!(
        after.body, anonymous.body,
        "the spoofed upload went elsewhere"
    );
    stack.stop().await;
}

#[tokio::test]
async fn csv_formula_injection_is_refused_with_row_and_column() {
    let stack = Stack::start().await;
    let csv = String::from_utf8(sample_csv()).unwrap();
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    // The first data row is a filled market order; put a formula in its
    // Contract cell.
    lines[1] = lines[1].replacen("MNQH4", "=1+2*cmd", 1);
    let injected = lines.join("\n") + "\n";
    let reply = stack.upload("orders.csv", injected.as_bytes(), &[]).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let message = reply.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("Row 2") && message.contains("column 'Contract'"),
        "{message}"
    );
    assert!(message.contains("formula"), "{message}");
    assert!(!reply.text().contains("=1+2*cmd"), "the formula was echoed");
    for prefix in ["+", "-", "@"] {
        let mut lines = lines.clone();
        lines[1] = csv
            .lines()
            .nth(1)
            .unwrap()
            .replacen("MNQH4", &format!("{prefix}SUM(A1)"), 1);
        let reply = stack
            .upload("orders.csv", (lines.join("\n") + "\n").as_bytes(), &[])
            .await;
        assert_eq!(reply.status, 400, "{prefix}: {}", reply.text());
    }
    stack.assert_serving().await;
    stack.stop().await;
}

#[tokio::test]
async fn multipart_bombs_are_refused_and_the_stack_keeps_serving() {
    let stack = Stack::start().await;
    // Many small parts, over the route's body limit: refused from the
    // declared length before anything is read.
    let small: Vec<(String, Vec<u8>)> = (0..40_000)
        .map(|i| (format!("f{i}"), b"x".to_vec()))
        .collect();
    let parts: Vec<(&str, Option<&str>, &[u8])> = small
        .iter()
        .map(|(n, c)| (n.as_str(), None, c.as_slice()))
        .collect();
    let (content_type, body) = multipart(&parts);
    assert!(body.len() > 2_162_688);
    let reply = stack
        .send(
            Request::post("/api/analyze")
                .header("content-type", &content_type)
                .body(Full::new(body))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 413, "{}", reply.text());

    // Many small parts under the limit and no file part: the legacy 400.
    let (content_type, body) = multipart(&parts[..10_000]);
    let reply = stack
        .send(
            Request::post("/api/analyze")
                .header("content-type", &content_type)
                .body(Full::new(body))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());

    // One part with a huge header block.
    let huge = "a".repeat(256 * 1024);
    let body = format!(
        "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.csv\"\r\n\
         X-Padding: {huge}\r\n\r\nOrder ID\r\n--b--\r\n"
    );
    let reply = stack
        .send(
            Request::post("/api/analyze")
                .header("content-type", "multipart/form-data; boundary=b")
                .body(Full::new(Bytes::from(body)))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.json()["status"], "ERROR");
    stack.assert_serving().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_never_ending_chunked_body_is_cut_at_the_limit() {
    let stack = Stack::start().await;
    let stream = stack.tls().await;
    let (mut reader, mut writer) = tokio::io::split(stream);
    writer
        .write_all(
            b"POST /api/analyze HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
    let flood = tokio::spawn(async move {
        let chunk = format!("10000\r\n{}\r\n", "a".repeat(0x10000));
        let mut sent = 0usize;
        // Writes until the gateway stops reading (or a bound far past the
        // limit, so that a broken gateway fails the test rather than hangs).
        while sent < 64 * 1024 * 1024 {
            if writer.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            sent += 0x10000;
        }
        sent
    });
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(SAFETY, reader.read(&mut answer))
        .await
        .expect("an answer while the body is still streaming")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]).into_owned();
    assert_eq!(raw_statuses(&answer), vec![413], "{answer}");
    flood.abort();
    stack.assert_serving().await;
    stack.stop().await;
}

#[tokio::test]
async fn compressed_request_bodies_get_415() {
    let stack = Stack::start().await;
    for coding in ["gzip", "deflate", "br", "x-gzip", "gzip, identity"] {
        let reply = stack
            .send(
                Request::post("/api/settings")
                    .header("content-type", "application/json")
                    .header("content-encoding", coding)
                    .body(Full::new(Bytes::from_static(b"\x1f\x8b\x08\x00")))
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, 415, "{coding}: {}", reply.text());
        assert_eq!(reply.json()["status"], "ERROR");
    }
    let reply = stack
        .upload(
            "orders.csv",
            b"\x1f\x8b\x08\x00",
            &[("content-encoding", "gzip")],
        )
        .await;
    assert_eq!(reply.status, 415, "{}", reply.text());
    stack.assert_serving().await;
    stack.stop().await;
}
