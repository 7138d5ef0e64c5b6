//! Slow clients are cut off without holding up anyone else.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

#[tokio::test]
async fn a_client_dribbling_its_headers_is_cut_off_while_others_are_served() {
    let policy = Policy {
        limits: "header_read_timeout = \"300ms\"".into(),
        ..Policy::default()
    };
    let (gw, _up) = TestGateway::with_upstream(policy).await;
    let client = gw.client();
    let mut slow = client.tls(Proto::H1).await;
    slow.write_all(b"GET /api/echo HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    // Keep dribbling a header byte by byte; the gateway must hang up.
    let dribbler = tokio::spawn(async move {
        for _ in 0..200 {
            if slow.write_all(b"X").await.is_err() {
                return true;
            }
            let mut buf = [0u8; 64];
            match tokio::time::timeout(std::time::Duration::from_millis(50), slow.read(&mut buf))
                .await
            {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                _ => {}
            }
        }
        false
    });
    // Meanwhile another client is served.
    assert_eq!(client.get("/api/echo").await.status, 200);
    assert!(
        dribbler.await.unwrap(),
        "the dribbling connection was never closed"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_the_tls_handshake_is_dropped() {
    let policy = Policy {
        limits: "tls_handshake_timeout = \"200ms\"".into(),
        ..Policy::default()
    };
    let (gw, _up) = TestGateway::with_upstream(policy).await;
    let mut idle = TcpStream::connect(gw.addr()).await.unwrap();
    assert_eq!(gw.client().get("/api/echo").await.status, 200);
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(SAFETY, idle.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn idle_http2_connections_are_closed() {
    let policy = Policy {
        limits: "idle_timeout = \"200ms\"".into(),
        ..Policy::default()
    };
    let (gw, _up) = TestGateway::with_upstream(policy).await;
    let stream = gw.client().tls(Proto::H2).await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let mut req = request("GET", "/api/echo", "");
    *req.uri_mut() = "https://localhost/api/echo".parse().unwrap();
    let reply = collect(sender.send_request(req).await.unwrap()).await;
    assert_eq!(reply.status, 200);
    // With nothing in flight the gateway sends GOAWAY and closes.
    tokio::time::timeout(SAFETY, conn)
        .await
        .expect("connection closed")
        .unwrap()
        .ok();
}

#[tokio::test]
async fn connections_over_the_per_ip_cap_are_closed_at_once_without_an_answer_budget() {
    // With a budget they are answered with 503 first
    // (tests/tests/refusals.rs in the end-to-end crate).
    let policy = Policy {
        limits: "max_connections_per_ip = 2\nover_cap_answers_per_second = 0".into(),
        ..Policy::default()
    };
    let (gw, _up) = TestGateway::with_upstream(policy).await;
    let client = gw.client();
    let _a = client.tls(Proto::H1).await;
    let _b = client.tls(Proto::H1).await;
    assert!(
        client
            .tls_with(rustls::ALL_VERSIONS, &[b"http/1.1"])
            .await
            .is_err(),
        "third connection admitted"
    );
    drop(_a);
    // The freed place is reusable (the close is processed asynchronously).
    let mut ok = false;
    for _ in 0..100 {
        if client
            .tls_with(rustls::ALL_VERSIONS, &[b"http/1.1"])
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(ok, "the place was never freed");
}
