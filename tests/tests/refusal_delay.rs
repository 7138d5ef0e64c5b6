//! A client that asks again at once after every refusal is slowed down:
//! each client IP gets `limits.refusal_delay_after` refusals (401, 403,
//! 429) a second at full speed, further ones are held for
//! `limits.refusal_delay`; other addresses and allowed requests are not
//! affected, and the audit line records the held time. Over real TLS to the
//! real gateway and worker (`docs/security-controls.md`, F-35).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tradehabit_e2e::attack::{Stack, SAFETY};

const ROUTES: &str = r#"
[[routes]]
name = "private"
path = "/api/summary"
methods = ["GET"]
body_limit = 1024

[[routes]]
name = "health"
path = "/api/health"
methods = ["GET"]
auth = "none"
body_limit = 1024
"#;

/// The delay the test policy sets: long enough to tell apart from a
/// prompt answer on a loaded machine, short enough for the suite.
const DELAY: Duration = Duration::from_secs(2);

const DELAYED: &str = "tradehabit_gateway_refusals_delayed_total";

async fn start() -> Stack {
    let limits = "idle_timeout = \"30s\"\nheader_read_timeout = \"5s\"\n\
                  refusal_delay = \"2s\"\nrefusal_delay_after = 3";
    Stack::start_with_limits(
        limits,
        |dir| {
            std::fs::write(dir.join("pepper"), "refusal-delay-pepper-0123456789abcdef").unwrap();
            format!(
                "[api_keys]\npepper = {{ file = \"pepper\" }}\n\n[audit]\noutput = \"{}\"\n",
                dir.join("audit.log").display()
            )
        },
        ROUTES,
    )
    .await
}

/// Sends `count` requests for `path`, one after the other, over one HTTP/2
/// connection from `from`; returns each one's status and how long it took.
async fn timed_h2(stack: &Stack, from: IpAddr, path: &str, count: usize) -> Vec<(u16, Duration)> {
    let io = TokioIo::new(stack.tls_from(from, b"h2", None).await);
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let mut answers = Vec::new();
    for _ in 0..count {
        let request = Request::get(format!("https://localhost{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let sent = Instant::now();
        let response = tokio::time::timeout(SAFETY, sender.send_request(request))
            .await
            .expect("an answer within the safety net")
            .expect("an answer");
        let status = response.status().as_u16();
        response.into_body().collect().await.expect("the body");
        answers.push((status, sent.elapsed()));
    }
    answers
}

#[tokio::test]
async fn refusals_beyond_the_allowance_are_held() {
    let stack = start().await;
    let client = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7));
    // No credentials: 401 each time. Three in the first second come at
    // once; the fourth (same second) is held. The window is one second and
    // the delay two, so the fourth's hold also ends the window.
    let answers = timed_h2(&stack, client, "/api/summary", 4).await;
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert_eq!(statuses, [401; 4]);
    let (_, fourth) = answers[3];
    assert!(fourth >= DELAY, "the fourth refusal came after {fourth:?}");
    assert_eq!(stack.metric(DELAYED).await, 1.0);
    // The held refusal's audit line says how long the client waited.
    let held = |l: &serde_json::Value| {
        l["client_ip"] == "127.0.0.7"
            && l["status"] == 401
            && l["duration_ms"].as_u64().unwrap() >= 2000
    };
    stack.wait_for_audit(held).await;
    let lines = stack.audit_lines();
    assert_eq!(lines.iter().filter(|l| held(l)).count(), 1, "{lines:?}");

    // Allowed requests are never counted or held.
    let health = timed_h2(&stack, client, "/api/health", 5).await;
    assert!(health.iter().all(|(status, _)| *status == 200));
    assert_eq!(stack.metric(DELAYED).await, 1.0);
    stack.stop().await;
}

#[tokio::test]
async fn a_zero_delay_turns_it_off() {
    let limits = "refusal_delay = \"0s\"\nrefusal_delay_after = 0";
    let stack = Stack::start_with_limits(
        limits,
        |dir| {
            std::fs::write(dir.join("pepper"), "refusal-delay-pepper-0123456789abcdef").unwrap();
            "[api_keys]\npepper = { file = \"pepper\" }\n".to_string()
        },
        ROUTES,
    )
    .await;
    let client = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));
    let answers = timed_h2(&stack, client, "/api/summary", 4).await;
    assert!(answers.iter().all(|(status, _)| *status == 401));
    assert_eq!(stack.metric(DELAYED).await, 0.0);
    stack.stop().await;
}
