//! Refusals a client can read: a client that writes its whole request
//! before it reads (as Python's `requests` does) and sends more than the
//! worker reads — an upload over the 2 MiB file limit, a JSON body refused
//! from its `Content-Length` — gets the error envelope with
//! `Connection: close`, not a broken pipe; the worker keeps serving.

mod harness;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use harness::{csv, Form, TestWorker};
use tradehabit_shared::headers::PRINCIPAL;
use tradehabit_worker::api::MAX_UPLOAD_BYTES;

/// Far more than the socket's buffers hold, less than the worker discards.
const OVERSIZE: usize = 3 * 1024 * 1024;

/// Writes `head` and `body` in full, then reads until the worker closes
/// the connection. A write or read error is returned, not panicked on.
fn write_all_then_read(socket: &Path, head: &str, body: &[u8]) -> Result<String, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(harness::PATIENCE))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(harness::PATIENCE))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(head.as_bytes())
        .map_err(|e| format!("writing the head: {e}"))?;
    stream
        .write_all(body)
        .map_err(|e| format!("writing the body: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("reading the answer: {e}"))?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// Asserts an answer's status, `Connection: close` and envelope.
fn assert_refusal(answer: &str, status: u16) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status} ")),
        "status {status}: {answer:.400}"
    );
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole answer");
    assert!(
        head.to_ascii_lowercase().contains("\r\nconnection: close"),
        "Connection: close: {head}"
    );
    let json: serde_json::Value = serde_json::from_str(body).expect("an envelope");
    assert_eq!(json["status"], "ERROR", "{json}");
}

async fn run(socket: &Path, head: String, body: Vec<u8>) -> Result<String, String> {
    let socket = socket.to_owned();
    tokio::task::spawn_blocking(move || write_all_then_read(&socket, &head, &body))
        .await
        .unwrap()
}

#[tokio::test]
async fn an_upload_over_the_limit_gets_its_refusal_not_a_broken_pipe() {
    let worker = TestWorker::start().await;
    const { assert!(OVERSIZE > MAX_UPLOAD_BYTES) };
    // Past the file limit: the worker stops reading one byte past it and
    // answers 400 (the legacy backend's "file exceeds the 2 MB limit").
    let (content_type, body) = Form::new()
        .file("file", "big.csv", &vec![b'a'; OVERSIZE])
        .finish();
    let head = format!(
        "POST /api/analyze HTTP/1.1\r\nHost: worker\r\n{PRINCIPAL}: key:alice\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let answer = run(worker.socket(), head, body.to_vec())
        .await
        .unwrap_or_else(|error| panic!("the upload's refusal was not read: {error}"));
    assert_refusal(&answer, 400);

    // A JSON body refused from its Content-Length before a byte is read.
    let head = format!(
        "POST /api/settings HTTP/1.1\r\nHost: worker\r\n{PRINCIPAL}: key:alice\r\n\
         Content-Type: application/json\r\nContent-Length: {OVERSIZE}\r\n\r\n"
    );
    let answer = run(worker.socket(), head, vec![b' '; OVERSIZE])
        .await
        .unwrap_or_else(|error| panic!("the body's refusal was not read: {error}"));
    assert_refusal(&answer, 413);

    // Still serving, on a new connection.
    let content = csv("legacy-8-trades-1-no-stop.csv");
    let answer = worker.upload(Some("key:alice"), "ok.csv", &content).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
}
