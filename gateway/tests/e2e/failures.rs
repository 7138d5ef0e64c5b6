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
