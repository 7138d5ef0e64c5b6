//! Compressed request bodies: refused (415) unless the route has
//! `compressed_body`; there, one gzip layer is decoded while it streams,
//! capped at `max_decoded_bytes` (413), and the checks and the upstream see
//! the decoded body without `Content-Encoding` or a stale `Content-Length`.

use std::io::Write;
use std::path::Path;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use http::Request;
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};

use crate::forward::send_stream;
use crate::support::*;

/// Decoded cap of the allowing routes.
const CAP: u64 = 1024 * 1024;

/// An allowing JSON route (buffered for the depth check), an allowing
/// route without body checks (streamed), an allowing upload route, and a
/// route that accepts no compressed body.
fn routes() -> String {
    format!(
        r#"
[[routes]]
name = "json"
path = "/api/json"
methods = ["POST"]
body_limit = 65536
auth = "none"
content_types = ["application/json"]
json = {{ max_depth = 4 }}
compressed_body = {{ encodings = ["gzip"], max_decoded_bytes = {CAP} }}

[[routes]]
name = "stream"
path = "/api/stream"
methods = ["POST"]
body_limit = 65536
auth = "none"
compressed_body = {{ encodings = ["gzip"], max_decoded_bytes = {CAP} }}

[[routes]]
name = "analyze"
path = "/api/analyze"
methods = ["POST"]
body_limit = 2162688
auth = "none"
upload = {{}}
compressed_body = {{ encodings = ["gzip"], max_decoded_bytes = 2162688 }}

[[routes]]
name = "plain"
path = "/api/plain"
methods = ["POST"]
body_limit = 65536
auth = "none"
"#
    )
}

async fn start(audit_dir: &Path) -> (TestGateway, Upstream) {
    TestGateway::with_upstream(Policy {
        routes: routes(),
        audit: format!("output = \"{}\"\n", audit_dir.join("audit.log").display()),
        ..Policy::default()
    })
    .await
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn post(path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method("POST").uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(Bytes::from(body))).unwrap()
}

/// Sends `body`, already gzip-compressed, as a POST to `path`.
async fn send_gzip(gw: &TestGateway, proto: Proto, path: &str, body: &[u8]) -> Reply {
    let request = post(path, &[("content-encoding", "gzip")], body.to_vec());
    gw.client().send(proto, request).await
}

/// Sends `body`, already gzip-compressed, as a JSON POST to `/api/json`.
async fn send_gzip_json(gw: &TestGateway, proto: Proto, body: Vec<u8>) -> Reply {
    let headers = [
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ];
    gw.client()
        .send(proto, post("/api/json", &headers, body))
        .await
}

fn assert_refused(reply: &Reply, status: u16, message: &str) {
    assert_eq!(
        reply.status,
        status,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_envelope(reply);
    assert_security_headers(reply);
    assert_eq!(reply.json()["message"], message);
}

/// The audit reasons written so far, in order.
fn audit_reasons(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("audit.log"))
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line.get("route").is_some())
        .map(|line| line["reason"].as_str().unwrap_or("allowed").to_string())
        .collect()
}

const BOUNDARY: &str = "gz-boundary";

fn upload(content: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"orders.csv\"\r\nContent-Type: text/csv\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

#[tokio::test]
async fn a_gzip_json_body_reaches_the_upstream_decoded() {
    let files = tempfile::tempdir().unwrap();
    let (gw, up) = start(files.path()).await;
    let json = br#"{"symbol":"ES","notes":[1,2,3]}"#;
    for proto in [Proto::H1, Proto::H2] {
        let reply = send_gzip_json(&gw, proto, gzip(json)).await;
        assert_eq!(
            reply.status,
            200,
            "{proto:?}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    for request in seen {
        assert_eq!(request.body, Bytes::from_static(json));
        assert!(!request.headers.contains_key("content-encoding"));
        // Buffered for the depth check: re-lengthed to the decoded size.
        assert_eq!(
            request.headers["content-length"],
            json.len().to_string().as_str()
        );
    }
}

#[tokio::test]
async fn a_gzip_body_on_a_streamed_route_is_forwarded_decoded_and_chunked() {
    let files = tempfile::tempdir().unwrap();
    let (gw, up) = start(files.path()).await;
    // Larger than the wire limit once decoded, well under the cap.
    let text: Vec<u8> = (0..30_000u32)
        .flat_map(|i| format!("{},Filled,Buy,ES\n", i % 100).into_bytes())
        .collect();
    assert!(text.len() as u64 > 65536 && (text.len() as u64) < CAP);
    let compressed = gzip(&text);
    assert!(compressed.len() < 65536, "{}", compressed.len());
    for proto in [Proto::H1, Proto::H2] {
        let reply = send_gzip(&gw, proto, "/api/stream", &compressed).await;
        assert_eq!(reply.status, 200, "{proto:?}");
    }
    for request in up.seen() {
        assert_eq!(request.body.len(), text.len());
        assert!(request.body == text.as_slice());
        assert!(!request.headers.contains_key("content-encoding"));
        assert!(!request.headers.contains_key("content-length"));
        assert_eq!(request.headers["transfer-encoding"], "chunked");
    }
}

#[tokio::test]
async fn a_gzip_csv_upload_passes_the_upload_check_and_is_forwarded_decoded() {
    let files = tempfile::tempdir().unwrap();
    let (gw, up) = start(files.path()).await;
    let form = upload(b"Status,B/S\nFilled,Buy\n");
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let reply = gw
        .client()
        .send(
            Proto::H2,
            post(
                "/api/analyze",
                &[
                    ("content-type", &content_type),
                    ("content-encoding", "gzip"),
                ],
                gzip(&form),
            ),
        )
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, Bytes::from(form.clone()));
    assert!(!seen[0].headers.contains_key("content-encoding"));

    // The upload check sees the decoded form: a gzipped executable is
    // refused like a plain one.
    let mut exe = form.clone();
    let at = exe.windows(4).position(|w| w == b".csv").unwrap();
    exe[at..at + 4].copy_from_slice(b".exe");
    let refused = gw
        .client()
        .send(
            Proto::H1,
            post(
                "/api/analyze",
                &[
                    ("content-type", &content_type),
                    ("content-encoding", "gzip"),
                ],
                gzip(&exe),
            ),
        )
        .await;
    assert_refused(&refused, 400, "only CSV files are supported");
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn a_gzip_bomb_is_413_at_the_cap_and_the_gateway_keeps_serving() {
    let files = tempfile::tempdir().unwrap();
    let (gw, up) = start(files.path()).await;
    let bomb = gzip(&vec![0u8; 10 * 1024 * 1024]);
    assert!(bomb.len() < 16 * 1024, "{}", bomb.len());
    for proto in [Proto::H1, Proto::H2] {
        // Buffered route: nothing at all reaches the upstream.
        let reply = send_gzip_json(&gw, proto, bomb.clone()).await;
        assert_refused(&reply, 413, "The decompressed request body is too large");
        assert!(up.seen().is_empty(), "forwarded: {:?}", up.seen().len());
    }
    for proto in [Proto::H1, Proto::H2] {
        // Streamed route: the upstream exchange is abandoned at the cap;
        // no complete request reaches the upstream.
        let reply = send_gzip(&gw, proto, "/api/stream", &bomb).await;
        assert_refused(&reply, 413, "The decompressed request body is too large");
    }
    for request in up.seen() {
        assert_eq!(request.body, Bytes::from_static(b"<incomplete>"));
    }
    let before = up.seen().len();
    // Still serving.
    let ok = send_gzip(&gw, Proto::H1, "/api/stream", &gzip(b"ok")).await;
    assert_eq!(ok.status, 200);
    assert_eq!(up.seen()[before].body, Bytes::from_static(b"ok"));
    audit_lines_written(&files.path().join("audit.log"), 5).await;
    assert_eq!(
        audit_reasons(files.path()),
        [
            "body.decoded_too_large",
            "body.decoded_too_large",
            "body.decoded_too_large",
            "body.decoded_too_large",
            "allowed"
        ]
    );
}

#[tokio::test]
async fn corrupt_gzip_is_400_on_buffered_and_streamed_routes() {
    let files = tempfile::tempdir().unwrap();
    let (gw, up) = start(files.path()).await;
    let mut corrupt = gzip(br#"{"a":1}"#);
    let crc_at = corrupt.len() - 8;
    corrupt[crc_at] ^= 0x01;
    let cases = [
        ("/api/json", b"not gzip at all".to_vec()),
        ("/api/json", corrupt.clone()),
        ("/api/stream", b"not gzip at all".to_vec()),
        ("/api/stream", corrupt),
    ];
    for (path, body) in cases {
        let reply = gw
            .client()
            .send(
                Proto::H1,
                post(
                    path,
                    &[
                        ("content-type", "application/json"),
                        ("content-encoding", "gzip"),
                    ],
                    body,
                ),
            )
            .await;
        assert_refused(
            &reply,
            400,
            "The compressed request body could not be decoded",
        );
    }
    // The buffered route forwards nothing; the streamed one never a
    // complete body.
    for request in up.seen() {
        assert_eq!(request.target, "/api/stream");
        assert_eq!(request.body, Bytes::from_static(b"<incomplete>"));
    }
    audit_lines_written(&files.path().join("audit.log"), 4).await;
    assert_eq!(audit_reasons(files.path()), ["body.encoding_corrupt"; 4]);
}

#[tokio::test]
async fn unlisted_or_stacked_encodings_are_415_and_other_routes_refuse_all() {
    let files = tempfile::tempdir().unwrap();
    let (gw, up) = start(files.path()).await;
    let once = gzip(b"{}");
    let twice = gzip(&once);
    let cases = [
        (
            "/api/json",
            "br",
            once.clone(),
            "The request body's Content-Encoding is not accepted on this route",
        ),
        (
            "/api/json",
            "deflate",
            once.clone(),
            "The request body's Content-Encoding is not accepted on this route",
        ),
        (
            "/api/json",
            "gzip, gzip",
            twice.clone(),
            "The request body's Content-Encoding is not accepted on this route",
        ),
        (
            "/api/stream",
            "gzip, gzip",
            twice,
            "The request body's Content-Encoding is not accepted on this route",
        ),
        (
            "/api/plain",
            "gzip",
            once,
            "Compressed request bodies are not accepted",
        ),
    ];
    for (path, encoding, body, message) in cases {
        for proto in [Proto::H1, Proto::H2] {
            let reply = gw
                .client()
                .send(
                    proto,
                    post(
                        path,
                        &[
                            ("content-type", "application/json"),
                            ("content-encoding", encoding),
                        ],
                        body.clone(),
                    ),
                )
                .await;
            assert_refused(&reply, 415, message);
        }
    }
    assert!(up.seen().is_empty());
    audit_lines_written(&files.path().join("audit.log"), 10).await;
    let reasons = audit_reasons(files.path());
    assert_eq!(reasons.len(), 10);
    assert!(
        reasons[..8]
            .iter()
            .all(|r| r == "body.encoding_not_accepted"),
        "{reasons:?}"
    );
    assert!(
        reasons[8..].iter().all(|r| r == "body.compressed"),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn the_checks_see_the_decoded_body_and_the_wire_bytes_count_against_body_limit() {
    let files = tempfile::tempdir().unwrap();
    let (gw, up) = start(files.path()).await;
    // The JSON depth check runs on the decoded body.
    let deep = gzip(br#"{"a":{"b":{"c":{"d":{"e":1}}}}}"#);
    let reply = send_gzip_json(&gw, Proto::H2, deep).await;
    assert_eq!(
        reply.status,
        400,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_envelope_with_details(&reply);
    // Incompressible bytes: over the 64 KiB wire limit although far under
    // the decoded cap.
    let mut state = 0x2545_f491_u32;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    let compressed = gzip(&noise);
    assert!(compressed.len() > 65536);
    for proto in [Proto::H1, Proto::H2] {
        let reply = send_gzip(&gw, proto, "/api/stream", &compressed).await;
        assert_refused(&reply, 413, "The request body is too large");
    }
    assert!(up.seen().is_empty(), "{}", up.seen().len());
    // The same without a declared length (HTTP/1.1 chunked, HTTP/2 DATA
    // frames): counted on the wire as it streams and cut off at the limit.
    for proto in [Proto::H1, Proto::H2] {
        let frames: Vec<_> = compressed
            .chunks(16 * 1024)
            .map(|c| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let streamed = Request::builder()
            .method("POST")
            .uri("/api/stream")
            .header("content-encoding", "gzip")
            .body(StreamBody::new(futures_util::stream::iter(frames)).boxed())
            .unwrap();
        let reply = send_stream(gw.client().tls(proto).await, proto, streamed).await;
        assert_refused(&reply, 413, "The request body is too large");
    }
    for request in up.seen() {
        assert_eq!(request.body, Bytes::from_static(b"<incomplete>"));
    }
}

/// A check's envelope: status ERROR and a message (details may be set).
fn assert_envelope_with_details(reply: &Reply) {
    let json = reply.json();
    assert_eq!(json["status"], "ERROR", "{json}");
    assert!(json["message"].is_string(), "{json}");
}
