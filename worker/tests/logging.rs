//! One log line per request, with the fields operators need (request id,
//! method, route, status, duration, row and trade counts, a principal tag)
//! and nothing a trader or an attacker would want: no CSV values, no
//! principal in clear.
//!
//! Its own test crate, because it installs the process-wide subscriber.

mod harness;

use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use harness::{observer, request, send, Form, TestWorker};
use http::Method;
use http_body_util::Full;
use serde_json::Value;

const PRINCIPAL: &str = "jwt:https://issuer.example|alice.secret@example.com";
const SYMBOL: &str = "ZQSECRETZ4";
const PRICE: &str = "98765.4321";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn install() -> Capture {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();
    capture
}

fn secret_csv() -> Vec<u8> {
    format!(
        "Order ID,Timestamp,Fill Time,B/S,Contract,filledQty,Avg Fill Price,Type,Limit Price,Stop Price,Status\n\
         1,01/02/2024 7:30:00,01/02/2024 7:30:00,Buy,{SYMBOL},1,{PRICE},Market,,,Filled\n\
         2,01/02/2024 7:31:00,01/02/2024 7:36:00,Sell,{SYMBOL},1,{PRICE},Limit,{PRICE},,Filled\n"
    )
    .into_bytes()
}

async fn with_id(
    worker: &TestWorker,
    id: &str,
    builder: http::request::Builder,
    body: Bytes,
) -> u16 {
    let request = builder
        .header("x-request-id", id)
        .body(Full::new(body))
        .unwrap();
    send(worker.socket(), request).await.status.as_u16()
}

#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::too_many_lines)] // one scenario read top to bottom; the limit is for non-test code
async fn log_lines_carry_ids_and_counts_but_never_data_or_principals() {
    let capture = install();
    let real = TestWorker::start().await;
    let seen = TestWorker::start_with(|_| {}, Some(observer(None))).await;
    let (content_type, form) = Form::new()
        .file("file", "secret.csv", &secret_csv())
        .finish();
    let too_long = "x".repeat(600);

    let mut sent = Vec::new();
    for (worker, id, builder, body) in [
        (
            &real,
            "req-upload",
            request(Method::POST, "/api/analyze", Some(PRINCIPAL))
                .header("content-type", &content_type),
            form.clone(),
        ),
        (
            &real,
            "req-summary",
            request(
                Method::GET,
                "/api/summary?symbol=ZQSECRETZ4",
                Some(PRINCIPAL),
            ),
            Bytes::new(),
        ),
        (
            &real,
            "req-settings",
            request(Method::POST, "/api/settings", Some(PRINCIPAL))
                .header("content-type", "application/json"),
            Bytes::from(format!("{{\"vr\": \"{PRICE}\"}}")),
        ),
        (
            &real,
            "req-bad-principal",
            request(Method::GET, "/api/trades", Some(&too_long)),
            Bytes::new(),
        ),
        (
            &real,
            "req-bad-type",
            request(Method::POST, "/api/analyze", Some(PRINCIPAL))
                .header("content-type", "text/csv"),
            Bytes::from(secret_csv()),
        ),
        (
            &real,
            "req-delete",
            request(Method::DELETE, "/api/session", Some(PRINCIPAL)),
            Bytes::new(),
        ),
        (
            &real,
            "req-probe",
            request(Method::GET, "/internal/ready", None),
            Bytes::new(),
        ),
        (
            &seen,
            "req-observed",
            request(Method::POST, "/api/analyze", Some(PRINCIPAL))
                .header("content-type", &content_type),
            form.clone(),
        ),
    ] {
        let status = with_id(worker, id, builder, body).await;
        sent.push((id, status));
    }
    real.stop().await;
    seen.stop().await;

    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    for secret in [
        SYMBOL,
        PRICE,
        "alice.secret",
        "issuer.example",
        &too_long[..64],
    ] {
        assert!(
            !text.contains(secret),
            "the log contains {secret:?}:\n{text}"
        );
    }

    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("every log line is JSON"))
        .filter(|line: &Value| line["target"] == "tradehabit_worker::request")
        .collect();
    assert_eq!(lines.len(), sent.len(), "one line per request:\n{text}");
    let mut alice_tags = Vec::new();
    for (id, status) in &sent {
        let line = lines
            .iter()
            .find(|line| line["request.id"] == *id)
            .unwrap_or_else(|| panic!("no line for {id}"));
        assert_eq!(line["http.status"], *status, "{line}");
        assert!(line["http.route"].is_string(), "{line}");
        assert!(line["http.method"].is_string(), "{line}");
        assert!(line["duration_ms"].as_f64().is_some(), "{line}");
        if let Some(tag) = line["principal.tag"]
            .as_str()
            .filter(|tag| *tag != "anonymous")
        {
            assert_eq!(tag.len(), 12, "{line}");
            assert!(tag.bytes().all(|b| b.is_ascii_hexdigit()), "{line}");
            alice_tags.push((*id, tag.to_owned()));
        }
    }
    let real_tags: Vec<_> = alice_tags
        .iter()
        .filter(|(id, _)| *id != "req-observed")
        .map(|(_, tag)| tag.clone())
        .collect();
    assert!(
        real_tags.windows(2).all(|pair| pair[0] == pair[1]),
        "{alice_tags:?}"
    );
    let bad = lines
        .iter()
        .find(|l| l["request.id"] == "req-bad-principal")
        .unwrap();
    assert!(
        bad["principal.tag"].is_null(),
        "an invalid principal is not tagged"
    );
    assert!(bad["refusal"]
        .as_str()
        .is_some_and(|r| r.contains("principal")));
    // The gateway's readiness probe comes every few seconds: debug, not info.
    let level_of = |id: &str| {
        let line = lines.iter().find(|l| l["request.id"] == id).unwrap();
        line["level"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(level_of("req-probe"), "DEBUG");
    assert_eq!(level_of("req-summary"), "INFO");
    let observed = lines
        .iter()
        .find(|l| l["request.id"] == "req-observed")
        .unwrap();
    assert_eq!(
        observed["upload.rows"], 3,
        "row counts from the engine's facts"
    );
    assert_eq!(observed["http.route"], "/api/analyze");
}
