//! The shared rate-limit store against a real `redis-server`, with real
//! gateways and workers over TLS (`docs/scaling.md`, the Redis part):
//! two gateways with separate state share one quota; a stage's quotas are
//! decided and spent together in one script; a store that goes away mid-run
//! gets each route's `on_store_error` answer, and comes back.

#[path = "redis_support/server.rs"]
mod server;

use futures_util::future::join_all;
use server::RedisServer;
use tradehabit_e2e::attack::{Stack, ROUTES, SAFETY};

/// The attack routes with `health` limited per IP by `quotas` (TOML list
/// items) and the table's other `extra` keys.
fn health_limited(quotas: &str, extra: &str) -> String {
    let routes = ROUTES.replace(
        "name = \"health\"\npath = \"/api/health\"\nmethods = [\"GET\"]\nauth = \"none\"\n",
        &format!(
            "name = \"health\"\npath = \"/api/health\"\nmethods = [\"GET\"]\nauth = \"none\"\n\
             rate_limit = {{ per_ip = [{quotas}]{extra} }}\n"
        ),
    );
    assert_ne!(routes, ROUTES, "the health route got its quotas");
    routes
}

fn audit_table(dir: &std::path::Path) -> String {
    format!("[audit]\noutput = \"{}/audit.log\"\n", dir.display())
}

#[tokio::test]
async fn two_gateways_sharing_one_redis_never_admit_more_than_the_quota() {
    let store = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(store.path());
    let routes = health_limited("\"5/hour\"", "");
    let a = Stack::start_with(|_| redis.policy("deny"), &routes).await;
    let b = Stack::start_with(|_| redis.policy("deny"), &routes).await;

    // 24 requests from one client, half through each gateway, all at once.
    let requests = (0..24).map(|i| {
        let gateway = if i % 2 == 0 { &a } else { &b };
        gateway.get("/api/health")
    });
    let replies = tokio::time::timeout(SAFETY * 3, join_all(requests))
        .await
        .expect("every request answered");
    let admitted = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        admitted, 5,
        "one quota of 5 for both gateways (each alone would admit 5)"
    );
    for refused in replies.iter().filter(|r| r.status != 200) {
        assert_eq!(refused.status, 429, "{}", refused.text());
        assert_eq!(refused.json()["status"], "ERROR");
        assert!(refused.headers.contains_key("retry-after"));
    }
    // The quota's state lives in Redis, under the client's hash tag.
    let keys = redis.command("KEYS th:rl:*");
    assert!(
        keys.contains("th:rl:{ip:127.0.0.1}:r:health:/api/health:ip-hour"),
        "{keys}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_request_refused_by_one_quota_spends_none_of_the_others_in_redis() {
    let store = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(store.path());
    let routes = health_limited("\"10/day\", \"1/minute\"", "");
    let stack = Stack::start_with(|_| redis.policy("deny"), &routes).await;
    let first = stack.get("/api/health").await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(
        first.headers["ratelimit"].to_str().unwrap(),
        "\"ip-day\";r=9;t=8640, \"ip-minute\";r=0;t=60",
        "the same numbers as the memory store"
    );
    for attempt in 0..4 {
        let refused = stack.get("/api/health").await;
        assert_eq!(refused.status, 429, "attempt {attempt}: {}", refused.text());
        let usage = refused.headers["ratelimit"].to_str().unwrap().to_owned();
        assert!(
            usage.contains("\"ip-day\";r=9;") && usage.contains("\"ip-minute\";r=0;"),
            "attempt {attempt}: {usage}"
        );
        assert!(refused.headers.contains_key("retry-after"));
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_store_that_goes_away_gets_each_routes_answer_and_comes_back() {
    let store = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(store.path());
    // `health` refuses while the store is away; `settings` (the global
    // "allow") lets requests through uncounted.
    let routes = health_limited("\"100/minute\"", ", on_store_error = \"deny\"").replace(
        "name = \"settings\"\npath = \"/api/settings\"\nmethods = [\"GET\", \"POST\"]\nauth = \"none\"\n",
        "name = \"settings\"\npath = \"/api/settings\"\nmethods = [\"GET\", \"POST\"]\nauth = \"none\"\n\
         rate_limit = { per_ip = [\"100/minute\"] }\n",
    );
    let policy = |dir: &std::path::Path| format!("{}\n{}", redis.policy("allow"), audit_table(dir));
    let stack = Stack::start_with(policy, &routes).await;
    assert_eq!(stack.get("/api/health").await.status, 200);
    assert_eq!(stack.get("/api/settings").await.status, 200);

    redis.kill();
    for _ in 0..3 {
        let refused = stack.get("/api/health").await;
        assert_eq!(refused.status, 503, "{}", refused.text());
        assert_eq!(refused.json()["status"], "ERROR");
        assert_eq!(refused.headers["retry-after"], "1");
        let allowed = stack.get("/api/settings").await;
        assert_eq!(allowed.status, 200, "{}", allowed.text());
        assert!(
            !allowed.headers.contains_key("ratelimit"),
            "nothing was counted"
        );
    }
    stack
        .wait_for_audit(|l| {
            l["route"] == "health"
                && l["status"] == 503
                && l["reason"] == "rate_limit.store_unavailable"
        })
        .await;
    stack
        .wait_for_audit(|l| {
            l["route"] == "settings"
                && l["decision"] == "allowed"
                && l["reason"] == "rate_limit.store_unavailable"
        })
        .await;
    let errors = stack.metrics().await;
    assert!(
        errors.contains("tradehabit_gateway_rate_limit_store_errors_total{reason=\"connection\"}")
            && !errors.contains(
                "tradehabit_gateway_rate_limit_store_errors_total{reason=\"connection\"} 0"
            ),
        "{errors}"
    );

    // The store comes back: the gateway reconnects on its own.
    redis.restart();
    let recovered = async {
        loop {
            let reply = stack.get("/api/health").await;
            if reply.status == 200 {
                return reply;
            }
            assert_eq!(reply.status, 503, "{}", reply.text());
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let reply = tokio::time::timeout(SAFETY, recovered)
        .await
        .expect("the gateway uses the store again once it is back");
    assert!(reply.headers.contains_key("ratelimit"), "counted again");
    stack.stop().await;
}
