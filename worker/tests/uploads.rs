//! Uploads and bodies over the socket: what reaches the engine, and every
//! refusal the HTTP layer produces itself — each a specific error envelope,
//! never a 500, and the worker keeps serving after each.
//!
//! The `observer` engine entry point answers with what it was handed (the
//! upload's filename, length and SHA-256), so these tests see exactly what
//! the layer extracted from real multipart bodies.

mod harness;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use harness::{counted_body, csv, observer, request, send, Form, TestWorker};
use http::Method;
use http_body_util::Full;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tradehabit_worker::api::MAX_UPLOAD_BYTES;

const ALICE: Option<&str> = Some("key:alice");

async fn observed() -> TestWorker {
    TestWorker::start_with(|_| {}, Some(observer(None))).await
}

fn file_seen(name: &str, content: &[u8]) -> Value {
    json!({
        "filename": name,
        "len": content.len(),
        "sha256": hex::encode(Sha256::digest(content)),
    })
}

async fn post_raw(
    worker: &TestWorker,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> harness::Answer {
    let mut builder = request(Method::POST, "/api/analyze", ALICE);
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    send(
        worker.socket(),
        builder.body(Full::new(Bytes::from(body))).unwrap(),
    )
    .await
}

/// After a refusal, the worker still answers a good upload.
async fn still_serving(worker: &TestWorker) {
    let content = csv("legacy-8-trades-1-no-stop.csv");
    let answer = worker.upload(ALICE, "ok.csv", &content).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["upload"], file_seen("ok.csv", &content));
}

#[tokio::test]
async fn a_well_formed_upload_reaches_the_engine_intact() {
    let worker = observed().await;
    let content = csv("legacy-314-trades.csv");
    let answer = worker
        .post_form(
            "/api/analyze?sigma=2.0&k=0.5",
            ALICE,
            Form::new().file("file", "legacy-314-trades.csv", &content),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let seen = answer.json();
    assert_eq!(seen["upload"], file_seen("legacy-314-trades.csv", &content));
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/api/analyze");
    assert_eq!(seen["query"], "sigma=2.0&k=0.5");
    assert_eq!(seen["body_len"], 0);
    assert!(seen["content_type"]
        .as_str()
        .unwrap()
        .starts_with("multipart/form-data"));
}

#[tokio::test]
async fn the_first_file_part_with_a_filename_is_the_upload() {
    let worker = observed().await;
    let form = Form::new()
        .field("comment", "hello")
        .field("file", "a form field named file is not a file")
        .file("other", "other.csv", b"not this one")
        .file("file", "first.csv", b"a,b\n1,2\n")
        .file("file", "second.csv", b"nor this one");
    let answer = worker.post_form("/api/analyze", ALICE, form).await;
    assert_eq!(
        answer.json()["upload"],
        file_seen("first.csv", b"a,b\n1,2\n")
    );
}

#[tokio::test]
async fn names_and_empty_files_are_passed_on_for_the_engine_to_judge() {
    let worker = observed().await;
    for name in ["report.exe", "", "UPPER.CSV"] {
        let answer = worker.upload(ALICE, name, b"x").await;
        assert_eq!(answer.json()["upload"], file_seen(name, b"x"), "{name:?}");
    }
    let answer = worker.upload(ALICE, "empty.csv", b"").await;
    assert_eq!(answer.json()["upload"], file_seen("empty.csv", b""));
}

#[tokio::test]
async fn no_file_part_reaches_the_engine_as_missing() {
    let worker = observed().await;
    let cases = [
        Form::new().field("comment", "no file here"),
        Form::new().file("upload", "a.csv", b"wrong field name"),
        Form::new(),
    ];
    for form in cases {
        let answer = worker.post_form("/api/analyze", ALICE, form).await;
        assert_eq!(answer.json()["upload"], "missing");
    }
    // No Content-Type at all (an empty POST) is the legacy "no file part".
    let answer = post_raw(&worker, None, Vec::new()).await;
    assert_eq!(answer.json()["upload"], "missing");
}

#[tokio::test]
async fn a_body_that_is_not_multipart_is_a_specific_400() {
    let worker = observed().await;
    for content_type in [
        "application/json",
        "text/csv",
        "application/x-www-form-urlencoded",
        "multipart/mixed; boundary=abc",
    ] {
        let body = post_raw(&worker, Some(content_type), b"{\"file\": \"a,b\"}".to_vec())
            .await
            .assert_envelope(400);
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("multipart/form-data"),
            "{content_type}: {body}"
        );
        still_serving(&worker).await;
    }
}

#[tokio::test]
async fn multipart_without_a_boundary_is_a_specific_400() {
    let worker = observed().await;
    for content_type in ["multipart/form-data", "multipart/form-data; charset=utf-8"] {
        let body = post_raw(&worker, Some(content_type), b"--x\r\n".to_vec())
            .await
            .assert_envelope(400);
        assert!(
            body["message"].as_str().unwrap().contains("boundary"),
            "{body}"
        );
        still_serving(&worker).await;
    }
}

#[tokio::test]
async fn a_malformed_multipart_body_is_a_specific_400_never_a_500() {
    let worker = observed().await;
    let form = Form::new();
    let content_type = form.content_type();
    let boundary = content_type.split("boundary=").nth(1).unwrap().to_owned();

    // The file part's data never ends (no closing boundary).
    let truncated = Form::new()
        .file("file", "a.csv", b"a,b\n1,2\n")
        .unfinished();
    let truncated = truncated[..truncated.len() - 2].to_vec();
    // Part headers that end abruptly.
    let cut_headers = format!("--{boundary}\r\nContent-Disposition: form-data; na").into_bytes();
    // A header line that is not a header.
    let bad_header =
        format!("--{boundary}\r\n\u{1}\u{2}garbage\r\n\r\ndata\r\n--{boundary}--\r\n").into_bytes();
    // Bytes that never mention the boundary.
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated part", truncated),
        ("cut headers", cut_headers),
        ("bad header", bad_header),
        ("garbage", garbage),
    ];
    for (case, body) in cases {
        let answer = post_raw(&worker, Some(&content_type), body).await;
        let envelope = answer.assert_envelope(400);
        assert!(
            envelope["message"].as_str().unwrap().contains("malformed"),
            "{case}: {envelope}"
        );
        still_serving(&worker).await;
    }
}

#[tokio::test]
async fn a_file_of_exactly_the_limit_arrives_whole() {
    let worker = observed().await;
    let content = vec![b'\n'; MAX_UPLOAD_BYTES];
    let answer = worker.upload(ALICE, "exact.csv", &content).await;
    assert_eq!(answer.json()["upload"], file_seen("exact.csv", &content));
}

#[tokio::test]
async fn an_oversized_file_is_cut_one_byte_past_the_limit_and_the_rest_is_never_read() {
    let worker = observed().await;
    let form = Form::new();
    let content_type = form.content_type();
    let head = Form::new()
        .field("comment", "big file follows")
        .unfinished();
    let boundary = content_type.split("boundary=").nth(1).unwrap().to_owned();
    let part_head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n\r\n"
    );
    const TOTAL: usize = 64 * 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    let data = Bytes::from(vec![b'a'; CHUNK]);
    let chunks = [Bytes::from(head), Bytes::from(part_head)]
        .into_iter()
        .chain(std::iter::repeat_n(data, TOTAL / CHUNK))
        .chain([Bytes::from(format!("\r\n--{boundary}--\r\n"))]);
    let pulled = Arc::new(AtomicUsize::new(0));
    let request = request(Method::POST, "/api/analyze", ALICE)
        .header("content-type", content_type)
        .body(counted_body(chunks, Arc::clone(&pulled)))
        .unwrap();

    let answer = send(worker.socket(), request).await;
    let cut = vec![b'a'; MAX_UPLOAD_BYTES + 1];
    assert_eq!(answer.json()["upload"], file_seen("big.csv", &cut));
    let pulled = pulled.load(Ordering::SeqCst);
    assert!(
        pulled < TOTAL / 4,
        "the client could push {pulled} of {TOTAL} bytes: the worker kept reading"
    );
    still_serving(&worker).await;
}

#[tokio::test]
async fn parts_before_the_file_beyond_the_stream_cap_are_413() {
    let worker = observed().await;
    let junk = "j".repeat(MAX_UPLOAD_BYTES + 1024 * 1024 + 1);
    let form = Form::new()
        .field("comment", &junk)
        .file("file", "a.csv", b"a,b\n");
    let body = worker
        .post_form("/api/analyze", ALICE, form)
        .await
        .assert_envelope(413);
    assert!(body["details"][0].as_str().unwrap().contains("limit"));
    still_serving(&worker).await;
}

#[tokio::test]
async fn json_bodies_over_the_limit_are_413_declared_or_streamed() {
    let worker = TestWorker::start_with(
        |config| config.body.max_body_bytes = 1024,
        Some(observer(None)),
    )
    .await;
    let fits = format!("{{\"k\": 1.0, \"pad\": \"{}\"}}", "x".repeat(900));
    let answer = worker.post_json("/api/settings", ALICE, &fits).await;
    assert_eq!(answer.json()["body_len"], fits.len());

    let too_big = format!("{{\"pad\": \"{}\"}}", "x".repeat(2000));
    worker
        .post_json("/api/settings", ALICE, &too_big)
        .await
        .assert_envelope(413);

    // Chunked, so no Content-Length to refuse early: cut while streaming.
    let chunks = std::iter::repeat_n(Bytes::from(vec![b' '; 512]), 64);
    let request = request(Method::POST, "/api/goals/calculate", ALICE)
        .header("content-type", "application/json")
        .body(counted_body(chunks, Arc::new(AtomicUsize::new(0))))
        .unwrap();
    send(worker.socket(), request).await.assert_envelope(413);
    still_serving(&worker).await;
}

/// Writes a raw request and reads until the worker closes the connection;
/// fails if it does not close it within the harness's patience.
fn raw_exchange(socket: &std::path::Path, request: &[u8]) -> String {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(harness::PATIENCE)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("the worker closes the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_408() {
    let worker = TestWorker::start_with(
        |config| config.body.read_timeout = Duration::from_millis(200),
        Some(observer(None)),
    )
    .await;
    let socket = worker.socket().to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        raw_exchange(
            &socket,
            b"POST /api/settings HTTP/1.1\r\nhost: w\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n{\"k\":",
        )
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("content-type: application/json"),
        "{answer}"
    );
    assert!(answer.contains("\"status\":\"ERROR\""), "{answer}");
    still_serving(&worker).await;
}

#[tokio::test]
async fn headers_that_do_not_arrive_in_time_close_the_connection() {
    let worker = TestWorker::start_with(
        |config| config.connections.header_read_timeout = Duration::from_millis(200),
        Some(observer(None)),
    )
    .await;
    let socket = worker.socket().to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        raw_exchange(
            &socket,
            b"GET /api/settings HTTP/1.1\r\nhost: w\r\nx-slow: ",
        )
    })
    .await
    .unwrap();
    assert!(!answer.contains("200 OK"), "{answer}");
    still_serving(&worker).await;
}

#[tokio::test]
async fn the_worker_keeps_serving_after_a_client_vanishes_mid_upload() {
    let worker = observed().await;
    let socket = worker.socket().to_owned();
    tokio::task::spawn_blocking(move || {
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        stream
            .write_all(
                b"POST /api/analyze HTTP/1.1\r\nhost: w\r\n\
                  content-type: multipart/form-data; boundary=b\r\ncontent-length: 100000\r\n\r\n\
                  --b\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\na,b",
            )
            .unwrap();
    })
    .await
    .unwrap();
    still_serving(&worker).await;
}

// With the real engine behind the layer.

#[tokio::test]
async fn every_upload_error_is_a_400_and_keeps_the_previous_upload() {
    let worker = TestWorker::start().await;
    let good = csv("legacy-8-trades-1-no-stop.csv");
    assert_eq!(worker.upload(ALICE, "good.csv", &good).await.status, 200);
    let before = worker.get("/api/trades", ALICE).await.json();
    let header_only = b"Order ID,Timestamp,Fill Time,B/S,Contract,filledQty,Avg Fill Price,Type,Limit Price,Stop Price,Status\n";
    let too_big = vec![b'\n'; MAX_UPLOAD_BYTES + 1];
    let cases: Vec<(&str, Form)> = vec![
        ("no file part", Form::new().field("comment", "x")),
        ("not .csv", Form::new().file("file", "orders.txt", &good)),
        ("too big", Form::new().file("file", "big.csv", &too_big)),
        ("empty", Form::new().file("file", "empty.csv", b"")),
        (
            "header only",
            Form::new().file("file", "h.csv", header_only),
        ),
        (
            "binary",
            Form::new().file("file", "bin.csv", &[0xa5, 0x00, 0xff, 0x10]),
        ),
    ];
    for (case, form) in cases {
        worker
            .post_form("/api/analyze", ALICE, form)
            .await
            .assert_envelope(400);
        let after = worker.get("/api/trades", ALICE).await;
        assert_eq!(after.status, 200, "{case}");
        assert_eq!(after.json(), before, "{case}: the previous upload changed");
    }
}
