//! The worker's own endpoints (readiness, metrics) and the pass-through of
//! everything else — unknown paths and methods included — to the engine,
//! whose status, headers and body come back unchanged.

mod harness;

use std::sync::Arc;

use bytes::Bytes;
use harness::{observer, request, send, TestWorker};
use http::Method;
use http_body_util::Full;
use serde_json::json;
use tradehabit_worker::api::{Facts, Reply};
use tradehabit_worker::engine::Handler;

/// Every metric the worker documents, as exposed.
const METRIC_NAMES: &[&str] = &[
    "tradehabit_worker_sessions_active",
    "tradehabit_worker_session_bytes",
    "tradehabit_worker_sessions_ended_total",
    "tradehabit_worker_analyses_total",
    "tradehabit_worker_analysis_duration_seconds",
    "tradehabit_worker_rows_parsed_total",
    "tradehabit_worker_requests_total",
    "tradehabit_worker_connections_active",
    "tradehabit_worker_engine_calls_running",
    "tradehabit_worker_engine_calls_waiting",
    "tradehabit_worker_overload_rejections_total",
    "tradehabit_worker_engine_panics_total",
];

fn call(method: Method, path: &str) -> http::Request<Full<Bytes>> {
    request(method, path, Some("key:alice"))
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn readiness_is_a_small_json_answer_for_get_and_head_only() {
    let worker = TestWorker::start().await;
    let answer = worker.get("/internal/ready", None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(answer.json(), json!({"status": "ready"}));
    let head = send(worker.socket(), call(Method::HEAD, "/internal/ready")).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let post = send(worker.socket(), call(Method::POST, "/internal/ready")).await;
    post.assert_envelope(405);
    assert_eq!(post.headers["allow"], "GET, HEAD");
}

#[tokio::test]
async fn the_metrics_exposition_lists_every_documented_metric() {
    let worker = TestWorker::start().await;
    let answer = worker.get("/internal/metrics", None).await;
    assert_eq!(answer.status, 200);
    assert!(answer.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = answer.text();
    for name in METRIC_NAMES {
        let family = name.trim_end_matches("_total");
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing from:\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"));
    send(worker.socket(), call(Method::POST, "/internal/metrics"))
        .await
        .assert_envelope(405);
}

#[tokio::test]
async fn requests_are_counted_by_route_with_bounded_labels() {
    let worker = TestWorker::start_with(|_| {}, Some(observer(None))).await;
    for _ in 0..2 {
        worker.get("/api/summary", None).await;
    }
    worker.get("/api/users/8d1f0c", None).await;
    worker.get("/api/summary/", None).await;
    worker.delete_session(None).await;
    let text = worker.get("/internal/metrics", None).await.text();
    let count = |sample: &str| harness::metric_value(&text, sample);
    assert_eq!(
        count("tradehabit_worker_requests_total{route=\"/api/summary\",status_class=\"2xx\"}"),
        2.0
    );
    assert_eq!(
        count("tradehabit_worker_requests_total{route=\"other\",status_class=\"2xx\"}"),
        2.0
    );
    assert_eq!(
        count("tradehabit_worker_requests_total{route=\"/api/session\",status_class=\"2xx\"}"),
        1.0
    );
    assert!(!text.contains("8d1f0c"), "raw paths never become labels");
}

#[tokio::test]
async fn uploads_move_the_analysis_metrics() {
    let worker = TestWorker::start_with(|_| {}, Some(observer(None))).await;
    worker.upload(None, "a.csv", b"h\n1\n2\n").await;
    worker.upload(None, "b.csv", b"h\n1\n").await;
    worker.get("/api/summary", None).await;
    let text = worker.get("/internal/metrics", None).await.text();
    let value = |sample: &str| harness::metric_value(&text, sample);
    assert_eq!(
        value("tradehabit_worker_analyses_total{result=\"ok\"}"),
        2.0
    );
    assert_eq!(
        value("tradehabit_worker_analysis_duration_seconds_count"),
        2.0
    );
    assert_eq!(value("tradehabit_worker_rows_parsed_total"), 5.0);
}

#[tokio::test]
async fn unknown_paths_and_methods_go_to_the_engine_unchanged() {
    let worker = TestWorker::start_with(|_| {}, Some(observer(None))).await;
    for (method, path) in [
        (Method::GET, "/api/does-not-exist?x=1"),
        (Method::PATCH, "/api/summary"),
        (Method::OPTIONS, "/api/settings"),
        (Method::GET, "/static/app.js"),
        (Method::GET, "/api/mentor/chat"),
    ] {
        let answer = send(worker.socket(), call(method.clone(), path)).await;
        assert_eq!(answer.status, 200, "{method} {path}");
        let seen = answer.json();
        assert_eq!(seen["method"], method.as_str());
        assert_eq!(
            format!(
                "{}{}",
                seen["path"].as_str().unwrap(),
                match seen["query"].as_str().unwrap() {
                    "" => String::new(),
                    query => format!("?{query}"),
                }
            ),
            path
        );
    }
}

#[tokio::test]
async fn the_engines_status_headers_and_body_come_back_unchanged() {
    let handler: Handler = Arc::new(|_, request| Reply {
        status: 405,
        body: format!(
            "{{\"details\":[],\"message\":\"no {}\",\"status\":\"ERROR\"}}\n",
            request.method
        )
        .into_bytes(),
        headers: vec![("allow", "GET, HEAD, OPTIONS".to_owned())],
        facts: Facts::default(),
    });
    let worker = TestWorker::start_with(|_| {}, Some(handler)).await;
    let answer = send(worker.socket(), call(Method::POST, "/api/summary")).await;
    assert_eq!(answer.status, 405);
    assert_eq!(answer.headers["allow"], "GET, HEAD, OPTIONS");
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(
        answer.text(),
        "{\"details\":[],\"message\":\"no POST\",\"status\":\"ERROR\"}\n"
    );
}

#[tokio::test]
async fn an_unknown_route_is_a_404_in_the_envelope_shape() {
    let worker = TestWorker::start().await;
    let answer = worker.get("/api/does-not-exist", None).await;
    answer.assert_envelope(404);
}
