//! Request bodies on their way to the upstream: read whole first when they
//! declare a small length (`upstream.request_buffer_bytes`), and still
//! delivered, with the client's connection kept, when the upstream answers
//! before it has read them.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::mpsc;

use crate::support::*;

/// A body whose chunks the test sends when it chooses; dropping the sender
/// ends it.
fn channel_body() -> (mpsc::Sender<Bytes>, BoxBody<Bytes, Infallible>) {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok(http_body::Frame::data(chunk)), rx))
    });
    (tx, StreamBody::new(frames).boxed())
}

/// One client connection carrying several requests.
enum Conn {
    H1(http1::SendRequest<BoxBody<Bytes, Infallible>>),
    H2(http2::SendRequest<BoxBody<Bytes, Infallible>>),
}

impl Conn {
    async fn open(gw: &TestGateway, proto: Proto) -> Conn {
        let io = TokioIo::new(gw.client().tls(proto).await);
        match proto {
            Proto::H1 => {
                let (sender, conn) = http1::handshake(io).await.unwrap();
                tokio::spawn(conn);
                Conn::H1(sender)
            }
            Proto::H2 => {
                let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await.unwrap();
                tokio::spawn(conn);
                Conn::H2(sender)
            }
        }
    }

    /// Sends `request` (origin-form path) and waits for the answer's head,
    /// within the safety net.
    async fn send(
        &mut self,
        request: http::Request<BoxBody<Bytes, Infallible>>,
    ) -> http::Response<hyper::body::Incoming> {
        let (mut parts, body) = request.into_parts();
        let answer = match self {
            Conn::H1(sender) => {
                parts.headers.insert("host", "localhost".parse().unwrap());
                tokio::time::timeout(SAFETY, sender.ready())
                    .await
                    .expect("the connection takes another request")
                    .unwrap();
                sender.send_request(http::Request::from_parts(parts, body))
            }
            Conn::H2(sender) => {
                parts.uri = format!("https://localhost{}", parts.uri).parse().unwrap();
                parts.version = http::Version::HTTP_2;
                return tokio::time::timeout(
                    SAFETY,
                    sender.send_request(http::Request::from_parts(parts, body)),
                )
                .await
                .expect("an answer within the safety net")
                .unwrap();
            }
        };
        tokio::time::timeout(SAFETY, answer)
            .await
            .expect("an answer within the safety net")
            .unwrap()
    }
}

fn post(
    path: &str,
    length: usize,
    body: BoxBody<Bytes, Infallible>,
) -> http::Request<BoxBody<Bytes, Infallible>> {
    http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-length", length.to_string())
        .header("content-type", "text/csv")
        .body(body)
        .unwrap()
}

fn get(path: &str) -> http::Request<BoxBody<Bytes, Infallible>> {
    http::Request::builder()
        .uri(path)
        .body(Empty::new().boxed())
        .unwrap()
}

/// Sends half of a 600-byte body, pauses, sends the rest; returns how many
/// request heads the upstream had received during the pause (beyond those
/// before), and the answer.
async fn slow_upload(gw: &TestGateway, up: &Upstream, proto: Proto) -> (usize, Reply) {
    let mut conn = Conn::open(gw, proto).await;
    let before = up.heads();
    let (tx, body) = channel_body();
    let answer = tokio::spawn({
        let request = post("/api/echo", 600, body);
        async move { conn.send(request).await }
    });
    tx.send(Bytes::from(vec![b'a'; 300])).await.unwrap();
    // The head and the first half are with the gateway: long enough for a
    // streaming gateway to have passed the head on.
    let during = tokio::time::timeout(Duration::from_millis(500), async {
        while up.heads() == before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .map_or(0, |()| up.heads() - before);
    tx.send(Bytes::from(vec![b'b'; 300])).await.unwrap();
    drop(tx);
    let reply = collect(answer.await.unwrap()).await;
    (during, reply)
}

#[tokio::test]
async fn a_body_within_the_request_buffer_reaches_the_upstream_only_once_whole() {
    let (gw, up) = TestGateway::with_upstream(Policy::default()).await;
    for proto in [Proto::H1, Proto::H2] {
        let (during, reply) = slow_upload(&gw, &up, proto).await;
        assert_eq!(
            during, 0,
            "{proto:?}: the upstream saw the request before its body was in"
        );
        assert_eq!(reply.status, 200, "{proto:?}");
        assert_eq!(reply.json()["received"], 600, "{proto:?}");
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    for request in seen {
        assert_eq!(request.body.len(), 600);
        assert_eq!(request.headers["content-length"], "600");
    }
}

#[tokio::test]
async fn with_request_buffering_off_the_body_streams_to_the_upstream() {
    let policy = Policy {
        upstream: "request_buffer_bytes = 0\n".into(),
        ..Policy::default()
    };
    let (gw, up) = TestGateway::with_upstream(policy).await;
    for proto in [Proto::H1, Proto::H2] {
        let (during, reply) = slow_upload(&gw, &up, proto).await;
        assert_eq!(
            during, 1,
            "{proto:?}: the head went on before the body was in"
        );
        assert_eq!(reply.status, 200, "{proto:?}");
        assert_eq!(reply.json()["received"], 600, "{proto:?}");
    }
}

#[tokio::test]
async fn an_upstream_answering_before_the_body_ends_still_gets_it_and_the_client_keeps_its_connection(
) {
    // Streamed (buffering off), so the upstream has the head while the
    // body is still arriving, and answers at once.
    let policy = Policy {
        upstream: "request_buffer_bytes = 0\n".into(),
        ..Policy::default()
    };
    let (gw, up) = TestGateway::with_upstream(policy).await;
    for (round, proto) in [Proto::H1, Proto::H2].into_iter().enumerate() {
        let mut conn = Conn::open(&gw, proto).await;
        let (tx, body) = channel_body();
        tx.send(Bytes::from(vec![b'e'; 300])).await.unwrap();
        let answer = conn.send(post("/api/early", 900, body)).await;
        let reply = collect(answer).await;
        assert_eq!(reply.status, 200, "{proto:?}");
        assert_eq!(reply.json()["early"], true, "{proto:?}");
        // The rest of the body, after the answer.
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.send(Bytes::from(vec![b'e'; 300])).await.unwrap();
        }
        drop(tx);
        let early = tokio::time::timeout(SAFETY, async {
            loop {
                let mut early: Vec<Seen> = up
                    .seen()
                    .into_iter()
                    .filter(|s| s.target == "/api/early")
                    .collect();
                if early.len() > round {
                    return early.swap_remove(round);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{proto:?}: the upstream never got the rest of the body"));
        assert_eq!(
            early.body.len(),
            900,
            "{proto:?}: the whole body reached the upstream"
        );
        // The same connection serves the next request.
        let next = collect(conn.send(get("/api/echo")).await).await;
        assert_eq!(next.status, 200, "{proto:?}");
    }
}
