//! Each principal has its own session; sessions expire when idle (by the
//! worker's clock, moved by the test), are evicted least recently used
//! first over the caps, and `DELETE /api/session` erases the caller's at
//! once.
//!
//! The first group runs with the `observer` engine entry point (it answers
//! with the address of the session it was given), so it proves the HTTP
//! layer's session handling on its own. The second group checks the same
//! through the legacy API's own state (thresholds, uploads) and needs the
//! analysis engine.

mod harness;

use std::time::Duration;

use harness::{csv, observer, TestWorker};
use serde_json::json;
use tradehabit_shared::headers::MAX_PRINCIPAL_BYTES;

const ALICE: Option<&str> = Some("jwt:https://issuer.example|alice");
const BOB: Option<&str> = Some("jwt:https://issuer.example|bob");
const CAROL: Option<&str> = Some("key:carol");
const ACTIVE: &str = "tradehabit_worker_sessions_active";
const IDLE_ENDED: &str = "tradehabit_worker_sessions_ended_total{reason=\"idle\"}";
const CAP_ENDED: &str = "tradehabit_worker_sessions_ended_total{reason=\"max_sessions\"}";
const DELETED: &str = "tradehabit_worker_sessions_ended_total{reason=\"deleted\"}";

async fn observed() -> TestWorker {
    TestWorker::start_with(|_| {}, Some(observer(None))).await
}

async fn session_of(worker: &TestWorker, principal: Option<&str>) -> String {
    let answer = worker.get("/api/settings", principal).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["session"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn each_principal_and_the_anonymous_space_get_their_own_session() {
    let worker = observed().await;
    let alice = session_of(&worker, ALICE).await;
    let bob = session_of(&worker, BOB).await;
    let anonymous = session_of(&worker, None).await;
    assert_ne!(alice, bob);
    assert_ne!(alice, anonymous);
    assert_ne!(bob, anonymous);
    // Interleaved requests keep landing on the same sessions.
    for _ in 0..3 {
        assert_eq!(session_of(&worker, BOB).await, bob);
        assert_eq!(session_of(&worker, ALICE).await, alice);
        assert_eq!(session_of(&worker, None).await, anonymous);
    }
    assert_eq!(worker.metric(ACTIVE).await, 3.0);
}

#[tokio::test]
async fn a_session_idle_for_the_timeout_ends_and_one_in_use_does_not() {
    let worker = TestWorker::start_with(
        |config| config.sessions.idle_timeout = Duration::from_secs(30 * 60),
        Some(observer(None)),
    )
    .await;
    session_of(&worker, ALICE).await;
    session_of(&worker, BOB).await;
    worker.clock().advance(Duration::from_secs(29 * 60));
    session_of(&worker, BOB).await;
    assert_eq!(worker.metric(ACTIVE).await, 2.0);
    worker.clock().advance(Duration::from_secs(60));
    assert_eq!(worker.metric(ACTIVE).await, 1.0, "alice's session expired");
    assert_eq!(worker.metric(IDLE_ENDED).await, 1.0);
    worker.clock().advance(Duration::from_secs(29 * 60));
    assert_eq!(worker.metric(ACTIVE).await, 0.0, "bob's expired too");
    assert_eq!(worker.metric(IDLE_ENDED).await, 2.0);
}

#[tokio::test]
async fn over_the_session_cap_the_least_recently_used_is_evicted() {
    let worker = TestWorker::start_with(
        |config| config.sessions.max_sessions = 2.try_into().unwrap(),
        Some(observer(None)),
    )
    .await;
    let alice = session_of(&worker, ALICE).await;
    session_of(&worker, BOB).await;
    session_of(&worker, ALICE).await;
    session_of(&worker, CAROL).await;
    assert_eq!(worker.metric(ACTIVE).await, 2.0);
    assert_eq!(worker.metric(CAP_ENDED).await, 1.0);
    // Alice was used more recently than Bob, so she kept her session.
    assert_eq!(session_of(&worker, ALICE).await, alice);
    assert_eq!(worker.metric(CAP_ENDED).await, 1.0);
}

#[tokio::test]
async fn delete_erases_only_the_callers_session_at_once() {
    let worker = observed().await;
    session_of(&worker, ALICE).await;
    let bob = session_of(&worker, BOB).await;
    session_of(&worker, None).await;

    let answer = worker.delete_session(ALICE).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(answer.json(), json!({"status": "OK"}));
    assert_eq!(worker.metric(ACTIVE).await, 2.0);
    assert_eq!(worker.metric(DELETED).await, 1.0);
    assert_eq!(session_of(&worker, BOB).await, bob);

    // Deleting again, or without a session, is fine and erases nothing else.
    assert_eq!(worker.delete_session(ALICE).await.status, 200);
    assert_eq!(worker.delete_session(CAROL).await.status, 200);
    assert_eq!(worker.metric(DELETED).await, 1.0);

    assert_eq!(worker.delete_session(None).await.status, 200);
    assert_eq!(
        worker.metric(ACTIVE).await,
        1.0,
        "only bob's session is left"
    );
}

#[tokio::test]
async fn the_session_route_answers_only_delete() {
    let worker = observed().await;
    for method in [http::Method::GET, http::Method::POST, http::Method::PUT] {
        let request = harness::request(method.clone(), "/api/session", ALICE)
            .body(http_body_util::Full::<bytes::Bytes>::default())
            .unwrap();
        let answer = harness::send(worker.socket(), request).await;
        answer.assert_envelope(405);
        assert_eq!(answer.headers["allow"], "DELETE", "{method}");
    }
}

#[tokio::test]
async fn an_over_long_principal_is_refused_and_gets_no_session() {
    let worker = observed().await;
    let longest = "p".repeat(MAX_PRINCIPAL_BYTES);
    assert_eq!(
        worker.get("/api/settings", Some(&longest)).await.status,
        200
    );
    let too_long = "p".repeat(MAX_PRINCIPAL_BYTES + 1);
    worker
        .get("/api/settings", Some(&too_long))
        .await
        .assert_envelope(400);
    worker
        .delete_session(Some(&too_long))
        .await
        .assert_envelope(400);
    worker
        .upload(Some(&too_long), "a.csv", b"x\n")
        .await
        .assert_envelope(400);
    assert_eq!(worker.metric(ACTIVE).await, 1.0);
    // The worker keeps serving.
    assert_eq!(worker.get("/api/settings", ALICE).await.status, 200);
}

#[tokio::test]
async fn requests_refused_before_the_engine_create_no_session() {
    let worker = observed().await;
    let request = harness::request(http::Method::POST, "/api/analyze", ALICE)
        .header("content-type", "text/csv")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"a,b\n",
        )))
        .unwrap();
    harness::send(worker.socket(), request)
        .await
        .assert_envelope(400);
    assert_eq!(worker.metric(ACTIVE).await, 0.0);
}

// Through the legacy API's own state (needs the engine).

async fn thresholds(worker: &TestWorker, principal: Option<&str>) -> serde_json::Value {
    let answer = worker.get("/api/settings", principal).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

fn defaults() -> serde_json::Value {
    json!({"k": 1.0, "sigma_loss": 1.0, "sigma_risk": 1.5, "vr": 0.35})
}

#[tokio::test]
async fn two_principals_interleaving_uploads_and_settings_do_not_see_each_other() {
    let worker = TestWorker::start().await;
    let set = worker
        .post_json("/api/settings", ALICE, r#"{"vr": 0.5, "k": 2}"#)
        .await;
    assert_eq!(set.status, 200, "{}", set.text());
    assert_eq!(thresholds(&worker, BOB).await, defaults());
    assert_eq!(thresholds(&worker, None).await, defaults());
    assert_eq!(thresholds(&worker, ALICE).await["vr"], 0.5);

    let upload = worker
        .upload(ALICE, "a.csv", &csv("legacy-8-trades-1-no-stop.csv"))
        .await;
    assert_eq!(upload.status, 200, "{}", upload.text());
    worker.get("/api/summary", BOB).await.assert_envelope(400);
    worker.get("/api/trades", None).await.assert_envelope(400);

    let upload = worker
        .upload(BOB, "b.csv", &csv("legacy-all-no-stops.csv"))
        .await;
    assert_eq!(upload.status, 200, "{}", upload.text());
    let alice = worker.get("/api/summary", ALICE).await.json();
    let bob = worker.get("/api/summary", BOB).await.json();
    assert_eq!(alice["total_trades"], 8);
    assert_eq!(bob["total_trades"], 7);
    let set = worker
        .post_json("/api/settings", BOB, r#"{"vr": 0.1}"#)
        .await;
    assert_eq!(set.status, 200);
    assert_eq!(thresholds(&worker, ALICE).await["vr"], 0.5);
    assert_eq!(
        worker.get("/api/trades", ALICE).await.json()["trades"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
}

#[tokio::test]
async fn an_expired_session_comes_back_with_defaults_and_no_trades() {
    let worker = TestWorker::start().await;
    worker
        .post_json("/api/settings", ALICE, r#"{"vr": 0.5}"#)
        .await;
    worker
        .upload(ALICE, "a.csv", &csv("legacy-8-trades-1-no-stop.csv"))
        .await;
    worker.clock().advance(Duration::from_secs(30 * 60));
    assert_eq!(thresholds(&worker, ALICE).await, defaults());
    worker.get("/api/summary", ALICE).await.assert_envelope(400);
}

#[tokio::test]
async fn eviction_drops_the_least_recently_used_principals_data() {
    let worker = TestWorker::start_with(
        |config| config.sessions.max_sessions = 2.try_into().unwrap(),
        None,
    )
    .await;
    worker
        .post_json("/api/settings", ALICE, r#"{"vr": 0.5}"#)
        .await;
    worker
        .post_json("/api/settings", BOB, r#"{"vr": 0.6}"#)
        .await;
    assert_eq!(thresholds(&worker, ALICE).await["vr"], 0.5);
    worker
        .post_json("/api/settings", CAROL, r#"{"vr": 0.7}"#)
        .await;
    assert_eq!(thresholds(&worker, ALICE).await["vr"], 0.5);
    assert_eq!(thresholds(&worker, BOB).await, defaults());
}

#[tokio::test]
async fn over_the_byte_cap_the_least_recently_used_upload_is_evicted() {
    let file = csv("legacy-314-trades.csv");
    // Measure one session's size, then allow a little more than one.
    let probe = TestWorker::start().await;
    assert_eq!(probe.upload(ALICE, "a.csv", &file).await.status, 200);
    let one = probe.metric("tradehabit_worker_session_bytes").await as u64;
    assert!(one > 0, "held_bytes must estimate the session's size");
    let worker =
        TestWorker::start_with(|config| config.sessions.max_bytes = one * 3 / 2, None).await;
    assert_eq!(worker.upload(ALICE, "a.csv", &file).await.status, 200);
    assert_eq!(worker.upload(BOB, "b.csv", &file).await.status, 200);
    worker.get("/api/summary", ALICE).await.assert_envelope(400);
    assert_eq!(worker.get("/api/summary", BOB).await.status, 200);
    assert_eq!(
        worker
            .metric("tradehabit_worker_sessions_ended_total{reason=\"max_bytes\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn delete_erases_the_callers_upload_and_thresholds_at_once() {
    let worker = TestWorker::start().await;
    worker
        .post_json("/api/settings", ALICE, r#"{"vr": 0.5}"#)
        .await;
    worker
        .upload(ALICE, "a.csv", &csv("legacy-8-trades-1-no-stop.csv"))
        .await;
    worker
        .upload(BOB, "b.csv", &csv("legacy-all-no-stops.csv"))
        .await;
    assert_eq!(worker.delete_session(ALICE).await.status, 200);
    worker.get("/api/summary", ALICE).await.assert_envelope(400);
    assert_eq!(thresholds(&worker, ALICE).await, defaults());
    assert_eq!(
        worker.get("/api/summary", BOB).await.json()["total_trades"],
        7
    );
}
