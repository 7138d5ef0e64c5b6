//! Graceful shutdown: once the trigger fires, no new connections are
//! accepted and the socket file is gone, a request in flight still gets its
//! answer, and the grace period bounds how long the drain may take.

mod harness;

use std::time::{Duration, Instant};

use harness::{observer, Gate, TestWorker, HOLD_PATH, PATIENCE};
use tradehabit_worker::serve::Stopped;

async fn wait_until_gone(path: &std::path::Path) {
    let started = Instant::now();
    while path.exists() {
        assert!(started.elapsed() < PATIENCE, "the socket file stayed");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_request_in_flight_when_shutdown_starts_still_completes() {
    let gate = Gate::new();
    let mut worker = TestWorker::start_with(|_| {}, Some(observer(Some(&gate)))).await;
    let socket = worker.socket().to_owned();
    let in_flight = tokio::spawn({
        let socket = socket.clone();
        async move {
            let request = harness::request(http::Method::GET, HOLD_PATH, Some("key:alice"))
                .body(http_body_util::Full::<bytes::Bytes>::default())
                .unwrap();
            harness::try_send(&socket, request).await
        }
    });
    gate.wait_for_arrivals(1).await;

    worker.trigger_shutdown();
    wait_until_gone(&socket).await;
    assert!(
        tokio::net::UnixStream::connect(&socket).await.is_err(),
        "no new connections after shutdown"
    );

    gate.open();
    let answer = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["path"], HOLD_PATH);
    assert_eq!(worker.stop().await, Stopped::Drained);
}

#[tokio::test]
async fn the_grace_period_bounds_the_drain() {
    let gate = Gate::new();
    let worker = TestWorker::start_with(
        |config| config.shutdown_grace = Duration::from_millis(50),
        Some(observer(Some(&gate))),
    )
    .await;
    let stuck = tokio::spawn({
        let socket = worker.socket().to_owned();
        async move {
            let request = harness::request(http::Method::GET, HOLD_PATH, None)
                .body(http_body_util::Full::<bytes::Bytes>::default())
                .unwrap();
            harness::try_send(&socket, request).await
        }
    });
    gate.wait_for_arrivals(1).await;
    assert_eq!(
        worker.stop().await,
        Stopped::DeadlineReached { abandoned: 1 }
    );
    assert!(
        stuck.await.unwrap().is_err(),
        "the cut connection gets no answer"
    );
}

#[tokio::test]
async fn an_idle_worker_stops_at_once_and_removes_its_socket() {
    let worker = TestWorker::start_with(|_| {}, Some(observer(None))).await;
    let socket = worker.socket().to_owned();
    assert_eq!(worker.get("/internal/ready", None).await.status, 200);
    assert_eq!(worker.stop().await, Stopped::Drained);
    assert!(!socket.exists());
}
