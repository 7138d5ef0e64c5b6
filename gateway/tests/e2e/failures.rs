//! Upstream failures become 502/503/504 envelopes, and the gateway keeps
//! serving afterwards.

use crate::support::*;

#[tokio::test]
async fn upstream_down_is_502_and_serving_resumes_when_it_is_back() {
    let gw = TestGateway::without_upstream(Policy::default()).await;
    for proto in [Proto::H1, Proto::H2] {
        let reply = gw
            .client()
            .send(proto, request("GET", "/api/echo", ""))
            .await;
        assert_eq!(reply.status, 502, "{proto:?}");
        assert_envelope(&reply);
        assert_security_headers(&reply);
    }
    let _up = Upstream::start(&TestGateway::socket_in(gw.dir.path())).await;
    assert_eq!(gw.client().get("/api/echo").await.status, 200);
}

#[tokio::test]
async fn slow_upstream_is_504_closing_early_is_502_and_others_are_served() {
    let policy = Policy {
        upstream: "response_timeout = \"200ms\"".into(),
        ..Policy::default()
    };
    let (gw, _up) = TestGateway::with_upstream(policy).await;
    let client = gw.client();
    for proto in [Proto::H1, Proto::H2] {
        let reply = client.send(proto, request("GET", "/api/slow", "")).await;
        assert_eq!(reply.status, 504, "{proto:?}");
        assert_envelope(&reply);
        assert_security_headers(&reply);
        let reply = client.send(proto, request("GET", "/api/close", "")).await;
        assert_eq!(reply.status, 502, "{proto:?}");
        assert_envelope(&reply);
        assert_security_headers(&reply);
        assert_eq!(
            client
                .send(proto, request("GET", "/api/echo", ""))
                .await
                .status,
            200
        );
    }
}

#[tokio::test]
async fn upstream_errors_keep_their_status_but_not_their_bodies() {
    let (gw, _up) = TestGateway::with_upstream(Policy::default()).await;
    let client = gw.client();
    let reply = client.get("/api/fail").await;
    assert_eq!(reply.status, 500);
    assert_envelope(&reply);
    assert_security_headers(&reply);
    assert!(!String::from_utf8_lossy(&reply.body).contains("secret-internal"));

    let reply = client.get("/api/busy").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("7"));
    assert_envelope(&reply);

    let reply = client.get("/api/gzip").await;
    assert_eq!(reply.status, 502, "a compressed answer is refused");
    assert_security_headers(&reply);
}

#[tokio::test]
async fn no_free_upstream_slot_is_503_with_retry_after() {
    let policy = Policy {
        upstream: "max_in_flight = 1\nqueue_timeout = \"50ms\"\nretry_after = \"3s\"".into(),
        ..Policy::default()
    };
    let (gw, up) = TestGateway::with_upstream(policy).await;
    let client = gw.client();
    let gated = tokio::spawn({
        let client = client.clone();
        async move { client.get("/api/gated").await }
    });
    up.arrival().await;
    let reply = client.get("/api/echo").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("3"));
    assert_envelope(&reply);
    assert_security_headers(&reply);
    up.release();
    assert_eq!(gated.await.unwrap().status, 200);
    assert_eq!(
        client.get("/api/echo").await.status,
        200,
        "the slot is free again"
    );
}

/// How the keep-alive upstream below ends each connection.
#[derive(Clone, Copy)]
enum Hangup {
    /// Right after its one answer (the close reaches the gateway while the
    /// connection is idle in its pool).
    AfterAnswer,
    /// When the next request arrives on it, unanswered (the close races
    /// the gateway's reuse of the connection).
    OnNextRequest,
}

/// A raw HTTP/1.1 upstream that answers one request per connection with
/// `200 {}` and a keep-alive response (no `Connection: close`), then hangs
/// up as `hangup` says. Counts the requests for `/api/echo` it read (not
/// the gateway's readiness probes).
fn one_answer_per_connection(
    socket: &std::path::Path,
    hangup: Hangup,
) -> (
    tokio::task::JoinHandle<()>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::UnixListener::bind(socket).unwrap();
    let requests = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let is_echo = |bytes: &[u8]| {
                    bytes.starts_with(b"GET /api/echo") || bytes.starts_with(b"POST /api/echo")
                };
                if is_echo(&head) {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                if let Hangup::OnNextRequest = hangup {
                    if let Ok(n) = stream.read(&mut buf).await {
                        if is_echo(&buf[..n]) {
                            counted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            });
        }
    });
    (task, requests)
}

#[tokio::test]
async fn a_stale_keep_alive_connection_does_not_fail_a_request() {
    for hangup in [Hangup::AfterAnswer, Hangup::OnNextRequest] {
        // One serving thread: an idle upstream connection is only reused by
        // the thread that returned it, and this test counts reuses.
        let gw = TestGateway::without_upstream(Policy {
            server: "threads = 1".into(),
            ..Policy::default()
        })
        .await;
        let (upstream, requests) =
            one_answer_per_connection(&TestGateway::socket_in(gw.dir.path()), hangup);
        let client = gw.client();
        for _ in 0..3 {
            // A GET lost on a reused connection is sent again, on a new one.
            let reply = client.get("/api/echo").await;
            assert_eq!(reply.status, 200);
            assert_eq!(reply.body, "{}");
        }
        if let Hangup::OnNextRequest = hangup {
            // Each reused connection lost one GET, sent again on a new one.
            assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 5);
            // A request with a body is not sent twice: the race is a 502.
            // (Requests with a body have connections of their own, hyper's:
            // the first POST opens one, the second finds it stale.)
            let post = || request("POST", "/api/echo", "{\"a\":1}");
            assert_eq!(client.send(Proto::H1, post()).await.status, 200);
            let reply = client.send(Proto::H1, post()).await;
            assert_eq!(reply.status, 502);
            assert_envelope(&reply);
        }
        upstream.abort();
    }
}
