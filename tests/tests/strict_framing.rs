//! HTTP/1.1 framing the gateway refuses itself, over TLS against the real
//! gateway and worker: lenient chunk-size lines (RFC 9112 §7.1) and heads
//! beyond hyper's own bounds. Each gets exactly one answer — the gateway's
//! JSON envelope with the security headers, a request id and
//! `Connection: close` — and nothing after it is read as a request.

use tradehabit_e2e::attack::{raw_statuses, Stack};

/// A pipelined request that must never be answered.
const NEXT: &str = "GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Asserts `answer` is the gateway's single refusal with `status`, naming
/// `message` and `detail`.
fn assert_gateway_refusal(answer: &str, status: u16, message: &str, detail: &str) {
    assert_eq!(raw_statuses(answer), vec![status], "one answer\n{answer}");
    let lower = answer.to_ascii_lowercase();
    for header in [
        "connection: close",
        "strict-transport-security: max-age=",
        "x-content-type-options: nosniff",
        "content-type: application/json",
        "x-request-id: ",
    ] {
        assert!(lower.contains(header), "{header}\n{answer}");
    }
    assert!(answer.contains("\"status\":\"ERROR\""), "{answer}");
    assert!(answer.contains(message), "{message}\n{answer}");
    assert!(answer.contains(detail), "{detail}\n{answer}");
}

#[tokio::test]
async fn lenient_chunk_size_lines_get_the_envelope_and_the_connection_closed() {
    let stack = Stack::start().await;
    let bodies = [
        (
            "2 \r\n{}\r\n0\r\n\r\n",
            "whitespace out of place in a chunk-size line",
        ),
        (
            "2;a\0b\r\n{}\r\n0\r\n\r\n",
            "a control byte in the chunked framing",
        ),
        (
            "2\n{}\r\n0\r\n\r\n",
            "a chunked framing line not ended by CRLF",
        ),
        ("2;a=\r\n{}\r\n0\r\n\r\n", "a malformed chunk extension"),
        (
            "000000000000000002\r\n{}\r\n0\r\n\r\n",
            "a chunk size with more than 16 digits",
        ),
        (
            "2\r\n{}\r\n0\r\nX-T: a\0b\r\n\r\n",
            "a control byte in the chunked framing",
        ),
    ];
    // The settings route reads its JSON body whole before forwarding it
    // (a streamed body is refused the same way while the upstream reads it:
    // `gateway/tests/e2e/forward.rs`).
    for (body, detail) in bodies {
        let attack = format!(
            "POST /api/settings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n{body}{NEXT}"
        );
        let answer = stack.raw(attack.as_bytes()).await;
        assert_gateway_refusal(
            &answer,
            400,
            "The request body's chunked framing is malformed",
            detail,
        );
    }
    // What the grammar allows still passes: BWS around `;` and `=`,
    // quoted values, trailers.
    let fine =
        "POST /api/settings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                2 ; a = b ;c=\"d e\"\r\n{}\r\n0\r\nX-Sum: 1\r\n\r\n";
    let answer = stack.raw(fine.as_bytes()).await;
    assert_eq!(raw_statuses(&answer), vec![200], "{answer}");
    stack.assert_serving().await;
    stack.stop().await;
}

#[tokio::test]
async fn heads_beyond_twice_the_limit_get_the_envelope_not_a_bare_431() {
    // The policy's max_header_bytes is 16 KiB: hyper's bound was 32 KiB.
    let stack = Stack::start().await;
    let huge_field = format!("X-Big: {}\r\n", "v".repeat(64 * 1024));
    let many_fields: String = (0..300).map(|i| format!("X-H{i}: v\r\n")).collect();
    let heads = [
        (huge_field.as_str(), "the header section is too large"),
        (many_fields.as_str(), "too many header fields"),
    ];
    for (fields, detail) in heads {
        let attack = format!("GET /api/health HTTP/1.1\r\nHost: localhost\r\n{fields}\r\n{NEXT}");
        let answer = stack.raw(attack.as_bytes()).await;
        assert_gateway_refusal(&answer, 431, "The request headers are too large", detail);
    }
    let long_line = format!(
        "GET /api/health?{} HTTP/1.1\r\nHost: localhost\r\n\r\n{NEXT}",
        "q".repeat(64 * 1024)
    );
    let answer = stack.raw(long_line.as_bytes()).await;
    assert_eq!(raw_statuses(&answer), vec![414], "{answer}");
    assert!(answer.contains("The request URI is too long"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close")
            && answer
                .to_ascii_lowercase()
                .contains("strict-transport-security"),
        "{answer}"
    );
    stack.assert_serving().await;
    stack.stop().await;
}
