//! The upstream hop's own HTTP/1.1 exchange (`proxy/h1.rs`), end to end:
//! a raw upstream frames its answers every way HTTP/1.1 allows, and some
//! ways it does not; clients over HTTP/1.1 and HTTP/2 get each body whole,
//! a malformed answer is a 502 envelope, and a forged answer smuggled
//! after a real one never reaches anybody.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::support::*;

/// The body of the big streamed answer: over the default
/// `upstream.response_buffer_bytes`.
const BIG: usize = 3 << 20;

/// What the raw upstream answers for `target`, and whether it closes the
/// connection after it.
fn answer(target: &str) -> (Vec<u8>, bool) {
    let json = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n";
    let text: String = match target {
        "/api/chunked" => format!(
            "{json}transfer-encoding: chunked\r\n\r\n3\r\n{{\"a\r\n4;ext=1\r\n\":\"b\r\n2\r\n\"}}\r\n0\r\nx-trailer: t\r\n\r\n"
        ),
        "/api/length" => format!("{json}content-length: 9\r\n\r\n{{\"a\":\"b\"}}"),
        "/api/interim" => format!(
            "HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n{json}content-length: 9\r\n\r\n{{\"a\":\"b\"}}"
        ),
        "/api/close" => return (format!("{json}\r\n{{\"a\":\"b\"}}").into_bytes(), true),
        "/api/conflict" => format!(
            "{json}content-length: 9\r\ncontent-length: 10\r\n\r\n{{\"a\":\"b\"}}"
        ),
        "/api/both" => format!(
            "{json}content-length: 9\r\ntransfer-encoding: chunked\r\n\r\n9\r\n{{\"a\":\"b\"}}\r\n0\r\n\r\n"
        ),
        // A real answer with a forged one right behind it in the same write.
        "/api/smuggle" => format!(
            "{json}content-length: 9\r\n\r\n{{\"a\":\"b\"}}HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n\"forged!!\""
        ),
        "/api/big" => {
            let mut bytes = format!("HTTP/1.1 200 OK\r\ncontent-length: {BIG}\r\n\r\n").into_bytes();
            bytes.resize(bytes.len() + BIG, b'x');
            return (bytes, false);
        }
        _ => format!("{json}content-length: 2\r\n\r\n{{}}"),
    };
    (text.into_bytes(), false)
}

/// A raw keep-alive upstream on `socket`; counts the connections it
/// accepted.
fn raw_upstream(socket: &std::path::Path) -> (tokio::task::JoinHandle<()>, Arc<AtomicUsize>) {
    let listener = UnixListener::bind(socket).unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream));
        }
    });
    (task, connections)
}

/// A gateway with one serving thread (so it has one idle list, and the
/// connection counts are exact) in front of the raw upstream.
async fn start() -> (TestGateway, tokio::task::JoinHandle<()>, Arc<AtomicUsize>) {
    let gw = TestGateway::without_upstream(Policy {
        server: "threads = 1".into(),
        ..Policy::default()
    })
    .await;
    let (upstream, connections) = raw_upstream(&TestGateway::socket_in(gw.dir.path()));
    (gw, upstream, connections)
}

async fn serve(mut stream: UnixStream) {
    loop {
        let mut head = Vec::new();
        let mut byte = [0_u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(0) | Err(_) => return,
                Ok(_) => head.push(byte[0]),
            }
        }
        let line = String::from_utf8_lossy(&head);
        let target = line.split(' ').nth(1).unwrap_or("/").to_string();
        let (bytes, close) = answer(&target);
        if stream.write_all(&bytes).await.is_err() || close {
            return;
        }
    }
}

#[tokio::test]
async fn every_framing_reaches_clients_of_both_protocols_whole() {
    let (gw, upstream, _) = start().await;
    let client = gw.client();
    for proto in [Proto::H1, Proto::H2] {
        for target in ["/api/chunked", "/api/length", "/api/interim", "/api/close"] {
            let reply = client.send(proto, request("GET", target, "")).await;
            assert_eq!(reply.status, 200, "{target} over {proto:?}");
            assert_eq!(reply.body, "{\"a\":\"b\"}", "{target} over {proto:?}");
            assert_security_headers(&reply);
            assert!(reply.header("x-trailer").is_none());
            assert!(reply.header("link").is_none(), "no interim field leaks");
        }
        let reply = client.send(proto, request("GET", "/api/big", "")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body.len(), BIG, "streamed whole over {proto:?}");
    }
    upstream.abort();
}

#[tokio::test]
async fn a_malformed_answer_is_a_502_and_the_gateway_goes_on_serving() {
    let (gw, upstream, _) = start().await;
    let client = gw.client();
    for target in ["/api/conflict", "/api/both"] {
        let reply = client.get(target).await;
        assert_eq!(reply.status, 502, "{target}");
        assert_envelope(&reply);
        assert!(
            !String::from_utf8_lossy(&reply.body).contains("\"a\""),
            "nothing of the refused answer goes out"
        );
        assert_eq!(client.get("/api/length").await.status, 200);
    }
    upstream.abort();
}

#[tokio::test]
async fn an_answer_smuggled_behind_a_real_one_reaches_nobody() {
    let (gw, upstream, connections) = start().await;
    let client = gw.client();
    let first = client.get("/api/smuggle").await;
    assert_eq!(first.body, "{\"a\":\"b\"}");
    let before = connections.load(Ordering::SeqCst);
    for _ in 0..3 {
        let next = client.get("/api/echo").await;
        assert_eq!(next.status, 200);
        assert_eq!(next.body, "{}", "the next request gets its own answer");
    }
    // The smuggling connection was closed; the three after it shared a
    // new one.
    assert_eq!(connections.load(Ordering::SeqCst), before + 1);
    upstream.abort();
}
