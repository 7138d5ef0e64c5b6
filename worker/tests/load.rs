//! Load: engine calls are bounded, the queue is bounded (503 +
//! `Retry-After` beyond it), one principal's burst cannot hold more than
//! one engine slot, an engine panic is contained, and many principals at
//! once are all answered.
//!
//! A `Gate` holds engine calls open until the test releases them, so every
//! "busy" state is reached for certain, never by timing.

mod harness;

use std::sync::Arc;

use harness::{csv, golden, observer, real_engine_with, Gate, TestWorker, HOLD_PATH, PANIC_PATH};
use sha2::{Digest, Sha256};

const ALICE: Option<&str> = Some("key:alice");
const BOB: Option<&str> = Some("key:bob");
const CAROL: Option<&str> = Some("key:carol");
const WAITING_FOR_SLOT: &str = "tradehabit_worker_engine_calls_waiting{stage=\"slot\"}";
const WAITING_FOR_SESSION: &str = "tradehabit_worker_engine_calls_waiting{stage=\"session\"}";
const RUNNING: &str = "tradehabit_worker_engine_calls_running";

fn spawn_get(
    worker: &Arc<TestWorker>,
    path: &'static str,
    principal: Option<&'static str>,
) -> tokio::task::JoinHandle<harness::Answer> {
    let worker = Arc::clone(worker);
    tokio::spawn(async move { worker.get(path, principal).await })
}

#[tokio::test]
async fn with_every_slot_busy_and_the_queue_full_the_answer_is_503_with_retry_after() {
    let gate = Gate::new();
    let worker = Arc::new(
        TestWorker::start_with(
            |config| {
                config.admission.max_concurrent = 1.try_into().unwrap();
                config.admission.max_queued = 1;
            },
            Some(observer(Some(&gate))),
        )
        .await,
    );
    let running = spawn_get(&worker, HOLD_PATH, ALICE);
    gate.wait_for_arrivals(1).await;
    let queued = spawn_get(&worker, "/api/summary", BOB);
    worker.wait_for_metric(WAITING_FOR_SLOT, 1.0).await;

    let refused = worker.get("/api/summary", CAROL).await;
    let envelope = refused.assert_envelope(503);
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(envelope["code"], "admission.queue_full");
    assert!(envelope["message"].as_str().unwrap().contains("busy"));
    assert_eq!(
        worker
            .metric("tradehabit_worker_overload_rejections_total{reason=\"queue_full\"}")
            .await,
        1.0
    );

    gate.open();
    assert_eq!(running.await.unwrap().status, 200);
    assert_eq!(queued.await.unwrap().status, 200);
    // Capacity is back: the refused caller is served now.
    assert_eq!(worker.get("/api/summary", CAROL).await.status, 200);
    assert_eq!(worker.metric(WAITING_FOR_SLOT).await, 0.0);
    assert_eq!(worker.metric(RUNNING).await, 0.0);
}

#[tokio::test]
async fn one_principals_burst_waits_on_its_own_session_and_others_are_served() {
    let gate = Gate::new();
    let worker = Arc::new(
        TestWorker::start_with(
            |config| {
                config.admission.max_concurrent = 2.try_into().unwrap();
                config.admission.max_queued = 0;
            },
            Some(observer(Some(&gate))),
        )
        .await,
    );
    // Alice's first call holds an engine slot; her next five wait for her
    // session without taking a slot or a queue place.
    let mut alice = vec![spawn_get(&worker, HOLD_PATH, ALICE)];
    gate.wait_for_arrivals(1).await;
    alice.extend((0..5).map(|_| spawn_get(&worker, HOLD_PATH, ALICE)));
    worker.wait_for_metric(WAITING_FOR_SESSION, 5.0).await;
    assert_eq!(worker.metric(RUNNING).await, 1.0);

    // Bob is served at once, although the queue has no room at all.
    for _ in 0..3 {
        assert_eq!(worker.get("/api/summary", BOB).await.status, 200);
    }

    gate.open();
    for call in alice {
        assert_eq!(call.await.unwrap().status, 200);
    }
}

#[tokio::test]
async fn a_principal_over_its_limit_of_requests_in_progress_gets_429() {
    let gate = Gate::new();
    let worker = Arc::new(
        TestWorker::start_with(
            |config| config.admission.max_per_principal = 2.try_into().unwrap(),
            Some(observer(Some(&gate))),
        )
        .await,
    );
    let first = spawn_get(&worker, HOLD_PATH, ALICE);
    gate.wait_for_arrivals(1).await;
    let second = spawn_get(&worker, HOLD_PATH, ALICE);
    worker.wait_for_metric(WAITING_FOR_SESSION, 1.0).await;

    let refused = worker.get("/api/summary", ALICE).await;
    refused.assert_envelope(429);
    assert_eq!(refused.headers["retry-after"], "1");
    // The gateway's 429 shape: the quota that applies, in RateLimit headers.
    assert_eq!(
        refused.headers["ratelimit-policy"],
        "\"worker-in-progress\";q=2;w=1"
    );
    assert_eq!(
        refused.headers["ratelimit"],
        "\"worker-in-progress\";r=0;t=1"
    );
    assert_eq!(refused.json()["code"], "admission.principal_busy");
    assert_eq!(worker.get("/api/summary", BOB).await.status, 200);

    gate.open();
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(second.await.unwrap().status, 200);
    assert_eq!(worker.get("/api/summary", ALICE).await.status, 200);
}

#[tokio::test]
async fn an_engine_panic_is_a_500_envelope_and_the_worker_keeps_serving() {
    let worker = TestWorker::start_with(|_| {}, Some(observer(None))).await;
    let answer = worker.get(PANIC_PATH, ALICE).await;
    answer.assert_envelope(500);
    assert!(
        !answer.text().contains("test panic"),
        "the panic text is not echoed"
    );
    assert_eq!(
        worker.metric("tradehabit_worker_engine_panics_total").await,
        1.0
    );
    // The same principal's session is usable (no poisoned lock), and so is
    // everyone else's.
    assert_eq!(worker.get("/api/summary", ALICE).await.status, 200);
    assert_eq!(worker.get("/api/summary", BOB).await.status, 200);
    assert_eq!(worker.metric(RUNNING).await, 0.0);
}

#[tokio::test]
async fn fifty_concurrent_uploads_from_different_principals_are_all_answered() {
    let worker = Arc::new(TestWorker::start_with(|_| {}, Some(observer(None))).await);
    let base = csv("legacy-314-trades.csv");
    let mut uploads = tokio::task::JoinSet::new();
    for n in 0..50 {
        let worker = Arc::clone(&worker);
        let mut content = base.clone();
        content.extend_from_slice(format!("# upload {n}\n").as_bytes());
        uploads.spawn(async move {
            let principal = format!("key:user-{n}");
            let answer = worker
                .upload(Some(&principal), "orders.csv", &content)
                .await;
            (n, answer, hex::encode(Sha256::digest(&content)))
        });
    }
    let mut answered = 0;
    while let Some(result) = uploads.join_next().await {
        let (n, answer, sha) = result.unwrap();
        assert_eq!(answer.status, 200, "upload {n}: {}", answer.text());
        assert_eq!(
            answer.json()["upload"]["sha256"],
            sha,
            "upload {n} got another's file"
        );
        answered += 1;
    }
    assert_eq!(answered, 50);
    assert_eq!(
        worker.metric("tradehabit_worker_sessions_active").await,
        50.0
    );
}

// With the real engine behind the layer.

#[tokio::test]
async fn fifty_concurrent_real_uploads_all_get_the_golden_analysis() {
    let worker = Arc::new(TestWorker::start().await);
    let reference = golden::load("legacy-314-trades");
    let expected = reference["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|step| step["name"] == "analyze-default")
        .unwrap()["response"]
        .clone();
    let rules = golden::Rules::of(&reference);
    let content = Arc::new(csv("legacy-314-trades.csv"));
    let mut uploads = tokio::task::JoinSet::new();
    for n in 0..50 {
        let worker = Arc::clone(&worker);
        let content = Arc::clone(&content);
        uploads.spawn(async move {
            let principal = format!("key:user-{n}");
            worker
                .upload(Some(&principal), "legacy-314-trades.csv", &content)
                .await
        });
    }
    while let Some(result) = uploads.join_next().await {
        let answer = result.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
        let mut mismatches = Vec::new();
        rules.compare(&expected, &answer.json(), "$", None, &mut mismatches);
        assert!(mismatches.is_empty(), "{mismatches:?}");
    }
}

#[tokio::test]
async fn a_panic_after_the_engine_changed_the_session_restores_it() {
    let worker = TestWorker::start_with(|_| {}, Some(real_engine_with(None))).await;
    let first = csv("legacy-8-trades-1-no-stop.csv");
    assert_eq!(worker.upload(ALICE, "a.csv", &first).await.status, 200);
    let before = worker.get("/api/trades", ALICE).await.json();
    // The wrapper uploads another CSV into the session, then panics.
    let other = String::from_utf8(csv("legacy-all-no-stops.csv")).unwrap();
    worker
        .post_json(PANIC_PATH, ALICE, &other)
        .await
        .assert_envelope(500);
    assert_eq!(worker.get("/api/trades", ALICE).await.json(), before);
}
