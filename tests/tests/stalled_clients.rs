//! Clients that stop taking their answers (`docs/security-controls.md`,
//! F-4 and F-5): an HTTP/2 client with a zero flow-control window and an
//! HTTP/1.1 client that never reads must not hold the upstream's slots
//! from everyone else; the gateway abandons their answers after
//! `limits.send_timeout` and audits the stall. Real TLS, real gateway, real
//! worker; the attacker connects from its own loopback address.

use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tradehabit_e2e::attack::{fixture, raw_statuses, Stack, LIMITS, ROUTES, SAFETY};

/// The attacker's own address; the other clients come from 127.0.0.1.
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// Starts the stack with four upstream slots, a short wait for one, a
/// short send deadline and `limits` (more `[limits]` lines); the audit log
/// in `audit.log`.
async fn start(limits: &str) -> Stack {
    let limits = format!("{LIMITS}\nsend_timeout = \"2s\"\n{limits}");
    let upstream = "max_in_flight = 4\nqueue_timeout = \"500ms\"";
    let audit = |dir: &std::path::Path| {
        format!(
            "[audit]\noutput = \"{}\"\n",
            dir.join("audit.log").display()
        )
    };
    Stack::start_tuned(&limits, upstream, audit, ROUTES).await
}

/// An HTTP/2 connection from the attacker that grants the gateway no
/// flow-control window for any stream.
async fn zero_window_h2(stack: &Stack) -> h2::client::SendRequest<Bytes> {
    let tls = stack.tls_from(ATTACKER, b"h2", None).await;
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tls)
        .await
        .expect("h2 handshake");
    tokio::spawn(connection);
    client
}

/// Opens `count` GET streams for `path` and waits for each answer's head.
async fn open_streams(
    client: &h2::client::SendRequest<Bytes>,
    path: &str,
    count: usize,
) -> Vec<http::Response<h2::RecvStream>> {
    let mut pending = Vec::new();
    for _ in 0..count {
        let mut ready = client.clone().ready().await.expect("a stream slot");
        let request = Request::get(format!("https://localhost{path}"))
            .body(())
            .unwrap();
        let (response, _) = ready.send_request(request, true).expect("stream opened");
        pending.push(response);
    }
    let mut heads = Vec::new();
    for response in pending {
        let head = tokio::time::timeout(SAFETY, response)
            .await
            .expect("a head within the safety net")
            .expect("a head");
        heads.push(head);
    }
    heads
}

#[tokio::test]
async fn a_zero_window_h2_client_neither_starves_others_nor_keeps_its_streams() {
    let stack = start("").await;
    let attacker = zero_window_h2(&stack).await;
    // Twice the upstream's slots, every head answered, no body taken.
    let heads = open_streams(&attacker, "/api/health", 8).await;
    for head in &heads {
        assert_eq!(head.status(), 200, "the attacker's own streams are served");
    }
    for _ in 0..4 {
        stack.assert_serving().await;
    }
    // Each stalled stream is reset once its answer made no progress for
    // the send timeout.
    for head in heads {
        let mut body = head.into_body();
        let ended = tokio::time::timeout(SAFETY, body.data())
            .await
            .expect("the gateway ends the stalled stream");
        let error = ended.expect("an error, not a clean end").unwrap_err();
        assert_eq!(error.reason(), Some(h2::Reason::CANCEL), "{error}");
    }
    let stalled = stack
        .wait_for_audit(|l| l["client_ip"] == "127.0.0.3" && l["path"] == "/api/health")
        .await;
    assert_eq!(stalled["reason"], "send.client_stalled", "{stalled}");
    assert_eq!(stalled["decision"], "send", "{stalled}");
    assert!(
        stalled["duration_ms"].as_u64().unwrap() >= 2000,
        "the line lasts until the stream was abandoned: {stalled}"
    );
    let stalls = "tradehabit_gateway_client_stalls_total{protocol=\"h2\"}";
    assert_eq!(stack.metric(stalls).await, 8.0);
    stack.stop().await;
}

#[tokio::test]
async fn zero_window_streams_on_large_answers_hold_only_their_share_and_are_reset() {
    let stack = start("").await;
    // Answers over the response buffer: they stream, holding a slot.
    let upload = stack
        .upload("big.csv", &fixture("gen-seed3.csv"), &[])
        .await;
    assert_eq!(upload.status, 200, "{}", upload.text());
    let attacker = zero_window_h2(&stack).await;
    let heads = open_streams(&attacker, "/api/trades", 8).await;
    // One address holds at most a quarter of the four slots; the streams
    // waiting beyond that share get 503 once the queue timeout passes.
    let statuses: Vec<u16> = heads.iter().map(|h| h.status().as_u16()).collect();
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(statuses.contains(&503), "{statuses:?}");
    for _ in 0..4 {
        let trades = stack.get("/api/trades").await;
        assert_eq!(trades.status, 200, "others are served meanwhile");
    }
    let stalled = stack
        .wait_for_audit(|l| {
            l["client_ip"] == "127.0.0.3" && l["path"] == "/api/trades" && l["status"] == 200
        })
        .await;
    assert_eq!(stalled["reason"], "send.client_stalled", "{stalled}");
    assert!(
        stalled["duration_ms"].as_u64().unwrap() >= 2000,
        "{stalled}"
    );
    for head in heads.into_iter().filter(|h| h.status() == 200) {
        let mut body = head.into_body();
        let ended = tokio::time::timeout(SAFETY, body.data()).await;
        let error = ended.expect("reset").expect("an error").unwrap_err();
        assert_eq!(error.reason(), Some(h2::Reason::CANCEL), "{error}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn one_address_gets_503_beyond_its_share_of_requests_in_flight() {
    let stack = start("max_requests_per_ip = 3").await;
    let attacker = zero_window_h2(&stack).await;
    let heads = open_streams(&attacker, "/api/health", 4).await;
    let statuses: Vec<u16> = heads.iter().map(|h| h.status().as_u16()).collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 503],
        "the fourth is over the share"
    );
    assert!(heads[3].headers().contains_key("retry-after"));
    // Another address has its own share.
    stack.assert_serving().await;
    let refused = stack
        .wait_for_audit(|l| l["reason"] == "limits.client_requests")
        .await;
    assert_eq!(refused["status"], 503, "{refused}");
    assert_eq!(refused["client_ip"], "127.0.0.3", "{refused}");
    stack.stop().await;
}

/// Requests each non-reading HTTP/1.1 attacker pipelines.
const PIPELINED: usize = 20;

/// Sends `count` pipelined `GET path`s on a fresh attacker connection
/// with a small receive buffer, and never reads.
async fn never_reading_h1(stack: &Stack, path: &str, count: usize) -> impl AsyncReadExt + Unpin {
    let mut stream = stack.tls_from(ATTACKER, b"http/1.1", Some(4096)).await;
    let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream
        .write_all(head.repeat(count).as_bytes())
        .await
        .unwrap();
    stream
}

#[tokio::test]
async fn an_h1_client_that_never_reads_neither_starves_others_nor_keeps_its_connection() {
    let stack = start("").await;
    // Large answers: the trades of a big export, well over the response
    // buffer; pipelined, more than the sockets' and hyper's buffers hold.
    let upload = stack
        .upload("big.csv", &fixture("gen-seed3.csv"), &[])
        .await;
    assert_eq!(upload.status, 200, "{}", upload.text());
    let full = stack.get("/api/trades").await;
    assert_eq!(full.status, 200);
    assert!(full.body.len() > 256 << 10, "{} bytes", full.body.len());

    // As many non-reading connections as the upstream has slots.
    let mut attackers = Vec::new();
    for _ in 0..4 {
        attackers.push(never_reading_h1(&stack, "/api/trades", PIPELINED).await);
    }
    // Until the gateway has given up on a stalled attacker, everyone else
    // keeps being served.
    let is_stall = |l: &serde_json::Value| {
        l["client_ip"] == "127.0.0.3" && l["reason"] == "send.client_stalled"
    };
    let serving = async {
        while !stack.audit_lines().iter().any(is_stall) {
            stack.assert_serving().await;
        }
    };
    tokio::time::timeout(SAFETY, serving)
        .await
        .expect("a stalled attacker is abandoned within the safety net");
    // hyper hands a whole answer to its write buffer; the stall is then in
    // the socket, and the connection gets the line (with a body still in
    // flight, the request's line says it).
    let stalled = stack.wait_for_audit(is_stall).await;
    assert_eq!(stalled["decision"], "send", "{stalled}");
    if stalled["event"] == "request" {
        assert_eq!(stalled["path"], "/api/trades", "{stalled}");
        assert!(
            stalled["duration_ms"].as_u64().unwrap() >= 2000,
            "{stalled}"
        );
    } else {
        assert_eq!(stalled["event"], "send_stalled", "{stalled}");
    }
    let stalls = "tradehabit_gateway_client_stalls_total{protocol=\"http1\"}";
    assert!(stack.metric(stalls).await >= 1.0);
    // The stalled attacker's connection was closed before all its answers;
    // the others get all theirs once they read.
    let mut reads = tokio::task::JoinSet::new();
    for mut attacker in attackers {
        reads.spawn(async move {
            let mut received = Vec::new();
            let _ = attacker.read_to_end(&mut received).await;
            raw_statuses(&String::from_utf8_lossy(&received)).len()
        });
    }
    let answered = tokio::time::timeout(SAFETY, reads.join_all())
        .await
        .expect("every attacker connection ends within the safety net");
    assert!(
        answered.iter().any(|&count| count < PIPELINED),
        "one connection was closed early: {answered:?}"
    );
    stack.stop().await;
}
