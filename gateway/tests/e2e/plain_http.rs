//! The plain-HTTP listener: redirect navigations, refuse API calls, never
//! forward, never send HSTS.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

async fn plain(addr: std::net::SocketAddr, raw: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(SAFETY, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn navigations_are_redirected_and_api_calls_refused() {
    let policy = Policy {
        plain_http: true,
        ..Policy::default()
    };
    let (gw, up) = TestGateway::with_upstream(policy).await;
    let addr = gw.handle().plain_http_addr().unwrap();

    let answer = plain(
        addr,
        "GET /dashboard?tab=1 HTTP/1.1\r\nHost: LocalHost:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 301, "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(
        lower.contains("location: https://localhost:8443/dashboard?tab=1\r\n"),
        "{answer}"
    );
    // A host the certificate does not cover is never put in a Location.
    let answer = plain(
        addr,
        "GET /dashboard HTTP/1.1\r\nHost: app.example:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 421, "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("location:"),
        "{answer}"
    );
    assert!(answer.contains("\"status\":\"ERROR\""), "{answer}");
    assert!(
        !lower.contains("strict-transport-security"),
        "HSTS over plain HTTP: {answer}"
    );
    assert!(
        lower.contains("x-content-type-options: nosniff"),
        "{answer}"
    );

    for raw in [
        "GET /api/summary HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n",
        "POST /api/analyze HTTP/1.1\r\nHost: app.example\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        "POST /dashboard HTTP/1.1\r\nHost: app.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ] {
        let answer = plain(addr, raw).await;
        assert_eq!(raw_status(&answer), 403, "{answer}");
        assert!(answer.contains("\"status\":\"ERROR\""), "{answer}");
        assert!(answer.contains("https://"), "the message should point to HTTPS: {answer}");
        assert!(!answer.to_ascii_lowercase().contains("strict-transport-security"), "{answer}");
    }
    assert!(
        up.seen().is_empty(),
        "the plain listener forwarded: {:?}",
        up.seen()
    );
}
